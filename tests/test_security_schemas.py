"""Issue 8, schemas the extension did not make: init and checkout never adopt them, rm and unmount never drop
what the extension did not create.

H3 schema squatting: a role makes (e.g. mounts) a schema named like another role's future repository and plants a
   table in it; the victim's init or checkout adopts the schema, and the planted table is committed into the
   victim's images while its planter keeps writing it.
H5 init adopts any existing schema (public, pg_catalog, information_schema, pg_toast, splitgraph_meta, a hand-made
   one) and changes its ACLs and default privileges; rm then drops it with CASCADE, including what it never made.
"""
import pytest
from psycopg2 import sql as pgsql
from psycopg2.extras import Json as Jsonb

from conftest import sql, value
from support.security import attempt


def owner_of_schema(conn, schema):
    return value(conn, "select pg_get_userbyid(nspowner)::text from pg_namespace where nspname = %s", schema)


def squat(conn, schema, squatter):
    """What a role that got to make `schema` could leave in it: the schema is the squatter's, with a table of
    the squatter's that everyone may read."""
    sql(conn, pgsql.SQL("create schema {} authorization {}").format(pgsql.Identifier(schema),
                                                                    pgsql.Identifier(squatter.name)))
    sql(squatter.conn, f'create table "{schema}".planted (id int primary key, v text)')
    sql(squatter.conn, f"""insert into "{schema}".planted values (1, 'planted')""")
    sql(squatter.conn, f'grant select on "{schema}".planted to public')


def planted_in_images(conn, repo):
    return value(conn, "select count(*) from splitgraph_meta.tables where repository = %s and table_name = 'planted'",
                 repo)


# ---------------------------------------------------------------------------------------------------------------
# H3
# ---------------------------------------------------------------------------------------------------------------

def test_h3_a_squatted_namespace_never_ends_up_in_the_victims_images(conn, roles):
    """H3 end to end: bob (allowed to mount) mounts "<alice>/future" and plants a table in it; alice inits that
    repository and commits. Whatever was refused on the way, no image of alice's holds bob's table, and bob owns
    nothing in alice's checkout."""
    alice = roles.new("h3alice")
    bob = roles.new("h3bob", mount=True)
    repo = f"{alice.name}/future"
    options = {"host": "127.0.0.1", "port": 1, "username": "nobody", "password": "x", "dbname": "none",
               "remote_schema": "public"}
    if attempt(bob.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", repo, Jsonb(options),
               Jsonb({"f": {"c": "integer"}})) is None:
        sql(bob.conn, f'create table "{repo}".planted (id int primary key, v text)')
        sql(bob.conn, f"""insert into "{repo}".planted values (1, 'planted')""")
    if attempt(alice.conn, "select splitgraph.init(%s)", repo) is None:
        sql(alice.conn, f'create table "{repo}".mine (id int primary key)')
        attempt(alice.conn, "select splitgraph.commit(%s)", repo)
    assert planted_in_images(conn, repo) == 0, "bob's planted table was committed into alice's repository"
    assert value(conn, """select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace
                          where n.nspname = %s and c.relowner = %s::regrole""", repo, bob.name) == 0


def test_h3_init_refuses_a_schema_another_role_made(conn, roles):
    """H3: "<alice>/squat" already exists, made by bob, with bob's table: alice's init gives 42P06; no repository
    is made, the schema stays bob's and his table stays where it is."""
    alice = roles.new("h3alice")
    bob = roles.new("h3bob")
    repo = f"{alice.name}/squat"
    squat(conn, repo, bob)
    error = attempt(alice.conn, "select splitgraph.init(%s)", repo)
    assert owner_of_schema(conn, repo) == bob.name, "init adopted bob's schema"
    assert error is not None and error.pgcode == "42P06", f"init of a schema bob made: {error}"
    assert value(conn, "select count(*) from splitgraph_meta.repositories where repository = %s", repo) == 0
    assert value(conn, f'select count(*) from "{repo}".planted') == 1


def test_h3_checkout_refuses_a_schema_another_role_made(conn, roles):
    """H3: alice's repository is not checked out; bob made a schema of its name and planted a table. alice's
    checkout gives 42P06: bob's schema and table stay as they are, and the repository stays not checked out."""
    alice = roles.new("h3alice")
    bob = roles.new("h3bob")
    repo = f"{alice.name}/co"
    sql(alice.conn, "select splitgraph.init(%s)", repo)
    sql(alice.conn, f'create table "{repo}".t (id int primary key)')
    sql(alice.conn, f'insert into "{repo}".t values (1)')
    sql(alice.conn, "select splitgraph.commit(%s)", repo)
    sql(alice.conn, "select splitgraph.uncheckout(%s)", repo)
    squat(conn, repo, bob)
    error = attempt(alice.conn, "select splitgraph.checkout(%s, 'main')", repo)
    assert owner_of_schema(conn, repo) == bob.name, "checkout adopted bob's schema"
    assert value(conn, "select to_regclass(format('%%I.planted', %s::text)) is not null", repo), \
        "checkout dropped bob's table"
    assert error is not None and error.pgcode == "42P06", f"checkout into a schema bob made: {error}"
    assert value(conn, "select count(*) from splitgraph_meta.checkouts where repository = %s", repo) == 0


# ---------------------------------------------------------------------------------------------------------------
# H5
# ---------------------------------------------------------------------------------------------------------------

def acls(conn, schema):
    """The schema's owner and ACL, and the default privileges defined in it."""
    return (sql(conn, "select nspowner::regrole::text, nspacl::text from pg_namespace where nspname = %s", schema),
            sql(conn, """select defaclrole::regrole::text, defaclobjtype::text, defaclacl::text from pg_default_acl
                         where defaclnamespace = (select oid from pg_namespace where nspname = %s) order by 1, 2""",
                schema))


@pytest.mark.parametrize("schema", ["public", "pg_catalog", "information_schema", "pg_toast", "splitgraph_meta",
                                    "reports"])
def test_h5_init_never_adopts_an_existing_schema(conn, schema):
    """H5: an administrator's init of a repository named like an existing schema it did not make (system,
    extension, or a hand-made `reports`) is refused (42P06; 42602 allowed for reserved names), and the schema's
    ACL and default privileges are unchanged."""
    if schema == "reports":
        sql(conn, "create schema if not exists reports")
        sql(conn, "create table if not exists reports.q1 (x int)")
    before = acls(conn, schema)
    error = attempt(conn, "select splitgraph.init(%s)", schema)
    after = acls(conn, schema)
    if error is None:
        # undo what the adopting init did, so that no later test meets a repository named like a system schema
        sql(conn, "delete from splitgraph_meta.repositories where repository = %s", schema)
        sql(conn, pgsql.SQL("alter default privileges in schema {} revoke select on tables from public")
            .format(pgsql.Identifier(schema)))
    assert after == before, f"init changed the ACLs of schema {schema}"
    allowed = ("42P06",) if schema == "reports" else ("42P06", "42602")
    assert error is not None and error.pgcode in allowed, f"init({schema!r}) adopted the schema: {error}"
    assert value(conn, "select count(*) from splitgraph_meta.repositories where repository = %s", schema) == 0
    if schema == "reports":
        assert value(conn, "select to_regclass('reports.q1') is not null")


def alice_checkout(roles, stem):
    """alice's repository with t = {1} committed and checked out."""
    alice = roles.new(stem)
    repo = f"{alice.name}/repo"
    sql(alice.conn, "select splitgraph.init(%s)", repo)
    sql(alice.conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(alice.conn, f"""insert into "{repo}".t values (1, 'kept')""")
    sql(alice.conn, "select splitgraph.commit(%s)", repo)
    return alice, repo


@pytest.mark.parametrize("call", ["rm", "unmount"])
def test_h5_rm_refuses_pending_changes_without_force(conn, roles, call):
    """H5: rm (and unmount of a repository, which is rm) of a checkout with pending changes gives 55000 unless
    force => true; the repository, its table and the change stay."""
    alice, repo = alice_checkout(roles, "h5pend")
    sql(alice.conn, f"""insert into "{repo}".t values (2, 'pending')""")
    error = attempt(alice.conn, f"select splitgraph.{call}(%s)", repo)
    assert error is not None and error.pgcode == "55000", f"{call} threw away pending changes: {error}"
    assert value(conn, f'select count(*) from "{repo}".t') == 2
    assert value(conn, "select count(*) from splitgraph_meta.repositories where repository = %s", repo) == 1


def test_h5_rm_never_drops_another_roles_objects_outside_the_checkout(conn, roles):
    """H5: bob's view (in his own schema) reads alice's checkout table; alice's rm must not drop it with
    CASCADE: 2BP01, nothing dropped (alice's repository included)."""
    alice, repo = alice_checkout(roles, "h5dep")
    bob = roles.new("h5bob")
    sql(bob.conn, f'create view "{bob.schema}".mirror as select * from "{repo}".t')
    error = attempt(alice.conn, "select splitgraph.rm(%s)", repo)
    assert value(conn, "select to_regclass(format('%%I.mirror', %s::text)) is not null", bob.schema), \
        "alice's rm dropped bob's view"
    assert error is not None and error.pgcode == "2BP01", f"{error}"
    assert value(conn, "select count(*) from splitgraph_meta.repositories where repository = %s", repo) == 1
    assert value(conn, f'select count(*) from "{repo}".t') == 1


def test_h5_unmount_never_drops_another_roles_objects_outside_the_mountpoint(conn, roles):
    """H5: an administrator's mountpoint (column lists: nothing to connect to) has a foreign table that bob's
    view reads; unmount must not drop bob's view with CASCADE: 2BP01, nothing dropped."""
    bob = roles.new("h5bob")
    mountpoint = f"{bob.name}_src"
    sql(conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint,
        Jsonb({"host": "127.0.0.1", "port": 1, "username": "nobody", "password": "x", "dbname": "none",
               "remote_schema": "public"}), Jsonb({"f": {"c": "integer"}}))
    sql(conn, pgsql.SQL("grant usage on schema {} to public").format(pgsql.Identifier(mountpoint)))
    sql(conn, pgsql.SQL("grant select on {}.f to public").format(pgsql.Identifier(mountpoint)))
    sql(bob.conn, f'create view "{bob.schema}".mirror as select * from "{mountpoint}".f')
    error = attempt(conn, "select splitgraph.unmount(%s)", mountpoint)
    assert value(conn, "select to_regclass(format('%%I.mirror', %s::text)) is not null", bob.schema), \
        "unmount dropped bob's view"
    assert error is not None and error.pgcode == "2BP01", f"{error}"
    assert value(conn, "select to_regclass(format('%%I.f', %s::text)) is not null", mountpoint)
