"""Calling the engine: one SQL statement, its rows, its NOTICEs as progress, its errors as the engine wrote them.

A long call (commit, checkout, clone, push, pull, build) runs on an asynchronous connection, so that the NOTICEs
the engine sends while it works ("splitgraph: committed table "t" (2/5): ...") arrive as they are sent and feed a
progress bar; a short one runs on an ordinary connection.
"""
import re
import select
import sys

from . import config

# "(2/5)" or "2/5 " in a splitgraph NOTICE: done and total, for a progress bar
_COUNT = re.compile(r"\((\d+)/(\d+)\)|\b(\d+)/(\d+)\b")
_PREFIX = re.compile(r"^(NOTICE|WARNING|INFO):\s+(splitgraph: )?")


class EngineError(Exception):
    """An error the engine raised: its message, detail, hint and SQLSTATE, as it wrote them."""

    def __init__(self, message, detail=None, hint=None, sqlstate=None):
        super().__init__(message)
        self.message, self.detail, self.hint, self.sqlstate = message, detail, hint, sqlstate

    def __str__(self):
        lines = [f"error: {self.message}"]
        if self.detail:
            lines.append(f"detail: {self.detail}")
        if self.hint:
            lines.append(f"hint: {self.hint}")
        if self.sqlstate:
            lines.append(f"(SQLSTATE {self.sqlstate})")
        return "\n".join(lines)

    @classmethod
    def from_psycopg(cls, error):
        diag = getattr(error, "diag", None)
        message = (getattr(diag, "message_primary", None) or str(error)).strip()
        return cls(message, getattr(diag, "message_detail", None), getattr(diag, "message_hint", None),
                   getattr(error, "pgcode", None))


class Progress:
    """A progress bar (tqdm, on stderr) fed by the engine's NOTICEs; other NOTICEs are printed as they come."""

    def __init__(self, label, quiet=False):
        self.label, self.quiet, self.bar = label, quiet, None

    def notice(self, text):
        message = _PREFIX.sub("", text.strip())
        count = _COUNT.search(message)
        if count is None:
            if not self.quiet:
                self._write(message)
            return
        done, total = (int(g) for g in (count.group(1, 2) if count.group(1) else count.group(3, 4)))
        if self.quiet:
            return
        if self.bar is None:
            from tqdm import tqdm

            self.bar = tqdm(total=total, file=sys.stderr, leave=True, bar_format="{desc} |{bar:20}| {n}/{total}")
        self.bar.total = total
        self.bar.n = done
        self.bar.set_description_str(f"{self.label}: {message[:70]}", refresh=True)

    def _write(self, message):
        if self.bar is not None:
            self.bar.write(message, file=sys.stderr)
        else:
            print(message, file=sys.stderr)

    def close(self):
        if self.bar is not None:
            self.bar.close()


def _wait(conn):
    import psycopg2.extensions as ext

    while True:
        state = conn.poll()
        if state == ext.POLL_OK:
            return
        if state == ext.POLL_READ:
            select.select([conn.fileno()], [], [])
        elif state == ext.POLL_WRITE:
            select.select([], [conn.fileno()], [])


def run(query, params=(), progress=None, conn=None):
    """Run one statement; returns (column names, rows). progress: a Progress fed by the NOTICEs while the
    statement runs. Raises EngineError for what the engine refused."""
    import psycopg2

    try:
        if progress is None:
            own = conn is None
            conn = conn or config.connect()
            try:
                with conn.cursor() as cur:
                    cur.execute(query, params)
                    result = (([c.name for c in cur.description], cur.fetchall()) if cur.description
                              else ([], []))
                for notice in conn.notices:
                    Progress("", quiet=False).notice(notice)
                del conn.notices[:]
                return result
            finally:
                if own:
                    conn.close()
        conn = psycopg2.connect(**config.engine_settings(), async_=1)
        try:
            _wait(conn)
            cur = conn.cursor()
            cur.execute(query, params)
            import psycopg2.extensions as ext

            while True:
                state = conn.poll()
                for notice in conn.notices:
                    progress.notice(notice)
                del conn.notices[:]
                if state == ext.POLL_OK:
                    break
                if state == ext.POLL_READ:
                    select.select([conn.fileno()], [], [], 0.2)
                elif state == ext.POLL_WRITE:
                    select.select([], [conn.fileno()], [], 0.2)
            return (([c.name for c in cur.description], cur.fetchall()) if cur.description else ([], []))
        finally:
            progress.close()
            conn.close()
    except psycopg2.Error as error:
        raise EngineError.from_psycopg(error) from None
