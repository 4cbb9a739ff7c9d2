"""sgr's subcommands: each maps onto one splitgraph SQL function (named arguments, bound values); Python only
parses arguments, finds the engine and prints what comes back."""
import json
import pathlib
import re
import sys

import click

from . import config, engine, output

LONG = {"commit", "checkout", "clone", "pull", "push", "build", "rebuild", "merge"}
_MISSING = re.compile(r"function splitgraph\.([a-z_]+)\(")


class Arg:
    """A value for a named argument, with the cast that tells the engine its type."""

    def __init__(self, value, cast=None):
        self.value, self.cast = value, cast


def call(function, *, rows=False, **arguments):
    """Call splitgraph.<function> with the given named arguments (None: left to the function's default) and
    print what it returns; a long call shows a progress bar fed by the engine's NOTICEs."""
    ctx = click.get_current_context()
    named = [(k, v if isinstance(v, Arg) else Arg(v)) for k, v in arguments.items()
             if v is not None and not (isinstance(v, Arg) and v.value is None)]
    placeholders = ", ".join(f"{k} => %s" + (f"::{a.cast}" if a.cast else "") for k, a in named)
    query = f"select * from splitgraph.{function}({placeholders})"
    progress = engine.Progress(function, quiet=ctx.obj["quiet"]) if function in LONG else None
    try:
        columns, result = engine.run(query, [a.value for _, a in named], progress=progress)
    except engine.EngineError as error:
        fail(error)
    if rows:
        return columns, result
    output.show(columns, result, ctx.obj["json"])
    return columns, result


def fail(error):
    """Print the engine's error (message, detail, hint), never a traceback, and exit non-zero."""
    missing = _MISSING.search(error.message or "") if error.sqlstate == "42883" else None
    if missing:
        click.echo(f"sgr: this engine has no splitgraph.{missing.group(1)} yet (it comes with a later version of "
                   "the splitgraph extension)", err=True)
        sys.exit(2)
    click.echo(str(error), err=True)
    sys.exit(1)


def ensure_remote(name):
    """Register a [remote: NAME] section of .sgconfig on the engine if the engine does not know NAME yet."""
    if name is None:
        return
    known = config.remotes().get(name)
    if known is None:
        return
    try:
        _, present = engine.run("select 1 from splitgraph.remotes() where name = %s", [name])
    except engine.EngineError as error:
        fail(error)
    if not present:
        try:
            engine.run("select splitgraph.add_remote(%s, %s, %s::int, %s, %s, %s)",
                       [name, known["host"], known["port"], known["dbname"], known["user"], known.get("password")])
        except engine.EngineError as error:
            fail(error)
        click.echo(f"registered remote {name} from {config.config_file()}", err=True)


def jsonb(value):
    return Arg(value, "jsonb") if value is not None else None


@click.group(context_settings={"help_option_names": ["-h", "--help"]})
@click.option("--json", "json_output", is_flag=True, help="print results as JSON")
@click.option("--quiet", "-q", is_flag=True, help="no progress bars or notices")
@click.pass_context
def cli(ctx, json_output, quiet):
    """sgr: version control for PostgreSQL tables (the splitgraph extension), from a terminal.

    The engine is found through SG_ENGINE_HOST, SG_ENGINE_PORT, SG_ENGINE_USER, SG_ENGINE_PWD and
    SG_ENGINE_DB_NAME, or a .sgconfig file (working directory, then home)."""
    ctx.obj = {"json": json_output, "quiet": quiet}


# ---------------------------------------------------------------------------------------------------------------
# Repositories and images
# ---------------------------------------------------------------------------------------------------------------

@cli.command()
@click.argument("repository")
def init(repository):
    """Create an empty repository and check it out."""
    call("init", repository=repository)


@cli.command(name="repositories")
def repositories():
    """Every local repository, its HEAD, branch and upstream."""
    call("repositories")


@cli.command()
@click.argument("repository")
@click.option("-m", "--message", "comment", help="commit message")
@click.option("--snapshot", is_flag=True, default=None, help="store every table whole")
@click.option("--chunk-size", type=int, help="rows per fragment")
@click.option("--index-options", help='JSON, e.g. {"bloom": {"t": {"c": {"probability": 0.01}}}}')
def commit(repository, comment, snapshot, chunk_size, index_options):
    """Commit the checkout as a new image."""
    call("commit", repository=repository, comment=comment, snapshot=snapshot, chunk_size=chunk_size,
         index_options=jsonb(index_options))


@cli.command()
@click.argument("repository")
@click.argument("image")
@click.option("--force", is_flag=True, default=None, help="throw away pending changes")
@click.option("--layered", is_flag=True, default=None, help="read-only views over the fragments, no copy")
def checkout(repository, image, force, layered):
    """Check out an image (hash, prefix, tag, branch, latest, HEAD)."""
    call("checkout", repository=repository, image=image, force=force, layered=layered)


@cli.command()
@click.argument("repository")
@click.option("--force", is_flag=True, default=None)
def uncheckout(repository, force):
    """Drop the checkout; the images stay."""
    call("uncheckout", repository=repository, force=force)


def _tree(images, branches):
    """The image graph as text: one line per image, children under their parent, with branches and tags."""
    by_parent, names = {}, {}
    for b in branches:
        names.setdefault(b["image_hash"], []).append(f"branch {b['branch']}" + (" (checked out)" if b["current"]
                                                                                 else ""))
    for image in images:
        by_parent.setdefault(image["parent_id"], []).append(image)
    lines = []

    def walk(parent, depth):
        for image in sorted(by_parent.get(parent, []), key=lambda i: str(i["created"])):
            labels = names.get(image["image_hash"], []) + [f"tag {t}" for t in image["tags"] or []]
            lines.append("  " * depth + ("└─ " if depth else "") + image["image_hash"][:12]
                         + (f" [{', '.join(labels)}]" if labels else "") + (f"  {image['comment']}"
                                                                             if image["comment"] else ""))
            walk(image["image_hash"], depth + 1)

    walk(None, 0)
    return "\n".join(lines)


@cli.command()
@click.argument("repository")
@click.argument("image", required=False)
@click.option("--tree", is_flag=True, help="draw every image as a graph, with branches and tags")
@click.pass_context
def log(ctx, repository, image, tree):
    """The history of an image (default HEAD), newest first."""
    if not tree:
        call("log", repository=repository, image=image)
        return
    columns, images = call("images", rows=True, repository=repository)
    bcols, branches = call("branches", rows=True, repository=repository)
    images = [dict(zip(columns, r, strict=False)) for r in images]
    branches = [dict(zip(bcols, r, strict=False)) for r in branches]
    if ctx.obj["json"]:
        click.echo(json.dumps({"images": images, "branches": branches}, indent=2, default=str))
    else:
        click.echo(_tree(images, branches))


@cli.command()
@click.argument("repository")
def images(repository):
    """Every image of a repository, oldest first."""
    call("images", repository=repository)


@cli.command()
@click.argument("repository")
@click.argument("image", default="HEAD")
def show(repository, image):
    """An image as JSON: parent, comment, tags, tables, provenance."""
    call("show", repository=repository, image=image)


@cli.command(name="table-info")
@click.argument("repository")
@click.argument("image")
@click.argument("table")
def table_info(repository, image, table):
    """A table of an image: columns, fragments, rows, size."""
    call("table_info", repository=repository, image=image, table_name=table)


@cli.command(name="object-info")
@click.argument("object_id")
def object_info(object_id):
    """An object's metadata."""
    call("object_info", object_id=object_id)


@cli.command()
@click.argument("repository")
@click.argument("table", required=False)
@click.argument("image_1", required=False)
@click.argument("image_2", required=False)
@click.option("--summary", is_flag=True, help="per table counts (then TABLE is the first image)")
def diff(repository, table, image_1, image_2, summary):
    """Rows removed (-) and added (+) between two images, or an image and the pending state."""
    if summary:
        call("diff_summary", repository=repository, image_1=table or "HEAD", image_2=image_1)
        return
    if table is None or image_1 is None:
        raise click.UsageError("sgr diff REPOSITORY TABLE IMAGE_1 [IMAGE_2], or sgr diff --summary REPOSITORY IMAGE")
    call("diff", repository=repository, table_name=table, image_1=image_1, image_2=image_2)


@cli.command()
@click.argument("repository", required=False)
def status(repository):
    """Pending changes of checked-out repositories."""
    call("status", repository=repository)


@cli.command()
@click.argument("repository")
@click.argument("table", required=False)
def reset(repository, table):
    """Discard pending changes: the checkout becomes HEAD again."""
    call("reset", repository=repository, table_name=table)


@cli.command()
@click.argument("repository")
@click.argument("tag", required=False)
@click.option("-i", "--image", default="HEAD", help="the image to tag (default HEAD)")
@click.option("-d", "--delete", "delete", is_flag=True, help="delete the tag")
def tag(repository, tag, image, delete):
    """Tag an image (or list the tags, or delete one with -d)."""
    if tag is None:
        columns, rows = call("images", rows=True, repository=repository)
        tagged = [(t, r[0]) for r in rows for t in (r[columns.index("tags")] or [])]
        output.show(["tag", "image_hash"], tagged, click.get_current_context().obj["json"])
    elif delete:
        call("delete_tag", repository=repository, tag=tag)
    else:
        call("tag", repository=repository, image=image, tag=tag)


@cli.command()
@click.argument("repository")
@click.argument("name", required=False)
@click.option("-i", "--image", default="HEAD", help="where the branch starts (default HEAD)")
@click.option("-d", "--delete", "delete", is_flag=True, help="delete the branch")
def branch(repository, name, image, delete):
    """Create a branch (or list the branches, or delete one with -d)."""
    if name is None:
        call("branches", repository=repository)
    elif delete:
        call("delete_branch", repository=repository, name=name)
    else:
        call("branch", repository=repository, name=name, image=image)


@cli.command(name="delete-image")
@click.argument("repository")
@click.argument("image")
@click.option("--force", is_flag=True, default=None)
def delete_image(repository, image, force):
    """Delete an image and its descendants."""
    call("delete_image", repository=repository, image=image, force=force)


@cli.command()
@click.argument("repository")
def prune(repository):
    """Delete the images no branch, tag or HEAD reaches."""
    call("prune", repository=repository)


@cli.command()
@click.argument("repository")
@click.option("--force", is_flag=True, default=None)
def rm(repository, force):
    """Delete a repository (objects stay until cleanup)."""
    call("rm", repository=repository, force=force)


@cli.command()
def cleanup():
    """Delete the objects no image references."""
    call("cleanup")


# ---------------------------------------------------------------------------------------------------------------
# Importing and mounting
# ---------------------------------------------------------------------------------------------------------------

@cli.command(name="import")
@click.argument("source")
@click.argument("table_or_query")
@click.argument("target")
@click.argument("target_table", required=False)
@click.option("-i", "--image", help="the source image (default its HEAD)")
@click.option("--query", is_flag=True, help="TABLE_OR_QUERY is a SELECT (then TARGET_TABLE is needed)")
def import_(source, table_or_query, target, target_table, image, query):
    """Import a table, or the result of a query, from a repository or schema."""
    if query:
        if target_table is None:
            raise click.UsageError("an imported query needs a TARGET_TABLE")
        call("import_query", source_repository=source, query=table_or_query, target_repository=target,
             target_table=target_table, source_image=image)
    else:
        call("import_table", source_repository=source, source_table=table_or_query, target_repository=target,
             target_table=target_table, source_image=image)


@cli.command()
@click.argument("handler")
@click.argument("mountpoint")
@click.option("-o", "--options", "options", default="{}", help="handler options as JSON")
@click.option("--tables", help='JSON: a list of names, or {"t": {"col": "type"}}')
def mount(handler, mountpoint, options, tables):
    """Mount a foreign database as a schema of foreign tables."""
    call("mount", mountpoint=mountpoint, handler=handler, options=jsonb(options), tables=jsonb(tables))


@cli.command()
@click.argument("mountpoint")
@click.option("--force", is_flag=True, default=None)
def unmount(mountpoint, force):
    """Drop a mountpoint (or a repository, like rm)."""
    call("unmount", mountpoint=mountpoint, force=force)


@cli.command(name="mount-handlers")
def mount_handlers():
    """The registered mount handlers."""
    call("mount_handlers")


# ---------------------------------------------------------------------------------------------------------------
# Other engines
# ---------------------------------------------------------------------------------------------------------------

@cli.command()
def remotes():
    """The remotes this engine knows (never their passwords)."""
    call("remotes")


@cli.command(name="add-remote")
@click.argument("name")
@click.argument("host")
@click.argument("port", type=int)
@click.argument("dbname")
@click.argument("username")
@click.option("--password", prompt=True, hide_input=True, default="", help="asked for when not given")
def add_remote(name, host, port, dbname, username, password):
    """Register another engine."""
    call("add_remote", name=name, host=host, port=port, dbname=dbname, username=username, password=password or None)


@cli.command(name="delete-remote")
@click.argument("name")
def delete_remote(name):
    """Forget a remote."""
    call("delete_remote", name=name)


@cli.command()
@click.argument("remote")
@click.argument("remote_repository")
@click.argument("local_repository", required=False)
@click.option("--download-all", is_flag=True, default=None, help="download every object now")
def clone(remote, remote_repository, local_repository, download_all):
    """Clone a repository from a remote."""
    ensure_remote(remote)
    call("clone", remote=remote, remote_repository=remote_repository, local_repository=local_repository,
         download_all=download_all)


@cli.command()
@click.argument("repository")
@click.option("--download-all", is_flag=True, default=None)
@click.option("--overwrite-tags", is_flag=True, default=None)
def pull(repository, download_all, overwrite_tags):
    """Fetch new images, tags and branches from the upstream."""
    call("pull", repository=repository, download_all=download_all, overwrite_tags=overwrite_tags)


@cli.command()
@click.argument("repository")
@click.argument("remote", required=False)
@click.argument("remote_repository", required=False)
@click.option("--handler", help="DB (default) or S3")
@click.option("--handler-options", help="JSON, e.g. {\"threads\": 4}")
def push(repository, remote, remote_repository, handler, handler_options):
    """Send new images, tags and objects to a remote (default: the upstream)."""
    ensure_remote(remote)
    call("push", repository=repository, remote=remote, remote_repository=remote_repository, handler=handler,
         handler_options=jsonb(handler_options))


@cli.command()
@click.argument("repository")
@click.argument("remote", required=False)
@click.argument("remote_repository", required=False)
def upstream(repository, remote, remote_repository):
    """Show the upstream of a repository, or set it (REMOTE REMOTE_REPOSITORY)."""
    if remote is None:
        call("upstream", repository=repository)
    else:
        call("set_upstream", repository=repository, remote=remote, remote_repository=remote_repository or repository)


@cli.command(name="grant-namespace")
@click.argument("namespace")
@click.argument("role")
def grant_namespace(namespace, role):
    """Let a role write a namespace (registry owner only)."""
    call("grant_namespace", namespace=namespace, role=role)


@cli.command(name="revoke-namespace")
@click.argument("namespace")
@click.argument("role")
def revoke_namespace(namespace, role):
    """Take a namespace back from a role."""
    call("revoke_namespace", namespace=namespace, role=role)


@cli.command(name="configure-s3")
@click.argument("endpoint")
@click.argument("access_key")
@click.argument("bucket")
@click.option("--secret-key", prompt=True, hide_input=True, help="asked for when not given")
@click.option("--secure", is_flag=True, default=None, help="https")
@click.option("--region")
def configure_s3(endpoint, access_key, bucket, secret_key, secure, region):
    """Where this registry keeps objects (S3-compatible storage; owner only)."""
    call("configure_s3", endpoint=endpoint, access_key=access_key, secret_key=secret_key, bucket=bucket,
         secure=secure, region=region)


@cli.command(name="register-mount-handler")
@click.argument("name")
@click.argument("handler")
@click.option("--description")
def register_mount_handler(name, handler, description):
    """Register a mount handler: a function (mountpoint text, options jsonb, tables jsonb) returns void."""
    call("register_mount_handler", name=name, handler=Arg(handler, "regprocedure"), description=description)


@cli.command(name="register-external-handler")
@click.argument("name")
@click.argument("upload")
@click.argument("download")
def register_external_handler(name, upload, download):
    """Register an object store beside DB and S3 (its upload and download functions)."""
    call("register_external_handler", name=name, upload=Arg(upload, "regprocedure"),
         download=Arg(download, "regprocedure"))


# ---------------------------------------------------------------------------------------------------------------
# Splitfiles
# ---------------------------------------------------------------------------------------------------------------

_SQL_FILE = re.compile(r"^([ \t]*)SQL[ \t]+FILE[ \t]+(\S+)[ \t]*$", re.MULTILINE | re.IGNORECASE)


def inline_sql_files(text, folder):
    """A Splitfile with each `SQL FILE path` line replaced by `SQL {the file's text}` (paths relative to the
    Splitfile's folder)."""
    def inline(match):
        path = pathlib.Path(match.group(2))
        path = path if path.is_absolute() else folder / path
        try:
            body = path.read_text(encoding="utf-8").strip().rstrip(";")
        except OSError as error:
            raise click.UsageError(f"SQL FILE {match.group(2)}: {error.strerror}") from None
        return f"{match.group(1)}SQL {{{body}}}"

    return _SQL_FILE.sub(inline, text)


@cli.command()
@click.argument("splitfile", type=click.Path(exists=True, dir_okay=False))
@click.option("-o", "--output-repository", required=True)
@click.option("-a", "--arg", "args", nargs=2, multiple=True, metavar="KEY VALUE", help="a ${KEY} parameter")
@click.option("--keep-layers/--no-keep-layers", default=True, show_default=True,
              help="when a command fails, keep the images of the commands before it (a rerun resumes from them)")
def build(splitfile, output_repository, args, keep_layers):
    """Build a Splitfile (SQL FILE includes are inlined here). A failing command makes the exit status 1, also
    when the layers before it are kept (the engine then warns and returns no image instead of raising)."""
    path = pathlib.Path(splitfile)
    text = inline_sql_files(path.read_text(encoding="utf-8"), path.parent)
    _, result = call("build", splitfile=text, output_repository=output_repository,
                     params=jsonb(json.dumps(dict(args))), keep_layers=Arg(keep_layers, "boolean"))
    if not result or result[0][0] is None:
        click.echo("sgr: the build failed (see the warning above); the images of the commands before the failing "
                   "one are kept, and a rerun resumes from them", err=True)
        sys.exit(1)


@cli.command(name="register-command")
@click.argument("name")
@click.argument("calc_hash")
@click.argument("execute")
def register_command(name, calc_hash, execute):
    """Register a custom Splitfile command (its calc_hash and execute functions)."""
    call("register_command", name=name, calc_hash=Arg(calc_hash, "regprocedure"),
         execute=Arg(execute, "regprocedure"))


@cli.command()
@click.argument("repository")
@click.argument("image", default="HEAD")
def provenance(repository, image):
    """The sources an image was built from."""
    call("provenance", repository=repository, image=image)


@cli.command()
@click.argument("repository")
@click.argument("image", default="HEAD")
def dependents(repository, image):
    """The images built from an image."""
    call("dependents", repository=repository, image=image)


@cli.command()
@click.argument("repository")
@click.argument("image", default="HEAD")
@click.option("--ignore-irreproducible", is_flag=True, default=None)
def reconstruct(repository, image, ignore_irreproducible):
    """The Splitfile that rebuilds an image."""
    call("reconstruct_splitfile", repository=repository, image=image, ignore_irreproducible=ignore_irreproducible)


@cli.command()
@click.argument("repository")
@click.argument("image")
@click.option("-u", "--update", "updates", nargs=2, multiple=True, metavar="SOURCE IMAGE",
              help="rebuild against this version of a source")
def rebuild(repository, image, updates):
    """Rebuild an image against other versions of its sources."""
    call("rebuild", repository=repository, image=image, update_sources=jsonb(json.dumps(dict(updates))))


# ---------------------------------------------------------------------------------------------------------------
# Beyond Splitgraph
# ---------------------------------------------------------------------------------------------------------------

@cli.command()
@click.argument("repository")
@click.argument("source")
@click.option("--strategy", type=click.Choice(["ours", "theirs"]))
def merge(repository, source, strategy):
    """Merge a branch, tag or image into the checkout's branch."""
    call("merge", repository=repository, source=source, strategy=strategy)


@cli.command()
@click.argument("repository")
@click.argument("source")
def conflicts(repository, source):
    """What a merge of SOURCE would conflict on (nothing is merged)."""
    call("conflicts", repository=repository, source=source)


@cli.command(name="mount-image")
@click.argument("repository")
@click.argument("image")
@click.argument("schema", required=False)
def mount_image(repository, image, schema):
    """A read-only schema that queries an image without checking it out."""
    call("mount_image", repository=repository, image=image, schema=schema)


@cli.command()
@click.argument("repository")
@click.argument("table")
@click.argument("image", default="HEAD")
def blame(repository, table, image):
    """The image that last changed each row."""
    call("blame", repository=repository, table_name=table, image=image)


@cli.command()
@click.argument("repository", required=False)
def verify(repository):
    """Recompute every object's hash and check the metadata."""
    call("verify", repository=repository)


# ---------------------------------------------------------------------------------------------------------------
# Change tracking on any schema
# ---------------------------------------------------------------------------------------------------------------

@cli.command()
@click.argument("schema")
@click.argument("tables", nargs=-1, required=True)
def track(schema, tables):
    """Log every change to tables of a schema."""
    call("track_tables", schema=schema, tables=Arg(list(tables), "text[]"))


@cli.command()
@click.argument("schema")
@click.argument("tables", nargs=-1, required=True)
def untrack(schema, tables):
    """Stop logging changes to tables."""
    call("untrack_tables", schema=schema, tables=Arg(list(tables), "text[]"))


@cli.command()
def tracked():
    """Every tracked table."""
    call("tracked_tables")


# ---------------------------------------------------------------------------------------------------------------
# SQL and CSV
# ---------------------------------------------------------------------------------------------------------------

@cli.command()
@click.argument("query")
def sql(query):
    """Run one SQL statement and print its rows."""
    ctx = click.get_current_context()
    try:
        columns, rows = engine.run(query)
    except engine.EngineError as error:
        fail(error)
    output.show(columns, rows, ctx.obj["json"])


@cli.group()
def csv():
    """CSV files in and out of a checkout, through COPY on the client side (no server file access)."""


def _qualified(schema, table):
    return ".".join('"' + n.replace('"', '""') + '"' for n in (schema, table))


@csv.command(name="import")
@click.argument("file", type=click.File("r", encoding="utf-8"))
@click.argument("repository")
@click.argument("table")
@click.option("--delimiter", default=",")
@click.option("--no-header", is_flag=True, help="the file has no header line")
@click.option("--create", is_flag=True, help="create the table (text columns named by the header) if missing")
@click.option("-k", "--key", "keys", multiple=True, help="primary key column of a created table")
def csv_import(file, repository, table, delimiter, no_header, create, keys):
    """Load a CSV file into a table of a repository's checkout."""
    target = _qualified(repository, table)
    conn = config.connect()
    try:
        with conn.cursor() as cur:
            if create:
                header = file.readline()
                file.seek(0)
                import csv as csv_module

                names = next(csv_module.reader([header], delimiter=delimiter))
                if no_header:
                    names = [f"col{i + 1}" for i in range(len(names))]
                columns = ", ".join(f'"{n}" text' for n in (c.replace('"', '""') for c in names))
                key = ", ".join('"' + k.replace('"', '""') + '"' for k in keys)
                cur.execute(f"create table if not exists {target} ({columns}"
                            + (f", primary key ({key})" if key else "") + ")")
            cur.copy_expert(f"copy {target} from stdin with (format csv, header {str(not no_header).lower()}, "
                            f"delimiter {engine_literal(delimiter)})", file)
            click.echo(f"{cur.rowcount} row(s) loaded into {repository}.{table}", err=True)
    except Exception as error:  # noqa: BLE001 - psycopg2 errors, printed as the engine wrote them
        import psycopg2

        if isinstance(error, psycopg2.Error):
            fail(engine.EngineError.from_psycopg(error))
        raise
    finally:
        conn.close()


@csv.command(name="export")
@click.argument("repository")
@click.argument("table")
@click.argument("file", type=click.File("w", encoding="utf-8"), default="-")
@click.option("--delimiter", default=",")
def csv_export(repository, table, file, delimiter):
    """Write a table of a repository's checkout as CSV (to FILE, or standard output)."""
    conn = config.connect()
    try:
        with conn.cursor() as cur:
            cur.copy_expert(f"copy (select * from {_qualified(repository, table)}) to stdout with (format csv, "
                            f"header true, delimiter {engine_literal(delimiter)})", file)
    except Exception as error:  # noqa: BLE001
        import psycopg2

        if isinstance(error, psycopg2.Error):
            fail(engine.EngineError.from_psycopg(error))
        raise
    finally:
        conn.close()


def engine_literal(text):
    return "'" + text.replace("'", "''") + "'"
