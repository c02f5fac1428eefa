"""Grouping mappings into regions (zxmem.regions)."""

from __future__ import annotations

import os

from zxmem.model import Mapping, Region, inode_koid
from zxmem.regions import (
    ANON_NAME,
    TASK_SIZE_47,
    TASK_SIZE_56,
    address_space,
    find_regions,
    mapping_name,
    object_name,
)

FE = os.makedev(0xFE, 0)
SHM = os.makedev(0, 1)
LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
K = 0x1000


def m(start, end, perms, path="", inode=0, dev=None, offset=0, koid=None):
    dev = (FE if inode else 0) if dev is None else dev
    if koid is None:
        koid = inode_koid(dev, inode) if inode else 1
    return Mapping(start * K, end * K, perms, offset, dev, inode, path, koid)


def libc(base):
    return [
        m(base, base + 2, "r--p", LIBC, 7),
        m(base + 2, base + 10, "r-xp", LIBC, 7, offset=2 * K),
        m(base + 10, base + 12, "r--p", LIBC, 7, offset=10 * K),
        m(base + 12, base + 13, "r--p", LIBC, 7, offset=12 * K, koid=5),  # relro, written
        m(base + 13, base + 14, "rw-p", LIBC, 7, offset=13 * K, koid=6),  # .data
        m(base + 14, base + 17, "rw-p"),  # .bss beyond the file
    ]


def test_elf_object_with_bss():
    maps = [m(0x100, 0x101, "rw-p")] + libc(0x200) + [m(0x300, 0x301, "rw-p")]
    (r,) = find_regions(maps)
    assert r.kind == "elf" and r.name == "libc.so.6"
    assert r.mapping_indices == (1, 2, 3, 4, 5, 6)
    assert (r.start, r.end) == (0x200 * K, (0x200 + 17) * K)


def test_bss_must_be_adjacent_and_writable():
    maps = libc(0x200)
    maps[-1] = m(0x218, 0x21B, "rw-p")  # a gap before it
    (r,) = find_regions(maps)
    assert r.mapping_indices == (0, 1, 2, 3, 4)


def test_data_file_and_following_anon_are_not_an_elf_object():
    # A locale file mapped once, then an unrelated anonymous mapping.
    maps = [m(0x10, 0x11, "r--p", "/usr/lib/locale/C.utf8/LC_TIME", 9), m(0x11, 0x13, "rw-p")]
    assert find_regions(maps) == ()


def test_thread_stack_with_guard_page():
    maps = [m(0x50, 0x51, "---p"), m(0x51, 0x151, "rw-p")]
    (r,) = find_regions(maps)
    assert (r.kind, r.name, r.mapping_indices) == ("stack", "stack", (0, 1))


def test_stack_wins_over_a_reservation_before_it():
    # [arena rw][guard ---][stack rw]: the guard belongs to the stack.
    maps = [m(0x40, 0x50, "rw-p"), m(0x50, 0x51, "---p"), m(0x51, 0x151, "rw-p")]
    (r,) = find_regions(maps)
    assert r.kind == "stack" and r.mapping_indices == (1, 2)


def test_heap_arena_with_reserved_tail():
    maps = [m(0x40, 0x41, "rw-p"), m(0x41, 0x80, "---p")]
    (r,) = find_regions(maps)
    assert (r.kind, r.name) == ("group", "reservation")


def test_memfd_in_pieces_is_a_group():
    path = "/memfd:buf (deleted)"
    maps = [m(0x10, 0x12, "rw-s", path, 3, dev=SHM), m(0x12, 0x14, "r--s", path, 3, dev=SHM,
                                                     offset=2 * K)]
    (r,) = find_regions(maps)
    assert (r.kind, r.name) == ("group", "memfd:buf")


def test_single_mappings_make_no_region():
    assert find_regions([m(0x10, 0x20, "rw-p"), m(0x30, 0x40, "r--p")]) == ()
    assert find_regions([]) == ()


def test_alternating_protections_make_no_region():
    maps = [m(i, i + 1, "r--p" if i % 2 else "rw-p") for i in range(0x10, 0x30)]
    assert find_regions(maps) == ()


def test_names():
    assert object_name("") == ANON_NAME
    assert object_name("[heap]") == "[heap]"
    assert object_name(LIBC, FE, 7) == LIBC
    assert object_name("/memfd:x y (deleted)", SHM, 4) == "memfd:x y"
    assert object_name("/SYSV0000002a (deleted)", SHM, 5) == "SYSV0000002a"
    assert object_name("/dev/zero (deleted)", SHM, 6) == "[anon_shmem]"
    assert object_name("/gone.so (deleted)", FE, 8) == "/gone.so (deleted)"
    clone = m(0x10, 0x11, "rw-p", "/x/libfoo.so (deleted)", 7, koid=12)
    assert mapping_name(clone) == "data:libfoo.so"


def test_address_space():
    maps = [m(0x10, 0x11, "rw-p"), m(0xFFFFFFFFFF600, 0xFFFFFFFFFF601, "--xp", "[vsyscall]")]
    assert address_space(maps, 0x1000) == (0x1000, TASK_SIZE_47)
    high = [m((1 << 50) // K, (1 << 50) // K + 1, "rw-p")]
    assert address_space(high, 0x10000) == (0x10000, TASK_SIZE_56)


# -- the columnar grouping against a plain one ---------------------------------
#
# regions_of_columns (and find_regions, which hands it a record's columns)
# finds file runs from where the (dev, inode) identity changes.  The function
# below is the grouping as the module's docstring states it, mapping by
# mapping, with nothing skipped: both must agree on any address space.


def _plain_regions(maps):
    out = []
    n = len(maps)
    i = 0

    def plain_anon(x):
        return x.inode == 0 and not x.path

    while i < n:
        a = maps[i]
        if a.inode:
            j = i + 1
            while j < n and (maps[j].dev, maps[j].inode) == (a.dev, a.inode):
                j += 1
            elf = (a.offset == 0 and not (a.dev == SHM and a.inode)
                   and any(x.perms[2] == "x" for x in maps[i:j]))
            last = j
            if elf and j < n:
                b = maps[j]
                if (plain_anon(b) and b.start == maps[j - 1].end and b.perms[:2] == "rw"
                        and b.end - b.start <= maps[j - 1].end - a.start):
                    last = j + 1
            if last - i >= 2:
                name = os.path.basename(a.path.removesuffix(" (deleted)"))
                if a.dev == SHM:
                    name = object_name(name, SHM, a.inode)
                out.append(Region(a.start, maps[last - 1].end, name,
                                  "elf" if elf else "group", tuple(range(i, last))))
                i = last
                continue
        elif plain_anon(a) and i + 1 < n and plain_anon(maps[i + 1]) \
                and maps[i + 1].start == a.end:
            b = maps[i + 1]
            if a.perms[:3] == "---" and b.perms[:2] == "rw":
                out.append(Region(a.start, b.end, "stack", "stack", (i, i + 1)))
                i += 2
                continue
            c = maps[i + 2] if i + 2 < n else None
            guard = (c is not None and plain_anon(c) and c.start == b.end
                     and c.perms[:2] == "rw")
            if a.perms[:2] == "rw" and b.perms[:3] == "---" and not guard:
                out.append(Region(a.start, b.end, "reservation", "group", (i, i + 1)))
                i += 2
                continue
        i += 1
    return tuple(out)


_PERMS = ("r--p", "r-xp", "rw-p", "---p", "rw-s", "r--s", "rwxp", "--xp")
_PATHS = ("/lib/a.so", "/lib/b.so (deleted)", "/memfd:x\n\"y\u202e (deleted)", "/SYSV00000001",
          "/dev/zero (deleted)", "", "[heap]", "[stack]", "[anon:\x1b[31m]")


def _random_space(rng, n):
    """``n`` mappings in address order: runs of one file or shmem object
    (sometimes from offset 0), anonymous ones, guards; gaps or none."""
    maps = []
    at = 0x10
    while len(maps) < n:
        at += rng.choice((0, 0, 0, 1, 5))
        if rng.random() < 0.5:  # a file or shmem object in 1-5 pieces
            path = rng.choice(_PATHS[:5])
            dev = SHM if path.startswith(("/memfd", "/SYSV", "/dev/zero")) else FE
            inode = rng.choice((3, 4, 7, 2**40))
            off = rng.choice((0, 0, 2))
            for _ in range(rng.randint(1, 5)):
                size = rng.randint(1, 4)
                maps.append(m(at, at + size, rng.choice(_PERMS), path, inode, dev=dev,
                              offset=off * K))
                at, off = at + size, off + size
        else:
            size = rng.randint(1, 40)
            path = rng.choice(("", "", "", "[heap]", "[anon:\x1b[31m]"))
            maps.append(m(at, at + size, rng.choice(_PERMS), path))
            at += size
    return maps[:n]


def test_columns_group_as_the_plain_walk_does():
    import random

    from zxmem.regions import regions_of_columns

    rng = random.Random(11)
    spaces = [[], [m(0x10, 0x11, "rw-p")], [m(0x10, 0x11, "r-xp", LIBC, 7)], libc(0x200)]
    spaces += [_random_space(rng, rng.randint(1, 60)) for _ in range(3000)]
    found = 0
    for maps in spaces:
        want = _plain_regions(maps)
        found += len(want)
        assert find_regions(maps) == want
        columns = [[getattr(x, f) for x in maps]
                   for f in ("start", "end", "perms", "offset", "dev", "inode", "path")]
        assert regions_of_columns(*columns) == want
    assert found > 3000  # the random spaces do form regions of every kind
    kinds = {r.kind for maps in spaces for r in _plain_regions(maps)}
    assert kinds == {"elf", "group", "stack"}


def test_short_permissions_do_not_break_the_grouping():
    # A malformed recorded maps line may give any perms text.
    maps = [m(0x10, 0x11, "r", LIBC, 7), m(0x11, 0x12, "", LIBC, 7), m(0x12, 0x13, "rw")]
    (r,) = find_regions(maps)
    assert (r.kind, r.mapping_indices) == ("group", (0, 1))
