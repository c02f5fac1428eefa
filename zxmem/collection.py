"""One way to read the live system: a :class:`Plan` of what to read, and :func:`collect`.

Every command that looks at the live machine goes through :func:`collect`,
and so will the long-running ones (a recorder, ``top``, an exporter) that
call it thousands of times: it keeps no state between calls and leaves no
process-wide switch changed (:mod:`zxmem.runtime`).

The plan names the parts, cheapest first:

* process totals (``smaps_rollup``), threads, ``status`` (UID, swap, page
  tables) and the job tree (cgroups) -- :mod:`zxmem.sources.linux`;
* kernel counters (``/proc/meminfo`` and friends) -- :mod:`zxmem.sources.kernel`;
* memory objects: every mapping, region and object -- :mod:`zxmem.sources.objects`;
* hidden objects (memory no process maps) -- :mod:`zxmem.sources.hidden`;
* descriptor counts by kind -- :mod:`zxmem.sources.handles`.

What could not be read is in the snapshot's provenance (denied entries and
notes), never raised, except that an unreadable ``/proc`` root itself raises
:class:`OSError`.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, replace

from zxmem.model import Snapshot

Warn = Callable[[str], None]


@dataclass(frozen=True, slots=True)
class Plan:
    """What :func:`collect` reads.  The defaults give ``zxmem ps``'s snapshot."""

    memory: bool = True  # process totals (smaps_rollup)
    # With objects: take the totals from the smaps read for the objects
    # instead of a second walk of every page table (smaps_rollup).
    memory_from_objects: bool = False
    threads: bool = False  # every thread's state
    kernel_threads: bool = False  # keep kernel threads (no address space)
    status: bool = False  # /proc/PID/status: UID, swap, page-table bytes
    jobs: str = "cgroup"  # "cgroup", "user" or "none"
    job_state: bool = False  # the cgroup's memory.oom.group (late STATE column)
    cgroup_memory: bool = False  # each job's cgroup memory files (Job.cgroup)
    cgroup_columns_only: bool = False  # ... only those the ps --cgroup columns show
    kernel: bool = False  # kernel memory counters
    # With kernel: system memory pressure (PSI avg10 of /proc/pressure/memory,
    # in hundredths of a percent) and /proc/vmstat oom_kill, in kernel.extra.
    pressure: bool = False
    objects: bool = False  # mappings, regions and memory objects of every process
    hidden: bool = False  # memory no process maps (implies objects)
    handles: bool = False  # descriptor counts by kind
    # With objects: read the smaps (page counts) of these processes only
    # (None: all); regions: group mappings into regions.
    detail_pids: tuple[int, ...] | None = None
    regions: bool = True
    # Read every smaps in a forked reader process (fastest for a whole
    # machine; only where nothing else runs in this process).
    reader_process: bool = False
    workers: int = 0  # reader threads; 0 picks from the CPU count


def collect(plan: Plan | None = None, proc_root: str = "/proc",
            warn: Warn | None = None) -> Snapshot:
    """Read the live system (or a recorded ``/proc`` tree) as ``plan`` says.

    ``warn`` receives a line for each part that could not be read at all
    (e.g. no ``meminfo`` under a recorded tree); the same facts are in the
    provenance's notes.  Raises :class:`OSError` only when ``proc_root``
    cannot be listed.
    """
    from zxmem.runtime import paused_gc
    from zxmem.sources.linux import CollectOptions
    from zxmem.sources.linux import collect as collect_processes

    plan = plan or Plan()
    objects = plan.objects or plan.hidden
    fill_memory = (plan.memory and plan.memory_from_objects and objects
                   and plan.detail_pids is None)
    options = CollectOptions(
        threads=plan.threads, kernel_threads=plan.kernel_threads, status=plan.status,
        jobs=plan.jobs, job_state=plan.job_state, workers=plan.workers,
        cgroup_memory=plan.cgroup_memory, cgroup_columns_only=plan.cgroup_columns_only,
        memory=plan.memory and not fill_memory,
    )
    # A snapshot with every mapping is millions of acyclic objects: the
    # cycle collector's passes over them free nothing (paused, then restored).
    with paused_gc():
        snapshot = collect_processes(proc_root, options)
        if plan.kernel:
            snapshot = _add_kernel(snapshot, proc_root, warn, plan.pressure)
        if objects:
            from zxmem.sources.objects import add_objects

            snapshot = add_objects(
                snapshot, proc_root=proc_root, memory=fill_memory,
                detail_pids=plan.detail_pids, regions=plan.regions,
                reader_process=plan.reader_process,
            )
        if plan.hidden:
            from zxmem.sources.hidden import add_hidden

            # Needs every process's mappings and descriptors: what
            # add_objects has just read.
            snapshot = add_hidden(snapshot, proc_root)
        if plan.handles:
            from zxmem.sources.handles import add_handle_stats

            snapshot = add_handle_stats(snapshot, proc_root)
    return snapshot


# The kernel.extra keys a Plan with ``pressure`` adds (absent when the
# kernel gives none): PSI avg10 in hundredths of a percent, as the kernel
# prints it with two decimals, and the OOM kills since boot.
PRESSURE_KEYS = ("psi_some_avg10_centipct", "psi_full_avg10_centipct", "oom_kill")


def _pressure_extra(proc_root: str) -> tuple[dict[str, int], tuple[str, ...]]:
    from zxmem.sources.cgmem import read_system_memory

    system = read_system_memory(proc_root)
    out: dict[str, int] = {}
    for kind in ("some", "full"):
        rec = (system.get("pressure") or {}).get(kind)
        if rec is not None and "avg10" in rec:
            out[f"psi_{kind}_avg10_centipct"] = round(float(rec["avg10"]) * 100)
    if "oom_kill" in system["vmstat"]:
        out["oom_kill"] = int(system["vmstat"]["oom_kill"])
    notes = tuple(f"{what}: {why}" for what, why in system["missing"])
    return out, notes


def _add_kernel(snapshot: Snapshot, proc_root: str, warn: Warn | None,
                pressure: bool = False) -> Snapshot:
    from zxmem.sources import kernel as kernel_source

    prov = snapshot.provenance
    try:
        kstats, notes = kernel_source.read_kernel_stats_with_notes(proc_root)
    except (OSError, ValueError) as exc:
        # No meminfo (a recorded tree without it): no kernel records.
        why = getattr(exc, "strerror", None) or str(exc)
        if warn is not None:
            warn(f"kernel records left out: {why}")
        return replace(snapshot, provenance=replace(
            prov, notes=prov.notes + (f"kernel records omitted: {why}",)))
    if pressure:
        from types import MappingProxyType

        extra, more = _pressure_extra(proc_root)
        kstats = replace(kstats, extra=MappingProxyType({**kstats.extra, **extra}))
        notes = tuple(notes) + more
    return replace(snapshot, kernel=kstats,
                   provenance=replace(prov, notes=prov.notes + tuple(notes)))


def load(path: str) -> Snapshot:
    """A saved snapshot: zxmem's or Fuchsia's memgraph JSON, or a Fuchsia
    memory-monitor capture ('-' is not special here: pass a stream to
    :func:`zxmem.sources.load.load_snapshot` for stdin).

    Raises :class:`zxmem.errors.ZxmemError` (one line naming the file, the
    record and the field) for input that cannot be read or parsed.
    """
    from zxmem.sources.load import load_snapshot

    return load_snapshot(path)
