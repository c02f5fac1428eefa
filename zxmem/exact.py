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
* kpageflags are read only where they matter: pages that are not anonymous
  (pagemap bit 61: shmem or file?), pages whose kpagecount is below the
  mappings seen (the zero page and device frames are not mapcounted), and
  every page when KSM has merged some (it can repeat a page in a process).
* THP and other large folios need no special case: pagemap reports the PFN
  of every 4 KiB subpage, and the census works per PFN (the exclusive bit 56
  of pagemap, wrong for PMD-mapped THP on 6.18, is never used).

For the object views (``memgraph -v``, ``treemap``, ``vmos`` with
``--exact``), :func:`exact_objects` puts every resident page in exactly one
object: an anonymous VMA's own pages in its object, every page several
processes map (or a shared object's page) in a group of the pages the same
processes map, so that committed bytes ÷ share count over a process's
objects is its PSS (Fuchsia's treemap sizes processes that way).

numpy is imported lazily, by the functions that use it.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from zxmem.model import PAGE_SIZE

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    from numpy import ndarray

# kpageflags bits (include/uapi/linux/kernel-page-flags.h).
KPF_ANON = 12
KPF_SWAPBACKED = 14
KPF_HUGE = 17
KPF_NOPAGE = 20
KPF_KSM = 21
KPF_THP = 22
KPF_ZERO_PAGE = 24

# Per-PFN status bits kept by the census.
ST_SEEN = 1  # kpagecount was read for this PFN
ST_ZERO = 2  # the zero page or the huge zero page: not counted as resident
ST_NOPAGE = 4  # no struct page behind the frame: not RAM, not counted
ST_UNSEEN = 8  # mapped more often than the processes read here map it
ST_KSM = 16
ST_NOT_ANON = 32  # pagemap bit 61 (file or shmem), or kpageflags without ANON
ST_SHMEM = 64  # swap-backed but not anonymous: shmem, memfd, SysV, tmpfs
ST_ODD = 128  # kpagecount below the mappings seen (zero page, no struct page)
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
    and its swap entries; then :meth:`apply_counts` with ``kpagecount`` for
    :meth:`seen_pfns`, and :meth:`apply_flags` with ``kpageflags`` for
    :meth:`flags_wanted` of them; then :meth:`results`, :meth:`overlap`.

    Memory: 3 bytes per 4 KiB of RAM in dense per-PFN arrays (0.07%), plus
    4 bytes per distinct page per process.  No per-page Python objects.
    """

    def __init__(self, max_pfn: int, max_processes: int = 65535) -> None:
        np = _np()
        self.max_pfn = int(max_pfn)
        # Distinct processes (plus surplus mappings, after apply_counts).
        self._count_dtype = np.uint16 if max_processes < 65535 else np.uint32
        self.distinct = np.zeros(self.max_pfn, dtype=self._count_dtype)
        self.status = np.zeros(self.max_pfn, dtype=np.uint8)
        self._pfn_dtype = np.uint32 if self.max_pfn <= (1 << 32) else np.uint64
        self.pfns: dict[object, ndarray] = {}
        self.swap: dict[object, ndarray] = {}
        self.tags: dict[object, ndarray] = {}
        self.non_ram: dict[object, int] = {}
        # Set when some anonymous pages could not be told apart (KSM):
        # then every page needs its kpageflags.
        self.all_flags = False
        self._extra: list[ndarray] = []
        self._extra_pfns: ndarray | None = None
        self._extra_counts: ndarray | None = None
        self._counted = False

    def _ram(self, key: object, pfns, tags):
        """Drop frames beyond RAM (device memory), counting them per key."""
        np = _np()
        if not len(pfns):
            return pfns, tags
        ram = pfns < self.max_pfn
        if ram.all():
            return pfns, tags
        self.non_ram[key] = self.non_ram.get(key, 0) + int(len(pfns) - np.count_nonzero(ram))
        return pfns[ram], (tags[ram] if tags is not None else None)

    def _dedup(self, pfns, tags):
        """Distinct PFNs (and the first tag of each); repeats are recorded."""
        np = _np()
        if len(pfns) < 2:
            return pfns, tags
        if tags is not None:
            u, first, counts = np.unique(pfns, return_index=True, return_counts=True)
            if len(u) < len(pfns):
                self._extra.append(np.repeat(u, counts - 1).astype(self._pfn_dtype))
            return u, tags[first]
        # Sorted, repeats sit side by side.  Mappings are mostly ascending
        # runs, which the merge sort takes in one pass.
        s = np.sort(pfns, kind="stable")
        rep = s[1:] == s[:-1]
        if rep.any():
            self._extra.append(s[1:][rep].astype(self._pfn_dtype))
            s = s[np.concatenate(([True], ~rep))]
        return s, None

    def add(
        self,
        key: object,
        anon,
        other=None,
        swap=None,
        anon_tags=None,
        other_tags=None,
        anon_may_repeat: bool = False,
    ) -> None:
        """Record one process's present pages and swap entries.

        ``anon``: PFNs of anonymous pages (pagemap bit 61 clear).  A process
        maps an anonymous page once, so they are taken as distinct unless
        ``anon_may_repeat`` (KSM can merge two pages of one process; the
        zero page repeats, but it is never counted).  ``other``: the rest
        (file, shmem), which may repeat (a file mapped twice).  ``swap``:
        swap entries (bits 0–54: type and offset).  ``*_tags`` (optional,
        aligned) label each page, e.g. with the index of its mapping, for
        :meth:`overlap`; a repeated PFN keeps the tag of its first mapping.
        """
        np = _np()
        if self._counted:
            raise RuntimeError("add() after apply_counts()")
        tagged = anon_tags is not None or other_tags is not None
        anon = np.asarray(anon if anon is not None else [], dtype=np.uint64)
        other = np.asarray(other if other is not None else [], dtype=np.uint64)
        if tagged:
            anon_tags = np.asarray(
                anon_tags if anon_tags is not None else np.zeros(len(anon)), dtype=np.int64
            )
            other_tags = np.asarray(
                other_tags if other_tags is not None else np.zeros(len(other)), dtype=np.int64
            )
        anon, anon_tags = self._ram(key, anon, anon_tags)
        other, other_tags = self._ram(key, other, other_tags)
        if anon_may_repeat:
            self.all_flags = True
            anon, anon_tags = self._dedup(anon, anon_tags)
        other, other_tags = self._dedup(other, other_tags)
        if len(other):
            # Not anonymous: its kpageflags tell shmem from file.
            self.status[other] |= ST_NOT_ANON
        pfns = np.concatenate((anon, other)) if len(other) else anon
        if len(pfns):
            # Distinct indices: += adds exactly one per PFN.
            self.distinct[pfns] += 1
        self.pfns[key] = pfns.astype(self._pfn_dtype, copy=False)
        if tagged:
            self.tags[key] = np.concatenate((anon_tags, other_tags)).astype(np.int32)
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
        assert xc is not None  # set with the PFNs
        if len(xp):
            i = np.searchsorted(xp, pfns)
            i[i >= len(xp)] = 0
            hit = xp[i] == pfns
            seen[hit] += xc[i[hit]]
        return seen

    def apply_counts(self, pfns: np.ndarray, kcount: np.ndarray) -> None:
        """Take ``kpagecount`` for the distinct ``pfns`` (may come in pieces).

        A page the kernel counts fewer than the mappings seen here (0 for
        the zero page and frames without a struct page, which are not
        mapcounted) is marked for its kpageflags; one counted more often is
        shared with mappers not read here.
        """
        np = _np()
        self._counted = True
        pfns = np.asarray(pfns)
        surplus = np.asarray(kcount, dtype=np.int64) - self.mappings_seen(pfns)
        st = self.status[pfns] | ST_SEEN
        st[surplus < 0] |= ST_ODD
        unseen = surplus > 0
        if unseen.any():
            st[unseen] |= ST_UNSEEN
            idx = pfns[unseen]
            # Each mapping nobody here accounts for may be another process:
            # it joins the divisor (PSS errs low, never high).
            limit = np.iinfo(self._count_dtype).max
            total = self.distinct[idx].astype(np.int64) + surplus[unseen]
            self.distinct[idx] = np.minimum(total, limit).astype(self._count_dtype)
        self.status[pfns] = st

    def flags_wanted(self, pfns: np.ndarray) -> np.ndarray:
        """The PFNs among ``pfns`` whose kpageflags matter: pages that are not
        anonymous (shmem or file?), pages counted less than seen (zero page,
        no struct page), and every page when KSM may have merged some."""
        np = _np()
        pfns = np.asarray(pfns)
        if self.all_flags:
            return pfns
        return pfns[(self.status[pfns] & (ST_NOT_ANON | ST_ODD)) != 0]

    def apply_flags(self, pfns: np.ndarray, kflags: np.ndarray) -> None:
        """Take ``kpageflags`` for ``pfns`` (may come in pieces)."""
        np = _np()
        pfns = np.asarray(pfns)
        flags = np.asarray(kflags, dtype=np.uint64)

        def bit(b: int):
            return ((flags >> np.uint64(b)) & np.uint64(1)).astype(bool)

        anon = bit(KPF_ANON)
        st = self.status[pfns]
        st[bit(KPF_ZERO_PAGE)] |= ST_ZERO
        st[bit(KPF_NOPAGE)] |= ST_NOPAGE
        st[bit(KPF_KSM)] |= ST_KSM
        st[anon] &= np.uint8(0xFF ^ ST_NOT_ANON)
        st[~anon] |= ST_NOT_ANON
        st[bit(KPF_SWAPBACKED) & ~anon] |= ST_SHMEM
        # Zero-page and device frames are never shared "with unreadable".
        st[(st & _EXCLUDED) != 0] &= np.uint8(0xFF ^ ST_UNSEEN)
        self.status[pfns] = st

    def apply_kpage(self, pfns, kcount, kflags) -> None:
        """:meth:`apply_counts` and :meth:`apply_flags` for the same PFNs."""
        self.apply_counts(pfns, kcount)
        self.apply_flags(pfns, kflags)

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
        status = self.status
        distinct = self.distinct
        skeys, scounts = self._swap_counts()
        # Which of the 256 status values have each property: one bincount
        # of a process's status bytes then answers every "how many" at once.
        values = np.arange(256)
        is_zero = (values & ST_ZERO) != 0
        is_excluded = (values & _EXCLUDED) != 0
        is_unseen = ((values & ST_UNSEEN) != 0) & ~is_excluded
        is_ksm = ((values & ST_KSM) != 0) & ~is_excluded
        out = {}
        for key, u in self.pfns.items():
            st = status[u]
            hist = np.bincount(st, minlength=256)
            if hist[is_excluded].any():
                keep = (st & _EXCLUDED) == 0
                u = u[keep]
                st = st[keep]
            c = distinct[u]
            n = len(u)
            private = int(np.count_nonzero(c == 1))
            w = PAGE_SIZE / np.maximum(c, 1)
            pss = float(w.sum())
            pss_file = pss_shmem = 0.0
            not_anon = (st & ST_NOT_ANON) != 0
            if not_anon.any():
                shmem = (st & ST_SHMEM) != 0
                pss_shmem = float(w[shmem].sum())
                pss_file = float(w[not_anon].sum()) - pss_shmem
            swap_n = swap_priv = 0
            swap_pss = 0.0
            keys = self.swap.get(key)
            if keys is not None and skeys is not None:
                sc = scounts[np.searchsorted(skeys, keys)]
                swap_n = len(keys)
                swap_priv = int(np.count_nonzero(sc == 1))
                swap_pss = float(np.sum(PAGE_SIZE / sc))
            pss_b = int(round(pss))
            file_b = int(round(pss_file))
            shmem_b = int(round(pss_shmem))
            out[key] = ExactCounts(
                resident_bytes=n * PAGE_SIZE,
                private_bytes=private * PAGE_SIZE,
                shared_bytes=(n - private) * PAGE_SIZE,
                pss_bytes=pss_b,
                pss_anon_bytes=pss_b - file_b - shmem_b,
                pss_file_bytes=file_b,
                pss_shmem_bytes=shmem_b,
                shared_unseen_bytes=int(hist[is_unseen].sum()) * PAGE_SIZE,
                ksm_bytes=int(hist[is_ksm].sum()) * PAGE_SIZE,
                zero_page_bytes=int(hist[is_zero].sum()) * PAGE_SIZE,
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

    def tag_stats(self, key: object, ntags: int):
        """Per tag of ``key``: (resident pages, private pages, PSS bytes).

        A page ``key`` maps in several mappings counts in the first one
        only, so the per-tag numbers add up to the process's.
        """
        np = _np()
        u, tags = self.pfns[key], np.asarray(self.tags[key], dtype=np.int64)
        keep = (self.status[u] & _EXCLUDED) == 0
        u, tags = u[keep], tags[keep]
        c = self.distinct[u]
        resident = np.bincount(tags, minlength=ntags)
        private = np.bincount(tags[c == 1], minlength=ntags)
        pss = np.bincount(tags, weights=PAGE_SIZE / np.maximum(c, 1), minlength=ntags)
        return resident, private, pss

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
        # smaps was not read: the anonymous swap is all that is known.
        memory = MemoryCounts(swap_bytes=0, swap_pss_bytes=0)
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


# -- exact objects: every resident page in exactly one object ---------------

# Fingerprints of sharer sets are checked after grouping; a collision (two
# sets with one fingerprint, odds 2**-64 a pair) is retried with new ones.
_FINGERPRINT_TRIES = 4


@dataclass(frozen=True, slots=True)
class SharedPages:
    """Resident pages that exactly the same processes map (one exact object).

    ``ref``: the object the pages belong to as seen by the lowest-PID
    tagged process that maps them (an anonymous VMA's object for pages
    still shared copy-on-write after ``fork``, the file's object for page
    cache).  ``members``: the processes read that map every one of the
    pages, and no other page of the group is missing from any of them.
    ``sharers``: the census's divisor for these pages, the members plus
    mappings by processes that could not be read (kpagecount surplus).
    ``cow``: anonymous pages of per-process objects (copy-on-write after
    ``fork``), as opposed to pages of an object shared by construction.
    """

    ref: int | None
    members: tuple
    sharers: int
    pages: int
    mappings: int
    cow: bool


@dataclass(frozen=True, slots=True)
class ExactObjects:
    """The partition :func:`exact_objects` finds; see its docstring."""

    own_pages: dict  # own object koid -> pages only its process maps
    shared: tuple  # SharedPages, in a deterministic order
    # process -> indices into ``shared`` it maps, by its first mapping (tag)
    # holding pages of each, then by index
    refs: dict
    first_tag: dict  # process -> {index into shared: first tag}
    own_parent: dict  # own object koid -> index of the cow group holding most of its pages
    mapped_pages: dict  # shared (not own) object koid -> its pages in groups


def exact_objects(
    census: PageCensus,
    tag_objects: dict,
    own: frozenset | set,
    file_of: dict,
) -> ExactObjects:
    """Split every resident page of the tagged processes into one object.

    ``tag_objects``: process -> the object koid (or None) of each of its
    tags (VMAs), for the processes added to ``census`` with tags.  ``own``:
    objects of one mapping in one process (an anonymous VMA, a private file
    mapping's copy-on-write pages).  ``file_of``: such a clone's file
    object, which holds the page-cache pages of the clone's VMA.

    A page (the zero page and frames without a struct page left out) is
    counted in exactly one place:

    * in its own object, when that object is ``own`` and no other process
      maps the page (the census's divisor is 1): the object's committed
      pages are its private ones;
    * else in the group of pages with the same owner object ``ref``, the
      same set of processes mapping them and the same divisor.  ``ref`` is
      the page's object in the lowest-numbered tagged process mapping it,
      so the copy-on-write pages a parent and its forked children still
      share form one group, whichever VMA object each of them sees them
      through; a file's page cache forms one group per set of mappers.

    Every member of a group maps all its pages, so a group of ``pages``
    pages and divisor ``n`` costs each member ``pages × PAGE_SIZE / n``,
    which is what those pages add to its exact PSS: summed over its own
    objects and its groups, a process's share is its PSS (each group
    rounds down by less than a byte).

    Groups are found by a 64-bit fingerprint of the set of processes
    mapping each page (a random number per process, XOR-ed over the set)
    and then checked: every member must map every page of its group.
    """
    np = _np()
    keys = sorted(census.pfns, key=_order_key)
    seen = census.seen_pfns()
    # PFN -> index into ``seen`` (4 bytes per page of RAM, for this call):
    # the per-page arrays below are as long as the pages mapped, not as RAM.
    compact = np.zeros(census.max_pfn, dtype=np.int32 if len(seen) < 1 << 31 else np.int64)
    compact[seen] = np.arange(len(seen))
    tagged = [k for k in keys if k in tag_objects and k in census.tags]
    ids = _ObjectIds()
    pages = _TaggedPages(np.zeros(len(seen), dtype=np.int64), np.zeros(len(seen), dtype=bool))
    for key in tagged:
        _add_tagged(pages, census, key, tag_objects[key], own, file_of, compact, ids)
    parts = [v[0] for v in pages.per_proc.values()]
    group_ci = np.unique(np.concatenate(parts)) if parts else np.zeros(0, dtype=np.int64)
    if not len(group_ci):
        return ExactObjects(pages.own_pages, (), {k: [] for k in tagged},
                            {k: {} for k in tagged}, {}, {})
    n_of = census.distinct[seen[group_ci]].astype(np.int64)
    groups = _sharer_groups(census, keys, compact, pages.ref, group_ci, n_of)
    is_own_obj = np.array([k is not None and k in own for k in ids.koids], dtype=bool)
    mappings, first_tag, own_votes = _group_tags(pages.per_proc, groups, is_own_obj, ids.koids)
    return _ordered(pages.own_pages, groups, mappings, first_tag, own_votes, is_own_obj,
                    ids.koids, tagged)


class _ObjectIds:
    """Objects as small integers: 0 is "no object known"."""

    def __init__(self) -> None:
        self.koids: list = [None]
        self._index: dict = {}

    def idx(self, k: object) -> int:
        i = self._index.get(k)
        if i is None:
            i = self._index[k] = len(self.koids)
            self.koids.append(k)
        return i


@dataclass(slots=True)
class _TaggedPages:
    """What :func:`exact_objects` gathers from the tagged processes' pages.

    ``ref``/``have_ref``: per page (index into the seen PFNs), the object
    id it has in the first tagged process (in key order) that maps it.
    ``own_pages``: own object koid -> pages only its process maps.
    ``per_proc``: process -> (page indices, tags, anonymous object ids,
    copy-on-write flags) of its pages that go into groups.
    """

    ref: ndarray
    have_ref: ndarray
    own_pages: dict = field(default_factory=dict)
    per_proc: dict = field(default_factory=dict)


def _add_tagged(pages: _TaggedPages, census: PageCensus, key: object, objs: list,
                own: frozenset | set, file_of: dict, compact: ndarray,
                ids: _ObjectIds) -> None:
    """Put one tagged process's pages in its own objects or among the grouped."""
    np = _np()
    u = census.pfns[key]
    t = np.asarray(census.tags[key], dtype=np.int64)
    st = census.status[u]
    keep = (st & _EXCLUDED) == 0
    u, t, st = u[keep], t[keep], st[keep]
    ntags = max(len(objs), int(t.max()) + 1 if len(t) else 0)
    anon_base = np.zeros(ntags, dtype=np.int64)
    file_base = np.zeros(ntags, dtype=np.int64)
    is_own = np.zeros(ntags, dtype=bool)
    for i, k in enumerate(objs):
        if k is None:
            continue
        anon_base[i] = ids.idx(k)
        file_base[i] = ids.idx(file_of.get(k, k))
        is_own[i] = k in own
    not_anon = (st & ST_NOT_ANON) != 0
    base = np.where(not_anon, file_base[t], anon_base[t])
    n = census.distinct[u]
    # A page only this process maps stays in its own object, unless it
    # is a clone's page cache (the file's).  In an anonymous VMA a page
    # kpageflags calls not anonymous can only be one freed or moved
    # since pagemap was read (kpagecount 0): it stays there too.
    stays = is_own[t] & (n == 1) & (~not_anon | (file_base == anon_base)[t])
    own_pages = pages.own_pages
    if stays.any():
        counts = np.bincount(anon_base[t][stays], minlength=len(ids.koids))
        for i in np.flatnonzero(counts).tolist():
            own_pages[ids.koids[i]] = own_pages.get(ids.koids[i], 0) + int(counts[i])
    for k in objs:
        if k in own and k not in own_pages:
            own_pages[k] = 0
    ci = compact[u]
    fresh = ~pages.have_ref[ci]
    pages.ref[ci[fresh]] = base[fresh]
    pages.have_ref[ci[fresh]] = True
    grouped = ~stays
    pages.per_proc[key] = (ci[grouped], t[grouped], anon_base[t][grouped],
                           is_own[t][grouped] & ~not_anon[grouped])


@dataclass(frozen=True, slots=True)
class _Groups:
    """Sets of grouped pages with one ref, one set of mappers and one divisor.

    ``gid_of``: page index -> group (-1: not grouped); ``sizes``, ``members``,
    ``ref`` (object id) and ``sharers`` (divisor): per group, in group order.
    """

    gid_of: ndarray
    count: int
    sizes: ndarray
    members: list
    ref: ndarray
    sharers: ndarray


def _sharer_groups(census: PageCensus, keys: list, compact: ndarray, ref: ndarray,
                   group_ci: ndarray, n_of: ndarray) -> _Groups:
    """Group the pages ``group_ci`` (divisors ``n_of``) by ref, fingerprint of
    their mappers and divisor.

    A fingerprint collision shows as a group some member does not map
    whole; the grouping is then tried again with new fingerprints.
    """
    np = _np()
    nseen = len(ref)
    rng = np.random.default_rng(0x7A786D656D)
    for _attempt in range(_FINGERPRINT_TRIES):
        prints = rng.integers(1, 1 << 63, size=len(keys), dtype=np.int64).astype(np.uint64)
        sig = np.zeros(nseen, dtype=np.uint64)
        for j, key in enumerate(keys):
            ci = compact[census.pfns[key]]
            sig[ci] ^= prints[j]
        r, s = ref[group_ci], sig[group_ci]
        order = np.lexsort((n_of, s, r))
        rs, ss, ns = r[order], s[order], n_of[order]
        start = np.ones(len(order), dtype=bool)
        start[1:] = (rs[1:] != rs[:-1]) | (ss[1:] != ss[:-1]) | (ns[1:] != ns[:-1])
        gid_sorted = np.cumsum(start) - 1
        gid_of = np.full(nseen, -1, dtype=np.int64)
        gid_of[group_ci[order]] = gid_sorted
        ngroups = int(gid_sorted[-1]) + 1
        sizes = np.bincount(gid_sorted, minlength=ngroups)
        members = _group_members(census, keys, compact, gid_of, sizes)
        if members is not None:
            first = np.flatnonzero(start)
            return _Groups(gid_of, ngroups, sizes, members, rs[first], ns[first])
    from zxmem.errors import ZxmemError

    raise ZxmemError("--exact: could not tell sets of processes apart (fingerprints "
                     "collided repeatedly)")


def _group_members(census: PageCensus, keys: list, compact: ndarray, gid_of: ndarray,
                   sizes: ndarray) -> list[list] | None:
    """Each group's processes, or None if one maps only part of a group."""
    np = _np()
    members: list[list] = [[] for _ in range(len(sizes))]
    for key in keys:
        g = gid_of[compact[census.pfns[key]]]
        g = g[g >= 0]
        if not len(g):
            continue
        ug, cnt = np.unique(g, return_counts=True)
        if (cnt != sizes[ug]).any():
            return None
        for gi in ug.tolist():
            members[gi].append(key)
    return members


def _group_tags(per_proc: dict, groups: _Groups, is_own_obj: ndarray,
                koids: list) -> tuple[ndarray, dict, dict]:
    """Per group its mappings; per process its first tag in each group it maps;
    per own object the cow group holding most of its shared pages (a vote:
    object -> (group, pages))."""
    np = _np()
    ngroups = groups.count
    mappings = np.zeros(ngroups, dtype=np.int64)
    first_tag: dict = {}
    own_votes: dict = {}
    for key, (ci, t, ab, cow_page) in per_proc.items():
        g = groups.gid_of[ci]
        if not len(g):
            first_tag[key] = {}
            continue
        width = int(t.max()) + 1
        pairs = np.unique(g * width + t)
        pg, pt = pairs // width, pairs % width
        mappings += np.bincount(pg, minlength=ngroups)
        # unique() sorts by group, then tag: the first row of a group is its first tag.
        lead = np.ones(len(pg), dtype=bool)
        lead[1:] = pg[1:] != pg[:-1]
        first_tag[key] = dict(zip(pg[lead].tolist(), pt[lead].tolist(), strict=True))
        if cow_page.any():
            _vote_own_parent(own_votes, g[cow_page], ab[cow_page], groups, is_own_obj, koids)
    return mappings, first_tag, own_votes


def _vote_own_parent(own_votes: dict, cg: ndarray, co: ndarray, groups: _Groups,
                     is_own_obj: ndarray, koids: list) -> None:
    """Count, for one process, which cow group holds most of each own object's pages."""
    np = _np()
    ngroups = groups.count
    cow_group = is_own_obj[groups.ref[cg]]
    cg, co = cg[cow_group], co[cow_group]
    if not len(cg):
        return
    codes, counts = np.unique(co * ngroups + cg, return_counts=True)
    for code, c in zip(codes.tolist(), counts.tolist(), strict=True):
        obj, grp = koids[code // ngroups], code % ngroups
        best = own_votes.get(obj)
        if best is None or c > best[1] or (c == best[1] and grp < best[0]):
            own_votes[obj] = (grp, c)


def _ordered(own_pages: dict, groups: _Groups, mappings: ndarray, first_tag: dict,
             own_votes: dict, is_own_obj: ndarray, koids: list,
             tagged: list) -> ExactObjects:
    """The groups in a deterministic order (ref koid, members, divisor), indexed."""
    g_ref, g_n, members = groups.ref, groups.sharers, groups.members

    def sort_key(gi: int) -> tuple:
        k = koids[int(g_ref[gi])]
        return (k is None, _order_key(k) if k is not None else 0,
                tuple(_order_key(m) for m in members[gi]), int(g_n[gi]))

    order_g = sorted(range(groups.count), key=sort_key)
    new_index = {old: new for new, old in enumerate(order_g)}
    shared = tuple(
        SharedPages(
            ref=koids[int(g_ref[gi])],
            members=tuple(members[gi]),
            sharers=int(g_n[gi]),
            pages=int(groups.sizes[gi]),
            mappings=int(mappings[gi]),
            cow=bool(is_own_obj[int(g_ref[gi])]),
        )
        for gi in order_g
    )
    refs: dict = {}
    tags_out: dict = {}
    for key in tagged:
        ft = {new_index[g]: tg for g, tg in first_tag.get(key, {}).items()}
        tags_out[key] = ft
        # Sorted at once: ``ft`` is this key's.
        refs[key] = sorted(ft, key=lambda gi: (ft[gi], gi))  # noqa: B023
    own_parent = {obj: new_index[g] for obj, (g, _c) in own_votes.items()}
    mapped: dict = {}
    for s in shared:
        if not s.cow and s.ref is not None:
            mapped[s.ref] = mapped.get(s.ref, 0) + s.pages
    return ExactObjects(own_pages, shared, refs, tags_out, own_parent, mapped)


def _order_key(k):
    return (0, k, "") if isinstance(k, int) else (1, 0, str(k))
