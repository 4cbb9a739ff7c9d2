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
-- The import doors run with their caller's rights and call these helpers, which check rights themselves.
grant execute on function splitgraph_internal.import_source_kind(text) to public;
grant execute on function splitgraph_internal.import_from_image(text, text[], text, text[], text) to public;
grant execute on function splitgraph_internal.import_check_source(text, text[]) to public;
grant execute on function splitgraph_internal.import_staged(text, text, text[], text[], text, text[], text) to public;
grant execute on function splitgraph_internal.import_sandbox(text, text) to public;
grant execute on function splitgraph_internal.import_explain(text, text) to public;
grant execute on function splitgraph_internal.import_check_plan(text, text, text, text, text) to public;
grant execute on function splitgraph_internal.import_drop_sandbox(text) to public;
