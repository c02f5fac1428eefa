"""Jobs on Linux: the cgroup tree (DESIGN.md, "Zircon concepts, Linux meanings").

Which hierarchy is the job tree:

* ``cgroup1:memory`` — on v1 or hybrid machines, the memory controller's tree
  (that is where memory is charged);
* ``cgroup2`` — the unified hierarchy, when no v1 memory controller exists;
* ``cgroup1:name=systemd`` — the systemd name tree, when only that exists;
* ``none`` — no cgroups: one root job.

The choice is made from the lines of ``/proc/PID/cgroup`` themselves
(cgroups(7)), so a recorded ``/proc`` is read the same way as the live one.

A job's koid is the cgroup id: the inode number of the cgroup's directory in
its cgroup file system (for v2 this is the id that ``name_to_handle_at`` and
BPF's ``bpf_get_current_cgroup_id`` use; v1 directories are inodes of the same
kind).  To go back from a koid to a cgroup, ``find /sys/fs/cgroup/... -inum
KOID``, or read the job's ``path`` in ``--json``.  When the directory cannot
be found (a container's ``/proc`` without its ``/sys``), the koid is a stable
hash of the path with bit 32 set, so it never collides with a real inode.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping

from zxmem.model import Job
from zxmem.sources.procfs import CgroupLine, MountInfo

MODE_V2 = "cgroup2"
MODE_V1_MEMORY = "cgroup1:memory"
MODE_V1_SYSTEMD = "cgroup1:name=systemd"
MODE_NONE = "none"

# The file a recorded tree (tests/fixtures/record_proc.py) keeps beside its
# proc/ directory: facts a copy of files cannot hold, such as inode numbers.
RECORDING_META = "zxmem-recording.json"

# koid of the single job in --jobs=none mode, and of the root job when no
# cgroup file system can be read (the root cgroup's id on cgroup2 is 1 too).
ROOT_JOB_KOID = 1
# koid of the root job in --jobs=user mode: (uid_t)-1, never a real UID.
USER_ROOT_JOB_KOID = 0xFFFFFFFF


def choose_hierarchy(lines: Iterable[CgroupLine]) -> tuple[str, str] | None:
    """Pick ``(mode, path)`` from one process's cgroup lines, or None."""
    v2 = None
    systemd = None
    for line in lines:
        if "memory" in line.controllers:
            return MODE_V1_MEMORY, line.path
        if not line.controllers and line.hierarchy_id == 0:
            v2 = line.path
        elif "name=systemd" in line.controllers:
            systemd = line.path
    if v2 is not None:
        return MODE_V2, v2
    if systemd is not None:
        return MODE_V1_SYSTEMD, systemd
    return None


def mount_for_mode(mounts: Iterable[MountInfo], mode: str) -> MountInfo | None:
    """The mount of the hierarchy that ``mode`` names."""
    for m in mounts:
        if mode == MODE_V2 and m.fs_type == "cgroup2":
            return m
        if m.fs_type == "cgroup":
            opts = m.super_options.split(",")
            if mode == MODE_V1_MEMORY and "memory" in opts:
                return m
            if mode == MODE_V1_SYSTEMD and "name=systemd" in opts:
                return m
    return None


def synthetic_koid(path: str) -> int:
    """Stable koid for a cgroup whose directory cannot be found."""
    import zlib  # rarely needed: not at start-up

    return (1 << 32) | zlib.crc32(path.encode("utf-8", "surrogateescape"))


class CgroupIds:
    """Maps cgroup paths to cgroup ids (directory inode numbers).

    ``fs_root`` is the file system root the ``/proc`` belongs to (``/`` live,
    the recording directory for a recorded tree).  A recorded tree lists the
    ids it saw in its ``zxmem-recording.json``, since copied directories have
    new inode numbers.
    """

    def __init__(self, fs_root: str, mount: MountInfo | None) -> None:
        self._fs_root = fs_root
        self._mount = mount
        self._cache: dict[str, int] = {}
        self._recorded: Mapping[str, int] | None = None
        meta = os.path.join(fs_root, RECORDING_META)
        try:
            with open(meta, "rb") as f:
                import json  # only a recorded tree has the file: not at start-up

                self._recorded = {k: int(v) for k, v in json.load(f)["cgroup_ids"].items()}
        except (OSError, ValueError, KeyError, TypeError, AttributeError):
            self._recorded = None

    def directory(self, path: str) -> str | None:
        """Absolute directory of cgroup ``path`` (as the recorded system saw it)."""
        if self._mount is None:
            return None
        root = self._mount.root.rstrip("/")
        rel = path
        if root and (rel == root or rel.startswith(root + "/")):
            rel = rel[len(root) :] or "/"
        return self._mount.mount_point.rstrip("/") + (rel if rel != "/" else "")

    def koid(self, path: str) -> int:
        cached = self._cache.get(path)
        if cached is not None:
            return cached
        koid = None
        directory = self.directory(path)
        if directory is not None:
            if self._recorded is not None:
                koid = self._recorded.get(directory)
            else:
                try:
                    koid = os.stat(self._fs_root.rstrip("/") + directory).st_ino
                except OSError:
                    koid = None
        if koid is None:
            koid = ROOT_JOB_KOID if path == "/" else synthetic_koid(path)
        self._cache[path] = koid
        return koid

    def read_file(self, path: str, name: str) -> bytes | None:
        """A control file of cgroup ``path`` (e.g. ``memory.oom.group``), or None."""
        directory = self.directory(path)
        if directory is None or self._recorded is not None:
            return None
        try:
            with open(self._fs_root.rstrip("/") + directory + "/" + name, "rb") as f:
                return f.read()
        except OSError:
            return None


def ancestors(path: str) -> list[str]:
    """``/a/b`` → ``["/", "/a", "/a/b"]``."""
    out = ["/"]
    if path in ("", "/"):
        return out
    parts = [p for p in path.split("/") if p]
    for i in range(1, len(parts) + 1):
        out.append("/" + "/".join(parts[:i]))
    return out


def build_jobs(
    paths: Iterable[str],
    koid_of: Callable[[str], int],
    state_of: Callable[[str], str] | None = None,
) -> tuple[tuple[Job, ...], dict[str, int]]:
    """Jobs for every cgroup in ``paths`` and their ancestors.

    Returns the jobs (parents before children, siblings in koid order) and a
    map from path to job koid.  Only cgroups with a process at or below them
    become jobs: empty cgroups hold no process memory to show.
    """
    all_paths: set[str] = {"/"}
    for p in paths:
        all_paths.update(ancestors(p))
    koids = {p: koid_of(p) for p in all_paths}
    jobs = []
    for p in sorted(all_paths, key=lambda x: (x.count("/") if x != "/" else 0, koids[x])):
        if p == "/":
            parent = 0
            name = "root"
        else:
            parent = koids[p.rsplit("/", 1)[0] or "/"]
            name = p.rsplit("/", 1)[1]
        jobs.append(
            Job(
                koid=koids[p],
                name=name,
                parent_koid=parent,
                path=p,
                state=state_of(p) if state_of else "",
            )
        )
    return tuple(jobs), koids
