"""How long ``zxmem growth`` takes over a day of 10 s samples of 1,000 processes.

    python bench/growth_bench.py [--procs 1000] [--samples 8640] [--changed 0.2]
                                 [--store PATH] [--runs 3]

The store is synthesised through the store's writer (zxmem.store.writer),
totals tier (the objects of the 20 top suspects are read from objects samples
when a store has them; this one has none, so the figure is the ranking's):
``--procs`` processes in 20 jobs, sampled every 10 s for ``--samples``
samples.  Per sample a share ``--changed`` of the processes change their
memory (a random walk of a few pages) and the rest keep theirs, as on a quiet
machine; 10 processes leak (256 KiB per sample), 10 saw (32 MiB up and
down), 10 fill a cache and stop.  The store is kept at ``--store`` (default
in the temporary directory, named by the parameters) and reused: writing it
takes minutes, reading it is what is measured.

Prints the time of ``load_series`` (SQL), of ``analyse``, and of the whole
command (``zxmem growth --from STORE``, text and ``--json``, in-process), the
best of ``--runs``, and checks that the leakers are found.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import sys
import tempfile
import time
from dataclasses import replace
from types import MappingProxyType

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zxmem.cli import Environment, main  # noqa: E402
from zxmem.growth import analyse  # noqa: E402
from zxmem.growth_source import load_series  # noqa: E402
from zxmem.model import Job, MemoryCounts, Process, Provenance, Snapshot  # noqa: E402
from zxmem.store.schema import open_store  # noqa: E402
from zxmem.store.writer import TOTALS, Writer  # noqa: E402

MIB = 1 << 20
PAGE = 4096
T0 = 1_796_000_000 * 10**9
STEP = 10 * 10**9


def synthesise(path: str, procs: int, samples: int, changed: float) -> None:
    rng = random.Random(14)
    prov = Provenance(source="linux", host="bench", boot_id="boot", job_mode="cgroup2")
    jobs = (Job(1, "root", 0, "/", "", None),) + tuple(
        Job(100 + j, f"svc{j}", 1, f"/svc{j}", "", None) for j in range(20))
    base = [rng.randint(1, 200) * MIB for _ in range(procs)]
    leak, saw, cache = range(0, 10), range(10, 20), range(20, 30)
    current = [Process(1000 + i, f"proc{i}", 100 + i % 20, ppid=1, cmdline=(f"proc{i}",),
                       start_time_ticks=10 + i,
                       memory=MemoryCounts(pss_bytes=base[i], private_bytes=base[i]))
               for i in range(procs)]
    conn = open_store(path, create=True)
    conn.execute("PRAGMA synchronous=OFF")
    w = Writer(conn)
    t = time.monotonic()
    for n in range(samples):
        for i in rng.sample(range(30, procs), int(changed * procs)):
            m = current[i].memory
            assert m is not None and m.private_bytes is not None
            v = max(PAGE, m.private_bytes + rng.randint(-4, 4) * PAGE)
            current[i] = replace(current[i], memory=MemoryCounts(pss_bytes=v, private_bytes=v))
        for i in (*leak, *saw, *cache):
            if i in leak:
                v = base[i] + n * 256 * 1024
            elif i in saw:
                v = base[i] + (32 * MIB if n % 6 < 3 else 0)
            else:
                v = base[i] + min(n, samples // 4) * 64 * 1024
            current[i] = replace(current[i], memory=MemoryCounts(pss_bytes=v, private_bytes=v))
        snap = Snapshot(prov, jobs, tuple(current), None, MappingProxyType({}))
        w.write(snap, TOTALS, T0 + n * STEP)
        if n % 500 == 0:
            print(f"  sample {n}/{samples} ({time.monotonic() - t:.0f} s)", file=sys.stderr)
    conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    conn.close()


def best(runs: int, fn) -> tuple[float, object]:
    times = []
    out = None
    for _ in range(runs):
        t = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - t)
    return min(times), out


def command(argv: list[str]) -> str:
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), stdout_isatty=False)
    assert main(argv, env) == 0
    return out.getvalue()


def main_() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--procs", type=int, default=1000)
    ap.add_argument("--samples", type=int, default=8640)
    ap.add_argument("--changed", type=float, default=0.2)
    ap.add_argument("--store")
    ap.add_argument("--runs", type=int, default=3)
    args = ap.parse_args()
    path = args.store or os.path.join(
        tempfile.gettempdir(),
        f"zxmem-growth-bench-{args.procs}-{args.samples}-{args.changed}.db")
    if not os.path.exists(path):
        t = time.monotonic()
        synthesise(path + ".tmp", args.procs, args.samples, args.changed)
        os.replace(path + ".tmp", path)
        print(f"synthesised {path} in {time.monotonic() - t:.0f} s", file=sys.stderr)
    size = os.path.getsize(path)
    load_s, series = best(args.runs, lambda: load_series(path, by="process"))
    assert isinstance(series, list)
    an_s, suspects = best(args.runs, lambda: analyse(series))
    assert isinstance(suspects, list)
    leaks = sorted(s.name for s in suspects if s.leak)
    text_s, text = best(args.runs, lambda: command(["growth", "--from", path]))
    json_s, _ = best(1, lambda: command(["growth", "--from", path, "--json"]))
    job_s, _ = best(1, lambda: command(["growth", "--from", path, "--by", "job"]))
    print(f"store: {args.procs} processes x {args.samples} samples, {args.changed:.0%} "
          f"changing per sample, {size / MIB:.0f} MiB")
    print(f"load_series {load_s:.2f} s ({len(series)} series), analyse {an_s:.2f} s")
    print(f"zxmem growth: text {text_s:.2f} s, --json {json_s:.2f} s, --by job {job_s:.2f} s")
    leakers = {f"proc{i}" for i in range(10)}
    others = sorted(set(leaks) - leakers)
    print(f"leaks found: the 10 leakers: {leakers <= set(leaks)}; others called leaks: "
          f"{len(others)} of {args.procs - 10} ({', '.join(others)}: random walks that "
          "drifted up)")
    print(f"load average: {os.getloadavg()[0]:.2f} (nproc {os.cpu_count()})")
    assert leakers <= set(leaks) and len(others) <= 0.01 * args.procs, leaks
    assert isinstance(text, str) and text.count("LEAK") >= 10


if __name__ == "__main__":
    main_()
