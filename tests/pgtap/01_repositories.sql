-- Repositories: init, repositories, uncheckout, rm, and the rules for their names.
begin;
set client_min_messages = warning;
select plan(27);

select lives_ok($$select splitgraph.init('test/repo')$$, 'init creates a repository');
select has_schema('test/repo', 'init creates the checkout schema of the same name');
select results_eq(
    $$select repository, head, branch, checked_out, images, upstream from splitgraph.repositories()
      where repository = 'test/repo'$$,
    $$values ('test/repo'::text, repeat('0', 64), 'main'::text, true, 1, null::text)$$,
    'repositories() shows the root image checked out on branch main');
select results_eq($$select branch, image_hash, current from splitgraph.branches('test/repo')$$,
                  $$values ('main'::text, repeat('0', 64), true)$$, 'init creates branch main on the root image');
select is((select parent_id from splitgraph.log('test/repo')), null, 'the root image has no parent');
select throws_ok($$select splitgraph.init('test/repo')$$, '42710', 'repository "test/repo" already exists',
                 'init of an existing repository is refused');

-- names
select throws_ok($$select splitgraph.init('bad name')$$, '42602', null, 'a space is refused');
select throws_ok($$select splitgraph.init('a/b/c')$$, '42602', null, 'two slashes are refused');
select throws_ok($$select splitgraph.init('/x')$$, '42602', null, 'an empty namespace is refused');
select throws_ok($$select splitgraph.init('x/')$$, '42602', null, 'an empty name is refused');
select throws_ok($$select splitgraph.init(repeat('x', 65))$$, '42602', null, 'a name of 65 characters is refused');
select throws_ok($$select splitgraph.init('ns/' || repeat('x', 65))$$, '42602', null,
                 'a repository part of 65 characters is refused');
select throws_ok($$select splitgraph.init('x"; drop schema public; --')$$, '42602', null,
                 'a hostile name is refused before it reaches any statement');
select has_schema('public', 'and public is still there');
select throws_ok($$select splitgraph.init(null)$$, '22004', 'repository must not be null', 'a null name is refused');
select lives_ok($$select splitgraph.init(repeat('n', 64) || '/' || repeat('r', 64))$$,
                'both parts may have 64 characters');
select lives_ok($$select splitgraph.init('plain_name-1')$$, 'a repository may have no namespace');
select throws_ok($$select splitgraph.commit('no/such')$$, '42704', 'repository "no/such" does not exist',
                 'an unknown repository is named in the error');

-- uncheckout keeps the images, drops the schema
create table "test/repo".t (id int primary key);
insert into "test/repo".t values (1);
select splitgraph.commit('test/repo');
select lives_ok($$select splitgraph.uncheckout('test/repo')$$, 'uncheckout drops the checkout');
select hasnt_schema('test/repo', 'the checkout schema is gone');
select results_eq($$select checked_out, head, images from splitgraph.repositories() where repository = 'test/repo'$$,
                  $$values (false, null::text, 2)$$, 'the images stay, HEAD is gone');
select throws_ok($$select splitgraph.commit('test/repo')$$, '55000', 'repository "test/repo" is not checked out',
                 'commit needs a checkout');
select lives_ok($$select splitgraph.checkout('test/repo', 'main')$$, 'a repository can be checked out again');
select results_eq($$select id from "test/repo".t$$, $$values (1)$$, 'with its data');

-- rm deletes the metadata; the objects stay until cleanup
select splitgraph.rm('test/repo');
select hasnt_schema('test/repo', 'rm drops the checkout');
select is((select count(*)::int from splitgraph_meta.images where repository = 'test/repo'), 0,
          'rm deletes the images');
select throws_ok($$select splitgraph.rm('test/repo')$$, '42704', 'repository "test/repo" does not exist',
                 'rm of an unknown repository is refused');

select * from finish();
rollback;
