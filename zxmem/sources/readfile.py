"""The one way sources read ``/proc`` and ``/sys`` files, and what a failed
read means.

Reading: :func:`read_file` (any file, until end of file) and
:func:`read_record` (a file the kernel prints as one record, usually in one
``read``).  Failures, by their errno: the thing :func:`vanished` (the
process exited, the file went), the read was :func:`refused` (permissions),
or the file is :func:`absent` on this kernel or in this recorded tree
(``ENOENT`` where the process is still there: callers tell the two apart);
:func:`errname` is the name recorded in a snapshot's provenance.
"""

from __future__ import annotations

import errno
import os

READ_SIZE = 1 << 16


def read_file(path: str, read_size: int = READ_SIZE) -> bytes:
    """The whole file, reading until end of file.

    Works for any ``/proc`` file: seq_files may return short reads before
    their end (``fs/seq_file.c`` stops at a record that does not fit), so
    only an empty read means the end.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, read_size)
            if not chunk:
                break
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)


def read_record(path: str) -> bytes:
    """A /proc file printed as one record, usually in one ``read``.

    ``stat``, ``status``, ``cgroup`` and ``smaps_rollup`` are ``single_open``
    seq_files (fs/proc/base.c, fs/proc/task_mmu.c): the kernel renders the
    whole record, then copies as much as the buffer holds, so a read that
    returns less than was asked for has reached the end.  ``cmdline``
    (``proc_pid_cmdline_read``) likewise loops until the buffer is full or
    the arguments end.  Skipping the read that would return 0 saves one
    system call, and one hand-over of the GIL, per file.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        data = os.read(fd, READ_SIZE)
        if len(data) < READ_SIZE:
            return data
        chunks = [data]
        while True:
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                return b"".join(chunks)
            chunks.append(chunk)
    finally:
        os.close(fd)


def vanished(exc: OSError) -> bool:
    """The process or file is gone (ENOENT, or ESRCH from a process whose
    address space went away while its files were open)."""
    return exc.errno in (errno.ENOENT, errno.ESRCH)


def refused(exc: OSError) -> bool:
    """The read was not allowed (EACCES, EPERM)."""
    return exc.errno in (errno.EACCES, errno.EPERM)


def absent(exc: OSError) -> bool:
    """No such file (ENOENT): on this kernel, in this recorded tree, or
    because its process vanished."""
    return exc.errno == errno.ENOENT


def errname(exc: OSError) -> str:
    """The errno's name (``EACCES``), as provenance records it."""
    return errno.errorcode.get(exc.errno or 0, str(exc.errno))
