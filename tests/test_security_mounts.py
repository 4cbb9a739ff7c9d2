"""Issue 8, mounts: mounting is a privilege (role splitgraph_mount, granted by the owner), and even a role allowed
to mount reaches nothing with the extension owner's identity or files.

Attackers are fresh LOGIN roles (not superusers). Those meant to be allowed to mount are granted splitgraph_mount
when the extension defines it (today it does not: every role may mount), so the tests check the rules that hold
even for a role allowed to mount. No other database server is needed: the "remote" is this test cluster itself
(which trusts 127.0.0.1, like a trust or peer setup), or a fake server that records the password it is sent.

H3 a mountpoint named like a repository of another role's namespace.
H6 mounts run as the extension's owner: postgres_fdw's password rule for non-superusers is skipped, libpq
   options that read server files (passfile, sslkey, ...) are honoured, and user mappings are made for PUBLIC.
Medium/low: a plain role's mount installs file_fdw / mysql_fdw (into pg_catalog); a CSV mount keeps working after
   its owner loses pg_read_server_files.
"""
import pathlib
import shutil
import tempfile

import pytest
from psycopg2.extras import Json as Jsonb

from conftest import sql, value
from support.security import PasswordCatcher, attempt, server_file


@pytest.fixture(scope="module")
def files():
    """A folder the database server can read."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="sg-sec-files-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def remote_options(**more):
    """postgres_fdw options of an unreachable server, with credentials: enough for a mount with column lists,
    which connects to nothing."""
    return {"host": "127.0.0.1", "port": 1, "username": "nobody", "password": "not-a-secret", "dbname": "none",
            "remote_schema": "public", **more}


def schema_exists(conn, name):
    return value(conn, "select count(*) from pg_namespace where nspname = %s", name) == 1


def foreign_tables(conn, schema):
    return [r[0] for r in sql(conn, """select c.relname::text from pg_class c
                                       join pg_namespace n on n.oid = c.relnamespace
                                       where n.nspname = %s and c.relkind = 'f' order by 1""", schema)]


def write_csv(directory, name, content):
    path = pathlib.Path(directory) / name
    path.write_text(content)
    path.chmod(0o644)
    return str(path)


# ---------------------------------------------------------------------------------------------------------------
# Mounting is a privilege
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call", ["mount", "mount_postgres"])
def test_mount_needs_the_mount_privilege(conn, roles, call):
    """A role without splitgraph_mount gets 42501 from mount and mount_postgres (today every role mounts, and
    so probes any host and port the database server reaches); no mountpoint is made."""
    carol = roles.new("nomount")
    mountpoint = f"{carol.name}_mnt"
    o = remote_options()
    if call == "mount":
        error = attempt(carol.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint, Jsonb(o),
                        Jsonb({"t": {"c": "integer"}}))
    else:
        error = attempt(carol.conn, "select splitgraph.mount_postgres(%s, %s, %s, %s, %s, %s, %s, %s)", mountpoint,
                        o["host"], o["port"], o["username"], o["password"], o["dbname"], o["remote_schema"],
                        Jsonb({"t": {"c": "integer"}}))
    assert error is not None and error.pgcode == "42501", f"{call} by a role without splitgraph_mount: {error}"
    assert not schema_exists(conn, mountpoint)


# ---------------------------------------------------------------------------------------------------------------
# H3: squatting another role's namespace
# ---------------------------------------------------------------------------------------------------------------

def test_h3_mount_refuses_a_mountpoint_named_like_another_roles_repository(conn, roles):
    """H3: bob (allowed to mount) mounts "<alice>/future", the schema alice's repository of that name would use:
    42501, and no such schema exists afterwards."""
    alice = roles.new("h3alice")
    bob = roles.new("h3bob", mount=True)
    mountpoint = f"{alice.name}/future"
    error = attempt(bob.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint,
                    Jsonb(remote_options()), Jsonb({"t": {"c": "integer"}}))
    assert error is not None and error.pgcode == "42501", f"bob mounted in alice's namespace: {error}"
    assert not schema_exists(conn, mountpoint)


# ---------------------------------------------------------------------------------------------------------------
# H6: mounts run with the caller's identity
# ---------------------------------------------------------------------------------------------------------------

def test_h6_mount_of_the_local_server_as_postgres_needs_a_password(conn, roles, cluster, dbname):
    """H6: bob (allowed to mount) imports pg_catalog.pg_authid from this very server as user postgres, with no
    password (the cluster trusts 127.0.0.1). Run as bob, postgres_fdw refuses: "password is required" (2F003);
    no foreign table is made."""
    bob = roles.new("h6bob", mount=True)
    mountpoint = f"{bob.name}_local"
    options = {"host": "127.0.0.1", "port": cluster.port, "username": "postgres", "dbname": dbname,
               "remote_schema": "pg_catalog"}
    error = attempt(bob.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint, Jsonb(options),
                    Jsonb(["pg_authid"]))
    leaked = foreign_tables(conn, mountpoint)
    assert error is not None and error.pgcode == "2F003", \
        f"the mount connected as postgres without a password (foreign tables: {leaked}): {error}"
    assert leaked == []


def test_h6_mount_makes_user_mappings_for_the_caller_only(conn, roles):
    """H6: the credentials of bob's mount go into a user mapping for bob, never one for PUBLIC (which any role,
    and the extension's owner, would connect with)."""
    bob = roles.new("h6map", mount=True)
    mountpoint = f"{bob.name}_mnt"
    error = attempt(bob.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint,
                    Jsonb(remote_options()), Jsonb({"t": {"c": "integer"}}))
    mappings = sql(conn, """select distinct coalesce(r.rolname::text, 'PUBLIC') from pg_foreign_table f
                            join pg_class c on c.oid = f.ftrelid join pg_namespace n on n.oid = c.relnamespace
                            join pg_user_mapping m on m.umserver = f.ftserver
                            left join pg_roles r on r.oid = m.umuser
                            where n.nspname = %s order by 1""", mountpoint)
    if error is None:  # a mount that was made: its mappings are bob's
        assert [r[0] for r in mappings] == [bob.name], f"user mappings of bob's mount: {mappings}"
    else:
        assert mappings == [] and not schema_exists(conn, mountpoint)


def test_h6_passfile_of_the_server_is_never_read_for_a_plain_role(conn, roles, files):
    """H6 as filed: bob (allowed to mount) mounts a server he runs (a fake one that asks for a clear-text
    password) with "passfile" naming a file on the database server that holds a password. Refused with 42501
    before any connection: the fake server never receives the password."""
    bob = roles.new("h6pass", mount=True)
    passfile = server_file(files, f"pgpass-{bob.name}", "*:*:*:*:s3cret-from-a-server-file\n")
    with PasswordCatcher() as catcher:
        options = {"host": "127.0.0.1", "port": catcher.port, "username": "anyone", "dbname": "any",
                   "remote_schema": "public", "passfile": passfile}
        error = attempt(bob.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s)", f"{bob.name}_mnt",
                        Jsonb(options))
    assert catcher.passwords == [], f"the server's passfile was read and sent to bob's server: {catcher.passwords}"
    assert error is not None and error.pgcode == "42501", f"{error}"


@pytest.mark.parametrize("option", ["passfile", "sslkey", "sslcert", "sslrootcert", "sslcrl", "sslcrldir",
                                    "service"])
def test_h6_libpq_options_that_read_server_files_are_refused(conn, roles, files, option):
    """H6: a plain role's mount with a libpq option that makes the server read one of its files (or its service
    file) gets 42501, even with column lists (no connection at mount time); no mountpoint is made."""
    bob = roles.new("h6opt", mount=True)
    mountpoint = f"{bob.name}_mnt"
    target = server_file(files, f"{option}-{bob.name}", "secret\n")
    error = attempt(bob.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint,
                    Jsonb(remote_options(**{option: "x" if option == "service" else target})),
                    Jsonb({"t": {"c": "integer"}}))
    assert error is not None and error.pgcode == "42501", f"mount with {option} by a plain role: {error}"
    assert not schema_exists(conn, mountpoint)


# ---------------------------------------------------------------------------------------------------------------
# Medium and low: extensions installed by a plain role's mount; CSV mounts and pg_read_server_files
# ---------------------------------------------------------------------------------------------------------------

def test_a_plain_roles_csv_mount_never_installs_file_fdw(conn, roles, files):
    """A plain role's CSV mount (it may mount and read server files) on an engine without file_fdw does not
    install file_fdw (today: into pg_catalog); it fails telling to ask an administrator (55000 or 42501)."""
    sql(conn, "drop extension if exists file_fdw cascade")
    bob = roles.new("fdwcsv", mount=True, privileges=["pg_read_server_files"])
    path = write_csv(files, f"{bob.name}.csv", "id,name\n1,a\n")
    error = attempt(bob.conn, "select splitgraph.mount(%s, 'csv', %s)", f"{bob.name}_csv", Jsonb({"filename": path}))
    installed = sql(conn, "select e.extname::text, n.nspname::text from pg_extension e "
                          "join pg_namespace n on n.oid = e.extnamespace where e.extname = 'file_fdw'")
    assert installed == [], f"bob's mount installed {installed}"
    assert error is not None and error.pgcode in ("55000", "42501"), f"{error}"


def test_a_plain_roles_mysql_mount_never_installs_mysql_fdw(conn, roles):
    """The same for mysql_fdw (a mount with column lists connects to nothing)."""
    if not value(conn, "select count(*) from pg_available_extensions where name = 'mysql_fdw'"):
        pytest.skip("mysql_fdw is not available on this server")
    sql(conn, "drop extension if exists mysql_fdw cascade")
    bob = roles.new("fdwmy", mount=True)
    error = attempt(bob.conn, "select splitgraph.mount(%s, 'mysql_fdw', %s, %s)", f"{bob.name}_my",
                    Jsonb({"host": "127.0.0.1", "port": 1, "username": "u", "password": "p", "dbname": "d"}),
                    Jsonb({"t": {"c": "integer"}}))
    installed = sql(conn, "select e.extname::text, n.nspname::text from pg_extension e "
                          "join pg_namespace n on n.oid = e.extnamespace where e.extname = 'mysql_fdw'")
    assert installed == [], f"bob's mount installed {installed}"
    assert error is not None and error.pgcode in ("55000", "42501"), f"{error}"


def test_a_csv_mount_is_unreadable_once_its_owner_loses_pg_read_server_files(conn, roles, files):
    """bob (allowed to mount, with pg_read_server_files) mounts a CSV file (file_fdw installed by the
    administrator); once pg_read_server_files is revoked from him, reading the mount gives 42501."""
    sql(conn, "create extension if not exists file_fdw")
    bob = roles.new("csvrev", mount=True, privileges=["pg_read_server_files"])
    mountpoint = f"{bob.name}_csv"
    path = write_csv(files, f"{bob.name}.csv", "id,secret\n1,only-for-file-readers\n")
    sql(bob.conn, "select splitgraph.mount(%s, 'csv', %s)", mountpoint, Jsonb({"filename": path, "table": "f"}))
    assert value(bob.conn, f'select count(*) from "{mountpoint}".f') == 1
    sql(conn, f'revoke pg_read_server_files from "{bob.name}"')
    reader = bob.connect()
    error = attempt(reader, f'select secret from "{mountpoint}".f')
    assert error is not None and error.pgcode == "42501", \
        f"bob still reads the server file after losing pg_read_server_files: {error}"
