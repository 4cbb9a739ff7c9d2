-- track_tables(schema, tables): log every change to these tables from now on.
create function splitgraph.track_tables(schema text, tables text[])
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
    perform splitgraph_internal.track_tables(schema, tables);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.track_tables(text, text[]) is
'track_tables(schema, tables): log every change to the tables (statement-level triggers); a table already tracked keeps its log';

-- untrack_tables(schema, tables): stop logging changes and drop the logs.
create function splitgraph.untrack_tables(schema text, tables text[])
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
    perform splitgraph_internal.untrack_tables(schema, tables);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.untrack_tables(text, text[]) is
'untrack_tables(schema, tables): stop tracking the tables and drop their logs';

-- tracked_tables(): every tracked table.
create function splitgraph.tracked_tables()
returns table (schema_name text, table_name text)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return query select * from splitgraph_internal.tracked_tables();
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.tracked_tables() is
'tracked_tables(): every table whose changes are logged';

-- has_pending_changes(schema): whether any table of the schema changed since it was tracked (or since HEAD).
create function splitgraph.has_pending_changes(schema text)
returns boolean
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return splitgraph_internal.has_pending_changes(schema);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.has_pending_changes(text) is
'has_pending_changes(schema): true when a tracked table of the schema (for a checkout: any table) changed';

-- changed_tables(schema): the tables with pending changes.
create function splitgraph.changed_tables(schema text)
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
    return splitgraph_internal.changed_tables(schema);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.changed_tables(text) is
'changed_tables(schema): names of the tables with pending changes';

-- get_pending_changes(schema, table_name, aggregate): the net changes of a tracked table.
create function splitgraph.get_pending_changes(schema text, table_name text, aggregate boolean default false)
returns table (pk jsonb, change_type text, row_data jsonb, added integer, removed integer, updated integer)
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
    result := splitgraph_internal.get_pending_changes(schema, table_name, aggregate);
    return query execute pg_catalog.format('select pk, change_type, row_data, added, removed, updated from pg_temp.%I', result);
    execute pg_catalog.format('drop table pg_temp.%I', result);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.get_pending_changes(text, text, boolean) is
'get_pending_changes(schema, table_name, aggregate): net changes of a tracked table, one row per changed key (pk, change_type insert/delete/update, row_data: new row, or old row for a delete); aggregate: one row of added, removed, updated';

-- discard_pending_changes(schema, table_name): forget logged changes; the data stays.
create function splitgraph.discard_pending_changes(schema text, table_name text default null)
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
    perform splitgraph_internal.discard_pending_changes(schema, table_name);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.discard_pending_changes(text, text) is
'discard_pending_changes(schema, table_name): forget the logged changes of tracked tables (the data stays as it is); a checkout''s changes are undone with reset';
