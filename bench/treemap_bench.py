"""Treemap page size and headless render time for a 1,000-process snapshot.

Builds a synthetic snapshot as memgraph records (spec fuchsia-tools §5.3):
kernel records, a cgroup-like job tree (slices and services), and 1,000
processes that each reach ~60 VMOs — shared libraries mapped by many
processes, their private ``data:`` clones, heaps, thread stacks, anonymous
regions and the odd memfd — the shape a real Linux system's memgraph has.
It then measures:

* tree build (records → tree) and page render (tree → HTML) in Python;
* the page's size in bytes (target: at most 3 MB);
* in headless Chromium from ``file://``: time from navigation start to the
  page marking itself ready (first map and table drawn; target: under 1 s),
  best and median of several loads, plus the time of a zoom click.

Usage: ``python bench/treemap_bench.py [--processes N] [--runs R] [--keep FILE]``.
Needs Debian's ``chromium`` and the ``playwright`` Python package for the
browser figures; without them it prints the Python-side figures only.
"""

from __future__ import annotations

import argparse
import os
import random
import statistics
import sys
import tempfile
import time

CHROMIUM = "/usr/bin/chromium"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]

LIBS = [f"lib{name}.so.{v}" for name, v in [
    ("c", 6), ("m", 6), ("pthread", 0), ("dl", 2), ("ssl", 3), ("crypto", 3), ("z", 1),
    ("systemd", 0), ("glib-2.0", 0), ("gobject-2.0", 0), ("stdc++", 6), ("gcc_s", 1),
    ("python3.11", 1), ("ffi", 8), ("lzma", 5), ("zstd", 1), ("selinux", 1), ("pcre2-8", 0),
    ("dbus-1", 3), ("uuid", 1), ("blkid", 1), ("mount", 1), ("cap", 2), ("gcrypt", 20),
]]
PROGRAMS = ["nginx", "postgres", "python3", "node", "sshd", "bash", "java", "redis-server",
            "systemd", "dbus-daemon", "containerd", "chromium", "gunicorn", "rsyslogd"]
MIB = 1 << 20
PAGE = 4096


def synthetic_records(processes: int = 1000, seed: int = 1) -> list[dict]:
    """memgraph records for a system with ``processes`` processes."""
    rnd = random.Random(seed)
    koid = iter(range(10_000, 10**9))
    lib_vmos = {lib: (next(koid), rnd.randrange(64, 4096) * PAGE) for lib in LIBS}
    lib_users = {lib: 0 for lib in LIBS}
    procs: list[dict] = []
    jobs: list[dict] = [
        {"id": "j/1", "type": "j", "koid": 1, "parent": "kernel/vmo", "name": "root"}
    ]
    slices = []
    for s in ("system.slice", "user.slice", "machine.slice", "init.scope"):
        k = next(koid)
        jobs.append({"id": f"j/{k}", "type": "j", "koid": k, "parent": "j/1", "name": s})
        slices.append(k)
    services = []
    for i in range(120):
        k = next(koid)
        parent = rnd.choice(slices)
        name = f"{rnd.choice(PROGRAMS)}-{i}.service"
        jobs.append({"id": f"j/{k}", "type": "j", "koid": k, "parent": f"j/{parent}",
                     "name": name})
        services.append(k)
    pid_refs: list[tuple[dict, list[tuple[int, str, int, bool]]]] = []
    for i in range(processes):
        pid = 1000 + i
        prog = rnd.choice(PROGRAMS)
        vm: list[tuple[int, str, int, bool]] = []  # koid, name, committed, mapped
        for lib in rnd.sample(LIBS, rnd.randrange(6, len(LIBS))):
            k, size = lib_vmos[lib]
            lib_users[lib] += 1
            vm.append((k, lib, size, True))
            vm.append((next(koid), f"data:{lib}", rnd.randrange(1, 16) * PAGE, True))
        vm.append((next(koid), "[heap]", rnd.randrange(16, 6000) * PAGE, True))
        for t in range(rnd.randrange(1, 12)):
            vm.append((next(koid), f"[stack:{pid + t}]", rnd.randrange(2, 64) * PAGE, True))
        for _ in range(rnd.randrange(2, 14)):
            vm.append((next(koid), "", rnd.randrange(0, 1500) * PAGE, True))
        if rnd.random() < 0.05:
            vm.append((next(koid), "memfd:shm", rnd.randrange(1, 4000) * PAGE, False))
        rec = {"id": f"p/{pid}", "type": "p", "koid": pid,
               "parent": f"j/{rnd.choice(services)}", "name": f"{prog}[{i}]"}
        pid_refs.append((rec, vm))
    for rec, vm in pid_refs:
        vmos, refs = [], []
        private = pss = shared = 0
        for k, name, committed, mapped in vm:
            share = lib_users.get(name, 1) if name in lib_users else 1
            vmos.append({"koid": k, "name": name, "size_bytes": committed,
                         "parent_koid": 0, "num_children": 0, "num_mappings": share,
                         "share_count": share, "committed_bytes": committed})
            refs.append({"vmo_koid": k, "via": ["MAPPING"] if mapped else ["HANDLE"]})
            if share == 1:
                private += committed
            else:
                shared += committed
            pss += committed // share
        rec.update(private_bytes=private, shared_bytes=shared, pss_bytes=pss,
                   vmos=vmos, vmo_refs=refs)
        procs.append(rec)
    used = sum(
        sum(v["committed_bytes"] // max(v["share_count"], 1) for v in r["vmos"]) for r in procs
    )
    vmo = used + 2048 * MIB
    heap = 900 * MIB
    total = vmo + heap + 700 * MIB + 8192 * MIB
    kernel = [
        ("physmem", "", total), ("free", "kernel/physmem", total - vmo - heap - 700 * MIB),
        ("vmo", "kernel/physmem", vmo), ("heap", "kernel/physmem", heap),
        ("heap/allocated", "kernel/heap", heap - 100 * MIB),
        ("heap/free", "kernel/heap", 100 * MIB), ("wired", "kernel/physmem", 300 * MIB),
        ("mmu", "kernel/physmem", 250 * MIB), ("other", "kernel/physmem", 150 * MIB),
    ]
    out = [{"id": f"kernel/{n}", "type": "kernel", "parent": p, "name": n, "size_bytes": v}
           for n, p, v in kernel]
    # Fuchsia's order: kernel, then each job followed by its processes.
    by_job: dict[str, list[dict]] = {}
    for rec in procs:
        by_job.setdefault(str(rec["parent"]), []).append(rec)
    for job in jobs:
        out.append(job)
        out.extend(by_job.get(job["id"], ()))
    out.append({"type": "__META", "timestamp": "2026-01-01T00:00:00.000Z"})
    return out


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--processes", type=int, default=1000)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--keep", metavar="FILE", help="also write the page here")
    ap.add_argument("--from", dest="from_file", metavar="FILE",
                    help="use this memgraph JSON (e.g. zxmem memgraph -v > FILE) "
                         "instead of the synthetic one")
    args = ap.parse_args()

    import json

    from zxmem.treemap import tree_from_records
    from zxmem.views.treemap_html import render_html

    if args.from_file:
        with open(args.from_file, "rb") as f:
            records = json.load(f)
        args.processes = sum(1 for r in records if r.get("type") == "p")
    else:
        records = synthetic_records(args.processes)
    t0 = time.perf_counter()
    tree = tree_from_records(records)
    t1 = time.perf_counter()
    page = render_html(tree, {"source": "synthetic"})
    t2 = time.perf_counter()
    nodes = sum(1 for _ in tree.walk())
    vmo_refs = sum(len(r.get("vmo_refs", ())) for r in records)
    size = len(page.encode("utf-8"))
    print(f"processes: {args.processes}  vmo refs: {vmo_refs}  tree nodes: {nodes}")
    print(f"tree build: {1000 * (t1 - t0):.0f} ms  html render: {1000 * (t2 - t1):.0f} ms")
    print(f"html size: {size} bytes ({size / 1e6:.2f} MB; target <= 3 MB)")

    with tempfile.TemporaryDirectory() as tmp:
        path = os.path.join(tmp, "mem.html")
        with open(path, "w", encoding="utf-8") as f:
            f.write(page)
        if args.keep:
            with open(args.keep, "w", encoding="utf-8") as f:
                f.write(page)
        try:
            from playwright.sync_api import sync_playwright
        except ImportError:
            print("browser: skipped (pip install playwright)")
            return 0
        if not os.path.exists(CHROMIUM):
            print(f"browser: skipped ({CHROMIUM} missing: apt-get install chromium)")
            return 0
        ready, painted, walls, zooms = [], [], [], []
        with sync_playwright() as pw:
            browser = pw.chromium.launch(executable_path=CHROMIUM, args=CHROMIUM_ARGS)
            for _ in range(args.runs):
                page_ = browser.new_page(viewport={"width": 1280, "height": 900})
                t = time.perf_counter()
                page_.goto("file://" + path)
                page_.wait_for_selector("html[data-ready]")
                # The frame after the script finished: map and table painted.
                painted.append(page_.evaluate(
                    "new Promise(r => requestAnimationFrame("
                    "() => setTimeout(() => r(performance.now()))))"))
                walls.append(1000 * (time.perf_counter() - t))
                ready.append(float(page_.get_attribute("html", "data-ready") or "nan"))
                ms = page_.evaluate(
                    """() => {
                       const box = Array.from(document.querySelectorAll('#map .box'))
                         .find(b => b.textContent.startsWith('K VMOs/processes'));
                       const t = performance.now();
                       box.click();
                       return performance.now() - t; }"""
                )
                zooms.append(ms)
                page_.close()
            browser.close()
        med = statistics.median
        print(
            f"chromium, from navigation start: script done best {min(ready):.0f} ms / "
            f"median {med(ready):.0f} ms; painted median {med(painted):.0f} ms "
            f"over {len(ready)} loads (target < 1000 ms)"
        )
        print(f"goto + ready + paint, wall clock: median {med(walls):.0f} ms")
        print(f"zoom into VMOs/processes (layout + redraw): median {med(zooms):.0f} ms")
    return 0


if __name__ == "__main__":
    sys.exit(main())
