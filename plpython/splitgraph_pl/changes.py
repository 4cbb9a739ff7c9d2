"""Net changes of a table: the Delta, a temporary table whose layout this module owns, and what is made of it.

A Delta holds, per changed key (or, without a primary key, per changed row): existed (the row existed before),
present (it exists now), ho / hn (sha256 of the old and new row texts), o0.. (old values) and n0.. (new values),
the columns in the table's order. It comes from a table's change log (from_log), or from comparing the table
with a stored version of it (compared, head_comparison); it becomes a delta fragment (store_delta,
store_changes) or rows of a diff or of the pending-change listing (json_object over its value columns).
"""
import json

from . import db, errors, fragments, hashing, meta, names, tracking
from . import tables as tbl
from .fragments import META, claim_objects, fragment_column_list, fragment_columns, record_sizes, schema_spec
from .names import ident, literal
from .tracking import KEY, NEW, OLD, SENTINEL


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


def keyed_changes(plpy, tracked, schema, table, cols):
    """The SELECT of the net changes of a tracked table with a primary key (the rows of a Delta), from each touched
    key's first logged record (its state before tracking) and its last (its state now: a NEW record's values, gone
    after an OLD record, or the live row of that key when the key has a KEY record). Only keys of that last kind
    are looked up in the table, one by one by its key (a scalar subquery, evaluated only for them, which the planner
    cannot turn into a scan of the whole table): the pages of rows that were updated or deleted are never read.
    The log is read twice (for the first and the last records, each sorted once) rather than materialized, and the
    pairs are hashed in one pass: each row once (old values from the first record, new values from the last one
    or from the live row)."""
    key = tbl.key_columns(cols)
    keys = tbl.column_list(key, "a.")
    log = tracking.log_rows(plpy, tracked, cols)
    target = names.qualified(schema, table)
    # x.live: for a last KEY record, the live row of its key as a value of the table's row type (null when gone)
    live = [f"(x.live).{ident(c.name)}" for c in cols]
    present = f"case when x.last = {KEY} then (x.live).{ident(key[0].name)} is not null else x.last = {NEW} end"
    olds, lasts = (", ".join(f"x.{side}{i}" for i in range(len(cols))) for side in ("o", "l"))
    # the case unites the live row's types with the log's as a UNION would (the log keeps the table's types, domains
    # as their base types: tracking.track)
    news = ", ".join(f"case when x.last = {KEY} then {v} when x.last = {NEW} then x.l{i} end as n{i}"
                     for i, v in enumerate(live))
    join = " and ".join(f"t.{ident(c.name)} = l.{ident(c.name)}" for c in key)
    match = " and ".join(f"l.{ident(c.name)} = f.{ident(c.name)}" for c in key)
    return f"""
        with f as (select distinct on ({keys}) a.* from {log} a order by {keys}, a.sg_audit_stmt, a.sg_audit_kind),
        l as (select distinct on ({keys}) a.* from {log} a
              order by {keys}, (a.sg_audit_kind = {KEY}) desc, a.sg_audit_stmt desc, a.sg_audit_kind desc),
        x as (
            select f.sg_audit_kind = {OLD} as existed, l.sg_audit_kind as last,
                   {", ".join(f"f.{ident(c.name)} as o{i}" for i, c in enumerate(cols))},
                   {", ".join(f"l.{ident(c.name)} as l{i}" for i, c in enumerate(cols))},
                   case when l.sg_audit_kind = {KEY} then (select row(t.*)::{target} from only {target} t where {join})
                   end as live
            from f join l on {match}
            offset 0)  -- each live row is looked up once
        select * from (
            select x.existed, {present} as present,
                   case when x.existed then {digest(f'row({olds})::text')} end as ho,
                   case when x.last = {NEW} then {digest(f'row({lasts})::text')}
                        when x.last = {KEY} and {present} then {digest(f'row({", ".join(live)})::text')}
                   end as hn,
                   {olds}, {news}
            from x
            offset 0  -- each row is hashed once, not again for the filter below
        ) d
        where existed <> present or ho is distinct from hn"""


def from_log(plpy, tracked, schema, table, cols):
    """The net changes logged for a table still tracked with the same columns: a Delta, or None when only a
    snapshot can record them (a table without a primary key whose changed rows have duplicates)."""
    name = db.temp_name("sg_delta")
    relation = f"pg_temp.{ident(name)}"
    target = "only " + names.qualified(schema, table)  # a logged table is a plain table without relatives
    key = tbl.key_columns(cols)
    if key:
        plpy.execute(f"create temp table {ident(name)} as {keyed_changes(plpy, tracked, schema, table, cols)}")
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
        return None
    plpy.execute(f"update {relation} set {', '.join(f'o{i} = null' for i in range(len(cols)))} where not existed")
    plpy.execute(f"update {relation} set {', '.join(f'n{i} = null' for i in range(len(cols)))} where not present")
    return result


def compared(plpy, base, target, cols):
    """A Delta of the differences of `target` (a live table's FROM item: tables.source) from `base` (a relation
    with the same columns, e.g. HEAD's version materialized), found by comparing every row: for tables whose log
    cannot be trusted."""
    if len(cols) > tracking.MAX_LOGGED_COLUMNS:
        errors.fail(plpy, errors.PROGRAM_LIMIT_EXCEEDED,
                    f"a table of {len(cols)} columns is too wide to list its changes row by row (at most "
                    f"{tracking.MAX_LOGGED_COLUMNS} columns)",
                    hint="compare versions with splitgraph.diff, or commit the table")
    name = db.temp_name("sg_delta")
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
    name = db.temp_name("sg_delta")
    plpy.execute(f"""
        create temp table {ident(name)} as
        select x.n < 0 as existed, x.n > 0 as present,
               {tbl.select_list(_values(cols, "f", "o", "x.n < 0"), _values(cols, "f", "n", "x.n > 0"))}
        from {_net_logged_rows(tracked, cols)}
        cross join lateral pg_catalog.generate_series(1, abs(x.n)) copies""")
    return Delta(name, cols, [])


def net_content_hash(plpy, tracked, schema, table, cols):
    """The content hash of the net changes logged for a tracked table (what they add less what they remove, as
    content hashes sum), or None when the log cannot say (a table without a primary key whose changed rows have
    duplicates)."""
    lanes = ", ".join(hashing.lane_sums_sql(f"s.{h}", h) for h in ("hn", "ho"))
    if tbl.key_columns(cols):
        row = db.one(plpy, f"select {lanes} from ({keyed_changes(plpy, tracked, schema, table, cols)}) s")
    else:
        delta = from_log(plpy, tracked, schema, table, cols)
        if delta is None:
            return None
        row = db.one(plpy, f"select {lanes} from {delta.relation} s")
        delta.drop(plpy)
    return hashing.content_hash(hashing.to_hex(row[f"hn{i}"] or 0 for i in range(hashing.LANES)),
                                hashing.to_hex(row[f"ho{i}"] or 0 for i in range(hashing.LANES)))


def has_changes(plpy, tracked, schema, table, cols):
    """Whether the log of a tracked table holds any net change."""
    d = from_log(plpy, tracked, schema, table, cols)
    if d is None:
        return True
    try:
        return d.changed(plpy)
    finally:
        d.drop(plpy)


# ---------------------------------------------------------------------------------------------------------------
# Compared with a stored version, and shown as JSON
# ---------------------------------------------------------------------------------------------------------------

def json_object(cols, alias, prefix):
    """jsonb object of the columns `prefix`0.. of `alias`, keyed by the column names (in parts of 50 pairs, as
    jsonb_build_object takes at most 100 arguments)."""
    pairs = [f"{literal(c.name)}, {alias}.{prefix}{i}" for i, c in enumerate(cols)]
    parts = [f"pg_catalog.jsonb_build_object({', '.join(pairs[i:i + 50])})" for i in range(0, len(pairs), 50)]
    return " || ".join(parts) if parts else "'{}'::jsonb"


def materialized(plpy, version, made):
    """A temporary table holding a stored TableVersion, or None for a missing table; its name is added to
    `made`, for the caller to drop (drop_all)."""
    if version is None:
        return None
    name = db.temp_name("sg_side")
    cols = tbl.as_trusted(tbl.from_spec(plpy, version.spec, version.definition))
    fragments.materialize(plpy, "pg_temp", name, cols, version.object_ids)
    made.append(f"pg_temp.{ident(name)}")
    return made[-1]


def drop_all(plpy, made):
    if made:
        plpy.execute("drop table if exists " + ", ".join(made))


def _head_version(plpy, repo, table, cols):
    """HEAD's TableVersion of a checkout's table, when it has the same columns; else None."""
    state = meta.checkout_state(plpy, repo) if repo is not None else None
    if state is None:
        return None
    head = meta.image_tables(plpy, repo, state["image_hash"]).get(table)
    if head is None or not tbl.same_schema(head.spec, cols):
        return None
    return head


def head_comparison(plpy, repo, table, cols):
    """For a table of a checkout whose log is not trusted: a Delta of its differences from HEAD, found by
    comparing every row; None when HEAD lacks the table or had other columns."""
    head = _head_version(plpy, repo, table, cols)
    if head is None:
        return None
    target = tbl.source(plpy, names.schema_of(repo), table)
    made = []
    try:
        return compared(plpy, materialized(plpy, head, made), target, cols)
    finally:
        drop_all(plpy, made)


def differs_from_head(plpy, repo, table, cols):
    """Whether a checkout's table differs from HEAD's version of it, found by comparing every row (the text of
    each, so that a table of any width compares); True when HEAD lacks the table or had other columns."""
    head = _head_version(plpy, repo, table, cols)
    if head is None:
        return True
    target = tbl.source(plpy, names.schema_of(repo), table)
    made = []
    try:
        base = materialized(plpy, head, made)
        rows = lambda alias: f'{tbl.row_text(cols, alias + ".")} collate "C"'  # noqa: E731
        return db.scalar(plpy, f"""
            select exists (select {rows('t')} from {target} t except all select {rows('b')} from {base} b)
                or exists (select {rows('b')} from {base} b except all select {rows('t')} from {target} t)""")
    finally:
        drop_all(plpy, made)


def same_content(plpy, target, cols, object_ids):
    """Whether the rows of `target` (a FROM item: tables.source) hash to the content hash of these objects (the
    sum of their content hashes): one pass over the table, nothing materialized."""
    live = fragments.hash_groups(plpy, target, cols).get(None)
    stored = db.run(plpy, f"""select o.insertion_hash, o.deletion_hash from pg_catalog.unnest($1::text[]) u(id)
                              join {META}.objects o on o.object_id = u.id""", list(object_ids))
    if stored.nrows() != len(object_ids):
        return False
    head = hashing.total(hashing.content_hash(r["insertion_hash"], r["deletion_hash"]) for r in stored)
    return (live["insertion_hash"] if live else hashing.ZERO) == head


# ---------------------------------------------------------------------------------------------------------------
# A Delta as one fragment of the table's net changes since its last commit
# ---------------------------------------------------------------------------------------------------------------

def _delta_object(row, cols, namespace):
    insertion = hashing.to_hex(row[f"hn{i}"] or 0 for i in range(hashing.LANES))
    deletion = hashing.to_hex(row[f"ho{i}"] or 0 for i in range(hashing.LANES))
    return {
        "object_id": hashing.object_id(insertion, deletion, schema_spec(cols)), "namespace": namespace,
        "rows_inserted": row["upserts"], "rows_deleted": row["removed"], "insertion_hash": insertion,
        "deletion_hash": deletion, "index": {"range": json.loads(row["ranges"])}, "table_schema": schema_spec(cols),
    }


def _summary_columns(cols):
    """The columns of a delta summary but its digests' sums (see _delta_summary), over the delta's rows `s`."""
    ranges = []
    for i, c in enumerate(cols):
        if c.ranged:
            new, old = (c.stored(f"s.{v}{i}") + (' collate "C"' if c.collatable else "") for v in ("n", "o"))
            low = f"least(min({new}) filter (where s.present), min({old}) filter (where s.existed))"
            high = f"greatest(max({new}) filter (where s.present), max({old}) filter (where s.existed))"
            ranges.append(f"pg_catalog.jsonb_build_object({literal(c.name)}, "
                          f"pg_catalog.jsonb_build_array({low}, {high}))")
    return f"""count(*) filter (where s.present) as upserts,
               count(*) filter (where s.existed and not s.present) as deletes,
               count(*) filter (where s.existed) as removed,
               ({" || ".join(ranges) if ranges else "'{}'::jsonb"})::text as ranges"""


def _delta_summary(cols, relation):
    """One pass over a delta's rows: upsert and delete counts, the old rows it removes (deleted or overwritten,
    so that a table's length is the sum of its fragments' rows_inserted - rows_deleted), the rows' digests summed
    lane by lane (hn: the new rows, ho: the old values overwritten or deleted), and a range index spanning new and
    old values."""
    lanes = ", ".join(hashing.lane_sums_sql(f"s.{h}", h) for h in ("hn", "ho"))
    return f"select {_summary_columns(cols)}, {lanes} from {relation} s"


def _small_delta_summary(cols, relation):
    """_delta_summary in two rows, of which the one whose `path` equals its `small` holds the summary: a delta of
    at most hashing.MAX_SUMMED rows returns its digests concatenated (hn, ho: bytea) for hashing.lane_sums, which
    sums them in far fewer operations than SQL can (lane_sums_sql reads each of their bytes apart); a larger one
    has them summed in SQL (hn0 .., ho0 ..), so that no value grows with the size of a delta."""
    sums = [f"null::bigint as {h}{i}" for h in ("hn", "ho") for i in range(hashing.LANES)]
    small = f"(select c.small from {relation}_count c)"
    return f"""{relation}_count as (select count(*) <= {hashing.MAX_SUMMED} as small
                                   from (select from {relation} limit {hashing.MAX_SUMMED + 1}) n)
        select true as path, {small} as small, {_summary_columns(cols)},
               pg_catalog.string_agg(s.hn, ''::bytea) as hn, pg_catalog.string_agg(s.ho, ''::bytea) as ho,
               {", ".join(sums)}
        from {relation} s where {small}
        union all
        select false, {small}, {_summary_columns(cols)}, null::bytea, null::bytea,
               {", ".join(hashing.lane_sums_sql(f"s.{h}", h) for h in ("hn", "ho"))}
        from {relation} s where not {small}"""


def _summed(rows):
    """The summary row of _small_delta_summary's rows, its digests summed (hn0 .., ho0 ..)."""
    row = dict(next(r for r in rows if r["path"] == r["small"]))
    if row["path"]:
        for h in ("hn", "ho"):
            row.update((f"{h}{i}", lane) for i, lane in enumerate(hashing.lane_sums(bytes(row[h] or b""))))
    return row


def _fragment_rows(cols, relation):
    """The rows of a delta fragment: new values of present rows as upserts, keys of removed ones as deletes."""
    key = {c.name for c in (tbl.key_columns(cols) or cols)}
    keys_or_null = ", ".join(c.stored(f"o{i}") if c.name in key else "null" for i, c in enumerate(cols))
    news = ", ".join(c.stored(f"n{i}") for i, c in enumerate(cols))
    return (f"""select {tbl.select_list(news, "true")} from {relation} where present
                union all
                select {tbl.select_list(keys_or_null, "false")} from {relation} where existed and not present""")


def _keep_staging(plpy, staging, obj):
    """Rename a staged fragment to its object id, or drop it when that object is already stored."""
    if claim_objects(plpy, [obj]):
        plpy.execute(f"alter table {staging} rename to {ident(obj['object_id'])}")
        record_sizes(plpy, [obj["object_id"]])
    else:
        plpy.execute(f"drop table {staging}")
    return obj["object_id"]


def store_delta(plpy, cols, delta, namespace):
    """Store a Delta as one fragment: the new values of changed and added rows as upserts, the
    keys of removed rows as deletions. Its insertion hash covers the upserted rows, its deletion hash the old
    values of every row it overwrites or deletes, so content hashes keep summing to the table's hash."""
    obj = _delta_object(db.one(plpy, _delta_summary(cols, delta.relation)), cols, namespace)
    if claim_objects(plpy, [obj]):
        target = f"{META}.{ident(obj['object_id'])}"
        plpy.execute(f"""
            create table {target} ({fragment_columns(cols)});
            insert into {target} ({fragment_column_list(cols)})
            {_fragment_rows(cols, delta.relation)}""")
        record_sizes(plpy, [obj["object_id"]])
    return obj["object_id"]


def store_changes(plpy, cols, changes_sql, namespace):
    """store_delta for a table with a primary key, in one statement: the net changes (changes_sql, the SELECT
    of keyed_changes) are written to a staged fragment and summarized in the same pass. Returns the
    object id, or None when nothing changed after all."""
    staging = f"{META}.{ident(db.temp_name('sg_tmp'))}"
    plpy.execute(f"create table {staging} ({fragment_columns(cols)})")
    row = _summed(db.run(plpy, f"""
        with d as materialized ({changes_sql}),
             written as (insert into {staging} ({fragment_column_list(cols)})
                         {_fragment_rows(cols, "d")}),
             {_small_delta_summary(cols, "d")}"""))
    if row["upserts"] == 0 and row["deletes"] == 0:
        plpy.execute(f"drop table {staging}")
        return None
    return _keep_staging(plpy, staging, _delta_object(row, cols, namespace))
