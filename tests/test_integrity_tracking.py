"""Issue 9, writes are never lost: whatever bypasses or confuses the tracking triggers (a dropped, replaced or
disabled trigger, session_replication_role = replica, a write straight into a partition, a table dropped and made
again with a trigger named like ours, a table restored from an older pg_dump, inheritance children), status()
shows the table as changed and the next commit gives back exactly what the table held. reset never lets a
concurrent writer's row stay in the table without being tracked, and commit / reset / discard_pending_changes
refuse (0A000) a REPEATABLE READ or SERIALIZABLE transaction, whose snapshot would miss writes it consumes."""
import os
import pathlib
import subprocess

import psycopg2
import pytest

from conftest import fails
from support.integrity import (
    changed,
    checkout_rows,
    commit_is_exact,
    connect,
    in_background,
    one,
    rows,
    run,
    wait_blocked_or_done,
)

PG_BIN = pathlib.Path(os.environ.get("PG_BIN", "/usr/lib/postgresql/15/bin"))


@pytest.fixture
def db(cluster, dbname):
    c = connect(cluster, dbname)
    yield c
    c.close()


@pytest.fixture
def session(cluster, dbname):
    opened = []

    def _open(autocommit=True):
        opened.append(connect(cluster, dbname, autocommit=autocommit))
        return opened[-1]

    yield _open
    for c in opened:
        c.close()


def make_repo(db, repo, rows_=5):
    """A repository with t (id int primary key, v text) of `rows_` rows, committed and clean."""
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f'create table "{repo}".t (id int primary key, v text)')
    run(db, f"insert into \"{repo}\".t select i, %s || i from generate_series(1, {rows_}) i", repo + ":")
    image = one(db, "select splitgraph.commit(%s)", repo)
    assert changed(db, repo) == []
    return image


def noop_trigger_function(db):
    run(db, """create or replace function public.sg_test_noop() returns trigger language plpgsql
               as $$ begin return null; end $$""")


WRITES = {
    "insert": "insert into {t} values (100, 'inserted')",
    "update": "update {t} set v = 'updated' where id = 2",
    "delete": "delete from {t} where id = 3",
    "truncate": "truncate {t}",
}


def assert_write_kept(db, repo, table="t"):
    assert table in changed(db, repo), "status() must show the table as changed"
    image, recorded, given_back = commit_is_exact(db, repo, [table])
    assert given_back == recorded, f"image {image[:8]} lost a write"


# ---------------------------------------------------------------------------------------------------------------
# Triggers dropped, replaced, disabled
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("kind", ["insert", "update", "delete", "truncate"])
def test_a_dropped_tracking_trigger_loses_no_write(db, kind):
    repo = f"trk/dropped-{kind}"
    make_repo(db, repo)
    run(db, f'drop trigger sg_track_{kind} on "{repo}".t')
    run(db, WRITES[kind].format(t=f'"{repo}".t'))
    assert_write_kept(db, repo)


@pytest.mark.parametrize("kind", ["insert", "update", "delete"])
def test_a_replaced_tracking_trigger_loses_no_write(db, kind):
    repo = f"trk/replaced-{kind}"
    make_repo(db, repo)
    noop_trigger_function(db)
    run(db, f'create or replace trigger sg_track_{kind} after {kind} on "{repo}".t for each statement '
            "execute function public.sg_test_noop()")
    run(db, WRITES[kind].format(t=f'"{repo}".t'))
    assert_write_kept(db, repo)


def test_a_disabled_tracking_trigger_loses_no_write(db):
    repo = "trk/disabled"
    make_repo(db, repo)
    run(db, f'alter table "{repo}".t disable trigger sg_track_update')
    run(db, WRITES["update"].format(t=f'"{repo}".t'))
    assert_write_kept(db, repo)


def test_a_tracking_trigger_disabled_under_replica_role_loses_no_write(db):
    """DDL under session_replication_role = replica fires no event trigger either."""
    repo = "trk/disabled-replica"
    make_repo(db, repo)
    run(db, "set session_replication_role = replica")
    run(db, f'alter table "{repo}".t disable trigger sg_track_insert')
    run(db, "reset session_replication_role")
    run(db, WRITES["insert"].format(t=f'"{repo}".t'))
    assert_write_kept(db, repo)


@pytest.mark.parametrize("kind", ["insert", "update", "delete", "truncate"])
def test_writes_under_session_replication_role_replica_are_kept(db, kind):
    repo = f"trk/replica-{kind}"
    make_repo(db, repo)
    run(db, "set session_replication_role = replica")
    try:
        run(db, WRITES[kind].format(t=f'"{repo}".t'))
    finally:
        run(db, "reset session_replication_role")
    assert_write_kept(db, repo)


# ---------------------------------------------------------------------------------------------------------------
# Partitions and inheritance
# ---------------------------------------------------------------------------------------------------------------

def make_partitioned(db, repo):
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f'create table "{repo}".p (id int primary key, v text) partition by range (id)')
    run(db, f'create table "{repo}".p_low partition of "{repo}".p for values from (0) to (100)')
    run(db, f'create table "{repo}".p_high partition of "{repo}".p for values from (100) to (200)')
    run(db, f"insert into \"{repo}\".p values (1, 'one'), (2, 'two'), (150, 'one fifty')")
    one(db, "select splitgraph.commit(%s)", repo)
    assert changed(db, repo) == []


@pytest.mark.parametrize("write", [
    "insert into {s}.p_low values (3, 'straight into a partition')",
    "update {s}.p_high set v = 'updated in the partition' where id = 150",
    "delete from {s}.p_low where id = 2",
    "truncate {s}.p_high",
], ids=["insert", "update", "delete", "truncate"])
def test_writes_straight_into_a_partition_are_kept(db, write):
    repo = "trk/part-" + write.split()[0]
    make_partitioned(db, repo)
    run(db, write.format(s=f'"{repo}"'))
    assert_write_kept(db, repo, "p")


def test_updating_an_inheritance_parent_records_each_table_as_it_is(db):
    repo = "trk/inherit"
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f'create table "{repo}".parent (id int primary key, v text)')
    run(db, f'create table "{repo}".child (extra text) inherits ("{repo}".parent)')
    run(db, f"insert into \"{repo}\".parent values (1, 'p1'), (2, 'p2'), (3, 'p3')")
    run(db, f"insert into \"{repo}\".child values (10, 'c10', 'x'), (11, 'c11', 'y')")
    first = one(db, "select splitgraph.commit(%s)", repo)
    assert one(db, "select splitgraph.table_info(%s, %s, 'parent')", repo, first)["rows"] == 3, \
        "the parent's image holds the parent's own rows, not its children's"
    run(db, f"update \"{repo}\".parent set v = v || '!'")   # updates the children's rows too
    recorded = {t: rows(db, repo, t, only=True) for t in ("parent", "child")}
    image = one(db, "select splitgraph.commit(%s)", repo)
    info = {t: one(db, "select splitgraph.table_info(%s, %s, %s)", repo, image, t)["rows"] for t in recorded}
    given_back = checkout_rows(db, repo, image, recorded)
    assert given_back == recorded
    assert {t: len(r) for t, r in given_back.items()} == info, "table_info's row counts match the checkout"


# ---------------------------------------------------------------------------------------------------------------
# Logs tied to the table, not to a trigger's name
# ---------------------------------------------------------------------------------------------------------------

def test_a_table_made_again_with_a_trigger_named_like_ours_gets_no_old_log(db):
    repo = "trk/remade"
    make_repo(db, repo, rows_=1000)
    run(db, f"update \"{repo}\".t set v = 'old change' where id = 5")
    run(db, f'drop table "{repo}".t')
    run(db, f'create table "{repo}".t (id int primary key, v text)')
    run(db, f"insert into \"{repo}\".t select i, 'new ' || i from generate_series(1, 10) i")
    noop_trigger_function(db)
    run(db, f'create trigger sg_track_insert after insert on "{repo}".t for each statement '
            "execute function public.sg_test_noop()")
    assert "t" in changed(db, repo)
    status = run(db, "select added, removed, updated from splitgraph.status(%s) where table_name = 't'", repo)
    assert status != [(0, 0, 1)], "status shows the old table's update, not the new table"
    image, recorded, given_back = commit_is_exact(db, repo, ["t"])
    assert len(recorded["t"]) == 10
    assert given_back == recorded
    assert one(db, "select splitgraph.table_info(%s, %s, 't')", repo, image)["rows"] == 10


def test_a_table_restored_from_an_older_pg_dump_is_committed(db, cluster, dbname, tmp_path):
    repo = "trk/restored"
    make_repo(db, repo, rows_=3)
    dump = tmp_path / "t.sql"
    subprocess.run([str(PG_BIN / "pg_dump"), "-d", cluster.dsn(dbname), "-t", f'"{repo}".t', "-f", str(dump)],
                   check=True, timeout=60)
    run(db, f"insert into \"{repo}\".t values (4, 'after the dump')")
    run(db, f"update \"{repo}\".t set v = 'changed after the dump' where id = 1")
    one(db, "select splitgraph.commit(%s)", repo)
    run(db, f'drop table "{repo}".t')
    subprocess.run([str(PG_BIN / "psql"), "-X", "-q", "-v", "ON_ERROR_STOP=1", "-d", cluster.dsn(dbname),
                    "-f", str(dump)], check=True, timeout=60, capture_output=True)
    assert len(rows(db, repo, "t")) == 3, "the older version is back in the table"
    assert changed(db, repo) == ["t"], "it differs from HEAD"
    image, recorded, given_back = commit_is_exact(db, repo, ["t"])
    assert given_back == recorded


# ---------------------------------------------------------------------------------------------------------------
# reset racing a writer
# ---------------------------------------------------------------------------------------------------------------

def test_reset_racing_a_writer_leaves_no_untracked_row(db, session):
    repo = "trk/reset-race"
    make_repo(db, repo)
    run(db, f"update \"{repo}\".t set v = 'pending' where id = 1")
    writer, resetter = session(autocommit=False), session()
    run(writer, f"insert into \"{repo}\".t values (999, 'written while reset ran')")
    future = in_background(resetter, "select splitgraph.reset(%s)", repo)
    try:
        wait_blocked_or_done(db, resetter.info.backend_pid, future)
    finally:
        writer.commit()
    future.result(timeout=30)
    table = rows(db, repo, "t")
    assert any(r.startswith("(1,") and "pending" not in r for r in table), "reset undid the pending update"
    if any(r.startswith("(999,") for r in table):
        assert changed(db, repo) == ["t"], "the writer's row is still in the table: it must still be tracked"
    image, recorded, given_back = commit_is_exact(db, repo, ["t"])
    assert given_back == recorded, "a row in the table is missing from the image"


# ---------------------------------------------------------------------------------------------------------------
# Transactions that are not READ COMMITTED
# ---------------------------------------------------------------------------------------------------------------

LEVELS = ["repeatable read", "serializable"]


@pytest.mark.parametrize("level", LEVELS)
@pytest.mark.parametrize("call", ["commit", "reset", "discard_pending_changes"])
def test_calls_that_consume_the_log_refuse_a_snapshot_transaction(db, session, level, call):
    repo = f"trk/iso-{call}-{level.split()[0]}"
    make_repo(db, repo)
    run(db, f"update \"{repo}\".t set v = 'pending' where id = 1")
    if call == "discard_pending_changes":
        schema = f"trk_plain_{level.split()[0]}"
        run(db, f"create schema if not exists {schema}")
        run(db, f"create table if not exists {schema}.t (id int primary key, v text)")
        run(db, "select splitgraph.track_tables(%s, array['t'])", schema)
        run(db, f"insert into {schema}.t values (1, 'pending')")
        query, args = "select splitgraph.discard_pending_changes(%s)", (schema,)
    else:
        query, args = f"select splitgraph.{call}(%s)", (repo,)
    tx = session(autocommit=False)
    run(tx, f"set transaction isolation level {level}")
    err = fails(tx, query, *args, sqlstate="0A000")
    assert "read committed" in str(err).lower()
    tx.rollback()
    if call == "discard_pending_changes":
        assert one(db, "select splitgraph.has_pending_changes(%s)", schema) is True
    else:
        assert changed(db, repo) == ["t"], "nothing was consumed"


@pytest.mark.parametrize("level", LEVELS)
def test_a_commit_in_a_snapshot_transaction_loses_no_concurrent_write(db, session, level):
    """The write of another session, committed after the transaction's snapshot, is never consumed unstored."""
    repo = f"trk/iso-loss-{level.split()[0]}"
    make_repo(db, repo)
    tx, writer = session(autocommit=False), session()
    run(tx, f"set transaction isolation level {level}")
    one(tx, "select count(*) from splitgraph.images(%s)", repo)          # the snapshot is taken here
    run(writer, f"insert into \"{repo}\".t values (500, 'committed after the snapshot')")
    run(writer, f"update \"{repo}\".t set v = 'updated after the snapshot' where id = 2")
    try:
        image = one(tx, "select splitgraph.commit(%s)", repo)
        tx.commit()
    except psycopg2.Error:
        tx.rollback()
        image = None
    if image is not None:
        stored = checkout_rows(db, repo, image, ["t"])["t"]
        pending = changed(db, repo)
        assert "(500,\"committed after the snapshot\")" in stored or pending == ["t"], \
            "the concurrent write is neither in the image nor pending"
    final, recorded, given_back = commit_is_exact(db, repo, ["t"])
    assert "(500,\"committed after the snapshot\")" in recorded["t"]
    assert given_back == recorded, "a later commit from READ COMMITTED does not bring the lost write back"
