"""Exact, page-level memory accounting over arrays of page frame numbers.

Pure: nothing here reads files.  :mod:`zxmem.sources.pagemap` reads
``/proc/PID/pagemap`` (which physical page, or which swap slot, backs every
virtual page; ``Documentation/admin-guide/mm/pagemap.rst``) and
``/proc/kpagecount`` + ``/proc/kpageflags`` (how often each physical page is
mapped, and what it is), and feeds the arrays to a :class:`PageCensus`.

What the census computes, per process (spec linux-kernel B.1–B.3, B.12–B.14):

* resident: distinct physical pages the process maps.  A page the process
  maps several times (one file mapped twice) counts once; the shared zero
  page and the huge zero page (kpageflags ``ZERO_PAGE``) and frames without
  a ``struct page`` (device memory, ``NOPAGE``) are left out, as smaps
  leaves them out of ``Rss``.
* private: resident pages no other process maps: what the kernel could free
  if the process exited.  ``smaps`` calls a page "shared" as soon as it has
  two *mappings*, even in one process; here sharing is between *processes*.
* PSS: every resident page contributes ``PAGE_SIZE / n``, ``n`` = the number
  of distinct processes mapping it (not the number of mappings).
* shared: resident − private.
* pages the kernel says are mapped more often than the processes read here
  map them (``kpagecount`` > mappings seen: a process that could not be
  read, or one that started during the scan) are "shared with
  unreadable/kernel": never private, and each surplus mapping counts as one
  more process in the PSS divisor.
* swap: swap slots ``(type, offset)`` found in page tables, counted across
  processes the same way (procrank's method, spec B.12).  shmem pages that
  are swapped out leave no entry in page tables (pagemap.rst, "Exceptions
  for Shared Memory"), so they are not in these numbers.
* KSM-merged pages are ordinary shared anonymous pages here: they count as
  shared among the processes that map them.
* THP and other large folios need no special case: pagemap reports the PFN
  of every 4 KiB subpage, and the census works per PFN (the exclusive bit 56
  of pagemap, wrong for PMD-mapped THP on 6.18, is never used).

numpy is imported lazily, by the functions that use it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

from zxmem.model import PAGE_SIZE

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np

# kpageflags bits (include/uapi/linux/kernel-page-flags.h).
KPF_ANON = 12
KPF_SWAPBACKED = 14
KPF_HUGE = 17
KPF_NOPAGE = 20
KPF_KSM = 21
KPF_THP = 22
KPF_ZERO_PAGE = 24

# Per-PFN status bits kept by the census.
ST_SEEN = 1  # kpagecount/kpageflags were read for this PFN
ST_ZERO = 2  # the zero page or the huge zero page: not counted as resident
ST_NOPAGE = 4  # no struct page behind the frame: not RAM, not counted
ST_UNSEEN = 8  # mapped more often than the processes read here map it
ST_KSM = 16
ST_ANON = 32
ST_SHMEM = 64  # swap-backed but not anonymous: shmem, memfd, SysV, tmpfs
_EXCLUDED = ST_ZERO | ST_NOPAGE


@dataclass(frozen=True, slots=True)
class ExactCounts:
    """One process's exact numbers, in bytes (see the module docstring)."""

    resident_bytes: int
    private_bytes: int
    shared_bytes: int
    pss_bytes: int
    pss_anon_bytes: int
    pss_file_bytes: int
    pss_shmem_bytes: int
    shared_unseen_bytes: int  # also mapped by unreadable processes or the kernel
    ksm_bytes: int
    zero_page_bytes: int  # virtual bytes mapped to the zero page (not resident)
    swap_bytes: int  # distinct swap slots in this process's page tables
    swap_private_bytes: int  # slots no other process refers to
    swap_pss_bytes: int

    @property
    def freed_on_exit_bytes(self) -> int:
        """What the process's exit would give back: its private pages and slots."""
        return self.private_bytes + self.swap_private_bytes


def _np():
    import numpy

    return numpy


class PageCensus:
    """Counts, for every physical page, how many distinct processes map it.

    Use: :meth:`add` once per process with the PFNs of its present pages
    (any order, repeats allowed) and its swap entries; then :meth:`apply_kpage`
    with ``kpagecount``/``kpageflags`` values for the PFNs of
    :meth:`seen_pfns`; then :meth:`results`, :meth:`overlap`.

    Memory: about 7 bytes per 4 KiB of RAM in dense per-PFN arrays (0.2%),
    plus 4 bytes per distinct page per process.  No per-page Python objects.
    """

    def __init__(self, max_pfn: int, max_processes: int = 65535) -> None:
        np = _np()
        self.max_pfn = int(max_pfn)
        # Distinct processes (plus surplus mappings, after apply_kpage).
        self._count_dtype = np.uint16 if max_processes < 65535 else np.uint32
        self.distinct = np.zeros(self.max_pfn, dtype=self._count_dtype)
        # Scratch for finding repeats within one process: mark[pfn] = position.
        self._mark: np.ndarray | None = np.empty(self.max_pfn, dtype=np.int32)
        self._positions = np.arange(0, dtype=np.int32)
        self._pfn_dtype = np.uint32 if self.max_pfn <= (1 << 32) else np.uint64
        self.status: np.ndarray | None = None
        self.pfns: dict[object, np.ndarray] = {}
        self.swap: dict[object, np.ndarray] = {}
        self.tags: dict[object, np.ndarray] = {}
        self.zero_pages: dict[object, int] = {}
        self.non_ram: dict[object, int] = {}
        self._extra: list[np.ndarray] = []
        self._extra_pfns = None
        self._extra_counts = None

    # -- pass 1 ---------------------------------------------------------

    def add(
        self,
        key: object,
        pfns: np.ndarray,
        swap: np.ndarray | None = None,
        tags: np.ndarray | None = None,
    ) -> None:
        """Record one process: ``pfns`` of its present pages, ``swap`` keys.

        ``swap`` holds the swap entries (pagemap bits 0–54: type and offset)
        of its swapped-out pages.  ``tags`` (optional, aligned with ``pfns``)
        labels each page, e.g. with the index of its mapping; it is kept for
        :meth:`overlap` (the first tag wins for a repeated PFN).
        """
        np = _np()
        pfns = np.asarray(pfns)
        if tags is not None:
            tags = np.asarray(tags)
        ram = pfns < self.max_pfn
        n_all = len(pfns)
        if n_all and not ram.all():
            self.non_ram[key] = int(n_all - np.count_nonzero(ram))
            pfns = pfns[ram]
            if tags is not None:
                tags = tags[ram]
        n = len(pfns)
        if n:
            if self._mark is None:
                raise RuntimeError("add() after apply_kpage()")
            if len(self._positions) < n:
                self._positions = np.arange(max(n, 2 * len(self._positions)), dtype=np.int32)
            pos = self._positions[:n]
            mark = self._mark
            # Fancy assignment with repeated indices stores one of the
            # positions for each PFN; exactly that position reads it back,
            # so the others are the repeats.  Linear time, no sort.
            mark[pfns] = pos
            first = mark[pfns] == pos
            if not first.all():
                repeats = ~first
                self._extra.append(pfns[repeats].astype(self._pfn_dtype))
                pfns = pfns[first]
                if tags is not None:
                    tags = tags[first]
            # With unique indices, += adds exactly one per PFN.
            self.distinct[pfns] += 1
        self.pfns[key] = pfns.astype(self._pfn_dtype, copy=False)
        if tags is not None:
            self.tags[key] = tags
        if swap is not None and len(swap):
            self.swap[key] = np.unique(np.asarray(swap, dtype=np.uint64))

    def seen_pfns(self) -> np.ndarray:
        """Sorted distinct PFNs mapped by any process added so far."""
        return _np().flatnonzero(self.distinct)

    # -- kpagecount / kpageflags ---------------------------------------

    def mappings_seen(self, pfns: np.ndarray) -> np.ndarray:
        """Mappings of each PFN found in the processes added (int64)."""
        np = _np()
        seen = self.distinct[pfns].astype(np.int64)
        if self._extra_pfns is None:
            if self._extra:
                allx = np.concatenate(self._extra)
                self._extra_pfns, self._extra_counts = np.unique(allx, return_counts=True)
            else:
                self._extra_pfns = np.zeros(0, dtype=self._pfn_dtype)
                self._extra_counts = np.zeros(0, dtype=np.int64)
        xp, xc = self._extra_pfns, self._extra_counts
        if len(xp):
            i = np.searchsorted(xp, pfns)
            i[i >= len(xp)] = 0
            hit = xp[i] == pfns
            seen[hit] += xc[i[hit]]
        return seen

    def apply_kpage(
        self,
        pfns: np.ndarray,
        kcount: np.ndarray | None,
        kflags: np.ndarray,
    ) -> None:
        """Take ``kpagecount`` and ``kpageflags`` values for ``pfns``.

        ``pfns`` must be distinct (e.g. :meth:`seen_pfns`).  ``kcount`` may be
        ``None`` when mapcounts are not to be trusted; then no page is
        marked shared with unreadable processes.  May be called in pieces.
        """
        np = _np()
        if self.status is None:
            self.status = np.zeros(self.max_pfn, dtype=np.uint8)
            self._mark = None  # pass 1 is over; give the scratch back
        pfns = np.asarray(pfns)
        flags = np.asarray(kflags, dtype=np.uint64)

        def bit(b: int):
            return ((flags >> np.uint64(b)) & np.uint64(1)).astype(bool)

        anon = bit(KPF_ANON)
        st = np.full(len(pfns), ST_SEEN, dtype=np.uint8)
        st[bit(KPF_ZERO_PAGE)] |= ST_ZERO
        st[bit(KPF_NOPAGE)] |= ST_NOPAGE
        st[bit(KPF_KSM)] |= ST_KSM
        st[anon] |= ST_ANON
        st[bit(KPF_SWAPBACKED) & ~anon] |= ST_SHMEM
        if kcount is not None:
            surplus = np.asarray(kcount, dtype=np.int64) - self.mappings_seen(pfns)
            unseen = (surplus > 0) & ((st & _EXCLUDED) == 0)
            if unseen.any():
                st[unseen] |= ST_UNSEEN
                idx = pfns[unseen]
                # Each mapping nobody here accounts for may be another
                # process: it joins the divisor (PSS errs low, never high).
                limit = np.iinfo(self._count_dtype).max
                total = self.distinct[idx].astype(np.int64) + surplus[unseen]
                self.distinct[idx] = np.minimum(total, limit).astype(self._count_dtype)
        self.status[pfns] = st

    # -- results --------------------------------------------------------

    def _swap_counts(self):
        np = _np()
        if not self.swap:
            return None, None
        allk = np.concatenate(list(self.swap.values()))
        return np.unique(allk, return_counts=True)

    def results(self) -> dict[object, ExactCounts]:
        """Exact counts for every process added."""
        np = _np()
        if self.status is None:
            self.status = np.zeros(self.max_pfn, dtype=np.uint8)
            self._mark = None
        status = self.status
        distinct = self.distinct
        skeys, scounts = self._swap_counts()
        out = {}
        for key, u in self.pfns.items():
            st = status[u]
            excluded = (st & _EXCLUDED) != 0
            zero = int(np.count_nonzero(st & ST_ZERO))
            if excluded.any():
                keep = ~excluded
                u = u[keep]
                st = st[keep]
            c = distinct[u]
            n = len(u)
            private = int(np.count_nonzero(c == 1))
            # 0 anon, 1 shmem, 2 file; one weighted bincount for all three.
            cls = np.where(st & ST_ANON, 0, np.where(st & ST_SHMEM, 1, 2))
            pss3 = np.bincount(cls, weights=PAGE_SIZE / np.maximum(c, 1), minlength=3)
            unseen = int(np.count_nonzero(st & ST_UNSEEN))
            ksm = int(np.count_nonzero(st & ST_KSM))
            swap_n = swap_priv = 0
            swap_pss = 0.0
            keys = self.swap.get(key)
            if keys is not None and skeys is not None:
                sc = scounts[np.searchsorted(skeys, keys)]
                swap_n = len(keys)
                swap_priv = int(np.count_nonzero(sc == 1))
                swap_pss = float(np.sum(PAGE_SIZE / sc))
            out[key] = ExactCounts(
                resident_bytes=n * PAGE_SIZE,
                private_bytes=private * PAGE_SIZE,
                shared_bytes=(n - private) * PAGE_SIZE,
                pss_bytes=int(round(float(pss3.sum()))),
                pss_anon_bytes=int(round(float(pss3[0]))),
                pss_file_bytes=int(round(float(pss3[2]))),
                pss_shmem_bytes=int(round(float(pss3[1]))),
                shared_unseen_bytes=unseen * PAGE_SIZE,
                ksm_bytes=ksm * PAGE_SIZE,
                zero_page_bytes=zero * PAGE_SIZE,
                swap_bytes=swap_n * PAGE_SIZE,
                swap_private_bytes=swap_priv * PAGE_SIZE,
                swap_pss_bytes=int(round(swap_pss)),
            )
        return out

    def overlap(self, key: object) -> dict[object, np.ndarray]:
        """Pages ``key`` shares with each other process, by ``key``'s tags.

        Returns ``{other: counts}`` where ``counts[t]`` is the number of
        ``key``'s distinct resident pages tagged ``t`` that ``other`` maps
        too (untagged processes: a one-element array).  Processes sharing
        nothing are left out.  Zero-page and non-RAM frames never count.
        """
        np = _np()
        u = self.pfns[key]
        tags = self.tags.get(key)
        if tags is None:
            tags = np.zeros(len(u), dtype=np.int64)
        tags = np.asarray(tags, dtype=np.int64)
        if self.status is not None:
            keep = (self.status[u] & _EXCLUDED) == 0
            u, tags = u[keep], tags[keep]
        ntags = int(tags.max()) + 1 if len(tags) else 1
        lookup = np.zeros(self.max_pfn, dtype=np.int32)
        lookup[u] = tags + 1
        out = {}
        for other, v in self.pfns.items():
            if other == key or not len(v):
                continue
            t = lookup[v]
            t = t[t > 0]
            if len(t):
                out[other] = np.bincount(t - 1, minlength=ntags)
        return out

    def shared_swap(self, key: object) -> dict[object, int]:
        """Swap slots ``key`` shares with each other process (counts)."""
        np = _np()
        mine = self.swap.get(key)
        if mine is None or not len(mine):
            return {}
        out = {}
        for other, keys in self.swap.items():
            if other == key:
                continue
            n = len(np.intersect1d(mine, keys, assume_unique=True))
            if n:
                out[other] = n
        return out


# -- applying the counts to a Snapshot -------------------------------------

EXACT_NOTE = (
    "exact (--exact): PSS, PRIVATE, SHARED, RSS, Pss_Anon/File/Shmem and anonymous "
    "SwapPss from page tables (pagemap, kpagecount, kpageflags): PRIVATE = pages no "
    "other process maps, PSS divided by processes, not mappings"
)
APPROX_NOTE = (
    "approximate with --exact: shmem swap (not in page tables; from smaps), hugetlb "
    "split (from smaps); pages also mapped by processes that could not be read count "
    "as shared and each such mapping as one more process"
)


def memory_with_exact(memory, exact: ExactCounts):
    """``memory`` (a :class:`zxmem.model.MemoryCounts`) with exact values.

    Swap: the exact anonymous swap PSS, plus the shmem part of the original
    (``swap_bytes − swap_pss_bytes``: smaps ``Swap − VmSwap``, which page
    tables cannot show) when the original knew it.
    """
    from dataclasses import replace

    from zxmem.model import MemoryCounts

    if memory is None:
        memory = MemoryCounts()
    swap = None
    if memory.swap_bytes is not None and memory.swap_pss_bytes is not None:
        swap = exact.swap_pss_bytes + max(0, memory.swap_bytes - memory.swap_pss_bytes)
    return replace(
        memory,
        pss_bytes=exact.pss_bytes,
        private_bytes=exact.private_bytes,
        shared_bytes=exact.shared_bytes,
        rss_bytes=exact.resident_bytes,
        swap_bytes=swap,
        swap_pss_bytes=exact.swap_pss_bytes,
        pss_anon_bytes=exact.pss_anon_bytes,
        pss_file_bytes=exact.pss_file_bytes,
        pss_shmem_bytes=exact.pss_shmem_bytes,
    )


def apply_exact(snapshot, results: dict, notes=()):
    """A copy of ``snapshot`` whose processes carry the exact ``results``
    (PID → :class:`ExactCounts`); processes without a result keep theirs.
    ``notes`` are added to the provenance."""
    from dataclasses import replace

    procs = tuple(
        replace(p, memory=memory_with_exact(p.memory, results[p.koid]))
        if p.koid in results and not p.kernel_thread
        else p
        for p in snapshot.processes
    )
    prov = replace(
        snapshot.provenance,
        notes=tuple(snapshot.provenance.notes) + tuple(n for n in notes if n),
    )
    return replace(snapshot, processes=procs, provenance=prov)
