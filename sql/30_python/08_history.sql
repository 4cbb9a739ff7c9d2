-- delete_image: the body of splitgraph.delete_image.
create function splitgraph_internal.delete_image(repository text, image text)
returns integer
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.images import delete_image
    return delete_image(plpy, repository, image)
$$;

-- prune: the body of splitgraph.prune.
create function splitgraph_internal.prune(repository text)
returns integer
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.images import prune
    return prune(plpy, repository)
$$;

-- store_fragment: the body of splitgraph.store_fragment.
create function splitgraph_internal.store_fragment(schema text, table_name text, snapshot boolean, chunk_size integer)
returns text[]
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.images import store_fragment
    return store_fragment(plpy, schema, table_name, snapshot, chunk_size)
$$;
