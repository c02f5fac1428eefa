"""The report's series from a store recorded on the live machine, with
workloads of known shape running (tests/live/workloads.py).

Every sample's stacks (by job, by process) add up to the sample's own total
PSS, which is the sum of the PSS of the processes the sample holds; the
workload's series is its PSS in each sample and is its shape (64 MiB of
private memory) above its baseline twin; the test cgroup's series is the sum
of its processes; the system stack adds up to the kernel's MemTotal.
"""

from __future__ import annotations

import time

import pytest
from workloads import MIB, PAGE

import zxmem
from zxmem.commands.record import plan_for
from zxmem.commands.report import build_page, read_rows
from zxmem.store.reader import read_sample
from zxmem.store.recorder import Recorder
from zxmem.store.writer import OBJECTS, TOTALS
from zxmem.views.report_data import build

pytestmark = pytest.mark.live

TOL = 64 * PAGE  # as tests/live/test_ps_live.py: interpreter pages that move
PRIVATE_SIZE = 64 * MIB


def test_series_of_a_recorded_live_workload(tmp_path, launcher, test_cgroup):
    cgroup, _why = test_cgroup
    shaped = launcher.start("private", str(PRIVATE_SIZE), cgroup=cgroup)
    base = launcher.start("private", str(PAGE), cgroup=cgroup)
    path = str(tmp_path / "h.db")
    with Recorder(path, print) as rec:
        for i, tier in enumerate((OBJECTS, TOTALS, TOTALS, OBJECTS)):
            if i:
                time.sleep(0.2)
            rec.add(zxmem.collect(plan_for(tier)), tier, time.time_ns())
        conn = rec.conn
        rows, tiers = read_rows(conn)
        snaps = [read_sample(conn, n) for n, _t, _p in rows.samples]
        page = build_page(conn, path, moments=2, growth_rows=[])
    data = build(rows, top_jobs=100_000, top_processes=100_000)
    assert len(data.times_ns) == 4 and data.step == 1
    assert sorted(tiers.values()) == [TOTALS, TOTALS, OBJECTS, OBJECTS]

    for i, snap in enumerate(snaps):
        known = [p.memory.pss_bytes for p in snap.processes
                 if p.memory is not None and p.memory.pss_bytes is not None]
        assert known, "no process's PSS was readable"
        total = sum(known)
        assert data.totals[i] == total
        assert sum(s.values[i] for s in data.jobs) == total
        assert sum(s.values[i] for s in data.processes) == total

        pss = {p.koid: p.memory.pss_bytes for p in snap.processes if p.memory is not None}
        series = {s.key: s.values[i] for s in data.processes}
        assert series[f"p:{shaped.pid}"] == pss[shaped.pid]
        assert series[f"p:{base.pid}"] == pss[base.pid]
        grown = pss[shaped.pid] - pss[base.pid]
        assert abs(grown - PRIVATE_SIZE) <= TOL, (grown, PRIVATE_SIZE)

        if cgroup is not None:
            job = next(p.job_koid for p in snap.processes if p.koid == shaped.pid)
            assert all(p.job_koid == job for p in snap.processes if p.koid == base.pid)
            in_job = sum(v for p in snap.processes if p.job_koid == job
                         for v in [pss.get(p.koid)] if v is not None)
            jobs = {s.key: s.values[i] for s in data.jobs}
            assert jobs[f"j:{job}"] == in_job
            assert in_job >= PRIVATE_SIZE

        k = snap.kernel
        assert k is not None and k.total_bytes is not None and k.free_bytes is not None
        parts = {s.label: s.values[i] for s in data.system}
        assert sum(parts.values()) == k.total_bytes
        assert parts["free"] == k.free_bytes
        assert parts["processes (PSS)"] == total

    assert page.count('type="application/json" id="tree-') == 2
