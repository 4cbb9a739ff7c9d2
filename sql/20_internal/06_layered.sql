-- A layered checkout is views over object tables, and objects never change: every write through one fails, for
-- every role, superusers included (the views are also written so that PostgreSQL cannot update them by itself).
-- An INSTEAD OF trigger of the extension's on each view calls this; nobody else may call it.
create function splitgraph_internal.refuse_layered_write() returns trigger
language plpgsql volatile
set search_path = pg_catalog, pg_temp
as $$
begin
    raise exception using
        errcode = 'object_not_in_prerequisite_state',
        message = format('table %I.%I is a layered checkout: read-only views over the image''s objects',
                         tg_table_schema, tg_table_name),
        hint = 'check the image out normally (splitgraph.checkout without layered => true) to change its tables';
end
$$;
comment on function splitgraph_internal.refuse_layered_write() is
'Trigger of layered checkout views: refuses every write';
