"""Workloads of known growth for the ``zxmem growth`` live test.

Run as ``python -I -S growth_workloads.py MODE ARGS``: the program prints
``ready PID``, then shapes its memory over time until its stdin reaches end
of file (the test closed it, or died), and exits.  Sizes in bytes, times in
seconds.

``leak RATE``
    writes RATE bytes of new private anonymous memory per second (pages of
    one large mapping, written as the clock advances): USS grows at RATE.
``memfd-leak RATE``
    writes RATE bytes per second into a memfd named ``zxmem-growth-leak``
    that it never maps: only its descriptor holds it (a hidden object); its
    USS does not grow, the memfd does.
``sawtooth SIZE PERIOD``
    every PERIOD seconds maps SIZE bytes, writes every page, holds them for
    half the period and unmaps them: a garbage collector's sawtooth.
``steady SIZE``
    SIZE bytes of private anonymous memory, written once and held.
"""

from __future__ import annotations

import os
import sys

PAGE = os.sysconf("SC_PAGE_SIZE")
TICK = 0.02


def _eof(timeout: float) -> bool:
    import select

    ready, _, _ = select.select([0], [], [], max(0.0, timeout))
    return bool(ready) and os.read(0, 4096) == b""


def _touch(m, start: int, end: int) -> None:
    for off in range(start - start % PAGE, end, PAGE):
        m[off] = 1


def leak(rate: int) -> None:
    import mmap
    import time

    size = rate * 600  # ten minutes of room
    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    t0 = time.monotonic()
    done = 0
    while not _eof(TICK):
        want = min(size, int(rate * (time.monotonic() - t0)))
        if want > done:
            _touch(m, done, want)
            done = want


def memfd_leak(rate: int) -> None:
    import time

    fd = os.memfd_create("zxmem-growth-leak")
    chunk = b"\x01" * PAGE
    t0 = time.monotonic()
    done = 0
    while not _eof(TICK):
        want = int(rate * (time.monotonic() - t0))
        want -= want % PAGE
        while done < want:
            os.pwrite(fd, chunk, done)
            done += PAGE


def sawtooth(size: int, period: float) -> None:
    import mmap
    import time

    t0 = time.monotonic()
    m = None
    while True:
        phase = (time.monotonic() - t0) % period
        if phase < period / 2 and m is None:
            m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            _touch(m, 0, size)
        elif phase >= period / 2 and m is not None:
            m.close()
            m = None
        if _eof(TICK):
            return


def steady(size: int) -> None:
    import mmap

    m = mmap.mmap(-1, size, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    _touch(m, 0, size)
    while not _eof(1.0):
        pass


def main(argv: list[str]) -> None:
    import gc

    gc.disable()
    mode, args = argv[0], argv[1:]
    sys.stdout.write(f"ready {os.getpid()}\n")
    sys.stdout.flush()
    if mode == "leak":
        leak(int(args[0]))
    elif mode == "memfd-leak":
        memfd_leak(int(args[0]))
    elif mode == "sawtooth":
        sawtooth(int(args[0]), float(args[1]))
    elif mode == "steady":
        steady(int(args[0]))
    else:
        raise SystemExit(f"unknown mode {mode!r}")


if __name__ == "__main__":
    main(sys.argv[1:])
