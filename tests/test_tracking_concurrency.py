"""Change tracking under concurrency and failure: commits of one repository from several sessions are serialized
and lose no change; a writer waits while a commit holds its table, and its change stays pending for the next
commit; a commit that fails midway leaves no image, no object, and every change still pending."""
import threading
from concurrent.futures import ThreadPoolExecutor

import psycopg2
import pytest
from test_concurrency import in_background, stored_objects, wait_until_blocked

from conftest import sql, value
from support import driver  # noqa: E402

ZERO = "0" * 64


@pytest.fixture
def connect(cluster, dbname):
    opened = []

    def _connect(autocommit=True):
        c = driver.connect(cluster.dsn(dbname), autocommit=autocommit)
        sql(c, "set client_min_messages = warning")
        opened.append(c)
        return c

    yield _connect
    for c in opened:
        c.close()


def make_repo(conn, repo):
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f'create table "{repo}".u (id int primary key, v text)')
    sql(conn, f"insert into \"{repo}\".t select i, 't' || i from generate_series(1, 5) i")
    sql(conn, f"insert into \"{repo}\".u select i, 'u' || i from generate_series(1, 5) i")
    return value(conn, "select splitgraph.commit(%s, 'base')", repo)


def image_rows(conn, repo, image, table):
    """The rows of a table in an image, read through diff from the root (no checkout needed)."""
    return sorted((r["id"], r["v"]) for (r,) in sql(
        conn, "select row_data from splitgraph.diff(%s, %s, %s, %s) where action = '+'", repo, table, ZERO, image))


def test_a_writer_waits_for_a_commit_and_its_change_goes_into_the_next(conn, connect):
    repo = "tc/writer"
    base = make_repo(conn, repo)
    sql(conn, f"insert into \"{repo}\".t values (100, 'before the first commit')")
    first, writer = connect(autocommit=False), connect()
    image_1 = value(first, "select splitgraph.commit(%s, 'first')", repo)

    def write_then_commit():
        sql(writer, f"insert into \"{repo}\".t values (200, 'while the first commit held the table')")
        sql(writer, f"update \"{repo}\".u set v = 'also waited' where id = 1")
        return value(writer, "select splitgraph.commit(%s, 'second')", repo)

    pool = ThreadPoolExecutor(max_workers=1)
    second = pool.submit(write_then_commit)
    try:
        assert wait_until_blocked(conn, writer.info.backend_pid) == ("Lock", "relation"), \
            "the writer should wait for the committing transaction's lock on the table"
        assert not second.done()
        assert value(conn, f'select count(*) from "{repo}".t where id = 200') == 0
    finally:
        first.commit()
    image_2 = second.result(timeout=30)
    pool.shutdown()

    log = sql(conn, "select image_hash, parent_id from splitgraph.log(%s)", repo)
    assert log[:3] == [(image_2, image_1), (image_1, base), (base, ZERO)], "the commits form one chain"
    assert (100, "before the first commit") in image_rows(conn, repo, image_1, "t")
    assert 200 not in [i for i, _ in image_rows(conn, repo, image_1, "t")], "the waiting change is not in the first"
    t_2 = image_rows(conn, repo, image_2, "t")
    assert (100, "before the first commit") in t_2 and (200, "while the first commit held the table") in t_2
    assert (1, "also waited") in image_rows(conn, repo, image_2, "u")
    assert sql(conn, "select * from splitgraph.status(%s)", repo) == []
    objects = value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image_2)["objects"]
    assert objects[:-1] == value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image_1)["objects"], \
        "the second commit stored the waiting change as a delta on top of the first"


def test_a_change_made_during_a_commit_is_pending_afterwards(conn, connect):
    repo = "tc/pending"
    make_repo(conn, repo)
    first, writer = connect(autocommit=False), connect()
    sql(first, f"update \"{repo}\".t set v = 'committed' where id = 1")
    image_1 = value(first, "select splitgraph.commit(%s)", repo)
    blocked = in_background(writer, f"update \"{repo}\".u set v = 'late' where id = 2")
    try:
        assert wait_until_blocked(conn, writer.info.backend_pid) == ("Lock", "relation")
    finally:
        first.commit()
    blocked.result(timeout=30)
    assert sql(conn, "select table_name, added, removed, updated from splitgraph.status(%s)", repo) == \
        [("u", 0, 0, 1)], "the change that waited is pending against the new HEAD"
    assert value(conn, "select head from splitgraph.repositories() where repository = %s", repo) == image_1
    assert (1, "committed") in image_rows(conn, repo, image_1, "t")
    assert (2, "u2") in image_rows(conn, repo, image_1, "u")


def test_sessions_committing_one_repository_at_once_lose_nothing(conn, connect):
    repo = "tc/race"
    base = make_repo(conn, repo)
    sessions, rounds = 4, 3
    conns = [connect() for _ in range(sessions)]
    barrier = threading.Barrier(sessions)

    def work(n):
        c, made = conns[n], []
        for r in range(rounds):
            row_id = 1000 + 10 * n + r
            table = "t" if (n + r) % 2 else "u"
            sql(c, f"insert into \"{repo}\".{table} values (%s, %s)", row_id, f"session {n} round {r}")
            barrier.wait()
            image = value(c, "select splitgraph.commit(%s, %s)", repo, f"session {n} round {r}")
            made.append((image, table, row_id))
        return made

    with ThreadPoolExecutor(max_workers=sessions) as pool:
        results = list(pool.map(work, range(sessions)))

    images = [image for made in results for image, _, _ in made]
    assert len(set(images)) == sessions * rounds, "every commit succeeded and made its own image"
    log = sql(conn, "select image_hash, parent_id from splitgraph.log(%s)", repo)
    assert len(log) == sessions * rounds + 2, "the commits were serialized into one chain from the base"
    assert {h for h, _ in log[:-2]} == set(images)
    assert log[-2] == (base, ZERO)
    for (_, parent), (older, _) in zip(log, log[1:], strict=False):
        assert parent == older
    for made in results:
        for image, table, row_id in made:
            assert row_id in [i for i, _ in image_rows(conn, repo, image, table)], \
                f"image {image[:8]} lacks row {row_id}, inserted before its commit"
    head = log[0][0]
    expected = {1000 + 10 * n + r for n in range(sessions) for r in range(rounds)}
    got = {i for table in ("t", "u") for i, _ in image_rows(conn, repo, head, table) if i >= 1000}
    assert got == expected, "the last image holds every change"
    assert sql(conn, "select * from splitgraph.status(%s)", repo) == []


def test_commit_and_writer_in_crossed_transactions_fail_cleanly(conn, connect):
    """A transaction that wrote to a table and then commits, while another commit waits for that table: a lock
    cycle. Postgres breaks it; whichever side survives is committed whole and nothing is half-recorded."""
    repo = "tc/crossed"
    base = make_repo(conn, repo)
    writer, committer = connect(autocommit=False), connect(autocommit=False)
    sql(writer, f"insert into \"{repo}\".u values (500, 'writer')")
    sql(committer, f"insert into \"{repo}\".t values (600, 'committer')")
    waiting = in_background(committer, "select splitgraph.commit(%s, 'committer')", repo)
    wait_until_blocked(conn, committer.info.backend_pid)
    outcome = {}
    try:
        outcome["writer"] = sql(writer, "select splitgraph.commit(%s, 'writer')", repo)[0][0]
        writer.commit()
    except psycopg2.Error as e:
        outcome["writer"] = e.pgcode
        writer.rollback()
    try:
        outcome["committer"] = waiting.result(timeout=30)[0][0]
        committer.commit()
    except psycopg2.Error as e:
        outcome["committer"] = e.pgcode
        committer.rollback()
    failed = [k for k, v in outcome.items() if v == "40P01"]
    assert len(failed) == 1, outcome
    survivor = "committer" if failed == ["writer"] else "writer"
    image = outcome[survivor]
    assert sql(conn, "select image_hash, parent_id from splitgraph.log(%s)", repo)[:2] == [(image, base), (base, ZERO)]
    present = {i for table in ("t", "u") for i, _ in image_rows(conn, repo, image, table)}
    assert (600 if survivor == "committer" else 500) in present
    assert (500 if survivor == "committer" else 600) not in present
    assert value(conn, f'select count(*) from "{repo}".t where id = 600') + \
        value(conn, f'select count(*) from "{repo}".u where id = 500') == 1, "the failed transaction left nothing"
    assert sql(conn, "select * from splitgraph.status(%s)", repo) == [], "the checkout is exactly the new HEAD"


def test_a_commit_failing_midway_leaves_no_image_no_object_and_everything_pending(conn):
    repo = "tc/midway"
    sql(conn, "set client_min_messages = warning")
    sql(conn, "select splitgraph.init(%s)", repo)
    # tables are committed in name order: a_first gets its delta stored before b_second fails
    sql(conn, f'create table "{repo}".a_first (id int primary key, v text)')
    sql(conn, f"insert into \"{repo}\".a_first select i, 'v' || i from generate_series(1, 30) i")
    sql(conn, f'create table "{repo}".b_second (id int primary key)')
    sql(conn, f'insert into "{repo}".b_second values (1), (2)')
    base = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, f"update \"{repo}\".a_first set v = 'changed' where id <= 3")
    sql(conn, f'delete from "{repo}".a_first where id = 30')
    sql(conn, f"insert into \"{repo}\".a_first values (31, 'new')")
    sql(conn, f'insert into "{repo}".b_second values (3)')
    sql(conn, f'alter table "{repo}".b_second add column sg_ud_flag boolean')
    status_before = sql(conn, "select * from splitgraph.status(%s) order by table_name", repo)
    assert status_before == [(repo, "a_first", 1, 1, 3, False), (repo, "b_second", 3, 2, 0, True)]
    changes_before = sql(conn, "select pk::text, change_type, row_data::text "
                               "from splitgraph.get_pending_changes(%s, 'a_first') order by 1, 2", repo)
    images_before = sql(conn, "select image_hash from splitgraph.images(%s)", repo)
    objects_before = stored_objects(conn)
    tracked_before = sql(conn, "select table_name, audit_table, state from splitgraph_audit.tracked "
                               "where schema_name = %s order by 1", repo)

    with pytest.raises(psycopg2.Error) as err:
        sql(conn, "select splitgraph.commit(%s, 'doomed')", repo)
    assert err.value.pgcode == "0A000" and "b_second" in str(err.value)

    assert sql(conn, "select image_hash from splitgraph.images(%s)", repo) == images_before, "no image"
    assert value(conn, "select head from splitgraph.repositories() where repository = %s", repo) == base
    assert value(conn, "select image_hash from splitgraph.branches(%s) where branch = 'main'", repo) == base
    assert stored_objects(conn) == objects_before, "no object, registered or stored, not even a_first's delta"
    assert sql(conn, "select * from splitgraph.status(%s) order by table_name", repo) == status_before, \
        "every change is still pending"
    assert sql(conn, "select pk::text, change_type, row_data::text from splitgraph.get_pending_changes(%s, 'a_first') "
                     "order by 1, 2", repo) == changes_before, "a_first's log is intact"
    assert sql(conn, "select table_name, audit_table, state from splitgraph_audit.tracked where schema_name = %s "
                     "order by 1", repo) == tracked_before
    assert value(conn, "select count(*) from pg_class where relpersistence = 't' "
                       "and relname like 'sg\\_delta\\_%%'") == 0

    # once the problem is gone, the same changes commit: a_first as one delta on top of the base
    sql(conn, f'alter table "{repo}".b_second drop column sg_ud_flag')
    image = value(conn, "select splitgraph.commit(%s, 'fixed')", repo)
    objects = value(conn, "select splitgraph.table_info(%s, %s, 'a_first')", repo, image)["objects"]
    assert objects[:-1] == value(conn, "select splitgraph.table_info(%s, %s, 'a_first')", repo, base)["objects"]
    assert len(objects) == 2
    assert sorted(image_rows(conn, repo, image, "a_first"))[:3] == [(1, "changed"), (2, "changed"), (3, "changed")]
    assert value(conn, "select count(*) from splitgraph.status(%s)", repo) == 0


def test_a_commit_failing_inside_a_transaction_keeps_the_changes_of_that_transaction_pending(conn, connect):
    """Changes made in the same transaction before a failed commit survive a rollback to a savepoint."""
    repo = "tc/savepoint"
    make_repo(conn, repo)
    tx = connect(autocommit=False)
    sql(tx, f"update \"{repo}\".t set v = 'in tx' where id = 1")
    sql(tx, "savepoint before_commit")
    sql(tx, f'create table "{repo}".zz (sg_ud_flag int)')
    with pytest.raises(psycopg2.Error) as err:
        sql(tx, "select splitgraph.commit(%s)", repo)
    assert err.value.pgcode == "0A000"
    sql(tx, "rollback to savepoint before_commit")
    assert sql(tx, "select table_name, updated from splitgraph.status(%s)", repo) == [("t", 1)]
    image = value(tx, "select splitgraph.commit(%s)", repo)
    tx.commit()
    assert (1, "in tx") in image_rows(conn, repo, image, "t")
    assert sql(conn, "select * from splitgraph.status(%s)", repo) == []


def test_a_commit_waits_for_an_open_writer_and_includes_its_change(conn, connect):
    repo = "tc/open-writer"
    base = make_repo(conn, repo)
    writer, committer = connect(autocommit=False), connect()
    sql(writer, f"update \"{repo}\".u set v = 'from an open transaction' where id = 3")
    sql(writer, f"insert into \"{repo}\".u values (300, 'inserted in it')")
    waiting = in_background(committer, "select splitgraph.commit(%s)", repo)
    try:
        assert wait_until_blocked(conn, committer.info.backend_pid) == ("Lock", "relation"), \
            "the commit waits for the writer's transaction on the table"
    finally:
        writer.commit()
    image = waiting.result(timeout=30)[0][0]
    u = image_rows(conn, repo, image, "u")
    assert (3, "from an open transaction") in u and (300, "inserted in it") in u, \
        "the commit sees the change committed while it waited"
    assert sql(conn, "select * from splitgraph.status(%s)", repo) == []
    assert value(conn, "select splitgraph.table_info(%s, %s, 'u')", repo, image)["objects"][:-1] == \
        value(conn, "select splitgraph.table_info(%s, %s, 'u')", repo, base)["objects"]


def test_checkout_refuses_a_change_committed_while_it_waited(conn, connect):
    repo = "tc/toctou"
    old = make_repo(conn, repo)
    sql(conn, f"insert into \"{repo}\".t values (50, 'second image')")
    value(conn, "select splitgraph.commit(%s)", repo)
    writer, switcher = connect(autocommit=False), connect()
    sql(writer, f"update \"{repo}\".t set v = 'precious' where id = 1")
    waiting = in_background(switcher, "select splitgraph.checkout(%s, %s)", repo, old)
    try:
        wait_until_blocked(conn, switcher.info.backend_pid)
    finally:
        writer.commit()
    try:
        waiting.result(timeout=30)
        refused = None
    except psycopg2.Error as e:
        refused = e.pgcode
    # whatever happened, the committed change must not be silently gone
    assert value(conn, f'select v from "{repo}".t where id = 1') == "precious"
    assert refused == "55000"
