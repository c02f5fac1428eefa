"""``zxmem kstats``: kernel memory (``-m``) and CPU (``-c``) reports on a cadence."""

from __future__ import annotations

import argparse

from zxmem.commands import common
from zxmem.errors import UsageError, ZxmemError
from zxmem.textsafe import escape_terminal

HELP = "kernel memory (-m) and per-CPU (-c) statistics, repeated every -d seconds"

DESCRIPTION = """\
Print kernel memory and CPU statistics on a fixed cadence (every -d seconds,
until -n reports or Ctrl-C), the way Zircon's kstats does.

Memory columns (-m), from /proc/meminfo (kB fields) unless named otherwise:
  total   MemTotal: RAM the kernel manages (physical RAM minus wired)
  free    MemFree: pages on the free lists (page cache is not free)
  VMOs    Active + Inactive + Unevictable + Hugetlb: every page on the LRU
          lists (anonymous memory, page cache, shmem/tmpfs) plus the hugetlb
          pools; Linux's memory objects
  kheap   Slab + VmallocUsed + Percpu + (KReclaimable - SReclaimable) - kfree:
          the kernel's allocators, less their free slots
  kfree   sum of (num_objs - active_objs) * objsize over /proc/slabinfo: free
          object slots inside slab pages (slabinfo is root only; otherwise
          "-" and kheap includes them)
  wired   "System RAM" ranges of /proc/iomem - MemTotal: kernel image,
          memblock reservations, struct page arrays (root only, else "-")
  mmu     PageTables + SecPageTables: user and secondary (KVM/IOMMU) page
          tables; the kernel's own page tables are not reported by Linux
  ipc     (TCP mem + UDP mem) * page size + FRAG memory, /proc/net/sockstat:
          socket buffers (--style=late); pipe buffers are not counted anywhere
  other   MemTotal - free - VMOs - (kheap + kfree) - KernelStack - mmu
          - Zswap - Balloon - Unaccepted (--style=late): memory in no
          counter (alloc_pages() users, drivers, dma-bufs). KernelStack is
          left out of the subtraction when thread stacks are vmalloc'ed
          (CONFIG_VMAP_STACK), because VmallocUsed already holds them.
ipc is not subtracted in other (socket buffers are slab objects and page
fragments, already in kheap or other) and wired lies outside MemTotal;
--explain prints every term with its value and checks that they add up to
MemTotal exactly.

Sizes are binary units fixed to M (MiB); "-" means unknown, never 0.

CPU table (-c), one row per CPU plus "all"; counts since the previous report
(the first report counts since boot):
  load       busy share of /proc/stat ticks (idle + iowait are idle)
  cs         context switches: only system-wide (/proc/stat ctxt, "all" row)
  ylds pmpts irq_pmpts excep pagef sysc
             not exported per CPU by Linux: "-"
  hw         numbered IRQ rows of /proc/interrupts
  tmr        local timer interrupts (LOC)
  tmr_cb     timer softirqs, TIMER + HRTIMER in /proc/softirqs
  rs gen     rescheduling (RES) and function-call (CAL) IPIs

--from FILE prints one memory report (-m, implied) from the kernel records
of a saved snapshot (zxmem memgraph, Fuchsia's memgraph or capture); -t
prints the snapshot's time. -c, -d and -n (other than 1) need the live
system and are usage errors with --from.
"""

EPILOG = """\
examples:
  zxmem kstats -m -n 1            one report in Fuchsia's classic layout
  zxmem kstats -m -t              a timestamped report every second (Ctrl-C stops)
  zxmem kstats -m --style=late    nine columns, with ipc and other
  zxmem kstats -m --explain -n 1  how the columns add up to MemTotal
  zxmem kstats -c -d 5 -n 3       CPU table every 5 seconds, three times
  zxmem kstats -m --json -n 1     every column in bytes, with its inputs
  zxmem kstats -m -t --from snap.json   kernel memory when snap.json was saved
"""


MAX_DELAY_S = 86400  # -d: one day


def _positive(kind: str):
    def parse(value: str) -> float:
        try:
            number = float(value)
        except ValueError:
            number = 0
        if not number > 0 or number != number:
            raise argparse.ArgumentTypeError(f"bad {kind} value {value!r}")
        # inf, 1e30 (and anything past a day) would overflow the sleep and
        # the report schedule; no one waits a day between two reports.
        if number > MAX_DELAY_S:
            raise argparse.ArgumentTypeError(
                f"bad {kind} value {value!r}: at most {MAX_DELAY_S} seconds (one day)")
        return number
    return parse


def _count(value: str) -> int:
    try:
        number = int(value, 10)
    except ValueError:
        number = 0
    if number <= 0:
        raise argparse.ArgumentTypeError(f"bad -n value {value!r}")
    return number


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "kstats",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("-m", dest="memory", action="store_true",
                   help="memory statistics (the default when -c is not given)")
    p.add_argument("-c", dest="cpu", action="store_true", help="per-CPU statistics")
    p.add_argument("-t", dest="timestamp", action="store_true",
                   help="an empty line and '--- YYYY-MM-DDTHH:MM:SS.mmmZ ---' (UTC) "
                   "before each report")
    p.add_argument("-d", dest="delay", type=_positive("-d"), metavar="SECS",
                   help="seconds between reports (default 1)")
    p.add_argument("-n", dest="count", type=_count, metavar="COUNT",
                   help="stop after COUNT reports (default: until Ctrl-C)")
    p.add_argument("--style", choices=("classic", "late"), default="classic",
                   help="classic: Fuchsia's classic seven columns (default); late: nine "
                   "columns with ipc and other")
    p.add_argument("--units", type=common.units_arg, default="M", metavar="X",
                   help="unit of the memory values (default M)")
    p.add_argument("--explain", action="store_true",
                   help="after each memory report, show how the columns and the rest "
                   "of /proc/meminfo add up to MemTotal (implies -m)")
    p.add_argument("--json", action="store_true",
                   help="one JSON object per report (one per line); every size in bytes")
    p.add_argument("--pressure", action="store_true",
                   help="after each memory report, memory pressure (/proc/pressure/memory) "
                   "and the oom_kill, pgmajfault, pswpin, pswpout counters of /proc/vmstat "
                   "(implies -m; live only)")
    common.add_proc_root(p)
    common.add_from(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    from zxmem.collection import sample_kernel
    from zxmem.sources import kernel
    from zxmem.views import kstats as view

    # No flag means -m: memory is what a Linux user asks kstats about.
    if args.explain or args.pressure or not args.cpu:
        args.memory = True
    if args.from_file is not None:
        if args.pressure:
            raise UsageError("kstats: --pressure reads the live /proc (not --from)")
        return _run_saved(args, env)
    root = common.proc_root(args, env)
    delay = 1.0 if args.delay is None else args.delay

    start = env.monotonic()
    prev = None
    reports = 0
    noted = False
    while True:
        stamp = env.wall_clock()
        try:
            sample = sample_kernel(root, cpu=args.cpu, memory=args.memory,
                                   pressure=args.pressure)
        except OSError as exc:
            raise ZxmemError(
                f"cannot read {exc.filename or root}: {exc.strerror or exc}"
            ) from None
        except kernel.ParseError as exc:
            raise ZxmemError(f"{root}: {exc}") from None

        cpu, mem = sample.cpu, sample.memory
        rows = None
        if cpu is not None:
            rows = view.cpu_rows(cpu[0], cpu[1], *(prev or (None, None)))
            prev = cpu
        notes = _memory_notes(mem[0], mem[1]) if mem else []
        _report(args, env, stamp, rows, mem[0] if mem else None, notes, not noted,
                sample.pressure)
        noted = noted or bool(notes)

        reports += 1
        if args.count is not None and reports >= args.count:
            return 0
        # A fixed cadence: the n-th report is due at start + n * delay, so a
        # slow read does not push every later report back.
        wait = start + reports * delay - env.monotonic()
        if wait > 0:
            env.sleep(wait)


def _memory_notes(stats, notes) -> list[str]:
    """The notes of a memory report: the source's, and kfree's absence."""
    notes = list(notes)
    if stats.free_heap_bytes is None and stats.total_heap_bytes is not None:
        notes.append("kheap includes the free slab slots (kfree unknown)")
    return notes


def _report(args: argparse.Namespace, env, stamp: float | None, rows, stats, notes,
            say_notes: bool, system: dict | None = None) -> None:
    """One report (CPU table and/or memory lines, or one JSON line), live or saved."""
    import json

    from zxmem.views import kstats as view

    if args.json:
        record: dict = {"timestamp": None if stamp is None else view.iso_timestamp(stamp)}
        if rows is not None:
            record["cpus"] = view.cpu_json(rows)
        if stats is not None:
            record["memory"] = view.memory_json(stats)
            record["notes"] = notes
        if system is not None:
            record["pressure"] = system
        env.stdout.write(json.dumps(record, sort_keys=False) + "\n")
    else:
        parts = []
        if args.timestamp and stamp is not None:
            parts.append("\n" + view.timestamp_line(stamp) + "\n")
        if rows is not None:
            parts.append(view.render_cpu(rows))
        if stats is not None:
            parts.append(view.render_memory(stats, args.style, args.units))
            if system is not None:
                parts.append(view.render_pressure(system))
            if args.explain:
                parts.append("\n" + view.render_explain(stats))
        env.stdout.write("".join(parts))
        if say_notes:
            for note in notes:
                env.stderr.write(f"zxmem: kstats: {escape_terminal(note)}\n")
    env.stdout.flush()


def _epoch(timestamp: str | None) -> float | None:
    """Seconds since the epoch of a snapshot's ``YYYY-MM-DDTHH:MM:SS.mmmZ``."""
    from datetime import datetime, timezone

    if not timestamp:
        return None
    try:
        moment = datetime.strptime(timestamp, "%Y-%m-%dT%H:%M:%S.%fZ")
    except ValueError:
        return None
    return moment.replace(tzinfo=timezone.utc).timestamp()


def _run_saved(args: argparse.Namespace, env) -> int:
    """``--from FILE``: one memory report from the snapshot's kernel stats."""
    given = []
    if args.cpu:
        given.append("-c")
    if args.delay is not None:
        given.append("-d")
    if args.count is not None and args.count != 1:
        given.append("-n")
    common.live_only(*given)
    # The kernel's counters only: a store's sample is read without its
    # memory objects (most of the time of reading an objects sample).
    snapshot = common.from_snapshot(args, env, objects=False)
    stats = snapshot.kernel
    if stats is None:
        raise common.lacks(args, "the snapshot has no kernel memory statistics (no "
                                 "kernel records)")
    if args.explain and not stats.meminfo:
        raise common.lacks(args, "--explain needs the /proc/meminfo values zxmem's "
                                 "memgraph records; the snapshot has none")
    stamp = _epoch(snapshot.provenance.timestamp)
    if args.timestamp and stamp is None:
        raise common.lacks(args, "-t: the snapshot has no timestamp")
    _report(args, env, stamp, None, stats, _memory_notes(stats, ()), True)
    return 0
