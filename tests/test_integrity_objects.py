"""Issue 9, objects never change: a layered checkout cannot be written through (not even by a superuser),
apply_fragments cannot target an object table, and no stored object depends on a type a user owns, so that
dropping, renaming or removing such a type changes no image of any repository.

alice and bob are LOGIN roles that are not superusers."""
import psycopg2
import pytest

from conftest import fails
from support.integrity import checkout_rows, connect, ensure_roles, one, rows, run

EXTENSION_SCHEMAS = "(pg_catalog|information_schema|splitgraph|splitgraph_meta|splitgraph_internal|splitgraph_audit)"


@pytest.fixture(scope="module")
def roles(cluster):
    ensure_roles(cluster, "alice", "bob")


@pytest.fixture
def db(cluster, dbname):
    c = connect(cluster, dbname)
    yield c
    c.close()


@pytest.fixture
def alice(cluster, dbname, roles):
    c = connect(cluster, dbname, "alice")
    yield c
    c.close()


@pytest.fixture
def bob(cluster, dbname, roles):
    c = connect(cluster, dbname, "bob")
    yield c
    c.close()


def objects(conn, repo, image, table):
    return one(conn, "select splitgraph.table_info(%s, %s, %s)", repo, image, table)["objects"]


# ---------------------------------------------------------------------------------------------------------------
# Layered checkouts are read-only, for every role
# ---------------------------------------------------------------------------------------------------------------

WRITES = {
    "insert": "insert into {t} values (3, 'written through the view')",
    "update": "update {t} set v = 'updated through the view' where id = 1",
    "delete": "delete from {t}",
}


@pytest.mark.parametrize("kind", list(WRITES))
@pytest.mark.parametrize("who", ["superuser", "alice"])
def test_a_layered_checkout_cannot_be_written(db, alice, who, kind):
    conn, repo = (db, f"admin/layered-{kind}") if who == "superuser" else (alice, f"alice/layered-{kind}")
    other = f"admin/shares-{who}-{kind}"
    run(conn, "select splitgraph.init(%s)", repo)
    run(conn, f'create table "{repo}".t (id int primary key, v text)')
    run(conn, f"insert into \"{repo}\".t values (1, %s), (2, %s)", f"{who} {kind} one", f"{who} {kind} two")
    image = one(conn, "select splitgraph.commit(%s)", repo)
    original = rows(conn, repo, "t")
    # another repository shares the object
    run(db, "select splitgraph.init(%s)", other)
    imported = one(db, "select splitgraph.import_table(%s, 't', %s, 't')", repo, other)
    assert objects(db, other, imported, "t") == objects(db, repo, image, "t")
    run(conn, "select splitgraph.checkout(%s, %s, layered => true)", repo, image)
    err = fails(conn, WRITES[kind].format(t=f'"{repo}".t'))
    assert err.pgcode in ("55000", "0A000"), f"{err.pgcode}: {err}"
    text = f"{err} {err.diag.message_hint or ''}".lower()
    assert "check" in text and "out" in text, "the message says to check out normally"
    assert rows(conn, repo, "t") == original, "the layered view still shows the image"
    assert checkout_rows(conn, repo, image, ["t"])["t"] == original
    assert checkout_rows(db, other, imported, ["t"])["t"] == original, "the sharing repository is unchanged"


# ---------------------------------------------------------------------------------------------------------------
# apply_fragments into an object
# ---------------------------------------------------------------------------------------------------------------

def test_apply_fragments_cannot_target_an_object_table(db):
    repo = "admin/apply"
    run(db, "select splitgraph.init(%s)", repo)
    run(db, f'create table "{repo}".t (id int primary key, v text)')
    run(db, f"insert into \"{repo}\".t values (1, 'apply one'), (2, 'apply two')")
    first = one(db, "select splitgraph.commit(%s)", repo)
    run(db, f"update \"{repo}\".t set v = 'apply changed' where id = 2")
    run(db, f"insert into \"{repo}\".t values (3, 'apply three')")
    second = one(db, "select splitgraph.commit(%s)", repo)
    base, delta = objects(db, repo, second, "t")
    dumped = one(db, "select splitgraph.dump_object(%s)", base)
    expected = checkout_rows(db, repo, first, ["t"])["t"]
    fails(db, "select splitgraph.apply_fragments(array[%s], 'splitgraph_meta', %s)", delta, base, sqlstate="42501")
    assert one(db, "select splitgraph.dump_object(%s)", base) == dumped, "the object is unchanged"
    assert checkout_rows(db, repo, first, ["t"])["t"] == expected


# ---------------------------------------------------------------------------------------------------------------
# Objects depend on nothing a user can drop
# ---------------------------------------------------------------------------------------------------------------

TYPES = {
    "enum": ("create type {s}.mood as enum ('sad', 'ok', 'happy')", "mood", "'sad'", "'happy'"),
    "domain": ("create domain {s}.label as text", "label", "'sad'", "'happy'"),
    "composite": ("create type {s}.pair as (a int, b text)", "pair", "'(1,sad)'", "'(2,happy)'"),
}


def user_type_dependencies(db, object_ids):
    """Types outside the extension's schemas and pg_catalog that object tables depend on."""
    return run(db, f"""
        select c.relname::text, format_type(t.oid, null)
        from pg_depend d
        join pg_class c on d.classid = 'pg_class'::regclass and c.oid = d.objid
        join pg_type t on d.refclassid = 'pg_type'::regclass and t.oid = d.refobjid
        join pg_namespace n on n.oid = t.typnamespace
        where c.relnamespace = 'splitgraph_meta'::regnamespace and c.relname = any(%s)
          and n.nspname !~ '^{EXTENSION_SCHEMAS}$'""", object_ids)


@pytest.mark.parametrize("kind", list(TYPES))
def test_stored_objects_depend_on_no_user_type(alice, db, kind):
    repo = f"alice/type-{kind}"
    create, name, v1, v2 = TYPES[kind]
    run(alice, "select splitgraph.init(%s)", repo)
    run(alice, create.format(s=f'"{repo}"'))
    run(alice, f'create table "{repo}".t (id int primary key, x "{repo}".{name})')
    run(alice, f'insert into "{repo}".t values (1, {v1}), (2, {v2})')
    image = one(alice, "select splitgraph.commit(%s)", repo)
    assert user_type_dependencies(db, objects(db, repo, image, "t")) == []


def enum_repository(alice, repo):
    run(alice, "select splitgraph.init(%s)", repo)
    run(alice, f"create type \"{repo}\".mood as enum ('sad', 'ok', 'happy')")
    run(alice, f'create table "{repo}".t (id int primary key, m "{repo}".mood, v text)')
    run(alice, f"insert into \"{repo}\".t values (1, 'sad', 'x'), (2, 'happy', 'y')")
    return one(alice, "select splitgraph.commit(%s)", repo)


def image_values(conn, repo, image):
    run(conn, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
    return run(conn, f'select id, m::text, v from "{repo}".t order by id')


@pytest.mark.parametrize("how", ["drop type cascade", "rm"])
def test_dropping_a_user_type_changes_no_image(alice, bob, db, how):
    repo, copy = f"alice/enum-{how.split()[0]}", f"bob/enum-{how.split()[0]}"
    image = enum_repository(alice, repo)
    run(bob, "select splitgraph.init(%s)", copy)
    imported = one(bob, "select splitgraph.import_table(%s, 't', %s, 't')", repo, copy)
    expected = [(1, "sad", "x"), (2, "happy", "y")]
    assert image_values(bob, copy, imported) == expected
    if how == "rm":
        # bob's live checkout has a column of alice's type: rm refuses to drop it (2BP01) unless forced
        with pytest.raises(psycopg2.Error) as refused:
            run(alice, "select splitgraph.rm(%s)", repo)
        assert refused.value.pgcode == "2BP01", refused.value
        assert image_values(bob, copy, imported) == expected, "a refused rm changed nothing"
        run(alice, "select splitgraph.rm(%s, force => true)", repo)
        run(alice, "select splitgraph.init(%s)", repo)
    else:
        run(alice, f'drop type "{repo}".mood cascade')
    # the type exists again under its name, as before (whether or not checkout would make it by itself)
    run(alice, f"""do $$ begin
                     if to_regtype('"{repo}".mood') is null then
                       create type "{repo}".mood as enum ('sad', 'ok', 'happy');
                     end if;
                   end $$""")
    objs = objects(db, copy, imported, "t")
    assert one(db, "select count(*) from pg_attribute where attrelid = %s::regclass and attnum > 0 "
                   "and not attisdropped and attname = 'm'", f'splitgraph_meta."{objs[0]}"') == 1, \
        "the shared object table still has the column"
    assert image_values(bob, copy, imported) == expected, "bob's imported copy is unchanged"
    if how != "rm":
        assert image_values(alice, repo, image) == expected, "alice's own image is unchanged"


def test_renaming_an_enum_value_changes_no_committed_object(alice, db):
    repo = "alice/enum-rename"
    image = enum_repository(alice, repo)
    (oid,) = objects(db, repo, image, "t")
    dumped = one(db, "select splitgraph.dump_object(%s)", oid)
    assert one(db, "select splitgraph.dump_object(%s)", oid) == dumped, "a dump is the same every time"
    run(alice, f"alter type \"{repo}\".mood rename value 'sad' to 'blue'")
    assert one(db, "select splitgraph.dump_object(%s)", oid) == dumped, "the stored object changed"
