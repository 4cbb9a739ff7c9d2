"""The guards behind tracking that cannot be bypassed and reads that run no code, tested on their own (the issue 8
and 9 suites reach some of them only when a plain role may mount a foreign table):

- a checkout table with a foreign partition is refused (0A000) by commit, status and reset, and no row of the
  foreign table is ever stored; a foreign inheritance child never lands in its parent's image;
- the tracking trigger functions are the extension's own: no other role may put them on a table;
- reset's helpers, called directly and out of order, never make a changed table look like HEAD;
- a table too wide to log is tracked by comparison: status, diff, reset and commit work, and listing its changes
  row by row fails saying why (54000);
- status() of every repository skips, with a NOTICE, a repository whose table another session holds locked;
- a change to a column with a type modifier (character(5), varchar(3), numeric(6,2), a domain over varchar(4)) is
  logged whole: no value is cut, padded differently or refused.
"""
import pytest

from conftest import fails, sql, value
from support import driver  # noqa: E402
from support.integrity import Notices, changed, commit_is_exact, connect, ensure_roles


@pytest.fixture
def db(cluster, dbname):
    c = connect(cluster, dbname)
    yield c
    c.close()


@pytest.fixture
def loopback(cluster, dbname, db):
    """A postgres_fdw server on this very cluster (the superuser's own mapping), and a secret table behind it."""
    sql(db, "create table if not exists public.secrets (name text, secret text)")
    sql(db, "truncate public.secrets")
    sql(db, "insert into public.secrets values ('root', 'the-secret-value')")
    sql(db, f"""do $$ begin
                  if not exists (select from pg_foreign_server where srvname = 'guards_loop') then
                    create server guards_loop foreign data wrapper postgres_fdw
                      options (host '127.0.0.1', port '{cluster.port}', dbname '{dbname}');
                    create user mapping for postgres server guards_loop options (user 'postgres');
                  end if;
                end $$""")
    return "the-secret-value"


def stored_anywhere(db, needle):
    objects = [r[0] for r in sql(db, """select c.relname::text from pg_class c
                                       where c.relnamespace = 'splitgraph_meta'::regnamespace and c.relkind = 'r'
                                         and c.relname ~ '^o[0-9a-f]{62}$'""")]
    return [o for o in objects
            if value(db, f'select count(*) from splitgraph_meta."{o}" t where strpos(t::text, %s) > 0', needle)]


def test_a_foreign_partition_is_refused_and_never_read(db, loopback):
    repo = "grd/foreign-part"
    sql(db, "select splitgraph.init(%s)", repo)
    sql(db, f'create table "{repo}".t (name text, secret text) partition by list (name)')
    sql(db, f"""create table "{repo}".t_own partition of "{repo}".t for values in ('own')""")
    sql(db, f"""insert into "{repo}".t values ('own', 'visible')""")
    sql(db, f"""create foreign table "{repo}".t_far (name text, secret text)
                server guards_loop options (schema_name 'public', table_name 'secrets')""")
    sql(db, f'alter table "{repo}".t attach partition "{repo}".t_far default')
    assert value(db, f'select count(*) from "{repo}".t') == 2, "the foreign partition is reachable"
    for call in ("select splitgraph.commit(%s, snapshot => true)", "select splitgraph.commit(%s)",
                 "select * from splitgraph.status(%s)", "select splitgraph.reset(%s)"):
        err = fails(db, call, repo, sqlstate="0A000")
        assert "t_far" in str(err)
    assert stored_anywhere(db, loopback) == []
    # status() of every repository is not stopped by it: that checkout is skipped, and a NOTICE says why
    sql(db, "set client_min_messages = notice")
    notices = Notices(db)
    assert not any(r[0] == repo for r in sql(db, "select repository from splitgraph.status()"))
    assert any(repo in m and "t_far" in m for m in notices.messages), notices.messages
    sql(db, "set client_min_messages = warning")
    # once the foreign partition is gone, the table commits as it is
    sql(db, f'alter table "{repo}".t detach partition "{repo}".t_far')
    image, recorded, given_back = commit_is_exact(db, repo, ["t"])
    assert given_back == recorded == {"t": ["(own,visible)"]}


def test_a_foreign_inheritance_child_never_lands_in_its_parent(db, loopback):
    repo = "grd/foreign-child"
    sql(db, "select splitgraph.init(%s)", repo)
    sql(db, f'create table "{repo}".t (name text, secret text)')
    sql(db, f"""insert into "{repo}".t values ('own', 'visible')""")
    sql(db, "select splitgraph.commit(%s)", repo)
    sql(db, f"""create foreign table public.far_child (name text, secret text) inherits ("{repo}".t)
                server guards_loop options (schema_name 'public', table_name 'secrets')""")
    try:
        assert value(db, f'select count(*) from "{repo}".t') == 2
        sql(db, f"""update "{repo}".t set secret = secret || '!' where name = 'own'""")
        assert changed(db, repo) == ["t"]
        image = value(db, "select splitgraph.commit(%s, snapshot => true)", repo)
        assert value(db, "select splitgraph.table_info(%s, %s, 't')", repo, image)["rows"] == 1
        assert stored_anywhere(db, loopback) == []
        sql(db, "select splitgraph.reset(%s)", repo)
        assert value(db, f'select count(*) from only "{repo}".t') == 1
    finally:
        sql(db, "drop foreign table public.far_child")


def test_no_other_role_may_use_the_tracking_trigger_functions(cluster, dbname, db):
    ensure_roles(cluster, "grd_mallory")
    sql(db, "grant create on schema public to grd_mallory")
    with connect(cluster, dbname, user="grd_mallory") as m:
        sql(m, "create table if not exists public.mallory_t (id int primary key)")
        fails(m, """create trigger sg_track_x after insert on public.mallory_t for each statement
                    execute function splitgraph_audit.on_change()""", sqlstate="42501")
    executable = sql(db, """select p.proname::text from pg_proc p
                            where p.pronamespace = 'splitgraph_audit'::regnamespace
                              and has_function_privilege('grd_mallory', p.oid, 'EXECUTE')""")
    assert executable == []


def make_repo(db, repo):
    sql(db, "select splitgraph.init(%s)", repo)
    sql(db, f'create table "{repo}".t (id int primary key, v text)')
    sql(db, f"""insert into "{repo}".t values (1, 'a'), (2, 'b')""")
    sql(db, f'create table "{repo}".k (v text)')
    sql(db, f"""insert into "{repo}".k values ('x'), ('x')""")
    return value(db, "select splitgraph.commit(%s)", repo)


@pytest.mark.parametrize("order", ["end only", "begin, write, end", "begin, write"])
def test_reset_helpers_out_of_order_never_hide_a_change(db, order):
    """reset_begin and reset_end are executable by every role (reset runs as its caller and needs them): called
    directly, in any order, with writes between, they never make a changed table look like HEAD."""
    repo = "grd/helpers-" + order.replace(",", "").replace(" ", "-")
    make_repo(db, repo)
    with db.transaction():
        if order != "end only":
            sql(db, "select splitgraph_internal.reset_begin(%s, null)", repo)
        sql(db, f"""update "{repo}".t set v = 'changed' where id = 1""")
        sql(db, f"""insert into "{repo}".k values ('y')""")
        if order != "begin, write":
            sql(db, "select splitgraph_internal.reset_end(%s, null)", repo)
    assert changed(db, repo) == ["k", "t"]
    image, recorded, given_back = commit_is_exact(db, repo, ["t", "k"])
    assert given_back == recorded
    assert "(1,changed)" in recorded["t"] and "(y)" in recorded["k"]


def test_reset_after_an_untrusted_log_trusts_the_table_again(db):
    repo = "grd/retrust"
    make_repo(db, repo)
    sql(db, f'drop trigger sg_track_update on "{repo}".t')
    sql(db, f"""update "{repo}".t set v = 'untracked' where id = 2""")
    assert changed(db, repo) == ["t"]
    sql(db, "select splitgraph.reset(%s)", repo)
    assert changed(db, repo) == []
    assert value(db, """select state from splitgraph_audit.tracked where schema_name = %s and table_name = 't'""",
                 repo) == "tracking", "the table equals HEAD again: its fresh log is trusted"
    sql(db, f"""update "{repo}".t set v = 'tracked' where id = 2""")
    assert [r[0] for r in sql(db, "select change_type from splitgraph.get_pending_changes(%s, 't')", repo)] \
        == ["update"]


def test_a_table_too_wide_to_log_is_tracked_by_comparison(db):
    repo = "grd/wide"
    sql(db, "select splitgraph.init(%s)", repo)
    cols = ", ".join(f"c{i} int" for i in range(1, 900))
    sql(db, f'create table "{repo}".w (id int primary key, {cols})')
    sql(db, f'insert into "{repo}".w (id, c1) values (1, 1), (2, 2)')
    sql(db, "select splitgraph.commit(%s)", repo)
    assert value(db, "select state from splitgraph_audit.tracked where schema_name = %s", repo) == "compared"
    assert changed(db, repo) == []
    sql(db, f'update "{repo}".w set c5 = 5 where id = 1')
    assert sql(db, "select table_name, added, removed, updated from splitgraph.status(%s)", repo) \
        == [("w", 0, 0, 1)]
    assert value(db, "select count(*) from splitgraph.diff(%s, 'w', 'HEAD')", repo) == 2
    err = fails(db, "select * from splitgraph.get_pending_changes(%s, 'w')", repo, sqlstate="54000")
    assert err.diag.message_hint
    sql(db, "select splitgraph.reset(%s)", repo)
    assert changed(db, repo) == []
    sql(db, f'update "{repo}".w set c7 = 7 where id = 2')
    image, recorded, given_back = commit_is_exact(db, repo, ["w"])
    assert given_back == recorded


def test_status_of_all_skips_a_locked_repository_and_says_so(cluster, dbname, db):
    make_repo(db, "grd/locked")
    make_repo(db, "grd/free")
    sql(db, """update "grd/free".t set v = 'pending' where id = 1""")
    locker = driver.connect(cluster.dsn(dbname))
    try:
        sql(locker, 'lock table "grd/locked".t in access exclusive mode')
        c = connect(cluster, dbname, timeout="5s")
        sql(c, "set client_min_messages = notice")
        notices = Notices(c)
        rows = sql(c, "select repository, table_name from splitgraph.status() where repository like 'grd/%'")
        assert ("grd/free", "t") in rows
        assert not any(r[0] == "grd/locked" for r in rows)
        assert any("grd/locked" in m and "locked" in m for m in notices.messages), notices.messages
        c.close()
    finally:
        locker.close()


def test_columns_with_type_modifiers_are_logged_whole(db):
    repo = "grd/typmods"
    sql(db, "select splitgraph.init(%s)", repo)
    sql(db, "drop domain if exists public.code4 cascade")
    sql(db, "create domain public.code4 as varchar(4)")
    sql(db, f'''create table "{repo}".m (id int primary key, flag character(5), tag varchar(3),
                                         amount numeric(6,2), code public.code4)''')
    sql(db, f"""insert into "{repo}".m values (1, 'ab', 'xyz', 1234.5, 'abcd'), (2, 'abcde', 'q', 0.01, 'z')""")
    sql(db, "select splitgraph.commit(%s)", repo)
    assert value(db, "select state from splitgraph_audit.tracked where schema_name = %s", repo) == "tracking"
    sql(db, f"""update "{repo}".m set flag = 'vwxyz', tag = 'abc', amount = 9999.99, code = 'wxyz' where id = 1""")
    sql(db, f"""insert into "{repo}".m values (3, 'c', 'de', -1.5, 'qq')""")
    sql(db, f'delete from "{repo}".m where id = 2')
    assert sql(db, "select table_name, added, removed, updated from splitgraph.status(%s)", repo) \
        == [("m", 1, 1, 1)]
    assert sorted(r[0] for r in sql(db, "select change_type from splitgraph.get_pending_changes(%s, 'm')", repo)) \
        == ["delete", "insert", "update"]
    image, recorded, given_back = commit_is_exact(db, repo, ["m"])
    assert given_back == recorded
    assert recorded["m"] == ["(1,vwxyz,abc,9999.99,wxyz)", "(3,\"c    \",de,-1.50,qq)"]
