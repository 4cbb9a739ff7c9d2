"""Tags and branches: names for images. A branch moves forward when a checkout of it commits."""
from . import db, errors, meta, names
from .declare import api


def _name_taken(plpy, repo, name):
    return db.one(plpy, """
        select 'tag' as kind from splitgraph_meta.tags where repository = $1 and tag = $2
        union all
        select 'branch' from splitgraph_meta.branches where repository = $1 and branch = $2""", repo, name)


@api("tag(repository text, image text, tag text) returns void",
     "tag(repository, image, tag): give the image a name; a tag that exists moves to the image")
def tag(plpy, repository, image, tag):
    repo = meta.writable(plpy, repository)
    tag = names.tag(plpy, tag)
    taken = _name_taken(plpy, repo, tag)
    if taken is not None and taken["kind"] == "branch":
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{tag}" is already a branch of repository "{repo}"',
                    hint="tags and branches share one set of names; choose another tag")
    image_hash, _ = meta.resolve(plpy, repo, image)
    db.run(plpy, """insert into splitgraph_meta.tags (repository, tag, image_hash) values ($1, $2, $3)
                    on conflict (repository, tag) do update set image_hash = excluded.image_hash""",
           repo, tag, image_hash)


@api("delete_tag(repository text, tag text) returns void",
     "delete_tag(repository, tag): remove a tag (the image stays)")
def delete_tag(plpy, repository, tag):
    repo = meta.writable(plpy, repository)
    deleted = db.run(plpy, "delete from splitgraph_meta.tags where repository = $1 and tag = $2 returning tag",
                     repo, tag)
    if not deleted.nrows():
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'tag "{tag}" not found in repository "{repo}"')


@api("branch(repository text, name text, image text default 'HEAD') returns void",
     "branch(repository, name, image = HEAD): create a branch at the image; check it out to move it forward with "
     "commits")
def branch(plpy, repository, name, image):
    repo = meta.writable(plpy, repository)
    name = names.branch(plpy, name)
    taken = _name_taken(plpy, repo, name)
    if taken is not None:
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{name}" is already a {taken["kind"]} of repository "{repo}"',
                    hint="choose another name" + (", or delete the branch first" if taken["kind"] == "branch" else ""))
    image_hash, _ = meta.resolve(plpy, repo, image)
    db.run(plpy, "insert into splitgraph_meta.branches (repository, branch, image_hash) values ($1, $2, $3)",
           repo, name, image_hash)


@api("delete_branch(repository text, name text) returns void",
     "delete_branch(repository, name): remove a branch (its images stay); refused for the checked-out branch")
def delete_branch(plpy, repository, name):
    repo = meta.writable(plpy, repository)
    state = meta.checkout_state(plpy, repo)
    if state is not None and state["branch"] == name:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'branch "{name}" is checked out in repository "{repo}"',
                    hint="check out another branch or image first")
    deleted = db.run(plpy, """delete from splitgraph_meta.branches where repository = $1 and branch = $2
                              returning branch""", repo, name)
    if not deleted.nrows():
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'branch "{name}" not found in repository "{repo}"')


@api("branches(repository text) returns table (branch text, image_hash text, current boolean)",
     "branches(repository): every branch, its head image and whether the checkout follows it",
     volatility="stable")
def branches(plpy, repository):
    repo = meta.require(plpy, repository)
    return db.run(plpy, """
        select b.branch, b.image_hash, coalesce(c.branch = b.branch, false) as current
        from splitgraph_meta.branches b
        left join splitgraph_meta.checkouts c on c.repository = b.repository
        where b.repository = $1 order by b.branch""", repo)
