"""``zxmem report``: a history store as one self-contained HTML page."""

from __future__ import annotations

import argparse
import sqlite3
from typing import Any

from zxmem import outfile
from zxmem.commands.record import duration_arg, positive_int
from zxmem.errors import UsageError

HELP = "draw a history store (zxmem record) as one self-contained HTML report page"

DESCRIPTION = """\
Draw what a history store recorded as one HTML page that needs no network
(it opens from file:// and fetches nothing):

  memory over time   each sample's PSS stacked by job (cgroup) and by the
                     largest processes (the rest folded into one series):
                     at every sample the stack adds up to the sample's total
                     PSS; hover for the values
  system             the kernel's total memory split into the kernel, page
                     cache and objects no PSS counts, processes (PSS), and free
  events             OOM kills and memory pressure marked on the time axis,
                     when the store recorded them (a note says when not)
  growth             what grew, how fast and how steadily (zxmem growth)
  moments            a few samples (objects samples when there are any): pick
                     one to see its treemap, two to see what changed between
                     them (as zxmem diff shows it)

Sizes are binary (KiB, MiB, GiB).  A long store is drawn with at most
--points points, each the sample with the largest total of its stretch of
time (the page says so).
"""

EPILOG = """\
examples:
  zxmem report -o report.html                   the default store
  zxmem report --from h.db --since 2h -o r.html the last two hours of h.db
  zxmem report --from h.db --moments 12 > r.html
"""

MAX_MOMENTS = 24
TREE_NODES = 5000  # boxes kept per moment's treemap (the smallest objects are folded)
DIFF_ROWS = 50  # changes per kind kept for each pair of moments
GROWTH_ROWS = 25  # growth suspects per kind (process, job)


def add_parser(sub: argparse._SubParsersAction) -> None:
    p = sub.add_parser("report", help=HELP, description=DESCRIPTION, epilog=EPILOG,
                       formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--from", "--store", dest="store", metavar="STORE",
                   help="the history store (default: /var/lib/zxmem/history.db for root, "
                   "else $XDG_STATE_HOME/zxmem/history.db)")
    p.add_argument("-o", "--output", metavar="FILE",
                   help="write the page to FILE (replaced only once the page is complete; "
                   "'-': standard output)")
    p.add_argument("--since", type=duration_arg, metavar="T",
                   help="only the samples of the last T (e.g. 2h, 1d); default: all")
    p.add_argument("--moments", type=positive_int, default=6, metavar="N",
                   help=f"samples to embed for the treemap and diff pickers (default 6, "
                   f"at most {MAX_MOMENTS})")
    p.add_argument("--points", type=positive_int, default=2000, metavar="N",
                   help="most points drawn per series (default 2000)")
    p.add_argument("--top", type=positive_int, default=12, metavar="N",
                   help="processes and jobs drawn as series of their own (default 12)")
    p.set_defaults(run=run)


def run(args: argparse.Namespace, env) -> int:
    from zxmem.store import default_path, is_store_file
    from zxmem.store.schema import StoreError, open_store

    if outfile.to_stdout(args.output) and env.is_terminal():
        raise UsageError("report: not writing HTML to a terminal: use -o FILE or redirect")
    if args.moments > MAX_MOMENTS:
        raise UsageError(f"report: --moments {args.moments}: at most {MAX_MOMENTS}")
    path = args.store or default_path()
    if not is_store_file(path):
        import os

        if not os.path.exists(path):
            raise StoreError(f"{path}: no such history store")
        raise StoreError(f"{path}: not a zxmem history store")
    now_ns = int(env.wall_clock() * 1e9)
    since_ns = None if args.since is None else now_ns - int(args.since * 1e9)
    conn = open_store(path, create=False, readonly=True)
    try:
        try:
            page = build_page(conn, path, since_ns=since_ns, moments=args.moments,
                              points=args.points, top=args.top)
        except sqlite3.Error as exc:
            raise StoreError(f"{path}: cannot read the store: {exc}") from None
    finally:
        conn.close()
    outfile.write_result(args.output, page, env.stdout)
    return 0


def read_rows(conn: sqlite3.Connection, since_ns: int | None = None):
    """The store's rows :func:`zxmem.views.report_data.build` needs, and the
    samples' tiers (n -> tier)."""
    from zxmem.store.writer import decode_text, u64
    from zxmem.views.report_data import KERNEL_KEYS, StoreRows

    where = "" if since_ns is None else " WHERE time_ns >= ?"
    params: tuple = () if since_ns is None else (since_ns,)
    srows = conn.execute(f"SELECT n, time_ns, pss_bytes, tier, capture_ns FROM samples{where} "
                         "ORDER BY n", params).fetchall()
    samples = [(n, t, p) for n, t, p, _tier, _c in srows]
    tiers = {n: tier for n, _t, _p, tier, _c in srows}
    capture = {n: c for n, _t, _p, _tier, c in srows if isinstance(c, int)}
    if not samples:
        return StoreRows(samples, [], [], {}, {}, {}), tiers
    n0, n1 = samples[0][0], samples[-1][0]
    live = "(last IS NULL OR last >= ?) AND first <= ?"
    mem = conn.execute(f"SELECT ent, first, last, pss FROM proc_mem WHERE {live}",
                       (n0, n1)).fetchall()
    info_raw = conn.execute(f"SELECT ent, first, last, name, job FROM proc_info WHERE {live}",
                            (n0, n1)).fetchall()
    names: dict[int, str] = {}
    want = sorted({r[3] for r in info_raw})
    for start in range(0, len(want), 500):
        chunk = want[start:start + 500]
        q = ",".join("?" * len(chunk))
        for i, s in conn.execute(f"SELECT id, s FROM strings WHERE id IN ({q})", chunk):
            names[i] = decode_text(s)
    info = [(ent, first, last, names[name], u64(job) or 0)
            for ent, first, last, name, job in info_raw]
    pids = dict(conn.execute("SELECT id, pid FROM procs"))
    jobs: dict[int, str] = {}
    newest: dict[int, int] = {}
    for koid, path, name, first in conn.execute(
            "SELECT j.koid, p.s, m.s, i.first FROM job_info i JOIN job_ids j ON j.id = i.ent "
            "JOIN strings p ON p.id = j.path JOIN strings m ON m.id = i.name"):
        k = u64(koid) or 0
        if first >= newest.get(k, -1):
            newest[k] = first
            label = decode_text(path) or decode_text(name)
            jobs[k] = label
    kernel: dict[str, list[tuple[int, int | None, int | None]]] = {}
    q = ",".join("?" * len(KERNEL_KEYS))
    key_ids = {i: decode_text(s) for i, s in conn.execute(
        f"SELECT id, s FROM strings WHERE s IN ({q})",
        [k.encode() for k in KERNEL_KEYS])}
    if key_ids:
        q = ",".join(str(int(i)) for i in key_ids)
        for ent, first, last, value in conn.execute(
                f"SELECT ent, first, last, value FROM kernel_values WHERE ent IN ({q}) "
                f"AND {live}", (n0, n1)):
            kernel.setdefault(key_ids[ent], []).append((first, last, value))
    return StoreRows(samples, mem, info, pids, jobs, kernel, capture), tiers


def pick_moments(ns: list[int], tiers: dict[int, int], count: int) -> list[int]:
    """Up to ``count`` samples spread evenly over the store, first and last
    included: objects samples when there are any (their treemaps show memory
    objects), else any."""
    from zxmem.store.writer import OBJECTS

    pool = [n for n in ns if tiers.get(n) == OBJECTS] or list(ns)
    if len(pool) <= count:
        return pool
    if count == 1:
        return [pool[-1]]
    picked = {pool[round(i * (len(pool) - 1) / (count - 1))] for i in range(count)}
    return sorted(picked)


def _diff_rows(indexes: dict[str, list[dict | None]], a: int, b: int) -> dict[str, Any]:
    """The diff of moments ``a`` and ``b`` (indexes: kind -> one index per moment)."""
    from zxmem.views.diff import compare

    out: dict[str, Any] = {}
    for kind, per_moment in indexes.items():
        before, after = per_moment[a], per_moment[b]
        if before is None or after is None:
            continue  # objects: one of the two holds none
        rows = compare(before, after, kind)
        out[kind] = {
            "count": len(rows),
            "rows": [[c.key, c.name, c.status, c.before_bytes, c.after_bytes, c.change_bytes]
                     for c in rows[:DIFF_ROWS]],
        }
    return out


def _growth(path: str, since_ns: int | None) -> tuple[list[dict] | None, str]:
    """The growth table (what ``zxmem growth`` ranks: processes, then jobs,
    each leaks first then fastest first, at most GROWTH_ROWS of each), or
    None and why not.  The period ends at the store's newest sample (a store
    whose recorder stopped is judged on what it holds)."""
    try:
        from zxmem.growth import analyse
        from zxmem.growth_source import load_series  # type: ignore[import-not-found,unused-ignore]
    except ImportError:
        return None, "growth analysis is not available in this zxmem"
    import inspect

    procs = load_series(path, since_ns=since_ns, by="process")
    suspects = analyse(procs)[:GROWTH_ROWS]
    # The leaking processes' objects that grew (as zxmem growth shows them).
    leaks = [s.key for s in suspects if s.leak]
    if leaks and "objects_of" in inspect.signature(load_series).parameters:
        procs = load_series(path, since_ns=since_ns, by="process", objects_of=leaks)
        suspects = analyse(procs)[:GROWTH_ROWS]
    jobs = analyse(load_series(path, since_ns=since_ns, by="job"))
    return [s.to_json() for s in suspects] + [s.to_json() for s in jobs[:GROWTH_ROWS]], ""


def build_page(conn: sqlite3.Connection, path: str, *, since_ns: int | None = None,
               moments: int = 6, points: int = 2000, top: int = 12,
               growth_rows: list[dict] | None = None) -> str:
    """The report page for the store open on ``conn`` (at ``path``)."""
    from zxmem.store.reader import format_time, read_sample
    from zxmem.store.schema import StoreError
    from zxmem.store.writer import OBJECTS, TIER_NAMES
    from zxmem.treemap import tree_from_snapshot
    from zxmem.views.diff import index
    from zxmem.views.report_data import SMALLER_OBJECTS, build, prune_tree
    from zxmem.views.report_html import render_html
    from zxmem.views.treemap_html import tree_payload

    rows, tiers = read_rows(conn, since_ns)
    if not rows.samples:
        if since_ns is None:
            raise StoreError(f"{path}: the store holds no samples yet")
        raise StoreError(f"{path}: no sample since {format_time(since_ns)}")
    data = build(rows, top_jobs=top, top_processes=top, max_points=points)
    ns = [s[0] for s in rows.samples]
    chosen = pick_moments(ns, tiers, moments)
    # An objects moment with its mappings: its treemap sizes anonymous and
    # clone objects by their mappings' PSS, as the treemap of its memgraph does.
    snaps = [read_sample(conn, n, path, mappings=tiers[n] == OBJECTS) for n in chosen]
    times = {s[0]: s[1] for s in rows.samples}
    moment_meta = []
    trees = []
    folded = 0
    for n, snap in zip(chosen, snaps, strict=True):
        tree = tree_from_snapshot(snap)
        folded += prune_tree(tree, TREE_NODES)
        trees.append(tree_payload(tree))
        moment_meta.append({"sample": n, "time_s": times[n] / 1e9,
                            "time": format_time(times[n]),
                            "tier": TIER_NAMES.get(tiers[n], str(tiers[n])),
                            "total_bytes": tree.area})
    # Each moment indexed once (as zxmem diff indexes a snapshot), then every pair.
    indexes = {kind: [index(s, kind) if kind != "object" or s.vmos else None for s in snaps]
               for kind in ("job", "process", "object")}
    diffs = {f"{i}-{j}": _diff_rows(indexes, i, j)
             for i in range(len(snaps)) for j in range(i + 1, len(snaps))}
    notes = list(data.notes)
    if folded:
        notes.append(f"each treemap keeps its {TREE_NODES} largest boxes: {folded} smaller "
                     f"memory objects are drawn as one '{SMALLER_OBJECTS}[n]' box per "
                     "process (sizes unchanged)")
    if growth_rows is None:
        growth_rows, why = _growth(path, since_ns)
        if why:
            notes.append(why)
    host = snaps[-1].provenance.host if snaps else None
    meta = {"store": path, "host": host,
            "from": format_time(rows.samples[0][1]) if rows.samples else None,
            "to": format_time(rows.samples[-1][1]) if rows.samples else None,
            "samples": str(data.sample_count)}
    return render_html({"chart": data.to_json(), "moments": moment_meta, "diffs": diffs,
                        "growth": growth_rows, "notes": notes, "meta": meta}, trees)
