"""Reading an image where it is stored: the tables of a mounted image (mount_image) and of a layered checkout are
views, owned by the extension, over the image's objects.

What makes them fast is derived from the objects once and shared by every image that uses them. None of it changes
an object's rows or id (objects never change, so neither does what is derived from them):
- every object gets, once, CHECK constraints from its rows' minimum and maximum of each column whose values order
  (constraint exclusion reads them, so a filter on any column skips the chunks that cannot match), and, for a
  table with a primary key, an index on the key;
- the leading objects of a table version that only insert rows (the chunks of a snapshot) are attached as
  partitions of a *layer*: a table partitioned by ranges of the key, shared by every object with the same
  columns. A filter on the key finds its chunk by partition pruning before the planner opens any other chunk, so
  planning a lookup does not grow with the number of chunks. A view selects its own chunks of a layer by table
  oid (other images' chunks may lie in the same layer);
- the objects after them (deltas) are *squashed* into one table holding the newest row of each key they touch
  (deletions included), shared by every table version with the same deltas: the view reads the chunks' rows whose
  key the squash does not hold, and the squash's upserts. The squash is a copy of the deltas only;
- when the deltas outweigh the chunks (select), the table version is read from a *copy* built once from its
  objects, and later versions that add a few deltas read that copy and a squash of those.
A table without a primary key reads its objects directly when every object only inserts rows; otherwise a copy of
the table version, built once from its objects exactly as a checkout builds it.

Squashes and copies live in splitgraph_meta (like objects, no other role can name them); they are dropped once no
view depends on them (drop_unused). Layers stay (an empty one costs nothing). Objects a view reads are depended on
by it, so cleanup() cannot drop them while it exists.
"""
import hashlib
import json

from . import db, errors, fragments
from . import tables as tbl
from .fragments import META, object_table
from .names import FLAG_COLUMN, ident, literal

# How many layers the objects of one column layout may spread over (objects whose key ranges overlap every
# layer's are squashed with the deltas instead).
MAX_LAYERS = 16
_C = ' collate "C"'
# Marks an object prepared for reading: its CHECK constraint of value ranges.
RANGES = "sg_ranges"
# The state of an object table's columns: a layer and its partitions must agree on them.
_LAYOUT = f"""
    select u.id, pg_catalog.jsonb_agg(pg_catalog.jsonb_build_array(
               a.attname, pg_catalog.format_type(a.atttypid, a.atttypmod), a.attcollation::pg_catalog.regcollation,
               a.attnotnull) order by a.attnum)::text as layout
    from pg_catalog.unnest($1::text[]) as u (id)
    join pg_catalog.pg_attribute a on a.attrelid = pg_catalog.format('%I.%I', '{META}', u.id)::pg_catalog.regclass
    where a.attnum > 0 and not a.attisdropped
    group by u.id"""


def relation(name):
    """A read structure's qualified name."""
    return f"{META}.{ident(name)}"


def _content_name(prefix, *parts):
    """A name derived from what a structure holds: the prefix and 62 hex digits."""
    return prefix + hashlib.sha256(json.dumps(parts, sort_keys=True).encode("utf-8")).hexdigest()[:62]


def key_index(object_id):
    """The name of an object's key index (a nearby checkout builds the same index: fragments.index_keys)."""
    return fragments.key_index(object_id)


# ---------------------------------------------------------------------------------------------------------------
# Preparing objects
# ---------------------------------------------------------------------------------------------------------------

def prepare(plpy, object_ids, cols):
    """Give each object not prepared yet its CHECK constraint of value ranges and, for a table with a primary
    key, its key index. The ranges are the object's range index (a text column's in the "C" collation, as it is
    computed), checked against every row as the constraint is added; should they not hold, they are computed from
    the rows instead. The key columns are also constrained not null, so that attaching the object as a partition
    needs no scan. Metadata rows are locked first (sorted): two sessions never prepare one object at once, and
    cleanup() skips an object being prepared."""
    ids = sorted(set(object_ids))
    if not ids:
        return
    db.run(plpy, f"select from {META}.objects where object_id = any($1::text[]) order by object_id for no key update",
           ids)
    todo = db.column(plpy, f"""
        select u.id from pg_catalog.unnest($1::text[]) as u (id)
        where not exists (select from pg_catalog.pg_constraint k
                          where k.conrelid = pg_catalog.format('%I.%I', '{META}', u.id)::pg_catalog.regclass
                            and k.conname = '{RANGES}')
        order by u.id""", ids)
    if not todo:
        return
    ranged = {c.name: c for c in cols if c.ranged}
    indexed = {}
    for r in db.run(plpy, f"""
            select u.id, r.key as name, pg_catalog.quote_literal(r.value ->> 0) as low,
                   pg_catalog.quote_literal(r.value ->> 1) as high
            from pg_catalog.unnest($1::text[]) as u (id)
            join {META}.objects o on o.object_id = u.id
            cross join lateral pg_catalog.jsonb_each(coalesce(o.index -> 'range', '{{}}')) as r
            where pg_catalog.jsonb_typeof(r.value) = 'array'""", todo):
        if r["name"] in ranged and r["low"] is not None and r["high"] is not None:
            indexed.setdefault(r["id"], {})[r["name"]] = (r["low"], r["high"])
    key = tbl.key_columns(cols)
    not_null = [f"{ident(c.name)} is not null" for c in key]
    for object_id in todo:
        table = object_table(object_id)
        if key:
            # statistics of the key (cheap, unlike those of every column) tell the planner how many rows a key
            # range holds: without them it takes a chunk's range for a few rows and probes the deltas row by row
            plpy.execute(f"create index if not exists {ident(key_index(object_id))} on {table} "
                         f"({tbl.column_list(key)});\nanalyze {table} ({tbl.column_list(key)})")
        given = indexed.get(object_id, {})
        checks = [f"{ident(name)}{_C if ranged[name].collatable else ''} between {low} and {high}"
                  for name, (low, high) in sorted(given.items())]
        try:
            with plpy.subtransaction():
                _add_ranges(plpy, table, not_null + checks)
            continue
        except plpy.SPIError as error:
            if getattr(error, "sqlstate", None) != "23514":  # check_violation: the range index is wrong
                raise
        try:
            with plpy.subtransaction():
                _add_ranges(plpy, table, not_null + _row_ranges(plpy, table, list(ranged.values())))
        except plpy.SPIError as error:
            if getattr(error, "sqlstate", None) != "23514":
                raise
            errors.fail(plpy, errors.DATA_CORRUPTED, f"object {object_id} has a row without a key",
                        hint="its table was changed by hand: splitgraph.verify() lists what is wrong")


def _add_ranges(plpy, table, checks):
    plpy.execute(f"alter table {table} add constraint {RANGES} check ({' and '.join(checks) or 'true'})")


def _row_ranges(plpy, table, ranged):
    """Range conditions of the columns, from the rows (in each column's own collation)."""
    if not ranged:
        return []
    bounds = db.one(plpy, "select " + ", ".join(
        f"pg_catalog.quote_literal(min(f.{ident(c.name)})::text) as lo{i}, "
        f"pg_catalog.quote_literal(max(f.{ident(c.name)})::text) as hi{i}" for i, c in enumerate(ranged))
        + f" from {table} f")
    return [f"{ident(c.name)} between {bounds[f'lo{i}']} and {bounds[f'hi{i}']}"
            for i, c in enumerate(ranged) if bounds[f"lo{i}"] is not None]


# ---------------------------------------------------------------------------------------------------------------
# Layers: chunks attached as partitions, found by the key
# ---------------------------------------------------------------------------------------------------------------

def _layouts(plpy, object_ids):
    return {r["id"]: r["layout"] for r in db.run(plpy, _LAYOUT, sorted(set(object_ids)))}


def _bounds(plpy, object_id, key):
    """The smallest and the largest key of an object, as SQL literals (read through its key index)."""
    literals = ", ".join(f"pg_catalog.quote_literal(f.{ident(c.name)}::text) as b{i}" for i, c in enumerate(key))
    found = []
    for direction in ("", " desc"):
        order = ", ".join(f"f.{ident(c.name)}{direction}" for c in key)
        row = db.one(plpy, f"select {literals} from {object_table(object_id)} f order by {order} limit 1")
        found.append([row[f"b{i}"] for i in range(len(key))] if row else None)
    return found


# Attaching fails with these when the object does not fit the layer: its range overlaps a partition's (42P17), or
# its columns differ (42804, 42P16, 42703...): it is then read with the deltas.
_MISFITS = ("42P17", "42804", "42P16", "42703", "42P10", "42809", "0A000")


def _attach(plpy, layer, object_id, bounds):
    low = "(" + ", ".join(bounds[0] + ["minvalue"]) + ")"
    high = "(" + ", ".join(bounds[1] + ["maxvalue"]) + ")"
    try:
        with plpy.subtransaction():
            plpy.execute(f"alter table {relation(layer)} attach partition {object_table(object_id)} "
                         f"for values from {low} to {high}")
        return True
    except plpy.SPIError as error:
        if getattr(error, "sqlstate", None) in _MISFITS:
            return False
        raise


def _new_layer(plpy, family, number, template, key):
    """A new layer of `family`, with the columns of object `template`, partitioned by the key (and the key's first
    column again, so that a partition's bounds hold its smallest and largest key: (low, minvalue) to (high,
    maxvalue))."""
    name = f"l{family[:40]}_{number}"
    plpy.execute(f"create table {relation(name)} (like {object_table(template)}) "
                 f"partition by range ({tbl.column_list(key)}, {ident(key[0].name)})")
    db.run(plpy, f"insert into {META}.read_layers (family, layer_no, layer) values ($1, $2::int, $3)",
           family, number, name)
    return name


def _layered(plpy, candidates, key, lineage):
    """Attach the candidates (objects that only insert rows, leading a table version) to layers where they fit:
    new attachments go to the open layers of their lineage (the repository's table) and column layout. Returns
    ({layer: [member object ids]}, [candidates that are not in a layer, in order]). The caller holds the lock
    on read_layers until its transaction ends (see _layer_select)."""
    # one session at a time decides where chunks go (a lock on the extension's own table)
    plpy.execute(f"lock table {META}.read_layers in share row exclusive mode")
    parents = {r["id"]: r["layer"] for r in db.run(plpy, f"""
        select u.id, l.layer
        from pg_catalog.unnest($1::text[]) as u (id)
        join pg_catalog.pg_inherits i on i.inhrelid = pg_catalog.format('%I.%I', '{META}', u.id)::pg_catalog.regclass
        join pg_catalog.pg_class p on p.oid = i.inhparent
        left join {META}.read_layers l on l.layer = p.relname::text
                                       and p.relnamespace = '{META}'::pg_catalog.regnamespace""", candidates)}
    members, rest = {}, []
    if all(o in parents for o in candidates):  # mounted before: nothing to attach, no layout to compare
        for object_id in candidates:
            (members.setdefault(parents[object_id], []) if parents[object_id] is not None else rest).append(object_id)
        return members, rest
    layouts = _layouts(plpy, [candidates[0]] + [o for o in candidates if o not in parents])
    layout = layouts[candidates[0]]
    family = hashlib.sha256(json.dumps([layout, [c.name for c in key], lineage]).encode("utf-8")).hexdigest()
    count = db.scalar(plpy, f"select count(*) from {META}.read_layers where family = $1", family)
    layers = db.column(plpy, f"""select layer from {META}.read_layers where family = $1 and not sealed
                                 order by layer_no""", family)
    for object_id in candidates:
        if object_id in parents:  # attached already: to a layer (of any lineage), or to something else
            home = parents[object_id]
        elif layouts.get(object_id) != layout:
            home = None
        else:
            bounds = _bounds(plpy, object_id, key)
            home = next((layer for layer in layers if _attach(plpy, layer, object_id, bounds)), None)
            if home is None and count < MAX_LAYERS:
                count += 1
                layers.append(_new_layer(plpy, family, count, object_id, key))
                home = layers[-1] if _attach(plpy, layers[-1], object_id, bounds) else None
        (members.setdefault(home, []) if home is not None else rest).append(object_id)
    return members, rest


def _layer_select(plpy, layer, object_ids, cols):
    """The rows of a layer's partitions that are these objects. When they are all its partitions, the layer is read
    whole and sealed: no object joins it any more. Otherwise its other partitions (other images' chunks) are left
    out by table oid (regclass constants, which the view depends on); reading a sealed layer whole, the view depends
    on the layer, and cleanup() keeps the partitions of a layer a view reads."""
    columns = tbl.column_list(cols, "b.")
    # (the partitions are tables of splitgraph_meta named by their object ids: compared by name, no cast per row)
    others = db.scalar(plpy, """select count(*) from pg_catalog.pg_inherits i
                                 join pg_catalog.pg_class c on c.oid = i.inhrelid
                                 where i.inhparent = $1::pg_catalog.regclass
                                   and not (c.relname::text = any($2::text[])
                                            and c.relnamespace = $3::pg_catalog.regnamespace)""",
                       relation(layer), list(object_ids), META)
    if not others:
        db.run(plpy, f"update {META}.read_layers set sealed = true where layer = $1 and not sealed", layer)
        return f"select {columns} from {relation(layer)} b"
    oids = ", ".join(f"{literal(object_table(o))}::pg_catalog.regclass" for o in object_ids)
    return f"select {columns} from {relation(layer)} b where b.tableoid = any (array[{oids}]::pg_catalog.oid[])"


def read_by_a_view(plpy, object_id):
    """Whether a view reads the whole layer the object is a partition of (its rule depends on the layer and on
    none of the layer's partitions)."""
    return db.scalar(plpy, f"""
        with part as (
            select i.inhparent as layer from pg_catalog.pg_inherits i
            where i.inhrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', '{META}', $1::text))
        )
        select exists (
            select from part p
            join pg_catalog.pg_depend d on d.refobjid = p.layer
                                       and d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                                       and d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
            where not exists (select from pg_catalog.pg_depend o
                              join pg_catalog.pg_inherits i on i.inhrelid = o.refobjid and i.inhparent = p.layer
                              where o.classid = d.classid and o.objid = d.objid))""", object_id)


# ---------------------------------------------------------------------------------------------------------------
# Squashes and copies
# ---------------------------------------------------------------------------------------------------------------

def _claim(plpy, name, object_ids, kind):
    """Register a squash or copy about to be built; False when it is built already (concurrent builders of one
    wait here for the first to commit)."""
    claimed = db.column(plpy, f"""insert into {META}.read_structures (name, kind, object_ids)
                                  values ($1, $2, $3::text[])
                                  on conflict (name) do nothing returning name""", name, kind, object_ids)
    if claimed:
        return True
    if db.scalar(plpy, "select pg_catalog.to_regclass($1) is null", relation(name)):
        errors.fail(plpy, errors.DATA_CORRUPTED, f"read structure {name} is registered but missing",
                    hint="run splitgraph.cleanup() to forget it")
    return False


def _squash(plpy, object_ids, cols, key):
    """The squash of these objects (in order): the newest row of every key they hold, the deletion flag with it."""
    name = _content_name("s", [c.storage_definition() for c in cols], [c.name for c in key], object_ids)
    if _claim(plpy, name, object_ids, "squash"):
        columns = tbl.select_list(tbl.column_list(cols), FLAG_COLUMN)
        numbered = " union all ".join(f"select {columns}, {n} from {object_table(o)}"
                                      for n, o in enumerate(object_ids))
        # the subquery's columns are renamed by position (c0.., then the flag and the position): no name of the
        # table's can clash with them
        renamed = ", ".join(f"c{i}" for i in range(len(cols)))
        named = tbl.select_list(", ".join(f"u.c{i} as {ident(c.name)}" for i, c in enumerate(cols)),
                                f"u.sg_flag as {FLAG_COLUMN}")
        by_key = ", ".join(f"u.c{cols.index(c)}" for c in key)
        plpy.execute(f"""
            create table {relation(name)} as
            select distinct on ({by_key}) {named}
            from ({numbered}) u ({tbl.select_list(renamed, 'sg_flag, sg_position')})
            order by {by_key}, u.sg_position desc;
            create index on {relation(name)} ({tbl.column_list(key)});
            analyze {relation(name)} ({tbl.select_list(tbl.column_list(key), FLAG_COLUMN)})""")
    return name


def _copy(plpy, objects, cols):
    """A copy of the table version, built once from its objects (with its primary key). With a key, in one pass:
    the leading chunks' rows whose key a squash of the rest does not hold, and the squash's upserts; without one,
    as a checkout builds it (rows may repeat)."""
    ids = [o["object_id"] for o in objects]
    key = tbl.key_columns(cols)
    name = _content_name("c", [c.storage_definition() for c in cols], [c.name for c in key], ids)
    if not _claim(plpy, name, ids, "copy"):
        return name
    if not key:
        fragments.materialize(plpy, META, name, cols, ids, objects=objects)
        return name
    leading = _leading(objects)
    columns = tbl.column_list(cols)
    parts = []
    if leading:
        chunks = " union all ".join(f"select {columns} from {object_table(o)}" for o in ids[:leading])
        parts.append(f"select {tbl.column_list(cols, 'b.')} from ({chunks}) b")
    if leading < len(ids):
        squash = relation(_squash(plpy, ids[leading:], cols, key))
        match = " and ".join(f"s.{ident(c.name)} = b.{ident(c.name)}" for c in key)
        parts = [f"{p} where not exists (select from {squash} s where {match})" for p in parts]
        parts.append(f"select {tbl.column_list(cols, 's.')} from {squash} s where s.{FLAG_COLUMN}")
    # CREATE TABLE AS reads in parallel (INSERT ... SELECT would not): the columns keep the objects' types
    plpy.execute(f"create table {relation(name)} as {' union all '.join(parts)};\n"
                 f"alter table {relation(name)} add primary key ({tbl.column_list(key)})")
    return name


def _leading(objects):
    """How many objects lead the list that only insert rows (the chunks of a snapshot, and the like)."""
    n = 0
    while n < len(objects) and objects[n]["inserts_only"]:
        n += 1
    return n


def drop_unused(plpy):
    """Drop the squashes and copies that no view depends on any more (one another session is about to use, or
    holds locked, is skipped); returns how many were dropped."""
    unused = db.column(plpy, f"""
        select r.name from {META}.read_structures r
        where not exists (select from pg_catalog.pg_depend d
                          where d.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                            and d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
                            and d.refobjid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', '{META}', r.name)))
        order by r.name""")
    dropped = 0
    for name in unused:
        try:
            with plpy.subtransaction(), db.settings(plpy, {"lock_timeout": "200ms"}):
                if not db.column(plpy, f"""select name from {META}.read_structures where name = $1
                                            for update skip locked""", name):
                    continue
                plpy.execute(f"drop table if exists {relation(name)}")
                db.run(plpy, f"delete from {META}.read_structures where name = $1", name)
                dropped += 1
        except plpy.SPIError:
            continue
    return dropped


# ---------------------------------------------------------------------------------------------------------------
# The SELECT a view is made of
# ---------------------------------------------------------------------------------------------------------------

def _settings(plpy):
    """(copy ratio, copy minimum): a table version is read from a copy when the rows of its deltas exceed both
    the ratio times the rows read without them and the minimum (engine settings in splitgraph_meta.info)."""
    found = {r["key"]: r["value"] for r in db.run(plpy, f"""select key, value from {META}.info
                                                           where key = any($1::text[])""", list(_DEFAULTS))}
    try:
        return tuple(float(found.get(k, v)) for k, v in _DEFAULTS.items())
    except ValueError:
        return tuple(float(v) for v in _DEFAULTS.values())


# Every row read from the chunks is looked up among the squash's keys, and a key range reads all of the squash:
# past a chunk's worth of rows and a hundredth of the rows, reading a copy is faster (make bench: with one
# delta of 1% of a 1M-row table, a full aggregate takes 1.9 times the table's and a key range of one chunk 2.9
# times; with 20 such deltas, 3.5 and 49 times, and with the copy 1.3 and 1.0).
_DEFAULTS = {"read_copy_ratio": "0.01", "read_copy_min_rows": "10000"}


def _sizes(plpy, ids):
    """{object id: (rows it inserts, about the rows it holds)} from the metadata (a delta holding updates deletes
    as many old rows as it upserts)."""
    return {r["object_id"]: (r["rows_inserted"], max(r["rows_inserted"], r["rows_deleted"])) for r in db.run(
        plpy, f"select object_id, rows_inserted, rows_deleted from {META}.objects where object_id = any($1::text[])",
        ids)}


def _prefix_copy(plpy, ids):
    """(name, length) of the copy of the longest prefix of these objects, or (None, 0)."""
    row = db.one(plpy, f"""select name, pg_catalog.cardinality(object_ids) as n from {META}.read_structures
                           where kind = 'copy' and pg_catalog.cardinality(object_ids) <= pg_catalog.cardinality($1)
                             and object_ids = ($1::text[])[1:pg_catalog.cardinality(object_ids)]
                           order by 2 desc limit 1""", ids)
    return (row["name"], row["n"]) if row else (None, 0)


def select(plpy, cols, object_ids, lineage):
    """The SELECT of a table version's rows from its objects (columns `cols`, each of its sql_type, named as the
    column), making the read structures it needs that are missing; `lineage` names where the table comes from
    (new chunks join the layers of their lineage).

    A table with a primary key is read as a base (a copy of a prefix of its objects, or its leading chunks in
    layers) less the keys of a squash of the objects after it, plus the squash's upserts. When those objects
    would be too many rows for that (_settings), the whole version is read from a copy instead.

    Returns (the SELECT, whether it is a UNION ALL of chunks and a squash: PostgreSQL could otherwise make a view
    of it updatable by itself)."""
    if not object_ids:
        nulls = ", ".join(f"null::{c.sql_type} as {ident(c.name)}" for c in cols)
        return f"select {nulls} where false", False
    stored = tbl.as_stored(cols)
    objects = fragments.object_rows(plpy, object_ids)
    ids = [o["object_id"] for o in objects]
    key = tbl.key_columns(stored)
    restored = lambda alias: fragments.restored_list(cols, alias + ".")  # noqa: E731
    if not key:
        if all(o["inserts_only"] for o in objects):
            prepare(plpy, ids, stored)
            return " union all ".join(f"select {restored('f')} from {object_table(o)} f" for o in ids), len(ids) > 1
        return f"select {restored('c')} from {relation(_copy(plpy, objects, stored))} c", False
    ratio, minimum = _settings(plpy)
    sizes = _sizes(plpy, ids)

    def too_many(base_rows, rest):
        size = sum(sizes[o][1] for o in rest)
        return size > minimum and size > ratio * base_rows

    copy, length = _prefix_copy(plpy, ids)
    if copy is not None and (length == len(ids) or not too_many(sum(sizes[o][0] for o in ids[:length]),
                                                                 ids[length:])):
        base, overlay = f"select {tbl.column_list(stored, 'c.')} from {relation(copy)} c", ids[length:]
    else:
        leading = _leading(objects)
        if too_many(sum(sizes[o][0] for o in ids[:leading]), ids[leading:]):
            return f"select {restored('c')} from {relation(_copy(plpy, objects, stored))} c", False
        members, rest = {}, []
        if leading:
            prepare(plpy, ids[:leading], stored)
            members, rest = _layered(plpy, ids[:leading], key, lineage)
        overlay = rest + ids[leading:]
        base = " union all ".join(_layer_select(plpy, layer, members[layer], stored) for layer in sorted(members))
    if not overlay:
        return f"select {restored('b')} from ({base}) b", False
    squash = relation(_squash(plpy, overlay, stored, key))
    newest = f"select {restored('s')} from {squash} s where s.{FLAG_COLUMN}"
    if not base:
        return newest, False
    match = " and ".join(f"s.{ident(c.name)} = b.{ident(c.name)}" for c in key)
    return (f"select {restored('b')} from ({base}) b where not exists (select from {squash} s where {match}) "
            f"union all {newest}"), True


def make_view(plpy, schema, table, cols, object_ids, lineage):
    """A read-only view schema.table of a table version (columns cols, of their sql_type) over its objects. Every
    write through it fails (55000), whoever writes: PostgreSQL cannot update it by itself (a UNION ALL; a view of
    one relation is wrapped in a WITH, which the planner inlines all the same, but which costs it a little more),
    and the trigger refuses every write with a message that says what to do."""
    target = f"{ident(schema)}.{ident(table)}"
    body, union = select(plpy, cols, object_ids, lineage)
    if not union:
        body = f"with sg_rows as ({body}) select * from sg_rows"
    plpy.execute(f"create view {target} as {body};\n"
                 f"create trigger sg_read_only instead of insert or update or delete on {target} "
                 "for each row execute function splitgraph_internal.refuse_layered_write()")
    fragments.comment_columns(plpy, target, cols)
