-- Remotes: other engines with the extension that repositories are pushed to and pulled from. A remote belongs to
-- the role that added it: its postgres_fdw server, the user mapping that holds the credentials (the password is
-- nowhere else) and a schema of foreign tables over the remote's splitgraph_remote are that role's.
create table splitgraph_meta.remotes (
    owner text not null,
    name text not null,
    host text not null,
    port integer not null,
    dbname text not null,
    username text not null,
    server text not null unique,
    schema text not null unique,
    created timestamptz not null default pg_catalog.clock_timestamp(),
    primary key (owner, name),
    constraint remote_name_valid check (name ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,62}$'),
    constraint remote_port_valid check (port between 1 and 65535),
    constraint remote_objects_named check (server ~ '^sg_remote_[0-9a-f]{16}$' and schema = server)
);
comment on table splitgraph_meta.remotes is 'Other engines, each the role''s that added it (add_remote)';
comment on column splitgraph_meta.remotes.owner is 'The role that added it, whose user mapping holds the credentials';
comment on column splitgraph_meta.remotes.name is 'Its name, unique per role';
comment on column splitgraph_meta.remotes.host is 'Host of the remote engine';
comment on column splitgraph_meta.remotes.port is 'Port of the remote engine';
comment on column splitgraph_meta.remotes.dbname is 'Database of the remote engine';
comment on column splitgraph_meta.remotes.username is
'Role the owner logs in as there (its password is in the user mapping only)';
comment on column splitgraph_meta.remotes.server is 'The postgres_fdw server (random name, owned by the owner)';
comment on column splitgraph_meta.remotes.schema is 'The schema of foreign tables over the remote''s splitgraph_remote';
comment on column splitgraph_meta.remotes.created is 'When it was added';

-- Namespaces a role may write besides the one named like it (grant_namespace, administrators only).
create table splitgraph_meta.namespace_grants (
    namespace text not null,
    role text not null,
    primary key (namespace, role),
    constraint namespace_valid check (namespace ~ '^[A-Za-z0-9_-]{1,64}$')
);
comment on table splitgraph_meta.namespace_grants is
'Namespaces granted to roles: a role writes the repositories of the namespace named like it and of these';
comment on column splitgraph_meta.namespace_grants.namespace is
'The namespace (the part of a repository name before /)';
comment on column splitgraph_meta.namespace_grants.role is 'The role (its name: the session user it applies to)';
