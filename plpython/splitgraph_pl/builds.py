"""Splitfile builds: each command of a Splitfile makes one image whose hash is derived from the image before it and
the command's inputs, so an unchanged command finds its image and runs no more (a cached layer); and the
provenance of what was built, which reconstructs the Splitfile and rebuilds it against other sources.

Image hashes (DESIGN.md), all sha256 of concatenated hex strings:
    IMPORT  sha256(parent + source image + sha256(each table name, or query as printed back) + sha256(each alias))
    SQL     sha256(parent + sha256(the statements as printed back, image references pinned to full hashes))
    custom  sha256(parent + calc_hash(repository, args)); never cached when there is no calc_hash
    MOUNT   random (a mount reads its source anew; its objects are content-addressed all the same)

build() runs as its caller: SQL steps, import queries, mounts and custom commands run with the caller's rights
against the output's checkout. The extension's tables are reached through the build_* helpers, which check the
caller's write rights and derive every image hash themselves from what the step is made of: a role can make
images with derived hashes only in repositories it may write.

Provenance: every image a build makes records the commands of its stage up to it (a list of entries {type, ...,
sources: [{repository, image}]}); reconstruct_splitfile writes them back as a Splitfile with full hashes.
"""
import json
import re

from . import (
    checkout,
    db,
    errors,
    fragments,
    hashing,
    images,
    imports,
    meta,
    names,
    pending,
    queries,
    splitfiles,
    tracking,
)
from . import tables as tbl
from .declare import api, helper

ROOT = meta.ROOT
CANCELED = "57014"
_TYPES = ("FROM", "IMPORT", "SQL", "CUSTOM", "MOUNT")
_COMMENT_LENGTH = 4096
_PYTHON_PREFIX = re.compile(r"^(?:(?:plpy\.Error|spiexceptions\.[A-Za-z]+): )+")


def import_hash(parent, source_image, tables, aliases):
    return hashing.combine([parent, source_image] + [hashing.sha(t) for t in tables]
                           + [hashing.sha(a) for a in aliases])


def sql_hash(parent, sql):
    return hashing.combine([parent, hashing.sha(sql)])


def custom_hash(parent, calculated):
    return hashing.combine([parent, calculated])


def _cut(text):
    return text if len(text) <= _COMMENT_LENGTH else text[:_COMMENT_LENGTH - 3] + "..."


def _sqlstate(error):
    return getattr(error, "sqlstate", None) or "XX000"


def _error_parts(error):
    """(message, detail, hint) of a caught plpy.Error or SPIError, without the prefixes PL/Python gives the
    message of an error raised in Python (as tidy_error takes them off for the doors)."""
    data = getattr(error, "spidata", None)
    detail, hint = (data[1], data[2]) if data else (getattr(error, "detail", None), getattr(error, "hint", None))
    message = str(error.args[0] if error.args else error).strip()
    return _PYTHON_PREFIX.sub("", message), detail, hint


# ---------------------------------------------------------------------------------------------------------------
# Running a Splitfile (as the caller)
# ---------------------------------------------------------------------------------------------------------------

class _Stopped(Exception):
    """The build stopped: what failed (label), the error, and the last image built for the repository."""

    def __init__(self, label, error, repository, current):
        super().__init__(label)
        self.label, self.error, self.repository, self.current = label, error, repository, current


class _Build:
    """One run of a Splitfile. outputs: for each output repository, what the build knows of its checkout
    ({exists, image, layered}: image is the checkout's HEAD, or None when unknown); finals: the last image of
    each stage already built, by repository (a later stage's reference to the repository without a tag means
    it)."""

    def __init__(self, plpy, parsed, keep_layers):
        self.plpy, self.parsed, self.keep = plpy, parsed, keep_layers
        self.outputs, self.finals, self.prepared, self.images, self.created = {}, {}, {}, {}, set()

    def fail(self, error):
        errors.fail(self.plpy, error.code, error.text(), hint=error.hint, detail=error.detail())

    # -- before anything runs: every name, right, command and statement is checked ---------------------------
    def prepare(self):
        plpy = self.plpy
        for stage in self.parsed.stages:
            names.repository(plpy, stage.output)
            if names.reserved_schema(names.schema_of(stage.output)):
                errors.fail(plpy, errors.INVALID_NAME, f'repository "{stage.output}" cannot be an output: its checkout '
                                                       "would be a schema of the system or the extension",
                            hint="choose a repository name that is not public, information_schema, pg_*, "
                                 "splitgraph* or sg_query_*")
            if stage.output not in self.outputs:
                self.outputs[stage.output] = json.loads(db.scalar(plpy, "select splitgraph_internal.build_output($1)",
                                                                  stage.output))
            for command in stage.commands:
                self.prepared[id(command)] = self._prepare(stage, command)
        # every image named that no stage of this build makes must exist
        built = {stage.output for stage in self.parsed.stages}
        for command in self.parsed.commands():
            images = []
            if command.kind == "FROM" or (command.kind == "IMPORT" and isinstance(command.source, splitfiles.Image)):
                image = command.image if command.kind == "FROM" else command.source
                images.append((image.repository, image.ref, image.position))
            elif command.kind == "SQL":
                images += [(source, ref, command.sql.position(location))
                           for source, ref, _, location in self.prepared[id(command)].references.values()]
            for source, ref, position in images:
                if source not in built:
                    self._resolvable(source, ref, position)

    def _resolvable(self, repository, ref, position):
        plpy = self.plpy
        try:
            with plpy.subtransaction():
                db.scalar(plpy, "select splitgraph_internal.build_resolve($1, $2)", repository, ref)
        except plpy.SPIError as error:
            if _sqlstate(error) == CANCELED:
                raise
            message, _, hint = _error_parts(error)
            self.fail(self.parsed.error(message, position, hint, _sqlstate(error)))

    def _prepare(self, stage, command):
        plpy = self.plpy
        if command.kind == "SQL":
            return self._checked(command.sql, lambda: queries.SqlStep(plpy, command.sql.value, stage.output))
        if command.kind == "IMPORT":
            if isinstance(command.source, splitfiles.Mount) and not db.scalar(
                    plpy, "select exists (select from splitgraph.mount_handlers() where name = $1)",
                    command.source.handler):
                self.fail(self.parsed.error(f'unknown mount handler "{command.source.handler}"',
                                            command.source.position, "see splitgraph.mount_handlers()",
                                            errors.UNDEFINED_OBJECT))
            return [None if item.query is None else
                    self._checked(item.query, lambda q=item.query: queries.canonical_query(plpy, q.value))
                    for item in command.items or []]
        found = json.loads(db.scalar(plpy, "select splitgraph_internal.build_command($1)::text", command.name))
        if found.get("execute") is None:
            known = ", ".join(found.get("known") or []) or "none is registered"
            hint = f"commands: {known}" + ("; keywords are upper case (FROM, SQL)"
                                           if command.name.upper() in splitfiles.KEYWORDS else "")
            self.fail(self.parsed.error(f'unknown command "{command.name}"', command.position, hint,
                                        errors.UNDEFINED_OBJECT))
        return found

    def _checked(self, text, check):
        """check(), whose Refused names a place in `text` (a splitfiles.Text): a Splitfile error there."""
        try:
            return check()
        except queries.Refused as refused:
            self.fail(self.parsed.error(refused.message, text.position(refused.location), refused.hint, refused.code))

    # -- running -----------------------------------------------------------------------------------------------
    def run(self):
        final = None
        for stage in self.parsed.stages:
            repository = stage.output
            label = stage.base.label() if stage.base is not None else f'the start of "{repository}"'
            current, entries = self._attempt(label, lambda s=stage: self.start(s), repository, ROOT)
            for command in stage.commands:
                current, entries = self._attempt(command.label(), lambda c=command, cur=current, e=entries,
                                                 r=repository: self.step(r, c, cur, e), repository, current)
            self._attempt(f'the checkout of "{repository}"',
                          lambda cur=current, r=repository: self.finish(r, cur), repository, current)
            self.finals[repository] = final = current
        return final

    def _attempt(self, label, work, repository, current):
        """Run one command in a subtransaction: when it fails, it leaves nothing, and the build stops (_Stopped)
        with the images before it kept (unless keep_layers is off: then the error ends the call)."""
        try:
            with self.plpy.subtransaction():
                return work()
        except (self.plpy.SPIError, self.plpy.Error) as error:
            if _sqlstate(error) == CANCELED:
                raise
            self.outputs[repository]["image"] = None  # the checkout is what it was before the command: re-read it
            raise _Stopped(label, error, repository, current) from None

    def stopped(self, stopped):
        """The build stopped at a failing command: leave the output checked out at the last image built (when
        that can be done), then report the error, as a WARNING (keep_layers) or as the call's error."""
        plpy = self.plpy
        message, detail, hint = _error_parts(stopped.error)
        text = f"Splitfile {stopped.label} failed: {message}"
        if not self.keep:
            errors.fail(plpy, _sqlstate(stopped.error), text, hint=hint, detail=detail)
        if stopped.current != ROOT or stopped.repository not in self.created or stopped.repository in self.finals:
            try:
                with plpy.subtransaction():
                    self.outputs[stopped.repository].update(json.loads(db.scalar(
                        plpy, "select splitgraph_internal.build_output($1)", stopped.repository)))
                    self.ensure_checkout(stopped.repository, stopped.current)
            except (plpy.SPIError, plpy.Error) as error:
                if _sqlstate(error) == CANCELED:
                    raise
        if stopped.current == ROOT:
            kept = f'; nothing was built for "{stopped.repository}"'
            if stopped.repository in self.created and stopped.repository not in self.finals:
                try:
                    with plpy.subtransaction():
                        db.run(plpy, "select splitgraph.rm($1, true)", stopped.repository)
                except (plpy.SPIError, plpy.Error) as error:
                    if _sqlstate(error) == CANCELED:
                        raise
        else:
            kept = (f'; the images built before it are kept: "{stopped.repository}" is checked out at '
                    f"{stopped.current[:12]}, and a rerun resumes from there")
        plpy.warning("splitgraph: " + text + kept, sqlstate=_sqlstate(stopped.error),
                     **{k: v for k, v in (("detail", detail), ("hint", hint)) if v})

    def notice(self, command, what, image_hash):
        db.notice(self.plpy, f"{command.label()}: {what}, image {image_hash[:12]}")

    def resolve(self, image):
        """The full hash of an image reference (splitfiles.Image or (repository, ref)): a repository an earlier
        stage built, named without a tag, means that stage's last image."""
        repository, ref = (image.repository, image.ref) if isinstance(image, splitfiles.Image) else image
        if ref is None and repository in self.finals:
            return self.finals[repository]
        return db.scalar(self.plpy, "select splitgraph_internal.build_resolve($1, $2)", repository, ref)

    def cached(self, repository, image_hash):
        return db.scalar(self.plpy, "select splitgraph_internal.build_has_image($1, $2)", repository, image_hash)

    def tables_of(self, repository, image_hash):
        """{name: {spec, definition, objects}} of an image's tables (import_image_tables)."""
        key = (repository, image_hash)
        if key not in self.images:
            self.images[key] = json.loads(db.scalar(self.plpy, "select splitgraph_internal.import_image_tables($1, "
                                                               "$2)::text", repository, image_hash))["tables"]
        return self.images[key]

    def ensure_checkout(self, repository, image_hash):
        """The checkout at image_hash (materialized, as the caller), unless it is there already."""
        state = self.outputs[repository]
        if state["image"] == image_hash and not state["layered"]:
            return
        db.run(self.plpy, "select splitgraph.checkout($1, $2, true)", repository, image_hash)
        state.update(image=image_hash, layered=False)

    def start(self, stage):
        """The base of a stage: (its image, the provenance entries so far)."""
        repository, state = stage.output, self.outputs[stage.output]
        if not state["exists"]:
            db.run(self.plpy, "select splitgraph.init($1)", repository)
            state.update(exists=True, image=ROOT, layered=False)
            self.created.add(repository)
        if stage.base is None:
            return ROOT, []
        image = stage.base.image
        source = self.resolve(image)
        copied = db.scalar(self.plpy, "select splitgraph_internal.build_base($1, $2, $3)", repository,
                           image.repository, source)
        self.notice(stage.base, f"based on {image.repository}" + (" (copied)" if copied else " (cached)"), source)
        return source, [{"type": "FROM", "source": image.repository, "image": source,
                         "sources": [{"repository": image.repository, "image": source}]}]

    def finish(self, repository, image_hash):
        """The stage's output: branch main at its last image, checked out."""
        if not db.scalar(self.plpy, "select splitgraph_internal.build_finish($1, $2)", repository, image_hash):
            db.run(self.plpy, "select splitgraph.checkout($1, 'main', true)", repository)
        self.outputs[repository].update(image=image_hash, layered=False)
        db.notice(self.plpy, f'built "{repository}": image {image_hash} (branch main)')

    def step(self, repository, command, current, entries):
        if command.kind == "IMPORT" and isinstance(command.source, splitfiles.Mount):
            return self.mount(repository, command, current, entries)
        run = {"IMPORT": self.import_, "SQL": self.sql, "CUSTOM": self.custom}[command.kind]
        return run(repository, command, current, entries)

    # -- the commands ------------------------------------------------------------------------------------------
    def import_(self, repository, command, current, entries):
        plpy = self.plpy
        source = self.resolve(command.source)
        tables = None
        items = command.items
        if items is None:  # ALL
            tables = self.tables_of(command.source.repository, source)
            items = [splitfiles.Item(name, None, name, command.position) for name in sorted(tables)]
            canonical = [None] * len(items)
        else:
            canonical = self.prepared[id(command)]
        described = [{"table": i.table, "alias": i.alias} if i.query is None else {"query": q, "alias": i.alias}
                     for i, q in zip(items, canonical, strict=True)]
        image_hash = import_hash(current, source, [d.get("table") or d["query"] for d in described],
                                 [d["alias"] for d in described])
        entry = {"type": "IMPORT", "source": command.source.repository, "image": source,
                 "tables": [{"table": d["table"]} if "table" in d else {"query": d["query"]} for d in described],
                 "aliases": [d["alias"] for d in described],
                 "sources": [{"repository": command.source.repository, "image": source}]}
        if self.cached(repository, image_hash):
            self.notice(command, "cached", image_hash)
            return image_hash, entries + [entry]
        staged = []
        for item in items:
            if item.query is not None:
                tables = tables or self.tables_of(command.source.repository, source)
                _, select = imports.image_query(plpy, tables, item.query.value)
                staged += imports.stage_query(plpy, select)
        made = json.loads(db.scalar(plpy, "select splitgraph_internal.build_import($1, $2, $3, $4, null, $5::jsonb, "
                                          "$6::text[], $7::jsonb)::text", repository, current,
                                    command.source.repository, source, db.Json(described), staged, db.Json(entries)))
        self._imported(repository, made, [d["alias"] for d in described])
        self.notice(command, "built", made["image_hash"])
        return made["image_hash"], entries + [entry]

    def _imported(self, repository, made, tables):
        """After build_import: when it moved the checkout along, make the new tables there (as the caller)."""
        if made["moved"]:
            checkout.materialize_new(self.plpy, repository, tables)
            self.outputs[repository].update(image=made["image_hash"], layered=False)

    def mount(self, repository, command, current, entries):
        plpy = self.plpy
        mount = command.source
        mountpoint = db.temp_name("sg_build_mount")
        wanted = None if command.items is None or any(i.query is not None for i in command.items) \
            else [i.table for i in command.items]
        db.run(plpy, "select splitgraph.mount($1, $2, $3::jsonb, $4::jsonb, false)", mountpoint, mount.handler,
               db.Json(mount.options), None if wanted is None else db.Json(wanted))
        relations = imports.schema_relations(plpy, mountpoint)
        items = command.items or [splitfiles.Item(name, None, name, command.position) for name in relations]
        canonical = self.prepared[id(command)] if command.items else [None] * len(items)
        described, staged = [], []
        for item, query in zip(items, canonical, strict=True):
            if item.query is None:
                if item.table not in relations:
                    errors.fail(plpy, errors.UNDEFINED_TABLE, f'table "{item.table}" not found in the mount',
                                hint=f"it has: {', '.join(relations) or 'no table'}")
                staged += imports.stage_selects(plpy, [f"select * from {names.qualified(mountpoint, item.table)}"])
                described.append({"table": item.table, "alias": item.alias})
            else:
                _, select = imports.schema_query(plpy, mountpoint, item.query.value)
                staged += imports.stage_query(plpy, select)
                described.append({"query": query, "alias": item.alias})
        made = json.loads(db.scalar(plpy, "select splitgraph_internal.build_import($1, $2, null, null, $3, $4::jsonb, "
                                          "$5::text[], $6::jsonb)::text", repository, current, mount.handler,
                                    db.Json(described), staged, db.Json(entries)))
        db.run(plpy, "select splitgraph.unmount($1)", mountpoint)
        self._imported(repository, made, [d["alias"] for d in described])
        self.notice(command, "built (a MOUNT is never cached)", made["image_hash"])
        entry = {"type": "MOUNT", "handler": mount.handler,
                 "tables": [{"table": d["table"]} if "table" in d else {"query": d["query"]} for d in described],
                 "aliases": [d["alias"] for d in described], "sources": []}
        return made["image_hash"], entries + [entry]

    def sql(self, repository, command, current, entries):
        plpy = self.plpy
        step = self.prepared[id(command)]
        pins, sources = {}, []
        for schema, (source, ref, _, _) in step.references.items():
            image_hash = self.resolve((source, ref))
            pins[schema] = f"{source}:{image_hash}"
            if {"repository": source, "image": image_hash} not in sources:
                sources.append({"repository": source, "image": image_hash})
        canonical = step.canonical(pins)
        image_hash = sql_hash(current, canonical)
        entry = {"type": "SQL", "sql": canonical, "sources": sources}
        if self.cached(repository, image_hash):
            self.notice(command, "cached", image_hash)
            return image_hash, entries + [entry]
        self.ensure_checkout(repository, current)
        reads, types = {}, []
        for schema, (source, _, read, _) in step.references.items():
            pinned = pins[schema].split(":", 1)[1]
            tables = self.tables_of(source, pinned)
            for table in sorted(read):
                if table not in tables:
                    errors.fail(plpy, errors.UNDEFINED_TABLE,
                                f'table "{table}" not found in image {pinned[:12]} of repository "{source}"')
                cols = tbl.from_spec(plpy, tables[table]["spec"], tables[table]["definition"])
                reads[(schema, table)] = fragments.layered_select(cols, tables[table]["objects"], as_caller=True)
                types += [c.type for c in cols]
        if types:
            queries.check_types(plpy, types)
        with db.settings(plpy, {"search_path": "pg_catalog, pg_temp"}):
            for statement, rows in step.executable(names.schema_of(repository), reads):
                plpy.execute(statement, rows)
        return self._commit(repository, command, current, entry, entries, image_hash, None)

    def _commit(self, repository, command, current, entry, entries, image_hash, returned):
        made = json.loads(db.scalar(self.plpy, "select splitgraph_internal.build_commit($1, $2, $3::jsonb, $4::jsonb, "
                                               "$5)::text", repository, current, db.Json(entry), db.Json(entries),
                                    returned))
        if image_hash is not None and made["image_hash"] != image_hash:
            errors.fail(self.plpy, "XX000", f"the image of {command.label()} got hash {made['image_hash']}, not "
                                            f"{image_hash}")
        self.outputs[repository]["image"] = made["image_hash"] if made["committed"] else None
        self.notice(command, "built", made["image_hash"])
        return made["image_hash"], entries + [entry]

    def custom(self, repository, command, current, entries):
        plpy = self.plpy
        functions = self.prepared[id(command)]
        calculated = None
        if functions["calc_hash"] is not None:
            calculated = db.scalar(plpy, f"select {functions['calc_hash']}($1::text, $2::text[])", repository,
                                   command.args)
        entry = {"type": "CUSTOM", "command": command.name, "args": command.args, "hash": calculated, "sources": []}
        image_hash = None
        if calculated is not None:
            image_hash = custom_hash(current, calculated)
            if self.cached(repository, image_hash):
                self.notice(command, "cached", image_hash)
                return image_hash, entries + [entry]
        self.ensure_checkout(repository, current)
        returned = db.scalar(plpy, f"select {functions['execute']}($1::text, $2::text[])", repository, command.args)
        return self._commit(repository, command, current, entry, entries, image_hash, returned)


def _params(plpy, params):
    params = json.loads(params) if isinstance(params, str) else params
    if params is None:
        return {}
    if not isinstance(params, dict):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, 'params must be a JSON object, e.g. {"TAG": "v2"}')
    out = {}
    for name, value in params.items():
        if isinstance(value, bool) or not isinstance(value, str | int | float):
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"parameter {name} must be a string or a number")
        out[name] = str(value)
    return out


@api("build(splitfile text, output_repository text, params jsonb default '{}', keep_layers boolean default true) "
     "returns text",
     "build(splitfile, output_repository, params, keep_layers): run a Splitfile (FROM, IMPORT, MOUNT, SQL, custom "
     "commands, ${PARAM}s from params) into output_repository (the first stage's, unless it says AS); each "
     "command makes one image whose hash is derived from the image before it and the command's inputs, and an "
     "image that exists already is used instead (a NOTICE per command says cached or built); each output ends "
     "on branch main, checked out; returns the last image. When a command fails, the images before it stay "
     "(keep_layers: the call ends with a WARNING and returns null; else it fails and keeps nothing)",
     security="invoker")
def build(plpy, splitfile, output_repository, params="{}", keep_layers=True):
    tracking.require_read_committed(plpy, "build")
    try:
        parsed = splitfiles.parse(splitfile, _params(plpy, params), output_repository)
    except splitfiles.SplitfileError as error:
        errors.fail(plpy, error.code, error.text(), hint=error.hint, detail=error.detail())
    run = _Build(plpy, parsed, keep_layers)
    run.prepare()
    try:
        return run.run()
    except _Stopped as stopped:
        run.stopped(stopped)
        return None


# ---------------------------------------------------------------------------------------------------------------
# The helpers build() reaches the extension's tables through
# ---------------------------------------------------------------------------------------------------------------

def _require_image(plpy, repo, image_hash):
    if image_hash is None or not names.HASH.fullmatch(image_hash) or not _has_image(plpy, repo, image_hash):
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'image {image_hash!r} not found in repository "{repo}"')
    return image_hash


def _has_image(plpy, repo, image_hash):
    return db.scalar(plpy, "select exists (select from splitgraph_meta.images where repository = $1 "
                           "and image_hash = $2)", repo, image_hash)


@helper("build_output(repository text) returns jsonb",
        "build_output(repository): for build(): check that the caller may write the repository and that its "
        "checkout has no pending changes; lock it; returns {exists, image (its HEAD), layered}",
        public=True)
def build_output(plpy, repository):
    repo = meta.writable(plpy, repository, must_exist=False)
    exists = meta.exists(plpy, repo) and meta.lock(plpy, repo)
    state = meta.checkout_state(plpy, repo) if exists else None
    if state is not None:
        changed = pending.changed_tables_of(plpy, repo)
        if changed:
            errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                        f'repository "{repo}" has pending changes in table "{changed[0]}"; a build would replace '
                        "the checkout", hint="commit them or reset them first")
    return json.dumps({"exists": bool(exists), "image": state["image_hash"] if state else None,
                       "layered": bool(state and state["layered"])})


@helper("build_resolve(repository text, image text) returns text",
        "build_resolve(repository, image): the full hash of an image reference (null: the repository's HEAD, "
        "else its newest image)",
        volatility="stable", public=True)
def build_resolve(plpy, repository, image):
    return imports.source_image_of(plpy, meta.require(plpy, repository), image)


@helper("build_has_image(repository text, image_hash text) returns boolean",
        "build_has_image(repository, image_hash): whether the repository has the image (a build's cache)",
        volatility="stable", public=True)
def build_has_image(plpy, repository, image_hash):
    return bool(meta.exists(plpy, repository) and _has_image(plpy, repository, image_hash))


@helper("build_command(name text) returns jsonb",
        "build_command(name): the functions of a custom Splitfile command {calc_hash, execute} (names to call), "
        "or {known: [names]} when there is no such command",
        volatility="stable", public=True)
def build_command(plpy, name):
    row = db.one(plpy, """
        select f.calc_hash, f.execute, c.calc_hash is not null and f.calc_hash is null or f.execute is null as missing,
               not exists (select from pg_catalog.pg_proc p join pg_catalog.pg_roles o on o.oid = p.proowner
                           where p.oid in (c.calc_hash, c.execute) and not o.rolsuper) as trusted
        from splitgraph_meta.commands c
        cross join lateral (
            select (select pg_catalog.format('%I.%I', n.nspname, p.proname) from pg_catalog.pg_proc p
                    join pg_catalog.pg_namespace n on n.oid = p.pronamespace where p.oid = c.calc_hash) as calc_hash,
                   (select pg_catalog.format('%I.%I', n.nspname, p.proname) from pg_catalog.pg_proc p
                    join pg_catalog.pg_namespace n on n.oid = p.pronamespace where p.oid = c.execute) as execute
        ) f
        where c.name = $1""", name)
    if row is None:
        return json.dumps({"known": db.column(plpy, "select name from splitgraph_meta.commands order by name")})
    if row["missing"]:
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'a function of Splitfile command "{name}" no longer exists',
                    hint="an administrator must register the command again (register_command)")
    if not row["trusted"]:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f'a function of Splitfile command "{name}" is no longer owned by a superuser',
                    hint="an administrator must make a superuser its owner, or register other functions")
    return json.dumps({"calc_hash": row["calc_hash"], "execute": row["execute"]})


@helper("build_base(repository text, source text, image text) returns boolean",
        "build_base(repository, source, image): for FROM source:image, copy the image and its ancestors (metadata "
        "only: the same hashes, tables and objects) into the repository; returns whether anything was copied",
        public=True)
def build_base(plpy, repository, source, image):
    repo = meta.writable(plpy, repository)
    source = meta.require(plpy, source)
    _require_image(plpy, source, image)
    if _has_image(plpy, repo, image):
        return False
    copied = db.column(plpy, """
        with recursive chain (image_hash) as (
            select $3::text
            union
            select i.parent_id from chain c
            join splitgraph_meta.images i on i.repository = $2 and i.image_hash = c.image_hash
            where i.parent_id is not null
        )
        insert into splitgraph_meta.images (repository, image_hash, parent_id, created, comment, provenance)
        select $1, i.image_hash, i.parent_id, i.created, i.comment, i.provenance
        from chain c join splitgraph_meta.images i on i.repository = $2 and i.image_hash = c.image_hash
        where not exists (select from splitgraph_meta.images o where o.repository = $1 and o.image_hash = i.image_hash)
        order by i.created, i.seq
        returning image_hash""", repo, source, image)
    db.run(plpy, """insert into splitgraph_meta.tables (repository, image_hash, table_name, table_schema, object_ids,
                                                        table_definition)
                    select $1, t.image_hash, t.table_name, t.table_schema, t.object_ids, t.table_definition
                    from splitgraph_meta.tables t where t.repository = $2 and t.image_hash = any($3::text[])""",
           repo, source, copied)
    return True


def _entries(plpy, earlier):
    """The provenance entries of the commands before a step (from the caller): a list of entries of known
    types whose sources exist."""
    entries = json.loads(earlier) if isinstance(earlier, str) else (earlier or [])
    if not isinstance(entries, list) or not all(isinstance(e, dict) and e.get("type") in _TYPES
                                                and isinstance(e.get("sources"), list) for e in entries):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "provenance must be a list of Splitfile entries")
    for entry in entries:
        _check_sources(plpy, entry["sources"])
    return entries


def _check_sources(plpy, sources):
    for source in sources:
        if not isinstance(source, dict) or not isinstance(source.get("repository"), str) \
                or not isinstance(source.get("image"), str):
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "a source is {repository, image}")
        _require_image(plpy, meta.require(plpy, source["repository"]), source["image"])


def _items(plpy, items):
    items = json.loads(items) if isinstance(items, str) else items
    ok = isinstance(items, list) and items and all(
        isinstance(i, dict) and isinstance(i.get("alias"), str) and len(i) == 2
        and (isinstance(i.get("table"), str) or isinstance(i.get("query"), str)) for i in items)
    if not ok:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "items must be a list of {table or query, alias}")
    for item in items:
        names.table(plpy, item["alias"])
    if len({i["alias"] for i in items}) != len(items):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "a table is imported twice under one name")
    return items


@helper("build_import(repository text, parent text, source text, source_image text, handler text, items jsonb, "
        "staged text[], earlier jsonb) returns jsonb",
        "build_import(...): for build(): import tables of an image (by name, or query results staged by "
        "import_stage), or of a mount (all staged), as one image on top of parent whose hash it derives (random "
        "for a mount); returns {image_hash, moved (the checkout was at parent and moved along)}",
        public=True)
def build_import(plpy, repository, parent, source, source_image, handler, items, staged, earlier):
    repo = meta.writable(plpy, repository)
    _require_image(plpy, repo, parent)
    items, entries, staged = _items(plpy, items), _entries(plpy, earlier), list(staged or [])
    aliases = [i["alias"] for i in items]
    temp_schema = imports.check_staged(plpy, staged) if staged else None
    if source is not None:
        source = meta.require(plpy, source)
        _require_image(plpy, source, source_image)
        image_hash = import_hash(parent, source_image, [i.get("table") or i["query"] for i in items], aliases)
        if _has_image(plpy, repo, image_hash):
            return json.dumps({"image_hash": image_hash, "moved": False})
        queried = [i for i in items if "query" in i]
        if len(staged) != len(queried):
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                        f"{len(staged)} staging tables for {len(queried)} queries")
        available = meta.image_tables(plpy, source, source_image)
        for item in items:
            if "table" in item and item["table"] not in available:
                errors.fail(plpy, errors.UNDEFINED_TABLE, f'table "{item["table"]}" not found in image '
                                                          f'{source_image[:12]} of repository "{source}"')
        stored = imports.store_staged(plpy, repo, staged, [i["alias"] for i in queried], {}, source, source_image,
                                      temp_schema)
        new = {i["alias"]: available[i["table"]] if "table" in i else stored[i["alias"]] for i in items}
        entry = {"type": "IMPORT", "source": source, "image": source_image, "sources": [{"repository": source,
                                                                                         "image": source_image}]}
        comment = f"import {', '.join(aliases)} from {source}:{source_image[:12]}"
    else:
        if not isinstance(handler, str) or not handler:
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "a mount import names its handler")
        if len(staged) != len(items):
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"{len(staged)} staging tables for {len(items)} tables")
        image_hash = None
        new = imports.store_staged(plpy, repo, staged, aliases, {}, None, None, temp_schema)
        entry = {"type": "MOUNT", "handler": handler, "sources": []}
        comment = f"import {', '.join(aliases)} from a mount ({handler})"
    entry.update(tables=[{"table": i["table"]} if "table" in i else {"query": i["query"]} for i in items],
                 aliases=aliases)
    entry = {k: entry[k] for k in ("type", "source", "image", "handler", "tables", "aliases", "sources") if k in entry}
    imports.drop_staged(plpy, staged)
    state = meta.checkout_state(plpy, repo)
    at_parent = state is not None and state["image_hash"] == parent and not state["layered"]
    image_hash = imports.commit_tables(plpy, repo, parent, new, comment, state if at_parent else None, image_hash,
                                       entries + [entry])
    if at_parent:
        meta.move_head(plpy, repo, state, image_hash, detach=True)
    return json.dumps({"image_hash": image_hash, "moved": at_parent})


@helper("build_commit(repository text, parent text, step jsonb, earlier jsonb, returned text) returns jsonb",
        "build_commit(...): for build(): commit the checkout (at parent) after a SQL step or a custom command as "
        "an image whose hash it derives from the step; returns {image_hash, committed}",
        public=True)
def build_commit(plpy, repository, parent, step, earlier, returned):
    tracking.require_read_committed(plpy, "build")
    repo = meta.writable(plpy, repository)
    step, entries = json.loads(step) if isinstance(step, str) else step, _entries(plpy, earlier)
    kind = step.get("type") if isinstance(step, dict) else None
    if kind == "CUSTOM" and returned is not None and names.HASH.fullmatch(returned) \
            and _has_image(plpy, repo, returned):
        return json.dumps({"image_hash": returned, "committed": False})
    state = meta.require_checkout(plpy, repo)
    if state["image_hash"] != parent or state["layered"]:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'the checkout of repository "{repo}" is not at image {str(parent)[:12]}, which the step builds on')
    if kind == "SQL" and isinstance(step.get("sql"), str) and isinstance(step.get("sources"), list):
        _check_sources(plpy, step["sources"])
        entry = {"type": "SQL", "sql": step["sql"], "sources": step["sources"]}
        image_hash, comment = sql_hash(parent, step["sql"]), step["sql"]
    elif kind == "CUSTOM" and isinstance(step.get("command"), str) and isinstance(step.get("args"), list) \
            and all(isinstance(a, str) for a in step["args"]) and isinstance(step.get("hash"), str | None):
        if not db.scalar(plpy, "select exists (select from splitgraph_meta.commands where name = $1)", step["command"]):
            errors.fail(plpy, errors.UNDEFINED_OBJECT, f'unknown Splitfile command "{step["command"]}"')
        entry = {"type": "CUSTOM", "command": step["command"], "args": step["args"], "hash": step.get("hash"),
                 "sources": []}
        comment = splitfiles.custom_line(step["command"], step["args"])
        if step.get("hash") is not None:
            image_hash = custom_hash(parent, step["hash"])
        elif returned is not None:
            if not names.HASH.fullmatch(returned):
                errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                            f"command {step['command']} returned {returned!r}, which is not an image hash",
                            hint="execute returns null, an image of the repository, or a new 64-digit hash")
            image_hash = returned
        else:
            image_hash = None
    else:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "step must be a SQL or CUSTOM entry")
    if image_hash is not None and _has_image(plpy, repo, image_hash):
        return json.dumps({"image_hash": image_hash, "committed": False})
    image_hash = images.commit_checkout(plpy, repo, state, _cut(comment), image_hash=image_hash,
                                        provenance=entries + [entry], detach=True)
    return json.dumps({"image_hash": image_hash, "committed": True})


@helper("build_finish(repository text, image text) returns boolean",
        "build_finish(repository, image): for build(): point branch main at the image; when the checkout is at it "
        "already, it follows main (returns true); else the caller checks main out",
        public=True)
def build_finish(plpy, repository, image):
    repo = meta.writable(plpy, repository)
    _require_image(plpy, repo, image)
    left = db.scalar(plpy, """
        with recursive chain (image_hash) as (
            select $2::text
            union
            select i.parent_id from chain c join splitgraph_meta.images i
                on i.repository = $1 and i.image_hash = c.image_hash where i.parent_id is not null
        )
        select b.image_hash from splitgraph_meta.branches b
        where b.repository = $1 and b.branch = 'main' and b.image_hash not in (select image_hash from chain)""",
                     repo, image)
    if left is not None:
        db.notice(plpy, f'branch main of "{repo}" leaves image {left[:12]}, which is not an ancestor of the build: '
                        "tag it to keep it from prune")
    db.run(plpy, """insert into splitgraph_meta.branches (repository, branch, image_hash) values ($1, 'main', $2)
                    on conflict (repository, branch) do update set image_hash = excluded.image_hash""", repo, image)
    state = meta.checkout_state(plpy, repo)
    if state is not None and state["image_hash"] == image and not state["layered"]:
        db.run(plpy, "update splitgraph_meta.checkouts set branch = 'main' where repository = $1", repo)
        return True
    return False


# ---------------------------------------------------------------------------------------------------------------
# Provenance
# ---------------------------------------------------------------------------------------------------------------

def _provenance(plpy, repository, image):
    repo = meta.require(plpy, repository)
    image_hash, _ = meta.resolve(plpy, repo, image)
    text = db.scalar(plpy, "select provenance::text from splitgraph_meta.images where repository = $1 "
                           "and image_hash = $2", repo, image_hash)
    if text is None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'image {image_hash[:12]} of repository "{repo}" was not built by a Splitfile: it has no '
                    "provenance")
    return repo, image_hash, json.loads(text)


def render(plpy, entries, ignore_irreproducible=False, where=""):
    """The Splitfile of provenance entries (full hashes everywhere)."""
    lines = []
    for entry in entries:
        kind = entry["type"]
        if kind == "FROM":
            lines.append(f"FROM {entry['source']}:{entry['image']}")
        elif kind == "IMPORT":
            lines.append(splitfiles.import_line(f"{entry['source']}:{entry['image']}", entry["tables"],
                                                entry["aliases"]))
        elif kind == "SQL":
            lines.append(splitfiles.sql_line(entry["sql"]))
        elif kind == "CUSTOM" and entry.get("hash") is not None:
            lines.append(splitfiles.custom_line(entry["command"], entry["args"]))
        else:
            what = f"{kind} ({entry.get('handler') or entry.get('command')})"
            if not ignore_irreproducible:
                errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED,
                            f"{where}was built with a {what} step, which cannot be reproduced (it reads its source "
                            "anew, or its command has no calc_hash)",
                            hint="pass ignore_irreproducible => true for the Splitfile with a comment in its place")
            lines.append(f"# Irreproducible Splitfile command of type {what}")
    return "\n".join(lines) + "\n"


@api("provenance(repository text, image text) returns table (source_repository text, source_image text)",
     "provenance(repository, image): the images (full hashes) a Splitfile built the image from, in the order its "
     "commands name them; none for an image no Splitfile built",
     volatility="stable")
def provenance(plpy, repository, image):
    repo = meta.require(plpy, repository)
    image_hash, _ = meta.resolve(plpy, repo, image)
    return db.run(plpy, """
        select s.source ->> 'repository' as source_repository, s.source ->> 'image' as source_image
        from splitgraph_meta.images i
        cross join lateral pg_catalog.jsonb_array_elements(coalesce(i.provenance, '[]')) with ordinality e(entry, n)
        cross join lateral pg_catalog.jsonb_array_elements(e.entry -> 'sources') with ordinality s(source, m)
        where i.repository = $1 and i.image_hash = $2
        group by 1, 2 order by min(e.n), min(s.m)""", repo, image_hash)


@api("dependents(repository text, image text) returns setof splitgraph.dependents_row",
     "dependents(repository, image): the images that Splitfiles built from the image (in any repository)",
     volatility="stable")
def dependents(plpy, repository, image):
    repo = meta.require(plpy, repository)
    image_hash, _ = meta.resolve(plpy, repo, image)
    return db.run(plpy, """
        select i.repository, i.image_hash from splitgraph_meta.images i
        where i.provenance @> pg_catalog.jsonb_build_array(pg_catalog.jsonb_build_object(
                  'sources', pg_catalog.jsonb_build_array(
                      pg_catalog.jsonb_build_object('repository', $1::text, 'image', $2::text))))
        order by i.repository, i.created, i.seq""", repo, image_hash)


@api("reconstruct_splitfile(repository text, image text, ignore_irreproducible boolean default false) returns text",
     "reconstruct_splitfile(repository, image, ignore_irreproducible): the Splitfile (every image by its full "
     "hash) that builds the image again: build() of it makes the same image hash; refused for MOUNT steps and "
     "custom commands without calc_hash, unless ignore_irreproducible (a comment takes their place)",
     volatility="stable")
def reconstruct_splitfile(plpy, repository, image, ignore_irreproducible=False):
    repo, image_hash, entries = _provenance(plpy, repository, image)
    return render(plpy, entries, ignore_irreproducible, f'image {image_hash[:12]} of repository "{repo}" ')


@api("rebuild(repository text, image text, update_sources jsonb) returns text",
     "rebuild(repository, image, update_sources): build the image's Splitfile again into the repository, with "
     "the sources named in update_sources ({\"ns/src\": \"v2\"}: a tag, branch or hash) at those images; "
     "returns the new image (the same one, cached, when nothing changed)",
     security="invoker")
def rebuild(plpy, repository, image, update_sources):
    shown = json.loads(db.scalar(plpy, "select splitgraph.show($1, $2)::text", repository, image))
    entries = shown.get("provenance")
    if not entries:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'image {shown["image_hash"][:12]} of repository "{repository}" was not built by a Splitfile: it '
                    "has no provenance")
    updates = json.loads(update_sources) if isinstance(update_sources, str) else update_sources
    if not isinstance(updates, dict) or not all(isinstance(v, str) for v in updates.values()):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                    'update_sources must map repositories to images, e.g. {"ns/src": "v2"}')
    used = {s["repository"] for e in entries for s in e["sources"]}
    unknown = sorted(set(updates) - used)
    if unknown:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f'image {shown["image_hash"][:12]} was not built from '
                                                          f'repository "{unknown[0]}"',
                    hint="its sources: " + ", ".join(sorted(used)))
    pinned = {source: db.scalar(plpy, "select splitgraph_internal.build_resolve($1, $2)", source, ref)
              for source, ref in updates.items()}
    for entry in entries:
        if entry["type"] in ("FROM", "IMPORT") and entry["source"] in pinned:
            entry["image"] = pinned[entry["source"]]
        elif entry["type"] == "SQL" and any(s["repository"] in pinned for s in entry["sources"]):
            step = queries.SqlStep(plpy, entry["sql"], repository)
            entry["sql"] = step.canonical({schema: f"{source}:{pinned[source]}" if source in pinned else schema
                                           for schema, (source, _, _, _) in step.references.items()})
    return build(plpy, render(plpy, entries), repository, "{}")


@api("register_command(name text, calc_hash regprocedure, execute regprocedure) returns void",
     "register_command(name, calc_hash, execute): a custom Splitfile command NAME args...: calc_hash(repository "
     "text, args text[]) returns text gives what its image hash derives from (a null calc_hash, or a null "
     "result: never cached), execute(repository text, args text[]) returns text changes the checkout (and may "
     "return an image hash to use); both owned by a superuser (they run as the role that builds); "
     "administrators only",
     nullable=("calc_hash",))
def register_command(plpy, name, calc_hash, execute):
    if not meta.caller_is_admin(plpy):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "only superusers and the extension's owner register "
                                                         "Splitfile commands")
    if not isinstance(name, str) or not splitfiles.COMMAND_NAME.fullmatch(name) or name in splitfiles.KEYWORDS:
        errors.fail(plpy, errors.INVALID_NAME, f"invalid command name {name!r}",
                    hint="letters, digits and _, starting with a letter or _, at most 63 characters; not FROM or SQL")
    for function in (calc_hash, execute):
        if function is None:
            continue
        row = meta.function_fits(plpy, function, ["text", "text[]"], "text")
        if not row["fits"]:
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"{function} does not fit a Splitfile command",
                        hint="calc_hash and execute are functions (repository text, args text[]) returns text")
        if not row["trusted"]:
            errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                        f'{function} is owned by role "{row["owner"]}", which is not a superuser',
                        hint="a command's functions run as whoever builds: they must be owned by a superuser")
    db.run(plpy, """insert into splitgraph_meta.commands (name, calc_hash, execute)
                    values ($1, $2::regprocedure, $3::regprocedure)
                    on conflict (name) do update set calc_hash = excluded.calc_hash, execute = excluded.execute""",
           name, calc_hash, execute)
