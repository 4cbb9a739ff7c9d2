"""Repository metadata: existence, locks, write rights, the checkout state and image references."""
import json
import re
import secrets
from typing import NamedTuple

from . import db, errors, names

ROOT = "0" * 64
# Members of this role may mount and add remotes (both reach hosts and ports the database server reaches).
MOUNT_ROLE = "splitgraph_mount"
_PREFIX = re.compile(r"[0-9a-f]{4,64}")


def lock(plpy, repo):
    """Serialize calls that change one repository: a lock on its row, held until the transaction ends (a row
    lock needs UPDATE on the extension's table, so no other role can take it and stall the repository).
    Returns whether the repository (still) exists."""
    return bool(db.column(plpy, "select repository from splitgraph_meta.repositories where repository = $1 "
                                "for update", repo))


def exists(plpy, repo):
    return db.scalar(plpy, "select exists (select from splitgraph_meta.repositories where repository = $1)", repo)


def require(plpy, repository):
    """A valid name of an existing repository."""
    repo = names.repository(plpy, repository)
    if not exists(plpy, repo):
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'repository "{repo}" does not exist',
                    hint="create it with splitgraph.init, or clone it from a remote")
    return repo


def caller_is_admin(plpy):
    """Superusers and the extension's owner may do anything."""
    return db.scalar(plpy, """
        select r.rolsuper or pg_catalog.pg_has_role(session_user, e.extowner, 'MEMBER')
        from pg_catalog.pg_roles r, pg_catalog.pg_extension e
        where r.rolname = session_user and e.extname = 'splitgraph'""")


def function_fits(plpy, function, argument_types, result_type):
    """Of a function (a regprocedure) an administrator registers: fits, whether it is a plain function of exactly
    argument_types (type names) returning one result_type; trusted, whether its owner is a superuser (who else
    could change its body later, while it runs as whoever calls it); owner, that role's name."""
    # proargtypes is an oidvector (its subscripts start at 0): compare it as one.
    return db.one(plpy, """
        select p.prokind = 'f'
               and p.proargtypes = pg_catalog.array_to_string($2::regtype[]::oid[], ' ')::oidvector
               and p.prorettype = $3::regtype and not p.proretset as fits,
               o.rolsuper as trusted, o.rolname::text as owner
        from pg_catalog.pg_proc p join pg_catalog.pg_roles o on o.oid = p.proowner
        where p.oid = $1::regprocedure""", function, argument_types, result_type)


def may_write_namespace(plpy, namespace):
    """Whether the caller (session_user) may write to a namespace: an administrator, a role writing the
    namespace named like it, or one an administrator granted the namespace to (grant_namespace)."""
    if caller_is_admin(plpy):
        return True
    return bool(namespace) and db.scalar(plpy, """
        select $1 = session_user::text
               or exists (select from splitgraph_meta.namespace_grants g
                          where g.namespace = $1 and g.role = session_user::text)""", namespace)


def may_write(plpy, repo):
    """Whether the caller (session_user) may write the repository (may_write_namespace of its namespace)."""
    return may_write_namespace(plpy, names.namespace_of(repo))


def check_write(plpy, repo):
    """Other roles write only to repositories whose namespace is their role name, or was granted to them."""
    if not may_write(plpy, repo):
        user = db.scalar(plpy, "select session_user::text")
        name = repo.split("/", 1)[-1]
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'role "{user}" may not change repository "{repo}"',
                    hint=f"a role writes to repositories of the namespace named like it (e.g. {user}/{name}) and "
                         "of namespaces an administrator granted it (splitgraph.grant_namespace)")


def acting_role(plpy, role):
    """The role a mount (or a remote) is made for: the caller's current_user, which the session's user must be
    able to become (SET ROLE)."""
    if role is None or not db.scalar(plpy, """select pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER')
                                              from pg_catalog.pg_roles r where r.rolname = $1""", role):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f"the session's user cannot act as role {role!r}")
    return role


def check_mount_privilege(plpy, role, action="mount"):
    """Mounting (and adding a remote: both reach hosts and ports the database server reaches) is for superusers,
    the extension's owner and members of splitgraph_mount."""
    allowed = db.scalar(plpy, """
        select r.rolsuper or pg_catalog.pg_has_role(r.oid, e.extowner, 'MEMBER')
               or coalesce(pg_catalog.pg_has_role(r.oid, m.oid, 'USAGE'), false)
        from pg_catalog.pg_roles r
        cross join pg_catalog.pg_extension e
        left join pg_catalog.pg_roles m on m.rolname = $2
        where r.rolname = $1 and e.extname = 'splitgraph'""", role, MOUNT_ROLE)
    if not allowed:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'role "{role}" may not {action}: it needs role {MOUNT_ROLE}',
                    hint=f"ask an administrator to GRANT {MOUNT_ROLE} TO {names.ident(role)}")


def writable(plpy, repository, must_exist=True):
    """Validate, check rights and lock: the start of every call that changes a repository."""
    repo = require(plpy, repository) if must_exist else names.repository(plpy, repository)
    check_write(plpy, repo)
    if must_exist and not lock(plpy, repo):
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'repository "{repo}" does not exist',
                    hint="it was deleted by a concurrent call")
    return repo


def checkout_state(plpy, repo):
    """The checkout row (image_hash, branch, layered), or None when the repository is not checked out."""
    return db.one(plpy, "select image_hash, branch, layered from splitgraph_meta.checkouts where repository = $1",
                  repo)


def repository_of_schema(plpy, schema):
    """The checked-out repository whose checkout is this schema, if any."""
    return db.scalar(plpy, "select repository from splitgraph_meta.checkouts where left(repository, 63) = $1", schema)


def require_checkout(plpy, repo):
    state = checkout_state(plpy, repo)
    if state is None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f'repository "{repo}" is not checked out',
                    hint="check out an image first with splitgraph.checkout")
    return state


def resolve(plpy, repo, ref):
    """(image hash, branch name or None) of an image reference: a 64-digit hash, HEAD, latest, a tag, a branch
    or a unique hash prefix of at least 4 digits. A name that is both a tag (or branch) and a prefix of the hash
    of another image is ambiguous (21000): a tag never silently shadows a hash."""
    if ref is None:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "image reference must not be null")
    if ref == "HEAD":
        return require_checkout(plpy, repo)["image_hash"], None
    if ref == "latest":
        return db.scalar(plpy, """select image_hash from splitgraph_meta.images where repository = $1
                                  order by created desc, seq desc limit 1""", repo), None
    named = db.one(plpy, """
        select image_hash, null::text as branch from splitgraph_meta.tags where repository = $1 and tag = $2
        union all
        select image_hash, branch from splitgraph_meta.branches where repository = $1 and branch = $2""", repo, ref)
    found = []
    candidate = ref.lower()
    if _PREFIX.fullmatch(candidate):
        found = db.column(plpy, """select image_hash from splitgraph_meta.images
                                   where repository = $1 and image_hash like $2 || '%' order by image_hash limit 3""",
                          repo, candidate)
    if named is not None:
        if any(h != named["image_hash"] for h in found):
            kind = "tag" if named["branch"] is None else "branch"
            errors.fail(plpy, errors.CARDINALITY_VIOLATION,
                        f'image reference "{ref}" is ambiguous in repository "{repo}": it is a {kind} and a hash '
                        "prefix", detail=f"the {kind} points at {named['image_hash']}; the prefix matches "
                        + ", ".join(found) + (" and more" if len(found) > 2 else ""),
                        hint="give the full hash of the image you mean")
        return named["image_hash"], named["branch"]
    if len(found) == 1:
        return found[0], None
    if len(found) > 1:
        errors.fail(plpy, errors.CARDINALITY_VIOLATION,
                    f'image reference "{ref}" is ambiguous in repository "{repo}"',
                    detail="it matches " + ", ".join(found) + (" and more" if len(found) > 2 else ""),
                    hint="give more digits of the hash")
    errors.fail(plpy, errors.UNDEFINED_OBJECT, f'image "{ref}" not found in repository "{repo}"',
                hint="give a hash (or a prefix of 4+ digits), a tag, a branch, latest or HEAD")


class TableVersion(NamedTuple):
    """A table of an image: its stored schema (a list of [ordinal, name, type, is_pk, comment, collation?]), the
    object ids that build it, in apply order, and its definition (storage types of columns, defaults,
    constraints, indexes...: see definitions.py), or None."""
    spec: list
    object_ids: list
    definition: dict = None


def image_tables(plpy, repo, image_hash):
    """Tables of an image: name -> TableVersion."""
    rows = db.run(plpy, """select table_name, table_schema::text as table_schema, object_ids,
                                  table_definition::text as table_definition
                           from splitgraph_meta.tables where repository = $1 and image_hash = $2
                           order by table_name""", repo, image_hash)
    return {r["table_name"]: TableVersion(json.loads(r["table_schema"]), list(r["object_ids"]),
                                          json.loads(r["table_definition"]) if r["table_definition"] else None)
            for r in rows}


def parents_of(alias):
    """A LATERAL FROM item p (parent_id): the parents of the image {alias}.image_hash of repository $1, its first
    parent and, for a merge image, the image it merged in."""
    return f"""lateral (select i.parent_id from splitgraph_meta.images i
                        where i.repository = $1 and i.image_hash = {alias}.image_hash and i.parent_id is not null
                        union all
                        select m.parent_id from splitgraph_meta.merge_parents m
                        where m.repository = $1 and m.image_hash = {alias}.image_hash) p"""


def children_of(alias):
    """A LATERAL FROM item p (image_hash): the images of repository $1 made from {alias}.image_hash, as their first
    parent or as the image a merge merged in."""
    return f"""lateral (select i.image_hash from splitgraph_meta.images i
                        where i.repository = $1 and i.parent_id = {alias}.image_hash
                        union all
                        select m.image_hash from splitgraph_meta.merge_parents m
                        where m.repository = $1 and m.parent_id = {alias}.image_hash) p"""


def new_image(plpy, repo, parent, comment, with_parent_tables=False, image_hash=None, provenance=None, merged=None):
    """Register a new image on top of `parent`, with hash image_hash (a Splitfile step's derived hash) or a
    random one, and its provenance (a list, or None); with_parent_tables gives it every table of the parent,
    unchanged; `merged` is the second parent of a merge image. Returns its hash."""
    image_hash = image_hash or secrets.token_hex(32)
    db.run(plpy, """insert into splitgraph_meta.images (repository, image_hash, parent_id, comment, provenance)
                    values ($1, $2, $3, $4, $5::jsonb)""", repo, image_hash, parent, comment,
           None if provenance is None else json.dumps(provenance))
    if merged is not None:
        db.run(plpy, """insert into splitgraph_meta.merge_parents (repository, image_hash, parent_id)
                        values ($1, $2, $3)""", repo, image_hash, merged)
    if with_parent_tables:
        db.run(plpy, """insert into splitgraph_meta.tables (repository, image_hash, table_name, table_schema,
                                                            object_ids, table_definition)
                        select repository, $2, table_name, table_schema, object_ids, table_definition
                        from splitgraph_meta.tables
                        where repository = $1 and image_hash = $3""", repo, image_hash, parent)
    return image_hash


def add_table(plpy, repo, image_hash, table, spec, object_ids, definition=None):
    """A table of an image: its schema (list of [ordinal, name, type, is_pk, ...]), fragments in order and
    definition (or None)."""
    db.run(plpy, """insert into splitgraph_meta.tables (repository, image_hash, table_name, table_schema, object_ids,
                                                        table_definition)
                    values ($1, $2, $3, $4::jsonb, $5::text[], $6::jsonb)""", repo, image_hash, table,
           json.dumps(spec), object_ids, None if definition is None else json.dumps(definition))


def move_head(plpy, repo, state, image_hash, detach=False):
    """Point the checkout (state: checkout_state) at image_hash, and its branch too when it is on one, unless
    detach: then the checkout follows no branch any more, and no branch moves."""
    db.run(plpy, "update splitgraph_meta.checkouts set image_hash = $2, "
                 "branch = case when $3 then null else branch end where repository = $1",
           repo, image_hash, bool(detach))
    if state["branch"] is not None and not detach:
        db.run(plpy, "update splitgraph_meta.branches set image_hash = $3 where repository = $1 and branch = $2",
               repo, state["branch"], image_hash)
