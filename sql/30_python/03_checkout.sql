-- checkout: the body of splitgraph.checkout.
create function splitgraph_internal.checkout(repository text, image text, force boolean, layered boolean)
returns text
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.checkout import checkout
    return checkout(plpy, repository, image, force, layered)
$$;

-- uncheckout: the body of splitgraph.uncheckout.
create function splitgraph_internal.uncheckout(repository text, force boolean)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.checkout import uncheckout
    return uncheckout(plpy, repository, force)
$$;
