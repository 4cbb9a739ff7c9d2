"""The check of an import query, done on its parse tree (pglast: PostgreSQL's own parser, so comments, quoted
identifiers, identifiers ending in `$$` and every other lexical corner are read exactly as the server reads them).

An import query must be exactly one SELECT (else 42601) that reads only the tables of its source and calls only
built-in functions that change nothing and look nothing up by name (else 42501):
- relations: unqualified names of the source's tables or of the query's own WITH queries in scope (a plain
  schema's tables may also be qualified with the schema's name); nothing else, not even a catalog;
- functions: those of pg_catalog only (the query runs with search_path = pg_catalog, pg_temp, where no
  function of a role can be found, and a name qualified with another schema is refused), and of those none that
  is volatile (random(), clock_timestamp(), timeofday() and gen_random_uuid() excepted), none named pg_*, none
  that takes or returns a reg* type, none that reads relations, settings or the server by name (query_to_xml,
  has_table_privilege, ...);
- types, operators and collations: only of pg_catalog when qualified, never a reg* type (a cast to regclass or
  regrole lists relation or role names);
- the columns it reads: of no type that a role's function casts to another (check_types), the one way left for
  a function of a role to run without being named.
What passes runs as the caller, with the caller's rights, and the text that runs is the parse tree printed back
(pglast), so what was checked is what runs.
"""
from . import db, errors, parsing
from . import tables as tbl
from .parsing import ParseError, RawStream, ast, parse_sql

# Types whose values are names looked up in the catalogs.
REG_TYPES = frozenset("""regclass regrole regproc regprocedure regnamespace regtype regoper regoperator regconfig
                         regdictionary regcollation""".split())
# Volatile built-ins that neither change anything nor read anything but the clock or a random source.
HARMLESS_VOLATILE = frozenset("random clock_timestamp timeofday gen_random_uuid".split())
# Built-ins (not named pg_*) that read relations, settings or server state by name, or run a query given as text.
READS_BY_NAME = frozenset("""
    query_to_xml query_to_xmlschema query_to_xml_and_xmlschema table_to_xml table_to_xmlschema
    table_to_xml_and_xmlschema cursor_to_xml cursor_to_xmlschema schema_to_xml schema_to_xmlschema
    schema_to_xml_and_xmlschema database_to_xml database_to_xmlschema database_to_xml_and_xmlschema ts_stat
    ts_rewrite ts_debug obj_description col_description shobj_description has_table_privilege
    has_column_privilege has_any_column_privilege has_schema_privilege has_database_privilege
    has_function_privilege has_sequence_privilege has_foreign_data_wrapper_privilege has_server_privilege
    has_language_privilege has_tablespace_privilege has_type_privilege has_parameter_privilege row_security_active
    current_setting set_config current_schemas inet_server_addr inet_server_port inet_client_addr
    inet_client_port version
""".split())
# Statements that change data, wherever they appear (a data-modifying WITH query included).
_WRITES = (ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
CATALOG = "pg_catalog"


def _names(items):
    return [getattr(item, "sval", None) for item in items or ()]


class _Check:
    """One walk over the parse tree: collects problems, the source tables read and the functions called."""

    def __init__(self, tables, schema):
        self.tables, self.schema = tables, schema
        self.refused, self.not_select = [], []
        self.read, self.direct, self.functions = set(), set(), set()

    def walk(self, node, scope):
        if isinstance(node, tuple | list):
            for item in node:
                self.walk(item, scope)
            return
        if not isinstance(node, ast.Node):
            return
        if isinstance(node, _WRITES):
            self.not_select.append("it changes data")
            return
        if isinstance(node, ast.SelectStmt):
            self._select(node, scope)
            return
        if isinstance(node, ast.RangeVar):
            self._relation(node, scope)
        elif isinstance(node, ast.FuncCall):
            self._function(_names(node.funcname))
        elif isinstance(node, ast.TypeName):
            self._type(node)
        elif isinstance(node, ast.A_Expr | ast.CollateClause):
            names = _names(node.name if isinstance(node, ast.A_Expr) else node.collname)
            if len(names) > 1 and names[:-1] != [CATALOG]:
                self.refused.append(f"it names {'.'.join(str(n) for n in names)}, of another schema")
        for attr in node:
            self.walk(getattr(node, attr), scope)

    def _select(self, node, scope):
        if node.intoClause is not None:
            self.not_select.append("SELECT INTO makes a table")
        if node.lockingClause:
            self.not_select.append("FOR UPDATE/SHARE locks rows")
        if node.withClause is not None:
            ctes = [c.ctename for c in node.withClause.ctes]
            for i, cte in enumerate(node.withClause.ctes):
                # a WITH query sees the earlier ones (all of them, and itself, when RECURSIVE)
                visible = ctes if node.withClause.recursive else ctes[:i]
                self.walk(cte, scope | frozenset(visible))
            scope = scope | frozenset(ctes)
        for attr in node:
            if attr not in ("withClause", "intoClause", "lockingClause"):
                self.walk(getattr(node, attr), scope)

    def _relation(self, node, scope):
        name = node.relname
        if node.catalogname is None and node.schemaname is None:
            if name in scope:
                return
            if name in self.tables:
                self.read.add(name)
                return
            self.refused.append(f'it reads "{name}", which is not a table of the source')
        elif node.catalogname is None and self.schema is not None and node.schemaname == self.schema:
            self.direct.add(name)
        else:
            qualified = ".".join(f'"{n}"' for n in (node.catalogname, node.schemaname, name) if n is not None)
            self.refused.append(f"it reads {qualified}, which is not a table of the source")

    def _function(self, names):
        if len(names) > 1 and names[:-1] != [CATALOG]:
            self.refused.append(f"it calls {'.'.join(str(n) for n in names)}, a function of another schema")
        else:
            self.functions.add(names[-1])

    def _type(self, node):
        names = _names(node.names)
        if node.pct_type:
            self.refused.append("it names the type of a column with %TYPE")
        elif len(names) > 1 and names[:-1] != [CATALOG]:
            self.refused.append(f"it names type {'.'.join(str(n) for n in names)}, of another schema")
        elif names and names[-1] in REG_TYPES:
            self.refused.append(f"it uses type {names[-1]}, whose values are names looked up in the catalogs")


def _function_problems(plpy, functions):
    """Problems with the built-in functions a query calls by these names (unqualified or in pg_catalog)."""
    problems = []
    for name in sorted(functions):
        if name.startswith("pg_"):
            problems.append(f"it calls {name}, which reaches into the server")
        elif name in READS_BY_NAME or any(name.startswith(t) for t in REG_TYPES):
            problems.append(f"it calls {name}, which reads relations, settings or the server by name")
    rows = {r["name"]: r for r in db.run(plpy, """
        select u.name, bool_or(p.provolatile = 'v') as volatile,
               bool_or(exists (select from pg_catalog.pg_type t
                               where t.oid = any(p.proargtypes::oid[] || p.prorettype)
                                 and t.typnamespace = 'pg_catalog'::regnamespace and t.typname::text = any($2::text[])))
                   as names_lookup,
               bool_or(p.oid is not null) as found,
               exists (select from pg_catalog.pg_type t
                       where t.typnamespace = 'pg_catalog'::regnamespace and t.typname::text = u.name) as is_type
        from pg_catalog.unnest($1::text[]) as u(name)
        left join pg_catalog.pg_proc p on p.proname::text = u.name and p.pronamespace = 'pg_catalog'::regnamespace
        group by u.name""", sorted(functions), sorted(REG_TYPES))}
    for name in sorted(functions):
        r = rows[name]
        if not r["found"] and not r["is_type"]:
            problems.append(f"it calls {name}, which is not a built-in function (an import query may call only "
                            "the functions of pg_catalog)")
        elif r["volatile"] and name not in HARMLESS_VOLATILE:
            problems.append(f"it calls {name}, which is volatile: it may change something")
        elif r["names_lookup"]:
            problems.append(f"it calls {name}, which looks names up in the catalogs")
    return problems


def check(plpy, query, tables, schema=None):
    """Check an import query (see the module's doc) over a source whose tables are `tables` (names) and, for a
    plain schema, whose schema is `schema`. Returns (the query's text as printed back from its parse tree, the
    source tables it reads unqualified, those of a plain schema it reads qualified with the schema's name)."""
    parsing.require(plpy)
    try:
        statements = parse_sql(query)
    except ParseError as error:
        errors.fail(plpy, "42601", "an import query must be exactly one SELECT over the source's tables",
                    detail=f"it does not parse: {error}")
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.SelectStmt):
        errors.fail(plpy, "42601", "an import query must be exactly one SELECT over the source's tables",
                    detail=f"it holds {len(statements)} statements" if len(statements) != 1
                    else f"it is a {type(statements[0].stmt).__name__}")
    found = _Check(frozenset(tables), schema)
    try:
        found.walk(statements[0].stmt, frozenset())
    except RecursionError:
        errors.fail(plpy, "54001", "the import query is nested too deeply to be checked",
                    hint="write it with fewer levels of nesting")
    if found.not_select:
        errors.fail(plpy, "42601", "an import query must be exactly one SELECT over the source's tables",
                    detail=found.not_select[0])
    problems = found.refused + (_function_problems(plpy, found.functions) if found.functions else [])
    if problems:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "the import query reaches outside its source: " + problems[0],
                    hint="refer only to the tables of the source, unqualified, and call only built-in functions "
                         "that change nothing")
    try:
        text = RawStream()(statements[0].stmt)
    except RecursionError:
        errors.fail(plpy, "54001", "the import query is nested too deeply to be checked",
                    hint="write it with fewer levels of nesting")
    except Exception as error:  # noqa: BLE001 - pglast cannot print every tree back: say so rather than fail inside
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED, "the import query uses syntax that cannot be checked",
                    detail=f"{type(error).__name__}: {error}", hint="write it with more common syntax")
    return text, found.read, found.direct


def check_types(plpy, types):
    """Refuse (42501) the column types of the tables a query reads when a cast from one of them (or from a type
    they are made of: tables.TYPES_REACHED) is a function outside
    pg_catalog: an import query would run that role's function, with the caller's rights, without naming it."""
    found = db.one(plpy, tbl.TYPES_REACHED + """
        select pg_catalog.format_type(c.castsource, null) as source,
               pg_catalog.format_type(c.casttarget, null) as target, c.castfunc::regprocedure::text as function
        from pg_catalog.pg_cast c
        join pg_catalog.pg_proc p on p.oid = c.castfunc
        where c.castsource in (select r.oid from reach r where r.oid is not null)
          and p.pronamespace <> 'pg_catalog'::regnamespace
        order by 1, 2 limit 1""", sorted(set(types)))
    if found is not None:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f"the import query reads values of type {found['source']}, whose cast to {found['target']} is "
                    f"function {found['function']}: an import query runs no function of a role",
                    hint="import the table itself (import_table), or drop the cast")
