"""Fragments: table contents stored as content-addressed objects, and applied back into tables.

An object is a table splitgraph_meta."<object_id>" with the table's columns plus `sg_ud_flag` (true: upsert the
row, false: delete the row with this key). A table version is an ordered list of objects; applying them in
order rebuilds the table. Every data movement here is one set-based statement; Python only builds SQL and
handles per-object metadata.
"""
import json

from . import db, errors, hashing
from . import tables as tbl
from .names import FLAG_COLUMN, ident, literal

META = "splitgraph_meta"
DEFAULT_CHUNK_SIZE = 10000
# Hashing a large table is CPU-bound: let every core take part even though fresh tables have no statistics.
PARALLEL = {"parallel_setup_cost": "0", "parallel_tuple_cost": "0", "min_parallel_table_scan_size": "0"}


def object_table(object_id):
    return f"{META}.{ident(object_id)}"


def object_source(object_id, cols, alias, as_caller=False):
    """A FROM item reading an object: its table, or, for code running with its caller's rights (who may not
    read object tables), splitgraph_internal.fragment_rows with the object's column definitions."""
    if not as_caller:
        return f"{object_table(object_id)} {alias}"
    return (f"splitgraph_internal.fragment_rows({literal(object_id)}) as {alias} ("
            f"{fragment_columns(cols).replace(' not null', '')})")


def fragment_columns(cols):
    """The columns of an object table: the table's (as stored), then the upsert/delete flag."""
    return tbl.select_list(tbl.storage_definitions(cols), f"{FLAG_COLUMN} boolean not null")


def fragment_column_list(cols):
    """The names of an object table's columns (fragment_columns), for an INSERT."""
    return tbl.select_list(tbl.column_list(cols), FLAG_COLUMN)


# ---------------------------------------------------------------------------------------------------------------
# Hashing and indexing, in SQL
# ---------------------------------------------------------------------------------------------------------------

def _ranges_sql(cols, alias="s", where=None):
    """jsonb {column: [min, max]} over the rows of a group (those where `where` holds), for columns whose values
    order."""
    parts = []
    only = f" filter (where {where})" if where else ""
    for i, c in enumerate(cols):
        if c.ranged:
            expr = f'{alias}.c{i}' + (' collate "C"' if c.collatable else "")
            parts.append(f"pg_catalog.jsonb_build_object({literal(c.name)}, "
                         f"pg_catalog.jsonb_build_array(min({expr}){only}, max({expr}){only}))")
    return " || ".join(parts) if parts else "'{}'::jsonb"


def _hash_query(relation, cols, group=None, where=None, prefix="t."):
    """The query of hash_groups (columns HASH_COLUMNS, g only with a group)."""
    ranged = ", ".join(f"{c.stored(prefix + ident(c.name))} as c{i}" for i, c in enumerate(cols) if c.ranged)
    digest = f"pg_catalog.sha256(pg_catalog.convert_to({tbl.row_text(cols, prefix)}, 'UTF8'))"
    # the volatile column keeps the planner from pulling the subquery up, which would compute the digest once for
    # every lane (a subquery whose output list calls a volatile function is never pulled up); unlike a
    # set-returning projection it builds no array per row, and unlike OFFSET 0 it keeps the partial aggregates in
    # parallel workers
    inner = (f"select {group + ' as g, ' if group else ''}{digest} as h, pg_catalog.clock_timestamp() as sg_once"
             f"{', ' + ranged if ranged else ''} from {relation} t"
             f"{' where ' + where if where else ''}")
    return (f"select {'s.g, ' if group else ''}count(*) as n, {hashing.lane_sums_sql('s.h', 'l')}, "
            f"({_ranges_sql(cols)})::text as ranges from ({inner}) s{' group by s.g' if group else ''}")


# The columns of a grouped _hash_query whose group is an integer (as the second session returns them).
HASH_COLUMNS = ("g integer, n bigint, " + ", ".join(f"l{i} bigint" for i in range(hashing.LANES))
                + ", ranges text")


def _hashed(rows, grouped):
    result = {}
    for r in rows:
        result[r["g"] if grouped else None] = {
            "rows": r["n"],
            "insertion_hash": hashing.to_hex(r[f"l{i}"] or 0 for i in range(hashing.LANES)),
            "range": json.loads(r["ranges"]) if r["n"] else {},
        }
    return result


def hash_groups(plpy, relation, cols, group=None, where=None, prefix="t.", parallel=False):
    """Per group of rows of `relation` (aliased t): n, the insertion hash and the range index.

    Columns are read as `prefix` + name. Each row's sha256 is computed once (in a subquery the planner keeps:
    _hash_query) and its lanes are summed with plain aggregates, which parallel workers compute in partial
    aggregates when `parallel` is set.
    """
    with db.settings(plpy, PARALLEL if parallel else {}):
        rows = db.run(plpy, _hash_query(relation, cols, group, where, prefix))
    return _hashed(rows, group is not None)


def stage_rows(plpy, staging_sql, cols, source, rows):
    """Parse the rows of an object's dump into `staging_sql` (its table: `cols` as stored, then the flag), and hash
    its upserts. `source` is a FROM item yielding each row's text form, flag included, from $1 = `rows`. An upsert
    is hashed as the text it arrived as, less its flag (`,t)`): for a dump made from an object, exactly the text
    of the row's values that the object's id was computed over, so that the rows parsed from it (and stored) are
    those rows; hashing the text received spares printing every row again. Returns {rows, insertion_hash, range,
    deleted, odd}: odd counts the upserts whose flag is not written `,t)` (whose text is not what dumps write, and
    which were not hashed: the caller refuses the dump)."""
    db.run(plpy, f"insert into {staging_sql} select (r).* from (select x::{staging_sql} as r from {source} as x "
                 "where x <> '' offset 0) s", rows)
    upserts = f"from {source} as x where pg_catalog.right(x, 3) = ',t)'"
    digest = "pg_catalog.sha256(pg_catalog.convert_to(pg_catalog.left(x, -3) || ')', 'UTF8'))"
    # the digests of up to hashing.MAX_SUMMED upserts come back concatenated and are summed by hashing.lane_sums
    # (far fewer operations than SQL's sum of each byte); the rows of a larger object are hashed again and summed
    # in SQL, so that nothing returned grows with the size of an object
    text = db.run(plpy, f"""
        select count(*) as n, pg_catalog.string_agg(s.h, ''::bytea) filter (where s.i <= {hashing.MAX_SUMMED}) as hs
        from (select {digest} as h, pg_catalog.row_number() over () as i {upserts}) s""", rows)[0]
    if text["n"] <= hashing.MAX_SUMMED:
        lanes = hashing.lane_sums(bytes(text["hs"] or b""))
    else:
        # each digest is computed once: a set-returning projection keeps the planner from repeating it for every
        # lane
        summed = db.run(plpy, f"""
            select {hashing.lane_sums_sql('s.h', 'l')} from (select pg_catalog.unnest(array[{digest}]) as h
                                                            {upserts}) s""", rows)[0]
        lanes = [summed[f"l{i}"] or 0 for i in range(hashing.LANES)]
    ranged = ", ".join(f"t.{ident(c.name)} as c{i}" for i, c in enumerate(cols) if c.ranged)
    parsed = db.run(plpy, f"""
        select count(*) filter (where s.flag) as n, count(*) filter (where not s.flag) as deleted,
               ({_ranges_sql(cols, where="s.flag")})::text as ranges
        from (select t.{FLAG_COLUMN} as flag{', ' + ranged if ranged else ''} from {staging_sql} t) s""")[0]
    return {"rows": parsed["n"], "deleted": parsed["deleted"], "odd": parsed["n"] - text["n"],
            "insertion_hash": hashing.to_hex(lanes), "range": json.loads(parsed["ranges"]) if parsed["n"] else {}}


def _bloom_groups(plpy, relation, cols, group, spec, prefix="t."):
    """Per group: {column: [k, base64 bitmap]} Bloom filters for the columns `spec` configures.

    A value's bit positions are (h1 + i*h2) mod m for i < k, h1 and h2 being the first two big-endian 32-bit
    words of sha256 of the UTF-8 bytes of its text; bit p is bit (p mod 8) of byte p/8.
    """
    result = {}
    by_name = {c.name: c for c in cols}
    for name, options in spec.items():
        col = by_name[name]
        if "probability" in options:
            sizing = (f"greatest(8, ceil(-c.d * ln({float(options['probability'])}) / (ln(2) ^ 2) / 8) * 8)::bigint")
        else:
            sizing = f"{int(options['size']) * 8}::bigint"
        query = f"""
            with v as (select distinct {group + ' as g' if group else 'null::int as g'},
                              pg_catalog.sha256(pg_catalog.convert_to(({prefix}{ident(col.name)})::text, 'UTF8')) as hb
                       from {relation} t where {prefix}{ident(col.name)} is not null),
                 c as (select g, count(*) as d from v group by g),
                 p as (select g, m, greatest(1, round(m::float8 / d * ln(2)))::int as k
                       from (select g, d, {sizing} as m from c) z),
                 pos as (select v.g, ((('x' || encode(substring(v.hb from 1 for 4), 'hex'))::bit(32)::bigint
                                      + i * ('x' || encode(substring(v.hb from 5 for 4), 'hex'))::bit(32)::bigint)
                                     % p.m) as pos
                         from v join p on p.g is not distinct from v.g
                         cross join lateral pg_catalog.generate_series(0, p.k - 1) as i),
                 b as (select g, pos / 8 as byte_no, bit_or(1 << (pos % 8)::int) as bits from pos group by g, pos / 8)
            select p.g, p.k, pg_catalog.encode(pg_catalog.decode((
                       select pg_catalog.string_agg(pg_catalog.lpad(pg_catalog.to_hex(coalesce(b.bits, 0)), 2, '0'),
                                                    '' order by s.n)
                       from pg_catalog.generate_series(0, p.m / 8 - 1) as s(n)
                       left join b on b.g is not distinct from p.g and b.byte_no = s.n), 'hex'), 'base64') as bitmap
            from p"""
        for r in db.run(plpy, query):
            result.setdefault(r["g"], {})[name] = [r["k"], r["bitmap"].replace("\n", "")]
    return result


def bloom_filters(plpy, relation, cols, spec):
    """{column: [k, base64 bitmap]}: the Bloom filters `spec` configures, of all the rows of `relation`."""
    return _bloom_groups(plpy, relation, cols, None, spec).get(None, {})


def _indexes(plpy, hashed, relation, cols, group, bloom_spec, prefix="t."):
    blooms = _bloom_groups(plpy, relation, cols, group, bloom_spec, prefix) if bloom_spec else {}
    out = {}
    for g, h in hashed.items():
        index = {"range": h["range"]}
        if bloom_spec:
            index["bloom"] = blooms.get(g, {})
        out[g] = index
    return out


# ---------------------------------------------------------------------------------------------------------------
# Registering objects
# ---------------------------------------------------------------------------------------------------------------

def claim_objects(plpy, objects):
    """Of `objects` (dicts with object_id, namespace, rows_inserted, rows_deleted, insertion_hash, deletion_hash,
    index, table_schema), register those not registered yet and return their ids: the caller stores their tables
    in this transaction, then calls record_sizes. The others are locked against cleanup() until the transaction
    ends. Row locks on the extension's own table order this work: no other role can take them, and two writers of
    the same new object serialize on its row (the second waits, then finds it registered).
    An object registered without its rows (by a lazy clone, on another engine's word) counts as new: the caller
    stores it, and its metadata becomes the caller's, computed from the rows."""
    ids = sorted({o["object_id"] for o in objects})
    if not ids:
        return set()
    kept = set(db.column(plpy, f"""select object_id from {META}.objects where object_id = any($1::text[])
                                   order by object_id for key share""", ids))
    rowless = _claim_rowless(plpy, [o for o in objects if o["object_id"] in kept])
    new = list({o["object_id"]: o for o in objects if o["object_id"] not in kept}.values())
    claimed = set(db.column(plpy, f"""
        insert into {META}.objects (object_id, namespace, rows_inserted, rows_deleted, insertion_hash, deletion_hash,
                                    index, table_schema)
        select u.id, u.ns, u.ins::bigint, u.del::bigint, u.ih, u.dh, u.idx::jsonb, u.sch::jsonb
        from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[],
                    $8::text[]) as u(id, ns, ins, del, ih, dh, idx, sch)
        order by u.id
        on conflict (object_id) do nothing
        returning object_id""",
        [o["object_id"] for o in new], [o["namespace"] for o in new], [str(o["rows_inserted"]) for o in new],
        [str(o["rows_deleted"]) for o in new], [o["insertion_hash"] for o in new], [o["deletion_hash"] for o in new],
        [json.dumps(o["index"]) for o in new], [json.dumps(o["table_schema"]) for o in new]))
    lost = sorted({o["object_id"] for o in new} - claimed)
    if lost:
        # registered by a concurrent transaction that committed while this one waited
        db.run(plpy, f"select from {META}.objects where object_id = any($1::text[]) order by object_id "
                     "for key share", lost)
        rowless |= _claim_rowless(plpy, [o for o in new if o["object_id"] in set(lost)])
    return claimed | rowless


def _claim_rowless(plpy, objects):
    """Of registered `objects`, those whose table is not stored here (registered by a lazy clone): locked against
    concurrent storers (a download, another commit), checked again, and given the metadata of `objects`."""
    by_id = {o["object_id"]: o for o in objects}
    rowless = db.column(plpy, f"""select u.id from pg_catalog.unnest($1::text[]) as u (id)
                                  where pg_catalog.to_regclass(pg_catalog.format('{META}.%I', u.id)) is null
                                  order by u.id""", sorted(by_id))
    if not rowless:
        return set()
    db.run(plpy, f"select from {META}.objects where object_id = any($1::text[]) order by object_id "
                 "for no key update", rowless)
    still = [by_id[i] for i in db.column(plpy, f"""
        select u.id from pg_catalog.unnest($1::text[]) as u (id)
        where pg_catalog.to_regclass(pg_catalog.format('{META}.%I', u.id)) is null order by u.id""", rowless)]
    db.run(plpy, f"""
        update {META}.objects o
        set rows_inserted = u.ins::bigint, rows_deleted = u.del::bigint, insertion_hash = u.ih, deletion_hash = u.dh,
            index = u.idx::jsonb, table_schema = u.sch::jsonb
        from unnest($1::text[], $2::text[], $3::text[], $4::text[], $5::text[], $6::text[], $7::text[])
             as u (id, ins, del, ih, dh, idx, sch)
        where o.object_id = u.id""",
           [o["object_id"] for o in still], [str(o["rows_inserted"]) for o in still],
           [str(o["rows_deleted"]) for o in still], [o["insertion_hash"] for o in still],
           [o["deletion_hash"] for o in still], [json.dumps(o["index"]) for o in still],
           [json.dumps(o["table_schema"]) for o in still])
    still = {o["object_id"] for o in still}
    return set(still)


def record_sizes(plpy, object_ids):
    """Read the sizes of freshly stored object tables into their metadata."""
    if object_ids:
        db.run(plpy, f"""update {META}.objects
                         set size = pg_catalog.pg_total_relation_size(pg_catalog.format('%I.%I', '{META}',
                                                                                         object_id)::regclass)
                         where object_id = any($1::text[])""", sorted(object_ids))


def schema_spec(cols):
    return [[c.ordinal, c.name, c.type, c.is_pk] for c in cols]


# ---------------------------------------------------------------------------------------------------------------
# Snapshots: a table's rows as base fragments of at most chunk_size rows, by key range
# ---------------------------------------------------------------------------------------------------------------

# Every object stored is a new table, which with its TOAST table and index and the locks of filling it holds
# about five locks until the transaction ends, in the lock table that all sessions share. PostgreSQL sizes that
# table for max_locks_per_transaction x (max_connections + max_prepared_transactions) locks and lets it grow
# into spare shared memory; measured with the defaults, a commit of 3,000 objects took 41 s and one of 8,000
# exhausted shared memory and broke another session. One call may create objects holding at most twice the
# table's nominal size (1,280 objects at max_connections 50, 2,560 at 100): enough for a 10M-row table in
# chunks of 10,000 rows.
LOCKS_PER_OBJECT = 5


def object_limit(plpy):
    """How many objects one call (a commit) may create: see LOCKS_PER_OBJECT."""
    slots = db.scalar(plpy, """select pg_catalog.current_setting('max_locks_per_transaction')::bigint
                                      * (pg_catalog.current_setting('max_connections')::bigint
                                         + pg_catalog.current_setting('max_prepared_transactions')::bigint)""")
    return max(1, 2 * slots // LOCKS_PER_OBJECT)


def store_snapshot(plpy, schema, table, cols, chunk_size, namespace, bloom_spec=None, max_objects=None,
                   second=None, source=None):
    """Store the rows of schema.table as base fragments; returns their object ids in key order.

    Identical rows give identical objects, so storing the same data twice (anywhere) adds no object. More than
    max_objects chunks (when given) is refused (54000) before anything is stored. Only what reading runs no code
    is read, and only what the caller may read (tables.source). `second`: a second_session.SecondSession that
    may hash the rows while this session copies them (the commit's; see that module for when it may). `source`: a
    relation of the extension's own to read instead (a temporary table it filled, of the columns as stored), for a
    table named `table`.
    """
    tbl.check_storable(plpy, table, cols)
    own = source is None
    source = tbl.source(plpy, schema, table) if own else source
    bounds = None
    clustered = False
    if own and tbl.key_columns(cols) and tbl.ordered_by_index(plpy, schema, table, cols):
        # an index gives the chunks; only the last one's rows are counted (no scan of the whole table)
        bounds = _walk_bounds(plpy, source, cols, chunk_size)
        count = _walked_count(plpy, source, cols, chunk_size, bounds)
        clustered = _clustered(plpy, schema, table, cols, source)
    else:
        count = db.scalar(plpy, f"select count(*) from {source}")
    if count == 0:
        return []
    chunks = -(-count // chunk_size)
    if max_objects is not None and chunks > max_objects:
        limit = object_limit(plpy)
        errors.fail(plpy, errors.PROGRAM_LIMIT_EXCEEDED,
                    f'table "{table}" would be stored as {chunks} objects ({count} rows in chunks of chunk_size '
                    f"{chunk_size}), and this call may create only {max(max_objects, 0)} more objects (at most {limit} "
                    "in all)",
                    hint=f"use a larger chunk_size (at least {-(-count // max(max_objects, 1))} rows for this table)"
                         + ("" if max_objects == limit else ", or commit fewer tables at a time"),
                    detail=f"each object is a table holding about {LOCKS_PER_OBJECT} locks until the commit ends; "
                           "the limit is 2/5 of max_locks_per_transaction x (max_connections + "
                           "max_prepared_transactions), the lock table all sessions share")
    if count <= chunk_size:
        return _store_single(plpy, source, cols, namespace, bloom_spec)
    if tbl.key_columns(cols):
        return _store_partitioned(plpy, source, cols, chunk_size, namespace, bloom_spec, second, count, bounds,
                                  clustered)
    return _store_numbered(plpy, source, cols, chunk_size, namespace, bloom_spec)


def _new_object(g, hashed, index, cols, namespace):
    h = hashed[g]
    return {
        "object_id": hashing.object_id(h["insertion_hash"], hashing.ZERO, schema_spec(cols)),
        "namespace": namespace, "rows_inserted": h["rows"], "rows_deleted": 0,
        "insertion_hash": h["insertion_hash"], "deletion_hash": hashing.ZERO,
        "index": index[g], "table_schema": schema_spec(cols),
    }


def _store_single(plpy, source, cols, namespace, bloom_spec):
    """One chunk: hash the source first, so data already stored is never copied."""
    hashed = hash_groups(plpy, source, cols)
    index = _indexes(plpy, hashed, source, cols, None, bloom_spec)
    obj = _new_object(None, hashed, index, cols, namespace)
    if claim_objects(plpy, [obj]):
        plpy.execute(f"create table {object_table(obj['object_id'])} as "
                     f"select {tbl.select_list(tbl.stored_list(cols, 't.'), f'true as {FLAG_COLUMN}')} from {source} t")
        record_sizes(plpy, [obj["object_id"]])
    return [obj["object_id"]]


# Planner settings of the index walks: never a sort or a scan of the whole table (and no JIT, which the cost
# these settings give the plans that would do so could otherwise turn on).
WALK = {"enable_seqscan": "off", "enable_bitmapscan": "off", "jit": "off"}


def _walk_bounds(plpy, source, cols, chunk_size):
    """The key of every chunk's first row, as SQL literals, in key order, read from an index of the table that
    gives its rows in key order (tables.ordered_by_index): each chunk's first key is the row chunk_size rows
    after the last one's (the key is unique), so the index is read once and nothing is numbered or sorted."""
    key = tbl.key_columns(cols)
    literals = ", ".join(f"pg_catalog.quote_literal(s.k{i}::text) as b{i}" for i in range(len(key)))
    keys = ", ".join(f"t.{ident(c.name)} as k{i}" for i, c in enumerate(key))
    order = tbl.ordering(cols, "t.")
    after = _key_compared(cols, ">=", [f"b.k{i}" for i in range(len(key))])
    with db.settings(plpy, WALK):
        rows = db.run(plpy, f"""
            with recursive b as (
                (select 0 as n, {keys} from {source} t order by {order} limit 1)
                union all
                select b.n + 1, x.* from b cross join lateral (
                    select {keys} from {source} t where {after} order by {order} offset {int(chunk_size)} limit 1) x)
            select {literals} from b s order by s.n""")
    return [[r[f"b{i}"] for i in range(len(key))] for r in rows]


def _key_compared(cols, op, values):
    """A condition on rows t: their key compared by `op` with `values` (SQL expressions), in chunk order."""
    exprs = [c.order_expr("t.") for c in tbl.key_columns(cols)]
    if len(exprs) == 1:
        return f"{exprs[0]} {op} {values[0]}"
    return f"row({', '.join(exprs)}) {op} row({', '.join(values)})"


def _walked_count(plpy, source, cols, chunk_size, bounds):
    """The number of rows, from the chunk bounds a walk found: full chunks, and the last chunk's rows counted."""
    if not bounds:
        return 0
    with db.settings(plpy, WALK):
        last = db.scalar(plpy, f"select count(*) from {source} t where {_key_compared(cols, '>=', bounds[-1])}")
    return (len(bounds) - 1) * chunk_size + last


# A table whose rows lie in about the order of its key (the planner's statistics say so) is copied chunk by chunk,
# each chunk read through the key index: the index then reads the table's pages about in order, once in all.
CLUSTERED = 0.9


def _clustered(plpy, schema, table, cols, source):
    """Whether the planner's statistics say that the rows of the plain table schema.table lie in about the order
    of its key's first column (correlation at least CLUSTERED): then reading each chunk through the key index
    reads the table's pages about once, in order (_copy_ranges)."""
    if not source.startswith("only "):
        return False
    first = tbl.key_columns(cols)[0]
    return bool(db.scalar(plpy, """
        select coalesce(pg_catalog.abs(s.correlation) >= $4, false) from pg_catalog.pg_stats s
        where s.schemaname = $1 and s.tablename = $2 and s.attname = $3 and not s.inherited""",
                          schema, table, first.name, CLUSTERED))


def _copy_ranges(plpy, source, cols, bounds, names):
    """Copy each chunk of `source` (a table ordered_by_index and _clustered) into its own table: chunk i (of
    bounds, in chunk order) into splitgraph_meta.names[i], as CREATE TABLE AS of the rows of its key range read
    through the key index (no row is routed, and a new table is written the cheapest way). Chunks whose name is
    None are not copied."""
    with db.settings(plpy, WALK):
        _execute_in_batches(plpy, _range_copies(source, cols, bounds, names))


def _range_copies(source, cols, bounds, names, schema=META):
    """The statements of _copy_ranges: CREATE TABLE schema.names[i] AS the rows of chunk i's key range."""
    statements = []
    for i, name in enumerate(names):
        if name is None:
            continue
        where = [_key_compared(cols, ">=", bounds[i])] if i > 0 else []
        where += [_key_compared(cols, "<", bounds[i + 1])] if i < len(bounds) - 1 else []
        statements.append(f"create table {schema}.{ident(name)} as select "
                          f"{tbl.select_list(tbl.stored_list(cols, 't.'), f'true as {FLAG_COLUMN}')} from {source} t"
                          + (" where " + " and ".join(where) if where else ""))
    return statements


def _chunk_bounds(plpy, source, cols, chunk_size):
    """The key of every chunk's first row, as SQL literals, in key order: every row numbered in key order."""
    key = tbl.key_columns(cols)
    literals = ", ".join(f"pg_catalog.quote_literal(s.k{i}::text) as b{i}" for i in range(len(key)))
    keys = ", ".join(f"t.{ident(c.name)} as k{i}" for i, c in enumerate(key))
    rows = db.run(plpy, f"""
        select {literals} from (
            select {keys}, row_number() over (order by {tbl.ordering(cols, 't.')}) as rn from {source} t
        ) s where (s.rn - 1) % {int(chunk_size)} = 0 order by s.rn""")
    return [[r[f"b{i}"] for i in range(len(key))] for r in rows]


# Statements run in one call keep their memory until the call ends: creating or detaching a partition of a table
# with a thousand partitions takes about 1 MB, so a 10M-row table's chunks in one call took 0.9 GB.
DDL_BATCH = 25


def _execute_in_batches(plpy, statements):
    for i in range(0, len(statements), DDL_BATCH):
        plpy.execute(";\n".join(statements[i:i + DDL_BATCH]))


def _partition(plpy, source, cols, bounds, chunks=None, where=None):
    """Copy the rows of `source` into one partition per chunk (range partitioning on the key, so one pass
    routes every row); returns the partition names in chunk order and the parent's name. `chunks` limits the
    copy to those chunk numbers (0-based), `where` filters the rows copied."""
    key = tbl.key_columns(cols)
    parent = db.temp_name("sg_tmp")
    parent_sql = f"{META}.{ident(parent)}"
    ddl = [f"create table {parent_sql} ({tbl.storage_definitions(cols)}, {FLAG_COLUMN} boolean not null default "
           f"true) partition by range ({', '.join(c.order_expr() for c in tbl.as_stored(key))})"]
    lowest = "(" + ", ".join(["minvalue"] * len(key)) + ")"
    highest = "(" + ", ".join(["maxvalue"] * len(key)) + ")"
    parts = []
    for i in range(len(bounds)):
        part = f"{parent}_{i}"
        parts.append(part)
        if chunks is None or i in chunks:
            lo = lowest if i == 0 else "(" + ", ".join(bounds[i]) + ")"
            hi = highest if i == len(bounds) - 1 else "(" + ", ".join(bounds[i + 1]) + ")"
            ddl.append(f"create table {META}.{ident(part)} partition of {parent_sql} for values from {lo} to {hi}")
    _execute_in_batches(plpy, ddl)
    plpy.execute(f"insert into {parent_sql} ({tbl.column_list(cols)}) select {tbl.stored_list(cols, 't.')} "
                 f"from {source} t{' where ' + where if where else ''}")
    return parts, parent_sql


def _keep_partitions(plpy, parent_sql, parts, objects, keep):
    """Detach the partitions, rename those in `keep` (chunk numbers) to their object ids, drop the rest."""
    ddl = [f"alter table {parent_sql} detach partition {META}.{ident(parts[i])}" for i in sorted(keep)]
    ddl.append(f"drop table {parent_sql}")
    ddl += [f"alter table {META}.{ident(parts[i])} rename to {ident(objects[i]['object_id'])}" for i in sorted(keep)]
    _execute_in_batches(plpy, ddl)


def _keep_tables(plpy, names, objects, keep):
    """Rename the tables of the chunks in `keep` (chunk numbers) to their object ids, drop the rest."""
    kept = set(keep)
    _execute_in_batches(plpy, [f"alter table {META}.{ident(name)} rename to {ident(objects[i]['object_id'])}"
                               if i in kept else f"drop table {META}.{ident(name)}" for i, name in enumerate(names)])


def _new_chunks(plpy, objects):
    """Chunk numbers whose object this transaction stores (the first of identical chunks only)."""
    claimed = claim_objects(plpy, objects)
    new = []
    for i, obj in enumerate(objects):
        if obj["object_id"] in claimed:
            claimed.discard(obj["object_id"])
            new.append(i)
    return new


def _chunk_number(key, bounds):
    """The number of the chunk a row t falls in (from 0), by its one key column `key`, found by binary search over
    the chunk bounds (SQL literals of each chunk's first key)."""
    first_keys = "array[" + ", ".join(b[0] for b in bounds) + f"]::{key.storage}[]"
    return f"pg_catalog.width_bucket({key.order_expr('t.')}, {first_keys}) - 1"


def _store_partitioned(plpy, source, cols, chunk_size, namespace, bloom_spec, second=None, count=None,
                       bounds=None, clustered=False):
    """Tables with a primary key. With a one-column key, the source is hashed first (in parallel, each row's
    chunk found by binary search over the chunk bounds), so only chunks not stored yet are copied, in one pass
    that routes their rows into a partition per chunk; or, with a second session (and `count`, the number of
    rows), it hashes the source while this session copies every chunk, and the chunks stored already are
    dropped after. With a composite key, all rows are routed first and the partitions hashed. `bounds`: the
    chunk bounds when known already (_walk_bounds); `clustered`: they were, and the table is _clustered, so each
    chunk is copied by its key range (_copy_ranges) instead of routed."""
    key = tbl.key_columns(cols)
    bounds = bounds if bounds is not None else _chunk_bounds(plpy, source, cols, chunk_size)
    if len(key) == 1:
        chunk_of = _chunk_number(key[0], bounds)
        if second is not None and count is not None and second.send(
                plpy, _hash_query(source, cols, group=chunk_of), HASH_COLUMNS, lock=source):
            if clustered:
                parts = [db.temp_name("sg_tmp") for _ in bounds]
                _copy_ranges(plpy, source, cols, bounds, parts)
            else:
                parts, parent_sql = _partition(plpy, source, cols, bounds)
            hashed = _hashed_by_second(plpy, second, count, chunk_size, len(bounds))
            if hashed is None:
                hashed = hash_groups(plpy, source, cols, group=chunk_of, parallel=True)
            index = _indexes(plpy, hashed, source, cols, chunk_of, bloom_spec)
            objects = [_new_object(i, hashed, index, cols, namespace) for i in range(len(bounds))]
            new = _new_chunks(plpy, objects)
            if clustered:
                _keep_tables(plpy, parts, objects, new)
            else:
                _keep_partitions(plpy, parent_sql, parts, objects, new)
            record_sizes(plpy, [objects[i]["object_id"] for i in new])
            return [o["object_id"] for o in objects]
        hashed = hash_groups(plpy, source, cols, group=chunk_of, parallel=True)
        index = _indexes(plpy, hashed, source, cols, chunk_of, bloom_spec)
        objects = [_new_object(i, hashed, index, cols, namespace) for i in range(len(bounds))]
        new = _new_chunks(plpy, objects)
        if new and clustered:
            kept = set(new)
            _copy_ranges(plpy, source, cols, bounds,
                         [o["object_id"] if i in kept else None for i, o in enumerate(objects)])
        elif new:
            only = None if len(new) == len(bounds) else f"{chunk_of} = any(array{new}::int[])"
            parts, parent_sql = _partition(plpy, source, cols, bounds, set(new), only)
            _keep_partitions(plpy, parent_sql, parts, objects, new)
    else:
        parts, parent_sql = _partition(plpy, source, cols, bounds)
        names = {r["oid"]: r["relname"] for r in db.run(plpy, """
            select c.oid::bigint as oid, c.relname::text as relname from pg_catalog.pg_inherits i
            join pg_catalog.pg_class c on c.oid = i.inhrelid where i.inhparent = $1::regclass""", parent_sql)}
        stored = tbl.as_stored(cols)  # the partitions hold the values as stored
        by_oid = hash_groups(plpy, parent_sql, stored, group="t.tableoid::bigint", parallel=True)
        index_by_oid = _indexes(plpy, by_oid, parent_sql, stored, "t.tableoid::bigint", bloom_spec)
        chunk_no = {name: i for i, name in enumerate(parts)}
        hashed = {chunk_no[names[g]]: h for g, h in by_oid.items()}
        index = {chunk_no[names[g]]: v for g, v in index_by_oid.items()}
        objects = [_new_object(i, hashed, index, cols, namespace) for i in range(len(parts))]
        new = _new_chunks(plpy, objects)
        _keep_partitions(plpy, parent_sql, parts, objects, new)
    record_sizes(plpy, [objects[i]["object_id"] for i in new])
    return [o["object_id"] for o in objects]


def _hashed_by_second(plpy, second, count, chunk_size, chunks):
    """The sums the second session computed (hash_groups' result), or None when it failed or when its rows do
    not add up to the chunks this session counted (each holds chunk_size rows, the last the rest)."""
    rows = second.wait(plpy)
    if rows is None:
        return None
    hashed = _hashed(rows, True)
    expected = {i: chunk_size if i < chunks - 1 else count - (chunks - 1) * chunk_size for i in range(chunks)}
    if {g: h["rows"] for g, h in hashed.items()} != expected:
        second.stop(plpy, "its rows did not add up to this session's chunks")
        return None
    return hashed


def _store_numbered(plpy, source, cols, chunk_size, namespace, bloom_spec):
    """Tables without a primary key: number the rows in key order into a temporary table (whole rows, so no
    column name can clash), hash each chunk, and copy out the chunks that are new."""
    stage = "pg_temp." + ident(db.temp_name("sg_tmp"))
    plpy.execute(f"create table {stage} as select ((row_number() over (order by {tbl.ordering(cols, 't.')}) - 1) "
                 f"/ {int(chunk_size)})::int as chunk, t as r from {source} t")
    plpy.execute(f"create index on {stage} (chunk)")
    hashed = hash_groups(plpy, stage, cols, group="t.chunk", prefix="(t.r).")
    index = _indexes(plpy, hashed, stage, cols, "t.chunk", bloom_spec, prefix="(t.r).")
    chunks = sorted(hashed)
    objects = [_new_object(g, hashed, index, cols, namespace) for g in chunks]
    claimed = claim_objects(plpy, objects)
    stored = []
    for g, obj in zip(chunks, objects, strict=True):
        if obj["object_id"] in claimed:
            claimed.discard(obj["object_id"])
            stored.append(obj["object_id"])
            plpy.execute(f"create table {object_table(obj['object_id'])} as select "
                         f"{tbl.select_list(tbl.stored_list(cols, '(s.r).'), f'true as {FLAG_COLUMN}')} from {stage} s "
                         f"where s.chunk = {int(g)}")
    plpy.execute(f"drop table {stage}")
    record_sizes(plpy, stored)
    return [o["object_id"] for o in objects]


# ---------------------------------------------------------------------------------------------------------------
# Applying fragments
# ---------------------------------------------------------------------------------------------------------------

def object_rows(plpy, object_ids):
    """Metadata of the given objects, in the given order; an error names any that is unknown or not stored."""
    rows = db.run(plpy, f"""
        select u.id as object_id, o.object_id is not null as registered,
               pg_catalog.to_regclass(pg_catalog.format('%I.%I', '{META}', u.id)) is not null as stored,
               coalesce(o.rows_deleted = 0 and o.deletion_hash = $2, false) as inserts_only
        from pg_catalog.unnest($1::text[]) with ordinality as u(id, n)
        left join {META}.objects o on o.object_id = u.id
        order by u.n""", list(object_ids), hashing.ZERO)
    for r in rows:
        if not r["registered"]:
            errors.fail(plpy, errors.UNDEFINED_OBJECT, f"object {r['object_id']} is not registered on this engine")
        if not r["stored"]:
            errors.fail(plpy, errors.UNDEFINED_OBJECT, f"object {r['object_id']} is registered but not stored here",
                        hint="download it first (pull with download_all, or load_object)")
    return list(rows)


def _runs(objects):
    """Consecutive objects that only insert rows no earlier fragment has form one run (one INSERT ... UNION ALL);
    others are applied one by one."""
    runs = []
    for o in objects:
        if o["inserts_only"] and runs and runs[-1][0]:
            runs[-1][1].append(o["object_id"])
        else:
            runs.append((o["inserts_only"], [o["object_id"]]))
    return runs


def restored_list(cols, prefix):
    """The stored values of `prefix` as the columns' types (a SELECT list naming each)."""
    return ", ".join(c.restored(prefix + ident(c.name)) + (f" as {ident(c.name)}" if c.sql_type != c.storage else "")
                     for c in cols)


def _union(object_ids, cols, quals=None, as_caller=False, selected=None):
    """The rows of the objects (columns `cols`): `selected` columns (default: all) as their types."""
    where = f" where ({quals})" if quals else ""
    items = restored_list(cols if selected is None else selected, "f.")
    return " union all ".join(f"select {items} from {object_source(o, cols, 'f', as_caller)}{where}"
                              for o in object_ids)


def key_match(cols, target="t", fragment="f"):
    key = tbl.key_columns(cols)
    if key:
        return " and ".join(f"{target}.{ident(c.name)} = {c.restored(fragment + '.' + ident(c.name))}" for c in key)
    return f"{tbl.row_text(cols, target + '.')} = {tbl.row_text(cols, fragment + '.')}"


def insert_into(target, cols):
    """INSERT INTO the target's columns that take values: generated columns compute theirs, and identity
    columns GENERATED ALWAYS take the stored ones."""
    written = [c for c in cols if not c.generated]
    overriding = " overriding system value" if any(c.identity == "a" for c in written) else ""
    return f"insert into {target} ({tbl.column_list(written)}){overriding}", written


def apply_to_table(plpy, target, cols, objects, quals=None, as_caller=False, only=False):
    """Apply objects (rows of object_rows) in order to an existing table `target` (qualified SQL name) whose
    columns are `cols`; as_caller: the code runs with its caller's rights and reads the objects through
    fragment_rows; only: rows are deleted from the table itself, not from its inheritance children."""
    insert, written = insert_into(target, cols)
    for inserts_only, ids in _runs(objects):
        if not inserts_only:
            source = object_source(ids[0], cols, "f", as_caller)
            plpy.execute(f"delete from {'only ' if only else ''}{target} t using {source} where {key_match(cols)}")
            where = f"f.{FLAG_COLUMN}" + (f" and ({quals})" if quals else "")
            plpy.execute(f"{insert} select {restored_list(written, 'f.')} from {source} where {where}")
        else:
            plpy.execute(f"{insert} {_union(ids, cols, quals, as_caller, written)}")


# A few keys looked up in large tables: by their indexes (a hash join would read every row of each table), and
# without JIT compilation (estimates of fresh temporary tables make such a plan look costly enough to compile, and
# compiling one branch per object takes seconds).
BY_KEY = {"enable_hashjoin": "off", "enable_mergejoin": "off", "jit": "off"}
# Looking a few keys up in many objects, one branch each: without JIT compilation nor parallel workers (starting
# them costs more than the few index probes of each branch).
LOOKUP = {"jit": "off", "max_parallel_workers_per_gather": "0"}


# A delta shared by two images is indexed by key for a nearby checkout only when it holds this many times more rows
# than the keys looked up in it.
LARGE_DELTA = 8


def key_index(object_id):
    """The name of an object's index on its table's key (built once, when a lookup by key needs it)."""
    return "k" + object_id[1:]


def index_keys(plpy, object_ids, cols):
    """Give each object that has none an index on the table's key. It is derived from the rows, which never
    change (nor does the object's id); the metadata rows of the objects to index are locked first (sorted), so two
    sessions never index one object at once."""
    key = tbl.key_columns(cols)
    missing = f"""select u.id from pg_catalog.unnest($1::text[]) as u (id)
                  where pg_catalog.to_regclass(pg_catalog.format('%I.%I', '{META}', 'k' || pg_catalog.substr(u.id, 2)))
                        is null
                  order by u.id"""
    todo = db.column(plpy, missing, sorted(set(object_ids))) if key else []
    if not todo:
        return
    db.run(plpy, f"select from {META}.objects where object_id = any($1::text[]) order by object_id for no key update",
           todo)
    for object_id in db.column(plpy, missing, todo):
        plpy.execute(f"create index {ident(key_index(object_id))} on {object_table(object_id)} "
                     f"({tbl.column_list(key)})")


def difference(plpy, cols, common, old, new):
    """What turns a table made of the objects common + old into one made of common + new (the two lists share
    the prefix `common`; cols: the table's columns, with a primary key): (keys, rows), two temporary tables
    dropped at the end of the transaction that session_user may read. keys: every key the objects `old` or `new`
    write; rows: for each of them, the row it has in common + new, or (sg_ud_flag false) none. Only those keys are
    looked up: in `new` first, newest first, then in `common` by its objects' key indexes, each object for the
    keys within its key range (literals: the planner then sees how few rows each object gives)."""
    key = tbl.key_columns(cols)
    first = key[0]
    keys, rows = (ident(db.temp_name(prefix)) for prefix in ("sg_keys", "sg_rows"))
    key_list = tbl.column_list(key)
    # in key order: the rows of the keys are then found (and deleted) in the order of the table's key index
    counted = plpy.execute(f"create temp table {keys} on commit drop as select * from ("
                           + " union ".join(f"select {tbl.column_list(key, 'f.')} from {object_table(o)} f"
                                            for o in old + new)
                           + f") k order by {key_list}").nrows()
    match = " and ".join(f"f.{ident(c.name)} = k.{ident(c.name)}" for c in key)
    columns = fragment_column_list(cols)
    values = tbl.select_list(tbl.column_list(cols, "f."), f"f.{FLAG_COLUMN}")

    def newest(sources, into):
        return (f"{into} select distinct on ({key_list}) {columns} from ("
                + " union all ".join(sources) + f") x order by {key_list}, x.sg_n desc")

    rest = keys  # the keys `new` does not write
    if new:
        written = [f"select {values}, {n} as sg_n from {keys} k join {object_table(o)} f on {match}"
                   for n, o in enumerate(new)]
        found = plpy.execute(newest(written, f"create temp table {rows} on commit drop as")).nrows()
        if found < counted:
            rest = ident(db.temp_name("sg_rest"))
            plpy.execute(f"create temp table {rest} on commit drop as select k.* from {keys} k where not exists "
                         f"(select from {rows} f where {match})")
    else:
        found = 0
        plpy.execute(f"create temp table {rows} on commit drop as select {columns} from {object_table(old[0])} "
                     "with no data")
    if found < counted:
        shared = {r["object_id"]: r for r in db.run(plpy, f"""
            select o.object_id, o.index -> 'range' -> $2 ->> 0 as low, o.index -> 'range' -> $2 ->> 1 as high,
                   coalesce(o.rows_deleted = 0 and o.deletion_hash = $3, false) as inserts_only,
                   o.rows_inserted + o.rows_deleted as written
            from {META}.objects o where o.object_id = any($1::text[])""", common, first.name, hashing.ZERO)}

        def ranged(o):
            return first.ranged and shared[o]["low"] is not None and shared[o]["high"] is not None

        def by_key(o):
            # a chunk of a snapshot is probed for the few keys within its range; a delta only when it is much
            # larger than the keys looked up (else a hash of the keys joined with its rows costs less than
            # probing it key by key, and than indexing it)
            return (ranged(o) and shared[o]["inserts_only"]) or shared[o]["written"] > LARGE_DELTA * (counted - found)

        index_keys(plpy, [o for o in common if by_key(o)], cols)
        plpy.execute(f"create index on {rest} ({first.order_expr()})")

        def lookup(n, o):
            within = ""
            if ranged(o):
                low, high = (f"{literal(shared[o][b])}::{first.storage}" for b in ("low", "high"))
                within = f" where {first.order_expr('k.')} between {low} and {high}"
            if within and shared[o]["inserts_only"]:
                # a chunk of a snapshot: the few keys within its range, each by its key index
                if len(key) == 1:
                    # one index scan of the chunk for an array of them (ranged types have array types)
                    return (f"select {values}, {n} as sg_n from {object_table(o)} f where f.{ident(first.name)} = "
                            f"any(array(select k.{ident(first.name)} from {rest} k{within}))")
                # (OFFSET 0 keeps the subquery a lookup per key)
                return (f"select {values}, {n} as sg_n from (select * from {rest} k{within}) k "
                        f"cross join lateral (select * from {object_table(o)} f where {match} offset 0) f")
            # a delta, whose keys usually spread over the table's: joined as the planner sees fit (by a hash of the
            # keys when it is small, by its key index when it is large)
            return f"select {values}, {n} as sg_n from {rest} k join {object_table(o)} f on {match}"
        branches = [lookup(n, o) for n, o in enumerate(common)]
        with db.settings(plpy, LOOKUP):
            if all(shared[o]["inserts_only"] for o in common):
                # objects that only insert rows no earlier one has: each key is in one of them at most
                statement = f"insert into {rows} select {columns} from (" + " union all ".join(branches) + ") x"
            else:
                statement = newest(branches, f"insert into {rows}")
            found += plpy.execute(statement).nrows()
        if found < counted:
            # a key no object holds has no row
            missing = tbl.select_list(*(f"k.{ident(c.name)}" if c.is_pk else "null" for c in cols), "false")
            plpy.execute(f"insert into {rows} select {missing} from {rest} k "
                         f"where not exists (select from {rows} f where {match})")
    plpy.execute(f"grant select on pg_temp.{keys}, pg_temp.{rows} to session_user")
    return f"pg_temp.{keys}", f"pg_temp.{rows}"


def gap_columns(cols):
    """Placeholder columns (definitions, names) for the ordinals no column has, so that a table made with them,
    once they are dropped, numbers its columns (attnums) as the stored schema does."""
    taken = {c.name for c in cols}
    ordinals = {c.ordinal for c in cols}
    gaps = []
    for n in range(1, max(ordinals, default=0)):
        if n not in ordinals:
            name = f"sg_gap_{n}"
            while name in taken:
                name += "_"
            gaps.append((n, name))
    return gaps


def materialize(plpy, schema, table, cols, object_ids, primary_key=None, keep_ordinals=False, objects=None,
                as_caller=False):
    """Create schema.table (columns `cols`, of their sql_type) from its fragments: the leading base fragments
    in one CREATE TABLE AS, then the primary key (named primary_key, or as Postgres names it), then the rest
    applied in order. keep_ordinals: the columns get their stored ordinals as attnums; objects: their
    object_rows when known already; as_caller: the code runs with its caller's rights (see apply_to_table)."""
    target = f"{ident(schema)}.{ident(table)}"
    objects = object_rows(plpy, object_ids) if objects is None else objects
    runs = _runs(objects)
    gaps = gap_columns(cols) if keep_ordinals else []
    in_order = sorted([(c.ordinal, c) for c in cols] + [(n, name) for n, name in gaps], key=lambda x: x[0])
    if runs and runs[0][0]:
        # each SELECT lists the columns, placeholders among them, in ordinal order
        def item(c):
            if isinstance(c, str):
                return f"null::integer as {ident(c)}"
            return c.restored(f"f.{ident(c.name)}") + f" as {ident(c.name)}"

        select = tbl.select_list(*(item(c) for _, c in in_order))
        plpy.execute(f"create table {target} as " + " union all ".join(
            f"select {select} from {object_source(o, cols, 'f', as_caller)}" for o in runs[0][1]))
        objects = objects[len(runs[0][1]):]
    else:
        plpy.execute(f"create table {target} (" + tbl.select_list(*(
            f"{ident(c)} integer" if isinstance(c, str) else c.definition() for _, c in in_order)) + ")")
    changes = [f"drop column {ident(name)}" for _, name in gaps]
    key = tbl.key_columns(cols)
    if key:
        named = f"constraint {ident(primary_key)} " if primary_key else ""
        changes.append(f"add {named}primary key ({tbl.column_list(key)})")
    if changes:
        plpy.execute(f"alter table {target} " + ", ".join(changes))
    apply_to_table(plpy, target, cols, objects, as_caller=as_caller)
    comment_columns(plpy, target, cols)


def comment_columns(plpy, target, cols):
    statements = [f"comment on column {target}.{ident(c.name)} is {literal(c.comment)}" for c in cols if c.comment]
    if statements:
        plpy.execute(";\n".join(statements))


def layered_select(cols, objects, as_caller=False):
    """A SELECT of the table's rows from its fragments (rows of object_rows, in order): the latest fragment row
    of each key wins, and deletions hide the key. as_caller: for code running with its caller's rights, which
    reads the objects through fragment_rows."""
    ids = [o["object_id"] for o in objects]
    if not objects:
        nulls = ", ".join(f"null::{c.sql_type} as {ident(c.name)}" for c in cols)
        return f"select {nulls} where false"
    if all(o["inserts_only"] for o in objects):
        return _union(ids, cols, as_caller=as_caller)
    numbered = " union all ".join(
        f"select {n} as sg_fragment_no, {tbl.column_list(cols, 'f.')}, f.{FLAG_COLUMN} "
        f"from {object_source(o, cols, 'f', as_caller)}" for n, o in enumerate(ids))
    key = tbl.key_columns(cols)
    distinct = tbl.column_list(key, "u.") if key else tbl.row_text(cols, "u.")
    return (f"select {restored_list(cols, 'v.')} from (select distinct on ({distinct}) u.* from ({numbered}) u "
            f"order by {distinct}, u.sg_fragment_no desc) v where v.{FLAG_COLUMN}")


# ---------------------------------------------------------------------------------------------------------------
# Deltas: one fragment of a table's net changes since its last commit
# ---------------------------------------------------------------------------------------------------------------

