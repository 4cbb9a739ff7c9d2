-- table_info: the body of splitgraph.table_info.
create function splitgraph_internal.table_info(repository text, image text, table_name text)
returns jsonb
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.objects import table_info
    return table_info(plpy, repository, image, table_name)
$$;

-- object_info: the body of splitgraph.object_info.
create function splitgraph_internal.object_info(object_id text)
returns jsonb
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.objects import object_info
    return object_info(plpy, object_id)
$$;

-- cleanup: the body of splitgraph.cleanup.
create function splitgraph_internal.cleanup()
returns integer
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.objects import cleanup
    return cleanup(plpy)
$$;

-- dump_object: the body of splitgraph.dump_object.
create function splitgraph_internal.dump_object(object_id text)
returns bytea
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.objects import dump_object
    return dump_object(plpy, object_id)
$$;

-- load_object: the body of splitgraph.load_object.
create function splitgraph_internal.load_object(object_id text, data bytea)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.objects import load_object
    return load_object(plpy, object_id, data)
$$;

-- apply_fragments: the body of splitgraph.apply_fragments.
create function splitgraph_internal.apply_fragments(object_ids text[], target_schema text, target_table text, extra_quals text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.objects import apply_fragments
    return apply_fragments(plpy, object_ids, target_schema, target_table, extra_quals)
$$;
