"""Checkouts: materializing an image into the repository's schema, and removing it."""
from . import db, diffs, errors, fragments, meta, names, repositories, tracking
from . import tables as tbl
from .declare import api


def _clear(plpy, repo, state):
    """Drop the versioned tables of the checkout (or the views of a layered one), and their logs."""
    schema = names.schema_of(repo)
    tracking.forget_schema(plpy, schema)
    if state is not None and state["layered"]:
        for table in meta.image_tables(plpy, repo, state["image_hash"]):
            plpy.execute(f"drop view if exists {names.qualified(schema, table)} cascade")
    for table in tbl.list_tables(plpy, schema):
        plpy.execute(f"drop table if exists {names.qualified(schema, table)} cascade")


def refuse_pending(plpy, repo, force):
    """Unless forced, a call that would throw away pending changes is refused, naming a changed table. The
    checkout's tables are locked first, so a writer still open is waited for, and its changes count."""
    schema = names.schema_of(repo)
    tables = tbl.list_tables(plpy, schema)
    if tables:
        plpy.execute("lock table " + ", ".join(names.qualified(schema, t) for t in tables)
                     + " in access exclusive mode")
    if force:
        return
    changed = diffs.changed_tables_of(plpy, repo)
    if changed:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'repository "{repo}" has pending changes in table "{changed[0]}"; '
                    "commit them, reset them or pass force => true")


def materialize_image(plpy, repo, image_hash, layered=False, only=None):
    """Create the tables of an image in the checkout schema (all, or those named in `only`) and track them."""
    schema = repositories.create_schema(plpy, repo)
    admin = meta.caller_is_admin(plpy)
    tables = meta.image_tables(plpy, repo, image_hash)
    if only is not None:
        tables = {t: v for t, v in tables.items() if t in only}
    for n, (table, (spec, object_ids)) in enumerate(tables.items(), 1):
        cols = tbl.from_spec(plpy, spec)
        if not admin:
            tbl.check_trusted_types(plpy, table, cols)
        if layered:
            fragments.layered_view(plpy, schema, table, cols, object_ids)
        else:
            fragments.materialize(plpy, schema, table, cols, object_ids)
        kind = "view" if layered else "table"
        if not admin:
            plpy.execute(f"alter {kind} {names.qualified(schema, table)} owner to session_user")
        plpy.execute(f"grant select on {names.qualified(schema, table)} to public")
        if not layered:
            tracking.track(plpy, schema, table)
        db.notice(plpy, f'checked out table "{table}" ({n}/{len(tables)}): {len(object_ids)} object(s)')


@api("checkout(repository text, image text, force boolean default false, layered boolean default false) returns "
     "text",
     "checkout(repository, image, force, layered): replace the checkout with the image (hash, prefix, tag, "
     "branch, latest, HEAD) and return its hash; a branch is followed by later commits, anything else is "
     "detached; layered makes read-only views over the fragments instead of tables")
def checkout(plpy, repository, image, force=False, layered=False):
    repo = meta.writable(plpy, repository)
    image_hash, branch = meta.resolve(plpy, repo, image)
    state = meta.checkout_state(plpy, repo)
    if state is not None:
        refuse_pending(plpy, repo, force)
    _clear(plpy, repo, state)
    materialize_image(plpy, repo, image_hash, layered)
    db.run(plpy, """insert into splitgraph_meta.checkouts (repository, image_hash, branch, layered)
                    values ($1, $2, $3, $4)
                    on conflict (repository) do update
                    set image_hash = excluded.image_hash, branch = excluded.branch, layered = excluded.layered""",
           repo, image_hash, branch, bool(layered))
    return image_hash


@api("uncheckout(repository text, force boolean default false) returns void",
     "uncheckout(repository, force): drop the checkout schema and forget HEAD; every image stays")
def uncheckout(plpy, repository, force=False):
    repo = meta.writable(plpy, repository)
    if meta.checkout_state(plpy, repo) is None:
        db.notice(plpy, f'repository "{repo}" is not checked out')
        return
    refuse_pending(plpy, repo, force)
    tracking.forget_schema(plpy, names.schema_of(repo))
    plpy.execute(f"drop schema if exists {names.ident(names.schema_of(repo))} cascade")
    db.run(plpy, "delete from splitgraph_meta.checkouts where repository = $1", repo)
