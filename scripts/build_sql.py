#!/usr/bin/env python3
"""Build the extension's install script: the numbered sql/ folders in order, with the functions declared in
plpython/splitgraph_pl (@api and @helper, see declare.py) generated where sql/ holds the marker line
`-- @DECLARED_FUNCTIONS@` (their grants where it holds `-- @DECLARED_GRANTS@`).

    build_sql.py --version 0.1.0 --python-root /usr/lib/postgresql/15/lib/splitgraph > extension/splitgraph--0.1.0.sql
    build_sql.py --list          # the declared public functions, one "signature<TAB>doc" line each
    build_sql.py --readme README.md   # rewrite README.md's function table (between its markers) from the docs

The declarations are read with ast, so building needs no server and imports nothing of the package.
"""
import argparse
import ast
import pathlib
import re
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent
PACKAGE = ROOT / "plpython" / "splitgraph_pl"
MARKERS = ("-- @DECLARED_FUNCTIONS@", "-- @DECLARED_GRANTS@")
# The settings a row's text form depends on, pinned so the same rows hash the same in every session and engine.
# The settings a row's text depends on, and those that change how the SQL the code writes reads: the Python code
# quotes values as '...' with quotes doubled (names.literal), which a caller's "set standard_conforming_strings =
# off" would turn into text a backslash can end early; array_nulls = off reads NULL in an array's text as a string;
# quote_all_identifiers changes the names regclass and format('%I') print, which the code compares; and
# transform_null_equals changes what "= null" means.
SETTINGS = ("set timezone = 'UTC' set datestyle = 'ISO, MDY' set intervalstyle = 'postgres'\n"
            "set extra_float_digits = 1 set bytea_output = 'hex' set lc_monetary = 'C'\n"
            "set standard_conforming_strings = on set array_nulls = on set quote_all_identifiers = off\n"
            "set transform_null_equals = off")
API_OPTIONS = {"volatility", "security", "rows", "nullable", "settings"}
HELPER_OPTIONS = {"volatility", "security", "public"}


class DeclarationError(Exception):
    pass


class Argument:
    def __init__(self, text):
        match = re.match(r"^([a-z_][a-z0-9_]*)\s+(.+?)(?:\s+default\s+(.+))?$", text.strip(), re.IGNORECASE | re.S)
        if not match:
            raise DeclarationError(f"cannot read argument {text!r}")
        self.name, self.type, self.default = match.group(1), match.group(2).strip(), match.group(3)

    @property
    def optional_null(self):
        return self.default is not None and self.default.strip().lower() == "null"

    def sql(self, with_default=True):
        text = f"{self.name} {self.type}"
        return text + (f" default {self.default}" if with_default and self.default is not None else "")


def split_top_level(text):
    """Split on commas outside parentheses and quotes."""
    parts, depth, current, quote = [], 0, [], None
    for ch in text:
        if quote:
            current.append(ch)
            if ch == quote:
                quote = None
            continue
        if ch in "'\"":
            quote = ch
        elif ch == "(":
            depth += 1
        elif ch == ")":
            depth -= 1
        elif ch == "," and depth == 0:
            parts.append("".join(current))
            current = []
            continue
        current.append(ch)
    if "".join(current).strip():
        parts.append("".join(current))
    return parts


class Declaration:
    def __init__(self, kind, module, function, params, signature, doc, options, where):
        self.kind, self.module, self.function, self.where = kind, module, function, where
        match = re.match(r"^\s*([a-z_][a-z0-9_]*)\s*\((.*)\)\s+returns\s+(.+?)\s*$", signature, re.IGNORECASE | re.S)
        if not match:
            raise DeclarationError(f"{where}: cannot read signature {signature!r}")
        self.name = match.group(1)
        self.arguments = [Argument(a) for a in split_top_level(match.group(2))]
        self.returns = " ".join(match.group(3).split())
        self.doc = doc
        allowed = API_OPTIONS if kind == "api" else HELPER_OPTIONS
        unknown = set(options) - allowed
        if unknown:
            raise DeclarationError(f"{where}: unknown option(s) {sorted(unknown)}")
        self.volatility = options.get("volatility", "volatile")
        self.security = options.get("security", "definer")
        self.rows = options.get("rows")
        self.nullable = tuple(options.get("nullable", ()))
        self.settings = dict(options.get("settings", {}))
        if any(not re.fullmatch(r"[a-z_]+", k) or not re.fullmatch(r"[a-z0-9_]+", v) for k, v in self.settings.items()):
            raise DeclarationError(f"{where}: settings are {{name: value}} of lower-case words")
        self.public = bool(options.get("public", False))
        if self.volatility not in ("volatile", "stable"):
            raise DeclarationError(f"{where}: volatility is volatile or stable")
        if self.security not in ("definer", "invoker"):
            raise DeclarationError(f"{where}: security is definer or invoker")
        if self.rows not in (None, "temp"):
            raise DeclarationError(f"{where}: rows is temp or absent")
        names = [a.name for a in self.arguments]
        if params != names:
            raise DeclarationError(f"{where}: Python parameters {params} do not match the SQL arguments {names}")
        unknown = sorted(set(self.nullable) - set(names))
        if unknown:
            raise DeclarationError(f"{where}: nullable names unknown arguments {unknown}")
        if kind == "api":
            # the doc starts with the call: every argument by name, in order ("name = default" where it helps)
            call = re.match(rf"^{self.name}\((.*?)\): ", doc)
            listed = [a.split("=")[0].strip() for a in call.group(1).split(",") if a.strip()] if call else None
            if listed != names:
                raise DeclarationError(f"{where}: the doc of {self.name} must start with "
                                       f"'{self.name}({', '.join(names)}): '")

    @property
    def argument_types(self):
        return ", ".join(a.type for a in self.arguments)

    def required(self):
        return [a for a in self.arguments if not a.optional_null and a.name not in self.nullable]

    def result_columns(self):
        match = re.match(r"^table\s*\((.*)\)$", self.returns, re.IGNORECASE | re.S)
        if not match:
            raise DeclarationError(f"{self.where}: rows='temp' needs returns table (...)")
        return [Argument(c).name for c in split_top_level(match.group(1))]


def _literal(node, where):
    try:
        return ast.literal_eval(node)
    except ValueError as error:
        raise DeclarationError(f"{where}: decorator arguments must be literals") from error


def declarations():
    """Every @api and @helper of the package, in module then source order."""
    found = []
    for path in sorted(PACKAGE.glob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        for node in tree.body:
            if not isinstance(node, ast.FunctionDef):
                continue
            for deco in node.decorator_list:
                if not (isinstance(deco, ast.Call) and isinstance(deco.func, ast.Name)
                        and deco.func.id in ("api", "helper")):
                    continue
                where = f"{path.relative_to(ROOT)}:{deco.lineno}"
                if len(deco.args) != 2:
                    raise DeclarationError(f"{where}: give the signature and the doc")
                params = [a.arg for a in node.args.args]
                if not params or params[0] != "plpy":
                    raise DeclarationError(f"{where}: the first parameter of {node.name} must be plpy")
                options = {k.arg: _literal(k.value, where) for k in deco.keywords}
                found.append(Declaration(deco.func.id, path.stem, node.name, params[1:],
                                         _literal(deco.args[0], where), _literal(deco.args[1], where), options,
                                         where))
    seen = {}
    for d in found:
        key = ("splitgraph" if d.kind == "api" else "splitgraph_internal", d.name)
        if key in seen:
            raise DeclarationError(f"{d.where}: {key[0]}.{d.name} is also declared at {seen[key]}")
        seen[key] = d.where
    bodies = {d.name for d in found if d.kind == "api"}
    for d in found:
        if d.kind == "helper" and d.name in bodies:
            raise DeclarationError(f"{d.where}: helper {d.name} has the name of an API function's body")
    return found


def quote(text):
    return "'" + text.replace("'", "''") + "'"


def python_body(d):
    """The PL/Python function that imports the implementation and passes plpy in."""
    args = ", ".join(["plpy", "sg_function"] + [a.name for a in d.arguments])
    security = " security definer" if d.kind == "helper" and d.security == "definer" else ""
    # rows="temp": the body returns the name of the temporary table that holds the rows
    returns = "text" if d.rows == "temp" else d.returns
    sql = f"""create function splitgraph_internal.{d.name}({", ".join(a.sql(False) for a in d.arguments)})
returns {returns}
language plpython3u {d.volatility}{security}
set search_path = pg_catalog, pg_temp
{SETTINGS}
as $$
    GD.get("splitgraph") == "@EXTVERSION@" or plpy.execute("select splitgraph_internal.python_init()")
    from splitgraph_pl.declare import call as sg_call
    from splitgraph_pl.{d.module} import {d.function} as sg_function
    return sg_call({args})
$$;
"""
    if d.kind == "helper":
        sql = f"-- {d.doc}\n" + sql
    return sql


def door(d):
    """The public function: pins the settings, checks required arguments, calls the body, and raises its
    errors again without PL/Python's prefixes (and with the traceback of an internal error). A cancelled call is
    caught too (OTHERS does not include query_canceled) so that it also reads cleanly; it stays 57014."""
    call_args = ", ".join(a.name for a in d.arguments)
    body = f"splitgraph_internal.{d.name}({call_args})"
    declare = ["sg_state text;", "sg_message text;", "sg_detail text;", "sg_hint text;", "sg_context text;"]
    if d.rows == "temp":
        declare.append("sg_result text;")
        columns = ", ".join(d.result_columns())
        call = (f"sg_result := {body};\n"
                f"    return query execute pg_catalog.format('select {columns} from pg_temp.%I', sg_result);\n"
                f"    execute pg_catalog.format('drop table pg_temp.%I', sg_result);")
    elif d.returns.lower().startswith(("table", "setof")):
        call = f"return query select * from {body};"
    elif d.returns.lower() == "void":
        call = f"perform {body};"
    else:
        call = f"return {body};"
    variables = "\n".join("    " + line for line in declare)
    checks = "".join(f"""    if {a.name} is null then
        raise exception using errcode = '22004', message = '{a.name} must not be null';
    end if;
""" for a in d.required())
    extra = "".join(f"\nset {k} = {quote(v)}" for k, v in d.settings.items())
    return f"""-- {d.doc}
create function splitgraph.{d.name}({", ".join(a.sql() for a in d.arguments)})
returns {d.returns}
language plpgsql {d.volatility} security {d.security}
set search_path = pg_catalog, pg_temp
{SETTINGS}{extra}
as $$
declare
{variables}
begin
{checks}    {call}
exception when others or query_canceled then
    get stacked diagnostics sg_state = returned_sqlstate, sg_message = message_text,
        sg_detail = pg_exception_detail, sg_hint = pg_exception_hint, sg_context = pg_exception_context;
    select e.message, e.detail, e.hint into sg_message, sg_detail, sg_hint
    from splitgraph_internal.tidy_error(sg_state, sg_message, sg_detail, sg_hint, sg_context) e;
    if sg_detail is null and sg_hint is null then
        raise exception using errcode = sg_state, message = sg_message;
    elsif sg_hint is null then
        raise exception using errcode = sg_state, message = sg_message, detail = sg_detail;
    elsif sg_detail is null then
        raise exception using errcode = sg_state, message = sg_message, hint = sg_hint;
    else
        raise exception using errcode = sg_state, message = sg_message, detail = sg_detail, hint = sg_hint;
    end if;
end
$$;
comment on function splitgraph.{d.name}({d.argument_types}) is
{quote(d.doc)};
"""


def is_public(d):
    """A body runs with its door's rights, so only an invoker door's caller must be able to call it; a helper is
    public when declared so."""
    return d.public if d.kind == "helper" else d.security == "invoker"


def grants_sql(found):
    return "".join(f"grant execute on function splitgraph_internal.{d.name}({d.argument_types}) to public;\n"
                   for d in found if is_public(d))


def generated_sql(found):
    parts = ["-- Generated by scripts/build_sql.py from the @api and @helper declarations in plpython/splitgraph_pl.\n"]
    for d in found:
        parts.append(python_body(d))
        if d.kind == "api":
            parts.append(door(d))
    return "\n".join(parts)


def install_script(version, python_root):
    found = declarations()
    sources = sorted((ROOT / "sql").glob("*/*.sql"))
    generated = dict(zip(MARKERS, (generated_sql(found), grants_sql(found)), strict=True))
    out, placed = [], set()
    for path in sources:
        text = path.read_text()
        for marker, sql in generated.items():
            if marker in text:
                text = text.replace(marker, sql)
                placed.add(marker)
        out.append(f"-- source: {path.relative_to(ROOT)}\n{text}\n")
    missing = set(MARKERS) - placed
    if missing:
        raise DeclarationError(f"no file under sql/ holds the marker(s) {sorted(missing)}")
    return "".join(out).replace("@EXTVERSION@", version).replace("@PYTHON_LIB_ROOT@", python_root)


README_BEGIN = "<!-- functions: generated by `make readme` from the @api declarations -->"
README_END = "<!-- end of functions -->"


def readme_table(found):
    """The README's function table: one row per public function, from its one-line reference."""
    rows = ["| function | what it does |", "|---|---|"]
    for d in sorted((d for d in found if d.kind == "api"), key=lambda d: d.name):
        call, _, what = d.doc.partition("): ")
        what = what.replace("|", "\\|")
        rows.append(f"| `{call})` | {what} |")
    return "\n".join(rows)


def readme_with_table(text, found):
    before, begin, rest = text.partition(README_BEGIN)
    _, end, after = rest.partition(README_END)
    if not (begin and end):
        raise DeclarationError(f"README.md lacks the markers {README_BEGIN!r} and {README_END!r}")
    return f"{before}{README_BEGIN}\n{readme_table(found)}\n{README_END}{after}"


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--version")
    parser.add_argument("--python-root")
    parser.add_argument("--list", action="store_true", help="list the declared public functions")
    parser.add_argument("--readme", help="rewrite the function table of this README file")
    args = parser.parse_args()
    try:
        if args.readme:
            path = pathlib.Path(args.readme)
            path.write_text(readme_with_table(path.read_text(), declarations()))
            return 0
        if args.list:
            for d in declarations():
                if d.kind == "api":
                    print(f"{d.name}({', '.join(a.sql() for a in d.arguments)}) returns {d.returns}\t{d.doc}")
            return 0
        if not (args.version and args.python_root):
            parser.error("--version and --python-root are needed to build the install script")
        sys.stdout.write(install_script(args.version, args.python_root))
    except DeclarationError as error:
        print(f"build_sql.py: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
