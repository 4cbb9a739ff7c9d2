"""Remotes: other engines with the extension, to push repositories to and pull them from; upstreams; and who may
write which namespace (grant_namespace).

A remote belongs to the role that added it (its current_user): the postgres_fdw server, the user mapping that
holds the credentials and a schema of foreign tables over the remote's schema splitgraph_remote are that role's.
The calls that use a remote run as their caller (SECURITY INVOKER), so postgres_fdw connects with the caller's
own user mapping, under postgres_fdw's rules for roles that are not superusers (a password is required, and the
remote must ask for it): only that role, and administrators acting as it (SET ROLE), can use the remote. Adding
one needs what mounting needs (superusers, the extension's owner and members of splitgraph_mount), since both
reach hosts and ports the database server reaches. The password goes into the user mapping only: no result,
error or notice shows it, and it is stored nowhere else.
"""
import json
import re
import secrets

from . import db, errors, meta, names
from .declare import api, helper
from .names import ident, literal

REMOTE_SCHEMA = "splitgraph_remote"
PROTOCOL = 2  # 2: images carry a merge image's second parent (merged)
# The foreign tables of a remote, over the views of the same names in the remote's splitgraph_remote
# (sql/60_remote/01_remote.sql): explicit columns, so adding a remote needs no connection.
FOREIGN_TABLES = {
    "protocol": "version integer",
    "repositories": "repository text",
    "images": "repository text, image_hash text, parent_id text, created timestamptz, comment text, provenance jsonb, "
              "merged text",
    "tags": "repository text, tag text, image_hash text",
    "branches": "repository text, branch text, image_hash text",
    "tables": "repository text, image_hash text, table_name text, table_schema jsonb, table_definition jsonb, "
              "object_ids text[]",
    "objects": "object_id text, format text, namespace text, rows_inserted bigint, rows_deleted bigint, "
               "insertion_hash text, deletion_hash text, index jsonb, table_schema jsonb, stored boolean",
    "object_dumps": "object_id text, dump bytea",
    "requests": "repository text, kind text, payload jsonb, dump bytea",
    "object_locations": "object_id text, protocol text",
    "object_urls": "repository text, method text, s3_host text, object_ids text[], urls text[]",
}
# Rows a foreign scan fetches at once (object_dumps: each row is an object of up to chunk_size rows), and rows
# an insert into requests sends at once (each may be an object's dump): a few dumps in memory at a time.
FETCH_SIZE = {"object_dumps": "4"}
# Foreign tables whose scans may run side by side (postgres_fdw's asynchronous execution): a large download reads
# object_dumps through two connections at once (transfer.download).
ASYNC = ("object_dumps",)
BATCH_SIZE = "8"
_NAME = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}")


def _current_user(plpy):
    return db.scalar(plpy, "select current_user::text")


def check_name(plpy, name):
    if not isinstance(name, str) or not _NAME.fullmatch(name):
        errors.fail(plpy, errors.INVALID_NAME, f"invalid remote name {name!r}",
                    hint="letters, digits, _ . and -, at most 63 characters")
    return name


def _text(plpy, what, value):
    if not isinstance(value, str) or not value or "\x00" in value or len(value) > 1024:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"{what} must be a non-empty string")
    return value


@api("add_remote(name text, host text, port integer, dbname text, username text, password text) returns void",
     "add_remote(name, host, port, dbname, username, password): another engine with the extension, to push to "
     "and pull from, for the calling role (superusers, the extension's owner and members of splitgraph_mount); "
     "the credentials go into the role's postgres_fdw user mapping and are never shown back",
     security="invoker", nullable=("password",))
def add_remote(plpy, name, host, port, dbname, username, password):
    made = json.loads(db.scalar(plpy, "select splitgraph_internal.remote_begin($1, $2, $3::integer, $4, $5, $6)",
                                name, host, port, dbname, username, _current_user(plpy)))
    server, schema = made["server"], made["schema"]
    options = {"host": host, "port": str(port), "dbname": dbname, "batch_size": BATCH_SIZE, "fetch_size": "100"}
    plpy.execute(f"create server {ident(server)} foreign data wrapper postgres_fdw options ({_option_list(options)})")
    mapping = {"user": username, **({"password": password} if password is not None else {})}
    _user_mapping(plpy, name, server, mapping)
    plpy.execute(";\n".join(_foreign_tables(schema, server)))


def _option_list(options):
    return ", ".join(f"{ident(k)} {literal(v)}" for k, v in options.items())


def _user_mapping(plpy, name, server, mapping):
    """The caller's user mapping of a remote's server. The statement holds the password: its error says what
    failed without it."""
    try:
        with plpy.subtransaction():
            plpy.execute(f"create user mapping for current_user server {ident(server)} options "
                         f"({_option_list(mapping)})")
    except plpy.SPIError as error:
        errors.fail(plpy, error.sqlstate or errors.INVALID_PARAMETER_VALUE,
                    f'could not create the user mapping of remote "{name}"')


def _foreign_tables(schema, server, suffix="", only=None):
    """Statements that make the foreign tables of a remote (named table + suffix; all, or those in `only`) in
    `schema`."""
    statements = []
    for table, columns in FOREIGN_TABLES.items():
        if only is not None and table not in only:
            continue
        table_options = {"schema_name": REMOTE_SCHEMA, "table_name": table}
        if table in FETCH_SIZE:
            table_options["fetch_size"] = FETCH_SIZE[table]
        if table in ASYNC:
            table_options["async_capable"] = "true"
        statements.append(f"create foreign table {names.qualified(schema, table + suffix)} ({columns}) "
                          f"server {ident(server)} options ({_option_list(table_options)})")
    return statements


def twin(plpy, info, n, only=None):
    """For the caller's transaction, a second way to the remote `info` (remote_of): a copy of its server, of the
    caller's user mapping and of its foreign tables (those in `only`, or all; named with the suffix returned).
    postgres_fdw keeps one remote transaction per user mapping for the whole local transaction; a copy connects
    anew and opens another, with a fresh snapshot (a push that lost a race retries through it; a large download
    reads through two at once). drop_twin drops it before the local transaction ends; the remote transaction
    still commits with it. Runs as the caller, who owns the server and so reads its own user mapping (the
    password never leaves the caller's rights)."""
    server = f'{info["server"]}_t{n}'
    suffix = f"_t{n}"
    options = dict(o.split("=", 1) for o in db.column(plpy, """
        select pg_catalog.unnest(srvoptions) from pg_catalog.pg_foreign_server where srvname = $1""", info["server"]))
    mapping = dict(o.split("=", 1) for o in (db.scalar(plpy, """
        select umoptions from pg_catalog.pg_user_mappings where srvname = $1 and usename = current_user""",
                                                      info["server"]) or []))
    plpy.execute(f"create server {ident(server)} foreign data wrapper postgres_fdw options ({_option_list(options)})")
    _user_mapping(plpy, info["name"], server, mapping)
    plpy.execute(";\n".join(_foreign_tables(info["schema"], server, suffix, only)))
    return server, suffix


def drop_twin(plpy, server):
    with db.settings(plpy, {"client_min_messages": "warning"}):
        plpy.execute(f"drop server {ident(server)} cascade")


@helper("remote_begin(name text, host text, port integer, dbname text, username text, role text) returns text",
        "remote_begin(name, host, port, dbname, username, role): for add_remote: check that role (the caller's "
        "current_user) may add a remote, record it, and make its schema, owned by role; returns the names of the "
        "server and the schema to make",
        public=True)
def remote_begin(plpy, name, host, port, dbname, username, role):
    role = meta.acting_role(plpy, role)
    meta.check_mount_privilege(plpy, role, "add a remote")
    name = check_name(plpy, name)
    _text(plpy, "host", host)
    _text(plpy, "dbname", dbname)
    _text(plpy, "username", username)
    if port is None or not 0 < port < 65536:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"port must be from 1 to 65535, not {port}")
    if db.scalar(plpy, "select exists (select from splitgraph_meta.remotes where owner = $1 and name = $2)",
                 role, name):
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'remote "{name}" exists already',
                    hint="delete it first with splitgraph.delete_remote")
    # random names: no role can make the schema or server first to stop this one
    server = f"sg_remote_{secrets.token_hex(8)}"
    while db.scalar(plpy, """select exists (select from pg_catalog.pg_namespace where nspname = $1)
                             or exists (select from pg_catalog.pg_foreign_server where srvname = $1)""", server):
        server = f"sg_remote_{secrets.token_hex(8)}"
    plpy.execute(f"create schema {ident(server)} authorization {ident(role)}")
    plpy.execute(f"comment on schema {ident(server)} is {literal(f'Foreign tables of splitgraph remote {name}')}")
    db.run(plpy, """insert into splitgraph_meta.remotes (owner, name, host, port, dbname, username, server, schema)
                    values ($1, $2, $3, $4, $5, $6, $7, $7)""", role, name, host, port, dbname, username, server)
    return json.dumps({"server": server, "schema": server})


@api("remotes() returns table (name text, host text, port integer, dbname text, username text, owner text)",
     "remotes(): the remotes the caller may use (administrators: all), with the role each belongs to; never a "
     "password",
     volatility="stable")
def remotes(plpy):
    return db.run(plpy, """
        select r.name, r.host, r.port, r.dbname, r.username, r.owner from splitgraph_meta.remotes r
        where $1 or exists (select from pg_catalog.pg_roles o
                            where o.rolname = r.owner and pg_catalog.pg_has_role(session_user, o.oid, 'MEMBER'))
        order by r.owner, r.name""", bool(meta.caller_is_admin(plpy)))


@api("delete_remote(name text) returns void",
     "delete_remote(name): drop a remote of the calling role: its foreign server, user mapping and foreign tables "
     "(upstreams that name it stay)",
     security="invoker")
def delete_remote(plpy, name):
    db.run(plpy, "select splitgraph_internal.remote_end($1, $2)", name, _current_user(plpy))


@helper("remote_end(name text, role text) returns void",
        "remote_end(name, role): for delete_remote: drop role's remote (its schema of foreign tables, its server "
        "and user mappings) and forget it",
        public=True)
def remote_end(plpy, name, role):
    role = meta.acting_role(plpy, role)
    row = db.one(plpy, """select server, schema from splitgraph_meta.remotes where owner = $1 and name = $2
                          for update""", role, check_name(plpy, name))
    if row is None:
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'remote "{name}" does not exist',
                    hint="remotes belong to the role that added them: see splitgraph.remotes()")
    servers = db.column(plpy, "select oid::bigint from pg_catalog.pg_foreign_server where srvname = $1", row["server"])
    outside = db.dependents_outside(plpy, row["schema"], servers) if db.schema_exists(plpy, row["schema"]) else []
    if outside:
        errors.fail(plpy, errors.DEPENDENT_OBJECTS_STILL_EXIST,
                    f'deleting remote "{name}" would drop objects outside it: ' + ", ".join(outside[:5]),
                    hint="drop those objects first")
    with db.settings(plpy, {"client_min_messages": "warning"}):
        plpy.execute(f"drop schema if exists {ident(row['schema'])} cascade")
        plpy.execute(f"drop server if exists {ident(row['server'])} cascade")
    db.run(plpy, "delete from splitgraph_meta.remotes where owner = $1 and name = $2", role, name)


@helper("remote_of(name text, role text) returns text",
        "remote_of(name, role): the remote of role (the caller's current_user) of that name: host, port, dbname, "
        "username, its server and the schema of its foreign tables",
        volatility="stable", public=True)
def remote_of(plpy, name, role):
    role = meta.acting_role(plpy, role)
    row = db.one(plpy, """select name, host, port, dbname, username, server, schema from splitgraph_meta.remotes
                          where owner = $1 and name = $2""", role, check_name(plpy, name))
    if row is None:
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'remote "{name}" does not exist for role "{role}"',
                    hint="add it with splitgraph.add_remote (remotes belong to the role that added them)")
    return json.dumps(dict(row))


def resolve(plpy, name):
    """The calling role's remote `name` (a dict: name, host, port, dbname, username, schema)."""
    return json.loads(db.scalar(plpy, "select splitgraph_internal.remote_of($1, $2)", name, _current_user(plpy)))


# ---------------------------------------------------------------------------------------------------------------
# Upstreams
# ---------------------------------------------------------------------------------------------------------------

@api("upstream(repository text) returns table (remote text, remote_repository text)",
     "upstream(repository): the default remote of the repository for push and pull (no row when it has none)",
     volatility="stable")
def upstream(plpy, repository):
    repo = meta.require(plpy, repository)
    return db.run(plpy, """select remote_name as remote, remote_repository from splitgraph_meta.upstream
                           where repository = $1""", repo)


@api("set_upstream(repository text, remote text, remote_repository text) returns void",
     "set_upstream(repository, remote, remote_repository): the default remote (one of the caller's) and "
     "repository there for push and pull; remote_repository null: the same name; remote null: none",
     nullable=("remote", "remote_repository"))
def set_upstream(plpy, repository, remote, remote_repository):
    repo = meta.writable(plpy, repository)
    if remote is None:
        db.run(plpy, "delete from splitgraph_meta.upstream where repository = $1", repo)
        return
    remote = check_name(plpy, remote)
    if not db.scalar(plpy, """
            select exists (select from splitgraph_meta.remotes r join pg_catalog.pg_roles o on o.rolname = r.owner
                           where r.name = $1 and pg_catalog.pg_has_role(session_user, o.oid, 'MEMBER'))""", remote):
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'remote "{remote}" does not exist',
                    hint="add it with splitgraph.add_remote")
    record_upstream(plpy, repo, remote, names.repository(plpy, remote_repository or repo), True)


def record_upstream(plpy, repo, remote, remote_repository, replace):
    """Record the upstream of a repository the caller may write (checked by the caller of this): with replace,
    whatever it was; otherwise only when it has none. Writes nothing when nothing changes."""
    current = db.one(plpy, "select remote_name, remote_repository from splitgraph_meta.upstream where repository = $1",
                     repo)
    if current is not None and (not replace or (current["remote_name"], current["remote_repository"])
                                == (remote, remote_repository)):
        return
    db.run(plpy, """insert into splitgraph_meta.upstream (repository, remote_name, remote_repository)
                    values ($1, $2, $3)
                    on conflict (repository) do update
                    set remote_name = excluded.remote_name, remote_repository = excluded.remote_repository""",
           repo, remote, remote_repository)


# ---------------------------------------------------------------------------------------------------------------
# Namespaces
# ---------------------------------------------------------------------------------------------------------------

_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,64}")


def _namespace_and_role(plpy, namespace, role):
    if not meta.caller_is_admin(plpy):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    "only superusers and the extension's owner may grant or revoke namespaces")
    if not isinstance(namespace, str) or not _NAMESPACE.fullmatch(namespace):
        errors.fail(plpy, errors.INVALID_NAME, f"invalid namespace {namespace!r}",
                    hint="letters, digits, - and _, at most 64 characters")
    return namespace


@api("grant_namespace(namespace text, role text) returns void",
     "grant_namespace(namespace, role): let role create, push to, tag, branch and delete repositories of the "
     "namespace, beside the one named like it; administrators only")
def grant_namespace(plpy, namespace, role):
    namespace = _namespace_and_role(plpy, namespace, role)
    if not db.scalar(plpy, "select exists (select from pg_catalog.pg_roles where rolname = $1)", role):
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'role "{role}" does not exist')
    db.run(plpy, """insert into splitgraph_meta.namespace_grants (namespace, role) values ($1, $2)
                    on conflict do nothing""", namespace, role)


@api("revoke_namespace(namespace text, role text) returns void",
     "revoke_namespace(namespace, role): undo grant_namespace; administrators only",)
def revoke_namespace(plpy, namespace, role):
    namespace = _namespace_and_role(plpy, namespace, role)
    gone = db.run(plpy, """delete from splitgraph_meta.namespace_grants where namespace = $1 and role = $2
                           returning role""", namespace, role)
    if not gone.nrows():
        db.notice(plpy, f'namespace "{namespace}" was not granted to role "{role}"')
