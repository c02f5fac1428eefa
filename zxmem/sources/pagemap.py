"""Page-level source: ``/proc/PID/pagemap``, ``/proc/kpagecount``, ``/proc/kpageflags``.

Facts used (``Documentation/admin-guide/mm/pagemap.rst``, ``fs/proc/task_mmu.c``
``pagemap_read``, ``fs/proc/page.c``; spec linux-kernel B.2, B.3):

* ``/proc/PID/pagemap`` holds one little-endian u64 per virtual page, at file
  offset ``vaddr / PAGE_SIZE * 8``: bit 63 present, bit 62 swapped, bit 61
  file-backed or shared anonymous, bits 0–54 the PFN when present, or the
  swap type (bits 0–4) and offset (bits 5–54) when swapped.  Opening it
  needs ptrace read access; the PFNs (and swap entries) read as 0 unless the
  *opener* has ``CAP_SYS_ADMIN``.  Unmapped ranges read as zeros, so only the
  VMAs listed in ``/proc/PID/maps`` are read, each with one ``pread``.
* ``/proc/kpagecount`` and ``/proc/kpageflags``: one u64 per PFN, root only
  (mode 0400).  With ``CONFIG_NO_PAGE_MAPCOUNT`` (since ~6.15) kpagecount of
  a large folio is the folio's *average* mapcount, so a per-page comparison
  with the mappings found is no longer exact.

Everything per page stays in numpy arrays (imported lazily); the counting is
done by :class:`zxmem.exact.PageCensus`.
"""

from __future__ import annotations

import errno
import gzip
import os
import re
import struct
from dataclasses import dataclass, field

from zxmem.model import PAGE_SIZE
from zxmem.sources.readfile import errname as _errname
from zxmem.sources.readfile import read_file

PM_PFN_MASK = (1 << 55) - 1  # also the swap (type, offset) when swapped
PM_FILE = 1 << 61
PM_SWAP = 1 << 62
PM_PRESENT = 1 << 63

# Addresses at or above this are the kernel's ([vsyscall]): not in pagemap.
_USER_LIMIT = 1 << 63

# VMAs closer than this are read with one pread: the gap's entries are
# zeros the kernel writes cheaply, cheaper than another system call.
_MERGE_GAP = 4 << 20

# Entries read into the scratch buffer before decoding (8 MiB of pagemap):
# bounds memory for huge sparse reservations.
_CHUNK_PAGES = 1 << 20

# kpagecount/kpageflags: PFNs closer than this are read as one run.
_KPAGE_GAP = 64
_KPAGE_BATCH = 1 << 17  # entries per batch (2 MiB for both files)

_VMA_RANGE = re.compile(rb"^([0-9a-f]+)-([0-9a-f]+) ", re.M)


def _np():
    import numpy

    return numpy


# -- pure parsers -----------------------------------------------------------


def vma_ranges(maps: bytes) -> list[tuple[int, int]]:
    """``(start, end)`` of every VMA in a ``/proc/PID/maps`` text, user space only."""
    out = []
    for a, b in _VMA_RANGE.findall(maps):
        start = int(a, 16)
        if start < _USER_LIMIT:
            out.append((start, int(b, 16)))
    return out


@dataclass(frozen=True, slots=True)
class Vma:
    """One line of ``/proc/PID/maps`` (fs/proc/task_mmu.c ``show_map_vma``)."""

    start: int
    end: int
    perms: str
    offset: int
    dev: tuple[int, int]
    inode: int
    path: bytes


def parse_maps(maps: bytes) -> list[Vma]:
    """Every user-space VMA of a maps text, with its pathname (raw bytes)."""
    out = []
    for line in maps.split(b"\n"):
        if not line:
            continue
        parts = line.split(None, 5)
        if len(parts) < 5:
            continue
        a, _, b = parts[0].partition(b"-")
        start = int(a, 16)
        if start >= _USER_LIMIT:
            continue
        major, _, minor = parts[3].partition(b":")
        out.append(
            Vma(
                start=start,
                end=int(b, 16),
                perms=parts[1].decode("ascii", "replace"),
                offset=int(parts[2], 16),
                dev=(int(major, 16), int(minor, 16)),
                inode=int(parts[4]),
                path=parts[5].rstrip(b"\n") if len(parts) > 5 else b"",
            )
        )
    return out


def merge_ranges(ranges: list[tuple[int, int]], gap: int = _MERGE_GAP) -> list[tuple[int, int]]:
    """Sorted ranges joined where less than ``gap`` bytes apart."""
    out: list[list[int]] = []
    for start, end in sorted(ranges):
        if out and start - out[-1][1] <= gap:
            if end > out[-1][1]:
                out[-1][1] = end
        else:
            out.append([start, end])
    return [(s, e) for s, e in out]


def decode_entries(entries, split: bool = False):
    """Split pagemap entries into PFNs of present pages and swap entries.

    Pure function of a ``uint64`` array.  Returns ``(pfns, swap)``, or with
    ``split`` ``(anon_pfns, other_pfns, swap)``: bit 61 clear means an
    anonymous page, which (but for KSM) a process maps only once.  A swap
    entry is bits 0–54 (type and offset), which names the slot across
    processes; ``swap`` is None when there is none.
    """
    np = _np()
    signed = entries.view(np.int64)
    present = signed < 0  # bit 63
    swapped = (entries & np.uint64(PM_SWAP | PM_PRESENT)) == np.uint64(PM_SWAP)
    swap = entries[swapped] & np.uint64(PM_PFN_MASK) if swapped.any() else None
    if not split:
        return entries[present] & np.uint64(PM_PFN_MASK), swap
    kept = entries[present]
    # PM_FILE is bit 61: shift it to the sign bit (the present bit is set).
    other = (kept << np.uint64(2)).view(np.int64) < 0
    mask = np.uint64(PM_PFN_MASK)
    if other.any():
        return kept[~other] & mask, kept[other] & mask, swap
    return kept & mask, kept[:0], swap


def max_pfn_from_zoneinfo(zoneinfo: bytes) -> int | None:
    """One past the highest PFN of any memory zone (``/proc/zoneinfo``).

    Each zone prints ``spanned N`` before ``start_pfn: S`` (mm/vmstat.c
    ``zoneinfo_show_print``); the zone covers PFNs ``[S, S + N)``.
    """
    best = None
    spanned = None
    for line in zoneinfo.split(b"\n"):
        words = line.split()
        if len(words) != 2:
            continue
        if words[0] == b"spanned":
            spanned = int(words[1])
        elif words[0] == b"start_pfn:" and spanned is not None:
            end = int(words[1]) + spanned
            best = end if best is None else max(best, end)
            spanned = None
    return best


def config_option(config: bytes, name: bytes) -> bool | None:
    """Whether ``CONFIG_<name>=y`` in a kernel .config text (None: not mentioned)."""
    for line in config.split(b"\n"):
        if line.startswith(b"CONFIG_" + name + b"="):
            return line.split(b"=", 1)[1].strip() in (b"y", b"m")
        if line == b"# CONFIG_" + name + b" is not set":
            return False
    return None


# -- reading ----------------------------------------------------------------


_read = read_file


def kernel_no_page_mapcount(proc_root: str, release: str | None) -> bool | None:
    """``CONFIG_NO_PAGE_MAPCOUNT`` from /proc/config.gz or /boot/config-*."""
    try:
        with gzip.open(os.path.join(proc_root, "config.gz"), "rb") as f:
            return config_option(f.read(), b"NO_PAGE_MAPCOUNT")
    except OSError:
        pass
    if release:
        fs_root = os.path.dirname(os.path.abspath(proc_root)) or "/"
        try:
            data = _read(os.path.join(fs_root, "boot", f"config-{release}"))
            return config_option(data, b"NO_PAGE_MAPCOUNT")
        except OSError:
            pass
    return None


class _Gone(Exception):
    pass


# PAGEMAP_SCAN (Linux 6.7, fs/proc/task_mmu.c ``do_pagemap_scan``):
# _IOWR('f', 16, struct pm_scan_arg), 12 u64 arguments; categories used here.
PAGEMAP_SCAN = 0xC0606610
PAGE_IS_PRESENT = 1 << 3
PAGE_IS_SWAPPED = 1 << 4
# Highest user address tried first (5-level paging), then 4-level.
_SCAN_ENDS = (0x00FFFFFFFFFFF000, 0x00007FFFFFFFF000)
_SCAN_REGIONS = 4096


class PagemapReader:
    """Reads one process at a time into (PFNs, swap entries[, tags]).

    Which ranges to read: with PAGEMAP_SCAN (6.7+) one ioctl returns the
    runs of present or swapped pages as an array, so neither the maps text
    nor the never-touched parts of mappings are read; older kernels (or an
    ``ioctl`` error) fall back to the VMAs of ``/proc/PID/maps``.  Runs
    closer than ``_MERGE_GAP`` are read with one ``pread``.
    """

    def __init__(self, proc_root: str) -> None:
        np = _np()
        self.proc = proc_root.rstrip("/") or "/"
        self._buf = np.empty(_CHUNK_PAGES, dtype=np.uint64)
        self._mv = memoryview(self._buf).cast("B")
        self._regions = np.zeros((_SCAN_REGIONS, 3), dtype=np.uint64)
        self._scan_ends = list(_SCAN_ENDS)
        self.use_scan = True
        self.present_pages = 0
        self.nonzero_pfns = 0

    def _scan_ranges(self, fd: int):
        """Merged (starts, ends) arrays of present/swapped runs, or None."""
        import fcntl
        import struct

        np = _np()
        regions = self._regions
        addr = regions.ctypes.data
        mask = PAGE_IS_PRESENT | PAGE_IS_SWAPPED
        while self._scan_ends:
            end = self._scan_ends[0]
            parts = []
            start = 0
            try:
                while True:
                    arg = bytearray(
                        struct.pack("12Q", 96, 0, start, end, 0, addr, _SCAN_REGIONS,
                                    0, 0, 0, mask, mask)
                    )
                    n = fcntl.ioctl(fd, PAGEMAP_SCAN, arg, True)
                    parts.append(regions[:n, :2].copy())
                    walk_end = struct.unpack_from("Q", arg, 32)[0]
                    if n < _SCAN_REGIONS or walk_end >= end:
                        break
                    start = walk_end
            except OSError as exc:
                if exc.errno == errno.EFAULT and len(self._scan_ends) > 1 and not parts:
                    self._scan_ends.pop(0)  # this address-space size is not supported
                    continue
                if exc.errno in (errno.ENOTTY, errno.EINVAL, errno.EFAULT):
                    self.use_scan = False
                    return None
                raise
            runs = np.concatenate(parts) if len(parts) > 1 else parts[0]
            if not len(runs):
                return runs[:, 0], runs[:, 1]
            starts = runs[:, 0]
            ends = runs[:, 1]
            cut = np.flatnonzero(starts[1:] - ends[:-1] > _MERGE_GAP) + 1
            first = np.concatenate(([0], cut))
            last = np.concatenate((cut - 1, [len(runs) - 1]))
            return starts[first], ends[last]
        self.use_scan = False
        return None

    def read(self, pid: int, vmas: list[Vma] | None = None):
        """(anon, other, swap, anon_tags, other_tags) of ``pid``.

        ``anon``: PFNs of anonymous pages (pagemap bit 61 clear); ``other``:
        PFNs of the rest; tags (index of the mapping in ``vmas`` per page)
        only when ``vmas`` is given.  Raises OSError (EACCES, ENOENT, ESRCH).
        """
        base = f"{self.proc}/{pid}/"
        fd = os.open(base + "pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            tagged = None
            if vmas is not None:
                ranges = [(v.start, v.end) for v in vmas]
                tagged = list(range(len(vmas)))
            else:
                got = self._scan_ranges(fd) if self.use_scan else None
                if got is not None:
                    ranges = list(zip(got[0].tolist(), got[1].tolist(), strict=True))
                else:
                    ranges = merge_ranges(vma_ranges(_read(base + "maps")))
            return self._read_ranges(fd, ranges, tagged)
        finally:
            os.close(fd)

    def _read_ranges(self, fd: int, ranges, tagged):
        np = _np()
        anon_parts, other_parts, swap_parts = [], [], []
        atag_parts, otag_parts = [], []
        buf, mv = self._buf, self._mv
        tag_buf = np.empty(_CHUNK_PAGES, dtype=np.int32) if tagged is not None else None
        fill = 0

        def flush(n: int) -> None:
            entries = buf[:n]
            anon, other, swap = decode_entries(entries, split=True)
            anon_parts.append(anon)
            other_parts.append(other)
            if swap is not None:
                swap_parts.append(swap)
            if tag_buf is not None:
                present = entries.view(np.int64) < 0
                kept = entries[present]
                is_other = (kept << np.uint64(2)).view(np.int64) < 0
                tags = tag_buf[:n][present]
                atag_parts.append(tags[~is_other])
                otag_parts.append(tags[is_other])

        for i, (start, end) in enumerate(ranges):
            page = start // PAGE_SIZE
            last = end // PAGE_SIZE
            while page < last:
                n = min(last - page, _CHUNK_PAGES - fill)
                want = n * 8
                got = os.preadv(fd, [mv[fill * 8 : fill * 8 + want]], page * 8)
                if got < want:
                    # Past the end of the address space (or the VMA went
                    # away): the rest reads as not present.
                    buf[fill + got // 8 : fill + n] = 0
                if tag_buf is not None:
                    tag_buf[fill : fill + n] = tagged[i]
                fill += n
                page += n
                if fill == _CHUNK_PAGES:
                    flush(fill)
                    fill = 0
        if fill:
            flush(fill)
        anon, other = _cat(anon_parts), _cat(other_parts)
        for a in (anon, other):
            if len(a):
                self.present_pages += len(a)
                # Without CAP_SYS_ADMIN every PFN reads as 0: sample both ends.
                self.nonzero_pfns += int(np.count_nonzero(a[:64])) + int(
                    np.count_nonzero(a[-64:])
                )
        swap = _cat(swap_parts) if swap_parts else None
        if tag_buf is None:
            return anon, other, swap, None, None
        return anon, other, swap, _cat(atag_parts), _cat(otag_parts)


def _cat(parts):
    np = _np()
    if len(parts) == 1:
        return parts[0]
    if not parts:
        return np.zeros(0, dtype=np.uint64)
    return np.concatenate(parts)


def ksm_may_merge(proc_root: str) -> bool:
    """Whether KSM has (or may have) merged pages (/sys/kernel/mm/ksm)."""
    fs_root = os.path.dirname(os.path.abspath(proc_root)) or "/"
    base = os.path.join(fs_root, "sys", "kernel", "mm", "ksm")
    if not os.path.isdir(base):
        return False
    try:
        return any(
            int(_read(os.path.join(base, name)) or b"0") > 0
            for name in ("pages_shared", "pages_sharing")
        )
    except (OSError, ValueError):
        return True


def _read_runs(fd: int, starts, lengths, offsets, out) -> None:
    """pread runs of u64 entries (PFN ``starts``, ``lengths``) into ``out``."""
    mv = memoryview(out).cast("B")
    for start, length, pos in zip(starts, lengths, offsets, strict=True):
        got = os.preadv(fd, [mv[pos * 8 : (pos + length) * 8]], start * 8)
        if got < length * 8:
            out[pos + got // 8 : pos + length] = 0  # past the end: no page


def read_pfn_file(path: str, pfns):
    """Values of a PFN-indexed u64 file (kpagecount, kpageflags) for the
    sorted distinct ``pfns``, as a uint64 array aligned with them.

    PFNs closer than ``_KPAGE_GAP`` are read with one ``pread``; batches of
    about ``_KPAGE_BATCH`` entries bound the scratch memory.
    """
    np = _np()
    pfns = np.asarray(pfns, dtype=np.int64)
    values = np.empty(len(pfns), dtype=np.uint64)
    if not len(pfns):
        return values
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        breaks = np.flatnonzero(np.diff(pfns) > _KPAGE_GAP) + 1
        run_first = np.concatenate(([0], breaks))
        run_last = np.concatenate((breaks - 1, [len(pfns) - 1]))
        starts = pfns[run_first]
        lengths = pfns[run_last] - starts + 1
        ends = np.cumsum(lengths)
        cuts = np.searchsorted(ends, np.arange(_KPAGE_BATCH, int(ends[-1]), _KPAGE_BATCH))
        bounds = sorted({0, len(starts), *(int(c) + 1 for c in cuts)})
        for i, j in zip(bounds[:-1], bounds[1:], strict=True):
            if i >= j:
                continue
            lens = lengths[i:j]
            offsets = np.concatenate(([0], np.cumsum(lens)[:-1]))
            buf = np.empty(int(lens.sum()), dtype=np.uint64)
            _read_runs(fd, starts[i:j].tolist(), lens.tolist(), offsets.tolist(), buf)
            a, b = int(run_first[i]), int(run_last[j - 1]) + 1
            run_of = np.repeat(np.arange(j - i), run_last[i:j] - run_first[i:j] + 1)
            values[a:b] = buf[offsets[run_of] + (pfns[a:b] - starts[i:j][run_of])]
    finally:
        os.close(fd)
    return values


def read_kpages(proc_root: str, census) -> None:
    """kpagecount for every PFN the census saw, kpageflags for those it
    wants (:meth:`PageCensus.flags_wanted`); raises OSError."""
    proc = proc_root.rstrip("/") or "/"
    seen = census.seen_pfns()
    # In pieces: the per-PFN temporaries stay a few MiB however much is seen.
    step = _KPAGE_BATCH * 2
    for i in range(0, len(seen), step):
        part = seen[i : i + step]
        census.apply_counts(part, read_pfn_file(f"{proc}/kpagecount", part))
    for i in range(0, len(seen), step):
        wanted = census.flags_wanted(seen[i : i + step])
        if len(wanted):
            census.apply_flags(wanted, read_pfn_file(f"{proc}/kpageflags", wanted))


# -- the whole scan -----------------------------------------------------------


@dataclass
class ExactScan:
    """Result of :func:`scan`.  ``unavailable`` says why nothing is exact."""

    results: dict = field(default_factory=dict)  # pid -> ExactCounts
    census: object = None
    denied: list = field(default_factory=list)  # (pid, errno name)
    unavailable: str | None = None
    notes: list = field(default_factory=list)
    vmas: dict = field(default_factory=dict)  # pid -> [Vma] for tagged pids


def availability(proc_root: str, release: str | None) -> tuple[str | None, list[str]]:
    """(why exact accounting is unavailable or None, notes)."""
    proc = proc_root.rstrip("/") or "/"
    notes: list[str] = []
    for name in ("kpagecount", "kpageflags"):
        try:
            os.close(os.open(f"{proc}/{name}", os.O_RDONLY | os.O_CLOEXEC))
        except OSError as exc:
            if exc.errno in (errno.EACCES, errno.EPERM):
                return f"/proc/{name} is readable only by root", notes
            if exc.errno == errno.ENOENT:
                if proc == "/proc":
                    return f"no /proc/{name} (kernel without CONFIG_PROC_PAGE_MONITOR)", notes
                return f"no {proc}/{name} (a recorded tree has no page tables)", notes
            return f"{proc}/{name}: {exc.strerror}", notes
    no_mapcount = kernel_no_page_mapcount(proc, release)
    if no_mapcount:
        return (
            "kernel built with CONFIG_NO_PAGE_MAPCOUNT: kpagecount is a large "
            "folio's average mapcount, not per page",
            notes,
        )
    if no_mapcount is None:
        notes.append(
            "kernel config unknown: if CONFIG_NO_PAGE_MAPCOUNT is set, pages of "
            "large folios shared with unreadable processes may be missed"
        )
    return None, notes


def max_pfn(proc_root: str) -> int:
    """One past the highest RAM PFN (``/proc/zoneinfo``; else 64 GiB worth)."""
    proc = proc_root.rstrip("/") or "/"
    try:
        found = max_pfn_from_zoneinfo(_read(f"{proc}/zoneinfo"))
    except OSError:
        found = None
    return found or (64 << 30) // PAGE_SIZE


def _read_all(proc_root, pids, tag_pids, out: ExactScan, census) -> list[PagemapReader]:
    """Read every PID on worker threads; add them to ``census`` here.

    The page-table walks behind pagemap reads run in the kernel with the
    GIL released, so two readers keep two cores busy while this thread
    counts (the census's arrays are only touched from this thread).
    """
    import queue
    import threading

    proc = proc_root.rstrip("/") or "/"
    nworkers = max(1, min(4, (os.cpu_count() or 1)))
    ksm = ksm_may_merge(proc_root)
    readers = [PagemapReader(proc_root) for _ in range(nworkers)]
    todo = iter(pids)
    lock = threading.Lock()
    done: queue.Queue = queue.Queue(maxsize=64)
    _END = object()

    def work(reader: PagemapReader) -> None:
        try:
            while True:
                with lock:
                    pid = next(todo, None)
                if pid is None:
                    return
                try:
                    vmas = None
                    if pid in tag_pids:
                        vmas = parse_maps(_read(f"{proc}/{pid}/maps"))
                    got = reader.read(pid, vmas)
                except OSError as exc:
                    if exc.errno not in (errno.ENOENT, errno.ESRCH):
                        done.put((pid, exc, None))
                    continue
                done.put((pid, got, vmas))
        finally:
            done.put(_END)

    threads = [threading.Thread(target=work, args=(r,), daemon=True) for r in readers]
    for t in threads:
        t.start()
    running = len(threads)
    while running:
        item = done.get()
        if item is _END:
            running -= 1
            continue
        pid, got, vmas = item
        if isinstance(got, OSError):
            out.denied.append((pid, _errname(got)))
            continue
        if vmas is not None:
            out.vmas[pid] = vmas
        anon, other, swap, atags, otags = got
        census.add(pid, anon, other, swap, atags, otags, anon_may_repeat=ksm)
    for t in threads:
        t.join()
    out.denied.sort()
    return readers


def scan(
    proc_root: str,
    pids,
    *,
    release: str | None = None,
    tag_pids=(),
) -> ExactScan:
    """Read every PID's pagemap and the kpage files; compute exact counts.

    ``pids``: the processes to count (all processes with an address space,
    for exact results).  ``tag_pids``: processes whose per-mapping breakdown
    is wanted (their VMAs are in ``.vmas``; see ``PageCensus.overlap``).
    Processes that exit during the scan are left out; unreadable ones are
    in ``.denied`` and their pages show up as shared with unreadable.
    """
    from zxmem.exact import PageCensus

    out = ExactScan()
    reason, notes = availability(proc_root, release)
    out.notes.extend(notes)
    if reason:
        out.unavailable = reason
        return out
    pids = list(pids)
    census = PageCensus(max_pfn(proc_root), max_processes=len(pids) + 1)
    tag_pids = set(tag_pids)
    readers = _read_all(proc_root, pids, tag_pids, out, census)
    present = sum(r.present_pages for r in readers)
    nonzero = sum(r.nonzero_pfns for r in readers)
    if present and not nonzero:
        out.unavailable = "pagemap shows no page frame numbers without CAP_SYS_ADMIN"
        return out
    try:
        read_kpages(proc_root, census)
    except OSError as exc:
        out.unavailable = f"/proc/kpagecount: {exc.strerror}"
        return out
    out.census = census
    out.results = census.results()
    return out


def recorded_tree(proc_root: str) -> bool:
    """Whether ``proc_root`` is a recorded tree (a copy of /proc's files):
    not /proc itself, and no ``kpagecount`` in it (the live kernel's is
    there even to a user who cannot read it)."""
    proc = proc_root.rstrip("/") or "/"
    return proc != "/proc" and not os.path.lexists(f"{proc}/kpagecount")


# ---------------------------------------------------------------------------
# ps --explain --exact: the page frames of a job's processes

_PRESENT = PM_PRESENT
_ZERO_PAGE_BIT = 1 << 24  # kpageflags KPF_ZERO_PAGE


@dataclass
class ChargePages:
    """Page frames mapped by each process read (one list a process, a frame
    once per page mapped) and, per frame, kpagecount, kpagecgroup (the
    memory cgroup's inode) and kpageflags."""

    frames: list[list[int]] = field(default_factory=list)
    count: dict[int, int] = field(default_factory=dict)
    memcg: dict[int, int] = field(default_factory=dict)
    flags: dict[int, int] = field(default_factory=dict)


def _read_words(fd: int, pfns: list[int]) -> dict[int, int]:
    """8-byte words at ``pfn * 8`` for sorted, unique ``pfns``, read in runs."""
    out: dict[int, int] = {}
    i = 0
    while i < len(pfns):
        j = i
        while j + 1 < len(pfns) and pfns[j + 1] == pfns[j] + 1 and j - i < 4095:
            j += 1
        data = os.pread(fd, 8 * (j - i + 1), pfns[i] * 8)
        for k, (w,) in enumerate(struct.iter_unpack("<Q", data[: 8 * (len(data) // 8)])):
            out[pfns[i] + k] = w
        i = j + 1
    return out


def _process_frames(root: str, pid: int) -> list[int] | None:
    """The PFNs of ``pid``'s present pages (None: it exited).  Raises
    :class:`ZxmemError` when its page tables cannot be read or hide PFNs."""
    from zxmem.errors import ZxmemError

    try:
        ranges = vma_ranges(_read(f"{root}/{pid}/maps"))
        fd = os.open(f"{root}/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
    except FileNotFoundError:
        return None  # exited since the scan: its PSS is gone from the sum too
    except OSError as exc:
        raise ZxmemError(f"--exact: cannot read {root}/{pid}/pagemap: "
                         f"{exc.strerror}") from None
    pfns: list[int] = []
    hidden = 0
    try:
        for start, end in ranges:
            data = os.pread(fd, 8 * ((end - start) // PAGE_SIZE), 8 * (start // PAGE_SIZE))
            for (e,) in struct.iter_unpack("<Q", data):
                if e & _PRESENT:
                    pfn = e & PM_PFN_MASK
                    if pfn:
                        pfns.append(pfn)
                    else:
                        hidden += 1
    except OSError:
        pass  # a range unmapped while read: its pages are no longer mapped
    finally:
        os.close(fd)
    if hidden and not pfns:
        raise ZxmemError("--exact: pagemap hides page frame numbers (needs root)")
    return pfns


def read_charge_pages(proc_root: str, pids) -> ChargePages:
    """:class:`ChargePages` of ``pids`` (those that exited are left out).
    Raises :class:`ZxmemError` when a page table or kpage file is unreadable."""
    from zxmem.errors import ZxmemError

    out = ChargePages()
    for pid in pids:
        frames = _process_frames(proc_root, pid)
        if frames is not None:
            out.frames.append(frames)
    wanted = sorted({p for pfns in out.frames for p in pfns})
    try:
        for name, words in (("kpagecount", out.count), ("kpagecgroup", out.memcg),
                            ("kpageflags", out.flags)):
            fd = os.open(f"{proc_root}/{name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                words.update(_read_words(fd, wanted))
            finally:
                os.close(fd)
    except OSError as exc:
        raise ZxmemError(f"--exact: cannot read {proc_root}/kpagecgroup: "
                         f"{exc.strerror}") from None
    return out
