"""Checkouts: materializing an image into the repository's schema, resetting it to HEAD, and removing it."""
import json

from . import changes, db, errors, fragments, meta, names, pending, tracking
from . import tables as tbl
from .declare import api, helper
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


def create_schema(plpy, repo):
    """The checkout schema (returned), owned by the caller when the caller is not an administrator. Every role
    may read a repository, so everyone may use the schema and read its tables, including those made later."""
    name = names.schema_of(repo)
    other = db.scalar(plpy, """select c.repository from splitgraph_meta.checkouts c
                               where c.repository <> $1 and left(c.repository, 63) = $2""", repo, name)
    if other is not None:
        errors.fail(plpy, errors.DUPLICATE_OBJECT,
                    f'repositories "{repo}" and "{other}" would share the checkout schema "{name}" '
                    "(identifiers are cut to 63 bytes)", hint=f'uncheckout "{other}" first')
    schema = names.ident(name)
    if not db.schema_exists(plpy, name):
        plpy.execute(f"create schema {schema}")
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
     "HEAD's again",
     security="invoker")
def reset(plpy, repository, table_name=None):
    """Discard pending changes: the checkout's tables become exactly HEAD's again.

    This runs with the caller's rights: every write into the checkout's tables is the caller's own, so the
    triggers, checks and index expressions the caller put on them run as the caller. The extension's tables are
    reached through reset_begin (which locks the tables against writers, then hands out HEAD's objects and the
    logged old values) and reset_end (which restarts the logs, trusting only what it verified); HEAD's rows are
    read through fragment_rows."""
    tracking.require_read_committed(plpy, "reset")
    plan = json.loads(db.scalar(plpy, "select splitgraph_internal.reset_begin($1, $2)::text",
                                repository, table_name))
    if plan["layered"]:
        return
    schema = plan["schema"]
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
                cols = tbl.from_spec(plpy, entry["spec"])
                fragments.materialize(plpy, schema, table, cols, [o["object_id"] for o in entry["objects"]],
                                      objects=entry["objects"], as_caller=True)
                plpy.execute(f"grant select on {target} to public")
    db.run(plpy, "select splitgraph_internal.reset_end($1, $2)", repository, table_name)


def _insertable(cols, generated):
    """The columns a reset writes: all but generated ones (which the table computes)."""
    return [c for c in cols if c.name not in generated]


def _undo(plpy, target, cols, entry):
    """Put back the logged old values of every key changed since HEAD, and remove keys HEAD did not have (log:
    the temporary table reset_begin filled with each changed key's first record)."""
    key = tbl.key_columns(cols)
    match = " and ".join(f"t.{ident(c.name)} = f.{ident(c.name)}" for c in key)
    written, log = _insertable(cols, entry["generated"]), entry["log"]["relation"]
    plpy.execute(f"""
        delete from {target} t using {log} f where {match};
        insert into {target} ({tbl.column_list(written)}) overriding system value
        select {tbl.column_list(written, 'f.')} from {log} f where f.sg_audit_kind = 0""")


def _refill(plpy, target, cols, entry):
    """Replace a table's rows with HEAD's, in place (views over it, grants and indexes stay)."""
    plpy.execute(f"delete from {'only ' if entry['only'] else ''}{target}")
    fragments.apply_to_table(plpy, target, cols, entry["objects"], as_caller=True, only=entry["only"],
                             written=_insertable(cols, entry["generated"]))


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
            entry["generated"] = _generated_columns(plpy, schema, table)
        else:
            tracking.untrack(plpy, schema, table)
            entry["action"] = "rebuild" if table in head else "drop"
        plan.append(entry)
    return json.dumps({"layered": False, "schema": schema, "tables": plan})


def _logged_first_records(plpy, schema, table, tracked, cols):
    """Copy each changed key's first logged record (its state at HEAD) into a temporary table the caller may
    read, dropped at the end of the transaction; returns its name and the table's generated columns."""
    key_list = tbl.column_list(tbl.key_columns(cols), "a.")
    temp = ident(db.temp_name("sg_reset"))
    name = f"pg_temp.{temp}"
    plpy.execute(f"""
        create temp table {temp} on commit drop as
        select distinct on ({key_list}) a.* from {tracked['audit_table']} a
        where a.sg_audit_kind < {tracking.SENTINEL}
        order by {key_list}, a.sg_audit_stmt, a.sg_audit_kind;
        grant select on {name} to session_user""")
    return {"relation": name}


def _generated_columns(plpy, schema, table):
    """Names of a table's generated columns (a reset does not write them: the table computes them)."""
    return db.column(plpy, """select a.attname::text from pg_catalog.pg_attribute a
                              where a.attrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text,
                                                                                          $2::text))
                                and a.attnum > 0 and not a.attisdropped and a.attgenerated <> ''
                              order by a.attnum""", schema, table)


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
