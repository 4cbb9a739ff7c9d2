"""The declarations that generate the SQL, and what the generated doors do with errors: a deliberate error reads
exactly as written (no PL/Python prefix, no context about the plumbing), an internal error keeps its Python
traceback. Also the shape of the package the declarations live in: no import cycles, no imports inside
functions, no module using another's private names."""
import ast
import pathlib
import sys

import psycopg2
import pytest

from conftest import sql

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "plpython" / "splitgraph_pl"
sys.path.insert(0, str(ROOT / "scripts"))
sys.path.insert(0, str(ROOT / "plpython"))
import build_sql  # noqa: E402

from splitgraph_pl import declare  # noqa: E402


def declaration(signature, params, doc=None, **options):
    return build_sql.Declaration("api", "m", "f", params, signature, doc or signature.split(")")[0] + "): x",
                                 options, "test")


def test_a_declaration_reads_its_signature():
    d = declaration("f(a text, b integer default 3, c text default null) returns table (x text, y int)",
                    ["a", "b", "c"], "f(a, b, c): x")
    assert [a.name for a in d.arguments] == ["a", "b", "c"]
    assert d.argument_types == "text, integer, text"
    assert [a.name for a in d.required()] == ["a", "b"], "an argument with a null default is optional"


@pytest.mark.parametrize("signature, params, doc", [
    ("f(a text) returns void", ["b"], "f(a): x"),                 # Python parameters differ from the SQL ones
    ("f(a text) returns void", ["a"], "f(): x"),                  # the doc does not list the arguments
    ("f(a text) returns void", ["a"], "g(a): x"),                 # the doc names another function
    ("f a text returns void", ["a"], "f(a): x"),                  # not a signature
])
def test_a_declaration_that_does_not_fit_is_refused(signature, params, doc):
    with pytest.raises(build_sql.DeclarationError):
        declaration(signature, params, doc)


def test_every_declaration_of_the_package_builds():
    found = build_sql.declarations()
    assert {d.name for d in found if d.kind == "api"} >= {"init", "commit", "checkout", "reset", "import_query"}
    assert "create function splitgraph.commit(" in build_sql.generated_sql(found)


class FakePlpy:
    """What declare.call needs of plpy: its exception classes and error()."""

    class Error(Exception):
        pass

    class SPIError(Exception):
        pass

    def __init__(self):
        self.raised = None

    def error(self, message, **kwargs):
        self.raised = (message, kwargs)
        raise self.Error(message)


def test_an_internal_error_keeps_its_python_traceback():
    plpy = FakePlpy()

    def broken(plpy, key):
        return {}[key]

    with pytest.raises(FakePlpy.Error):
        declare.call(plpy, broken, "missing")
    message, kwargs = plpy.raised
    assert message == "KeyError: 'missing'"
    assert kwargs["sqlstate"] == "XX000"
    assert "Traceback" in kwargs["detail"] and "in broken" in kwargs["detail"]


def test_deliberate_and_sql_errors_pass_through_untouched():
    plpy = FakePlpy()
    for exception in (FakePlpy.Error("deliberate"), FakePlpy.SPIError("from SQL")):
        def fails(plpy, exception=exception):
            raise exception

        with pytest.raises(type(exception)):
            declare.call(plpy, fails)
    assert plpy.raised is None


def test_a_deliberate_error_reads_as_written(conn):
    with pytest.raises(psycopg2.Error) as info:
        sql(conn, "select splitgraph.log('nobody/nothing')")
    diag = info.value.diag
    assert info.value.pgcode == "42704"
    assert diag.message_primary == 'repository "nobody/nothing" does not exist'
    assert diag.message_hint.startswith("create it with splitgraph.init")
    context = diag.context or ""
    assert "PL/Python" not in context and "splitgraph_internal" not in context and "Traceback" not in context


def test_tidy_error_marks_internal_errors_and_strips_prefixes(conn):
    rows = sql(conn, """select message, detail, hint from splitgraph_internal.tidy_error(
                            'XX000', 'spiexceptions.InternalError: plpy.Error: KeyError: ''x''',
                            'Traceback (most recent call last): ...', null, null)""")
    message, detail, hint = rows[0]
    assert message == "KeyError: 'x'" and detail.startswith("Traceback") and "bug" in hint
    rows = sql(conn, """select message, detail, hint from splitgraph_internal.tidy_error(
                            '42704', 'plpy.Error: image "x" not found', '', 'give a hash', 'PL/Python function')""")
    assert rows == [('image "x" not found', None, "give a hash")]


def _imports(path):
    """(modules of the package imported at module level, imports inside functions, private names used)."""
    tree = ast.parse(path.read_text())
    imported, local, private = set(), [], []
    for node in tree.body:
        if isinstance(node, ast.ImportFrom) and node.level == 1:
            imported |= {node.module.split(".")[0]} if node.module else {a.name for a in node.names}
    for node in ast.walk(tree):
        if isinstance(node, ast.FunctionDef):
            local += [f"{node.name}" for n in ast.walk(node) if isinstance(n, (ast.Import, ast.ImportFrom))]
        if (isinstance(node, ast.Attribute) and isinstance(node.value, ast.Name) and node.attr.startswith("_")
                and not node.attr.startswith("__") and node.value.id not in ("self", "plpy", "sys", "os")):
            private.append(f"{node.value.id}.{node.attr}")
    return imported, local, private


def test_the_package_has_no_cycles_no_local_imports_and_no_private_crossings():
    graph, problems = {}, []
    for path in sorted(PACKAGE.glob("*.py")):
        imported, local, private = _imports(path)
        graph[path.stem] = imported
        problems += [f"{path.stem}: import inside {f}()" for f in local]
        problems += [f"{path.stem}: uses {p}" for p in private]

    def visit(module, stack):
        if module in stack:
            problems.append("cycle: " + " -> ".join(stack[stack.index(module):] + [module]))
            return
        for dependency in graph.get(module, ()):
            visit(dependency, stack + [module])

    for module in graph:
        visit(module, [])
    assert not problems, "\n".join(sorted(set(problems)))
