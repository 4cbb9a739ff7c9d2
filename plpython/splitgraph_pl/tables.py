"""What live tables look like: their columns, keys and the kinds of values they hold."""
from . import db, errors
from .names import FLAG_COLUMN, ident

# Types with min/max aggregates: their columns get [min, max] ranges in object indexes and form the
# surrogate key (with the row text as a tie-breaker) of tables without a primary key. Domains count as
# their base type.
_RANGED = """(t.typcategory in ('N', 'D', 'T') and t.typelem = 0
               or t.oid in ('text'::regtype, 'character varying'::regtype, 'character'::regtype))"""
_BASE_TYPE = """join pg_catalog.pg_type t0 on t0.oid = {type_oid}
join pg_catalog.pg_type t on t.oid = case when t0.typtype = 'd' then t0.typbasetype else t0.oid end"""

_COLUMNS = """
select a.attname as name,
       pg_catalog.format_type(a.atttypid, a.atttypmod) as type,
       coalesce(a.attnum = any(i.indkey), false) as is_pk,
       pg_catalog.col_description(c.oid, a.attnum) as comment,
       t.typcollation <> 0 as collatable,
       case when a.attcollation not in (0, t.typcollation)
            then pg_catalog.format('%I.%I', cn.nspname, co.collname) end as collation,
       """ + _RANGED + """ as ranged
from pg_catalog.pg_class c
join pg_catalog.pg_namespace n on n.oid = c.relnamespace
join pg_catalog.pg_attribute a on a.attrelid = c.oid and a.attnum > 0 and not a.attisdropped
""" + _BASE_TYPE.format(type_oid="a.atttypid") + """
left join pg_catalog.pg_index i on i.indrelid = c.oid and i.indisprimary
left join pg_catalog.pg_collation co on co.oid = a.attcollation
left join pg_catalog.pg_namespace cn on cn.oid = co.collnamespace
where n.nspname = $1 and c.relname = $2
order by a.attnum
"""


class Column:
    __slots__ = ("ordinal", "name", "type", "is_pk", "comment", "collatable", "ranged", "collation")

    def __init__(self, ordinal, name, type, is_pk, comment=None, collatable=False, ranged=False, collation=None):
        self.ordinal, self.name, self.type, self.is_pk = ordinal, name, type, is_pk
        self.comment, self.collatable, self.ranged, self.collation = comment, collatable, ranged, collation

    def spec(self):
        """The stored form: [ordinal, name, type, is_pk, comment] and, when not the type's default, the
        column's collation (a schema's hash leaves comments and collations out)."""
        spec = [self.ordinal, self.name, self.type, self.is_pk, self.comment]
        return spec + [self.collation] if self.collation else spec

    def definition(self, type_=None):
        """The column in CREATE TABLE: its name, type and collation."""
        collation = f" collate {self.collation}" if self.collation else ""
        return f"{ident(self.name)} {type_ or self.type}{collation}"

    def order_expr(self, prefix=""):
        """Sort expression independent of the server's locale, so chunks are the same on every engine."""
        expr = prefix + ident(self.name)
        return expr + ' collate "C"' if self.collatable else expr


def columns(plpy, schema, table):
    """Columns of a live table, ordinals numbered 1..n (dropped columns leave no gaps)."""
    rows = db.run(plpy, _COLUMNS, schema, table)
    return [Column(i + 1, r["name"], r["type"], r["is_pk"], r["comment"], r["collatable"], r["ranged"],
                   r["collation"]) for i, r in enumerate(rows)]


def from_spec(plpy, spec):
    """Columns of a stored table schema, with the properties of their types looked up on this engine."""
    cols = [Column(int(c[0]), c[1], c[2], bool(c[3]), c[4] if len(c) > 4 else None,
                   collation=c[5] if len(c) > 5 else None) for c in spec]
    if cols:
        rows = db.run(plpy, """
            select t.typcollation <> 0 as collatable, """ + _RANGED + """ as ranged
            from pg_catalog.unnest($1::text[]) with ordinality as u(type, n)
            """ + _BASE_TYPE.format(type_oid="pg_catalog.to_regtype(u.type)") + """
            order by u.n""", [c.type for c in cols])
        if rows.nrows() != len(cols):
            missing = [c.type for c in cols if db.scalar(plpy, "select pg_catalog.to_regtype($1)", c.type) is None]
            errors.fail(plpy, errors.UNDEFINED_OBJECT, f"type {missing[0]} does not exist on this engine",
                        hint="create the type (or install the extension that provides it) first")
        for c, r in zip(cols, rows, strict=True):
            c.collatable, c.ranged = r["collatable"], r["ranged"]
    return cols


def check_trusted_types(plpy, table, cols):
    """Refuse columns whose values would run another role's code with the extension's rights: domains with
    constraints owned by a role that is not a superuser (reached through arrays, domains and composites)."""
    if not cols:
        return
    untrusted = db.column(plpy, """
        with recursive reach (oid) as (
            select pg_catalog.to_regtype(x)::oid from pg_catalog.unnest($1::text[]) as x
            union
            select n.oid from reach r
            join pg_catalog.pg_type ty on ty.oid = r.oid
            cross join lateral (
                select ty.typbasetype where ty.typtype = 'd'
                union all
                select ty.typelem where ty.typelem <> 0 and ty.typtype <> 'd'
                union all
                select a.atttypid from pg_catalog.pg_attribute a
                where ty.typtype = 'c' and a.attrelid = ty.typrelid and a.attnum > 0 and not a.attisdropped
            ) as n (oid)
        )
        select pg_catalog.format_type(ty.oid, null) from reach r
        join pg_catalog.pg_type ty on ty.oid = r.oid
        join pg_catalog.pg_roles o on o.oid = ty.typowner
        where ty.typtype = 'd' and not o.rolsuper
          and exists (select from pg_catalog.pg_constraint c where c.contypid = ty.oid)""", [c.type for c in cols])
    if untrusted:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f'table "{table}" uses type {untrusted[0]}, a domain with constraints owned by a role that is '
                    "not a superuser: its checks would run with the extension's rights",
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
    """ORDER BY list that sorts rows by their key, deterministically on any engine."""
    key = key_columns(cols)
    if key:
        return ", ".join(c.order_expr(prefix) for c in key)
    exprs = [c.order_expr(prefix) for c in cols if c.ranged]
    row = "row(" + ", ".join(prefix + ident(c.name) for c in cols) + ')::text collate "C"'
    return ", ".join(exprs + [row])


def column_list(cols, prefix=""):
    return ", ".join(prefix + ident(c.name) for c in cols)


def row_text(cols, prefix=""):
    """The text form of a row of these columns: what row hashes are computed over."""
    return "row(" + column_list(cols, prefix) + ")::text"


def column_definitions(cols):
    return ", ".join(c.definition() for c in cols)


def select_list(*parts):
    """A comma-separated list of the non-empty parts (a table may have no columns at all)."""
    return ", ".join(p for p in parts if p)


def list_tables(plpy, schema):
    """Ordinary tables of a schema (views, foreign tables and sequences are not versioned)."""
    return db.column(plpy, """
        select c.relname from pg_catalog.pg_class c
        join pg_catalog.pg_namespace n on n.oid = c.relnamespace
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
