"""collect() called again and again in one process, as record, top and the
exporter will: memory stays flat and no process-wide switch is left changed."""

from __future__ import annotations

import gc
import os
import subprocess
import sys
import threading
import time

import pytest

import zxmem

# Growth of this process's RSS allowed between the end of the warm-up and
# the last collection (measured: see the test's assertion message).
RSS_BOUND_BYTES = 4 << 20


def _rss_bytes() -> int:
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024
    raise AssertionError("no VmRSS")


class _Churn:
    """Starts short-lived processes with ever new names and command lines,
    some mapping a new memfd each, until stopped."""

    CODE = ("import mmap, os, sys, time\n"
            "fd = os.memfd_create(sys.argv[1]); os.ftruncate(fd, 65536)\n"
            "m = mmap.mmap(fd, 65536); m[0] = 1; time.sleep(0.3)\n")

    def __init__(self) -> None:
        self.stop = threading.Event()
        self.started = 0
        self.thread = threading.Thread(target=self.run, daemon=True)

    def run(self) -> None:
        live: list[subprocess.Popen] = []
        while not self.stop.is_set():
            n = self.started
            argv = ([sys.executable, "-I", "-S", "-c", self.CODE, f"churn-{os.getpid()}-{n}"]
                    if n % 4 == 0 else ["sleep", f"0.{n % 7 + 1}{n}"])
            live.append(subprocess.Popen(argv, stdin=subprocess.DEVNULL))
            self.started += 1
            live = [p for p in live if p.poll() is None]
            time.sleep(0.02)
        for p in live:
            p.kill()
            p.wait()

    def __enter__(self) -> _Churn:
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.stop.set()
        self.thread.join()


@pytest.mark.live
def test_a_thousand_collections_stay_flat():
    totals = zxmem.Plan(status=True)
    objects = zxmem.Plan(status=True, kernel=True, objects=True, hidden=True)
    interval = sys.getswitchinterval()
    with _Churn() as churn:
        for i in range(1100):
            zxmem.collect(objects if i % 50 == 0 else totals)
            if i == 99:  # warm-up done: caches and allocator pools are full
                gc.collect()
                base = _rss_bytes()
        gc.collect()
        end = _rss_bytes()
    assert churn.started > 200, "the workload did not churn"
    assert gc.isenabled() and sys.getswitchinterval() == interval
    growth = end - base
    assert growth <= RSS_BOUND_BYTES, (
        f"RSS grew {growth / 1024:.0f} KiB over 1,000 collections "
        f"({base / 1024:.0f} KiB -> {end / 1024:.0f} KiB)")
