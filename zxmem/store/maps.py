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
from collections.abc import Callable, Iterable, Sequence
from math import gcd
from operator import attrgetter

from zxmem.model import INODE_KOID_BASE, Mapping, inode_koid

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

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


def entry(text: str) -> tuple:
    """A table entry of a blob from its string: ``(dev, inode, path)`` or
    ``(perms, vm_flags)``."""
    return tuple(json.loads(text))


def decode(doc: list, base: int | None, entry: Callable[[int], tuple]) -> tuple[Mapping, ...]:
    """The mappings of a parsed blob; ``base`` the process's first owned
    koid at the sample read, ``entry(id)`` the table entry (:func:`entry`)
    of a string of the store."""
    if not doc:
        return ()
    _v, divisors, table, kinds, obj, attr, koids = doc[:7]
    if len(doc) - 7 != len(_COUNTS) or len(divisors) != len(_COUNTS):
        raise BlobError(f"a mappings blob has {len(doc) - 7} count columns, not "
                        f"{len(_COUNTS)}")
    n = len(koids)
    cols: list[list[Any]] = [
        c if d == 1 else [None if v is None else v * d for v in c] if isinstance(c, list)
        else [c] * n
        for c, d in zip(doc[7:], divisors, strict=True)]
    gap, size, offset, rss, private, shared, pss, dirty, anon, swap, swap_pss = cols
    objects = [entry(i) for i in table]
    kind_text = [entry(i) for i in kinds]
    out = []
    end = 0
    prev_own = base
    o = -1
    next_off = 0
    for i, k in enumerate(koids):
        same = obj[i] == 0
        o += obj[i]
        dev, ino, path = objects[o]
        pm, fl = kind_text[attr[i]]
        if k is None:
            koid = inode_koid(dev, ino)
            anonymous = False
        elif isinstance(k, list):
            koid = k[0]
            anonymous = koid < INODE_KOID_BASE
        else:
            if prev_own is None:
                raise BlobError("a mappings blob has koids relative to a base the sample "
                                "does not hold")
            koid = prev_own = prev_own + k
            anonymous = True
        start = end + gap[i]
        end = start + size[i]
        off = offset[i] + next_off if same else offset[i]
        next_off = off + end - start
        r = rss[i]
        pv = private[i]
        sw = swap[i]
        out.append(Mapping(
            start, end, pm, off, dev, ino, path, koid, r,
            _more(pss[i], pv), pv,
            _more(shared[i], r - pv if r is not None and pv is not None else None),
            _more(dirty[i], pv), _more(anon[i], r) if anonymous else anon[i], sw,
            _more(swap_pss[i], sw), fl))
    return tuple(out)
