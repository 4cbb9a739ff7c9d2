-- rethrow(state, message, detail, hint): raise an error again, without the prefix PL/Python gives the
-- messages of exceptions leaving it ("plpy.Error: ..."), so callers read exactly the message we wrote.
create function splitgraph_internal.rethrow(state text, message text, detail text, hint text) returns void
language plpgsql
set search_path = pg_catalog, pg_temp
as $$
declare
    clean text := pg_catalog.regexp_replace(message, '^((plpy\.Error|spiexceptions\.[A-Za-z]+): )+', '');
begin
    detail := nullif(detail, '');
    hint := nullif(hint, '');
    if detail is null and hint is null then
        raise exception using errcode = state, message = clean;
    elsif hint is null then
        raise exception using errcode = state, message = clean, detail = detail;
    elsif detail is null then
        raise exception using errcode = state, message = clean, hint = hint;
    else
        raise exception using errcode = state, message = clean, detail = detail, hint = hint;
    end if;
end
$$;
