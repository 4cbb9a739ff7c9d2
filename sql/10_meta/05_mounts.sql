-- Mount handlers: functions (mountpoint text, options jsonb, tables jsonb) that make foreign tables in a schema.
create table splitgraph_meta.mount_handlers (
    name text primary key,
    handler regprocedure not null,
    description text,
    builtin boolean not null default false,
    constraint handler_name_valid check (name ~ '^[a-z][a-z0-9_]{0,62}$')
);
comment on table splitgraph_meta.mount_handlers is 'How mount() makes foreign tables, by handler name';
comment on column splitgraph_meta.mount_handlers.name is 'Name given to mount()';
comment on column splitgraph_meta.mount_handlers.handler is
'Function (mountpoint text, options jsonb, tables jsonb) returns void';
comment on column splitgraph_meta.mount_handlers.description is 'What the handler mounts';
comment on column splitgraph_meta.mount_handlers.builtin is 'True for the handlers the extension comes with';

-- Mountpoints: schemas of foreign tables made by mount(), which unmount() may drop.
create table splitgraph_meta.mounts (
    mountpoint text primary key,
    handler text not null,
    owner text not null,
    created timestamptz not null default pg_catalog.clock_timestamp()
);
comment on table splitgraph_meta.mounts is 'Schemas made by mount()';
comment on column splitgraph_meta.mounts.mountpoint is 'The schema';
comment on column splitgraph_meta.mounts.handler is 'The handler that made it';
comment on column splitgraph_meta.mounts.owner is 'The role it was made for (and that owns it)';
comment on column splitgraph_meta.mounts.created is 'When it was mounted';

-- Mounting is a privilege: superusers, the extension's owner and members of splitgraph_mount may mount (a mount
-- reaches hosts and ports the database server reaches). Roles belong to the cluster: the role is made once, and
-- stays when the extension is dropped. A mount runs as its caller, who makes the postgres_fdw server.
do $$
begin
    if not exists (select from pg_catalog.pg_roles where rolname = 'splitgraph_mount') then
        create role splitgraph_mount nologin;
    end if;
end
$$;
comment on role splitgraph_mount is
'May call splitgraph.mount and splitgraph.mount_postgres (GRANT splitgraph_mount TO a role)';
grant usage on foreign data wrapper postgres_fdw to splitgraph_mount;

select pg_catalog.pg_extension_config_dump('splitgraph_meta.mount_handlers', 'where not builtin');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.mounts', '');
