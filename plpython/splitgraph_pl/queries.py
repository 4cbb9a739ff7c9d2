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
from . import db, errors, names, parsing
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
    """Problems with the built-in functions a query calls by these names (unqualified or in pg_catalog), as
    (name, message) pairs."""
    problems = []
    for name in sorted(functions):
        if name.startswith("pg_"):
            problems.append((name, f"it calls {name}, which reaches into the server"))
        elif name in READS_BY_NAME or any(name.startswith(t) for t in REG_TYPES):
            problems.append((name, f"it calls {name}, which reads relations, settings or the server by name"))
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
            problems.append((name, f"it calls {name}, which is not a built-in function (only the functions of "
                                   "pg_catalog may be called)"))
        elif r["volatile"] and name not in HARMLESS_VOLATILE:
            problems.append((name, f"it calls {name}, which is volatile: it may change something"))
        elif r["names_lookup"]:
            problems.append((name, f"it calls {name}, which looks names up in the catalogs"))
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
    problems = found.refused + [m for _, m in (_function_problems(plpy, found.functions) if found.functions else [])]
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


# ---------------------------------------------------------------------------------------------------------------
# Splitfile SQL steps
# ---------------------------------------------------------------------------------------------------------------
# A SQL step changes the output's tables, and reads them and tables of images ("ns/repo:tag".table). It is
# checked on its parse tree like an import query (functions of pg_catalog only, none that changes anything
# but the output's tables or reads the server's state by name; types of pg_catalog, no reg* type), and the
# statements must be table-level DML and DDL. What runs is the tree printed back, with every relation of the
# output qualified with its checkout schema and every image table replaced by a subquery reading its objects.

class Refused(Exception):
    """A SQL step that does not parse or is not allowed: why, and where (a character offset in its text)."""

    def __init__(self, message, location, code=errors.INSUFFICIENT_PRIVILEGE, hint=None):
        super().__init__(message)
        self.message, self.location, self.code, self.hint = message, location or 0, code, hint


_STEP_HINT = ("a SQL step may run SELECT, INSERT, UPDATE, DELETE, MERGE, TRUNCATE, CREATE/ALTER/DROP TABLE, "
              "CREATE/DROP INDEX and COMMENT ON TABLE/COLUMN over the output's tables (unqualified) and read tables "
              'of images ("namespace/repository:tag".table), calling built-in functions that change nothing')
# Statements a step may run; the DDL among them only on tables (and indexes) of the output.
_DML = (ast.SelectStmt, ast.InsertStmt, ast.UpdateStmt, ast.DeleteStmt, ast.MergeStmt)
_ALTER_TABLE = frozenset("""
    AT_AddColumn AT_ColumnDefault AT_DropNotNull AT_SetNotNull AT_DropExpression AT_SetStatistics AT_SetStorage
    AT_SetCompression AT_DropColumn AT_AddConstraint AT_AlterConstraint AT_ValidateConstraint AT_DropConstraint
    AT_AlterColumnType AT_SetLogged AT_SetUnLogged AT_SetRelOptions AT_ResetRelOptions AT_AddInherit
    AT_DropInherit AT_AttachPartition AT_DetachPartition AT_AddIdentity AT_SetIdentity AT_DropIdentity
""".split())
# What a refused statement is called in messages (others: from their node's name).
_STATEMENT_NAMES = {"VariableSetStmt": "SET", "VariableShowStmt": "SHOW", "LockStmt": "LOCK", "CopyStmt": "COPY",
                    "DoStmt": "DO", "CallStmt": "CALL", "CreateFunctionStmt": "CREATE FUNCTION",
                    "CreateSchemaStmt": "CREATE SCHEMA", "CreateExtensionStmt": "CREATE EXTENSION",
                    "ViewStmt": "CREATE VIEW", "CreateTrigStmt": "CREATE TRIGGER", "RuleStmt": "CREATE RULE",
                    "CreatePolicyStmt": "CREATE POLICY", "GrantStmt": "GRANT/REVOKE", "GrantRoleStmt": "GRANT role",
                    "TransactionStmt": "a transaction command", "CreateSeqStmt": "CREATE SEQUENCE",
                    "CreateRoleStmt": "CREATE ROLE", "ExecuteStmt": "EXECUTE", "PrepareStmt": "PREPARE",
                    "CreateForeignTableStmt": "CREATE FOREIGN TABLE",
                    "DefineStmt": "CREATE (aggregate, operator, type)",
                    "AlterOwnerStmt": "ALTER ... OWNER", "AlterObjectSchemaStmt": "ALTER ... SET SCHEMA",
                    "DeclareCursorStmt": "DECLARE", "ExplainStmt": "EXPLAIN", "VacuumStmt": "VACUUM/ANALYZE",
                    "NotifyStmt": "NOTIFY", "ListenStmt": "LISTEN", "LoadStmt": "LOAD",
                    "CreateStatsStmt": "CREATE STATISTICS", "RefreshMatViewStmt": "REFRESH MATERIALIZED VIEW",
                    "SecLabelStmt": "SECURITY LABEL", "CheckPointStmt": "CHECKPOINT", "AlterSeqStmt": "ALTER SEQUENCE",
                    "CompositeTypeStmt": "CREATE TYPE", "CreateEnumStmt": "CREATE TYPE",
                    "CreateRangeStmt": "CREATE TYPE",
                    "CreatedbStmt": "CREATE DATABASE", "DropdbStmt": "DROP DATABASE", "AlterSystemStmt": "ALTER SYSTEM",
                    "CreateForeignServerStmt": "CREATE SERVER", "CreateEventTrigStmt": "CREATE EVENT TRIGGER",
                    "CreateTableSpaceStmt": "CREATE TABLESPACE", "CreatePLangStmt": "CREATE LANGUAGE"}
_SERVER_STATE = frozenset("SVFOP_CURRENT_ROLE SVFOP_CURRENT_USER SVFOP_USER SVFOP_SESSION_USER SVFOP_CURRENT_CATALOG "
                          "SVFOP_CURRENT_SCHEMA".split())


def _statement_name(node):
    name = type(node).__name__
    if name in _STATEMENT_NAMES:
        return _STATEMENT_NAMES[name]
    words = []
    for ch in name.removesuffix("Stmt"):
        if ch.isupper() and words:
            words.append(" ")
        words.append(ch.upper())
    return "".join(words)


def _kind(value):
    return getattr(value, "name", str(value))


class _StepWalk:
    """One walk over a step's statements. mode "check" collects what is refused, the images it reads and the
    functions it calls; "canonical" prints image references pinned (pins: schema as written -> "repo:hash")
    and the output's tables unqualified; "execute" qualifies the output's tables with the checkout schema and
    puts in place of each image table the subquery reads[(schema as written, table)] (a SELECT text)."""

    def __init__(self, output, mode="check", pins=None, reads=None, schema=None):
        self.output, self.mode = output, mode
        self.pins, self.reads, self.schema = pins or {}, reads or {}, schema
        self.refused, self.references, self.functions = [], {}, {}
        self.statement_location = 0  # where the statement being walked starts (for what has no location)

    def refuse(self, message, node):
        location = getattr(node, "location", None)
        self.refused.append((message, self.statement_location if location is None else location))

    def _own(self, schema):
        return schema is None or schema in (self.output, names.schema_of(self.output))

    # -- statements ---------------------------------------------------------------------------------------------
    def statement(self, node):
        """Check the kind of a top-level statement; then walk it."""
        if isinstance(node, _DML):
            pass
        elif isinstance(node, ast.CreateStmt):
            if node.tablespacename is not None:
                self.refuse("CREATE TABLE ... TABLESPACE is not allowed", node.relation)
            if node.accessMethod not in (None, "heap"):
                self.refuse(f"CREATE TABLE ... USING {node.accessMethod} is not allowed", node.relation)
        elif isinstance(node, ast.CreateTableAsStmt):
            if _kind(node.objtype) != "OBJECT_TABLE":
                self.refuse("CREATE MATERIALIZED VIEW is not allowed", node.into.rel)
            if node.into.tableSpaceName is not None or node.into.accessMethod not in (None, "heap"):
                self.refuse("CREATE TABLE AS with a tablespace or an access method is not allowed", node.into.rel)
        elif isinstance(node, ast.AlterTableStmt):
            if _kind(node.objtype) != "OBJECT_TABLE":
                self.refuse(f"ALTER {_kind(node.objtype).removeprefix('OBJECT_')} is not allowed", node.relation)
            for cmd in node.cmds or ():
                if _kind(cmd.subtype) not in _ALTER_TABLE:
                    what = _kind(cmd.subtype).removeprefix("AT_")
                    self.refuse(f"ALTER TABLE ... {what} is not allowed (only columns, constraints, identity, "
                                "storage and inheritance of the output's tables may change)", node.relation)
        elif isinstance(node, ast.RenameStmt):
            if _kind(node.renameType) not in ("OBJECT_TABLE", "OBJECT_COLUMN", "OBJECT_TABCONSTRAINT", "OBJECT_INDEX") \
                    or _kind(node.relationType) not in ("OBJECT_TABLE", "OBJECT_INDEX", "OBJECT_ACCESS_METHOD"):
                self.refuse(f"renaming a {_kind(node.renameType).removeprefix('OBJECT_').lower()} is not allowed",
                            node.relation)
        elif isinstance(node, ast.DropStmt):
            if _kind(node.removeType) not in ("OBJECT_TABLE", "OBJECT_INDEX") or node.concurrent:
                self.refuse(f"DROP {_kind(node.removeType).removeprefix('OBJECT_')} is not allowed", node)
            else:
                node.objects = tuple(self._object_name(tuple(n), 1, node) for n in node.objects or ())
        elif isinstance(node, ast.IndexStmt):
            if node.concurrent or node.tableSpace is not None:
                self.refuse("CREATE INDEX CONCURRENTLY or with a tablespace is not allowed", node.relation)
        elif isinstance(node, ast.TruncateStmt):
            pass
        elif isinstance(node, ast.CommentStmt):
            kind = _kind(node.objtype)
            if kind not in ("OBJECT_TABLE", "OBJECT_COLUMN", "OBJECT_INDEX") or not isinstance(node.object, tuple):
                self.refuse(f"COMMENT ON {kind.removeprefix('OBJECT_')} is not allowed", node)
            else:
                node.object = self._object_name(node.object, 2 if kind == "OBJECT_COLUMN" else 1, node)
        else:
            self.refuse(f"{_statement_name(node)} is not allowed", node)
            return node
        if isinstance(node, _DML):
            return self.visit(node, frozenset())
        return self._children(node, frozenset())

    def _children(self, node, scope):
        for attr in node:
            value = getattr(node, attr)
            if isinstance(value, ast.Node | tuple):
                setattr(node, attr, self.visit(value, scope))
        return node

    def _object_name(self, parts, length, node):
        """A name list (String nodes) of a table, index or column of the output: `length` names, maybe
        qualified with the output's name."""
        names_ = [getattr(p, "sval", None) for p in parts]
        if len(names_) == length + 1 and self._own(names_[0]):
            parts = parts[1:]
        elif len(names_) != length:
            self.refuse(f"{'.'.join(str(n) for n in names_)} is not a table, index or column of the output", node)
            return parts
        if self.mode == "execute":
            return (ast.String(sval=self.schema),) + tuple(parts)
        return tuple(parts)

    # -- the walk -----------------------------------------------------------------------------------------------
    def visit(self, node, scope, read=False):
        if isinstance(node, tuple | list):
            return tuple(self.visit(item, scope, read) for item in node)
        if not isinstance(node, ast.Node):
            return node
        if isinstance(node, ast.RangeVar):
            return self._relation(node, scope, read)
        if isinstance(node, _DML):
            return self._dml(node, scope)
        if isinstance(node, ast.RangeTableSample):
            relation = node.relation
            if isinstance(relation, ast.RangeVar) and not self._own(relation.schemaname):
                self.refuse("TABLESAMPLE reads only tables of the output", relation)
            node.relation = self.visit(relation, scope, read)
            node.args = self.visit(node.args, scope)
            node.repeatable = self.visit(node.repeatable, scope)
            return node
        if isinstance(node, ast.JoinExpr):
            node.larg = self.visit(node.larg, scope, True)
            node.rarg = self.visit(node.rarg, scope, True)
            node.quals = self.visit(node.quals, scope)
            return node
        if type(node).__name__.endswith("Stmt"):
            self.refuse(f"{_statement_name(node)} is not allowed", node)
            return node
        if isinstance(node, ast.FuncCall):
            self._function(node)
        elif isinstance(node, ast.TypeName):
            self._type(node)
        elif isinstance(node, ast.ColumnRef):
            return self._column(node)
        elif isinstance(node, ast.A_Expr | ast.CollateClause):
            parts = _names(node.name if isinstance(node, ast.A_Expr) else node.collname)
            if len(parts) > 1 and parts[:-1] != [CATALOG]:
                self.refuse(f"{'.'.join(str(n) for n in parts)} is of another schema", node)
        elif isinstance(node, ast.SQLValueFunction) and _kind(node.op) in _SERVER_STATE:
            self.refuse(f"{_kind(node.op).removeprefix('SVFOP_')} reads the session's state", node)
        elif isinstance(node, ast.Constraint) and node.indexspace is not None:
            self.refuse("a constraint's index may not name a tablespace", node)
        elif isinstance(node, ast.IndexElem):
            for parts in (_names(node.opclass), _names(node.collation)):
                if len(parts) > 1 and parts[:-1] != [CATALOG]:
                    self.refuse(f"{'.'.join(str(n) for n in parts)} is of another schema", node)
        return self._children(node, scope)

    def _dml(self, node, scope):
        """SELECT, INSERT, UPDATE, DELETE, MERGE: their WITH queries in scope, their FROM items read."""
        with_clause = getattr(node, "withClause", None)
        if with_clause is not None:
            ctes = [c.ctename for c in with_clause.ctes]
            for i, cte in enumerate(with_clause.ctes):
                visible = ctes if with_clause.recursive else ctes[:i]
                cte.ctequery = self.visit(cte.ctequery, scope | frozenset(visible))
            scope = scope | frozenset(ctes)
        reading = {"fromClause", "usingClause", "sourceRelation"}
        for attr in node:
            if attr == "withClause":
                continue
            value = getattr(node, attr)
            if isinstance(value, ast.Node | tuple):
                setattr(node, attr, self.visit(value, scope, attr in reading))
        return node

    def _relation(self, node, scope, read):
        schema, name = node.schemaname, node.relname
        if node.catalogname is not None:
            self.refuse(f'{node.catalogname}.{schema}.{name} names a database', node)
            return node
        if node.relpersistence == "t":
            self.refuse("temporary tables are not allowed (the step's tables are the output's)", node)
            return node
        if self._own(schema):
            if schema is None and read and name in scope:
                return node  # a WITH query
            node.schemaname = self.schema if self.mode == "execute" else None
            return node
        repository, colon, ref = schema.partition(":")
        if names.reserved_schema(schema) or not names.is_repository(repository) \
                or (colon and not names.IMAGE_REF.fullmatch(ref)):
            self.refuse(f'"{schema}".{name} is neither a table of the output (unqualified) nor a table of an image '
                        '("namespace/repository:tag".table)', node)
            return node
        if not read:
            self.refuse(f'"{schema}".{name} is a table of an image, which a step may only read (in FROM)', node)
            return node
        self.references.setdefault(schema, (repository, ref if colon else None, set(), node.location))[2].add(name)
        if self.mode == "canonical":
            node.schemaname = self.pins[schema]
        elif self.mode == "execute":
            subquery = parse_sql(f"select * from ({self.reads[(schema, name)]}) as t")[0].stmt.fromClause[0]
            subquery.alias = node.alias if node.alias is not None else ast.Alias(aliasname=name)
            return subquery
        return node

    def _column(self, node):
        """A column named with its relation's schema ("ns/repo:tag".t.c): pinned, or without the schema when
        the relation is a subquery. Only schemas of the statement's image references count (from the check):
        a.b.c is also a field of a composite column."""
        parts = node.fields or ()
        first = getattr(parts[0], "sval", None) if len(parts) >= 3 else None
        if first is None:
            return node
        if self._own(first):
            node.fields = ((ast.String(sval=self.schema),) if self.mode == "execute" else ()) + tuple(parts[1:])
        elif self.mode == "canonical" and first in self.pins:
            node.fields = (ast.String(sval=self.pins[first]),) + tuple(parts[1:])
        elif self.mode == "execute" and (first, getattr(parts[1], "sval", None)) in self.reads:
            node.fields = tuple(parts[1:])
        return node

    def _function(self, node):
        parts = _names(node.funcname)
        if len(parts) > 1 and parts[:-1] != [CATALOG]:
            self.refuse(f"{'.'.join(str(n) for n in parts)} is a function of another schema", node)
        else:
            self.functions.setdefault(parts[-1], node.location)

    def _type(self, node):
        parts = _names(node.names)
        if node.pct_type:
            self.refuse("%TYPE names the type of a column", node)
        elif len(parts) > 1 and parts[:-1] != [CATALOG]:
            self.refuse(f"type {'.'.join(str(n) for n in parts)} is of another schema", node)
        elif parts and parts[-1] in REG_TYPES:
            self.refuse(f"type {parts[-1]} holds names looked up in the catalogs", node)


def _parse_step(text):
    try:
        statements = parse_sql(text)
    except ParseError as error:
        message, offset = error.args[0], error.args[1] if len(error.args) > 1 else 0
        raise Refused(f"the SQL does not parse: {message}", _character_offset(text, offset), "42601") from None
    except RecursionError:
        raise Refused("the SQL is nested too deeply to be checked", 0, "54001") from None
    if not statements:
        raise Refused("the SQL step holds no statement", 0, "42601")
    return statements


def _character_offset(text, reported):
    """The character offset of a ParseError's position: pglast reports 2 * characters - bytes (it takes the
    byte offset for a character one twice), or nothing at the end of the input."""
    if not isinstance(reported, int):
        return len(text)
    count = 0
    for i, ch in enumerate(text):
        if 2 * i - count == reported:
            return i
        count += len(ch.encode("utf-8"))
    return min(max(reported, 0), len(text))


def _print(node):
    try:
        return RawStream()(node)
    except RecursionError:
        raise Refused("the SQL is nested too deeply to be checked", 0, "54001") from None
    except Exception as error:  # noqa: BLE001 - pglast cannot print every tree back: say so rather than fail inside
        raise Refused(f"the SQL uses syntax that cannot be checked ({type(error).__name__}: {error})", 0,
                      errors.FEATURE_NOT_SUPPORTED, hint="write it with more common syntax") from None


class SqlStep:
    """The statements of a Splitfile SQL step (text) that changes the output repository `output`, checked:
    references maps each image reference as written (the schema of "ns/repo:tag".table) to (repository,
    ref or None, tables read, where it is first named). Raises Refused."""

    def __init__(self, plpy, text, output):
        parsing.require(plpy)
        self.text, self.output = text, output
        walk = self._walk("check")
        if walk.refused:
            message, location = walk.refused[0]
            raise Refused(message + " in a SQL step", location, hint=_STEP_HINT)
        problems = _function_problems(plpy, set(walk.functions)) if walk.functions else []
        if problems:
            name, message = problems[0]
            raise Refused(f"the SQL step {message.removeprefix('it ')}", walk.functions[name], hint=_STEP_HINT)
        self.references = walk.references

    def _walk(self, mode, **options):
        walk = _StepWalk(self.output, mode, **options)
        printed, selects = [], []
        for raw in _parse_step(self.text):
            start = min(raw.stmt_location or 0, len(self.text))
            while start < len(self.text) and self.text[start].isspace():
                start += 1
            walk.statement_location = start
            try:
                stmt = walk.statement(raw.stmt)
            except RecursionError:
                raise Refused("the SQL is nested too deeply to be checked", 0, "54001") from None
            if mode != "check":
                printed.append(_print(stmt))
                selects.append(isinstance(stmt, ast.SelectStmt) and stmt.intoClause is None)
        walk.printed, walk.selects = printed, selects
        return walk

    def canonical(self, pins):
        """The statements as the parser prints them back, joined: image references pinned (pins: schema as
        written -> "repository:hash"), the output's tables unqualified. Its hash is the step's."""
        return ";\n".join(self._walk("canonical", pins=pins).printed)

    def executable(self, schema, reads):
        """The statements to run, as (text, rows): the output's tables in the checkout schema, each image table
        (reads: (schema as written, table) -> SELECT of its rows) as a subquery; rows is how many result rows to
        fetch (1 for a plain SELECT, whose result nobody reads; its WITH queries that change data run to their
        end all the same; else 0, all)."""
        walk = self._walk("execute", schema=schema, reads=reads)
        return [(text, 1 if select else 0) for text, select in zip(walk.printed, walk.selects, strict=True)]


def canonical_query(plpy, query):
    """An import query as its parse tree prints back (the text a query's image hash is made from)."""
    parsing.require(plpy)
    try:
        statements = parse_sql(query)
    except ParseError as error:
        raise Refused(f"the query does not parse: {error.args[0]}",
                      _character_offset(query, error.args[1] if len(error.args) > 1 else 0), "42601") from None
    except RecursionError:
        raise Refused("the query is nested too deeply to be checked", 0, "54001") from None
    if len(statements) != 1 or not isinstance(statements[0].stmt, ast.SelectStmt):
        raise Refused("an import query must be exactly one SELECT over the source's tables", 0, "42601")
    return _print(statements[0].stmt)
