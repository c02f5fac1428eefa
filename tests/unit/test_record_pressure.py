"""zxmem record keeps the system's memory pressure and OOM kills in every
sample (zxmem.collection.PRESSURE_KEYS), read from a recorded /proc tree
whose /proc/pressure/memory and /proc/vmstat say known values; where the
kernel gives none the keys are absent (unknown), never 0."""

from __future__ import annotations

import shutil
import sqlite3
from pathlib import Path

import pytest
from fixture_paths import REPO

from zxmem.collection import PRESSURE_KEYS, collect
from zxmem.commands.record import plan_for
from zxmem.store.reader import read_sample, samples
from zxmem.store.writer import OBJECTS, TOTALS

KERNEL = REPO / "tests" / "fixtures" / "kernel" / "linux-6.18"
PSI = (b"some avg10=1.23 avg60=0.50 avg300=0.10 total=123456\n"
       b"full avg10=0.29 avg60=0.00 avg300=0.00 total=4567\n")
VMSTAT = b"nr_free_pages 1000\npgmajfault 12\noom_kill 3\npswpin 0\n"


def _root(tmp_path: Path, psi: bytes | None, vmstat: bytes) -> str:
    root = tmp_path / "proc"
    shutil.copytree(KERNEL, root)
    (root / "vmstat").write_bytes(vmstat)
    if psi is not None:
        (root / "pressure").mkdir()
        (root / "pressure" / "memory").write_bytes(psi)
    return str(root)


def _recorded(cli, tmp_path: Path, root: str) -> list[dict]:
    path = str(tmp_path / "h.db")
    r = cli(["record", "--store", path, "--proc-root", root, "--count", "3",
             "--interval", "0.01", "--objects-every", "2"])
    assert r.status == 0, r.stderr
    conn = sqlite3.connect(path)
    try:
        taken = samples(conn)
        assert [s.tier for s in taken] == [OBJECTS, TOTALS, OBJECTS]
        return [dict(read_sample(conn, s.n).kernel.extra) for s in taken]
    finally:
        conn.close()


def test_both_tiers_collect_pressure():
    assert plan_for(TOTALS).pressure and plan_for(OBJECTS).pressure


def test_every_sample_keeps_psi_and_oom_kills(tmp_path, cli):
    root = _root(tmp_path, PSI, VMSTAT)
    want = {"psi_some_avg10_centipct": 123, "psi_full_avg10_centipct": 29,
            "psi_some_total_us": 123456, "psi_full_total_us": 4567, "oom_kill": 3}
    assert set(want) == set(PRESSURE_KEYS)
    for extra in _recorded(cli, tmp_path, root):
        assert {k: extra.get(k) for k in PRESSURE_KEYS} == want


def test_no_psi_file_leaves_the_keys_out_never_zero(tmp_path, cli):
    # A kernel without CONFIG_PSI (or booted psi=0), before oom_kill (4.13).
    root = _root(tmp_path, None, b"nr_free_pages 1000\n")
    for extra in _recorded(cli, tmp_path, root):
        assert not set(PRESSURE_KEYS) & set(extra)
        assert extra["page_size"] == 4096  # the kernel's other values are there
    snap = collect(plan_for(TOTALS), root)
    assert any(n.startswith("/proc/pressure/memory: ") for n in snap.provenance.notes)


@pytest.mark.parametrize("psi, want", [
    # Only a "some" line: no "full" keys.
    (b"some avg10=0.29 avg60=0.00 avg300=0.00 total=99\n",
     {"psi_some_avg10_centipct": 29, "psi_some_total_us": 99}),
    # A malformed file: no PSI keys (and a note), the OOM counter still.
    (b"some avg10=x\n", {}),
])
def test_partial_or_bad_psi(tmp_path, psi, want):
    root = _root(tmp_path, psi, VMSTAT)
    snap = collect(plan_for(TOTALS), root)
    assert snap.kernel is not None
    got = {k: v for k, v in snap.kernel.extra.items() if k in PRESSURE_KEYS}
    assert got == {**want, "oom_kill": 3}
    noted = any(n.startswith("/proc/pressure/memory: malformed") for n in snap.provenance.notes)
    assert noted == (not want)
