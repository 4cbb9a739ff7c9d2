-- Change tracking: statement-level triggers with transition tables on any schema, net changes per key
-- (conflation), tables without a primary key, composite keys, odd names, TRUNCATE, COPY, and the errors.
begin;
set client_min_messages = warning;
select plan(99);

-- ---------------------------------------------------------------------------------------------------------------
-- A plain schema: track_tables / tracked_tables / the triggers
-- ---------------------------------------------------------------------------------------------------------------
create schema trk;
-- get_pending_changes, or one row naming the error it raised (so that a failing expectation fails, not aborts)
create function pg_temp.pending(s text, t text) returns table (pk jsonb, change_type text, row_data jsonb)
language plpgsql as $f$
begin
    return query select g.pk, g.change_type, g.row_data from splitgraph.get_pending_changes(s, t) g;
exception when others then
    return query select null::jsonb, 'error ' || sqlstate || ': ' || sqlerrm, null::jsonb;
end
$f$;
create table trk.t (id int primary key, v text);
insert into trk.t values (1, 'a'), (2, 'b'), (3, 'c');
create table trk.other (id int primary key);

select is((select count(*)::int from splitgraph.tracked_tables() where schema_name = 'trk'), 0,
          'nothing is tracked before track_tables');
select lives_ok($$select splitgraph.track_tables('trk', array['t', 'other'])$$, 'track_tables on a plain schema');
select bag_eq($$select schema_name, table_name from splitgraph.tracked_tables() where schema_name = 'trk'$$,
              $$values ('trk', 't'), ('trk', 'other')$$, 'tracked_tables lists both');
select is((select count(*)::int from pg_trigger where tgrelid = 'trk.t'::regclass and not tgisinternal), 4,
          'four triggers: insert, update, delete, truncate');
select is((select count(*)::int from pg_trigger where tgrelid = 'trk.t'::regclass and not tgisinternal
           and (tgtype & 1) = 1), 0, 'all statement-level (none fires per row)');
select is((select count(*)::int from pg_trigger where tgrelid = 'trk.t'::regclass and not tgisinternal
           and (tgoldtable is not null or tgnewtable is not null)), 3,
          'insert, update and delete read transition tables');
select is(splitgraph.has_pending_changes('trk'), false, 'a freshly tracked schema has no pending changes');
select is(splitgraph.changed_tables('trk'), '{}'::text[], 'and no changed tables');

-- ---------------------------------------------------------------------------------------------------------------
-- Conflation: changes that cancel out are no change
-- ---------------------------------------------------------------------------------------------------------------
insert into trk.t values (4, 'd');
delete from trk.t where id = 4;
select is(splitgraph.has_pending_changes('trk'), false, 'insert then delete of the same row is no change');

update trk.t set v = 'x' where id = 1;
update trk.t set v = 'y' where id = 1;
update trk.t set v = 'a' where id = 1;
select is(splitgraph.has_pending_changes('trk'), false, 'updates back to the original value are no change');

delete from trk.t where id = 2;
insert into trk.t values (2, 'b');
select is(splitgraph.has_pending_changes('trk'), false, 'delete and re-insert of an identical row is no change');

update trk.t set id = 30 where id = 3;
update trk.t set id = 3 where id = 30;
select is(splitgraph.has_pending_changes('trk'), false, 'a primary key changed and changed back is no change');

savepoint s;
insert into trk.t values (99, 'rolled back');
update trk.t set v = 'rolled back' where id = 1;
rollback to savepoint s;
select is(splitgraph.has_pending_changes('trk'), false, 'changes rolled back leave nothing in the log');

-- the same, within single statements (a writable CTE, an upsert that writes the same values)
with d as (delete from trk.t where id = 1 returning id, v) insert into trk.t select id, v from d;
insert into trk.t values (2, 'b') on conflict (id) do update set v = excluded.v;
select is(splitgraph.has_pending_changes('trk'), false, 'delete + re-insert in one statement, or a no-op upsert, is no change');
select is((select count(*)::int from splitgraph.get_pending_changes('trk', 't')), 0,
          'get_pending_changes lists nothing');
select results_eq($$select added, removed, updated from splitgraph.get_pending_changes('trk', 't', true)$$,
                  $$values (0, 0, 0)$$, 'and its aggregate is all zeros');

-- ---------------------------------------------------------------------------------------------------------------
-- Net changes, both shapes
-- ---------------------------------------------------------------------------------------------------------------
insert into trk.t values (5, 'e');
update trk.t set v = 'E' where id = 5;             -- an insert then an update: one insert of the final row
update trk.t set v = 'A' where id = 1;
update trk.t set v = 'AA' where id = 1;            -- two updates: one update
update trk.t set v = 'gone' where id = 2;
delete from trk.t where id = 2;                    -- an update then a delete: a delete of the original row
update trk.t set id = 33 where id = 3;             -- a primary key change: delete of the old key, insert of the new
select bag_eq($$select pk, change_type, row_data from splitgraph.get_pending_changes('trk', 't')$$,
              $$values ('{"id": 5}'::jsonb, 'insert', '{"id": 5, "v": "E"}'::jsonb),
                       ('{"id": 1}', 'update', '{"id": 1, "v": "AA"}'),
                       ('{"id": 2}', 'delete', '{"id": 2, "v": "b"}'),
                       ('{"id": 3}', 'delete', '{"id": 3, "v": "c"}'),
                       ('{"id": 33}', 'insert', '{"id": 33, "v": "c"}')$$,
              'one row per changed key: the new row, or the original row for a delete');
select results_eq($$select pk, change_type, row_data, added, removed, updated
                    from splitgraph.get_pending_changes('trk', 't', aggregate => true)$$,
                  $$values (null::jsonb, null::text, null::jsonb, 2, 2, 1)$$,
                  'aggregate: one row of added, removed, updated');
select is(splitgraph.changed_tables('trk'), array['t'], 'changed_tables names the changed table only');
select is(splitgraph.has_pending_changes('trk'), true, 'has_pending_changes says so');

-- keys shifted by one statement: each key's first record tells its state before tracking
update trk.t set id = id + 100 where id in (1, 5);
update trk.t set id = id - 100 where id in (101, 105);
select is((select count(*)::int from splitgraph.get_pending_changes('trk', 't')), 5,
          'keys moved away and back in set-based updates change nothing more');
-- keys swapped through a spare key: both rows are updates, no insert or delete
insert into trk.other values (1), (2);
select splitgraph.discard_pending_changes('trk', 'other');
update trk.other set id = 100 where id = 1;
update trk.other set id = 1 where id = 2;
update trk.other set id = 2 where id = 100;
select is(splitgraph.has_pending_changes('trk') and splitgraph.changed_tables('trk') = array['t'], true,
          'keys swapped among identical rows are no change to "other"');

-- discard_pending_changes: the log is forgotten, the data stays
insert into trk.other values (7);
select is(splitgraph.changed_tables('trk'), array['other', 't'], 'both tables changed');
select lives_ok($$select splitgraph.discard_pending_changes('trk', 'other')$$, 'discard one table');
select is(splitgraph.changed_tables('trk'), array['t'], 'only its log is forgotten');
select is((select count(*)::int from trk.other where id = 7), 1, 'and its data stays as it is');
select lives_ok($$select splitgraph.discard_pending_changes('trk')$$, 'discard every table of the schema');
select is(splitgraph.has_pending_changes('trk'), false, 'nothing is pending');
select results_eq($$select id, v from trk.t order by id$$, $$values (1, 'AA'), (5, 'E'), (33, 'c')$$,
                  'the data is untouched');
delete from trk.t where id = 33;
select results_eq($$select pk, change_type, row_data from splitgraph.get_pending_changes('trk', 't')$$,
                  $$values ('{"id": 33}'::jsonb, 'delete', '{"id": 33, "v": "c"}'::jsonb)$$,
                  'after a discard, changes are counted from the data as it was then');
select lives_ok($$select splitgraph.track_tables('trk', array['t'])$$, 'tracking a tracked table again');
select is(splitgraph.has_pending_changes('trk'), true, 'keeps its log');

-- ---------------------------------------------------------------------------------------------------------------
-- COPY and TRUNCATE
-- ---------------------------------------------------------------------------------------------------------------
select splitgraph.discard_pending_changes('trk');
copy trk.t (id, v) from stdin;
40	copied
41	\N
\.
select bag_eq($$select pk, change_type, row_data from splitgraph.get_pending_changes('trk', 't')$$,
              $$values ('{"id": 40}'::jsonb, 'insert', '{"id": 40, "v": "copied"}'::jsonb),
                       ('{"id": 41}', 'insert', '{"id": 41, "v": null}')$$, 'rows loaded by COPY are inserts');
delete from trk.t where id in (40, 41);
delete from trk.t where id = 1;
copy trk.t (id, v) from stdin;
1	AA
\.
select is(splitgraph.has_pending_changes('trk'), false,
          'rows copied in and deleted, and a row deleted then copied back identical: no change');
select splitgraph.discard_pending_changes('trk');

delete from trk.t;
copy trk.t (id, v) from stdin;
1	AA
5	E
\.
select is(splitgraph.has_pending_changes('trk'), false, 'a DELETE of every row and a COPY of the same rows is no change');

truncate trk.other;
select is(splitgraph.changed_tables('trk'), array['other'], 'a TRUNCATE is a pending change');
-- A TRUNCATE has no transition table; the rows it removed are still changes to report.
select lives_ok($$select * from splitgraph.get_pending_changes('trk', 'other')$$,
                'get_pending_changes copes with a TRUNCATE');
select lives_ok($$select splitgraph.discard_pending_changes('trk', 'other')$$, 'discard after a TRUNCATE');
select is(splitgraph.has_pending_changes('trk'), false, 'forgets it');
insert into trk.other values (8);
select results_eq($$select pk, change_type from splitgraph.get_pending_changes('trk', 'other')$$,
                  $$values ('{"id": 8}'::jsonb, 'insert')$$, 'and rows are tracked again after it');
select splitgraph.discard_pending_changes('trk', 'other');

-- ---------------------------------------------------------------------------------------------------------------
-- Tables without a primary key: the whole row is the key
-- ---------------------------------------------------------------------------------------------------------------
create table trk.nokey (a int, b text);
insert into trk.nokey values (1, 'x'), (2, 'y'), (3, null), (4, 'dup'), (4, 'dup');
select splitgraph.track_tables('trk', array['nokey']);
select results_eq($$select key_columns, has_primary_key from splitgraph_audit.tracked
                    where schema_name = 'trk' and table_name = 'nokey'$$,
                  $$values ('"a", "b"', false)$$, 'the key of a table without a primary key is every column');
insert into trk.nokey values (9, 'z');
delete from trk.nokey where a = 9;
update trk.nokey set b = 'changed' where a = 1;
update trk.nokey set b = 'x' where a = 1;
delete from trk.nokey where a = 3;
insert into trk.nokey values (3, null);
select is(splitgraph.has_pending_changes('trk'), false, 'conflation works on whole rows too (nulls included)');
update trk.nokey set b = 'Y' where a = 2;
insert into trk.nokey values (5, 'new');
delete from trk.nokey where a = 3;
select bag_eq($$select pk, change_type, row_data from splitgraph.get_pending_changes('trk', 'nokey')$$,
              $$values ('{"a": 2, "b": "y"}'::jsonb, 'delete', '{"a": 2, "b": "y"}'::jsonb),
                       ('{"a": 2, "b": "Y"}', 'insert', '{"a": 2, "b": "Y"}'),
                       ('{"a": 5, "b": "new"}', 'insert', '{"a": 5, "b": "new"}'),
                       ('{"a": 3, "b": null}', 'delete', '{"a": 3, "b": null}')$$,
              'an update of a keyless row is a delete of the old row and an insert of the new');
select results_eq($$select added, removed, updated from splitgraph.get_pending_changes('trk', 'nokey', true)$$,
                  $$values (2, 2, 0)$$, 'and its counts');
select splitgraph.discard_pending_changes('trk', 'nokey');
-- duplicates
delete from trk.nokey where a = 4;
insert into trk.nokey values (4, 'dup'), (4, 'dup');
select is(splitgraph.has_pending_changes('trk'), false, 'both copies of a duplicate deleted and re-inserted: no change');
insert into trk.nokey values (4, 'dup');
select is(splitgraph.has_pending_changes('trk'), true, 'a third copy of a duplicate row is a change');
delete from trk.nokey where a = 4;
insert into trk.nokey values (4, 'dup'), (4, 'dup');
select is(splitgraph.has_pending_changes('trk'), false, 'and back to two copies is none');
insert into trk.nokey values (6, 'twin'), (6, 'twin');
select is(splitgraph.changed_tables('trk'), array['nokey'], 'two copies of a new row are a change');
select bag_eq($$select pk, change_type, row_data from pg_temp.pending('trk', 'nokey')$$,
              $$values ('{"a": 6, "b": "twin"}'::jsonb, 'insert', '{"a": 6, "b": "twin"}'::jsonb),
                       ('{"a": 6, "b": "twin"}', 'insert', '{"a": 6, "b": "twin"}')$$,
              'get_pending_changes lists each added copy');
select splitgraph.discard_pending_changes('trk', 'nokey');

-- ---------------------------------------------------------------------------------------------------------------
-- Composite keys, quoted and unicode identifiers
-- ---------------------------------------------------------------------------------------------------------------
create schema "Sché ma""1";
create table "Sché ma""1"."Tä ble""x" ("Kéy""a" int, "kéy b" text, "välue" numeric, "select" date,
                                         primary key ("Kéy""a", "kéy b"));
insert into "Sché ma""1"."Tä ble""x" values (1, 'α', 1.5, '2020-01-01'), (1, 'β', 2.5, null), (2, 'α', 3, null);
select lives_ok($$select splitgraph.track_tables('Sché ma"1', array['Tä ble"x'])$$,
                'track_tables with quoted and unicode schema and table names');
select is((select count(*)::int from splitgraph.tracked_tables() where schema_name = 'Sché ma"1' and table_name = 'Tä ble"x'),
          1, 'tracked_tables names them exactly');
update "Sché ma""1"."Tä ble""x" set "kéy b" = 'γ' where "Kéy""a" = 1 and "kéy b" = 'β';   -- half the key changes
update "Sché ma""1"."Tä ble""x" set "välue" = 4 where "Kéy""a" = 2;
update "Sché ma""1"."Tä ble""x" set "välue" = 1.5, "select" = '2020-01-01' where "Kéy""a" = 1 and "kéy b" = 'α';
select bag_eq($$select pk, change_type, row_data from splitgraph.get_pending_changes('Sché ma"1', 'Tä ble"x')$$,
              $$values ('{"Kéy\"a": 1, "kéy b": "β"}'::jsonb, 'delete',
                        '{"Kéy\"a": 1, "kéy b": "β", "välue": 2.5, "select": null}'::jsonb),
                       ('{"Kéy\"a": 1, "kéy b": "γ"}', 'insert',
                        '{"Kéy\"a": 1, "kéy b": "γ", "välue": 2.5, "select": null}'),
                       ('{"Kéy\"a": 2, "kéy b": "α"}', 'update',
                        '{"Kéy\"a": 2, "kéy b": "α", "välue": 4, "select": null}')$$,
              'composite keys: pk holds every key column, by its exact name');
select is(splitgraph.changed_tables('Sché ma"1'), array['Tä ble"x'], 'changed_tables with odd names');
select lives_ok($$select splitgraph.discard_pending_changes('Sché ma"1', 'Tä ble"x')$$, 'discard with odd names');
select lives_ok($$select splitgraph.untrack_tables('Sché ma"1', array['Tä ble"x'])$$, 'untrack with odd names');
select is((select count(*)::int from pg_trigger where tgrelid = '"Sché ma""1"."Tä ble""x"'::regclass and not tgisinternal),
          0, 'untracking drops the triggers');

-- ---------------------------------------------------------------------------------------------------------------
-- ALTER TABLE and untracking
-- ---------------------------------------------------------------------------------------------------------------
alter table trk.t add column w int;
select is(splitgraph.changed_tables('trk'), array['t'], 'a column added to a tracked table is a pending change');
select throws_ok($$select * from splitgraph.get_pending_changes('trk', 't')$$, '55000', null,
                 'whose row changes are no longer known (55000)');
select lives_ok($$select splitgraph.discard_pending_changes('trk', 't')$$, 'discard after an ALTER TABLE');
update trk.t set w = 1 where id = 1;
select results_eq($$select pk, change_type, row_data from splitgraph.get_pending_changes('trk', 't')$$,
                  $$values ('{"id": 1}'::jsonb, 'update', '{"id": 1, "v": "AA", "w": 1}'::jsonb)$$,
                  'tracks the new columns from then on');

select lives_ok($$select splitgraph.untrack_tables('trk', array['t'])$$, 'untrack_tables');
select bag_eq($$select table_name from splitgraph.tracked_tables() where schema_name = 'trk'$$,
              $$values ('other'), ('nokey')$$, 'the table is no longer tracked');
select is((select count(*)::int from pg_trigger where tgrelid = 'trk.t'::regclass and not tgisinternal), 0,
          'and has no trigger left');
select is((select count(*)::int from splitgraph_audit.tracked where schema_name = 'trk' and table_name = 't'), 0,
          'and no log');
update trk.t set v = 'untracked' where id = 1;
select is(splitgraph.has_pending_changes('trk'), false, 'changes to an untracked table are not pending changes');
select lives_ok($$select splitgraph.untrack_tables('trk', array['t'])$$, 'untracking twice is harmless');

-- a dropped table leaves tracked_tables
create table trk.dropme (id int primary key);
select splitgraph.track_tables('trk', array['dropme']);
drop table trk.dropme;
select is((select count(*)::int from splitgraph.tracked_tables() where table_name = 'dropme'), 0,
          'a dropped table is not listed as tracked');
create table trk.dropme (id int primary key);
insert into trk.dropme values (1);
select is(splitgraph.has_pending_changes('trk'), false, 'a table made again under the same name is not tracked');

-- a renamed or moved table: its old name is gone
create table trk.renamed (id int primary key);
create table trk.moved (id int primary key);
select splitgraph.track_tables('trk', array['renamed', 'moved']);
alter table trk.renamed rename to renamed_now;
create schema trk_elsewhere;
alter table trk.moved set schema trk_elsewhere;
select is((select count(*)::int from splitgraph.tracked_tables() where schema_name = 'trk' and table_name in ('renamed', 'moved')),
          0, 'tracked_tables does not list names that no longer exist');
select throws_ok($$select * from splitgraph.get_pending_changes('trk', 'renamed')$$, '42P01', null,
                 'the old name is no table any more');

-- ---------------------------------------------------------------------------------------------------------------
-- Errors
-- ---------------------------------------------------------------------------------------------------------------
select throws_ok($$select splitgraph.track_tables('trk', array['nope'])$$, '42P01', null,
                 'tracking a table that does not exist: 42P01');
select throws_ok($$select splitgraph.track_tables('no_such_schema', array['t'])$$, '42P01', null,
                 'nor in a schema that does not exist');
select throws_ok($$select * from splitgraph.get_pending_changes('trk', 't')$$, '55000', null,
                 'get_pending_changes of an untracked table: 55000');
select throws_ok($$select splitgraph.discard_pending_changes('trk', 't')$$, '55000', null,
                 'discard_pending_changes of an untracked table: 55000');
select throws_ok($$select * from splitgraph.get_pending_changes('trk', 'nope')$$, '42P01', null,
                 'get_pending_changes of an unknown table: 42P01');
select throws_ok($$select splitgraph.discard_pending_changes('trk', 'nope')$$, '42P01', null,
                 'discard_pending_changes of an unknown table: 42P01');
create view trk.a_view as select * from trk.other;
select throws_ok($$select splitgraph.track_tables('trk', array['a_view'])$$, '0A000', null, 'a view cannot be tracked');
create table trk.clash (id int primary key, sg_audit_kind int);
select throws_ok($$select splitgraph.track_tables('trk', array['clash'])$$, '0A000', null,
                 'a column named like the log''s own columns is refused');
select is((select count(*)::int from splitgraph.tracked_tables() where table_name in ('nope', 'a_view', 'clash')), 0,
          'failed calls track nothing');

-- ---------------------------------------------------------------------------------------------------------------
-- A checkout is tracked automatically
-- ---------------------------------------------------------------------------------------------------------------
select splitgraph.init('trk/repo');
create table "trk/repo".t (id int primary key, v text);
insert into "trk/repo".t values (1, 'a'), (2, 'b'), (3, 'c');
create table "trk/repo".nokey (a int, b text);
insert into "trk/repo".nokey values (1, 'x'), (1, 'x');
select splitgraph.commit('trk/repo') as head \gset
select bag_eq($$select table_name from splitgraph.tracked_tables() where schema_name = 'trk/repo'$$,
              $$values ('t'), ('nokey')$$, 'after a commit every table of the checkout is tracked');
select is(splitgraph.has_pending_changes('trk/repo'), false, 'no pending changes right after a commit');
select splitgraph.checkout('trk/repo', :'head', force => true);
select bag_eq($$select table_name from splitgraph.tracked_tables() where schema_name = 'trk/repo'$$,
              $$values ('t'), ('nokey')$$, 'and after a checkout');
insert into "trk/repo".t values (4, 'd');
delete from "trk/repo".t where id = 4;
update "trk/repo".t set v = 'B' where id = 2;
update "trk/repo".t set id = 30 where id = 3;
select is(splitgraph.changed_tables('trk/repo'), array['t'], 'changed_tables of a checkout');
select bag_eq($$select pk, change_type, row_data from splitgraph.get_pending_changes('trk/repo', 't')$$,
              $$values ('{"id": 2}'::jsonb, 'update', '{"id": 2, "v": "B"}'::jsonb),
                       ('{"id": 3}', 'delete', '{"id": 3, "v": "c"}'),
                       ('{"id": 30}', 'insert', '{"id": 30, "v": "c"}')$$,
              'get_pending_changes of a checkout table, conflated');
select throws_ok($$select splitgraph.discard_pending_changes('trk/repo')$$, '55000', null,
                 'discard_pending_changes refuses a checkout (55000): reset undoes its changes');
select throws_ok($$select splitgraph.discard_pending_changes('trk/repo', 't')$$, '55000', null,
                 'for one table too');
select is(splitgraph.has_pending_changes('trk/repo'), true, 'and the changes stay pending');
create table "trk/repo".fresh (id int);
select is(splitgraph.changed_tables('trk/repo'), array['fresh', 't'], 'a new table in a checkout is a pending change');
select splitgraph.commit('trk/repo') as second \gset
select is(splitgraph.has_pending_changes('trk/repo'), false, 'a commit starts the logs afresh');
select bag_eq($$select table_name from splitgraph.tracked_tables() where schema_name = 'trk/repo'$$,
              $$values ('t'), ('nokey'), ('fresh')$$, 'and tracks the new table');
delete from "trk/repo".nokey;
insert into "trk/repo".nokey values (1, 'x'), (1, 'x');
select is(splitgraph.has_pending_changes('trk/repo'), false, 'keyless duplicates deleted and re-inserted: no change');

-- a checkout table untracked, changed and tracked again: its baseline is still HEAD, not the moment of re-tracking
select splitgraph.untrack_tables('trk/repo', array['t']);
update "trk/repo".t set v = 'changed while untracked' where id = 1;
select is(splitgraph.changed_tables('trk/repo'), array['t'], 'an untracked checkout table is a pending change');
select splitgraph.track_tables('trk/repo', array['t']);
select is(splitgraph.changed_tables('trk/repo'), array['t'], 'and still is after track_tables');
select splitgraph.reset('trk/repo', 't');
drop table "trk/repo".t;
create table "trk/repo".t (id int primary key, v text);
insert into "trk/repo".t values (1, 'a'), (2, 'B'), (30, 'c'), (77, 're-created');
select is(splitgraph.changed_tables('trk/repo'), array['t'], 'a re-created checkout table is a pending change');
select splitgraph.track_tables('trk/repo', array['t']);
select is(splitgraph.changed_tables('trk/repo'), array['t'], 'and still is after track_tables');
select splitgraph.reset('trk/repo');
select is(splitgraph.has_pending_changes('trk/repo'), false, 'reset cleans the checkout');

-- TRUNCATE of a checkout table: the change is pending and can be listed from HEAD
truncate "trk/repo".t;
insert into "trk/repo".t values (1, 'a'), (30, 'c');
select is(splitgraph.changed_tables('trk/repo'), array['t'], 'a TRUNCATE is a pending change of the checkout');
select bag_eq($$select pk, change_type, row_data from pg_temp.pending('trk/repo', 't')$$,
              $$values ('{"id": 2}'::jsonb, 'delete', '{"id": 2, "v": "B"}'::jsonb)$$,
              'get_pending_changes after a TRUNCATE lists the net changes');
insert into "trk/repo".t values (2, 'B');
select is(splitgraph.has_pending_changes('trk/repo'), false,
          'a TRUNCATE and a re-insert of identical rows is no change');

select * from finish();
rollback;
