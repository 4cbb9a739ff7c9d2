"""A second session of this engine, logged in as the caller, that hashes a table's rows for a snapshot commit
while the commit's own session copies them into object tables.

A snapshot commit does two things with every row that one session can only do one after the other: copy it
into an object table (which no parallel worker can help with), and hash its text (which parallel workers do).
A commit asks a second session of the same engine (through contrib's dblink library, declared in
sql/20_internal/07_second_session.sql under names only the extension's owner may call) to run the hashing query
meanwhile, and takes the sums it returns; the object ids are those the commit would compute itself.

Rights. The second session logs in as the caller (the commit's session_user), with no password: it exists only
where the server lets the caller in that way (trust, or peer for the server's own operating system user), and
otherwise the commit hashes in its own session. It is a session of the caller's, so it can do nothing the caller
could not do in a session of their own; it never runs as anyone else, and no other role's session is involved.
It runs only statements this package writes (names quoted, values quoted as literals), and reads only the table
the commit reads (which the caller may read: tables.source checked it). It locks nothing but that table, ACCESS
SHARE and without waiting, and holds no advisory lock. Its connection string names this server (its first
socket directory, or else its first listen address), port, database and the caller, and nothing else: no
credential is stored, passed or printed, and a failure to connect is reported without the connection string.

Consistency. The commit holds SHARE locks on the tables it stores before a second session starts, runs READ
COMMITTED (commit requires it), and uses a second session only when its transaction had written nothing before
the commit began: no writer can commit to those tables while it runs, and the commit's own transaction has no
uncommitted change to them, so the second session's snapshot sees exactly the rows the commit's statements see.
The sums are checked against the commit's own count of each chunk's rows before they are used.

Ending. The commit closes the session however it ends (on an error, the query in flight is cancelled and the
connection closed). It is read only: nothing of it outlives it.

Turn it off with `set splitgraph.second_session = off` (per session, role or database).
"""
from . import db
from .names import literal

SETTING = "splitgraph.second_session"
APPLICATION = "splitgraph commit: second session"
# The settings a row's text form depends on (the doors pin them), and those that decide how the hashing query
# runs: the second session takes this session's values, whatever the caller's role sets at login.
COPIED_SETTINGS = ("timezone", "datestyle", "intervalstyle", "extra_float_digits", "bytea_output", "lc_monetary",
                   "max_parallel_workers_per_gather")
# Fixed settings of the second session: no timeout of the caller's cuts it short, no lock is waited for (a lock
# queued behind another request would make the commit wait for ever), it reads only, and it ends soon after the
# commit's process does.
FIXED_SETTINGS = (("search_path", "pg_catalog, pg_temp"), ("statement_timeout", "0"), ("lock_timeout", "1s"),
                  ("idle_in_transaction_session_timeout", "0"), ("idle_session_timeout", "0"),
                  ("client_connection_check_interval", "250ms"), ("standard_conforming_strings", "on"),
                  ("default_transaction_read_only", "on"),
                  # hashing is CPU-bound: every core takes part (fragments.PARALLEL)
                  ("parallel_setup_cost", "0"), ("parallel_tuple_cost", "0"), ("min_parallel_table_scan_size", "0"))
CANCELED = "57014"
OFF = ("off", "false", "0", "no")


def _conninfo_value(value):
    return "'" + value.replace("\\", "\\\\").replace("'", "\\'") + "'"


class SecondSession:
    """A second session for one commit (for_commit), opened when first used (open) and closed by close(). It runs
    one query at a time: send() starts it, wait() returns its rows. Any failure ends the session: `failure` says
    why, and the commit does the work itself."""

    def __init__(self, caller):
        self.caller = caller
        self.name = None
        self.failure = None
        self.columns = None

    @classmethod
    def for_commit(cls, plpy):
        """A SecondSession for the commit starting now, or None when it may not have one: turned off, dblink's
        library missing, the owner not a superuser (only a superuser may connect without a password), or the
        transaction has written something already (the second session could not see it). Call it before the
        commit writes anything."""
        row = db.one(plpy, f"""
            select pg_catalog.pg_current_xact_id_if_assigned() is null as clean,
                   coalesce(pg_catalog.current_setting({literal(SETTING)}, true), '') as setting,
                   coalesce((select r.rolsuper from pg_catalog.pg_roles r where r.rolname = current_user), false)
                       as owner_is_superuser,
                   pg_catalog.to_regprocedure('splitgraph_internal.second_connect(text, text)') is not null
                       as available,
                   pg_catalog.current_setting('transaction_isolation') = 'read committed' as read_committed,
                   session_user::text as caller""")
        if (row["setting"].strip().lower() in OFF or not row["clean"] or not row["owner_is_superuser"]
                or not row["available"] or not row["read_committed"]):
            return None
        return cls(row["caller"])

    @property
    def usable(self):
        return self.failure is None

    def stop(self, plpy, reason):
        """End the session for good (the commit does the rest of the work itself), saying why."""
        self.failure = reason
        db.notice(plpy, f"the second session stopped ({reason}); this session hashes the rows itself")
        self.close(plpy)

    def _call(self, plpy, query, *args):
        """db.run for the second session; a cancel of this session's statement is raised again (never taken for a
        failure of the second session), any other error ends the second session and returns None."""
        try:
            return db.run(plpy, query, *args)
        except plpy.SPIError as error:
            if getattr(error, "sqlstate", None) == CANCELED:
                raise
            self.stop(plpy, f"{getattr(error, 'sqlstate', None) or 'error'}: {str(error).splitlines()[0][:200]}")
            return None

    def _conninfo(self, plpy):
        row = db.one(plpy, """
            select pg_catalog.current_setting('unix_socket_directories') as sockets,
                   pg_catalog.current_setting('listen_addresses') as listen,
                   pg_catalog.current_setting('port') as port, pg_catalog.current_database()::text as db""")
        sockets = [s.strip() for s in row["sockets"].split(",") if s.strip()]
        listen = [s.strip() for s in row["listen"].split(",") if s.strip()]
        if sockets:
            host = sockets[0]
        elif listen:
            host = {"*": "localhost", "0.0.0.0": "127.0.0.1", "::": "::1"}.get(listen[0], listen[0])
        else:
            return None
        parts = {"host": host, "port": row["port"], "dbname": row["db"], "user": self.caller,
                 "application_name": APPLICATION, "connect_timeout": "10", "gssencmode": "disable"}
        # dblink reads a string that is a foreign server's name as that server: no name has more than 63 bytes
        return " ".join(f"{k}={_conninfo_value(v)}" for k, v in parts.items()).ljust(80)

    def open(self, plpy):
        """Connect and set the second session up; False (and the reason in `failure`) when it cannot be had."""
        if self.name is not None or not self.usable:
            return self.usable
        conninfo = self._conninfo(plpy)
        if conninfo is None:
            self.stop(plpy, "the server listens on no socket or address")
            return False
        name = db.temp_name("sg_second")
        try:
            db.run(plpy, "select splitgraph_internal.second_connect($1, $2)", name, conninfo)
        except plpy.SPIError as error:
            if getattr(error, "sqlstate", None) == CANCELED:
                raise
            # the reason may name the server's address: say only that it failed
            self.stop(plpy, "it could not connect as the caller without a password")
            return False
        self.name = name
        values = db.run(plpy, "select u.n as name, pg_catalog.current_setting(u.n) as value "
                              "from pg_catalog.unnest($1::text[]) with ordinality u (n, i) order by u.i",
                        list(COPIED_SETTINGS))
        settings = list(FIXED_SETTINGS) + [(r["name"], r["value"]) for r in values]
        setup = "; ".join([f"set {n} = {literal(v)}" for n, v in settings]
                          + ["begin isolation level repeatable read read only"])
        if self._call(plpy, "select splitgraph_internal.second_exec($1, $2)", self.name, setup) is None:
            return False
        if not self.send(plpy, "select session_user::text as s, current_user::text as c", "s text, c text"):
            return False
        who = self.wait(plpy)
        if who is None:
            return False
        if [(r["s"], r["c"]) for r in who] != [(self.caller, self.caller)]:
            self.stop(plpy, "it does not run as the caller")
            return False
        return True

    def send(self, plpy, query, columns, lock=None):
        """Start `query` there (`columns`: its column definition list, "g int, n bigint, ..."), after taking
        ACCESS SHARE on `lock` (a FROM item of tables.source) without waiting; False when it failed."""
        if not self.open(plpy):
            return False
        if lock is not None and self._call(plpy, "select splitgraph_internal.second_exec($1, $2)", self.name,
                                           f"lock table {lock} in access share mode nowait") is None:
            return False
        if self._call(plpy, "select splitgraph_internal.second_send($1, $2)", self.name, query) is None:
            return False
        self.columns = columns
        return True

    def wait(self, plpy):
        """The rows of the query in flight once it is done (sleeping a moment, interruptibly, while it runs), or
        None when it failed (the session has ended)."""
        while self.usable:
            busy = self._call(plpy, "select splitgraph_internal.second_busy($1) as busy", self.name)
            if busy is None or busy[0]["busy"] != 1:
                break
            db.run(plpy, "select pg_catalog.pg_sleep(0.002)")
        if not self.usable:
            return None
        columns, self.columns = self.columns, None
        rows = self._call(plpy, f"select * from splitgraph_internal.second_result($1) as r ({columns})", self.name)
        # a second call returns no rows and readies the connection for the next query
        if rows is None or self._call(plpy, "select from splitgraph_internal.second_result($1) as r (x text)",
                                      self.name) is None:
            return None
        return rows

    def close(self, plpy):
        """Cancel the query in flight and disconnect; never raises (it also runs while an error unwinds)."""
        name, self.name = self.name, None
        self.columns = None
        if name is None:
            return
        for query in ("select splitgraph_internal.second_cancel($1)",
                      "select splitgraph_internal.second_disconnect($1)"):
            try:
                db.run(plpy, query, name)
            except plpy.SPIError:
                pass

