-- Objects: content-addressed fragments, each stored as a table splitgraph_meta."<object_id>".
create table splitgraph_meta.objects (
    object_id text primary key,
    format text not null default 'FRAG',
    namespace text not null default '',
    size bigint not null default 0,
    rows_inserted bigint not null default 0,
    rows_deleted bigint not null default 0,
    insertion_hash text not null,
    deletion_hash text not null,
    index jsonb not null default '{}',
    table_schema jsonb not null,
    created timestamptz not null default pg_catalog.clock_timestamp(),
    constraint object_id_valid check (object_id ~ '^o[0-9a-f]{62}$'),
    constraint format_known check (format = 'FRAG'),
    constraint hashes_valid check (insertion_hash ~ '^[0-9a-f]{64}$' and deletion_hash ~ '^[0-9a-f]{64}$'),
    constraint rows_nonnegative check (rows_inserted >= 0 and rows_deleted >= 0 and size >= 0)
);
comment on table splitgraph_meta.objects is
'Fragments: content hashes, sizes and indexes of the tables in splitgraph_meta named by object id';
comment on column splitgraph_meta.objects.object_id is 'o + 62 hex digits of sha256(content hash + schema hash)';
comment on column splitgraph_meta.objects.format is 'Storage format (FRAG: a table of the columns plus sg_ud_flag)';
comment on column splitgraph_meta.objects.namespace is 'Namespace of the repository that first stored it';
comment on column splitgraph_meta.objects.size is 'Bytes on disk';
comment on column splitgraph_meta.objects.rows_inserted is 'Rows upserted by the fragment';
comment on column splitgraph_meta.objects.rows_deleted is 'Rows deleted by the fragment';
comment on column splitgraph_meta.objects.insertion_hash is 'Lane-wise sum of the sha256 of the upserted rows';
comment on column splitgraph_meta.objects.deletion_hash is
'Lane-wise sum of the sha256 of the old values of deleted or overwritten rows';
comment on column splitgraph_meta.objects.index is '{range: {column: [min, max]}, bloom: {column: [k, base64]}}';
comment on column splitgraph_meta.objects.table_schema is
'List of [ordinal, name, type, is_pk] the object id was computed with (the object table stores values of types '
'that are not built-in as built-in types: see README)';
comment on column splitgraph_meta.objects.created is 'When the object was first stored here';

create table splitgraph_meta.object_locations (
    object_id text primary key references splitgraph_meta.objects on delete cascade,
    location text not null,
    protocol text not null
);
comment on table splitgraph_meta.object_locations is 'Where objects not stored here can be downloaded from';
comment on column splitgraph_meta.object_locations.location is 'URL or key of the object in external storage';
comment on column splitgraph_meta.object_locations.protocol is 'Handler that can fetch it (e.g. S3)';

-- A table in an image: its schema and the fragments that build it, applied in order.
create table splitgraph_meta.tables (
    repository text not null,
    image_hash text not null,
    table_name text not null,
    table_schema jsonb not null,
    object_ids text[] not null default '{}',
    table_definition jsonb,
    primary key (repository, image_hash, table_name),
    foreign key (repository, image_hash) references splitgraph_meta.images on delete cascade,
    constraint table_schema_is_list check (pg_catalog.jsonb_typeof(table_schema) = 'array'),
    constraint table_definition_is_object check (pg_catalog.jsonb_typeof(table_definition) = 'object')
);
create index tables_object_ids on splitgraph_meta.tables using gin (object_ids);
comment on table splitgraph_meta.tables is 'Versions of tables: each image lists its tables and their fragments';
comment on column splitgraph_meta.tables.table_schema is
'List of [ordinal (attnum), name, type, is_pk, comment, collation?]; (ordinal, name, type, is_pk) make the schema hash';
comment on column splitgraph_meta.tables.object_ids is 'Fragments, applied in this order';
comment on column splitgraph_meta.tables.table_definition is
'What a checkout restores beside the columns: storage types, defaults, identity, generated columns, NOT NULL, '
'constraints, indexes, comment (null: columns and primary key only)';

-- Every fragment a table version names must be registered, and stays so while the version is being written.
create function splitgraph_internal.check_object_ids() returns trigger
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    missing text;
    inherited text[];
    fresh text[];
begin
    -- The objects this version shares with its parent image's version of the table, as the first of its list (a
    -- delta commit adds one object to them), are registered, and stay so while this version is being written: the
    -- parent's version references them, and its row, locked here, cannot be deleted until this transaction ends.
    -- Only the other objects are checked and locked, so that a commit's work does not grow with the number of
    -- objects the table has.
    select t.object_ids into inherited
    from splitgraph_meta.images i
    join splitgraph_meta.tables t on t.repository = i.repository and t.image_hash = i.parent_id
                                 and t.table_name = new.table_name
    where i.repository = new.repository and i.image_hash = new.image_hash
    for key share of t;
    if inherited is not null and cardinality(inherited) > 0
       and new.object_ids[1:cardinality(inherited)] = inherited then
        fresh := coalesce(new.object_ids[cardinality(inherited) + 1:], '{}');
    else
        fresh := new.object_ids;
    end if;
    -- held until the transaction ends: cleanup() skips an object a table version is about to reference
    perform from splitgraph_meta.objects m where m.object_id = any(fresh) order by m.object_id
    for key share;
    select o into missing
    from pg_catalog.unnest(fresh) as o
    where not exists (select from splitgraph_meta.objects m where m.object_id = o)
    limit 1;
    if missing is not null then
        raise exception 'object % of table "%" is not registered', missing, new.table_name
            using errcode = 'foreign_key_violation';
    end if;
    return new;
end
$$;
create trigger tables_object_ids_registered
before insert or update of object_ids on splitgraph_meta.tables
for each row execute function splitgraph_internal.check_object_ids();

create table splitgraph_meta.upstream (
    repository text primary key references splitgraph_meta.repositories on delete cascade,
    remote_name text not null,
    remote_repository text not null
);
comment on table splitgraph_meta.upstream is 'The default remote of a repository for push and pull';
comment on column splitgraph_meta.upstream.remote_name is 'Name of the remote engine';
comment on column splitgraph_meta.upstream.remote_repository is 'Repository name on the remote';

create table splitgraph_meta.info (
    key text primary key,
    value text not null
);
comment on table splitgraph_meta.info is 'Engine settings of the extension';
comment on column splitgraph_meta.info.key is 'Setting name';
comment on column splitgraph_meta.info.value is 'Setting value';
