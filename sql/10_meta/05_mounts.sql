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
    created timestamptz not null default pg_catalog.clock_timestamp()
);
comment on table splitgraph_meta.mounts is 'Schemas made by mount()';
comment on column splitgraph_meta.mounts.mountpoint is 'The schema';
comment on column splitgraph_meta.mounts.handler is 'The handler that made it';
comment on column splitgraph_meta.mounts.created is 'When it was mounted';

select pg_catalog.pg_extension_config_dump('splitgraph_meta.mount_handlers', 'where not builtin');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.mounts', '');
