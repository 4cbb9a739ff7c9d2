"""Mounted images: a schema of read-only views over an image's objects (reading.py), which any role may query from
any client, without checking the image out."""
from . import db, errors, meta, names, reading
from . import tables as tbl
from .declare import api
from .names import ident

# Schema names with this character are given by mount_image only ("repository:tag"): never a repository's name.
_SEPARATOR = ":"


def default_schema(plpy, repo, image, image_hash):
    """"repository:tag" (the tag given, else the image's first tag), or "repository:<12 hex digits>"."""
    tags = db.column(plpy, "select tag from splitgraph_meta.tags where repository = $1 and image_hash = $2 "
                           "order by tag", repo, image_hash)
    label = image if image in tags else (tags[0] if tags else image_hash[:12])
    return f"{repo}{_SEPARATOR}{label}"


def _check_schema(plpy, name, given, caller, admin):
    if not name or len(name.encode("utf-8")) > 63:
        errors.fail(plpy, errors.INVALID_NAME, f'schema name "{name}" is not 1 to 63 bytes long',
                    hint="pass a shorter schema name to mount_image")
    if names.reserved_schema(name):
        errors.fail(plpy, errors.INVALID_NAME, f'"{name}" cannot be the schema of a mounted image',
                    hint="choose a name that is not public, information_schema, pg_*, splitgraph* or sg_query_*")
    if given and not admin and _SEPARATOR in name:
        errors.fail(plpy, errors.INVALID_NAME, f'schema names with "{_SEPARATOR}" are given by mount_image itself',
                    hint="leave schema null for the default name, or choose one without a colon")
    if given and not admin and names.is_repository(name) and names.namespace_of(name) not in ("", caller):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f'role "{caller}" may not mount an image as "{name}": it is named like a repository of namespace '
                    f'"{names.namespace_of(name)}"',
                    hint=f"a schema name with a / starts with your role's name ({caller}/...)")
    if db.scalar(plpy, "select exists (select from splitgraph_meta.repositories where left(repository, 63) = $1)",
                 name):
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{name}" is the name of a repository (its checkout schema)',
                    hint="choose another schema name")


@api("mount_image(repository text, image text, schema text default null) returns text",
     "mount_image(repository, image, schema = \"repository:tag\"): a read-only schema of views over the image's "
     "objects, one per table, that every role may query without a checkout (an image without a tag is named by "
     "12 digits of its hash); returns the schema's name; mounting the image there again does nothing")
def mount_image(plpy, repository, image, schema=None):
    """Any role may mount any image (every role may read every repository). The schema and its views are the
    extension's; the role that mounted it (or a writer of the repository, or an administrator) may unmount it."""
    repo = meta.require(plpy, repository)
    image_hash, _ = meta.resolve(plpy, repo, image)
    name = schema if schema is not None else default_schema(plpy, repo, image, image_hash)
    caller = db.scalar(plpy, "select session_user::text")
    admin = meta.caller_is_admin(plpy)
    _check_schema(plpy, name, schema is not None, caller, admin)
    mounted = db.one(plpy, """select repository, image_hash from splitgraph_meta.image_mounts where schema_name = $1
                              for update""", name)
    if mounted is not None and db.schema_exists(plpy, name):
        if (mounted["repository"], mounted["image_hash"]) == (repo, image_hash):
            return name
        errors.fail(plpy, errors.DUPLICATE_SCHEMA,
                    f'schema "{name}" holds image {mounted["image_hash"][:12]} of repository "{mounted["repository"]}"',
                    hint="unmount it first (splitgraph.unmount), or mount into another schema")
    if db.schema_exists(plpy, name):
        errors.fail(plpy, errors.DUPLICATE_SCHEMA, f'schema "{name}" already exists',
                    hint="mount_image never adopts a schema: choose another name")
    plpy.execute(f"create schema {ident(name)}; grant usage on schema {ident(name)} to public;\n"
                 f"comment on schema {ident(name)} is "
                 f"{names.literal(f'image {image_hash} of repository {repo}, mounted read-only by splitgraph')}")
    for table, version in meta.image_tables(plpy, repo, image_hash).items():
        cols = tbl.as_trusted(tbl.from_spec(plpy, version.spec, version.definition))
        reading.make_view(plpy, name, table, cols, version.object_ids, [repo, table])
        plpy.execute(f"grant select on {names.qualified(name, table)} to public")
    db.run(plpy, """insert into splitgraph_meta.image_mounts (schema_name, repository, image_hash, owner)
                    values ($1, $2, $3, $4)
                    on conflict (schema_name) do update
                    set repository = excluded.repository, image_hash = excluded.image_hash, owner = excluded.owner,
                        created = pg_catalog.clock_timestamp()""", name, repo, image_hash, caller)
    reading.drop_unused(plpy)  # a squash a copy was built from
    return name


def is_mounted(plpy, name):
    return db.scalar(plpy, "select exists (select from splitgraph_meta.image_mounts where schema_name = $1)", name)


def unmount_image(plpy, name, force):
    """Drop a mounted image's schema (its views) and forget it: for the role that mounted it, a writer of its
    repository or an administrator. Unless force, refused (2BP01) when objects outside the schema depend on it
    (another role's view over one of its views); with force those go too. Squashes and copies no view needs any
    more are dropped."""
    row = db.one(plpy, """
        select m.repository, m.owner, n.oid is not null as exists,
               coalesce(n.nspowner = e.extowner, false) as ours,
               pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') as owner_role
        from splitgraph_meta.image_mounts m
        cross join pg_catalog.pg_extension e
        left join pg_catalog.pg_namespace n on n.nspname = m.schema_name
        left join pg_catalog.pg_roles r on r.rolname = m.owner
        where m.schema_name = $1 and e.extname = 'splitgraph'
        for update of m""", name)
    caller = db.scalar(plpy, "select session_user::text")
    if not (meta.caller_is_admin(plpy) or row["owner_role"] or names.namespace_of(row["repository"]) == caller):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'role "{caller}" may not unmount "{name}"',
                    hint=f'the role that mounted it ("{row["owner"]}"), a writer of repository '
                         f'"{row["repository"]}" or an administrator may')
    if row["exists"] and row["ours"]:
        outside = [] if force else db.dependents_outside(plpy, name)
        if outside:
            errors.fail(plpy, errors.DEPENDENT_OBJECTS_STILL_EXIST,
                        f'unmounting "{name}" would drop objects outside it: ' + ", ".join(outside[:5])
                        + (f" and {len(outside) - 5} more" if len(outside) > 5 else ""),
                        hint="drop those objects first, or pass force => true to drop them too")
        with db.settings(plpy, {"client_min_messages": "warning"}):
            plpy.execute(f"drop schema {ident(name)} cascade")
    db.run(plpy, "delete from splitgraph_meta.image_mounts where schema_name = $1", name)
    reading.drop_unused(plpy)
