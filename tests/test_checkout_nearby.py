"""Switching a clean checkout to a nearby image (the parent, a sibling branch, a tag one commit back) applies only
the difference between the two images: the table is not made again (its oid stays, rows the difference does not
touch keep their ctid), and it ends up exactly as a fresh checkout of the image, tracked and clean."""
import pytest

from conftest import fails, sql, value
from support import driver

REPO = "nearby/repo"
T = '"nearby/repo".t'
ROWS = 30000


def rows_of(conn, table=T):
    return sql(conn, f"select id, v, n from {table} order by id")


def ctids(conn, table=T):
    return dict(sql(conn, f"select id, ctid::text from {table}"))


def oid(conn, table=T):
    return value(conn, "select %s::regclass::oid::bigint", table)


def fresh(conn, image):
    """The rows of a fresh checkout of the image (the checkout is put back at `image` afterwards)."""
    sql(conn, "select splitgraph.uncheckout(%s)", REPO)
    sql(conn, "select splitgraph.checkout(%s, %s)", REPO, image)
    return rows_of(conn)


def pending(conn):
    return value(conn, "select count(*) from splitgraph.get_pending_changes(%s, 't')", REPO)


@pytest.fixture(scope="module")
def images(cluster, dbname):
    """base (a snapshot of 3 chunks), child (updates, inserts and deletes on base), sibling (other changes on
    base, on branch other), grandchild (on child)."""
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        sql(c, "select splitgraph.init(%s)", REPO)
        sql(c, f"create table {T} (id int primary key, v text, n float8)")
        sql(c, f"insert into {T} select i, md5(i::text), i / 7.0 from generate_series(1, {ROWS}) i")
        base = value(c, "select splitgraph.commit(%s, chunk_size => 10000)", REPO)
        sql(c, f"update {T} set v = 'child ' || id where id % 97 = 0")
        sql(c, f"delete from {T} where id % 89 = 0")
        sql(c, f"insert into {T} select i, 'new ' || i, 0 from generate_series({ROWS + 1}, {ROWS + 300}) i")
        child = value(c, "select splitgraph.commit(%s)", REPO)
        sql(c, f"update {T} set n = -n where id % 101 = 0")
        grandchild = value(c, "select splitgraph.commit(%s)", REPO)
        sql(c, "select splitgraph.tag(%s, %s, 'back')", REPO, child)
        sql(c, "select splitgraph.checkout(%s, %s)", REPO, base)
        sql(c, "select splitgraph.branch(%s, 'other', %s)", REPO, base)
        sql(c, "select splitgraph.checkout(%s, 'other')", REPO)
        sql(c, f"update {T} set v = 'sibling ' || id where id % 83 = 0")
        sql(c, f"delete from {T} where id % 79 = 0")
        sibling = value(c, "select splitgraph.commit(%s)", REPO)
        expected = {}
        for name, image in (("base", base), ("child", child), ("grandchild", grandchild), ("sibling", sibling)):
            expected[name] = fresh(c, image)
    return {"base": base, "child": child, "grandchild": grandchild, "sibling": sibling, "rows": expected}


@pytest.mark.parametrize("start, goal", [("grandchild", "child"), ("child", "base"), ("base", "child"),
                                         ("child", "sibling"), ("sibling", "grandchild"), ("grandchild", "back")])
def test_a_nearby_image_is_applied_in_place(conn, images, start, goal):
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", REPO, images[start])
    before_oid, before = oid(conn), ctids(conn)
    image = images["child"] if goal == "back" else images[goal]
    assert sql(conn, "select splitgraph.checkout(%s, %s)", REPO, "back" if goal == "back" else image)[0][0] == image
    assert oid(conn) == before_oid  # not made again
    after = ctids(conn)
    expected = images["rows"]["child" if goal == "back" else goal]
    assert rows_of(conn) == expected  # exactly a fresh checkout's rows
    kept = [k for k in after if k in before and before[k] == after[k]]
    assert len(kept) > 0.8 * len(expected)  # the rows the difference does not touch stay where they were
    assert pending(conn) == 0


def test_writes_after_a_nearby_checkout_are_tracked_and_committed(conn, images):
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", REPO, images["grandchild"])
    sql(conn, "select splitgraph.checkout(%s, %s)", REPO, images["child"])
    sql(conn, f"update {T} set v = 'later' where id in (5, 97, {ROWS + 5})")
    sql(conn, f"delete from {T} where id = 7")
    assert pending(conn) == 4
    image = value(conn, "select splitgraph.commit(%s)", REPO)
    expected = rows_of(conn)
    assert fresh(conn, image) == expected
    sql(conn, "select splitgraph.checkout(%s, %s)", REPO, images["child"])
    assert rows_of(conn) == images["rows"]["child"]


def test_a_table_whose_writes_run_code_is_made_again(conn, images):
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", REPO, images["child"])
    sql(conn, "create function public.nearby_bump() returns trigger language plpgsql as "
              "$$ begin new.v := new.v || '!'; return new; end $$")
    sql(conn, f"create trigger bump before insert on {T} for each row execute function public.nearby_bump()")
    before_oid = oid(conn)
    sql(conn, "select splitgraph.checkout(%s, %s)", REPO, images["base"])
    assert oid(conn) != before_oid
    assert rows_of(conn) == images["rows"]["base"]


def test_a_checkout_with_pending_changes_forced_is_made_again(conn, images):
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", REPO, images["child"])
    sql(conn, f"update {T} set v = 'pending' where id = 1")
    before_oid = oid(conn)
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", REPO, images["base"])
    assert oid(conn) != before_oid
    assert rows_of(conn) == images["rows"]["base"]
    assert pending(conn) == 0


def test_checkout_patched_is_refused_for_tables_no_checkout_patched(conn, images):
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", REPO, images["child"])
    sql(conn, f"update {T} set v = 'sneaky' where id = 2")
    fails(conn, "select splitgraph_internal.checkout_patched(%s, array['t'])", REPO, sqlstate="55000")
    assert pending(conn) == 1
    sql(conn, "select splitgraph.reset(%s)", REPO)


def test_helpers_called_out_of_order_never_hide_a_write(conn, images):
    """checkout_prepare plans a patch and moves HEAD; the caller writes instead of applying the patch and never
    calls checkout_patched: the table is then compared with HEAD, so nothing it holds is taken for HEAD's."""
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", REPO, images["child"])
    with conn.transaction():
        plan = value(conn, "select splitgraph_internal.checkout_prepare(%s, %s, false, false)", REPO,
                     images["base"])
        assert '"patch": [{' in plan
        sql(conn, f"update {T} set v = 'sneaky' where id = 3")
    base, child = (dict((r[0], r) for r in images["rows"][n]) for n in ("base", "child"))
    differing = sum(1 for k in set(base) | set(child) if base.get(k) != child.get(k))
    assert pending(conn) == differing + 1
    image = value(conn, "select splitgraph.commit(%s)", REPO)
    expected = rows_of(conn)
    assert fresh(conn, image) == expected


def test_a_role_that_is_not_a_superuser_switches_its_checkout_in_place(roles):
    owner = roles.new("nearby")
    repo = f"{owner.name}/r"
    table = f'"{repo}".t'
    c = owner.conn
    sql(c, "select splitgraph.init(%s)", repo)
    sql(c, f"create table {table} (id int primary key, v text)")
    sql(c, f"insert into {table} select i, i::text from generate_series(1, 5000) i")
    first = value(c, "select splitgraph.commit(%s)", repo)
    sql(c, f"update {table} set v = 'x' where id % 10 = 0")
    second = value(c, "select splitgraph.commit(%s)", repo)
    before = value(c, "select %s::regclass::oid::bigint", table)
    sql(c, "select splitgraph.checkout(%s, %s)", repo, first)
    assert value(c, "select %s::regclass::oid::bigint", table) == before
    assert value(c, f"select count(*) from {table} where v = 'x'") == 0
    assert value(c, f"select count(*) from {table}") == 5000
    sql(c, f"update {table} set v = 'y' where id = 1")
    assert value(c, "select count(*) from splitgraph.get_pending_changes(%s, 't')", repo) == 1
    sql(c, "select splitgraph.checkout(%s, %s, force => true)", repo, second)
    assert value(c, f"select count(*) from {table} where v = 'x'") == 500
    assert value(c, f"select count(*) from {table} where v = 'y'") == 0


def test_a_table_owned_by_another_role_is_made_again(conn, roles):
    """An administrator's checkout makes tables the extension's: a table the repository's role owns is not kept."""
    owner = roles.new("nearby")
    repo = f"{owner.name}/o"
    table = f'"{repo}".t'
    c = owner.conn
    sql(c, "select splitgraph.init(%s)", repo)
    sql(c, f"create table {table} (id int primary key, v text)")
    sql(c, f"insert into {table} select i, i::text from generate_series(1, 1000) i")
    first = value(c, "select splitgraph.commit(%s)", repo)
    sql(c, f"update {table} set v = 'x' where id % 10 = 0")
    value(c, "select splitgraph.commit(%s)", repo)
    before = value(conn, "select %s::regclass::oid::bigint", table)
    sql(conn, "select splitgraph.checkout(%s, %s)", repo, first)
    assert value(conn, "select %s::regclass::oid::bigint", table) != before
    assert value(conn, f"select count(*) from {table} where v = 'x'") == 0


def _switches_in_place(conn, repo, table, images, expected):
    """Switch the checkout of `repo` through `images` in order: each switch keeps the table (its oid), gives exactly
    `expected[image]` (rows of a fresh checkout), and leaves it clean and tracked."""
    for image in images:
        before = value(conn, "select %s::regclass::oid::bigint", table)
        sql(conn, "select splitgraph.checkout(%s, %s)", repo, image)
        assert value(conn, "select %s::regclass::oid::bigint", table) == before
        assert sql(conn, f"select * from {table} order by 1") == expected[image]
        assert value(conn, "select count(*) from splitgraph.get_pending_changes(%s, 't')", repo) == 0
        schema = repo
        assert value(conn, "select state from splitgraph_audit.tracked where schema_name = %s and table_name = 't'",
                     schema) == "tracking"
        audit = value(conn, "select audit_table from splitgraph_audit.tracked where schema_name = %s "
                            "and table_name = 't'", schema)
        # nothing logged: only the sentinel and the bounds of the log
        assert sorted(r[0] for r in sql(conn, f"select sg_audit_kind from {audit}")) == [2, 4, 5]


def _fresh_rows(conn, repo, table, images):
    rows = {}
    for image in images:
        sql(conn, "select splitgraph.uncheckout(%s)", repo)
        sql(conn, "select splitgraph.checkout(%s, %s)", repo, image)
        rows[image] = sql(conn, f"select * from {table} order by 1")
    return rows


def test_a_table_with_another_unique_index_is_changed_in_place(conn):
    """Values of a unique column move from one key to another between the images: rows are replaced (deleted,
    then inserted), never updated one by one into a transient duplicate."""
    repo, table = "nearby/unique", '"nearby/unique".t'
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f"create table {table} (id int primary key, u int not null unique, v text)")
    sql(conn, f"insert into {table} select i, i, md5(i::text) from generate_series(1, 3000) i")
    base = value(conn, "select splitgraph.commit(%s, chunk_size => 1000)", repo)
    # swap the unique values of neighbouring keys, delete some rows, add others
    sql(conn, f"update {table} set u = -id where id between 11 and 40")
    sql(conn, f"update {table} set u = case when id % 2 = 0 then id - 1 else id + 1 end where id between 11 and 40")
    sql(conn, f"delete from {table} where id % 53 = 0")
    sql(conn, f"insert into {table} select i, i, 'new' from generate_series(3001, 3020) i")
    child = value(conn, "select splitgraph.commit(%s)", repo)
    expected = _fresh_rows(conn, repo, table, [base, child])
    _switches_in_place(conn, repo, table, [base, child, base], expected)
    sql(conn, "select splitgraph.rm(%s, force => true)", repo)


@pytest.mark.parametrize("columns, more", [
    # rows are updated where they are (or inserted); the generated column is computed again
    ("id int primary key, v int, twice int generated always as (v * 2) stored", True),
    # an identity GENERATED ALWAYS besides the key takes no value in an UPDATE: rows are replaced (no row is added:
    # that would move the identity's sequence, and the images would differ in their definition)
    ("id int primary key, v int, n int generated always as identity", False)])
def test_generated_and_identity_columns_are_changed_in_place(conn, columns, more):
    repo, table = "nearby/generated", '"nearby/generated".t'
    sql(conn, "select splitgraph.init(%s)", repo)
    try:
        sql(conn, f"create table {table} ({columns})")
        sql(conn, f"insert into {table} (id, v) select i, i from generate_series(1, 3000) i")
        base = value(conn, "select splitgraph.commit(%s, chunk_size => 1000)", repo)
        sql(conn, f"update {table} set v = -v where id % 97 = 0")
        sql(conn, f"delete from {table} where id % 89 = 0")
        if more:
            sql(conn, f"insert into {table} (id, v) select i, i from generate_series(3001, 3040) i")
        child = value(conn, "select splitgraph.commit(%s)", repo)
        sql(conn, "select splitgraph.branch(%s, 'other', %s)", repo, base)
        sql(conn, "select splitgraph.checkout(%s, 'other')", repo)
        sql(conn, f"update {table} set v = v + 1 where id % 83 = 0")
        sibling = value(conn, "select splitgraph.commit(%s)", repo)
        expected = _fresh_rows(conn, repo, table, [base, child, sibling])
        _switches_in_place(conn, repo, table, [child, base, sibling, child], expected)
    finally:
        sql(conn, "select splitgraph.rm(%s, force => true)", repo)


@pytest.mark.parametrize("columns, key", [
    # one ranged key column: each chunk is probed for an array of the keys within its range
    ("k text primary key, v int", "'key ' || lpad(i::text, 5, '0')"),
    # a composite key: each chunk is probed key by key
    ("a int, b text, v int, primary key (a, b)", "i / 10, (i % 10)::text"),
])
def test_keys_are_looked_up_in_shared_chunks_and_deltas(conn, columns, key):
    """The image's rows of the keys that differ are found in the shared objects: a snapshot's chunks, a large delta
    (many more rows than the keys: indexed by key) and a small one (joined with the keys)."""
    repo, table = "nearby/keys", '"nearby/keys".t'
    names = "k" if columns.startswith("k ") else "a, b"
    sql(conn, "select splitgraph.init(%s)", repo)
    try:
        sql(conn, f"create table {table} ({columns})")
        sql(conn, f"insert into {table} ({names}, v) select {key}, i from generate_series(1, 3000) i")
        sql(conn, "select splitgraph.commit(%s, chunk_size => 1000)", repo)
        sql(conn, f"update {table} set v = -v where v % 5 = 0")  # a large delta: 600 rows
        large = value(conn, "select splitgraph.commit(%s)", repo)
        sql(conn, f"update {table} set v = v + 100000 where v % 97 = 0")  # 30 rows (some in the large delta)
        sql(conn, f"delete from {table} where v % 89 = 0")
        small = value(conn, "select splitgraph.commit(%s)", repo)
        sql(conn, f"update {table} set v = 7 where v % 71 = 0")
        last = value(conn, "select splitgraph.commit(%s)", repo)
        expected = _fresh_rows(conn, repo, table, [large, small, last])
        # last -> small: the last delta's keys are looked up in small (joined), large (by its key index: it holds
        # 1200 rows) and the chunks; small -> large: small's keys in large and the chunks; back: in the deltas
        _switches_in_place(conn, repo, table, [last, small, large, small, last, large, last], expected)
    finally:
        sql(conn, "select splitgraph.rm(%s, force => true)", repo)
