"""Snapshot chunks: every chunk holds the chunk_size rows that follow the last chunk's in key order (the values'
C order), whether the chunk bounds come from walking an index that gives that order or from numbering the rows;
object ids are checked against an independent computation (hashlib only)."""
import hashlib

import pytest

from conftest import objects_of, sql, value

ZERO = "0" * 64


def ref_sum(hexes):
    acc = [0] * 16
    for h in hexes:
        raw = bytes.fromhex(h)
        acc = [a + raw[2 * i] * 256 + raw[2 * i + 1] for i, a in enumerate(acc)]
    return "".join("%04x" % (x % 65536) for x in acc)


def ref_object_id(texts, columns):
    insertion = ref_sum(hashlib.sha256(t.encode()).hexdigest() for t in texts)
    schema = hashlib.sha256(repr([tuple(c) for c in columns]).encode()).hexdigest()
    return "o" + hashlib.sha256((insertion + schema).encode("ascii")).hexdigest()[:62]


# (table definition, extra DDL, columns as hashed); the comment says whether an index gives the chunk order
LAYOUTS = {
    "int key": ("(id int primary key, s text)", [],
                [(1, "id", "integer", True), (2, "s", "text", False)]),  # walked
    "text key, C": ('(s text collate "C" primary key, id int)', [],
                    [(1, "s", "text", True), (2, "id", "integer", False)]),  # walked
    "text key, default collation": ("(s text primary key, id int)", [],
                                    [(1, "s", "text", True), (2, "id", "integer", False)]),  # numbered
    "text key, default collation, C index": ("(s text primary key, id int)", ['create index on {t} (s collate "C")'],
                                             [(1, "s", "text", True), (2, "id", "integer", False)]),  # walked
    "composite key": ('(s text collate "C", id int, primary key (s, id))', [],
                      [(1, "s", "text", True), (2, "id", "integer", True)]),  # walked
    "composite key, descending index": ('(id int, s text collate "C", primary key (id, s))', [],
                                        [(1, "id", "integer", True), (2, "s", "text", True)]),  # walked
}


def texts_in_key_order(rows, columns):
    """Row texts sorted by the key columns (strings by their UTF-8 bytes, as collate "C")."""
    names = [c[1] for c in columns]
    key = [names.index(c[1]) for c in columns if c[3]]

    def sort_key(r):
        return tuple(r[i].encode() if isinstance(r[i], str) else r[i] for i in key)

    return ["(" + ",".join(str(v) for v in r) + ")" for r in sorted(rows, key=sort_key)]


@pytest.mark.parametrize("layout", sorted(LAYOUTS))
def test_chunks_follow_key_order(conn, layout):
    definition, extra, columns = LAYOUTS[layout]
    repo = "chunks/" + layout.replace(" ", "_").replace(",", "")
    table = f'"{repo}".t'
    sql(conn, "select splitgraph.init(%s)", repo)
    sql(conn, f"create table {table} {definition}")
    for ddl in extra:
        sql(conn, ddl.format(t=table))
    # keys whose C order differs from a natural-language order, one key repeated under the composite key
    ids = list(range(1, 101))
    words = [("b" if i % 3 else "B") + ("a" * (i % 5)) + f"x{i:03d}" for i in ids]
    rows = [(i, w) if columns[0][1] == "id" else (w, i) for i, w in zip(ids, words, strict=True)]
    if layout.startswith("composite"):
        rows += [(r[0], r[1] + 1000) if isinstance(r[1], int) else (r[0] + 1000, r[1]) for r in rows[:7]]
    with conn.cursor() as cur:
        cur.executemany(f"insert into {table} values (%s, %s)", rows)
    if layout == "composite key, descending index":
        sql(conn, f"create index on {table} (id desc, s)")
    sql(conn, f"analyze {table}")
    image = value(conn, "select splitgraph.commit(%s, chunk_size => 7)", repo)
    texts = texts_in_key_order(rows, columns)
    expected = [ref_object_id(texts[i:i + 7], columns) for i in range(0, len(texts), 7)]
    assert objects_of(conn, repo, image, "t") == expected
