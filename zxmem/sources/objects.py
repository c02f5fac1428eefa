"""Memory objects (VMOs) on Linux: mappings, handles and system-wide counts.

:func:`add_objects` takes a Snapshot (processes already known) and adds, for
the processes asked for, their mappings (``/proc/PID/smaps`` or the cheaper
``/proc/PID/maps``), regions (:mod:`zxmem.regions`), handle references
(``/proc/PID/fd`` + ``fdinfo``) and the system-wide table of memory objects.

What an object is (DESIGN.md, "Zircon concepts, Linux meanings"):

===========  ================================================================
kind         identity and numbers
===========  ================================================================
``file``     a regular file, identity ``(st_dev, st_ino)`` from the maps line
             (``major:minor inode``); koid ``model.inode_koid(dev, ino)``,
             stable across snapshots.  size ``st_size``; alloc = its page
             cache, ``cachestat(2)`` ``nr_cache`` pages (Linux ≥ 6.5).
``memfd``    ``/memfd:NAME (deleted)`` on the internal shm mount (dev 00:01);
``sysv``     ``/SYSV<key> (deleted)`` (the inode column is the shmid);
``shmem``    other shm-mount objects (shared anonymous mappings, shown as
             ``/dev/zero (deleted)``) and files on tmpfs/ramfs mounts.
             All three: size ``st_size``, alloc ``st_blocks × 512`` (allocated
             pages, swapped ones included; spec linux-kernel B.8/B.10).
``dmabuf``   ``/dmabuf:NAME`` (or ``anon_inode:dmabuf``); size and alloc from
             fdinfo ``size:``.
``anon``     one anonymous VMA (heap, stack, ``mmap``); a sequence koid below
             2**32 in scan order (the detail processes first, then the
             others, each in snapshot order, VMAs in address order), so
             one process's koids are the same in ``vmaps`` and ``vmos``;
             meaningful only within the snapshot.  size = the
             VMA length, alloc = its ``Rss`` when none of its pages is
             shared, else its ``Pss`` (below).
             Exception: the special mappings the kernel gives every process
             from the same pages, ``[vdso]``, ``[vvar]``, ``[vvar_vclock]``
             and ``[vsyscall]``, are one object each for the whole snapshot
             (per name and length), as Fuchsia's ``vdso/full`` is one VMO:
             ``#shr`` = the processes mapping it, a sequence koid taken
             where it is first met, alloc = the largest ``Rss`` any process
             shows (what is resident of the object, as for a file).
``clone``    the copy-on-write pages of a private mapping of a file or shmem
             object (a library's ``.data``): named ``data:<basename>``, parent
             = the file's object (whose ``#chld`` counts it), size = the VMA
             length, alloc = the VMA's ``Anonymous`` bytes (the pages copied
             on write), or ``min(Anonymous, Pss)`` when some of its pages
             are shared.  A sequence koid.  In smaps processes a private
             mapping is a clone when ``Anonymous > 0``; in processes read
             only through ``maps`` (no page counts), when it is writable.
``phys``     a ``VM_IO``/``VM_PFNMAP`` mapping (VmFlags ``io``/``pf``):
             device memory, no RAM; alloc prints ``phys``.
===========  ================================================================

Shared anonymous pages (alloc of ``anon`` and ``clone``): after ``fork``
the pages written before it stay shared copy-on-write until either side
writes, and each process's ``Rss`` counts them in full, so a sum over
processes counts them once per process.  Without page-level data
(``--exact``) zxmem cannot tell which process "owns" such a page, so the
object's alloc is its proportional share: the VMA's ``Pss``, which divides
every page by the number of mappings of it (fs/proc/task_mmu.c,
``smaps_account``).  alloc is then what the object costs this process, and
the allocs of all processes add up to the physical pages (to a page per VMA:
smaps prints whole kB).  A clone's VMA also holds file pages (page cache,
often shared with many processes) in its ``Pss``; ``min(Anonymous, Pss)``
bounds its anonymous share from above, overcounting at most the file
pages' share.  A VMA without shared pages (``Shared_Clean + Shared_Dirty +
Shared_Hugetlb`` 0) has ``Pss == Rss``; ``Rss`` is used then.

``#map`` (``num_mappings``) counts the mappings of an object over all the
processes read, ``#shr`` (``share_count``) the distinct processes mapping
it, ``#chld`` (``num_children``) its clones.  Handles are descriptors that
refer to memfds, shmem/tmpfs files, dma-bufs, or regular files that some
process read also maps; their rights are ``READ``/``WRITE`` from the open
mode (fdinfo ``flags & O_ACCMODE``).

Fallbacks, each recorded in the snapshot's provenance:

* ``cachestat`` missing (Linux < 6.5: ENOSYS) or refused (EPERM: since 2025
  the caller must be able to write the file or own it): a file's alloc is
  ``None`` (unknown), never 0.
* ``/proc/PID/map_files`` needs ``CAP_SYS_ADMIN`` (or
  ``CAP_CHECKPOINT_RESTORE``) to follow: without it an object is stat'ed by
  its path when that path still names the same ``(dev, ino)``, else its size
  and alloc are ``None``.
* ``smaps`` denied: the process's mappings are ``None`` and
  ``("maps:PID", "EACCES")`` is recorded; a process that exits while it is
  being read is left out of the result.  ``smaps`` missing while the
  process's ``stat`` is there (recorded trees keep smaps only where they
  need it): the process is kept, mappings ``None``, ``("maps:PID",
  "ENOENT")`` recorded; its descriptors are still read.
* A recorded tree (``proc_root`` other than this machine's ``/proc``): no
  path is stat'ed and no descriptor link followed (they name files of the
  recording machine); a descriptor's identity comes from its fdinfo ``ino``
  with the device of a mapping of the same name, or the shm mount for a
  memfd; sizes of files are then unknown.  A dma-buf's device (its pseudo
  file system's) is not in fdinfo: that of a known dma-buf with the same
  inode, else 0 (as ``zxmem.sources.hidden`` names the buffers of
  ``bufinfo``); its size and alloc come from fdinfo ``size:``.

Reading cost: processes in ``detail_pids`` are read from ``smaps`` (page
counts, flags), others from ``maps`` (a quarter of the kernel's work).
Several processes are read on a few threads (the kernel's work of producing
``smaps`` runs with the GIL released, so reads overlap each other and the
parsing), handed back in scan order so koids do not depend on timing;
per-VMA objects and records are built column-wise.  Stat and cachestat run
once per object, i.e. per ``(dev, ino)``.  ``regions=False`` skips regions
for callers that only count objects.  When
only ``Rss`` and ``Anonymous`` are asked for (``vmaps``), a detail process is
read from ``maps`` plus one ``PAGEMAP_SCAN`` ioctl (Linux ≥ 6.7), which
gives the same numbers for far less work; ``smaps`` is the fallback.
"""

from __future__ import annotations

import errno
import os
import re
import stat as stat_mod
from collections import Counter, deque
from collections.abc import Collection, Sequence
from dataclasses import dataclass, field, fields, replace
from functools import partial
from itertools import accumulate, compress, repeat
from operator import add, attrgetter, getitem, itemgetter, not_, sub, truth
from types import MappingProxyType
from typing import Any, NamedTuple

from zxmem.model import (
    INODE_KOID_BASE,
    Denied,
    Mapping,
    MemoryCounts,
    Process,
    Region,
    Snapshot,
    Vmo,
    VmoRef,
    inode_koid,
)
from zxmem.record import replace as replace_record
from zxmem.regions import find_regions, object_name, regions_of_columns, strip_deleted
from zxmem.runtime import pause_gc, resume_gc
from zxmem.sources import procfs, smaps
from zxmem.sources.objects_parse import (
    _phys,
    handle_kind,
    parse_fdinfo,
    parse_mountinfo_devs,
    rights_from_flags,
)
from zxmem.sources.objects_read import (
    _DEFER_MAX,
    ForkedReaders,
    ProcessError,
    _CacheStat,
    _Gone,
    _read,
    _read_all,
    _read_forked,
    _read_parse_smaps,
    attribute_runs,
    light_snapshot,
    read_maps_resident,
    read_process,
    read_smaps,
)
from zxmem.sources.readfile import errname as _errname
from zxmem.sources.readfile import vanished as _gone
from zxmem.textsafe import decode_name

# Public names of the memory-object source, wherever they are defined.
__all__ = ["MEMORY_NOTE", "SHM_DEV", "SYSTEM_SPECIAL", "VMAPS_KEYS", "ForkedReaders",
           "ProcessError", "add_objects", "attribute_runs", "build_mappings", "handle_kind",
           "light_snapshot", "mapping_refs", "parse_fdinfo", "parse_mountinfo_devs",
           "read_maps_resident", "read_process", "read_smaps", "rights_from_flags",
           "start_readers"]

_FORK_MIN = 64  # processes below which a reader process is not worth its start

SHM_DEV = procfs.SHM_DEV
_READ_SIZE = 1 << 18

# Filesystems whose files are memory: their files are objects.
_MEMORY_FS = procfs.MEMORY_FS_TYPES

# ---------------------------------------------------------------------------
# The collector

# Mappings the kernel installs in every process from the same kernel pages
# (_install_special_mapping in mm/mmap.c; arch/x86/entry/vdso/vma.c for the
# vDSO and its data pages, arch/x86/entry/vsyscall for the fixed page): one
# object for the whole snapshot, as Fuchsia's vdso/full is one VMO that every
# process maps.  Keyed by name and length, because a 32-bit process maps a
# different (differently sized) vDSO image.
SYSTEM_SPECIAL = frozenset(("[vdso]", "[vvar]", "[vvar_vclock]", "[vsyscall]"))

_VMO_KIND_ANON = "anon"


@dataclass
class _Obj:
    """Accumulates one inode-backed or system-wide object while processes are read."""

    koid: int
    kind: str
    name: str
    size_bytes: int | None = None
    committed_bytes: int | None = None
    parent_koid: int = 0
    num_children: int = 0
    num_mappings: int = 0
    sharers: set | None = None
    dev: int | None = None
    inode: int | None = None
    path: str | None = None
    swap_bytes: int | None = None
    # where to stat it: (pid, start, end) of a mapping, or a path
    locator: tuple[int, int, int] | None = None
    fd_path: str | None = None
    phys: bool = False


class _Read:
    """What a reader thread found for one process (see :func:`_read_all`)."""

    __slots__ = ("table", "why", "gone", "fds", "fd_why", "memory", "raw", "status")

    def __init__(self) -> None:
        self.table: smaps.VmaTable | None = None
        self.why: str | None = None  # why the table is None
        self.gone = False
        self.fds: list | None = None  # raw descriptor facts, resolved later
        self.fd_why: str | None = None
        self.memory: MemoryCounts | None = None  # with add_objects(memory=True)
        self.raw: bytes | None = None  # the unparsed smaps/maps (see _read_all)
        self.status: bytes | None = None  # /proc/PID/status, for memory


class _Names(dict):
    def __missing__(self, path: str) -> str:
        value = self[path] = object_name(path)
        return value


class _PhysFlags(dict):
    def __missing__(self, flags: str | None) -> bool:
        value = self[flags] = _phys(flags)
        return value


class _CloneNames(dict):
    def __missing__(self, path: str) -> str:
        # mapping_name's clone form, by path alone: data:<basename>
        if path.startswith("["):
            value = self[path] = path
        else:
            value = self[path] = "data:" + os.path.basename(strip_deleted(path))
        return value


# The smaps keys a process's MemoryCounts needs.  Swap and SwapPss (Linux
# 4.3) leave swap unknown when missing; the *_Hugetlb ones (4.4) count 0.
_MEMORY_KEYS = frozenset(("Rss", "Pss", "Shared_Clean", "Shared_Dirty", "Private_Clean",
                          "Private_Dirty"))
_VM_SWAP = re.compile(rb"^VmSwap:\s*(\d+ kB)", re.M)
_ZERO_MEMORY = MemoryCounts(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)
MEMORY_NOTE = (
    "process memory summed from per-mapping smaps (smaps_rollup not read): "
    "PSS a few kB low per process (each mapping's Pss is rounded down to kB before the "
    "sum; see Documentation/filesystems/proc.rst), Pss_Anon/File/Shmem unknown"
)

_ANON_NAMES = _Names()
_CLONE_NAMES = _CloneNames()
_PHYS = _PhysFlags()
_IS_SPECIAL = SYSTEM_SPECIAL.__contains__


def _anon_alloc(rss: Sequence[int], pss: Sequence[int | None],
                shared: Sequence[int]) -> list[int | None]:
    """alloc of anonymous VMAs: ``Rss``, or ``Pss`` when some pages are shared.

    After ``fork`` the pages written before it stay shared copy-on-write
    between parent and child until one of them writes; ``Rss`` would count
    them in full in each.  ``Pss`` divides each page by its map count
    (``smaps_pte_entry`` → ``smaps_account`` in fs/proc/task_mmu.c), so the
    allocs of every process sum to the physical pages.  Without shared pages
    ``Pss`` equals ``Rss``; ``Rss`` is kept then (exact, no rounding).
    """
    return [r if not s or p is None else p for r, p, s in zip(rss, pss, shared, strict=True)]


def _clone_alloc(anon: int | None, pss: int | None, shared: int | None) -> int | None:
    """alloc of a copy-on-write clone: its ``Anonymous`` bytes, or at most its
    ``Pss`` when some of its pages are shared (see the module docstring)."""
    if anon is None or not shared or pss is None:
        return anon
    return min(anon, pss)


class _SharedRefs(dict):
    """koid → ``VmoRef(koid, ("MAPPING",))``, made on first use."""

    def __missing__(self, koid: int) -> VmoRef:
        value = self[koid] = VmoRef(koid, _VIA_MAPPING)
        return value


def _clone_allocs(anon: Sequence[int | None], pss: Sequence[int | None],
                  shared: Sequence[int | None]) -> list[int | None]:
    """``list(map(_clone_alloc, anon, pss, shared))``, in C when every count
    is known: ``Anonymous``, or the smaller of it and ``Pss`` where some
    pages are shared."""
    if None in anon or None in pss or None in shared:
        return list(map(_clone_alloc, anon, pss, shared))
    a: Sequence[Any] = anon  # no None in them now
    p: Sequence[Any] = pss
    return list(map(getitem, zip(a, map(min, a, p), strict=True), map(truth, shared)))


_CLONE_KIND = {False: "clone", True: "phys"}


class _FileKoids(dict):
    """(dev, inode) → :func:`inode_koid`, computed once per pair."""

    def __missing__(self, key: tuple[int, int]) -> int:
        value = self[key] = inode_koid(*key)
        return value


class _Rows(NamedTuple):
    """What :meth:`_Collector._koid_rows` finds of one process's VMAs."""

    koids: list[int]
    sequence: list[bool]  # rows with a sequence koid (anonymous, clones)
    files: list[int]  # rows mapping an inode
    clones: list[int]  # private file rows that are copy-on-write clones
    specials: set[int]  # rows of a system-wide special mapping ([vdso]...)


def _byte_columns(t: smaps.VmaTable, detail: bool) -> tuple[list, ...]:
    """A table's Mapping columns from ``rss_bytes`` to ``vm_flags`` (None
    where unknown): private and shared are the sums of their smaps lines."""
    f = t.fields
    none = list(repeat(None, len(t)))

    def col(key: str) -> list:
        return f.get(key) or none

    if detail and "Private_Clean" in f:
        # Kernels before 4.4 print no *_Hugetlb lines: none there.
        zeros = list(repeat(0, len(t)))
        private = _add(col("Private_Clean"), col("Private_Dirty"),
                       f.get("Private_Hugetlb") or zeros)
        shared = _add(col("Shared_Clean"), col("Shared_Dirty"),
                      f.get("Shared_Hugetlb") or zeros)
    else:
        private = shared = none
    flags = t.vm_flags if detail and t.vm_flags is not None else none
    return (col("Rss"), col("Pss"), private, shared, col("Private_Dirty"),
            col("Anonymous"), col("Swap"), col("SwapPss"), flags)


class _Collector:
    def __init__(self, proc_root: str, next_koid: int) -> None:
        self.proc = proc_root.rstrip("/") or "/"
        self.live = os.path.realpath(self.proc) == "/proc"
        self.scan = True  # try maps + PAGEMAP_SCAN before smaps
        self.next_koid = next_koid
        self.objs: dict[int, _Obj] = {}
        self.special: dict[tuple[str, int], int] = {}  # (name, length) → koid
        self.denied: list[Denied] = []
        self.notes: set[str] = set()
        self.mount_devs: dict[str, dict[int, str]] = {}
        # Anonymous and clone objects, one per VMA: parallel columns in Vmo
        # field order (koid, name, kind, size, alloc, parent, swap), turned
        # into Vmo records in bulk at the end.
        self.seq: tuple[list, ...] = ([], [], [], [], [], [], [])
        self.seq_vmos: list[Vmo] = []  # the records of the first ones built so far
        self.memory = False  # also sum each smaps into the process's MemoryCounts
        self.file_koids = _FileKoids()
        # References through a mapping to an object several mappings can
        # share, one each (see :meth:`refs_by_mapping`).
        self.refs = _SharedRefs()

    # -- reading (reader threads) -----------------------------------------

    def read_one(
        self, pid: int, detail: bool, keys: tuple[str, ...], handles: bool, threaded: bool,
        defer: bool = False,
    ) -> _Read:
        """Everything read from ``/proc/PID`` for one process; no shared state
        is changed except ``scan`` and ``notes`` (safe under the GIL).

        ``defer``: a small smaps or maps is returned unparsed (``raw``) and
        :meth:`finish_one` parses it (see :func:`_read_all` for why)."""
        r = _Read()
        try:
            if defer and not self._scans(detail, keys):
                r.raw, r.table, r.why = self.fetch(pid, detail, keys)
            else:
                r.table, r.why = self.table(pid, detail, keys, threaded)
        except _Gone:
            r.gone = True
            return r
        if self.memory and detail:
            try:
                r.status = _read(f"{self.proc}/{pid}/status")
            except OSError:
                r.status = None
            if not defer:
                self.finish_one(pid, r, detail, keys)
        if handles and (r.table is not None or r.raw is not None or r.why == "ENOENT"):
            r.fds, r.fd_why = self.read_fds(pid, r.table)
        return r

    def finish_one(self, pid: int, r: _Read, detail: bool, keys: tuple[str, ...]) -> None:
        """Parse what :meth:`read_one` left unparsed; the process's memory."""
        if r.raw is not None:
            try:
                r.table = smaps.parse_smaps(r.raw, keys) if detail else smaps.parse_maps(r.raw)
            except smaps.SmapsError:
                r.table, r.why = None, "malformed"
            r.raw = None
        if self.memory and detail and not r.gone and r.memory is None:
            r.memory = self.process_memory(pid, r.table, r.why, r.status)
            r.status = None

    def _scans(self, detail: bool, keys: tuple[str, ...]) -> bool:
        return detail and self.scan and set(keys) <= {"Rss", "Anonymous"}

    def fetch(
        self, pid: int, detail: bool, keys: tuple[str, ...]
    ) -> tuple[bytes | None, smaps.VmaTable | None, str | None]:
        """``(raw, table, why)``: the text of a maps, or of a smaps up to
        :data:`_DEFER_MAX`, unparsed; a larger smaps parsed here piece by
        piece (so that what waits unparsed stays small); or None and why.
        Raises _Gone."""
        path = f"{self.proc}/{pid}/{'smaps' if detail else 'maps'}"
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
            try:
                chunks = []
                size = 0
                while chunk := os.read(fd, _READ_SIZE):
                    chunks.append(chunk)
                    size += len(chunk)
                    if detail and size > _DEFER_MAX:
                        break
                else:
                    return b"".join(chunks), None, None
                stream = smaps.SmapsStream(keys)
                for chunk in chunks:
                    stream.feed(chunk)
                while chunk := os.read(fd, _READ_SIZE):
                    stream.feed(chunk)
                return None, stream.finish(), None
            finally:
                os.close(fd)
        except OSError as exc:
            return None, None, self._why(pid, exc)
        except smaps.SmapsError:
            return None, None, "malformed"

    def _why(self, pid: int, exc: OSError) -> str:
        """Why a maps/smaps read failed; raises _Gone for a process that is gone."""
        if _gone(exc):
            if exc.errno == errno.ENOENT and os.path.exists(f"{self.proc}/{pid}/stat"):
                # The process is there but the file is not: a recorded
                # tree that did not keep it.  Mappings unknown, not none.
                return "ENOENT"
            raise _Gone from None
        return _errname(exc)

    def table(
        self, pid: int, detail: bool, keys: tuple[str, ...], threaded: bool = False
    ) -> tuple[smaps.VmaTable | None, str | None]:
        """The VMA table of ``pid``, or None and why; raises _Gone."""
        name = "smaps" if detail else "maps"
        path = f"{self.proc}/{pid}/{name}"
        if self._scans(detail, keys):
            try:
                return read_maps_resident(self.proc, pid), None
            except (OSError, smaps.SmapsError):
                # Before Linux 6.7, in a recorded tree, or denied: smaps says
                # which (and whether the process is gone).
                self.scan = False
                self.notes.add("no PAGEMAP_SCAN: resident bytes read from smaps")
        try:
            if not detail:
                return smaps.parse_maps(_read(path)), None
            if threaded:
                return read_smaps(path, keys), None
            return _read_parse_smaps(path, keys), None
        except OSError as exc:
            return None, self._why(pid, exc)
        except smaps.SmapsError:
            return None, "malformed"

    def process_memory(
        self, pid: int, table: smaps.VmaTable | None, why: str | None, status: bytes | None
    ) -> MemoryCounts | None:
        """The process's MemoryCounts from the smaps just read, without the
        second page-table walk that ``smaps_rollup`` would cost.

        Each count is the sum of the per-VMA fields, with the formulas of
        :func:`zxmem.sources.linux.memory_from_fields`; ``VmSwap`` for the
        shmem part of swap comes from ``status`` (cheap, no page tables).
        Summed per-VMA ``Pss`` is a few kB low per process against
        ``smaps_rollup``, which keeps the fractions across VMAs (spec
        linux-kernel B.1); ``Pss_Anon``/``Pss_File``/``Pss_Shmem`` exist only
        in the rollup and stay unknown (a VMA that is a copy-on-write clone
        holds anonymous and file pages, so they cannot be split per VMA).
        An empty smaps is a process without an address space (a zombie):
        zero, as ``smaps_rollup``'s ESRCH.  A recorded tree without smaps
        for the process: its ``smaps_rollup``, when it has one.
        """
        from zxmem.sources.linux import memory_from_fields

        base = f"{self.proc}/{pid}/"
        if table is None:
            if why != "ENOENT":
                return None
            try:
                fields = procfs.parse_smaps_rollup(_read(base + "smaps_rollup"))
            except (OSError, procfs.ParseError):
                return None
            if not fields:
                return _ZERO_MEMORY
        else:
            if not len(table):
                return _ZERO_MEMORY
            columns = table.fields
            if not _MEMORY_KEYS.issubset(columns):
                return None
            try:
                fields = {k.encode(): sum(v) for k, v in columns.items()}
            except TypeError:  # a VMA without the key (unknown): no total
                return None
        swap = None if status is None else _VM_SWAP.search(status)
        # memory_from_fields wants the parsed status; VmSwap is all it reads.
        return memory_from_fields(fields, None if swap is None else {b"VmSwap": swap[1]})

    def read_fds(self, pid: int, table: smaps.VmaTable | None = None,
                 ) -> tuple[list | None, str | None]:
        """Descriptors of ``pid`` that may name memory objects (fd order):
        ``(fd, link, kind, stat or None, fdinfo or None)``.  Identity and
        relevance are decided later, when every mapping is known.

        A file's fdinfo (its open flags) is read here when the file is
        likely a memory object: mapped by the process itself (``table``,
        its mappings), or on a memory file system.  The others' are read
        later if they turn out to be one, by the process that builds the
        records, after the reader processes have ended."""
        base = f"{self.proc}/{pid}/"
        try:
            names = os.listdir(base + "fd")
        except OSError as exc:
            if _gone(exc):
                return [], None
            return None, _errname(exc)
        out = []
        mapped: set[tuple[int, int]] | None = None
        for fd in sorted(int(n) for n in names if n.isdigit()):
            link_path = f"{base}fd/{fd}"
            try:
                # Bytes, decoded as every name is (a str readlink would hold
                # invalid UTF-8 as lone surrogates, unlike the maps path).
                link = decode_name(os.readlink(link_path.encode()))
            except OSError:
                continue
            kind = handle_kind(link)
            if kind is None:
                continue
            st: os.stat_result | None = None
            if self.live:
                # A recorded link names a file of the recording machine.
                try:
                    st = os.stat(link_path)
                except OSError:
                    st = None
            # fdinfo is needed for the identity when there is no stat, and
            # for dma-bufs' sizes and objects' rights.
            info = None
            if st is None or kind != "path":
                info = self._fdinfo(base, fd)
            else:
                if mapped is None:
                    mapped = set() if table is None else set(
                        zip(table.devs, table.inodes, strict=True))
                if self._memory_file(pid, st, mapped):
                    info = self._fdinfo(base, fd)
            out.append((fd, link, kind, st, info))
        return out, None

    def _memory_file(self, pid: int, st: os.stat_result, mapped: set[tuple[int, int]]) -> bool:
        """Whether an open file is likely a memory object (see :meth:`read_fds`)."""
        dev = st.st_dev
        if dev == SHM_DEV or (dev, st.st_ino) in mapped:
            return True
        return os.major(dev) == 0 and self._memory_devs(pid).get(dev) in _MEMORY_FS

    # -- mappings (the calling thread, in scan order) -----------------------

    def ingest(
        self, pid: int, t: smaps.VmaTable, detail: bool, account: bool
    ) -> tuple[Mapping, ...]:
        """Mapping records with koids; with ``account`` also count every
        mapping against its object.  One new sequence koid per anonymous VMA
        and per clone, one per system-wide special mapping the first time."""
        anon = t.fields.get("Anonymous") if detail else None
        rows = self._koid_rows(t, anon)
        values = _byte_columns(t, detail)
        maps = build_mappings(t.starts, t.ends, t.perms, t.offsets, t.devs, t.inodes, t.paths,
                              rows.koids, *values)
        if account:
            rss, pss, _private, shared, _dirty, _anon, swap, _swap_pss, flags = values
            self._account_anon(t.inodes, rows.specials, rows.koids, t.starts, t.ends, t.paths,
                               rss, pss, shared, swap, flags)
            if rows.clones:
                self._account_clones(pid, rows.clones, maps, rows.koids, values)
            for i in rows.specials:
                self._account_special(pid, maps[i])
            self._account_files(pid, rows, maps, flags)
        return maps

    def _koid_rows(self, t: smaps.VmaTable, anon: list[int] | None) -> _Rows:
        """Each VMA's koid, and which rows are files, clones and specials.

        Rows that get a sequence koid: anonymous ones, and private file
        mappings that are copy-on-write clones (with ``anon``: those with
        anonymous pages; without, the writable ones).  Computed with map()
        and accumulate() (C loops); only file rows are looked at one by one.
        """
        n = len(t)
        starts, ends, inodes, perms, paths = t.starts, t.ends, t.inodes, t.perms, t.paths
        sequence = list(map(not_, inodes))
        file_rows = list(compress(range(n), inodes))
        clone_rows = []
        for i in file_rows:
            p = perms[i]
            if p[3] == "p" and ((anon[i] or 0) > 0 if anon is not None else p[1] == "w"):
                sequence[i] = True
                clone_rows.append(i)
        special_rows = list(compress(range(n), map(_IS_SPECIAL, paths)))
        new_special = []
        for i in special_rows:
            key = (paths[i], ends[i] - starts[i])
            if key in self.special:
                sequence[i] = False
            elif inodes[i] == 0:
                new_special.append((i, key))
        koids = list(accumulate(sequence, initial=self.next_koid - 1))
        self.next_koid = koids[-1] + 1
        del koids[0]
        for i in file_rows:
            if not sequence[i]:
                koids[i] = inode_koid(t.devs[i], inodes[i])
        for i, key in new_special:
            self.special[key] = koids[i]
        specials = set()
        for i in special_rows:
            if inodes[i] == 0:
                koids[i] = self.special[(paths[i], ends[i] - starts[i])]
                specials.add(i)
        return _Rows(koids, sequence, file_rows, clone_rows, specials)

    def _account_files(self, pid: int, rows: _Rows, maps: tuple[Mapping, ...],
                       flags: list) -> None:
        """Count each mapping of a file (not a clone) against its object."""
        objs = self.objs
        for i in rows.files:
            if rows.sequence[i]:
                continue
            koid = rows.koids[i]
            obj = objs.get(koid)
            if obj is None:
                obj = objs[koid] = self._inode_obj(koid, pid, maps[i])
            obj.num_mappings += 1
            obj.sharers.add(pid)  # type: ignore[union-attr]
            if _PHYS[flags[i]]:
                obj.phys = True

    def _account_anon(self, inodes, specials, koids, starts, ends, paths,
                      rss, pss, shared, swap, flags) -> None:
        rows = list(compress(range(len(koids)), map(not_, inodes)))
        if specials:
            rows = [i for i in rows if i not in specials]
        if not rows:
            return
        pick = itemgetter(*rows) if len(rows) > 1 else (lambda c: (c[rows[0]],))
        s_koid, s_name, s_kind, s_size, s_alloc, s_parent, s_swap = self.seq
        s_koid += pick(koids)
        s_name += map(_ANON_NAMES.__getitem__, pick(paths))
        phys = list(map(_PHYS.__getitem__, pick(flags)))
        s_kind += ["phys" if x else _VMO_KIND_ANON for x in phys]
        s_size += map(sub, pick(ends), pick(starts))
        alloc = _anon_alloc(pick(rss), pick(pss), pick(shared))
        s_alloc += [None if x else a for a, x in zip(alloc, phys, strict=True)]
        s_parent += repeat(0, len(rows))
        s_swap += pick(swap)

    def _account_clones(self, pid: int, rows: list[int], maps: tuple[Mapping, ...],
                        koids: list, values: tuple[list, ...]) -> None:
        """One clone object per row; its parent (the file) counts it.  Every
        step a C-level ``map`` over the rows; only a parent seen for the
        first time is looked at by itself."""
        _rss, pss, _private, shared, _dirty, anon, swap, _swap_pss, flags = values
        objs = self.objs
        s_koid, s_name, s_kind, s_size, s_alloc, s_parent, s_swap = self.seq
        pick = itemgetter(*rows) if len(rows) > 1 else (lambda c: (c[rows[0]],))
        picked = pick(maps)
        parents = list(map(self.file_koids.__getitem__,
                           zip(map(_DEV, picked), map(_INODE, picked), strict=True)))
        for parent_koid, m in zip(parents, picked, strict=True):
            if parent_koid not in objs:
                objs[parent_koid] = self._inode_obj(parent_koid, pid, m)
        phys = list(map(_PHYS.__getitem__, pick(flags)))
        s_name += map(_CLONE_NAMES.__getitem__, map(_PATH, picked))
        s_kind += map(_CLONE_KIND.__getitem__, phys)
        s_size += map(sub, map(_END, picked), map(_START, picked))
        allocs = _clone_allocs(pick(anon), pick(pss), pick(shared))
        if True in phys:  # device memory commits no RAM: alloc unknown
            allocs = [None if x else a for a, x in zip(allocs, phys, strict=True)]
        s_alloc += allocs
        s_swap += pick(swap)
        for parent_koid, n in Counter(parents).items():
            objs[parent_koid].num_children += n
        s_koid += pick(koids)
        s_parent += parents

    def _account_special(self, pid: int, m: Mapping) -> None:
        obj = self.objs.get(m.vmo_koid)
        if obj is None:
            obj = self.objs[m.vmo_koid] = _Obj(
                m.vmo_koid, _VMO_KIND_ANON, m.path, m.size_bytes, sharers=set(),
            )
        obj.num_mappings += 1
        obj.sharers.add(pid)  # type: ignore[union-attr]
        if _PHYS[m.vm_flags]:
            obj.phys = True
        # The same kernel pages in every process: the object's alloc is what
        # is resident of it, the largest Rss any process shows.
        if m.rss_bytes is not None:
            obj.committed_bytes = max(obj.committed_bytes or 0, m.rss_bytes)
        if m.swap_bytes is not None:
            obj.swap_bytes = max(obj.swap_bytes or 0, m.swap_bytes)

    def _inode_obj(self, koid: int, pid: int, m: Mapping) -> _Obj:
        bare = strip_deleted(m.path)
        if m.dev == SHM_DEV:
            kind = "memfd" if bare.startswith("/memfd:") else (
                "sysv" if bare.startswith("/SYSV") else "shmem")
        elif bare.startswith("/dmabuf:"):
            kind = "dmabuf"
        elif os.major(m.dev) == 0 and self._memory_devs(pid).get(m.dev) in _MEMORY_FS:
            kind = "shmem"  # a file on tmpfs (/dev/shm, /run, a container's /tmp)
        else:
            kind = "file"
        return _Obj(
            koid, kind, object_name(m.path, m.dev, m.inode), sharers=set(),
            dev=m.dev, inode=m.inode, path=m.path, locator=(pid, m.start, m.end),
        )

    # -- handles -----------------------------------------------------------

    def _memory_devs(self, pid: int) -> dict[int, str]:
        base = f"{self.proc}/{pid}/"
        try:
            ns = os.readlink(base + "ns/mnt")
        except OSError:
            ns = f"pid:{pid}"
        devs = self.mount_devs.get(ns)
        if devs is None:
            try:
                devs = parse_mountinfo_devs(_read(base + "mountinfo"))
            except OSError:
                devs = {}
            self.mount_devs[ns] = devs
        return devs

    def handles(self, pid: int, raw: list, maps: tuple[Mapping, ...] = ()) -> list[VmoRef]:
        """Descriptors of ``pid`` (from :meth:`read_fds`) that refer to memory
        objects, fd order; called once every process's mappings are counted."""
        base = f"{self.proc}/{pid}/"
        refs: list[VmoRef] = []
        memory_devs: dict[int, str] | None = None
        for fd, link, kind, st, info in raw:
            if st is not None:
                dev, ino = st.st_dev, st.st_ino
            else:
                # Not followable (a recorded tree, or the file went away):
                # fdinfo's inode with the device of a mapping of the same
                # name, or of the shm mount for a memfd.
                if info is None:
                    info = self._fdinfo(base, fd)
                found = self._identity_from_fdinfo(info, kind, link, maps)
                if found is None:
                    continue
                dev, ino = found
            koid = inode_koid(dev, ino)
            obj = self.objs.get(koid)
            if obj is None:
                if kind == "path":
                    if dev != SHM_DEV:
                        if memory_devs is None:
                            memory_devs = self._memory_devs(pid)
                        if memory_devs.get(dev) not in _MEMORY_FS:
                            continue  # an ordinary file nobody maps
                    kind = "shmem"
                name = object_name(link, dev, ino)
                if kind == "dmabuf":
                    name = link[1:] if link.startswith("/") else "dmabuf"
                    if info and name == "dmabuf" and info.get(b"name"):
                        name = "dmabuf:" + decode_name(info[b"name"])
                obj = self.objs[koid] = _Obj(
                    koid, kind, name, sharers=set(), dev=dev, inode=ino, path=link,
                )
            if obj.fd_path is None and st is not None:
                obj.fd_path = f"{base}fd/{fd}"
                self._fill_from_stat(obj, st)
            if info is None:
                info = self._fdinfo(base, fd)
            rights: tuple[str, ...] = ()
            if b"flags" in info:
                try:
                    rights = rights_from_flags(int(info[b"flags"], 8))
                except ValueError:
                    rights = ()
            if obj.kind == "dmabuf" and b"size" in info:
                try:
                    obj.size_bytes = obj.committed_bytes = int(info[b"size"])
                except ValueError:
                    pass
            refs.append(VmoRef(koid, ("HANDLE",), rights, fd))
        return refs

    def _identity_from_fdinfo(
        self, info: dict[bytes, bytes], kind: str, link: str, maps: tuple[Mapping, ...]
    ) -> tuple[int, int] | None:
        try:
            ino = int(info[b"ino"])
        except (KeyError, ValueError):
            return None
        for m in maps:
            if m.inode == ino and m.path == link:
                return m.dev, ino
        if kind == "memfd":
            return SHM_DEV, ino
        if kind == "dmabuf":
            # dma-bufs live on their own pseudo file system, whose device
            # fdinfo does not print: that of a known dma-buf with this inode
            # (mapped or held elsewhere), else 0.
            for obj in self.objs.values():
                if obj.kind == "dmabuf" and obj.inode == ino and obj.dev is not None:
                    return obj.dev, ino
            return 0, ino
        return None

    def _fdinfo(self, base: str, fd: int) -> dict[bytes, bytes]:
        try:
            return parse_fdinfo(_read(f"{base}fdinfo/{fd}"))
        except (OSError, ValueError):
            return {}

    # -- sizes -------------------------------------------------------------

    def _fill_from_stat(self, obj: _Obj, st: os.stat_result) -> None:
        obj.size_bytes = st.st_size
        if obj.kind in ("memfd", "sysv", "shmem"):
            obj.committed_bytes = st.st_blocks * 512

    def sizes(self, cachestat: _CacheStat, only: set[int] | None,
              locked: frozenset[tuple[int, int]] | None = None) -> None:
        """Stat each inode object once (and cachestat the files, but those in
        ``locked``: :meth:`own_locks`, read now when None)."""
        if locked is None:
            locked = self.own_locks()
        for obj in self.objs.values():
            if only is not None and obj.koid not in only:
                continue
            if obj.kind in ("anon", "clone") or obj.dev is None:
                continue
            if obj.kind == "dmabuf" and obj.size_bytes is not None:
                continue
            path, st = self._stat(obj)
            if st is None:
                continue
            if obj.fd_path is None or obj.size_bytes is None:
                self._fill_from_stat(obj, st)
            if obj.kind == "file" and not obj.phys and stat_mod.S_ISREG(st.st_mode):
                if (st.st_dev, st.st_ino) in locked:
                    self.notes.add("files this process holds POSIX locks on (an SQLite "
                                   "store's -shm): page cache not measured")
                    continue
                obj.committed_bytes = self._cached(path, cachestat)

    def own_locks(self) -> frozenset[tuple[int, int]]:
        """Files this process holds POSIX (fcntl) locks on: never opened here.

        A POSIX lock belongs to the process, and closing *any* descriptor of
        the file drops it (fcntl(2), fs/locks.c ``locks_remove_posix``).
        Opening and closing an SQLite store's ``-shm`` (mapped, so listed in
        our own maps) for cachestat dropped the recorder's lock on it: the
        next reader took the file over, truncated it, and the recorder died
        of SIGBUS on its mapping.
        """
        if not self.live:
            return frozenset()
        try:
            data = _read(f"{self.proc}/locks")
        except OSError:
            return frozenset()
        return procfs.parse_posix_lock_inodes(data, os.getpid())

    def _stat(self, obj: _Obj) -> tuple[str | None, os.stat_result | None]:
        candidates = []
        if obj.fd_path:
            candidates.append(obj.fd_path)
        if obj.locator:
            pid, start, end = obj.locator
            candidates.append(f"{self.proc}/{pid}/map_files/{start:x}-{end:x}")
        if (
            self.live
            and obj.path
            and obj.path.startswith("/")
            and not obj.path.endswith(" (deleted)")
        ):
            # A path names a file on this machine only when reading its own
            # /proc; in a recorded tree it belongs to the recording machine.
            candidates.append(obj.path)
        for path in candidates:
            try:
                st = os.stat(path)
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.EACCES) and "/map_files/" in path:
                    self.notes.add(
                        "map_files not followable (needs CAP_SYS_ADMIN): objects stat'ed "
                        "by path; deleted ones have unknown size"
                    )
                continue
            # A path may name another file by now; the maps dev:inode decides.
            if path == obj.path and (st.st_ino != obj.inode or st.st_dev != obj.dev):
                continue
            return path, st
        return None, None

    def _cached(self, path: str | None, cachestat: _CacheStat) -> int | None:
        if path is None:
            return None
        try:
            fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK)
        except OSError:
            return None
        try:
            return cachestat.cached_bytes(fd)
        finally:
            os.close(fd)

    def refs_by_mapping(self, maps: tuple[Mapping, ...]) -> tuple[VmoRef, ...]:
        """``tuple(mapping_refs(maps))``, with one (immutable) record per
        inode-backed object, made once and kept: a shared library's file is
        mapped in nearly every process, several times.  The records of
        sequence koids (anonymous objects and clones, one mapping each) are
        made in bulk.  Fewer objects to make, and fewer pages for the
        memgraph writer's fork to copy."""
        koids = list(map(_KOID, maps))
        sequence = list(map(INODE_KOID_BASE.__gt__, koids))
        own = iter(mapping_refs_of(list(compress(koids, sequence))))
        shared = map(self.refs.__getitem__, compress(koids, map(not_, sequence)))
        # Row order: the next of one or the other, as ``sequence`` says.
        return tuple(map(next, map((shared, own).__getitem__, sequence)))

    def build_sequence_vmos(self) -> None:
        """Vmo records of the per-VMA objects counted since the last call,
        built in bulk (called after each process, while the reader processes
        still read, so that little is left for :meth:`vmos`)."""
        done = len(self.seq_vmos)
        n = len(self.seq[0]) - done
        if n <= 0:
            return
        s_koid, s_name, s_kind, s_size, s_alloc, s_parent, s_swap = (
            c[done:] for c in self.seq)
        self.seq_vmos += _build_records(
            Vmo, _VMO_SLOTS, s_koid, s_name, s_kind, s_size, s_alloc, s_parent,
            repeat(0, n), repeat(1, n), repeat(1, n), repeat(None, n), repeat(None, n),
            repeat(None, n), s_swap,
        )

    def vmos(self, out: dict[int, Vmo] | None = None) -> dict[int, Vmo]:
        """Every object as a Vmo: the per-VMA ones built in bulk, koid order
        (sequence koids first), then the inode-backed and system-wide ones;
        added to ``out`` when given (one table of 50,000 objects built, not
        two)."""
        self.build_sequence_vmos()
        if out is None:
            out = {}
        out.update(zip(self.seq[0], self.seq_vmos, strict=True))
        for koid, o in self.objs.items():
            kind = "phys" if o.phys else o.kind
            out[koid] = Vmo(
                koid=koid,
                name=o.name,
                kind=kind,
                size_bytes=o.size_bytes,
                committed_bytes=None if kind == "phys" else o.committed_bytes,
                parent_koid=o.parent_koid,
                num_children=o.num_children,
                num_mappings=o.num_mappings,
                share_count=len(o.sharers or ()),
                dev=o.dev,
                inode=o.inode,
                path=o.path,
                swap_bytes=o.swap_bytes,
            )
        return out


def _build_records(cls: type, slots: tuple, *columns) -> list:
    """Instances of the frozen slots dataclass ``cls`` from parallel columns
    in field order, each column stored through its slot descriptor by
    ``map`` in C (a frozen dataclass's ``__init__`` sets fields one by one
    in Python code through ``object.__setattr__``)."""
    columns = tuple(c if isinstance(c, list) else list(c) for c in columns)
    if len(columns) != len(slots):
        raise TypeError(f"{cls.__name__}: one column per field")
    n = len(columns[0])
    pause_gc()  # no cyclic garbage is made here; skip the collector's passes
    try:
        objs: list[Any] = list(map(object.__new__, repeat(cls, n)))
        for slot, column in zip(slots, columns, strict=True):
            if len(column) != n:
                raise ValueError(f"{cls.__name__}: columns of different lengths")
            deque(map(slot.__set__, objs, column), 0)
    finally:
        resume_gc()
    return objs


_MAPPING_SLOTS = tuple(getattr(Mapping, f.name) for f in fields(Mapping))
_VMO_SLOTS = tuple(getattr(Vmo, f.name) for f in fields(Vmo))
_REF_SLOTS = tuple(getattr(VmoRef, f.name) for f in fields(VmoRef))
_VIA_MAPPING = ("MAPPING",)


def build_mappings(*columns: list) -> tuple[Mapping, ...]:
    """Mapping records from parallel columns in field order.

    Equal to ``tuple(map(Mapping, *columns))``, about three times faster
    (see :func:`_build_records`).  With 30,000 mappings that is the
    difference between meeting the vmaps time budget or not.
    """
    if len(columns) != len(_MAPPING_SLOTS):
        raise TypeError("build_mappings: one column per Mapping field")
    return tuple(_build_records(Mapping, _MAPPING_SLOTS, *columns))


def mapping_refs(maps: tuple[Mapping, ...]) -> list[VmoRef]:
    """``VmoRef(koid, ("MAPPING",))`` for each mapping, built in bulk."""
    return mapping_refs_of(list(map(_KOID, maps)))


def mapping_refs_of(koids: list[int]) -> list[VmoRef]:
    """``VmoRef(koid, ("MAPPING",))`` for each of ``koids``, built in bulk."""
    n = len(koids)
    return _build_records(
        VmoRef, _REF_SLOTS, koids, repeat(_VIA_MAPPING, n), repeat((), n), repeat(None, n),
    )


_KOID = attrgetter("vmo_koid")
_DEV = attrgetter("dev")
_INODE = attrgetter("inode")
_PATH = attrgetter("path")
_START = attrgetter("start")
_END = attrgetter("end")


def _add(*columns: list) -> list:
    """Element-wise sum of columns; None where any part is None."""
    try:
        total = columns[0]
        for column in columns[1:]:
            total = list(map(add, total, column))
        return list(total)
    except TypeError:
        pass
    out = []
    for values in zip(*columns, strict=True):
        out.append(None if None in values else sum(values))
    return out


# smaps keys needed when only mappings are wanted (vmaps without extras):
# Rss for :res, Anonymous to tell copy-on-write clones.
VMAPS_KEYS = smaps.VMAPS_KEYS


def add_objects(
    snapshot: Snapshot,
    proc_root: str = "/proc",
    pids: Collection[int] | None = None,
    detail_pids: Collection[int] | None = None,
    *,
    vmos: bool = True,
    keys: tuple[str, ...] = smaps.SMAPS_FIELDS,
    regions: bool = True,
    workers: int = 0,
    memory: bool = False,
    reader_process: bool = False,
    readers: ForkedReaders | None = None,
) -> Snapshot:
    """A new Snapshot whose processes have mappings, regions, refs and objects.

    ``pids``: the processes to read (None: all in the snapshot); ``#map``/
    ``#shr``/``#chld`` are counted over them.  ``detail_pids`` (None: all):
    the processes whose ``smaps`` is read (page counts per mapping), others
    from ``maps`` only (``rss_bytes`` None).  Sizes and alloc of inode
    objects (stat, cachestat) are read for the objects the detail processes
    reach; the others keep ``None``.  Processes that exit while being read
    are left out; one whose ``maps``/``smaps`` cannot be read (denied, or
    missing from a recorded tree) is kept with ``mappings`` None and the
    reason in ``provenance.denied``; handles are read for every process.

    ``vmos=False`` reads mappings and regions only (what ``vmaps`` prints):
    no descriptors, no stat/cachestat, ``snapshot.vmos`` unchanged and
    ``vmo_refs`` left as they were.  ``keys`` picks the smaps fields kept.
    ``regions=False`` leaves ``regions`` None (callers that only count
    objects).  ``workers``: reader threads (0 picks from the CPU count).

    ``memory=True`` also sets each detail process's ``memory`` from the
    smaps read here (:meth:`_Collector.process_memory`), for callers that
    collected without ``smaps_rollup``; one whose smaps cannot be read keeps
    its ``memory``, with ``("smaps:PID", why)`` in ``provenance.denied``.
    ``reader_process=True`` reads many processes in forked reader processes
    instead of reader threads (:func:`_read_forked`); only for callers with
    no other threads running, as ``fork`` copies only the calling thread.
    ``readers``: those :func:`start_readers` started earlier (same ``vmos``,
    ``keys``, ``memory``), used for what they read; the caller closes them.
    """
    detail = None if detail_pids is None else set(detail_pids)
    existing = [k for k in snapshot.vmos if k < INODE_KOID_BASE]
    collector = _Collector(proc_root, max(existing, default=0) + 1)
    collector.memory = memory and set(keys) >= _MEMORY_KEYS
    got = _gathered(collector, regions, vmos)
    items = _work_items(snapshot, None if pids is None else set(pids), detail, got)
    read_all: Any = _read_all
    if readers is not None and readers.fits(keys, vmos, collector.memory):
        read_all = partial(_read_forked, readers=readers)
    elif reader_process and len(items) >= _FORK_MIN and hasattr(os, "fork"):
        read_all = _read_forked
    pause_gc()  # many small acyclic objects: a collector pass would free nothing
    try:
        for pid, is_detail, r in read_all(collector, items, keys, vmos, workers):
            _take(collector, got, pid, is_detail, r, vmos)
        return _finished(snapshot, collector, got, detail, regions, vmos)
    finally:
        resume_gc()


def _finished(snapshot: Snapshot, collector: _Collector, got: _Gathered,
              detail: set[int] | None, regions: bool, vmos: bool) -> Snapshot:
    """``snapshot`` with what :func:`add_objects` read: descriptors,
    objects, mappings, regions and what could not be read."""
    refs: dict[int, list[VmoRef]] = {}
    if vmos:
        refs = _handle_refs(collector, got, detail)
    if got.counts:
        collector.notes.add(MEMORY_NOTE)
    processes = _with_objects(snapshot.processes, got, refs, regions, vmos)
    prov = snapshot.provenance
    prov = replace(
        prov,
        denied=prov.denied + tuple(collector.denied),
        notes=prov.notes + tuple(sorted(collector.notes - set(prov.notes))),
    )
    snapshot = replace(snapshot, processes=tuple(processes), provenance=prov)
    if vmos:
        table = collector.vmos(dict(snapshot.vmos))
        snapshot = replace(snapshot, vmos=MappingProxyType(table))
    return snapshot


def start_readers(proc_root: str = "/proc", *, vmos: bool = True,
                  keys: tuple[str, ...] = smaps.SMAPS_FIELDS,
                  memory: bool = False) -> ForkedReaders | None:
    """Reader processes that start reading every process's smaps (and
    descriptors with ``vmos``) now, before the caller has its snapshot: pass
    them to :func:`add_objects` (same ``vmos``, ``keys`` and ``memory``),
    then :meth:`ForkedReaders.close` them in every case.

    The caller then reads the processes' stat and status while the readers
    read smaps, instead of leaving a CPU idle.  None where forking is not
    worth it (fewer than ``_FORK_MIN`` processes), not possible, or the root
    cannot be listed.  As ``fork`` copies only the calling thread: only for
    callers with no other threads running."""
    if not hasattr(os, "fork"):
        return None
    proc = proc_root.rstrip("/") or "/"
    try:
        pids = sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    except OSError:
        return None
    if len(pids) < _FORK_MIN:
        return None
    collector = _Collector(proc_root, 1)
    collector.memory = memory and set(keys) >= _MEMORY_KEYS
    readers = ForkedReaders(collector, [(pid, True) for pid in pids], keys, vmos)
    return readers if readers.readers else None


@dataclass
class _Gathered:
    """What :func:`add_objects` has read, by PID: mappings (None: unreadable),
    raw descriptors, memory counts, and the processes that exited."""

    read: dict[int, tuple[Mapping, ...] | None] = field(default_factory=dict)
    raw_fds: dict[int, list[Any]] = field(default_factory=dict)
    counts: dict[int, MemoryCounts] = field(default_factory=dict)
    gone: set[int] = field(default_factory=set)
    # Found as each process is taken (the reader processes are still busy
    # then, and this one would otherwise wait for them): its regions, when
    # asked for, and its references through mappings.
    regions: bool = True
    found_regions: dict[int, tuple[Region, ...]] = field(default_factory=dict)
    mapping_refs: dict[int, tuple[VmoRef, ...]] = field(default_factory=dict)
    # For the objects' sizes, found by add_objects at its start, while the
    # reader processes read, not once they have ended (see _gathered).
    cachestat: _CacheStat | None = None
    locks: frozenset[tuple[int, int]] | None = None


def _gathered(collector: _Collector, regions: bool, vmos: bool) -> _Gathered:
    """An empty :class:`_Gathered`; with ``vmos``, what the objects' sizes
    need is set up now, while the reader processes read: cachestat (ctypes
    and platform imported, ~5 ms) and this process's POSIX locks (the first
    read of ``/proc/locks`` in a process sleeps 10-20 ms: it takes the
    kernel's file-lock semaphore for writing, which waits for an RCU grace
    period), instead of with the other CPU idle once they have ended."""
    if not vmos:
        return _Gathered(regions=regions)
    return _Gathered(regions=regions, cachestat=_CacheStat(), locks=collector.own_locks())


def _work_items(snapshot: Snapshot, want: set[int] | None, detail: set[int] | None,
                got: _Gathered) -> list[tuple[int, bool]]:
    """``(pid, detail)`` of every process to read, detail processes first:
    their anonymous koids are then 1, 2, ... in address order whatever else
    is read, so `vmaps PID` and `vmos PID` print the same koids for the same
    mappings.  Kernel threads are recorded as mapping nothing."""
    order = sorted(
        snapshot.processes, key=lambda p: 0 if detail is None or p.koid in detail else 1
    )
    items = []
    for p in order:
        if want is not None and p.koid not in want:
            continue
        if p.kernel_thread:
            got.read[p.koid] = ()
            continue
        items.append((p.koid, detail is None or p.koid in detail))
    return items


def _take(collector: _Collector, got: _Gathered, pid: int, is_detail: bool, r: _Read,
          vmos: bool) -> None:
    """One process's reading, into ``got`` (what failed into the collector)."""
    if r.gone:
        got.gone.add(pid)
        return
    if r.why is not None:
        collector.denied.append(Denied(f"maps:{pid}", r.why))
    if r.memory is not None:
        got.counts[pid] = r.memory
    elif collector.memory and is_detail:
        collector.denied.append(Denied(f"smaps:{pid}", r.why or "malformed"))
    if r.fd_why is not None:
        collector.denied.append(Denied(f"fd:{pid}", r.fd_why))
    if r.fds is not None:
        got.raw_fds[pid] = r.fds
    if r.table is None:
        got.read[pid] = None
        return
    t = r.table
    maps = got.read[pid] = collector.ingest(pid, t, is_detail, vmos)
    if got.regions:  # from the columns the records were built from: the same regions
        got.found_regions[pid] = regions_of_columns(t.starts, t.ends, t.perms, t.offsets,
                                                    t.devs, t.inodes, t.paths)
    if vmos:
        got.mapping_refs[pid] = collector.refs_by_mapping(maps)
        collector.build_sequence_vmos()


def _handle_refs(collector: _Collector, got: _Gathered,
                 detail: set[int] | None) -> dict[int, list[VmoRef]]:
    """Every process's descriptor references; then the sizes (stat,
    cachestat) of the objects the detail processes reach (all: ``detail``
    None) -- stat and cachestat of every file on the system is not needed
    to show one process."""
    refs = {pid: collector.handles(pid, raw, got.read.get(pid) or ())
            for pid, raw in got.raw_fds.items()}
    only: set[int] | None = None
    if detail is not None:
        only = set()
        for pid in detail:
            only.update(r.vmo_koid for r in refs.get(pid, ()))
            only.update(m.vmo_koid for m in got.read.get(pid) or ())
        only.update([collector.objs[k].parent_koid for k in list(only) if k in collector.objs])
    cachestat = got.cachestat or _CacheStat()
    collector.sizes(cachestat, only, got.locks)
    if cachestat.failure:
        collector.notes.add(cachestat.failure)
    return refs


def _with_objects(processes: tuple[Process, ...], got: _Gathered,
                  refs: dict[int, list[VmoRef]], regions: bool, vmos: bool) -> list[Process]:
    """``processes`` with what was read: memory, mappings, regions and
    references; those that exited meanwhile left out.  Each changed
    process is copied once, with all its changes."""
    out = []
    for p in processes:
        if p.koid in got.gone:
            continue
        changes: dict[str, Any] = {}
        if p.koid in got.counts:
            changes["memory"] = got.counts[p.koid]
        if p.koid in got.read:
            changes.update(_read_changes(p.koid, got, refs, regions, vmos))
        out.append(replace_record(p, **changes) if changes else p)
    return out


def _read_changes(pid: int, got: _Gathered, refs: dict[int, list[VmoRef]], regions: bool,
                  vmos: bool) -> dict[str, Any]:
    """The fields of process ``pid`` that :func:`add_objects` read."""
    maps = got.read[pid]
    if maps is None:
        changes: dict[str, Any] = {"mappings": None, "regions": None}
        if vmos:
            changes["vmo_refs"] = tuple(refs.get(pid, ())) or None
        return changes
    changes = {"mappings": maps}
    if regions:
        found = got.found_regions.get(pid)
        changes["regions"] = find_regions(maps) if found is None else found
    if vmos:
        by_map = got.mapping_refs.get(pid)
        if by_map is None:
            by_map = tuple(mapping_refs(maps))
        changes["vmo_refs"] = tuple(refs.get(pid, ())) + by_map
    return changes
