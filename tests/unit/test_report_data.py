"""The report's series: a pure function of the store's rows (zxmem.views.report_data).

Checked against stores of known shape (bench/synth_store.py writes them
through the store's own writer) and against hand-made rows: every stack adds
up to its sample's total PSS, unknown PSS is left out (never 0), a process
that moves between jobs is counted in each for its time there, and
downsampling keeps real samples.
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from zxmem.cli import Environment, main
from zxmem.commands.report import build_page, pick_moments, read_rows
from zxmem.store.schema import open_store
from zxmem.store.writer import OBJECTS, TOTALS
from zxmem.views.report_data import (
    FREE_KEY,
    OOM_KEY,
    OTHER_JOBS,
    PRESSURE_FULL_KEY,
    PRESSURE_FULL_LABEL,
    PRESSURE_SOME_KEY,
    PRESSURE_SOME_LABEL,
    TOTAL_KEY,
    VMO_KEY,
    StoreRows,
    build,
)
from zxmem.views.report_html import format_binary

sys.path.insert(0, str(Path(__file__).resolve().parents[2] / "bench"))
from synth_store import MIB, synth_store  # noqa: E402


def _rows(path: str, since_ns: int | None = None):
    conn = open_store(path, create=False, readonly=True)
    try:
        return read_rows(conn, since_ns)
    finally:
        conn.close()


def _sums(series, i: int) -> int:
    return sum(s.values[i] for s in series)


@pytest.fixture(scope="module")
def synth(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("rep") / "h.db")
    shape = synth_store(path, samples=120, processes=40, jobs=6, leakers=2, sawtooth=1,
                        changed=0.3, objects_every=30, oom_at=(40, 41, 90), pressure=True)
    return path, shape


def test_stacks_add_up_to_each_samples_total(synth):
    path, shape = synth
    rows, _tiers = _rows(path)
    data = build(rows, top_jobs=3, top_processes=5)
    assert data.step == 1 and len(data.times_ns) == 120 == data.sample_count
    assert data.times_ns == shape.times_ns
    for i, pss in enumerate(shape.pss):
        want = sum(pss.values())
        assert data.totals[i] == want
        assert _sums(data.jobs, i) == want
        assert _sums(data.processes, i) == want
    # Three jobs of their own and the other three folded.
    assert [s.key for s in data.jobs[:3]] and len(data.jobs) == 4
    assert data.jobs[-1].label == f"{OTHER_JOBS} (3)"
    assert len(data.processes) == 6 and data.processes[-1].label == "other processes (35)"


def test_job_series_are_the_sums_of_their_processes(synth):
    path, shape = synth
    rows, _ = _rows(path)
    data = build(rows, top_jobs=10, top_processes=0)
    assert len(data.jobs) == 6  # all jobs, none folded
    for s in data.jobs:
        j = int(s.key[2:]) - 100
        assert s.label == f"/zxmem.slice/svc-{j}.service"
        for i, pss in enumerate(shape.pss):
            assert s.values[i] == sum(v for pid, v in pss.items() if (pid - 1000) % 6 == j)


def test_top_processes_are_the_largest_peaks_with_their_own_values(synth):
    path, shape = synth
    rows, _ = _rows(path)
    data = build(rows, top_processes=2)
    peaks = {pid: max(p[pid] for p in shape.pss) for pid in shape.pss[0]}
    want = sorted(peaks, key=lambda pid: (-peaks[pid], pid))[:2]
    assert [s.key for s in data.processes[:2]] == [f"p:{pid}" for pid in want]
    for s in data.processes[:2]:
        pid = int(s.key[2:])
        assert s.label == f"proc-{pid - 1000} ({pid})"
        assert list(s.values) == [p[pid] for p in shape.pss]
    # A leaker grows by exactly 1 MiB a sample.
    leak = next(s for s in data.processes if s.key == "p:1000")
    assert all(b - a == MIB for a, b in zip(leak.values, leak.values[1:], strict=False))


def test_system_parts_add_up_to_the_kernels_total(synth):
    path, shape = synth
    rows, _ = _rows(path)
    data = build(rows)
    labels = [s.label for s in data.system]
    assert labels[2] == "processes (PSS)" and labels[3] == "free"
    for i, pss in enumerate(shape.pss):
        parts = [s.values[i] for s in data.system]
        assert sum(parts) == shape.total_bytes
        assert parts[0] == shape.kernel_bytes
        assert parts[1] == shape.cache_bytes
        assert parts[2] == sum(pss.values())


def test_oom_kills_and_pressure_come_from_the_counters(synth):
    path, shape = synth
    rows, _ = _rows(path)
    # The store holds the keys zxmem record writes (collection.PRESSURE_KEYS).
    assert set(rows.kernel) >= {OOM_KEY, PRESSURE_SOME_KEY, PRESSURE_FULL_KEY}
    data = build(rows)
    # oom_at=(40, 41, 90): the counter is one higher at those samples (n = s + 1).
    assert [(n, k) for _t, n, k in data.oom_events] == [(41, 1), (42, 1), (91, 1)]
    assert [t for t, _n, _k in data.oom_events] == [shape.times_ns[i] for i in (40, 41, 90)]
    assert data.oom_points is not None and len(data.oom_points) == 120
    assert {i: k for i, k in enumerate(data.oom_points) if k} == {40: 1, 41: 1, 90: 1}
    some, full = data.pressure
    assert (some.label, full.label) == (PRESSURE_SOME_LABEL, PRESSURE_FULL_LABEL)
    # 20% (some) and 10% (full) of each 10 s interval ending at s % 50 in 1..4.
    stalled = {1, 2, 3, 4, 51, 52, 53, 54, 101, 102, 103, 104}
    assert {i for i, v in enumerate(some.values) if v} == stalled
    assert {i for i, v in enumerate(full.values) if v} == stalled
    assert all(some.values[i] == pytest.approx(20.0) for i in stalled)
    assert all(full.values[i] == pytest.approx(10.0) for i in stalled)
    assert some.values[5] == 0 and full.values[50] == 0
    assert some.values[0] is None  # no interval before the first sample
    assert not any("OOM" in n or "pressure" in n for n in data.notes)
    doc = data.to_json()
    assert [s["label"] for s in doc["pressure"]] == [PRESSURE_SOME_LABEL, PRESSURE_FULL_LABEL]
    assert doc["oom"][0] == {"time_s": shape.times_ns[40] / 1e9, "sample": 41, "kills": 1}


def _pressure_rows(times_ns, oom, some, full=None):
    """Hand-made rows: one process, each sample's counters (None: absent)."""
    kernel: dict = {}
    for key, values in ((OOM_KEY, oom), (PRESSURE_SOME_KEY, some), (PRESSURE_FULL_KEY, full)):
        if values is not None:
            kernel[key] = [(i + 1, i + 1, v) for i, v in enumerate(values) if v is not None]
    return StoreRows(samples=[(i + 1, t, 100) for i, t in enumerate(times_ns)],
                     proc_mem=[(1, 1, None, 100)], proc_info=[(1, 1, None, "p", 7)],
                     pids={1: 1}, jobs={7: "/"}, kernel=kernel)


def test_an_oom_kill_between_two_samples_is_marked_at_the_later():
    s = 10**9
    # Samples 2 s apart; two kills between samples 2 and 3, one between 4 and
    # 5; stalls: some 0.5 s then 1.5 s, full 0.1 s, between samples 3 and 4.
    times = [0, 2 * s, 4 * s, 6 * s, 8 * s]
    rows = _pressure_rows(times, oom=[67, 67, 69, 69, 70],
                          some=[1000, 1000, 501_000, 2_001_000, 2_001_000],
                          full=[50, 50, 50, 100_050, 100_050])
    data = build(rows)
    assert data.oom_events == [(4 * s, 3, 2), (8 * s, 5, 1)]
    assert data.oom_points == [0, 0, 2, 0, 1]
    some, full = data.pressure
    assert some.values == [None, 0, 25.0, 75.0, 0]
    assert full.values == [None, 0, 0, 5.0, 0]


def test_pressure_of_downsampled_points_is_over_their_whole_interval():
    s = 10**9
    # Ten samples 1 s apart drawn as five points (the largest of each pair:
    # equal totals, so the first): 1, 3, 5, 7, 9.  A 0.3 s stall between
    # samples 2 and 3 falls between drawn points 1 and 3; a kill at sample 4
    # is counted at drawn sample 5, the first drawn at or after it.
    times = [i * s for i in range(10)]
    rows = _pressure_rows(times, oom=[0, 0, 0, 1, 1, 1, 1, 1, 1, 1],
                          some=[0, 0, 300_000] + [300_000] * 7)
    data = build(rows, max_points=5)
    assert data.step == 2 and data.sample_ns == [1, 3, 5, 7, 9]
    (some,) = data.pressure
    assert some.values == [None, 15.0, 0, 0, 0]  # 0.3 s of the 2 s between samples 1 and 3
    assert data.oom_events == [(3 * s, 4, 1)]
    assert data.oom_points == [0, 0, 1, 0, 0]


def test_pressure_is_over_the_time_between_the_readings():
    s = 10**9
    # Collections began (capture_ns) 10 s apart, but the first, an objects
    # sample, took 3 s and the second 0.5 s: their end times (time_ns) are
    # 7.5 s apart.  2 s stalled between the readings is 20%, not 26.7%.
    rows = _pressure_rows([3 * s, 10_500_000_000], oom=[0, 0], some=[0, 2_000_000])
    rows = replace(rows, capture_ns={1: 100 * s, 2: 110 * s})
    assert build(rows).pressure[0].values == [None, 20.0]
    # A sample without a capture time: its time is all there is.
    rows = replace(rows, capture_ns={2: 110 * s})
    assert build(rows).pressure[0].values == [None, pytest.approx(26.667)]


def test_a_counter_reset_by_a_reboot_marks_nothing():
    s = 10**9
    rows = _pressure_rows([0, s, 2 * s], oom=[5, 0, 1], some=[9_000_000, 10, 10])
    data = build(rows)
    assert data.oom_events == [(2 * s, 3, 1)]
    assert data.pressure[0].values == [None, None, 0]


def test_samples_without_pressure_keys_are_unknown_not_zero():
    s = 10**9
    # An older store's samples had no PSI; the newer ones have it.
    rows = _pressure_rows([0, s, 2 * s, 3 * s], oom=[None, None, 3, 3],
                          some=[None, None, 100, 200_100])
    data = build(rows)
    assert data.oom_events == []  # the first known value is no kill
    assert data.pressure[0].values == [None, None, None, 20.0]
    assert data.oom_points == [0, 0, 0, 0]


def test_stores_without_counters_say_so(tmp_path):
    path = str(tmp_path / "h.db")
    synth_store(path, samples=5, processes=3)
    rows, _ = _rows(path)
    rows = StoreRows(rows.samples, rows.proc_mem, rows.proc_info, rows.pids, rows.jobs,
                     {k: v for k, v in rows.kernel.items() if "oom" not in k})
    data = build(rows)
    assert data.oom_events == [] and data.pressure == [] and data.oom_points is None
    assert any("no OOM-kill counter" in n for n in data.notes)
    assert any("no memory pressure counter" in n for n in data.notes)
    assert data.to_json()["pressure"] is None


def test_unknown_pss_is_left_out_and_job_moves_are_followed():
    # Samples 3, 4, 6 (5 was deleted); process 1 moves from job 7 to job 8
    # at sample 6; process 2's PSS is unknown at sample 4.
    rows = StoreRows(
        samples=[(3, 30, 300), (4, 40, 100), (6, 60, 450)],
        proc_mem=[(1, 1, 4, 100), (1, 5, None, 150), (2, 3, 3, 200), (2, 4, 4, None),
                  (2, 6, None, 300)],
        proc_info=[(1, 1, 5, "one", 7), (1, 6, None, "one", 8), (2, 3, None, "two", 7)],
        pids={1: 11, 2: 22},
        jobs={7: "/a", 8: "/b"},
        kernel={TOTAL_KEY: [(3, None, 1000)], FREE_KEY: [(3, 4, 500), (6, None, 400)],
                VMO_KEY: [(3, None, 450)]},
    )
    data = build(rows, top_processes=5, top_jobs=5)
    by = {s.key: list(s.values) for s in data.processes}
    assert by == {"p:11": [100, 100, 150], "p:22": [200, 0, 300]}
    jobs = {s.label: list(s.values) for s in data.jobs}
    assert jobs == {"/a": [300, 100, 300], "/b": [0, 0, 150]}
    for i, total in enumerate(data.totals):
        assert _sums(data.jobs, i) == total == _sums(data.processes, i)
    system = {s.label.split(" ")[0]: list(s.values) for s in data.system}
    assert system["free"] == [500, 500, 400]
    assert system["processes"] == [300, 100, 450]
    assert system["page"] == [150, 350, 0]
    assert system["kernel"] == [50, 50, 150]


def test_a_process_without_info_rows_is_counted_under_no_job():
    rows = StoreRows(samples=[(1, 10, 50), (2, 20, 80)],
                     proc_mem=[(1, 1, None, 50), (2, 2, None, 30)],
                     proc_info=[(1, 1, None, "one", 7)], pids={1: 1, 2: 2}, jobs={7: "/a"})
    data = build(rows, top_jobs=5)
    assert [(s.label, list(s.values)) for s in data.jobs] == [
        ("/a", [50, 50]), ("other jobs and (no job) (1)", [0, 30])]
    assert data.system == []
    assert any("no kernel totals" in n for n in data.notes)


def test_downsampling_draws_each_runs_largest_real_sample():
    n = 10
    totals = [5, 9, 1, 3, 3, 8, 2, 7, 7, 4]
    rows = StoreRows(samples=[(i + 1, i * 10, totals[i]) for i in range(n)],
                     proc_mem=[(1, i + 1, i + 1, totals[i]) for i in range(n)],
                     proc_info=[(1, 1, None, "p", 7)], pids={1: 1}, jobs={7: "/"})
    data = build(rows, max_points=4)
    assert data.step == 3
    # Runs [5 9 1] [3 3 8] [2 7 7] [4]: the largest (the first of equals).
    assert data.sample_ns == [2, 6, 8, 10]
    assert data.totals == [9, 8, 7, 4] == list(data.jobs[0].values)
    assert data.times_ns == [10, 50, 70, 90]
    assert any("10 samples drawn as 4 points" in note for note in data.notes)


def test_since_keeps_only_the_newer_samples(synth):
    path, shape = synth
    rows, _ = _rows(path, since_ns=shape.times_ns[100])
    data = build(rows)
    assert data.times_ns == shape.times_ns[100:]
    assert data.totals == [sum(p.values()) for p in shape.pss[100:]]
    assert _sums(data.jobs, 0) == data.totals[0]


def test_moments_are_spread_objects_samples():
    ns = list(range(1, 101))
    tiers = {n: OBJECTS if n % 10 == 1 else TOTALS for n in ns}
    assert pick_moments(ns, tiers, 3) == [1, 41, 91]  # the middle of ten: round(4.5)
    assert pick_moments(ns, tiers, 20) == [n for n in ns if n % 10 == 1]
    assert pick_moments(ns, {n: TOTALS for n in ns}, 2) == [1, 100]
    assert pick_moments([], {}, 3) == []


def test_page_holds_one_tree_per_moment_and_every_pair_diff(synth):
    path, _shape = synth
    conn = open_store(path, create=False, readonly=True)
    try:
        page = build_page(conn, path, moments=3, growth_rows=[])
    finally:
        conn.close()
    assert page.count('type="application/json" id="tree-') == 3
    import json
    import re

    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page).group(1))
    assert [m["sample"] for m in data["moments"]] == [1, 61, 91]
    assert sorted(data["diffs"]) == ["0-1", "0-2", "1-2"]
    d = data["diffs"]["0-2"]
    assert set(d) == {"job", "process", "object"}
    # The leaker proc-0 grew by 90 MiB between samples 1 and 91.
    row = next(r for r in d["process"]["rows"] if r[0] == "p:1000")
    assert row[2] == "grew" and row[5] == 90 * MIB


@pytest.mark.parametrize("value, text", [
    (0, "0 B"), (1023, "1023 B"), (1024, "1.00 KiB"), (1536, "1.50 KiB"),
    (10 * 1024, "10.0 KiB"), (100 * 1024, "100 KiB"), (1023 * 1024, "1023 KiB"),
    (MIB, "1.00 MiB"), (3 << 30, "3.00 GiB"), (-1536, "-1.50 KiB"), (None, "-"),
    # Halves round up: 1.125 KiB is exactly 1152 bytes.
    (1152, "1.13 KiB"),
])
def test_format_binary(value, text):
    assert format_binary(value) == text


def _run(argv, isatty=False):
    out, err = io.StringIO(), io.StringIO()
    with open(os.devnull) as stdin:
        status = main(argv, Environment(stdout=out, stderr=err, stdin=stdin,
                                        stdout_isatty=isatty))
    return status, out.getvalue(), err.getvalue()


def test_command_errors_are_one_line(tmp_path):
    status, _, err = _run(["report", "--from", str(tmp_path / "none.db")])
    assert status == 1 and err.count("\n") == 1 and "no such history store" in err
    bad = tmp_path / "x.json"
    bad.write_text("{}")
    status, _, err = _run(["report", "--from", str(bad)])
    assert status == 1 and err == f"zxmem: {bad}: not a zxmem history store\n"
    status, _, err = _run(["report", "--from", str(bad)], isatty=True)
    assert status == 2 and "not writing HTML to a terminal" in err
    status, _, err = _run(["report", "--from", str(bad), "--moments", "99"])
    assert status == 2 and "at most 24" in err


def test_an_empty_store_or_period_is_one_line(synth, tmp_path):
    empty = str(tmp_path / "e.db")
    open_store(empty, create=True).close()
    status, _, err = _run(["report", "--from", empty])
    assert status == 1 and err == f"zxmem: {empty}: the store holds no samples yet\n"
    path, _ = synth  # its samples are from 2026-05-28: none in the last hour
    status, _, err = _run(["report", "--from", path, "--since", "1h"])
    assert status == 1 and err.startswith(f"zxmem: {path}: no sample since ")


def test_command_writes_the_page(synth, tmp_path):
    path, _ = synth
    out = tmp_path / "r.html"
    status, text, err = _run(["report", "--from", path, "-o", str(out)])
    assert status == 0, err
    assert text == ""
    page = out.read_text()
    assert page.startswith("<!DOCTYPE html>") and "uPlot" in page


def _records(procs: int, objects: int) -> list[dict]:
    recs: list[dict] = [{"id": "j/1", "type": "j", "koid": 1, "parent": "", "name": "root"}]
    koid = 10
    for p in range(procs):
        vmos = []
        for o in range(objects):
            koid += 1
            vmos.append({"koid": koid, "name": f"obj-{o}", "size_bytes": 0,
                         "committed_bytes": (1 + (koid * 37) % 101) * 4096, "share_count": 1})
        recs.append({"id": f"p/{p}", "type": "p", "koid": 100 + p, "parent": "j/1",
                     "name": f"p{p}", "vmos": vmos,
                     "vmo_refs": [{"vmo_koid": v["koid"], "via": ["MAPPING"]} for v in vmos]})
    return recs


def test_prune_tree_keeps_the_largest_objects_and_every_area():
    from zxmem.treemap import tree_from_records
    from zxmem.views.report_data import SMALLER_OBJECTS, prune_tree

    tree = tree_from_records(_records(30, 40))
    before = {n.id: n.area for _, n in tree.walk() if n.kind in ("process", "job")}
    objects = sorted((n.area for _, n in tree.walk() if n.kind == "vmo"), reverse=True)
    total = tree.area
    assert sum(1 for _ in tree.walk()) > 1200
    folded = prune_tree(tree, 400)
    nodes = [n for _, n in tree.walk()]
    assert len(nodes) <= 400 + 30  # at most one folded box per process on top
    assert tree.area == total
    assert {n.id: n.area for n in nodes if n.kind in ("process", "job")} == before
    kept = sorted((n.area for n in nodes if n.kind == "vmo"), reverse=True)
    assert folded == len(objects) - len(kept) > 0
    assert kept == objects[:len(kept)]  # the largest, wherever they are
    boxes = [n for n in nodes if n.name.startswith(SMALLER_OBJECTS)]
    assert sum(n.count for n in boxes) == folded
    for p in (n for n in nodes if n.kind == "process"):
        assert sum(c.area for c in p.children) == p.area
    # A small tree is left alone.
    small = tree_from_records(_records(2, 3))
    assert prune_tree(small, 400) == 0


def test_a_store_without_objects_samples_uses_totals_moments(tmp_path):
    import json
    import re

    path = str(tmp_path / "h.db")
    synth_store(path, samples=20, processes=5, objects_every=0)
    conn = open_store(path, create=False, readonly=True)
    try:
        page = build_page(conn, path, moments=2, growth_rows=[])
    finally:
        conn.close()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page).group(1))
    assert [(m["sample"], m["tier"]) for m in data["moments"]] == [(1, "totals"), (20, "totals")]
    assert set(data["diffs"]["0-1"]) == {"job", "process"}
    tree = json.loads(re.search(r'id="tree-1">(.*?)</script>', page).group(1))
    assert "Private" in tree["strings"]  # processes drawn from their totals


def test_the_growth_table_is_zxmem_growths(synth):
    import json
    import re

    path, _shape = synth  # proc-0 and proc-1 grow by 1 MiB every 10 s: 360 MiB/h
    conn = open_store(path, create=False, readonly=True)
    try:
        page = build_page(conn, path, moments=1)
    finally:
        conn.close()
    data = json.loads(re.search(r'id="report-data">(.*?)</script>', page).group(1))
    rows = data["growth"]
    # Processes first, leaks first, fastest first: the two leakers lead (a
    # random walk of 30% of the others may also be judged a slow leak).
    leaks = rows[:2]
    assert [r["identity"]["pid"] for r in leaks] == [1000, 1001]
    assert all(r["leak"] and r["kind"] == "process" for r in leaks)
    for r in leaks:
        assert abs(r["rate_bytes_per_hour"] - 360 * MIB) <= 36 * MIB
        # Its objects that grew: only 4 objects samples here, fewer than growth
        # judges (growth's own tests cover grown objects).
        assert {o["name"] for o in r["objects"]} <= {"[heap]"}
    # The sawtooth (proc-2) is not a leak.
    assert not any(r["leak"] for r in rows if r["identity"].get("pid") == 1002)
    assert {r["kind"] for r in rows} <= {"process", "job"}
    assert not any("growth" in n for n in data["notes"])
