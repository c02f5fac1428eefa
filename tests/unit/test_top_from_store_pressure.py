"""``zxmem top --from STORE``'s header: the recorded PSI some/full avg10 and
the OOM kills since the store's first sample, from the kernel values
``zxmem record`` keeps (zxmem.collection.PRESSURE_KEYS); unknown ("-",
null) in samples without them, never 0.

Stores of known shape: bench/synth_store.py (PSI avg10 20% some and 10%
full at samples whose ``s % 50`` is 1..4, else 0; one OOM kill at each
sample of ``oom_at``) and top_samples' snapshots with their counters
removed (a store recorded before record kept them) or across a reboot.
"""

from __future__ import annotations

import json
import sys
from dataclasses import replace
from pathlib import Path
from types import MappingProxyType

import pytest
import top_samples

from zxmem.store.schema import open_store
from zxmem.store.writer import TOTALS, Writer
from zxmem.tui.sources import StoreSource, history_frame
from zxmem.views import top as view

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from synth_store import synth_store  # noqa: E402


@pytest.fixture(scope="module")
def pressure_store(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("top") / "p.db")
    # Samples s = 0..9 (numbers 1..10): kills at s = 3 and 5; PSI at s = 1..4.
    synth_store(path, samples=10, processes=4, jobs=2, oom_at=(3, 5), pressure=True)
    return path


def _header_at(path: str, index: int) -> view.Header:
    source = StoreSource(path, now_s=0)
    try:
        source.index = index
        return history_frame(source).header
    finally:
        source.close()


@pytest.mark.parametrize("index, some, full, kills", [
    (0, 0.0, 0.0, 0),  # known zero: the kernel said 0.00, none since the first sample
    (2, 20.0, 10.0, 0),
    (3, 20.0, 10.0, 1),
    (4, 20.0, 10.0, 1),
    (5, 0.0, 0.0, 2),
    (9, 0.0, 0.0, 2),
])
def test_header_shows_the_recorded_pressure_and_kills_since_the_first_sample(
        pressure_store, index, some, full, kills):
    h = _header_at(pressure_store, index)
    assert (h.psi_some_avg10, h.psi_full_avg10, h.oom_kills_since_start) == (some, full, kills)


def test_header_text_and_json_from_the_store(cli, pressure_store):
    r = cli(["top", "--from", f"{pressure_store}@4", "-n", "1"])
    assert r.status == 0, r.stderr
    line = next(x for x in r.stdout.splitlines() if x.startswith("psi "))
    assert line.startswith("psi some 20.00% full 10.00%  oom kills 1  ")
    r = cli(["top", "--from", f"{pressure_store}@9", "-n", "2", "--json"])
    assert r.status == 0, r.stderr
    docs = [json.loads(x) for x in r.stdout.splitlines()]
    assert [(d["pressure"], d["oom_kills_since_start"]) for d in docs] == [
        ({"some_avg10": 0.0, "full_avg10": 0.0}, 2)] * 2


def _write(path: str, snaps) -> None:
    conn = open_store(path, create=True)
    try:
        w = Writer(conn)
        for i, s in enumerate(snaps):
            w.write(s, TOTALS, top_samples.T0 + i * 2_000_000_000)
    finally:
        conn.close()


def test_a_store_without_pressure_keys_shows_unknown_not_zero(cli, tmp_path):
    path = str(tmp_path / "old.db")
    # What a store recorded before record kept PSI and oom_kill holds.
    _write(path, [replace(s, kernel=replace(s.kernel, extra=MappingProxyType({})))
                  for s in top_samples.samples()])
    for index in (0, 2):
        h = _header_at(path, index)
        assert (h.psi_some_avg10, h.psi_full_avg10, h.oom_kills_since_start) == (None,) * 3
        assert h.total_bytes == 8192 * top_samples.MIB  # the rest of the header is there
    r = cli(["top", "--from", f"{path}@3", "-n", "1"])
    assert r.status == 0, r.stderr
    assert "psi some - full -  oom kills -  " in r.stdout
    r = cli(["top", "--from", f"{path}@3", "-n", "1", "--json"])
    doc = json.loads(r.stdout)
    assert doc["pressure"] == {"some_avg10": None, "full_avg10": None}
    assert doc["oom_kills_since_start"] is None


def test_kills_across_a_reboot_are_unknown(tmp_path):
    path = str(tmp_path / "boot.db")
    s1, s2, s3 = top_samples.samples()  # oom_kill 7, 9, 9
    rebooted = replace(s3, provenance=replace(s3.provenance, boot_id="boot-2"),
                       kernel=replace(s3.kernel, extra=MappingProxyType(
                           {**s3.kernel.extra, "oom_kill": 12})))
    _write(path, [s1, s2, rebooted])
    assert _header_at(path, 1).oom_kills_since_start == 2
    h = _header_at(path, 2)
    # 12 kills since the new boot, not 12 - 7 since the first sample.
    assert h.oom_kills_since_start is None
    assert h.psi_some_avg10 == 2.1  # the rest of the pressure is this sample's own


def test_a_counter_lower_than_the_first_is_unknown():
    # No boot id to tell a reboot: a count below the first is no count.
    s1, s2, _ = top_samples.samples()
    history = view.History()
    history.update(replace(s1, provenance=replace(s1.provenance, boot_id=None)))
    frame = history.update(replace(
        s2, provenance=replace(s2.provenance, boot_id=None),
        kernel=replace(s2.kernel, extra=MappingProxyType({**s2.kernel.extra, "oom_kill": 3}))))
    assert frame.header.oom_kills_since_start is None
    assert "oom kills -  " in view.header_lines(frame.header)[2]
