"""``zxmem history``: the samples of a history store."""

from __future__ import annotations

import argparse
import json

from zxmem.commands.record import add_store, store_path

HELP = "list the samples of a history store (zxmem record)"

DESCRIPTION = """\
List the samples a history store holds: number, time (UTC), processes, the
total PSS of the processes whose memory was read, and the tier ("totals":
kernel, jobs and process totals; "objects": also memory objects).  Pick one
for any view with --from STORE@N (or @first, @last, @-2h, @2026-12-03T10:00).
"""


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("history", help=HELP, description=DESCRIPTION,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    add_store(p)
    p.add_argument("--json", action="store_true", help="JSON records; every size in bytes")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    from zxmem.store.reader import format_time, samples
    from zxmem.store.schema import open_store
    from zxmem.units import format_size

    path = store_path(args)
    conn = open_store(path, create=False, readonly=True)
    try:
        rows = samples(conn)
    finally:
        conn.close()
    out = env.stdout
    if args.json:
        out.write(json.dumps({"store": path, "samples": [
            {"n": r.n, "time": format_time(r.time_ns), "time_ns": r.time_ns,
             "processes": r.nproc, "pss_bytes": r.pss_bytes, "tier": r.tier_name}
            for r in rows]}, indent=1) + "\n")
        return 0
    out.write(f"{'SAMPLE':>8} {'TIME (UTC)':<20} {'PROCS':>6} {'PSS':>8} TIER\n")
    for r in rows:
        pss = "-" if r.pss_bytes is None else format_size(r.pss_bytes)
        procs = "-" if r.nproc is None else str(r.nproc)
        out.write(f"{r.n:>8} {format_time(r.time_ns):<20} {procs:>6} {pss:>8} "
                  f"{r.tier_name}\n")
    if not rows:
        env.stderr.write(f"zxmem: {path}: no samples yet\n")
    return 0
