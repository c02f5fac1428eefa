"""What the history store costs: bytes per sample, CPU per sample, replay and diff time.

    python bench/history_bench.py [--samples 30] [--synthetic 1000]

Live: samples of this machine (totals and objects tiers), half a second
apart.  Synthetic: the live processes cloned to ``--synthetic`` processes,
1% of them replaced by new ones every sample, and the share of processes whose
memory changes between two live samples applied to the clones (so the churn is
this machine's).  Bytes are the store's used pages (page_count - freelist),
divided by the samples that added them.
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

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zxmem  # noqa: E402
from zxmem.cli import Environment, main  # noqa: E402
from zxmem.commands.record import plan_for  # noqa: E402
from zxmem.store import load_from_store  # noqa: E402
from zxmem.store.recorder import Recorder  # noqa: E402
from zxmem.store.writer import OBJECTS, TOTALS  # noqa: E402


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def per_sample_bytes(rec: Recorder, snaps, tier: int) -> float:
    rec.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    before = rec.used_bytes()
    for i, s in enumerate(snaps):
        rec.add(s, tier, time.time_ns() + i)
    rec.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return (rec.used_bytes() - before) / len(snaps)


def main_() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=20)
    ap.add_argument("--synthetic", type=int, default=1000)
    ap.add_argument("--synthetic-samples", type=int, default=200)
    ap.add_argument("--changed", type=float,
                    help="share of processes whose memory changes per sample (default: "
                    "as measured on this machine)")
    args = ap.parse_args()
    top = tempfile.mkdtemp(prefix="zxmem-hbench-")
    path = os.path.join(top, "h.db")
    out = []

    # CPU: ps's collection alone, and a totals sample (collection + write).
    ps_plan = zxmem.Plan(status=True)
    c0 = cpu()
    for _ in range(10):
        zxmem.collect(ps_plan)
    ps_cpu = (cpu() - c0) / 10
    live = []
    c0 = cpu()
    for _ in range(args.samples):
        live.append(zxmem.collect(plan_for(TOTALS)))
        time.sleep(0.5)
    collect_cpu = (cpu() - c0) / args.samples
    objs = []
    c0 = cpu()
    for _ in range(max(3, args.samples // 6)):
        objs.append(zxmem.collect(plan_for(OBJECTS)))
        time.sleep(0.5)
    collect_obj_cpu = (cpu() - c0) / len(objs)

    with Recorder(path, print) as rec:
        rec.add(live[0], TOTALS, time.time_ns())
        c0 = cpu()
        b_tot = per_sample_bytes(rec, live[1:], TOTALS)
        write_cpu = (cpu() - c0) / (len(live) - 1)
        rec.add(objs[0], OBJECTS, time.time_ns())
        c0 = cpu()
        b_obj = per_sample_bytes(rec, objs[1:], OBJECTS)
        write_obj_cpu = (cpu() - c0) / (len(objs) - 1)
        changed = rec.conn.execute(
            "SELECT count(*) FROM proc_mem WHERE first > 1 AND first <= ?",
            (len(live),)).fetchone()[0] / max(1, len(live) - 1)
    nproc = len(live[-1].processes)
    share = min(1.0, changed / max(1, nproc))
    measured = share
    if args.changed is not None:
        share = args.changed
    out.append(f"live machine: {nproc} processes, {len(objs[-1].vmos)} memory objects")
    out.append(f"  changed process rows per sample: {changed:.1f} ({measured:.0%})")
    out.append(f"  bytes per sample: totals {b_tot:,.0f}, objects {b_obj:,.0f}")
    out.append(f"  CPU per sample: ps collection {ps_cpu * 1e3:.1f} ms; totals sample "
               f"{collect_cpu * 1e3:.1f} ms collect + {write_cpu * 1e3:.1f} ms write; "
               f"objects sample {collect_obj_cpu * 1e3:.1f} ms collect + "
               f"{write_obj_cpu * 1e3:.1f} ms write")

    t = time.perf_counter()
    load_from_store(path + "@2")
    out.append(f"  replay of one totals sample: {(time.perf_counter() - t) * 1e3:.1f} ms")
    last = len(live) + len(objs)
    t = time.perf_counter()
    load_from_store(f"{path}@{last}")
    out.append(f"  replay of one objects sample: {(time.perf_counter() - t) * 1e3:.1f} ms")
    t = time.perf_counter()
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), stdout_isatty=False)
    main(["diff", f"{path}@{len(live) + 1}", f"{path}@{last}"], env)
    out.append(f"  diff of two objects samples: {(time.perf_counter() - t) * 1e3:.1f} ms")

    # Synthetic: N processes, 1% replaced per sample, the live share changing.
    rng = random.Random(1)
    base = live[-1]
    procs = [p for p in base.processes if p.memory is not None] or list(base.processes)
    n = args.synthetic
    clones = [replace(procs[i % len(procs)], koid=100000 + i, start_time_ticks=i)
              for i in range(n)]
    next_pid = 100000 + n
    spath = os.path.join(top, "s.db")
    snaps = []
    for _s in range(args.synthetic_samples):
        for _ in range(max(1, n // 100)):
            j = rng.randrange(n)
            clones[j] = replace(clones[j], koid=next_pid, start_time_ticks=next_pid)
            next_pid += 1
        for j in rng.sample(range(n), int(n * share)):
            m = clones[j].memory
            if m is not None and m.pss_bytes is not None:
                clones[j] = replace(clones[j], memory=replace(
                    m, pss_bytes=m.pss_bytes + 4096 * rng.randrange(1, 64),
                    rss_bytes=(m.rss_bytes or 0) + 4096))
        snaps.append(replace(base, processes=tuple(sorted(clones, key=lambda p: p.koid))))
    with Recorder(spath, print) as rec:
        rec.add(snaps[0], TOTALS, time.time_ns())
        c0 = cpu()
        b_syn = per_sample_bytes(rec, snaps[1:], TOTALS)
        w_syn = (cpu() - c0) / (len(snaps) - 1)
    replays = []
    for at in (2, len(snaps) // 2, len(snaps)):
        t = time.perf_counter()
        load_from_store(spath + f"@{at}")
        replays.append(f"@{at} {(time.perf_counter() - t) * 1e3:.0f} ms")
    out.append(f"synthetic: {n} processes, 1% replaced and {share:.0%} changed per sample, "
               f"{len(snaps)} samples ({os.path.getsize(spath) / 1e6:.1f} MB)")
    out.append(f"  bytes per totals sample: {b_syn:,.0f}; write CPU {w_syn * 1e3:.1f} ms; "
               f"replay: {', '.join(replays)}")
    print("\n".join(out))
    import shutil

    shutil.rmtree(top, ignore_errors=True)


if __name__ == "__main__":
    main_()
