"""The binary spelling of two objects-tier blobs (store schema 5 on).

A process's references (``vmo_refs``) and its layout (``vmo_base``: the
koid of each anonymous object it owns) were zlib-compressed JSON up to
schema 4; reading them back was a JSON parse of every process's rows, most
of the time of reading a whole objects sample.  From schema 5 both are
zlib-compressed arrays of fixed-width little-endian integers, which the
:mod:`array` module turns into Python ints in C (no numpy: its import alone
costs more than the parse):

references (``R``)
    header ``<cBII``: ``b"R"``, the width of a code (1, 2 or 4 bytes), the
    number of references ``n`` and the length of the kinds table; the
    kinds table, the compact JSON of the distinct ``[via, rights, fd]`` the
    references use, in order of first use; ``n`` u64 koids; ``n`` codes.
    A reference's code is twice the index of its kind, plus 1 when its
    koid is relative to the process's base (an anonymous object, whose
    koid changes when an exited process renumbers those after it): such a
    koid is written as ``koid - base + 2**63`` (a sequence koid is below
    :data:`zxmem.model.INODE_KOID_BASE`, so the difference is far within
    range).

layout (``L``)
    header ``<cBQI``: ``b"L"``, the width of an offset (4 or 8 bytes), the
    base koid and the number of offsets; the offsets (each owned object's
    koid minus the base, in the order of the owner's ``anon_vmos`` keys).

The encodings are deterministic (the same references give the same bytes:
the writer compares blobs to keep unchanged rows).  A blob still spelt as
JSON (a schema-4 store's blob the migration could not convert) is told
apart by its first byte (``[``) and read as before.
"""

from __future__ import annotations

import json
import struct
import sys
import zlib
from array import array
from collections.abc import Iterable, Sequence
from itertools import repeat
from operator import add, mul
from typing import Any

REFS_MAGIC = b"R"
LAYOUT_MAGIC = b"L"
_REFS_HEAD = struct.Struct("<cBII")
_LAYOUT_HEAD = struct.Struct("<cBQI")
# A relative koid's bias: koid - base + BIAS is never negative.
BIAS = 1 << 63
_U64 = 1 << 64
_BIG = sys.byteorder == "big"

# array typecodes by item width (checked: the C types' sizes are the
# platform's; these are the usual ones).
_CODES = {w: next(c for c in "BHILQ" if array(c).itemsize == w) for w in (1, 2, 4, 8)}

Kind = tuple[tuple[str, ...], tuple[str, ...], Any]  # via, rights, fd


class BlobError(ValueError):
    """A blob that is not what the writer writes (the caller names it)."""


def inflate(blob: bytes) -> bytes:
    """A blob decompressed.  Its output buffer starts at 4 KiB, not zlib's
    16 KiB: a blob is about 1 KiB, and reading a sample inflates two per
    process (the larger buffer took half the time)."""
    return zlib.decompress(blob, 15, 4096)


def _ints(raw: bytes, at: int, width: int, count: int) -> list[int]:
    """``count`` unsigned little-endian integers of ``width`` bytes at ``at``."""
    a = array(_CODES[width])
    a.frombytes(raw[at:at + width * count])
    if _BIG:
        a.byteswap()
    return a.tolist()


def _packed(values: list[int], width: int) -> bytes:
    a = array(_CODES[width], values)
    if _BIG:
        a.byteswap()
    return a.tobytes()


def _width(largest: int, widths: Iterable[int]) -> int:
    return next(w for w in widths if largest < 1 << (8 * w))


# -- references ---------------------------------------------------------------


def encode_refs(rows: Iterable[tuple[int, bool, Kind]]) -> bytes:
    """The blob of references given as (koid, relative, kind) rows, koid
    already relative to the base (``koid - base``) when ``relative``."""
    values: list[int] = []
    relative: list[int] = []
    kinds: list[Kind] = []
    for koid, rel, kind in rows:
        values.append(koid + BIAS if rel else koid)
        relative.append(1 if rel else 0)
        kinds.append(kind)
    return encode_columns(values, relative, kinds)


def encode_columns(values: list[int], relative: Sequence[int], kinds: list[Kind]) -> bytes:
    """The blob of references given as columns: each koid as written
    (a relative one ``koid - base + BIAS``), whether it is relative (1 or
    0, or a bool) and its kind.  Every step is a ``map`` in C."""
    if values and not (min(values) >= 0 and max(values) < _U64):
        raise BlobError("a reference's koid is out of range")
    ids: dict[Kind, int] = dict.fromkeys(kinds, 0)  # in order of first use
    for i, kind in enumerate(ids):
        ids[kind] = i
    codes = list(map(add, map(mul, map(ids.__getitem__, kinds), repeat(2)), relative))
    table = json.dumps([[list(v), list(r), fd] for v, r, fd in ids],
                       separators=(",", ":")).encode()
    width = _width(max(codes, default=0), (1, 2, 4))
    head = _REFS_HEAD.pack(REFS_MAGIC, width, len(values), len(table))
    return zlib.compress(head + table + _packed(values, 8) + _packed(codes, width), 6)


def refs_parts(raw: bytes) -> tuple[list[int], list[int], bytes]:
    """The koids as written (relative ones biased), the codes and the text
    of the kinds table (:func:`kinds_table`) of a decompressed references
    blob (:data:`REFS_MAGIC` first).  A code past the table is the
    caller's to refuse."""
    if len(raw) < _REFS_HEAD.size:
        raise BlobError("a references blob is cut short")
    magic, width, n, m = _REFS_HEAD.unpack_from(raw)
    at = _REFS_HEAD.size
    if magic != REFS_MAGIC or width not in (1, 2, 4) or len(raw) != at + m + (8 + width) * n:
        raise BlobError("a references blob is not as written")
    return _ints(raw, at + m, 8, n), _ints(raw, at + m + 8 * n, width, n), raw[at:at + m]


def decode_refs(raw: bytes) -> tuple[list[int], list[int], list[Kind]]:
    """:func:`refs_parts` with the kinds table read, and every code checked."""
    koids, codes, table = refs_parts(raw)
    kinds = kinds_table(table)
    if codes and max(codes) >= 2 * len(kinds):
        raise BlobError("a references blob names a kind its table does not hold")
    return koids, codes, kinds


def kinds_table(text: bytes) -> list[Kind]:
    """The kinds table of a references blob, checked."""
    try:
        table = json.loads(text)
    except ValueError:
        raise BlobError("a references blob's kinds are not JSON") from None
    if not isinstance(table, list):
        raise BlobError("a references blob's kinds are not a list")
    return [_kind(k) for k in table]


def _kind(value: object) -> Kind:
    """``[via, rights, fd]`` as a kind (a BlobError if it is not one)."""
    if not (isinstance(value, list) and len(value) == 3):
        raise BlobError("a references blob has a kind that is not [via, rights, fd]")
    via, rights, fd = value
    if not (isinstance(via, list) and isinstance(rights, list)
            and all(isinstance(s, str) for s in via + rights)
            and (fd is None or type(fd) is int)):
        raise BlobError("a references blob has a kind that is not [via, rights, fd]")
    return tuple(via), tuple(rights), fd


def ref_rows(blob: bytes) -> list[list]:
    """A references blob (either spelling) as the rows schema 4 wrote:
    ``[koid, via, rights, fd]``, or ``[koid - base, via, rights, fd, 1]``
    for a koid relative to the base (lists, as JSON gave them)."""
    raw = inflate(blob)
    if raw[:1] != REFS_MAGIC:
        rows = json.loads(raw)
        if not isinstance(rows, list):
            raise BlobError("a references blob is not a list of rows")
        return rows
    koids, codes, kinds = decode_refs(raw)
    table = [[list(v), list(r), fd] for v, r, fd in kinds]
    return [[k - BIAS, *table[c >> 1], 1] if c & 1 else [k, *table[c >> 1]]
            for k, c in zip(koids, codes, strict=True)]


def absolute_refs(blob: bytes) -> list[tuple[int, Any]]:
    """(koid, via) of each reference of a blob (either spelling) whose koid
    is absolute (not relative to the process's base: files, shared memory,
    objects another process owns); a JSON row of another shape is left
    out.  ``via`` is a tuple or, from JSON, a list."""
    raw = inflate(blob)
    if raw[:1] != REFS_MAGIC:
        rows = json.loads(raw)
        return [(r[0], r[1]) for r in rows if isinstance(r, list) and len(r) == 4
                and type(r[0]) is int and isinstance(r[1], list)] \
            if isinstance(rows, list) else []
    koids, codes, kinds = decode_refs(raw)
    return [(k, kinds[c >> 1][0]) for k, c in zip(koids, codes, strict=True) if not c & 1]


def refs_from_rows(rows: list) -> bytes:
    """The binary blob of schema-4 rows (:func:`ref_rows`' shape); a
    BlobError if one is not such a row."""
    out = []
    for r in rows:
        if not (isinstance(r, list) and len(r) in (4, 5) and type(r[0]) is int
                and (len(r) == 4 or r[4] == 1)):
            raise BlobError("a references row is not [koid, via, rights, fd(, 1)]")
        # Most are reached through a mapping alone: that kind is not rebuilt.
        kind = _PLAIN if r[1:4] == _PLAIN_ROW else _kind(r[1:4])
        out.append((r[0], len(r) == 5, kind))
    return encode_refs(out)


_PLAIN: Kind = (("MAPPING",), (), None)
_PLAIN_ROW = [["MAPPING"], [], None]


# -- layouts ------------------------------------------------------------------


def encode_layout(base: int, offsets: list[int]) -> bytes:
    """The blob of an owner's base koid and the offsets of its objects."""
    if not 0 <= base < _U64 or min(offsets, default=0) < 0:
        raise BlobError("a layout's base or offset is out of range")
    width = _width(max(offsets, default=0), (4, 8))
    return zlib.compress(_LAYOUT_HEAD.pack(LAYOUT_MAGIC, width, base, len(offsets))
                         + _packed(offsets, width), 6)


def decode_layout(blob: bytes) -> tuple[int, list[int]]:
    """(base koid, offsets) of a layout blob (either spelling)."""
    raw = inflate(blob)
    if raw[:1] != LAYOUT_MAGIC:
        value = json.loads(raw)
        if not (isinstance(value, list) and len(value) == 2 and type(value[0]) is int
                and isinstance(value[1], list)
                and all(type(v) is int for v in value[1])):
            raise BlobError("a layout blob is not [base, [offsets]]")
        return value[0], value[1]
    if len(raw) < _LAYOUT_HEAD.size:
        raise BlobError("a layout blob is cut short")
    magic, width, base, n = _LAYOUT_HEAD.unpack_from(raw)
    if width not in (4, 8) or len(raw) != _LAYOUT_HEAD.size + width * n:
        raise BlobError("a layout blob is not as written")
    return base, _ints(raw, _LAYOUT_HEAD.size, width, n)


def layout_from_json(blob: bytes) -> bytes | None:
    """A schema-4 layout blob in the binary spelling (None: it is not one
    the binary spelling holds: left as it is)."""
    try:
        base, offsets = decode_layout(blob)
        return encode_layout(base, offsets)
    except (BlobError, ValueError, zlib.error, struct.error, OverflowError):
        return None
