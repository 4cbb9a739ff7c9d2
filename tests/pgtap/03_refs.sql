-- Tags, branches and how image references resolve.
begin;
set client_min_messages = warning;
select plan(32);

select splitgraph.init('r/refs');
create table "r/refs".t (id int primary key);
insert into "r/refs".t values (1);
select splitgraph.commit('r/refs', 'one') as one \gset
insert into "r/refs".t values (2);
select splitgraph.commit('r/refs', 'two') as two \gset

-- tags
select lives_ok(format($$select splitgraph.tag('r/refs', %L, 'v1')$$, :'one'), 'tag an image by hash');
select is(splitgraph.checkout('r/refs', 'v1'), :'one', 'a tag resolves to its image');
select is((select tags from splitgraph.log('r/refs', 'v1') limit 1), array['v1'], 'log shows the tag');
select lives_ok($$select splitgraph.tag('r/refs', 'main', 'v1')$$, 'tagging again moves the tag');
select is((select image_hash from splitgraph.images('r/refs') where 'v1' = any(tags)), :'two', 'the tag moved');
select lives_ok($$select splitgraph.tag('r/refs', 'HEAD', 'here')$$, 'HEAD can be tagged');
select is((select tags from splitgraph.images('r/refs') where image_hash = :'one'), array['here'],
          'HEAD is the checked-out image');
select throws_ok($$select splitgraph.tag('r/refs', 'main', 'HEAD')$$, '42602', null, 'HEAD is not a tag name');
select throws_ok($$select splitgraph.tag('r/refs', 'main', 'latest')$$, '42602', null, 'latest is not a tag name');
select throws_ok($$select splitgraph.tag('r/refs', 'main', 'has space')$$, '42602', null, 'a space is refused');
select throws_ok($$select splitgraph.tag('r/refs', 'main', repeat('a', 64))$$, '42602', null,
                 'a name that looks like a hash is refused');
select throws_ok($$select splitgraph.tag('r/refs', 'main', 'main')$$, '42710', null,
                 'a tag cannot take the name of a branch');
select throws_ok($$select splitgraph.tag('r/refs', 'nope', 'x')$$, '42704', null, 'tagging an unknown image fails');
select lives_ok($$select splitgraph.delete_tag('r/refs', 'here')$$, 'delete a tag');
select is((select count(*)::int from splitgraph.images('r/refs') where 'here' = any(tags)), 0, 'the tag is gone');
select throws_ok($$select splitgraph.delete_tag('r/refs', 'here')$$, '42704',
                 'tag "here" not found in repository "r/refs"', 'deleting a missing tag is an error');

-- branches
select lives_ok(format($$select splitgraph.branch('r/refs', 'dev', %L)$$, :'one'), 'create a branch at an image');
select throws_ok($$select splitgraph.branch('r/refs', 'dev')$$, '42710', null, 'a branch name is unique');
select throws_ok($$select splitgraph.branch('r/refs', 'v1')$$, '42710', null, 'a branch cannot take a tag''s name');
select is(splitgraph.checkout('r/refs', 'dev'), :'one', 'check out the branch');
insert into "r/refs".t values (10);
select splitgraph.commit('r/refs', 'on dev') as dev \gset
select results_eq($$select branch, image_hash from splitgraph.branches('r/refs') order by branch$$,
                  format($$values ('dev'::text, %L), ('main', %L)$$, :'dev', :'two'),
                  'a commit moves only the checked-out branch');
select is((select current from splitgraph.branches('r/refs') where branch = 'dev'), true, 'dev is current');
select throws_ok($$select splitgraph.delete_branch('r/refs', 'dev')$$, '55000', null,
                 'the checked-out branch cannot be deleted');
select splitgraph.checkout('r/refs', 'main');
select lives_ok($$select splitgraph.delete_branch('r/refs', 'dev')$$, 'another branch can');
select is((select count(*)::int from splitgraph.images('r/refs') where image_hash = :'dev'), 1,
          'deleting a branch keeps its images');
select throws_ok($$select splitgraph.delete_branch('r/refs', 'dev')$$, '42704', null, 'a missing branch is an error');
select lives_ok($$select splitgraph.branch('r/refs', 'feature/x-1')$$, 'branch names may contain slashes');

-- resolution
select is(splitgraph.checkout('r/refs', upper(left(:'two', 6))), :'two', 'a prefix resolves regardless of case');
select throws_ok(format($$select splitgraph.checkout('r/refs', %L)$$, left(:'two', 3)), '42704', null,
                 'a prefix needs at least 4 digits');
insert into splitgraph_meta.images (repository, image_hash, parent_id)
values ('r/refs', 'abcd' || repeat('1', 60), :'two'), ('r/refs', 'abcd' || repeat('2', 60), :'two');
select throws_ok($$select splitgraph.checkout('r/refs', 'abcd')$$, '21000', null, 'an ambiguous prefix is an error');
select is((select count(*)::int from splitgraph.log('r/refs', 'abcd1')), 4, 'log follows parents to the root');
select is((select count(*)::int from splitgraph.images('r/refs')), 6, 'images lists every image');

select * from finish();
rollback;
