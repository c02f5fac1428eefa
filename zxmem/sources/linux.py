"""The live Linux source: reads ``/proc`` once and builds a Snapshot.

The ``/proc`` root is injectable (``proc_root``), so a recorded tree
(``tests/fixtures/``) or a container's ``/proc`` is read by the same code as
the live system.  The file system root for cgroups is the parent of
``proc_root``.

Per process it reads, and nothing else unless asked:

* ``stat`` — comm, state, ppid, PF_KTHREAD, thread count;
* ``cmdline`` — the NAME users recognize;
* ``cgroup`` — the job;
* ``smaps_rollup`` (Linux ≥ 4.14) — PSS, PRIVATE, SHARED, swap; on older
  kernels ``smaps`` summed (a note in the provenance says so);
* ``status`` when swap, UID or page-table bytes are wanted;
* ``task/*/stat`` with threads.

Reads of different processes run on a few threads: reading ``/proc`` is
kernel work done with the GIL released, so the page-table walks behind
``smaps_rollup`` overlap across cores.

Failure behaviour (DESIGN.md): a process that is gone (ENOENT/ESRCH on
``stat``, or ``smaps`` gone too) is left out; EACCES on ``smaps_rollup``
leaves the memory ``None`` and records ``("smaps_rollup:PID", "EACCES")`` in
the provenance; a zombie (no mm: ``smaps_rollup`` gives ESRCH) has zero memory,
unless its main thread alone has exited: then a live thread's
``task/TID/smaps_rollup`` gives the process's memory.
"""

from __future__ import annotations

import _thread  # threading's Lock; threading itself only when threads are started
import errno
import os
import time

from zxmem.model import (
    Denied,
    MemoryCounts,
    Process,
    Provenance,
    Snapshot,
    Thread,
)
from zxmem.record import Record
from zxmem.runtime import pause_gc, resume_gc
from zxmem.sources import cgroups, procfs
from zxmem.sources.readfile import errname as _errname
from zxmem.sources.readfile import read_file
from zxmem.sources.readfile import read_record as _read_record
from zxmem.sources.readfile import vanished as _gone
from zxmem.textsafe import decode_name

TYPE_CHECKING = False
if TYPE_CHECKING:  # typing costs start-up
    from collections.abc import Callable
    from typing import Any

# PIDs a worker takes at a time: small enough that the last chunks even out
# the workers' finishing times, large enough that taking one is rare.
_CHUNK = 16
_PIDS_PER_WORKER = 64

# /proc/PID/stat state letter → Zircon thread state (spec fuchsia-tools §2.2).
_THREAD_STATE = {
    "R": "running",
    "S": "blocked",
    "D": "blocked",
    "I": "blocked",
    "W": "blocked",
    "P": "blocked",
    "K": "blocked",
    "T": "susp",
    "t": "susp",
    "Z": "dead",
    "X": "dead",
    "x": "dead",
}

JOB_MODES = ("cgroup", "user", "none")


class CollectOptions(Record):
    """What to read beyond the defaults."""

    threads: bool = False  # task/*/stat for every process
    kernel_threads: bool = False  # keep tasks with PF_KTHREAD
    status: bool = False  # /proc/PID/status: UID, VmSwap (for swap), VmPTE
    jobs: str = "cgroup"  # "cgroup", "user" or "none"
    job_state: bool = False  # read memory.oom.group for the late STATE column
    workers: int = 0  # reader threads; 0 picks from the CPU count
    memory: bool = True  # smaps_rollup; False leaves memory None (--exact fills it)
    cgroup_memory: bool = False  # each job's cgroup memory files (Job.cgroup)
    cgroup_columns_only: bool = False  # ... only those the ps --cgroup columns show


class _Gone(Exception):
    """The process exited while it was being read."""


_read = read_file


def memory_from_fields(fields: dict[bytes, int], status: dict[bytes, bytes] | None) -> MemoryCounts:
    """MemoryCounts from smaps_rollup (or summed smaps) fields, in bytes.

    PSS = Pss + Private_Hugetlb; PRIVATE = Private_Clean + Private_Dirty +
    Private_Hugetlb; SHARED = Shared_Clean + Shared_Dirty + Shared_Hugetlb
    (hugetlb pages are outside Rss/Pss "for historical reasons", proc.rst).
    Swap = SwapPss + the shmem part of Swap (Swap − VmSwap), because SwapPss
    leaves shmem swap out (spec B.12); it needs ``status``.
    """
    g = fields.get
    private_huge = g(b"Private_Hugetlb", 0)
    shared_huge = g(b"Shared_Hugetlb", 0)
    swap_pss = g(b"SwapPss")
    swap = None
    if status is not None and swap_pss is not None:
        vm_swap = procfs.status_bytes(status, b"VmSwap")
        if vm_swap is not None:
            swap = swap_pss + max(0, g(b"Swap", 0) - vm_swap)
    return MemoryCounts(
        pss_bytes=g(b"Pss", 0) + private_huge,
        private_bytes=g(b"Private_Clean", 0) + g(b"Private_Dirty", 0) + private_huge,
        shared_bytes=g(b"Shared_Clean", 0) + g(b"Shared_Dirty", 0) + shared_huge,
        rss_bytes=g(b"Rss", 0),
        swap_bytes=swap,
        swap_pss_bytes=swap_pss,
        pss_anon_bytes=g(b"Pss_Anon"),
        pss_file_bytes=g(b"Pss_File"),
        pss_shmem_bytes=g(b"Pss_Shmem"),
        hugetlb_bytes=private_huge + shared_huge,
    )


_ZERO = MemoryCounts(0, 0, 0, 0, 0, 0, 0, 0, 0, 0)


# What the workers hand back for one process: the Process fields except the
# job (known only once every process's cgroup is in), plus the cgroup choice.
# A plain tuple: building the frozen Process twice (without, then with the
# job, via dataclasses.replace) cost about as much as reading a stat file.
_Record = tuple  # (pid, comm, ppid, uid, cmdline, state, kthread, memory,
#                   threads, num_threads, vm_pte, cgroup choice, starttime)


class _Reader:
    """Reads processes; one instance is shared by the worker threads."""

    def __init__(self, proc_root: str, options: CollectOptions) -> None:
        self.proc = proc_root.rstrip("/") or "/"
        self.options = options
        self.lock = _thread.allocate_lock()
        self.denied: list[Denied] = []
        self.notes: set[str] = set()
        self.results: dict[int, _Record] = {}
        self.cgroup_mode: str | None = None
        # Parse results keyed by the raw bytes: most processes share their
        # cgroup file (and many their command line) byte for byte, and the
        # parsers are pure.  Races between workers only repeat a parse.
        self._cgroup_cache: dict[bytes, tuple[str, str] | None] = {}
        self._cmdline_cache: dict[bytes, tuple[str, ...]] = {}

    def note_denied(self, what: str, why: str) -> None:
        with self.lock:
            self.denied.append(Denied(what, why))

    def _cgroup(self, data: bytes) -> tuple[str, str] | None:
        try:
            return self._cgroup_cache[data]
        except KeyError:
            pass
        try:
            cg = cgroups.choose_hierarchy(procfs.parse_cgroup(data))
        except procfs.ParseError:
            cg = None
        self._cgroup_cache[data] = cg
        return cg

    def _cmdline(self, data: bytes) -> tuple[str, ...]:
        try:
            return self._cmdline_cache[data]
        except KeyError:
            pass
        args = procfs.parse_cmdline(data)
        if len(data) <= 4096:  # long ones are rarely repeated
            self._cmdline_cache[data] = args
        return args

    def read_process(self, pid: int) -> _Record | None:
        """One process's record; None when it is gone, its stat is unreadable,
        or it is a kernel thread not asked for."""
        base = f"{self.proc}/{pid}/"
        opts = self.options
        try:
            st = procfs.parse_stat(_read_record(base + "stat"))
        except OSError as exc:
            if not _gone(exc):
                self.note_denied(f"stat:{pid}", _errname(exc))
            return None
        except procfs.ParseError:
            return None
        kthread = st.kernel_thread
        if kthread and not opts.kernel_threads:
            return None
        try:
            status, uid, vm_pte = self._status(base, pid) if opts.status else (None, None, None)
            memory = self._memory(base, pid, st, status)
            data = _read_unless_gone(base + "cmdline")
            cmdline = self._cmdline(data) if data is not None else None
            cg: tuple[str, str] | None = None
            if opts.jobs == "cgroup":  # the other job modes never look at it
                data = _read_unless_gone(base + "cgroup")
                cg = self._cgroup(data) if data is not None else None
        except _Gone:
            return None
        threads = self.read_threads(base) if opts.threads else ()
        return (
            pid, st.comm, st.ppid, uid, cmdline, st.state, kthread, memory,
            threads, st.num_threads, vm_pte, cg, st.starttime,
        )

    def _status(self, base: str, pid: int) -> tuple[dict[bytes, bytes] | None, int | None,
                                                    int | None]:
        """``status``, with its uid and VmPTE; raises :class:`_Gone`."""
        try:
            status = procfs.parse_status(_read_record(base + "status"))
        except OSError as exc:
            if _gone(exc):
                raise _Gone from exc
            self.note_denied(f"status:{pid}", _errname(exc))
            return None, None, None
        return status, procfs.status_uid(status), procfs.status_bytes(status, b"VmPTE")

    def _memory(self, base: str, pid: int, st: procfs.TaskStat,
                status: dict[bytes, bytes] | None) -> MemoryCounts | None:
        """The process's memory from smaps_rollup (or a fallback); raises :class:`_Gone`."""
        if st.kernel_thread:
            return _ZERO
        if not self.options.memory:
            return None
        try:
            fields = procfs.parse_smaps_rollup(_read_record(base + "smaps_rollup"))
            # Empty: a recorded ESRCH (record_proc.py), i.e. no mm.
            return memory_from_fields(fields, status) if fields else \
                self._no_mm_memory(base, pid, st, status)
        except procfs.ParseError:
            self.note_denied(f"smaps_rollup:{pid}", "malformed")
            return None
        except OSError as exc:
            memory = self._memory_fallback(base, pid, exc, st, status)
            if memory is False:
                raise _Gone from exc
            return memory

    def _memory_fallback(self, base, pid, exc, st, status):
        """smaps_rollup failed: zombie, denied, vanished, or an old kernel."""
        if exc.errno == errno.ESRCH:
            return self._no_mm_memory(base, pid, st, status)
        if exc.errno in (errno.EACCES, errno.EPERM):
            self.note_denied(f"smaps_rollup:{pid}", _errname(exc))
            return None
        if exc.errno == errno.ENOENT:
            # Either the process is gone or the kernel predates smaps_rollup
            # (4.14): smaps tells which.
            try:
                data = _read(base + "smaps")
            except OSError as exc2:
                if _gone(exc2):
                    return False
                self.note_denied(f"smaps:{pid}", _errname(exc2))
                return None
            with self.lock:
                self.notes.add("no smaps_rollup: summed smaps (Pss a few kB low per process)")
            try:
                fields = procfs.sum_smaps(data)
            except procfs.ParseError:
                self.note_denied(f"smaps:{pid}", "malformed")
                return None
            return memory_from_fields(fields, status) if data else _ZERO
        self.note_denied(f"smaps_rollup:{pid}", _errname(exc))
        return None

    def _no_mm_memory(self, base, pid, st, status):
        """The leader has no mm (smaps_rollup gave ESRCH): zero for a real
        zombie, else the rollup of a live thread.

        A thread group whose leader called pthread_exit keeps running: the
        leader is a zombie without an mm (``exit_mm``) while the other
        threads share the group's mm, so ``/proc/PID/smaps_rollup`` gives
        ESRCH but ``/proc/PID/task/TID/smaps_rollup`` of a live thread gives
        the process's memory (fs/proc/task_mmu.c ``show_smaps_rollup``).
        """
        if st.state in ("Z", "X", "x") and (st.num_threads or 0) <= 1:
            return _ZERO  # no thread left: it maps nothing
        task = live_task_dir(self.proc, pid)
        if task is None:
            return _ZERO  # a zombie, or a task past exit_mm with no live thread
        try:
            fields = procfs.parse_smaps_rollup(_read_record(task + "smaps_rollup"))
        except (OSError, procfs.ParseError) as exc:
            if isinstance(exc, OSError) and exc.errno == errno.ESRCH:
                return _ZERO  # that thread lost the mm too: the group is exiting
            why = _errname(exc) if isinstance(exc, OSError) else "malformed"
            self.note_denied(f"smaps_rollup:{pid}", why)
            return None
        return memory_from_fields(fields, status) if fields else _ZERO

    def read_threads(self, base: str) -> tuple[Thread, ...]:
        try:
            tids = sorted(int(t) for t in os.listdir(base + "task") if t.isdigit())
        except OSError:
            return ()
        out = []
        for tid in tids:
            try:
                tst = procfs.parse_stat(_read_record(f"{base}task/{tid}/stat"))
            except (OSError, procfs.ParseError):
                continue  # the thread exited
            out.append(Thread(tid, tst.comm, _THREAD_STATE.get(tst.state, "???")))
        return tuple(out)

    def work(self, chunks) -> None:
        """Read chunks of PIDs taken from ``chunks``, an iterator shared by
        every worker: a worker that was descheduled, or drew processes with
        big address spaces, takes fewer chunks instead of holding the rest
        back (``next`` on a list iterator is atomic under the GIL)."""
        results = {}
        read = self.read_process
        for chunk in chunks:
            for pid in chunk:
                r = read(pid)
                if r is not None:
                    results[pid] = r
        with self.lock:
            self.results.update(results)


def _read_unless_gone(path: str) -> bytes | None:
    """The file's bytes, None if it cannot be read; raises :class:`_Gone`."""
    try:
        return _read_record(path)
    except OSError as exc:
        if _gone(exc):
            raise _Gone from exc
        return None


def live_task_dir(proc_root: str, pid: int) -> str | None:
    """``PROC/PID/task/TID/`` of a live thread other than the leader, or None.

    For a process whose main thread has exited while others run: the
    leader's ``maps``, ``smaps`` and ``smaps_rollup`` are empty or ESRCH (it
    has no mm), a live thread's show the process's address space
    (fs/proc/base.c ``tid_base_stuff``).  "Live" is a ``task/TID/stat`` state
    other than Z/X.
    """
    base = f"{proc_root.rstrip('/') or '/'}/{pid}/task/"
    try:
        names = os.listdir(base)
    except OSError:
        return None
    for name in sorted(names, key=lambda n: (len(n), n)):
        if not name.isdigit() or not name.isascii() or int(name) == pid:
            continue
        try:
            tst = procfs.parse_stat(_read_record(f"{base}{name}/stat"))
        except (OSError, procfs.ParseError):
            continue  # the thread exited
        if tst.state not in ("Z", "X", "x"):
            return f"{base}{name}/"
    return None


def thread_group(proc_root: str, pid: int) -> int | None:
    """``Tgid`` of ``PROC/PID/status``: not ``pid`` when ``pid`` is a
    thread's TID (``/proc/TID`` resolves though it is not listed,
    fs/proc/base.c ``proc_pid_lookup``); None when unreadable."""
    try:
        value = procfs.parse_status(
            _read_record(f"{proc_root.rstrip('/') or '/'}/{pid}/status")
        ).get(b"Tgid")
        return int(value) if value is not None else None
    except (OSError, ValueError, procfs.ParseError):
        return None


def read_sysctl(proc_root: str, name: str) -> str | None:
    """``PROC/sys/NAME`` (e.g. ``kernel/osrelease``) as text, or None."""
    try:
        raw = _read_record(f"{proc_root.rstrip('/') or '/'}/sys/{name}")
    except OSError:
        return None
    return raw.decode("ascii", "replace").strip()


def read_mmap_min_addr(proc_root: str) -> int | None:
    """``vm.mmap_min_addr`` (0 when empty), or None when unreadable."""
    text = read_sysctl(proc_root, "vm/mmap_min_addr")
    try:
        return None if text is None else int(text or 0)
    except ValueError:
        return None


def read_label(proc_root: str, pid: int) -> str:
    """The command line, else ``[comm]``, else ``?`` (raw; escape to print)."""
    base = f"{proc_root.rstrip('/') or '/'}/{pid}/"
    try:
        raw = _read_record(base + "cmdline")[:4096]
        if raw:
            return " ".join(decode_name(a) for a in raw.rstrip(b"\0").split(b"\0"))
        comm = _read_record(base + "comm").rstrip(b"\n")
        return f"[{decode_name(comm)}]"
    except OSError:
        return "?"


def read_rollup(proc_root: str, pid: int) -> dict[bytes, int]:
    """``smaps_rollup``'s fields (bytes) of ``pid``; of a live thread when the
    main thread has exited (its own has no mm).  Raises :class:`OSError`."""
    base = live_task_dir(proc_root, pid) or f"{proc_root.rstrip('/') or '/'}/{pid}/"
    return procfs.parse_smaps_rollup(_read_record(f"{base}smaps_rollup"))


def list_pids(proc_root: str) -> list[int]:
    """Numeric entries of the ``/proc`` root, ascending."""
    return sorted(int(name) for name in os.listdir(proc_root) if name.isdigit())


def _read_text(path: str) -> str | None:
    try:
        return decode_name(_read_record(path)).strip()
    except OSError:
        return None


def _now_utc() -> str:
    t = time.time()
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(t)) + f".{int(t * 1000) % 1000:03d}Z"


def collect(proc_root: str = "/proc", options: CollectOptions | None = None) -> Snapshot:
    """Read every process under ``proc_root`` into a Snapshot.

    Raises ``OSError`` only when ``proc_root`` itself cannot be listed.
    """
    options = options or CollectOptions()
    timestamp = _now_utc()
    boottime_ns = time.clock_gettime_ns(time.CLOCK_BOOTTIME)
    proc = proc_root.rstrip("/") or "/"
    pids = list_pids(proc)
    reader = _Reader(proc, options)
    _read_processes(reader, pids, options.workers)
    results = reader.results
    records = [results[pid] for pid in pids if pid in results]
    jobs, job_of, mode = _assign_jobs(proc, records, options)
    processes = tuple(_process(record, job_of) for record in records)
    provenance = Provenance(
        source="linux",
        host=_read_text(f"{proc}/sys/kernel/hostname"),
        kernel=_read_text(f"{proc}/sys/kernel/osrelease"),
        timestamp=timestamp,
        denied=tuple(sorted(reader.denied, key=_denied_key)),
        notes=tuple(sorted(reader.notes)),
        job_mode=mode,
        boot_id=_read_text(f"{proc}/sys/kernel/random/boot_id") or None,
        # The clock of start times is this machine's: only for its own /proc.
        capture_time_ns=boottime_ns if os.path.realpath(proc) == "/proc" else None,
        clock_ticks_per_second=os.sysconf("SC_CLK_TCK"),
        mmap_min_addr=read_mmap_min_addr(proc),
    )
    return Snapshot(provenance=provenance, jobs=jobs, processes=processes)


def _read_processes(reader: _Reader, pids: list[int], workers: int | None) -> None:
    """Read ``pids`` into ``reader.results`` with up to ``workers`` threads."""
    workers = workers or min(4, max(2, (os.cpu_count() or 1) * 2))
    # Below about 64 processes a worker, threads cost more (GIL hand-overs,
    # thread start-up) than overlapping the reads gains: an idle machine's
    # 80 processes are read faster by this thread alone.
    workers = max(1, min(workers, len(pids) // _PIDS_PER_WORKER or 1))
    # The reads allocate thousands of small acyclic objects; a collection
    # pass triggered by them stops every worker (it holds the GIL) and frees
    # nothing, so the collector waits until the reading is done.
    pause_gc()
    try:
        chunks = iter([pids[i : i + _CHUNK] for i in range(0, len(pids), _CHUNK)])
        # workers - 1 threads, and this thread is the last worker.
        threads = []
        if workers > 1:
            import threading

            threads = [
                threading.Thread(target=reader.work, args=(chunks,), daemon=True)
                for _ in range(workers - 1)
            ]
        for t in threads:
            t.start()
        reader.work(chunks)
        for t in threads:
            t.join()
    finally:
        resume_gc()


def _process(record: _Record, job_of: Callable[[int | None, Any], int]) -> Process:
    """The Process of one record :meth:`_Reader.read_process` returned."""
    (
        pid, comm, ppid, uid, cmdline, state, kthread, memory,
        threads, num_threads, vm_pte, cg, start,
    ) = record
    return Process(
        koid=pid,
        name=comm,
        job_koid=job_of(uid, cg),
        ppid=ppid,
        uid=uid,
        cmdline=cmdline,
        state=state,
        kernel_thread=kthread,
        memory=memory,
        threads=threads,
        num_threads=num_threads,
        vm_pte_bytes=vm_pte,
        start_time_ticks=start,
    )


def _denied_key(item: tuple[str, str]) -> tuple[str, int]:
    denied = Denied(*item)
    return denied.kind, denied.pid or 0


def _assign_jobs(proc: str, records: list[_Record], options: CollectOptions):
    """Build the job tree for the chosen mode and a (uid, cgroup) → job function."""
    from zxmem.model import Job

    if options.jobs == "none":
        root = Job(cgroups.ROOT_JOB_KOID, "root", 0, path="")
        return (root,), (lambda uid, cg: root.koid), "none"

    if options.jobs == "user":
        uids = sorted({r[3] for r in records if r[3] is not None})
        names = _user_names(uids)
        # Not "root": that is the name of uid 0's job, listed just below it.
        root = Job(cgroups.USER_ROOT_JOB_KOID, "users", 0, path="")
        return (
            (root, *(Job(uid, names.get(uid, str(uid)), root.koid, path="") for uid in uids)),
            (lambda uid, cg: uid if uid is not None else root.koid),
            "user",
        )

    modes = {r[11][0] for r in records if r[11] is not None}
    mode = None
    for candidate in (cgroups.MODE_V1_MEMORY, cgroups.MODE_V2, cgroups.MODE_V1_SYSTEMD):
        if candidate in modes:
            mode = candidate
            break
    if mode is None:
        root = Job(cgroups.ROOT_JOB_KOID, "root", 0, path="/")
        return (root,), (lambda uid, cg: root.koid), "none"

    mounts: tuple[procfs.MountInfo, ...] = ()
    try:
        mounts = procfs.parse_mountinfo(_read(f"{proc}/self/mountinfo"))
    except (OSError, procfs.ParseError):
        try:
            mounts = procfs.parse_mountinfo(_read(f"{proc}/1/mountinfo"))
        except (OSError, procfs.ParseError):
            mounts = ()
    fs_root = os.path.dirname(os.path.abspath(proc)) or "/"
    ids = cgroups.CgroupIds(fs_root, cgroups.mount_for_mode(mounts, mode))

    def path_of(cg):
        return cg[1] if cg is not None and cg[0] == mode else "/"

    state_of = None
    if options.job_state:
        def state_of(path: str) -> str:
            data = ids.read_file(path, "memory.oom.group")
            return "killoom" if data is not None and data.strip() == b"1" else ""

    jobs, koids = cgroups.build_jobs(
        (path_of(r[11]) for r in records), ids.koid, state_of
    )
    if options.cgroup_memory:
        jobs = _with_cgroup_memory(jobs, ids, fs_root, mode, options.cgroup_columns_only)
    return jobs, (lambda uid, cg: koids[path_of(cg)]), mode


def _with_cgroup_memory(jobs, ids: cgroups.CgroupIds, fs_root: str, mode: str,
                        columns_only: bool = False):
    """``jobs`` with ``cgroup`` (and ``charged_bytes``) read from their directories.

    Only the memory controller's files are charges: on the v1 systemd name
    tree there are none, and jobs keep ``cgroup`` None.
    """
    import dataclasses

    from zxmem.sources import cgmem

    version = {cgroups.MODE_V2: "v2", cgroups.MODE_V1_MEMORY: "v1"}.get(mode)
    if version is None:
        return jobs
    out = []
    for job in jobs:
        directory = ids.directory(job.path)
        cg = None
        if directory is not None:
            cg = cgmem.read_cgroup_memory(fs_root.rstrip("/") + directory, version,
                                          columns_only)
        if cg is not None:
            job = dataclasses.replace(job, cgroup=cg, charged_bytes=cg.charged_bytes)
        out.append(job)
    return tuple(out)


def _user_names(uids: list[int]) -> dict[int, str]:
    try:
        import pwd
    except ImportError:  # pragma: no cover - not on Linux
        return {}
    out = {}
    for uid in uids:
        try:
            out[uid] = pwd.getpwuid(uid).pw_name
        except KeyError:
            pass
    return out
