"""Decoding stored references (zxmem.store.reader.RefDecoder) and building
records from columns (zxmem.record.from_columns): the fast paths equal the
plain ones they replace."""

from __future__ import annotations

import json
import zlib
from itertools import repeat

import pytest

from zxmem.model import Mapping, Provenance, Vmo, VmoRef, inode_koid
from zxmem.record import from_columns
from zxmem.store.reader import RefDecoder
from zxmem.store.writer import refs_blob

BASE = 1000

REFS = (
    VmoRef(1 << 40 | 7, ("MAPPING",)),  # a file: absolute
    VmoRef(BASE + 3, ("MAPPING",)),  # the process's own: relative to its base
    VmoRef(BASE - 40, ("MAPPING",)),  # another's anonymous object: a negative offset
    VmoRef(BASE + 3, ("HANDLE",), ("READ", "WRITE"), 5),
    VmoRef(1 << 40 | 9, ("HANDLE",), ("READ",), 3),
    VmoRef(1 << 40 | 9, ("HANDLE", "MAPPING"), ("READ",), 4),
    VmoRef(BASE + 4, ("HANDLE",), (), None),
    VmoRef(1 << 40 | 7, ("MAPPING",)),  # the same reference twice
    VmoRef(1 << 63 | 5, ("MAPPING",)),  # a koid past SQLite's signed range
)


def plain_decode(blob: bytes, base: int) -> tuple[VmoRef, ...]:
    """What a row of the blob says, one row at a time."""
    return tuple(VmoRef(r[0] + base if len(r) > 4 else r[0], tuple(r[1]), tuple(r[2]), r[3])
                 for r in json.loads(zlib.decompress(blob)))


def blob_of(rows: list) -> bytes:
    return zlib.compress(json.dumps(rows).encode())  # spaces: not the writer's spelling


@pytest.mark.parametrize("refs", [REFS, REFS[:1], REFS[3:4], REFS[-1:], REFS[1:3], ()])
def test_writer_blobs_decode_to_the_references_written(refs):
    blob = refs_blob(refs, BASE)
    got = RefDecoder().decode({1: blob}, {1: BASE})
    assert got == {1: refs} == {1: plain_decode(blob, BASE)}
    assert all(type(r) is VmoRef for r in got[1])


def test_blobs_of_another_spelling_are_decoded_row_by_row():
    rows = [[7, ["MAPPING"], [], None], [3, ["MAPPING"], [], None, 1],
            [9, [], [], None], [4, ["HANDLE"], ["READ"], 2, 1]]
    blob = blob_of(rows)
    decoder = RefDecoder()
    assert decoder._flat(zlib.decompress(blob)) is None
    assert decoder.decode({1: blob}, {1: BASE}) == {1: plain_decode(blob, BASE)}
    # An empty via list is not the writer's spelling either, spaces or not.
    compact = zlib.compress(json.dumps(rows, separators=(",", ":")).encode())
    assert decoder.decode({2: compact}, {2: BASE})[2] == plain_decode(compact, BASE)


def test_one_reference_reached_alike_from_many_processes_is_one_object():
    blobs = {ent: refs_blob(REFS, BASE) for ent in (1, 2, 3)}
    got = RefDecoder().decode(blobs, {1: BASE, 2: BASE, 3: BASE})
    assert got[1][0] is got[2][0] is got[3][0] is got[1][7]
    # Relative koids follow each process's own base (none: 0, as written).
    other = RefDecoder().decode({1: blobs[1], 2: blobs[2]}, {1: BASE})
    assert other[2][1].vmo_koid == 3 and other[1][1].vmo_koid == BASE + 3


def test_a_malformed_blob_is_an_error_not_wrong_references():
    with pytest.raises(ValueError):
        RefDecoder().decode({1: zlib.compress(b"[[1,[\"MAPPING\"],[],null]")}, {})
    with pytest.raises(zlib.error):
        RefDecoder().decode({1: b"not deflated"}, {})


def test_from_columns_equals_the_constructor():
    n = 3
    columns = ([1, 2, 3], ["a", "b", "c"], repeat("anon", n), (10, 20, None), [4, 5, 6],
               [0, 0, 1], [0, 2, 0], [1, None, 1], [0, 0, 0], [None, 8, None],
               [None, 9, None], [None, "/x", None], map(int, "123"))
    columns = tuple(list(c) for c in columns)
    built = from_columns(Vmo, n, *columns)
    assert built == [Vmo(*row) for row in zip(*columns, strict=True)]
    assert [hash(v) for v in built] == [hash(Vmo(*row)) for row in zip(*columns, strict=True)]
    assert all(type(v) is Vmo for v in built)
    with pytest.raises(AttributeError):
        built[0].koid = 5  # type: ignore[misc]


def test_from_columns_refuses_what_it_cannot_build():
    with pytest.raises(TypeError):  # a column short
        from_columns(VmoRef, 1, [1], [()], [()])
    with pytest.raises(ValueError):  # a column of another length
        from_columns(VmoRef, 2, [1, 2], [(), ()], [(), ()], [None])
    with pytest.raises(TypeError):  # __post_init__ would not run
        from_columns(Provenance, 0, *([()] * len(Provenance.__record_fields__)))
    assert from_columns(Mapping, 0, *([()] * len(Mapping.__record_fields__))) == []


def round_trip(maps: tuple[Mapping, ...], base: int | None = None) -> tuple[Mapping, ...]:
    from zxmem.store.maps import decode, encode, entry, parse

    texts: dict[str, int] = {}
    blob, _used = encode(maps, 1, lambda k: 1 if k < (1 << 32) else None, base,
                         lambda t: texts.setdefault(t, len(texts)))
    by_id = {i: t for t, i in texts.items()}
    return decode(parse(blob), base, lambda i: entry(by_id[i]))


def test_mappings_with_counts_of_one_value_not_in_pages_round_trip():
    # One value throughout, not a multiple of 1024: written once with the
    # divisor 1 (decoded as that value for every mapping).
    odd = tuple(Mapping(0x1000 * (i + 1) * 2, 0x1000 * (i + 1) * 2 + 0x1000, "rw-p", 0, 0, 0,
                        "", 5 + i, rss_bytes=5, pss_bytes=5, private_bytes=5,
                        shared_bytes=0, private_dirty_bytes=5, anonymous_bytes=5,
                        swap_bytes=None, swap_pss_bytes=None, vm_flags="rd wr")
                for i in range(3))
    assert round_trip(odd, base=5) == odd
    assert round_trip(odd[:1], base=5) == odd[:1]
    files = tuple(Mapping(0x400000 + 0x1000 * i, 0x401000 + 0x1000 * i, "r-xp", 0x1000 * i,
                          2049, 77, "/usr/lib/libx.so", inode_koid(2049, 77), rss_bytes=None)
                  for i in range(4))
    assert round_trip(files + odd, base=5) == files + odd


def test_mappings_with_unknown_counts_among_known_ones_round_trip():
    # Columns in pages with None among them (the decoder's slower path).
    known = tuple(Mapping(0x10000 * (i + 1), 0x10000 * (i + 1) + 0x2000, "rw-p", 0, 0, 0, "",
                          9 + i, rss_bytes=8192, pss_bytes=4096, private_bytes=4096,
                          shared_bytes=4096, private_dirty_bytes=0, anonymous_bytes=8192,
                          swap_bytes=0, swap_pss_bytes=0)
                  for i in range(3))
    unknown = (Mapping(0x90000, 0x91000, "r--p", 0, 2049, 78, "/etc/x", inode_koid(2049, 78)),)
    maps = known[:2] + unknown + known[2:]
    assert round_trip(maps, base=9) == maps
