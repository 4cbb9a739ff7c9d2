"""Merging: a branch, tag or image merged into the checkout's branch, three-way, from the fragments between the
common ancestor (the base) and the two heads; and the conflicts such a merge would meet.

Tables. A table changed on one side only takes that side's version (its schema, definition and rows: a table
added or dropped on one side is added or dropped; a schema change on one side only comes with its data). A table
changed on both sides merges row by row when the base and both sides have the same columns (or the base lacks
the table: then every row counts as inserted on both sides), or when one side changed the schema in a way rows
can follow (the same primary key; the columns both have keep their types): then rows are seen in that side's
columns, by name. Otherwise it conflicts, as do a table dropped on one side and changed on the other, and
definitions changed differently on the two sides (the positions of sequences do not count: the merge keeps the
furthest).

Rows, by primary key. Each side's changes are the rows of the fragments it adds to the base's (one pass over
the changed rows only); a side whose fragments do not extend the base's (a snapshot commit) is compared with the
base row by row. A key changed on one side only takes that change; a key changed alike on both sides is one
change; a key changed differently on both merges cell by cell, as Dolt does: a column changed on one side only
takes that change, a column changed alike on both is that value, and a column changed to different values on
the two sides conflicts, as does a row deleted on one side and changed on the other, or a key inserted on both
sides with different values. Only keys changed on both sides are looked up in the base. Without a strategy a
conflict aborts the merge; 'ours' and 'theirs' resolve each conflicting cell (or row, or table) with that
side's.

Rows of a table without a primary key are whole-row identities counted as a multiset: each side adds or removes
copies of rows; changes of the same sign overlap (the larger one counts: a row added on both sides is added
once), changes of opposite signs add up. They never conflict.

The merge image has the checkout's HEAD as its first parent and the source as its second
(splitgraph_meta.merge_parents). A merged table's version is HEAD's fragments plus those that make the merge:
the source's own fragments when no key changed on both sides (nothing new is stored), else one new fragment of
the merge's changes against HEAD. The checkout then takes those fragments, written as the caller; its change
logs are trusted again only when what they logged sums to exactly the merge's content.
"""
import copy
import json

from . import changes, checkout, db, errors, fragments, hashing, meta, names, pending, tracking
from . import tables as tbl
from .declare import api, helper
from .names import FLAG_COLUMN, ident, literal

STRATEGIES = ("ours", "theirs")
# Storage types of a first key column whose objects' range index prunes the base's objects a merge reads.
_RANGE_PRUNED = ("smallint", "integer", "bigint", "numeric", "text", "character varying", "date")
# The scratch tables' sizes are estimated before they exist: compiling a plan (JIT) would cost more than it runs.
NO_JIT = {"jit": "off"}
_CONFLICT_COLUMNS = "table_name text, pk jsonb, base jsonb, ours jsonb, theirs jsonb"
# Merges begun in this session's transactions: {(transaction id, repository): what merge_end finishes}. Only the
# extension's own Python code reaches it (no other role runs Python in the server).
_BEGUN = {}


def merge_bases(plpy, repo, ours, theirs):
    """The best common ancestors of two images (common ancestors that are not an ancestor of another common
    ancestor), newest first; through both parents of merge images."""
    return db.column(plpy, f"""
        with recursive
        a (image_hash) as (select $2::text union select p.parent_id from a x cross join {meta.parents_of('x')}),
        b (image_hash) as (select $3::text union select p.parent_id from b x cross join {meta.parents_of('x')}),
        common as (select image_hash from a intersect select image_hash from b),
        below (image_hash) as (
            select p.parent_id from common x cross join {meta.parents_of('x')}
            union
            select p.parent_id from below x cross join {meta.parents_of('x')}
        )
        select i.image_hash from common c
        join splitgraph_meta.images i on i.repository = $1 and i.image_hash = c.image_hash
        where c.image_hash not in (select image_hash from below)
        order by i.created desc, i.seq desc""", repo, ours, theirs)


# ---------------------------------------------------------------------------------------------------------------
# Versions of tables, compared
# ---------------------------------------------------------------------------------------------------------------

def _without_positions(definition):
    """A table definition without its sequences' positions (they move with every insert)."""
    if not isinstance(definition, dict):
        return definition
    result = copy.deepcopy(definition)
    for column in tbl.definition_columns(result).values():
        if isinstance(column, dict) and isinstance(column.get("sequence"), dict):
            column["sequence"].pop("last", None)
    return result


def _shape(version):
    """What a table is besides its rows: its columns (with comments and collations) and its definition."""
    if version is None:
        return None
    return json.dumps([version.spec, _without_positions(version.definition)], sort_keys=True)


def _same(a, b):
    """Whether two table versions (or absences) are the same table with the same rows."""
    if a is None or b is None:
        return a is None and b is None
    return _shape(a) == _shape(b) and list(a.object_ids) == list(b.object_ids)


def _extends(version, base):
    """The fragments `version` adds to `base`'s, or None when its list does not extend the base's."""
    ids = [] if base is None else list(base.object_ids)
    if list(version.object_ids[:len(ids)]) != ids:
        return None
    return list(version.object_ids[len(ids):])


def _furthest_positions(definition, *others):
    """`definition` with each sequence's position moved to the furthest any of `others` reached."""
    if not isinstance(definition, dict):
        return definition
    result = copy.deepcopy(definition)
    for name, column in tbl.definition_columns(result).items():
        seq = column.get("sequence") if isinstance(column, dict) else None
        if not isinstance(seq, dict):
            continue
        descending = isinstance(seq.get("increment"), int) and seq["increment"] < 0
        lasts = [seq.get("last")] + [((tbl.definition_columns(o.definition).get(name) or {}).get("sequence") or {})
                                     .get("last") for o in others if o is not None]
        lasts = [v for v in lasts if isinstance(v, int) and not isinstance(v, bool)]
        if lasts:
            seq["last"] = min(lasts) if descending else max(lasts)
    return result


def _reconcilable(base, changed):
    """Whether rows in the base's columns can merge into the columns of `changed`, a version with a schema
    change: the same primary key (names, types, order), and every column both have of the same type (columns
    may be added, dropped or reordered)."""
    def pk(spec):
        return [(c[1], c[2]) for c in sorted(spec, key=lambda c: c[0]) if c[3]]

    theirs = {c[1]: c[2] for c in changed.spec}
    return (base is not None and pk(base.spec) and pk(base.spec) == pk(changed.spec)
            and all(theirs.get(c[1], c[2]) == c[2] for c in base.spec))


def content_of(plpy, object_ids):
    """The content hash of a list of objects: the sum of their content hashes (that of the rows they build)."""
    rows = db.run(plpy, """select o.insertion_hash, o.deletion_hash from pg_catalog.unnest($1::text[]) u(id)
                           join splitgraph_meta.objects o on o.object_id = u.id""", list(object_ids))
    return hashing.total(hashing.content_hash(r["insertion_hash"], r["deletion_hash"]) for r in rows)


def _columns_json(version):
    """A table's columns as a conflict shows them: [[name, type, is_pk], ...], or null when it is absent."""
    if version is None:
        return None
    return [[c[1], c[2], bool(c[3])] for c in sorted(version.spec, key=lambda c: c[0])]


# ---------------------------------------------------------------------------------------------------------------
# Rows of one table
# ---------------------------------------------------------------------------------------------------------------

def _positional(cols, alias, prefix="c"):
    return ", ".join(f"{alias}.{prefix}{i}" for i in range(len(cols)))


def _row_text(cols, alias, prefix="c"):
    """The text of a row held under positional names: the text its table's row has (and hashes)."""
    return f"row({_positional(cols, alias, prefix)})::text"


def _same_value(a, b):
    return f'({a})::text collate "C" is not distinct from ({b})::text collate "C"'


class _TableMerge:
    """The rows of a table changed on both sides, merged; `cols` are its columns as stored
    (tables.as_stored): everything here reads object tables and temporary tables of built-in types only."""

    def __init__(self, merge, table, base, ours, theirs, cols):
        self.plpy, self.merge, self.table = merge.plpy, merge, table
        self.base, self.ours, self.theirs, self.cols = base, ours, theirs, cols
        self.same_schemas = all(v is None or tbl.schema_key(v.spec) == tbl.schema_key([c.spec() for c in cols])
                                for v in (base, ours, theirs))

    def cols_of(self, version):
        """The columns (as stored) of a version: those its objects hold."""
        if version is None or tbl.schema_key(version.spec) == tbl.schema_key([c.spec() for c in self.cols]):
            return self.cols
        return tbl.as_stored(tbl.from_spec(self.plpy, version.spec, version.definition))

    def project(self, version, alias):
        """A version's row (columns of `alias`) as values of the merge's columns, by name: a column the version
        lacks (or has with another type) is null."""
        have = {c.name: c for c in self.cols_of(version)}
        return [f"{alias}.{ident(c.name)}" if c.name in have and have[c.name].type == c.type
                else f"null::{c.storage}" for c in self.cols]

    def temp(self, prefix):
        """A name for a scratch table in pg_temp, dropped when the merge is done."""
        name = f"pg_temp.{ident(db.temp_name(prefix))}"
        self.merge.made.append(name)
        return name

    def materialized(self, version):
        """A temporary table of a version's rows (the columns as stored, named as the table's), made once."""
        ids = tuple(version.object_ids) if version is not None else ()
        key = (self.table, ids)
        if key not in self.merge.materialized:
            name = db.temp_name("sg_side")
            fragments.materialize(self.plpy, "pg_temp", name, self.cols_of(version), list(ids))
            self.plpy.execute(f"analyze pg_temp.{ident(name)}")
            self.merge.materialized[key] = f"pg_temp.{ident(name)}"
            self.merge.made.append(self.merge.materialized[key])
        return self.merge.materialized[key]

    def fragment_union(self, object_ids, version):
        """The rows of objects of a version, in order, as the merge's columns under positional names (c0..), with
        sg_pos (their object's place in the list) and sg_flag (false: the row is deleted)."""
        named = ", ".join(f"{v} as c{i}" for i, v in enumerate(self.project(version, "f")))
        return " union all ".join(
            f"select {n} as sg_pos, {tbl.select_list(named, f'f.{FLAG_COLUMN} as sg_flag')} "
            f"from {fragments.object_table(o)} f" for n, o in enumerate(object_ids))

    def fill(self, out, select):
        """Make the scratch table `out` of a SELECT's rows, with statistics (the planner then joins such tables
        by hashing, not row by row)."""
        self.plpy.execute(f"create table {out} as {select}")
        self.plpy.execute(f"analyze {out}")

    def empty(self, out):
        nulls = ", ".join(f"null::{c.storage} as c{i}" for i, c in enumerate(self.cols))
        self.plpy.execute(f"create table {out} as select {tbl.select_list(nulls, 'null::boolean as sg_flag')} "
                          "where false")


class KeyedMerge(_TableMerge):
    """Rows merged by primary key, cell by cell."""

    def __init__(self, merge, table, base, ours, theirs, cols):
        super().__init__(merge, table, base, ours, theirs, cols)
        self.key = [i for i, c in enumerate(cols) if c.is_pk]

    def key_list(self, alias, prefix="c"):
        return ", ".join(f"{alias}.{prefix}{i}" for i in self.key)

    def side_changes(self, side):
        """A temporary table of the keys `side` changed since the base, each with its state there (c0..,
        sg_flag: whether the row exists). From the fragments the side adds to the base's when its list extends
        the base's (a key they touch and put back counts as changed, which is harmless), else by comparing the
        two versions row by row."""
        out = self.temp("sg_changed")
        extra = _extends(side, self.base)
        if extra is not None:
            if not extra:
                self.empty(out)
            else:
                self.fill(out, f"""
                    select distinct on ({self.key_list('u')}) {_positional(self.cols, 'u')}, u.sg_flag
                    from ({self.fragment_union(extra, side)}) u
                    order by {self.key_list('u')}, u.sg_pos desc""")
            return out
        before, after = self.materialized(self.base), self.materialized(side)
        key = [self.cols[i] for i in self.key]
        match = " and ".join(f"a.{ident(c.name)} = b.{ident(c.name)}" for c in key)
        named = ", ".join(f"{v} as c{i}" for i, v in enumerate(self.project(side, "a")))
        keys_only = ", ".join((f"b.{ident(c.name)}" if c.is_pk else f"null::{c.storage}") + f" as c{i}"
                              for i, c in enumerate(self.cols))

        def row(version, alias):
            return f"row({', '.join(self.project(version, alias))})::text collate \"C\""

        differs = f"{row(side, 'a')} <> {row(self.base, 'b')}"
        self.fill(out, f"""
            select {named}, true as sg_flag from {after} a left join {before} b on {match}
            where b.{ident(key[0].name)} is null or {differs}
            union all
            select {keys_only}, false from {before} b left join {after} a on {match}
            where a.{ident(key[0].name)} is null""")
        return out

    def base_rows(self, both):
        """The base's rows (c0.., sg_flag) of the keys both sides changed, differently; no other key is looked
        up in the base."""
        out = self.temp("sg_base")
        if self.base is None or not self.base.object_ids or not db.scalar(
                self.plpy, f"select exists (select from {both} x where x.o_flag is not null and x.t_flag is not null)"):
            self.empty(out)
            return out
        objects = self.base_objects_holding(both)
        if not objects:
            self.empty(out)
            return out
        self.fill(out, f"""
            select distinct on ({self.key_list('u')}) {_positional(self.cols, 'u')}, u.sg_flag
            from ({self.fragment_union(objects, self.base)}) u
            where ({self.key_list('u')}) in (select {self.key_list('x', 'k')} from {both} x
                                             where x.o_flag is not null and x.t_flag is not null)
            order by {self.key_list('u')}, u.sg_pos desc""")
        return out

    def base_objects_holding(self, both):
        """The base's objects, in order, that may hold a key both sides changed: an object whose range index
        (which spans every key it upserts or deletes) leaves out each such key cannot, and is not read. Only
        the first key column's range is used, and only for storage types whose range values read back exactly
        (integers, numeric, text and varchar in "C" order, date); other objects are all kept."""
        first = self.cols[self.key[0]]
        kind = first.storage.split("(")[0]
        if kind not in _RANGE_PRUNED:
            return list(self.base.object_ids)
        collate = ' collate "C"' if first.collatable else ""

        def bound(i):
            return f"((o.index -> 'range' -> $2 ->> {i})::{first.storage}){collate}"

        return db.column(self.plpy, f"""
            with k as materialized (select x.k{self.key[0]}{collate} as k from {both} x
                                    where x.o_flag is not null and x.t_flag is not null)
            select u.id from pg_catalog.unnest($1::text[]) with ordinality as u(id, n)
            join {fragments.META}.objects o on o.object_id = u.id
            where pg_catalog.jsonb_typeof(o.index -> 'range' -> $2) is distinct from 'array'
               or o.index -> 'range' -> $2 ->> 0 is null or o.index -> 'range' -> $2 ->> 1 is null
               or exists (select from k where k.k >= {bound(0)} and k.k <= {bound(1)})
            order by u.n""", list(self.base.object_ids), first.name)

    def touched_by_both(self, extra_o, extra_t):
        """Whether a key is in fragments of both sides (read straight from the fragments: keys only)."""
        if not extra_o or not extra_t:
            return False

        def keys(ids):
            return " union all ".join(f"select {', '.join(f'f.{ident(self.cols[i].name)} as c{i}' for i in self.key)}"
                                      f" from {fragments.object_table(o)} f" for o in ids)

        match = " and ".join(f"o.c{i} = t.c{i}" for i in self.key)
        with db.settings(self.plpy, {"enable_nestloop": "off"}):  # hash the keys: never pair them one by one
            return db.scalar(self.plpy, f"select count(*) > 0 from ({keys(extra_o)}) o join ({keys(extra_t)}) t "
                                        f"on {match}")

    def filled(self, mine, other, version):
        """The changes of one side (`mine`) with, for each key only the other side changed, this side's row of
        it as it is (in `version`), so that every changed key has a state on both sides."""
        out = self.temp("sg_filled")
        key = [self.cols[i] for i in self.key]
        projected = self.project(version, "v")
        values = ", ".join((f"k.c{i}" if i in self.key else projected[i]) + f" as c{i}" for i in range(len(self.cols)))
        self.fill(out, f"""
            select * from {mine}
            union all
            select {values}, v.{ident(key[0].name)} is not null as sg_flag
            from (select {self.key_list('x')} from {other} x
                  where not exists (select from {mine} m where {' and '.join(f'm.c{i} = x.c{i}' for i in self.key)})
                 ) k
            left join {self.materialized(version)} v on {' and '.join(f'v.{ident(self.cols[i].name)} = k.c{i}'
                                                                      for i in self.key)}""")
        return out

    def run(self, strategy, relative="ours"):
        """Merge the rows. Returns (a temporary table of every key whose state in the merge differs from its
        state on the `relative` side (ours, or theirs when theirs changed the table's schema): c0.., sg_flag;
        whether some key was changed on both sides). Conflicts are written to the merge's conflict table.
        When a side changed the schema, every row is seen in the merge's columns, and a key changed on one side
        only merges cell by cell too (the other side may have filled a column it added)."""
        n = len(self.cols)
        extra_o, extra_t = _extends(self.ours, self.base), _extends(self.theirs, self.base)
        if self.same_schemas and extra_o is not None and extra_t is not None and not self.touched_by_both(
                extra_o, extra_t):
            return None, False  # theirs' fragments apply to ours as they are (Merge.version): nothing to merge
        ours, theirs = self.side_changes(self.ours), self.side_changes(self.theirs)
        match = " and ".join(f"o.c{i} = t.c{i}" for i in self.key)
        # (a count, not EXISTS: the planner would look for the first match row by row, through every pair)
        overlap = db.scalar(self.plpy, f"select count(*) > 0 from {ours} o join {theirs} t on {match}")
        if not overlap and self.same_schemas and _extends(self.theirs, self.base) is not None:
            return None, False  # theirs' fragments apply to ours as they are (Merge.version): nothing to merge
        if self.same_schemas:
            pairs = f"{ours} o right join {theirs} t on {match}"  # the keys theirs changed: the others are ours'
        else:
            ours, theirs = self.filled(ours, theirs, self.ours), self.filled(theirs, ours, self.theirs)
            pairs = f"{ours} o join {theirs} t on {match}"
        both = self.temp("sg_both")
        keys = ", ".join(f"coalesce(o.c{i}, t.c{i}) as k{i}" for i in self.key)
        o_cols = ", ".join(f"o.c{i} as o{i}" for i in range(n))
        t_cols = ", ".join(f"t.c{i} as t{i}" for i in range(n))
        alike = (f"(o.sg_flag = t.sg_flag and (not o.sg_flag or {_row_text(self.cols, 'o')} collate \"C\" = "
                 f"{_row_text(self.cols, 't')} collate \"C\"))")
        # the keys theirs changed, and those both changed (but not alike: that is one change, already ours)
        self.fill(both, f"""
            select {keys}, o.sg_flag as o_flag, t.sg_flag as t_flag, {tbl.select_list(o_cols, t_cols)}
            from {pairs}
            where o.sg_flag is null or not {alike}""")
        base = self.base_rows(both)
        result = self.temp("sg_merged")
        b_present = "coalesce(b.sg_flag, false)"
        # whether a side changed a row is judged on the columns the base has (a column a side added, and filled,
        # changes no row by itself)
        known = {c.name: c.type for c in self.cols_of(self.base)}
        compared = [i for i, c in enumerate(self.cols) if known.get(c.name) == c.type]
        o_text, t_text, b_text = (f"row({', '.join(f'{a}.{p}{i}' for i in compared)})::text"
                                  for a, p in (("x", "o"), ("x", "t"), ("b", "c")))
        o_changed = f"(x.o_flag <> {b_present} or (x.o_flag and {o_text} collate \"C\" <> {b_text} collate \"C\"))"
        t_changed = f"(x.t_flag <> {b_present} or (x.t_flag and {t_text} collate \"C\" <> {b_text} collate \"C\"))"
        values = [i for i in range(n) if i not in self.key]
        clash = " or ".join(f"not ({_same_value(f'x.o{i}', f'b.c{i}')} or {_same_value(f'x.t{i}', f'b.c{i}')} "
                            f"or {_same_value(f'x.o{i}', f'x.t{i}')})" for i in values) or "false"
        pick = "o" if strategy == "ours" else "t"
        cells = []
        for i in range(n):
            if i in self.key:
                cells.append(f"x.k{i} as c{i}")
            else:
                cells.append(f"""case when k.kind = 'theirs' then x.t{i}
                                      when k.kind = 'ours' then x.o{i}
                                      when k.kind = 'row' then x.{pick}{i}
                                      when {_same_value(f'x.o{i}', f'b.c{i}')} then x.t{i}
                                      when {_same_value(f'x.t{i}', f'b.c{i}')} then x.o{i}
                                      else x.{pick}{i} end as c{i}""")
        conflict = f"k.kind = 'row' or (k.kind = 'cells' and ({clash}))"
        self.fill(result, f"""
            select {', '.join(cells)},
                   case k.kind when 'theirs' then x.t_flag when 'ours' then x.o_flag when 'row' then x.{pick}_flag
                               else true end as sg_flag,
                   {conflict} as sg_conflict,
                   case when {conflict} then pg_catalog.jsonb_build_array(
                       case when {b_present} then {changes.json_object(self.cols, 'b', 'c')} end,
                       case when x.o_flag then {changes.json_object(self.cols, 'x', 'o')} end,
                       case when x.t_flag then {changes.json_object(self.cols, 'x', 't')} end) end as sg_sides
            from {both} x
            left join {base} b on {' and '.join(f'b.c{i} = x.k{i}' for i in self.key)}
            cross join lateral (
                select case when x.o_flag is null then 'theirs'
                            when x.o_flag and x.t_flag and {b_present} then 'cells'
                            when not {o_changed} then 'theirs'
                            when not {t_changed} then 'ours'
                            else 'row' end as kind) k
            where k.kind <> {literal(relative)}""")
        pk = "pg_catalog.jsonb_build_object(" + ", ".join(
            f"{literal(self.cols[i].name)}, r.c{i}" for i in self.key) + ")"
        self.plpy.execute(f"""
            insert into {self.merge.conflicts} (table_name, pk, base, ours, theirs)
            select {literal(self.table)}, {pk}, r.sg_sides -> 0, r.sg_sides -> 1, r.sg_sides -> 2
            from {result} r where r.sg_conflict""")
        return result, overlap

    def against(self, result, live_source, live_cols):
        """The merge's changes to one side's table (`live_source`, of columns `live_cols`: the checkout's table,
        which is HEAD's version as nothing is pending, or a side materialized) as a Delta (changes.py) of the keys
        whose row the merge changes: the old values read from that table by key."""
        name = db.temp_name("sg_delta")
        self.merge.made.append(f"pg_temp.{ident(name)}")
        by_name = {c.name: c for c in live_cols}
        live = [by_name[c.name] for c in self.cols]
        match = " and ".join(f"{live[i].stored('l.' + ident(live[i].name))} = r.c{i}" for i in self.key)
        existed = f"l.{ident(live[self.key[0]].name)} is not null"
        old = ", ".join(f"{c.stored('l.' + ident(c.name))} as o{i}" for i, c in enumerate(live))
        new = ", ".join(f"case when r.sg_flag then r.c{i} end as n{i}" for i in range(len(self.cols)))
        self.plpy.execute(f"""
            create table pg_temp.{ident(name)} as
            select * from (
                select {existed} as existed, r.sg_flag as present,
                       case when {existed} then {changes.digest(tbl.row_text(live, 'l.'))} end as ho,
                       case when r.sg_flag then {changes.digest(_row_text(self.cols, 'r'))} end as hn,
                       {tbl.select_list(old, new)}
                from {result} r left join {live_source} l on {match}
                offset 0
            ) d where existed <> present or ho is distinct from hn""")
        return changes.Delta(name, self.cols, [self.cols[i] for i in self.key])


class KeylessMerge(_TableMerge):
    """Rows of a table without a primary key, merged as multisets of whole rows."""

    def disjoint_extras(self):
        """The fragments theirs adds to the base's, when both sides' lists extend the base's and no row theirs
        touches is one ours touches (then they apply to ours as they applied to the base); else None."""
        extra_o, extra_t = _extends(self.ours, self.base), _extends(self.theirs, self.base)
        if extra_o is None or extra_t is None:
            return None
        if not extra_o or not extra_t:
            return extra_t
        texts = lambda ids: " union all ".join(  # noqa: E731
            f"select {tbl.row_text(self.cols, 'f.')} as r from {fragments.object_table(o)} f" for o in ids)
        touched = db.scalar(self.plpy, f"select count(*) > 0 from ({texts(extra_o)}) o "
                                       f"join ({texts(extra_t)}) t on t.r = o.r")
        return None if touched else extra_t

    def counts(self):
        """A temporary table of every row whose number of copies the merge changes: sg_r (its text), sg_ours (its
        copies in ours), sg_n (its copies in the merge) and its values (c0..)."""
        sides = [self.materialized(v) for v in (self.base, self.ours, self.theirs)]
        text = tbl.row_text(self.cols, "x.")
        named = ", ".join(f"x.{ident(c.name)} as c{i}" for i, c in enumerate(self.cols))
        counted = " union all ".join(f"select {text} as sg_r, " + ", ".join("1" if j == i else "0" for j in range(3))
                                     + f" from {rel} x" for i, rel in enumerate(sides))
        valued = " union all ".join(f"select {tbl.select_list(f'{text} as sg_r', named)} from {rel} x"
                                    for rel in sides)
        out = self.temp("sg_counts")
        self.fill(out, f"""
            with c as (
                select u.sg_r, sum(u.b)::bigint as nb, sum(u.o)::bigint as no, sum(u.t)::bigint as nt
                from ({counted}) as u (sg_r, b, o, t)
                group by u.sg_r
            ),
            m as (
                select c.sg_r, c.no, case when sign(c.no - c.nb) = sign(c.nt - c.nb)
                                          then c.nb + case when abs(c.no - c.nb) >= abs(c.nt - c.nb)
                                                           then c.no - c.nb else c.nt - c.nb end
                                          else c.no + c.nt - c.nb end as n
                from c
            )
            select {tbl.select_list('m.sg_r, m.no as sg_ours, m.n as sg_n', _positional(self.cols, 'v'))}
            from m
            join (select distinct on (w.sg_r) w.* from ({valued}) w order by w.sg_r) v on v.sg_r = m.sg_r
            where m.n <> m.no""")
        return out

    def delta(self, counts):
        """The merge's changes to ours as a Delta, when every row they change has at most one copy in ours and in
        the merge (a fragment deletes every copy of a row it names); else None."""
        if db.scalar(self.plpy, f"select exists (select from {counts} where sg_ours > 1 or sg_n > 1)"):
            return None
        name = db.temp_name("sg_delta")
        self.merge.made.append(f"pg_temp.{ident(name)}")
        old = ", ".join(f"case when c.sg_ours = 1 then c.c{i} end as o{i}" for i in range(len(self.cols)))
        new = ", ".join(f"case when c.sg_n = 1 then c.c{i} end as n{i}" for i in range(len(self.cols)))
        self.plpy.execute(f"""
            create table pg_temp.{ident(name)} as
            select c.sg_ours = 1 as existed, c.sg_n = 1 as present,
                   case when c.sg_ours = 1 then {changes.digest('c.sg_r')} end as ho,
                   case when c.sg_n = 1 then {changes.digest('c.sg_r')} end as hn,
                   {tbl.select_list(old, new)}
            from {counts} c""")
        return changes.Delta(name, self.cols, [])

    def merged_rows(self, counts):
        """A temporary table of the merge's rows (as the table's columns): ours, with the changed counts."""
        out = self.temp("sg_rows")
        ours = self.materialized(self.ours)
        named = ", ".join(f"c.c{i} as {ident(col.name)}" for i, col in enumerate(self.cols))
        self.fill(out, f"""
            select {tbl.column_list(self.cols, 'o.')} from {ours} o
            where {tbl.row_text(self.cols, 'o.')} not in (select sg_r from {counts})
            union all
            select {named} from {counts} c
            cross join lateral pg_catalog.generate_series(1, c.sg_n) copies""")
        return out


# ---------------------------------------------------------------------------------------------------------------
# A merge of images
# ---------------------------------------------------------------------------------------------------------------

class Decision:
    """What the merge makes of one table: the merged version (a TableVersion, or None when the table is gone),
    or a pending row merge that becomes one (`rows`, with the side whose shape the table takes)."""

    def __init__(self, version=None, rows=None, shape=None):
        self.version, self.rows, self.shape = version, rows, shape


class Merge:
    """The three-way merge of the images `theirs` into `ours` from their common ancestor `base` (None: they have
    none). dry: only the conflicts are wanted (conflicts()); nothing is stored."""

    def __init__(self, plpy, repo, base, ours, theirs, strategy, dry=False):
        self.plpy, self.repo, self.strategy, self.dry = plpy, repo, strategy, dry
        self.versions = [meta.image_tables(plpy, repo, h) if h is not None else {} for h in (base, ours, theirs)]
        self.schema, self.namespace = names.schema_of(repo), names.namespace_of(repo)
        self.made, self.materialized = [], {}
        self.conflicts = f"pg_temp.{ident(db.temp_name('sg_conflicts'))}"
        plpy.execute(f"create table {self.conflicts} ({_CONFLICT_COLUMNS})")

    def drop(self):
        """Drop the scratch tables (the conflict table stays for conflicts() to return)."""
        if self.made:
            self.plpy.execute("drop table if exists " + ", ".join(self.made))
        self.made, self.materialized = [], {}

    def conflict_count(self):
        return db.scalar(self.plpy, f"select count(*) from {self.conflicts}")

    # -- tables ----------------------------------------------------------------------------------------------
    def decide(self):
        """{table: Decision} for every table of the base, ours or theirs; conflicts are recorded."""
        b_all, o_all, t_all = self.versions
        return {name: self.table(name, b_all.get(name), o_all.get(name), t_all.get(name))
                for name in sorted(set(b_all) | set(o_all) | set(t_all))}

    def table_conflict(self, name, b, o, t):
        """A table changed on both sides in ways that do not merge: recorded with a null key and the columns of
        each side (null where it lacks the table); a strategy takes that side's table."""
        db.run(self.plpy, f"""insert into {self.conflicts} (table_name, pk, base, ours, theirs)
                              values ($1, null, $2::jsonb, $3::jsonb, $4::jsonb)""",
               name, *(None if v is None else json.dumps(_columns_json(v)) for v in (b, o, t)))
        return Decision(o if self.strategy == "ours" else t)

    def table(self, name, b, o, t):
        if _same(o, t) or _same(b, t):
            return Decision(o)
        if _same(b, o):
            return Decision(t)
        if o is None or t is None:
            return self.table_conflict(name, b, o, t)
        shapes = _shape(b), _shape(o), _shape(t)
        if shapes[1] == shapes[2] or shapes[2] == shapes[0]:
            shape = o
        elif shapes[1] == shapes[0]:
            shape = t
        else:
            return self.table_conflict(name, b, o, t)
        keys = [None if v is None else tbl.schema_key(v.spec) for v in (b, o, t)]
        if not (keys[1] == keys[2] and keys[0] in (None, keys[1])) and not _reconcilable(b, shape):
            return self.table_conflict(name, b, o, t)
        cols = tbl.as_stored(tbl.from_spec(self.plpy, shape.spec, shape.definition))
        if not tbl.key_columns(cols) and keys[0] not in (None, keys[1]):
            return self.table_conflict(name, b, o, t)  # rows without a key merge in the same columns only
        if tbl.key_columns(cols):
            rows = KeyedMerge(self, name, b, o, t, cols)
            relative = "ours" if tbl.schema_key(shape.spec) == tbl.schema_key(o.spec) else "theirs"
            rows.result, rows.overlap = rows.run(self.strategy, relative)
        elif self.dry:
            return Decision(o)  # rows without a key never conflict
        else:
            rows = KeylessMerge(self, name, b, o, t, cols)
        return Decision(rows=rows, shape=shape)

    def version(self, decision, live_cols=None):
        """The merged TableVersion of a decision, storing the fragment that makes it when one is needed."""
        if decision.rows is None:
            return decision.version
        rows = decision.rows
        o, t, shape = rows.ours, rows.theirs, decision.shape
        spec, definition = shape.spec, _furthest_positions(shape.definition, o, t)
        if isinstance(rows, KeyedMerge):
            extra = _extends(t, rows.base)
            if extra is not None and not rows.overlap and rows.same_schemas:
                return meta.TableVersion(spec, list(o.object_ids) + extra, definition)
            if tbl.schema_key(shape.spec) == tbl.schema_key(o.spec):
                # the merge's changes to ours, whose rows the checkout holds
                delta = rows.against(rows.result, tbl.source(self.plpy, self.schema, rows.table), live_cols)
                return self.with_delta(spec, definition, o, rows.cols, delta)
            # theirs changed the schema: the merge is theirs' rows with ours' changes
            delta = rows.against(rows.result, rows.materialized(t), rows.cols)
            return self.with_delta(spec, definition, t, rows.cols, delta)
        extra = rows.disjoint_extras()
        if extra is not None:
            return meta.TableVersion(spec, list(o.object_ids) + extra, definition)
        counts = rows.counts()
        delta = rows.delta(counts)
        if delta is not None:
            return self.with_delta(spec, definition, o, rows.cols, delta)
        ids = fragments.store_snapshot(self.plpy, None, rows.table, rows.cols, fragments.DEFAULT_CHUNK_SIZE,
                                       self.namespace, source=rows.merged_rows(counts))
        return meta.TableVersion(spec, ids, definition)

    def with_delta(self, spec, definition, ours, cols, delta):
        if not delta.changed(self.plpy):
            return meta.TableVersion(spec, list(ours.object_ids), definition)
        object_id = changes.store_delta(self.plpy, cols, delta, self.namespace)
        return meta.TableVersion(spec, list(ours.object_ids) + [object_id], definition)


# ---------------------------------------------------------------------------------------------------------------
# What the checkout does with each merged table
# ---------------------------------------------------------------------------------------------------------------

def _sequences(merged, ours):
    """[{column, last, descending}]: the sequences of a merged table that must move past where ours left them."""
    moves = []
    for name, column in tbl.definition_columns(merged.definition).items():
        seq = column.get("sequence") if isinstance(column, dict) else None
        last = seq.get("last") if isinstance(seq, dict) else None
        if not isinstance(last, int) or isinstance(last, bool):
            continue
        mine = ((tbl.definition_columns(ours.definition).get(name) or {}).get("sequence") or {}).get("last")
        descending = isinstance(seq.get("increment"), int) and seq["increment"] < 0
        if mine is None or (last < mine if descending else last > mine):
            moves.append({"column": name, "last": last, "descending": descending})
    return moves


def _live_action(plpy, schema, table, ours, merged):
    """What the checkout (ours, with nothing pending) does to become the merge: an entry of the plan."""
    entry = {"table": table, "live": ours is not None, "objects": [], "sequences": []}
    if merged is None:
        entry["action"] = "drop" if ours is not None else "none"
    elif ours is None:
        entry["action"] = "create"
    elif _shape(merged) != _shape(ours):
        entry["action"] = "rebuild"
    else:
        extra = _extends(merged, ours)
        entry["sequences"] = _sequences(merged, ours)
        if extra == []:
            entry["action"] = "keep"
        else:
            entry["action"] = "apply" if extra is not None else "refill"
            ids = extra if extra is not None else list(merged.object_ids)
            entry["objects"] = [{"object_id": o["object_id"], "inserts_only": o["inserts_only"]}
                                for o in fragments.object_rows(plpy, ids)]
            entry["only"] = tbl.source(plpy, schema, table).startswith("only ")
            entry["expected"] = hashing.sub(content_of(plpy, merged.object_ids), content_of(plpy, ours.object_ids))
    return entry


def _strategy(plpy, strategy):
    if strategy is not None and strategy not in STRATEGIES:
        errors.fail(plpy, errors.INVALID_PARAMETER_VALUE, f"unknown merge strategy {strategy!r}",
                    hint="strategy is 'ours' or 'theirs' (each conflict takes that side's), or null (a conflict "
                         "aborts the merge)")
    return strategy


def _transaction(plpy):
    return db.scalar(plpy, "select pg_catalog.pg_current_xact_id()::text")


def _lock(plpy, schema, tables):
    """Lock live tables of the checkout against writers (one still open is waited for); LOCK runs no code."""
    if tables:
        plpy.execute("lock table " + ", ".join(names.qualified(schema, t) for t in sorted(tables))
                     + " in exclusive mode")


def _refuse_conflicts(plpy, merge, repo, source, into):
    count = merge.conflict_count()
    if not count:
        return
    first = db.run(plpy, f"""select table_name, coalesce(pk::text, '(the table)') as pk from {merge.conflicts}
                             order by table_name, pk::text nulls first limit 5""")
    tables = db.column(plpy, f"select distinct table_name from {merge.conflicts} order by 1")
    errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                f'merging "{source}" into {into} of repository "{repo}" meets {count} conflict(s), in table(s) '
                + ", ".join(f'"{t}"' for t in tables[:5]) + (" and more" if len(tables) > 5 else ""),
                detail="; ".join(f'"{r["table_name"]}" {r["pk"]}' for r in first) + (" ..." if count > 5 else ""),
                hint=f"list them with splitgraph.conflicts('{repo}', '{source}'), or merge with strategy => 'ours' "
                     "or 'theirs' to resolve each with that side's; nothing was changed")


@helper("merge_begin(repository text, source text, strategy text) returns jsonb",
        "merge_begin(repository, source, strategy): the first half of merge, for the caller's rights: checks the "
        "caller may write the repository, locks the checkout, refuses pending changes, computes the merge (its "
        "image is made here) and returns what the checkout must do to each table",
        public=True)
def merge_begin(plpy, repository, source, strategy):
    with db.settings(plpy, NO_JIT):
        return _merge_begin(plpy, repository, source, strategy)


def _merge_begin(plpy, repository, source, strategy):
    tracking.require_read_committed(plpy, "merge")
    strategy = _strategy(plpy, strategy)
    repo = meta.writable(plpy, repository)
    state = meta.require_checkout(plpy, repo)
    if state["layered"]:
        errors.fail(plpy, errors.FEATURE_NOT_SUPPORTED,
                    f'repository "{repo}" is checked out as read-only views (layered)',
                    hint="check out the branch to merge into as tables first (layered => false)")
    theirs, _ = meta.resolve(plpy, repo, source)
    ours = state["image_hash"]
    into = f'branch "{state["branch"]}"' if state["branch"] is not None else "HEAD"
    bases = merge_bases(plpy, repo, ours, theirs)
    if theirs in bases:
        db.notice(plpy, f'"{source}" is already merged into {into} of repository "{repo}": nothing to do')
        return json.dumps({"mode": "none", "image_hash": ours})
    schema = names.schema_of(repo)
    live = tbl.list_tables(plpy, schema)
    for table in live:
        tbl.source(plpy, schema, table)  # what the caller may read, and what reads run no code
    _lock(plpy, schema, live)
    changed = pending.changed_tables_of(plpy, repo)
    if changed:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'repository "{repo}" has pending changes in table "{changed[0]}"; commit them or reset them '
                    "before merging", hint="nothing was changed")
    fast_forward = ours in bases
    base = ours if fast_forward else (bases[0] if bases else None)
    if len(bases) > 1:
        db.notice(plpy, f"images {ours[:12]} and {theirs[:12]} have {len(bases)} best common ancestors; merging "
                        f"from the newest, {bases[0][:12]}")
    merge = Merge(plpy, repo, base, ours, theirs, strategy)
    try:
        decisions = merge.decide()
        if strategy is None:
            _refuse_conflicts(plpy, merge, repo, source, into)
        o_all = merge.versions[1]
        merged = {}
        for name, decision in decisions.items():
            live_cols = tbl.columns(plpy, schema, name) if name in live else None
            merged[name] = merge.version(decision, live_cols)
    finally:
        merge.drop()
    if fast_forward:
        target = theirs
    else:
        target = meta.new_image(plpy, repo, ours, f"merge {source} into {into}", merged=theirs)
        for name, version in merged.items():
            if version is not None:
                meta.add_table(plpy, repo, target, name, version.spec, version.object_ids, version.definition)
    plan = [_live_action(plpy, schema, name, o_all.get(name), merged[name]) for name in sorted(merged)]
    plan = [e for e in plan if e["action"] != "none"]
    xid = _transaction(plpy)
    for key in [k for k in _BEGUN if k[0] != xid]:
        del _BEGUN[key]
    _BEGUN[(xid, repo)] = {"ours": ours, "target": target,
                           "tables": {e["table"]: {"action": e["action"], "expected": e.get("expected")}
                                      for e in plan}}
    db.notice(plpy, (f'fast-forward of {into} of repository "{repo}" to {theirs[:12]}' if fast_forward else
                     f'merged "{source}" into {into} of repository "{repo}": image {target[:12]}')
                    + f" ({sum(e['action'] != 'keep' for e in plan)} table(s) change)")
    return json.dumps({"mode": "fast-forward" if fast_forward else "merge", "image_hash": target,
                       "repository": repo, "schema": schema, "tables": plan})


@helper("merge_end(repository text) returns void",
        "merge_end(repository): the second half of merge: moves HEAD (and the branch) to the merge begun in this "
        "transaction, and trusts the change log of each table it wrote only if the table now holds exactly the "
        "merge's rows",
        public=True)
def merge_end(plpy, repository):
    """Finish the merge merge_begin began in this transaction. A table the caller wrote is trusted again (its log
    restarted) only when its logged changes since HEAD sum to exactly the content the merge adds (or, for a table
    whose log cannot say, when its rows hash to the merged version's content): anything else, such as a row a
    trigger of the caller's wrote, stays pending, as the checkout is compared with the merge from then on."""
    with db.settings(plpy, NO_JIT):
        _merge_end(plpy, repository)


def _merge_end(plpy, repository):
    tracking.require_read_committed(plpy, "merge")
    repo = meta.writable(plpy, repository)
    plan = _BEGUN.pop((_transaction(plpy), repo), None)
    if plan is None:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'no merge of repository "{repo}" was begun in this transaction', hint="call splitgraph.merge")
    state = meta.require_checkout(plpy, repo)
    if state["image_hash"] != plan["ours"]:
        errors.fail(plpy, errors.OBJECT_NOT_IN_PREREQUISITE_STATE,
                    f'HEAD of repository "{repo}" moved since the merge began', hint="merge again")
    schema = names.schema_of(repo)
    live = tbl.list_tables(plpy, schema)
    for table in live:
        tbl.source(plpy, schema, table)
    _lock(plpy, schema, live)
    tracked = tracking.schema_tracking(plpy, schema)
    merged = meta.image_tables(plpy, repo, plan["target"])
    for table, entry in sorted(plan["tables"].items()):
        if entry["action"] not in ("apply", "refill") or table not in live:
            if entry["action"] != "keep":
                tracking.untrack(plpy, schema, table)
            continue
        cols = tbl.columns(plpy, schema, table)
        version = merged.get(table)
        t = tracked.get(table)
        if version is None or not tbl.same_schema(version.spec, cols):
            tracking.track(plpy, schema, table, state="lost")
            continue
        if t is not None and t["state"] == "tracking":
            net = changes.net_content_hash(plpy, t, schema, table, cols)
            if net is not None:
                if net == entry["expected"]:
                    tracking.restart(plpy, t)
                else:
                    tracking.track(plpy, schema, table, state="lost")
                continue
        if tracking.comparison_reason(plpy, schema, table, len(cols)) is not None:
            tracking.track(plpy, schema, table)
            continue
        equal = changes.same_content(plpy, tbl.source(plpy, schema, table), cols, version.object_ids)
        tracking.track(plpy, schema, table, state="tracking" if equal else "lost")
    meta.move_head(plpy, repo, state, plan["target"])


def _apply(plpy, target, cols, objects, only):
    """Apply fragments to a checkout's table as its caller (reading them through fragment_rows): as
    fragments.apply_to_table does, but a row the fragment changes is UPDATEd in place, not deleted and inserted
    again (one pass over the changed rows; the caller's update triggers see an update). A table with a column
    GENERATED ALWAYS AS IDENTITY, or without a primary key, takes the fragments as a checkout does."""
    key = tbl.key_columns(cols)
    written = [c for c in cols if not c.generated]
    if not key or any(c.identity == "a" for c in written):
        fragments.apply_to_table(plpy, target, cols, objects, as_caller=True, only=only)
        return
    insert, _ = fragments.insert_into(target, cols)
    match = " and ".join(f"t.{ident(c.name)} = {c.restored('f.' + ident(c.name))}" for c in key)
    changed = [c for c in written if not c.is_pk]
    scope = "only " if only else ""
    for entry in objects:
        source = fragments.object_source(entry["object_id"], cols, "f", as_caller=True)
        if entry["inserts_only"]:
            plpy.execute(f"{insert} select {fragments.restored_list(written, 'f.')} from {source}")
            continue
        keys = tbl.column_list(key, "t.")
        values = ", ".join(c.restored(f"f.{ident(c.name)}") for c in changed)
        updated, fresh = "", f"({tbl.column_list(key, 'f.')}) not in (select {tbl.column_list(key)} from u)"
        if not changed:
            fresh = f"not exists (select from {scope}{target} t where {match})"
        if changed:
            updated = f"""u as (update {scope}{target} t
                                set ({tbl.column_list(changed)}) = row({values})
                                from f where {match} and f.{FLAG_COLUMN} returning {keys}),"""
        plpy.execute(f"""
            with f as materialized (select * from {source}),
                 {updated}
                 d as (delete from {scope}{target} t using f where {match} and not f.{FLAG_COLUMN})
            {insert} select {fragments.restored_list(written, 'f.')} from f
            where f.{FLAG_COLUMN} and {fresh}""")


@api("merge(repository text, source text, strategy text default null) returns text",
     "merge(repository, source, strategy): merge a branch, tag or image into the checkout's branch (three-way, "
     "from the common ancestor: rows by primary key, cell by cell; rows of tables without one as multisets) and "
     "return the new image, or the source's when the branch fast-forwards to it; a conflict aborts the merge "
     "unless strategy is 'ours' or 'theirs'; pending changes are refused",
     security="invoker")
def merge(plpy, repository, source, strategy=None):
    """Merge as the caller: the extension computes the merge and makes its image (merge_begin); the checkout's
    tables take the merge's fragments here, written with the caller's rights (the caller's triggers, checks and
    index expressions run as the caller); merge_end moves HEAD and trusts the logs it can verify; tables made
    anew are materialized as a checkout makes them. Foreign keys are checked once everything is merged."""
    tracking.require_read_committed(plpy, "merge")
    plan = json.loads(db.scalar(plpy, "select splitgraph_internal.merge_begin($1, $2, $3)::text",
                                repository, source, strategy))
    if plan["mode"] == "none":
        return plan["image_hash"]
    schema = plan["schema"]
    touched = [e["table"] for e in plan["tables"] if e["live"] and e["action"] != "keep"]
    deferred = checkout.defer_foreign_keys(plpy, schema, touched)
    made = []
    for entry in plan["tables"]:
        table, action = entry["table"], entry["action"]
        target = names.qualified(schema, table)
        if action in ("apply", "refill"):
            if action == "refill":
                plpy.execute(f"delete from {'only ' if entry['only'] else ''}{target}")
            _apply(plpy, target, tbl.columns(plpy, schema, table), entry["objects"], entry["only"])
        elif action in ("drop", "rebuild"):
            plpy.execute(f"drop table {target} cascade")
        if action in ("rebuild", "create"):
            made.append(table)
        for seq in entry["sequences"]:
            pick = "least" if seq["descending"] else "greatest"
            db.run(plpy, f"""select pg_catalog.setval(s.seq, {pick}($3::bigint, coalesce(
                                        pg_catalog.pg_sequence_last_value(s.seq::pg_catalog.regclass), $3::bigint)))
                             from (select pg_catalog.pg_get_serial_sequence($1, $2) as seq) s
                             where s.seq is not null""", target, seq["column"], seq["last"])
    checkout.check_foreign_keys(plpy, deferred)
    db.run(plpy, "select splitgraph_internal.merge_end($1)", repository)
    if made:
        checkout.materialize_new(plpy, plan["repository"], made)
    return plan["image_hash"]


@api("conflicts(repository text, source text) returns table (table_name text, pk jsonb, base jsonb, ours jsonb, "
     "theirs jsonb)",
     "conflicts(repository, source): what merging source into the checkout's HEAD would conflict on, without "
     "merging: per row its key and its values in the base, ours and theirs (null where it is absent); a table "
     "that does not merge has a null key and each side's columns",
     rows="temp")
def conflicts(plpy, repository, source):
    with db.settings(plpy, NO_JIT):
        return _conflicts(plpy, repository, source)


def _conflicts(plpy, repository, source):
    repo = meta.require(plpy, repository)
    ours = meta.require_checkout(plpy, repo)["image_hash"]
    theirs, _ = meta.resolve(plpy, repo, source)
    bases = merge_bases(plpy, repo, ours, theirs)
    name = db.temp_name("sg_conflicts")
    if theirs in bases or ours in bases:
        plpy.execute(f"create table pg_temp.{ident(name)} ({_CONFLICT_COLUMNS})")
        return name
    merge = Merge(plpy, repo, bases[0] if bases else None, ours, theirs, None, dry=True)
    try:
        merge.decide()
    finally:
        merge.drop()
    plpy.execute(f"""create table pg_temp.{ident(name)} as select * from {merge.conflicts}
                     order by table_name, pk nulls first;
                     drop table {merge.conflicts}""")
    return name
