-- The public API. Each function is a door: SECURITY DEFINER with a pinned search_path, and the settings that
-- shape a row's text form pinned (time zone, date, interval, float and bytea output), so the same rows hash the
-- same on every engine and in every session. It calls the PL/Python function of the same name in
-- splitgraph_internal and raises its errors again with their SQLSTATE, message, detail and hint.

-- init(repository): a new empty repository with the root image, branch main, checked out (empty schema).
create function splitgraph.init(repository text)
returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    perform splitgraph_internal.init(repository);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.init(text) is
'init(repository): create an empty repository (root image 000..0, branch main) and check it out into the schema of the same name';

-- repositories(): every local repository with its HEAD, branch and upstream.
create function splitgraph.repositories()
returns table (repository text, head text, branch text, checked_out boolean, images integer, upstream text)
language plpgsql stable security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return query select * from splitgraph_internal.repositories();
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.repositories() is
'repositories(): all local repositories: HEAD, the branch followed, whether checked out, number of images, upstream';

-- rm(repository): delete a repository; its objects stay until cleanup().
create function splitgraph.rm(repository text)
returns void
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    perform splitgraph_internal.rm(repository);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.rm(text) is
'rm(repository): delete a repository: its images, tags, branches and checkout; objects stay until cleanup()';
