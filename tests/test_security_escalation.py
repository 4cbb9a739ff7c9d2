"""Issue 8, critical findings: no plain role becomes a superuser, whatever it hands the engine.

Every attacker is a fresh LOGIN role (not a superuser) with a schema of its own; each test tries one of the ways
today's engine gives superuser to it, and asserts the safe outcome: rolsuper is still false afterwards, and the
call was refused or the role's code never ran as the extension's owner (`postgres` here).

C1 reset writes into the caller's checkout table with the owner's rights (triggers, CHECK constraints and index
   expressions on that table run as the owner).
C2 load_object pastes a column collation from the dump header into CREATE TABLE.
C3 mount pastes a column type from `tables` into CREATE FOREIGN TABLE.
C4 splitgraph_internal.import_staged (SECURITY DEFINER, executable by PUBLIC) reads any relation the caller names
   in its temporary schema, e.g. a view calling the caller's function.
M1 register_mount_handler accepts a handler owned by an ordinary role, who may later replace its body.
"""
import psycopg2
import pytest
from psycopg2.extras import Json as Jsonb

from conftest import sql, value
from support.security import attempt, is_superuser, object_dump, server_name


def payload(role, schema, record=True, escalate=True, swallow=True):
    """PL/pgSQL that records who runs it into <schema>.seen and tries to make `role` a superuser (failing
    silently when swallow, so that the attacker's own statements can run it harmlessly)."""
    parts = []
    if record:
        parts.append(f'insert into "{schema}".seen values (current_user::text);')
    if escalate:
        alter = f'alter role "{role}" superuser;'
        parts.append(f"begin {alter} exception when insufficient_privilege then null; end;" if swallow else alter)
    return " ".join(parts)


def committed_repository(role, repo):
    """repo (of role's namespace) with table t (id primary key, v) = {(1, 'a'), (2, 'b')} committed."""
    c = role.conn
    sql(c, "select splitgraph.init(%s)", repo)
    sql(c, f'create table "{repo}".t (id int primary key, v text)')
    sql(c, f"""insert into "{repo}".t values (1, 'a'), (2, 'b')""")
    sql(c, "select splitgraph.commit(%s)", repo)
    sql(c, f'create table "{role.schema}".seen (who text)')


# ---------------------------------------------------------------------------------------------------------------
# C1: reset writes into the caller's own checkout table
# ---------------------------------------------------------------------------------------------------------------

def test_c1_reset_never_runs_a_checkout_table_trigger_as_the_owner(conn, roles):
    """C1: a statement trigger on alice's checkout table records current_user into a table alice owns; during
    reset it must record alice (or reset refuses the table), never the extension's owner."""
    alice = roles.new("c1spy")
    repo = f"{alice.name}/repo"
    committed_repository(alice, repo)
    c = alice.conn
    sql(c, f"""create function "{alice.schema}".spy() returns trigger language plpgsql as $f$
               begin {payload(alice.name, alice.schema, escalate=False)} return null; end $f$""")
    sql(c, f'create trigger spy after insert on "{repo}".t for each statement '
           f'execute function "{alice.schema}".spy()')
    sql(c, f'delete from "{repo}".t')
    error = attempt(c, "select splitgraph.reset(%s)", repo)
    seen = [r[0] for r in sql(c, f'select who from "{alice.schema}".seen')]
    assert "postgres" not in seen, f"alice's trigger ran as the extension's owner during reset: {seen}"
    assert set(seen) <= {alice.name}, seen
    if error is None:
        assert value(c, f'select count(*) from "{repo}".t') == 2, "reset succeeded but did not restore HEAD"


def test_c1_reset_does_not_make_the_caller_superuser_through_a_trigger(conn, roles):
    """C1 as filed: a statement trigger doing `alter role me superuser`, then `delete from` the table, then
    reset. reset must fail (the trigger's ALTER ROLE runs as alice and is refused) or never fire the trigger;
    alice stays a plain role."""
    alice = roles.new("c1trg")
    repo = f"{alice.name}/repo"
    committed_repository(alice, repo)
    c = alice.conn
    sql(c, f"""create function "{alice.schema}".evil() returns trigger language plpgsql as $f$
               begin {payload(alice.name, alice.schema, swallow=False)} return null; end $f$""")
    sql(c, f'create trigger evil after insert on "{repo}".t for each statement '
           f'execute function "{alice.schema}".evil()')
    sql(c, f'delete from "{repo}".t')
    error = attempt(c, "select splitgraph.reset(%s)", repo)
    assert is_superuser(conn, alice.name) is False, "reset ran alice's trigger as the owner: alice is a superuser"
    seen = [r[0] for r in sql(c, f'select who from "{alice.schema}".seen')]
    assert error is not None or "postgres" not in seen, seen


@pytest.mark.parametrize("carrier", ["check constraint", "index expression"])
def test_c1_reset_never_evaluates_callers_expressions_as_the_owner(conn, roles, carrier):
    """C1 through other code a table carries: a CHECK constraint's function, an index expression's (IMMUTABLE
    in name only) function. Evaluated while reset re-inserts rows, they must not run as the owner."""
    alice = roles.new("c1expr")
    repo = f"{alice.name}/repo"
    committed_repository(alice, repo)
    c = alice.conn
    sql(c, f"""create function "{alice.schema}".payload() returns void language plpgsql as $f$
               begin {payload(alice.name, alice.schema)} end $f$""")
    if carrier == "check constraint":
        sql(c, f"""create function "{alice.schema}".ok(text) returns boolean language plpgsql as $f$
                   begin perform "{alice.schema}".payload(); return true; end $f$""")
        sql(c, f'alter table "{repo}".t add constraint ok check ("{alice.schema}".ok(v))')
    else:
        sql(c, f"""create function "{alice.schema}".key(text) returns text language plpgsql immutable as $f$
                   begin perform "{alice.schema}".payload(); return $1; end $f$""")
        sql(c, f'create index on "{repo}".t ("{alice.schema}".key(v))')
    sql(c, f'delete from "{repo}".t')
    sql(c, f'delete from "{alice.schema}".seen')
    attempt(c, "select splitgraph.reset(%s)", repo)
    assert is_superuser(conn, alice.name) is False, f"reset evaluated alice's {carrier} as the owner"
    seen = [r[0] for r in sql(c, f'select who from "{alice.schema}".seen')]
    assert "postgres" not in seen, seen


# ---------------------------------------------------------------------------------------------------------------
# C2: load_object and the collation of a dump's column
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("loader", ["attacker", "administrator"])
def test_c2_load_object_resolves_collations_instead_of_pasting_them(conn, roles, loader):
    """C2: a dump whose rows hash to its id (the collation is not hashed) carries the collation
    `"C", sg_ud_flag boolean not null); alter role <attacker> superuser; ...`. Loaded by the attacker, or by an
    administrator who fetched it from an untrusted remote: refused with 42704 or XX001, nothing stored, and the
    attacker stays a plain role."""
    eve = roles.new("c2eve")
    injected = (f'"C", sg_ud_flag boolean not null); alter role "{eve.name}" superuser; '
                "create temp table sg_c2_rest (y int")
    oid, data = object_dump([f"({eve.name})"], [("v", "text", False)],
                            table_schema=[[1, "v", "text", False, None, injected]])
    loading = eve.conn if loader == "attacker" else conn
    error = attempt(loading, "select splitgraph.load_object(%s, %s)", oid, data)
    assert is_superuser(conn, eve.name) is False, "the dump's collation ran as SQL: the attacker is a superuser"
    assert error is not None and error.pgcode in ("42704", "XX001"), f"load_object accepted the dump: {error}"
    assert value(conn, "select splitgraph.object_info(%s)", oid) is None
    assert value(conn, "select to_regclass(format('splitgraph_meta.%%I', %s::text))", oid) is None


# ---------------------------------------------------------------------------------------------------------------
# C3: mount and the types of `tables`
# ---------------------------------------------------------------------------------------------------------------

def test_c3_mount_resolves_column_types_instead_of_pasting_them(conn, roles):
    """C3: mount(..., tables => {"t": {"c": "int) server ...; alter role me superuser; --"}}) by a role allowed
    to mount: 42704, no mountpoint left, and the role stays a plain role."""
    eve = roles.new("c3eve", mount=True)
    mountpoint = f"{eve.name}_mnt"
    injected = f'int) server "{server_name(mountpoint)}"; alter role "{eve.name}" superuser; --'
    options = {"host": "127.0.0.1", "port": 1, "username": "nobody", "password": "secret", "dbname": "none",
               "remote_schema": "public"}
    error = attempt(eve.conn, "select splitgraph.mount(%s, 'postgres_fdw', %s, %s)", mountpoint, Jsonb(options),
                    Jsonb({"t": {"c": injected}}))
    assert is_superuser(conn, eve.name) is False, "the column type ran as SQL: the role is a superuser"
    assert error is not None and error.pgcode == "42704", f"mount accepted the type: {error}"
    assert value(conn, "select count(*) from pg_namespace where nspname = %s", mountpoint) == 0


# ---------------------------------------------------------------------------------------------------------------
# C4: SECURITY DEFINER helpers executable by PUBLIC
# ---------------------------------------------------------------------------------------------------------------

def test_c4_import_staged_never_reads_a_callers_view_as_the_owner(conn, roles):
    """C4: a temporary view calling the caller's function, handed to splitgraph_internal.import_staged as a
    staged table, must not run that function as the owner (the helper refuses, or is not callable)."""
    eve = roles.new("c4eve")
    c = eve.conn
    sql(c, "select splitgraph.init(%s)", f"{eve.name}/r")
    sql(c, f'create table "{eve.schema}".seen (who text)')
    sql(c, f"""create function "{eve.schema}".evil() returns int language plpgsql as $f$
               begin {payload(eve.name, eve.schema, swallow=False)} return 1; end $f$""")
    sql(c, f'create temp view staged as select "{eve.schema}".evil() as x')
    error = attempt(c, "select splitgraph_internal.import_staged('x', null, null, array['staged'], %s, array['t'], "
                       "'c4')", f"{eve.name}/r")
    assert is_superuser(conn, eve.name) is False, "import_staged ran the caller's view as the owner"
    seen = [r[0] for r in sql(c, f'select who from "{eve.schema}".seen')]
    assert error is not None or "postgres" not in seen, seen


HELPERS = {
    "import_staged": "select splitgraph_internal.import_staged('x', null, null, array['sg_c4_stage'], "
                     "'{repo}', array['t'], 'c4')",
    "import_sandbox": "select splitgraph_internal.import_sandbox('{repo}', null)",
    "import_drop_sandbox": "select splitgraph_internal.import_drop_sandbox('sg_query_0123456789abcdef')",
    "import_check_plan": "select splitgraph_internal.import_check_plan('{repo}', null, '{repo}', '[]', 'select 1')",
}


@pytest.mark.parametrize("helper", sorted(HELPERS))
def test_c4_internal_helpers_are_not_executable_by_plain_roles(conn, roles, helper):
    """C4: the import helpers give plain roles 42501 (or no longer exist: 42883). Called here with arguments
    that today's helpers accept, so that a call that still works shows."""
    eve = roles.new("c4call")
    c = eve.conn
    repo = f"{eve.name}/r"
    sql(c, "select splitgraph.init(%s)", repo)
    sql(c, "create temp table sg_c4_stage as select 1 as x")
    with pytest.raises(psycopg2.Error) as info:
        sql(c, HELPERS[helper].format(repo=repo))
    assert info.value.pgcode in ("42501", "42883"), f"{info.value.pgcode}: {info.value}"


# ---------------------------------------------------------------------------------------------------------------
# M1: mount handlers owned by ordinary roles
# ---------------------------------------------------------------------------------------------------------------

def test_m1_register_mount_handler_refuses_a_function_an_ordinary_role_owns(conn, roles):
    """M1: an administrator registers a handler function that a plain role owns (harmless when registered);
    the role then replaces its body with `alter role me superuser` and mounts with it. register_mount_handler
    must refuse such a function (42501) even for an administrator, and the role stays a plain role."""
    eve = roles.new("m1eve", mount=True)
    c = eve.conn
    handler = f'"{eve.schema}".handler(text, jsonb, jsonb)'
    sql(c, f"""create function "{eve.schema}".handler(mountpoint text, options jsonb, tables jsonb) returns void
               language plpgsql as $f$ begin null; end $f$""")
    registered = attempt(conn, "select splitgraph.register_mount_handler(%s, %s::regprocedure)",
                         f"{eve.name}_handler", handler)
    sql(c, f"""create or replace function "{eve.schema}".handler(mountpoint text, options jsonb, tables jsonb)
               returns void language plpgsql as $f$ begin alter role "{eve.name}" superuser; end $f$""")
    attempt(c, "select splitgraph.mount(%s, %s, '{}')", f"{eve.name}_mnt", f"{eve.name}_handler")
    assert is_superuser(conn, eve.name) is False, "the registered handler ran the role's new body as the owner"
    assert registered is not None and registered.pgcode == "42501", \
        f"register_mount_handler accepted a function owned by {eve.name}: {registered}"
    assert value(conn, "select count(*) from splitgraph.mount_handlers() where name = %s", f"{eve.name}_handler") == 0
