"""Object storage: the S3-compatible store of a registry (configure_s3), pre-signed URLs signed inside the engine
(get_object_upload_urls, get_object_download_urls), moving objects through such URLs (put_objects, get_objects),
deleting unused objects from the bucket (remove_keys, for cleanup), and external handlers
(register_external_handler, upload_with, download_with).

Objects travel as Parquet files (dump_object(id, 'parquet')) under the key "<namespace>/<object id>.parquet" of
the configured bucket: a role may get upload URLs only for keys of namespaces it may write, so no role can
overwrite another namespace's objects. The secret key never leaves the engine: it is read only here, to sign
URLs and to delete keys, and no result, error or notice carries it. The client side (put_objects, get_objects,
upload_with, download_with) runs with its caller's rights and reaches objects only through dump_object and
load_object, which verifies every object it stores.
"""
import concurrent.futures
import datetime
import json
import re
import urllib.parse
import xml.etree.ElementTree as ElementTree

from . import db, errors, lazy, meta, names
from .declare import api, helper

minio = lazy.Module("minio")
minio_error = lazy.Module("minio.error")
minio_deleteobjects = lazy.Module("minio.deleteobjects")
urllib3 = lazy.Module("urllib3")

STORAGE = "splitgraph_meta.object_storage"
PROTOCOL = "S3"
# How long a pre-signed URL stays valid: enough for a batch of objects, short enough to be of little use later.
URL_EXPIRY = datetime.timedelta(minutes=15)
# Objects one call may ask URLs for.
MAX_URLS = 10000
# HTTP: connection and read timeouts (seconds) and retries of failed connections and 5xx answers (what _http passes
# to urllib3).
TIMEOUT = {"connect": 10, "read": 300}
RETRIES = {"total": 3, "backoff_factor": 0.2, "status_forcelist": (500, 502, 503, 504),
           "allowed_methods": frozenset({"GET", "PUT"}), "raise_on_status": False}
IO_ERROR = "58030"
# Downloaded objects loaded (verified) together: at most this many, or this many bytes of files.
LOAD_BATCH = 64
LOAD_BATCH_BYTES = 256 << 20
# Listings of the bucket the registry makes at once to see which objects a push need not upload (or has uploaded),
# the fewest keys one of them decides, and the keys a page of a listing holds (S3's and MinIO's default).
STAT_THREADS = 8
LIST_RUN = 256
LIST_PAGE = 1000

_HOST = re.compile(r"(?:[A-Za-z0-9](?:[A-Za-z0-9.-]{0,251}[A-Za-z0-9])?|\[[0-9A-Fa-f:.]{2,45}\])(?::[0-9]{1,5})?")
_BUCKET = re.compile(r"[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]")
_REGION = re.compile(r"[a-z0-9-]{1,32}")
_NAMESPACE = re.compile(r"[A-Za-z0-9_-]{1,64}")
_OBJECT_ID = re.compile(r"o[0-9a-f]{62}")
_HANDLER = re.compile(r"[A-Za-z][A-Za-z0-9_-]{0,62}")
BUILT_IN_HANDLERS = ("DB", "S3")


def key_of(namespace, object_id):
    """The key of an object pushed to a namespace."""
    return f"{namespace}/{object_id}.parquet" if namespace else f"{object_id}.parquet"


# ---------------------------------------------------------------------------------------------------------------
# The registry side: configuration and URLs
# ---------------------------------------------------------------------------------------------------------------

@api("configure_s3(endpoint text, access_key text, secret_key text, bucket text, secure boolean default false, "
     "region text default 'us-east-1') returns void",
     "configure_s3(endpoint, access_key, secret_key, bucket, secure, region): where this engine (a registry) keeps "
     "objects: an S3-compatible server (host[:port]) and bucket; owner only, and the secret key is never shown back",
     settings={"log_min_error_statement": "panic"})
def configure_s3(plpy, endpoint, access_key, secret_key, bucket, secure=False, region="us-east-1"):
    """Store the configuration. Nothing here echoes an argument but the endpoint, bucket and region, and the door
    keeps the text of a failed call out of the server log (log_min_error_statement = panic)."""
    if not meta.caller_is_admin(plpy):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    "only superusers and the extension's owner may configure object storage")
    if not _HOST.fullmatch(endpoint):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"invalid endpoint {endpoint!r}",
                    hint="give host or host:port, without a scheme or path (secure chooses https)")
    if not _BUCKET.fullmatch(bucket) or ".." in bucket:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"invalid bucket name {bucket!r}",
                    hint="3 to 63 lower-case letters, digits, dots and hyphens, starting and ending with a letter "
                         "or digit")
    if region is None or not _REGION.fullmatch(region):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"invalid region {region!r}",
                    hint="lower-case letters, digits and hyphens, such as us-east-1")
    if not access_key or not secret_key or len(access_key) > 128 or len(secret_key) > 256:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                    "the access key and the secret key must be non-empty (at most 128 and 256 characters)")
    db.run(plpy, f"""insert into {STORAGE} (endpoint, access_key, secret_key, bucket, secure, region)
                     values ($1, $2, $3, $4, $5, $6)
                     on conflict (singleton) do update
                     set endpoint = excluded.endpoint, access_key = excluded.access_key,
                         secret_key = excluded.secret_key, bucket = excluded.bucket, secure = excluded.secure,
                         region = excluded.region""",
           endpoint, access_key, secret_key, bucket, bool(secure), region)


def _configuration(plpy):
    row = db.one(plpy, f"select endpoint, access_key, secret_key, bucket, secure, region from {STORAGE}")
    if row is None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, "object storage is not configured on this engine",
                    hint="the engine's owner configures it with splitgraph.configure_s3")
    return row


def _client(plpy, config, s3_host=None):
    """A minio client for the configured store, at s3_host (how the caller reaches it) when given. Signing URLs
    needs no request: the region is given."""
    if s3_host is not None and not _HOST.fullmatch(s3_host):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"invalid s3_host {s3_host!r}",
                    hint="give host or host:port, or null for the configured endpoint")
    return minio.Minio(s3_host or config["endpoint"], access_key=config["access_key"],
                       secret_key=config["secret_key"], secure=config["secure"], region=config["region"])


def _object_ids(plpy, object_ids):
    ids = list(object_ids or [])
    bad = [o for o in ids if o is None or not _OBJECT_ID.fullmatch(o)]
    if bad:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"invalid object id {bad[0]!r}")
    if len(ids) > MAX_URLS:
        errors.fail(plpy, errors.PROGRAM_LIMIT_EXCEEDED, f"{len(ids)} objects in one call; at most {MAX_URLS}",
                    hint="ask for the URLs in batches")
    return ids


@api("get_object_upload_urls(s3_host text, object_ids text[], namespace text default null) returns text[]",
     "get_object_upload_urls(s3_host, object_ids, namespace): for each object, its pre-signed PUT URLs (one: "
     "objects are one Parquet file), for the key of the namespace (default: the caller's own), which the caller "
     "must be allowed to write; s3_host: how the caller reaches the store (null: the configured endpoint)",
     volatility="stable", nullable=("s3_host",))
def get_object_upload_urls(plpy, s3_host, object_ids, namespace=None):
    if namespace is None:
        namespace = db.scalar(plpy, "select session_user::text")
    if not _NAMESPACE.fullmatch(namespace):
        errors.fail(plpy, errors.INVALID_NAME, f"invalid namespace {namespace!r}",
                    hint="letters, digits, - and _, at most 64 characters (name a namespace to upload to)")
    if not meta.may_write_namespace(plpy, namespace):
        user = db.scalar(plpy, "select session_user::text")
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f'role "{user}" may not upload objects to namespace "{namespace}"',
                    hint="a role writes to the namespace named like it")
    ids = _object_ids(plpy, object_ids)
    config = _configuration(plpy)
    client = _client(plpy, config, s3_host)
    return [[client.presigned_put_object(config["bucket"], key_of(namespace, o), expires=URL_EXPIRY)] for o in ids]


@api("get_object_download_urls(s3_host text, object_ids text[]) returns text[]",
     "get_object_download_urls(s3_host, object_ids): for each object kept in object storage, its pre-signed GET "
     "URLs (one per stored part); s3_host: how the caller reaches the store (null: the configured endpoint)",
     volatility="stable", nullable=("s3_host",))
def get_object_download_urls(plpy, s3_host, object_ids):
    ids = _object_ids(plpy, object_ids)
    rows = db.run(plpy, """
        select u.id, l.location from pg_catalog.unnest($1::text[]) with ordinality as u (id, n)
        left join splitgraph_meta.object_locations l on l.object_id = u.id and l.protocol = $2
        order by u.n""", ids, PROTOCOL)
    missing = [r["id"] for r in rows if r["location"] is None]
    if missing:
        errors.fail(plpy, errors.UNDEFINED_OBJECT,
                    f"{len(missing)} object(s) are not kept in object storage here, such as {missing[0]}",
                    hint="push them with handler S3 first")
    config = _configuration(plpy)
    client = _client(plpy, config, s3_host)
    return [[client.presigned_get_object(config["bucket"], r["location"], expires=URL_EXPIRY)] for r in rows]


def locations_of(plpy, object_ids):
    """{object id: key} of the objects kept in object storage."""
    return {r["object_id"]: r["location"] for r in db.run(plpy, """
        select object_id, location from splitgraph_meta.object_locations
        where object_id = any($1::text[]) and protocol = $2""", list(object_ids), PROTOCOL)}


def record_locations(plpy, namespace, object_ids):
    """Record that registered objects are kept in the bucket under the namespace's keys (a push with handler S3
    registers its objects so; an object kept somewhere already keeps its location)."""
    db.run(plpy, """insert into splitgraph_meta.object_locations (object_id, location, protocol)
                    select u.id, $2 || u.id || '.parquet', $3 from pg_catalog.unnest($1::text[]) u (id)
                    on conflict (object_id) do nothing""",
           list(object_ids), f"{namespace}/" if namespace else "", PROTOCOL)


def _folder(key):
    """A key's prefix up to its last "/" ("" for none): the namespace's folder of an object's key."""
    return key[:key.rindex("/") + 1] if "/" in key else ""


def listed_keys(client, bucket, keys, page=LIST_PAGE):
    """Which of `keys` (sorted, all with the same prefix up to their last "/") the bucket holds, by listing the
    bucket from the first key not yet decided: a key absent from a listing that passes it is not in the bucket.
    A listing restarts at the next undecided key after each page (`page` keys), so, while the bucket holds only
    keys of objects, it costs at most one request per key, and one in all when the keys are the namespace's last
    ones (a push's new objects). Each listing
    starts after the last name listed before, when that lies past the undecided key's start: a bucket holding
    other names (written there by other means) between two keys costs listings, never a listing again."""
    prefix = _folder(keys[0]) or None
    found, i, last = set(), 0, None
    while i < len(keys):
        listed = 0
        start = keys[i][:-1] if last is None or last < keys[i][:-1] else last
        for item in client.list_objects(bucket, prefix=prefix, recursive=True, start_after=start):
            name = last = item.object_name
            while i < len(keys) and keys[i] < name:
                i += 1
            if i < len(keys) and keys[i] == name:
                found.add(name)
                i += 1
            listed += 1
            if i == len(keys) or listed >= page:
                break
        else:  # the listing ended: no later key is in the bucket
            i = len(keys)
    return found


def _in_bucket(plpy, config, keys):
    """The keys (of those given) the bucket holds, from listings of the bucket (one LIST request answers for up
    to a page of keys, where a HEAD request answers for one), from this engine to the store at its configured
    endpoint: the keys of each namespace, sorted, in up to STAT_THREADS runs of at least LIST_RUN keys listed at
    once. A store that cannot be reached fails the call (58030)."""
    if not keys:
        return set()
    client = _client(plpy, config)
    by_prefix = {}
    for key in sorted(set(keys)):
        by_prefix.setdefault(_folder(key), []).append(key)
    runs = []
    for group in by_prefix.values():
        n = max(1, min(STAT_THREADS, len(group) // LIST_RUN))
        step = -(-len(group) // n)
        runs += [group[i:i + step] for i in range(0, len(group), step)]
    try:
        with concurrent.futures.ThreadPoolExecutor(min(STAT_THREADS, len(runs)),
                                                   initializer=db.quiet_thread) as executor:
            found = set().union(*executor.map(lambda run: listed_keys(client, config["bucket"], run), runs))
    except (minio_error.MinioException, urllib3.exceptions.HTTPError, OSError) as error:
        code = getattr(error, "code", None) or type(error).__name__
        errors.fail(plpy, IO_ERROR, f"could not reach the object store of this engine ({code})",
                    hint="check the configuration (configure_s3) and that the store is up")
    return found & set(keys)


def stored_here(plpy, object_ids):
    """The objects (of those given) whose rows this engine stores."""
    return set(db.column(plpy, """
        select u.id from pg_catalog.unnest($1::text[]) u (id)
        where pg_catalog.to_regclass(pg_catalog.format('splitgraph_meta.%I', u.id)) is not null""", list(object_ids)))


@helper("object_urls(repository text, method text, s3_host text, object_ids text[]) returns text[]",
        "object_urls(repository, method, s3_host, object_ids): the trigger of splitgraph_remote.object_urls: GET "
        "URLs of objects kept in object storage, or PUT URLs for a push to repository (null for an object this "
        "engine has already: in the bucket or stored), which the session's user must be allowed to write")
def object_urls(plpy, repository, method, s3_host, object_ids):
    if method == "GET":
        return [u[0] for u in get_object_download_urls(plpy, s3_host, object_ids)]
    if method != "PUT":
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"unknown method {method!r}", hint="PUT or GET")
    repo = names.repository(plpy, repository)
    meta.check_write(plpy, repo)
    namespace = names.namespace_of(repo)
    ids = _object_ids(plpy, object_ids)
    config = _configuration(plpy)
    have = set(locations_of(plpy, ids)) | stored_here(plpy, ids)
    keys = {o: key_of(namespace, o) for o in ids if o not in have}
    present = _in_bucket(plpy, config, list(keys.values()))
    have |= {o for o, k in keys.items() if k in present}
    client = _client(plpy, config, s3_host)
    return [None if o in have else client.presigned_put_object(config["bucket"], key_of(namespace, o),
                                                               expires=URL_EXPIRY) for o in ids]


def register_located(plpy, namespace, metadata):
    """The remote side of a push with handler S3: register objects (metadata checked by the caller to hash to
    their ids) that were uploaded to the bucket under the namespace's keys, with their locations; each must be
    in the bucket (or kept here already), else the push fails (58030) and registers nothing. Objects registered
    here already keep their metadata."""
    ids = [m["object_id"] for m in metadata]
    if not ids:
        return
    config = _configuration(plpy)
    have = set(locations_of(plpy, ids)) | stored_here(plpy, ids)
    keys = {o: key_of(namespace, o) for o in ids if o not in have}
    present = _in_bucket(plpy, config, list(keys.values()))
    absent = sorted(o for o, k in keys.items() if k not in present)
    if absent:
        errors.fail(plpy, IO_ERROR, f"{len(absent)} object(s) pushed with handler S3 are not in the bucket, such as "
                                    f"{absent[0]}", hint="push again: the upload did not complete")
    db.run(plpy, """
        insert into splitgraph_meta.objects (object_id, namespace, rows_inserted, rows_deleted, insertion_hash,
                                             deletion_hash, index, table_schema)
        select x.object_id, $2, x.rows_inserted, x.rows_deleted, x.insertion_hash, x.deletion_hash, x.index,
               x.table_schema
        from pg_catalog.jsonb_to_recordset($1::jsonb)
             as x (object_id text, rows_inserted bigint, rows_deleted bigint, insertion_hash text, deletion_hash text,
                   index jsonb, table_schema jsonb)
        order by x.object_id
        on conflict (object_id) do nothing""", db.Json(metadata), namespace)
    record_locations(plpy, namespace, sorted(keys))


def remove_keys(plpy, keys):
    """Delete keys from the bucket (cleanup, for objects it has just deleted); a failure is reported in a notice
    (the key stays, unreferenced) and never fails the call."""
    if not keys:
        return
    config = db.one(plpy, f"select endpoint, access_key, secret_key, bucket, secure, region from {STORAGE}")
    if config is None:
        db.notice(plpy, f"object storage is not configured: {len(keys)} object(s) stay in its bucket")
        return
    try:
        client = _client(plpy, config)
        deletes = [minio_deleteobjects.DeleteObject(k) for k in keys]
        failed = [e.name for e in client.remove_objects(config["bucket"], deletes)]
    except Exception as error:  # noqa: BLE001 - the store is another system: report, keep the database's work
        failed = list(keys)
        db.notice(plpy, f"could not delete objects from the bucket: {type(error).__name__}")
    if failed:
        db.notice(plpy, f"{len(failed)} object(s) stay in the bucket, unreferenced: " + ", ".join(failed[:5])
                  + (", ..." if len(failed) > 5 else ""))
    else:
        db.notice(plpy, f"deleted {len(keys)} object(s) from the bucket")


# ---------------------------------------------------------------------------------------------------------------
# The client side: moving objects through pre-signed URLs, N at a time
# ---------------------------------------------------------------------------------------------------------------

def _shown(url):
    """A URL without its query: a pre-signed URL's signature is a credential, and never shown."""
    return urllib.parse.urlsplit(url)._replace(query="", fragment="").geturl()


def _check_urls(plpy, object_ids, urls):
    if len(object_ids) != len(urls):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "give one URL per object")
    for url in urls:
        parts = urllib.parse.urlsplit(url or "")
        if parts.scheme not in ("http", "https") or not parts.netloc:
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"not an http(s) URL: {_shown(url or '')!r}")


def _answer_error(response):
    """What an S3 error answer says (its Code and Message), without the rest of it."""
    try:
        root = ElementTree.fromstring(response.data)
        return " ".join(t for t in (root.findtext("Code"), root.findtext("Message")) if t)[:300]
    except ElementTree.ParseError:
        return ""


def _request(pool, method, url, body=None):
    headers = {"Content-Type": "application/octet-stream"} if method == "PUT" else {}
    response = pool.request(method, url, body=body, headers=headers, timeout=urllib3.Timeout(**TIMEOUT),
                            retries=urllib3.Retry(**RETRIES), preload_content=True)
    if not 200 <= response.status < 300:
        raise _Failed(f"HTTP {response.status} {_answer_error(response)}".strip())
    return response.data


class _Failed(Exception):
    pass


_QUERY = re.compile(r"\?[^\s'\"()]*")


def _transfer_failed(plpy, what, object_id, url, error):
    # an HTTP library's error may quote the URL: its query (the signature) is cut out
    shown = _QUERY.sub("?...", str(error))
    errors.fail(plpy, IO_ERROR, f"{what} object {object_id} failed: {shown}",
                detail=f"URL {_shown(url)} (signature not shown)",
                hint="check that the store is reachable from this engine and the URLs have not expired, then retry")


def put_objects(plpy, object_ids, urls, threads=4):
    """Upload local objects as Parquet files through pre-signed PUT URLs (one per object), `threads` at a time.
    The objects are dumped 2 * threads at a time through dump_parquet_objects (as dump_object), so this runs with
    any rights, while the last ones upload. Fails (58030) naming the first
    object that could not be uploaded; the others may be in the store already (a rerun uploads them again)."""
    _check_urls(plpy, object_ids, urls)
    threads = max(1, min(int(threads or 1), 64))
    pool = urllib3.PoolManager(maxsize=threads)
    with concurrent.futures.ThreadPoolExecutor(threads, initializer=db.quiet_thread) as executor:
        pending = []
        try:
            done = 0
            for start in range(0, len(object_ids), 2 * threads):
                batch = object_ids[start:start + 2 * threads]
                dumped = db.scalar(plpy, "select splitgraph_internal.dump_parquet_objects($1::text[])", batch)
                for object_id, url, data in zip(batch, urls[start:start + 2 * threads], dumped, strict=True):
                    pending.append((object_id, url, executor.submit(_request, pool, "PUT", url, bytes(data))))
                while len(pending) > 2 * threads or (pending and pending[0][2].done()):
                    _finish(plpy, "uploading", pending.pop(0))
                    done = _progress(plpy, "uploaded", done + 1, len(object_ids))
            while pending:
                _finish(plpy, "uploading", pending.pop(0))
                done = _progress(plpy, "uploaded", done + 1, len(object_ids))
        finally:
            for _, _, future in pending:
                future.cancel()


# With more objects than this, a transfer through URLs sends a NOTICE "(done/total)" every this many (for
# progress bars).
PROGRESS_EVERY = 64


def _progress(plpy, what, done, total):
    if total > PROGRESS_EVERY and (done % PROGRESS_EVERY == 0 or done == total):
        db.notice(plpy, f"{what} objects ({done}/{total}) to object storage")
    return done


def _finish(plpy, what, item):
    object_id, url, future = item
    try:
        return future.result()
    except (_Failed, urllib3.exceptions.HTTPError, OSError) as error:
        _transfer_failed(plpy, what, object_id, url, error)


def get_objects(plpy, object_ids, urls, threads=4):
    """Download objects through pre-signed GET URLs, `threads` at a time, and store them with
    splitgraph_internal.load_objects (which refuses any whose rows do not hash to its id), many at a time while
    the next ones download. Returns the ids loaded, in the order given."""
    _check_urls(plpy, object_ids, urls)
    threads = max(1, min(int(threads or 1), 64))
    pool = urllib3.PoolManager(maxsize=threads)
    ahead = max(2 * threads, LOAD_BATCH)
    with concurrent.futures.ThreadPoolExecutor(threads, initializer=db.quiet_thread) as executor:
        pending = []
        queue = list(zip(object_ids, urls, strict=True))
        batch, size, loaded = [], 0, 0
        try:
            while queue or pending:
                while queue and len(pending) < ahead:
                    object_id, url = queue.pop(0)
                    pending.append((object_id, url, executor.submit(_request, pool, "GET", url)))
                object_id = pending[0][0]
                data = _finish(plpy, "downloading", pending.pop(0))
                batch.append((object_id, data))
                size += len(data)
                if len(batch) >= LOAD_BATCH or size >= LOAD_BATCH_BYTES or not (queue or pending):
                    plan = plpy.prepare("select splitgraph_internal.load_objects($1, $2)", ["text[]", "bytea[]"])
                    plpy.execute(plan, [[o for o, _ in batch], [d for _, d in batch]])
                    loaded += len(batch)
                    if len(object_ids) > PROGRESS_EVERY:
                        db.notice(plpy, f"downloaded objects ({loaded}/{len(object_ids)}) from object storage")
                    batch, size = [], 0
        finally:
            for _, _, future in pending:
                future.cancel()
    return list(object_ids)


@helper("s3_put_objects(object_ids text[], urls text[], threads integer) returns void",
        "s3_put_objects(object_ids, urls, threads): upload local objects through pre-signed PUT URLs (one per object), "
        "threads at a time", security="invoker")
def s3_put_objects(plpy, object_ids, urls, threads):
    put_objects(plpy, list(object_ids), list(urls), threads)


@helper("s3_get_objects(object_ids text[], urls text[], threads integer) returns text[]",
        "s3_get_objects(object_ids, urls, threads): download objects through pre-signed GET URLs, threads at a time, "
        "and load each (verified); returns the ids loaded", security="invoker")
def s3_get_objects(plpy, object_ids, urls, threads):
    return get_objects(plpy, list(object_ids), list(urls), threads)


# ---------------------------------------------------------------------------------------------------------------
# External handlers
# ---------------------------------------------------------------------------------------------------------------

_SIGNATURE = """
select p.prokind::text as kind, p.proretset as set,
       pg_catalog.oidvectortypes(p.proargtypes) = $2 as arguments,
       pg_catalog.pg_get_function_result(p.oid) as result, p.oid::pg_catalog.regprocedure::text as name
from pg_catalog.pg_proc p where p.oid = $1::pg_catalog.regprocedure"""


def _handler_function(plpy, role, function, arguments, result, setof):
    found = db.one(plpy, _SIGNATURE, function, ", ".join(arguments))
    if found is None or found["kind"] != "f" or not found["arguments"] or found["result"] != result \
            or found["set"] != setof:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                    f"{role} function {function} does not have the handler signature",
                    hint=f"{role}({', '.join(arguments)}) returns {result.replace('TABLE', 'table')}")
    return found["name"]


@api("register_external_handler(name text, upload regprocedure, download regprocedure) returns void",
     "register_external_handler(name, upload, download): add an object store beside DB and S3: upload(object_ids "
     "text[], options jsonb) returns table(object_id text, location text), download(locations jsonb, options "
     "jsonb) returns text[] (the ids loaded); owner only; registering a name again replaces its functions")
def register_external_handler(plpy, name, upload, download):
    if not meta.caller_is_admin(plpy):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    "only superusers and the extension's owner may register object handlers")
    if not _HANDLER.fullmatch(name) or name.upper() in BUILT_IN_HANDLERS:
        errors.fail(plpy, errors.INVALID_NAME, f"invalid handler name {name!r}",
                    hint="a letter, then letters, digits, - and _ (at most 63); DB and S3 are built in")
    upload = _handler_function(plpy, "upload", upload, ["text[]", "jsonb"], "TABLE(object_id text, location text)",
                               True)
    download = _handler_function(plpy, "download", download, ["jsonb", "jsonb"], "text[]", False)
    db.run(plpy, """insert into splitgraph_meta.external_handlers (name, upload, download) values ($1, $2, $3)
                    on conflict (name) do update set upload = excluded.upload, download = excluded.download""",
           name, upload, download)


@helper("external_handler(name text) returns text[]",
        "external_handler(name): the upload and download functions of a registered handler, as SQL names to call",
        volatility="stable", public=True)
def external_handler(plpy, name):
    """[upload, download]: each function's qualified, quoted name (to call with its arguments cast), or null."""
    row = db.one(plpy, """
        select (select pg_catalog.format('%I.%I', n.nspname, p.proname) from pg_catalog.pg_proc p
                join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                where p.oid = pg_catalog.to_regprocedure(h.upload)) as upload,
               (select pg_catalog.format('%I.%I', n.nspname, p.proname) from pg_catalog.pg_proc p
                join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                where p.oid = pg_catalog.to_regprocedure(h.download)) as download
        from splitgraph_meta.external_handlers h where h.name = $1""", name)
    return None if row is None else [row["upload"], row["download"]]


def _functions(plpy, handler):
    found = db.scalar(plpy, "select splitgraph_internal.external_handler($1)", handler)
    if found is None:
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'object handler "{handler}" is not registered',
                    hint="register it with splitgraph.register_external_handler")
    if None in found:
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'a function of object handler "{handler}" no longer exists',
                    hint="register the handler again")
    return found


def upload_with(plpy, handler, object_ids, options=None):
    """Upload local objects with a registered handler, as the caller: [(object_id, location)] for each."""
    upload = _functions(plpy, handler)[0]
    rows = db.run(plpy, f"select h.object_id, h.location from {upload}($1::text[], $2::jsonb) h",
                  list(object_ids), json.dumps(options or {}))
    located = {r["object_id"]: r["location"] for r in rows}
    missing = [o for o in object_ids if located.get(o) is None]
    if missing:
        errors.fail(plpy, IO_ERROR, f'object handler "{handler}" gave no location for object {missing[0]}',
                    hint="its upload function must return a location for every object it is given")
    return [(o, located[o]) for o in object_ids]


def download_with(plpy, handler, locations, options=None):
    """Download objects with a registered handler, as the caller (locations: [(object_id, location)]); returns
    their ids. The handler loads them with load_object (which verifies each) and must report every one."""
    download = _functions(plpy, handler)[1]
    payload = [{"object_id": o, "location": loc} for o, loc in locations]
    loaded = db.scalar(plpy, f"select {download}($1::jsonb, $2::jsonb)", json.dumps(payload),
                       json.dumps(options or {})) or []
    wanted = [o for o, _ in locations]
    missing = sorted(set(wanted) - set(loaded))
    if missing:
        errors.fail(plpy, IO_ERROR, f'object handler "{handler}" did not load object {missing[0]}',
                    hint="its download function must load every object it is given (with splitgraph.load_object)")
    return wanted


@helper("upload_objects_with(handler text, object_ids text[], options jsonb) "
        "returns table(object_id text, location text)",
        "upload_objects_with(handler, object_ids, options): upload local objects with a registered handler",
        security="invoker")
def upload_objects_with(plpy, handler, object_ids, options):
    return [{"object_id": o, "location": loc}
            for o, loc in upload_with(plpy, handler, list(object_ids), json.loads(options or "{}"))]


@helper("download_objects_with(handler text, locations jsonb, options jsonb) returns text[]",
        "download_objects_with(handler, locations, options): download objects ([{object_id, location}]) with a "
        "registered handler; returns the ids loaded", security="invoker")
def download_objects_with(plpy, handler, locations, options):
    items = [(i["object_id"], i["location"]) for i in json.loads(locations)]
    return download_with(plpy, handler, items, json.loads(options or "{}"))
