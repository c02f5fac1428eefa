"""Pure parsers for ``/proc`` files: bytes in, plain Python values out.

Nothing here opens a file, so every parser is tested with inline snippets and
recorded trees.  Each function names the kernel file and the fields it relies
on; sizes are returned in bytes (the kernel prints ``kB`` meaning KiB).

Kernel references: ``Documentation/filesystems/proc.rst`` (Tables 1-2 to 1-4),
``fs/proc/array.c`` (``do_task_stat``, ``proc_pid_status``),
``fs/proc/task_mmu.c`` (``show_smap``, ``show_smaps_rollup``),
``kernel/cgroup/cgroup.c`` (``proc_cgroup_show``).
"""

from __future__ import annotations

import os
from collections.abc import Iterator

from zxmem.record import Record
from zxmem.textsafe import decode_name

KIB = 1024

# /proc/PID/stat field 9 (flags): PF_KTHREAD, include/linux/sched.h (stable
# since 2.6.x).  A task with this flag has no user address space.
PF_KTHREAD = 0x00200000

# The kernel-internal shm mount (memfd, SysV, shared anonymous mappings):
# the device 00:01 of their maps lines and descriptors.
SHM_DEV = os.makedev(0, 1)

# File systems whose files are shmem pages (Documentation/filesystems/tmpfs.rst;
# devtmpfs is a tmpfs instance when CONFIG_TMPFS is set, drivers/base/devtmpfs.c)
# or ramfs pages: their files are memory objects, not page cache of a disk.
# hugetlbfs is not one: its pages are HugeTLB, outside meminfo Shmem.
MEMORY_FS_TYPES = frozenset(("tmpfs", "ramfs", "devtmpfs"))


class ParseError(ValueError):
    """A ``/proc`` file whose contents do not have the expected shape."""


class TaskStat(Record):
    """The fields zxmem uses from ``/proc/PID/stat`` (or ``task/TID/stat``)."""

    pid: int
    comm: str  # decoded; raw bytes may hold anything but NUL
    state: str  # one letter: R S D I T t Z X P W K
    ppid: int
    flags: int
    num_threads: int
    starttime: int  # clock ticks after boot

    @property
    def kernel_thread(self) -> bool:
        return bool(self.flags & PF_KTHREAD)


def parse_stat(data: bytes) -> TaskStat:
    """Parse ``/proc/PID/stat``.

    The second field is ``(comm)``; comm may itself contain spaces and ``)``,
    so the split point is the *last* ``)`` (as ``do_task_stat`` prints it last
    before the state).  Field numbers below are proc.rst Table 1-4's, 1-based.
    """
    open_paren = data.find(b"(")
    close_paren = data.rfind(b")")
    if open_paren < 0 or close_paren < open_paren:
        raise ParseError("stat: no '(comm)' field")
    try:
        pid = int(data[:open_paren])
        # rest[0] is field 3 (state); field N is rest[N - 3].  Only fields up
        # to 22 are used, so the ~30 after them are not split out.
        rest = data[close_paren + 2 :].split(None, 20)
        return TaskStat(
            pid=pid,
            comm=decode_name(data[open_paren + 1 : close_paren]),
            state=rest[0].decode("ascii", "replace"),
            ppid=int(rest[1]),
            flags=int(rest[6]),
            num_threads=int(rest[17]),
            starttime=int(rest[19]),
        )
    except (ValueError, IndexError) as exc:
        raise ParseError(f"stat: malformed ({exc})") from None


def parse_cmdline(data: bytes) -> tuple[str, ...]:
    """Split ``/proc/PID/cmdline`` into arguments.

    Arguments are NUL-terminated.  A process may overwrite its argument area
    (``setproctitle``), leaving one string with spaces and no NUL; that comes
    back as one argument.  Kernel threads and zombies give an empty file, so
    an empty tuple here means "no command line", not "unknown".
    """
    # Trailing NULs are terminators or setproctitle padding over the old
    # argument area; trailing empty arguments cannot be told from padding,
    # and kept they would print as a trail of spaces.
    data = data.rstrip(b"\0")
    if not data:
        return ()
    return tuple(decode_name(arg) for arg in data.split(b"\0"))


def parse_kb_fields(data: bytes, start: int = 0) -> dict[bytes, int]:
    """``Key:   N kB`` lines from ``start`` on, as ``{b"Key": bytes}``.

    Used for ``smaps_rollup`` (after its header line).  Every value line of
    ``show_smaps_rollup`` has exactly three tokens, so one ``split`` and a
    stride of three is the whole parse (no per-line work).
    """
    tokens = data[start:].split()
    out: dict[bytes, int] = {}
    n = len(tokens) - 2
    i = 0
    while i < n:
        key = tokens[i]
        if key[-1:] != b":":
            raise ParseError(f"expected 'Key:' at token {i}, got {key[:40]!r}")
        out[key[:-1]] = int(tokens[i + 1]) * KIB
        i += 3
    if i != len(tokens):
        raise ParseError("truncated 'Key: N kB' line")
    return out


def parse_smaps_rollup(data: bytes) -> dict[bytes, int]:
    """Parse ``/proc/PID/smaps_rollup`` (Linux ≥ 4.14) into byte counts.

    The first line is a synthetic maps header ending in ``[rollup]``; the rest
    are ``Field: N kB`` lines (B.1 of the kernel spec lists them).  An empty
    file (no address space) gives an empty dict.
    """
    if not data:
        return {}
    nl = data.find(b"\n")
    if nl < 0:
        raise ParseError("smaps_rollup: no header line")
    try:
        return parse_kb_fields(data, nl + 1)
    except ValueError as exc:
        raise ParseError(f"smaps_rollup: {exc}") from None


# Fields of smaps that hold sizes; VmFlags, THPeligible and ProtectionKey do not.
_NOT_SIZES = frozenset((b"VmFlags", b"THPeligible", b"ProtectionKey"))


def sum_smaps(data: bytes) -> dict[bytes, int]:
    """Sum every ``Field: N kB`` over all VMAs of ``/proc/PID/smaps``.

    The fallback for kernels without ``smaps_rollup``.  Note the kernel prints
    each VMA's ``Pss`` truncated to whole kB, so this sum is a few kB below
    what ``smaps_rollup`` would give (spec B.1).
    """
    out: dict[bytes, int] = {}
    for line in data.split(b"\n"):
        if not line.endswith(b" kB"):
            continue
        key, _, rest = line.partition(b":")
        # A VMA header line whose path ends in " kB" (a hostile file name)
        # also gets here; field names never contain a space, headers always do.
        if key in _NOT_SIZES or b" " in key:
            continue
        try:
            value = int(rest[:-3]) * KIB
        except ValueError:
            raise ParseError(f"smaps: bad value line {line[:60]!r}") from None
        out[key] = out.get(key, 0) + value
    return out


def parse_status(data: bytes) -> dict[bytes, bytes]:
    """``/proc/PID/status`` as ``{b"Key": b"value"}`` (values stripped)."""
    out: dict[bytes, bytes] = {}
    for line in data.split(b"\n"):
        key, sep, value = line.partition(b":")
        if sep:
            out[key] = value.strip()
    return out


def status_bytes(status: dict[bytes, bytes], key: bytes) -> int | None:
    """A ``N kB`` field of a parsed status (e.g. ``VmSwap``) in bytes, or None."""
    value = status.get(key)
    if value is None:
        return None
    number = value.split()[0] if value else b""
    try:
        return int(number) * KIB
    except ValueError:
        return None


def status_uid(status: dict[bytes, bytes]) -> int | None:
    """The real UID (first of the four ``Uid:`` numbers), or None."""
    value = status.get(b"Uid")
    if not value:
        return None
    try:
        return int(value.split()[0])
    except ValueError:
        return None


class CgroupLine(Record):
    hierarchy_id: int
    controllers: tuple[str, ...]  # () for the v2 line "0::/path"
    path: str


def parse_cgroup(data: bytes) -> tuple[CgroupLine, ...]:
    """Parse ``/proc/PID/cgroup``: ``hierarchy-ID:controller-list:path`` lines.

    v2 prints one line ``0::/path``; v1 prints one line per hierarchy, with
    comma-separated controllers and named hierarchies as ``name=systemd``
    (cgroups(7)).  The path may itself contain ``:``, so only the first two
    are separators.
    """
    lines = []
    for raw in data.split(b"\n"):
        if not raw:
            continue
        parts = raw.split(b":", 2)
        if len(parts) != 3:
            raise ParseError(f"cgroup: malformed line {raw[:60]!r}")
        try:
            hid = int(parts[0])
        except ValueError:
            raise ParseError(f"cgroup: bad hierarchy id {parts[0][:20]!r}") from None
        controllers = tuple(c.decode("ascii", "replace") for c in parts[1].split(b",") if c)
        lines.append(CgroupLine(hid, controllers, decode_name(parts[2])))
    return tuple(lines)


class MountInfo(Record):
    mount_point: str
    fs_type: str
    root: str
    super_options: str


def unescape_mount(field: bytes) -> bytes:
    """A mountinfo path field: space, tab, newline and backslash are
    escaped as ``\\ooo`` octal (``mangle`` in fs/proc_namespace.c)."""
    if b"\\" not in field:
        return field
    out = bytearray()
    i = 0
    while i < len(field):
        if field[i] == 0x5C and i + 4 <= len(field) and field[i + 1 : i + 4].isdigit():
            out.append(int(field[i + 1 : i + 4], 8) & 0xFF)
            i += 4
        else:
            out.append(field[i])
            i += 1
    return bytes(out)


def _unescape_mount(field: bytes) -> str:
    return decode_name(unescape_mount(field))


def mountinfo_lines(data: bytes, min_fields: int = 1,
                    ) -> Iterator[tuple[bytes, list[bytes], int]]:
    """``(line, fields, sep)`` of each line of ``/proc/PID/mountinfo`` with
    at least ``min_fields`` fields: ``sep`` is the index of the ``-`` that
    ends the optional fields (proc.rst §3.5), or -1 when there is none.

    Fields: id, parent id, major:minor, root, mount point, options, optional
    fields ending with ``-``, then fs type, source, super options.
    """
    for line in data.split(b"\n"):
        if not line:
            continue
        fields = line.split(b" ")
        if len(fields) < min_fields:
            continue
        try:
            sep = fields.index(b"-", 6)
        except ValueError:
            sep = -1
        yield line, fields, sep


def mount_dev(fields: list[bytes]) -> int:
    """``st_dev`` of a mountinfo line's ``major:minor`` field (decimal);
    raises :class:`ValueError`."""
    major, _, minor = fields[2].partition(b":")
    return os.makedev(int(major), int(minor))


def parse_mountinfo(data: bytes) -> tuple[MountInfo, ...]:
    """Parse ``/proc/PID/mountinfo`` (proc.rst §3.5); a malformed line
    raises :class:`ParseError`."""
    mounts = []
    for raw, fields, sep in mountinfo_lines(data):
        try:
            if sep < 0:
                raise ValueError("no separator")
            mounts.append(
                MountInfo(
                    mount_point=_unescape_mount(fields[4]),
                    fs_type=decode_name(fields[sep + 1]),
                    root=_unescape_mount(fields[3]),
                    super_options=decode_name(fields[sep + 3]) if len(fields) > sep + 3 else "",
                )
            )
        except (ValueError, IndexError):
            raise ParseError(f"mountinfo: malformed line {raw[:60]!r}") from None
    return tuple(mounts)


def parse_posix_lock_inodes(data: bytes, pid: int) -> frozenset[tuple[int, int]]:
    """``(st_dev, st_ino)`` of every file ``pid`` holds a POSIX (fcntl) lock on,
    from ``/proc/locks``.

    Lines are ``N: POSIX  ADVISORY  WRITE PID MAJ:MIN:INO START END`` with
    the device in hex (fs/locks.c ``lock_get_status``); waiters carry a
    ``->`` after the number.  flock and OFD locks belong to an open file
    description and are not listed here: closing another descriptor of the
    file does not drop them (fcntl(2)), unlike POSIX locks.
    """
    out = set()
    for line in data.splitlines():
        parts = line.split()
        if len(parts) > 1 and parts[1] == b"->":
            del parts[1]
        if len(parts) < 6 or parts[1] != b"POSIX":
            continue
        try:
            if int(parts[4]) != pid:
                continue
            major, minor, ino = parts[5].split(b":")
            out.add((os.makedev(int(major, 16), int(minor, 16)), int(ino)))
        except ValueError:
            continue
    return frozenset(out)
