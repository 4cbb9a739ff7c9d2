"""Objects as Parquet files (zstd): what object storage holds, readable by any Parquet reader (DuckDB, Spark, Trino,
pandas).

A file has one column per column of the object, named as it, then the upsert/delete flag sg_ud_flag (boolean).
Values of types whose round trip is exact are stored as Parquet types: integers, floats (NaN and infinities
included), boolean, text, varchar and json/jsonb (strings), bytea (binary), date, timestamp (microseconds; with
time zone: UTC), numeric with a declared precision up to 38 and a scale from 0 to the precision (decimal), uuid.
Every other value is stored as its Postgres text form (a string); so is a column of an object holding values
Parquet cannot (infinite dates or timestamps, a numeric NaN). Each field's metadata names the column's
Postgres type (pg_type), the type the object stores it as (pg_storage) and its encoding (native or text); the
file's key-value metadata "splitgraph" holds the object's header (as dump_object's: id, hashes, row counts,
schema, storage types, index).

Rows never pass one by one through Python. Writing, one SQL statement per batch of rows aggregates each column
into one bytea (binary send forms, or UTF-8 bytes with their lengths) and numpy turns those into Arrow buffers.
Reading, numpy lays the rows out in COPY's binary format when every column is stored natively (decimals
excepted), else Arrow writes them as CSV that Postgres reads back exactly (dates and timestamps as Julian days,
binary as hex), into a file of a private temporary directory, and one COPY loads it.
"""
import contextlib
import functools
import io
import json
import os
import shutil
import tempfile

from . import db, lazy
from .names import FLAG_COLUMN, ident, literal

np = lazy.Module("numpy")
pa = lazy.Module("pyarrow")
pc = lazy.Module("pyarrow.compute")
pa_csv = lazy.Module("pyarrow.csv")
pq = lazy.Module("pyarrow.parquet")

FORMAT = "splitgraph-parquet/1"
METADATA_KEY = b"splitgraph"
MAGIC = b"PAR1"
# Heap bytes one statement reads when writing (a TID range of the object table), and rows per INSERT when
# reading: each column of a batch is one value in memory, far below the 1 GB limit of a value.
BATCH_BLOCKS = 4096
BATCH_ROWS = 131072
ROW_GROUP_ROWS = 131072
# zstd level 1: on object data (keys, hashes, measurements) higher levels gained nothing and cost time.
COMPRESSION_LEVEL = 1
# Encodings by kind (no dictionaries: they pay only for columns of few distinct values, and pyarrow's fallback
# from a full dictionary costs more than it saves on the others): integers, dates and timestamps as deltas
# (keys and times are mostly ordered), floats split into byte streams (their exponents compress), strings with
# their lengths apart. Others (booleans, decimals, uuids) plain.
_ENCODING = {"smallint": "DELTA_BINARY_PACKED", "integer": "DELTA_BINARY_PACKED", "bigint": "DELTA_BINARY_PACKED",
             "date": "DELTA_BINARY_PACKED", "timestamp without time zone": "DELTA_BINARY_PACKED",
             "timestamp with time zone": "DELTA_BINARY_PACKED", "real": "BYTE_STREAM_SPLIT",
             "double precision": "BYTE_STREAM_SPLIT", "string": "DELTA_LENGTH_BYTE_ARRAY",
             "text": "DELTA_LENGTH_BYTE_ARRAY", "binary": "DELTA_LENGTH_BYTE_ARRAY"}


@functools.cache
def _csv_options():
    return pa_csv.WriteOptions(include_header=False, batch_size=BATCH_ROWS)


_EPOCH_DAYS = 10957  # 2000-01-01, Postgres's epoch, in days since 1970-01-01
_EPOCH_MICROS = _EPOCH_DAYS * 86400 * 1000000
_DAY_MICROS = 86400 * 1000000

# Storage types stored natively: (send function, numpy dtype of its binary form, Arrow type: made when first
# asked for, as pyarrow is imported then)
_FIXED = {
    "smallint": ("int2send", ">i2", lambda: pa.int16()),
    "integer": ("int4send", ">i4", lambda: pa.int32()),
    "bigint": ("int8send", ">i8", lambda: pa.int64()),
    "real": ("float4send", ">f4", lambda: pa.float32()),
    "double precision": ("float8send", ">f8", lambda: pa.float64()),
    "boolean": ("boolsend", "u1", lambda: pa.bool_()),
    "date": ("date_send", ">i4", lambda: pa.date32()),
    "timestamp without time zone": ("timestamp_send", ">i8", lambda: pa.timestamp("us")),
    "timestamp with time zone": ("timestamptz_send", ">i8", lambda: pa.timestamp("us", tz="UTC")),
    "uuid": ("uuid_send", "V16", lambda: pa.uuid()),
}
_STRINGS = ("text", "character varying", "json", "jsonb")
# Native kinds whose values may have no Parquet equivalent: the SQL condition that a value has none (infinities;
# timestamps past 2**63 - 1 microseconds since 1970; a numeric NaN).
_UNREPRESENTABLE = {
    "date": "not pg_catalog.isfinite({x})",
    "timestamp without time zone":
        "not pg_catalog.isfinite({x}) or {x} > '294247-01-10 04:00:54.775807'::pg_catalog.timestamp",
    "timestamp with time zone":
        "not pg_catalog.isfinite({x}) or {x} > '294247-01-10 04:00:54.775807+00'::pg_catalog.timestamptz",
    "numeric": "{x} = 'NaN'::pg_catalog.numeric",
}


class Refused(Exception):
    """The data is not a Parquet file of the object, or does not hold what its metadata says."""


class Column:
    """A column of an object table as a Parquet column: name, type (the column's), storage (its type in the
    object table, as format_type writes it), base (the storage type without modifiers), and kind: the base when it
    is stored natively ('numeric' for decimals), 'string', 'binary' or 'text' (its text form)."""

    def __init__(self, name, type_, storage, base, typmod):
        self.name, self.type, self.storage, self.base = name, type_, storage, base
        self.decimal = _decimal(base, typmod)
        if base in _FIXED:
            self.kind = base
        elif base in _STRINGS:
            self.kind = "string"
        elif base == "bytea":
            self.kind = "binary"
        elif self.decimal is not None:
            self.kind = "numeric"
        else:
            self.kind = "text"

    def arrow_type(self):
        if self.kind in _FIXED:
            return _FIXED[self.kind][2]()
        if self.kind == "numeric":
            return pa.decimal128(*self.decimal)
        return pa.binary() if self.kind == "binary" else pa.string()

    def field(self):
        encoding = "text" if self.kind == "text" else "native"
        return pa.field(self.name, self.arrow_type(), metadata={
            "pg_type": self.type, "pg_storage": self.storage, "encoding": encoding})


def _decimal(base, typmod):
    """(precision, scale) of a numeric(p, s) that Parquet's decimal holds exactly, else None."""
    if base != "numeric" or typmod < 4:
        return None
    precision = ((typmod - 4) >> 16) & 0xFFFF
    scale = (((typmod - 4) & 0x7FF) ^ 1024) - 1024
    return (precision, scale) if 1 <= precision <= 38 and 0 <= scale <= precision else None


_LAYOUT = f"""
select a.attname::text as name, pg_catalog.format_type(a.atttypid, a.atttypmod) as storage,
       pg_catalog.format_type(a.atttypid, null) as base, a.atttypmod as typmod
from pg_catalog.pg_attribute a
where a.attrelid = $1::pg_catalog.regclass and a.attnum > 0 and not a.attisdropped and a.attname <> '{FLAG_COLUMN}'
order by a.attnum"""


def layout(plpy, relation, types=None):
    """The Parquet columns of an object table (qualified SQL name), the flag excepted; types: the columns'
    types (default: their storage types)."""
    rows = db.run(plpy, _LAYOUT, relation)
    types = types or [r["storage"] for r in rows]
    return [Column(r["name"], t, r["storage"], r["base"], r["typmod"]) for r, t in zip(rows, types, strict=True)]


# ---------------------------------------------------------------------------------------------------------------
# Writing
# ---------------------------------------------------------------------------------------------------------------

def _width(col):
    dtype = _FIXED[col.kind][1]
    return 16 if dtype == "V16" else int(dtype[-1])


def _fixed_sql(col, x, i, nulls):
    """The aggregates of a native fixed-width column: d (its values' binary forms), v (validity, when it holds
    nulls). nulls None: not known; then nulls are left out of d (string_agg skips them: d is short) and, for
    kinds whose values Parquet may not hold, u says whether any is such (from the batch's least and greatest)."""
    send = _FIXED[col.kind][0]
    if nulls is None:
        parts = [f"pg_catalog.string_agg(pg_catalog.{send}({x}), ''::pg_catalog.bytea) as d{i}"]
        if col.kind in _UNREPRESENTABLE:
            extremes = " or ".join(_UNREPRESENTABLE[col.kind].format(x=f"{agg}({x})") for agg in ("min", "max"))
            parts.append(f"coalesce({extremes}, false) as u{i}")
        return parts
    zeros = "'\\x" + "00" * _width(col) + "'::pg_catalog.bytea"
    parts = [f"pg_catalog.string_agg(coalesce(pg_catalog.{send}({x}), {zeros}), ''::pg_catalog.bytea) as d{i}"]
    if nulls:
        parts.append(_validity_sql(x, i))
    return parts


def _validity_sql(x, i):
    return (f"pg_catalog.string_agg(case when {x} is null then '\\x00'::pg_catalog.bytea "
            f"else '\\x01'::pg_catalog.bytea end, ''::pg_catalog.bytea) as v{i}")


def _bytes_expr(col, x):
    """The value as bytes: UTF-8 of its text form for strings and text-encoded columns."""
    if col.kind == "binary":
        return x
    if col.kind == "string":
        return f"pg_catalog.convert_to({x}::pg_catalog.text, 'UTF8')"
    # concat() writes a value with its type's output function: its text form (a cast to text need not be one)
    return f"case when {x} is not null then pg_catalog.convert_to(pg_catalog.concat({x}), 'UTF8') end"


def _batch_query(relation, cols, nulls, where):
    inner, outer = [], ["count(*) as n"]
    for i, c in enumerate(cols):
        x = f"t.{ident(c.name)}"
        if c.kind in _FIXED:
            outer += _fixed_sql(c, f"s.c{i}", i, None if nulls is None else nulls[i])
            inner.append(f"{x} as c{i}")
        else:
            if c.kind == "numeric":
                inner.append(f"pg_catalog.convert_to({x}::pg_catalog.text, 'UTF8') as c{i}")
            else:
                inner.append(f"{_bytes_expr(c, x)} as c{i}")
            outer.append(f"pg_catalog.string_agg(s.c{i}, ''::pg_catalog.bytea) as d{i}")
            outer.append(f"pg_catalog.string_agg(pg_catalog.int4send(coalesce(pg_catalog.octet_length(s.c{i}), -1)), "
                         f"''::pg_catalog.bytea) as l{i}")
    inner.append(f"t.{FLAG_COLUMN} as flag")
    outer.append("pg_catalog.string_agg(pg_catalog.boolsend(s.flag), ''::pg_catalog.bytea) as flag")
    # OFFSET 0 keeps each value's bytes computed once per row
    return (f"select {', '.join(outer)} from (select {', '.join(inner)} from {relation} t"
            f"{' where ' + where if where else ''} offset 0) s")


def _validity(raw, n):
    """(Arrow validity buffer, numpy mask of valid values) from one byte per value (0: null)."""
    valid = np.frombuffer(raw, dtype=np.uint8, count=n).astype(bool)
    return pa.py_buffer(np.packbits(valid, bitorder="little")), valid


def _fixed_array(col, n, data, valid_raw):
    _, dtype, arrow_type = _FIXED[col.kind]
    arrow_type = arrow_type()
    validity = _validity(valid_raw, n)[0] if valid_raw is not None else None
    if col.kind == "uuid":
        storage = pa.Array.from_buffers(pa.binary(16), n, [validity, pa.py_buffer(data)])
        return pa.ExtensionArray.from_storage(arrow_type, storage)
    values = np.frombuffer(data, dtype=dtype, count=n)
    if col.kind == "boolean":
        bits = pa.py_buffer(np.packbits(values.astype(bool), bitorder="little"))
        return pa.Array.from_buffers(arrow_type, n, [validity, bits])
    values = values.astype(values.dtype.newbyteorder("="))
    if col.kind == "date":
        values = values + np.int32(_EPOCH_DAYS)
    elif col.kind.startswith("timestamp"):
        values = values + np.int64(_EPOCH_MICROS)
    return pa.Array.from_buffers(arrow_type, n, [validity, pa.py_buffer(values)])


def _variable_array(col, n, data, lengths):
    lengths = np.frombuffer(lengths, dtype=">i4", count=n).astype(np.int64)
    valid = lengths >= 0
    offsets = np.zeros(n + 1, dtype=np.int64)
    np.cumsum(np.where(valid, lengths, 0), out=offsets[1:])
    large = offsets[-1] >= 2 ** 31
    validity = None if valid.all() else pa.py_buffer(np.packbits(valid, bitorder="little"))
    binary = col.kind == "binary"
    arrow_type = (pa.large_binary() if binary else pa.large_string()) if large else \
        (pa.binary() if binary else pa.string())
    offsets = offsets if large else offsets.astype(np.int32)
    array = pa.Array.from_buffers(arrow_type, n, [validity, pa.py_buffer(offsets), pa.py_buffer(data or b"")])
    if col.kind == "numeric":
        return pc.cast(array, pa.decimal128(*col.decimal))
    return array


def _columns(plpy, relation, cols, nulls):
    """The object table's rows as Arrow arrays, a list of chunks per column (the flag last), one chunk per TID
    range of BATCH_BLOCKS blocks. nulls: which columns hold nulls (_profile), or None: not known (no column is
    a decimal); then None when a native fixed-width column holds a null or a value Parquet cannot hold (the
    caller profiles the table and reads it again: the batches need not be scanned twice in the common case)."""
    blocks = db.scalar(plpy, "select (pg_catalog.pg_relation_size($1::pg_catalog.regclass) "
                             "/ pg_catalog.current_setting('block_size')::int)::int", relation)
    ranges = [None] if blocks <= BATCH_BLOCKS else list(range(0, blocks, BATCH_BLOCKS))
    chunks = [[] for _ in range(len(cols) + 1)]
    for start in ranges:
        where = None
        if start is not None:
            where = f"t.ctid >= '({start},0)'::pg_catalog.tid"
            if start + BATCH_BLOCKS < blocks:
                where += f" and t.ctid < '({start + BATCH_BLOCKS},0)'::pg_catalog.tid"
        row = plpy.execute(_batch_query(relation, cols, nulls, where))[0]
        n = row["n"]
        if n == 0:
            continue
        if nulls is None and any(row.get(f"u{i}") or len(row[f"d{i}"] or b"") != n * _width(c)
                                 for i, c in enumerate(cols) if c.kind in _FIXED):
            return None
        for i, c in enumerate(cols):
            if c.kind in _FIXED:
                chunks[i].append(_fixed_array(c, n, row[f"d{i}"], row.get(f"v{i}")))
            else:
                chunks[i].append(_variable_array(c, n, row[f"d{i}"], row[f"l{i}"]))
        flags = np.frombuffer(row["flag"], dtype=np.uint8, count=n).astype(bool)
        chunks[-1].append(pa.array(flags, type=pa.bool_()))
    return chunks


def _profile(plpy, relation, cols):
    """Which columns hold nulls, and which native columns hold values Parquet cannot (they become text)."""
    if not cols:
        return [], []
    checks = [f"count(*) - count(t.{ident(c.name)}) > 0 as n{i}" for i, c in enumerate(cols)]
    for i, c in enumerate(cols):
        if c.kind in _UNREPRESENTABLE:
            checks.append(f"coalesce(bool_or({_UNREPRESENTABLE[c.kind].format(x='t.' + ident(c.name))}), false) "
                          f"as u{i}")
    row = plpy.execute(f"select {', '.join(checks)} from {relation} t")[0]
    return [row[f"n{i}"] for i in range(len(cols))], [row.get(f"u{i}", False) for i in range(len(cols))]


def write(plpy, relation, types, header):
    """The object table `relation` (qualified SQL name) as Parquet bytes; types: its columns' types (in order),
    header: the object's metadata (stored in the file, with the columns' encodings)."""
    return encode(read(plpy, relation, types, header))


def read(plpy, relation, types, header):
    """What encode makes a Parquet file of: the object table's rows as Arrow arrays, and the file's schema."""
    cols = layout(plpy, relation, types)
    chunks = _columns(plpy, relation, cols, None) if all(c.kind != "numeric" for c in cols) else None
    if chunks is None:
        nulls, unrepresentable = _profile(plpy, relation, cols)
        for c, text in zip(cols, unrepresentable, strict=True):
            if text:
                c.kind = "text"
        chunks = _columns(plpy, relation, cols, nulls)
    fields = []
    for i, c in enumerate(cols):
        field = c.field()
        if any(chunk.type != field.type for chunk in chunks[i]):  # values past 2 GB in a batch: large offsets
            field = field.with_type(pa.large_binary() if c.kind == "binary" else pa.large_string())
            chunks[i] = [chunk.cast(field.type) for chunk in chunks[i]]
        fields.append(field)
    fields.append(pa.field(FLAG_COLUMN, pa.bool_(), nullable=False))
    header = dict(header, dump_format=FORMAT, columns=[
        {"name": c.name, "pg_type": c.type, "pg_storage": c.storage, "encoding": "text" if c.kind == "text" else
         "native"} for c in cols])
    schema = pa.schema(fields, metadata={METADATA_KEY: json.dumps(header).encode()})
    encodings = {c.name: _ENCODING[c.kind] for c in cols if c.kind in _ENCODING and "." not in c.name}
    return {"chunks": chunks, "schema": schema, "encodings": encodings or None}


def encode(prepared):
    """Parquet bytes of what read returned. Runs no SQL, and Arrow leaves Python's lock while it encodes: another
    thread may encode one object while the backend's reads the next."""
    schema = prepared["schema"]
    table = pa.Table.from_arrays([pa.chunked_array(chunk, type=f.type) for chunk, f in
                                  zip(prepared["chunks"], schema, strict=True)], schema=schema)
    sink = io.BytesIO()
    pq.write_table(table, sink, compression="zstd", compression_level=COMPRESSION_LEVEL,
                   row_group_size=ROW_GROUP_ROWS, use_dictionary=False, column_encoding=prepared["encodings"])
    return sink.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Reading
# ---------------------------------------------------------------------------------------------------------------

def is_parquet(data):
    return len(data) >= 8 and data[:4] == MAGIC and data[-4:] == MAGIC


def open_file(data):
    """(header, ParquetFile) of Parquet bytes; Refused when they are not a readable file of this format."""
    try:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        metadata = parquet.schema_arrow.metadata or {}
        header = json.loads(metadata[METADATA_KEY])
    except (pa.ArrowException, KeyError, ValueError, OSError) as error:
        raise Refused("it is not a Parquet file of an object") from error
    if not isinstance(header, dict) or header.get("dump_format") != FORMAT:
        raise Refused("its metadata is not an object header of this format")
    return header, parquet


def _check_fields(parquet, cols):
    """The file's fields must be the object's columns then the flag, each stored natively or as text; a column
    stored as text is read as text (its kind changes)."""
    schema = parquet.schema_arrow
    if schema.names != [c.name for c in cols] + [FLAG_COLUMN]:
        raise Refused("its columns are not the ones its schema declares")
    if schema.field(FLAG_COLUMN).type != pa.bool_():
        raise Refused(f"its {FLAG_COLUMN} column is not boolean")
    strings, binaries = (pa.string(), pa.large_string()), (pa.binary(), pa.large_binary())
    for c in cols:
        got = schema.field(c.name).type
        if c.kind == "binary":
            ok = got in binaries
        elif c.kind in ("string", "text"):
            ok = got in strings
        elif got in strings:
            ok, c.kind = True, "text"
        else:
            ok = got == c.arrow_type() or (c.kind == "uuid" and got == pa.binary(16))
        if not ok:
            raise Refused(f'its column "{c.name}" is stored as {got}, which does not hold {c.storage}')


@functools.cache
def _hex_digits():
    """Each byte's two hex digits, as one 16-bit word."""
    return np.array([f"{i:02x}".encode() for i in range(256)], dtype="S2").view(np.uint16)


_JULIAN_1970 = 2440588  # the Julian day of 1970-01-01


def _hex(array, prefix="\\x"):
    """Binary values (or fixed-size binary) as hex text: the prefix (bytea's \\x) then two digits a byte."""
    if isinstance(array, pa.ExtensionArray):
        array = array.storage
    n = len(array)
    if pa.types.is_fixed_size_binary(array.type):
        width = array.type.byte_width
        offsets = np.arange(n + 1, dtype=np.int64) * width
        data = array.buffers()[1]
        raw = np.frombuffer(data, dtype=np.uint8, count=(array.offset + n) * width)[array.offset * width:]
        base = 0
    else:
        large = pa.types.is_large_binary(array.type)
        offsets = np.frombuffer(array.buffers()[1], dtype=np.int64 if large else np.int32,
                                count=array.offset + n + 1)[array.offset:].astype(np.int64)
        data = array.buffers()[2]
        raw = np.frombuffer(data, dtype=np.uint8, count=int(offsets[-1])) if data is not None \
            else np.zeros(0, np.uint8)
        base = int(offsets[0])
    digits = _hex_digits()[raw[base:int(offsets[-1])]].view(np.uint8)
    hexed = pa.Array.from_buffers(pa.large_string(), n, [array.buffers()[0] if array.offset == 0 else None,
                                                        pa.py_buffer((offsets - base) * 2), pa.py_buffer(digits)])
    if array.offset != 0 and array.null_count:
        hexed = pc.if_else(array.is_null(), pa.scalar(None, pa.large_string()), hexed)
    if not prefix:
        return hexed
    return pc.binary_join_element_wise(pa.scalar(prefix, pa.large_string()), hexed, pa.scalar("", pa.large_string()))


def _as_csv(col, array):
    """A column of a batch as values Postgres's CSV input reads back exactly (Arrow writes numbers, booleans,
    decimals and strings as Postgres reads them)."""
    if col.kind == "binary":
        return _hex(array)
    if col.kind == "uuid":
        return _hex(array, prefix="")
    if col.kind == "date":
        days = pc.add(pc.cast(pc.cast(array, pa.int32()), pa.int64()), _JULIAN_1970)
        return pc.binary_join_element_wise("J", pc.cast(days, pa.string()), "")
    if col.kind.startswith("timestamp"):
        micros = pc.cast(array, pa.int64()).to_numpy(zero_copy_only=False)
        nulls = array.is_null().to_numpy(zero_copy_only=False)
        days, rest = np.divmod(np.where(nulls, 0, micros).astype(np.int64), _DAY_MICROS)
        day = pc.cast(pa.array(days + _JULIAN_1970, mask=nulls), pa.string())
        time = pc.cast(pc.cast(pa.array(rest, mask=nulls), pa.time64("us")), pa.string())
        zone = "+00" if col.kind == "timestamp with time zone" else ""
        return pc.binary_join_element_wise("J", day, " ", time, zone, "")
    return array


def _write_csv(batches, cols, path):
    """The batches as one CSV file in Postgres's CSV format."""
    names = [c.name for c in cols] + [FLAG_COLUMN]
    with pa.OSFile(path, "wb") as sink:
        writer = None
        for batch in batches:
            if batch.column(len(cols)).null_count:
                raise Refused(f"its {FLAG_COLUMN} column holds nulls")
            arrays = [_as_csv(c, batch.column(i)) for i, c in enumerate(cols)] + [batch.column(len(cols))]
            table = pa.Table.from_arrays(arrays, names=names)
            if writer is None:  # every batch of a file has the same types
                writer = pa_csv.CSVWriter(sink, table.schema, write_options=_csv_options())
            writer.write_table(table)
        if writer is not None:
            writer.close()


# Kinds a file can be loaded in COPY's binary format (numpy lays the rows out): every native kind but decimals.
_BINARY_KINDS = set(_FIXED) | {"string", "binary"}
_BINARY_HEADER = b"PGCOPY\n\xff\r\n\x00" + b"\x00" * 8


def _fixed_bytes(col, array):
    """(the values as big-endian bytes, one row of `width` bytes each, width) of a native fixed-width column."""
    n = len(array)
    if col.kind == "uuid":
        storage = array.storage if isinstance(array, pa.ExtensionArray) else array
        raw = np.frombuffer(storage.buffers()[1], dtype=np.uint8, count=(storage.offset + n) * 16)
        return raw[storage.offset * 16:].reshape(n, 16), 16
    if col.kind == "boolean":
        return np.asarray(array.fill_null(False)).astype(np.uint8).reshape(n, 1), 1
    _, dtype, _ = _FIXED[col.kind]
    if col.kind == "date":
        values = np.asarray(pc.cast(array, pa.int32()).fill_null(0)).astype(np.int64) - _EPOCH_DAYS
    elif col.kind.startswith("timestamp"):
        values = np.asarray(pc.cast(array, pa.int64()).fill_null(0)) - np.int64(_EPOCH_MICROS)
    else:
        values = np.asarray(array.fill_null(0))
    values = values.astype(dtype)
    return values.view(np.uint8).reshape(n, values.dtype.itemsize), values.dtype.itemsize


@functools.cache
def _large_empty():
    return pa.scalar(b"", pa.large_binary())


@functools.cache
def _null_length():
    return np.frombuffer(b"\xff\xff\xff\xff", np.uint8)


def _block(n, parts):
    """The fixed-width parts of a batch's rows that lie between two variable-width values, as one large_binary
    array (one value a row). parts: [(bytes, nulls)]: a uint8 matrix of n rows each (a field's length word, then
    its value's bytes) and the rows where the field is null (None: none is), whose value bytes are left out."""
    width = sum(values.shape[1] for values, _ in parts)
    out = np.empty((n, width), dtype=np.uint8)
    keep = None
    at = 0
    for values, nulls in parts:
        out[:, at:at + values.shape[1]] = values
        if nulls is not None and values.shape[1] > 4:
            if keep is None:
                keep = np.ones((n, width), dtype=bool)
            keep[nulls, at + 4:at + values.shape[1]] = False
        at += values.shape[1]
    if keep is None:
        offsets, data = np.arange(0, (n + 1) * width, width, dtype=np.int64), out.reshape(-1)
    else:
        offsets = np.zeros(n + 1, dtype=np.int64)
        np.cumsum(keep.sum(axis=1), out=offsets[1:])
        data = out[keep]
    return pa.Array.from_buffers(pa.large_binary(), n, [None, pa.py_buffer(offsets), pa.py_buffer(data)])


def _length_words(lengths, nulls, n):
    """Each field's length as COPY's big-endian 32-bit word (-1 for a null)."""
    words = np.broadcast_to(lengths.astype(">i4").view(np.uint8).reshape(-1, 4), (n, 4))
    return words if nulls is None else np.where(nulls[:, None], _null_length(), words)


def _binary_batch(cols, batch):
    """A batch's rows in COPY's binary format (without the file's header and trailer), and each row's size in it:
    numpy lays out the
    fixed-width fields (the field count, lengths, fixed-width values) of the rows between two variable-width
    values as one block a row, and Arrow joins each row's blocks and variable-width values, in C."""
    n = batch.num_rows
    count = np.frombuffer(np.array(len(cols) + 1, ">i2").tobytes(), np.uint8)
    pieces, parts = [], [(np.broadcast_to(count, (n, 2)), None)]
    for i, c in enumerate(cols + [None]):
        array = batch.column(i)
        nulls = np.asarray(array.is_null()) if array.null_count else None
        if c is None or c.kind in _FIXED:
            values, width = _fixed_bytes(c, array) if c is not None else \
                (np.asarray(array).astype(np.uint8).reshape(n, 1), 1)
            parts.append((np.concatenate([_length_words(np.array([width]), nulls, n), values], axis=1), nulls))
            continue
        array = array.cast(pa.large_string()).view(pa.large_binary()) if c.kind != "binary" \
            else array.cast(pa.large_binary())
        prefix = 1 if c.base == "jsonb" else 0  # jsonb's binary form: a version byte, then the text
        lengths = np.asarray(pc.binary_length(array).fill_null(0)).astype(np.int64) + prefix
        head = _length_words(lengths, nulls, n)
        if prefix:
            head = np.concatenate([head, np.ones((n, 1), np.uint8)], axis=1)
        parts.append((head, nulls))
        pieces += [_block(n, parts), array.fill_null(_large_empty()) if nulls is not None else array]
        parts = []
    pieces.append(_block(n, parts))  # the flag is last: the last block is never empty
    rows = pieces[0] if len(pieces) == 1 else pc.binary_join_element_wise(*pieces, _large_empty())
    offsets = np.frombuffer(rows.buffers()[1], dtype=np.int64, count=rows.offset + n + 1)[rows.offset:]
    return rows.buffers()[2][int(offsets[0]):int(offsets[-1])], np.diff(offsets)


def _write_binary(batches, cols, path):
    """The batches as one file in COPY's binary format; returns the size of its largest row in that format."""
    widest = 0
    with open(path, "wb") as sink:
        sink.write(_BINARY_HEADER)
        for batch in batches:
            if batch.column(len(cols)).null_count:
                raise Refused(f"its {FLAG_COLUMN} column holds nulls")
            rows, sizes = _binary_batch(cols, batch)
            sink.write(rows)
            widest = max(widest, int(sizes.max()) if len(sizes) else 0)
        sink.write(b"\xff\xff")
    return widest


# The largest row (in COPY's binary format, with 8 bytes a field for headers and alignment) of an object whose
# table is made without a TOAST table (see write_rows): every stored row is then smaller than Postgres's
# TOAST_TUPLE_THRESHOLD (2032 bytes with 8 kB pages), so no value of it would be compressed or moved out of line.
INLINE_ROW_BYTES = 1900


def write_rows(plpy, parquet, relation, types, path):
    """Write the rows of an opened file (open_file) to `path`, in a format COPY reads, for a table with the columns
    of `relation` (qualified SQL name: the object table, or one like it), which the file's must match (Refused
    otherwise); types: the columns' types. Returns what copy_rows needs: {cols, format, inline}. inline: every row
    is stored whole in its heap page, as it would be whatever its columns' storage, so that the table needs no TOAST
    table (COPY's binary format only, no jsonb, whose stored form may be larger than its text, and every row at
    most INLINE_ROW_BYTES)."""
    cols = layout(plpy, relation, types)
    _check_fields(parquet, cols)
    binary = all(c.kind in _BINARY_KINDS for c in cols)
    try:
        widest = (_write_binary if binary else _write_csv)(
            parquet.iter_batches(batch_size=BATCH_ROWS, use_threads=True), cols, path)
    except (pa.ArrowException, OSError, ValueError, IndexError) as error:
        raise Refused(f"its data cannot be read ({type(error).__name__})") from error
    inline = binary and all(c.base != "jsonb" for c in cols) and widest + 8 * (len(cols) + 1) <= INLINE_ROW_BYTES
    return {"cols": cols, "format": "binary" if binary else "csv", "inline": inline}


def copy_rows(plpy, target, written, path):
    """COPY the rows write_rows wrote to `path` into the empty table `target` (qualified SQL name), then remove the
    file (the extension's owner is a superuser: COPY reads a server file)."""
    try:
        columns = ", ".join([ident(c.name) for c in written["cols"]] + [FLAG_COLUMN])
        plpy.execute(f"copy {target} ({columns}) from {literal(path)} with (format {written['format']})")
    finally:
        with contextlib.suppress(OSError):
            os.remove(path)


def load(plpy, parquet, target, types, directory=None):
    """Insert the rows of an opened file (open_file) into the empty object table `target` (qualified SQL name),
    whose columns it must match (Refused otherwise); types: the columns' types. The rows go through a file in a
    private temporary directory (`directory`, from private_directory, or one made for the call), which COPY
    reads."""
    if directory is None:
        with private_directory() as made:
            return load(plpy, parquet, target, types, made)
    path = os.path.join(directory, "rows")
    try:
        written = write_rows(plpy, parquet, target, types, path)
    except Refused:
        with contextlib.suppress(OSError):
            os.remove(path)
        raise
    copy_rows(plpy, target, written, path)


@contextlib.contextmanager
def private_directory():
    """A temporary directory only this server's user reads, removed afterwards: load's CSV files go there."""
    directory = tempfile.mkdtemp(prefix="splitgraph-")
    try:
        yield directory
    finally:
        shutil.rmtree(directory, ignore_errors=True)
