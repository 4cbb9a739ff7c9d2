"""Issue 9, a load test of tracking: four writers insert, update, delete and change keys while a committer commits
every 0.5 s. Inside each committing transaction, right after splitgraph.commit() returns (the table lock is still
held), the md5 of the table's rows in key order is recorded; afterwards every image, checked out, must give the
same md5, and a final commit after the writers stop must equal the table. Under READ COMMITTED this holds; a
commit inside REPEATABLE READ must be refused (0A000), as its snapshot misses writes it would consume.

Bounded: the writers run for a fixed time, every connection has a statement_timeout and threads are joined with
a timeout."""
import random
import threading
import time

import psycopg2
import pytest

from support.integrity import connect, one, run

WRITERS = 4
LOAD_SECONDS = 12
RR_SECONDS = 4
EXPECTED = {"40P01", "40001", "55P03"}      # deadlocks and the like are a writer's business: it just goes on


def table_md5(conn, repo):
    return one(conn, f'select md5(coalesce(string_agg(t::text, \',\' order by t.id), \'\')) from "{repo}".t t')


class Load:
    """Writers on their own connections, until stop()."""

    def __init__(self, cluster, dbname, repo):
        self.cluster, self.dbname, self.repo = cluster, dbname, repo
        self.done = threading.Event()
        self.unexpected, self.writes = [], [0] * WRITERS
        self.threads = [threading.Thread(target=self._write, args=(n,), daemon=True) for n in range(WRITERS)]

    def __enter__(self):
        for t in self.threads:
            t.start()
        return self

    def __exit__(self, *exc):
        self.done.set()
        for t in self.threads:
            t.join(timeout=30)
        assert not any(t.is_alive() for t in self.threads), "a writer did not stop"

    def _write(self, n):
        rng = random.Random(n)
        next_id = (n + 1) * 1_000_000
        t = f'"{self.repo}".t'
        pick = f"(select id from {t} order by random() limit 1)"
        with connect(self.cluster, self.dbname, timeout="10s") as c:
            while not self.done.is_set():
                op = rng.random()
                next_id += 1
                try:
                    if op < 0.3:
                        run(c, f"insert into {t} values (%s, %s, md5(random()::text))", next_id, n)
                    elif op < 0.6:
                        run(c, f"update {t} set k = k + 1, v = md5(random()::text) where id = {pick}")
                    elif op < 0.75:
                        run(c, f"delete from {t} where id = {pick}")
                    elif op < 0.9:
                        run(c, f"update {t} set id = %s where id = {pick}", next_id)
                    else:
                        with c.transaction():
                            run(c, f"insert into {t} values (%s, %s, 'in a transaction')", next_id, n)
                            run(c, f"update {t} set v = 'moved in a transaction' where id = {pick}")
                    self.writes[n] += 1
                except psycopg2.Error as err:
                    if err.pgcode not in EXPECTED:
                        self.unexpected.append(f"writer {n}: {err.pgcode} {err}")
                time.sleep(rng.random() * 0.01)


@pytest.fixture
def db(cluster, dbname):
    c = connect(cluster, dbname)
    yield c
    c.close()


def make_repo(db, repo):
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f'create table "{repo}".t (id bigint primary key, k int, v text)')
    run(db, f'insert into "{repo}".t select i, 0, md5(i::text) from generate_series(1, 300) i')
    one(db, "select splitgraph.commit(%s)", repo)


def mismatches(db, repo, recorded):
    bad = []
    for image, digest in recorded:
        run(db, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
        if table_md5(db, repo) != digest:
            bad.append(image[:8])
    return bad


def test_commits_under_load_in_read_committed_store_what_they_saw(cluster, dbname, db):
    repo = "load/read-committed"
    make_repo(db, repo)
    recorded, failed = [], []
    committer = connect(cluster, dbname, autocommit=False)
    try:
        with Load(cluster, dbname, repo) as load:
            deadline = time.monotonic() + LOAD_SECONDS
            while time.monotonic() < deadline:
                try:
                    image = one(committer, "select splitgraph.commit(%s)", repo)
                    digest = table_md5(committer, repo)          # the table lock of the commit is still held
                    committer.commit()
                    recorded.append((image, digest))
                except psycopg2.Error as err:
                    committer.rollback()
                    failed.append(f"{err.pgcode} {err}")
                time.sleep(0.5)
    finally:
        committer.close()
    assert load.unexpected == [], load.unexpected[:5]
    assert sum(load.writes) > 100, f"the writers barely wrote: {load.writes}"
    assert failed == [], failed[:5]
    assert len(recorded) >= 10
    final = one(db, "select splitgraph.commit(%s)", repo)
    recorded.append((final, table_md5(db, repo)))
    assert run(db, "select * from splitgraph.status(%s)", repo) == []
    bad = mismatches(db, repo, recorded)
    assert bad == [], f"{len(bad)} of {len(recorded)} images differ from what their commit saw: {bad}"


def test_commit_in_repeatable_read_is_refused_under_load(cluster, dbname, db):
    repo = "load/repeatable-read"
    make_repo(db, repo)
    accepted, refused, other = [], 0, []
    committer = connect(cluster, dbname, autocommit=False)
    try:
        with Load(cluster, dbname, repo):
            deadline = time.monotonic() + RR_SECONDS
            while time.monotonic() < deadline:
                run(committer, "set transaction isolation level repeatable read")
                try:
                    image = one(committer, "select splitgraph.commit(%s)", repo)
                    digest = table_md5(committer, repo)          # the table as this transaction sees it
                    committer.commit()
                    accepted.append((image, digest))
                except psycopg2.Error as err:
                    committer.rollback()
                    if err.pgcode == "0A000":
                        refused += 1
                    else:
                        other.append(f"{err.pgcode} {err}")
                time.sleep(0.5)
    finally:
        committer.close()
    final = one(db, "select splitgraph.commit(%s)", repo)
    final_md5 = table_md5(db, repo)
    lost = mismatches(db, repo, accepted)
    assert other == [], other[:5]
    assert accepted == [], (f"{len(accepted)} commits in REPEATABLE READ were accepted (refused: {refused}); "
                            f"{len(lost)} of them differ from the table the transaction saw")
    assert refused > 0
    assert mismatches(db, repo, [(final, final_md5)]) == [], "the final READ COMMITTED commit equals the table"
