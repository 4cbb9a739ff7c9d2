-- Tracked tables: every change to them is logged, statement by statement, into an audit table of their own.
create table splitgraph_audit.tracked (
    relid oid primary key,
    schema_name text not null,
    table_name text not null,
    audit_table text not null unique,
    key_columns text not null,
    all_columns text not null,
    has_primary_key boolean not null,
    state text not null default 'tracking',
    constraint state_known check (state in ('tracking', 'altered', 'truncated', 'lost'))
);
create unique index tracked_by_name on splitgraph_audit.tracked (schema_name, table_name);
comment on table splitgraph_audit.tracked is
'Tables whose changes are logged; the triggers find their audit table here';
comment on column splitgraph_audit.tracked.relid is 'The tracked table (a table dropped and made again is another one)';
comment on column splitgraph_audit.tracked.schema_name is 'Schema of the tracked table';
comment on column splitgraph_audit.tracked.table_name is 'Name of the tracked table';
comment on column splitgraph_audit.tracked.audit_table is 'Qualified name of its audit table in splitgraph_audit';
comment on column splitgraph_audit.tracked.key_columns is 'Quoted key columns (the primary key, or every column)';
comment on column splitgraph_audit.tracked.all_columns is 'Quoted columns, in order';
comment on column splitgraph_audit.tracked.has_primary_key is 'False when the whole row is the key';
comment on column splitgraph_audit.tracked.state is
'tracking; altered (ALTER TABLE since: changes no longer known row by row); truncated; lost (the log did not '
'survive a crash)';

-- Statements that changed tracked tables, in order: the first record of a key tells its state before tracking.
create sequence splitgraph_audit.statements;
comment on sequence splitgraph_audit.statements is 'Orders the statements logged in audit tables';

select pg_catalog.pg_extension_config_dump('splitgraph_audit.tracked', '');
select pg_catalog.pg_extension_config_dump('splitgraph_audit.statements', '');
