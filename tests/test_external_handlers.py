"""Issue 12: register_external_handler adds object stores behind the protocol of DB and S3. The handler here keeps
objects as Parquet files in a directory on the server's disk: its upload writes dump_object(id, 'parquet') there,
its download reads the files back through load_object (which verifies each)."""
import json
import os
import tempfile

import psycopg2
import pytest

from conftest import sql, value
from support import driver  # noqa: E402

HANDLER = """
create or replace function public.dir_upload(object_ids text[], options jsonb)
returns table (object_id text, location text) language plpython3u as $$
    import os
    rows = []
    plan = plpy.prepare("select splitgraph.dump_object($1, 'parquet') as data", ["text"])
    for object_id in object_ids:
        path = os.path.join(__import__("json").loads(options)["directory"], object_id + ".parquet")
        with open(path, "wb") as f:
            f.write(plpy.execute(plan, [object_id])[0]["data"])
        rows.append((object_id, path))
    return rows
$$;
create or replace function public.dir_download(locations jsonb, options jsonb) returns text[]
language plpython3u as $$
    import json
    plan = plpy.prepare("select splitgraph.load_object($1, $2)", ["text", "bytea"])
    loaded = []
    for item in json.loads(locations):
        with open(item["location"], "rb") as f:
            plpy.execute(plan, [item["object_id"], f.read()])
        loaded.append(item["object_id"])
    return loaded
$$;
create or replace function public.wrong_upload(object_ids text[]) returns setof text language sql as $$ select '' $$;
"""


@pytest.fixture
def directory():
    path = tempfile.mkdtemp(prefix="sg-handler-")
    os.chmod(path, 0o777)  # the server runs as another user
    return path


@pytest.fixture
def other(cluster, dbname, request):
    name = f"{dbname}_{request.node.name}"[:63]
    cluster.create_database(name)
    with driver.connect(cluster.dsn(name), autocommit=True) as c:
        sql(c, HANDLER)
        sql(c, "select splitgraph.register_external_handler('dir', 'dir_upload(text[], jsonb)', "
               "'dir_download(jsonb, jsonb)')")
        yield c


@pytest.fixture
def source(conn):
    sql(conn, HANDLER)
    sql(conn, "select splitgraph.register_external_handler('dir', 'public.dir_upload(text[], jsonb)', "
              "'public.dir_download(jsonb, jsonb)')")
    if not value(conn, "select count(*) from splitgraph.repositories() where repository = 'eh/src'"):
        sql(conn, "select splitgraph.init('eh/src')")
        sql(conn, 'create table "eh/src".t (id int primary key, v text)')
        sql(conn, """insert into "eh/src".t select i, 'v' || i from generate_series(1, 25) i""")
        sql(conn, "select splitgraph.commit('eh/src', chunk_size => 10)")
    return value(conn, "select splitgraph.table_info('eh/src', 'latest', 't')")["objects"]


def test_a_directory_handler_moves_objects_between_databases(conn, other, source, directory):
    options = f'{{"directory": "{directory}"}}'
    located = sql(conn, "select * from splitgraph_internal.upload_objects_with('dir', %s, %s)", source, options)
    assert [o for o, _ in located] == source
    assert sorted(os.listdir(directory)) == sorted(f"{o}.parquet" for o in source)
    locations = [{"object_id": o, "location": loc} for o, loc in located]
    loaded = value(other, "select splitgraph_internal.download_objects_with('dir', %s, %s)", json.dumps(locations),
                   options)
    assert loaded == source
    for o in source:
        assert sql(other, f'select f::text from splitgraph_meta."{o}" f order by 1') == \
            sql(conn, f'select f::text from splitgraph_meta."{o}" f order by 1')


def test_a_handler_must_have_the_protocols_signatures(conn, source):
    for upload, download in [("wrong_upload(text[])", "dir_download(jsonb, jsonb)"),
                             ("dir_upload(text[], jsonb)", "dir_upload(text[], jsonb)")]:
        with pytest.raises(psycopg2.Error) as error:
            sql(conn, "select splitgraph.register_external_handler('bad', %s, %s)", upload, download)
        assert error.value.pgcode == "22023"
    for name in ("S3", "db", "1x", "a b"):
        with pytest.raises(psycopg2.Error) as error:
            sql(conn, "select splitgraph.register_external_handler(%s, 'dir_upload(text[], jsonb)', "
                      "'dir_download(jsonb, jsonb)')", name)
        assert error.value.pgcode == "42602"


def test_only_the_owner_registers_handlers(source, roles):
    role = roles.new("henry")
    with pytest.raises(psycopg2.Error) as error:
        sql(role.conn, "select splitgraph.register_external_handler('mine', 'public.dir_upload(text[], jsonb)', "
                       "'public.dir_download(jsonb, jsonb)')")
    assert error.value.pgcode == "42501"


def test_an_unknown_handler_is_refused(conn, source):
    with pytest.raises(psycopg2.Error) as error:
        sql(conn, "select * from splitgraph_internal.upload_objects_with('nope', %s, '{}')", source)
    assert error.value.pgcode == "42704"
