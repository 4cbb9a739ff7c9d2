"""The public API is frozen: names, arguments and result columns of every function in schema splitgraph.

tests/api_surface.json holds the contract (the public API as specified, with Postgres's spelling of the types): the
functions implemented so far with their exact signatures, and those still pending with the arguments they must take.
A function added, renamed or changed without updating the freeze fails here; so does one that disappears.
"""
import json
import pathlib

from conftest import sql

HERE = pathlib.Path(__file__).parent
SURFACE = json.loads((HERE / "api_surface.json").read_text())


def engine_functions(conn):
    rows = sql(conn, """select p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
                               obj_description(p.oid, 'pg_proc')
                        from pg_proc p where p.pronamespace = 'splitgraph'::regnamespace""")
    return {name: {"arguments": args, "result": result, "comment": comment} for name, args, result, comment in rows}


def test_every_function_matches_the_freeze(conn):
    engine = engine_functions(conn)
    implemented, pending = SURFACE["implemented"], SURFACE["pending"]
    for name, got in engine.items():
        assert name in implemented or name in pending, f"splitgraph.{name} is not in the frozen API surface"
        want = implemented.get(name) or pending[name]
        if want["arguments"] is not None:
            assert got["arguments"] == want["arguments"], f"arguments of splitgraph.{name} changed"
        if want["result"] is not None:
            assert got["result"] == want["result"], f"result of splitgraph.{name} changed"
    missing = sorted(set(implemented) - set(engine))
    assert not missing, f"implemented functions disappeared: {missing}"


def test_result_types_match_the_freeze(conn):
    """Functions whose argument shares a name with a result column return a composite type: its columns are
    the contract's result columns."""
    for name, columns in SURFACE["types"].items():
        got = sql(conn, """select string_agg(attname || ' ' || format_type(atttypid, atttypmod), ', ' order by attnum)
                           from pg_attribute where attrelid = %s::regclass and attnum > 0""", f"splitgraph.{name}")
        assert got == [(columns,)], f"columns of splitgraph.{name} changed"


def test_every_public_function_is_documented(conn):
    for name, got in engine_functions(conn).items():
        assert got["comment"] and got["comment"].startswith(name + "("), f"splitgraph.{name} lacks its reference line"

