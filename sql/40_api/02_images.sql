-- commit(repository, comment, snapshot, chunk_size, index_options): a new image from the checkout.
create function splitgraph.commit(
    repository text, comment text default null, snapshot boolean default false,
    chunk_size integer default null, index_options jsonb default null
)
returns text
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return splitgraph_internal.commit(repository, comment, snapshot, chunk_size, index_options);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.commit(text, text, boolean, integer, jsonb) is
'commit(repository, comment, snapshot, chunk_size, index_options): commit the checkout as a new image (random hash, returned); tables are stored as content-addressed fragments of chunk_size rows (default 10000); index_options e.g. {"bloom": {"t": {"col": {"probability": 0.01}}}}';

-- log(repository, image): the ancestry of an image, newest first.
create function splitgraph.log(repository text, image text default 'HEAD')
returns table (image_hash text, parent_id text, created timestamptz, comment text, tags text[])
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return query select * from splitgraph_internal.log(repository, image);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.log(text, text) is
'log(repository, image = HEAD): the image and its ancestors, newest first, with their tags';

-- images(repository): every image of a repository, oldest first.
create function splitgraph.images(repository text)
returns table (image_hash text, parent_id text, created timestamptz, comment text, tags text[])
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return query select * from splitgraph_internal.images(repository);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.images(text) is 'images(repository): every image of the repository, oldest first';

-- show(repository, image): an image as JSON.
create function splitgraph.show(repository text, image text)
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
    return splitgraph_internal.show(repository, image);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.show(text, text) is
'show(repository, image): {image_hash, parent_id, created, comment, tags, tables: {name: [columns]}, provenance}';
