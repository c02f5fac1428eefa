"""The snapshot model: plain immutable data that every view is derived from.

A source (live Linux, a saved memgraph, a Fuchsia capture) reads once and
builds a :class:`Snapshot`.  Nothing in here reads files or formats numbers.

Conventions
-----------
* Every size is in bytes and every field that holds one ends in ``_bytes``.
* ``None`` means *unknown* (the kernel did not give it, or reading it was
  denied); it is never replaced by 0.
* Koids are unique within each kind of object in a snapshot:

  - job koid: the cgroup id (the inode number of the cgroup directory; see
    :mod:`zxmem.sources.cgroups`), or the UID with ``--jobs=user``;
  - process koid: the PID; thread koid: the TID (as on Linux, a process's
    main thread has TID == PID);
  - VMO koid, inode-backed objects (files, shmem, memfd, SysV, tmpfs,
    dma-buf): ``inode_koid(st_dev, st_ino)`` below, stable across snapshots;
    anonymous and clone objects: small sequence numbers (< 2**32) assigned in
    scan order, meaningful only within the snapshot.
"""

from __future__ import annotations

from collections.abc import Iterable
from collections.abc import Mapping as _Mapping
from types import MappingProxyType

from zxmem.record import Record

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import NamedTuple

    class _DeniedTuple(NamedTuple):
        what: str
        why: str
else:  # typing costs start-up; collections is loaded already
    from collections import namedtuple

    _DeniedTuple = namedtuple("Denied", ("what", "why"))

PAGE_SIZE = 4096

# The default of mapping fields: one shared, read-only empty mapping.
_EMPTY: _Mapping = MappingProxyType({})

# The kernel's default vm.mmap_min_addr (CONFIG_DEFAULT_MMAP_MIN_ADDR on
# x86-64 and arm64 distributions): the /A start assumed where the snapshot
# does not say (Provenance.mmap_min_addr is None).
DEFAULT_MMAP_MIN_ADDR = 0x10000

# First koid that an inode-backed VMO can have; sequence koids stay below it.
INODE_KOID_BASE = 1 << 32


def inode_koid(dev: int, ino: int) -> int:
    """Return the stable VMO koid of the object with identity (dev, ino).

    ``dev`` is the kernel's ``st_dev`` (``makedev(major, minor)`` as Python's
    ``os.stat`` returns it).  The koid is ``dev << 32 | ino`` for inode numbers
    below 2**32 (every tmpfs/shmem/memfd inode and almost every disk inode),
    so ``koid >> 32`` gives the device back and ``koid & 0xffffffff`` the
    inode.  Larger inode numbers are folded with XOR, which keeps the koid
    stable but no longer reversible.
    """
    if ino < (1 << 32):
        return ((dev & 0xFFFFFFFF) << 32) | ino if dev else INODE_KOID_BASE | ino
    return ((dev & 0xFFFFFFFF) << 32) ^ ino | INODE_KOID_BASE


def koid_dev_ino(koid: int) -> tuple[int, int] | None:
    """Inverse of :func:`inode_koid` for reversible koids, else ``None``."""
    if koid < INODE_KOID_BASE:
        return None
    return koid >> 32, koid & 0xFFFFFFFF


# Thread states, Zircon vocabulary (spec fuchsia-tools §2.2): the short form
# is what `ps -T` prints, the long form what memgraph writes.
THREAD_STATES = {
    "running": "RUNNING",
    "blocked": "BLOCKED",
    "susp": "SUSPENDED",
    "dead": "DEAD",
    "new": "NEW",
    "dying": "DYING",
    "excp": "EXCEPTION",
    "???": "<UNKNOWN>",
}


class Thread(Record):
    koid: int
    name: str
    state: str  # a key of THREAD_STATES


class MemoryCounts(Record):
    """Per-process memory numbers (from smaps_rollup or summed smaps).

    ``pss_bytes``/``private_bytes``/``shared_bytes`` follow DESIGN.md:
    PSS = Pss + Private_Hugetlb; PRIVATE = Private_Clean + Private_Dirty +
    Private_Hugetlb; SHARED = Shared_Clean + Shared_Dirty + Shared_Hugetlb.
    """

    pss_bytes: int | None = None
    private_bytes: int | None = None
    shared_bytes: int | None = None
    rss_bytes: int | None = None
    swap_bytes: int | None = None
    swap_pss_bytes: int | None = None
    pss_anon_bytes: int | None = None
    pss_file_bytes: int | None = None
    pss_shmem_bytes: int | None = None
    hugetlb_bytes: int | None = None


class Mapping(Record):
    """One mapping (a VMA, one ``smaps`` entry)."""

    start: int
    end: int  # exclusive
    perms: str  # four letters as in maps: "r-xp", "rw-s"
    offset: int
    dev: int  # st_dev encoding (os.makedev(major, minor)); 0 for anonymous
    inode: int
    path: str  # the maps pathname field ("" for anonymous)
    vmo_koid: int
    rss_bytes: int | None = None
    pss_bytes: int | None = None
    private_bytes: int | None = None
    shared_bytes: int | None = None
    private_dirty_bytes: int | None = None
    anonymous_bytes: int | None = None
    swap_bytes: int | None = None
    swap_pss_bytes: int | None = None
    vm_flags: str | None = None

    @property
    def size_bytes(self) -> int:
        return self.end - self.start


class Region(Record):
    """A group of mappings that belong together (a VMAR, ``R`` in vmaps).

    ``kind`` is one of ``"elf"`` (one loaded object's text/rodata/data/bss),
    ``"stack"`` (a thread stack and its guard page) or ``"group"``.
    """

    start: int
    end: int
    name: str
    kind: str
    mapping_indices: tuple[int, ...]


# VMO kinds.  "phys" objects are device/PFN mappings: they use no RAM.
# A Vmo's kind is None when its source does not say (Fuchsia's memgraph and
# captures record no kind).
VMO_KINDS = ("file", "shmem", "memfd", "sysv", "dmabuf", "anon", "clone", "phys")


class Vmo(Record):
    koid: int
    name: str
    kind: str | None  # one of VMO_KINDS; None = unknown (a Fuchsia VMO)
    size_bytes: int | None
    committed_bytes: int | None  # "alloc": resident bytes of the whole object
    parent_koid: int = 0
    num_children: int = 0
    num_mappings: int | None = 0  # None = unknown (a Fuchsia capture does not record it)
    share_count: int = 0
    dev: int | None = None
    inode: int | None = None
    path: str | None = None
    # Linux extras, written under names Fuchsia's consumers ignore.
    swap_bytes: int | None = None


# The hidden-object scan's explicit remainder: Shmem no object found accounts
# for (zxmem.sources.hidden), a VMO with this koid and name.
REMAINDER_KOID = 0
REMAINDER_NAME = "[unattributed Shmem]"


def largest_first(vmos: Iterable[Vmo]) -> list[Vmo]:
    """By alloc, then size, largest first; unknown sizes last; koid breaks ties."""
    def key(v: Vmo) -> tuple:
        alloc = v.committed_bytes
        size = v.size_bytes
        return (alloc is None, -(alloc or 0), size is None, -(size or 0), v.koid)

    return sorted(vmos, key=key)


class VmoRef(Record):
    """How a process reaches a VMO: through a handle (fd) and/or a mapping."""

    vmo_koid: int
    via: tuple[str, ...]  # ("HANDLE",), ("MAPPING",) or both
    handle_rights: tuple[str, ...] = ()  # subset of READ WRITE EXECUTE MAP DUPLICATE TRANSFER
    fd: int | None = None


class Process(Record):
    koid: int
    name: str  # Linux comm (≤ 15 bytes), escaped at display time
    job_koid: int
    ppid: int | None = None
    uid: int | None = None
    cmdline: tuple[str, ...] | None = None  # None when unreadable
    state: str | None = None  # /proc stat letter
    kernel_thread: bool = False
    memory: MemoryCounts | None = None  # None when smaps was denied
    threads: tuple[Thread, ...] = ()
    num_threads: int | None = None
    vm_pte_bytes: int | None = None
    # When the process started, in clock ticks after boot (/proc/PID/stat
    # field 22, ``starttime``): with the boot id and the PID, the process's
    # identity across snapshots (a reused PID has another start time).
    start_time_ticks: int | None = None
    mappings: tuple[Mapping, ...] | None = None  # None when not collected/denied
    regions: tuple[Region, ...] | None = None
    vmo_refs: tuple[VmoRef, ...] | None = None
    handle_stats: _Mapping[str, int] | None = None

    @property
    def display_name(self) -> str:
        """The command line when known, else ``[comm]`` (raw; escape to print)."""
        if self.cmdline:
            return " ".join(self.cmdline)
        if self.kernel_thread or self.cmdline is not None:
            return f"[{self.name}]"
        return f"[{self.name}]"


class CgroupMemory(Record):
    """What a cgroup's own memory files say (zxmem.sources.cgmem).

    ``version`` is ``"v2"`` or ``"v1"``.  Limits are bytes or ``"max"`` (no
    limit).  ``stat`` is ``memory.stat`` with the kernel's own keys (v1's
    names on v1: ``cache``, ``rss``, ``total_cache``…); ``events`` the v2
    ``memory.events`` counters, or on v1 ``oom_kill`` (``memory.oom_control``)
    and ``failcnt``; ``pressure`` the PSI of ``memory.pressure``
    (``some``/``full`` → ``avg10``, ``avg60``, ``avg300``, ``total_us``).
    ``kernel_bytes``: v2 ``memory.stat`` ``kernel``, v1
    ``memory.kmem.usage_in_bytes``.  ``missing`` names each file that could
    not be read, and why; its fields stay None.
    """

    version: str
    charged_bytes: int | None = None
    kernel_bytes: int | None = None
    swap_bytes: int | None = None
    limit_bytes: int | str | None = None
    high_bytes: int | str | None = None
    low_bytes: int | str | None = None
    min_bytes: int | str | None = None
    soft_limit_bytes: int | str | None = None
    stat: _Mapping[str, int] | None = None
    events: _Mapping[str, int] | None = None
    pressure: _Mapping[str, _Mapping[str, float]] | None = None
    missing: tuple[tuple[str, str], ...] = ()


class Job(Record):
    koid: int
    name: str
    parent_koid: int  # 0 for the root job
    path: str = ""  # cgroup path ("/" for the root), or "" when not a cgroup
    state: str = ""  # late-era STATE column (e.g. "killoom")
    # Linux extras: what the cgroup itself is charged (memory.current).
    charged_bytes: int | None = None
    # The cgroup's memory files, when read (ps --cgroup/--json/--explain).
    cgroup: CgroupMemory | None = None


class KernelStats(Record):
    """Zircon's ``zx_info_kmem_stats`` as mapped onto Linux (spec B.5)."""

    total_bytes: int | None = None
    free_bytes: int | None = None
    vmo_bytes: int | None = None
    total_heap_bytes: int | None = None
    free_heap_bytes: int | None = None
    wired_bytes: int | None = None
    mmu_overhead_bytes: int | None = None
    ipc_bytes: int | None = None
    other_bytes: int | None = None
    # Raw inputs (meminfo keys to bytes), so every column can be explained.
    meminfo: _Mapping[str, int] = _EMPTY
    extra: _Mapping[str, int | None] = _EMPTY

    @classmethod
    def from_columns(cls, columns: _Mapping[str, int | None],
                     extra: _Mapping[str, int | None]) -> KernelStats:
        """The stats whose ``*_bytes`` columns are ``columns`` (field name to
        bytes; a field left out is unknown), with ``extra`` kept as given."""
        unknown = set(columns) - set(KERNEL_COLUMNS)
        if unknown:
            raise TypeError(f"not KernelStats columns: {', '.join(sorted(unknown))}")
        g = columns.get
        return cls(total_bytes=g("total_bytes"), free_bytes=g("free_bytes"),
                   vmo_bytes=g("vmo_bytes"), total_heap_bytes=g("total_heap_bytes"),
                   free_heap_bytes=g("free_heap_bytes"), wired_bytes=g("wired_bytes"),
                   mmu_overhead_bytes=g("mmu_overhead_bytes"), ipc_bytes=g("ipc_bytes"),
                   other_bytes=g("other_bytes"), extra=MappingProxyType(dict(extra)))


# The byte-count columns of KernelStats (kstats -m, memgraph's kernel records).
KERNEL_COLUMNS = ("total_bytes", "free_bytes", "vmo_bytes", "total_heap_bytes",
                  "free_heap_bytes", "wired_bytes", "mmu_overhead_bytes", "ipc_bytes",
                  "other_bytes")


class Denied(_DeniedTuple):
    """Something that could not be read: ``what`` is ``"FILE:PID"`` (e.g.
    ``"smaps_rollup:1234"``) or a path; ``why`` the errno name (``EACCES``)
    or ``"malformed"``.  A 2-tuple (a named tuple of ``what`` and ``why``), so
    it is written as a JSON pair."""

    __slots__ = ()

    @property
    def kind(self) -> str:
        """The file that was refused (``smaps_rollup``), or all of ``what``."""
        return self.what.partition(":")[0]

    @property
    def pid(self) -> int | None:
        """The process it belongs to, or None for a system-wide file."""
        tail = self.what.partition(":")[2]
        return int(tail) if tail.isascii() and tail.isdigit() else None


class Provenance(Record):
    source: str  # "linux", "memgraph", "fuchsia-capture"
    host: str | None = None
    kernel: str | None = None
    timestamp: str | None = None  # UTC, YYYY-MM-DDTHH:MM:SS.mmmZ
    # What could not be read and why, e.g. Denied("smaps_rollup:1234", "EACCES").
    denied: tuple[Denied, ...] = ()
    notes: tuple[str, ...] = ()  # fallbacks taken, e.g. "no smaps_rollup: summed smaps"
    # "cgroup2", "cgroup1:memory", "cgroup1:name=systemd", "user", "none"
    job_mode: str | None = None
    # /proc/sys/kernel/random/boot_id: which boot of which machine (a
    # process's identity is (boot_id, koid, start_time_ticks)).
    boot_id: str | None = None
    # When it was taken on the source's own clock, in nanoseconds: Linux
    # CLOCK_BOOTTIME (the clock of start times), a Fuchsia capture's
    # monotonic "Time".
    capture_time_ns: int | None = None
    # The clock tick of start_time_ticks (sysconf(_SC_CLK_TCK), USER_HZ).
    clock_ticks_per_second: int | None = None
    # vm.mmap_min_addr: the lowest address a process may map, where vmaps'
    # /A and root-VMAR rows start.  None: not recorded (a Fuchsia capture, a
    # file saved before zxmem kept it, an unreadable sysctl); readers then
    # take DEFAULT_MMAP_MIN_ADDR.
    mmap_min_addr: int | None = None

    def __post_init__(self) -> None:
        if any(type(d) is not Denied for d in self.denied):
            object.__setattr__(self, "denied", tuple(Denied(*d) for d in self.denied))

    def denied_pids(self, *kinds: str) -> frozenset[int]:
        """PIDs with a denied entry of one of ``kinds`` (every kind if none)."""
        return frozenset(d.pid for d in self.denied
                         if d.pid is not None and (not kinds or d.kind in kinds))


class Snapshot(Record):
    provenance: Provenance
    jobs: tuple[Job, ...]
    processes: tuple[Process, ...]
    kernel: KernelStats | None = None
    vmos: _Mapping[int, Vmo] = _EMPTY
    # VMO koids no process maps (memfds held only by fds, SysV with no
    # attach, tmpfs files, dma-bufs, the Shmem remainder): filled by the
    # kernel-memory collector when asked.
    hidden_vmo_koids: tuple[int, ...] = ()
    # Who holds each hidden VMO: koid -> process koids holding a descriptor.
    vmo_holders: _Mapping[int, tuple[int, ...]] = _EMPTY
    # Buckets the source carried (a memory-monitor capture wrapped with its
    # "Buckets", or the assignment `ffx profile memory --buckets` made):
    # zxmem.digest.BucketSpec objects, used by `digest` when no --buckets is
    # given.  None when the source has none.
    buckets: tuple | None = None
    # What a source that holds no VMO table computed itself (ffx's
    # ComponentDigest and ProcessDigest): a zxmem.summary.Summary of its
    # per-principal/per-process private/scaled/total bytes and VMO groups,
    # and a zxmem.digest.SourceDigest of its bucket totals.  None otherwise.
    source_summary: object | None = None
    source_digest: object | None = None

    @property
    def root_job(self) -> Job | None:
        for job in self.jobs:
            if job.parent_koid == 0:
                return job
        return None

    def job(self, koid: int) -> Job | None:
        for job in self.jobs:
            if job.koid == koid:
                return job
        return None

    def process(self, koid: int) -> Process | None:
        for proc in self.processes:
            if proc.koid == koid:
                return proc
        return None

    def identity(self, process: Process) -> tuple[str | None, int, int | None]:
        """(boot id, PID, start time): the same process in two snapshots has
        the same identity; a PID reused by another process does not."""
        return self.provenance.boot_id, process.koid, process.start_time_ticks


def freeze_mapping(d: dict) -> _Mapping:
    """A read-only view of ``d`` for use in snapshot fields."""
    return MappingProxyType(dict(d))
