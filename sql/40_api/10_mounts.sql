-- mount(mountpoint, handler, options, tables, overwrite): foreign tables in a schema, through a mount handler.
create function splitgraph.mount(mountpoint text, handler text, options jsonb, tables jsonb default null, overwrite boolean default true)
returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    perform splitgraph_internal.mount(mountpoint, handler, options, tables, overwrite);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.mount(text, text, jsonb, jsonb, boolean) is
'mount(mountpoint, handler, options, tables, overwrite): create foreign tables in schema mountpoint with a registered handler (postgres_fdw, mysql_fdw, csv, or one registered); tables: null (all), a list of names, or {"t": {"col": "type"}}; credentials go into user mappings';

-- mount_postgres(...): mount a remote PostgreSQL schema through postgres_fdw.
create function splitgraph.mount_postgres(mountpoint text, server text, port integer, username text, password text, dbname text, remote_schema text, tables jsonb default null, extra_server_args jsonb default null)
returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    perform splitgraph_internal.mount_postgres(mountpoint, server, port, username, password, dbname, remote_schema, tables, extra_server_args);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.mount_postgres(text, text, integer, text, text, text, text, jsonb, jsonb) is
'mount_postgres(mountpoint, server, port, username, password, dbname, remote_schema, tables, extra_server_args): mount a remote PostgreSQL schema through postgres_fdw (extra_server_args: more postgres_fdw server options)';

-- unmount(mountpoint): drop a mountpoint, or delete a repository.
create function splitgraph.unmount(mountpoint text)
returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    perform splitgraph_internal.unmount(mountpoint);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.unmount(text) is
'unmount(mountpoint): drop a mountpoint with its foreign servers and user mappings; for a repository, delete it like rm (objects stay until cleanup())';

-- register_mount_handler(name, handler, description): a custom mount handler.
create function splitgraph.register_mount_handler(name text, handler regprocedure, description text default null)
returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    perform splitgraph_internal.register_mount_handler(name, handler, description);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.register_mount_handler(text, regprocedure, text) is
'register_mount_handler(name, handler, description): register a function (mountpoint text, options jsonb, tables jsonb) returns void that makes foreign tables in the existing schema mountpoint; superusers only, as handlers run with the extension''s rights';

-- mount_handlers(): the registered mount handlers.
create function splitgraph.mount_handlers()
returns table (name text, description text)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return query select * from splitgraph_internal.mount_handlers();
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.mount_handlers() is
'mount_handlers(): every mount handler, with what it mounts';
