-- fragment_rows(object_id): the rows of a stored object (its columns, then sg_ud_flag), for code that runs with
-- its caller's rights. Object tables are not readable by PUBLIC, so nothing outside the extension can depend on
-- one (a view over it would stop cleanup() for good); every role may read every repository, though, so every
-- role may read objects through this function, which creates no dependency. Give a column definition list:
--   select * from splitgraph_internal.fragment_rows('o...') as f(id integer, v text, sg_ud_flag boolean)
create function splitgraph_internal.fragment_rows(object_id text) returns setof record
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
as $$
begin
    if object_id is null or object_id !~ '^o[0-9a-f]{62}$'
       or not exists (select from splitgraph_meta.objects o where o.object_id = fragment_rows.object_id)
       or pg_catalog.to_regclass(pg_catalog.format('splitgraph_meta.%I', object_id)) is null then
        raise exception 'object % is not stored on this engine', object_id using errcode = '42704';
    end if;
    return query execute pg_catalog.format('select * from splitgraph_meta.%I', object_id);
end
$$;
