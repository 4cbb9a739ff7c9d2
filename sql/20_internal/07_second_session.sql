-- A commit may hash rows in a second session of this engine while its own session copies them
-- (plpython/splitgraph_pl/second_session.py). These are contrib's dblink functions, declared here from its library
-- under names of the extension's own, so that installing splitgraph makes no dblink function executable by any
-- role: nobody but the extension's owner may call them (90_grants revokes them from PUBLIC). Without contrib's
-- dblink library they are not created, and commits hash in one session.
do $$
begin
    create function splitgraph_internal.second_connect(name text, conninfo text) returns text
    as '$libdir/dblink', 'dblink_connect' language c strict;
    create function splitgraph_internal.second_exec(name text, statements text) returns text
    as '$libdir/dblink', 'dblink_exec' language c strict;
    create function splitgraph_internal.second_send(name text, query text) returns integer
    as '$libdir/dblink', 'dblink_send_query' language c strict;
    create function splitgraph_internal.second_busy(name text) returns integer
    as '$libdir/dblink', 'dblink_is_busy' language c strict;
    create function splitgraph_internal.second_result(name text) returns setof record
    as '$libdir/dblink', 'dblink_get_result' language c strict;
    create function splitgraph_internal.second_cancel(name text) returns text
    as '$libdir/dblink', 'dblink_cancel_query' language c strict;
    create function splitgraph_internal.second_disconnect(name text) returns text
    as '$libdir/dblink', 'dblink_disconnect' language c strict;
    comment on function splitgraph_internal.second_connect(text, text) is
    'dblink_connect: a named connection (commits hash in a second session of this engine); owner only';
    comment on function splitgraph_internal.second_exec(text, text) is 'dblink_exec on a named connection; owner only';
    comment on function splitgraph_internal.second_send(text, text) is
    'dblink_send_query on a named connection; owner only';
    comment on function splitgraph_internal.second_busy(text) is 'dblink_is_busy of a named connection; owner only';
    comment on function splitgraph_internal.second_result(text) is
    'dblink_get_result of a named connection; owner only';
    comment on function splitgraph_internal.second_cancel(text) is
    'dblink_cancel_query of a named connection; owner only';
    comment on function splitgraph_internal.second_disconnect(text) is 'dblink_disconnect; owner only';
exception when undefined_file then
    -- contrib's dblink library is not installed here
    null;
end
$$;
