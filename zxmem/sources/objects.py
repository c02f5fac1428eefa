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
             VMA length, alloc = its ``Rss``.
``clone``    the copy-on-write pages of a private mapping of a file or shmem
             object (a library's ``.data``): named ``data:<basename>``, parent
             = the file's object (whose ``#chld`` counts it), size = the VMA
             length, alloc = the VMA's ``Anonymous`` bytes (the pages copied
             on write).  A sequence koid.  In smaps processes a private
             mapping is a clone when ``Anonymous > 0``; in processes read
             only through ``maps`` (no page counts), when it is writable.
``phys``     a ``VM_IO``/``VM_PFNMAP`` mapping (VmFlags ``io``/``pf``):
             device memory, no RAM; alloc prints ``phys``.
===========  ================================================================

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
  being read is left out of the result.
* A recorded tree (``proc_root`` other than this machine's ``/proc``): no
  path is stat'ed and no descriptor link followed (they name files of the
  recording machine); a descriptor's identity comes from its fdinfo ``ino``
  with the device of a mapping of the same name, or the shm mount for a
  memfd; sizes of files are then unknown.

Reading cost: processes in ``detail_pids`` are read from ``smaps`` (page
counts, flags), others from ``maps`` (a quarter of the kernel's work).  When
only ``Rss`` and ``Anonymous`` are asked for (``vmaps``), a detail process is
read from ``maps`` plus one ``PAGEMAP_SCAN`` ioctl (Linux ≥ 6.7), which
gives the same numbers for far less work; ``smaps`` is the fallback.
"""

from __future__ import annotations

import errno
import gc
import os
import queue
import stat as stat_mod
import sys
import threading
from bisect import bisect_right
from collections import deque
from collections.abc import Collection
from dataclasses import dataclass, fields, replace
from itertools import accumulate, repeat
from operator import add, not_
from types import MappingProxyType

from zxmem.model import (
    INODE_KOID_BASE,
    PAGE_SIZE,
    Job,
    Mapping,
    Process,
    Provenance,
    Snapshot,
    Vmo,
    VmoRef,
    inode_koid,
)
from zxmem.regions import find_regions, mapping_name, object_name, strip_deleted
from zxmem.sources import procfs, smaps

SHM_DEV = os.makedev(0, 1)
_READ_SIZE = 1 << 18

# Filesystems whose files are memory (tmpfs.rst): their files are objects.
_MEMORY_FS = frozenset(("tmpfs", "ramfs", "shmem", "hugetlbfs"))

# cachestat(2) is number 451 in the generic syscall table and on x86-64
# (arch/x86/entry/syscalls/syscall_64.tbl); other architectures are not tried.
_CACHESTAT_NR = 451


class ProcessError(Exception):
    """Why a single process cannot be shown (commands turn it into one line)."""

    def __init__(self, pid: int, reason: str) -> None:
        super().__init__(f"pid {pid}: {reason}")
        self.pid = pid
        self.reason = reason


# ---------------------------------------------------------------------------
# Reading


def _read(path: str) -> bytes:
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, _READ_SIZE)
            if not chunk:
                break
            chunks.append(chunk)
        return b"".join(chunks)
    finally:
        os.close(fd)


def read_smaps(path: str, keys: tuple[str, ...] = smaps.SMAPS_FIELDS) -> smaps.VmaTable:
    """Read and parse an smaps file, overlapping the two.

    Producing smaps is kernel work (page-table walks) done with the GIL
    released, so a reader thread fetches the next piece while this thread
    parses the last one; on a machine with two cores the parse costs little
    wall time beyond the read itself.  Raises ``OSError`` like ``open``.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    stream = smaps.SmapsStream(keys)
    pieces: queue.SimpleQueue = queue.SimpleQueue()

    def reader() -> None:
        try:
            while True:
                chunk = os.read(fd, _READ_SIZE)
                pieces.put(chunk)
                if not chunk:
                    return
        except OSError as exc:
            pieces.put(exc)

    first = os.read(fd, _READ_SIZE)  # errors of the first read surface here
    if not first:
        os.close(fd)
        return stream.finish()
    stream.feed(first)
    old_interval = sys.getswitchinterval()
    sys.setswitchinterval(0.0005)  # hand the GIL back to the reader promptly
    thread = threading.Thread(target=reader, daemon=True)
    thread.start()
    try:
        while True:
            chunk = pieces.get()
            if isinstance(chunk, OSError):
                raise chunk
            if not chunk:
                break
            stream.feed(chunk)
    finally:
        thread.join()
        os.close(fd)
        sys.setswitchinterval(old_interval)
    return stream.finish()


# PAGEMAP_SCAN (Linux ≥ 6.7, include/uapi/linux/fs.h): _IOWR('f', 16,
# struct pm_scan_arg), the argument being twelve u64s (96 bytes), the result
# an array of struct page_region {u64 start, end, categories}.
_PAGEMAP_SCAN = (3 << 30) | (96 << 16) | (ord("f") << 8) | 16
_PAGE_IS_FILE = 1 << 2
_PAGE_IS_PRESENT = 1 << 3
_PAGE_IS_PFNZERO = 1 << 5
_SCAN_VEC = 8192  # regions per ioctl call
_USER_END = 1 << 63  # the kernel half ([vsyscall]) is not scanned


def scan_resident(pagemap_fd: int, start: int, end: int) -> list[int]:
    """Resident runs of ``[start, end)``: a flat list ``start, end, cats, ...``.

    One ``PAGEMAP_SCAN`` ioctl on ``/proc/PID/pagemap`` returns up to
    ``_SCAN_VEC`` runs of present pages, each with its ``PAGE_IS_FILE`` and
    ``PAGE_IS_PFNZERO`` bits (Documentation/admin-guide/mm/pagemap.rst,
    "PAGEMAP_SCAN"); the walk resumes from ``walk_end`` until the range is
    done.  Raises ``OSError`` (ENOTTY/EINVAL before 6.7).
    """
    import array
    import fcntl

    vec = array.array("Q", bytes(24 * _SCAN_VEC))
    address = vec.buffer_info()[0]
    out: list[int] = []
    while start < end:
        arg = array.array("Q", [96, 0, start, end, 0, address, _SCAN_VEC, 0, 0,
                                _PAGE_IS_PRESENT, 0, _PAGE_IS_FILE | _PAGE_IS_PFNZERO])
        n = fcntl.ioctl(pagemap_fd, _PAGEMAP_SCAN, arg, True)
        out += vec[: 3 * n]
        walk_end = arg[4]
        if walk_end <= start:
            break
        start = walk_end
    return out


def attribute_runs(table: smaps.VmaTable, runs: list[int]) -> None:
    """Fill ``Rss`` and ``Anonymous`` of ``table`` from resident runs.

    smaps counts in ``Rss`` the pages mapped in the VMA's page tables except
    the shared zero page (``vm_normal_page`` gives NULL for it); ``Anonymous``
    the anonymous ones (``PAGE_IS_FILE`` clear).  A run may cover several
    VMAs (the kernel merges contiguous pages with equal categories).
    """
    starts, ends = table.starts, table.ends
    n = len(starts)
    rss = [0] * n
    anon = [0] * n
    for i in range(0, len(runs), 3):
        s, e, cats = runs[i], runs[i + 1], runs[i + 2]
        if cats & _PAGE_IS_PFNZERO:
            continue
        is_anon = not cats & _PAGE_IS_FILE
        k = bisect_right(ends, s)
        while k < n and starts[k] < e:
            got = min(e, ends[k]) - max(s, starts[k])
            rss[k] += got
            if is_anon:
                anon[k] += got
            k += 1
    table.fields = {"Rss": rss, "Anonymous": anon}


def read_maps_resident(proc: str, pid: int) -> smaps.VmaTable:
    """``maps`` plus resident bytes from ``PAGEMAP_SCAN``: vmaps's fast path.

    ``/proc/PID/maps`` costs the kernel about a quarter of ``smaps``, and one
    scan of the page tables gives what vmaps prints of smaps (``Rss``, and
    ``Anonymous`` to tell copy-on-write clones).  Not the same instant as the
    maps read: a VMA changed in between is counted as the scan saw it.  No
    ``VmFlags``.  Raises ``OSError`` when either file or the ioctl fails; the
    caller then reads ``smaps``.  hugetlb pages count here but not in smaps.
    """
    table = smaps.parse_maps(_read(f"{proc}/{pid}/maps"))
    user = [e for e in table.ends if e < _USER_END]
    runs: list[int] = []
    if user:
        fd = os.open(f"{proc}/{pid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        try:
            runs = scan_resident(fd, table.starts[0], max(user))
        finally:
            os.close(fd)
    attribute_runs(table, runs)
    return table


def _gone(exc: OSError) -> bool:
    return exc.errno in (errno.ENOENT, errno.ESRCH)


def _errname(exc: OSError) -> str:
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))


def read_process(proc_root: str, pid: int) -> Process:
    """A Process from ``/proc/PID/stat`` and ``cmdline`` only (cheap).

    Raises :class:`ProcessError` when there is no such process.
    """
    base = f"{proc_root.rstrip('/') or '/'}/{pid}/"
    try:
        st = procfs.parse_stat(_read(base + "stat"))
    except OSError as exc:
        if _gone(exc):
            raise ProcessError(pid, "no such process") from None
        raise ProcessError(pid, f"cannot read its stat ({_errname(exc)})") from None
    except procfs.ParseError as exc:
        raise ProcessError(pid, str(exc)) from None
    try:
        cmdline: tuple[str, ...] | None = procfs.parse_cmdline(_read(base + "cmdline"))
    except OSError:
        cmdline = None
    return Process(
        koid=pid,
        name=st.comm,
        job_koid=0,
        ppid=st.ppid,
        cmdline=cmdline,
        state=st.state,
        kernel_thread=st.kernel_thread,
        num_threads=st.num_threads,
    )


_LIGHT_ROOT_JOB = 1  # the single job of a light snapshot


def light_snapshot(proc_root: str = "/proc", pids: Collection[int] | None = None) -> Snapshot:
    """A Snapshot of processes read from ``stat`` only, under one root job.

    For commands that show memory objects and need no PSS or cgroups:
    ``vmaps`` and ``vmos`` start from it.  Kernel threads and processes that
    vanish are left out unless they were asked for by PID (then the caller
    sees ``kernel_thread``); an asked-for PID that does not exist raises
    :class:`ProcessError`.
    """
    proc = proc_root.rstrip("/") or "/"
    explicit = pids is not None
    if pids is None:
        pids = sorted(int(n) for n in os.listdir(proc) if n.isdigit())
    processes = []
    for pid in pids:
        try:
            p = read_process(proc, pid)
        except ProcessError:
            if explicit:
                raise
            continue
        if p.kernel_thread and not explicit:
            continue
        processes.append(replace(p, job_koid=_LIGHT_ROOT_JOB))
    return Snapshot(
        provenance=Provenance(source="linux"),
        jobs=(Job(_LIGHT_ROOT_JOB, "root", 0, path=""),),
        processes=tuple(processes),
    )


# ---------------------------------------------------------------------------
# Pure helpers


def parse_mountinfo_devs(data: bytes) -> dict[int, str]:
    """``st_dev`` → file system type, from ``/proc/PID/mountinfo``.

    Field 3 is ``major:minor`` (decimal), the type follows the ``-``
    separator (proc.rst §3.5).
    """
    out: dict[int, str] = {}
    for line in data.split(b"\n"):
        fields = line.split(b" ")
        if len(fields) < 8:
            continue
        try:
            major, _, minor = fields[2].partition(b":")
            sep = fields.index(b"-", 6)
            out[os.makedev(int(major), int(minor))] = fields[sep + 1].decode("ascii", "replace")
        except (ValueError, IndexError):
            continue
    return out


def parse_fdinfo(data: bytes) -> dict[bytes, bytes]:
    """``/proc/PID/fdinfo/N`` as ``{key: value}`` (``flags`` is octal text)."""
    out: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        if sep:
            out[key.strip()] = value.strip()
    return out


def rights_from_flags(flags: int) -> tuple[str, ...]:
    """Handle rights from the open mode: ``O_ACCMODE`` 0 read, 1 write, 2 both."""
    mode = flags & 3
    if mode == os.O_RDONLY:
        return ("READ",)
    if mode == os.O_WRONLY:
        return ("WRITE",)
    if mode == os.O_RDWR:
        return ("READ", "WRITE")
    return ()


def handle_kind(link: str) -> str | None:
    """What a ``/proc/PID/fd/N`` link names: a memory-object kind or None.

    ``"memfd"`` / ``"dmabuf"`` by the link text; ``"path"`` for a path that
    must be stat'ed (a tmpfs file or a mapped regular file); None for
    sockets, pipes, other anonymous inodes.
    """
    if link.startswith("/memfd:"):
        return "memfd"
    if link.startswith("/dmabuf:") or link == "anon_inode:dmabuf":
        return "dmabuf"
    if link.startswith("/"):
        return "path"
    return None


def _phys(flags: str | None) -> bool:
    if not flags:
        return False
    words = flags.split()
    return "io" in words or "pf" in words


# ---------------------------------------------------------------------------
# cachestat


class _CacheStat:
    """``cachestat(2)`` through ctypes; ``None`` results when unavailable."""

    def __init__(self) -> None:
        self.fn = None
        self.failure: str | None = None
        import platform

        if platform.machine() not in ("x86_64", "aarch64", "arm64", "riscv64"):
            self.failure = "cachestat: not tried on this architecture"
            return
        try:
            import ctypes

            libc = ctypes.CDLL(None, use_errno=True)
            self.ctypes = ctypes
            self.fn = libc.syscall
            self.fn.restype = ctypes.c_long
            self.range = (ctypes.c_uint64 * 2)(0, 0)  # off, len (0 = to EOF)
            self.result = (ctypes.c_uint64 * 5)()
        except (OSError, AttributeError):
            self.failure = "cachestat: no libc syscall()"

    def cached_bytes(self, fd: int) -> int | None:
        if self.fn is None:
            return None
        ct = self.ctypes
        rc = self.fn(
            ct.c_long(_CACHESTAT_NR), ct.c_uint(fd), ct.byref(self.range),
            ct.byref(self.result), ct.c_uint(0),
        )
        if rc != 0:
            err = ct.get_errno()
            if err == errno.ENOSYS:
                self.fn = None
                self.failure = "no cachestat (Linux < 6.5): page cache of files unknown"
            elif err in (errno.EPERM, errno.EACCES):
                self.failure = "cachestat refused (EPERM): page cache of some files unknown"
            return None
        return int(self.result[0]) * PAGE_SIZE


# ---------------------------------------------------------------------------
# The collector


@dataclass
class _Obj:
    """Accumulates one object while processes are read."""

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


class _Collector:
    def __init__(self, proc_root: str, next_koid: int) -> None:
        self.proc = proc_root.rstrip("/") or "/"
        self.live = os.path.realpath(self.proc) == "/proc"
        self.scan = True  # try maps + PAGEMAP_SCAN before smaps
        self.next_koid = next_koid
        self.objs: dict[int, _Obj] = {}
        self.denied: list[tuple[str, str]] = []
        self.notes: set[str] = set()
        self.mount_devs: dict[str, dict[int, str]] = {}

    # -- mappings ----------------------------------------------------------

    def table(self, pid: int, detail: bool, keys: tuple[str, ...]) -> smaps.VmaTable | None:
        """The VMA table of ``pid``; None when denied; raises _Gone."""
        name = "smaps" if detail else "maps"
        path = f"{self.proc}/{pid}/{name}"
        if detail and self.scan and set(keys) <= {"Rss", "Anonymous"}:
            try:
                return read_maps_resident(self.proc, pid)
            except (OSError, smaps.SmapsError):
                # Before Linux 6.7, in a recorded tree, or denied: smaps says
                # which (and whether the process is gone).
                self.scan = False
                self.notes.add("no PAGEMAP_SCAN: resident bytes read from smaps")
        try:
            if detail:
                return read_smaps(path, keys)
            return smaps.parse_maps(_read(path))
        except OSError as exc:
            if _gone(exc):
                raise _Gone from None
            self.denied.append((f"maps:{pid}", _errname(exc)))
            return None
        except smaps.SmapsError:
            self.denied.append((f"maps:{pid}", "malformed"))
            return None

    def mappings(self, pid: int, t: smaps.VmaTable, detail: bool) -> tuple[Mapping, ...]:
        """Mapping records with koids; one new sequence koid per anon VMA."""
        n = len(t)
        f = t.fields
        none = list(repeat(None, n))
        anon = f.get("Anonymous") if detail else None
        devs, inodes, perms, paths = t.devs, t.inodes, t.perms, t.paths
        # Rows that get a sequence koid: anonymous ones, and private file
        # mappings that are copy-on-write clones.  Computed with map() and
        # accumulate() (C loops); only file rows are looked at one by one.
        sequence = list(map(not_, inodes))
        file_rows = [i for i, ino in enumerate(inodes) if ino]
        for i in file_rows:
            p = perms[i]
            if p[3] == "p" and ((anon[i] or 0) > 0 if anon is not None else p[1] == "w"):
                sequence[i] = True
        koids = list(accumulate(sequence, initial=self.next_koid - 1))
        self.next_koid = koids[-1] + 1
        del koids[0]
        for i in file_rows:
            if not sequence[i]:
                koids[i] = inode_koid(devs[i], inodes[i])

        def col(key: str) -> list:
            return f.get(key) or none

        if detail and "Private_Clean" in f:
            private = _add(col("Private_Clean"), col("Private_Dirty"), col("Private_Hugetlb"))
            shared = _add(col("Shared_Clean"), col("Shared_Dirty"), col("Shared_Hugetlb"))
        else:
            private = shared = none
        flags = t.vm_flags if detail and t.vm_flags is not None else none
        return build_mappings(
            t.starts, t.ends, perms, t.offsets, devs, inodes, paths, koids,
            col("Rss"), col("Pss"), private, shared, col("Private_Dirty"),
            col("Anonymous"), col("Swap"), col("SwapPss"), flags,
        )

    def account(self, pid: int, maps: tuple[Mapping, ...]) -> None:
        """Count each mapping against its object (and a clone's parent)."""
        objs = self.objs
        for m in maps:
            koid = m.vmo_koid
            if m.inode and koid < INODE_KOID_BASE:
                parent_koid = inode_koid(m.dev, m.inode)
                parent = objs.get(parent_koid)
                if parent is None:
                    parent = objs[parent_koid] = self._inode_obj(parent_koid, pid, m)
                parent.num_children += 1
                obj = objs[koid] = _Obj(
                    koid, "clone", mapping_name(m), m.size_bytes, m.anonymous_bytes,
                    parent_koid=parent_koid, sharers=set(),
                    swap_bytes=m.swap_bytes,
                )
            elif m.inode == 0:
                obj = objs[koid] = _Obj(
                    koid, "anon", object_name(m.path), m.size_bytes, m.rss_bytes,
                    sharers=set(), swap_bytes=m.swap_bytes,
                )
            else:
                obj = objs.get(koid)
                if obj is None:
                    obj = objs[koid] = self._inode_obj(koid, pid, m)
            obj.num_mappings += 1
            obj.sharers.add(pid)  # type: ignore[union-attr]
            if _phys(m.vm_flags):
                obj.phys = True

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

    def handles(self, pid: int, maps: tuple[Mapping, ...] = ()) -> list[VmoRef]:
        """Descriptors of ``pid`` that refer to memory objects, fd order."""
        base = f"{self.proc}/{pid}/"
        try:
            fds = sorted(int(n) for n in os.listdir(base + "fd") if n.isdigit())
        except OSError as exc:
            if not _gone(exc):
                self.denied.append((f"fd:{pid}", _errname(exc)))
            return []
        refs: list[VmoRef] = []
        memory_devs: dict[int, str] | None = None
        for fd in fds:
            link_path = f"{base}fd/{fd}"
            try:
                link = os.readlink(link_path)
            except OSError:
                continue
            kind = handle_kind(link)
            if kind is None:
                continue
            st: os.stat_result | None = None
            try:
                if not self.live:
                    # A recorded link names a file of the recording machine.
                    raise FileNotFoundError(link)
                st = os.stat(link_path)
                dev, ino = st.st_dev, st.st_ino
            except OSError:
                # Not followable (a recorded tree, or the file went away):
                # fdinfo's inode with the device of a mapping of the same
                # name, or of the shm mount for a memfd.
                found = self._identity_from_fdinfo(base, fd, kind, link, maps)
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
                obj = self.objs[koid] = _Obj(
                    koid, kind, name, sharers=set(), dev=dev, inode=ino, path=link,
                )
            if obj.fd_path is None and st is not None:
                obj.fd_path = link_path
                self._fill_from_stat(obj, st)
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
        self, base: str, fd: int, kind: str, link: str, maps: tuple[Mapping, ...]
    ) -> tuple[int, int] | None:
        info = self._fdinfo(base, fd)
        try:
            ino = int(info[b"ino"])
        except (KeyError, ValueError):
            return None
        for m in maps:
            if m.inode == ino and m.path == link:
                return m.dev, ino
        if kind == "memfd":
            return SHM_DEV, ino
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

    def sizes(self, cachestat: _CacheStat, only: set[int] | None) -> None:
        """Stat each inode object once (and cachestat the files)."""
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
                obj.committed_bytes = self._cached(path, cachestat)

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

    def vmos(self) -> dict[int, Vmo]:
        out = {}
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


class _Gone(Exception):
    pass


_MAPPING_SLOTS = tuple(getattr(Mapping, f.name) for f in fields(Mapping))


def build_mappings(*columns: list) -> tuple[Mapping, ...]:
    """Mapping records from parallel columns in field order.

    Equal to ``tuple(map(Mapping, *columns))``, about three times faster: a
    frozen dataclass's ``__init__`` sets each field through
    ``object.__setattr__`` in Python code, while here each column is stored
    through its slot descriptor by ``map`` in C.  With 30,000 mappings that
    is the difference between meeting the vmaps time budget or not.
    """
    if len(columns) != len(_MAPPING_SLOTS):
        raise TypeError("build_mappings: one column per Mapping field")
    n = len(columns[0])
    gc_was = gc.isenabled()
    gc.disable()  # no cyclic garbage is made here; skip the collector's passes
    try:
        objs = list(map(object.__new__, repeat(Mapping, n)))
        for slot, column in zip(_MAPPING_SLOTS, columns, strict=True):
            if len(column) != n:
                raise ValueError("build_mappings: columns of different lengths")
            deque(map(slot.__set__, objs, column), 0)
    finally:
        if gc_was:
            gc.enable()
    return tuple(objs)


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
VMAPS_KEYS = ("Rss", "Anonymous")


def add_objects(
    snapshot: Snapshot,
    proc_root: str = "/proc",
    pids: Collection[int] | None = None,
    detail_pids: Collection[int] | None = None,
    *,
    vmos: bool = True,
    keys: tuple[str, ...] = smaps.SMAPS_FIELDS,
) -> Snapshot:
    """A new Snapshot whose processes have mappings, regions, refs and objects.

    ``pids``: the processes to read (None: every process of the snapshot);
    ``#map``/``#shr``/``#chld`` are counted over them.  ``detail_pids``: the
    processes whose ``smaps`` is read (page counts per mapping); the others
    are read from ``maps`` only (their mappings have ``rss_bytes`` None).
    None means all.  Sizes and alloc of inode objects (stat, cachestat) are
    read for the objects the detail processes reach; the others keep
    ``None``.  Processes that exit while being read are left out; handles
    are read for every process read.

    ``vmos=False`` reads mappings and regions only (what ``vmaps`` prints):
    no descriptors, no stat/cachestat, ``snapshot.vmos`` unchanged and
    ``vmo_refs`` left as they were.  ``keys`` picks the smaps fields kept.
    """
    want = None if pids is None else set(pids)
    detail = None if detail_pids is None else set(detail_pids)
    existing = [k for k in snapshot.vmos if k < INODE_KOID_BASE]
    collector = _Collector(proc_root, max(existing, default=0) + 1)

    read: dict[int, tuple[Mapping, ...] | None] = {}
    gone: set[int] = set()
    # Detail processes first: their anonymous koids are then 1, 2, ... in
    # address order whatever else is read, so `vmaps PID` and `vmos PID`
    # print the same koids for the same mappings.
    order = sorted(
        snapshot.processes, key=lambda p: 0 if detail is None or p.koid in detail else 1
    )
    for p in order:
        if want is not None and p.koid not in want:
            continue
        if p.kernel_thread:
            read[p.koid] = ()
            continue
        is_detail = detail is None or p.koid in detail
        try:
            table = collector.table(p.koid, is_detail, keys)
        except _Gone:
            gone.add(p.koid)
            continue
        if table is None:
            read[p.koid] = None
            continue
        maps = collector.mappings(p.koid, table, is_detail)
        del table
        read[p.koid] = maps
        if vmos:
            collector.account(p.koid, maps)

    refs: dict[int, list[VmoRef]] = {}
    if vmos:
        for pid, maps in read.items():
            if maps is None:
                continue
            refs[pid] = collector.handles(pid, maps)
        only = None
        if detail is not None:
            # Sizes only for what the detail processes reach: stat and
            # cachestat of every file on the system is not needed to show one.
            only = set()
            for pid in detail:
                only.update(r.vmo_koid for r in refs.get(pid, ()))
                only.update(m.vmo_koid for m in read.get(pid) or ())
            only.update([collector.objs[k].parent_koid for k in list(only) if k in collector.objs])
        cachestat = _CacheStat()
        collector.sizes(cachestat, only)
        if cachestat.failure:
            collector.notes.add(cachestat.failure)

    processes = []
    for p in snapshot.processes:
        if p.koid in gone:
            continue
        if p.koid not in read:
            processes.append(p)
            continue
        maps = read[p.koid]
        if maps is None:
            processes.append(replace(p, mappings=None, regions=None))
            continue
        changes: dict = {"mappings": maps, "regions": find_regions(maps)}
        if vmos:
            changes["vmo_refs"] = tuple(refs.get(p.koid, ())) + tuple(
                VmoRef(m.vmo_koid, ("MAPPING",)) for m in maps
            )
        processes.append(replace(p, **changes))

    prov = snapshot.provenance
    prov = replace(
        prov,
        denied=prov.denied + tuple(collector.denied),
        notes=prov.notes + tuple(sorted(collector.notes - set(prov.notes))),
    )
    changes = {"processes": tuple(processes), "provenance": prov}
    if vmos:
        table = dict(snapshot.vmos)
        table.update(collector.vmos())
        changes["vmos"] = MappingProxyType(table)
    return replace(snapshot, **changes)
