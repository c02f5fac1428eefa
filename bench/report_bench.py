"""How big the report page is and how fast Chromium draws it.

    python bench/report_bench.py [--samples 8640] [--processes 1000] [--store PATH]

A synthetic store (bench/synth_store.py, through the store's writer): a day
of 10 s samples for 1,000 processes in 40 jobs, five leaking, one sawtooth,
5% of the rest changing a little each sample, an objects sample every
``--objects-every`` samples.  ``--store PATH`` keeps the store (and reuses it
when it exists).  Then:

* build: ``zxmem report`` building the page in-process (reading the store,
  the series, the moments' treemaps and diffs);
* size of the page;
* draw: the page opened from file:// in Debian's headless Chromium, every
  request but the page refused; ``performance.now()`` when the page's script
  has drawn every chart and the newest moment's treemap (navigation start to
  ready: parsing the HTML and the scripts included), best and median of
  ``--runs`` loads; painted: two animation frames later.

Goal (issue 14): the page for a day of 10 s samples for 1,000 processes
<= 5 MB and drawn in <= 1 s.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.path.insert(0, os.path.join(HERE, ".."))
sys.path.insert(0, HERE)

from synth_store import synth_store  # noqa: E402

from zxmem.commands.report import build_page  # noqa: E402
from zxmem.store.schema import open_store  # noqa: E402


def main() -> None:
    ap = argparse.ArgumentParser()
    ap.add_argument("--samples", type=int, default=8640)
    ap.add_argument("--processes", type=int, default=1000)
    ap.add_argument("--jobs", type=int, default=40)
    ap.add_argument("--objects-every", type=int, default=60)
    ap.add_argument("--vmos", type=int, default=40, help="memory objects per process")
    ap.add_argument("--moments", type=int, default=6)
    ap.add_argument("--runs", type=int, default=5)
    ap.add_argument("--store", help="keep the synthetic store here (reused if it exists)")
    ap.add_argument("--chromium", default="/usr/bin/chromium")
    args = ap.parse_args()

    top = tempfile.mkdtemp(prefix="zxmem-rbench-")
    store = args.store or os.path.join(top, "h.db")
    if not os.path.exists(store):
        t = time.monotonic()
        synth_store(store, samples=args.samples, processes=args.processes, jobs=args.jobs,
                    leakers=5, sawtooth=1, changed=0.05, objects_every=args.objects_every,
                    oom_at=(args.samples // 3, args.samples // 2), pressure=True,
                    cmdlines=False, keep_shape=False, total_bytes=256 << 30,
                    vmos_per_process=args.vmos)
        print(f"synthesised {args.samples} samples x {args.processes} processes in "
              f"{time.monotonic() - t:.1f} s ({os.path.getsize(store) / 2**20:.1f} MiB store)")

    conn = open_store(store, create=False, readonly=True)
    try:
        t = time.monotonic()
        page = build_page(conn, store, moments=args.moments)
        build_s = time.monotonic() - t
    finally:
        conn.close()
    out = os.path.join(top, "report.html")
    with open(out, "w", encoding="utf-8") as f:
        f.write(page)
    size = os.path.getsize(out)
    print(f"build: {build_s:.2f} s; page: {size / 1e6:.2f} MB ({size} bytes)")

    from playwright.sync_api import sync_playwright

    ready = []
    painted = []
    url = "file://" + out
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=args.chromium,
                               args=["--headless", "--no-sandbox", "--disable-gpu"])
        for _ in range(args.runs):
            ctx = b.new_context(viewport={"width": 1280, "height": 900})
            ctx.route("**/*", lambda r: r.continue_() if r.request.url == url else r.abort())
            p = ctx.new_page()
            errors: list[str] = []

            def on_error(e: object, errors: list[str] = errors) -> None:
                errors.append(str(e))

            p.on("pageerror", on_error)
            p.goto(url)
            p.wait_for_selector("html[data-ready]", timeout=60_000)
            assert not errors, errors
            ready.append(float(p.get_attribute("html", "data-ready") or "nan") / 1000)
            # Painted: two animation frames after the script is done.
            painted.append(p.evaluate(
                "new Promise(r => requestAnimationFrame(() => requestAnimationFrame(() => "
                "r(performance.now()))))") / 1000)
            ctx.close()
        b.close()
    print(f"script done (navigation start to ready): best {min(ready):.3f} s, median "
          f"{statistics.median(ready):.3f} s over {len(ready)} loads")
    print(f"painted: best {min(painted):.3f} s, median {statistics.median(painted):.3f} s")
    print("load:", open("/proc/loadavg").read().strip())


if __name__ == "__main__":
    main()
