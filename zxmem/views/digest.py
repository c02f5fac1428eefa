"""Printing a digest (spec fuchsia-tools §9.9 ``mem_digest.py``, §9.5).

Human (``mem_digest.py -o human``)::

    Blobs: 66.37MiB
    ...                         every non-zero row, sorted by name
    <blank>
    Total: 874.1MiB             the sum of the rows printed
    <blank>
    Undigested:                 only when some VMO is undigested
    \\t<name[koid] ,name[koid]>: <size>   larger sharing pools first, then size

Sizes are ``%.4g`` of B/KiB/MiB/GiB (:func:`zxmem.units.format_size_digest`);
the pool separator really is ``" ,"``, as the scripts print it.

CSV (``-o csv``): ``Name, bytes`` for every row, zero ones included, sorted
by name.  JSON: every row in bytes, the VMOs of each bucket and pool.

Unknowns (Linux, unprivileged: VMOs whose committed bytes could not be
read) are in no row, and never count as 0.  When there are some, and only
then: ``Orphaned`` (kernel VMO bytes minus the rows, which would absorb
them) prints as ``Orphaned: unknown`` (CSV: an empty bytes field), the
human ``Total:`` line ends with ``(leaves out N VMOs of unknown committed
bytes)``, and the CSV ends with a ``# ...`` line saying the same.  JSON has
``orphaned_bytes: null`` and the ``unknown_*`` fields.

``undigested_summary`` (``--undigested``) adds what ``mem --digest
--undigested`` prints: ``<n> VMOs, <m> Undigested``, ``<k> Process
summaries`` and the ``mem`` summary (:mod:`zxmem.views.mem`) of the
undigested VMOs alone.
"""

from __future__ import annotations

import csv
import io
import json

from zxmem.digest import ORPHANED, UNDIGESTED, Digest
from zxmem.model import Snapshot
from zxmem.summary import Summary
from zxmem.textsafe import escape_terminal
from zxmem.units import format_size_digest


def _sorted_rows(digest: Digest) -> list[tuple[str, int]]:
    return sorted(digest.rows(), key=lambda r: r[0])


def _rows_with_unknown(digest: Digest) -> list[tuple[str, int | None]]:
    """The rows, with ``(Orphaned, None)`` where unknowns made it unknown."""
    rows: list[tuple[str, int | None]] = list(digest.rows())
    if digest.orphaned_unknown:
        rows.append((ORPHANED, None))
    return sorted(rows, key=lambda r: r[0])


def _left_out(digest: Digest, verb: str = "leaves") -> str:
    more = f", {digest.unknown_unsized} more of unknown size" if digest.unknown_unsized \
        else ""
    return (f"{verb} out {digest.unknown_vmos} VMOs of unknown committed bytes "
            f"(size {{size}}{more})")


def pool_label(digest: Digest, koids: tuple[int, ...]) -> str:
    return " ,".join(f"{digest.process_names.get(k, '?')}[{k}]" for k in koids)


def render_human(digest: Digest, undigested_summary: Summary | None = None) -> str:
    out = io.StringIO()
    total = 0
    for name, size in _rows_with_unknown(digest):
        if size is None:
            out.write(f"{escape_terminal(name)}: unknown\n")
            continue
        if size == 0:
            continue
        out.write(f"{escape_terminal(name)}: {format_size_digest(size)}\n")
        total += size
    mark = ""
    if digest.unknown_vmos:
        size = format_size_digest(digest.unknown_size_bytes)
        mark = " (" + _left_out(digest).format(size=size) + ")"
    out.write(f"\nTotal: {format_size_digest(total)}{mark}\n")
    if digest.undigested:
        out.write(f"\n{UNDIGESTED}:\n")
        for pool in digest.undigested:
            label = escape_terminal(pool_label(digest, pool.process_koids))
            out.write(f"\t{label}: {format_size_digest(pool.size_bytes)}\n")
    if undigested_summary is not None:
        from zxmem.views.mem import render_processes

        out.write(f"\n{digest.vmo_count} VMOs, {len(digest.undigested_vmo_koids)} "
                  f"{UNDIGESTED}\n")
        out.write(f"{len(undigested_summary.processes)} Process summaries\n")
        out.write(render_processes(undigested_summary))
    return out.getvalue()


def _csv_field(text: str) -> str:
    """A CSV field: escaped for the terminal, quoted when it holds , or "."""
    text = escape_terminal(text)
    if any(c in text for c in ',"'):
        return '"' + text.replace('"', '""') + '"'
    return text


def render_csv(digest: Digest, undigested_summary: Summary | None = None) -> str:
    """``Name, bytes`` rows; with a summary, its ``koid,name,P,S,T`` rows instead."""
    if undigested_summary is not None:
        buf = io.StringIO()
        w = csv.writer(buf, lineterminator="\n")
        for s in undigested_summary.processes:
            w.writerow([s.koid, escape_terminal(s.name), s.sizes.private_bytes,
                        s.sizes.scaled_bytes, s.sizes.total_bytes])
        return buf.getvalue()
    text = "".join(f"{_csv_field(name)}, {'' if size is None else size}\n"
                   for name, size in _rows_with_unknown(digest))
    if digest.unknown_vmos:
        text += "# the rows " + _left_out(digest, "leave").format(
            size=f"{digest.unknown_size_bytes} bytes") + "\n"
    return text


def render_json(
    digest: Digest,
    snapshot: Snapshot,
    undigested_summary: Summary | None = None,
    notes: tuple[str, ...] = (),
) -> str:
    vmos = snapshot.vmos

    def vmo_entry(koid: int, process_koid: int | None = None) -> dict:
        v = vmos[koid]
        entry = {"koid": koid, "name": v.name, "kind": v.kind,
                 "committed_bytes": v.committed_bytes}
        if process_koid is not None:
            entry["process_koid"] = process_koid
        return entry

    doc = {
        "buckets": [
            {
                "name": b.name,
                "size_bytes": b.size_bytes,
                "vmos": [vmo_entry(a.vmo_koid, a.process_koid) for a in b.vmos],
            }
            for b in digest.buckets
        ],
        "undigested_bytes": digest.undigested_bytes,
        "undigested": [
            {
                "processes": [{"koid": k, "name": digest.process_names.get(k)}
                              for k in pool.process_koids],
                "size_bytes": pool.size_bytes,
                "vmos": [vmo_entry(k) for k in pool.vmo_koids],
            }
            for pool in digest.undigested
        ],
        "kernel_bytes": digest.kernel_bytes,
        "orphaned_bytes": digest.orphaned_bytes,
        "total_bytes": sum(size for _, size in digest.rows()),
        "rows": [{"name": n, "size_bytes": s} for n, s in _sorted_rows(digest)],
        "vmo_count": digest.vmo_count,
        "unknown_vmos": digest.unknown_vmos,
        "unknown_size_bytes": digest.unknown_size_bytes,
        "unknown_unsized_vmos": digest.unknown_unsized,
        "source": snapshot.provenance.source,
        "notes": list(notes),
    }
    if undigested_summary is not None:
        from zxmem.views.mem import summary_json

        doc["undigested_summary"] = summary_json(undigested_summary)
    return json.dumps(doc, indent=1, ensure_ascii=True) + "\n"
