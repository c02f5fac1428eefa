"""A process's mappings as one compact blob (the store's ``mappings`` table).

An objects sample keeps every process's mappings (its ``smaps`` entries) in
one versioned row per process, written only when they changed.  The blob is
raw-deflated JSON, a column per field, each chosen to compress:

* addresses: the gap before each mapping (to the previous one's end) and its
  length; the offset as its difference to the end of the previous piece
  when the mapping continues the previous mapping's object (the next bytes
  of the same file, usually: 0), else as it is;
* the backing object: the change of an index into the blob's table of
  distinct ``(dev, inode, path)`` (a library mapped five times is one
  entry; the next mapping of it, 0); perms and VmFlags: an index into the
  blob's table of distinct pairs.  Each entry of the two tables is the id
  of its JSON text in the store's ``strings`` table, so it is stored once
  in the whole store, however many processes map that library
  (``map_strings`` says which ones the mappings use);
* the object koid: ``null`` for a file or shmem object whose koid is
  ``inode_koid(dev, inode)`` (derived again when read); for an anonymous
  or clone object the process owns (``zxmem.store.writer``: the first
  process that reaches it) the difference to the previous such koid,
  starting at the process's base koid (its ``vmo_base`` row), so when an
  exited process renumbers the anonymous objects of every process after
  it, the blob stays the same; any other koid absolute, as ``[koid]``;
* page counts: ``Rss``, ``Private`` and ``Swap`` as they are; the others as
  the difference to what usually equals them (``Shared`` to ``Rss -
  Private``, ``Pss`` and ``Private_Dirty`` to ``Private``, ``Anonymous`` to
  ``Rss`` for anonymous and clone objects, ``SwapPss`` to ``Swap``), which
  is 0 for most mappings.  Unknown stays ``null``.

Every count column is divided by the largest of 4096, 1024 and 1 that
divides all its values (the divisors lead the blob), so a count is pages
when the kernel gave whole pages, and exact whatever it gave; a column of
one value throughout is that value alone.  An empty blob is a process with
no mappings (a kernel thread).  Decoding is the exact inverse:
``decode(encode(m)) == m``.
"""

from __future__ import annotations

import json
import zlib
from collections import deque
from collections.abc import Callable, Iterable, Sequence
from itertools import accumulate, compress, filterfalse, repeat
from math import gcd
from operator import add, attrgetter, mul, sub

from zxmem.model import INODE_KOID_BASE, Mapping, inode_koid
from zxmem.record import from_columns

# Blob layout version (the first element of its JSON array).
FORMAT = 1

_FIELDS = ("start", "end", "perms", "offset", "dev", "inode", "path", "vmo_koid",
           "rss_bytes", "pss_bytes", "private_bytes", "shared_bytes", "private_dirty_bytes",
           "anonymous_bytes", "swap_bytes", "swap_pss_bytes", "vm_flags")
_ROW = attrgetter(*_FIELDS)
_ROW_BUT_KOID = attrgetter(*(f for f in _FIELDS if f != "vmo_koid"))
_KOID = attrgetter("vmo_koid")
# Koids the process does not own, moved past every relative one (koids are
# below 2**64): the two kinds never meet in a fingerprint.
_APART = 1 << 70

# The count columns, in blob order (after the tables, object, kind and koid).
_COUNTS = ("gap", "size", "offset", "rss", "private", "shared", "pss", "dirty", "anon",
           "swap", "swap_pss")


def fingerprint(maps: Sequence[Mapping], ent: int, owner: Callable[[int], int | None],
                base: int | None) -> int:
    """A hash (64 bits) of what :func:`encode` writes of ``maps``: every
    value, the koids of the objects the process owns relative to its base
    (a renumbering leaves it as it was), the others as they are.  The
    writer encodes a process's mappings again only when this changed:
    hashing is a tenth of the cost of encoding."""
    koids = [k - base if base is not None and owner(k) == ent else k + _APART
             for k in map(_KOID, maps)]
    return hash((tuple(map(_ROW_BUT_KOID, maps)), tuple(koids)))


def _text(values: tuple) -> str:
    """A table entry as a string of the store: its JSON (ASCII: a name that
    is not UTF-8 keeps its escapes, and reads back the same)."""
    return json.dumps(values, separators=(",", ":"))


def _less(value: int | None, predicted: int | None) -> int | None:
    """``value`` as its difference to ``predicted`` (unknown stays None)."""
    if value is None:
        return None
    return value - predicted if predicted is not None else value


def _more(value: int | None, predicted: int | None) -> int | None:
    """Inverse of :func:`_less`."""
    if value is None:
        return None
    return value + predicted if predicted is not None else value


def _divisor(column: list[int | None]) -> int:
    known = [v for v in column if v is not None]
    g = gcd(*known) if known else 0
    for d in (4096, 1024):
        if g % d == 0:
            return d
    return 1


def encode(maps: Sequence[Mapping], ent: int, owner: Callable[[int], int | None],
           base: int | None, sid: Callable[[str], int]) -> tuple[bytes, set[int]]:
    """The blob of ``maps`` and the string ids it uses.

    ``owner(koid)``: the process entity owning an anonymous object (None:
    not recorded); ``base``: the first koid process ``ent`` owns;
    ``sid(text)``: the string's id in the store."""
    if not maps:
        return b"", set()
    objects: dict[tuple[int, int, str], int] = {}
    attrs: dict[tuple[str, str | None], int] = {}
    attr: list[int] = []
    obj: list[int] = []
    koids: list[int | list[int] | None] = []
    cols: list[list[int | None]] = [[] for _ in _COUNTS]
    gap, size, offset, rss, private, shared, pss, dirty, anon, swap, swap_pss = cols
    prev_end = 0
    prev_own = base
    prev_obj = -1
    next_off = 0
    for (start, end, pm, off, dev, ino, path, k, r, p, pv, sh, pd, an, sw, sp,
         fl) in map(_ROW, maps):
        gap.append(start - prev_end)
        prev_end = end
        size.append(end - start)
        key = (dev, ino, path)
        i = objects.get(key)
        if i is None:
            i = objects[key] = len(objects)
        # The next piece of the same object usually maps the next bytes.
        offset.append(off - next_off if i == prev_obj else off)
        next_off = off + end - start
        obj.append(i - prev_obj)
        prev_obj = i
        akey = (pm, fl)
        a = attrs.get(akey)
        if a is None:
            a = attrs[akey] = len(attrs)
        attr.append(a)
        if k >= INODE_KOID_BASE and k == inode_koid(dev, ino):
            koids.append(None)
            anonymous = False
        elif prev_own is not None and owner(k) == ent:
            koids.append(k - prev_own)
            prev_own = k
            anonymous = True
        else:
            koids.append([k])
            anonymous = k < INODE_KOID_BASE
        rss.append(r)
        private.append(pv)
        shared.append(_less(sh, r - pv if r is not None and pv is not None else None))
        pss.append(_less(p, pv))
        dirty.append(_less(pd, pv))
        anon.append(_less(an, r) if anonymous else an)
        swap.append(sw)
        swap_pss.append(_less(sp, sw))
    return _pack(cols, [sid(_text(o)) for o in objects], [sid(_text(a)) for a in attrs],
                 [obj, attr, koids])


def _pack(cols: list[list[int | None]], table: list[int], kinds: list[int],
          refs: list[list[int]] | list[object]) -> tuple[bytes, set[int]]:
    """The compressed blob of :func:`encode`'s columns: each count column
    scaled by its common divisor, or one value if it holds one throughout."""
    divisors = [_divisor(c) for c in cols]
    scaled: list[object] = [
        c[0] if c.count(c[0]) == len(c) else  # one value throughout: that value
        c if d == 1 else [None if v is None else v // d for v in c]
        for c, d in zip(cols, divisors, strict=True)]
    doc = [FORMAT, divisors, table, kinds, *refs, *scaled]
    used = set(table)
    used.update(kinds)
    z = zlib.compressobj(9, zlib.DEFLATED, -15)  # raw deflate: no header, no checksum
    return z.compress(json.dumps(doc, separators=(",", ":")).encode()) + z.flush(), used


class BlobError(ValueError):
    """A mappings blob that cannot be decoded."""


def parse(blob: bytes) -> list:
    """The JSON of a blob ([] for an empty one)."""
    if not blob:
        return []
    try:
        doc = json.loads(zlib.decompress(blob, -15))
    except (zlib.error, ValueError) as exc:
        raise BlobError(f"a mappings blob is corrupt ({exc})") from None
    if not isinstance(doc, list) or not doc or doc[0] != FORMAT:
        raise BlobError(f"a mappings blob of an unknown layout "
                        f"({doc[0] if isinstance(doc, list) and doc else '?'})")
    return doc


def string_ids(doc: list) -> Iterable[int]:
    """The string ids a parsed blob uses."""
    if not doc:
        return ()
    return [*doc[2], *doc[3]]


def layout_key(doc: list) -> tuple:
    """What a parsed blob says of where each mapping lies and what it maps
    (addresses, offsets, permissions, flags, objects; not the counts or
    koids), as a key: two blobs with equal keys decode to mappings that
    differ only in those, so they have the same regions.  (The processes a
    workload forks share one layout.)"""
    if not doc:
        return ()
    divisors, table, kinds, obj, attr = doc[1:6]
    gap, size, offset = (tuple(c) if isinstance(c, list) else c for c in doc[7:10])
    return (tuple(divisors[:3]), tuple(table), tuple(kinds), tuple(obj), tuple(attr), gap,
            size, offset)


def entry(text: str) -> tuple:
    """A table entry of a blob from its string: ``(dev, inode, path)`` or
    ``(perms, vm_flags)``."""
    return tuple(json.loads(text))


def decode(doc: list, base: int | None, entry: Callable[[int], tuple]) -> tuple[Mapping, ...]:
    """The mappings of a parsed blob; ``base`` the process's first owned
    koid at the sample read, ``entry(id)`` the table entry (:func:`entry`)
    of a string of the store (:func:`prepare`, then :func:`build`)."""
    return build(prepare(doc, entry), base)


class Prepared:
    """What a blob says of its mappings but the base its relative koids
    count from (:func:`prepare`): each field's column, the koid column with
    relative koids counted from 0 and which koids are relative.  Processes
    a workload forks have blobs alike: one is prepared once and built for
    each process's base (:func:`build`)."""

    __slots__ = ("n", "columns", "koids", "relative", "shared", "owned")

    def __init__(self, n: int, columns: list[Sequence], koids: list[int],
                 relative: list[int] | None) -> None:
        self.n = n
        self.columns = columns  # the fields before vmo_koid, then those after it
        self.koids = koids
        self.relative = relative  # 1 for a relative koid, 0 else; None: no relative koid
        # The mappings whose koid is not relative, built once (None at the
        # others); the others' positions and columns (:func:`build`).
        self.shared: Sequence[Mapping | None] | None = None
        self.owned: tuple[list[int], list[Sequence], list[int]] | None = None


_KOID_AT = _FIELDS.index("vmo_koid")


def prepare(doc: list, entry: Callable[[int], tuple]) -> Prepared:
    """A parsed blob's columns (:class:`Prepared`).  Column by column: the
    addresses are running sums, the counts sums of two columns, both by
    ``map`` in C; only the offsets and koids, which depend on the mapping
    before, are computed a mapping at a time."""
    if not doc:
        return Prepared(0, [], [], None)
    _v, divisors, table, kinds, obj, attr, koids = doc[:7]
    if len(doc) - 7 != len(_COUNTS) or len(divisors) != len(_COUNTS):
        raise BlobError(f"a mappings blob has {len(doc) - 7} count columns, not "
                        f"{len(_COUNTS)}")
    n = len(koids)
    if n == 0:
        return Prepared(0, [], [], None)
    gap, size, offset, rss, private, shared, pss, dirty, anon, swap, swap_pss = (
        _scaled(c, d, n) for c, d in zip(doc[7:], divisors, strict=True))
    ends = list(accumulate(map(add, gap, size)))
    starts = list(map(sub, ends, size))
    index = list(accumulate(obj, initial=-1))
    del index[0]
    objects = [entry(i) for i in table]
    devs, inodes, paths = zip(*map(objects.__getitem__, index), strict=True)
    perms, flags = zip(*map([entry(i) for i in kinds].__getitem__, attr), strict=True)
    offs, vmo_koids, anonymous, relative = _offsets_koids(
        offset, obj, size, koids, index, [inode_koid(o[0], o[1]) for o in objects])
    try:  # no None: in C (as in _scaled)
        predicted_shared = list(map(sub, rss, private))
    except TypeError:
        predicted_shared = list(map(_less_known, rss, private))
    anon_more = _more_all(anon, rss)
    anon = [m if a else v for m, a, v in zip(anon_more, anonymous, anon, strict=True)]
    return Prepared(n, [starts, ends, perms, offs, devs, inodes, paths, rss,
                        _more_all(pss, private), private, _more_all(shared, predicted_shared),
                        _more_all(dirty, private), anon, swap, _more_all(swap_pss, swap), flags],
                    vmo_koids, relative if any(relative) else None)


def build(prep: Prepared, base: int | None) -> tuple[Mapping, ...]:
    """The mappings of a prepared blob for a process whose first owned
    koid is ``base`` (records made from the columns,
    :func:`zxmem.record.from_columns`).  A mapping whose koid is not
    relative is the same for every process of the blob: built once, and
    shared (records are immutable); the others are built for each."""
    if prep.n == 0:
        return ()
    if prep.shared is None:
        _share(prep)
    shared = prep.shared or ()
    if prep.owned is None:
        return shared  # type: ignore[return-value]  # a tuple, every mapping built
    if base is None:
        raise BlobError("a mappings blob has koids relative to a base the sample "
                        "does not hold")
    at, cols, koids = prep.owned
    built = from_columns(Mapping, len(at), *cols[:_KOID_AT], list(map(add, koids, repeat(base))),
                         *cols[_KOID_AT:])
    if len(at) == prep.n:
        return tuple(built)
    out = list(shared)
    deque(map(out.__setitem__, at, built), 0)
    return tuple(out)  # type: ignore[arg-type]  # no None left


def _share(prep: Prepared) -> None:
    """Build the mappings of ``prep`` whose koid is not relative, and keep
    the positions, columns and koids (from 0) of the others."""
    cols, n, rel = prep.columns, prep.n, prep.relative
    if rel is None:
        prep.shared = tuple(from_columns(Mapping, n, *cols[:_KOID_AT], prep.koids,
                                         *cols[_KOID_AT:]))
        return
    at = list(compress(range(n), rel))
    rest = list(filterfalse(rel.__getitem__, range(n)))
    shared: list[Mapping | None] = [None] * n
    if rest:
        pick = [list(map(c.__getitem__, rest)) for c in cols]
        built = from_columns(Mapping, len(rest), *pick[:_KOID_AT],
                             list(map(prep.koids.__getitem__, rest)), *pick[_KOID_AT:])
        deque(map(shared.__setitem__, rest, built), 0)
    prep.shared = shared
    prep.owned = (at, [list(map(c.__getitem__, at)) for c in cols],
                  list(map(prep.koids.__getitem__, at)))


def _scaled(column: list | int | None, divisor: int, n: int) -> list:
    """A count column of a blob as ``n`` values (one value throughout is
    written once, unscaled)."""
    if not isinstance(column, list):
        return [column] * n
    if len(column) != n:
        raise BlobError(f"a mappings blob has a column of {len(column)} values for {n} "
                        "mappings")
    if divisor == 1:
        return column
    try:  # no None: in C (a None stops it, and is found by the loop below)
        return list(map(mul, column, repeat(divisor)))
    except TypeError:
        return [None if v is None else v * divisor for v in column]


def _less_known(a: int | None, b: int | None) -> int | None:
    return a - b if a is not None and b is not None else None


def _more_all(values: list, predicted: list) -> list:
    """:func:`_more` of each value and its prediction."""
    try:  # no None: in C (as in _scaled)
        return list(map(add, values, predicted))
    except TypeError:
        return list(map(_more, values, predicted))


def _offsets_koids(offset: list, obj: list, size: list, koids: list, index: list,
                   file_koids: list[int]
                   ) -> tuple[list[int], list[int], list[bool], list[int]]:
    """Each mapping's offset (the next bytes of the object of the mapping
    before, when it continues it), koid, whether its object is anonymous or
    a clone (its koid relative to the previous one the process owns, or a
    sequence koid), and whether its koid is relative (1, else 0): a
    relative koid is counted from 0 here (:func:`build` adds the base)."""
    offs = []
    out = []
    anonymous = []
    relative = []
    prev_own = 0
    next_off = 0
    for off, step, length, k, o in zip(offset, obj, size, koids, index, strict=True):
        if step == 0:
            off += next_off
        offs.append(off)
        next_off = off + length
        if k is None:
            out.append(file_koids[o])
            anonymous.append(False)
            relative.append(0)
        elif isinstance(k, list):
            out.append(k[0])
            anonymous.append(k[0] < INODE_KOID_BASE)
            relative.append(0)
        else:
            prev_own += k
            out.append(prev_own)
            anonymous.append(True)
            relative.append(1)
    return offs, out, anonymous, relative
