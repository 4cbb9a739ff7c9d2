"""Helpers of the integrity tests (issue 9): what a table holds, what an image gives back when checked out, roles,
notices and waiting for a blocked session. Every connection these helpers open has a statement_timeout, so that a
test waiting on a lock fails instead of hanging."""
import time
from concurrent.futures import ThreadPoolExecutor

from support import driver  # noqa: E402
from support.queries import sql as run
from support.queries import value as one

ZERO = "0" * 64
TIMEOUT = "20s"


def connect(cluster, dbname, user="postgres", autocommit=True, timeout=TIMEOUT):
    c = driver.connect(cluster.dsn(dbname, user=user), autocommit=autocommit)
    c.execute("set client_min_messages = warning")
    c.execute(f"set statement_timeout = '{timeout}'")
    if not autocommit:
        c.commit()
    return c






def ensure_roles(cluster, *roles):
    for role in roles:
        cluster.psql(f"""do $$ begin
                           if not exists (select from pg_roles where rolname = '{role}') then
                             create role {role} login nosuperuser nocreatedb nocreaterole;
                           end if;
                         end $$""")


def qualified(schema, table):
    return '"' + schema.replace('"', '""') + '"."' + table.replace('"', '""') + '"'


def rows(conn, schema, table, only=False):
    """The rows of a table as sorted texts (ONLY: without the rows of inheritance children)."""
    return [r[0] for r in run(conn, f"select t::text collate \"C\" as r from {'only ' if only else ''}"
                                    f"{qualified(schema, table)} t order by r")]


def changed(conn, repo):
    """The tables splitgraph.status() lists as changed."""
    return sorted(r[0] for r in run(conn, "select table_name from splitgraph.status(%s)", repo))


def checkout_rows(conn, repo, image, tables):
    """{table: rows} of an image, as a fresh checkout of it gives them back."""
    run(conn, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
    return {t: rows(conn, repo, t) for t in tables}


def commit_is_exact(conn, repo, tables, only=False):
    """Record the tables, commit, check the image out again: returns (image, recorded, given back)."""
    recorded = {t: rows(conn, repo, t, only) for t in tables}
    image = one(conn, "select splitgraph.commit(%s)", repo)
    return image, recorded, checkout_rows(conn, repo, image, tables)


class Notices:
    """Collects the notices a connection receives."""

    def __init__(self, conn):
        self.messages = []
        conn.add_notice_handler(lambda d: self.messages.append(d.message_primary or ""))

    def clear(self):
        self.messages.clear()


def in_background(conn, query, *args):
    pool = ThreadPoolExecutor(max_workers=1)
    future = pool.submit(run, conn, query, *args)
    pool.shutdown(wait=False)
    return future


def wait_blocked_or_done(observer, pid, future, timeout=10.0):
    """Wait until backend `pid` waits on a lock (True) or its call has finished (False); fail after `timeout`."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if future.done():
            return False
        row = run(observer, "select wait_event_type from pg_stat_activity where pid = %s", pid)
        if row and row[0][0] == "Lock":
            return True
        time.sleep(0.02)
    raise AssertionError(f"backend {pid} neither finished nor waited on a lock within {timeout} s")
