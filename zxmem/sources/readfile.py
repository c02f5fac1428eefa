"""Reading whole ``/proc`` and ``/sys`` files with as few system calls as possible."""

from __future__ import annotations

import os

READ_SIZE = 1 << 16


def read_file(path: str) -> bytes:
    """The whole file, reading until end of file.

    Works for any ``/proc`` file: seq_files may return short reads before
    their end (``fs/seq_file.c`` stops at a record that does not fit), so
    only an empty read means the end.
    """
    fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
    try:
        chunks = []
        while True:
            chunk = os.read(fd, READ_SIZE)
            if not chunk:
                break
            chunks.append(chunk)
        return chunks[0] if len(chunks) == 1 else b"".join(chunks)
    finally:
        os.close(fd)
