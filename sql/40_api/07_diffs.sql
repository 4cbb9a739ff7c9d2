-- status(repository): the pending changes of checkouts, per table.
create function splitgraph.status(repository text default null)
returns setof splitgraph.status_row
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return query select * from splitgraph_internal.status(repository);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.status(text) is
'status(repository = all): pending changes of checked-out repositories, per changed table: rows added, removed, updated, and whether the schema changed';

-- reset(repository, table_name): discard pending changes: the checkout returns to HEAD.
create function splitgraph.reset(repository text, table_name text default null)
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
    perform splitgraph_internal.reset(repository, table_name);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.reset(text, text) is
'reset(repository, table_name = all): discard pending changes: the table (or every table) becomes exactly HEAD''s again';

-- diff(repository, table_name, image_1, image_2): row-level changes between two versions of a table.
create function splitgraph.diff(repository text, table_name text, image_1 text, image_2 text default null)
returns table (action character(1), row_data jsonb)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    result text;
    detail text;
    hint text;
begin
    result := splitgraph_internal.diff(repository, table_name, image_1, image_2);
    return query execute pg_catalog.format('select action, row_data from pg_temp.%I', result);
    execute pg_catalog.format('drop table pg_temp.%I', result);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.diff(text, text, text, text) is
'diff(repository, table_name, image_1, image_2 = pending state): rows removed (-) and added (+) from image_1 to image_2; an update is a - of the old row and a + of the new';

-- diff_summary(repository, image_1, image_2): per-table counts of the changes between two images.
create function splitgraph.diff_summary(repository text, image_1 text, image_2 text default null)
returns table (table_name text, added integer, removed integer, updated integer, schema_changed boolean)
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return query select * from splitgraph_internal.diff_summary(repository, image_1, image_2);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.diff_summary(text, text, text) is
'diff_summary(repository, image_1, image_2 = pending state): per changed table, rows added, removed, updated, and whether the schema changed';
