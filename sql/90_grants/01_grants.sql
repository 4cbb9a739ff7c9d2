-- Everyone may call the API (each function checks write rights itself) and read the metadata;
-- nobody but the owner touches the helpers or writes the metadata directly.
grant usage on schema splitgraph to public;
grant usage on schema splitgraph_meta to public;
grant select on all tables in schema splitgraph_meta to public;
revoke all on all functions in schema splitgraph_internal from public;
grant usage on schema splitgraph_internal to public;
-- Safe on their own, and needed by code that runs with its caller's rights (SECURITY.md says why).
grant execute on function splitgraph_internal.python_init() to public;
grant execute on function splitgraph_internal.tidy_error(text, text, text, text, text) to public;
grant execute on function splitgraph_internal.fragment_rows(text) to public;
-- The bodies of SECURITY INVOKER functions, and the helpers declared public (scripts/build_sql.py writes them
-- in place of the next line).
-- @DECLARED_GRANTS@
