"""The README's function table is the one generated from the declarations (`make readme`), and it names every
public function of the engine with its arguments, so the two cannot drift apart."""
import pathlib
import sys

from conftest import sql

ROOT = pathlib.Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT / "scripts"))
import build_sql  # noqa: E402


def test_readme_table_is_generated_from_the_declarations():
    readme = (ROOT / "README.md").read_text()
    assert build_sql.readme_with_table(readme, build_sql.declarations()) == readme, "run make readme"


def test_readme_table_names_every_engine_function_with_its_arguments(conn):
    engine = dict(sql(conn, """select p.proname, coalesce(string_agg(a.name, ', ' order by a.n), '')
                               from pg_proc p
                               left join lateral unnest(p.proargnames, p.proargmodes::text[])
                                   with ordinality a(name, mode, n) on coalesce(a.mode, 'i') = 'i'
                               where p.pronamespace = 'splitgraph'::regnamespace group by p.proname"""))
    readme = (ROOT / "README.md").read_text()
    table = readme.split(build_sql.README_BEGIN)[1].split(build_sql.README_END)[0]
    listed = {}
    for line in table.strip().splitlines()[2:]:
        call = line.split("`")[1]
        name, _, args = call.partition("(")
        listed[name] = ", ".join(a.split("=")[0].strip() for a in args.rstrip(")").split(",") if a.strip())
    assert listed == engine

