"""Images: committing the checkout as a new image, and reading the history."""
import enum
import heapq
import json

from . import changes, db, definitions, errors, fragments, meta, names, second_session, tracking
from . import tables as tbl
from .declare import api

_INDEX_TYPES = ("range", "bloom")
# Bounds of a bloom filter: a size in bytes (the filter of every fragment has it, however few its values: 64 KiB
# take about 0.4 s per fragment), and a false-positive probability (1e-9 needs 30 hash functions per value).
BLOOM_MAX_SIZE = 65536
BLOOM_MIN_PROBABILITY = 1e-9


def _chunk_size(plpy, chunk_size):
    if chunk_size is None:
        return fragments.DEFAULT_CHUNK_SIZE
    if chunk_size < 1:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"chunk_size must be at least 1, not {chunk_size}")
    return chunk_size


def _index_options(plpy, index_options, table_names):
    """Validate {"range": {table: [columns]}, "bloom": {table: {column: {"probability": p} | {"size": bytes}}}}."""
    if index_options is None:
        return {}, {}
    options = json.loads(index_options)
    if not isinstance(options, dict):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "index_options must be a JSON object")
    unknown = [k for k in options if k not in _INDEX_TYPES]
    if unknown:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"unknown index type {unknown[0]!r}",
                    hint="index types are range and bloom")
    ranges, blooms = options.get("range", {}), options.get("bloom", {})
    for kind, spec in (("range", ranges), ("bloom", blooms)):
        if not isinstance(spec, dict):
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"index_options.{kind} must map table names to columns")
        for table in spec:
            if table not in table_names:
                errors.fail(plpy, errors.UNDEFINED_TABLE, f'index_options.{kind} names table "{table}", '
                                                          "which the checkout does not have")
    for table, columns in ranges.items():
        if not isinstance(columns, list) or not all(isinstance(c, str) for c in columns):
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f'index_options.range.{table} must be a list of columns')
    for table, columns in blooms.items():
        if not isinstance(columns, dict):
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                        f'index_options.bloom.{table} must map columns to {{"probability": p}} or {{"size": bytes}}')
        for column, opts in columns.items():
            probability, size = (opts.get("probability"), opts.get("size")) if isinstance(opts, dict) else (None, None)
            ok = isinstance(opts, dict) and len(opts) == 1 and (
                (isinstance(probability, (int, float)) and not isinstance(probability, bool)
                 and BLOOM_MIN_PROBABILITY <= probability < 1)
                or (isinstance(size, int) and not isinstance(size, bool) and 0 < size <= BLOOM_MAX_SIZE))
            if not ok:
                errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                            f'bloom index of "{table}"."{column}" needs exactly one of probability '
                            f"({BLOOM_MIN_PROBABILITY:g} <= p < 1) or size (bytes, 1 to {BLOOM_MAX_SIZE})",
                            hint="a filter's work grows with its size in bits (and, for a probability, with the "
                                 "number of hash functions it needs): these bounds keep one commit's work in "
                                 "proportion to its data")
    return ranges, blooms


def _check_columns(plpy, table, cols, wanted, kind):
    known = {c.name for c in cols}
    for name in wanted:
        if name not in known:
            errors.fail(plpy, "42703", f'index_options.{kind} names column "{name}", which table "{table}" lacks')


class Stored(enum.Enum):
    """How a table was stored for a new image."""
    UNCHANGED = "unchanged"  # HEAD's objects
    DELTA = "delta"  # HEAD's objects and one fragment of the net changes
    SNAPSHOT = "snapshot"  # the table's rows, chunked


def store_table(plpy, schema, table, cols, head, tracked, snapshot, chunk_size, namespace, bloom=None,
                max_objects=None, second=None):
    """The object list of a table for a new image (head: HEAD's TableVersion of it, or None), and how it was
    stored (Stored). A snapshot of more than max_objects chunks is refused (54000)."""
    trusted = tracked is not None and tracked["state"] == "tracking"
    if not snapshot and head is not None and tbl.same_schema(head.spec, cols) and trusted:
        if not tracking.logged(plpy, tracked):
            return head.object_ids, Stored.UNCHANGED
        if tbl.key_columns(cols):
            object_id = changes.store_changes(plpy, cols, changes.keyed_changes(plpy, tracked, schema, table, cols),
                                              namespace)
            if object_id is None:
                return head.object_ids, Stored.UNCHANGED
            return head.object_ids + [object_id], Stored.DELTA
        delta = changes.from_log(plpy, tracked, schema, table, cols)
        if delta is not None:
            try:
                if not delta.changed(plpy):
                    return head.object_ids, Stored.UNCHANGED
                return head.object_ids + [changes.store_delta(plpy, cols, delta, namespace)], Stored.DELTA
            finally:
                delta.drop(plpy)
    # A second session copies every chunk while it hashes: only for a table that has no version of its schema in
    # HEAD, whose chunks are new (with one, the rows are hashed first and only the chunks HEAD lacks copied).
    if head is not None and tbl.same_schema(head.spec, cols):
        second = None
    return (fragments.store_snapshot(plpy, schema, table, cols, chunk_size, namespace, bloom, max_objects, second),
            Stored.SNAPSHOT)


@api("commit(repository text, comment text default null, snapshot boolean default false, chunk_size integer "
     "default null, index_options jsonb default null) returns text",
     "commit(repository, comment, snapshot, chunk_size, index_options): commit the checkout as a new image "
     "(random hash, returned); tables are stored as content-addressed fragments of chunk_size rows (default "
     "10000); index_options e.g. {\"bloom\": {\"t\": {\"col\": {\"probability\": 0.01}}}}")
def commit(plpy, repository, comment=None, snapshot=False, chunk_size=None, index_options=None):
    tracking.require_read_committed(plpy, "commit")
    # asked before this transaction writes anything (even a row lock): see second_session
    second = second_session.SecondSession.for_commit(plpy)
    try:
        return _commit(plpy, repository, comment, snapshot, chunk_size, index_options, second)
    finally:
        if second is not None:
            second.close(plpy)


def _commit(plpy, repository, comment, snapshot, chunk_size, index_options, second):
    repo = meta.writable(plpy, repository)
    state = meta.require_checkout(plpy, repo)
    chunk_size = _chunk_size(plpy, chunk_size)
    if comment is not None and len(comment) > 4096:
        errors.fail(plpy, "22001", "commit comment is longer than 4096 characters")
    return commit_checkout(plpy, repo, state, comment, snapshot, chunk_size, index_options, second=second)


def commit_checkout(plpy, repo, state, comment, snapshot=False, chunk_size=fragments.DEFAULT_CHUNK_SIZE,
                    index_options=None, image_hash=None, provenance=None, detach=False, second=None):
    """Commit the checkout of repo (locked, writable; state: its checkout state) as a new image with hash
    image_hash (else random) and provenance; HEAD moves to it (and its branch, unless detach). Returns it.
    second: a second_session.SecondSession that may hash snapshots (asked for before the transaction wrote)."""
    parent = state["image_hash"]
    # A layered checkout is read-only views over the fragments of HEAD: nothing can have changed.
    image_hash = meta.new_image(plpy, repo, parent, comment, with_parent_tables=state["layered"],
                                image_hash=image_hash, provenance=provenance)
    if not state["layered"]:
        schema = names.schema_of(repo)
        table_names = tbl.list_tables(plpy, schema)
        ranges, blooms = _index_options(plpy, index_options, table_names)
        namespace = names.namespace_of(repo)
        head_tables = meta.image_tables(plpy, repo, parent)
        # A consistent view of the tables (and their logs) for the whole commit: writers wait until it is done,
        # and the logs are verified only now, when nothing can bypass them any more (LOCK runs no code).
        if table_names:
            plpy.execute("lock table " + ", ".join(names.qualified(schema, t) for t in table_names)
                         + " in share mode")
        tracked = tracking.schema_tracking(plpy, schema)
        stored = {}
        budget = fragments.object_limit(plpy)  # objects this commit may still create
        for n, table in enumerate(table_names, 1):
            # values of types that are not built-in are stored as built-in types (tables.storage_ctes): storing
            # them runs no code of the table's (not even a domain's checks)
            # read only what runs no code and what the caller may read (0A000, 42501)
            tbl.source(plpy, schema, table)
            cols = tbl.columns(plpy, schema, table)
            _check_columns(plpy, table, cols, ranges.get(table, []), "range")
            _check_columns(plpy, table, cols, blooms.get(table, {}), "bloom")
            if table in ranges:
                for c in cols:
                    c.ranged = c.ranged and (c.is_pk or c.name in ranges[table])
            head = head_tables.get(table)
            object_ids, how = store_table(plpy, schema, table, cols, head, tracked.get(table),
                                          snapshot, chunk_size, namespace, blooms.get(table), budget, second)
            budget -= len(set(object_ids) - set(head.object_ids if head is not None else []))
            stored[table] = how
            meta.add_table(plpy, repo, image_hash, table, [c.spec() for c in cols], object_ids,
                           definitions.capture(plpy, schema, table, cols))
            db.notice(plpy, f'committed table "{table}" ({n}/{len(table_names)}): {how.value}, '
                            f"{len(object_ids)} object(s)")
        # The new image is the base of every log from now on.
        tracking.forget_schema_except(plpy, schema, table_names)
        for table, how in stored.items():
            if how is Stored.SNAPSHOT or table not in tracked:
                tracking.track(plpy, schema, table)
            else:
                tracking.restart(plpy, tracked[table])
    meta.move_head(plpy, repo, state, image_hash, detach)
    return image_hash


_IMAGE_COLUMNS = """
    i.image_hash, i.parent_id, i.created, i.comment,
    array(select t.tag from splitgraph_meta.tags t
          where t.repository = i.repository and t.image_hash = i.image_hash order by t.tag) as tags"""


@api("log(repository text, image text default 'HEAD') returns table (image_hash text, parent_id text, created "
     "timestamptz, comment text, tags text[])",
     "log(repository, image = HEAD): the image and its ancestors (through both parents of a merge), newest first, "
     "with their tags",
     volatility="stable")
def log(plpy, repository, image="HEAD"):
    """parent_id is an image's first parent; a merge image's second parent is in show()'s parents. Every image
    comes before its parents (a linear history in its chain's order, whatever the images' creation times: images
    copied from another repository or engine keep theirs); of the images whose children are all listed, the
    newest comes first."""
    repo = meta.require(plpy, repository)
    image_hash, _ = meta.resolve(plpy, repo, image)
    ancestry = db.run(plpy, f"""
        with recursive chain (image_hash) as (
            select $2::text
            union
            select p.parent_id from chain c cross join {meta.parents_of('c')}
        )
        select x.image_hash, array(select p.parent_id from {meta.parents_of('x')}) as parents
        from chain c join splitgraph_meta.images x on x.repository = $1 and x.image_hash = c.image_hash
        order by x.created desc, x.seq desc""", repo, image_hash)
    return db.run(plpy, f"""
        select {_IMAGE_COLUMNS}
        from pg_catalog.unnest($2::text[]) with ordinality as u (image_hash, n)
        join splitgraph_meta.images i on i.repository = $1 and i.image_hash = u.image_hash
        order by u.n""", repo, children_first([(r["image_hash"], list(r["parents"])) for r in ancestry]))


def children_first(images):
    """Hashes of `images` ([(hash, [parent hashes])], newest first) ordered so that every image comes before its
    parents; among the images whose children are all placed, the newest (earliest in the list) comes first."""
    rank = {h: n for n, (h, _) in enumerate(images)}
    children = {h: 0 for h in rank}
    for _, parents in images:
        for p in parents:
            if p in children:
                children[p] += 1
    ready = [rank[h] for h, n in children.items() if n == 0]
    heapq.heapify(ready)
    order = []
    while ready:
        h, parents = images[heapq.heappop(ready)]
        order.append(h)
        for p in parents:
            if p in children:
                children[p] -= 1
                if children[p] == 0:
                    heapq.heappush(ready, rank[p])
    return order


@api("images(repository text) returns table (image_hash text, parent_id text, created timestamptz, comment text, "
     "tags text[])",
     "images(repository): every image of the repository, oldest first",
     volatility="stable")
def images(plpy, repository):
    repo = meta.require(plpy, repository)
    return db.run(plpy, f"""select {_IMAGE_COLUMNS} from splitgraph_meta.images i where i.repository = $1
                            order by i.created, i.seq""", repo)


@api("show(repository text, image text) returns jsonb",
     "show(repository, image): {image_hash, parent_id, parents, created, comment, tags, tables: {name: [columns]}, "
     "provenance}; parents lists both parents of a merge image",
     volatility="stable")
def show(plpy, repository, image):
    repo = meta.require(plpy, repository)
    image_hash, _ = meta.resolve(plpy, repo, image)
    return db.scalar(plpy, """
        select pg_catalog.jsonb_build_object(
            'image_hash', i.image_hash, 'parent_id', i.parent_id,
            'parents', to_jsonb(array(select p.parent_id from (
                                          select i.parent_id, 0 as n where i.parent_id is not null
                                          union all
                                          select m.parent_id, 1 from splitgraph_meta.merge_parents m
                                          where m.repository = i.repository and m.image_hash = i.image_hash) p
                                      order by p.n, p.parent_id)),
            'created', i.created, 'comment', i.comment,
            'tags', to_jsonb(array(select t.tag from splitgraph_meta.tags t
                                   where t.repository = i.repository and t.image_hash = i.image_hash order by t.tag)),
            'tables', coalesce((select pg_catalog.jsonb_object_agg(t.table_name,
                                          (select pg_catalog.jsonb_agg(c -> 1 order by (c ->> 0)::int)
                                           from pg_catalog.jsonb_array_elements(t.table_schema) c))
                                from splitgraph_meta.tables t
                                where t.repository = i.repository and t.image_hash = i.image_hash), '{}'),
            'provenance', i.provenance)::text
        from splitgraph_meta.images i where i.repository = $1 and i.image_hash = $2""", repo, image_hash)


def _delete_images(plpy, repo, hashes):
    return db.scalar(plpy, """with gone as (delete from splitgraph_meta.images
                                            where repository = $1 and image_hash = any($2::text[]) returning 1)
                              select count(*) from gone""", repo, hashes)


@api("delete_image(repository text, image text, force boolean default false) returns integer",
     "delete_image(repository, image, force): delete the image and its descendants (merges of it too); refused "
     "when HEAD is among "
     "them, and, unless force, when a branch head or a tagged image is (force deletes those branches and tags "
     "too); returns how many images went")
def delete_image(plpy, repository, image, force=False):
    """Delete an image and its descendants; objects stay until cleanup()."""
    repo = meta.writable(plpy, repository)
    image_hash, _ = meta.resolve(plpy, repo, image)
    if image_hash == meta.ROOT:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, "the root image cannot be deleted",
                    hint="delete the repository with splitgraph.rm")
    doomed = db.column(plpy, f"""
        with recursive d (image_hash) as (
            select $2::text
            union
            select p.image_hash from d cross join {meta.children_of('d')}
        ) select image_hash from d""", repo, image_hash)
    state = meta.checkout_state(plpy, repo)
    if state is not None and state["image_hash"] in doomed:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'image {image_hash[:12]} is the checked-out HEAD of repository "{repo}" or an ancestor of it',
                    hint="check out another image first")
    if not force:
        needed = db.column(plpy, """
            select pg_catalog.format('%s "%s" (%s)', kind, name, pg_catalog.left(image_hash, 12)) from (
                select 'branch' as kind, branch as name, image_hash from splitgraph_meta.branches
                where repository = $1 and image_hash = any($2::text[])
                union all
                select 'tag', tag, image_hash from splitgraph_meta.tags
                where repository = $1 and image_hash = any($2::text[])
            ) n order by kind, name""", repo, doomed)
        if needed:
            errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                        f"deleting image {image_hash[:12]} (and its {len(doomed) - 1} descendant(s)) would also "
                        "delete " + ", ".join(needed[:5]) + (f" and {len(needed) - 5} more" if len(needed) > 5
                                                             else ""),
                        hint="pass force => true to delete them with the images, or move them to other images "
                             "first")
    return _delete_images(plpy, repo, doomed)


@api("prune(repository text) returns integer",
     "prune(repository): delete the images that are neither tagged, a branch head, HEAD, nor an ancestor of one "
     "(through either parent of a merge); "
     "returns how many, and lists them in a NOTICE")
def prune(plpy, repository):
    """Delete the images that are neither tagged, a branch head, HEAD, nor an ancestor of one of those."""
    repo = meta.writable(plpy, repository)
    doomed = db.column(plpy, f"""
        with recursive kept (image_hash) as (
            select image_hash from splitgraph_meta.tags where repository = $1
            union select image_hash from splitgraph_meta.branches where repository = $1
            union select image_hash from splitgraph_meta.checkouts where repository = $1
            union select $2::text
            union
            select p.parent_id from kept k cross join {meta.parents_of('k')}
        )
        select i.image_hash from splitgraph_meta.images i
        where i.repository = $1 and i.image_hash not in (select image_hash from kept)
        order by i.created, i.seq""", repo, meta.ROOT)
    if not doomed:
        return 0
    deleted = _delete_images(plpy, repo, doomed)
    db.notice(plpy, f'pruned {deleted} image(s) of repository "{repo}" that no branch, tag or HEAD reached: '
                    + ", ".join(doomed[:20]) + (f" and {len(doomed) - 20} more" if len(doomed) > 20 else ""))
    return deleted


@api("store_fragment(schema text, table_name text, snapshot boolean default false, chunk_size integer default "
     "null) returns text[]",
     "store_fragment(schema, table_name, snapshot, chunk_size): store the table as objects without committing; "
     "returns the object list that rebuilds it (a checkout's table: HEAD's fragments plus one of its pending "
     "changes, unless snapshot)")
def store_fragment(plpy, schema, table_name, snapshot=False, chunk_size=None):
    """Store a table's current contents as objects without committing; returns the object list that rebuilds
    it: for a table of a checkout, HEAD's fragments plus one of the pending changes; otherwise a snapshot."""
    tbl.require(plpy, schema, table_name)
    repo = meta.repository_of_schema(plpy, schema)
    if repo is not None:
        meta.check_write(plpy, repo)
    elif not meta.caller_is_admin(plpy):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "only superusers may store fragments of other schemas")
    cols = tbl.columns(plpy, schema, table_name)
    tbl.source(plpy, schema, table_name)
    plpy.execute(f"lock table {names.qualified(schema, table_name)} in share mode")
    head = None
    if repo is not None:
        state = meta.checkout_state(plpy, repo)
        head = meta.image_tables(plpy, repo, state["image_hash"]).get(table_name)
    ids, _ = store_table(plpy, schema, table_name, cols, head, tracking.registry(plpy, schema, table_name),
                         snapshot, _chunk_size(plpy, chunk_size), names.namespace_of(repo or ""),
                         max_objects=fragments.object_limit(plpy))
    return ids
