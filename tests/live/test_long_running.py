"""collect() called again and again in one process, as record, top and the
exporter will: memory stays flat and no process-wide switch is left changed."""

from __future__ import annotations

import os
import subprocess
import sys
import threading
import time

import pytest

# Growth of the collector's RSS allowed over the second half of 1,000
# collections (after 600), and over all of them after the first 100.
# Measured: 0.05-2 MB over the second half; over the whole run a one-time
# step of up to 10 MB when programs with many mappings (a browser under
# test) came and went early on -- the objects tier's peak follows the
# machine, and freed arenas are not always given back.  A leak of even 10 kB
# per collection would add 5 MB over the second half, and one snapshot per
# collection hundreds of MB.
RSS_BOUND_BYTES = 4 << 20
RSS_STEP_BYTES = 24 << 20


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


# Run in a process of its own, as record, top or the exporter would be: the
# test process's heap (hundreds of tests before this one) says nothing.
_COLLECTOR = """
import gc, json, sys
import zxmem

def rss():
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024

totals = zxmem.Plan(status=True)
objects = zxmem.Plan(status=True, kernel=True, objects=True, hidden=True)
interval = sys.getswitchinterval()
marks = {}
for i in range(1100):
    zxmem.collect(objects if i % 50 == 0 else totals)
    if i in (99, 599, 1099):  # after the warm-up (caches, allocator pools), then twice
        gc.collect()
        marks[i] = rss()
print(json.dumps({"marks": marks, "gc": gc.isenabled(),
                  "interval": sys.getswitchinterval() == interval}))
"""


@pytest.mark.live
def test_a_thousand_collections_stay_flat():
    import json

    with _Churn() as churn:
        r = subprocess.run([sys.executable, "-c", _COLLECTOR], capture_output=True,
                           text=True, timeout=600)
    assert r.returncode == 0, r.stderr
    out = json.loads(r.stdout)
    assert churn.started > 200, "the workload did not churn"
    assert out["gc"] and out["interval"]
    marks = {int(k): v for k, v in out["marks"].items()}
    late = marks[1099] - marks[599]
    assert late <= RSS_BOUND_BYTES, (
        f"RSS grew {late / 1024:.0f} KiB over the last 500 collections ({marks})")
    assert marks[1099] - marks[99] <= RSS_STEP_BYTES, marks
