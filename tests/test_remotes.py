"""Issue 11: images travel between engines. Two clusters: the session's (the client) and a registry, where roles
that are not superusers log in with a password. Remotes keep their password to themselves; push sends what the
registry lacks and a second push sends nothing; clone copies the metadata and a checkout downloads exactly the
objects its image needs; pull brings what is new and nothing else; objects and metadata that arrive are checked.
"""
import secrets
import zlib

import pytest

from conftest import fails, sql, value
from support import driver  # noqa: E402
from support.registry import check_every_object, connect_as, metadata, object_tables, objects_state, password_role

PUSHER = "rm_pusher"                       # the registry role the client logs in as
PASSWORD = "pw'" + secrets.token_hex(8)    # a quote, to prove the quoting


@pytest.fixture(scope="module")
def hub(cluster, dbname, registry_cluster, registry_db):
    """The client's remote 'hub': the registry, logged in to as PUSHER."""
    password_role(registry_cluster, PUSHER, PASSWORD)
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        sql(c, "select splitgraph.add_remote('hub', '127.0.0.1', %s, %s, %s, %s)", registry_cluster.port,
            registry_db, PUSHER, PASSWORD)
    return registry_cluster


@pytest.fixture
def reg(registry_cluster, registry_db):
    """The registry, as its superuser."""
    with driver.connect(registry_cluster.dsn(registry_db), autocommit=True) as c:
        yield c


_engines = iter(range(1, 10**6))


def other_engine(cluster, dbname, registry_cluster, registry_db, remote="hub"):
    """A fresh database of the client cluster (another engine: it shares no object with the first), with the
    registry as remote `remote`."""
    name = f"{dbname}_e{next(_engines)}"[:63]
    cluster.create_database(name)
    c = driver.connect(cluster.dsn(name), autocommit=True)
    sql(c, "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, %s, %s)", remote, registry_cluster.port,
        registry_db, PUSHER, PASSWORD)
    return c


def build(conn, repo):
    """A repository with two images of table t (chunked: 3 objects, then a delta), table u in the second, tag v1
    on the first, branch dev at v1. Returns (v1, v2)."""
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text, at timestamptz)')
    sql(conn, f"""insert into "{repo}".t select i, md5(i::text), timestamptz '2020-01-01 00:00+00' + i * interval '1 h'
                  from generate_series(1, 25) i""")
    v1 = value(conn, "select splitgraph.commit(%s, 'first', chunk_size => 10)", repo)
    sql(conn, "select splitgraph.tag(%s, %s, 'v1')", repo, v1)
    sql(conn, f"update \"{repo}\".t set v = 'changed' where id % 5 = 0")
    sql(conn, f'delete from "{repo}".t where id > 22')
    sql(conn, f'create table "{repo}".u (k text primary key, n numeric(8, 2))')
    sql(conn, f"""insert into "{repo}".u values ('a', 1.5), ('b', null), ('it''s', -2)""")
    v2 = value(conn, "select splitgraph.commit(%s, 'second')", repo)
    sql(conn, "select splitgraph.branch(%s, 'dev', 'v1')", repo)
    return v1, v2


def history(conn, repo):
    """What a repository is, engine-independently: images, tags, branches and table versions."""
    return {
        "images": sql(conn, """select image_hash, parent_id, created, comment from splitgraph_meta.images
                               where repository = %s order by image_hash""", repo),
        "tags": sql(conn, "select tag, image_hash from splitgraph_meta.tags where repository = %s order by 1", repo),
        "branches": sql(conn, "select branch, image_hash from splitgraph_meta.branches where repository = %s "
                              "order by 1", repo),
        "tables": sql(conn, """select image_hash, table_name, table_schema, object_ids, table_definition
                               from splitgraph_meta.tables where repository = %s order by 1, 2""", repo),
    }


def objects_of_image(conn, repo, image):
    return sorted({o for (ids,) in sql(conn, """select object_ids from splitgraph_meta.tables
                                                where repository = %s and image_hash = %s""", repo, image)
                   for o in ids})


def rows(conn, repo, table):
    return [r[0] for r in sql(conn, f'select t::text from "{repo}".{table} t order by 1')]


# ---------------------------------------------------------------------------------------------------------------
# Remotes
# ---------------------------------------------------------------------------------------------------------------

def test_remotes_never_show_the_password(conn, hub, registry_db, roles):
    listed = sql(conn, "select * from splitgraph.remotes()")
    assert listed == [("hub", "127.0.0.1", hub.port, registry_db, PUSHER, "postgres")]
    seen = [str(listed),
            value(conn, "select string_agg(t::text, ' ') from splitgraph_meta.remotes t"),
            value(conn, "select string_agg(array_to_string(srvoptions, ','), ' ') from pg_foreign_server"),
            value(conn, "select string_agg(array_to_string(ftoptions, ','), ' ') from pg_foreign_table"),
            value(conn, "select obj_description(oid) from pg_namespace where nspname like 'sg_remote_%%'")]
    assert not any(PASSWORD in (s or "") for s in seen)
    # another role sees neither the remote nor the credentials of its user mapping
    eve = roles.new("rm_eve", mount=True)
    assert sql(eve.conn, "select * from splitgraph.remotes()") == []
    mappings = sql(eve.conn, "select umoptions from pg_user_mappings where srvname like 'sg_remote_%%'")
    assert mappings and all(m is None for (m,) in mappings)
    fails(eve.conn, "select * from splitgraph_meta.remotes", sqlstate="42501")
    # nor can it use the remote: postgres_fdw finds no user mapping of its own
    error = fails(eve.conn, "select splitgraph.clone('hub', 'x/y', 'rm_eve/y')", sqlstate="42704")
    assert PASSWORD not in str(error)


def test_adding_a_remote_is_a_privilege_and_its_arguments_are_checked(conn, hub, roles):
    plain = roles.new("rm_plain")
    fails(plain.conn, "select splitgraph.add_remote('r', 'localhost', 5432, 'db', 'u', 'p')", sqlstate="42501")
    fails(conn, "select splitgraph.add_remote('hub', 'localhost', 5432, 'db', 'u', 'p')", sqlstate="42710")
    fails(conn, "select splitgraph.add_remote('bad name', 'localhost', 5432, 'db', 'u', 'p')", sqlstate="42602")
    fails(conn, "select splitgraph.add_remote('r', 'localhost', 0, 'db', 'u', 'p')", sqlstate="22023")
    fails(conn, "select splitgraph.delete_remote('nothing')", sqlstate="42704")
    # a member of splitgraph_mount adds, lists and deletes its own
    member = roles.new("rm_member", mount=True)
    sql(member.conn, "select splitgraph.add_remote('mine', 'localhost', 5432, 'db', 'u', 'secret')")
    assert [r[0] for r in sql(member.conn, "select name from splitgraph.remotes()")] == ["mine"]
    schema = value(conn, "select schema from splitgraph_meta.remotes where owner = %s", member.name)
    sql(member.conn, "select splitgraph.delete_remote('mine')")
    assert value(conn, "select count(*) from splitgraph_meta.remotes where owner = %s", member.name) == 0
    assert value(conn, "select count(*) from pg_namespace where nspname = %s", schema) == 0
    assert value(conn, "select count(*) from pg_foreign_server where srvname = %s", schema) == 0


def test_a_wrong_password_fails_cleanly(cluster, dbname, hub, registry_db, conn):
    sql(conn, "select splitgraph.add_remote('wrong', '127.0.0.1', %s, %s, %s, 'not-it')", hub.port, registry_db,
        PUSHER)
    sql(conn, "select splitgraph.init('rm_pusher/wrong')")
    error = fails(conn, "select splitgraph.push('rm_pusher/wrong', 'wrong')", sqlstate="08001")
    assert "cannot reach" in str(error) and "password authentication failed" in error.diag.message_detail
    assert "not-it" not in " ".join(str(x) for x in (error, error.diag.message_detail, error.diag.context))
    assert sql(conn, "select * from splitgraph.upstream('rm_pusher/wrong')") == []
    sql(conn, "select splitgraph.delete_remote('wrong')")


# ---------------------------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------------------------

def test_push_sends_everything_and_a_second_push_nothing(conn, hub, reg):
    repo = "rm_pusher/climate"
    build(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    assert history(reg, repo) == history(conn, repo)
    assert value(reg, "select count(*) from splitgraph_meta.checkouts where repository = %s", repo) == 0
    wanted = sorted({o for t in history(conn, repo)["tables"] for o in t[3]})
    assert set(wanted) <= set(object_tables(reg))
    assert check_every_object(reg) >= len(wanted)
    assert sql(conn, "select * from splitgraph.upstream(%s)", repo) == [("hub", repo)]
    # the objects the registry registered are the pusher's namespace's
    assert {n for (n,) in sql(reg, "select namespace from splitgraph_meta.objects where object_id = any(%s)",
                              wanted)} == {"rm_pusher"}
    before, here = metadata(reg), metadata(conn)
    sql(conn, "select splitgraph.push(%s)", repo)
    assert metadata(reg) == before and metadata(conn) == here, "a second push changed something"


def test_push_of_new_work_sends_only_the_new_delta(conn, hub, reg):
    repo = "rm_pusher/growing"
    build(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    sql(conn, "select splitgraph.checkout(%s, 'main')", repo)
    sql(conn, f"insert into \"{repo}\".t values (100, 'new', null)")
    v3 = value(conn, "select splitgraph.commit(%s, 'third')", repo)
    sql(conn, "select splitgraph.tag(%s, %s, 'v3')", repo, v3)
    stored_before = set(object_tables(reg))
    sql(conn, "select splitgraph.push(%s)", repo)
    new = set(object_tables(reg)) - stored_before
    assert len(new) == 1 and new <= set(objects_of_image(conn, repo, v3)), "only the new delta travelled"
    assert history(reg, repo) == history(conn, repo)
    assert value(reg, "select image_hash from splitgraph_meta.branches where repository = %s and branch = 'main'",
                 repo) == v3


def test_push_to_another_name_and_handlers(conn, hub, reg):
    repo = "rm_pusher/named"
    build(conn, repo)
    fails(conn, "select splitgraph.push(%s)", repo, sqlstate="55000")  # no upstream yet, no remote named
    # handler S3 (issue 12) needs object storage on the remote, and this registry has none: an S3 push of
    # objects it lacks is refused there before anything is registered
    sql(conn, "select splitgraph.init('rm_pusher/s3less')")
    sql(conn, 'create table "rm_pusher/s3less".t (id int primary key, v text)')
    sql(conn, """insert into "rm_pusher/s3less".t values (1, 'only in rm_pusher/s3less')""")
    sql(conn, "select splitgraph.commit('rm_pusher/s3less')")
    fails(conn, "select splitgraph.push('rm_pusher/s3less', 'hub', handler => 'S3')", sqlstate="55000")
    assert history(reg, "rm_pusher/s3less")["images"] == []
    fails(conn, "select splitgraph.push(%s, 'hub', handler => 'FTP')", repo, sqlstate="22023")
    fails(conn, "select splitgraph.push(%s, 'nowhere')", repo, sqlstate="42704")
    sql(conn, "select splitgraph.push(%s, 'hub', 'rm_pusher/elsewhere')", repo)
    assert history(reg, "rm_pusher/elsewhere")["images"] == history(conn, repo)["images"]
    assert sql(conn, "select * from splitgraph.upstream(%s)", repo) == [("hub", "rm_pusher/elsewhere")]
    # set_upstream changes where a push without arguments goes; a remote the caller lacks is refused
    fails(conn, "select splitgraph.set_upstream(%s, 'nowhere', null)", repo, sqlstate="42704")
    sql(conn, "select splitgraph.set_upstream(%s, 'hub', 'rm_pusher/third')", repo)
    sql(conn, "select splitgraph.push(%s)", repo)
    assert value(reg, "select count(*) from splitgraph_meta.images where repository = 'rm_pusher/third'") == 3
    sql(conn, "select splitgraph.set_upstream(%s, null, null)", repo)
    assert sql(conn, "select * from splitgraph.upstream(%s)", repo) == []


def test_push_refuses_a_diverged_branch_and_changes_nothing(cluster, dbname, hub, registry_db, conn, reg):
    repo = "rm_pusher/diverged"
    build(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    other = other_engine(cluster, dbname, hub, registry_db)
    sql(other, "select splitgraph.clone('hub', %s)", repo)
    sql(other, "select splitgraph.checkout(%s, 'main')", repo)
    sql(other, f"insert into \"{repo}\".u values ('theirs', 1)")
    sql(other, "select splitgraph.commit(%s)", repo)
    sql(other, "select splitgraph.push(%s)", repo)
    sql(conn, "select splitgraph.checkout(%s, 'main')", repo)
    sql(conn, f"insert into \"{repo}\".u values ('ours', 2)")
    sql(conn, "select splitgraph.commit(%s)", repo)
    before = metadata(reg)
    error = fails(conn, "select splitgraph.push(%s)", repo, sqlstate="55000")
    assert "diverged" in str(error)
    assert metadata(reg) == before
    other.close()


# ---------------------------------------------------------------------------------------------------------------
# clone, lazy objects, pull
# ---------------------------------------------------------------------------------------------------------------

def test_clone_copies_metadata_and_checkout_downloads_exactly_what_the_image_needs(
        cluster, dbname, hub, registry_db, conn):
    repo = "rm_pusher/lazy"
    v1, v2 = build(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    other = other_engine(cluster, dbname, hub, registry_db)
    sql(other, "select splitgraph.clone('hub', %s, 'local/lazy')", repo)
    theirs, mine = history(conn, repo), history(other, "local/lazy")
    assert mine == theirs
    registered, stored = objects_state(other)
    everything = sorted({o for t in theirs["tables"] for o in t[3]})
    assert registered == everything and stored == [], "a clone downloads no object"
    assert sql(other, "select * from splitgraph.upstream('local/lazy')") == [("hub", repo)]
    assert value(other, "select checked_out from splitgraph.repositories() where repository = 'local/lazy'") is False
    locations = value(other, "select splitgraph.object_info(%s) -> 'locations'", everything[0])
    assert locations == [{"protocol": "DB", "location": "hub"}]

    sql(other, "select splitgraph.checkout('local/lazy', 'v1')")
    assert objects_state(other)[1] == objects_of_image(conn, repo, v1), "exactly v1's objects were downloaded"
    sql(conn, "select splitgraph.checkout(%s, 'v1')", repo)
    assert rows(other, "local/lazy", "t") == rows(conn, repo, "t")
    sql(other, "select splitgraph.checkout('local/lazy', %s)", v2)
    assert objects_state(other)[1] == everything
    sql(conn, "select splitgraph.checkout(%s, %s)", repo, v2)
    for table in ("t", "u"):
        assert rows(other, "local/lazy", table) == rows(conn, repo, table)
    check_every_object(other)
    # downloaded objects carry what their rows say, and match the pusher's
    assert sql(other, """select object_id, rows_inserted, rows_deleted, insertion_hash, deletion_hash
                         from splitgraph_meta.objects order by 1""") == sql(
        conn, """select object_id, rows_inserted, rows_deleted, insertion_hash, deletion_hash
                 from splitgraph_meta.objects where object_id = any(%s) order by 1""", everything)
    other.close()


def test_clone_with_download_all_and_commits_on_top(cluster, dbname, hub, registry_db, conn):
    repo = "rm_pusher/whole"
    build(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    other = other_engine(cluster, dbname, hub, registry_db)
    sql(other, "select splitgraph.clone('hub', %s, download_all => true)", repo)
    registered, stored = objects_state(other)
    assert registered == stored and len(stored) == len({o for t in history(conn, repo)["tables"] for o in t[3]})
    assert value(other, "select count(*) from splitgraph_meta.object_locations") == 0
    check_every_object(other)
    sql(other, "select splitgraph.checkout(%s, 'main')", repo)
    sql(other, f"insert into \"{repo}\".u values ('more', 3)")
    sql(other, "select splitgraph.commit(%s)", repo)
    assert value(other, "select count(*) from splitgraph.log(%s)", repo) == 4
    other.close()


def test_pull_brings_new_images_tags_and_branches_and_nothing_else(cluster, dbname, hub, registry_db, conn):
    repo = "rm_pusher/pulled"
    v1, v2 = build(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    other = other_engine(cluster, dbname, hub, registry_db)
    sql(other, "select splitgraph.clone('hub', %s)", repo)
    sql(other, "select splitgraph.tag(%s, %s, 'mine')", repo, v1)
    before = metadata(other)
    sql(other, "select splitgraph.pull(%s)", repo)
    assert metadata(other) == before, "a pull with nothing new changed something"

    # new work on the first engine: a commit on main, v1 moved, a new tag and a new branch
    sql(conn, "select splitgraph.checkout(%s, 'main')", repo)
    sql(conn, f"insert into \"{repo}\".t values (200, 'pulled', null)")
    v3 = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.tag(%s, %s, 'v1')", repo, v2)
    sql(conn, "select splitgraph.tag(%s, %s, 'v3')", repo, v3)
    sql(conn, "select splitgraph.branch(%s, 'feature', %s)", repo, v3)
    sql(conn, "select splitgraph.push(%s)", repo)

    sql(other, "select splitgraph.pull(%s)", repo)
    images = {r[0] for r in sql(other, "select image_hash from splitgraph_meta.images where repository = %s", repo)}
    assert v3 in images
    tags = dict(sql(other, "select tag, image_hash from splitgraph_meta.tags where repository = %s", repo))
    assert tags == {"v1": v1, "v3": v3, "mine": v1}, "a local tag that points elsewhere stays"
    branches = dict(sql(other, "select branch, image_hash from splitgraph_meta.branches where repository = %s",
                        repo))
    assert branches["main"] == v3 and branches["feature"] == v3 and branches["dev"] == v1
    assert objects_state(other)[1] == [], "pull without download_all downloads nothing"

    sql(other, "select splitgraph.pull(%s, overwrite_tags => true)", repo)
    assert value(other, "select image_hash from splitgraph_meta.tags where repository = %s and tag = 'v1'",
                 repo) == v2
    assert value(other, "select image_hash from splitgraph_meta.tags where repository = %s and tag = 'mine'",
                 repo) == v1, "a tag the remote does not have is left alone"
    sql(other, "select splitgraph.pull(%s, download_all => true)", repo)
    registered, stored = objects_state(other)
    assert registered == stored
    fails(other, "select splitgraph.pull('nobody/here')", sqlstate="42704")
    sql(other, "select splitgraph.init('local/none')")
    fails(other, "select splitgraph.pull('local/none')", sqlstate="55000")
    other.close()


def test_pull_leaves_the_checked_out_branch_where_it_is(cluster, dbname, hub, registry_db, conn):
    repo = "rm_pusher/checked"
    build(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    other = other_engine(cluster, dbname, hub, registry_db)
    sql(other, "select splitgraph.clone('hub', %s)", repo)
    head = value(other, "select splitgraph.checkout(%s, 'main')", repo)
    sql(conn, "select splitgraph.checkout(%s, 'main')", repo)
    sql(conn, f"insert into \"{repo}\".t values (300, 'x', null)")
    new = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.push(%s)", repo)
    sql(other, "select splitgraph.pull(%s)", repo)
    assert value(other, "select image_hash from splitgraph_meta.branches where repository = %s and branch = 'main'",
                 repo) == head
    assert value(other, "select splitgraph.checkout(%s, %s)", repo, new) == new
    other.close()


# ---------------------------------------------------------------------------------------------------------------
# What arrives is checked
# ---------------------------------------------------------------------------------------------------------------

def test_a_tampered_object_from_a_remote_is_refused(cluster, dbname, hub, registry_db, conn, reg):
    repo = "rm_pusher/tampered"
    build(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    victim = objects_of_image(conn, repo, value(conn, "select image_hash from splitgraph_meta.tags "
                                                      "where repository = %s and tag = 'v1'", repo))[0]
    sql(reg, f'update splitgraph_meta."{victim}" set v = \'forged\' where id = (select min(id) from '
             f'splitgraph_meta."{victim}")')
    try:
        other = other_engine(cluster, dbname, hub, registry_db)
        before = metadata(other), objects_state(other)
        fails(other, "select splitgraph.clone('hub', %s, download_all => true)", repo, sqlstate="XX001")
        assert (metadata(other), objects_state(other)) == before
        sql(other, "select splitgraph.clone('hub', %s)", repo)  # metadata only: fine
        fails(other, "select splitgraph.checkout(%s, 'v1')", repo, sqlstate="XX001")
        assert victim not in object_tables(other)
        assert value(other, "select count(*) from pg_namespace where nspname = %s", repo) == 0
        other.close()
    finally:
        sql(reg, f'update splitgraph_meta."{victim}" t set v = md5(t.id::text) where v = \'forged\'')


def test_a_tampered_object_pushed_is_refused(hub, registry_db, conn, reg):
    """PUSHER writes into the registry's requests directly, with a dump whose rows do not hash to its id."""
    sql(conn, "select splitgraph.init('rm_pusher/forged')")
    sql(conn, 'create table "rm_pusher/forged".t (id int primary key, v text)')
    sql(conn, "insert into \"rm_pusher/forged\".t values (1, 'a'), (2, 'b')")
    image = value(conn, "select splitgraph.commit('rm_pusher/forged')")
    (oid,) = objects_of_image(conn, "rm_pusher/forged", image)
    dump = value(conn, "select splitgraph_internal.dump_for_transfer(%s)", oid)

    header, body = zlib.decompress(dump).split(b"\n", 1)
    forged = zlib.compress(header + b"\n" + body.replace(b"(2,b,t)", b"(2,c,t)"))
    before = metadata(reg), objects_state(reg)
    with connect_as(hub, registry_db, PUSHER, PASSWORD) as pusher:
        fails(pusher, """insert into splitgraph_remote.requests (repository, kind, payload, dump)
                         values ('rm_pusher/forged', 'object', jsonb_build_object('object_id', %s::text), %s)""",
              oid, forged, sqlstate="XX001")
        # a flag written another way is refused too (its row would be stored without being hashed)
        odd = zlib.compress(header + b"\n" + body.replace(b"(2,b,t)", b'(2,b,"t")'))
        fails(pusher, """insert into splitgraph_remote.requests (repository, kind, payload, dump)
                         values ('rm_pusher/forged', 'object', jsonb_build_object('object_id', %s::text), %s)""",
              oid, odd, sqlstate="XX001")
        # a table version naming an object the registry does not store
        fails(pusher, """insert into splitgraph_remote.requests (repository, kind, payload) values
                         ('rm_pusher/forged', 'image', jsonb_build_object('image_hash', repeat('a', 64),
                          'parent_id', null, 'created', '2024-01-01T00:00:00+00:00')),
                         ('rm_pusher/forged', 'table', jsonb_build_object('image_hash', repeat('a', 64),
                          'table_name', 't', 'table_schema', '[[1, "id", "integer", true]]'::jsonb,
                          'object_ids', jsonb_build_array(%s::text)))""", oid, sqlstate="42704")
    assert (metadata(reg), objects_state(reg)) == before


def test_malformed_metadata_from_a_remote_is_refused(cluster, dbname, hub, registry_db, conn, reg):
    """The registry's superuser serves forged metadata: an image whose parent is its own child."""
    repo = "rm_pusher/cycle"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    a, b = "a" * 64, "b" * 64
    sql(reg, f"""insert into splitgraph_meta.images (repository, image_hash, parent_id) values
                 (%s, '{a}', '{b}'), (%s, '{b}', '{a}')""", repo, repo)
    try:
        other = other_engine(cluster, dbname, hub, registry_db)
        before = metadata(other)
        error = fails(other, "select splitgraph.clone('hub', %s)", repo, sqlstate="XX001")
        assert "ancestor" in str(error)
        assert metadata(other) == before
        other.close()
    finally:
        sql(reg, "delete from splitgraph_meta.images where repository = %s and image_hash = any(%s)", repo, [a, b])


def test_object_dumps_dumps_only_the_objects_asked_for(hub, reg, conn):
    """What postgres_fdw sends for a download (`where object_id = any(...)`) is applied on the registry to
    splitgraph_meta.objects (its primary key) before the select list, which makes the dumps, is computed."""
    ids = [o for (o,) in sql(reg, "select object_id from splitgraph_meta.objects order by 1 limit 2")]
    assert ids, "the registry has objects"
    plan = "\n".join(r[0] for r in sql(reg, """explain (verbose, costs off)
        select object_id, dump from splitgraph_remote.object_dumps where object_id = any(%s::text[])""", ids))
    lines = plan.splitlines()
    # the dumps are made by the plan's top node only, from the rows its scan of objects kept
    assert [n for n, line in enumerate(lines) if "dump_for_transfer" in line] == [1], plan
    scan = next(n for n, line in enumerate(lines) if "on splitgraph_meta.objects o" in line)
    assert any("o.object_id = ANY" in line for line in lines[scan:scan + 4]), plan
    got = sql(reg, "select object_id from splitgraph_remote.object_dumps where object_id = any(%s::text[])", ids)
    assert sorted(r[0] for r in got) == ids


def test_a_large_download_reads_through_two_connections_and_leaves_nothing(cluster, dbname, hub, registry_db,
                                                                            conn):
    """From 16 objects on, a download reads through a second connection too (a copy of the caller's server and
    user mapping, dropped before the call ends): every object arrives, verified, and no server or foreign table
    of the copy stays."""
    repo = "rm_pusher/large"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f'insert into "{repo}".t select i, md5(i::text) from generate_series(1, 400) i')
    sql(conn, "select splitgraph.commit(%s, chunk_size => 10)", repo)
    sql(conn, "select splitgraph.push(%s, 'hub')", repo)
    other = other_engine(cluster, dbname, hub, registry_db)
    servers = sql(other, "select srvname::text from pg_foreign_server order by 1")
    tables = value(other, "select count(*) from pg_foreign_table")
    sql(other, "select splitgraph.clone('hub', %s, download_all => true)", repo)
    registered, stored = objects_state(other)
    assert len(stored) == 40 and registered == stored
    assert check_every_object(other) == 40
    assert sql(other, "select srvname::text from pg_foreign_server order by 1") == servers
    assert value(other, "select count(*) from pg_foreign_table") == tables
    sql(other, "select splitgraph.checkout(%s, 'main')", repo)
    assert value(other, f'select count(*) from "{repo}".t') == 400
    other.close()
