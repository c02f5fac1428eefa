"""Fuchsia's files: the real memory-monitor capture, and memgraphs with raw names."""

from __future__ import annotations

import dataclasses
import io
import json
import os
import re

import fixture_paths
import pytest
from memgraph_samples import check_treemap_structure, schema_validator

from zxmem import memgraph
from zxmem.errors import InputError
from zxmem.sources import fuchsia
from zxmem.sources.load import load_snapshot

CAPTURE = str(fixture_paths.CAPTURE)


@pytest.fixture(scope="module")
def capture_doc():
    if not os.path.exists(CAPTURE):
        pytest.skip(f"the Fuchsia capture fixture is not at {CAPTURE}")
    with open(CAPTURE, encoding="utf-8") as f:
        return json.load(f)


@pytest.fixture(scope="module")
def capture_snap():
    if not os.path.exists(CAPTURE):
        pytest.skip(f"the Fuchsia capture fixture is not at {CAPTURE}")
    return load_snapshot(CAPTURE)


# --------------------------------------------------------------------------
# The real capture


def test_capture_processes_vmos_and_kernel(capture_doc, capture_snap):
    procs = capture_doc["Processes"]
    vmos = capture_doc["Vmos"]
    assert procs[0] == ["koid", "name", "vmos"]  # a header row, not a process
    assert len(capture_snap.processes) == len(procs) - 1 == 90
    assert {p.koid for p in capture_snap.processes} == {row[0] for row in procs[1:]}
    assert len(capture_snap.vmos) == len({row[0] for row in vmos[1:]}) == 6253
    kern = capture_doc["Kernel"]
    k = capture_snap.kernel
    assert (k.total_bytes, k.free_bytes, k.wired_bytes) == (8588750848, 7670870016, 104148992)
    assert (k.total_heap_bytes, k.free_heap_bytes) == (kern["total_heap"], kern["free_heap"])
    assert (k.vmo_bytes, k.mmu_overhead_bytes, k.ipc_bytes, k.other_bytes) == (
        kern["vmo"], kern["mmu"], kern["ipc"], kern["other"])
    assert k.extra["vmo_pager_total_bytes"] == kern["vmo_pager_total"] == 71155712
    assert capture_snap.provenance.source == "fuchsia-capture"


def test_capture_names_and_vmo_fields(capture_doc, capture_snap):
    names = capture_doc["VmoNames"]
    row = capture_doc["Vmos"][1]  # [koid, name index, parent, committed, allocated]
    vmo = capture_snap.vmos[row[0]]
    assert vmo.name == names[row[1]]
    assert (vmo.parent_koid, vmo.committed_bytes, vmo.size_bytes) == (row[2], row[3], row[4])
    p = capture_snap.process(32269)
    assert p.name == "remote-diagnostics-bridge.cm"
    listed = next(r[2] for r in capture_doc["Processes"][1:] if r[0] == 32269)
    assert [r.vmo_koid for r in p.vmo_refs] == listed


def test_capture_one_root_job(capture_snap):
    assert len(capture_snap.jobs) == 1
    root = capture_snap.jobs[0]
    assert root.parent_koid == 0 and root.name == "root"
    assert {p.job_koid for p in capture_snap.processes} == {root.koid}


def test_capture_attribution_adds_up(capture_doc, capture_snap):
    # Every committed byte reachable from a process is charged exactly once
    # to PRIVATE or spread over its sharers (up to integer division).
    vm = {row[0]: row for row in capture_doc["Vmos"][1:]}
    reachable = set()
    for row in capture_doc["Processes"][1:]:
        for k in row[2]:
            while k in vm and k not in reachable:
                reachable.add(k)
                k = vm[k][2]
    total = sum(vm[k][3] for k in reachable)
    pss = sum(p.memory.pss_bytes for p in capture_snap.processes)
    assert total - 4096 * len(capture_snap.processes) <= pss <= total
    for p in capture_snap.processes:
        m = p.memory
        assert m.private_bytes <= m.pss_bytes <= m.private_bytes + m.shared_bytes


def test_ps_from_capture_lists_every_process(cli, capture_doc):
    r = cli(["ps", "--from", CAPTURE])
    assert r.status == 0, r.stderr
    shown = {int(m) for m in re.findall(r"^\s*p:(\d+) ", r.stdout, re.M)}
    assert shown == {row[0] for row in capture_doc["Processes"][1:]}
    assert "remote-diagnostics-bridge.cm" in r.stdout


def test_memgraph_from_capture_is_valid_and_round_trips(cli, capture_snap):
    r = cli(["memgraph", "-v", "--from", CAPTURE])
    assert r.status == 0, r.stderr
    recs = json.loads(r.stdout)
    check_treemap_structure(recs)
    schema_validator().validate(recs)
    # memgraph lists processes in walk order (by koid within a job), the
    # capture importer keeps the capture's own order: compare as sets.
    assert _koid_ordered(load_snapshot(io.StringIO(r.stdout))) == _koid_ordered(capture_snap)


def _koid_ordered(snap):
    return dataclasses.replace(
        snap, processes=tuple(sorted(snap.processes, key=lambda p: p.koid))
    )


def test_small_capture_attribution_by_hand():
    # Two processes; A holds a child VMO of a pool that B also holds.
    doc = {"Capture": {
        "Time": 5,
        "Kernel": {"total": 100, "free": 10, "wired": 1, "total_heap": 2, "free_heap": 1,
                   "vmo": 50, "mmu": 3, "ipc": 4, "other": 5},
        "Processes": [["koid", "name", "vmos"], [10, "a", [1, 3]], [20, "b", [2]],
                      [30, "empty", []]],
        "VmoNames": ["pool", "child", "solo"],
        "Vmos": [["koid", "name", "parent_koid", "committed_bytes", "allocated_bytes"],
                 [2, 0, 0, 8192, 16384], [1, 1, 2, 4096, 4096], [3, 2, 0, 12288, 12288]],
    }, "Buckets": [{"name": "x", "vmo": "pool"}]}
    snap = fuchsia.snapshot_from_capture(doc)
    a, b, empty = snap.process(10), snap.process(20), snap.process(30)
    # a: child 4096 (private), solo 12288 (private), pool 8192 shared by 2.
    assert (a.memory.private_bytes, a.memory.pss_bytes, a.memory.shared_bytes) == (
        16384, 16384 + 4096, 8192)
    assert (b.memory.private_bytes, b.memory.pss_bytes, b.memory.shared_bytes) == (
        0, 4096, 8192)
    assert (empty.memory.pss_bytes, empty.memory.private_bytes) == (0, 0)
    assert snap.vmos[2].share_count == 2 and snap.vmos[2].num_children == 1
    assert snap.vmos[1].parent_koid == 2 and snap.vmos[1].name == "child"
    # A capture records neither a VMO's kind nor its mappings: unknown.
    assert {(v.kind, v.num_mappings) for v in snap.vmos.values()} == {(None, None)}
    assert snap.kernel.ipc_bytes == 4
    assert any("bucket" in n for n in snap.provenance.notes)


def test_capture_without_header_rows():
    doc = {"Kernel": {"total": 1}, "Processes": [[10, "a", [1]]], "VmoNames": ["n"],
           "Vmos": [[1, 0, 0, 4096, 8192]]}
    snap = fuchsia.snapshot_from_capture(doc)
    assert snap.process(10).memory.private_bytes == 4096
    assert snap.kernel.free_bytes is None  # absent: unknown


@pytest.mark.parametrize(
    "change, where",
    [
        (lambda c: c["Processes"].append([1, "x"]), "Processes[2]"),
        (lambda c: c["Processes"].append(["1", "x", []]), "Processes[2]"),
        (lambda c: c["Vmos"].append([9, 99, 0, 1, 1]), "Vmos[2]"),
        (lambda c: c["Vmos"].append([9, 0, 0, "big", 1]), "Vmos[2]"),
        (lambda c: c["Vmos"].__setitem__(0, ["koid", "name"]), "Vmos[0]"),
        (lambda c: c.__setitem__("Kernel", {"total": "lots"}), "Kernel.total"),
        (lambda c: c.__setitem__("Processes", {}), "Processes"),
    ],
)
def test_malformed_capture_names_the_row(change, where):
    cap = {"Kernel": {"total": 1},
           "Processes": [["koid", "name", "vmos"], [10, "a", [1]]], "VmoNames": ["n"],
           "Vmos": [["koid", "name", "parent_koid", "committed_bytes", "allocated_bytes"],
                    [1, 0, 0, 4096, 8192]]}
    change(cap)
    with pytest.raises(InputError) as exc:
        load_snapshot(io.BytesIO(json.dumps(cap).encode()))
    assert where in str(exc.value)
    assert "\n" not in str(exc.value)


# --------------------------------------------------------------------------
# Fuchsia memgraph with unescaped names

RAW = (
    b'[\n'
    b'  {"id": "kernel/physmem", "type": "kernel", "parent": "", "name": "physmem", '
    b'"size_bytes": 100},\n'
    b'  {"id": "kernel/vmo", "type": "kernel", "parent": "kernel/physmem", "name": "vmo", '
    b'"size_bytes": 50},\n'
    b'  {"id": "j/1", "type": "j", "koid": 1, "parent": "kernel/vmo", "name": "ro"ot"},\n'
    b'  {"id": "p/2", "type": "p", "koid": 2, "parent": "j/1", "name": "C:\\bin\\x", '
    b'"private_bytes": 1, "shared_bytes": 2, "pss_bytes": 3,\n'
    b'   "vmos": [\n'
    b'      {"koid": 9, "name": "a", "b"}", "size_bytes": 4096, "parent_koid": 0, '
    b'"num_children": 0, "num_mappings": 1, "share_count": 1, "committed_bytes": 4096}\n'
    b'   ],\n'
    b'   "vmo_refs": [\n'
    b'      {"vmo_koid": 9, "via": ["MAPPING"]}\n'
    b'   ]},\n'
    b'  {"id": "t/3", "type": "t", "koid": 3, "parent": "p/2", "name": "t\x01\xff\x1b", '
    b'"state": "RUNNING"},\n'
    b'  {"id": "t/4", "type": "t", "koid": 4, "parent": "p/2", "name": "line\nbreak", '
    b'"state": "DEAD"},\n'
    b'  {"id": "t/5", "type": "t", "koid": 5, "parent": "p/2", "name": "x"}\n'
    b'  {"type": "__META", "timestamp": "2019-01-01T00:00:00.000Z"} \n'
    b']\n'
)


def test_unescaped_names_are_repaired_not_rejected():
    bad = RAW.replace(b'"name": "x"}\n', b'"name": "x"},\n')
    with pytest.raises(ValueError):
        json.loads(bad)  # Fuchsia's own output is not JSON
    snap = load_snapshot(io.BytesIO(bad))
    assert snap.jobs[0].name == 'ro"ot'
    p = snap.process(2)
    assert p.name == "C:\\bin\\x"  # backslashes are literal in Fuchsia's output
    assert snap.vmos[9].name == 'a", "b"}'
    names = {t.koid: t.name for t in p.threads}
    assert names[3] == "t\x01\\xff\x1b"  # invalid UTF-8 becomes \xNN text
    assert names[4] == "line\nbreak"
    assert {t.koid: t.state for t in p.threads} == {3: "running", 4: "dead", 5: "???"}
    assert any("repaired" in n for n in snap.provenance.notes)
    # zxmem's own output of it is valid JSON
    recs = json.loads(memgraph.dumps(snap))
    check_treemap_structure(recs)


def test_unrepairable_memgraph_names_the_offset():
    # A missing comma between records cannot be repaired: error with offset.
    with pytest.raises(InputError) as exc:
        load_snapshot(io.BytesIO(RAW))
    msg = str(exc.value)
    offset = RAW.index(b'  {"type": "__META"')
    m = re.search(r"byte (\d+)", msg)
    assert m, msg
    assert abs(int(m.group(1)) - offset) <= 4, msg


def test_repair_names_leaves_valid_names_alone():
    data = b'[{"id": "j/1", "type": "j", "koid": 1, "parent": "kernel/vmo", "name": "plain"}]'
    fixed, changed = fuchsia.repair_names(data)
    assert fixed == data and changed == 0
    fixed, changed = fuchsia.repair_names(b'{"name": "a"b", "size_bytes": 1}')
    assert json.loads(fixed) == {"name": 'a"b', "size_bytes": 1} and changed == 1
