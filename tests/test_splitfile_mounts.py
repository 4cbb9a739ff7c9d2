"""Issue 14: FROM MOUNT in Splitfiles, against the second PostgreSQL cluster the mount tests use (its role logs in
with a password): the mount runs as the caller (mounting is a privilege), lasts only for its step, is never
cached (its objects are content-addressed all the same), cannot be reconstructed, and its credentials appear
nowhere: not in provenance, comments, notices or errors."""
import json

import psycopg2
import pytest
from test_mounts import remote  # noqa: F401 - the second cluster, a module fixture

from conftest import fails, sql, value
from support.security import grant_mount

SPLITFILE = """FROM MOUNT postgres_fdw ${USER}:${PASSWORD}@${HOST}:${PORT} \\
    '{"dbname": "shop", "remote_schema": "store"}' \\
    IMPORT products, {SELECT name FROM products WHERE price > 0.6} AS dear
SQL CREATE TABLE n AS SELECT count(*) AS n FROM products
"""


def params(remote, password=None):  # noqa: F811 - the fixture's value
    return json.dumps({"USER": remote.user, "PASSWORD": remote.password if password is None else password,
                       "HOST": remote.host, "PORT": remote.port})


def leftovers(conn):
    return sql(conn, """select nspname::text from pg_namespace where nspname like 'sg_build_mount%%'
                        union all select srvname::text from pg_foreign_server
                        union all select mountpoint from splitgraph_meta.mounts""")


def everything_visible(conn, repo, notices):
    """What a client may see of a built repository and its build."""
    return "\n".join([json.dumps(value(conn, "select jsonb_agg(splitgraph.show(%s, image_hash)) "
                                             "from splitgraph.images(%s)", repo, repo)),
                      json.dumps(sql(conn, "select comment from splitgraph.log(%s)", repo)),
                      value(conn, "select splitgraph.reconstruct_splitfile(%s, 'HEAD', true)", repo)]
                     + [str(n) for n in notices])


def test_a_mount_step_imports_from_the_remote_and_leaves_nothing_mounted(conn, remote):  # noqa: F811
    notices = []
    conn.add_notice_handler(lambda d: notices.append(d.message_primary))
    final = value(conn, "select splitgraph.build(%s, 'sfm/shop', %s)", SPLITFILE, params(remote))
    assert sql(conn, 'select id, name from "sfm/shop".products order by id') == [(1, "apple"), (2, "pear"),
                                                                               (3, "plum")]
    assert sql(conn, 'select name from "sfm/shop".dear') == [("pear",)]
    assert value(conn, 'select n from "sfm/shop".n') == 3
    assert leftovers(conn) == []
    mounted = value(conn, "select splitgraph.show('sfm/shop', 'HEAD') -> 'provenance' -> 0")
    assert mounted == {"type": "MOUNT", "handler": "postgres_fdw", "sources": [], "aliases": ["products", "dear"],
                       "tables": [{"table": "products"}, {"query": "SELECT name FROM products WHERE price > 0.6"}]}
    assert remote.password not in everything_visible(conn, "sfm/shop", notices)
    assert any("a MOUNT is never cached" in n for n in notices)
    assert value(conn, "select image_hash from splitgraph.log('sfm/shop') limit 1") == final


def test_a_mount_is_never_cached_but_its_objects_are_shared(conn, remote):  # noqa: F811
    first = value(conn, "select splitgraph.build(%s, 'sfm/again', %s)", SPLITFILE, params(remote))
    objects = value(conn, "select count(*) from splitgraph_meta.objects")
    images = value(conn, "select count(*) from splitgraph.images('sfm/again')")
    second = value(conn, "select splitgraph.build(%s, 'sfm/again', %s)", SPLITFILE, params(remote))
    assert second != first, "the mount reads its source anew, into a new image"
    assert value(conn, "select count(*) from splitgraph.images('sfm/again')") == images + 2
    assert value(conn, "select count(*) from splitgraph_meta.objects") == objects, "the same rows, the same objects"


def test_a_mount_step_cannot_be_reconstructed(conn, remote):  # noqa: F811
    value(conn, "select splitgraph.build(%s, 'sfm/recon', %s)", SPLITFILE, params(remote))
    error = fails(conn, "select splitgraph.reconstruct_splitfile('sfm/recon', 'HEAD')", sqlstate="0A000")
    assert "MOUNT (postgres_fdw)" in error.diag.message_primary
    text = value(conn, "select splitgraph.reconstruct_splitfile('sfm/recon', 'HEAD', ignore_irreproducible => true)")
    assert text == ("# Irreproducible Splitfile command of type MOUNT (postgres_fdw)\n"
                    "SQL {CREATE TABLE n AS SELECT count(*) AS n FROM products}\n")


def test_a_wrong_password_fails_the_step_without_showing_it(conn, remote):  # noqa: F811
    notices = []
    conn.add_notice_handler(lambda d: notices.append((d.severity_nonlocalized, d.message_primary, d.message_detail)))
    wrong = "wrong'" + remote.password[::-1]
    assert value(conn, "select splitgraph.build(%s, 'sfm/wrong', %s)", SPLITFILE, params(remote, wrong)) is None
    warning = [n for n in notices if n[0] == "WARNING"]
    assert len(warning) == 1 and "line 1 (IMPORT) failed" in warning[0][1]
    assert wrong not in str(notices)
    with pytest.raises(psycopg2.Error) as info:
        value(conn, "select splitgraph.build(%s, 'sfm/wrong2', %s, keep_layers => false)", SPLITFILE,
              params(remote, wrong))
    assert wrong not in str(info.value) + str(info.value.diag.message_detail) + str(info.value.diag.context)
    assert leftovers(conn) == []


def test_mounting_in_a_build_needs_the_mount_privilege_and_runs_as_the_caller(conn, roles, remote):  # noqa: F811
    alice = roles.new("alice")
    out = f"{alice.name}/shop"
    error = fails(alice.conn, "select splitgraph.build(%s, %s, %s, keep_layers => false)", SPLITFILE, out,
                  params(remote), sqlstate="42501")
    assert "may not mount: it needs role splitgraph_mount" in error.diag.message_primary
    assert not value(conn, "select exists (select from splitgraph.repositories() where repository = %s)", out)
    grant_mount(conn, alice.name)
    value(alice.conn, "select splitgraph.build(%s, %s, %s)", SPLITFILE, out, params(remote))
    assert value(conn, f"select tableowner from pg_tables where schemaname = '{out}' and tablename = 'n'") \
        == alice.name
    assert value(alice.conn, f'select count(*) from "{out}".products') == 3
    assert leftovers(conn) == []
