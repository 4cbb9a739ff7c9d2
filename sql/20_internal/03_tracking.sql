-- Change tracking: statement-level triggers with transition tables, one firing per statement, each running the
-- statements tracking.py wrote for the table (splitgraph_audit.tracked.logging) with the statement's number.
-- Each audit row is (the table's columns, sg_audit_stmt, sg_audit_kind[, sg_audit_keys]): kind 0 holds a row's old
-- values (UPDATE, DELETE, TRUNCATE), kind 1 only a key that was written (its values are the live table's), kind
-- 3 a row's new values (UPDATE), kind 6 the keys written by one statement as an array (sg_audit_keys), kind 7 only
-- that a statement wrote rows (whose keys lie outside the log's bounds: the live table tells their changes), kind
-- 8 only that a statement wrote while a checkout patched the table (state patching); kind 2 is the sentinel,
-- kinds 4 and 5 the lowest and highest key when the log (re)started. Old and new records of one UPDATE share its
-- statement number; the old sorts first (kind 0), so a key's first record always tells its state before
-- tracking. The triggers run as the extension's owner so that no role can write audit rows directly, and they
-- take their statements from splitgraph_audit.tracked by the table's oid, never from trigger arguments a table
-- owner could forge. They are enabled ALWAYS, so writes under session_replication_role = replica (logical
-- replication) are logged too. Partitioned tables, inheritance parents and children, and tables too wide to log get
-- no triggers: their changes are found by comparing them with HEAD (tracking.py).

-- on_change(): the one function of the four tracking triggers (tracking.TRIGGERS). A table is found by its oid
-- only: a table restored from a dump, or made again with triggers named like ours, is not logged
-- (schema_tracking adopts a restored table, untrusted). A statement fired inside another trigger (pg_trigger_depth
-- above 1) runs the "nested" statements, which log the keys it touched, so that the table's own values are read
-- for them. (Transition tables are visible to the trigger function's own statements only, so it runs them; a
-- TRUNCATE has none: just before it, the rows are read from the table itself.) Synchronized scans stay off so that
-- reading the first rows of a log (its sentinel and bounds) never starts in the middle of a large one.
create function splitgraph_audit.on_change() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set synchronize_seqscans = off
as $$
declare
    t record;
    statement bigint;
    statements jsonb;
    logging text;
begin
    select tracked.state, tracked.logging, tracked.audit_table into t
    from splitgraph_audit.tracked where tracked.relid = tg_relid;
    if not found or t.state not in ('tracking', 'patching') then
        return null;  -- the table is not tracked, or its log is not trusted
    end if;
    -- A statement on an inheritance parent changes its children's rows too, and its transition tables hold them:
    -- the log could no longer tell the parent's own rows. From now on the table is compared with HEAD.
    if exists (select from pg_inherits h where h.inhparent = tg_relid) then
        update splitgraph_audit.tracked set state = 'untrusted' where tracked.relid = tg_relid;
        return null;
    end if;
    if t.state = 'patching' then
        -- a checkout is changing the table in place: its rows are not logged (the log starts afresh once the
        -- checkout is done), only that a statement wrote (kind 8), so that the checkout can tell whether any
        -- statement but its own wrote meanwhile
        execute format('insert into %s (sg_audit_stmt, sg_audit_kind) values ($1, 8)', t.audit_table)
        using nextval('splitgraph_audit.statements');
        return null;
    end if;
    statements := coalesce(case when pg_trigger_depth() > 1 then t.logging -> ('nested ' || lower(tg_op)) end,
                           t.logging -> lower(tg_op));
    if jsonb_typeof(statements) is distinct from 'array' then
        -- no statements for this event (never written so): the write cannot be logged, so it is found by comparison
        update splitgraph_audit.tracked set state = 'untrusted' where tracked.relid = tg_relid;
        return null;
    end if;
    statement := nextval('splitgraph_audit.statements');
    for logging in select jsonb_array_elements_text(statements)
    loop
        execute format(logging, case when tg_op = 'TRUNCATE' then 'only ' || tg_relid::regclass::text
                                     else 'sg_old' end)
        using statement;
    end loop;
    return null;
end
$$;

-- fingerprint(relid): what a tracked table and its tracking triggers are: its kind, whether it is a partition or
-- has inheritance relatives, its columns and key, and each trigger named like ours (oid, function, enabled state,
-- events, transition tables). Taken when tracking begins and compared whenever the log is read: a trigger
-- dropped, replaced, disabled or made again, a column changed without an event trigger seeing it
-- (session_replication_role = replica), or a table that gained inheritance relatives, gives another value, and
-- the log is no longer trusted. (The triggers' row versions are left out: freezing pg_trigger changes what xmin
-- shows, and no role but a superuser can put our trigger functions on a table, or disable and enable a trigger
-- again unseen.) PL/pgSQL with generic plans: its catalog lookups are planned once per session, not at each call.
create function splitgraph_audit.fingerprint(relid oid) returns text
language plpgsql stable
set search_path = pg_catalog, pg_temp
set plan_cache_mode = force_generic_plan
as $$
begin
    return concat_ws(' | ',
        (select c.relkind::text || case when c.relispartition then ' partition' else '' end
         from pg_class c where c.oid = fingerprint.relid),
        (select 'inheritance' where exists (select from pg_inherits h
                                            where h.inhrelid = fingerprint.relid or h.inhparent = fingerprint.relid)),
        (select string_agg(concat_ws(':', a.attnum, quote_ident(a.attname), a.atttypid, a.atttypmod, a.attcollation,
                                     coalesce(a.attnum = any(i.indkey), false)), ', ' order by a.attnum)
         from pg_attribute a
         left join pg_index i on i.indrelid = a.attrelid and i.indisprimary
         where a.attrelid = fingerprint.relid and a.attnum > 0 and not a.attisdropped),
        (select string_agg(concat_ws(':', g.tgname, g.oid, g.tgfoid::regproc, g.tgenabled, g.tgtype, g.tgoldtable,
                                     g.tgnewtable), ', ' order by g.tgname)
         from pg_trigger g
         where g.tgrelid = fingerprint.relid
           and g.tgname in ('sg_track_insert', 'sg_track_update', 'sg_track_delete', 'sg_track_truncate')));
end
$$;

-- After ALTER TABLE on a tracked table, its changes are no longer known row by row (and the triggers' column
-- lists may no longer fit): stop logging it and mark it, so that its next commit stores a snapshot. The tables
-- an ALTER TABLE makes (or made) inheritance relatives of the altered one (INHERIT, ATTACH PARTITION) are marked
-- untrusted: a write through a parent reaches them without firing their own triggers.
create function splitgraph_audit.on_alter_table() returns event_trigger
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    altered record;
    tracking_trigger name;
begin
    update splitgraph_audit.tracked t set state = 'untrusted'
    where t.state in ('tracking', 'patching') and t.relid in (
        select h.inhrelid from pg_event_trigger_ddl_commands() c join pg_inherits h on h.inhparent = c.objid
        union all
        select h.inhparent from pg_event_trigger_ddl_commands() c join pg_inherits h on h.inhrelid = c.objid);
    for altered in
        select distinct t.relid
        from pg_event_trigger_ddl_commands() c
        join splitgraph_audit.tracked t on t.relid = c.objid and t.state <> 'altered'
    loop
        update splitgraph_audit.tracked set state = 'altered' where relid = altered.relid;
        -- by oid: the table may just have been renamed; only the triggers that are there (no NOTICE)
        for tracking_trigger in
            select g.tgname from pg_trigger g
            where g.tgrelid = altered.relid
              and g.tgname in ('sg_track_insert', 'sg_track_update', 'sg_track_delete', 'sg_track_truncate')
        loop
            execute format('drop trigger %I on %s', tracking_trigger, altered.relid::regclass);
        end loop;
    end loop;
end
$$;
-- the linter's postgres dialect does not parse CREATE EVENT TRIGGER
-- noqa: disable=PRS
create event trigger splitgraph_track_alter on ddl_command_end when tag in ('ALTER TABLE')
execute function splitgraph_audit.on_alter_table();
-- noqa: enable=PRS

-- No role but the owner may run these: a role that could execute a trigger function could put it on a table of
-- its own (and write audit rows through it) or make a restored table look tracked.
revoke all on function splitgraph_audit.fingerprint(oid) from public;
revoke all on function splitgraph_audit.on_change() from public;
revoke all on function splitgraph_audit.on_alter_table() from public;
