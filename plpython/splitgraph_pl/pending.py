"""Pending changes: what changed in tracked tables since tracking (re)started, or in a checkout since HEAD, and
the change-tracking API on any schema (a checked-out repository's tables are tracked automatically).

The trigger machinery that logs changes is tracking.py; the Delta that net changes are computed into is
changes.py.
"""
from . import changes, db, errors, meta, names, tracking
from . import tables as tbl
from .declare import api
from .names import ident, literal


def _check_caller_owns(plpy, schema, table):
    if meta.caller_is_admin(plpy):
        return
    owns = db.scalar(plpy, """select pg_catalog.pg_has_role(session_user, c.relowner, 'USAGE')
                              from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                              where n.nspname = $1 and c.relname = $2""", schema, table)
    if not owns:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'only the owner of "{schema}"."{table}" may change '
                                                         "its tracking")


_UNKNOWN_BECAUSE = {
    "altered": "it was altered (ALTER TABLE) since tracking began",
    "lost": "its log did not survive a crash, or it was not tracked before",
    "untrusted": "its log may have missed writes (a tracking trigger was dropped, replaced or disabled, it gained "
                 "inheritance relatives, or it was restored from a dump)",
    "compared": "it is partitioned, has inheritance relatives or is too wide to log, and is compared with HEAD",
}


@api("track_tables(schema text, tables text[]) returns void",
     "track_tables(schema, tables): log every change to the tables (statement-level triggers); a table already "
     "tracked keeps its log")
def track_tables(plpy, schema, tables):
    repo = meta.repository_of_schema(plpy, schema)
    for table in tables or []:
        tbl.require(plpy, schema, table)
        _check_caller_owns(plpy, schema, table)
        if db.scalar(plpy, f"""select exists (select from {tracking.AUDIT}.tracked
                                              where schema_name = $1 and table_name = $2
                                              and relid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text,
                                                                                 $2::text)))""", schema, table):
            continue
        # A checkout's table that was not tracked may already differ from HEAD: its log starts untrusted, so
        # the next commit stores it as a snapshot and status compares it with HEAD. Elsewhere there is no HEAD to
        # compare with: a table whose changes cannot be logged row by row is refused.
        tracking.track(plpy, schema, table, state="lost" if repo is not None else "tracking",
                       compare=repo is not None)


@api("untrack_tables(schema text, tables text[]) returns void",
     "untrack_tables(schema, tables): stop tracking the tables and drop their logs")
def untrack_tables(plpy, schema, tables):
    for table in tables or []:
        if tbl.exists(plpy, schema, table):
            _check_caller_owns(plpy, schema, table)
        tracking.untrack(plpy, schema, table)


@api("tracked_tables() returns table (schema_name text, table_name text)",
     "tracked_tables(): every table whose changes are logged",
     volatility="stable")
def tracked_tables(plpy):
    """Tracked tables under their current names (a rename does not stop a table being tracked... until its next
    commit, as any ALTER TABLE makes it a snapshot)."""
    return db.run(plpy, f"""select n.nspname::text as schema_name, c.relname::text as table_name
                            from {tracking.AUDIT}.tracked t
                            join pg_catalog.pg_class c on c.oid = t.relid
                            join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                            order by 1, 2""")


def _changed(plpy, schema, table, t):
    if t["state"] != "tracking":
        return True
    return changes.has_changes(plpy, t, schema, table, tbl.columns(plpy, schema, table))


@api("changed_tables(schema text) returns text[]",
     "changed_tables(schema): names of the tables with pending changes (of those the caller may read)")
def changed_tables(plpy, schema):
    """Tables the caller may not read are left out: their changes are theirs to know."""
    repo = meta.repository_of_schema(plpy, schema)
    if repo is not None:
        return changed_tables_of(plpy, repo, readable_only=True)
    return [table for table, t in sorted(tracking.schema_tracking(plpy, schema).items())
            if tbl.readable(plpy, schema, table) and _changed(plpy, schema, table, t)]


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
    """Fill a temporary table with the net changes of a tracked table; returns its name. The caller must be able
    to read the table (42501)."""
    tbl.require(plpy, schema, table_name)
    tbl.source(plpy, schema, table_name)
    t = tracking.registry(plpy, schema, table_name)
    if t is None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f'table "{schema}"."{table_name}" is not tracked',
                    hint="start tracking it with splitgraph.track_tables")
    cols = tbl.columns(plpy, schema, table_name)
    if t["state"] != "tracking":
        d = changes.head_comparison(plpy, meta.repository_of_schema(plpy, schema), table_name, cols)
        if d is None:
            errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                        f'the changes of table "{schema}"."{table_name}" are no longer known row by row: '
                        + _UNKNOWN_BECAUSE[t["state"]],
                        hint="discard them to track it afresh, commit it (as a snapshot), or compare versions with "
                             "splitgraph.diff")
    else:
        d = changes.from_log(plpy, t, schema, table_name, cols)
        if d is None:
            d = changes.keyless_listing(plpy, t, cols)
    name = db.temp_name("sg_changes")
    plpy.execute(f"create temp table {ident(name)} (pk jsonb, change_type text, row_data jsonb, added integer, "
                 "removed integer, updated integer)")

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
                   case when d.present then {changes.json_object(cols, 'd', 'n')}
                        else {changes.json_object(cols, 'd', 'o')} end
            from {d.relation} d""")
    d.drop(plpy)
    return name


@api("discard_pending_changes(schema text, table_name text default null) returns void",
     "discard_pending_changes(schema, table_name): forget the logged changes of tracked tables (the data stays "
     "as it is); a checkout's changes are undone with reset")
def discard_pending_changes(plpy, schema, table_name=None):
    """Forget logged changes (the data stays as it is). A checkout's changes are undone with reset instead:
    forgetting them would let the checkout drift from its HEAD unnoticed. Each table is locked against writers
    before its log is read, so a write committed meanwhile is either forgotten with the rest or logged after."""
    tracking.require_read_committed(plpy, "discard_pending_changes")
    repo = meta.repository_of_schema(plpy, schema)
    if table_name is not None:
        tbl.require(plpy, schema, table_name)
    if repo is not None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'schema "{schema}" is the checkout of repository "{repo}"',
                    hint="commit the changes, or undo them with splitgraph.reset")
    candidates = [table_name] if table_name is not None else tracking.tracked_names(plpy, schema)
    for name in candidates:
        _check_caller_owns(plpy, schema, name)
    if candidates:
        plpy.execute("lock table " + ", ".join(names.qualified(schema, t) for t in sorted(candidates))
                     + " in share mode")
    tracked = tracking.schema_tracking(plpy, schema)
    if table_name is not None and table_name not in tracked:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f'table "{schema}"."{table_name}" is not tracked')
    for name, t in tracked.items():
        if table_name is None or name == table_name:
            _check_caller_owns(plpy, schema, name)
            tracking.restart(plpy, t, compare=False)


def changed_tables_of(plpy, repo, readable_only=False):
    """Tables of a checkout whose contents or schema differ from HEAD (cheap: no counting). readable_only leaves
    out the live tables the caller may not read (without looking at them)."""
    state = meta.checkout_state(plpy, repo)
    if state is None or state["layered"]:
        return []
    schema = names.schema_of(repo)
    head = meta.image_tables(plpy, repo, state["image_hash"])
    live = tbl.list_tables(plpy, schema)
    if readable_only:
        live = [table for table in live if tbl.readable(plpy, schema, table)]
        head = {table: v for table, v in head.items() if table in live or not tbl.exists(plpy, schema, table)}
    tracked = tracking.schema_tracking(plpy, schema)
    changed = []
    for table in sorted(set(head) | set(live)):
        t = tracked.get(table)
        if table not in head or table not in live:
            changed.append(table)
            continue
        cols = tbl.columns(plpy, schema, table)
        if not tbl.same_schema(head[table].spec, cols):
            changed.append(table)
        elif t is None or t["state"] != "tracking":
            # changes the log does not know row by row: compare with HEAD
            if changes.differs_from_head(plpy, repo, table, cols):
                changed.append(table)
        elif tracking.logged(plpy, t) and changes.has_changes(plpy, t, schema, table, cols):
            changed.append(table)  # (nothing logged: no change, without computing the empty Delta)
    return changed


