"""Issue 12, part 2: push with handler S3 and downloads through pre-signed URLs, on two clusters and an S3 server
(moto on loopback). The client uploads each object (a Parquet file) straight to the registry's bucket through URLs
the registry signs, and the registry registers only metadata and locations (no rows); objects already in the
bucket are not uploaded again; a failed push registers nothing and a rerun completes it; clone, pull and checkout
elsewhere download exactly the objects they need through download URLs and verify each; a role gets upload URLs
only for namespaces it may write; a tampered object in the bucket is refused; the secret key never shows."""
import secrets
import time

import pytest

from conftest import fails, sql, value
from support import driver  # noqa: E402
from support.registry import check_every_object, connect_as, metadata, object_tables, objects_state, password_role
from support.s3 import ACCESS_KEY, SECRET_KEY

PUSHER = "s3_pusher"                       # the registry role the client logs in as (its namespace)
PASSWORD = "pw'" + secrets.token_hex(8)
BUCKET = "sg-remote-s3"


@pytest.fixture(scope="module")
def hub(cluster, dbname, registry_cluster, registry_db, s3):
    """The registry (its objects in a bucket of the S3 server) as the client's remote 'hub', logged in to as
    PUSHER."""
    password_role(registry_cluster, PUSHER, PASSWORD)
    s3.create_bucket(BUCKET)
    with driver.connect(registry_cluster.dsn(registry_db), autocommit=True) as r:
        sql(r, "select splitgraph.configure_s3(%s, %s, %s, %s)", s3.endpoint, ACCESS_KEY, SECRET_KEY, BUCKET)
    with driver.connect(cluster.dsn(dbname), autocommit=True) as c:
        sql(c, "select splitgraph.add_remote('hub', '127.0.0.1', %s, %s, %s, %s)", registry_cluster.port,
            registry_db, PUSHER, PASSWORD)
    return registry_cluster


@pytest.fixture
def reg(registry_cluster, registry_db):
    with driver.connect(registry_cluster.dsn(registry_db), autocommit=True) as c:
        yield c


_engines = iter(range(1, 10**6))


def other_engine(cluster, dbname, registry_cluster, registry_db):
    """A fresh database of the client cluster (another engine, sharing no object), with the registry as 'hub'."""
    name = f"{dbname}_e{next(_engines)}"[:63]
    cluster.create_database(name)
    c = driver.connect(cluster.dsn(name), autocommit=True)
    sql(c, "select splitgraph.add_remote('hub', '127.0.0.1', %s, %s, %s, %s)", registry_cluster.port, registry_db,
        PUSHER, PASSWORD)
    return c


def build(conn, repo, salt=""):
    """A repository with two images of table t (3 objects, then a delta) and table u in the second; tag v1 on the
    first. Returns (v1, v2)."""
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text, at timestamptz, x float8, b bytea)')
    sql(conn, f"""insert into "{repo}".t select i, md5(i::text || %s), timestamptz '2020-01-01 00:00+00' + i * interval
                  '1 h', case when i %% 7 = 0 then 'NaN' else i / 3.0 end, decode(md5(i::text), 'hex')
                  from generate_series(1, 25) i""", salt)
    v1 = value(conn, "select splitgraph.commit(%s, 'first', chunk_size => 10)", repo)
    sql(conn, "select splitgraph.tag(%s, %s, 'v1')", repo, v1)
    sql(conn, f"update \"{repo}\".t set v = 'changed ünï' where id % 5 = 0")
    sql(conn, f'delete from "{repo}".t where id > 22')
    sql(conn, f'create table "{repo}".u (k text primary key, n numeric(8, 2), r int4range)')
    sql(conn, f"""insert into "{repo}".u values ('a' || %s, 1.5, '[1,3)'), ('b', null, null), ('it''s', -2, 'empty')""",
        salt)
    v2 = value(conn, "select splitgraph.commit(%s, 'second')", repo)
    return v1, v2


def objects_of(conn, repo, image=None):
    return sorted({o for (ids,) in sql(conn, """select object_ids from splitgraph_meta.tables
                                                where repository = %s and (%s::text is null or image_hash = %s)""",
                                       repo, image, image) for o in ids})


def rows(conn, repo, table):
    return [r[0] for r in sql(conn, f'select t::text from "{repo}".{table} t order by 1')]


def keys_of(s3, object_ids, namespace=PUSHER):
    return sorted(f"{namespace}/{o}.parquet" for o in object_ids)


def bucket_state(s3):
    """{key: (ETag, LastModified)} of the bucket."""
    client = s3.client()
    pages = client.get_paginator("list_objects_v2").paginate(Bucket=BUCKET)
    return {o["Key"]: (o["ETag"], o["LastModified"]) for page in pages for o in page.get("Contents", [])}


def test_push_uploads_objects_and_registers_only_metadata_and_locations(conn, hub, reg, s3):
    repo = f"{PUSHER}/pushed"
    build(conn, repo, salt="pushed")
    wanted = objects_of(conn, repo)
    sql(conn, "select splitgraph.push(%s, 'hub', handler => 'S3', handler_options => '{\"threads\": 3}')", repo)
    # the registry has the history and the objects' metadata and locations, and no rows of them
    assert sql(reg, "select image_hash from splitgraph_meta.images where repository = %s order by 1", repo) == sql(
        conn, "select image_hash from splitgraph_meta.images where repository = %s order by 1", repo)
    assert objects_of(reg, repo) == wanted
    assert not set(wanted) & set(object_tables(reg)), "the registry stores no rows of the objects"
    assert sql(reg, """select object_id, protocol, location from splitgraph_meta.object_locations
                       where object_id = any(%s) order by 1""", wanted) == [
        (o, "S3", f"{PUSHER}/{o}.parquet") for o in wanted]
    assert set(keys_of(s3, wanted)) <= set(s3.keys(BUCKET))
    for o in wanted:  # what the registry recorded of each object is what the pusher has
        assert sql(reg, """select rows_inserted, rows_deleted, insertion_hash, deletion_hash, table_schema
                           from splitgraph_meta.objects where object_id = %s""", o) == sql(
            conn, """select rows_inserted, rows_deleted, insertion_hash, deletion_hash, table_schema
                     from splitgraph_meta.objects where object_id = %s""", o)
        assert s3.get(BUCKET, f"{PUSHER}/{o}.parquet")[:4] == b"PAR1"
    assert sql(conn, "select * from splitgraph.upstream(%s)", repo) == [("hub", repo)]
    # a second push sends nothing, and uploads nothing
    before, bucket_before = metadata(reg), bucket_state(s3)
    time.sleep(1.1)
    sql(conn, "select splitgraph.push(%s, handler => 'S3')", repo)
    assert metadata(reg) == before and bucket_state(s3) == bucket_before


def test_objects_already_in_the_bucket_are_not_uploaded_again(conn, hub, reg, s3):
    first, second = f"{PUSHER}/shared_a", f"{PUSHER}/shared_b"
    build(conn, first, salt="shared")
    sql(conn, "select splitgraph.push(%s, 'hub', handler => 'S3')", first)
    shared = objects_of(conn, first)
    uploaded = {k: v for k, v in bucket_state(s3).items() if k in keys_of(s3, shared)}
    time.sleep(1.1)  # a new upload would change LastModified (one-second resolution)
    build(conn, second, salt="shared")  # the same rows: the same objects
    assert objects_of(conn, second) == shared
    sql(conn, "select splitgraph.push(%s, 'hub', handler => 'S3')", second)
    assert {k: v for k, v in bucket_state(s3).items() if k in uploaded} == uploaded
    assert objects_of(reg, second) == shared


def test_a_failed_push_registers_nothing_and_a_rerun_completes_it(conn, hub, reg, s3):
    repo = f"{PUSHER}/retried"
    build(conn, repo, salt="retried")
    wanted = objects_of(conn, repo)
    before = metadata(reg)
    # uploads that cannot reach the store (URLs signed for a closed port): nothing registered, nothing uploaded
    error = fails(conn, """select splitgraph.push(%s, 'hub', handler => 'S3',
                                                  handler_options => '{"s3_host": "127.0.0.1:9", "threads": 2}')""",
                  repo, sqlstate="58030")
    assert SECRET_KEY not in str(error) and "X-Amz-Signature" not in str(error)
    assert metadata(reg) == before
    assert not set(keys_of(s3, wanted)) & set(s3.keys(BUCKET))
    # every object uploaded, then the registry refuses a later step (a tag named like a branch there): no image
    # is registered, the objects stay in the bucket unregistered
    sql(reg, "select splitgraph.init(%s)", repo)
    sql(reg, "select splitgraph.branch(%s, 'v1', '0000000000000000000000000000000000000000000000000000000000000000')",
        repo)
    before = metadata(reg)
    fails(conn, "select splitgraph.push(%s, 'hub', handler => 'S3')", repo, sqlstate="42710")
    assert metadata(reg) == before
    assert set(keys_of(s3, wanted)) <= set(s3.keys(BUCKET))
    assert value(reg, "select count(*) from splitgraph_meta.objects where object_id = any(%s)", wanted) == 0
    uploaded = {k: v for k, v in bucket_state(s3).items() if k in keys_of(s3, wanted)}
    time.sleep(1.1)
    # the rerun completes the push without uploading again what the bucket has
    sql(reg, "select splitgraph.rm(%s)", repo)
    sql(conn, "select splitgraph.push(%s, 'hub', handler => 'S3')", repo)
    assert {k: v for k, v in bucket_state(s3).items() if k in uploaded} == uploaded
    assert objects_of(reg, repo) == wanted
    assert value(reg, "select count(*) from splitgraph_meta.object_locations where object_id = any(%s)",
                 wanted) == len(wanted)


def test_clone_pull_and_checkout_download_exactly_what_they_need_through_urls(cluster, dbname, conn, hub, reg, s3,
                                                                              registry_db):
    repo = f"{PUSHER}/lazy"
    v1, v2 = build(conn, repo, salt="lazy")
    sql(conn, "select splitgraph.push(%s, 'hub', handler => 'S3')", repo)
    other = other_engine(cluster, dbname, hub, registry_db)
    sql(other, "select splitgraph.clone('hub', %s, 'local/lazy')", repo)
    registered, stored = objects_state(other)
    assert registered == objects_of(conn, repo) and stored == []
    sql(other, "select splitgraph.checkout('local/lazy', 'v1')")
    assert objects_state(other)[1] == objects_of(conn, repo, v1), "exactly v1's objects were downloaded"
    sql(conn, "select splitgraph.checkout(%s, 'v1')", repo)
    assert rows(other, "local/lazy", "t") == rows(conn, repo, "t")
    sql(other, "select splitgraph.checkout('local/lazy', %s)", v2)
    assert objects_state(other)[1] == objects_of(conn, repo)
    sql(conn, "select splitgraph.checkout(%s, %s)", repo, v2)
    for table in ("t", "u"):
        assert rows(other, "local/lazy", table) == rows(conn, repo, table)
    check_every_object(other)
    # the registry still holds no rows: every object came from the bucket
    assert not set(objects_of(conn, repo)) & set(object_tables(reg))

    # clone with download_all; then a new image pulled with download_all brings exactly its new objects
    # (downloads take push's handler_options: threads at a time, and where this engine reaches the store)
    whole = other_engine(cluster, dbname, hub, registry_db)
    for bad in ('{"threads": 0}', '{"threads": 65}', '{"threads": "4"}', '{"thread": 4}', '[]'):
        fails(whole, "select splitgraph.clone('hub', %s, download_all => true, handler_options => %s)", repo, bad,
              sqlstate="22023")
    fails(whole, """select splitgraph.clone('hub', %s, download_all => true,
                                            handler_options => '{"s3_host": "127.0.0.1:9"}')""", repo,
          sqlstate="58030")
    assert objects_state(whole) == ([], []), "a failed clone leaves nothing behind"
    sql(whole, """select splitgraph.clone('hub', %s, download_all => true, handler_options => '{"threads": 3}')""",
        repo)
    assert objects_state(whole)[1] == objects_of(conn, repo)
    sql(conn, f"insert into \"{repo}\".u values ('new', 7, null)")
    v3 = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.push(%s, handler => 'S3')", repo)
    sql(whole, """select splitgraph.pull(%s, download_all => true, handler_options => '{"threads": 1}')""", repo)
    assert objects_state(whole)[1] == objects_of(conn, repo)
    sql(whole, "select splitgraph.checkout(%s, %s)", repo, v3)
    assert rows(whole, repo, "u") == rows(conn, repo, "u")
    check_every_object(whole)
    other.close()
    whole.close()


def test_upload_urls_only_for_namespaces_the_role_may_write(cluster, dbname, conn, hub, reg, s3, registry_db):
    repo = f"{PUSHER}/mine"
    build(conn, repo, salt="mine")
    ids = objects_of(conn, repo)
    before, keys = metadata(reg), s3.keys(BUCKET)
    # a push to another namespace: refused before anything is uploaded or registered
    fails(conn, "select splitgraph.push(%s, 'hub', 'someone/else', handler => 'S3')", repo, sqlstate="42501")
    assert metadata(reg) == before and s3.keys(BUCKET) == keys
    with connect_as(hub, registry_db, PUSHER, PASSWORD) as pusher:
        fails(pusher, "select splitgraph.get_object_upload_urls(null, %s, 'someone')", ids, sqlstate="42501")
        fails(pusher, """insert into splitgraph_remote.object_urls (repository, method, object_ids)
                         values ('someone/else', 'PUT', %s) returning urls""", ids, sqlstate="42501")
        urls = value(pusher, """insert into splitgraph_remote.object_urls (repository, method, object_ids)
                                values (%s, 'PUT', %s) returning urls""", f"{PUSHER}/x", ids)
        assert len(urls) == len(ids) and all(f"/{BUCKET}/{PUSHER}/" in u for u in urls)
        # nobody registers objects in the bucket for another namespace, nor ones that are not there
        fails(pusher, """insert into splitgraph_remote.requests (repository, kind, payload)
                         values ('someone/else', 'located', '{"objects": []}')""", sqlstate="42501")
        meta = value(conn, "select splitgraph_internal.object_metadata(%s)::jsonb", ids)
        fails(pusher, """insert into splitgraph_remote.requests (repository, kind, payload)
                         values (%s, 'located', jsonb_build_object('objects', %s::jsonb))""",
              f"{PUSHER}/x", driver.Jsonb(meta), sqlstate="58030")
        # metadata that does not hash to its id is refused
        forged = meta[0]["insertion_hash"]
        meta[0]["insertion_hash"] = ("1" if forged[0] != "1" else "2") + forged[1:]
        fails(pusher, """insert into splitgraph_remote.requests (repository, kind, payload)
                         values (%s, 'located', jsonb_build_object('objects', %s::jsonb))""",
              f"{PUSHER}/x", driver.Jsonb(meta), sqlstate="XX001")
        # the role cannot read the store's configuration
        fails(pusher, "select secret_key from splitgraph_meta.object_storage", sqlstate="42501")
    assert metadata(reg) == before


def test_a_tampered_object_in_the_bucket_is_refused_and_registers_nothing(cluster, dbname, conn, hub, reg, s3,
                                                                         registry_db):
    repo = f"{PUSHER}/tampered"
    build(conn, repo, salt="tampered")
    sql(conn, "select splitgraph.push(%s, 'hub', handler => 'S3')", repo)
    victim = objects_of(conn, repo)[0]
    key = f"{PUSHER}/{victim}.parquet"
    # another object's file put in its place: a valid Parquet file of an object, but not of this one
    donor = next(o for o in objects_of(conn, repo) if o != victim)
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=s3.get(BUCKET, f"{PUSHER}/{donor}.parquet"))
    other = other_engine(cluster, dbname, hub, registry_db)
    before = metadata(other)
    fails(other, "select splitgraph.clone('hub', %s, download_all => true)", repo, sqlstate="XX001")
    assert metadata(other) == before and objects_state(other) == ([], [])
    # flipped bytes in a lazily cloned object: the checkout is refused and stores nothing
    original = s3.get(BUCKET, f"{PUSHER}/{donor}.parquet")
    s3.client().put_object(Bucket=BUCKET, Key=key, Body=original[:100] + bytes([original[100] ^ 1]) + original[101:])
    sql(other, "select splitgraph.clone('hub', %s)", repo)
    before = metadata(other)
    fails(other, "select splitgraph.checkout(%s, 'v1')", repo, sqlstate="XX001")
    assert metadata(other) == before and objects_state(other)[1] == []
    other.close()


def test_the_secret_key_never_shows(cluster, dbname, conn, hub, reg, s3, registry_db):
    repo = f"{PUSHER}/secret"
    build(conn, repo, salt="secret")
    notices = []
    conn.add_notice_handler(lambda d: notices.append(str(d.message_primary) + str(d.message_detail)))
    sql(conn, "select splitgraph.push(%s, 'hub', handler => 'S3')", repo)
    error = fails(conn, "select splitgraph.push(%s, 'hub', 'x/y', handler => 'S3')", repo)
    with connect_as(hub, registry_db, PUSHER, PASSWORD) as pusher:
        urls = value(pusher, "select splitgraph.get_object_download_urls(null, %s)", objects_of(conn, repo))
        shown = [str(error), error.diag.message_detail or "", error.diag.message_hint or ""] + notices
        shown += [u for (u,) in urls]
        for relation in ("pg_settings", "pg_roles", "pg_stat_activity"):
            shown += [r[0] for r in sql(pusher, f"select t::text from {relation} t")]
        shown += [r[0] for r in sql(pusher, "select t::text from pg_proc t where proconfig is not null")]
    shown += [r[0] for r in sql(conn, "select t::text from splitgraph_meta.object_locations t")]
    assert notices and not [s for s in shown if SECRET_KEY in s]
