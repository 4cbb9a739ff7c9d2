"""Tags and branches: names for images. A branch moves forward when a checkout of it commits."""
from . import db, errors, meta, names


def _name_taken(plpy, repo, name):
    return db.one(plpy, """
        select 'tag' as kind from splitgraph_meta.tags where repository = $1 and tag = $2
        union all
        select 'branch' from splitgraph_meta.branches where repository = $1 and branch = $2""", repo, name)


def tag(plpy, repository, image, tag_name):
    repo = meta.writable(plpy, repository)
    tag_name = names.tag(plpy, tag_name)
    taken = _name_taken(plpy, repo, tag_name)
    if taken is not None and taken["kind"] == "branch":
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{tag_name}" is already a branch of repository "{repo}"',
                    hint="tags and branches share one set of names; choose another tag")
    image_hash, _ = meta.resolve(plpy, repo, image)
    db.run(plpy, """insert into splitgraph_meta.tags (repository, tag, image_hash) values ($1, $2, $3)
                    on conflict (repository, tag) do update set image_hash = excluded.image_hash""",
           repo, tag_name, image_hash)


def delete_tag(plpy, repository, tag_name):
    repo = meta.writable(plpy, repository)
    deleted = db.run(plpy, "delete from splitgraph_meta.tags where repository = $1 and tag = $2 returning tag",
                     repo, tag_name)
    if not deleted.nrows():
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'tag "{tag_name}" not found in repository "{repo}"')


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


def branches(plpy, repository):
    repo = meta.require(plpy, repository)
    return db.run(plpy, """
        select b.branch, b.image_hash, coalesce(c.branch = b.branch, false) as current
        from splitgraph_meta.branches b
        left join splitgraph_meta.checkouts c on c.repository = b.repository
        where b.repository = $1 order by b.branch""", repo)
