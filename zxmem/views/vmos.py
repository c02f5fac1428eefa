"""``vmos``: the memory objects one process reaches (spec fuchsia-tools §4.3).

Rows in kernel order as Zircon prints them: first the objects the process
holds through handles (descriptors, in fd order), then one row per mapping
(address order).  Duplicates are kept: an object mapped twice, or held and
mapped, appears once per reference.  The header is printed before and after
the rows::

    rights  koid parent #chld #map #shr    size   alloc name

``rights`` is six letters ``rwxmdt`` (``-`` for rights the handle lacks) for a
handle row and a single ``-`` for a mapping row.  On Linux only ``r`` and ``w``
(the descriptor's open mode) have a meaning; the others stay ``-``.
``parent`` is the parent koid of a copy-on-write clone (``-`` otherwise);
``#chld`` live clones; ``#map`` mappings in all processes read; ``#shr``
processes mapping it (``-`` when unknown: a Fuchsia capture does not record
``#map``); ``size`` and ``alloc`` via ``format_size`` (``phys`` for device
memory, ``-`` when unknown); ``name`` is ``-`` when empty.
"""

from __future__ import annotations

import json

from zxmem.model import Process, Snapshot, Vmo, VmoRef
from zxmem.textsafe import escape_terminal
from zxmem.units import format_size

HEADER = "rights  koid parent #chld #map #shr    size   alloc name"

_RIGHT_LETTERS = (
    ("READ", "r"),
    ("WRITE", "w"),
    ("EXECUTE", "x"),
    ("MAP", "m"),
    ("DUPLICATE", "d"),
    ("TRANSFER", "t"),
)


def rights_text(ref: VmoRef) -> str:
    if "HANDLE" not in ref.via:
        return "-"
    have = set(ref.handle_rights)
    return "".join(letter if right in have else "-" for right, letter in _RIGHT_LETTERS)


def alloc_text(vmo: Vmo) -> str:
    if vmo.kind == "phys":
        return "phys"
    return format_size(vmo.committed_bytes)


def count_text(count: int | None) -> str:
    """A count column's cell: ``-`` when unknown."""
    return "-" if count is None else str(count)


def _unknown(koid: int) -> Vmo:
    """An object the snapshot references but does not describe."""
    return Vmo(koid=koid, name="", kind=None, size_bytes=None, committed_bytes=None,
               num_mappings=None)


def rows(process: Process, snapshot: Snapshot) -> list[tuple[VmoRef, Vmo]]:
    """(reference, object) pairs in print order."""
    out = []
    for ref in process.vmo_refs or ():
        vmo = snapshot.vmos.get(ref.vmo_koid) or _unknown(ref.vmo_koid)
        out.append((ref, vmo))
    return out


def alloc_cell(vmo: Vmo, units: str | None, color: bool) -> str:
    """The ``alloc`` cell, right-aligned in 7, coloured by magnitude."""
    from zxmem.views.terminal import size_cell

    if vmo.kind == "phys":
        return f"{'phys':>7}"
    return size_cell(format_size(vmo.committed_bytes, units), 7, vmo.committed_bytes, color)


def object_labels(process: Process) -> dict[int, str]:
    """Short labels of the process's file koids (``f1``, ...): numbered by
    first mapping in address order (as ``vmaps`` numbers them), then the
    objects held only by descriptors, in descriptor order."""
    from zxmem.views.terminal import short_koids

    refs = process.vmo_refs or ()
    mapped = [r.vmo_koid for r in refs if "HANDLE" not in r.via]
    held = [r.vmo_koid for r in refs if "HANDLE" in r.via]
    return short_koids(mapped + held)


def render(process: Process, snapshot: Snapshot, units: str | None = None,
           width: int | None = None, color: bool = False) -> str:
    """The vmos table (header, rows, header).

    ``width`` (a terminal's columns): file koids as short labels
    (:func:`object_labels`) and names shortened in the middle to fit;
    None: whole lines, full koids.  ``color``: alloc coloured by magnitude.
    """
    from zxmem.textsafe import shorten_middle
    from zxmem.views.terminal import koid_text

    labels = object_labels(process) if width is not None else None
    prefix = 6 + 1 + 5 + 1 + 6 + 1 + 5 + 1 + 4 + 1 + 4 + 1 + 7 + 1 + 7 + 1
    lines = [HEADER + "\n"]
    for ref, vmo in rows(process, snapshot):
        if labels is not None:
            parent = koid_text(vmo.parent_koid, labels) if vmo.parent_koid else "-"
            koid = koid_text(vmo.koid, labels)
        else:
            parent = str(vmo.parent_koid) if vmo.parent_koid else "-"
            koid = str(vmo.koid)
        name = escape_terminal(vmo.name) if vmo.name else "-"
        if width is not None:
            name = shorten_middle(name, max(8, width - prefix))
        alloc = alloc_cell(vmo, units, color) if units or color else f"{alloc_text(vmo):>7}"
        lines.append(
            f"{rights_text(ref):>6} {koid:>5} {parent:>6} {vmo.num_children:>5} "
            f"{count_text(vmo.num_mappings):>4} {vmo.share_count:>4} "
            f"{format_size(vmo.size_bytes, units):>7} "
            f"{alloc} {name}\n"
        )
    lines.append(HEADER + "\n")
    return "".join(lines)


def vmo_record(vmo: Vmo) -> dict:
    """A memory object's JSON fields; sizes in bytes, ``null`` when unknown."""
    return {
        "koid": vmo.koid,
        "name": vmo.name,
        "kind": vmo.kind,
        "parent_koid": vmo.parent_koid,
        "num_children": vmo.num_children,
        "num_mappings": vmo.num_mappings,
        "share_count": vmo.share_count,
        "size_bytes": vmo.size_bytes,
        "committed_bytes": vmo.committed_bytes,
        "swap_bytes": vmo.swap_bytes,
        "dev": vmo.dev,
        "inode": vmo.inode,
        "path": vmo.path,
    }


def render_json(process: Process, snapshot: Snapshot) -> str:
    """Rows as JSON records; sizes in bytes, ``null`` when unknown."""
    out = []
    for ref, vmo in rows(process, snapshot):
        out.append(
            {
                "via": list(ref.via),
                "handle_rights": list(ref.handle_rights),
                "fd": ref.fd,
                **vmo_record(vmo),
            }
        )
    doc = {"pid": process.koid, "name": process.name, "vmos": out}
    return json.dumps(doc, separators=(",", ":")) + "\n"
