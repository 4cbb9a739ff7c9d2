-- track_tables: the body of splitgraph.track_tables.
create function splitgraph_internal.track_tables(schema text, tables text[])
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.tracking import track_tables
    return track_tables(plpy, schema, tables)
$$;

-- untrack_tables: the body of splitgraph.untrack_tables.
create function splitgraph_internal.untrack_tables(schema text, tables text[])
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.tracking import untrack_tables
    return untrack_tables(plpy, schema, tables)
$$;

-- tracked_tables: the body of splitgraph.tracked_tables.
create function splitgraph_internal.tracked_tables()
returns table (schema_name text, table_name text)
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.tracking import tracked_tables
    return tracked_tables(plpy)
$$;

-- has_pending_changes: the body of splitgraph.has_pending_changes.
create function splitgraph_internal.has_pending_changes(schema text)
returns boolean
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.tracking import has_pending_changes
    return has_pending_changes(plpy, schema)
$$;

-- changed_tables: the body of splitgraph.changed_tables.
create function splitgraph_internal.changed_tables(schema text)
returns text[]
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.tracking import changed_tables
    return changed_tables(plpy, schema)
$$;

-- get_pending_changes: the body of splitgraph.get_pending_changes.
create function splitgraph_internal.get_pending_changes(schema text, table_name text, aggregate boolean)
returns text
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.tracking import get_pending_changes
    return get_pending_changes(plpy, schema, table_name, aggregate)
$$;

-- discard_pending_changes: the body of splitgraph.discard_pending_changes.
create function splitgraph_internal.discard_pending_changes(schema text, table_name text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.tracking import discard_pending_changes
    return discard_pending_changes(plpy, schema, table_name)
$$;
