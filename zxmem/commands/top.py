"""``zxmem top``: live memory, ranked by PSS, with what changed."""

from __future__ import annotations

import argparse
from typing import TYPE_CHECKING

from zxmem.commands import common
from zxmem.errors import UsageError

if TYPE_CHECKING:
    from zxmem.tui.sources import LiveSource, StoreSource

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


def open_source(args: argparse.Namespace, env) -> LiveSource | StoreSource:
    from zxmem.tui.sources import LiveSource, StoreSource

    if args.from_file is not None:
        if args.proc_root:
            raise UsageError("--proc-root and --from do not combine")
        return StoreSource(args.from_file, env.wall_clock())
    return LiveSource(common.proc_root(args, env))


# --------------------------------------------------------------------------


def run(args: argparse.Namespace, env) -> int:
    from zxmem.views.top import TopOptions

    opts = TopOptions(sort=args.sort, tree=args.tree, jobs_only=args.jobs_only,
                      filter=args.filter, units=args.units)
    source = open_source(args, env)
    try:
        # -n, -l and --json describe batch output: they ask for it.
        if args.batch or args.count or args.limit or args.json or not env.is_terminal():
            return _batch(args, env, source, opts)
        from zxmem.tui.app import run_app

        return run_app(source, opts, args.delay)
    finally:
        source.close()


def _batch(args: argparse.Namespace, env, source: LiveSource | StoreSource, opts) -> int:
    from zxmem.tui.sources import StoreSource, history_frame
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


__all__ = ["run", "add_parser"]
