"""``--exact`` for the commands: page-level counts replace smaps' numbers.

Shared by the commands that take ``--exact``; not a command itself (the CLI
skips modules whose name starts with an underscore).
"""

from __future__ import annotations

import argparse
from dataclasses import replace

from zxmem.commands import common

EXACT_HELP = (
    "count pages, not mappings (root): PRIVATE = pages no other process maps, PSS "
    "divided by processes; reads pagemap, kpagecount and kpageflags"
)


def add_exact(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--exact", action="store_true", help=EXACT_HELP)


def unavailable_message(why: str) -> str:
    return (
        f"zxmem: --exact unavailable: {why}; showing smaps numbers instead "
        "(approximate: a page mapped twice counts as shared, PSS divides by mappings)\n"
    )


def exact_scan(snapshot, args: argparse.Namespace, env, tag_pids=()):
    """Run the page-level scan for the processes of ``snapshot``.

    Returns ``(scan, why)``: ``why`` is None, or the reason nothing is exact
    (a saved snapshot, not root, no kpagecount, CONFIG_NO_PAGE_MAPCOUNT).
    """
    if getattr(args, "from_file", None) is not None:
        return None, "a saved snapshot has no page tables (needs the live system)"
    from zxmem.sources import pagemap

    root = common.proc_root(args, env)
    pids = [p.koid for p in snapshot.processes if not p.kernel_thread]
    scan = pagemap.scan(root, pids, release=snapshot.provenance.kernel, tag_pids=tag_pids)
    if scan.unavailable:
        return scan, scan.unavailable
    return scan, None


def scan_notes(scan) -> list[str]:
    from zxmem.exact import APPROX_NOTE, EXACT_NOTE

    notes = [EXACT_NOTE, APPROX_NOTE, *scan.notes]
    if scan.denied:
        notes.append(
            f"--exact: {len(scan.denied)} processes' page tables not readable; "
            "pages they map count as shared with unreadable processes"
        )
    return notes


def exact_snapshot(snapshot, args: argparse.Namespace, env):
    """``snapshot`` with exact per-process counts, or unchanged with a
    statement on stderr (and in the provenance) when that is impossible."""
    from zxmem.exact import apply_exact

    scan, why = exact_scan(snapshot, args, env)
    if why:
        env.stderr.write(unavailable_message(why))
        prov = replace(
            snapshot.provenance,
            notes=tuple(snapshot.provenance.notes) + (f"--exact unavailable: {why}",),
        )
        return replace(snapshot, provenance=prov)
    return apply_exact(snapshot, scan.results, scan_notes(scan))
