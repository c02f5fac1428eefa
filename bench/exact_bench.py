"""Benchmark ``zxmem ps --exact`` against the kernel floor.

Usage::

    python bench/exact_bench.py [--procs N] [--rounds R]

What it does, in order:

1. Starts ``bench/workload.py``: one parent forks N children of ~35 MiB
   resident each, mostly shared (copy-on-write, a file, a memfd, the
   interpreter).
2. Times, alternating in each of ``R`` rounds after one warm-up round:

   * ``floor``: ``cat /proc/[0-9]*/smaps_rollup > /dev/null``;
   * ``zxmem ps`` (smaps_rollup numbers);
   * ``zxmem ps --exact`` (page tables: pagemap, kpagecount, kpageflags);

   each as the median ratio to the floor's time in the same round, with
   the median seconds and the largest peak RSS (GNU time ``%M``).  The
   targets for ``--exact``: at most 3.0x the floor, at most 150 MB.
3. Checks the exact numbers against the kernel's for the workload, where
   both are exact: no workload process maps a page twice, so the exact
   PRIVATE must equal smaps' Private_Clean + Private_Dirty and the exact
   PSS sum must equal the kernel's Pss sum (within ``--tolerance``).

Needs root.  The workload is removed at the end, also on Ctrl-C.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, HERE)

import ps_bench  # noqa: E402  (the shared timing and workload helpers)


def tools(zxmem: str) -> list:
    sh = "/bin/sh"
    return [
        ps_bench.Tool("floor (cat smaps_rollup)", [sh, "-c", ps_bench.FLOOR]),
        ps_bench.Tool("zxmem ps", [zxmem, "ps"]),
        ps_bench.Tool("zxmem ps --exact", [zxmem, "ps", "--exact"]),
    ]


def kernel_rollups(pids) -> dict[int, dict[str, int]]:
    out = {}
    for pid in pids:
        fields = {}
        try:
            with open(f"/proc/{pid}/smaps_rollup") as f:
                for line in f:
                    head = line.split()
                    if len(head) >= 3 and head[2] == "kB":
                        fields[head[0].rstrip(":")] = int(head[1]) * 1024
        except OSError:
            continue
        out[pid] = fields
    return out


def check(zxmem: str, workload: set[int], tolerance: float) -> tuple[bool, str]:
    """Exact vs kernel for the workload's processes (read right after)."""
    r = subprocess.run([zxmem, "ps", "--exact", "--json", "--jobs=none"],
                       capture_output=True, check=False)
    if r.returncode != 0:
        return False, f"zxmem ps --exact --json failed: {r.stderr.decode()[:200]}"
    kernel = kernel_rollups(workload)
    doc = json.loads(r.stdout)
    exact = {t["koid"]: t for t in doc["tasks"] if t["type"] == "p" and t["koid"] in kernel}
    if not exact:
        return False, "no workload process in zxmem's output"
    priv_bad = [
        pid for pid, t in exact.items()
        if abs(t["private_bytes"]
               - kernel[pid]["Private_Clean"] - kernel[pid]["Private_Dirty"]) > 2 * 4096
    ]
    pss_x = sum(t["pss_bytes"] for t in exact.values())
    pss_k = sum(kernel[pid]["Pss"] for pid in exact)
    rel = abs(pss_x - pss_k) / max(pss_k, 1)
    ok = not priv_bad and rel <= tolerance
    text = (
        f"exact vs kernel over {len(exact)} workload processes: PSS {pss_x / 2**20:.1f} MiB "
        f"vs {pss_k / 2**20:.1f} MiB (diff {rel * 100:.3f}%, tolerance {tolerance * 100:.1f}%); "
        f"PRIVATE differs by more than 2 pages in {len(priv_bad)} processes"
        + ("" if ok else "  ** MISMATCH **")
    )
    stderr = r.stderr.decode().strip()
    if stderr:
        text += f"\nzxmem stderr: {stderr}"
    return ok, text


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=1000, help="workload processes (1000)")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (7)")
    ap.add_argument("--tolerance", type=float, default=0.005,
                    help="allowed relative PSS difference (0.005)")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help=ps_bench.NO_BYTECODE_CACHE_HELP)
    args = ap.parse_args(argv)

    zxmem = ps_bench.prepare('not root: --exact needs root; it would only measure the fallback')
    if zxmem is None:
        return 2
    pyc = ps_bench.bytecode_setting(not args.no_bytecode_cache)
    tool_list = tools(zxmem)
    ok = True
    wl = None
    try:
        before = ps_bench.mem_available()
        t0 = time.perf_counter()
        wl = ps_bench.start_workload(args.procs)
        pids = ps_bench.wait_ready(wl)
        took = time.perf_counter() - t0
        time.sleep(1.0)
        used = before - ps_bench.mem_available()
        print(f"\nworkload: {len(pids)} processes in {took:.1f}s, "
              f"MemAvailable down by {used / 2**30:.2f} GiB")
        print(f"{args.rounds} rounds:")
        ps_bench.measure(tool_list, args.rounds, "crowd")
        ok, text = check(zxmem, set(pids), args.tolerance)
        nprocs = sum(1 for n in os.listdir("/proc") if n.isdigit())
    except KeyboardInterrupt:
        print("\ninterrupted; removing the workload", file=sys.stderr)
        return 130
    finally:
        ps_bench.stop_workload(wl)
        if pyc:
            shutil.rmtree(pyc, ignore_errors=True)

    print()
    print(f"With {len(pids)} workload processes ({nprocs} processes in all):")
    print("\n".join(ps_bench.report(tool_list, "floor")))
    exact = tool_list[-1]
    if exact.ratios:
        ratio = statistics.median(exact.ratios)
        rss = max(exact.rss) / 1e6
        verdict = "meets" if ratio <= 3.0 and rss <= 150 else "MISSES"
        print(f"\nzxmem ps --exact: {ratio:.2f}x the floor, peak RSS {rss:.1f} MB "
              f"({verdict} the 3.0x / 150 MB target)")
    print()
    print(text)
    print(f"load average at the end: {ps_bench.load_average()}")
    return 0 if ok else 1


if __name__ == "__main__":
    sys.exit(main())
