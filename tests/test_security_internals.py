"""Issue 8, medium and low findings about helpers and what arrives from elsewhere.

- splitgraph_internal.import_drop_sandbox (executable by PUBLIC) drops any schema named sg_query_*, and
  import_sandbox leaves schemas behind;
- an administrator's apply_fragments writes into object tables (and other tables of the extension's schemas);
- load_object stores the `index` metadata of a dump's header unchecked, and answers malformed headers with Python
  errors (38000) instead of XX001.

Attackers are fresh LOGIN roles (not superusers).
"""
import json
import zlib

import pytest
from psycopg2 import sql as pgsql

from conftest import sql, value
from support.security import attempt, object_dump


def sandboxes(conn):
    return {r[0] for r in sql(conn, "select nspname::text from pg_namespace where nspname like 'sg_query_%%'")}


# ---------------------------------------------------------------------------------------------------------------
# Query sandboxes
# ---------------------------------------------------------------------------------------------------------------

def test_import_drop_sandbox_cannot_drop_a_schema_it_did_not_make(conn, roles):
    """bob calls splitgraph_internal.import_drop_sandbox on an administrator's schema named sg_query_*: refused
    (42501, or the helper no longer exists: 42883), and the schema and its table stay."""
    bob = roles.new("sbdrop")
    victim = f"sg_query_{bob.name}"
    sql(conn, pgsql.SQL("create schema {}").format(pgsql.Identifier(victim)))
    sql(conn, pgsql.SQL("create table {}.kept (x int)").format(pgsql.Identifier(victim)))
    error = attempt(bob.conn, "select splitgraph_internal.import_drop_sandbox(%s)", victim)
    assert victim in sandboxes(conn), "bob dropped the administrator's schema"
    assert error is not None and error.pgcode in ("42501", "42883"), f"{error}"


def test_no_query_sandbox_is_left_behind(conn, roles):
    """Neither a direct call of splitgraph_internal.import_sandbox (refused, or a no-op), nor import_query that
    succeeds or is refused, leaves a sg_query_* schema behind."""
    bob = roles.new("sbleft")
    c = bob.conn
    src, dst = f"{bob.name}/src", f"{bob.name}/dst"
    sql(c, "select splitgraph.init(%s)", src)
    sql(c, f'create table "{src}".t (id int primary key, v text)')
    sql(c, f"""insert into "{src}".t values (1, 'a')""")
    sql(c, "select splitgraph.commit(%s)", src)
    sql(c, "select splitgraph.init(%s)", dst)
    before = sandboxes(conn)
    attempt(c, "select splitgraph_internal.import_sandbox(%s, null)", src)
    sql(c, "select splitgraph.import_query(%s, 'select id from t', %s, 'ok')", src, dst)
    attempt(c, "select splitgraph.import_query(%s, 'select 1/0 as x from t', %s, 'fails')", src, dst)
    assert sandboxes(conn) - before == set(), "a query sandbox was left behind"


# ---------------------------------------------------------------------------------------------------------------
# apply_fragments into the extension's own tables
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("schema", ["splitgraph_meta", "splitgraph_audit", "splitgraph_internal", "splitgraph"])
def test_apply_fragments_refuses_targets_in_the_extensions_schemas(conn, schema):
    """An administrator's apply_fragments into a table of splitgraph_meta (an object table: objects never change),
    splitgraph_audit, splitgraph_internal or splitgraph is refused with 42501, even for a superuser; the target
    is unchanged."""
    repo = f"apply_{schema}"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f'insert into "{repo}".t values (1, %s)', repo)
    first = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, f'insert into "{repo}".t values (2, %s)', repo)
    second = value(conn, "select splitgraph.commit(%s)", repo)
    base = value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, first)["objects"][0]
    change = value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, second)["objects"][-1]
    if schema == "splitgraph_meta":
        target = base
    else:
        target = "sg_apply_target"
        sql(conn, pgsql.SQL("create table {}.{} (id int primary key, v text)").format(pgsql.Identifier(schema),
                                                                                      pgsql.Identifier(target)))
    relation = pgsql.SQL("{}.{}").format(pgsql.Identifier(schema), pgsql.Identifier(target))
    try:
        before = sql(conn, pgsql.SQL("select * from {} order by 1").format(relation))
        error = attempt(conn, "select splitgraph.apply_fragments(array[%s], %s, %s)", change, schema, target)
        assert sql(conn, pgsql.SQL("select * from {} order by 1").format(relation)) == before, \
            f"apply_fragments wrote into {schema}.{target}"
        assert error is not None and error.pgcode == "42501", f"{error}"
    finally:
        if schema != "splitgraph_meta":
            sql(conn, pgsql.SQL("drop table {}").format(relation))


# ---------------------------------------------------------------------------------------------------------------
# load_object: what a dump's header says
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("index", [{"range": {"v": ["aaa", "aab"]}}, [1], "not an index"],
                         ids=["forged range", "list", "string"])
def test_load_object_checks_the_index_of_a_dump(conn, roles, index):
    """A dump whose rows hash to its id but whose header carries a wrong or malformed `index`: refused (XX001),
    or stored with the range index the rows really have (v: [min, max] of its values)."""
    bob = roles.new("ldidx")
    value_ = f"zz-{bob.name}"
    oid, data = object_dump([f"({value_})"], [("v", "text", False)], index=index)
    error = attempt(bob.conn, "select splitgraph.load_object(%s, %s)", oid, data)
    if error is None:
        stored = value(conn, "select splitgraph.object_info(%s)", oid)["index"]
        assert isinstance(stored, dict) and stored.get("range") == {"v": [value_, value_]}, \
            f"load_object stored the header's index unchecked: {stored!r}"
    else:
        assert error.pgcode == "XX001", f"{error}"
        assert value(conn, "select splitgraph.object_info(%s)", oid) is None


def _without(mapping, key):
    return {k: v for k, v in mapping.items() if k != key}


MALFORMED = {
    "no table_schema": lambda h: _without(h, "table_schema"),
    "table_schema a string": lambda h: {**h, "table_schema": "v text"},
    "column entry a string": lambda h: {**h, "table_schema": ["v text"]},
    "column entry too short": lambda h: {**h, "table_schema": [[1, "v"]]},
    "column name a number": lambda h: {**h, "table_schema": [[1, 5, "text", False]]},
    "column type a number": lambda h: {**h, "table_schema": [[1, "v", 5, False]]},
    "header a list": lambda h: [h],
}


@pytest.mark.parametrize("case", sorted(MALFORMED))
def test_load_object_answers_malformed_headers_with_xx001(conn, roles, case):
    """Malformed dump headers (wrong JSON types, missing keys) are refused with XX001 (not a Python error, 38000,
    nor a syntax error from SQL built of them); nothing is stored."""
    bob = roles.new("ldbad")
    oid, good = object_dump([f"(x-{bob.name})"], [("v", "text", False)])
    header_line, rows = zlib.decompress(good).split(b"\n", 1)
    header = MALFORMED[case](json.loads(header_line))
    data = zlib.compress(json.dumps(header).encode() + b"\n" + rows)
    error = attempt(bob.conn, "select splitgraph.load_object(%s, %s)", oid, data)
    assert error is not None and error.pgcode == "XX001", f"{case}: {error.pgcode if error else None} {error}"
    assert value(conn, "select splitgraph.object_info(%s)", oid) is None
