"""The ``--exact`` derivations: a snapshot with page-level numbers in place
of smaps' (pure functions of a snapshot and a page scan).

The scan is :class:`zxmem.sources.pagemap.ExactScan` (read through
:func:`zxmem.collection.exact_scan`): per process its exact counts
(``results``), the VMAs of the tagged processes (``vmas``) and the census
of every page (``census``: :class:`zxmem.exact.PageCensus`).  The commands
that take ``--exact`` (commands/_exact.py) read it and apply these.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as MappingOf
from dataclasses import replace
from types import MappingProxyType
from typing import Any

from zxmem.exact import APPROX_NOTE, EXACT_NOTE, ExactObjects, exact_objects
from zxmem.model import INODE_KOID_BASE, PAGE_SIZE, Mapping, Process, Snapshot, Vmo, VmoRef


def scan_notes(scan: Any) -> list[str]:
    """The notes that say how exact numbers were counted, and what was not read."""
    notes = [EXACT_NOTE, APPROX_NOTE, *scan.notes]
    if scan.denied:
        notes.append(
            f"--exact: {len(scan.denied)} processes' page tables not readable; "
            "pages they map count as shared with unreadable processes"
        )
    return notes


def exact_mappings(process: Process, vmas: list[Any], census: Any) -> tuple[Mapping, ...]:
    """``process``'s mappings with exact resident/PSS/private/shared bytes.

    ``vmas``: the process's VMAs as the scan read them, in the order the
    census tags them.  Per mapping: resident = distinct pages (a page the
    process maps in two mappings counts in the first only, so the mappings
    add up to the process), private = pages no other process maps, PSS
    divided by processes, shared = resident − private.  A mapping the scan
    did not find keeps smaps' numbers; swap stays smaps'.
    """
    resident, private, pss = census.tag_stats(process.koid, len(vmas))
    tag_of = {v.start: i for i, v in enumerate(vmas)}
    maps = []
    for m in process.mappings or ():
        t = tag_of.get(m.start)
        if t is None:
            maps.append(m)
            continue
        res, prv = int(resident[t]) * PAGE_SIZE, int(private[t]) * PAGE_SIZE
        maps.append(replace(m, rss_bytes=res, private_bytes=prv, shared_bytes=res - prv,
                            pss_bytes=int(round(float(pss[t])))))
    return tuple(maps)


VMAPS_NOTE = ("--exact: per-mapping resident, PSS, private and shared from page tables; "
              "a page mapped twice counts in its first mapping")


def exact_vmaps_view(snapshot: Snapshot, scan: Any, pid: int) -> Snapshot:
    """``snapshot`` whose process ``pid`` has exact per-mapping numbers
    (:func:`exact_mappings`); unchanged when the scan did not read ``pid``."""
    process = snapshot.process(pid)
    if pid not in scan.results or process is None:
        return snapshot
    maps = exact_mappings(process, scan.vmas.get(pid, []), scan.census)
    procs = tuple(replace(p, mappings=maps) if p.koid == pid else p
                  for p in snapshot.processes)
    prov = replace(snapshot.provenance, notes=tuple(snapshot.provenance.notes) + (
        VMAPS_NOTE, *scan.notes))
    return replace(snapshot, processes=procs, provenance=prov)


def exact_graph_view(snapshot: Snapshot, scan: Any) -> Snapshot:
    """``--exact`` for the whole-system views (memgraph, treemap).

    Processes get exact PSS/PRIVATE/SHARED (as ``ps --exact``).  When the
    snapshot has mappings, every mapping of a process the scan tagged gets
    exact numbers (:func:`exact_mappings`) and the objects are made exact
    (:func:`exact_objects_view`), so that Fuchsia's treemap formula (a
    process's area = Σ over its objects of committed bytes ÷ share count)
    gives every process its exact PSS.
    """
    from zxmem.exact import apply_exact

    snapshot = apply_exact(snapshot, scan.results, scan_notes(scan))
    if not scan.vmas:
        return snapshot
    procs = []
    for p in snapshot.processes:
        vmas = scan.vmas.get(p.koid)
        if vmas is None or p.koid not in scan.results or not p.mappings:
            procs.append(p)
            continue
        procs.append(replace(p, mappings=exact_mappings(p, vmas, scan.census)))
    snapshot = replace(snapshot, processes=tuple(procs))
    return exact_objects_view(snapshot, scan)


def exact_vmos_view(snapshot: Snapshot, scan: Any, pid: int) -> Snapshot:
    """``snapshot`` with exact objects (:func:`exact_objects_view`) and the
    scan's notes; unchanged when the scan did not read ``pid``'s VMAs."""
    if pid not in scan.results or pid not in scan.vmas:
        return snapshot
    snapshot = exact_objects_view(snapshot, scan)
    prov = replace(snapshot.provenance, notes=tuple(snapshot.provenance.notes) + (
        *scan.notes,))
    return replace(snapshot, provenance=prov)


def subtree_koids(child_jobs: MappingOf[int, Iterable[Any]], koid: int) -> set[int]:
    """``koid`` and every job below it (``child_jobs``: koid → child jobs)."""
    out = set()
    stack = [koid]
    while stack:
        k = stack.pop()
        out.add(k)
        stack.extend(j.koid for j in child_jobs.get(k, ()))
    return out


_ZERO_PAGE_BIT = 1 << 24  # kpageflags KPF_ZERO_PAGE


def charged_elsewhere_bytes(pages: Any, inside: set[int], page_size: int = PAGE_SIZE) -> int:
    """PSS bytes of the frames in ``pages`` (:class:`ChargePages`: frames per
    process, kpagecount, kpagecgroup and kpageflags by frame) charged to a
    memory cgroup not in ``inside`` (or to none): each mapped page adds
    ``page_size / mapcount``, as smaps' Pss; the zero page is left out."""
    total = 0.0
    for frames in pages.frames:
        for pfn in frames:
            n = pages.count.get(pfn, 0)
            if n <= 0 or pages.flags.get(pfn, 0) & _ZERO_PAGE_BIT:
                continue
            if pages.memcg.get(pfn, 0) not in inside:
                total += page_size / n
    return round(total)


EXACT_OBJECTS_NOTE = (
    "--exact: objects from page tables: an anonymous or clone object's alloc is the pages "
    "only its process maps; pages several processes map (copy-on-write after fork, page "
    "cache) are objects of their own, one per set of processes mapping them, listed by "
    "each of them with #shr = the set; a shared object keeps the pages nobody maps; so "
    "alloc / #shr summed over a process's objects is its exact PSS"
)


def _own_object(vmos: dict, koid: int | None) -> bool:
    """An anonymous or clone object of at most one mapping."""
    if koid not in vmos or vmos[koid].kind not in ("anon", "clone"):
        return False
    n = vmos[koid].num_mappings
    return n is not None and n <= 1


def _scan_tags(snapshot: Snapshot, scan: Any) -> tuple[dict, dict]:
    """Per process the scan read: its VMAs' objects (by tag), and the tag of
    each VMA by start address."""
    tag_objects: dict = {}
    mapping_tag: dict = {}
    for p in snapshot.processes:
        vmas = scan.vmas.get(p.koid)
        if vmas is None or p.koid not in scan.results or not p.mappings:
            continue
        by_start = {m.start: m.vmo_koid for m in p.mappings}
        tag_objects[p.koid] = [by_start.get(v.start) for v in vmas]
        mapping_tag[p.koid] = {v.start: i for i, v in enumerate(vmas)}
    return tag_objects, mapping_tag


def _commit_pages(vmos: dict, found: ExactObjects, own: set, gone: set) -> list[int]:
    """Put ``found``'s pages in ``vmos``: the groups as new objects (their
    koids returned, in ``found.shared`` order), own objects' private pages,
    and shared owners less their grouped pages."""
    next_koid = 1 + max((k for k in vmos if k < INODE_KOID_BASE), default=0)
    group_koids = list(range(next_koid, next_koid + len(found.shared)))
    _add_groups(vmos, found, group_koids)
    for obj, pages in found.own_pages.items():
        gi = found.own_parent.get(obj)
        fields: dict[str, Any] = {"committed_bytes": pages * PAGE_SIZE, "share_count": 1}
        if gi is not None:
            fields["parent_koid"] = group_koids[gi]
        vmos[obj] = replace(vmos[obj], **fields)
    for obj in gone - own:
        vmos[obj] = replace(vmos[obj], committed_bytes=0, share_count=1)
    for obj, pages in found.mapped_pages.items():
        committed = vmos[obj].committed_bytes
        if committed is not None:
            vmos[obj] = replace(vmos[obj], committed_bytes=max(0, committed - pages * PAGE_SIZE))
    return group_koids


def exact_objects_view(snapshot: Snapshot, scan: Any) -> Snapshot:
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
    vmos = dict(snapshot.vmos)
    tag_objects, mapping_tag = _scan_tags(snapshot, scan)
    own = {k for ks in tag_objects.values() for k in ks if _own_object(vmos, k)}
    # A process's own objects whose VMA the scan no longer found (unmapped
    # between the two reads of its maps): no pages at the time of the scan.
    gone = {m.vmo_koid for p in snapshot.processes if p.koid in tag_objects
            for m in p.mappings or ()
            if _own_object(vmos, m.vmo_koid) and m.start not in mapping_tag[p.koid]}
    file_of = {k: vmos[k].parent_koid for k in own
               if vmos[k].kind == "clone" and vmos[k].parent_koid in vmos}
    found = exact_objects(scan.census, tag_objects, own, file_of)
    group_koids = _commit_pages(vmos, found, own, gone)
    # Shared objects the tagged processes map: their mapped pages are in
    # the groups, so processes no longer list them by mapping.
    split = {k for ks in tag_objects.values() for k in ks
             if k is not None and k in vmos and k not in own and vmos[k].kind != "phys"}
    procs = [
        _split_refs(p, found, group_koids, mapping_tag[p.koid], split, gone)
        if p.koid in tag_objects and p.vmo_refs is not None else p
        for p in snapshot.processes
    ]
    prov = replace(snapshot.provenance, notes=tuple(snapshot.provenance.notes)
                   + (EXACT_OBJECTS_NOTE,))
    return replace(snapshot, processes=tuple(procs), vmos=MappingProxyType(vmos),
                   provenance=prov)


def _add_groups(vmos: dict[int, Vmo], found: Any, group_koids: list[int]) -> None:
    """One object in ``vmos`` per group of pages :func:`exact_objects` found
    shared, named and typed as its owner, holding those pages."""
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


def _split_refs(p: Process, found: Any, group_koids: list[int], tags: dict[int, int],
                split: set[int], gone: set[int]) -> Process:
    """``p`` whose references list its groups of shared pages (after the
    mapping where it first meets them) instead of the shared objects split
    into them; descriptors stay."""
    by_tag: dict[int, list[int]] = {}
    for gi in found.refs.get(p.koid, ()):
        by_tag.setdefault(found.first_tag[p.koid][gi], []).append(gi)
    refs = []
    placed: set[int] = set()
    for r in p.vmo_refs or ():
        if "HANDLE" in r.via:
            if r.vmo_koid in split and "MAPPING" in r.via:
                r = replace(r, via=("HANDLE",))
            refs.append(r)
    for m in p.mappings or ():
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
    return replace(p, vmo_refs=tuple(refs))
