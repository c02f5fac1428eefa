"""A cheap crowd of processes for the ``zxmem ps`` benchmark.

One Python parent sets up the shared memory, then forks N children (no new
interpreters).  Each child ends up with about 35 MiB resident (Rss), mostly shared
so that a thousand of them fit in a few GiB of real memory:

=====================  =========  ==========================================
kind                   per child  how
=====================  =========  ==========================================
private anonymous      2 MiB      written by the child after fork
copy-on-write shared   6 MiB      written by the parent before fork, only
                                  read by the children
file-backed shared     8 MiB      one file mapped ``MAP_SHARED`` by everyone
memfd shared           6 MiB      one memfd mapped ``MAP_SHARED``
interpreter            ~13 MiB    the parent's Python heap and libraries,
                                  shared after fork
=====================  =========  ==========================================

Every child touches every page it maps, so ``smaps_rollup`` has resident
page-table entries to walk (its cost grows with mapped resident pages, which
is what the benchmark exercises).

Run: ``python bench/workload.py --procs N``.  The parent prints ``ready``
and the child PIDs on one line once every child has touched its memory, then
waits.  Clean-up does not depend on anyone remembering PIDs: each child asks
the kernel for SIGKILL when the parent dies (``PR_SET_PDEATHSIG``) and also
exits when the parent's end of a pipe closes; the parent exits on SIGTERM,
SIGINT, or when its stdin closes.
"""

from __future__ import annotations

import argparse
import ctypes
import gc
import mmap
import os
import signal
import sys
import tempfile

MIB = 1 << 20
PAGE = mmap.PAGESIZE

PRIVATE_BYTES = 2 * MIB
COW_BYTES = 6 * MIB
FILE_BYTES = 8 * MIB
MEMFD_BYTES = 6 * MIB

PR_SET_PDEATHSIG = 1  # include/uapi/linux/prctl.h


def _fill(write, size: int, byte: bytes) -> None:
    """Write ``size`` bytes in 1 MiB pieces: one big temporary would stay in
    the malloc heap and add to every child's resident size."""
    piece = byte * MIB
    for _ in range(size // MIB):
        write(piece)


def _touch(buf: mmap.mmap | bytearray) -> int:
    """Read one byte of every page (faults the page into this process)."""
    return len(memoryview(buf)[::PAGE].tobytes())


def _shared_file(size: int) -> mmap.mmap:
    """A disk file mapped shared; unlinked at once so nothing is left behind."""
    fd, path = tempfile.mkstemp(prefix="zxmem-bench-", dir="/var/tmp")
    try:
        os.unlink(path)
        _fill(lambda b: os.write(fd, b), size, b"\x5a")
        return mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ)
    finally:
        os.close(fd)


def _memfd(size: int) -> mmap.mmap:
    fd = os.memfd_create("zxmem-bench", 0)
    try:
        os.ftruncate(fd, size)
        m = mmap.mmap(fd, size, mmap.MAP_SHARED, mmap.PROT_READ | mmap.PROT_WRITE)
    finally:
        os.close(fd)
    _fill(m.write, size, b"\xa5")  # allocate every page once, in the parent
    return m


def _child(alive_r: int, ready_w: int, cow: mmap.mmap, shared: list) -> None:
    """Runs in a forked child; never returns."""
    try:
        libc = ctypes.CDLL(None, use_errno=True)
        libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
        if os.getppid() == 1:  # the parent died before prctl took effect
            os._exit(0)
        signal.signal(signal.SIGINT, signal.SIG_DFL)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        private = bytearray(b"\x01") * PRIVATE_BYTES  # written, so resident
        _touch(cow)
        for m in shared:
            _touch(m)
        os.write(ready_w, b"r")
        os.close(ready_w)
        os.read(alive_r, 1)  # returns (EOF) when the parent is gone
        del private
    finally:
        os._exit(0)


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=1000, help="children to fork (default 1000)")
    args = ap.parse_args(argv)

    # The copy-on-write part: anonymous private memory written before fork.
    cow = mmap.mmap(-1, COW_BYTES, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _fill(cow.write, COW_BYTES, b"\x3c")
    shared = [_shared_file(FILE_BYTES), _memfd(MEMFD_BYTES)]
    ctypes.CDLL(None)  # load before fork, so children share it

    alive_r, alive_w = os.pipe()
    ready_r, ready_w = os.pipe()
    pids: list[int] = []
    stop = False

    def _stop(signum, frame):  # noqa: ARG001 - signal handler signature
        nonlocal stop
        stop = True
        raise KeyboardInterrupt

    signal.signal(signal.SIGTERM, _stop)
    signal.signal(signal.SIGINT, _stop)
    # Keep the interpreter's pages shared after fork: no GC passes in children
    # touching every object header.
    gc.freeze()
    gc.disable()
    try:
        for _ in range(args.procs):
            pid = os.fork()
            if pid == 0:
                os.close(alive_w)
                os.close(ready_r)
                _child(alive_r, ready_w, cow, shared)
            pids.append(pid)
        os.close(ready_w)
        got = 0
        while got < len(pids):
            chunk = os.read(ready_r, 4096)
            if not chunk:
                break
            got += len(chunk)
        sys.stdout.write("ready " + " ".join(map(str, pids)) + "\n")
        sys.stdout.flush()
        # Wait until told to stop: stdin closing is the bench going away.
        while not stop:
            if not sys.stdin.buffer.read(4096):
                break
    except KeyboardInterrupt:
        pass
    finally:
        os.close(alive_w)  # children see EOF and leave
        for pid in pids:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        for pid in pids:
            try:
                os.waitpid(pid, 0)
            except ChildProcessError:
                pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
