"""A snapshot commit hashes in a second session of the engine, logged in as the caller, while it copies the rows
(plpython/splitgraph_pl/second_session.py): the objects are the same as without it, the second session runs as
the caller and nobody else, and the commit does the work itself whenever it cannot have one."""
import threading
import time

import pytest

from conftest import fails, objects_of, sql, value
from support import driver

APPLICATION = "splitgraph commit: second session"
FILL = """insert into {t} select i, md5(i::text), i / 7.0, timestamptz '2020-01-01' + i * interval '1 second'
          from generate_series(1, {rows}) i"""


class Watcher:
    """Who the second sessions seen in pg_stat_activity ran as, while a block runs."""

    def __init__(self, dsn):
        self.dsn, self.seen, self.done = dsn, set(), threading.Event()

    def __enter__(self):
        self.thread = threading.Thread(target=self._watch)
        self.thread.start()
        return self

    def _watch(self):
        with driver.connect(self.dsn, autocommit=True) as c:
            while not self.done.is_set():
                for row in sql(c, "select usename::text, leader_pid is null "
                                  "from pg_catalog.pg_stat_activity where application_name = %s", APPLICATION):
                    self.seen.add(tuple(row))
                time.sleep(0.002)

    def __exit__(self, *exc):
        self.done.set()
        self.thread.join()

    @property
    def users(self):
        return {user for user, _ in self.seen}


def make_table(conn, repo, rows=60000):
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, md5 text, value numeric, at timestamptz)')
    sql(conn, FILL.format(t=f'"{repo}".t', rows=rows))


def commit_watched(cluster, dbname, conn, repo, **settings):
    for name, setting in settings.items():
        sql(conn, "select pg_catalog.set_config(%s, %s, false)", name, setting)
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    with Watcher(cluster.dsn(dbname)) as watcher:
        image = value(conn, "select splitgraph.commit(%s, chunk_size => 5000)", repo)
    watcher.stopped = [n for n in notices if "second session stopped" in n]
    for name in settings:
        sql(conn, f"reset {name}")
    return objects_of(conn, repo, image, "t"), watcher


@pytest.fixture(scope="module")
def reference(cluster, dbname):
    """The objects of the test table committed in one session (the second session turned off)."""
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        make_table(c, "ref/one")
        objects, watcher = commit_watched(cluster, dbname, c, "ref/one", **{"splitgraph.second_session": "off"})
    assert watcher.seen == set()
    assert len(objects) == 12
    return objects


def test_same_objects_as_in_one_session(cluster, dbname, conn, reference):
    make_table(conn, "ref/two")
    objects, watcher = commit_watched(cluster, dbname, conn, "ref/two")
    assert watcher.users == {"postgres"} and watcher.stopped == []
    assert objects == reference
    # and the objects hold the rows
    assert value(conn, "select count(*) from splitgraph_meta.objects where object_id = any(%s)", objects) == 12


def test_second_session_runs_as_the_caller(cluster, dbname, roles, reference):
    carol = roles.new("carol")
    repo = f"{carol.name}/repo"
    make_table(carol.conn, repo)
    objects, watcher = commit_watched(cluster, dbname, carol.conn, repo)
    assert watcher.users == {carol.name} and watcher.stopped == []
    assert objects == reference


def test_caller_who_cannot_log_in_again_commits_in_one_session(cluster, dbname, conn, roles, reference):
    dave = roles.new("dave")
    repo = f"{dave.name}/repo"
    make_table(dave.conn, repo)
    sql(conn, f'alter role "{dave.name}" connection limit 1')
    try:
        objects, watcher = commit_watched(cluster, dbname, dave.conn, repo)
    finally:
        sql(conn, f'alter role "{dave.name}" connection limit -1')
    assert watcher.seen == set()
    assert watcher.stopped == ["splitgraph: the second session stopped (it could not connect as the caller without a "
                               "password); this session hashes the rows itself"]
    assert objects == reference


def test_a_transaction_that_wrote_already_commits_in_one_session(cluster, dbname, conn, reference):
    make_table(conn, "ref/three", rows=59999)
    with Watcher(cluster.dsn(dbname)) as watcher:
        with conn.transaction():
            sql(conn, "insert into \"ref/three\".t values (60000, md5('60000'), 60000 / 7.0, "
                      "timestamptz '2020-01-01' + 60000 * interval '1 second')")
            image = value(conn, "select splitgraph.commit('ref/three', chunk_size => 5000)")
    assert watcher.seen == set()
    assert objects_of(conn, "ref/three", image, "t") == reference


def test_nobody_else_may_call_the_connection_functions(roles):
    eve = roles.new("eve")
    for call in ("splitgraph_internal.second_connect('x', 'host=127.0.0.1')",
                 "splitgraph_internal.second_exec('x', 'select 1')",
                 "splitgraph_internal.second_send('x', 'select 1')",
                 "splitgraph_internal.second_busy('x')",
                 "splitgraph_internal.second_cancel('x')",
                 "splitgraph_internal.second_disconnect('x')"):
        fails(eve.conn, f"select {call}", sqlstate="42501")
    fails(eve.conn, "select * from splitgraph_internal.second_result('x') as r (x text)", sqlstate="42501")


def test_a_table_head_has_commits_in_one_session(cluster, dbname, conn, reference):
    """With a version of the table's schema in HEAD, chunks are likely stored already: the rows are hashed first
    and only the chunks HEAD lacks are copied (no second session, which would copy them all)."""
    make_table(conn, "ref/four")
    sql(conn, "select splitgraph.commit('ref/four', chunk_size => 5000)")
    sql(conn, "update \"ref/four\".t set md5 = 'changed' where id = 1")
    with Watcher(cluster.dsn(dbname)) as watcher:
        image = value(conn, "select splitgraph.commit('ref/four', snapshot => true, chunk_size => 5000)")
    assert watcher.seen == set()
    objects = objects_of(conn, "ref/four", image, "t")
    assert objects[1:] == reference[1:] and objects[0] != reference[0]
