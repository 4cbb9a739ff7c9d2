#!/usr/bin/env python3
"""An independent measurement of the delta commit, written as a user would time it (issue 17): a fresh cluster
with PostgreSQL's default settings, fresh tables for every run, the same 10k changed rows spread over the table
(every (rows / 10k)-th key), `commit` timed from the client, median of N runs; no checkpoint or VACUUM between the
steps. Prints t(1M), t(100k) and their ratio; with --big, also a commit of one changed row in a 10M-row table.

    bench_delta_client.py [--repeat 5] [--changes 10000] [--big] [--explain]
"""
import argparse
import pathlib
import statistics
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).parent))
from support import driver  # noqa: E402
from support.cluster import Cluster  # noqa: E402

FILL = """create table "bench/client".t as
          select i as id, md5(i::text) as md5, random() as value,
                 timestamptz '2020-01-01' + i * interval '1 second' as at
          from generate_series(1, {rows}) i"""


def run(conn, query, *args):
    with conn.cursor() as cur:
        cur.execute(query, args or None)
        return cur.fetchall() if cur.description else None


def slowest(log, start, count=6):
    """The slowest statements auto_explain logged from line `start` of the server log: (ms, first lines)."""
    lines = log.read_text(errors="replace").splitlines()[start:]
    found = []
    for i, line in enumerate(lines):
        if "duration:" in line and "plan:" in line:
            ms = float(line.split("duration:")[1].split("ms")[0])
            plan = []
            for x in lines[i + 1:]:
                if " LOG: " in x or " CONTEXT: " in x:
                    break
                if "cost=" in x:
                    plan.append(x.rstrip()[:160])
            body = [lines[i + 1].strip()[:150]] + plan[:14]
            found.append((ms, body))
    return sorted(found, key=lambda f: -f[0])[1:count + 1]  # the first is the commit itself


def one_commit(conn, rows, changes, explain=False, warm=False):
    """A fresh repository and table of `rows` rows, committed; `changes` rows updated; the delta commit timed."""
    run(conn, "select splitgraph.init('bench/client')")
    run(conn, FILL.format(rows=rows))
    run(conn, 'alter table "bench/client".t add primary key (id)')
    run(conn, "select splitgraph.commit('bench/client')")
    step = max(rows // changes, 1)
    run(conn, f'update "bench/client".t set value = value + 1 where id % {step} = 0')
    if warm:  # as make bench's limit does at 1M rows: read the changed rows just before the commit
        run(conn, f'create table public.warm as select * from "bench/client".t where id % {step} = 0; '
                  "drop table public.warm")
    if explain:
        run(conn, "load 'auto_explain'")
        run(conn, "set auto_explain.log_min_duration = 5")
        run(conn, "set auto_explain.log_nested_statements = on")
        run(conn, "set auto_explain.log_analyze = on")
    start = time.perf_counter()
    run(conn, "select splitgraph.commit('bench/client')")
    elapsed = time.perf_counter() - start
    if explain:
        run(conn, "reset auto_explain.log_min_duration")
    run(conn, "select splitgraph.rm('bench/client', force => true)")
    run(conn, "select splitgraph.cleanup()")
    return elapsed


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--changes", type=int, default=10000)
    parser.add_argument("--big", action="store_true", help="also one changed row in a 10M-row table")
    parser.add_argument("--big-only", action="store_true", help="only the 10M-row table")
    parser.add_argument("--warm", action="store_true", help="read the changed rows just before each commit")
    parser.add_argument("--warm-1m", action="store_true",
                        help="read them only before the commits at 1M rows (as make bench's limit does)")
    parser.add_argument("--setting", action="append", default=[], help="name=value for the cluster")
    parser.add_argument("--explain", action="store_true", help="print the slowest statements of one more commit")
    args = parser.parse_args()
    base = tempfile.mkdtemp(prefix="sg-client-")
    pathlib.Path(base).chmod(0o755)
    from conftest import free_port  # noqa: E402

    settings = dict(s.split("=", 1) for s in args.setting)
    cluster = Cluster(base, free_port(), settings=settings).start()
    try:
        cluster.create_database("bench")
        with driver.connect(cluster.dsn("bench"), autocommit=True) as conn:
            run(conn, "set client_min_messages = warning")
            times = {}
            for rows in () if args.big_only else (100_000, 1_000_000):
                warm = args.warm or (args.warm_1m and rows == 1_000_000)
                times[rows] = [one_commit(conn, rows, args.changes, warm=warm) for _ in range(args.repeat)]
                print(f"{rows:>9} rows: " + " ".join(f"{t:.3f}" for t in times[rows])
                      + f"  median {statistics.median(times[rows]):.3f}s", flush=True)
                if args.explain:
                    log = cluster.dir / "server.log"
                    start = len(log.read_text(errors="replace").splitlines())
                    one_commit(conn, rows, args.changes, explain=True)
                    for ms, body in slowest(log, start):
                        print(f"    {ms:8.1f} ms  " + "\n                 ".join(body))
            if times:
                ratio = statistics.median(times[1_000_000]) / statistics.median(times[100_000])
                print(f"delta commit of {args.changes} rows, t(1M)/t(100k) = {ratio:.2f}", flush=True)
            if args.big or args.big_only:
                big = [one_commit(conn, 10_000_000, 1) for _ in range(min(args.repeat, 3))]
                print("one changed row in 10M rows: " + " ".join(f"{t * 1000:.0f}" for t in big)
                      + f"  median {statistics.median(big) * 1000:.0f} ms", flush=True)
    finally:
        cluster.destroy()


if __name__ == "__main__":
    main()
