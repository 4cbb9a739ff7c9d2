"""Issue 13: mount_image (schemas of read-only views over an image's objects), what it shows in EXPLAIN, who may
read, mount and unmount, what cleanup does with what mounts read, verify and blame."""
import re

import pytest

from conftest import fails, objects_of, sql, value
from support import driver  # noqa: E402
from support.integrity import in_background, wait_blocked_or_done


def explain(conn, query):
    return "\n".join(r[0] for r in sql(conn, "explain (costs off) " + query))


def scanned_objects(plan):
    """The object tables a plan reads (o + 62 hex digits)."""
    return set(re.findall(r"\b(o[0-9a-f]{62})\b", plan))


@pytest.fixture
def chunked(conn):
    """Repository mnt/chunks: t (id key, v, n = 2 id) of 100 rows in chunks of 10, then a delta changing rows
    5 and 95 and deleting row 50 (tagged v2); k without a key."""
    repo = "mnt/chunks"
    if not value(conn, "select exists (select from splitgraph_meta.repositories where repository = %s)", repo):
        sql(conn, "select splitgraph.init(%s)", repo)
        sql(conn, 'create table "mnt/chunks".t (id int primary key, v text, n int)')
        sql(conn, """insert into "mnt/chunks".t select i, 'v' || i, 2 * i from generate_series(1, 100) i""")
        sql(conn, 'create table "mnt/chunks".k (a int, b text)')
        sql(conn, """insert into "mnt/chunks".k values (1, 'x'), (1, 'x'), (2, null)""")
        v1 = value(conn, "select splitgraph.commit(%s, chunk_size => 10)", repo)
        sql(conn, "select splitgraph.tag(%s, %s, 'v1')", repo, v1)
        sql(conn, """update "mnt/chunks".t set v = 'changed' where id in (5, 95)""")
        sql(conn, 'delete from "mnt/chunks".t where id = 50')
        sql(conn, "select splitgraph.tag(%s, splitgraph.commit(%s), 'v2')", repo, repo)
    return repo


def test_default_names_and_mounting_again(conn, chunked):
    assert value(conn, "select splitgraph.mount_image(%s, 'v2')", chunked) == "mnt/chunks:v2"
    head = value(conn, "select image_hash from splitgraph.log(%s) limit 1", chunked)
    untagged = value(conn, "select splitgraph.commit(%s)", chunked)  # nothing changed: an image without a tag
    named = value(conn, "select splitgraph.mount_image(%s, %s)", chunked, untagged)
    assert named == f"mnt/chunks:{untagged[:12]}"
    # the image given by hash is named by its tag
    assert value(conn, "select splitgraph.mount_image(%s, %s)", chunked, head) == "mnt/chunks:v2"
    assert value(conn, "select splitgraph.mount_image(%s, 'v2', 'again')", chunked) == "again"
    assert sql(conn, 'table "mnt/chunks:v2".t except table again.t') == []
    assert value(conn, 'select count(*) from "mnt/chunks:v2".t') == 99
    assert value(conn, """select count(*) from information_schema.columns
                          where table_schema = 'mnt/chunks:v2' and table_name = 't'
                            and (column_name, data_type) in (('id', 'integer'), ('v', 'text'),
                                                             ('n', 'integer'))""") == 3
    # another image cannot be mounted where one is
    fails(conn, "select splitgraph.mount_image(%s, 'v1', 'again')", chunked, sqlstate="42P06")
    for schema in ("mnt/chunks:v2", f"mnt/chunks:{untagged[:12]}", "again"):
        sql(conn, "select splitgraph.unmount(%s)", schema)
    assert value(conn, "select count(*) from splitgraph_meta.image_mounts") == 0
    sql(conn, "select splitgraph.checkout(%s, 'v2')", chunked)


@pytest.mark.parametrize("schema, sqlstate", [("public", "42602"), ("pg_mine", "42602"), ("splitgraph_x", "42602"),
                                              ("x" * 64, "42602"), ("mnt/chunks", "42710")])
def test_schema_names_that_are_refused(conn, chunked, schema, sqlstate):
    fails(conn, "select splitgraph.mount_image(%s, 'v1', %s)", chunked, schema, sqlstate=sqlstate)


def test_a_schema_that_exists_is_never_adopted(conn, chunked):
    sql(conn, "create schema mine")
    fails(conn, "select splitgraph.mount_image(%s, 'v1', 'mine')", chunked, sqlstate="42P06")
    sql(conn, "drop schema mine")
    fails(conn, "select splitgraph.mount_image(%s, 'nope')", chunked, sqlstate="42704")
    fails(conn, "select splitgraph.mount_image('mnt/none', 'v1')", sqlstate="42704")


def test_a_key_range_of_one_chunk_reads_that_chunk_and_the_deltas(conn, chunked):
    """Partition pruning finds the chunk of a key (or key range) before the planner opens any other chunk; a
    filter on another column skips the chunks whose range constraint cannot match; the deltas are read from
    their squash. Every answer is the checkout's."""
    sql(conn, "select splitgraph.mount_image(%s, 'v2', 'plan')", chunked)
    chunks = objects_of(conn, chunked, "v2", "t")[:-1]
    holding = {value(conn, f'select min(id) from splitgraph_meta."{o}"'): o for o in chunks}
    for query, chunk in (("select * from plan.t where id between 31 and 40", 31),
                         ("select * from plan.t where id = 95", 91),
                         ("select * from plan.t where n between 62 and 80", 31)):
        plan = explain(conn, query)
        assert scanned_objects(plan) == {holding[chunk]}, plan
        assert re.search(r"splitgraph_meta\.s[0-9a-f]{62}|\bs[0-9a-f]{62}\b", plan), plan  # the deltas' squash
        assert sorted(sql(conn, query)) == sorted(sql(conn, query.replace("plan.t", '"mnt/chunks".t')))
    assert len(scanned_objects(explain(conn, "select * from plan.t"))) == len(chunks)
    sql(conn, "select splitgraph.unmount('plan')")


def test_every_write_through_a_mount_fails_for_everyone(conn, chunked, roles):
    sql(conn, "select splitgraph.mount_image(%s, 'v2', 'ro')", chunked)
    bob = roles.new("imgro")
    for who in (conn, bob.conn):
        for statement in ("insert into ro.t values (1000, 'x', 1)", "update ro.t set v = 'y'", "delete from ro.t",
                          "insert into ro.k values (9, 'z')"):
            fails(who, statement, sqlstate="55000" if who is conn else "42501")
    assert value(conn, "select count(*) from ro.t") == 99
    sql(conn, "select splitgraph.unmount('ro')")


def test_every_role_reads_a_mount_and_no_role_reaches_the_objects(conn, chunked, roles):
    bob = roles.new("imgread")
    mounted = value(bob.conn, "select splitgraph.mount_image(%s, 'v2')", chunked)
    assert value(bob.conn, f'select count(*) from "{mounted}".t where id between 45 and 55') == 10
    assert value(bob.conn, f'select count(*) from "{mounted}".k') == 3
    assert value(bob.conn, """select count(*) from information_schema.tables
                              where table_schema = %s and table_type = 'VIEW'""", mounted) == 2
    obj = objects_of(conn, chunked, "v2", "t")[0]
    fails(bob.conn, f'select * from splitgraph_meta."{obj}"', sqlstate="42501")
    # bob may not name a schema like a repository of another namespace, nor use the names mount_image gives
    fails(bob.conn, "select splitgraph.mount_image(%s, 'v1', 'mnt/chunks2')", chunked, sqlstate="42501")
    fails(bob.conn, "select splitgraph.mount_image(%s, 'v1', 'x:y')", chunked, sqlstate="42602")
    mine = value(bob.conn, "select splitgraph.mount_image(%s, 'v1', %s)", chunked, f"{bob.name}/v1")
    # another role that neither mounted it nor writes the repository may not unmount it; its mounter may
    eve = roles.new("imgeve")
    fails(eve.conn, "select splitgraph.unmount(%s)", mine, sqlstate="42501")
    sql(bob.conn, "select splitgraph.unmount(%s)", mine)
    sql(conn, "select splitgraph.unmount(%s)", mounted)


def test_unmount_refuses_to_drop_another_schemas_view_unless_forced(conn, chunked, roles):
    bob = roles.new("imgdep")
    sql(conn, "select splitgraph.mount_image(%s, 'v2', 'dep')", chunked)
    sql(bob.conn, f'create view "{bob.schema}".mine as select * from dep.t')
    fails(conn, "select splitgraph.unmount('dep')", sqlstate="2BP01")
    sql(conn, "select splitgraph.unmount('dep', force => true)")
    assert value(conn, "select to_regclass(%s)", f'"{bob.schema}".mine') is None
    assert value(conn, "select count(*) from pg_namespace where nspname = 'dep'") == 0


def test_a_mount_keeps_reading_a_deleted_image_and_cleanup_skips_what_it_reads(conn):
    repo = "mnt/gone"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, 'create table "mnt/gone".t (id int primary key, v text)')
    sql(conn, """insert into "mnt/gone".t select i, 'gone' || i from generate_series(1, 30) i""")
    image = value(conn, "select splitgraph.commit(%s, chunk_size => 10)", repo)
    sql(conn, 'update "mnt/gone".t set v = \'later\' where id = 3')
    later = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.mount_image(%s, %s, 'keep')", repo, later)
    chunks, delta = objects_of(conn, repo, image, "t"), objects_of(conn, repo, later, "t")[-1]
    assert value(conn, "select count(*) from splitgraph_meta.read_structures where %s = any(object_ids)", delta) == 1
    sql(conn, "select splitgraph.rm(%s, force => true)", repo)
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary or ""))
    sql(conn, "select splitgraph.cleanup()")
    assert all(value(conn, "select to_regclass(%s) is not null", f'splitgraph_meta."{o}"') for o in chunks)
    assert any("kept" in n for n in notices), notices
    assert sorted(r[0] for r in sql(conn, "select v from keep.t where id in (2, 3)")) == ["gone2", "later"]
    sql(conn, "select splitgraph.unmount('keep')")
    sql(conn, "select splitgraph.cleanup()")
    assert not any(value(conn, "select to_regclass(%s) is not null", f'splitgraph_meta."{o}"') for o in chunks)
    # the squash of the delta went with the last view that read it
    assert value(conn, "select count(*) from splitgraph_meta.read_structures where %s = any(object_ids)", delta) == 0


def test_preparing_objects_for_reading_changes_no_object(conn, chunked):
    """The range constraints and key indexes added to object tables change neither their rows nor their ids:
    every object still hashes to its id."""
    sql(conn, "select splitgraph.mount_image(%s, 'v2', 'prep')", chunked)
    assert value(conn, """select count(*) from pg_constraint where conname = 'sg_ranges'
                          and conrelid::regclass::text like 'splitgraph_meta.o%%'""") >= 10
    assert sql(conn, "select object_id, detail from splitgraph.verify(%s) where not ok", chunked) == []
    sql(conn, "select splitgraph.unmount('prep')")


def test_verify_finds_a_tampered_object(conn):
    repo = "mnt/tamper"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, 'create table "mnt/tamper".t (id int primary key, n int)')
    sql(conn, 'insert into "mnt/tamper".t select i, i from generate_series(1, 20) i')
    image = value(conn, "select splitgraph.commit(%s, chunk_size => 5)", repo)
    sql(conn, "select splitgraph.mount_image(%s, %s, 'tamper')", repo, image)  # the objects get constraints
    assert value(conn, "select bool_and(ok) from splitgraph.verify(%s)", repo) is True
    obj = objects_of(conn, repo, image, "t")[1]
    sql(conn, f'update splitgraph_meta."{obj}" set n = n + 1 where id = 7')
    bad = sql(conn, "select object_id, detail from splitgraph.verify(%s) where not ok", repo)
    assert obj in [r[0] for r in bad], bad
    assert "hash" in dict((r[0], r[1]) for r in bad if r[0])[obj]
    assert any(r[0] is None and "rebuilding it" in r[1] for r in bad), bad
    sql(conn, f'update splitgraph_meta."{obj}" set n = n - 1 where id = 7')
    assert value(conn, "select bool_and(ok) from splitgraph.verify(%s)", repo) is True
    sql(conn, f'drop table splitgraph_meta."{obj}" cascade')
    assert "not stored" in value(conn, "select detail from splitgraph.verify(%s) where object_id = %s", repo, obj)
    sql(conn, "select splitgraph.unmount('tamper')")


def test_blame_names_the_image_that_last_changed_each_row(conn):
    repo = "mnt/blame"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, 'create table "mnt/blame".t (id int primary key, v text)')
    sql(conn, 'create table "mnt/blame".k (a int, b text)')
    sql(conn, """insert into "mnt/blame".t select i, 'v' || i from generate_series(1, 5) i""")
    sql(conn, """insert into "mnt/blame".k values (1, 'x'), (1, 'x'), (2, 'y')""")
    c1 = value(conn, "select splitgraph.commit(%s, chunk_size => 2)", repo)
    sql(conn, """update "mnt/blame".t set v = 'two' where id = 2""")
    sql(conn, """insert into "mnt/blame".t values (6, 'six')""")
    sql(conn, """insert into "mnt/blame".k values (3, 'z')""")
    c2 = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, 'delete from "mnt/blame".t where id = 3')
    sql(conn, """update "mnt/blame".t set v = 'v2' where id = 2""")  # back to what it was, but in a later image
    c3 = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, """update "mnt/blame".t set v = 'four' where id = 4""")
    sql(conn, 'delete from "mnt/blame".k where a = 2')
    c4 = value(conn, "select splitgraph.commit(%s, snapshot => true)", repo)
    got = dict(sql(conn, "select (pk ->> 'id')::int, image_hash from splitgraph.blame(%s, 't')", repo))
    assert got == {1: c1, 2: c3, 4: c4, 5: c1, 6: c2}
    assert dict(sql(conn, "select (pk ->> 'id')::int, image_hash from splitgraph.blame(%s, 't', %s)", repo, c2)) == \
        {1: c1, 2: c2, 3: c1, 4: c1, 5: c1, 6: c2}
    keyless = sorted(sql(conn, "select pk ->> 'a', pk ->> 'b', image_hash from splitgraph.blame(%s, 'k')", repo))
    assert keyless == [("1", "x", c1), ("1", "x", c1), ("3", "z", c2)]
    fails(conn, "select * from splitgraph.blame(%s, 'nope')", repo, sqlstate="42P01")


@pytest.mark.parametrize("first_commits", [True, False])
def test_two_sessions_mounting_one_image_at_once(conn, cluster, dbname, first_commits):
    """The second waits for the first (row locks on the objects' metadata, the layers' table, the squash's
    registration), then reuses what it built, or builds it itself when the first rolled back."""
    repo = f"mnt/both{int(first_commits)}"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f"""insert into "{repo}".t select i, 'x{int(first_commits)}' || i from generate_series(1, 60) i""")
    sql(conn, "select splitgraph.commit(%s, chunk_size => 10)", repo)
    sql(conn, f'update "{repo}".t set v = \'y\' where id % 7 = 0')
    image = value(conn, "select splitgraph.commit(%s)", repo)
    with driver.connect(cluster.dsn(dbname)) as first, driver.connect(cluster.dsn(dbname),
                                                                        autocommit=True) as second:
        sql(first, "select splitgraph.mount_image(%s, %s, %s)", repo, image, f"first{int(first_commits)}")
        blocked = in_background(second, "select splitgraph.mount_image(%s, %s, %s)", repo, image,
                                f"second{int(first_commits)}")
        assert wait_blocked_or_done(conn, second.info.backend_pid, blocked)
        first.commit() if first_commits else first.rollback()
        blocked.result(timeout=30)
    want = sql(conn, f'select * from "{repo}".t order by id')
    assert sql(conn, f"select * from second{int(first_commits)}.t order by id") == want
    if first_commits:
        assert sql(conn, "select * from first1.t order by id") == want
        sql(conn, "select splitgraph.unmount('first1')")
    sql(conn, "select splitgraph.unmount(%s)", f"second{int(first_commits)}")


def test_column_names_of_every_kind(conn):
    """Columns named like what the read structures, blame and verify use for themselves, quotes and spaces."""
    repo = "mnt/names"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, '''create table "mnt/names"."odd ""t""" ("h" text, "k0" int, "sg_position" int, "image_hash" text,
                                                      "upsert" bool, "c 0" text, primary key ("h", "k0"))''')
    sql(conn, '''insert into "mnt/names"."odd ""t""" select 'é' || (i % 3), i, i, 'x', true, 'y'
                 from generate_series(1, 25) i''')
    first = value(conn, "select splitgraph.commit(%s, chunk_size => 4)", repo)
    sql(conn, '''update "mnt/names"."odd ""t""" set "sg_position" = -1 where "k0" in (3, 9)''')
    sql(conn, '''delete from "mnt/names"."odd ""t""" where "k0" = 4''')
    second = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.mount_image(%s, %s, 'names')", repo, second)
    want = sql(conn, '''select * from "mnt/names"."odd ""t""" order by "k0"''')
    assert sql(conn, '''select * from names."odd ""t""" order by "k0"''') == want
    assert sql(conn, '''select "k0" from names."odd ""t""" where "h" = 'é0' and "k0" = 9''') == [(9,)]
    blamed = dict(sql(conn, """select (pk ->> 'k0')::int, image_hash from splitgraph.blame(%s, 'odd "t"')""", repo))
    assert {k for k, v in blamed.items() if v == second} == {3, 9} and len(blamed) == 24 and \
        set(blamed.values()) == {first, second}
    assert value(conn, "select bool_and(ok) from splitgraph.verify(%s)", repo) is True
    sql(conn, "select splitgraph.unmount('names')")


def test_cleanup_keeps_the_chunks_a_view_reads_and_only_those(conn):
    """Two snapshots sharing their first chunk: the first mount reads its layer whole (and seals it), the second
    reads that chunk of it by table oid and its other chunks from a layer of their own. Once both images are
    deleted and the first is unmounted, cleanup drops the first's other chunks and keeps what the second reads."""
    repo = "mnt/layers"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, 'create table "mnt/layers".t (id int primary key, v text)')
    sql(conn, """insert into "mnt/layers".t select i, 'a' from generate_series(1, 30) i""")
    first = value(conn, "select splitgraph.commit(%s, chunk_size => 10)", repo)
    sql(conn, """update "mnt/layers".t set v = 'b' where id > 10""")
    second = value(conn, "select splitgraph.commit(%s, snapshot => true, chunk_size => 10)", repo)
    a, b = objects_of(conn, repo, first, "t"), objects_of(conn, repo, second, "t")
    assert a[0] == b[0] and not set(a[1:]) & set(b[1:])
    sql(conn, "select splitgraph.mount_image(%s, %s, 'first')", repo, first)
    sql(conn, "select splitgraph.mount_image(%s, %s, 'second')", repo, second)
    assert "tableoid" in value(conn, "select pg_get_viewdef('second.t')")
    assert "tableoid" not in value(conn, "select pg_get_viewdef('first.t')")
    sql(conn, "select splitgraph.rm(%s, force => true)", repo)
    sql(conn, "select splitgraph.unmount('first')")
    sql(conn, "select splitgraph.cleanup()")
    stored = lambda o: value(conn, "select to_regclass(%s) is not null", f'splitgraph_meta."{o}"')  # noqa: E731
    assert [stored(o) for o in a] == [True, False, False]
    assert all(stored(o) for o in b)
    assert sql(conn, "select v, count(*) from second.t group by v order by v") == [("a", 10), ("b", 20)]
    sql(conn, "select splitgraph.unmount('second')")
    sql(conn, "select splitgraph.cleanup()")
    assert not any(stored(o) for o in a + b)


def test_joins_order_and_limit_read_as_the_checkout(conn, chunked):
    sql(conn, "select splitgraph.checkout(%s, 'v2')", chunked)
    sql(conn, "select splitgraph.mount_image(%s, 'v2', 'sel')", chunked)
    for query in ("select t.id, t.v, k.b from {s}.t join {s}.k on k.a = t.id % 3 order by t.id desc, k.b limit 7",
                  "select v, count(*), max(n) from {s}.t group by v having count(*) > 0 order by 2 desc, 1 limit 5",
                  "select id from {s}.t where v like 'v9%' or id in (5, 95) order by n offset 2 limit 4",
                  "select count(*) from {s}.t a join {s}.t b on a.n = b.id"):
        assert sql(conn, query.format(s="sel")) == sql(conn, query.format(s='"mnt/chunks"')), query
    sql(conn, "select splitgraph.unmount('sel')")
