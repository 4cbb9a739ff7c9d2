"""Issue 8, denial of service by a plain role: no role stalls or breaks the engine's work for others.

Calls that hang today are bounded by a statement_timeout on the session that waits, so the suite never hangs:
a call cancelled by it (57014) is the attack working.

D1 the advisory-lock keys are fixed and public: a role holding one in an idle session blocks every commit, import
   and load_object (objects key), or one repository's commit, checkout and tag (repository key), or the commit
   that stores one object (object key).
D2 object tables are readable by PUBLIC, so a role's view over one pins it and cleanup() fails for good; a
   leftover sg_query_* sandbox does the same.
D3 an open transaction that read an unused object stalls cleanup(); status() waits on any role's table lock.
D4 chunk_size => 1 makes a table per row; a bloom filter's size is unbounded.
"""
import secrets

import pytest
from psycopg2.extras import Json as Jsonb

from conftest import sql, value
from support import driver  # noqa: E402
from support.security import attempt, object_dump, object_id_of

OBJECTS_KEY = 1936287602
REPOSITORY_KEY = 1936287603


def notices_of(conn):
    """A list that collects the NOTICE messages the connection receives from now on."""
    messages = []
    conn.add_notice_handler(lambda diag: messages.append(diag.message_primary or ""))
    return messages


def object_ids(conn, repo, image, table):
    return value(conn, "select splitgraph.table_info(%s, %s, %s)", repo, image, table)["objects"]


def stored(conn, oid):
    return value(conn, "select to_regclass(format('splitgraph_meta.%%I', %s::text)) is not null", oid)


def unused_objects(conn, stem, tables=("a", "b")):
    """Objects that no image uses any more: one per table, made by an administrator's repository then rm."""
    repo = f"{stem}_{secrets.token_hex(3)}"
    sql(conn, "select splitgraph.init(%s)", repo)
    oids = []
    for table in tables:
        sql(conn, f'create table "{repo}"."{table}" (id int primary key, v text)')
        sql(conn, f'insert into "{repo}"."{table}" values (1, %s)', secrets.token_hex(8))
    image = value(conn, "select splitgraph.commit(%s)", repo)
    for table in tables:
        oids += object_ids(conn, repo, image, table)
    sql(conn, "select splitgraph.rm(%s)", repo)
    return oids


# ---------------------------------------------------------------------------------------------------------------
# D1: advisory locks
# ---------------------------------------------------------------------------------------------------------------

D1_CASES = [("objects", "commit"), ("objects", "import"), ("objects", "load_object"), ("repository", "commit"),
            ("repository", "checkout"), ("repository", "tag"), ("object", "commit")]


@pytest.mark.parametrize("key,action", D1_CASES, ids=[f"{k}-key-{a}" for k, a in D1_CASES])
def test_d1_advisory_locks_of_other_roles_block_nothing(conn, roles, key, action):
    """D1: bob takes the lock key the extension uses (objects: (1936287602, 0); repository: (1936287603,
    hashtext(repo)); object: hashtextextended(object id, 0), the id being predictable from the rows) in an idle
    session of his. alice's call, bounded by a 2 s statement_timeout, must succeed."""
    alice = roles.new("d1alice")
    bob = roles.new("d1bob")
    repo = f"{alice.name}/repo"
    sql(alice.conn, "select splitgraph.init(%s)", repo)
    sql(alice.conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(alice.conn, f"""insert into "{repo}".t values (1, 'a')""")
    sql(alice.conn, "select splitgraph.commit(%s)", repo)
    fresh = secrets.token_hex(8)
    if action == "commit":
        sql(alice.conn, f'create table "{repo}".u (id int primary key, v text)')
        sql(alice.conn, f'insert into "{repo}".u values (1, %s)', fresh)
    elif action == "import":
        sql(alice.conn, "select splitgraph.init(%s)", f"{alice.name}/dst")
    oid, dump = object_dump([f"({fresh})"], [("v", "text", False)])

    holder = bob.connect()
    if key == "objects":
        sql(holder, "select pg_advisory_lock(%s, 0)", OBJECTS_KEY)
    elif key == "repository":
        sql(holder, "select pg_advisory_lock(%s, hashtext(%s))", REPOSITORY_KEY, repo)
    else:
        predicted = object_id_of([f"(1,{fresh})"], [("id", "integer", True), ("v", "text", False)])
        sql(holder, "select pg_advisory_lock(hashtextextended(%s, 0))", predicted)

    calls = {
        "commit": ("select splitgraph.commit(%s)", repo),
        "import": ("select splitgraph.import_table(%s, 't', %s, 't_copy')", repo, f"{alice.name}/dst"),
        "load_object": ("select splitgraph.load_object(%s, %s)", oid, dump),
        "checkout": ("select splitgraph.checkout(%s, 'main')", repo),
        "tag": ("select splitgraph.tag(%s, 'HEAD', 'v1')", repo),
    }
    waiting = alice.connect(statement_timeout="2s")
    error = attempt(waiting, *calls[action])
    holder.close()
    assert error is None, \
        f"bob's advisory lock ({key} key) held up alice's {action}: {error.pgcode} {str(error).splitlines()[0]}"


# ---------------------------------------------------------------------------------------------------------------
# D2: depending on object tables
# ---------------------------------------------------------------------------------------------------------------

def test_d2_plain_roles_cannot_make_views_over_object_tables(conn, roles):
    """D2: object tables are not readable by PUBLIC, so bob cannot make a view that pins one (42501)."""
    alice = roles.new("d2alice")
    bob = roles.new("d2bob")
    repo = f"{alice.name}/repo"
    sql(alice.conn, "select splitgraph.init(%s)", repo)
    sql(alice.conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(alice.conn, f"""insert into "{repo}".t values (1, 'a')""")
    image = value(alice.conn, "select splitgraph.commit(%s)", repo)
    oid = object_ids(alice.conn, repo, image, "t")[0]
    error = attempt(bob.conn, f'create view "{bob.schema}".pin as select * from splitgraph_meta."{oid}"')
    assert error is not None and error.pgcode == "42501", f"bob made a view over object {oid}"


def test_d2_cleanup_skips_and_reports_an_object_something_depends_on(conn, roles):
    """D2: one unused object has a dependent view (made here by an administrator, as no one else should be able
    to); cleanup() does not fail: it skips that object, names it in a NOTICE, and deletes the other."""
    pinned, free = unused_objects(conn, "d2pin")
    sql(conn, f'create view public.sg_pin_{pinned[:12]} as select * from splitgraph_meta."{pinned}"')
    try:
        notices = notices_of(conn)
        error = attempt(conn, "select splitgraph.cleanup()")
        assert error is None, f"cleanup() failed because of a view over an unused object: {error}"
        assert stored(conn, pinned) and not stored(conn, free)
        assert any(pinned in n for n in notices), f"no NOTICE names the skipped object: {notices}"
    finally:
        sql(conn, f"drop view if exists public.sg_pin_{pinned[:12]}")


def test_d2_a_leftover_query_sandbox_cannot_stop_cleanup(conn, roles):
    """D2: bob calls splitgraph_internal.import_sandbox on an administrator's repository directly (a sandbox of
    views over its objects that nothing drops); once the repository is gone, cleanup() still succeeds, and every
    object it keeps is named in a NOTICE."""
    bob = roles.new("d2bob")
    repo = f"d2src_{secrets.token_hex(3)}"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f'insert into "{repo}".t values (1, %s)', secrets.token_hex(8))
    image = value(conn, "select splitgraph.commit(%s)", repo)
    oids = object_ids(conn, repo, image, "t")
    before = {r[0] for r in sql(conn, "select nspname::text from pg_namespace where nspname like 'sg_query_%%'")}
    attempt(bob.conn, "select splitgraph_internal.import_sandbox(%s, null)", repo)
    sql(conn, "select splitgraph.rm(%s)", repo)
    try:
        notices = notices_of(conn)
        error = attempt(conn, "select splitgraph.cleanup()")
        assert error is None, f"cleanup() failed because of a leftover sandbox: {error}"
        kept = [o for o in oids if stored(conn, o)]
        assert all(any(o in n for n in notices) for o in kept), f"kept {kept} without a NOTICE: {notices}"
    finally:
        for schema in sql(conn, "select nspname::text from pg_namespace where nspname like 'sg_query_%%'"):
            if schema[0] not in before:
                sql(conn, f'drop schema "{schema[0]}" cascade')


# ---------------------------------------------------------------------------------------------------------------
# D3: waiting on other sessions' locks
# ---------------------------------------------------------------------------------------------------------------

def test_d3_cleanup_skips_an_object_another_session_has_locked(conn, roles, cluster, dbname):
    """D3: a transaction left open after reading an unused object (an administrator's session, as no plain role
    should be able to read one) holds its lock; cleanup(), bounded by a 5 s statement_timeout, returns without
    waiting for it: that object is skipped and named in a NOTICE, the other deleted."""
    locked, free = unused_objects(conn, "d3lock")
    reader = driver.connect(cluster.dsn(dbname))  # not autocommit: the transaction stays open
    try:
        sql(reader, f'select count(*) from splitgraph_meta."{locked}"')
        admin = driver.connect(cluster.dsn(dbname), autocommit=True)
        with admin:
            sql(admin, "set statement_timeout = '5s'")
            notices = notices_of(admin)
            error = attempt(admin, "select splitgraph.cleanup()")
        assert error is None, f"cleanup() waited for another session's lock on an unused object: {error}"
        assert stored(conn, locked) and not stored(conn, free)
        assert any(locked in n for n in notices), f"no NOTICE names the skipped object: {notices}"
    finally:
        reader.close()


def test_d3_status_does_not_wait_for_another_roles_table_lock(conn, roles):
    """D3: alice holds an ACCESS EXCLUSIVE lock on her own checkout table in an open transaction; bob's status()
    (every repository), bounded by a 5 s statement_timeout, returns without waiting for it."""
    alice = roles.new("d3alice")
    bob = roles.new("d3bob")
    repo = f"{alice.name}/repo"
    sql(alice.conn, "select splitgraph.init(%s)", repo)
    sql(alice.conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(alice.conn, f"""insert into "{repo}".t values (1, 'a')""")
    sql(alice.conn, "select splitgraph.commit(%s)", repo)
    locker = driver.connect(alice.cluster.dsn(alice.dbname, user=alice.name))
    try:
        sql(locker, f'lock table "{repo}".t in access exclusive mode')
        error = attempt(bob.connect(statement_timeout="5s"), "select * from splitgraph.status()")
        assert error is None, f"bob's status() waited for alice's table lock: {error}"
    finally:
        locker.close()


# ---------------------------------------------------------------------------------------------------------------
# D4: unbounded work
# ---------------------------------------------------------------------------------------------------------------

def test_d4_commit_refuses_a_chunk_size_that_makes_thousands_of_objects(conn, roles):
    """D4: commit(chunk_size => 1) of 3,000 rows (3,000 tables today: 41 s) fails promptly (statement_timeout
    4 s) with 54000, its message naming chunk_size; nothing is committed."""
    alice = roles.new("d4alice")
    repo = f"{alice.name}/big"
    sql(alice.conn, "select splitgraph.init(%s)", repo)
    sql(alice.conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(alice.conn, f"insert into \"{repo}\".t select i, 'row ' || i from generate_series(1, 3000) i")
    c = alice.connect(statement_timeout="4s")
    error = attempt(c, "select splitgraph.commit(%s, chunk_size => 1)", repo)
    assert error is not None and error.pgcode == "54000", f"commit with chunk_size 1 of 3,000 rows: {error}"
    assert "chunk_size" in str(error), str(error)
    assert value(conn, "select count(*) from splitgraph_meta.images where repository = %s", repo) == 1


def test_d4_bloom_index_size_is_bounded(conn, roles):
    """Bloom `size` in index_options is bounded: a 100 MB filter for a one-row table (today minutes of CPU) is
    refused promptly (statement_timeout 4 s) with 22023."""
    alice = roles.new("d4bloom")
    repo = f"{alice.name}/bloom"
    sql(alice.conn, "select splitgraph.init(%s)", repo)
    sql(alice.conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(alice.conn, f"""insert into "{repo}".t values (1, 'a')""")
    c = alice.connect(statement_timeout="4s")
    error = attempt(c, "select splitgraph.commit(%s, index_options => %s)", repo,
                    Jsonb({"bloom": {"t": {"v": {"size": 100_000_000}}}}))
    assert error is not None and error.pgcode == "22023", f"a 100 MB bloom filter: {error}"
