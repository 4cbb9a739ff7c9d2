-- Everyone may call the API (each function checks write rights itself) and read the metadata;
-- nobody but the owner touches the helpers or writes the metadata directly.
grant usage on schema splitgraph to public;
grant usage on schema splitgraph_meta to public;
grant select on all tables in schema splitgraph_meta to public;
revoke all on all functions in schema splitgraph_internal from public;
-- apply_fragments runs with its caller's rights: the caller needs the pieces it is made of.
grant usage on schema splitgraph_internal to public;
grant execute on function splitgraph_internal.python_init() to public;
grant execute on function splitgraph_internal.rethrow(text, text, text, text) to public;
grant execute on function splitgraph_internal.apply_fragments(text[], text, text, text) to public;
