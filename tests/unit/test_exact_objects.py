"""Exact objects: every resident page committed once, areas that are PSS.

A made-up system whose pages are laid out by hand: a parent (PID 10) that
wrote 8 anonymous pages and forked three children (11, 12, 13), then
rewrote the first four; child 12 then wrote one page of the second half;
and a file the four map different parts of, one page of it also mapped by
a process that could not be read (kpagecount one higher).  The expected
groups, owners and sizes below are worked out from that layout.
"""

from __future__ import annotations

import pytest

np = pytest.importorskip("numpy")

from zxmem.exact import KPF_ANON, PageCensus, apply_exact, exact_objects  # noqa: E402
from zxmem.model import (  # noqa: E402
    PAGE_SIZE,
    Job,
    Mapping,
    MemoryCounts,
    Process,
    Provenance,
    Snapshot,
    Vmo,
    VmoRef,
    freeze_mapping,
    inode_koid,
)

P = PAGE_SIZE
ANON = 1 << KPF_ANON
FILE = inode_koid(0x803, 77)
OWN = {10: 1, 11: 2, 12: 3, 13: 4}  # each process's anonymous VMA object
ANON_PAGES = {
    10: [200, 201, 202, 203, 104, 105, 106, 107],
    11: [100, 101, 102, 103, 104, 105, 106, 107],
    12: [100, 101, 102, 103, 300, 105, 106, 107],
    13: [100, 101, 102, 103, 104, 105, 106, 107],
}
FILE_PAGES = {10: [500, 501], 11: [500, 501, 502, 503], 12: [500], 13: [500]}
UNSEEN = {503: 1}  # one more mapping of PFN 503 than the four processes make


def census() -> PageCensus:
    c = PageCensus(1000)
    counts: dict[int, int] = {}
    for pid in OWN:
        anon, other = ANON_PAGES[pid], FILE_PAGES[pid]
        # Tag 0: the anonymous VMA; tag 1: the file mapping.
        c.add(pid, np.array(anon, dtype=np.uint64), np.array(other, dtype=np.uint64),
              anon_tags=[0] * len(anon), other_tags=[1] * len(other))
        for pfn in anon + other:
            counts[pfn] = counts.get(pfn, 0) + 1
    seen = c.seen_pfns()
    kcount = [counts[int(p)] + UNSEEN.get(int(p), 0) for p in seen]
    kflags = [0 if int(p) >= 500 else ANON for p in seen]
    c.apply_kpage(seen, np.array(kcount, dtype=np.uint64), np.array(kflags, dtype=np.uint64))
    return c


def tag_objects() -> dict:
    return {pid: [OWN[pid], FILE] for pid in OWN}


def test_pages_split_into_own_objects_and_groups():
    found = exact_objects(census(), tag_objects(), set(OWN.values()), {})
    # Own objects keep the pages no other process maps.
    assert found.own_pages == {1: 4, 2: 0, 3: 1, 4: 0}
    groups = {(g.ref, g.members, g.sharers): g for g in found.shared}
    # Copy-on-write groups are named by the lowest PID's VMA object.
    assert groups[(2, (11, 12, 13), 3)].pages == 4  # PFNs 100..103
    assert groups[(1, (10, 11, 12, 13), 4)].pages == 3  # 105..107
    assert groups[(1, (10, 11, 13), 3)].pages == 1  # 104
    assert all(groups[k].cow for k in groups if k[0] in (1, 2))
    # The file: one group per set of mappers; 503 has an unreadable mapper.
    assert groups[(FILE, (10, 11, 12, 13), 4)].pages == 1  # 500
    assert groups[(FILE, (10, 11), 2)].pages == 1  # 501
    assert groups[(FILE, (11,), 1)].pages == 1  # 502
    assert groups[(FILE, (11,), 2)].pages == 1  # 503
    assert not any(groups[k].cow for k in groups if k[0] == FILE)
    assert len(found.shared) == 7
    assert found.mapped_pages == {FILE: 4}
    # Each own object's parent: the group with most of its shared pages.
    parent_of = {o: found.shared[g] for o, g in found.own_parent.items()}
    assert parent_of[1].members == (10, 11, 12, 13)
    for o in (2, 3, 4):
        assert parent_of[o].members == (11, 12, 13)
    # Every member lists its groups; nobody else does.
    for i, g in enumerate(found.shared):
        for pid in OWN:
            assert (i in found.refs[pid]) == (pid in g.members)


def test_group_shares_add_up_to_each_pss():
    c = census()
    found = exact_objects(c, tag_objects(), set(OWN.values()), {})
    pss = c.results()
    for pid in OWN:
        area = found.own_pages[OWN[pid]] * P
        area += sum(found.shared[i].pages * P // found.shared[i].sharers
                    for i in found.refs[pid])
        assert abs(area - pss[pid].pss_bytes) <= len(found.refs[pid]), pid
    # Every resident page is in exactly one place.
    distinct = {p for pages in (*ANON_PAGES.values(), *FILE_PAGES.values()) for p in pages}
    assert sum(found.own_pages.values()) + sum(g.pages for g in found.shared) == len(distinct)


def pairs_census() -> PageCensus:
    # One file page mapped by processes 1 and 2, another by 1 and 3: two
    # sets of the same size, owner and divisor.
    c = PageCensus(1000)
    for pid, pages in ((1, [600, 601]), (2, [600]), (3, [601])):
        c.add(pid, None, np.array(pages, dtype=np.uint64), other_tags=[0] * len(pages))
    seen = c.seen_pfns()
    c.apply_kpage(seen, np.array([2, 2], dtype=np.uint64), np.array([0, 0], dtype=np.uint64))
    return c


def test_sets_of_one_size_are_told_apart():
    found = exact_objects(pairs_census(), {1: [FILE], 2: [FILE], 3: [FILE]}, set(), {})
    assert sorted(g.members for g in found.shared) == [(1, 2), (1, 3)]
    assert all(g.pages == 1 and g.sharers == 2 for g in found.shared)


def test_a_fingerprint_collision_is_caught(monkeypatch):
    # Every process gets the same fingerprint, so {1, 2} and {1, 3} collide;
    # the check that every member maps every page of its group notices,
    # and the retries (with the same broken fingerprints) give up.
    from zxmem.errors import ZxmemError

    class Same:
        def __init__(self, seed):
            pass

        def integers(self, lo, hi, size, dtype):
            return np.full(size, 12345, dtype=dtype)

    monkeypatch.setattr(np.random, "default_rng", Same)
    with pytest.raises(ZxmemError, match="fingerprints"):
        exact_objects(pairs_census(), {1: [FILE], 2: [FILE], 3: [FILE]}, set(), {})


def snapshot() -> Snapshot:
    maps = {}
    vmos = {}
    for pid, own in OWN.items():
        maps[pid] = (
            Mapping(0x1000_0000, 0x1000_8000, "rw-p", 0, 0, 0, "", own),
            Mapping(0x2000_0000, 0x2000_4000, "r--s", 0, 0x803, 77, "/data/f", FILE),
        )
        vmos[own] = Vmo(own, "[anon]", "anon", 8 * P, 8 * P, num_mappings=1, share_count=1)
    # Page cache: 10 pages, 4 of them mapped.  Process 13 also holds it open.
    vmos[FILE] = Vmo(FILE, "/data/f", "file", 16 * P, 10 * P, num_mappings=4, share_count=4,
                     dev=0x803, inode=77, path="/data/f")
    procs = []
    for pid in OWN:
        refs = tuple(VmoRef(m.vmo_koid, ("MAPPING",)) for m in maps[pid])
        if pid == 13:
            refs = (VmoRef(FILE, ("HANDLE",), ("READ",), fd=3),) + refs
        procs.append(Process(pid, f"p{pid}", 1, ppid=10 if pid != 10 else 1,
                             memory=MemoryCounts(), mappings=maps[pid], vmo_refs=refs))
    return Snapshot(Provenance(source="linux"), (Job(1, "root", 0, path="/"),), tuple(procs),
                    vmos=freeze_mapping(vmos))


class Scan:
    def __init__(self, c: PageCensus) -> None:
        from zxmem.sources.pagemap import Vma

        self.census = c
        self.results = c.results()
        self.notes: list = []
        self.vmas = {pid: [Vma(0x1000_0000, 0x1000_8000, "rw-p", 0, (0, 0), 0, b""),
                           Vma(0x2000_0000, 0x2000_4000, "r--s", 0, (8, 3), 77, b"/data/f")]
                     for pid in OWN}


def fuchsia_area(rec: dict) -> int:
    """scripts/memory/treemap.py's area of a process record."""
    via: dict = {}
    for ref in rec["vmo_refs"]:
        via.setdefault(ref["vmo_koid"], set()).update(ref["via"])
    area, seen = 0, set()
    for v in rec["vmos"]:
        if v["koid"] in seen:
            continue
        seen.add(v["koid"])
        if "MAPPING" in via[v["koid"]]:
            area += int(float(v["committed_bytes"]) / v["share_count"])
        else:
            area += int(float(v["committed_bytes"]) / (float(v["share_count"]) + 1))
    return area


def test_snapshot_objects_give_fuchsia_and_zxmem_treemaps_the_pss():
    from zxmem import memgraph
    from zxmem.exact_views import exact_objects_view as _exact_objects
    from zxmem.treemap import tree_from_records

    scan = Scan(census())
    snap = apply_exact(snapshot(), scan.results)
    out = _exact_objects(snap, scan)
    recs = list(memgraph.records(out, threads=False, vmos=True, handles=False))
    procs = {r["koid"]: r for r in recs if r.get("type") == "p"}
    tree = tree_from_records(recs)
    model = {n.koid: n.area for _, n in tree.walk() if n.type == "p"}
    # The file keeps the 6 pages of page cache nobody maps; only 13's
    # descriptor lists it now, which Fuchsia counts as one more sharer.
    assert out.vmos[FILE].committed_bytes == 6 * P
    handle_share = 6 * P // (4 + 1)
    for pid in OWN:
        pss = scan.results[pid].pss_bytes
        extra = handle_share if pid == 13 else 0
        assert abs(fuchsia_area(procs[pid]) - extra - pss) <= 8, pid
        assert abs(model[pid] - extra - pss) <= 8, pid
        listed = {v["koid"] for v in procs[pid]["vmos"]}
        assert OWN[pid] in listed
        assert (FILE in listed) == (pid == 13)
    # The parent's VMA: its 4 rewritten pages, a clone of the group all four share.
    own10 = out.vmos[1]
    assert own10.committed_bytes == 4 * P and own10.share_count == 1
    group = out.vmos[own10.parent_koid]
    assert group.committed_bytes == 3 * P and group.share_count == 4
    assert group.num_children == 1 and group.parent_koid == 0
    kids = out.vmos[out.vmos[2].parent_koid]
    assert kids.committed_bytes == 4 * P and kids.share_count == 3 and kids.num_children == 3
    # Σ committed over all objects: every distinct resident page once, plus
    # the page cache nobody maps.
    assert sum(v.committed_bytes for v in out.vmos.values()) == (17 + 6) * P
    # The handle row stays a handle row, first, as descriptors come first.
    assert procs[13]["vmo_refs"][0] == {"vmo_koid": FILE, "via": ["HANDLE"],
                                       "handle_rights": ["READ"], "linux": {"fd": 3}}


def test_mappings_gone_before_the_scan_add_nothing():
    # Process 12's snapshot has two mappings its page-table scan no longer
    # found (unmapped in between): its own anonymous one (smaps said 5
    # pages) and one of another file.  Neither may add to its area.
    from dataclasses import replace

    from zxmem import memgraph
    from zxmem.exact_views import exact_objects_view as _exact_objects

    other = inode_koid(0x803, 78)
    snap = snapshot()
    vmos = dict(snap.vmos)
    vmos[9] = Vmo(9, "[anon]", "anon", 8 * P, 5 * P, num_mappings=1, share_count=1)
    vmos[other] = Vmo(other, "/data/g", "file", 4 * P, 3 * P, num_mappings=1, share_count=1)
    extra = (Mapping(0x3000_0000, 0x3000_8000, "rw-p", 0, 0, 0, "", 9),
             Mapping(0x4000_0000, 0x4000_4000, "r--p", 0, 0x803, 78, "/data/g", other))
    procs = tuple(
        replace(p, mappings=p.mappings + extra,
                vmo_refs=p.vmo_refs + tuple(VmoRef(m.vmo_koid, ("MAPPING",)) for m in extra))
        if p.koid == 12 else p
        for p in snap.processes)
    snap = replace(snap, processes=procs, vmos=freeze_mapping(vmos))
    scan = Scan(census())
    out = _exact_objects(apply_exact(snap, scan.results), scan)
    rec = next(r for r in memgraph.records(out, threads=False, vmos=True, handles=False)
               if r.get("koid") == 12 and r.get("type") == "p")
    listed = {v["koid"]: v for v in rec["vmos"]}
    assert listed[9]["committed_bytes"] == 0
    assert other not in listed
    assert abs(fuchsia_area(rec) - scan.results[12].pss_bytes) <= 8


def test_a_page_freed_since_pagemap_stays_in_its_anonymous_object():
    # PFN 700 was in process 1's anonymous VMA when pagemap was read, and
    # was freed (or migrated) before kpagecount/kpageflags: count 0, flags
    # no longer anonymous.  It is still that VMA's page, not a file's.
    c = PageCensus(1000)
    c.add(1, np.array([10, 700], dtype=np.uint64), None, anon_tags=[0, 0])
    c.apply_kpage(c.seen_pfns(), np.array([1, 0], dtype=np.uint64),
                  np.array([ANON, 0], dtype=np.uint64))
    found = exact_objects(c, {1: [OWN[10]]}, {OWN[10]}, {})
    assert found.own_pages == {OWN[10]: 2}
    assert found.shared == ()
    assert c.results()[1].pss_bytes == 2 * P
