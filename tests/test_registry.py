"""Issue 11: a registry that several roles share. Real roles that are not superusers log in to the registry with a
password (through the remotes of the client engine, and directly); every allowed path works and every forbidden one
fails with 42501 and changes nothing; namespaces are granted and revoked; pushers at the same time serialize
without corruption; a registry killed in the middle of a push leaves nothing behind on either side, and pushing
again completes."""
import secrets
import threading
import time

import psycopg2
import pytest
from psycopg2.extras import Json as Jsonb

from conftest import fails, new_cluster, sql, value
from support import driver  # noqa: E402
from support.registry import (
    check_every_object,
    connect_as,
    metadata,
    objects_state,
    password_role,
    require_passwords,
)

ALICE, BOB = "rg_alice", "rg_bob"
PASSWORDS = {ALICE: "a'" + secrets.token_hex(6), BOB: "b'" + secrets.token_hex(6)}


@pytest.fixture(scope="module")
def registry(cluster, dbname, registry_cluster, registry_db):
    """Alice and Bob on the registry; the client engine has a remote for each (as postgres)."""
    for role, password in PASSWORDS.items():
        password_role(registry_cluster, role, password)
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        for role, password in PASSWORDS.items():
            sql(c, "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, %s, %s)", role, registry_cluster.port,
                registry_db, role, password)
    return registry_cluster


@pytest.fixture
def reg(registry, registry_db):
    with driver.connect(registry.dsn(registry_db), autocommit=True) as c:
        yield c


def direct(registry, registry_db, role):
    """A connection to the registry as `role`, logged in with its password."""
    return connect_as(registry, registry_db, role, PASSWORDS[role])


def commit_rows(conn, repo, rows, table="t", chunk_size=None):
    """Init (when needed), fill table `table` with `rows` generated rows, commit; returns the image."""
    if not value(conn, "select count(*) from splitgraph_meta.repositories where repository = %s", repo):
        sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table if not exists "{repo}".{table} (id int primary key, v text)')
    sql(conn, f"""insert into "{repo}".{table} select i, md5(i::text) from generate_series(1, {rows}) i
                  on conflict (id) do update set v = excluded.v || '!'""")
    return value(conn, "select splitgraph.commit(%s, chunk_size => %s)", repo, chunk_size)


# ---------------------------------------------------------------------------------------------------------------
# Who may do what
# ---------------------------------------------------------------------------------------------------------------

def test_a_role_writes_its_own_namespace_and_reads_every_repository(cluster, dbname, registry, registry_db, conn,
                                                                      reg):
    commit_rows(conn, "rg_alice/data", 30, chunk_size=10)
    sql(conn, "select splitgraph.push('rg_alice/data', 'rg_alice')")
    assert value(reg, "select count(*) from splitgraph_meta.images where repository = 'rg_alice/data'") == 2
    # Bob may read and clone it, not push to it
    sql(conn, "select splitgraph.init('rg_bob/copy')")
    before = metadata(reg), objects_state(reg)
    commit_rows(conn, "rg_bob/copy", 5)
    error = fails(conn, "select splitgraph.push('rg_bob/copy', 'rg_bob', 'rg_alice/data')", sqlstate="42501")
    assert 'may not change repository "rg_alice/data"' in str(error)
    assert (metadata(reg), objects_state(reg)) == before
    sql(conn, "select splitgraph.push('rg_bob/copy', 'rg_bob')")
    assert value(reg, "select count(*) from splitgraph_meta.images where repository = 'rg_bob/copy'") == 2
    with direct(registry, registry_db, BOB) as bob:
        assert value(bob, "select count(*) from splitgraph.images('rg_alice/data')") == 2
        assert value(bob, "select count(*) from splitgraph_remote.object_dumps o join splitgraph_remote.tables t "
                          "on o.object_id = any(t.object_ids) where t.repository = 'rg_alice/data'") == 3


def test_forbidden_paths_fail_with_42501_and_change_nothing(registry, registry_db, conn, reg):
    image = commit_rows(conn, "rg_alice/guarded", 12)
    sql(conn, "select splitgraph.tag('rg_alice/guarded', 'HEAD', 'v1')")
    sql(conn, "select splitgraph.push('rg_alice/guarded', 'rg_alice')")
    (oid,) = value(conn, "select object_ids from splitgraph_meta.tables where repository = 'rg_alice/guarded' "
                         "and image_hash = %s", image)
    dump = value(conn, "select splitgraph_internal.dump_for_transfer(%s)", oid)
    before = metadata(reg), objects_state(reg)
    request = "insert into splitgraph_remote.requests (repository, kind, payload, dump) values (%s, %s, %s, %s)"
    with direct(registry, registry_db, BOB) as bob:
        # the extension's tables, object tables and helpers are out of reach
        for query in ("select * from splitgraph_meta.objects", f'select * from splitgraph_meta."{oid}"',
                      "select * from splitgraph_meta.images", "delete from splitgraph_meta.tags",
                      "select splitgraph_internal.receive('rg_bob/x', 'repository', null, null)",
                      "update splitgraph_remote.images set comment = 'x'",
                      "delete from splitgraph_remote.requests"):
            fails(bob, query, sqlstate="42501")
        # every kind of push step into Alice's repository, and the API's writes
        steps = [("repository", None, None), ("object", Jsonb({"object_id": oid}), dump),
                 ("image", Jsonb({"image_hash": "c" * 64, "parent_id": image,
                                  "created": "2024-01-01T00:00:00+00:00"}), None),
                 ("tag", Jsonb({"tag": "v1", "image_hash": "0" * 64}), None),
                 ("branch", Jsonb({"branch": "main", "image_hash": "0" * 64}), None)]
        for kind, payload, data in steps:
            fails(bob, request, "rg_alice/guarded", kind, payload, data, sqlstate="42501")
        for query in ("select splitgraph.tag('rg_alice/guarded', 'v1', 'mine')",
                      "select splitgraph.delete_tag('rg_alice/guarded', 'v1')",
                      "select splitgraph.branch('rg_alice/guarded', 'b', 'v1')",
                      "select splitgraph.delete_image('rg_alice/guarded', 'v1', true)",
                      "select splitgraph.rm('rg_alice/guarded')",
                      "select splitgraph.init('rg_alice/new')",
                      "select splitgraph.grant_namespace('rg_alice', 'rg_bob')",
                      "select splitgraph.cleanup()"):
            fails(bob, query, sqlstate="42501")
        # an object Bob sends for his own repository that Alice's already uses changes none of its metadata
        sql(bob, request, "rg_bob/reuse", "object", Jsonb({"object_id": oid}), dump)
    assert value(reg, "select namespace from splitgraph_meta.objects where object_id = %s", oid) == "rg_alice"
    after = metadata(reg)
    assert after["objects"] == before[0]["objects"]
    assert {t: v for t, v in after.items() if t != "repositories"} == \
        {t: v for t, v in before[0].items() if t != "repositories"}
    assert objects_state(reg) == before[1]


def test_images_never_change(registry, registry_db, conn, reg):
    image = commit_rows(conn, "rg_alice/fixed", 3)
    sql(conn, "select splitgraph.push('rg_alice/fixed', 'rg_alice')")
    row = sql(conn, "select parent_id, created from splitgraph_meta.images where image_hash = %s", image)[0]
    before = metadata(reg)
    with direct(registry, registry_db, ALICE) as alice:
        forged = {"image_hash": image, "parent_id": row[0], "created": row[1].isoformat(), "comment": "rewritten"}
        error = fails(alice, "insert into splitgraph_remote.requests (repository, kind, payload) values (%s, %s, %s)",
                      "rg_alice/fixed", "image", Jsonb(forged), sqlstate="42710")
        assert "never change" in error.diag.message_hint
        # the same metadata is accepted (and changes nothing); a table added to an existing image is not
        sql(alice, "insert into splitgraph_remote.requests (repository, kind, payload) values (%s, %s, %s)",
            "rg_alice/fixed", "image", Jsonb(dict(forged, comment=None)))
        fails(alice, "insert into splitgraph_remote.requests (repository, kind, payload) values (%s, %s, %s)",
              "rg_alice/fixed", "table", Jsonb({"image_hash": image, "table_name": "extra",
                                               "table_schema": [[1, "id", "integer", True]], "object_ids": []}),
              sqlstate="42710")
    assert metadata(reg) == before


def test_namespaces_are_granted_and_revoked(registry, registry_db, conn, reg):
    commit_rows(conn, "rg_bob/team-work", 4)
    fails(conn, "select splitgraph.push('rg_bob/team-work', 'rg_bob', 'team/work')", sqlstate="42501")
    with direct(registry, registry_db, ALICE) as alice:
        fails(alice, "select splitgraph.grant_namespace('team', 'rg_alice')", sqlstate="42501")
    sql(reg, "select splitgraph.grant_namespace('team', %s)", BOB)
    fails(reg, "select splitgraph.grant_namespace('bad/name', %s)", BOB, sqlstate="42602")
    fails(reg, "select splitgraph.grant_namespace('team', 'no_such_role')", sqlstate="42704")
    sql(conn, "select splitgraph.push('rg_bob/team-work', 'rg_bob', 'team/work')")
    assert value(reg, "select count(*) from splitgraph_meta.images where repository = 'team/work'") == 2
    fails(conn, "select splitgraph.push('rg_bob/team-work', 'rg_alice', 'team/alice')", sqlstate="42501")
    with direct(registry, registry_db, BOB) as bob:
        sql(bob, "select splitgraph.branch('team/work', 'review', 'main')")
    sql(reg, "select splitgraph.revoke_namespace('team', %s)", BOB)
    commit_rows(conn, "rg_bob/team-work", 5)
    before = metadata(reg)
    fails(conn, "select splitgraph.push('rg_bob/team-work', 'rg_bob', 'team/work')", sqlstate="42501")
    assert metadata(reg) == before


# ---------------------------------------------------------------------------------------------------------------
# Pushers at the same time
# ---------------------------------------------------------------------------------------------------------------

def _engine(cluster, dbname, registry, registry_db, suffix):
    name = f"{dbname}_{suffix}"[:63]
    cluster.create_database(name)
    c = driver.connect(cluster.dsn(name), autocommit=True)
    sql(c, "set client_min_messages = warning")
    sql(c, "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, %s, %s)", ALICE, registry.port, registry_db, ALICE,
        PASSWORDS[ALICE])
    return c


def _together(calls):
    """Run the calls (connection, query, args) at the same moment; returns each one's error or None."""
    barrier = threading.Barrier(len(calls))
    results = [None] * len(calls)

    def run(i, conn, query, args):
        barrier.wait()
        try:
            sql(conn, query, *args)
        except psycopg2.Error as error:
            results[i] = error

    threads = [threading.Thread(target=run, args=(i, *call)) for i, call in enumerate(calls)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(120)
    return results


def test_four_pushers_at_once_serialize_without_corruption(cluster, dbname, registry, registry_db, conn, reg):
    """Two engines push two repositories holding the same rows (so the same objects), while two more engines push
    new images of one shared repository, each on a branch of its own and the same new rows."""
    base = commit_rows(conn, "rg_alice/shared", 100, chunk_size=10)
    sql(conn, "select splitgraph.push('rg_alice/shared', 'rg_alice')")
    engines = [_engine(cluster, dbname, registry, registry_db, f"p{i}") for i in range(4)]
    for i, e in enumerate(engines[:2]):
        commit_rows(e, f"rg_alice/same{i}", 3000, chunk_size=100)
    for i, e in enumerate(engines[2:]):
        sql(e, "select splitgraph.clone(%s, 'rg_alice/shared', download_all => true)", ALICE)
        sql(e, "select splitgraph.branch('rg_alice/shared', %s, %s)", f"b{i}", base)
        sql(e, "select splitgraph.checkout('rg_alice/shared', %s)", f"b{i}")
        sql(e, 'insert into "rg_alice/shared".t select i, \'new\' from generate_series(1000, 3000) i')
        sql(e, "select splitgraph.commit('rg_alice/shared', chunk_size => 100)")
    results = _together([(engines[0], "select splitgraph.push('rg_alice/same0', %s)", (ALICE,)),
                         (engines[1], "select splitgraph.push('rg_alice/same1', %s)", (ALICE,)),
                         (engines[2], "select splitgraph.push('rg_alice/shared')", ()),
                         (engines[3], "select splitgraph.push('rg_alice/shared')", ())])
    assert results == [None] * 4, results
    check_every_object(reg)
    for i in range(2):
        assert value(reg, "select count(*) from splitgraph_meta.images where repository = %s",
                     f"rg_alice/same{i}") == 2
    branches = dict(sql(reg, "select branch, image_hash from splitgraph_meta.branches "
                             "where repository = 'rg_alice/shared'"))
    assert set(branches) == {"main", "b0", "b1"} and branches["b0"] != branches["b1"]
    assert branches["main"] == base
    # every image's tables name objects the registry stores
    assert not sql(reg, """select o from splitgraph_meta.tables t, unnest(t.object_ids) o
                           where not exists (select from pg_class c where c.relname = o
                                             and c.relnamespace = 'splitgraph_meta'::regnamespace)""")
    for e in engines:
        e.close()


def test_two_clients_pushing_the_same_branch_one_wins(cluster, dbname, registry, registry_db, conn, reg):
    base = commit_rows(conn, "rg_alice/race", 10)
    sql(conn, "select splitgraph.push('rg_alice/race', 'rg_alice')")
    engines = [_engine(cluster, dbname, registry, registry_db, f"race{i}") for i in range(2)]
    for i, e in enumerate(engines):
        sql(e, "select splitgraph.clone(%s, 'rg_alice/race', download_all => true)", ALICE)
        sql(e, "select splitgraph.checkout('rg_alice/race', 'main')")
        sql(e, f'insert into "rg_alice/race".t select i, \'client {i}\' from generate_series(100, 2100) i')
        sql(e, "select splitgraph.commit('rg_alice/race', chunk_size => 100)")
    results = _together([(e, "select splitgraph.push('rg_alice/race')", ()) for e in engines])
    assert sorted(r is None for r in results) == [False, True], results
    loser = next(r for r in results if r is not None)
    assert loser.pgcode == "55000" and "diverged" in str(loser)
    winner = engines[results.index(None)]
    head = value(winner, "select image_hash from splitgraph_meta.branches where repository = 'rg_alice/race' "
                         "and branch = 'main'")
    assert value(reg, "select image_hash from splitgraph_meta.branches where repository = 'rg_alice/race' "
                      "and branch = 'main'") == head != base
    assert value(reg, "select count(*) from splitgraph_meta.images where repository = 'rg_alice/race'") == 3
    check_every_object(reg)
    for e in engines:
        e.close()


# ---------------------------------------------------------------------------------------------------------------
# A registry that dies in the middle of a push
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def doomed():
    """A registry of its own, to be killed."""
    c = new_cluster("doomed")
    require_passwords(c)
    c.create_database("hub")
    yield c
    c.destroy()


def test_a_registry_killed_mid_push_keeps_nothing_and_the_push_completes_later(conn, doomed):
    repo = "postgres_kill/big"
    sql(conn, "select splitgraph.add_remote('doomed', '127.0.0.1', %s, 'hub', 'postgres', null)", doomed.port)
    commit_rows(conn, repo, 60000, chunk_size=200)  # 300 objects
    watcher = driver.connect(doomed.dsn("hub"), autocommit=True)
    outcome = {}

    def push():
        try:
            sql(conn, "select splitgraph.push(%s, 'doomed')", repo)
        except psycopg2.Error as error:
            outcome["error"] = error

    thread = threading.Thread(target=push)
    thread.start()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # until the registry is receiving objects
        if value(watcher, """select count(*) from pg_stat_activity
                             where query like 'INSERT INTO splitgraph_remote.requests%%' and state = 'active'"""):
            break
        time.sleep(0.01)
    else:
        pytest.fail("the push never reached the registry")
    time.sleep(0.3)
    watcher.close()
    doomed.stop_immediately()
    thread.join(60)
    error = outcome.get("error")
    assert error is not None, "the push survived the registry's death"
    assert error.pgcode.startswith(("08", "57")) or "connection" in str(error).lower(), error
    assert sql(conn, "select * from splitgraph.upstream(%s)", repo) == []
    doomed.start()
    with driver.connect(doomed.dsn("hub"), autocommit=True) as hub:
        assert value(hub, "select count(*) from splitgraph_meta.repositories") == 0
        assert value(hub, "select count(*) from splitgraph_meta.objects") == 0
        assert value(hub, "select count(*) from pg_class where relnamespace = 'splitgraph_meta'::regnamespace "
                          "and (relname ~ '^o[0-9a-f]{62}$' or relname like 'sg_tmp%%')") == 0
    sql(conn, "select splitgraph.push(%s, 'doomed')", repo)
    with driver.connect(doomed.dsn("hub"), autocommit=True) as hub:
        assert value(hub, "select count(*) from splitgraph_meta.images where repository = %s", repo) == 2
        assert check_every_object(hub) == 300
    assert sql(conn, "select * from splitgraph.upstream(%s)", repo) == [("doomed", repo)]
    sql(conn, "select splitgraph.delete_remote('doomed')")
