-- Delta commits: what a commit stores per table (unchanged, delta, snapshot), status and reset, checkout and
-- uncheckout with pending changes, delete_image and prune, store_fragment, and diff / diff_summary.
begin;
set client_min_messages = warning;
select plan(160);

-- object ids of a table version, in apply order
create function pg_temp.objs(repo text, image text, tbl text) returns text[] language sql as $f$
    select array(select jsonb_array_elements_text(splitgraph.table_info(repo, image, tbl) -> 'objects'))
$f$;
create function pg_temp.object_count() returns bigint language sql as $f$
    select count(*) from splitgraph_meta.objects
$f$;
-- the rows of an object, flag included, as text (for looking inside a fragment)
create function pg_temp.fragment_rows(object_id text) returns setof text language plpgsql as $f$
begin
    return query execute format('select f::text from splitgraph_meta.%I f', object_id);
end
$f$;
-- diff as (action, row_data), or one row naming the error it raised
create function pg_temp.try_diff(repo text, tbl text, i1 text, i2 text default null)
returns table (action text, row_data jsonb) language plpgsql as $f$
begin
    return query select d.action::text, d.row_data from splitgraph.diff(repo, tbl, i1, i2) d;
exception when others then
    return query select 'error ' || sqlstate || ': ' || sqlerrm, null::jsonb;
end
$f$;

select splitgraph.init('dc/repo');
create table "dc/repo".t (id int primary key, v text);
insert into "dc/repo".t select i, 'v' || i from generate_series(1, 10) i;
create table "dc/repo".nk (a int, b text);
insert into "dc/repo".nk values (1, 'x'), (2, 'y'), (3, 'dup'), (3, 'dup');
create table "dc/repo".u (id int primary key);
insert into "dc/repo".u values (1), (2);
create table "dc/repo".s (id int primary key, v text, w int);
insert into "dc/repo".s values (1, 'a', 10), (2, 'b', 20), (3, 'c', 30);
select splitgraph.commit('dc/repo', 'c1') as c1 \gset

-- ---------------------------------------------------------------------------------------------------------------
-- Unchanged, delta, snapshot
-- ---------------------------------------------------------------------------------------------------------------
select pg_temp.object_count() as objects_c1 \gset
select splitgraph.commit('dc/repo', 'no change') as same \gset
select ok((select bool_and(pg_temp.objs('dc/repo', :'same', x) = pg_temp.objs('dc/repo', :'c1', x))
           from unnest(array['t', 'nk', 'u', 's']) x), 'a commit with no changes reuses every object');
select is(pg_temp.object_count(), :'objects_c1'::bigint, 'and stores no object');
select isnt(:'same'::text, :'c1', 'but is a new image');

update "dc/repo".t set v = 'changed' where id = 2;
update "dc/repo".t set v = 'v3' where id = 3;                 -- a no-op update
insert into "dc/repo".t values (11, 'v11');
delete from "dc/repo".t where id = 5;
insert into "dc/repo".t values (12, 'tmp');
delete from "dc/repo".t where id = 12;                         -- conflated away
insert into "dc/repo".nk values (4, 'z');
delete from "dc/repo".nk where a = 1;
select splitgraph.commit('dc/repo', 'c2') as c2 \gset
select is(pg_temp.objs('dc/repo', :'c2', 'u'), pg_temp.objs('dc/repo', :'c1', 'u'), 'an unchanged table keeps its objects');
select is(pg_temp.objs('dc/repo', :'c2', 's'), pg_temp.objs('dc/repo', :'c1', 's'), 'another too');
select is((pg_temp.objs('dc/repo', :'c2', 't'))[1:1], pg_temp.objs('dc/repo', :'c1', 't'),
          'a changed table keeps its objects');
select is(cardinality(pg_temp.objs('dc/repo', :'c2', 't')), 2, 'and gets exactly one delta fragment');
select (pg_temp.objs('dc/repo', :'c2', 't'))[2] as t_delta \gset
select bag_eq(format('select * from pg_temp.fragment_rows(%L)', :'t_delta'),
              $$values ('(2,changed,t)'), ('(11,v11,t)'), ('(5,,f)')$$,
              'the delta holds only the net changes: upserts of new rows, a deletion by key');
select results_eq(format($$select rows_inserted::int, rows_deleted::int from splitgraph_meta.objects
                           where object_id = %L$$, :'t_delta'), $$values (2, 2)$$,
                  'rows_inserted and rows_deleted (the old rows it deletes or overwrites) of the delta');
select is((splitgraph.table_info('dc/repo', :'c2', 't') ->> 'rows')::bigint, (select count(*) from "dc/repo".t),
          'the table length counts an overwritten row once');
select is((splitgraph.table_info('dc/repo', :'c1', 't') ->> 'rows')::bigint,
          (splitgraph.table_info('dc/repo', :'c2', 't') ->> 'rows')::bigint, 'one row added, one deleted');
select isnt((select deletion_hash from splitgraph_meta.objects where object_id = :'t_delta'), repeat('0', 64),
            'its deletion hash covers the old values it overwrites or deletes');
select is((pg_temp.objs('dc/repo', :'c2', 'nk'))[1:1], pg_temp.objs('dc/repo', :'c1', 'nk'),
          'a keyless table keeps its objects');
select bag_eq(format('select * from pg_temp.fragment_rows(%L)', (pg_temp.objs('dc/repo', :'c2', 'nk'))[2]),
              $$values ('(4,z,t)'), ('(1,x,f)')$$, 'and gets a delta of whole rows');
select is(pg_temp.object_count(), :'objects_c1'::bigint + 2, 'two new objects in all');
select splitgraph.checkout('dc/repo', :'c1', force => true);
select splitgraph.checkout('dc/repo', :'c2');
select results_eq($$select id, v from "dc/repo".t order by id$$,
                  $$select i, case i when 2 then 'changed' else 'v' || i end from generate_series(1, 11) i where i <> 5$$,
                  'checkout applies base and delta');
select bag_eq($$select a, b from "dc/repo".nk$$, $$values (2, 'y'), (3, 'dup'), (3, 'dup'), (4, 'z')$$,
              'with keyless duplicates intact');

-- duplicates in the changed rows of a keyless table: stored correctly (as a snapshot)
insert into "dc/repo".nk values (3, 'dup');
select splitgraph.commit('dc/repo', 'third dup') as dup3 \gset
select is(cardinality(pg_temp.objs('dc/repo', :'dup3', 'nk')), 1, 'a third copy of a duplicate: stored as a snapshot');
select splitgraph.checkout('dc/repo', :'c2');
select splitgraph.checkout('dc/repo', :'dup3');
select is((select count(*)::int from "dc/repo".nk where a = 3), 3, 'that restores all three copies');

select splitgraph.commit('dc/repo', 'snap', snapshot => true) as snap \gset
select is(cardinality(pg_temp.objs('dc/repo', :'snap', 't')), 1, 'snapshot => true stores a changed table as one fragment');
select is(cardinality(pg_temp.objs('dc/repo', :'snap', 'u')), 1, 'and so every table');
select is(pg_temp.objs('dc/repo', :'snap', 'u'), pg_temp.objs('dc/repo', :'c1', 'u'),
          'an identical snapshot is the same object');
select isnt((pg_temp.objs('dc/repo', :'snap', 't'))[1], (pg_temp.objs('dc/repo', :'c1', 't'))[1],
            'a new snapshot of changed rows is a new object');
select splitgraph.commit('dc/repo', 'after snap') as after_snap \gset
select is(pg_temp.objs('dc/repo', :'after_snap', 't'), pg_temp.objs('dc/repo', :'snap', 't'),
          'after a snapshot commit, the log starts afresh');

-- ---------------------------------------------------------------------------------------------------------------
-- Schema changes, new, dropped and re-created tables: snapshots
-- ---------------------------------------------------------------------------------------------------------------
alter table "dc/repo".s add column x text;
select splitgraph.commit('dc/repo', 'add column') as add_col \gset
select is(cardinality(pg_temp.objs('dc/repo', :'add_col', 's')), 1, 'a column added: a snapshot');
select isnt((pg_temp.objs('dc/repo', :'add_col', 's'))[1], (pg_temp.objs('dc/repo', :'c1', 's'))[1], 'of the new schema');
select is(splitgraph.show('dc/repo', :'add_col') -> 'tables' -> 's', '["id", "v", "w", "x"]'::jsonb, 'with the column');
alter table "dc/repo".s drop column w;
select splitgraph.commit('dc/repo', 'drop column') as drop_col \gset
select is(cardinality(pg_temp.objs('dc/repo', :'drop_col', 's')), 1, 'a column dropped: a snapshot');
alter table "dc/repo".s alter column id type bigint;
select splitgraph.commit('dc/repo', 'retype') as retype \gset
select is(splitgraph.table_info('dc/repo', :'retype', 's') -> 'columns' -> 0 ->> 'type', 'bigint', 'a column retyped');
select is(cardinality(pg_temp.objs('dc/repo', :'retype', 's')), 1, 'is a snapshot');
alter table "dc/repo".s drop constraint s_pkey, add primary key (v);
select splitgraph.commit('dc/repo', 'pk change') as pk_change \gset
select is(cardinality(pg_temp.objs('dc/repo', :'pk_change', 's')), 1, 'a primary key changed: a snapshot');
select is((splitgraph.table_info('dc/repo', :'pk_change', 's') -> 'columns' -> 1 ->> 'is_pk')::boolean, true,
          'with the new key');
update "dc/repo".s set x = 'later' where v = 'a';
select splitgraph.commit('dc/repo', 'after pk change') as after_pk \gset
select is((pg_temp.objs('dc/repo', :'after_pk', 's'))[1:1], pg_temp.objs('dc/repo', :'pk_change', 's'),
          'after a schema change, the next change is a delta again');
select is(cardinality(pg_temp.objs('dc/repo', :'after_pk', 's')), 2, 'one fragment on top');

drop table "dc/repo".u;
create table "dc/repo".u (id int primary key);
insert into "dc/repo".u values (1), (2), (3);
create table "dc/repo".brand_new (k text primary key);
insert into "dc/repo".brand_new values ('one');
select splitgraph.commit('dc/repo', 'recreated') as recreated \gset
select is(cardinality(pg_temp.objs('dc/repo', :'recreated', 'u')), 1, 'a dropped and re-created table: a snapshot');
select isnt((pg_temp.objs('dc/repo', :'recreated', 'u'))[1], (pg_temp.objs('dc/repo', :'c1', 'u'))[1], 'of its new rows');
select is(cardinality(pg_temp.objs('dc/repo', :'recreated', 'brand_new')), 1, 'a new table: a snapshot');
drop table "dc/repo".u;
create table "dc/repo".u (id int primary key);
insert into "dc/repo".u values (1), (2);
select splitgraph.commit('dc/repo', 'recreated as before') as recreated_again \gset
select is(pg_temp.objs('dc/repo', :'recreated_again', 'u'), pg_temp.objs('dc/repo', :'c1', 'u'),
          're-created with the first rows: the first snapshot object again');
select is(splitgraph.has_pending_changes('dc/repo'), false, 'and its new table is tracked after the commit');
update "dc/repo".u set id = 20 where id = 2;
select is(splitgraph.changed_tables('dc/repo'), array['u'], 'its changes show');
select splitgraph.reset('dc/repo');

-- a table untracked, changed and tracked again: the commit must still store the change
select splitgraph.untrack_tables('dc/repo', array['t']);
update "dc/repo".t set v = 'while untracked' where id = 1;
select splitgraph.track_tables('dc/repo', array['t']);
select splitgraph.commit('dc/repo', 'after re-tracking') as retracked \gset
select is((select row_data ->> 'v' from splitgraph.diff('dc/repo', 't', :'recreated_again', :'retracked')
           where action = '+' and row_data ->> 'id' = '1'), 'while untracked', 'the image has the change');
select splitgraph.checkout('dc/repo', :'retracked', force => true);

-- a table without columns is a table too
create table "dc/repo".empty_cols ();
select lives_ok($$select splitgraph.commit('dc/repo', 'no columns')$$, 'a table with no columns commits');
drop table if exists "dc/repo".empty_cols;

-- ---------------------------------------------------------------------------------------------------------------
-- An unchanged table costs nothing at commit: not one of its rows is read
-- ---------------------------------------------------------------------------------------------------------------
select splitgraph.init('dc/cost');
create table "dc/cost".big (id int primary key, v text);
insert into "dc/cost".big select i, md5(i::text) from generate_series(1, 20000) i;
create table "dc/cost".small (id int primary key);
select splitgraph.commit('dc/cost');
create function pg_temp.rows_read() returns bigint language sql as $f$
    select seq_tup_read + coalesce(idx_tup_fetch, 0) from pg_stat_xact_user_tables where relid = '"dc/cost".big'::regclass
$f$;
select pg_temp.rows_read() as read_before \gset
insert into "dc/cost".small values (1);
select splitgraph.commit('dc/cost');
select is(pg_temp.rows_read() - :'read_before'::bigint, 0::bigint, 'a commit reads no row of an unchanged table');
select is((select count(*)::int from splitgraph.status('dc/cost')), 0, 'nor does status');
select is(pg_temp.rows_read() - :'read_before'::bigint, 0::bigint, '(still none read)');
update "dc/cost".big set v = 'changed' where id = 777;
select splitgraph.commit('dc/cost') as cost_delta \gset
select is(cardinality(pg_temp.objs('dc/cost', :'cost_delta', 'big')), 3, 'and adds one delta to its two chunks');

-- ---------------------------------------------------------------------------------------------------------------
-- Views are not versioned and do not break commit or checkout
-- ---------------------------------------------------------------------------------------------------------------
create view "dc/repo".t_view as select id, v from "dc/repo".t where id < 5;
create view "dc/repo".standalone as select 1 as one;
select splitgraph.commit('dc/repo', 'with views') as with_views \gset
select is(splitgraph.show('dc/repo', :'with_views') -> 'tables' ? 't_view', false, 'a view is not in the image');
select is((select count(*)::int from splitgraph.status('dc/repo')), 0, 'nor a pending change');
select is(pg_temp.objs('dc/repo', :'with_views', 't'), pg_temp.objs('dc/repo', :'retracked', 't'),
          'and the tables are unchanged');
select lives_ok(format($$select splitgraph.checkout('dc/repo', %L)$$, :'c1'), 'checkout with views in the schema');
select results_eq($$select count(*)::int from "dc/repo".t$$, $$values (10)$$, 'gives the image');
select has_view('dc/repo', 'standalone', 'a view that reads no table stays');

-- ---------------------------------------------------------------------------------------------------------------
-- status and reset
-- ---------------------------------------------------------------------------------------------------------------
select splitgraph.checkout('dc/repo', :'c2');
update "dc/repo".t set v = 'upd' where id in (1, 2);
insert into "dc/repo".t values (100, 'new'), (101, 'new');
delete from "dc/repo".t where id in (3, 4, 6);
update "dc/repo".t set id = 200 where id = 7;                 -- a key change: a removal and an addition
delete from "dc/repo".nk where a = 2;
drop table "dc/repo".u;
create table "dc/repo".added (id int primary key);
insert into "dc/repo".added values (1), (2);
select results_eq($$select repository, table_name, added, removed, updated, schema_changed
                    from splitgraph.status('dc/repo') order by table_name$$,
                  $$values ('dc/repo', 'added', 2, 0, 0, true),
                           ('dc/repo', 'nk', 0, 1, 0, false),
                           ('dc/repo', 't', 3, 4, 2, false),
                           ('dc/repo', 'u', 0, 2, 0, true)$$,
                  'status: per table, added / removed / updated, and new and dropped tables');
select is((select count(*)::int from splitgraph.status() where repository = 'dc/repo'), 4,
          'status() without an argument covers every checkout');
alter table "dc/repo".s add column y int;
select results_eq($$select added, removed, updated, schema_changed from splitgraph.status('dc/repo')
                    where table_name = 's'$$,
                  $$values (3, 3, 0, true)$$, 'a schema change is flagged, and its rows are the set difference');

select lives_ok($$select splitgraph.reset('dc/repo', 't')$$, 'reset one table');
select results_eq($$select id, v from "dc/repo".t order by id$$,
                  $$select i, case i when 2 then 'changed' else 'v' || i end from generate_series(1, 11) i where i <> 5$$,
                  'it is back to HEAD');
select bag_eq($$select table_name from splitgraph.status('dc/repo')$$, $$values ('added'), ('nk'), ('u'), ('s')$$,
              'the other tables keep their changes');
update "dc/repo".t set v = 'after reset' where id = 1;
select results_eq($$select table_name, updated from splitgraph.status('dc/repo') where table_name = 't'$$,
                  $$values ('t', 1)$$, 'and a reset table is tracked from HEAD again');
select lives_ok($$select splitgraph.reset('dc/repo')$$, 'reset every table');
select is((select count(*)::int from splitgraph.status('dc/repo')), 0, 'nothing is pending');
select hasnt_table('dc/repo', 'added', 'a new table is gone');
select results_eq($$select id from "dc/repo".u order by id$$, $$values (1), (2)$$, 'a dropped table is back');
select col_is_pk('dc/repo', 'u', 'id', 'with its key');
select columns_are('dc/repo', 's', array['id', 'v', 'w'], 'a table whose schema changed has HEAD''s columns');
select bag_eq($$select a, b from "dc/repo".nk$$, $$values (2, 'y'), (3, 'dup'), (3, 'dup'), (4, 'z')$$,
              'a keyless table is back');
select bag_eq($$select table_name from splitgraph.tracked_tables() where schema_name = 'dc/repo'$$,
              $$values ('t'), ('nk'), ('u'), ('s')$$, 'and every table is tracked');
truncate "dc/repo".t;
select results_eq($$select added, removed, updated from splitgraph.status('dc/repo') where table_name = 't'$$,
                  $$values (0, 10, 0)$$, 'status after a TRUNCATE');
select lives_ok($$select splitgraph.reset('dc/repo', 't')$$, 'reset after a TRUNCATE');
select is((select count(*)::int from "dc/repo".t), 10, 'restores the rows');
select is(splitgraph.has_pending_changes('dc/repo'), false, 'and the table is clean');
create view "dc/repo".nk_view as select a from "dc/repo".nk;
insert into "dc/repo".nk values (50, 'reset me');
select lives_ok($$select splitgraph.reset('dc/repo', 'nk')$$, 'reset of a keyless table with a view over it');
select is((select count(*)::int from "dc/repo".nk where a = 50), 0, 'undoes its changes');
select has_view('dc/repo', 'nk_view', 'a view over a reset table survives');
drop view if exists "dc/repo".nk_view;
select throws_ok($$select splitgraph.reset('dc/repo', 'nope')$$, '42P01', null, 'reset of an unknown table: 42P01');
select throws_ok($$select * from splitgraph.status('dc/nope')$$, '42704', null, 'status of an unknown repository: 42704');

-- changes that do not change the versioned content
truncate "dc/repo".u;
insert into "dc/repo".u values (1), (2);
select is((select count(*)::int from splitgraph.status('dc/repo')), 0, 'a TRUNCATE and identical re-insert: status is empty');
select splitgraph.reset('dc/repo');
alter table "dc/repo".t add constraint v_not_empty check (v <> '');
select is((select count(*)::int from splitgraph.status('dc/repo')), 0,
          'a CHECK constraint added: status is empty (constraints are not versioned)');
select splitgraph.reset('dc/repo');

-- ---------------------------------------------------------------------------------------------------------------
-- checkout and uncheckout refuse to throw pending changes away unless forced
-- ---------------------------------------------------------------------------------------------------------------
update "dc/repo".t set v = 'pending' where id = 1;
select throws_ok(format($$select splitgraph.checkout('dc/repo', %L)$$, :'c1'), '55000',
                 'repository "dc/repo" has pending changes in table "t"; commit them, reset them or pass force => true',
                 'checkout refuses pending changes with the documented message');
select is((select v from "dc/repo".t where id = 1), 'pending', 'and changes nothing');
select is((select head from splitgraph.repositories() where repository = 'dc/repo'), :'c2', 'HEAD stays');
select throws_ok($$select splitgraph.uncheckout('dc/repo')$$, '55000', null, 'uncheckout refuses too');
select has_table('dc/repo', 't', 'the checkout stays');
select is(splitgraph.checkout('dc/repo', :'c1', force => true), :'c1', 'checkout with force => true');
select results_eq($$select count(*)::int, count(*) filter (where v = 'pending')::int from "dc/repo".t$$,
                  $$values (10, 0)$$, 'throws the changes away');
select is(splitgraph.has_pending_changes('dc/repo'), false, 'nothing is pending afterwards');
create table "dc/repo".scratch (id int);
select throws_ok($$select splitgraph.uncheckout('dc/repo')$$, '55000',
                 'repository "dc/repo" has pending changes in table "scratch"; commit them, reset them or pass force => true',
                 'a new table is a pending change for uncheckout');
select lives_ok($$select splitgraph.uncheckout('dc/repo', force => true)$$, 'uncheckout with force => true');
select hasnt_schema('dc/repo', 'drops the checkout');
select is((select checked_out from splitgraph.repositories() where repository = 'dc/repo'), false, 'not checked out');
select is((select count(*)::int from splitgraph_audit.tracked where schema_name = 'dc/repo'), 0, 'and no log is left');
select throws_ok($$select * from splitgraph.status('dc/repo')$$, '55000', null,
                 'status of a repository that is not checked out: 55000');
select throws_ok($$select splitgraph.reset('dc/repo')$$, '55000', null, 'reset too');
select is(splitgraph.checkout('dc/repo', :'c2'), :'c2', 'checkout after uncheckout');
select is(splitgraph.has_pending_changes('dc/repo'), false, 'is clean');

-- ---------------------------------------------------------------------------------------------------------------
-- store_fragment
-- ---------------------------------------------------------------------------------------------------------------
update "dc/repo".t set v = 'frag' where id = 1;
select pg_temp.object_count() as before_frag \gset
select splitgraph.store_fragment('dc/repo', 't') as frag \gset
select is((:'frag'::text[])[1:1], (pg_temp.objs('dc/repo', :'c2', 't'))[1:1], 'store_fragment of a checkout table: HEAD''s objects');
select is(cardinality(:'frag'::text[]), 3, 'and one fragment of the pending changes');
select is(pg_temp.object_count(), :'before_frag'::bigint + 1, 'which is registered');
select isnt(splitgraph.object_info((:'frag'::text[])[3]), null, 'object_info knows it');
select is(splitgraph.changed_tables('dc/repo'), array['t'], 'the changes stay pending');
select splitgraph.commit('dc/repo', 'frag commit') as frag_commit \gset
select is(pg_temp.objs('dc/repo', :'frag_commit', 't'), :'frag'::text[], 'a commit then stores the same list');
create schema sf_plain;
create table sf_plain.p (id int primary key, v text);
insert into sf_plain.p select i, 'p' || i from generate_series(1, 25) i;
select is(cardinality(splitgraph.store_fragment('sf_plain', 'p', chunk_size => 10)), 3,
          'store_fragment of a plain table: a snapshot, chunked');
select is(splitgraph.store_fragment('sf_plain', 'p', chunk_size => 10), splitgraph.store_fragment('sf_plain', 'p', chunk_size => 10),
          'the same content gives the same objects');
select is(cardinality(splitgraph.store_fragment('dc/repo', 't', snapshot => true)), 1,
          'snapshot => true on a checkout table: one snapshot fragment');
select throws_ok($$select splitgraph.store_fragment('sf_plain', 'nope')$$, '42P01', null,
                 'store_fragment of an unknown table: 42P01');

-- ---------------------------------------------------------------------------------------------------------------
-- diff and diff_summary
-- ---------------------------------------------------------------------------------------------------------------
select splitgraph.init('dc/diff');
create table "dc/diff".t (id int primary key, v text);
insert into "dc/diff".t values (1, 'a'), (2, 'b'), (3, 'c'), (4, 'd');
create table "dc/diff".k (a int, b text);
insert into "dc/diff".k values (1, 'x'), (1, 'x'), (2, 'y');
create table "dc/diff".same (id int primary key);
insert into "dc/diff".same values (1);
select splitgraph.commit('dc/diff', 'd1') as d1 \gset
update "dc/diff".t set v = 'B' where id = 2;
delete from "dc/diff".t where id = 3;
insert into "dc/diff".t values (5, 'e');
insert into "dc/diff".k values (3, 'z');
select splitgraph.commit('dc/diff', 'd2') as d2 \gset
update "dc/diff".t set v = 'BB' where id = 2;
update "dc/diff".t set id = 40 where id = 4;
delete from "dc/diff".k where a = 2;
select splitgraph.commit('dc/diff', 'd3') as d3 \gset

select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 't', %L, %L)$$, :'d1', :'d2'),
              $$values ('-', '{"id": 2, "v": "b"}'::jsonb), ('+', '{"id": 2, "v": "B"}'),
                       ('-', '{"id": 3, "v": "c"}'), ('+', '{"id": 5, "v": "e"}')$$,
              'diff parent -> child: an update is a - and a +');
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 't', %L, %L)$$, :'d1', :'d3'),
              $$values ('-', '{"id": 2, "v": "b"}'::jsonb), ('+', '{"id": 2, "v": "BB"}'),
                       ('-', '{"id": 3, "v": "c"}'), ('+', '{"id": 5, "v": "e"}'),
                       ('-', '{"id": 4, "v": "d"}'), ('+', '{"id": 40, "v": "d"}')$$,
              'diff ancestor -> descendant over two deltas');
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 't', %L, %L)$$, :'d3', :'d1'),
              $$values ('+', '{"id": 2, "v": "b"}'::jsonb), ('-', '{"id": 2, "v": "BB"}'),
                       ('+', '{"id": 3, "v": "c"}'), ('-', '{"id": 5, "v": "e"}'),
                       ('+', '{"id": 4, "v": "d"}'), ('-', '{"id": 40, "v": "d"}')$$,
              'diff descendant -> ancestor is the reverse');
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 'k', %L, %L)$$, :'d1', :'d3'),
              $$values ('+', '{"a": 3, "b": "z"}'::jsonb), ('-', '{"a": 2, "b": "y"}')$$,
              'diff of a keyless table');
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 'k', %L, %L)$$, :'d3', :'d1'),
              $$values ('-', '{"a": 3, "b": "z"}'::jsonb), ('+', '{"a": 2, "b": "y"}')$$,
              'and back');
select is((select count(*)::int from splitgraph.diff('dc/diff', 't', :'d2', :'d2')), 0, 'an image against itself: no rows');
select is((select count(*)::int from splitgraph.diff('dc/diff', 'same', :'d1', :'d3')), 0, 'an unchanged table: no rows');
select results_eq(format($$select table_name, added, removed, updated, schema_changed
                           from splitgraph.diff_summary('dc/diff', %L, %L) order by table_name$$, :'d1', :'d3'),
                  $$values ('k', 1, 1, 0, false), ('t', 2, 2, 1, false)$$,
                  'diff_summary: per changed table');
select results_eq(format($$select table_name, added, removed, updated, schema_changed
                           from splitgraph.diff_summary('dc/diff', %L, %L) order by table_name$$, :'d3', :'d1'),
                  $$values ('k', 1, 1, 0, false), ('t', 2, 2, 1, false)$$,
                  'and the other way round');

-- unrelated branches
select splitgraph.branch('dc/diff', 'side', :'d1');
select splitgraph.checkout('dc/diff', 'side');
update "dc/diff".t set v = 'side' where id = 1;
delete from "dc/diff".t where id = 2;
delete from "dc/diff".k where a = 1;
select splitgraph.commit('dc/diff', 's1') as s1 \gset
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 't', %L, %L)$$, :'d3', :'s1'),
              $$values ('-', '{"id": 1, "v": "a"}'::jsonb), ('+', '{"id": 1, "v": "side"}'),
                       ('-', '{"id": 2, "v": "BB"}'), ('-', '{"id": 5, "v": "e"}'),
                       ('-', '{"id": 40, "v": "d"}'), ('+', '{"id": 3, "v": "c"}'), ('+', '{"id": 4, "v": "d"}')$$,
              'diff between two branches');
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 'k', %L, %L)$$, :'d3', :'s1'),
              $$values ('-', '{"a": 3, "b": "z"}'::jsonb), ('-', '{"a": 1, "b": "x"}'), ('-', '{"a": 1, "b": "x"}'),
                       ('+', '{"a": 2, "b": "y"}')$$,
              'a keyless table across branches: a multiset difference, duplicates counted');
select results_eq(format($$select table_name, added, removed, updated from splitgraph.diff_summary('dc/diff', %L, %L)
                           order by table_name$$, :'d3', :'s1'),
                  $$values ('k', 1, 3, 0), ('t', 2, 3, 1)$$, 'diff_summary between branches');

-- across a schema change: the set difference of the rows
alter table "dc/diff".t alter column id type bigint;
update "dc/diff".t set v = 'retyped' where id = 3;
select splitgraph.commit('dc/diff', 's2') as s2 \gset
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 't', %L, %L)$$, :'s1', :'s2'),
              $$values ('-', '{"id": 3, "v": "c"}'::jsonb), ('+', '{"id": 3, "v": "retyped"}')$$,
              'across a retyped column: only rows whose values differ');
select results_eq(format($$select table_name, added, removed, updated, schema_changed
                           from splitgraph.diff_summary('dc/diff', %L, %L)$$, :'s1', :'s2'),
                  $$values ('t', 1, 1, 0, true)$$, 'diff_summary flags the schema change');
alter table "dc/diff".t add column extra int default 7;
select splitgraph.commit('dc/diff', 's3') as s3 \gset
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 't', %L, %L)$$, :'s2', :'s3'),
              $$values ('-', '{"id": 1, "v": "side"}'::jsonb), ('-', '{"id": 3, "v": "retyped"}'),
                       ('-', '{"id": 4, "v": "d"}'),
                       ('+', '{"id": 1, "v": "side", "extra": 7}'), ('+', '{"id": 3, "v": "retyped", "extra": 7}'),
                       ('+', '{"id": 4, "v": "d", "extra": 7}')$$,
              'across an added column: every row differs');

-- a table in one image only
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 't', %L, %L)$$,
                     repeat('0', 64), :'d1'),
              $$values ('+', '{"id": 1, "v": "a"}'::jsonb), ('+', '{"id": 2, "v": "b"}'),
                       ('+', '{"id": 3, "v": "c"}'), ('+', '{"id": 4, "v": "d"}')$$,
              'a table missing from image_1: every row is +');

-- pending state
update "dc/diff".t set v = 'pending' where id = 1;
insert into "dc/diff".t values (9, 'nine', 0);
delete from "dc/diff".t where id = 4;
select bag_eq($$select action::text, row_data from splitgraph.diff('dc/diff', 't', 'HEAD')$$,
              $$values ('-', '{"id": 1, "v": "side", "extra": 7}'::jsonb), ('+', '{"id": 1, "v": "pending", "extra": 7}'),
                       ('+', '{"id": 9, "v": "nine", "extra": 0}'), ('-', '{"id": 4, "v": "d", "extra": 7}')$$,
              'diff against the pending state (image_2 null) from HEAD');
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 't', %L, null)$$, :'s1'),
              $$values ('-', '{"id": 1, "v": "side"}'::jsonb), ('-', '{"id": 3, "v": "c"}'),
                       ('-', '{"id": 4, "v": "d"}'),
                       ('+', '{"id": 1, "v": "pending", "extra": 7}'), ('+', '{"id": 3, "v": "retyped", "extra": 7}'),
                       ('+', '{"id": 9, "v": "nine", "extra": 0}')$$,
              'and from an older image of another schema: the set difference');
select bag_eq(format($$select action::text, row_data from splitgraph.diff('dc/diff', 'k', %L)$$, :'d1'),
              $$values ('-', '{"a": 1, "b": "x"}'::jsonb), ('-', '{"a": 1, "b": "x"}')$$,
              'a keyless table against an older image');
select results_eq($$select table_name, added, removed, updated, schema_changed from splitgraph.diff_summary('dc/diff', 'HEAD')$$,
                  $$values ('t', 1, 1, 1, false)$$, 'diff_summary of the pending state');
select results_eq($$select table_name, added, removed, updated from splitgraph.status('dc/diff')$$,
                  $$values ('t', 1, 1, 1)$$, 'which status agrees with');
select bag_eq(format($$select table_name, added, removed, updated, schema_changed
                        from splitgraph.diff_summary('dc/diff', %L)$$, :'d3'),
              $$values ('k', 1, 3, 0, false), ('t', 3, 4, 0, true)$$,
              'diff_summary of the pending state against an older image');

select is((select count(*)::int from pg_class where relpersistence = 't' and relname like 'sg\_side\_%'), 0,
          'diffs leave no temporary copies of table versions behind');

-- a layered checkout (read-only views) has no pending changes
select splitgraph.checkout('dc/diff', :'s3', force => true, layered => true);
select is((select count(*)::int from splitgraph.status('dc/diff')), 0, 'status of a layered checkout: nothing');
select is((select count(*)::int from splitgraph.diff('dc/diff', 't', 'HEAD')), 0,
          'diff of a layered checkout against HEAD: no rows');
select is((select count(*)::int from splitgraph.diff_summary('dc/diff', 'HEAD')), 0,
          'diff_summary of a layered checkout against HEAD: no table');
select splitgraph.checkout('dc/diff', :'s3');

-- errors
select throws_ok($$select * from splitgraph.diff('dc/diff', 'nope', 'HEAD')$$, '42P01', null, 'diff of an unknown table: 42P01');
select throws_ok(format($$select * from splitgraph.diff('dc/diff', 'nope', %L, %L)$$, :'d1', :'d2'), '42P01', null,
                 'between images too');
select throws_ok($$select * from splitgraph.diff('dc/diff', 't', 'no-such-tag')$$, '42704', null,
                 'diff from an unknown image: 42704');
select throws_ok($$select * from splitgraph.diff_summary('dc/diff', 'HEAD', 'no-such-tag')$$, '42704', null,
                 'diff_summary to an unknown image: 42704');
select throws_ok($$select * from splitgraph.diff('dc/nope', 't', 'HEAD')$$, '42704', null,
                 'diff of an unknown repository: 42704');

-- ---------------------------------------------------------------------------------------------------------------
-- delete_image and prune
-- ---------------------------------------------------------------------------------------------------------------
select splitgraph.init('dc/hist');
create table "dc/hist".t (id int primary key);
insert into "dc/hist".t values (1);
select splitgraph.commit('dc/hist', 'A') as a \gset
insert into "dc/hist".t values (2);
select splitgraph.commit('dc/hist', 'B') as b \gset
insert into "dc/hist".t values (3);
select splitgraph.commit('dc/hist', 'C') as c \gset
select splitgraph.tag('dc/hist', :'c', 'on-c');
select splitgraph.checkout('dc/hist', :'a');
insert into "dc/hist".t values (10);
select splitgraph.commit('dc/hist', 'D') as d \gset
insert into "dc/hist".t values (11);
select splitgraph.commit('dc/hist', 'E') as e \gset
select splitgraph.branch('dc/hist', 'side', :'d');
select splitgraph.checkout('dc/hist', :'b');
-- images: root - A - B - C(tag on-c), A - D(branch side) - E; HEAD = B (detached), main on C
select throws_ok(format($$select splitgraph.delete_image('dc/hist', %L)$$, :'b'), '55000', null,
                 'delete_image refuses the checked-out HEAD');
select throws_ok(format($$select splitgraph.delete_image('dc/hist', %L)$$, :'a'), '55000', null,
                 'and any ancestor of it');
select throws_ok(format($$select splitgraph.delete_image('dc/hist', %L)$$, repeat('0', 64)), '55000', null,
                 'and the root image');
select throws_ok($$select splitgraph.delete_image('dc/hist', 'nope')$$, '42704', null, 'an unknown image: 42704');
select is((select count(*)::int from splitgraph.images('dc/hist')), 6, 'refusals delete nothing');
select throws_ok(format($$select splitgraph.delete_image('dc/hist', %L)$$, :'d'), '55000', null,
                 'and, without force, an image whose deletion would delete a branch');
select is(splitgraph.delete_image('dc/hist', :'d', force => true), 2,
          'delete_image deletes an image and its descendants');
select is((select count(*)::int from splitgraph.images('dc/hist') where image_hash in (:'d', :'e')), 0, 'both gone');
select is((select count(*)::int from splitgraph.branches('dc/hist') where branch = 'side'), 0, 'a branch on them too');
select throws_ok($$select splitgraph.delete_image('dc/hist', 'on-c')$$, '55000', null,
                 'or a tag, or a branch head');
select is(splitgraph.delete_image('dc/hist', 'on-c', force => true), 1, 'delete_image by tag');
select is((select count(*)::int from splitgraph_meta.tags where repository = 'dc/hist'), 0, 'its tag is gone');
select is((select count(*)::int from splitgraph_meta.tables where repository = 'dc/hist' and image_hash = :'c'), 0,
          'and its tables');
select is((select count(*)::int from splitgraph.branches('dc/hist') where branch = 'main'), 0,
          'the branch whose head it was too');
select results_eq($$select (array_agg(id order by id))::text from "dc/hist".t$$, $$values ('{1,2}')$$,
                  'the checkout is untouched');
select pg_temp.objs('dc/hist', :'b', 't') as b_objects \gset
select ok(splitgraph.cleanup() >= 3, 'cleanup() then collects the objects only the deleted images used');
select is((select count(*)::int from splitgraph_meta.objects where object_id = any(:'b_objects'::text[])), 2,
          'and keeps those a remaining image uses');
select lives_ok(format($$select splitgraph.checkout('dc/hist', %L)$$, :'a'), 'which still check out');
select splitgraph.checkout('dc/hist', :'b');

-- prune: images no tag, branch or HEAD reaches
-- detached commits: only HEAD reaches them
select splitgraph.commit('dc/hist', 'F') as f \gset
select splitgraph.commit('dc/hist', 'G') as g \gset
select splitgraph.checkout('dc/hist', :'f');
select splitgraph.commit('dc/hist', 'H') as h \gset
select splitgraph.tag('dc/hist', :'h', 'keep-h');
select splitgraph.checkout('dc/hist', :'b');
-- images: root - A - B - F - G, F - H(tag keep-h); HEAD = B: G is unreachable; F is an ancestor of H
select is(splitgraph.prune('dc/hist'), 1, 'prune deletes the unreachable images');
select bag_eq($$select image_hash from splitgraph.images('dc/hist')$$,
              format('values (%L), (%L), (%L), (%L), (%L)', repeat('0', 64), :'a', :'b', :'f', :'h'),
              'and keeps the tagged, HEAD, and their ancestors');
select is(splitgraph.prune('dc/hist'), 0, 'prune again: nothing to do');
select splitgraph.delete_tag('dc/hist', 'keep-h');
select splitgraph.branch('dc/hist', 'keeper', :'f');
select is(splitgraph.prune('dc/hist'), 1, 'an untagged leaf goes; a branch head stays');
select bag_eq($$select image_hash from splitgraph.images('dc/hist')$$,
              format('values (%L), (%L), (%L), (%L)', repeat('0', 64), :'a', :'b', :'f'), 'what is left');
select splitgraph.checkout('dc/hist', 'keeper');
select results_eq($$select (array_agg(id order by id))::text from "dc/hist".t$$, $$values ('{1,2}')$$,
                  'what is left checks out');

select * from finish();
rollback;
