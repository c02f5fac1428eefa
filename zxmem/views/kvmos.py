"""``k vmos hidden|all|PID``: Zircon's kernel VMO lists (spec fuchsia-tools §8.1).

Row format, all variants (the pre-``obj`` kernel layout: Linux has no
kernel object pointer to print)::

    "  " handle(10) " " rights(6) " " koid(5) " " parent(6) " " #chld(5) " "
    #map(4) " " #shr(4) " " size(7) " " alloc(7) " " name

* ``hidden``: title ``"Hidden" VMOs, largest first:``, the handle header,
  every object no process maps, largest alloc first, then the unattributed
  remainder of meminfo ``Shmem`` as the last row (koid 0, Zircon's
  "kernel-only" koid), the header again, and a total line over every row
  above it: ``  total: N VMOs + [unattributed Shmem], size S, alloc A``
  (N counts the objects; the remainder is named apart because it is not
  one object; ``(K unknown)`` follows a sum that leaves out K unknown
  values).  The handle
  column says who holds the object: ``PID:FD`` of the first process holding
  a descriptor to it (``+N`` when N more processes hold one), its rights
  that descriptor's; ``-`` when no process holds it (a SysV segment, a
  tmpfs file, a kernel-held dma-buf).
* ``all``: title ``All VMOs, largest first:`` and every object, same columns.
* ``PID``: ``process [PID]:``, ``Handles to VMOs:``, the handle header, one
  row per descriptor (handle = the fd), ``  total: N VMOs, size S, alloc A``
  (descriptors to one object counted each time, as Zircon does), ``Mapped
  VMOs:``, the non-handle header, one row per mapping, the header again.

Sizes go through ``format_size`` (``unit`` fixes the unit, as ``-uX``);
``alloc`` is ``phys`` for device memory, ``-`` when unknown.
"""

from __future__ import annotations

import json
from collections.abc import Iterable

from zxmem.model import Process, Snapshot, Vmo, VmoRef
from zxmem.textsafe import escape_terminal
from zxmem.units import format_size
from zxmem.views.vmos import count_text, rights_text, vmo_record

_COLUMNS = " koid parent #chld #map #shr    size   alloc name"
HANDLE_HEADER = "      handle rights " + _COLUMNS
PLAIN_HEADER = "           -      - " + _COLUMNS
HOLDER_HEADER = "      holder rights " + _COLUMNS


def _alloc(vmo: Vmo, unit: str | None) -> str:
    if vmo.kind == "phys":
        return "phys"
    return format_size(vmo.committed_bytes, unit)


class Fit:
    """The terminal layout of a listing: short file koids (``labels``,
    :func:`zxmem.views.terminal.short_koids`), names shortened in the
    middle to end within ``width`` columns (None: whole), alloc coloured by
    magnitude with ``color``; with a width, the handle column is as wide
    as its widest cell (``handle_w``, at least its title's 6), not 10."""

    __slots__ = ("labels", "width", "color", "handle_w")

    def __init__(self, labels: dict[int, str] | None = None, width: int | None = None,
                 color: bool = False, handles: Iterable[str] = ()) -> None:
        self.labels = labels
        self.width = width
        self.color = color
        self.handle_w = max([6, *map(len, handles)]) if width is not None else 10

    def header(self, title: str) -> str:
        """A header line with the handle column ``title`` at ``handle_w``."""
        return f"  {title:>{self.handle_w}} {'rights' if title != '-' else '-':>6} {_COLUMNS}"


def row(handle: str, rights: str, vmo: Vmo, unit: str | None = None,
        fit: Fit | None = None) -> str:
    """One row in the §8.1 layout (with the trailing newline); ``fit``: the
    terminal layout (:class:`Fit`)."""
    name = escape_terminal(vmo.name) if vmo.name else "-"
    if fit is None:
        parent = str(vmo.parent_koid) if vmo.parent_koid else "-"
        return (
            f"  {handle:>10} {rights:>6} {vmo.koid:>5} {parent:>6} {vmo.num_children:>5} "
            f"{count_text(vmo.num_mappings):>4} {vmo.share_count:>4} "
            f"{format_size(vmo.size_bytes, unit):>7} "
            f"{_alloc(vmo, unit):>7} {name}\n"
        )
    from zxmem.textsafe import shorten_middle
    from zxmem.views.terminal import koid_text, size_cell, visible

    labels = fit.labels
    parent = koid_text(vmo.parent_koid, labels) if vmo.parent_koid else "-"
    alloc = (f"{'phys':>7}" if vmo.kind == "phys" else
             size_cell(format_size(vmo.committed_bytes, unit), 7, vmo.committed_bytes,
                       fit.color))
    head = (f"  {handle:>{fit.handle_w}} {rights:>6} {koid_text(vmo.koid, labels):>5} {parent:>6} "
            f"{vmo.num_children:>5} {count_text(vmo.num_mappings):>4} {vmo.share_count:>4} "
            f"{format_size(vmo.size_bytes, unit):>7} {alloc} ")
    if fit.width is not None:
        name = shorten_middle(name, max(8, fit.width - visible(head)))
    return head + name + "\n"


def _handle_ref(snapshot: Snapshot, pid: int, koid: int) -> VmoRef | None:
    p = snapshot.process(pid)
    for ref in (p.vmo_refs or ()) if p else ():
        if ref.vmo_koid == koid and "HANDLE" in ref.via:
            return ref
    return None


def holder_cells(snapshot: Snapshot, koid: int) -> tuple[str, str]:
    """(handle, rights) cells naming who holds the object, or ``-``."""
    pids = snapshot.vmo_holders.get(koid, ())
    if not pids:
        return "-", "-"
    ref = _handle_ref(snapshot, pids[0], koid)
    fd = "" if ref is None or ref.fd is None else f":{ref.fd}"
    more = f"+{len(pids) - 1}" if len(pids) > 1 else ""
    rights = rights_text(ref) if ref is not None else "-"
    return f"{pids[0]}{fd}{more}", rights


def _sum_text(values: list[int | None], unit: str | None) -> str:
    """A sum of the known values; ``-`` when none is known, and the count
    of unknown ones when only some are (never a silent partial sum)."""
    known = [v for v in values if v is not None]
    if values and not known:
        return "-"
    text = format_size(sum(known), unit)
    missing = len(values) - len(known)
    return f"{text} ({missing} unknown)" if missing else text


def _total(vmos: list[Vmo], unit: str | None, width: int | None = None) -> str:
    """The total line: every row above it, the Shmem remainder included
    (it is named apart because it is not one object: it is the part of
    ``Shmem`` in /proc/meminfo that no listed object accounts for).  Wider
    than ``width``, alloc goes on a second line."""
    from zxmem.model import REMAINDER_KOID, REMAINDER_NAME

    size = _sum_text([v.size_bytes for v in vmos], unit)
    alloc = _sum_text([v.committed_bytes for v in vmos if v.kind != "phys"], unit)
    objects = sum(1 for v in vmos if v.koid != REMAINDER_KOID)
    rest = f" + {REMAINDER_NAME}" if objects != len(vmos) else ""
    line = f"  total: {objects} VMOs{rest}, size {size}, alloc {alloc}\n"
    if width is not None and len(line) - 1 > width:
        line = f"  total: {objects} VMOs{rest}, size {size},\n         alloc {alloc}\n"
    return line


def hidden_vmos(snapshot: Snapshot) -> list[Vmo]:
    return [snapshot.vmos[k] for k in snapshot.hidden_vmo_koids if k in snapshot.vmos]


def all_vmos(snapshot: Snapshot) -> list[Vmo]:
    """Every object, largest first (the Shmem remainder, koid 0, last)."""
    from zxmem.model import REMAINDER_KOID, largest_first

    out = largest_first(v for k, v in snapshot.vmos.items() if k != REMAINDER_KOID)
    if REMAINDER_KOID in snapshot.vmos:
        out.append(snapshot.vmos[REMAINDER_KOID])
    return out


def _listing(title: str, vmos: list[Vmo], snapshot: Snapshot, unit: str | None,
             width: int | None, color: bool) -> str:
    cells = [holder_cells(snapshot, vmo.koid) for vmo in vmos]
    fit = None
    header = HOLDER_HEADER
    if width is not None or color:
        from zxmem.views.terminal import short_koids

        # Labels numbered down the listing.
        labels = short_koids(v.koid for v in vmos) if width is not None else None
        fit = Fit(labels, width, color, (h for h, _ in cells))
        header = fit.header("holder")
    lines = [title + "\n", header + "\n"]
    for (handle, rights), vmo in zip(cells, vmos, strict=True):
        lines.append(row(handle, rights, vmo, unit, fit))
    lines.append(header + "\n")
    lines.append(_total(vmos, unit, width))
    return "".join(lines)


def render_hidden(snapshot: Snapshot, unit: str | None = None, width: int | None = None,
                  color: bool = False) -> str:
    """The hidden listing; ``width`` (a terminal's columns): short file
    koids (f1, f2, ... in listing order) and names shortened to fit, None:
    whole lines; ``color``: alloc coloured by magnitude."""
    return _listing('"Hidden" VMOs, largest first:', hidden_vmos(snapshot), snapshot, unit,
                    width, color)


def render_all(snapshot: Snapshot, unit: str | None = None, width: int | None = None,
               color: bool = False) -> str:
    """Every object (``width`` and ``color`` as for :func:`render_hidden`)."""
    return _listing("All VMOs, largest first:", all_vmos(snapshot), snapshot, unit,
                    width, color)


def _unknown(koid: int) -> Vmo:
    return Vmo(koid=koid, name="", kind="anon", size_bytes=None, committed_bytes=None)


def render_process(process: Process, snapshot: Snapshot, unit: str | None = None,
                   width: int | None = None, color: bool = False) -> str:
    """A process's descriptors and mappings; ``width``: short file koids
    (numbered as ``vmos`` and ``vmaps`` of the process number them:
    :func:`zxmem.views.vmos.object_labels`) and names shortened to fit;
    ``color``: alloc coloured by magnitude."""
    handles = [r for r in process.vmo_refs or () if "HANDLE" in r.via]
    mapped = [r for r in process.vmo_refs or () if "HANDLE" not in r.via]
    fit = None
    handle_header, plain_header = HANDLE_HEADER, PLAIN_HEADER
    if width is not None or color:
        from zxmem.views.vmos import object_labels

        fit = Fit(object_labels(process) if width is not None else None, width, color,
                  (str(r.fd) for r in handles))
        handle_header, plain_header = fit.header("handle"), fit.header("-")
    lines = [f"process [{process.koid}]:\n", "Handles to VMOs:\n", handle_header + "\n"]
    held = []
    for ref in handles:
        vmo = snapshot.vmos.get(ref.vmo_koid) or _unknown(ref.vmo_koid)
        held.append(vmo)
        fd = "-" if ref.fd is None else str(ref.fd)
        lines.append(row(fd, rights_text(ref), vmo, unit, fit))
    lines.append(_total(held, unit, width))
    lines.append("Mapped VMOs:\n")
    lines.append(plain_header + "\n")
    for ref in mapped:
        vmo = snapshot.vmos.get(ref.vmo_koid) or _unknown(ref.vmo_koid)
        lines.append(row("-", "-", vmo, unit, fit))
    lines.append(plain_header + "\n")
    return "".join(lines)


# ---------------------------------------------------------------------------
# JSON


def vmo_json(vmo: Vmo, snapshot: Snapshot) -> dict:
    holders = []
    for pid in snapshot.vmo_holders.get(vmo.koid, ()):
        p = snapshot.process(pid)
        ref = _handle_ref(snapshot, pid, vmo.koid)
        holders.append({
            "pid": pid,
            "name": p.name if p else None,
            "fd": ref.fd if ref else None,
            "handle_rights": list(ref.handle_rights) if ref else [],
        })
    return {**vmo_record(vmo), "holders": holders}


def render_json(which: str, snapshot: Snapshot, process: Process | None = None) -> str:
    """``hidden``/``all``: ``{"vmos": [...], "notes": [...]}``; a PID:
    ``{"pid", "name", "handles": [...], "mapped": [...]}`` (sizes in bytes)."""
    notes = list(snapshot.provenance.notes)
    if process is not None:
        def ref_json(ref: VmoRef) -> dict:
            vmo = snapshot.vmos.get(ref.vmo_koid) or _unknown(ref.vmo_koid)
            d = vmo_json(vmo, snapshot)
            d["fd"] = ref.fd
            d["handle_rights"] = list(ref.handle_rights)
            return d

        refs = process.vmo_refs or ()
        doc = {
            "pid": process.koid,
            "name": process.name,
            "handles": [ref_json(r) for r in refs if "HANDLE" in r.via],
            "mapped": [ref_json(r) for r in refs if "HANDLE" not in r.via],
            "notes": notes,
        }
    else:
        vmos = hidden_vmos(snapshot) if which == "hidden" else all_vmos(snapshot)
        doc = {"which": which, "vmos": [vmo_json(v, snapshot) for v in vmos], "notes": notes}
    return json.dumps(doc, separators=(",", ":")) + "\n"
