-- Change tracking: statement-level triggers with transition tables, one firing per statement.
-- Each audit row is (the table's columns, sg_audit_stmt, sg_audit_kind): kind 0 holds a row's old values
-- (UPDATE, DELETE); kind 1 holds only a key that was written (INSERT, the new keys of an UPDATE; for a table
-- without a primary key, the whole new row). Old and new records of one UPDATE share its statement number; the
-- old sorts first (kind 0), so a key's first record always tells its state before tracking. The triggers run as
-- the extension's owner so that no role can write audit rows directly, and they take their audit table from
-- splitgraph_audit.tracked by the table's oid, never from trigger arguments a table owner could forge.

-- log_statement(relid, source, whole_rows): the INSERT that appends the rows of `source` (a transition table, or
-- the table itself before a TRUNCATE) to the table's audit table, or null when the table is not being tracked.
-- (Transition tables are visible to the trigger function's own statements only, so the trigger function runs it.)
create function splitgraph_audit.log_statement(relid oid, source text, whole_rows boolean)
returns text
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    t splitgraph_audit.tracked;
    columns text;
begin
    select * into t from splitgraph_audit.tracked where tracked.relid = log_statement.relid;
    if not found then
        t := splitgraph_audit.adopt(relid);
    end if;
    if t.state is distinct from 'tracking' then
        return null;
    end if;
    columns := case when whole_rows then t.all_columns else t.key_columns end;
    return format('insert into %s (%s) select %s from %s', t.audit_table,
                  concat_ws(', ', nullif(columns, ''), 'sg_audit_stmt, sg_audit_kind'),
                  concat_ws(', ', nullif(columns, ''), '$1, $2'), source);
end
$$;

-- adopt(relid): a restored dump gives every table a new oid. A tracked entry whose table is gone is taken over
-- by the table of the same name that carries our triggers (restored with it); a table dropped and made again
-- has no triggers and stays untracked.
create function splitgraph_audit.adopt(relid oid) returns splitgraph_audit.tracked
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    t splitgraph_audit.tracked;
begin
    update splitgraph_audit.tracked e set relid = adopt.relid
    from pg_class c join pg_namespace n on n.oid = c.relnamespace
    where c.oid = adopt.relid and e.schema_name = n.nspname and e.table_name = c.relname
      and not exists (select from pg_class gone where gone.oid = e.relid)
      and exists (select from pg_trigger g where g.tgrelid = adopt.relid and g.tgname = 'sg_track_insert')
    returning e.* into t;
    return t;
end
$$;

create function splitgraph_audit.on_insert() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    keys text := splitgraph_audit.log_statement(tg_relid, 'sg_new', false);
begin
    if keys is not null then
        execute keys using nextval('splitgraph_audit.statements'), 1::smallint;
    end if;
    return null;
end
$$;

create function splitgraph_audit.on_update() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    old_rows text := splitgraph_audit.log_statement(tg_relid, 'sg_old', true);
    statement bigint;
begin
    if old_rows is not null then
        statement := nextval('splitgraph_audit.statements');
        execute old_rows using statement, 0::smallint;
        execute splitgraph_audit.log_statement(tg_relid, 'sg_new', false) using statement, 1::smallint;
    end if;
    return null;
end
$$;

create function splitgraph_audit.on_delete() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    old_rows text := splitgraph_audit.log_statement(tg_relid, 'sg_old', true);
begin
    if old_rows is not null then
        execute old_rows using nextval('splitgraph_audit.statements'), 0::smallint;
    end if;
    return null;
end
$$;

-- A TRUNCATE has no transition table: just before it, every row is logged with its old values.
create function splitgraph_audit.on_truncate() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    old_rows text := splitgraph_audit.log_statement(tg_relid, tg_relid::regclass::text, true);
begin
    if old_rows is not null then
        execute old_rows using nextval('splitgraph_audit.statements'), 0::smallint;
    end if;
    return null;
end
$$;

-- After ALTER TABLE on a tracked table, its changes are no longer known row by row (and the triggers' column
-- lists may no longer fit): stop logging it and mark it, so that its next commit stores a snapshot.
create function splitgraph_audit.on_alter_table() returns event_trigger
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    altered record;
begin
    for altered in
        select distinct t.relid
        from pg_event_trigger_ddl_commands() c
        join splitgraph_audit.tracked t on t.relid = c.objid and t.state <> 'altered'
    loop
        update splitgraph_audit.tracked set state = 'altered' where relid = altered.relid;
        -- by oid: the table may just have been renamed
        execute format('drop trigger if exists sg_track_insert on %1$s; '
                       'drop trigger if exists sg_track_update on %1$s; '
                       'drop trigger if exists sg_track_delete on %1$s; '
                       'drop trigger if exists sg_track_truncate on %1$s',
                       altered.relid::regclass);
    end loop;
end
$$;
-- the linter's postgres dialect does not parse CREATE EVENT TRIGGER
-- noqa: disable=PRS
create event trigger splitgraph_track_alter on ddl_command_end when tag in ('ALTER TABLE')
execute function splitgraph_audit.on_alter_table();
-- noqa: enable=PRS

revoke all on function splitgraph_audit.log_statement(oid, text, boolean) from public;
revoke all on function splitgraph_audit.adopt(oid) from public;
