"""``zxmem growth``: what grew in a history store, how fast, since when, and
whether it looks like a leak (:mod:`zxmem.growth`)."""

from __future__ import annotations

import argparse
import dataclasses
import json
import re

from zxmem.commands.record import add_store, duration_arg

HELP = "rank what grew in a history store: leak suspects, their rates and objects"

DESCRIPTION = """\
Rank the processes (or jobs, or memory objects) of a history store (zxmem
record) by how fast they grew: the rate (Theil-Sen slope, per hour and per
second), how well a line fits (r2), how steadily the lowest values rose, when
the growth started, the high-water mark and when.  A process's leak signal is
its USS (private memory) plus the hidden objects (a memfd, a tmpfs file held
by a descriptor) only it holds; PSS and the cgroup charge are shown beside
it.  A sawtooth (a garbage collector), a plateau (a cache that filled) or a
step (a file loaded once) is not called a leak.  For a suspect process, the
memory objects that grew are listed under it (from the objects samples).
"""

EPILOG = """\
examples:
  zxmem growth --from /var/lib/zxmem/history.db --since 2h
  zxmem growth --by job --min-rate 10M/h
  zxmem growth --json | jq '.suspects[0]'
"""

_RATE = re.compile(r"(\d+(?:\.\d+)?)\s*([kKmMgGtT]?)(?:i?[bB])?(?:/([smhd]))?")
_SHIFT = {"": 0, "k": 10, "m": 20, "g": 30, "t": 40}
_PER_HOUR = {"s": 3600.0, "m": 60.0, "h": 1.0, "d": 1 / 24}


def rate_arg(value: str) -> float:
    """``10M/h`` (the default unit of time), ``64K/s``, ``1G/d`` -> bytes per hour."""
    m = _RATE.fullmatch(value.strip())
    if not m:
        raise argparse.ArgumentTypeError(f"not a rate: {value!r} (use e.g. 10M/h or 64K/s)")
    size = float(m.group(1)) * (1 << _SHIFT[m.group(2).lower()])
    return size * _PER_HOUR[m.group(3) or "h"]


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("growth", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", dest="source", metavar="STORE",
                   help="the history store (default: --store's default)")
    add_store(p)
    p.add_argument("--since", type=duration_arg, metavar="T",
                   help="only the last T of the store (before its newest sample): 30m, 2h, 7d "
                        "(default: every sample)")
    p.add_argument("--by", choices=("process", "job", "object"), default="process",
                   help="what to rank (default: process)")
    p.add_argument("--min-rate", type=rate_arg, default=0.0, metavar="SIZE/h",
                   help="leave out what grew slower: 10M/h, 64K/s (default: list all that grew)")
    p.add_argument("--limit", type=int, default=20, metavar="N",
                   help="rows of the table (default 20; 0: all); --json lists all")
    p.add_argument("--json", action="store_true", help="JSON; every size in bytes")
    p.set_defaults(run=run)


# Processes whose objects are read (the objects tier is the costly part).
OBJECTS_FOR = 20


def run(args: argparse.Namespace, env) -> int:
    from zxmem.errors import UsageError
    from zxmem.growth import analyse
    from zxmem.growth_source import describe_period, load_objects, load_series
    from zxmem.store import default_path, is_store_file
    from zxmem.store.schema import StoreError
    from zxmem.views.growth import render

    if args.limit < 0:
        raise UsageError("--limit must be 0 (all) or more")
    path = args.source or args.store or default_path()
    if args.source and args.store:
        raise UsageError("give the store once: --from or --store")
    import os

    if os.path.exists(path) and not is_store_file(path):
        raise StoreError(f"{path}: not a zxmem history store (zxmem record writes one)")
    whole = describe_period(path, None)
    if whole is None:
        raise StoreError(f"{path}: the store holds no samples yet")
    since_ns = None if args.since is None else whole[2] - int(args.since * 1e9)
    period = describe_period(path, since_ns)
    assert period is not None  # the newest sample is always in it
    samples, first_ns, last_ns = period
    series = load_series(path, since_ns=since_ns, by=args.by)
    suspects = analyse(series, now_ns=last_ns, min_rate_bytes_per_hour=args.min_rate)
    if args.by == "process" and suspects:
        top = {s.key for s in suspects[:OBJECTS_FOR]}
        chosen = [s for s in series if s.key in top]
        objects = load_objects(path, chosen, since_ns=since_ns)
        redo = analyse([dataclasses.replace(s, objects=tuple(objects.get(s.key, ())))
                        for s in chosen], now_ns=last_ns,
                       min_rate_bytes_per_hour=args.min_rate)
        # The same verdicts (objects do not change them), now with objects;
        # analyse over all series again keeps the leak/short/gone tests on
        # the whole period.
        by_key = {s.key: s for s in redo}
        suspects = [dataclasses.replace(s, objects=by_key[s.key].objects)
                    if s.key in by_key else s for s in suspects]
    if args.json:
        env.stdout.write(json.dumps(document(path, args, samples, first_ns, last_ns, suspects),
                                    indent=1, ensure_ascii=True) + "\n")
        return 0
    env.stdout.write(render(suspects, first_ns=first_ns, last_ns=last_ns, samples=samples,
                            by=args.by, limit=args.limit or None, width=env.width() or 160))
    return 0


def document(path: str, args: argparse.Namespace, samples: int, first_ns: int, last_ns: int,
             suspects: list) -> dict:
    from zxmem.textsafe import clean_json

    return clean_json({
        "store": path, "by": args.by, "samples": samples,
        "first_ns": first_ns, "last_ns": last_ns,
        "min_rate_bytes_per_hour": args.min_rate,
        "suspects": [s.to_json() for s in suspects],
    })
