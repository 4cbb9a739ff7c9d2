-- tag: the body of splitgraph.tag.
create function splitgraph_internal.tag(repository text, image text, tag text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.refs import tag as tag_image
    return tag_image(plpy, repository, image, tag)
$$;

-- delete_tag: the body of splitgraph.delete_tag.
create function splitgraph_internal.delete_tag(repository text, tag text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.refs import delete_tag
    return delete_tag(plpy, repository, tag)
$$;

-- branch: the body of splitgraph.branch.
create function splitgraph_internal.branch(repository text, name text, image text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.refs import branch
    return branch(plpy, repository, name, image)
$$;

-- delete_branch: the body of splitgraph.delete_branch.
create function splitgraph_internal.delete_branch(repository text, name text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.refs import delete_branch
    return delete_branch(plpy, repository, name)
$$;

-- branches: the body of splitgraph.branches.
create function splitgraph_internal.branches(repository text)
returns table (branch text, image_hash text, current boolean)
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.refs import branches
    return branches(plpy, repository)
$$;
