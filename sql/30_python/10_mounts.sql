-- The built-in mount handlers: (mountpoint, options, tables), each making foreign tables in the schema.

-- mount_postgres_fdw: a remote PostgreSQL schema through postgres_fdw.
create function splitgraph_internal.mount_postgres_fdw(mountpoint text, options jsonb, tables jsonb) returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.mounts import mount_postgres_fdw
    return mount_postgres_fdw(plpy, mountpoint, options, tables)
$$;

-- mount_mysql_fdw: a MySQL or MariaDB database through mysql_fdw.
create function splitgraph_internal.mount_mysql_fdw(mountpoint text, options jsonb, tables jsonb) returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.mounts import mount_mysql_fdw
    return mount_mysql_fdw(plpy, mountpoint, options, tables)
$$;

-- mount_csv: a CSV file on the database server through file_fdw, its column types inferred when not given.
create function splitgraph_internal.mount_csv(mountpoint text, options jsonb, tables jsonb) returns void
language plpython3u volatile
set search_path = pg_catalog, pg_temp
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.mounts import mount_csv
    return mount_csv(plpy, mountpoint, options, tables)
$$;
