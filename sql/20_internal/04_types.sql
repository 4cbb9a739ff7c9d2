-- Result rows of API functions whose argument shares a name with a result column (a function's arguments and
-- RETURNS TABLE columns may not share names, a composite type's columns may).
create type splitgraph.status_row as (
    repository text, table_name text, added integer, removed integer, updated integer, schema_changed boolean
);
comment on type splitgraph.status_row is 'A row of splitgraph.status(): the pending changes of one table';

create type splitgraph.dependents_row as (repository text, image_hash text);
comment on type splitgraph.dependents_row is 'A row of splitgraph.dependents(): an image built from the one given';
