"""Table definitions and storage types: what a checkout gives back beyond the tests of test_integrity_schema.py
(columns of user types, serial columns, dropped columns, tables imported under another name), that metadata which
does not hold one expression is refused before anything runs, and that a checkout evaluates a table's
expressions with its caller's rights."""
import json

import pytest

from conftest import fails, sql, value
from support import driver  # noqa: E402
from support.integrity import ensure_roles


def describe(conn, schema, table):
    rel = f'"{schema}"."{table}"'
    return {
        "columns": sql(conn, """select a.attnum, a.attname::text, format_type(a.atttypid, a.atttypmod), a.attnotnull,
                                       pg_get_expr(d.adbin, d.adrelid)
                                from pg_attribute a left join pg_attrdef d on d.adrelid = a.attrelid
                                                                         and d.adnum = a.attnum
                                where a.attrelid = %s::regclass and a.attnum > 0 and not a.attisdropped
                                order by a.attnum""", rel),
        "constraints": sorted(sql(conn, "select conname::text, pg_get_constraintdef(oid) from pg_constraint "
                                        "where conrelid = %s::regclass", rel)),
        "indexes": sorted(r[0] for r in sql(conn, "select pg_get_indexdef(indexrelid) from pg_index "
                                                  "where indrelid = %s::regclass", rel)),
    }


def rows(conn, schema, table):
    return [r[0] for r in sql(conn, f'select t::text collate "C" as r from "{schema}"."{table}" t order by r')]


def test_user_types_are_stored_as_built_in_types_and_come_back(conn):
    repo = "td/types"
    s = f'"{repo}"'
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f"""create type {s}.mood as enum ('sad', 'ok', 'happy');
                  create domain {s}.label as varchar(10) check (value <> '');
                  create type {s}.pair as (a int, b text);
                  create table {s}.t (id {s}.mood primary key, l {s}.label, p {s}.pair, ms {s}.mood[],
                                      ps {s}.pair[], r int4range);
                  insert into {s}.t values ('happy', 'x', '(1,"a b")', '{{sad,ok}}', array['(2,c)'::{s}.pair],
                                            '[1,5)'),
                                           ('sad', 'y', null, '{{}}', null, null),
                                           ('ok', 'z', '(3,)', null, '{{"(4,\\"d,e\\")"}}', 'empty')""")
    before = rows(conn, repo, "t")
    image = value(conn, "select splitgraph.commit(%s, chunk_size => 2)", repo)
    objects = value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image)["objects"]
    assert len(objects) == 2
    stored = sql(conn, """select distinct a.attname::text, format_type(a.atttypid, a.atttypmod) from pg_attribute a
                          where a.attrelid = any(%s::regclass[]) and a.attnum > 0 order by 1""",
                 [f'splitgraph_meta."{o}"' for o in objects])
    assert stored == [("id", "text"), ("l", "character varying(10)"), ("ms", "text[]"), ("p", "text"),
                      ("ps", "text[]"), ("r", "int4range"), ("sg_ud_flag", "boolean")]
    # the chunks follow the order of the values as stored (text), so that the range partitions hold
    info = [value(conn, "select splitgraph.object_info(%s)", o)["index"]["range"]["id"] for o in objects]
    assert info == [["happy", "ok"], ["sad", "sad"]]
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
    assert rows(conn, repo, "t") == before
    assert [r[2] for r in describe(conn, repo, "t")["columns"]] == [
        '"td/types".mood', '"td/types".label', '"td/types".pair', '"td/types".mood[]', '"td/types".pair[]',
        "int4range"]
    # a delta of such a table, and a commit of the same table after a checkout, store nothing new
    sql(conn, f"update {s}.t set p = '(9,z)', ms = '{{happy}}' where id = 'sad'")
    second = value(conn, "select splitgraph.commit(%s)", repo)
    assert value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, second)["objects"][:2] == objects
    expected = rows(conn, repo, "t")
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", repo, second)
    assert rows(conn, repo, "t") == expected
    assert value(conn, "select count(*) from splitgraph.diff(%s, 't', %s, %s)", repo, image, second) == 2


def test_a_missing_type_fails_the_checkout_naming_it(conn):
    repo = "td/missing"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f"create type \"{repo}\".mood as enum ('sad'); create table \"{repo}\".t (m \"{repo}\".mood)")
    sql(conn, f"insert into \"{repo}\".t values ('sad')")
    image = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, f'drop type "{repo}".mood cascade')
    err = fails(conn, "select splitgraph.checkout(%s, %s, force => true)", repo, image, sqlstate="42704")
    assert '"td/missing".mood' in str(err) and err.diag.message_hint
    sql(conn, f"create type \"{repo}\".mood as enum ('sad', 'glad')")
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
    assert rows(conn, repo, "t") == ["(sad)"]


def test_serial_columns_dropped_columns_and_comments(conn):
    repo = "td/serial"
    s = f'"{repo}"'
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f"""create table {s}.t (id serial primary key, gone int, v text not null default 'x');
                  alter table {s}.t drop column gone;
                  comment on table {s}.t is 'a table';
                  insert into {s}.t (v) values ('a'), ('b')""")
    image = value(conn, "select splitgraph.commit(%s)", repo)
    want = describe(conn, repo, "t")
    sql(conn, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
    got = describe(conn, repo, "t")
    assert [c[:4] for c in got["columns"]] == [c[:4] for c in want["columns"]], "attnums and types as committed"
    assert got["constraints"] == want["constraints"] and got["indexes"] == want["indexes"]
    assert value(conn, f"select obj_description('{s}.t'::regclass, 'pg_class')") == "a table"
    assert value(conn, f"insert into {s}.t (v) values ('c') returning id") == 3, "the serial continues"
    # a checkout gives back the same columns (ordinals), so an unchanged table commits as HEAD's objects
    sql(conn, f"delete from {s}.t where id = 3")
    again = value(conn, "select splitgraph.commit(%s)", repo)
    assert value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, again)["objects"] == \
        value(conn, "select splitgraph.table_info(%s, %s, 't')", repo, image)["objects"]


def test_import_under_another_name_keeps_the_definition(conn):
    source, target = "td/src", "td/dst"
    sql(conn, "select splitgraph.init(%s)", source)
    sql(conn, f"""create table "{source}".t (id int primary key, v int check (v > 0) unique);
                  create index t_v_idx on "{source}".t ((v * 2));
                  insert into "{source}".t values (1, 1), (2, 2)""")
    sql(conn, "select splitgraph.commit(%s)", source)
    sql(conn, "select splitgraph.init(%s)", target)
    sql(conn, f'create table "{target}".t (x int)')  # its names are taken in the target
    sql(conn, "select splitgraph.import_table(%s, 't', %s, 'u')", source, target)
    got = describe(conn, target, "u")
    assert [c[0] for c in got["constraints"]] == ["u_pkey", "u_v_check", "u_v_key"]
    assert got["indexes"][0].startswith('CREATE INDEX u_v_idx ON "td/dst".u USING btree (((v * 2)))')


def forge(conn, repo, image, table, change):
    definition = json.loads(value(conn, """select table_definition::text from splitgraph_meta.tables
                                           where repository = %s and image_hash = %s and table_name = %s""",
                                  repo, image, table))
    change(definition)
    sql(conn, """update splitgraph_meta.tables set table_definition = %s::jsonb
                 where repository = %s and image_hash = %s and table_name = %s""",
        json.dumps(definition), repo, image, table)


@pytest.mark.parametrize("case", ["two statements", "a comment", "a query", "a type"])
def test_a_definition_that_is_not_one_expression_is_refused(conn, case):
    repo = f"td/forged-{case.replace(' ', '-')}"
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f'create table "{repo}".t (id int primary key, v int check (v > 0))')
    sql(conn, f'insert into "{repo}".t values (1, 1)')
    image = value(conn, "select splitgraph.commit(%s)", repo)
    sql(conn, "create table if not exists public.td_forged (x int)")
    injected = {
        "two statements": "v > 0); create table public.td_planted (x int); select (1",
        "a comment": "v > 0) -- ",
        "a query": "v > 0 from public.td_forged",
        "a type": None,
    }[case]

    def change(definition):
        if injected is None:
            definition["columns"]["v"] = {"storage": "int); create table public.td_planted (x int); --"}
        else:
            definition["constraints"][0]["expression"] = injected

    forge(conn, repo, image, "t", change)
    err = fails(conn, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
    assert err.pgcode in ("XX001", "42704"), err
    assert value(conn, "select to_regclass('public.td_planted')") is None


def test_checkout_evaluates_expressions_as_its_caller(cluster, dbname, conn):
    ensure_roles(cluster, "tdalice")
    with driver.connect(cluster.dsn(dbname, user="tdalice"), autocommit=True) as alice:
        repo = "tdalice/checks"
        sql(alice, "select splitgraph.init(%s)", repo)
        sql(alice, f"""create table "{repo}".seen (who text);
                       create function "{repo}".ok(int) returns boolean language plpgsql as $f$
                       begin insert into "{repo}".seen values (current_user::text); return true; end $f$;
                       create table "{repo}".t (id int primary key, v int check ("{repo}".ok(v)));
                       insert into "{repo}".t values (1, 1)""")
        image = value(alice, "select splitgraph.commit(%s)", repo)
        sql(alice, f'delete from "{repo}".seen')
        sql(alice, "select splitgraph.checkout(%s, %s, force => true)", repo, image)
        assert sql(alice, f'select distinct who from "{repo}".seen') == [("tdalice",)]
        assert value(alice, f"""select pg_get_constraintdef(oid) from pg_constraint
                                where conrelid = '"{repo}".t'::regclass and contype = 'c'""").startswith("CHECK")
        assert value(conn, "select tableowner from pg_tables where schemaname = %s and tablename = 't'",
                     repo) == "tdalice"
