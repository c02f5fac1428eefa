"""Writing a command's output to a file named by ``-o``/``--output``.

The rule (as a shell's ``>`` would treat the target, but never leaving a
half-written file where a good one was):

* a new path, or an existing regular file: the text goes to a temporary
  file in the same directory, is flushed to disk, and is renamed over the
  path (rename(2) is atomic), so a reader sees the old file or the whole
  new one; a replaced file keeps its permission bits;
* a symbolic link: the link stays, and its target is treated by this rule
  (a regular file is replaced atomically, a device or FIFO written through);
* anything else that exists -- a character device (``/dev/null``,
  ``/dev/full``), a FIFO, a socket -- is opened for writing and written
  through: it is never replaced by a regular file;
* a directory is refused.

Any failure is an :class:`~zxmem.errors.OutputError` naming the path, and a
temporary file is removed.
"""

from __future__ import annotations

import os
import stat
import tempfile

from zxmem.errors import OutputError


def write_output(path: str, data: str | bytes, option: str = "-o") -> None:
    """Write ``data`` (text is UTF-8) to ``path`` by the rule above."""
    raw = data.encode("utf-8") if isinstance(data, str) else data
    target = os.path.realpath(path)  # a link's final target; the path itself if none
    try:
        st: os.stat_result | None = os.stat(target)
    except FileNotFoundError:
        st = None
    except OSError as exc:
        raise OutputError(f"{option} {path}: {exc.strerror}") from None
    if st is not None and stat.S_ISDIR(st.st_mode):
        raise OutputError(f"{option} {path}: is a directory")
    if st is not None and not stat.S_ISREG(st.st_mode):
        _write_through(path, raw, option)
    else:
        _replace(target, path, raw, st, option)


def _write_through(path: str, raw: bytes, option: str) -> None:
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CLOEXEC)
    except OSError as exc:
        raise OutputError(f"{option} {path}: {exc.strerror}") from None
    try:
        view = memoryview(raw)
        while view:
            view = view[os.write(fd, view):]
    except OSError as exc:
        raise OutputError(f"{option} {path}: {exc.strerror}") from None
    finally:
        os.close(fd)


def _replace(target: str, path: str, raw: bytes, st: os.stat_result | None,
             option: str) -> None:
    directory = os.path.dirname(target) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".zxmem-", dir=directory)
    except OSError as exc:
        raise OutputError(f"{option} {path}: {exc.strerror}") from None
    try:
        try:
            view = memoryview(raw)
            while view:
                view = view[os.write(fd, view):]
            os.fsync(fd)
            # mkstemp makes 0600; a replaced file keeps its bits, a new one
            # gets what open(2) with 0666 would under the umask.
            mode = stat.S_IMODE(st.st_mode) if st is not None else 0o666 & ~_umask()
            os.fchmod(fd, mode)
        finally:
            os.close(fd)
        os.replace(tmp, target)
    except OSError as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        raise OutputError(f"{option} {path}: {exc.strerror}") from None


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask
