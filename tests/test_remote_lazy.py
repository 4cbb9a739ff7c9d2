"""Issue 11, lazy clones and pulls: a clone without download_all brings every image, tag, branch and table version
but no object data, and a checkout then downloads exactly the objects that image needs and the client lacks
(counted before and after); a clone with download_all stores them all; pull brings new images, tags and branches,
changes nothing when there is nothing new, and moves a local tag that points elsewhere only with overwrite_tags.

The repositories are made on the registry by its administrator (init and commit there); the client side is a
plain role with a remote of its own.
"""
import itertools

import pytest

from conftest import sql, value
from support.remotes import (
    commit_tables,
    differences,
    make_repository,
    metadata,
    objects_of_image,
    objects_of_repository,
    registered_objects,
    state,
    stored_objects,
    table_rows,
    upstream,
)

pytest_plugins = ["support.remote_fixtures"]

_numbers = itertools.count(1)


@pytest.fixture
def source(reg):
    """A repository on the registry: image `first` (t: 3 objects, u: 1), tagged v1; image `second` (t: a delta of
    3 changed rows, u unchanged, w new: 1 object) on branch main. Rows are unique to each test."""
    n = next(_numbers)
    repo = f"src{n}/lazy"
    first = make_repository(reg, repo, {"t": (30, f"t{n}"), "u": (10, f"u{n}")}, chunk_size=10)
    rows_first = table_rows(reg, repo, "t")
    sql(reg, "select splitgraph.tag(%s, %s, 'v1')", repo, first)
    sql(reg, f"update \"{repo}\".t set v = 'second' where id <= 3")
    sql(reg, f'create table "{repo}".w (id int primary key, v text)')
    sql(reg, f"insert into \"{repo}\".w select i, md5(i::text || 'w{n}') from generate_series(1, 10) i")
    second = value(reg, "select splitgraph.commit(%s)", repo)
    info = {"repo": repo, "first": first, "second": second, "rows_first": rows_first,
            "rows_second": table_rows(reg, repo, "t")}
    assert len(objects_of_image(reg, repo, first)) == 4
    assert len(set(objects_of_image(reg, repo, second)) - set(objects_of_image(reg, repo, first))) == 2
    return info


@pytest.fixture
def bob(users):
    user = users.new("lbob")
    user.conn = user.new_client()
    user.remote = user.add_remote(user.conn)
    return user


def object_tables(admin):
    """{object id: oid of its table}: an object downloaded again would be a new table."""
    return dict(sql(admin, """select relname::text, oid::bigint from pg_catalog.pg_class
                              where relnamespace = 'splitgraph_meta'::regnamespace and relname ~ '^o[0-9a-f]{62}$'"""))


def unchanged(before, after, where):
    assert before == after, f"{where} changed: {differences(before, after)}"


def test_a_lazy_clone_then_checkout_downloads_exactly_the_objects_an_image_needs(conn, reg, source, bob):
    repo, local = source["repo"], f"{bob.name}/lazy{next(_numbers)}"
    c = bob.conn
    registry_before, stored_before = state(reg), stored_objects(conn)
    sql(c, "select splitgraph.clone(%s, %s, %s)", bob.remote, repo, local)
    assert metadata(conn, local) == metadata(reg, repo), "the clone lacks images, tags, branches or table versions"
    assert upstream(conn, local) == [(bob.remote, repo)]
    assert set(objects_of_repository(reg, repo)) <= set(registered_objects(conn)), "object metadata did not arrive"
    assert stored_objects(conn) == stored_before, "a clone without download_all stored objects"
    assert value(conn, "select count(*) from splitgraph_meta.checkouts where repository = %s", local) == 0

    sql(c, "select splitgraph.checkout(%s, %s)", local, source["first"])
    first = set(stored_objects(conn)) - set(stored_before)
    assert first == set(objects_of_image(reg, repo, source["first"])), "checkout of first downloaded other objects"
    assert table_rows(c, local, "t") == source["rows_first"]

    tables_before = object_tables(conn)
    sql(c, "select splitgraph.checkout(%s, %s)", local, source["second"])
    tables_after = object_tables(conn)
    assert {o: tables_after[o] for o in tables_before} == tables_before, "objects that were here were downloaded again"
    second = set(stored_objects(conn)) - set(stored_before) - first
    assert second == set(objects_of_image(reg, repo, source["second"])) - first, \
        "checkout of second downloaded other objects than those it needs and the client lacks"
    assert table_rows(c, local, "t") == source["rows_second"]
    assert value(c, f'select count(*) from "{local}".w') == 10

    stored = stored_objects(conn)
    sql(c, "select splitgraph.checkout(%s, 'v1')", local)
    assert stored_objects(conn) == stored, "checking out an image whose objects are here downloaded again"
    unchanged(registry_before, state(reg), "the registry")


def test_a_clone_with_download_all_stores_every_object(conn, reg, source, bob):
    repo, local = source["repo"], f"{bob.name}/all{next(_numbers)}"
    stored_before = stored_objects(conn)
    sql(bob.conn, "select splitgraph.clone(%s, %s, %s, download_all => true)", bob.remote, repo, local)
    assert set(stored_objects(conn)) - set(stored_before) == set(objects_of_repository(reg, repo))
    stored = stored_objects(conn)
    sql(bob.conn, "select splitgraph.checkout(%s, %s)", local, source["second"])
    assert stored_objects(conn) == stored
    assert table_rows(bob.conn, local, "t") == source["rows_second"]


def test_pull_with_nothing_new_changes_nothing(conn, reg, source, bob):
    repo, local = source["repo"], f"{bob.name}/same{next(_numbers)}"
    sql(bob.conn, "select splitgraph.clone(%s, %s, %s)", bob.remote, repo, local)
    before = state(conn), state(reg)
    sql(bob.conn, "select splitgraph.pull(%s)", local)
    sql(bob.conn, "select splitgraph.pull(%s, download_all => false, overwrite_tags => true)", local)
    unchanged(before[0], state(conn), "the client")
    unchanged(before[1], state(reg), "the registry")


def test_pull_brings_new_images_tags_and_branches_and_moves_local_tags_only_with_overwrite_tags(conn, reg, source,
                                                                                                bob):
    """After the clone, the registry gets image `third` (made on a detached checkout: main does not move), tag v2
    and branch feature on it, and its tag v1 moves to it; the client has a tag of its own, `mine`. pull brings
    third, v2 and feature (no object data) and leaves v1 where it was; pull with overwrite_tags moves v1 too.
    `mine` stays. Checking out v1 then downloads exactly the objects of third the client lacks."""
    repo, local = source["repo"], f"{bob.name}/pull{next(_numbers)}"
    c = bob.conn
    sql(c, "select splitgraph.clone(%s, %s, %s)", bob.remote, repo, local)
    sql(c, "select splitgraph.tag(%s, %s, 'mine')", local, source["first"])
    sql(reg, "select splitgraph.checkout(%s, %s, force => true)", repo, source["second"])
    third = commit_tables(reg, repo, {"x": (10, f"x-{repo}")})
    sql(reg, "select splitgraph.tag(%s, %s, 'v2')", repo, third)
    sql(reg, "select splitgraph.tag(%s, %s, 'v1')", repo, third)
    sql(reg, "select splitgraph.branch(%s, 'feature', %s)", repo, third)
    assert ("main", source["second"]) in metadata(reg, repo)["branches"]
    stored_before = stored_objects(conn)

    sql(c, "select splitgraph.pull(%s)", local)
    got, theirs = metadata(conn, local), metadata(reg, repo)
    assert got["images"] == theirs["images"] and got["tables"] == theirs["tables"]
    assert dict(got["tags"]) == {"v1": source["first"], "v2": third, "mine": source["first"]}
    assert ("feature", third) in got["branches"]
    assert stored_objects(conn) == stored_before, "pull without download_all stored objects"

    sql(c, "select splitgraph.pull(%s, overwrite_tags => true)", local)
    assert dict(metadata(conn, local)["tags"]) == {"v1": third, "v2": third, "mine": source["first"]}
    assert stored_objects(conn) == stored_before

    sql(c, "select splitgraph.checkout(%s, 'v1')", local)
    fetched = set(stored_objects(conn)) - set(stored_before)
    assert fetched == set(objects_of_image(reg, repo, third)) - set(stored_before)
    assert value(c, f'select count(*) from "{local}".x') == 10


def test_pull_with_download_all_stores_the_new_images_objects(conn, reg, source, bob):
    repo, local = source["repo"], f"{bob.name}/pullall{next(_numbers)}"
    sql(bob.conn, "select splitgraph.clone(%s, %s, %s)", bob.remote, repo, local)
    third = commit_tables(reg, repo, {"y": (10, f"y-{repo}")})
    sql(bob.conn, "select splitgraph.pull(%s, download_all => true)", local)
    assert third in {i for i, _, _ in metadata(conn, local)["images"]}
    assert set(objects_of_image(reg, repo, third)) <= set(stored_objects(conn))
