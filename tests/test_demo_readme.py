"""The demo and the README's commands work as written."""
import os
import pathlib
import re
import subprocess
import sys

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


def test_readme_terminal_section_runs_as_written(cluster, dbname, tmp_path):
    """The README's terminal section, run line by line with sgr against the test engine."""
    text = (ROOT / "README.md").read_text()
    section = re.search(r"## From a terminal(.*?)\n## ", text, re.S).group(1)
    lines = [line for block in re.findall(r"```sh\n(.*?)```", section, re.S)[1:] for line in block.splitlines()]
    env = {k: v for k, v in os.environ.items() if not k.startswith("SG_")}
    env.update(SG_ENGINE_HOST="127.0.0.1", SG_ENGINE_PORT=str(cluster.port), SG_ENGINE_USER="postgres",
               SG_ENGINE_DB_NAME=dbname, HOME=str(tmp_path), PYTHONPATH=str(ROOT / "client"),
               PATH=f"{pathlib.Path(sys.executable).parent}:{os.environ['PATH']}")
    outputs = []
    for line in lines:
        out = subprocess.run(["bash", "-c", line], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=60)
        assert out.returncode == 0, f"{line}: {out.stderr}"
        outputs.append(out.stdout)
    assert "noaa/terminal" in outputs[lines.index("sgr status noaa/terminal")]
    assert "tag v1" in outputs[lines.index("sgr log noaa/terminal --tree")]
    assert outputs[-1].splitlines()[1:] == ["london,2024-01-01,7.5", "oslo,2024-01-01,-3.0"], "v1's rows came back"
