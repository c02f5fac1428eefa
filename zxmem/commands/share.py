"""``zxmem share PID``: who shares this process's pages, and what its exit frees."""

from __future__ import annotations

import argparse

from zxmem.commands import common

HELP = "which processes share a process's pages, and what its exit would free (root)"

DESCRIPTION = """\
Page-level sharing of one process with every other process (needs root).

Reads the page tables of every process (/proc/PID/pagemap) and the kernel's
per-page map counts (/proc/kpagecount, /proc/kpageflags), then reports for
PID:

  resident       distinct physical pages it maps (a page mapped twice counts
                 once; the shared zero page is left out)
  private        pages no other process maps
  shared         the rest; "unreadable" are pages the kernel says are mapped
                 more often than the processes read here map them (processes
                 that could not be read, or that started during the scan)
  PSS            every page divided by the number of processes mapping it
  swap           swap slots in its page tables, and those no one else has
  freed on exit  private pages + private swap slots

and then, for every other process that maps some of the same pages, how
many bytes (and swap slots) the two share.  With -v, per mapping of PID.
"""

EPILOG = """\
examples:
  zxmem share 1234                 sharers of 1234, most shared first
  zxmem share -v 1234              the same, split by 1234's mappings
  zxmem share --json 1234 | jq '.sharers[0]'
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "share",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("pid", type=common.koid_arg, metavar="PID", help="process id")
    p.add_argument("-v", "--verbose", action="store_true",
                   help="split each sharer's bytes by PID's mappings")
    p.add_argument("--units", type=common.units_arg, metavar="X",
                   help="fix all sizes to unit X, one of B k M G T P E")
    p.add_argument("--json", action="store_true", help="JSON; every number in bytes")
    common.add_proc_root(p)
    p.set_defaults(run=run)


def _name(proc: str, pid: int) -> str:
    """The command line, else ``[comm]``, else ``?`` (raw; escape to print)."""
    from zxmem.textsafe import decode_name

    try:
        with open(f"{proc}/{pid}/cmdline", "rb") as f:
            raw = f.read(4096)
        if raw:
            return " ".join(decode_name(a) for a in raw.rstrip(b"\0").split(b"\0"))
        with open(f"{proc}/{pid}/comm", "rb") as f:
            comm = f.read().rstrip(b"\n")
        return f"[{decode_name(comm)}]"
    except OSError:
        return "?"


def run(args: argparse.Namespace, env) -> int:
    import os

    from zxmem.errors import ZxmemError
    from zxmem.sources import pagemap
    from zxmem.sources.linux import list_pids

    root = common.proc_root(args, env)
    proc = root.rstrip("/") or "/"
    pid = args.pid
    if not os.path.isdir(f"{proc}/{pid}"):
        raise ZxmemError(f"PID {pid}: no such process")
    from zxmem.sources.linux import thread_group

    tgid = thread_group(proc, pid)
    if tgid is not None and tgid != pid:
        # /proc/TID resolves, but the scan reads processes by PID.
        raise ZxmemError(f"{pid} is a thread of process {tgid}")
    try:
        pids = list_pids(proc)
    except OSError as exc:
        raise ZxmemError(f"cannot read {root}: {exc.strerror}") from None
    release = None
    try:
        with open(f"{proc}/sys/kernel/osrelease") as f:
            release = f.read().strip()
    except OSError:
        pass
    scan = pagemap.scan(root, pids, release=release, tag_pids=[pid])
    if scan.unavailable:
        return _approximate(args, env, proc, pid, scan.unavailable)
    if pid not in scan.results:
        why = dict(scan.denied).get(pid)
        if why:
            raise ZxmemError(f"PID {pid}: page tables not readable ({why})")
        from zxmem.sources.linux import live_task_dir

        if live_task_dir(proc, pid) is not None:
            # The leader is a zombie without mm, its pagemap is empty; the
            # scan reads processes by PID (sources/pagemap.py).
            raise ZxmemError(f"PID {pid}: its main thread has exited, so its page tables "
                             "cannot be read by PID (zxmem ps and vmaps read a live thread)")
        raise ZxmemError(f"PID {pid}: no such process (or it has no address space)")
    report = _report(scan, pid, proc)
    if args.json:
        import json

        env.stdout.write(json.dumps(report, indent=1) + "\n")
    else:
        env.stdout.write(_render(report, args.units, args.verbose))
    env.stdout.flush()
    if scan.denied:
        n = len(scan.denied)
        env.stderr.write(
            f"zxmem: {n} {'process' if n == 1 else 'processes'} not readable: "
            "pages they map count as shared with unreadable\n"
        )
    return 0


def _report(scan, pid: int, proc: str) -> dict:
    """The share report as plain data (bytes)."""
    from zxmem.model import PAGE_SIZE
    from zxmem.textsafe import decode_name

    census = scan.census
    mine = scan.results[pid]
    vmas = scan.vmas.get(pid, [])
    overlap = census.overlap(pid)
    swap = census.shared_swap(pid)
    sharers = []
    for other in sorted(set(overlap) | set(swap)):
        per = overlap.get(other)
        total = int(per.sum()) * PAGE_SIZE if per is not None else 0
        entry = {
            "pid": other,
            "name": _name(proc, other),
            "shared_bytes": total,
            "swap_shared_bytes": swap.get(other, 0) * PAGE_SIZE,
        }
        if per is not None:
            entry["mappings"] = [
                {
                    "start": vmas[i].start,
                    "end": vmas[i].end,
                    "path": decode_name(vmas[i].path),
                    "shared_bytes": int(per[i]) * PAGE_SIZE,
                }
                for i in per.nonzero()[0].tolist()
                if i < len(vmas)
            ]
        sharers.append(entry)
    sharers.sort(key=lambda e: (-e["shared_bytes"], -e["swap_shared_bytes"], e["pid"]))
    return {
        "pid": pid,
        "name": _name(proc, pid),
        "resident_bytes": mine.resident_bytes,
        "private_bytes": mine.private_bytes,
        "shared_bytes": mine.shared_bytes,
        "shared_unreadable_bytes": mine.shared_unseen_bytes,
        "pss_bytes": mine.pss_bytes,
        "swap_bytes": mine.swap_bytes,
        "swap_private_bytes": mine.swap_private_bytes,
        "swap_pss_bytes": mine.swap_pss_bytes,
        "ksm_bytes": mine.ksm_bytes,
        "freed_on_exit_bytes": mine.freed_on_exit_bytes,
        "unreadable_processes": [p for p, _ in scan.denied],
        "sharers": sharers,
        "notes": list(scan.notes),
    }


def _render(r: dict, units: str | None, verbose: bool) -> str:
    from zxmem.textsafe import escape_terminal
    from zxmem.units import format_size

    def fs(n: int) -> str:
        return format_size(n, units)

    lines = [f"process {r['pid']}: {escape_terminal(r['name'])}"]
    rows = [
        ("resident", r["resident_bytes"], "distinct pages mapped"),
        ("private", r["private_bytes"], "mapped by no other process"),
        ("shared", r["shared_bytes"],
         f"of which {fs(r['shared_unreadable_bytes'])} also mapped by processes not "
         "read (unreadable, or started during the scan)"),
        ("PSS", r["pss_bytes"], "each page divided by the processes mapping it"),
        ("swap", r["swap_bytes"], f"of which {fs(r['swap_private_bytes'])} private"),
        ("freed on exit", r["freed_on_exit_bytes"], "private pages + private swap"),
    ]
    for label, n, what in rows:
        lines.append(f"  {label:<14}{fs(n):>7}  {what}")
    n = len(r["sharers"])
    lines.append("")
    lines.append(f"shared with {n} {'process' if n == 1 else 'processes'}:")
    if n:
        lines.append(f"{'PID':>9} {'SHARED':>7} {'SWAP':>7} NAME")
    for s in r["sharers"]:
        lines.append(
            f"{s['pid']:>9} {fs(s['shared_bytes']):>7} {fs(s['swap_shared_bytes']):>7} "
            f"{escape_terminal(s['name'])}"
        )
        if verbose:
            for m in s.get("mappings", ()):
                lines.append(
                    f"{'':>9} {fs(m['shared_bytes']):>7} {'':>7}   "
                    f"{m['start']:x}-{m['end']:x} {escape_terminal(m['path'])}"
                )
    return "\n".join(lines) + "\n"


def _approximate(args, env, proc: str, pid: int, why: str) -> int:
    """Without page-level data: the kernel's smaps_rollup numbers, said so."""
    from zxmem.errors import ZxmemError
    from zxmem.sources import procfs

    env.stderr.write(
        f"zxmem: share: page-level sharing unavailable: {why}; showing smaps_rollup "
        "numbers (approximate: PRIVATE counts pages mapped once, so a page mapped "
        "twice by this process counts as shared; sharers cannot be listed)\n"
    )
    from zxmem.sources.linux import live_task_dir

    # A process whose main thread has exited: the leader has no mm (ESRCH),
    # a live thread's rollup is the process's.
    base = live_task_dir(proc, pid) or f"{proc}/{pid}/"
    try:
        with open(f"{base}smaps_rollup", "rb") as f:
            fields = procfs.parse_smaps_rollup(f.read())
    except OSError as exc:
        raise ZxmemError(f"PID {pid}: cannot read smaps_rollup ({exc.strerror})") from None
    g = fields.get
    private = g(b"Private_Clean", 0) + g(b"Private_Dirty", 0) + g(b"Private_Hugetlb", 0)
    shared = g(b"Shared_Clean", 0) + g(b"Shared_Dirty", 0) + g(b"Shared_Hugetlb", 0)
    report = {
        "pid": pid,
        "name": _name(proc, pid),
        "exact": False,
        "unavailable": why,
        "resident_bytes": g(b"Rss"),
        "private_bytes": private,
        "shared_bytes": shared,
        "pss_bytes": g(b"Pss"),
        "swap_pss_bytes": g(b"SwapPss"),
        "freed_on_exit_bytes": None,
        "sharers": None,
    }
    if args.json:
        import json

        env.stdout.write(json.dumps(report, indent=1) + "\n")
    else:
        from zxmem.textsafe import escape_terminal
        from zxmem.units import format_size

        lines = [f"process {pid}: {escape_terminal(report['name'])} (smaps_rollup, approximate)"]
        for label, key in (("resident", "resident_bytes"), ("private", "private_bytes"),
                           ("shared", "shared_bytes"), ("PSS", "pss_bytes")):
            lines.append(f"  {label:<14}{format_size(report[key], args.units):>7}")
        env.stdout.write("\n".join(lines) + "\n")
    env.stdout.flush()
    return 0
