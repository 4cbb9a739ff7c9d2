"""Mounting foreign databases: a schema of foreign tables made by a mount handler (postgres_fdw, mysql_fdw, CSV
files through file_fdw, or a handler registered by an administrator). A mountpoint is a plain schema: snapshot
it into a repository with import_table.

Mounting is a privilege: superusers, the extension's owner and members of role splitgraph_mount may mount. A
mount runs with its caller's identity (mount and mount_postgres are SECURITY INVOKER), so the foreign-data
wrappers' own rules for non-superusers apply (postgres_fdw: a password is required, and used). The servers and
user mappings are the caller's (a mapping for the caller only, never for PUBLIC). Only what needs the
extension's rights goes through helpers that check the caller themselves: mount_begin (create the mountpoint
schema for the caller and record it) and the CSV handler (file_fdw tables the extension owns, readable only by
roles that may read server files, checked at every read).

Credentials go into user mappings (whose options only superusers, the server's owner and the mapped role can
read), never into server options, errors or notices.
"""
import csv
import hashlib
import io
import json
import os
import re

from . import db, errors, image_mounts, meta, names, repositories
from .declare import api, helper
from .names import ident, literal

MOUNT_ROLE = meta.MOUNT_ROLE
# file_fdw and mysql_fdw, when a mount installs them, go into this schema (never wherever search_path points).
FDW_SCHEMA = "splitgraph_fdw"
_RESERVED_SCHEMAS = ("public", "information_schema")
_HANDLER_NAME = re.compile(r"^[a-z][a-z0-9_]{0,62}$")
# Connection options that make the database server read one of its own files (libpq's and mysql_fdw's):
# superusers only.
_FILE_OPTIONS = ("passfile", "sslkey", "sslcert", "sslrootcert", "sslcrl", "sslcrldir", "service", "servicefile",
                 "mysql_default_file", "ssl_key", "ssl_cert", "ssl_ca", "ssl_capath")
# The first record of a CSV file (its header) must lie within this many bytes.
_HEADER_BYTES = 1 << 20
_IS_ADMIN = """select r.rolsuper or pg_catalog.pg_has_role(r.oid, e.extowner, 'MEMBER')
               from pg_catalog.pg_roles r, pg_catalog.pg_extension e
               where r.rolname = $1 and e.extname = 'splitgraph'"""
# Is an object (classid, objid) of the schema $1, or a user mapping of one of the servers $2? Objects of other
# kinds count as outside it; toast tables and their indexes are part of the table they belong to.
def server_name(mountpoint):
    """The foreign server a built-in handler makes for a mountpoint."""
    return "sg_mount_" + hashlib.sha256(mountpoint.encode("utf-8")).hexdigest()[:20]


def _json(value):
    return json.loads(value) if isinstance(value, str) else value


def _options(plpy, options, required, optional=()):
    """The options of a handler as a dict of strings; an error lists what is missing or unknown (never values)."""
    options = _json(options) or {}
    if not isinstance(options, dict):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "mount options must be a JSON object")
    missing = [k for k in required if options.get(k) in (None, "")]
    if missing:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "mount options lack " + ", ".join(missing),
                    hint="give " + ", ".join(required) + (" (optional: " + ", ".join(optional) + ")"
                                                          if optional else ""))
    return {k: (json.dumps(v) if isinstance(v, (dict, list)) else str(v).lower() if isinstance(v, bool) else str(v))
            for k, v in options.items() if v is not None}


def _tables(plpy, tables):
    """None, a list of table names, or {table: {column: type}}."""
    tables = _json(tables)
    if tables is None or isinstance(tables, list) and all(isinstance(t, str) for t in tables):
        return tables
    if isinstance(tables, dict) and all(isinstance(c, dict) and c and all(isinstance(t, str) for t in c.values())
                                        for c in tables.values()):
        return tables
    errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                'tables must be a list of names or an object {"table": {"column": "type"}}')


def _option_list(options):
    return ", ".join(f"{ident(k)} {literal(v)}" for k, v in options.items())


def _is_admin(plpy, role):
    """Whether a role is a superuser or a member of the extension's owner."""
    return bool(db.scalar(plpy, _IS_ADMIN, role))


def _current_user(plpy):
    return db.scalar(plpy, "select current_user::text")


# A type name as the mount API reads it: words or quoted names, dots, one parenthesized list of modifiers
# (numbers or words) and array brackets; nothing else (no comments, strings or operators).
_TYPE_TOKEN = re.compile(r'\s*(?:(?P<quoted>"(?:[^"]|"")+")'
                         r"|(?P<word>[A-Za-z_\x80-\U0010ffff][A-Za-z0-9_$\x80-\U0010ffff]*)"
                         r"|(?P<number>[0-9]+)|(?P<punct>[().,\[\]]))")
_ASCII_LOWER = str.maketrans("ABCDEFGHIJKLMNOPQRSTUVWXYZ", "abcdefghijklmnopqrstuvwxyz")
# interval's fields, as PostgreSQL's grammar turns them into a modifier: bit numbers of datetime.h
_INTERVAL_BITS = {"month": 1, "year": 2, "day": 3, "hour": 10, "minute": 11, "second": 12}
_INTERVAL_RANGES = {("year",): ("year",), ("month",): ("month",), ("day",): ("day",), ("hour",): ("hour",),
                    ("minute",): ("minute",), ("second",): ("second",), ("year", "month"): ("year", "month"),
                    ("day", "hour"): ("day", "hour"), ("day", "minute"): ("day", "hour", "minute"),
                    ("day", "second"): ("day", "hour", "minute", "second"), ("hour", "minute"): ("hour", "minute"),
                    ("hour", "second"): ("hour", "minute", "second"), ("minute", "second"): ("minute", "second")}
_INTERVAL_FULL_RANGE = 0x7FFF


def _type_tokens(text):
    """(kind, value) of each token of a type name, or None when it holds anything else. Unquoted words are
    folded to lower case as PostgreSQL folds them."""
    tokens, position, end = [], 0, len(text.rstrip())
    while position < end:
        match = _TYPE_TOKEN.match(text, position)
        if match is None:
            return None
        kind = match.lastgroup
        value = match.group(kind)
        if kind == "quoted":
            value = value[1:-1].replace('""', '"')
        elif kind == "word":
            value = value.translate(_ASCII_LOWER)
        tokens.append((kind, value))
        position = match.end()
    return tokens


def _type_modifiers(text):
    """The modifiers PostgreSQL's grammar makes of a type name (already known to be valid), as the strings the
    type's modifier input function takes: [] for none; None when the name has a shape this does not read."""
    tokens = _type_tokens(text)
    if not tokens:
        return None
    open_, close, number = ("punct", "["), ("punct", "]"), "number"
    while tokens and tokens[-1] == close:   # array bounds, [] or [n], do not change the modifier
        if len(tokens) >= 2 and tokens[-2] == open_:
            tokens = tokens[:-2]
        elif len(tokens) >= 3 and tokens[-3] == open_ and tokens[-2][0] == number:
            tokens = tokens[:-3]
        else:
            return None
    if open_ in tokens or close in tokens:
        return None
    before, modifiers, after = tokens, [], []
    if ("punct", "(") in tokens:
        start = tokens.index(("punct", "("))
        if ("punct", ")") not in tokens[start:]:
            return None
        stop = tokens.index(("punct", ")"), start)
        before, inner, after = tokens[:start], tokens[start + 1:stop], tokens[stop + 1:]
        if (not inner or inner[1::2] != [("punct", ",")] * (len(inner) // 2)
                or any(kind == "punct" for kind, _ in inner[0::2])):
            return None
        modifiers = [value for _, value in inner[0::2]]
    if any(kind != "word" for kind, _ in after) or any(kind == "punct" and value != "." for kind, value in before):
        return None
    keywords = [value for kind, value in before] if all(kind == "word" for kind, _ in before) else []
    if keywords[:1] == ["interval"]:
        fields = tuple(w for w in keywords[1:] + [value for _, value in after] if w != "to")
        if not fields:
            return [str(_INTERVAL_FULL_RANGE)] + modifiers if modifiers else []
        if fields not in _INTERVAL_RANGES or modifiers and fields[-1] != "second":
            return None
        return [str(sum(1 << _INTERVAL_BITS[f] for f in _INTERVAL_RANGES[fields]))] + modifiers
    if keywords[:1] == ["float"]:
        return []   # float(p) names real or double precision, which take no modifier
    if keywords in (["char"], ["character"], ["nchar"], ["national", "character"], ["national", "char"], ["bit"]):
        return modifiers or ["1"]   # char is char(1), bit is bit(1)
    return modifiers


def column_type(plpy, text):
    """The type a caller names for a column ("numeric(10,2)", "text[]", "public.mood"), as the catalog spells it
    (format_type of the type's oid and modifier): resolved, never pasted. Unknown or malformed: 42704."""
    def unknown():
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f"type {text!r} does not exist",
                    hint="name a type, e.g. integer, numeric(10,2), text[] (schema-qualify types outside pg_catalog)")

    if not isinstance(text, str) or not text.strip() or "\x00" in text:
        unknown()
    try:
        # to_regtype parses exactly one type name (raising on anything else) and looks it up
        oid = db.scalar(plpy, "select pg_catalog.to_regtype($1)::oid::bigint", text)
    except plpy.SPIError:
        oid = None
    modifiers = _type_modifiers(text)
    if oid is None or modifiers is None:
        unknown()
    typmod = -1
    if modifiers:
        # the type's own modifier input function (a base type's, which only a superuser can define)
        reader = db.scalar(plpy, """select pg_catalog.format('%I.%I', n.nspname, p.proname)
                                    from pg_catalog.pg_type t
                                    join pg_catalog.pg_proc p on p.oid = t.typmodin
                                    join pg_catalog.pg_namespace n on n.oid = p.pronamespace
                                    where t.oid = $1::bigint::oid""", oid)
        if reader is None:
            unknown()
        typmod = db.scalar(plpy, f"select {reader}($1::text[]::pg_catalog.cstring[])", modifiers)
    return db.scalar(plpy, "select pg_catalog.format_type($1::bigint::oid, $2::integer)", oid, typmod)


def _install_fdw(plpy, name, package, admin, grant=False):
    """Make sure the foreign-data wrapper extension `name` is installed. Only an administrator's mount installs
    it, into schema splitgraph_fdw (with grant: and lets members of splitgraph_mount use the wrapper); anyone
    else is told to ask one."""
    if db.scalar(plpy, "select exists (select from pg_catalog.pg_extension where extname = $1)", name):
        return
    if not db.scalar(plpy, "select exists (select from pg_catalog.pg_available_extensions where name = $1)", name):
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED, f"the {name} extension is not installed on this server",
                    hint=f"install Debian's {package}")
    if not admin:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f"the {name} extension is not created in this database, and only an administrator may create it",
                    hint=f"ask an administrator to mount with it once, or to run CREATE EXTENSION {name} "
                         f"SCHEMA {FDW_SCHEMA}")
    owner_is_superuser = db.scalar(plpy, """select r.rolsuper from pg_catalog.pg_namespace n
                                            join pg_catalog.pg_roles r on r.oid = n.nspowner
                                            where n.nspname = $1""", FDW_SCHEMA)
    if owner_is_superuser is None:
        plpy.execute(f"create schema {ident(FDW_SCHEMA)}")
        plpy.execute(f"comment on schema {ident(FDW_SCHEMA)} is "
                     "'Foreign-data wrappers that splitgraph mounts installed (file_fdw, mysql_fdw)'")
    elif not owner_is_superuser:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'schema "{FDW_SCHEMA}" exists and is not owned by a superuser',
                    hint=f"drop or rename it, or create the {name} extension yourself")
    with db.settings(plpy, {"client_min_messages": "warning"}):
        plpy.execute(f"create extension {ident(name)} schema {ident(FDW_SCHEMA)}")
    if grant and db.scalar(plpy, "select pg_catalog.to_regrole($1) is not null", MOUNT_ROLE):
        plpy.execute(f"grant usage on foreign data wrapper {ident(name)} to {ident(MOUNT_ROLE)}")


def _remote_server(plpy, mountpoint, wrapper, server_opts, opts, user_option):
    """The mountpoint's foreign server of `wrapper`, made by (and so owned by) the caller; the credentials
    (opts' username and password) go into a user mapping for the caller, its user under the wrapper's name for
    it (`user_option`). Returns the server's name."""
    server = server_name(mountpoint)
    user_opts = {user_option: opts["username"], **({"password": opts["password"]} if "password" in opts else {})}
    plpy.execute(f"create server {ident(server)} foreign data wrapper {ident(wrapper)} "
                 f"options ({_option_list(server_opts)});"
                 f"create user mapping for current_user server {ident(server)} options ({_option_list(user_opts)})")
    return server


def _foreign_tables(plpy, mountpoint, server, tables, remote_schema, table_options):
    """Foreign tables of `server` in the mountpoint: every table of the remote schema, those listed, or those
    described column by column (types resolved against the catalog). Returns the tables made column by column."""
    if isinstance(tables, dict):
        statements = []
        for table, columns in tables.items():
            definitions = ", ".join(f"{ident(c)} {column_type(plpy, t)}" for c, t in columns.items())
            statements.append(f"create foreign table {names.qualified(mountpoint, table)} ({definitions}) "
                              f"server {ident(server)} options ({_option_list(table_options(table))})")
        plpy.execute(";\n".join(statements))
        return list(tables)
    limit = f" limit to ({', '.join(ident(t) for t in tables)})" if tables else ""
    plpy.execute(f"import foreign schema {ident(remote_schema)}{limit} from server {ident(server)} "
                 f"into {ident(mountpoint)}")
    return []


# ---------------------------------------------------------------------------------------------------------------
# Built-in handlers: (mountpoint, options, tables), called in the (existing, empty) schema `mountpoint`
# ---------------------------------------------------------------------------------------------------------------

@helper("mount_postgres_fdw(mountpoint text, options jsonb, tables jsonb) returns void",
        "mount_postgres_fdw(mountpoint, options, tables): the postgres_fdw mount handler; runs as its caller",
        security="invoker", public=True)
def mount_postgres_fdw(plpy, mountpoint, options, tables):
    opts = _options(plpy, options, ("host", "username", "dbname", "remote_schema"), ("port", "password"))
    server_opts = {k: v for k, v in opts.items() if k not in ("username", "password", "remote_schema")}
    server_opts.setdefault("port", "5432")
    server = _remote_server(plpy, mountpoint, "postgres_fdw", server_opts, opts, "user")
    _foreign_tables(plpy, mountpoint, server, _tables(plpy, tables), opts["remote_schema"],
                    lambda t: {"schema_name": opts["remote_schema"], "table_name": t})


@helper("mount_mysql_fdw(mountpoint text, options jsonb, tables jsonb) returns void",
        "mount_mysql_fdw(mountpoint, options, tables): the mysql_fdw mount handler; runs as its caller",
        security="invoker", public=True)
def mount_mysql_fdw(plpy, mountpoint, options, tables):
    options = dict(_json(options) or {})
    if "dbname" not in options and "remote_schema" in options:
        options["dbname"] = options.pop("remote_schema")
    opts = _options(plpy, options, ("host", "username", "dbname"), ("port", "password"))
    _install_fdw(plpy, "mysql_fdw", "postgresql-15-mysql-fdw", _is_admin(plpy, _current_user(plpy)), grant=True)
    if not db.scalar(plpy, "select pg_catalog.has_foreign_data_wrapper_privilege('mysql_fdw', 'USAGE')"):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "mounting MySQL needs USAGE on foreign data wrapper mysql_fdw",
                    hint=f"ask an administrator to GRANT USAGE ON FOREIGN DATA WRAPPER mysql_fdw TO {MOUNT_ROLE}")
    server_opts = {"host": opts["host"], "port": opts.get("port", "3306")}
    server_opts.update({k: v for k, v in opts.items() if k not in ("host", "port", "username", "password", "dbname")})
    server = _remote_server(plpy, mountpoint, "mysql_fdw", server_opts, opts, "username")
    _foreign_tables(plpy, mountpoint, server, _tables(plpy, tables), opts["dbname"],
                    lambda t: {"dbname": opts["dbname"], "table_name": t})


# Inferred CSV column types, most specific first: (type, regular expression every non-empty value matches).
# Dates and times are matched by shape and then checked (_csv_check): a day past the end of its month or a
# year 0000 leaves the column as text rather than making every read of the mounted table fail.
_DATE = r"[0-9]{4}-(0[1-9]|1[0-2])-(0[1-9]|[12][0-9]|3[01])"
_TIME = r"[ T]([01][0-9]|2[0-3]):[0-5][0-9](:[0-5][0-9](\.[0-9]+)?)?"
_CSV_TYPES = (
    ("integer", r"^[+-]?[0-9]{1,9}$"),
    ("bigint", r"^[+-]?[0-9]{1,18}$"),
    ("numeric", r"^[+-]?([0-9]+(\.[0-9]*)?|\.[0-9]+)([eE][+-]?[0-9]+)?$"),
    ("boolean", r"^([Tt]([Rr][Uu][Ee])?|[Ff]([Aa][Ll][Ss][Ee])?|[Yy]([Ee][Ss])?|[Nn][Oo]?)$"),
    ("date", f"^{_DATE}$"),
    ("timestamp", f"^{_DATE}{_TIME}$"),
    ("timestamp with time zone", f"^{_DATE}{_TIME}([Zz]|[+-](0[0-9]|1[0-5])(:?[0-5][0-9])?)$"),
)


def _csv_check(column, type_, pattern):
    """An SQL condition true when the text value `column` has the shape of `type_` and, for dates, is a real
    day. CASE keeps the arithmetic away from values of another shape."""
    if type_ not in ("date", "timestamp", "timestamp with time zone"):
        return f"{column} ~ {literal(pattern)}"
    year, month, day = (f"pg_catalog.substr({column}, {a}, {n})::int" for a, n in ((1, 4), (6, 2), (9, 2)))
    last_day = (f"pg_catalog.date_part('day', pg_catalog.make_date({year}, {month}, 1) "
                "+ interval '1 month' - interval '1 day')")
    return (f"case when {column} !~ {literal(pattern)} then false when {year} = 0 then false "
            f"else {day} <= {last_day} end")


def _cut(name, limit):
    """The longest prefix of `name` that fits in `limit` bytes of UTF-8 (a character is never split)."""
    return name.encode("utf-8")[:limit].decode("utf-8", "ignore")


def _csv_names(fields, header):
    """Column names from the first record of a CSV file: the header's, or col1..colN. Names are cut to the 63
    bytes an identifier holds and made unique (a suffix _2, _3... within those 63 bytes)."""
    if not header:
        return [f"col{i + 1}" for i in range(len(fields))]
    result = []
    for i, field in enumerate(fields):
        base = _cut(field.strip(), 63) or f"col{i + 1}"
        name, n = base, 2
        while name in result:
            suffix = f"_{n}"
            name = _cut(base, 63 - len(suffix)) + suffix
            n += 1
        result.append(name)
    return result


def _csv_first_record(plpy, filename, encoding, delimiter, quote):
    """The fields of the first record of a CSV file (a quoted field may span lines), or None for an empty
    file. Read as raw bytes, then decoded from the file's encoding."""
    size = db.scalar(plpy, "select (pg_catalog.pg_stat_file($1)).size", filename)
    data = db.scalar(plpy, "select pg_catalog.pg_read_binary_file($1, 0, $2)", filename, min(size, _HEADER_BYTES))
    truncated = size > len(data)
    if truncated:
        # whole lines only (a newline byte is a newline in every encoding the server reads)
        data = data[:data.rfind(b"\n") + 1]
    text = db.scalar(plpy, "select pg_catalog.convert_from($1, $2)", data, encoding)
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter, quotechar=quote)
    first = next(reader, None)
    if truncated and (first is None or next(reader, None) is None):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE,
                    f'the first record of file "{filename}" is longer than {_HEADER_BYTES} bytes',
                    hint='give the columns and their types with tables => {"table": {"column": "type"}}')
    if first == []:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f'the first line of file "{filename}" is empty')
    return first


def _csv_mount_owner(plpy, mountpoint):
    """The role a CSV mount is made for (the one mount_begin recorded), checked: the session's user may act
    as it, and it may read server files."""
    row = db.one(plpy, """
        select m.owner, m.handler, pg_catalog.to_regnamespace(pg_catalog.quote_ident(m.mountpoint)) is not null
                   as present,
               pg_catalog.pg_has_role(session_user, r.oid, 'MEMBER') as acting,
               r.rolsuper or pg_catalog.pg_has_role(r.oid, e.extowner, 'MEMBER') as admin,
               pg_catalog.pg_has_role(r.oid, 'pg_read_server_files', 'USAGE') as reads_files
        from splitgraph_meta.mounts m
        join pg_catalog.pg_roles r on r.rolname = m.owner
        cross join pg_catalog.pg_extension e
        where m.mountpoint = $1 and e.extname = 'splitgraph'""", mountpoint)
    if row is None or row["handler"] != "csv" or not row["present"]:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE, f'"{mountpoint}" is not a CSV mount being made',
                    hint="mount CSV files with splitgraph.mount(mountpoint, 'csv', options)")
    if not row["acting"]:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'mountpoint "{mountpoint}" is another role\'s')
    if not row["admin"] and not row["reads_files"]:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "mounting server files needs the pg_read_server_files role")
    return row["admin"]


@helper("mount_csv(mountpoint text, options jsonb, tables jsonb) returns void",
        "mount_csv(mountpoint, options, tables): the csv mount handler (file_fdw, inferred types); its foreign "
        "tables are the extension's, readable by members of pg_read_server_files",
        public=True)
def mount_csv(plpy, mountpoint, options, tables):
    """file_fdw checks who may read server files only when a foreign table is made, so the caller never owns
    one: the extension makes it in the caller's mountpoint and grants SELECT to pg_read_server_files, which the
    reader must have (or be a superuser) at every read."""
    opts = _options(plpy, options, ("filename",), ("table", "header", "delimiter", "quote", "encoding", "null"))
    admin = _csv_mount_owner(plpy, mountpoint)
    if not os.path.isabs(opts["filename"]):
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "filename must be an absolute path on the database server")
    if not os.path.isfile(opts["filename"]):
        errors.fail(plpy, "58P01", f'file "{opts["filename"]}" does not exist on the database server')
    header = opts.get("header", "true").lower() in ("true", "t", "yes", "on", "1")
    delimiter, quote = opts.get("delimiter", ","), opts.get("quote", '"')
    if len(delimiter) != 1 or len(quote) != 1:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, "delimiter and quote must be single characters")
    _install_fdw(plpy, "file_fdw", "postgresql-contrib", admin)
    server = server_name(mountpoint)
    plpy.execute(f"create server {ident(server)} foreign data wrapper file_fdw")
    file_options = {"filename": opts["filename"], "format": "csv", "header": str(header).lower(),
                    "delimiter": delimiter, "quote": quote}
    for key in ("encoding", "null"):
        if key in opts:
            file_options[key] = opts[key]
    tables = _tables(plpy, tables)
    if isinstance(tables, dict):
        made = _foreign_tables(plpy, mountpoint, server, tables, None, lambda t: file_options)
    else:
        made = [opts.get("table") or re.sub(r"\.[^.]*$", "", os.path.basename(opts["filename"])) or "data"]
        encoding = opts.get("encoding") or db.scalar(plpy, "select pg_catalog.current_setting('client_encoding')")
        first = _csv_first_record(plpy, opts["filename"], encoding, delimiter, quote)
        if first is None:
            errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f'file "{opts["filename"]}" is empty')
        columns = _csv_names(first, header)
        # Every column read as text first; each gets the most specific type all its values have.
        text = "pg_temp." + ident(db.temp_name("sg_csv"))
        plpy.execute(f"create foreign table {text} ({', '.join(f'c{i} text' for i in range(len(columns)))}) "
                     f"server {ident(server)} options ({_option_list(file_options)})")
        checks = ", ".join(f"bool_and({_csv_check(f'c{i}', type_, pattern)}) as t{i}_{k}"
                           for i in range(len(columns)) for k, (type_, pattern) in enumerate(_CSV_TYPES))
        row = db.one(plpy, f"select {checks} from {text}")
        plpy.execute(f"drop foreign table {text}")
        types = []
        for i in range(len(columns)):
            matches = [type_ for k, (type_, _) in enumerate(_CSV_TYPES) if row[f"t{i}_{k}"]]
            types.append(matches[0] if matches else "text")
        definitions = ", ".join(f"{ident(c)} {t}" for c, t in zip(columns, types, strict=True))
        plpy.execute(f"create foreign table {names.qualified(mountpoint, made[0])} ({definitions}) "
                     f"server {ident(server)} options ({_option_list(file_options)})")
    for table in made:
        plpy.execute(f"grant select on {names.qualified(mountpoint, table)} to pg_read_server_files")


# ---------------------------------------------------------------------------------------------------------------
# The API
# ---------------------------------------------------------------------------------------------------------------

def _check_mountpoint(plpy, mountpoint, role, admin):
    if not mountpoint or len(mountpoint.encode("utf-8")) > 63:
        errors.fail(plpy, errors.INVALID_NAME, f"invalid mountpoint {mountpoint!r}",
                    hint="a mountpoint is a schema name of 1 to 63 bytes")
    if mountpoint.startswith(("pg_", "splitgraph", "sg_query_")) or mountpoint in _RESERVED_SCHEMAS:
        errors.fail(plpy, errors.INVALID_NAME, f'"{mountpoint}" cannot be a mountpoint', hint="choose another name")
    if not admin and "/" in mountpoint and mountpoint.split("/", 1)[0] != role:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f'role "{role}" may not mount "{mountpoint}": it is named like a repository of namespace '
                    f'"{mountpoint.split("/", 1)[0]}"',
                    hint=f"a mountpoint with a / starts with your role's name ({role}/...), or has no /")
    if db.scalar(plpy, "select exists (select from splitgraph_meta.repositories where left(repository, 63) = $1)",
                 mountpoint):
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{mountpoint}" is the name of a repository',
                    hint="choose another mountpoint")


def _handler_function(plpy, handler, role):
    """The function of a registered handler, as a name to call; its owner must (still) be a superuser, and the
    role that mounts must be able to call it."""
    row = db.one(plpy, """
        select pg_catalog.format('%I.%I', n.nspname, p.proname) as function, o.rolsuper as trusted,
               n.nspname::text as schema, p.oid::regprocedure::text as signature,
               pg_catalog.has_schema_privilege($2, n.oid, 'USAGE')
               and pg_catalog.has_function_privilege($2, p.oid, 'EXECUTE') as callable
        from splitgraph_meta.mount_handlers h
        join pg_catalog.pg_proc p on p.oid = h.handler
        join pg_catalog.pg_namespace n on n.oid = p.pronamespace
        join pg_catalog.pg_roles o on o.oid = p.proowner
        where h.name = $1""", handler, role)
    if row is None:
        known = ", ".join(db.column(plpy, "select name from splitgraph_meta.mount_handlers order by name"))
        errors.fail(plpy, errors.UNDEFINED_OBJECT, f'unknown mount handler "{handler}"', hint=f"handlers: {known}")
    if not row["trusted"]:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f'the function of mount handler "{handler}" is no longer owned by a superuser',
                    hint="an administrator must make a superuser its owner, or register another function")
    if not row["callable"]:
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'role "{role}" may not call mount handler "{handler}"',
                    hint=f"a handler runs as the role that mounts: an administrator must grant USAGE on schema "
                         f"{row['schema']} and EXECUTE on function {row['signature']} (e.g. to {MOUNT_ROLE})")
    return row["function"]


@helper("mount_begin(mountpoint text, handler text, overwrite boolean, role text) returns text",
        "mount_begin(mountpoint, handler, overwrite, role): for mount(): check that role (the caller's "
        "current_user) may mount there, unmount the old mount when overwrite, create the schema owned by role "
        "and record it; returns the handler's function",
        public=True)
def mount_begin(plpy, mountpoint, handler, overwrite, role):
    role = meta.acting_role(plpy, role)
    meta.check_mount_privilege(plpy, role)
    admin = _is_admin(plpy, role)
    _check_mountpoint(plpy, mountpoint, role, admin)
    function = _handler_function(plpy, handler, role)
    if _mounted(plpy, mountpoint):
        if not overwrite:
            errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{mountpoint}" is already mounted',
                        hint="unmount it first, or pass overwrite => true")
        _unmount(plpy, mountpoint, role)
    elif db.schema_exists(plpy, mountpoint):
        errors.fail(plpy, "42P06", f'schema "{mountpoint}" exists and is not a mountpoint',
                    hint="choose another mountpoint; a mount never replaces a schema it did not make")
    # a server of this name that no foreign table uses is left over from a mountpoint dropped by hand: the
    # role's own, the extension's (CSV) or, for an administrator, anyone's goes
    stale = db.one(plpy, """
        select s.srvname::text as name, o.rolname::text as owner,
               not exists (select from pg_catalog.pg_foreign_table f where f.ftserver = s.oid) as unused,
               $3 or o.rolname = $2 or o.oid = e.extowner as ours
        from pg_catalog.pg_foreign_server s
        join pg_catalog.pg_roles o on o.oid = s.srvowner
        cross join pg_catalog.pg_extension e
        where s.srvname = $1 and e.extname = 'splitgraph'""", server_name(mountpoint), role, admin)
    if stale is not None:
        if not stale["unused"] or not stale["ours"]:
            errors.fail(plpy, errors.DUPLICATE_OBJECT, f'foreign server "{stale["name"]}", which a mount of '
                        f'"{mountpoint}" makes, exists (owned by {stale["owner"]})',
                        hint="its owner or an administrator may drop it (DROP SERVER ... CASCADE)")
        with db.settings(plpy, {"client_min_messages": "warning"}):
            plpy.execute(f"drop server {ident(stale['name'])} cascade")
    plpy.execute(f"create schema {ident(mountpoint)} authorization {ident(role)}")
    db.run(plpy, "insert into splitgraph_meta.mounts (mountpoint, handler, owner) values ($1, $2, $3)",
           mountpoint, handler, role)
    return function


def _mounted(plpy, mountpoint):
    return db.scalar(plpy, "select exists (select from splitgraph_meta.mounts where mountpoint = $1)", mountpoint)


def _check_file_options(plpy, options):
    """Options that make the server read its own files (a passfile, SSL keys, a service file): superusers only,
    refused before anything connects."""
    if not isinstance(options, dict):
        return
    used = sorted(k for k in options if isinstance(k, str) and k.lower() in _FILE_OPTIONS)
    if used and not db.scalar(plpy, "select rolsuper from pg_catalog.pg_roles where rolname = current_user"):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    "only superusers may give mount options that read files on the database server: " + ", ".join(used),
                    hint="give the password (and certificates, if any) another way, or ask an administrator to mount")


@api("mount(mountpoint text, handler text, options jsonb, tables jsonb default null, overwrite boolean default "
     "true) returns void",
     "mount(mountpoint, handler, options, tables, overwrite): create foreign tables in schema mountpoint with a "
     "registered handler (postgres_fdw, mysql_fdw, csv, or one registered); tables: null (all), a list of names, "
     "or {\"t\": {\"col\": \"type\"}}; runs as the caller (superusers, the extension's owner and members of "
     "splitgraph_mount), whose user mapping gets the credentials",
     nullable=("options",), security="invoker")
def mount(plpy, mountpoint, handler, options, tables=None, overwrite=True):
    options = _json(options)
    function = db.scalar(plpy, "select splitgraph_internal.mount_begin($1, $2, $3, $4)", mountpoint, handler,
                         overwrite, _current_user(plpy))
    _check_file_options(plpy, options)
    db.run(plpy, f"select {function}($1, $2::jsonb, $3::jsonb)", mountpoint, json.dumps(options),
           None if tables is None else json.dumps(_json(tables)))


@api("mount_postgres(mountpoint text, server text, port integer, username text, password text, dbname text, "
     "remote_schema text, tables jsonb default null, extra_server_args jsonb default null) returns void",
     "mount_postgres(mountpoint, server, port, username, password, dbname, remote_schema, tables, "
     "extra_server_args): mount a remote PostgreSQL schema through postgres_fdw (extra_server_args: more "
     "postgres_fdw server options); runs as the caller, like mount",
     security="invoker")
def mount_postgres(plpy, mountpoint, server, port, username, password, dbname, remote_schema, tables=None,
                   extra_server_args=None):
    options = {"host": server, "port": port, "username": username, "password": password, "dbname": dbname,
               "remote_schema": remote_schema}
    options.update(_json(extra_server_args) or {})
    mount(plpy, mountpoint, "postgres_fdw", options, tables)


def _mount_servers(plpy, mountpoint, owner):
    """Oids and names of the servers a mount made: the built-in handlers' server of the mountpoint, when the
    mount's owner (or the extension, for CSV files) owns it."""
    return db.run(plpy, """
        select s.oid::bigint as oid, s.srvname::text as name from pg_catalog.pg_foreign_server s
        join pg_catalog.pg_roles o on o.oid = s.srvowner
        cross join pg_catalog.pg_extension e
        where s.srvname = $1 and e.extname = 'splitgraph' and (o.rolname = $2 or o.oid = e.extowner)""",
                  server_name(mountpoint), owner)


def _unmount(plpy, mountpoint, role, force=False):
    """Drop a recorded mountpoint (its schema, with what is in it) and the servers it made, for `role`: an
    administrator, or a role with the rights of the mountpoint's owner. Unless force, refused when that would
    drop anything outside the mountpoint (a view of another schema over one of its tables, say)."""
    row = db.one(plpy, """select m.owner, pg_catalog.pg_get_userbyid(n.nspowner)::text as schema_owner,
                                 n.oid::bigint as schema
                          from splitgraph_meta.mounts m
                          left join pg_catalog.pg_namespace n on n.nspname = m.mountpoint
                          where m.mountpoint = $1 for update of m""", mountpoint)
    if row is None:
        if not db.schema_exists(plpy, mountpoint):
            errors.fail(plpy, errors.UNDEFINED_OBJECT, f'mountpoint "{mountpoint}" does not exist')
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'schema "{mountpoint}" is neither a mountpoint nor a repository', hint="drop it with DROP SCHEMA")
    owner = row["schema_owner"] or row["owner"]
    if not _is_admin(plpy, role) and not db.scalar(plpy, """
            select pg_catalog.pg_has_role($1, o.oid, 'USAGE') from pg_catalog.pg_roles o where o.rolname = $2""",
                                                   role, owner):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, f'only the owner of mountpoint "{mountpoint}" may change it')
    servers = _mount_servers(plpy, mountpoint, row["owner"])
    outside = [] if force else db.dependents_outside(plpy, mountpoint, [s["oid"] for s in servers])
    if outside:
        errors.fail(plpy, errors.DEPENDENT_OBJECTS_STILL_EXIST, f'unmounting "{mountpoint}" would drop objects outside '
                    "it: " + ", ".join(outside[:5]) + (f" and {len(outside) - 5} more" if len(outside) > 5 else ""),
                    hint="drop those objects first, or pass force => true to drop them too; unmount drops only "
                         "what the mount made")
    with db.settings(plpy, {"client_min_messages": "warning"}):
        if row["schema"] is not None:
            plpy.execute(f"drop schema {ident(mountpoint)} cascade")
        for server in servers:
            plpy.execute(f"drop server {ident(server['name'])} cascade")
    db.run(plpy, "delete from splitgraph_meta.mounts where mountpoint = $1", mountpoint)


@api("unmount(mountpoint text, force boolean default false) returns void",
     "unmount(mountpoint, force): drop a mountpoint made by mount, with the foreign servers and user mappings it "
     "made, or a schema made by mount_image (unless force, refused when objects outside it depend on it); for a "
     "repository, delete it like rm (objects stay until cleanup())")
def unmount(plpy, mountpoint, force=False):
    """Drop a mountpoint (its foreign tables, servers and user mappings), a mounted image, or delete a
    repository."""
    if image_mounts.is_mounted(plpy, mountpoint):
        return image_mounts.unmount_image(plpy, mountpoint, force)
    if not _mounted(plpy, mountpoint) and names.is_repository(mountpoint) and meta.exists(plpy, mountpoint):
        return repositories.rm(plpy, mountpoint, force)
    _unmount(plpy, mountpoint, db.scalar(plpy, "select session_user::text"), force)


@api("register_mount_handler(name text, handler regprocedure, description text default null) returns void",
     "register_mount_handler(name, handler, description): register a function (mountpoint text, options jsonb, "
     "tables jsonb) returns void that makes foreign tables in the existing schema mountpoint, owned by a "
     "superuser; administrators only; a handler runs as the role that mounts")
def register_mount_handler(plpy, name, handler, description=None):
    if not meta.caller_is_admin(plpy):
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE, "only superusers and the extension's owner register mount "
                                                         "handlers")
    if name is None or not _HANDLER_NAME.match(name):
        errors.fail(plpy, errors.INVALID_NAME, f"invalid mount handler name {name!r}",
                    hint="lowercase letters, digits and _, starting with a letter")
    if db.scalar(plpy, "select builtin from splitgraph_meta.mount_handlers where name = $1", name):
        errors.fail(plpy, errors.DUPLICATE_OBJECT, f'"{name}" is a built-in mount handler', hint="choose another name")
    row = meta.function_fits(plpy, handler, ["text", "jsonb", "jsonb"], "void")
    if not row["fits"]:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"{handler} is not a mount handler",
                    hint="a handler is a function (mountpoint text, options jsonb, tables jsonb) returns void")
    if not row["trusted"]:
        # its owner could replace its body at any time, and it runs as whoever mounts (administrators too)
        errors.fail(plpy, errors.INSUFFICIENT_PRIVILEGE,
                    f'{handler} is owned by role "{row["owner"]}", which is not a superuser',
                    hint="a mount handler must be owned by a superuser (ALTER FUNCTION ... OWNER TO)")
    db.run(plpy, """insert into splitgraph_meta.mount_handlers (name, handler, description)
                    values ($1, $2::regprocedure, $3)
                    on conflict (name) do update set handler = excluded.handler, description = excluded.description""",
           name, handler, description)


@api("mount_handlers() returns table (name text, description text)",
     "mount_handlers(): every mount handler, with what it mounts",
     volatility="stable")
def mount_handlers(plpy):
    return db.run(plpy, "select name, description from splitgraph_meta.mount_handlers order by name")
