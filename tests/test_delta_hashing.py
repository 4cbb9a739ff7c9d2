"""Delta commits over a long chain, checked against independent computations (hashlib and Python only).

A table with a composite primary key (and awkward column names and values) and a table without a primary key
(with duplicate rows) go through 30 commits of random inserts, updates, deletes, primary key changes, no-op
updates and changes that cancel out. After every commit:
- the sum of the table's fragments' content hashes (insertion - deletion, lane-wise mod 2**16) is the insertion
  hash of its rows, computed with hashlib over `select t::text` under the engine's settings;
- an unchanged table keeps its object list, a changed keyed table gets exactly one delta fragment on top, whose
  insertion / deletion hashes and row counts are those of the net changes computed in Python;
then every image checks out to the rows recorded when it was committed, and the diff (and diff_summary) of
every pair of consecutive images is the one computed in Python from the recorded rows.
"""
import collections
import json
import random

import psycopg2
import pytest
from test_hashing import ref_row_hash, ref_sub, ref_sum

from conftest import objects_of as conftest_objects_of
from conftest import sql, value
from support import driver  # noqa: E402

ZERO = "0" * 64
REPO = "dh/chain"
COMP = '"dh/chain".comp'
NOPK = '"dh/chain".nopk'
COMMITS = 30
TEXTS = ["plain", "", None, 'quote"d', "it's", "comma, (paren)", "back\\slash", "ünï cödé", "line\nbreak", " lead"]
FLOATS = [0.1, -2.5, 1e-7, 123456.789, 0.0, None, float("nan")]
NUMERICS = ["1.5", "2.25", "-3", "1000000.0001", "0", None]


@pytest.fixture
def reader(cluster, dbname):
    """A connection that sees row texts as the engine hashes them (the settings the API functions pin)."""
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        for setting in ("timezone = 'UTC'", "datestyle = 'ISO, MDY'", "extra_float_digits = 1",
                        "intervalstyle = 'postgres'", "bytea_output = 'hex'"):
            sql(c, f"set {setting}")
        yield c


# ---------------------------------------------------------------------------------------------------------------
# Reading state
# ---------------------------------------------------------------------------------------------------------------

def comp_rows(reader):
    """{(a, b): (row text, row json)} of the keyed table."""
    return {(a, b): (text, js) for a, b, text, js in
            sql(reader, f'select t."Kéy ""a""", t.b, t::text, to_jsonb(t)::text from {COMP} t')}


def nopk_rows(reader):
    """Counter of (row text, row json) of the keyless table."""
    return collections.Counter(tuple(r) for r in sql(reader, f"select t::text, to_jsonb(t)::text from {NOPK} t"))


def objects_of(conn, image, table):
    return conftest_objects_of(conn, REPO, image, table)


def object_meta(conn, object_id):
    row = sql(conn, "select insertion_hash, deletion_hash, rows_inserted, rows_deleted from splitgraph_meta.objects "
                    "where object_id = %s", object_id)
    assert row, f"object {object_id} is not registered"
    return row[0]


def content_sum(conn, object_ids):
    return ref_sum(ref_sub(*object_meta(conn, o)[:2]) for o in object_ids)


def canonical(js):
    return json.dumps(json.loads(js), sort_keys=True)


# ---------------------------------------------------------------------------------------------------------------
# Random changes
# ---------------------------------------------------------------------------------------------------------------

def random_values(rng):
    stamp = f"2021-0{rng.randint(1, 9)}-1{rng.randint(0, 9)} 1{rng.randint(0, 9)}:30:00.25+0{rng.randint(0, 5)}"
    return rng.choice(TEXTS), rng.choice(NUMERICS), rng.choice(FLOATS), rng.choice([None, stamp])


class Changer:
    def __init__(self, conn, rng):
        self.conn, self.rng, self.next_a = conn, rng, 1000

    def fresh_key(self):
        self.next_a += 1
        return self.next_a, self.rng.choice(["x", "ÿ", "k'ey"])

    def comp(self):
        rng, conn = self.rng, self.conn
        keys = [tuple(k) for k in sql(conn, f'select "Kéy ""a""", b from {COMP}')]
        rng.shuffle(keys)
        where = '"Kéy ""a""" = %s and b = %s'
        for _ in range(rng.randint(0, 4)):                                   # inserts
            sql(conn, f"insert into {COMP} values (%s, %s, %s, %s, %s, %s)", *self.fresh_key(), *random_values(rng))
        for k in keys[:rng.randint(0, 3)]:                                   # updates
            v, n, f, ts = random_values(rng)
            sql(conn, f'update {COMP} set "välue" = %s, n = %s, f = %s where {where}', v, n, f, *k)
        for k in keys[3:3 + rng.randint(0, 2)]:                              # deletes
            sql(conn, f"delete from {COMP} where {where}", *k)
        for k in keys[5:5 + rng.randint(0, 2)]:                              # primary key changes
            if rng.random() < 0.5:
                sql(conn, f'update {COMP} set "Kéy ""a""" = %s where {where}', self.fresh_key()[0], *k)
            else:
                sql(conn, f"update {COMP} set b = b || '+' where {where}", *k)
        for k in keys[7:7 + rng.randint(0, 2)]:                              # no-op updates
            sql(conn, f'update {COMP} set "välue" = "välue" where {where}', *k)
        if keys[9:10] and rng.random() < 0.5:                                # an update and its undo
            k = keys[9]
            sql(conn, f"update {COMP} set n = n + 1, ts = ts + interval '1 day' where {where}", *k)
            sql(conn, f"update {COMP} set n = n - 1, ts = ts - interval '1 day' where {where}", *k)
        if rng.random() < 0.4:                                               # an insert and its delete
            key = self.fresh_key()
            sql(conn, f"insert into {COMP} values (%s, %s, 'temporary', 1, 1, null)", *key)
            sql(conn, f"delete from {COMP} where {where}", *key)
        if keys[10:11] and rng.random() < 0.3:                               # a delete and an identical re-insert
            row = sql(conn, f"select * from {COMP} where {where}", *keys[10])[0]
            sql(conn, f"delete from {COMP} where {where}", *keys[10])
            sql(conn, f"insert into {COMP} values (%s, %s, %s, %s, %s, %s)", *row)
        if rng.random() < 0.2:                                               # a set-based key shift
            sql(conn, f'update {COMP} set "Kéy ""a""" = "Kéy ""a""" + 100000 where "Kéy ""a""" % 7 = 3')

    def nopk(self):
        rng, conn = self.rng, self.conn
        for _ in range(rng.randint(0, 3)):                                   # inserts
            sql(conn, f"insert into {NOPK} values (%s, %s, %s)", rng.randint(1, 40), rng.choice(TEXTS),
                rng.choice([0.5, -1.25, None, 3.0]))
        if rng.random() < 0.25:                                              # a duplicate of an existing row
            sql(conn, f"insert into {NOPK} select * from {NOPK} order by random() limit 1")
        for _ in range(rng.randint(0, 2)):                                   # delete one copy of a row
            sql(conn, f"delete from {NOPK} where ctid = (select ctid from {NOPK} order by random() limit 1)")
        for _ in range(rng.randint(0, 2)):                                   # update one copy of a row
            sql(conn, f"update {NOPK} set y = coalesce(y, '') || '*' "
                      f"where ctid = (select ctid from {NOPK} order by random() limit 1)")
        if rng.random() < 0.3:                                               # delete every copy, put them back
            sql(conn, f"""with gone as (delete from {NOPK} where x = (select x from {NOPK} order by random() limit 1)
                                       returning *)
                          insert into {NOPK} select * from gone""")


# ---------------------------------------------------------------------------------------------------------------
# The independent expectations
# ---------------------------------------------------------------------------------------------------------------

def expected_comp_delta(before, after):
    """(insertion hash, deletion hash, rows_inserted, rows_deleted) of the net changes of the keyed table: the
    rows it upserts, and the old rows it removes (deleted or overwritten)."""
    new = [after[k][0] for k in after if k not in before or before[k][0] != after[k][0]]
    old = [before[k][0] for k in before if k not in after or before[k][0] != after[k][0]]
    return ref_sum(ref_row_hash(t) for t in new), ref_sum(ref_row_hash(t) for t in old), len(new), len(old)


def expected_comp_diff(before, after):
    rows = collections.Counter()
    for k in before.keys() | after.keys():
        b, a = before.get(k), after.get(k)
        if b is not None and (a is None or a[0] != b[0]):
            rows["-", canonical(b[1])] += 1
        if a is not None and (b is None or a[0] != b[0]):
            rows["+", canonical(a[1])] += 1
    summary = (sum(1 for k in after if k not in before), sum(1 for k in before if k not in after),
               sum(1 for k in after if k in before and after[k][0] != before[k][0]))
    return rows, summary


def expected_nopk_diff(before, after):
    rows = collections.Counter()
    for (_text, js), n in (before - after).items():
        rows["-", canonical(js)] += n
    for (_text, js), n in (after - before).items():
        rows["+", canonical(js)] += n
    return rows, (sum((after - before).values()), sum((before - after).values()), 0)


def engine_diff(conn, table, image_1, image_2):
    return collections.Counter((a, canonical(j)) for a, j in sql(
        conn, "select action::text, row_data::text from splitgraph.diff(%s, %s, %s, %s)",
        REPO, table, image_1, image_2))


def engine_summary(conn, image_1, image_2):
    return {t: (a, r, u) for t, a, r, u in sql(
        conn, "select table_name, added, removed, updated from splitgraph.diff_summary(%s, %s, %s)", REPO, image_1,
        image_2)}


# ---------------------------------------------------------------------------------------------------------------
# The chain
# ---------------------------------------------------------------------------------------------------------------

def test_long_delta_chain_hashes_checkouts_and_diffs(conn, reader):
    rng = random.Random(20261125)
    sql(conn, "set client_min_messages = warning")
    sql(conn, "select splitgraph.init(%s)", REPO)
    sql(conn, f'create table {COMP} ("Kéy ""a""" int, b text, "välue" text, n numeric, f float8, ts timestamptz, '
              f'primary key ("Kéy ""a""", b))')
    sql(conn, f"create table {NOPK} (x int, y text, z float8)")
    changer = Changer(conn, rng)
    for _ in range(40):
        sql(conn, f"insert into {COMP} values (%s, %s, %s, %s, %s, %s)", *changer.fresh_key(), *random_values(rng))
    sql(conn, f"insert into {NOPK} select i % 15, 'row ' || (i % 15), i / 4.0 from generate_series(1, 30) i")

    images = [value(conn, "select splitgraph.commit(%s, 'base')", REPO)]
    recorded = [(comp_rows(reader), nopk_rows(reader))]
    kinds = collections.Counter()
    for step in range(1, COMMITS + 1):
        if step % 10 != 5:                                                   # every tenth commit has no change
            changer.comp()
            changer.nopk()
        snapshot = step == 17
        images.append(value(conn, "select splitgraph.commit(%s, %s, snapshot => %s)", REPO, f"step {step}", snapshot))
        recorded.append((comp_rows(reader), nopk_rows(reader)))
        (comp_before, nopk_before), (comp_after, nopk_after) = recorded[-2], recorded[-1]
        assert value(conn, "select count(*) from splitgraph.status(%s)", REPO) == 0, f"step {step}: still pending"

        for table, texts in (("comp", [r[0] for r in comp_after.values()]), ("nopk", list(nopk_after.elements()))):
            ids = objects_of(conn, images[-1], table)
            assert content_sum(conn, ids) == ref_sum(ref_row_hash(t[0] if table == "nopk" else t) for t in texts), \
                f"step {step}: the content hashes of {table}'s {len(ids)} fragments do not sum to its rows' hash"

        for table, expected in (("comp", len(comp_after)), ("nopk", sum(nopk_after.values()))):
            length = value(conn, "select (splitgraph.table_info(%s, %s, %s) ->> 'rows')::bigint", REPO,
                           images[-1], table)
            assert length == expected, f"step {step}: table_info counts {length} rows of {table}, not {expected}"

        previous, current = objects_of(conn, images[-2], "comp"), objects_of(conn, images[-1], "comp")
        if snapshot:
            kinds["snapshot"] += 1
            assert len(current) == 1
        elif comp_before == comp_after:
            kinds["unchanged"] += 1
            assert current == previous, f"step {step}: an unchanged table got new objects"
        else:
            kinds["delta"] += 1
            assert current[:-1] == previous, f"step {step}: a changed table lost its objects"
            insertion, deletion, upserts, removed = expected_comp_delta(comp_before, comp_after)
            assert object_meta(conn, current[-1]) == (insertion, deletion, upserts, removed), \
                f"step {step}: the delta fragment is not the net change"
        nopk_previous, nopk_current = objects_of(conn, images[-2], "nopk"), objects_of(conn, images[-1], "nopk")
        if nopk_before == nopk_after and not snapshot:
            assert nopk_current == nopk_previous, f"step {step}: an unchanged keyless table got new objects"
    assert kinds["delta"] >= 20 and kinds["unchanged"] >= 3, kinds
    assert len(objects_of(conn, images[-1], "comp")) >= 10, "the chain should end with many fragments"

    # every image checks out to the rows recorded at its commit
    for n, image in enumerate(images):
        sql(conn, "select splitgraph.checkout(%s, %s)", REPO, image)
        assert comp_rows(reader) == recorded[n][0], f"checkout of image {n}: keyed rows differ"
        assert nopk_rows(reader) == recorded[n][1], f"checkout of image {n}: keyless rows differ"

    # diffs of consecutive images (both directions), and of the ends of the chain
    pairs = [(n - 1, n) for n in range(1, len(images))] + [(n, n - 1) for n in range(1, len(images), 7)] + \
        [(0, len(images) - 1), (len(images) - 1, 0)]
    for i, j in pairs:
        comp_expected, comp_counts = expected_comp_diff(recorded[i][0], recorded[j][0])
        nopk_expected, nopk_counts = expected_nopk_diff(recorded[i][1], recorded[j][1])
        assert engine_diff(conn, "comp", images[i], images[j]) == comp_expected, f"diff comp {i} -> {j}"
        assert engine_diff(conn, "nopk", images[i], images[j]) == nopk_expected, f"diff nopk {i} -> {j}"
        expected_summary = {t: c for t, c in (("comp", comp_counts), ("nopk", nopk_counts)) if any(c)}
        assert engine_summary(conn, images[i], images[j]) == expected_summary, f"diff_summary {i} -> {j}"


def test_pending_diff_and_status_match_python(conn, reader):
    """The pending state (image_2 null) against HEAD and against an older image, for both kinds of table."""
    repo = "dh/pending"
    sql(conn, "set client_min_messages = warning")
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".k (id int primary key, v text)')
    sql(conn, f'create table "{repo}".n (x int, y text)')
    sql(conn, f"insert into \"{repo}\".k select i, 'v' || i from generate_series(1, 20) i")
    sql(conn, f"insert into \"{repo}\".n select i % 5, 'n' || (i % 5) from generate_series(1, 12) i")

    def rows():
        k = {r[0]: (r[1], r[2]) for r in sql(reader, f'select id, t::text, to_jsonb(t)::text from "{repo}".k t')}
        n = collections.Counter(tuple(r) for r in sql(reader, f'select t::text, to_jsonb(t)::text from "{repo}".n t'))
        return k, n

    old = value(conn, "select splitgraph.commit(%s)", repo)
    old_rows = rows()
    sql(conn, f"update \"{repo}\".k set v = v || '!' where id % 4 = 0")
    sql(conn, f'delete from "{repo}".k where id between 5 and 7')
    sql(conn, f"delete from \"{repo}\".n where ctid = (select min(ctid) from \"{repo}\".n where x = 1)")
    head = value(conn, "select splitgraph.commit(%s)", repo)
    head_rows = rows()
    sql(conn, f"insert into \"{repo}\".k values (100, 'new'), (101, 'new')")
    sql(conn, f"update \"{repo}\".k set id = 200 where id = 1")
    sql(conn, f"update \"{repo}\".k set v = 'changed' where id in (2, 3)")
    sql(conn, f"update \"{repo}\".k set v = 'v9' where id = 9")                # no-op
    sql(conn, f"insert into \"{repo}\".n values (7, 'seven'), (7, 'seven')")
    sql(conn, f"delete from \"{repo}\".n where x = 3")
    pending_rows = rows()

    def python_diff(before, after):
        k_expected, k_counts = expected_comp_diff({(i,): v for i, v in before[0].items()},
                                                  {(i,): v for i, v in after[0].items()})
        n_expected, n_counts = expected_nopk_diff(before[1], after[1])
        return k_expected, n_expected, {t: c for t, c in (("k", k_counts), ("n", n_counts)) if any(c)}

    for base, base_rows in ((head, head_rows), (old, old_rows), ("HEAD", head_rows)):
        k_expected, n_expected, summary = python_diff(base_rows, pending_rows)
        got_k = collections.Counter((a, canonical(j)) for a, j in sql(
            conn, "select action::text, row_data::text from splitgraph.diff(%s, 'k', %s)", repo, base))
        got_n = collections.Counter((a, canonical(j)) for a, j in sql(
            conn, "select action::text, row_data::text from splitgraph.diff(%s, 'n', %s)", repo, base))
        assert got_k == k_expected, f"pending diff of k against {base}"
        assert got_n == n_expected, f"pending diff of n against {base}"
        assert {t: (a, r, u) for t, a, r, u in sql(
            conn, "select table_name, added, removed, updated from splitgraph.diff_summary(%s, %s)", repo, base)} \
            == summary, f"pending diff_summary against {base}"
    _, _, summary = python_diff(head_rows, pending_rows)
    assert {t: (a, r, u) for t, a, r, u in sql(
        conn, "select table_name, added, removed, updated from splitgraph.status(%s)", repo)} == summary
    # and the commit of that state hashes to its rows
    image = value(conn, "select splitgraph.commit(%s)", repo)
    for table, texts in (("k", [v[0] for v in pending_rows[0].values()]),
                         ("n", [t for t, _ in pending_rows[1].elements()])):
        ids = value(conn, "select splitgraph.table_info(%s, %s, %s)", repo, image, table)["objects"]
        assert content_sum(conn, ids) == ref_sum(ref_row_hash(t) for t in texts), table


def test_keyless_diff_sees_changes_that_jsonb_equality_hides(conn):
    repo = "dh/scale"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".k (a int, n numeric)')
    sql(conn, f'insert into "{repo}".k values (1, 1.5), (2, 2)')
    first = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, f'update "{repo}".k set n = 1.50 where a = 1')
    delta = value(conn, "select splitgraph.commit(%s)", repo)
    snapshot = value(conn, "select splitgraph.commit(%s, snapshot => true)", repo)
    ids = [value(conn, "select splitgraph.table_info(%s, %s, 'k')", repo, i)["objects"] for i in (first, snapshot)]
    assert ids[0] != ids[1], "the two versions are different content"
    via_delta = sql(conn, "select action::text, row_data::text from splitgraph.diff(%s, 'k', %s, %s) order by 1",
                    repo, first, delta)
    assert [a for a, _ in via_delta] == ["+", "-"]
    via_snapshot = sql(conn, "select action::text, row_data::text from splitgraph.diff(%s, 'k', %s, %s) order by 1",
                       repo, first, snapshot)
    assert via_snapshot == via_delta
    assert sql(conn, "select table_name, added, removed from splitgraph.diff_summary(%s, %s, %s)",
               repo, first, snapshot) == [("k", 1, 1)]


def test_key_under_a_nondeterministic_collation(conn, reader):
    try:
        sql(conn, "create collation if not exists public.sg_test_ci "
                  "(provider = icu, locale = 'und-u-ks-level2', deterministic = false)")
    except psycopg2.Error as e:
        pytest.skip(f"no ICU collations: {e}")
    repo = "dh/collation"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (k text collate public.sg_test_ci primary key, v text)')
    sql(conn, f"insert into \"{repo}\".t values ('a', 'x'), ('b', 'y')")
    value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, f"update \"{repo}\".t set k = 'A' where k = 'a'")
    assert sql(conn, "select change_type from splitgraph.get_pending_changes(%s, 't') order by 1", repo) \
        == [("update",)]
    image = value(conn, "select splitgraph.commit(%s)", repo)
    ids = value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image)["objects"]
    texts = [t for (t,) in sql(reader, f'select t::text from "{repo}".t t')]
    assert content_sum(conn, ids) == ref_sum(ref_row_hash(t) for t in texts)
    sql(conn, "select splitgraph.checkout(%s, %s)", repo, image)
    assert sorted(r[0] for r in sql(conn, f'select k from "{repo}".t')) == ["A", "b"]


def test_keyless_net_changes_scale_like_keyed_ones(conn):
    import time

    repo = "dh/scale-keyless"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".keyed (a int primary key, b text)')
    sql(conn, f'create table "{repo}".keyless (a int, b text)')
    value(conn, "select splitgraph.commit(%s)", repo)
    for table in ("keyed", "keyless"):
        sql(conn, f"insert into \"{repo}\".{table} select i, 'row ' || i from generate_series(1, 3000) i")

    def fastest(table):
        best = None
        for _ in range(3):
            start = time.perf_counter()
            assert sql(conn, "select added from splitgraph.get_pending_changes(%s, %s, true)", repo, table) == [(3000,)]
            took = time.perf_counter() - start
            best = took if best is None else min(best, took)
        return best

    keyed, keyless = fastest("keyed"), fastest("keyless")
    assert keyless < 20 * keyed + 0.05, f"keyless {keyless:.3f} s vs keyed {keyed:.3f} s for 3,000 inserted rows"


@pytest.mark.parametrize("rows", [40, 80000])
def test_a_delta_of_any_size_hashes_as_the_scheme_says(conn, reader, rows):
    """A delta small enough to have its digests summed in Python (at most hashing.MAX_SUMMED rows) and one summed
    in SQL: the same hashes as computed with hashlib over the rows' texts (updated, deleted and added rows)."""
    repo = f"dh/size-{rows}"
    table = f'"{repo}".t'
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f"create table {table} (id int primary key, name text, at timestamptz)")
    sql(conn, f"insert into {table} select i, 'row ' || i, timestamptz '2020-01-01' + i * interval '1 minute' "
              f"from generate_series(1, {rows}) i")
    value(conn, "select splitgraph.commit(%s)", repo)
    before = dict(sql(reader, f"select id, t::text from {table} t"))
    sql(conn, f"update {table} set name = name || '!' where id % 7 <> 0")
    sql(conn, f"delete from {table} where id % 7 = 0 and id % 2 = 0")
    sql(conn, f"insert into {table} select i, 'new ' || i, null from generate_series({rows + 1}, {rows + 10}) i")
    after = dict(sql(reader, f"select id, t::text from {table} t"))
    image = value(conn, "select splitgraph.commit(%s)", repo)
    delta = conftest_objects_of(conn, repo, image, "t")[-1]
    changed = [k for k in after if before.get(k) != after[k]]
    removed = [k for k in before if before[k] != after.get(k)]
    insertion, deletion, inserted, deleted = object_meta(conn, delta)
    assert (inserted, deleted) == (len(changed), len(removed))
    assert insertion == ref_sum(ref_row_hash(after[k]) for k in changed)
    assert deletion == ref_sum(ref_row_hash(before[k]) for k in removed)
