"""Hidden memory objects: memory that no process maps (``zxmem k vmos hidden``).

The Linux side of Zircon's "hidden" VMOs (spec fuchsia-tools §8.1; DESIGN.md
"hidden VMOs"; spec linux-kernel B.7, B.8, B.10).  ``ps`` and ``vmaps`` only
see memory that is mapped; these objects hold RAM without any mapping:

==================  =========================================================
object              where it is found, and its numbers
==================  =========================================================
memfd, shmem file   a descriptor in ``/proc/PID/fd`` (``/memfd:NAME
held by an fd       (deleted)``, or a file on a tmpfs/ramfs mount, deleted or
                    not) that no process maps: found by
                    :func:`zxmem.sources.objects.add_objects`; size
                    ``st_size``, alloc ``st_blocks × 512`` (allocated pages,
                    swapped ones included).  Holders: the processes with such
                    a descriptor.
SysV segment        ``/proc/sysvipc/shm`` (``ipc/shm.c``, ``sysvipc_shm_proc_
with no attach      show``) rows with ``nattch`` 0: size ``size``, alloc
                    ``rss``, swap ``swap`` (bytes; the two columns exist since
                    Linux 3.?; older kernels lack them: alloc unknown).  No
                    holder: a segment is kept by the kernel until
                    ``IPC_RMID``.  koid = ``inode_koid(00:01, shmid)``, the
                    same as a mapping of it (maps shows the shmid as inode).
tmpfs/ramfs file    a bounded walk of every tmpfs, ramfs and devtmpfs mount of
nobody maps/holds   every mount namespace (``/proc/PID/mountinfo``, reached
                    through ``/proc/PID/root`` for other namespaces): never
                    follows a symlink, never leaves the mount's ``st_dev``,
                    stops after ``walk_limit`` directory entries and says so.
                    Files with no allocated block are left out (they hold no
                    memory).  No holder.
dma-buf             ``/sys/kernel/debug/dma_buf/bufinfo`` (``drivers/dma-buf/
                    dma-buf.c``, ``dma_buf_debug_show``; debugfs, root): every
                    buffer, also those only the kernel holds; without it only
                    buffers a process holds by descriptor (fdinfo ``size:``).
Shmem remainder     ``Shmem`` of ``/proc/meminfo`` minus the alloc of every
                    shmem-backed object found (mapped or hidden): tmpfs in
                    mounts nobody can reach, GEM objects, pages of objects
                    whose size could not be read.  One explicit row, koid 0
                    (Zircon's "kernel-only" koid).
==================  =========================================================

Failure behaviour: a missing ``/proc/sysvipc/shm`` (no ``CONFIG_SYSVIPC``),
an unreadable ``bufinfo``, a ``meminfo`` without ``Shmem`` each leave that
part unknown and add a note; nothing is ever reported as 0 for "unknown".
Descriptors, segments and files that disappear during the scan are skipped.
"""

from __future__ import annotations

import errno
import os
import stat as stat_mod
from collections.abc import Container, Iterable
from dataclasses import dataclass, replace
from types import MappingProxyType

from zxmem.model import (  # noqa: F401 - REMAINDER_* and largest_first are re-exported
    INODE_KOID_BASE,
    REMAINDER_KOID,
    REMAINDER_NAME,
    Snapshot,
    Vmo,
    inode_koid,
    largest_first,
)
from zxmem.sources import procfs
from zxmem.textsafe import decode_name, fs_text

SHM_DEV = procfs.SHM_DEV
MEMORY_FS_TYPES = procfs.MEMORY_FS_TYPES

# Directory entries the tmpfs walk looks at in all, before it stops.
DEFAULT_WALK_LIMIT = 100_000

# Object kinds whose pages are counted in meminfo Shmem.
SHMEM_KINDS = frozenset(("memfd", "shmem", "sysv"))

# Kinds that can be hidden (anonymous memory and clones exist only mapped).
HIDDEN_KINDS = frozenset(("memfd", "shmem", "sysv", "dmabuf"))


SHM_DEST = 0o1000  # perms bit of a segment marked for deletion (IPC_RMID)


class ParseError(ValueError):
    """A kernel file whose contents do not have the expected shape."""


# ---------------------------------------------------------------------------
# Pure parsers


@dataclass(frozen=True, slots=True)
class ShmSegment:
    """One ``/proc/sysvipc/shm`` row (B.7).  Sizes in bytes; ``rss_bytes``
    and ``swap_bytes`` are ``None`` on kernels without those columns."""

    key: int
    shmid: int
    perms: int
    size_bytes: int
    cpid: int | None
    lpid: int | None
    nattch: int
    uid: int | None
    rss_bytes: int | None
    swap_bytes: int | None

    @property
    def destroyed(self) -> bool:
        """Marked for deletion (``IPC_RMID``) while still attached."""
        return bool(self.perms & SHM_DEST)


def parse_sysvipc_shm(data: bytes) -> tuple[ShmSegment, ...]:
    """Parse ``/proc/sysvipc/shm`` by its header names, not by position.

    Header on 6.18: ``key shmid perms size cpid lpid nattch uid gid cuid cgid
    atime dtime ctime rss swap``; ``perms`` is octal, ``key`` decimal (it
    may be negative: ``key_t`` is a signed int), the rest decimal.
    """
    lines = [line for line in data.split(b"\n") if line.strip()]
    if not lines:
        raise ParseError("sysvipc/shm: empty (no header)")
    names = lines[0].split()
    col = {name.decode("ascii", "replace"): i for i, name in enumerate(names)}
    for need in ("key", "shmid", "perms", "size", "nattch"):
        if need not in col:
            raise ParseError(f"sysvipc/shm: no {need!r} column in {lines[0][:80]!r}")

    def opt(fields: list[bytes], name: str) -> int | None:
        i = col.get(name)
        return None if i is None or i >= len(fields) else int(fields[i])

    out = []
    for line in lines[1:]:
        fields = line.split()
        try:
            out.append(
                ShmSegment(
                    key=int(fields[col["key"]]),
                    shmid=int(fields[col["shmid"]]),
                    perms=int(fields[col["perms"]], 8),
                    size_bytes=int(fields[col["size"]]),
                    cpid=opt(fields, "cpid"),
                    lpid=opt(fields, "lpid"),
                    nattch=int(fields[col["nattch"]]),
                    uid=opt(fields, "uid"),
                    rss_bytes=opt(fields, "rss"),
                    swap_bytes=opt(fields, "swap"),
                )
            )
        except (ValueError, IndexError):
            raise ParseError(f"sysvipc/shm: malformed line {line[:80]!r}") from None
    return tuple(out)


@dataclass(frozen=True, slots=True)
class DmaBuf:
    """One buffer of ``/sys/kernel/debug/dma_buf/bufinfo``."""

    size_bytes: int
    count: int | None  # file references
    exporter: str
    inode: int | None  # ino column (Linux ≥ 5.?; absent before)
    name: str | None  # DMA_BUF_SET_NAME name, None for "<none>"


def parse_dmabuf_bufinfo(data: bytes) -> tuple[DmaBuf, ...]:
    """Parse debugfs ``dma_buf/bufinfo``.

    After the title ``Dma-buf Objects:`` comes a tab-separated header
    (``size flags mode count exp_name [ino] [name]``), then per buffer one
    row of those fields followed by fence, ``Attached Devices:`` and
    ``Total N devices attached`` lines; the file ends with ``Total N
    objects, M bytes``.  Only rows under the header's shape are buffers.
    """
    out = []
    col: dict[str, int] | None = None
    for line in data.split(b"\n"):
        if not line.strip():
            continue
        if col is None:
            if line.split()[:1] == [b"size"]:
                col = {n.decode("ascii", "replace"): i for i, n in enumerate(line.split())}
            continue
        if line[:1] in (b"\t", b" ") or not line[:1].isdigit():
            continue  # fences, attached devices, totals
        fields = line.split(b"\t")
        if len(fields) < len(col):
            fields = line.split()
        try:
            size = int(fields[col["size"]])
            count = int(fields[col["count"]]) if "count" in col else None
            exporter = decode_name(fields[col["exp_name"]].strip())
            ino = int(fields[col["ino"]]) if "ino" in col else None
            name = None
            if "name" in col and col["name"] < len(fields):
                raw = fields[col["name"]].strip()
                if raw and raw != b"<none>":
                    name = decode_name(raw)
        except (ValueError, IndexError, KeyError):
            raise ParseError(f"dma_buf/bufinfo: malformed line {line[:80]!r}") from None
        out.append(DmaBuf(size, count, exporter, ino, name))
    if col is None:
        raise ParseError("dma_buf/bufinfo: no header line")
    return tuple(out)


@dataclass(frozen=True, slots=True)
class Mount:
    """One ``/proc/PID/mountinfo`` line (proc.rst §3.5)."""

    mount_id: int
    dev: int  # os.makedev(major, minor)
    root: str  # the root of the mount inside its file system
    mount_point: str
    fstype: str
    source: str


def _unescape(raw: bytes) -> str:
    """mountinfo escapes space, tab, newline and backslash as ``\\ooo``.

    The result is a path to walk, so it keeps every byte (``surrogateescape``
    round-trips through ``os``); what is shown of it goes through
    :func:`zxmem.textsafe.fs_text`."""
    return procfs.unescape_mount(raw).decode("utf-8", "surrogateescape")


def parse_mountinfo(data: bytes) -> tuple[Mount, ...]:
    """Every mount of a ``mountinfo`` file; malformed lines are skipped."""
    out = []
    for _line, fields, sep in procfs.mountinfo_lines(data, 10):
        if sep < 0:
            continue
        try:
            out.append(
                Mount(
                    mount_id=int(fields[0]),
                    dev=procfs.mount_dev(fields),
                    root=_unescape(fields[3]),
                    mount_point=_unescape(fields[4]),
                    fstype=fields[sep + 1].decode("ascii", "replace"),
                    source=_unescape(fields[sep + 2]),
                )
            )
        except (ValueError, IndexError):
            continue
    return tuple(out)


def memory_mounts(mounts: Iterable[Mount]) -> list[Mount]:
    """tmpfs/ramfs/devtmpfs mounts, one per file system (``st_dev``).

    A file system mounted twice (or bind-mounted) is walked once, from the
    mount of its root directory when there is one.
    """
    chosen: dict[int, Mount] = {}
    for m in mounts:
        if m.fstype not in MEMORY_FS_TYPES:
            continue
        have = chosen.get(m.dev)
        if have is None or (have.root != "/" and m.root == "/"):
            chosen[m.dev] = m
    return list(chosen.values())


def shmem_remainder(
    shmem_bytes: int | None, vmos: Iterable[Vmo]
) -> tuple[int | None, int, int]:
    """``Shmem − Σ alloc`` of the shmem-backed objects (B.10 residual).

    Returns ``(remainder, attributed, unknown)``: ``unknown`` counts objects
    whose alloc is not known (the remainder then includes their pages).
    ``None`` when meminfo has no ``Shmem`` (Linux < 2.6.32).
    """
    attributed = 0
    unknown = 0
    for v in vmos:
        if v.kind not in SHMEM_KINDS or v.koid == REMAINDER_KOID:
            continue
        if v.committed_bytes is None:
            unknown += 1
        else:
            attributed += v.committed_bytes
    if shmem_bytes is None:
        return None, attributed, unknown
    return shmem_bytes - attributed, attributed, unknown


def holders_of(snapshot: Snapshot) -> dict[int, tuple[int, ...]]:
    """VMO koid → PIDs holding a descriptor to it (snapshot order)."""
    out: dict[int, list[int]] = {}
    for p in snapshot.processes:
        for ref in p.vmo_refs or ():
            if "HANDLE" in ref.via:
                pids = out.setdefault(ref.vmo_koid, [])
                if not pids or pids[-1] != p.koid:
                    pids.append(p.koid)
    return {k: tuple(v) for k, v in out.items()}


def is_hidden(vmo: Vmo) -> bool:
    """No process maps it, nor a clone of it."""
    return vmo.kind in HIDDEN_KINDS and vmo.num_mappings == 0 and vmo.num_children == 0


# ---------------------------------------------------------------------------
# The tmpfs walk


@dataclass
class WalkResult:
    files: list[tuple[str, os.stat_result]]
    entries: int = 0
    stopped_in: str | None = None  # the mount where the bound was reached
    denied: int = 0


def walk_memory_mount(
    top: str,
    dev: int,
    *,
    limit: int,
    skip: Container[int] = (),
    result: WalkResult | None = None,
) -> WalkResult:
    """Regular files of the file system ``dev`` under ``top`` that hold pages.

    Never follows a symlink (``scandir`` entries are examined with
    ``follow_symlinks=False``) and never descends into a directory on
    another device (a mount on top of this one).  Stops when ``result.entries``
    reaches ``limit`` and records where.  Files whose koid is in ``skip``
    (mapped or held: listed already), files with no allocated block, and
    hard links already seen are left out.  Directories that vanish or are
    denied are skipped (denied ones counted).
    """
    res = result if result is not None else WalkResult([])
    seen: set[int] = set()
    stack = [top]
    while stack:
        directory = stack.pop()
        try:
            it = os.scandir(directory)
        except FileNotFoundError:
            continue
        except OSError:
            res.denied += 1
            continue
        with it:
            for entry in it:
                if res.entries >= limit:
                    res.stopped_in = top
                    return res
                res.entries += 1
                try:
                    st = entry.stat(follow_symlinks=False)
                except OSError:
                    continue  # removed meanwhile
                if st.st_dev != dev:
                    continue  # another file system mounted here
                if stat_mod.S_ISDIR(st.st_mode):
                    stack.append(entry.path)
                elif stat_mod.S_ISREG(st.st_mode) and st.st_blocks:
                    koid = inode_koid(st.st_dev, st.st_ino)
                    if koid in seen or koid in skip:
                        continue
                    seen.add(koid)
                    res.files.append((entry.path, st))
    return res


# ---------------------------------------------------------------------------
# Reading


def _read(path: str) -> bytes:
    with open(path, "rb") as f:
        return f.read()


def _why(exc: OSError) -> str:
    if exc.errno in (errno.EACCES, errno.EPERM):
        return "permission denied (root only)"
    if exc.errno == errno.ENOENT:
        return "missing"
    return exc.strerror or errno.errorcode.get(exc.errno or 0, "error")


def _next_sequence_koid(vmos: dict[int, Vmo]) -> int:
    return max((k for k in vmos if k < INODE_KOID_BASE), default=0) + 1


@dataclass
class _State:
    proc: str
    vmos: dict[int, Vmo]
    notes: list[str]


def _fill_mapped_shmem(st: _State, snapshot: Snapshot) -> None:
    """alloc of mapped memfd/shmem objects the objects pass left unknown.

    ``add_objects`` stats only what its detail processes reach; the Shmem
    remainder needs the alloc of every shmem object, so each one still
    unknown is stat'ed once through ``/proc/PID/map_files`` (root).
    """
    wanted = {
        k for k, v in st.vmos.items()
        if v.kind in ("memfd", "shmem") and v.committed_bytes is None and v.num_mappings
    }
    if not wanted:
        return
    denied = 0
    for p in snapshot.processes:
        if not wanted:
            break
        for m in p.mappings or ():
            if m.vmo_koid not in wanted:
                continue
            path = f"{st.proc}/{p.koid}/map_files/{m.start:x}-{m.end:x}"
            try:
                s = os.stat(path)
            except OSError as exc:
                if exc.errno in (errno.EPERM, errno.EACCES):
                    denied += 1
                continue
            if (s.st_dev, s.st_ino) != (m.dev, m.inode):
                continue
            v = st.vmos[m.vmo_koid]
            st.vmos[m.vmo_koid] = replace(
                v, size_bytes=s.st_size if v.size_bytes is None else v.size_bytes,
                committed_bytes=s.st_blocks * 512,
            )
            wanted.discard(m.vmo_koid)
    if denied:
        st.notes.append(
            "map_files not followable (needs CAP_SYS_ADMIN): alloc of some mapped "
            "shmem objects unknown"
        )


def _add_sysv(st: _State, hidden: list[int], only_known: bool = False) -> None:
    try:
        segments = parse_sysvipc_shm(_read(f"{st.proc}/sysvipc/shm"))
    except OSError as exc:
        st.notes.append(f"/proc/sysvipc/shm {_why(exc)}: SysV segments unknown")
        return
    except ParseError as exc:
        st.notes.append(f"{exc}: SysV segments unknown")
        return
    if segments and segments[0].rss_bytes is None:
        st.notes.append("/proc/sysvipc/shm has no rss/swap columns (old kernel): "
                        "alloc of SysV segments unknown")
    for seg in segments:
        koid = inode_koid(SHM_DEV, seg.shmid)
        have = st.vmos.get(koid)
        if have is not None:
            # Mapped: the kernel's resident count is better than st_blocks
            # (which includes swapped pages).
            if seg.rss_bytes is not None:
                st.vmos[koid] = replace(
                    have, committed_bytes=seg.rss_bytes, swap_bytes=seg.swap_bytes,
                    size_bytes=seg.size_bytes,
                )
            continue
        if only_known:
            continue
        st.vmos[koid] = Vmo(
            koid=koid,
            name=f"SYSV{seg.key & 0xFFFFFFFF:08x}",
            kind="sysv",
            size_bytes=seg.size_bytes,
            committed_bytes=seg.rss_bytes,
            # Attached by processes not read (another PID namespace, or
            # denied): the kernel's attach count is all that is known.
            num_mappings=seg.nattch,
            dev=SHM_DEV,
            inode=seg.shmid,
            swap_bytes=seg.swap_bytes,
        )
        if seg.nattch == 0:
            hidden.append(koid)


def add_sysv_alloc(snapshot: Snapshot, proc_root: str = "/proc") -> Snapshot:
    """The snapshot with each known SysV object's alloc and swap taken from
    ``/proc/sysvipc/shm`` (``rss``/``swap``: resident, not ``st_blocks``).

    For views of one process (``k vmos PID``); adds no objects.  When the
    file is missing, the snapshot is returned unchanged with a note.
    """
    st = _State(proc_root.rstrip("/") or "/", dict(snapshot.vmos), [])
    if not any(v.kind == "sysv" for v in st.vmos.values()):
        return snapshot
    _add_sysv(st, [], only_known=True)
    prov = snapshot.provenance
    notes = tuple(n for n in st.notes if n not in prov.notes)
    return replace(snapshot, vmos=MappingProxyType(st.vmos),
                   provenance=replace(prov, notes=prov.notes + notes))


def _add_dmabufs(st: _State, sys_root: str) -> None:
    path = f"{sys_root}/kernel/debug/dma_buf/bufinfo"
    try:
        bufs = parse_dmabuf_bufinfo(_read(path))
    except OSError as exc:
        st.notes.append(
            f"{path} {_why(exc)} (debugfs): dma-bufs no process holds are unknown"
        )
        return
    except ParseError as exc:
        st.notes.append(str(exc))
        return
    by_inode = {v.inode: k for k, v in st.vmos.items() if v.kind == "dmabuf"}
    devs = {v.dev for v in st.vmos.values() if v.kind == "dmabuf" and v.dev is not None}
    dev = devs.pop() if len(devs) == 1 else 0
    for buf in bufs:
        koid = by_inode.get(buf.inode) if buf.inode is not None else None
        if koid is not None:
            continue
        if buf.inode is not None:
            koid = inode_koid(dev, buf.inode)
        else:
            koid = _next_sequence_koid(st.vmos)
        label = buf.name or buf.exporter
        st.vmos[koid] = Vmo(
            koid=koid, name=f"dmabuf:{label}", kind="dmabuf",
            size_bytes=buf.size_bytes, committed_bytes=buf.size_bytes,
            dev=dev if buf.inode is not None else None, inode=buf.inode,
        )


def _namespaces(proc: str, snapshot: Snapshot) -> list[str]:
    """``/proc`` entries to read mountinfo from: self, then one per other
    mount namespace among the snapshot's processes."""
    seen: set[str] = set()
    out = []
    for who in ["self", *(str(p.koid) for p in snapshot.processes)]:
        try:
            ns = os.readlink(f"{proc}/{who}/ns/mnt")
        except OSError:
            if who == "self":
                ns = "self"
            else:
                continue
        if ns in seen:
            continue
        seen.add(ns)
        out.append(who)
    return out


def _walk_tmpfs(st: _State, snapshot: Snapshot, limit: int, hidden: list[int]) -> None:
    result = WalkResult([])
    walked: set[int] = set()
    covered = []
    skip = set(st.vmos)
    for who in _namespaces(st.proc, snapshot):
        try:
            mounts = parse_mountinfo(_read(f"{st.proc}/{who}/mountinfo"))
        except OSError:
            continue
        prefix = "" if who == "self" else f"{st.proc}/{who}/root"
        for m in memory_mounts(mounts):
            if m.dev in walked:
                continue
            top = prefix + m.mount_point
            try:
                if os.stat(top, follow_symlinks=False).st_dev != m.dev:
                    covered.append(top)
                    continue
            except OSError:
                continue
            walked.add(m.dev)
            walk_memory_mount(top, m.dev, limit=limit, skip=skip, result=result)
            if result.stopped_in is not None:
                break
        if result.stopped_in is not None:
            break
    for path, s in result.files:
        koid = inode_koid(s.st_dev, s.st_ino)
        if koid in st.vmos:
            continue
        # The walk's paths are OS-decoded str (surrogateescape); the model
        # holds text: invalid UTF-8 as ``\\xNN``, like every other name.
        path = fs_text(path)
        st.vmos[koid] = Vmo(
            koid=koid, name=path, kind="shmem", size_bytes=s.st_size,
            committed_bytes=s.st_blocks * 512, dev=s.st_dev, inode=s.st_ino, path=path,
        )
        hidden.append(koid)
    if result.stopped_in is not None:
        st.notes.append(
            f"tmpfs walk stopped at its bound of {limit} entries "
            f"(in {fs_text(result.stopped_in)}): "
            "files beyond it are not listed; raise --walk-limit"
        )
    if covered:
        st.notes.append(
            f"{len(covered)} tmpfs mount(s) covered by other mounts not walked: "
            + ", ".join(fs_text(c) for c in covered[:3])
        )
    if result.denied:
        st.notes.append(f"{result.denied} tmpfs directories not readable: not walked")


def _add_remainder(st: _State) -> None:
    """Add the Shmem remainder: meminfo's Shmem less the shmem objects' alloc."""
    shmem = None
    try:
        from zxmem.sources.kernel import ParseError as KernelParseError
        from zxmem.sources.kernel import parse_meminfo

        meminfo = parse_meminfo(_read(f"{st.proc}/meminfo"))[0]
        shmem = meminfo.get("Shmem")
        if shmem is None:
            st.notes.append("Shmem not in /proc/meminfo (Linux < 2.6.32): remainder unknown")
    except (OSError, KernelParseError) as exc:
        st.notes.append(f"/proc/meminfo unreadable ({exc}): Shmem remainder unknown")
    remainder, _, unknown = shmem_remainder(shmem, st.vmos.values())
    if unknown and remainder is not None:
        st.notes.append(
            f"{unknown} shmem object(s) of unknown alloc: their pages are in the remainder"
        )
    st.vmos[REMAINDER_KOID] = Vmo(
        koid=REMAINDER_KOID, name=REMAINDER_NAME, kind="shmem",
        size_bytes=remainder, committed_bytes=remainder,
    )


def add_hidden(
    snapshot: Snapshot,
    proc_root: str = "/proc",
    *,
    walk_limit: int = DEFAULT_WALK_LIMIT,
    walk_tmpfs: bool | None = None,
    sys_root: str | None = None,
) -> Snapshot:
    """A new Snapshot with the hidden objects, their holders and the remainder.

    ``snapshot`` must come from :func:`zxmem.sources.objects.add_objects`
    over every process (its objects, ``#map`` and handles are what "mapped"
    and "held" mean).  ``walk_tmpfs`` None walks tmpfs/ramfs mounts only when
    ``proc_root`` is this machine's ``/proc`` (a recorded tree's mounts are
    not here).  ``sys_root`` defaults to the ``sys`` next to ``proc_root``.

    Fills ``vmos`` (new objects added, SysV alloc from the kernel's ``rss``),
    ``hidden_vmo_koids`` (largest first, the Shmem remainder last),
    ``vmo_holders`` (every object held by a descriptor) and notes in the
    provenance for everything that stayed unknown.
    """
    proc = proc_root.rstrip("/") or "/"
    if sys_root is None:
        sys_root = os.path.join(os.path.dirname(proc) or "/", "sys")
    if walk_tmpfs is None:
        walk_tmpfs = os.path.realpath(proc) == "/proc"
    st = _State(proc, dict(snapshot.vmos), [])
    _fill_mapped_shmem(st, snapshot)
    extra: list[int] = []
    _add_sysv(st, extra)
    _add_dmabufs(st, sys_root)
    if walk_tmpfs:
        _walk_tmpfs(st, snapshot, walk_limit, extra)
    else:
        st.notes.append("tmpfs/ramfs files not walked: --proc-root is not this machine's /proc")

    _add_remainder(st)
    hidden = {k for k, v in st.vmos.items() if k != REMAINDER_KOID and is_hidden(v)}
    hidden.update(extra)
    order = [v.koid for v in largest_first(st.vmos[k] for k in hidden)]
    order.append(REMAINDER_KOID)

    prov = snapshot.provenance
    new_notes = tuple(n for n in st.notes if n not in prov.notes)
    return replace(
        snapshot,
        vmos=MappingProxyType(st.vmos),
        hidden_vmo_koids=tuple(order),
        vmo_holders=MappingProxyType(holders_of(snapshot)),
        provenance=replace(prov, notes=prov.notes + new_notes),
    )
