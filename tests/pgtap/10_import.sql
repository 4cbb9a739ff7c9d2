-- Import: import_table / import_tables / import_query graft tables into a repository as one new commit on its
-- HEAD without copying data (the same object ids), leave the target's pending changes pending, snapshot plain
-- schemas into content-addressed objects, and refuse what they must refuse without leaving an image behind.
begin;
set client_min_messages = warning;
select plan(167);

-- object ids of a table version, in apply order
create function pg_temp.objs(repo text, image text, tbl text) returns text[] language sql as $f$
    select array(select jsonb_array_elements_text(splitgraph.table_info(repo, image, tbl) -> 'objects'))
$f$;
create function pg_temp.object_count() returns bigint language sql as $f$
    select count(*) from splitgraph_meta.objects
$f$;
create function pg_temp.image_count(repo text) returns bigint language sql as $f$
    select count(*) from splitgraph.images(repo)
$f$;
create function pg_temp.head(repo text) returns text language sql as $f$
    select head from splitgraph.repositories() where repository = repo
$f$;
-- the pending changes of a repository, as one comparable text
create function pg_temp.status_of(repo text) returns text language sql as $f$
    select coalesce(string_agg(format('%s:%s:%s:%s:%s', table_name, added, removed, updated, schema_changed), ' '
                               order by table_name), '')
    from splitgraph.status(repo)
$f$;
create function pg_temp.sandboxes() returns bigint language sql as $f$
    select count(*) from pg_namespace where nspname like 'sg_query_%'
$f$;

-- ---------------------------------------------------------------------------------------------------------------
-- A source with two images (v1: t has 30 rows in 3 chunks; v2: t has 31 rows, a delta) and a target with a table
-- of its own and pending changes (an insert, an update, a new table)
-- ---------------------------------------------------------------------------------------------------------------
select splitgraph.init('imp/src');
create table "imp/src".t (id int primary key, v text);
insert into "imp/src".t select i, 'v' || i from generate_series(1, 30) i;
create table "imp/src".u (a int, b text);
insert into "imp/src".u values (1, 'x'), (2, 'y'), (2, 'y');
create table "imp/src".w (id int primary key, grp text, amount numeric(8,2));
insert into "imp/src".w select i, case when i % 2 = 0 then 'even' else 'odd' end, i * 1.5 from generate_series(1, 30) i;
select splitgraph.commit('imp/src', 'v1', chunk_size => 10) as v1 \gset
select splitgraph.tag('imp/src', :'v1', 'v1');
insert into "imp/src".t values (31, 'v31');
select splitgraph.commit('imp/src', 'v2') as v2 \gset
select splitgraph.tag('imp/src', :'v2', 'v2');

select splitgraph.init('imp/dst');
create table "imp/dst".d (id int primary key, v text);
insert into "imp/dst".d values (1, 'one'), (2, 'two');
select splitgraph.commit('imp/dst', 'd1') as d1 \gset
insert into "imp/dst".d values (3, 'three');
update "imp/dst".d set v = 'TWO' where id = 2;
create table "imp/dst".pend (x int);
insert into "imp/dst".pend values (42);

select pg_temp.status_of('imp/dst') as status_before \gset
select pg_temp.object_count() as objects_before \gset
select pg_temp.image_count('imp/dst') as images_before \gset

-- ---------------------------------------------------------------------------------------------------------------
-- import_table: one table, no data copied, one commit on HEAD, the branch moves, pending changes stay pending
-- ---------------------------------------------------------------------------------------------------------------
select isnt(:'status_before'::text, '', 'the target has pending changes before the import');
select splitgraph.import_table('imp/src', 't', 'imp/dst') as i1 \gset
select is(pg_temp.objs('imp/dst', :'i1', 't'), pg_temp.objs('imp/src', :'v2', 't'),
          'the imported table lists the same object ids as the source''s (HEAD) version');
select is(cardinality(pg_temp.objs('imp/dst', :'i1', 't')), 4, 'all four of them (three chunks and a delta)');
select is(pg_temp.object_count(), :'objects_before'::bigint, 'no object is stored: no data is copied');
select is(pg_temp.image_count('imp/dst'), :'images_before'::bigint + 1, 'the import makes exactly one image');
select results_eq($$select image_hash, parent_id from splitgraph.log('imp/dst') limit 1$$,
                  format('values (%L::text, %L::text)', :'i1', :'d1'),
                  'the new image is the newest in the log, its parent the old HEAD');
select is(pg_temp.head('imp/dst'), :'i1', 'it becomes HEAD');
select results_eq($$select branch, image_hash, current from splitgraph.branches('imp/dst')$$,
                  format('values (%L::text, %L::text, true)', 'main', :'i1'), 'the checked-out branch moves to it');
select is(pg_temp.objs('imp/dst', :'i1', 'd'), pg_temp.objs('imp/dst', :'d1', 'd'),
          'the target''s own tables keep their committed version in the new image');
select is((select relkind::text from pg_class where oid = '"imp/dst".t'::regclass), 'r',
          'the imported table is materialized in the checkout as a table');
select results_eq($$select id, v from "imp/dst".t order by id$$, $$select id, v from "imp/src".t order by id$$,
                  'with the rows of the source');
select col_is_pk('imp/dst', 't', 'id', 'and its primary key');
select ok(('imp/dst', 't') in (select schema_name::text, table_name::text from splitgraph.tracked_tables()),
          'and it is tracked');
select is(pg_temp.status_of('imp/dst'), :'status_before', 'the target''s pending changes are still pending');
select results_eq($$select id, v from "imp/dst".d order by id$$,
                  $$values (1, 'one'), (2, 'TWO'), (3, 'three')$$, 'its pending rows are untouched');
select is((select x from "imp/dst".pend), 42, 'so is its pending new table');
select is(splitgraph.show('imp/dst', :'i1') -> 'tables' ? 'pend', false,
          'which the import does not commit');

-- a later change to the imported table commits as a delta on top of the shared objects
update "imp/dst".t set v = 'changed' where id = 5;
select results_eq($$select added, removed, updated from splitgraph.status('imp/dst') where table_name = 't'$$,
                  $$values (0, 0, 1)$$, 'a change to the imported table is pending');
select splitgraph.commit('imp/dst', 'after import') as i2 \gset
select is((pg_temp.objs('imp/dst', :'i2', 't'))[1:4], pg_temp.objs('imp/dst', :'i1', 't'),
          'committing it keeps the imported objects');
select is(cardinality(pg_temp.objs('imp/dst', :'i2', 't')), 5, 'and adds one delta object');
select is((splitgraph.object_info((pg_temp.objs('imp/dst', :'i2', 't'))[5]) ->> 'rows_inserted')::int, 1,
          'holding only the changed row');
select is(pg_temp.status_of('imp/dst'), '', 'the commit took the earlier pending changes too');
select results_eq($$select v from "imp/dst".d where id = 2$$, $$values ('TWO')$$, 'as they were');

-- ---------------------------------------------------------------------------------------------------------------
-- import_tables: several tables, one commit, renamed
-- ---------------------------------------------------------------------------------------------------------------
insert into "imp/dst".d values (4, 'four');
select pg_temp.status_of('imp/dst') as status_before \gset
select pg_temp.image_count('imp/dst') as images_before \gset
select splitgraph.import_tables('imp/src', array['u', 'w'], 'imp/dst', array['u2', 'w2']) as i3 \gset
select is(pg_temp.image_count('imp/dst'), :'images_before'::bigint + 1, 'several tables make one image');
select results_eq($$select image_hash, parent_id from splitgraph.log('imp/dst') limit 1$$,
                  format('values (%L::text, %L::text)', :'i3', :'i2'), 'on top of the old HEAD');
select is(pg_temp.objs('imp/dst', :'i3', 'u2'), pg_temp.objs('imp/src', :'v2', 'u'), 'u is grafted as u2');
select is(pg_temp.objs('imp/dst', :'i3', 'w2'), pg_temp.objs('imp/src', :'v2', 'w'), 'w is grafted as w2');
select ok(splitgraph.show('imp/dst', :'i3') -> 'tables' ?& array['d', 't', 'u2', 'w2'],
          'the image has the target''s tables and both new ones');
select results_eq($$select a, b from "imp/dst".u2 order by a, b$$, $$values (1, 'x'), (2, 'y'), (2, 'y')$$,
                  'a table without a primary key keeps its duplicate rows');
select is((select count(*)::int from "imp/dst".w2), 30, 'both are materialized');
select is(pg_temp.status_of('imp/dst'), :'status_before', 'pending changes stay pending again');
select is((select branch from splitgraph.repositories() where repository = 'imp/dst'), 'main',
          'the checkout stays on its branch');

-- ---------------------------------------------------------------------------------------------------------------
-- The source image: HEAD by default, latest when the source is not checked out, or the one named
-- ---------------------------------------------------------------------------------------------------------------
select splitgraph.checkout('imp/src', 'v1');
select splitgraph.import_table('imp/src', 't', 'imp/dst', 't_head') as i4 \gset
select is(pg_temp.objs('imp/dst', :'i4', 't_head'), pg_temp.objs('imp/src', :'v1', 't'),
          'by default the source''s HEAD (here v1) is imported');
select is((select count(*)::int from "imp/dst".t_head), 30, 'with its rows');
select splitgraph.uncheckout('imp/src');
select splitgraph.import_table('imp/src', 't', 'imp/dst', 't_latest') as i5 \gset
select is(pg_temp.objs('imp/dst', :'i5', 't_latest'), pg_temp.objs('imp/src', :'v2', 't'),
          'a source that is not checked out gives its latest image');
select is((select count(*)::int from "imp/dst".t_latest), 31, 'with its rows');
select splitgraph.import_table('imp/src', 't', 'imp/dst', 't_tag', 'v1') as i6 \gset
select is(pg_temp.objs('imp/dst', :'i6', 't_tag'), pg_temp.objs('imp/src', :'v1', 't'), 'a tag names the image');
select splitgraph.import_table('imp/src', 't', 'imp/dst', 't_hash', :'v1') as i7 \gset
select is(pg_temp.objs('imp/dst', :'i7', 't_hash'), pg_temp.objs('imp/src', :'v1', 't'), 'so does a hash');
select splitgraph.import_table('imp/src', 't', 'imp/dst', 't_prefix', left(:'v2', 8)) as i8 \gset
select is(pg_temp.objs('imp/dst', :'i8', 't_prefix'), pg_temp.objs('imp/src', :'v2', 't'),
          'and a hash prefix');
select splitgraph.import_table('imp/src', 't', 'imp/dst', 't_branch', 'main') as i9 \gset
select is(pg_temp.objs('imp/dst', :'i9', 't_branch'), pg_temp.objs('imp/src', :'v2', 't'), 'and a branch');
select splitgraph.checkout('imp/src', 'main');
select is(pg_temp.objs('imp/dst', :'i9', 't'), pg_temp.objs('imp/dst', :'i5', 't'),
          'each import carries the earlier imports forward');

-- a repository imports from itself
select splitgraph.import_table('imp/src', 't', 'imp/src', 't_v1', 'v1') as self \gset
select is(pg_temp.objs('imp/src', :'self', 't_v1'), pg_temp.objs('imp/src', :'v1', 't'),
          'a repository can import an older version of its own table');
select is((select count(*)::int from "imp/src".t_v1), 30, 'which is materialized beside the current one');
select is((select branch from splitgraph.branches('imp/src') where current), 'main', 'on its branch');

-- ---------------------------------------------------------------------------------------------------------------
-- A target that is not checked out: the image is made, nothing is materialized
-- ---------------------------------------------------------------------------------------------------------------
select splitgraph.init('imp/off');
create table "imp/off".base (k int);
select splitgraph.commit('imp/off') as off1 \gset
select splitgraph.uncheckout('imp/off');
select splitgraph.import_table('imp/src', 'w', 'imp/off') as off2 \gset
select is(pg_temp.image_count('imp/off'), 3::bigint, 'an import into a repository that is not checked out makes an image');
select is((select parent_id from splitgraph.images('imp/off') where image_hash = :'off2'), :'off1',
          'on top of its latest image');
select is(pg_temp.objs('imp/off', :'off2', 'w'), pg_temp.objs('imp/src', :'v2', 'w'), 'sharing the objects');
select ok(splitgraph.show('imp/off', :'off2') -> 'tables' ?& array['base', 'w'], 'with the old and the new table');
select hasnt_schema('imp/off', 'nothing is materialized');
select is((select checked_out from splitgraph.repositories() where repository = 'imp/off'), false,
          'the repository stays not checked out');
select splitgraph.checkout('imp/off', :'off2');
select results_eq($$select id, grp, amount from "imp/off".w order by id$$,
                  $$select id, grp, amount from "imp/src".w order by id$$, 'a checkout of the image shows the rows');

-- a detached checkout: HEAD moves, no branch does
select splitgraph.tag('imp/off', :'off2', 'pinned');
select splitgraph.checkout('imp/off', 'pinned');
select array_agg(branch || '=' || image_hash order by branch) as branches_before from splitgraph.branches('imp/off') \gset
select splitgraph.import_table('imp/src', 'u', 'imp/off') as off3 \gset
select is(pg_temp.head('imp/off'), :'off3', 'an import into a detached checkout moves HEAD');
select is((select array_agg(branch || '=' || image_hash order by branch)::text from splitgraph.branches('imp/off')),
          :'branches_before', 'and no branch');
select is((select parent_id from splitgraph.images('imp/off') where image_hash = :'off3'), :'off2', 'its parent is HEAD');

-- ---------------------------------------------------------------------------------------------------------------
-- A plain schema as the source: its current rows are snapshotted into content-addressed objects
-- ---------------------------------------------------------------------------------------------------------------
create schema imp_plain;
create table imp_plain.p (id int primary key, name text, amount numeric(10,2), born date);
insert into imp_plain.p values (1, 'ann', 1.50, '2000-01-01'), (2, 'bob', null, null), (3, null, 3.25, '1999-12-31');
create table imp_plain.nk (x int, y text);
insert into imp_plain.nk values (1, 'same'), (1, 'same'), (2, null);
create view imp_plain.pv as select id, name from imp_plain.p where id < 3;

select pg_temp.status_of('imp/dst') as status_before \gset
select pg_temp.object_count() as objects_before \gset
select pg_temp.image_count('imp/dst') as images_before \gset
select splitgraph.import_tables('imp_plain', array['p', 'nk'], 'imp/dst', array['p1', 'nk1']) as s1 \gset
select is(pg_temp.image_count('imp/dst'), :'images_before'::bigint + 1, 'a plain schema imports as one image');
select is(pg_temp.object_count(), :'objects_before'::bigint + 2, 'its rows are stored as new objects (one a table)');
select results_eq($$select id, name, amount, born from "imp/dst".p1 order by id$$,
                  $$select id, name, amount, born from imp_plain.p order by id$$, 'the snapshot has the rows');
select results_eq($$select x, y from "imp/dst".nk1 order by x, y$$, $$select x, y from imp_plain.nk order by x, y$$,
                  'duplicate rows included');
select col_is_pk('imp/dst', 'p1', 'id', 'the primary key is kept in the checkout');
select is((select bool_or((c ->> 'is_pk')::boolean) filter (where c ->> 'name' = 'id')
           from jsonb_array_elements(splitgraph.table_info('imp/dst', :'s1', 'p1') -> 'columns') c), true,
          'and in the table''s metadata');
select is((select string_agg(c ->> 'type', ',' order by (c ->> 'ordinal')::int)
           from jsonb_array_elements(splitgraph.table_info('imp/dst', :'s1', 'p1') -> 'columns') c),
          'integer,text,numeric(10,2),date', 'the column types are kept');
select is(pg_temp.status_of('imp/dst'), :'status_before', 'pending changes of the target stay pending');

select pg_temp.object_count() as objects_before \gset
select splitgraph.import_table('imp_plain', 'p', 'imp/dst', 'p2') as s2 \gset
select is(pg_temp.object_count(), :'objects_before'::bigint, 'importing the same data again stores no new object');
select is(pg_temp.objs('imp/dst', :'s2', 'p2'), pg_temp.objs('imp/dst', :'s1', 'p1'), 'it lists the same objects');

update imp_plain.p set name = 'carl' where id = 3;
select splitgraph.import_table('imp_plain', 'p', 'imp/dst', 'p3') as s3 \gset
select ok(pg_temp.object_count() > :'objects_before'::bigint, 'changed data is stored as new objects');
select isnt(pg_temp.objs('imp/dst', :'s3', 'p3'), pg_temp.objs('imp/dst', :'s1', 'p1'), 'with other ids');
select results_eq($$select name from "imp/dst".p1 where id = 3$$, $$values (null::text)$$,
                  'the earlier snapshot does not follow the source');
select results_eq($$select name from "imp/dst".p3 where id = 3$$, $$values ('carl'::text)$$,
                  'the new one has the new rows');
select splitgraph.import_table('imp_plain', 'pv', 'imp/dst', 'pv1') as s4 \gset
select results_eq($$select id, name from "imp/dst".pv1 order by id$$, $$values (1, 'ann'), (2, 'bob')$$,
                  'a view of the schema imports its rows');

-- ---------------------------------------------------------------------------------------------------------------
-- import_query: the result of one SELECT over the source image
-- ---------------------------------------------------------------------------------------------------------------
select pg_temp.object_count() as objects_before \gset
select pg_temp.image_count('imp/dst') as images_before \gset
select pg_temp.status_of('imp/dst') as status_before \gset
select splitgraph.import_query('imp/src', 'select * from t', 'imp/dst', 'q_whole') as q1 \gset
select is(pg_temp.objs('imp/dst', :'q1', 'q_whole'), pg_temp.objs('imp/src', :'v2', 't'),
          'a query selecting a whole table unchanged reuses its objects');
select is(pg_temp.object_count(), :'objects_before'::bigint, 'and stores none');
select is(pg_temp.image_count('imp/dst'), :'images_before'::bigint + 1, 'an import query makes one image');
select results_eq($$select image_hash, parent_id from splitgraph.log('imp/dst') limit 1$$,
                  format('values (%L::text, %L::text)', :'q1', :'s4'), 'on HEAD');
select is(pg_temp.status_of('imp/dst'), :'status_before', 'pending changes stay pending');

select splitgraph.import_query('imp/src', 'select grp, count(*) as n, sum(amount) as total from w group by grp',
                               'imp/dst', 'q_agg') as q2 \gset
select results_eq($$select grp, n, total from "imp/dst".q_agg order by grp$$,
                  $$values ('even'::text, 15::bigint, 360.00::numeric), ('odd', 15, 337.50)$$,
                  'an aggregate query imports its result');
select ok(splitgraph.show('imp/dst', :'q2') -> 'tables' ? 'q_agg', 'as a table of the new image');
select ok(('imp/dst', 'q_agg') in (select schema_name::text, table_name::text from splitgraph.tracked_tables()),
          'materialized and tracked');

select splitgraph.import_query('imp/src', $q$with big as (select id, v from t where id > 25)
                                           select id * 10 as id10, upper(v) as v from big$q$,
                               'imp/dst', 'q_cte') as q3 \gset
select results_eq($$select id10, v from "imp/dst".q_cte order by id10$$,
                  $$select i * 10, 'V' || i from generate_series(26, 31) i$$, 'a CTE works');

select splitgraph.import_query('imp/src', 'select t.id, t.v, w.grp from t join w using (id) where t.id <= 3',
                               'imp/dst', 'q_join') as q4 \gset
select results_eq($$select id, v, grp from "imp/dst".q_join order by id$$,
                  $$values (1, 'v1', 'odd'), (2, 'v2', 'even'), (3, 'v3', 'odd')$$, 'a join works');

select splitgraph.import_query('imp/src', 'select count(*) as n from t', 'imp/dst', 'q_v1', 'v1') as q5 \gset
select results_eq($$select n from "imp/dst".q_v1$$, $$values (30::bigint)$$, 'source_image picks the image queried');
select splitgraph.import_query('imp/src', 'select count(*) as n from t', 'imp/dst', 'q_head') as q6 \gset
select results_eq($$select n from "imp/dst".q_head$$, $$values (31::bigint)$$, 'by default the source''s HEAD');

select pg_temp.object_count() as objects_before \gset
select splitgraph.import_query('imp/src', 'select count(*) as n from t', 'imp/dst', 'q_head2') as q7 \gset
select is(pg_temp.object_count(), :'objects_before'::bigint, 'the same result again stores no new object');
select is(pg_temp.objs('imp/dst', :'q7', 'q_head2'), pg_temp.objs('imp/dst', :'q6', 'q_head'), 'and shares the ids');

select splitgraph.import_query('imp_plain', 'select id, upper(name) as name from p where id <> 2',
                               'imp/dst', 'q_plain') as q8 \gset
select results_eq($$select id, name from "imp/dst".q_plain order by id$$, $$values (1, 'ANN'), (3, 'CARL')$$,
                  'a query over a plain schema imports its current result');
select is(pg_temp.sandboxes(), 0::bigint, 'no scratch schema is left behind');

-- ---------------------------------------------------------------------------------------------------------------
-- Errors: each names the problem and leaves no image, no object, no scratch schema, the pending changes as they were
-- ---------------------------------------------------------------------------------------------------------------
insert into "imp/dst".d values (5, 'five');
create table "imp/dst".pending_new (z int);
select pg_temp.status_of('imp/dst') as status_before \gset
select pg_temp.object_count() as objects_before \gset
select pg_temp.image_count('imp/dst') as images_before \gset
select pg_temp.head('imp/dst') as head_before \gset

select throws_ok($$select splitgraph.import_table('imp/src', 't', 'imp/dst')$$, '42P07', null,
                 'a target table that exists in HEAD is refused');
select throws_ok($$select splitgraph.import_table('imp/src', 'u', 'imp/dst', 'd')$$, '42P07', null,
                 'also under another name');
select throws_ok($$select splitgraph.import_table('imp/src', 'u', 'imp/dst', 'pending_new')$$, '42P07', null,
                 'as is one that exists only in the checkout (pending)');
select throws_ok($$select splitgraph.import_tables('imp/src', array['u', 't'], 'imp/dst', array['fresh', 't'])$$,
                 '42P07', null, 'one existing target among several refuses them all');
select hasnt_table('imp/dst', 'fresh', 'so the other one is not imported');
select throws_ok($$select splitgraph.import_table('imp_plain', 'p', 'imp/dst', 'd')$$, '42P07', null,
                 'from a plain schema too');
select throws_ok($$select splitgraph.import_query('imp/src', 'select 1 as x', 'imp/dst', 'd')$$, '42P07', null,
                 'and from a query');

select throws_ok($$select splitgraph.import_table('imp/src', 'nope', 'imp/dst', 'n1')$$, '42P01', null,
                 'an unknown source table');
select throws_ok($$select splitgraph.import_table('imp/src', 't_v1', 'imp/dst', 'n1', 'v1')$$, '42P01', null,
                 'a table of HEAD that the image named does not have');
select throws_ok($$select splitgraph.import_tables('imp/src', array['t', 'nope'], 'imp/dst', array['n1', 'n2'])$$,
                 '42P01', null, 'one unknown table among several');
select throws_ok($$select splitgraph.import_table('imp_plain', 'nope', 'imp/dst', 'n1')$$, '42P01', null,
                 'an unknown table of a plain schema');
select throws_ok($$select splitgraph.import_table('imp/nosuch', 't', 'imp/dst', 'n1')$$, '42704', null,
                 'an unknown source repository');
select throws_ok($$select splitgraph.import_table('imp_nosuch_schema', 't', 'imp/dst', 'n1')$$, '42704', null,
                 'an unknown schema');
select throws_ok($$select splitgraph.import_query('imp/nosuch', 'select 1 as x', 'imp/dst', 'n1')$$, '42704', null,
                 'an unknown source of a query');
select throws_ok($$select splitgraph.import_table('imp/src', 't', 'imp/dst', 'n1', 'nosuchtag')$$, '42704', null,
                 'an unknown source image');
select throws_ok($$select splitgraph.import_table('imp/src', 't', 'imp/dst', 'n1', repeat('e', 64))$$, '42704',
                 null, 'an unknown hash');
select throws_ok($$select splitgraph.import_query('imp/src', 'select * from t', 'imp/dst', 'n1', 'nosuchtag')$$,
                 '42704', null, 'an unknown image of a query');
select throws_ok($$select splitgraph.import_table('imp/src', 't', 'imp/nosuch_target', 'n1')$$, '42704', null,
                 'an unknown target repository');
select throws_ok($$select splitgraph.import_tables('imp/src', array['t', 'u'], 'imp/dst', array['n1'])$$, '22023',
                 null, 'fewer target names than source tables');
select throws_ok($$select splitgraph.import_tables('imp/src', array['t'], 'imp/dst', array['n1', 'n2'])$$, '22023',
                 null, 'more target names than source tables');
select throws_ok($$select splitgraph.import_tables('imp_plain', array['p', 'nk'], 'imp/dst', array['n1'])$$,
                 '22023', null, 'mismatched arrays from a plain schema');
select throws_ok($$select splitgraph.import_tables('imp/src', array['t', 'u'], 'imp/dst', array['n1', 'n1'])$$,
                 '22023', null, 'a target named twice');
select throws_ok($$select splitgraph.import_tables('imp/src', array[]::text[], 'imp/dst')$$, '22023', null,
                 'no table at all');
select throws_ok($$select splitgraph.import_query('imp/src', 'select 1 as x', 'imp/dst', null)$$, '22004',
                 'target_table must not be null', 'a query without a target table');

-- not one SELECT
select throws_ok($$select splitgraph.import_query('imp/src', 'select 1 as x; select 2 as x', 'imp/dst', 'n1')$$,
                 '42601', null, 'two statements are refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select id from t; drop table "imp/dst".d', 'imp/dst', 'n1')$$,
                 '42601', null, 'a SELECT followed by a DROP is refused');
select has_table('imp/dst', 'd', 'and the DROP did not run');
select throws_ok($$select splitgraph.import_query('imp/src', 'select 1 as x) q; select (1', 'imp/dst', 'n1')$$,
                 '42601', null, 'a query closing the wrapping subquery is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'insert into t values (100, ''x'') returning *', 'imp/dst', 'n1')$$,
                 '42601', null, 'an INSERT is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'update t set v = ''x'' returning *', 'imp/dst', 'n1')$$,
                 '42601', null, 'an UPDATE is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'delete from t returning *', 'imp/dst', 'n1')$$,
                 '42601', null, 'a DELETE is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'with gone as (delete from t returning *) select * from gone', 'imp/dst', 'n1')$$,
                 '42601', null, 'a data-modifying CTE is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select * into imp_into from t', 'imp/dst', 'n1')$$,
                 '42601', null, 'SELECT INTO is refused');
select hasnt_table('public', 'imp_into', 'and made no table');
select throws_ok($$select splitgraph.import_query('imp/src', 'create table imp_ct as select * from t', 'imp/dst', 'n1')$$,
                 '42601', null, 'CREATE TABLE AS is refused');
select throws_ok($$select splitgraph.import_query('imp/src', '', 'imp/dst', 'n1')$$, '42601', null,
                 'an empty query is refused');
select is((select count(*)::int from "imp/src".t), 31, 'the source''s checkout is unchanged');
select is(pg_temp.objs('imp/src', 'HEAD', 't'), pg_temp.objs('imp/src', :'v2', 't'), 'and so is its image');

-- reaching outside the source
select throws_ok($$select splitgraph.import_query('imp/src', 'select rolname from pg_catalog.pg_authid', 'imp/dst', 'n1')$$,
                 '42501', null, 'reading pg_catalog.pg_authid is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select relname from pg_class', 'imp/dst', 'n1')$$,
                 '42501', null, 'reading a catalog unqualified is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select * from t where id in (select oid::int from pg_catalog.pg_proc)', 'imp/dst', 'n1')$$,
                 '42501', null, 'a catalog in a subquery is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select table_name from information_schema.tables', 'imp/dst', 'n1')$$,
                 '42501', null, 'information_schema is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select * from "imp/dst".d', 'imp/dst', 'n1')$$,
                 '42501', null, 'another schema''s table is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select * from imp_plain.p', 'imp/dst', 'n1')$$,
                 '42501', null, 'a plain schema''s table is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select * from splitgraph_meta.images', 'imp/dst', 'n1')$$,
                 '42501', null, 'the extension''s metadata is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select * from "imp/src".t', 'imp/dst', 'n1')$$,
                 '42501', null, 'the source''s checkout (not its image) is refused');
select throws_ok($$select splitgraph.import_query('imp_plain', 'select * from "imp/src".t', 'imp/dst', 'n1')$$,
                 '42501', null, 'a query over a plain schema may not read another schema either');
select throws_ok($$select splitgraph.import_query('imp/src', 'select pg_read_file(''/etc/hostname'') as f', 'imp/dst', 'n1')$$,
                 '42501', null, 'pg_read_file is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select pg_catalog.pg_read_file(''/etc/hostname'') as f', 'imp/dst', 'n1')$$,
                 '42501', null, 'also qualified');
select throws_ok($$select splitgraph.import_query('imp/src', 'select * from pg_ls_dir(''.'') f', 'imp/dst', 'n1')$$,
                 '42501', null, 'a pg_* set-returning function is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select id, pg_sleep(0) from t', 'imp/dst', 'n1')$$,
                 '42501', null, 'any pg_* function is refused');
create function public.imp_other_fn() returns int language plpgsql as 'begin return 7; end';
select throws_ok($$select splitgraph.import_query('imp/src', 'select public.imp_other_fn() as x', 'imp/dst', 'n1')$$,
                 '42501', null, 'a function of another schema is refused');
create function pg_temp.imp_temp_fn() returns int language plpgsql as 'begin return 7; end';
select throws_ok($$select splitgraph.import_query('imp/src', 'select pg_temp.imp_temp_fn() as x', 'imp/dst', 'n1')$$,
                 '42501', null, 'a temporary function is refused');
select is(pg_temp.image_count('imp/dst'), :'images_before'::bigint, 'no failed import left an image');
select is(pg_temp.head('imp/dst'), :'head_before', 'HEAD did not move');
select is(pg_temp.object_count(), :'objects_before'::bigint, 'nor an object');
select is(pg_temp.status_of('imp/dst'), :'status_before', 'the pending changes are as they were');
select is(pg_temp.sandboxes(), 0::bigint, 'nor a scratch schema');
select hasnt_table('imp/dst', 'n1', 'nothing was materialized');

-- Functions that read relations by name, and SQL functions the planner inlines
create function public.imp_inlined_fn() returns int language sql as 'select 7';
select throws_ok($$select splitgraph.import_query('imp/src', 'select query_to_xml(''select * from "imp/dst".d'', true, false, '''') as x', 'imp/dst', 'leak1')$$,
                 '42501', null, 'query_to_xml reading another schema is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select table_to_xml(''pg_catalog.pg_authid'', true, false, '''') as x', 'imp/dst', 'leak2')$$,
                 '42501', null, 'table_to_xml reading a catalog is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select public.imp_inlined_fn() as x', 'imp/dst', 'leak3')$$,
                 '42501', null, 'an inlinable SQL function of another schema is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select "public" . imp_inlined_fn /* c */ () as x', 'imp/dst', 'leak4')$$,
                 '42501', null, 'however it is spelled');
select is(pg_temp.image_count('imp/dst'), :'images_before'::bigint, 'none of these left an image');

-- The check reads the query as the server does (pglast): WITH queries in scope, built-in functions only
create sequence public.imp_seq;
select throws_ok($$select splitgraph.import_query('imp/src', 'select nextval(''public.imp_seq'') as x from t', 'imp/dst', 'chk1')$$,
                 '42501', null, 'a volatile built-in that changes something (nextval) is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select ''t''::pg_catalog.regclass as x', 'imp/dst', 'chk2')$$,
                 '42501', null, 'a cast to a reg* type is refused, however qualified');
select throws_ok($$select splitgraph.import_query('imp/src', 'select to_regclass(''t'') as x', 'imp/dst', 'chk3')$$,
                 '42501', null, 'a built-in that looks a name up in the catalogs is refused');
select throws_ok($$select splitgraph.import_query('imp/src', 'select * from (with x as (select 1 as a) select * from x) s, x', 'imp/dst', 'chk4')$$,
                 '42501', null, 'a WITH query''s name out of its scope is not a table of the source');
select throws_ok($$select splitgraph.import_query('imp/src', 'with a as (select * from b), b as (select 1 as x) select * from a', 'imp/dst', 'chk5')$$,
                 '42501', null, 'nor is a later WITH query of a non-recursive WITH');
select throws_ok($$select splitgraph.import_query('imp/src', 'select id from t for update', 'imp/dst', 'chk6')$$,
                 '42601', null, 'FOR UPDATE is refused');
select is(pg_temp.image_count('imp/dst'), :'images_before'::bigint, 'none of these left an image either');
select splitgraph.import_query('imp/src', $q$with recursive r(n) as (select 1 union all select n + 1 from r where n < 3)
                                           select n, random() < 2 as yes from r$q$, 'imp/dst', 'q_rec') as q9 \gset
select results_eq($$select n, yes from "imp/dst".q_rec order by n$$, $$values (1, true), (2, true), (3, true)$$,
                  'a recursive WITH query and random() work');
select splitgraph.import_query('imp/src', 'with pg_class as (select id from t where id <= 2) select id from pg_class',
                               'imp/dst', 'q_shadow') as q10 \gset
select results_eq($$select id from "imp/dst".q_shadow order by id$$, $$values (1), (2)$$,
                  'a WITH query named like a catalog is the query''s own');
select splitgraph.import_query('imp_plain', 'select p.id from imp_plain.p join nk on nk.x = p.id', 'imp/dst', 'q_qual')
    as q11 \gset
select results_eq($$select id from "imp/dst".q_qual order by id$$, $$values (1), (1), (2)$$,
                  'a plain schema''s tables may be qualified with its name');
select is((select count(*)::int from pg_class where relnamespace = pg_my_temp_schema()
           and relname ~ '^sg_(stage|template)_'), 0, 'no staging table is left in the session');

-- a role's function that a cast of a source column's type would run: refused, named or not
create type imp_plain.mood as enum ('low', 'high');
create function imp_plain.mood_text(imp_plain.mood) returns text language sql immutable as $f$ select 'cast' $f$;
create cast (imp_plain.mood as text) with function imp_plain.mood_text(imp_plain.mood);
create table imp_plain.moods (id int, m imp_plain.mood);
insert into imp_plain.moods values (1, 'low');
select throws_ok($$select splitgraph.import_query('imp_plain', 'select m::text as m from moods', 'imp/dst', 'chk7')$$,
                 '42501', null, 'a column whose type a role''s function casts is refused');
select throws_ok($$select splitgraph.import_query('imp_plain', 'select id from imp_plain.moods', 'imp/dst', 'chk8')$$,
                 '42501', null, 'also when the table is qualified with the schema''s name');
select splitgraph.import_query('imp_plain', 'select id from p', 'imp/dst', 'q_other') as q12 \gset
select ok(splitgraph.show('imp/dst', :'q12') -> 'tables' ? 'q_other', 'a query not reading that table is not');

-- the staging helpers read only the tables they made themselves
create temp table imp_own_stage as select 1 as x;
select throws_ok($$select splitgraph_internal.import_staged('imp/src', null, null, array['imp_own_stage'], 'imp/dst',
                                                             array['own'], 'c')$$,
                 '42501', null, 'import_staged refuses a temporary table it did not make');
create table public.imp_not_temp (x int);
select throws_ok($$select splitgraph_internal.import_stage(array['imp_not_temp'])$$, '42501', null,
                 'import_stage takes only temporary tables of the session');

-- into a repository that is not checked out and has no branch main: refused
select splitgraph.init('imp/nomain');
create table "imp/nomain".k (x int);
select splitgraph.commit('imp/nomain');
select splitgraph.branch('imp/nomain', 'dev', 'HEAD');
select splitgraph.checkout('imp/nomain', 'dev');
select splitgraph.delete_branch('imp/nomain', 'main');
select splitgraph.uncheckout('imp/nomain');
select throws_ok($$select splitgraph.import_table('imp/src', 't', 'imp/nomain')$$, '55000', null,
                 'an import into a repository not checked out and without branch main is refused');
select is(pg_temp.image_count('imp/nomain'), 2::bigint, 'and makes no image');

select * from finish();
rollback;
