"""Printing a digest (spec fuchsia-tools §9.9 ``mem_digest.py``, §9.5).

Human (``mem_digest.py -o human``)::

    Blobs: 66.37MiB
    ...                         every non-zero row, sorted by name
    <blank>
    Total: 874.1MiB             the sum of the rows printed
    <blank>
    Undigested:                 only when some VMO is undigested
    \\t<name[koid] ,name[koid]>: <size>   larger sharing pools first, then size

``-v`` (``verbose``) adds, under each bucket row, ``\\t<process name>:
<size>`` for each process through which its VMOs were assigned (largest
first), and under each pool line, for each of its processes,
``\\t\\t<name[koid]> VMO Summaries:`` then ``\\t\\t\\t<VMO name> (<count>):
<size>`` (the pool's VMOs by name, largest first); ``-vv`` alone lists them
one by one instead: ``\\t\\t<name[koid]> VMOs:`` then
``\\t\\t\\t<VMO name>[<koid>]: <size>`` sorted by name.  That is the layout
of ``mem_digest.py -v`` / ``-vv``.

Sizes are ``%.4g`` of B/KiB/MiB/GiB (:func:`zxmem.units.format_size_digest`);
the pool separator really is ``" ,"``, as the scripts print it.

CSV (``-o csv``): ``Name, bytes`` for every row, zero ones included, sorted
by name.  JSON (zxmem's own; mem_digest.py has none): every row in bytes,
the VMOs of each bucket and pool.

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


def _bucket_detail(digest: Digest, snapshot: Snapshot, name: str) -> list[str]:
    """``-v`` under a bucket: ``\\t<process name>: <size>`` for each process
    its VMOs were assigned through, largest first (ties in snapshot order)."""
    bucket = next((b for b in digest.buckets if b.name == name), None)
    if bucket is None or not bucket.vmos:
        return []
    order = {p.koid: i for i, p in enumerate(snapshot.processes)}
    sizes: dict[int, int] = {}
    for a in bucket.vmos:
        sizes[a.process_koid] = sizes.get(a.process_koid, 0) + a.committed_bytes
    entries = sorted(sizes.items(), key=lambda kv: order.get(kv[0], len(order)))
    entries.sort(key=lambda kv: kv[1], reverse=True)
    lines = []
    for koid, size in entries:
        proc = snapshot.process(koid)
        pname = proc.name if proc is not None else "?"
        lines.append(f"\t{escape_terminal(pname)}: {format_size_digest(size)}\n")
    return lines


def _pool_detail(digest: Digest, snapshot: Snapshot, pool, verbose: bool) -> list[str]:
    """``-v``: each process's VMO summaries by name; ``-vv``: its VMOs."""
    vmos = [snapshot.vmos[k] for k in pool.vmo_koids]
    lines = []
    for koid in pool.process_koids:
        full = escape_terminal(f"{digest.process_names.get(koid, '?')}[{koid}]")
        if verbose:
            lines.append(f"\t\t{full} VMO Summaries:\n")
            groups: dict[str, list[int]] = {}
            for v in vmos:
                acc = groups.setdefault(v.name, [0, 0])
                acc[0] += 1
                acc[1] += v.committed_bytes or 0
            for vname, (count, size) in sorted(groups.items(), key=lambda kv: kv[1][1],
                                               reverse=True):
                lines.append(f"\t\t\t{escape_terminal(vname)} ({count}): "
                             f"{format_size_digest(size)}\n")
        else:
            lines.append(f"\t\t{full} VMOs:\n")
            for v in sorted(vmos, key=lambda v: v.name):
                lines.append(f"\t\t\t{escape_terminal(v.name)}[{v.koid}]: "
                             f"{format_size_digest(v.committed_bytes or 0)}\n")
    return lines


def render_human(
    digest: Digest,
    undigested_summary: Summary | None = None,
    *,
    snapshot: Snapshot | None = None,
    verbose: bool = False,
    extra_verbose: bool = False,
) -> str:
    """mem_digest.py's human output; ``verbose``/``extra_verbose`` (``-v``,
    ``-vv``, which need ``snapshot``) add its per-process detail."""
    out = io.StringIO()
    total = 0
    detail = snapshot is not None and (verbose or extra_verbose)
    for name, size in _rows_with_unknown(digest):
        if size is None:
            out.write(f"{escape_terminal(name)}: unknown\n")
            continue
        if size == 0:
            continue
        out.write(f"{escape_terminal(name)}: {format_size_digest(size)}\n")
        total += size
        if verbose and snapshot is not None and name != UNDIGESTED:
            out.writelines(_bucket_detail(digest, snapshot, name))
    mark = ""
    if digest.unknown_vmos:
        left = format_size_digest(digest.unknown_size_bytes)
        mark = " (" + _left_out(digest).format(size=left) + ")"
    out.write(f"\nTotal: {format_size_digest(total)}{mark}\n")
    note = orphaned_note(digest, snapshot)
    if note:
        out.write(f"\n{note}\n")
    if digest.undigested:
        out.write(f"\n{UNDIGESTED}:\n")
        for pool in digest.undigested:
            label = escape_terminal(pool_label(digest, pool.process_koids))
            out.write(f"\t{label}: {format_size_digest(pool.size_bytes)}\n")
            if detail and snapshot is not None:
                out.writelines(_pool_detail(digest, snapshot, pool, verbose))
    if undigested_summary is not None:
        from zxmem.views.mem import render_processes

        out.write(f"\n{digest.vmo_count} VMOs, {len(digest.undigested_vmo_koids)} "
                  f"{UNDIGESTED}\n")
        out.write(f"{len(undigested_summary.processes)} Process summaries\n")
        out.write(render_processes(undigested_summary))
    return out.getvalue()


# What "Orphaned" is on Linux, where Fuchsia's word means nothing: the
# kernel's VMOs are its LRU pages (spec linux-kernel B.5), so what no process
# maps is mostly page cache of files read or written earlier, plus shmem and
# tmpfs files no process maps.
ORPHANED_LINUX = (
    "Orphaned, on Linux: page cache no process maps (files read or written\n"
    "earlier, kept in memory and dropped by the kernel when memory is needed),\n"
    "plus shmem and tmpfs files no process maps (zxmem k vmos hidden lists them)."
)


def orphaned_note(digest: Digest, snapshot: Snapshot | None) -> str | None:
    """The line explaining a positive ``Orphaned`` row of a Linux snapshot."""
    if snapshot is None or snapshot.provenance.source != "linux":
        return None
    if digest.orphaned_bytes is None or digest.orphaned_bytes <= 0:
        return None
    return ORPHANED_LINUX


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
                # null: the source lists no VMOs (ffx's ComponentDigest).
                "vmos": None if digest.vmo_count is None
                else [vmo_entry(a.vmo_koid, a.process_koid) for a in b.vmos],
            }
            for b in digest.buckets
        ],
        "undigested_bytes": digest.undigested_bytes,
        "undigested": None if digest.vmo_count is None else [
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
