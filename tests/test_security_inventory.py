"""Issue 8: every function that runs with the extension's rights, and every helper any role may call, is written
down in SECURITY.md at the root of the repository (with what caller-controlled input it touches and why that is
safe). A new one that SECURITY.md does not cover fails this test.

SECURITY.md format, as this test reads it: a function is covered when `schema.function(` (schema and function
name exactly as in the catalog, unquoted, immediately followed by an opening parenthesis) appears somewhere in a
line of SECURITY.md, e.g.

    - `splitgraph_internal.import_staged(...)`: reads only ... ; safe because ...

One mention covers every overload of that name. Likewise every privilege PUBLIC holds on a schema, table, view
or sequence of the extension must be written down, as `schema NAME` or `relation SCHEMA.NAME` in some line.
Nothing else of the file is parsed.
"""
from conftest import ROOT

SECURITY_MD = ROOT / "SECURITY.md"
SCHEMAS = ("splitgraph", "splitgraph_internal", "splitgraph_audit", "splitgraph_meta", "splitgraph_remote")

# Functions of the extension (members of it, or in its schemas) that are SECURITY DEFINER, or that PUBLIC may
# execute outside the API schema `splitgraph`.
INVENTORY = """
with fns as (
    select p.oid, n.nspname::text as schema, p.proname::text as name, p.prosecdef as definer,
           exists (select from pg_catalog.aclexplode(coalesce(p.proacl, pg_catalog.acldefault('f', p.proowner))) a
                   where a.grantee = 0 and a.privilege_type = 'EXECUTE') as public_execute
    from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
    where n.nspname = any(%(schemas)s)
       or exists (select from pg_catalog.pg_depend d join pg_catalog.pg_extension e on e.oid = d.refobjid
                  where d.classid = 'pg_catalog.pg_proc'::regclass and d.objid = p.oid and d.deptype = 'e'
                    and d.refclassid = 'pg_catalog.pg_extension'::regclass and e.extname = 'splitgraph')
)
select distinct schema, name,
       case when definer then 'SECURITY DEFINER' else '' end
       || case when definer and public_execute and schema <> 'splitgraph' then ', ' else '' end
       || case when public_execute and schema <> 'splitgraph' then 'executable by PUBLIC' else '' end as why
from fns
where definer or (public_execute and schema <> 'splitgraph')
order by 1, 2
"""


def test_security_md_covers_every_definer_function_and_public_helper(conn):
    required = _inventory(conn)
    assert required, "the inventory query found no function at all: it is broken"
    text = SECURITY_MD.read_text(encoding="utf-8") if SECURITY_MD.exists() else ""
    lines = text.splitlines()
    missing = [f"{schema}.{name}( ({why})" for schema, name, why in required
               if not any(f"{schema}.{name}(" in line for line in lines)]
    assert not missing, (f"{SECURITY_MD.name} {'lacks' if text else 'does not exist; it should cover'} "
                         f"{len(missing)} function(s):\n  " + "\n  ".join(missing))


def _inventory(conn):
    with conn.cursor() as cur:
        cur.execute(INVENTORY, {"schemas": list(SCHEMAS)})
        return cur.fetchall()


# What PUBLIC may do with the extension's schemas and relations (beyond functions).
PUBLIC_GRANTS = """
select 'schema ' || n.nspname, a.privilege_type
from pg_catalog.pg_namespace n
cross join lateral pg_catalog.aclexplode(coalesce(n.nspacl, pg_catalog.acldefault('n', n.nspowner))) a
where n.nspname = any(%(schemas)s) and a.grantee = 0
union all
select 'relation ' || n.nspname || '.' || c.relname, a.privilege_type
from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
cross join lateral pg_catalog.aclexplode(c.relacl) a
where n.nspname = any(%(schemas)s) and a.grantee = 0
order by 1, 2
"""


def test_security_md_covers_every_grant_to_public(conn):
    with conn.cursor() as cur:
        cur.execute(PUBLIC_GRANTS, {"schemas": list(SCHEMAS)})
        grants = cur.fetchall()
    assert ("schema splitgraph", "USAGE") in grants, "the inventory query found no grant at all: it is broken"
    lines = SECURITY_MD.read_text(encoding="utf-8").splitlines() if SECURITY_MD.exists() else []
    missing = [f"{name} ({privilege})" for name, privilege in grants
               if not any(f"`{name}`" in line for line in lines)]
    assert not missing, f"{SECURITY_MD.name} lacks grants to PUBLIC:\n  " + "\n  ".join(missing)
