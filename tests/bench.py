#!/usr/bin/env python3
"""`make bench`: splitgraph's costs as ratios to the physical limit measured in the same run.

Each operation is timed against the plain-Postgres statement that moves the same rows (its physical limit),
on a fresh cluster, several times with the two interleaved; the ratio of the medians is reported with its
target. Absolute times are printed for context only.

    bench.py [--rows 1000000] [--repeat 5] [--keep]
"""
import argparse
import io
import json
import os
import pathlib
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from support import driver  # noqa: E402
from support.cluster import PG_BIN, Cluster  # noqa: E402

ROOT = pathlib.Path(__file__).resolve().parent.parent
FILL = """create table {table} as
          select i as id, md5(i::text) as md5, random() as value,
                 timestamptz '2020-01-01' + i * interval '1 second' as at
          from generate_series(1, {rows}) i"""


def fill_and_commit(conn, repo, rows):
    """Repository `repo` with table t of `rows` FILL rows and its primary key, committed; returns the image."""
    run(conn, "select splitgraph.init(%s)", repo)
    run(conn, FILL.format(table=f'"{repo}".t', rows=rows))
    run(conn, f'alter table "{repo}".t add primary key (id)')
    return run(conn, "select splitgraph.commit(%s)", repo)[0][0]


def commit_random_changes(conn, repo, stem, rows, changes):
    """Add 1 to the value of `changes` random rows of "repo".t (their ids kept in public.<stem>) and commit;
    returns the image."""
    run(conn, f"create table public.{stem} as select (random() * ({rows} - 1))::int + 1 as id "
              f"from generate_series(1, {changes * 2}) group by 1 limit {changes}")
    run(conn, f'update "{repo}".t t set value = t.value + 1 from public.{stem} c where c.id = t.id')
    return run(conn, "select splitgraph.commit(%s)", repo)[0][0]


def timed(conn, query, *args):
    with conn.cursor() as cur:
        start = time.perf_counter()
        cur.execute(query, args or None)
        elapsed = time.perf_counter() - start
        return elapsed, (cur.fetchone() if cur.description else None)


def run(conn, query, *args):
    with conn.cursor() as cur:
        cur.execute(query, args or None)
        return cur.fetchall() if cur.description else None


def fastest(conn, statements):
    """The physical limit: the statements timed as planned and with parallel query off (a pure copy gains nothing
    from workers that must hand every row to the leader); the faster of the two counts. Tables they create are
    dropped after each try."""
    times = []
    for parallel in (True, False):
        run(conn, f"set max_parallel_workers_per_gather = {2 if parallel else 0}")
        settle(conn)
        times.append(sum(timed(conn, s)[0] for s in statements))
        for table in {s.split()[2] for s in statements if s.startswith("create table")}:
            run(conn, f"drop table {table}")
    run(conn, "reset max_parallel_workers_per_gather")
    return min(times)


def settle(conn):
    """Start every measurement from the same state: dirty pages written out, no background work queued."""
    run(conn, "checkpoint")


class Measure:
    def __init__(self, name, target, limit_label, unit="s"):
        self.name, self.target, self.limit_label, self.unit = name, target, limit_label, unit
        self.ours, self.limit = [], []

    def ratio(self):
        return statistics.median(self.ours) / statistics.median(self.limit)

    absolute = False

    def line(self):
        if self.absolute:
            took = statistics.median(self.ours)
            status = "ok" if took <= self.target else "ABOVE TARGET"
            return f"{self.name:<34} {took * 1000:7.1f} ms (target <= {self.target * 1000:.0f} ms, {status})"
        ratio = self.ratio()
        if self.target is None:
            verdict = "for information"
        else:
            verdict = f"target <= {self.target}x, " + ("ok" if ratio <= self.target else "ABOVE TARGET")
        ours, limit = statistics.median(self.ours), statistics.median(self.limit)
        return (f"{self.name:<34} {ratio:5.2f}x  ({verdict}); "
                f"median {ours:.3f}{self.unit} vs {self.limit_label} {limit:.3f}{self.unit}")

    def as_dict(self):
        return {"ratio": round(self.ratio(), 3), "target": self.target, "ours_s": self.ours, "limit_s": self.limit,
                "limit": self.limit_label}


def bench_commit_checkout(conn, rows, repeat):
    """Snapshot commit vs CREATE TABLE AS + primary key; checkout vs CREATE TABLE AS from the objects + key."""
    commit = Measure(f"commit snapshot ({rows} rows)", 2.5, "CTAS + primary key")
    checkout = Measure(f"checkout ({rows} rows)", 1.5, "CTAS from objects + primary key")
    run(conn, FILL.format(table="public.source", rows=rows))
    run(conn, "alter table public.source add primary key (id)")
    run(conn, "vacuum analyze public.source")
    for i in range(repeat):
        # physical limit of a commit: copy the rows once and index their key
        commit.limit.append(fastest(conn, ["create table public.copy as select * from public.source",
                                           "alter table public.copy add primary key (id)"]))

        # a fresh repository each time, and no objects left from the last round: every row is stored anew
        run(conn, "select splitgraph.init('bench/snap')")
        run(conn, 'create table "bench/snap".t as select * from public.source')
        run(conn, 'alter table "bench/snap".t add primary key (id)')
        run(conn, 'vacuum analyze "bench/snap".t')
        settle(conn)
        elapsed, (image,) = timed(conn, "select splitgraph.commit('bench/snap')")
        commit.ours.append(elapsed)

        objects = run(conn, "select unnest(object_ids) from splitgraph_meta.tables "
                            "where repository = 'bench/snap' and image_hash = %s", image)
        union = " union all ".join(f'select id, md5, value, at from splitgraph_meta."{o}"' for (o,) in objects)
        checkout.limit.append(fastest(conn, [f"create table public.restored as {union}",
                                             "alter table public.restored add primary key (id)"]))

        run(conn, "select splitgraph.checkout('bench/snap', repeat('0', 64))")
        settle(conn)
        elapsed, _ = timed(conn, "select splitgraph.checkout('bench/snap', %s)", image)
        checkout.ours.append(elapsed)
        got = run(conn, 'select count(*), sum(id) from "bench/snap".t')[0]
        assert got == (rows, rows * (rows + 1) // 2), f"checkout restored {got}"

        run(conn, "select splitgraph.rm('bench/snap', force => true)")
        run(conn, "select splitgraph.cleanup()")
        print(f"  round {i + 1}/{repeat}: commit {commit.ours[-1]:.3f}s / {commit.limit[-1]:.3f}s, "
              f"checkout {checkout.ours[-1]:.3f}s / {checkout.limit[-1]:.3f}s", flush=True)
    run(conn, "drop table public.source")
    return [commit, checkout]


def tracked_workloads(existing):
    """The five writes of the tracked-writes bench (label, statement with {t} for the table) on a table whose
    keys 1..`existing` were there when its log began."""
    return [
        ("insert 200k rows",
         f"insert into {{t}} select i, md5(i::text), random(), now() from generate_series({existing + 1}, "
         f"{existing + 200000}) i"),
        ("update 100k rows", f"update {{t}} set value = value + 1 where id > {existing} and id <= {existing + 100000}"),
        ("delete 50k rows", f"delete from {{t}} where id > {existing + 150000}"),
        ("update 100k checked-out rows", "update {t} set value = value + 1 where id <= 100000"),
        ("delete 50k checked-out rows", f"delete from {{t}} where id > 150000 and id <= {existing}"),
    ]


def bench_tracked_writes(conn, repeat, existing=200000):
    """Writes to a tracked table vs the same writes to an untracked one holding the same rows. The table starts with
    `existing` rows committed (a checkout: rows that existed when its log began), then: INSERT 200k new rows,
    UPDATE 100k and DELETE 50k of those new rows, UPDATE 100k and DELETE 50k of the checked-out rows (whose old
    values, and new values for an UPDATE, the log must keep)."""
    workloads = tracked_workloads(existing)
    measures = [Measure(f"tracked {label}", 1.5, "untracked") for label, _ in workloads]
    total = Measure("tracked writes, the five together", 1.2, "untracked")
    create = "create table {t} (id int primary key, md5 text, value float8, at timestamptz)"
    fill = (f"insert into {{t}} select i, md5(i::text), random(), timestamptz '2020-01-01' + i * interval '1 second' "
            f"from generate_series(1, {existing}) i")
    for i in range(repeat):
        run(conn, "select splitgraph.init('bench/tracked')")
        run(conn, create.format(t='"bench/tracked".t'))
        run(conn, fill.format(t='"bench/tracked".t'))
        run(conn, "select splitgraph.commit('bench/tracked')")  # from now on the table is tracked
        run(conn, create.format(t="public.untracked"))
        run(conn, fill.format(t="public.untracked"))
        for t in ('"bench/tracked".t', "public.untracked"):  # the same state of pages (hint bits, free space) on both
            run(conn, f"vacuum analyze {t}")
        for m, (_, statement) in zip(measures, workloads, strict=True):
            for target, times in (("public.untracked", m.limit), ('"bench/tracked".t', m.ours)):
                settle(conn)
                times.append(timed(conn, statement.format(t=target))[0])
        total.ours.append(sum(m.ours[-1] for m in measures))
        total.limit.append(sum(m.limit[-1] for m in measures))
        pending = run(conn, "select count(*) from splitgraph.get_pending_changes('bench/tracked', 't')")[0][0]
        assert pending == 300000, f"{pending} pending changes"
        run(conn, "drop table public.untracked")
        run(conn, "select splitgraph.rm('bench/tracked', force => true)")
        run(conn, "select splitgraph.cleanup()")
        print(f"  round {i + 1}/{repeat}: " + ", ".join(f"{m.name[8:]} {m.ours[-1]:.3f}s / {m.limit[-1]:.3f}s"
                                                         for m in measures), flush=True)
    return [total] + measures


def bench_tracking_floor(conn, repeat, existing=200000):
    """What any trigger-based log of the tracked-writes bench's writes must cost at least: the same writes to a plain
    table with statement-level AFTER triggers that capture the same transition tables as tracking's (INSERT: new
    rows; UPDATE: old and new; DELETE: old) and do nothing with them ("floor"), vs the untracked table; and the
    tracked table vs that floor (what logging the rows adds on top of capturing them). For information: it tells how
    much of each tracked-writes ratio PostgreSQL spends capturing the rows before any logging statement runs."""
    workloads = tracked_workloads(existing)
    floors = [Measure(f"floor {label}", None, "untracked") for label, _ in workloads]
    above = [Measure(f"tracked over floor {label}", None, "floor") for label, _ in workloads]
    total = Measure("floor, the five together", None, "untracked")
    create = "create table {t} (id int primary key, md5 text, value float8, at timestamptz)"
    fill = (f"insert into {{t}} select i, md5(i::text), random(), timestamptz '2020-01-01' + i * interval '1 second' "
            f"from generate_series(1, {existing}) i")
    run(conn, "create function public.sg_bench_capture_only() returns trigger language plpgsql "
              "as $$ begin return null; end $$")
    for i in range(repeat):
        run(conn, "select splitgraph.init('bench/floor')")
        run(conn, create.format(t='"bench/floor".t'))
        run(conn, fill.format(t='"bench/floor".t'))
        run(conn, "select splitgraph.commit('bench/floor')")  # from now on the table is tracked
        for t in ("public.untracked", "public.floor"):
            run(conn, create.format(t=t))
            run(conn, fill.format(t=t))
        for event, transition in (("insert", "new table as n"), ("update", "old table as o new table as n"),
                                  ("delete", "old table as o")):
            run(conn, f"create trigger capture_{event} after {event} on public.floor referencing {transition} "
                      "for each statement execute function public.sg_bench_capture_only()")
        for t in ('"bench/floor".t', "public.untracked", "public.floor"):
            run(conn, f"vacuum analyze {t}")
        for f, a, (_, statement) in zip(floors, above, workloads, strict=True):
            times = {}
            order = ["public.untracked", "public.floor", '"bench/floor".t']
            for target in order[i % 3:] + order[:i % 3]:  # each goes first in a third of the rounds
                settle(conn)
                times[target] = timed(conn, statement.format(t=target))[0]
            f.limit.append(times["public.untracked"])
            f.ours.append(times["public.floor"])
            a.limit.append(times["public.floor"])
            a.ours.append(times['"bench/floor".t'])
        total.ours.append(sum(f.ours[-1] for f in floors))
        total.limit.append(sum(f.limit[-1] for f in floors))
        run(conn, "drop table public.untracked, public.floor")
        run(conn, "select splitgraph.rm('bench/floor', force => true)")
        run(conn, "select splitgraph.cleanup()")
        print(f"  round {i + 1}/{repeat}: " + ", ".join(
            f"{f.name[6:]} {a.ours[-1]:.3f}s / {f.ours[-1]:.3f}s / {f.limit[-1]:.3f}s"
            for f, a in zip(floors, above, strict=True)) + " (tracked / floor / untracked)", flush=True)
    run(conn, "drop function public.sg_bench_capture_only()")
    return [total] + floors + above


def bench_delta_commit(conn, repeat, changes=10000):
    """A commit of `changes` updated rows of a 1M-row table vs copying those rows; and vs the same commit of a
    100k-row table (the cost must follow the changes, not the size of the table)."""
    delta = Measure(f"delta commit ({changes} of 1M rows)", 3.0, f"CTAS of the {changes} rows")
    scale = Measure("delta commit at 1M vs at 100k rows", 1.5, "100k rows")
    for i in range(repeat):
        for rows, target in ((1_000_000, delta.ours), (100_000, scale.limit)):
            fill_and_commit(conn, "bench/delta", rows)
            run(conn, f"create table public.changed as select (random() * ({rows} - 1))::int + 1 as id "
                      f"from generate_series(1, {changes * 2}) group by 1 limit {changes}")
            run(conn, 'update "bench/delta".t t set value = t.value + 1 from public.changed c where c.id = t.id')
            settle(conn)
            elapsed, (image,) = timed(conn, "select splitgraph.commit('bench/delta')")
            target.append(elapsed)
            if rows == 1_000_000:
                # after the commit: reading the changed rows first would warm them for the 1M-row commit only
                delta.limit.append(fastest(conn, ['create table public.copy as select t.* from "bench/delta".t t '
                                                  "join public.changed c using (id)"]))
            added = run(conn, "select (splitgraph.table_info('bench/delta', %s, 't') -> 'objects') ->> 1", image)[0][0]
            assert run(conn, "select splitgraph.object_info(%s) ->> 'rows_inserted'", added)[0][0] == str(changes)
            run(conn, "drop table public.changed")
            run(conn, "select splitgraph.rm('bench/delta', force => true)")
            run(conn, "select splitgraph.cleanup()")
        scale.ours.append(delta.ours[-1])
        print(f"  round {i + 1}/{repeat}: delta commit {delta.ours[-1]:.3f}s at 1M, {scale.limit[-1]:.3f}s at 100k, "
              f"copy {delta.limit[-1]:.3f}s", flush=True)
    return [delta, scale]


def bench_onerow_commit(conn, repeat, rows=10_000_000):
    """A commit of one changed row of a `rows`-row table (built and committed once), in a session that has run a
    commit before: the median of `repeat` commits, each after an UPDATE of one other row. Its target is absolute
    (50 ms); for information, also its ratio to copying that row into a fresh table (CREATE TABLE AS)."""
    took = Measure(f"delta commit of 1 row of {rows // 1_000_000}M", 0.05, "50 ms")
    took.absolute = True
    ratio = Measure(f"delta commit of 1 row of {rows // 1_000_000}M, ratio", None, "CTAS of the row")
    fill_and_commit(conn, "bench/onerow", rows)
    run(conn, 'vacuum analyze "bench/onerow".t')
    keys = random.sample(range(1, rows + 1), repeat)
    for i, k in enumerate(keys):
        run(conn, 'update "bench/onerow".t set value = value + 1 where id = %s', k)
        settle(conn)
        elapsed, (image,) = timed(conn, "select splitgraph.commit('bench/onerow')")
        took.ours.append(elapsed)
        ratio.ours.append(elapsed)
        copy = f'create table public.copy as select * from "bench/onerow".t where id = {k}'
        ratio.limit.append(fastest(conn, [copy]))
        added = run(conn, "select (splitgraph.table_info('bench/onerow', %s, 't') -> 'objects') ->> -1", image)[0][0]
        assert run(conn, "select splitgraph.object_info(%s) ->> 'rows_inserted'", added)[0][0] == "1"
        print(f"  round {i + 1}/{repeat}: one-row commit {elapsed * 1000:.1f} ms, copy of the row "
              f"{ratio.limit[-1] * 1000:.1f} ms", flush=True)
    took.limit = [took.target] * len(took.ours)
    run(conn, "select splitgraph.rm('bench/onerow', force => true)")
    run(conn, "select splitgraph.cleanup()")
    return [took, ratio]


def bench_nearby_checkout(conn, repeat, changes=10000):
    """Switching a clean checkout of a 1M-row table to a nearby image (`changes` rows differ): the tag one commit
    back, the parent, a sibling branch; vs CREATE TABLE AS of those rows. The first switch also indexes the
    shared objects' keys (once per object): it is reported on its own."""
    labels = ("tag one back", "parent", "sibling branch")
    measures = [Measure(f"nearby checkout: {label}", 3.0, f"CTAS of the {changes} rows") for label in labels]
    first = Measure("nearby checkout: first switch", 3.0, f"CTAS of the {changes} rows")
    rows = 1_000_000
    base = fill_and_commit(conn, "bench/near", rows)

    child = commit_random_changes(conn, "bench/near", "changed_child", rows, changes)
    grandchild = commit_random_changes(conn, "bench/near", "changed_grandchild", rows, changes)
    run(conn, "select splitgraph.tag('bench/near', %s, 'back')", child)
    run(conn, "select splitgraph.branch('bench/near', 'other', %s)", base)
    run(conn, "select splitgraph.checkout('bench/near', 'other')")
    sibling = commit_random_changes(conn, "bench/near", "changed_sibling", rows, changes)
    run(conn, "select splitgraph.checkout('bench/near', %s)", grandchild)
    settle(conn)
    first.ours.append(timed(conn, "select splitgraph.checkout('bench/near', 'back')")[0])
    for i in range(repeat):
        copy = fastest(conn, ['create table public.copy as select t.* from "bench/near".t t '
                              "join public.changed_child c using (id)"])
        run(conn, "select splitgraph.checkout('bench/near', %s)", grandchild)
        for m, (ref, image) in zip(measures, (("back", child), (base, base), ("other", sibling)), strict=True):
            settle(conn)
            elapsed, (got,) = timed(conn, "select splitgraph.checkout('bench/near', %s)", ref)
            assert got == image, f"checkout of {ref} gave {got}"
            m.ours.append(elapsed)
            m.limit.append(copy)
        if i == 0:
            first.limit.append(copy)
        print(f"  round {i + 1}/{repeat}: " + ", ".join(f"{m.name[17:]} {m.ours[-1]:.3f}s" for m in measures)
              + f" / copy {copy:.3f}s", flush=True)
    got = run(conn, 'select count(*), sum(id) from "bench/near".t')[0]
    assert got == (rows, rows * (rows + 1) // 2), f"checkout left {got}"
    for stem in ("changed_child", "changed_grandchild", "changed_sibling"):
        run(conn, f"drop table public.{stem}")
    run(conn, "select splitgraph.rm('bench/near', force => true)")
    run(conn, "select splitgraph.cleanup()")
    return measures + [first]


def bench_snapshot_floor(conn, rows, repeat, chunk_size=10000):
    """For information: the least a snapshot commit of `rows` rows can cost on this machine beside its limit (CREATE
    TABLE AS + primary key), given the work its hash scheme and storage require: hashing every row and copying each
    chunk of `chunk_size` rows into its own table by key range, each with the commit's own statements (from the
    extension's builders: the hash grouped by chunk, range index included; one CREATE TABLE AS per chunk) and
    timed alone on one core (no parallel worker, the copy rolled back). With two cores shared perfectly the two
    take at least half their sum: that is the floor, and the commit of the same rows is timed beside it."""
    sys.path.insert(0, str(ROOT / "plpython"))
    from splitgraph_pl import fragments
    from splitgraph_pl import tables as tbl

    hashed = Measure("snapshot floor: hashing, one core", None, "CTAS + primary key")
    copied = Measure("snapshot floor: chunk copy, one core", None, "CTAS + primary key")
    floor = Measure("snapshot floor: both on two cores", None, "CTAS + primary key")
    commit = Measure("snapshot floor: commit vs that floor", None, "the floor")
    run(conn, FILL.format(table="public.source", rows=rows))
    run(conn, "alter table public.source add primary key (id)")
    run(conn, "vacuum analyze public.source")
    # FILL's columns as the commit sees them (types as stored, which of them the range index covers)
    cols = [tbl.Column(1, "id", "integer", True, ranged=True),
            tbl.Column(2, "md5", "text", False, collatable=True, ranged=True),
            tbl.Column(3, "value", "double precision", False, ranged=True),
            tbl.Column(4, "at", "timestamp with time zone", False, ranged=True)]
    bounds = [[str(r[0])] for r in run(conn, f"""select id from (select id, row_number() over (order by id) as n
                                                from public.source) s where (n - 1) % {chunk_size} = 0 order by id""")]
    source = "only public.source"
    hash_query = fragments._hash_query(source, cols, group=fragments._chunk_number(cols[0], bounds))
    copies = ";\n".join(fragments._range_copies(source, cols, bounds, [f"chunk_{i}" for i in range(len(bounds))],
                                                schema="public"))
    for i in range(repeat):
        limit = fastest(conn, ["create table public.copy as select * from public.source",
                               "alter table public.copy add primary key (id)"])
        run(conn, "set max_parallel_workers_per_gather = 0")
        settle(conn)
        hash_s = timed(conn, hash_query)[0]
        run(conn, "begin")
        for setting, value in fragments.WALK.items():  # as the commit copies
            run(conn, f"set local {setting} = {value}")
        settle(conn)
        copy_s = timed(conn, copies)[0]
        run(conn, "rollback")
        run(conn, "reset max_parallel_workers_per_gather")
        run(conn, "select splitgraph.init('bench/snapfloor')")
        run(conn, 'create table "bench/snapfloor".t as select * from public.source')
        run(conn, 'alter table "bench/snapfloor".t add primary key (id)')
        run(conn, 'vacuum analyze "bench/snapfloor".t')
        settle(conn)
        commit_s = timed(conn, "select splitgraph.commit('bench/snapfloor')")[0]
        run(conn, "select splitgraph.rm('bench/snapfloor', force => true)")
        run(conn, "select splitgraph.cleanup()")
        for m, ours in ((hashed, hash_s), (copied, copy_s), (floor, (hash_s + copy_s) / 2)):
            m.ours.append(ours)
            m.limit.append(limit)
        commit.ours.append(commit_s)
        commit.limit.append((hash_s + copy_s) / 2)
        print(f"  round {i + 1}/{repeat}: hashing {hash_s:.3f}s, copy {copy_s:.3f}s, commit {commit_s:.3f}s / "
              f"CTAS + key {limit:.3f}s", flush=True)
    run(conn, "drop table public.source")
    return [hashed, copied, floor, commit]


def bench_nearby_floor(conn, repeat, changes=10000):
    """For information: what the nearby checkout to the tag one commit back (bench_nearby_checkout's setup and its
    first case) costs beside the least any in-place switch must do in the same table: a plain `UPDATE` of the same
    rows to the image's values, joined by key (the rows already at hand, no tracking trigger, rolled back), after
    the same checkpoint. Both modify the same rows where they lie, so both log each page they touch whole once; the
    ratio is what finding the rows and tracking add. The checkout is timed first in each round (the rolled-back
    update leaves its row versions for the next statement to prune)."""
    ours = Measure("nearby checkout vs in-place UPDATE", None, "UPDATE of the rows in place")
    limit = Measure("in-place UPDATE vs CTAS of the rows", None, f"CTAS of the {changes} rows")
    rows = 1_000_000
    base = fill_and_commit(conn, "bench/floor", rows)

    child = commit_random_changes(conn, "bench/floor", "floor_child", rows, changes)
    grandchild = commit_random_changes(conn, "bench/floor", "floor_grandchild", rows, changes)
    run(conn, "select splitgraph.checkout('bench/floor', %s)", child)
    # the image's rows of the keys the switch writes, at hand for the UPDATE
    run(conn, 'create table public.floor_rows as select t.* from "bench/floor".t t join public.floor_grandchild '
              "using (id)")
    run(conn, "alter table public.floor_rows add primary key (id)")
    run(conn, "select splitgraph.branch('bench/floor', 'other', %s)", base)
    run(conn, "select splitgraph.checkout('bench/floor', 'other')")
    commit_random_changes(conn, "bench/floor", "floor_sibling", rows, changes)
    for i in range(repeat):
        copy = fastest(conn, ['create table public.copy as select t.* from "bench/floor".t t '
                              "join public.floor_grandchild c using (id)"])
        run(conn, "select splitgraph.checkout('bench/floor', %s)", grandchild)
        settle(conn)
        ours.ours.append(timed(conn, "select splitgraph.checkout('bench/floor', %s)", child)[0])
        run(conn, "select splitgraph.checkout('bench/floor', %s)", grandchild)
        settle(conn)
        run(conn, "begin")
        run(conn, 'alter table "bench/floor".t disable trigger all')
        run(conn, "set local enable_hashjoin = off")
        run(conn, "set local enable_mergejoin = off")
        update = timed(conn, 'update "bench/floor".t t set md5 = r.md5, value = r.value, at = r.at '
                             "from public.floor_rows r where r.id = t.id")[0]
        run(conn, "rollback")
        ours.limit.append(update)
        limit.ours.append(update)
        limit.limit.append(copy)
        print(f"  round {i + 1}/{repeat}: checkout {ours.ours[-1]:.3f}s, in-place update {update:.3f}s / copy "
              f"{copy:.3f}s", flush=True)
    for stem in ("floor_child", "floor_grandchild", "floor_sibling", "floor_rows"):
        run(conn, f"drop table public.{stem}")
    run(conn, "select splitgraph.rm('bench/floor', force => true)")
    run(conn, "select splitgraph.cleanup()")
    return [ours, limit]


def _proc_memory(pid):
    """{field: kB} of /proc/<pid>/status (VmHWM, VmRSS, RssAnon, RssShmem), {} once the process is gone."""
    try:
        text = pathlib.Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return {}
    return {k: int(v.split()[0]) for k, v in (line.split(":", 1) for line in text.splitlines())
            if k in ("VmHWM", "VmRSS", "RssAnon", "RssShmem")}


def bench_commit_memory(conn, dsn, rows, interval=0.01):
    """Peak memory of the backend (and of any parallel worker or second session) during a snapshot commit of
    `rows` rows.

    The benchmark runs on the server's machine: it resets the backend's peak RSS (writing 5 to
    /proc/<pid>/clear_refs), and while the commit runs, a second connection finds its parallel workers
    (pg_stat_activity.leader_pid) and its second session (and that one's workers), and samples
    /proc/<pid>/status of each every `interval` seconds. Reported: the largest private memory (RssAnon: what
    the process allocated itself) of the backend and of any other process (worker or second session),
    and the backend's VmHWM (peak RSS: its private memory plus the pages of shared buffers it touched, which
    shared_buffers bounds for every session alike)."""
    run(conn, FILL.format(table="public.source", rows=rows))
    run(conn, "alter table public.source add primary key (id)")
    run(conn, "select splitgraph.init('bench/mem')")
    run(conn, 'create table "bench/mem".t as select * from public.source')
    run(conn, 'alter table "bench/mem".t add primary key (id)')
    run(conn, 'vacuum analyze "bench/mem".t')
    run(conn, "drop table public.source")
    settle(conn)
    backend = run(conn, "select pg_backend_pid()")[0][0]
    pathlib.Path(f"/proc/{backend}/clear_refs").write_text("5")
    before = _proc_memory(backend)
    peaks = {}
    done = threading.Event()

    def sample():
        with driver.connect(dsn, autocommit=True) as watcher:
            while not done.is_set():
                # the backend's parallel workers, and the second session a commit may open (and its workers)
                pids = [backend] + [r[0] for r in run(watcher, """
                    select a.pid from pg_stat_activity a where a.leader_pid = %s
                       or a.application_name = 'splitgraph commit: second session'
                       or a.leader_pid in (select b.pid from pg_stat_activity b
                                           where b.application_name = 'splitgraph commit: second session')""",
                                                        backend)]
                for pid in pids:
                    m = _proc_memory(pid)
                    if m:
                        peak = peaks.setdefault(pid, {"RssAnon": 0, "RssShmem": 0})
                        peak["RssAnon"] = max(peak["RssAnon"], m["RssAnon"])
                        peak["RssShmem"] = max(peak["RssShmem"], m["RssShmem"])
                time.sleep(interval)

    watcher = threading.Thread(target=sample)
    watcher.start()
    try:
        elapsed, _ = timed(conn, "select splitgraph.commit('bench/mem')")
    finally:
        done.set()
        watcher.join()
    after = _proc_memory(backend)
    run(conn, "select splitgraph.rm('bench/mem', force => true)")
    run(conn, "select splitgraph.cleanup()")
    workers = {pid: p for pid, p in peaks.items() if pid != backend}
    result = {
        "rows": rows, "commit_s": round(elapsed, 3),
        "backend_rss_anon_before_mb": round(before["RssAnon"] / 1024, 1),
        "backend_peak_rss_anon_mb": round(peaks.get(backend, {}).get("RssAnon", 0) / 1024, 1),
        "backend_vmhwm_mb": round(after["VmHWM"] / 1024, 1),
        "backend_peak_rss_shmem_mb": round(peaks.get(backend, {}).get("RssShmem", 0) / 1024, 1),
        "other_processes_seen": len(workers),
        "others_peak_rss_anon_mb": round(max((p["RssAnon"] for p in workers.values()), default=0) / 1024, 1),
    }
    print(f"  commit memory: {json.dumps(result)}", flush=True)
    return [MemoryPeak(f"commit snapshot memory ({rows} rows)", result)]


class MemoryPeak:
    """A result line of bench_commit_memory (the target: the backend's private peak under 256 MB)."""
    TARGET_MB = 256

    def __init__(self, name, result):
        self.name, self.result = name, result

    def line(self):
        r = self.result
        peak = max(r["backend_peak_rss_anon_mb"], r["others_peak_rss_anon_mb"])
        status = "ok" if peak < self.TARGET_MB else "ABOVE TARGET"
        return (f"{self.name:<34} {peak:7.1f} MB private peak (target < {self.TARGET_MB} MB, {status}); backend "
                f"{r['backend_peak_rss_anon_mb']} MB, workers/second session {r['others_peak_rss_anon_mb']} MB, "
                f"backend VmHWM "
                f"{r['backend_vmhwm_mb']} MB incl. {r['backend_peak_rss_shmem_mb']} MB of shared buffers")

    def as_dict(self):
        return dict(self.result, target_mb=self.TARGET_MB)


def bench_merge(conn, repeat, changes=10000):
    """A merge of two branches that each changed `changes` rows of a 1M-row table (different rows: nothing
    conflicts) vs copying those rows; and vs the same merge of a 100k-row table (the cost must follow the
    changes, not the size of the table). Then, for information, the same merge where the branches changed
    random rows, some of them the same (alike), which makes the merge store a fragment of its own."""
    merge = Measure(f"merge ({changes} + {changes} of 1M rows)", 3.0, f"CTAS of the {2 * changes} rows")
    scale = Measure("merge at 1M vs at 100k rows", 1.5, "100k rows")
    overlapping = Measure("merge, overlapping changes (1M rows)", None, "CTAS of the changed rows")
    # what any write of those rows costs more at 1M than at 100k (the first change of a page after a checkpoint
    # writes the whole page to the WAL, and 10k rows of 1M lie on 10k pages, of 100k on 1.3k)
    update_scale = Measure("UPDATE of the 10k rows at 1M vs 100k", None, "100k rows")
    for i in range(repeat):
        for rows, disjoint, target in ((1_000_000, True, merge.ours), (100_000, True, scale.limit),
                                       (1_000_000, False, overlapping.ours)):
            fill_and_commit(conn, "bench/merge", rows)
            run(conn, "select splitgraph.branch('bench/merge', 'dev')")
            # each branch updates `changes` random rows: different ones, or chosen independently
            run(conn, f"create table public.picked as select id, row_number() over (order by random()) as n "
                      f"from generate_series(1, {rows}) id")
            if disjoint:
                run(conn, f"create table public.ours as select id from public.picked where n <= {changes}")
                run(conn, f"create table public.theirs as select id from public.picked "
                          f"where n > {changes} and n <= {2 * changes}")
            else:
                run(conn, f"create table public.ours as select id from public.picked where n <= {changes}")
                run(conn, f"create table public.theirs as select id from public.picked "
                          f"order by (id::bigint * 7919) % {rows} limit {changes}")
            run(conn, 'update "bench/merge".t t set value = t.value + 1 from public.ours c where c.id = t.id')
            run(conn, "select splitgraph.commit('bench/merge')")
            run(conn, "select splitgraph.checkout('bench/merge', 'dev')")
            run(conn, 'update "bench/merge".t t set value = t.value + 1 from public.theirs c where c.id = t.id')
            run(conn, "select splitgraph.commit('bench/merge')")
            run(conn, "select splitgraph.checkout('bench/merge', 'main')")
            if rows == 1_000_000:
                run(conn, "create table public.changed as "
                          "select id from public.ours union select id from public.theirs")
                run(conn, 'analyze public.changed, "bench/merge".t')
                copy = 'create table public.copy as select t.* from "bench/merge".t t join public.changed c using (id)'
                # the fastest plan: as planned (with and without parallel workers), or by the key's index
                by_index = fastest(conn, ["set enable_hashjoin = off", "set enable_mergejoin = off", copy])
                run(conn, "reset enable_hashjoin; reset enable_mergejoin")
                (merge if disjoint else overlapping).limit.append(min(fastest(conn, [copy]), by_index))
                run(conn, "drop table public.changed")
            # the same state before each timed merge, at both sizes: the table read once (the copy above reads the
            # 1M table; a read prunes the dead rows the in-place checkouts left, which the merge would otherwise
            # prune at 1M only, as the 100k table's checkout made it anew) and analyzed, then a checkpoint
            run(conn, 'select count(*) from "bench/merge".t')
            run(conn, 'analyze "bench/merge".t')
            settle(conn)
            elapsed, (image,) = timed(conn, "select splitgraph.merge('bench/merge', 'dev')")
            target.append(elapsed)
            got = run(conn, 'select count(*), count(*) filter (where value >= 1) from "bench/merge".t')[0]
            expected_changed = run(conn, "select count(*) from (select id from public.ours union "
                                         "select id from public.theirs) c")[0][0]
            assert got == (rows, expected_changed), f"the merge gave {got}"
            assert run(conn, "select count(*) from splitgraph.status('bench/merge')")[0][0] == 0
            if disjoint:
                settle(conn)
                run(conn, "begin")
                elapsed, _ = timed(conn, 'update "bench/merge".t t set value = t.value + 1 from public.theirs c '
                                         "where c.id = t.id")
                run(conn, "rollback")
                (update_scale.ours if rows == 1_000_000 else update_scale.limit).append(elapsed)
            run(conn, "drop table public.picked, public.ours, public.theirs")
            run(conn, "select splitgraph.rm('bench/merge', force => true)")
            run(conn, "select splitgraph.cleanup()")
        scale.ours.append(merge.ours[-1])
        print(f"  round {i + 1}/{repeat}: merge {merge.ours[-1]:.3f}s at 1M, {scale.limit[-1]:.3f}s at 100k, "
              f"copy {merge.limit[-1]:.3f}s; overlapping {overlapping.ours[-1]:.3f}s / {overlapping.limit[-1]:.3f}s",
              flush=True)
    return [merge, scale, overlapping, update_scale]


def bench_client(cluster, repeat, runs=20):
    """The client stays thin: `sgr sql "select 1"` (a new process, connection and query) against `psql -c` doing
    the same, interleaved."""
    measure = Measure("sgr sql vs psql -c", 3.0, "psql -c")
    sgr = pathlib.Path(sys.executable).parent / "sgr"
    command = [str(sgr)] if sgr.exists() else [sys.executable, "-m", "splitgraph_client"]
    env = dict(os.environ, SG_ENGINE_HOST="127.0.0.1", SG_ENGINE_PORT=str(cluster.port), SG_ENGINE_USER="postgres",
               SG_ENGINE_DB_NAME="bench", PYTHONPATH=str(ROOT / "client"))
    psql = ["psql", "-X", "-q", "-A", "-t", "-d", cluster.dsn("bench"), "-c", "select 1"]
    for i in range(repeat):
        ours, limit = [], []
        for _ in range(runs):
            for argv, times in ((command + ["sql", "select 1"], ours), (psql, limit)):
                start = time.perf_counter()
                subprocess.run(argv, env=env, check=True, stdout=subprocess.DEVNULL)
                times.append(time.perf_counter() - start)
        measure.ours.append(statistics.median(ours))
        measure.limit.append(statistics.median(limit))
        print(f"  round {i + 1}/{repeat}: sgr sql {measure.ours[-1] * 1000:.1f} ms, "
              f"psql {measure.limit[-1] * 1000:.1f} ms", flush=True)
    return [measure]


def dump_restore(source_dsn, target_dsn, table):
    """The physical limit of moving a table between engines: pg_dump -Fc -t table | pg_restore, timed."""
    start = time.perf_counter()
    subprocess.run(f"{PG_BIN / 'pg_dump'} -Fc -t {table} -d '{source_dsn}' | {PG_BIN / 'pg_restore'} -d '{target_dsn}'",
                   shell=True, check=True)
    return time.perf_counter() - start


def bench_remote(conn, cluster, registry, rows, repeat, changes=10000):
    """Push of a repository of one snapshot image of `rows` rows to a second engine, and clone with download_all +
    checkout of it from there into a third (a fresh database of the first cluster), each vs pg_dump -Fc -t |
    pg_restore of the same table between the same engines; then push of one more image of `changes` updated rows
    vs CREATE TABLE AS of those rows on the remote."""
    push = Measure(f"push ({rows} rows, one image)", 2.0, "pg_dump | pg_restore")
    clone = Measure(f"clone download_all + checkout ({rows})", 2.0, "pg_dump | pg_restore")
    delta = Measure(f"push of {changes} changed rows", 3.0, f"CTAS of the {changes} rows there")
    breakdown = {"dump objects (sender)": [], "load objects (receiver)": []}
    registry.create_database("hub")
    cluster.create_database("consumer")
    hub = driver.connect(registry.dsn("hub"), autocommit=True)
    consumer = driver.connect(cluster.dsn("consumer"), autocommit=True)
    for c in (hub, consumer):
        run(c, "set client_min_messages = warning")
    run(conn, "select splitgraph.add_remote('hub', '127.0.0.1', %s, 'hub', 'postgres', null)", registry.port)
    run(consumer, "select splitgraph.add_remote('hub', '127.0.0.1', %s, 'hub', 'postgres', null)", registry.port)
    run(conn, FILL.format(table="public.source", rows=rows))
    run(conn, "alter table public.source add primary key (id)")
    run(conn, "vacuum analyze public.source")
    for i in range(repeat):
        repo = "bench/remote"
        run(conn, "select splitgraph.init(%s)", repo)
        run(conn, f'create table "{repo}".t as select * from public.source')
        run(conn, f'alter table "{repo}".t add primary key (id)')
        run(conn, f"select splitgraph.commit('{repo}')")
        # nothing of the last round on the receivers
        run(hub, "drop table if exists public.source")
        for c in (hub, consumer):
            if run(c, "select count(*) from splitgraph_meta.repositories where repository = %s", repo)[0][0]:
                run(c, "select splitgraph.rm(%s, force => true)", repo)
            run(c, "select splitgraph.cleanup()")
        for c in (conn, hub, consumer):
            settle(c)
        push.limit.append(dump_restore(cluster.dsn("bench"), registry.dsn("hub"), "public.source"))
        run(hub, "vacuum analyze public.source")
        for c in (conn, hub):
            settle(c)
        elapsed, _ = timed(conn, "select splitgraph.push(%s, 'hub')", repo)
        push.ours.append(elapsed)

        run(consumer, "drop table if exists public.source")
        for c in (hub, consumer):
            settle(c)
        clone.limit.append(dump_restore(registry.dsn("hub"), cluster.dsn("consumer"), "public.source"))
        run(consumer, "drop table public.source")
        for c in (hub, consumer):
            settle(c)
        start = time.perf_counter()
        run(consumer, "select splitgraph.clone('hub', %s, download_all => true)", repo)
        run(consumer, "select splitgraph.checkout(%s, 'main')", repo)
        clone.ours.append(time.perf_counter() - start)
        got = run(consumer, f'select count(*), sum(id) from "{repo}".t')[0]
        assert got == (rows, rows * (rows + 1) // 2), f"the clone's checkout holds {got}"

        # where a push's time goes: making the dumps here, loading them there
        objects = [o for (o,) in run(conn, "select unnest(object_ids) from splitgraph_meta.tables "
                                           "where repository = %s", repo)]
        run(conn, "create temp table dumps as select o as object_id, splitgraph_internal.dump_for_transfer(o) "
                  "as dump from unnest(%s::text[]) o limit 0", objects)
        settle(conn)
        elapsed, _ = timed(conn, "insert into dumps select o, splitgraph_internal.dump_for_transfer(o) "
                                 "from unnest(%s::text[]) o", objects)
        breakdown["dump objects (sender)"].append(elapsed)
        spare = f"bench_load_{i}"
        registry.create_database(spare)
        with driver.connect(registry.dsn(spare), autocommit=True) as target:
            run(target, "create table dumps (object_id text, dump bytea)")
            buffer = io.BytesIO()
            conn.cursor().copy_expert("copy dumps to stdout", buffer)
            buffer.seek(0)
            target.cursor().copy_expert("copy dumps from stdin", buffer)
            settle(target)
            elapsed, _ = timed(target, "select count(splitgraph.load_object(object_id, dump)) from dumps")
            breakdown["load objects (receiver)"].append(elapsed)
        registry.psql(f"drop database {spare}")
        run(conn, "drop table dumps")

        # one more image: `changes` updated rows; the limit copies them on the remote
        run(conn, f"select splitgraph.checkout('{repo}', 'main')")
        run(conn, f"create table public.changed as select (random() * ({rows} - 1))::int + 1 as id "
                  f"from generate_series(1, {changes * 2}) group by 1 limit {changes}")
        run(conn, f'update "{repo}".t t set value = t.value + 1 from public.changed c where c.id = t.id')
        run(conn, f"select splitgraph.commit('{repo}')")
        run(hub, "create table public.changed (id int)")
        run(hub, "insert into public.changed select unnest(%s::int[])",
            [r[0] for r in run(conn, "select id from public.changed")])
        for c in (conn, hub):
            settle(c)
        delta.limit.append(fastest(hub, ["create table public.copy as select t.* from public.source t "
                                         "join public.changed c using (id)"]))
        settle(hub)
        elapsed, _ = timed(conn, "select splitgraph.push(%s)", repo)
        delta.ours.append(elapsed)
        sent = run(hub, "select splitgraph.table_info(%s, 'main', 't') -> 'objects'", repo)[0][0]
        assert run(hub, "select splitgraph.object_info(%s) ->> 'rows_inserted'", sent[-1])[0][0] == str(changes)
        run(hub, "drop table public.changed")
        run(conn, "drop table public.changed")
        run(conn, "select splitgraph.rm(%s, force => true)", repo)
        print(f"  round {i + 1}/{repeat}: push {push.ours[-1]:.3f}s / {push.limit[-1]:.3f}s, clone+checkout "
              f"{clone.ours[-1]:.3f}s / {clone.limit[-1]:.3f}s, delta push {delta.ours[-1]:.3f}s / "
              f"{delta.limit[-1]:.3f}s; dumps {breakdown['dump objects (sender)'][-1]:.3f}s, loads "
              f"{breakdown['load objects (receiver)'][-1]:.3f}s", flush=True)
    run(conn, "select splitgraph.delete_remote('hub')")
    run(conn, "drop table public.source")
    for c in (hub, consumer):
        c.close()
    for what, times in breakdown.items():
        print(f"  {what}: median {statistics.median(times):.3f}s")
    return [push, clone, delta]


# The physical limits of the S3 measures, run by the engine's own Python (as the extension does): the table's
# COPY (FORMAT binary) output uploaded as one object with the minio client; that object downloaded and COPY'd in.
S3_LIMITS = """
create function public.copy_upload(relation text, endpoint text, access_key text, secret_key text, bucket text,
                                   key text) returns bigint language plpython3u as $$
    import os, tempfile
    plpy.execute("select splitgraph_internal.python_init()")
    import minio
    path = os.path.join(tempfile.mkdtemp(), "copy.bin")
    os.chmod(os.path.dirname(path), 0o755)
    plpy.execute(f"copy {relation} to {plpy.quote_literal(path)} with (format binary)")
    client = minio.Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")
    client.fput_object(bucket, key, path, content_type="application/octet-stream")
    size = os.path.getsize(path)
    os.remove(path)
    return size
$$;
create function public.download_copy(relation text, endpoint text, access_key text, secret_key text, bucket text,
                                     key text) returns void language plpython3u as $$
    import os, tempfile
    plpy.execute("select splitgraph_internal.python_init()")
    import minio
    path = os.path.join(tempfile.mkdtemp(), "copy.bin")
    client = minio.Minio(endpoint, access_key=access_key, secret_key=secret_key, secure=False, region="us-east-1")
    client.fget_object(bucket, key, path)
    os.chmod(os.path.dirname(path), 0o755)
    plpy.execute(f"copy {relation} from {plpy.quote_literal(path)} with (format binary)")
    os.remove(path)
$$;
"""


def bench_s3(conn, cluster, registry, rows, repeat):
    """Push with handler S3 of a repository of one snapshot image of `rows` rows to a registry whose objects go to
    an S3 server (moto on loopback), vs the table's COPY (FORMAT binary) uploaded as one object with minio from
    the same engine; the bytes the push put in the bucket vs the table's heap; clone with download_all + checkout
    on another engine (a fresh database of the first cluster) through download URLs vs downloading that object
    and COPY (FORMAT binary) into a table there."""
    from support.s3 import ACCESS_KEY, SECRET_KEY, S3Server  # noqa: E402 - only this part needs boto3 and moto

    push = Measure(f"S3 push ({rows} rows, one image)", 2.0, "COPY binary + one upload")
    size = Measure("bytes in the bucket / heap", 0.35, "heap size", unit=" bytes")
    clone = Measure(f"S3 clone download_all + checkout ({rows})", 2.0, "download + COPY binary in")
    server = S3Server().start()
    try:
        server.create_bucket("sg-bench")
        server.create_bucket("sg-bench-limit")
        registry.create_database("s3hub")
        cluster.create_database("s3consumer")
        hub = driver.connect(registry.dsn("s3hub"), autocommit=True)
        consumer = driver.connect(cluster.dsn("s3consumer"), autocommit=True)
        for c in (hub, consumer):
            run(c, "set client_min_messages = warning")
        run(hub, "select splitgraph.configure_s3(%s, %s, %s, 'sg-bench')", server.endpoint, ACCESS_KEY, SECRET_KEY)
        for c in (conn, consumer):
            run(c, "select splitgraph.add_remote('s3hub', '127.0.0.1', %s, 's3hub', 'postgres', null)", registry.port)
            run(c, S3_LIMITS)
        run(conn, FILL.format(table="public.s3source", rows=rows))
        run(conn, "alter table public.s3source add primary key (id)")
        run(conn, "vacuum analyze public.s3source")
        heap = run(conn, "select pg_relation_size('public.s3source')")[0][0]
        keys = (server.endpoint, ACCESS_KEY, SECRET_KEY, "sg-bench-limit")
        for i in range(repeat):
            repo = "bench/s3"
            run(conn, "select splitgraph.init(%s)", repo)
            run(conn, f'create table "{repo}".t as select * from public.s3source')
            run(conn, f'alter table "{repo}".t add primary key (id)')
            run(conn, f"select splitgraph.commit('{repo}')")
            for c in (hub, consumer):  # nothing of the last round on the receivers, nor in the bucket
                if run(c, "select count(*) from splitgraph_meta.repositories where repository = %s", repo)[0][0]:
                    run(c, "select splitgraph.rm(%s, force => true)", repo)
                run(c, "select splitgraph.cleanup()")
            client = server.client()
            for key in server.keys("sg-bench"):
                client.delete_object(Bucket="sg-bench", Key=key)
            for c in (conn, hub, consumer):
                settle(c)
            elapsed, _ = timed(conn, "select public.copy_upload('public.s3source', %s, %s, %s, %s, 'copy.bin')",
                               *keys)
            push.limit.append(elapsed)
            settle(conn)
            elapsed, _ = timed(conn, "select splitgraph.push(%s, 's3hub', handler => 'S3', "
                                     "handler_options => '{\"threads\": 4}')", repo)
            push.ours.append(elapsed)
            stored = sum(client.head_object(Bucket="sg-bench", Key=k)["ContentLength"] for k in server.keys("sg-bench"))
            size.ours.append(stored)
            size.limit.append(heap)

            run(consumer, "drop table if exists public.s3copy")
            run(consumer, "create table public.s3copy (id int, md5 text, value float8, at timestamptz)")
            settle(consumer)
            start = time.perf_counter()
            run(consumer, "select public.download_copy('public.s3copy', %s, %s, %s, %s, 'copy.bin')", *keys)
            run(consumer, "alter table public.s3copy add primary key (id)")
            clone.limit.append(time.perf_counter() - start)
            run(consumer, "drop table public.s3copy")
            settle(consumer)
            start = time.perf_counter()
            run(consumer, "select splitgraph.clone('s3hub', %s, download_all => true)", repo)
            run(consumer, "select splitgraph.checkout(%s, 'main')", repo)
            clone.ours.append(time.perf_counter() - start)
            got = run(consumer, f'select count(*), sum(id) from "{repo}".t')[0]
            assert got == (rows, rows * (rows + 1) // 2), f"the clone's checkout holds {got}"
            assert not run(hub, "select count(*) from pg_class where relnamespace = 'splitgraph_meta'::regnamespace "
                                "and relname ~ '^o[0-9a-f]{62}$'")[0][0], "the registry stores no rows"
            run(conn, "select splitgraph.rm(%s, force => true)", repo)
            run(conn, "select splitgraph.cleanup()")
            print(f"  round {i + 1}/{repeat}: S3 push {push.ours[-1]:.3f}s / {push.limit[-1]:.3f}s, bucket "
                  f"{size.ours[-1] / 1e6:.1f} MB / heap {heap / 1e6:.1f} MB, clone+checkout {clone.ours[-1]:.3f}s / "
                  f"{clone.limit[-1]:.3f}s", flush=True)
        for c in (conn, consumer):
            run(c, "select splitgraph.delete_remote('s3hub')")
        run(conn, "drop table public.s3source")
        for c in (hub, consumer):
            c.close()
    finally:
        server.stop()
    return [push, size, clone]
SPLITFILE = """FROM bench/source:v1 IMPORT t
SQL CREATE TABLE evens AS SELECT id, md5, value FROM t WHERE id % 2 = 0
SQL UPDATE evens SET value = value * 2 WHERE id % 1000 = 0
FROM bench/source:v1 IMPORT {SELECT id, md5 FROM t WHERE id % 3 = 0} AS thirds
SQL CREATE INDEX evens_md5 ON evens (md5)
"""
IMPORT_QUERY = "SELECT id, md5, value * 2 AS doubled FROM t WHERE id % 2 = 0"


def bench_splitfiles(conn, rows, repeat):
    """A rerun of an unchanged 5-step Splitfile over a source of `rows` rows (pure cache hits: its time per step
    against 0.05 s); an IMPORT {SELECT ...} step vs CREATE TABLE AS of the same query plus a commit of its result."""
    rerun = Measure(f"Splitfile rerun, per step ({rows} rows)", 1.0, "0.05 s per step")
    query = Measure(f"IMPORT {{SELECT}} step ({rows // 2} rows)", 2.0, "CTAS + commit")
    run(conn, "select splitgraph.init('bench/source')")
    run(conn, FILL.format(table='"bench/source".t', rows=rows))
    run(conn, 'alter table "bench/source".t add primary key (id)')
    run(conn, "select splitgraph.tag('bench/source', splitgraph.commit('bench/source'), 'v1')")
    elapsed, (final,) = timed(conn, "select splitgraph.build(%s, 'bench/built')", SPLITFILE)
    print(f"  first build of the 5-step Splitfile: {elapsed:.3f}s", flush=True)
    steps = 5
    for i in range(repeat):
        images = run(conn, "select count(*) from splitgraph_meta.images")[0][0]
        settle(conn)
        elapsed, (again,) = timed(conn, "select splitgraph.build(%s, 'bench/built')", SPLITFILE)
        assert again == final and run(conn, "select count(*) from splitgraph_meta.images")[0][0] == images
        rerun.ours.append(elapsed / steps)
        rerun.limit.append(0.05)

        # physical limit: the query's result copied once, then committed (a fresh repository, new objects)
        run(conn, "select splitgraph.init('bench/ctas')")
        run(conn, 'vacuum analyze "bench/source".t')
        settle(conn)
        start = time.perf_counter()
        run(conn, 'create table "bench/ctas".r as ' + IMPORT_QUERY.replace("FROM t", 'FROM "bench/source".t'))
        run(conn, "select splitgraph.commit('bench/ctas')")
        query.limit.append(time.perf_counter() - start)
        run(conn, "select splitgraph.rm('bench/ctas', force => true)")
        run(conn, "select splitgraph.cleanup()")
        settle(conn)
        elapsed, _ = timed(conn, "select splitgraph.build(%s, 'bench/query')",
                           f"FROM bench/source:v1 IMPORT {{{IMPORT_QUERY}}} AS r")
        query.ours.append(elapsed)
        assert run(conn, 'select count(*) from "bench/query".r')[0][0] == rows // 2
        run(conn, "select splitgraph.rm('bench/query', force => true)")
        run(conn, "select splitgraph.cleanup()")
        print(f"  round {i + 1}/{repeat}: rerun {rerun.ours[-1]:.4f}s per step, import query {query.ours[-1]:.3f}s / "
              f"CTAS + commit {query.limit[-1]:.3f}s", flush=True)
    for repo in ("bench/built", "bench/source"):
        run(conn, "select splitgraph.rm(%s, force => true)", repo)
    run(conn, "select splitgraph.cleanup()")
    return [rerun, query]


def _lookups(conn, relation, keys, prepared):
    """1000 primary-key lookups, one query each: planned each time (ad hoc), or a prepared statement (PREPARE
    once, then EXECUTE, as drivers that prepare do)."""
    start = time.perf_counter()
    with conn.cursor() as cur:
        if prepared:
            cur.execute(f"prepare lookup(int) as select * from {relation} where id = $1")
        for k in keys:
            if prepared:
                cur.execute("execute lookup(%s)", (k,))
            else:
                cur.execute(f"select * from {relation} where id = %s", (k,))
            cur.fetchall()
        if prepared:
            cur.execute("deallocate lookup")
    return time.perf_counter() - start


def _set_read_mode(conn, fragments):
    """fragments: read the chunks and a squash of the deltas whatever their size (no copy)."""
    run(conn, "delete from splitgraph_meta.info where key in ('read_copy_ratio', 'read_copy_min_rows')")
    if fragments:
        run(conn, "insert into splitgraph_meta.info (key, value) values ('read_copy_ratio', '1e12'), "
                  "('read_copy_min_rows', '1e12')")


def _read_set(conn, label, image, table, fragments, rows, repeat, chunk):
    """Mount `image` twice (the first mount builds what reading it needs, the second reuses it) and time reads of
    the mount against the same reads of `table`, its materialized rows: 1000 key lookups (ad hoc, then prepared),
    a key range of one chunk, a full aggregate."""
    _set_read_mode(conn, fragments)
    results, mounted = [], []
    for n, what in enumerate(("first", "again")):
        settle(conn)
        elapsed, (schema,) = timed(conn, "select splitgraph.mount_image('bench/mount', %s, %s)", image, f"m{n}")
        mounted.append(schema)
        print(f"  {label}: mount_image ({what}) {elapsed * 1000:.1f} ms", flush=True)
        m = Measure(f"mount_image ({label}, {what})", 0.05, "50 ms")
        m.ours, m.limit, m.absolute = [elapsed], [1.0], True
        results.append(m)
    view = '"m0".t'
    lookups = Measure(f"1000 key lookups ({label})", 3.0, "the table")
    prepared = Measure(f"1000 prepared key lookups ({label})", 3.0, "the table")
    span = Measure(f"key range of one chunk ({label})", 3.0, "the table")
    total = Measure(f"full aggregate ({label})", 2.0, "the table")
    ranged = f"select count(*), sum(value) from {{}} where id between {chunk[0]} and {chunk[1]}"
    for i in range(repeat):
        keys = [random.randint(1, rows) for _ in range(1000)]
        for relation, side in ((table, "limit"), (view, "ours")):
            getattr(lookups, side).append(_lookups(conn, relation, keys, False))
            getattr(prepared, side).append(_lookups(conn, relation, keys, True))
            getattr(span, side).append(min(timed(conn, ranged.format(relation))[0] for _ in range(5)))
            getattr(total, side).append(timed(conn, f"select count(*), sum(value) from {relation}")[0])
        check = "select count(*), sum(id), round(sum(value)::numeric, 3) from {}"
        assert run(conn, check.format(view)) == run(conn, check.format(table)), \
            "the mounted image differs from its checkout"
        print(f"  {label} round {i + 1}/{repeat}: lookups {lookups.ours[-1]:.3f}s / {lookups.limit[-1]:.3f}s, "
              f"prepared {prepared.ours[-1]:.3f}s / {prepared.limit[-1]:.3f}s, "
              f"range {span.ours[-1] * 1000:.1f} ms / {span.limit[-1] * 1000:.1f} ms, "
              f"aggregate {total.ours[-1] * 1000:.1f} ms / {total.limit[-1] * 1000:.1f} ms", flush=True)
    for schema in mounted:
        run(conn, "select splitgraph.unmount(%s)", schema)
    _set_read_mode(conn, False)
    return results + [lookups, prepared, span, total]


def bench_mount(conn, rows, repeat, deltas=20, changes=10000):
    """mount_image of a snapshot of `rows` rows plus `deltas` delta commits of `changes` updated rows each, read in
    the two ways the engine has (the chunks and a squash of the deltas, forced; a copy, which it chooses for this
    image), and of the image after the first delta (read from the chunks and a squash, the engine's choice),
    against the same reads of their materialized rows.

    The first set's first mount is the first read of the freshly committed objects: nothing is built for reading
    before it (a commit prepares nothing for reads). The second set's first mount prepares the chunks (once per
    object) and squashes its delta. The third set shares those chunks, prepared by then: its "first" mount builds
    only the squash of its deltas (the one the copy was built from is dropped once the copy exists)."""
    fill_and_commit(conn, "bench/mount", rows)
    for n in range(deltas):
        run(conn, f"""update "bench/mount".t t set value = t.value + 1 from (
                          select (random() * ({rows} - 1))::int + 1 as id from generate_series(1, {changes * 2})
                          group by 1 limit {changes}) c where c.id = t.id""")
        image = run(conn, "select splitgraph.commit('bench/mount')")[0][0]
        if n == 0:
            run(conn, "select splitgraph.tag('bench/mount', %s, 'one')", image)
            run(conn, 'create table public.one as select * from "bench/mount".t')
            run(conn, "alter table public.one add primary key (id)")
            run(conn, "vacuum analyze public.one")
    run(conn, "select splitgraph.tag('bench/mount', 'HEAD', 'bench')")
    run(conn, 'vacuum analyze "bench/mount".t')
    chunk = run(conn, """select (o.index -> 'range' -> 'id' ->> 0)::int, (o.index -> 'range' -> 'id' ->> 1)::int
                         from splitgraph_meta.objects o where o.object_id =
                             (splitgraph.table_info('bench/mount', 'bench', 't') -> 'objects') ->> 50""")[0]
    results = []
    for label, image, table, fragments in (
            # in this order, the first mount of each of the first two builds everything it reads
            (f"{deltas} deltas, engine's choice: a copy", "bench", '"bench/mount".t', False),
            ("1 delta, engine's choice: chunks + squash", "one", "public.one", False),
            (f"{deltas} deltas, chunks + squash forced", "bench", '"bench/mount".t', True)):
        results += _read_set(conn, label, image, table, fragments, rows, repeat, chunk)
    run(conn, "drop table public.one")
    run(conn, "select splitgraph.rm('bench/mount', force => true)")
    run(conn, "select splitgraph.cleanup()")
    return results


# the parts of the benchmark, in the order they run (--only picks some)
PARTS = ["snapshot", "tracking", "delta", "merge", "remote", "s3", "splitfiles", "mount", "client", "nearby",
         "onerow"]


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--keep", action="store_true", help="keep the benchmark cluster's folder")
    parser.add_argument("--only", choices=PARTS + ["memory", "trackfloor", "nearbyfloor", "snapfloor"], action="append",
                        help="run only these parts (default: all)")
    args = parser.parse_args()

    base = tempfile.mkdtemp(prefix="sg-bench-")
    pathlib.Path(base).chmod(0o755)
    from conftest import free_port  # noqa: E402 - the same port picker as the tests

    settings = {"shared_buffers": "'512MB'", "max_wal_size": "'4GB'"}
    cluster = Cluster(base, free_port(), settings=settings).start()
    parts = args.only or PARTS
    registry = None
    if "remote" in parts or "s3" in parts:  # a second engine, to push to and clone from
        second = tempfile.mkdtemp(prefix="sg-bench-registry-")
        pathlib.Path(second).chmod(0o755)
        registry = Cluster(second, free_port(), settings=settings).start()
    try:
        cluster.create_database("bench")
        with driver.connect(cluster.dsn("bench"), autocommit=True) as conn:
            run(conn, "set client_min_messages = warning")
            print(f"benchmark: {args.rows} rows, {args.repeat} rounds, cluster in {base}", flush=True)
            results = []
            if "snapshot" in parts:
                results += bench_commit_checkout(conn, args.rows, args.repeat)
            if "snapfloor" in parts:  # not in PARTS: for information
                results += bench_snapshot_floor(conn, args.rows, args.repeat)
            if "tracking" in parts:
                results += bench_tracked_writes(conn, args.repeat)
            if "trackfloor" in parts:  # not in PARTS: for information, run it with --only trackfloor
                results += bench_tracking_floor(conn, args.repeat)
            if "delta" in parts:
                results += bench_delta_commit(conn, args.repeat)
            if "merge" in parts:
                results += bench_merge(conn, args.repeat)
            if "client" in parts:
                results += bench_client(cluster, args.repeat)
            if "remote" in parts:
                results += bench_remote(conn, cluster, registry, args.rows, args.repeat)
            if "s3" in parts:
                results += bench_s3(conn, cluster, registry, args.rows, args.repeat)
            if "splitfiles" in parts:
                results += bench_splitfiles(conn, args.rows, args.repeat)
            if "mount" in parts:
                results += bench_mount(conn, args.rows, args.repeat)
            if "nearby" in parts:
                results += bench_nearby_checkout(conn, args.repeat)
            if "nearbyfloor" in parts:  # not in PARTS: for information
                results += bench_nearby_floor(conn, args.repeat)
            if "onerow" in parts:
                results += bench_onerow_commit(conn, max(args.repeat, 5))
            if "memory" in parts:  # not in PARTS: run it with --only memory --rows 10000000
                results += bench_commit_memory(conn, cluster.dsn("bench"), args.rows)
        print()
        for m in results:
            print(m.line())
        out = ROOT / "bench-results"
        out.mkdir(exist_ok=True)
        stamp = time.strftime("%Y%m%d-%H%M%S")
        (out / f"bench-{stamp}.json").write_text(json.dumps({m.name: m.as_dict() for m in results}, indent=2))
        print(f"\nresults written to bench-results/bench-{stamp}.json")
    finally:
        for c in (cluster, registry):
            if c is None:
                continue
            if args.keep:
                c.stop()
            else:
                c.destroy()


if __name__ == "__main__":
    main()
