"""The --exact derivations of zxmem.exact_views on made-up page data."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from zxmem.exact_views import (
    charged_elsewhere_bytes,
    exact_mappings,
    exact_vmaps_view,
    subtree_koids,
)
from zxmem.model import PAGE_SIZE as P
from zxmem.model import Job, Mapping, Process, Provenance, Snapshot


def _mapping(start: int, pages: int) -> Mapping:
    return Mapping(start=start, end=start + pages * P, perms="rw-p", offset=0, dev=0,
                   inode=0, path="", vmo_koid=start, rss_bytes=pages * P,
                   pss_bytes=pages * P, private_bytes=pages * P, shared_bytes=0,
                   swap_bytes=3 * P)


class _Census:
    """Per tag of PID 10: resident pages, private pages, PSS bytes."""

    def tag_stats(self, pid, n):
        assert (pid, n) == (10, 2)
        return np.array([4, 2]), np.array([1, 2]), np.array([2.5 * P, 2 * P])


def _process() -> Process:
    return Process(koid=10, name="p", job_koid=1,
                   mappings=(_mapping(0x10000, 4), _mapping(0x20000, 2), _mapping(0x30000, 1)))


VMAS = [SimpleNamespace(start=0x20000), SimpleNamespace(start=0x10000)]


def test_exact_mappings_replace_smaps_numbers_by_tag():
    maps = exact_mappings(_process(), VMAS, _Census())
    # Tag 0 is the VMA at 0x20000 (the second mapping), tag 1 the one at 0x10000.
    assert [(m.rss_bytes, m.private_bytes, m.shared_bytes, m.pss_bytes) for m in maps] == [
        (2 * P, 2 * P, 0, 2 * P), (4 * P, P, 3 * P, round(2.5 * P)), (P, P, 0, P)]
    # Swap stays smaps'; a mapping the scan did not find keeps its numbers.
    assert all(m.swap_bytes == 3 * P for m in maps)
    assert maps[2] == _process().mappings[2]


def test_exact_vmaps_view_only_for_a_scanned_process():
    snap = Snapshot(provenance=Provenance(source="linux"), jobs=(Job(1, "root", 0),),
                    processes=(_process(),))
    scan = SimpleNamespace(results={10: object()}, vmas={10: VMAS}, census=_Census(),
                           notes=["n"])
    out = exact_vmaps_view(snap, scan, 10)
    assert out.process(10).mappings[1].private_bytes == P  # tag 0
    assert out.provenance.notes[-1] == "n"
    assert exact_vmaps_view(snap, SimpleNamespace(results={}), 10) is snap


def test_charged_elsewhere_bytes():
    pages = SimpleNamespace(
        frames=[[1, 2, 3, 4], [2, 5]],
        count={1: 1, 2: 2, 3: 4, 4: 1, 5: 0},
        memcg={1: 100, 2: 200, 3: 300, 4: 200},
        flags={4: 1 << 24},  # the zero page
    )
    # Inside: cgroup 100.  Frame 2 (two mappers, elsewhere) counts twice,
    # half a page each; frame 3 a quarter; 4 is the zero page; 5 has no
    # mapcount (freed).
    assert charged_elsewhere_bytes(pages, {100}, page_size=4096) == 4096 + 1024


def test_subtree_koids():
    child = {1: [SimpleNamespace(koid=2), SimpleNamespace(koid=3)],
             3: [SimpleNamespace(koid=4)]}
    assert subtree_koids(child, 1) == {1, 2, 3, 4}
    assert subtree_koids(child, 3) == {3, 4}
