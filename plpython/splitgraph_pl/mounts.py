"""Mounting foreign databases: a schema of foreign tables made by a mount handler (postgres_fdw, mysql_fdw, CSV
files through file_fdw, or a handler registered by an administrator). A mountpoint is a plain schema: snapshot
it into a repository with import_table.

Credentials go into user mappings (whose options only superusers and the server's owner can read), never into
server options, errors or notices.
"""
import csv
import hashlib
import io
import json
import os
import re

from . import db, errors, meta, names, repositories
from .declare import api, helper
from .names import ident, literal

_RESERVED_SCHEMAS = ("public", "information_schema")
_HANDLER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")


def server_name(mountpoint):
    """The foreign server a built-in handler makes for a mountpoint."""
    return "sg_mount_" + hashlib.sha256(mountpoint.encode("utf-8")).hexdigest()[:20]


def _options(plpy, options, required, optional=()):
    """The options of a handler as a dict of strings; an error lists what is missing or unknown (never values)."""
    if isinstance(options, str):
        options = json.loads(options)
    options = options or {}
    if not isinstance(options, dict):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "mount options must be a JSON object")
    missing = [k for k in required if options.get(k) in (None, "")]
    if missing:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "mount options lack " + ", ".join(missing),
                    hint="give " + ", ".join(required) + (" (optional: " + ", ".join(optional) + ")"
                                                          if optional else ""))
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in options.items() if v is not None}


def _tables(plpy, tables):
    """None, a list of table names, or {table: {column: type}}."""
    if isinstance(tables, str):
        tables = json.loads(tables)
    if tables is None or isinstance(tables, list) and all(isinstance(t, str) for t in tables):
        return tables
    if isinstance(tables, dict) and all(isinstance(c, dict) and c and all(isinstance(t, str) for t in c.values())
                                        for c in tables.values()):
        return tables
    errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                'tables must be a list of names or an object {"table": {"column": "type"}}')


def _option_list(options):
    return ", ".join(f"{ident(k)} {literal(v)}" for k, v in options.items())


def _require_extension(plpy, name, package):
    if not db.scalar(plpy, "select exists (select from pg_catalog.pg_available_extensions where name = $1)", name):
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED, f"the {name} extension is not installed on this server",
                    hint=f"install Debian's {package}")
    plpy.execute(f"create extension if not exists {ident(name)}")


def _remote_server(plpy, mountpoint, wrapper, server_opts, opts, user_option):
    """The mountpoint's foreign server of `wrapper`; the credentials (opts' username and password) go into a
    user mapping, its user under the wrapper's name for it (`user_option`). Returns the server's name."""
    server = server_name(mountpoint)
    user_opts = {user_option: opts["username"], **({"password": opts["password"]} if "password" in opts else {})}
    plpy.execute(f"create server {ident(server)} foreign data wrapper {ident(wrapper)} "
                 f"options ({_option_list(server_opts)});"
                 f"create user mapping for public server {ident(server)} options ({_option_list(user_opts)})")
    return server


def _foreign_tables(plpy, mountpoint, server, tables, remote_schema, table_options):
    """Foreign tables of `server` in the mountpoint: every table of the remote schema, those listed, or those
    described column by column."""
    if isinstance(tables, dict):
        statements = []
        for table, columns in tables.items():
            definitions = ", ".join(f"{ident(c)} {t}" for c, t in columns.items())
            statements.append(f"create foreign table {names.qualified(mountpoint, table)} ({definitions}) "
                              f"server {ident(server)} options ({_option_list(table_options(table))})")
        plpy.execute(";\n".join(statements))
        return
    limit = f" limit to ({', '.join(ident(t) for t in tables)})" if tables else ""
    plpy.execute(f"import foreign schema {ident(remote_schema)}{limit} from server {ident(server)} "
                 f"into {ident(mountpoint)}")


# ---------------------------------------------------------------------------------------------------------------
# Built-in handlers: (mountpoint, options, tables), called in the (existing, empty) schema `mountpoint`
# ---------------------------------------------------------------------------------------------------------------

@helper("mount_postgres_fdw(mountpoint text, options jsonb, tables jsonb) returns void",
        "mount_postgres_fdw(mountpoint, options, tables): the postgres_fdw mount handler")
def mount_postgres_fdw(plpy, mountpoint, options, tables):
    opts = _options(plpy, options, ("host", "username", "dbname", "remote_schema"), ("port", "password"))
    server_opts = {k: v for k, v in opts.items() if k not in ("username", "password", "remote_schema")}
    server_opts.setdefault("port", "5432")
    server = _remote_server(plpy, mountpoint, "postgres_fdw", server_opts, opts, "user")
    _foreign_tables(plpy, mountpoint, server, _tables(plpy, tables), opts["remote_schema"],
                    lambda t: {"schema_name": opts["remote_schema"], "table_name": t})


@helper("mount_mysql_fdw(mountpoint text, options jsonb, tables jsonb) returns void",
        "mount_mysql_fdw(mountpoint, options, tables): the mysql_fdw mount handler")
def mount_mysql_fdw(plpy, mountpoint, options, tables):
    if isinstance(options, str):
        options = json.loads(options)
    options = dict(options or {})
    if "dbname" not in options and "remote_schema" in options:
        options["dbname"] = options.pop("remote_schema")
    opts = _options(plpy, options, ("host", "username", "dbname"), ("port", "password"))
    _require_extension(plpy, "mysql_fdw", "postgresql-15-mysql-fdw")
    server_opts = {"host": opts["host"], "port": opts.get("port", "3306")}
    server_opts.update({k: v for k, v in opts.items() if k not in ("host", "port", "username", "password", "dbname")})
    server = _remote_server(plpy, mountpoint, "mysql_fdw", server_opts, opts, "username")
    _foreign_tables(plpy, mountpoint, server, _tables(plpy, tables), opts["dbname"],
                    lambda t: {"dbname": opts["dbname"], "table_name": t})


# Inferred CSV column types, most specific first: (type, regular expression every non-empty value matches).
# Dates and times are matched by shape and then checked (_csv_check): a day past the end of its month or a
# year 0000 leaves the column as text rather than making every read of the mounted table fail.
_DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"[ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?"
_CSV_TYPES = (
    ("integer", r"^[+-]?[0-9]{1,9}$"),
    ("bigint", r"^[+-]?[0-9]{1,18}$"),
    ("numeric", r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"),
    ("boolean", r"^([Tt]([Rr][Uu][Ee])?|[Ff]([Aa][Ll][Ss][Ee])?|[Yy]([Ee][Ss])?|[Nn][Oo]?)$"),
    ("date", f"^{_DATE}$"),
    ("timestamp", f"^{_DATE}{_TIME}$"),
    ("timestamp with time zone", f"^{_DATE}{_TIME}([Zz]|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)$"),
)


def _csv_check(column, type_, pattern):
    """An SQL condition true when the text value `column` has the shape of `type_` and, for dates, is a real
    day. CASE keeps the arithmetic away from values of another shape."""
    if type_ not in ("date", "timestamp", "timestamp with time zone"):
        return f"{column} ~ {literal(pattern)}"
    year, month, day = (f"pg_catalog.substr({column}, {a}, {n})::int" for a, n in ((1, 4), (6, 2), (9, 2)))
    last_day = (f"pg_catalog.date_part('day', pg_catalog.make_date({year}, {month}, 1) "
                "+ interval '1 month' - interval '1 day')")
    return (f"case when {column} !~ {literal(pattern)} then false when {year} = 0 then false "
            f"else {day} <= {last_day} end")


def _csv_names(first_line, delimiter, quote, header):
    """Column names from the first line of a CSV file: the header's, or col1..colN."""
    fields = next(csv.reader(io.StringIO(first_line), delimiter=delimiter, quotechar=quote), [])
    if not header:
        return [f"col{i + 1}" for i in range(len(fields))]
    result = []
    for i, field in enumerate(fields):
        name = field.strip().encode("utf-8")[:63].decode("utf-8", "ignore") or f"col{i + 1}"
        base, n = name, 2
        while name in result:
            name = f"{base[:58]}_{n}"
            n += 1
        result.append(name)
    return result


@helper("mount_csv(mountpoint text, options jsonb, tables jsonb) returns void",
        "mount_csv(mountpoint, options, tables): the csv mount handler (file_fdw, inferred types)")
def mount_csv(plpy, mountpoint, options, tables):
    opts = _options(plpy, options, ("filename",), ("table", "header", "delimiter", "quote", "encoding", "null"))
    if not meta.caller_is_admin(plpy) and not db.scalar(
            plpy, "select pg_catalog.pg_has_role(session_user, 'pg_read_server_files', 'MEMBER')"):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "mounting server files needs the pg_read_server_files role")
    if not os.path.isabs(opts["filename"]):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "filename must be an absolute path on the database server")
    if not os.path.isfile(opts["filename"]):
        errors.fail(plpy, "58P01", f'file "{opts["filename"]}" does not exist on the database server')
    header = opts.get("header", "true").lower() in ("true", "t", "yes", "on", "1")
    delimiter, quote = opts.get("delimiter", ","), opts.get("quote", '"')
    if len(delimiter) != 1 or len(quote) != 1:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "delimiter and quote must be single characters")
    _require_extension(plpy, "file_fdw", "postgresql-contrib")
    server = server_name(mountpoint)
    plpy.execute(f"create server {ident(server)} foreign data wrapper file_fdw")
    file_options = {"filename": opts["filename"], "format": "csv", "header": str(header).lower(),
                    "delimiter": delimiter, "quote": quote}
    for key in ("encoding", "null"):
        if key in opts:
            file_options[key] = opts[key]
    tables = _tables(plpy, tables)
    if isinstance(tables, dict):
        _foreign_tables(plpy, mountpoint, server, tables, None, lambda t: file_options)
        return
    table = opts.get("table") or re.sub(r"\.[^.]*$", "", os.path.basename(opts["filename"])) or "data"
    # The first line, read raw (no character of it is a delimiter or quote), names the columns.
    raw = "pg_temp." + ident("sg_raw_" + server)
    raw_options = {"filename": opts["filename"], "format": "csv", "delimiter": "\x01", "quote": "\x02"}
    if "encoding" in opts:
        raw_options["encoding"] = opts["encoding"]
    plpy.execute(f"create foreign table {raw} (line text) server {ident(server)} options ({_option_list(raw_options)})")
    first = db.scalar(plpy, f"select line from {raw} limit 1")
    plpy.execute(f"drop foreign table {raw}")
    if first is None:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f'file "{opts["filename"]}" is empty')
    columns = _csv_names(first, delimiter, quote, header)
    # Every column read as text first; each gets the most specific type all its values have.
    text = "pg_temp." + ident("sg_text_" + server)
    plpy.execute(f"create foreign table {text} ({', '.join(f'c{i} text' for i in range(len(columns)))}) "
                 f"server {ident(server)} options ({_option_list(file_options)})")
    checks = ", ".join(f"bool_and({_csv_check(f'c{i}', type_, pattern)}) as t{i}_{k}"
                       for i in range(len(columns)) for k, (type_, pattern) in enumerate(_CSV_TYPES))
    row = db.one(plpy, f"select {checks} from {text}")
    plpy.execute(f"drop foreign table {text}")
    types = []
    for i in range(len(columns)):
        matches = [type_ for k, (type_, _) in enumerate(_CSV_TYPES) if row[f"t{i}_{k}"]]
        types.append(matches[0] if matches else "text")
    definitions = ", ".join(f"{ident(c)} {t}" for c, t in zip(columns, types, strict=True))
    plpy.execute(f"create foreign table {names.qualified(mountpoint, table)} ({definitions}) "
                 f"server {ident(server)} options ({_option_list(file_options)})")


# ---------------------------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------------------------

def _check_mountpoint(plpy, mountpoint):
    if not mountpoint or len(mountpoint.encode("utf-8")) > 63:
        errors.fail(plpy, errors.INVALID_NAME, f"invalid mountpoint {mountpoint!r}",
                    hint="a mountpoint is a schema name of 1 to 63 bytes")
    if mountpoint.startswith(("pg_", "splitgraph", "sg_query_")) or mountpoint in _RESERVED_SCHEMAS:
        errors.fail(plpy, errors.INVALID_NAME, f'"{mountpoint}" cannot be a mountpoint', hint="choose another name")
    if db.scalar(plpy, "select exists (select from splitgraph_meta.checkouts where left(repository, 63) = $1)",
                 mountpoint):
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'schema "{mountpoint}" is the checkout of a repository',
                    hint="choose another mountpoint")


def _mounted(plpy, mountpoint):
    return db.one(plpy, "select handler from splitgraph_meta.mounts where mountpoint = $1", mountpoint)


def _check_owner(plpy, mountpoint):
    if meta.caller_is_admin(plpy):
        return
    owns = db.scalar(plpy, """select pg_catalog.pg_has_role(session_user, nspowner, 'USAGE')
                              from pg_catalog.pg_namespace where nspname = $1""", mountpoint)
    if not owns:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'only the owner of mountpoint "{mountpoint}" may change it')


@api("mount(mountpoint text, handler text, options jsonb, tables jsonb default null, overwrite boolean default "
     "true) returns void",
     "mount(mountpoint, handler, options, tables, overwrite): create foreign tables in schema mountpoint with a "
     "registered handler (postgres_fdw, mysql_fdw, csv, or one registered); tables: null (all), a list of names, "
     "or {\"t\": {\"col\": \"type\"}}; credentials go into user mappings",
     nullable=("options",))
def mount(plpy, mountpoint, handler, options, tables=None, overwrite=True):
    _check_mountpoint(plpy, mountpoint)
    row = db.one(plpy, "select handler::oid::bigint as oid from splitgraph_meta.mount_handlers where name = $1",
                 handler)
    if row is None:
        known = ", ".join(db.column(plpy, "select name from splitgraph_meta.mount_handlers order by name"))
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'unknown mount handler "{handler}"', hint=f"handlers: {known}")
    if _mounted(plpy, mountpoint) is not None:
        if not overwrite:
            errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{mountpoint}" is already mounted',
                        hint="unmount it first, or pass overwrite => true")
        unmount(plpy, mountpoint)
    elif db.schema_exists(plpy, mountpoint):
        errors.fail(plpy, "42P06", f'schema "{mountpoint}" exists and is not a mountpoint',
                    hint="choose another mountpoint; a mount never replaces a schema it did not make")
    with db.settings(plpy, {"client_min_messages": "warning"}):
        # a server of this name left by a mountpoint dropped by hand is ours, and stale
        plpy.execute(f"drop server if exists {ident(server_name(mountpoint))} cascade")
    plpy.execute(f"create schema {ident(mountpoint)}")
    function = db.scalar(plpy, "select $1::bigint::oid::regproc::text", row["oid"])
    db.run(plpy, f"select {function}($1, $2::jsonb, $3::jsonb)", mountpoint,
           json.dumps(json.loads(options) if isinstance(options, str) else options),
           None if tables is None else json.dumps(json.loads(tables) if isinstance(tables, str) else tables))
    db.run(plpy, "insert into splitgraph_meta.mounts (mountpoint, handler) values ($1, $2)", mountpoint, handler)
    if not meta.caller_is_admin(plpy):
        # the caller's own schema of foreign tables (the server and its credentials stay the extension's)
        plpy.execute(f"alter schema {ident(mountpoint)} owner to session_user")
        for table in db.column(plpy, """select c.relname::text from pg_catalog.pg_class c
                                        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                                        where n.nspname = $1 and c.relkind = 'f'""", mountpoint):
            plpy.execute(f"alter foreign table {names.qualified(mountpoint, table)} owner to session_user")


@api("mount_postgres(mountpoint text, server text, port integer, username text, password text, dbname text, "
     "remote_schema text, tables jsonb default null, extra_server_args jsonb default null) returns void",
     "mount_postgres(mountpoint, server, port, username, password, dbname, remote_schema, tables, "
     "extra_server_args): mount a remote PostgreSQL schema through postgres_fdw (extra_server_args: more "
     "postgres_fdw server options)")
def mount_postgres(plpy, mountpoint, server, port, username, password, dbname, remote_schema, tables=None,
                   extra_server_args=None):
    options = {"host": server, "port": port, "username": username, "password": password, "dbname": dbname,
               "remote_schema": remote_schema}
    extra = json.loads(extra_server_args) if isinstance(extra_server_args, str) else (extra_server_args or {})
    options.update(extra)
    mount(plpy, mountpoint, "postgres_fdw", options, tables)


@api("unmount(mountpoint text) returns void",
     "unmount(mountpoint): drop a mountpoint with its foreign servers and user mappings; for a repository, "
     "delete it like rm (objects stay until cleanup())")
def unmount(plpy, mountpoint):
    """Drop a mountpoint (its foreign tables, servers and user mappings), or delete a repository."""
    if names.is_repository(mountpoint or "") and meta.exists(plpy, mountpoint):
        return repositories.rm(plpy, mountpoint)
    if _mounted(plpy, mountpoint) is None:
        if not db.schema_exists(plpy, mountpoint):
            errors.fail(plpy, errors.UNDEFINED_OBJECT, f'mountpoint "{mountpoint}" does not exist')
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'schema "{mountpoint}" is neither a mountpoint nor a repository', hint="drop it with DROP SCHEMA")
    _check_owner(plpy, mountpoint)
    servers = set(db.column(plpy, """select s.srvname::text from pg_catalog.pg_foreign_table f
                                     join pg_catalog.pg_class c on c.oid = f.ftrelid
                                     join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                                     join pg_catalog.pg_foreign_server s on s.oid = f.ftserver
                                     where n.nspname = $1""", mountpoint))
    servers.add(server_name(mountpoint))
    with db.settings(plpy, {"client_min_messages": "warning"}):
        plpy.execute(f"drop schema if exists {ident(mountpoint)} cascade")
        for server in sorted(s for s in servers if s.startswith("sg_mount_")):
            plpy.execute(f"drop server if exists {ident(server)} cascade")
    db.run(plpy, "delete from splitgraph_meta.mounts where mountpoint = $1", mountpoint)


@api("register_mount_handler(name text, handler regprocedure, description text default null) returns void",
     "register_mount_handler(name, handler, description): register a function (mountpoint text, options jsonb, "
     "tables jsonb) returns void that makes foreign tables in the existing schema mountpoint; superusers only, "
     "as handlers run with the extension's rights")
def register_mount_handler(plpy, name, handler, description=None):
    if not meta.caller_is_admin(plpy):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "only superusers and the extension's owner register mount "
                                                         "handlers (a handler runs with the extension's rights)")
    if name is None or not _HANDLER_NAME.match(name):
        errors.fail(plpy, errors.INVALID_NAME, f"invalid mount handler name {name!r}",
                    hint="lowercase letters, digits and _, starting with a letter")
    if db.scalar(plpy, "select builtin from splitgraph_meta.mount_handlers where name = $1", name):
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{name}" is a built-in mount handler', hint="choose another name")
    # proargtypes is an oidvector (its subscripts start at 0): compare it as one.
    fits = db.scalar(plpy, """select p.prokind = 'f' and p.proargtypes = pg_catalog.format('%s %s %s',
                                     'text'::regtype::oid, 'jsonb'::regtype::oid, 'jsonb'::regtype::oid)::oidvector
                                 and p.prorettype = 'void'::regtype and not p.proretset
                              from pg_catalog.pg_proc p where p.oid = $1::regprocedure""", handler)
    if not fits:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"{handler} is not a mount handler",
                    hint="a handler is a function (mountpoint text, options jsonb, tables jsonb) returns void")
    db.run(plpy, """insert into splitgraph_meta.mount_handlers (name, handler, description)
                    values ($1, $2::regprocedure, $3)
                    on conflict (name) do update set handler = excluded.handler, description = excluded.description""",
           name, handler, description)


@api("mount_handlers() returns table (name text, description text)",
     "mount_handlers(): every mount handler, with what it mounts",
     volatility="stable")
def mount_handlers(plpy):
    return db.run(plpy, "select name, description from splitgraph_meta.mount_handlers order by name")
