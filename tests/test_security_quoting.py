"""Values the engine writes into SQL text stay values whatever the caller's session settings.

The Python code quotes a value as '...' with its quotes doubled. A caller may `set standard_conforming_strings =
off`, under which a backslash escapes the next character inside '...': a value ending in a backslash and a quote
would then end the literal early and the rest of the value would be read as SQL. Every function of the extension
pins standard_conforming_strings = on, so such values are only data: a role commits, diffs and checks out keys made
of backslashes and quotes (a delta commit writes the lowest and highest key of the table's log into its query) and
gets exactly its rows back, and none of its text runs. The same session also reads NULL in an array's text as a
string (array_nulls = off) and quotes every identifier it prints (quote_all_identifiers = on): neither changes
what the engine stores or returns.
"""
import pytest

from conftest import sql, value

# The table's lowest and highest keys when tracking began are written into a delta commit's query as literals.
LOW = "\\' or true) union all select 'a', 'injected' --"
HIGH = "y\\'); create table public.quoting_injected (); --"
ROWS = {LOW: "low", "m\\\\'m": "middle", HIGH: "high"}


@pytest.fixture
def alice(roles):
    role = roles.new("quoting")
    conn = role.connect(standard_conforming_strings="off", array_nulls="off", quote_all_identifiers="on")
    assert value(conn, "show standard_conforming_strings") == "off"
    assert value(conn, "show array_nulls") == "off"
    return role, conn


def rows(conn, table):
    """{k: v} of the table, checking that each row's array kept its NULL element (a = [v, NULL])."""
    found = sql(conn, f"select k, v, a[1], a[2] is null, cardinality(a) from {table} order by k")
    assert all(first == v and null and n == 2 for _, v, first, null, n in found)
    return {k: v for k, v, *_ in found}


PINNED = ("standard_conforming_strings=on", "array_nulls=on", "quote_all_identifiers=off",
          "transform_null_equals=off")


@pytest.mark.parametrize("setting", PINNED)
def test_every_function_pins_how_its_sql_reads(conn, setting):
    loose = sql(conn, """
        select p.oid::regprocedure::text from pg_catalog.pg_proc p
        join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('splitgraph', 'splitgraph_internal') and p.prolang = (
                  select l.oid from pg_catalog.pg_language l where l.lanname = 'plpython3u')
              and p.proname <> 'python_init'
              and not coalesce(%s = any (p.proconfig), false)""", setting)
    assert loose == []
    doors = value(conn, """
        select count(*) from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'splitgraph' and %s = any (p.proconfig)""", setting)
    assert doors > 50


def test_backslashes_and_quotes_in_keys_are_data_with_conforming_strings_off(conn, alice):
    role, c = alice
    repo = f"{role.name}/keys"
    table = f'"{repo}".t'
    sql(c, "select splitgraph.init(%s)", repo)
    sql(c, f"create table {table} (k text primary key, v text, a text[])")
    for k, v in ROWS.items():
        sql(c, f"insert into {table} values (%s, %s, array[%s, null])", k, v, v)
    first = value(c, "select splitgraph.commit(%s)", repo)
    # writes inside and outside the bounds the log began with (the delta commit reads both)
    after = dict(ROWS)
    sql(c, f"update {table} set v = 'changed', a = array['changed', null] where k = %s", HIGH)
    after[HIGH] = "changed"
    for k in ("\\'", "z\\'' or '", "zz\\"):
        sql(c, f"insert into {table} values (%s, 'new', array['new', null])", k)
        after[k] = "new"
    sql(c, f"delete from {table} where k = %s", LOW)
    del after[LOW]
    second = value(c, "select splitgraph.commit(%s)", repo)
    assert rows(c, table) == after
    assert value(c, "select count(*) from splitgraph.diff(%s, 't', %s, %s)", repo, first, second) == 6
    sql(c, "select splitgraph.checkout(%s, %s)", repo, first)
    assert rows(c, table) == ROWS
    sql(c, "select splitgraph.checkout(%s, %s)", repo, second)
    assert rows(c, table) == after
    assert value(conn, "select pg_catalog.to_regclass('public.quoting_injected')") is None
    assert value(conn, "select rolsuper from pg_catalog.pg_roles where rolname = %s", role.name) is False
