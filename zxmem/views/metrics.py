"""Prometheus metric families from a snapshot (``zxmem exporter`` and
``zxmem metrics``).  A pure function of a :class:`~zxmem.model.Snapshot`:
the commands collect, call :func:`families`, and serve or print the result.

The rules the names follow:

* base units (bytes, seconds), ``_total`` only for counters;
* one metric per meaning, so that a ``sum()`` over a metric's series means
  something: process groups partition the readable processes (groups past
  the cap are folded into one ``(other)`` group, never dropped), and the
  kernel kinds do not overlap, so

      sum(zxmem_kernel_bytes) + zxmem_memory_free_bytes
          + sum(zxmem_process_pss_bytes) == zxmem_memory_total_bytes

  holds exactly (the kind ``unmapped_objects`` is the LRU and hugetlb pages
  no readable process's PSS accounts for);
* an unknown value (denied, not collected) is never exported as 0: its
  series is left out and the processes left out are counted
  (``zxmem_processes_unreadable``);
* label values are raw names; ``prometheus_client`` escapes backslashes,
  double quotes and newlines in the exposition formats.

The functions import ``prometheus_client`` when called; only the exporter
and metrics commands call them.
"""

from __future__ import annotations

import os
from collections.abc import Iterable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from zxmem.fields import describe
from zxmem.model import Job, KernelStats, Process, Snapshot
from zxmem.tasktree import TaskTree

if TYPE_CHECKING:
    from prometheus_client.core import Metric

GROUP_BY = ("comm", "exe", "cgroup", "user")
OTHER_GROUP = "(other)"

# Defaults that bound the number of series (README "fleet").
DEFAULT_MAX_GROUPS = 100
DEFAULT_MAX_CGROUPS = 200
DEFAULT_MAX_PIDS = 50

# Kernel kinds, by the name of the reconciliation term (views/kstats.py)
# they come from.  MemFree is zxmem_memory_free_bytes; the LRU and hugetlb
# terms become one kind less the processes' PSS.
_OBJECT_TERMS = ("Active", "Inactive", "Unevictable", "Hugetlb")
_KIND_OF_TERM = {
    "Slab": "slab",
    "VmallocUsed": "vmalloc",
    "Percpu": "percpu",
    "KReclaimable - SReclaimable": "kreclaimable_other",
    "KernelStack (outside vmalloc)": "kernel_stack",
    "PageTables": "page_tables",
    "SecPageTables": "secondary_page_tables",
    "Zswap": "zswap",
    "Balloon": "balloon",
    "Unaccepted": "unaccepted",
    "remainder": "other",
}
KERNEL_KIND_HELP = (
    "Memory by kind, kinds that do not overlap (bytes): unmapped_objects = "
    "Active + Inactive + Unevictable + Hugetlb (/proc/meminfo) minus the PSS "
    "of every readable process (page cache, tmpfs and memfd pages no process "
    "maps, and the PSS of unreadable processes); slab, vmalloc, percpu, "
    "kreclaimable_other, kernel_stack, page_tables, secondary_page_tables, "
    "zswap, balloon, unaccepted as in zxmem kstats --explain; other = the "
    "remainder in no counter. sum(zxmem_kernel_bytes) + zxmem_memory_free_bytes "
    "+ sum(zxmem_process_pss_bytes) = zxmem_memory_total_bytes."
)


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    group_by: str = "comm"
    max_groups: int = DEFAULT_MAX_GROUPS  # groups past it fold into "(other)"
    max_cgroups: int = DEFAULT_MAX_CGROUPS  # cgroups past it are left out (counted)
    per_pid: bool = False
    max_pids: int = DEFAULT_MAX_PIDS
    objects: int = 0  # memory objects exported (the largest), 0: none


@dataclass(frozen=True, slots=True)
class SelfStats:
    """The exporter's own numbers (not part of a snapshot)."""

    version: str
    duration_seconds: float | None = None
    errors_total: int = 0
    collections_total: int = 0


def group_key(p: Process, group_by: str, cgroup_path: str) -> str:
    """The group a process is counted in (raw text)."""
    if group_by == "comm":
        return p.name
    if group_by == "exe":
        # argv[0] as started (/proc/PID/exe is not read); the comm when the
        # command line is empty or unknown (zombies, some daemons).
        if p.cmdline and p.cmdline[0]:
            return os.path.basename(p.cmdline[0]) or p.cmdline[0]
        return f"[{p.name}]"
    if group_by == "cgroup":
        return cgroup_path
    if group_by == "user":
        return str(p.uid) if p.uid is not None else "unknown"
    raise ValueError(f"group_by {group_by!r}")


@dataclass(slots=True)
class _Sum:
    count: int = 0
    pss: int = 0
    private: int | None = 0
    rss: int | None = 0
    swap_pss: int | None = 0


def _add(total: int | None, value: int | None) -> int | None:
    if total is None or value is None:
        return None
    return total + value


def _process_groups(snapshot: Snapshot, options: MetricsOptions,
                    paths: dict[int, str]) -> tuple[dict[str, _Sum], int]:
    groups: dict[str, _Sum] = {}
    unreadable = 0
    for p in snapshot.processes:
        if p.kernel_thread:
            continue
        m = p.memory
        if m is None or m.pss_bytes is None:
            unreadable += 1
            continue
        key = group_key(p, options.group_by, paths.get(p.job_koid, ""))
        s = groups.setdefault(key, _Sum())
        s.count += 1
        s.pss += m.pss_bytes
        s.private = _add(s.private, m.private_bytes)
        s.rss = _add(s.rss, m.rss_bytes)
        s.swap_pss = _add(s.swap_pss, m.swap_pss_bytes)
    if len(groups) > options.max_groups:
        # The largest max_groups - 1 stay; the rest are summed into one
        # "(other)" group (with any real group of that name), so the sum
        # over groups is still every readable process.
        ranked = sorted(groups.items(), key=lambda kv: (-kv[1].pss, kv[0]))
        keep = max(options.max_groups - 1, 0)
        kept: dict[str, _Sum] = {}
        other = _Sum()
        for i, (key, s) in enumerate(ranked):
            if i < keep and key != OTHER_GROUP:
                kept[key] = s
            else:
                other = _merge(other, s)
        kept[OTHER_GROUP] = other
        groups = kept
    return groups, unreadable


def _merge(a: _Sum, b: _Sum) -> _Sum:
    return _Sum(a.count + b.count, a.pss + b.pss, _add(a.private, b.private),
                _add(a.rss, b.rss), _add(a.swap_pss, b.swap_pss))


def kernel_kinds(stats: KernelStats, processes_pss: int) -> dict[str, int | None]:
    """The non-overlapping kinds of :data:`KERNEL_KIND_HELP` (free and the
    processes' PSS apart), from the reconciliation of ``kstats --explain``."""
    from zxmem.views.kstats import reconciliation_terms

    kinds: dict[str, int | None] = {}
    objects: int | None = -processes_pss
    for term in reconciliation_terms(stats):
        if term.name == "MemFree":
            continue
        if term.name in _OBJECT_TERMS:
            objects = _add(objects, term.value_bytes)
            continue
        kind = _KIND_OF_TERM.get(term.name)
        if kind is None:  # a term this table does not know yet: its own kind
            kind = "".join(c if c.isalnum() else "_" for c in term.name.lower()).strip("_")
        kinds[kind] = _add(kinds.get(kind, 0), term.value_bytes)
    return {"unmapped_objects": objects, **kinds}


def families(snapshot: Snapshot, options: MetricsOptions | None = None) -> list[Metric]:
    """Every metric family of one snapshot, in a fixed order."""
    options = options or MetricsOptions()
    paths = {j.koid: (j.path or j.name) for j in snapshot.jobs}
    groups, unreadable = _process_groups(snapshot, options, paths)
    out = _group_families(groups, unreadable, options)
    if options.per_pid:
        out.append(_pid_family(snapshot, options))
    out += _cgroup_families(snapshot, options)
    if snapshot.kernel is not None:
        out += _kernel_families(snapshot.kernel, sum(g.pss for g in groups.values()))
    return out


def _group_families(groups: dict, unreadable: int, options: MetricsOptions) -> list[Metric]:
    """The process groups' families, and the count of unreadable processes."""
    from prometheus_client.core import GaugeMetricFamily

    label = ["group"]
    by = f" Processes grouped by {options.group_by}."
    pss = GaugeMetricFamily("zxmem_process_pss_bytes",
                            describe("pss_bytes") + by + " Sums to all readable processes.",
                            labels=label, unit="bytes")
    uss = GaugeMetricFamily("zxmem_process_uss_bytes",
                            "Unique set size: " + describe("private_bytes") + by,
                            labels=label, unit="bytes")
    rss = GaugeMetricFamily("zxmem_process_rss_bytes",
                            describe("rss_bytes") + by + " Shared pages count once per "
                            "process: do not sum.", labels=label, unit="bytes")
    swap = GaugeMetricFamily("zxmem_process_swap_pss_bytes",
                             describe("swap_pss_bytes") + by, labels=label, unit="bytes")
    count = GaugeMetricFamily("zxmem_processes",
                              "Readable processes in the group." + by, labels=label)
    for key in sorted(groups):
        s = groups[key]
        pss.add_metric([key], s.pss)
        count.add_metric([key], s.count)
        if s.private is not None:
            uss.add_metric([key], s.private)
        if s.rss is not None:
            rss.add_metric([key], s.rss)
        if s.swap_pss is not None:
            swap.add_metric([key], s.swap_pss)
    unread = GaugeMetricFamily(
        "zxmem_processes_unreadable",
        "Processes whose memory is unknown (smaps denied, or exited/zombie while "
        "read): left out of every zxmem_process_* series, never counted as 0.")
    unread.add_metric([], unreadable)
    return [pss, uss, rss, swap, count, unread]


def _pid_family(snapshot: Snapshot, options: MetricsOptions) -> Metric:
    """PSS per PID (opt in), the ``max_pids`` largest processes."""
    from prometheus_client.core import GaugeMetricFamily

    known = [(p.memory.pss_bytes, p) for p in snapshot.processes
             if not p.kernel_thread and p.memory is not None
             and p.memory.pss_bytes is not None]
    ranked = sorted(known, key=lambda vp: (-vp[0], vp[1].koid))
    pid_pss = GaugeMetricFamily(
        "zxmem_pid_pss_bytes",
        describe("pss_bytes") + f" The {options.max_pids} largest processes only.",
        labels=["pid", "comm"], unit="bytes")
    for value, p in ranked[: options.max_pids]:
        pid_pss.add_metric([str(p.koid), p.name], value)
    return pid_pss


def _cgroup_families(snapshot: Snapshot, options: MetricsOptions) -> list[Metric]:
    """cgroups (jobs): totals of the cgroup and every cgroup below it, the
    largest ``max_cgroups`` by PSS; their memory files; how many were left out."""
    from prometheus_client.core import GaugeMetricFamily

    tree = TaskTree(snapshot)
    rows = [(j, tree.job_row(j, 0)) for j in snapshot.jobs if j.path]
    rows.sort(key=lambda jr: (-(jr[1].pss_bytes or 0), jr[0].path))
    kept_rows = sorted(rows[: options.max_cgroups], key=lambda jr: jr[0].path)
    hier = " Includes every cgroup below; do not sum across cgroups."
    cg_pss = GaugeMetricFamily("zxmem_cgroup_pss_bytes",
                               "PSS of the cgroup's processes. " + describe("pss_bytes") + hier,
                               labels=["cgroup"], unit="bytes")
    cg_uss = GaugeMetricFamily("zxmem_cgroup_uss_bytes",
                               "Sum of the processes' PRIVATE bytes. "
                               + describe("private_bytes") + hier,
                               labels=["cgroup"], unit="bytes")
    cg_swap = GaugeMetricFamily("zxmem_cgroup_swap_bytes",
                                "Swap of the cgroup's processes. " + describe("swap_bytes")
                                + hier, labels=["cgroup"], unit="bytes")
    for job, r in kept_rows:
        path = job.path
        if r.pss_bytes is not None and r.unknown_processes == 0:
            cg_pss.add_metric([path], r.pss_bytes)
            if r.private_bytes is not None:
                cg_uss.add_metric([path], r.private_bytes)
        if r.swap_bytes is not None and r.unknown_processes == 0:
            cg_swap.add_metric([path], r.swap_bytes)
    out: list[Metric] = [cg_pss, cg_uss, cg_swap]
    out += _cgroup_file_families([job for job, _r in kept_rows])
    omitted = GaugeMetricFamily(
        "zxmem_cgroups_omitted",
        f"Cgroups left out past the cap (--max-cgroups {options.max_cgroups}, "
        "the largest by PSS are kept).")
    omitted.add_metric([], len(rows) - len(kept_rows))
    out.append(omitted)
    return out


def _kernel_families(k: KernelStats, processes_pss: int) -> list[Metric]:
    """MemTotal, MemFree and the kernel's memory by kind."""
    from prometheus_client.core import GaugeMetricFamily

    out: list[Metric] = []
    for name, help_text, value in (
        ("zxmem_memory_total_bytes", "MemTotal (/proc/meminfo): RAM the kernel manages.",
         k.total_bytes),
        ("zxmem_memory_free_bytes", "MemFree (/proc/meminfo): pages on the free lists.",
         k.free_bytes),
    ):
        if value is not None:
            family = GaugeMetricFamily(name, help_text, unit="bytes")
            family.add_metric([], value)
            out.append(family)
    kern = GaugeMetricFamily("zxmem_kernel_bytes", KERNEL_KIND_HELP, labels=["kind"],
                             unit="bytes")
    for kind, kind_bytes in kernel_kinds(k, processes_pss).items():
        if kind_bytes is not None:
            kern.add_metric([kind], kind_bytes)
    out.append(kern)
    return out


def object_families(snapshot: Snapshot, top: int) -> list[Metric]:
    """``zxmem_object_pss_bytes{kind,object}``: the ``top`` largest memory
    objects (objects of one kind and name merged) and one ``(other)`` series
    with the rest.  A mapped object's value is the PSS of every mapping of it;
    an object no process maps (memfd, SysV, tmpfs: the hidden objects) has
    its resident bytes, which no process's PSS holds.  Objects whose size is
    unknown are left out."""
    from prometheus_client.core import GaugeMetricFamily

    value: dict[int, int] = {}
    for p in snapshot.processes:
        for m in p.mappings or ():
            if m.pss_bytes is not None:
                value[m.vmo_koid] = value.get(m.vmo_koid, 0) + m.pss_bytes
    for koid in snapshot.hidden_vmo_koids:
        vmo = snapshot.vmos.get(koid)
        if vmo is not None and vmo.committed_bytes is not None and koid not in value:
            value[koid] = vmo.committed_bytes
    merged: dict[tuple[str, str], int] = {}
    for koid, nbytes in value.items():
        vmo = snapshot.vmos.get(koid)
        key = ((vmo.kind or "unknown", vmo.name) if vmo is not None
               else ("unknown", f"koid {koid}"))
        merged[key] = merged.get(key, 0) + nbytes
    ranked = sorted(merged.items(), key=lambda kv: (-kv[1], kv[0]))
    fam = GaugeMetricFamily(
        "zxmem_object_pss_bytes",
        "Memory objects (files, shmem, memfd, SysV, anonymous) by PSS summed over "
        f"their mappings; objects no process maps by resident bytes. The {top} "
        f"largest; the rest sum into kind=\"other\",object=\"{OTHER_GROUP}\".",
        labels=["kind", "object"], unit="bytes")
    for (kind, name), nbytes in ranked[:top]:
        fam.add_metric([kind, name], nbytes)
    if len(ranked) > top:
        fam.add_metric(["other", OTHER_GROUP], sum(n for _k, n in ranked[top:]))
    return [fam]


def self_families(self_stats: SelfStats) -> list[Metric]:
    """The exporter's own families: build, last duration, counters."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
    out: list[Metric] = []
    build = GaugeMetricFamily("zxmem_build_info", "zxmem's version; always 1.",
                              labels=["version"])
    build.add_metric([self_stats.version], 1)
    out.append(build)
    if self_stats.duration_seconds is not None:
        dur = GaugeMetricFamily("zxmem_collection_duration_seconds",
                                "How long the last collection took.", unit="seconds")
        dur.add_metric([], self_stats.duration_seconds)
        out.append(dur)
    errors = CounterMetricFamily(
        "zxmem_collection_errors",
        "Collections that failed (the previous sample was served again).")
    errors.add_metric([], self_stats.errors_total)
    out.append(errors)
    done = CounterMetricFamily("zxmem_collections", "Collections completed.")
    done.add_metric([], self_stats.collections_total)
    out.append(done)
    return out


def exposition(metric_families: Iterable[Metric], openmetrics: bool = False) -> bytes:
    """The families in the Prometheus text format (or OpenMetrics)."""
    from prometheus_client.registry import CollectorRegistry

    fams = list(metric_families)

    class _Fixed:
        def collect(self) -> Iterable[Metric]:
            return fams

    registry = CollectorRegistry(auto_describe=False)
    registry.register(_Fixed())
    if openmetrics:
        from prometheus_client.openmetrics.exposition import generate_latest as om

        return om(registry)
    from prometheus_client.exposition import generate_latest

    return generate_latest(registry)


def _cgroup_file_families(jobs: list[Job]) -> list[Metric]:
    """What each cgroup's own memory files say (Job.cgroup, zxmem.sources.cgmem):
    its charge, limit, events and pressure.  A file the kernel did not give
    (no memory controller, v1 has no pressure) leaves its series out."""
    from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily

    charged = GaugeMetricFamily(
        "zxmem_cgroup_charged_bytes",
        "What the cgroup is charged, descendants included (memory.current; v1 "
        "memory.usage_in_bytes): page cache and kernel memory too, not PSS.",
        labels=["cgroup"], unit="bytes")
    limit = GaugeMetricFamily(
        "zxmem_cgroup_limit_bytes",
        "The cgroup's hard limit (memory.max; v1 memory.limit_in_bytes); no series "
        "when there is none.", labels=["cgroup"], unit="bytes")
    events = CounterMetricFamily(
        "zxmem_cgroup_memory_events",
        "memory.events counters (low, high, max, oom, oom_kill, oom_group_kill; v1: "
        "oom_kill from memory.oom_control, failcnt).", labels=["cgroup", "event"])
    waiting = CounterMetricFamily(
        "zxmem_cgroup_pressure_memory_waiting_seconds",
        "Time some of the cgroup's tasks stalled on memory (memory.pressure some total).",
        labels=["cgroup"], unit="seconds")
    stalled = CounterMetricFamily(
        "zxmem_cgroup_pressure_memory_stalled_seconds",
        "Time all of the cgroup's non-idle tasks stalled on memory (memory.pressure "
        "full total).", labels=["cgroup"], unit="seconds")
    for job in jobs:  # in path order
        cg = job.cgroup
        if cg is None:
            continue
        if cg.charged_bytes is not None:
            charged.add_metric([job.path], cg.charged_bytes)
        if isinstance(cg.limit_bytes, int):
            limit.add_metric([job.path], cg.limit_bytes)
        for name, value in sorted((cg.events or {}).items()):
            events.add_metric([job.path, name], value)
        pressure = cg.pressure or {}
        for family, kind in ((waiting, "some"), (stalled, "full")):
            total = (pressure.get(kind) or {}).get("total_us")
            if total is not None:
                family.add_metric([job.path], total / 1e6)
    return [charged, limit, events, waiting, stalled]
