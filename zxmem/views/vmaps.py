"""``vmaps``: one process's address space (spec fuchsia-tools §3.3).

One line per entry, depth-first in address order (the kernel's pre-order in
Zircon):

* ``/A`` the address space, named ``'proc:PID'``; ``/R`` the root region,
  named ``'root'`` (both span ``vm.mmap_min_addr`` to the end of user space);
* ``R`` regions (:mod:`zxmem.regions`: a loaded ELF object, a thread stack
  with its guard page, other runs that belong together), at depth 2;
* ``M`` mappings (smaps entries), at depth 3 inside a region, else 2.

Line layout, with ``max_depth`` = max(2, deepest entry)::

    TYPE START-END [PERMS] SIZE:sz [RES:res KOID:vmo] 'NAME'

TYPE is ``/A`` or ``/R`` then (max_depth − 3) spaces (a single space when
max_depth is 2, as the C original's ``%*s`` with width −1 prints), or
(depth − 2) spaces, the letter, (max_depth − depth) spaces.  Addresses up to
0xffffffff print as eight underscores and eight hex digits, others as 16
hex digits; the end is exclusive.  SIZE is ``format_size`` right-aligned in
5 (mappings) or 9; RES in 4, the koid in 5.  Regions print 19 spaces in place
of the RES and koid fields.  Names are escaped for the terminal, not quoted.

Opt-in Linux columns (after ``:res``, each ``%4s`` + tag, blank in non-mapping
rows): ``:pss`` (smaps Pss), ``:prv`` (Private_Clean + Private_Dirty), ``:swp``
(Swap).
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from itertools import compress, pairwise
from operator import attrgetter, sub

from zxmem.model import DEFAULT_MMAP_MIN_ADDR, INODE_KOID_BASE, Mapping, Process, Snapshot
from zxmem.regions import address_space, mapping_name, object_name
from zxmem.textsafe import escape_terminal
from zxmem.units import format_size

EXTRA_COLUMNS = ("pss", "private", "swap")
_EXTRA_TAG = {"pss": "pss", "private": "prv", "swap": "swp"}
_EXTRA_FIELD = {"pss": "pss_bytes", "private": "private_bytes", "swap": "swap_bytes"}


@dataclass(frozen=True, slots=True)
class VmapsOptions:
    extra: tuple[str, ...] = ()  # subset of EXTRA_COLUMNS, printed in that order
    aspace: tuple[int, int] | None = None  # /A range; None: computed
    min_addr: int = DEFAULT_MMAP_MIN_ADDR  # vm.mmap_min_addr, the /A start when computed
    units: str | None = None  # --units letter; None = natural
    # Terminal layout: fit lines into ``width`` columns (short koids, names
    # shortened in the middle, addresses dropped when the name needs room);
    # None = whole lines, Fuchsia's layout.
    width: int | None = None
    color: bool = False  # sizes coloured by magnitude
    total: bool = False  # a total line at the end (not in Fuchsia's layout)


def _addr(a: int) -> str:
    if a <= 0xFFFFFFFF:
        return f"________{a:08x}"
    return f"{a:016x}"


def _perms(p: str) -> str:
    return p[:3]


@dataclass(frozen=True, slots=True)
class Entry:
    """One vmaps line before formatting."""

    kind: str  # "aspace", "vmar", "mapping"
    depth: int
    start: int
    end: int
    name: str
    mapping: Mapping | None = None


def entries(process: Process, snapshot: Snapshot, opts: VmapsOptions) -> list[Entry]:
    """The entries in print order (pure)."""
    maps = process.mappings or ()
    start, end = opts.aspace or address_space(maps, opts.min_addr)
    out = [
        Entry("aspace", 0, start, end, f"proc:{process.koid}"),
        Entry("vmar", 1, start, end, "root"),
    ]
    regions = sorted(process.regions or (), key=lambda r: r.start)
    vmos = snapshot.vmos
    region_at = {r.mapping_indices[0]: r for r in regions if r.mapping_indices}
    i = 0
    n = len(maps)
    while i < n:
        r = region_at.get(i)
        if r is not None:
            out.append(Entry("vmar", 2, r.start, r.end, r.name))
            for j in r.mapping_indices:
                m = maps[j]
                out.append(Entry("mapping", 3, m.start, m.end, _name(m, vmos), m))
            i = r.mapping_indices[-1] + 1
            continue
        m = maps[i]
        out.append(Entry("mapping", 2, m.start, m.end, _name(m, vmos), m))
        i += 1
    return out


def _name(m: Mapping, vmos) -> str:
    vmo = vmos.get(m.vmo_koid) if vmos else None
    return vmo.name if vmo is not None else mapping_name(m)


class _Memo(dict):
    """Format each distinct value once (sizes, names and perms repeat)."""

    def __init__(self, fn) -> None:
        super().__init__()
        self.fn = fn

    def __missing__(self, key):
        value = self[key] = self.fn(key)
        return value


def _hex(values: list[int]) -> list[str]:
    out = list(map("{:016x}".format, values))
    if values and min(values) <= 0xFFFFFFFF:
        out = [_addr(v) for v in values]
    return out


def _names(maps: Sequence[Mapping], snapshot: Snapshot) -> list[str]:
    """Each mapping's object name, escaped for the terminal (column at once)."""
    vmos = snapshot.vmos
    koids = list(map(_KOID, maps))
    by_key = _Memo(lambda key: escape_terminal(object_name(*key)))
    keys = zip(map(_PATH, maps), map(_DEV, maps), map(_INO, maps), strict=True)
    names = list(map(by_key.__getitem__, keys))
    # Copy-on-write clones: an inode but a sequence koid.
    for i in compress(range(len(maps)), map(_INO, maps)):
        if koids[i] < INODE_KOID_BASE:
            names[i] = escape_terminal(mapping_name(maps[i]))
    if vmos:
        for i, vmo in enumerate(map(vmos.get, koids)):
            if vmo is not None:
                names[i] = escape_terminal(vmo.name)
    return names


_KOID = attrgetter("vmo_koid")
_PATH = attrgetter("path")
_DEV = attrgetter("dev")
_INO = attrgetter("inode")


def render(process: Process, snapshot: Snapshot, opts: VmapsOptions | None = None) -> str:
    """The vmaps text for ``process`` (every line ends with a newline)."""
    return "".join(render_chunks(process, snapshot, opts))


_CHUNK = 2048  # lines per piece of text


def _mapping_columns(maps: Sequence[Mapping], snapshot: Snapshot, regions: list,
                     max_depth: int, extra: list[str], size: _Memo) -> tuple[list[list], str]:
    """The mapping lines as columns (one list per field) and the %-template
    that makes a line of one row of them."""
    starts = list(map(attrgetter("start"), maps))
    ends = list(map(attrgetter("end"), maps))
    types = ["M" + " " * (max_depth - 2)] * len(maps)
    inner = " M" + " " * (max_depth - 3)
    for r in regions:
        for j in r.mapping_indices:
            types[j] = inner
    perms = list(map(_Memo(lambda p: p[:3]).__getitem__, map(attrgetter("perms"), maps)))
    sizes = list(map(size.__getitem__, map(sub, ends, starts)))
    res = list(map(size.__getitem__, map(attrgetter("rss_bytes"), maps)))
    columns: list[list]
    if min(starts) > 0xFFFFFFFF:
        # The common case on 64-bit: both addresses are 16 hex digits, so
        # they are formatted inside the one %-template per line.
        columns = [types, starts, ends, perms, sizes, res]
        template = "%s %016x-%016x %s %5s:sz %4s:res"
    else:
        columns = [types, _hex(starts), _hex(ends), perms, sizes, res]
        template = "%s %s-%s %s %5s:sz %4s:res"
    for c in extra:
        columns.append(list(map(size.__getitem__, map(attrgetter(_EXTRA_FIELD[c]), maps))))
        template += " %4s:" + _EXTRA_TAG[c]
    columns.append(list(map(_KOID, maps)))
    columns.append(_names(maps, snapshot))
    return columns, template + " %5d:vmo '%s'\n"


def render_chunks(
    process: Process, snapshot: Snapshot, opts: VmapsOptions | None = None
) -> Iterator[str]:
    """The vmaps text in pieces of at most a few thousand lines.

    Built a column at a time (``map`` over the mappings in C, each distinct
    size and name formatted once), because a process may have tens of
    thousands of mappings and the command's budget is a few times the
    kernel's cost of printing smaps.
    """
    opts = opts or VmapsOptions()
    if opts.width is not None or opts.color:
        yield _render_fitted(process, snapshot, opts)
        return
    maps = process.mappings or ()
    regions = sorted(process.regions or (), key=lambda r: r.start)
    max_depth = 3 if regions else 2
    start, end = opts.aspace or address_space(maps, opts.min_addr)
    extra = [c for c in EXTRA_COLUMNS if c in opts.extra]
    blank = " " * (19 + 10 * len(extra))
    units = opts.units
    size = _Memo(lambda n: format_size(n, units))

    def top(letter: str, name: str) -> str:
        pad = " " * (max_depth - 3) if max_depth > 2 else " "
        return (
            f"/{letter}{pad} {_addr(start)}-{_addr(end)} "
            f"{size[end - start]:>9}:sz{blank} '{escape_terminal(name)}'\n"
        )

    yield top("A", f"proc:{process.koid}") + top("R", "root")
    if not maps:
        if opts.total:
            yield total_line(process, opts)
        return

    columns, template = _mapping_columns(maps, snapshot, regions, max_depth, extra, size)
    # Region lines go before their first mapping; the mapping lines are
    # formatted a slice at a time, so the whole text is never held twice.
    region_type = "R" + " " * (max_depth - 2)
    region_lines = {
        r.mapping_indices[0]: (
            f"{region_type} {_addr(r.start)}-{_addr(r.end)} "
            f"{size[r.end - r.start]:>9}:sz{blank} '{escape_terminal(r.name)}'\n"
        )
        for r in regions
        if r.mapping_indices
    }
    n = len(maps)
    cuts = sorted(set(range(0, n, _CHUNK)).union(region_lines)) + [n]
    for lo, hi in pairwise(cuts):
        line = region_lines.get(lo)
        piece = "".join(map(template.__mod__, zip(*[c[lo:hi] for c in columns], strict=True)))
        yield line + piece if line else piece
    if opts.total:
        yield total_line(process, opts)


def _sum(values: list[int | None]) -> tuple[int | None, int]:
    """(sum of the known values or None if none is known, count unknown)."""
    known = [v for v in values if v is not None]
    return (sum(known) if known or not values else None), len(values) - len(known)


def total_line(process: Process, opts: VmapsOptions) -> str:
    """``total: N mappings, SIZE:sz RES:res`` (and the extra columns shown):
    sums over the mappings, as pmap's total line (a page mapped twice
    counts twice in :res, once shared out in :pss); ``(N unknown)`` after a
    sum that leaves out values the kernel did not give."""
    maps = process.mappings or ()
    units = opts.units
    parts = [f"{format_size(sum(m.end - m.start for m in maps), units)}:sz"]
    fields = [("res", "rss_bytes")] + [
        (_EXTRA_TAG[c], _EXTRA_FIELD[c]) for c in EXTRA_COLUMNS if c in opts.extra]
    for tag, field in fields:
        total, unknown = _sum([getattr(m, field) for m in maps])
        text = format_size(total, units)
        if opts.color:
            from zxmem.textsafe import colored
            from zxmem.views.terminal import size_color

            text = colored(text, size_color(total))
        parts.append(f"{text}:{tag}" + (f" ({unknown} unknown)" if unknown else ""))
    noun = "mapping" if len(maps) == 1 else "mappings"
    return f"total: {len(maps)} {noun}, " + " ".join(parts) + "\n"


def _fitted_lines(lines: list[tuple[str, int, int, str, str]], width: int | None) -> list[str]:
    """The lines (type, start, end, body, name) fitted into ``width``: the end
    address dropped, then the start, when a name would get fewer than
    MIN_NAME columns; names shortened in the middle to what is left."""
    from zxmem.textsafe import shorten_middle
    from zxmem.views.terminal import MIN_NAME, visible

    # Tier 0: both addresses (34 columns), 1: the start (17), 2: neither.
    tier = 0
    if width is not None and lines:
        widest = max(len(t) + visible(b) for t, _, _, b, _ in lines) + 1 + 34 + 1 + 2
        while tier < 2 and width - widest < MIN_NAME:
            tier += 1
            widest -= 17
    out = []
    for kind, a, b, body, name in lines:
        if tier == 0:
            head = f"{kind} {_addr(a)}-{_addr(b)} {body}"
        elif tier == 1:
            head = f"{kind} {_addr(a)} {body}"
        else:
            head = f"{kind} {body}"
        if width is not None:
            name = shorten_middle(name, max(1, width - visible(head) - 3))
        out.append(f"{head} '{name}'\n")
    return out


def _render_fitted(process: Process, snapshot: Snapshot, opts: VmapsOptions) -> str:
    """The terminal layout: Fuchsia's columns, fitted into ``opts.width``.

    File koids print as short labels (:func:`zxmem.views.terminal.short_koids`,
    numbered by first mapping in address order: the same labels as ``vmos``
    of the process); names are shortened in the middle (a path keeps its
    file name); when a name would get fewer than MIN_NAME columns the end
    address is left out, then the start address too.  Sizes are coloured
    by magnitude with ``opts.color``.
    """
    from zxmem.views.terminal import koid_text, short_koids, size_cell

    maps = process.mappings or ()
    regions = sorted(process.regions or (), key=lambda r: r.start)
    max_depth = 3 if regions else 2
    start, end = opts.aspace or address_space(maps, opts.min_addr)
    extra = [c for c in EXTRA_COLUMNS if c in opts.extra]
    units = opts.units
    color = opts.color
    width = opts.width
    labels = short_koids(m.vmo_koid for m in maps) if width is not None else None
    names = _names(maps, snapshot)
    blank = " " * (19 + 10 * len(extra))

    def sz(n: int | None, w: int, used: bool = True) -> str:
        # Only memory in use is coloured (:res and the extras), not :sz.
        return size_cell(format_size(n, units), w, n, color and used)

    # (type, start, end, body before the name, name): body is the same in
    # every tier, the addresses are what a narrow terminal drops.
    lines: list[tuple[str, int, int, str, str]] = []
    pad = " " * (max_depth - 3) if max_depth > 2 else " "
    for letter, name in (("A", f"proc:{process.koid}"), ("R", "root")):
        lines.append((f"/{letter}{pad}", start, end,
                      f"{sz(end - start, 9, False)}:sz{blank}", escape_terminal(name)))
    region_at = {r.mapping_indices[0]: r for r in regions if r.mapping_indices}
    inner = {j for r in regions for j in r.mapping_indices}
    for i, m in enumerate(maps):
        r = region_at.get(i)
        if r is not None:
            lines.append(("R" + " " * (max_depth - 2), r.start, r.end,
                          f"{sz(r.end - r.start, 9, False)}:sz{blank}", escape_terminal(r.name)))
        kind = " M" + " " * (max_depth - 3) if i in inner else "M" + " " * (max_depth - 2)
        body = f"{m.perms[:3]} {sz(m.end - m.start, 5, False)}:sz {sz(m.rss_bytes, 4)}:res"
        for c in extra:
            body += f" {sz(getattr(m, _EXTRA_FIELD[c]), 4)}:{_EXTRA_TAG[c]}"
        body += f" {koid_text(m.vmo_koid, labels):>5}:vmo"
        lines.append((kind, m.start, m.end, body, names[i]))

    out = _fitted_lines(lines, width)
    if opts.total:
        out.append(total_line(process, opts))
    return "".join(out)



def render_json(process: Process, snapshot: Snapshot, opts: VmapsOptions | None = None) -> str:
    """The same entries as JSON; every size in bytes, ``null`` when unknown."""
    opts = opts or VmapsOptions()
    out = []
    for e in entries(process, snapshot, opts):
        rec: dict = {
            "type": e.kind,
            "depth": e.depth,
            "start": e.start,
            "end": e.end,
            "size_bytes": e.end - e.start,
            "name": e.name,
        }
        m = e.mapping
        if m is not None:
            rec.update(
                perms=m.perms,
                offset=m.offset,
                dev=f"{os.major(m.dev):02x}:{os.minor(m.dev):02x}",
                inode=m.inode,
                path=m.path,
                vmo_koid=m.vmo_koid,
                rss_bytes=m.rss_bytes,
                pss_bytes=m.pss_bytes,
                private_bytes=m.private_bytes,
                shared_bytes=m.shared_bytes,
                anonymous_bytes=m.anonymous_bytes,
                swap_bytes=m.swap_bytes,
                swap_pss_bytes=m.swap_pss_bytes,
                vm_flags=m.vm_flags.split() if m.vm_flags is not None else None,
            )
        out.append(rec)
    doc = {"pid": process.koid, "name": process.name, "entries": out}
    return json.dumps(doc, separators=(",", ":")) + "\n"

