"""``zxmem share PID``'s report (pure: a function of what
:func:`zxmem.collection.share_pages` read).

:func:`report` and :func:`approximate_report` give the report as plain data
(bytes; the ``--json`` document), :func:`render` and
:func:`render_approximate` the text.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any

from zxmem.model import PAGE_SIZE
from zxmem.textsafe import decode_name, escape_terminal, shorten_middle
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


def summary_line(r: Mapping[str, Any], units: str | None) -> str:
    """The answer in one line: what ``pid``'s exit frees, how much of it is
    shared and with how many processes (the table below says with whom)."""
    def fs(n: int) -> str:
        return format_size(n, units)

    n = len(r["sharers"])
    head = f"process {r['pid']}: frees {fs(r['freed_on_exit_bytes'])} on exit; "
    if n:
        noun = "process" if n == 1 else "processes"
        return head + f"shares {fs(r['shared_bytes'])} with {n} {noun}"
    if r["shared_bytes"]:
        return head + f"shares {fs(r['shared_bytes'])}, only with processes not read"
    return head + "shares no page"


def render(r: Mapping[str, Any], units: str | None, verbose: bool,
           width: int | None = None, color: bool = False) -> str:
    """:func:`report`'s text: the summary line, ``pid``'s command line and
    pages, then its sharers (with ``verbose``, each split by ``pid``'s
    mappings).

    ``width`` (a terminal's columns): names, command lines and paths are
    shortened in the middle and the explanations wrapped to fit; None:
    whole lines.  ``color``: sizes coloured by magnitude.
    """
    from zxmem.views.terminal import size_cell

    def fs(n: int) -> str:
        return format_size(n, units)

    def sz(n: int, w: int) -> str:
        return size_cell(fs(n), w, n, color)

    def fit(text: str, used: int) -> str:
        if width is None:
            return text
        return shorten_middle(text, max(8, width - used))

    lines = [summary_line(r, units),
             f"  {'command':<14}{fit(escape_terminal(r['name']), 16)}"]
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
    indent = 2 + 14 + 7 + 2
    for label, n, what in rows:
        parts = [what]
        if width is not None and indent + len(what) > width:
            import textwrap

            parts = textwrap.wrap(what, max(20, width - indent)) or [what]
        lines.append(f"  {label:<14}{sz(n, 7)}  {parts[0]}")
        lines.extend(" " * indent + part for part in parts[1:])
    lines += _sharer_lines(r["sharers"], verbose, sz, fit)
    return "\n".join(lines) + "\n"


def _sharer_lines(sharers: Sequence[Mapping[str, Any]], verbose: bool,
                  sz: Callable[[int, int], str], fit: Callable[[str, int], str]) -> list[str]:
    """:func:`render`'s table of the processes sharing pages (``sz``: a
    size cell of a width, ``fit``: a text shortened to the columns left)."""
    n = len(sharers)
    lines = ["", f"shared with {n} {'process' if n == 1 else 'processes'}:"]
    if n:
        lines.append(f"{'PID':>9} {'SHARED':>7} {'SWAP':>7} NAME")
    for s in sharers:
        lines.append(
            f"{s['pid']:>9} {sz(s['shared_bytes'], 7)} {sz(s['swap_shared_bytes'], 7)} "
            f"{fit(escape_terminal(s['name']), 26)}"
        )
        if verbose:
            for m in s.get("mappings", ()):
                span = f"{m['start']:x}-{m['end']:x}"
                lines.append(
                    f"{'':>9} {sz(m['shared_bytes'], 7)} {'':>7}   "
                    f"{span} {fit(escape_terminal(m['path']), 29 + len(span))}"
                )
    return lines


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


def render_approximate(r: Mapping[str, Any], units: str | None,
                       width: int | None = None, color: bool = False) -> str:
    """:func:`approximate_report`'s text (``width`` and ``color`` as for
    :func:`render`)."""
    from zxmem.views.terminal import size_cell

    name = escape_terminal(r["name"])
    if width is not None:
        name = shorten_middle(name, max(8, width - 16))
    lines = [f"process {r['pid']}: smaps_rollup, approximate",
             f"  {'command':<14}{name}"]
    for label, key in (("resident", "resident_bytes"), ("private", "private_bytes"),
                       ("shared", "shared_bytes"), ("PSS", "pss_bytes")):
        n = r[key]
        lines.append(f"  {label:<14}{size_cell(format_size(n, units), 7, n, color)}")
    return "\n".join(lines) + "\n"
