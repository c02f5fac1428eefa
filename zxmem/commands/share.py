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

The first line is the answer: what PID's exit frees and how much it shares
with how many processes; then its command line and pages, then its sharers,
most shared first.

On a terminal, lines fit its width: command lines, names and paths are
shortened in the middle (with '...') and explanations wrapped; sizes are
coloured by magnitude (--color; never when piped or with NO_COLOR set).
--wide prints every line whole on a terminal too; piped (not a terminal)
every line is whole.
"""

EPILOG = """\
examples:
  zxmem share 1234                 sharers of 1234, most shared first
  zxmem share -v 1234              the same, split by 1234's mappings
  zxmem share --json 1234 | jq '.sharers[0]'
  zxmem share --wide 1234          whole command lines on the terminal too
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
    common.add_wide(p, "lines (whole command lines, names and paths)")
    common.add_color(p)
    p.add_argument("--json", action="store_true", help="JSON; every number in bytes")
    common.add_proc_root(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    import json

    from zxmem.collection import share_pages
    from zxmem.views import share as view

    pid = args.pid
    pages = share_pages(pid, common.proc_root(args, env))
    scan = pages.scan
    if scan.unavailable:
        env.stderr.write(
            f"zxmem: share: page-level sharing unavailable: {scan.unavailable}; showing "
            "smaps_rollup numbers (approximate: PRIVATE counts pages mapped once, so a page "
            "mapped twice by this process counts as shared; sharers cannot be listed)\n"
        )
        approx = view.approximate_report(pid, pages.names.get(pid, "?"), scan.unavailable,
                                         pages.rollup or {})
        if args.json:
            env.stdout.write(json.dumps(approx, indent=1) + "\n")
        else:
            env.stdout.write(view.render_approximate(approx, args.units,
                                                     common.fit_width(args, env),
                                                     common.use_color(args, env)))
        env.stdout.flush()
        return 0
    report = view.report(pid, scan, pages.names)
    if args.json:
        env.stdout.write(json.dumps(report, indent=1) + "\n")
    else:
        env.stdout.write(view.render(report, args.units, args.verbose,
                                     common.fit_width(args, env), common.use_color(args, env)))
    env.stdout.flush()
    if scan.denied:
        n = len(scan.denied)
        env.stderr.write(
            f"zxmem: {n} {'process' if n == 1 else 'processes'} not readable: "
            "pages they map count as shared with unreadable\n"
        )
    return 0
