"""The history of rows: blame, the image that last changed each row of a table."""
from . import db, errors, fragments, meta
from . import tables as tbl
from .declare import api
from .names import FLAG_COLUMN, ident, literal


def _chain(plpy, repo, image_hash):
    """The image and its ancestors, oldest first."""
    return db.column(plpy, """
        with recursive chain (image_hash, depth) as (
            select $2::text, 0
            union all
            select i.parent_id, c.depth + 1 from chain c
            join splitgraph_meta.images i on i.repository = $1 and i.image_hash = c.image_hash
            where i.parent_id is not null
        )
        select image_hash from chain order by depth desc""", repo, image_hash)


def _digest(cols, alias):
    return f"pg_catalog.sha256(pg_catalog.convert_to({tbl.row_text(cols, alias + '.')}, 'UTF8'))"


def _same_key(cols_a, cols_b):
    def key(cols):
        return [(c.name, c.storage) for c in tbl.key_columns(cols)]

    return key(cols_a) == key(cols_b)


class _Keyed:
    """Blame of a table with a primary key: per key, the hash of its row and the image that wrote it."""

    def __init__(self, plpy):
        self.plpy, self.cols, self.ids, self.state = plpy, None, None, None

    def step(self, image_hash, version):
        plpy = self.plpy
        if version is None:
            self.cols = self.ids = None
            return
        cols = tbl.as_stored(tbl.from_spec(plpy, version.spec, version.definition))
        key = tbl.key_columns(cols)
        ids = list(version.object_ids)
        if self.cols is not None and tbl.schema_key([c.spec() for c in cols]) == \
                tbl.schema_key([c.spec() for c in self.cols]) and ids[:len(self.ids)] == self.ids:
            if ids != self.ids:
                self._append(image_hash, cols, key, ids[len(self.ids):])
        else:
            self._rebuild(image_hash, cols, key, ids)
        self.cols, self.ids = cols, ids

    def _append(self, image_hash, cols, key, new):
        """Objects appended to the last version: the keys they hold get their newest row (or go). The state's
        columns are k0.. (the key), h (the row's hash) and image_hash: no name of the table's can clash."""
        ks = [f"k{i}" for i in range(len(key))]
        numbered = " union all ".join(
            f"select {tbl.column_list(key, 'f.')}, f.{FLAG_COLUMN}, {_digest(cols, 'f')}, {n} "
            f"from {fragments.object_table(o)} f" for n, o in enumerate(new))
        latest = ident(db.temp_name("sg_latest"))
        match = " and ".join(f"s.{k} = n.{k}" for k in ks)
        self.plpy.execute(f"""
            create temp table {latest} as
            select distinct on ({', '.join(ks)}) {', '.join(ks)}, u.upsert, u.h
            from ({numbered}) u ({', '.join(ks)}, upsert, h, position)
            order by {', '.join(ks)}, u.position desc;
            delete from {self.state} s using {latest} n where {match} and not n.upsert;
            update {self.state} s set h = n.h, image_hash = {literal(image_hash)}
            from {latest} n where {match} and n.upsert and s.h <> n.h;
            insert into {self.state} ({', '.join(ks)}, h, image_hash)
            select {', '.join(f'n.{k}' for k in ks)}, n.h, {literal(image_hash)} from {latest} n
            where n.upsert and not exists (select from {self.state} s where {match});
            drop table {latest}""")

    def _rebuild(self, image_hash, cols, key, ids):
        """Another version (a snapshot, a schema change, an import): rows equal to the last version's keep their
        image, the others are this image's."""
        raw = db.temp_name("sg_rows")
        fragments.materialize(self.plpy, "pg_temp", raw, cols, ids)
        made = ident(raw)
        state = "pg_temp." + ident(db.temp_name("sg_blame"))
        ks = [f"k{i}" for i in range(len(key))]
        keep, old = "null::text", ""
        if self.state is not None and self.cols is not None and _same_key(cols, self.cols):
            match = " and ".join(f"s.k{i} = m.{ident(c.name)}" for i, c in enumerate(key))
            old = f" left join {self.state} s on {match}"
            keep = f"case when s.h = {_digest(cols, 'm')} then s.image_hash end"
        self.plpy.execute(f"""
            create temp table {state.split('.', 1)[1]} as
            select {', '.join(f'm.{ident(c.name)} as k{i}' for i, c in enumerate(key))}, {_digest(cols, 'm')} as h,
                   coalesce({keep}, {literal(image_hash)}) as image_hash
            from pg_temp.{made} m{old};
            alter table {state} add primary key ({', '.join(ks)});
            drop table pg_temp.{made}""" + (f";\ndrop table {self.state}" if self.state else ""))
        self.state = state

    def result(self, name):
        key = tbl.key_columns(self.cols)
        pairs = ", ".join(f"{literal(c.name)}, s.k{i}" for i, c in enumerate(key))
        self.plpy.execute(f"""create temp table {ident(name)} as
                              select pg_catalog.jsonb_build_object({pairs}) as pk, s.image_hash from {self.state} s;
                              drop table {self.state}""")


class _Keyless:
    """Blame of a table without a primary key: per distinct row, how many times the table holds it and the image
    that last changed that number."""

    def __init__(self, plpy):
        self.plpy, self.state = plpy, None

    def step(self, image_hash, version):
        if version is None:
            self.state = None
            return
        plpy = self.plpy
        cols = tbl.as_stored(tbl.from_spec(plpy, version.spec, version.definition))
        raw = db.temp_name("sg_rows")
        fragments.materialize(plpy, "pg_temp", raw, cols, list(version.object_ids))
        made = ident(raw)
        state = "pg_temp." + ident(db.temp_name("sg_blame"))
        old = f"left join {self.state} s on s.t = g.t" if self.state else ""
        keep = "case when s.n = g.n then s.image_hash end" if self.state else "null::text"
        plpy.execute(f"""
            create temp table {state.split('.', 1)[1]} as
            select g.t, g.n, g.j, coalesce({keep}, {literal(image_hash)}) as image_hash
            from (select {tbl.row_text(cols, 'm.')} as t, count(*) as n, min(pg_catalog.to_jsonb(m)::text)::jsonb as j
                  from pg_temp.{made} m group by 1) g {old};
            drop table pg_temp.{made}""" + (f";\ndrop table {self.state}" if self.state else ""))
        self.state = state

    def result(self, name):
        self.plpy.execute(f"""create temp table {ident(name)} as
                              select s.j as pk, s.image_hash from {self.state} s
                              cross join lateral pg_catalog.generate_series(1, s.n) as copies;
                              drop table {self.state}""")


@api("blame(repository text, table_name text, image text default 'HEAD') returns table (pk jsonb, image_hash text)",
     "blame(repository, table_name, image = HEAD): for each row of the table in the image, the image of its "
     "ancestry that last changed it; pk is the row's key (the whole row for a table without a primary key)",
     rows="temp")
def blame(plpy, repository, table_name, image="HEAD"):
    """Walk the image's ancestry from its root: an image that appends objects to its parent's version of the table
    (a delta commit) changes the rows its objects hold, when they differ; any other image is compared row by row
    with its parent. Returns the name of the temporary table of results."""
    repo = meta.require(plpy, repository)
    image_hash, _ = meta.resolve(plpy, repo, image)
    target = meta.image_tables(plpy, repo, image_hash).get(table_name)
    if target is None:
        errors.fail(plpy, errors.UNDEFINED_TABLE,
                    f'table "{table_name}" not found in image {image_hash[:12]} of repository "{repo}"')
    keyed = bool(tbl.key_columns(tbl.from_spec(plpy, target.spec, target.definition)))
    walk = _Keyed(plpy) if keyed else _Keyless(plpy)
    for h in _chain(plpy, repo, image_hash):
        version = meta.image_tables(plpy, repo, h).get(table_name)
        if version is not None and keyed != bool(tbl.key_columns(tbl.from_spec(plpy, version.spec,
                                                                                version.definition))):
            version = None  # a key added or dropped: every row is the later image's
        walk.step(h, version)
    name = db.temp_name("sg_blame")
    walk.result(name)
    return name
