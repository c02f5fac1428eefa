"""Where command output goes: standard output, or the file named by ``-o``.

Every write of a command's result goes through this module, so a full disk,
an I/O error or an unwritable target is one line naming where the output was
going (exit 1), never a traceback, and never a good file replaced by a
partial one.

Standard output is wrapped in :class:`GuardedStream`: an ``OSError`` on
``write`` or ``flush`` becomes :class:`StdoutError` (``zxmem: cannot write
to standard output: No space left on device``).  A closed pipe
(``BrokenPipeError``) passes through untouched: the CLI ends quietly with 0,
as ``zxmem ps | head -1`` should.

``-o -`` is standard output, for every command with ``-o``
(:func:`write_result`), as it is for most Unix tools.

``-o FILE`` (:func:`write_output`) behaves as a shell's ``>`` would, except
that a regular file is never truncated in place:

* a new path, or an existing regular file: the text goes to a temporary file
  in the same directory (``.zxmem-*.tmp``), is fsynced, and is renamed over
  the path; on any failure the temporary file is removed and the old file is
  left as it was.  A replaced file keeps its permission bits (not
  set-user-ID, set-group-ID or sticky) and, where allowed, its owner and
  group; a new file is 0644 less the umask.  A file with other hard links is
  replaced under this name only (the other names keep the old text).
* a symbolic link is followed, as ``>`` follows it: when it leads to a
  regular file (or to a path that does not exist yet) that file is replaced
  as above and the link stays a link; when it leads to anything else the
  text is written through it.
* a character or block device (``/dev/null``, ``/dev/full``, a terminal), a
  FIFO, or anything else not a regular file: opened for writing and written
  through, never replaced (opening a FIFO waits for its reader, as ``>``
  does).
* a directory, or a socket: refused with one line.

The target is opened for writing before anything is decided, so the
kernel's checks apply as they would to ``>`` (write permission on the file,
the protected-symlink rules of sticky directories), and the type is taken
from the opened file, not from an earlier look at the path.
"""

from __future__ import annotations

import errno
import os
import stat

from zxmem.errors import ZxmemError
from zxmem.textsafe import escape_terminal

TYPE_CHECKING = False  # typing itself costs start-up
if TYPE_CHECKING:
    from typing import TextIO

STDOUT_NAME = "standard output"
STDOUT_ARG = "-"  # ``-o -``: standard output, not a file named '-'


class OutputError(ZxmemError):
    """Output could not be written (the message names where it was going)."""


class StdoutError(OutputError):
    """Standard output could not be written."""


def cannot_write(where: str, exc: OSError) -> str:
    """The one-line message for a failed write to ``where``."""
    why = exc.strerror or os.strerror(exc.errno or 0) or type(exc).__name__
    return f"cannot write to {where}: {why}"


def _name(path: str) -> str:
    # A path from the command line may hold any bytes; the error is one line.
    return escape_terminal(path)


class GuardedStream:
    """A text stream whose write errors are :class:`StdoutError`, not ``OSError``.

    Everything but ``write``, ``writelines`` and ``flush`` is the wrapped
    stream's own (``isatty``, ``fileno``, ``encoding``...).  ``None`` (what
    Python makes of a closed file descriptor 1) fails every write with
    "Bad file descriptor".
    """

    def __init__(self, stream: TextIO | None, name: str = STDOUT_NAME) -> None:
        self._stream = stream
        self._name = name

    @property
    def wrapped(self) -> TextIO | None:
        return self._stream

    def _fail(self, exc: OSError) -> StdoutError:
        return StdoutError(cannot_write(self._name, exc))

    def write(self, text: str) -> int:
        if self._stream is None:
            raise self._fail(OSError(errno.EBADF, os.strerror(errno.EBADF)))
        try:
            return self._stream.write(text)
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._fail(exc) from None

    def writelines(self, lines) -> None:
        for line in lines:
            self.write(line)

    def flush(self) -> None:
        if self._stream is None:
            return
        try:
            self._stream.flush()
        except BrokenPipeError:
            raise
        except OSError as exc:
            raise self._fail(exc) from None

    def isatty(self) -> bool:
        return self._stream is not None and self._stream.isatty()

    def __getattr__(self, name: str):
        if self._stream is None:
            raise AttributeError(name)
        return getattr(self._stream, name)


def to_stdout(output: str | None) -> bool:
    """True when ``-o`` was not given or was ``-``: the result goes to
    standard output."""
    return output is None or output == STDOUT_ARG


def write_result(output: str | None, text: str | bytes, stdout: TextIO) -> None:
    """A command's whole result to where ``-o`` says: ``stdout`` (a
    :class:`GuardedStream`) when it was not given or is ``-``, else the file
    ``output`` (:func:`write_output`).  ``bytes`` are UTF-8 text."""
    if output is None or output == STDOUT_ARG:
        stdout.write(text.decode("utf-8") if isinstance(text, bytes) else text)
        stdout.flush()
    else:
        write_output(output, text)


def _replace_opened(path: str, opened: os.stat_result, data: bytes, created: bool) -> None:
    """Replace the regular file ``path`` was opened as (``opened``: its fstat)
    with ``data``, unless ``path`` now names another file.  ``created``: it
    was created empty by the opening, and goes again if the write fails."""
    real = os.path.realpath(path)
    try:
        now = os.lstat(real)
    except OSError:
        now = None
    if now is None or (now.st_dev, now.st_ino) != (opened.st_dev, opened.st_ino):
        # Not the file opened (a link changed meanwhile): touch nothing.
        raise OutputError(f"cannot write to {_name(path)}: it changed while being opened")
    try:
        _replace(real, data, opened, path)
    except BaseException:
        if created:  # the empty file made above: take it away again
            try:
                os.unlink(real)
            except OSError:
                pass
        raise


def write_output(path: str, text: str | bytes) -> None:
    """Write ``text`` (UTF-8) to ``path`` as ``-o PATH`` promises (module doc).

    Raises :class:`OutputError` with one line naming ``path``.
    """
    if not path:
        raise OutputError("cannot write to an empty file name")
    data = text.encode("utf-8") if isinstance(text, str) else text
    created = False
    try:
        fd = os.open(path, os.O_WRONLY | os.O_NOCTTY | os.O_CLOEXEC)
    except FileNotFoundError:
        if path.endswith("/"):
            # 'name/' names a directory; '>' refuses it rather than make a file.
            raise OutputError(f"cannot write to {_name(path)}: "
                              f"{os.strerror(errno.EISDIR)}") from None
        if not os.path.islink(path):
            # A new path: nothing to open yet; the renamed file appears whole.
            _replace(os.path.realpath(path), data, None, path)
            return
        # A link to a file that does not exist: '>' would create the file
        # the link names, under the kernel's rules for following links (a
        # link planted in a sticky directory is refused); so does this.
        try:
            fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_NOCTTY | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise OutputError(cannot_write(_name(path), exc)) from None
        created = True
    except OSError as exc:
        raise OutputError(cannot_write(_name(path), exc)) from None
    try:
        st = os.fstat(fd)
    except OSError as exc:
        os.close(fd)
        raise OutputError(cannot_write(_name(path), exc)) from None
    if stat.S_ISREG(st.st_mode):
        os.close(fd)
        _replace_opened(path, st, data, created)
        return
    try:
        _write_all(fd, data)
    except OSError as exc:
        raise OutputError(cannot_write(_name(path), exc)) from None
    finally:
        try:
            os.close(fd)
        except OSError:
            pass


def _write_all(fd: int, data: bytes) -> None:
    view = memoryview(data)
    while view:
        n = os.write(fd, view)
        view = view[n:]


def _replace(real: str, data: bytes, old: os.stat_result | None, shown: str) -> None:
    """Write ``data`` to a temporary file beside ``real`` and rename it over."""
    import tempfile

    directory = os.path.dirname(real) or "."
    try:
        fd, tmp = tempfile.mkstemp(prefix=".zxmem-", suffix=".tmp", dir=directory)
    except OSError as exc:
        if old is None:  # a new file: the directory is all there is to name
            raise OutputError(cannot_write(_name(shown), exc)) from None
        # The file itself may be writable: say why it is not written anyway.
        raise OutputError(
            f"cannot write to {_name(shown)}: no new file can be made beside it to "
            f"replace it ({exc.strerror})"
        ) from None
    try:
        try:
            _write_all(fd, data)
            if old is not None:
                try:
                    os.fchown(fd, old.st_uid, old.st_gid)
                except OSError:
                    pass  # not allowed: the file becomes ours, as an editor's would
                os.fchmod(fd, stat.S_IMODE(old.st_mode) & 0o777)
            else:
                os.fchmod(fd, 0o644 & ~umask())
            os.fsync(fd)
        finally:
            os.close(fd)
        os.replace(tmp, real)
    except BaseException as exc:
        try:
            os.unlink(tmp)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(cannot_write(_name(shown), exc)) from None
        raise
    _sync_directory(directory)


def _sync_directory(directory: str) -> None:
    """Make the rename durable; a file system that cannot is not an error."""
    try:
        dfd = os.open(directory, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError:
        return
    try:
        os.fsync(dfd)
    except OSError:
        pass
    finally:
        os.close(dfd)


def umask() -> int:
    """The process's umask (read by setting it and setting it back)."""
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def write_temp(text: str, prefix: str, suffix: str) -> str:
    """Write ``text`` to a new temporary file (0600) and return its path."""
    import tempfile

    try:
        fd, path = tempfile.mkstemp(prefix=prefix, suffix=suffix)
    except OSError as exc:
        raise OutputError(cannot_write("a temporary file", exc)) from None
    try:
        try:
            _write_all(fd, text.encode("utf-8"))
        finally:
            os.close(fd)
    except BaseException as exc:
        try:
            os.unlink(path)
        except OSError:
            pass
        if isinstance(exc, OSError):
            raise OutputError(cannot_write(_name(path), exc)) from None
        raise
    return path
