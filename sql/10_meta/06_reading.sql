-- Structures built from objects to read images fast (reading.py): layers, squashes and copies. They are derived
-- from objects, which never change, and are shared by every image that uses them.
create table splitgraph_meta.read_layers (
    family text not null,
    layer_no integer not null,
    layer text not null unique,
    sealed boolean not null default false,
    primary key (family, layer_no),
    constraint layer_no_positive check (layer_no > 0)
);
comment on table splitgraph_meta.read_layers is
'Layers: tables partitioned by key range whose partitions are objects (chunks), one family per column layout';
comment on column splitgraph_meta.read_layers.family is 'Hash of the column layout and key of its partitions';
comment on column splitgraph_meta.read_layers.layer_no is 'Order in which a chunk tries the layers of its family';
comment on column splitgraph_meta.read_layers.layer is 'The partitioned table in splitgraph_meta';
comment on column splitgraph_meta.read_layers.sealed is
'True once a view reads all its partitions (without a filter): no object joins it any more';

create table splitgraph_meta.read_structures (
    name text primary key,
    kind text not null,
    object_ids text[] not null,
    created timestamptz not null default pg_catalog.clock_timestamp(),
    constraint name_valid check (name ~ '^[sc][0-9a-f]{62}$'),
    constraint kind_known check (kind in ('squash', 'copy'))
);
comment on table splitgraph_meta.read_structures is
'Squashes (the newest row of each key of some objects) and copies (a table version built from its objects), '
'tables in splitgraph_meta dropped once no view depends on them';
comment on column splitgraph_meta.read_structures.name is 'The table: s (squash) or c (copy) and 62 hex digits';
comment on column splitgraph_meta.read_structures.kind is 'squash or copy';
comment on column splitgraph_meta.read_structures.object_ids is 'The objects it is built from, in order';
comment on column splitgraph_meta.read_structures.created is 'When it was built';

-- Images mounted as schemas of views (mount_image).
create table splitgraph_meta.image_mounts (
    schema_name text primary key,
    repository text not null,
    image_hash text not null,
    owner text not null,
    created timestamptz not null default pg_catalog.clock_timestamp(),
    constraint image_hash_valid check (image_hash ~ '^[0-9a-f]{64}$')
);
comment on table splitgraph_meta.image_mounts is 'Schemas made by mount_image: read-only views over an image';
comment on column splitgraph_meta.image_mounts.schema_name is 'The schema (owned by the extension)';
comment on column splitgraph_meta.image_mounts.repository is 'The repository the image was mounted from';
comment on column splitgraph_meta.image_mounts.image_hash is 'The image (it may be deleted later: the views stay)';
comment on column splitgraph_meta.image_mounts.owner is 'The role that mounted it, which may unmount it';
comment on column splitgraph_meta.image_mounts.created is 'When it was mounted';
