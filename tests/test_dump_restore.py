"""pg_dump / pg_restore keep the whole history: the metadata tables are extension configuration tables
(pg_extension_config_dump) and the fragments are ordinary tables, so a custom-format dump restored into a new,
empty database (pg_restore creates the extension itself) gives back the same repositories, images, tags,
branches, tables and objects, and the restored engine keeps working."""
import subprocess

import pytest

from conftest import sql, value
from support import driver  # noqa: E402

PG_BIN = "/usr/lib/postgresql/15/bin"
META_TABLES = {
    "repositories": "repository",
    "images": "repository, image_hash",
    "tags": "repository, tag",
    "branches": "repository, branch",
    "checkouts": "repository",
    "objects": "object_id",
    "object_locations": "object_id",
    "tables": "repository, image_hash, table_name",
    "upstream": "repository",
    "info": "key",
    "merge_parents": "repository, image_hash, parent_id",
}


def rows_of(conn, relation, order="1"):
    return sql(conn, f"select t::text from {relation} t order by {order}")


def build_source(conn):
    """Two checked-out repositories (one layered), one not checked out; tags, branches, a chunked table."""
    expected = {}
    sql(conn, "select splitgraph.init('dr/alpha')")
    sql(conn, 'create table "dr/alpha".t (id int primary key, v text, at timestamptz)')
    sql(conn, """insert into "dr/alpha".t
                 select i, md5(i::text), timestamptz '2020-01-01 00:00+00' + i * interval '1 day'
                 from generate_series(1, 25) i""")
    sql(conn, 'create table "dr/alpha".nopk (a int, b text)')
    sql(conn, "insert into \"dr/alpha\".nopk values (1, 'x'), (1, 'x'), (2, null)")
    v1 = value(conn, "select splitgraph.commit('dr/alpha', 'first', chunk_size => 10)")
    sql(conn, "select splitgraph.tag('dr/alpha', %s, 'v1')", v1)
    expected["v1_t"] = rows_of(conn, '"dr/alpha".t', "id")
    expected["v1_nopk"] = rows_of(conn, '"dr/alpha".nopk')

    sql(conn, "update \"dr/alpha\".t set v = 'changed' where id % 4 = 0")
    sql(conn, 'delete from "dr/alpha".t where id > 22')
    sql(conn, "insert into \"dr/alpha\".t values (100, 'new', null)")
    sql(conn, "insert into \"dr/alpha\".nopk values (3, 'it''s \"q\"')")
    v2 = value(conn, "select splitgraph.commit('dr/alpha', 'second', chunk_size => 10)")
    sql(conn, "select splitgraph.tag('dr/alpha', %s, 'v2')", v2)
    sql(conn, "select splitgraph.tag('dr/alpha', %s, 'stable')", v2)
    expected["v2_t"] = rows_of(conn, '"dr/alpha".t', "id")

    sql(conn, "select splitgraph.branch('dr/alpha', 'dev', 'v1')")
    sql(conn, "select splitgraph.checkout('dr/alpha', 'dev')")
    sql(conn, 'create table "dr/alpha".extra (k text primary key)')
    sql(conn, "insert into \"dr/alpha\".extra values ('only on dev')")
    dev = value(conn, "select splitgraph.commit('dr/alpha', 'on dev')")
    sql(conn, "select splitgraph.checkout('dr/alpha', 'main')")

    sql(conn, "select splitgraph.init('beta')")
    sql(conn, "create table beta.x (a int primary key, b float8)")
    sql(conn, "insert into beta.x select i, i / 3.0 from generate_series(1, 5) i")
    b1 = value(conn, "select splitgraph.commit('beta', 'beta one')")
    sql(conn, "select splitgraph.tag('beta', %s, 'stable')", b1)
    sql(conn, "insert into beta.x values (6, 2)")
    value(conn, "select splitgraph.commit('beta', 'beta two')")
    sql(conn, "select splitgraph.checkout('beta', 'stable', layered => true)")

    sql(conn, "select splitgraph.init('dr/gamma')")
    sql(conn, 'create table "dr/gamma".g (id int primary key)')
    sql(conn, 'insert into "dr/gamma".g values (1)')
    value(conn, "select splitgraph.commit('dr/gamma')")
    sql(conn, "select splitgraph.uncheckout('dr/gamma')")

    # a merge image: its second parent lives in splitgraph_meta.merge_parents
    sql(conn, "select splitgraph.init('dr/delta')")
    sql(conn, 'create table "dr/delta".m (id int primary key, v text)')
    sql(conn, "insert into \"dr/delta\".m values (1, 'base'), (2, 'base')")
    value(conn, "select splitgraph.commit('dr/delta')")
    sql(conn, "select splitgraph.branch('dr/delta', 'side')")
    sql(conn, "update \"dr/delta\".m set v = 'main' where id = 1")
    value(conn, "select splitgraph.commit('dr/delta')")
    sql(conn, "select splitgraph.checkout('dr/delta', 'side')")
    sql(conn, "update \"dr/delta\".m set v = 'side' where id = 2")
    value(conn, "select splitgraph.commit('dr/delta')")
    sql(conn, "select splitgraph.checkout('dr/delta', 'main')")
    merged = value(conn, "select splitgraph.merge('dr/delta', 'side')")
    expected.update(v1=v1, v2=v2, dev=dev, b1=b1, merged=merged)
    return expected


def snapshot(conn):
    """Everything the API and the metadata say, plus the data of checkouts and fragments."""
    snap = {"meta": {}, "api": {}, "data": {}}
    for table, key in META_TABLES.items():
        snap["meta"][table] = rows_of(conn, f"splitgraph_meta.{table}", key)
    repos = sql(conn, "select * from splitgraph.repositories()")
    snap["api"]["repositories"] = repos
    for repo, head, *_ in repos:
        api = snap["api"][repo] = {}
        api["images"] = sql(conn, "select * from splitgraph.images(%s)", repo)
        api["branches"] = sql(conn, "select * from splitgraph.branches(%s)", repo)
        for (branch, *_rest) in api["branches"]:
            api["log " + branch] = sql(conn, "select * from splitgraph.log(%s, %s)", repo, branch)
        if head is not None:
            api["log HEAD"] = sql(conn, "select * from splitgraph.log(%s)", repo)
        for image_hash, *_rest in api["images"]:
            shown = value(conn, "select splitgraph.show(%s, %s)", repo, image_hash)
            api["show " + image_hash] = shown
            for table in shown["tables"]:
                api[f"table_info {image_hash} {table}"] = value(
                    conn, "select splitgraph.table_info(%s, %s, %s)", repo, image_hash, table)
    for (object_id,) in sql(conn, "select object_id from splitgraph_meta.objects order by 1"):
        snap["api"]["object " + object_id] = value(conn, "select splitgraph.object_info(%s)", object_id)
        snap["data"][object_id] = sorted(r[0] for r in rows_of(conn, f'splitgraph_meta."{object_id}"'))
    for schema, table in sql(conn, """select table_schema, table_name from information_schema.tables
                                      where table_schema in ('dr/alpha', 'beta', 'dr/gamma', 'dr/delta')
                                      order by 1, 2"""):
        snap["data"][f"{schema}.{table}"] = sorted(r[0] for r in rows_of(conn, f'"{schema}"."{table}"'))
    return snap


def run_tool(*args):
    return subprocess.run(list(args), capture_output=True, text=True)


@pytest.fixture(scope="module")
def restored(cluster, dbname, tmp_path_factory):
    """(expected values, snapshot of the source, name of the restored database, snapshot of it, dump file)."""
    with driver.connect(cluster.dsn(dbname), autocommit=True) as conn:
        expected = build_source(conn)
        source = snapshot(conn)
    dump = tmp_path_factory.mktemp("dump") / "source.dump"
    out = run_tool(f"{PG_BIN}/pg_dump", "-Fc", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
                   "-f", str(dump), dbname)
    assert out.returncode == 0, out.stderr
    target = dbname + "_restored"
    cluster.create_database(target, extension=False)
    out = run_tool(f"{PG_BIN}/pg_restore", "-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres",
                   "-d", target, str(dump))
    assert out.returncode == 0, "pg_restore failed:\n" + out.stderr
    assert "error" not in out.stderr.lower(), out.stderr
    with driver.connect(cluster.dsn(target), autocommit=True) as conn:
        restored_snap = snapshot(conn)
    return expected, source, target, restored_snap, dump


@pytest.fixture
def rconn(cluster, restored):
    with driver.connect(cluster.dsn(restored[2]), autocommit=True) as c:
        yield c


def test_source_is_what_the_test_means(restored):
    expected, source, *_ = restored
    assert [r[0] for r in source["api"]["repositories"]] == ["beta", "dr/alpha", "dr/delta", "dr/gamma"]
    assert len(source["meta"]["merge_parents"]) == 1
    assert source["api"]["dr/delta"]["show " + expected["merged"]]["parents"][1] == \
        source["api"]["dr/delta"]["branches"][1][1]  # the merge's second parent is side's head
    assert len(source["api"]["dr/alpha"]["table_info %s t" % expected["v1"]]["objects"]) == 3
    assert len(source["api"]["dr/alpha"]["images"]) == 4
    assert {b[0] for b in source["api"]["dr/alpha"]["branches"]} == {"dev", "main"}
    assert len(source["meta"]["tags"]) == 4


def test_restored_database_has_the_extension(rconn):
    assert value(rconn, "select extversion from pg_extension where extname = 'splitgraph'") is not None


def test_metadata_tables_are_identical(restored):
    _, source, _, target, _ = restored
    for table in META_TABLES:
        assert target["meta"][table] == source["meta"][table], table


def test_api_results_are_identical(restored):
    _, source, _, target, _ = restored
    assert target["api"].keys() == source["api"].keys()
    for key in source["api"]:
        assert target["api"][key] == source["api"][key], key


def test_checkouts_and_fragments_are_identical(restored):
    _, source, _, target, _ = restored
    assert target["data"].keys() == source["data"].keys()
    assert "dr/alpha.t" in source["data"] and "beta.x" in source["data"]
    for key in source["data"]:
        assert target["data"][key] == source["data"][key], key


def test_restored_objects_still_hash_to_their_ids(cluster, restored, rconn):
    """Every restored fragment dumps and loads (with verification of its content hash) into a new engine."""
    other = restored[2] + "_verify"
    cluster.create_database(other)
    ids = [r[0] for r in sql(rconn, "select object_id from splitgraph_meta.objects order by 1")]
    assert len(ids) >= 6
    with driver.connect(cluster.dsn(other), autocommit=True) as c:
        for object_id in ids:
            data = value(rconn, "select splitgraph.dump_object(%s)", object_id)
            sql(c, "select splitgraph.load_object(%s, %s)", object_id, data)
        assert value(c, "select count(*) from splitgraph_meta.objects") == len(ids)


def test_checkout_of_an_old_tag_in_the_restored_database(restored, rconn):
    expected = restored[0]
    assert value(rconn, "select splitgraph.checkout('dr/alpha', 'v1')") == expected["v1"]
    assert rows_of(rconn, '"dr/alpha".t', "id") == expected["v1_t"]
    assert sorted(rows_of(rconn, '"dr/alpha".nopk')) == sorted(expected["v1_nopk"])
    assert value(rconn, "select to_regclass('\"dr/alpha\".extra')") is None
    assert value(rconn, "select splitgraph.checkout('dr/alpha', 'dev')") == expected["dev"]
    assert sql(rconn, 'select k from "dr/alpha".extra') == [("only on dev",)]
    assert value(rconn, "select splitgraph.checkout('dr/gamma', 'latest')") is not None
    assert sql(rconn, 'select id from "dr/gamma".g') == [(1,)]


def test_new_commit_in_the_restored_database(restored, rconn):
    expected = restored[0]
    head = value(rconn, "select splitgraph.checkout('dr/alpha', 'main')")
    assert head == expected["v2"]
    assert rows_of(rconn, '"dr/alpha".t', "id") == expected["v2_t"]
    max_seq = value(rconn, "select max(seq) from splitgraph_meta.images")
    # unchanged data: the same objects as before the dump (hashing agrees with the restored objects)
    same = value(rconn, "select splitgraph.commit('dr/alpha', 'unchanged', chunk_size => 10)")
    info_before = value(rconn, "select splitgraph.table_info('dr/alpha', 'v2', 't')")
    info_after = value(rconn, "select splitgraph.table_info('dr/alpha', %s, 't')", same)
    assert info_after["objects"] == info_before["objects"]
    sql(rconn, "insert into \"dr/alpha\".t values (200, 'after restore', now())")
    new = value(rconn, "select splitgraph.commit('dr/alpha', 'after restore')")
    log = sql(rconn, "select image_hash, parent_id, comment from splitgraph.log('dr/alpha')")
    assert [r[0] for r in log[:4]] == [new, same, expected["v2"], expected["v1"]]
    assert log[0][1] == same and log[0][2] == "after restore"
    assert sql(rconn, "select image_hash from splitgraph.branches('dr/alpha') where branch = 'main'") == [(new,)]
    assert value(rconn, "select splitgraph.checkout('dr/alpha', 'latest')") == new
    assert value(rconn, "select image_hash from splitgraph.images('dr/alpha') order by created desc limit 1") == new
    assert value(rconn, "select seq from splitgraph_meta.images where image_hash = %s", new) > max_seq
    sql(rconn, "select splitgraph.tag('dr/alpha', %s, 'v3')", new)
    assert value(rconn, "select tags from splitgraph.log('dr/alpha') limit 1") == ["v3"]
    # the layered checkout of beta still reads through the restored fragments
    assert value(rconn, "select count(*) from beta.x") == 5
    sql(rconn, "select splitgraph.checkout('beta', 'latest')")
    assert value(rconn, "select count(*) from beta.x") == 6


def test_cleanup_in_the_restored_database_keeps_referenced_objects(restored, rconn):
    assert len(restored[1]["meta"]["objects"]) >= 6
    before = value(rconn, "select count(*) from splitgraph_meta.objects")
    assert value(rconn, "select splitgraph.cleanup()") == 0
    assert value(rconn, "select count(*) from splitgraph_meta.objects") == before


def test_parallel_restore(cluster, restored):
    """A parallel restore gives the same result; tried three times, since a missed ordering would be a race.

    The metadata tables keep their invariants as foreign keys, which parallel jobs loading them in any order
    would trip, so the data is restored on its own with triggers disabled (the README's recipe): schema first,
    then the data with -j, then indexes and constraints."""
    _, source, target, _, dump = restored
    for attempt in range(3):
        name = f"{target[:40]}_par{attempt}"
        cluster.create_database(name, extension=False)
        base = ["-h", "127.0.0.1", "-p", str(cluster.port), "-U", "postgres", "-d", name]
        for step in (["--section=pre-data"], ["--data-only", "--disable-triggers", "-j", "8"],
                     ["--section=post-data", "-j", "8"]):
            out = run_tool(f"{PG_BIN}/pg_restore", *step, *base, str(dump))
            assert out.returncode == 0, f"pg_restore {step} failed:\n" + out.stderr[-3000:]
        with driver.connect(cluster.dsn(name), autocommit=True) as conn:
            assert snapshot(conn)["meta"] == source["meta"]
