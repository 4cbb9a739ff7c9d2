"""Checkouts: materializing an image into the repository's schema, resetting it to HEAD, and removing it."""
from . import db, errors, fragments, meta, names, pending, tracking
from . import tables as tbl
from .declare import api
from .names import ident


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
    changed = pending.changed_tables_of(plpy, repo)
    if changed:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'repository "{repo}" has pending changes in table "{changed[0]}"; '
                    "commit them, reset them or pass force => true")


def materialize_image(plpy, repo, image_hash, layered=False, only=None):
    """Create the tables of an image in the checkout schema (all, or those named in `only`) and track them."""
    schema = create_schema(plpy, repo)
    admin = meta.caller_is_admin(plpy)
    tables = meta.image_tables(plpy, repo, image_hash)
    if only is not None:
        tables = {t: v for t, v in tables.items() if t in only}
    for n, (table, version) in enumerate(tables.items(), 1):
        object_ids = version.object_ids
        cols = tbl.from_spec(plpy, version.spec)
        if not admin:
            tbl.check_trusted_types(plpy, table, cols)
        if layered:
            # the view stays the extension's: it reads object tables, which only the extension may read
            fragments.layered_view(plpy, schema, table, cols, object_ids)
        else:
            fragments.materialize(plpy, schema, table, cols, object_ids)
            if not admin:
                plpy.execute(f"alter table {names.qualified(schema, table)} owner to session_user")
        plpy.execute(f"grant select on {names.qualified(schema, table)} to public")
        if layered and not admin:
            # the repository's writer is told why a write fails (by the view's trigger), not just refused
            plpy.execute(f"grant insert, update, delete on {names.qualified(schema, table)} to session_user")
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
    create_schema(plpy, repo)  # first: a schema the extension did not make is refused before anything is touched
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
     "uncheckout(repository, force): drop the checkout schema and forget HEAD; every image stays; unless force, "
     "refused with pending changes or when objects outside the schema depend on it (force drops them too)")
def uncheckout(plpy, repository, force=False):
    repo = meta.writable(plpy, repository)
    if meta.checkout_state(plpy, repo) is None:
        db.notice(plpy, f'repository "{repo}" is not checked out')
        return
    drop_schema(plpy, repo, force)
    db.run(plpy, "delete from splitgraph_meta.checkouts where repository = $1", repo)


def _made_here(plpy, repo, name, oid):
    """Whether the existing schema `name` (its oid) is the one the extension made for repo's checkout: the one
    it recorded, or, when no oid is recorded (a restored dump gives schemas new oids, and the record is not
    dumped), the schema of a checkout the dump restored, owned by the repository's role or an administrator."""
    recorded = db.scalar(plpy, "select schema_oid::bigint from splitgraph_meta.checkout_schemas where repository = $1",
                         repo)
    if recorded is not None:
        return recorded == oid
    if meta.checkout_state(plpy, repo) is None:
        return False
    return db.scalar(plpy, """
        select r.rolsuper or r.rolname = $2
               or pg_catalog.pg_has_role(n.nspowner, e.extowner, 'MEMBER')
        from pg_catalog.pg_namespace n join pg_catalog.pg_roles r on r.oid = n.nspowner,
             pg_catalog.pg_extension e
        where n.oid = $1::bigint::oid and e.extname = 'splitgraph'""", oid, names.namespace_of(repo))


def drop_schema(plpy, repo, force):
    """Drop the checkout schema with everything in it, and forget it. Refused, unless force, when it has pending
    changes (55000) and when objects outside it depend on it (2BP01: another role's view over a checkout
    table...). With force those go too, as they would with the table owner's own DROP ... CASCADE, so that no
    other role can keep a repository from being removed. A schema of that name that the extension did not make
    for this checkout is left alone, unread."""
    name = names.schema_of(repo)
    oid = db.schema_oid(plpy, name)
    ours = oid is not None and _made_here(plpy, repo, name, oid)
    if ours:
        refuse_pending(plpy, repo, force)
    tracking.forget_schema(plpy, name)
    if ours:
        outside = [] if force else db.dependents_outside(plpy, name)
        if outside:
            errors.fail(plpy, errors.DEPENDENT_OBJECTS_STILL_EXIST,
                        f'cannot drop the checkout of repository "{repo}": objects outside schema "{name}" depend '
                        f"on it: {', '.join(outside[:5])}" + (f" and {len(outside) - 5} more" if len(outside) > 5
                                                                else ""),
                        hint="drop those objects (or ask their owners to) first, or pass force => true to drop "
                             "them too; nothing was dropped")
        with db.settings(plpy, {"client_min_messages": "warning"}):
            plpy.execute(f"drop schema {names.ident(name)} cascade")
    db.run(plpy, "delete from splitgraph_meta.checkout_schemas where repository = $1", repo)


def create_schema(plpy, repo):
    """The checkout schema (returned), owned by the caller when the caller is not an administrator. Every role
    may read a repository, so everyone may use the schema and read its tables, including those made later.
    A schema of that name that the extension did not make for this checkout is never adopted (42P06): it may
    be a system schema, someone's own, or planted by another role under a repository's name."""
    name = names.schema_of(repo)
    if names.reserved_schema(name):
        errors.fail(plpy, errors.INVALID_NAME,
                    f'repository "{repo}" cannot be checked out: schema "{name}" is the system\'s or the extension\'s',
                    hint="choose a repository name that is not public, information_schema, pg_*, splitgraph* or "
                         "sg_query_*")
    other = db.scalar(plpy, """select c.repository from splitgraph_meta.checkouts c
                               where c.repository <> $1 and left(c.repository, 63) = $2""", repo, name)
    if other is not None:
        errors.fail(plpy, errors.DUPLICATE_OBJECT,
                    f'repositories "{repo}" and "{other}" would share the checkout schema "{name}" '
                    "(identifiers are cut to 63 bytes)", hint=f'uncheckout "{other}" first')
    schema = names.ident(name)
    oid = db.schema_oid(plpy, name)
    if oid is None:
        plpy.execute(f"create schema {schema}")
        oid = db.schema_oid(plpy, name)
    elif not _made_here(plpy, repo, name, oid):
        errors.fail(plpy, errors.DUPLICATE_SCHEMA,
                    f'schema "{name}" already exists and was not made by splitgraph for repository "{repo}"',
                    hint="splitgraph never adopts a schema: drop or rename it (or ask its owner to), "
                         "or use another repository name")
    db.run(plpy, """insert into splitgraph_meta.checkout_schemas (repository, schema_oid) values ($1, $2::bigint::oid)
                    on conflict (repository) do update set schema_oid = excluded.schema_oid""", repo, oid)
    if not meta.caller_is_admin(plpy):
        plpy.execute(f"alter schema {schema} owner to session_user")
    owner = db.scalar(plpy, "select pg_catalog.pg_get_userbyid(nspowner)::text from pg_catalog.pg_namespace "
                            "where nspname = $1", name)
    plpy.execute(f"grant usage on schema {schema} to public; "
                 f"alter default privileges for role {names.ident(owner)} in schema {schema} "
                 f"grant select on tables to public")
    return name


@api("reset(repository text, table_name text default null) returns void",
     "reset(repository, table_name = all): discard pending changes: the table (or every table) becomes exactly "
     "HEAD's again")
def reset(plpy, repository, table_name=None):
    """Discard pending changes: the checkout's tables become exactly HEAD's again."""
    repo = meta.writable(plpy, repository)
    state = meta.require_checkout(plpy, repo)
    if state["layered"]:
        return
    schema = names.schema_of(repo)
    head = meta.image_tables(plpy, repo, state["image_hash"])
    live = tbl.list_tables(plpy, schema)
    targets = [table_name] if table_name is not None else sorted(set(head) | set(live))
    if table_name is not None and table_name not in head and table_name not in live:
        errors.fail(plpy, errors.UNDEFINED_TABLE, f'table "{table_name}" is neither in HEAD nor in the checkout of '
                                                  f'repository "{repo}"')
    tracked = tracking.schema_tracking(plpy, schema)
    rebuild = []
    for table in targets:
        t = tracked.get(table)
        if table in head and table in live:
            cols = tbl.columns(plpy, schema, table)
            if tbl.same_schema(head[table].spec, cols):
                if t is not None and t["state"] == "tracking" and t["has_primary_key"]:
                    _undo(plpy, schema, table, cols, t)
                else:
                    _refill(plpy, schema, table, cols, head[table].object_ids)
                continue
        tracking.untrack(plpy, schema, table)
        if table in live:
            plpy.execute(f"drop table {names.qualified(schema, table)} cascade")
        if table in head:
            rebuild.append(table)
    if rebuild:
        materialize_image(plpy, repo, state["image_hash"], only=rebuild)


def _refill(plpy, schema, table, cols, object_ids):
    """Replace a table's rows with HEAD's, in place (views over it, grants and indexes stay), and track it
    afresh."""
    target = names.qualified(schema, table)
    tracking.untrack(plpy, schema, table)
    plpy.execute(f"delete from {target}")
    fragments.apply_to_table(plpy, target, cols, fragments.object_rows(plpy, object_ids))
    tracking.track(plpy, schema, table)


def _undo(plpy, schema, table, cols, tracked):
    """Put back the logged old values of every key changed since HEAD, and remove keys HEAD did not have."""
    key = tbl.key_columns(cols)
    target = names.qualified(schema, table)
    key_list = tbl.column_list(key, "a.")
    first = (f"(select distinct on ({key_list}) a.* from {tracked['audit_table']} a "
             f"where a.sg_audit_kind < {tracking.SENTINEL} "
             f"order by {key_list}, a.sg_audit_stmt, a.sg_audit_kind) f")
    match = " and ".join(f"t.{ident(c.name)} = f.{ident(c.name)}" for c in key)
    plpy.execute(f"""
        delete from {target} t using {first} where {match};
        insert into {target} ({tbl.column_list(cols)}) select {tbl.column_list(cols, 'f.')} from {first}
        where f.sg_audit_kind = 0""")
    tracking.restart(plpy, tracked)
