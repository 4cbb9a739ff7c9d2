-- Splitfiles built inside one engine: derived hashes, cached layers, provenance.
begin;
set client_min_messages = warning;
select plan(14);

select splitgraph.init('pt/src');
create table "pt/src".t (id int primary key, v text);
insert into "pt/src".t select i, 'v' || i from generate_series(1, 10) i;
select splitgraph.commit('pt/src') as src \gset
select splitgraph.tag('pt/src', :'src', 'v1');

select splitgraph.build($$
FROM pt/src:${TAG} IMPORT t
SQL CREATE TABLE s AS SELECT sum(id) AS total FROM t
$$, 'pt/out', '{"TAG": "v1"}') as built \gset

select is((select total from "pt/out".s), 55::bigint, 'the SQL step ran against the checkout');
select is((select count(*)::int from splitgraph.images('pt/out')), 3, 'one image per command, and the root');
select is((select image_hash from splitgraph.log('pt/out') offset 1 limit 1),
          encode(sha256(convert_to(repeat('0', 64) || :'src' || encode(sha256('t'), 'hex')
                                   || encode(sha256('t'), 'hex'), 'UTF8')), 'hex'),
          'the IMPORT image hash is derived from the parent, the source and the names');
select is(:'built',
          encode(sha256(convert_to((select image_hash from splitgraph.log('pt/out') offset 1 limit 1)
                                   || encode(sha256('CREATE TABLE s AS SELECT sum(id) AS total FROM t'), 'hex'),
                                   'UTF8')), 'hex'),
          'the SQL image hash is derived from the parent and the statement as printed back');
select is(splitgraph.build($$
FROM pt/src:v1 IMPORT t
SQL create table s as select sum(id) as total from t
$$, 'pt/out'), :'built', 'the same commands again give the same image');
select is((select count(*)::int from splitgraph.images('pt/out')), 3, 'and make no image');
select is((select branch from splitgraph.branches('pt/out') where current), 'main', 'the output is on main');
select results_eq($$select * from splitgraph.provenance('pt/out', 'HEAD')$$,
                  format($$values ('pt/src', %L)$$, :'src'), 'provenance names the source image');
select results_eq($$select repository from splitgraph.dependents('pt/src', 'v1')$$,
                  $$values ('pt/out'), ('pt/out')$$, 'both images were built from it');
select is(splitgraph.reconstruct_splitfile('pt/out', 'HEAD'),
          format(E'FROM pt/src:%s IMPORT t\nSQL {CREATE TABLE s AS SELECT sum(id) AS total FROM t}\n', :'src'),
          'reconstruct_splitfile writes the commands back with full hashes');
select is(splitgraph.build(splitgraph.reconstruct_splitfile('pt/out', 'HEAD'), 'pt/again'), :'built',
          'building the reconstructed Splitfile elsewhere gives the same image');
select throws_ok($$select splitgraph.build('FROM pt/src IMPORT', 'pt/bad')$$, '42601',
                 'Splitfile line 1, column 19: expected a space after IMPORT, not the end of the line',
                 'a Splitfile that does not read names the place');
select throws_ok($$select splitgraph.build('SQL SET work_mem = 1', 'pt/bad')$$, '42501',
                 'Splitfile line 1, column 5: SET is not allowed in a SQL step', 'a refused statement is named');
select is((select count(*)::int from splitgraph.repositories() where repository = 'pt/bad'), 0,
          'and nothing was built');

select * from finish();
rollback;
