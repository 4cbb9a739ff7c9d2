"""Running SQL through plpy: parameters are always bound, plans are prepared once per session."""
import contextlib
import json
import secrets

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
