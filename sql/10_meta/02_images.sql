-- Images: immutable versions of a repository, a DAG through parent_id.
create table splitgraph_meta.images (
    repository text not null references splitgraph_meta.repositories on delete cascade,
    image_hash text not null,
    parent_id text,
    created timestamptz not null default pg_catalog.clock_timestamp(),
    comment text,
    provenance jsonb,
    seq bigint generated always as identity,
    primary key (repository, image_hash),
    constraint image_hash_valid check (image_hash ~ '^[0-9a-f]{64}$'),
    constraint parent_id_valid check (parent_id ~ '^[0-9a-f]{64}$' and parent_id <> image_hash),
    constraint comment_length check (pg_catalog.length(comment) <= 4096)
);
create index images_parent on splitgraph_meta.images (repository, parent_id);
-- dependents(): the images whose provenance names a source image (jsonb containment)
create index images_provenance on splitgraph_meta.images using gin (provenance jsonb_path_ops);
comment on table splitgraph_meta.images is 'Images (versions) of each repository';
comment on column splitgraph_meta.images.image_hash is '64 hex digits: random for commits, derived for Splitfile steps';
comment on column splitgraph_meta.images.parent_id is 'The image this one was made from; null for a root image';
comment on column splitgraph_meta.images.created is 'When the image was made';
comment on column splitgraph_meta.images.comment is 'Commit message';
comment on column splitgraph_meta.images.provenance is
'How a Splitfile made this image: the commands of its stage up to it, as a list of {type, ..., sources}';
comment on column splitgraph_meta.images.seq is 'Local creation order, to order images made within one timestamp';

-- Merge images have two parents: images.parent_id is the first (the image merged into, the branch's head), and
-- the image merged in is recorded here. Everything that walks the history (log, prune, delete_image, merge
-- bases) follows both.
create table splitgraph_meta.merge_parents (
    repository text not null,
    image_hash text not null,
    parent_id text not null,
    primary key (repository, image_hash, parent_id),
    foreign key (repository, image_hash) references splitgraph_meta.images on delete cascade,
    foreign key (repository, parent_id) references splitgraph_meta.images (repository, image_hash) on delete cascade,
    constraint merge_parent_not_itself check (parent_id <> image_hash)
);
create index merge_parents_parent on splitgraph_meta.merge_parents (repository, parent_id);
comment on table splitgraph_meta.merge_parents is
'The second parent of each merge image (the first is images.parent_id)';
comment on column splitgraph_meta.merge_parents.image_hash is 'The merge image';
comment on column splitgraph_meta.merge_parents.parent_id is 'The image it merged in';

-- Tags and branches share one name space per repository (a name resolves to at most one of them).
create table splitgraph_meta.tags (
    repository text not null,
    tag text not null,
    image_hash text not null,
    primary key (repository, tag),
    foreign key (repository, image_hash) references splitgraph_meta.images on delete cascade,
    constraint tag_name_valid check (tag ~ '^[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}$' and tag not in ('HEAD', 'latest'))
);
comment on table splitgraph_meta.tags is 'Movable names for images';
comment on column splitgraph_meta.tags.tag is 'Letters, digits, _ . -; never HEAD or latest';
comment on column splitgraph_meta.tags.image_hash is 'The tagged image';

create table splitgraph_meta.branches (
    repository text not null,
    branch text not null,
    image_hash text not null,
    primary key (repository, branch),
    foreign key (repository, image_hash) references splitgraph_meta.images on delete cascade,
    constraint branch_name_valid check (
        branch ~ '^[A-Za-z0-9_][A-Za-z0-9_./-]{0,63}$' and branch not in ('HEAD', 'latest')
    )
);
comment on table splitgraph_meta.branches is 'Branches: names that move forward when a checkout of them commits';
comment on column splitgraph_meta.branches.branch is 'Letters, digits, _ . / -; never HEAD or latest';
comment on column splitgraph_meta.branches.image_hash is 'The branch head';

-- The checkout of a repository: its HEAD, and the branch it follows (null when detached).
create table splitgraph_meta.checkouts (
    repository text primary key references splitgraph_meta.repositories on delete cascade,
    image_hash text not null,
    branch text,
    layered boolean not null default false,
    foreign key (repository, image_hash) references splitgraph_meta.images,
    foreign key (repository, branch) references splitgraph_meta.branches
);
comment on table splitgraph_meta.checkouts is 'Checked-out repositories: HEAD and the branch followed';
comment on column splitgraph_meta.checkouts.image_hash is 'HEAD: the image the checkout is based on';
comment on column splitgraph_meta.checkouts.branch is 'The branch that commits move forward; null when detached';
comment on column splitgraph_meta.checkouts.layered is 'True when the tables are read-only views over fragments';

-- The schema the extension made for each checkout, by oid: init and checkout never adopt a schema someone else
-- made (a system schema, one's own, or one planted under a repository's name), and rm drops only this one.
-- Not dumped: a restore gives schemas new oids, so the first checkout after it takes the restored checkout
-- schema again (see checkout.create_schema).
create table splitgraph_meta.checkout_schemas (
    repository text primary key references splitgraph_meta.repositories on delete cascade,
    schema_oid oid not null
);
comment on table splitgraph_meta.checkout_schemas is 'The schema splitgraph made for each checkout';
comment on column splitgraph_meta.checkout_schemas.schema_oid is
'Its oid: a schema of the same name made by anyone else is not the checkout';
