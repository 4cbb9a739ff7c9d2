"""Issue 13, randomized histories (hypothesis): an image read where it is stored gives exactly what a checkout of it
gives. Tables: t (a primary key), c (a composite key with a text column) and k (no key, duplicate rows); steps:
inserts, updates, deletes, key changes, NULLs, duplicates, schema changes (a column added, dropped or retyped) and
commits of deltas or snapshots in small chunks. At the end every image is checked out, then mounted
(mount_image) and checked out layered: every table, and queries on it (point lookups, key ranges, filters on other
columns, aggregates), must give the same rows as the checkout.

Three ways of reading are tried: the engine's default, always a copy (read_copy_ratio 0), never a copy (layers of
chunks and a squash of the rest). The default run tries a few derandomized examples without shrinking; the bigger
profile is the test marked `long` (`pytest -m long` or SG_LONG=1)."""
import itertools
import os

import psycopg2
import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from support.integrity import connect, one, rows, run

TABLES = ("t", "c", "k")
MODES = {"default": None, "copy": ("0", "-1"), "layers": ("1e12", "1e12")}
_repos = itertools.count(1)

keys = st.integers(min_value=0, max_value=25)
values = st.sampled_from(["a", "b", "c", None])
write = st.tuples(st.sampled_from(["insert", "update", "delete", "rekey", "null", "dup"]), st.sampled_from(TABLES),
                  keys, keys, values)
alter = st.tuples(st.just("alter"), st.sampled_from(TABLES), st.sampled_from(["add", "drop", "retype"]))
commit = st.tuples(st.just("commit"), st.sampled_from([2, 3, 7, 1000]), st.booleans())
step = st.one_of(write, write, write, write, alter, commit, commit)
histories = st.lists(step, min_size=1, max_size=30)

COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
DEFAULT = settings(max_examples=5, derandomize=True, phases=[Phase.explicit, Phase.reuse, Phase.generate], **COMMON)
LONG = settings(max_examples=int(os.environ.get("SG_LONG_EXAMPLES", "100")), **COMMON)


@pytest.fixture
def db(cluster, dbname):
    c = connect(cluster, dbname, timeout="120s")
    yield c
    c.close()


def set_mode(db, mode):
    run(db, "delete from splitgraph_meta.info where key in ('read_copy_ratio', 'read_copy_min_rows')")
    if MODES[mode] is not None:
        run(db, """insert into splitgraph_meta.info (key, value)
                   values ('read_copy_ratio', %s), ('read_copy_min_rows', %s)""", *MODES[mode])


def statement(s, op):
    """The SQL of a write step (it may fail: a duplicate key, a column that is gone)."""
    kind, table, key, other, value = op
    v = "null" if value is None else f"'{value}'"
    if table == "t":
        return {"insert": f"insert into {s}.t (id, v, n) values ({key}, {v}, {other})",
                "update": f"update {s}.t set v = {v}, n = {other} where id = {key}",
                "delete": f"delete from {s}.t where id = {key}",
                "rekey": f"update {s}.t set id = {other} where id = {key}",
                "null": f"update {s}.t set n = null where id = {key}",
                "dup": f"insert into {s}.t (id, v) select max(id) + 1, {v} from {s}.t"}[kind]
    if table == "c":
        return {"insert": f"insert into {s}.c (a, b, v) values ({key % 5}, 'k{other}', {key})",
                "update": f"update {s}.c set v = {other} where a = {key % 5} and b = 'k{key}'",
                "delete": f"delete from {s}.c where a = {key % 5}",
                "rekey": f"update {s}.c set b = 'k{other}' where a = {key % 5} and b = 'k{key}'",
                "null": f"update {s}.c set v = null where a = {key % 5}",
                "dup": f"insert into {s}.c (a, b, v) values ({key % 5}, {v}, {other})"}[kind]
    return {"insert": f"insert into {s}.k (x, y) values ({key}, {v})",
            "update": f"update {s}.k set y = {v} where x = {key}",
            "delete": f"delete from {s}.k where x = {key}",
            "rekey": f"update {s}.k set x = {other} where x = {key}",
            "null": f"update {s}.k set y = null where x = {key}",
            "dup": f"insert into {s}.k select * from {s}.k where x = {key}"}[kind]


ALTERS = {
    "t": {"add": "alter table {s}.t add column w int default 7", "drop": "alter table {s}.t drop column n",
          "retype": "alter table {s}.t alter column n type bigint"},
    "c": {"add": "alter table {s}.c add column w text default 'w'", "drop": "alter table {s}.c drop column v",
          "retype": "alter table {s}.c alter column v type numeric"},
    "k": {"add": "alter table {s}.k add column z int", "drop": "alter table {s}.k drop column y",
          "retype": "alter table {s}.k alter column x type bigint"},
}


def attempt(db, query):
    try:
        run(db, query)
    except psycopg2.Error:
        pass


def queries(db, schema, table):
    """Queries a mounted table must answer as the checkout does: every row, point lookups and ranges of its first
    column, filters on others, an aggregate."""
    columns = [r[0] for r in run(db, """select attname from pg_attribute where attrelid = %s::regclass and attnum > 0
                                        and not attisdropped order by attnum""", f'"{schema}"."{table}"')]
    first = columns[0]
    found = [f"select t::text collate \"C\" from {{r}} t where {first} = {k}" for k in (0, 3, 17, 40)]
    found += [f"select t::text collate \"C\" from {{r}} t where {first} between 2 and 6",
              f"select t::text collate \"C\" from {{r}} t where {first} > 35 or {first} < 1",
              "select count(*), count(distinct t::text) from {r} t"]
    for other in columns[1:]:
        found += [f"select t::text collate \"C\" from {{r}} t where {other} is null",
                  f"select t::text collate \"C\" from {{r}} t where {other}::text = 'b'",
                  f"select count({other}), min({other}::text collate \"C\") from {{r}} t"]
    return found


def same_answers(db, checkout_schema, other_schema, table, what):
    for q in queries(db, checkout_schema, table):
        want = sorted(run(db, q.format(r=f'"{checkout_schema}"."{table}"')))
        got = sorted(run(db, q.format(r=f'"{other_schema}"."{table}"')))
        assert got == want, f"{what}: {q.format(r=table)} differs"


def check_history(db, history, mode):
    repo = f"reads/h{next(_repos)}"
    s = f'"{repo}"'
    set_mode(db, mode)
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f"create table {s}.t (id int primary key, v text, n int)")
    run(db, f"create table {s}.c (a int, b text, v int, primary key (a, b))")
    run(db, f"create table {s}.k (x int, y text)")
    run(db, f"insert into {s}.t select i, 'v' || (i % 4), i % 3 from generate_series(0, 19) i")
    run(db, f"insert into {s}.c select i % 5, 'k' || i, i from generate_series(0, 19) i")
    run(db, f"insert into {s}.k select i % 7, 'y' || (i % 2) from generate_series(0, 12) i")
    images = [one(db, "select splitgraph.commit(%s, chunk_size => 4)", repo)]
    for op in list(history) + [("commit", 3, False)]:
        if op[0] == "commit":
            images.append(one(db, "select splitgraph.commit(%s, chunk_size => %s, snapshot => %s)", repo, op[1],
                              op[2]))
        elif op[0] == "alter":
            attempt(db, ALTERS[op[1]][op[2]].format(s=s))
        else:
            attempt(db, statement(s, op))
    try:
        for number, image in enumerate(images):
            what = f"image {number} of {len(images)} ({image[:8]}, {mode})"
            run(db, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
            mounted = one(db, "select splitgraph.mount_image(%s, %s, %s)", repo, image, f"m{number}_{repo}")
            for table in TABLES:
                want = rows(db, repo, table)
                assert rows(db, mounted, table) == want, f"{what}: mounted table {table} differs"
                same_answers(db, repo, mounted, table, what)
            layered = f"l{number}_{repo}"
            run(db, "select splitgraph.init(%s)", layered)
            run(db, "select splitgraph.import_tables(%s, %s, %s, null, %s)", repo, list(TABLES), layered, image)
            run(db, "select splitgraph.checkout(%s, 'HEAD', layered => true)", layered)
            for table in TABLES:
                assert rows(db, layered, table) == rows(db, repo, table), f"{what}: layered table {table} differs"
        for number in range(len(images)):
            run(db, "select splitgraph.unmount(%s)", f"m{number}_{repo}")
            run(db, "select splitgraph.rm(%s)", f"l{number}_{repo}")
    finally:
        set_mode(db, "default")


@pytest.mark.parametrize("mode", sorted(MODES))
@DEFAULT
@given(history=histories)
@example(history=[("update", "t", 3, 1, "b"), ("delete", "t", 5, 0, None), ("rekey", "t", 6, 33, None),
                  ("commit", 3, False), ("null", "t", 7, 0, None), ("dup", "k", 1, 0, None), ("commit", 2, False)])
@example(history=[("alter", "t", "retype"), ("commit", 2, False), ("delete", "c", 2, 0, None),
                  ("alter", "k", "drop"), ("commit", 1000, True), ("insert", "t", 40, 2, None)])
@example(history=[("update", "t", 3, 1, "a"), ("update", "c", 3, 9, None), ("commit", 1000, False),
                  ("update", "t", 3, 2, "b"), ("delete", "t", 4, 0, None), ("delete", "c", 3, 0, None),
                  ("commit", 1000, False), ("insert", "t", 4, 5, "c"), ("update", "t", 3, 4, None),
                  ("insert", "c", 3, 3, None), ("commit", 2, False)])
def test_an_image_reads_as_its_checkout(db, history, mode):
    check_history(db, history, mode)


@pytest.mark.long
@pytest.mark.parametrize("mode", sorted(MODES))
@LONG
@given(history=histories)
def test_an_image_reads_as_its_checkout_long(long_selected, db, history, mode):
    check_history(db, history, mode)
