"""Benchmark ``zxmem exporter`` against ``zxmem ps`` and ``memgraph -v``.

Usage::

    python bench/exporter_bench.py [--procs N] [--rounds R] [--steps K] [--scrapes S]

Starts ``bench/workload.py`` (the ``ps`` bench's crowd: N forked children
of ~35 MiB resident each; 1,000 by default), then:

1. CPU per collection, alternating in each of R rounds (after one warm-up
   round that is not counted; the order rotates every round):

   * ``exporter``: K collections of the exporter's own collect-and-swap
     step (``_prom.Sampler.step``, what its timer thread runs: process
     totals, status, the cgroup tree and files, the kernel counters, the
     metric families) in a long-lived helper process, as the exporter keeps
     running; CPU is the helper's user + system time over the K steps
     (reader threads included) divided by K;
   * ``zxmem ps``: the command, output to /dev/null, user + system CPU of
     it and its children (GNU time), interpreter start included, as a user
     runs it;
   * ``exporter --objects``: K collections of the objects tier (every
     mapping and the hidden objects, ``--objects 20 --objects-every 1``),
     each in a short-lived child as the exporter runs it (the child's CPU
     counted);
   * ``zxmem memgraph -v``: the command, likewise;
   * ``ps in-process``, ``memgraph -v in-process``: the same commands run
     K times in the helper (``zxmem.cli.main``, output discarded), i.e.
     without the interpreter's start and imports: the stricter comparison.

   Reported: the median CPU of each and the median over rounds of the
   exporter's CPU divided by ``zxmem ps``'s (objects tier: by
   ``memgraph -v``'s) in the same round.  Targets (issue "Fleet"):
   ≤ 1.0x and ≤ 1.2x.

2. Serving: the real ``zxmem exporter`` (``--interval 1s``, defaults
   otherwise) on 127.0.0.1, scraped S times 0.1 s apart, so that scrapes
   land during collections: scrape latency (median, 95th percentile, max;
   target ≤ 50 ms), the series in a scrape, the collection duration it
   reports, and its RSS (VmRSS, VmHWM; target ≤ 60 MB).  Then the same
   with ``--objects 20`` (every 4th collection reads the objects, in a
   child whose peak RSS is reported apart).

The workload and the exporters are removed at the end, also on Ctrl-C.
Run as root (every process's smaps).
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.request

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ps_bench  # noqa: E402 - the directory above is where it lives

CPU_TARGET = 1.0
OBJECTS_TARGET = 1.2
SCRAPE_TARGET_S = 0.050
RSS_TARGET_BYTES = 60_000_000

# A long-lived process that runs the exporter's collection step on request:
# "totals K" or "objects K" on stdin, one JSON line back with the CPU and
# wall seconds of the K steps.
HELPER = """
import json, os, resource, sys, time
from zxmem.commands import _prom
from zxmem.views import metrics as view

def cpu():
    me = resource.getrusage(resource.RUSAGE_SELF)
    kids = resource.getrusage(resource.RUSAGE_CHILDREN)
    return me.ru_utime + me.ru_stime + kids.ru_utime + kids.ru_stime

samplers = {
    "totals": _prom.Sampler(view.MetricsOptions(), "/proc", time.monotonic),
    "objects": _prom.Sampler(view.MetricsOptions(objects=20), "/proc", time.monotonic,
                             objects_every=1, objects_in_child=True),
}

class InProcess:
    # A zxmem command run in this process (its output discarded).
    def __init__(self, argv):
        self.argv = argv
    def step(self):
        import io
        from zxmem.cli import Environment, main
        return main(self.argv, Environment(stdout=io.StringIO(), stderr=io.StringIO())) == 0

samplers["ps"] = InProcess(["ps"])
samplers["memgraph"] = InProcess(["memgraph", "-v"])
print("ready", flush=True)
for line in sys.stdin:
    kind, k = line.split()
    s = samplers[kind]
    c0, w0 = cpu(), time.perf_counter()
    if kind in ("ps", "memgraph"):
        for _ in range(int(k)):
            s.step()
        print(json.dumps({"cpu": (cpu() - c0) / int(k)}), flush=True)
        continue
    for _ in range(int(k)):
        if not s.step():
            print(json.dumps({"error": s.last_error}), flush=True)
            break
    else:
        text = view.exposition(s.collect())
        series = sum(1 for x in text.splitlines() if x and not x.startswith(b"#"))
        peak = resource.getrusage(resource.RUSAGE_CHILDREN).ru_maxrss * 1024
        print(json.dumps({"cpu": (cpu() - c0) / int(k), "wall": (time.perf_counter() - w0)
                          / int(k), "series": series, "child_peak": peak}), flush=True)
"""


class Helper:
    def __init__(self) -> None:
        self.proc = subprocess.Popen([sys.executable, "-c", HELPER], stdin=subprocess.PIPE,
                                     stdout=subprocess.PIPE, text=True, env=ps_bench.CHILD_ENV)
        line = self.proc.stdout.readline()  # type: ignore[union-attr]
        if line.strip() != "ready":
            raise RuntimeError(f"exporter helper did not start (exit {self.proc.poll()})")

    def steps(self, kind: str, k: int) -> dict:
        self.proc.stdin.write(f"{kind} {k}\n")  # type: ignore[union-attr]
        self.proc.stdin.flush()  # type: ignore[union-attr]
        out = json.loads(self.proc.stdout.readline())  # type: ignore[union-attr]
        if "error" in out:
            raise RuntimeError(f"exporter collection failed: {out['error']}")
        return out

    def close(self) -> None:
        if self.proc.poll() is None:
            self.proc.stdin.close()  # type: ignore[union-attr]
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()


def cpu_rounds(zxmem: str, helper: Helper, rounds: int, k: int) -> dict[str, list[float]]:
    runs = {
        "exporter": lambda: helper.steps("totals", k)["cpu"],
        "zxmem ps": lambda: ps_bench.run_once([zxmem, "ps"])[3],
        "exporter --objects": lambda: helper.steps("objects", k)["cpu"],
        "zxmem memgraph -v": lambda: ps_bench.run_once([zxmem, "memgraph", "-v"])[3],
        "ps in-process": lambda: helper.steps("ps", k)["cpu"],
        "memgraph -v in-process": lambda: helper.steps("memgraph", k)["cpu"],
    }
    names = list(runs)
    got: dict[str, list[float]] = {n: [] for n in names}
    for r in range(rounds + 1):
        order = names[r % len(names):] + names[: r % len(names)]
        this = {n: runs[n]() for n in order}
        if r == 0:
            continue
        for n in names:
            got[n].append(this[n])
        print(f"  round {r}/{rounds}: "
              + ", ".join(f"{n} {this[n] * 1e3:.0f} ms" for n in names), flush=True)
    return got


def _status_bytes(pid: int, key: bytes) -> int:
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(key):
                return int(line.split()[1]) * 1024
    return 0


def _samples(text: str) -> dict[str, float]:
    out = {}
    for line in text.splitlines():
        if line and not line.startswith("#") and "{" not in line:
            name, _, value = line.partition(" ")
            out[name] = float(value)
    return out


def serve(zxmem: str, scrapes: int, extra: list[str]) -> dict:
    """Start the exporter, scrape it, stop it: latency, series, RSS."""
    proc = subprocess.Popen([zxmem, "exporter", "--listen", "127.0.0.1:0", "--interval", "1s",
                             *extra], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                            text=True, env=ps_bench.CHILD_ENV)
    try:
        line = proc.stderr.readline()  # type: ignore[union-attr]
        if "serving http://127.0.0.1:" not in line:
            raise RuntimeError(f"exporter did not start: {line.strip()}")
        url = "http://127.0.0.1:" + line.split("127.0.0.1:")[1].split("/")[0] + "/metrics"
        deadline = time.monotonic() + 120
        text = ""
        while time.monotonic() < deadline:  # the first sample
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
            if "zxmem_collection_duration_seconds" in text:
                break
            time.sleep(0.2)
        time.sleep(3)  # a few collections more
        latencies, durations, series = [], [], []
        for _ in range(scrapes):
            t0 = time.perf_counter()
            with urllib.request.urlopen(url, timeout=10) as resp:
                text = resp.read().decode()
            latencies.append(time.perf_counter() - t0)
            got = _samples(text)
            durations.append(got.get("zxmem_collection_duration_seconds", float("nan")))
            series.append(sum(1 for x in text.splitlines() if x and not x.startswith("#")))
            time.sleep(0.1)
        got = _samples(text)
        latencies.sort()
        return {
            "latency_median": statistics.median(latencies),
            "latency_p95": latencies[max(0, int(len(latencies) * 0.95) - 1)],
            "latency_max": latencies[-1],
            "series": max(series),
            "duration_median": statistics.median(durations),
            "collections": got.get("zxmem_collections_total"),
            "errors": got.get("zxmem_collection_errors_total"),
            "rss": _status_bytes(proc.pid, b"VmRSS:"),
            "hwm": _status_bytes(proc.pid, b"VmHWM:"),
        }
    finally:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=1000, help="workload processes (1000)")
    ap.add_argument("--rounds", type=int, default=5, help="timed CPU rounds (5)")
    ap.add_argument("--steps", type=int, default=3,
                    help="exporter collections per round and tier (3)")
    ap.add_argument("--scrapes", type=int, default=50, help="scrapes per exporter (50)")
    args = ap.parse_args(argv)

    zxmem = ps_bench.prepare("note: not root; other users' processes are unreadable")
    if zxmem is None:
        return 2
    print(f"zxmem: {zxmem}")
    pyc = ps_bench.bytecode_cache()
    wl = helper = None
    try:
        wl = ps_bench.start_workload(args.procs)
        pids = ps_bench.wait_ready(wl)
        time.sleep(1.0)
        nprocs = sum(1 for n in os.listdir("/proc") if n.isdigit())
        print(f"\nworkload: {len(pids)} processes ({nprocs} on the machine)")
        helper = Helper()
        print(f"CPU, {args.rounds} rounds of {args.steps} collections per exporter tier:")
        cpu = cpu_rounds(zxmem, helper, args.rounds, args.steps)
        series_helper = helper.steps("totals", 1)["series"]
        child_peak = helper.steps("objects", 1)["child_peak"]
        helper.close()
        helper = None
        print(f"serving, {args.scrapes} scrapes 0.1 s apart:")
        plain = serve(zxmem, args.scrapes, [])
        objects = serve(zxmem, args.scrapes, ["--objects", "20"])
    except KeyboardInterrupt:
        print("\ninterrupted; removing the workload", file=sys.stderr)
        return 130
    finally:
        if helper is not None:
            helper.close()
        ps_bench.stop_workload(wl)
        if pyc:
            import shutil

            shutil.rmtree(pyc, ignore_errors=True)

    med = {n: statistics.median(v) for n, v in cpu.items()}
    ratio = statistics.median(e / p for e, p in zip(cpu["exporter"], cpu["zxmem ps"], strict=True))
    ratio_obj = statistics.median(
        e / p for e, p in zip(cpu["exporter --objects"], cpu["zxmem memgraph -v"], strict=True))
    ratio_in = statistics.median(
        e / p for e, p in zip(cpu["exporter"], cpu["ps in-process"], strict=True))
    ratio_obj_in = statistics.median(
        e / p
        for e, p in zip(cpu["exporter --objects"], cpu["memgraph -v in-process"], strict=True))

    def verdict(ok: bool) -> str:
        return "OK" if ok else "over"

    print("\n| what | CPU per run, ms (median) |\n|---|---:|")
    for n in cpu:
        print(f"| {n} | {med[n] * 1e3:.0f} |")
    print(f"\nexporter collection / zxmem ps CPU: {ratio:.2f}x "
          f"(target <= {CPU_TARGET}x: {verdict(ratio <= CPU_TARGET)})")
    print(f"objects tier / memgraph -v CPU: {ratio_obj:.2f}x "
          f"(target <= {OBJECTS_TARGET}x: {verdict(ratio_obj <= OBJECTS_TARGET)})")
    print(f"without the interpreter's start (the commands run in the helper): "
          f"exporter / ps {ratio_in:.2f}x, objects tier / memgraph -v {ratio_obj_in:.2f}x")
    for name, s in (("exporter", plain), ("exporter --objects 20", objects)):
        print(f"\n{name}: scrape median {s['latency_median'] * 1e3:.1f} ms, "
              f"p95 {s['latency_p95'] * 1e3:.1f} ms, max {s['latency_max'] * 1e3:.1f} ms "
              f"(target <= {SCRAPE_TARGET_S * 1e3:.0f} ms: "
              f"{verdict(s['latency_p95'] <= SCRAPE_TARGET_S)}); "
              f"{s['series']} series; collection {s['duration_median'] * 1e3:.0f} ms wall; "
              f"RSS {s['rss'] / 1e6:.1f} MB, peak {s['hwm'] / 1e6:.1f} MB "
              f"(target <= {RSS_TARGET_BYTES / 1e6:.0f} MB: "
              f"{verdict(s['hwm'] <= RSS_TARGET_BYTES)}); "
              f"{s['collections']:.0f} collections, {s['errors']:.0f} errors")
    print(f"\nseries in one sample (helper, defaults): {series_helper}")
    print(f"peak RSS of the objects tier's child (largest over the run): "
          f"{child_peak / 1e6:.1f} MB")
    print(f"load average at the end: {ps_bench.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
