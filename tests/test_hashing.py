"""Content hashing: unit tests of plpython/splitgraph_pl/hashing.py, and the engine's object ids checked against
an independent implementation of the scheme in DESIGN.md (hashlib only, nothing imported from the extension)."""
import hashlib
import json
import pathlib
import random
import re
import sys

from conftest import objects_of, sql, value

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "plpython"))
from splitgraph_pl import hashing  # noqa: E402
from support import driver  # noqa: E402

ZERO = "0" * 64
FRUITS_SCHEMA_TEXT = "[(1, 'fruit_id', 'integer', False), (2, 'name', 'character varying', False)]"


# ---------------------------------------------------------------------------------------------------------------
# An independent reference implementation of the scheme (DESIGN.md), for the engine tests
# ---------------------------------------------------------------------------------------------------------------

def ref_lanes(hex_digest):
    raw = bytes.fromhex(hex_digest)
    assert len(raw) == 32
    return [raw[2 * i] * 256 + raw[2 * i + 1] for i in range(16)]


def ref_hex(lanes):
    return "".join("%04x" % (x % 65536) for x in lanes)


def ref_sum(hexes):
    acc = [0] * 16
    for h in hexes:
        acc = [a + b for a, b in zip(acc, ref_lanes(h), strict=False)]
    return ref_hex(acc)


def ref_sub(a, b):
    return ref_hex(x - y for x, y in zip(ref_lanes(a), ref_lanes(b), strict=False))


def ref_row_hash(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def ref_schema_hash(columns):
    return hashlib.sha256(repr([tuple(c) for c in columns]).encode("utf-8")).hexdigest()


def ref_object_id(insertion, deletion, columns):
    content = ref_sub(insertion, deletion)
    return "o" + hashlib.sha256((content + ref_schema_hash(columns)).encode("ascii")).hexdigest()[:62]


def random_digest(rng):
    return "".join(rng.choice("0123456789abcdef") for _ in range(64))


# ---------------------------------------------------------------------------------------------------------------
# Unit tests of hashing.py
# ---------------------------------------------------------------------------------------------------------------

def test_lanes_are_big_endian_uint16():
    digest = "0102" + "ff00" + "0000" * 13 + "abcd"
    lanes = hashing.lanes_of(digest)
    assert len(lanes) == 16
    assert lanes[0] == 0x0102 and lanes[1] == 0xFF00 and lanes[15] == 0xABCD
    assert hashing.to_hex(lanes) == digest


def test_add_wraps_each_lane_without_carry():
    # every lane overflows to zero
    assert hashing.add("ffff" * 16, "0001" * 16) == ZERO
    # an overflow of one lane does not carry into its neighbour (lane 1 stays 0, lane 0 wraps to 1)
    a = "ffff" + "0000" * 15
    b = "0002" + "0000" * 15
    assert hashing.add(a, b) == "0001" + "0000" * 15
    a = "0000" + "ffff" + "0000" * 14
    b = "0000" + "0001" + "0000" * 14
    assert hashing.add(a, b) == ZERO
    assert hashing.add("8000" * 16, "8000" * 16) == ZERO
    assert hashing.add("1234" * 16, "0001" * 16) == "1235" * 16


def test_sub_wraps_each_lane_without_borrow():
    assert hashing.sub(ZERO, "0001" * 16) == "ffff" * 16
    a = "0001" + "0000" * 15
    b = "0002" + "0000" * 15
    assert hashing.sub(a, b) == "ffff" + "0000" * 15
    assert hashing.sub("0000" + "0005" + "0000" * 14, "0000" + "0006" + "0000" * 14) == "0000" + "ffff" + "0000" * 14


def test_add_and_sub_are_inverse():
    rng = random.Random(7)
    for _ in range(50):
        a, b = random_digest(rng), random_digest(rng)
        assert hashing.sub(hashing.add(a, b), b) == a
        assert hashing.add(hashing.sub(a, b), b) == a
        assert hashing.add(a, b) == hashing.add(b, a)
        assert hashing.add(a, b) == ref_sum([a, b])
        assert hashing.sub(a, b) == ref_sub(a, b)


def test_sum_is_order_independent():
    rng = random.Random(11)
    digests = [hashlib.sha256(str(i).encode()).hexdigest() for i in range(40)]
    expected = hashing.total(digests)
    for _ in range(10):
        shuffled = digests[:]
        rng.shuffle(shuffled)
        assert hashing.total(shuffled) == expected
    assert expected == ref_sum(digests)
    # splitting into parts and summing the parts' sums gives the same (fragments compose)
    parts = [digests[:7], digests[7:30], digests[30:]]
    assert hashing.total(hashing.total(p) for p in parts) == expected
    assert hashing.total([]) == ZERO


def test_lane_sums_of_concatenated_digests_match_the_reference():
    rng = random.Random(5)
    for count in (0, 1, 2, 3, 15, 16, 17, 99, 100, 101, 1000, 4097):
        digests = [hashlib.sha256(str(rng.random()).encode()).hexdigest() for _ in range(count)]
        assert hashing.to_hex(hashing.lane_sums(bytes.fromhex("".join(digests)))) == ref_sum(digests), count
    # the largest count, every lane at its maximum: no 32-bit slot of the sum overflows into the next
    assert hashing.lane_sums(b"\xff" * 32 * hashing.MAX_SUMMED) == [(0xFFFF * hashing.MAX_SUMMED) % 65536] * 16
    top = bytes([0xFF, 0xFF] + [0] * 30)
    assert hashing.lane_sums(top * hashing.MAX_SUMMED)[:2] == [(0xFFFF * hashing.MAX_SUMMED) % 65536, 0]


def test_row_hash_is_sha256_of_text():
    assert hashing.row_hash("(1,apple)") == hashlib.sha256(b"(1,apple)").hexdigest()
    assert hashing.row_hash('(1,"a b",)') == hashlib.sha256(b'(1,"a b",)').hexdigest()
    assert hashing.row_hash("(1,\u00e9)") == hashlib.sha256("(1,\u00e9)".encode("utf-8")).hexdigest()


def test_schema_hash_is_sha256_of_python_repr():
    expected = hashlib.sha256(FRUITS_SCHEMA_TEXT.encode("ascii")).hexdigest()
    assert hashing.schema_hash([(1, "fruit_id", "integer", False), (2, "name", "character varying", False)]) \
        == expected
    # the stored form (JSON lists, possibly with a comment after is_pk) hashes the same
    assert hashing.schema_hash(json.loads('[[1, "fruit_id", "integer", false], '
                                          '[2, "name", "character varying", false]]')) == expected
    assert hashing.schema_hash([[1, "fruit_id", "integer", False, "a comment"],
                                [2, "name", "character varying", False, None]]) == expected
    # the primary key flag is part of the hash
    assert hashing.schema_hash([(1, "fruit_id", "integer", True), (2, "name", "character varying", False)]) \
        != expected


def test_object_id_format_and_formula():
    rng = random.Random(3)
    cols = [(1, "fruit_id", "integer", True), (2, "name", "character varying", False)]
    for _ in range(20):
        ins, dele = random_digest(rng), random_digest(rng)
        oid = hashing.object_id(ins, dele, cols)
        assert re.fullmatch(r"o[0-9a-f]{62}", oid)
        assert len(oid) == 63
        assert oid == ref_object_id(ins, dele, cols)
    ins = random_digest(rng)
    assert hashing.content_hash(ins, ZERO) == ins
    assert hashing.object_id(ins, ZERO, cols) == \
        "o" + hashlib.sha256((ins + ref_schema_hash(cols)).encode()).hexdigest()[:62]
    # same content, different deletion: different id; content hash is what matters
    d = random_digest(rng)
    assert hashing.object_id(hashing.add(ins, d), d, cols) == hashing.object_id(ins, ZERO, cols)


# ---------------------------------------------------------------------------------------------------------------
# The engine produces exactly the ids of the scheme
# ---------------------------------------------------------------------------------------------------------------

def object_row(conn, object_id):
    rows = sql(conn, "select insertion_hash, deletion_hash, rows_inserted from splitgraph_meta.objects "
                     "where object_id = %s", object_id)
    assert rows, f"object {object_id} not registered"
    return rows[0]


def row_texts(conn, relation, order="1"):
    """Rows' Postgres text forms, as the engine's doors see them (UTC, ISO dates, shortest floats)."""
    with driver.connect(conn.info.dsn, autocommit=True) as c:
        sql(c, "set timezone = 'UTC'")
        sql(c, "set datestyle = 'ISO, MDY'")
        sql(c, "set extra_float_digits = 1")
        sql(c, "set intervalstyle = 'postgres'")
        return [r[0] for r in sql(c, f"select t::text from {relation} t order by {order}")]


def test_engine_fruits_id_matches_independent_computation(conn):
    sql(conn, "select splitgraph.init('h/fruits')")
    sql(conn, 'create table "h/fruits".fruits (fruit_id int primary key, name varchar)')
    sql(conn, "insert into \"h/fruits\".fruits values (1, 'apple'), (2, 'orange')")
    image = value(conn, "select splitgraph.commit('h/fruits')")
    objects = objects_of(conn, "h/fruits", image, "fruits")
    assert len(objects) == 1

    insertion = ref_sum([hashlib.sha256(b"(1,apple)").hexdigest(), hashlib.sha256(b"(2,orange)").hexdigest()])
    schema_text = "[(1, 'fruit_id', 'integer', True), (2, 'name', 'character varying', False)]"
    schema = hashlib.sha256(schema_text.encode()).hexdigest()
    content = ref_sub(insertion, ZERO)
    expected = "o" + hashlib.sha256((content + schema).encode()).hexdigest()[:62]

    assert objects[0] == expected
    ins, dele, n = object_row(conn, expected)
    assert ins == insertion
    assert dele == ZERO
    assert n == 2


def test_engine_no_primary_key_id(conn):
    sql(conn, "select splitgraph.init('h/nopk')")
    sql(conn, 'create table "h/nopk".fruits (fruit_id int, name varchar)')
    sql(conn, "insert into \"h/nopk\".fruits values (2, 'orange'), (1, 'apple'), (1, 'apple')")
    image = value(conn, "select splitgraph.commit('h/nopk')")
    objects = objects_of(conn, "h/nopk", image, "fruits")
    insertion = ref_sum([ref_row_hash(t) for t in ("(1,apple)", "(1,apple)", "(2,orange)")])
    expected = "o" + hashlib.sha256((insertion + hashlib.sha256(FRUITS_SCHEMA_TEXT.encode()).hexdigest())
                                    .encode()).hexdigest()[:62]
    assert objects == [expected]
    assert object_row(conn, expected)[2] == 3


def test_engine_mixed_types_id_independent_of_session_settings(conn):
    sql(conn, "select splitgraph.init('h/mixed')")
    sql(conn, 'create table "h/mixed".t (id int primary key, at timestamptz, f float8, n numeric, s text)')
    sql(conn, """insert into "h/mixed".t values
        (1, '2020-03-04 05:06:07.25+02', 1.0/3, 12345.6789000, 'a b'),
        (2, null, -0.1, 0, 'it''s "quoted", with, commas'),
        (3, '1999-12-31 23:59:59+00', 'NaN', -1e-10, null),
        (4, null, null, null, ''),
        (5, 'infinity', 1e300, 3.14, '(x,y)')""")
    # the committing session has settings that change text forms: the doors must pin them
    sql(conn, "set timezone = 'America/New_York'")
    sql(conn, "set datestyle = 'SQL, DMY'")
    sql(conn, "set extra_float_digits = 0")
    try:
        image = value(conn, "select splitgraph.commit('h/mixed')")
    finally:
        sql(conn, "reset timezone")
        sql(conn, "reset datestyle")
        sql(conn, "reset extra_float_digits")
    texts = row_texts(conn, '"h/mixed".t', "id")
    assert texts[3] == "(4,,,,\"\")"
    assert texts[0].startswith('(1,"2020-03-04 03:06:07.25+00",0.3333333333333333,')
    columns = [(1, "id", "integer", True), (2, "at", "timestamp with time zone", False),
               (3, "f", "double precision", False), (4, "n", "numeric", False), (5, "s", "text", False)]
    insertion = ref_sum(ref_row_hash(t) for t in texts)
    expected = ref_object_id(insertion, ZERO, columns)
    assert objects_of(conn, "h/mixed", image, "t") == [expected]
    assert object_row(conn, expected)[0] == insertion


def test_same_rows_in_two_repositories_share_the_object(conn):
    for repo in ("h/same1", "h/same2"):
        sql(conn, "select splitgraph.init(%s)", repo)
        sql(conn, f'create table "{repo}".fruits (fruit_id int primary key, name varchar)')
        sql(conn, f"insert into \"{repo}\".fruits values (2, 'orange'), (1, 'apple')")
    a = objects_of(conn, "h/same1", value(conn, "select splitgraph.commit('h/same1')"), "fruits")
    b = objects_of(conn, "h/same2", value(conn, "select splitgraph.commit('h/same2')"), "fruits")
    assert a == b and len(a) == 1
    assert value(conn, "select count(*) from splitgraph_meta.objects where object_id = %s", a[0]) == 1


def test_chunked_insertion_hashes_sum_to_the_whole(conn):
    sql(conn, "select splitgraph.init('h/chunks')")
    sql(conn, 'create table "h/chunks".t (id int primary key, v text, w float8)')
    sql(conn, 'insert into "h/chunks".t select i, md5(i::text), i / 7.0 from generate_series(1, 25) i')
    chunked = value(conn, "select splitgraph.commit('h/chunks', chunk_size => 10)")
    whole = value(conn, "select splitgraph.commit('h/chunks', snapshot => true, chunk_size => 1000)")
    chunk_ids = objects_of(conn, "h/chunks", chunked, "t")
    whole_ids = objects_of(conn, "h/chunks", whole, "t")
    assert len(chunk_ids) == 3 and len(set(chunk_ids)) == 3
    assert len(whole_ids) == 1
    chunk_rows = [object_row(conn, o) for o in chunk_ids]
    assert [r[2] for r in chunk_rows] == [10, 10, 5]
    whole_insertion = object_row(conn, whole_ids[0])[0]
    assert ref_sum(r[0] for r in chunk_rows) == whole_insertion
    assert hashing.total(r[0] for r in chunk_rows) == whole_insertion
    # and each is the sum of its rows' hashes
    texts = row_texts(conn, '"h/chunks".t', "id")
    assert whole_insertion == ref_sum(ref_row_hash(t) for t in texts)
    assert chunk_rows[0][0] == ref_sum(ref_row_hash(t) for t in texts[:10])
    assert chunk_rows[2][0] == ref_sum(ref_row_hash(t) for t in texts[20:])
    columns = [(1, "id", "integer", True), (2, "v", "text", False), (3, "w", "double precision", False)]
    assert chunk_ids[1] == ref_object_id(chunk_rows[1][0], ZERO, columns)


def test_checkout_rows_hash_to_sum_of_content_hashes(conn):
    """DESIGN.md: the sum of a table's fragments' content hashes is the insertion hash of its rows."""
    sql(conn, "select splitgraph.init('h/compose')")
    sql(conn, 'create table "h/compose".t (a int, b text)')
    sql(conn, 'insert into "h/compose".t select i % 5, repeat(\'x\', i % 3) from generate_series(1, 23) i')
    image = value(conn, "select splitgraph.commit('h/compose', chunk_size => 4)")
    ids = objects_of(conn, "h/compose", image, "t")
    assert len(ids) == 6
    content = ref_sum(ref_sub(*object_row(conn, o)[:2]) for o in ids)
    sql(conn, "select splitgraph.checkout('h/compose', %s)", image)
    texts = row_texts(conn, '"h/compose".t')
    assert len(texts) == 23
    assert content == ref_sum(ref_row_hash(t) for t in texts)


def test_engine_hashes_backslashes_as_text(conn):
    sql(conn, "select splitgraph.init('h/backslash')")
    sql(conn, 'create table "h/backslash".t (id int primary key, s text)')
    sql(conn, "insert into \"h/backslash\".t values (1, 'C:\\temp\\x'), (2, 'a\\\\b')")
    image = value(conn, "select splitgraph.commit('h/backslash')")
    texts = row_texts(conn, '"h/backslash".t', "id")
    assert texts == ['(1,"C:\\\\temp\\\\x")', '(2,"a\\\\\\\\b")']
    insertion = ref_sum(ref_row_hash(t) for t in texts)
    expected = ref_object_id(insertion, ZERO, [(1, "id", "integer", True), (2, "s", "text", False)])
    assert object_row(conn, objects_of(conn, "h/backslash", image, "t")[0])[0] == insertion
    assert objects_of(conn, "h/backslash", image, "t") == [expected]
