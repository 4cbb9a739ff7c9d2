-- Objects: metadata, dump and load by value, applying fragments, garbage collection.
begin;
set client_min_messages = warning;
select plan(22);

select splitgraph.init('o/obj');
create table "o/obj".t (id int primary key, name text, at timestamptz, v numeric(10, 2));
insert into "o/obj".t values (1, 'a', '2020-01-01 00:00+00', 1.5), (2, 'b''q', null, -3), (3, 'Z', '2021-06-01 12:00+02', 0);
select splitgraph.commit('o/obj') as img \gset
select splitgraph.table_info('o/obj', :'img', 't') -> 'objects' ->> 0 as obj \gset

select matches(:'obj'::text, '^o[0-9a-f]{62}$', 'object ids are o + 62 hex digits');
select is(splitgraph.object_info(:'obj') ->> 'rows_inserted', '3', 'object_info counts upserted rows');
select is(splitgraph.object_info(:'obj') ->> 'deletion_hash', repeat('0', 64), 'a base fragment deletes nothing');
select is(splitgraph.object_info(:'obj') -> 'index' -> 'range' -> 'id', '[1, 3]'::jsonb, 'min/max of the key');
select is(splitgraph.object_info(:'obj') -> 'index' -> 'range' -> 'name', '["Z", "b''q"]'::jsonb,
          'text ranges use byte order');
select is(splitgraph.object_info(:'obj') -> 'index' -> 'range' -> 'at',
          '["2020-01-01T00:00:00+00:00", "2021-06-01T10:00:00+00:00"]'::jsonb, 'timestamps ignore nulls');
select is(splitgraph.object_info(:'obj') -> 'locations', '[]'::jsonb, 'a local object has no external location');
select is(splitgraph.object_info('o' || repeat('0', 62)), null, 'object_info of an unknown id is null');
select throws_ok(format($$select splitgraph.table_info('o/obj', %L, 'nope')$$, :'img'), '42P01', null,
                 'table_info of an unknown table is an error');

-- apply_fragments into any table
create table public.copy_of_t (id int primary key, name text, at timestamptz, v numeric(10, 2));
insert into public.copy_of_t values (2, 'old', null, 9), (7, 'keep', null, 7);
select lives_ok(format($$select splitgraph.apply_fragments(array[%L], 'public', 'copy_of_t')$$, :'obj'),
                'apply_fragments applies to an existing table');
select results_eq($$select id, name from public.copy_of_t order by id$$,
                  $$values (1, 'a'), (2, 'b''q'), (3, 'Z'), (7, 'keep')$$,
                  'its rows replace rows with the same key and leave the others');
truncate public.copy_of_t;
select splitgraph.apply_fragments(array[:'obj'], 'public', 'copy_of_t', 'f.id >= 2');
select results_eq($$select id from public.copy_of_t order by id$$, $$values (2), (3)$$,
                  'extra_quals filter the rows applied');
select throws_ok(format($$select splitgraph.apply_fragments(array[%L], 'public', 'nope')$$, :'obj'), '42P01', null,
                 'the target table must exist');
select throws_ok($$select splitgraph.apply_fragments(array['o' || repeat('1', 62)], 'public', 'copy_of_t')$$, '42704',
                 null, 'an unknown object is an error');

-- dump and load by value
select splitgraph.dump_object(:'obj') as dump \gset
select splitgraph.rm('o/obj');
select is(splitgraph.cleanup(), 1, 'cleanup deletes the object no image references');
select is(splitgraph.object_info(:'obj'), null, 'its metadata is gone');
select is(to_regclass(format('splitgraph_meta.%I', :'obj')), null, 'and its table');
select lives_ok(format($$select splitgraph.load_object(%L, %L::bytea)$$, :'obj', :'dump'), 'load_object stores a dump');
select is(splitgraph.object_info(:'obj') ->> 'insertion_hash',
          (select insertion_hash from splitgraph_meta.objects where object_id = :'obj'), 'and registers it');
select lives_ok(format($$select splitgraph.load_object(%L, %L::bytea)$$, :'obj', :'dump'),
                'loading an object that is already stored does nothing');
select throws_ok(format($$select splitgraph.load_object(%L, %L::bytea)$$, 'o' || repeat('2', 62), :'dump'), 'XX001',
                 null, 'a dump loaded under another id is refused');
select throws_ok(format($$select splitgraph.load_object(%L, '\x00112233'::bytea)$$, 'o' || repeat('2', 62)), 'XX001',
                 null, 'bytes that are not a dump are refused');

select * from finish();
rollback;
