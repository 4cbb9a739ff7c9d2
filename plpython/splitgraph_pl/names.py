"""Validation and quoting of user-supplied names (repositories, tags, branches, tables)."""
import re

from . import errors

# Patterns are matched whole with fullmatch: in Python, $ also matches before a trailing newline.
_REPOSITORY = re.compile(r"(?:[A-Za-z0-9_-]{1,64}/)?[A-Za-z0-9_-]{1,64}")
_TAG = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_.-]{0,63}")
_BRANCH = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]{0,63}")
RESERVED_REFS = ("HEAD", "latest")
# A reference to an image after repository: (a tag, a branch, a hash or a prefix of one), in Splitfiles and SQL.
IMAGE_REF = re.compile(r"[A-Za-z0-9_][A-Za-z0-9_./-]*")
# \A and \Z anchor whole strings even where a caller uses .match
HASH = re.compile(r"\A[0-9a-f]{64}\Z")
# a tag or branch that reads as a full image hash in any case would shadow it
_HASH_ANY_CASE = re.compile(r"[0-9A-Fa-f]{64}")
# Schemas that are the system's or the extension's: never a checkout (PostgreSQL reserves pg_ itself).
_RESERVED_SCHEMA = re.compile(r"public|information_schema|pg_.*|splitgraph.*|sg_query_.*", re.DOTALL)
FLAG_COLUMN = "sg_ud_flag"


def ident(name):
    """Quote an identifier, always: names are user input (quotes, unicode, reserved words)."""
    return '"' + name.replace('"', '""') + '"'


def literal(value):
    """Quote a string literal. Every function of the extension runs with standard_conforming_strings on (its SET
    clause, scripts/build_sql.py), so a backslash is an ordinary character inside it."""
    return "'" + value.replace("'", "''") + "'"


def qualified(schema, table):
    return ident(schema) + "." + ident(table)


def is_repository(name):
    """Whether a name has the form of a repository name."""
    return bool(_REPOSITORY.fullmatch(name))


def repository(plpy, name):
    """A valid repository name, or an error explaining the rule."""
    if name is None or not _REPOSITORY.fullmatch(name):
        errors.fail(plpy, errors.INVALID_NAME, f"invalid repository name {name!r}",
                    hint="use namespace/name or name: letters, digits, - and _, at most 64 characters each part")
    return name


def schema_of(repo):
    """The checkout schema: the repository's name, cut (like any identifier) to Postgres's 63 bytes."""
    return repo[:63]


def namespace_of(repo):
    return repo.split("/", 1)[0] if "/" in repo else ""


def reserved_schema(name):
    """Whether a schema name belongs to the system or the extension (public, information_schema, pg_*,
    splitgraph*, sg_query_*): no repository is checked out into one."""
    return bool(_RESERVED_SCHEMA.fullmatch(name))


def _ref_name(plpy, kind, pattern, name, rule):
    if name is None or not pattern.fullmatch(name) or name in RESERVED_REFS or _HASH_ANY_CASE.fullmatch(name):
        errors.fail(plpy, errors.INVALID_NAME, f"invalid {kind} name {name!r}",
                    hint=f"{rule}; HEAD, latest and 64-digit hashes (in any case) are reserved")
    return name


def is_tag(name):
    """Whether a name may be a tag (as tag() checks, without raising)."""
    return (isinstance(name, str) and bool(_TAG.fullmatch(name)) and name not in RESERVED_REFS
            and not _HASH_ANY_CASE.fullmatch(name))


def is_branch(name):
    """Whether a name may be a branch (as branch() checks, without raising)."""
    return (isinstance(name, str) and bool(_BRANCH.fullmatch(name)) and name not in RESERVED_REFS
            and not _HASH_ANY_CASE.fullmatch(name))


def tag(plpy, name):
    return _ref_name(plpy, "tag", _TAG, name, "use letters, digits, _ . and -, at most 64 characters")


def branch(plpy, name):
    return _ref_name(plpy, "branch", _BRANCH, name, "use letters, digits, _ . / and -, at most 64 characters")


def table(plpy, name):
    if name is None or name == "":
        errors.fail(plpy, errors.INVALID_NAME, "table name must not be empty")
    return name
