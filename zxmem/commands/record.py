"""``zxmem record``: sample the machine into a history store on a cadence."""

from __future__ import annotations

import argparse
import re
from typing import TYPE_CHECKING

from zxmem.commands import common
from zxmem.errors import UsageError

if TYPE_CHECKING:
    from zxmem.collection import Plan

HELP = "record samples of the machine into a history store (see history, diff, --from)"

DESCRIPTION = """\
Sample the machine every --interval into a history store (one SQLite file),
keeping only what changed since the previous sample.

Every sample holds the kernel's totals, the system's memory pressure (PSI
some/full avg10 and total stall time from /proc/pressure/memory, left out
where the kernel has no PSI) and OOM kills (/proc/vmstat oom_kill), the jobs
(cgroups, with what their memory files say: charge, limits, memory.stat,
memory.events, pressure) and every process's identity and memory totals (for
ps, ps --cgroup, kstats, treemap, top --from); every --objects-every-th sample
also holds the memory objects and which process reaches each one (for vmos,
digest, mem, diff by object), and every process's mappings (for vmaps,
memgraph -v and top's drill-down).  No sample holds threads or descriptor
counts.  Read a sample back with any view's
--from STORE@WHEN, list them with 'zxmem history', compare two with
'zxmem diff'.

Retention: samples older than --retain are dropped, and the oldest ones while
the store is larger than --max-size.  One recorder per store (a second one is
refused).  A sample that cannot be written (disk full) is reported once and
recording goes on.  Without root, processes whose memory cannot be read are
recorded without it (said once).

The default store is /var/lib/zxmem/history.db for root, else
$XDG_STATE_HOME/zxmem/history.db (~/.local/state/zxmem/history.db).
"""

EPILOG = """\
examples:
  zxmem record                          every 10 s until stopped, objects every 6th
  zxmem record --interval 1m --retain 30d --max-size 2G
  zxmem record --count 1 --store /tmp/h.db   one sample, then exit
  zxmem history --store /tmp/h.db
  zxmem ps --from /tmp/h.db@-2h
"""

_SIZE = re.compile(r"(\d+)\s*([kKmMgGtT]?)(?:i?[bB])?")
_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}


def size_arg(value: str) -> int:
    """``500M``, ``1G``, ``1048576`` (bytes)."""
    m = _SIZE.fullmatch(value.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a size: {value!r} (use e.g. 500M or 1G)")
    return int(m.group(1)) << _SHIFT[m.group(2).lower()]


def duration_arg(value: str) -> float:
    from zxmem.store.reader import parse_duration

    try:
        seconds = parse_duration(value)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None
    if seconds > 366 * 86400 * 100:
        raise argparse.ArgumentTypeError(f"too long: {value!r}")
    return seconds


def positive_int(value: str) -> int:
    if not (value.isascii() and value.isdigit()) or int(value) < 1:
        raise argparse.ArgumentTypeError(f"not a positive number: {value!r}")
    return int(value)


def add_store(p: argparse.ArgumentParser) -> None:
    p.add_argument("--store", metavar="PATH",
                   help="the history store (default: /var/lib/zxmem/history.db for root, "
                   "else $XDG_STATE_HOME/zxmem/history.db)")


def store_path(args: argparse.Namespace) -> str:
    from zxmem.store import default_path

    return args.store or default_path()


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("record", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store(p)
    p.add_argument("--interval", type=duration_arg, default=10.0, metavar="T",
                   help="time between samples: 10s (default), 1m, 0.5 ...")
    p.add_argument("--count", type=positive_int, metavar="N",
                   help="stop after N samples (default: until stopped)")
    p.add_argument("--objects-every", type=positive_int, default=6, metavar="N",
                   help="every Nth sample also holds memory objects (default 6; "
                   "1: every sample)")
    p.add_argument("--retain", type=duration_arg, default=7 * 86400.0, metavar="T",
                   help="drop samples older than T (default 7d)")
    p.add_argument("--max-size", type=size_arg, default=1 << 30, metavar="SIZE",
                   help="drop the oldest samples while the store is larger (default 1G)")
    common.add_proc_root(p)
    p.set_defaults(run=run)


def plan_for(tier: int) -> Plan:
    from zxmem.collection import Plan
    from zxmem.store.writer import OBJECTS

    # Both tiers take process totals from smaps_rollup: totals summed from
    # smaps (memory_from_objects) round PSS per mapping and lack the
    # Pss_Anon/File/Shmem split, so every objects sample would show a step
    # in each process's series and rewrite its row twice.
    # Every tier keeps each job's cgroup memory files (charge, limits,
    # memory.stat, memory.events, pressure): ps --cgroup/--json/--explain of
    # a replayed sample show what they showed live.
    # Every tier keeps the system's memory pressure (PSI avg10 and total
    # stall, some and full) and the OOM-kill counter in the kernel's extra
    # values (zxmem.collection.PRESSURE_KEYS): report marks OOM kills and
    # draws pressure from them, top --from shows them in its header.
    if tier == OBJECTS:
        return Plan(status=True, kernel=True, pressure=True, objects=True, regions=False,
                    cgroup_memory=True)
    return Plan(status=True, kernel=True, pressure=True, cgroup_memory=True)


def run(args: argparse.Namespace, env) -> int:
    import signal

    from zxmem.store.recorder import Recorder
    from zxmem.store.writer import OBJECTS, TOTALS

    if args.interval <= 0:
        raise UsageError("--interval must be more than 0")
    path = store_path(args)
    said: set[str] = set()

    def warn(line: str) -> None:
        env.stderr.write(f"zxmem: {line}\n")
        env.stderr.flush()

    def warn_once(line: str, key: str | None = None) -> None:
        key = key or line
        if key not in said:
            said.add(key)
            warn(line)

    def stop(signum, frame):  # systemd's stop: end between samples, quietly
        raise KeyboardInterrupt

    try:
        previous = signal.signal(signal.SIGTERM, stop)
    except ValueError:  # not the main thread (tests)
        previous = None
    try:
        with Recorder(path, warn) as rec:
            _loop(args, env, rec, warn_once, TOTALS, OBJECTS)
    except KeyboardInterrupt:
        return 0
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)
    return 0


def _loop(args, env, rec, warn_once, TOTALS: int, OBJECTS: int) -> None:
    start = env.monotonic()
    taken = 0
    while args.count is None or taken < args.count:
        tier = OBJECTS if taken % args.objects_every == 0 else TOTALS
        snapshot = common.snapshot_from_args(args, env, plan_for(tier), warn_once)
        note = common.unreadable_note(snapshot)
        if note:
            warn_once(note + " (recorded without their memory)", "unreadable")
        now_ns = int(env.wall_clock() * 1e9)
        rec.add(snapshot, tier, now_ns)
        rec.enforce(now_ns, args.retain, args.max_size)
        taken += 1
        if args.count is not None and taken >= args.count:
            break
        wait = start + taken * args.interval - env.monotonic()
        if wait > 0:
            env.sleep(wait)
        elif wait < -args.interval:
            # Fell behind (a suspend, a slow sample): restart the cadence.
            start = env.monotonic() - taken * args.interval
