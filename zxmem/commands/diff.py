"""``zxmem diff A B``: what grew, shrank, appeared or vanished between two snapshots."""

from __future__ import annotations

import argparse
import json
from typing import Any

from zxmem.commands.record import size_arg
from zxmem.errors import UsageError
from zxmem.views.diff import Change, changes

HELP = "compare two snapshots (files or STORE@WHEN): what grew, shrank, appeared, vanished"

DESCRIPTION = """\
Compare two snapshots: memgraph or capture files, or samples of a history
store (STORE@WHEN, e.g. h.db@-1h and h.db@last).  Largest change first.

  jobs       matched by cgroup id and path; the size is the PSS of every
             process below the job (as ps shows it); beside it, the change of
             what the cgroup is charged (CHARGED: memory.current or v1's
             usage_in_bytes), when both snapshots know it
  processes  matched by identity: boot, PID and start time, so a PID reused
             by another program is one process gone and one new; size PSS
  objects    memory objects (both snapshots need them: memgraph -v files or
             objects samples): file-backed ones by their stable koid (device
             and inode), anonymous ones by the process that maps them and
             their name (the sum of that process's objects of that name);
             size: resident bytes (ALLOC)

A process or object whose size is unknown in either snapshot is left out.
"""

EPILOG = """\
examples:
  zxmem diff before.json after.json
  zxmem diff ~/.local/state/zxmem/history.db@-1h ~/.local/state/zxmem/history.db@last
  zxmem diff h.db@first h.db --by process --min 1M
  zxmem diff a.json b.json --json | jq '.processes[0]'
"""

_BY = ("job", "process", "object")


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("diff", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("a", metavar="A", help="the earlier snapshot: FILE or STORE[@WHEN]")
    p.add_argument("b", metavar="B", help="the later snapshot: FILE or STORE[@WHEN]")
    p.add_argument("--by", choices=_BY,
                   help="one kind of change only (default: jobs, processes, and objects "
                   "when both snapshots hold them)")
    p.add_argument("--min", type=size_arg, default=0, metavar="SIZE",
                   help="leave out changes smaller than SIZE (e.g. 1M)")
    p.add_argument("--json", action="store_true", help="JSON; every size in bytes")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    from zxmem.sources.load import load_snapshot

    a = load_snapshot(args.a)
    b = load_snapshot(args.b)
    has_objects = bool(a.vmos) and bool(b.vmos)
    if args.by == "object" and not has_objects:
        which = args.a if not a.vmos else args.b
        raise UsageError(f"{which}: holds no memory objects: compare memgraph -v files or "
                         "objects samples of a store (zxmem history shows the tier)")
    kinds = [args.by] if args.by else ["job", "process"] + (["object"] if has_objects else [])
    result = {k: changes(a, b, k, args.min) for k in kinds}
    if args.json:
        doc: dict[str, Any] = {"a": _source(args.a, a), "b": _source(args.b, b)}
        for k, rows in result.items():
            recs: list[dict] = []
            for c in rows:
                rec = {"key": c.key, "name": c.name, "status": c.status,
                       "before_bytes": c.before_bytes, "after_bytes": c.after_bytes,
                       "change_bytes": c.change_bytes}
                if k == "job":
                    rec.update(before_charged_bytes=c.before_charged_bytes,
                               after_charged_bytes=c.after_charged_bytes,
                               charged_change_bytes=c.charged_change_bytes)
                recs.append(rec)
            doc[_PLURAL[k]] = recs
        env.stdout.write(json.dumps(doc, indent=1, ensure_ascii=True) + "\n")
        return 0
    width = env.width() or 80
    env.stdout.write(_text(result, width))
    return 0


def _source(arg: str, snapshot) -> dict:
    p = snapshot.provenance
    return {"input": arg, "source": p.source, "timestamp": p.timestamp, "host": p.host}


_PLURAL = {"job": "jobs", "process": "processes", "object": "objects"}
_TITLES = {"job": "JOBS (PSS)", "process": "PROCESSES (PSS)", "object": "OBJECTS (ALLOC)"}


def _text(result: dict[str, list[Change]], width: int) -> str:
    from zxmem.textsafe import escape_terminal, truncate_to_width
    from zxmem.units import format_size

    width = max(width, 60)
    lines: list[str] = []
    for kind, rows in result.items():
        if lines:
            lines.append("")
        lines.append(f"{_TITLES[kind]}: {len(rows)} changed")
        if not rows:
            continue
        keys = min(22, max(len(escape_terminal(c.key)) for c in rows))
        # Jobs: the change of the cgroup's charge beside that of PSS.
        charged = kind == "job" and any(c.charged_change_bytes is not None for c in rows)
        extra = f" {'CHARGED':>8}" if charged else ""
        lines.append(f"{'CHANGE':>8} {'BEFORE':>8} {'AFTER':>8}{extra} {'':6} "
                     f"{'KEY':<{keys}} NAME")
        for c in rows:
            sign = "+" if c.change_bytes > 0 else ""
            head = (f"{sign + format_size(c.change_bytes):>8} {format_size(c.before_bytes):>8} "
                    f"{format_size(c.after_bytes):>8} ")
            if charged:
                cc = c.charged_change_bytes
                text = "-" if cc is None else ("+" if cc > 0 else "") + format_size(cc)
                head += f"{text:>8} "
            head += f"{c.status:<6} "
            key = f"{escape_terminal(c.key):<{keys}}"
            room = width - len(head) - len(key) - 1
            lines.append(head + key + " " + truncate_to_width(escape_terminal(c.name), room))
    return "\n".join(lines) + "\n"
