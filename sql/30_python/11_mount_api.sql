-- mount: the body of splitgraph.mount.
create function splitgraph_internal.mount(mountpoint text, handler text, options jsonb, tables jsonb, overwrite boolean)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.mounts import mount
    return mount(plpy, mountpoint, handler, options, tables, overwrite)
$$;

-- mount_postgres: the body of splitgraph.mount_postgres.
create function splitgraph_internal.mount_postgres(mountpoint text, server text, port integer, username text, password text, dbname text, remote_schema text, tables jsonb, extra_server_args jsonb)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.mounts import mount_postgres
    return mount_postgres(plpy, mountpoint, server, port, username, password, dbname, remote_schema, tables, extra_server_args)
$$;

-- unmount: the body of splitgraph.unmount.
create function splitgraph_internal.unmount(mountpoint text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.mounts import unmount
    return unmount(plpy, mountpoint)
$$;

-- register_mount_handler: the body of splitgraph.register_mount_handler.
create function splitgraph_internal.register_mount_handler(name text, handler regprocedure, description text)
returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.mounts import register_mount_handler
    return register_mount_handler(plpy, name, handler, description)
$$;

-- mount_handlers: the body of splitgraph.mount_handlers.
create function splitgraph_internal.mount_handlers()
returns table (name text, description text)
language plpython3u stable
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.mounts import mount_handlers
    return mount_handlers(plpy)
$$;
