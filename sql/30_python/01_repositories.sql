-- The PL/Python bodies of the public API: each imports its module from the extension's versioned Python
-- package (put on sys.path once per session by python_init) and passes plpy in.

-- init: the body of splitgraph.init.
create function splitgraph_internal.init(repository text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.repositories import init
    return init(plpy, repository)
$$;

-- repositories: the body of splitgraph.repositories.
create function splitgraph_internal.repositories()
returns table (repository text, head text, branch text, checked_out boolean, images integer, upstream text)
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.repositories import repositories
    return repositories(plpy)
$$;

-- rm: the body of splitgraph.rm.
create function splitgraph_internal.rm(repository text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.repositories import rm
    return rm(plpy, repository)
$$;
