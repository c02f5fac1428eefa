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

Narrower reads for one command each, so that no command opens ``/proc``
itself (tests/static/test_commands_read_nothing.py): one process's address
space (:func:`collect_process`: vmaps, vmos, k vmos PID), the objects no
process maps (:func:`collect_hidden`), facts of the system
(:func:`mmap_min_addr`, :func:`kernel_release`, :func:`machine`,
:func:`meminfo`, :func:`kernel_file`), ``k ps``'s per-process kernel usage,
one ``kstats`` sample (:func:`sample_kernel`, called again and again), and
the page-level reads (:func:`exact_scan`, :func:`share_pages`,
:func:`charge_pages`).
"""

from __future__ import annotations

from collections.abc import Callable, Collection

from zxmem.errors import ZxmemError
from zxmem.model import DEFAULT_MMAP_MIN_ADDR, Denied, Process, Snapshot
from zxmem.record import Record, field, replace

TYPE_CHECKING = False  # typing itself costs start-up
if TYPE_CHECKING:
    from typing import Any

    from zxmem.sources.pagemap import ChargePages, ExactScan

Warn = Callable[[str], None]


class Plan(Record):
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
    # What an earlier collection of this boot found (KernelStats.extra
    # "kernel_stack_in_vmalloc"): lets the counters skip /proc/vmallocinfo.
    kernel_stacks_in_vmalloc: bool | None = None
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
        readers = None
        if objects and plan.reader_process and plan.detail_pids is None:
            from zxmem.sources.objects import start_readers

            # Every smaps is read from now on, while this process reads the
            # processes' stat and status: both CPUs work from the start.
            readers = start_readers(proc_root, memory=fill_memory)
        try:
            snapshot = collect_processes(proc_root, options)
            if plan.kernel:
                snapshot = _add_kernel(snapshot, proc_root, warn, plan.pressure,
                                       plan.kernel_stacks_in_vmalloc)
            if objects:
                from zxmem.sources.objects import add_objects

                snapshot = add_objects(
                    snapshot, proc_root=proc_root, memory=fill_memory,
                    detail_pids=plan.detail_pids, regions=plan.regions,
                    reader_process=plan.reader_process, readers=readers,
                )
        finally:
            if readers is not None:
                readers.close()
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
# kernel gives none: no /proc/pressure/memory with CONFIG_PSI off or psi=0,
# no oom_kill line before Linux 4.13; unknown, never 0):
# * PSI avg10 in hundredths of a percent, as the kernel prints it with two
#   decimals (the running average over ~10 s of the share of wall time some
#   task, resp. all non-idle tasks, stalled on memory);
# * PSI total: the cumulative stall time in microseconds since boot (some and
#   full).  kernel/sched/psi.c keeps it as nanoseconds summed per CPU and
#   prints it divided by 1000 (psi_show(): "total=%llu");
#   Documentation/accounting/psi.rst: "The total absolute stall time (in us)
#   is tracked and exported as well, to allow detection of latency spikes
#   which wouldn't necessarily make a dent in the time averages".  Two
#   samples' totals give the exact stall of the interval between them, which
#   avg10 (an exponential average updated every 2 s) can miss or smear when
#   samples are further apart than its window;
# * oom_kill: /proc/vmstat's count of OOM kills since boot (mm/oom_kill.c
#   count_vm_event(OOM_KILL)).
PRESSURE_KEYS = ("psi_some_avg10_centipct", "psi_full_avg10_centipct",
                 "psi_some_total_us", "psi_full_total_us", "oom_kill")


def _pressure_extra(proc_root: str) -> tuple[dict[str, int], tuple[str, ...]]:
    from zxmem.sources.cgmem import read_system_memory

    system = read_system_memory(proc_root)
    out: dict[str, int] = {}
    for kind in ("some", "full"):
        rec = (system.get("pressure") or {}).get(kind)
        if rec is None:
            continue  # a file with only a "some" line: no "full" keys
        if "avg10" in rec:
            out[f"psi_{kind}_avg10_centipct"] = round(float(rec["avg10"]) * 100)
        if "total_us" in rec:
            out[f"psi_{kind}_total_us"] = int(rec["total_us"])
    if "oom_kill" in system["vmstat"]:
        out["oom_kill"] = int(system["vmstat"]["oom_kill"])
    notes = tuple(f"{what}: {why}" for what, why in system["missing"])
    return out, notes


def _add_kernel(snapshot: Snapshot, proc_root: str, warn: Warn | None,
                pressure: bool = False,
                stacks_in_vmalloc: bool | None = None) -> Snapshot:
    from zxmem.sources import kernel as kernel_source

    prov = snapshot.provenance
    try:
        kstats, notes = kernel_source.read_kernel_stats_with_notes(
            proc_root, stacks_in_vmalloc=stacks_in_vmalloc)
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


# ---------------------------------------------------------------------------
# One process's address space (vmaps, vmos, k vmos PID)


def collect_process(pid: int, proc_root: str = "/proc", *, what: str = "maps",
                    whole_system: bool = False, keys: tuple[str, ...] | None = None,
                    objects: bool = True, sysv_alloc: bool = False,
                    ) -> tuple[Snapshot, Process]:
    """A snapshot holding ``pid``'s mappings (and objects), and the process.

    ``whole_system``: every process's maps are read too (so ``#map`` and
    ``#shr`` count the whole system), smaps only for ``pid``.  ``keys``:
    the smaps fields to read (None: all).  ``objects``: build the memory
    objects; ``sysv_alloc``: SysV segments' allocated size.  ``what`` names
    the thing read in errors (``maps``, ``objects``).

    Raises :class:`ZxmemError` (one line naming the PID) when there is no
    such process, it is a thread, a kernel thread or a zombie, its maps are
    denied, or it exits meanwhile.
    """
    from zxmem.sources import objects as source

    kwargs: dict[str, Any] = {"vmos": objects}
    if keys is not None:
        kwargs["keys"] = keys
    base = None
    if whole_system:
        base = source.light_snapshot(proc_root)
        if base.process(pid) is None:
            try:
                extra = source.read_process(proc_root, pid)
            except source.ProcessError:
                pass
            else:
                base = replace(base, processes=base.processes + (extra,))
        kwargs.update(pids=None, detail_pids=[pid])
    else:
        kwargs.update(pids=[pid], detail_pids=[pid])
    snapshot, process = _process_objects(proc_root, pid, what, base, kwargs)
    if sysv_alloc:
        from zxmem.sources.hidden import add_sysv_alloc

        snapshot = add_sysv_alloc(snapshot, proc_root)
        process = snapshot.process(pid) or process
    return snapshot, process


def _process_objects(root: str, pid: int, what: str, snapshot: Snapshot | None,
                     kwargs: dict[str, Any]) -> tuple[Snapshot, Process]:
    from zxmem.sources import objects
    from zxmem.sources.linux import live_task_dir, thread_group

    try:
        proc = objects.read_process(root, pid)
    except objects.ProcessError as exc:
        if exc.reason == "no such process":
            raise ZxmemError(f"couldn't find process with pid {pid}") from None
        raise ZxmemError(f"couldn't read process with pid {pid}: {exc.reason}") from None
    tgid = thread_group(root, pid)
    if tgid is not None and tgid != pid:
        raise ZxmemError(f"{pid} is a thread of process {tgid}")
    if proc.kernel_thread:
        raise ZxmemError(f"pid {pid} is a kernel thread: it has no address space")
    read_root, read_pid = root, pid
    if proc.state in ("Z", "X", "x"):
        task = live_task_dir(root, pid) if (proc.num_threads or 0) > 1 else None
        if task is None:
            raise ZxmemError(f"pid {pid} has exited (zombie): it has no address space")
        if snapshot is not None:
            # Every process's maps are read under one root: the leader's
            # are empty and a thread's directory is under another one.
            raise ZxmemError(f"pid {pid}'s main thread has exited: its {what} can be "
                             f"listed only by 'zxmem vmaps {pid}'")
        # The main thread has exited, others run: the leader has no mm, a
        # live thread's task/TID/ shows the process's maps.  Read the
        # thread as if task/ were the /proc root, then name it by the PID.
        read_root = f"{root.rstrip('/') or '/'}/{pid}/task"
        read_pid = int(task.rstrip("/").rsplit("/", 1)[1])
        kwargs = {**kwargs, "pids": [read_pid], "detail_pids": [read_pid]}
    if snapshot is None:
        snapshot = objects.light_snapshot(read_root, [read_pid])
    snapshot = objects.add_objects(snapshot, read_root, **kwargs)
    if read_pid != pid:
        snapshot = _renamed(snapshot, read_pid, proc)
    return snapshot, _read_process(snapshot, pid, what, read_root, read_pid)


def _renamed(snapshot: Snapshot, read_pid: int, proc: Process) -> Snapshot:
    """``snapshot`` whose thread ``read_pid`` is named as its process ``proc``."""
    pid = proc.koid
    return replace(snapshot, processes=tuple(
        replace(p, koid=pid, name=proc.name, ppid=proc.ppid) if p.koid == read_pid else p
        for p in snapshot.processes
    ), provenance=replace(snapshot.provenance, denied=tuple(
        Denied(f"maps:{pid}", why) if what == f"maps:{read_pid}" else Denied(what, why)
        for what, why in snapshot.provenance.denied
    )))


def _read_process(snapshot: Snapshot, pid: int, what: str, read_root: str,
                  read_pid: int) -> Process:
    """``pid`` of ``snapshot``, with its mappings, or the one-line reason why not."""
    from zxmem.sources import objects

    process = snapshot.process(pid)
    if process is None:
        raise ZxmemError(f"pid {pid} exited while its {what} were being read")
    if process.mappings is None:
        why = dict(snapshot.provenance.denied).get(f"maps:{pid}", "denied")
        hint = ""
        if why in ("EACCES", "EPERM"):
            import os

            hint = " (run as root)" if os.geteuid() != 0 else " (denied even to root)"
        raise ZxmemError(f"cannot read the memory maps of pid {pid}: {why}{hint}")
    if not process.mappings:
        # Only a process without an mm has no mappings: it exited meanwhile.
        try:
            gone = objects.read_process(read_root, read_pid).state in ("Z", "X", "x")
        except objects.ProcessError:
            gone = True
        if gone:
            raise ZxmemError(f"pid {pid} exited while its {what} were being read")
    return process


def collect_hidden(proc_root: str = "/proc", *, every_object: bool = False,
                   walk_limit: int | None = None) -> Snapshot:
    """Every process's maps and descriptors and the objects no process maps
    (``k vmos hidden``); ``every_object``: smaps too, for anonymous alloc
    (``k vmos all``).  ``walk_limit``: directory entries of the tmpfs walk
    (None: the default; 0: no walk).  Raises :class:`OSError` when
    ``proc_root`` cannot be read."""
    from zxmem.sources import hidden, objects

    base = objects.light_snapshot(proc_root)
    snapshot = objects.add_objects(base, proc_root, detail_pids=None if every_object else (),
                                   regions=False)
    limit = hidden.DEFAULT_WALK_LIMIT if walk_limit is None else walk_limit
    return hidden.add_hidden(snapshot, proc_root, walk_limit=limit,
                             walk_tmpfs=None if limit else False)


# ---------------------------------------------------------------------------
# Facts of the system the tree was read on


def mmap_min_addr(proc_root: str = "/proc") -> int:
    """``vm.mmap_min_addr`` under the root (the lowest address a process may
    map); the kernel's default (``DEFAULT_MMAP_MIN_ADDR``) when it cannot be read."""
    from zxmem.sources.linux import read_mmap_min_addr

    found = read_mmap_min_addr(proc_root)
    return DEFAULT_MMAP_MIN_ADDR if found is None else found


def kernel_release(proc_root: str = "/proc") -> str | None:
    """``kernel.osrelease`` under the root, or None."""
    from zxmem.sources.linux import read_sysctl

    return read_sysctl(proc_root, "kernel/osrelease")


def machine(proc_root: str = "/proc") -> str | None:
    """The architecture the tree was read on (``kernel.arch``), else this
    machine's."""
    import os

    from zxmem.sources.linux import read_sysctl

    arch = read_sysctl(proc_root, "kernel/arch")
    if arch is None:
        return os.uname().machine
    return arch or None


def meminfo(proc_root: str = "/proc") -> dict[str, int]:
    """``meminfo``'s totals in bytes by field name; empty when unreadable."""
    from zxmem.sources import kernel
    from zxmem.sources.readfile import read_file

    try:
        return kernel.parse_meminfo(read_file(f"{proc_root.rstrip('/') or '/'}/meminfo"))[0]
    except (OSError, kernel.ParseError):
        return {}


def kernel_file(proc_root: str, name: str) -> tuple[bytes | None, OSError | None]:
    """A whole file of the root (``vmallocinfo``, ``modules``, ``iomem``):
    ``(bytes, None)``, or ``(None, the error)``."""
    from zxmem.sources.readfile import read_file

    try:
        return read_file(f"{proc_root.rstrip('/') or '/'}/{name}"), None
    except OSError as exc:
        return None, exc


def process_kernel_usage(proc_root: str = "/proc", *, kernel_threads: bool = False,
                         stack_size: int | None = None) -> tuple[list[Any], tuple[str, ...]]:
    """``k ps``: descriptors by kind, page tables and kernel stacks of every
    process (:func:`zxmem.sources.kernel.read_process_kernel_usage`)."""
    from zxmem.sources import kernel

    return kernel.read_process_kernel_usage(proc_root, kernel_threads=kernel_threads,
                                            stack_size=stack_size)


class KernelSample(Record):
    """One reading of ``kstats``: CPU counters, memory statistics (with the
    notes on what could not be read) and the system's memory pressure;
    None for each part not asked for."""

    cpu: Any = None
    memory: Any = None
    pressure: dict[str, Any] | None = None


def sample_kernel(proc_root: str = "/proc", *, cpu: bool = False, memory: bool = False,
                  pressure: bool = False) -> KernelSample:
    """One sample of the kernel's counters, for commands that read them
    again and again (``kstats``).  Raises :class:`OSError` or
    :class:`zxmem.sources.kernel.ParseError` when a counter file cannot be
    read or parsed."""
    from zxmem.sources import kernel

    counters = kernel.read_cpu_counters(proc_root) if cpu else None
    stats = kernel.read_kernel_stats_with_notes(proc_root) if memory else None
    system = None
    if pressure:
        from zxmem.sources.cgmem import read_system_memory

        system = read_system_memory(proc_root)
    return KernelSample(counters, stats, system)


# ---------------------------------------------------------------------------
# Page-level reads (--exact, share, ps --explain --exact)


def list_pids(proc_root: str = "/proc") -> list[int]:
    """The processes under the root, ascending (raises :class:`OSError`)."""
    from zxmem.sources.linux import list_pids as listed

    return listed(proc_root)


def exact_available(proc_root: str = "/proc") -> bool:
    """Whether page-level counting can work here (root, kpagecount, a kernel
    with per-page map counts)."""
    from zxmem.sources import pagemap

    why, _ = pagemap.availability(proc_root, kernel_release(proc_root))
    return why is None


def exact_scan(proc_root: str = "/proc", pids: Collection[int] | None = None, *,
               tag_pids: Collection[int] = (), release: str | None = None) -> ExactScan:
    """Every page of ``pids``' page tables (None: every process) with the
    kernel's map counts (:func:`zxmem.sources.pagemap.scan`).  ``tag_pids``:
    processes whose per-mapping breakdown is wanted.  What cannot be done is
    in the result's ``unavailable``, never raised."""
    from zxmem.sources import pagemap

    if pids is None:
        pids = list_pids(proc_root)
    return pagemap.scan(proc_root, pids, release=release or kernel_release(proc_root),
                        tag_pids=tag_pids)


class SharePages(Record):
    """What ``zxmem share PID`` reads: the page scan and the names of PID
    and its sharers; or, where pages cannot be counted (``scan.unavailable``),
    PID's ``smaps_rollup`` fields."""

    pid: int
    scan: Any
    names: dict[int, str] = field(default_factory=dict)
    rollup: dict[bytes, int] | None = None


def share_pages(pid: int, proc_root: str = "/proc") -> SharePages:
    """Read what ``zxmem share`` reports on ``pid``.

    Raises :class:`ZxmemError` (one line) when there is no such process,
    ``pid`` is a thread, the root is a recorded tree (no page tables to
    read), or ``pid``'s page tables cannot be read.
    """
    import os

    from zxmem.sources import linux, pagemap

    proc = proc_root.rstrip("/") or "/"
    if not os.path.isdir(f"{proc}/{pid}"):
        raise ZxmemError(f"PID {pid}: no such process")
    if pagemap.recorded_tree(proc):
        raise ZxmemError(f"share needs the live system's page tables (pagemap, kpagecount): "
                         f"{proc_root} is a recorded tree without them")
    tgid = linux.thread_group(proc, pid)
    if tgid is not None and tgid != pid:
        # /proc/TID resolves, but the scan reads processes by PID.
        raise ZxmemError(f"{pid} is a thread of process {tgid}")
    try:
        pids = list_pids(proc)
    except OSError as exc:
        raise ZxmemError(f"cannot read {proc_root}: {exc.strerror}") from None
    scan = pagemap.scan(proc_root, pids, release=kernel_release(proc), tag_pids=[pid])
    if scan.unavailable:
        try:
            rollup = linux.read_rollup(proc, pid)
        except OSError as exc:
            raise ZxmemError(f"PID {pid}: cannot read smaps_rollup ({exc.strerror})") from None
        return SharePages(pid, scan, {pid: linux.read_label(proc, pid)}, rollup)
    if pid not in scan.results:
        why = dict(scan.denied).get(pid)
        if why:
            raise ZxmemError(f"PID {pid}: page tables not readable ({why})")
        if linux.live_task_dir(proc, pid) is not None:
            # The leader is a zombie without mm, its pagemap is empty; the
            # scan reads processes by PID (sources/pagemap.py).
            raise ZxmemError(f"PID {pid}: its main thread has exited, so its page tables "
                             "cannot be read by PID (zxmem ps and vmaps read a live thread)")
        raise ZxmemError(f"PID {pid}: no such process (or it has no address space)")
    census: Any = scan.census
    sharers = set(census.overlap(pid)) | set(census.shared_swap(pid))
    names = {p: linux.read_label(proc, p) for p in sorted(sharers | {pid})}
    return SharePages(pid, scan, names)


def charge_pages(proc_root: str, pids: Collection[int]) -> ChargePages:
    """The page frames ``pids`` map and each frame's map count, memory cgroup
    and flags (``ps --explain --exact``).  Raises :class:`ZxmemError` when
    a page table or kpage file cannot be read (PFNs need root)."""
    from zxmem.sources import pagemap

    return pagemap.read_charge_pages(proc_root, pids)


def load(path: str) -> Snapshot:
    """A saved snapshot: zxmem's or Fuchsia's memgraph JSON, or a Fuchsia
    memory-monitor capture ('-' is not special here: pass a stream to
    :func:`zxmem.sources.load.load_snapshot` for stdin).

    Raises :class:`zxmem.errors.ZxmemError` (one line naming the file, the
    record and the field) for input that cannot be read or parsed.
    """
    from zxmem.sources.load import load_snapshot

    return load_snapshot(path)
