"""``zxmem share PID``'s report (pure: a function of what
:func:`zxmem.collection.share_pages` read).

:func:`report` and :func:`approximate_report` give the report as plain data
(bytes; the ``--json`` document), :func:`render` and
:func:`render_approximate` the text.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from zxmem.model import PAGE_SIZE
from zxmem.textsafe import decode_name, escape_terminal
from zxmem.units import format_size


def report(pid: int, scan: Any, names: Mapping[int, str]) -> dict[str, Any]:
    """The share report of ``pid`` from a page scan that tagged it
    (:class:`zxmem.sources.pagemap.ExactScan`) and the names of ``pid`` and
    its sharers (``?`` for one not named)."""
    census = scan.census
    mine = scan.results[pid]
    vmas = scan.vmas.get(pid, [])
    overlap = census.overlap(pid)
    swap = census.shared_swap(pid)
    sharers = []
    for other in sorted(set(overlap) | set(swap)):
        per = overlap.get(other)
        total = int(per.sum()) * PAGE_SIZE if per is not None else 0
        entry: dict[str, Any] = {
            "pid": other,
            "name": names.get(other, "?"),
            "shared_bytes": total,
            "swap_shared_bytes": swap.get(other, 0) * PAGE_SIZE,
        }
        if per is not None:
            entry["mappings"] = [
                {
                    "start": vmas[i].start,
                    "end": vmas[i].end,
                    "path": decode_name(vmas[i].path),
                    "shared_bytes": int(per[i]) * PAGE_SIZE,
                }
                for i in per.nonzero()[0].tolist()
                if i < len(vmas)
            ]
        sharers.append(entry)
    sharers.sort(key=lambda e: (-e["shared_bytes"], -e["swap_shared_bytes"], e["pid"]))
    return {
        "pid": pid,
        "name": names.get(pid, "?"),
        "resident_bytes": mine.resident_bytes,
        "private_bytes": mine.private_bytes,
        "shared_bytes": mine.shared_bytes,
        "shared_unreadable_bytes": mine.shared_unseen_bytes,
        "pss_bytes": mine.pss_bytes,
        "swap_bytes": mine.swap_bytes,
        "swap_private_bytes": mine.swap_private_bytes,
        "swap_pss_bytes": mine.swap_pss_bytes,
        "ksm_bytes": mine.ksm_bytes,
        "freed_on_exit_bytes": mine.freed_on_exit_bytes,
        "unreadable_processes": [p for p, _ in scan.denied],
        "sharers": sharers,
        "notes": list(scan.notes),
    }


def render(r: Mapping[str, Any], units: str | None, verbose: bool) -> str:
    """:func:`report`'s text: ``pid``'s pages, then its sharers (with
    ``verbose``, each split by ``pid``'s mappings)."""
    def fs(n: int) -> str:
        return format_size(n, units)

    lines = [f"process {r['pid']}: {escape_terminal(r['name'])}"]
    rows = [
        ("resident", r["resident_bytes"], "distinct pages mapped"),
        ("private", r["private_bytes"], "mapped by no other process"),
        ("shared", r["shared_bytes"],
         f"of which {fs(r['shared_unreadable_bytes'])} also mapped by processes not "
         "read (unreadable, or started during the scan)"),
        ("PSS", r["pss_bytes"], "each page divided by the processes mapping it"),
        ("swap", r["swap_bytes"], f"of which {fs(r['swap_private_bytes'])} private"),
        ("freed on exit", r["freed_on_exit_bytes"], "private pages + private swap"),
    ]
    for label, n, what in rows:
        lines.append(f"  {label:<14}{fs(n):>7}  {what}")
    n = len(r["sharers"])
    lines.append("")
    lines.append(f"shared with {n} {'process' if n == 1 else 'processes'}:")
    if n:
        lines.append(f"{'PID':>9} {'SHARED':>7} {'SWAP':>7} NAME")
    for s in r["sharers"]:
        lines.append(
            f"{s['pid']:>9} {fs(s['shared_bytes']):>7} {fs(s['swap_shared_bytes']):>7} "
            f"{escape_terminal(s['name'])}"
        )
        if verbose:
            for m in s.get("mappings", ()):
                lines.append(
                    f"{'':>9} {fs(m['shared_bytes']):>7} {'':>7}   "
                    f"{m['start']:x}-{m['end']:x} {escape_terminal(m['path'])}"
                )
    return "\n".join(lines) + "\n"


def approximate_report(pid: int, name: str, why: str,
                       rollup: Mapping[bytes, int]) -> dict[str, Any]:
    """The report without page-level data: ``smaps_rollup``'s numbers
    (``rollup``: its fields in bytes), said to be approximate (``why``)."""
    g = rollup.get
    private = g(b"Private_Clean", 0) + g(b"Private_Dirty", 0) + g(b"Private_Hugetlb", 0)
    shared = g(b"Shared_Clean", 0) + g(b"Shared_Dirty", 0) + g(b"Shared_Hugetlb", 0)
    return {
        "pid": pid,
        "name": name,
        "exact": False,
        "unavailable": why,
        "resident_bytes": g(b"Rss"),
        "private_bytes": private,
        "shared_bytes": shared,
        "pss_bytes": g(b"Pss"),
        "swap_pss_bytes": g(b"SwapPss"),
        "freed_on_exit_bytes": None,
        "sharers": None,
    }


def render_approximate(r: Mapping[str, Any], units: str | None) -> str:
    """:func:`approximate_report`'s text."""
    lines = [f"process {r['pid']}: {escape_terminal(r['name'])} (smaps_rollup, approximate)"]
    for label, key in (("resident", "resident_bytes"), ("private", "private_bytes"),
                       ("shared", "shared_bytes"), ("PSS", "pss_bytes")):
        lines.append(f"  {label:<14}{format_size(r[key], units):>7}")
    return "\n".join(lines) + "\n"
