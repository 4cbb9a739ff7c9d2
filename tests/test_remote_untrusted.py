"""Issue 11, data from a remote is as untrusted as a dump: metadata crafted by the registry's superuser (its
constraints and triggers dropped first) is refused on clone and on pull with a clear SQLSTATE, nothing of it is
registered, and nothing of it is pasted into SQL.

Each crafted value carries SQL that would leave a trace if it ran anywhere on the client: as the cloning role
(bob, who owns the canaries: `nextval` of a sequence, which no rollback undoes, and `drop table`) or with the
extension's rights (`alter role bob superuser`). After every call: the sequence was never used, the canary table
is there, no table was planted and bob is no superuser.

Cases: a column type, a column collation, a CHECK expression of a table definition with a statement hidden in
it, a malformed parent hash, image hash, object id (in a table version) and insertion hash (in an object's
metadata), a tag name, and a repository name that is not valid. A table name full of quotes is legitimate: it may
be refused or accepted, but if accepted, the checkout makes a table of exactly that name.
"""
import itertools

import pytest
from psycopg2 import sql as pgsql

from conftest import sql, value
from support.remotes import REFUSED, attempt, connect, differences, make_repository, state

pytest_plugins = ["support.remote_fixtures"]

_numbers = itertools.count(1)
CASES = ["type", "collation", "definition", "parent hash", "image hash", "object id", "insertion hash", "tag",
         "repository name", "table name"]
# A pull names no remote repository but its recorded upstream: the invalid repository name is a clone's case only.
RUNS = [(case, mode) for case in CASES for mode in ("clone", "pull") if (case, mode) != ("repository name", "pull")]
ODD_TABLE = 'q"); select 1; --'


@pytest.fixture(scope="module")
def loosened(registry, regdb):
    """The registry's metadata tables without their CHECK constraints and triggers, so that its superuser can
    store what no API call would."""
    with connect(registry.dsn(regdb)) as r:
        sql(r, """do $$ declare c record; begin
                    for c in select conrelid::regclass as rel, conname from pg_catalog.pg_constraint
                             where connamespace = 'splitgraph_meta'::regnamespace and contype = 'c' loop
                      execute format('alter table %s drop constraint %I', c.rel, c.conname);
                    end loop;
                  end $$""")
        sql(r, "alter table splitgraph_meta.tables disable trigger user")
    return True


@pytest.fixture(scope="module")
def bob(users):
    user = users.new("ubob")
    user.conn = user.client()
    user.remote = user.add_remote(user.conn)
    return user


class Canary:
    """Bob's canaries (see the module's docstring) and the SQL that would touch them."""

    def __init__(self, conn, bob):
        self.conn, self.bob = conn, bob
        s = bob.schema
        self.seq, self.table, self.planted = (pgsql.Identifier(s, n) for n in ("canary_seq", "canary", "planted"))
        owner = pgsql.Identifier(bob.name)
        sql(conn, pgsql.SQL("drop table if exists {}").format(self.planted))
        sql(conn, pgsql.SQL("drop sequence if exists {}").format(self.seq))
        sql(conn, pgsql.SQL("create sequence {}").format(self.seq))
        sql(conn, pgsql.SQL("create table if not exists {} (x int)").format(self.table))
        sql(conn, pgsql.SQL("alter table {} owner to {}").format(self.table, owner))
        sql(conn, pgsql.SQL("alter sequence {} owner to {}").format(self.seq, owner))
        self.payload = (f"select pg_catalog.nextval('\"{s}\".canary_seq'); drop table \"{s}\".canary; "
                        f"alter role \"{bob.name}\" superuser; create table \"{s}\".planted (x text")

    def check(self):
        c = self.conn
        assert value(c, pgsql.SQL("select is_called from {}").format(self.seq)) is False, \
            "crafted SQL ran: the sequence was used"
        assert value(c, "select to_regclass(%s)", self.table.as_string(c)) is not None, \
            "crafted SQL dropped the canary"
        assert value(c, "select to_regclass(%s)", self.planted.as_string(c)) is None, "crafted SQL planted a table"
        assert value(c, "select rolsuper from pg_catalog.pg_roles where rolname = %s", self.bob.name) is False, \
            "crafted SQL ran with the extension's rights: bob is a superuser"


def new_image(reg, repo, case, n):
    """A new image of `repo` on the registry with table x (id int primary key, v text check (v <> '')) and, for
    the case "table name", a table whose name is full of quotes and SQL."""
    x = pgsql.Identifier(repo, "x")
    sql(reg, pgsql.SQL("create table {} (id int primary key, v text check (v <> ''))").format(x))
    sql(reg, pgsql.SQL("insert into {} select i, md5(i::text || %s) from generate_series(1, 5) i").format(x), f"x{n}")
    if case == "table name":
        sql(reg, pgsql.SQL("create table {} (id int)").format(pgsql.Identifier(repo, ODD_TABLE)))
    return value(reg, "select splitgraph.commit(%s)", repo)


def x_objects(reg, repo, image):
    return value(reg, "select object_ids from splitgraph_meta.tables where repository = %s and image_hash = %s "
                      "and table_name = 'x'", repo, image)


def craft(reg, case, repo, image, payload):
    """Store crafted metadata of `case` on or beside `image` of the registry's repository `repo`."""
    where = "where repository = %s and image_hash = %s and table_name = 'x'"
    if case == "type":
        sql(reg, "update splitgraph_meta.tables set table_schema = "
                 "jsonb_set(table_schema, '{1,2}', to_jsonb(%s::text)) " + where, f"text); {payload}", repo, image)
    elif case == "collation":
        sql(reg, "update splitgraph_meta.tables set table_schema = "
                 "jsonb_set(table_schema, '{1}', jsonb_build_array(2, 'v', 'text', false, null, %s::text)) " + where,
            f'"C"); {payload}', repo, image)
    elif case == "definition":
        sql(reg, "update splitgraph_meta.tables set table_definition = "
                 "jsonb_set(table_definition, '{constraints,0,expression}', to_jsonb(%s::text)) " + where,
            f"v <> ''); {payload}); select (1", repo, image)
    elif case == "parent hash":
        sql(reg, "update splitgraph_meta.images set parent_id = %s where repository = %s and image_hash = %s",
            "0" * 60 + f"'; {payload}; --", repo, image)
    elif case == "image hash":
        sql(reg, "insert into splitgraph_meta.images (repository, image_hash, parent_id) values (%s, %s, %s)",
            repo, "a" * 60 + f"'); {payload}; --", image)
    elif case == "object id":
        sql(reg, "update splitgraph_meta.tables set object_ids = array[%s] " + where,
            "o" + "1" * 61 + f"'); {payload}; --", repo, image)
    elif case == "insertion hash":
        sql(reg, "update splitgraph_meta.objects set insertion_hash = %s where object_id = any(%s)",
            "f" * 60 + f"'; {payload}; --", x_objects(reg, repo, image))
    elif case == "tag":
        sql(reg, "insert into splitgraph_meta.tags (repository, tag, image_hash) values (%s, %s, %s)",
            repo, f"v1'; {payload}; --", image)
    elif case == "repository name":
        bad = f"{repo}'; {payload}; --"
        sql(reg, "insert into splitgraph_meta.repositories (repository) values (%s)", bad)
        sql(reg, """insert into splitgraph_meta.images (repository, image_hash, parent_id, comment)
                    select %s, image_hash, parent_id, comment from splitgraph_meta.images where repository = %s""",
            bad, repo)
        return bad
    return repo


@pytest.mark.parametrize(("case", "mode"), RUNS, ids=[f"{c}-{m}" for c, m in RUNS])
def test_crafted_metadata_from_a_remote_is_refused_and_never_run(conn, reg, loosened, bob, case, mode):
    """The registry's superuser crafts `case` into a new image (before bob's clone, or after it for his pull):
    the clone or pull fails with a clear SQLSTATE (XX001, 42704, 42602, 42601, 22023 or 22P02) and the client
    does not change; no canary is touched. (A table name with quotes may be accepted: then the checkout makes
    the table under exactly that name.)"""
    canary = Canary(conn, bob)
    n = next(_numbers)
    repo, local = f"src{n}/crafted", f"{bob.name}/crafted{n}"
    c = bob.conn
    make_repository(reg, repo, {"t": (10, f"t{n}")})
    if mode == "pull":
        sql(c, "select splitgraph.clone(%s, %s, %s)", bob.remote, repo, local)
    image = new_image(reg, repo, case, n)
    remote_repository = craft(reg, case, repo, image, canary.payload)
    before = state(conn)
    download = case == "table name"  # that case checks out the image: all its objects are here then
    try:
        if mode == "clone":
            error = attempt(c, "select splitgraph.clone(%s, %s, %s, download_all => %s)", bob.remote,
                            remote_repository, local, download)
        else:
            error = attempt(c, "select splitgraph.pull(%s, download_all => %s)", local, download)
        if case == "table name" and error is None:
            sql(c, "select splitgraph.checkout(%s, %s, force => true)", local, image)
            assert value(conn, "select count(*) from pg_catalog.pg_tables where schemaname = %s and tablename = %s",
                         local, ODD_TABLE) == 1
            return
        assert error is not None, f"the {mode} accepted a crafted {case}"
        assert error.pgcode in REFUSED, f"{error.pgcode}: {error}"
        after = state(conn)
        assert after == before, f"the refused {mode} changed the client: {differences(before, after)}"
    finally:
        canary.check()
