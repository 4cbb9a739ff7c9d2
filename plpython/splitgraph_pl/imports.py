"""Importing tables into a repository: from an image of another repository (no data copied: the same objects),
from a plain schema such as a mountpoint (its rows snapshotted into objects), or from a query's result.

The public functions run with the caller's own rights (SECURITY INVOKER): a plain schema is read and a query
evaluated as the caller. Their rows go into staging tables that import_stage makes for the caller (owned by the
extension, so that the caller can put nothing on them that would run when they are read: it may only insert
into them), and import_staged stores those rows as a new image. An import query reads a source image through
splitgraph_internal.fragment_rows, inside the query's own text (WITH queries named like the source's tables):
nothing is created for it, so nothing is left behind and nothing comes to depend on an object table.
"""
import json

from . import checkout, db, definitions, errors, fragments, hashing, meta, names, queries
from . import tables as tbl
from .declare import api, helper
from .names import ident

# The longest comment an image can have (splitgraph_meta.images).
COMMENT_LENGTH = 4096


@api("import_tables(source_repository text, source_tables text[], target_repository text, "
     "target_tables text[] default null, source_image text default null) returns text",
     "import_tables(source_repository, source_tables, target_repository, target_tables, source_image): graft "
     "tables of an image (default: the source's HEAD, else latest) into the target as one new commit on its HEAD "
     "(on branch main, which moves, when the target is not checked out) without copying data; a plain schema "
     "(e.g. a mountpoint) as source has its current rows snapshotted; pending changes of the target stay pending; "
     "returns the new image",
     security="invoker")
def import_tables(plpy, source_repository, source_tables, target_repository, target_tables=None, source_image=None):
    if db.scalar(plpy, "select splitgraph_internal.import_source_kind($1)", source_repository) == "repository":
        result = db.scalar(plpy, "select splitgraph_internal.import_from_image($1, $2::text[], $3, $4::text[], $5)",
                           source_repository, source_tables, target_repository, target_tables, source_image)
        _materialize(plpy, target_repository, target_tables or source_tables)
        return result
    check_schema_source(plpy, source_repository, source_tables)
    staged = stage_selects(plpy, [f"select * from {names.qualified(source_repository, table)}"
                                  for table in source_tables or []])
    result = db.scalar(plpy, "select splitgraph_internal.import_staged($1, null, $2::text[], $3::text[], $4, "
                             "$5::text[], $6)", source_repository, source_tables, staged, target_repository,
                       target_tables, f"import {', '.join(source_tables or [])} from schema {source_repository}")
    _materialize(plpy, target_repository, target_tables or source_tables)
    return result


@api("import_table(source_repository text, source_table text, target_repository text, "
     "target_table text default null, source_image text default null) returns text",
     "import_table(source_repository, source_table, target_repository, target_table, source_image): "
     "import_tables for one table; returns the new image",
     security="invoker")
def import_table(plpy, source_repository, source_table, target_repository, target_table=None, source_image=None):
    return import_tables(plpy, source_repository, [source_table], target_repository,
                         None if target_table is None else [target_table], source_image)


@api("import_query(source_repository text, query text, target_repository text, target_table text, "
     "source_image text default null) returns text",
     "import_query(source_repository, query, target_repository, target_table, source_image): import the result "
     "of one SELECT over the tables of the source image (unqualified; nothing outside the source; built-in "
     "functions only, none that changes anything) as a new table, in one new commit; a result equal to a source "
     "table reuses its objects; returns the new image",
     security="invoker")
def import_query(plpy, source_repository, query, target_repository, target_table, source_image=None):
    kind = db.scalar(plpy, "select splitgraph_internal.import_source_kind($1)", source_repository)
    if kind == "repository":
        source = json.loads(db.scalar(plpy, "select splitgraph_internal.import_image_tables($1, $2)::text",
                                      source_repository, source_image))
        image = source["image"]
        _, select = image_query(plpy, source["tables"], query)
    else:
        image = None
        _, select = schema_query(plpy, source_repository, query)
    staged = stage_query(plpy, select)
    result = db.scalar(plpy, "select splitgraph_internal.import_staged($1, $2, null, $3::text[], $4, $5::text[], $6)",
                       source_repository, image, staged, target_repository, [target_table],
                       f"import query {query} from {source_repository}")
    _materialize(plpy, target_repository, [target_table])
    return result


def image_query(plpy, tables, query):
    """(the query's text as checked, a SELECT of its result) for a query over an image whose tables are
    `tables` (import_image_tables: name -> {spec, definition, objects}), to run as the caller: it reads the
    objects through fragment_rows, in WITH queries named like the tables."""
    text, read, _ = queries.check(plpy, query, tables)
    columns = {name: tbl.from_spec(plpy, tables[name]["spec"], tables[name]["definition"]) for name in sorted(read)}
    reads = {name: fragments.layered_select(cols, tables[name]["objects"], as_caller=True)
             for name, cols in columns.items()}
    queries.check_types(plpy, [c.type for cols in columns.values() for c in cols])
    return text, _with_reads(text, reads)


def schema_query(plpy, schema, query):
    """(the query's text as checked, a SELECT of its result) for a query over a plain schema (a mountpoint)."""
    text, read, direct = queries.check(plpy, query, _relations(plpy, schema), schema=schema)
    reads = {name: f"select * from {names.qualified(schema, name)}" for name in sorted(read)}
    queries.check_types(plpy, db.column(plpy, """
        select pg_catalog.format_type(a.atttypid, null) from pg_catalog.pg_attribute a
        where a.attrelid in (select c.oid from pg_catalog.pg_class c
                             join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                             where n.nspname = $1 and c.relname = any($2::text[]))
          and a.attnum > 0 and not a.attisdropped""", schema, sorted(read | direct)))
    return text, _with_reads(text, reads)


def _with_reads(text, reads):
    ctes = ", ".join(f"{ident(name)} as ({body})" for name, body in reads.items())
    return (f"with {ctes} " if ctes else "") + f"select * from (\n{text}\n) as sg_query"


def _relations(plpy, schema):
    """What a query over a plain schema may read: the names of the schema's tables, views and foreign tables."""
    return db.column(plpy, """select c.relname::text from pg_catalog.pg_class c
                              join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                              where n.nspname = $1 and c.relkind in ('r', 'p', 'f', 'v', 'm')""", schema)


def schema_relations(plpy, schema):
    """The tables, views and foreign tables of a plain schema, by name."""
    return sorted(_relations(plpy, schema))


def stage_selects(plpy, selects):
    """Run each SELECT once, as the caller, into a staging table that import_stage makes; returns their names.
    The result's columns are learnt from an empty table of the caller's (the SELECT planned, not run).
    Functions resolve in pg_catalog only (queries.check saw to the rest)."""
    templates = [db.temp_name("sg_template") for _ in selects]
    with db.settings(plpy, {"search_path": "pg_catalog, pg_temp"}):
        for template, select in zip(templates, selects, strict=True):
            plpy.execute(f"create temp table {ident(template)} as {select} with no data")
        staged = db.scalar(plpy, "select splitgraph_internal.import_stage($1::text[])", templates) \
            if templates else []
        for stage, select in zip(staged, selects, strict=True):
            plpy.execute(f"insert into pg_temp.{ident(stage)} {select}")
    drop_staged(plpy, templates)
    return staged


def stage_query(plpy, select):
    """stage_selects for one query's SELECT; its failure is the query's (the message says so)."""
    try:
        return stage_selects(plpy, [select])
    except plpy.SPIError as error:
        errors.fail(plpy, getattr(error, "sqlstate", None) or "42000",
                    f"the import query fails: {str(error).splitlines()[0]}")


def _materialize(plpy, target, tables):
    """Make the imported tables in the target's checkout, if it has one, as the caller (what evaluates
    expressions, such as CHECK constraints and indexes, runs with the caller's rights)."""
    checkout.materialize_new(plpy, target, list(tables))


def drop_staged(plpy, staged):
    if staged:
        plpy.execute("drop table " + ", ".join(f"pg_temp.{ident(s)}" for s in staged))


def _target_names(plpy, source_tables, target_tables):
    if not source_tables:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "name at least one table to import")
    if target_tables is None:
        target_tables = list(source_tables)
    if len(target_tables) != len(source_tables):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                    f"{len(source_tables)} source tables but {len(target_tables)} target tables",
                    hint="give one target name per source table, or none to keep the names")
    for name in list(source_tables) + list(target_tables):
        names.table(plpy, name)
    if len(set(target_tables)) != len(target_tables):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "a target table is named twice")
    return list(target_tables)


def source_image_of(plpy, repo, image):
    """The image to import from: the one named, else the source's HEAD, else its newest."""
    if image is not None:
        return meta.resolve(plpy, repo, image)[0]
    state = meta.checkout_state(plpy, repo)
    return state["image_hash"] if state is not None else meta.resolve(plpy, repo, "latest")[0]


def _target_base(plpy, target):
    """(checkout state or None, image): what an import into the target builds on. A checkout's HEAD; else the
    head of branch main, which the import then moves (an image no branch reaches would be lost to prune)."""
    state = meta.checkout_state(plpy, target)
    if state is not None:
        return state, state["image_hash"]
    main = db.scalar(plpy, "select image_hash from splitgraph_meta.branches where repository = $1 and branch = 'main'",
                     target)
    if main is None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'repository "{target}" is not checked out and has no branch main for the import to move',
                    hint="check out the branch (or image) to import onto first, or create branch main")
    return None, main


def _comment(text):
    """A generated commit comment, cut to the length an image's comment may have."""
    return text if len(text) <= COMMENT_LENGTH else text[:COMMENT_LENGTH - 3] + "..."


def _commit_tables(plpy, target, new_tables, comment):
    """One new image on top of the target's base (_target_base) with every table of the base plus `new_tables`
    ({name: TableVersion}); the new tables are materialized in the checkout. Pending changes of the other
    tables stay pending: their logs still describe the same state."""
    state, base = _target_base(plpy, target)
    image_hash = commit_tables(plpy, target, base, new_tables, comment, state)
    if state is not None:
        # the public function that called this makes the new tables in the checkout (_materialize)
        meta.move_head(plpy, target, state, image_hash)
    else:
        db.run(plpy, "update splitgraph_meta.branches set image_hash = $2 where repository = $1 and branch = 'main'",
               target, image_hash)
    return image_hash


def commit_tables(plpy, target, parent, new_tables, comment, state=None, image_hash=None, provenance=None):
    """A new image of the target on top of `parent` with every table of the parent plus `new_tables` ({name:
    TableVersion}), none of which may exist already (42P07: in the parent, or, when `state` is the checkout's
    state at the parent, in the checkout); returns its hash (image_hash, or a random one). Moves nothing."""
    existing = set(meta.image_tables(plpy, target, parent))
    if state is not None and not state["layered"]:
        existing |= set(tbl.list_tables(plpy, names.schema_of(target)))
    for name in new_tables:
        if name in existing:
            errors.fail(plpy, "42P07", f'table "{name}" already exists in repository "{target}"',
                        hint="import it under another name (target_table), or drop it first")
    image_hash = meta.new_image(plpy, target, parent, _comment(comment), with_parent_tables=True,
                                image_hash=image_hash, provenance=provenance)
    for name, version in new_tables.items():
        meta.add_table(plpy, target, image_hash, name, version.spec, version.object_ids, version.definition)
    return image_hash


@helper("import_source_kind(source text) returns text",
        "import_source_kind(source): 'repository' or 'schema' (a plain schema, e.g. a mountpoint)",
        volatility="stable", public=True)
def source_kind(plpy, source):
    """"repository" or "schema" (a plain schema, e.g. a mountpoint), or an error naming the source."""
    if source is not None and names.is_repository(source) and meta.exists(plpy, source):
        return "repository"
    if source is not None and db.schema_exists(plpy, source):
        return "schema"
    errors.fail(plpy, errors.UNDEFINED_OBJECT, f'repository or schema "{source}" does not exist')


@helper("import_from_image(source_repository text, source_tables text[], target_repository text, "
        "target_tables text[], source_image text) returns text",
        "import_from_image(...): graft tables of an image into the target; no data is copied", public=True)
def import_from_image(plpy, source_repository, source_tables, target_repository, target_tables, source_image):
    """Graft tables of an image of another repository into the target as one new image: no data is copied."""
    target = meta.writable(plpy, target_repository)
    target_tables = _target_names(plpy, source_tables, target_tables)
    image = source_image_of(plpy, source_repository, source_image)
    available = meta.image_tables(plpy, source_repository, image)
    new = {}
    for source, name in zip(source_tables, target_tables, strict=True):
        if source not in available:
            errors.fail(plpy, errors.UNDEFINED_TABLE, f'table "{source}" not found in image {image[:12]} of '
                                                      f'repository "{source_repository}"')
        new[name] = available[source]
    return _commit_tables(plpy, target, new, f"import {', '.join(source_tables)} from {source_repository}:{image[:12]}")


def check_schema_source(plpy, source_schema, source_tables):
    """The tables of a plain schema to import must exist (they are copied with the caller's rights)."""
    for table in source_tables or []:
        kind = db.scalar(plpy, """select c.relkind::text from pg_catalog.pg_class c
                                  join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                                  where n.nspname = $1 and c.relname = $2""", source_schema, table)
        if kind not in ("r", "p", "f", "v", "m"):
            errors.fail(plpy, errors.UNDEFINED_TABLE, f'table "{source_schema}"."{table}" does not exist')


@helper("import_image_tables(source text, source_image text) returns jsonb",
        "import_image_tables(source, source_image): {image, tables: {name: {spec, definition, objects: "
        "[{object_id, inserts_only}]}}} of a source image, for an import query to read it through fragment_rows",
        volatility="stable", public=True)
def image_tables(plpy, source, source_image):
    """What invoker code needs to read an image's tables through fragment_rows (every role may read every
    repository): the image (source_image, else the source's HEAD, else its newest) and for each table its stored
    schema and definition (its columns' storage types among them) and its objects in order, each saying whether
    it only inserts rows."""
    repo = meta.require(plpy, source)
    image = source_image_of(plpy, repo, source_image)
    versions = meta.image_tables(plpy, repo, image)
    inserts_only = {r["object_id"]: r["inserts_only"] for r in db.run(plpy, """
        select o.object_id, o.rows_deleted = 0 and o.deletion_hash = $2 as inserts_only
        from splitgraph_meta.objects o where o.object_id = any($1::text[])""",
        sorted({i for v in versions.values() for i in v.object_ids}), hashing.ZERO)}
    return json.dumps({"image": image, "tables": {
        name: {"spec": v.spec, "definition": v.definition,
               "objects": [{"object_id": i, "inserts_only": inserts_only.get(i, False)} for i in v.object_ids]}
        for name, v in versions.items()}})


@helper("import_stage(templates text[]) returns text[]",
        "import_stage(templates): for each of the caller's temporary tables named, an empty staging table with "
        "its columns that the caller may insert into (and read back) and import_staged reads; returns their names",
        public=True)
def stage(plpy, templates):
    """Staging tables for rows the caller computes: temporary (this session only), owned by the extension, so
    the caller can only insert into them and read them back (no trigger, rule, policy or index of the caller's
    can be put on them), and dropped when the transaction ends. Only the column definitions of each template are
    read, from the catalog: its rows never are."""
    staged = []
    for template in templates or []:
        found = db.one(plpy, """select n.nspname::text as schema from pg_catalog.pg_class c
                                join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                                where c.relnamespace = pg_catalog.pg_my_temp_schema() and c.relname = $1
                                  and c.relkind = 'r'""", template)
        if found is None:
            errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                        f'"{template}" is not a table in this session\'s temporary schema',
                        hint="import_stage takes the columns of the caller's own temporary tables only")
        cols = tbl.columns(plpy, found["schema"], template)
        name = db.temp_name("sg_stage")
        plpy.execute(f"create temporary table {ident(name)} ({tbl.column_definitions(cols)}) on commit drop;\n"
                     f"grant insert, select on table pg_temp.{ident(name)} to public")
        staged.append(name)
    return staged


def check_staged(plpy, staged):
    """The schema of the staging tables: each must be one import_stage made in this session (a plain table of
    this session's temporary schema that the extension owns and nothing inherits from), else 42501."""
    for stage in staged:
        ok = db.scalar(plpy, """
            select c.relkind = 'r' and c.relowner = (select r.oid from pg_catalog.pg_roles r
                                                     where r.rolname = current_user)
                   and not c.relhassubclass and not c.relispartition and not c.relrowsecurity
            from pg_catalog.pg_class c
            where c.relnamespace = pg_catalog.pg_my_temp_schema() and c.relname = $1""", stage)
        if not ok or not stage.startswith("sg_stage_"):
            errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'"{stage}" is not a staging table of this session',
                        hint="import_staged reads only the tables splitgraph_internal.import_stage made")
    return db.scalar(plpy, "select pg_catalog.pg_my_temp_schema()::regnamespace::text")


@helper("import_staged(source text, source_image text, source_tables text[], staged text[], "
        "target_repository text, target_tables text[], comment text) returns text",
        "import_staged(...): store the rows of staging tables (made by import_stage, filled by the caller) as one "
        "new image of the target, and drop them",
        public=True)
def import_staged(plpy, source, source_image, source_tables, staged, target_repository, target_tables, comment):
    """Store staged rows (staging tables the caller filled, one per target table) as snapshots and commit them
    into the target as one new image. A staged table holding exactly the rows and columns of a table of the
    source image reuses that table's objects (and its primary key)."""
    target = meta.writable(plpy, target_repository)
    staged = list(staged or [])
    target_tables = _target_names(plpy, source_tables or staged, target_tables)
    if len(staged) != len(target_tables):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"{len(staged)} staging tables for {len(target_tables)} "
                                                          "target tables")
    temp_schema = check_staged(plpy, staged)
    keys = schema_keys(plpy, source, source_tables, staged)
    new = store_staged(plpy, target, staged, target_tables, keys, source, source_image, temp_schema)
    drop_staged(plpy, staged)
    return _commit_tables(plpy, target, new, comment or "import")


def schema_keys(plpy, schema, tables, staged):
    """{staging table: primary key columns} of staged copies of tables of a plain schema (paired in order; a
    staged query result, past the tables, has none)."""
    keys = {}
    for stage, table in zip(staged, tables or [], strict=False):
        keys[stage] = db.column(plpy, """
            select a.attname::text from pg_catalog.pg_index i
            join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
            where i.indisprimary and i.indrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))
            """, schema, table)
    return keys


def store_staged(plpy, target, staged, target_tables, keys, source, source_image, temp_schema):
    """{target table: TableVersion} of staging tables (checked: check_staged): each stored as a snapshot, unless
    it holds exactly the rows and columns of a table of the source image, whose objects it then reuses. keys:
    {staging table: primary key columns}."""
    reusable = {}
    if source_image is not None and source is not None:
        for version in meta.image_tables(plpy, source, source_image).values():
            reusable.setdefault(tuple((c[1], c[2]) for c in version.spec), []).append(version)
    namespace = names.namespace_of(target)
    new = {}
    for stage, name in zip(staged, target_tables, strict=True):
        cols = tbl.columns(plpy, temp_schema, stage)
        for c in cols:
            c.is_pk = c.name in keys.get(stage, ())
        if not meta.caller_is_admin(plpy):
            tbl.check_trusted_types(plpy, name, cols)
        tbl.check_storable(plpy, name, cols)
        relation = names.qualified(temp_schema, stage)
        reused = _same_rows(plpy, relation, cols, reusable.get(tuple((c.name, c.type) for c in cols), []))
        if reused is not None:
            new[name] = reused
            continue
        object_ids = fragments.store_snapshot(plpy, temp_schema, stage, cols, fragments.DEFAULT_CHUNK_SIZE,
                                              namespace)
        new[name] = meta.TableVersion([c.spec() for c in cols], object_ids, definitions.minimal(cols))
    return new


def _same_rows(plpy, relation, cols, candidates):
    """A stored TableVersion whose rows are exactly the staged ones, if any: same columns and the same content
    hash (the sum of its fragments' content hashes)."""
    if not candidates:
        return None
    staged = fragments.hash_groups(plpy, relation, cols).get(None)
    if staged is None:
        return None
    for version in candidates:
        rows = db.run(plpy, """select o.insertion_hash, o.deletion_hash from pg_catalog.unnest($1::text[]) u(id)
                               join splitgraph_meta.objects o on o.object_id = u.id""", version.object_ids)
        content = hashing.total(hashing.content_hash(r["insertion_hash"], r["deletion_hash"]) for r in rows)
        if content == staged["insertion_hash"]:
            return version
    return None
