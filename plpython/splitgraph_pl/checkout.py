"""Checkouts: materializing an image into the repository's schema, resetting it to HEAD, and removing it."""
import json

from . import changes, db, definitions, errors, fragments, meta, names, pending, reading, tracking, transfer
from . import tables as tbl
from .declare import api, helper
from .names import ident


def _clear(plpy, repo, state, keep=()):
    """Drop the versioned tables of the checkout (or the views of a layered one), and their logs, but for the
    tables named in `keep`."""
    schema = names.schema_of(repo)
    tracking.forget_schema_except(plpy, schema, list(keep))
    if state is not None and state["layered"]:
        for table in meta.image_tables(plpy, repo, state["image_hash"]):
            plpy.execute(f"drop view if exists {names.qualified(schema, table)} cascade")
    for table in tbl.list_tables(plpy, schema):
        if table not in keep:
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


# Tables this session made for a checkout and has not handed to tracking yet: {(transaction id, schema): {table}}.
# Only the extension's own Python code reaches it (no other role can run Python in the server), so
# checkout_track starts tracking nothing else.
_MADE = {}


def _transaction(plpy):
    return db.scalar(plpy, "select pg_catalog.pg_current_xact_id()::text")


def _made(plpy, schema):
    xid = _transaction(plpy)
    for key in [k for k in _MADE if k[0] != xid]:
        del _MADE[key]
    return _MADE.setdefault((xid, schema), set())


def prepare_tables(plpy, repo, image_hash, layered=False, only=None):
    """The extension's part of materializing the tables of an image (all, or those named in `only`) in the
    checkout schema: tables of the values as objects store them, with their primary keys and column comments,
    owned by the caller (or read-only views, for a layered checkout). Returns the plan that `finish` carries out
    as the caller: the steps that give the tables back as they were committed, then tracking."""
    schema = create_schema(plpy, repo)
    admin = meta.caller_is_admin(plpy)
    image = meta.image_tables(plpy, repo, image_hash)
    tables = image if only is None else {t: v for t, v in image.items() if t in only}
    plan = {"repository": repo, "image_hash": image_hash, "steps": [], "after": [], "track": []}
    made = _made(plpy, schema)
    for n, (table, version) in enumerate(tables.items(), 1):
        cols = tbl.from_spec(plpy, version.spec, version.definition)
        staged = None
        if layered:
            definitions.require_types(plpy, table, cols)
            # the view stays the extension's: it reads object tables, which only the extension may read
            reading.make_view(plpy, schema, table, tbl.as_trusted(cols), version.object_ids, [repo, table])
        else:
            staged = db.temp_name("sg_staged") if definitions.has_generated(version.definition) else None
            primary_key = (version.definition or {}).get("primary_key") if staged is None else None
            primary_key = definitions.object_name(version.definition, table, primary_key)
            if not isinstance(primary_key, str) or db.scalar(plpy, "select pg_catalog.to_regclass($1) is not null",
                                                             names.qualified(schema, primary_key)):
                primary_key = None  # Postgres names it
            fragments.materialize(plpy, schema, staged or table, tbl.as_stored(cols), version.object_ids,
                                  primary_key, keep_ordinals=not staged)
            steps, after = definitions.build(plpy, schema, table, cols, version.definition, staged)
            plan["steps"] += [s.as_dict() for s in steps]
            plan["after"] += [s.as_dict() for s in after]
            plan["track"].append(table)
            made.add(table)
            if not admin:
                plpy.execute(f"alter table {names.qualified(schema, staged or table)} owner to session_user")
        plpy.execute(f"grant select on {names.qualified(schema, staged or table)} to public")
        if layered and not admin:
            # the repository's writer is told why a write fails (by the view's trigger), not just refused
            plpy.execute(f"grant insert, update, delete on {names.qualified(schema, table)} to session_user")
        db.notice(plpy, f'checked out table "{table}" ({n}/{len(tables)}): {len(version.object_ids)} object(s)')
    if only is not None and not layered:
        # foreign keys of the other tables that reference the remade ones went with them (DROP ... CASCADE)
        live = set(tbl.list_tables(plpy, schema))
        for table, version in image.items():
            if table not in tables and table in live and version.definition:
                cols = tbl.from_spec(plpy, version.spec, version.definition)
                plan["after"] += [s.as_dict() for s in definitions.foreign_keys(
                    plpy, schema, table, cols, version.definition, set(tables))]
    return plan


def _running_for_another(plpy):
    """Whether this code runs with the extension's rights on behalf of a caller who is not an administrator
    (then it must not run the caller's expressions)."""
    return db.scalar(plpy, """select current_user <> session_user
                                     and current_user = (select e.extowner::pg_catalog.regrole::text
                                                         from pg_catalog.pg_extension e
                                                         where e.extname = 'splitgraph')""") \
        and not meta.caller_is_admin(plpy)


def finish(plpy, plan):
    """Carry out a plan of prepare_tables with the rights of the code that calls this: the steps that give
    the tables back as committed (types, defaults, identity, generated columns, NOT NULL, CHECK, UNIQUE,
    indexes, comments, then foreign keys once every table is filled), then tracking (a definer helper). A
    step that is not essential and fails (it names a function or a table this engine lacks) is reported with
    a WARNING and the rest goes on."""
    guarded = None
    for step in plan["steps"] + plan["after"]:
        if step["evaluates"]:
            guarded = _running_for_another(plpy) if guarded is None else guarded
            if guarded:
                errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED,
                            f"{step['what']} evaluates expressions, which this call would run with the extension's "
                            "rights", hint="check the image out again with splitgraph.checkout, which runs them "
                                           "with yours")
        if step["fatal"]:
            plpy.execute(";\n".join(step["statements"]))
            continue
        try:
            with plpy.subtransaction():
                plpy.execute(";\n".join(step["statements"]))
        except plpy.SPIError as error:
            plpy.warning(f"splitgraph: could not restore {step['what']}: {str(error).splitlines()[0]}")
            if step["fallback"]:
                plpy.execute(";\n".join(step["fallback"]))
    if plan["track"]:
        db.run(plpy, "select splitgraph_internal.checkout_track($1, $2::text[])", plan["repository"], plan["track"])


def materialize_new(plpy, repo, tables):
    """Make the named tables of HEAD that the checkout lacks, and track them; nothing when the repository is not
    checked out. Call it from code that runs as the caller: the extension's part runs in the definer helper
    checkout_materialize, and what evaluates expressions runs here (finish)."""
    plan = db.scalar(plpy, "select splitgraph_internal.checkout_materialize($1, $2::text[])", repo, list(tables))
    finish(plpy, json.loads(plan))


@helper("checkout_materialize(repository text, tables text[]) returns text",
        "checkout_materialize(repository, tables): make the named tables of HEAD that the checkout lacks, as "
        "stored; returns the plan the caller carries out (nothing when the repository is not checked out)",
        public=True)
def checkout_materialize(plpy, repository, tables):
    repo = meta.writable(plpy, repository)
    state = meta.checkout_state(plpy, repo)
    if state is None:
        return json.dumps({"repository": repo, "steps": [], "after": [], "track": []})
    image_hash, layered = state["image_hash"], state["layered"]
    existing = set(tbl.list_tables(plpy, names.schema_of(repo)))
    wanted = [t for t in (tables if tables is not None else meta.image_tables(plpy, repo, image_hash))
              if t not in existing]
    return json.dumps(prepare_tables(plpy, repo, image_hash, layered, wanted))


@helper("checkout_track(repository text, tables text[]) returns void",
        "checkout_track(repository, tables): start tracking tables this transaction's checkout made",
        public=True)
def checkout_track(plpy, repository, tables):
    repo = meta.writable(plpy, repository)
    schema = names.schema_of(repo)
    made = _made(plpy, schema)
    for table in tables or []:
        if table not in made:
            errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                        f'table "{table}" was not made by a checkout of repository "{repo}" in this transaction')
        made.discard(table)
        tracking.track(plpy, schema, table)


@api("checkout(repository text, image text, force boolean default false, layered boolean default false) returns "
     "text",
     "checkout(repository, image, force, layered): replace the checkout with the image (hash, prefix, tag, "
     "branch, latest, HEAD) and return its hash; a branch is followed by later commits, anything else is "
     "detached; layered makes read-only views over the fragments instead of tables",
     security="invoker")
def checkout(plpy, repository, image, force=False, layered=False):
    """The tables are made by the extension from the objects (checkout_prepare); what evaluates expressions
    (CHECK constraints, indexes, generated columns, casts to the columns' types) runs here, as the caller. Objects
    the image needs that were registered without their rows (a lazy clone) are downloaded first, through the
    caller's remote. It runs some fifty small queries of the catalog and of the extension's tables, each prepared
    once per session (db.run) with its values bound: with their generic plans (db.generic_plans) they cost no
    planning on the next checkout (the statements that move rows bind no values, and are planned as before)."""
    with db.generic_plans(plpy):
        transfer.fetch_objects(plpy, repository, image)
        plan = json.loads(db.scalar(plpy, "select splitgraph_internal.checkout_prepare($1, $2, $3, $4)",
                                    repository, image, bool(force), bool(layered)))
        patched = [_patch(plpy, plan["schema"], entry) for entry in plan.get("patch", [])]
        finish(plpy, plan)
        if patched:
            db.run(plpy, "select splitgraph_internal.checkout_patched($1, $2::text[])", plan["repository"], patched)
    return plan["image_hash"]


# Tables a checkout of this session changes in place: {(transaction id, schema, table): the patch's relations}
# (checkout_prepare plans them; "applied" is set by checkout, as its caller, once it applied the patch; then
# checkout_patched restarts their logs). Only the extension's own Python code reaches it.
_PATCHES = {}


def _patch(plpy, schema, entry):
    """Turn a table into the image's in place (entry: a "patch" of checkout_prepare's plan): remove the rows of the
    keys the image does not have, and write the image's row of every other key the two images' differing objects
    write (update: updated where it is when the key is there already, else inserted; replace: every such key's row
    deleted, then inserted). Runs as the caller; returns the table's name."""
    table = entry["table"]
    target = names.qualified(schema, table)
    cols = tbl.columns(plpy, schema, table)
    key = tbl.key_columns(cols)
    insert, written = fragments.insert_into(target, cols)
    values = fragments.restored_list(written, "f.")
    match = " and ".join(f"t.{ident(c.name)} = {c.restored('f.' + ident(c.name))}" for c in key)
    with db.settings(plpy, fragments.BY_KEY):
        if entry["how"] == "update":
            flag = f"f.{names.FLAG_COLUMN}"
            changed = ", ".join(f"{ident(c.name)} = {c.restored('f.' + ident(c.name))}"
                                for c in written if not c.is_pk)
            overriding = " overriding system value" if any(c.identity == "a" for c in written) else ""
            plpy.execute(f"merge into only {target} t using {entry['rows']} f on {match} "
                         f"when matched and {flag} then update set {changed} "
                         "when matched then delete "
                         f"when not matched and {flag} then insert ({tbl.column_list(written)}){overriding} "
                         f"values ({', '.join(c.restored('f.' + ident(c.name)) for c in written)})")
        else:
            plpy.execute(f"delete from only {target} t using {entry['keys']} f where {match}")
            plpy.execute(f"{insert} select {values} from {entry['rows']} f where f.{names.FLAG_COLUMN}")
    patch = _PATCHES.get((_transaction(plpy), schema, table))
    if patch is not None and patch["rows"] == entry["rows"]:
        patch["applied"] = True
    return table


@helper("checkout_prepare(repository text, image text, force boolean, layered boolean) returns text",
        "checkout_prepare(...): the extension's part of checkout: replace the checkout's tables with the image's, as "
        "stored; returns the plan the caller carries out",
        public=True)
def checkout_prepare(plpy, repository, image, force, layered):
    repo = meta.writable(plpy, repository)
    image_hash, branch = meta.resolve(plpy, repo, image)
    state = meta.checkout_state(plpy, repo)
    create_schema(plpy, repo)  # first: a schema the extension did not make is refused before anything is touched
    if state is not None:
        refuse_pending(plpy, repo, force)
    nearby = _nearby(plpy, repo, state, image_hash, layered)
    _clear(plpy, repo, state, keep=nearby)
    db.run(plpy, """insert into splitgraph_meta.checkouts (repository, image_hash, branch, layered)
                    values ($1, $2, $3, $4)
                    on conflict (repository) do update
                    set image_hash = excluded.image_hash, branch = excluded.branch, layered = excluded.layered""",
           repo, image_hash, branch, bool(layered))
    others = [t for t in meta.image_tables(plpy, repo, image_hash) if t not in nearby] if nearby else None
    if others == []:
        # every table stays (no foreign key went with a table made again): nothing to make
        plan = {"repository": repo, "image_hash": image_hash, "steps": [], "after": [], "track": []}
    else:
        plan = prepare_tables(plpy, repo, image_hash, layered, others)
    if state is not None and state["layered"]:
        reading.drop_unused(plpy)  # what the views of the old checkout read, unless another view reads it
    plan["schema"] = names.schema_of(repo)
    plan["patch"] = [dict(p, table=t) for t, p in nearby.items() if p is not None]
    return json.dumps(plan)


# A patch is worth it while the objects that differ write at most this share of the table's rows.
NEARBY_SHARE = 0.25


def _writes(plpy, schema, table):
    """How a checkout may change a table in place: None when writing into it runs a trigger or rule but the
    tracking triggers, or involves a foreign key or row security (rows deleted and inserted are then not exactly
    the rows written); "update" when, besides, the primary key is its only unique index or exclusion constraint
    and no column but the key's is an identity GENERATED ALWAYS (the row of a key it keeps is then updated where
    it is, which HOT updates may do without touching its indexes; a row moving its unique value to another could
    not be); else "replace" (rows deleted, then inserted)."""
    row = db.one(plpy, """
        select c.relkind = 'r' and not c.relhasrules and not c.relrowsecurity and not c.relhassubclass
               and not c.relispartition
               and not exists (select from pg_catalog.pg_trigger g
                               where g.tgrelid = c.oid and g.tgname <> all($3::text[]))
               and not exists (select from pg_catalog.pg_constraint k
                               where k.contype = 'f' and (k.conrelid = c.oid or k.confrelid = c.oid)) as plain,
               not exists (select from pg_catalog.pg_index i
                           where i.indrelid = c.oid and (i.indisunique or i.indisexclusion) and not i.indisprimary)
               and not exists (select from pg_catalog.pg_attribute a
                               where a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
                                 and a.attidentity = 'a'
                                 and not exists (select from pg_catalog.pg_index p
                                                 where p.indrelid = c.oid and p.indisprimary
                                                   and a.attnum = any(p.indkey))) as keyed
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname = $1 and c.relname = $2""", schema, table, list(tracking.TRIGGER_NAMES))
    if row is None or not row["plain"]:
        return None
    return "update" if row["keyed"] else "replace"


# What each way of changing a table in place runs: statements that fire the tracking triggers (checkout_patched
# finds any other statement that wrote the table meanwhile).
_STATEMENTS = {"replace": 2, "update": 3}  # MERGE fires the statement triggers of each of its actions


def _nearby(plpy, repo, state, image_hash, layered):
    """The tables of a clean checkout that become the image's without being made again: {table: None} for a table
    whose objects are the image's, {table: {"keys", "rows"}} for one whose objects share a prefix with the image's
    and differ in few rows (fragments.difference: what checkout applies to it). A table qualifies when its log is
    trusted and empty, its definition is the image's, and writing into it runs no code but the tracking triggers
    (checked after the tables are locked)."""
    if state is None or state["layered"] or layered:
        return {}
    schema = names.schema_of(repo)
    current = meta.image_tables(plpy, repo, state["image_hash"])
    tracked = tracking.schema_tracking(plpy, schema)
    xid = _transaction(plpy)
    for stale in [k for k in _PATCHES if k[0] != xid]:
        del _PATCHES[stale]
    # a table made again would be the caller's (an administrator's: the extension's); one owned by anyone else is
    owner = db.scalar(plpy, "select case when $1 then current_user else session_user end::text",
                      meta.caller_is_admin(plpy))
    owners = {r["relname"]: r["owner"] for r in db.run(plpy, """
        select c.relname::text as relname, pg_catalog.pg_get_userbyid(c.relowner)::text as owner
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
        where n.nspname = $1 and c.relkind = 'r'""", schema)}
    nearby = {}
    for table, version in meta.image_tables(plpy, repo, image_hash).items():
        old, t = current.get(table), tracked.get(table)
        if old is None or t is None or t["state"] != "tracking" or old.spec != version.spec \
                or old.definition != version.definition or owners.get(table) != owner or tracking.logged(plpy, t):
            continue
        cols = tbl.columns(plpy, schema, table)
        if not tbl.same_schema(version.spec, cols) or definitions.capture(plpy, schema, table, cols) \
                != version.definition:
            continue
        if old.object_ids == version.object_ids:
            nearby[table] = None
            continue
        common = 0
        while common < min(len(old.object_ids), len(version.object_ids)) \
                and old.object_ids[common] == version.object_ids[common]:
            common += 1
        how = _writes(plpy, schema, table) if common and tbl.key_columns(cols) else None
        if how is None:
            continue
        if all(c.is_pk or c.generated for c in cols):
            how = "replace"  # nothing to update
        sizes = {o["object_id"]: o for o in db.run(plpy, """
            select object_id, rows_inserted + rows_deleted as written from splitgraph_meta.objects
            where object_id = any($1::text[])""", old.object_ids + version.object_ids)}
        differing = old.object_ids[common:] + version.object_ids[common:]
        fragments.object_rows(plpy, version.object_ids + old.object_ids[common:])  # all stored here
        if sum(sizes[o]["written"] for o in differing) > NEARBY_SHARE * sum(
                sizes[o]["written"] for o in version.object_ids):
            continue
        keys, rows = fragments.difference(plpy, cols, version.object_ids[:common], old.object_ids[common:],
                                          version.object_ids[common:])
        # HEAD moves before the patch is applied: until checkout_patched finds it applied, the log is not trusted
        # (yet still kept), so a patch never applied leaves a table that is compared with HEAD
        tracking.mark(plpy, t, "patching")
        _PATCHES[(xid, schema, table)] = {"rows": rows, "applied": False, "statements": _STATEMENTS[how]}
        nearby[table] = {"keys": keys, "rows": rows, "how": how}
    return nearby


@helper("checkout_patched(repository text, tables text[]) returns void",
        "checkout_patched(repository, tables): restart the logs of the tables this transaction's checkout changed "
        "in place, once it applied their patches; a table written by anything else meanwhile is no longer trusted",
        public=True)
def checkout_patched(plpy, repository, tables):
    repo = meta.writable(plpy, repository)
    schema = names.schema_of(repo)
    xid = _transaction(plpy)
    tracked = tracking.schema_tracking(plpy, schema)
    for table in tables or []:
        patch = _PATCHES.pop((xid, schema, table), None)
        if patch is None or not patch["applied"]:
            errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                        f'table "{table}" was not changed by a checkout of repository "{repo}" in this transaction')
        t = tracked.get(table)
        if t is None or t["state"] != "patching":
            continue  # its log is not trusted (any more): it is compared with HEAD
        # each statement that wrote the table logged a record of its own: more than the patch's, and something else
        # wrote meanwhile
        if db.scalar(plpy, f"""select pg_catalog.count(distinct a.sg_audit_stmt) from {t['audit_table']} a
                               where a.sg_audit_kind = any($1::smallint[])""",
                     list(tracking.LOGGED) + [tracking.WROTE]) > patch["statements"]:
            tracking.mark(plpy, t, "untrusted")
        else:
            tracking.mark(plpy, t, "tracking")
            tracking.restart(plpy, t, few=True)


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
        reading.drop_unused(plpy)
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
    # what is in place already is left as it is: changing a schema (even to what it was) makes every session
    # plan its cached statements again
    state = db.one(plpy, """
        select pg_catalog.pg_get_userbyid(n.nspowner)::text as owner, n.nspowner = r.oid as owned_by_caller,
               pg_catalog.has_schema_privilege('public', n.oid, 'USAGE')
               and exists (select from pg_catalog.pg_default_acl d
                           where d.defaclrole = n.nspowner and d.defaclnamespace = n.oid and d.defaclobjtype = 'r'
                             and d.defaclacl @> pg_catalog.makeaclitem(0, n.nspowner, 'SELECT', false)) as shared
        from pg_catalog.pg_namespace n, pg_catalog.pg_roles r
        where n.oid = $1::bigint::oid and r.rolname = session_user""", oid)
    owner, shared = state["owner"], state["shared"]
    if not state["owned_by_caller"] and not meta.caller_is_admin(plpy):
        plpy.execute(f"alter schema {schema} owner to session_user")
        owner, shared = db.scalar(plpy, "select session_user::text"), False
    if not shared:
        plpy.execute(f"grant usage on schema {schema} to public; "
                     f"alter default privileges for role {names.ident(owner)} in schema {schema} "
                     f"grant select on tables to public")
    return name


@api("reset(repository text, table_name text default null) returns void",
     "reset(repository, table_name = all): discard pending changes: the table (or every table) becomes exactly "
     "HEAD's again",
     security="invoker")
def reset(plpy, repository, table_name=None):
    """Discard pending changes: the checkout's tables become exactly HEAD's again.

    This runs with the caller's rights: every write into the checkout's tables is the caller's own, so the
    triggers, checks and index expressions the caller put on them run as the caller. The extension's tables are
    reached through reset_begin (which locks the tables against writers, then hands out HEAD's objects and the
    logged old values) and reset_end (which restarts the logs, trusting only what it verified); HEAD's rows are
    read through fragment_rows. Foreign keys between the tables are checked once everything is back."""
    tracking.require_read_committed(plpy, "reset")
    plan = json.loads(db.scalar(plpy, "select splitgraph_internal.reset_begin($1, $2)::text",
                                repository, table_name))
    if plan["layered"]:
        return
    schema = plan["schema"]
    deferred = defer_foreign_keys(plpy, schema, [e["table"] for e in plan["tables"] if e["live"]])
    rebuild = []
    for entry in plan["tables"]:
        table, action = entry["table"], entry["action"]
        target = names.qualified(schema, table)
        if action == "keep":
            continue
        if action == "undo":
            _undo(plpy, target, tbl.columns(plpy, schema, table), entry)
        elif action == "refill":
            _refill(plpy, target, tbl.columns(plpy, schema, table), entry)
        else:
            if entry["live"]:
                plpy.execute(f"drop table {target} cascade")
            if action == "rebuild":
                rebuild.append(table)
    if rebuild:
        # made again from HEAD as checkout makes tables: definitions restored as the caller
        materialize_new(plpy, plan["repository"], rebuild)
    check_foreign_keys(plpy, deferred)
    db.run(plpy, "select splitgraph_internal.reset_end($1, $2)", repository, table_name)


def _undo(plpy, target, cols, entry):
    """Put back the logged old values of every key changed since HEAD, and remove keys HEAD did not have (log:
    the temporary table reset_begin filled with each changed key's first record)."""
    key = tbl.key_columns(cols)
    match = " and ".join(f"t.{ident(c.name)} = f.{ident(c.name)}" for c in key)
    insert, written = fragments.insert_into(target, cols)
    log = entry["log"]["relation"]
    plpy.execute(f"""
        delete from {target} t using {log} f where {match};
        {insert} select {tbl.column_list(written, 'f.')} from {log} f where f.sg_audit_kind = {tracking.OLD}""")


def _refill(plpy, target, cols, entry):
    """Replace a table's rows with HEAD's, in place (views over it, grants and indexes stay)."""
    plpy.execute(f"delete from {'only ' if entry['only'] else ''}{target}")
    fragments.apply_to_table(plpy, target, cols, entry["objects"], as_caller=True, only=entry["only"])


def defer_foreign_keys(plpy, schema, tables):
    """Foreign keys from or to the tables are checked when reset is done, not row by row while rows are put
    back in an order that is none of theirs: each becomes deferrable (for now) and deferred. Returns them."""
    keys = db.run(plpy, """
        select k.conrelid::pg_catalog.regclass::text as relation, pg_catalog.quote_ident(k.conname) as name,
               pg_catalog.quote_ident(n.nspname) as schema, k.condeferrable, k.condeferred
        from pg_catalog.pg_constraint k join pg_catalog.pg_namespace n on n.oid = k.connamespace
        where k.contype = 'f' and (k.conrelid = any($1::text[]::pg_catalog.regclass[])
                                   or k.confrelid = any($1::text[]::pg_catalog.regclass[]))
        order by 1, 2""", [names.qualified(schema, t) for t in tables])
    keys = [dict(k) for k in keys]
    statements = [f"alter table {k['relation']} alter constraint {k['name']} deferrable"
                  for k in keys if not k["condeferrable"]]
    if keys:
        statements.append("set constraints " + ", ".join(f"{k['schema']}.{k['name']}" for k in keys) + " deferred")
        plpy.execute(";\n".join(statements))
    return keys


def check_foreign_keys(plpy, keys):
    """Check the foreign keys defer_foreign_keys deferred, and give them back their deferrability."""
    keys = [k for k in keys if db.scalar(plpy, """select exists (select from pg_catalog.pg_constraint
                                                                where conrelid = $1::pg_catalog.regclass
                                                                  and pg_catalog.quote_ident(conname) = $2)""",
                                         k["relation"], k["name"])]
    if not keys:
        return
    statements = ["set constraints " + ", ".join(f"{k['schema']}.{k['name']}" for k in keys) + " immediate"]
    statements += [f"alter table {k['relation']} alter constraint {k['name']} not deferrable"
                   for k in keys if not k["condeferrable"]]
    still = [f"{k['schema']}.{k['name']}" for k in keys if k["condeferred"]]
    if still:
        statements.append("set constraints " + ", ".join(still) + " deferred")
    plpy.execute(";\n".join(statements))


def _reset_targets(plpy, repo, state, table_name):
    """(schema, HEAD's tables, live tables, the tables a reset of `table_name` (None: all) concerns)."""
    schema = names.schema_of(repo)
    head = meta.image_tables(plpy, repo, state["image_hash"])
    live = tbl.list_tables(plpy, schema)
    if table_name is not None and table_name not in head and table_name not in live:
        errors.fail(plpy, errors.UNDEFINED_TABLE, f'table "{table_name}" is neither in HEAD nor in the checkout of '
                                                  f'repository "{repo}"')
    targets = [table_name] if table_name is not None else sorted(set(head) | set(live))
    return schema, head, live, targets


def _lock_against_writers(plpy, schema, tables):
    """Lock live tables of a checkout against writers (a writer still open is waited for), before their logs are
    read: LOCK runs no code of the tables'."""
    if tables:
        plpy.execute("lock table " + ", ".join(names.qualified(schema, t) for t in sorted(tables))
                     + " in exclusive mode")


@helper("reset_begin(repository text, table_name text) returns jsonb",
        "reset_begin(repository, table_name): the first half of reset, for the caller's rights: checks the caller "
        "may write the repository, locks the tables, and returns what to do to each (with HEAD's objects, and the "
        "logged old values in a temporary table)",
        public=True)
def reset_begin(plpy, repository, table_name):
    """What reset(repository, table_name) must do to each table, decided after the tables are locked against
    writers: keep (the log is trusted and empty), undo (the log is trusted and keyed: its first records, copied
    into a temporary table the caller may read, are put back), refill (replace the rows with HEAD's), rebuild
    (drop and make again from HEAD), drop.
    Tables to refill, rebuild or drop are untracked here; reset_end tracks them again."""
    tracking.require_read_committed(plpy, "reset")
    repo = meta.writable(plpy, repository)
    state = meta.require_checkout(plpy, repo)
    if state["layered"]:
        return json.dumps({"layered": True})
    schema, head, live, targets = _reset_targets(plpy, repo, state, table_name)
    for table in targets:
        if table in live:
            tbl.source(plpy, schema, table)  # what the caller may read, and what reads run no code
    _lock_against_writers(plpy, schema, [t for t in targets if t in live])
    if not db.schema_exists(plpy, schema):
        create_schema(plpy, repo)
    tracked = tracking.schema_tracking(plpy, schema)
    plan = []
    for table in targets:
        t = tracked.get(table)
        entry = {"table": table, "live": table in live, "spec": None, "objects": []}
        if table in head:
            entry["spec"] = head[table].spec
            entry["objects"] = [{"object_id": o["object_id"], "inserts_only": o["inserts_only"]}
                                for o in fragments.object_rows(plpy, head[table].object_ids)]
        cols = tbl.columns(plpy, schema, table) if table in live else None
        if table in head and table in live and tbl.same_schema(head[table].spec, cols):
            if t is not None and t["state"] == "tracking" and not tracking.logged(plpy, t):
                entry["action"] = "keep"  # nothing logged since HEAD: nothing to undo
            elif t is not None and t["state"] == "tracking" and t["has_primary_key"]:
                entry.update(action="undo", log=_logged_first_records(plpy, schema, table, t, cols))
            else:
                tracking.untrack(plpy, schema, table)
                entry.update(action="refill", only=tbl.source(plpy, schema, table).startswith("only "))
        else:
            tracking.untrack(plpy, schema, table)
            entry["action"] = "rebuild" if table in head else "drop"
        plan.append(entry)
    return json.dumps({"layered": False, "repository": repo, "schema": schema, "tables": plan})


def _logged_first_records(plpy, schema, table, tracked, cols):
    """Copy each changed key's first logged record (its state at HEAD) into a temporary table the caller may
    read, dropped at the end of the transaction; returns its name and the table's generated columns."""
    key_list = tbl.column_list(tbl.key_columns(cols), "a.")
    temp = ident(db.temp_name("sg_reset"))
    name = f"pg_temp.{temp}"
    plpy.execute(f"""
        create temp table {temp} on commit drop as
        select distinct on ({key_list}) a.* from {tracking.log_rows(plpy, tracked, cols)} a
        order by {key_list}, a.sg_audit_stmt, a.sg_audit_kind;
        grant select on {name} to session_user""")
    return {"relation": name}


@helper("reset_end(repository text, table_name text) returns void",
        "reset_end(repository, table_name): the second half of reset: restarts the logs of the tables it "
        "concerns, trusting a log only when the table is verified to equal HEAD",
        public=True)
def reset_end(plpy, repository, table_name):
    """Track the tables reset concerns afresh. A table is trusted again only when verified: a logged table whose
    log now nets to no change restarts its log (otherwise the log, still true, keeps the changes pending); any
    other table is tracked anew, trusted only when its rows hash to HEAD's content hash (else it is compared with
    HEAD, as an untracked table would be). So however this is called, nothing changed is ever taken for HEAD."""
    tracking.require_read_committed(plpy, "reset")
    repo = meta.writable(plpy, repository)
    state = meta.require_checkout(plpy, repo)
    if state["layered"]:
        return
    schema, head, live, targets = _reset_targets(plpy, repo, state, table_name)
    for table in targets:
        if table in live:
            tbl.source(plpy, schema, table)
    _lock_against_writers(plpy, schema, [t for t in targets if t in live])
    tracked = tracking.schema_tracking(plpy, schema)
    for table in targets:
        if table not in live:
            tracking.untrack(plpy, schema, table)
            continue
        t = tracked.get(table)
        cols = tbl.columns(plpy, schema, table)
        if t is not None and t["state"] == "tracking":
            if not changes.has_changes(plpy, t, schema, table, cols):
                tracking.restart(plpy, t)
            continue
        if tracking.comparison_reason(plpy, schema, table, len(cols)) is not None:
            tracking.track(plpy, schema, table)
            continue
        equal = (table in head and tbl.same_schema(head[table].spec, cols)
                 and changes.same_content(plpy, tbl.source(plpy, schema, table), cols, head[table].object_ids))
        tracking.track(plpy, schema, table, state="tracking" if equal else "lost")
