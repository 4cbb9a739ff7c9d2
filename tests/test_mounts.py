"""Mounts against real servers: a second PostgreSQL cluster whose role logs in with a password (scram), a MariaDB
server (Debian's mariadb-server, started by the tests), and CSV files on the database server; mount, import,
commit and unmount end to end; mount handlers; errors; and that passwords stay out of errors, logs and
catalogs others can read.

Every password is passed as a bind parameter, never inside SQL text, so the server log would only hold one if
the extension put it there."""
import os
import pathlib
import secrets
import shutil
import tempfile

import psycopg2
import pytest
from psycopg2 import sql as pgsql
from psycopg2.extras import Json as Jsonb

from conftest import fails, new_cluster, objects_of, sql, value
from support import driver  # noqa: E402
from support import mariadb as maria

ROLE_USER, ROLE_READER = "mnt_user", "mnt_reader"   # not superusers; the reader has pg_read_server_files


# ---------------------------------------------------------------------------------------------------------------
# Servers and files
# ---------------------------------------------------------------------------------------------------------------

class Remote:
    """The second PostgreSQL cluster: database shop, schema store, role remote_user with a password."""
    user = "remote_user"
    dbname = "shop"
    schema = "store"

    def __init__(self, cluster, password):
        self.cluster, self.password = cluster, password
        self.host, self.port = "127.0.0.1", cluster.port

    def connect(self):
        """As the cluster's superuser (trusted locally), to look at and change the remote data."""
        return driver.connect(self.cluster.dsn(self.dbname), autocommit=True)

    def options(self, **more):
        return {"host": self.host, "port": self.port, "username": self.user, "password": self.password,
                "dbname": self.dbname, "remote_schema": self.schema, **more}


@pytest.fixture(scope="module")
def remote():
    cluster = new_cluster("remote")
    try:
        password = "pg'" + secrets.token_hex(10)           # a quote, to prove the quoting
        # remote_user must log in with its password (scram) even from 127.0.0.1, which the rest of the cluster trusts
        hba = cluster.data / "pg_hba.conf"
        lines = hba.read_text().splitlines()
        first_rule = next(i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#"))
        lines.insert(first_rule, f"host all {Remote.user} 127.0.0.1/32 scram-sha-256")
        hba.write_text("\n".join(lines) + "\n")
        with driver.connect(cluster.dsn(), autocommit=True) as c:
            c.execute("set password_encryption = 'scram-sha-256'")
            c.execute(pgsql.SQL("create role {} login password {}").format(pgsql.Identifier(Remote.user),
                                                                           pgsql.Literal(password)))
            c.execute("create database shop")
            c.execute("select pg_reload_conf()")
        with driver.connect(cluster.dsn("shop"), autocommit=True) as c:
            c.execute(f"""
                create schema store authorization {Remote.user};
                set role {Remote.user};
                create table store.products (id int primary key, name text not null, price numeric(8,2));
                insert into store.products values (1, 'apple', 0.50), (2, 'pear', 0.75), (3, 'plum', null);
                create table store.stock (product_id int, qty bigint, checked date);
                insert into store.stock values (1, 10, '2024-01-01'), (1, 10, '2024-01-01'), (2, 0, null);
                create table store.ledger (id int primary key, item text, amount numeric(10,2), at timestamptz);
                insert into store.ledger select i, 'item ' || i, i * 1.25, '2024-01-01 00:00:00+00'::timestamptz
                                                                          + i * interval '1 hour'
                                         from generate_series(1, 50) i;
            """)
        r = Remote(cluster, password)
        # the setup the tests rely on: no password, no login; the password, a login
        with pytest.raises(psycopg2.OperationalError):
            driver.connect(cluster.dsn("shop", user=r.user), connect_timeout=10).close()
        with driver.connect(cluster.dsn("shop", user=r.user) + f" password={_conninfo_quote(password)}") as c:
            assert c.execute("select count(*) from store.products").fetchone()[0] == 3
        yield r
    finally:
        if os.environ.get("SG_TEST_KEEP"):
            print(f"\nremote cluster kept in {cluster.dir} (port {cluster.port})")
            cluster.stop()
        else:
            cluster.destroy()


def _conninfo_quote(text):
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


class MySQL:
    database, user = "sales", "sg_mount"

    def __init__(self, server, password):
        self.server, self.password = server, password

    def options(self, **more):
        return {"host": "127.0.0.1", "port": self.server.port, "username": self.user, "password": self.password,
                "dbname": self.database, **more}

    def sql(self, statements):
        return self.server.sql(statements, database=self.database)


@pytest.fixture(scope="module")
def mysql():
    password = "my'" + secrets.token_hex(10)
    with maria.running(MySQL.database, MySQL.user, password) as server:
        db = MySQL(server, password)
        db.sql("""
            create table orders (id int primary key, customer varchar(50) not null, amount decimal(10,2),
                                 placed date, at datetime, paid tinyint(1), big bigint, ratio double);
            insert into orders values (1, 'ann', 10.50, '2024-01-02', '2024-01-02 10:00:00', 1, 9000000000, 0.5),
                                      (2, 'bob', null, null, null, 0, null, null),
                                      (3, 'cé', 3.25, '2024-02-29', '2024-02-29 23:59:59', 1, -1, 2.25);
            create table items (sku varchar(20) primary key, qty int);
            insert into items values ('a', 1), ('b', 2);
            create table events (id int primary key, kind varchar(10), n int);
            insert into events values (1, 'x', 10), (2, 'y', 20), (3, 'z', 30);
        """)
        yield db


@pytest.fixture(scope="module")
def csv_dir():
    """A folder the database server (user postgres) can read."""
    d = pathlib.Path(tempfile.mkdtemp(prefix="sg-csv-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


def write_csv(directory, name, content, encoding="utf-8"):
    path = directory / name
    path.write_bytes(content.encode(encoding))
    path.chmod(0o644)
    return str(path)


@pytest.fixture(scope="module")
def roles(cluster):
    for role in (ROLE_USER, ROLE_READER):
        cluster.psql(f"""do $$ begin
                           if not exists (select from pg_roles where rolname = '{role}') then
                             create role {role} login nosuperuser nocreatedb nocreaterole;
                           end if;
                         end $$""")
    cluster.psql(f"grant pg_read_server_files to {ROLE_READER}")
    cluster.psql(f"grant splitgraph_mount to {ROLE_USER}, {ROLE_READER}")   # mounting is a privilege
    return ROLE_USER, ROLE_READER


def connect_as(cluster, dbname, role):
    return driver.connect(cluster.dsn(dbname, user=role), autocommit=True)


# ---------------------------------------------------------------------------------------------------------------
# Helpers
# ---------------------------------------------------------------------------------------------------------------

def error_text(error):
    """Everything a client sees of an error."""
    d = error.diag
    return "\n".join(str(x) for x in (error, d.message_primary, d.message_detail, d.message_hint, d.context,
                                       d.internal_query, d.statement_position) if x)


def foreign_tables(conn, schema):
    return [r[0] for r in sql(conn, """select c.relname::text from pg_class c
                                       join pg_namespace n on n.oid = c.relnamespace
                                       where n.nspname = %s and c.relkind = 'f' order by 1""", schema)]


def columns(conn, schema, table):
    return sql(conn, """select attname::text, format_type(atttypid, atttypmod) from pg_attribute
                        where attrelid = format('%%I.%%I', %s::text, %s::text)::regclass and attnum > 0
                          and not attisdropped order by attnum""", schema, table)


def schema_exists(conn, schema):
    return value(conn, "select count(*) from pg_namespace where nspname = %s", schema) == 1


def mount_servers(conn):
    return {r[0] for r in sql(conn, "select srvname::text from pg_foreign_server where srvname like 'sg_mount_%%'")}


def object_count(conn):
    return value(conn, "select count(*) from splitgraph_meta.objects")


def mount_pg(conn, remote, mountpoint, tables=None, password=None):
    sql(conn, "select splitgraph.mount_postgres(%s, %s, %s, %s, %s, %s, %s, %s)", mountpoint, remote.host,
        remote.port, remote.user, remote.password if password is None else password, remote.dbname, remote.schema,
        None if tables is None else Jsonb(tables))


def mount(conn, mountpoint, handler, options, tables=None, **kwargs):
    extra = "".join(f", {k} => %s" for k in kwargs)
    sql(conn, f"select splitgraph.mount(%s, %s, %s, %s{extra})", mountpoint, handler, Jsonb(options),
        None if tables is None else Jsonb(tables), *kwargs.values())


# ---------------------------------------------------------------------------------------------------------------
# postgres_fdw against a second cluster
# ---------------------------------------------------------------------------------------------------------------

def test_mount_postgres_all_tables(conn, remote):
    mount_pg(conn, remote, "mnt_pg_all")
    assert foreign_tables(conn, "mnt_pg_all") == ["ledger", "products", "stock"]
    assert columns(conn, "mnt_pg_all", "products") == [("id", "integer"), ("name", "text"),
                                                       ("price", "numeric(8,2)")]
    assert [tuple(map(str, r)) for r in sql(conn, "select id, name, price from mnt_pg_all.products order by id")] \
        == [("1", "apple", "0.50"), ("2", "pear", "0.75"), ("3", "plum", "None")]
    assert value(conn, "select count(*) from mnt_pg_all.stock") == 3
    assert value(conn, "select handler from splitgraph_meta.mounts where mountpoint = 'mnt_pg_all'") \
        == "postgres_fdw"


def test_mount_postgres_listed_tables(conn, remote):
    mount_pg(conn, remote, "mnt_pg_list", tables=["stock", "ledger"])
    assert foreign_tables(conn, "mnt_pg_list") == ["ledger", "stock"]
    assert sql(conn, "select product_id, qty, checked::text from mnt_pg_list.stock order by 1, 2") == [
        (1, 10, "2024-01-01"), (1, 10, "2024-01-01"), (2, 0, None)]


def test_mount_postgres_explicit_columns(conn, remote):
    mount_pg(conn, remote, "mnt_pg_cols", tables={"products": {"id": "bigint", "name": "varchar(10)"}})
    assert foreign_tables(conn, "mnt_pg_cols") == ["products"]
    assert columns(conn, "mnt_pg_cols", "products") == [("id", "bigint"), ("name", "character varying(10)")]
    assert sql(conn, "select id, name from mnt_pg_cols.products order by id") == [
        (1, "apple"), (2, "pear"), (3, "plum")]


def test_mount_postgres_extra_server_args(conn, remote):
    sql(conn, "select splitgraph.mount_postgres(%s, %s, %s, %s, %s, %s, %s, %s, %s)", "mnt_pg_extra", remote.host,
        remote.port, remote.user, remote.password, remote.dbname, remote.schema, Jsonb(["products"]),
        Jsonb({"fetch_size": "7"}))
    opts = value(conn, """select s.srvoptions from pg_foreign_table f join pg_foreign_server s on s.oid = f.ftserver
                          where f.ftrelid = 'mnt_pg_extra.products'::regclass""")
    assert "fetch_size=7" in opts
    assert value(conn, "select count(*) from mnt_pg_extra.products") == 3


def test_mount_postgres_wrong_password_never_shows_it(conn, remote):
    wrong = "wrong'" + secrets.token_hex(10)
    servers = mount_servers(conn)
    # IMPORT FOREIGN SCHEMA connects at mount time
    error = fails(conn, "select splitgraph.mount_postgres(%s, %s, %s, %s, %s, %s, %s)", "mnt_pg_bad", remote.host,
                  remote.port, remote.user, wrong, remote.dbname, remote.schema)
    assert "password authentication failed" in error_text(error)
    assert wrong not in error_text(error) and remote.password not in error_text(error)
    assert not schema_exists(conn, "mnt_pg_bad"), "a failed mount leaves no schema"
    assert mount_servers(conn) == servers, "nor a foreign server"
    # with the columns given, the first query connects
    mount_pg(conn, remote, "mnt_pg_bad", tables={"products": {"id": "int"}}, password=wrong)
    error = fails(conn, "select * from mnt_pg_bad.products")
    assert "password authentication failed" in error_text(error)
    assert wrong not in error_text(error)
    sql(conn, "select splitgraph.unmount('mnt_pg_bad')")


def test_mount_postgres_bad_host_error_has_no_password(conn, remote):
    error = fails(conn, "select splitgraph.mount_postgres(%s, %s, %s, %s, %s, %s, %s)", "mnt_pg_nohost", "127.0.0.1",
                  1, remote.user, remote.password, remote.dbname, remote.schema)
    assert remote.password not in error_text(error)
    assert not schema_exists(conn, "mnt_pg_nohost")


# ---------------------------------------------------------------------------------------------------------------
# Credentials: in a user mapping only
# ---------------------------------------------------------------------------------------------------------------

def test_password_is_in_the_user_mapping_not_the_server(conn, remote, mysql):
    mount_pg(conn, remote, "mnt_cred_pg", tables=["products"])
    mount(conn, "mnt_cred_my", "mysql_fdw", mysql.options(), ["items"])
    for mountpoint, secret in (("mnt_cred_pg", remote.password), ("mnt_cred_my", mysql.password)):
        server = value(conn, """select s.srvname::text from pg_foreign_table f join pg_foreign_server s
                                on s.oid = f.ftserver join pg_class c on c.oid = f.ftrelid
                                join pg_namespace n on n.oid = c.relnamespace where n.nspname = %s limit 1""",
                       mountpoint)
        mapping = value(conn, "select umoptions from pg_user_mappings where srvname = %s and usename = current_user",
                        server)
        assert any(secret in o for o in mapping), "the password is in the user mapping of the role that mounted"
        assert value(conn, "select count(*) from pg_user_mappings where srvname = %s and usename = 'public'",
                     server) == 0, "never in one FOR PUBLIC"
    everything = sql(conn, """select coalesce(array_to_string(srvoptions, ' '), '') from pg_foreign_server
                              union all select coalesce(array_to_string(ftoptions, ' '), '') from pg_foreign_table
                              union all select coalesce(array_to_string(attfdwoptions, ' '), '') from pg_attribute
                              where attfdwoptions is not null""")
    for (text,) in everything:
        assert remote.password not in text and mysql.password not in text


def test_non_superusers_cannot_read_the_credentials(cluster, dbname, conn, remote, roles):
    mount_pg(conn, remote, "mnt_cred_hidden", tables=["products"])
    with connect_as(cluster, dbname, ROLE_USER) as c:
        rows = sql(c, "select srvname::text, umoptions from pg_user_mappings where srvname like 'sg_mount_%%'")
        assert rows, "the mappings are listed"
        assert all(options is None for _, options in rows), rows
        fails(c, "select umoptions from pg_user_mapping", sqlstate="42501")
        for (options,) in sql(c, "select array_to_string(srvoptions, ' ') from pg_foreign_server"):
            assert remote.password not in (options or "")


# ---------------------------------------------------------------------------------------------------------------
# Non-superusers mounting
# ---------------------------------------------------------------------------------------------------------------

def test_a_non_superuser_mount_is_owned_by_them(cluster, dbname, conn, remote, roles):
    with connect_as(cluster, dbname, ROLE_USER) as c:
        mount_pg(c, remote, "mnt_users_own", tables=["products"])
        assert value(c, "select nspowner::regrole::text from pg_namespace where nspname = 'mnt_users_own'") \
            == ROLE_USER
        assert value(c, "select relowner::regrole::text from pg_class where oid = 'mnt_users_own.products'::regclass") \
            == ROLE_USER
        assert value(c, "select count(*) from mnt_users_own.products") == 3
        server = value(c, """select s.srvname::text from pg_foreign_table f join pg_foreign_server s
                             on s.oid = f.ftserver where f.ftrelid = 'mnt_users_own.products'::regclass""")
        assert sql(c, "select usename::text from pg_user_mappings where srvname = %s", server) == [(ROLE_USER,)], \
            "the credentials are in a user mapping for the role that mounted (who gave them), for no one else"
        assert value(c, "select srvowner::regrole::text from pg_foreign_server where srvname = %s", server) == ROLE_USER
    with connect_as(cluster, dbname, ROLE_READER) as other:
        assert sql(other, "select umoptions from pg_user_mappings where srvname = %s", server) == [(None,)], \
            "other roles cannot read them"
        fails(other, "select splitgraph.unmount('mnt_users_own')", sqlstate="42501")
        fails(other, "select splitgraph.mount('mnt_users_own', 'postgres_fdw', %s, %s)", Jsonb(remote.options()),
              Jsonb(["stock"]), sqlstate="42501")
    assert schema_exists(conn, "mnt_users_own"), "someone else's unmount changed nothing"
    assert foreign_tables(conn, "mnt_users_own") == ["products"], "nor did their mount over it"
    with connect_as(cluster, dbname, ROLE_USER) as c:
        sql(c, "select splitgraph.unmount('mnt_users_own')")
    assert not schema_exists(conn, "mnt_users_own")


def test_import_from_a_mountpoint_reads_with_the_callers_rights(cluster, dbname, conn, remote, roles):
    with connect_as(cluster, dbname, ROLE_USER) as c:
        mount_pg(c, remote, "mnt_users_src", tables=["products"])
        sql(c, f"select splitgraph.init('{ROLE_USER}/snap')")
        image = value(c, f"select splitgraph.import_table('mnt_users_src', 'products', '{ROLE_USER}/snap')")
        assert value(c, f'select count(*) from "{ROLE_USER}/snap".products') == 3
        assert "products" in value(c, f"select splitgraph.show('{ROLE_USER}/snap', %s)", image)["tables"]
    with connect_as(cluster, dbname, ROLE_READER) as other:
        sql(other, f"select splitgraph.init('{ROLE_READER}/snap')")
        fails(other, f"select splitgraph.import_table('mnt_users_src', 'products', '{ROLE_READER}/snap')",
              sqlstate="42501")
        assert value(other, f"select count(*) from splitgraph.images('{ROLE_READER}/snap')") == 1, \
            "the refused import made no image"
    with connect_as(cluster, dbname, ROLE_USER) as c:
        sql(c, "select splitgraph.unmount('mnt_users_src')")


def test_csv_needs_superuser_or_pg_read_server_files(cluster, dbname, conn, csv_dir, roles):
    sql(conn, "create extension if not exists file_fdw")   # a plain role's mount never installs it
    path = write_csv(csv_dir, "priv.csv", "a,b\n1,x\n")
    with connect_as(cluster, dbname, ROLE_USER) as c:
        fails(c, "select splitgraph.mount('mnt_csv_denied', 'csv', %s)", Jsonb({"filename": path}), sqlstate="42501")
    assert not schema_exists(conn, "mnt_csv_denied")
    with connect_as(cluster, dbname, ROLE_READER) as c:
        sql(c, "select splitgraph.mount('mnt_csv_reader', 'csv', %s)", Jsonb({"filename": path}))
        assert sql(c, "select a, b from mnt_csv_reader.priv") == [(1, "x")]
        sql(c, "select splitgraph.unmount('mnt_csv_reader')")


# ---------------------------------------------------------------------------------------------------------------
# mysql_fdw against MariaDB
# ---------------------------------------------------------------------------------------------------------------

def test_mount_mysql_all_tables(conn, mysql):
    mount(conn, "mnt_my_all", "mysql_fdw", mysql.options())
    assert foreign_tables(conn, "mnt_my_all") == ["events", "items", "orders"]
    rows = sql(conn, """select id, customer, amount::text, placed::text, at::text, paid, big, ratio
                        from mnt_my_all.orders order by id""")
    assert rows == [(1, "ann", "10.50", "2024-01-02", "2024-01-02 10:00:00", 1, 9000000000, 0.5),
                    (2, "bob", None, None, None, 0, None, None),
                    (3, "cé", "3.25", "2024-02-29", "2024-02-29 23:59:59", 1, -1, 2.25)]
    assert sql(conn, "select sku, qty from mnt_my_all.items order by sku") == [("a", 1), ("b", 2)]


def test_mount_mysql_listed_tables(conn, mysql):
    mount(conn, "mnt_my_list", "mysql_fdw", mysql.options(), ["items"])
    assert foreign_tables(conn, "mnt_my_list") == ["items"]
    assert value(conn, "select sum(qty) from mnt_my_list.items") == 3


def test_mount_mysql_explicit_columns(conn, mysql):
    mount(conn, "mnt_my_cols", "mysql_fdw", mysql.options(), {"orders": {"id": "bigint", "customer": "text"}})
    assert foreign_tables(conn, "mnt_my_cols") == ["orders"]
    assert columns(conn, "mnt_my_cols", "orders") == [("id", "bigint"), ("customer", "text")]
    assert sql(conn, "select id, customer from mnt_my_cols.orders order by id") == [
        (1, "ann"), (2, "bob"), (3, "cé")]


def test_mount_mysql_wrong_password_never_shows_it(conn, mysql):
    wrong = "wrong'" + secrets.token_hex(10)
    error = fails(conn, "select splitgraph.mount('mnt_my_bad', 'mysql_fdw', %s)", Jsonb(mysql.options(password=wrong)))
    assert "Access denied" in error_text(error)
    assert wrong not in error_text(error) and mysql.password not in error_text(error)
    assert not schema_exists(conn, "mnt_my_bad")
    mount(conn, "mnt_my_bad", "mysql_fdw", mysql.options(password=wrong), {"items": {"sku": "text"}})
    error = fails(conn, "select * from mnt_my_bad.items")
    assert "Access denied" in error_text(error)
    assert wrong not in error_text(error)
    sql(conn, "select splitgraph.unmount('mnt_my_bad')")


# ---------------------------------------------------------------------------------------------------------------
# CSV over file_fdw
# ---------------------------------------------------------------------------------------------------------------

TYPES_CSV = (
    "i,b,n,flag,d,ts,tstz,t\n"
    "1,9000000000,1.5,true,2024-01-02,2024-01-02 10:00:00,2024-01-02 10:00:00+02,hello\n"
    "-2,1,2,f,2024-12-31,2024-12-31T23:59:59.5,2024-12-31 23:59Z,\"a,b\"\n"
    "+3,-7,-0.25e1,Yes,2000-02-29,2000-02-29 00:00,2000-02-29 00:00:00-05:30,42x\n"
    ",,,,,,,\n"
)


def test_csv_infers_column_types(conn, csv_dir):
    path = write_csv(csv_dir, "types.csv", TYPES_CSV)
    mount(conn, "mnt_csv_types", "csv", {"filename": path})
    assert foreign_tables(conn, "mnt_csv_types") == ["types"], "the table is named after the file"
    assert columns(conn, "mnt_csv_types", "types") == [
        ("i", "integer"), ("b", "bigint"), ("n", "numeric"), ("flag", "boolean"), ("d", "date"),
        ("ts", "timestamp without time zone"), ("tstz", "timestamp with time zone"), ("t", "text")]
    sql(conn, "set timezone = 'UTC'")
    rows = sql(conn, "select i, b, n::text, flag, d::text, ts::text, tstz::text, t from mnt_csv_types.types "
                     "order by i nulls last")
    assert rows == [
        (-2, 1, "2", False, "2024-12-31", "2024-12-31 23:59:59.5", "2024-12-31 23:59:00+00", "a,b"),
        (1, 9000000000, "1.5", True, "2024-01-02", "2024-01-02 10:00:00", "2024-01-02 08:00:00+00", "hello"),
        (3, -7, "-2.5", True, "2000-02-29", "2000-02-29 00:00:00", "2000-02-29 05:30:00+00", "42x"),
        (None, None, None, None, None, None, None, None)]


def test_csv_without_header_with_delimiter(conn, csv_dir):
    path = write_csv(csv_dir, "nohead.txt", "1;x;2024-01-01\n2;y;2024-01-02\n")
    mount(conn, "mnt_csv_nohead", "csv", {"filename": path, "header": False, "delimiter": ";", "table": "pairs"})
    assert foreign_tables(conn, "mnt_csv_nohead") == ["pairs"]
    assert columns(conn, "mnt_csv_nohead", "pairs") == [("col1", "integer"), ("col2", "text"), ("col3", "date")]
    assert sql(conn, "select col1, col2, col3::text from mnt_csv_nohead.pairs order by 1") == [
        (1, "x", "2024-01-01"), (2, "y", "2024-01-02")]


def test_csv_latin1_encoding(conn, csv_dir):
    path = write_csv(csv_dir, "latin.csv", "name;city;größe\nJosé;München;1,5\n", encoding="latin-1")
    mount(conn, "mnt_csv_latin", "csv", {"filename": path, "delimiter": ";", "encoding": "LATIN1"})
    assert columns(conn, "mnt_csv_latin", "latin") == [("name", "text"), ("city", "text"), ("größe", "text")]
    assert sql(conn, 'select name, city, "größe" from mnt_csv_latin.latin') == [("José", "München", "1,5")]


def test_csv_explicit_types(conn, csv_dir):
    path = write_csv(csv_dir, "explicit.csv", "code,amount\n007,1.50\n010,2\n")
    mount(conn, "mnt_csv_explicit", "csv", {"filename": path}, {"codes": {"code": "text", "amount": "numeric(6,2)"}})
    assert foreign_tables(conn, "mnt_csv_explicit") == ["codes"]
    assert columns(conn, "mnt_csv_explicit", "codes") == [("code", "text"), ("amount", "numeric(6,2)")]
    assert sql(conn, "select code, amount::text from mnt_csv_explicit.codes order by code") == [
        ("007", "1.50"), ("010", "2.00")], "the leading zeros an inferred integer would lose are kept"


def test_csv_null_option_and_header_only_file(conn, csv_dir):
    path = write_csv(csv_dir, "nulls.csv", "a,b\n1,NA\nNA,2024-01-01\n")
    mount(conn, "mnt_csv_nulls", "csv", {"filename": path, "null": "NA"})
    assert columns(conn, "mnt_csv_nulls", "nulls") == [("a", "integer"), ("b", "date")]
    assert sql(conn, "select a, b::text from mnt_csv_nulls.nulls order by a nulls last") == [
        (1, None), (None, "2024-01-01")]
    empty = write_csv(csv_dir, "header_only.csv", "x,y\n")
    mount(conn, "mnt_csv_empty", "csv", {"filename": empty})
    assert columns(conn, "mnt_csv_empty", "header_only") == [("x", "text"), ("y", "text")]
    assert value(conn, "select count(*) from mnt_csv_empty.header_only") == 0


def test_csv_impossible_dates_are_not_inferred_as_dates(conn, csv_dir):
    path = write_csv(csv_dir, "baddate.csv", "d,ts\n2023-02-30,2024-01-01 10:00:00\n2024-01-01,2024-01-01 24:30:00\n")
    mount(conn, "mnt_csv_baddate", "csv", {"filename": path})
    assert sql(conn, "select d, ts from mnt_csv_baddate.baddate order by d") == [
        ("2023-02-30", "2024-01-01 10:00:00"), ("2024-01-01", "2024-01-01 24:30:00")]


@pytest.mark.parametrize("options,sqlstate", [
    ({}, "22023"),
    ({"filename": "relative/path.csv"}, "22023"),
    ({"filename": "/nonexistent/sg/file.csv"}, "58P01"),
])
def test_csv_bad_options(conn, options, sqlstate):
    fails(conn, "select splitgraph.mount('mnt_csv_bad', 'csv', %s)", Jsonb(options), sqlstate=sqlstate)
    assert not schema_exists(conn, "mnt_csv_bad")


# ---------------------------------------------------------------------------------------------------------------
# Errors
# ---------------------------------------------------------------------------------------------------------------

def test_unknown_handler(conn):
    error = fails(conn, "select splitgraph.mount('mnt_unknown', 'nosuch_handler', '{}')", sqlstate="42704")
    assert "nosuch_handler" in error.diag.message_primary
    assert "postgres_fdw" in (error.diag.message_hint or ""), "the hint lists the handlers"
    assert not schema_exists(conn, "mnt_unknown")


@pytest.mark.parametrize("handler,options,missing,present", [
    ("postgres_fdw", {"host": "127.0.0.1", "password": "SECRET-pg-0a1b2c"}, ["username", "dbname", "remote_schema"],
     ["host"]),
    ("mysql_fdw", {"username": "u", "password": "SECRET-my-0a1b2c"}, ["host", "dbname"], ["username"]),
    ("csv", {"delimiter": ";", "password": "SECRET-csv-0a1b2c"}, ["filename"], []),
])
def test_missing_options_are_named_never_their_values(conn, handler, options, missing, present):
    error = fails(conn, "select splitgraph.mount('mnt_missing', %s, %s)", handler, Jsonb(options), sqlstate="22023")
    message = error.diag.message_primary
    for name in missing:
        assert name in message, message
    for name in present:
        assert name not in message, message
    assert options["password"] not in error_text(error)
    assert not schema_exists(conn, "mnt_missing")


@pytest.mark.parametrize("tables", [{"t": "int"}, 42, ["a", 1], {"t": {}}])
def test_bad_tables_argument(conn, remote, tables):
    fails(conn, "select splitgraph.mount('mnt_bad_tables', 'postgres_fdw', %s, %s)", Jsonb(remote.options()),
          Jsonb(tables), sqlstate="22023")
    assert not schema_exists(conn, "mnt_bad_tables")


def test_mount_over_a_schema_that_is_not_a_mount_is_refused(conn, remote):
    sql(conn, "create schema mnt_plain; create table mnt_plain.keep (x int); insert into mnt_plain.keep values (1)")
    fails(conn, "select splitgraph.mount_postgres(%s, %s, %s, %s, %s, %s, %s)", "mnt_plain", remote.host, remote.port,
          remote.user, remote.password, remote.dbname, remote.schema, sqlstate="42P06")
    assert value(conn, "select x from mnt_plain.keep") == 1, "the schema is untouched"
    assert foreign_tables(conn, "mnt_plain") == []


def test_mount_over_a_checkout_is_refused(conn, remote):
    sql(conn, "select splitgraph.init('mnt_checkout')")
    sql(conn, "create table mnt_checkout.t (x int); insert into mnt_checkout.t values (1)")
    fails(conn, "select splitgraph.mount('mnt_checkout', 'postgres_fdw', %s)", Jsonb(remote.options()))
    assert value(conn, "select x from mnt_checkout.t") == 1
    sql(conn, "select splitgraph.rm('mnt_checkout', force => true)")  # t is a pending change


def test_overwrite(conn, remote):
    mount_pg(conn, remote, "mnt_over")
    servers = mount_servers(conn)
    fails(conn, "select splitgraph.mount('mnt_over', 'postgres_fdw', %s, %s, overwrite => false)",
          Jsonb(remote.options()), Jsonb(["stock"]), sqlstate="42710")
    assert foreign_tables(conn, "mnt_over") == ["ledger", "products", "stock"], "the mount is untouched"
    assert value(conn, "select count(*) from mnt_over.products") == 3
    mount(conn, "mnt_over", "postgres_fdw", remote.options(), ["stock"])
    assert foreign_tables(conn, "mnt_over") == ["stock"], "by default a mount replaces the old one"
    assert value(conn, "select count(*) from mnt_over.stock") == 3
    assert len(mount_servers(conn)) == len(servers), "and its server"


# ---------------------------------------------------------------------------------------------------------------
# unmount
# ---------------------------------------------------------------------------------------------------------------

def test_unmount_drops_schema_server_and_user_mapping(conn, remote):
    mount_pg(conn, remote, "mnt_gone", tables=["products"])
    server = value(conn, """select s.srvname::text from pg_foreign_table f join pg_foreign_server s
                            on s.oid = f.ftserver where f.ftrelid = 'mnt_gone.products'::regclass""")
    sql(conn, "select splitgraph.unmount('mnt_gone')")
    assert not schema_exists(conn, "mnt_gone")
    assert value(conn, "select count(*) from pg_foreign_server where srvname = %s", server) == 0
    assert value(conn, "select count(*) from pg_user_mappings where srvname = %s", server) == 0
    assert value(conn, "select count(*) from splitgraph_meta.mounts where mountpoint = 'mnt_gone'") == 0
    fails(conn, "select splitgraph.unmount('mnt_gone')", sqlstate="42704")


def test_unmount_of_a_plain_schema_is_refused(conn):
    sql(conn, "create schema mnt_not_a_mount; create table mnt_not_a_mount.t (x int)")
    fails(conn, "select splitgraph.unmount('mnt_not_a_mount')", sqlstate="55000")
    assert value(conn, "select to_regclass('mnt_not_a_mount.t') is not null")


def test_unmount_of_a_repository_deletes_it_like_rm(conn):
    sql(conn, "select splitgraph.init('mnt/repo')")
    sql(conn, 'create table "mnt/repo".t (id int primary key, v text)')
    sql(conn, "insert into \"mnt/repo\".t select i, md5(i::text) || 'unmount' from generate_series(1, 20) i")
    image = value(conn, "select splitgraph.commit('mnt/repo')")
    ids = objects_of(conn, "mnt/repo", image, "t")
    sql(conn, "select splitgraph.tag('mnt/repo', %s, 'v1')", image)
    sql(conn, "select splitgraph.unmount('mnt/repo')")
    assert value(conn, "select count(*) from splitgraph.repositories() where repository = 'mnt/repo'") == 0
    assert not schema_exists(conn, "mnt/repo")
    for table in ("repositories", "images", "tags", "tables", "branches", "checkouts"):
        assert value(conn, f"select count(*) from splitgraph_meta.{table} where repository = 'mnt/repo'") == 0, table
    assert value(conn, "select count(*) from splitgraph_meta.objects where object_id = any(%s)", ids) == len(ids), \
        "its objects stay until cleanup()"
    assert value(conn, "select splitgraph.cleanup()") >= len(ids)
    assert value(conn, "select count(*) from splitgraph_meta.objects where object_id = any(%s)", ids) == 0


# ---------------------------------------------------------------------------------------------------------------
# Mount handlers
# ---------------------------------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def handler_functions(cluster, dbname):
    cluster.psql("""
        create schema mnt_handlers;
        create function mnt_handlers.generated(mountpoint text, options jsonb, tables jsonb) returns void
        language plpgsql as $f$
        begin
            execute format('create table %I.%I (n int, label text)', mountpoint, coalesce(options ->> 'table', 'gen'));
            execute format('insert into %I.%I select i, %L || i from generate_series(1, %s) i', mountpoint,
                           coalesce(options ->> 'table', 'gen'), coalesce(options ->> 'prefix', 'row '),
                           coalesce((options ->> 'rows')::int, 3));
        end
        $f$;
        create function mnt_handlers.python(mountpoint text, options jsonb, tables jsonb) returns void
        language plpython3u as $f$
import json
opts = json.loads(options)
names = json.loads(tables) if tables is not None else ["squares"]
for name in names:
    plpy.execute("create view %s.%s as select g as x, g * g as sq from generate_series(1, %d) g"
                 % (plpy.quote_ident(mountpoint), plpy.quote_ident(name), int(opts.get("n", 2))))
        $f$;
        create function mnt_handlers.two_args(mountpoint text, options jsonb) returns void
        language sql as 'select';
        create function mnt_handlers.json_args(mountpoint text, options json, tables json) returns void
        language sql as 'select';
        create function mnt_handlers.returns_int(mountpoint text, options jsonb, tables jsonb) returns int
        language sql as 'select 1';
        create function mnt_handlers.swapped(options jsonb, mountpoint text, tables jsonb) returns void
        language sql as 'select';
    """, dbname=dbname)
    return "mnt_handlers"


def handler_names(conn):
    return [r[0] for r in sql(conn, "select name from splitgraph.mount_handlers()")]


def test_builtin_handlers_are_listed(conn):
    rows = dict(sql(conn, "select name, description from splitgraph.mount_handlers()"))
    assert {"postgres_fdw", "mysql_fdw", "csv"} <= set(rows)
    assert all(rows[n] for n in ("postgres_fdw", "mysql_fdw", "csv")), "each has a description"


def test_register_a_plpgsql_handler(conn, handler_functions):
    sql(conn, "select splitgraph.register_mount_handler('gen_plpgsql', 'mnt_handlers.generated(text,jsonb,jsonb)', "
              "'generated rows')")
    assert ("gen_plpgsql", "generated rows") in sql(conn, "select name, description from splitgraph.mount_handlers()")
    mount(conn, "mnt_gen", "gen_plpgsql", {"rows": 4, "prefix": "r"})
    assert sql(conn, "select n, label from mnt_gen.gen order by n") == [(1, "r1"), (2, "r2"), (3, "r3"), (4, "r4")]
    # registering the name again replaces the handler's description
    sql(conn, "select splitgraph.register_mount_handler('gen_plpgsql', 'mnt_handlers.generated(text,jsonb,jsonb)', "
              "'generated rows, v2')")
    assert ("gen_plpgsql", "generated rows, v2") in sql(conn, "select name, description "
                                                              "from splitgraph.mount_handlers()")
    sql(conn, "select splitgraph.unmount('mnt_gen')")
    assert not schema_exists(conn, "mnt_gen")


def test_register_a_plpython_handler(conn, handler_functions):
    sql(conn, "select splitgraph.register_mount_handler('gen_python', 'mnt_handlers.python(text,jsonb,jsonb)')")
    assert "gen_python" in handler_names(conn)
    mount(conn, "mnt_py", "gen_python", {"n": 3}, ["a", "b"])
    assert sql(conn, "select x, sq from mnt_py.b order by x") == [(1, 1), (2, 4), (3, 9)]
    assert value(conn, "select count(*) from mnt_py.a") == 3
    # a mount from a custom handler imports like any other mountpoint
    sql(conn, "select splitgraph.init('mnt/fromhandler')")
    image = value(conn, "select splitgraph.import_table('mnt_py', 'a', 'mnt/fromhandler')")
    assert value(conn, 'select sum(sq) from "mnt/fromhandler".a') == 14
    assert "a" in value(conn, "select splitgraph.show('mnt/fromhandler', %s)", image)["tables"]


@pytest.mark.parametrize("function", ["two_args(text,jsonb)", "json_args(text,json,json)",
                                      "returns_int(text,jsonb,jsonb)", "swapped(jsonb,text,jsonb)"])
def test_a_handler_with_a_wrong_signature_is_refused(conn, handler_functions, function):
    error = fails(conn, "select splitgraph.register_mount_handler('wrong_sig', %s)", f"mnt_handlers.{function}",
                  sqlstate="22023")
    assert "(mountpoint text, options jsonb, tables jsonb) returns void" in (error.diag.message_hint or "")
    assert "wrong_sig" not in handler_names(conn)


def test_a_non_superuser_cannot_register_a_handler(cluster, dbname, conn, handler_functions, roles):
    with connect_as(cluster, dbname, ROLE_USER) as c:
        fails(c, "select splitgraph.register_mount_handler('users_handler', "
                 "'mnt_handlers.generated(text,jsonb,jsonb)')", sqlstate="42501")
    assert "users_handler" not in handler_names(conn)


def test_builtin_handlers_cannot_be_replaced(conn, handler_functions):
    before = sql(conn, "select name, description from splitgraph.mount_handlers()")
    for name in ("postgres_fdw", "mysql_fdw", "csv"):
        fails(conn, "select splitgraph.register_mount_handler(%s, 'mnt_handlers.generated(text,jsonb,jsonb)')", name,
              sqlstate="42710")
    assert sql(conn, "select name, description from splitgraph.mount_handlers()") == before


def test_builtin_handlers_are_unchanged_after_attempts_to_replace_them(conn, handler_functions, csv_dir):
    before = sql(conn, "select name, description from splitgraph.mount_handlers()")
    for name in ("postgres_fdw", "mysql_fdw", "csv"):
        fails(conn, "select splitgraph.register_mount_handler(%s, 'mnt_handlers.generated(text,jsonb,jsonb)')", name)
    assert sql(conn, "select name, description from splitgraph.mount_handlers()") == before
    path = write_csv(csv_dir, "still.csv", "a\n1\n")
    mount(conn, "mnt_still_csv", "csv", {"filename": path})
    assert value(conn, "select a from mnt_still_csv.still") == 1, "csv still mounts CSV files"


# ---------------------------------------------------------------------------------------------------------------
# End to end: mount, import, commit, unmount; the snapshot is local
# ---------------------------------------------------------------------------------------------------------------

def test_snapshot_a_postgres_database_end_to_end(conn, remote):
    remote_rows = "select id, item, amount, at from store.ledger order by id"
    with remote.connect() as r:
        expected = r.execute(remote_rows).fetchall()
    mount_pg(conn, remote, "mnt_e2e_pg", tables=["ledger", "stock"])
    server = value(conn, """select s.srvname::text from pg_foreign_table f join pg_foreign_server s
                            on s.oid = f.ftserver where f.ftrelid = 'mnt_e2e_pg.ledger'::regclass""")
    sql(conn, "select splitgraph.init('mnt/pgsnap')")
    imported = value(conn, "select splitgraph.import_tables('mnt_e2e_pg', array['ledger', 'stock'], 'mnt/pgsnap')")
    snapshot = value(conn, "select splitgraph.commit('mnt/pgsnap', 'snapshot of store')")
    assert value(conn, "select parent_id from splitgraph.log('mnt/pgsnap') limit 1") == imported
    sql(conn, "select splitgraph.tag('mnt/pgsnap', %s, 'snap1')", snapshot)
    ledger_ids = objects_of(conn, "mnt/pgsnap", snapshot, "ledger")
    assert ledger_ids == objects_of(conn, "mnt/pgsnap", imported, "ledger"), "the commit after the import reuses it"
    assert value(conn, "select splitgraph.table_info('mnt/pgsnap', 'snap1', 'ledger')")["rows"] == 50

    sql(conn, "select splitgraph.unmount('mnt_e2e_pg')")
    assert not schema_exists(conn, "mnt_e2e_pg")
    assert value(conn, "select count(*) from pg_foreign_server where srvname = %s", server) == 0
    # the snapshot does not need the foreign server: its objects are local
    sql(conn, "select splitgraph.uncheckout('mnt/pgsnap')")
    sql(conn, "select splitgraph.checkout('mnt/pgsnap', 'snap1')")
    assert sql(conn, 'select id, item, amount, at from "mnt/pgsnap".ledger order by id') == expected
    assert sql(conn, 'select product_id, qty from "mnt/pgsnap".stock order by 1, 2') == [(1, 10), (1, 10), (2, 0)]

    # the same data again, into another repository: no new object, the same ids
    mount_pg(conn, remote, "mnt_e2e_pg", tables=["ledger"])
    before = object_count(conn)
    sql(conn, "select splitgraph.init('mnt/pgsnap2')")
    again = value(conn, "select splitgraph.import_table('mnt_e2e_pg', 'ledger', 'mnt/pgsnap2')")
    assert object_count(conn) == before
    assert objects_of(conn, "mnt/pgsnap2", again, "ledger") == ledger_ids

    # the foreign data changes: a re-import stores new objects ...
    with remote.connect() as r:
        r.execute("update store.ledger set amount = amount + 100 where id = 7")
        r.execute("insert into store.ledger values (51, 'item 51', 1.00, '2024-02-01 00:00:00+00')")
        changed = r.execute(remote_rows).fetchall()
    fresh = value(conn, "select splitgraph.import_table('mnt_e2e_pg', 'ledger', 'mnt/pgsnap2', 'ledger_v2')")
    assert object_count(conn) > before
    assert set(objects_of(conn, "mnt/pgsnap2", fresh, "ledger_v2")).isdisjoint(ledger_ids)
    assert sql(conn, 'select id, item, amount, at from "mnt/pgsnap2".ledger_v2 order by id') == changed

    # ... and refreshing the tracked checkout from the mount (a foreign table has no primary key, so neither
    # has the snapshot: rows are matched whole) commits only the changed rows as a delta
    sql(conn, "select splitgraph.checkout('mnt/pgsnap', 'main')")
    sql(conn, """delete from "mnt/pgsnap".ledger l
                 where not exists (select from mnt_e2e_pg.ledger m where (m.*)::text = (l.*)::text)""")
    sql(conn, """insert into "mnt/pgsnap".ledger
                 select * from mnt_e2e_pg.ledger except all select * from "mnt/pgsnap".ledger""")
    assert sql(conn, "select added + updated, removed + updated from splitgraph.status('mnt/pgsnap') "
                     "where table_name = 'ledger'") == [(2, 1)]
    delta = value(conn, "select splitgraph.commit('mnt/pgsnap', 'refresh')")
    delta_ids = objects_of(conn, "mnt/pgsnap", delta, "ledger")
    assert delta_ids[:len(ledger_ids)] == ledger_ids and len(delta_ids) == len(ledger_ids) + 1
    info = value(conn, "select splitgraph.object_info(%s)", delta_ids[-1])
    assert (info["rows_inserted"], info["rows_deleted"]) == (2, 1), info
    assert sql(conn, 'select id, item, amount, at from "mnt/pgsnap".ledger order by id') == changed
    sql(conn, "select splitgraph.unmount('mnt_e2e_pg')")
    with remote.connect() as r:
        r.execute("update store.ledger set amount = amount - 100 where id = 7; delete from store.ledger where id = 51")


def test_snapshot_a_mariadb_database_end_to_end(conn, mysql):
    mount(conn, "mnt_e2e_my", "mysql_fdw", mysql.options(), ["events", "orders"])
    sql(conn, "select splitgraph.init('mnt/mysnap')")
    sql(conn, "select splitgraph.import_tables('mnt_e2e_my', array['events', 'orders'], 'mnt/mysnap')")
    image = value(conn, "select splitgraph.commit('mnt/mysnap', 'snapshot of sales')")
    event_ids = objects_of(conn, "mnt/mysnap", image, "events")
    expected_orders = sql(conn, "select * from mnt_e2e_my.orders order by id")
    sql(conn, "select splitgraph.unmount('mnt_e2e_my')")
    assert not schema_exists(conn, "mnt_e2e_my")

    sql(conn, "select splitgraph.uncheckout('mnt/mysnap')")
    sql(conn, "select splitgraph.checkout('mnt/mysnap', %s)", image)
    assert sql(conn, 'select id, kind, n from "mnt/mysnap".events order by id') == [(1, "x", 10), (2, "y", 20),
                                                                                    (3, "z", 30)]
    assert sql(conn, 'select * from "mnt/mysnap".orders order by id') == expected_orders
    assert value(conn, 'select customer from "mnt/mysnap".orders where id = 3') == "cé"

    mount(conn, "mnt_e2e_my", "mysql_fdw", mysql.options(), ["events"])
    before = object_count(conn)
    again = value(conn, "select splitgraph.import_table('mnt_e2e_my', 'events', 'mnt/mysnap', 'events_again')")
    assert object_count(conn) == before, "the same data again adds no object"
    assert objects_of(conn, "mnt/mysnap", again, "events_again") == event_ids

    mysql.sql("update events set n = 21 where id = 2")
    try:
        fresh = value(conn, "select splitgraph.import_table('mnt_e2e_my', 'events', 'mnt/mysnap', 'events_v2')")
        assert object_count(conn) > before
        assert objects_of(conn, "mnt/mysnap", fresh, "events_v2") != event_ids
        assert value(conn, 'select n from "mnt/mysnap".events_v2 where id = 2') == 21
        assert value(conn, 'select n from "mnt/mysnap".events where id = 2') == 20, "the old snapshot stays"
    finally:
        mysql.sql("update events set n = 20 where id = 2")
    sql(conn, "select splitgraph.unmount('mnt_e2e_my')")


def test_snapshot_a_csv_file_end_to_end(conn, csv_dir):
    path = write_csv(csv_dir, "readings.csv", "station,day,temp\nlondon,2024-01-01,7.5\noslo,2024-01-01,-3.0\n")
    mount(conn, "mnt_e2e_csv", "csv", {"filename": path})
    sql(conn, "select splitgraph.init('mnt/csvsnap')")
    image = value(conn, "select splitgraph.import_table('mnt_e2e_csv', 'readings', 'mnt/csvsnap')")
    ids = objects_of(conn, "mnt/csvsnap", image, "readings")
    sql(conn, "select splitgraph.unmount('mnt_e2e_csv')")
    os.unlink(path)
    sql(conn, "select splitgraph.uncheckout('mnt/csvsnap')")
    sql(conn, "select splitgraph.checkout('mnt/csvsnap', %s)", image)
    assert sql(conn, 'select station, day::text, temp::text from "mnt/csvsnap".readings order by 1') == [
        ("london", "2024-01-01", "7.5"), ("oslo", "2024-01-01", "-3.0")]
    # a new version of the file: new objects for the new rows
    write_csv(csv_dir, "readings.csv", "station,day,temp\nlondon,2024-01-01,7.5\noslo,2024-01-01,-2.0\n")
    mount(conn, "mnt_e2e_csv", "csv", {"filename": path})
    fresh = value(conn, "select splitgraph.import_table('mnt_e2e_csv', 'readings', 'mnt/csvsnap', 'readings_v2')")
    assert objects_of(conn, "mnt/csvsnap", fresh, "readings_v2") != ids
    assert value(conn, """select temp::text from "mnt/csvsnap".readings_v2 where station = 'oslo'""") == "-2.0"
    sql(conn, "select splitgraph.unmount('mnt_e2e_csv')")


# ---------------------------------------------------------------------------------------------------------------
# Last: nothing above put a password into the server log
# ---------------------------------------------------------------------------------------------------------------

def test_passwords_never_reach_the_server_log(cluster, conn, remote, mysql):
    wrong = "wrong'" + secrets.token_hex(10)
    fails(conn, "select splitgraph.mount_postgres(%s, %s, %s, %s, %s, %s, %s)", "mnt_log_pg", remote.host,
          remote.port, remote.user, wrong, remote.dbname, remote.schema)
    fails(conn, "select splitgraph.mount('mnt_log_my', 'mysql_fdw', %s)", Jsonb(mysql.options(password=wrong)))
    mount_pg(conn, remote, "mnt_log_ok", tables=["products"])
    sql(conn, "select splitgraph.unmount('mnt_log_ok')")
    log = (cluster.dir / "server.log").read_text(errors="replace")
    assert "mnt_log_pg" in log or "splitgraph.mount_postgres" in log or "password authentication failed" in log, \
        "the failed mounts were logged"
    for secret in (wrong, remote.password, mysql.password):
        assert secret not in log
