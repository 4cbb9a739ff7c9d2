-- delete_image(repository, image): delete an image and its descendants.
create function splitgraph.delete_image(repository text, image text)
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
    return splitgraph_internal.delete_image(repository, image);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.delete_image(text, text) is
'delete_image(repository, image): delete the image, its descendants and their tags and branches; refused when HEAD is among them; returns how many images went';

-- prune(repository): delete images no tag, branch or HEAD leads to.
create function splitgraph.prune(repository text)
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
    return splitgraph_internal.prune(repository);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.prune(text) is
'prune(repository): delete the images that are neither tagged, a branch head, HEAD, nor an ancestor of one; returns how many';

-- store_fragment(schema, table_name, snapshot, chunk_size): store a table's contents as objects, without a commit.
create function splitgraph.store_fragment(schema text, table_name text, snapshot boolean default false, chunk_size integer default null)
returns text[]
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return splitgraph_internal.store_fragment(schema, table_name, snapshot, chunk_size);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.store_fragment(text, text, boolean, integer) is
'store_fragment(schema, table_name, snapshot, chunk_size): store the table as objects without committing; returns the object list that rebuilds it (a checkout''s table: HEAD''s fragments plus one of its pending changes, unless snapshot)';
