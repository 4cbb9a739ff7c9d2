-- Everyone may call the API (each function checks write rights itself, and every role may read every repository
-- through it). Nobody but the owner reaches splitgraph_meta or splitgraph_audit directly: without USAGE on the
-- schema no other role can even name an object table, so nothing outside the extension can depend on one
-- (a view over it, however unreadable, would stop cleanup() for good).
grant usage on schema splitgraph to public;
revoke all on all functions in schema splitgraph_internal from public;
grant usage on schema splitgraph_internal to public;
-- Safe on their own, and needed by code that runs with its caller's rights (SECURITY.md says why).
grant execute on function splitgraph_internal.python_init() to public;
grant execute on function splitgraph_internal.tidy_error(text, text, text, text, text) to public;
grant execute on function splitgraph_internal.fragment_rows(text) to public;
-- The bodies of SECURITY INVOKER functions, and the helpers declared public (scripts/build_sql.py writes them
-- in place of the next line).
-- @DECLARED_GRANTS@
