-- checkout(repository, image, force, layered): materialize an image into the repository's schema.
create function splitgraph.checkout(
    repository text, image text, force boolean default false, layered boolean default false
)
returns text
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'
set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'
as $$
declare
    detail text;
    hint text;
begin
    return splitgraph_internal.checkout(repository, image, force, layered);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.checkout(text, text, boolean, boolean) is
'checkout(repository, image, force, layered): replace the checkout with the image (hash, prefix, tag, branch, latest, HEAD) and return its hash; a branch is followed by later commits, anything else is detached; layered makes read-only views over the fragments instead of tables';

-- uncheckout(repository, force): drop the checkout schema, keep every image.
create function splitgraph.uncheckout(repository text, force boolean default false)
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
    perform splitgraph_internal.uncheckout(repository, force);
exception when others then
    get stacked diagnostics detail = pg_exception_detail, hint = pg_exception_hint;
    perform splitgraph_internal.rethrow(sqlstate, sqlerrm, detail, hint);
end
$$;
comment on function splitgraph.uncheckout(text, boolean) is
'uncheckout(repository, force): drop the checkout schema and forget HEAD; every image stays';
