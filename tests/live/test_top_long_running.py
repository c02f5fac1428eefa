"""``zxmem top`` refreshed 1,000 times at a short interval while processes
come and go: no traceback, and its memory stays flat.

The app runs headless (Textual's test driver: the same widgets, workers
and drawing, no terminal) in a process of its own, reading the live system
every 0.01 s (each refresh starts when the last one is drawn), with keys
pressed now and then (sort, tree, filter) so every path redraws.
"""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
from test_long_running import _Churn

# Growth of top's RSS allowed from refresh 600 to 1,000, and from 100 to
# 1,000: the bounds of collect()'s own test (test_long_running.py), since a
# refresh is a collection plus a model keyed by identity that forgets every
# process that exited (tests/unit/test_top_model.py).  A leak of one
# snapshot per refresh would be hundreds of MB; one row per refresh would
# be ~0.5 MB over the last 400.
RSS_BOUND_BYTES = 4 << 20
RSS_STEP_BYTES = 24 << 20

_TOP = r"""
import asyncio, gc, json, sys
from zxmem.tui.sources import LiveSource
from zxmem.tui.app import TopApp
from zxmem.views.top import TopOptions

def rss():
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024

app = TopApp(LiveSource("/proc"), TopOptions(), delay=0.01)
marks = {}
keys = ["d", "t", "t", "p", "j", "j", "n", "p"]

async def main():
    async with app.run_test(size=(120, 40)) as pilot:
        pressed = 0
        while app.history.count < 1000 and app.error is None:
            await asyncio.sleep(0.005)
            n = app.history.count
            # The count may step past a mark between two polls: take the
            # first poll at or after it.
            for mark in (100, 600):
                if n >= mark and mark not in marks:
                    gc.collect()
                    marks[mark] = rss()
            if n // 50 > pressed:
                pressed = n // 50
                await pilot.press(keys[pressed % len(keys)])
        await app.workers.wait_for_complete()
        await pilot.pause()
        gc.collect()
        marks[1000] = rss()
        print(json.dumps({"marks": marks, "refreshes": app.history.count,
                          "redraws": app.redraws, "error": app.error,
                          "rows": len(app.shown)}))

asyncio.run(main())
"""


@pytest.mark.live
def test_a_thousand_refreshes_stay_flat():
    with _Churn() as churn:
        r = subprocess.run([sys.executable, "-c", _TOP], capture_output=True, text=True,
                           timeout=1800)
    assert r.returncode == 0, r.stderr[-3000:]
    assert "Traceback" not in r.stderr, r.stderr[-3000:]
    out = json.loads(r.stdout.strip().splitlines()[-1])
    assert out["error"] is None
    assert out["refreshes"] >= 1000 and out["redraws"] >= 1000 and out["rows"] > 0
    assert churn.started > 200, "the workload did not churn"
    marks = {int(k): v for k, v in out["marks"].items()}
    late = marks[1000] - marks[600]
    assert late <= RSS_BOUND_BYTES, (
        f"RSS grew {late / 1024:.0f} KiB over the last 400 refreshes ({marks})")
    assert marks[1000] - marks[100] <= RSS_STEP_BYTES, marks
