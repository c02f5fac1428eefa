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


def exact_scan(snapshot, args: argparse.Namespace, env, tag_pids=(), all_pids=False):
    """Run the page-level scan for the processes of ``snapshot``.

    ``all_pids``: scan every process under the /proc root, not only the
    snapshot's (sharing is only exact over the whole system).
    Returns ``(scan, why)``: ``why`` is None, or the reason nothing is exact
    (a saved snapshot, not root, no kpagecount, CONFIG_NO_PAGE_MAPCOUNT).
    """
    if getattr(args, "from_file", None) is not None:
        return None, "a saved snapshot has no page tables (needs the live system)"
    from zxmem.collection import exact_scan as scan_pages

    root = common.proc_root(args, env)
    pids = None if all_pids else [p.koid for p in snapshot.processes if not p.kernel_thread]
    scan = scan_pages(root, pids, tag_pids=tag_pids, release=snapshot.provenance.kernel)
    if scan.unavailable:
        return scan, scan.unavailable
    return scan, None


def exact_options(options, args: argparse.Namespace, env, keep_smaps: bool = False):
    """Collect options for ``--exact``: without smaps_rollup when the exact
    numbers will replace its numbers anyway (it would walk every page table
    a second time).  ``keep_smaps`` keeps it (e.g. for shmem swap)."""
    if keep_smaps or getattr(args, "from_file", None) is not None:
        return options
    from zxmem.collection import exact_available

    if not exact_available(common.proc_root(args, env)):
        return options
    return replace(options, memory=False)


def exact_snapshot(snapshot, args: argparse.Namespace, env, options=None):
    """``snapshot`` with exact per-process counts, or unchanged with a
    statement on stderr (and in the provenance) when that is impossible.

    ``options``: the collect options ``snapshot`` was read with; when they
    left smaps_rollup out and the scan fails after all, it is collected
    again with it, so the numbers shown are at least smaps'.
    """
    from zxmem.exact import apply_exact
    from zxmem.exact_views import scan_notes

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


def exact_vmos(snapshot, pid: int, args: argparse.Namespace, env):
    """``(snapshot, process)`` with exact numbers for the objects ``pid`` reaches.

    The whole system's pages are split as :func:`exact_graph` splits them
    (see there): ``pid``'s anonymous and clone objects keep the pages only
    it maps, and the pages it shares with other processes are listed as
    objects of their own, one per set of processes mapping them, with
    ``#shr`` = that set (plus unreadable mappers) and alloc = those pages.
    Without page-level data: the snapshot unchanged, and a statement on
    stderr.
    """
    with_maps = [p.koid for p in snapshot.processes if p.mappings]
    scan, why = exact_scan(snapshot, args, env, tag_pids=with_maps)
    if why:
        env.stderr.write(unavailable_message(why).replace(
            "showing smaps numbers instead",
            "alloc, parent, #chld and #shr are smaps-based"))
        return snapshot, snapshot.process(pid)
    from zxmem.exact_views import exact_vmos_view

    snapshot = exact_vmos_view(snapshot, scan, pid)
    return snapshot, snapshot.process(pid)


def exact_vmaps(snapshot, pid: int, args: argparse.Namespace, env):
    """``snapshot`` whose process ``pid`` has exact per-mapping numbers.

    Per mapping: resident = distinct pages (a page the process maps in two
    mappings counts in the first only, so the mappings add up to the
    process), private = pages no other process maps, PSS divided by
    processes, shared = resident − private.  Swap stays smaps'.
    """
    from zxmem.exact_views import exact_vmaps_view

    scan, why = exact_scan(snapshot, args, env, tag_pids=[pid], all_pids=True)
    if why:
        env.stderr.write(unavailable_message(why))
        return snapshot
    return exact_vmaps_view(snapshot, scan, pid)


def exact_graph(snapshot, args: argparse.Namespace, env):
    """``--exact`` for the whole-system views (memgraph, treemap).

    Processes get exact PSS/PRIVATE/SHARED (as ``ps --exact``).  When the
    snapshot has mappings (memory objects were read), every mapping gets
    exact resident/PSS/private/shared (a page the process maps twice counts
    in its first mapping), and the objects are made exact so that Fuchsia's
    treemap formula (a process's area = Σ over its objects of committed
    bytes ÷ share count) gives every process its exact PSS; see
    :func:`zxmem.exact_views.exact_objects_view`.
    """
    from zxmem.exact_views import exact_graph_view

    with_maps = [p.koid for p in snapshot.processes if p.mappings]
    scan, why = exact_scan(snapshot, args, env, tag_pids=with_maps)
    if why:
        env.stderr.write(unavailable_message(why))
        prov = replace(snapshot.provenance, notes=tuple(snapshot.provenance.notes)
                       + (f"--exact unavailable: {why}",))
        return replace(snapshot, provenance=prov)
    return exact_graph_view(snapshot, scan)
