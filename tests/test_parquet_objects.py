"""Issue 12: objects as Parquet files. dump_object(id, 'parquet') on one database and load_object on another give
back exactly the rows it came from (load_object re-hashes them) over every built-in type family, NULLs, unicode,
deletions and empty objects; a damaged or foreign file is refused and leaves nothing behind; DuckDB reads the file
and sees the same rows."""
import decimal
import uuid

import duckdb
import psycopg2
import pytest

from conftest import fails, sql, value
from support import driver  # noqa: E402
from support.security import object_dump

# Every built-in type family, with the values that test a round trip: extremes, NaN and infinities, time zones,
# unicode, quotes and separators, empty values, and NULL in every column (the last row).
COLUMNS = [
    ("i2", "smallint", ["-32768", "32767", "0"]),
    ("i4", "integer", ["-2147483648", "2147483647", "7"]),
    ("i8", "bigint", ["-9223372036854775808", "9223372036854775807", "0"]),
    ("f4", "real", ["'NaN'", "'-Infinity'", "'1.17549435e-38'"]),
    ("f8", "double precision", ["'Infinity'", "'-0'", "'5e-324'"]),
    ("b", "boolean", ["true", "false", "true"]),
    ("t", "text", ["'héllo, \"wörld\"\\\\\n\t|'", "''", "'🙂 ½ \\x00 NULL'"]),
    ("vc", "character varying(12)", ["'a,b'", "''", "'\\N'"]),
    ("ch", "character(4)", ["'ab'", "''", "'abcd'"]),
    ("by", "bytea", ["'\\x00ff10'", "''", "'\\x5c2c'"]),
    ("d", "date", ["'0044-03-15 BC'", "'5874897-12-31'", "'2000-02-29'"]),
    ("d_inf", "date", ["'infinity'", "'-infinity'", "'1970-01-01'"]),
    ("ts", "timestamp without time zone", ["'4713-01-01 00:00:00 BC'", "'2024-02-29 23:59:59.999999'",
                                           "'1969-12-31 23:59:59.5'"]),
    ("ts3", "timestamp(3) without time zone", ["'2001-01-01 00:00:00.123'", "'1900-01-01'", "'3000-01-01'"]),
    ("tstz", "timestamp with time zone", ["'2020-06-01 12:00:00+05:30'", "'1883-11-18 12:00:00 America/New_York'",
                                          "'2020-03-08 02:30:00 America/New_York'"]),
    ("tstz_inf", "timestamp with time zone", ["'infinity'", "'294276-12-31 23:59:59.999999+00'", "now()"]),
    ("n", "numeric(12,4)", ["'-99999999.9999'", "'0.0001'", "'0'"]),
    ("n_nan", "numeric(8,2)", ["'NaN'", "'1.5'", "'-0.00'"]),
    ("n_any", "numeric", ["'1e-100'", "'Infinity'", "'12345678901234567890.123456789'"]),
    ("n38", "numeric(38,0)", ["'99999999999999999999999999999999999999'", "'-1'", "'0'"]),
    ("u", "uuid", ["'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11'", "'00000000-0000-0000-0000-000000000000'",
                   "'ffffffff-ffff-ffff-ffff-ffffffffffff'"]),
    ("j", "json", ["'{\"a\":  [1, 2.50]}'", "'\"x\"'", "'null'"]),
    ("jb", "jsonb", ["'{\"b\": {\"c\": \"é\"}}'", "'[]'", "'1.0'"]),
    ("arr", "integer[]", ["'{1,NULL,3}'", "'{}'", "'{{1,2},{3,4}}'"]),
    ("tarr", "text[]", [r"""'{"a,b","c\"d",NULL,"NULL"}'""", "'{\"\"}'", "'[0:1]={x,y}'"]),
    ("r", "int4range", ["'[1,5)'", "'empty'", "'(,)'"]),
    ("tsr", "tstzrange", ["'[2020-01-01 00:00+00,infinity)'", "'empty'", "'(,2000-01-01 00:00+02]'"]),
    ("mr", "int4multirange", ["'{[1,3),[5,7)}'", "'{}'", "'{(,0)}'"]),
    ("iv", "interval", ["'1 year 2 mons 3 days 04:05:06.789'", "'-1 mons'", "'0'"]),
    ("tm", "time without time zone", ["'24:00:00'", "'00:00:00'", "'12:34:56.789'"]),
    ("tmtz", "time with time zone", ["'12:00:00+05:30'", "'00:00:00-14'", "'23:59:59+00'"]),
    ("ip", "inet", ["'10.0.0.1'", "'::1/128'", "'192.168.0.0/16'"]),
    ("ci", "cidr", ["'10.0.0.0/8'", "'::/0'", "'1.2.3.4/32'"]),
    ("mac", "macaddr", ["'08:00:2b:01:02:03'", "'00:00:00:00:00:00'", "'ff:ff:ff:ff:ff:ff'"]),
    ("m", "money", ["'12.34'", "'-0.01'", "'0'"]),
    ("bits", "bit varying(8)", ["'1010'", "''", "'11111111'"]),
    ("pt", "point", ["'(1.5,-2)'", "'(0,0)'", "'(NaN,Infinity)'"]),
    ("bx", "box", ["'(1,1),(0,0)'", "'(0,0),(0,0)'", "'(2,3),(-1,-1)'"]),
    ("tsv", "tsvector", ["'a fat cat'", "''", "'x:1A y:2'"]),
    ("x", "xml", ["'<a b=\"1\">é</a>'", "''", "'<?xml version=\"1.0\"?><r/>'"]),
    ("oid_", "oid", ["4294967295", "0", "1"]),
]


@pytest.fixture(scope="module")
def source(cluster, dbname):
    """Repository 'pq/types' with a table of every type family, committed as one object, then changed (an
    update and a delete) and committed again as a delta."""
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        sql(c, "create type pq_mood as enum ('sad', 'ok')")
        sql(c, "create type pq_pair as (a int, b text)")
        sql(c, "create domain pq_positive as integer check (value > 0)")
        sql(c, "select splitgraph.init('pq/types')")
        columns = COLUMNS + [("mood", "pq_mood", ["'sad'", "'ok'", "'ok'"]),
                             ("pair", "pq_pair", ["'(1,\"x, y\")'", "'(,)'", "'(2,)'"]),
                             ("pos", "pq_positive", ["1", "2", "3"])]
        definitions = ", ".join(f"{name} {type_}" for name, type_, _ in columns)
        sql(c, f'create table "pq/types".t (id int primary key, {definitions})')
        for row in range(3):
            sql(c, f'insert into "pq/types".t values ({row + 1}, '
                   + ", ".join(values[row] for _, _, values in columns) + ")")
        sql(c, 'insert into "pq/types".t (id) values (4)')
        # (a table of its own for the delta: tracking an update of a character(n) column fails, see the report)
        sql(c, 'create table "pq/types".d (id int primary key, v text, n numeric(8,2), ts timestamptz)')
        sql(c, """insert into "pq/types".d values (1, 'one', 1.5, '2020-01-01 00:00+00'), (2, null, null, null),
                                                (3, 'three', 'NaN', 'infinity')""")
        base = value(c, "select splitgraph.commit('pq/types')")
        sql(c, 'update "pq/types".d set v = \'changed\' where id = 1')
        sql(c, 'delete from "pq/types".d where id = 2')
        delta = value(c, "select splitgraph.commit('pq/types')")
        (t,) = value(c, "select splitgraph.table_info('pq/types', %s, 't')", base)["objects"]
        d = value(c, "select splitgraph.table_info('pq/types', %s, 'd')", delta)["objects"]
        assert len(d) == 2
    return {"base": t, "delta": d[1]}


@pytest.fixture
def other(cluster, dbname, request):
    """A connection to a fresh database of the cluster, with the extension (objects store user types as text)."""
    name = f"{dbname}_{request.node.name}"[:63]
    cluster.create_database(name)
    with driver.connect(cluster.dsn(name), autocommit=True) as c:
        yield c


def rows_of(conn, object_id):
    return sql(conn, f'select f::text from splitgraph_meta."{object_id}" f order by 1')


def test_round_trip_of_every_type_family(conn, other, source):
    """The Parquet file of each object loads on another database into exactly the rows it came from (and
    load_object re-hashed them against the id); its columns are stored as the object stores them."""
    for object_id in (source["base"], source["delta"]):
        data = value(conn, "select splitgraph.dump_object(%s, 'parquet')", object_id)
        assert bytes(data[:4]) == b"PAR1"
        sql(other, "select splitgraph.load_object(%s, %s)", object_id, data)
        assert rows_of(other, object_id) == rows_of(conn, object_id)
        assert value(other, "select splitgraph.object_info(%s)", object_id)["rows_deleted"] == \
            value(conn, "select splitgraph.object_info(%s)", object_id)["rows_deleted"]
    flags = sql(other, f'select sg_ud_flag, count(*) from splitgraph_meta."{source["delta"]}" group by 1 order by 1')
    assert flags == [(False, 1), (True, 1)]


def test_many_objects_dumped_at_once_are_the_files_dump_object_makes(conn, source):
    """dump_parquet_objects (a push's way to dump its objects, each file encoded while the next object is read)
    gives, in order, the bytes dump_object(id, 'parquet') gives for each: the one with NULLs, infinities and
    every type family included."""
    ids = [source["delta"], source["base"], source["delta"]]
    many = value(conn, "select splitgraph_internal.dump_parquet_objects(%s::text[])", ids)
    assert [bytes(d) for d in many] == [bytes(value(conn, "select splitgraph.dump_object(%s, 'parquet')", o))
                                        for o in ids]
    assert value(conn, "select splitgraph_internal.dump_parquet_objects('{}'::text[])") == []
    # the files are held in memory until the call returns: a call takes a bounded number of objects
    with pytest.raises(psycopg2.Error) as error:
        value(conn, "select splitgraph_internal.dump_parquet_objects(%s::text[])", [source["base"]] * 129)
    assert error.value.pgcode == "54000"
    assert len(value(conn, "select splitgraph_internal.dump_parquet_objects(%s::text[])", [source["base"]] * 2)) == 2


def test_parquet_and_dump_formats_load_the_same_object(conn, other, source):
    sql(other, "select splitgraph.load_object(%s, %s)", source["base"],
        value(conn, "select splitgraph.dump_object(%s)", source["base"]))
    first = rows_of(other, source["base"])
    sql(other, "select splitgraph.load_object(%s, %s)", source["base"],
        value(conn, "select splitgraph.dump_object(%s, 'parquet')", source["base"]))  # stored already: no-op
    assert rows_of(other, source["base"]) == first == rows_of(conn, source["base"])


def test_empty_object_round_trip(conn, other):
    object_id, dump = object_dump([], [("a", "integer", True), ("b", "text", False)])
    sql(conn, "select splitgraph.load_object(%s, %s)", object_id, dump)
    data = value(conn, "select splitgraph.dump_object(%s, 'parquet')", object_id)
    sql(other, "select splitgraph.load_object(%s, %s)", object_id, data)
    assert rows_of(other, object_id) == []
    assert value(other, "select splitgraph.object_info(%s)", object_id)["rows_inserted"] == 0


def test_large_object_spans_several_batches(conn, other):
    """An object larger than one batch of the writer (4096 blocks) and of the reader (131072 rows)."""
    sql(conn, "select splitgraph.init('pq/large')")
    sql(conn, 'create table "pq/large".t (id int primary key, v text, f float8)')
    sql(conn, """insert into "pq/large".t select i, repeat(md5(i::text), 2), i / 7.0
                 from generate_series(1, 400000) i""")
    image = value(conn, "select splitgraph.commit('pq/large', chunk_size => 1000000)")
    (object_id,) = value(conn, "select splitgraph.table_info('pq/large', %s, 't')", image)["objects"]
    assert value(conn, f"""select pg_relation_size('splitgraph_meta."{object_id}"') / 8192""") > 4096
    data = value(conn, "select splitgraph.dump_object(%s, 'parquet')", object_id)
    sql(other, "select splitgraph.load_object(%s, %s)", object_id, data)
    assert value(other, f'select count(*) from splitgraph_meta."{object_id}"') == 400000
    assert value(other, f"""select sum(hashtext(f::text)) from splitgraph_meta."{object_id}" f""") == \
        value(conn, f"""select sum(hashtext(f::text)) from splitgraph_meta."{object_id}" f""")


def test_natively_stored_columns_load_in_the_binary_format(conn, other):
    """An object whose columns are all stored natively (decimals aside) loads through COPY's binary format: every
    such kind, nulls in each, NaN and infinities, jsonb, unicode and empty strings, all rows exactly."""
    sql(conn, "select splitgraph.init('pq/native')")
    sql(conn, """create table "pq/native".t (id bigint primary key, s smallint, i integer, r real, d float8,
                                           b boolean, day date, ts timestamp, tz timestamptz, u uuid, t text,
                                           v varchar(5), j json, jb jsonb, raw bytea)""")
    sql(conn, """insert into "pq/native".t values
        (1, -32768, 2147483647, 'NaN', '-Infinity', true, '0001-01-01', '1999-12-31 23:59:59.999999',
         '2000-01-01 00:00:00.000001+00', 'a0eebc99-9c0b-4ef8-bb6d-6bb9bd380a11', 'héllo, "wörld"', 'ab€',
         '{"a": [1, 2]}', '{"z": null, "a": "é"}', '\\x00ff10'),
        (2, null, null, null, null, null, null, null, null, null, null, null, null, null, null),
        (3, 0, 0, 'Infinity', 1.5e-300, false, '5874897-12-31', '1970-01-01 00:00', '1969-12-31 23:59:59+00',
         '00000000-0000-0000-0000-000000000000', '', '', '[]', '[]', '\\x')""")
    sql(conn, """insert into "pq/native".t select i, i % 100, i, i / 3.0, i / 7.0, i % 2 = 0, date '2020-01-01' + i,
                 timestamp '2020-01-01' + i * interval '1 s', timestamptz '2020-01-01 00:00+00' + i * interval '1 ms',
                 md5(i::text)::uuid, md5(i::text), left(md5(i::text), 5), json_build_object('i', i),
                 jsonb_build_object('i', i), decode(md5(i::text), 'hex') from generate_series(10, 300000) i""")
    image = value(conn, "select splitgraph.commit('pq/native', chunk_size => 1000000)")
    (object_id,) = value(conn, "select splitgraph.table_info('pq/native', %s, 't')", image)["objects"]
    data = value(conn, "select splitgraph.dump_object(%s, 'parquet')", object_id)
    sql(other, "select splitgraph.load_object(%s, %s)", object_id, data)
    assert value(other, f'select count(*) from splitgraph_meta."{object_id}"') == 299994
    for row_id in (1, 2, 3):
        assert sql(other, f'select f::text from splitgraph_meta."{object_id}" f where id = %s', row_id) == \
            sql(conn, f'select f::text from splitgraph_meta."{object_id}" f where id = %s', row_id)
    assert value(other, f"""select sum(hashtext(f::text)) from splitgraph_meta."{object_id}" f""") == \
        value(conn, f"""select sum(hashtext(f::text)) from splitgraph_meta."{object_id}" f""")


def test_values_parquet_cannot_hold_in_columns_without_nulls(conn, other, tmp_path):
    """Dates and timestamps Parquet cannot hold (infinities, timestamps past 2**63 microseconds since 1970) in
    columns without NULLs, found in the one scan of the object (no profiling scan first runs): those
    columns go as text, the file loads back into exactly the rows, and the others stay native."""
    sql(conn, "select splitgraph.init('pq/edges')")
    sql(conn, 'create table "pq/edges".t (id int primary key, day date, ts timestamp, tz timestamptz, n int)')
    sql(conn, """insert into "pq/edges".t select i, date '2020-01-01' + i, timestamp '2020-01-01' + i * interval '1 s',
                 timestamptz '2020-01-01 00:00+00' + i * interval '1 s', i from generate_series(1, 200000) i""")
    sql(conn, """update "pq/edges".t set day = 'infinity', ts = '-infinity',
                 tz = '294276-12-31 23:59:59.999999+00' where id = 199000""")
    image = value(conn, "select splitgraph.commit('pq/edges', chunk_size => 1000000)")
    (object_id,) = value(conn, "select splitgraph.table_info('pq/edges', %s, 't')", image)["objects"]
    data = bytes(value(conn, "select splitgraph.dump_object(%s, 'parquet')", object_id))
    sql(other, "select splitgraph.load_object(%s, %s)", object_id, data)
    assert sql(other, f'select f::text from splitgraph_meta."{object_id}" f where id in (1, 199000) order by id') == \
        sql(conn, f'select f::text from splitgraph_meta."{object_id}" f where id in (1, 199000) order by id')
    path = tmp_path / "edges.parquet"
    path.write_bytes(data)
    types = dict(duckdb.sql(f"select column_name, column_type from (describe select * from read_parquet('{path}'))")
                 .fetchall())
    assert [types[n] for n in ("day", "ts", "tz", "n")] == ["VARCHAR", "VARCHAR", "VARCHAR", "INTEGER"]


def test_rows_too_wide_to_stay_in_their_page_load_out_of_line(conn, other):
    """Objects of natively stored columns whose rows are wide (values Postgres compresses or moves out of line:
    32 kB of text, 20 kB of bytea, a large json) load through Parquet exactly, beside narrow rows of the same
    table; so do narrow rows alone, and a wide row among thousands of narrow ones."""
    sql(conn, "select splitgraph.init('pq/wide')")
    sql(conn, 'create table "pq/wide".t (id int primary key, v text, raw bytea, j json)')
    sql(conn, """insert into "pq/wide".t select i, md5(i::text), decode(md5(i::text), 'hex'), '{}'
                 from generate_series(1, 5000) i""")
    narrow = value(conn, "select splitgraph.commit('pq/wide', chunk_size => 100000)")
    sql(conn, """insert into "pq/wide".t values
        (0, repeat('wide é ', 5000), decode(repeat(md5('x'), 640), 'hex'),
         (select json_agg(i)::json from generate_series(1, 3000) i)),
        (-1, repeat('z', 2000), null, null)""")
    wide = value(conn, "select splitgraph.commit('pq/wide', snapshot => true, chunk_size => 100000)")
    for image in (narrow, wide):
        for object_id in value(conn, "select splitgraph.table_info('pq/wide', %s, 't')", image)["objects"]:
            data = value(conn, "select splitgraph.dump_object(%s, 'parquet')", object_id)
            sql(other, "select splitgraph.load_object(%s, %s)", object_id, data)
            assert sql(other, f'select f::text from splitgraph_meta."{object_id}" f order by f.id') == \
                sql(conn, f'select f::text from splitgraph_meta."{object_id}" f order by f.id')


def stored_objects(conn):
    return sql(conn, """select c.relname::text from pg_class c where c.relnamespace = 'splitgraph_meta'::regnamespace
                        and c.relkind = 'r' and (c.relname ~ '^o[0-9a-f]{62}$' or c.relname like 'sg_tmp%%')
                        order by 1""")


def test_damaged_or_foreign_files_are_refused(conn, other, source):
    data = bytes(value(conn, "select splitgraph.dump_object(%s, 'parquet')", source["base"]))
    before = stored_objects(other)
    damaged = bytearray(data)
    for i in range(200, 260):  # inside the first column chunks
        damaged[i] ^= 0x55
    cases = [
        (source["base"], bytes(damaged)),
        (source["delta"], data),  # another object's file
        (source["base"], b"PAR1" + b"\x00" * 64 + b"PAR1"),
        (source["base"], data[: len(data) // 2] + data[-8:]),
    ]
    for object_id, payload in cases:
        with pytest.raises(psycopg2.Error) as error:
            sql(other, "select splitgraph.load_object(%s, %s)", object_id, payload)
        assert error.value.pgcode == "XX001", error.value
    assert stored_objects(other) == before


def test_unknown_format_is_refused(conn, source):
    with pytest.raises(psycopg2.Error) as error:
        sql(conn, "select splitgraph.dump_object(%s, 'csv')", source["base"])
    assert error.value.pgcode == "22023"


def test_duckdb_reads_the_same_rows(conn, source, tmp_path):
    """A Parquet reader that is not Postgres sees the same rows: native columns as their types, the others as
    their Postgres text forms."""
    path = tmp_path / "object.parquet"
    path.write_bytes(bytes(value(conn, "select splitgraph.dump_object(%s, 'parquet')", source["base"])))
    got = duckdb.sql(f"""select id, i8, f8, b, t, vc, "by", date_diff('day', DATE '1970-01-01', d), epoch_us(ts),
                                epoch_us(tstz), n, u, arr, r, iv, mood, pair, sg_ud_flag
                         from read_parquet('{path}') order by id""").fetchall()
    want = sql(conn, f"""select id, i8, f8, b, t, vc, "by", d - date '1970-01-01',
                                (extract(epoch from ts) * 1000000)::bigint,
                                (extract(epoch from tstz) * 1000000)::bigint, n, u, arr::text, r::text, iv::text,
                                mood::text, pair::text, sg_ud_flag
                         from splitgraph_meta."{source['base']}" order by id""")
    assert len(got) == len(want) == 4
    for g, w in zip(got, want, strict=True):
        for a, b in zip(g, w, strict=True):
            if isinstance(b, float) and b != b:
                assert a != a
                continue
            if isinstance(b, (bytes, memoryview)):
                a, b = bytes(a), bytes(b)
            if isinstance(a, uuid.UUID) or isinstance(b, uuid.UUID):
                # DuckDB gives a UUID; psycopg2 gives a uuid column's text
                a, b = uuid.UUID(str(a)), uuid.UUID(str(b))
            elif isinstance(b, decimal.Decimal):
                a = type(b)(str(a))
            assert a == b, (g, w)
    described = dict(duckdb.sql(f"describe select * from read_parquet('{path}')").fetchall()[i][:2]
                     for i in range(len(COLUMNS) + 5))
    assert described["i8"] == "BIGINT" and described["ts"] == "TIMESTAMP" and described["u"] == "UUID"
    assert described["n"] == "DECIMAL(12,4)" and described["tstz"].startswith("TIMESTAMP WITH TIME ZONE")
    assert described["r"] == "VARCHAR" and described["sg_ud_flag"] == "BOOLEAN"


def test_a_plain_role_dumps_objects_only_as_dump_object_lets_it(conn, source, roles):
    """dump_parquet_objects runs as the extension's owner: a LOGIN role that is not a superuser gets exactly what
    dump_object gives it (every role may read objects), a bounded number at a time, and nothing for an id that
    names no stored object, such as a table of its own named like one."""
    alice = roles.new("pqalice")
    mine = value(alice.conn, "select splitgraph_internal.dump_parquet_objects(%s::text[])", [source["base"]])
    assert [bytes(d) for d in mine] == [bytes(value(conn, "select splitgraph.dump_object(%s, 'parquet')",
                                                    source["base"]))]
    fails(alice.conn, "select splitgraph_internal.dump_parquet_objects(%s::text[])", [source["base"]] * 129,
          sqlstate="54000")
    forged = "o" + "7" * 62
    sql(alice.conn, f'create table {alice.schema}."{forged}" (secret text)')
    fails(alice.conn, "select splitgraph_internal.dump_parquet_objects(%s::text[])", [forged], sqlstate="42704")
