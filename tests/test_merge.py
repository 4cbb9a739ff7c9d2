"""Issue 16, branches that merge: merge(repository, source, strategy) and conflicts(repository, source).

Each test builds a small history: a base commit, a branch `dev` from it, commits on `main` (ours) and on `dev`
(theirs), then merges dev into main and looks at what every client sees: the checkout's rows, HEAD and the
branch, log, show, diff, status, the next commit, and the conflicts."""
import itertools
import json

import pytest

from conftest import fails, sql, value
from support import driver

_names = itertools.count(1)


def order(row):
    """Sorts rows column by column, nulls last."""
    return [(v is None, v if v is not None else 0) for v in row]


class Repo:
    """A repository with helpers to change branches: `on(branch, statements...)` checks the branch out, runs the
    statements (with {t} standing for the checkout schema) and commits."""

    def __init__(self, conn, tables):
        self.conn = conn
        self.name = f"mg/r{next(_names)}"
        self.s = f'"{self.name}"'
        sql(conn, "select splitgraph.init(%s)", self.name)
        for statement in tables:
            self.run(statement)
        self.base = self.commit("base")
        sql(conn, "select splitgraph.branch(%s, 'dev')", self.name)

    def run(self, statement, *args):
        return sql(self.conn, statement.replace("{s}", self.s), *args)

    def commit(self, comment=None, **options):
        extra = "".join(f", {k} => {v}" for k, v in options.items())
        return value(self.conn, f"select splitgraph.commit(%s, %s{extra})", self.name, comment)

    def checkout(self, ref):
        return value(self.conn, "select splitgraph.checkout(%s, %s)", self.name, ref)

    def on(self, branch, *statements, **options):
        self.checkout(branch)
        for statement in statements:
            self.run(statement)
        return self.commit(f"on {branch}", **options)

    def merge(self, source="dev", strategy=None):
        if strategy is None:
            return value(self.conn, "select splitgraph.merge(%s, %s)", self.name, source)
        return value(self.conn, "select splitgraph.merge(%s, %s, %s)", self.name, source, strategy)

    def conflicts(self, source="dev"):
        return sql(self.conn, "select table_name, pk, base, ours, theirs from splitgraph.conflicts(%s, %s)",
                   self.name, source)

    def rows(self, table="t"):
        return sorted(sql(self.conn, f"select * from {self.s}.{table}"), key=order)

    def head(self):
        return value(self.conn, "select image_hash from splitgraph.log(%s) limit 1", self.name)

    def branch_head(self, branch):
        return value(self.conn, "select image_hash from splitgraph.branches(%s) where branch = %s", self.name, branch)

    def images(self):
        return value(self.conn, "select count(*) from splitgraph.images(%s)", self.name)

    def status(self):
        return sql(self.conn, "select table_name, added, removed, updated from splitgraph.status(%s)", self.name)

    def tracked_states(self):
        return dict(sql(self.conn, "select table_name, state from splitgraph_audit.tracked where schema_name = %s",
                        self.name))

    def image_rows(self, image, table="t"):
        """The rows of a table of an image, as a fresh checkout gives them (pending changes are thrown away)."""
        sql(self.conn, "select splitgraph.checkout(%s, %s, force => true)", self.name, image)
        return self.rows(table)


KEYED = ["create table {s}.t (id int primary key, a text, b int)",
         "insert into {s}.t select i, 'a' || i, i from generate_series(1, 10) i"]


@pytest.fixture
def repo(conn):
    return Repo(conn, KEYED)


def assert_clean_and_trusted(repo):
    """Nothing pending, every log trusted, and the next commit stores nothing new: the checkout is the merge."""
    assert repo.status() == []
    assert set(repo.tracked_states().values()) <= {"tracking"}, repo.tracked_states()
    head = repo.head()
    before = {t: value(repo.conn, "select splitgraph.table_info(%s, %s, %s) -> 'objects'", repo.name, head, t)
              for t in json.loads(json.dumps(value(repo.conn, "select splitgraph.show(%s, %s) -> 'tables'",
                                                   repo.name, head)))}
    image = repo.commit("after the merge")
    after = {t: value(repo.conn, "select splitgraph.table_info(%s, %s, %s) -> 'objects'", repo.name, image, t)
             for t in before}
    assert after == before, "the commit after a merge stored new objects: the checkout was not the merge"


# ---------------------------------------------------------------------------------------------------------------
# Fast-forward, nothing to merge, the merge image
# ---------------------------------------------------------------------------------------------------------------

def test_fast_forward_moves_the_branch_to_the_source(repo):
    repo.on("dev", "update {s}.t set a = 'x' where id = 1")
    dev = repo.on("dev", "delete from {s}.t where id = 2", "insert into {s}.t values (20, 'y', 20)")
    expected = repo.rows()
    repo.checkout("main")
    images = repo.images()
    assert repo.merge() == dev
    assert repo.images() == images, "a fast-forward makes no image"
    assert repo.branch_head("main") == dev and repo.head() == dev
    assert repo.rows() == expected
    assert_clean_and_trusted(repo)


def test_merging_an_ancestor_or_itself_changes_nothing(repo):
    main = repo.on("main", "update {s}.t set a = 'x' where id = 1")
    images = repo.images()
    assert repo.merge("dev") == main, "dev's head is an ancestor of main's"
    assert repo.merge("main") == main
    assert repo.merge(repo.base[:10]) == main, "an image reference works as a source"
    assert repo.images() == images and repo.head() == main
    assert repo.conflicts("dev") == []


def test_merge_image_records_both_parents_and_log_shows_both_branches(repo):
    ours = repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    theirs = repo.on("dev", "update {s}.t set a = 'theirs' where id = 2")
    repo.checkout("main")
    merged = repo.merge()
    assert merged not in (ours, theirs)
    assert repo.head() == merged and repo.branch_head("main") == merged and repo.branch_head("dev") == theirs
    shown = value(repo.conn, "select splitgraph.show(%s, %s)", repo.name, merged)
    assert shown["parent_id"] == ours and shown["parents"] == [ours, theirs]
    assert shown["comment"] == 'merge dev into branch "main"'
    log = [r[0] for r in sql(repo.conn, "select image_hash from splitgraph.log(%s)", repo.name)]
    assert log[0] == merged and {ours, theirs, repo.base} <= set(log)
    assert log.index(repo.base) > max(log.index(ours), log.index(theirs)), "log lists children before parents"
    assert len(log) == len(set(log)) == 5, "every ancestor once (the root too)"
    assert value(repo.conn, "select splitgraph.show(%s, %s) -> 'parents'", repo.name, ours) == [repo.base]


def test_a_later_merge_of_the_same_branches_finds_the_right_base(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    repo.on("dev", "update {s}.t set a = 'theirs' where id = 1")
    repo.checkout("main")
    repo.merge(strategy="theirs")
    # dev changes the row again; main leaves it alone: with the right base (dev's last head) it merges cleanly
    repo.on("dev", "update {s}.t set a = 'again' where id = 1", "update {s}.t set b = 0 where id = 3")
    repo.on("main", "update {s}.t set b = 7 where id = 4")
    repo.checkout("main")
    assert repo.conflicts() == []
    repo.merge()
    assert ("again" in [r[1] for r in repo.rows() if r[0] == 1]) and (3, "a3", 0) in repo.rows()
    assert (4, "a4", 7) in repo.rows()
    # and merging main back into dev fast-forwards dev
    main = repo.head()
    repo.checkout("dev")
    assert repo.merge("main") == main


def test_diff_against_either_parent(repo):
    ours = repo.on("main", "update {s}.t set a = 'ours' where id = 1", "insert into {s}.t values (11, 'o', 11)")
    theirs = repo.on("dev", "update {s}.t set b = 100 where id = 1", "delete from {s}.t where id = 2")
    repo.checkout("main")
    merged = repo.merge()

    def diff(a, b):
        return sorted((r[0], json.dumps(r[1], sort_keys=True))
                      for r in sql(repo.conn, "select action, row_data from splitgraph.diff(%s, 't', %s, %s)",
                                   repo.name, a, b))

    row = lambda i, a, b: json.dumps({"id": i, "a": a, "b": b}, sort_keys=True)  # noqa: E731
    assert diff(ours, merged) == sorted([("-", row(1, "ours", 1)), ("+", row(1, "ours", 100)),
                                         ("-", row(2, "a2", 2))])
    assert diff(theirs, merged) == sorted([("-", row(1, "a1", 100)), ("+", row(1, "ours", 100)),
                                           ("+", row(11, "o", 11))])
    summary = sql(repo.conn, "select table_name, added, removed, updated from splitgraph.diff_summary(%s, %s, %s)",
                  repo.name, theirs, merged)
    assert summary == [("t", 1, 0, 1)]


def test_blame_verify_and_mount_image_read_a_merge_image(repo):
    """blame follows first parents (a row the merge brought in from the source is blamed on the merge image, a
    row of the branch's own on its commit), verify finds the merge's versions whole, and a merge image mounts."""
    ours = repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    repo.on("dev", "update {s}.t set a = 'theirs' where id = 2")
    repo.checkout("main")
    merged = repo.merge()
    blamed = {r[0]["id"]: r[1] for r in sql(repo.conn, "select pk, image_hash from splitgraph.blame(%s, 't', %s)",
                                             repo.name, merged)}
    assert blamed[1] == ours and blamed[2] == merged and blamed[3] == repo.base
    assert sql(repo.conn, "select object_id, detail from splitgraph.verify(%s) where not ok", repo.name) == []
    schema = value(repo.conn, "select splitgraph.mount_image(%s, %s)", repo.name, merged)
    assert sorted(sql(repo.conn, f'select id, a from "{schema}".t where id <= 2')) == [(1, "ours"), (2, "theirs")]
    sql(repo.conn, "select splitgraph.unmount(%s)", schema)


def test_merge_into_a_detached_head_moves_no_branch(repo):
    repo.on("dev", "update {s}.t set a = 'theirs' where id = 2")
    ours = repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    repo.checkout(ours)  # detached
    merged = repo.merge()
    assert repo.head() == merged and repo.branch_head("main") == ours
    assert value(repo.conn, "select branch from splitgraph.repositories() where repository = %s", repo.name) is None


# ---------------------------------------------------------------------------------------------------------------
# Rows: the three-way rules
# ---------------------------------------------------------------------------------------------------------------

def test_rows_changed_on_one_side_take_that_change(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1", "delete from {s}.t where id = 2",
            "insert into {s}.t values (11, 'new ours', 11)")
    repo.on("dev", "update {s}.t set a = 'theirs' where id = 3", "delete from {s}.t where id = 4",
            "insert into {s}.t values (12, 'new theirs', 12)")
    repo.checkout("main")
    repo.merge()
    expected = [(i, "a" + str(i), i) for i in range(1, 11) if i not in (1, 2, 3, 4)]
    expected += [(1, "ours", 1), (3, "theirs", 3), (11, "new ours", 11), (12, "new theirs", 12)]
    assert repo.rows() == sorted(expected, key=order)
    assert_clean_and_trusted(repo)


def test_rows_inserted_alike_on_both_sides_are_one_row(repo):
    repo.on("main", "insert into {s}.t values (11, 'same', 1)", "update {s}.t set a = 'same' where id = 5")
    repo.on("dev", "insert into {s}.t values (11, 'same', 1)", "update {s}.t set a = 'same' where id = 5")
    repo.checkout("main")
    assert repo.conflicts() == []
    repo.merge()
    assert [r for r in repo.rows() if r[0] in (5, 11)] == [(5, "same", 5), (11, "same", 1)]
    assert len(repo.rows()) == 11
    assert_clean_and_trusted(repo)


def test_a_row_deleted_on_one_side_and_unchanged_on_the_other_is_deleted(repo):
    repo.on("main", "delete from {s}.t where id = 1")
    repo.on("dev", "delete from {s}.t where id = 2", "update {s}.t set b = 0 where id = 3")
    repo.checkout("main")
    repo.merge()
    assert sorted(r[0] for r in repo.rows()) == [3, 4, 5, 6, 7, 8, 9, 10]
    assert (3, "a3", 0) in repo.rows()
    assert_clean_and_trusted(repo)


def test_the_same_row_changed_in_different_columns_merges_cell_by_cell(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    repo.on("dev", "update {s}.t set b = 100 where id = 1")
    repo.checkout("main")
    assert repo.conflicts() == []
    repo.merge()
    assert (1, "ours", 100) in repo.rows()
    assert_clean_and_trusted(repo)


def test_the_same_cell_changed_to_the_same_value_is_no_conflict(repo):
    repo.on("main", "update {s}.t set a = 'x', b = 1000 where id = 1")
    repo.on("dev", "update {s}.t set a = 'x' where id = 1")
    repo.checkout("main")
    repo.merge()
    assert (1, "x", 1000) in repo.rows()


# ---------------------------------------------------------------------------------------------------------------
# Conflicts
# ---------------------------------------------------------------------------------------------------------------

def conflicting(repo):
    """main and dev disagree on every kind of row conflict."""
    repo.on("main", "update {s}.t set a = 'ours', b = 0 where id = 1",   # cell a: ours vs theirs; b only ours
            "delete from {s}.t where id = 2",                          # deleted here, changed there
            "update {s}.t set a = 'ours' where id = 3",                # changed here, deleted there
            "insert into {s}.t values (11, 'ours', 11)",               # inserted on both, differently
            "update {s}.t set a = 'clean' where id = 4")               # no conflict
    repo.on("dev", "update {s}.t set a = 'theirs', b = 1 where id = 1",
            "update {s}.t set b = 200 where id = 2",
            "delete from {s}.t where id = 3",
            "insert into {s}.t values (11, 'theirs', 11)",
            "update {s}.t set b = 400 where id = 4")
    repo.checkout("main")


def test_conflicts_lists_every_kind_without_merging(repo):
    conflicting(repo)
    head, images, rows = repo.head(), repo.images(), repo.rows()
    got = repo.conflicts()
    row = lambda i, a, b: {"id": i, "a": a, "b": b}  # noqa: E731
    assert got == [
        ("t", {"id": 1}, row(1, "a1", 1), row(1, "ours", 0), row(1, "theirs", 1)),
        ("t", {"id": 2}, row(2, "a2", 2), None, row(2, "a2", 200)),
        ("t", {"id": 3}, row(3, "a3", 3), row(3, "ours", 3), None),
        ("t", {"id": 11}, None, row(11, "ours", 11), row(11, "theirs", 11)),
    ]
    assert (repo.head(), repo.images(), repo.rows()) == (head, images, rows), "conflicts() changes nothing"


def test_a_conflict_aborts_the_merge_and_changes_nothing(repo):
    conflicting(repo)
    head, images, rows = repo.head(), repo.images(), repo.rows()
    error = fails(repo.conn, "select splitgraph.merge(%s, 'dev')", repo.name, sqlstate="55000")
    assert "4 conflict(s)" in str(error) and '"t"' in str(error)
    assert "splitgraph.conflicts" in error.diag.message_hint
    assert (repo.head(), repo.images(), repo.rows()) == (head, images, rows)
    assert repo.status() == [] and repo.branch_head("main") == head


@pytest.mark.parametrize("strategy", ["ours", "theirs"])
def test_a_strategy_resolves_every_conflict_with_that_side(repo, strategy):
    conflicting(repo)
    repo.merge(strategy=strategy)
    if strategy == "ours":
        expected = {1: (1, "ours", 0), 3: (3, "ours", 3), 11: (11, "ours", 11)}  # 2 stays deleted
    else:
        # id 1: b changed on ours only (theirs set it back to the base's 1), so it keeps ours' 0
        expected = {1: (1, "theirs", 0), 2: (2, "a2", 200), 11: (11, "theirs", 11)}  # 3 deleted
    expected[4] = (4, "clean", 400)  # the clean cell merge happens either way
    got = {r[0]: r for r in repo.rows() if r[0] in (1, 2, 3, 4, 11)}
    assert got == expected
    assert_clean_and_trusted(repo)


def test_a_strategy_takes_only_the_conflicting_cells(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    repo.on("dev", "update {s}.t set a = 'theirs', b = 100 where id = 1")
    repo.checkout("main")
    repo.merge(strategy="ours")
    assert (1, "ours", 100) in repo.rows()


def test_unknown_strategy_is_refused(repo):
    fails(repo.conn, "select splitgraph.merge(%s, 'dev', 'mine')", repo.name, sqlstate="22023")


# ---------------------------------------------------------------------------------------------------------------
# Tables: added, dropped, schemas
# ---------------------------------------------------------------------------------------------------------------

def test_tables_added_or_dropped_on_one_side_merge(conn):
    repo = Repo(conn, KEYED + ["create table {s}.gone (k int primary key)", "insert into {s}.gone values (1)"])
    repo.on("main", "create table {s}.mine (k int primary key, v text)", "insert into {s}.mine values (1, 'm')")
    repo.on("dev", "create table {s}.yours (k int primary key, v text)", "insert into {s}.yours values (2, 'y')",
            "drop table {s}.gone")
    repo.checkout("main")
    repo.merge()
    tables = sorted(value(conn, "select splitgraph.show(%s, 'HEAD') -> 'tables'", repo.name))
    assert tables == ["mine", "t", "yours"]
    assert repo.rows("yours") == [(2, "y")] and repo.rows("mine") == [(1, "m")]
    assert value(conn, "select to_regclass(%s)", f'{repo.s}.gone') is None
    assert_clean_and_trusted(repo)


def test_a_table_added_on_both_sides_merges_its_rows(conn):
    repo = Repo(conn, KEYED)
    repo.on("main", "create table {s}.n (k int primary key, v text)", "insert into {s}.n values (1, 'a'), (2, 'b')")
    repo.on("dev", "create table {s}.n (k int primary key, v text)", "insert into {s}.n values (1, 'a'), (3, 'c')")
    repo.checkout("main")
    repo.merge()
    assert repo.rows("n") == [(1, "a"), (2, "b"), (3, "c")]
    repo.on("dev", "insert into {s}.n values (2, 'other')")
    repo.checkout("main")
    assert repo.conflicts() == [("n", {"k": 2}, None, {"k": 2, "v": "b"}, {"k": 2, "v": "other"})]


def test_a_table_dropped_on_one_side_and_changed_on_the_other_conflicts(repo):
    repo.on("main", "drop table {s}.t")
    repo.on("dev", "update {s}.t set a = 'theirs' where id = 1")
    repo.checkout("main")
    columns = [["id", "integer", True], ["a", "text", False], ["b", "integer", False]]
    assert repo.conflicts() == [("t", None, columns, None, columns)]
    fails(repo.conn, "select splitgraph.merge(%s, 'dev')", repo.name, sqlstate="55000")
    repo.merge(strategy="theirs")
    assert (1, "theirs", 1) in repo.rows()
    assert_clean_and_trusted(repo)


def test_a_schema_change_on_one_side_only_is_applied_with_its_data(repo):
    repo.on("main", "create table {s}.other (k int primary key)")
    repo.on("dev", "alter table {s}.t add column c text default 'new'", "update {s}.t set c = 'changed' where id = 1")
    repo.checkout("main")
    repo.merge()
    assert (1, "a1", 1, "changed") in repo.rows() and (2, "a2", 2, "new") in repo.rows()
    assert value(repo.conn, "select column_default from information_schema.columns where table_schema = %s "
                            "and table_name = 't' and column_name = 'c'", repo.name) == "'new'::text"
    assert_clean_and_trusted(repo)


def test_a_schema_change_on_one_side_merges_with_row_changes_on_the_other(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1", "insert into {s}.t values (11, 'new', 11)",
            "delete from {s}.t where id = 3")
    repo.on("dev", "alter table {s}.t add column c text default 'filled'", "update {s}.t set c = 'theirs' where id = 2",
            "update {s}.t set b = 100 where id = 1")
    repo.checkout("main")
    assert repo.conflicts() == []
    repo.merge()
    rows = {r[0]: r for r in repo.rows()}
    assert rows[1] == (1, "ours", 100, "filled") and rows[2] == (2, "a2", 2, "theirs")
    assert rows[11] == (11, "new", 11, None), "a row inserted on the other side has nulls in the added column"
    assert 3 not in rows and rows[4] == (4, "a4", 4, "filled") and len(rows) == 10
    assert_clean_and_trusted(repo)


def test_ours_changing_the_schema_merges_theirs_rows_into_it(repo):
    repo.on("main", "alter table {s}.t drop column b", "alter table {s}.t add column c int default 0",
            "update {s}.t set c = 5 where id = 2")
    repo.on("dev", "update {s}.t set a = 'theirs' where id in (1, 2)", "update {s}.t set b = 100 where id = 3",
            "insert into {s}.t values (12, 'x', 12)")
    repo.checkout("main")
    repo.merge()
    rows = {r[0]: r for r in repo.rows()}
    assert rows[1] == (1, "theirs", 0) and rows[2] == (2, "theirs", 5) and rows[3] == (3, "a3", 0)
    assert rows[12] == (12, "x", None), "theirs' change to a column ours dropped goes with the column"
    assert_clean_and_trusted(repo)


def test_a_schema_change_meeting_a_cell_change_conflicts_on_the_cell(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    repo.on("dev", "alter table {s}.t add column c text", "update {s}.t set a = 'theirs', c = 'x' where id = 1")
    repo.checkout("main")
    got = repo.conflicts()
    assert got == [("t", {"id": 1}, {"id": 1, "a": "a1", "b": 1, "c": None}, {"id": 1, "a": "ours", "b": 1, "c": None},
                    {"id": 1, "a": "theirs", "b": 1, "c": "x"})]
    repo.merge(strategy="ours")
    assert (1, "ours", 1, "x") in repo.rows()


def test_schema_changes_that_disagree_conflict(repo):
    repo.on("main", "alter table {s}.t add column c text")
    repo.on("dev", "alter table {s}.t add column d int")
    repo.checkout("main")
    got = repo.conflicts()
    assert [(r[0], r[1]) for r in got] == [("t", None)]
    assert got[0][3][-1] == ["c", "text", False] and got[0][4][-1] == ["d", "integer", False]
    repo.merge(strategy="theirs")
    assert value(repo.conn, "select count(*) from information_schema.columns where table_schema = %s "
                            "and table_name = 't' and column_name = 'd'", repo.name) == 1


def test_a_column_changing_type_against_row_changes_conflicts(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    repo.on("dev", "alter table {s}.t alter column b type bigint")
    repo.checkout("main")
    assert [(r[0], r[1]) for r in repo.conflicts()] == [("t", None)]


def test_definitions_changed_on_one_side_are_applied(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    repo.on("dev", "create index t_b on {s}.t (b)", "update {s}.t set b = 100 where id = 2")
    repo.checkout("main")
    repo.merge()
    assert value(repo.conn, "select count(*) from pg_indexes where schemaname = %s and indexname = 't_b'",
                 repo.name) == 1
    assert (1, "ours", 1) in repo.rows() and (2, "a2", 100) in repo.rows()
    assert_clean_and_trusted(repo)


def test_serial_columns_advancing_on_both_sides_do_not_conflict(conn):
    repo = Repo(conn, ["create table {s}.s (id serial primary key, v text)",
                       "insert into {s}.s (v) values ('a'), ('b')"])
    repo.on("main", "insert into {s}.s (v) values ('ours')")
    repo.on("dev", "update {s}.s set v = 'theirs' where id = 1", "insert into {s}.s (id, v) values (10, 'x')",
            "select setval(pg_get_serial_sequence('{s}.s', 'id'), 10)")
    repo.checkout("main")
    assert repo.conflicts() == []
    repo.merge()
    assert repo.rows("s") == [(1, "theirs"), (2, "b"), (3, "ours"), (10, "x")]
    repo.run("insert into {s}.s (v) values ('next')")
    assert value(conn, f"select id from {repo.s}.s where v = 'next'") == 11, "the sequence moved past both sides"


# ---------------------------------------------------------------------------------------------------------------
# Tables without a primary key: whole rows, as multisets
# ---------------------------------------------------------------------------------------------------------------

KEYLESS = ["create table {s}.k (x int, y text)", "insert into {s}.k values (1, 'one'), (2, 'two'), (2, 'two')"]


def test_keyless_rows_merge_as_multisets(conn):
    repo = Repo(conn, KEYLESS)
    repo.on("main", "insert into {s}.k values (3, 'three')", "insert into {s}.k values (5, 'both')")
    repo.on("dev", "delete from {s}.k where x = 1", "insert into {s}.k values (5, 'both')")
    repo.checkout("main")
    assert repo.conflicts() == []
    repo.merge()
    assert repo.rows("k") == [(2, "two"), (2, "two"), (3, "three"), (5, "both")]
    assert_clean_and_trusted(repo)


def test_keyless_changes_of_opposite_signs_add_up_and_duplicates_are_kept(conn):
    repo = Repo(conn, KEYLESS)
    # ours removes both copies of (2, two); theirs adds a third: -2 + 1
    repo.on("main", "delete from {s}.k where x = 2", snapshot="true")
    repo.on("dev", "insert into {s}.k values (2, 'two')", "insert into {s}.k values (1, 'one')", snapshot="true")
    repo.checkout("main")
    repo.merge()
    assert repo.rows("k") == [(1, "one"), (1, "one"), (2, "two")]
    assert_clean_and_trusted(repo)


def test_keyless_disjoint_changes_reuse_the_sources_fragments(conn):
    repo = Repo(conn, KEYLESS)
    repo.on("main", "insert into {s}.k values (3, 'three')")
    theirs = repo.on("dev", "insert into {s}.k values (4, 'four')")
    repo.checkout("main")
    merged = repo.merge()
    objects = lambda image: value(conn, "select splitgraph.table_info(%s, %s, 'k') -> 'objects'",  # noqa: E731
                                  repo.name, image)
    assert objects(merged)[-1] == objects(theirs)[-1], "theirs' fragment is reused, nothing new is stored"
    assert (4, "four") in repo.rows("k") and (3, "three") in repo.rows("k")


# ---------------------------------------------------------------------------------------------------------------
# The checkout: pending changes, snapshots, triggers, foreign keys, layered
# ---------------------------------------------------------------------------------------------------------------

def test_pending_changes_are_refused_and_kept(repo):
    repo.on("dev", "update {s}.t set a = 'theirs' where id = 2")
    repo.checkout("main")
    repo.run("update {s}.t set a = 'pending' where id = 1")
    error = fails(repo.conn, "select splitgraph.merge(%s, 'dev')", repo.name, sqlstate="55000")
    assert "pending changes" in str(error) and "commit them or reset them" in str(error)
    assert (1, "pending", 1) in repo.rows() and repo.status() == [("t", 0, 0, 1)]
    assert repo.head() == repo.base


def test_sides_committed_as_snapshots_merge_by_comparison(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1", "delete from {s}.t where id = 9", snapshot="true")
    repo.on("dev", "update {s}.t set b = 100 where id = 1", "insert into {s}.t values (12, 'x', 12)",
            snapshot="true")
    repo.checkout("main")
    repo.merge()
    assert (1, "ours", 100) in repo.rows() and (12, "x", 12) in repo.rows()
    assert 9 not in [r[0] for r in repo.rows()]
    assert_clean_and_trusted(repo)


def test_a_tag_merges_as_the_image_it_names(repo):
    ours = repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    tagged = repo.on("dev", "update {s}.t set a = 'theirs' where id = 2")
    sql(repo.conn, "select splitgraph.tag(%s, %s, 'v1')", repo.name, tagged)
    repo.on("dev", "update {s}.t set a = 'after the tag' where id = 3")
    repo.checkout("main")
    merged = repo.merge("v1")
    assert value(repo.conn, "select splitgraph.show(%s, %s) -> 'parents'", repo.name, merged) == [ours, tagged]
    assert {r[0]: r[1] for r in repo.rows() if r[0] <= 3} == {1: "ours", 2: "theirs", 3: "a3"}
    assert_clean_and_trusted(repo)


def base_reads(conn, repo, base, merge):
    """Run `merge` (a function of no arguments) in a transaction; returns the rows read from each of the base's
    objects of table t during it (the backend's statistics not yet flushed, before and after)."""
    objects = value(conn, "select splitgraph.table_info(%s, %s, 't') -> 'objects'", repo.name, base)

    def reads():
        got = dict(sql(conn, """select relname::text, seq_tup_read + coalesce(idx_tup_fetch, 0)
                                from pg_catalog.pg_stat_xact_all_tables
                                where schemaname = 'splitgraph_meta' and relname::text = any(%s)""", objects))
        return [got.get(o, 0) for o in objects]

    with conn.transaction():
        before = reads()
        merge()
        after = reads()
    return [a - b for a, b in zip(after, before, strict=True)]


def test_the_merge_reads_the_deltas_not_the_tables(conn):
    """Cost follows the changed rows: with a base of three chunks, a merge of disjoint changes reads none of
    the base's objects (it reads each side's fragments only), and a merge where a key changed on both sides reads
    only the base's chunk that holds that key (its range index leaves the others out)."""
    repo = Repo(conn, [])
    repo.run("create table {s}.t (id int primary key, a text, b int)")
    repo.run("insert into {s}.t select i, 'a' || i, i from generate_series(1, 3000) i")
    base = repo.commit("three chunks", chunk_size=1000)
    for branch in ("b1", "b2"):
        sql(conn, "select splitgraph.branch(%s, %s, %s)", repo.name, branch, base)
    assert len(value(conn, "select splitgraph.table_info(%s, %s, 't') -> 'objects'", repo.name, base)) == 3

    repo.on("main", "update {s}.t set a = 'ours' where id in (5, 2500)")
    repo.on("b1", "update {s}.t set a = 'theirs' where id in (6, 1500)", "delete from {s}.t where id = 7")
    repo.checkout("main")
    assert base_reads(conn, repo, base, lambda: repo.merge("b1")) == [0, 0, 0]
    rows = {r[0]: r[1] for r in repo.rows()}
    assert (rows[5], rows[6], rows[1500], rows[2500]) == ("ours", "theirs", "theirs", "ours") and 7 not in rows

    repo.on("b2", "update {s}.t set b = 0 where id = 2500", "update {s}.t set a = 'x' where id = 2999")
    repo.checkout("main")
    # only the chunk holding id 2500 is read: in full, or only its row where the chunk has a key index (a nearby
    # checkout indexes the keys of the objects it shares)
    reads = base_reads(conn, repo, base, lambda: repo.merge("b2"))
    assert reads[:2] == [0, 0] and reads[2] in (1, 1000), reads
    assert (2500, "ours", 0) in repo.rows() and (2999, "x", 2999) in repo.rows()
    assert_clean_and_trusted(repo)


def test_base_lookups_by_text_and_composite_keys_across_chunks(conn):
    """The base's rows of keys both sides changed are found in whichever chunk holds them (text keys in "C"
    order, a two-column key whose first column the chunks' ranges cover)."""
    repo = Repo(conn, [])
    repo.run("create table {s}.t (k text, n int, v1 text, v2 text, primary key (k, n))")
    repo.run("insert into {s}.t select k, n, 'b', 'b' from unnest(array['A', 'B', 'a', 'b', 'é', 'Z z']) k, "
             "generate_series(1, 2) n")
    base = repo.commit("chunks of three", chunk_size=3)
    for branch in ("b1", "b2"):
        sql(conn, "select splitgraph.branch(%s, %s, %s)", repo.name, branch, base)
    assert len(value(conn, "select splitgraph.table_info(%s, %s, 't') -> 'objects'", repo.name, base)) == 4
    repo.on("main", "update {s}.t set v1 = 'ours'")
    repo.on("b1", "update {s}.t set v2 = 'theirs'")
    repo.checkout("main")
    repo.merge("b1")
    assert {r[2:] for r in repo.rows()} == {("ours", "theirs")} and len(repo.rows()) == 12
    repo.on("b2", "update {s}.t set v1 = 'b2' where k = 'é' and n = 2",
            "update {s}.t set v2 = 'theirs', v1 = 'ours' where k = 'B'")  # alike on both sides: no conflict
    repo.checkout("main")
    conflicts = repo.conflicts("b2")
    assert [(c[1], c[2]["v1"], c[3]["v1"], c[4]["v1"]) for c in conflicts] == [
        ({"k": "é", "n": 2}, "b", "ours", "b2")], "the base's row of the key, from its chunk"
    repo.merge("b2", strategy="theirs")
    rows = {(r[0], r[1]): r[2:] for r in repo.rows()}
    assert rows[("é", 2)] == ("b2", "theirs") and rows[("B", 1)] == rows[("B", 2)] == ("ours", "theirs")
    assert rows[("a", 1)] == ("ours", "theirs")
    assert_clean_and_trusted(repo)


def test_disjoint_changes_reuse_the_sources_fragments(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    theirs = repo.on("dev", "update {s}.t set a = 'theirs' where id = 2")
    ours_objects = value(repo.conn, "select splitgraph.table_info(%s, 'main', 't') -> 'objects'", repo.name)
    theirs_objects = value(repo.conn, "select splitgraph.table_info(%s, %s, 't') -> 'objects'", repo.name, theirs)
    repo.checkout("main")
    merged = repo.merge()
    assert value(repo.conn, "select splitgraph.table_info(%s, %s, 't') -> 'objects'", repo.name, merged) == \
        ours_objects + theirs_objects[1:]


def test_a_trigger_writing_during_the_merge_leaves_its_change_pending(repo):
    repo.run("create table {s}.audit_log (n int)")
    repo.commit("audit table")
    repo.on("dev", "update {s}.t set a = 'theirs' where id = 2")
    repo.checkout("main")
    repo.run("""create function {s}.touch() returns trigger language plpgsql as $$
                begin update {s}.t set b = -1 where id = 5; insert into {s}.audit_log values (1); return null; end
                $$""".replace("{s}", repo.s))
    repo.run("create trigger touch after insert on {s}.t for each statement execute function {s}.touch()")
    repo.commit("trigger")
    merged = repo.merge()
    assert (2, "theirs", 2) in repo.rows() and (5, "a5", -1) in repo.rows()
    assert sorted(repo.status()) == [("audit_log", 1, 0, 0), ("t", 0, 0, 1)], \
        "what the trigger wrote is pending against the merge, not taken for it"
    assert (5, "a5", 5) in repo.image_rows(merged)


def test_foreign_keys_between_merged_tables(conn):
    repo = Repo(conn, ["create table {s}.p (id int primary key)",
                       "create table {s}.c (id int primary key, p int references {s}.p)",
                       "insert into {s}.p values (1)", "insert into {s}.c values (1, 1)"])
    repo.on("main", "insert into {s}.p values (5)")
    repo.on("dev", "insert into {s}.p values (2)", "insert into {s}.c values (2, 2)", "delete from {s}.c where id = 1",
            "delete from {s}.p where id = 1")
    repo.checkout("main")
    repo.merge()
    assert repo.rows("p") == [(2,), (5,)] and repo.rows("c") == [(2, 2)]
    assert value(conn, "select count(*) from pg_constraint where conrelid = %s::regclass and contype = 'f'",
                 f"{repo.s}.c") == 1


def test_a_layered_checkout_is_refused(repo):
    repo.on("dev", "update {s}.t set a = 'theirs' where id = 2")
    sql(repo.conn, "select splitgraph.checkout(%s, 'main', layered => true)", repo.name)
    fails(repo.conn, "select splitgraph.merge(%s, 'dev')", repo.name, sqlstate="0A000")


def test_merge_end_alone_is_refused(repo):
    fails(repo.conn, "select splitgraph_internal.merge_end(%s)", repo.name, sqlstate="55000")


# ---------------------------------------------------------------------------------------------------------------
# History: prune and delete_image follow both parents
# ---------------------------------------------------------------------------------------------------------------

def test_prune_keeps_what_a_merge_reaches_and_delete_image_takes_merges_along(repo):
    repo.on("main", "update {s}.t set a = 'ours' where id = 1")
    theirs = repo.on("dev", "update {s}.t set a = 'theirs' where id = 2")
    repo.checkout("main")
    merged = repo.merge()
    sql(repo.conn, "select splitgraph.delete_branch(%s, 'dev')", repo.name)
    assert value(repo.conn, "select splitgraph.prune(%s)", repo.name) == 0, "dev's images are ancestors of main"
    assert theirs in [r[0] for r in sql(repo.conn, "select image_hash from splitgraph.log(%s)", repo.name)]
    # deleting the merged-in image takes the merge with it (it descends from it): refused while it is HEAD
    fails(repo.conn, "select splitgraph.delete_image(%s, %s, true)", repo.name, theirs, sqlstate="55000")
    repo.checkout(repo.base)
    assert value(repo.conn, "select splitgraph.delete_image(%s, %s, true)", repo.name, theirs) == 2
    assert value(repo.conn, "select count(*) from splitgraph.images(%s) where image_hash = %s", repo.name,
                 merged) == 0
    assert value(repo.conn, "select count(*) from splitgraph_meta.merge_parents where repository = %s",
                 repo.name) == 0


# ---------------------------------------------------------------------------------------------------------------
# Rights: the merge writes as its caller
# ---------------------------------------------------------------------------------------------------------------

def test_merge_writes_as_its_caller_and_only_writers_merge(conn, roles):
    alice, bob = roles.new("alice"), roles.new("bob")
    name = f"{alice.name}/m"
    s = f'"{name}"'
    a = alice.conn
    sql(a, "select splitgraph.init(%s)", name)
    sql(a, f"create table {s}.t (id int primary key, v text)")
    sql(a, f"create table {s}.who (r text)")
    sql(a, f"insert into {s}.t values (1, 'a')")
    sql(a, "select splitgraph.commit(%s)", name)
    sql(a, "select splitgraph.branch(%s, 'dev')", name)
    sql(a, f"insert into {s}.t values (2, 'main')")
    sql(a, "select splitgraph.commit(%s)", name)
    sql(a, "select splitgraph.checkout(%s, 'dev')", name)
    sql(a, f"insert into {s}.t values (3, 'dev')")
    sql(a, "select splitgraph.commit(%s)", name)
    sql(a, "select splitgraph.checkout(%s, 'main')", name)
    # a trigger of alice's on her checkout: it must run as alice, never with the extension's rights
    sql(a, f"""create function {s}.record() returns trigger language plpgsql as $$
               begin insert into {s}.who values (current_user); return null; end $$""")
    sql(a, f"create trigger record after insert on {s}.t for each statement execute function {s}.record()")
    for query in ("select splitgraph.merge(%s, 'dev')", "select splitgraph_internal.merge_begin(%s, 'dev', null)"):
        with pytest.raises(driver.Error) as info:
            sql(bob.conn, query, name)
        assert info.value.pgcode == "42501"
    sql(a, "select splitgraph.merge(%s, 'dev')", name)
    assert sql(a, f"select r from {s}.who") == [(alice.name,)], "the trigger ran as alice, not as the owner"
    assert sorted(sql(a, f"select id from {s}.t")) == [(1,), (2,), (3,)]


def test_a_role_that_may_not_write_the_repository_cannot_merge_into_it(conn, roles):
    """bob may read alice's repository (and even write her checkout's table, granted by her), but not write the
    repository: merge and its helpers are refused with 42501, and nothing changes (HEAD, branches, images,
    merge parents, rows, pending changes, logs); conflicts() is a read, which he may do."""
    alice, bob = roles.new("alice2"), roles.new("bob2")
    name = f"{alice.name}/m"
    s = f'"{name}"'
    a = alice.conn
    sql(a, "select splitgraph.init(%s)", name)
    sql(a, f"create table {s}.t (id int primary key, v text)")
    sql(a, f"insert into {s}.t values (1, 'a'), (2, 'b')")
    sql(a, "select splitgraph.commit(%s)", name)
    sql(a, "select splitgraph.branch(%s, 'dev')", name)
    sql(a, f"update {s}.t set v = 'main' where id = 1")
    sql(a, "select splitgraph.commit(%s)", name)
    sql(a, "select splitgraph.checkout(%s, 'dev')", name)
    sql(a, f"update {s}.t set v = 'dev' where id = 1")
    sql(a, f"insert into {s}.t values (3, 'c')")
    sql(a, "select splitgraph.commit(%s)", name)
    sql(a, "select splitgraph.checkout(%s, 'main')", name)
    sql(a, f"grant usage on schema {s} to {bob.name}")
    sql(a, f"grant select, insert, update, delete on {s}.t to {bob.name}")

    def state():
        return (sql(a, "select image_hash from splitgraph.log(%s)", name),
                sql(a, "select branch, image_hash from splitgraph.branches(%s) order by 1", name),
                value(a, "select count(*) from splitgraph.images(%s)", name),
                value(conn, "select count(*) from splitgraph_meta.merge_parents where repository = %s", name),
                sorted(sql(a, f"select * from {s}.t")),
                sql(a, "select table_name from splitgraph.status(%s)", name),
                sql(conn, "select table_name, state from splitgraph_audit.tracked where schema_name = %s "
                          "order by 1", name))

    before = state()
    assert [r[1] for r in sql(bob.conn, "select table_name, pk from splitgraph.conflicts(%s, 'dev')", name)] == \
        [{"id": 1}], "bob may read the repository, so he may see what a merge would meet"
    for query in ("select splitgraph.merge(%s, 'dev')", "select splitgraph.merge(%s, 'dev', 'theirs')",
                  "select splitgraph_internal.merge_begin(%s, 'dev', 'theirs')",
                  "select splitgraph_internal.merge_end(%s)"):
        with pytest.raises(driver.Error) as info:
            sql(bob.conn, query, name)
        assert info.value.pgcode == "42501", f"{query}: {info.value.pgcode} {info.value}"
        assert state() == before, f"{query} changed something"
    assert value(a, "select splitgraph.merge(%s, 'dev', 'theirs')", name) == value(
        a, "select image_hash from splitgraph.log(%s) limit 1", name), "alice, who owns the namespace, merges"
    assert sorted(sql(a, f"select * from {s}.t")) == [(1, "dev"), (2, "b"), (3, "c")]


def test_identity_and_generated_columns_merge(conn):
    repo = Repo(conn, ["create table {s}.g (id int generated always as identity primary key, a text, "
                       "n int generated always as (length(a)) stored)",
                       "insert into {s}.g (a) values ('x'), ('yy'), ('zzz')"])
    repo.on("main", "update {s}.g set a = 'ours' where id = 1")
    repo.on("dev", "update {s}.g set a = 'theirs!' where id = 2", "delete from {s}.g where id = 3",
            "insert into {s}.g (id, a) overriding system value values (10, 'ten')")
    repo.checkout("main")
    repo.merge()
    assert repo.rows("g") == [(1, "ours", 4), (2, "theirs!", 7), (10, "ten", 3)]
    assert_clean_and_trusted(repo)


def test_a_partitioned_table_merges(conn):
    repo = Repo(conn, ["create table {s}.p (id int primary key, v text) partition by range (id)",
                       "create table {s}.p_low partition of {s}.p for values from (0) to (50)",
                       "create table {s}.p_high partition of {s}.p for values from (50) to (100)",
                       "insert into {s}.p select i, 'base' from generate_series(0, 99, 10) i"])
    repo.on("main", "update {s}.p set v = 'ours' where id = 10")
    repo.on("dev", "update {s}.p set v = 'theirs' where id = 60", "insert into {s}.p values (55, 'new')")
    repo.checkout("main")
    repo.merge()
    rows = dict(repo.rows("p"))
    assert (rows[10], rows[60], rows[55], len(rows)) == ("ours", "theirs", "new", 11)
    assert repo.status() == []
    image = repo.commit("after")
    assert dict(repo.image_rows(image, "p")) == rows


def test_criss_cross_merges_take_the_newest_best_common_ancestor(repo):
    a1 = repo.on("main", "update {s}.t set a = 'a1' where id = 1")
    b1 = repo.on("dev", "update {s}.t set a = 'b1' where id = 2")
    repo.checkout("main")
    repo.merge()  # main: a1 + b1
    repo.checkout("dev")
    repo.merge(a1)  # dev: b1 + a1, a second merge image; a1 and b1 are now both best common ancestors
    repo.on("main", "update {s}.t set a = 'main' where id = 3")
    repo.on("dev", "update {s}.t set a = 'dev' where id = 4")
    repo.checkout("main")
    with repo.conn.cursor() as cur:
        notices = []
        repo.conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        cur.execute("select splitgraph.merge(%s, 'dev')", (repo.name,))
    assert any("2 best common ancestors" in n for n in notices), notices
    expected = {1: "a1", 2: "b1", 3: "main", 4: "dev"} | {i: f"a{i}" for i in range(5, 11)}
    assert {r[0]: r[1] for r in repo.rows()} == expected
    assert b1 in [r[0] for r in sql(repo.conn, "select image_hash from splitgraph.log(%s)", repo.name)]


def test_unknown_sources_and_checkouts_are_refused(repo):
    fails(repo.conn, "select splitgraph.merge(%s, 'nope')", repo.name, sqlstate="42704")
    fails(repo.conn, "select * from splitgraph.conflicts(%s, 'nope')", repo.name, sqlstate="42704")
    sql(repo.conn, "select splitgraph.uncheckout(%s)", repo.name)
    fails(repo.conn, "select splitgraph.merge(%s, 'dev')", repo.name, sqlstate="55000")
    fails(repo.conn, "select * from splitgraph.conflicts(%s, 'dev')", repo.name, sqlstate="55000")
