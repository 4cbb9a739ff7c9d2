"""Issue 11, a registry that several roles share: a role pushes to, tags, branches and deletes only in the namespace
named like it, or in one granted to it with grant_namespace (by the engine's owner only; revoke_namespace undoes
it). Every forbidden path fails with 42501 and changes nothing on either engine, and no call lets a role overwrite
another namespace's images, tags or object metadata (pushing an object that the registry has, with other metadata
or rows; an image hash it has, with other metadata).

Two engines: the client (the session's cluster) and a registry (a second cluster where roles log in with
passwords). Each person is a LOGIN role, not a superuser, named alike on both, with a remote of its own.
"""
import itertools

import pytest
from psycopg2 import sql as pgsql

from conftest import sql, value
from support.remotes import (
    attempt,
    check_integrity,
    connect,
    differences,
    make_repository,
    metadata,
    objects_of_repository,
    state,
    stored_objects,
    upstream,
)

pytest_plugins = ["support.remote_fixtures"]

_numbers = itertools.count(1)


def person(users, stem):
    user = users.new(stem)
    user.remote = user.add_remote(user.client())
    return user


@pytest.fixture(scope="module")
def alice(users):
    return person(users, "ralice")


@pytest.fixture(scope="module")
def bob(users):
    return person(users, "rbob")


@pytest.fixture(scope="module")
def carol(users):
    return person(users, "rcarol")


@pytest.fixture(scope="module")
def published(alice):
    """alice/data, pushed by alice: image `first` (3 objects) tagged v1, image `second` (a delta) on branch main,
    branch dev on `first`."""
    c = alice.client()
    repo = f"{alice.name}/data"
    first = make_repository(c, repo, {"t": (30, "pub")}, chunk_size=10, comment="first")
    sql(c, f"update \"{repo}\".t set v = 'changed' where id <= 3")
    second = value(c, "select splitgraph.commit(%s, 'second')", repo)
    sql(c, "select splitgraph.tag(%s, %s, 'v1')", repo, first)
    sql(c, "select splitgraph.branch(%s, 'dev', %s)", repo, first)
    sql(c, "select splitgraph.push(%s, %s)", repo, alice.remote)
    return {"repo": repo, "first": first, "second": second}


def other_client_db(cluster, dbname):
    """A fresh database of the client cluster, with the extension (another client engine)."""
    name = f"{dbname}_{next(_numbers)}"[:63]
    cluster.create_database(name)
    return name


def refused(error, what):
    assert error is not None, f"{what} was allowed"
    assert error.pgcode == "42501", f"{what}: {error.pgcode} {error}"


def unchanged(before, after, where):
    assert before == after, f"{where} changed: {differences(before, after)}"


# ---------------------------------------------------------------------------------------------------------------
# The allowed path
# ---------------------------------------------------------------------------------------------------------------

def test_a_role_pushes_its_namespace_and_a_second_push_changes_nothing(conn, reg, cluster, dbname, alice,
                                                                      published):
    """alice's push made alice/data on the registry with the same images, table versions, tags and branches as
    her local repository, every object stored there and re-hashing to its id, and recorded the upstream; pushing
    again changes nothing on either engine."""
    repo = published["repo"]
    assert metadata(reg, repo) == metadata(conn, repo)
    assert {t for t, _ in metadata(reg, repo)["tags"]} == {"v1"}
    assert {b for b, _ in metadata(reg, repo)["branches"]} == {"main", "dev"}
    assert set(objects_of_repository(conn, repo)) <= set(stored_objects(reg))
    assert upstream(conn, repo) == [(alice.remote, repo)]
    shown = value(alice.client(), "select splitgraph.upstream(%s)::text", repo)
    assert alice.remote in shown and repo in shown, f"upstream() shows {shown}"
    assert check_integrity(reg, cluster, f"{dbname}_check") >= 3
    before = state(conn), state(reg)
    sql(alice.client(), "select splitgraph.push(%s)", repo)
    unchanged(before[0], state(conn), "the client")
    unchanged(before[1], state(reg), "the registry")


# ---------------------------------------------------------------------------------------------------------------
# Forbidden pushes
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("target", ["existing repository", "new repository", "no namespace"])
def test_pushing_into_another_namespace_is_refused_and_changes_nothing(conn, reg, alice, bob, published, target):
    """bob pushes his repository (its tag v1 on another image than alice's v1) to alice's repository, to a new
    repository of alice's namespace, or to a repository without namespace: 42501, and neither engine changes (no
    repository, image, tag or object on the registry; no upstream on the client)."""
    c = bob.client()
    repo = f"{bob.name}/push{next(_numbers)}"
    image = make_repository(c, repo, {"t": (12, "bob")}, chunk_size=5)
    sql(c, "select splitgraph.tag(%s, %s, 'v1')", repo, image)
    remote_repository = {"existing repository": published["repo"], "new repository": f"{alice.name}/planted",
                         "no namespace": f"planted{next(_numbers)}"}[target]
    before = state(conn), state(reg)
    error = attempt(c, "select splitgraph.push(%s, %s, %s)", repo, bob.remote, remote_repository)
    refused(error, f"bob's push to {remote_repository}")
    unchanged(before[1], state(reg), "the registry")
    unchanged(before[0], state(conn), "the client")
    assert upstream(conn, repo) == []


def test_set_upstream_of_another_roles_repository_is_refused(conn, alice, bob, published):
    """bob points alice's local repository at his remote: 42501, and its upstream stays alice's."""
    before = state(conn)
    refused(attempt(bob.client(), "select splitgraph.set_upstream(%s, %s, %s)", published["repo"], bob.remote,
                    f"{bob.name}/stolen"), "bob's set_upstream of alice's repository")
    unchanged(before, state(conn), "the client")
    assert upstream(conn, published["repo"]) == [(alice.remote, published["repo"])]


# ---------------------------------------------------------------------------------------------------------------
# Forbidden calls on the registry itself
# ---------------------------------------------------------------------------------------------------------------

CALLS = {
    "tag": ("select splitgraph.tag(%s, %s, 'bobs')", ("repo", "first")),
    "move a tag": ("select splitgraph.tag(%s, %s, 'v1')", ("repo", "second")),
    "delete_tag": ("select splitgraph.delete_tag(%s, 'v1')", ("repo",)),
    "branch": ("select splitgraph.branch(%s, 'bobs', %s)", ("repo", "first")),
    "delete_branch": ("select splitgraph.delete_branch(%s, 'dev')", ("repo",)),
    "delete_image": ("select splitgraph.delete_image(%s, %s)", ("repo", "second")),
    "rm": ("select splitgraph.rm(%s)", ("repo",)),
    "init": ("select splitgraph.init(%s || '/planted')", ("namespace",)),
}


@pytest.mark.parametrize("call", sorted(CALLS))
def test_calls_on_another_namespace_on_the_registry_are_refused(reg, alice, bob, published, call):
    """bob, logged in to the registry, tags, branches, deletes or creates in alice's namespace: 42501, and the
    registry does not change."""
    query, names = CALLS[call]
    args = [dict(published, namespace=alice.name)[n] for n in names]
    before = state(reg)
    refused(attempt(bob.registry(), query, *args), f"bob's {call} on {published['repo']}")
    unchanged(before, state(reg), "the registry")


@pytest.mark.parametrize("query", ["select count(*) from splitgraph_meta.images",
                                   "select count(*) from splitgraph_meta.objects",
                                   "update splitgraph_meta.images set comment = 'bob was here'",
                                   "delete from splitgraph_meta.tags"])
def test_no_role_reads_or_changes_the_registrys_metadata_directly(reg, bob, published, query):
    before = state(reg)
    refused(attempt(bob.registry(), query), f"bob's {query!r} on the registry")
    unchanged(before, state(reg), "the registry")


# ---------------------------------------------------------------------------------------------------------------
# grant_namespace / revoke_namespace
# ---------------------------------------------------------------------------------------------------------------

def test_a_granted_namespace_is_writable_until_revoked(conn, reg, bob, carol):
    """The owner grants namespace `team` to bob: bob pushes there and tags there on the registry; carol still
    gets 42501. Once revoked, bob's next push and tag get 42501 and change nothing."""
    team = f"team{next(_numbers)}"
    sql(reg, "select splitgraph.grant_namespace(%s, %s)", team, bob.name)
    c = bob.client()
    repo = f"{bob.name}/stuff{next(_numbers)}"
    image = make_repository(c, repo, {"t": (10, "team")})
    sql(c, "select splitgraph.push(%s, %s, %s)", repo, bob.remote, f"{team}/stuff")
    assert {i for i, _, _ in metadata(reg, f"{team}/stuff")["images"]} == \
        {i for i, _, _ in metadata(conn, repo)["images"]}
    sql(bob.registry(), "select splitgraph.tag(%s, %s, 'granted')", f"{team}/stuff", image)
    assert ("granted", image) in metadata(reg, f"{team}/stuff")["tags"]

    k = carol.client()
    other = f"{carol.name}/other{next(_numbers)}"
    make_repository(k, other, {"t": (10, "carol")})
    before = state(reg)
    refused(attempt(k, "select splitgraph.push(%s, %s, %s)", other, carol.remote, f"{team}/other"),
            "carol's push to a namespace granted to bob")
    refused(attempt(carol.registry(), "select splitgraph.tag(%s, %s, 'carol')", f"{team}/stuff", image),
            "carol's tag in a namespace granted to bob")
    unchanged(before, state(reg), "the registry")

    sql(reg, "select splitgraph.revoke_namespace(%s, %s)", team, bob.name)
    sql(c, f'insert into "{repo}".t values (1000, \'after revoke\')')
    sql(c, "select splitgraph.commit(%s)", repo)
    before = state(conn), state(reg)
    refused(attempt(c, "select splitgraph.push(%s)", repo), "bob's push after revoke_namespace")
    refused(attempt(bob.registry(), "select splitgraph.tag(%s, %s, 'revoked')", f"{team}/stuff", image),
            "bob's tag after revoke_namespace")
    refused(attempt(bob.registry(), "select splitgraph.delete_tag(%s, 'granted')", f"{team}/stuff"),
            "bob's delete_tag after revoke_namespace")
    unchanged(before[1], state(reg), "the registry")
    unchanged(before[0], state(conn), "the client")


def test_only_the_owner_grants_or_revokes_namespaces(conn, reg, bob, carol):
    """bob grants his own namespace, or a new one, to carol or himself, or revokes: 42501 each time, nothing changes,
    and carol still cannot push to bob's namespace."""
    before = state(reg)
    for query, args in [("select splitgraph.grant_namespace(%s, %s)", (bob.name, carol.name)),
                        ("select splitgraph.grant_namespace(%s, %s)", (f"team{next(_numbers)}", bob.name)),
                        ("select splitgraph.grant_namespace(%s, %s)", (carol.name, bob.name)),
                        ("select splitgraph.revoke_namespace(%s, %s)", (bob.name, bob.name))]:
        refused(attempt(bob.registry(), query, *args), f"bob's {query % args}")
    unchanged(before, state(reg), "the registry")
    k = carol.client()
    repo = f"{carol.name}/try{next(_numbers)}"
    make_repository(k, repo, {"t": (5, "c")})
    refused(attempt(k, "select splitgraph.push(%s, %s, %s)", repo, carol.remote, f"{bob.name}/fromcarol"),
            "carol's push to bob's namespace")
    unchanged(before, state(reg), "the registry")


# ---------------------------------------------------------------------------------------------------------------
# Objects and images the registry has, sent again with other metadata
# ---------------------------------------------------------------------------------------------------------------

def registry_record(reg, published):
    """What the registry holds of alice's repository: its metadata and the full rows of its objects' metadata."""
    objects = objects_of_repository(reg, published["repo"])
    return {"metadata": metadata(reg, published["repo"]),
            "objects": sql(reg, "select t::text from splitgraph_meta.objects t where object_id = any(%s) "
                                "order by object_id", objects)}


@pytest.mark.parametrize("forged", ["object metadata", "object rows", "image metadata"])
def test_pushing_what_the_registry_has_with_other_metadata_overwrites_nothing(reg, cluster, dbname, alice, bob,
                                                                             published, forged):
    """bob clones alice/data into another client engine as his own repository, then (as that engine's
    administrator: the client is his) forges an object's metadata (namespace, index, counts), an object's rows,
    or an image's comment, and pushes it to his namespace. Whether or not that push is accepted, alice's
    repository, its objects' metadata and rows on the registry stay as they were (every object re-hashes to its
    id)."""
    db = other_client_db(cluster, dbname)
    c = bob.client(db)
    remote = bob.add_remote(c, f"reg_{bob.name}_{next(_numbers)}")
    copy = f"{bob.name}/copy{next(_numbers)}"
    sql(c, "select splitgraph.clone(%s, %s, %s, download_all => true)", remote, published["repo"], copy)
    first_object = objects_of_repository(reg, published["repo"])[0]
    with connect(cluster.dsn(db)) as admin:
        if forged == "object metadata":
            sql(admin, """update splitgraph_meta.objects set namespace = %s,
                              index = '{"range": {"id": [-1000, 1000]}}', rows_inserted = rows_inserted + 1
                          where object_id = %s""", bob.name, first_object)
        elif forged == "object rows":
            sql(admin, pgsql.SQL("update {} set v = 'forged by bob'").format(
                pgsql.Identifier("splitgraph_meta", first_object)))
        else:
            sql(admin, "update splitgraph_meta.images set comment = 'forged by bob' where repository = %s "
                       "and image_hash = any(%s)", copy, [published["first"], published["second"]])
    before = registry_record(reg, published)
    error = attempt(c, "select splitgraph.push(%s, %s, %s)", copy, remote, copy)
    assert registry_record(reg, published) == before, f"bob's push changed alice's repository ({error})"
    assert first_object in stored_objects(reg)
    check_integrity(reg, cluster, f"{dbname}_check")


def test_the_registry_keeps_object_metadata_computed_from_the_rows_not_the_pushers(reg, cluster, dbname, alice,
                                                                                    bob):
    """bob, administrator of his own client engine, forges the index (range) of an object there and pushes it
    first; alice later pushes the same rows (the same object id) from her engine. The registry's metadata of that
    object is what its rows give (alice's, computed by her engine), not bob's forgery: no role poisons the metadata
    of an object another namespace will use."""
    db = other_client_db(cluster, dbname)
    c = bob.client(db)
    remote = bob.add_remote(c, f"reg_{bob.name}_{next(_numbers)}")
    rows = {"t": (12, f"poison{next(_numbers)}")}
    theirs = f"{bob.name}/poison{next(_numbers)}"
    image = make_repository(c, theirs, rows)
    with connect(cluster.dsn(db)) as admin:
        (poisoned,) = value(admin, "select object_ids from splitgraph_meta.tables where repository = %s "
                                   "and image_hash = %s", theirs, image)
        sql(admin, """update splitgraph_meta.objects set index = '{"range": {"id": [500, 600]}}'
                      where object_id = %s""", poisoned)
    attempt(c, "select splitgraph.push(%s, %s)", theirs, remote)
    a = alice.client()
    mine = f"{alice.name}/poison{next(_numbers)}"
    make_repository(a, mine, rows)
    sql(a, "select splitgraph.push(%s, %s)", mine, alice.remote)
    assert objects_of_repository(reg, mine) == [poisoned]
    fields = "rows_inserted, rows_deleted, insertion_hash, deletion_hash, index::text"
    true_metadata = sql(a, f"select {fields} from splitgraph.object_info(%s) i(x) "
                           "cross join lateral jsonb_to_record(x) as r(rows_inserted bigint, rows_deleted bigint, "
                           "insertion_hash text, deletion_hash text, index jsonb)", poisoned)
    assert sql(reg, f"select {fields} from splitgraph_meta.objects where object_id = %s", poisoned) == true_metadata


def test_an_image_hash_pushed_again_with_other_metadata_is_not_overwritten(reg, cluster, dbname, alice, published):
    """alice clones her own repository into another client engine, forges the comment and parent of an image
    there (as that engine's administrator) and pushes back: the registry keeps the image as it was first pushed
    (an image is immutable); a push that is refused changes nothing at all."""
    db = other_client_db(cluster, dbname)
    c = alice.client(db)
    remote = alice.add_remote(c, f"reg_{alice.name}_{next(_numbers)}")
    repo = published["repo"]
    sql(c, "select splitgraph.clone(%s, %s, download_all => true)", remote, repo)
    with connect(cluster.dsn(db)) as admin:
        sql(admin, "update splitgraph_meta.images set comment = 'rewritten', parent_id = null "
                   "where repository = %s and image_hash = %s", repo, published["second"])
    before = state(reg)
    kept = metadata(reg, repo)
    error = attempt(c, "select splitgraph.push(%s)", repo)
    assert metadata(reg, repo) == kept, f"the push rewrote an image ({error})"
    if error is not None:
        unchanged(before, state(reg), "the registry")
