"""Differences between versions of a table: row-level diffs, per-table summaries, and the status of checkouts.

Where one version is the other plus fragments (an ancestor and its descendant, or HEAD and the pending
changes), the difference comes from those fragments or from the change log alone; other pairs are compared
by materializing both sides into temporary tables. Result rows never pass through Python: they are written to
a temporary table that the SQL function returns.
"""
from . import changes, db, errors, fragments, meta, names, pending, tracking
from . import tables as tbl
from .declare import api
from .names import ident


def _named(cols, alias, prefix):
    """The columns of `alias` under positional names (prefix0..), so no column name can clash with ours."""
    return ", ".join(f"{alias}.{ident(c.name)} as {prefix}{i}" for i, c in enumerate(cols))


def _result(plpy):
    name = db.temp_name("sg_diff")
    plpy.execute(f"create temp table {ident(name)} (action character(1), row_data jsonb, change text)")
    return name, f"pg_temp.{ident(name)}"


# ---------------------------------------------------------------------------------------------------------------
# Three ways to a difference
# ---------------------------------------------------------------------------------------------------------------

def _delta_rows(plpy, result, delta):
    """Rows of a pending Delta: '-' the old values, '+' the new."""
    plpy.execute(f"""
        insert into {result} (action, row_data, change)
        select '-', {changes.json_object(delta.cols, 'd', 'o')},
               case when d.present then 'update' else 'remove' end
        from {delta.relation} d where d.existed
        union all
        select '+', {changes.json_object(delta.cols, 'd', 'n')},
               case when d.existed then 'update' else 'add' end
        from {delta.relation} d where d.present""")


def _fragment_rows(plpy, result, cols, base_ids, extra_ids, reverse):
    """Rows between a table version and the version that adds fragments `extra_ids` on top of it, found from
    those fragments and the base rows with the same keys only (nothing is materialized)."""
    key = tbl.key_columns(cols)
    key_expr = (lambda a: ", ".join(f"{a}.{ident(c.name)}" for c in key)) if key else (
        lambda a: tbl.row_text(cols, a + "."))

    def numbered(ids):
        # the values as the columns' types where the extension may cast to them (tables.as_trusted)
        values = fragments.restored_list(tbl.as_trusted(cols), "f.")
        return " union all ".join(
            f"select {n} as sg_position, {tbl.select_list(values, f'f.{names.FLAG_COLUMN}')} "
            f"from {fragments.object_table(o)} f" for n, o in enumerate(ids))

    new_state, old_state = db.temp_name("sg_new"), db.temp_name("sg_old")
    plpy.execute(f"""
        create temp table {ident(new_state)} as
        select distinct on ({key_expr('u')}) u.* from ({numbered(extra_ids)}) u
        order by {key_expr('u')}, u.sg_position desc""")
    plpy.execute(f"""
        create temp table {ident(old_state)} as
        select distinct on ({key_expr('u')}) u.* from ({numbered(base_ids)}) u
        where ({key_expr('u')}) in (select {key_expr('s')} from pg_temp.{ident(new_state)} s)
        order by {key_expr('u')}, u.sg_position desc""")
    minus, plus = ("+", "-") if reverse else ("-", "+")
    gone, came = ("add", "remove") if reverse else ("remove", "add")
    match = " and ".join(f"o.{ident(c.name)} = n.{ident(c.name)}" for c in key) if key else (
        f"{tbl.row_text(cols, 'o.')} = {tbl.row_text(cols, 'n.')}")
    differs = f'({tbl.row_text(cols, "o.")} collate "C") <> ({tbl.row_text(cols, "n.")} collate "C")'
    old_values = f"(select {_named(cols, 'o', 'v')}) ov"
    new_values = f"(select {_named(cols, 'n', 'v')}) nv"
    plpy.execute(f"""
        insert into {result} (action, row_data, change)
        select '{minus}', {changes.json_object(cols, 'ov', 'v')},
               case when n.{names.FLAG_COLUMN} then 'update' else '{gone}' end
        from pg_temp.{ident(new_state)} n
        join pg_temp.{ident(old_state)} o on {match} and o.{names.FLAG_COLUMN}
        cross join lateral {old_values}
        where not n.{names.FLAG_COLUMN} or {differs}
        union all
        select '{plus}', {changes.json_object(cols, 'nv', 'v')},
               case when o.{names.FLAG_COLUMN} then 'update' else '{came}' end
        from pg_temp.{ident(new_state)} n
        left join pg_temp.{ident(old_state)} o on {match} and o.{names.FLAG_COLUMN}
        cross join lateral {new_values}
        where n.{names.FLAG_COLUMN} and (o.{names.FLAG_COLUMN} is null or {differs})""")
    plpy.execute(f"drop table pg_temp.{ident(new_state)}, pg_temp.{ident(old_state)}")


def _compare(plpy, result, cols1, rel1, cols2, rel2):
    """Rows between two relations (either may be None: the table is missing on that side). With the same
    columns and a primary key, rows pair up by key; otherwise the difference is of the sets of rows."""
    if rel1 is None or rel2 is None:
        cols, rel, action, change = (cols2, rel2, "+", "add") if rel1 is None else (cols1, rel1, "-", "remove")
        plpy.execute(f"""insert into {result} (action, row_data, change)
                         select '{action}', {changes.json_object(cols, 'v', 'v')}, '{change}'
                         from {rel} t cross join lateral (select {_named(cols, 't', 'v')}) v""")
        return
    same = tbl.same_schema([c.spec() for c in cols1], cols2)
    key = tbl.key_columns(cols1)
    if same and key:
        match = " and ".join(f"a.{ident(c.name)} = b.{ident(c.name)}" for c in key)
        differs = f'({tbl.row_text(cols1, "a.")} collate "C") <> ({tbl.row_text(cols1, "b.")} collate "C")'
        missing_b, missing_a = f"b.{ident(key[0].name)} is null", f"a.{ident(key[0].name)} is null"
        plpy.execute(f"""
            insert into {result} (action, row_data, change)
            select '-', {changes.json_object(cols1, 'v', 'v')}, case when {missing_b} then 'remove' else 'update' end
            from {rel1} a left join {rel2} b on {match}
            cross join lateral (select {_named(cols1, 'a', 'v')}) v
            where {missing_b} or {differs}
            union all
            select '+', {changes.json_object(cols1, 'v', 'v')}, case when {missing_a} then 'add' else 'update' end
            from {rel2} b left join {rel1} a on {match}
            cross join lateral (select {_named(cols1, 'b', 'v')}) v
            where {missing_a} or {differs}""")
        return
    # Rows compare by the text of their JSON, which keeps what jsonb equality would not (1.5 is not 1.50).
    def as_json(cols, rel):
        return (f"select ({changes.json_object(cols, 'v', 'v')})::text as j from {rel} t "
                f"cross join lateral (select {_named(cols, 't', 'v')}) v")

    plpy.execute(f"""
        insert into {result} (action, row_data, change)
        select '-', x.j::jsonb, 'remove' from ({as_json(cols1, rel1)} except all {as_json(cols2, rel2)}) x
        union all
        select '+', x.j::jsonb, 'add' from ({as_json(cols2, rel2)} except all {as_json(cols1, rel1)}) x""")


def _checkout_table(plpy, repo, table):
    """(schema, columns) of a live table of the checkout, or (schema, None)."""
    state = meta.require_checkout(plpy, repo)
    schema = names.schema_of(repo)
    if state["layered"] or table not in tbl.list_tables(plpy, schema):
        return schema, None
    return schema, tbl.columns(plpy, schema, table)


def table_diff(plpy, repo, table, image_1, image_2, result):
    """Write the rows between two versions of a table into `result`; returns whether its schema changed.
    image_2 None means the checkout's pending state."""
    made = []
    try:
        return _table_diff(plpy, repo, table, image_1, image_2, result, made)
    finally:
        changes.drop_all(plpy, made)


def _table_diff(plpy, repo, table, image_1, image_2, result, made):
    if image_2 is None and meta.require_checkout(plpy, repo)["layered"]:
        image_2 = meta.checkout_state(plpy, repo)["image_hash"]  # read-only views of HEAD: nothing pending
    h1, _ = meta.resolve(plpy, repo, image_1)
    v1 = meta.image_tables(plpy, repo, h1).get(table)
    cols1 = tbl.from_spec(plpy, v1.spec, v1.definition) if v1 else None
    if image_2 is None:
        schema, cols2 = _checkout_table(plpy, repo, table)
        if v1 is None and cols2 is None:
            errors.fail(plpy, errors.UNDEFINED_TABLE, f'table "{table}" is neither in image {h1[:12]} nor in the '
                                                      f'checkout of repository "{repo}"')
        # the live table: read only when the caller may read it, and only what runs no code (42501, 0A000)
        live = tbl.source(plpy, schema, table) if cols2 is not None else None
        same = cols2 is not None and v1 is not None and tbl.same_schema(v1.spec, cols2)
        tracked = tracking.registry(plpy, schema, table) if cols2 is not None else None
        if (same and h1 == meta.checkout_state(plpy, repo)["image_hash"] and tracked is not None
                and tracked["state"] == "tracking"):
            delta = changes.from_log(plpy, tracked, schema, table, cols2)
            if delta is not None:
                _delta_rows(plpy, result, delta)
                delta.drop(plpy)
                return False
        _compare(plpy, result, cols1, changes.materialized(plpy, v1, made), cols2, live)
        return not same
    h2, _ = meta.resolve(plpy, repo, image_2)
    v2 = meta.image_tables(plpy, repo, h2).get(table)
    if v1 is None and v2 is None:
        errors.fail(plpy, errors.UNDEFINED_TABLE, f'table "{table}" is in neither image {h1[:12]} nor {h2[:12]} '
                                                  f'of repository "{repo}"')
    same = v1 is not None and v2 is not None and tbl.schema_key(v1.spec) == tbl.schema_key(v2.spec)
    if same:
        ids1, ids2 = v1.object_ids, v2.object_ids
        if ids1 == ids2:
            return False
        if ids2[:len(ids1)] == ids1:
            _fragment_rows(plpy, result, cols1, ids1, ids2[len(ids1):], reverse=False)
            return False
        if ids1[:len(ids2)] == ids2:
            _fragment_rows(plpy, result, cols1, ids2, ids1[len(ids2):], reverse=True)
            return False
    cols2 = tbl.from_spec(plpy, v2.spec, v2.definition) if v2 else None
    _compare(plpy, result, cols1, changes.materialized(plpy, v1, made), cols2, changes.materialized(plpy, v2, made))
    return not same


@api("diff(repository text, table_name text, image_1 text, image_2 text default null) returns table (action "
     "character(1), row_data jsonb)",
     "diff(repository, table_name, image_1, image_2 = pending state): rows removed (-) and added (+) from "
     "image_1 to image_2; an update is a - of the old row and a + of the new",
     rows="temp")
def diff(plpy, repository, table_name, image_1, image_2=None):
    """Fill a temporary table with the row-level diff and return its name (the SQL function returns its rows)."""
    repo = meta.require(plpy, repository)
    name, result = _result(plpy)
    table_diff(plpy, repo, table_name, image_1, image_2, result)
    return name


def _tables_of(plpy, repo, image):
    if image is None:
        state = meta.require_checkout(plpy, repo)
        if state["layered"]:
            return list(meta.image_tables(plpy, repo, state["image_hash"]))
        return tbl.list_tables(plpy, names.schema_of(repo))
    h, _ = meta.resolve(plpy, repo, image)
    return list(meta.image_tables(plpy, repo, h))


@api("diff_summary(repository text, image_1 text, image_2 text default null) returns table (table_name text, "
     "added integer, removed integer, updated integer, schema_changed boolean)",
     "diff_summary(repository, image_1, image_2 = pending state): per changed table, rows added, removed, "
     "updated, and whether the schema changed")
def diff_summary(plpy, repository, image_1, image_2=None):
    """Live tables of the checkout that the caller may not read are left out (the pending state only)."""
    repo = meta.require(plpy, repository)
    h1, _ = meta.resolve(plpy, repo, image_1)
    summary = []
    for table in sorted(set(_tables_of(plpy, repo, h1)) | set(_tables_of(plpy, repo, image_2))):
        if image_2 is None and not _may_read_pending(plpy, repo, table):
            continue
        name, result = _result(plpy)
        schema_changed = table_diff(plpy, repo, table, h1, image_2, result)
        counts = db.one(plpy, f"""select count(*) filter (where change = 'add') as added,
                                         count(*) filter (where change = 'remove') as removed,
                                         count(*) filter (where change = 'update' and action = '+') as updated
                                  from {result}""")
        plpy.execute(f"drop table {result}")
        if schema_changed or counts["added"] or counts["removed"] or counts["updated"]:
            summary.append({"table_name": table, "added": counts["added"], "removed": counts["removed"],
                            "updated": counts["updated"], "schema_changed": schema_changed})
    return summary


# ---------------------------------------------------------------------------------------------------------------
# The pending changes of checkouts
# ---------------------------------------------------------------------------------------------------------------

def _may_read_pending(plpy, repo, table):
    """Whether the caller may read the live table of a checkout (true when there is none)."""
    schema = names.schema_of(repo)
    return not tbl.exists(plpy, schema, table) or tbl.readable(plpy, schema, table)


# How long status() of every repository waits for a checkout's table that another session holds locked (e.g. an
# open transaction that altered it) before it skips that repository, saying so.
STATUS_LOCK_TIMEOUT = "200ms"


def _why_skip(plpy, repo):
    """For status() of every repository: why a checkout is skipped, or None once the live tables the caller may
    read are share-locked. A table another session holds locked is waited for at most STATUS_LOCK_TIMEOUT; a
    table splitgraph refuses to read (a foreign partition...) skips its repository too, rather than failing the
    whole call."""
    schema = names.schema_of(repo)
    for table in tbl.list_tables(plpy, schema):
        if not tbl.readable(plpy, schema, table):
            continue
        refused = tbl.refusal(plpy, schema, table)
        if refused is not None:
            return refused[1]
        try:
            with plpy.subtransaction(), db.settings(plpy, {"lock_timeout": STATUS_LOCK_TIMEOUT}):
                plpy.execute(f"lock table {names.qualified(schema, table)} in access share mode")
        except plpy.spiexceptions.LockNotAvailable:
            return f'its table "{table}" is locked by another session'
    return None


@api("status(repository text default null) returns setof splitgraph.status_row",
     "status(repository = all): pending changes of checked-out repositories, per changed table: rows added, "
     "removed, updated, and whether the schema changed; tables the caller may not read are left out; status() "
     "of all skips, with a NOTICE, a checkout whose table another session holds locked or cannot be read safely")
def status(plpy, repository=None):
    if repository is None:
        repos = db.column(plpy, "select repository from splitgraph_meta.checkouts order by repository")
    else:
        repos = [meta.require(plpy, repository)]
        meta.require_checkout(plpy, repos[0])
    rows = []
    for repo in repos:
        if repository is None:
            why = _why_skip(plpy, repo)
            if why is not None:
                db.notice(plpy, f'status of repository "{repo}" skipped: {why}')
                continue
        for table in pending.changed_tables_of(plpy, repo, readable_only=True):
            name, result = _result(plpy)
            schema_changed = table_diff(plpy, repo, table, "HEAD", None, result)
            counts = db.one(plpy, f"""select count(*) filter (where change = 'add') as added,
                                             count(*) filter (where change = 'remove') as removed,
                                             count(*) filter (where change = 'update' and action = '+') as updated
                                      from {result}""")
            plpy.execute(f"drop table {result}")
            rows.append({"repository": repo, "table_name": table, "added": counts["added"],
                         "removed": counts["removed"], "updated": counts["updated"],
                         "schema_changed": schema_changed})
    return rows


