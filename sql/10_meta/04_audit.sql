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
    fingerprint text,
    logging jsonb not null default '{}',
    bounds text,
    constraint state_known check (state in ('tracking', 'patching', 'compared', 'untrusted', 'altered', 'lost'))
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
'tracking (the log is trusted); patching (a checkout is changing the table in place to a nearby image: the log '
'records only which statements write, and starts afresh once the checkout verified that no other did); '
'compared (by design: a partitioned table, an inheritance parent or child, or a table too wide to log; its changes '
'are found by comparing it with HEAD); '
'untrusted (the log may have missed writes: a tracking trigger was dropped, replaced or disabled, the table '
'gained inheritance relatives or became a partition, or it was restored from a dump); altered (ALTER TABLE '
'since: changes no longer known row by row); lost (the log did not survive a crash)';
comment on column splitgraph_audit.tracked.logging is
'The statements the tracking trigger runs for each event (tracking.py writes them when tracking begins): keys '
'"insert", "update", "delete", "truncate", and "nested update"... for statements fired inside another trigger; '
'each a format() string whose %1$s is the relation of old rows';
comment on column splitgraph_audit.tracked.bounds is
'The statement (a format() string whose %1$s is the table) that logs the lowest and highest key of the table '
'when its log (re)starts; null when rows are logged whatever their key';
comment on column splitgraph_audit.tracked.fingerprint is
'What the table and its tracking triggers were when tracking began (splitgraph_audit.fingerprint): a log is '
'trusted only while they are unchanged';

-- Statements that changed tracked tables, in order: the first record of a key tells its state before tracking.
create sequence splitgraph_audit.statements;
comment on sequence splitgraph_audit.statements is 'Orders the statements logged in audit tables';

select pg_catalog.pg_extension_config_dump('splitgraph_audit.tracked', '');
select pg_catalog.pg_extension_config_dump('splitgraph_audit.statements', '');
