"""Issue 14, the Splitfile language (plpython/splitgraph_pl/splitfiles.py, pure Python: no server): commands,
parameters, continuations, comments, blocks, stages; errors that name the line and column and what was
expected; writing commands back (reconstruct_splitfile) reads back as the same commands; and hypothesis fuzzing:
any text either reads or fails with a SplitfileError that points into the text, never another exception.

The default run tries a bounded number of examples; the bigger profile is the test marked `long` (runs with
-m long or SG_LONG=1)."""
import os
import pathlib
import sys

import pytest
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent / "plpython"))
from splitgraph_pl import splitfiles  # noqa: E402
from splitgraph_pl.splitfiles import SplitfileError, parse  # noqa: E402


def error_of(text, params=None, output="ns/out"):
    with pytest.raises(SplitfileError) as info:
        parse(text, params or {}, output)
    return info.value


def commands(text, params=None, output="ns/out"):
    return parse(text, params or {}, output).stages


def test_every_command():
    stages = commands("""# a comment line
FROM EMPTY AS ns/first
FROM ns/src:v1 IMPORT t1, t2 AS two, {SELECT a, b FROM t3 WHERE c = 'x'} AS three
FROM MOUNT postgres_fdw alice:s3cr:t@db.example.com:5432 '{"dbname": "shop", "remote_schema": "s"}' IMPORT ALL
SQL CREATE TABLE x AS SELECT * FROM t1
SQL {
    UPDATE x SET a = 1;
    DELETE FROM x WHERE b IS NULL
}
MY_COMMAND one 'two words' "three"  # a comment
FROM ns/src AS ns/second
FROM ns/first IMPORT ALL
""")
    assert [s.output for s in stages] == ["ns/first", "ns/second"]
    first, second = stages
    assert first.base is None
    kinds = [(c.kind, c.line) for c in first.commands]
    assert kinds == [("IMPORT", 3), ("IMPORT", 4), ("SQL", 5), ("SQL", 6), ("CUSTOM", 10)]
    imp = first.commands[0]
    assert (imp.source.repository, imp.source.ref) == ("ns/src", "v1")
    assert [(i.table, i.query and i.query.value, i.alias) for i in imp.items] == [
        ("t1", None, "t1"), ("t2", None, "two"), (None, "SELECT a, b FROM t3 WHERE c = 'x'", "three")]
    mount = first.commands[1].source
    assert mount.handler == "postgres_fdw"
    assert mount.options == {"dbname": "shop", "remote_schema": "s", "username": "alice", "password": "s3cr:t",
                             "host": "db.example.com", "port": 5432}
    assert first.commands[1].items is None
    assert first.commands[2].sql.value == "CREATE TABLE x AS SELECT * FROM t1"
    assert "UPDATE x SET a = 1;\n    DELETE FROM x WHERE b IS NULL" in first.commands[3].sql.value
    assert (first.commands[4].name, first.commands[4].args) == ("MY_COMMAND", ["one", "two words", "three"])
    assert (second.base.image.repository, second.base.image.ref) == ("ns/src", None)
    assert second.commands[0].items is None


def test_the_first_stage_writes_the_output_repository_unless_it_says_as():
    assert [s.output for s in commands("SQL CREATE TABLE t (a int)")] == ["ns/out"]
    assert [s.output for s in commands("FROM EMPTY\nSQL CREATE TABLE t (a int)")] == ["ns/out"]
    assert [s.output for s in commands("FROM a/b\nFROM EMPTY AS c/d\nFROM e/f")] == ["ns/out", "c/d", "c/d"]
    assert "no output repository" in error_of("SQL SELECT 1", output=None).message


def test_parameters_are_substituted_and_escaped_ones_kept():
    stage, = commands("FROM ${SRC}:${TAG} IMPORT t\nSQL SELECT '\\${X}', '${V}'",
                      {"SRC": "ns/src", "TAG": "v2", "V": "it''s"})
    assert (stage.commands[0].source.repository, stage.commands[0].source.ref) == ("ns/src", "v2")
    assert stage.commands[1].sql.value == "SELECT '${X}', 'it''s'"


def test_missing_parameters_are_all_named_with_the_first_ones_place():
    error = error_of("SQL SELECT 1\nFROM ns/src:${TAG} IMPORT ${TABLE}, ${TAG}")
    assert error.code == "22023"
    assert error.message == "no value for parameters TAG, TABLE"
    assert (error.line, error.column) == (2, 13)


def test_continuations_join_lines_outside_blocks():
    stage, = commands("FROM ns/src \\\n   IMPORT a, \\\n b AS c\nSQL SELECT 1 \\\n + 2\nCMD x \\\ny")
    assert [i.alias for i in stage.commands[0].items] == ["a", "c"]
    assert stage.commands[1].sql.value == "SELECT 1  + 2"
    assert stage.commands[2].args == ["x", "y"]
    stage, = commands("SQL {SELECT 1 \\\n + 2}")
    assert stage.commands[0].sql.value == "SELECT 1 \\\n + 2", "a block is taken as written"


def test_blocks_span_lines_and_escape_their_closing_brace():
    stage, = commands("SQL {SELECT '{\"a\": 1\\}'::jsonb}  # comment\nFROM x IMPORT {SELECT '\\}' AS b} AS q")
    assert stage.commands[0].sql.value == "SELECT '{\"a\": 1}'::jsonb"
    assert stage.commands[1].items[0].query.value == "SELECT '}' AS b"


def test_a_hash_sign_inside_a_one_line_sql_statement_is_sql():
    stage, = commands("SQL SELECT 5 # 3")
    assert stage.commands[0].sql.value == "SELECT 5 # 3"


@pytest.mark.parametrize("text, line, column, expected", [
    ("FROM", 1, 5, "expected EMPTY, MOUNT or repository[:tag] after FROM"),
    ("\n\nFROM ns/x  extra", 3, 12, "unexpected 'e': expected the end of the line"),
    ("FROM a/b/c IMPORT t", 1, 6, "invalid repository name 'a/b/c'"),
    ("FROM ns/x:", 1, 11, "expected a tag, branch or image hash after :"),
    ("FROM ns/x@v1", 1, 10, "unexpected '@' in an image reference"),
    ("FROM ns/x IMPORT", 1, 17, "expected a space after IMPORT"),
    ("FROM ns/x IMPORT t,", 1, 20, "expected a table name or a {query} to import"),
    ("FROM ns/x IMPORT {SELECT 1}", 1, 18, "a query needs a name"),
    ("FROM ns/x IMPORT a, b AS a", 1, 21, 'table "a" is imported twice'),
    ("FROM ns/x IMPORT t AS", 1, 22, "expected a space after AS"),
    ("FROM ns/x IMPORT \"unterminated", 1, 18, "unterminated quoted name"),
    ("FROM EMPTY IMPORT t", 1, 12, "FROM EMPTY has nothing to import"),
    ("SQL {SELECT 1\n\n", 1, 5, "unterminated { block"),
    ("SQL", 1, 4, "expected a statement or a {block} after SQL"),
    ("SQL {   }", 1, 1, "expected a SQL statement"),
    ("  SQL FILE q.sql", 1, 3, "SQL FILE is read by the client"),
    ("CMD 'open", 1, 1, "cannot split the arguments of CMD"),
    ("FROM MOUNT h 'not json' IMPORT t", 1, 14, "the mount options are not JSON"),
    ("FROM MOUNT h '[1]' IMPORT t", 1, 14, "the mount options must be a JSON object"),
    ("FROM MOUNT h user@host:1 '{}' IMPORT t", 1, 14, "expected a connection as user:password@host:port"),
    ("FROM MOUNT h '{}' t", 1, 19, "expected IMPORT after the mount options"),
    ("FROM ${1} IMPORT t", 1, 6, "expected a parameter name"),
    ("  ;", 1, 3, "expected a command"),
    ("", 1, 1, "the Splitfile has no command"),
])
def test_errors_name_the_line_the_column_and_what_was_expected(text, line, column, expected):
    error = error_of(text)
    assert (error.line, error.column) == (line, column), error.text()
    assert expected in error.message
    assert error.text().startswith(f"Splitfile line {line}, column {column}: ")


def test_an_error_inside_a_parameter_value_points_at_the_parameter():
    error = error_of("FROM ns/src IMPORT ${TABLES}", {"TABLES": "a, {b}"})
    assert (error.line, error.column) == (1, 20)
    assert error.parameter == "TABLES"
    assert "(in the value of parameter TABLES)" in error.text()


def test_the_detail_shows_the_line_with_a_caret():
    error = error_of("SQL SELECT 1\nFROM\tns/x junk")
    assert error.detail() == "FROM ns/x junk\n          ^"


def test_keywords_are_upper_case():
    stage, = commands("from ns/x import t")
    assert (stage.commands[0].kind, stage.commands[0].name) == ("CUSTOM", "from")
    stage, = commands("FROM empty")
    assert stage.base.image.repository == "empty", "EMPTY is a keyword, empty a repository"


def test_positions_inside_statements_map_back_to_the_text():
    parsed = parse("# first\nSQL {SELECT 1;\n  SELEC 2}", {}, "o")
    sql = parsed.stages[0].commands[0].sql
    at = sql.value.index("SELEC 2")
    assert parsed.error("x", sql.position(at)).line == 3
    assert parsed.error("x", sql.position(at)).column == 3


# ---------------------------------------------------------------------------------------------------------------
# Writing commands back
# ---------------------------------------------------------------------------------------------------------------

def test_written_commands_read_back_as_themselves():
    sql = "SELECT '}' AS a, '${X}' AS b, $$\\}$$ AS c FROM \"odd name\"\nWHERE x = '{'"
    query = "SELECT * FROM t WHERE j = '{\"a\": 1}'"
    text = "\n".join([
        splitfiles.import_line("ns/src:" + "a" * 64, [{"table": "t"}, {"table": "odd name"}, {"query": query}],
                               ["t", "renamed", "q"]),
        splitfiles.sql_line(sql),
        splitfiles.custom_line("CMD", ["one", "two words", "it's", "${Y}", "#x"]),
    ])
    stage, = commands(text)
    imp, step, custom = stage.commands
    assert [(i.table, i.query and i.query.value, i.alias) for i in imp.items] == [
        ("t", None, "t"), ("odd name", None, "renamed"), (None, query, "q")]
    assert step.sql.value == sql
    assert custom.args == ["one", "two words", "it's", "${Y}", "#x"]


# ---------------------------------------------------------------------------------------------------------------
# Fuzzing: any text reads, or fails with a SplitfileError that points into it
# ---------------------------------------------------------------------------------------------------------------

PIECES = ["FROM", "EMPTY", "AS", "IMPORT", "ALL", "MOUNT", "SQL", "FILE", " ", " ", "  ", "\t", "\n", "\n", "\\\n",
          "\\", "#", ",", ":", "{", "}", "\\}", "'", '"', "${", "${P}", "${Q}", "\\${", "$", "@", "ns/src", "ns/out",
          "t1", "a_b", "v1", "x" * 70, "SELECT 1", "é", "\r\n", "{}", "'{}'", "u:p@h:5432", "CMD", "-", "/", ";"]
texts = st.lists(st.sampled_from(PIECES) | st.text(max_size=4), max_size=30).map("".join)
params = st.dictionaries(st.sampled_from(["P", "Q", "R"]), st.sampled_from(["", "x", "a, b", "{", "}\n", "${P}",
                                                                              "ns/src:v1", "'"]), max_size=3)
COMMON = dict(deadline=None, database=None,
              suppress_health_check=[HealthCheck.too_slow, HealthCheck.function_scoped_fixture])
DEFAULT = settings(max_examples=400, derandomize=True, **COMMON)
LONG = settings(max_examples=int(os.environ.get("SG_LONG_EXAMPLES", "20000")), **COMMON)


def check_text(text, values):
    try:
        parsed = parse(text, values, "ns/out")
    except SplitfileError as error:
        lines = text.split("\n")
        assert 1 <= error.line <= len(lines), (error.line, text)
        assert 1 <= error.column <= len(lines[error.line - 1]) + 1, (error.column, text)
        assert error.code in ("42601", "22023", "0A000")
        error.text()
        error.detail()
        return
    for stage in parsed.stages:
        assert splitfiles.names.is_repository(stage.output)
        for command in stage.commands:
            assert command.kind in ("IMPORT", "SQL", "CUSTOM")
            assert 1 <= command.line <= text.count("\n") + 1


@DEFAULT
@given(text=texts, values=params)
@example(text="FROM ns/src IMPORT {" + "(" * 3000 + "}", values={})
@example(text="FROM MOUNT h '" + "[" * 5000 + "' IMPORT t", values={})
@example(text="FROM MOUNT h u:p@h:" + "9" * 5000 + " '{}' IMPORT t", values={})
@example(text="${P}", values={"P": "FROM ns/src IMPORT {"})
def test_any_text_reads_or_fails_with_a_position(text, values):
    check_text(text, values)


@pytest.mark.long
@LONG
@given(text=texts, values=params)
def test_any_text_reads_or_fails_with_a_position_long(long_selected, text, values):
    check_text(text, values)
