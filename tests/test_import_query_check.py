"""Issue 8, medium: import_query's check of its query. The query runs with the caller's rights over read-only views
of the source image; the check promises that it reads nothing outside its source and changes nothing. Today a
hand-written lexer and the plan are inspected, and both can be fooled.

- side-effecting functions run: lo_create, lo_unlink;
- a user function declared IMMUTABLE is folded to a constant before the plan is inspected;
- identifiers ending in `$$` and `--` comments ended by a carriage return hide a call from the lexer;
- ::regclass / ::regrole / ::regproc / ::regnamespace / ::regtype casts list relation, role, function, schema and
  type names.

Every refusal is 42501 and imports nothing. The attacker is a fresh LOGIN role (not a superuser) importing from a
repository of its own into another of its own.
"""
import pytest

from conftest import sql, value
from support.security import attempt


@pytest.fixture
def bob(roles):
    """bob with bob/src (t = {(1, 'a'), (2, 'b')} committed), an empty bob/dst, and an SQL function
    <bob's schema>.g(int) in another schema than the source (simple enough for the planner to inline)."""
    bob = roles.new("iqbob")
    c = bob.conn
    src, dst = f"{bob.name}/src", f"{bob.name}/dst"
    sql(c, "select splitgraph.init(%s)", src)
    sql(c, f'create table "{src}".t (id int primary key, v text)')
    sql(c, f"""insert into "{src}".t values (1, 'a'), (2, 'b')""")
    sql(c, "select splitgraph.commit(%s)", src)
    sql(c, "select splitgraph.init(%s)", dst)
    sql(c, f'create function "{bob.schema}".g(int) returns int language sql as $$ select $1 + 1 $$')
    bob.src, bob.dst = src, dst
    return bob


def try_import(bob, query, table="q"):
    """import_query of `query` from bob's source into bob/dst: (error or None, whether a table was imported)."""
    error = attempt(bob.conn, "select splitgraph.import_query(%s, %s, %s, %s)", bob.src, query, bob.dst, table)
    imported = value(bob.conn, "select count(*) from splitgraph.images(%s) i "
                               "where splitgraph.show(%s, i.image_hash) -> 'tables' ? %s", bob.dst, bob.dst, table) > 0
    return error, imported


def refused(bob, query, table="q"):
    """import_query of `query` must be refused with 42501 and import nothing."""
    error, imported = try_import(bob, query, table)
    assert not imported, f"import_query accepted {query!r}"
    assert error is not None and error.pgcode == "42501", f"{query!r}: {error}"


@pytest.mark.parametrize("function", ["lo_create", "lo_unlink"])
def test_import_query_refuses_side_effecting_functions(conn, bob, function):
    """lo_create makes a large object, lo_unlink deletes one (bob's own): refused, nothing changes."""
    oid = value(bob.conn, "select lo_create(0)::bigint")
    before = value(conn, "select count(*) from pg_largeobject_metadata")
    query = ("select lo_create(0) as x from t" if function == "lo_create"
             else f"select lo_unlink({oid}) as x from t where id = 1")
    error, imported = try_import(bob, query)
    after = value(conn, "select count(*) from pg_largeobject_metadata")
    assert after == before, f"{function} in an import query changed the large objects ({before} -> {after})"
    assert value(conn, "select count(*) from pg_largeobject_metadata where oid = %s::bigint::oid", oid) == 1
    assert not imported and error is not None and error.pgcode == "42501", f"{error}"


def test_import_query_refuses_a_user_function_declared_immutable(conn, roles):
    """A user function declared IMMUTABLE that reads outside the source (here bob's own table in another
    repository) is folded to a constant at planning, so the plan shows no trace of it: refused. The source is a
    plain schema of bob's, where the function lives, so the call need not be qualified."""
    bob = roles.new("iqimm")
    c = bob.conn
    plain, other = f"{bob.name}_plain", f"{bob.name}/other"
    sql(conn, f'create schema "{plain}" authorization "{bob.name}"')
    sql(c, f'create table "{plain}".t (id int primary key)')
    sql(c, f'insert into "{plain}".t values (1)')
    sql(c, "select splitgraph.init(%s)", other)
    sql(c, f'create table "{other}".secret (v text)')
    sql(c, f"""insert into "{other}".secret values ('outside the source')""")
    sql(c, f"""create function "{plain}".peek() returns text language plpgsql immutable as $f$
               begin return (select v from "{other}".secret limit 1); end $f$""")
    bob.src, bob.dst = plain, f"{bob.name}/dst"
    sql(c, "select splitgraph.init(%s)", bob.dst)
    refused(bob, "select peek() as v from t")


def test_identifiers_ending_in_dollars_do_not_hide_a_call(bob):
    """`a$$` is an identifier, not the start of a dollar-quoted string: the call between two such names is seen
    (written plainly, the call is refused today: that is checked first)."""
    refused(bob, f'select "{bob.schema}".g(id) as y from t', table="plain")
    refused(bob, f'select 1 as a$$, "{bob.schema}".g(id) as y, 1 as b$$ from t')


def test_a_comment_ended_by_a_carriage_return_does_not_hide_a_call(bob):
    """A `--` comment ends at a carriage return as well as at a line feed: the call after it is seen (written
    plainly, the call is refused today: that is checked first)."""
    refused(bob, f'select id, "{bob.schema}".g(id) as y from t', table="plain")
    refused(bob, f'select id -- a comment\r, "{bob.schema}".g(id) as y from t')


@pytest.mark.parametrize("cast", ["regclass", "regrole", "regproc", "regnamespace", "regtype"])
def test_import_query_refuses_casts_that_look_names_up(bob, cast):
    """A cast of a number to regclass / regrole / regproc / regnamespace / regtype lists the names of relations,
    roles, functions, schemas or types: refused."""
    refused(bob, f"select id::oid::{cast}::text as name from t")
