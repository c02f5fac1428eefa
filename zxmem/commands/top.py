"""``zxmem top``: live memory, ranked by PSS, with what changed."""

from __future__ import annotations

import argparse
import os
from typing import TYPE_CHECKING

from zxmem.commands import common
from zxmem.errors import UsageError, ZxmemError

if TYPE_CHECKING:
    import sqlite3

    from zxmem.collection import Plan
    from zxmem.model import Process, Snapshot

HELP = "live memory: processes and jobs ranked by PSS, with what changed"

DESCRIPTION = """\
A full-screen view of the machine's memory, refreshed every -d seconds:

header  total / used (total - MemAvailable) / free / available / kernel
        (total - free - VMOs: slab, vmalloc, page tables, stacks...) memory,
        swap used/total; memory pressure (PSI some/full avg10, percent of
        the last 10 s); OOM kills since top started; processes, new (+) and
        exited (-) since the last refresh, and their PSS.
table   PID (j:KOID for a job), PSS, USS (PRIVATE), SWAP (SwapPss: swapped
        out anonymous memory, shared pages divided as PSS divides them), the
        change of PSS since the last refresh (new: the process was not
        there) and since the start (a process started since counts from 0),
        NAME; a job's name is followed by its cgroup's charge and limit.

A process is its PID and start time: a reused PID is a new process.  Not
root: other users' processes cannot be read; they are counted in the header
and left out of the table and the sums, never shown as 0.

Keys: p u w d D n i sort by PSS, USS, SWAP, change since last, change since
start, name, PID (or click a column); / filter by name, command line or
cgroup; t tree of jobs and processes / flat; j jobs only; space pause;
Enter a process's memory objects (vmos) and mappings (vmaps), Esc back;
with --from: left/right the previous/next sample, g go to a sample or time;
? help; q quit.

Batch mode (standard output not a terminal, or -b): each refresh as plain
text (header, a blank line, the table), or with --json one JSON object per
line; -n COUNT refreshes (default: until interrupted; with --from, to the
store's last sample).
"""

EPILOG = """\
examples:
  zxmem top                       full screen, every 2 s
  zxmem top -d 0.5 --sort=delta   what moves, every half second
  zxmem top -b -n 3 -l 20         three refreshes of the 20 largest, as text
  zxmem top -b -n 2 --json | jq '.rows[0]'
  zxmem top --from history.db     step through a history store (zxmem record)
  zxmem top --from history.db@-2h start two hours ago
"""

SORT_LETTERS = {"pss": "p", "uss": "u", "swap": "w", "delta": "d", "delta_start": "D",
                "name": "n", "pid": "i"}


def _seconds(value: str) -> float:
    try:
        v = float(value)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {value!r}") from None
    if not 0.01 <= v <= 86400:
        raise argparse.ArgumentTypeError(f"{value}: give 0.01 to 86400 seconds")
    return v


def _count(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise argparse.ArgumentTypeError(f"not a positive count: {value!r}")
    return int(value)


def add_parser(sub: argparse._SubParsersAction) -> None:
    from zxmem.views.top import SORT_KEYS

    p = sub.add_parser("top", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("-d", "--delay", type=_seconds, default=2.0, metavar="SECONDS",
                   help="seconds between refreshes (default 2)")
    p.add_argument("-b", "--batch", action="store_true",
                   help="plain output, one refresh after another (also when standard "
                   "output is not a terminal)")
    p.add_argument("-n", "--count", type=_count, metavar="COUNT",
                   help="batch mode: stop after COUNT refreshes")
    p.add_argument("-l", "--limit", type=_count, metavar="ROWS",
                   help="batch mode: at most ROWS rows per refresh")
    p.add_argument("--json", action="store_true",
                   help="batch mode: one JSON object per refresh (sizes in bytes)")
    p.add_argument("--sort", choices=SORT_KEYS, default="pss",
                   help="order of the rows (default pss; delta: change since the last "
                   "refresh, delta_start: since the start, largest change first)")
    p.add_argument("-t", "--tree", action="store_true",
                   help="a tree of jobs (cgroups) and their processes")
    p.add_argument("-J", dest="jobs_only", action="store_true", help="jobs only")
    p.add_argument("--units", type=common.units_arg, metavar="X",
                   help="fix the table's sizes to unit X, one of B k M G T P E")
    p.add_argument("--filter", default="", metavar="TEXT",
                   help="only rows whose name, command line or cgroup holds TEXT")
    p.add_argument("--from", dest="from_file", metavar="STORE",
                   help="step through the samples of a history store (zxmem record) "
                   "instead of the live system: STORE, or STORE@WHEN to start at a sample "
                   "(@first, @last, @N, @-2h, @2026-12-03T10:00)")
    common.add_proc_root(p)
    p.set_defaults(run=run)


# --------------------------------------------------------------------------
# Sources of snapshots: the live system, or a history store.


def refresh_plan() -> Plan:
    """What each refresh reads: process totals (smaps_rollup; SWAP is its
    SwapPss, so no status file is read), the job tree with each cgroup's
    charge and limit, the kernel totals with PSI and the OOM counter."""
    from zxmem.collection import Plan

    return Plan(jobs="cgroup", cgroup_memory=True, cgroup_columns_only=True,
                kernel=True, pressure=True)


class Detail:
    """A process's memory objects and mappings, as text, or why not."""

    def __init__(self, title: str, vmos: str, vmaps: str) -> None:
        self.title = title
        self.vmos = vmos
        self.vmaps = vmaps


def _detail_text(snapshot: Snapshot, process: Process | None, pid: int,
                 stored: bool = False) -> Detail:
    from zxmem.textsafe import escape_terminal
    from zxmem.views import vmaps, vmos

    if process is None:
        return Detail(f"pid {pid}", f"process {pid} is gone", "")
    title = f"pid {pid}  {escape_terminal(process.display_name)}"
    if process.vmo_refs is None:
        why = common.denied_why(snapshot, f"maps:{pid}") or (
            "not recorded (this sample is of the totals tier: zxmem record keeps objects "
            "every --objects-every samples)" if stored else "not readable")
        objs = f"memory objects of {pid}: {why}\n"
    else:
        objs = vmos.render(process, snapshot)
    if process.mappings is None:
        why = common.denied_why(snapshot, f"maps:{pid}") or (
            "not recorded (a history store keeps no mappings)" if stored else "not readable")
        maps = f"mappings of {pid}: {why}\n"
    else:
        maps = vmaps.render(process, snapshot)
    return Detail(title, objs, maps)


class LiveSource:
    """Refreshes from the live system through :func:`zxmem.collect`."""

    live = True

    def __init__(self, proc_root: str) -> None:
        self.proc_root = proc_root
        self.plan = refresh_plan()
        self.label = "live"

    def next(self) -> Snapshot:
        from zxmem.collection import collect

        try:
            return collect(self.plan, self.proc_root)
        except OSError as exc:
            raise ZxmemError(f"cannot read {self.proc_root}: {exc.strerror}") from None

    def detail(self, pid: int) -> Detail:
        from zxmem.collection import Plan, collect

        # Every process's maps (so #map and #shr count the whole system),
        # page counts (smaps) and regions for this one.
        plan = Plan(memory=False, jobs="none", objects=True, detail_pids=(pid,), regions=True)
        try:
            snapshot = collect(plan, self.proc_root)
        except OSError as exc:
            return Detail(f"pid {pid}", f"cannot read {self.proc_root}: {exc.strerror}", "")
        return _detail_text(snapshot, snapshot.process(pid), pid)

    def close(self) -> None:
        pass


class StoreSource:
    """Steps through the samples of a history store."""

    live = False

    def __init__(self, src: str, now_s: float) -> None:
        from zxmem.store import is_store_file, split_selector
        from zxmem.store.reader import samples, select
        from zxmem.store.schema import open_store

        base, selector = split_selector(src)
        if not is_store_file(base):
            raise ZxmemError(f"{src}: not a history store (zxmem record writes one)")
        self.name = base
        self.conn: sqlite3.Connection = open_store(base, create=False, readonly=True)
        self.numbers = [s.n for s in samples(self.conn)]
        if not self.numbers:
            raise ZxmemError(f"{base}: the store holds no samples yet")
        self.index = self.numbers.index(select(self.conn, selector or "first", now_s, base))
        self.now_s = now_s
        self._cache: dict[int, Snapshot] = {}

    @property
    def label(self) -> str:
        return (f"{os.path.basename(self.name)} sample {self.numbers[self.index]} "
                f"({self.index + 1}/{len(self.numbers)})")

    def sample(self, index: int) -> Snapshot:
        from zxmem.store.reader import read_sample

        n = self.numbers[index]
        if n not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            try:
                self._cache[n] = read_sample(self.conn, n, self.name)
            except ZxmemError:
                raise
            except Exception as exc:  # sqlite3.Error, a corrupt row
                raise ZxmemError(f"{self.name}: cannot read sample {n}: {exc}") from None
        return self._cache[n]

    def frames_at(self, index: int) -> list[Snapshot]:
        """The samples a frame at ``index`` is computed from: the first, the
        previous and this one (the changes are since the first and the
        previous sample)."""
        picks = sorted({0, max(0, index - 1), index})
        return [self.sample(i) for i in picks]

    def step(self, delta: int) -> bool:
        index = min(max(0, self.index + delta), len(self.numbers) - 1)
        moved = index != self.index
        self.index = index
        return moved

    def jump(self, selector: str) -> None:
        from zxmem.store.reader import select

        self.index = self.numbers.index(select(self.conn, selector, self.now_s, self.name))

    def at_end(self) -> bool:
        return self.index >= len(self.numbers) - 1

    def detail(self, pid: int) -> Detail:
        snapshot = self.sample(self.index)
        return _detail_text(snapshot, snapshot.process(pid), pid, stored=True)

    def close(self) -> None:
        self.conn.close()


def history_frame(source: StoreSource):
    """The frame of the store's current sample (changes since its first
    sample and since the previous one)."""
    from zxmem.views.top import History

    history = History()
    frame = None
    for snap in source.frames_at(source.index):
        frame = history.update(snap)
    assert frame is not None
    return frame


def open_source(args: argparse.Namespace, env) -> LiveSource | StoreSource:
    if args.from_file is not None:
        if args.proc_root:
            raise UsageError("--proc-root and --from do not combine")
        return StoreSource(args.from_file, env.wall_clock())
    return LiveSource(common.proc_root(args, env))


# --------------------------------------------------------------------------


def run(args: argparse.Namespace, env) -> int:
    from zxmem.views.top import TopOptions

    if (args.count or args.limit or args.json) and not args.batch and env.is_terminal():
        # -n/-l/--json describe batch output: ask for it rather than guess.
        raise UsageError("top: -n, -l and --json are for batch mode: add -b")
    opts = TopOptions(sort=args.sort, tree=args.tree, jobs_only=args.jobs_only,
                      filter=args.filter, units=args.units)
    source = open_source(args, env)
    try:
        if args.batch or not env.is_terminal():
            return _batch(args, env, source, opts)
        from zxmem.tui.app import run_app

        return run_app(source, opts, args.delay)
    finally:
        source.close()


def _batch(args: argparse.Namespace, env, source: LiveSource | StoreSource, opts) -> int:
    from zxmem.views import top as view

    history = view.History()
    done = 0
    start = env.monotonic()
    while True:
        if isinstance(source, StoreSource):
            frame = history_frame(source)
        else:
            frame = history.update(source.next())
        if args.json:
            env.stdout.write(view.frame_json(frame, opts, args.limit))
        else:
            if done:
                env.stdout.write("\n")
            env.stdout.write(view.render_text(frame, opts, env.width(), args.limit,
                                              source.label))
        env.stdout.flush()
        done += 1
        if args.count is not None and done >= args.count:
            return 0
        if isinstance(source, StoreSource):
            if not source.step(1):
                return 0
            continue
        # A fixed cadence, as kstats -d: refresh n is due at start + n * delay.
        wait = start + done * args.delay - env.monotonic()
        if wait > 0:
            env.sleep(wait)


__all__ = ["run", "add_parser", "LiveSource", "StoreSource", "Detail", "refresh_plan",
           "history_frame", "SORT_LETTERS"]
