"""What the history store costs, beside what it is measured against, in one run.

    python bench/history_bench.py [--samples 8] [--synthetic 1000] [--workload 1000]
    python bench/history_bench.py --replay-only [--objects-graph STORE[@N]]

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
  ``zxmem diff`` of two objects samples, each the fastest of three, of the
  live store and of the issue's objects scenario (the live graph, 1% of its
  processes replaced per sample): ``zxmem ps --from``, ``zxmem vmos
  --from`` and ``zxmem vmaps --from`` of one sample (goal <= 0.3 s),
  ``zxmem kstats --from`` and ``zxmem memgraph --from`` of one sample
  (goal <= 0.3 s), ``zxmem diff`` of two (goal <= 0.5 s), in-process and
  as commands (interpreter start-up included); the whole replay of an
  objects sample (every object and reference built: ``read_sample``
  in-process, goal <= 0.3 s; with every process's mappings too, which the
  issue's tier does not hold, no goal); the views of the whole graph
  (``digest``, ``mem``, ``memgraph -v --from``: the whole replay plus the
  view's own work, no goal of their own); the bytes the mappings add to an
  objects sample;
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
from zxmem.store.reader import read_sample  # noqa: E402
from zxmem.store.recorder import Recorder  # noqa: E402
from zxmem.store.schema import SPAN, open_store, span_of  # noqa: E402
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


def _objects_graph(args: argparse.Namespace, objs: list[Snapshot]) -> Snapshot:
    """The objects graph of the scenario: ``--objects-graph``'s sample, else
    the newest live one (collected now if none was)."""
    if args.objects_graph:
        # With its mappings, as a live graph has them (an objects sample
        # keeps them; memgraph -v --from reads them).
        graph = load_from_store(args.objects_graph, mappings=True)
        if graph is None or not graph.vmos:
            raise SystemExit(f"{args.objects_graph}: not an objects sample of a store")
        return graph
    return objs[-1] if objs else zxmem.collect(plan_for(OBJECTS))


def _objects_scenario(args: argparse.Namespace, graph: Snapshot, top: str, out: list[str],
                      rng: random.Random) -> tuple[float, int]:
    """The issue's objects tier: ``graph`` with 1% of its processes replaced
    per sample; bytes per sample, then replay and diff against their goals.
    (Bytes per objects sample, bytes of the first sample.)"""
    opath = os.path.join(top, "o.db")
    next_pid = [10_000_000]
    osnaps = [graph]
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
    nrefs = sum(len(p.vmo_refs or ()) for p in graph.processes)
    out.append(f"objects tier, {'saved' if args.objects_graph else 'live'} graph "
               f"({len(graph.processes)} processes, {len(graph.vmos)} objects, {nrefs} "
               f"references), 1% of processes replaced per sample: {b_o:,.0f} bytes per "
               f"objects sample  [goal <= 50 KB]; first sample {ofirst:,} B")
    k = len(osnaps) - 1
    nmaps = sum(len(p.mappings or ()) for p in osnaps[-1].processes)
    out.append(f"  of which mappings ({nmaps:,} in all): {m_rows / k:.1f} new rows and "
               f"{m_blob / k:,.0f} B of blobs per sample ({m_blob / max(1, m_rows):,.0f} B "
               "a process)")
    # Replay and diff, each the fastest of three: in-process (main(), what
    # the command does after start-up) and as a command.
    mid = len(osnaps) // 2 + 1
    at = f"{opath}@{mid}"
    # vmos of a process in the middle of the table, one with references.
    with_refs = [p.koid for p in osnaps[mid - 1].processes if p.vmo_refs]
    pid = str(with_refs[len(with_refs) // 2])
    a, b = f"{opath}@2", f"{opath}@{len(osnaps)}"
    # A goal of None: a view of the whole object graph, i.e. the whole
    # replay (timed alone above, goal 0.3 s) plus the view's own work, which
    # is the same as on a live snapshot: timed, with no goal of its own.
    runs = [("replay", "zxmem ps --from STORE@N", ["ps", "--from", at], 0.3),
            ("replay", "zxmem kstats --from STORE@N", ["kstats", "--from", at], 0.3),
            ("replay", "zxmem memgraph --from STORE@N", ["memgraph", "--from", at], 0.3),
            ("replay", "zxmem vmos --from STORE@N PID", ["vmos", "--from", at, pid], 0.3),
            ("replay", "zxmem vmaps --from STORE@N PID", ["vmaps", "--from", at, pid], 0.3),
            ("view", "zxmem digest --from STORE@N (whole replay + the digest)",
             ["digest", "--from", at], None),
            ("view", "zxmem mem --from STORE@N (whole replay + the summary)",
             ["mem", "--from", at], None),
            ("view", "zxmem memgraph -v --from STORE@N (+ every mapping, 50 MB of JSON)",
             ["memgraph", "-v", "--from", at], None),
            ("diff", "zxmem diff STORE@A STORE@B", ["diff", a, b], 0.5),
            ("diff", "zxmem diff --by process", ["diff", a, b, "--by", "process"], 0.5),
            ("diff", "zxmem diff --by object", ["diff", a, b, "--by", "object"], 0.5)]
    out.append(f"  replay and diff of that store (samples {mid}; 2 and {len(osnaps)}, "
               f"{len(osnaps) - 2} samples apart), fastest of 3, at {uptime()}:")
    startup = fastest(lambda: command_wall(["--version"]))
    out.append(f"    (start-up: `zxmem --version` takes {startup * 1e3:.0f} ms as a command)")
    # The whole replay alone: every object and reference built (what
    # digest, treemap and memgraph --from read), and with every process's
    # mappings (memgraph -v --from).
    conn = open_store(opath, create=False, readonly=True)
    try:
        # The objects tier is objects and references; the mappings
        # (schema 4, for vmaps) are read only by the views that show them.
        for label, kw in (("read_sample(STORE, N): every object and reference", {}),
                          ("read_sample(STORE, N, mappings=True): and every mapping",
                           {"mappings": True})):
            t_read = fastest(lambda kw=kw: read_sample(conn, mid, **kw))
            verdict = "met" if t_read <= 0.3 else "NOT met"
            mark = f"goal <= 300 ms: {verdict}" if not kw else "beyond the tier: no goal"
            out.append(f"    whole replay in-process, {label}: {t_read * 1e3:.0f} ms  [{mark}]")
    finally:
        conn.close()
    for _kind, label, argv, goal in runs:
        env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), stdout_isatty=False)
        t_in = fastest(lambda argv=argv, env=env: main(argv, env))
        t_cmd = fastest(lambda argv=argv: command_wall(argv))
        if goal is None:
            mark = "a view of the whole graph: no goal of its own"
        else:
            mark = f"goal <= {goal * 1e3:.0f} ms: " + ("met" if t_in <= goal else "NOT met")
        out.append(f"    {label}: {t_in * 1e3:.0f} ms in-process, {t_cmd * 1e3:.0f} ms as a "
                   f"command  [{mark}]")
    return b_o, ofirst


def command_wall(args: list[str]) -> None:
    """Run ``zxmem ARGS`` (output discarded)."""
    zxmem_bin = os.path.join(os.path.dirname(sys.executable), "zxmem")
    cmd = [zxmem_bin] if os.path.exists(zxmem_bin) else [sys.executable, "-m", "zxmem"]
    subprocess.run(cmd + args, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, check=True)


def main_() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=8, help="live totals samples")
    ap.add_argument("--synthetic", type=int, default=1000)
    ap.add_argument("--synthetic-samples", type=int, default=100)
    ap.add_argument("--object-samples", type=int, default=6,
                    help="synthetic objects samples (1%% replaced each)")
    ap.add_argument("--replay-only", action="store_true",
                    help="only the replay and diff of the objects scenario (no CPU or bytes)")
    ap.add_argument("--objects-graph", metavar="STORE[@N]",
                    help="take the objects graph from a sample of a store (e.g. one "
                    "recorded while bench/workload.py ran) instead of the live machine")
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
        if args.replay_only:
            _objects_scenario(args, _objects_graph(args, []), top, out, random.Random(1))
        else:
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
    out.append(f"  live store: whole replay of one sample (every object built): totals "
               f"{t_tot * 1e3:.0f} ms, objects {t_obj * 1e3:.0f} ms; zxmem diff of two "
               f"samples: totals {t_diff_tot * 1e3:.0f} ms, objects {t_diff * 1e3:.0f} ms")

    # -- the scenario: 1,000 processes, 1% replaced ------------------
    rng = random.Random(1)
    results: dict[str, tuple[float, int]] = {}
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

    b_o, ofirst = _objects_scenario(args, _objects_graph(args, objs), top, out, rng)

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
