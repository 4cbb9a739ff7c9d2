-- The demo: a repository's life in a dozen statements. Run by `make demo` against the local engine.
\set ON_ERROR_STOP on
\pset footer off
set client_min_messages = warning;
select splitgraph.rm(repository) from splitgraph.repositories() where repository = 'demo/weather';

\echo '==> 1. init: a new repository, checked out into the schema "demo/weather"'
select splitgraph.init('demo/weather');

\echo '==> 2. create and fill a table in the checkout'
create table "demo/weather".readings (
    station text, day date, temperature numeric(4, 1),
    primary key (station, day)
);
insert into "demo/weather".readings values
    ('london', '2024-01-01', 7.5), ('london', '2024-01-02', 8.1),
    ('oslo', '2024-01-01', -3.0), ('oslo', '2024-01-02', -5.5);
select * from "demo/weather".readings order by station, day;

\echo '==> 3. commit: the first image'
select splitgraph.commit('demo/weather', 'first readings') as first_image \gset
\echo :first_image

\echo '==> 4. tag it v1'
select splitgraph.tag('demo/weather', :'first_image', 'v1');

\echo '==> 5. change rows: a correction, a new day, a deleted reading'
update "demo/weather".readings set temperature = 8.3 where station = 'london' and day = '2024-01-02';
insert into "demo/weather".readings values ('london', '2024-01-03', 6.9);
delete from "demo/weather".readings where station = 'oslo' and day = '2024-01-02';
select * from "demo/weather".readings order by station, day;

\echo '==> 6. commit again'
select splitgraph.commit('demo/weather', 'corrections and a new day') as second_image \gset

\echo '==> 7. the history'
select left(image_hash, 12) as image, left(parent_id, 12) as parent, comment, tags
from splitgraph.log('demo/weather');

\echo '==> 8. check out the tagged image: the old rows are back'
select left(splitgraph.checkout('demo/weather', 'v1'), 12) as checked_out;
select * from "demo/weather".readings order by station, day;

\echo '==> 9. and back to the branch head'
select left(splitgraph.checkout('demo/weather', 'main'), 12) as checked_out;
select * from "demo/weather".readings order by station, day;

\echo '==> 10. what the table looks like in image v1'
select jsonb_pretty(splitgraph.table_info('demo/weather', 'v1', 'readings') - 'objects') as table_info;
