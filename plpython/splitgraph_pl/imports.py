"""Importing tables into a repository: from an image of another repository (no data copied: the same objects),
from a plain schema such as a mountpoint (its rows snapshotted into objects), or from a query's result.

The public functions run with the caller's own rights (SECURITY INVOKER): a plain schema is read and a query
evaluated as the caller, into temporary staging tables. Only the helpers below that are SECURITY DEFINER run
with the extension's rights, each checking what the caller may do: they graft an image's tables, prepare
read-only views of a source image, and store staged rows as a new image.
"""
import json
import re

from . import checkout, db, definitions, errors, fragments, hashing, meta, names
from . import tables as tbl
from .declare import api, helper
from .names import ident


@api("import_tables(source_repository text, source_tables text[], target_repository text, "
     "target_tables text[] default null, source_image text default null) returns text",
     "import_tables(source_repository, source_tables, target_repository, target_tables, source_image): graft "
     "tables of an image (default: the source's HEAD, else latest) into the target as one new commit on its HEAD "
     "without copying data; a plain schema (e.g. a mountpoint) as source has its current rows snapshotted; "
     "pending changes of the target stay pending; returns the new image",
     security="invoker")
def import_tables(plpy, source_repository, source_tables, target_repository, target_tables=None, source_image=None):
    if db.scalar(plpy, "select splitgraph_internal.import_source_kind($1)", source_repository) == "repository":
        result = db.scalar(plpy, "select splitgraph_internal.import_from_image($1, $2::text[], $3, $4::text[], $5)",
                           source_repository, source_tables, target_repository, target_tables, source_image)
        _materialize(plpy, target_repository, target_tables or source_tables)
        return result
    check_schema_source(plpy, source_repository, source_tables)
    staged = []
    for table in source_tables or []:
        staged.append(db.temp_name("sg_stage"))
        plpy.execute(f"create temp table {ident(staged[-1])} as select * from "
                     f"{names.qualified(source_repository, table)}")
    result = db.scalar(plpy, "select splitgraph_internal.import_staged($1, null, $2::text[], $3::text[], $4, "
                             "$5::text[], $6)", source_repository, source_tables, staged, target_repository,
                       target_tables, f"import {', '.join(source_tables or [])} from schema {source_repository}")
    _drop_staged(plpy, staged)
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
     "of one SELECT over the tables of the source image (unqualified; nothing outside the source) as a new "
     "table, in one new commit; a result equal to a source table reuses its objects; returns the new image",
     security="invoker")
def import_query(plpy, source_repository, query, target_repository, target_table, source_image=None):
    sandbox, image = db.scalar(plpy, "select splitgraph_internal.import_sandbox($1, $2)", source_repository,
                               source_image)
    check_query_plan(plpy, source_repository, image, sandbox, explain_query(plpy, query, sandbox), query)
    stage = db.temp_name("sg_stage")
    with db.settings(plpy, {"search_path": f"{ident(sandbox)}, pg_temp"}):
        # the same text explain_query proved to be one SELECT
        plpy.execute(f"create temp table {ident(stage)} as select * from ({query}\n) sg_query")
    result = db.scalar(plpy, "select splitgraph_internal.import_staged($1, $2, null, $3::text[], $4, $5::text[], $6)",
                       source_repository, image, [stage], target_repository, [target_table],
                       f"import query {query} from {source_repository}")
    _drop_staged(plpy, [stage])
    db.run(plpy, "select splitgraph_internal.import_drop_sandbox($1)", sandbox)
    _materialize(plpy, target_repository, [target_table])
    return result


def _materialize(plpy, target, tables):
    """Make the imported tables in the target's checkout, if it has one, as the caller (what evaluates
    expressions, such as CHECK constraints and indexes, runs with the caller's rights)."""
    checkout.materialize_new(plpy, target, list(tables))


def _drop_staged(plpy, staged):
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


def _head_or_latest(plpy, repo):
    """(checkout state or None, image): HEAD of the repository, or its newest image when it is not checked out.
    An import builds on this image of its target, and reads this image of its source unless told otherwise."""
    state = meta.checkout_state(plpy, repo)
    return state, (state["image_hash"] if state is not None else meta.resolve(plpy, repo, "latest")[0])


def _source_image(plpy, repo, image):
    """The image to import from: the one named, else the source's HEAD, else its newest."""
    return meta.resolve(plpy, repo, image)[0] if image is not None else _head_or_latest(plpy, repo)[1]


def _commit_tables(plpy, target, new_tables, comment):
    """One new image on top of the target's base with every table of the base plus `new_tables`
    ({name: TableVersion}); the new tables are materialized in the checkout. Pending changes of the other
    tables stay pending: their logs still describe the same state."""
    state, base = _head_or_latest(plpy, target)
    existing = set(meta.image_tables(plpy, target, base))
    if state is not None and not state["layered"]:
        existing |= set(tbl.list_tables(plpy, names.schema_of(target)))
    for name in new_tables:
        if name in existing:
            errors.fail(plpy, "42P07", f'table "{name}" already exists in repository "{target}"',
                        hint="import it under another name (target_table), or drop it first")
    image_hash = meta.new_image(plpy, target, base, comment, with_parent_tables=True)
    for name, version in new_tables.items():
        meta.add_table(plpy, target, image_hash, name, version.spec, version.object_ids, version.definition)
    if state is not None:
        # the public function that called this makes the new tables in the checkout (_materialize)
        meta.move_head(plpy, target, state, image_hash)
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
    image = _source_image(plpy, source_repository, source_image)
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


@helper("import_staged(source text, source_image text, source_tables text[], staged text[], "
        "target_repository text, target_tables text[], comment text) returns text",
        "import_staged(...): store rows the caller staged in temporary tables as one new image of the target",
        public=True)
def import_staged(plpy, source, source_image, source_tables, staged, target_repository, target_tables, comment):
    """Store staged rows (temporary tables the caller filled, one per target table) as snapshots and commit them
    into the target as one new image. A staged table holding exactly the rows and columns of a table of the
    source image reuses that table's objects (and its primary key)."""
    target = meta.writable(plpy, target_repository)
    target_tables = _target_names(plpy, source_tables or staged, target_tables)
    temp_schema = db.scalar(plpy, "select pg_catalog.pg_my_temp_schema()::regnamespace::text")
    keys = {}
    for stage, table in zip(staged, source_tables or [], strict=False):
        # a staged copy of a table keeps that table's primary key
        keys[stage] = db.column(plpy, """
            select a.attname::text from pg_catalog.pg_index i
            join pg_catalog.pg_attribute a on a.attrelid = i.indrelid and a.attnum = any(i.indkey)
            where i.indisprimary and i.indrelid = pg_catalog.to_regclass(pg_catalog.format('%I.%I', $1::text, $2::text))
            """, source, table)
    reusable = {}
    if source_image is not None:
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
    return _commit_tables(plpy, target, new, comment)


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


# ---------------------------------------------------------------------------------------------------------------
# Queries against an image
# ---------------------------------------------------------------------------------------------------------------

# A query that is not exactly one SELECT fails to open as a cursor of a subquery with one of these.
_NOT_ONE_SELECT = ("42601", "42P11", "0A000")


def explain_query(plpy, query, schema):
    """The plan (JSON) of an import query, planned with the caller's rights with `schema` first on the search
    path. Wrapped as a subquery and opened as a cursor it can only be one SELECT: a second statement makes a
    multi-query plan (refused before anything runs), a data-changing statement or an INTO a syntax error."""
    try:
        with plpy.subtransaction(), db.settings(plpy, {"search_path": f"{ident(schema)}, pg_temp"}):
            cursor = plpy.cursor(f"explain (verbose, format json) select * from ({query}\n) sg_query")
            return cursor.fetch(1)[0]["QUERY PLAN"]
    except plpy.SPIError as error:
        state = getattr(error, "sqlstate", None)
        message = str(error).split("\n")[0]
        if state in _NOT_ONE_SELECT:
            errors.fail(plpy, "42601", "an import query must be exactly one SELECT over the source's tables",
                        detail=message)
        errors.fail(plpy, state or "42000", f"the import query fails: {message}")


# Built-in functions (of pg_catalog, not named pg_*) that read relations or server state by name or run a query
# given as text: with them a query could read any table or catalog whatever its plan shows.
_READS_BY_NAME = frozenset("""
    query_to_xml query_to_xmlschema query_to_xml_and_xmlschema table_to_xml table_to_xmlschema
    table_to_xml_and_xmlschema cursor_to_xml cursor_to_xmlschema schema_to_xml schema_to_xmlschema
    schema_to_xml_and_xmlschema database_to_xml database_to_xmlschema database_to_xml_and_xmlschema ts_stat
    ts_rewrite nextval currval setval lastval lo_get lo_export lo_import lo_open lo_from_bytea loread
    obj_description col_description shobj_description has_table_privilege has_column_privilege
    has_any_column_privilege has_schema_privilege has_database_privilege has_function_privilege
    has_sequence_privilege has_foreign_data_wrapper_privilege has_server_privilege has_language_privilege
    has_tablespace_privilege has_type_privilege has_parameter_privilege to_regclass to_regproc to_regprocedure
    to_regoper to_regoperator to_regtype to_regnamespace to_regrole to_regcollation current_setting set_config
    inet_server_addr inet_server_port inet_client_addr inet_client_port version dblink
""".split())
# Lexical pieces of SQL text that are not code: comments, string literals (plain, E'', dollar-quoted) and
# quoted identifiers (kept, since a schema can be named by one).
_SQL_TOKENS = re.compile(r"--[^\n]*|/\*|\$([A-Za-z_]\w*)?\$|(?<![\w$])[Ee]'(?:[^'\\]|\\.|'')*'|'(?:[^']|'')*'"
                         r'|"(?:[^"]|"")+"')
_NAME = r'(?:"(?:[^"]|"")+"|[A-Za-z_][\w$]*)'
# A function call, perhaps schema-qualified: (schema or "", function).
_CALL = re.compile(rf'(?<![\w$."])(?:({_NAME})\s*\.\s*)?({_NAME})\s*\(')
_OPERATOR = re.compile(rf"\bOPERATOR\s*\(\s*({_NAME})\s*\.", re.IGNORECASE)


def _code_of(query):
    """The query with comments and string literals blanked out (quoted identifiers kept)."""
    out, pos = [], 0
    while True:
        match = _SQL_TOKENS.search(query, pos)
        if match is None:
            out.append(query[pos:])
            return "".join(out)
        out.append(query[pos:match.start()])
        token = match.group(0)
        if token.startswith('"'):
            out.append(token)
            pos = match.end()
        elif token == "/*":
            depth, end = 1, match.end()
            while depth and end < len(query):
                if query.startswith("/*", end):
                    depth, end = depth + 1, end + 2
                elif query.startswith("*/", end):
                    depth, end = depth - 1, end + 2
                else:
                    end += 1
            out.append(" ")
            pos = end
        elif token.startswith("$"):
            end = query.find(token, match.end())
            out.append(" ''")
            pos = len(query) if end < 0 else end + len(token)
        else:
            out.append(" '' ")
            pos = match.end()


def _unquote(name):
    return name[1:-1].replace('""', '"') if name.startswith('"') else name.lower()


def _reaches_out(text, schemas):
    """Problems with SQL text (an import query, or an expression of its plan): a call of a function, or use of an
    operator, of a schema not in `schemas`; a call of a catalog function (pg_*) or of one that reads relations or
    server state by name."""
    code = _code_of(text)
    problems = []
    for schema, function in _CALL.findall(code):
        schema, function = _unquote(schema) if schema else None, _unquote(function)
        if schema is not None and schema not in schemas:
            problems.append(f"it calls {schema}.{function} from another schema")
        elif function.startswith("pg_"):
            problems.append(f"it calls {function}, which reaches into the server's catalogs")
        elif function in _READS_BY_NAME:
            problems.append(f"it calls {function}, which reads relations or server state by name")
    for schema in _OPERATOR.findall(code):
        if _unquote(schema) not in schemas:
            problems.append(f"it uses an operator of schema {_unquote(schema)}")
    return problems


def allowed_relations(plpy, source, image, sandbox):
    """What an import query may read: the fragments of the source image's tables (which the sandbox's views
    read), or for a plain schema its tables and what its views read."""
    if image is not None:
        ids = db.column(plpy, """select distinct unnest(object_ids) from splitgraph_meta.tables
                                 where repository = $1 and image_hash = $2""", source, image)
        return {(fragments.META, i) for i in ids}
    rows = db.run(plpy, """
        select n.nspname::text as schema, c.relname::text as name
        from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace where n.nspname = $1
        union
        select rn.nspname::text, rc.relname::text
        from pg_catalog.pg_class v join pg_catalog.pg_namespace vn on vn.oid = v.relnamespace
        join pg_catalog.pg_rewrite r on r.ev_class = v.oid
        join pg_catalog.pg_depend d on d.classid = 'pg_catalog.pg_rewrite'::regclass and d.objid = r.oid
        join pg_catalog.pg_class rc on rc.oid = d.refobjid
        join pg_catalog.pg_namespace rn on rn.oid = rc.relnamespace
        where vn.nspname = $1""", source)
    return {(r["schema"], r["name"]) for r in rows}


def check_query_plan(plpy, source, image, sandbox, plan, query):
    """Refuse an import query whose plan reads relations other than the source's (allowed_relations) or whose
    plan or text reaches outside the source (_reaches_out). The plan names a function with its schema only when
    it is not on the search path; the text is checked too because the planner inlines simple SQL functions,
    which leaves no trace of them in the plan."""
    allowed = allowed_relations(plpy, source, image, sandbox)
    problems = _reaches_out(query, {"pg_catalog", source, sandbox})

    def walk(node):
        if isinstance(node, dict):
            if "Relation Name" in node and (node.get("Schema"), node["Relation Name"]) not in allowed:
                problems.append(f'it reads "{node.get("Schema")}"."{node["Relation Name"]}", which is not '
                                "a table of the source")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)
        elif isinstance(node, str):
            problems.extend(_reaches_out(node, {"pg_catalog"}))

    walk(json.loads(plan) if isinstance(plan, str) else plan)
    if problems:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "the import query reaches outside its source: " + problems[0],
                    hint="refer only to the tables of the source, unqualified")


@helper("import_sandbox(source text, source_image text) returns text[]",
        "import_sandbox(source, source_image): a schema of read-only views of the source image to evaluate an "
        "import query in (a plain schema is its own): {schema, image hash}", public=True)
def query_sandbox(plpy, source, source_image):
    """A scratch schema of read-only views of a source image's tables (or the plain schema itself) to evaluate
    an import query in; returns [schema, image hash or None]."""
    if source_kind(plpy, source) == "schema":
        return [source, None]
    image = _source_image(plpy, source, source_image)
    tables = meta.image_tables(plpy, source, image)
    sandbox = db.temp_name("sg_query")
    plpy.execute(f"create schema {ident(sandbox)}; grant usage on schema {ident(sandbox)} to public")
    for table, version in tables.items():
        cols = tbl.as_trusted(tbl.from_spec(plpy, version.spec, version.definition))
        fragments.layered_view(plpy, sandbox, table, cols, version.object_ids)
        plpy.execute(f"grant select on {names.qualified(sandbox, table)} to public")
    return [sandbox, image]


@helper("import_drop_sandbox(sandbox text) returns void",
        "import_drop_sandbox(schema): drop a scratch schema made by import_sandbox", public=True)
def drop_sandbox(plpy, sandbox):
    if sandbox.startswith("sg_query_"):
        with db.settings(plpy, {"client_min_messages": "warning"}):
            plpy.execute(f"drop schema if exists {ident(sandbox)} cascade")
