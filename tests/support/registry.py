"""Helpers of the tests of issue 11 (images travel between engines): a second engine as a registry, roles that
log in there with a password, and checks of what an engine holds (every object re-hashed, every row of the
metadata with its row version, so that "nothing changed" can be shown)."""
import pathlib
import sys

from psycopg2 import sql as pgsql

from support.queries import sql as run
from support.queries import value as one

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent.parent.parent / "plpython"))
from splitgraph_pl import hashing  # noqa: E402
from support import driver  # noqa: E402

META_TABLES = ("repositories", "images", "tags", "branches", "tables", "objects", "object_locations", "upstream",
               "checkouts")


def require_passwords(cluster):
    """Every role but postgres logs in to the cluster with a password (scram-sha-256), as postgres_fdw requires
    of roles that are not superusers (the server must ask for the password)."""
    hba = cluster.data / "pg_hba.conf"
    lines = hba.read_text().splitlines()
    first_rule = next(i for i, line in enumerate(lines) if line.strip() and not line.lstrip().startswith("#"))
    lines[first_rule:first_rule] = ["host all postgres 127.0.0.1/32 trust",
                                    "host all all 127.0.0.1/32 scram-sha-256"]
    hba.write_text("\n".join(lines) + "\n")
    with driver.connect(cluster.dsn(), autocommit=True) as c:
        run(c, "alter system set password_encryption = 'scram-sha-256'")
        run(c, "select pg_reload_conf()")


def password_role(cluster, name, password, *granted):
    """A LOGIN role that is not a superuser, logging in with `password` (made again if it exists)."""
    with driver.connect(cluster.dsn(), autocommit=True) as c:
        run(c, "set password_encryption = 'scram-sha-256'")
        exists = one(c, "select count(*) from pg_roles where rolname = %s", name)
        verb = "alter" if exists else "create"
        run(c, pgsql.SQL(verb + " role {} login nosuperuser nocreatedb nocreaterole password {}").format(
            pgsql.Identifier(name), pgsql.Literal(password)))
        for role in granted:
            run(c, pgsql.SQL("grant {} to {}").format(pgsql.Identifier(role), pgsql.Identifier(name)))
    return name


def connect_as(cluster, dbname, user, password=None, **settings):
    dsn = cluster.dsn(dbname, user=user) + (f" password={password}" if password else "")
    conn = driver.connect(dsn, autocommit=True, connect_timeout=10)
    for key, val in settings.items():
        run(conn, "select pg_catalog.set_config(%s, %s, false)", key, str(val))
    return conn


def metadata(conn):
    """Every row of the extension's metadata tables, with its row version (xmin): equal before and after a call
    when the call changed nothing (not even rewrote a row with the same values)."""
    return {t: run(conn, f"select xmin::text, t::text from splitgraph_meta.{t} t order by 2") for t in META_TABLES}


def object_tables(conn):
    return sorted(r[0] for r in run(conn, """select c.relname::text from pg_class c
                                            where c.relnamespace = 'splitgraph_meta'::regnamespace
                                              and c.relkind = 'r' and c.relname ~ '^o[0-9a-f]{62}$'"""))


def objects_state(conn):
    """(registered objects, stored objects)."""
    return (sorted(r[0] for r in run(conn, "select object_id from splitgraph_meta.objects")), object_tables(conn))


def rehash(conn, object_id):
    """The id an object's stored rows hash to (with its recorded deletion hash and schema)."""
    row = run(conn, "select deletion_hash, table_schema from splitgraph_meta.objects where object_id = %s",
              object_id)[0]
    deletion, spec = row
    names = [c[1] for c in spec]
    fields = ", ".join(pgsql.Identifier(n).as_string(conn) for n in names)
    lanes = ", ".join(f"sum((get_byte(h, {2 * i}) << 8) | get_byte(h, {2 * i + 1}))" for i in range(hashing.LANES))
    sums = run(conn, f"""select {lanes} from (select unnest(array[sha256(convert_to(row({fields})::text, 'UTF8'))]) h
                         from splitgraph_meta.{pgsql.Identifier(object_id).as_string(conn)} t
                         where sg_ud_flag) s""")[0]
    insertion = hashing.to_hex(s or 0 for s in sums)
    return hashing.object_id(insertion, deletion, [c[:4] for c in spec])


def check_every_object(conn):
    """Every stored object of an engine re-hashes to its id, and every object a table version names is
    registered. Returns how many objects were checked."""
    stored = object_tables(conn)
    bad = [o for o in stored if rehash(conn, o) != o]
    assert not bad, f"objects whose rows do not hash to their ids: {bad}"
    dangling = run(conn, """select distinct o from splitgraph_meta.tables t, unnest(t.object_ids) o
                            where not exists (select from splitgraph_meta.objects m where m.object_id = o)""")
    assert not dangling, f"table versions name unregistered objects: {dangling}"
    return len(stored)
