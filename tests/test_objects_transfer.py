"""Objects cross engines by value: dump_object on one database, load_object on another (here two databases of
the session's cluster). A dump is verified on arrival: rows that do not hash to the object id, a wrong
deletion hash or a changed schema are refused with XX001 and leave nothing behind; loading twice is harmless."""
import hashlib
import json
import pathlib
import sys
import zlib

import psycopg2
import pytest

from conftest import sql, value

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "plpython"))
from splitgraph_pl import hashing  # noqa: E402
from support import driver  # noqa: E402

ZERO = "0" * 64


@pytest.fixture(scope="module")
def source_objects(cluster, dbname):
    """In the module's database: repository 'tr/src' with a single-object table and a chunked one."""
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        sql(c, "select splitgraph.init('tr/src')")
        sql(c, 'create table "tr/src".fruits (fruit_id int primary key, name varchar)')
        sql(c, "insert into \"tr/src\".fruits values (1, 'apple'), (2, 'orange'), (3, 'pear')")
        sql(c, 'create table "tr/src".big (id int primary key, v text)')
        sql(c, 'insert into "tr/src".big select i, md5(i::text) from generate_series(1, 25) i')
        image = value(c, "select splitgraph.commit('tr/src', chunk_size => 10)")
        fruits = value(c, "select splitgraph.table_info('tr/src', %s, 'fruits')", image)["objects"]
        big = value(c, "select splitgraph.table_info('tr/src', %s, 'big')", image)["objects"]
    assert len(fruits) == 1 and len(big) == 3
    return {"image": image, "fruits": fruits[0], "big": big}


@pytest.fixture
def other(cluster, dbname, request):
    """A connection to a fresh database of the cluster, with the extension."""
    name = f"{dbname}_{request.node.name}"[:63]
    cluster.create_database(name)
    with driver.connect(cluster.dsn(name), autocommit=True) as c:
        yield c


def unpack(data):
    header, rows = zlib.decompress(bytes(data)).split(b"\n", 1)
    return json.loads(header), rows.decode("utf-8")


def pack(header, rows):
    return zlib.compress(json.dumps(header).encode("utf-8") + b"\n" + rows.encode("utf-8"))


def stored_state(conn):
    """What load_object could leave behind: object metadata rows and tables in splitgraph_meta."""
    return (sql(conn, "select object_id from splitgraph_meta.objects order by 1"),
            sql(conn, """select c.relname::text from pg_class c where c.relnamespace = 'splitgraph_meta'::regnamespace
                         and c.relkind in ('r', 'p') and (c.relname ~ '^o[0-9a-f]{62}$' or c.relname like 'sg_tmp%%')
                         order by 1"""))


def refused(conn, object_id, data):
    """load_object must fail with XX001 and store nothing."""
    before = stored_state(conn)
    with pytest.raises(psycopg2.Error) as err:
        sql(conn, "select splitgraph.load_object(%s, %s)", object_id, data)
    assert err.value.pgcode == "XX001", err.value
    assert object_id in str(err.value)
    assert stored_state(conn) == before
    assert value(conn, "select splitgraph.object_info(%s)", object_id) is None
    assert value(conn, "select to_regclass(format('splitgraph_meta.%%I', %s::text))", object_id) is None
    return err.value


def test_same_rows_give_the_same_id_on_both_databases(conn, other, source_objects):
    sql(other, "select splitgraph.init('elsewhere/copy')")
    sql(other, 'create table "elsewhere/copy".fruits (fruit_id int primary key, name varchar)')
    sql(other, "insert into \"elsewhere/copy\".fruits values (3, 'pear'), (1, 'apple'), (2, 'orange')")
    image = value(other, "select splitgraph.commit('elsewhere/copy')")
    assert value(other, "select splitgraph.table_info('elsewhere/copy', %s, 'fruits')", image)["objects"] \
        == [source_objects["fruits"]]


def test_dump_and_load_across_databases(conn, other, source_objects):
    oid = source_objects["fruits"]
    data = value(conn, "select splitgraph.dump_object(%s)", oid)
    assert value(other, "select splitgraph.object_info(%s)", oid) is None
    sql(other, "select splitgraph.load_object(%s, %s)", oid, data)
    mine = value(conn, "select splitgraph.object_info(%s)", oid)
    theirs = value(other, "select splitgraph.object_info(%s)", oid)
    for key in ("object_id", "format", "namespace", "rows_inserted", "rows_deleted", "insertion_hash",
                "deletion_hash", "index"):
        assert theirs[key] == mine[key], key
    assert theirs["namespace"] == "tr"
    assert sql(other, f'select fruit_id, name, sg_ud_flag from splitgraph_meta."{oid}" order by 1') == \
        [(1, "apple", True), (2, "orange", True), (3, "pear", True)]
    # the loaded object applies like the original
    sql(other, "create table public.fruits (fruit_id int primary key, name varchar)")
    sql(other, "select splitgraph.apply_fragments(array[%s], 'public', 'fruits')", oid)
    assert sql(other, "select * from public.fruits order by 1") == [(1, "apple"), (2, "orange"), (3, "pear")]


def test_loaded_chunks_are_reused_by_a_commit_of_the_same_rows(conn, other, source_objects):
    for oid in source_objects["big"]:
        sql(other, "select splitgraph.load_object(%s, %s)", oid,
            value(conn, "select splitgraph.dump_object(%s)", oid))
    before = stored_state(other)
    assert len(before[0]) == 3
    sql(other, "select splitgraph.init('other/big')")
    sql(other, 'create table "other/big".big (id int primary key, v text)')
    sql(other, 'insert into "other/big".big select i, md5(i::text) from generate_series(25, 1, -1) i')
    image = value(other, "select splitgraph.commit('other/big', chunk_size => 10)")
    assert value(other, "select splitgraph.table_info('other/big', %s, 'big')", image)["objects"] \
        == source_objects["big"]
    assert stored_state(other) == before


def test_loading_is_idempotent(conn, other, source_objects):
    oid = source_objects["fruits"]
    data = value(conn, "select splitgraph.dump_object(%s)", oid)
    sql(other, "select splitgraph.load_object(%s, %s)", oid, data)
    state = stored_state(other)
    info = value(other, "select splitgraph.object_info(%s)", oid)
    sql(other, "select splitgraph.load_object(%s, %s)", oid, data)
    sql(other, "select splitgraph.load_object(%s, %s)", oid, data)
    assert stored_state(other) == state
    assert value(other, "select splitgraph.object_info(%s)", oid) == info
    assert value(other, f'select count(*) from splitgraph_meta."{oid}"') == 3
    # loading into the database that made it changes nothing either
    before = stored_state(conn)
    sql(conn, "select splitgraph.load_object(%s, %s)", oid, data)
    assert stored_state(conn) == before


def test_altered_row_is_refused(conn, other, source_objects):
    oid = source_objects["fruits"]
    header, rows = unpack(value(conn, "select splitgraph.dump_object(%s)", oid))
    assert header["object_id"] == oid and "(2,orange,t)" in rows
    refused(other, oid, pack(header, rows.replace("(2,orange,t)", "(2,orangE,t)")))
    # changing the key only is also a different content
    refused(other, oid, pack(header, rows.replace("(2,orange,t)", "(4,orange,t)")))
    # the untouched dump still loads afterwards: the refusals left nothing in the way
    sql(other, "select splitgraph.load_object(%s, %s)", oid, pack(header, rows))
    assert value(other, "select splitgraph.object_info(%s)", oid)["rows_inserted"] == 3


def test_dropped_added_or_flipped_rows_are_refused(conn, other, source_objects):
    oid = source_objects["fruits"]
    header, rows = unpack(value(conn, "select splitgraph.dump_object(%s)", oid))
    refused(other, oid, pack(header, rows.replace('"(3,pear,t)"', "").replace(",}", "}")))
    dropped = dict(header, rows_inserted=2)
    refused(other, oid, pack(dropped, rows.replace('"(3,pear,t)"', "").replace(",}", "}")))
    refused(other, oid, pack(dict(header, rows_inserted=4), rows.replace("}", ',"(9,kiwi,t)"}')))
    # an upsert turned into a deletion
    refused(other, oid, pack(header, rows.replace("(3,pear,t)", "(3,pear,f)")))


def test_wrong_deletion_hash_is_refused(conn, other, source_objects):
    oid = source_objects["fruits"]
    header, rows = unpack(value(conn, "select splitgraph.dump_object(%s)", oid))
    assert header["deletion_hash"] == ZERO
    refused(other, oid, pack(dict(header, deletion_hash="0001" + "0" * 60), rows))
    refused(other, oid, pack(dict(header, deletion_hash=hashing.row_hash("(1,apple)")), rows))
    refused(other, oid, pack(dict(header, deletion_hash="not a hash"), rows))
    refused(other, oid, pack({k: v for k, v in header.items() if k != "deletion_hash"}, rows))


def test_changed_schema_is_refused(conn, other, source_objects):
    oid = source_objects["fruits"]
    header, rows = unpack(value(conn, "select splitgraph.dump_object(%s)", oid))
    assert header["table_schema"][0][:4] == [1, "fruit_id", "integer", True]
    no_pk = json.loads(json.dumps(header))
    no_pk["table_schema"][0][3] = False
    refused(other, oid, pack(no_pk, rows))
    renamed = json.loads(json.dumps(header))
    renamed["table_schema"][1][1] = "label"
    refused(other, oid, pack(renamed, rows))
    retyped = json.loads(json.dumps(header))
    retyped["table_schema"][1][2] = "text"
    refused(other, oid, pack(retyped, rows))


def test_garbage_and_mismatched_dumps_are_refused(conn, other, source_objects):
    oid = source_objects["fruits"]
    good = value(conn, "select splitgraph.dump_object(%s)", oid)
    header, rows = unpack(good)
    refused(other, oid, zlib.compress(b"no header line"))
    refused(other, oid, bytes(good)[:-5])
    refused(other, oid, pack(dict(header, dump_format="something/2"), rows))
    refused(other, oid, pack(header, "{\"(1,apple,t,extra)\"}"))
    # a dump of another object presented under this id
    big = source_objects["big"][0]
    refused(other, oid, value(conn, "select splitgraph.dump_object(%s)", big))


def test_a_valid_delta_object_with_deletions_is_accepted(conn, other):
    """Positive control for the deletion hash: an object whose id is computed from its upserts and a non-zero
    deletion hash loads, and its deletion rows delete when applied."""
    cols = [[1, "fruit_id", "integer", True], [2, "name", "character varying", False]]
    insertion = hashing.row_hash("(2,banana)")
    deletion = hashing.row_hash("(2,orange)")
    oid = hashing.object_id(insertion, deletion, cols)
    header = {"object_id": oid, "format": "FRAG", "namespace": "x", "rows_inserted": 1, "rows_deleted": 1,
              "insertion_hash": insertion, "deletion_hash": deletion, "index": {},
              "table_schema": cols, "dump_format": "splitgraph-object/1"}
    rows = '{"(2,banana,t)","(3,,f)"}'
    # the same rows under a zero deletion hash do not match the id
    refused(other, oid, pack(dict(header, deletion_hash=ZERO), rows))
    # rows_deleted counts its deletions and the rows its upserts overwrite: 1 or 2 here, nothing else
    for wrong in (0, 3, "1"):
        refused(other, oid, pack(dict(header, rows_deleted=wrong), rows))
    sql(other, "select splitgraph.load_object(%s, %s)", oid, pack(header, rows))
    info = value(other, "select splitgraph.object_info(%s)", oid)
    assert (info["rows_inserted"], info["rows_deleted"], info["deletion_hash"]) == (1, 1, deletion)
    sql(other, "create table public.f (fruit_id int primary key, name varchar)")
    sql(other, "insert into public.f values (1, 'apple'), (2, 'orange'), (3, 'pear')")
    sql(other, "select splitgraph.apply_fragments(array[%s], 'public', 'f')", oid)
    assert sql(other, "select * from public.f order by 1") == [(1, "apple"), (2, "banana")]
    # and it round-trips through dump_object unchanged
    again_header, again_rows = unpack(value(other, "select splitgraph.dump_object(%s)", oid))
    assert again_header["deletion_hash"] == deletion
    assert sorted(again_rows.strip("{}").split(",\"")) == sorted(rows.strip("{}").split(",\""))


def test_unknown_object_cannot_be_dumped(conn):
    with pytest.raises(psycopg2.Error) as err:
        sql(conn, "select splitgraph.dump_object(%s)", "o" + "5" * 62)
    assert err.value.pgcode == "42704"


@pytest.mark.parametrize("rows", [hashing.MAX_SUMMED, hashing.MAX_SUMMED + 1])
def test_objects_on_both_sides_of_the_summing_bound_load_and_are_verified(conn, other, rows):
    """An object's upserts are summed by hashing.lane_sums up to MAX_SUMMED rows and in SQL beyond: both ways a
    dump loads under its id, and a dump with one row altered is refused."""
    repo = f"tr/sum{rows}"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f'insert into "{repo}".t select i, md5(i::text) from generate_series(1, {rows}) i')
    image = value(conn, "select splitgraph.commit(%s, chunk_size => %s)", repo, rows)
    (oid,) = value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image)["objects"]
    header, dumped = unpack(value(conn, "select splitgraph.dump_object(%s)", oid))
    assert header["rows_inserted"] == rows
    altered = f"(7,{hashlib.md5(b'7').hexdigest()},t)"
    assert altered in dumped
    refused(other, oid, pack(header, dumped.replace(altered, "(7,x,t)")))
    sql(other, "select splitgraph.load_object(%s, %s)", oid, pack(header, dumped))
    assert value(other, "select splitgraph.object_info(%s)", oid)["insertion_hash"] == \
        value(conn, "select splitgraph.object_info(%s)", oid)["insertion_hash"]
    assert value(other, f'select count(*) from splitgraph_meta."{oid}"') == rows
