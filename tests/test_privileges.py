"""Privileges: a role that is not a superuser writes only to repositories of the namespace named like it, and
reads every repository; the metadata and the helpers are out of its reach; and nothing a role controls makes
the SECURITY DEFINER API run the role's code with the owner's rights.

Roles alice and bob (LOGIN, not superusers) connect over 127.0.0.1, which the test cluster trusts."""
import json
import os
import pathlib
import shutil
import sys
import tempfile
import textwrap
import zlib

import psycopg2
import pytest

from conftest import fails, sql, value

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "plpython"))
from splitgraph_pl import hashing  # noqa: E402
from support import driver  # noqa: E402

ROLES = ("alice", "bob")


@pytest.fixture(scope="module")
def roles(cluster, dbname):
    for role in ROLES:
        cluster.psql(f"""do $$ begin
                           if not exists (select from pg_roles where rolname = '{role}') then
                             create role {role} login nosuperuser nocreatedb nocreaterole;
                           end if;
                         end $$""")
    assert cluster.psql("select string_agg(rolname || ':' || rolsuper, ',' order by rolname) from pg_roles "
                        "where rolname in ('alice', 'bob')") == "alice:false,bob:false"
    return ROLES


def connect(cluster, dbname, user):
    return driver.connect(cluster.dsn(dbname, user=user), autocommit=True)


@pytest.fixture
def alice(cluster, dbname, roles):
    with connect(cluster, dbname, "alice") as c:
        yield c


@pytest.fixture
def bob(cluster, dbname, roles):
    with connect(cluster, dbname, "bob") as c:
        yield c


@pytest.fixture(scope="module")
def alice_repo(cluster, dbname, roles):
    """alice/repo made by alice: image v1 with t = {1, 2}, then image v2 with t = {1, 2, 3}, checked out."""
    with connect(cluster, dbname, "alice") as c:
        sql(c, "select splitgraph.init('alice/repo')")
        sql(c, 'create table "alice/repo".t (id int primary key, v text)')
        sql(c, "insert into \"alice/repo\".t values (1, 'a'), (2, 'b')")
        v1 = value(c, "select splitgraph.commit('alice/repo', 'first')")
        sql(c, "select splitgraph.tag('alice/repo', %s, 'v1')", v1)
        sql(c, "insert into \"alice/repo\".t values (3, 'c')")
        v2 = value(c, "select splitgraph.commit('alice/repo', 'second')")
        sql(c, "select splitgraph.tag('alice/repo', %s, 'v2')", v2)
    return {"v1": v1, "v2": v2}


TAGS = "select t, image_hash from splitgraph.images('alice/repo'), unnest(tags) t order by 1"


def denied(conn, query, *args, sqlstate="42501"):
    return fails(conn, query, *args, sqlstate=sqlstate)


def metadata(conn, repo):
    return (sql(conn, "select * from splitgraph.images(%s)", repo),
            sql(conn, "select * from splitgraph.branches(%s)", repo),
            sql(conn, "select * from splitgraph.repositories() where repository = %s", repo))


# ---------------------------------------------------------------------------------------------------------------
# alice writes her namespace
# ---------------------------------------------------------------------------------------------------------------

def test_alice_can_init_commit_tag_and_checkout_her_repository(alice, alice_repo):
    assert value(alice, "select head from splitgraph.repositories() where repository = 'alice/repo'") \
        == alice_repo["v2"]
    assert value(alice, "select splitgraph.checkout('alice/repo', 'v1')") == alice_repo["v1"]
    assert sql(alice, 'select id, v from "alice/repo".t order by id') == [(1, "a"), (2, "b")]
    # the checkout is hers: she writes into it and commits it
    assert value(alice, "select tableowner from pg_tables where schemaname = 'alice/repo' and tablename = 't'") \
        == "alice"
    sql(alice, "insert into \"alice/repo\".t values (10, 'ten')")
    sql(alice, "update \"alice/repo\".t set v = 'A' where id = 1")
    sql(alice, 'create table "alice/repo".u (x int)')
    image = value(alice, "select splitgraph.commit('alice/repo', 'from v1')")
    assert value(alice, "select parent_id from splitgraph.log('alice/repo') limit 1") == alice_repo["v1"]
    sql(alice, "select splitgraph.tag('alice/repo', %s, 'mine')", image)
    sql(alice, "select splitgraph.branch('alice/repo', 'feature', 'mine')")
    sql(alice, "select splitgraph.delete_branch('alice/repo', 'feature')")
    sql(alice, "select splitgraph.delete_tag('alice/repo', 'mine')")
    assert value(alice, "select splitgraph.checkout('alice/repo', 'v2')") == alice_repo["v2"]
    assert value(alice, 'select count(*) from "alice/repo".t') == 3
    assert value(alice, "select to_regclass('\"alice/repo\".u')") is None


def test_alice_can_remove_her_repository(alice):
    sql(alice, "select splitgraph.init('alice/tmp')")
    sql(alice, "select splitgraph.uncheckout('alice/tmp')")
    sql(alice, "select splitgraph.checkout('alice/tmp', 'main')")
    sql(alice, "select splitgraph.rm('alice/tmp')")
    assert value(alice, "select count(*) from splitgraph.repositories() where repository = 'alice/tmp'") == 0
    assert value(alice, "select count(*) from pg_namespace where nspname = 'alice/tmp'") == 0


# ---------------------------------------------------------------------------------------------------------------
# bob reads alice's repository but cannot change it
# ---------------------------------------------------------------------------------------------------------------

def test_bob_reads_alice_repository_through_the_api(bob, alice_repo):
    log = sql(bob, "select image_hash, comment, tags from splitgraph.log('alice/repo', 'v2')")
    assert [r[0] for r in log] == [alice_repo["v2"], alice_repo["v1"], "0" * 64]
    assert log[0][1:] == ("second", ["v2"])
    shown = value(bob, "select splitgraph.show('alice/repo', 'v1')")
    assert shown["image_hash"] == alice_repo["v1"] and "t" in shown["tables"]
    info = value(bob, "select splitgraph.table_info('alice/repo', 'v2', 't')")
    assert info["rows"] == 3 and len(info["objects"]) == 2, "v2 is v1's fragment plus one of its changes"
    assert value(bob, "select splitgraph.object_info(%s)", info["objects"][0])["rows_inserted"] == 2
    assert value(bob, "select count(*) from splitgraph.images('alice/repo')") >= 3
    # through the API only: the metadata schema is the extension's
    assert denied(bob, "select count(*) from splitgraph_meta.images where repository = 'alice/repo'")
    assert len(value(bob, "select splitgraph.dump_object(%s)", info["objects"][0])) > 0


def test_bob_can_select_from_alice_checkout(alice, bob, alice_repo):
    sql(alice, "select splitgraph.checkout('alice/repo', 'v2')")
    assert sql(bob, 'select id, v from "alice/repo".t order by id') == [(1, "a"), (2, "b"), (3, "c")]


@pytest.mark.parametrize("call", [
    "select splitgraph.commit('alice/repo')",
    "select splitgraph.commit('alice/repo', 'by bob', snapshot => true)",
    "select splitgraph.tag('alice/repo', 'v1', 'bobs')",
    "select splitgraph.tag('alice/repo', 'v1', 'v2')",
    "select splitgraph.delete_tag('alice/repo', 'v1')",
    "select splitgraph.branch('alice/repo', 'bobs')",
    "select splitgraph.delete_branch('alice/repo', 'main')",
    "select splitgraph.checkout('alice/repo', 'v1')",
    "select splitgraph.checkout('alice/repo', 'v1', force => true)",
    "select splitgraph.uncheckout('alice/repo')",
    "select splitgraph.rm('alice/repo')",
])
def test_bob_cannot_change_alice_repository(alice, bob, alice_repo, call):
    sql(alice, "select splitgraph.checkout('alice/repo', 'main')")
    before = metadata(alice, "alice/repo")
    tags = sql(alice, TAGS)
    err = denied(bob, call)
    assert "alice/repo" in str(err)
    assert metadata(alice, "alice/repo") == before
    assert sql(alice, TAGS) == tags
    assert sql(alice, 'select id from "alice/repo".t order by id') == [(1,), (2,), (3,)]


def test_bob_cannot_write_alice_checkout_tables(alice, bob, alice_repo):
    sql(alice, "select splitgraph.checkout('alice/repo', 'main')")
    denied(bob, "insert into \"alice/repo\".t values (99, 'bob')")
    denied(bob, 'delete from "alice/repo".t')
    denied(bob, 'create table "alice/repo".bobs (x int)')
    assert value(alice, 'select count(*) from "alice/repo".t') == 3


def test_bob_cannot_init_in_another_namespace(bob, alice_repo):
    denied(bob, "select splitgraph.init('alice/x')")
    denied(bob, "select splitgraph.init('nonamespace')")
    denied(bob, "select splitgraph.init('alice/repo')")
    assert value(bob, "select count(*) from splitgraph.repositories() where repository in ('alice/x', 'nonamespace')") \
        == 0
    assert value(bob, "select count(*) from pg_namespace where nspname in ('alice/x', 'nonamespace')") == 0


def test_refusal_hint_names_a_valid_repository(bob, alice_repo):
    err = denied(bob, "select splitgraph.commit('alice/repo')")
    hint = err.diag.message_hint or ""
    assert "bob/alice/repo" not in hint


def test_bob_writes_his_own_namespace(bob):
    sql(bob, "select splitgraph.init('bob/mine')")
    sql(bob, 'create table "bob/mine".t (id int primary key)')
    sql(bob, 'insert into "bob/mine".t values (1)')
    image = value(bob, "select splitgraph.commit('bob/mine')")
    sql(bob, "select splitgraph.tag('bob/mine', %s, 'v1')", image)
    assert value(bob, "select tags from splitgraph.log('bob/mine') limit 1") == ["v1"]
    assert value(bob, "select splitgraph.checkout('bob/mine', 'v1')") == image
    assert value(bob, 'select count(*) from "bob/mine".t') == 1


def test_non_superusers_cannot_run_cleanup(conn, alice, bob, alice_repo):
    # an unreferenced object exists, so a cleanup that ran would have deleted something
    sql(conn, "select splitgraph.init('admin/garbage')")
    sql(conn, 'create table "admin/garbage".g (x int)')
    sql(conn, 'insert into "admin/garbage".g values (424242)')
    image = value(conn, "select splitgraph.commit('admin/garbage')")
    oid = value(conn, "select splitgraph.table_info('admin/garbage', %s, 'g')", image)["objects"][0]
    sql(conn, "select splitgraph.rm('admin/garbage')")
    for role in (alice, bob):
        denied(role, "select splitgraph.cleanup()")
    assert value(conn, "select splitgraph.object_info(%s)", oid) is not None
    assert value(conn, "select splitgraph.cleanup()") >= 1
    assert value(conn, "select splitgraph.object_info(%s)", oid) is None


@pytest.mark.parametrize("statement", [
    "insert into splitgraph_meta.tags (repository, tag, image_hash) values ('alice/repo', 'x', repeat('0', 64))",
    "insert into splitgraph_meta.repositories (repository) values ('bob/direct')",
    "update splitgraph_meta.branches set image_hash = repeat('0', 64) where repository = 'alice/repo'",
    "delete from splitgraph_meta.images where repository = 'alice/repo'",
    "delete from splitgraph_meta.objects",
    "truncate splitgraph_meta.tags",
    "create table splitgraph_meta.bobs (x int)",
    "select splitgraph_internal.commit('alice/repo', null, false, null, null)",
    "select splitgraph_internal.rm('alice/repo', false)",
])
def test_bob_cannot_touch_metadata_or_helpers_directly(alice, bob, alice_repo, statement):
    before = metadata(alice, "alice/repo")
    denied(bob, statement)
    assert metadata(alice, "alice/repo") == before
    assert value(alice, "select count(*) from splitgraph.repositories() where repository = 'bob/direct'") == 0


def test_bob_cannot_drop_alice_fragments(conn, bob, alice_repo):
    oid = value(bob, "select splitgraph.table_info('alice/repo', 'v1', 't')")["objects"][0]
    denied(bob, f'drop table splitgraph_meta."{oid}"')
    denied(bob, f'delete from splitgraph_meta."{oid}"')
    assert value(conn, f'select count(*) from splitgraph_meta."{oid}"') == 2


def test_alice_can_read_her_layered_checkout(alice, alice_repo):
    assert value(alice, "select splitgraph.checkout('alice/repo', 'v1', layered => true)") == alice_repo["v1"]
    try:
        assert sql(alice, 'select id, v from "alice/repo".t order by id') == [(1, "a"), (2, "b")]
    finally:
        sql(alice, "select splitgraph.checkout('alice/repo', 'main')")


def test_apply_fragments_needs_ownership_of_the_target(alice, bob, alice_repo):
    sql(alice, "select splitgraph.checkout('alice/repo', 'main')")
    oid = value(bob, "select splitgraph.table_info('alice/repo', 'v1', 't')")["objects"][0]
    denied(bob, "select splitgraph.apply_fragments(array[%s], 'alice/repo', 't')", oid)
    sql(bob, "select splitgraph.init('bob/apply')")
    sql(bob, 'create table "bob/apply".t (id int primary key, v text)')
    # extra_quals run with bob's own rights: what bob may not read, his quals may not read either
    denied(bob, "select splitgraph.apply_fragments(array[%s], 'bob/apply', 't', "
                "'(select count(*) from pg_authid) > 0')", oid)
    sql(bob, "select splitgraph.apply_fragments(array[%s], 'bob/apply', 't', 'f.id > 1')", oid)
    assert sql(bob, 'select * from "bob/apply".t order by 1') == [(2, "b")]
    sql(bob, "select splitgraph.apply_fragments(array[%s], 'bob/apply', 't')", oid)
    assert sql(bob, 'select * from "bob/apply".t order by 1') == [(1, "a"), (2, "b")]


# ---------------------------------------------------------------------------------------------------------------
# bob's own code must never run with the API owner's rights
# ---------------------------------------------------------------------------------------------------------------

SPY = """create function "{schema}".spy() returns {returns} language plpgsql as $f$
begin
  insert into "{schema}".seen select current_user::text, (select rolsuper from pg_roles where rolname = current_user);
  return {result};
end $f$"""


def test_apply_fragments_does_not_run_callers_triggers_as_superuser(bob, alice_repo):
    sql(bob, "select splitgraph.init('bob/trap')")
    sql(bob, 'create table "bob/trap".seen (who text, su bool)')
    sql(bob, SPY.format(schema="bob/trap", returns="trigger", result="new"))
    sql(bob, 'create table "bob/trap".target (id int primary key, v text)')
    sql(bob, 'create trigger spy after insert on "bob/trap".target for each row execute function "bob/trap".spy()')
    oid = value(bob, "select splitgraph.table_info('alice/repo', 'v1', 't')")["objects"][0]
    try:
        sql(bob, "select splitgraph.apply_fragments(array[%s], 'bob/trap', 'target')", oid)
    except psycopg2.Error as err:  # refusing the call is a correct outcome too
        assert err.pgcode == "42501"
    seen = sql(bob, 'select who, su from "bob/trap".seen')
    assert all(not su for _, su in seen), seen


def test_load_object_does_not_run_callers_domain_checks_as_superuser(bob, roles):
    sql(bob, "select splitgraph.init('bob/domain')")
    sql(bob, 'create table "bob/domain".seen (who text, su bool)')
    sql(bob, """create function "bob/domain".check_it(int) returns bool language plpgsql as $f$
                begin
                  insert into "bob/domain".seen
                  select current_user::text, (select rolsuper from pg_roles where rolname = current_user);
                  return true;
                end $f$""")
    sql(bob, 'create domain "bob/domain".d as int check ("bob/domain".check_it(value))')
    cols = [[1, "id", '"bob/domain".d', False]]
    insertion = hashing.row_hash("(1)")
    oid = hashing.object_id(insertion, hashing.ZERO, cols)
    header = {"object_id": oid, "format": "FRAG", "namespace": "bob", "rows_inserted": 1, "rows_deleted": 0,
              "insertion_hash": insertion, "deletion_hash": hashing.ZERO, "index": {}, "table_schema": cols,
              "dump_format": "splitgraph-object/1"}
    data = zlib.compress(json.dumps(header).encode() + b"\n" + b'{"(1,t)"}')
    try:
        sql(bob, "select splitgraph.load_object(%s, %s)", oid, data)
    except psycopg2.Error as err:
        assert err.pgcode in ("42501", "XX001")
    seen = sql(bob, 'select who, su from "bob/domain".seen')
    assert all(not su for _, su in seen), seen


@pytest.fixture
def planted_package():
    """A directory any local user could have written: a fake splitgraph_pl whose log() reports who runs it."""
    base = tempfile.mkdtemp(prefix="sg-planted-")
    os.chmod(base, 0o755)
    pkg = pathlib.Path(base) / "splitgraph_pl"
    pkg.mkdir()
    (pkg / "__init__.py").write_text("")
    (pkg / "images.py").write_text(textwrap.dedent("""
        def log(plpy, repository, image="HEAD"):
            row = plpy.execute("select current_user::text as u, "
                               "(select rolsuper from pg_roles where rolname = current_user) as s")[0]
            return [{"image_hash": "planted", "parent_id": row["u"], "created": None,
                     "comment": str(row["s"]), "tags": []}]
    """))
    for p in (pkg, pkg / "__init__.py", pkg / "images.py"):
        os.chmod(p, 0o755 if p.is_dir() else 0o644)
    yield base
    shutil.rmtree(base, ignore_errors=True)


def test_a_role_cannot_redirect_the_python_package(bob, alice_repo, planted_package):
    sql(bob, "select set_config('splitgraph.python_lib_dir', %s, false)", planted_package)
    try:
        log = sql(bob, "select image_hash, parent_id, comment from splitgraph.log('alice/repo', 'v2')")
    except psycopg2.Error as err:  # refusing the setting is a correct outcome too
        assert err.pgcode == "42501"
        return
    assert log[0][0] == alice_repo["v2"], log
