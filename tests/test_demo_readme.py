"""The demo and the README's commands work as written."""
import pathlib
import re
import subprocess

import psycopg

from conftest import sql, value

ROOT = pathlib.Path(__file__).resolve().parent.parent


def test_demo_walks_through_a_repository(cluster, dbname):
    out = subprocess.run([str(ROOT / "scripts" / "demo.sh"), cluster.dsn(dbname)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    steps = out.stdout.split("==> ")
    tagged = next(s for s in steps if s.startswith("8."))
    head = next(s for s in steps if s.startswith("9."))
    assert "8.1" in tagged and "-5.5" in tagged and "6.9" not in tagged, "the tagged image shows the old rows"
    assert "8.3" in head and "6.9" in head and "-5.5" not in head, "the branch head shows the new rows"
    assert "{v1}" in next(s for s in steps if s.startswith("7.")), "the log shows the tag"


def test_readme_starts_with_the_two_commands():
    lines = (ROOT / "README.md").read_text().splitlines()[:12]
    assert any(line.startswith("make demo") for line in lines)
    assert any(line.startswith("make test") for line in lines)
    for target in ("demo", "test"):
        dry = subprocess.run(["make", "-n", target], cwd=ROOT, capture_output=True, text=True)
        assert dry.returncode == 0, dry.stderr


def test_ci_runs_the_readme_test_command():
    assert "make test" in (ROOT / ".ci" / "run").read_text()


def test_readme_tour_runs_as_written(cluster, dbname):
    text = (ROOT / "README.md").read_text()
    section = re.search(r"## A tour from psql(.*?)\n## ", text, re.S).group(1)
    tour = "".join(re.findall(r"```sql\n(.*?)```", section, re.S))
    statements = [s.strip() for s in re.sub(r"--[^\n]*", "", tour).split(";") if s.strip()]
    london = """select temp::text from "noaa/climate".readings where station = 'london'"""
    readings = pathlib.Path("/tmp/readings.csv")  # the file the tour mounts, on the (local) database server
    readings.write_text("station,day,temp\nlondon,2024-01-01,7.5\noslo,2024-01-01,-3.0\n")
    readings.chmod(0o644)
    with psycopg.connect(cluster.dsn(dbname), autocommit=True) as conn:
        for statement in statements:
            result = sql(conn, statement)
            if statement.startswith("select splitgraph.checkout('noaa/climate', 'v1')"):
                assert sql(conn, london) == [("7.5",)]
            if statement.startswith("select * from splitgraph.status"):
                assert result == [("noaa/climate", "readings", 1, 0, 1, False)]
            if statement.startswith("select splitgraph.commit('noaa/climate', 'oslo')"):
                info = value(conn, "select splitgraph.table_info('noaa/climate', 'HEAD', 'readings')")
                last = value(conn, "select splitgraph.object_info(%s)", info["objects"][-1])
                assert last["rows_inserted"] == 2, "the commit stored only the two changed rows"
        assert sql(conn, london) == [("7.9",)]
        assert sql(conn, 'select station, temp::text from "noaa/derived".from_csv order by 1') == [
            ("london", "7.5"), ("oslo", "-3.0")], "the CSV file was snapshotted"
        assert value(conn, 'select count(*) from "noaa/derived".means') == 2
        assert value(conn, 'select count(*) from "noaa/climate".readings') == 3, "reset restored HEAD"
        branch = "select branch from splitgraph.repositories() where repository = 'noaa/climate'"
        assert sql(conn, branch) == [("main",)]


def _statements(text):
    return [s.strip() for s in re.sub(r"--[^\n]*", "", text).split(";") if s.strip()]


def test_readme_two_engines_run_as_written(cluster, registry_cluster):
    """The tour, then the two-engine section, block by block on the engine each block names: this engine (a fresh
    database of the session's cluster), the registry (database splitgraph of the second cluster) and another engine
    (database consumer there). The README's port 5489 is the registry's port here."""
    text = (ROOT / "README.md").read_text()
    tour = "".join(re.findall(r"```sql\n(.*?)```", re.search(r"## A tour from psql(.*?)\n## ", text, re.S).group(1),
                              re.S))
    section = re.search(r"## Two engines: push, clone, pull(.*?)\n## ", text, re.S).group(1)
    blocks = re.findall(r"```sql\n(.*?)```", section, re.S)
    assert len(blocks) >= 5
    here = "readme_two_engines"
    cluster.create_database(here)
    registry_cluster.create_database("splitgraph")
    pathlib.Path("/tmp/readings.csv").write_text("station,day,temp\nlondon,2024-01-01,7.5\noslo,2024-01-01,-3.0\n")
    pathlib.Path("/tmp/readings.csv").chmod(0o644)
    engines = {"this": psycopg.connect(cluster.dsn(here), autocommit=True),
               "registry": psycopg.connect(registry_cluster.dsn("splitgraph"), autocommit=True)}
    try:
        for statement in _statements(tour):
            sql(engines["this"], statement)
        v1 = value(engines["this"], "select image_hash from splitgraph_meta.tags where tag = 'v1'")
        for block in blocks:
            first = block.splitlines()[0]
            name = "registry" if "on the registry" in first else "this" if "on this engine" in first else "other"
            assert name != "other" or "on another engine" in first, first
            if name == "other" and name not in engines:
                engines["other"] = psycopg.connect(registry_cluster.dsn("consumer"), autocommit=True)
            for statement in _statements(block.replace("5489", str(registry_cluster.port))):
                sql(engines[name], statement)
                if statement.startswith("select splitgraph.clone"):
                    assert value(engines["other"], "select count(*) from splitgraph_meta.objects") > 0
                    assert value(engines["other"], "select count(*) from pg_class where relname ~ '^o[0-9a-f]{62}$' "
                                                   "and relnamespace = 'splitgraph_meta'::regnamespace") == 0
                if statement.startswith("select splitgraph.checkout('noaa/climate', 'v1')"):
                    assert value(engines["other"], "select count(*) from pg_class where relname ~ '^o[0-9a-f]{62}$' "
                                                   "and relnamespace = 'splitgraph_meta'::regnamespace") == \
                        len(value(engines["this"], "select splitgraph.table_info('noaa/climate', %s, 'readings')",
                                  v1)["objects"])
                    assert sql(engines["other"], 'select station, temp::text from "noaa/climate".readings '
                                                 "order by 1") == [("london", "7.5"), ("oslo", "-3.0")]
                if statement.startswith("select * from splitgraph.remotes"):
                    assert "publisher-secret" not in str(sql(engines[name], statement))
        assert sql(engines["other"], 'select station, temp::text from "noaa/climate".readings order by 1, 2') == [
            ("london", "8.1"), ("oslo", "-2.9"), ("oslo", "-4.2")]
        assert value(engines["registry"], "select count(*) from splitgraph.images('noaa/climate')") == \
            value(engines["this"], "select count(*) from splitgraph.images('noaa/climate')")
    finally:
        for conn in engines.values():
            conn.close()
