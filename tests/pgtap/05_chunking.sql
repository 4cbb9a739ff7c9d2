-- Large tables are split into fragments of chunk_size rows by key range.
begin;
set client_min_messages = warning;
select plan(16);

select splitgraph.init('c/chunks');
create table "c/chunks".pk (id int primary key, v text);
insert into "c/chunks".pk select i, md5(i::text) from generate_series(1, 25) i;
create table "c/chunks".nopk (a int, b text);
insert into "c/chunks".nopk select i % 7, 'x' from generate_series(1, 25) i;
create table "c/chunks".composite (k text, n int, v float8, primary key (k, n));
insert into "c/chunks".composite select k, n, n * 0.5 from unnest(array['b', 'B', 'a', 'A']) k, generate_series(1, 3) n;
select splitgraph.commit('c/chunks', chunk_size => 10) as img \gset

create temp table chunks as
select t.table_name, o.n, i.rows_inserted, i.index
from splitgraph_meta.tables t,
     unnest(t.object_ids) with ordinality o(id, n)
     join splitgraph_meta.objects i on i.object_id = o.id
where t.repository = 'c/chunks' and t.image_hash = :'img';

select results_eq($$select rows_inserted::int from chunks where table_name = 'pk' order by n$$,
                  array[10, 10, 5], '25 rows in chunks of 10 make fragments of 10, 10 and 5 rows');
select results_eq($$select index -> 'range' -> 'id' from chunks where table_name = 'pk' order by n$$,
                  array['[1, 10]'::jsonb, '[11, 20]', '[21, 25]'], 'chunks follow the primary key order');
select results_eq($$select rows_inserted::int from chunks where table_name = 'nopk' order by n$$,
                  array[10, 10, 5], 'a table without a primary key is chunked by its whole row');
select results_eq($$select index -> 'range' -> 'a' from chunks where table_name = 'nopk' order by n$$,
                  array['[0, 2]'::jsonb, '[2, 5]', '[5, 6]'], 'in the order of its values');
select results_eq($$select index -> 'range' -> 'k' from chunks where table_name = 'composite' order by n$$,
                  array['["A", "b"]'::jsonb, '["b", "b"]'],
                  'a composite key orders text by bytes, on every engine');

select splitgraph.checkout('c/chunks', repeat('0', 64));
select hasnt_table('c/chunks', 'pk', 'the root image has no tables');
select splitgraph.checkout('c/chunks', :'img');
select results_eq($$select id, v from "c/chunks".pk order by id$$,
                  $$select i, md5(i::text) from generate_series(1, 25) i$$, 'checkout joins the chunks again');
select bag_eq($$select a, b from "c/chunks".nopk$$, $$select i % 7 as a, 'x' as b from generate_series(1, 25) i$$,
              'with every duplicate row');
select bag_eq($$select k, n, v from "c/chunks".composite$$,
              $$select k, n, n * 0.5::float8 as v from unnest(array['b', 'B', 'a', 'A']) k, generate_series(1, 3) n$$,
              'and every composite-key row');
select col_is_pk('c/chunks', 'composite', array['k', 'n'], 'the composite key is restored');

-- the same rows chunk the same way: no new objects
select count(*) as before from splitgraph_meta.objects \gset
select splitgraph.commit('c/chunks', snapshot => true, chunk_size => 10);
select is((select count(*) from splitgraph_meta.objects), :'before'::bigint, 'a new snapshot of the same rows stores nothing new');

-- identical chunks within one table are one object
create table "c/chunks".same (a int);
insert into "c/chunks".same select 1 from generate_series(1, 20);
select splitgraph.commit('c/chunks', chunk_size => 10) as dup \gset
select is((select object_ids[1] = object_ids[2] from splitgraph_meta.tables
           where repository = 'c/chunks' and image_hash = :'dup' and table_name = 'same'), true,
          'two identical chunks are one object, listed twice');
select splitgraph.checkout('c/chunks', :'dup');
select is((select count(*)::int from "c/chunks".same), 20, 'and both are applied');

-- a single chunk for a small table; chunk size 1
select splitgraph.commit('c/chunks', snapshot => true, chunk_size => 1) as ones \gset
select is(jsonb_array_length(splitgraph.table_info('c/chunks', :'ones', 'pk') -> 'objects'), 25,
          'chunk_size 1 gives one fragment per row');
select splitgraph.checkout('c/chunks', :'ones');
select is((select count(*)::int from "c/chunks".pk), 25, 'and they apply back');
select is((select sum(rows_inserted)::int from splitgraph_meta.objects o
           join splitgraph_meta.tables t on o.object_id = any(t.object_ids)
           where t.repository = 'c/chunks' and t.image_hash = :'ones' and t.table_name = 'pk'), 25,
          'every row is in exactly one fragment');

select * from finish();
rollback;
