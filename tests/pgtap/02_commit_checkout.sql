-- Commit and checkout: snapshots of every table, history, detached and attached checkouts.
begin;
set client_min_messages = warning;
select plan(36);

select splitgraph.init('t/fruit');
create table "t/fruit".fruits (fruit_id int primary key, name varchar);
comment on column "t/fruit".fruits.name is 'what it''s called';
insert into "t/fruit".fruits values (1, 'apple'), (2, 'orange');
create table "t/fruit".nokey (a int, b text);
insert into "t/fruit".nokey values (1, 'x'), (1, 'x'), (2, null);
create table "t/fruit".empty (id int primary key, v jsonb);

select splitgraph.commit('t/fruit', 'first') as first \gset
select matches(:'first'::text, '^[0-9a-f]{64}$', 'commit returns a 64-digit hash');
select results_eq($$select image_hash, parent_id, comment from splitgraph.log('t/fruit')$$,
                  format($$values (%L, %L, 'first'), (%L, null, null)$$, :'first', repeat('0', 64), repeat('0', 64)),
                  'log lists the new image and its parent, newest first');
select is((select image_hash from splitgraph.branches('t/fruit') where branch = 'main'), :'first',
          'the followed branch moves to the new image');
select is((select head from splitgraph.repositories() where repository = 't/fruit'), :'first', 'HEAD moves too');
select is(splitgraph.show('t/fruit', :'first') -> 'tables',
          '{"fruits": ["fruit_id", "name"], "nokey": ["a", "b"], "empty": ["id", "v"]}'::jsonb,
          'show lists every table and its columns');
select is(splitgraph.show('t/fruit', :'first') ->> 'comment', 'first', 'show has the comment');
select is((splitgraph.table_info('t/fruit', :'first', 'fruits') ->> 'rows')::int, 2, 'table_info counts rows');
select is(jsonb_array_length(splitgraph.table_info('t/fruit', :'first', 'empty') -> 'objects'), 0,
          'an empty table is stored with no object');

-- change, commit again
update "t/fruit".fruits set name = 'banana' where fruit_id = 2;
insert into "t/fruit".fruits values (3, 'mango');
delete from "t/fruit".nokey where b is null;
drop table "t/fruit".empty;
select splitgraph.commit('t/fruit', 'second') as second \gset
select isnt(:'second'::text, :'first', 'each commit makes a new image');
select is((select parent_id from splitgraph.log('t/fruit') limit 1), :'first', 'its parent is the previous HEAD');
select is(splitgraph.show('t/fruit', :'second') -> 'tables' ? 'empty', false, 'a dropped table leaves the image');

-- check out the first image by hash: detached
select is(splitgraph.checkout('t/fruit', :'first'), :'first', 'checkout returns the image hash');
select results_eq($$select fruit_id, name from "t/fruit".fruits order by fruit_id$$,
                  $$values (1, 'apple'::varchar), (2, 'orange')$$, 'the old rows are back');
select bag_eq($$select a, b from "t/fruit".nokey$$, $$values (1, 'x'), (1, 'x'), (2, null)$$,
              'a table without a primary key keeps its duplicate rows');
select has_table('t/fruit', 'empty', 'a table dropped later comes back');
select col_is_pk('t/fruit', 'fruits', 'fruit_id', 'the primary key is restored');
select col_type_is('t/fruit', 'fruits', 'name', 'character varying', 'column types are restored');
select is(col_description('"t/fruit".fruits'::regclass, 2), 'what it''s called', 'column comments are restored');
select results_eq($$select branch, checked_out from splitgraph.repositories() where repository = 't/fruit'$$,
                  $$values (null::text, true)$$, 'a checkout by hash is detached');
select is((select count(*)::int from splitgraph.branches('t/fruit') where current), 0, 'no branch is current');

-- a detached commit moves HEAD but no branch
insert into "t/fruit".fruits values (9, 'kiwi');
select splitgraph.commit('t/fruit', 'detached') as detached \gset
select is((select image_hash from splitgraph.branches('t/fruit') where branch = 'main'), :'second',
          'a detached commit leaves the branch alone');
select is((select head from splitgraph.repositories() where repository = 't/fruit'), :'detached',
          'but moves HEAD');

-- check out the branch: attached
select is(splitgraph.checkout('t/fruit', 'main'), :'second', 'checkout of a branch gives its head');
select results_eq($$select fruit_id, name from "t/fruit".fruits order by fruit_id$$,
                  $$values (1, 'apple'::varchar), (2, 'banana'), (3, 'mango')$$, 'with its rows');
select hasnt_table('t/fruit', 'empty', 'tables not in the image are removed');
select is((select branch from splitgraph.repositories() where repository = 't/fruit'), 'main',
          'a checkout of a branch follows it');
select is(splitgraph.checkout('t/fruit', left(:'first', 10)), :'first', 'a hash prefix resolves');
select is(splitgraph.checkout('t/fruit', 'latest'), :'detached', 'latest is the newest image');

-- identical data gives identical objects, in any repository
select splitgraph.checkout('t/fruit', :'second');
select splitgraph.commit('t/fruit', 'no change') as same \gset
select is(splitgraph.table_info('t/fruit', :'same', 'fruits') -> 'objects',
          splitgraph.table_info('t/fruit', :'second', 'fruits') -> 'objects',
          'a commit without changes reuses every object');
select splitgraph.commit('t/fruit', 'snapshot', snapshot => true) as same \gset
select splitgraph.init('t/other');
create table "t/other".fruits (fruit_id int primary key, name varchar);
insert into "t/other".fruits values (3, 'mango'), (2, 'banana'), (1, 'apple');
select (select count(*) from splitgraph_meta.objects) as objects_before \gset
select splitgraph.commit('t/other') as other \gset
select is(splitgraph.table_info('t/other', :'other', 'fruits') -> 'objects',
          splitgraph.table_info('t/fruit', :'same', 'fruits') -> 'objects',
          'the same rows in another repository, inserted in another order, give the same object');
select is((select count(*) from splitgraph_meta.objects), :'objects_before'::bigint, 'and add no object');

-- errors
select throws_ok(format($$select splitgraph.checkout('t/fruit', %L)$$, 'nope'), '42704',
                 'image "nope" not found in repository "t/fruit"', 'an unknown image is named in the error');
select throws_ok($$select splitgraph.commit('t/fruit', chunk_size => 0)$$, '22023', null, 'chunk_size must be positive');
select throws_ok($$select splitgraph.commit('t/fruit', repeat('c', 4097))$$, '22001', null,
                 'a comment over 4096 characters is refused');
create table "t/fruit".flagged (id int, sg_ud_flag boolean);
select (select count(*) from splitgraph_meta.images where repository = 't/fruit') as images_before \gset
select throws_ok($$select splitgraph.commit('t/fruit')$$, '0A000', null,
                 'a column named like the fragment flag is refused');
select is((select count(*) from splitgraph_meta.images where repository = 't/fruit'), :'images_before'::bigint,
          'a failed commit leaves no image');

select * from finish();
rollback;
