"""Table definitions: what a checkout gives back beside the columns, their types and the primary key.

A commit records, per table, a definition (splitgraph_meta.tables.table_definition) read from the catalog:

    {"columns": {name: {"storage": type the values are stored as, when not the column's type,
                        "not_null": true, "default": expression, "generated": expression (stored),
                        "identity": "a" | "d", "sequence": {name, type, start, increment, min, max, cache,
                                                            cycle, last} (identity and serial columns)}},
     "primary_key": constraint name,
     "constraints": [{"kind": "check", name, expression, valid, no_inherit},
                     {"kind": "unique", name, columns, include, nulls_not_distinct, deferrable, deferred},
                     {"kind": "foreign_key", name, columns, table (of the same schema), referenced, match,
                      on_update, on_delete, deferrable, deferred, valid}],
     "indexes": [{name, unique, method, keys: [{column | expression, opclass, collation, descending,
                                                 nulls_first}], include, predicate, nulls_not_distinct}],
     "comment": the table's comment, "partitioned": true when it was a partitioned table}

A checkout builds DDL from it (build): every name is quoted, every type, collation, operator class and access
method is looked up in the catalog, and every expression must parse (pglast) as exactly one expression, which
is written back as pglast prints it. The metadata may come from another engine: what does not fit is refused
(XX001). The statements that evaluate expressions (CHECK validation, index builds, generated columns' inserts)
and casts to types run with the rights of the caller of checkout, never the extension's.
"""
import json

from . import db, errors, fragments, parsing
from . import tables as tbl
from .names import ident, literal
from .parsing import ParseError, RawStream, SetOperation, parse_sql
from .parsing import ast as pg_ast

_DEFINITION = """
with rel as (
    select c.oid, c.relnamespace, c.relkind from pg_catalog.pg_class c
    join pg_catalog.pg_namespace n on n.oid = c.relnamespace where n.nspname = $1 and c.relname = $2
),
seqs as (
    select a.attnum, s.oid as seq, d.deptype from rel
    join pg_catalog.pg_attribute a on a.attrelid = rel.oid and a.attnum > 0 and not a.attisdropped
    join pg_catalog.pg_depend d on d.refclassid = 'pg_catalog.pg_class'::pg_catalog.regclass
        and d.refobjid = rel.oid and d.refobjsubid = a.attnum and d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass
        and d.deptype in ('a', 'i')
    join pg_catalog.pg_class s on s.oid = d.objid and s.relkind = 'S'
),
cols as (
    select a.attname::text as name, a.attnum, a.attnotnull, a.attidentity, a.attgenerated,
           pg_catalog.pg_get_expr(ad.adbin, ad.adrelid) as expr, q.seq,
           (q.seq is not null and a.attidentity = '' and pg_catalog.pg_get_expr(ad.adbin, ad.adrelid)
                = pg_catalog.format('nextval(%L::regclass)', q.seq::pg_catalog.regclass::text)) as serial
    from rel join pg_catalog.pg_attribute a on a.attrelid = rel.oid and a.attnum > 0 and not a.attisdropped
    left join pg_catalog.pg_attrdef ad on ad.adrelid = a.attrelid and ad.adnum = a.attnum
    left join seqs q on q.attnum = a.attnum and (q.deptype = 'i') = (a.attidentity <> '')
)
select pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
    'columns', (select pg_catalog.jsonb_object_agg(c.name, pg_catalog.jsonb_build_object(
                    'not_null', case when c.attnotnull then true end,
                    'default', case when c.attgenerated = '' and not coalesce(c.serial, false) then c.expr end,
                    'generated', case when c.attgenerated = 's' then c.expr end,
                    'identity', nullif(c.attidentity::text, ''),
                    'sequence', case when c.attidentity <> '' or c.serial then (
                        select pg_catalog.jsonb_build_object(
                            'name', sc.relname::text, 'type', pg_catalog.format_type(sq.seqtypid, null),
                            'start', sq.seqstart, 'increment', sq.seqincrement, 'min', sq.seqmin, 'max', sq.seqmax,
                            'cache', sq.seqcache, 'cycle', sq.seqcycle,
                            'last', pg_catalog.pg_sequence_last_value(sq.seqrelid))
                        from pg_catalog.pg_sequence sq join pg_catalog.pg_class sc on sc.oid = sq.seqrelid
                        where sq.seqrelid = c.seq) end))
                from cols c),
    'primary_key', (select k.conname::text from pg_catalog.pg_constraint k, rel
                    where k.conrelid = rel.oid and k.contype = 'p'),
    'constraints', (
        select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'kind', case k.contype when 'c' then 'check' when 'u' then 'unique' else 'foreign_key' end,
                   'name', k.conname::text,
                   'expression', case when k.contype = 'c' then pg_catalog.pg_get_expr(k.conbin, k.conrelid) end,
                   'valid', k.convalidated, 'no_inherit', case when k.contype = 'c' and k.connoinherit then true end,
                   'columns', case when k.contype <> 'c' then (
                       select pg_catalog.jsonb_agg(a.attname::text order by u.i)
                       from pg_catalog.unnest(k.conkey) with ordinality u (n, i)
                       join pg_catalog.pg_attribute a on a.attrelid = k.conrelid and a.attnum = u.n) end,
                   'include', case when k.contype = 'u' then (
                       select pg_catalog.jsonb_agg(a.attname::text order by u.i)
                       from pg_catalog.unnest(ix.indkey::pg_catalog.int2[]) with ordinality u (n, i)
                       join pg_catalog.pg_attribute a on a.attrelid = ix.indrelid and a.attnum = u.n
                       where u.i > ix.indnkeyatts) end,
                   'nulls_not_distinct', case when ix.indnullsnotdistinct then true end,
                   'table', case when k.contype = 'f' then fr.relname::text end,
                   'referenced', case when k.contype = 'f' then (
                       select pg_catalog.jsonb_agg(a.attname::text order by u.i)
                       from pg_catalog.unnest(k.confkey) with ordinality u (n, i)
                       join pg_catalog.pg_attribute a on a.attrelid = k.confrelid and a.attnum = u.n) end,
                   'match', case when k.contype = 'f' then k.confmatchtype::text end,
                   'on_update', case when k.contype = 'f' then k.confupdtype::text end,
                   'on_delete', case when k.contype = 'f' then k.confdeltype::text end,
                   'deferrable', k.condeferrable, 'deferred', k.condeferred) order by k.conname)
        from rel join pg_catalog.pg_constraint k on k.conrelid = rel.oid
        left join pg_catalog.pg_index ix on ix.indexrelid = k.conindid and k.contype = 'u'
        left join pg_catalog.pg_class fr on fr.oid = k.confrelid
        where k.contype in ('c', 'u') or (k.contype = 'f' and fr.relnamespace = rel.relnamespace)),
    'indexes', (
        select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'name', ic.relname::text, 'unique', ix.indisunique, 'method', am.amname::text,
                   'nulls_not_distinct', case when ix.indnullsnotdistinct then true end,
                   'predicate', pg_catalog.pg_get_expr(ix.indpred, ix.indrelid),
                   'keys', (
                       select pg_catalog.jsonb_agg(pg_catalog.jsonb_strip_nulls(pg_catalog.jsonb_build_object(
                                  'column', a.attname::text,
                                  'expression', case when u.n = 0
                                      then pg_catalog.pg_get_indexdef(ix.indexrelid, u.i::int, false) end,
                                  'opclass', case when not oc.opcdefault
                                      then pg_catalog.format('%I.%I', ocn.nspname, oc.opcname) end,
                                  'collation', case when u.coll <> 0 and u.coll <> case when u.n = 0 then 100
                                                                                    else a.attcollation end
                                      then pg_catalog.format('%I.%I', con.nspname, co.collname) end,
                                  'descending', case when (u.opt & 1) <> 0 then true end,
                                  'nulls_first', case when (u.opt & 2) <> 0 then true end)) order by u.i)
                       from rows from (pg_catalog.unnest(ix.indkey::pg_catalog.int2[]),
                                       pg_catalog.unnest(ix.indclass::pg_catalog.oid[]),
                                       pg_catalog.unnest(ix.indcollation::pg_catalog.oid[]),
                                       pg_catalog.unnest(ix.indoption::pg_catalog.int2[]))
                            with ordinality u (n, cls, coll, opt, i)
                       left join pg_catalog.pg_attribute a on a.attrelid = ix.indrelid and a.attnum = u.n and u.n <> 0
                       left join pg_catalog.pg_opclass oc on oc.oid = u.cls
                       left join pg_catalog.pg_namespace ocn on ocn.oid = oc.opcnamespace
                       left join pg_catalog.pg_collation co on co.oid = u.coll
                       left join pg_catalog.pg_namespace con on con.oid = co.collnamespace
                       where u.i <= ix.indnkeyatts),
                   'include', (
                       select pg_catalog.jsonb_agg(a.attname::text order by u.i)
                       from pg_catalog.unnest(ix.indkey::pg_catalog.int2[]) with ordinality u (n, i)
                       join pg_catalog.pg_attribute a on a.attrelid = ix.indrelid and a.attnum = u.n
                       where u.i > ix.indnkeyatts)) order by ic.relname)
        from rel join pg_catalog.pg_index ix on ix.indrelid = rel.oid
        join pg_catalog.pg_class ic on ic.oid = ix.indexrelid
        join pg_catalog.pg_am am on am.oid = ic.relam
        where not exists (select from pg_catalog.pg_constraint k where k.conindid = ix.indexrelid
                          and k.conrelid = rel.oid)),
    'comment', (select pg_catalog.obj_description(rel.oid, 'pg_class') from rel),
    'table', $2::text,
    'partitioned', (select case when rel.relkind = 'p' then true end from rel)
))::text"""


def capture(plpy, schema, table, cols):
    """The definition of a live table (see the module's doc), with the storage types of its columns `cols`."""
    definition = json.loads(next(iter(db.run_generic(plpy, _DEFINITION, schema, table)[0].values())))
    columns = definition.setdefault("columns", {})
    for name in list(columns):
        columns[name] = {k: v for k, v in columns[name].items() if v is not None}
    for c in cols:
        if c.converted():
            columns.setdefault(c.name, {})["storage"] = c.storage
    definition["columns"] = {k: v for k, v in columns.items() if v}
    return definition


def minimal(cols):
    """The definition of columns alone: the storage types of those stored as another type (or None)."""
    columns = {c.name: {"storage": c.storage} for c in cols if c.converted()}
    return {"columns": columns} if columns else None


# ---------------------------------------------------------------------------------------------------------------
# From a definition to DDL
# ---------------------------------------------------------------------------------------------------------------

def object_name(definition, table, name):
    """The name of a constraint, index or sequence of a table committed under another name (an import under a
    new name): a name that starts with the table's old name followed by _, as Postgres makes them, starts with
    the new one instead (cut to 63 bytes)."""
    old = definition.get("table") if isinstance(definition, dict) else None
    if not isinstance(old, str) or old == table or not isinstance(name, str) or not name.startswith(old + "_"):
        return name
    renamed = (table + name[len(old):]).encode("utf-8")[:63]
    return renamed.decode("utf-8", errors="ignore")


class Step:
    """Statements a checkout runs as its caller. fatal: a failure fails the checkout (else it is reported and the
    rest goes on, after `fallback` runs); evaluates: they run code of the table's author (expressions, casts)."""

    def __init__(self, what, statements, fatal=False, evaluates=False, fallback=()):
        self.what, self.statements, self.fatal, self.evaluates = what, list(statements), fatal, evaluates
        self.fallback = list(fallback)

    def as_dict(self):
        return {"what": self.what, "statements": self.statements, "fatal": self.fatal, "evaluates": self.evaluates,
                "fallback": self.fallback}


class _Refused(Exception):
    pass


def _check(condition, what):
    if not condition:
        raise _Refused(what)


def _string(value, what):
    _check(isinstance(value, str) and value != "" and "\x00" not in value, f"{what} is not a string")
    return value


def _strings(value, what):
    _check(isinstance(value, list) and value, f"{what} is not a list of names")
    return [_string(v, what) for v in value]


def _integer(value, what):
    _check(isinstance(value, int) and not isinstance(value, bool), f"{what} is not a number")
    return value


def _boolean(value, what):
    _check(value is None or isinstance(value, bool), f"{what} is not true or false")
    return bool(value)


_NOT_AN_EXPRESSION = ("distinctClause", "intoClause", "fromClause", "whereClause", "groupClause", "havingClause",
                      "windowClause", "valuesLists", "sortClause", "limitOffset", "limitCount", "lockingClause",
                      "withClause", "larg", "rarg")


def expression(text, what):
    """`text` as pglast prints it, if it is exactly one SQL expression (so nothing else can ride along)."""
    _string(text, what)
    try:
        statements = parse_sql("SELECT " + text)
    except ParseError:
        raise _Refused(f"{what} is not an SQL expression") from None
    _check(len(statements) == 1, f"{what} is more than one expression")
    stmt = statements[0].stmt
    _check(isinstance(stmt, pg_ast.SelectStmt) and stmt.op == SetOperation.SETOP_NONE
           and not any(getattr(stmt, f, None) for f in _NOT_AN_EXPRESSION)
           and stmt.targetList is not None and len(stmt.targetList) == 1, f"{what} is not exactly one expression")
    target = stmt.targetList[0]
    _check(isinstance(target, pg_ast.ResTarget) and not target.name and not target.indirection
           and target.val is not None, f"{what} is not exactly one expression")
    return RawStream()(target.val)


_ACTIONS = {"a": "no action", "r": "restrict", "c": "cascade", "n": "set null", "d": "set default"}
_MATCH = {"s": "simple", "f": "full", "p": "partial"}


class _Builder:
    """DDL for one table of a checkout from its definition, names resolved against the catalog."""

    def __init__(self, plpy, schema, table, cols, definition):
        self.plpy, self.schema, self.table, self.cols = plpy, schema, table, cols
        self.target = f"{ident(schema)}.{ident(table)}"
        self.definition = definition if isinstance(definition, dict) else {}
        self.by_name = {c.name: c for c in cols}
        described = tbl.definition_columns(self.definition)
        _check(all(isinstance(v, dict) for v in described.values()), "a column's definition is not an object")
        self.described = {name: described.get(name, {}) for name in self.by_name}

    def column(self, name, what):
        _check(isinstance(name, str) and name in self.by_name, f"{what} names a column the table lacks")
        return ident(name)

    def column_list(self, names, what):
        return ", ".join(self.column(n, what) for n in _strings(names, what))

    def resolve(self, sql, value, what, *more):
        found = db.scalar(self.plpy, sql, _string(value, what), *more)
        _check(found is not None, f"{what} {value!r} does not exist on this engine")
        return found

    def sequence_options(self, seq, what):
        _check(isinstance(seq, dict), f"{what} is not an object")
        options = []
        for key, clause in (("increment", "increment by"), ("min", "minvalue"), ("max", "maxvalue"),
                            ("start", "start with"), ("cache", "cache")):
            if seq.get(key) is not None:
                options.append(f"{clause} {_integer(seq[key], what)}")
        options.append("cycle" if _boolean(seq.get("cycle"), what) else "no cycle")
        return " ".join(options)

    def name(self, value, what):
        """A name of the definition, for the table as it is named now (object_name)."""
        return ident(object_name(self.definition, self.table, _string(value, what)))

    def sequence_name(self, seq, what):
        return f"{ident(self.schema)}.{self.name(seq.get('name'), what + ' name')}"

    def continue_sequence(self, name, seq, what):
        """Move the column's sequence past the values the table holds (and past where it was at commit)."""
        increment = _integer(seq.get("increment", 1), what)
        last = seq.get("last")
        last_sql = "null" if last is None else str(_integer(last, what))
        pick = "greatest(max" if increment > 0 else "least(min"
        return (f"select pg_catalog.setval(pg_catalog.pg_get_serial_sequence({literal(self.target)}, {literal(name)}), "
                f"s.v) from (select {pick}(t.{ident(name)})::bigint, {last_sql}::bigint) as v from {self.target} t) s "
                "where s.v is not null")

    def require_type(self, c):
        if c.sql_type is None:
            errors.fail(self.plpy, errors.UNDEFINED_OBJECT,
                        f'type {c.type} of column "{c.name}" of table "{self.table}" does not exist on this engine',
                        hint="create the type (for example the schema and CREATE TYPE that defined it) and check out "
                             "again; the image keeps the values in a form of its own")

    def converted_types(self):
        """ALTER TABLE ... TYPE for the columns stored as another type: cast back (as the caller)."""
        changes = []
        for c in self.cols:
            if c.sql_type == c.storage:
                continue
            self.require_type(c)
            collate = f" collate {c.collation}" if c.collation else ""
            changes.append(f"alter column {ident(c.name)} type {c.sql_type}{collate} "
                           f"using ({ident(c.name)})::{c.sql_type}")
        if not changes:
            return []
        return [Step(f'the types of table "{self.table}"', [f"alter table {self.target} " + ", ".join(changes)],
                     fatal=True, evaluates=True)]

    def generated_table(self, staged):
        """Steps that make the table anew (its generated columns compute as the caller) from `staged`, a table
        of its stored values."""
        parts = []
        gaps = dict(fragments.gap_columns(self.cols))
        for n in range(1, max([c.ordinal for c in self.cols], default=0) + 1):
            if n in gaps:
                parts.append(f"{ident(gaps[n])} integer")
                continue
            c = next((c for c in self.cols if c.ordinal == n), None)
            if c is None:
                continue
            self.require_type(c)
            generated = self.described[c.name].get("generated")
            clause = (f" generated always as ({expression(generated, 'a generated expression')}) stored"
                      if generated is not None else "")
            parts.append(c.definition() + clause)
        written = [c for c in self.cols if self.described[c.name].get("generated") is None]
        staged_sql = f"{ident(self.schema)}.{ident(staged)}"
        statements = [f"create table {self.target} ({', '.join(parts)})"]
        if gaps:
            statements.append(f"alter table {self.target} " + ", ".join(f"drop column {ident(g)}"
                                                                        for g in gaps.values()))
        values = ", ".join(c.restored(f"s.{ident(c.name)}") for c in written)
        statements += [f"insert into {self.target} ({tbl.column_list(written)}) select {values} from {staged_sql} s",
                       f"drop table {staged_sql}"]
        key = tbl.key_columns(self.cols)
        if key:
            name = self.definition.get("primary_key")
            named = f"constraint {self.name(name, 'the primary key name')} " if name is not None else ""
            statements.append(f"alter table {self.target} add {named}primary key ({tbl.column_list(key)})")
        comments = [f"comment on column {self.target}.{ident(c.name)} is {literal(c.comment)}"
                    for c in self.cols if c.comment]
        return [Step(f'the generated columns of table "{self.table}"', statements + comments, evaluates=True,
                     fallback=[f"alter table {staged_sql} rename to {ident(self.table)}"])]

    def column_steps(self):
        steps, not_null = [], []
        for name, d in self.described.items():
            what = f'column "{name}"'
            if _boolean(d.get("not_null"), what) and not self.by_name[name].is_pk:
                not_null.append(f"alter column {ident(name)} set not null")
            if d.get("default") is not None:
                steps.append(Step(f"the default of {what}", [
                    f"alter table {self.target} alter column {ident(name)} set default "
                    f"{expression(d['default'], f'the default of {what}')}"]))
            seq = d.get("sequence")
            if d.get("identity") is not None:
                _check(d["identity"] in ("a", "d"), f"the identity of {what} is not a or d")
                seq = seq if seq is not None else {}
                kind = "always" if d["identity"] == "a" else "by default"
                options = self.sequence_options(seq, f"the sequence of {what}")
                seq_name = f"sequence name {self.sequence_name(seq, 'the sequence')} " if seq.get("name") else ""
                steps.append(Step(f"the identity of {what}", [
                    f"alter table {self.target} alter column {ident(name)} set not null",
                    f"alter table {self.target} alter column {ident(name)} add generated {kind} as identity "
                    f"({seq_name}{options})",
                    self.continue_sequence(name, seq, f"the sequence of {what}")]))
            elif seq is not None:
                sequence = self.sequence_name(seq, f"the sequence of {what}")
                type_ = tbl.resolve_types(self.plpy, [_string(seq.get("type", "bigint"), "a sequence type")])[0]
                found = type_.get(seq.get("type", "bigint"))
                _check(found is not None and found[2] in ("smallint", "integer", "bigint"),
                       f"the sequence type of {what} is not smallint, integer or bigint")
                steps.append(Step(f"the sequence of {what}", [
                    f"create sequence {sequence} as {found[2]} {self.sequence_options(seq, what)} "
                    f"owned by {self.target}.{ident(name)}",
                    f"alter table {self.target} alter column {ident(name)} set default "
                    f"pg_catalog.nextval({literal(sequence)}::pg_catalog.regclass)",
                    self.continue_sequence(name, seq, f"the sequence of {what}")]))
        if not_null:
            steps.insert(0, Step(f'the NOT NULL columns of table "{self.table}"',
                                 [f"alter table {self.target} " + ", ".join(not_null)]))
        return steps

    def constraint_steps(self):
        steps, after = [], []
        constraints = self.definition.get("constraints") or []
        _check(isinstance(constraints, list), "the constraints are not a list")
        for k in constraints:
            _check(isinstance(k, dict), "a constraint is not an object")
            name = _string(k.get("name"), "a constraint's name")
            what = f'constraint "{name}" of table "{self.table}"'
            deferral = ""
            if _boolean(k.get("deferrable"), what):
                deferral = " deferrable initially deferred" if _boolean(k.get("deferred"), what) else " deferrable"
            not_valid = "" if k.get("valid", True) is True else " not valid"
            if k.get("kind") == "check":
                no_inherit = " no inherit" if _boolean(k.get("no_inherit"), what) else ""
                steps.append(Step(what, [f"alter table {self.target} add constraint {self.name(name, what)} check "
                                         f"({expression(k.get('expression'), what)}){no_inherit}{not_valid}"],
                                  evaluates=True))
            elif k.get("kind") == "unique":
                include = (f" include ({self.column_list(k['include'], what)})" if k.get("include") else "")
                nulls = " nulls not distinct" if _boolean(k.get("nulls_not_distinct"), what) else ""
                steps.append(Step(what, [f"alter table {self.target} add constraint {self.name(name, what)} "
                                         f"unique{nulls} ({self.column_list(k.get('columns'), what)}){include}"
                                         f"{deferral}"]))
            elif k.get("kind") == "foreign_key":
                _check(k.get("match", "s") in _MATCH and k.get("on_update", "a") in _ACTIONS
                       and k.get("on_delete", "a") in _ACTIONS, f"{what} has an unknown match type or action")
                referenced = ", ".join(ident(n) for n in _strings(k.get("referenced"), what))
                after.append(Step(what, [
                    f"alter table {self.target} add constraint {self.name(name, what)} foreign key "
                    f"({self.column_list(k.get('columns'), what)}) references "
                    f"{ident(self.schema)}.{ident(_string(k.get('table'), what))} ({referenced}) "
                    f"match {_MATCH[k.get('match', 's')]} on update {_ACTIONS[k.get('on_update', 'a')]} "
                    f"on delete {_ACTIONS[k.get('on_delete', 'a')]}{deferral}{not_valid}"]))
            else:
                raise _Refused(f"{what} is of an unknown kind")
        return steps, after

    def index_steps(self):
        steps = []
        indexes = self.definition.get("indexes") or []
        _check(isinstance(indexes, list), "the indexes are not a list")
        for x in indexes:
            _check(isinstance(x, dict), "an index is not an object")
            name = _string(x.get("name"), "an index's name")
            what = f'index "{name}" of table "{self.table}"'
            method = self.resolve("select pg_catalog.quote_ident(amname) from pg_catalog.pg_am "
                                  "where amname = $1 and amtype = 'i'", x.get("method", "btree"), "access method")
            keys = x.get("keys")
            _check(isinstance(keys, list) and keys, f"{what} has no keys")
            items = []
            for key in keys:
                _check(isinstance(key, dict) and (key.get("column") is None) != (key.get("expression") is None),
                       f"a key of {what} is neither a column nor an expression")
                item = (self.column(key["column"], what) if key.get("column") is not None
                        else f"({expression(key['expression'], what)})")
                if key.get("collation") is not None:
                    found, bad = tbl.resolve_collations(self.plpy, [_string(key["collation"], what)])
                    _check(not bad and found.get(key["collation"]), f"the collation of {what} does not exist")
                    item += f" collate {found[key['collation']]}"
                if key.get("opclass") is not None:
                    item += " " + self.resolve("""
                        select pg_catalog.format('%I.%I', n.nspname, o.opcname) from pg_catalog.pg_opclass o
                        join pg_catalog.pg_namespace n on n.oid = o.opcnamespace
                        join pg_catalog.pg_am a on a.oid = o.opcmethod
                        where pg_catalog.format('%I.%I', n.nspname, o.opcname) = $1 and a.amname = $2""",
                        key["opclass"], "operator class", x.get("method", "btree"))
                if _boolean(key.get("descending"), what):
                    item += " desc"
                if method == "btree":
                    item += " nulls first" if _boolean(key.get("nulls_first"), what) else " nulls last"
                items.append(item)
            include = f" include ({self.column_list(x['include'], what)})" if x.get("include") else ""
            nulls = " nulls not distinct" if _boolean(x.get("nulls_not_distinct"), what) else ""
            where = (f" where {expression(x['predicate'], what)}" if x.get("predicate") is not None else "")
            unique = "unique " if _boolean(x.get("unique"), what) else ""
            evaluates = where != "" or any(key.get("expression") is not None for key in keys)
            steps.append(Step(what, [f"create {unique}index {self.name(name, what)} on {self.target} using {method} "
                                     f"({', '.join(items)}){include}{nulls}{where}"], evaluates=evaluates))
        return steps

    def comment_steps(self):
        comment = self.definition.get("comment")
        if comment is None:
            return []
        return [Step(f'the comment of table "{self.table}"',
                     [f"comment on table {self.target} is {literal(_string(comment, 'the comment'))}"])]


class _Checker(_Builder):
    """A builder that checks a definition's form and expressions and looks nothing up: a definition that arrives
    from another engine may name types, collations of columns, operator classes and access methods this engine
    lacks (a checkout resolves them, and says what is missing)."""

    def resolve(self, sql, value, what, *more):
        return ident(_string(value, what))

    def require_type(self, c):
        pass


def check(plpy, table, cols, definition):
    """Refuse (XX001) a definition that a checkout could not read: its form, and every expression in it exactly one
    SQL expression (so that nothing else can ride along). What arrives from another engine is checked so before
    it is stored; names are not looked up (see _Checker)."""
    if definition is None:
        return
    parsing.require(plpy)
    try:
        builder = _Checker(plpy, "sg_check", table, cols, definition)
        if has_generated(definition):
            builder.generated_table("sg_staged")
        else:
            builder.converted_types()
        builder.column_steps()
        builder.constraint_steps()
        builder.index_steps()
        builder.comment_steps()
    except _Refused as refused:
        errors.fail(plpy, errors.DATA_CORRUPTED, f'the definition of table "{table}" is unusable: {refused}',
                    hint="the metadata was damaged or forged, or made by an engine this one does not understand")


def require_types(plpy, table, cols):
    """Fail (42704, naming it) when the type of a column does not exist on this engine."""
    builder = _Builder(plpy, "", table, cols, None)
    for c in cols:
        builder.require_type(c)


def foreign_keys(plpy, schema, table, cols, definition, referenced):
    """Steps that add back the foreign keys of a table that reference the tables named in `referenced`."""
    parsing.require(plpy)
    try:
        _, after = _Builder(plpy, schema, table, cols, definition).constraint_steps()
    except _Refused as refused:
        errors.fail(plpy, errors.DATA_CORRUPTED, f'the stored definition of table "{table}" is unusable: {refused}')
    wanted = {k["name"] for k in definition.get("constraints") or []
              if k.get("kind") == "foreign_key" and k.get("table") in referenced}
    return [step for step, name in zip(after, [k["name"] for k in definition.get("constraints") or []
                                              if k.get("kind") == "foreign_key"], strict=True) if name in wanted]


def has_generated(definition):
    """Whether a definition has generated columns (the table is then made anew by the caller)."""
    return any(isinstance(d, dict) and d.get("generated") is not None
               for d in tbl.definition_columns(definition).values())


def build(plpy, schema, table, cols, definition, staged=None):
    """(steps, foreign-key steps) that give back a table made from its objects (as the storage types, with its
    primary key: fragments.materialize) as it was committed; `staged`: the name of that table when it has
    generated columns (the steps make the table anew from it). Malformed metadata fails with XX001."""
    parsing.require(plpy)
    try:
        builder = _Builder(plpy, schema, table, cols, definition)
        steps = builder.generated_table(staged) if staged else builder.converted_types()
        steps += builder.column_steps()
        constraints, after = builder.constraint_steps()
        steps += constraints + builder.index_steps() + builder.comment_steps()
    except _Refused as refused:
        errors.fail(plpy, errors.DATA_CORRUPTED, f'the stored definition of table "{table}" is unusable: {refused}',
                    hint="the metadata was damaged, or made by an engine this one does not understand")
    return steps, after
