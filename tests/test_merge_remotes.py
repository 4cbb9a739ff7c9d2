"""Issue 16 with issue 11: merge images travel between engines with both parents. A push, a clone and a pull carry
a merge image's second parent (splitgraph_remote.images.merged), so on the other engine log shows both branches,
a later merge finds the right base, a branch fast-forwarded to a merge moves forward on pull, and a second parent
that is malformed or missing is refused."""
import secrets

import pytest

from conftest import fails, sql, value
from support import driver
from support.registry import password_role

PUSHER = "mr_pusher"
PASSWORD = "pw" + secrets.token_hex(8)
_engines = iter(range(1, 10**6))


@pytest.fixture(scope="module")
def hub(cluster, dbname, registry_cluster, registry_db):
    password_role(registry_cluster, PUSHER, PASSWORD)
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        sql(c, "select splitgraph.add_remote('hub', '127.0.0.1', %s, %s, %s, %s)", registry_cluster.port,
            registry_db, PUSHER, PASSWORD)
    return registry_cluster


def other_engine(cluster, dbname, registry_cluster, registry_db):
    name = f"{dbname}_e{next(_engines)}"[:63]
    cluster.create_database(name)
    c = driver.connect(cluster.dsn(name), autocommit=True)
    sql(c, "select splitgraph.add_remote('hub', '127.0.0.1', %s, %s, %s, %s)", registry_cluster.port, registry_db,
        PUSHER, PASSWORD)
    return c


def parents(conn, repo, image):
    return value(conn, "select splitgraph.show(%s, %s) -> 'parents'", repo, image)


def merged_history(conn, repo):
    """main and dev change different rows, main merges dev (a merge image), dev fast-forwards to it."""
    s = f'"{repo}"'
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f"create table {s}.t (id int primary key, v text)")
    sql(conn, f"insert into {s}.t select i, 'base' from generate_series(1, 10) i")
    sql(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.branch(%s, 'dev')", repo)
    sql(conn, f"update {s}.t set v = 'main' where id = 1")
    ours = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.checkout(%s, 'dev')", repo)
    sql(conn, f"update {s}.t set v = 'dev' where id = 2")
    theirs = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.checkout(%s, 'main')", repo)
    merged = value(conn, "select splitgraph.merge(%s, 'dev')", repo)
    return ours, theirs, merged


def test_push_clone_and_pull_carry_both_parents(cluster, dbname, hub, registry_db, conn):
    repo = f"{PUSHER}/merged"
    ours, theirs, merged = merged_history(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    with driver.connect(hub.dsn(registry_db), autocommit=True) as reg:
        assert parents(reg, repo, merged) == [ours, theirs], "the registry has the merge's second parent"
        assert value(reg, "select count(*) from splitgraph.log(%s, %s)", repo, merged) == 5
    other = other_engine(cluster, dbname, hub, registry_db)
    try:
        sql(other, "select splitgraph.clone('hub', %s)", repo)
        assert parents(other, repo, merged) == [ours, theirs]
        log = [r[0] for r in sql(other, "select image_hash from splitgraph.log(%s, %s)", repo, merged)]
        assert theirs in log and ours in log

        # dev fast-forwards to the merge on the first engine: on pull, dev moves forward (its head is the merge's
        # second parent); then a second round merges from the right base on the clone
        sql(conn, "select splitgraph.checkout(%s, 'dev')", repo)
        assert value(conn, "select splitgraph.merge(%s, 'main')", repo) == merged
        sql(conn, "select splitgraph.push(%s)", repo)
        sql(other, "select splitgraph.pull(%s)", repo)
        assert value(other, "select image_hash from splitgraph.branches(%s) where branch = 'dev'", repo) == merged

        s = f'"{repo}"'
        sql(other, "select splitgraph.checkout(%s, 'dev')", repo)
        sql(other, f"update {s}.t set v = 'dev again' where id = 2")
        sql(other, "select splitgraph.commit(%s)", repo)
        sql(other, "select splitgraph.checkout(%s, 'main')", repo)
        sql(other, f"update {s}.t set v = 'main again' where id = 3")
        sql(other, "select splitgraph.commit(%s)", repo)
        assert sql(other, "select * from splitgraph.conflicts(%s, 'dev')", repo) == []
        again = value(other, "select splitgraph.merge(%s, 'dev')", repo)
        assert dict(sql(other, f"select id, v from {s}.t where id <= 3")) == {1: "main", 2: "dev again",
                                                                              3: "main again"}
        # the second merge image goes back to the registry with both parents too
        sql(other, "select splitgraph.push(%s)", repo)
        with driver.connect(hub.dsn(registry_db), autocommit=True) as reg:
            assert parents(reg, repo, again) == parents(other, repo, again)
            assert len(parents(reg, repo, again)) == 2
    finally:
        other.close()


def test_a_malformed_or_missing_second_parent_is_refused(cluster, dbname, hub, registry_db, conn):
    """A pushed merge image whose second parent is not a hash, is itself, or is not in the repository there is
    refused, and nothing is registered."""
    repo = f"{PUSHER}/forged"
    ours, theirs, merged = merged_history(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    with driver.connect(hub.dsn(registry_db, user=PUSHER) + f" password={PASSWORD}", autocommit=True) as reg:
        base = {"image_hash": "a" * 64, "parent_id": ours, "created": "2026-01-01T00:00:00+00:00", "comment": "x",
                "provenance": None}
        for forged, sqlstate in ((merged[:10], "XX001"), ("a" * 64, "XX001"), ("b" * 64, "55000")):
            error = fails(reg, "insert into splitgraph_remote.requests (repository, kind, payload) "
                               "values (%s, 'image', %s)", repo, driver.Jsonb(base | {"merged": forged}))
            assert error.pgcode == sqlstate, error
            assert value(reg, "select count(*) from splitgraph.images(%s) where image_hash = %s", repo, "a" * 64) == 0
