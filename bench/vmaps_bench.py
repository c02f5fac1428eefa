"""Benchmark ``zxmem vmaps`` on one process with many mappings.

Usage::

    python bench/vmaps_bench.py [--mappings N] [--rounds R] [--touch]

Starts a process that maps N pages in one anonymous mapping and
``mprotect``\\s every other page read-only, so the kernel cannot merge the
VMAs: about N mappings (30,000 by default).  With ``--touch`` every page is
written first, so each VMA also has a resident page for smaps to count.

Then, alternating in each of R rounds (after one warm-up round that is not
counted), it times:

* ``cat /proc/PID/smaps > /dev/null`` — the kernel's own cost (the floor);
* ``cat /proc/PID/maps > /dev/null`` — for reference;
* ``zxmem vmaps PID`` (the command next to this interpreter, output to
  /dev/null), and ``zxmem vmaps --extra PID``;
* ``python -c pass`` — the interpreter's own start-up, for reference.

It prints, for each, the median wall time, the median of its time divided by
the floor's in the same round, and the largest peak RSS (GNU time ``%M``).
The target (issue "Address spaces and memory objects"): ``zxmem vmaps`` ≤ 3.0×
the floor with a peak RSS ≤ 40 MB.  The workload is killed at the end.
"""

from __future__ import annotations

import argparse
import os
import shutil
import signal
import statistics
import subprocess
import sys

BIN = os.path.dirname(sys.executable)
TIME = "/usr/bin/time"

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import ps_bench  # noqa: E402  (GNU-time runner shared by the benches)

WORKLOAD = r"""
import ctypes, os, sys, time
n = int(sys.argv[1]); touch = sys.argv[2] == "1"
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                      ctypes.c_int, ctypes.c_long]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
page = 4096
base = libc.mmap(None, n * page, 3, 0x22, -1, 0)  # PROT_READ|WRITE, PRIVATE|ANON
if touch:
    ctypes.memset(base, 1, n * page)
for i in range(0, n, 2):
    if libc.mprotect(base + i * page, page, 1) != 0:
        sys.exit("mprotect failed (vm.max_map_count?)")
sys.stdout.write(f"{os.getpid()}\n"); sys.stdout.flush()
sys.stdin.read()  # until the bench closes the pipe
"""


def _zxmem() -> list[str]:
    local = os.path.join(BIN, "zxmem")
    if os.access(local, os.X_OK):
        return [local]
    found = shutil.which("zxmem")
    return [found] if found else [sys.executable, "-m", "zxmem"]


def run_once(argv: list[str]) -> tuple[float, int, int]:
    """(seconds, peak RSS bytes, exit status) of ``argv`` with output discarded."""
    elapsed, peak, code, _cpu = ps_bench.run_once(argv)
    return elapsed, peak, code


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--mappings", type=int, default=30000)
    ap.add_argument("--rounds", type=int, default=9)
    ap.add_argument("--touch", action="store_true", help="write every page first")
    args = ap.parse_args(argv)
    if not os.access(TIME, os.X_OK):
        print(f"{TIME} (GNU time) is needed for peak RSS", file=sys.stderr)
        return 1

    child = subprocess.Popen(
        [sys.executable, "-c", WORKLOAD, str(args.mappings), "1" if args.touch else "0"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        line = child.stdout.readline() if child.stdout else b""
        if not line:
            print("workload failed to start", file=sys.stderr)
            return 1
        pid = int(line)
        with open(f"/proc/{pid}/maps", "rb") as f:
            n_maps = f.read().count(b"\n")
        zx = _zxmem()
        tools = {
            "cat smaps (floor)": ["cat", f"/proc/{pid}/smaps"],
            "cat maps": ["cat", f"/proc/{pid}/maps"],
            "zxmem vmaps": [*zx, "vmaps", str(pid)],
            "zxmem vmaps --extra": [*zx, "vmaps", "--extra", str(pid)],
            "python -c pass": [sys.executable, "-c", "pass"],
        }
        times: dict[str, list[float]] = {k: [] for k in tools}
        ratios: dict[str, list[float]] = {k: [] for k in tools}
        rss: dict[str, int] = dict.fromkeys(tools, 0)
        names = list(tools)
        for r in range(args.rounds + 1):
            order = names[r % len(names):] + names[: r % len(names)]
            got = {}
            for name in order:
                t, peak, code = run_once(tools[name])
                if code != 0:
                    print(f"{name}: exit status {code}", file=sys.stderr)
                got[name] = (t, peak)
            if r == 0:
                continue  # warm-up
            floor = got["cat smaps (floor)"][0]
            for name, (t, peak) in got.items():
                times[name].append(t)
                ratios[name].append(t / floor)
                rss[name] = max(rss[name], peak)
        print(f"process {pid}: {n_maps} mappings; {args.rounds} rounds; "
              f"medians (ratio = time / cat smaps in the same round)")
        print(f"{'command':<22} {'seconds':>8} {'ratio':>6} {'peak RSS':>10}")
        for name in names:
            print(
                f"{name:<22} {statistics.median(times[name]):8.3f} "
                f"{statistics.median(ratios[name]):6.2f} {rss[name] / 1e6:8.1f}MB"
            )
    finally:
        if child.stdin:
            child.stdin.close()
        try:
            child.send_signal(signal.SIGTERM)
        except ProcessLookupError:
            pass
        child.wait()
    return 0


if __name__ == "__main__":
    sys.exit(main())
