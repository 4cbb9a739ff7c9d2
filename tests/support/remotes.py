"""Two engines for the tests of issue 11 (remotes, clone, pull, push, a registry that several roles share).

The client is the session's test cluster (conftest's `cluster`, the module's database `dbname`). The registry is a
second cluster made for each test module that loads the fixtures of support/remote_fixtures.py
(`pytest_plugins = ["support.remote_fixtures"]`): there,
every role but `postgres` logs in with a password (scram-sha-256), because postgres_fdw lets a role that is not a
superuser connect only to a server that asks for one. `postgres` is trusted on both, to set up and to inspect.

A `User` is one person known to both engines: a LOGIN role that is not a superuser, named alike on the client
(allowed to mount, which add_remote requires) and on the registry (with a password). Its namespace is its name on
both engines. Every connection made here has a statement_timeout, so that no test can hang.
"""
import hashlib
import itertools
import json
import os
import socket
import subprocess
import tempfile
import threading
import time

import psycopg2
from psycopg2 import sql as pgsql

from support import driver  # noqa: E402
from support.cluster import PG_BIN, Cluster
from support.queries import sql as run
from support.queries import value as one
from support.security import Roles

TIMEOUT = "30s"
ZERO = "0" * 64
OBJECT_NAME = r"^o[0-9a-f]{62}$"
_numbers = itertools.count(1)

# Every role but postgres needs a password on the registry.
REGISTRY_HBA = """\
host all postgres 127.0.0.1/32 trust
host all all 127.0.0.1/32 scram-sha-256
"""

# SQLSTATEs that say clearly "this data was refused": data corrupted, undefined object (a type or collation),
# invalid name, syntax error (a type name that is not one), invalid parameter value, invalid text representation.
REFUSED = ("XX001", "42704", "42602", "42601", "22023", "22P02")


def free_port():
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _as_server_user(cmd):
    return ["runuser", "-u", "postgres", "--"] + cmd if os.geteuid() == 0 else cmd


def start_registry():
    base = tempfile.mkdtemp(prefix="sg-registry-")
    os.chmod(base, 0o755)
    registry = Cluster(base, free_port(), settings={"fsync": "off", "synchronous_commit": "off",
                                                    "password_encryption": "'scram-sha-256'"})
    registry.init()
    (registry.data / "pg_hba.conf").write_text(REGISTRY_HBA)
    return registry.start()


def kill(cluster):
    """Stop a cluster the hard way (pg_ctl stop -m immediate: no checkpoint, open transactions simply vanish)."""
    subprocess.run(_as_server_user([str(PG_BIN / "pg_ctl"), "-D", str(cluster.data), "-m", "immediate", "-w",
                                    "stop"]), check=True, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)


def connect(dsn, timeout=TIMEOUT):
    c = driver.connect(dsn, autocommit=True, connect_timeout=10)
    run(c, "select pg_catalog.set_config('statement_timeout', %s, false)", timeout)
    return c


# ---------------------------------------------------------------------------------------------------------------
# Users of both engines
# ---------------------------------------------------------------------------------------------------------------

class User:
    def __init__(self, users, role, password):
        self.users = users
        self.role = role                      # the client role (support.security.Role)
        self.name = role.name
        self.schema = role.schema             # a schema it owns on the client (<name>_own)
        self.password = password
        self._conns = []
        self._cached = {}

    def client(self, dbname=None):
        """This user's connection to the client (the module's database by default), made once."""
        key = ("client", dbname or self.users.dbname)
        if key not in self._cached:
            self._cached[key] = self.new_client(dbname)
        return self._cached[key]

    def registry(self, dbname=None):
        """This user's connection to the registry (with its password), made once."""
        key = ("registry", dbname or self.users.regdb)
        if key not in self._cached:
            self._cached[key] = self.new_registry(dbname)
        return self._cached[key]

    def new_client(self, dbname=None):
        """A new autocommit connection to the client as this user."""
        c = connect(self.users.cluster.dsn(dbname or self.users.dbname, user=self.name))
        self._conns.append(c)
        return c

    def new_registry(self, dbname=None):
        """A new autocommit connection to the registry as this user."""
        r = self.users.registry
        c = connect(r.dsn(dbname or self.users.regdb, user=self.name) + f" password={self.password}")
        self._conns.append(c)
        return c

    def add_remote(self, conn, remote=None, dbname=None, password=None):
        """add_remote on `conn` (a client connection of this user) for the registry, with this user's
        credentials; returns the remote's name (default: reg_<user>)."""
        remote = remote or f"reg_{self.name}"
        run(conn, "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, %s, %s)", remote,
            self.users.registry.port, dbname or self.users.regdb, self.name,
            self.password if password is None else password)
        return remote

    def close(self):
        for c in self._conns:
            c.close()
        self._conns = []
        self._cached = {}


class Users:
    def __init__(self, cluster, dbname, registry, regdb):
        self.cluster, self.dbname, self.registry, self.regdb = cluster, dbname, registry, regdb
        self.roles = Roles(cluster, dbname)
        self.made = []

    def new(self, stem, mount=True):
        role = self.roles.new(stem, mount=mount)
        password = f"pw-{role.name}-" + hashlib.sha256(os.urandom(16)).hexdigest()[:20]
        with connect(self.registry.dsn(self.regdb)) as r:
            run(r, pgsql.SQL("create role {} login nosuperuser nocreatedb nocreaterole password {}").format(
                pgsql.Identifier(role.name), pgsql.Literal(password)))
        user = User(self, role, password)
        self.made.append(user)
        return user

    def cleanup(self):
        for u in self.made:
            u.close()
        self.roles.cleanup()
        if self.registry.running():
            with connect(self.registry.dsn(self.regdb)) as r:
                for u in self.made:
                    run(r, pgsql.SQL("alter role {} nosuperuser").format(pgsql.Identifier(u.name)))


# ---------------------------------------------------------------------------------------------------------------
# Repositories and what an engine holds
# ---------------------------------------------------------------------------------------------------------------

def make_repository(conn, repo, tables=None, chunk_size=None, comment=None):
    """init `repo` and commit tables {name: (row count, salt)} of (id int primary key, v text); returns the
    image. The same (count, salt) gives the same rows, so the same objects."""
    run(conn, "select splitgraph.init(%s)", repo)
    return commit_tables(conn, repo, tables or {"t": (20, "")}, chunk_size, comment)


def commit_tables(conn, repo, tables, chunk_size=None, comment=None):
    """(Re)create and fill the tables of the checkout of `repo` and commit; returns the new image."""
    for table, (count, salt) in tables.items():
        q = pgsql.Identifier(repo, table)
        run(conn, pgsql.SQL("drop table if exists {}").format(q))
        run(conn, pgsql.SQL("create table {} (id int primary key, v text)").format(q))
        run(conn, pgsql.SQL("insert into {} select i, md5(i::text || %s) from generate_series(1, %s) i").format(q),
            salt, int(count))
    return one(conn, "select splitgraph.commit(%s, %s, chunk_size => %s)", repo, comment, chunk_size)


def table_rows(conn, repo, table):
    return [r[0] for r in run(conn, pgsql.SQL("select t::text collate \"C\" as r from {} t order by r")
                              .format(pgsql.Identifier(repo, table)))]


def stored_objects(admin):
    """Ids of the object tables stored in splitgraph_meta (objects whose data is here)."""
    return sorted(r[0] for r in run(admin, """select c.relname::text from pg_catalog.pg_class c
                                             where c.relnamespace = 'splitgraph_meta'::regnamespace
                                               and c.relkind in ('r', 'p') and c.relname ~ %s""", OBJECT_NAME))


def registered_objects(admin):
    return sorted(r[0] for r in run(admin, "select object_id from splitgraph_meta.objects"))


def state(admin):
    """Everything the extension keeps in a database, as sorted row texts per table: every table of
    splitgraph_meta (and of splitgraph_remote, if there is such a schema) but the object tables, the names of
    the object tables and of any other relation in those schemas, the schemas, foreign servers and user
    mappings. Two equal states mean that a call changed nothing."""
    snapshot = {}
    tables = run(admin, """select n.nspname::text, c.relname::text from pg_catalog.pg_class c
                           join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                           where n.nspname in ('splitgraph_meta', 'splitgraph_remote') and c.relkind in ('r', 'p')
                             and c.relname !~ %s order by 1, 2""", OBJECT_NAME)
    for schema, table in tables:
        snapshot[f"{schema}.{table}"] = sorted(r[0] for r in run(admin, pgsql.SQL(
            "select t::text from {} t").format(pgsql.Identifier(schema, table))))
    snapshot["relations"] = [r[0] for r in run(admin, """
        select n.nspname || '.' || c.relname from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname in ('splitgraph_meta', 'splitgraph_remote') order by 1""")]
    snapshot["schemas"] = [r[0] for r in run(admin, """select nspname::text from pg_catalog.pg_namespace
                                                      where nspname !~ '^pg_(temp|toast_temp)_' order by 1""")]
    snapshot["servers"] = [r[0] for r in run(admin, "select srvname::text from pg_catalog.pg_foreign_server "
                                                    "order by 1")]
    snapshot["user mappings"] = [r[0] for r in run(admin, "select srvname || ' ' || usename from "
                                                          "pg_catalog.pg_user_mappings order by 1")]
    return snapshot


def differences(before, after):
    """The parts of two states that differ (for assertion messages)."""
    return {k: {"before": before.get(k), "after": after.get(k)} for k in sorted(set(before) | set(after))
            if before.get(k) != after.get(k)}


def metadata(admin, repo):
    """What a repository is, engine-independently: images (hash, parent, comment), table versions (image, table,
    columns (ordinal, name, type, is_pk), object ids), tags and branches."""
    images = run(admin, "select image_hash, parent_id, comment from splitgraph_meta.images where repository = %s "
                        "order by 1", repo)
    tables = [(i, t, [c[:4] for c in json.loads(s)], o) for i, t, s, o in run(admin, """
        select image_hash, table_name, table_schema::text, object_ids from splitgraph_meta.tables
        where repository = %s order by 1, 2""", repo)]
    tags = run(admin, "select tag, image_hash from splitgraph_meta.tags where repository = %s order by 1", repo)
    branches = run(admin, "select branch, image_hash from splitgraph_meta.branches where repository = %s "
                          "order by 1", repo)
    return {"images": images, "tables": tables, "tags": tags, "branches": branches}


def objects_of_image(admin, repo, image):
    return sorted({o for r in run(admin, "select object_ids from splitgraph_meta.tables where repository = %s "
                                        "and image_hash = %s", repo, image) for o in r[0]})


def objects_of_repository(admin, repo):
    return sorted({o for r in run(admin, "select object_ids from splitgraph_meta.tables where repository = %s",
                                  repo) for o in r[0]})


def upstream(admin, repo):
    return run(admin, "select remote_name, remote_repository from splitgraph_meta.upstream where repository = %s",
               repo)


# ---------------------------------------------------------------------------------------------------------------
# Integrity of an engine's objects: an independent re-hash, and dump_object + load_object into a third database
# ---------------------------------------------------------------------------------------------------------------

def _lanes(hex_digest):
    raw = bytes.fromhex(hex_digest)
    return [raw[2 * i] * 256 + raw[2 * i + 1] for i in range(16)]


def _hex(lanes):
    return "".join("%04x" % (x % 65536) for x in lanes)


def ref_sum(digests):
    acc = [0] * 16
    for d in digests:
        acc = [a + b for a, b in zip(acc, _lanes(d), strict=True)]
    return _hex(acc)


def ref_object_id(insertion, deletion, columns):
    """The object id of DESIGN.md, computed with hashlib only."""
    content = _hex(a - b for a, b in zip(_lanes(insertion), _lanes(deletion), strict=True))
    schema = hashlib.sha256(repr([tuple(c) for c in columns]).encode("utf-8")).hexdigest()
    return "o" + hashlib.sha256((content + schema).encode("ascii")).hexdigest()[:62]


_PLAIN = {"integer", "bigint", "smallint", "text", "character varying", "boolean"}


def rehash(admin, object_id):
    """The id the rows of a stored object hash to (recomputed here, independently of the engine), or None when
    its columns have types whose text form this check does not reproduce."""
    schema, deletion = run(admin, "select table_schema, deletion_hash from splitgraph_meta.objects "
                                  "where object_id = %s", object_id)[0]
    if any(c[2] not in _PLAIN for c in schema):
        return None
    columns = pgsql.SQL(", ").join(pgsql.SQL("t.{}").format(pgsql.Identifier(c[1])) for c in schema)
    texts = [r[0] for r in run(admin, pgsql.SQL("select row({})::text from {} t where t.sg_ud_flag").format(
        columns, pgsql.Identifier("splitgraph_meta", object_id)))]
    return ref_object_id(ref_sum(hashlib.sha256(t.encode("utf-8")).hexdigest() for t in texts), deletion,
                         [c[:4] for c in schema])


def check_integrity(admin, scratch_cluster, scratch_prefix):
    """Assert that an engine's metadata and objects are whole: every object table has its metadata row, every
    registered object is stored or has a location, every table version names registered objects, every image's
    parent is an image of its repository, no staging table is left; and every stored object's rows hash to its
    id, both recomputed here and as load_object verifies them in a fresh third database. Returns the number of
    objects checked."""
    stored = set(stored_objects(admin))
    registered = set(registered_objects(admin))
    located = {r[0] for r in run(admin, "select object_id from splitgraph_meta.object_locations")}
    assert stored <= registered, f"object tables without metadata: {sorted(stored - registered)}"
    lost = registered - stored - located
    assert not lost, f"objects neither stored nor located: {sorted(lost)}"
    referenced = {o for r in run(admin, "select object_ids from splitgraph_meta.tables") for o in r[0]}
    assert referenced <= registered, f"table versions name unregistered objects: {sorted(referenced - registered)}"
    orphans = run(admin, """select i.repository, i.image_hash, i.parent_id from splitgraph_meta.images i
                            where i.parent_id is not null and not exists (
                                select from splitgraph_meta.images p
                                where p.repository = i.repository and p.image_hash = i.parent_id)""")
    assert orphans == [], f"images whose parent is missing: {orphans}"
    leftovers = run(admin, """select c.relname::text from pg_catalog.pg_class c
                              where c.relnamespace = 'splitgraph_meta'::regnamespace and c.relname like 'sg_tmp%%'""")
    assert leftovers == [], f"staging tables left behind: {leftovers}"
    duplicates = run(admin, "select object_id, count(*) from splitgraph_meta.objects group by 1 having count(*) > 1")
    assert duplicates == []
    for object_id in sorted(stored):
        again = rehash(admin, object_id)
        assert again in (None, object_id), f"the rows of object {object_id} hash to {again}"
    scratch = f"{scratch_prefix}_{next(_numbers)}"[:63]
    scratch_cluster.create_database(scratch)
    with connect(scratch_cluster.dsn(scratch)) as third:
        for object_id in sorted(stored):
            data = one(admin, "select splitgraph.dump_object(%s)", object_id)
            run(third, "select splitgraph.load_object(%s, %s)", object_id, data)
            mine = one(admin, "select splitgraph.object_info(%s)", object_id)
            theirs = one(third, "select splitgraph.object_info(%s)", object_id)
            for key in ("rows_inserted", "rows_deleted", "insertion_hash", "deletion_hash"):
                assert theirs[key] == mine[key], (object_id, key, mine[key], theirs[key])
    with connect(scratch_cluster.dsn("postgres")) as c:
        run(c, pgsql.SQL("drop database {} with (force)").format(pgsql.Identifier(scratch)))
    return len(stored)


# ---------------------------------------------------------------------------------------------------------------
# Messages, and watching another engine's sessions
# ---------------------------------------------------------------------------------------------------------------

class Messages:
    """Every notice, warning and error text a connection receives (primary, detail, hint, context)."""

    def __init__(self, conn):
        self.texts = []
        conn.add_notice_handler(self._add)

    def _add(self, diag):
        self.texts.extend(t for t in (diag.message_primary, diag.message_detail, diag.message_hint, diag.context)
                          if t)

    def error(self, error):
        d = error.diag
        self.texts.extend(t for t in (str(error), d.message_primary, d.message_detail, d.message_hint, d.context,
                                      d.internal_query) if t)


def attempt(conn, query, *args, messages=None):
    """Run a query that may fail: None when it succeeded, else the psycopg error (recorded in messages)."""
    try:
        run(conn, query, *args)
    except psycopg2.Error as error:
        if messages is not None:
            messages.error(error)
        return error
    return None


# Whether a backend of `user` in database `dbname` has started writing the extension's data: it holds a row
# lock-level lock on a relation of an extension schema, or an exclusive lock on a relation (one it created).
WRITING = """
select exists (
    select from pg_catalog.pg_locks l
    join pg_catalog.pg_stat_activity a on a.pid = l.pid
    left join pg_catalog.pg_class c on c.oid = l.relation
    left join pg_catalog.pg_namespace n on n.oid = c.relnamespace
    where a.usename = %s and a.datname = %s and l.locktype = 'relation' and l.granted
      and (l.mode = 'AccessExclusiveLock' or (l.mode = 'RowExclusiveLock' and n.nspname like 'splitgraph%%')))"""


IN_TRANSACTION = """
select exists (select from pg_catalog.pg_stat_activity a
               where a.usename = %s and a.datname = %s and a.xact_start is not null
                 and a.pid <> pg_catalog.pg_backend_pid())"""


def when_writing(observer_dsn, user, dbname, action, fallback=1.0, timeout=30.0):
    """A thread that calls action() as soon as a backend of `user` writes the extension's data in `dbname` (see
    WRITING), or once such a backend has been in a transaction for `fallback` seconds; returns (thread, outcome):
    outcome["how"] says which ("writing" or "fallback"), outcome["fired"] whether action() was called (not when
    nothing happened within `timeout` seconds)."""
    outcome = {"fired": False, "how": None}

    def watch():
        with connect(observer_dsn) as observer:
            begun, seen = time.monotonic(), None
            while time.monotonic() - begun < timeout:
                if one(observer, WRITING, user, dbname):
                    outcome["how"] = "writing"
                    break
                if one(observer, IN_TRANSACTION, user, dbname):
                    seen = seen or time.monotonic()
                    if time.monotonic() - seen > fallback:
                        outcome["how"] = "fallback"
                        break
                time.sleep(0.005)
            else:
                return
        action()
        outcome["fired"] = True

    thread = threading.Thread(target=watch, daemon=True)
    thread.start()
    return thread, outcome
