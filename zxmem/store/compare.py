"""Two samples of one store compared in the store: what ``zxmem diff`` needs
of their memory objects without replaying either.

A versioned row is valid from sample ``first`` to ``last``: a row valid at
both samples is the same object with the same values in both, so only the
rows valid at exactly one of them can make a difference.  :func:`object_indexes`
reads those, and the other rows of the groups they belong to (an anonymous
object counts in the sum of its owner's objects of its kind and name), and
returns what :func:`zxmem.views.diff.index` returns for ``"object"``, limited
to the keys that may differ: :func:`zxmem.views.diff.compare` of the two gives
the same changes as of the whole indexes (a key left out is in both with the
same value, which compare leaves out too).

It rests on how the writer keys anonymous objects: by owner (the first
process, in PID order, that reaches the object: the order of a collected
snapshot, and the order :func:`zxmem.views.diff.index` looks in), name and
ordinal.  When an object may have been kept by koid despite having an owner
(a key that did not fit, see :func:`zxmem.store.writer.anon_key`), the owner
is not in the row and :func:`object_indexes` returns None: the caller reads
both samples whole.
"""

from __future__ import annotations

import sqlite3

from zxmem.model import INODE_KOID_BASE
from zxmem.store.schema import read_span, span_of
from zxmem.store.writer import OBJECTS, OWNER_SHIFT, read_strings

# anon_vmos' entity: owner << OWNER_SHIFT | name id << 16 | ordinal.
_GROUP_SHIFT = 16
_ORDINAL_MASK = (1 << _GROUP_SHIFT) - 1
_OWNER_LIMIT = 1 << (63 - OWNER_SHIFT)  # anon_key's bound on the owner (23 bits)
_NAME_LIMIT = 1 << (OWNER_SHIFT - _GROUP_SHIFT)  # ... and on the name id (24 bits)

# Up to this many (owner, name) groups are named in a query.
_LISTED_GROUPS = 2000

Index = dict[tuple, tuple[str, str, int]]


def _u64(value: int) -> int:
    """A koid column (SQLite's signed integer) as the unsigned koid."""
    return value + (1 << 64) if value < 0 else value


def _valid(table: str, n: int, span: int) -> str:
    """The SQL condition: a row of ``table`` valid at sample ``n``."""
    low = n - span_of(table, span)
    return f"(first > {low} AND first <= {n} AND (last IS NULL OR last >= {n}))"


def has_objects(conn: sqlite3.Connection, n: int) -> bool:
    """Whether sample ``n`` holds memory objects (what a replay's ``vmos``
    would hold: an objects sample with at least one object)."""
    row = conn.execute("SELECT tier FROM samples WHERE n = ?", (n,)).fetchone()
    if row is None or row[0] != OBJECTS:
        return False
    span = read_span(conn)
    return any(conn.execute(f"SELECT 1 FROM {table} WHERE {_valid(table, n, span)} LIMIT 1")
               .fetchone() for table in ("vmos", "anon_vmos"))


class _Names:
    """Strings and process identities by id, fetched in batches."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.text: dict[int, str] = {}
        self.procs: dict[int, tuple[str | None, int, int | None]] = {}

    def fill(self, ids: set[int]) -> None:
        want = sorted(i for i in ids if i not in self.text)
        self.text.update(read_strings(self.conn, want))

    def fill_procs(self, ents: set[int]) -> None:
        want = sorted(e for e in ents if e not in self.procs)
        boots: dict[int, int | None] = {}
        for start in range(0, len(want), 500):
            chunk = want[start:start + 500]
            q = ",".join("?" * len(chunk))
            for i, boot, pid, st in self.conn.execute(
                    f"SELECT id, boot, pid, start FROM procs WHERE id IN ({q})", chunk):
                boots[i] = boot
                self.procs[i] = (None, pid, st)
        self.fill({b for b in boots.values() if b is not None})
        for i, boot in boots.items():
            _none, pid, st = self.procs[i]
            self.procs[i] = (None if boot is None else self.text[boot], pid, st)

    def opt(self, i: int | None) -> str | None:
        return None if i is None else self.text[i]


def object_indexes(conn: sqlite3.Connection, a: int, b: int) -> tuple[Index, Index] | None:
    """The object indexes of samples ``a`` and ``b`` (both objects samples)
    for every key whose value may differ between them; None when the store
    cannot say who owns an object (read both samples whole then)."""
    span = read_span(conn)
    names = _Names(conn)
    # Objects by koid: few (files and shared memory, and what no process
    # reaches), read whole at both samples.
    by_koid = {}
    for n in (a, b):
        by_koid[n] = conn.execute(
            f"SELECT ent, name, kind, committed, path FROM vmos WHERE {_valid('vmos', n, span)}"
        ).fetchall()
    unowned = [r for rows in by_koid.values() for r in rows if _u64(r[0]) < INODE_KOID_BASE]
    if unowned and not _unowned_for_sure(conn, unowned, a, b, span):
        return None
    # Anonymous objects: the groups (owner, name) with a row valid at one
    # sample only, then every row of those groups at each sample.
    groups = {ent >> _GROUP_SHIFT for ent in _changed(conn, "anon_vmos", a, b, span)}
    anon: dict[int, list[tuple]] = {a: [], b: []}
    if groups:
        # Few groups are named in the query, many are picked from every row.
        listed = ",".join(str(int(g)) for g in sorted(groups)) \
            if len(groups) <= _LISTED_GROUPS else None
        for n in (a, b):
            # A scan of the table: in the order of its pages, no index lookups.
            sql = (f"SELECT ent, name, kind, committed FROM anon_vmos NOT INDEXED WHERE "
                   f"{_valid('anon_vmos', n, span)}")
            if listed is not None:
                sql += f" AND (ent >> {_GROUP_SHIFT}) IN ({listed})"
            anon[n] = [r for r in conn.execute(sql) if r[0] >> _GROUP_SHIFT in groups]
    ids = {x for rows in by_koid.values() for r in rows for x in (r[1], r[2], r[4])
           if x is not None}
    ids |= {x for rows in anon.values() for r in rows for x in (r[1], r[2]) if x is not None}
    names.fill(ids)
    names.fill_procs({r[0] >> OWNER_SHIFT for rows in anon.values() for r in rows})
    return (_index(by_koid[a], anon[a], names), _index(by_koid[b], anon[b], names))


def _changed(conn: sqlite3.Connection, table: str, a: int, b: int, span: int) -> list[int]:
    """The entities of the rows of ``table`` valid at one of samples ``a``
    and ``b`` only."""
    lo, hi = min(a, b), max(a, b)
    low = span_of(table, span)
    # Valid at lo and not at hi: closed in between (or past hi's span): a
    # scan of the table (there is no index on last).
    closed = conn.execute(f"SELECT ent FROM {table} NOT INDEXED WHERE {_valid(table, lo, span)} "
                          f"AND NOT {_valid(table, hi, span)}").fetchall()
    # Valid at hi and not at lo: opened after lo (a range of the index on
    # first; a row valid at hi that opened before lo is valid at lo).
    opened = conn.execute(
        f"SELECT ent FROM {table} WHERE first > {max(lo, hi - low)} AND first <= {hi} "
        f"AND (last IS NULL OR last >= {hi})").fetchall()
    return [ent for (ent,) in closed] + [ent for (ent,) in opened]


def _unowned_for_sure(conn: sqlite3.Connection, rows: list[tuple], a: int, b: int,
                      span: int) -> bool:
    """Whether the anonymous objects kept by koid are reached by no process:
    the writer keeps an owned one by koid only when its key does not fit
    (an owner id, a name id or an ordinal past its bits)."""
    if any(r[1] >= _NAME_LIMIT for r in rows):
        return False
    top = conn.execute("SELECT max(id) FROM procs").fetchone()[0] or 0
    if top >= _OWNER_LIMIT:
        return False
    for n in (a, b):
        if conn.execute(f"SELECT 1 FROM anon_vmos WHERE {_valid('anon_vmos', n, span)} "
                        f"AND (ent & {_ORDINAL_MASK}) = {_ORDINAL_MASK} LIMIT 1").fetchone():
            return False
    return True


def _index(by_koid: list[tuple], anon: list[tuple], names: _Names) -> Index:
    """:func:`zxmem.views.diff.index` (``"object"``) of these rows."""
    out: Index = {}

    def add(key: tuple, label: str, name: str, committed: int) -> None:
        prev = out.get(key)
        out[key] = (label, name, committed + (prev[2] if prev else 0))

    for ent, name_id, kind, committed, path in by_koid:
        if committed is None:
            continue
        koid = _u64(ent)
        name = names.text[name_id]
        if koid >= INODE_KOID_BASE:
            out[("koid", koid)] = (f"o:{koid}", names.opt(path) or name, committed)
        else:
            add(("anon", None, names.opt(kind), name), "-", name, committed)
    for ent, name_id, kind, committed in anon:
        if committed is None:
            continue
        ident = names.procs[ent >> OWNER_SHIFT]
        name = names.text[name_id]
        add(("anon", ident, names.opt(kind), name), f"p:{ident[1]}", name, committed)
    return out
