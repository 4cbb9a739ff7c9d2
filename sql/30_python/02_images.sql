-- commit: the body of splitgraph.commit.
create function splitgraph_internal.commit(repository text, comment text, snapshot boolean,
    chunk_size integer, index_options jsonb)
returns text
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.images import commit
    return commit(plpy, repository, comment, snapshot, chunk_size, index_options)
$$;

-- log: the body of splitgraph.log.
create function splitgraph_internal.log(repository text, image text)
returns table (image_hash text, parent_id text, created timestamptz, comment text, tags text[])
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.images import log
    return log(plpy, repository, image)
$$;

-- images: the body of splitgraph.images.
create function splitgraph_internal.images(repository text)
returns table (image_hash text, parent_id text, created timestamptz, comment text, tags text[])
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.images import images
    return images(plpy, repository)
$$;

-- show: the body of splitgraph.show.
create function splitgraph_internal.show(repository text, image text)
returns jsonb
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.images import show
    return show(plpy, repository, image)
$$;
