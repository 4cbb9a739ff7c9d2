-- import_tables(source_repository, source_tables, target_repository, target_tables, source_image): graft tables
-- into a repository as one new image. SECURITY INVOKER: a plain schema (e.g. a mountpoint) is read with the
-- caller's own rights before its rows are stored; everything else happens in helpers that check rights.
create function splitgraph.import_tables(
    source_repository text, source_tables text[], target_repository text, target_tables text[] default null,
    source_image text default null
) returns text
language plpgsql volatile security invoker
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    staged text[] := '{}';
    stage text;
    result text;
    detail text;
    hint text;
begin
    if splitgraph_internal.import_source_kind(source_repository) = 'repository' then
        return splitgraph_internal.import_from_image(source_repository, source_tables, target_repository,
                                                     target_tables, source_image);
    end if;
    perform splitgraph_internal.import_check_source(source_repository, source_tables);
    for i in 1 .. coalesce(array_length(source_tables, 1), 0) loop
        stage := 'sg_stage_' || md5(random()::text);
        execute format('create temp table %I as select * from %I.%I', stage, source_repository, source_tables[i]);
        staged := staged || stage;
    end loop;
    result := splitgraph_internal.import_staged(
        source_repository, null, source_tables, staged, target_repository, target_tables,
        format('import %s from schema %s', array_to_string(source_tables, ', '), source_repository));
    foreach stage in array staged loop
        execute format('drop table pg_temp.%I', stage);
    end loop;
    return result;
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.import_tables(text, text[], text, text[], text) is
'import_tables(source_repository, source_tables, target_repository, target_tables, source_image): graft tables of an image (default: the source''s HEAD, else latest) into the target as one new commit on its HEAD without copying data; a plain schema (e.g. a mountpoint) as source has its current rows snapshotted; pending changes of the target stay pending; returns the new image';

-- import_table(source_repository, source_table, target_repository, target_table, source_image): one table.
create function splitgraph.import_table(
    source_repository text, source_table text, target_repository text, target_table text default null,
    source_image text default null
) returns text
language sql volatile security invoker
set search_path = pg_catalog, pg_temp
as $$
    select splitgraph.import_tables(source_repository, array[source_table], target_repository,
                                    case when target_table is null then null else array[target_table] end,
                                    source_image)
$$;
comment on function splitgraph.import_table(text, text, text, text, text) is
'import_table(source_repository, source_table, target_repository, target_table, source_image): import_tables for one table; returns the new image';

-- import_query(source_repository, query, target_repository, target_table, source_image): import a SELECT's
-- result. SECURITY INVOKER: the query runs with the caller's rights, over read-only views of the source image.
create function splitgraph.import_query(
    source_repository text, query text, target_repository text, target_table text, source_image text default null
) returns text
language plpgsql volatile security invoker
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    sandbox text[];
    stage text := 'sg_stage_' || md5(random()::text);
    result text;
    detail text;
    hint text;
begin
    if target_table is null then
        raise exception 'import_query needs a target_table' using errcode = '22023';
    end if;
    sandbox := splitgraph_internal.import_sandbox(source_repository, source_image);
    perform splitgraph_internal.import_check_plan(source_repository, sandbox[2], sandbox[1],
                                                  splitgraph_internal.import_explain(query, sandbox[1]), query);
    perform set_config('search_path', format('%I, pg_temp', sandbox[1]), true);
    -- the same text import_explain proved to be one SELECT
    execute format(e'create temp table %I as select * from (%s\n) sg_query', stage, query);
    perform set_config('search_path', 'pg_catalog, pg_temp', true);
    result := splitgraph_internal.import_staged(
        source_repository, sandbox[2], null, array[stage], target_repository, array[target_table],
        format('import query %s from %s', query, source_repository));
    execute format('drop table pg_temp.%I', stage);
    perform splitgraph_internal.import_drop_sandbox(sandbox[1]);
    return result;
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.import_query(text, text, text, text, text) is
'import_query(source_repository, query, target_repository, target_table, source_image): import the result of one SELECT over the tables of the source image (unqualified; nothing outside the source) as a new table, in one new commit; a result equal to a source table reuses its objects; returns the new image';
