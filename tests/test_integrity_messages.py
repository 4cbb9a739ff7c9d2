"""Issue 9, messages: no internal NOTICE reaches the client, a cancelled call is 57014 without Python internals,
names ending in a newline are invalid names (42602), NULL for a required argument is 22004 naming the argument
(every public function, from the catalog), a table too wide to track says why and what to do, a tag cannot
silently shadow a hash, long imports fail cleanly if at all, CSV headers with odd names mount, and DROP EXTENSION
leaves no mount credentials behind that their owners cannot drop."""
import pathlib
import secrets
import shutil
import tempfile

import psycopg2
import pytest
from psycopg2.extras import Json as Jsonb

from conftest import fails
from support import driver  # noqa: E402
from support.integrity import Notices, connect, ensure_roles, one, run


@pytest.fixture
def db(cluster, dbname):
    c = connect(cluster, dbname)
    yield c
    c.close()


def make_repo(db, repo, rows=3):
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f'create table "{repo}".t (id int primary key, v text)')
    run(db, f"insert into \"{repo}\".t select i, 'v' || i from generate_series(1, {rows}) i")
    return one(db, "select splitgraph.commit(%s)", repo)


def full_text(err):
    d = err.diag
    return "\n".join(str(x) for x in (err, d.message_primary, d.message_detail, d.message_hint, d.context) if x)


# ---------------------------------------------------------------------------------------------------------------
# Internal notices and cancellation
# ---------------------------------------------------------------------------------------------------------------

def test_no_internal_notice_reaches_the_client_after_a_schema_change(db):
    make_repo(db, "msg/notice")
    run(db, 'alter table "msg/notice".t add column w int')
    run(db, "set client_min_messages = notice")
    notices = Notices(db)
    one(db, "select splitgraph.commit('msg/notice')")
    one(db, "select splitgraph.commit('msg/notice')")
    leaked = [m for m in notices.messages if "does not exist, skipping" in m or "sg_track_" in m]
    assert leaked == []


def test_a_cancelled_call_is_57014_without_python_internals(db):
    repo = "msg/cancel"
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f'create table "{repo}".t (id int primary key, v text)')
    run(db, f'insert into "{repo}".t select i, md5(i::text) from generate_series(1, 200000) i')
    run(db, "set statement_timeout = '200ms'")
    try:
        err = fails(db, "select splitgraph.commit(%s)", repo, sqlstate="57014")
    finally:
        run(db, "set statement_timeout = '20s'")
    assert "spiexceptions" not in (err.diag.message_primary or "")
    assert "spiexceptions" not in str(err)
    assert one(db, "select count(*) from splitgraph.images(%s)", repo) == 1, "the cancelled commit left no image"


# ---------------------------------------------------------------------------------------------------------------
# Names and NULLs
# ---------------------------------------------------------------------------------------------------------------

@pytest.mark.parametrize("call", [
    "select splitgraph.init(E'msg/newline\\n')",
    "select splitgraph.tag('msg/names', 'HEAD', E'v1\\n')",
    "select splitgraph.branch('msg/names', E'feature\\n')",
], ids=["repository", "tag", "branch"])
def test_a_name_ending_in_a_newline_is_an_invalid_name(db, call):
    if one(db, "select count(*) from splitgraph.repositories() where repository = 'msg/names'") == 0:
        make_repo(db, "msg/names")
    fails(db, call, sqlstate="42602")
    assert one(db, "select count(*) from splitgraph_meta.repositories where repository like 'msg/newline%'") == 0
    assert one(db, "select count(*) from splitgraph_meta.tags where tag like 'v1%'") == 0
    assert one(db, "select count(*) from splitgraph_meta.branches where branch like 'feature%'") == 0


def public_functions(db):
    """(name, required argument names, their types) of every function of schema splitgraph that takes arguments
    without defaults."""
    return run(db, """
        select p.proname::text, p.proargnames[1:p.pronargs - p.pronargdefaults],
               array(select format_type(t, null) from unnest(p.proargtypes::oid[]) with ordinality u (t, n)
                     where n <= p.pronargs - p.pronargdefaults order by n)
        from pg_proc p where p.pronamespace = 'splitgraph'::regnamespace and p.prokind = 'f'
          and p.pronargs - p.pronargdefaults > 0
        order by 1""")


def test_every_public_function_refuses_null_for_its_required_arguments(db):
    functions = public_functions(db)
    assert len(functions) > 30
    wrong = []
    for name, args, types in functions:
        call = f"select * from splitgraph.{name}({', '.join(f'null::{t}' for t in types)})"
        try:
            with db.transaction():
                run(db, call)
                raise driver.Rollback()
            wrong.append(f"{name}: no error")
        except psycopg2.Error as err:
            message = err.diag.message_primary or ""
            if err.pgcode != "22004" or not any(a in message for a in args):
                wrong.append(f"{name}: {err.pgcode} {message[:80]}")
    assert wrong == [], "\n".join(wrong)


@pytest.mark.parametrize("call, argument", [
    ("select splitgraph.tag('msg/nulls', 'HEAD', null)", "tag"),
    ("select splitgraph.tag('msg/nulls', null, 'x')", "image"),
    ("select splitgraph.branch('msg/nulls', null)", "name"),
    ("select splitgraph.checkout('msg/nulls', null)", "image"),
    ("select splitgraph.delete_tag('msg/nulls', null)", "tag"),
    ("select splitgraph.show('msg/nulls', null)", "image"),
    ("select splitgraph.table_info('msg/nulls', 'HEAD', null)", "table_name"),
    ("select * from splitgraph.diff('msg/nulls', null, 'HEAD')", "table_name"),
    ("select * from splitgraph.get_pending_changes('msg/nulls', null)", "table_name"),
    ("select splitgraph.import_table('msg/nulls', null, 'msg/nulls', 'copy')", "source_table"),
    ("select splitgraph.track_tables('msg/nulls', null)", "tables"),
])
def test_null_in_a_later_argument_is_22004_naming_it(db, call, argument):
    if one(db, "select count(*) from splitgraph.repositories() where repository = 'msg/nulls'") == 0:
        make_repo(db, "msg/nulls")
    images = one(db, "select count(*) from splitgraph.images('msg/nulls')")
    err = fails(db, call, sqlstate="22004")
    assert argument in (err.diag.message_primary or "")
    assert one(db, "select count(*) from splitgraph.images('msg/nulls')") == images


# ---------------------------------------------------------------------------------------------------------------
# Limits
# ---------------------------------------------------------------------------------------------------------------

def test_a_table_too_wide_to_track_says_why_and_what_to_do(db):
    repo = "msg/wide"
    run(db, "select splitgraph.init(%s)", repo)
    cols = ", ".join(f"c{i} int" for i in range(2, 1600))
    run(db, f'create table "{repo}".w (id int primary key, {cols})')
    run(db, f'insert into "{repo}".w (id, c2) values (1, 2)')
    try:
        image = one(db, "select splitgraph.commit(%s)", repo)
    except psycopg2.Error as err:
        assert err.pgcode not in ("XX000", "38000"), err.pgcode
        assert '"w"' in (err.diag.message_primary or ""), "the message names the table"
        assert "1600" in full_text(err) or "column" in (err.diag.message_primary or "")
        assert err.diag.message_hint, "a hint says what to do"
        return
    run(db, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
    assert one(db, f'select c2 from "{repo}".w where id = 1') == 2


@pytest.mark.parametrize("shape", ["prefix", "upper-case hash"])
def test_a_tag_never_silently_shadows_a_hash(db, shape):
    repo = f"msg/shadow-{shape.split()[0]}"
    tagged = make_repo(db, repo)
    run(db, f"insert into \"{repo}\".t values (100, 'other')")
    other = one(db, "select splitgraph.commit(%s)", repo)
    name = other[:6] if shape == "prefix" else other.upper()
    try:
        run(db, "select splitgraph.tag(%s, %s, %s)", repo, tagged, name)
    except psycopg2.Error as err:
        assert err.pgcode == "42602", err.pgcode       # refused: such names are not tags
        return
    err = fails(db, "select splitgraph.checkout(%s, %s)", repo, name)
    assert err.pgcode == "21000", f"{err.pgcode}: {err}"   # or reported as ambiguous
    err = fails(db, "select splitgraph.table_info(%s, %s, 't')", repo, name)
    assert err.pgcode == "21000"
    target = f"msg/shadow-import-{shape.split()[0]}"
    run(db, "select splitgraph.init(%s)", target)
    err = fails(db, "select splitgraph.import_table(%s, 't', %s, 't', source_image => %s)", repo, target, name)
    assert err.pgcode == "21000", "an import by that reference is ambiguous too"


@pytest.mark.parametrize("length", [4070, 4200])
def test_a_long_import_query_works_or_fails_cleanly(db, length):
    source, target = f"msg/q-source-{length}", f"msg/q-target-{length}"
    make_repo(db, source)
    make_repo(db, target)
    head = "select id, v from t where v <> '"
    query = head + "x" * (length - len(head) - 1) + "'"
    assert len(query) == length
    try:
        image = one(db, "select splitgraph.import_query(%s, %s, %s, 'q')", source, query, target)
    except psycopg2.Error as err:
        assert err.pgcode not in ("23514", "38000", "XX000"), f"{err.pgcode}: {err}"
        return
    assert one(db, "select splitgraph.table_info(%s, %s, 'q')", target, image)["rows"] == 3


def test_importing_many_long_table_names_works_or_fails_cleanly(db):
    source, target = "msg/many-source", "msg/many-target"
    run(db, "select splitgraph.init(%s)", source)
    names = [f"table_{i:02d}_" + "n" * 54 for i in range(65)]     # 63 bytes each, the longest a name can be
    run(db, "\n".join(f'create table "{source}"."{n}" (id int);' for n in names))
    one(db, "select splitgraph.commit(%s)", source)
    make_repo(db, target)
    try:
        image = one(db, "select splitgraph.import_tables(%s, %s, %s)", source, names, target)
    except psycopg2.Error as err:
        assert err.pgcode not in ("23514", "38000", "XX000"), f"{err.pgcode}: {err}"
        return
    assert set(names) <= set(one(db, "select splitgraph.show(%s, %s)", target, image)["tables"])


# ---------------------------------------------------------------------------------------------------------------
# CSV headers
# ---------------------------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def csv_dir():
    d = pathlib.Path(tempfile.mkdtemp(prefix="sg-csv9-"))
    d.chmod(0o755)
    yield d
    shutil.rmtree(d, ignore_errors=True)


HEADERS = {
    "long-multibyte-duplicates": (["€" * 21 + "a", "€" * 21 + "b", "€" * 21 + "c"], "1,2,3"),
    "identical-long-multibyte": (["ü" * 32] * 3, "1,2,3"),
    "quoted-newline": (['"first\nline"', "second"], "1,2"),
    "control-character": (["a\x01b", "c"], "1,2"),
}


@pytest.mark.parametrize("shape", list(HEADERS))
def test_csv_headers_with_odd_names_mount(db, csv_dir, shape):
    header, data = HEADERS[shape]
    table = "h_" + shape.replace("-", "_")
    path = csv_dir / f"{table}.csv"
    path.write_bytes((",".join(header) + "\n" + data + "\n").encode())
    path.chmod(0o644)
    mountpoint = "mnt9_" + shape.replace("-", "_")
    run(db, "select splitgraph.mount(%s, 'csv', %s)", mountpoint, Jsonb({"filename": str(path)}))
    columns = [r[0] for r in run(db, """select a.attname::text from pg_attribute a
                                        where a.attrelid = %s::regclass and a.attnum > 0 order by a.attnum""",
                                 f'"{mountpoint}"."{table}"')]
    assert len(columns) == len(header) and len(set(columns)) == len(header)
    got = run(db, f'select * from "{mountpoint}"."{table}"')
    assert [tuple(str(v) for v in r) for r in got] == [tuple(data.split(","))]


# ---------------------------------------------------------------------------------------------------------------
# DROP EXTENSION
# ---------------------------------------------------------------------------------------------------------------

def test_drop_extension_leaves_no_credentials_their_owner_cannot_drop(cluster):
    ensure_roles(cluster, "mount_owner9")
    name = "t_drop_extension_9"
    cluster.create_database(name)
    password = "pw-" + secrets.token_hex(8)
    admin = connect(cluster, name)
    try:
        run(admin, """do $$ begin
                        if exists (select from pg_roles where rolname = 'splitgraph_mount') then
                          grant splitgraph_mount to mount_owner9;
                        end if;
                      end $$""")
        with connect(cluster, name, "mount_owner9") as owner:
            run(owner, "select splitgraph.mount_postgres('mnt9_remote', '127.0.0.1', %s, 'nobody', %s, 'none', "
                       "'public', tables => %s)", cluster.port, password, Jsonb({"x": {"a": "int"}}))
        run(admin, "drop extension splitgraph cascade")
        left = run(admin, """select s.srvname::text from pg_foreign_server s
                             join pg_user_mappings m on m.srvid = s.oid
                             where array_to_string(m.umoptions, ',') like %s""", f"%{password}%")
        with connect(cluster, name, "mount_owner9") as owner:
            for (server,) in left:
                run(owner, f'drop server "{server}" cascade')   # the owner of the mount can drop it
        assert run(admin, """select s.srvname::text from pg_foreign_server s join pg_user_mappings m on m.srvid = s.oid
                             where array_to_string(m.umoptions, ',') like %s""", f"%{password}%") == []
    finally:
        admin.close()
        cluster.psql(f'drop database if exists "{name}" with (force)')

