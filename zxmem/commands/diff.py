"""``zxmem diff A B``: what grew, shrank, appeared or vanished between two snapshots."""

from __future__ import annotations

import argparse
import json
import os
from typing import Any

from zxmem.commands.record import size_arg
from zxmem.errors import UsageError
from zxmem.views.diff import Change, compare, index

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
    result, a, b = _changes(args)
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


def _changes(args: argparse.Namespace) -> tuple[dict[str, list[Change]], Any, Any]:
    """(kind -> changes, snapshot A, snapshot B).  Two samples of one store
    are compared in the store (:func:`_in_store`); anything else is read
    whole (only what the kinds asked for need: no memory objects for
    ``--by job`` or ``--by process``)."""
    same = _one_store(args.a, args.b)
    if same is not None:
        done = _in_store(args, *same)
        if done is not None:
            return done
    from zxmem.sources.load import load_snapshot

    objects = args.by in (None, "object")
    a = load_snapshot(args.a, objects=objects)
    b = load_snapshot(args.b, objects=objects)
    kinds = _kinds(args, bool(a.vmos), bool(b.vmos))
    return {k: compare(index(a, k), index(b, k), k, args.min) for k in kinds}, a, b


def _kinds(args: argparse.Namespace, a_objects: bool, b_objects: bool) -> list[str]:
    """The kinds of change to show; a usage error for objects that are not there."""
    has_objects = a_objects and b_objects
    if args.by == "object" and not has_objects:
        which = args.a if not a_objects else args.b
        raise UsageError(f"{which}: holds no memory objects: compare memgraph -v files or "
                         "objects samples of a store (zxmem history shows the tier)")
    return [args.by] if args.by else ["job", "process"] + (["object"] if has_objects else [])


def _one_store(a: str, b: str) -> tuple[str, str | None, str | None] | None:
    """(store, selector of A, selector of B) when both are samples of the same
    store file, else None."""
    from zxmem.store import is_store_file, split_selector

    path_a, sel_a = split_selector(a)
    path_b, sel_b = split_selector(b)
    if not (is_store_file(path_a) and is_store_file(path_b)):
        return None
    try:
        if not os.path.samefile(path_a, path_b):
            return None
    except OSError:
        return None
    return path_a, sel_a, sel_b


def _in_store(args: argparse.Namespace, path: str, sel_a: str | None, sel_b: str | None
              ) -> tuple[dict[str, list[Change]], Any, Any] | None:
    """The changes between two samples of the store at ``path``: jobs and
    processes from their totals, objects from the rows that differ
    (:mod:`zxmem.store.compare`); None when the store cannot say who owns
    an object (the caller reads both samples whole)."""
    import time

    from zxmem.store import compare as in_store
    from zxmem.store.reader import read_sample, select
    from zxmem.store.schema import StoreError, open_store

    conn = open_store(path, create=False, readonly=True)
    try:
        conn.execute("BEGIN")  # one read transaction: a recorder may be writing
        now = time.time()
        n_a = select(conn, sel_a or "last", now, path)
        n_b = select(conn, sel_b or "last", now, path)
        a = read_sample(conn, n_a, path, objects=False)
        b = read_sample(conn, n_b, path, objects=False)
        kinds = _kinds(args, in_store.has_objects(conn, n_a), in_store.has_objects(conn, n_b))
        result = {k: compare(index(a, k), index(b, k), k, args.min)
                  for k in kinds if k != "object"}
        if "object" in kinds:
            pair = in_store.object_indexes(conn, n_a, n_b)
            if pair is None:
                return None
            result["object"] = compare(pair[0], pair[1], "object", args.min)
        return result, a, b
    except (StoreError, UsageError):
        raise
    except Exception as exc:  # sqlite3.Error, a corrupt row
        raise StoreError(f"{path}: cannot read the store: {exc}") from None
    finally:
        conn.close()


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
