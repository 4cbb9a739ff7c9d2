-- pg_dump keeps the history: the metadata tables' rows are dumped with the database (but not object_storage:
-- a backup carries no S3 secret key; configure_s3 again after a restore).
select pg_catalog.pg_extension_config_dump('splitgraph_meta.repositories', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.images', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.images_seq_seq', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.merge_parents', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.tags', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.branches', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.checkouts', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.objects', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.object_locations', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.tables', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.upstream', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.info', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.remotes', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.namespace_grants', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.commands', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.read_layers', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.read_structures', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.image_mounts', '');
select pg_catalog.pg_extension_config_dump('splitgraph_meta.external_handlers', '');
