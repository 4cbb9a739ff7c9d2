"""The edges of the safety catches on repositories, references and objects (issues 8 and 9), beyond the cases
the security and integrity suites cover: which schemas a checkout owns, which references are ambiguous, what
delete_image and prune say, what apply_fragments accepts, and the bounds a commit keeps."""
import psycopg2
import pytest
from psycopg2.extras import Json as Jsonb

from conftest import fails, sql, value


def make_repo(conn, repo, rows=2):
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f"insert into \"{repo}\".t select i, 'v' || i from generate_series(1, {rows}) i")
    return value(conn, "select splitgraph.commit(%s)", repo)


def notices_of(conn):
    messages = []
    conn.add_notice_handler(lambda diag: messages.append(diag.message_primary or ""))
    return messages


# ---------------------------------------------------------------------------------------------------------------
# Checkout schemas
# ---------------------------------------------------------------------------------------------------------------

def test_a_dropped_checkout_schema_is_made_again_by_checkout(conn):
    image = make_repo(conn, "safe/dropped")
    sql(conn, 'drop schema "safe/dropped" cascade')
    assert value(conn, "select splitgraph.checkout('safe/dropped', %s, force => true)", image) == image
    assert value(conn, 'select count(*) from "safe/dropped".t') == 2


def test_rm_leaves_alone_a_schema_someone_else_made_after_the_checkout_was_dropped(conn, roles):
    """alice's checkout schema was dropped and bob made one of the same name: alice's rm deletes her repository
    and neither drops nor reads bob's schema."""
    alice = roles.new("safealice")
    bob = roles.new("safebob")
    repo = f"{alice.name}/gone"
    make_repo(alice.conn, repo)
    sql(alice.conn, f'drop schema "{repo}" cascade')
    sql(conn, f'create schema "{repo}" authorization "{bob.name}"')
    sql(bob.conn, f'create table "{repo}".mine (x int)')
    sql(alice.conn, "select splitgraph.rm(%s)", repo)
    assert value(conn, "select count(*) from splitgraph_meta.repositories where repository = %s", repo) == 0
    assert value(conn, "select to_regclass(format('%%I.mine', %s::text)) is not null", repo)


def test_uncheckout_never_drops_another_roles_objects(conn, roles):
    alice = roles.new("safealice")
    bob = roles.new("safebob")
    repo = f"{alice.name}/seen"
    make_repo(alice.conn, repo)
    sql(bob.conn, f'create view "{bob.schema}".mirror as select * from "{repo}".t')
    err = fails(alice.conn, "select splitgraph.uncheckout(%s)", repo, sqlstate="2BP01")
    assert "mirror" in str(err), "the message names what depends on the checkout"
    assert value(conn, 'select count(*) from "%s".mirror' % bob.schema) == 2
    sql(bob.conn, f'drop view "{bob.schema}".mirror')
    sql(alice.conn, "select splitgraph.uncheckout(%s)", repo)
    assert value(conn, "select count(*) from pg_namespace where nspname = %s", repo) == 0


def test_rm_with_force_drops_what_depends_on_the_checkout(conn, roles):
    """No role can keep a repository from being removed: with force, rm drops another role's view over a
    checkout table, as the table owner's own DROP ... CASCADE would; without force it is refused."""
    alice = roles.new("safealice")
    bob = roles.new("safebob")
    repo = f"{alice.name}/pinned"
    make_repo(alice.conn, repo)
    sql(bob.conn, f'create view "{bob.schema}".mirror as select * from "{repo}".t')
    fails(alice.conn, "select splitgraph.rm(%s)", repo, sqlstate="2BP01")
    sql(alice.conn, "select splitgraph.rm(%s, force => true)", repo)
    assert value(conn, "select count(*) from splitgraph_meta.repositories where repository = %s", repo) == 0
    assert value(conn, "select to_regclass(format('%%I.mirror', %s::text))", bob.schema) is None


@pytest.mark.parametrize("name", ["pg_mine", "splitgraph_x", "sg_query_x", "information_schema"])
def test_reserved_schema_names_are_not_repositories(conn, name):
    fails(conn, "select splitgraph.init(%s)", name, sqlstate="42602")
    assert value(conn, "select count(*) from splitgraph_meta.repositories where repository = %s", name) == 0


# ---------------------------------------------------------------------------------------------------------------
# References
# ---------------------------------------------------------------------------------------------------------------

def test_hex_tags_that_shadow_nothing_resolve(conn):
    """Tags such as "beef" or "2024" are ordinary tags: they resolve to their image unless another image's hash
    starts with them; a tag named like the prefix of its own image is not ambiguous either."""
    repo = "safe/hextags"
    first = make_repo(conn, repo)
    sql(conn, f"insert into \"{repo}\".t values (10, 'x')")
    second = value(conn, "select splitgraph.commit(%s)", repo)
    free = next(p for p in ("beef", "2024", "cafe", "face", "abba") if not first.startswith(p)
                and not second.startswith(p))
    sql(conn, "select splitgraph.tag(%s, %s, %s)", repo, first, free)
    assert value(conn, "select splitgraph.show(%s, %s)->>'image_hash'", repo, free) == first
    sql(conn, "select splitgraph.tag(%s, %s, %s)", repo, second, second[:8])
    assert value(conn, "select splitgraph.show(%s, %s)->>'image_hash'", repo, second[:8]) == second


def test_a_branch_named_like_another_images_prefix_is_ambiguous(conn):
    repo = "safe/hexbranch"
    first = make_repo(conn, repo)
    sql(conn, f"insert into \"{repo}\".t values (10, 'x')")
    second = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.branch(%s, %s, %s)", repo, second[:6], first)
    err = fails(conn, "select splitgraph.checkout(%s, %s)", repo, second[:6], sqlstate="21000")
    assert first in err.diag.message_detail and second in err.diag.message_detail


@pytest.mark.parametrize("call", ["tag", "branch"])
def test_names_that_read_as_a_full_hash_are_refused(conn, call):
    repo = f"safe/fullhash-{call}"
    image = make_repo(conn, repo)
    name = "ab" * 32
    query = ("select splitgraph.tag(%s, %s, %s)" if call == "tag" else "select splitgraph.branch(%s, %s, %s)")
    args = (repo, image, name) if call == "tag" else (repo, name, image)
    fails(conn, query, *args, sqlstate="42602")


# ---------------------------------------------------------------------------------------------------------------
# delete_image and prune
# ---------------------------------------------------------------------------------------------------------------

def test_delete_image_with_force_takes_the_tags_and_branches_along(conn):
    repo = "safe/force"
    base = make_repo(conn, repo)
    sql(conn, "select splitgraph.checkout(%s, %s)", repo, base)
    sql(conn, f"insert into \"{repo}\".t values (3, 'x')")
    child = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.tag(%s, %s, 'child')", repo, child)
    sql(conn, "select splitgraph.branch(%s, 'side', %s)", repo, child)
    sql(conn, "select splitgraph.checkout(%s, 'main')", repo)
    err = fails(conn, "select splitgraph.delete_image(%s, %s)", repo, child, sqlstate="55000")
    assert 'branch "side"' in str(err) and 'tag "child"' in str(err)
    assert value(conn, "select splitgraph.delete_image(%s, %s, force => true)", repo, child) == 1
    assert value(conn, "select count(*) from splitgraph.branches(%s) where branch = 'side'", repo) == 0
    assert value(conn, "select count(*) from splitgraph_meta.tags where repository = %s", repo) == 0


def test_an_image_no_branch_or_tag_names_is_deleted_without_force(conn):
    repo = "safe/plain"
    base = make_repo(conn, repo)
    sql(conn, "select splitgraph.checkout(%s, %s)", repo, base)
    sql(conn, f"insert into \"{repo}\".t values (3, 'x')")
    detached = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "select splitgraph.checkout(%s, 'main')", repo)
    assert value(conn, "select splitgraph.delete_image(%s, %s)", repo, detached) == 1


def test_prune_names_nothing_when_nothing_goes(conn):
    repo = "safe/prune-none"
    make_repo(conn, repo)
    sql(conn, "set client_min_messages = notice")
    notices = notices_of(conn)
    assert value(conn, "select splitgraph.prune(%s)", repo) == 0
    assert not [n for n in notices if "pruned" in n]


# ---------------------------------------------------------------------------------------------------------------
# apply_fragments and layered checkouts
# ---------------------------------------------------------------------------------------------------------------

def test_apply_fragments_writes_into_tables_only(conn):
    repo = "safe/apply"
    image = make_repo(conn, repo)
    oid = value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image)["objects"][0]
    sql(conn, "create table public.safe_target (id int primary key, v text)")
    sql(conn, "create view public.safe_view as select * from public.safe_target")
    fails(conn, "select splitgraph.apply_fragments(array[%s], 'public', 'safe_view')", oid, sqlstate="42809")
    assert value(conn, "select count(*) from public.safe_target") == 0
    sql(conn, "select splitgraph.apply_fragments(array[%s], 'public', 'safe_target')", oid)
    assert value(conn, "select count(*) from public.safe_target") == 2


def test_apply_fragments_refuses_a_table_with_a_child_in_the_extensions_schemas(conn):
    repo = "safe/apply-child"
    image = make_repo(conn, repo)
    oid = value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image)["objects"][0]
    sql(conn, "create table public.safe_parent (id int, v text)")
    sql(conn, "create table splitgraph_internal.safe_child () inherits (public.safe_parent)")
    try:
        fails(conn, "select splitgraph.apply_fragments(array[%s], 'public', 'safe_parent')", oid, sqlstate="42501")
    finally:
        sql(conn, "drop table splitgraph_internal.safe_child")


def test_a_layered_checkout_reads_like_the_image_and_is_not_updatable(conn):
    repo = "safe/layered"
    image = make_repo(conn, repo, rows=5)
    sql(conn, "select splitgraph.checkout(%s, %s, layered => true)", repo, image)
    assert value(conn, f'select count(*) from "{repo}".t where id > 2') == 3
    assert value(conn, "select pg_catalog.pg_relation_is_updatable(%s::regclass, true)", f'"{repo}".t') == 28, \
        "its trigger takes every INSERT, UPDATE and DELETE"
    assert value(conn, "select pg_catalog.pg_relation_is_updatable(%s::regclass, false)", f'"{repo}".t') == 0, \
        "without its trigger the view would not be writable either"


# ---------------------------------------------------------------------------------------------------------------
# Bounds of a commit
# ---------------------------------------------------------------------------------------------------------------

def test_the_object_limit_says_how_large_a_chunk_size_would_do(conn):
    repo = "safe/limit"
    limit = value(conn, """select 2 * current_setting('max_locks_per_transaction')::int
                                 * (current_setting('max_connections')::int
                                    + current_setting('max_prepared_transactions')::int) / 5""")
    rows = 3 * limit
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key)')
    sql(conn, f'insert into "{repo}".t select generate_series(1, {rows})')
    err = fails(conn, "select splitgraph.commit(%s, chunk_size => 1)", repo, sqlstate="54000")
    assert str(limit) in str(err) and "at least 3 rows" in (err.diag.message_hint or "")
    fails(conn, "select splitgraph.store_fragment(%s, 't', chunk_size => 1)", repo, sqlstate="54000")
    image = value(conn, "select splitgraph.commit(%s, chunk_size => 3)", repo)
    assert len(value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image)["objects"]) == limit


@pytest.mark.parametrize("option,ok", [({"size": 65536}, True), ({"size": 65537}, False),
                                       ({"probability": 1e-9}, True), ({"probability": 1e-10}, False),
                                       ({"probability": True}, False), ({"size": 1.5}, False)])
def test_bloom_filter_bounds(conn, option, ok):
    repo = f"safe/bloom-{len(sql(conn, 'select 1 from splitgraph_meta.repositories'))}"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v text)')
    sql(conn, f"insert into \"{repo}\".t values (1, 'a')")
    query = "select splitgraph.commit(%s, index_options => %s)"
    options = Jsonb({"bloom": {"t": {"v": option}}})
    if ok:
        sql(conn, query, repo, options)
    else:
        with pytest.raises(psycopg2.Error) as info:
            sql(conn, query, repo, options)
        assert info.value.pgcode == "22023"
