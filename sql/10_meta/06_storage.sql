-- Object storage: the S3-compatible store a registry keeps objects in, and the external handlers that move
-- objects to and from other stores. Only the extension's owner reaches these tables (no role has USAGE on
-- splitgraph_meta); the secret key is read only by the functions that sign URLs and delete unused objects.
create table splitgraph_meta.object_storage (
    singleton boolean primary key default true,
    endpoint text not null,
    access_key text not null,
    secret_key text not null,
    bucket text not null,
    secure boolean not null,
    region text not null,
    constraint one_configuration check (singleton)
);
comment on table splitgraph_meta.object_storage is
'Where this engine keeps objects (configure_s3); not dumped by pg_dump, so backups carry no secret key';
comment on column splitgraph_meta.object_storage.singleton is 'Always true: one configuration per engine';
comment on column splitgraph_meta.object_storage.endpoint is 'host[:port] of the S3-compatible server';
comment on column splitgraph_meta.object_storage.access_key is 'Access key id the URLs are signed for';
comment on column splitgraph_meta.object_storage.secret_key is 'Secret key that signs the URLs (never returned)';
comment on column splitgraph_meta.object_storage.bucket is 'Bucket the objects are kept in';
comment on column splitgraph_meta.object_storage.secure is 'Whether the URLs use https';
comment on column splitgraph_meta.object_storage.region is 'Region the URLs are signed for';

create table splitgraph_meta.external_handlers (
    name text primary key,
    upload text not null,
    download text not null,
    constraint name_valid check (name ~ '^[A-Za-z][A-Za-z0-9_-]{0,62}$' and upper(name) not in ('DB', 'S3'))
);
comment on table splitgraph_meta.external_handlers is
'Object stores beside DB and S3 (register_external_handler): the functions that upload and download objects';
comment on column splitgraph_meta.external_handlers.name is 'Handler name, as push and object locations give it';
comment on column splitgraph_meta.external_handlers.upload is
'upload(object_ids text[], options jsonb) returns table(object_id text, location text), as regprocedure text';
comment on column splitgraph_meta.external_handlers.download is
'download(locations jsonb, options jsonb) returns text[] (the ids loaded), as regprocedure text';
