"""Issue 9, destructive calls have a safety catch: rm refuses pending changes without force (55000), an import
into a repository that is not checked out leaves no image unreachable, delete_image refuses (55000) an image that
another branch or a tag still needs without force, and prune says (NOTICE) which images it deleted."""
import pytest

from conftest import fails
from support.integrity import Notices, connect, one, run


@pytest.fixture
def db(cluster, dbname):
    c = connect(cluster, dbname)
    yield c
    c.close()


def make_repo(db, repo):
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f'create table "{repo}".t (id int primary key, v text)')
    run(db, f"insert into \"{repo}\".t values (1, %s)", repo)
    return one(db, "select splitgraph.commit(%s)", repo)


def images(db, repo):
    return {r[0] for r in run(db, "select image_hash from splitgraph.images(%s)", repo)}


def branches(db, repo):
    return dict(run(db, "select branch, image_hash from splitgraph.branches(%s)", repo))


def tags(db, repo):
    return dict(run(db, "select tag, image_hash from splitgraph_meta.tags where repository = %s", repo))


@pytest.mark.parametrize("pending", ["new row", "new table"])
def test_rm_refuses_pending_changes_without_force(db, pending):
    repo = "d/rm-" + pending.split()[1]
    make_repo(db, repo)
    if pending == "new row":
        run(db, f"insert into \"{repo}\".t values (2, 'not committed')")
    else:
        run(db, f'create table "{repo}".u (x int)')
    fails(db, "select splitgraph.rm(%s)", repo, sqlstate="55000")
    assert one(db, "select count(*) from splitgraph.repositories() where repository = %s", repo) == 1
    assert one(db, "select count(*) from pg_namespace where nspname = %s", repo) == 1, "the checkout is still there"
    run(db, "select splitgraph.rm(%s, force => true)", repo)
    assert one(db, "select count(*) from splitgraph.repositories() where repository = %s", repo) == 0


def test_import_into_a_repository_not_checked_out_leaves_no_image_unreachable(db):
    make_repo(db, "d/source")
    target = "d/target"
    make_repo(db, target)
    run(db, "select splitgraph.uncheckout(%s)", target)
    imported = one(db, "select splitgraph.import_table('d/source', 't', %s, 'imported')", target)
    assert branches(db, target).get("main") == imported, "the import moves branch main"
    pruned = one(db, "select splitgraph.prune(%s)", target)
    assert imported in images(db, target), "prune deleted the import"
    assert pruned == 0


def test_delete_image_refuses_another_branch_head_without_force(db):
    repo = "d/branches"
    base = make_repo(db, repo)
    run(db, "select splitgraph.branch(%s, 'feature', %s)", repo, base)
    run(db, "select splitgraph.checkout(%s, 'feature')", repo)
    run(db, f"insert into \"{repo}\".t values (2, 'on feature')")
    middle = one(db, "select splitgraph.commit(%s)", repo)
    run(db, f"insert into \"{repo}\".t values (3, 'still on feature')")
    head = one(db, "select splitgraph.commit(%s)", repo)
    run(db, "select splitgraph.checkout(%s, 'main')", repo)
    before = images(db, repo), branches(db, repo)
    assert before[1]["feature"] == head
    fails(db, "select splitgraph.delete_image(%s, %s)", repo, head, sqlstate="55000")
    fails(db, "select splitgraph.delete_image(%s, %s)", repo, middle, sqlstate="55000")
    assert (images(db, repo), branches(db, repo)) == before, "nothing was deleted"
    assert one(db, "select splitgraph.delete_image(%s, %s, force => true)", repo, middle) == 2
    assert "feature" not in branches(db, repo)


def test_delete_image_refuses_a_tagged_image_without_force(db):
    repo = "d/tagged"
    base = make_repo(db, repo)
    run(db, "select splitgraph.checkout(%s, %s)", repo, base)      # detached
    run(db, f"insert into \"{repo}\".t values (2, 'detached')")
    kept = one(db, "select splitgraph.commit(%s)", repo)
    run(db, "select splitgraph.tag(%s, %s, 'keep')", repo, kept)
    run(db, "select splitgraph.checkout(%s, 'main')", repo)
    fails(db, "select splitgraph.delete_image(%s, %s)", repo, kept, sqlstate="55000")
    assert kept in images(db, repo) and tags(db, repo).get("keep") == kept
    run(db, "select splitgraph.delete_image(%s, %s, force => true)", repo, kept)
    assert kept not in images(db, repo)


def test_prune_lists_what_it_deletes(cluster, dbname):
    db = connect(cluster, dbname)
    try:
        repo = "d/prune"
        base = make_repo(db, repo)
        run(db, "select splitgraph.checkout(%s, %s)", repo, base)
        run(db, f"insert into \"{repo}\".t values (2, 'detached')")
        detached = one(db, "select splitgraph.commit(%s)", repo)
        run(db, "select splitgraph.checkout(%s, 'main')", repo)
        run(db, "set client_min_messages = notice")
        notices = Notices(db)
        assert one(db, "select splitgraph.prune(%s)", repo) == 1
        assert detached not in images(db, repo)
        assert any(detached[:8] in m for m in notices.messages), f"no NOTICE names the pruned image: {notices.messages}"
    finally:
        db.close()
