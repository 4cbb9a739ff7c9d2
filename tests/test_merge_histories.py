"""Issue 16, randomized merges (hypothesis): random edits and commits (some as snapshots) on two branches, main and
dev, of a repository with a keyed table t (to which a branch may add a column) and a keyless table k, then dev
merged into main with a random strategy, in one or more rounds. The merged tables must equal a naive reference
merge computed here in Python over the full contents of the base and the two heads (the base of a later round
being dev's head that the last round merged). Without a strategy, a merge the reference says conflicts must fail,
change nothing, and conflicts() must list exactly the reference's conflicting keys. After every merge nothing is
pending, every change log is trusted, the merge image and the next commit check out to the merged rows, and the
merge image records both parents.

The default run tries a few derandomized examples (and the explicit ones below) without shrinking, in seconds.
The bigger profile (many random examples, with shrinking) is the test marked `long`: it runs only when the marker
is selected (`pytest -m long`) or SG_LONG=1 is set, and is skipped otherwise."""
import collections
import itertools
import os

import pytest
from hypothesis import HealthCheck, Phase, example, given, settings
from hypothesis import strategies as st

from support import driver
from support.integrity import connect, one, run

_repos = itertools.count(1)
A_VALUES, B_VALUES = ("p", "q", "r"), (1, 2, 3)
KEYS = st.integers(min_value=0, max_value=11)
K_ROWS = st.tuples(st.integers(min_value=0, max_value=2), st.sampled_from(["u", "v"]))

edit = st.one_of(
    st.tuples(st.just("insert"), KEYS, st.sampled_from(A_VALUES), st.sampled_from(B_VALUES)),
    st.tuples(st.just("set_a"), KEYS, st.sampled_from(A_VALUES)),
    st.tuples(st.just("set_b"), KEYS, st.sampled_from(B_VALUES)),
    st.tuples(st.just("delete"), KEYS),
    st.tuples(st.just("k_insert"), K_ROWS),
    st.tuples(st.just("k_delete_all"), K_ROWS),
    st.tuples(st.just("k_delete_one"), K_ROWS),
    st.tuples(st.just("set_c"), KEYS, st.sampled_from(A_VALUES)),
)
schema_edit = st.tuples(st.just("add_c"))
edits_of_a_commit = st.lists(st.one_of(edit, edit, edit, edit, edit, edit, schema_edit), min_size=0, max_size=5)
commit_group = st.tuples(edits_of_a_commit, st.booleans())  # (edits, as a snapshot)
branch_work = st.lists(commit_group, min_size=0, max_size=2)
round_ = st.tuples(branch_work, branch_work, st.sampled_from([None, None, "ours", "theirs"]))
histories = st.lists(round_, min_size=1, max_size=2)

COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                    HealthCheck.too_slow])
DEFAULT = settings(max_examples=6, derandomize=True, phases=[Phase.explicit, Phase.reuse, Phase.generate], **COMMON)
LONG = settings(max_examples=int(os.environ.get("SG_LONG_EXAMPLES", "150")), **COMMON)


@pytest.fixture
def db(cluster, dbname):
    c = connect(cluster, dbname)
    yield c
    c.close()


# ---------------------------------------------------------------------------------------------------------------
# The reference: full contents, merged in Python
# ---------------------------------------------------------------------------------------------------------------

def contents(db, repo):
    """(t as (its columns but id, {id: (values...)}), k as a Counter of (x, y))."""
    s = f'"{repo}"'
    columns = tuple(r[0] for r in run(db, """select attname::text from pg_attribute
                                             where attrelid = %s::regclass and attnum > 0 and not attisdropped
                                               and attname <> 'id' order by attnum""", f"{s}.t"))
    t = {r[0]: tuple(r[1:]) for r in run(db, f"select id, {', '.join(columns)} from {s}.t")}
    k = collections.Counter((r[0], r[1]) for r in run(db, f"select x, y from {s}.k"))
    return (columns, t), k


def merge_keyed(base, ours, theirs, strategy):
    """(merged table, conflicting keys): rows by key, cell by cell. When one side added a column (both sides
    may have), rows are seen in the merged columns by name (null where a side lacks the column), and whether a
    side changed a row is judged on the base's columns only. A table one side left as it was takes the other's."""
    if ours == base or ours == theirs:
        return theirs if ours == base else ours, set()
    if theirs == base:
        return ours, set()
    (b_cols, b_rows), (o_cols, o_rows), (t_cols, t_rows) = base, ours, theirs
    columns = max(o_cols, t_cols, key=len)
    assert set(o_cols) <= set(columns) and set(t_cols) <= set(columns)

    def view(cols, row):
        return None if row is None else tuple(row[cols.index(c)] if c in cols else None for c in columns)

    known = [i for i, c in enumerate(columns) if c in b_cols]

    def changed(x, b):
        return (x is None) != (b is None) or (x is not None and [x[i] for i in known] != [b[i] for i in known])

    merged, conflicts = {}, set()
    for key in set(b_rows) | set(o_rows) | set(t_rows):
        b, o, t = view(b_cols, b_rows.get(key)), view(o_cols, o_rows.get(key)), view(t_cols, t_rows.get(key))
        if o == t:
            m = o
        elif o is not None and t is not None and b is not None:
            cells = []
            for ob, oo, ot in zip(b, o, t, strict=True):
                if oo == ob:
                    cells.append(ot)
                elif ot == ob or oo == ot:
                    cells.append(oo)
                else:
                    conflicts.add(key)
                    cells.append(oo if strategy == "ours" else ot)
            m = tuple(cells)
        elif not changed(o, b):
            m = t
        elif not changed(t, b):
            m = o
        else:
            conflicts.add(key)
            m = o if strategy == "ours" else t
        if m is not None:
            merged[key] = m
    return (columns, merged), conflicts


def merge_keyless(base, ours, theirs):
    """Multisets: changes of the same sign overlap (the larger counts), of opposite signs add up."""
    merged = collections.Counter()
    for row in set(base) | set(ours) | set(theirs):
        nb, no, nt = base[row], ours[row], theirs[row]
        do, dt = no - nb, nt - nb
        if (do > 0) == (dt > 0) and (do < 0) == (dt < 0):
            n = nb + (do if abs(do) >= abs(dt) else dt)
        else:
            n = nb + do + dt
        if n:
            merged[row] = n
    return merged


# ---------------------------------------------------------------------------------------------------------------
# Driving the engine
# ---------------------------------------------------------------------------------------------------------------

def apply(db, s, op):
    kind = op[0]
    if kind == "insert":
        run(db, f"insert into {s}.t values (%s, %s, %s) on conflict (id) do nothing", *op[1:])
    elif kind == "set_a":
        run(db, f"update {s}.t set a = %s where id = %s", op[2], op[1])
    elif kind == "set_b":
        run(db, f"update {s}.t set b = %s where id = %s", op[2], op[1])
    elif kind == "delete":
        run(db, f"delete from {s}.t where id = %s", op[1])
    elif kind == "set_c":
        if one(db, "select count(*) from pg_attribute where attrelid = %s::regclass and attname = 'c' "
                   "and not attisdropped", f"{s}.t"):
            run(db, f"update {s}.t set c = %s where id = %s", op[2], op[1])
    elif kind == "add_c":
        run(db, f"alter table {s}.t add column if not exists c text default 'd'")
    elif kind == "k_insert":
        run(db, f"insert into {s}.k values (%s, %s)", *op[1])
    elif kind == "k_delete_all":
        run(db, f"delete from {s}.k where x = %s and y = %s", *op[1])
    else:
        run(db, f"delete from {s}.k where ctid = (select ctid from {s}.k where x = %s and y = %s limit 1)", *op[1])


def work(db, repo, branch, groups):
    run(db, "select splitgraph.checkout(%s, %s)", repo, branch)
    for edits, snapshot in groups:
        for op in edits:
            apply(db, f'"{repo}"', op)
        run(db, "select splitgraph.commit(%s, snapshot => %s)", repo, snapshot)


def check_clean(db, repo, expected):
    """Nothing pending, logs trusted, and the table is what a fresh checkout of HEAD and of the next commit give."""
    assert run(db, "select table_name from splitgraph.status(%s)", repo) == [], "changes pending after the merge"
    states = {r[0] for r in run(db, "select state from splitgraph_audit.tracked where schema_name = %s", repo)}
    assert states <= {"tracking"}, f"logs not trusted after the merge: {states}"
    head = one(db, "select image_hash from splitgraph.log(%s) limit 1", repo)
    image = one(db, "select splitgraph.commit(%s)", repo)
    for ref in (image, head):
        run(db, "select splitgraph.checkout(%s, %s)", repo, ref)
        assert contents(db, repo) == expected, f"checkout of {ref[:8]} differs from the merged tables"
    run(db, "select splitgraph.checkout(%s, 'main')", repo)


def check_history(db, rounds):
    repo = f"mh/h{next(_repos)}"
    run(db, "select splitgraph.init(%s)", repo)
    try:
        merge_rounds(db, repo, rounds)
    finally:  # many examples run in one database: keep it small
        run(db, "select splitgraph.rm(%s, force => true)", repo)
        run(db, "select splitgraph.cleanup()")


def merge_rounds(db, repo, rounds):
    s = f'"{repo}"'

    run(db, f"create table {s}.t (id int primary key, a text, b int)")
    run(db, f"insert into {s}.t select i, 'p', 1 from generate_series(0, 7) i")
    run(db, f"create table {s}.k (x int, y text)")
    run(db, f"insert into {s}.k values (0, 'u'), (1, 'u'), (1, 'u'), (2, 'v')")
    run(db, "select splitgraph.commit(%s, 'base', chunk_size => 3)", repo)  # chunks: base lookups by range
    run(db, "select splitgraph.branch(%s, 'dev')", repo)
    base = contents(db, repo)
    for number, (main_work, dev_work, strategy) in enumerate(rounds):
        work(db, repo, "main", main_work)
        ours_head = one(db, "select image_hash from splitgraph.branches(%s) where branch = 'main'", repo)
        work(db, repo, "dev", dev_work)
        theirs = contents(db, repo)
        theirs_head = one(db, "select image_hash from splitgraph.branches(%s) where branch = 'dev'", repo)
        run(db, "select splitgraph.checkout(%s, 'main')", repo)
        ours = contents(db, repo)
        t_ref, conflicts = merge_keyed(base[0], ours[0], theirs[0], strategy)
        k_ref = merge_keyless(base[1], ours[1], theirs[1])
        listed = {("t", r[0]["id"]) for r in run(db, "select pk from splitgraph.conflicts(%s, 'dev')", repo)}
        assert listed == {("t", key) for key in conflicts}, f"round {number}: conflicts() disagrees"
        if strategy is None and conflicts:
            with pytest.raises(driver.Error) as info:
                run(db, "select splitgraph.merge(%s, 'dev')", repo)
            assert info.value.pgcode == "55000"
            assert contents(db, repo) == ours, "a failed merge changed the checkout"
            assert one(db, "select image_hash from splitgraph.log(%s) limit 1", repo) == ours_head
            strategy = "theirs"
            t_ref, _ = merge_keyed(base[0], ours[0], theirs[0], strategy)
        if strategy is None:
            merged = one(db, "select splitgraph.merge(%s, 'dev')", repo)
        else:
            merged = one(db, "select splitgraph.merge(%s, 'dev', %s)", repo, strategy)
        assert contents(db, repo) == (t_ref, k_ref), f"round {number}: the merge differs from the reference"
        if merged not in (ours_head, theirs_head):
            parents = one(db, "select splitgraph.show(%s, %s) -> 'parents'", repo, merged)
            assert parents == [ours_head, theirs_head]
        check_clean(db, repo, (t_ref, k_ref))
        base = theirs  # dev's head is now an ancestor of main: the next round's base


def edits(*ops):
    return [(list(ops), False)]


@DEFAULT
@given(rounds=histories)
@example(rounds=[(edits(("set_a", 1, "q")), edits(("set_b", 1, 3)), None)])
@example(rounds=[(edits(("set_a", 1, "q"), ("delete", 2), ("insert", 9, "p", 1)),
                  edits(("set_a", 1, "r"), ("set_b", 2, 2), ("insert", 9, "q", 1)), None)])
@example(rounds=[([([("k_insert", (0, "u"))], True)], edits(("k_delete_one", (1, "u")), ("k_insert", (0, "u"))),
                  "ours")])
@example(rounds=[(edits(("set_a", 3, "q")), edits(("set_a", 3, "r")), "theirs"),
                 (edits(("set_b", 4, 2)), edits(("set_a", 3, "p")), None)])
@example(rounds=[([], edits(("delete", 0), ("k_delete_all", (1, "u"))), None),
                 (edits(("insert", 11, "r", 3)), [], None)])
@example(rounds=[(edits(("set_a", 1, "q"), ("delete", 2), ("insert", 10, "r", 2)),
                  edits(("add_c",), ("set_c", 1, "p"), ("set_b", 3, 3), ("delete", 4)), None),
                 (edits(("add_c",), ("set_c", 5, "q")), edits(("set_c", 5, "r"), ("set_a", 1, "p")), None)])
def test_random_merges(db, rounds):
    check_history(db, rounds)


@pytest.mark.long
@LONG
@given(rounds=histories)
def test_random_merges_long(long_selected, db, rounds):
    check_history(db, rounds)
