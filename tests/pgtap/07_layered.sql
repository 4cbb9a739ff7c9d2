-- Layered checkout: read-only views over the fragments instead of copies.
begin;
set client_min_messages = warning;
select plan(8);

select splitgraph.init('l/lay');
create table "l/lay".t (id int primary key, v text);
insert into "l/lay".t select i, 'v' || i from generate_series(1, 30) i;
select splitgraph.commit('l/lay', chunk_size => 7) as img \gset

select splitgraph.checkout('l/lay', :'img', layered => true);
select is((select relkind::text from pg_class where oid = '"l/lay".t'::regclass), 'v', 'a layered checkout makes views');
select results_eq($$select id, v from "l/lay".t order by id$$, $$select i, 'v' || i from generate_series(1, 30) i$$,
                  'that show the image''s rows');
select throws_ok($$insert into "l/lay".t values (100, 'x')$$, null, null, 'they are read-only');
select is((select layered from splitgraph_meta.checkouts where repository = 'l/lay'), true, 'the checkout says so');
select splitgraph.commit('l/lay') as again \gset
select is(splitgraph.table_info('l/lay', :'again', 't') -> 'objects', splitgraph.table_info('l/lay', :'img', 't') -> 'objects',
          'a commit of a layered checkout reuses every object');
select splitgraph.checkout('l/lay', :'img');
select is((select relkind::text from pg_class where oid = '"l/lay".t'::regclass), 'r', 'a normal checkout makes tables again');
select is((select count(*)::int from "l/lay".t), 30, 'with the rows');
select splitgraph.checkout('l/lay', repeat('0', 64), layered => true);
select hasnt_table('l/lay', 't', 'a layered checkout of an image without the table removes it');

select * from finish();
rollback;
