"""Issue 12: objects in an S3-compatible store (moto on loopback). The registry signs pre-signed URLs with the
minio client inside the engine; a role gets upload URLs only for namespaces it may write; objects go up as Parquet
files and come back verified; cleanup() deletes from the bucket exactly the objects no image references; the secret
key can be read back by nobody."""
import itertools
import random
import urllib.parse

import psycopg2
import pytest

from conftest import sql, value
from support import driver  # noqa: E402
from support.s3 import ACCESS_KEY, SECRET_KEY

_buckets = itertools.count(1)


@pytest.fixture
def bucket(s3):
    return s3.create_bucket(f"sg-bucket-{next(_buckets)}")


@pytest.fixture
def registry(conn, s3, bucket):
    """The module's database as a registry whose objects go to a fresh bucket."""
    sql(conn, "select splitgraph.configure_s3(%s, %s, %s, %s)", s3.endpoint, ACCESS_KEY, SECRET_KEY, bucket)
    return conn


@pytest.fixture
def other(cluster, dbname, request):
    name = f"{dbname}_{request.node.name}"[:63]
    cluster.create_database(name)
    with driver.connect(cluster.dsn(name), autocommit=True) as c:
        yield c


_repos = itertools.count(1)


def new_image(conn, rows=25, chunk_size=10):
    """A fresh repository with one table committed in chunks; returns (repository, image, object ids)."""
    repo = f"s3/r{next(_repos)}"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text, at timestamptz)')
    sql(conn, f"""insert into "{repo}".t
                  select i, %s || ' ' || i, '2020-01-01 00:00+00'::timestamptz + i * interval '1 h'
                  from generate_series(1, {rows}) i""", repo)
    image = value(conn, "select splitgraph.commit(%s, chunk_size => %s)", repo, chunk_size)
    return repo, image, value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image)["objects"]


def upload(conn, object_ids, namespace=None):
    """Upload objects through upload URLs (as the connection's role); returns the URLs."""
    urls = value(conn, "select splitgraph.get_object_upload_urls(null, %s, %s)", object_ids, namespace)
    sql(conn, "select splitgraph_internal.s3_put_objects(%s, %s, 2)", object_ids, [u[0] for u in urls])
    return urls


def register_locations(conn, object_ids, namespace):
    """What a push with handler S3 does on the registry (part 2 of the issue): record where each object is."""
    sql(conn, """insert into splitgraph_meta.object_locations (object_id, location, protocol)
                 select id, %s || '/' || id || '.parquet', 'S3' from unnest(%s::text[]) id""", namespace, object_ids)


def test_upload_urls_are_signed_for_the_callers_namespace(registry, s3, bucket):
    _, _, objects = new_image(registry)
    urls = value(registry, "select splitgraph.get_object_upload_urls(null, %s, 'acme')", objects)
    assert len(urls) == len(objects) and all(len(u) == 1 for u in urls)
    for object_id, (url,) in zip(objects, urls, strict=True):
        parts = urllib.parse.urlsplit(url)
        query = urllib.parse.parse_qs(parts.query)
        assert parts.netloc == s3.endpoint and parts.path == f"/{bucket}/acme/{object_id}.parquet"
        assert query["X-Amz-Expires"] == ["900"] and "X-Amz-Signature" in query
        assert SECRET_KEY not in url
    other_host = value(registry, "select splitgraph.get_object_upload_urls('store.example:9000', %s, 'acme')",
                       objects[:1])
    assert urllib.parse.urlsplit(other_host[0][0]).netloc == "store.example:9000"


def test_objects_go_up_as_parquet_and_come_back_verified(registry, other, s3, bucket):
    _, _, objects = new_image(registry)
    upload(registry, objects, "acme")
    assert s3.keys(bucket) == sorted(f"acme/{o}.parquet" for o in objects)
    assert all(s3.get(bucket, f"acme/{o}.parquet")[:4] == b"PAR1" for o in objects)
    register_locations(registry, objects, "acme")
    urls = value(registry, "select splitgraph.get_object_download_urls(null, %s)", objects)
    loaded = value(other, "select splitgraph_internal.s3_get_objects(%s, %s, 3)", objects, [u[0] for u in urls])
    assert loaded == objects
    for o in objects:
        assert sql(other, f'select f::text from splitgraph_meta."{o}" f order by 1') == \
            sql(registry, f'select f::text from splitgraph_meta."{o}" f order by 1')


def test_a_tampered_object_in_the_store_is_refused(registry, other, s3, bucket):
    _, _, objects = new_image(registry, rows=5)
    upload(registry, objects, "acme")
    register_locations(registry, objects, "acme")
    good = s3.get(bucket, f"acme/{objects[0]}.parquet")
    _, _, decoy = new_image(registry, rows=6)
    s3.client().put_object(Bucket=bucket, Key=f"acme/{objects[0]}.parquet",
                           Body=bytes(value(registry, "select splitgraph.dump_object(%s, 'parquet')", decoy[0])))
    urls = value(registry, "select splitgraph.get_object_download_urls(null, %s)", objects)
    with pytest.raises(psycopg2.Error) as error:
        sql(other, "select splitgraph_internal.s3_get_objects(%s, %s, 2)", objects, [u[0] for u in urls])
    assert error.value.pgcode == "XX001"
    assert value(other, "select count(*) from splitgraph_meta.objects") == 0
    assert good[:4] == b"PAR1"


def test_download_urls_only_for_objects_in_the_store(registry):
    _, _, objects = new_image(registry, rows=3)
    with pytest.raises(psycopg2.Error) as error:
        sql(registry, "select splitgraph.get_object_download_urls(null, %s)", objects)
    assert error.value.pgcode == "42704"


def test_a_failed_transfer_names_the_object_and_hides_the_signature(registry, bucket):
    _, _, objects = new_image(registry, rows=3)
    urls = value(registry, "select splitgraph.get_object_upload_urls(null, %s, 'acme')", objects)
    broken = [u[0].replace(f"/{bucket}/", "/no-such-bucket/") for u in urls]  # (moto checks no signature)
    with pytest.raises(psycopg2.Error) as error:
        sql(registry, "select splitgraph_internal.s3_put_objects(%s, %s, 2)", objects, broken)
    assert error.value.pgcode == "58030" and objects[0] in str(error.value)
    assert "Signature=" not in str(error.value) + str(error.value.diag.message_detail)


def test_roles_get_upload_urls_only_for_namespaces_they_may_write(registry, roles):
    _, _, objects = new_image(registry, rows=3)
    alice, bob = roles.new("alice"), roles.new("bob")
    mine = value(alice.conn, "select splitgraph.get_object_upload_urls(null, %s)", objects)
    assert all(f"/{alice.name}/" in u[0] for u in mine)
    for namespace in (bob.name, "acme"):
        with pytest.raises(psycopg2.Error) as error:
            sql(alice.conn, "select splitgraph.get_object_upload_urls(null, %s, %s)", objects, namespace)
        assert error.value.pgcode == "42501"
    # every role may read every repository: download URLs for any object in the store
    register_locations(registry, objects, "acme")
    assert len(value(bob.conn, "select splitgraph.get_object_download_urls(null, %s)", objects)) == len(objects)


def test_cleanup_deletes_from_the_bucket_exactly_the_unreferenced_objects(registry, s3, bucket):
    _, _, kept = new_image(registry)
    gone_repo, _, gone = new_image(registry, rows=31)
    assert not set(kept) & set(gone)
    upload(registry, kept + gone, "acme")
    register_locations(registry, kept + gone, "acme")
    stray = "acme/o" + "0" * 62 + ".parquet"  # in the bucket, but no object of this engine: not cleanup's
    s3.client().put_object(Bucket=bucket, Key=stray, Body=b"x")
    sql(registry, "select splitgraph.rm(%s, force => true)", gone_repo)
    deleted = value(registry, "select splitgraph.cleanup()")
    assert deleted >= len(gone)
    assert s3.keys(bucket) == sorted([f"acme/{o}.parquet" for o in kept] + [stray])
    assert value(registry, "select count(*) from splitgraph_meta.object_locations where object_id = any(%s)",
                 kept) == len(kept)


def test_configure_s3_is_for_the_owner_only(registry, roles, s3):
    role = roles.new("mallory")
    with pytest.raises(psycopg2.Error) as error:
        sql(role.conn, "select splitgraph.configure_s3(%s, 'k', 's', 'bucket')", s3.endpoint)
    assert error.value.pgcode == "42501"
    for args, state in [(("http://h:1", "k", "s", "bucket"), "22023"), (("h:1", "k", "s", "ab"), "22023"),
                        (("h:1", "k", "s", "Bucket"), "22023"), (("h:1", "", "s", "bucket"), "22023")]:
        with pytest.raises(psycopg2.Error) as error:
            sql(registry, "select splitgraph.configure_s3(%s, %s, %s, %s)", *args)
        assert error.value.pgcode == state


def test_nobody_reads_the_secret_back(cluster, registry, roles, s3, bucket):
    """Not through a function result, an error, a notice, pg_settings, pg_proc.proconfig, a readable table or
    the server log (at default settings), even after failed calls that held it."""
    role = roles.new("eve")
    c = role.conn
    notices = []
    c.add_notice_handler(lambda d: notices.append(str(d.message_primary) + str(d.message_detail)))
    registry.add_notice_handler(lambda d: notices.append(str(d.message_primary) + str(d.message_detail)))
    _, _, objects = new_image(registry, rows=3)
    texts = []
    # failed calls holding the secret, as the owner and as another role
    for conn in (registry, c):
        for args in [("h:1", ACCESS_KEY, SECRET_KEY, "no"), (None, ACCESS_KEY, SECRET_KEY, bucket),
                     ("h:1", ACCESS_KEY, SECRET_KEY, bucket)]:
            try:
                sql(conn, "select splitgraph.configure_s3(%s, %s, %s, %s)", *args)
            except psycopg2.Error as error:
                texts += [str(error), str(error.diag.message_detail), str(error.diag.message_hint)]
    sql(registry, "select splitgraph.configure_s3(%s, %s, %s, %s)", s3.endpoint, ACCESS_KEY, SECRET_KEY, bucket)
    texts.append(str(sql(c, "select splitgraph.get_object_upload_urls(null, %s)", objects)))
    texts.append(str(sql(c, "select * from pg_settings")))
    texts.append(str(sql(c, "select proname, proconfig, prosrc from pg_proc")))
    readable = sql(c, """select format('%%I.%%I', n.nspname, c.relname) from pg_class c
                         join pg_namespace n on n.oid = c.relnamespace
                         where c.relkind in ('r', 'v', 'm', 'f', 'p')
                           and has_schema_privilege(n.oid, 'USAGE') and has_table_privilege(c.oid, 'SELECT')""")
    assert readable
    for (relation,) in readable:
        try:
            texts.append(str(sql(c, f"select t::text from {relation} t")))
        except psycopg2.Error as error:
            texts.append(str(error))
    for text in texts + notices:
        assert SECRET_KEY not in text
    log = (cluster.dir / "server.log").read_text(errors="replace")
    assert "configure_s3" in log or "invalid" in log  # the failed calls were logged, without their text
    assert SECRET_KEY not in log
    with pytest.raises(psycopg2.Error):
        sql(c, "select secret_key from splitgraph_meta.object_storage")


def test_which_keys_the_bucket_holds_from_listings(conn):
    """A push asks which of its objects' keys the bucket holds by listing the bucket from the first key not yet
    decided (storage.listed_keys), restarting after each page: against a store of sorted keys that answers
    listings as S3 does (after start_after, under the prefix, a page at a time), every key is decided right,
    whatever the page size, and never with more listings than keys."""
    sql(conn, """create function pg_temp.listed(names text[], keys text[], page int) returns jsonb
                 language plpython3u as $$
        import json
        plpy.execute("select splitgraph_internal.python_init()")
        from splitgraph_pl import storage
        class Item:
            def __init__(self, name):
                self.object_name = name
        class Store:
            requests = 0
            def list_objects(self, bucket, prefix=None, recursive=False, start_after=None):
                assert bucket == "b" and recursive
                self.requests += 1
                for name in sorted(names):
                    if (prefix is None or name.startswith(prefix)) and (start_after is None or name > start_after):
                        yield Item(name)
        store = Store()
        found = storage.listed_keys(store, "b", sorted(keys), page=page)
        return json.dumps({"found": sorted(found), "requests": store.requests})
    $$""")

    def listed(names, keys, page):
        return value(conn, "select pg_temp.listed(%s, %s, %s)", names, keys, page)

    for page in (1, 3, 50, 1000):
        for seed in (1, 2):
            rng = random.Random(seed)
            names = sorted({f"ns/o{rng.getrandbits(248):062x}.parquet" for _ in range(300)}
                           | {f"nt/o{rng.getrandbits(248):062x}.parquet" for _ in range(20)})
            ns = [n for n in names if n.startswith("ns/")]
            for size in (1, 2, 7, 40, 300):
                present = rng.sample(ns, min(size, len(ns)))
                absent = [f"ns/o{rng.getrandbits(248):062x}.parquet" for _ in range(size)]
                keys = sorted(set(present) | set(absent))
                got = listed(names, keys, page)
                assert got["found"] == sorted(present), f"page {page}, {size} keys: wrong answer"
                assert got["requests"] <= len(keys), f"page {page}, {size} keys: {got['requests']} listings"
    # names the engine never writes, sorted between a key's start and the key itself: listings move past them
    key = "ns/o" + "a" * 62 + ".parquet"
    names = [key[:-1] + f"a{i:04d}" for i in range(50)] + [key]
    for page in (1, 7):
        got = listed(names, [key, "ns/o" + "b" * 62 + ".parquet"], page)
        assert got["found"] == [key]
        assert got["requests"] <= 51 // page + 2
