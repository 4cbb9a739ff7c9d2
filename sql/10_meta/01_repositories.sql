-- Repositories: `namespace/name` or `name`; the checkout lives in a schema of exactly that name.
create table splitgraph_meta.repositories (
    repository text primary key,
    namespace text not null generated always as (
        case when repository like '%/%' then split_part(repository, '/', 1) else '' end
    ) stored,
    created timestamptz not null default pg_catalog.clock_timestamp(),
    constraint repository_name_valid check (
        repository ~ '^([A-Za-z0-9_-]{1,64}/)?[A-Za-z0-9_-]{1,64}$'
    )
);
comment on table splitgraph_meta.repositories is 'Local repositories';
comment on column splitgraph_meta.repositories.repository is 'Full name: namespace/name or name';
comment on column splitgraph_meta.repositories.namespace is
'The part before the slash (empty when none); owner of write rights';
comment on column splitgraph_meta.repositories.created is 'When the repository was created here';
