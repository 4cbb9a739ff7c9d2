"""Values the engine writes into SQL text stay values whatever the caller's session settings.

The Python code quotes a value as '...' with its quotes doubled. A caller may `set standard_conforming_strings =
off`, under which a backslash escapes the next character inside '...': a value ending in a backslash and a quote
would then end the literal early and the rest of the value would be read as SQL. Every function of the extension
pins standard_conforming_strings = on, so such values are only data: a role commits, diffs and checks out keys made
of backslashes and quotes (a delta commit writes the lowest and highest key of the table's log into its query) and
gets exactly its rows back, and none of its text runs.
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
    conn = role.connect(standard_conforming_strings="off")
    assert value(conn, "show standard_conforming_strings") == "off"
    return role, conn


def rows(conn, table):
    return dict(sql(conn, f"select k, v from {table} order by k"))


def test_every_function_pins_standard_conforming_strings(conn):
    loose = sql(conn, """
        select p.oid::regprocedure::text from pg_catalog.pg_proc p
        join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname in ('splitgraph', 'splitgraph_internal') and p.prolang = (
                  select l.oid from pg_catalog.pg_language l where l.lanname = 'plpython3u')
              and p.proname <> 'python_init'
              and not coalesce('standard_conforming_strings=on' = any (p.proconfig), false)""")
    assert loose == []
    doors = value(conn, """
        select count(*) from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        where n.nspname = 'splitgraph' and 'standard_conforming_strings=on' = any (p.proconfig)""")
    assert doors > 50


def test_backslashes_and_quotes_in_keys_are_data_with_conforming_strings_off(conn, alice):
    role, c = alice
    repo = f"{role.name}/keys"
    table = f'"{repo}".t'
    sql(c, "select splitgraph.init(%s)", repo)
    sql(c, f"create table {table} (k text primary key, v text)")
    for k, v in ROWS.items():
        sql(c, f"insert into {table} values (%s, %s)", k, v)
    first = value(c, "select splitgraph.commit(%s)", repo)
    # writes inside and outside the bounds the log began with (the delta commit reads both)
    after = dict(ROWS)
    sql(c, f"update {table} set v = 'changed' where k = %s", HIGH)
    after[HIGH] = "changed"
    for k in ("\\'", "z\\'' or '", "zz\\"):
        sql(c, f"insert into {table} values (%s, 'new')", k)
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
