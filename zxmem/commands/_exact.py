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


def exact_options(options, args: argparse.Namespace, env, keep_smaps: bool = False):
    """Collect options for ``--exact``: without smaps_rollup when the exact
    numbers will replace its numbers anyway (it would walk every page table
    a second time).  ``keep_smaps`` keeps it (e.g. for shmem swap)."""
    if keep_smaps or getattr(args, "from_file", None) is not None:
        return options
    from zxmem.sources import pagemap

    root = common.proc_root(args, env)
    why, _ = pagemap.availability(root, _release(root))
    if why:
        return options
    return replace(options, memory=False)


def _release(root: str) -> str | None:
    try:
        with open(f"{root.rstrip('/') or '/'}/sys/kernel/osrelease") as f:
            return f.read().strip()
    except OSError:
        return None


def exact_snapshot(snapshot, args: argparse.Namespace, env, options=None):
    """``snapshot`` with exact per-process counts, or unchanged with a
    statement on stderr (and in the provenance) when that is impossible.

    ``options``: the collect options ``snapshot`` was read with; when they
    left smaps_rollup out and the scan fails after all, it is collected
    again with it, so the numbers shown are at least smaps'.
    """
    from zxmem.exact import apply_exact

    scan, why = exact_scan(snapshot, args, env)
    if why:
        env.stderr.write(unavailable_message(why))
        if options is not None and not getattr(options, "memory", True):
            snapshot = common.snapshot_from_args(args, env, replace(options, memory=True))
        prov = replace(
            snapshot.provenance,
            notes=tuple(snapshot.provenance.notes) + (f"--exact unavailable: {why}",),
        )
        return replace(snapshot, provenance=prov)
    notes = scan_notes(scan)
    if options is not None and not getattr(options, "memory", True):
        notes.append(
            "--exact: smaps_rollup not read (the page tables replace it): "
            "swap is anonymous SwapPss only, hugetlb split unknown"
        )
        # Nothing else says these were unreadable: smaps was never tried.
        denied = tuple(snapshot.provenance.denied) + tuple(
            (f"pagemap:{pid}", why) for pid, why in scan.denied
        )
        snapshot = replace(snapshot, provenance=replace(snapshot.provenance, denied=denied))
        # A process that exited before its page tables were read is left
        # out, as one that exits during any scan (DESIGN.md).
        denied_pids = {pid for pid, _ in scan.denied}
        kept = tuple(
            p for p in snapshot.processes
            if p.kernel_thread or p.koid in scan.results or p.koid in denied_pids
        )
        snapshot = replace(snapshot, processes=kept)
        n = sum(1 for p in kept if p.koid in denied_pids)
        if n:
            env.stderr.write(
                f"zxmem: {n} {'process' if n == 1 else 'processes'} not readable "
                "(page tables denied even to root)\n"
            )
    return apply_exact(snapshot, scan.results, notes)
