"""Mounts and roles, beyond the findings of issue 8 (tests/test_security_mounts.py): how column types given in
`tables` are resolved, who a mount runs as, which foreign-data wrappers an administrator's mount installs and
where, what a CSV mount of a plain role is made of, what unmount drops (and refuses to), and the helpers that
mount() calls, called directly.

No remote server is needed: mounts with column lists (a postgres_fdw server on port 1) connect to nothing.
"""
import pathlib
import shutil
import tempfile

import pytest
from psycopg2 import sql as pgsql
from psycopg2.extras import Json as Jsonb

from conftest import fails, sql, value
from support.security import Roles, server_name


@pytest.fixture
def roles(cluster, dbname):
    made = Roles(cluster, dbname)
    yield made
    made.cleanup()


@pytest.fixture(scope="module")
def files():
    d = pathlib.Path(tempfile.mkdtemp(prefix="sg-mntpriv-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write_csv(directory, name, content):
    path = pathlib.Path(directory) / name
    path.write_text(content)
    path.chmod(0o644)
    return str(path)


NOWHERE = {"host": "127.0.0.1", "port": 1, "username": "nobody", "password": "not-a-secret", "dbname": "none",
           "remote_schema": "public"}


def schema_exists(conn, name):
    return value(conn, "select count(*) from pg_namespace where nspname = %s", name) == 1


def server_exists(conn, mountpoint):
    return value(conn, "select count(*) from pg_foreign_server where srvname = %s", server_name(mountpoint)) == 1


def column_types(conn, schema, table):
    return [r[0] for r in sql(conn, """select format_type(atttypid, atttypmod) from pg_attribute
                                       where attrelid = format('%%I.%%I', %s::text, %s::text)::regclass
                                         and attnum > 0 and not attisdropped order by attnum""", schema, table)]


# ---------------------------------------------------------------------------------------------------------------
# Column types: resolved against the catalog, with their modifiers
# ---------------------------------------------------------------------------------------------------------------

TYPES = ["numeric(6,2)", "timestamp(3) with time zone", "interval day to second(3)", "interval(2)",
         "interval year to month", "varchar(10)[]", "character varying(10) array", "char", "bit", "bit varying(5)",
         "float(24)", "DOUBLE PRECISION", "int4range", "text [ ]", '"public"."mood"', "public.mood[]",
         "TIME(2) WITHOUT TIME ZONE", "pg_catalog.int8"]


def test_column_types_are_resolved_with_their_modifiers(conn):
    """Each type of `tables` becomes the type PostgreSQL itself makes of that text (compared with a plain
    table declared with the same texts), spelled by the catalog."""
    sql(conn, "do $$ begin create type public.mood as enum ('sad', 'happy'); exception when duplicate_object "
              "then null; end $$")
    columns = {f"c{i}": t for i, t in enumerate(TYPES)}
    sql(conn, "select splitgraph.mount('mnt_types', 'postgres_fdw', %s, %s)", Jsonb(NOWHERE), Jsonb({"t": columns}))
    sql(conn, "drop table if exists public.types_reference")
    sql(conn, "create table public.types_reference (" + ", ".join(f"{c} {t}" for c, t in columns.items()) + ")")
    assert column_types(conn, "mnt_types", "t") == column_types(conn, "public", "types_reference")
    assert column_types(conn, "mnt_types", "t")[:4] == ["numeric(6,2)", "timestamp(3) with time zone",
                                                        "interval day to second(3)", "interval(2)"]
    sql(conn, "select splitgraph.unmount('mnt_types')")


@pytest.mark.parametrize("type_", ["int; select 1", "int -- comment", "nosuch_type", "public.nosuch",
                                   "text) server x; --", "", "  ", "numeric(6,2", "int4(", "int[", "x y z",
                                   "numeric('6')", "setof int", "integer % 2"])
def test_malformed_or_unknown_types_are_42704(conn, type_):
    fails(conn, "select splitgraph.mount('mnt_badtype', 'postgres_fdw', %s, %s)", Jsonb(NOWHERE),
          Jsonb({"t": {"c": type_}}), sqlstate="42704")
    assert not schema_exists(conn, "mnt_badtype")


# ---------------------------------------------------------------------------------------------------------------
# Who a mount runs as
# ---------------------------------------------------------------------------------------------------------------

def test_a_mount_runs_as_its_caller(conn, roles):
    """A registered handler (owned by a superuser) runs as the role that mounts, which owns what it makes."""
    sql(conn, "create schema if not exists mnt_priv_handlers")
    sql(conn, """create or replace function mnt_priv_handlers.whoami(mountpoint text, options jsonb, tables jsonb)
                 returns void language plpgsql as $f$
                 begin
                     execute format('create table %I.who as select current_user::text as who', mountpoint);
                 end $f$""")
    sql(conn, "select splitgraph.register_mount_handler('whoami', "
              "'mnt_priv_handlers.whoami(text, jsonb, jsonb)'::regprocedure)")
    bob = roles.new("mntwho", mount=True)
    mountpoint = f"{bob.name}_who"
    error = fails(bob.conn, "select splitgraph.mount(%s, 'whoami', '{}')", mountpoint, sqlstate="42501")
    assert "USAGE on schema mnt_priv_handlers" in (error.diag.message_hint or ""), error.diag.message_hint
    sql(conn, "grant usage on schema mnt_priv_handlers to splitgraph_mount")
    sql(bob.conn, "select splitgraph.mount(%s, 'whoami', '{}')", mountpoint)
    assert value(bob.conn, f'select who from "{mountpoint}".who') == bob.name
    assert value(conn, "select nspowner::regrole::text from pg_namespace where nspname = %s", mountpoint) == bob.name
    sql(bob.conn, "select splitgraph.unmount(%s)", mountpoint)
    assert not schema_exists(conn, mountpoint)


def test_an_administrator_acting_as_a_role_mounts_for_that_role(conn, roles):
    """SET ROLE bob in a superuser's session: the mount is bob's (schema, server, user mapping)."""
    bob = roles.new("mntset", mount=True)
    mountpoint = f"{bob.name}_set"
    sql(conn, pgsql.SQL("set role {}").format(pgsql.Identifier(bob.name)))
    try:
        sql(conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint, Jsonb(NOWHERE),
            Jsonb({"t": {"c": "int"}}))
    finally:
        sql(conn, "reset role")
    assert value(conn, "select nspowner::regrole::text from pg_namespace where nspname = %s", mountpoint) == bob.name
    assert value(conn, "select srvowner::regrole::text from pg_foreign_server where srvname = %s",
                 server_name(mountpoint)) == bob.name
    assert [r[0] for r in sql(conn, "select usename::text from pg_user_mappings where srvname = %s",
                              server_name(mountpoint))] == [bob.name]
    sql(bob.conn, "select splitgraph.unmount(%s)", mountpoint)
    assert not server_exists(conn, mountpoint)


def test_a_handler_whose_function_changed_owner_is_refused(conn, roles):
    """M1 after registration: a handler function handed to a plain role later is refused at mount time."""
    eve = roles.new("mntgift", mount=True)
    sql(conn, "create schema if not exists mnt_priv_handlers")
    sql(conn, """create or replace function mnt_priv_handlers.gift(mountpoint text, options jsonb, tables jsonb)
                 returns void language plpgsql as $f$ begin null; end $f$""")
    sql(conn, "select splitgraph.register_mount_handler('gift', "
              "'mnt_priv_handlers.gift(text, jsonb, jsonb)'::regprocedure)")
    sql(conn, pgsql.SQL("alter function mnt_priv_handlers.gift(text, jsonb, jsonb) owner to {}").format(
        pgsql.Identifier(eve.name)))
    try:
        fails(eve.conn, "select splitgraph.mount(%s, 'gift', '{}')", f"{eve.name}_gift", sqlstate="42501")
        fails(conn, "select splitgraph.mount('mnt_gift', 'gift', '{}')", sqlstate="42501")
        assert not schema_exists(conn, "mnt_gift")
    finally:
        sql(conn, "alter function mnt_priv_handlers.gift(text, jsonb, jsonb) owner to postgres")


def test_file_options_are_refused_through_extra_server_args_too(conn, roles, files):
    bob = roles.new("mntextra", mount=True)
    fails(bob.conn, "select splitgraph.mount_postgres(%s, '127.0.0.1', 1, 'u', 'p', 'd', 'public', %s, %s)",
          f"{bob.name}_x", Jsonb({"t": {"c": "int"}}), Jsonb({"sslrootcert": str(files / "none")}), sqlstate="42501")
    assert not schema_exists(conn, f"{bob.name}_x")
    # an administrator may
    sql(conn, "select splitgraph.mount_postgres('mnt_admin_ssl', '127.0.0.1', 1, 'u', 'p', 'd', 'public', %s, %s)",
        Jsonb({"t": {"c": "int"}}), Jsonb({"sslrootcert": str(files / "none")}))
    sql(conn, "select splitgraph.unmount('mnt_admin_ssl')")


# ---------------------------------------------------------------------------------------------------------------
# Foreign-data wrappers an administrator's mount installs
# ---------------------------------------------------------------------------------------------------------------

def extension_schema(conn, name):
    return value(conn, "select extnamespace::regnamespace::text from pg_extension where extname = %s", name)


def test_an_administrators_mount_installs_wrappers_into_splitgraph_fdw(conn, files):
    sql(conn, "drop extension if exists file_fdw cascade")
    path = write_csv(files, "fdw.csv", "a\n1\n")
    sql(conn, "select splitgraph.mount('mnt_fdw_csv', 'csv', %s)", Jsonb({"filename": path}))
    assert extension_schema(conn, "file_fdw") == "splitgraph_fdw"
    assert value(conn, "select a from mnt_fdw_csv.fdw") == 1
    sql(conn, "select splitgraph.unmount('mnt_fdw_csv')")
    if not value(conn, "select count(*) from pg_available_extensions where name = 'mysql_fdw'"):
        return
    sql(conn, "drop extension if exists mysql_fdw cascade")
    sql(conn, "select splitgraph.mount('mnt_fdw_my', 'mysql_fdw', %s, %s)",
        Jsonb({"host": "127.0.0.1", "port": 1, "username": "u", "password": "p", "dbname": "d"}),
        Jsonb({"t": {"c": "int"}}))
    assert extension_schema(conn, "mysql_fdw") == "splitgraph_fdw"
    assert value(conn, "select has_foreign_data_wrapper_privilege('splitgraph_mount', 'mysql_fdw', 'USAGE')")
    sql(conn, "select splitgraph.unmount('mnt_fdw_my')")


def test_a_plain_roles_mysql_mount_needs_usage_on_the_wrapper(conn, roles):
    if not value(conn, "select count(*) from pg_available_extensions where name = 'mysql_fdw'"):
        pytest.skip("mysql_fdw is not available on this server")
    sql(conn, "create extension if not exists mysql_fdw")
    sql(conn, "revoke usage on foreign data wrapper mysql_fdw from splitgraph_mount")
    bob = roles.new("mntmy", mount=True)
    options = Jsonb({"host": "127.0.0.1", "port": 1, "username": "u", "password": "p", "dbname": "d"})
    try:
        error = fails(bob.conn, "select splitgraph.mount(%s, 'mysql_fdw', %s, %s)", f"{bob.name}_my", options,
                      Jsonb({"t": {"c": "int"}}), sqlstate="42501")
        assert "splitgraph_mount" in (error.diag.message_hint or "")
        sql(conn, "grant usage on foreign data wrapper mysql_fdw to splitgraph_mount")
        sql(bob.conn, "select splitgraph.mount(%s, 'mysql_fdw', %s, %s)", f"{bob.name}_my", options,
            Jsonb({"t": {"c": "int"}}))
        assert value(conn, "select srvowner::regrole::text from pg_foreign_server where srvname = %s",
                     server_name(f"{bob.name}_my")) == bob.name
        sql(bob.conn, "select splitgraph.unmount(%s)", f"{bob.name}_my")
    finally:
        sql(conn, "grant usage on foreign data wrapper mysql_fdw to splitgraph_mount")


# ---------------------------------------------------------------------------------------------------------------
# A plain role's CSV mount
# ---------------------------------------------------------------------------------------------------------------

def test_a_plain_roles_csv_mount_is_the_extensions_and_readable_by_file_readers(conn, roles, files):
    """The foreign table is the extension owner's (so its owner cannot keep reading without the right, nor
    change its file), SELECT granted to pg_read_server_files; the schema is the role's; unmount drops both."""
    sql(conn, "create extension if not exists file_fdw")
    bob = roles.new("mntcsv", mount=True, privileges=["pg_read_server_files"])
    mountpoint = f"{bob.name}_csv"
    path = write_csv(files, f"{bob.name}.csv", "id,v\n1,a\n2,b\n")
    sql(bob.conn, "select splitgraph.mount(%s, 'csv', %s)", mountpoint, Jsonb({"filename": path, "table": "f"}))
    table = f'"{mountpoint}".f'
    assert value(conn, "select relowner::regrole::text from pg_class where oid = %s::regclass", table) == "postgres"
    assert value(conn, "select has_table_privilege('pg_read_server_files', %s, 'SELECT')", table)
    assert value(bob.conn, f"select count(*) from {table}") == 2
    fails(bob.conn, f"alter foreign table {table} options (set filename '/etc/passwd')", sqlstate="42501")
    sql(bob.conn, f"grant select on {table} to public")   # grants nothing (a warning): bob does not own it
    assert value(conn, "select relacl::text from pg_class where oid = %s::regclass", table) \
        == "{postgres=arwdDxt/postgres,pg_read_server_files=r/postgres}"
    sql(bob.conn, "select splitgraph.unmount(%s)", mountpoint)
    assert not schema_exists(conn, mountpoint) and not server_exists(conn, mountpoint)


def test_the_csv_handler_called_directly_needs_a_csv_mount_being_made(conn, roles, files):
    bob = roles.new("mntcsvdirect", mount=True, privileges=["pg_read_server_files"])
    path = write_csv(files, f"{bob.name}.csv", "id\n1\n")
    fails(bob.conn, "select splitgraph_internal.mount_csv(%s, %s, null)", f"{bob.name}_own",
          Jsonb({"filename": path}), sqlstate="55000")
    alice = roles.new("mntcsvvictim", mount=True)
    sql(alice.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", f"{alice.name}_m", Jsonb(NOWHERE),
        Jsonb({"t": {"c": "int"}}))
    fails(bob.conn, "select splitgraph_internal.mount_csv(%s, %s, null)", f"{alice.name}_m",
          Jsonb({"filename": path}), sqlstate="55000")


def test_mount_begin_acts_only_for_roles_the_session_can_become(conn, roles):
    bob = roles.new("mntbegin", mount=True)
    fails(bob.conn, "select splitgraph_internal.mount_begin(%s, 'postgres_fdw', true, 'postgres')",
          f"{bob.name}_b", sqlstate="42501")
    assert not schema_exists(conn, f"{bob.name}_b")


# ---------------------------------------------------------------------------------------------------------------
# unmount
# ---------------------------------------------------------------------------------------------------------------

def test_unmount_refuses_to_drop_what_depends_on_the_mount_from_outside(conn, roles):
    """A view of another schema over a mounted table, or a foreign table elsewhere on the mount's server: 2BP01,
    nothing dropped; once they are gone, unmount drops the mountpoint, its server and user mapping."""
    bob = roles.new("mntdep", mount=True)
    mountpoint = f"{bob.name}_dep"
    sql(bob.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint, Jsonb(NOWHERE),
        Jsonb({"t": {"c": "int"}}))
    sql(bob.conn, f'create view "{bob.schema}".v as select * from "{mountpoint}".t')
    fails(bob.conn, "select splitgraph.unmount(%s)", mountpoint, sqlstate="2BP01")
    assert value(conn, "select to_regclass(format('%%I.v', %s::text)) is not null", bob.schema)
    sql(bob.conn, f'drop view "{bob.schema}".v')
    sql(bob.conn, f'create foreign table "{bob.schema}".elsewhere (c int) server "{server_name(mountpoint)}"')
    error = fails(conn, "select splitgraph.unmount(%s)", mountpoint, sqlstate="2BP01")
    assert "elsewhere" in error.diag.message_primary
    sql(bob.conn, f'drop foreign table "{bob.schema}".elsewhere')
    sql(bob.conn, "select splitgraph.unmount(%s)", mountpoint)
    assert not schema_exists(conn, mountpoint) and not server_exists(conn, mountpoint)
    assert value(conn, "select count(*) from pg_user_mappings where srvname = %s", server_name(mountpoint)) == 0


def test_unmount_of_a_mountpoint_dropped_by_hand(conn, roles):
    """The schema went with DROP SCHEMA: unmount still drops the server and the record, and the name can be
    mounted again."""
    bob = roles.new("mnthand", mount=True)
    mountpoint = f"{bob.name}_h"
    mount = ("select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint, Jsonb(NOWHERE),
             Jsonb({"t": {"c": "int"}}))
    sql(bob.conn, *mount)
    sql(bob.conn, f'drop schema "{mountpoint}" cascade')
    sql(bob.conn, *mount)   # overwrite: the old record and server go
    sql(bob.conn, f'drop schema "{mountpoint}" cascade')
    sql(bob.conn, "select splitgraph.unmount(%s)", mountpoint)
    assert not server_exists(conn, mountpoint)
    assert value(conn, "select count(*) from splitgraph_meta.mounts where mountpoint = %s", mountpoint) == 0


def test_a_server_left_behind_is_replaced(conn, roles):
    """A server named like the mountpoint's that no foreign table uses is a leftover: a new mount replaces it."""
    bob = roles.new("mntleft", mount=True)
    mountpoint = f"{bob.name}_l"
    sql(conn, f'create server "{server_name(mountpoint)}" foreign data wrapper postgres_fdw')
    sql(bob.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint, Jsonb(NOWHERE),
        Jsonb({"t": {"c": "int"}}))
    assert value(conn, "select srvowner::regrole::text from pg_foreign_server where srvname = %s",
                 server_name(mountpoint)) == bob.name
    # another role's leftover stays: its owner or an administrator drops it
    alice = roles.new("mntleftalice", mount=True)
    other = f"{alice.name}_l"
    sql(conn, f'create server "{server_name(other)}" foreign data wrapper postgres_fdw')
    sql(conn, pgsql.SQL("alter server {} owner to {}").format(pgsql.Identifier(server_name(other)),
                                                            pgsql.Identifier(bob.name)))
    fails(alice.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", other, Jsonb(NOWHERE),
          Jsonb({"t": {"c": "int"}}), sqlstate="42710")
    assert server_exists(conn, other) and not schema_exists(conn, other)


def test_a_mountpoint_named_like_a_repository_is_refused(conn):
    sql(conn, "select splitgraph.init('mnt_priv_repo')")
    sql(conn, "select splitgraph.uncheckout('mnt_priv_repo')")
    fails(conn, "select splitgraph.mount('mnt_priv_repo', 'postgres_fdw', %s, %s)", Jsonb(NOWHERE),
          Jsonb({"t": {"c": "int"}}), sqlstate="42710")
    assert not schema_exists(conn, "mnt_priv_repo")
    sql(conn, "select splitgraph.rm('mnt_priv_repo')")
