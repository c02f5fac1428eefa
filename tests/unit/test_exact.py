"""Exact accounting on synthetic page arrays and a made-up /proc tree.

The expected values are worked out by hand from the page layout each test
builds (which PFN each process maps, what kpagecount says), never taken
from zxmem's own output.
"""

from __future__ import annotations

import json
import os
import struct

import pytest

np = pytest.importorskip("numpy")

from zxmem.exact import (  # noqa: E402
    KPF_ANON,
    KPF_KSM,
    KPF_NOPAGE,
    KPF_SWAPBACKED,
    KPF_ZERO_PAGE,
    PageCensus,
    apply_exact,
)
from zxmem.model import PAGE_SIZE, MemoryCounts, Process, Provenance, Snapshot  # noqa: E402
from zxmem.sources import pagemap  # noqa: E402

P = PAGE_SIZE
ANON = 1 << KPF_ANON
SHMEM = 1 << KPF_SWAPBACKED


def census_of(procs: dict, kcount: dict | None = None, kflags: dict | None = None,
              max_pfn: int = 1000, swap: dict | None = None) -> PageCensus:
    """A census of ``procs`` (pid -> PFN list); kpagecount defaults to the
    number of mappings given here, so nothing is unseen unless asked."""
    c = PageCensus(max_pfn)
    counts: dict[int, int] = {}
    flags = kflags or {}
    for pid, pfns in procs.items():
        # Split as pagemap's bit 61 does: anonymous pages or the rest.
        anon = [p for p in pfns if flags.get(p, ANON) & ANON or flags.get(p) == 1 << KPF_ZERO_PAGE]
        other = [p for p in pfns if p not in anon]
        c.add(pid, np.array(anon, dtype=np.uint64), np.array(other, dtype=np.uint64),
              None if swap is None else np.array(swap.get(pid, []), dtype=np.uint64))
        for pfn in pfns:
            counts[pfn] = counts.get(pfn, 0) + 1
    seen = c.seen_pfns()
    kc = np.array([(kcount or {}).get(int(p), counts.get(int(p), 0)) for p in seen],
                  dtype=np.uint64)
    kf = np.array([(kflags or {}).get(int(p), ANON) for p in seen], dtype=np.uint64)
    c.apply_kpage(seen, kc, kf)
    return c


def test_single_process_all_private():
    r = census_of({1: [10, 11, 12, 13]}).results()[1]
    assert r.resident_bytes == 4 * P
    assert r.private_bytes == 4 * P
    assert r.shared_bytes == 0
    assert r.pss_bytes == 4 * P
    assert r.pss_anon_bytes == 4 * P


def test_page_mapped_twice_by_one_process_counts_once_and_private():
    # A file mapped twice: PFNs 20..23 appear in two mappings of process 1.
    # smaps would call all of them shared; no other process maps them.
    r = census_of({1: [20, 21, 22, 23, 20, 21, 22, 23, 5]},
                  kflags={p: 0 for p in (20, 21, 22, 23)}).results()[1]
    assert r.resident_bytes == 5 * P
    assert r.private_bytes == 5 * P
    assert r.pss_bytes == 5 * P
    assert r.pss_file_bytes == 4 * P
    assert r.shared_unseen_bytes == 0


def test_fork_then_parent_rewrites_half():
    # 8 pages after fork: parent rewrote pages 0..3 (new PFNs 100..103);
    # 4..7 (PFNs 54..57) still shared with the child.
    parent = [100, 101, 102, 103, 54, 55, 56, 57]
    child = [50, 51, 52, 53, 54, 55, 56, 57]
    c = census_of({1: parent, 2: child})
    res = c.results()
    assert res[1].private_bytes == 4 * P
    assert res[1].shared_bytes == 4 * P
    assert res[1].pss_bytes == 4 * P + 4 * P // 2
    assert res[2].pss_bytes == 6 * P
    ov = c.overlap(1)
    assert list(ov) == [2]
    assert int(ov[2].sum()) == 4


def test_file_mapped_by_six_processes():
    procs = {pid: [300, 301, 302] for pid in range(1, 7)}
    res = census_of(procs, kflags={p: 0 for p in (300, 301, 302)}).results()
    for pid in procs:
        assert res[pid].private_bytes == 0
        assert res[pid].shared_bytes == 3 * P
        assert res[pid].pss_bytes == round(3 * P / 6)
        assert res[pid].pss_file_bytes == round(3 * P / 6)
    assert sum(r.pss_bytes for r in res.values()) == 3 * P


def test_unseen_mappings_are_shared_not_private():
    # kpagecount 3 for PFN 7: two mappings nobody here accounts for.
    r = census_of({1: [7, 8]}, kcount={7: 3}).results()[1]
    assert r.private_bytes == P
    assert r.shared_bytes == P
    assert r.shared_unseen_bytes == P
    assert r.pss_bytes == P + round(P / 3)


def test_repeat_within_process_is_not_unseen():
    # Mapped twice here, kpagecount 2: both mappings are accounted for.
    r = census_of({1: [9, 9]}, kcount={9: 2}, kflags={9: 0}).results()[1]
    assert r.private_bytes == P
    assert r.shared_unseen_bytes == 0


def test_zero_page_and_nopage_and_non_ram_excluded():
    kflags = {1: 1 << KPF_ZERO_PAGE, 2: 1 << KPF_NOPAGE, 3: ANON}
    # Neither the zero page nor a frame without struct page is mapcounted.
    c = census_of({1: [1, 1, 2, 3, 5000]}, kcount={1: 0, 2: 0}, kflags=kflags, max_pfn=1000)
    r = c.results()[1]
    assert r.resident_bytes == P  # only PFN 3
    assert r.zero_page_bytes == 2 * P  # two virtual pages map the zero page
    assert r.shared_unseen_bytes == 0
    assert c.non_ram[1] == 1


def test_flags_wanted_only_where_they_matter():
    c = PageCensus(100)
    c.add(1, np.array([1, 2, 3], dtype=np.uint64), np.array([10, 11], dtype=np.uint64))
    seen = c.seen_pfns()
    # PFN 3 reads 0 from kpagecount (the zero page, say).
    c.apply_counts(seen, np.array([1, 1, 0, 1, 1], dtype=np.uint64))
    assert c.flags_wanted(seen).tolist() == [3, 10, 11]
    c.apply_flags(np.array([3, 10, 11]), np.array([1 << KPF_ZERO_PAGE, SHMEM, 0],
                                                  dtype=np.uint64))
    r = c.results()[1]
    assert r.resident_bytes == 4 * P and r.zero_page_bytes == P
    assert (r.pss_anon_bytes, r.pss_shmem_bytes, r.pss_file_bytes) == (2 * P, P, P)


def test_ksm_is_shared_among_its_mappers():
    kflags = {40: ANON | (1 << KPF_KSM)}
    res = census_of({1: [40, 41], 2: [40, 42], 3: [40]}, kflags=kflags).results()
    assert res[1].ksm_bytes == P
    assert res[1].private_bytes == P
    assert res[1].pss_bytes == P + round(P / 3)
    assert res[3].private_bytes == 0


def test_classes_anon_shmem_file():
    kflags = {1: ANON, 2: SHMEM, 3: 0}
    r = census_of({1: [1, 2, 3]}, kflags=kflags).results()[1]
    assert (r.pss_anon_bytes, r.pss_shmem_bytes, r.pss_file_bytes) == (P, P, P)


def test_swap_slots_counted_across_processes():
    swap = {1: [0x20, 0x40, 0x60], 2: [0x40]}
    res = census_of({1: [1], 2: [2]}, swap=swap).results()
    assert res[1].swap_bytes == 3 * P
    assert res[1].swap_private_bytes == 2 * P
    assert res[1].swap_pss_bytes == 2 * P + P // 2
    assert res[1].freed_on_exit_bytes == P + 2 * P
    assert res[2].swap_private_bytes == 0
    c = census_of({1: [1], 2: [2]}, swap=swap)
    assert c.shared_swap(1) == {2: 1}


def test_overlap_by_tags():
    c = PageCensus(100)
    c.add(1, [], np.array([1, 2, 3, 4], dtype=np.uint64), other_tags=np.array([0, 0, 1, 1]))
    c.add(2, [], np.array([2, 3], dtype=np.uint64))
    c.add(3, [], np.array([4, 4], dtype=np.uint64))
    seen = c.seen_pfns()
    c.apply_kpage(seen, np.array([1, 2, 2, 3], dtype=np.uint64),
                  np.zeros(len(seen), dtype=np.uint64))
    ov = c.overlap(1)
    assert ov[2].tolist() == [1, 1]
    assert ov[3].tolist() == [0, 1]


def test_apply_exact_replaces_memory_and_notes():
    from zxmem.exact import ExactCounts

    mem = MemoryCounts(pss_bytes=1, private_bytes=0, shared_bytes=9, rss_bytes=9,
                       swap_bytes=7 * P, swap_pss_bytes=5 * P, hugetlb_bytes=0)
    snap = Snapshot(
        provenance=Provenance(source="linux", notes=("n0",)),
        jobs=(),
        processes=(Process(koid=5, name="a", job_koid=1, memory=mem),
                   Process(koid=6, name="b", job_koid=1, memory=mem)),
    )
    ex = ExactCounts(3 * P, 2 * P, P, 2 * P + P // 2, 2 * P, 0, P // 2, 0, 0, 0,
                     P, P, P)
    out = apply_exact(snap, {5: ex}, ["exact!"])
    m = out.process(5).memory
    assert (m.pss_bytes, m.private_bytes, m.shared_bytes, m.rss_bytes) == (
        2 * P + P // 2, 2 * P, P, 3 * P)
    # shmem swap (Swap - VmSwap = 2 pages) is kept; anon swap PSS is exact.
    assert m.swap_pss_bytes == P and m.swap_bytes == 3 * P
    assert m.hugetlb_bytes == 0
    assert out.process(6).memory == mem
    assert out.provenance.notes == ("n0", "exact!")


# -- pure parsers -----------------------------------------------------------


def test_decode_entries():
    present = (1 << 63) | 1234
    file_present = (1 << 63) | (1 << 61) | 99
    swapped = (1 << 62) | (7 << 5) | 1
    e = np.array([0, present, swapped, file_present], dtype=np.uint64)
    pfns, swap = pagemap.decode_entries(e)
    assert pfns.tolist() == [1234, 99]
    assert swap.tolist() == [(7 << 5) | 1]
    anon, other, swap = pagemap.decode_entries(e, split=True)
    assert anon.tolist() == [1234] and other.tolist() == [99]


def test_unique_anon_and_repeating_file_pages():
    c = PageCensus(100)
    c.add(1, np.array([1, 2], dtype=np.uint64), np.array([7, 8, 7], dtype=np.uint64))
    c.add(2, [], np.array([8], dtype=np.uint64))
    seen = c.seen_pfns()
    assert seen.tolist() == [1, 2, 7, 8]
    assert c.mappings_seen(seen).tolist() == [1, 1, 2, 2]
    c.apply_kpage(seen, np.array([1, 1, 2, 2], dtype=np.uint64),
                  np.array([ANON, ANON, 0, 0], dtype=np.uint64))
    r = c.results()[1]
    assert r.private_bytes == 3 * P and r.shared_bytes == P


def test_ksm_may_repeat_within_a_process():
    c = PageCensus(100)
    c.add(1, np.array([5, 5, 6], dtype=np.uint64), anon_may_repeat=True)
    seen = c.seen_pfns()
    c.apply_counts(seen, np.array([2, 1], dtype=np.uint64))
    assert c.flags_wanted(seen).tolist() == [5, 6]
    c.apply_flags(seen, np.array([ANON | (1 << KPF_KSM), ANON], dtype=np.uint64))
    r = c.results()[1]
    assert r.resident_bytes == 2 * P and r.private_bytes == 2 * P and r.ksm_bytes == P


def test_read_pfn_file_in_batches(tmp_path, monkeypatch):
    monkeypatch.setattr(pagemap, "_KPAGE_BATCH", 8)
    monkeypatch.setattr(pagemap, "_KPAGE_GAP", 2)
    values = {i: 1000 + i for i in range(0, 200, 3)}
    _write_u64s(str(tmp_path / "f"), values)
    pfns = np.array(sorted(values)[::2] + [500], dtype=np.int64)
    got = pagemap.read_pfn_file(str(tmp_path / "f"), np.sort(pfns))
    assert got.tolist() == [values.get(int(p), 0) for p in np.sort(pfns)]


def test_vma_ranges_and_merge():
    maps = (b"00400000-00401000 r-xp 00000000 08:01 12 /bin/x\n"
            b"00401000-00402000 rw-p 00001000 08:01 12 /bin/x\n"
            b"7f0000000000-7f0000001000 rw-p 00000000 00:00 0 \n"
            b"ffffffffff600000-ffffffffff601000 --xp 00000000 00:00 0 [vsyscall]\n")
    r = pagemap.vma_ranges(maps)
    assert r == [(0x400000, 0x401000), (0x401000, 0x402000), (0x7F0000000000, 0x7F0000001000)]
    assert pagemap.merge_ranges(r, gap=0) == [(0x400000, 0x402000),
                                             (0x7F0000000000, 0x7F0000001000)]
    vmas = pagemap.parse_maps(maps)
    assert len(vmas) == 3
    assert vmas[0].path == b"/bin/x" and vmas[0].dev == (8, 1) and vmas[0].inode == 12
    assert vmas[2].path == b""


def test_zoneinfo_and_config():
    zi = (b"Node 0, zone      DMA\n  pages free 1\n        spanned  4095\n"
          b"  start_pfn:           1\nNode 0, zone   Normal\n        spanned  5505024\n"
          b"  start_pfn:           1048576\n")
    assert pagemap.max_pfn_from_zoneinfo(zi) == 1048576 + 5505024
    assert pagemap.config_option(b"CONFIG_NO_PAGE_MAPCOUNT=y\n", b"NO_PAGE_MAPCOUNT") is True
    assert pagemap.config_option(b"# CONFIG_NO_PAGE_MAPCOUNT is not set\n",
                                 b"NO_PAGE_MAPCOUNT") is False
    assert pagemap.config_option(b"CONFIG_X=y\n", b"NO_PAGE_MAPCOUNT") is None


# -- the whole scan on a made-up /proc ---------------------------------------

VADDR = 0x10000000


def _write_u64s(path: str, entries: dict[int, int]) -> None:
    """A sparse file with u64 ``value`` at index ``key``."""
    with open(path, "wb") as f:
        for index, value in sorted(entries.items()):
            f.seek(index * 8)
            f.write(struct.pack("<Q", value))


def make_proc(tmp_path, procs: dict, kcount: dict, kflags: dict, config: bytes | None):
    """procs: pid -> list of PFNs for consecutive pages at VADDR (None = hole)."""
    root = tmp_path / "proc"
    root.mkdir()
    (root / "zoneinfo").write_bytes(b"        spanned  4096\n  start_pfn:           0\n")
    (root / "sys" / "kernel").mkdir(parents=True)
    (root / "sys" / "kernel" / "osrelease").write_text("6.18.0-test\n")
    if config is not None:
        boot = tmp_path / "boot"
        boot.mkdir()
        (boot / "config-6.18.0-test").write_bytes(config)
    _write_u64s(str(root / "kpagecount"), kcount)
    _write_u64s(str(root / "kpageflags"), kflags)
    for pid, pfns in procs.items():
        d = root / str(pid)
        d.mkdir()
        end = VADDR + len(pfns) * P
        (d / "maps").write_bytes(f"{VADDR:x}-{end:x} rw-p 00000000 00:00 0 \n".encode())
        (d / "cmdline").write_bytes(f"prog{pid}\0--flag\0".encode())
        base = VADDR // P
        # Bit 61 for pages that are not anonymous, as the kernel sets it.
        _write_u64s(str(d / "pagemap"), {
            base + i: (1 << 63) | (0 if kflags.get(pfn, 0) & ANON else 1 << 61) | pfn
            for i, pfn in enumerate(pfns) if pfn is not None
        })
    return str(root)


NO_MAPCOUNT_OFF = b"# CONFIG_NO_PAGE_MAPCOUNT is not set\n"


def test_scan_made_up_proc(tmp_path):
    procs = {10: [100, 101, None, 102, 100], 11: [102, 103]}
    kcount = {100: 2, 101: 1, 102: 3, 103: 1}  # 102: one mapping unseen
    kflags = {100: 0, 101: ANON, 102: SHMEM, 103: ANON}  # 100: a file page
    root = make_proc(tmp_path, procs, kcount, kflags, NO_MAPCOUNT_OFF)
    scan = pagemap.scan(root, [10, 11], release="6.18.0-test")
    assert scan.unavailable is None, scan.unavailable
    r10, r11 = scan.results[10], scan.results[11]
    assert r10.resident_bytes == 3 * P
    assert r10.private_bytes == 2 * P  # 100 (mapped twice here) and 101
    assert r10.shared_unseen_bytes == P  # 102
    assert r10.pss_bytes == 2 * P + round(P / 3)
    assert r11.private_bytes == P


def test_scan_unavailable_with_no_page_mapcount(tmp_path):
    root = make_proc(tmp_path, {10: [1]}, {1: 1}, {1: ANON}, b"CONFIG_NO_PAGE_MAPCOUNT=y\n")
    scan = pagemap.scan(root, [10], release="6.18.0-test")
    assert "CONFIG_NO_PAGE_MAPCOUNT" in scan.unavailable


def test_scan_unavailable_without_kpagecount(tmp_path):
    root = make_proc(tmp_path, {10: [1]}, {1: 1}, {1: ANON}, NO_MAPCOUNT_OFF)
    os.unlink(os.path.join(root, "kpagecount"))
    scan = pagemap.scan(root, [10], release="6.18.0-test")
    assert "kpagecount" in scan.unavailable


def test_scan_pfns_hidden(tmp_path):
    root = make_proc(tmp_path, {10: [0, 0]}, {1: 1}, {1: ANON}, NO_MAPCOUNT_OFF)
    scan = pagemap.scan(root, [10], release="6.18.0-test")
    assert "CAP_SYS_ADMIN" in scan.unavailable


def test_scan_config_unknown_is_a_note(tmp_path):
    root = make_proc(tmp_path, {10: [1]}, {1: 1}, {1: ANON}, None)
    scan = pagemap.scan(root, [10], release="6.18.0-test")
    assert scan.unavailable is None
    assert any("config unknown" in n for n in scan.notes)


def test_share_command_on_made_up_proc(tmp_path, cli):
    procs = {10: [100, 101, 102, 103], 11: [102, 103], 12: [103]}
    kcount = {100: 1, 101: 1, 102: 2, 103: 3}
    root = make_proc(tmp_path, procs, kcount, {p: ANON for p in kcount}, NO_MAPCOUNT_OFF)
    res = cli(["share", "--json", "--proc-root", root, "10"])
    assert res.status == 0, res.stderr
    d = json.loads(res.stdout)
    assert d["private_bytes"] == 2 * P
    assert d["freed_on_exit_bytes"] == 2 * P
    assert [(s["pid"], s["shared_bytes"]) for s in d["sharers"]] == [(11, 2 * P), (12, P)]
    assert d["sharers"][0]["name"] == "prog11 --flag"
    text = cli(["share", "-v", "--proc-root", root, "10"])
    assert text.status == 0
    assert "shared with 2 processes" in text.stdout


def test_share_command_bad_pid(tmp_path, cli):
    root = make_proc(tmp_path, {10: [1]}, {1: 1}, {1: ANON}, NO_MAPCOUNT_OFF)
    res = cli(["share", "--proc-root", root, "99"])
    assert res.status == 1
    assert "99" in res.stderr and "Traceback" not in res.stderr


def test_share_command_unavailable_falls_back(tmp_path, cli):
    root = make_proc(tmp_path, {10: [1]}, {1: 1}, {1: ANON}, b"CONFIG_NO_PAGE_MAPCOUNT=y\n")
    (tmp_path / "proc" / "10" / "smaps_rollup").write_bytes(
        b"00400000-7fff0000 ---p 00000000 00:00 0 [rollup]\nRss: 8 kB\nPss: 6 kB\n"
        b"Private_Clean: 0 kB\nPrivate_Dirty: 4 kB\nShared_Clean: 4 kB\nShared_Dirty: 0 kB\n"
    )
    res = cli(["share", "--json", "--proc-root", root, "10"])
    assert res.status == 0
    assert "unavailable" in res.stderr and "NO_PAGE_MAPCOUNT" in res.stderr
    d = json.loads(res.stdout)
    assert d["exact"] is False and d["private_bytes"] == 4096
