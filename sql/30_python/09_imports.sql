-- Import helpers. The import doors run with the caller's rights (they read plain schemas and evaluate queries
-- as the caller); these helpers run with the extension's rights, each checking what the caller may do.

-- import_source_kind(source): 'repository' or 'schema'.
create function splitgraph_internal.import_source_kind(source text) returns text
language plpython3u stable security definer
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.imports import source_kind
    return source_kind(plpy, source)
$$;

-- import_from_image(...): graft tables of an image into the target; no data is copied.
create function splitgraph_internal.import_from_image(
    source_repository text, source_tables text[], target_repository text, target_tables text[], source_image text
) returns text
language plpython3u volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.imports import import_tables
    return import_tables(plpy, source_repository, source_tables, target_repository, target_tables, source_image)
$$;

-- import_check_source(schema, tables): the tables of a plain schema to import exist.
create function splitgraph_internal.import_check_source(source_schema text, source_tables text[]) returns void
language plpython3u stable security definer
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.imports import check_schema_source
    return check_schema_source(plpy, source_schema, source_tables)
$$;

-- import_staged(...): store rows the caller staged in temporary tables as one new image of the target.
create function splitgraph_internal.import_staged(
    source text, source_image text, source_tables text[], staged text[], target_repository text,
    target_tables text[], comment text
) returns text
language plpython3u volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.imports import import_staged
    return import_staged(plpy, source, source_image, source_tables, staged, target_repository, target_tables, comment)
$$;

-- import_sandbox(source, source_image): a schema of read-only views of the source image to evaluate an import
-- query in (a plain schema is its own): {schema, image hash}.
create function splitgraph_internal.import_sandbox(source text, source_image text) returns text[]
language plpython3u volatile security definer
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.imports import query_sandbox
    return query_sandbox(plpy, source, source_image)
$$;

-- import_explain(query, schema): the plan of an import query, planned with the CALLER's rights (no SECURITY
-- DEFINER: planning may evaluate the caller's functions); preparing it proves it is one SELECT.
create function splitgraph_internal.import_explain(query text, schema text) returns text
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.imports import explain_query
    return explain_query(plpy, query, schema)
$$;

-- import_check_plan(source, image, sandbox, plan, query): refuse a query whose text or plan reaches outside its
-- source.
create function splitgraph_internal.import_check_plan(source text, image text, sandbox text, plan text, query text)
returns void
language plpython3u stable security definer
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.imports import check_query_plan
    return check_query_plan(plpy, source, image, sandbox, plan, query)
$$;

-- import_drop_sandbox(schema): drop a scratch schema made by import_sandbox.
create function splitgraph_internal.import_drop_sandbox(sandbox text) returns void
language plpython3u volatile security definer
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.imports import drop_sandbox
    return drop_sandbox(plpy, sandbox)
$$;
