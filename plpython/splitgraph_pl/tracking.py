"""Change tracking: the machinery that logs every change to a table (its net changes are computed in changes.py,
the pending-change API is pending.py).

Statement-level triggers (sql/20_internal/03_tracking.sql) run, for each statement, the statements written here
when tracking began (`logging`), which append to the table's audit table: the old values of updated and deleted
rows (OLD), the new values of updated rows (NEW), and the keys written by inserts (KEY, or KEYS: one array per
statement). A key's first record tells its state when tracking began: OLD means the row existed with those values,
anything else that it did not. Its last record tells its state now: NEW gives its values, OLD says it is gone, and
a key with any KEY record is read from the live table. Joining that with the live table by key gives the net change
per key, so that inserting then deleting a row, updating a row back to its values, or deleting and re-inserting an
identical row are no change at all.

Only a key's first record needs its old values, and a key that did not exist when tracking began has a KEY record
first (it was inserted). So for a table with a primary key of built-in types, the log (re)starts with the lowest
and highest key of the table (LOW and HIGH): a key outside that range did not exist then, so the live table alone
tells its net change (its row is new if it is there), and nothing is logged for it: an insert of new keys beyond
the highest (the usual append), or an update or delete of such rows, logs only a MARK record (one per statement,
no row: something was written). The reader of a log (log_rows) gives every live row outside the range a KEY record
of its own, first of its key. Rows of keys that existed are logged whole, old and new, so that a commit reads only
the log for them, never the table's pages. A writer whose snapshot is older than the log's (it cannot see the
sentinel) logs every row.

Audit tables are UNLOGGED: logging a change writes no WAL. A crash empties them, so each holds a sentinel row
(kind 2) from the moment tracking starts: a log without its sentinel was lost, and its table is committed as a
snapshot (state "lost") instead of trusting an empty log.

A log is trusted only while nothing could have bypassed it. The triggers are enabled ALWAYS (they fire under
session_replication_role = replica too), and whenever a log is read (schema_tracking) the table and its triggers
are compared with the fingerprint taken when tracking began: a trigger dropped, replaced, disabled or made again,
columns changed unseen, or a table that gained inheritance relatives makes the log "untrusted". Some tables are
tracked by comparison from the start ("compared"): partitioned tables (a write straight into a partition fires no
trigger of the parent), inheritance parents and children (a write through a parent changes its children's rows,
which its transition tables hold), and tables too wide for a Delta. An untrusted or compared table's changes are
found by comparing it with HEAD, and its next commit stores it as a snapshot: a write may be slower to find, but
is never lost.
"""
import json

from . import db, errors, names
from . import tables as tbl
from .names import ident, literal

AUDIT = "splitgraph_audit"
RESERVED = ("sg_audit_stmt", "sg_audit_kind", "sg_audit_keys")
# Kinds of audit records (sg_audit_kind): see the module's docstring.
OLD, KEY, SENTINEL, NEW, LOW, HIGH, KEYS, MARK = 0, 1, 2, 3, 4, 5, 6, 7
LOGGED = (OLD, KEY, NEW, KEYS, MARK)
# While a checkout changes a table in place (state "patching"), a statement that writes it logs only this record:
# the checkout then tells whether any statement but its own wrote (checkout.checkout_patched).
WROTE = 8
TRIGGERS = (
    ("sg_track_insert", "after insert", "referencing new table as sg_new", "on_change"),
    ("sg_track_update", "after update", "referencing old table as sg_old new table as sg_new", "on_change"),
    ("sg_track_delete", "after delete", "referencing old table as sg_old", "on_change"),
    ("sg_track_truncate", "before truncate", "", "on_change"),
)
TRIGGER_NAMES = tuple(name for name, *_ in TRIGGERS)
# A Delta (changes.py) holds every column twice, beside four of its own, and a table has at most 1600 columns:
# wider tables are tracked by comparison.
MAX_LOGGED_COLUMNS = (1600 - 4) // 2

# The type of each column of a table (in attnum order) with its modifier (character(5) stays character(5)); a
# domain's, down to the base type, with the modifier the domain gives it. Also whether that type is built in,
# whether it has an array type (and is no array itself), and the column's collation (qualified), if any.
_STORAGE_TYPES = """
with recursive base (n, oid, typmod, depth, collid) as (
    select a.attnum::int, a.atttypid, a.atttypmod, 0, a.attcollation
    from pg_catalog.pg_attribute a
    where a.attrelid = pg_catalog.to_regclass($1) and a.attnum > 0 and not a.attisdropped
    union all
    select b.n, t.typbasetype, t.typtypmod, b.depth + 1, b.collid
    from base b join pg_catalog.pg_type t on t.oid = b.oid
    where t.typtype = 'd'
)
select distinct on (b.n) pg_catalog.format_type(b.oid, nullif(b.typmod, -1)) as type,
       t.typnamespace = 'pg_catalog'::pg_catalog.regnamespace as built_in,
       t.typarray <> 0 and not (t.typelem <> 0
                                and t.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc)
           as arrayable,
       (select pg_catalog.format('%I.%I', cn.nspname, co.collname) from pg_catalog.pg_collation co
        join pg_catalog.pg_namespace cn on cn.oid = co.collnamespace where co.oid = b.collid) as collation_name
from base b join pg_catalog.pg_type t on t.oid = b.oid
order by b.n, b.depth desc"""


def registry(plpy, schema, table):
    """The tracking row of a live table (matched by oid, so a table dropped and made again is untracked), its log
    verified (schema_tracking)."""
    return schema_tracking(plpy, schema).get(table)


def _storage_types(plpy, target):
    """The types of the audit columns of a table (target: its qualified name), as rows of _STORAGE_TYPES: domains
    become their base types, so that logging a change never runs a domain's checks (which could be a table owner's
    own code) with the extension's rights; every type keeps its modifier, so that no logged value is cut or
    refused."""
    return list(db.run(plpy, _STORAGE_TYPES, target))


def _read_committed(plpy):
    return db.scalar(plpy, "select pg_catalog.current_setting('transaction_isolation')") == "read committed"


def require_read_committed(plpy, call):
    """Calls that consume or rewrite a change log read it as of now: a REPEATABLE READ or SERIALIZABLE snapshot
    would miss the writes committed since it was taken, and consume their log records unseen."""
    level = db.scalar(plpy, "select pg_catalog.current_setting('transaction_isolation')")
    if level != "read committed":
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED,
                    f"{call} needs a READ COMMITTED transaction, not {level.upper()}: its snapshot would miss "
                    "writes committed since, whose logged changes the call would consume",
                    hint=f"run {call} in a READ COMMITTED transaction (the default), e.g. on its own")


def comparison_reason(plpy, schema, table, column_count):
    """Why a table's changes cannot be logged row by row (it is then tracked by comparison with HEAD), or None."""
    row = db.one(plpy, """
        select c.relkind::text as kind, c.relispartition as partition,
               exists (select from pg_catalog.pg_inherits h where h.inhparent = c.oid) as parent,
               exists (select from pg_catalog.pg_inherits h where h.inhrelid = c.oid) as child
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname = $1 and c.relname = $2""", schema, table)
    if row["kind"] == "p":
        return "it is partitioned (a write straight into a partition fires no trigger of the parent)"
    if row["partition"]:
        return "it is a partition (a write through its parent fires none of its triggers)"
    if row["parent"]:
        return "it has inheritance children (a write through it changes their rows too)"
    if row["child"]:
        return "it inherits from another table (a write through the parent changes its rows)"
    if column_count > MAX_LOGGED_COLUMNS:
        return f"it has {column_count} columns, and at most {MAX_LOGGED_COLUMNS} are logged row by row"
    return None


def _drop_triggers(plpy, relids):
    """Drop the triggers named like ours on these tables (those that are there: DROP ... IF EXISTS would tell the
    client about the others)."""
    ddl = db.column(plpy, """
        select pg_catalog.format('drop trigger %I on %s', g.tgname, g.tgrelid::regclass)
        from pg_catalog.pg_trigger g
        where g.tgrelid = any($1::text[]::oid[]) and g.tgname = any($2::text[]::name[])
        order by g.tgrelid, g.tgname""", [str(r) for r in relids], list(TRIGGER_NAMES))
    if ddl:
        plpy.execute(";\n".join(ddl))


def untrack(plpy, schema, table):
    """Stop tracking a table and drop its log, and the triggers named like ours on it (if it still exists)."""
    rows = db.run(plpy, f"""delete from {AUDIT}.tracked where schema_name = $1 and table_name = $2
                            returning audit_table, relid::bigint as relid,
                                      pg_catalog.to_regclass(audit_table) is not null as kept""", schema, table)
    relids = [r["relid"] for r in rows]
    live = db.scalar(plpy, "select pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))::oid::bigint",
                     schema, table)
    if live is not None:
        relids.append(live)
    _drop_triggers(plpy, relids)
    dropped = [r["audit_table"] for r in rows if r["kept"]]
    if dropped:
        plpy.execute("drop table " + ", ".join(dropped))


# Where the trigger puts the relation of old rows (format's %1$s): sg_old, or the table itself before a TRUNCATE.
# Identifiers cannot hold a NUL character, so the marker stands for nothing else.
_OLD_ROWS = "\0"


def _template(sql):
    """A statement as the trigger runs it: a format() string whose %1$s is the relation of old rows."""
    return sql.replace("%", "%%").replace(_OLD_ROWS, "%1$s")


class _Logging:
    """The statements that log a table's changes (see the module's docstring), and the bounds statement."""

    def __init__(self, audit, cols, types, bounded):
        self.audit, self.cols = audit, cols
        self.key = tbl.key_columns(cols)
        by_name = {c.name: t for c, t in zip(cols, types, strict=True)}
        self.collations = {c.name: by_name[c.name]["collation_name"] for c in cols}
        # one array of keys per statement, for a key of one column whose type has arrays
        self.arrays = len(self.key) == 1 and by_name[self.key[0].name]["arrayable"]
        # keys compared with the bounds of the log: built-in types only (their operators are pg_catalog's)
        self.bounded = bounded and bool(self.key) and all(by_name[c.name]["built_in"] for c in self.key)

    def _collated(self, alias, c):
        collation = self.collations[c.name]
        return f"{alias}.{ident(c.name)}" + (f" collate {collation}" if collation else "")

    def _key_row(self, alias):
        items = ", ".join(self._collated(alias, c) for c in self.key)
        return items if len(self.key) == 1 else f"row({items})"

    def in_range(self, alias):
        """Whether a row's key lies within the bounds of the log, or the writer cannot see the log's start."""
        def bound(kind):
            return (f"(select {', '.join(self._collated('b', c) for c in self.key)} from {self.audit} b "
                    f"where b.sg_audit_kind = {kind} limit 1)")
        stale = f"(select not exists (select from {self.audit} b where b.sg_audit_kind = {SENTINEL}))"
        row = self._key_row(alias)
        return f"({stale} or ({row} >= {bound(LOW)} and {row} <= {bound(HIGH)}))"

    def rows(self, source, kind, where=None):
        own = "sg_audit_stmt, sg_audit_kind"
        return (f"insert into {self.audit} ({tbl.select_list(tbl.column_list(self.cols), own)}) "
                f"select {tbl.select_list(tbl.column_list(self.cols, 's.'), f'$1, {kind}')} from {source} s"
                + (f" where {where}" if where else ""))

    def keys(self, source, where=None):
        where = f" where {where}" if where else ""
        if self.arrays:
            return (f"insert into {self.audit} (sg_audit_keys, sg_audit_stmt, sg_audit_kind) "
                    f"select pg_catalog.array_agg(s.{ident(self.key[0].name)}), $1, {KEYS} from {source} s{where} "
                    "having pg_catalog.count(*) > 0")
        return (f"insert into {self.audit} ({tbl.column_list(self.key)}, sg_audit_stmt, sg_audit_kind) "
                f"select {tbl.column_list(self.key, 's.')}, $1, {KEY} from {source} s{where}")

    def mark(self, source):
        """A MARK record for a statement that wrote any row (of `source`)."""
        return (f"insert into {self.audit} (sg_audit_stmt, sg_audit_kind) select $1, {MARK} "
                f"where exists (select from {source} s)")

    def statements(self):
        """{event: [statements]} for the trigger (tracked.logging)."""
        if not self.key:
            # without a primary key the whole row is the key: rows in (KEY) and out (OLD), counted at commit
            events = {"insert": [self.rows("sg_new", KEY)],
                      "update": [self.rows(_OLD_ROWS, OLD), self.rows("sg_new", KEY)],
                      "delete": [self.rows(_OLD_ROWS, OLD)], "truncate": [self.rows(_OLD_ROWS, OLD)]}
        else:
            within = self.in_range("s") if self.bounded else None
            # keys outside the bounds are told by the live table (log_rows): a statement on them logs a MARK only
            marks = (lambda source: [self.mark(source)]) if within else (lambda source: [])
            events = {
                "insert": [self.keys("sg_new", within)] + marks("sg_new"),
                "update": [self.rows(_OLD_ROWS, OLD, within), self.rows("sg_new", NEW, within)] + marks("sg_new"),
                "delete": [self.rows(_OLD_ROWS, OLD, within)] + marks(_OLD_ROWS),
                "truncate": [self.rows(_OLD_ROWS, OLD, within)] + marks(_OLD_ROWS),
                # inside another trigger: the enclosing statement logs after this one, so the keys this one touched
                # are read from the table at commit, never from a NEW record
                "nested update": [self.rows(_OLD_ROWS, OLD, within), self.keys(_OLD_ROWS), self.keys("sg_new")],
                "nested delete": [self.rows(_OLD_ROWS, OLD, within), self.keys(_OLD_ROWS)],
                "nested truncate": [self.rows(_OLD_ROWS, OLD, within), self.keys(_OLD_ROWS)],
            }
        return {event: [_template(q) for q in queries] for event, queries in events.items()}

    def bounds(self):
        """The statement (format()'s %1$s: the table) that logs the lowest and highest key, or None."""
        if not self.bounded:
            return None
        own = "sg_audit_stmt, sg_audit_kind"

        def end(kind, order):
            return (f"(select {tbl.column_list(self.key, 't.')}, 0, {kind} from only {_OLD_ROWS} t order by "
                    + ", ".join(f"{self._collated('t', c)} {order}" for c in self.key) + " limit 1)")
        return _template(f"insert into {self.audit} ({tbl.column_list(self.key)}, {own}) "
                         f"{end(LOW, 'asc')} union all {end(HIGH, 'desc')}")


def _start_log(plpy, audit, bounds, relid):
    """The first records of a log: the sentinel, then the table's lowest and highest key (bounds)."""
    plpy.execute(f"insert into {audit} (sg_audit_stmt, sg_audit_kind) values (0, {SENTINEL})")
    if bounds:
        plpy.execute(db.scalar(plpy, "select pg_catalog.format($1, $2::bigint::oid::pg_catalog.regclass)",
                               bounds, relid))


def track(plpy, schema, table, state="tracking", compare=True):
    """Start tracking a table: from now on its changes are logged. Tracking it again starts a fresh log.
    `state` "lost" starts a log that is not trusted (the table's changes since HEAD are unknown). A table whose
    changes cannot be logged row by row (comparison_reason) is tracked by comparison when `compare` (in a
    checkout, where HEAD is there to compare with), and refused otherwise."""
    tbl.require(plpy, schema, table)
    kind = db.scalar(plpy, """select c.relkind::text from pg_catalog.pg_class c
                              join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                              where n.nspname = $1 and c.relname = $2""", schema, table)
    if kind not in ("r", "p"):
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED, f'"{schema}"."{table}" is not a table; only tables are tracked')
    cols = tbl.columns(plpy, schema, table)
    reason = comparison_reason(plpy, schema, table, len(cols))
    if reason is not None and not compare:
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED,
                    f'table "{schema}"."{table}" cannot be tracked row by row: {reason}',
                    hint="commit it in a repository, whose checkout finds such a table's changes by comparing it "
                         "with HEAD")
    if reason is None:
        clash = [c.name for c in cols if c.name in RESERVED]
        if clash:
            errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED,
                        f'table "{table}" has a column named {clash[0]}, which change tracking uses for itself',
                        hint="rename the column to track the table")
    untrack(plpy, schema, table)
    key = tbl.key_columns(cols) or cols
    audit = f"{AUDIT}.{ident(db.temp_name('changes'))}"
    target = names.qualified(schema, table)
    own = ["sg_audit_stmt bigint not null", "sg_audit_kind smallint not null"]
    logging, bounds = {}, None
    if reason is None:
        types = _storage_types(plpy, target)
        definitions = [c.definition(t["type"]) for c, t in zip(cols, types, strict=True)]
        # The bounds of a log are read when it (re)starts: only a READ COMMITTED snapshot, taken once the table is
        # locked against writers, sees every row there is.
        plan = _Logging(audit, cols, types, bounded=_read_committed(plpy))
        if plan.arrays:
            k = plan.key[0]
            collate = f" collate {k.collation}" if k.collation else ""  # as the key's own audit column
            own.append(f"sg_audit_keys {types[cols.index(k)]['type']}[]{collate}")
        logging, bounds = plan.statements(), plan.bounds()
    else:
        definitions, state = [], "compared"
    statements = [f"create unlogged table {audit} (" + ", ".join(definitions + own) + ")"]
    if reason is None:
        statements += [f"create trigger {name} {event} on {target} {transition} for each statement "
                       f"execute function {AUDIT}.{function}()" for name, event, transition, function in TRIGGERS]
        # ALWAYS: writes under session_replication_role = replica (logical replication) are logged too
        statements.append(f"alter table {target} "
                          + ", ".join(f"enable always trigger {name}" for name, *_ in TRIGGERS))
    plpy.execute(";\n".join(statements))
    relid = db.scalar(plpy, "select pg_catalog.to_regclass($1)::oid::bigint", target)
    # after the triggers: the table is locked against writers until this transaction ends
    _start_log(plpy, audit, bounds, relid)
    db.run(plpy, f"""insert into {AUDIT}.tracked (relid, schema_name, table_name, audit_table, key_columns,
                                                 all_columns, has_primary_key, state, fingerprint, logging, bounds)
                     values ($1::bigint::oid, $2, $3, $4, $5, $6, $7, $8, {AUDIT}.fingerprint($1::bigint::oid),
                             $9::jsonb, $10)""",
           relid, schema, table, audit, tbl.column_list(key), tbl.column_list(cols), bool(tbl.key_columns(cols)),
           state, json.dumps(logging), bounds)


def restart(plpy, tracked, compare=True, few=False):
    """Forget the logged changes of a tracked table (after they were committed, discarded or reset). A log that
    is not trusted starts afresh (new triggers and fingerprint), and so does one whose bounds this transaction
    could not read (see track). few: the log holds a few records only (WROTE records of a checkout that changed
    the table in place, whose keys may lie outside the bounds): they are deleted (a TRUNCATE makes a new file),
    and the bounds read again."""
    if tracked["state"] != "tracking" or (tracked["bounds"] and not _read_committed(plpy)):
        track(plpy, tracked["schema_name"], tracked["table_name"], compare=compare)
        return
    if few:
        plpy.execute(f"delete from {tracked['audit_table']}")
    elif not logged(plpy, tracked):
        return  # nothing to forget: the table is as the log began (and its bounds still hold)
    else:
        _empty_log(plpy, tracked["audit_table"])
    _start_log(plpy, tracked["audit_table"], tracked["bounds"], tracked["relid"])


# A log this small (with its TOAST table) is emptied by DELETE, a larger one by TRUNCATE. TRUNCATE gives an unlogged
# table new files, each with an init fork that is synced to disk at once (the heap's, its TOAST table's and that
# one's index: three fsyncs, tens of milliseconds on a busy disk, however little the log holds). DELETE leaves the
# dead rows to autovacuum; until it comes, new records go after them (the log's first records, its sentinel and
# bounds, are then found after at most this many bytes of dead rows), and once the log has grown past this size
# the next restart truncates it.
SMALL_LOG_BYTES = 256 * 1024


def _empty_log(plpy, audit):
    """Remove every record of a log (the caller holds the table's lock against writers)."""
    if db.scalar(plpy, "select pg_catalog.pg_total_relation_size(pg_catalog.to_regclass($1)) <= $2",
                 audit, SMALL_LOG_BYTES):
        plpy.execute(f"delete from {audit}")
    else:
        plpy.execute(f"truncate {audit}")


def mark(plpy, tracked, state):
    """Record that a table's log is no longer trusted (tracked["state"] follows)."""
    db.run(plpy, f"update {AUDIT}.tracked set state = $2 where relid = $1::bigint::oid", tracked["relid"], state)
    tracked["state"] = state


def _adopt(plpy, schema):
    """A table restored from a dump has a new oid, and carries our triggers: it takes over the tracking row of
    the table of its name that is gone, untrusted (its contents are whatever the dump held). A table made again
    without our trigger functions (whatever its triggers are named) is simply not tracked."""
    restored = db.run_generic(plpy, f"""
        select e.relid::bigint as old, c.oid::bigint as new
        from {AUDIT}.tracked e
        join pg_catalog.pg_namespace n on n.nspname = e.schema_name
        join pg_catalog.pg_class c on c.relnamespace = n.oid and c.relname = e.table_name
        where e.schema_name = $1 and c.relkind in ('r', 'p')
          and not exists (select from pg_catalog.pg_class gone where gone.oid = e.relid)
          and not exists (select from {AUDIT}.tracked o where o.relid = c.oid)
          and exists (select from pg_catalog.pg_trigger g
                      join pg_catalog.pg_proc p on p.oid = g.tgfoid
                      where g.tgrelid = c.oid and p.pronamespace = '{AUDIT}'::regnamespace)""", schema)
    for r in restored:  # (rarely any: nothing is written otherwise, so that a read-only transaction can read)
        db.run(plpy, f"update {AUDIT}.tracked set relid = $2::bigint::oid, state = 'untrusted' "
                     "where relid = $1::bigint::oid", r["old"], r["new"])


def schema_tracking(plpy, schema):
    """Tracking rows of the live tables of a schema, by table name, each log verified: one whose table or
    triggers no longer match their fingerprint is marked untrusted, one a crash emptied is marked lost."""
    _adopt(plpy, schema)
    rows = db.run(plpy, f"""select t.*, t.fingerprint is not distinct from {AUDIT}.fingerprint(t.relid) as intact
                            from {AUDIT}.tracked t
                            join pg_catalog.pg_class c on c.oid = t.relid
                            join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                            where t.schema_name = $1 and n.nspname = $1 and c.relname = t.table_name""", schema)
    result = {}
    for r in rows:
        tracked = dict(r)
        if not tracked.pop("intact") and tracked["state"] in ("tracking", "patching"):
            mark(plpy, tracked, "untrusted")
        result[tracked["table_name"]] = _check_sentinel(plpy, tracked)
    return result


def _check_sentinel(plpy, tracked):
    """A log emptied by a crash has lost its sentinel: from then on the table is not trusted row by row."""
    if tracked["state"] in ("tracking", "patching") and not db.scalar(
            plpy, f"select exists (select from {tracked['audit_table']} where sg_audit_kind = {SENTINEL})"):
        mark(plpy, tracked, "lost")
    return tracked


def tracked_names(plpy, schema):
    """Names of the live tables of a schema that have a tracking row (not verified: see schema_tracking)."""
    return db.column(plpy, f"""select t.table_name from {AUDIT}.tracked t
                              join pg_catalog.pg_class c on c.oid = t.relid
                              join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                              where t.schema_name = $1 and n.nspname = $1 and c.relname = t.table_name
                              order by 1""", schema)


def forget_schema(plpy, schema):
    """Drop the logs of every table of a schema that was tracked, live or not (before the schema goes away)."""
    forget_schema_except(plpy, schema, [])


def forget_schema_except(plpy, schema, keep):
    """Drop the logs of a schema's tracked tables, but for the live tables named in `keep`."""
    rows = db.run(plpy, f"""select t.table_name,
                                   exists (select from pg_catalog.pg_class c where c.oid = t.relid) as live
                            from {AUDIT}.tracked t where t.schema_name = $1""", schema)
    for r in rows:
        if not (r["live"] and r["table_name"] in keep):
            untrack(plpy, schema, r["table_name"])


def logged(plpy, tracked):
    """Whether anything was logged for a table since tracking (re)started."""
    return db.scalar(plpy, f"select exists (select from {tracked['audit_table']} "
                           f"where sg_audit_kind = any(array{list(LOGGED)}::smallint[]))")


def log_rows(plpy, tracked, cols):
    """A FROM item of the records of a keyed table's log, as rows of the table's columns, sg_audit_stmt and
    sg_audit_kind: OLD, KEY and NEW records as they are, each key of a KEYS record as a KEY record, and, for a log
    with bounds, a KEY record (statement 0: before any other) for each row of the live table whose key lies outside
    them, or for every row when the table was empty as the log began: such a key did not exist then, and the
    writes to it were not logged."""
    audit = tracked["audit_table"]
    own = "a.sg_audit_stmt, a.sg_audit_kind"
    rows = (f"select {tbl.select_list(tbl.column_list(cols, 'a.'), own)} from {audit} a "
            f"where a.sg_audit_kind in ({OLD}, {KEY}, {NEW})")
    arrays = db.scalar(plpy, """select exists (select from pg_catalog.pg_attribute
                                               where attrelid = pg_catalog.to_regclass($1)
                                                 and attname = 'sg_audit_keys' and not attisdropped)""", audit)
    if arrays:
        values = tbl.select_list(*("u.k" if c.is_pk else "null" for c in cols))
        rows += (f" union all select {tbl.select_list(values, f'a.sg_audit_stmt, {KEY}::smallint')} from {audit} a "
                 f"cross join lateral pg_catalog.unnest(a.sg_audit_keys) u (k) where a.sg_audit_kind = {KEYS}")
    if tracked["bounds"]:
        rows += "".join(f" union all {q}" for q in _outside_bounds(plpy, tracked, cols))
    return f"({rows})"


def _outside_bounds(plpy, tracked, cols):
    """SELECTs of a KEY record (statement 0) for each live row of a table whose key lies below the log's LOW bound
    or above its HIGH bound, compared as the triggers compare them (_Logging.in_range), or for every row when the
    log has no bounds (the table was empty as it began). The bounds are read first and written into the query as
    constants of the key's types (values this log holds, quoted), so that the planner can see how few rows lie
    outside them and read them by the key index (a parameter cannot reach a CREATE TABLE AS, where this is read
    too); none when no row lies outside them (probed first, by the key index)."""
    key = tbl.key_columns(cols)
    audit, target = tracked["audit_table"], "only " + names.qualified(tracked["schema_name"], tracked["table_name"])
    values = tbl.select_list(*(f"t.{ident(c.name)}::{c.storage}" if c.is_pk else "null" for c in cols))
    select = f"select {tbl.select_list(values, f'0::bigint, {KEY}::smallint')} from {target} t"
    # Every statement that wrote a row outside the bounds logged a MARK (see _Logging.statements): without one, there
    # is no such row, and the table is not read at all.
    if not db.scalar(plpy, f"select exists (select from {audit} m where m.sg_audit_kind = {MARK})"):
        return []
    texts = ", ".join(f"b.{ident(c.name)}::text as k{i}" for i, c in enumerate(key))
    bounds = {r["kind"]: r for r in db.run(plpy, f"""select b.sg_audit_kind as kind, {texts} from {audit} b
                                                     where b.sg_audit_kind in ({LOW}, {HIGH})""")}
    if LOW not in bounds or HIGH not in bounds:
        return [select]

    def row(items):
        return items[0] if len(items) == 1 else f"row({', '.join(items)})"

    live = row([f"t.{ident(c.name)}" + (f" collate {c.collation}" if c.collation else "") for c in key])

    def bound(kind):
        return row([f"{literal(bounds[kind][f'k{i}'])}::{c.storage}" for i, c in enumerate(key)])
    below, above = f"{select} where {live} < {bound(LOW)}", f"{select} where {live} > {bound(HIGH)}"

    def end(order):  # the lowest or highest key of the table now, read from the key index as bounds() reads it
        keys = ", ".join(f"{collated} {order}" for collated in
                         (f"t.{ident(c.name)}" + (f" collate {c.collation}" if c.collation else "") for c in key))
        return f"(select {tbl.column_list(key, 't.')} from {target} t order by {keys} limit 1) t"
    # none at all (a log of updates and deletes only): nothing to add, and no estimate of a table without
    # statistics (a third of it on each side) to mislead the plan of the whole read
    if not db.scalar(plpy, f"""select exists (select from {end('asc')} where {live} < {bound(LOW)})
                                   or exists (select from {end('desc')} where {live} > {bound(HIGH)})"""):
        return []
    return [below, above]
