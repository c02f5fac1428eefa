"""``zxmem top`` at 1,000 workload processes: CPU per refresh against one
``zxmem ps`` run, and how soon the screen redraws after a key press.

* ``zxmem ps``: the whole command (start-up, collection, output), run with
  GNU time as ``bench/ps_bench.py`` does; CPU = user + system.
* a refresh of top: the Textual app, headless (Textual's test driver, the
  same widgets and rendering, no terminal), refreshing from the live system
  N times in a row (each started when the last is drawn); CPU of the
  process (every thread: the collection runs in a worker thread) over the
  N refreshes after the first two, divided by N.
* a key press: ``zxmem top`` on a real terminal (a pty, pexpect) at 200x50:
  the time from writing a key (n, p, d, t, j...) to the first byte of the
  screen that shows its effect (the header's "sort name", "tree"...), while
  top keeps refreshing every 2 s in the background.

Run: ``python bench/top_bench.py [--procs 1000] [--refreshes 10] [--rounds 5]``.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ps_bench  # noqa: E402

_HEADLESS = r"""
import asyncio, json, resource, sys, time
from zxmem.tui.sources import LiveSource
from zxmem.tui.app import TopApp
from zxmem.views.top import TopOptions

N = int(sys.argv[1])

def cpu():
    r = resource.getrusage(resource.RUSAGE_SELF)
    return r.ru_utime + r.ru_stime

# No timer: each refresh is started when the last one is drawn, so the
# figure is a refresh's own cost (read, model, drawing), not a timer's.
app = TopApp(LiveSource("/proc"), TopOptions(), auto_refresh=False)

async def refresh(pilot):
    app.refresh_live()
    await app.workers.wait_for_complete()
    await pilot.pause()

async def main():
    async with app.run_test(size=(200, 60)) as pilot:
        await app.workers.wait_for_complete()
        await pilot.pause()
        await refresh(pilot)
        c0, w0, k0 = cpu(), time.perf_counter(), app.redraws
        for _ in range(N):
            await refresh(pilot)
        c1, w1 = cpu(), time.perf_counter()
        assert app.redraws == k0 + N, (app.redraws, k0)
        rows = len(app.shown)
    print(json.dumps({"cpu": (c1 - c0) / N, "wall": (w1 - w0) / N, "rows": rows}))

asyncio.run(main())
"""


def top_refresh_cpu(zxmem_python: str, refreshes: int) -> dict:
    r = subprocess.run([zxmem_python, "-c", _HEADLESS, str(refreshes)], capture_output=True,
                       text=True, timeout=1800)
    if r.returncode != 0:
        raise RuntimeError(r.stderr[-2000:])
    return json.loads(r.stdout.strip().splitlines()[-1])


# Each key and the header's state line once it took effect.
KEYS = [("n", r"sort name, flat(?!, jobs)"), ("p", r"sort pss, flat(?!, jobs)"),
        ("d", r"sort delta, flat(?!, jobs)"), ("t", r"sort delta, tree"),
        ("t", r"sort delta, flat(?!, jobs)"), ("j", r"sort delta, flat, jobs"),
        ("u", r"sort uss, flat, jobs"), ("j", r"sort uss, flat(?!, jobs)"),
        ("p", r"sort pss, flat(?!, jobs)")]


def key_latency(zxmem: str, rounds: int) -> list[float]:
    import re

    import pexpect  # type: ignore[import-untyped]

    escapes = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                         rb"|\x1b[@-Z\\-_]")
    env = dict(os.environ, TERM="xterm-256color")
    child = pexpect.spawn(zxmem, ["top", "-d", "2"], env=env, dimensions=(50, 200), timeout=120)
    out: list[float] = []
    try:
        seen = b""
        while b"sort pss" not in escapes.sub(b"", seen):
            seen += child.read_nonblocking(65536, timeout=60)
        time.sleep(3)  # past the first refreshes
        for _ in range(rounds):
            for key, effect in KEYS:
                try:  # drain what is pending
                    while True:
                        child.read_nonblocking(65536, timeout=0.05)
                except pexpect.TIMEOUT:
                    pass
                got = b""
                t0 = time.perf_counter()
                child.send(key)
                while not re.search(effect.encode(), escapes.sub(b"", got)):
                    got += child.read_nonblocking(65536, timeout=10)
                out.append(time.perf_counter() - t0)
                time.sleep(0.3)
        child.send("q")
        child.expect(pexpect.EOF)
    finally:
        child.close(force=True)
    return out


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--refreshes", type=int, default=10, help="timed refreshes of top (10)")
    ap.add_argument("--rounds", type=int, default=5, help="zxmem ps runs, key rounds (5)")
    args = ap.parse_args(argv)

    zxmem = os.path.join(os.path.dirname(sys.executable), "zxmem")
    for line in ps_bench.machine_facts():
        print(line)
    wl = ps_bench.start_workload(args.procs)
    try:
        pids = ps_bench.wait_ready(wl)
        print(f"workload: {len(pids)} processes; /proc holds "
              f"{sum(1 for e in os.listdir('/proc') if e.isdigit())}")
        ps_cpu = []
        for _ in range(args.rounds):
            _wall, _rss, code, cpu = ps_bench.run_once([zxmem, "ps"])
            if code != 0:
                raise RuntimeError(f"zxmem ps exited {code}")
            ps_cpu.append(cpu)
        load_ps = ps_bench.load_average()
        top = top_refresh_cpu(sys.executable, args.refreshes)
        load_top = ps_bench.load_average()
        keys = key_latency(zxmem, args.rounds)
        load_keys = ps_bench.load_average()
    finally:
        ps_bench.stop_workload(wl)
    ps_med = statistics.median(ps_cpu)
    print(f"zxmem ps: CPU {ps_med:.3f} s (median of {len(ps_cpu)}: "
          f"{', '.join(f'{c:.3f}' for c in ps_cpu)}); load {load_ps}")
    print(f"top refresh: CPU {top['cpu']:.3f} s, wall {top['wall']:.3f} s "
          f"({args.refreshes} refreshes, {top['rows']} rows); load {load_top}")
    print(f"top refresh / ps: {top['cpu'] / ps_med:.2f}x (goal <= 1.0x)")
    keys_ms = sorted(k * 1000 for k in keys)
    print(f"key press -> redraw: median {statistics.median(keys_ms):.0f} ms, "
          f"p90 {keys_ms[int(len(keys_ms) * 0.9) - 1]:.0f} ms, max {keys_ms[-1]:.0f} ms "
          f"({len(keys_ms)} presses; goal <= 100 ms); load {load_keys}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
