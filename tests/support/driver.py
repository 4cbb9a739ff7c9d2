"""The tests' one driver, psycopg2 (the project's driver: the client uses it too), with the few conveniences the
tests lean on: connections that close when their `with` block ends, a transaction block, notice handlers, the
backend's pid, and bytea read as bytes."""
import contextlib

import psycopg2
import psycopg2.extensions
import psycopg2.extras

Error = psycopg2.Error
OperationalError = psycopg2.OperationalError
Jsonb = psycopg2.extras.Json

# bytea as bytes (psycopg2's default is a memoryview)
_BYTEA = psycopg2.extensions.new_type(
    psycopg2.BINARY.values, "BYTEA_AS_BYTES",
    lambda value, cursor: None if value is None else bytes(psycopg2.BINARY(value, cursor)))
psycopg2.extensions.register_type(_BYTEA)
# uuid as uuid.UUID
psycopg2.extras.register_uuid()


class Rollback(Exception):
    """Raised inside Connection.transaction() to roll the block back quietly."""


class Notice:
    """A NOTICE or WARNING as psycopg2 receives it (libpq's text: "SEVERITY:  message", then DETAIL:, HINT:,
    CONTEXT: lines), split into the fields the tests read."""

    def __init__(self, text):
        fields, key = {}, None
        for line in text.rstrip("\n").split("\n"):
            head, sep, rest = line.partition(":  ")
            if sep and head in ("DETAIL", "HINT", "CONTEXT", "LOCATION", "QUERY") and key is not None:
                key = head
                fields[key] = rest
            elif key is None and sep:
                key = "PRIMARY"
                self.severity = self.severity_nonlocalized = head
                fields[key] = rest
            elif key is not None:
                fields[key] += "\n" + line
        self.message_primary = fields.get("PRIMARY", text.strip())
        self.message_detail, self.message_hint = fields.get("DETAIL"), fields.get("HINT")
        self.context = fields.get("CONTEXT")
        self.pgcode = None  # libpq's default verbosity leaves it out of the text


class _Notices(list):
    def __init__(self, handlers):
        super().__init__()
        self.handlers = handlers

    def append(self, text):
        super().append(text)
        for handler in self.handlers:
            handler(Notice(text))


class Info:
    def __init__(self, conn):
        self.backend_pid, self.dsn = conn.get_backend_pid(), conn.dsn


class Connection(psycopg2.extensions.connection):
    """A psycopg2 connection that closes when its `with` block ends (as the tests expect)."""

    def __enter__(self):
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def execute(self, query, params=None):
        """Run a statement on a new cursor and return the cursor (as psycopg 3's connection.execute does)."""
        cur = self.cursor()
        cur.execute(query, params)
        return cur

    @property
    def info(self):
        return Info(self)

    def add_notice_handler(self, handler):
        if not isinstance(self.notices, _Notices):
            self.notices = _Notices([])
        self.notices.handlers.append(handler)

    @contextlib.contextmanager
    def transaction(self):
        """BEGIN ... COMMIT on an autocommit connection (ROLLBACK on an error, or quietly on Rollback)."""
        with self.cursor() as cur:
            cur.execute("begin")
        try:
            yield self
        except Rollback:
            with self.cursor() as cur:
                cur.execute("rollback")
            return
        except BaseException:
            if not self.closed:
                with self.cursor() as cur:
                    cur.execute("rollback")
            raise
        with self.cursor() as cur:
            cur.execute("commit")


def connect(dsn, autocommit=False, **kwargs):
    conn = psycopg2.connect(dsn, connection_factory=Connection, **kwargs)
    conn.autocommit = autocommit
    return conn
