"""A snapshot commit copies a table whose rows lie in about key order (its statistics say so) chunk by chunk, each
chunk's key range read through the key index, instead of routing every row into a partition per chunk: the objects
are the same either way, each holds exactly its chunk's rows, and nothing else is left behind."""
import pytest

from conftest import objects_of, sql, value

FILL = """insert into {t} select i, md5(i::text), i / 7.0, timestamptz '2020-01-01' + i * interval '1 second'
          from generate_series(1, {rows}) i {order}"""
ROWS = 23456
CHUNK = 5000
CHECKSUM = "select count(*), sum(id), md5(string_agg(t::text, ',' order by id)) from {t} t"


def make_table(conn, repo, clustered):
    """A table of ROWS rows, written in key order (clustered) or in another order, then analyzed."""
    sql(conn, "select splitgraph.init(%s)", repo)
    table = f'"{repo}".t'
    sql(conn, f"create table {table} (id int primary key, md5 text, value numeric, at timestamptz)")
    sql(conn, FILL.format(t=table, rows=ROWS, order="order by i" if clustered else "order by md5(i::text)"))
    sql(conn, f"analyze {table}")
    correlation = value(conn, "select correlation from pg_stats where schemaname = %s and tablename = 't' "
                              "and attname = 'id'", repo)
    assert (correlation > 0.99) if clustered else (abs(correlation) < 0.5)
    return table


def commit(conn, repo, second_session, **options):
    sql(conn, "select set_config('splitgraph.second_session', %s, false)", "on" if second_session else "off")
    try:
        args = ", ".join(f"{k} => %s" for k in options)
        image = value(conn, f"select splitgraph.commit(%s, chunk_size => {CHUNK}{', ' if args else ''}{args})",
                      repo, *options.values())
    finally:
        sql(conn, "reset splitgraph.second_session")
    return image, objects_of(conn, repo, image, "t")


def leftovers(conn):
    return value(conn, "select count(*) from pg_class c join pg_namespace n on n.oid = c.relnamespace "
                       "where n.nspname = 'splitgraph_meta' and c.relname like 'sg\\_tmp\\_%%'")


def check_objects(conn, objects):
    """Each object holds the rows of its chunk: CHUNK consecutive keys (the last one the rest), all upserts."""
    for i, o in enumerate(objects):
        got = sql(conn, f'select count(*), min(id), max(id), bool_and(sg_ud_flag) from splitgraph_meta."{o}"')[0]
        last = min(ROWS, (i + 1) * CHUNK)
        assert tuple(got) == (last - i * CHUNK, i * CHUNK + 1, last, True)


@pytest.mark.parametrize("second_session", [True, False], ids=["second session", "one session"])
def test_clustered_table_gives_the_same_objects(conn, second_session):
    suffix = "two" if second_session else "one"
    routed = make_table(conn, f"copy/routed_{suffix}", clustered=False)
    ranged = make_table(conn, f"copy/ranged_{suffix}", clustered=True)
    before = leftovers(conn)
    _, routed_objects = commit(conn, f"copy/routed_{suffix}", second_session)
    image, ranged_objects = commit(conn, f"copy/ranged_{suffix}", second_session)
    assert ranged_objects == routed_objects and len(ranged_objects) == 5
    check_objects(conn, ranged_objects)
    assert leftovers(conn) == before
    # the image checks out as the table was
    expected = sql(conn, CHECKSUM.format(t=routed))
    assert sql(conn, CHECKSUM.format(t=ranged)) == expected
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", f"copy/ranged_{suffix}", image)
    assert sql(conn, CHECKSUM.format(t=ranged)) == expected


@pytest.mark.parametrize("second_session", [True, False], ids=["second session", "one session"])
def test_clustered_table_whose_chunks_are_stored_already(conn, second_session):
    """Chunks stored already are not stored again: with a second session they are copied, then dropped; without,
    only the new chunk is copied."""
    suffix = "two" if second_session else "one"
    first = make_table(conn, f"copy/first_{suffix}", clustered=True)
    _, stored = commit(conn, f"copy/first_{suffix}", second_session)
    second = make_table(conn, f"copy/again_{suffix}", clustered=True)
    sql(conn, f"update {second} set md5 = 'changed' where id = {CHUNK + 1}")
    sql(conn, f"analyze {second}")
    before = leftovers(conn)
    image, objects = commit(conn, f"copy/again_{suffix}", second_session)
    assert objects[0] == stored[0] and objects[2:] == stored[2:] and objects[1] != stored[1]
    check_objects(conn, objects)
    assert leftovers(conn) == before
    assert value(conn, f'select md5 from splitgraph_meta."{objects[1]}" where id = {CHUNK + 1}') == "changed"
    # the same image of the first table's rows again: nothing new is stored
    again, same = commit(conn, f"copy/first_{suffix}", second_session, snapshot=True)
    assert same == stored and leftovers(conn) == before
    expected = sql(conn, CHECKSUM.format(t=first))
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", f"copy/first_{suffix}", again)
    assert sql(conn, CHECKSUM.format(t=first)) == expected
    assert sql(conn, CHECKSUM.format(t=second))[0][:2] == expected[0][:2]
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", f"copy/again_{suffix}", image)
    assert value(conn, f"select md5 from {second} where id = {CHUNK + 1}") == "changed"
