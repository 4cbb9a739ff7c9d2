-- Everyone may call the API (each function checks write rights itself) and read the metadata;
-- nobody but the owner touches the helpers or writes the metadata directly.
grant usage on schema splitgraph to public;
grant usage on schema splitgraph_meta to public;
grant select on all tables in schema splitgraph_meta to public;
revoke all on all functions in schema splitgraph_internal from public;
