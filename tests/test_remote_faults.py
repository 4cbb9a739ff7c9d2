"""Issue 11, transfers that fail midway, and objects that do not hash to their ids.

- The registry killed (pg_ctl stop -m immediate) while a push of 200 objects is being sent leaves no
  half-registered image, table version or object on either engine; a push while it is down fails and changes
  nothing; rerunning the push after the restart completes it (every object re-hashes to its id) and a further
  push changes nothing.
- A clone cancelled midway (pg_cancel_backend) leaves nothing on the client, and rerunning it completes.
- An object altered on the registry (by its superuser) is refused with XX001 by clone (download_all) and by the
  checkout that would download it after a lazy clone, and nothing of it is registered; an object altered on the
  client is refused by the registry when pushed.
"""
import itertools
import threading
import time

import pytest
from psycopg2 import sql as pgsql

from conftest import sql
from support.queries import value
from support.remotes import (
    attempt,
    check_integrity,
    connect,
    differences,
    kill,
    make_repository,
    metadata,
    objects_of_image,
    objects_of_repository,
    state,
    stored_objects,
    table_rows,
    upstream,
    when_writing,
)

pytest_plugins = ["support.remote_fixtures"]

_numbers = itertools.count(1)
MANY = {"t": (6000, "many")}  # with chunk_size 30: 200 objects


def unchanged(before, after, where):
    assert before == after, f"{where} changed: {differences(before, after)}"


def tamper(admin, object_id):
    """Change one row of a stored object, as a superuser of its engine can."""
    sql(admin, pgsql.SQL("update {t} set v = 'tampered' where id = (select min(id) from {t})").format(
        t=pgsql.Identifier("splitgraph_meta", object_id)))


# ---------------------------------------------------------------------------------------------------------------
# The registry killed mid-push
# ---------------------------------------------------------------------------------------------------------------

def test_registry_killed_mid_push_leaves_nothing_half_done_and_a_rerun_completes(conn, cluster, dbname, registry,
                                                                                   regdb, users):
    alice = users.new("kalice")
    c = alice.client()
    remote = alice.add_remote(c)
    repo = f"{alice.name}/many"
    image = make_repository(c, repo, MANY, chunk_size=30)
    sql(c, "select splitgraph.tag(%s, %s, 'v1')", repo, image)
    assert len(objects_of_repository(conn, repo)) == 200
    with connect(registry.dsn(regdb)) as reg:
        registry_before = state(reg)
    client_before = state(conn)

    watcher, outcome = when_writing(registry.dsn(regdb), alice.name, regdb, lambda: kill(registry), fallback=3.0)
    try:
        error = attempt(c, "select splitgraph.push(%s, %s)", repo, remote)
        watcher.join(40)
        assert outcome["fired"], "the push never wrote to the registry"
        assert error is not None, f"the push finished before the registry was killed ({outcome['how']})"
        unchanged(client_before, state(conn), "the client")
        assert upstream(conn, repo) == []
        down = attempt(c, "select splitgraph.push(%s, %s)", repo, remote)
        assert down is not None, "a push to a stopped registry succeeded"
        unchanged(client_before, state(conn), "the client")
    finally:
        watcher.join(40)
        registry.start()

    with connect(registry.dsn(regdb)) as reg:
        unchanged(registry_before, state(reg), "the registry (after crash recovery)")
        check_integrity(reg, cluster, f"{dbname}_check")

    sql(c, "select splitgraph.push(%s, %s)", repo, remote)
    with connect(registry.dsn(regdb)) as reg:
        assert metadata(reg, repo) == metadata(conn, repo)
        assert set(objects_of_repository(conn, repo)) <= set(stored_objects(reg))
        assert check_integrity(reg, cluster, f"{dbname}_check") >= 200
        registry_after = state(reg)
    assert upstream(conn, repo) == [(remote, repo)]
    client_after = state(conn)
    sql(c, "select splitgraph.push(%s)", repo)
    with connect(registry.dsn(regdb)) as reg:
        unchanged(registry_after, state(reg), "the registry (a push with nothing new)")
    unchanged(client_after, state(conn), "the client (a push with nothing new)")


# ---------------------------------------------------------------------------------------------------------------
# A clone cancelled midway
# ---------------------------------------------------------------------------------------------------------------

def test_a_clone_cancelled_midway_leaves_nothing_and_a_rerun_completes(conn, reg, cluster, dbname, users):
    source = f"src{next(_numbers)}/many"
    image = make_repository(reg, source, MANY, chunk_size=30)
    bob = users.new("cbob")
    c = bob.new_client()
    remote = bob.add_remote(c)
    local = f"{bob.name}/many"
    client_before, registry_before = state(conn), state(reg)
    pid = c.info.backend_pid

    # The clone downloads every object first, then registers the images: a session that holds a lock on the
    # images table makes it wait there, midway, where it is cancelled (deterministically, however fast the rest).
    blocker = connect(cluster.dsn(dbname))
    sql(blocker, "begin")
    sql(blocker, "lock table splitgraph_meta.images in share mode")
    waiting = {"seen": False}

    def cancel():
        with connect(cluster.dsn(dbname)) as k:
            begun = time.monotonic()
            while time.monotonic() - begun < 60:
                if value(k, "select wait_event_type = 'Lock' from pg_catalog.pg_stat_activity where pid = %s", pid):
                    waiting["seen"] = True
                    break
                time.sleep(0.01)
            sql(k, "select pg_catalog.pg_cancel_backend(%s)", pid)

    watcher = threading.Thread(target=cancel, daemon=True)
    watcher.start()
    try:
        error = attempt(c, "select splitgraph.clone(%s, %s, %s, download_all => true)", remote, source, local)
        watcher.join(70)
    finally:
        sql(blocker, "rollback")
        blocker.close()
    assert waiting["seen"], "the clone never waited on the images table"
    assert error is not None, "the clone finished before it was cancelled"
    assert error.pgcode == "57014", error
    unchanged(client_before, state(conn), "the client")
    unchanged(registry_before, state(reg), "the registry")

    sql(c, "select splitgraph.clone(%s, %s, %s, download_all => true)", remote, source, local)
    assert metadata(conn, local) == metadata(reg, source)
    assert set(objects_of_repository(reg, source)) <= set(stored_objects(conn))
    assert upstream(conn, local) == [(remote, source)]
    sql(c, "select splitgraph.checkout(%s, %s)", local, image)
    assert len(table_rows(c, local, "t")) == 6000


# ---------------------------------------------------------------------------------------------------------------
# Objects that do not hash to their ids
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("download_all", [True, False], ids=["clone with download_all", "lazy clone + checkout"])
def test_an_object_tampered_on_the_registry_is_refused(conn, reg, users, download_all):
    """The registry's superuser changes a row of the second object of an image. Cloning with download_all fails
    with XX001 and the client does not change; a lazy clone stores no object, and the checkout that downloads the
    image's objects fails with XX001, storing none of them and checking nothing out."""
    source = f"src{next(_numbers)}/tampered"
    image = make_repository(reg, source, {"t": (30, "tampered")}, chunk_size=10)
    victim = objects_of_image(reg, source, image)[1]
    tamper(reg, victim)
    bob = users.new("tbob")
    c = bob.new_client()
    remote = bob.add_remote(c)
    local = f"{bob.name}/tampered"
    before, stored_before = state(conn), stored_objects(conn)
    if download_all:
        error = attempt(c, "select splitgraph.clone(%s, %s, %s, download_all => true)", remote, source, local)
        assert error is not None and error.pgcode == "XX001", error
        unchanged(before, state(conn), "the client")
    else:
        sql(c, "select splitgraph.clone(%s, %s, %s)", remote, source, local)
        cloned = state(conn)
        assert stored_objects(conn) == stored_before, "a lazy clone stored objects"
        error = attempt(c, "select splitgraph.checkout(%s, %s)", local, image)
        assert error is not None and error.pgcode == "XX001", error
        unchanged(cloned, state(conn), "the client")
    assert victim not in stored_objects(conn)


def test_an_object_tampered_on_the_client_is_refused_by_the_registry(conn, reg, users):
    """The client's superuser changes a row of one of alice's objects; her push fails with XX001 and neither
    engine changes."""
    alice = users.new("palice")
    c = alice.client()
    remote = alice.add_remote(c)
    repo = f"{alice.name}/tampered"
    image = make_repository(c, repo, {"t": (30, "pushed tampered")}, chunk_size=10)
    victim = objects_of_image(conn, repo, image)[1]
    tamper(conn, victim)
    before = state(conn), state(reg)
    error = attempt(c, "select splitgraph.push(%s, %s)", repo, remote)
    assert error is not None and error.pgcode == "XX001", error
    unchanged(before[0], state(conn), "the client")
    unchanged(before[1], state(reg), "the registry")
    assert victim not in stored_objects(reg)
