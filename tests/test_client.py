"""The sgr command, run end to end as a subprocess against the test engine: every subcommand that the engine
backs, progress bars fed by the engine's NOTICEs, --json, errors as the engine wrote them (no traceback, a
non-zero exit), subcommands whose function the engine lacks, and engines found through a .sgconfig file."""
import json
import os
import pathlib
import re
import subprocess
import sys

import pytest

from conftest import sql, value

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "client"))
from splitgraph_client import commands  # noqa: E402
from splitgraph_client.output import as_table  # noqa: E402

from support import driver  # noqa: E402

SGR = [sys.executable, "-m", "splitgraph_client"]


@pytest.fixture
def env(cluster, dbname, tmp_path):
    """The environment sgr finds the test engine through (and no .sgconfig of the developer's)."""
    variables = {k: v for k, v in os.environ.items() if not k.startswith("SG_")}
    variables.update(SG_ENGINE_HOST="127.0.0.1", SG_ENGINE_PORT=str(cluster.port), SG_ENGINE_USER="postgres",
                     SG_ENGINE_DB_NAME=dbname, HOME=str(tmp_path), PYTHONPATH=str(ROOT / "client"))
    return variables


def sgr(env, *args, ok=True, cwd=None, stdin=None):
    out = subprocess.run(SGR + list(args), env=env, capture_output=True, text=True, cwd=cwd, input=stdin,
                         timeout=120)
    if ok:
        assert out.returncode == 0, f"sgr {' '.join(args)}: {out.stderr}"
    assert "Traceback" not in out.stderr, out.stderr
    return out


def make_repo(env, repo, rows=3):
    sgr(env, "init", repo)
    sgr(env, "sql", f'create table "{repo}".t (id int primary key, v text)')
    sgr(env, "sql", f"insert into \"{repo}\".t select i, 'v' || i from generate_series(1, {rows}) i")
    return sgr(env, "commit", repo, "-m", "first")


def test_commit_shows_progress_fed_by_the_engine(env):
    out = make_repo(env, "cli/progress")
    assert 'committed table "t"' in out.stderr and "1/1" in out.stderr
    sgr(env, "sql", "insert into \"cli/progress\".t values (9, 'x')")
    quiet = sgr(env, "--quiet", "commit", "cli/progress", "-m", "second")
    assert quiet.stderr == ""
    image = quiet.stdout.strip()
    assert len(image) == 64 and image == sgr(env, "--json", "log", "cli/progress").stdout.split('"')[3]


def test_a_session_from_init_to_checkout(env, conn):
    make_repo(env, "cli/tour")
    sgr(env, "tag", "cli/tour", "v1")
    sgr(env, "sql", 'update "cli/tour".t set v = \'changed\' where id = 1')
    status = sgr(env, "--json", "status", "cli/tour").stdout
    assert json.loads(status) == [{"repository": "cli/tour", "table_name": "t", "added": 0, "removed": 0,
                                   "updated": 1, "schema_changed": False}]
    diff = json.loads(sgr(env, "--json", "diff", "cli/tour", "t", "HEAD").stdout)
    assert {(d["action"], d["row_data"]["v"]) for d in diff} == {("-", "v1"), ("+", "changed")}
    sgr(env, "commit", "cli/tour", "-m", "changed")
    sgr(env, "branch", "cli/tour", "old", "-i", "v1")
    assert "old" in sgr(env, "branch", "cli/tour").stdout
    tree = sgr(env, "log", "cli/tour", "--tree").stdout
    assert "branch main (checked out)" in tree and "tag v1" in tree and "branch old" in tree and "changed" in tree
    sgr(env, "checkout", "cli/tour", "v1")
    assert value(conn, 'select v from "cli/tour".t where id = 1') == "v1"
    summary = json.loads(sgr(env, "--json", "diff", "--summary", "cli/tour", "v1", "main").stdout)
    assert summary[0]["table_name"] == "t" and summary[0]["updated"] == 1
    shown = json.loads(sgr(env, "--json", "show", "cli/tour", "v1").stdout)
    assert shown["tags"] == ["v1"] and "t" in shown["tables"]
    info = json.loads(sgr(env, "--json", "table-info", "cli/tour", "v1", "t").stdout)
    assert info["rows"] == 3
    assert json.loads(sgr(env, "--json", "object-info", info["objects"][0]).stdout)["rows_inserted"] == 3
    sgr(env, "sql", 'delete from "cli/tour".t')
    sgr(env, "reset", "cli/tour")
    assert value(conn, 'select count(*) from "cli/tour".t') == 3
    sgr(env, "tag", "cli/tour", "v1", "-d")
    assert "v1" not in sgr(env, "tag", "cli/tour").stdout
    assert "cli/tour" in sgr(env, "repositories").stdout
    sgr(env, "uncheckout", "cli/tour")
    sgr(env, "rm", "cli/tour")
    assert "cli/tour" not in sgr(env, "repositories").stdout


def test_merge_and_conflicts_subcommands(env, conn):
    """sgr conflicts lists what a merge would conflict on without merging; sgr merge refuses a conflicting merge
    (the engine's message, exit 1, nothing changed), merges with --strategy and prints the merge image, which the
    log then shows; merging the same branch again changes nothing."""
    repo = "cli/merge"
    make_repo(env, repo)
    sgr(env, "branch", repo, "dev")
    sgr(env, "sql", f'update "{repo}".t set v = \'ours\' where id = 1')
    sgr(env, "sql", f'delete from "{repo}".t where id = 3')
    head = sgr(env, "--quiet", "commit", repo, "-m", "ours").stdout.strip()
    sgr(env, "checkout", repo, "dev")
    sgr(env, "sql", f'update "{repo}".t set v = \'theirs\' where id = 1')
    sgr(env, "sql", f"insert into \"{repo}\".t values (4, 'new')")
    sgr(env, "commit", repo, "-m", "theirs")
    sgr(env, "checkout", repo, "main")

    listed = json.loads(sgr(env, "--json", "conflicts", repo, "dev").stdout)
    assert listed == [{"table_name": "t", "pk": {"id": 1}, "base": {"id": 1, "v": "v1"},
                       "ours": {"id": 1, "v": "ours"}, "theirs": {"id": 1, "v": "theirs"}}]
    assert "t" in sgr(env, "conflicts", repo, "dev").stdout

    refused = sgr(env, "merge", repo, "dev", ok=False)
    assert refused.returncode == 1 and "conflict" in refused.stderr and "strategy" in refused.stderr
    assert json.loads(sgr(env, "--json", "log", repo).stdout)[0]["image_hash"] == head
    assert sql(conn, f'select id, v from "{repo}".t order by id') == [(1, "ours"), (2, "v2")]

    bad = sgr(env, "merge", repo, "dev", "--strategy", "mine", ok=False)
    assert bad.returncode == 2 and "mine" in bad.stderr, "click refuses an unknown strategy"

    image = sgr(env, "--quiet", "merge", repo, "dev", "--strategy", "theirs").stdout.strip()
    assert len(image) == 64 and image != head
    assert sql(conn, f'select id, v from "{repo}".t order by id') == [(1, "theirs"), (2, "v2"), (4, "new")]
    log = json.loads(sgr(env, "--json", "log", repo).stdout)
    assert log[0]["image_hash"] == image and log[0]["parent_id"] == head
    assert json.loads(sgr(env, "--json", "status", repo).stdout) == []
    assert sgr(env, "--quiet", "merge", repo, "dev").stdout.strip() == image, "already merged: HEAD stays"


def test_import_mount_and_tracking_subcommands(env, conn, tmp_path):
    make_repo(env, "cli/src")
    sgr(env, "init", "cli/dst")
    sgr(env, "import", "cli/src", "t", "cli/dst", "copy")
    sgr(env, "import", "--query", "cli/src", "select id from t where id > 1", "cli/dst", "ids")
    assert value(conn, 'select count(*) from "cli/dst".ids') == 2
    handlers = sgr(env, "mount-handlers").stdout
    assert "postgres_fdw" in handlers and "csv" in handlers
    sql(conn, "create schema if not exists cli_plain; create table if not exists cli_plain.p (x int)")
    sgr(env, "track", "cli_plain", "p")
    assert "cli_plain" in sgr(env, "tracked").stdout
    sgr(env, "untrack", "cli_plain", "p")
    images = json.loads(sgr(env, "--json", "images", "cli/dst").stdout)
    sgr(env, "delete-image", "cli/dst", images[-1]["image_hash"], "--force", ok=False)  # HEAD: refused
    sgr(env, "prune", "cli/dst")
    sgr(env, "rm", "cli/dst", "--force")
    assert int(sgr(env, "cleanup").stdout.strip() or 0) >= 0


def test_csv_round_trip_through_client_side_copy(env, conn, tmp_path):
    sgr(env, "init", "cli/csv")
    source = tmp_path / "in.csv"
    source.write_text("id,name\n1,apple\n2,\"pear, green\"\n")
    out = sgr(env, "csv", "import", str(source), "cli/csv", "fruit", "--create", "-k", "id")
    assert "2 row(s)" in out.stderr
    assert sql(conn, 'select id, name from "cli/csv".fruit order by id') == [("1", "apple"), ("2", "pear, green")]
    exported = sgr(env, "csv", "export", "cli/csv", "fruit").stdout
    assert exported.splitlines() == ["id,name", "1,apple", '2,"pear, green"']


def test_errors_print_the_engines_message_and_exit_non_zero(env):
    out = sgr(env, "checkout", "nobody/nothing", "HEAD", ok=False)
    assert out.returncode == 1
    assert 'repository "nobody/nothing" does not exist' in out.stderr
    assert "hint: create it with splitgraph.init" in out.stderr and "42704" in out.stderr
    bad = sgr(env, "sql", "select 1/0", ok=False)
    assert bad.returncode == 1 and "division by zero" in bad.stderr


def test_subcommands_whose_function_the_engine_lacks_say_so(env, conn):
    """Every subcommand backed by a function this engine does not have (yet) says so, exit code 2."""
    present = {r[0] for r in sql(conn, "select proname::text from pg_proc "
                                       "where pronamespace = 'splitgraph'::regnamespace")}
    probes = {"merge": ["merge", "a/b", "main"], "conflicts": ["conflicts", "a/b", "main"],
              "mount_image": ["mount-image", "a/b", "HEAD"], "blame": ["blame", "a/b", "t"], "verify": ["verify"],
              "remotes": ["remotes"], "build": None, "provenance": ["provenance", "a/b"],
              "dependents": ["dependents", "a/b"], "reconstruct_splitfile": ["reconstruct", "a/b"],
              "upstream": ["upstream", "a/b"], "pull": ["pull", "a/b"]}
    missing = {f: args for f, args in probes.items() if f not in present and args}
    for function, args in missing.items():
        out = sgr(env, *args, ok=False)
        assert out.returncode == 2, (function, out.stderr)
        assert f"this engine has no splitgraph.{function}" in out.stderr


def test_sgconfig_names_the_engine(env, cluster, dbname, tmp_path):
    config = tmp_path / ".sgconfig"
    config.write_text(f"[defaults]\nSG_ENGINE_HOST = 127.0.0.1\nSG_ENGINE_PORT = {cluster.port}\n"
                      f"SG_ENGINE_USER = postgres\nSG_ENGINE_DB_NAME = {dbname}\n\n"
                      "[remote: registry]\nSG_ENGINE_HOST = registry.example\nSG_ENGINE_PORT = 6543\n")
    bare = {k: v for k, v in env.items() if not k.startswith("SG_ENGINE")}
    out = sgr(bare, "--json", "sql", "select current_database() as db", cwd=tmp_path)
    assert json.loads(out.stdout) == [{"db": dbname}]
    sys.path.insert(0, str(ROOT / "client"))
    from splitgraph_client import config as client_config

    os.environ["SG_CONFIG_FILE"] = str(config)
    try:
        assert client_config.remotes()["registry"]["host"] == "registry.example"
        assert client_config.remotes()["registry"]["port"] == "6543"
    finally:
        del os.environ["SG_CONFIG_FILE"]


def test_connect_gives_scripts_a_psycopg2_connection(env, dbname):
    code = ("from splitgraph_client import connect\n"
            "conn = connect()\n"
            "cur = conn.cursor(); cur.execute('select current_database()'); print(cur.fetchone()[0])\n"
            "print(type(conn).__module__)")
    out = subprocess.run([sys.executable, "-c", code], env=env, capture_output=True, text=True, check=True)
    assert out.stdout.split() == [dbname, "psycopg2.extensions"]


def test_sql_file_includes_are_inlined(tmp_path):
    (tmp_path / "step.sql").write_text("insert into t select 1;\n")
    text = "FROM EMPTY AS a/b\nSQL create table t (x int)\n  SQL FILE step.sql\n"
    assert commands.inline_sql_files(text, tmp_path) == (
        "FROM EMPTY AS a/b\nSQL create table t (x int)\n  SQL {insert into t select 1}\n")


def test_tables_are_aligned():
    assert as_table(["a", "long_name"], [[1, None], [22, "x"]]).splitlines() == [
        "a   long_name", "--  ---------", "1", "22  x"]


def test_build_runs_a_splitfile_and_a_failing_command_exits_non_zero(env, tmp_path):
    make_repo(env, "cli/source")
    sgr(env, "tag", "cli/source", "v1")
    (tmp_path / "double.sql").write_text("CREATE TABLE doubled AS SELECT id * 2 AS id FROM t;\n")
    good = tmp_path / "good.splitfile"
    good.write_text("FROM cli/source:${TAG} IMPORT t\nSQL FILE double.sql\n")
    out = sgr(env, "build", str(good), "-o", "cli/built", "-a", "TAG", "v1")
    assert len(out.stdout.strip()) == 64
    assert json.loads(sgr(env, "--json", "sql", 'select sum(id)::int as s from "cli/built".doubled').stdout) \
        == [{"s": 12}]
    bad = tmp_path / "bad.splitfile"
    bad.write_text("FROM cli/source:v1 IMPORT t\nSQL CREATE TABLE broken AS SELECT missing_column FROM t\n")
    failed = sgr(env, "build", str(bad), "-o", "cli/broken", ok=False)
    assert failed.returncode == 1 and "the build failed" in failed.stderr and "missing_column" in failed.stderr
    assert "cli/broken" in sgr(env, "repositories").stdout, "the import layer before the failing command stays"
    strict = sgr(env, "build", str(bad), "-o", "cli/strict", "--no-keep-layers", ok=False)
    assert strict.returncode == 1 and "missing_column" in strict.stderr
    assert "cli/strict" not in sgr(env, "repositories").stdout


def test_sgconfig_remotes_are_registered_and_transfers_show_progress(env, cluster, registry_cluster, registry_db,
                                                                     tmp_path):
    """A [remote: NAME] section of .sgconfig is registered on the engine the first time a subcommand names it; a
    push and a clone of 100 objects show the engine's per-batch progress ("(done/total)")."""
    (tmp_path / ".sgconfig").write_text(f"[remote: hub]\nSG_ENGINE_HOST = 127.0.0.1\n"
                                        f"SG_ENGINE_PORT = {registry_cluster.port}\nSG_ENGINE_USER = postgres\n"
                                        f"SG_ENGINE_DB_NAME = {registry_db}\n")
    sgr(env, "init", "cli/many")
    sgr(env, "sql", 'create table "cli/many".t (id int primary key, v text)')
    sgr(env, "sql", "insert into \"cli/many\".t select i, 'v' || i from generate_series(1, 1000) i")
    sgr(env, "sql", "select splitgraph.commit('cli/many', chunk_size => 10)")
    pushed = sgr(env, "push", "cli/many", "hub", cwd=tmp_path)
    assert f"registered remote hub from {tmp_path / '.sgconfig'}" in pushed.stderr
    steps = [(int(d), int(t)) for d, t in re.findall(r"pushed steps \((\d+)/(\d+)\)", pushed.stderr)]
    # the repository, 100 objects, two images (init's empty one and the commit), a table version, branch main
    assert steps and steps[-1] == (105, 105) and (64, 105) in steps, pushed.stderr
    with driver.connect(registry_cluster.dsn(registry_db), autocommit=True) as reg:
        assert value(reg, "select count(*) from splitgraph_meta.objects o join pg_class c on c.relname = o.object_id "
                          "and c.relnamespace = 'splitgraph_meta'::regnamespace") == 100
    again = sgr(env, "push", "cli/many", cwd=tmp_path)
    assert "registered remote" not in again.stderr and "is up to date" in again.stderr

    other = f"{registry_db}_other"
    cluster.create_database(other)
    elsewhere = dict(env, SG_ENGINE_DB_NAME=other)
    cloned = sgr(elsewhere, "clone", "hub", "cli/many", "--download-all", cwd=tmp_path)
    assert "registered remote hub" in cloned.stderr
    loads = [(int(d), int(t)) for d, t in re.findall(r"downloaded objects \((\d+)/(\d+)\)", cloned.stderr)]
    assert loads and loads[-1] == (100, 100) and (64, 100) in loads, cloned.stderr
    sgr(elsewhere, "checkout", "cli/many", "main", cwd=tmp_path)
    out = sgr(elsewhere, "--json", "sql", 'select count(*) as n, sum(id) as s from "cli/many".t')
    assert json.loads(out.stdout) == [{"n": 1000, "s": 500500}]
