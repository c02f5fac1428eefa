"""``zxmem top``'s model: ranking, what changed, the tree, the filter.

Pure: a :class:`History` is fed one :class:`~zxmem.model.Snapshot` per
refresh (live or a recorded sample) and gives a :class:`Frame`; a frame and
:class:`TopOptions` give the rows to show (:func:`rows`).  The terminal app
(:mod:`zxmem.tui.app`) and the batch output (:func:`render_text`,
:func:`frame_json`) are thin over it.

What changed, per process and per job:

* a process is its identity (:meth:`Snapshot.identity`: boot, PID, start
  time), so a PID reused by another process is a new process;
* ``since last``: PSS now minus PSS at the previous refresh; a process that
  was not there counts from 0 (it is marked new);
* ``since start``: PSS now minus PSS at the first refresh; a process started
  since counts from 0.  Summed over processes this is how much more (or
  less) the processes shown hold than at the start, apart from those that
  exited;
* unknown PSS (denied) at either end gives an unknown change (None), never 0.

Jobs (cgroups) are keyed by their path (the cgroup id when they have none),
with their totals (:class:`zxmem.tasktree.TaskTree`).
"""

from __future__ import annotations

import json
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field, replace

from zxmem.model import Job, KernelStats, Process, Snapshot
from zxmem.tasktree import TaskTree
from zxmem.textsafe import escape_terminal, truncate_to_width
from zxmem.units import format_size

# Sort keys: a column, or a change.  Sizes and changes sort largest first
# (a change by its size, growth and shrinking alike: what moved most);
# name and pid ascending.  Unknown values sort last.
SORT_KEYS = ("pss", "uss", "swap", "delta", "delta_start", "name", "pid")

Identity = tuple[str | None, int, int | None]


@dataclass(frozen=True, slots=True)
class Header:
    """The machine's totals (bytes; None = unknown)."""

    time: str | None
    total_bytes: int | None
    used_bytes: int | None  # MemTotal - MemAvailable
    free_bytes: int | None  # MemFree
    available_bytes: int | None
    kernel_bytes: int | None  # total - free - VMOs (LRU): slab, vmalloc, page tables...
    swap_total_bytes: int | None
    swap_used_bytes: int | None
    psi_some_avg10: float | None  # percent
    psi_full_avg10: float | None
    oom_kills_since_start: int | None
    processes: int  # processes in the snapshot (kernel threads excluded)
    unreadable: int  # of them, whose memory could not be read (not root)
    new: int  # processes that appeared since the last refresh
    exited: int  # ... and that exited
    pss_bytes: int  # sum over readable processes


@dataclass(frozen=True, slots=True)
class Row:
    """One line of the table: a job (``kind == "j"``) or a process (``"p"``)."""

    kind: str
    koid: int  # PID or job koid
    depth: int
    name: str  # raw: escape at the edge
    job_name: str  # the process's cgroup (job path), raw
    pss_bytes: int | None
    uss_bytes: int | None  # PRIVATE
    swap_bytes: int | None
    delta_bytes: int | None  # since the last refresh
    delta_start_bytes: int | None  # since the first
    new: bool = False  # not there at the last refresh
    unknown_processes: int = 0  # jobs: processes below whose memory is unknown
    charged_bytes: int | None = None  # jobs: what the cgroup is charged (memory.current)
    limit_bytes: int | None = None  # jobs: its limit (None: none, or unknown)


@dataclass(frozen=True, slots=True)
class Frame:
    """One refresh: the snapshot, the header, every job and process row."""

    snapshot: Snapshot
    header: Header
    processes: tuple[Row, ...]  # every process, in snapshot order
    jobs: dict[int, Row]  # job koid -> row (depth 0)
    tree: TaskTree
    number: int  # refreshes so far (1 = the first)


@dataclass(frozen=True, slots=True)
class TopOptions:
    sort: str = "pss"
    tree: bool = False
    jobs_only: bool = False
    filter: str = ""  # case-insensitive substring of name, command line or cgroup
    units: str | None = None  # a fixed unit letter for the table's sizes (None: natural)


def _pss(p: Process) -> int | None:
    return p.memory.pss_bytes if p.memory is not None else None


def _sub(a: int | None, b: int | None) -> int | None:
    return None if a is None or b is None else a - b


def _job_key(job: Job) -> str:
    return job.path or f"#{job.koid}"


def _job_names(tree: TaskTree) -> dict[int, str]:
    return {koid: (j.path or j.name) for koid, j in tree.jobs.items()}


@dataclass
class History:
    """What :func:`zxmem.views.top` remembers between refreshes: PSS by
    identity at the first and the last refresh, and the OOM counter."""

    first: dict[Identity, int | None] = field(default_factory=dict)
    last: dict[Identity, int | None] = field(default_factory=dict)
    first_jobs: dict[str, int | None] = field(default_factory=dict)
    last_jobs: dict[str, int | None] = field(default_factory=dict)
    first_oom: int | None = None
    first_boot: str | None = None  # the first refresh's boot (a counter resets at boot)
    count: int = 0

    def _process_rows(self, snapshot: Snapshot, names: dict[int, str], first: bool
                      ) -> tuple[list[Row], int, int, int, int, int]:
        """The processes' rows, with their changes, and the header's counts
        (processes, unreadable, new, exited, PSS sum); remembers them as the
        last refresh."""
        rows: list[Row] = []
        now: dict[Identity, int | None] = {}
        new = unreadable = pss_sum = nprocs = 0
        for p in snapshot.processes:
            if p.kernel_thread:
                continue
            nprocs += 1
            ident = snapshot.identity(p)
            pss = _pss(p)
            now[ident] = pss
            if pss is None:
                # Not root: another user's process.  Counted in the
                # header, never shown as 0.
                unreadable += 1
                continue
            pss_sum += pss
            if first:
                self.first[ident] = pss
            seen = ident in self.last
            is_new = not first and not seen
            new += is_new
            base_last = self.last.get(ident) if seen else 0
            base_first = self.first[ident] if ident in self.first else 0
            m = p.memory
            rows.append(Row(
                kind="p", koid=p.koid, depth=0, name=p.display_name,
                job_name=names.get(p.job_koid, ""),
                pss_bytes=pss, uss_bytes=m.private_bytes if m else None,
                swap_bytes=m.swap_pss_bytes if m else None,
                delta_bytes=_sub(pss, base_last) if not first else 0 if pss is not None else None,
                delta_start_bytes=_sub(pss, base_first),
                new=is_new,
            ))
        exited = 0 if first else sum(1 for k in self.last if k not in now)
        # Forget processes that exited: their first values cannot come back
        # (a new process has another identity), and top runs for days.
        if not first:
            self.first = {k: v for k, v in self.first.items() if k in now}
        self.last = now
        return rows, nprocs, unreadable, new, exited, pss_sum

    def _job_rows(self, tree: TaskTree, names: dict[int, str], first: bool) -> dict[int, Row]:
        """The jobs' rows, with their changes; remembers them as the last refresh."""
        jobs: dict[int, Row] = {}
        jnow: dict[str, int | None] = {}
        for koid, job in tree.jobs.items():
            r = tree.job_row(job, 0)
            key = _job_key(job)
            cg = job.cgroup
            charged = cg.charged_bytes if cg is not None else job.charged_bytes
            limit = cg.limit_bytes if cg is not None else None
            jnow[key] = r.pss_bytes
            if first:
                self.first_jobs[key] = r.pss_bytes
            seen = key in self.last_jobs
            jobs[koid] = Row(
                kind="j", koid=koid, depth=0, name=names[koid], job_name=names[koid],
                pss_bytes=r.pss_bytes, uss_bytes=r.private_bytes,
                swap_bytes=_job_swap(tree, job),
                delta_bytes=(0 if r.pss_bytes is not None else None) if first
                else _sub(r.pss_bytes, self.last_jobs.get(key) if seen else 0),
                delta_start_bytes=_sub(r.pss_bytes, self.first_jobs.get(key, 0)),
                new=not first and not seen, unknown_processes=r.unknown_processes,
                charged_bytes=charged, limit_bytes=limit if isinstance(limit, int) else None,
            )
        self.first_jobs = {k: v for k, v in self.first_jobs.items() if k in jnow}
        self.last_jobs = jnow
        return jobs

    def update(self, snapshot: Snapshot) -> Frame:
        """The frame of ``snapshot``; remembers it as the last refresh."""
        first = self.count == 0
        self.count += 1
        tree = TaskTree(snapshot)
        names = _job_names(tree)
        rows, nprocs, unreadable, new, exited, pss_sum = self._process_rows(
            snapshot, names, first)
        jobs = self._job_rows(tree, names, first)

        oom = snapshot.kernel.extra.get("oom_kill") if snapshot.kernel else None
        boot = snapshot.provenance.boot_id
        if first:
            self.first_oom = oom
            self.first_boot = boot
        # The kills since the first refresh: the counter counts since boot,
        # so across a reboot (a history store's samples) they are unknown.
        first_oom = self.first_oom
        if boot is not None and self.first_boot is not None and boot != self.first_boot:
            first_oom = None
        header = _header(snapshot, oom, first_oom, nprocs, unreadable,
                         new, exited, pss_sum)
        return Frame(snapshot=snapshot, header=header, processes=tuple(rows), jobs=jobs,
                     tree=tree, number=self.count)


def _job_swap(tree: TaskTree, job: Job) -> int | None:
    """SwapPss summed over the job's processes and sub-jobs (None when no
    process below it gives one)."""
    total, known = 0, False
    stack = [job]
    while stack:
        j = stack.pop()
        for p in tree.job_processes.get(j.koid, ()):
            if p.memory is not None and p.memory.swap_pss_bytes is not None:
                total += p.memory.swap_pss_bytes
                known = True
        stack.extend(tree.child_jobs.get(j.koid, ()))
    return total if known else None


def _header(snapshot: Snapshot, oom: int | None, first_oom: int | None, nprocs: int,
            unreadable: int, new: int, exited: int, pss_sum: int) -> Header:
    k: KernelStats | None = snapshot.kernel
    mi = k.meminfo if k is not None else {}
    total = mi.get("MemTotal")
    avail = mi.get("MemAvailable")
    free = mi.get("MemFree")
    vmo = k.vmo_bytes if k is not None else None
    swap_total = mi.get("SwapTotal")
    swap_free = mi.get("SwapFree")
    extra = k.extra if k is not None else {}

    def psi(key: str) -> float | None:
        v = extra.get(key)
        return None if v is None else v / 100

    kills = _sub(oom, first_oom)

    return Header(
        time=snapshot.provenance.timestamp,
        total_bytes=total,
        used_bytes=_sub(total, avail),
        free_bytes=free,
        available_bytes=avail,
        kernel_bytes=(total - free - vmo
                      if total is not None and free is not None and vmo is not None else None),
        swap_total_bytes=swap_total,
        swap_used_bytes=_sub(swap_total, swap_free),
        psi_some_avg10=psi("psi_some_avg10_centipct"),
        psi_full_avg10=psi("psi_full_avg10_centipct"),
        # A count lower than the first (a reboot no boot id told): unknown.
        oom_kills_since_start=kills if kills is None or kills >= 0 else None,
        processes=nprocs, unreadable=unreadable, new=new, exited=exited, pss_bytes=pss_sum,
    )


# --------------------------------------------------------------------------
# Which rows, in which order


def _matches(row: Row, needle: str) -> bool:
    return needle in row.name.lower() or needle in row.job_name.lower()


def sort_key(sort: str):
    """The key function for ``sort`` (one of :data:`SORT_KEYS`)."""
    if sort not in SORT_KEYS:
        raise ValueError(f"unknown sort key {sort!r}: one of {', '.join(SORT_KEYS)}")
    if sort == "name":
        return lambda r: (r.name.lower(), r.koid)
    if sort == "pid":
        return lambda r: (r.koid,)
    attr = {"pss": "pss_bytes", "uss": "uss_bytes", "swap": "swap_bytes",
            "delta": "delta_bytes", "delta_start": "delta_start_bytes"}[sort]
    if sort.startswith("delta"):
        def key(r: Row) -> tuple:
            v = getattr(r, attr)
            return (v is None, -abs(v or 0), -(v or 0), -(r.pss_bytes or 0), r.koid)
        return key

    def size_key(r: Row) -> tuple:
        v = getattr(r, attr)
        return (v is None, -(v or 0), r.koid)
    return size_key


def rows(frame: Frame, opts: TopOptions) -> list[Row]:
    """The rows to show, in order: flat (processes, or jobs with
    ``jobs_only``) sorted by ``opts.sort``; or the tree of jobs with their
    processes, siblings sorted.  The filter keeps matching rows (and in the
    tree, the jobs above them)."""
    needle = opts.filter.lower()
    key = sort_key(opts.sort)
    if not opts.tree:
        pool: Iterable[Row] = frame.jobs.values() if opts.jobs_only else frame.processes
        return sorted((r for r in pool if not needle or _matches(r, needle)), key=key)
    tree = frame.tree
    by_job: dict[int, list[Row]] = {}
    if not opts.jobs_only:
        koid_job = {p.koid: p.job_koid for p in frame.snapshot.processes}
        for r in frame.processes:
            by_job.setdefault(koid_job[r.koid], []).append(r)
    out: list[Row] = []

    def walk(job_koid: int, depth: int) -> bool:
        """Appends the job's subtree; whether anything in it matched."""
        at = len(out)
        jrow = frame.jobs[job_koid]
        short = tree.jobs[job_koid].name or jrow.name
        out.append(replace(jrow, depth=depth, name=short))
        matched = not needle or _matches(jrow, needle)
        procs = [r for r in by_job.get(job_koid, ())
                 if not needle or matched or _matches(r, needle)]
        out.extend(replace(r, depth=depth + 1) for r in sorted(procs, key=key))
        found = matched or bool(procs)
        children = sorted((frame.jobs[j.koid] for j in tree.child_jobs.get(job_koid, ())),
                          key=key)
        for child in children:
            found = walk(child.koid, depth + 1) or found
        if not found:
            del out[at:]
        return found

    for root in sorted((frame.jobs[j.koid] for j in tree.roots), key=key):
        walk(root.koid, 0)
    return out


# --------------------------------------------------------------------------
# Formatting (the batch output and the app's cells)


def size_text(value: int | None, units: str | None = None) -> str:
    return "-" if value is None else format_size(value, units)


def delta_text(value: int | None, new: bool = False, units: str | None = None) -> str:
    """``+1.5M``, ``-12k``, ``0``; ``-`` unknown; ``new`` for a process
    that was not there at the last refresh."""
    if new:
        return "new"
    if value is None:
        return "-"
    if value == 0:
        return "0"
    return ("+" if value > 0 else "-") + format_size(abs(value), units)


def pct_text(value: float | None) -> str:
    return "-" if value is None else f"{value:.2f}%"


def header_lines(h: Header, source: str = "") -> list[str]:
    """The header, each line under 80 columns (plain text, names escaped):
    where and when, memory, pressure and processes, and the unreadable."""
    s = size_text
    lines = []
    if source or h.time:
        lines.append(f"{escape_terminal(source)}  {h.time or ''}".strip())
    lines.append(f"mem {s(h.total_bytes)}  used {s(h.used_bytes)}  free {s(h.free_bytes)}  "
                 f"avail {s(h.available_bytes)}  kernel {s(h.kernel_bytes)}  "
                 f"swap {s(h.swap_used_bytes)}/{s(h.swap_total_bytes)}")
    oom = "-" if h.oom_kills_since_start is None else str(h.oom_kills_since_start)
    lines.append(f"psi some {pct_text(h.psi_some_avg10)} full {pct_text(h.psi_full_avg10)}"
                 f"  oom kills {oom}  procs {h.processes} (+{h.new} -{h.exited})"
                 f"  PSS {s(h.pss_bytes)}")
    if h.unreadable:
        noun = "process" if h.unreadable == 1 else "processes"
        lines.append(f"{h.unreadable} {noun} not readable (another user's): "
                     "not shown, not in PSS")
    return lines


COLUMNS = ("PID", "PSS", "USS", "SWAP", "ΔLAST", "ΔSTART", "NAME")
_WIDTHS = (8, 7, 7, 7, 7, 7)


def row_cells(r: Row, tree: bool = False, units: str | None = None) -> list[str]:
    """A row's cells as text, its name escaped (and indented in the tree)."""
    ident = f"j:{r.koid}" if r.kind == "j" else str(r.koid)
    name = escape_terminal(r.name)
    if r.kind == "j" and r.charged_bytes is not None:
        name += f"  (charged {size_text(r.charged_bytes, units)}"
        name += f" of {size_text(r.limit_bytes, units)})" if r.limit_bytes is not None else ")"
    if tree:
        name = "  " * r.depth + name
    u = units
    return [ident, size_text(r.pss_bytes, u), size_text(r.uss_bytes, u),
            size_text(r.swap_bytes, u), delta_text(r.delta_bytes, r.new, u),
            delta_text(r.delta_start_bytes, units=u), name]


def render_table(table: Sequence[Row], width: int | None, tree: bool = False,
                 limit: int | None = None, units: str | None = None) -> str:
    heads = [f"{c:>{w}}" for c, w in zip(COLUMNS, _WIDTHS, strict=False)] + [COLUMNS[-1]]
    lines = [" ".join(heads)]
    for r in table[:limit]:
        cells = row_cells(r, tree, units)
        line = " ".join(f"{c:>{w}}" for c, w in zip(cells, _WIDTHS, strict=False))
        line += " " + cells[-1]
        lines.append(truncate_to_width(line, width) if width else line)
    return "\n".join(lines) + "\n"


def render_text(frame: Frame, opts: TopOptions, width: int | None = None,
                limit: int | None = None, source: str = "") -> str:
    """One batch refresh as plain text: the header, a blank line, the table."""
    head = "\n".join(header_lines(frame.header, source))
    return head + "\n\n" + render_table(rows(frame, opts), width, opts.tree, limit,
                                     opts.units)


def _row_json(r: Row) -> dict:
    return {"type": r.kind, "koid": r.koid, "depth": r.depth, "name": r.name,
            "job": r.job_name, "pss_bytes": r.pss_bytes, "uss_bytes": r.uss_bytes,
            "swap_bytes": r.swap_bytes, "delta_bytes": r.delta_bytes,
            "delta_start_bytes": r.delta_start_bytes, "new": r.new,
            **({"charged_bytes": r.charged_bytes, "limit_bytes": r.limit_bytes,
                "unknown_processes": r.unknown_processes} if r.kind == "j" else {})}


def frame_json(frame: Frame, opts: TopOptions, limit: int | None = None) -> str:
    """One refresh as one line of JSON (sizes in bytes, unknown null)."""
    h = frame.header
    doc = {
        "refresh": frame.number,
        "timestamp": h.time,
        "memory": {"total_bytes": h.total_bytes, "used_bytes": h.used_bytes,
                   "free_bytes": h.free_bytes, "available_bytes": h.available_bytes,
                   "kernel_bytes": h.kernel_bytes, "swap_total_bytes": h.swap_total_bytes,
                   "swap_used_bytes": h.swap_used_bytes},
        "pressure": {"some_avg10": h.psi_some_avg10, "full_avg10": h.psi_full_avg10},
        "oom_kills_since_start": h.oom_kills_since_start,
        "processes": {"count": h.processes, "unreadable": h.unreadable, "new": h.new,
                      "exited": h.exited, "pss_bytes": h.pss_bytes},
        "sort": opts.sort, "tree": opts.tree, "jobs_only": opts.jobs_only,
        "rows": [_row_json(r) for r in rows(frame, opts)[:limit]],
    }
    return json.dumps(doc, ensure_ascii=False) + "\n"
