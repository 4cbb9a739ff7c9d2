"""Images travel between engines: clone, pull and push over postgres_fdw (the DB handler), and the objects a
checkout needs, downloaded when they are not here.

Every engine serves schema splitgraph_remote (sql/60_remote/01_remote.sql): read-only views of its
repositories, images, tags, branches, table versions and objects; object_dumps, each stored object as
dump_for_transfer makes it, computed only for the ids a query asks; and requests, an insertable view through
which a push writes, one step a row, each checked and applied there as the role that logged in (receive). A
client reads and writes them through the foreign tables of one of its remotes (remotes.py), as the caller of
clone, pull, push or checkout, so everything a call does on the remote happens in the one remote transaction
postgres_fdw opens for the local one: it commits when the local call commits, and not at all when either side
fails (a remote that dies mid-transfer leaves nothing there, and the local call fails and leaves nothing here).
Rows never pass through Python: metadata travels as a few JSON values, objects as one dump each, moved by single
statements (INSERT ... SELECT into requests, SELECT load_object(...) FROM object_dumps).

What arrives is untrusted, on either side: names and hashes are checked for form, table schemas resolved
against the catalog (tables.from_spec), metadata of objects registered without their rows must hash to their
ids, and every object's rows are re-hashed before it is registered (objects.store_dump); nothing is pasted into
SQL. Images never change: an image that exists must arrive with the same metadata and tables, or it is refused.
"""
import json
import re
import urllib.parse

from . import db, definitions, errors, hashing, meta, names, objects, remotes, storage
from . import tables as tbl
from .declare import api, helper

_OBJECT_ID = re.compile(r"o[0-9a-f]{62}")
# Bounds on what one table version may name, and on the index of an object registered without its rows.
MAX_OBJECTS_PER_TABLE = 1_000_000
MAX_INDEX_BYTES = 4 << 20
# How many times a push that lost a race with another push to the same remote is tried (see push).
PUSH_ATTEMPTS = 5
# From how many objects a download reads through two connections at once (see download): a new connection costs
# its login and the remote's first call of Python.
PARALLEL_DOWNLOAD = 16
# A transfer of many objects goes in statements of this many (objects downloaded, or steps of a push), so that a
# progress NOTICE "(done/total)" follows each; fewer than two batches send no such NOTICE.
TRANSFER_BATCH = 64
# Objects moved at a time through pre-signed URLs (push's handler_options threads), and objects a request for
# URLs (or a 'located' step of a push) names at most.
DEFAULT_THREADS = 4
URL_BATCH = 1000


# ---------------------------------------------------------------------------------------------------------------
# Checking what arrives
# ---------------------------------------------------------------------------------------------------------------

def _refuse(plpy, source, what):
    errors.fail(plpy, errors.DATA_CORRUPTED, f"{source} sent malformed metadata: {what}",
                hint="the remote's metadata is damaged or forged; nothing was stored")


def _is_hash(value):
    return isinstance(value, str) and bool(names.HASH.match(value))


def _is_int(value):
    return isinstance(value, int) and not isinstance(value, bool)


def check_image(plpy, item, source):
    """An image's metadata {image_hash, parent_id, created, comment, provenance, merged}, checked for form
    (merged: the second parent of a merge image, which has a first one too)."""
    if not isinstance(item, dict) or not _is_hash(item.get("image_hash")):
        _refuse(plpy, source, "an image without a valid hash")
    image_hash, parent, merged = item["image_hash"], item.get("parent_id"), item.get("merged")
    if parent is not None and (not _is_hash(parent) or parent == image_hash):
        _refuse(plpy, source, f"image {image_hash} has an invalid parent")
    if merged is not None and (not _is_hash(merged) or merged in (image_hash, parent) or parent is None):
        _refuse(plpy, source, f"image {image_hash} has an invalid second parent")
    if image_hash == meta.ROOT and parent is not None:
        _refuse(plpy, source, "the root image has a parent")
    comment = item.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 4096):
        _refuse(plpy, source, f"the comment of image {image_hash} is not a string of at most 4096 characters")
    if not isinstance(item.get("created"), str):
        _refuse(plpy, source, f"image {image_hash} has no creation time")
    if not isinstance(item.get("provenance"), (dict, list, type(None))):
        _refuse(plpy, source, f"the provenance of image {image_hash} is not a JSON object or array")
    return {k: item.get(k) for k in ("image_hash", "parent_id", "created", "comment", "provenance", "merged")}


def check_table(plpy, item, source, resolved):
    """A table version {image_hash, table_name, table_schema, table_definition, object_ids}, checked: its schema
    resolves here (tables.from_spec), its definition is an object or null that a checkout can read (every
    expression exactly one: definitions.check), its object ids have the form of ids. `resolved` caches the
    schemas and definitions already checked."""
    if not isinstance(item, dict) or not _is_hash(item.get("image_hash")):
        _refuse(plpy, source, "a table version without a valid image hash")
    name = item.get("table_name")
    if not isinstance(name, str) or not name or "\x00" in name or len(name.encode("utf-8")) > 63:
        _refuse(plpy, source, "a table name is not a string of 1 to 63 bytes")
    where = f'table "{name}" of image {item["image_hash"]}'
    if item["image_hash"] == meta.ROOT:
        _refuse(plpy, source, f"{where}: the root image has no tables")
    spec, definition = item.get("table_schema"), item.get("table_definition")
    if definition is not None and not isinstance(definition, dict):
        _refuse(plpy, source, f"the definition of {where} is not a JSON object")
    ids = item.get("object_ids")
    if (not isinstance(ids, list) or len(ids) > MAX_OBJECTS_PER_TABLE
            or not all(isinstance(o, str) and _OBJECT_ID.fullmatch(o) for o in ids)):
        _refuse(plpy, source, f"the object list of {where} is malformed")
    key = json.dumps([name, spec, definition], sort_keys=True)
    if key not in resolved:
        problem = tbl.spec_problem(spec)
        if problem:
            _refuse(plpy, source, f"the schema of {where} is malformed: {problem}")
        cols = tbl.from_spec(plpy, spec, definition, dump=True)  # types and collations must resolve here
        definitions.check(plpy, name, cols, definition)  # its form, and each expression exactly one
        resolved.add(key)
    return {"image_hash": item["image_hash"], "table_name": name, "table_schema": spec,
            "table_definition": definition, "object_ids": ids}


def check_object_metadata(plpy, item, source):
    """Metadata of an object registered without its rows: its form, and that it hashes to its id (the rows are
    checked when they arrive, and the metadata is then replaced by what they give)."""
    if not isinstance(item, dict) or not isinstance(item.get("object_id"), str) \
            or not _OBJECT_ID.fullmatch(item["object_id"]):
        _refuse(plpy, source, "an object without a valid id")
    oid = item["object_id"]
    spec = item.get("table_schema")
    ok = (item.get("format", "FRAG") == "FRAG" and isinstance(item.get("namespace", ""), str)
          and len(item.get("namespace", "")) <= 64
          and _is_int(item.get("rows_inserted")) and _is_int(item.get("rows_deleted"))
          and 0 <= item["rows_inserted"] < 2 ** 63 and 0 <= item["rows_deleted"] < 2 ** 63
          and _is_hash(item.get("insertion_hash")) and _is_hash(item.get("deletion_hash"))
          and isinstance(item.get("index", {}), dict) and set(item.get("index", {})) <= {"range", "bloom"}
          and len(json.dumps(item.get("index", {}))) <= MAX_INDEX_BYTES
          and tbl.spec_problem(spec) is None)
    if not ok:
        _refuse(plpy, source, f"the metadata of object {oid} is malformed")
    key = [[c[0], c[1], c[2], c[3]] for c in spec]
    if hashing.object_id(item["insertion_hash"], item["deletion_hash"], key) != oid:
        _refuse(plpy, source, f"the metadata of object {oid} does not hash to its id")
    return {"object_id": oid, "namespace": item.get("namespace", ""), "rows_inserted": item["rows_inserted"],
            "rows_deleted": item["rows_deleted"], "insertion_hash": item["insertion_hash"],
            "deletion_hash": item["deletion_hash"], "index": item.get("index", {}), "table_schema": key}


def _parents(image):
    return [p for p in (image["parent_id"], image.get("merged")) if p is not None]


def parents_first(plpy, images, known, source):
    """The images ordered so that each comes after its parents (a merge image has two); each parent is one of
    them or in `known` (hashes already there). A cycle or a missing parent is refused."""
    by_hash = {i["image_hash"]: i for i in images}
    depth = {}
    for start in by_hash:
        stack, on_path = [start], set()
        while stack:
            h = stack[-1]
            if h in depth:
                stack.pop()
                continue
            on_path.add(h)
            waiting = []
            for parent in _parents(by_hash[h]):
                if parent in by_hash:
                    if parent in on_path and parent not in depth:
                        _refuse(plpy, source, f"image {parent} is its own ancestor")
                    if parent not in depth:
                        waiting.append(parent)
                elif parent not in known:
                    _refuse(plpy, source, f"the parent {parent} of image {h} is missing")
            if waiting:
                stack.extend(waiting)
                continue
            depth[h] = 1 + max([depth[p] for p in _parents(by_hash[h]) if p in by_hash], default=-1)
            on_path.discard(h)
            stack.pop()
    return sorted(images, key=lambda i: (depth[i["image_hash"]], i["image_hash"]))


def is_ancestor(plpy, repo, ancestor, image_hash):
    """Whether `ancestor` is `image_hash` or one of its ancestors in the repository (through both parents of a
    merge image)."""
    return db.scalar(plpy, f"""
        with recursive chain (image_hash) as (
            select $2::text
            union
            select p.parent_id from chain c cross join {meta.parents_of('c')}
        ) select exists (select from chain where image_hash = $3)""", repo, image_hash, ancestor)


def _insert_images(plpy, repo, images, source):
    """Insert images (checked, parents first) in one statement; a creation time that is not one is refused."""
    try:
        with plpy.subtransaction():
            db.run(plpy, """
                insert into splitgraph_meta.images (repository, image_hash, parent_id, created, comment, provenance)
                select $1, x.image_hash, x.parent_id, x.created, x.comment, x.provenance
                from rows from (pg_catalog.jsonb_to_recordset($2::jsonb)
                                as (image_hash text, parent_id text, created timestamptz, comment text,
                                    provenance jsonb)) with ordinality as x (image_hash, parent_id, created, comment,
                                                                             provenance, n)
                order by x.n""", repo, db.Json(images))
            merges = [i for i in images if i.get("merged") is not None]
            if merges:
                db.run(plpy, """
                    insert into splitgraph_meta.merge_parents (repository, image_hash, parent_id)
                    select $1, x.image_hash, x.merged
                    from pg_catalog.jsonb_to_recordset($2::jsonb) as x (image_hash text, merged text)""",
                       repo, db.Json(merges))
    except plpy.SPIError as error:
        if (error.sqlstate or "").startswith(("22", "23")):
            _refuse(plpy, source, f"images do not fit: {str(error).splitlines()[0]}")
        raise


def _insert_tables(plpy, repo, tables):
    db.run(plpy, """
        insert into splitgraph_meta.tables (repository, image_hash, table_name, table_schema, table_definition,
                                            object_ids)
        select $1, x.image_hash, x.table_name, x.table_schema, x.table_definition, x.object_ids
        from pg_catalog.jsonb_to_recordset($2::jsonb)
             as x (image_hash text, table_name text, table_schema jsonb, table_definition jsonb, object_ids text[])
        on conflict do nothing""", repo, db.Json(tables))


# ---------------------------------------------------------------------------------------------------------------
# The local side: helpers for the calls that run as their caller (who cannot read splitgraph_meta)
# ---------------------------------------------------------------------------------------------------------------

@helper("local_state(repository text, missing_ok boolean) returns text",
        "local_state(repository, missing_ok): a repository's images, tags, branches, upstream, checked-out branch "
        "and object ids, for clone, pull and push (metadata every role may read)",
        volatility="stable", public=True)
def local_state(plpy, repository, missing_ok):
    repo = names.repository(plpy, repository)
    if not meta.exists(plpy, repo):
        if not missing_ok:
            meta.require(plpy, repo)
        return json.dumps({"repository": repo, "exists": False, "images": [], "tags": {}, "branches": {},
                           "upstream": None, "checked_out_branch": None, "object_ids": []})
    return db.scalar(plpy, """
        select pg_catalog.jsonb_build_object(
            'repository', $1::text, 'exists', true,
            'images', coalesce((select pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                                    'image_hash', i.image_hash, 'parent_id', i.parent_id, 'created', i.created,
                                    'comment', i.comment, 'provenance', i.provenance,
                                    'merged', (select m.parent_id from splitgraph_meta.merge_parents m
                                               where m.repository = i.repository and m.image_hash = i.image_hash
                                               order by m.parent_id limit 1)) order by i.created, i.seq)
                                from splitgraph_meta.images i where i.repository = $1), '[]'),
            'tags', coalesce((select pg_catalog.jsonb_object_agg(t.tag, t.image_hash)
                              from splitgraph_meta.tags t where t.repository = $1), '{}'),
            'branches', coalesce((select pg_catalog.jsonb_object_agg(b.branch, b.image_hash)
                                  from splitgraph_meta.branches b where b.repository = $1), '{}'),
            'upstream', (select pg_catalog.jsonb_build_object('remote', u.remote_name,
                                                              'remote_repository', u.remote_repository)
                         from splitgraph_meta.upstream u where u.repository = $1),
            'checked_out_branch', (select c.branch from splitgraph_meta.checkouts c where c.repository = $1),
            'object_ids', coalesce((select pg_catalog.jsonb_agg(distinct o)
                                    from splitgraph_meta.tables t, pg_catalog.unnest(t.object_ids) o
                                    where t.repository = $1), '[]'))::text""", repo)


@helper("local_tables(repository text, image_hashes text[]) returns text",
        "local_tables(repository, image_hashes): the table versions of those images of the repository (metadata "
        "every role may read)",
        volatility="stable", public=True)
def local_tables(plpy, repository, image_hashes):
    repo = meta.require(plpy, repository)
    return db.scalar(plpy, """
        select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'image_hash', t.image_hash, 'table_name', t.table_name, 'table_schema', t.table_schema,
                   'table_definition', t.table_definition, 'object_ids', t.object_ids)
                   order by t.image_hash, t.table_name), '[]')::text
        from splitgraph_meta.tables t where t.repository = $1 and t.image_hash = any($2::text[])""",
                     repo, list(image_hashes or []))


@helper("object_states(object_ids text[]) returns text",
        "object_states(object_ids): which of the objects are stored here, and which registered without their rows",
        volatility="stable", public=True)
def object_states(plpy, object_ids):
    return db.scalar(plpy, """
        select pg_catalog.jsonb_build_object(
            'stored', coalesce(pg_catalog.jsonb_agg(o.object_id) filter (where s.stored), '[]'),
            'registered', coalesce(pg_catalog.jsonb_agg(o.object_id) filter (where not s.stored), '[]'))::text
        from splitgraph_meta.objects o
        cross join lateral (select pg_catalog.to_regclass(pg_catalog.format('splitgraph_meta.%I', o.object_id))
                                   is not null as stored) s
        where o.object_id = any($1::text[])""", list(object_ids or []))


@helper("object_metadata(object_ids text[]) returns text",
        "object_metadata(object_ids): the metadata of the objects registered here (metadata every role may read), "
        "for a push with handler S3",
        volatility="stable", public=True)
def object_metadata(plpy, object_ids):
    return db.scalar(plpy, """
        select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'object_id', o.object_id, 'format', o.format, 'namespace', o.namespace,
                   'rows_inserted', o.rows_inserted, 'rows_deleted', o.rows_deleted,
                   'insertion_hash', o.insertion_hash, 'deletion_hash', o.deletion_hash, 'index', o.index,
                   'table_schema', o.table_schema) order by o.object_id), '[]')::text
        from splitgraph_meta.objects o where o.object_id = any($1::text[])""", list(object_ids or []))


@helper("image_objects(repository text, image text) returns text",
        "image_objects(repository, image): for checkout: the objects the image needs that are registered here "
        "without their rows, where they can be downloaded from, and the repository's upstream (nothing when the "
        "caller may not check the image out: checkout then says why)",
        volatility="stable", public=True)
def image_objects(plpy, repository, image):
    nothing = json.dumps({"missing": []})
    if not isinstance(repository, str) or not names.is_repository(repository) or image is None \
            or not meta.exists(plpy, repository) or not meta.may_write(plpy, repository):
        return nothing
    try:
        with plpy.subtransaction():
            image_hash, _ = meta.resolve(plpy, repository, image)
    except plpy.Error:
        return nothing
    return db.scalar(plpy, """
        with missing as (
            select distinct o.object_id from splitgraph_meta.tables t
            cross join pg_catalog.unnest(t.object_ids) as u (id)
            join splitgraph_meta.objects o on o.object_id = u.id
            where t.repository = $1 and t.image_hash = $2
              and pg_catalog.to_regclass(pg_catalog.format('splitgraph_meta.%I', o.object_id)) is null
        )
        select pg_catalog.jsonb_build_object(
            'missing', coalesce((select pg_catalog.jsonb_agg(m.object_id order by m.object_id) from missing m), '[]'),
            'locations', coalesce((select pg_catalog.jsonb_object_agg(l.object_id, l.location)
                                   from splitgraph_meta.object_locations l
                                   where l.protocol = 'DB' and l.object_id in (select object_id from missing)), '{}'),
            'upstream', (select u.remote_name from splitgraph_meta.upstream u where u.repository = $1))::text""",
                     repository, image_hash)


@helper("receive_metadata(payload jsonb) returns text",
        "receive_metadata(payload): for clone and pull: check what a remote sent (images, table versions, metadata "
        "of objects not downloaded, tags, branches) and register it in a repository the caller may write",
        public=True)
def receive_metadata(plpy, payload):
    """payload: {repository, remote, remote_repository, images, tables, objects, tags, branches, overwrite_tags,
    upstream}. Everything is checked before anything is written; images are inserted parents first, after the
    objects their tables name. A tag that points elsewhere here moves only with overwrite_tags; a branch moves
    forward when the remote's head descends from ours, unless it is checked out. Returns what was done."""
    p = json.loads(payload)
    remote = remotes.check_name(plpy, p.get("remote"))
    source = f'remote "{remote}"'
    repo = meta.writable(plpy, p.get("repository"), must_exist=False)
    remote_repo = names.repository(plpy, p.get("remote_repository"))
    db.run(plpy, "insert into splitgraph_meta.repositories (repository) values ($1) on conflict do nothing", repo)
    meta.lock(plpy, repo)
    if not isinstance(p.get("images"), list) or not isinstance(p.get("tables"), list) \
            or not isinstance(p.get("objects"), list) or not isinstance(p.get("tags"), dict) \
            or not isinstance(p.get("branches"), dict):
        _refuse(plpy, source, "the repository's metadata is not in the expected shape")
    images = [check_image(plpy, i, source) for i in p["images"]]
    present = set(db.column(plpy, """select image_hash from splitgraph_meta.images
                                     where repository = $1 and image_hash = any($2::text[])""",
                            repo, [i["image_hash"] for i in images]))
    images = [i for i in images if i["image_hash"] not in present]
    new = {i["image_hash"] for i in images}
    parents = {p for i in images for p in _parents(i)} - new
    known = set(db.column(plpy, """select image_hash from splitgraph_meta.images
                                   where repository = $1 and image_hash = any($2::text[])""", repo, sorted(parents)))
    images = parents_first(plpy, images, known, source)
    resolved = set()
    tables = [check_table(plpy, t, source, resolved) for t in p["tables"]]
    tables = [t for t in tables if t["image_hash"] in new]
    lazy = [check_object_metadata(plpy, o, source) for o in p["objects"]]
    namespace = names.namespace_of(repo)
    claimed = db.column(plpy, """
        insert into splitgraph_meta.objects (object_id, namespace, rows_inserted, rows_deleted, insertion_hash,
                                             deletion_hash, index, table_schema)
        select x.object_id, $2, x.rows_inserted, x.rows_deleted, x.insertion_hash, x.deletion_hash, x.index,
               x.table_schema
        from pg_catalog.jsonb_to_recordset($1::jsonb)
             as x (object_id text, rows_inserted bigint, rows_deleted bigint, insertion_hash text, deletion_hash text,
                   index jsonb, table_schema jsonb)
        order by x.object_id
        on conflict (object_id) do nothing
        returning object_id""", db.Json(lazy), namespace) if lazy else []
    if lazy:
        db.run(plpy, """insert into splitgraph_meta.object_locations (object_id, location, protocol)
                        select u.id, $2, 'DB' from pg_catalog.unnest($1::text[]) as u (id)
                        where exists (select from splitgraph_meta.objects o where o.object_id = u.id)
                          and pg_catalog.to_regclass(pg_catalog.format('splitgraph_meta.%I', u.id)) is null
                        on conflict (object_id) do nothing""", [o["object_id"] for o in lazy], remote)
    if images:
        _insert_images(plpy, repo, images, source)
    if tables:
        try:
            with plpy.subtransaction():
                _insert_tables(plpy, repo, tables)
        except plpy.SPIError as error:
            if error.sqlstate == "23503":  # a table names an object neither sent nor here
                _refuse(plpy, source, str(error).splitlines()[0])
            raise
    done = {"images": len(images), "objects_registered": len(claimed), "tags": [], "branches": [], "kept": []}
    _merge_refs(plpy, repo, p, source, done)
    if p.get("upstream"):
        remotes.record_upstream(plpy, repo, remote, remote_repo, True)
    return json.dumps(done)


def _merge_refs(plpy, repo, p, source, done):
    """Tags and branches of the remote, as receive_metadata takes them."""
    local_tags = {r["tag"]: r["image_hash"] for r in db.run(
        plpy, "select tag, image_hash from splitgraph_meta.tags where repository = $1", repo)}
    local_branches = {r["branch"]: r["image_hash"] for r in db.run(
        plpy, "select branch, image_hash from splitgraph_meta.branches where repository = $1", repo)}
    checked_out = db.scalar(plpy, "select branch from splitgraph_meta.checkouts where repository = $1", repo)
    refs = list(p["tags"].items()) + list(p["branches"].items())
    hashes = {h for _, h in refs if _is_hash(h)}
    present = set(db.column(plpy, """select image_hash from splitgraph_meta.images
                                     where repository = $1 and image_hash = any($2::text[])""", repo, sorted(hashes)))
    for kind, given, check in (("tag", p["tags"], names.is_tag), ("branch", p["branches"], names.is_branch)):
        for name, image_hash in sorted(given.items()):
            if not check(name) or not _is_hash(image_hash) or image_hash not in present:
                _refuse(plpy, source, f"{kind} {name!r} is malformed or names an image it did not send")
    for tag, image_hash in sorted(p["tags"].items()):
        if tag in local_branches:
            done["kept"].append(f'tag "{tag}" (a branch here)')
        elif tag not in local_tags:
            db.run(plpy, "insert into splitgraph_meta.tags (repository, tag, image_hash) values ($1, $2, $3)",
                   repo, tag, image_hash)
            local_tags[tag] = image_hash
            done["tags"].append(tag)
        elif local_tags[tag] != image_hash:
            if p.get("overwrite_tags"):
                db.run(plpy, "update splitgraph_meta.tags set image_hash = $3 where repository = $1 and tag = $2",
                       repo, tag, image_hash)
                done["tags"].append(tag)
            else:
                done["kept"].append(f'tag "{tag}" (points at {local_tags[tag][:12]} here, {image_hash[:12]} there; '
                                    "overwrite_tags => true moves it)")
    for branch, image_hash in sorted(p["branches"].items()):
        mine = local_branches.get(branch)
        if branch in local_tags:
            done["kept"].append(f'branch "{branch}" (a tag here)')
        elif mine is None:
            db.run(plpy, "insert into splitgraph_meta.branches (repository, branch, image_hash) values ($1, $2, $3)",
                   repo, branch, image_hash)
            done["branches"].append(branch)
        elif mine == image_hash or is_ancestor(plpy, repo, image_hash, mine):
            continue  # the same, or ours is ahead
        elif not is_ancestor(plpy, repo, mine, image_hash):
            done["kept"].append(f'branch "{branch}" (it has diverged from the remote\'s)')
        elif branch == checked_out:
            done["kept"].append(f'branch "{branch}" (checked out here at {mine[:12]}; the remote\'s is at '
                                f"{image_hash[:12]}: check that image out to take it)")
        else:
            db.run(plpy, "update splitgraph_meta.branches set image_hash = $3 where repository = $1 and branch = $2",
                   repo, branch, image_hash)
            done["branches"].append(branch)


@helper("push_upstream(repository text, remote text, remote_repository text) returns void",
        "push_upstream(repository, remote, remote_repository): after a push, record the upstream of a repository "
        "that has none, when the caller may write it",
        public=True)
def push_upstream(plpy, repository, remote, remote_repository):
    repo = meta.require(plpy, repository)
    if meta.may_write(plpy, repo) and meta.lock(plpy, repo):
        remotes.record_upstream(plpy, repo, remote, remote_repository, False)


# ---------------------------------------------------------------------------------------------------------------
# Reaching a remote
# ---------------------------------------------------------------------------------------------------------------

# Errors of reaching an engine at all: connection failures, authentication, postgres_fdw's password rule, a
# database that does not exist.
_UNREACHABLE = ("08", "28", "2F003", "3D000", "57P")


class Remote:
    """A remote of the calling role and the qualified names of its foreign tables (suffix: of a twin, see
    remotes.twin)."""

    def __init__(self, plpy, name):
        self.info = remotes.resolve(plpy, name)
        self.name = self.info["name"]
        self.suffix = ""

    def table(self, table):
        return names.qualified(self.info["schema"], table + self.suffix)

    @classmethod
    def twin_of(cls, plpy, remote, n, only=None):
        """Another connection to the same remote for this transaction (remotes.twin)."""
        twin = cls.__new__(cls)
        twin.info, twin.name = remote.info, remote.name
        twin.server, twin.suffix = remotes.twin(plpy, remote.info, n, only)
        return twin

    def where(self):
        return f'remote "{self.name}" ({self.info["host"]}:{self.info["port"]}, database {self.info["dbname"]})'


def connect(plpy, remote):
    """Open the remote transaction, and check that the remote serves this protocol."""
    try:
        with plpy.subtransaction():
            version = db.scalar(plpy, f"select max(version) from {remote.table('protocol')}")
    except plpy.SPIError as error:
        state = error.sqlstate or ""
        first = str(error).splitlines()[0]
        spidata = getattr(error, "spidata", None)  # (sqlstate, detail, hint, ...): PL/Python's error data
        detail = spidata[1] if isinstance(spidata, tuple) and len(spidata) > 1 else None
        if state.startswith(_UNREACHABLE):
            errors.fail(plpy, state, f"cannot reach {remote.where()}: {first}", detail=detail,
                        hint="check the remote's address and credentials (splitgraph.delete_remote, then "
                             "splitgraph.add_remote); a role that is not a superuser must log in with a password")
        if state == "42P01":
            errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED, f"{remote.where()} does not serve splitgraph",
                        hint="CREATE EXTENSION splitgraph CASCADE there")
        raise
    if version != remotes.PROTOCOL:
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED,
                    f"{remote.where()} serves protocol {version}, and this engine speaks {remotes.PROTOCOL}",
                    hint="install the same version of the extension on both engines")


def _json(plpy, query, *args):
    return json.loads(db.scalar(plpy, query, *args))


def download(plpy, remote, object_ids, options=None):
    """Download objects from a remote, each verified and stored by load_object (as this engine's owner: every
    role may load objects); an object the remote does not store fails the call. Objects the remote keeps in its
    object storage come straight from the store, options["threads"] at a time (see _handler_options). The others'
    dumps stream: each is loaded as it arrives (no ORDER BY, which would sort them all here first). Many are read
    through two connections at once (postgres_fdw's asynchronous Append, over a twin of the remote: remotes.twin),
    so that the remote makes the next dumps while this engine loads the last ones."""
    if not object_ids:
        return
    options = options or {"threads": DEFAULT_THREADS, "s3_host": None}
    in_bucket = sorted(_in_their_bucket(plpy, remote, object_ids))
    if in_bucket:  # kept in the remote's object storage: through URLs it signs, straight from the store
        urls = _urls(plpy, remote, "GET", None, options["s3_host"], in_bucket)
        storage.get_objects(plpy, in_bucket, urls, options["threads"])
    ids = sorted(set(object_ids) - set(in_bucket))
    if not ids:
        return
    twin = None
    if len(ids) >= PARALLEL_DOWNLOAD:
        twin = Remote.twin_of(plpy, remote, "d", only=("object_dumps",))
        source = (f"select * from {remote.table('object_dumps')} where object_id = any($1::text[]) union all "
                  f"select * from {twin.table('object_dumps')} where object_id = any($2::text[])")
    else:
        source = f"select * from {remote.table('object_dumps')} where object_id = any($1::text[])"
    query = f"""
        select s.object_id from (
            select d.object_id, splitgraph.load_object(d.object_id, d.dump) from ({source}) d offset 0) s"""
    loaded = set()
    for start in range(0, len(ids), TRANSFER_BATCH):
        batch = ids[start:start + TRANSFER_BATCH]
        loaded.update(db.column(plpy, query, *((batch[0::2], batch[1::2]) if twin is not None else (batch,))))
        if len(ids) > TRANSFER_BATCH:
            db.notice(plpy, f"downloaded objects ({len(loaded)}/{len(ids)}) from {remote.where()}")
    if twin is not None:
        remotes.drop_twin(plpy, twin.server)
    lacking = sorted(set(ids) - loaded)
    if lacking:
        errors.fail(plpy, errors.UNDEFINED_OBJECT,
                    f"{remote.where()} does not store {len(lacking)} object(s) it was asked for: "
                    + ", ".join(lacking[:5]) + (" ..." if len(lacking) > 5 else ""),
                    hint="the remote registered them without their rows; fetch them where they are stored")


def fetch_objects(plpy, repository, image):
    """Before a checkout: download the objects the image needs that are registered here without their rows,
    from the repository's upstream (else from where each was registered from), through the caller's remote."""
    need = json.loads(db.scalar(plpy, "select splitgraph_internal.image_objects($1, $2)", repository, image))
    if not need["missing"]:
        return
    groups = {}
    for object_id in need["missing"]:
        source = need.get("upstream") or need["locations"].get(object_id)
        if source is None:
            errors.fail(plpy, errors.UNDEFINED_OBJECT, f"object {object_id} is not stored on this engine, and no "
                        f'remote is known for it', hint=f'set the upstream of "{repository}" with '
                                                        "splitgraph.set_upstream")
        groups.setdefault(source, []).append(object_id)
    for source, ids in sorted(groups.items()):
        remote = Remote(plpy, source)
        connect(plpy, remote)
        download(plpy, remote, ids)
        db.notice(plpy, f"downloaded {len(ids)} object(s) from {remote.where()}")


# ---------------------------------------------------------------------------------------------------------------
# clone and pull
# ---------------------------------------------------------------------------------------------------------------

def _remote_metadata(plpy, remote, remote_repo):
    """Images, tags and branches of a remote repository."""
    if not db.scalar(plpy, f"select exists (select from {remote.table('repositories')} where repository = $1)",
                     remote_repo):
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'repository "{remote_repo}" does not exist on {remote.where()}')
    images = _json(plpy, f"""
        select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'image_hash', i.image_hash, 'parent_id', i.parent_id, 'created', i.created, 'comment', i.comment,
                   'provenance', i.provenance, 'merged', i.merged)), '[]')::text
        from {remote.table('images')} i where i.repository = $1""", remote_repo)
    tags = _json(plpy, f"""select coalesce(pg_catalog.jsonb_object_agg(t.tag, t.image_hash), '{{}}')::text
                           from {remote.table('tags')} t where t.repository = $1""", remote_repo)
    branches = _json(plpy, f"""select coalesce(pg_catalog.jsonb_object_agg(b.branch, b.image_hash), '{{}}')::text
                               from {remote.table('branches')} b where b.repository = $1""", remote_repo)
    return images, tags, branches


def _fetch(plpy, remote_name, remote_repo, local_repo, download_all, overwrite_tags, clone, options):
    remote = Remote(plpy, remote_name)
    connect(plpy, remote)
    images, tags, branches = _remote_metadata(plpy, remote, remote_repo)
    local = json.loads(db.scalar(plpy, "select splitgraph_internal.local_state($1, $2)", local_repo, clone))
    have = {i["image_hash"] for i in local["images"]}
    new = [i for i in images if isinstance(i, dict) and i.get("image_hash") not in have]
    new_hashes = sorted({i["image_hash"] for i in new if isinstance(i.get("image_hash"), str)})
    tables = _json(plpy, f"""
        select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'image_hash', t.image_hash, 'table_name', t.table_name, 'table_schema', t.table_schema,
                   'table_definition', t.table_definition, 'object_ids', t.object_ids)), '[]')::text
        from {remote.table('tables')} t where t.repository = $1 and t.image_hash = any($2::text[])""",
                   remote_repo, new_hashes) if new_hashes else []
    needed = {o for t in tables if isinstance(t, dict) and isinstance(t.get("object_ids"), list)
              for o in t["object_ids"] if isinstance(o, str) and _OBJECT_ID.fullmatch(o)}
    if download_all:
        needed |= set(local["object_ids"])
    states = json.loads(db.scalar(plpy, "select splitgraph_internal.object_states($1::text[])", sorted(needed)))
    stored, registered = set(states["stored"]), set(states["registered"])
    fetched = sorted(needed - stored) if download_all else []
    download(plpy, remote, fetched, options)
    lazy = sorted(needed - stored - registered - set(fetched))
    lazy_metadata = _json(plpy, f"""
        select coalesce(pg_catalog.jsonb_agg(pg_catalog.jsonb_build_object(
                   'object_id', o.object_id, 'format', o.format, 'namespace', o.namespace,
                   'rows_inserted', o.rows_inserted, 'rows_deleted', o.rows_deleted,
                   'insertion_hash', o.insertion_hash, 'deletion_hash', o.deletion_hash, 'index', o.index,
                   'table_schema', o.table_schema)), '[]')::text
        from {remote.table('objects')} o where o.object_id = any($1::text[])""", lazy) if lazy else []
    unchanged = (not new and not lazy and not fetched and local["exists"]
                 and all(local["tags"].get(t) == h for t, h in tags.items())
                 and all(local["branches"].get(b) == h for b, h in branches.items())
                 and (not clone or local["upstream"] == {"remote": remote.name, "remote_repository": remote_repo}))
    if unchanged:
        db.notice(plpy, f'"{local_repo}" is up to date with "{remote_repo}" on {remote.where()}')
        return
    payload = {"repository": local_repo, "remote": remote.name, "remote_repository": remote_repo, "images": new,
               "tables": tables, "objects": lazy_metadata, "tags": tags, "branches": branches,
               "overwrite_tags": bool(overwrite_tags), "upstream": clone}
    done = json.loads(db.scalar(plpy, "select splitgraph_internal.receive_metadata($1::jsonb)", db.Json(payload)))
    message = (f'{"cloned" if clone else "pulled"} {done["images"]} image(s) of "{remote_repo}" from {remote.where()} '
               f'into "{local_repo}": {len(fetched)} object(s) downloaded, {done["objects_registered"]} registered to '
               "download when a checkout needs them")
    if done["tags"] or done["branches"]:
        message += "; set " + ", ".join([f'tag "{t}"' for t in done["tags"]]
                                        + [f'branch "{b}"' for b in done["branches"]])
    if done["kept"]:
        message += "; left as they are here: " + "; ".join(done["kept"])
    db.notice(plpy, message)


@api("clone(remote text, remote_repository text, local_repository text default null, download_all boolean "
     "default false, handler_options jsonb default '{}') returns void",
     "clone(remote, remote_repository, local_repository, download_all, handler_options): copy every image, tag, "
     "branch and table version of a repository of one of the caller's remotes into local_repository (default: the "
     "same name), which gets it as its upstream; objects are downloaded when download_all, else when a checkout "
     "needs them; handler_options as push's (threads: objects downloaded from object storage at a time; "
     "s3_host); runs as the caller",
     security="invoker")
def clone(plpy, remote, remote_repository, local_repository=None, download_all=False, handler_options="{}"):
    options = _handler_options(plpy, handler_options)
    remote_repo = names.repository(plpy, remote_repository)
    local_repo = names.repository(plpy, local_repository or remote_repo)
    _fetch(plpy, remote, remote_repo, local_repo, download_all, False, True, options)


@api("pull(repository text, download_all boolean default false, overwrite_tags boolean default false, "
     "handler_options jsonb default '{}') returns void",
     "pull(repository, download_all, overwrite_tags, handler_options): new images, tags and branches from the "
     "repository's upstream; a tag that points elsewhere here moves only with overwrite_tags, a branch only "
     "forward (not the checked-out one); download_all downloads every object of the repository not stored here; "
     "handler_options as push's (threads: objects downloaded from object storage at a time; s3_host); runs as "
     "the caller",
     security="invoker")
def pull(plpy, repository, download_all=False, overwrite_tags=False, handler_options="{}"):
    options = _handler_options(plpy, handler_options)
    local = json.loads(db.scalar(plpy, "select splitgraph_internal.local_state($1, false)", repository))
    if local["upstream"] is None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f'repository "{local["repository"]}" has no '
                    "upstream", hint="set one with splitgraph.set_upstream, or clone the repository")
    _fetch(plpy, local["upstream"]["remote"], local["upstream"]["remote_repository"], local["repository"],
           download_all, overwrite_tags, False, options)


# ---------------------------------------------------------------------------------------------------------------
# push
# ---------------------------------------------------------------------------------------------------------------

@api("push(repository text, remote text default null, remote_repository text default null, handler text default "
     "'DB', handler_options jsonb default '{}') returns void",
     "push(repository, remote, remote_repository, handler, handler_options): send the images, table versions, "
     "objects, tags and branches the remote repository lacks (default: the upstream, or the same name there), "
     "checked and applied there as the role the remote logs in as; records the upstream when there is none; "
     "runs as the caller",
     security="invoker")
def push(plpy, repository, remote=None, remote_repository=None, handler="DB", handler_options="{}"):
    handler = handler.upper()
    if handler not in ("DB", "S3"):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"unknown push handler {handler!r}",
                    hint="use 'DB' (objects go to the remote engine) or 'S3' (to its object storage)")
    options = _handler_options(plpy, handler_options)
    local = json.loads(db.scalar(plpy, "select splitgraph_internal.local_state($1, false)", repository))
    repo, upstream = local["repository"], local["upstream"]
    if remote is None and upstream is None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f'repository "{repo}" has no upstream',
                    hint="name the remote: splitgraph.push(repository, remote)")
    remote_name = remote or upstream["remote"]
    if remote_repository is None:
        same = upstream is not None and upstream["remote"] == remote_name
        remote_repository = upstream["remote_repository"] if same else repo
    remote_repo = names.repository(plpy, remote_repository)
    target = Remote(plpy, remote_name)
    connect(plpy, target)
    twins = []
    for attempt in range(1, PUSH_ATTEMPTS + 1):
        try:
            with plpy.subtransaction():
                sent = _push_once(plpy, target, repo, remote_repo, local, handler, options)
            break
        except plpy.SPIError as error:
            if error.sqlstate not in ("40001", "40P01") or attempt == PUSH_ATTEMPTS:
                raise
            # Another push to the remote committed after this one's remote snapshot was taken (postgres_fdw's
            # remote transactions are REPEATABLE READ), or the two deadlocked: everything this attempt sent was
            # rolled back there. Try again through a new connection, whose transaction sees the other push.
            db.notice(plpy, f"another push to {target.where()} committed first: pushing again "
                            f"({str(error).splitlines()[0]})")
            server, target.suffix = remotes.twin(plpy, target.info, attempt)
            twins.append(server)
            connect(plpy, target)
    for server in twins:
        remotes.drop_twin(plpy, server)
    db.run(plpy, "select splitgraph_internal.push_upstream($1, $2, $3)", repo, target.name, remote_repo)
    if sent is None:
        db.notice(plpy, f'"{remote_repo}" on {target.where()} is up to date with "{repo}"')
    else:
        db.notice(plpy, f'pushed "{repo}" to "{remote_repo}" on {target.where()}: ' + ", ".join(
            f"{n} {what}" for what, n in sent.items()))


def _handler_options(plpy, handler_options):
    """The handler_options of push, clone and pull: {"threads": N (objects uploaded or downloaded at a time, 1 to
    64; default 4), "s3_host": "host[:port]" (how this engine reaches the remote's object storage; default: as
    the remote is configured)}."""
    try:
        options = json.loads(handler_options) if isinstance(handler_options, str) else (handler_options or {})
    except ValueError:
        options = None
    if not isinstance(options, dict) or set(options) - {"threads", "s3_host"}:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "handler_options must be a JSON object with keys among "
                    "threads and s3_host")
    threads = options.get("threads", DEFAULT_THREADS)
    if not _is_int(threads) or not 1 <= threads <= 64:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "handler_options threads must be an integer from 1 to 64")
    s3_host = options.get("s3_host")
    if s3_host is not None and not isinstance(s3_host, str):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "handler_options s3_host must be a string")
    return {"threads": threads, "s3_host": s3_host}


def _in_their_bucket(plpy, remote, object_ids):
    """The objects (of those given) the remote keeps in its object storage."""
    return set(db.column(plpy, f"""select l.object_id from {remote.table('object_locations')} l
                                   where l.object_id = any($1::text[])""", sorted(object_ids))) if object_ids else set()


def _urls(plpy, remote, method, repository, s3_host, object_ids):
    """Pre-signed URLs from the remote (splitgraph_remote.object_urls), in batches; one per object (for PUT, None
    for an object the remote has already)."""
    urls = []
    for start in range(0, len(object_ids), URL_BATCH):
        batch = object_ids[start:start + URL_BATCH]
        got = db.scalar(plpy, f"""insert into {remote.table('object_urls')} (repository, method, s3_host, object_ids)
                                  values ($1, $2, $3, $4::text[]) returning urls""",
                        repository, method, s3_host, batch)
        if not isinstance(got, list) or len(got) != len(batch):
            errors.fail(plpy, errors.DATA_CORRUPTED, f"{remote.where()} did not give one URL per object")
        urls += got
    # URLs from the remote: http(s), all to one store
    stores = {(p.scheme, p.netloc) for p in (urllib.parse.urlsplit(u) for u in urls if u is not None)}
    if len(stores) > 1 or any(scheme not in ("http", "https") or not netloc for scheme, netloc in stores):
        errors.fail(plpy, errors.DATA_CORRUPTED, f"{remote.where()} gave URLs that are not all http(s) URLs of "
                                                 "one store")
    return urls


def _upload(plpy, remote, remote_repo, object_ids, options):
    """Upload objects the remote lacks to its object storage through URLs it signs (those it has already are not
    uploaded again); returns their metadata, which the push registers there (step 'located')."""
    urls = _urls(plpy, remote, "PUT", remote_repo, options["s3_host"], object_ids)
    upload = [(o, u) for o, u in zip(object_ids, urls, strict=True) if u is not None]
    if upload:
        storage.put_objects(plpy, [o for o, _ in upload], [u for _, u in upload], options["threads"])
    metadata = json.loads(db.scalar(plpy, "select splitgraph_internal.object_metadata($1::text[])", object_ids))
    return metadata, len(upload)


def _push_once(plpy, remote, repo, remote_repo, local, handler="DB", options=None):
    """Send what the remote repository lacks; returns how many of each kind, or None when it lacks nothing. With
    handler S3, objects go to the remote's object storage (through URLs it signs) and only their metadata and
    locations to the remote."""
    theirs = _json(plpy, f"""select coalesce(pg_catalog.jsonb_agg(i.image_hash), '[]')::text
                             from {remote.table('images')} i where i.repository = $1""", remote_repo)
    their_tags = _json(plpy, f"""select coalesce(pg_catalog.jsonb_object_agg(t.tag, t.image_hash), '{{}}')::text
                                 from {remote.table('tags')} t where t.repository = $1""", remote_repo)
    their_branches = _json(plpy, f"""
        select coalesce(pg_catalog.jsonb_object_agg(b.branch, b.image_hash), '{{}}')::text
        from {remote.table('branches')} b where b.repository = $1""", remote_repo)
    theirs = set(theirs)
    missing = [i for i in local["images"] if i["image_hash"] not in theirs]
    missing = parents_first(plpy, missing, theirs | {i["image_hash"] for i in local["images"]}, "this engine")
    tables = json.loads(db.scalar(plpy, "select splitgraph_internal.local_tables($1, $2::text[])", repo,
                                  [i["image_hash"] for i in missing])) if missing else []
    needed = sorted({o for t in tables for o in t["object_ids"]})
    stored_there = set(db.column(plpy, f"""select o.object_id from {remote.table('objects')} o
                                           where o.object_id = any($1::text[]) and o.stored""", needed)) \
        if needed else set()
    if handler == "S3":
        stored_there |= _in_their_bucket(plpy, remote, needed)
    send_objects = [o for o in needed if o not in stored_there]
    if send_objects:
        states = json.loads(db.scalar(plpy, "select splitgraph_internal.object_states($1::text[])", send_objects))
        absent = sorted(set(send_objects) - set(states["stored"]))
        if absent:
            errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                        f"{len(absent)} object(s) the remote lacks are not stored on this engine either: "
                        + ", ".join(absent[:5]), hint=f'download them first: splitgraph.pull("{repo}", '
                                                      "download_all => true), or check the images out")
    tags = [{"tag": t, "image_hash": h} for t, h in sorted(local["tags"].items()) if their_tags.get(t) != h]
    branches = [{"branch": b, "image_hash": h} for b, h in sorted(local["branches"].items())
                if their_branches.get(b) != h]
    if not (missing or send_objects or tags or branches):
        return None
    # One statement: the steps in order (repository, objects, images parents first, tables, tags, branches), each
    # object's dump made as its row goes (PostgreSQL computes the costly select list after sorting), in batches.
    uploaded = None
    if handler == "S3" and send_objects:
        metadata, uploaded = _upload(plpy, remote, remote_repo, send_objects, options)
        steps = [{"kind": "repository"}] + [{"kind": "located", "payload": {"objects": metadata[i:i + URL_BATCH]}}
                                            for i in range(0, len(metadata), URL_BATCH)]
    else:
        steps = [{"kind": "repository"}] + [{"kind": "object", "payload": {"object_id": o}} for o in send_objects]
    for kind, items in (("image", missing), ("table", tables), ("tag", tags), ("branch", branches)):
        steps += [{"kind": kind, "payload": item} for item in items]
    query = f"""
        insert into {remote.table("requests")} (repository, kind, payload, dump)
        select $1, s.kind, s.payload,
               case when s.kind = 'object' then splitgraph_internal.dump_for_transfer(s.payload ->> 'object_id') end
        from rows from (pg_catalog.jsonb_to_recordset($2::jsonb) as (kind text, payload jsonb))
             with ordinality as s (kind, payload, n)
        order by s.n"""
    for start in range(0, len(steps), TRANSFER_BATCH):
        db.run(plpy, query, remote_repo, db.Json(steps[start:start + TRANSFER_BATCH]))
        if len(steps) > TRANSFER_BATCH:
            done = min(start + TRANSFER_BATCH, len(steps))
            db.notice(plpy, f'pushed steps ({done}/{len(steps)}) of "{repo}" to {remote.where()}')
    sent = {"image(s)": len(missing), "table version(s)": len(tables), "object(s)": len(send_objects),
            "tag(s)": len(tags), "branch(es)": len(branches)}
    if uploaded is not None:
        sent["object(s) uploaded to object storage"] = uploaded
    return sent


# ---------------------------------------------------------------------------------------------------------------
# The remote side of a push: splitgraph_remote.requests
# ---------------------------------------------------------------------------------------------------------------

# What pushes did in this session's transaction: {transaction id: {"repositories": {repository: images
# registered by it}, "schemas": table schemas checked}}.
_PUSHES = {}


def _pushing(plpy, repository):
    """The repository a push writes, checked once per transaction: a valid name the session's user may write
    (42501 otherwise); made when missing (not checked out), and locked against other writers until the end of
    the transaction. Returns the set of images this transaction registered in it."""
    xid = db.scalar(plpy, "select pg_catalog.pg_current_xact_id()::text")
    for old in [k for k in _PUSHES if k != xid]:
        del _PUSHES[old]
    pushes = _PUSHES.setdefault(xid, {"repositories": {}, "schemas": set()})
    if not isinstance(repository, str) or repository not in pushes["repositories"]:
        repo = names.repository(plpy, repository)
        meta.check_write(plpy, repo)
        db.run(plpy, "insert into splitgraph_meta.repositories (repository) values ($1) on conflict do nothing",
               repo)
        meta.lock(plpy, repo)
        pushes["repositories"][repo] = set()
    return pushes["repositories"][repository], pushes["schemas"]


@helper("receive(repository text, kind text, payload jsonb, dump bytea) returns void",
        "receive(repository, kind, payload, dump): one step of a push from another engine (the trigger of "
        "splitgraph_remote.requests), checked and applied as the session's user")
def receive(plpy, repository, kind, payload, dump):
    made, schemas = _pushing(plpy, repository)
    item = json.loads(payload) if payload is not None else None
    source = "the pushing engine"
    if kind == "repository":
        return
    if kind == "object":
        object_id = item.get("object_id") if isinstance(item, dict) else None
        if not isinstance(object_id, str) or not _OBJECT_ID.fullmatch(object_id) or dump is None:
            _refuse(plpy, source, "an object without a valid id or dump")
        objects.store_dump(plpy, object_id, dump, names.namespace_of(repository))
    elif kind == "located":
        items = item.get("objects") if isinstance(item, dict) else None
        if not isinstance(items, list) or not items or len(items) > URL_BATCH:
            _refuse(plpy, source, f"a located step without 1 to {URL_BATCH} objects")
        storage.register_located(plpy, names.namespace_of(repository),
                                 [check_object_metadata(plpy, o, source) for o in items])
    elif kind == "image":
        _receive_image(plpy, repository, check_image(plpy, item, source), made)
    elif kind == "table":
        _receive_table(plpy, repository, check_table(plpy, item, source, schemas), made)
    elif kind in ("tag", "branch"):
        name = item.get(kind) if isinstance(item, dict) else None
        image_hash = item.get("image_hash") if isinstance(item, dict) else None
        if not (names.is_tag(name) if kind == "tag" else names.is_branch(name)) or not _is_hash(image_hash):
            _refuse(plpy, source, f"a {kind} without a valid name or image hash")
        if not db.scalar(plpy, """select exists (select from splitgraph_meta.images
                                                 where repository = $1 and image_hash = $2)""",
                         repository, image_hash):
            errors.fail(plpy, errors.UNDEFINED_OBJECT, f'{kind} "{name}" names image {image_hash}, which repository '
                                                       f'"{repository}" does not have here')
        (_receive_tag if kind == "tag" else _receive_branch)(plpy, repository, name, image_hash)
    else:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"unknown request kind {kind!r}",
                    hint="kinds: repository, object, located, image, table, tag, branch")


def _receive_image(plpy, repo, image, made):
    same = db.scalar(plpy, """
        select i.image_hash = $7
               or (i.parent_id is not distinct from $3 and i.created = $4::timestamptz
                   and i.comment is not distinct from $5 and i.provenance is not distinct from $6::jsonb
                   and (select m.parent_id from splitgraph_meta.merge_parents m
                        where m.repository = i.repository and m.image_hash = i.image_hash
                        order by m.parent_id limit 1) is not distinct from $8)
        from splitgraph_meta.images i where i.repository = $1 and i.image_hash = $2""",
                     repo, image["image_hash"], image["parent_id"], image["created"], image["comment"],
                     None if image["provenance"] is None else json.dumps(image["provenance"]), meta.ROOT,
                     image["merged"])
    if same is not None:
        # every repository's root is the same empty image, whenever and wherever it was made
        if not same:
            errors.fail(plpy, errors.DUPLICATE_OBJECT,
                        f'image {image["image_hash"]} of repository "{repo}" exists here with other metadata',
                        hint="images never change: an image is pushed once, with the metadata it was made with")
        return
    for parent in _parents(image):
        if not db.scalar(plpy, """select exists (select from splitgraph_meta.images
                                                 where repository = $1 and image_hash = $2)""", repo, parent):
            errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                        f'the parent {parent} of image {image["image_hash"]} is not in repository "{repo}"',
                        hint="push an image after its parents")
    _insert_images(plpy, repo, [image], source="the pushing engine")
    made.add(image["image_hash"])


def _receive_table(plpy, repo, table, made):
    if table["image_hash"] not in made:
        same = db.scalar(plpy, """
            select t.table_schema = $4::jsonb and t.object_ids = $5::text[]
                   and t.table_definition is not distinct from $6::jsonb
            from splitgraph_meta.tables t where t.repository = $1 and t.image_hash = $2 and t.table_name = $3""",
                         repo, table["image_hash"], table["table_name"], json.dumps(table["table_schema"]),
                         table["object_ids"], None if table["table_definition"] is None
                         else json.dumps(table["table_definition"]))
        if not same:
            errors.fail(plpy, errors.DUPLICATE_OBJECT,
                        f'image {table["image_hash"]} of repository "{repo}" exists here without table '
                        f'"{table["table_name"]}" as sent',
                        hint="images never change: their tables arrive with them, in the same push")
        return
    # every object registered, and stored here or kept in this engine's object storage
    lacking = db.column(plpy, """
        select u.id from pg_catalog.unnest($1::text[]) u (id)
        where not exists (select from splitgraph_meta.objects o where o.object_id = u.id)
           or (pg_catalog.to_regclass(pg_catalog.format('splitgraph_meta.%I', u.id)) is null
               and not exists (select from splitgraph_meta.object_locations l
                               where l.object_id = u.id and l.protocol = $2))
        limit 1""", table["object_ids"], storage.PROTOCOL)
    if lacking:
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f"object {lacking[0]} is neither stored on this engine nor kept in "
                                                   "its object storage", hint="push the objects with the table")
    _insert_tables(plpy, repo, [table])


def _receive_tag(plpy, repo, tag, image_hash):
    if db.scalar(plpy, "select exists (select from splitgraph_meta.branches where repository = $1 and branch = $2)",
                 repo, tag):
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{tag}" is a branch of repository "{repo}" here')
    db.run(plpy, """insert into splitgraph_meta.tags (repository, tag, image_hash) values ($1, $2, $3)
                    on conflict (repository, tag) do update set image_hash = excluded.image_hash
                    where tags.image_hash <> excluded.image_hash""", repo, tag, image_hash)


def _receive_branch(plpy, repo, branch, image_hash):
    if db.scalar(plpy, "select exists (select from splitgraph_meta.tags where repository = $1 and tag = $2)",
                 repo, branch):
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{branch}" is a tag of repository "{repo}" here')
    head = db.scalar(plpy, "select image_hash from splitgraph_meta.branches where repository = $1 and branch = $2",
                     repo, branch)
    if head is None:
        db.run(plpy, "insert into splitgraph_meta.branches (repository, branch, image_hash) values ($1, $2, $3)",
               repo, branch, image_hash)
    elif head == image_hash or is_ancestor(plpy, repo, image_hash, head):
        return  # the same, or this engine's is ahead
    elif not is_ancestor(plpy, repo, head, image_hash):
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'branch "{branch}" of repository "{repo}" has diverged: its head here, {head[:12]}, is not an '
                    f"ancestor of {image_hash[:12]}", hint="pull, and commit on top of its head, then push again")
    elif db.scalar(plpy, "select exists (select from splitgraph_meta.checkouts where repository = $1 and branch = $2)",
                   repo, branch):
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'branch "{branch}" of repository "{repo}" is checked out here',
                    hint="check out another branch or image there first")
    else:
        db.run(plpy, "update splitgraph_meta.branches set image_hash = $3 where repository = $1 and branch = $2",
               repo, branch, image_hash)
