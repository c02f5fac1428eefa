"""What the history store costs, beside what it is measured against, in one run.

    python bench/history_bench.py [--samples 8] [--synthetic 1000]

Prints, with ``uptime`` before and after:

* CPU: the ``zxmem ps`` and ``zxmem memgraph -v`` commands (child processes,
  user + system, start-up included), each run alternately with what one
  recorder sample costs (collection + write, in the running recorder) of the
  tier it is compared with: the ratios are the issue's goals (totals <= 1.0x
  ps, objects <= 1.2x memgraph -v); ``--workload 1000`` runs the 1,000-process
  bench workload (bench/workload.py) meanwhile;
* bytes per sample on disk (the store's used pages, page_count - freelist,
  after a WAL checkpoint, divided by the samples that added them) for:

  - the issue's scenario: 1,000 processes (the live ones cloned), 1% of them
    replaced per sample, the others unchanged (totals tier), and the live
    objects graph with 1% of its processes replaced per sample (objects tier);
  - the same with the share of processes whose totals change between two
    live samples (this machine's churn) applied to the clones;
  - the live machine itself, samples half a second apart;

* replay (``--from STORE@N``) of one totals and one objects sample, and
  ``zxmem diff`` of two objects samples, each the fastest of three; the
  bytes the mappings add to an objects sample, the replay of one with every
  process's mappings (``memgraph -v --from``) and ``vmaps --from STORE@N``;
* a week at 10 s with an objects sample every minute, extrapolated from the
  measured bytes per sample (5 totals and 1 objects sample a minute) plus
  the copy of every open row once it is its table's span old.
"""

from __future__ import annotations

import argparse
import io
import os
import random
import resource
import subprocess
import sys
import tempfile
import time
from dataclasses import replace

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

import zxmem  # noqa: E402
from zxmem.cli import Environment, main  # noqa: E402
from zxmem.commands.record import plan_for  # noqa: E402
from zxmem.model import Snapshot  # noqa: E402
from zxmem.store import load_from_store  # noqa: E402
from zxmem.store.recorder import Recorder  # noqa: E402
from zxmem.store.schema import SPAN, span_of  # noqa: E402
from zxmem.store.writer import OBJECTS, TOTALS  # noqa: E402


def cpu() -> float:
    t = os.times()
    return t.user + t.system


def child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def command_cpu(args: list[str], runs: int) -> float:
    """CPU seconds of one ``zxmem ARGS`` command (the mean of ``runs``)."""
    zxmem_bin = os.path.join(os.path.dirname(sys.executable), "zxmem")
    cmd = [zxmem_bin] if os.path.exists(zxmem_bin) else [sys.executable, "-m", "zxmem"]
    c0 = child_cpu()
    for _ in range(runs):
        subprocess.run(cmd + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                       check=True)
    return (child_cpu() - c0) / runs


def uptime() -> str:
    with open("/proc/loadavg") as f:
        return "load average " + " ".join(f.read().split()[:3])


def used(rec: Recorder) -> int:
    rec.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    return rec.used_bytes()


def per_sample_bytes(rec: Recorder, snaps: list[Snapshot], tier: int) -> float:
    before = used(rec)
    for i, s in enumerate(snaps):
        rec.add(s, tier, time.time_ns() + i)
    return (used(rec) - before) / len(snaps)


def fastest(fn, runs: int = 3) -> float:
    best = float("inf")
    for _ in range(runs):
        t = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - t)
    return best


def replace_share(snap: Snapshot, rng: random.Random, share: float, next_pid: list[int]
                  ) -> Snapshot:
    """``snap`` with ``share`` of its processes replaced by new ones (a new
    PID and start time, the same memory and objects)."""
    procs = list(snap.processes)
    for j in rng.sample(range(len(procs)), max(1, int(len(procs) * share))):
        procs[j] = replace(procs[j], koid=next_pid[0], start_time_ticks=next_pid[0])
        next_pid[0] += 1
    return replace(snap, processes=tuple(sorted(procs, key=lambda p: p.koid)))


def synthetic_totals(base: Snapshot, n: int, samples: int, changed: float,
                     rng: random.Random) -> list[Snapshot]:
    """``n`` clones of ``base``'s processes; each sample replaces 1% of them
    and changes the totals of ``changed`` of them."""
    procs = [p for p in base.processes if p.memory is not None] or list(base.processes)
    clones = [replace(procs[i % len(procs)], koid=100000 + i, start_time_ticks=i)
              for i in range(n)]
    next_pid = 100000 + n
    out = []
    for _ in range(samples):
        for _ in range(max(1, n // 100)):
            j = rng.randrange(n)
            clones[j] = replace(clones[j], koid=next_pid, start_time_ticks=next_pid)
            next_pid += 1
        for j in rng.sample(range(n), int(n * changed)):
            m = clones[j].memory
            if m is not None and m.pss_bytes is not None:
                clones[j] = replace(clones[j], memory=replace(
                    m, pss_bytes=m.pss_bytes + 4096 * rng.randrange(1, 64),
                    rss_bytes=(m.rss_bytes or 0) + 4096))
        out.append(replace(base, processes=tuple(sorted(clones, key=lambda p: p.koid))))
    return out


def main_() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=8, help="live totals samples")
    ap.add_argument("--synthetic", type=int, default=1000)
    ap.add_argument("--synthetic-samples", type=int, default=100)
    ap.add_argument("--object-samples", type=int, default=6,
                    help="synthetic objects samples (1%% replaced each)")
    ap.add_argument("--workload", type=int, default=0, metavar="N",
                    help="run bench/workload.py with N processes meanwhile (the issue's "
                    "1,000-process workload: --workload 1000)")
    args = ap.parse_args()
    top = tempfile.mkdtemp(prefix="zxmem-hbench-")
    out = [f"start: {uptime()}"]

    wl = None
    if args.workload:
        sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
        from ps_bench import start_workload, wait_ready

        wl = start_workload(args.workload)
        wait_ready(wl)
        out.append(f"bench/workload.py --procs {args.workload} running: {uptime()}")
    try:
        _run(args, top, out)
    finally:
        if wl is not None:
            from ps_bench import stop_workload

            stop_workload(wl)
        import shutil

        shutil.rmtree(top, ignore_errors=True)
    out.append(f"end: {uptime()}")
    print("\n".join(out))


def _run(args: argparse.Namespace, top: str, out: list[str]) -> None:
    # -- CPU: each command and the recorder's sample it is compared with,
    # alternately, so that both see the same machine.
    env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), stdout_isatty=False)
    live: list[Snapshot] = []
    ps_cpu = ps_inproc = collect_cpu = 0.0
    for _ in range(args.samples):
        ps_cpu += command_cpu(["ps"], 1)
        c0 = cpu()
        main(["ps"], env)
        ps_inproc += cpu() - c0
        c0 = cpu()
        live.append(zxmem.collect(plan_for(TOTALS)))
        collect_cpu += cpu() - c0
        time.sleep(0.5)
    ps_cpu, ps_inproc, collect_cpu = (x / len(live) for x in (ps_cpu, ps_inproc, collect_cpu))
    objs: list[Snapshot] = []
    mg_cpu = collect_obj_cpu = 0.0
    for _ in range(3):
        mg_cpu += command_cpu(["memgraph", "-v"], 1)
        c0 = cpu()
        objs.append(zxmem.collect(plan_for(OBJECTS)))
        collect_obj_cpu += cpu() - c0
    mg_cpu, collect_obj_cpu = mg_cpu / len(objs), collect_obj_cpu / len(objs)

    path = os.path.join(top, "live.db")
    with Recorder(path, print) as rec:
        rec.add(live[0], TOTALS, time.time_ns())
        c0 = cpu()
        b_tot = per_sample_bytes(rec, live[1:], TOTALS)
        write_cpu = (cpu() - c0) / (len(live) - 1)
        changed = rec.conn.execute(
            "SELECT count(*) FROM proc_mem WHERE first > 1").fetchone()[0] / (len(live) - 1)
        jvals = rec.conn.execute(
            "SELECT count(*) FROM job_values WHERE first > 1").fetchone()[0] / (len(live) - 1)
        rec.add(objs[0], OBJECTS, time.time_ns())
        c0 = cpu()
        b_obj = per_sample_bytes(rec, objs[1:], OBJECTS)
        write_obj_cpu = (cpu() - c0) / (len(objs) - 1)
    nproc = len(live[-1].processes)
    share = min(1.0, changed / max(1, nproc))
    tot_cpu = collect_cpu + write_cpu
    obj_cpu = collect_obj_cpu + write_obj_cpu
    out.append(f"live machine: {nproc} processes, {len(live[-1].jobs)} jobs, "
               f"{len(objs[-1].vmos)} memory objects")
    out.append(f"  CPU: `zxmem ps` {ps_cpu * 1e3:.0f} ms (in-process {ps_inproc * 1e3:.0f} ms); "
               f"`zxmem memgraph -v` {mg_cpu * 1e3:.0f} ms")
    out.append(f"  CPU per totals sample: {tot_cpu * 1e3:.0f} ms ({collect_cpu * 1e3:.0f} "
               f"collect + {write_cpu * 1e3:.1f} write) = {tot_cpu / ps_cpu:.2f}x zxmem ps "
               f"({tot_cpu / ps_inproc:.2f}x in-process ps)  [goal <= 1.0x]")
    out.append(f"  CPU per objects sample: {obj_cpu * 1e3:.0f} ms ({collect_obj_cpu * 1e3:.0f} "
               f"collect + {write_obj_cpu * 1e3:.0f} write) = {obj_cpu / mg_cpu:.2f}x "
               "zxmem memgraph -v  [goal <= 1.2x]")
    out.append(f"  live samples 0.5 s apart: {changed:.1f} process rows ({share:.1%}) and "
               f"{jvals:.1f} cgroup values changed per sample; bytes per sample: totals "
               f"{b_tot:,.0f}, objects {b_obj:,.0f} (objects samples ~3 s apart)")

    # -- replay and diff of the live store --------------------------------
    last = len(live) + len(objs)
    t_tot = fastest(lambda: load_from_store(f"{path}@2"))
    t_obj = fastest(lambda: load_from_store(f"{path}@{last}"))
    denv = Environment(stdout=io.StringIO(), stderr=io.StringIO(), stdout_isatty=False)
    t_diff = fastest(lambda: main(["diff", f"{path}@{len(live) + 1}", f"{path}@{last}"],
                                  denv))
    t_diff_tot = fastest(lambda: main(["diff", f"{path}@1", f"{path}@{len(live)}"], denv))
    out.append(f"  replay of one sample: totals {t_tot * 1e3:.0f} ms, objects "
               f"{t_obj * 1e3:.0f} ms  [goal <= 300 ms]")
    out.append(f"  diff of two samples: totals {t_diff_tot * 1e3:.0f} ms, objects "
               f"{t_diff * 1e3:.0f} ms  [goal <= 500 ms]")

    # -- the scenario: 1,000 processes, 1% replaced ------------------
    rng = random.Random(1)
    results = {}
    for label, share_changed in (("1% replaced, others unchanged", 0.0),
                                 (f"1% replaced, {share:.1%} changed (live churn)", share)):
        snaps = synthetic_totals(live[-1], args.synthetic, args.synthetic_samples,
                                 share_changed, rng)
        spath = os.path.join(top, f"s{len(results)}.db")
        with Recorder(spath, print) as rec:
            rec.add(snaps[0], TOTALS, time.time_ns())
            first = used(rec)
            c0 = cpu()
            b = per_sample_bytes(rec, snaps[1:], TOTALS)
            w = (cpu() - c0) / (len(snaps) - 1)
        src = spath + f"@{len(snaps) // 2}"
        t = fastest(lambda src=src: load_from_store(src))
        results[label] = (b, first)
        out.append(f"synthetic {args.synthetic} processes, {label}, {len(snaps)} samples: "
                   f"{b:,.0f} bytes per totals sample  [goal <= 8 KB]; write CPU "
                   f"{w * 1e3:.1f} ms; replay {t * 1e3:.0f} ms; first sample {first:,} B")

    # Objects tier: the live graph, 1% of its processes replaced per sample.
    opath = os.path.join(top, "o.db")
    next_pid = [10_000_000]
    osnaps = [objs[-1]]
    for _ in range(args.object_samples):
        osnaps.append(replace_share(osnaps[-1], rng, 0.01, next_pid))
    with Recorder(opath, print) as rec:
        rec.add(osnaps[0], OBJECTS, time.time_ns())
        ofirst = used(rec)
        b_o = per_sample_bytes(rec, osnaps[1:], OBJECTS)
        # What the mappings (schema 4) add: their blobs, and the rows.
        m_rows, m_blob = rec.conn.execute(
            "SELECT count(*), coalesce(sum(length(maps)), 0) FROM mappings "
            "WHERE first > 1").fetchone()
        nmaps = sum(len(p.mappings or ()) for p in osnaps[-1].processes)
    out.append(f"objects tier, live graph ({len(objs[-1].processes)} processes, "
               f"{len(objs[-1].vmos)} objects), 1% of processes replaced per sample: "
               f"{b_o:,.0f} bytes per objects sample  [goal <= 50 KB]; first sample "
               f"{ofirst:,} B")
    k = len(osnaps) - 1
    out.append(f"  of which mappings ({nmaps:,} in all): {m_rows / k:.1f} new rows and "
               f"{m_blob / k:,.0f} B of blobs per sample ({m_blob / max(1, m_rows):,.0f} B "
               "a process)")
    t_maps = fastest(lambda: load_from_store(f"{opath}@{len(osnaps)}", mappings=True))
    pid = max(osnaps[-1].processes, key=lambda p: len(p.mappings or ())).koid
    venv = Environment(stdout=io.StringIO(), stderr=io.StringIO(), stdout_isatty=False)
    t_vmaps = fastest(lambda: main(["vmaps", "--from", f"{opath}@{len(osnaps)}", str(pid)],
                                   venv))
    out.append(f"  replay of that objects sample with every process's mappings "
               f"{t_maps * 1e3:.0f} ms (memgraph -v --from); `zxmem vmaps --from "
               f"STORE@N PID` (in-process, the PID with the most mappings) "
               f"{t_vmaps * 1e3:.0f} ms")

    # -- a week -------------------------------------------------------------
    b_t, first_t = results["1% replaced, others unchanged"]
    week_tot, week_obj = 7 * 86400 // 10 * 5 // 6, 7 * 86400 // 60
    # Each open row is copied again once it is its table's span old: the
    # totals rows (about the first totals sample's size) every SPAN samples,
    # the objects rows (about the first objects sample's) every span_of().
    every = week_tot + week_obj
    respan = (every / SPAN * first_t + every / span_of("anon_vmos", SPAN) * ofirst)
    week = week_tot * b_t + week_obj * b_o + respan
    out.append(f"a week at 10 s, objects every minute (extrapolated: {week_tot:,} totals x "
               f"{b_t:,.0f} B + {week_obj:,} objects x {b_o:,.0f} B + open rows copied "
               f"every {SPAN}/{span_of('anon_vmos', SPAN)} samples {respan / 1e6:.0f} MB): "
               f"{week / 1e6:.0f} MB")


if __name__ == "__main__":
    main_()
