"""``zxmem mem``: per-process VMO summaries (private, scaled, total), as ``mem``."""

from __future__ import annotations

import argparse

from zxmem.commands import common
from zxmem.textsafe import escape_terminal

HELP = "per-process memory as private, scaled and total VMO bytes, by VMO group"

DESCRIPTION = """\
Summarize each process's memory objects (VMOs) as Fuchsia's mem does.

Memory numbers are triplets P S T: private, scaled and total bytes (S and T
include P); one number is printed when all three are equal.  A process is
charged the VMOs it maps or holds and all their ancestors (the file behind a
copy-on-write clone); a VMO charged to n processes is private if n is 1,
else each gets 1/n of it in scaled.  VMOs are grouped by name: [libraries]
(.so files), [heap], [stacks], [memfd], [data] (copy-on-write pages of
library and program data), and Fuchsia's groups for a capture; other names
are kept as they are.  A 'kernel' row (koid 0 on Linux, 1 on Fuchsia) holds
heap, wired, mmu, ipc, other and the VMO bytes no process was charged.

Processes are sorted by private bytes; sizes use mem's units (K = KiB).
"""

EPILOG = """\
examples:
  zxmem mem                           every process, with its VMO groups
  zxmem mem --pid 1234                one process
  zxmem mem --csv                     time_s,koid,name,private,scaled,total
  zxmem mem --csv --pid 1234          time_s,koid,group,private,scaled,total
  zxmem mem --from capture.json       a Fuchsia memory capture
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser(
        "mem",
        help=HELP,
        description=DESCRIPTION,
        epilog=EPILOG,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    p.add_argument("--pid", type=common.koid_arg, metavar="N",
                   help="only this process, with its VMO groups")
    out = p.add_mutually_exclusive_group()
    out.add_argument("--csv", action="store_true",
                     help="CSV rows (mem --output); sizes in bytes")
    out.add_argument("--json", action="store_true", help="JSON; sizes in bytes")
    common.add_proc_root(p)
    common.add_from(p)
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    import json

    from zxmem.errors import ZxmemError
    from zxmem.summary import summarize
    from zxmem.views import mem as view

    # One process: smaps (page counts) for it alone; the others' maps still
    # give the share counts.
    detail = None if args.pid is None or args.from_file else [args.pid]
    snapshot, time_ns, notes = common.objects_snapshot(args, env, detail_pids=detail)
    # ffx's ComponentDigest/ProcessDigest list no VMOs: their own numbers.
    summary = snapshot.source_summary or summarize(snapshot)
    notes = list(notes)
    if args.pid is not None:
        ps = summary.process(args.pid)
        if ps is None:
            if snapshot.process(args.pid) is None:
                raise ZxmemError(f"--pid {args.pid}: no such process")
            raise ZxmemError(f"--pid {args.pid}: the process has no memory objects "
                             "(none readable)")
        unknown, size, unsized = ps.unknown_vmos, ps.unknown_size_bytes, ps.unknown_unsized
    else:
        unknown, size, unsized = (summary.unknown_vmos, summary.unknown_size_bytes,
                                  summary.unknown_unsized)
    if unknown:
        notes.append(common.unknown_note(snapshot, unknown, size, unsized))

    if args.json:
        doc = {
            "time_ns": time_ns,
            "kernel": None if snapshot.kernel is None else {
                "vmo_bytes": snapshot.kernel.vmo_bytes,
                "free_bytes": snapshot.kernel.free_bytes,
            },
            "processes": [p for p in view.summary_json(summary)
                          if args.pid is None or (p["koid"] == args.pid and not p["kernel"])],
            "source": snapshot.provenance.source,
            # VMOs whose committed bytes are unknown are in no sum above.
            "unknown_vmos": unknown,
            "notes": notes,
        }
        env.stdout.write(json.dumps(doc, indent=1, ensure_ascii=True) + "\n")
    elif args.csv:
        env.stdout.write(view.render_csv(summary, time_ns, args.pid))
    else:
        env.stdout.write(view.render(snapshot, summary, time_ns, args.pid))
    env.stdout.flush()
    if not args.json:
        for note in notes:
            env.stderr.write(f"zxmem: {escape_terminal(note)}\n")
    return 0
