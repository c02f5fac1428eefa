"""Benchmark ``zxmem memgraph -vt`` over a crowd of processes.

Usage::

    python bench/memgraph_bench.py [--procs N] [--rounds R] [--also CMD,...]

Starts ``bench/workload.py`` (the ``ps`` bench's crowd: N forked children of
~35 MiB resident each, mostly shared; 1,000 by default), then times,
alternating in each of R rounds after one warm-up round that is not counted
(the order rotates every round):

* ``floor``: ``cat /proc/[0-9]*/smaps > /dev/null``, the kernel's own cost
  of producing every process's smaps;
* ``zxmem memgraph -vt`` (the command next to this interpreter, output to
  /dev/null): every process with its threads, mappings and memory objects;
* with ``--also``: more zxmem command lines, e.g. ``"k vmos hidden"``;
* with ``--baseline DIR``: ``memgraph -vt`` of the zxmem package under DIR
  (e.g. ``git archive OLD zxmem | tar -x -C DIR``), run as ``python -m
  zxmem`` in DIR (so that DIR's package is the one imported), for a
  before/after in the same rounds.

Each is reported as the median over rounds of its time divided by the
floor's time in the same round, with the median seconds, the largest peak
RSS (GNU time ``%M``) and the median CPU seconds.  The targets (issue 11):
``zxmem memgraph -vt`` over 1,000 processes ≤ 2.0× the floor, peak RSS
≤ 128 MB; the last lines say whether they are met, with the load average
at the start and at the end (the figures mean little on a busy machine).
Run as root (every process's smaps).

The timing, workload and report code is ``ps_bench``'s, imported.
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import time

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

import ps_bench  # noqa: E402 - the directory above is where it lives

FLOOR = "cat /proc/[0-9]*/smaps > /dev/null 2>&1"
TARGET = 2.0  # times the floor (issue 11)
RSS_TARGET_MB = 128.0


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--procs", type=int, default=1000, help="workload processes (1000)")
    ap.add_argument("--rounds", type=int, default=7, help="timed rounds (7)")
    ap.add_argument("--also", default="", metavar="CMDS",
                    help='comma-separated zxmem command lines to time too, e.g. "k vmos hidden"')
    ap.add_argument("--baseline", metavar="DIR",
                    help="also time memgraph -vt of the zxmem package in DIR (before/after)")
    ap.add_argument("--no-bytecode-cache", action="store_true",
                    help=ps_bench.NO_BYTECODE_CACHE_HELP)
    args = ap.parse_args(argv)

    zxmem = ps_bench.prepare("note: not root; other users' processes are unreadable to every tool")
    if zxmem is None:
        return 2
    print(f"zxmem: {zxmem}")
    pyc = ps_bench.bytecode_setting(not args.no_bytecode_cache)

    sh = shutil.which("sh") or "/bin/sh"
    tools = [
        ps_bench.Tool("floor (cat every smaps)", [sh, "-c", FLOOR]),
        ps_bench.Tool("zxmem memgraph -vt", [zxmem, "memgraph", "-vt"]),
    ]
    for cmd in filter(None, (c.strip() for c in args.also.split(","))):
        tools.append(ps_bench.Tool(f"zxmem {cmd}", [zxmem, *cmd.split()]))
    if args.baseline:
        base = os.path.abspath(args.baseline)
        if not os.path.isfile(os.path.join(base, "zxmem", "__main__.py")):
            print(f"--baseline: no zxmem package under {base}")
            return 2
        # Started in DIR: "python -m" puts the working directory first on
        # sys.path, ahead of PYTHONPATH and of an editable install's finder.
        tools.append(ps_bench.Tool(
            "baseline memgraph -vt",
            [sh, "-c", 'cd "$1" && exec "$2" -m zxmem memgraph -vt', "sh", base,
             sys.executable]))

    load_before = ps_bench.load_average()
    wl = None
    try:
        before = ps_bench.mem_available()
        t0 = time.perf_counter()
        wl = ps_bench.start_workload(args.procs)
        pids = ps_bench.wait_ready(wl)
        took = time.perf_counter() - t0
        time.sleep(1.0)
        used = before - ps_bench.mem_available()
        nprocs = sum(1 for n in os.listdir("/proc") if n.isdigit())
        print(f"\nworkload: {len(pids)} processes in {took:.1f}s ({nprocs} on the machine), "
              f"MemAvailable down by {used / 2**30:.2f} GiB")
        print(f"{args.rounds} rounds:")
        ps_bench.measure(tools, args.rounds, "crowd")
    except KeyboardInterrupt:
        print("\ninterrupted; removing the workload", file=sys.stderr)
        return 130
    finally:
        ps_bench.stop_workload(wl)
        if pyc:
            shutil.rmtree(pyc, ignore_errors=True)

    print()
    print("\n".join(ps_bench.report(tools, "floor")))
    mg = tools[1]
    if mg.ratios:
        import statistics

        ratio = statistics.median(mg.ratios)
        verdict = "OK" if ratio <= TARGET else "over"
        print(f"\nzxmem memgraph -vt: {ratio:.2f}x the floor (target <= {TARGET}x: {verdict})")
        if mg.rss:
            rss = max(mg.rss) / 1e6
            verdict = "OK" if rss <= RSS_TARGET_MB else "over"
            print(f"zxmem memgraph -vt: peak RSS {rss:.1f} MB "
                  f"(target <= {RSS_TARGET_MB:.0f} MB: {verdict})")
        floor = tools[0]
        if mg.cpu and floor.cpu:
            print(f"CPU s (median): memgraph -vt {statistics.median(mg.cpu):.2f}, "
                  f"floor {statistics.median(floor.cpu):.2f}")
    print(f"load average at the start: {load_before}; at the end: {ps_bench.load_average()}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
