-- What every engine serves to the others (clone, pull, push: see plpython/splitgraph_pl/transfer.py). Another
-- engine reads these views and writes into `requests` through postgres_fdw foreign tables, as the role it logs in
-- as here; everything it does happens in the one transaction postgres_fdw opens for its call. The views are the
-- extension's: every role may read every repository (as through the API), and nobody reaches splitgraph_meta
-- directly (functions in a view run as its reader, so the views name no table of splitgraph_meta by name: they
-- find object tables in pg_class). remotes.FOREIGN_TABLES declares the same columns on the client side.
create schema splitgraph_remote;
comment on schema splitgraph_remote is 'What other engines read (and push through) to clone, pull and push';

create view splitgraph_remote.protocol as
select 2 as version; -- noqa: RF04
comment on view splitgraph_remote.protocol is 'Version of what this schema serves: clients refuse another';

create view splitgraph_remote.repositories as
select r.repository
from splitgraph_meta.repositories as r;
comment on view splitgraph_remote.repositories is 'Repositories of this engine';

create view splitgraph_remote.images as
select
    i.repository,
    i.image_hash,
    i.parent_id,
    i.created,
    i.comment,
    i.provenance,
    (
        select m.parent_id from splitgraph_meta.merge_parents as m
        where m.repository = i.repository and m.image_hash = i.image_hash
        order by m.parent_id limit 1
    ) as merged
from splitgraph_meta.images as i;
comment on view splitgraph_remote.images is
'Images of every repository; merged: the second parent of a merge image';

create view splitgraph_remote.tags as
select
    t.repository,
    t.tag,
    t.image_hash
from splitgraph_meta.tags as t;
comment on view splitgraph_remote.tags is 'Tags of every repository';

create view splitgraph_remote.branches as
select
    b.repository,
    b.branch,
    b.image_hash
from splitgraph_meta.branches as b;
comment on view splitgraph_remote.branches is 'Branches of every repository';

create view splitgraph_remote.tables as
select
    t.repository,
    t.image_hash,
    t.table_name,
    t.table_schema,
    t.table_definition,
    t.object_ids
from splitgraph_meta.tables as t;
comment on view splitgraph_remote.tables is 'Table versions of every image';

create view splitgraph_remote.objects as
select
    o.object_id,
    o.format,
    o.namespace,
    o.rows_inserted,
    o.rows_deleted,
    o.insertion_hash,
    o.deletion_hash,
    o.index,
    o.table_schema,
    exists(
        select from pg_catalog.pg_class as c
        where c.relnamespace = 'splitgraph_meta'::regnamespace and c.relname = o.object_id
    ) as stored -- noqa: RF04
from splitgraph_meta.objects as o;
comment on view splitgraph_remote.objects is 'Object metadata; stored: whether this engine has the object''s rows';

-- Only the rows a query selects are dumped: postgres_fdw sends `where object_id = any(...)`, which PostgreSQL
-- applies to splitgraph_meta.objects (its primary key) before it computes the select list.
create view splitgraph_remote.object_dumps as
select
    o.object_id,
    splitgraph_internal.dump_for_transfer(o.object_id) as dump -- noqa: RF04
from splitgraph_meta.objects as o
where exists(
    select from pg_catalog.pg_class as c
    where c.relnamespace = 'splitgraph_meta'::regnamespace and c.relname = o.object_id
);
comment on view splitgraph_remote.object_dumps is 'Each stored object as bytes load_object accepts';

-- Objects this engine keeps in its object storage (configure_s3): a client downloads them through URLs this
-- engine signs (object_urls), and a push with handler S3 does not upload them again.
create view splitgraph_remote.object_locations as
select
    l.object_id,
    l.protocol
from splitgraph_meta.object_locations as l
where l.protocol = 'S3';
comment on view splitgraph_remote.object_locations is 'Objects kept in this engine''s object storage';

-- A push writes here, one step a row, in order: repository, objects, images (parents first), tables, tags,
-- branches. Each row is checked and applied as the role that logged in (session_user): see transfer.receive.
create view splitgraph_remote.requests as
select
    null::text as repository,
    null::text as kind,
    null::jsonb as payload,
    null::bytea as dump -- noqa: RF04
where false;
comment on view splitgraph_remote.requests is
'Insert to push: (repository, kind: repository|object|image|table|tag|branch, payload, dump); reads as empty';

-- The trigger of `requests`: runs transfer.receive with the extension's rights (receive checks the caller);
-- errors are raised again as a public function's door raises them.
create function splitgraph_internal.on_request() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    sg_state text;
    sg_message text;
    sg_detail text;
    sg_hint text;
    sg_context text;
begin
    if tg_op <> 'INSERT' then
        raise exception 'splitgraph_remote.requests takes inserts only' using errcode = 'feature_not_supported';
    end if;
    perform splitgraph_internal.receive(new.repository, new.kind, new.payload, new.dump);
    return new;
exception when others or query_canceled then
    get stacked diagnostics sg_state = returned_sqlstate, sg_message = message_text,
        sg_detail = pg_exception_detail, sg_hint = pg_exception_hint, sg_context = pg_exception_context;
    select e.message, e.detail, e.hint into sg_message, sg_detail, sg_hint
    from splitgraph_internal.tidy_error(sg_state, sg_message, sg_detail, sg_hint, sg_context) as e;
    if sg_detail is null and sg_hint is null then
        raise exception using errcode = sg_state, message = sg_message;
    elsif sg_hint is null then
        raise exception using errcode = sg_state, message = sg_message, detail = sg_detail;
    elsif sg_detail is null then
        raise exception using errcode = sg_state, message = sg_message, hint = sg_hint;
    else
        raise exception using errcode = sg_state, message = sg_message, detail = sg_detail, hint = sg_hint;
    end if;
end
$$;
revoke all on function splitgraph_internal.on_request() from public;
comment on function splitgraph_internal.on_request() is 'Trigger of splitgraph_remote.requests: applies a push';

-- (UPDATE and DELETE are no privilege of anyone's; the trigger makes them fail as such, not as a view that
-- cannot be updated.)
create trigger receive instead of insert or update or delete on splitgraph_remote.requests
for each row execute function splitgraph_internal.on_request();

-- Pre-signed URLs, asked for by inserting (repository, method 'PUT' or 'GET', s3_host, object_ids) and read
-- back from the RETURNING urls (one per object; for PUT, null when the object is in the bucket already). The
-- trigger checks the caller (session_user): upload URLs only for a repository whose namespace it may write.
create view splitgraph_remote.object_urls as
select
    null::text as repository,
    null::text as method, -- noqa: RF04
    null::text as s3_host,
    null::text [] as object_ids,
    null::text [] as urls -- noqa: RF04
where false;
comment on view splitgraph_remote.object_urls is
'Insert (repository, method PUT|GET, s3_host, object_ids) ... returning urls: pre-signed URLs; reads as empty';

create function splitgraph_internal.on_object_urls() returns trigger
language plpgsql volatile security definer
set search_path = pg_catalog, pg_temp
as $$
declare
    sg_state text;
    sg_message text;
    sg_detail text;
    sg_hint text;
    sg_context text;
begin
    if tg_op <> 'INSERT' then
        raise exception 'splitgraph_remote.object_urls takes inserts only' using errcode = 'feature_not_supported';
    end if;
    new.urls := splitgraph_internal.object_urls(new.repository, new.method, new.s3_host, new.object_ids);
    return new;
exception when others or query_canceled then
    get stacked diagnostics sg_state = returned_sqlstate, sg_message = message_text,
        sg_detail = pg_exception_detail, sg_hint = pg_exception_hint, sg_context = pg_exception_context;
    select e.message, e.detail, e.hint into sg_message, sg_detail, sg_hint
    from splitgraph_internal.tidy_error(sg_state, sg_message, sg_detail, sg_hint, sg_context) as e;
    if sg_detail is null and sg_hint is null then
        raise exception using errcode = sg_state, message = sg_message;
    elsif sg_hint is null then
        raise exception using errcode = sg_state, message = sg_message, detail = sg_detail;
    elsif sg_detail is null then
        raise exception using errcode = sg_state, message = sg_message, hint = sg_hint;
    else
        raise exception using errcode = sg_state, message = sg_message, detail = sg_detail, hint = sg_hint;
    end if;
end
$$;
revoke all on function splitgraph_internal.on_object_urls() from public;
comment on function splitgraph_internal.on_object_urls() is 'Trigger of splitgraph_remote.object_urls: signs URLs';

create trigger sign instead of insert or update or delete on splitgraph_remote.object_urls
for each row execute function splitgraph_internal.on_object_urls();

grant usage on schema splitgraph_remote to public;
grant select on all tables in schema splitgraph_remote to public;
grant insert on splitgraph_remote.requests to public;
grant insert on splitgraph_remote.object_urls to public;
