"""Issue 9, randomized histories (hypothesis): tracked writes, writes straight into partitions, writes under
session_replication_role = replica, tampering with the tracking triggers (drop, disable, replace), reset and
commit, interleaved on a checkout with a plain table t and a partitioned table p. After each commit the tables'
contents are recorded; after each reset they must equal HEAD's; at the end, checkout(image) must give back what
was recorded for every image.

The default run tries a few derandomized examples (and the explicit ones below) without shrinking, in seconds.
The bigger profile (many random examples, with shrinking) is the test marked `long`: it runs only when the
marker is selected (`pytest -m long`) or SG_LONG=1 is set, and is skipped otherwise."""
import itertools
import os

import psycopg2
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from support.integrity import checkout_rows, connect, one, rows, run

TABLES = ("t", "p")
PARTITIONS = {"p_low": range(0, 50), "p_high": range(50, 100)}
KINDS = ("insert", "update", "delete", "rekey")
_repos = itertools.count(1)

ids = st.integers(min_value=0, max_value=99)
values = st.sampled_from(["a", "b", "c", "d"])
write = st.tuples(st.just("write"), st.sampled_from(TABLES), st.sampled_from(KINDS), ids, ids, values)
partition_write = st.tuples(st.just("partition"), st.sampled_from(sorted(PARTITIONS)), st.sampled_from(KINDS), ids,
                            ids, values)
replica_write = st.tuples(st.just("replica"), st.sampled_from(TABLES), st.sampled_from(KINDS), ids, ids, values)
tamper = st.tuples(st.just("tamper"), st.sampled_from(TABLES), st.sampled_from(["drop", "disable", "replace"]),
                   st.sampled_from(["insert", "update", "delete", "truncate"]))
step = st.one_of(write, write, partition_write, partition_write, replica_write, tamper, st.just(("reset",)),
                 st.just(("commit",)), st.just(("commit",)))
histories = st.lists(step, min_size=1, max_size=25)

COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
DEFAULT = settings(max_examples=8, derandomize=True, phases=[Phase.explicit, Phase.reuse, Phase.generate], **COMMON)
LONG = settings(max_examples=int(os.environ.get("SG_LONG_EXAMPLES", "150")), **COMMON)


@pytest.fixture
def db(cluster, dbname):
    c = connect(cluster, dbname)
    run(c, """create or replace function public.sg_history_noop() returns trigger language plpgsql
              as $$ begin return null; end $$""")
    yield c
    c.close()


def statement(relation, kind, key, other, value):
    if kind == "insert":
        return f"insert into {relation} values ({key}, '{value}')"
    if kind == "update":
        return f"update {relation} set v = '{value}' where id = {key}"
    if kind == "delete":
        return f"delete from {relation} where id = {key}"
    return f"update {relation} set id = {other} where id = {key}"


def attempt(db, *statements):
    """Run statements that may rightly fail (a duplicate key, a row outside its partition, a refused tampering)."""
    try:
        for s in statements:
            run(db, s)
    except psycopg2.Error:
        pass
    finally:
        if statements and "session_replication_role" in statements[0]:
            run(db, "reset session_replication_role")


def apply(db, repo, op):
    s = f'"{repo}"'
    if op[0] == "write":
        _, table, kind, key, other, value = op
        attempt(db, statement(f"{s}.{table}", kind, key, other, value))
    elif op[0] == "partition":
        _, part, kind, key, other, value = op
        span = PARTITIONS[part]
        key, other = span.start + key % len(span), span.start + other % len(span)
        attempt(db, statement(f"{s}.{part}", kind, key, other, value))
    elif op[0] == "replica":
        _, table, kind, key, other, value = op
        attempt(db, "set session_replication_role = replica", statement(f"{s}.{table}", kind, key, other, value))
    elif op[0] == "tamper":
        _, table, how, event = op
        trigger = f"sg_track_{event}"
        if how == "drop":
            attempt(db, f"drop trigger if exists {trigger} on {s}.{table}")
        elif how == "disable":
            if one(db, "select count(*) from pg_trigger where tgrelid = %s::regclass and tgname = %s",
                   f"{s}.{table}", trigger):
                attempt(db, f"alter table {s}.{table} disable trigger {trigger}")
        else:
            timing = "before" if event == "truncate" else "after"
            attempt(db, f"create or replace trigger {trigger} {timing} {event} on {s}.{table} for each statement "
                        "execute function public.sg_history_noop()")


def check_history(db, history):
    repo = f"hist/h{next(_repos)}"
    s = f'"{repo}"'
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f"create table {s}.t (id int primary key, v text)")
    run(db, f"create table {s}.p (id int primary key, v text) partition by range (id)")
    for part, span in PARTITIONS.items():
        run(db, f"create table {s}.{part} partition of {s}.p for values from ({span.start}) to ({span.stop})")
    run(db, f"insert into {s}.t select i, 'start' from generate_series(0, 9) i")
    run(db, f"insert into {s}.p select i, 'start' from generate_series(0, 9) i union all "
            "select i, 'start' from generate_series(50, 59) i")
    recorded = []

    def commit():
        contents = {t: rows(db, repo, t) for t in TABLES}
        recorded.append((one(db, "select splitgraph.commit(%s)", repo), contents))

    commit()
    for n, op in enumerate(list(history) + [("commit",)]):
        if op == ("commit",):
            commit()
        elif op == ("reset",):
            run(db, "select splitgraph.reset(%s)", repo)
            assert {t: rows(db, repo, t) for t in TABLES} == recorded[-1][1], \
                f"after step {n} (reset) the checkout is not HEAD again"
        else:
            apply(db, repo, op)
    for number, (image, contents) in enumerate(recorded):
        assert checkout_rows(db, repo, image, TABLES) == contents, \
            f"image {number} of {len(recorded)} ({image[:8]}) differs from the tables it was committed from"


@DEFAULT
@given(history=histories)
@example(history=[("partition", "p_low", "insert", 5, 0, "x"), ("commit",)])
@example(history=[("tamper", "t", "drop", "insert"), ("write", "t", "insert", 42, 0, "y")])
@example(history=[("replica", "t", "update", 3, 0, "z")])
@example(history=[("partition", "p_high", "update", 5, 0, "w"), ("reset",)])
def test_random_histories(db, history):
    check_history(db, history)


@pytest.mark.long
@LONG
@given(history=histories)
def test_random_histories_long(long_selected, db, history):
    check_history(db, history)
