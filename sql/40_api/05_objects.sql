-- table_info(repository, image, table_name): a table of an image as JSON.
create function splitgraph.table_info(repository text, image text, table_name text)
returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return splitgraph_internal.table_info(repository, image, table_name);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.table_info(text, text, text) is
'table_info(repository, image, table_name): {table_name, columns: [{ordinal, name, type, is_pk, comment}], objects: [ids in apply order], rows, size}';

-- object_info(object_id): an object's metadata as JSON, null when unknown.
create function splitgraph.object_info(object_id text)
returns jsonb
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return splitgraph_internal.object_info(object_id);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.object_info(text) is
'object_info(object_id): {object_id, format, namespace, size, rows_inserted, rows_deleted, insertion_hash, deletion_hash, index, created, locations}; null for an unknown id';

-- cleanup(): garbage-collect objects no image references.
create function splitgraph.cleanup()
returns integer
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return splitgraph_internal.cleanup();
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.cleanup() is
'cleanup(): delete every object that no table of any image references; returns how many were deleted';

-- dump_object(object_id): an object by value.
create function splitgraph.dump_object(object_id text)
returns bytea
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return splitgraph_internal.dump_object(object_id);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.dump_object(text) is
'dump_object(object_id): the object (metadata and rows, compressed) as bytes that load_object accepts on any engine';

-- load_object(object_id, data): store a dumped object after verifying its content hash.
create function splitgraph.load_object(object_id text, data bytea)
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
    perform splitgraph_internal.load_object(object_id, data);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.load_object(text, bytea) is
'load_object(object_id, data): store an object from dump_object; refused (XX001) unless its rows hash to its id';

-- apply_fragments(object_ids, target_schema, target_table, extra_quals): apply fragments to a table.
-- SECURITY INVOKER: the target table's privileges, triggers and extra_quals act with the caller's rights.
create function splitgraph.apply_fragments(
    object_ids text[], target_schema text, target_table text, extra_quals text default null
)
returns void
language plpgsql volatile security invoker
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    perform splitgraph_internal.apply_fragments(object_ids, target_schema, target_table, extra_quals);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.apply_fragments(text[], text, text, text) is
'apply_fragments(object_ids, target_schema, target_table, extra_quals): apply fragments in order to an existing table (delete the keys each holds, insert its upserts that pass extra_quals)';
