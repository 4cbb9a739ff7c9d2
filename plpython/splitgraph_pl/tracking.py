"""Change tracking: logging every change to a table, and reducing the log to the table's net changes.

Statement-level triggers (sql/20_internal/03_tracking.sql) append to a table's audit table: the old values of
updated and deleted rows (kind 0) and the keys written by inserts and updates (kind 1). A key's first record
tells its state when tracking began: kind 0 means the row existed with those values, kind 1 means it did not.
Joining that with the live table by key gives the net change per key, so that inserting then deleting a row,
updating a row back to its values, or deleting and re-inserting an identical row are no change at all.

Audit tables are UNLOGGED: logging a change writes no WAL. A crash empties them, so each holds a sentinel row
(kind 2) from the moment tracking starts: a log without its sentinel was lost, and its table is committed as a
snapshot (state "lost") instead of trusting an empty log.
"""
import secrets

from . import db, errors, names
from . import tables as tbl
from .declare import api
from .names import ident, literal

AUDIT = "splitgraph_audit"
RESERVED = ("sg_audit_stmt", "sg_audit_kind")
SENTINEL = 2
TRIGGERS = (
    ("sg_track_insert", "after insert", "referencing new table as sg_new", "on_insert"),
    ("sg_track_update", "after update", "referencing old table as sg_old new table as sg_new", "on_update"),
    ("sg_track_delete", "after delete", "referencing old table as sg_old", "on_delete"),
    ("sg_track_truncate", "before truncate", "", "on_truncate"),
)

_STORAGE_TYPES = """
with recursive base (n, oid, typmod, depth) as (
    select u.n, t.oid, t.typtypmod, 0
    from pg_catalog.unnest($1::text[]) with ordinality u (type, n)
    join pg_catalog.pg_type t on t.oid = pg_catalog.to_regtype(u.type)
    union all
    select b.n, t.typbasetype, t.typtypmod, b.depth + 1
    from base b join pg_catalog.pg_type t on t.oid = b.oid
    where t.typtype = 'd'
)
select distinct on (n) pg_catalog.format_type(oid, nullif(typmod, -1)) as type
from base order by n, depth desc"""


def registry(plpy, schema, table):
    """The tracking row of a live table (matched by oid, so a table dropped and made again is untracked)."""
    return schema_tracking(plpy, schema).get(table)


def _storage_types(plpy, cols):
    """The types of the audit columns: domains become their base types, so that logging a change never runs a
    domain's checks (which could be a table owner's own code) with the extension's rights."""
    return db.column(plpy, _STORAGE_TYPES, [c.type for c in cols])


def untrack(plpy, schema, table):
    """Stop tracking a table (if it still exists) and drop its log."""
    rows = db.run(plpy, f"""delete from {AUDIT}.tracked where schema_name = $1 and table_name = $2
                            returning audit_table, relid::regclass::text as target,
                                      pg_catalog.to_regclass(relid::regclass::text) is not null as live""",
                  schema, table)
    for r in rows:
        statements = [f"drop table if exists {r['audit_table']}"]
        if r["live"]:
            statements += [f"drop trigger if exists {name} on {r['target']}" for name, *_ in TRIGGERS]
        plpy.execute(";\n".join(statements))


def track(plpy, schema, table, state="tracking"):
    """Start tracking a table: from now on its changes are logged. Tracking it again starts a fresh log.
    `state` "lost" starts a log that is not trusted (the table's changes since HEAD are unknown)."""
    tbl.require(plpy, schema, table)
    kind = db.scalar(plpy, """select c.relkind::text from pg_catalog.pg_class c
                              join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                              where n.nspname = $1 and c.relname = $2""", schema, table)
    if kind not in ("r", "p"):
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED, f'"{schema}"."{table}" is not a table; only tables are tracked')
    cols = tbl.columns(plpy, schema, table)
    clash = [c.name for c in cols if c.name in RESERVED]
    if clash:
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED,
                    f'table "{table}" has a column named {clash[0]}, which change tracking uses for itself',
                    hint="rename the column to track the table")
    untrack(plpy, schema, table)
    key = tbl.key_columns(cols) or cols
    audit = f"{AUDIT}.{ident('changes_' + secrets.token_hex(6))}"
    definitions = [c.definition(t) for c, t in zip(cols, _storage_types(plpy, cols), strict=True)]
    target = names.qualified(schema, table)
    statements = [f"create unlogged table {audit} ("
                  + ", ".join(definitions + ["sg_audit_stmt bigint not null", "sg_audit_kind smallint not null"]) + ")",
                  f"insert into {audit} (sg_audit_stmt, sg_audit_kind) values (0, {SENTINEL})"]
    statements += [f"create trigger {name} {event} on {target} {transition} for each statement "
                   f"execute function {AUDIT}.{function}()" for name, event, transition, function in TRIGGERS]
    plpy.execute(";\n".join(statements))
    db.run(plpy, f"""insert into {AUDIT}.tracked (relid, schema_name, table_name, audit_table, key_columns,
                                                 all_columns, has_primary_key, state)
                     values (pg_catalog.to_regclass($1)::oid, $2, $3, $4, $5, $6, $7, $8)""",
           target, schema, table, audit, tbl.column_list(key), tbl.column_list(cols), bool(tbl.key_columns(cols)),
           state)


def restart(plpy, tracked):
    """Forget the logged changes of a tracked table (after they were committed, discarded or reset)."""
    plpy.execute(f"truncate {tracked['audit_table']}; "
                 f"insert into {tracked['audit_table']} (sg_audit_stmt, sg_audit_kind) values (0, {SENTINEL})")
    if tracked["state"] in ("truncated", "lost"):
        db.run(plpy, f"update {AUDIT}.tracked set state = 'tracking' where relid = $1::bigint::oid", tracked["relid"])


@api("tracked_tables() returns table (schema_name text, table_name text)",
     "tracked_tables(): every table whose changes are logged",
     volatility="stable")
def tracked_tables(plpy):
    """Tracked tables under their current names (a rename does not stop a table being tracked... until its next
    commit, as any ALTER TABLE makes it a snapshot)."""
    return db.run(plpy, f"""select n.nspname::text as schema_name, c.relname::text as table_name
                            from {AUDIT}.tracked t
                            join pg_catalog.pg_class c on c.oid = t.relid
                            join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                            order by 1, 2""")


def schema_tracking(plpy, schema):
    """Tracking rows of the live tables of a schema, by table name."""
    db.run(plpy, f"""select {AUDIT}.adopt(c.oid) from pg_catalog.pg_class c
                     join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                     join {AUDIT}.tracked t on t.schema_name = n.nspname and t.table_name = c.relname
                     where n.nspname = $1 and t.relid <> c.oid""", schema)
    rows = db.run(plpy, f"""select t.* from {AUDIT}.tracked t
                            join pg_catalog.pg_class c on c.oid = t.relid
                            join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                            where t.schema_name = $1 and n.nspname = $1 and c.relname = t.table_name""", schema)
    return {r["table_name"]: _check_sentinel(plpy, dict(r)) for r in rows}


def _check_sentinel(plpy, tracked):
    """A log emptied by a crash has lost its sentinel: from then on the table is not trusted row by row."""
    if tracked["state"] == "tracking" and not db.scalar(
            plpy, f"select exists (select from {tracked['audit_table']} where sg_audit_kind = {SENTINEL})"):
        db.run(plpy, f"update {AUDIT}.tracked set state = 'lost' where relid = $1::bigint::oid", tracked["relid"])
        tracked["state"] = "lost"
    return tracked


def forget_schema(plpy, schema):
    """Drop the logs of every table of a schema that was tracked, live or not (before the schema goes away)."""
    forget_schema_except(plpy, schema, [])


def forget_schema_except(plpy, schema, keep):
    """Drop the logs of a schema's tracked tables, but for the live tables named in `keep`."""
    rows = db.run(plpy, f"""select table_name, pg_catalog.to_regclass(relid::regclass::text) is not null as live
                            from {AUDIT}.tracked where schema_name = $1""", schema)
    for r in rows:
        if not (r["live"] and r["table_name"] in keep):
            untrack(plpy, schema, r["table_name"])


# ---------------------------------------------------------------------------------------------------------------
# Net changes
# ---------------------------------------------------------------------------------------------------------------

class Delta:
    """The net changes of a tracked table, in a temporary table with, per changed key or row: existed (before
    tracking), present (now), ho / hn (sha256 of the old and new row texts), o0.. (old values) and n0.. (new
    values)."""

    def __init__(self, name, cols, key):
        self.name, self.cols, self.key = name, cols, key
        self.relation = f"pg_temp.{ident(name)}"

    def counts(self, plpy):
        """(added, removed, updated) rows."""
        row = db.one(plpy, f"""select count(*) filter (where present and not existed) as added,
                                      count(*) filter (where existed and not present) as removed,
                                      count(*) filter (where existed and present) as updated
                               from {self.relation}""")
        return row["added"], row["removed"], row["updated"]

    def changed(self, plpy):
        """Whether there is any change at all."""
        return db.scalar(plpy, f"select exists (select from {self.relation})")

    def drop(self, plpy):
        plpy.execute(f"drop table if exists {self.relation}")


SNAPSHOT = "snapshot"


def digest(text_sql):
    """sha256 of the UTF-8 bytes of a row text: a row's hash."""
    return f"pg_catalog.sha256(pg_catalog.convert_to({text_sql}, 'UTF8'))"


def _values(cols, alias, side, when=None):
    """The columns of `alias` as a Delta's old (side "o") or new ("n") values, null unless `when` holds."""
    return ", ".join((f"case when {when} then {alias}.{ident(c.name)} end" if when else f"{alias}.{ident(c.name)}")
                     + f" as {side}{i}" for i, c in enumerate(cols))


def _net_logged_rows(tracked, cols):
    """FROM items over the log of a table without a primary key: x (row_text, n: copies of that row added less
    copies removed, never 0) joined with f, one logged row of that text (its values)."""
    rows = tbl.row_text(cols, "a.")
    log = f"{tracked['audit_table']} a where a.sg_audit_kind < {SENTINEL}"
    return f"""(select {rows} as row_text, sum(case a.sg_audit_kind when 1 then 1 else -1 end) as n
              from {log} group by 1 having sum(case a.sg_audit_kind when 1 then 1 else -1 end) <> 0) x
        join (select distinct on (r.row_text) r.* from (select {rows} as row_text, a.* from {log}) r
              order by r.row_text) f on f.row_text = x.row_text"""


def keyed_changes(tracked, schema, table, cols):
    """The SELECT of the net changes of a tracked table with a primary key (the rows of a Delta): each touched
    key's first logged record (its state before tracking) joined with the live row of that key."""
    key = tbl.key_columns(cols)
    old, new = _values(cols, "f", "o"), _values(cols, "t", "n")
    key_list = tbl.column_list(key, "a.")
    join = " and ".join(f"t.{ident(c.name)} = f.{ident(c.name)}" for c in key)
    present = f"t.{ident(key[0].name)} is not null"
    return f"""
        select * from (
            select f.sg_audit_kind = 0 as existed, {present} as present,
                   case when f.sg_audit_kind = 0 then {digest(tbl.row_text(cols, 'f.'))} end as ho,
                   case when {present} then {digest(tbl.row_text(cols, 't.'))} end as hn,
                   {old}, {new}
            from (select distinct on ({key_list}) a.* from {tracked['audit_table']} a
                  where a.sg_audit_kind < {SENTINEL}
                  order by {key_list}, a.sg_audit_stmt, a.sg_audit_kind) f
            left join {names.qualified(schema, table)} t on {join}
            offset 0  -- each row is hashed once, not again for the filter below
        ) d
        where existed <> present or ho is distinct from hn"""


def logged(plpy, tracked):
    """Whether anything was logged for a table since tracking (re)started."""
    return db.scalar(plpy, f"select exists (select from {tracked['audit_table']} where sg_audit_kind < {SENTINEL})")


def delta(plpy, tracked, schema, table, cols):
    """The net changes logged for a table still tracked with the same columns: a Delta, or SNAPSHOT when only a
    snapshot can record them (a table without a primary key whose changed rows have duplicates)."""
    name = "sg_delta_" + secrets.token_hex(6)
    relation = f"pg_temp.{ident(name)}"
    target = names.qualified(schema, table)
    key = tbl.key_columns(cols)
    if key:
        plpy.execute(f"create temp table {ident(name)} as {keyed_changes(tracked, schema, table, cols)}")
        return Delta(name, cols, key)
    # Without a primary key the whole row is the key: count each row text in and out of the table.
    plpy.execute(f"""
        create temp table {ident(name)} as
        select x.n = -1 as existed, x.n = 1 as present,
               case when x.n < 0 then {digest('x.row_text')} end as ho,
               case when x.n > 0 then {digest('x.row_text')} end as hn,
               x.row_text, x.n as net, null::bigint as live,
               {_values(cols, "f", "o")}, {_values(cols, "f", "n")}
        from {_net_logged_rows(tracked, cols)}""")
    result = Delta(name, cols, key)
    if not result.changed(plpy):
        return result
    # A row may be recorded as a change only if it is unique before and after: otherwise only a snapshot can say
    # how many copies there are.
    plpy.execute(f"""update {relation} d set live = c.n from (
                         select {tbl.row_text(cols, 't.')} as row_text, count(*) as n from {target} t
                         where {tbl.row_text(cols, 't.')} in (select row_text from {relation})
                         group by 1) c
                     where c.row_text = d.row_text""")
    unique = db.scalar(plpy, f"""select bool_and((net = 1 and coalesce(live, 0) = 1) or (net = -1 and live is null))
                                 from {relation}""")
    if not unique:
        plpy.execute(f"drop table {relation}")
        return SNAPSHOT
    plpy.execute(f"update {relation} set {', '.join(f'o{i} = null' for i in range(len(cols)))} where not existed")
    plpy.execute(f"update {relation} set {', '.join(f'n{i} = null' for i in range(len(cols)))} where not present")
    return result


def compared(plpy, base, schema, table, cols):
    """A Delta of a table's differences from `base` (a relation with the same columns, e.g. HEAD's version
    materialized), found by comparing every row: for tables whose log cannot be trusted."""
    name = "sg_delta_" + secrets.token_hex(6)
    target = names.qualified(schema, table)
    key = tbl.key_columns(cols)
    if key:
        old, new = _values(cols, "b", "o"), _values(cols, "t", "n")
        join = " and ".join(f"t.{ident(c.name)} = b.{ident(c.name)}" for c in key)
        plpy.execute(f"""
            create temp table {ident(name)} as
            select * from (
                select b.{ident(key[0].name)} is not null as existed, t.{ident(key[0].name)} is not null as present,
                       case when b.{ident(key[0].name)} is not null then {digest(tbl.row_text(cols, 'b.'))} end as ho,
                       case when t.{ident(key[0].name)} is not null then {digest(tbl.row_text(cols, 't.'))} end as hn,
                       {tbl.select_list(old, new)}
                from {base} b full join {target} t on {join}
                offset 0
            ) d where existed <> present or ho is distinct from hn""")
        return Delta(name, cols, key)
    # without a key, each row that is in one side more often than in the other is a change, once per copy
    rows = lambda alias: tbl.row_text(cols, alias + ".")  # noqa: E731
    plpy.execute(f"""
        create temp table {ident(name)} as
        select x.existed, not x.existed as present,
               case when x.existed then {digest('x.row_text')} end as ho,
               case when not x.existed then {digest('x.row_text')} end as hn,
               {tbl.select_list(_values(cols, "f", "o", "x.existed"), _values(cols, "f", "n", "not x.existed"))}
        from (select true as existed, row_text from (select {rows('b')} as row_text from {base} b
                                                     except all select {rows('t')} from {target} t) e
              union all
              select false, row_text from (select {rows('t')} as row_text from {target} t
                                           except all select {rows('b')} from {base} b) e) x
        join (select distinct on (r.row_text) r.* from (
                  select {rows('u')} as row_text, u.* from (select * from {base} union all select * from {target}) u) r
              order by r.row_text) f on f.row_text = x.row_text""")
    return Delta(name, cols, key)


def keyless_listing(plpy, tracked, cols):
    """The logged net changes of a table without a primary key, one row per copy added or removed (as
    get_pending_changes lists them even when rows have duplicates)."""
    name = "sg_delta_" + secrets.token_hex(6)
    plpy.execute(f"""
        create temp table {ident(name)} as
        select x.n < 0 as existed, x.n > 0 as present,
               {tbl.select_list(_values(cols, "f", "o", "x.n < 0"), _values(cols, "f", "n", "x.n > 0"))}
        from {_net_logged_rows(tracked, cols)}
        cross join lateral pg_catalog.generate_series(1, abs(x.n)) copies""")
    return Delta(name, cols, [])


def has_changes(plpy, tracked, schema, table, cols):
    d = delta(plpy, tracked, schema, table, cols)
    if d == SNAPSHOT:
        return True
    try:
        return d.changed(plpy)
    finally:
        d.drop(plpy)


# ---------------------------------------------------------------------------------------------------------------
# The change-tracking API (any schema; a checked-out repository's tables are tracked automatically)
# ---------------------------------------------------------------------------------------------------------------

def repository_of_schema(plpy, schema):
    """The checked-out repository whose checkout is this schema, if any."""
    return db.scalar(plpy, "select repository from splitgraph_meta.checkouts where left(repository, 63) = $1", schema)


def _check_caller_owns(plpy, schema, table):
    from . import meta
    if meta.caller_is_admin(plpy):
        return
    owns = db.scalar(plpy, """select pg_catalog.pg_has_role(session_user, c.relowner, 'USAGE')
                              from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                              where n.nspname = $1 and c.relname = $2""", schema, table)
    if not owns:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'only the owner of "{schema}"."{table}" may change '
                                                         "its tracking")


@api("track_tables(schema text, tables text[]) returns void",
     "track_tables(schema, tables): log every change to the tables (statement-level triggers); a table already "
     "tracked keeps its log")
def track_tables(plpy, schema, tables):
    repo = repository_of_schema(plpy, schema)
    for table in tables or []:
        tbl.require(plpy, schema, table)
        _check_caller_owns(plpy, schema, table)
        if db.scalar(plpy, f"""select exists (select from {AUDIT}.tracked where schema_name = $1 and table_name = $2
                                              and relid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text,
                                                                                 $2::text)))""", schema, table):
            continue
        # A checkout's table that was not tracked may already differ from HEAD: its log starts untrusted, so
        # the next commit stores it as a snapshot and status compares it with HEAD.
        track(plpy, schema, table, state="lost" if repo is not None else "tracking")


@api("untrack_tables(schema text, tables text[]) returns void",
     "untrack_tables(schema, tables): stop tracking the tables and drop their logs")
def untrack_tables(plpy, schema, tables):
    for table in tables or []:
        if tbl.exists(plpy, schema, table):
            _check_caller_owns(plpy, schema, table)
        untrack(plpy, schema, table)


def _changed(plpy, schema, table, t):
    if t["state"] != "tracking":
        return True
    return has_changes(plpy, t, schema, table, tbl.columns(plpy, schema, table))


@api("changed_tables(schema text) returns text[]",
     "changed_tables(schema): names of the tables with pending changes")
def changed_tables(plpy, schema):
    repo = repository_of_schema(plpy, schema)
    if repo is not None:
        from .diffs import changed_tables_of
        return changed_tables_of(plpy, repo)
    return [table for table, t in sorted(schema_tracking(plpy, schema).items()) if _changed(plpy, schema, table, t)]


@api("has_pending_changes(schema text) returns boolean",
     "has_pending_changes(schema): true when a tracked table of the schema (for a checkout: any table) changed")
def has_pending_changes(plpy, schema):
    return bool(changed_tables(plpy, schema))


@api("get_pending_changes(schema text, table_name text, aggregate boolean default false) returns table (pk "
     "jsonb, change_type text, row_data jsonb, added integer, removed integer, updated integer)",
     "get_pending_changes(schema, table_name, aggregate): net changes of a tracked table, one row per changed "
     "key (pk, change_type insert/delete/update, row_data: new row, or old row for a delete); aggregate: one row "
     "of added, removed, updated",
     rows="temp")
def get_pending_changes(plpy, schema, table_name, aggregate=False):
    """Fill a temporary table with the net changes of a tracked table; returns its name."""
    tbl.require(plpy, schema, table_name)
    t = registry(plpy, schema, table_name)
    if t is None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f'table "{schema}"."{table_name}" is not tracked',
                    hint="start tracking it with splitgraph.track_tables")
    cols = tbl.columns(plpy, schema, table_name)
    if t["state"] != "tracking":
        from .diffs import head_comparison
        d = head_comparison(plpy, repository_of_schema(plpy, schema), table_name, cols)
        if d is None:
            errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                        f'table "{schema}"."{table_name}" was {t["state"]} since tracking began: its changes are '
                        "no longer known row by row",
                        hint="commit it (as a snapshot), or compare versions with splitgraph.diff")
    else:
        d = delta(plpy, t, schema, table_name, cols)
        if d == SNAPSHOT:
            d = keyless_listing(plpy, t, cols)
    name = "sg_changes_" + secrets.token_hex(6)
    plpy.execute(f"create temp table {ident(name)} (pk jsonb, change_type text, row_data jsonb, added integer, "
                 "removed integer, updated integer)")
    from .diffs import _object_sql

    if aggregate:
        added, removed, updated = d.counts(plpy)
        db.run(plpy, f"insert into pg_temp.{ident(name)} (added, removed, updated) values ($1::int, $2::int, $3::int)",
               added, removed, updated)
    else:
        key = tbl.key_columns(cols) or cols
        positions = [i for i, c in enumerate(cols) if c in key]

        def key_object(prefix):
            pairs = ", ".join(f"{literal(cols[i].name)}, d.{prefix}{i}" for i in positions)
            return f"pg_catalog.jsonb_build_object({pairs})"

        plpy.execute(f"""
            insert into pg_temp.{ident(name)} (pk, change_type, row_data)
            select case when d.present then {key_object('n')} else {key_object('o')} end,
                   case when not d.existed then 'insert' when not d.present then 'delete' else 'update' end,
                   case when d.present then {_object_sql(cols, 'd', 'n')} else {_object_sql(cols, 'd', 'o')} end
            from {d.relation} d""")
    d.drop(plpy)
    return name


@api("discard_pending_changes(schema text, table_name text default null) returns void",
     "discard_pending_changes(schema, table_name): forget the logged changes of tracked tables (the data stays "
     "as it is); a checkout's changes are undone with reset")
def discard_pending_changes(plpy, schema, table_name=None):
    """Forget logged changes (the data stays as it is). A checkout's changes are undone with reset instead:
    forgetting them would let the checkout drift from its HEAD unnoticed."""
    repo = repository_of_schema(plpy, schema)
    if table_name is not None:
        tbl.require(plpy, schema, table_name)
    if repo is not None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'schema "{schema}" is the checkout of repository "{repo}"',
                    hint="commit the changes, or undo them with splitgraph.reset")
    tracked = schema_tracking(plpy, schema)
    if table_name is not None and table_name not in tracked:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f'table "{schema}"."{table_name}" is not tracked')
    for name, t in tracked.items():
        if table_name is None or name == table_name:
            _check_caller_owns(plpy, schema, name)
            if t["state"] == "altered":
                track(plpy, schema, name)
            else:
                restart(plpy, t)
