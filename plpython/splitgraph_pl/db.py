"""Running SQL through plpy: parameters are always bound, plans are prepared once per session."""
import contextlib
import json
import secrets
import signal

_plans = {}


class Json:
    """Marks a parameter to be sent as jsonb."""

    def __init__(self, value):
        self.value = value


def _type_of(value):
    if isinstance(value, bool):
        return "boolean"
    if isinstance(value, int):
        return "bigint"
    if isinstance(value, float):
        return "double precision"
    if isinstance(value, Json):
        return "jsonb"
    if isinstance(value, (list, tuple)):
        return "text[]"
    if isinstance(value, (bytes, bytearray)):
        return "bytea"
    return "text"


def _value(value):
    if isinstance(value, Json):
        return json.dumps(value.value)
    if isinstance(value, tuple):
        return list(value)
    return value


def run(plpy, query, *args):
    """Execute `query` with $1.. bound to `args`; returns plpy's result (rows as dicts)."""
    if not args:
        return plpy.execute(query)
    types = tuple(_type_of(a) for a in args)
    key = (query, types)
    plan = _plans.get(key)
    if plan is None:
        plan = plpy.prepare(query, list(types))
        _plans[key] = plan
    return plpy.execute(plan, [_value(a) for a in args])


def generic_plans(plpy):
    """Statements run meanwhile use their generic plan (made once per session, for any values bound): for catalog
    lookups whose plan does not depend on the values, which a custom plan would plan again at every call."""
    return settings(plpy, {"plan_cache_mode": "force_generic_plan"})


def run_generic(plpy, query, *args):
    """run() with the statement's generic plan (generic_plans)."""
    with generic_plans(plpy):
        return run(plpy, query, *args)


def one(plpy, query, *args):
    """The first row of the result, or None."""
    rows = run(plpy, query, *args)
    return rows[0] if rows.nrows() else None


def scalar(plpy, query, *args):
    row = one(plpy, query, *args)
    return None if row is None else next(iter(row.values()))


def column(plpy, query, *args):
    rows = run(plpy, query, *args)
    if not rows.nrows():
        return []
    name = rows.colnames()[0]
    return [r[name] for r in rows]


def temp_name(prefix):
    """A fresh name for a scratch relation: the prefix, then 12 random hex digits."""
    return f"{prefix}_{secrets.token_hex(6)}"


def schema_exists(plpy, name):
    return scalar(plpy, "select exists (select from pg_catalog.pg_namespace where nspname = $1)", name)


def schema_oid(plpy, name):
    """The oid of the schema named `name` (an int), or None."""
    return scalar(plpy, "select oid::bigint from pg_catalog.pg_namespace where nspname = $1", name)


def dependents_outside(plpy, schema, servers=()):
    """What DROP SCHEMA schema CASCADE (and DROP SERVER ... CASCADE of the foreign `servers`, oids, which go with
    it) would drop or change outside the schema (another schema's view, foreign key, column of one of its types,
    function...), as descriptions such as 'view "bob".mirror'. Everything that depends on the schema's objects,
    transitively (pg_depend), is placed by the object it belongs to (a rule, trigger, policy or default by its
    table); toast tables go with their tables, user mappings with their servers. Whatever cannot be placed
    counts as outside."""
    return column(plpy, """
        with recursive target as (select oid from pg_catalog.pg_namespace where nspname = $1),
        closure (classid, objid, objsubid) as (
            select 'pg_catalog.pg_namespace'::pg_catalog.regclass::oid, t.oid, 0 from target t
            union
            select 'pg_catalog.pg_foreign_server'::pg_catalog.regclass::oid, s::oid, 0
            from pg_catalog.unnest($2::bigint[]) as s
            union
            select d.classid, d.objid, d.objsubid from pg_catalog.pg_depend d
            join closure c on d.refclassid = c.classid and d.refobjid = c.objid
                          and (c.objsubid = 0 or d.refobjsubid = c.objsubid)
            where d.deptype in ('n', 'a', 'i')
        ),
        placed as (
            select coalesce(r.ev_class, g.tgrelid, p.polrelid, a.adrelid, pr.prrelid) as relid, c.*
            from closure c
            left join pg_catalog.pg_rewrite r on c.classid = 'pg_catalog.pg_rewrite'::pg_catalog.regclass
                                             and r.oid = c.objid
            left join pg_catalog.pg_trigger g on c.classid = 'pg_catalog.pg_trigger'::pg_catalog.regclass
                                             and g.oid = c.objid
            left join pg_catalog.pg_policy p on c.classid = 'pg_catalog.pg_policy'::pg_catalog.regclass
                                            and p.oid = c.objid
            left join pg_catalog.pg_attrdef a on c.classid = 'pg_catalog.pg_attrdef'::pg_catalog.regclass
                                             and a.oid = c.objid
            left join pg_catalog.pg_publication_rel pr
                   on c.classid = 'pg_catalog.pg_publication_rel'::pg_catalog.regclass and pr.oid = c.objid
        ),
        owners as (
            select distinct case when relid is null then classid else 'pg_catalog.pg_class'::pg_catalog.regclass::oid
                            end as classid,
                   coalesce(relid, objid) as objid, case when relid is null then objsubid else 0 end as objsubid
            from placed
        )
        select pg_catalog.format('%s %s', i.type, i.identity)
        from owners o cross join target t
        cross join lateral pg_catalog.pg_identify_object(o.classid, o.objid, o.objsubid) i
        where not (o.classid = 'pg_catalog.pg_namespace'::pg_catalog.regclass and o.objid = t.oid)
          and not (o.classid = 'pg_catalog.pg_default_acl'::pg_catalog.regclass
                   and exists (select from pg_catalog.pg_default_acl a
                               where a.oid = o.objid and a.defaclnamespace = t.oid))
          and not (o.classid = 'pg_catalog.pg_foreign_server'::pg_catalog.regclass
                   and o.objid = any($2::bigint[]::oid[]))
          and not (o.classid = 'pg_catalog.pg_user_mapping'::pg_catalog.regclass
                   and exists (select from pg_catalog.pg_user_mapping m
                               where m.oid = o.objid and m.umserver = any($2::bigint[]::oid[])))
          and i.schema is distinct from pg_catalog.quote_ident($1) and i.schema is distinct from 'pg_toast'
        order by 1""", schema, [int(s) for s in servers])


def notice(plpy, message):
    plpy.notice("splitgraph: " + message)


@contextlib.contextmanager
def settings(plpy, values):
    """Change settings for the statements inside the block only."""
    if not values:
        yield
        return
    names = list(values)
    old = column(plpy, "select pg_catalog.current_setting(n) from pg_catalog.unnest($1::text[]) "
                       "with ordinality u(n, i) order by i", names)
    run(plpy, "select pg_catalog.set_config(n, v, true) from unnest($1::text[], $2::text[]) u(n, v)",
        names, [values[n] for n in names])
    try:
        yield
    finally:
        run(plpy, "select pg_catalog.set_config(n, v, true) from unnest($1::text[], $2::text[]) u(n, v)", names, old)


def quiet_thread():
    """The initializer of a worker thread: it takes no signals (the backend's handlers run on its main thread)."""
    signal.pthread_sigmask(signal.SIG_BLOCK, signal.valid_signals())
