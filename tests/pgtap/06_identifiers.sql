-- Any name Postgres allows works as a table or column name: quotes, spaces, unicode, keywords.
begin;
set client_min_messages = warning;
select plan(10);

select splitgraph.init('weird-ns_1/re_po-2');
create table "weird-ns_1/re_po-2"."Quote""d Ta ble" ("sel""ect" int primary key, "ç ol" text, "from" date);
comment on column "weird-ns_1/re_po-2"."Quote""d Ta ble"."ç ol" is 'unicode: ünï ''quoted''';
insert into "weird-ns_1/re_po-2"."Quote""d Ta ble" values (1, 'é', '2020-02-02'), (2, E'line\nbreak', null);
create table "weird-ns_1/re_po-2"."таблица'); drop table public.victim; --" ("ключ" int, "значение" text);
insert into "weird-ns_1/re_po-2"."таблица'); drop table public.victim; --" values (1, 'один');
create table public.victim (id int);

select splitgraph.commit('weird-ns_1/re_po-2') as img \gset
select splitgraph.checkout('weird-ns_1/re_po-2', repeat('0', 64));
select hasnt_table('weird-ns_1/re_po-2', 'Quote"d Ta ble', 'the root image has none of the tables');
select is(splitgraph.checkout('weird-ns_1/re_po-2', :'img'), :'img', 'checkout of quoted and unicode names works');
select results_eq($$select "sel""ect", "ç ol", "from" from "weird-ns_1/re_po-2"."Quote""d Ta ble" order by 1$$,
                  $$values (1, 'é', '2020-02-02'::date), (2, E'line\nbreak', null)$$, 'with the data');
select col_is_pk('weird-ns_1/re_po-2', 'Quote"d Ta ble', 'sel"ect', 'a quoted key column stays the key');
select is(col_description('"weird-ns_1/re_po-2"."Quote""d Ta ble"'::regclass, 2), 'unicode: ünï ''quoted''',
          'comments with quotes survive');
select results_eq($$select "ключ", "значение" from "weird-ns_1/re_po-2"."таблица'); drop table public.victim; --"$$,
                  $$values (1, 'один')$$, 'a hostile table name is only a name');
select has_table('public', 'victim', 'and nothing was injected');
select is(splitgraph.show('weird-ns_1/re_po-2', :'img') -> 'tables' -> 'Quote"d Ta ble',
          '["sel\"ect", "ç ol", "from"]'::jsonb, 'show names columns exactly');
select is(splitgraph.table_info('weird-ns_1/re_po-2', :'img', 'Quote"d Ta ble') -> 'columns' -> 0 ->> 'name',
          'sel"ect', 'table_info too');
select lives_ok($$select splitgraph.commit('weird-ns_1/re_po-2', comment => E'it''s \\ fine; --')$$,
                'a comment is data, whatever it contains');

select * from finish();
rollback;
