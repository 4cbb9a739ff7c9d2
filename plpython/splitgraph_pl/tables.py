"""What live tables look like: their columns, keys and the kinds of values they hold, how their values are stored
in object tables, and how the types and collations of a stored schema are found on this engine."""
import re

from . import db, errors
from .names import FLAG_COLUMN, ident

# Types with min/max aggregates: their columns get [min, max] ranges in object indexes and form the
# surrogate key (with the row text as a tie-breaker) of tables without a primary key. Decided on the type a
# column is stored as (storage_ctes), the order in which object tables hold its values.
_RANGED = """(t.typcategory in ('N', 'D', 'T') and t.typelem = 0
               or t.oid in ('text'::regtype, 'character varying'::regtype, 'character'::regtype))"""
_ARRAY = "{t}.typelem <> 0 and {t}.typsubscript = 'pg_catalog.array_subscript_handler'::pg_catalog.regproc"
_BUILT_IN = "{t}.typnamespace = 'pg_catalog'::pg_catalog.regnamespace"


def storage_ctes(source):
    """CTEs over `source` (a relation of rows n, oid, typmod: the types of columns) that end in
    storage (n, oid, typmod): the type each column is stored as in object tables, which must depend on nothing a
    user can drop or change. A built-in type (pg_catalog) is kept; a domain is stored as its base type; an array
    of types that are not built-in as an array of its elements' storage type (text[] for enums, composites and
    the like, or text when that would change the array's text); any other type that is not built-in (an enum, a
    composite, a range, an extension's type) as text. The text form of every value, and so of every row, stays
    the same."""
    array, built_in = _ARRAY.format(t="t"), _BUILT_IN.format(t="t")
    return f"""
    sg_walk (n, oid, typmod, depth, element) as (
        select s.n, s.oid, s.typmod, 0, false from {source} s
        union all
        select w.n, case when t.typtype = 'd' then t.typbasetype else t.typelem end,
               case when t.typtype = 'd' then t.typtypmod else w.typmod end, w.depth + 1,
               w.element or t.typtype <> 'd'
        from sg_walk w join pg_catalog.pg_type t on t.oid = w.oid
        where t.typtype = 'd' or (not w.element and not {built_in} and {array})
    ),
    sg_last (n, oid, element, typmod) as (
        select distinct on (w.n) w.n, w.oid, w.element,
               coalesce((select w2.typmod from sg_walk w2 where w2.n = w.n and w2.typmod <> -1
                         order by w2.depth desc limit 1), -1)
        from sg_walk w order by w.n, w.depth desc
    ),
    storage (n, oid, typmod) as (
        select l.n, k.oid, case when k.oid = 'pg_catalog.text'::pg_catalog.regtype then -1 else l.typmod end
        from sg_last l join pg_catalog.pg_type t on t.oid = l.oid
        cross join lateral (select case
            when {built_in} and not l.element then l.oid
            when {built_in} and t.typarray <> 0 and not ({array}) then t.typarray
            when not {built_in} and l.element and t.typdelim = ',' then 'pg_catalog.text[]'::pg_catalog.regtype
            else 'pg_catalog.text'::pg_catalog.regtype end) k (oid)
    )"""


_COLUMNS = """
with recursive src (n, oid, typmod) as (
    select a.attnum::int, a.atttypid, a.atttypmod from pg_catalog.pg_attribute a
    where a.attrelid = $1::pg_catalog.oid and a.attnum > 0 and not a.attisdropped
), """ + storage_ctes("src") + """
select a.attnum::int as ordinal, a.attname::text as name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) as type,
       pg_catalog.format_type(s.oid, s.typmod) as storage,
       coalesce(a.attnum = any(i.indkey), false) as is_pk,
       pg_catalog.col_description(a.attrelid, a.attnum) as comment,
       t.typcollation <> 0 as collatable,
       case when a.attcollation not in (0, b.typcollation)
            then pg_catalog.format('%I.%I', cn.nspname, co.collname) end as collation,
       """ + _RANGED + """ as ranged,
       nullif(a.attgenerated::text, '') as generated, nullif(a.attidentity::text, '') as identity
from pg_catalog.pg_attribute a
join storage s on s.n = a.attnum
join pg_catalog.pg_type t on t.oid = s.oid
join pg_catalog.pg_type b on b.oid = a.atttypid
left join pg_catalog.pg_index i on i.indrelid = a.attrelid and i.indisprimary
left join pg_catalog.pg_collation co on co.oid = a.attcollation
left join pg_catalog.pg_namespace cn on cn.oid = co.collnamespace
where a.attrelid = $1::pg_catalog.oid and a.attnum > 0 and not a.attisdropped
order by a.attnum
"""


class Column:
    """A column: ordinal (its attnum), name, type (as stored and hashed), is_pk, comment and collation (when
    not its type's). storage: the type its values are stored as in object tables (see storage_ctes);
    sql_type: its type's name on this engine (None when the type does not exist here); collatable and ranged:
    properties of the storage type, which orders values in objects; trusted: casting from storage to the type
    runs no code a role that is not a superuser owns; generated and identity: of a live column."""
    __slots__ = ("ordinal", "name", "type", "is_pk", "comment", "collatable", "ranged", "collation", "storage",
                 "sql_type", "trusted", "generated", "identity")

    def __init__(self, ordinal, name, type, is_pk, comment=None, collatable=False, ranged=False, collation=None,
                 storage=None, generated=None, identity=None):
        self.ordinal, self.name, self.type, self.is_pk = ordinal, name, type, is_pk
        self.comment, self.collatable, self.ranged, self.collation = comment, collatable, ranged, collation
        self.storage = storage or type
        self.sql_type, self.trusted, self.generated, self.identity = type, True, generated, identity

    def spec(self):
        """The stored form: [ordinal, name, type, is_pk, comment] and, when not the type's default, the
        column's collation (a schema's hash leaves comments and collations out)."""
        spec = [self.ordinal, self.name, self.type, self.is_pk, self.comment]
        return spec + [self.collation] if self.collation else spec

    def _collate(self):
        return f" collate {self.collation}" if self.collation else ""

    def definition(self, type_=None):
        """The column in CREATE TABLE: its name, type (on this engine) and collation."""
        return f"{ident(self.name)} {type_ or self.sql_type}{self._collate()}"

    def storage_definition(self):
        """The column in an object table: its name, storage type and collation."""
        return f"{ident(self.name)} {self.storage}{self._collate() if self.collatable else ''}"

    def converted(self):
        """Whether its values are stored as another type than the column's (sql_type: a table of the column)."""
        return self.sql_type is not None and self.storage != self.sql_type

    def stored(self, expr):
        """A value of the column (SQL expression `expr`) as it is stored in object tables."""
        return f"({expr})::{self.storage}" if self.converted() else expr

    def restored(self, expr):
        """A stored value (SQL expression `expr`) as a value of the column's type."""
        return f"({expr})::{self.sql_type}" if self.sql_type != self.storage else expr

    def order_expr(self, prefix=""):
        """Sort expression in the order object tables keep (their storage type's), independent of the server's
        locale, so chunks are the same on every engine."""
        expr = self.stored(prefix + ident(self.name))
        return expr + ' collate "C"' if self.collatable else expr


def columns(plpy, schema, table):
    """Columns of a live table; their ordinals are their attnums (a dropped column leaves a gap)."""
    relid = db.scalar(plpy, """select c.oid::bigint from pg_catalog.pg_class c
                               join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                               where n.nspname = $1 and c.relname = $2""", schema, table)
    if relid is None:
        return []
    rows = db.run_generic(plpy, _COLUMNS, relid)
    return [Column(r["ordinal"], r["name"], r["type"], r["is_pk"], r["comment"], r["collatable"], r["ranged"],
                   r["collation"], r["storage"], r["generated"], r["identity"]) for r in rows]


def as_stored(cols):
    """Copies of the columns whose type is their storage type: the columns of a table that holds values as
    object tables do."""
    copies = []
    for c in cols:
        copy = Column(c.ordinal, c.name, c.type, c.is_pk, c.comment, c.collatable, c.ranged,
                      c.collation if c.collatable else None, c.storage)
        copy.sql_type = c.storage
        copies.append(copy)
    return copies


def as_trusted(cols):
    """Copies of the columns for tables the extension itself fills: a column whose type is missing here or not
    trusted (casting to it could run another role's code with the extension's rights) keeps its storage type."""
    return [c if c.sql_type is not None and c.trusted else as_stored([c])[0] for c in cols]


# ---------------------------------------------------------------------------------------------------------------
# Types and collations of a stored schema: resolved against the catalog, never pasted
# ---------------------------------------------------------------------------------------------------------------

# What a type or collation name may hold outside double-quoted identifiers (format_type and format('%I.%I')
# never write more): no comment, string, dollar quote, operator or statement separator can hide in it.
_NAME_TEXT = re.compile(r'^(?:"(?:[^"]|"")+"|[A-Za-z0-9_ .,()\[\]])+$')


def _resolve_each(plpy, names, sql):
    """{name: row of `sql` ($1 the name)} for each name, None where the lookup raised (not a name at all)."""
    found = {}
    for name in names:
        try:
            with plpy.subtransaction():
                found[name] = db.one(plpy, sql, name)
        except plpy.SPIError:
            found[name] = None
    return found


def resolve_types(plpy, names):
    """(resolved, malformed) for type names (with their modifiers, as format_type writes them): resolved maps
    each name to (oid, typmod, the name as format_type writes it here), or None when no type has it here;
    malformed holds the strings that are not type names at all."""
    names = sorted({n for n in names if n is not None})
    malformed = {n for n in names if not _NAME_TEXT.match(n)}
    wanted = [n for n in names if n not in malformed]
    lookup = """select pg_catalog.to_regtype(u.name)::bigint as oid,
                       pg_catalog.format_type(pg_catalog.to_regtype(u.name), null) as plain
                from pg_catalog.unnest($1::text[]) with ordinality u (name, n) order by u.n"""
    try:
        with plpy.subtransaction():
            rows = list(db.run(plpy, lookup, wanted)) if wanted else []
    except plpy.SPIError:  # PostgreSQL 15's to_regtype raises on a string it cannot parse: find which
        single = _resolve_each(plpy, wanted, """
            select pg_catalog.to_regtype($1)::bigint as oid,
                   pg_catalog.format_type(pg_catalog.to_regtype($1), null) as plain""")
        malformed |= {n for n, r in single.items() if r is None}
        wanted = [n for n in wanted if single[n] is not None]
        rows = [single[n] for n in wanted]
    resolved = {}
    modified = []
    for name, row in zip(wanted, rows, strict=True):
        if row["oid"] is None:
            resolved[name] = None
        elif row["plain"] == name:
            resolved[name] = (row["oid"], -1, name)
        else:
            modified.append((name, row["oid"]))
    if modified:
        # Only the modifiers (varchar(10), numeric(8,2)) are missing: the names are type names (to_regtype read
        # each as one) of harmless characters (_NAME_TEXT), so a query that casts null to each is only that.
        result = plpy.execute("select " + ", ".join(f"null::{name} as c{i}" for i, (name, _) in enumerate(modified))
                              + " limit 0")
        typmods = result.coltypmods()
        formatted = db.column(plpy, """
            select pg_catalog.format_type(u.oid::pg_catalog.oid, u.typmod::int)
            from rows from (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[]))
                 with ordinality u (oid, typmod, n)
            order by u.n""",
                              [str(oid) for _, oid in modified], [str(m) for m in typmods])
        for (name, oid), typmod, text in zip(modified, typmods, formatted, strict=True):
            resolved[name] = (oid, typmod, text)
    return resolved, malformed


def resolve_collations(plpy, names):
    """({name: quoted qualified name here, or None when there is no such collation}, malformed names)."""
    names = sorted({n for n in names if n is not None})
    malformed = {n for n in names if not _NAME_TEXT.match(n)}
    wanted = [n for n in names if n not in malformed]
    lookup = """select (select pg_catalog.format('%I.%I', n.nspname, c.collname) from pg_catalog.pg_collation c
                        join pg_catalog.pg_namespace n on n.oid = c.collnamespace
                        where c.oid = pg_catalog.to_regcollation(u.name)) as name
                from pg_catalog.unnest($1::text[]) with ordinality u (name, n) order by u.n"""
    try:
        with plpy.subtransaction():
            found = db.column(plpy, lookup, wanted) if wanted else []
    except plpy.SPIError:
        single = _resolve_each(plpy, wanted, """
            select (select pg_catalog.format('%I.%I', n.nspname, c.collname) from pg_catalog.pg_collation c
                    join pg_catalog.pg_namespace n on n.oid = c.collnamespace
                    where c.oid = pg_catalog.to_regcollation($1)) as name""")
        malformed |= {n for n, r in single.items() if r is None}
        wanted = [n for n in wanted if single[n] is not None]
        found = [single[n]["name"] for n in wanted]
    return dict(zip(wanted, found, strict=True)), malformed


def spec_problem(spec):
    """What is wrong with the shape of a stored schema (a list of [ordinal, name, type, is_pk, comment?,
    collation?]), or None."""
    if not isinstance(spec, list):
        return "it is not a list of columns"
    seen = set()
    for c in spec:
        if not isinstance(c, list) or not 4 <= len(c) <= 6:
            return "a column is not a list [ordinal, name, type, is_pk, comment, collation]"
        ordinal, name, type_, is_pk = c[:4]
        if not isinstance(ordinal, int) or isinstance(ordinal, bool) or not 0 < ordinal < 32768:
            return "a column's ordinal is not a number from 1 to 32767"
        if not isinstance(name, str) or not name or "\x00" in name or name in seen:
            return "a column's name is not a string, empty or used twice"
        seen.add(name)
        if not isinstance(type_, str) or not type_:
            return f'the type of column "{name}" is not a string'
        if not isinstance(is_pk, bool):
            return f'is_pk of column "{name}" is not true or false'
        if any(x is not None and not isinstance(x, str) for x in c[4:]):
            return f'the comment or collation of column "{name}" is not a string'
    return None


def definition_columns(definition):
    """{column name: what the table definition says of it} (see definitions.py), {} without a definition."""
    columns = definition.get("columns") if isinstance(definition, dict) else None
    return columns if isinstance(columns, dict) else {}


_STORAGE_OF = """
with recursive src (n, oid, typmod) as (
    select u.n::int, u.oid::pg_catalog.oid, u.typmod::int
    from rows from (pg_catalog.unnest($1::text[]), pg_catalog.unnest($2::text[])) with ordinality u (oid, typmod, n)
), """ + storage_ctes("src") + """
select pg_catalog.format_type(s.oid, s.typmod) as storage from storage s order by s.n"""

_TYPE_PROPERTIES = """
select t.typcollation <> 0 as collatable, """ + _RANGED + """ as ranged,
       """ + _BUILT_IN.format(t="t") + """ as built_in
from pg_catalog.unnest($1::text[]) with ordinality u (oid, n)
join pg_catalog.pg_type t on t.oid = u.oid::pg_catalog.oid
order by u.n"""


def from_spec(plpy, spec, definition=None, dump=False):
    """Columns of a stored table schema (and of its definition: each column's storage type), with their types
    and collations resolved against this engine's catalog: sql_type is the type's name here (None when it
    does not exist here), the collation its quoted name. A schema of the wrong shape, or naming a type or
    collation that is not a name at all, fails with XX001 when it comes from a dump, 42704 otherwise."""

    def refuse(what, sqlstate=errors.DATA_CORRUPTED):
        if dump:
            errors.fail(plpy, errors.DATA_CORRUPTED, f"the table schema of the dump is malformed: {what}",
                        hint="the data was damaged or altered in transit; fetch it again from its source")
        errors.fail(plpy, sqlstate, f"a stored table schema is unusable here: {what}")

    problem = spec_problem(spec)
    if problem:
        refuse(problem)
    described = definition_columns(definition)
    given = {}
    for c in spec:
        storage = described.get(c[1], {}).get("storage") if isinstance(described.get(c[1]), dict) else None
        if storage is not None and not isinstance(storage, str):
            refuse(f'the storage type of column "{c[1]}" is not a string')
        given[c[1]] = storage
    resolved, malformed = resolve_types(plpy, [c[2] for c in spec] + list(given.values()))
    if malformed:
        refuse(f"{sorted(malformed)[0]!r} is not a type name", errors.UNDEFINED_OBJECT)
    collations, bad = resolve_collations(plpy, [c[5] for c in spec if len(c) > 5])
    if bad or any(v is None for v in collations.values()):
        name = sorted(bad)[0] if bad else next(k for k, v in collations.items() if v is None)
        refuse(f"collation {name!r} does not exist on this engine", errors.UNDEFINED_OBJECT)
    cols = []
    for c in spec:
        col = Column(c[0], c[1], c[2], c[3], c[4] if len(c) > 4 else None,
                     collation=collations[c[5]] if len(c) > 5 and c[5] is not None else None)
        found = resolved.get(c[2])
        col.sql_type = found[2] if found else None
        if given[c[1]] is not None:
            if resolved.get(given[c[1]]) is None:
                refuse(f'the storage type {given[c[1]]!r} of column "{c[1]}" does not exist')
            col.storage = resolved[given[c[1]]][2]
        elif found is None:
            errors.fail(plpy, errors.UNDEFINED_OBJECT,
                        f'type {c[2]} of column "{c[1]}" does not exist on this engine',
                        hint="create the type (or install the extension that provides it) first")
        cols.append(col)
    derive = [c for c in cols if given[c.name] is None]
    if derive:
        found = [resolved[c.type] for c in derive]
        storages = db.column(plpy, _STORAGE_OF, [str(f[0]) for f in found], [str(f[1]) for f in found])
        for c, storage in zip(derive, storages, strict=True):
            c.storage = storage
    if cols:
        storage_oids = resolve_types(plpy, [c.storage for c in cols])[0]
        props = db.run(plpy, _TYPE_PROPERTIES, [str(storage_oids[c.storage][0]) for c in cols])
        for c, p in zip(cols, props, strict=True):
            if not p["built_in"]:
                refuse(f'column "{c.name}" would be stored as {c.storage}, which is not a built-in type')
            c.collatable, c.ranged = p["collatable"], p["ranged"]
        _mark_trusted(plpy, [c for c in cols if c.sql_type is not None and c.sql_type != c.storage])
    return cols


# reach (n, oid): the types named in $1 (text[], numbered n) and every type their values are made of: a domain's
# base type, an array's element, a composite's attributes, a range's subtype.
TYPES_REACHED = """
with recursive reach (n, oid) as (
    select u.n, pg_catalog.to_regtype(u.type)::oid from pg_catalog.unnest($1::text[]) with ordinality as u (type, n)
    union
    select r.n, x.oid from reach r
    join pg_catalog.pg_type ty on ty.oid = r.oid
    cross join lateral (
        select ty.typbasetype where ty.typtype = 'd'
        union all
        select ty.typelem where ty.typelem <> 0 and ty.typtype <> 'd'
        union all
        select a.atttypid from pg_catalog.pg_attribute a
        where ty.typtype = 'c' and a.attrelid = ty.typrelid and a.attnum > 0 and not a.attisdropped
        union all
        select g.rngsubtype from pg_catalog.pg_range g where ty.typtype = 'r' and g.rngtypid = ty.oid
    ) as x (oid)
)"""

# Types reached from a column's type that are domains with constraints owned by a role that is not a superuser:
# casting a value to such a type runs that role's code.
_UNTRUSTED = TYPES_REACHED + """
select r.n, pg_catalog.format_type(ty.oid, null) as type from reach r
join pg_catalog.pg_type ty on ty.oid = r.oid
join pg_catalog.pg_roles o on o.oid = ty.typowner
where ty.typtype = 'd' and not o.rolsuper
  and exists (select from pg_catalog.pg_constraint c where c.contypid = ty.oid)
order by r.n"""


def _mark_trusted(plpy, cols):
    """Set `trusted` of the columns: false when casting a stored value to the column's type would run the code
    of a role that is not a superuser (a domain's constraints)."""
    if cols:
        untrusted = {r["n"] for r in db.run(plpy, _UNTRUSTED, [c.sql_type for c in cols])}
        for n, c in enumerate(cols, 1):
            c.trusted = n not in untrusted


def check_trusted_types(plpy, table, cols):
    """Refuse columns whose values would run another role's code with the extension's rights: domains with
    constraints owned by a role that is not a superuser (reached through arrays, domains, composites and
    ranges)."""
    if not cols:
        return
    untrusted = db.run(plpy, _UNTRUSTED, [c.sql_type or c.type for c in cols])
    if untrusted.nrows():
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f'table "{table}" uses type {untrusted[0]["type"]}, a domain with constraints owned by a role '
                    "that is not a superuser: its checks would run with the extension's rights",
                    hint="use the domain's base type, or have a superuser run this call")


def schema_key(spec):
    """What a table's stored schema is compared by: (ordinal, name, type, is_pk) of each column; comments and
    collations do not count."""
    return [(int(c[0]), c[1], c[2], bool(c[3])) for c in spec]


def same_schema(spec, cols):
    """Whether a stored schema describes these live columns."""
    return schema_key(spec) == schema_key([c.spec() for c in cols])


def key_columns(cols):
    """The primary key columns, or none: then the whole row is the key."""
    return [c for c in cols if c.is_pk]


def ordering(cols, prefix=""):
    """ORDER BY list that sorts rows by their key, deterministically on any engine, in the order of the values
    as they are stored."""
    key = key_columns(cols)
    if key:
        return ", ".join(c.order_expr(prefix) for c in key)
    exprs = [c.order_expr(prefix) for c in cols if c.ranged]
    row = "row(" + ", ".join(prefix + ident(c.name) for c in cols) + ')::text collate "C"'
    return ", ".join(exprs + [row])


def ordered_by_index(plpy, schema, table, cols):
    """Whether an index of the live table gives its rows in chunk order (`ordering`), so that a query can read
    the rows after a given key in that order without sorting: a valid btree index without predicate whose
    leading columns are the primary key's columns (in attnum order), ascending, each with its type's default
    operator class and, for a collatable column, the C (or POSIX) collation; no key column stored as another
    type."""
    key = key_columns(cols)
    if not key or any(c.converted() for c in key):
        return False
    return db.scalar(plpy, """
        select exists (
            select from pg_catalog.pg_index i
            join pg_catalog.pg_class r on r.oid = i.indrelid
            join pg_catalog.pg_namespace n on n.oid = r.relnamespace
            join pg_catalog.pg_class x on x.oid = i.indexrelid
            join pg_catalog.pg_am am on am.oid = x.relam
            where n.nspname = $1 and r.relname = $2 and am.amname = 'btree' and i.indisvalid
              and i.indpred is null and i.indnkeyatts >= pg_catalog.cardinality($3::text[])
              and not exists (
                  select from pg_catalog.unnest($3::text[]) with ordinality as k (attnum, n)
                  left join pg_catalog.pg_opclass o on o.oid = i.indclass[k.n - 1]
                  where i.indkey[k.n - 1] <> k.attnum::int2 or i.indoption[k.n - 1] <> 0
                     or not coalesce(o.opcdefault, false)
                     or i.indcollation[k.n - 1] not in (0, 'pg_catalog."C"'::pg_catalog.regcollation,
                                                        'pg_catalog."POSIX"'::pg_catalog.regcollation)))""",
                     schema, table, [str(c.ordinal) for c in key])


def column_list(cols, prefix=""):
    return ", ".join(prefix + ident(c.name) for c in cols)


def stored_list(cols, prefix=""):
    """The columns of `prefix` as their stored values, named as the columns (a SELECT list)."""
    return ", ".join(c.stored(prefix + ident(c.name)) + (f" as {ident(c.name)}" if c.converted() else "")
                     for c in cols)


def row_text(cols, prefix=""):
    """The text form of a row of these columns: what row hashes are computed over (the same for the stored
    values: storage types keep every value's text)."""
    return "row(" + column_list(cols, prefix) + ")::text"


def column_definitions(cols):
    return ", ".join(c.definition() for c in cols)


def storage_definitions(cols):
    """The columns of a table holding values as object tables do."""
    return ", ".join(c.storage_definition() for c in cols)


def select_list(*parts):
    """A comma-separated list of the non-empty parts (a table may have no columns at all)."""
    return ", ".join(p for p in parts if p)


def list_tables(plpy, schema):
    """Ordinary tables of a schema (views, foreign tables and sequences are not versioned). Found through the
    dependency every relation has on its schema (pg_depend's index on the referenced object), not by scanning
    pg_class, which holds every object table of the engine too."""
    return db.column(plpy, """
        select c.relname from pg_catalog.pg_namespace n
        join pg_catalog.pg_depend d on d.refclassid = 'pg_catalog.pg_namespace'::pg_catalog.regclass
                                   and d.refobjid = n.oid and d.refobjsubid = 0
                                   and d.classid = 'pg_catalog.pg_class'::pg_catalog.regclass and d.deptype = 'n'
        join pg_catalog.pg_class c on c.oid = d.objid and c.relnamespace = n.oid
        where n.nspname = $1 and c.relkind in ('r', 'p') and not c.relispartition
        order by c.relname""", schema)


def exists(plpy, schema, table):
    return db.scalar(plpy, """
        select exists (select from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                       where n.nspname = $1 and c.relname = $2)""", schema, table)


def require(plpy, schema, table):
    """An error unless schema.table exists."""
    if not exists(plpy, schema, table):
        errors.fail(plpy, errors.UNDEFINED_TABLE, f'table "{schema}"."{table}" does not exist')


_READING = """
select c.relkind::text as kind,
       pg_catalog.has_schema_privilege(session_user, c.relnamespace, 'USAGE')
       and pg_catalog.has_table_privilege(session_user, c.oid, 'SELECT') as readable,
       c.relrowsecurity
       and not (pg_catalog.pg_has_role(session_user, c.relowner, 'USAGE') and not c.relforcerowsecurity)
       and not exists (select from pg_catalog.pg_roles r
                       where r.rolname = session_user and (r.rolsuper or r.rolbypassrls)) as policed,
       (select pg_catalog.format('%I.%I', pn.nspname, pc.relname)
        from pg_catalog.pg_partition_tree(c.oid) p
        join pg_catalog.pg_class pc on pc.oid = p.relid
        join pg_catalog.pg_namespace pn on pn.oid = pc.relnamespace
        where pc.relkind not in ('r', 'p') order by p.level, 1 limit 1) as odd_partition
from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
where n.nspname = $1 and c.relname = $2"""


def readable(plpy, schema, table):
    """Whether the caller (session_user) may read the table's rows itself: USAGE on its schema, SELECT on it, and
    no row-level security hiding rows from it."""
    row = db.one(plpy, _READING, schema, table)
    return row is not None and row["readable"] and not row["policed"]


def refusal(plpy, schema, table):
    """Why code running with the extension's rights may not read a live table for its caller, as (sqlstate,
    message, hint), or None. Only relations whose reading runs no code are read: a plain table (ONLY: its
    inheritance children are tables of their own, and may be anything), or a partitioned table whose partitions
    are all plain tables; and only what the caller may read itself."""
    row = db.one(plpy, _READING, schema, table)
    if row is None:
        return errors.UNDEFINED_TABLE, f'table "{schema}"."{table}" does not exist', None
    if not row["readable"] or row["policed"]:
        return (errors.INSUFFICIENT_PRIVILEGE, f'permission denied to read table "{schema}"."{table}"',
                "ask its owner for SELECT on it (and for the rows that row-level security hides)")
    if row["kind"] not in ("r", "p"):
        return errors.FEATURE_NOT_SUPPORTED, f'"{schema}"."{table}" is not a table', None
    if row["odd_partition"] is not None:
        return (errors.FEATURE_NOT_SUPPORTED,
                f'table "{schema}"."{table}" has partition {row["odd_partition"]}, which is not a plain table: '
                "splitgraph reads only tables whose reading runs no code",
                "detach that partition (or move its rows into a plain table partition) first")
    return None


def source(plpy, schema, table):
    """The FROM item by which code running with the extension's rights reads a live table for its caller: ONLY a
    plain table, or a partitioned table whose partitions are all plain tables; an error otherwise (refusal)."""
    refused = refusal(plpy, schema, table)
    if refused is not None:
        errors.fail(plpy, refused[0], refused[1], hint=refused[2])
    kind = db.scalar(plpy, """select c.relkind::text from pg_catalog.pg_class c
                              join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                              where n.nspname = $1 and c.relname = $2""", schema, table)
    return ("only " if kind == "r" else "") + f"{ident(schema)}.{ident(table)}"


def check_storable(plpy, table, cols):
    if any(c.name == FLAG_COLUMN for c in cols):
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED,
                    f'table "{table}" has a column named {FLAG_COLUMN}, which fragments use for themselves',
                    hint="rename the column before committing")
