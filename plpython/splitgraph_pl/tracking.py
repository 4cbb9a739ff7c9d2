"""Change tracking: the machinery that logs every change to a table (its net changes are computed in changes.py,
the pending-change API is pending.py).

Statement-level triggers (sql/20_internal/03_tracking.sql) append to a table's audit table: the old values of
updated and deleted rows (kind 0) and the keys written by inserts and updates (kind 1). A key's first record
tells its state when tracking began: kind 0 means the row existed with those values, kind 1 means it did not.
Joining that with the live table by key gives the net change per key, so that inserting then deleting a row,
updating a row back to its values, or deleting and re-inserting an identical row are no change at all.

Audit tables are UNLOGGED: logging a change writes no WAL. A crash empties them, so each holds a sentinel row
(kind 2) from the moment tracking starts: a log without its sentinel was lost, and its table is committed as a
snapshot (state "lost") instead of trusting an empty log.
"""
from . import db, errors, names
from . import tables as tbl
from .names import ident

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
    audit = f"{AUDIT}.{ident(db.temp_name('changes'))}"
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


def logged(plpy, tracked):
    """Whether anything was logged for a table since tracking (re)started."""
    return db.scalar(plpy, f"select exists (select from {tracked['audit_table']} where sg_audit_kind < {SENTINEL})")


