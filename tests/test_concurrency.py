"""Concurrency and atomicity: calls that change one repository are serialized; identical data committed at the
same time in different repositories is stored once; cleanup() never collects an object a concurrent
transaction is about to reference (nor waits for it); a commit that fails midway leaves nothing behind."""
import threading
import time
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest

from conftest import sql, value
from support import driver  # noqa: E402

ZERO = "0" * 64


@pytest.fixture
def connect(cluster, dbname):
    opened = []

    def _connect(autocommit=True):
        c = driver.connect(cluster.dsn(dbname), autocommit=autocommit)
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


def wait_until_blocked(observer, pid, timeout=10.0):
    """The (wait_event_type, wait_event) of backend `pid` once it waits on a lock; fails after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        row = sql(observer, "select wait_event_type, wait_event, state from pg_stat_activity where pid = %s", pid)
        if row and row[0][0] == "Lock":
            return row[0][:2]
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} never waited on a lock: {row}")


def in_background(conn, query, *args):
    """Run a query on `conn` in a thread; returns the future of its rows."""
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(sql, conn, query, *args)
    pool.shutdown(wait=False)
    return future


def stored_objects(conn):
    return (value(conn, "select count(*) from splitgraph_meta.objects"),
            value(conn, """select count(*) from pg_class where relnamespace = 'splitgraph_meta'::regnamespace
                           and relkind in ('r', 'p') and (relname ~ '^o[0-9a-f]{62}$' or relname like 'sg_tmp%%')"""))


def make_repo(conn, repo, rows=25, salt=""):
    """A repository with table t of `rows` rows; the same salt gives the same rows."""
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f'insert into "{repo}".t select i, md5(i::text || %s) from generate_series(1, {int(rows)}) i', salt)


def test_commits_of_one_repository_are_serialized(conn, connect):
    make_repo(conn, "cc/same", salt="same")
    base = value(conn, "select splitgraph.commit('cc/same', 'base')")
    first, second = connect(autocommit=False), connect()
    sql(first, "select splitgraph.commit('cc/same', 'first')")
    image_1 = None
    blocked = in_background(second, "select splitgraph.commit('cc/same', 'second')")
    try:
        wait_until_blocked(conn, second.info.backend_pid)
        time.sleep(0.2)
        assert not blocked.done()
        image_1 = value(first, "select image_hash from splitgraph_meta.checkouts where repository = 'cc/same'")
    finally:
        first.commit()
    image_2 = blocked.result(timeout=30)[0][0]
    log = sql(conn, "select image_hash, parent_id, comment from splitgraph.log('cc/same')")
    assert log[:3] == [(image_2, image_1, "second"), (image_1, base, "first"), (base, ZERO, "base")]
    assert value(conn, "select image_hash from splitgraph.branches('cc/same') where branch = 'main'") == image_2
    assert value(conn, "select count(*) from splitgraph.images('cc/same')") == 4


def test_tags_wait_for_a_commit_in_progress(conn, connect):
    make_repo(conn, "cc/tagging", rows=3, salt="tagging")
    value(conn, "select splitgraph.commit('cc/tagging')")
    first, second = connect(autocommit=False), connect()
    new = value(first, "select splitgraph.commit('cc/tagging')")
    blocked = in_background(second, "select splitgraph.tag('cc/tagging', 'HEAD', 'head-tag')")
    try:
        wait_until_blocked(conn, second.info.backend_pid)
    finally:
        first.commit()
    blocked.result(timeout=30)
    # the tag resolved HEAD after the commit, not before
    assert value(conn, "select image_hash from splitgraph_meta.tags where repository = 'cc/tagging' "
                       "and tag = 'head-tag'") == new


def test_concurrent_init_of_one_repository(conn, connect):
    first, second = connect(autocommit=False), connect()
    sql(first, "select splitgraph.init('cc/born')")
    blocked = in_background(second, "select splitgraph.init('cc/born')")
    try:
        wait_until_blocked(conn, second.info.backend_pid)
    finally:
        first.commit()
    with pytest.raises(psycopg2.Error) as err:
        blocked.result(timeout=30)
    assert err.value.pgcode == "42710", err.value
    assert value(conn, "select images from splitgraph.repositories() where repository = 'cc/born'") == 1


@pytest.mark.parametrize("outcome", ["commit", "rollback"])
def test_identical_data_in_two_repositories_is_stored_once(conn, connect, outcome):
    one, two = f"cc/one-{outcome}", f"cc/two-{outcome}"
    for repo in (one, two):
        make_repo(conn, repo, salt=outcome)
    before = stored_objects(conn)
    first, second = connect(autocommit=False), connect()
    image_1 = value(first, "select splitgraph.commit(%s, chunk_size => 10)", one)
    blocked = in_background(second, "select splitgraph.commit(%s, chunk_size => 10)", two)
    try:
        # the second waits for the first to settle the fate of the objects both want to store
        wait_until_blocked(conn, second.info.backend_pid)
    finally:
        first.commit() if outcome == "commit" else first.rollback()
    image_2 = blocked.result(timeout=30)[0][0]
    ids_2 = value(conn, "select splitgraph.table_info(%s, %s, 't')", two, image_2)["objects"]
    assert len(ids_2) == 3
    if outcome == "commit":
        assert value(conn, "select splitgraph.table_info(%s, %s, 't')", one, image_1)["objects"] == ids_2
    else:
        assert value(conn, "select count(*) from splitgraph_meta.images where image_hash = %s", image_1) == 0
    assert stored_objects(conn) == (before[0] + 3, before[1] + 3)
    for oid in ids_2:
        assert value(conn, "select count(*) from splitgraph_meta.objects where object_id = %s", oid) == 1
    sql(conn, "select splitgraph.checkout(%s, %s)", two, image_2)
    assert value(conn, f'select count(*) from "{two}".t') == 25


def test_many_simultaneous_commits_of_identical_data(conn, connect):
    repos = [f"cc/many-{i}" for i in range(5)]
    for repo in repos:
        make_repo(conn, repo, rows=41, salt="many")
    before = stored_objects(conn)
    conns = [connect() for _ in repos]
    barrier = threading.Barrier(len(repos))

    def commit(c, repo):
        barrier.wait()
        return value(c, "select splitgraph.commit(%s, chunk_size => 10)", repo)

    with ThreadPoolExecutor(max_workers=len(repos)) as pool:
        images = list(pool.map(commit, conns, repos))
    lists = [value(conn, "select splitgraph.table_info(%s, %s, 't')", r, i)["objects"]
             for r, i in zip(repos, images, strict=True)]
    assert all(objects == lists[0] for objects in lists)
    assert len(lists[0]) == 5
    assert stored_objects(conn) == (before[0] + 5, before[1] + 5)


def test_cleanup_skips_an_unreferenced_object_a_commit_is_reusing(conn, connect):
    """cleanup() neither waits for the writer nor deletes the object it is about to reference: it skips it."""
    make_repo(conn, "cc/gone", rows=6, salt="cleanup race")
    gone = value(conn, "select splitgraph.commit('cc/gone')")
    oid = value(conn, "select splitgraph.table_info('cc/gone', %s, 't')", gone)["objects"][0]
    sql(conn, "select splitgraph.rm('cc/gone')")
    make_repo(conn, "cc/reuse", rows=6, salt="cleanup race")
    writer, collector = connect(autocommit=False), connect()
    image = value(writer, "select splitgraph.commit('cc/reuse')")
    assert value(writer, "select splitgraph.table_info('cc/reuse', %s, 't')", image)["objects"] == [oid]
    notices = []
    collector.add_notice_handler(lambda d: notices.append(d.message_primary))
    try:
        sql(collector, "set statement_timeout = '10s'")
        sql(collector, "select splitgraph.cleanup()")
    finally:
        writer.commit()
    assert any(oid in n for n in notices), notices
    assert value(conn, "select splitgraph.object_info(%s)", oid) is not None
    assert value(conn, "select to_regclass(format('splitgraph_meta.%%I', %s::text))", oid) is not None
    sql(conn, "select splitgraph.checkout('cc/reuse', %s)", image)
    assert value(conn, 'select count(*) from "cc/reuse".t') == 6


def test_failed_commit_leaves_no_image_and_no_objects(conn):
    sql(conn, "select splitgraph.init('cc/fails')")
    # tables are stored in name order: these two are stored before the bad one fails
    sql(conn, 'create table "cc/fails".a_chunked (id int primary key, v text)')
    sql(conn, "insert into \"cc/fails\".a_chunked select i, 'never stored ' || i from generate_series(1, 35) i")
    sql(conn, 'create table "cc/fails".b_nopk (x int)')
    sql(conn, 'insert into "cc/fails".b_nopk select i from generate_series(1, 23) i')
    sql(conn, 'create table "cc/fails".c_single (id int primary key)')
    sql(conn, 'insert into "cc/fails".c_single values (987654)')
    sql(conn, 'create table "cc/fails".z_bad (id int, sg_ud_flag boolean)')
    sql(conn, 'insert into "cc/fails".z_bad values (1, true)')
    before_images = sql(conn, "select * from splitgraph.images('cc/fails')")
    before_state = sql(conn, "select head, branch from splitgraph.repositories() where repository = 'cc/fails'")
    before = stored_objects(conn)
    with pytest.raises(psycopg2.Error) as err:
        sql(conn, "select splitgraph.commit('cc/fails', 'doomed', chunk_size => 10)")
    assert err.value.pgcode == "0A000"
    assert "z_bad" in str(err.value)
    assert sql(conn, "select * from splitgraph.images('cc/fails')") == before_images
    assert sql(conn, "select head, branch from splitgraph.repositories() where repository = 'cc/fails'") \
        == before_state
    assert value(conn, "select image_hash from splitgraph.branches('cc/fails') where branch = 'main'") == ZERO
    assert value(conn, "select count(*) from splitgraph_meta.tables where repository = 'cc/fails'") == 0
    assert stored_objects(conn) == before
    # the failure released its locks: the repository commits as soon as the problem is fixed
    sql(conn, 'alter table "cc/fails".z_bad rename column sg_ud_flag to flag')
    image = value(conn, "select splitgraph.commit('cc/fails', 'fixed', chunk_size => 10)")
    assert len(value(conn, "select splitgraph.table_info('cc/fails', %s, 'a_chunked')", image)["objects"]) == 4
    assert stored_objects(conn)[0] == before[0] + 4 + 3 + 1 + 1


def test_failed_commit_inside_a_transaction_rolls_back_with_it(conn, connect):
    make_repo(conn, "cc/txn", rows=12, salt="txn")
    sql(conn, 'create table "cc/txn".zz (sg_ud_flag int)')
    before = stored_objects(conn)
    tx = connect(autocommit=False)
    with pytest.raises(psycopg2.Error) as err:
        sql(tx, "select splitgraph.commit('cc/txn', chunk_size => 5)")
    assert err.value.pgcode == "0A000"
    tx.rollback()
    assert stored_objects(conn) == before
    assert value(conn, "select count(*) from splitgraph.images('cc/txn')") == 1
    # nothing is left locked: another session commits the repository right away
    sql(conn, 'drop table "cc/txn".zz')
    other = connect()
    sql(other, "set lock_timeout = '5s'")
    assert value(other, "select splitgraph.commit('cc/txn', chunk_size => 5)") is not None
