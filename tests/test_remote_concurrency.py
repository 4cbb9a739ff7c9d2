"""Issue 11, several roles pushing at once: 4 concurrent pushers (alice and bob to their own repositories, and carol
from two client engines to the same repository) serialize without corruption. Afterwards every image, table
version, tag and object on the registry is consistent: each pushed repository is exactly what its client holds
(carol's: the union of both), and every object's rows re-hash to its id (independently, and by load_object in a
third database).

The pushers share objects on purpose: alice's and bob's repositories have a table of identical rows, and carol's
two new images add the same new table, so the same object ids arrive at the same time.
"""
import json
import threading
from concurrent.futures import ThreadPoolExecutor

import pytest

from conftest import sql, value
from support.remotes import (
    check_integrity,
    commit_tables,
    connect,
    make_repository,
    metadata,
    objects_of_repository,
    stored_objects,
)

pytest_plugins = ["support.remote_fixtures"]


def as_set(rows):
    return sorted({json.dumps(r) for r in rows})


@pytest.fixture(scope="module")
def second_client(cluster, dbname):
    """A second client engine: another database of the client cluster, with the extension."""
    name = f"{dbname}_b"[:63]
    cluster.create_database(name)
    return name


def test_four_concurrent_pushers_serialize_without_corruption(conn, reg, cluster, dbname, users, second_client):
    alice, bob, carol = users.new("palice"), users.new("pbob"), users.new("pcarol")
    a, b, c1 = alice.client(), bob.client(), carol.client()
    c2 = carol.client(second_client)
    remotes = {name: u.add_remote(k) for name, u, k in [("a", alice, a), ("b", bob, b), ("c1", carol, c1)]}
    remotes["c2"] = carol.add_remote(c2, f"reg_{carol.name}_b")

    # alice and bob: new repositories of many objects, with one table of the same rows (the same objects)
    one, two = f"{alice.name}/one", f"{bob.name}/two"
    make_repository(a, one, {"t": (400, "alice"), "same": (60, "shared")}, chunk_size=20)
    make_repository(b, two, {"t": (400, "bob"), "same": (60, "shared")}, chunk_size=20)
    # carol: a repository on the registry, cloned into her second engine; each engine adds an image on top of its
    # base (detached: no branch moves) with its own tag and the same new table
    shared = f"{carol.name}/shared"
    base = make_repository(c1, shared, {"t": (100, "carol")}, chunk_size=20)
    sql(c1, "select splitgraph.push(%s, %s)", shared, remotes["c1"])
    sql(c2, "select splitgraph.clone(%s, %s, download_all => true)", remotes["c2"], shared)
    tips = {}
    for k, engine in ((c1, "a"), (c2, "b")):
        sql(k, "select splitgraph.checkout(%s, %s, force => true)", shared, base)
        tips[engine] = commit_tables(k, shared, {"t": (100 + (7 if engine == "a" else 9), f"carol-{engine}"),
                                                 "common": (80, "common")}, chunk_size=20)
        sql(k, "select splitgraph.tag(%s, %s, %s)", shared, tips[engine], f"from_{engine}")
    with connect(cluster.dsn(second_client)) as admin_b:
        expected_b = metadata(admin_b, shared)
    expected_a = metadata(conn, shared)

    pushes = [(a, one, remotes["a"]), (b, two, remotes["b"]), (c1, shared, remotes["c1"]),
              (c2, shared, remotes["c2"])]
    start = threading.Barrier(len(pushes))

    def push(k, repo, remote):
        start.wait(10)
        sql(k, "select splitgraph.push(%s, %s)", repo, remote)

    with ThreadPoolExecutor(max_workers=len(pushes)) as pool:
        futures = [pool.submit(push, *p) for p in pushes]
        errors = []
        for f in futures:
            try:
                f.result(timeout=60)
            except Exception as e:  # every pusher's failure is reported below
                errors.append(repr(e))
    assert errors == [], f"concurrent pushes failed: {errors}"

    # alice's and bob's repositories are exactly what their clients hold
    assert metadata(reg, one) == metadata(conn, one)
    assert metadata(reg, two) == metadata(conn, two)
    # carol's holds both engines' images and tags; main stays on the base both started from
    got = metadata(reg, shared)
    assert sorted(got["images"]) == sorted(set(expected_a["images"]) | set(expected_b["images"]))
    assert as_set(got["tables"]) == as_set(expected_a["tables"] + expected_b["tables"])
    assert got["tags"] == [("from_a", tips["a"]), ("from_b", tips["b"])]
    assert got["branches"] == [("main", base)]
    # every object is there once, stored, and its rows hash to its id
    for repo in (one, two, shared):
        assert set(objects_of_repository(reg, repo)) <= set(stored_objects(reg)), repo
    assert check_integrity(reg, cluster, f"{dbname}_check") >= 40
    assert value(reg, "select count(*) from splitgraph_meta.repositories where repository = any(%s)",
                 [one, two, shared]) == 3
