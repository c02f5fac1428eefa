"""Memory objects, parsers: pure functions of the bytes of ``/proc`` files
(``mountinfo``, ``fdinfo``, descriptor links, VmFlags) used by
:mod:`zxmem.sources.objects`."""

from __future__ import annotations

import os

from zxmem.sources import procfs

# ---------------------------------------------------------------------------
# Pure helpers


def parse_mountinfo_devs(data: bytes) -> dict[int, str]:
    """``st_dev`` → file system type, from ``/proc/PID/mountinfo``.

    Field 3 is ``major:minor`` (decimal), the type follows the ``-``
    separator (proc.rst §3.5).
    """
    out: dict[int, str] = {}
    for _line, fields, sep in procfs.mountinfo_lines(data, 8):
        if sep < 0:
            continue
        try:
            out[procfs.mount_dev(fields)] = fields[sep + 1].decode("ascii", "replace")
        except (ValueError, IndexError):
            continue
    return out


def parse_fdinfo(data: bytes) -> dict[bytes, bytes]:
    """``/proc/PID/fdinfo/N`` as ``{key: value}`` (``flags`` is octal text):
    ``Key:\tvalue`` lines, as ``status`` (fs/proc/fd.c ``seq_show``)."""
    return procfs.parse_status(data)


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


