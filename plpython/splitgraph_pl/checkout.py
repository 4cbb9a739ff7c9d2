"""Checkouts: materializing an image into the repository's schema, and removing it."""
from . import db, fragments, meta, names, repositories
from . import tables as tbl


def _clear(plpy, repo, state):
    """Drop the versioned tables of the checkout (or the views of a layered one)."""
    schema = names.schema_of(repo)
    if state is not None and state["layered"]:
        for table in meta.image_tables(plpy, repo, state["image_hash"]):
            plpy.execute(f"drop view if exists {names.qualified(schema, table)} cascade")
    for table in tbl.list_tables(plpy, schema):
        plpy.execute(f"drop table if exists {names.qualified(schema, table)} cascade")


def checkout(plpy, repository, image, force=False, layered=False):
    repo = meta.writable(plpy, repository)
    image_hash, branch = meta.resolve(plpy, repo, image)
    state = meta.checkout_state(plpy, repo)
    _clear(plpy, repo, state)
    schema = repositories.create_schema(plpy, repo)
    admin = meta.caller_is_admin(plpy)
    tables = meta.image_tables(plpy, repo, image_hash)
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
        db.notice(plpy, f'checked out table "{table}" ({n}/{len(tables)}): {len(object_ids)} object(s)')
    db.run(plpy, """insert into splitgraph_meta.checkouts (repository, image_hash, branch, layered)
                    values ($1, $2, $3, $4)
                    on conflict (repository) do update
                    set image_hash = excluded.image_hash, branch = excluded.branch, layered = excluded.layered""",
           repo, image_hash, branch, bool(layered))
    return image_hash


def uncheckout(plpy, repository, force=False):
    repo = meta.writable(plpy, repository)
    if meta.checkout_state(plpy, repo) is None:
        db.notice(plpy, f'repository "{repo}" is not checked out')
        return
    plpy.execute(f"drop schema if exists {names.ident(names.schema_of(repo))} cascade")
    db.run(plpy, "delete from splitgraph_meta.checkouts where repository = $1", repo)
