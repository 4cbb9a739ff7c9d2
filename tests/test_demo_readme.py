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
        # then the README's merging section, on the tour's repository
        section = re.search(r"## Merging branches(.*?)\n## ", text, re.S).group(1)
        merging = "".join(re.findall(r"```sql\n(.*?)```", section, re.S))
        merged = None
        for statement in [s.strip() for s in re.sub(r"--[^\n]*", "", merging).split(";") if s.strip()]:
            result = sql(conn, statement)
            if statement.startswith("select * from splitgraph.conflicts"):
                assert result == []
            if statement == "select splitgraph.merge('noaa/climate', 'fixes')":
                merged = result[0][0]
        assert value(conn, "select splitgraph.show('noaa/climate', %s) -> 'parents'", merged)[1] == value(
            conn, "select image_hash from splitgraph.branches('noaa/climate') where branch = 'fixes'")
        assert sql(conn, """select station, temp::text from "noaa/climate".readings order by 1, day""") == [
            ("london", "7.9"), ("oslo", "-3.1"), ("oslo", "-3.1"), ("paris", "4.0")], "both branches' changes"
        assert sql(conn, "select table_name from splitgraph.status('noaa/climate')") == []
