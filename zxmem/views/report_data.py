"""The report page's time series: a pure function of a history store's rows.

:class:`StoreRows` holds the rows of the store (``zxmem.store.schema``)
that the charts need, already read: the samples, each process's versioned
PSS and job, the jobs' names, and a few kernel counters.  :func:`build`
turns them into the series the page draws:

* ``jobs``: each sample's PSS summed by the job (cgroup) each process was in
  at that sample; the ``top_jobs`` largest (by their peak) are series of their
  own, every other job is folded into one "other jobs" series;
* ``processes``: the ``top_processes`` processes with the largest peak PSS
  (a process is an identity, boot + PID + start time: a reused PID is another
  process) and one "other processes" series for the rest;
* ``system``: the kernel's totals split into four parts that add up to its
  total (MemTotal): free, processes (the sum of their PSS), page cache and
  other memory objects no process's PSS counts (the kernel's VMO total, LRU
  plus hugetlb pages, less the processes' PSS), and the kernel (the rest);
* ``events``: OOM kills and memory pressure, from the kernel counters
  :data:`OOM_KEYS` and :data:`PRESSURE_KEYS` when the store has them
  (``zxmem record`` keeps them in every sample where the kernel gives them:
  :data:`zxmem.collection.PRESSURE_KEYS`).  An OOM kill is marked at each
  sample whose ``oom_kill`` counter is higher than at the sample before (by
  how much); pressure is drawn from PSI's cumulative stall times (``some``
  and ``full`` ``total=``, microseconds): the share of the time between two
  drawn samples' readings (their capture times) that tasks stalled on
  memory, exact however far apart the samples are (PSI's avg10 is a 10 s
  running average a sparse series would only sample).  A counter that goes
  down (a reboot between the samples) gives no mark and no value there.

In both stacks the series of a sample add up to that sample's total PSS
(``samples.pss_bytes``: the sum over the processes whose PSS was read).  A
process whose PSS was unknown at a sample adds nothing there (unknown is
never 0: the total leaves it out as well).

Long stores are drawn with at most ``max_points`` points: the samples are cut
into runs of ``ceil(samples / max_points)`` consecutive samples and each run
is drawn as its sample with the largest total PSS, so every point is a real
sample (its stacks still add up to its total) and peaks are kept.
"""

from __future__ import annotations

import bisect
import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field

from zxmem import treemap as tm

# Kernel counters (kernel_values keys, "group:name": the writer keeps
# KernelStats.extra["oom_kill"] as "extra:oom_kill") the page marks on the
# time axis when a store holds them.  OOM: the count of OOM kills since boot
# (/proc/vmstat oom_kill); pressure: the microseconds since boot some task,
# resp. every non-idle task, stalled on memory (/proc/pressure/memory
# "some total=", "full total=").  See zxmem.collection.PRESSURE_KEYS.
OOM_KEY = "extra:oom_kill"
OOM_KEYS = (OOM_KEY,)
PRESSURE_SOME_KEY = "extra:psi_some_total_us"
PRESSURE_FULL_KEY = "extra:psi_full_total_us"
PRESSURE_KEYS = (PRESSURE_SOME_KEY, PRESSURE_FULL_KEY)
PRESSURE_SOME_LABEL = "some: % of the time some task stalled on memory"
PRESSURE_FULL_LABEL = "full: % of the time every non-idle task stalled on memory"
# The kernel totals the "system" stack is made from.
TOTAL_KEY, FREE_KEY, VMO_KEY = "col:total_bytes", "col:free_bytes", "col:vmo_bytes"
KERNEL_KEYS = (TOTAL_KEY, FREE_KEY, VMO_KEY) + OOM_KEYS + PRESSURE_KEYS

OTHER_JOBS = "other jobs"
OTHER_PROCESSES = "other processes"
NO_JOB = "(no job)"


@dataclass(frozen=True)
class StoreRows:
    """The rows :func:`build` reads (see :mod:`zxmem.store.schema`).

    Versioned rows are valid from sample ``first`` to ``last`` inclusive
    (``last`` None: to the newest sample).
    """

    # (n, time_ns, pss_bytes): every sample, in order of n.
    samples: Sequence[tuple[int, int, int | None]]
    # (process entity, first, last, pss_bytes or None)
    proc_mem: Sequence[tuple[int, int, int | None, int | None]]
    # (process entity, first, last, name, job koid)
    proc_info: Sequence[tuple[int, int, int | None, str, int]]
    # process entity -> PID
    pids: Mapping[int, int]
    # job koid -> its label (cgroup path, or name)
    jobs: Mapping[int, str]
    # kernel counter key ("col:total_bytes") -> (first, last, value) rows
    kernel: Mapping[str, Sequence[tuple[int, int | None, int | None]]] = field(
        default_factory=dict)
    # sample n -> when its collection began (samples.capture_ns: CLOCK_BOOTTIME,
    # just before the kernel counters were read; absent: unknown).  The
    # samples' time_ns is when the collection ended, later for an objects
    # sample than for a totals one, so only these give the time between two
    # readings of the PSI totals.
    capture_ns: Mapping[int, int] = field(default_factory=dict)


@dataclass
class Series:
    label: str
    values: Sequence[float | None]  # bytes (integers), or a percentage for pressure
    key: str = ""  # "p:PID", "j:KOID", or "" for folded/system series


@dataclass
class ReportData:
    times_ns: list[int]  # the drawn samples' times
    sample_ns: list[int]  # the drawn samples' numbers
    totals: list[int | None]  # each drawn sample's total PSS (samples.pss_bytes)
    jobs: list[Series]
    processes: list[Series]
    system: list[Series]  # free, processes, cache & objects, kernel (empty: no kernel data)
    oom_events: list[tuple[int, int, int]]  # (time_ns, sample n, kills since last sample)
    # OOM kills at each drawn sample since the one drawn before it (the
    # first: at or before it); None: the store has no OOM counter.
    oom_points: list[int] | None
    # PSI some and full: % of the time between a drawn sample and the one
    # drawn before it that tasks stalled on memory (None: not known there).
    pressure: list[Series]  # empty: the store has no PSI totals
    notes: list[str]
    sample_count: int
    step: int  # consecutive samples per drawn point (1: every sample)

    def to_json(self) -> dict:
        def ser(s: Series) -> dict:
            return {"label": s.label, "key": s.key, "values": s.values}

        return {
            "times_s": [t / 1e9 for t in self.times_ns],
            "samples": self.sample_ns,
            "totals": self.totals,
            "jobs": [ser(s) for s in self.jobs],
            "processes": [ser(s) for s in self.processes],
            "system": [ser(s) for s in self.system],
            "oom": [{"time_s": t / 1e9, "sample": n, "kills": k} for t, n, k in self.oom_events],
            "oom_points": self.oom_points,
            "pressure": [ser(s) for s in self.pressure] or None,
            "notes": self.notes,
            "sample_count": self.sample_count,
            "step": self.step,
        }


class _Index:
    """Sample numbers -> positions 0..N-1 (numbers may have gaps)."""

    def __init__(self, ns: Sequence[int]) -> None:
        self.ns = list(ns)
        self.size = len(self.ns)

    def span(self, first: int, last: int | None) -> tuple[int, int]:
        """Positions [lo, hi) of the samples a row from first to last covers."""
        lo = bisect.bisect_left(self.ns, first)
        hi = self.size if last is None else bisect.bisect_right(self.ns, last)
        return lo, hi


def _add(diff: list[int], lo: int, hi: int, value: int) -> None:
    diff[lo] += value
    diff[hi] -= value


def _running(diff: list[int], size: int) -> list[int]:
    out = [0] * size
    acc = 0
    for i in range(size):
        acc += diff[i]
        out[i] = acc
    return out


def _expand(rows: Sequence[tuple[int, int | None, int | None]], index: _Index
            ) -> list[int | None]:
    """A kernel counter's value at each sample (None where it has none)."""
    out: list[int | None] = [None] * index.size
    for first, last, value in rows:
        lo, hi = index.span(first, last)
        for i in range(lo, hi):
            out[i] = value
    return out


def build(rows: StoreRows, *, top_jobs: int = 10, top_processes: int = 12,
          max_points: int = 2000) -> ReportData:
    """The page's series from the store's rows (see the module's doc)."""
    samples = list(rows.samples)
    index = _Index([s[0] for s in samples])
    size = index.size
    notes: list[str] = []
    segments, name_of = _job_segments(rows, index)
    spans_of, peak = _pss_spans(rows, index)

    # Processes: the largest peaks, then the rest folded into one series.
    ranked = sorted(peak, key=lambda e: (-peak[e], e))
    top = ranked[:max(0, top_processes)]
    by_proc, other_proc, by_job = _sums(spans_of, top, segments, size)
    proc_series = []
    for ent in top:
        pid = rows.pids.get(ent)
        name = name_of.get(ent, (0, "?"))[1]
        proc_series.append(Series(f"{name} ({pid})", _running(by_proc[ent], size),
                                  f"p:{pid}"))
    if len(ranked) > len(top):
        proc_series.append(Series(f"{OTHER_PROCESSES} ({len(ranked) - len(top)})",
                                  _running(other_proc, size)))
    job_series = _job_series(rows, by_job, top_jobs, size)

    totals = [s[2] for s in samples]
    proc_total = [0] * size
    for ps in proc_series:
        for i, val in enumerate(ps.values):
            proc_total[i] += int(val or 0)

    system = _system(rows, index, proc_total, notes)
    oom = _oom(rows, index, samples, notes)
    step, keep = _downsampled(totals, max_points, notes)

    def pick(values: Sequence) -> list:
        return [values[i] for i in keep] if step > 1 else list(values)

    def picked(series: list[Series]) -> list[Series]:
        return [Series(s.label, pick(s.values), s.key) for s in series]

    times_ns = pick([s[1] for s in samples])
    oom_points = _per_point(oom, keep, samples) if rows.kernel.get(OOM_KEY) else None
    pressure = _pressure(rows, index, keep, samples, notes)

    return ReportData(
        times_ns=times_ns,
        sample_ns=pick([s[0] for s in samples]),
        totals=pick(totals),
        jobs=picked(job_series),
        processes=picked(proc_series),
        system=picked(system),
        oom_events=oom,
        oom_points=oom_points,
        pressure=pressure,
        notes=notes,
        sample_count=size,
        step=step,
    )


_Segments = dict[int, tuple[list[int], list[tuple[int, int, int]]]]


def _job_segments(rows: StoreRows, index: _Index
                  ) -> tuple[_Segments, dict[int, tuple[int, str]]]:
    """Each process's job over time, by entity: segments [a, b) of sample
    positions with their job, in order, and their ends; rows reopened
    unchanged (every SPAN samples) merge into one segment.  And each
    process's newest name (with the sample it is from)."""
    info_by_ent: dict[int, list[tuple[int, int | None, int]]] = {}
    name_of: dict[int, tuple[int, str]] = {}  # ent -> (first, newest name)
    for ent, first, last, name, job in rows.proc_info:
        info_by_ent.setdefault(ent, []).append((first, last, job))
        prev = name_of.get(ent)
        if prev is None or first >= prev[0]:
            name_of[ent] = (first, name)
    segments: _Segments = {}
    for ent, spans in info_by_ent.items():
        segs: list[tuple[int, int, int]] = []
        for first, last, job in sorted(spans, key=lambda r: r[0]):
            a, b = index.span(first, last)
            if a >= b:
                continue
            if segs and segs[-1][2] == job and segs[-1][1] >= a:
                segs[-1] = (segs[-1][0], max(b, segs[-1][1]), job)
            else:
                segs.append((a, b, job))
        segments[ent] = ([sg[1] for sg in segs], segs)
    return segments, name_of


def _pss_spans(rows: StoreRows, index: _Index
               ) -> tuple[list[tuple[int, int, int, int]], dict[int, int]]:
    """The PSS rows as sample positions (entity, lo, hi, pss); each
    process's peak."""
    spans_of: list[tuple[int, int, int, int]] = []
    peak: dict[int, int] = {}
    for ent, first, last, pss in rows.proc_mem:
        if pss is None:
            continue  # unknown: left out, as the sample's total leaves it out
        lo, hi = index.span(first, last)
        if lo >= hi:
            continue
        spans_of.append((ent, lo, hi, pss))
        if pss > peak.get(ent, -1):
            peak[ent] = pss
    return spans_of, peak


def _sums(spans_of: list[tuple[int, int, int, int]], top: list[int], segments: _Segments,
          size: int) -> tuple[dict[int, list[int]], list[int], dict[int | None, list[int]]]:
    """The PSS of each top process, of the others, and of each job (None: no
    job), as differences between sample positions (:func:`_running`)."""
    by_proc: dict[int, list[int]] = {ent: [0] * (size + 1) for ent in top}
    other_proc = [0] * (size + 1)
    by_job: dict[int | None, list[int]] = {}

    def job_diff(job: int | None) -> list[int]:
        jd = by_job.get(job)
        if jd is None:
            jd = by_job[job] = [0] * (size + 1)
        return jd

    for ent, lo, hi, pss in spans_of:
        _add(by_proc.get(ent, other_proc), lo, hi, pss)
        # The job(s) the process was in while this row held; a part no info
        # row covers (a damaged store) goes to no job.
        ends, segs = segments.get(ent, ([], []))
        pos = lo
        for k in range(bisect.bisect_right(ends, lo), len(segs)):
            a, b, job = segs[k]
            if a >= hi:
                break
            a = max(a, lo)
            if a > pos:
                _add(job_diff(None), pos, a, pss)
            b = min(b, hi)
            _add(job_diff(job), a, b, pss)
            pos = b
        if pos < hi:
            _add(job_diff(None), pos, hi, pss)
    return by_proc, other_proc, by_job


def _job_series(rows: StoreRows, by_job: dict[int | None, list[int]], top_jobs: int,
                size: int) -> list[Series]:
    """Jobs: the largest peaks of their sums, then the rest folded."""
    job_values = {job: _running(d, size) for job, d in by_job.items()}
    job_rank = sorted(job_values, key=lambda j: (-max(job_values[j], default=0),
                                                 -1 if j is None else j))
    top_j = [j for j in job_rank if j is not None][:max(0, top_jobs)]
    rest = [j for j in job_rank if j not in top_j]
    job_series = [Series(rows.jobs.get(j, f"job {j}"), job_values[j], f"j:{j}") for j in top_j]
    if rest:
        folded = [0] * size
        for j in rest:
            v = job_values[j]
            for i in range(size):
                folded[i] += v[i]
        label = OTHER_JOBS if None not in rest else f"{OTHER_JOBS} and {NO_JOB}"
        job_series.append(Series(f"{label} ({len(rest)})", folded))
    return job_series


def _downsampled(totals: list, max_points: int, notes: list[str]) -> tuple[int, list[int]]:
    """Downsampling: each run of ``step`` samples drawn as its largest
    total; (step, the positions kept)."""
    size = len(totals)
    step = max(1, math.ceil(size / max_points)) if max_points > 0 else 1
    if step == 1:
        return step, list(range(size))
    keep = []
    for start in range(0, size, step):
        run = range(start, min(size, start + step))
        keep.append(max(run, key=lambda i: (totals[i] if totals[i] is not None else -1, -i)))
    notes.append(
        f"{size} samples drawn as {len(keep)} points: each point is the sample with the "
        f"largest total PSS of {step} consecutive samples (values are that sample's own)")
    return step, keep


def _system(rows: StoreRows, index: _Index, proc_total: list[int], notes: list[str]
            ) -> list[Series]:
    size = index.size
    total = _expand(rows.kernel.get(TOTAL_KEY, ()), index)
    free = _expand(rows.kernel.get(FREE_KEY, ()), index)
    vmo = _expand(rows.kernel.get(VMO_KEY, ()), index)
    if all(t is None for t in total):
        notes.append("no kernel totals in this store: the kernel / processes / free chart "
                     "is left out")
        return []
    s_free: list[int | None] = [None] * size
    s_proc: list[int | None] = [None] * size
    s_cache: list[int | None] = [None] * size
    s_kernel: list[int | None] = [None] * size
    clamped = 0
    for i in range(size):
        t, f = total[i], free[i]
        if t is None or f is None:
            continue
        p = proc_total[i]
        v = vmo[i]
        cache = 0 if v is None else v - p
        kernel = t - f - p - max(cache, 0)
        if cache < 0 or kernel < 0:
            clamped += 1
        cache = max(cache, 0)
        kernel = t - f - p - cache
        if kernel < 0:
            kernel = 0
        s_free[i], s_proc[i], s_cache[i], s_kernel[i] = f, p, cache, kernel
    if clamped:
        notes.append(f"at {clamped} samples the processes' PSS was more than the kernel's "
                     "VMO total (or than total - free): that part is drawn as 0")
    if all(v is None for v in vmo):
        notes.append("no VMO total in this store: page cache is counted with the kernel")
    return [
        Series("kernel (slab, page tables, stacks, other)", s_kernel),
        Series("page cache & objects no PSS counts", s_cache),
        Series("processes (PSS)", s_proc),
        Series("free", s_free),
    ]


def _counter(rows: StoreRows, keys: Sequence[str], index: _Index
             ) -> tuple[str, list[int | None]] | None:
    for key in keys:
        got = rows.kernel.get(key)
        if got:
            return key, _expand(got, index)
    return None


def _oom(rows: StoreRows, index: _Index, samples: Sequence[tuple[int, int, int | None]],
         notes: list[str]) -> list[tuple[int, int, int]]:
    found = _counter(rows, OOM_KEYS, index)
    if found is None:
        notes.append("this store has no OOM-kill counter (recorded without /proc/vmstat "
                     "oom_kill): no OOM events are marked")
        return []
    _key, values = found
    out = []
    prev: int | None = None
    for i, v in enumerate(values):
        if v is not None and prev is not None and v > prev:
            out.append((samples[i][1], samples[i][0], v - prev))
        if v is not None:
            prev = v
    return out


def _per_point(events: Sequence[tuple[int, int, int]], keep: Sequence[int],
               samples: Sequence[tuple[int, int, int | None]]) -> list[int]:
    """The kills of ``events`` (time, sample n, kills) at each drawn sample
    (positions ``keep``) since the sample drawn before it.  An event after
    the last drawn sample (only when downsampled) is in no point; the page
    still marks it at its own time."""
    ns = [samples[i][0] for i in keep]
    out = [0] * len(keep)
    for _t, n, kills in events:
        k = bisect.bisect_left(ns, n)
        if k < len(out):
            out[k] += kills
    return out


def _pressure(rows: StoreRows, index: _Index, keep: Sequence[int],
              samples: Sequence[tuple[int, int, int | None]], notes: list[str]) -> list[Series]:
    """PSI some and full at the drawn samples ``keep`` (positions): the stall
    time between the drawn sample before and this one over the time between
    their readings (their capture times; their times when a sample has none),
    in percent."""
    def apart_ns(i: int, j: int) -> int:
        a, b = samples[i][0], samples[j][0]
        if a in rows.capture_ns and b in rows.capture_ns:
            return rows.capture_ns[b] - rows.capture_ns[a]
        return samples[j][1] - samples[i][1]

    out = []
    for key, label in ((PRESSURE_SOME_KEY, PRESSURE_SOME_LABEL),
                       (PRESSURE_FULL_KEY, PRESSURE_FULL_LABEL)):
        got = rows.kernel.get(key)
        if not got:
            continue
        total = _expand(got, index)
        drawn = [total[i] for i in keep]
        values: list[float | None] = [None] * len(keep)
        for k in range(1, len(keep)):
            a, b = drawn[k - 1], drawn[k]
            dt_us = apart_ns(keep[k - 1], keep[k]) / 1000
            if a is None or b is None or dt_us <= 0 or b < a:
                continue
            values[k] = round(100 * (b - a) / dt_us, 3)
        out.append(Series(label, values))
    if not out:
        notes.append("this store has no memory pressure counter (recorded without "
                     "/proc/pressure/memory: a kernel without PSI): no pressure is drawn")
    return out


SMALLER_OBJECTS = "smaller objects"


def prune_tree(root: tm.Node, max_nodes: int) -> int:
    """Fold the smallest memory objects of a treemap tree (:mod:`zxmem.treemap`)
    so it has at most about ``max_nodes`` nodes; how many objects were folded.

    The objects kept are the largest over the whole tree; the others of each
    parent (a process, the hidden branch) become one box ``smaller
    objects[k]`` of their summed area, so every process and job keeps its
    area and the tree its totals.
    """
    leaf_kinds = (tm.KIND_VMO, tm.KIND_AGGREGATE, tm.KIND_HIDDEN, tm.KIND_ESTIMATE)

    def is_object(node: tm.Node) -> bool:
        return node.kind in leaf_kinds and node.id != "kernel/vmo/hidden"

    count = 0
    candidates: list[tuple[int, int, tm.Node, tm.Node]] = []  # (-area, order, parent, child)
    for _depth, node in root.walk():
        count += 1
        if is_object(node):
            continue  # inside an object: counted, never a parent of candidates
        for child in node.children:
            if is_object(child):
                candidates.append((-(child.area or 0), len(candidates), node, child))
    if count <= max_nodes:
        return 0
    sizes = {id(c): sum(1 for _ in c.walk()) for _a, _o, _p, c in candidates}
    budget = max(0, max_nodes - (count - sum(sizes.values())))
    candidates.sort(key=lambda t: (t[0], t[1]))
    dropped: dict[int, tuple[tm.Node, list[tm.Node]]] = {}
    used = 0
    for _a, _o, parent, child in candidates:
        n = sizes[id(child)]
        if used + n + 1 <= budget:  # +1: room for a parent's folded box
            used += n
            continue
        dropped.setdefault(id(parent), (parent, []))[1].append(child)
    folded = 0
    for parent, children in dropped.values():
        gone = {id(c) for c in children}
        parent.children = [c for c in parent.children if id(c) not in gone]
        parent.children.append(tm.Node(
            f"{parent.id}/smaller", "vmo", f"{SMALLER_OBJECTS}[{len(children)}]",
            tm.KIND_AGGREGATE, area=sum(c.area or 0 for c in children), count=len(children),
            defined=True))
        parent.children.sort(key=lambda n: (-(n.area or 0), n.name, n.id))
        folded += len(children)
    return folded
