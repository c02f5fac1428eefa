"""Workloads with exactly known memory shapes, and the test side that runs them.

Run as a program (``python -I -S workloads.py MODE ARGS``) this file *is* the
workload; imported by the live tests it starts and stops such programs.

Every workload speaks one protocol over its stdin/stdout pipes, so the tests
can put it into a cgroup before it allocates anything and know when its
memory is in place:

1. it prints ``pid PID`` and waits for a line on stdin;
2. the test moves PID into a cgroup (if any) and writes ``go``;
3. it builds its shape, prints ``ready PID [CHILD_PID]`` and blocks reading
   stdin; end of file (the test closed the pipe, or the test process died)
   makes it reap its children and exit.  So a workload never outlives the
   test run, even when pytest itself is killed.

Modes (sizes in bytes):

``private SIZE``
    SIZE bytes of private anonymous memory, every page written: PSS and
    PRIVATE grow by SIZE, SHARED not at all.  ``private PAGE`` (one page,
    so the same code runs) is the idle baseline of the interpreter.
``cow SIZE``
    the parent writes SIZE bytes of private anonymous memory, then forks a
    child that only reads them: the pages are mapped twice, so each process
    has SIZE/2 of PSS and SIZE of SHARED for them, and no PRIVATE.
    ``cow PAGE`` is the baseline of such a forked pair.
``memfd FD SIZE``
    maps the inherited memfd FD shared and reads all its SIZE bytes; two
    such processes on one memfd each get SIZE/2 of PSS and SIZE of SHARED.
    One reader of a one-page memfd is its baseline.
``charge ANON CACHE_FILE MAP_FILE THREADS``
    (cgroup charge tests) ANON bytes of private anonymous memory; every page
    of CACHE_FILE read with ``pread`` into one small buffer (page cache
    charged to the reader's cgroup when no one cached it before, mapped by
    no one); every page of MAP_FILE mapped shared and read (its PSS counts
    them wherever they are charged); THREADS extra threads blocked on a lock
    (kernel stacks: kernel memory).  ``-`` skips a file.
``zombie``
    forks a child that exits at once and is not reaped until the end.
``hold [--comm NAME] [ARG...]``
    nothing but the interpreter; ``--comm`` sets the task name with
    ``prctl(PR_SET_NAME)`` (raw bytes, for hostile-name tests).

The program side imports only ``os``, ``sys``, ``gc`` and ``mmap``, so a shape
and its baseline run the same interpreter code; the test side's imports are
loaded inside its functions for the same reason.
"""

from __future__ import annotations

import os
import sys

MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
SCRIPT = os.path.abspath(__file__)

# What the tests wait for a workload to report, at most (a deadline for a
# broken workload, never a timing assertion).
HANDSHAKE_SECONDS = 60.0


# --------------------------------------------------------------------------
# The program side.


def _say(*words: object) -> None:
    os.write(1, (" ".join(str(w) for w in words) + "\n").encode())


def _wait_line() -> None:
    buf = b""
    while not buf.endswith(b"\n"):
        chunk = os.read(0, 1)
        if not chunk:
            raise SystemExit(0)  # the test went away before saying go
        buf += chunk


def _wait_eof() -> None:
    while os.read(0, 4096):
        pass


def _write_pages(m, size: int) -> None:
    # One byte per page is enough to make the kernel allocate the page; a
    # non-zero value keeps KSM-like merging and the zero page out of it.
    for off in range(0, size, PAGE):
        m[off] = 0x5A


def _read_pages(m) -> None:
    # find() scans every byte in C: each page is read, none is written, and
    # no Python object per page is created.
    m.find(b"\x01")


def _anonymous(size: int):
    import mmap

    # mmap(-1, ...) defaults to MAP_SHARED (that would be shmem); the shapes
    # need private anonymous memory.
    return mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE)


def _mode_private(size: int) -> None:
    m = _anonymous(size) if size else None
    if m is not None:
        _write_pages(m, size)
    _say("ready", os.getpid())
    _wait_eof()


def _mode_charge(size: int, cache_file: str, map_file: str, threads: int) -> None:
    import mmap

    m = _anonymous(size) if size else None
    if m is not None:
        _write_pages(m, size)
    if cache_file != "-":
        fd = os.open(cache_file, os.O_RDONLY)
        buf = bytearray(PAGE)
        offset = 0
        while os.preadv(fd, [buf], offset) > 0:
            offset += PAGE
        os.close(fd)
    mapped = None
    if map_file != "-":
        fd = os.open(map_file, os.O_RDONLY)
        mapped = mmap.mmap(fd, 0, mmap.MAP_SHARED, mmap.PROT_READ)
        os.close(fd)
        _read_pages(mapped)
    if threads:
        import _thread

        lock = _thread.allocate_lock()
        lock.acquire()
        for _ in range(threads):
            _thread.start_new_thread(lock.acquire, ())
    _say("ready", os.getpid())
    _wait_eof()


def _mode_cow(size: int) -> None:
    m = _anonymous(size) if size else None
    if m is not None:
        _write_pages(m, size)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(r)
        if m is not None:
            _read_pages(m)
        os.write(w, b"x")
        os.close(w)
        _wait_eof()
        os._exit(0)
    os.close(w)
    os.read(r, 1)
    os.close(r)
    _say("ready", os.getpid(), child)
    _wait_eof()
    os.waitpid(child, 0)


def _mode_memfd(fd: int, size: int) -> None:
    import mmap

    m = mmap.mmap(fd, size, flags=mmap.MAP_SHARED, prot=mmap.PROT_READ)
    _read_pages(m)
    _say("ready", os.getpid())
    _wait_eof()


def _mode_zombie() -> None:
    import time

    child = os.fork()
    if child == 0:
        os._exit(0)
    # Report only once the kernel shows the child as a zombie.
    while True:
        try:
            with open(f"/proc/{child}/stat", "rb") as f:
                stat = f.read()
        except OSError:
            break
        if stat[stat.rfind(b")") + 2 :][:1] == b"Z":
            break
        time.sleep(0.001)
    _say("ready", os.getpid(), child)
    _wait_eof()
    os.waitpid(child, 0)


def _mode_hold(args: list[str]) -> None:
    if len(args) >= 2 and args[0] == "--comm":
        import ctypes

        pr_set_name = 15  # include/uapi/linux/prctl.h
        libc = ctypes.CDLL(None, use_errno=True)
        if libc.prctl(pr_set_name, ctypes.c_char_p(os.fsencode(args[1])), 0, 0, 0) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_NAME)")
    _say("ready", os.getpid())
    _wait_eof()


def program(argv: list[str]) -> None:
    """The workload program: ``argv`` is ``[MODE, ARG...]``."""
    import gc

    # No collection in the middle of a measurement, and none in a forked
    # child (it would write to pages shared with the parent).
    gc.disable()
    mode, args = argv[0], argv[1:]
    _say("pid", os.getpid())
    _wait_line()
    if mode == "private":
        _mode_private(int(args[0]))
    elif mode == "cow":
        _mode_cow(int(args[0]))
    elif mode == "charge":
        _mode_charge(int(args[0]), args[1], args[2], int(args[3]))
    elif mode == "memfd":
        _mode_memfd(int(args[0]), int(args[1]))
    elif mode == "zombie":
        _mode_zombie()
    elif mode == "hold":
        _mode_hold(args)
    else:
        raise SystemExit(f"unknown mode {mode!r}")


# --------------------------------------------------------------------------
# The test side.


class Workload:
    """One started workload program: its Popen, and the PIDs it reported."""

    def __init__(self, proc, argv: list, stderr_file) -> None:
        self.proc = proc
        self.argv = argv
        self.pids: list[int] = []
        self._stderr = stderr_file

    @property
    def pid(self) -> int:
        return self.pids[0]

    def stderr_text(self) -> str:
        try:
            self._stderr.seek(0)
            return self._stderr.read().decode("utf-8", "replace")
        except (OSError, ValueError):
            return ""

    def read_line(self) -> str:
        """One line from the workload, or an AssertionError naming why not."""
        import select
        import time

        fd = self.proc.stdout.fileno()
        deadline = time.monotonic() + HANDSHAKE_SECONDS
        buf = b""
        while not buf.endswith(b"\n"):
            left = deadline - time.monotonic()
            ready, _, _ = select.select([fd], [], [], max(0.0, left))
            if not ready:
                raise AssertionError(f"workload {self.argv[:6]!r} did not answer")
            chunk = os.read(fd, 1)
            if not chunk:
                self.proc.wait()
                raise AssertionError(
                    f"workload {self.argv[:6]!r} exited {self.proc.returncode}: "
                    f"{self.stderr_text()[-2000:]}"
                )
            buf += chunk
        return buf.decode()

    def stop(self) -> None:
        """End the workload: EOF first (it reaps its children), then SIGKILL."""
        import signal
        import subprocess

        try:
            if self.proc.stdin and not self.proc.stdin.closed:
                self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # The children first: once their parent is gone they could be
            # reaped by init and their PIDs reused.
            for pid in reversed(self.pids[1:]):
                try:
                    os.kill(pid, signal.SIGKILL)
                except OSError:
                    pass
            self.proc.kill()
            self.proc.wait()
        for f in (self.proc.stdout, self._stderr):
            try:
                f.close()
            except (OSError, AttributeError):
                pass


class Launcher:
    """Starts workloads and stops every one of them (by PID) in ``close``."""

    def __init__(self) -> None:
        self.workloads: list[Workload] = []

    def start(
        self,
        mode: str,
        *args: str | bytes,
        argv0: str | bytes | None = None,
        python: str | None = None,
        cgroup=None,
        as_nobody: bool = False,
        pass_fds: tuple[int, ...] = (),
        env: dict[str, str] | None = None,
    ) -> Workload:
        """Start ``workloads.py MODE ARGS`` and wait until its shape is in place.

        ``argv0`` replaces the program name (as ``exec -a`` does); ``python``
        picks the interpreter; ``cgroup`` (a ``harness.TestCgroup``) gets the
        process before it allocates; ``as_nobody`` runs it as UID/GID 65534.
        """
        import subprocess
        import tempfile

        python = python or sys.executable
        script = nobody_script() if as_nobody else SCRIPT
        argv: list = [argv0 or python, "-I", "-S", script, mode, *args]
        executable = python
        if as_nobody:
            argv = [*nobody_prefix(), python, *argv[1:]]
            executable = argv[0]
            if argv0 is not None:
                raise ValueError("argv0 and as_nobody do not combine")
        stderr_file = tempfile.TemporaryFile()
        proc = subprocess.Popen(
            argv,
            executable=executable,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=stderr_file,
            bufsize=0,
            pass_fds=pass_fds,
            env=env,
        )
        w = Workload(proc, argv, stderr_file)
        self.workloads.append(w)  # before the handshake: close() must see it
        words = w.read_line().split()
        assert words[0] == "pid", words
        pid = int(words[1])
        if cgroup is not None:
            cgroup.add(pid)
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        words = w.read_line().split()
        assert words[0] == "ready", words
        w.pids = [int(x) for x in words[1:]]
        assert w.pids[0] == pid
        return w

    def close(self) -> None:
        errors = []
        for w in reversed(self.workloads):
            try:
                w.stop()
            except Exception as exc:  # keep stopping the others
                errors.append(exc)
        self.workloads.clear()
        if errors:
            raise errors[0]

    def __enter__(self) -> Launcher:
        return self

    def __exit__(self, *exc) -> None:
        self.close()


_NOBODY_SCRIPT: list[str] = []


def nobody_script() -> str:
    """A copy of this script the nobody user can read.

    The checkout may sit under a directory only root may enter (``/root``,
    CI's 0700 clone); the copy lives in a 0755 temporary directory.
    """
    if not _NOBODY_SCRIPT:
        import atexit
        import shutil
        import tempfile

        top = tempfile.mkdtemp(prefix="zxmem-workload-")
        atexit.register(shutil.rmtree, top, True)
        os.chmod(top, 0o755)
        copy = os.path.join(top, os.path.basename(SCRIPT))
        shutil.copyfile(SCRIPT, copy)
        os.chmod(copy, 0o644)
        _NOBODY_SCRIPT.append(copy)
    return _NOBODY_SCRIPT[0]


def nobody_prefix() -> list[str]:
    """``setpriv`` arguments that run a command as nobody (UID/GID 65534)."""
    return ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups"]


# --------------------------------------------------------------------------
# The kernel's own numbers, read directly (the ground truth for zxmem).


def kernel_rollup(pid: int) -> dict[str, int] | None:
    """``/proc/PID/smaps_rollup`` as ``{field: bytes}``; None if unreadable.

    Format: ``Documentation/filesystems/proc.rst`` ("smaps_rollup"); every
    value line is ``Key:  N kB``.
    """
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            data = f.read()
    except OSError:
        return None
    out: dict[str, int] = {}
    for line in data.decode("ascii", "replace").splitlines()[1:]:
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            out[parts[0][:-1]] = int(parts[1]) * 1024
    return out


def kernel_counts(pid: int) -> tuple[int, int, int] | None:
    """(PSS, PRIVATE, SHARED) in bytes, by the definitions in DESIGN.md."""
    r = kernel_rollup(pid)
    if r is None:
        return None
    g = r.get
    return (
        g("Pss", 0) + g("Private_Hugetlb", 0),
        g("Private_Clean", 0) + g("Private_Dirty", 0) + g("Private_Hugetlb", 0),
        g("Shared_Clean", 0) + g("Shared_Dirty", 0) + g("Shared_Hugetlb", 0),
    )


def kernel_stat(pid: int) -> tuple[bytes, str, int] | None:
    """(comm, state letter, flags) from ``/proc/PID/stat``; None if gone."""
    try:
        with open(f"/proc/{pid}/stat", "rb") as f:
            data = f.read()
    except OSError:
        return None
    close = data.rfind(b")")
    comm = data[data.find(b"(") + 1 : close]
    rest = data[close + 2 :].split()
    return comm, rest[0].decode(), int(rest[6])


def kernel_cmdline(pid: int) -> list[bytes] | None:
    try:
        with open(f"/proc/{pid}/cmdline", "rb") as f:
            data = f.read()
    except OSError:
        return None
    if not data:
        return []
    return data.rstrip(b"\0").split(b"\0")


def decoded(raw: bytes) -> str:
    """How a name from the kernel reads once decoded (invalid bytes as \\xNN)."""
    return raw.decode("utf-8", "backslashreplace")


if __name__ == "__main__":
    program(sys.argv[1:])
