"""add_objects on made-up and recorded /proc trees: what it keeps, how it
counts shared pages, and that reading on threads changes nothing."""

from __future__ import annotations

import os
from pathlib import Path

import pytest
from forks import children_die_at_once

from zxmem.model import inode_koid
from zxmem.sources import objects

K = 1024
FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"

_KEYS = ("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean", "Private_Dirty",
         "Anonymous", "Swap")


def _stat(pid: int, comm: str = "prog") -> str:
    rest = ["S", "1", str(pid), str(pid), "0", "-1", "0"] + ["0"] * 10 + ["1", "0", "100", "0", "0"]
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


def _vma(start: int, end: int, perms: str, dev: str, ino: int, path: str,
         flags: str = "rd wr mr mw me ac", **kb: int) -> str:
    head = f"{start:08x}-{end:08x} {perms} 00000000 {dev} {ino}"
    head = head.ljust(72) + " " + path if path else head + " "
    lines = [head]
    for key in _KEYS:
        lines.append(f"{key + ':':<16}{kb.get(key, 0):>8} kB")
    lines.append(f"VmFlags: {flags} ")
    return "\n".join(lines) + "\n"


def _proc(root: Path, pid: int, smaps: str | None, comm: str = "prog") -> Path:
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(_stat(pid, comm))
    (d / "cmdline").write_bytes(comm.encode() + b"\0")
    if smaps is not None:
        (d / "smaps").write_text(smaps)
    (d / "fd").mkdir()
    return d


def _snapshot(root: Path, **kw):
    return objects.add_objects(objects.light_snapshot(str(root)), str(root), **kw)


def _anon(snap, pid: int, start: int):
    p = snap.process(pid)
    (m,) = [m for m in p.mappings if m.start == start]
    return snap.vmos[m.vmo_koid]


# --------------------------------------------------------------------------
# Anonymous alloc after fork


def test_forked_anonymous_pages_are_shared_out_by_pss(tmp_path):
    # Parent and child after fork: 64 pages written before fork (shared
    # copy-on-write, map count 2), the child has since written 8 of them and
    # 4 pages of its own.  Physical: 64 + 8 + 4 pages = 76 pages.
    root = tmp_path / "proc"
    parent = _vma(0x10000, 0x60000, "rw-p", "00:00", 0, "",
                  Rss=256, Pss=128 + 16, Shared_Dirty=224, Private_Dirty=32, Anonymous=256)
    child = _vma(0x10000, 0x60000, "rw-p", "00:00", 0, "",
                 Rss=272, Pss=112 + 48, Shared_Dirty=224, Private_Dirty=48, Anonymous=272)
    _proc(root, 10, parent)
    _proc(root, 11, child)
    snap = _snapshot(root)
    a, b = _anon(snap, 10, 0x10000), _anon(snap, 11, 0x10000)
    assert (a.kind, b.kind) == ("anon", "anon")
    assert a.committed_bytes == 144 * K and b.committed_bytes == 160 * K
    assert a.committed_bytes + b.committed_bytes == 76 * 4 * K  # the physical pages


def test_unshared_anonymous_alloc_is_rss(tmp_path):
    root = tmp_path / "proc"
    # Pss printed a kB low (per-VMA truncation) must not matter without sharing.
    _proc(root, 10, _vma(0x10000, 0x20000, "rw-p", "00:00", 0, "[heap]",
                         Rss=40, Pss=39, Private_Dirty=40, Anonymous=40))
    snap = _snapshot(root)
    assert _anon(snap, 10, 0x10000).committed_bytes == 40 * K


def test_clone_with_shared_pages_is_at_most_its_pss(tmp_path):
    root = tmp_path / "proc"
    # A library's .data after fork: 12 kB copied on write before the fork
    # (shared by two now), 4 kB of file pages mapped by many.
    lib = _vma(0x10000, 0x14000, "rw-p", "08:01", 77, "/usr/lib/libx.so",
               Rss=16, Pss=6, Shared_Dirty=12, Shared_Clean=4, Anonymous=12)
    _proc(root, 10, lib)
    snap = _snapshot(root)
    clone = _anon(snap, 10, 0x10000)
    assert clone.kind == "clone" and clone.name == "data:libx.so"
    assert clone.parent_koid == inode_koid(os.makedev(8, 1), 77)
    assert clone.committed_bytes == 6 * K
    assert snap.vmos[clone.parent_koid].num_children == 1


# --------------------------------------------------------------------------
# Processes whose smaps is missing; dma-bufs known only from fdinfo


def test_process_without_smaps_is_kept_as_unknown(tmp_path):
    root = tmp_path / "proc"
    _proc(root, 10, _vma(0x10000, 0x11000, "rw-p", "00:00", 0, "", Rss=4, Anonymous=4))
    _proc(root, 11, None)
    snap = _snapshot(root)
    assert [p.koid for p in snap.processes] == [10, 11]
    assert snap.process(11).mappings is None
    assert ("maps:11", "ENOENT") in snap.provenance.denied


def test_recorded_tree_keeps_processes_without_smaps():
    root = FIXTURES / "proc-trees" / "cgroup-v1-hybrid" / "proc"
    base = objects.light_snapshot(str(root))
    missing = [p.koid for p in base.processes if not (root / str(p.koid) / "smaps").exists()]
    assert missing, "the recorded tree has processes without smaps"
    snap = objects.add_objects(base, str(root))
    assert [p.koid for p in snap.processes] == [p.koid for p in base.processes]
    for pid in missing:
        assert snap.process(pid).mappings is None
        assert (f"maps:{pid}", "ENOENT") in snap.provenance.denied


def test_dmabuf_held_without_stat_keeps_its_holder():
    root = str(FIXTURES / "hidden" / "linux-6.18" / "proc")
    snap = objects.add_objects(objects.light_snapshot(root), root, detail_pids=())
    koid = inode_koid(0, 77)  # fdinfo ino: 77; the dma-buf fs device is not printed
    refs = [r for r in snap.process(200).vmo_refs if r.vmo_koid == koid]
    assert [(r.via, r.fd, r.handle_rights) for r in refs] == [
        (("HANDLE",), 7, ("READ", "WRITE"))
    ]
    v = snap.vmos[koid]
    assert (v.kind, v.name, v.size_bytes, v.committed_bytes) == (
        "dmabuf", "dmabuf:frame", 2 << 20, 2 << 20
    )


# --------------------------------------------------------------------------
# [vdso]: one object for the whole system


def test_vdso_is_one_system_wide_object(tmp_path):
    root = tmp_path / "proc"
    vdso = _vma(0x7FF0000, 0x7FF2000, "r-xp", "00:00", 0, "[vdso]", flags="rd ex mr mw me de",
                Rss=4, Shared_Clean=4)
    vvar = _vma(0x7FE0000, 0x7FE4000, "r--p", "00:00", 0, "[vvar]", flags="rd mr pf io de dd")
    heap = _vma(0x10000, 0x11000, "rw-p", "00:00", 0, "[heap]", Rss=4, Anonymous=4,
                Private_Dirty=4)
    for pid in (10, 11, 12):
        _proc(root, pid, heap + vvar + vdso)
    snap = _snapshot(root)
    koids = {pid: [m.vmo_koid for m in snap.process(pid).mappings] for pid in (10, 11, 12)}
    assert koids[10][1:] == koids[11][1:] == koids[12][1:]
    assert len({koids[10][0], koids[11][0], koids[12][0]}) == 3  # heaps stay per process
    v = snap.vmos[koids[10][2]]
    assert (v.name, v.kind, v.size_bytes, v.committed_bytes) == ("[vdso]", "anon", 8 * K, 4 * K)
    assert (v.num_mappings, v.share_count) == (3, 3)
    vv = snap.vmos[koids[10][1]]
    assert (vv.name, vv.kind, vv.share_count, vv.committed_bytes) == ("[vvar]", "phys", 3, None)
    # The detail process's koids are still 1, 2, ... in address order.
    assert koids[10] == [1, 2, 3]


# --------------------------------------------------------------------------
# Reading on threads, and skipping regions


def _crowd(root: Path, n: int) -> None:
    lib = _vma(0x400000, 0x401000, "r-xp", "08:01", 12, "/bin/prog", flags="rd ex mr mw me",
               Rss=4, Shared_Clean=4, Pss=1)
    for i in range(n):
        pid = 100 + i
        body = lib
        for j in range(i % 5 + 1):
            start = 0x10000000 + j * 0x10000
            body += _vma(start, start + 0x4000, "rw-p", "00:00", 0, "",
                         Rss=4 * j, Private_Dirty=4 * j, Anonymous=4 * j)
        _proc(root, pid, body)
    _proc(root, 100 + n, None)


def test_threads_give_the_same_snapshot_as_one_reader(tmp_path):
    root = tmp_path / "proc"
    _crowd(root, 60)
    one = _snapshot(root, workers=1)
    many = _snapshot(root, workers=4)
    assert one.processes == many.processes
    assert dict(one.vmos) == dict(many.vmos)
    assert one.provenance.denied == many.provenance.denied
    f = one.vmos[inode_koid(os.makedev(8, 1), 12)]
    assert (f.num_mappings, f.share_count) == (60, 60)
    # Anonymous koids in scan order: 1 for pid 100's one VMA, 2-3 for 101's...
    assert [m.vmo_koid for m in one.process(101).mappings] == [f.koid, 2, 3]


def test_regions_can_be_skipped(tmp_path):
    root = tmp_path / "proc"
    _crowd(root, 3)
    with_regions = _snapshot(root)
    without = _snapshot(root, regions=False)
    assert all(p.regions is not None for p in with_regions.processes if p.mappings)
    assert all(p.regions is None for p in without.processes)
    assert dict(with_regions.vmos) == dict(without.vmos)
    assert [p.vmo_refs for p in with_regions.processes] == [p.vmo_refs for p in without.processes]


@pytest.mark.parametrize("n", [0, 1, 2])
def test_build_records_matches_the_constructor(n):
    from zxmem.model import VmoRef

    koids = list(range(1, n + 1))
    assert objects._build_records(
        VmoRef, objects._REF_SLOTS, koids, [("MAPPING",)] * n, [()] * n, [None] * n
    ) == [VmoRef(k, ("MAPPING",)) for k in koids]


# --------------------------------------------------------------------------
# Process memory from the smaps that is read anyway (memgraph -v)

_TREES = ("cgroup-v1-hybrid", "cgroup-v2", "hostile-names", "kthread-zombie",
          "no-smaps-rollup", "unreadable-smaps")


@pytest.mark.parametrize("tree", _TREES)
def test_memory_from_smaps_matches_the_rollup_reader(tree):
    # The recorded trees' smaps_rollup (or, without it, their summed smaps)
    # as read by the process collector, against the totals add_objects
    # sums from each process's smaps (its smaps_rollup where a tree kept no
    # smaps).  Summed Pss may be a few kB low; in these trees the rollup and
    # the per-VMA values were recorded to agree.  Pss_Anon/File/Shmem exist
    # only in the rollup.
    from zxmem.sources.linux import CollectOptions, collect

    root = str(FIXTURES / "proc-trees" / tree / "proc")
    if not os.path.isdir(root):
        pytest.skip(f"no recorded tree {tree}")
    full = collect(root, CollectOptions(status=True, kernel_threads=True))
    bare = collect(root, CollectOptions(status=True, kernel_threads=True, memory=False))
    filled = objects.add_objects(bare, root, memory=True)
    checked = 0
    for p in full.processes:
        q = filled.process(p.koid)
        assert q is not None
        if p.memory is None:
            assert q.memory is None
            continue
        if q.memory is None:
            # smaps unreadable although smaps_rollup was: said so.
            assert any(w == f"smaps:{p.koid}" for w, _ in filled.provenance.denied)
            continue
        for key in ("pss_bytes", "private_bytes", "shared_bytes", "rss_bytes", "swap_bytes",
                    "swap_pss_bytes", "hugetlb_bytes"):
            assert getattr(q.memory, key) == getattr(p.memory, key), (tree, p.koid, key)
        checked += 1
    assert checked
    if any(os.path.exists(f"{root}/{p.koid}/smaps") for p in bare.processes
           if not p.kernel_thread):
        assert objects.MEMORY_NOTE in filled.provenance.notes


def test_memory_from_smaps_sums_the_vmas(tmp_path):
    root = tmp_path / "proc"
    d = _proc(root, 10, _vma(0x10000, 0x14000, "rw-p", "00:00", 0, "", Rss=16, Pss=10,
                             Private_Dirty=8, Shared_Clean=8, Anonymous=16, Swap=4)
              + _vma(0x20000, 0x21000, "r--p", "08:01", 5, "/lib/x", Rss=4, Pss=1,
                     Shared_Clean=4))
    (d / "status").write_text("Name:\tprog\nVmSwap:\t       4 kB\n")
    snap = objects.add_objects(objects.light_snapshot(str(root)), str(root), memory=True)
    m = snap.process(10).memory
    assert (m.rss_bytes, m.pss_bytes, m.private_bytes, m.shared_bytes) == (
        20 * K, 11 * K, 8 * K, 12 * K)
    assert m.pss_anon_bytes is None and m.hugetlb_bytes == 0
    assert m.swap_bytes is None  # this smaps has no SwapPss line: unknown, not 0
    # without memory=True the process keeps what it had
    assert objects.add_objects(objects.light_snapshot(str(root)), str(root)).process(
        10).memory is None


def test_reader_process_gives_the_same_snapshot_as_threads(tmp_path, monkeypatch):
    if not hasattr(os, "fork"):
        pytest.skip("no fork here: add_objects always reads on threads")
    root = tmp_path / "proc"
    _crowd(root, 70)
    _proc(root, 999, None)  # no smaps: kept, unknown
    monkeypatch.setattr(objects, "_FORK_MIN", 2)
    base = objects.light_snapshot(str(root))
    threads = objects.add_objects(base, str(root), memory=True)
    forked = objects.add_objects(base, str(root), memory=True, reader_process=True)
    assert forked.processes == threads.processes
    assert dict(forked.vmos) == dict(threads.vmos)
    assert forked.provenance == threads.provenance
    assert threads.process(999).mappings is None and threads.process(101).memory is not None

    # A reader process that dies at once: everything is read here instead.
    children_die_at_once(monkeypatch)
    again = objects.add_objects(base, str(root), memory=True, reader_process=True)
    assert again.processes == threads.processes and dict(again.vmos) == dict(threads.vmos)


def test_readers_that_stop_part_way_leave_the_rest_to_threads(tmp_path, monkeypatch):
    # Each reader process delivers the first chunk it takes, then exits:
    # the processes after the first missing chunk are read here, in order.
    if not hasattr(os, "fork"):
        pytest.skip("no fork here: add_objects always reads on threads")
    from zxmem.sources import objects_read

    root = tmp_path / "proc"
    _crowd(root, 70)  # 9 chunks of 8 processes
    monkeypatch.setattr(objects, "_FORK_MIN", 2)
    base = objects.light_snapshot(str(root))
    threads = objects.add_objects(base, str(root), memory=True)
    real = objects_read._reader_main
    delivered = []

    def first_chunk_only(collector, chunks, keys, handles, todo, wfd):
        # One chunk number taken from the shared pipe, then the end.
        one = objects_read._read_exact(todo, objects_read._TOKEN.size)
        r, w = os.pipe()
        os.write(w, one)
        os.close(w)
        real(collector, chunks, keys, handles, r, wfd)

    def finish_one(self, pid, r, detail, keys, real_finish=objects._Collector.finish_one):
        delivered.append(pid)
        real_finish(self, pid, r, detail, keys)

    read_here = []  # a reader process's calls land in its own copy of this list

    def read_one(self, pid, *args, real_read=objects._Collector.read_one):
        read_here.append(pid)
        return real_read(self, pid, *args)

    monkeypatch.setattr(objects_read, "_reader_main", first_chunk_only)
    monkeypatch.setattr(objects._Collector, "finish_one", finish_one)
    monkeypatch.setattr(objects._Collector, "read_one", read_one)
    forked = objects.add_objects(base, str(root), memory=True, reader_process=True)
    assert forked.processes == threads.processes
    assert dict(forked.vmos) == dict(threads.vmos)
    pids = [p.koid for p in base.processes]
    assert delivered == pids  # each once, in scan order
    assert sorted(read_here) == sorted(pids[16:])  # chunks 0 and 1 came from the readers


def test_a_slow_reader_holds_back_no_other(tmp_path, monkeypatch):
    # The reader that takes the first chunk is slow: the other takes the
    # chunks after it meanwhile (they arrive out of their turn and wait),
    # and the result is the same as read in order by threads.
    if not hasattr(os, "fork"):
        pytest.skip("no fork here: add_objects always reads on threads")
    import time

    from zxmem.sources import objects_read

    root = tmp_path / "proc"
    _crowd(root, 70)  # 71 processes: 9 chunks of 8
    monkeypatch.setattr(objects, "_FORK_MIN", 2)
    base = objects.light_snapshot(str(root))
    threads = objects.add_objects(base, str(root), memory=True)
    real = objects_read._read_exact
    log = tmp_path / "order"

    def read_exact(fd, size):
        got = real(fd, size)
        if got is not None and size == objects_read._TOKEN.size:
            (k,) = objects_read._TOKEN.unpack(got)
            with open(log, "a") as f:
                f.write(f"{os.getpid()} {k}\n")
            if k == 0:  # until the other reader has taken every other chunk
                deadline = time.monotonic() + 20
                while len(log.read_text().splitlines()) < 9 and time.monotonic() < deadline:
                    time.sleep(0.01)
        return got

    monkeypatch.setattr(objects_read, "_read_exact", read_exact)
    readers = objects.start_readers(str(root), memory=True)
    assert readers is not None
    try:
        snap = objects.add_objects(base, str(root), memory=True, readers=readers)
    finally:
        readers.close()
    assert readers.taken == len(readers.chunks)
    assert snap.processes == threads.processes and dict(snap.vmos) == dict(threads.vmos)
    taken = [line.split() for line in log.read_text().splitlines()]
    slow = next(pid for pid, k in taken if k == "0")
    assert sorted(int(k) for _pid, k in taken) == list(range(len(readers.chunks)))
    assert len(readers.chunks) == 9
    assert sorted(int(k) for pid, k in taken if pid != slow) == list(range(1, 9))


def test_readers_started_before_the_snapshot_give_the_same_snapshot(tmp_path, monkeypatch):
    # start_readers lists the root before the snapshot exists: a process that
    # appeared since (not in its list) is read here, one that the snapshot
    # does not hold is dropped, and koids follow the snapshot's order.
    if not hasattr(os, "fork"):
        pytest.skip("no fork here: add_objects always reads on threads")
    import shutil
    from dataclasses import replace

    root = tmp_path / "proc"
    _crowd(root, 70)
    monkeypatch.setattr(objects, "_FORK_MIN", 2)
    base = objects.light_snapshot(str(root))
    base = replace(base, processes=tuple(p for p in base.processes if p.koid != 105))
    threads = objects.add_objects(base, str(root), memory=True)
    late = root / "900"
    shutil.move(root / "130", late)  # not in the readers' list: read here
    readers = objects.start_readers(str(root), memory=True)
    assert readers is not None
    shutil.move(late, root / "130")
    try:
        snap = objects.add_objects(base, str(root), memory=True, readers=readers)
    finally:
        readers.close()
    assert readers.taken == len(readers.chunks)  # every chunk came from them
    assert [p.koid for p in snap.processes] == [p.koid for p in base.processes]
    assert snap.processes == threads.processes
    assert dict(snap.vmos) == dict(threads.vmos)
    assert snap.provenance == threads.provenance
    # Other options than the readers': not theirs to give, read here.
    readers = objects.start_readers(str(root), memory=True)
    assert readers is not None and not readers.fits(objects.VMAPS_KEYS, True, True)
    try:
        plain = objects.add_objects(base, str(root), readers=readers)
    finally:
        readers.close()
    assert plain.processes == objects.add_objects(base, str(root)).processes
    assert objects.start_readers(str(tmp_path / "missing")) is None


# --------------------------------------------------------------------------
# Which mounted file systems hold memory objects (one definition with hidden)


def test_files_on_tmpfs_and_devtmpfs_are_shmem_hugetlbfs_files_are_not(tmp_path):
    # Shmem counts tmpfs (devtmpfs is one) pages, not HugeTLB pages: a
    # hugetlbfs file is not a shmem object (its pages would be taken off the
    # Shmem remainder that they are not in).
    root = tmp_path / "proc"
    smaps = (_vma(0x10000, 0x11000, "rw-s", "00:2a", 7, "/dev/shm/a", Rss=4)
             + _vma(0x20000, 0x21000, "rw-s", "00:05", 8, "/dev/b", Rss=4)
             + _vma(0x40000000, 0x40200000, "rw-s", "00:2c", 9, "/mnt/huge/c", Rss=2048))
    d = _proc(root, 10, smaps)
    (d / "mountinfo").write_text(
        "30 1 0:42 / /dev/shm rw - tmpfs tmpfs rw\n"
        "31 1 0:5 / /dev rw - devtmpfs devtmpfs rw\n"
        "32 1 0:44 / /mnt/huge rw - hugetlbfs hugetlbfs rw,pagesize=2M\n")
    snap = _snapshot(root)
    kinds = {m.path: snap.vmos[m.vmo_koid].kind for m in snap.process(10).mappings}
    assert kinds == {"/dev/shm/a": "shmem", "/dev/b": "shmem", "/mnt/huge/c": "file"}


def test_references_by_mapping_are_the_records_and_shared_per_object():
    # refs_by_mapping gives what mapping_refs gives, with one record per
    # inode-backed object shared by every process that maps it; sequence
    # koids (anonymous objects, clones, the vDSO's) get records of their own.
    import random

    from zxmem.model import INODE_KOID_BASE, Mapping

    rng = random.Random(3)
    files = [INODE_KOID_BASE + i for i in (0, 1, 7, 1 << 20)]
    collector = objects._Collector("/proc", 1)
    seen: dict[int, object] = {}
    next_seq = 1
    for n in [0, 1, 2, *range(3, 60)]:
        koids = []
        for _ in range(n):
            if rng.random() < 0.5:
                koids.append(rng.choice(files))
            else:
                koids.append(rng.choice((1, next_seq)))  # 1: a shared special's koid
                next_seq += 1
        maps = tuple(Mapping(i, i + 1, "r--p", 0, 0, 0, "", k) for i, k in enumerate(koids))
        got = collector.refs_by_mapping(maps)
        assert type(got) is tuple and list(got) == objects.mapping_refs(maps)
        for k, ref in zip(koids, got, strict=True):
            if k >= INODE_KOID_BASE:
                assert seen.setdefault(k, ref) is ref
    assert set(seen) == set(files)


def test_a_mapped_files_fdinfo_is_read_with_the_descriptors(tmp_path):
    # read_fds reads the fdinfo of a file the process maps itself while it
    # reads the descriptors (in the reader processes); without the mappings
    # it is left to handles(), after every process is read.  The references
    # are the same either way.
    import mmap

    from zxmem.sources import smaps

    mapped, plain = tmp_path / "mapped", tmp_path / "plain"
    mapped.write_bytes(b"x" * 8192)
    plain.write_bytes(b"y")
    with open(mapped, "r+b") as f, open(plain, "rb") as g, mmap.mmap(f.fileno(), 8192):
        pid = os.getpid()
        refs = []
        for with_table in (True, False):
            c = objects._Collector("/proc", 1)
            table, why = c.table(pid, True, smaps.SMAPS_FIELDS)
            assert why is None
            raw, why = c.read_fds(pid, table if with_table else None)
            assert why is None
            info = {fd: i for fd, _link, _kind, _st, i in raw}
            st = os.fstat(g.fileno())
            on_memory_fs = c._memory_file(pid, st, set())
            if with_table:
                assert info[f.fileno()] is not None
            else:
                assert (info[f.fileno()] is None) == (not on_memory_fs)
            assert (info[g.fileno()] is None) == (not on_memory_fs)
            maps = c.ingest(pid, table, True, True)
            refs.append(c.handles(pid, raw, maps))
        koid = inode_koid(os.fstat(f.fileno()).st_dev, os.fstat(f.fileno()).st_ino)
        (mine,) = [r for r in refs[0] if r.fd == f.fileno()]
        assert mine.vmo_koid == koid and mine.via == ("HANDLE",) and "WRITE" in mine.handle_rights
        assert refs[0] == refs[1]


def test_clone_allocs_in_bulk_are_clone_alloc_row_by_row():
    import random

    rng = random.Random(5)
    values = [None, 0, 4096, 8192, 1 << 40]
    for n in [0, 1, 2, *range(3, 40)] * 20:
        anon = tuple(rng.choice(values[1:]) if rng.random() < 0.9 else None for _ in range(n))
        pss = tuple(rng.choice(values[1:]) if rng.random() < 0.9 else None for _ in range(n))
        shared = tuple(rng.choice(values[1:]) if rng.random() < 0.9 else None for _ in range(n))
        for columns in ((anon, pss, shared), tuple(tuple(x or 0 for x in c)
                                                   for c in (anon, pss, shared))):
            assert objects._clone_allocs(*columns) == list(map(objects._clone_alloc, *columns))


def test_own_locks_read_early_are_the_ones_sizes_reads(tmp_path):
    # add_objects reads this process's POSIX locks (and sets up cachestat)
    # at its start, while the readers read; sizes() then leaves a file this
    # process has locked unopened, as when it reads the locks itself.
    import fcntl
    import mmap

    from zxmem.sources import smaps

    path = tmp_path / "locked"
    path.write_bytes(b"x" * 8192)
    with open(path, "r+b") as f, mmap.mmap(f.fileno(), 8192):
        fcntl.lockf(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        st = os.fstat(f.fileno())
        koid = inode_koid(st.st_dev, st.st_ino)
        got = objects._gathered(objects._Collector("/proc", 1), True, True)
        assert got.cachestat is not None and (st.st_dev, st.st_ino) in (got.locks or ())
        assert objects._gathered(objects._Collector("/proc", 1), True, False).locks is None
        found = []
        for early in (got.locks, None):
            c = objects._Collector("/proc", 1)
            table, why = c.table(os.getpid(), True, smaps.SMAPS_FIELDS)
            c.ingest(os.getpid(), table, True, True)
            c.sizes(got.cachestat, {koid}, early)
            found.append((c.objs[koid].committed_bytes, c.objs[koid].size_bytes,
                          sorted(n for n in c.notes if "POSIX locks" in n)))
        assert found[0] == found[1] and found[0][0] is None and found[0][1] == 8192
        assert found[0][2]
