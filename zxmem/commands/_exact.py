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
    if pid not in scan.results or pid not in scan.vmas:
        return snapshot, snapshot.process(pid)
    snapshot = _exact_objects(snapshot, scan)
    prov = replace(snapshot.provenance, notes=tuple(snapshot.provenance.notes) + (
        *scan.notes,))
    snapshot = replace(snapshot, provenance=prov)
    return snapshot, snapshot.process(pid)


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
    in its first mapping), and the objects are made exact so that Fuchsia's
    treemap formula (a process's area = Σ over its objects of committed
    bytes ÷ share count) gives every process its exact PSS; see
    :func:`_exact_objects`.
    """
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
    procs = []
    for p in snapshot.processes:
        vmas = scan.vmas.get(p.koid)
        if vmas is None or p.koid not in scan.results or not p.mappings:
            procs.append(p)
            continue
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
        procs.append(replace(p, mappings=tuple(maps)))
    snapshot = replace(snapshot, processes=tuple(procs))
    return _exact_objects(snapshot, scan)


EXACT_OBJECTS_NOTE = (
    "--exact: objects from page tables: an anonymous or clone object's alloc is the pages "
    "only its process maps; pages several processes map (copy-on-write after fork, page "
    "cache) are objects of their own, one per set of processes mapping them, listed by "
    "each of them with #shr = the set; a shared object keeps the pages nobody maps; so "
    "alloc / #shr summed over a process's objects is its exact PSS"
)


def _exact_objects(snapshot, scan):
    """``snapshot`` whose objects split every resident page exactly once.

    Fuchsia sizes a process in its treemap as the sum, over the VMOs it
    maps, of committed bytes ÷ share count (spec fuchsia-tools §6.2).  On
    Linux an anonymous VMA is one object per process although ``fork``
    leaves its pages shared copy-on-write, and a file's page cache is one
    object although every process maps a different part of it, so that sum
    is not the process's PSS.  Here (:func:`zxmem.exact.exact_objects`):

    * an anonymous or clone object (one VMA) keeps, as committed bytes, the
      pages no other process maps, share count 1;
    * pages several processes map, and a shared object's (file, shmem,
      memfd, [vdso]) pages, go to objects of their own, one per owner
      object and set of processes mapping them: committed = those pages,
      share count = the processes mapping them (unreadable ones included),
      name/kind/path of the owner.  Each process of the set lists it (a
      ``MAPPING`` reference after the mapping where it first meets the
      pages); its reference to the shared owner itself is dropped (a
      descriptor's stays);
    * copy-on-write groups are Zircon's hidden parents: each anonymous or
      clone object's ``parent_koid`` is the group holding most of its
      shared pages (``#chld`` counts them), and a group's parent is the
      owner's parent (the file of a ``data:`` clone);
    * a shared owner keeps the pages no process maps (page cache nobody
      maps, swapped shmem): its committed bytes less those of its groups.

    So every resident page is committed once system-wide, and each process's
    committed ÷ share count sum is its exact PSS, less under a byte per
    object (integer division).
    """
    from types import MappingProxyType

    from zxmem.exact import exact_objects
    from zxmem.model import INODE_KOID_BASE, PAGE_SIZE, Vmo, VmoRef

    vmos = dict(snapshot.vmos)
    cow = ("anon", "clone")

    def own_object(koid) -> bool:
        return koid in vmos and vmos[koid].kind in cow and vmos[koid].num_mappings <= 1

    tag_objects: dict = {}
    mapping_tag: dict = {}
    for p in snapshot.processes:
        vmas = scan.vmas.get(p.koid)
        if vmas is None or p.koid not in scan.results or not p.mappings:
            continue
        by_start = {m.start: m.vmo_koid for m in p.mappings}
        tag_objects[p.koid] = [by_start.get(v.start) for v in vmas]
        mapping_tag[p.koid] = {v.start: i for i, v in enumerate(vmas)}
    own = {k for ks in tag_objects.values() for k in ks if own_object(k)}
    # A process's own objects whose VMA the scan no longer found (unmapped
    # between the two reads of its maps): no pages at the time of the scan.
    gone = {m.vmo_koid for p in snapshot.processes if p.koid in tag_objects
            for m in p.mappings if own_object(m.vmo_koid) and m.start not in mapping_tag[p.koid]}
    file_of = {k: vmos[k].parent_koid for k in own
               if vmos[k].kind == "clone" and vmos[k].parent_koid in vmos}
    found = exact_objects(scan.census, tag_objects, own, file_of)

    next_koid = 1 + max((k for k in vmos if k < INODE_KOID_BASE), default=0)
    group_koids = list(range(next_koid, next_koid + len(found.shared)))
    children: dict[int, int] = {}
    for gi in found.own_parent.values():
        children[gi] = children.get(gi, 0) + 1
    for gi, (koid, g) in enumerate(zip(group_koids, found.shared, strict=True)):
        owner = vmos.get(g.ref) if g.ref is not None else None
        vmos[koid] = Vmo(
            koid=koid,
            name=owner.name if owner is not None else "",
            kind=owner.kind if owner is not None else "anon",
            size_bytes=g.pages * PAGE_SIZE,
            committed_bytes=g.pages * PAGE_SIZE,
            parent_koid=(owner.parent_koid if g.cow and owner is not None else 0),
            num_children=children.get(gi, 0),
            num_mappings=g.mappings,
            share_count=g.sharers,
            dev=owner.dev if owner is not None else None,
            inode=owner.inode if owner is not None else None,
            path=owner.path if owner is not None else None,
        )
    for obj, pages in found.own_pages.items():
        gi = found.own_parent.get(obj)
        fields = {"committed_bytes": pages * PAGE_SIZE, "share_count": 1}
        if gi is not None:
            fields["parent_koid"] = group_koids[gi]
        vmos[obj] = replace(vmos[obj], **fields)
    for obj in gone - own:
        vmos[obj] = replace(vmos[obj], committed_bytes=0, share_count=1)
    # Shared objects the tagged processes map: their mapped pages are in
    # the groups, so processes no longer list them by mapping.
    split = {k for ks in tag_objects.values() for k in ks
             if k is not None and k in vmos and k not in own and vmos[k].kind != "phys"}
    for obj, pages in found.mapped_pages.items():
        committed = vmos[obj].committed_bytes
        if committed is not None:
            vmos[obj] = replace(vmos[obj], committed_bytes=max(0, committed - pages * PAGE_SIZE))

    procs = []
    for p in snapshot.processes:
        if p.koid not in tag_objects or p.vmo_refs is None:
            procs.append(p)
            continue
        by_tag: dict[int, list[int]] = {}
        for gi in found.refs.get(p.koid, ()):
            by_tag.setdefault(found.first_tag[p.koid][gi], []).append(gi)
        tags = mapping_tag[p.koid]
        refs = []
        placed: set[int] = set()
        for r in p.vmo_refs:
            if "HANDLE" in r.via:
                if r.vmo_koid in split and "MAPPING" in r.via:
                    r = replace(r, via=("HANDLE",))
                refs.append(r)
        for m in p.mappings:
            # A shared object's mapping is its groups now; one the scan no
            # longer found maps nothing (an own object's stays, alloc 0).
            if m.vmo_koid not in split and (m.start in tags or m.vmo_koid in gone):
                refs.append(VmoRef(m.vmo_koid, ("MAPPING",)))
            for gi in by_tag.get(tags.get(m.start, -1), ()):
                if gi not in placed:
                    placed.add(gi)
                    refs.append(VmoRef(group_koids[gi], ("MAPPING",)))
        for gi in found.refs.get(p.koid, ()):
            if gi not in placed:
                refs.append(VmoRef(group_koids[gi], ("MAPPING",)))
        procs.append(replace(p, vmo_refs=tuple(refs)))
    prov = replace(snapshot.provenance, notes=tuple(snapshot.provenance.notes)
                   + (EXACT_OBJECTS_NOTE,))
    return replace(snapshot, processes=tuple(procs), vmos=MappingProxyType(vmos),
                   provenance=prov)
