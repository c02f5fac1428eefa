"""Series for :mod:`zxmem.growth` from the history store (all of growth's SQL).

The store keeps *versioned rows* (:mod:`zxmem.store.schema`): a row holds a
value from sample ``first`` to ``last``.  A day of 10 s samples is 8,640
samples; a series is at most ``max_points`` points, each a *bucket* of
consecutive samples.  A day of 1,000 processes is about 1.7 million rows,
so a table is read once, without expanding a row into its samples:

* one query returns each column of the rows valid in the period as one
  comma-separated text (``group_concat``), parsed by numpy (a million rows
  as Python tuples cost several times SQLite's scan; a ``GROUP BY`` per
  (entity, bucket) sorts them all, and the store has no index on entity);
  a large table is read as two halves on two connections at once;
* numpy places each row in the bucket of its first sample in the period
  and in each later bucket it reaches (an entity's rows follow each other),
  and keeps the lowest and highest value of each (entity, bucket).

A point's value is the lowest value of its bucket (``Series.uss``; a leak
shows in the lowest values) and the highest in ``Series.uss_high`` (the
high-water mark); its time is the mean time of the bucket's samples.  With no
more samples than ``max_points`` a bucket is one sample and the points are
the samples.

Object series (memory objects of a process) exist only at objects-tier
samples and are read only for the processes asked for
(:func:`load_objects`): a process's anonymous objects are keyed by the store
by owner, name and ordinal; the file-backed ones (memfd, shmem, tmpfs and
regular files) it reaches are found through its references.  An object's
name, kind, path and mappings are those of its newest row, read by rowid
(the open rows) or by first sample (the objects gone before the end), not
with every row.

Everything here reads SQL; the store's layout is :mod:`zxmem.store.schema`'s.
"""

from __future__ import annotations

import os
import sqlite3
import threading
import warnings
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, replace
from hashlib import blake2b
from zlib import error as zlib_error

import numpy as np

from zxmem.growth import Series
from zxmem.model import INODE_KOID_BASE
from zxmem.store.blobs import absolute_refs
from zxmem.store.reader import format_time
from zxmem.store.schema import StoreError, open_store, read_span, span_of
from zxmem.store.writer import OBJECTS, OWNER_SHIFT, read_strings, s64, u64

BY = ("process", "job", "object")
DEFAULT_MAX_POINTS = 120


@dataclass(frozen=True)
class Period:
    """The samples looked at: numbers ``n0``..``n1``, their times, buckets."""

    n0: int
    n1: int
    times_ns: tuple[int, ...]  # of samples n0..n1 (missing numbers left out)
    numbers: tuple[int, ...]
    buckets: int

    @property
    def size(self) -> int:
        return self.n1 - self.n0 + 1

    def bucket(self, n: int) -> int:
        return (n - self.n0) * self.buckets // self.size

    def bucket_times(self) -> list[int]:
        sums = [0] * self.buckets
        counts = [0] * self.buckets
        for n, t in zip(self.numbers, self.times_ns, strict=True):
            b = self.bucket(n)
            sums[b] += t
            counts[b] += 1
        return [s // c if c else -1 for s, c in zip(sums, counts, strict=True)]


def period(conn: sqlite3.Connection, since_ns: int | None, max_points: int) -> Period | None:
    rows = conn.execute("SELECT n, time_ns FROM samples WHERE time_ns >= ? ORDER BY n",
                        (since_ns if since_ns is not None else -(1 << 62),)).fetchall()
    if not rows:
        return None
    n0, n1 = rows[0][0], rows[-1][0]
    return Period(n0=n0, n1=n1, numbers=tuple(r[0] for r in rows),
                  times_ns=tuple(r[1] for r in rows),
                  buckets=max(1, min(max_points, n1 - n0 + 1)))


class _Strings:
    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.cache: dict[int, str] = {}

    def fill(self, ids: Iterable[int | None]) -> None:
        want = sorted({i for i in ids if i is not None and i not in self.cache})
        self.cache.update(read_strings(self.conn, want))

    def get(self, i: int | None, default: str = "") -> str:
        return default if i is None else self.cache.get(i, default)


@dataclass(frozen=True)
class Dense:
    """Bucketed values of many entities: ``lo``/``hi`` of shape (entities,
    buckets, columns), NaN where unknown; ``present`` where the entity has a
    row (known or not)."""

    ents: np.ndarray
    lo: np.ndarray
    hi: np.ndarray
    present: np.ndarray

    def points(self, i: int) -> tuple[list[int], list[list[int | None]], list[list[int | None]]]:
        """Entity i's buckets, and per column its lows and highs."""
        where = np.nonzero(self.present[i])[0]
        lows = [_ints(self.lo[i, where, k]) for k in range(self.lo.shape[2])]
        highs = [_ints(self.hi[i, where, k]) for k in range(self.hi.shape[2])]
        return where.tolist(), lows, highs

    def every_point(self) -> list[tuple[list[int], list[list[int | None]],
                                        list[list[int | None]]]]:
        """:meth:`points` of every entity, in order: an entity with a known
        value in every bucket (most) is converted as a whole row."""
        nb, nc = self.present.shape[1], self.lo.shape[2]
        full = (self.present.all(axis=1) & ~np.isnan(self.lo).any(axis=(1, 2))
                & ~np.isnan(self.hi).any(axis=(1, 2))).tolist()
        lo = [np.nan_to_num(self.lo[:, :, k]).astype(np.int64).tolist() for k in range(nc)]
        hi = [np.nan_to_num(self.hi[:, :, k]).astype(np.int64).tolist() for k in range(nc)]
        every = list(range(nb))
        return [(list(every), [c[i] for c in lo], [c[i] for c in hi]) if full[i]
                else self.points(i) for i in range(len(full))]


def _ints(a: np.ndarray) -> list[int | None]:
    return [None if x != x else int(x) for x in a.tolist()]


# Tables of more rows than this are read in two halves at once (two
# connections: SQLite does the work of a query without Python's lock).
SPLIT_ROWS = 200_000


def _columns(conn: sqlite3.Connection, table: str, cols: Sequence[str], p: Period,
             span: int, where: str = "", open_rowids: bool = False) -> list[np.ndarray]:
    """``ent``, ``first``, ``last`` (``p.n1`` for an open row) and each of
    ``cols`` (-1 for NULL: no size is negative; a negative value, which
    only a damaged store holds, reads as unknown) of the rows of ``table``
    valid at some sample of the period (and meeting ``where``, an SQL
    condition: ``AND ...``), as int64 arrays in the same order.

    Each column comes back as one text of comma-separated numbers
    (``group_concat``, parsed by numpy): a million rows as Python tuples
    cost several times the scan itself.  The aggregates of one query see the
    rows in one order, so the columns line up.  Over the whole store the
    table is scanned in its own order and the window checked here (a scan
    of the index on ``first`` visits each row through the index); over a
    later part of it, that index bounds the scan.  A large table read whole
    is read as two halves (by rowid) on two connections at once.

    With ``open_rowids``, one more array: the rowids of the open rows
    (``last`` NULL) among them, in no particular order."""
    exprs = ["ent", "first", "ifnull(last, ?2)"] + [f"ifnull({c}, -1)" for c in cols]
    if open_rowids:
        # (group_concat leaves NULL out: only the open rows' rowids.)
        exprs.append("CASE WHEN last IS NULL AND first <= ?2 THEN rowid END")
    # Three subqueries: SQLite answers a lone min() or max() from an index
    # (or the rowid's b-tree) at once, but scans the table for several.
    lowest, a, b = conn.execute(
        f"SELECT (SELECT min(first) FROM {table}), (SELECT min(rowid) FROM {table}), "
        f"(SELECT max(rowid) FROM {table})").fetchone()
    if lowest is None:
        return [np.zeros(0, dtype=np.int64) for _ in exprs]
    whole = lowest > p.n0 - span
    if whole:
        # (The period's parameters are bound in both forms; here they are unused.)
        cond = "rowid >= ?4 AND rowid <= ?5 AND ?1 + ?2 + ?3 NOT NULL"
    else:
        cond = ("first > ?1 - ?3 AND first <= ?2 AND (last IS NULL OR last >= ?1) "
                "AND first >= ?4 AND first <= ?5")
        a, b = p.n0 - span + 1, p.n1
    sql = (f"SELECT {', '.join(f'group_concat({e})' for e in exprs)} FROM {table} "
           f"WHERE {cond} {where}")
    params = (p.n0, p.n1, span)
    path = _path(conn)
    if b - a > SPLIT_ROWS and whole and path is not None and (os.cpu_count() or 1) > 1:
        parts = _two_halves(conn, path, sql, params, a, b)
    else:
        parts = [conn.execute(sql, (*params, a, b)).fetchone()]
    out = [_parse(table, [part[k] for part in parts]) for k in range(len(exprs))]
    extra = [out.pop()] if open_rowids else []
    if len({len(x) for x in out}) != 1:
        raise sqlite3.DatabaseError(f"{table}: a value that is not an integer")
    if whole:
        first, last = out[1], out[2]
        keep = (first > p.n0 - span) & (first <= p.n1) & (last >= p.n0)
        if not keep.all():
            out = [x[keep] for x in out]
    return out + extra


def _two_halves(conn: sqlite3.Connection, path: str, sql: str, params: tuple[int, ...],
                a: int, b: int) -> list[tuple[str | None, ...]]:
    """The row of ``sql`` over rowids ``a``..``mid`` (on ``conn``) and
    ``mid + 1``..``b`` (on a second connection to ``path``, in a thread) at
    once; the second half on ``conn`` if that connection fails."""
    mid = (a + b) // 2
    other: list[tuple[str | None, ...]] = []
    failed: list[BaseException] = []

    def second_half() -> None:
        try:
            c2 = open_read(path)
            try:
                other.append(c2.execute(sql, (*params, mid + 1, b)).fetchone())
            finally:
                c2.close()
        except (sqlite3.Error, StoreError) as exc:
            failed.append(exc)

    t = threading.Thread(target=second_half, name="zxmem-growth-read")
    t.start()
    try:
        first = conn.execute(sql, (*params, a, mid)).fetchone()
    finally:
        t.join()
    if failed or not other:
        return [first, conn.execute(sql, (*params, mid + 1, b)).fetchone()]
    return [first, other[0]]


def _path(conn: sqlite3.Connection) -> str | None:
    """The file of the store ``conn`` reads (None: not a file)."""
    for _seq, name, file in conn.execute("PRAGMA database_list"):
        if name == "main":
            return str(file) or None
    return None


def _parse(table: str, texts: Sequence[str | None]) -> np.ndarray:
    """The integers of comma-separated texts (None: no rows), one array."""
    arrays = []
    with warnings.catch_warnings():
        # numpy warns (DeprecationWarning) where a text does not parse to
        # its end: a value that is not an integer.
        warnings.simplefilter("error")
        for text in texts:
            if text is None:
                continue
            try:
                arrays.append(np.fromstring(text, dtype=np.int64, sep=","))
            except (DeprecationWarning, ValueError, TypeError):
                raise sqlite3.DatabaseError(
                    f"{table}: a value that is not an integer") from None
    return np.concatenate(arrays) if arrays else np.zeros(0, dtype=np.int64)


def _index(ent: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct entities (ascending) and each row's index among them."""
    if len(ent) and int(ent.min()) >= 0 and int(ent.max()) < (1 << 24):
        # Small ids (process and job entities): a table lookup, not a sort.
        seen = np.zeros(int(ent.max()) + 1, dtype=bool)
        seen[ent] = True
        ents = np.flatnonzero(seen)
        where = np.cumsum(seen) - 1
        return ents.astype(np.int64), where[ent]
    ents, inverse = np.unique(ent, return_inverse=True)
    return ents.astype(np.int64), inverse.reshape(-1)


def _bucketed(conn: sqlite3.Connection, table: str, cols: Sequence[str], p: Period,
              span: int) -> Dense:
    """The lowest and highest value of each column per (entity, bucket),
    over the rows of ``table`` valid at some sample of the period.

    A row's value holds in every bucket from that of its first sample in
    the period (``max(first, n0)``) to that of its last (``min(last, n1)``);
    the rows are read once (:func:`_columns`) and spread over the buckets
    they reach with numpy.  Unknown (NULL) values are left out of a
    bucket's lowest and highest (NaN: none known); ``present`` is where the
    entity has a row, known or not."""
    nb, size = p.buckets, p.size
    ent, first, last, *vals = _columns(conn, table, cols, p, span)
    b0 = (np.maximum(first, p.n0) - p.n0) * nb // size
    b1 = (np.minimum(last, p.n1) - p.n0) * nb // size
    return _spread(ent, b0, b1, vals, nb)


def _spread(ent: np.ndarray, b0: np.ndarray, b1: np.ndarray, vals: Sequence[np.ndarray],
            nb: int) -> Dense:
    """Rows (entity, first and last bucket, values: -1 unknown) as the
    lowest and highest known value of each (entity, bucket)."""
    nc = len(vals)
    ents, ei = _index(ent)
    # A row counts in the bucket it starts in and, if it lasts longer, in
    # each later one it reaches (those rows, a few in a hundred, repeated).
    cell = ei * nb + b0
    rep = np.flatnonzero(b1 > b0)
    if len(rep):
        more = (b1 - b0)[rep]
        rep = np.repeat(rep, more)
        step = np.arange(1, len(rep) + 1) - np.repeat(np.cumsum(more) - more, more)
        cell = np.concatenate((cell, cell[rep] + step))
    lo = np.full((len(ents) * nb, nc), np.nan)
    hi = np.full((len(ents) * nb, nc), np.nan)
    present = np.zeros(len(ents) * nb, dtype=bool)
    present[cell] = True
    for k, v in enumerate(vals):
        x = np.where(v < 0, np.nan, v.astype(np.float64))
        if len(rep):
            x = np.concatenate((x, x[rep]))
        col_lo = np.full(len(ents) * nb, np.nan)
        col_hi = np.full(len(ents) * nb, np.nan)
        np.fmin.at(col_lo, cell, x)
        np.fmax.at(col_hi, cell, x)
        lo[:, k], hi[:, k] = col_lo, col_hi
    return Dense(ents=ents, lo=lo.reshape(len(ents), nb, nc),
                 hi=hi.reshape(len(ents), nb, nc), present=present.reshape(len(ents), nb))


def open_read(store_path: str) -> sqlite3.Connection:
    return open_store(store_path, create=False, readonly=True)


def load_series(store_path: str, *, since_ns: int | None = None, by: str = "process",
                max_points: int = DEFAULT_MAX_POINTS, objects_of: Iterable[str] = ()
                ) -> list[Series]:
    """The series of every process (``by='process'``), job or memory object
    with a sample at or after ``since_ns`` (None: every sample).  Processes
    whose key is in ``objects_of`` come with the series of their objects.
    A :class:`StoreError` (one line) for a store that cannot be read."""
    if by not in BY:
        raise ValueError(f"by must be one of {', '.join(BY)}")
    conn = open_read(store_path)
    try:
        p = period(conn, since_ns, max_points)
        if p is None:
            return []
        if by == "process":
            out = _processes(conn, p)
            want = set(objects_of)
            if want:
                objs = _objects(conn, p, [s for s in out if s.key in want], max_points)
                out = [replace(s, objects=tuple(objs.get(s.key, ()))) if s.key in want else s
                       for s in out]
            return out
        if by == "job":
            return _jobs(conn, p)
        return _all_objects(conn, p, max_points)
    except sqlite3.Error as exc:
        raise StoreError(f"{store_path}: cannot read the store: {exc}") from None
    finally:
        conn.close()


def proc_key(ent: int) -> str:
    return f"process:{ent}"


def _proc_names(conn: sqlite3.Connection, p: Period, span: int
                ) -> dict[int, tuple[int, int, int | None]]:
    """ent -> (name id, job koid, start ticks) from its newest info row."""
    rows = conn.execute(
        "SELECT ent, max(first), name, job FROM proc_info "
        "WHERE first > ?1 - ?3 AND first <= ?2 AND (last IS NULL OR last >= ?1) GROUP BY ent",
        (p.n0, p.n1, span)).fetchall()
    return {r[0]: (r[2], r[3], None) for r in rows}


def _processes(conn: sqlite3.Connection, p: Period) -> list[Series]:
    span = read_span(conn)
    dense = _bucketed(conn, "proc_mem", ("private", "pss"), p, span)
    info = _proc_names(conn, p, span)
    strings = _Strings(conn)
    strings.fill(v[0] for v in info.values())
    pids = dict(((i, (pid, start)) for i, pid, start in conn.execute(
        "SELECT id, pid, start FROM procs")))
    times = p.bucket_times()
    held = _held(conn, p, span)
    out = []
    for ent, (buckets, lows, highs) in zip(dense.ents.tolist(), dense.every_point(),
                                           strict=True):
        name_id, job, _ = info.get(ent, (None, None, None))
        pid, start = pids.get(ent, (None, None))
        uss, high = lows[0], highs[0]
        h = held.get(ent)
        if h is not None:
            # Before its first objects sample what it holds is unknown.
            add = [h.get(b, _UNKNOWN) for b in buckets]
            uss = [None if x is None or y is None else x + y for x, y in zip(uss, add, strict=True)]
            high = [None if x is None or y is None else x + y
                    for x, y in zip(high, add, strict=True)]
        out.append(Series(
            key=proc_key(ent), kind="process", name=strings.get(name_id),
            identity={"pid": pid, "start_ticks": start,
                      "job_koid": u64(job) if job is not None else None},
            times_ns=[times[b] for b in buckets], uss=uss, uss_high=high, pss=lows[1]))
    return out


_UNKNOWN: None = None


HIDDEN_KINDS = ("memfd", "shmem", "sysv", "dmabuf")


def _held(conn: sqlite3.Connection, p: Period, span: int) -> dict[int, dict[int, int | None]]:
    """Process entity -> bucket -> bytes of the hidden objects (mapped by no
    process: a memfd, shmem file or dma-buf kept alive by a descriptor) that
    only its descriptors hold: memory only it keeps alive, which its USS does
    not count.  Known at objects samples; a bucket takes the value of its
    newest objects sample, a bucket without one that of the previous objects
    sample (the descriptor is still held)."""
    obj = [n for (n,) in conn.execute("SELECT n FROM samples WHERE n >= ? AND n <= ? "
                                      "AND tier = ? ORDER BY n", (p.n0, p.n1, OBJECTS))]
    if not obj:
        return {}
    span = span_of("vmos", span)  # vmos and vmo_refs are objects tables
    objs = _hidden_objects(conn, p, span)
    if not objs:
        return {}
    holds = _holds(conn, p, span, {u64(r[0]) for r in objs})
    # A bucket takes the value of its newest objects sample: only those are
    # summed (every sample still says who holds something alone).
    buckets = [p.bucket(n) for n in obj]
    newest = [i + 1 == len(obj) or buckets[i + 1] != b for i, b in enumerate(buckets)]
    owners, per_sample = _held_at(obj, holds, objs, newest)
    return _carried([(b, per) for b, per, last in zip(buckets, per_sample, newest, strict=True)
                     if last], p.buckets, owners)


def _held_at(obj: Sequence[int], holds: Sequence[tuple[int, int, int, int]],
             objs: Sequence[tuple[int, int, int | None, int | None]], wanted: Sequence[bool]
             ) -> tuple[set[int], list[dict[int, int | None]]]:
    """The processes that alone hold one of the objects ``objs`` ((koid,
    first, last, bytes)) valid at some objects sample of ``obj`` (ascending;
    ``holds``: (process, first, last, koid)); and at each sample (``wanted``
    ones only; the others empty), process -> the bytes of the objects it
    alone holds then, None if one of them is unknown.

    Rows become (row, sample) pairs with numpy (a row holds at the samples
    from its first to its last, found by binary search): an object held by
    several processes (or none) at a sample is left out there."""
    n = np.asarray(obj, dtype=np.int64)
    count = len(n)
    out: list[dict[int, int | None]] = [{} for _ in range(count)]
    ids: dict[int, int] = {}  # koid -> small id
    hs = sorted(set(holds))
    if not hs or not objs:
        return set(), out
    h_ent, h_a, h_b = (np.array([h[i] for h in hs], dtype=np.int64) for i in range(3))
    h_kid = np.array([ids.setdefault(h[3], len(ids)) for h in hs], dtype=np.int64)
    row, at = _expand(np.searchsorted(n, h_a, "left"), np.searchsorted(n, h_b, "right"))
    # Distinct (koid, sample, holder), sorted; then per (koid, sample) how
    # many hold it, and the first (the only one where one does).
    c, e = h_kid[row] * count + at, h_ent[row]
    if not len(c):
        return set(), out
    order = np.lexsort((e, c))
    c, e = c[order], e[order]
    distinct = np.append(True, (c[1:] != c[:-1]) | (e[1:] != e[:-1]))
    c, e = c[distinct], e[distinct]
    first_at = np.flatnonzero(np.append(True, c[1:] != c[:-1]))
    cells, sole = c[first_at], e[first_at]
    holders = np.diff(np.append(first_at, len(c)))
    o_kid = np.array([ids.get(u64(k) or 0, -1) for k, *_ in objs], dtype=np.int64)
    o_a = np.array([r[1] for r in objs], dtype=np.int64)
    o_b = np.array([n[-1] if r[2] is None else r[2] for r in objs], dtype=np.int64)
    row, at = _expand(np.searchsorted(n, o_a, "left"), np.searchsorted(n, o_b, "right"))
    cell = o_kid[row] * count + at
    i = np.minimum(np.searchsorted(cells, cell), len(cells) - 1)
    mine = (o_kid[row] >= 0) & (cells[i] == cell) & (holders[i] == 1)
    owners = set(np.unique(sole[i[mine]]).tolist())
    mine &= np.asarray(wanted, dtype=bool)[at]
    # Sum per (sample, process): sorted, then each run of equal pairs.
    ent, at, row = sole[i[mine]], at[mine], row[mine]
    order = np.lexsort((ent, at))
    ent, at, row = ent[order], at[order], row[order]
    if not len(row):
        return owners, out
    starts = np.flatnonzero(np.append(True, (ent[1:] != ent[:-1]) | (at[1:] != at[:-1])))
    v = np.array([objs[r][3] or 0 for r in row.tolist()], dtype=np.int64)
    unknown = np.array([objs[r][3] is None for r in row.tolist()], dtype=np.int64)
    sums = np.add.reduceat(v, starts).tolist()
    unknowns = np.add.reduceat(unknown, starts).tolist()
    for e, s, total, u in zip(ent[starts].tolist(), at[starts].tolist(), sums, unknowns,
                              strict=True):
        out[s][e] = None if u else total
    return owners, out


def _expand(lo: np.ndarray, hi: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """(row, index) for each row and each index from its ``lo`` to ``hi - 1``."""
    more = np.maximum(hi - lo, 0)
    row = np.repeat(np.arange(len(lo)), more)
    step = np.arange(len(row)) - np.repeat(np.cumsum(more) - more, more)
    return row, lo[row] + step


def _hidden_objects(conn: sqlite3.Connection, p: Period, span: int
                    ) -> list[tuple[int, int, int | None, int | None]]:
    """(koid, first, last, committed) of the rows of the hidden objects (of
    a kind in HIDDEN_KINDS, mapped by no process) valid in the period."""
    q = ",".join("?" * len(HIDDEN_KINDS))
    kinds = [i for (i,) in conn.execute(f"SELECT id FROM strings WHERE s IN ({q})",
                                        [k.encode() for k in HIDDEN_KINDS])]
    if not kinds:
        return []
    qk = ",".join(str(int(k)) for k in kinds)
    return conn.execute(
        f"SELECT ent, first, last, committed FROM vmos WHERE kind IN ({qk}) AND mappings = 0 "
        "AND first > ?1 - ?3 AND first <= ?2 AND (last IS NULL OR last >= ?1)",
        (p.n0, p.n1, span)).fetchall()


def _holds(conn: sqlite3.Connection, p: Period, span: int, koids: set[int | None]
           ) -> list[tuple[int, int, int, int]]:
    """Who holds the objects ``koids``: (process entity, first, last (``p.n1``
    for an open row), koid) of each reference by descriptor (a handle)
    to one of them, from the processes' references rows of the period."""
    holds: list[tuple[int, int, int, int]] = []
    # A blob's koids held by handle, by its digest (the same references
    # recur: a row copied once it is its table's span old, processes of the
    # same layout).
    seen: dict[bytes, list[int]] = {}
    for ent, first, last, blob in conn.execute(
            "SELECT ent, first, last, refs FROM vmo_refs WHERE first > ?1 - ?3 AND first <= ?2 "
            "AND (last IS NULL OR last >= ?1)", (p.n0, p.n1, span)):
        key = blake2b(blob if isinstance(blob, bytes) else repr(blob).encode(),
                      digest_size=16).digest()
        held = seen.get(key)
        if held is None:
            try:
                refs = absolute_refs(blob)
            except (ValueError, TypeError, zlib_error):
                refs = []
            held = seen[key] = [k for k, via in refs if k in koids and "HANDLE" in via]
        holds.extend((ent, first, p.n1 if last is None else last, k) for k in held)
    return holds


def _carried(at: list[tuple[int, dict[int, int | None]]], buckets: int, owners: set[int]
             ) -> dict[int, dict[int, int | None]]:
    """Process entity -> bucket -> value for each of ``owners``, from
    (bucket, entity -> value) of objects samples in order (0 for an owner
    that holds none at one): a later sample's value replaces an earlier
    one's in its bucket, and each value is carried forward into the buckets
    after it until the next."""
    out: dict[int, dict[int, int | None]] = {ent: {} for ent in owners}
    for b, per in at:
        for ent in owners:
            out[ent][b] = per.get(ent, 0)
    for series in out.values():
        cur: int | None = None
        started = False
        for b in range(buckets):
            if b in series:
                cur, started = series[b], True
            elif started:
                series[b] = cur
    return out


def _jobs(conn: sqlite3.Connection, p: Period) -> list[Series]:
    """A job's series: its cgroup charge, and the sum of its processes'
    private bytes and PSS (None at a sample where one of them is unknown)."""
    span = read_span(conn)
    charge = _bucketed(conn, "job_info", ("charged",), p, span)
    per_charge: dict[int, list[tuple[int, list[int | None]]]] = {}
    for i, ent in enumerate(charge.ents.tolist()):
        buckets, lows, highs = charge.points(i)
        per_charge[ent] = [(b, [x, y]) for b, x, y in zip(buckets, lows[0], highs[0],
                                                          strict=True)]
    jobs = {s64(k): (i, path) for i, k, path in conn.execute("SELECT id, koid, path FROM job_ids")}
    info = _proc_names(conn, p, span)
    member = [(ent, jobs[v[1]][0]) for ent, v in info.items() if v[1] in jobs]
    job_ents = sorted({j for _e, j in member})
    totals = _job_totals(conn, p, span, member, job_ents)
    deltas = {j: n for n, j in enumerate(job_ents)}
    names = dict(conn.execute(
        "SELECT ent, name FROM job_info WHERE first > ?1 - ?3 AND first <= ?2 "
        "AND (last IS NULL OR last >= ?1)", (p.n0, p.n1, span)).fetchall())
    strings = _Strings(conn)
    strings.fill(list(names.values()) + [path for _i, path in jobs.values()])
    koid_of = {i: (k, path) for k, (i, path) in jobs.items()}
    times = p.bucket_times()
    out = []
    for ent in sorted(set(per_charge) | set(deltas)):
        lo_hi: dict[int, list[int | None]] = {b: [None] * 6 for b in range(p.buckets)}
        present = set()
        for b, a in per_charge.get(ent, ()):
            lo_hi[b][4], lo_hi[b][5] = a[0], a[1]
            present.add(b)
        row = deltas.get(ent)
        if row is not None:
            present.update(range(p.buckets))
            for b in range(p.buckets):
                for k in (0, 1):
                    lo, hi = totals[k]
                    x, y = lo[row, b], hi[row, b]
                    lo_hi[b][2 * k] = None if x != x else int(x)
                    lo_hi[b][2 * k + 1] = None if y != y else int(y)
        koid, path = koid_of.get(ent, (None, None))
        pts = sorted(present)
        out.append(Series(
            key=f"job:{ent}", kind="job", name=strings.get(names.get(ent)),
            identity={"koid": u64(koid), "path": strings.get(path)},
            times_ns=[times[b] for b in pts], uss=[lo_hi[b][0] for b in pts],
            uss_high=[lo_hi[b][1] for b in pts], pss=[lo_hi[b][2] for b in pts],
            charge=[lo_hi[b][4] for b in pts]))
    return out


def _job_totals(conn: sqlite3.Connection, p: Period, span: int, member: list[tuple[int, int]],
                job_ents: list[int]) -> dict[int, tuple[np.ndarray, np.ndarray]]:
    """0 (private bytes), 1 (PSS) -> the lowest and highest sum per (job,
    bucket) of the processes of each job (``member``: (process, job) entity
    pairs; rows in the order of ``job_ents``), NaN where one is unknown.

    Sum per sample: each process row adds its value at max(first, n0) and
    takes it away after last; a running sum over the samples then gives the
    job's total at every sample.  Unknown values are counted (a sample with
    one is unknown)."""
    size = p.size
    d = np.zeros((len(job_ents), size + 1, 4))
    if member:
        ent, first, last, known, private, pss = _columns(
            conn, "proc_mem", ("known", "private", "pss"), p, span)
        # Each row's job (-1: a process of no job known).
        ents, ei = _index(ent)
        job_at = {e: job_ents.index(j) for e, j in member}
        jj = np.array([job_at.get(e, -1) for e in ents.tolist()], dtype=np.int64)[ei]
        mine = jj >= 0
        jj, first, last, known = jj[mine], first[mine], last[mine], known[mine]
        start = jj * (size + 1) + np.maximum(first, p.n0) - p.n0
        ends = last < p.n1
        end = (jj * (size + 1) + last + 1 - p.n0)[ends]
        # columns: private sum, private unknown, pss sum, pss unknown
        for k, v in enumerate((private[mine], pss[mine])):
            ok = (known != 0) & (v >= 0)
            for c, w in ((2 * k, np.where(ok, v, 0)), (2 * k + 1, (~ok).astype(np.int64))):
                wf = w.astype(np.float64)
                acc = np.bincount(start, weights=wf, minlength=d[:, :, c].size)
                acc -= np.bincount(end, weights=wf[ends], minlength=d[:, :, c].size)
                d[:, :, c] = acc.reshape(len(job_ents), size + 1)
    run = np.cumsum(d[:, :size, :], axis=1)
    # The samples that exist, and their buckets.
    idx = np.asarray(p.numbers, dtype=np.int64) - p.n0
    bucket_of = (idx * p.buckets) // size
    totals: dict[int, tuple[np.ndarray, np.ndarray]] = {}
    for k, (col, unknown) in enumerate(((0, 1), (2, 3))):
        v = np.where(run[:, idx, unknown] > 0.5, np.nan, run[:, idx, col])
        lo = np.full((len(job_ents), p.buckets), np.nan)
        hi = np.full((len(job_ents), p.buckets), np.nan)
        for b in range(p.buckets):
            sel = v[:, bucket_of == b]
            if sel.shape[1]:
                with np.errstate(all="ignore"):
                    lo[:, b] = np.fmin.reduce(sel, axis=1)
                    hi[:, b] = np.fmax.reduce(sel, axis=1)
        totals[k] = (lo, hi)
    return totals


# --------------------------------------------------------------------------
# Objects (objects-tier samples only)

def _object_period(conn: sqlite3.Connection, p: Period, max_points: int) -> Period | None:
    rows = conn.execute("SELECT n, time_ns FROM samples WHERE n >= ? AND n <= ? AND tier = ? "
                        "ORDER BY n", (p.n0, p.n1, OBJECTS)).fetchall()
    if not rows:
        return None
    return Period(n0=rows[0][0], n1=rows[-1][0], numbers=tuple(r[0] for r in rows),
                  times_ns=tuple(r[1] for r in rows),
                  buckets=max(1, min(max_points, len(rows))))


def _object_points(op: Period, ent: np.ndarray, first: np.ndarray, last: np.ndarray,
                   committed: np.ndarray
                   ) -> dict[int, tuple[list[int], list[int | None], list[int | None]]]:
    """ent -> (buckets, lowest, highest committed bytes in each) over the
    objects samples, from rows (:func:`_columns`).

    Object rows exist only at objects samples, and a row closes at the sample
    before a change (a totals sample): a row's value holds at the objects
    samples between its first and last (found by binary search); buckets are
    runs of consecutive objects samples (not of sample numbers)."""
    numbers = np.asarray(op.numbers, dtype=np.int64)
    count, nb = len(numbers), op.buckets
    a = np.searchsorted(numbers, first, "left")  # the first objects sample it holds at
    b = np.searchsorted(numbers, last, "right")  # one past the last
    keep = b > a
    dense = _spread(ent[keep], a[keep] * nb // count, (b[keep] - 1) * nb // count,
                    [committed[keep]], nb)
    return {e: (buckets, lows[0], highs[0])
            for e, (buckets, lows, highs) in zip(dense.ents.tolist(), dense.every_point(),
                                                 strict=True)}


def _object_times(op: Period) -> list[int]:
    sums = [0] * op.buckets
    counts = [0] * op.buckets
    count = len(op.numbers)
    for i, t in enumerate(op.times_ns):
        b = i * op.buckets // count
        sums[b] += t
        counts[b] += 1
    return [s // c if c else -1 for s, c in zip(sums, counts, strict=True)]


def _object_series(conn: sqlite3.Connection, op: Period, table: str, where: str, span: int,
                   key_of: Callable[[int], str]) -> dict[int, Series]:
    """ent -> Series of the objects of ``table`` that meet ``where`` (an SQL
    condition, ``AND ...``; keyed by ``key_of(ent)``): the values from one
    read of their rows, and the name, kind, path and mappings of each
    object's newest row (:func:`_newest_meta`)."""
    out: dict[int, Series] = {}
    ent, first, last, committed, open_rows = _columns(
        conn, table, ("committed",), op, span, where, open_rowids=True)
    if not len(ent):
        return out
    per = _object_points(op, ent, first, last, committed)
    meta = _newest_meta(conn, table, ent, first, open_rows)
    strings = _Strings(conn)
    strings.fill(x for m in meta.values() for x in m[:3])
    owner_pid: dict[int, int] = {}
    if table == "anon_vmos" and per:
        qo = ",".join(str(int(e) >> OWNER_SHIFT) for e in per)
        owner_pid = dict(conn.execute(f"SELECT id, pid FROM procs WHERE id IN ({qo})").fetchall())
    times = _object_times(op)
    for ent_id, (buckets, lows, highs) in per.items():
        name_id, kind_id, path_id, mappings = meta.get(ent_id, (None, None, None, None))
        kind = strings.get(kind_id) or None
        koid = u64(ent_id) if table == "vmos" else None
        ident: dict[str, object] = {}
        if koid is not None:
            ident["koid"] = koid
        if table == "anon_vmos":
            ident["owner_pid"] = owner_pid.get(ent_id >> OWNER_SHIFT)
        if path_id is not None:
            ident["path"] = strings.get(path_id)
        out[ent_id] = Series(
            key=key_of(ent_id), kind="object", name=strings.get(name_id),
            identity=ident, times_ns=[times[b] for b in buckets], uss=lows, uss_high=highs,
            object_kind=kind,
            # Mapped by no process (at its newest objects sample): only a
            # descriptor keeps it.
            hidden=kind in HIDDEN_KINDS and mappings == 0)
    return out


_META = ("name", "kind", "path", "mappings")


def _newest_meta(conn: sqlite3.Connection, table: str, ent: np.ndarray, first: np.ndarray,
                 open_rows: np.ndarray) -> dict[int, tuple[int | None, ...]]:
    """ent -> (name, kind, path, mappings) of each object's newest row (the
    highest ``first``: an object's rows follow each other) of the rows
    (``ent``, ``first``) read; ``open_rows``, the rowids of the open ones
    among them.  An object still there has its newest row open: those are
    read by rowid; the newest rows of the others (gone before the newest
    objects sample) by their first sample, through the index on ``first``."""
    order = np.lexsort((first, ent))
    newest = order[np.append(ent[order][1:] != ent[order][:-1], True)]
    want = dict(zip(ent[newest].tolist(), first[newest].tolist(), strict=True))
    cols = ", ".join(_META)
    meta: dict[int, tuple[int | None, ...]] = {}

    def take(rows: Iterable[tuple[int, ...]]) -> None:
        # (In rowid order: of two rows alike, the later one counts.)
        for _rowid, e, f, *m in sorted(rows):
            if any(x is not None and not isinstance(x, int) for x in m):
                raise sqlite3.DatabaseError(f"{table}: a value that is not an integer")
            if want.get(e) == f:
                meta[e] = tuple(None if x is None or x < 0 else x for x in m)

    for i in range(0, len(open_rows), 50_000):
        q = ",".join(str(int(r)) for r in open_rows[i:i + 50_000])
        take(conn.execute(f"SELECT rowid, ent, first, {cols} FROM {table} "
                          f"WHERE rowid IN ({q})").fetchall())
    rest = [e for e in want if e not in meta]
    for i in range(0, len(rest), 50_000):
        part = rest[i:i + 50_000]
        qf = ",".join(str(int(f)) for f in sorted({want[e] for e in part}))
        qe = ",".join(str(int(e)) for e in part)
        take(conn.execute(f"SELECT rowid, ent, first, {cols} FROM {table} "
                          f"WHERE first IN ({qf}) AND ent IN ({qe})").fetchall())
    return meta


def _anon_key(ent: int) -> str:
    return f"object:anon:{ent}"


def _file_key(ent: int) -> str:
    return f"object:koid:{u64(ent)}"


def _objects(conn: sqlite3.Connection, p: Period, procs: Sequence[Series], max_points: int
             ) -> dict[str, list[Series]]:
    """process key -> the series of the objects it owns (anonymous ones) or
    reaches (memfd, shmem, files: through its references)."""
    op = _object_period(conn, p, max_points)
    if op is None or not procs:
        return {}
    # Objects rows stay open longer than totals rows (store/schema.py span_of).
    span = span_of("vmos", read_span(conn))
    owners = {int(s.key.split(":")[1]): s.key for s in procs}
    q = ",".join(str(o) for o in owners)
    # File-backed objects through the references (absolute koids).
    reached: dict[int, set[int]] = {}
    for ent, blob in conn.execute(
            f"SELECT ent, refs FROM vmo_refs WHERE ent IN ({q}) "
            "AND first > ?1 - ?3 AND first <= ?2 AND (last IS NULL OR last >= ?1)",
            (op.n0, op.n1, span)):
        try:
            refs = absolute_refs(blob)
        except (ValueError, TypeError, zlib_error):
            continue
        for k, _via in refs:
            if k >= INODE_KOID_BASE:
                reached.setdefault(ent, set()).add(s64(k) or 0)
    # The anonymous objects they own (the owner is in the entity's high bits).
    anon = _object_series(conn, op, "anon_vmos", f"AND (ent >> {OWNER_SHIFT}) IN ({q})", span,
                          _anon_key)
    file_ents = sorted({k for ks in reached.values() for k in ks})
    files = (_object_series(conn, op, "vmos", "AND ent IN ({})".format(
        ",".join(str(int(k)) for k in file_ents)), span, _file_key) if file_ents else {})
    out: dict[str, list[Series]] = {}
    for ent, s in anon.items():
        out.setdefault(owners[ent >> OWNER_SHIFT], []).append(s)
    for owner, ks in reached.items():
        for k in sorted(ks):
            if k in files:
                out.setdefault(owners[owner], []).append(files[k])
    return out


def _all_objects(conn: sqlite3.Connection, p: Period, max_points: int) -> list[Series]:
    op = _object_period(conn, p, max_points)
    if op is None:
        return []
    span = span_of("vmos", read_span(conn))
    out = list(_object_series(conn, op, "anon_vmos", "", span, _anon_key).values())
    out += _object_series(conn, op, "vmos", "", span, _file_key).values()
    return out


def describe_period(store_path: str, since_ns: int | None) -> tuple[int, int, int] | None:
    """(samples, first time, last time) of the period, or None if empty."""
    conn = open_read(store_path)
    try:
        row = conn.execute("SELECT count(*), min(time_ns), max(time_ns) FROM samples "
                           "WHERE time_ns >= ?", (since_ns if since_ns is not None
                                                  else -(1 << 62),)).fetchone()
    except sqlite3.Error as exc:
        raise StoreError(f"{store_path}: cannot read the store: {exc}") from None
    finally:
        conn.close()
    return None if not row[0] else (row[0], row[1], row[2])




def load_objects(store_path: str, processes: Sequence[Series], *, since_ns: int | None = None,
                 max_points: int = DEFAULT_MAX_POINTS) -> dict[str, list[Series]]:
    """Process key -> the series of the memory objects it owns or reaches by
    descriptor, for the process series given (from :func:`load_series`)."""
    procs = [s for s in processes if s.kind == "process"]
    if not procs:
        return {}
    conn = open_read(store_path)
    try:
        p = period(conn, since_ns, max_points)
        return {} if p is None else _objects(conn, p, procs, max_points)
    except sqlite3.Error as exc:
        raise StoreError(f"{store_path}: cannot read the store: {exc}") from None
    finally:
        conn.close()


__all__ = ["BY", "load_series", "load_objects", "describe_period", "format_time", "proc_key"]
