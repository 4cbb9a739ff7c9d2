-- The public API, the storage, the change log and the helpers each have a schema of their own. CREATE EXTENSION
-- makes schema splitgraph (the control file names it), so it stays when the extension is dropped.
comment on schema splitgraph is 'Version control for tables: the public API (see \df+ splitgraph.*)';

create schema splitgraph_meta;
comment on schema splitgraph_meta is
'Images, tags, branches, table versions and objects (fragments stored as tables named by object id)';

create schema splitgraph_audit;
comment on schema splitgraph_audit is 'Pending changes of tracked tables';

create schema splitgraph_internal;
comment on schema splitgraph_internal is 'Helpers of the splitgraph extension; not for direct use';
