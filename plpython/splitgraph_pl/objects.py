"""Objects as a whole: their metadata, moving them between engines by value, and garbage collection."""
import base64
import concurrent.futures
import json
import os
import sys
import zlib

from . import db, errors, fragments, hashing, meta, names, parquet, reading, storage
from . import tables as tbl
from .declare import api, helper
from .fragments import META, object_table
from .names import FLAG_COLUMN, ident

DUMP_FORMAT = "splitgraph-object/1"


@api("table_info(repository text, image text, table_name text) returns jsonb",
     "table_info(repository, image, table_name): {table_name, columns: [{ordinal, name, type, is_pk, comment}], "
     "objects: [ids in apply order], rows, size}",
     volatility="stable")
def table_info(plpy, repository, image, table_name):
    repo = meta.require(plpy, repository)
    image_hash, _ = meta.resolve(plpy, repo, image)
    info = db.scalar(plpy, f"""
        select pg_catalog.jsonb_build_object(
            'table_name', t.table_name,
            'columns', (select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                'ordinal', c -> 0, 'name', c -> 1, 'type', c -> 2, 'is_pk', c -> 3, 'comment', c -> 4)
                            order by (c ->> 0)::int)
                        from pg_catalog.jsonb_array_elements(t.table_schema) c),
            'objects', to_jsonb(t.object_ids),
            'rows', (select coalesce(sum(o.rows_inserted - o.rows_deleted), 0)
                     from pg_catalog.unnest(t.object_ids) u(id) join {META}.objects o on o.object_id = u.id),
            'size', (select coalesce(sum(o.size), 0) from {META}.objects o where o.object_id = any(t.object_ids))
        )::text
        from {META}.tables t where t.repository = $1 and t.image_hash = $2 and t.table_name = $3""",
                     repo, image_hash, table_name)
    if info is None:
        errors.fail(plpy, errors.UNDEFINED_TABLE,
                    f'table "{table_name}" not found in image {image_hash[:12]} of repository "{repo}"')
    return info


@api("object_info(object_id text) returns jsonb",
     "object_info(object_id): {object_id, format, namespace, size, rows_inserted, rows_deleted, insertion_hash, "
     "deletion_hash, index, created, locations}; null for an unknown id",
     volatility="stable")
def object_info(plpy, object_id):
    return db.scalar(plpy, f"""
        select pg_catalog.jsonb_build_object(
            'object_id', o.object_id, 'format', o.format, 'namespace', o.namespace, 'size', o.size,
            'rows_inserted', o.rows_inserted, 'rows_deleted', o.rows_deleted,
            'insertion_hash', o.insertion_hash, 'deletion_hash', o.deletion_hash, 'index', o.index,
            'created', o.created,
            'locations', coalesce((select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                              'protocol', l.protocol, 'location', l.location))
                                   from {META}.object_locations l where l.object_id = o.object_id), '[]'))::text
        from {META}.objects o where o.object_id = $1""", object_id)


@api("cleanup() returns integer",
     "cleanup(): delete every object that no table of any image references (from object storage too); returns "
     "how many were deleted")
def cleanup(plpy):
    """Delete every object no table of any image references; returns how many were deleted. Nothing another
    session does stops it: an object being reused right now (its row locked by the writer), or whose table is
    locked or depended on, is skipped and reported, and the rest go."""
    if not meta.caller_is_admin(plpy):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "only superusers and the extension's owner may run cleanup")
    unused = db.column(plpy, f"""
        select o.object_id from {META}.objects o
        where not exists (select from {META}.tables t where t.object_ids @> array[o.object_id])
        union
        select c.relname::text from pg_catalog.pg_class c
        where c.relnamespace = '{META}'::regnamespace and c.relkind = 'r' and c.relname ~ '^o[0-9a-f]{{62}}$'
          and not exists (select from {META}.objects o where o.object_id = c.relname::text)
        order by 1""")
    deleted, skipped, keys = 0, [], []
    for object_id in unused:
        try:
            with plpy.subtransaction(), db.settings(plpy, {"lock_timeout": CLEANUP_LOCK_TIMEOUT}):
                key = storage.locations_of(plpy, [object_id]).get(object_id)
                kept = _drop_unused(plpy, object_id)
                if kept is None:
                    deleted += 1
                    if key is not None:
                        keys.append(key)
                else:
                    skipped.append(f"{object_id} ({kept})")
        except plpy.SPIError as error:
            skipped.append(f"{object_id} ({str(error).splitlines()[0]})")
    structures = reading.drop_unused(plpy)
    if structures:
        db.notice(plpy, f"dropped {structures} squash(es) or copies of objects that no view reads any more")
    if deleted:
        db.notice(plpy, f"deleted {deleted} unused object(s)")
    # last, once nothing here can fail: the bucket is outside the transaction
    storage.remove_keys(plpy, keys)
    if skipped:
        db.notice(plpy, f"kept {len(skipped)} unused object(s) it could not delete now: " + "; ".join(skipped[:10])
                  + ("; ..." if len(skipped) > 10 else ""))
    return deleted


# How long cleanup() waits for a lock on one object's table before it skips that object.
CLEANUP_LOCK_TIMEOUT = "200ms"


def _drop_unused(plpy, object_id):
    """Drop one object that looked unused, unless a writer holds its row (it is about to reference it), a table
    version references it by now, or a view reads it (a mounted image or a layered checkout, through the layer it
    is a partition of); returns None, or why it was kept."""
    registered = db.scalar(plpy, f"select exists (select from {META}.objects where object_id = $1)", object_id)
    if registered and not db.column(plpy, f"""select object_id from {META}.objects where object_id = $1
                                              for update skip locked""", object_id):
        return "in use by a concurrent transaction"
    if db.scalar(plpy, f"select exists (select from {META}.tables t where t.object_ids @> array[$1::text])",
                 object_id):
        return "in use by a concurrent transaction"
    if reading.read_by_a_view(plpy, object_id):
        return "read by a mounted image or a layered checkout"
    plpy.execute(f"drop table if exists {object_table(object_id)}")
    db.run(plpy, f"delete from {META}.objects where object_id = $1", object_id)
    return None


def _registered(plpy, object_id):
    row = db.one(plpy, f"""select object_id, format, namespace, rows_inserted, rows_deleted, insertion_hash,
                                  deletion_hash, index::text as index, table_schema::text as table_schema,
                                  pg_catalog.to_regclass(pg_catalog.format('%I.%I', '{META}', object_id)) is not null
                                      as stored
                           from {META}.objects where object_id = $1""", object_id)
    if row is None:
        return None
    row = dict(row)
    row["index"] = json.loads(row["index"])
    row["table_schema"] = json.loads(row["table_schema"])
    return row


@api("dump_object(object_id text, format text default 'dump') returns bytea",
     "dump_object(object_id, format): the object (metadata and rows) as bytes that load_object accepts on any "
     "engine: format 'dump' (compressed rows) or 'parquet' (a Parquet file, as object storage holds it)",
     volatility="stable")
def dump_object(plpy, object_id, format="dump"):
    """The object's metadata and rows as one blob that load_object accepts on any engine. The header carries,
    beside the object's metadata, the built-in types its table stores the columns as (storage_types)."""
    if format not in ("dump", "parquet"):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"unknown object format {format!r}",
                    hint="use 'dump' or 'parquet'")
    return _dump(plpy, object_id, "parquet" if format == "parquet" else "array", 6)


@helper("dump_for_transfer(object_id text) returns bytea",
        "dump_for_transfer(object_id): dump_object in the format engines send each other (rows one a line when "
        "no row holds a newline, zlib level 1: cheaper to make and to read); load_object reads both",
        volatility="stable", public=True)
def dump_for_transfer(plpy, object_id):
    return _dump(plpy, object_id, "lines", 1)


# How soon (seconds) the encoder thread of dump_parquet_objects hands Python's lock back to the backend's thread
# when that one asks for it (Python's default, 5 ms, costs the reading thread as much per object).
ENCODER_SWITCH_INTERVAL = 0.0005
# At most this many objects in one call of dump_parquet_objects (a push asks for 2 * threads, threads <= 64): the
# files are held in memory until the call returns.
MAX_DUMPED_AT_ONCE = 128


@helper("dump_parquet_objects(object_ids text[]) returns bytea[]",
        "dump_parquet_objects(object_ids): dump_object(id, 'parquet') of each object, in order, each file encoded "
        "while the next object's rows are read", volatility="stable", public=True)
def dump_parquet_objects(plpy, object_ids):
    """As dump_object(id, 'parquet') for each object: the rows of one are read (SQL, in this thread) while a
    worker thread encodes the last one (Arrow, which runs no SQL)."""
    if object_ids and len(object_ids) > MAX_DUMPED_AT_ONCE:
        errors.fail(plpy, errors.PROGRAM_LIMIT_EXCEEDED,
                    f"dump_parquet_objects takes at most {MAX_DUMPED_AT_ONCE} objects at once, not {len(object_ids)}",
                    hint="dump them in batches")
    interval = sys.getswitchinterval()
    sys.setswitchinterval(ENCODER_SWITCH_INTERVAL)
    try:
        with concurrent.futures.ThreadPoolExecutor(1, initializer=db.quiet_thread) as encoder:
            pending = []
            try:
                for object_id in object_ids or []:
                    pending.append(encoder.submit(parquet.encode, _dump(plpy, object_id, "parquet-read", None)))
                return [future.result() for future in pending]
            finally:
                for future in pending:
                    future.cancel()
    finally:
        sys.setswitchinterval(interval)


def _dump(plpy, object_id, rows_format, level):
    """rows_format: 'array' or 'lines' (a dump), 'parquet' (a Parquet file) or 'parquet-read' (parquet.read's
    result, which parquet.encode makes the file of)."""
    obj = _registered(plpy, object_id)
    if obj is None:
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f"object {object_id} does not exist")
    if not obj["stored"]:
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f"object {object_id} is registered but not stored here",
                    hint="download it first")
    header = {k: obj[k] for k in ("object_id", "format", "namespace", "rows_inserted", "rows_deleted",
                                  "insertion_hash", "deletion_hash", "index", "table_schema")}
    header["storage_types"] = db.column(plpy, f"""
        select pg_catalog.format_type(a.atttypid, a.atttypmod) from pg_catalog.pg_attribute a
        where a.attrelid = pg_catalog.format('%I.%I', '{META}', $1::text)::pg_catalog.regclass
          and a.attnum > 0 and not a.attisdropped and a.attname <> '{FLAG_COLUMN}'
        order by a.attnum""", object_id)
    if rows_format in ("parquet", "parquet-read"):
        prepared = parquet.read(plpy, object_table(object_id), [c[2] for c in obj["table_schema"]], header)
        return prepared if rows_format == "parquet-read" else parquet.encode(prepared)
    header["dump_format"] = DUMP_FORMAT
    rows = None
    if rows_format == "lines":
        # a row's text holds a newline only inside a quoted value: then the array form, which quotes it
        row = db.one(plpy, f"""select coalesce(pg_catalog.string_agg(s.t, e'\\n'), '') as rows,
                                      coalesce(bool_or(pg_catalog.strpos(s.t, e'\\n') > 0), false) as newline
                               from (select f::text as t from {object_table(object_id)} f offset 0) s""")
        if not row["newline"]:
            rows = row["rows"]
            header["rows_format"] = "lines"
    if rows is None:
        rows = db.scalar(plpy, f"select coalesce(pg_catalog.array_agg(f::text), '{{}}')::text "
                               f"from {object_table(object_id)} f")
    return zlib.compress(json.dumps(header).encode("utf-8") + b"\n" + rows.encode("utf-8"), level)


def _corrupt(plpy, object_id, what, detail=None):
    errors.fail(plpy, errors.DATA_CORRUPTED, f"object {object_id} was refused: {what}",
                hint="the data was damaged or altered in transit; fetch it again from its source", detail=detail)


# The fields of a dump's header: required ones, then optional ones, with their JSON types.
_REQUIRED = {"dump_format": str, "object_id": str, "table_schema": list, "rows_inserted": int, "rows_deleted": int,
             "deletion_hash": str}
_OPTIONAL = {"namespace": str, "insertion_hash": str, "format": str, "index": dict, "storage_types": list,
             "rows_format": str}
# The largest Bloom filter a loaded object may carry, in bytes.
MAX_BLOOM_BYTES = 1 << 20


def _read_dump(plpy, object_id, data):
    """(header, rows text) of a dump."""
    try:
        raw = zlib.decompress(data)
        header_line, rows = raw.split(b"\n", 1)
        header = json.loads(header_line)
        rows = rows.decode("utf-8")
    except (zlib.error, ValueError, UnicodeDecodeError):
        _corrupt(plpy, object_id, "it is not an object dump")
    if not isinstance(header, dict):
        _corrupt(plpy, object_id, "its header is not a JSON object")
    if header.get("dump_format") != DUMP_FORMAT:
        _corrupt(plpy, object_id, "the dump is of another object or format")
    return header, rows


def _check_header(plpy, object_id, header):
    """A header's fields checked for presence and JSON type (XX001)."""
    if header.get("object_id") != object_id:
        _corrupt(plpy, object_id, "the dump is of another object or format")
    for fields, required in ((_REQUIRED, True), (_OPTIONAL, False)):
        for key, kind in fields.items():
            value = header.get(key)
            if (value is None and not required) or (isinstance(value, kind) and not isinstance(value, bool)):
                continue
            _corrupt(plpy, object_id, f"its header {'lacks' if value is None else 'has a malformed'} {key}")
    if header.get("format", "FRAG") != "FRAG" or len(header.get("namespace", "")) > 64 \
            or header.get("rows_format", "array") not in ("array", "lines"):
        _corrupt(plpy, object_id, "its header names an unknown format or a namespace longer than 64 characters")
    storage = header.get("storage_types")
    if storage is not None and (len(storage) != len(header["table_schema"])
                                or not all(isinstance(t, str) for t in storage)):
        _corrupt(plpy, object_id, "its storage types do not match its columns")


def _index(plpy, object_id, header, hashed, cols, staging_sql):
    """The index to store for a loaded object: never the header's unchecked. The range index is computed from
    the rows; a fragment that deletes or overwrites rows also covers the old values it removes, which its rows
    do not hold, so the header's ranges may widen (never narrow) it. Bloom filters must be the ones its rows
    give (for the filter's size)."""
    given = header.get("index") or {}
    if set(given) - {"range", "bloom"} or not isinstance(given.get("range", {}), dict) \
            or not isinstance(given.get("bloom", {}), dict):
        _corrupt(plpy, object_id, "its index is malformed")
    ranges = dict(hashed["range"])
    by_name = {c.name: c for c in cols}
    if header["rows_deleted"] > 0:
        for name, bounds in given.get("range", {}).items():
            c = by_name.get(name)
            if c is None or not c.ranged or not isinstance(bounds, list) or len(bounds) != 2 \
                    or not all(isinstance(b, (str, int, float)) and not isinstance(b, bool) for b in bounds):
                _corrupt(plpy, object_id, f'its range index of "{name}" is malformed')
            mine = ranges.get(name, [None, None])
            collate = ' collate "C"' if c.collatable else ""
            try:
                with plpy.subtransaction():
                    ranges[name] = json.loads(db.scalar(plpy, f"""
                        select pg_catalog.jsonb_build_array(
                            least(($1::jsonb #>> '{{}}')::{c.storage}{collate}, ($2::jsonb #>> '{{}}')::{c.storage}),
                            greatest(($3::jsonb #>> '{{}}')::{c.storage}{collate}, ($4::jsonb #>> '{{}}')::{c.storage})
                        )::text""", json.dumps(bounds[0]), json.dumps(mine[0]), json.dumps(bounds[1]),
                        json.dumps(mine[1])))
            except plpy.SPIError:
                _corrupt(plpy, object_id, f'its range index of "{name}" does not hold values of the column')
    index = {"range": ranges}
    blooms = given.get("bloom")
    if blooms:
        index["bloom"] = {}
        for name, bloom in blooms.items():
            ok = (name in by_name and isinstance(bloom, list) and len(bloom) == 2 and isinstance(bloom[0], int)
                  and isinstance(bloom[1], str))
            try:
                size = len(base64.b64decode(bloom[1], validate=True)) if ok else 0
            except ValueError:
                size = 0
            if not 0 < size <= MAX_BLOOM_BYTES:
                _corrupt(plpy, object_id, f'its Bloom filter of "{name}" is malformed or larger than '
                                          f"{MAX_BLOOM_BYTES} bytes")
            mine = fragments.bloom_filters(plpy, staging_sql, cols, {name: {"size": size}}).get(name)
            if mine is None or mine[0] != bloom[0] or base64.b64decode(mine[1]) != base64.b64decode(bloom[1]):
                _corrupt(plpy, object_id, f'its Bloom filter of "{name}" is not the one its rows give')
            index["bloom"][name] = mine
    return index


@api("load_object(object_id text, data bytea) returns void",
     "load_object(object_id, data): store an object from dump_object (either format); refused (XX001) unless its "
     "rows hash to its id")
def load_object(plpy, object_id, data):
    """Store an object dumped by dump_object (a dump or a Parquet file), after checking that its rows hash to
    its id."""
    store_dump(plpy, object_id, data)


# Columns of the schemas of dumps read in this transaction: {(transaction, header's schema and storage): cols}.
_COLUMNS = {}


def _dump_columns(plpy, spec, storage):
    """The columns (as the staging table holds them) of a dump's schema, resolved once per transaction: the
    objects of one table share a schema, and a transfer loads many of them."""
    xid = db.scalar(plpy, "select pg_catalog.pg_current_xact_id()::text")
    key = (xid, json.dumps([spec, storage]))
    if key not in _COLUMNS:
        for old in [k for k in _COLUMNS if k[0] != xid]:
            del _COLUMNS[old]
        definition = None
        if storage is not None and all(isinstance(c, list) and len(c) > 1 and isinstance(c[1], str) for c in spec):
            definition = {"columns": {c[1]: {"storage": t} for c, t in zip(spec, storage, strict=True)}}
        _COLUMNS[key] = tbl.as_stored(tbl.from_spec(plpy, spec, definition, dump=True))
    return _COLUMNS[key]


def store_dump(plpy, object_id, data, namespace=None):
    """Store an object from a dump (dump_object's in either format, or dump_for_transfer's), after checking that
    its rows hash to its id; returns whether this call stored it. Nothing of the header is pasted into SQL: its
    types and collations are looked up in the catalog (tables.from_spec), the object table stores built-in types
    only, and the index is computed from the rows (_index). namespace: what to record as the namespace of an
    object registered now (default: the header's). An object registered without its data (a lazy clone) gets the
    metadata its rows give, in place of what the remote said of it."""
    return bool(store_many(plpy, [(object_id, data)], namespace))


def store_many(plpy, items, namespace=None):
    """store_dump of many objects [(object_id, data)] at once; returns the ids this call stored. Each is checked
    as store_dump checks it, and any refusal fails the call; the rows of Parquet files are hashed in one
    statement per schema (parallel workers start once, not once per object)."""
    unique = {}
    for object_id, data in items:
        unique.setdefault(object_id, data)
    templates = {}
    with parquet.private_directory() as directory:
        staged = [s for s in (_stage(plpy, o, d, namespace, directory, templates) for o, d in unique.items())
                  if s is not None]
    for template in templates.values():
        plpy.execute(f"drop table {template}")
    groups = {}
    for s in staged:
        if s["hashed"] is None:
            groups.setdefault(json.dumps(fragments.schema_spec(s["cols"])) + s["staging_cols"], []).append(s)
    for group in groups.values():
        _hash_staged(plpy, group)
    return [s["object_id"] for s in staged if _store_staged(plpy, s)]


def _template(plpy, templates, staging_cols):
    """A table with the columns of staging tables (staging_cols), its variable-width columns' storage plain, for
    staging tables made like it (create table ... (like template including storage)): such a table gets no TOAST
    table, whose index Postgres writes to disk and syncs as it makes it (milliseconds an object). Made once per
    call and schema (templates: {staging_cols: name}), dropped at the end of the call."""
    if staging_cols not in templates:
        template = f"{META}.{ident(db.temp_name('sg_tmp'))}"
        plpy.execute(f"create table {template} ({staging_cols})")
        plain = db.column(plpy, """select a.attname::text from pg_catalog.pg_attribute a
                                   where a.attrelid = $1::pg_catalog.regclass and a.attnum > 0
                                     and not a.attisdropped and a.attlen = -1 order by a.attnum""", template)
        if plain:
            plpy.execute(f"alter table {template} " + ", ".join(
                f"alter column {ident(name)} set storage plain" for name in plain))
        templates[staging_cols] = template
    return templates[staging_cols]


def _stage(plpy, object_id, data, namespace, directory, templates):
    """An object's rows parsed into a staging table: {object_id, header, cols, staging_cols, staging_sql, hashed
    (None: to be hashed), registered, namespace}; None when it is stored here already. A Parquet file's rows are
    written to a file COPY reads before its staging table is made: when they fit in their heap pages whole (see
    parquet.write_rows), the table is made like the schema's template (_template), without a TOAST table."""
    if not (object_id and isinstance(object_id, str) and object_id.startswith("o") and len(object_id) == 63):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"invalid object id {object_id!r}")
    data = bytes(data)
    if parquet.is_parquet(data):
        try:
            header, parquet_file = parquet.open_file(data)
        except parquet.Refused as refused:
            _corrupt(plpy, object_id, str(refused))
        rows = None
    else:
        header, rows = _read_dump(plpy, object_id, data)
        parquet_file = None
    _check_header(plpy, object_id, header)
    # Loaders of one object serialize on its metadata row (a row lock no other role can take).
    db.run(plpy, f"select from {META}.objects where object_id = $1 for no key update", object_id)
    registered = _registered(plpy, object_id)
    if registered is not None and registered["stored"]:
        return None
    cols = _dump_columns(plpy, header["table_schema"], header.get("storage_types"))
    staging = db.temp_name("sg_tmp")
    staging_sql = f"{META}.{ident(staging)}"
    staging_cols = fragments.fragment_columns(cols)
    written, path = None, os.path.join(directory, "rows")
    if rows is None:
        try:
            written = parquet.write_rows(plpy, parquet_file, _template(plpy, templates, staging_cols),
                                         [c.type for c in cols], path)
        except parquet.Refused as refused:
            _corrupt(plpy, object_id, str(refused))
    if written is not None and written["inline"]:
        plpy.execute(f"create table {staging_sql} (like {_template(plpy, templates, staging_cols)} including storage)")
    else:
        plpy.execute(f"create table {staging_sql} ({staging_cols})")
    source = ("pg_catalog.string_to_table($1, e'\\n')" if header.get("rows_format") == "lines"
              else "pg_catalog.unnest($1::text[])")
    hashed = None
    try:
        with plpy.subtransaction():
            if written is not None:
                parquet.copy_rows(plpy, staging_sql, written, path)
            elif cols:
                hashed = fragments.stage_rows(plpy, staging_sql, cols, source, rows)
            else:  # no column: a row's text is its flag alone
                db.run(plpy, f"insert into {staging_sql} select (r).* from (select x::{staging_sql} as r "
                             f"from {source} as x where x <> '' offset 0) s", rows)
    except parquet.Refused as refused:
        _corrupt(plpy, object_id, str(refused))
    except plpy.SPIError as error:
        _corrupt(plpy, object_id, "its rows do not parse as the columns it declares",
                 detail=str(error).splitlines()[0])
    return {"object_id": object_id, "header": header, "cols": cols, "staging_sql": staging_sql,
            "staging_cols": staging_cols, "hashed": hashed, "registered": registered,
            "namespace": header.get("namespace", "") if namespace is None else namespace}


def _hash_staged(plpy, group):
    """Hash the rows of staged objects of one schema (rows that did not arrive as text: hashed as stored), in one
    statement, and count their deletions in another."""
    cols = group[0]["cols"]
    union = " union all ".join(f"select {i} as sg_object, t.* from {s['staging_sql']} t"
                               for i, s in enumerate(group))
    hashed = fragments.hash_groups(plpy, f"({union})", cols, group="t.sg_object", where=f"t.{FLAG_COLUMN}",
                                   parallel=True)
    deleted = {r["g"]: r["n"] for r in db.run(
        plpy, f"select t.sg_object as g, count(*) as n from ({union}) t where not t.{FLAG_COLUMN} group by 1")}
    empty = {"rows": 0, "insertion_hash": hashing.ZERO, "range": {}}
    for i, s in enumerate(group):
        s["hashed"] = dict(hashed.get(i, empty), deleted=deleted.get(i, 0), odd=0)


def _store_staged(plpy, staged):
    """Check a staged object's hashes, counts and index against its id and header, then register it (or replace
    the metadata of an object registered without its rows) and make its staging table the object table."""
    object_id, header, cols, staging_sql = staged["object_id"], staged["header"], staged["cols"], staged["staging_sql"]
    hashed, registered = staged["hashed"], staged["registered"]
    if hashed["odd"]:
        _corrupt(plpy, object_id, "some of its rows are not written as dumps write them")
    deleted = hashed["deleted"]
    deletion = header["deletion_hash"]
    if not names.HASH.match(deletion):
        _corrupt(plpy, object_id, "its deletion hash is malformed")
    if hashing.object_id(hashed["insertion_hash"], deletion, fragments.schema_spec(cols)) != object_id:
        _corrupt(plpy, object_id, "its rows do not hash to its id")
    # rows_deleted counts the old rows the fragment removes: its deletions and the rows its upserts overwrite.
    removed = header["rows_deleted"]
    if (hashed["rows"] != header["rows_inserted"] or not deleted <= removed <= deleted + hashed["rows"]
            or (removed == 0) != (deletion == hashing.ZERO)):
        _corrupt(plpy, object_id, "its row counts do not match its rows")
    index = _index(plpy, object_id, header, hashed, cols, staging_sql)
    verified = {"object_id": object_id, "namespace": staged["namespace"],
                "rows_inserted": hashed["rows"], "rows_deleted": removed,
                "insertion_hash": hashed["insertion_hash"], "deletion_hash": deletion,
                "index": index, "table_schema": fragments.schema_spec(cols)}
    if registered is None:
        if not fragments.claim_objects(plpy, [verified]) and _registered(plpy, object_id)["stored"]:
            plpy.execute(f"drop table {staging_sql}")  # a concurrent load stored it first
            return False
    else:
        # registered from another engine's word alone: from now on, what its rows say
        db.run(plpy, f"""update {META}.objects set rows_inserted = $2, rows_deleted = $3, insertion_hash = $4,
                                deletion_hash = $5, index = $6::jsonb, table_schema = $7::jsonb
                         where object_id = $1""", object_id, verified["rows_inserted"], removed,
               verified["insertion_hash"], deletion, json.dumps(index), json.dumps(verified["table_schema"]))
    plpy.execute(f"alter table {staging_sql} rename to {ident(object_id)}")
    fragments.record_sizes(plpy, [object_id])
    return True


@helper("load_objects(object_ids text[], data bytea[]) returns text[]",
        "load_objects(object_ids, data): load_object of many objects at once (each verified as load_object "
        "verifies it; any refusal fails the call); returns the ids stored by this call",
        public=True)
def load_objects(plpy, object_ids, data):
    if object_ids is None or data is None or len(object_ids) != len(data):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "give one object id per object's data")
    if any(d is None for d in data):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "an object's data is null")
    return store_many(plpy, list(zip(object_ids, data, strict=True)))


_EXTENSION_SCHEMAS = ["splitgraph", "splitgraph_meta", "splitgraph_audit", "splitgraph_internal"]


def _refuse_extension_target(plpy, schema, table):
    """No public path writes into the extension's own tables (objects never change), whoever calls, superusers
    included: apply_fragments refuses a target in the extension's schemas, or whose partitions or inheritance
    children are there, and any target that is not a table (a view could write through to an object)."""
    found = db.one(plpy, """
        with recursive target as (
            select c.oid, c.relkind from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
            where n.nspname = $1 and c.relname = $2
        ), tree (relid) as (
            select oid from target
            union
            select i.inhrelid from pg_catalog.pg_inherits i join tree t on i.inhparent = t.relid
        )
        select (select relkind::text from target) as relkind,
               (select pg_catalog.format('%I.%I', n.nspname, c.relname) from tree t
                join pg_catalog.pg_class c on c.oid = t.relid join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                where n.nspname = any($3::text[]) limit 1) as inside""", schema, table, _EXTENSION_SCHEMAS)
    if found["inside"] is not None:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f"apply_fragments may not write into {found['inside']}: the extension's own tables (objects "
                    "above all) never change through it",
                    hint="apply the fragments to a table of your own schema")
    if found["relkind"] not in ("r", "p"):
        errors.fail(plpy, errors.WRONG_OBJECT_TYPE,
                    f'apply_fragments writes into tables only, and "{schema}"."{table}" is not one',
                    hint="apply the fragments to a table")


@api("apply_fragments(object_ids text[], target_schema text, target_table text, extra_quals text default null) "
     "returns void",
     "apply_fragments(object_ids, target_schema, target_table, extra_quals): apply fragments in order to an "
     "existing table (delete the keys each holds, insert its upserts that pass extra_quals)",
     security="invoker")
def apply_fragments(plpy, object_ids, target_schema, target_table, extra_quals=None):
    """Apply fragments in order to an existing table: each deletes the rows whose key it holds, then inserts
    its upserted rows (those passing `extra_quals`, an SQL condition over the fragment's columns, f).

    It runs with the caller's rights (SECURITY INVOKER): the caller's privileges on the target table, its
    triggers and extra_quals are the caller's business, never the extension's. The objects are read through
    fragment_rows, which refuses an id that is not stored here."""
    tbl.require(plpy, target_schema, target_table)
    _refuse_extension_target(plpy, target_schema, target_table)
    cols = tbl.columns(plpy, target_schema, target_table)
    objects = [{"object_id": o, "inserts_only": False} for o in object_ids]
    fragments.apply_to_table(plpy, names.qualified(target_schema, target_table), cols, objects, extra_quals,
                             as_caller=True)


# ---------------------------------------------------------------------------------------------------------------
# verify: objects checked against their rows, table versions replayed from their objects
# ---------------------------------------------------------------------------------------------------------------

def _object_columns(plpy, object_id, spec):
    """The columns of an object table as stored (its table_schema, with the storage types its table has), or a
    problem (text) when the table's columns are not the schema's."""
    stored = db.run(plpy, f"""
        select a.attname::text as name, pg_catalog.format_type(a.atttypid, a.atttypmod) as storage
        from pg_catalog.pg_attribute a
        where a.attrelid = pg_catalog.format('%I.%I', '{META}', $1::text)::pg_catalog.regclass
          and a.attnum > 0 and not a.attisdropped and a.attname <> '{FLAG_COLUMN}'
        order by a.attnum""", object_id)
    names = [c[1] for c in sorted(spec, key=lambda c: c[0])] if isinstance(spec, list) and all(
        isinstance(c, list) and len(c) > 1 for c in spec) else None
    if names != [r["name"] for r in stored]:
        return None, "its table's columns are not the ones its table_schema lists"
    try:
        with plpy.subtransaction():
            definition = {"columns": {r["name"]: {"storage": r["storage"]} for r in stored}}
            return tbl.as_stored(tbl.from_spec(plpy, spec, definition)), None
    except plpy.SPIError as error:
        return None, f"its table_schema is unusable here ({str(error).splitlines()[0]})"


def _range_problems(plpy, object_id, cols, index, actual):
    """Columns whose range in the object's index does not cover the values of its rows."""
    given = (index or {}).get("range") or {}
    wrong = []
    for c in cols:
        if c.name not in actual or not actual[c.name] or actual[c.name][0] is None:
            continue
        bounds = given.get(c.name)
        collate = ' collate "C"' if c.collatable else ""
        ok = isinstance(bounds, list) and len(bounds) == 2 and None not in bounds and db.scalar(plpy, f"""
            select ($1::jsonb #>> '{{}}')::{c.storage}{collate} <= ($3::jsonb #>> '{{}}')::{c.storage}{collate}
               and ($2::jsonb #>> '{{}}')::{c.storage}{collate} >= ($4::jsonb #>> '{{}}')::{c.storage}{collate}""",
            json.dumps(bounds[0]), json.dumps(bounds[1]), json.dumps(actual[c.name][0]),
            json.dumps(actual[c.name][1]))
        if not ok:
            wrong.append(c.name)
    return wrong


def _check_object(plpy, o):
    """(problems, columns, (rows upserted, their hash)) of a stored object checked against its rows."""
    cols, problem = _object_columns(plpy, o["object_id"], o["table_schema"])
    if problem:
        return [problem], None, None
    table = object_table(o["object_id"])
    hashed = fragments.hash_groups(plpy, table, cols, where=f"t.{FLAG_COLUMN}")[None]
    deletes = db.scalar(plpy, f"select count(*) from {table} where not {FLAG_COLUMN}")
    problems = []
    if hashed["insertion_hash"] != o["insertion_hash"]:
        problems.append(f"its rows hash to {hashed['insertion_hash']}, not to its insertion hash "
                        f"{o['insertion_hash']} (a row was changed, added or removed)")
    if hashing.object_id(hashed["insertion_hash"], o["deletion_hash"], fragments.schema_spec(cols)) != o["object_id"]:
        problems.append("its id is not the hash of its rows and schema")
    if hashed["rows"] != o["rows_inserted"]:
        problems.append(f"it upserts {hashed['rows']} rows, not rows_inserted = {o['rows_inserted']}")
    if not deletes <= o["rows_deleted"] <= deletes + hashed["rows"] or \
            (o["rows_deleted"] == 0) != (o["deletion_hash"] == hashing.ZERO):
        problems.append(f"rows_deleted = {o['rows_deleted']} does not fit its {deletes} deletions and "
                        f"{hashed['rows']} upserts, or its deletion hash")
    wrong = _range_problems(plpy, o["object_id"], cols, o["index"], hashed["range"])
    if wrong:
        problems.append("its range index does not cover the values of column(s) " + ", ".join(wrong))
    return problems, cols, (hashed["rows"], hashed["insertion_hash"])


class _Replay:
    """A table version rebuilt from its objects in a temporary table, object by object, each checked on the way:
    the rows it removes must be its deletion hash and rows_deleted. Versions whose object lists extend the one
    rebuilt last continue from it, so a history is replayed once."""

    def __init__(self, plpy, cols):
        self.plpy, self.cols, self.applied = plpy, cols, []
        self.relation = "pg_temp." + ident(db.temp_name("sg_verify"))
        key = tbl.key_columns(cols)
        plpy.execute(f"create temp table {self.relation.split('.', 1)[1]} ({tbl.storage_definitions(cols)}"
                     + (f", primary key ({tbl.column_list(key)})" if key else "") + ")")
        self.rows, self.hash = 0, hashing.ZERO

    def reset(self):
        self.plpy.execute(f"truncate {self.relation}")
        self.applied, self.rows, self.hash = [], 0, hashing.ZERO

    def apply(self, o, upserts):
        """Apply object o (its metadata row; upserts: (rows, hash) of its upserted rows, as recomputed); returns
        a problem, or None."""
        problem = None
        if not o["inserts_only"]:
            removed = fragments.hash_groups(self.plpy, f"""(select t.* from {self.relation} t where exists (
                select from {object_table(o['object_id'])} f where {fragments.key_match(self.cols)}))""",
                                            self.cols)[None]
            if (removed["rows"], removed["insertion_hash"]) != (o["rows_deleted"], o["deletion_hash"]):
                problem = (f"it removes {removed['rows']} rows hashing to {removed['insertion_hash']}, not its "
                           f"rows_deleted = {o['rows_deleted']} and deletion hash {o['deletion_hash']}")
        else:
            removed = {"rows": 0, "insertion_hash": hashing.ZERO}
        try:
            with self.plpy.subtransaction():
                fragments.apply_to_table(self.plpy, self.relation, self.cols, [o])
        except self.plpy.SPIError as error:
            return f"it cannot be applied ({str(error).splitlines()[0]})"
        self.rows += upserts[0] - removed["rows"]
        self.hash = hashing.add(hashing.sub(self.hash, removed["insertion_hash"]), upserts[1])
        self.applied.append(o["object_id"])
        return problem

    def drop(self):
        self.plpy.execute(f"drop table if exists {self.relation}")


@api("verify(repository text default null) returns table (object_id text, ok boolean, detail text)",
     "verify(repository = every repository): recompute each object's content hash from its rows and check its "
     "metadata, then rebuild every table version from its objects; one row per object (ok, and a detail naming "
     "each problem), and a row without object_id for a table version that does not add up",
     rows="temp")
def verify(plpy, repository=None):
    """The objects of the repository's table versions (every registered object, for all repositories) are read
    and hashed; each table version is replayed from its objects in a temporary table, every object checked
    against the rows it removes. Returns the name of the temporary table of results."""
    repo = meta.require(plpy, repository) if repository is not None else None
    versions = db.run(plpy, f"""
        select t.table_name, t.table_schema::text as spec, t.object_ids, min(t.repository) as repository,
               min(t.image_hash) as image_hash
        from {META}.tables t where $1::text is null or t.repository = $1
        group by t.table_name, t.table_schema::text, t.object_ids
        order by t.table_schema::text, t.object_ids""", repo)
    wanted = sorted({o for v in versions for o in v["object_ids"]} | (set(db.column(
        plpy, f"select object_id from {META}.objects")) if repo is None else set()))
    found = {r["object_id"]: r for r in db.run(plpy, f"""
        select o.object_id, o.rows_inserted, o.rows_deleted, o.insertion_hash, o.deletion_hash,
               o.index::text as index, o.table_schema::text as table_schema,
               o.rows_deleted = 0 and o.deletion_hash = $2 as inserts_only,
               pg_catalog.to_regclass(pg_catalog.format('%I.%I', '{META}', o.object_id)) is not null as stored
        from {META}.objects o where o.object_id = any($1::text[])""", wanted, hashing.ZERO)}
    problems, checked = {o: [] for o in wanted}, {}
    for object_id in wanted:
        o = found.get(object_id)
        if o is None:
            problems[object_id].append("a table version lists it, but it is not registered")
        elif not o["stored"]:
            problems[object_id].append("it is registered but not stored on this engine: its rows cannot be checked")
        else:
            o = dict(o, index=json.loads(o["index"]), table_schema=json.loads(o["table_schema"]))
            found[object_id] = o
            own, cols, upserts = _check_object(plpy, o)
            problems[object_id] += own
            if cols is not None:
                checked[object_id] = (cols, upserts)
    version_problems = _replay_versions(plpy, versions, found, checked, problems)
    name = db.temp_name("sg_verify")
    plpy.execute(f"create temp table {ident(name)} (object_id text, ok boolean, detail text)")
    db.run(plpy, f"""insert into pg_temp.{ident(name)} (object_id, ok, detail)
                     select u.id, u.detail is null, u.detail
                     from rows from (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) as u (id, detail)""",
           list(problems) + [None] * len(version_problems),
           ["; ".join(p) or None for p in problems.values()] + version_problems)
    return name


def _replay_versions(plpy, versions, found, checked, problems):
    """Replay every table version (versions sorted by schema then object list); returns the problems of versions
    that do not add up, and adds those of objects to `problems`."""
    out, replay, spec = [], None, None
    try:
        for v in versions:
            where = f'table "{v["table_name"]}" of image {v["image_hash"][:12]} in repository "{v["repository"]}"'
            ids = list(v["object_ids"])
            if v["spec"] != spec or replay is None:
                if replay is not None:
                    replay.drop()
                    replay = None
                spec = v["spec"]
                missing = [o for o in ids if o not in checked]
                if missing:
                    out.append(f"{where} cannot be rebuilt: object {missing[0]} cannot be read")
                    continue
                if not ids:
                    continue
                replay = _Replay(plpy, checked[ids[0]][0])
            if replay.applied != ids[:len(replay.applied)]:
                replay.reset()
            broken = False
            for object_id in ids[len(replay.applied):]:
                if object_id not in checked:
                    out.append(f"{where} cannot be rebuilt: object {object_id} cannot be read")
                    broken = True
                    break
                problem = replay.apply(found[object_id], checked[object_id][1])
                if problem:
                    problems[object_id].append(f"in {where}, {problem}")
                if object_id not in replay.applied:
                    broken = True
                    break
            if broken:
                replay.reset()
                continue
            stated = [(found[o]["rows_inserted"] - found[o]["rows_deleted"],
                       hashing.content_hash(found[o]["insertion_hash"], found[o]["deletion_hash"])) for o in ids]
            if (sum(n for n, _ in stated), hashing.total(h for _, h in stated)) != (replay.rows, replay.hash):
                out.append(f"{where}: its objects state {sum(n for n, _ in stated)} rows hashing to "
                           f"{hashing.total(h for _, h in stated)}, but rebuilding it gives {replay.rows} rows "
                           f"hashing to {replay.hash}")
    finally:
        if replay is not None:
            replay.drop()
    return out
