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
    from zxmem.sources import pagemap

    root = common.proc_root(args, env)
    if all_pids:
        from zxmem.sources.linux import list_pids

        pids = list_pids(root)
    else:
        pids = [p.koid for p in snapshot.processes if not p.kernel_thread]
    release = snapshot.provenance.kernel or _release(root)
    scan = pagemap.scan(root, pids, release=release, tag_pids=tag_pids)
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


def exact_vmos(snapshot, pid: int, args: argparse.Namespace, env):
    """``snapshot`` with exact numbers for the objects ``pid`` maps.

    For each anonymous or clone object of ``pid`` (one VMA each):

    * alloc: its distinct resident pages (the zero page left out), less
      the pages it still shares with its parent object;
    * parent: after ``fork``, the parent process's anonymous object whose
      pages this VMA still shares (the most pages, if several) — the
      copy-on-write relation of Zircon's clones; the parent's ``#chld``
      counts it;
    * ``#chld``: for ``pid``'s own objects, the VMAs of its children that
      still share their pages;
    * ``#shr``: 1 + the other processes that map some of its pages.

    File and shmem objects keep their numbers (page cache and allocated
    pages are the kernel's exact counts already).  Without page-level data:
    the snapshot unchanged, and a statement on stderr.
    """
    from types import MappingProxyType

    from zxmem.model import PAGE_SIZE

    process = snapshot.process(pid)
    children = [p.koid for p in snapshot.processes if p.ppid == pid]
    tagged = {pid, *children}
    if process.ppid:
        tagged.add(process.ppid)
    scan, why = exact_scan(snapshot, args, env, tag_pids=tagged)
    if why:
        env.stderr.write(unavailable_message(why).replace(
            "showing smaps numbers instead",
            "alloc, parent, #chld and #shr are smaps-based"))
        return snapshot
    census = scan.census
    if pid not in scan.results:
        return snapshot
    vmos = dict(snapshot.vmos)
    cow = ("anon", "clone")

    def koids_of(x: int) -> list[int | None]:
        """The object koid of each VMA (tag) of process ``x``."""
        proc = snapshot.process(x)
        by_start = {m.start: m.vmo_koid for m in (proc.mappings or ())} if proc else {}
        return [by_start.get(v.start) for v in scan.vmas.get(x, ())]

    mine = koids_of(pid)
    resident = census.tag_counts(pid).tolist()
    alloc: dict[int, int] = {}
    for tag, koid in enumerate(mine):
        # One VMA's objects only (not [vdso], one object for every process).
        if koid in vmos and vmos[koid].kind in cow and vmos[koid].num_mappings <= 1:
            alloc[koid] = alloc.get(koid, 0) + (resident[tag] if tag < len(resident) else 0)
    changes: dict[int, dict] = {k: {"committed_bytes": v * PAGE_SIZE} for k, v in alloc.items()}

    # Copy-on-write: VMAs that still share pages with the parent process's.
    pp = process.ppid
    if pp in scan.results and pp in scan.vmas:
        theirs = koids_of(pp)
        best: dict[int, tuple[int, int]] = {}
        for (tag, ptag), n in census.pair_overlap(pid, pp).items():
            if n > best.get(tag, (0, 0))[1]:
                best[tag] = (ptag, n)
        shared_with_parent: dict[int, int] = {}
        for tag, (ptag, n) in best.items():
            child, parent = mine[tag], theirs[ptag] if ptag < len(theirs) else None
            if (child in changes and parent != child and parent in vmos
                    and vmos[parent].kind in cow and vmos[parent].num_mappings <= 1):
                changes[child]["parent_koid"] = parent
                shared_with_parent[child] = shared_with_parent.get(child, 0) + n
                pc = changes.setdefault(parent, {})
                pc["num_children"] = pc.get("num_children", 0) + 1
        for child, n in shared_with_parent.items():
            changes[child]["committed_bytes"] = max(0, alloc[child] - n) * PAGE_SIZE

    # Children whose VMAs still share this process's pages are its clones.
    clones: dict[int, set] = {}
    for c in children:
        if c not in scan.results or c not in scan.vmas:
            continue
        for (ctag, tag), _n in census.pair_overlap(c, pid).items():
            koid = mine[tag] if tag < len(mine) else None
            if koid in changes:
                clones.setdefault(koid, set()).add((c, ctag))
    for koid, kids in clones.items():
        changes[koid]["num_children"] = len(kids)

    # #shr: the processes that map some of each object's pages.
    sharers: dict[int, set] = {}
    for other, per_tag in census.overlap(pid).items():
        for tag in per_tag.nonzero()[0].tolist():
            koid = mine[tag] if tag < len(mine) else None
            if koid in changes:
                sharers.setdefault(koid, set()).add(other)
    for koid in changes:
        if koid in alloc:
            changes[koid]["share_count"] = 1 + len(sharers.get(koid, ()))

    for koid, fields in changes.items():
        if koid in vmos:
            vmos[koid] = replace(vmos[koid], **fields)
    prov = replace(
        snapshot.provenance,
        notes=tuple(snapshot.provenance.notes) + (
            "--exact: alloc, parent, #chld and #shr of anonymous and clone objects "
            "from page tables (pagemap, kpagecount)",
            *scan.notes,
        ),
    )
    return replace(snapshot, vmos=MappingProxyType(vmos), provenance=prov)


def exact_vmaps(snapshot, pid: int, args: argparse.Namespace, env):
    """``snapshot`` whose process ``pid`` has exact per-mapping numbers.

    Per mapping: resident = distinct pages (a page the process maps in two
    mappings counts in the first only, so the mappings add up to the
    process), private = pages no other process maps, PSS divided by
    processes, shared = resident − private.  Swap stays smaps'.
    """
    from zxmem.model import PAGE_SIZE

    scan, why = exact_scan(snapshot, args, env, tag_pids=[pid], all_pids=True)
    if why:
        env.stderr.write(unavailable_message(why))
        return snapshot
    if pid not in scan.results:
        return snapshot
    process = snapshot.process(pid)
    vmas = scan.vmas.get(pid, [])
    tag_of = {v.start: i for i, v in enumerate(vmas)}
    resident, private, pss = scan.census.tag_stats(pid, len(vmas))
    maps = []
    for m in process.mappings or ():
        t = tag_of.get(m.start)
        if t is None:
            maps.append(m)
            continue
        res, prv = int(resident[t]) * PAGE_SIZE, int(private[t]) * PAGE_SIZE
        maps.append(replace(m, rss_bytes=res, private_bytes=prv, shared_bytes=res - prv,
                            pss_bytes=int(round(float(pss[t])))))
    procs = tuple(replace(p, mappings=tuple(maps)) if p.koid == pid else p
                  for p in snapshot.processes)
    prov = replace(snapshot.provenance, notes=tuple(snapshot.provenance.notes) + (
        "--exact: per-mapping resident, PSS, private and shared from page tables; "
        "a page mapped twice counts in its first mapping", *scan.notes))
    return replace(snapshot, processes=procs, provenance=prov)


def exact_graph(snapshot, args: argparse.Namespace, env):
    """``--exact`` for the whole-system views (memgraph, treemap).

    Processes get exact PSS/PRIVATE/SHARED (as ``ps --exact``).  When the
    snapshot has mappings (memory objects were read), every mapping gets
    exact resident/PSS/private/shared (a page the process maps twice counts
    in its first mapping), and every anonymous or clone object (one VMA):
    alloc = its distinct resident pages less those it still shares with
    its parent object, where the parent object is the VMA of the parent
    process that shares the most pages with it after ``fork`` (Zircon's
    copy-on-write clone), counted in the parent's ``#chld``.  ``#shr`` and
    file objects keep their numbers.
    """
    from collections import defaultdict
    from types import MappingProxyType

    from zxmem.exact import apply_exact
    from zxmem.model import PAGE_SIZE

    with_maps = [p.koid for p in snapshot.processes if p.mappings]
    scan, why = exact_scan(snapshot, args, env, tag_pids=with_maps)
    if why:
        env.stderr.write(unavailable_message(why))
        prov = replace(snapshot.provenance, notes=tuple(snapshot.provenance.notes)
                       + (f"--exact unavailable: {why}",))
        return replace(snapshot, provenance=prov)
    notes = scan_notes(scan)
    snapshot = apply_exact(snapshot, scan.results, notes)
    if not scan.vmas:
        return snapshot
    census = scan.census
    vmos = dict(snapshot.vmos)
    cow = ("anon", "clone")

    def own_object(koid) -> bool:
        return koid in vmos and vmos[koid].kind in cow and vmos[koid].num_mappings <= 1

    koids: dict[int, list] = {}
    resident: dict[int, int] = defaultdict(int)
    procs = []
    for p in snapshot.processes:
        vmas = scan.vmas.get(p.koid)
        if vmas is None or p.koid not in scan.results or not p.mappings:
            procs.append(p)
            continue
        by_start = {m.start: m for m in p.mappings}
        ks = [by_start[v.start].vmo_koid if v.start in by_start else None for v in vmas]
        koids[p.koid] = ks
        res, prv, pss = census.tag_stats(p.koid, len(vmas))
        tag_of = {v.start: i for i, v in enumerate(vmas)}
        maps = []
        for m in p.mappings:
            t = tag_of.get(m.start)
            if t is None:
                maps.append(m)
                continue
            r, q = int(res[t]) * PAGE_SIZE, int(prv[t]) * PAGE_SIZE
            maps.append(replace(m, rss_bytes=r, private_bytes=q, shared_bytes=r - q,
                                pss_bytes=int(round(float(pss[t])))))
        for t, k in enumerate(ks):
            if own_object(k):
                resident[k] += int(res[t])
        procs.append(replace(p, mappings=tuple(maps)))

    changes: dict[int, dict] = {k: {"committed_bytes": n * PAGE_SIZE}
                                for k, n in resident.items()}
    kids_of: dict[int, list] = defaultdict(list)
    for p in snapshot.processes:
        if p.koid in koids and p.ppid in koids and p.ppid != p.koid:
            kids_of[p.ppid].append(p.koid)
    for parent, kids in kids_of.items():
        theirs = koids[parent]
        for kid, pairs in census.pairs_with(parent, kids).items():
            mine = koids[kid]
            best: dict[int, tuple[int, int]] = {}
            for (tag, ptag), n in pairs.items():
                if n > best.get(tag, (0, 0))[1]:
                    best[tag] = (ptag, n)
            for tag, (ptag, n) in best.items():
                child = mine[tag] if tag < len(mine) else None
                pkoid = theirs[ptag] if ptag < len(theirs) else None
                if child == pkoid or not own_object(child) or not own_object(pkoid):
                    continue
                c = changes[child]
                c["parent_koid"] = pkoid
                c["committed_bytes"] = max(0, c["committed_bytes"] - n * PAGE_SIZE)
                pc = changes.setdefault(pkoid, {})
                pc["num_children"] = pc.get("num_children", 0) + 1
    for koid, fields in changes.items():
        vmos[koid] = replace(vmos[koid], **fields)
    prov = replace(snapshot.provenance, notes=tuple(snapshot.provenance.notes) + (
        "--exact: mappings and anonymous/clone objects from page tables; a forked "
        "child's VMA still sharing pages is a clone of its parent's",))
    return replace(snapshot, processes=tuple(procs), vmos=MappingProxyType(vmos),
                   provenance=prov)
