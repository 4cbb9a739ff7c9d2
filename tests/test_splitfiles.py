"""Issue 14: Splitfiles built in the engine: derived image hashes and cached layers, SQL steps (checked on their
parse tree, run as the caller against the output's checkout, reading other images without checking them out),
provenance, dependents, reconstruct_splitfile and rebuild, failures that keep the layers before them, multi-stage
builds, custom commands, and who may build what."""
import hashlib
import itertools
import json
import os
import subprocess

import psycopg2
import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from conftest import fails, sql, value
from support.cluster import PG_BIN

ROOT = "0" * 64
_names = itertools.count(1)


def sha(text):
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def fresh(prefix="sf"):
    return f"{prefix}/r{next(_names)}"


class Notices:
    """The NOTICE and WARNING messages a connection receives."""

    def __init__(self, conn):
        self.items = []
        conn.add_notice_handler(lambda d: self.items.append((d.severity_nonlocalized, d.pgcode,
                                                             d.message_primary)))

    def take(self):
        items, self.items = self.items, []
        return items

    def steps(self):
        """The build's per-command notices: [(line label, cached/built...)]."""
        out = []
        for severity, _, message in self.take():
            if severity == "NOTICE" and message.startswith("splitgraph: line "):
                label, _, what = message[len("splitgraph: "):].partition(": ")
                out.append((label, what.split(",")[0]))
        return out


def build(conn, text, output, params=None, **options):
    extra = "".join(f", {k} => %s" for k in options)
    return value(conn, f"select splitgraph.build(%s, %s, %s{extra})", text, output, json.dumps(params or {}),
                 *options.values())


def counts(conn):
    return value(conn, "select (select count(*) from splitgraph_meta.images)::text || '/' || "
                       "(select count(*) from splitgraph_meta.objects)::text")


def log(conn, repo):
    return [r[0] for r in sql(conn, "select image_hash from splitgraph.log(%s)", repo)]


def provenance_of(conn, repo, image="HEAD"):
    return value(conn, "select splitgraph.show(%s, %s) -> 'provenance'", repo, image)


@pytest.fixture
def source(conn):
    """ns/src: t (id, v) 100 rows with a primary key, u (id, w) without one; tagged v1."""
    repo = fresh("src")
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f"insert into \"{repo}\".t select i, 'v' || i from generate_series(1, 100) i")
    sql(conn, f'create table "{repo}".u (id int, w int)')
    sql(conn, f'insert into "{repo}".u values (1, 10), (2, 20), (3, 30)')
    image = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.tag(%s, %s, 'v1')", repo, image)
    return repo, image


def splitfile(src):
    return f"""
# the example the tests share
FROM {src}:${{TAG}} IMPORT t, {{SELECT id, w * 2 AS w2 FROM u}} AS u2
SQL CREATE TABLE joined AS SELECT t.id, t.v, u2.w2 FROM t JOIN u2 USING (id)
SQL {{
    UPDATE joined SET v = upper(v);
    DELETE FROM t WHERE id > 50
}}
"""


# ---------------------------------------------------------------------------------------------------------------
# Building and caching
# ---------------------------------------------------------------------------------------------------------------

def test_a_build_imports_runs_sql_and_ends_on_main(conn, source):
    src, _ = source
    out = fresh()
    notices = Notices(conn)
    final = build(conn, splitfile(src), out, {"TAG": "v1"})
    assert notices.steps() == [("line 3 (IMPORT)", "built"), ("line 4 (SQL)", "built"), ("line 5 (SQL)", "built")]
    assert sql(conn, f'select id, v, w2 from "{out}".joined order by id') == [(1, "V1", 20), (2, "V2", 40),
                                                                             (3, "V3", 60)]
    assert value(conn, f'select count(*) from "{out}".t') == 50
    assert log(conn, out)[0] == final and log(conn, out)[-1] == ROOT and len(log(conn, out)) == 4
    assert sql(conn, "select branch, image_hash, current from splitgraph.branches(%s)", out) == [("main", final, True)]
    assert sql(conn, "select * from splitgraph.status(%s)", out) == []


def test_a_rerun_creates_no_image_and_no_object_and_reads_no_data(conn, source):
    src, _ = source
    out = fresh()
    first = build(conn, splitfile(src), out, {"TAG": "v1"})
    before = counts(conn)
    notices = Notices(conn)
    assert build(conn, splitfile(src), out, {"TAG": "v1"}) == first
    assert counts(conn) == before, "a rerun made images or objects"
    messages = notices.items
    assert [s[1] for s in Notices.steps(notices)] == ["cached"] * 3
    assert not any("checked out table" in m or "committed table" in m for _, _, m in messages), \
        "a cached rerun checked out or committed a table"


def test_image_hashes_follow_the_formulas(conn, source):
    src, v1 = source
    out = fresh()
    final = build(conn, f"FROM {src}:v1 IMPORT t, {{select id, w*2 as w2 from u}} AS u2\n"
                        "SQL create table x as select * from t", out)
    imported, root = log(conn, out)[1:]
    query = "SELECT id, w * 2 AS w2 FROM u"
    assert imported == sha(ROOT + v1 + sha("t") + sha(query) + sha("t") + sha("u2"))
    assert final == sha(imported + sha("CREATE TABLE x AS SELECT * FROM t"))
    assert provenance_of(conn, out)[-1]["sql"] == "CREATE TABLE x AS SELECT * FROM t"
    # the hash is the statement's as PostgreSQL's parser reads it: spacing, case and comments do not count
    notices = Notices(conn)
    assert build(conn, f"FROM {src}:{v1[:10]} IMPORT t, {{SELECT id, w * 2 AS w2\n FROM u}} AS u2\n"
                       "SQL CREATE  TABLE x AS /* the same */ SELECT *\\\n FROM t", out) == final
    assert [s[1] for s in notices.steps()] == ["cached", "cached"]


def test_a_changed_parameter_rebuilds_from_the_first_command_it_changes(conn, source):
    src, v1 = source
    sql(conn, f"insert into \"{src}\".t values (101, 'new')")
    v2 = value(conn, "select splitgraph.commit(%s)", src)
    sql(conn, "select splitgraph.tag(%s, %s, 'v2')", src, v2)
    text = f"""SQL CREATE TABLE notes (n text)
FROM {src}:${{TAG}} IMPORT t
SQL CREATE TABLE c AS SELECT count(*) AS n FROM t"""
    out = fresh()
    first = build(conn, text, out, {"TAG": "v1"})
    notices = Notices(conn)
    second = build(conn, text, out, {"TAG": "v2"})
    assert notices.steps() == [("line 1 (SQL)", "cached"), ("line 2 (IMPORT)", "built"), ("line 3 (SQL)", "built")]
    assert value(conn, f'select n from "{out}".c') == 101
    assert build(conn, text, out, {"TAG": "v1"}) == first != second
    assert [s[1] for s in notices.steps()] == ["cached"] * 3
    assert value(conn, f'select n from "{out}".c') == 100, "the checkout follows the build"


# ---------------------------------------------------------------------------------------------------------------
# FROM, IMPORT, multi-stage builds
# ---------------------------------------------------------------------------------------------------------------

def test_from_an_image_bases_the_output_on_it(conn, source):
    src, v1 = source
    out = fresh()
    final = build(conn, f"FROM {src}:v1 AS {out}\nSQL INSERT INTO t VALUES (0, 'zero')", "unused/name")
    assert log(conn, out) == [final, v1, ROOT], "the base keeps its hash and ancestors"
    assert value(conn, f'select count(*) from "{out}".t') == 101
    assert not value(conn, "select exists (select from splitgraph.repositories() where repository = 'unused/name')")
    before = counts(conn)
    notices = Notices(conn)
    assert build(conn, f"FROM {src}:v1 AS {out}\nSQL INSERT INTO t VALUES (0, 'zero')", "unused/name") == final
    assert counts(conn) == before
    assert [m for _, _, m in notices.take() if "based on" in m] == [f"splitgraph: line 1 (FROM): based on {src} "
                                                                   f"(cached), image {v1[:12]}"]


def test_import_all_and_from_empty(conn, source):
    src, v1 = source
    out = fresh()
    final = build(conn, f"FROM EMPTY AS {out}\nFROM {src} IMPORT ALL", "ignored/x")
    assert final == sha(ROOT + v1 + sha("t") + sha("u") + sha("t") + sha("u"))
    assert sorted(r[0] for r in sql(conn, "select table_name from information_schema.tables "
                                          "where table_schema = %s", out)) == ["t", "u"]
    assert value(conn, "select splitgraph.table_info(%s, 'HEAD', 't') -> 'objects'", out) == \
        value(conn, "select splitgraph.table_info(%s, 'v1', 't') -> 'objects'", src), "objects are shared"


def test_stages_build_several_repositories_and_later_ones_import_earlier_ones(conn, source):
    src, _ = source
    one, two = fresh(), fresh()
    text = f"""FROM EMPTY AS {one}
FROM {src}:v1 IMPORT t
SQL DELETE FROM t WHERE id > 10
FROM EMPTY AS {two}
FROM {one} IMPORT t AS small
SQL CREATE TABLE total AS SELECT sum(id) AS s FROM small"""
    final = build(conn, text, "ignored/x")
    first = log(conn, one)[0]
    assert log(conn, two)[0] == final
    assert value(conn, f'select s from "{two}".total') == 55
    imported = provenance_of(conn, two)[0]
    assert (imported["type"], imported["source"], imported["image"]) == ("IMPORT", one, first), \
        "the earlier stage's last image is pinned"
    assert sql(conn, "select * from splitgraph.provenance(%s, 'HEAD')", two) == [(one, first)]
    before = counts(conn)
    assert build(conn, text, "ignored/x") == final
    assert counts(conn) == before


# ---------------------------------------------------------------------------------------------------------------
# SQL steps
# ---------------------------------------------------------------------------------------------------------------

def test_sql_reads_other_images_without_checking_them_out_and_pins_them(conn, source):
    src, v1 = source
    ref = fresh("ref")
    sql(conn, "select splitgraph.init(%s)", ref)
    sql(conn, f'create table "{ref}".r (id int primary key, w text)')
    sql(conn, f"insert into \"{ref}\".r values (1, 'one'), (2, 'two')")
    r1 = value(conn, "select splitgraph.commit(%s)", ref)
    sql(conn, "select splitgraph.tag(%s, %s, 'v1')", ref, r1)
    sql(conn, "select splitgraph.uncheckout(%s)", ref)
    out = fresh()
    text = f"""FROM {src}:v1 IMPORT t
SQL CREATE TABLE j AS SELECT t.id, r.w, "{ref}:v1".r.id AS rid FROM t JOIN "{ref}:v1".r USING (id)
SQL UPDATE j SET w = j.w || '!' FROM "{ref}:v1".r AS q WHERE q.id = j.id AND q.w = 'two'"""
    final = build(conn, text, out)
    assert sql(conn, f'select * from "{out}".j order by id') == [(1, "one", 1), (2, "two!", 2)]
    assert not value(conn, "select checked_out from splitgraph.repositories() where repository = %s", ref)
    steps = provenance_of(conn, out)
    assert f'"{ref}:{r1}".r' in steps[1]["sql"] and steps[1]["sources"] == [{"repository": ref, "image": r1}]
    assert sql(conn, "select * from splitgraph.provenance(%s, 'HEAD')", out) == [(src, v1), (ref, r1)]
    reconstructed = value(conn, "select splitgraph.reconstruct_splitfile(%s, 'HEAD')", out)
    assert f'"{ref}:{r1}".r' in reconstructed and ":v1" not in reconstructed
    # the tag moves: the same Splitfile reads the new image, a new layer
    sql(conn, "select splitgraph.checkout(%s, %s)", ref, r1)
    sql(conn, f"insert into \"{ref}\".r values (3, 'three')")
    r2 = value(conn, "select splitgraph.commit(%s)", ref)
    sql(conn, "select splitgraph.tag(%s, %s, 'v1')", ref, r2)
    assert build(conn, text, out) != final
    assert value(conn, f'select count(*) from "{out}".j') == 3


def test_allowed_statements(conn, source):
    src, _ = source
    out = fresh()
    build(conn, f"""FROM {src}:v1 IMPORT t, u
SQL {{
    CREATE TABLE k (id int PRIMARY KEY, label text NOT NULL DEFAULT lower('X'), n numeric CHECK (n >= 0),
                    at timestamptz DEFAULT '2024-01-01', UNIQUE (label, id));
    ALTER TABLE k ADD COLUMN extra int, ALTER COLUMN n SET DEFAULT 0;
    CREATE INDEX k_label ON k (lower(label));
    COMMENT ON COLUMN k.label IS 'a label';
    COMMENT ON TABLE k IS 'k';
    WITH moved AS (DELETE FROM t WHERE id > 95 RETURNING id, v) INSERT INTO k (id, label) SELECT id, v FROM moved;
    MERGE INTO k USING (SELECT 1 AS id) s ON k.id = s.id WHEN NOT MATCHED THEN INSERT (id, label) VALUES (1, 'm');
    DELETE FROM u USING t WHERE u.id = t.id AND t.id = 3;
    CREATE TABLE scratch AS SELECT 1 AS a;
    ALTER TABLE scratch RENAME TO renamed;
    ALTER TABLE renamed RENAME COLUMN a TO b;
    TRUNCATE renamed;
    DROP TABLE renamed;
    SELECT count(*) FROM k;
    WITH gone AS (DELETE FROM t WHERE id <= 2 RETURNING *) SELECT * FROM gone
}}""", out)
    assert value(conn, f'select count(*) from "{out}".t') == 93, "a plain SELECT's WITH query ran to its end"
    assert value(conn, f'select count(*) from "{out}".k') == 6
    assert value(conn, f'select count(*) from "{out}".u') == 2
    assert value(conn, f"""select col_description('"{out}".k'::regclass, 2)""") == "a label"
    assert value(conn, f"""select to_regclass('"{out}".renamed')""") is None
    assert value(conn, f"""select to_regclass('"{out}".k_label') is not null""")


HOSTILE = [
    ("SET work_mem = '1GB'", "SET is not allowed"),
    ("SELECT set_config('search_path', 'public', false)", "set_config, which reads relations, settings"),
    ("SELECT current_setting('data_directory')", "current_setting"),
    ("LOCK TABLE t", "LOCK is not allowed"),
    ("COPY t TO '/tmp/x'", "COPY is not allowed"),
    ("CREATE FUNCTION f() RETURNS int LANGUAGE sql AS 'select 1'", "CREATE FUNCTION is not allowed"),
    ("CREATE SCHEMA s", "CREATE SCHEMA is not allowed"),
    ("CREATE EXTENSION hstore", "CREATE EXTENSION is not allowed"),
    ("DO $$ BEGIN END $$", "DO is not allowed"),
    ("CALL p()", "CALL is not allowed"),
    ("CREATE VIEW v AS SELECT 1", "CREATE VIEW is not allowed"),
    ("CREATE MATERIALIZED VIEW v AS SELECT 1", "CREATE MATERIALIZED VIEW is not allowed"),
    ("CREATE TRIGGER tr AFTER INSERT ON t EXECUTE FUNCTION f()", "CREATE TRIGGER is not allowed"),
    ("GRANT SELECT ON t TO public", "GRANT/REVOKE is not allowed"),
    ("CREATE SEQUENCE s", "CREATE SEQUENCE is not allowed"),
    ("SELECT pg_read_file('/etc/passwd')", "pg_read_file, which reaches into the server"),
    ("SELECT pg_sleep(10)", "pg_sleep, which reaches into the server"),
    ("SELECT query_to_xml('select 1', true, true, '')", "query_to_xml"),
    ("SELECT lo_import('/etc/passwd')", "lo_import, which is volatile"),
    ("SELECT nextval('s')", "nextval"),
    ("SELECT version()", "version"),
    ("SELECT 't'::regclass", "regclass holds names looked up in the catalogs"),
    ("SELECT current_user", "CURRENT_USER reads the session's state"),
    ("SELECT * FROM public.secrets", '"public".secrets is neither a table of the output'),
    ("SELECT * FROM pg_catalog.pg_authid", '"pg_catalog".pg_authid is neither'),
    ("SELECT * FROM information_schema.tables", '"information_schema".tables is neither'),
    ("SELECT * FROM db.s.t", "names a database"),
    ("SELECT public.f()", "public.f is a function of another schema"),
    ("SELECT my_function()", "my_function, which is not a built-in function"),
    ("SELECT 1::public.mytype", "type public.mytype is of another schema"),
    ("CREATE TEMP TABLE x (a int)", "temporary tables are not allowed"),
    ("SELECT 1 INTO TEMP x", "temporary tables are not allowed"),
    ("ALTER TABLE t OWNER TO postgres", "ALTER TABLE ... ChangeOwner is not allowed"),
    ("ALTER TABLE t DISABLE TRIGGER ALL", "ALTER TABLE ... DisableTrigAll is not allowed"),
    ("ALTER TABLE t ENABLE ROW LEVEL SECURITY", "ALTER TABLE ... EnableRowSecurity is not allowed"),
    ("DROP SCHEMA s", "DROP SCHEMA is not allowed"),
    ("DROP TABLE other.t", "other.t is not a table, index or column of the output"),
    ('INSERT INTO "ns/src:v1".t VALUES (1)', "which a step may only read"),
    ('CREATE INDEX CONCURRENTLY i ON t (id)', "CREATE INDEX CONCURRENTLY"),
    ("CREATE TABLE x (a int) TABLESPACE pg_default", "TABLESPACE is not allowed"),
    ("EXECUTE plan", "EXECUTE is not allowed"),
    ("VACUUM t", "VACUUM/ANALYZE is not allowed"),
    ("CREATE TABLE x AS EXECUTE plan", "EXECUTE is not allowed"),
    ("SELECT 1 OPERATOR(public.+) 1", "public.+ is of another schema"),
    ('SELECT * FROM "ns/src:v1".t TABLESAMPLE bernoulli (50)', "TABLESAMPLE reads only tables of the output"),
    ("CREATE STATISTICS s ON a, b FROM t", "CREATE STATISTICS is not allowed"),
]


@pytest.mark.parametrize("statement, expected", HOSTILE, ids=[h[0][:40] for h in HOSTILE])
def test_a_refused_statement_names_what_is_not_allowed_and_builds_nothing(conn, statement, expected):
    out = fresh()
    before = counts(conn)
    error = fails(conn, "select splitgraph.build(%s, %s)", f"SQL CREATE TABLE ok (a int)\nSQL {statement}", out,
                  sqlstate="42501")
    assert error.diag.message_primary.startswith("Splitfile line 2, column ")
    assert expected in error.diag.message_primary, error.diag.message_primary
    assert counts(conn) == before
    assert not value(conn, "select exists (select from splitgraph.repositories() where repository = %s)", out)


def test_a_refusal_points_at_the_statement_in_a_block(conn):
    error = fails(conn, "select splitgraph.build(%s, 'sf/points')",
                  "SQL {\n  CREATE TABLE a (x int);\n  SELECT pg_sleep(1)\n}", sqlstate="42501")
    assert error.diag.message_primary.startswith("Splitfile line 3, column 10: the SQL step calls pg_sleep")
    assert error.diag.message_detail == "  SELECT pg_sleep(1)\n         ^"
    error = fails(conn, "select splitgraph.build(%s, 'sf/points')",
                  "SQL {\n  CREATE TABLE a (x int);  SET work_mem = '1GB'\n}", sqlstate="42501")
    assert error.diag.message_primary.startswith("Splitfile line 2, column 28: SET is not allowed")
    error = fails(conn, "select splitgraph.build(%s, 'sf/points')", "SQL {SELECT 1;\n SELEC 2}", sqlstate="42601")
    assert error.diag.message_primary.startswith("Splitfile line 2, column 2: the SQL does not parse")


# ---------------------------------------------------------------------------------------------------------------
# Errors before anything runs, and failures while it runs
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("text, params, sqlstate, message", [
    ("FROM ns/x IMPORT", {}, "42601", "Splitfile line 1, column 17: expected a space after IMPORT"),
    ("FROM ns/x:${TAG} IMPORT t", {}, "22023", "Splitfile line 1, column 11: no value for parameter TAG"),
    ("SQL SELECT 1\nNOPE a b", {}, "42704", 'Splitfile line 2, column 1: unknown command "NOPE"'),
    ("sql SELECT 1", {}, "42704", 'Splitfile line 1, column 1: unknown command "sql"'),
    ("FROM ns/src IMPORT {SELEC 1} AS q", {}, "42601", "Splitfile line 1, column 21: the query does not parse"),
    ("FROM ns/src IMPORT {INSERT INTO t VALUES (1)} AS q", {}, "42601", "an import query must be exactly one SELECT"),
    ("SQL FILE x.sql", {}, "0A000", "SQL FILE is read by the client"),
    ("FROM MOUNT nohandler '{}' IMPORT t", {}, "42704",
     'Splitfile line 1, column 12: unknown mount handler "nohandler"'),
    ("FROM EMPTY AS pg_catalog\nSQL CREATE TABLE x (a int)", {}, None, "pg_catalog"),
])
def test_a_splitfile_that_cannot_be_read_builds_nothing(conn, text, params, sqlstate, message):
    out = fresh()
    before = counts(conn)
    error = fails(conn, "select splitgraph.build(%s, %s, %s)", text, out, json.dumps(params), sqlstate=sqlstate)
    assert message in error.diag.message_primary
    assert counts(conn) == before
    assert not value(conn, "select exists (select from splitgraph.repositories() where repository = %s)", out)


def test_images_named_are_resolved_before_anything_runs(conn, source):
    src, _ = source
    out = fresh()
    error = fails(conn, "select splitgraph.build(%s, %s)",
                  f"SQL CREATE TABLE a (x int)\nFROM {src}:v9 IMPORT t", out, sqlstate="42704")
    assert error.diag.message_primary == f'Splitfile line 2, column 6: image "v9" not found in repository "{src}"'
    error = fails(conn, "select splitgraph.build(%s, %s)",
                  'SQL {CREATE TABLE a (x int);\n  INSERT INTO a SELECT id FROM "no/such:v1".t}', out, sqlstate="42704")
    assert error.diag.message_primary == 'Splitfile line 2, column 32: repository "no/such" does not exist'
    assert not value(conn, "select exists (select from splitgraph.repositories() where repository = %s)", out)


def test_a_first_command_that_fails_leaves_no_new_repository(conn, source):
    src, _ = source
    out = fresh()
    notices = Notices(conn)
    assert build(conn, f"FROM {src}:v1 IMPORT {{SELECT 1 / 0 AS x}} AS q", out) is None
    warning = [m for s, _, m in notices.take() if s == "WARNING"]
    assert warning == [f'splitgraph: Splitfile line 1 (IMPORT) failed: the import query fails: division by zero; '
                       f'nothing was built for "{out}"']
    assert not value(conn, "select exists (select from splitgraph.repositories() where repository = %s)", out)


def test_params_must_be_strings_or_numbers(conn):
    fails(conn, "select splitgraph.build('SQL SELECT 1', 'sf/p', '[1]')", sqlstate="22023")
    fails(conn, """select splitgraph.build('SQL SELECT 1', 'sf/p', '{"A": [1]}')""", sqlstate="22023")
    assert build(conn, "SQL CREATE TABLE n AS SELECT ${N}::int AS n", "sf/p", {"N": 7})
    assert value(conn, 'select n from "sf/p".n') == 7


def test_a_failing_command_keeps_the_layers_before_it_and_a_rerun_resumes(conn, source):
    src, _ = source
    out = fresh()
    text = f"""FROM {src}:v1 IMPORT t
SQL CREATE TABLE a AS SELECT id FROM t WHERE id <= 10
SQL CREATE TABLE b AS SELECT id / ${{D}} AS q FROM a
SQL CREATE TABLE c AS SELECT count(*) AS n FROM b"""
    before = int(counts(conn).split("/")[0])
    notices = Notices(conn)
    assert build(conn, text, out, {"D": 0}) is None
    items = notices.take()
    warning = [i for i in items if i[0] == "WARNING"]
    assert len(warning) == 1
    assert warning[0][2].startswith("splitgraph: Splitfile line 3 (SQL) failed: division by zero")
    built = log(conn, out)
    assert len(built) == 3 and int(counts(conn).split("/")[0]) == before + 3, \
        "the root and the images of lines 1 and 2 stay, none for line 3"
    # The WARNING carries the failing statement's SQLSTATE (psql shows it with VERBOSITY verbose; psycopg2 keeps
    # only a notice's text). The same build again: lines 1 and 2 cached, line 3 fails alike, nothing new.
    shown = subprocess.run([str(PG_BIN / "psql"), "-X", "-v", "VERBOSITY=verbose", "-d", conn.dsn, "-c",
                            f"select splitgraph.build($${text}$$, '{out}', '{{\"D\": 0}}')"],
                           capture_output=True, text=True, check=True)
    assert "WARNING:  22012: splitgraph: Splitfile line 3 (SQL) failed: division by zero" in shown.stderr, shown.stderr
    assert log(conn, out) == built and int(counts(conn).split("/")[0]) == before + 3
    assert value(conn, f"select to_regclass('\"{out}\".a') is not null"), "checked out at the last layer built"
    assert value(conn, f"select to_regclass('\"{out}\".b') is null")
    notices.take()
    final = build(conn, text, out, {"D": 2})
    assert notices.steps() == [("line 1 (IMPORT)", "cached"), ("line 2 (SQL)", "cached"), ("line 3 (SQL)", "built"),
                               ("line 4 (SQL)", "built")]
    assert value(conn, f'select n from "{out}".c') == 10 and log(conn, out)[0] == final


def test_keep_layers_off_makes_a_failure_an_error_that_keeps_nothing(conn, source):
    src, _ = source
    out = fresh()
    before = counts(conn)
    error = fails(conn, "select splitgraph.build(%s, %s, keep_layers => false)",
                  f"FROM {src}:v1 IMPORT t\nSQL SELECT * FROM missing", out, sqlstate="42P01")
    assert error.diag.message_primary.startswith("Splitfile line 2 (SQL) failed: relation")
    assert counts(conn) == before


def test_a_checkout_with_pending_changes_is_not_replaced(conn, source):
    src, _ = source
    out = fresh()
    build(conn, f"FROM {src}:v1 IMPORT t", out)
    sql(conn, f'delete from "{out}".t')
    fails(conn, "select splitgraph.build(%s, %s)", f"FROM {src}:v1 IMPORT u", out, sqlstate="55000")
    assert value(conn, f'select count(*) from "{out}".t') == 0


def test_main_moves_to_the_build_and_a_notice_names_what_it_leaves(conn):
    out = fresh()
    sql(conn, "select splitgraph.init(%s)", out)
    sql(conn, f'create table "{out}".mine (a int)')
    mine = value(conn, "select splitgraph.commit(%s)", out)
    notices = Notices(conn)
    final = build(conn, "SQL CREATE TABLE built (b int)", out)
    assert value(conn, "select image_hash from splitgraph.branches(%s) where branch = 'main'", out) == final
    assert f'splitgraph: branch main of "{out}" leaves image {mine[:12]}, which is not an ancestor of the build: ' \
           "tag it to keep it from prune" in [m for _, _, m in notices.take()]
    assert value(conn, f"select to_regclass('\"{out}\".mine')") is None
    build(conn, "SQL CREATE TABLE built (b int)", out)
    assert not any("leaves image" in m for _, _, m in notices.take())


# ---------------------------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------------------------

def test_reconstruct_then_build_gives_the_same_image(conn, source):
    src, v1 = source
    out, copy = fresh(), fresh()
    final = build(conn, splitfile(src) + "SQL CREATE TABLE odd AS SELECT '}' AS a, '\\${X}' AS \"b c\"", out,
                  {"TAG": "v1"})
    text = value(conn, "select splitgraph.reconstruct_splitfile(%s, %s)", out, final)
    assert text.startswith(f"FROM {src}:{v1} IMPORT t, {{SELECT id, w * 2 AS w2 FROM u}} AS u2\n")
    assert "${" not in text.replace("\\${", "")
    assert build(conn, text, copy) == final
    assert [r[0] for r in sql(conn, "select splitgraph.reconstruct_splitfile(%s, 'HEAD')", copy)] == [text]
    assert sql(conn, 'select a, "b c" from "%s".odd' % copy) == [("}", "${X}")]
    # every built image carries the commands of its stage up to it
    assert [len(provenance_of(conn, out, image)) for image in log(conn, out)[:-1]] == [4, 3, 2, 1]


def test_provenance_and_dependents(conn, source):
    src, v1 = source
    out = fresh()
    final = build(conn, splitfile(src), out, {"TAG": "v1"})
    assert sql(conn, "select * from splitgraph.provenance(%s, %s)", out, final) == [(src, v1)]
    dependents = sql(conn, "select * from splitgraph.dependents(%s, 'v1')", src)
    assert [(r, h) for r, h in dependents if r == out] == [(out, h) for h in reversed(log(conn, out)[:-1])]
    assert sql(conn, "select * from splitgraph.provenance(%s, 'v1')", src) == [], "a commit has no provenance"
    fails(conn, "select splitgraph.reconstruct_splitfile(%s, 'v1')", src, sqlstate="55000")


def test_rebuild_against_another_version_of_a_source(conn, source):
    src, v1 = source
    out = fresh()
    final = build(conn, splitfile(src), out, {"TAG": "v1"})
    sql(conn, f"insert into \"{src}\".u values (4, 40)")
    v2 = value(conn, "select splitgraph.commit(%s)", src)
    sql(conn, "select splitgraph.tag(%s, %s, 'v2')", src, v2)
    rebuilt = value(conn, "select splitgraph.rebuild(%s, %s, %s)", out, final, json.dumps({src: "v2"}))
    assert rebuilt != final and log(conn, out)[0] == rebuilt
    assert value(conn, f'select count(*) from "{out}".joined') == 4
    assert sql(conn, "select * from splitgraph.provenance(%s, 'HEAD')", out) == [(src, v2)]
    before = counts(conn)
    assert value(conn, "select splitgraph.rebuild(%s, %s, %s)", out, rebuilt, json.dumps({src: v1})) == final
    assert counts(conn) == before, "back to v1: every layer is cached"
    fails(conn, "select splitgraph.rebuild(%s, 'HEAD', '{\"no/such\": \"v1\"}')", out, sqlstate="22023")


# ---------------------------------------------------------------------------------------------------------------
# Custom commands
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture
def commands(conn):
    sql(conn, """
        create or replace function public.sf_calc(repository text, args text[]) returns text language sql
            as $$ select md5(array_to_string(args, ',')) $$;
        create or replace function public.sf_add(repository text, args text[]) returns text language plpgsql as $$
        begin
            execute format('create table if not exists %I.added (v text)', repository);
            execute format('insert into %I.added select unnest($1)', repository) using args;
            return null;
        end $$;
        create or replace function public.sf_commit(repository text, args text[]) returns text language plpgsql as $$
        begin
            execute format('create table %I.%I (v int)', repository, args[1]);
            return splitgraph.commit(repository, 'committed by the command');
        end $$;
        select splitgraph.register_command('ADD', 'public.sf_calc(text, text[])', 'public.sf_add(text, text[])');
        select splitgraph.register_command('ADD_ALWAYS', null, 'public.sf_add(text, text[])');
        select splitgraph.register_command('COMMIT_TABLE', null, 'public.sf_commit(text, text[])');
    """)


def test_custom_commands_are_cached_by_their_hash(conn, commands):
    out = fresh()
    text = "ADD one 'two words'\nSQL CREATE TABLE n AS SELECT count(*) AS n FROM added"
    final = build(conn, text, out)
    assert sql(conn, f'select v from "{out}".added order by v') == [("one",), ("two words",)]
    added = log(conn, out)[1]
    assert added == sha(ROOT + hashlib.md5(b"one,two words").hexdigest()), "sha256(parent + calc_hash)"
    before = counts(conn)
    notices = Notices(conn)
    assert build(conn, text, out) == final and counts(conn) == before
    assert [s[1] for s in notices.steps()] == ["cached", "cached"]
    assert value(conn, "select splitgraph.reconstruct_splitfile(%s, 'HEAD')", out).startswith(
        "ADD one 'two words'\n")


def test_a_command_without_calc_hash_is_never_cached_nor_reproducible(conn, commands):
    out = fresh()
    first = build(conn, "ADD_ALWAYS x", out)
    second = build(conn, "ADD_ALWAYS x", out)
    assert first != second
    fails(conn, "select splitgraph.reconstruct_splitfile(%s, 'HEAD')", out, sqlstate="0A000")
    assert value(conn, "select splitgraph.reconstruct_splitfile(%s, 'HEAD', ignore_irreproducible => true)", out) \
        == "# Irreproducible Splitfile command of type CUSTOM (ADD_ALWAYS)\n"


def test_a_command_may_return_the_image_to_use(conn, commands):
    out = fresh()
    final = build(conn, "COMMIT_TABLE made\nSQL INSERT INTO made VALUES (1)", out)
    made = log(conn, out)[1]
    assert value(conn, "select comment from splitgraph.log(%s) where image_hash = %s", out, made) == \
        "committed by the command"
    assert value(conn, f'select count(*) from "{out}".made') == 1 and log(conn, out)[0] == final


def test_register_command_checks_who_and_what(conn, roles, commands):
    alice = roles.new("alice")
    fails(alice.conn, "select splitgraph.register_command('X', null, 'public.sf_add(text, text[])')",
          sqlstate="42501")
    sql(conn, "create or replace function public.sf_bad(a int) returns text language sql as $$ select '' $$")
    fails(conn, "select splitgraph.register_command('X', null, 'public.sf_bad(int)')", sqlstate="22023")
    fails(conn, "select splitgraph.register_command('FROM', null, 'public.sf_add(text, text[])')", sqlstate="42602")
    fails(conn, "select splitgraph.register_command('has space', null, 'public.sf_add(text, text[])')",
          sqlstate="42602")
    sql(conn, f"create or replace function public.sf_alices(repository text, args text[]) returns text "
              f"language sql as $$ select null::text $$; alter function public.sf_alices(text, text[]) owner to "
              f"{alice.name}")
    fails(conn, "select splitgraph.register_command('X', null, 'public.sf_alices(text, text[])')", sqlstate="42501")
    # a command whose function changed owner since it was registered is refused when a build uses it
    sql(conn, "select splitgraph.register_command('Y', null, 'public.sf_calc(text, text[])')")
    sql(conn, f"alter function public.sf_calc(text, text[]) owner to {alice.name}")
    try:
        fails(conn, "select splitgraph.build('Y a', 'sf/y')", sqlstate="42501")
    finally:
        sql(conn, "alter function public.sf_calc(text, text[]) owner to postgres")


# ---------------------------------------------------------------------------------------------------------------
# Who may build what
# ---------------------------------------------------------------------------------------------------------------

def test_a_role_builds_into_its_own_namespace_with_its_own_rights(conn, roles, source):
    src, _ = source
    alice = roles.new("alice")
    out = f"{alice.name}/built"
    assert not value(alice.conn, "select has_schema_privilege('splitgraph_meta', 'usage')")
    final = build(alice.conn, f'FROM {src}:v1 IMPORT t\nSQL CREATE TABLE mine AS SELECT * FROM "{src}:v1".u', out)
    assert value(conn, f"""select tableowner from pg_tables where schemaname = '{out}' and tablename = 'mine'""") \
        == alice.name, "the SQL step ran as its caller"
    assert value(alice.conn, f'select count(*) from "{out}".mine') == 3
    assert log(conn, out)[0] == final
    error = fails(alice.conn, "select splitgraph.build('SQL CREATE TABLE x (a int)', 'someone/else')",
                  sqlstate="42501")
    assert "may not change repository" in error.diag.message_primary
    assert not value(conn, "select exists (select from splitgraph.repositories() where repository = 'someone/else')")


def test_the_helpers_never_make_images_in_another_namespace(conn, roles, source):
    src, v1 = source
    alice, bob = roles.new("alice"), roles.new("bob")
    out = f"{alice.name}/target"
    build(alice.conn, f"FROM {src}:v1 IMPORT t", out)
    head = log(conn, out)[0]
    before = counts(conn)
    step = json.dumps({"type": "SQL", "sql": "SELECT 1", "sources": []})
    items = json.dumps([{"table": "u", "alias": "u"}])
    for call, args in [
        ("select splitgraph_internal.build_commit(%s, %s, %s, '[]', null)", (out, head, step)),
        ("select splitgraph_internal.build_import(%s, %s, %s, %s, null, %s, '{}', '[]')", (out, head, src, v1, items)),
        ("select splitgraph_internal.build_base(%s, %s, %s)", (out, src, v1)),
        ("select splitgraph_internal.build_finish(%s, %s)", (out, ROOT)),
        ("select splitgraph_internal.build_output(%s)", (out,)),
    ]:
        fails(bob.conn, call, *args, sqlstate="42501")
    assert counts(conn) == before and log(conn, out)[0] == head


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing the whole call: malformed input is an error, never a crash or a partial build
# ---------------------------------------------------------------------------------------------------------------

PIECES = ["FROM ", "EMPTY", " AS ", " IMPORT ", "ALL", "MOUNT ", "SQL ", "{", "}", "\n", "\\\n", "#", ", ", ":",
          "${P}", "'", "sf/src", "sf/fz", "t", "u", "SELECT 1", "CREATE TABLE x (a int)", "SELECT * FROM t", ";",
          "DROP SCHEMA public", "pg_sleep(1)", "é", "$$", "\\}", "(", ")",
          "FROM sf/src IMPORT t AS x\n", "SQL CREATE TABLE y AS SELECT * FROM x\n", "SQL {INSERT INTO y SELECT 1}\n",
          "FROM EMPTY AS sf/fz2\n", 'SQL SELECT * FROM "sf/src:latest".t\n', "SQL SELECT 1/0\n"]
# Whole commands, one of them maybe cut by a piece somewhere, so that builds also get past the reader.
LINES = ["FROM sf/src IMPORT t AS x", "FROM sf/src:latest IMPORT ALL", "FROM EMPTY", "# a comment",
         "SQL CREATE TABLE y AS SELECT * FROM x", "SQL {INSERT INTO y SELECT a + 1 FROM y}", "SQL DROP TABLE y",
         'SQL CREATE TABLE z AS SELECT count(*) AS n FROM "sf/src:latest".t', "SQL SELECT 1/0",
         "FROM sf/src IMPORT {SELECT a FROM t WHERE a > 0} AS q", "SQL ALTER TABLE x ADD COLUMN b int"]
# (a client cannot send NUL characters)
fuzz_texts = st.lists(st.sampled_from(PIECES) | st.text(st.characters(blacklist_characters="\x00"), max_size=3),
                      min_size=1, max_size=14).map("".join) | st.tuples(
    st.lists(st.sampled_from(LINES), min_size=1, max_size=6).map("\n".join), st.integers(0, 300),
    st.sampled_from(PIECES + [""] * 10)).map(lambda t: t[0][:t[1]] + t[2] + t[0][t[1]:])
FUZZ_COMMON = dict(deadline=None, database=None, suppress_health_check=[HealthCheck.function_scoped_fixture,
                                                                        HealthCheck.too_slow])


def check_build_of(conn, text):
    out = fresh("fz")
    before = counts(conn)
    try:
        with conn.transaction():
            result = value(conn, "select splitgraph.build(%s, %s, '{\"P\": \"sf/src\"}')", text, out)
    except psycopg2.Error as error:
        assert error.pgcode and error.pgcode != "XX000" and not error.pgcode.startswith("08"), \
            f"{error.pgcode}: {error}"
        assert counts(conn) == before, "a build that failed left images or objects"
        assert not value(conn, "select exists (select from splitgraph.repositories() where repository = %s)", out)
    else:
        assert result is None or len(result) == 64
    assert value(conn, "select 1") == 1, "the server is still there"


@pytest.fixture
def fuzz_source(conn):
    if not value(conn, "select exists (select from splitgraph.repositories() where repository = 'sf/src')"):
        sql(conn, "select splitgraph.init('sf/src')")
        sql(conn, 'create table "sf/src".t (a int)')
        sql(conn, "select splitgraph.commit('sf/src')")


@settings(max_examples=40, derandomize=True, **FUZZ_COMMON)
@given(text=fuzz_texts)
@example(text="FROM sf/src IMPORT t AS x\nSQL SELECT 1/0, ")
@example(text="FROM sf/src IMPORT {SELECT 1,} AS q")
def test_malformed_splitfiles_fail_cleanly(conn, fuzz_source, text):
    check_build_of(conn, text)


@pytest.mark.long
@settings(max_examples=int(os.environ.get("SG_LONG_EXAMPLES", "300")), **FUZZ_COMMON)
@given(text=fuzz_texts)
def test_malformed_splitfiles_fail_cleanly_long(long_selected, conn, fuzz_source, text):
    check_build_of(conn, text)
