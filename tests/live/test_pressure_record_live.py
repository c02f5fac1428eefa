"""``zxmem record`` on the live machine keeps the system's memory pressure
(PSI) and OOM kills in every sample, as the kernel prints them.

The expected values are read here from ``/proc/pressure/memory`` and
``/proc/vmstat`` with a parser of this test's own (not zxmem's) just before
and just after the recording: PSI's stall totals and the OOM-kill counter
only grow, so each recorded value lies between the two readings, and avg10
is the file's two-decimal percent in hundredths.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
from harness import zxmem_command

from zxmem.commands.report import read_rows
from zxmem.store.reader import read_sample, samples
from zxmem.store.schema import open_store
from zxmem.views.report_data import build

pytestmark = pytest.mark.live

PSI_FILE = "/proc/pressure/memory"
# "some avg10=0.00 avg60=0.00 avg300=0.00 total=16301606" (Documentation/accounting/psi.rst)
LINE = re.compile(rb"(some|full) avg10=(\d+)\.(\d\d) avg60=\d+\.\d\d avg300=\d+\.\d\d "
                  rb"total=(\d+)")


def _psi() -> dict[str, tuple[int, int]]:
    """kind -> (avg10 in hundredths of a percent, total microseconds)."""
    with open(PSI_FILE, "rb") as f:
        data = f.read()
    out = {}
    for line in data.splitlines():
        m = LINE.fullmatch(line.strip())
        assert m, f"{PSI_FILE}: unexpected line {line!r}"
        out[m.group(1).decode()] = (int(m.group(2)) * 100 + int(m.group(3)), int(m.group(4)))
    return out


def _oom_kills() -> int | None:
    with open("/proc/vmstat", "rb") as f:
        for line in f:
            key, _, value = line.partition(b" ")
            if key == b"oom_kill":
                return int(value)
    return None


def test_record_keeps_psi_and_oom_kills_in_every_sample(tmp_path):
    if not os.path.exists(PSI_FILE):
        pytest.skip(f"{PSI_FILE} is absent (a kernel without CONFIG_PSI, or booted psi=0): "
                    "no pressure to record")
    store = str(tmp_path / "h.db")
    before, oom_before = _psi(), _oom_kills()
    r = subprocess.run([*zxmem_command(), "record", "--count", "2", "--interval", "0.5",
                        "--store", store], capture_output=True, timeout=120)
    after, oom_after = _psi(), _oom_kills()
    assert r.returncode == 0, r.stderr
    assert b"Traceback" not in r.stderr

    conn = open_store(store, create=False, readonly=True)
    try:
        taken = samples(conn)
        assert len(taken) == 2
        extras = [dict(read_sample(conn, s.n, store).kernel.extra) for s in taken]
        rows, _tiers = read_rows(conn)
    finally:
        conn.close()
    previous: dict[str, int] = {}
    for extra in extras:
        for kind in ("some", "full"):
            if kind not in before:
                assert f"psi_{kind}_total_us" not in extra  # absent, never 0
                continue
            # The totals only grow: between the readings before and after,
            # and the second sample's no lower than the first's.
            total = extra[f"psi_{kind}_total_us"]
            assert before[kind][1] <= total <= after[kind][1], (kind, before, total, after)
            assert total >= previous.get(kind, 0)
            previous[kind] = total
            avg10 = extra[f"psi_{kind}_avg10_centipct"]
            assert isinstance(avg10, int) and 0 <= avg10 <= 100_00
            if before[kind][0] == after[kind][0]:
                # Unchanged over the recording: what the file said throughout.
                assert avg10 == before[kind][0], (kind, before, avg10)
        if oom_before is None:
            assert "oom_kill" not in extra
        else:
            assert oom_after is not None
            assert oom_before <= extra["oom_kill"] <= oom_after

    # The report reads the names record wrote: pressure over the interval
    # between the two samples, within what the kernel's totals allow.
    data = build(rows)
    assert not any("pressure" in n or "OOM" in n for n in data.notes), data.notes
    assert len(data.pressure) == len([k for k in ("some", "full") if k in before])
    # Between the two readings: the samples' capture times (live /proc has them).
    dt_us = (rows.capture_ns[taken[1].n] - rows.capture_ns[taken[0].n]) / 1000
    assert 0.4e6 < dt_us < 60e6
    for series, kind in zip(data.pressure, ("some", "full"), strict=False):
        assert series.values[0] is None
        stalled = series.values[1]
        assert stalled is not None
        assert stalled <= 100 * (after[kind][1] - before[kind][1]) / dt_us + 0.001
    assert data.oom_points is not None and len(data.oom_points) == 2
    assert sum(data.oom_points) == sum(k for _t, _n, k in data.oom_events)
    assert sum(data.oom_points) <= (oom_after or 0) - (oom_before or 0)
