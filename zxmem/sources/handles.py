"""Descriptor counts by kind: memgraph's ``handle_stats`` on Linux.

Zircon's ``ZX_INFO_PROCESS_HANDLE_STATS`` counts a process's handles by
object type (spec fuchsia-tools §5.3).  The Linux counterpart is the open
file descriptors, classified by the target of each ``/proc/PID/fd/N`` link
(proc(5), "/proc/pid/fd/"):

===========================  ==========
link target                  kind
===========================  ==========
``socket:[INODE]``           ``socket``
``pipe:[INODE]``             ``pipe``
``anon_inode:[eventfd]``     ``eventfd`` (the name inside, lower-case:
                             ``eventpoll``, ``timerfd``, ``signalfd``,
                             ``pidfd``, ``io_uring``, ``inotify``,
                             ``bpf_map``, ``perf_event``, ``userfaultfd``…)
``/memfd:NAME (deleted)``    ``memfd``
``/dmabuf:…``                ``dmabuf``
``/dev/shm/…``               ``shmem`` (POSIX shared memory)
``/SYSV…``                   ``sysv``
``/dev/…``                   ``device``
``/…`` (any other path)      ``file`` (regular files and directories)
``net:[…]``, ``mnt:[…]``…    the part before the colon (namespaces)
anything else                ``unknown``
===========================  ==========

Kind names are lower case and keep only ``[a-z0-9_]`` (other characters
become ``_``), as memgraph's schema requires of ``handle_stats`` keys.

:func:`fd_kind` is pure; :func:`read_handle_stats` and
:func:`add_handle_stats` read ``/proc`` (the root is injectable).
"""

from __future__ import annotations

import errno
import os
import re
from dataclasses import replace
from types import MappingProxyType

from zxmem.model import Denied, Provenance, Snapshot
from zxmem.sources.readfile import errname
from zxmem.textsafe import decode_name

_BAD = re.compile(r"[^a-z0-9_]+")


def _clean(kind: str) -> str:
    kind = _BAD.sub("_", kind.lower()).strip("_")
    return kind or "unknown"


def fd_kind(target: str) -> str:
    """The kind of descriptor whose ``/proc/PID/fd/N`` link reads ``target``."""
    if target.startswith("/"):
        if target.startswith("/memfd:"):
            return "memfd"
        if target.startswith("/dmabuf:"):
            return "dmabuf"
        if target.startswith("/SYSV"):
            return "sysv"
        if target.startswith("/dev/shm/"):
            return "shmem"
        if target.startswith("/dev/"):
            return "device"
        return "file"
    if target.startswith("anon_inode:"):
        inner = target[len("anon_inode:"):]
        if inner.startswith("[") and inner.endswith("]"):
            inner = inner[1:-1]
        return _clean(inner)
    head, sep, _ = target.partition(":")
    if sep and head and " " not in head:
        return _clean(head)  # socket, pipe, net, mnt, ...
    return "unknown"


def count_kinds(targets: list[str]) -> dict[str, int]:
    """``{kind: count}`` for a list of link targets, sorted by kind."""
    counts: dict[str, int] = {}
    for t in targets:
        k = fd_kind(t)
        counts[k] = counts.get(k, 0) + 1
    return dict(sorted(counts.items()))


def read_handle_stats(proc_root: str, pid: int) -> dict[str, int]:
    """Descriptor counts of one process.

    Raises ``OSError`` with EACCES/EPERM when denied, ENOENT/ESRCH when gone.
    A descriptor closed between listing and reading its link is skipped.
    """
    base = f"{proc_root.rstrip('/') or '/'}/{pid}/fd"
    names = os.listdir(base)
    targets = []
    for name in names:
        try:
            targets.append(decode_name(os.readlink(f"{base}/{name}".encode())))
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ESRCH):
                continue
            raise
    return count_kinds(targets)


def add_handle_stats(snapshot: Snapshot, proc_root: str = "/proc") -> Snapshot:
    """A copy of ``snapshot`` with every process's ``handle_stats`` filled.

    A process whose descriptors are denied keeps ``None`` and is recorded in
    the provenance as ``("fd:PID", "EACCES")``; one that has exited keeps
    ``None`` silently.
    """
    denied: list[Denied] = []
    procs = []
    for p in snapshot.processes:
        try:
            stats = read_handle_stats(proc_root, p.koid)
        except OSError as exc:
            if exc.errno not in (errno.ENOENT, errno.ESRCH):
                denied.append(Denied(f"fd:{p.koid}", errname(exc)))
            procs.append(p)
            continue
        procs.append(replace(p, handle_stats=MappingProxyType(stats)))
    prov: Provenance = snapshot.provenance
    if denied:
        prov = replace(prov, denied=prov.denied + tuple(denied))
    return replace(snapshot, processes=tuple(procs), provenance=prov)
