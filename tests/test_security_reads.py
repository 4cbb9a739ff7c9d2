"""Issue 8, reads beyond one's rights: nothing a plain role does makes the engine read, on its behalf, what it
may not read itself.

H1 definer code reads user-controlled relations: a foreign table over pg_authid (mounted from this very server as
   `postgres`, which the cluster trusts) attached as a partition of, or inheriting from, a checkout table lands in
   an image everyone can read. The victim is a role with a password: its hash must never be in any object.
H4 get_pending_changes, changed_tables, has_pending_changes, status, diff and diff_summary return data of tables
   the caller may not SELECT (a tracked schema of the administrator's; a checkout table whose owner revoked
   SELECT from PUBLIC).
"""
import secrets

import pytest
from psycopg2.extras import Json as Jsonb

from conftest import sql, value
from support.security import attempt, objects_containing


@pytest.fixture
def victim_hash(cluster):
    """A role with a password, one per test; returns the hash pg_authid stores for it."""
    name = "sec_victim_" + secrets.token_hex(4)
    cluster.psql(f"create role {name} login password '{secrets.token_hex(12)}'")
    stored = cluster.psql(f"select rolpassword from pg_authid where rolname = '{name}'")
    assert stored.startswith(("SCRAM-SHA-256$", "md5"))
    return stored


def mount_pg_authid(role, cluster, dbname, mountpoint):
    """role mounts pg_catalog.pg_authid (rolname, rolpassword) of this server as user postgres, no password;
    returns the error, or None."""
    options = {"host": "127.0.0.1", "port": cluster.port, "username": "postgres", "dbname": dbname,
               "remote_schema": "pg_catalog"}
    return attempt(role.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint, Jsonb(options),
                   Jsonb({"pg_authid": {"rolname": "name", "rolpassword": "text"}}))


# ---------------------------------------------------------------------------------------------------------------
# H1
# ---------------------------------------------------------------------------------------------------------------

def test_h1_commit_never_reads_a_foreign_partition_as_the_owner(conn, roles, cluster, dbname, victim_hash):
    """H1 as filed: bob (allowed to mount) mounts pg_authid of the local server as postgres, attaches the foreign
    table as the default partition of a checkout table, and commits. No object may hold a password hash; a
    commit that reaches such a table refuses it (0A000)."""
    bob = roles.new("h1part", mount=True)
    repo, mountpoint = f"{bob.name}/leak", f"{bob.name}_mnt"
    mounted = mount_pg_authid(bob, cluster, dbname, mountpoint)
    sql(bob.conn, "select splitgraph.init(%s)", repo)
    sql(bob.conn, f'create table "{repo}".t (rolname name, rolpassword text) partition by list (rolname)')
    attached = mounted is None and attempt(
        bob.conn, f'alter table "{repo}".t attach partition "{mountpoint}".pg_authid default') is None
    committed = attempt(bob.conn, "select splitgraph.commit(%s, 'mine', snapshot => true)", repo)
    assert objects_containing(conn, victim_hash) == [], "a password hash from pg_authid is in a stored object"
    if attached:
        assert committed is not None and committed.pgcode == "0A000", \
            f"commit of a table with a foreign partition: {committed}"


def test_h1_commit_reads_only_the_checkout_table_not_its_inheritance_children(conn, roles, cluster, dbname,
                                                                            victim_hash):
    """H1: the same foreign table made an inheritance child of a plain checkout table. The parent's image holds
    the parent's own rows only (`select * from only ...`), never its children's: no password hash in any object."""
    bob = roles.new("h1inh", mount=True)
    repo, mountpoint = f"{bob.name}/leak", f"{bob.name}_mnt"
    mounted = mount_pg_authid(bob, cluster, dbname, mountpoint)
    sql(bob.conn, "select splitgraph.init(%s)", repo)
    sql(bob.conn, f'create table "{repo}".t (rolname name, rolpassword text)')
    sql(bob.conn, f"""insert into "{repo}".t values ('own row', null)""")
    inherited = mounted is None and attempt(
        bob.conn, f'alter foreign table "{mountpoint}".pg_authid inherit "{repo}".t') is None
    image = None
    committed = attempt(bob.conn, "select splitgraph.commit(%s, 'mine', snapshot => true)", repo)
    if committed is None:
        image = value(bob.conn, "select head from splitgraph.repositories() where repository = %s", repo)
    assert objects_containing(conn, victim_hash) == [], "a password hash from pg_authid is in a stored object"
    if inherited and image is not None:
        assert value(bob.conn, "select splitgraph.table_info(%s, %s, 't')", repo, image)["rows"] \
            == value(conn, f'select count(*) from only "{repo}".t') == 1


# ---------------------------------------------------------------------------------------------------------------
# H4
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def hr(cluster, dbname):
    """The administrator's tracked schema hr (no grants to anyone) with a pending change holding a secret."""
    cluster.psql("""create schema hr;
                    create table hr.salaries (id int primary key, name text, amount int);
                    select splitgraph.track_tables('hr', array['salaries']);
                    insert into hr.salaries values (1, 'ceo', 987654);""", dbname=dbname)
    return "987654"


def test_h4_get_pending_changes_of_a_table_the_caller_may_not_read(conn, roles, hr):
    """H4: get_pending_changes on the administrator's tracked table gives bob 42501, not its rows."""
    bob = roles.new("h4bob")
    error = attempt(bob.conn, "select * from splitgraph.get_pending_changes('hr', 'salaries')")
    assert error is not None and error.pgcode == "42501", "bob read the pending rows of hr.salaries"
    error = attempt(bob.conn, "select * from splitgraph.get_pending_changes('hr', 'salaries', aggregate => true)")
    assert error is not None and error.pgcode == "42501", "bob read the pending counts of hr.salaries"


@pytest.mark.parametrize("call", ["changed_tables", "has_pending_changes"])
def test_h4_schema_wide_calls_skip_or_refuse_tables_the_caller_may_not_read(conn, roles, hr, call):
    """H4: over a whole schema, tables bob may not read are skipped (not listed, not counted) or the call is
    refused with 42501."""
    bob = roles.new("h4bob")
    rows = []
    error = attempt(bob.conn, f"select splitgraph.{call}('hr')")
    if error is None:
        rows = sql(bob.conn, f"select splitgraph.{call}('hr')")
    assert (error is not None and error.pgcode == "42501") or rows in ([([],)], [(False,)]), \
        f"{call}('hr') told bob about hr.salaries: {rows or error}"


@pytest.fixture
def private_checkout(roles):
    """alice's checkout alice/repo: t = {(1, 'public')} committed, then a pending row 'secret-…'; alice revoked
    SELECT on t from PUBLIC."""
    alice = roles.new("h4alice")
    repo = f"{alice.name}/repo"
    c = alice.conn
    sql(c, "select splitgraph.init(%s)", repo)
    sql(c, f'create table "{repo}".t (id int primary key, v text)')
    sql(c, f"""insert into "{repo}".t values (1, 'public')""")
    sql(c, "select splitgraph.commit(%s)", repo)
    sql(c, f'revoke select on "{repo}".t from public')
    secret = "secret-" + secrets.token_hex(6)
    sql(c, f'insert into "{repo}".t values (2, %s)', secret)
    return alice, repo, secret


@pytest.mark.parametrize("call", [
    "select * from splitgraph.get_pending_changes('{repo}', 't')",
    "select * from splitgraph.diff('{repo}', 't', 'HEAD')",
], ids=["get_pending_changes", "diff"])
def test_h4_row_level_calls_on_a_private_checkout_table_are_refused(conn, roles, private_checkout, call):
    """H4: the pending rows of alice's checkout table, which bob may not SELECT: 42501 for the named table."""
    alice, repo, secret = private_checkout
    bob = roles.new("h4bob")
    assert attempt(bob.conn, f'select * from "{repo}".t').pgcode == "42501"
    error = attempt(bob.conn, call.format(repo=repo))
    assert error is not None and error.pgcode == "42501", f"bob read alice's pending rows with {call}"


@pytest.mark.parametrize("call", [
    "select table_name, added from splitgraph.status('{repo}')",
    "select table_name, added from splitgraph.status() where repository = '{repo}'",
    "select table_name, added from splitgraph.diff_summary('{repo}', 'HEAD')",
], ids=["status(repository)", "status()", "diff_summary"])
def test_h4_summaries_skip_or_refuse_a_private_checkout_table(conn, roles, private_checkout, call):
    """H4: status and diff_summary say nothing to bob about alice's table he may not read: it is skipped, or the
    call refused with 42501."""
    alice, repo, secret = private_checkout
    bob = roles.new("h4bob")
    error = attempt(bob.conn, call.format(repo=repo))
    rows = sql(bob.conn, call.format(repo=repo)) if error is None else []
    assert (error is not None and error.pgcode == "42501") or rows == [], f"{call}: {rows or error}"
    # alice herself still sees her change
    assert sql(alice.conn, f"select table_name, added from splitgraph.status('{repo}')") == [("t", 1)]
