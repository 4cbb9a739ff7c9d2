-- tidy_error(state, message, detail, hint, context): what a door raises again for an error of its body.
-- PL/Python prefixes the messages of exceptions leaving it ("plpy.Error: ", "spiexceptions.UniqueViolation: "):
-- they are removed, so callers read exactly the message written. An internal error (XX000 from
-- splitgraph_pl.declare.call, whose detail is the Python traceback; 38000 from Python code outside it, whose
-- traceback PL/Python put in the context) is marked as a bug.
create function splitgraph_internal.tidy_error(
    error_state text, error_message text, error_detail text, error_hint text, error_context text,
    out message text, out detail text, out hint text
)
language sql immutable
set search_path = pg_catalog, pg_temp
as $$
    select pg_catalog.regexp_replace(error_message, '^((plpy\.Error|spiexceptions\.[A-Za-z]+): )+', ''),
           case when error_state = '38000'
                then pg_catalog.concat_ws(e'\n', nullif(error_detail, ''),
                                          pg_catalog.substring(error_context, 'Traceback.*'))
                else nullif(error_detail, '') end,
           case when error_state in ('XX000', '38000')
                then coalesce(nullif(error_hint, ''), 'this is a bug in splitgraph; please report it with the detail')
                else nullif(error_hint, '') end
$$;
