"""The demo and the README's commands work as written."""
import os
import pathlib
import re
import subprocess
import sys

from conftest import sql, value
from support import driver  # noqa: E402

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
    with driver.connect(cluster.dsn(dbname), autocommit=True) as conn:
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
    engines = {"this": driver.connect(cluster.dsn(here), autocommit=True),
               "registry": driver.connect(registry_cluster.dsn("splitgraph"), autocommit=True)}
    try:
        for statement in _statements(tour):
            sql(engines["this"], statement)
        v1 = value(engines["this"], "select image_hash from splitgraph_meta.tags where tag = 'v1'")
        for block in blocks:
            first = block.splitlines()[0]
            name = "registry" if "on the registry" in first else "this" if "on this engine" in first else "other"
            assert name != "other" or "on another engine" in first, first
            if name == "other" and name not in engines:
                engines["other"] = driver.connect(registry_cluster.dsn("consumer"), autocommit=True)
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
def sql_statements(text):
    """The statements of SQL text, split at semicolons outside strings, dollar quotes and -- comments."""
    statements, current, i, dollar = [], [], 0, False
    while i < len(text):
        if text.startswith("$$", i):
            dollar = not dollar
            current.append("$$")
            i += 2
        elif not dollar and text.startswith("--", i):
            i = text.find("\n", i) if "\n" in text[i:] else len(text)
        elif not dollar and text[i] == "'":
            end = text.index("'", i + 1)
            current.append(text[i:end + 1])
            i = end + 1
        elif not dollar and text[i] == ";":
            statements.append("".join(current).strip())
            current = []
            i += 1
        else:
            current.append(text[i])
            i += 1
    statements.append("".join(current).strip())
    return [s for s in statements if s]


def test_readme_splitfile_tour_runs_as_written(cluster, dbname):
    text = (ROOT / "README.md").read_text()
    section = re.search(r"## Splitfiles: declarative, cached builds(.*?)\n## ", text, re.S).group(1)
    statements = sql_statements("".join(re.findall(r"```sql\n(.*?)```", section, re.S)))
    means = 'select station, round(mean, 1)::text from "city/report".means order by 1'
    images = "select count(*) from splitgraph_meta.images"
    builds = []
    with driver.connect(cluster.dsn(dbname), autocommit=True) as conn:
        notices = []
        conn.add_notice_handler(lambda d: notices.append(d.message_primary))
        for statement in statements:
            before = value(conn, images)
            notices.clear()
            result = sql(conn, statement)
            if statement.startswith("select splitgraph.build("):
                builds.append(result[0][0])
                assert result[0][0] is not None, notices
                if len(builds) == 2:
                    assert builds[1] == builds[0] and value(conn, images) == before, "the rerun made images"
                    assert [n for n in notices if n.startswith("splitgraph: line")] == [
                        f"splitgraph: line 3 (IMPORT): cached, image {value(conn, _nth_image, 2)[:12]}",
                        f"splitgraph: line 4 (SQL): cached, image {value(conn, _nth_image, 1)[:12]}",
                        f"splitgraph: line 8 (SQL): cached, image {builds[0][:12]}"]
            if statement.startswith("select * from \"city/report\".means"):
                want = [("london", "7.8"), ("oslo", "-3.0")] if len(builds) < 3 else [("london", "7.8"),
                                                                                       ("oslo", "-4.0")]
                assert sql(conn, means) == want
            if statement.startswith("select splitgraph.reconstruct_splitfile("):
                source = value(conn, "select image_hash from splitgraph.images('city/weather') "
                                     "where 'v1' = any(tags)")
                assert result[0][0].startswith(f"FROM city/weather:{source} IMPORT readings, {{SELECT DISTINCT")
            if statement.startswith("select splitgraph.rebuild("):
                builds.append(result[0][0])
                assert result[0][0] not in builds[:2]
        assert sql(conn, 'select station, round(delta, 1)::text from "city/compare".change order by 1') == [
            ("london", "0.0"), ("oslo", "-1.0")]
        # the three images of the first build, and the comparison that read v1
        assert sql(conn, "select repository, count(*) from splitgraph.dependents('city/weather', 'v1') "
                         "group by 1 order by 1") == [("city/compare", 1), ("city/report", 3)]


_nth_image = "select image_hash from splitgraph.log('city/report', 'main') offset %s limit 1"
