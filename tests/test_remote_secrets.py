"""Issue 11, secrets: a remote's password goes into a private place (a postgres_fdw user mapping). No function
result, error message, notice or catalog view that another role may read shows it (pg_user_mappings,
pg_foreign_server, the foreign tables' options, remotes(), ...), and the remote operations of a role use only that
role's own credentials: nobody else's remote, and never the administrator's.

The registry asks every role but postgres for a password, so that postgres_fdw applies its rule for roles that are
not superusers (they may only connect with a password the server asks for).
"""
import itertools
import time

import psycopg2
import pytest

from conftest import sql, value
from support.remotes import Messages, attempt, differences, make_repository, state

pytest_plugins = ["support.remote_fixtures"]

_numbers = itertools.count(1)

# What another role may read: every text a catalog view or an API function gives it.
READABLE = {
    "pg_user_mappings": "select m::text from pg_catalog.pg_user_mappings m",
    "user_mapping_options": "select u::text from information_schema.user_mapping_options u",
    "pg_foreign_server": "select s::text from pg_catalog.pg_foreign_server s",
    "foreign_server_options": "select o::text from information_schema.foreign_server_options o",
    "pg_foreign_table": "select t::text from pg_catalog.pg_foreign_table t",
    "column options": "select a.attfdwoptions::text from pg_catalog.pg_attribute a where a.attfdwoptions is not null",
    "views": "select definition from pg_catalog.pg_views",
    "functions": "select p.prosrc || coalesce(p.proconfig::text, '') from pg_catalog.pg_proc p",
    "comments": "select description from pg_catalog.pg_description",
    "role settings": "select s::text from pg_catalog.pg_db_role_setting s",
    "remotes()": "select r::text from splitgraph.remotes() r",
    "repositories()": "select r::text from splitgraph.repositories() r",
}
# The mapped role itself sees its own user mapping's options (PostgreSQL's rule): not a leak to anyone else.
OWN_MAPPING = {"pg_user_mappings", "user_mapping_options"}


def leaks(conn, password, skip=()):
    """The readable places (see READABLE) where `conn` sees the password; a place it may not read shows nothing."""
    found = []
    for place, query in READABLE.items():
        if place in skip:
            continue
        try:
            texts = [r[0] for r in sql(conn, query) if r[0]]
        except psycopg2.errors.InsufficientPrivilege:  # a place this role may not read shows it nothing
            continue
        if any(password in t for t in texts):
            found.append(place)
    return found


def registry_sessions(reg, regdb):
    """The roles of the client sessions open on the registry's database (but the one asking)."""
    return sorted({r[0] for r in sql(reg, """select usename::text from pg_catalog.pg_stat_activity
                                             where datname = %s and backend_type = 'client backend'
                                               and pid <> pg_catalog.pg_backend_pid()""", regdb)})


def wait_for_sessions(reg, regdb, gone, timeout=10.0):
    """Wait until no session of the roles `gone` is open on the registry."""
    deadline = time.monotonic() + timeout
    while set(registry_sessions(reg, regdb)) & set(gone):
        assert time.monotonic() < deadline, f"sessions of {gone} stay open on the registry"
        time.sleep(0.05)


@pytest.fixture
def admin_remote(conn, registry, regdb):
    """A remote the client's administrator adds for the registry's superuser (who logs in without a password
    there); a second password is given, which nothing may show either."""
    name = f"reg_admin_{next(_numbers)}"
    password = f"admin-secret-{next(_numbers)}-x7q"
    sql(conn, "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, 'postgres', %s)", name, registry.port, regdb,
        password)
    yield name, password
    attempt(conn, "select splitgraph.delete_remote(%s)", name)


# ---------------------------------------------------------------------------------------------------------------
# Nothing shows a password
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("owner", ["a plain role", "the administrator"])
def test_no_catalog_view_or_function_shows_a_remotes_password(conn, users, admin_remote, owner):
    """A remote added by alice (or by the administrator): the password appears in no catalog view or function
    result that bob can read, none that alice reads but her own user mapping, not in any foreign server's
    options (even for the administrator), and not in add_remote's notices. remotes() lists the remote with its
    host, port, dbname and username."""
    alice, bob = users.new("salice"), users.new("sbob")
    if owner == "a plain role":
        c = alice.new_client()
        messages = Messages(c)
        remote, password = alice.add_remote(c), alice.password
        assert not [t for t in messages.texts if password in t], messages.texts
        assert leaks(c, password, skip=OWN_MAPPING) == []
    else:
        remote, password = admin_remote
    assert leaks(bob.new_client(), password) == []
    assert leaks(conn, password, skip=OWN_MAPPING) == []
    listed = sql(conn, "select name, host, port::int, dbname, username from splitgraph.remotes() where name = %s",
                 remote)
    assert len(listed) == 1 and listed[0][1] == "127.0.0.1"
    assert listed[0][4] == (alice.name if owner == "a plain role" else "postgres")


def test_notices_and_errors_never_show_the_password(users, registry, regdb):
    """alice's add_remote, push, clone and pull, and her calls that fail (a second remote of the same name, a
    remote name that is not valid, a port that is not one, a wrong password, a repository the registry lacks):
    no notice, error message, detail, hint or context shows a password she gave."""
    alice = users.new("nalice")
    c = alice.new_client()
    messages = Messages(c)
    remote = alice.add_remote(c)
    repo = f"{alice.name}/data"
    make_repository(c, repo, {"t": (20, "n")}, chunk_size=5)
    sql(c, "select splitgraph.push(%s, %s)", repo, remote)
    sql(c, "select splitgraph.clone(%s, %s, %s)", remote, repo, f"{alice.name}/copy")
    sql(c, "select splitgraph.pull(%s)", f"{alice.name}/copy")
    wrong = f"wrong-{alice.password}-wrong"
    errors = [
        attempt(c, "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, %s, %s)", remote, registry.port, regdb,
                alice.name, alice.password, messages=messages),
        attempt(c, "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, %s, %s)", "bad name;--", registry.port,
                regdb, alice.name, alice.password, messages=messages),
        attempt(c, "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, %s, %s)", f"port_{alice.name}", 70000,
                regdb, alice.name, alice.password, messages=messages),
        attempt(c, "select splitgraph.clone(%s, %s, %s)", f"port_{alice.name}", repo, f"{alice.name}/viaport",
                messages=messages),
    ]
    errors += [
        attempt(c, "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, %s, %s)", f"wrong_{alice.name}",
                registry.port, regdb, alice.name, wrong, messages=messages),
        attempt(c, "select splitgraph.clone(%s, %s, %s)", f"wrong_{alice.name}", repo, f"{alice.name}/c2",
                messages=messages),
        attempt(c, "select splitgraph.push(%s, %s)", repo, f"wrong_{alice.name}", messages=messages),
        attempt(c, "select splitgraph.clone(%s, %s, %s)", remote, f"{alice.name}/nothing", f"{alice.name}/c3",
                messages=messages),
    ]
    assert errors[0] is not None, "a second remote of the same name was accepted"
    assert all(e is not None for e in errors[5:]), errors
    shown = [t for t in messages.texts if alice.password in t or wrong in t]
    assert shown == [], f"messages showing a password: {shown}"


# ---------------------------------------------------------------------------------------------------------------
# A role uses only its own credentials
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("owner", ["a plain role", "the administrator"])
def test_a_role_cannot_use_or_delete_another_roles_remote(conn, reg, regdb, users, admin_remote, owner):
    """bob clones, pushes and pulls through alice's remote (or the administrator's, which logs in to the registry
    as its superuser), and deletes it: each fails (42501, or 42704 "user mapping not found"), no session of the
    remote's owner is opened on the registry, neither engine changes, and the remote is still there."""
    alice, bob = users.new("ualice"), users.new("ubob")
    if owner == "a plain role":
        remote = alice.add_remote(alice.new_client())
        alice.close()
        owner_role = alice.name
    else:
        remote, owner_role = admin_remote[0], "postgres"
    c = bob.new_client()
    repo = f"{bob.name}/data"
    make_repository(c, repo, {"t": (10, "u")})
    published = f"pub{next(_numbers)}/data"
    make_repository(reg, published, {"t": (10, "pub")})
    # the sessions other tests' users left open (their clients keep postgres_fdw connections) are closed first
    others = [u for u in users.made if u is not bob]
    for u in others:
        u.close()
    wait_for_sessions(reg, regdb, [u.name for u in others])
    before = state(conn), state(reg)
    mappings = sql(conn, "select srvname::text, usename::text from pg_catalog.pg_user_mappings order by 1, 2")
    for query, args in [("select splitgraph.clone(%s, %s, %s)", (remote, published, f"{bob.name}/copy")),
                        ("select splitgraph.push(%s, %s, %s)", (repo, remote, f"{owner_role}/frombob")),
                        ("select splitgraph.push(%s, %s, %s)", (repo, remote, "frombob")),
                        ("select splitgraph.delete_remote(%s)", (remote,))]:
        error = attempt(c, query, *args)
        assert error is not None and error.pgcode in ("42501", "42704"), f"bob's {query % args}: {error}"
        assert owner_role not in registry_sessions(reg, regdb), \
            f"bob's {query % args} logged in to the registry as {owner_role}"
    assert state(conn) == before[0], differences(before[0], state(conn))
    assert state(reg) == before[1], differences(before[1], state(reg))
    assert sql(conn, "select srvname::text, usename::text from pg_catalog.pg_user_mappings order by 1, 2") == mappings
    assert value(conn, "select count(*) from splitgraph.remotes() where name = %s", remote) == 1


def test_remote_operations_log_in_as_their_caller(conn, reg, regdb, users):
    """alice and bob each add a remote of their own. Every user mapping add_remote makes is for the role that
    added the remote (none for PUBLIC). While bob clones and pushes through his remote, no role but bob is logged
    in to the registry, and his push into his own namespace is accepted there (as bob's)."""
    alice, bob = users.new("walice"), users.new("wbob")
    servers_before = {r[0] for r in sql(conn, "select srvname::text from pg_catalog.pg_foreign_server")}
    alice.add_remote(alice.new_client())
    alice.close()
    c = bob.new_client()
    remote = bob.add_remote(c)
    made = sql(conn, """select s.srvname::text, m.usename::text
                        from pg_catalog.pg_foreign_server s join pg_catalog.pg_user_mappings m on m.srvid = s.oid
                        where not (s.srvname = any(%s)) order by 1, 2""", list(servers_before))
    assert {alice.name, bob.name} <= {u for _, u in made}, f"user mappings of the servers add_remote made: {made}"
    public = sql(conn, "select srvname::text from pg_catalog.pg_user_mappings where umuser = 0")
    assert public == [], f"user mappings for PUBLIC: {public}"
    # the sessions other tests' users left open (their clients keep postgres_fdw connections) are closed first
    others = [u for u in users.made if u is not bob]
    for u in others:
        u.close()
    wait_for_sessions(reg, regdb, [u.name for u in others])
    published = f"pub{next(_numbers)}/data"
    make_repository(reg, published, {"t": (10, "w")})
    sql(c, "select splitgraph.clone(%s, %s, %s, download_all => true)", remote, published, f"{bob.name}/copy")
    assert set(registry_sessions(reg, regdb)) <= {bob.name}
    repo = f"{bob.name}/data"
    make_repository(c, repo, {"t": (10, "wb")})
    sql(c, "select splitgraph.push(%s, %s)", repo, remote)
    assert set(registry_sessions(reg, regdb)) <= {bob.name}
    assert value(reg, "select count(*) from splitgraph_meta.repositories where repository = %s", repo) == 1


# ---------------------------------------------------------------------------------------------------------------
# Who may add a remote, and what deleting it leaves
# ---------------------------------------------------------------------------------------------------------------

def test_add_remote_needs_the_mount_privilege(conn, users, registry, regdb):
    """Outbound connections are a privilege (design: what mount needs): a role without splitgraph_mount gets
    42501 from add_remote and the client does not change."""
    eve = users.new("nomount", mount=False)
    before = state(conn)
    error = attempt(eve.new_client(), "select splitgraph.add_remote(%s, '127.0.0.1', %s, %s, %s, %s)",
                    f"reg_{eve.name}", registry.port, regdb, eve.name, eve.password)
    assert error is not None and error.pgcode == "42501", error
    assert state(conn) == before, differences(before, state(conn))


def test_delete_remote_takes_its_credentials_away(conn, users):
    """alice adds a remote and deletes it: the client is as before add_remote (no server, user mapping, schema or
    metadata left), so the password is nowhere, and the remote is not listed."""
    alice = users.new("dalice")
    c = alice.new_client()
    before = state(conn)
    remote = alice.add_remote(c)
    assert value(conn, "select count(*) from splitgraph.remotes() where name = %s", remote) == 1
    sql(c, "select splitgraph.delete_remote(%s)", remote)
    assert value(conn, "select count(*) from splitgraph.remotes() where name = %s", remote) == 0
    after = state(conn)
    assert after == before, differences(before, after)
    assert [r for r in sql(conn, "select umoptions::text from pg_catalog.pg_user_mappings")
            if r[0] and alice.password in r[0]] == []
