-- status: the body of splitgraph.status.
create function splitgraph_internal.status(repository text)
returns setof splitgraph.status_row
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.diffs import status
    return status(plpy, repository)
$$;

-- reset: the body of splitgraph.reset.
create function splitgraph_internal.reset(repository text, table_name text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.diffs import reset
    return reset(plpy, repository, table_name)
$$;

-- diff: the body of splitgraph.diff.
create function splitgraph_internal.diff(repository text, table_name text, image_1 text, image_2 text)
returns text
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.diffs import diff
    return diff(plpy, repository, table_name, image_1, image_2)
$$;

-- diff_summary: the body of splitgraph.diff_summary.
create function splitgraph_internal.diff_summary(repository text, image_1 text, image_2 text)
returns table (table_name text, added integer, removed integer, updated integer, schema_changed boolean)
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.diffs import diff_summary
    return diff_summary(plpy, repository, image_1, image_2)
$$;
