"""Fuchsia's own consumers accept what zxmem writes; what a capture lacks stays unknown.

* ``memgraph -vt --from CAPTURE`` (a re-exported memory-monitor capture)
  satisfies every fact treemap.py relies on (:mod:`treemap_inputs`), is
  valid against ``memgraph -S``, and treemap.py's areas for it are the
  capture's own attribution;
* a capture records neither a VMO's kind nor its mapping count nor how a
  process reaches a VMO: ``vmos --from CAPTURE`` prints ``-`` for ``#map``,
  memgraph writes no ``num_mappings`` and ``linux.kind`` ``null``, and all
  of it reads back unknown;
* device memory (``phys``) is written with ``committed_bytes`` 0, as
  Fuchsia writes it, and reads back as the model's "no RAM";
* a VMO whose committed bytes are unknown is not listed where treemap.py
  would need its size, but in ``linux.unsized_vmos``, and reads back in
  place.

The live side (``memgraph -vt`` and ``-vt --exact`` on this machine) is in
``tests/live/test_fuchsia_compat_live.py``.
"""

from __future__ import annotations

import io
import json
import os
from pathlib import Path
from types import MappingProxyType

import fixture_paths
import pytest
from memgraph_samples import sample_snapshot, schema_validator
from treemap_inputs import check_treemap_inputs, ref_kinds, treemap_area

from zxmem import memgraph
from zxmem.errors import InputError
from zxmem.model import Job, KernelStats, MemoryCounts, Process, Provenance, Snapshot, Vmo, VmoRef
from zxmem.sources import fuchsia
from zxmem.sources.load import load_snapshot
from zxmem.views import vmos as vmos_view

CAPTURE = str(fixture_paths.CAPTURE)
FUCHSIA_MEMGRAPH = str(Path(__file__).resolve().parent.parent / "fixtures" / "memgraph"
                       / "fuchsia_illustrative.json")
PID = 32269  # a process of the capture with VMOs


def _capture() -> str:
    if not os.path.exists(CAPTURE):
        pytest.skip(f"Fuchsia capture fixture missing: {CAPTURE}")
    return CAPTURE


def _raw_capture() -> dict:
    with open(_capture(), encoding="utf-8") as f:
        doc = json.load(f)
    return doc.get("Capture", doc)


def _reexport(cli, path: str) -> list[dict]:
    r = cli(["memgraph", "-vt", "--from", path])
    assert r.status == 0, r.stderr
    return json.loads(r.stdout)


# --------------------------------------------------------------------------
# The re-exported capture


def test_reexported_capture_is_what_treemap_reads(cli):
    recs = _reexport(cli, _capture())
    schema_validator().validate(recs)
    raw = _raw_capture()
    n_vmos = check_treemap_inputs(recs)
    # Every VMO a process lists is there, once per process (the capture's
    # lists are sets of koids).
    lists = {row[0]: row[2] for row in raw["Processes"][1:]}
    procs = [r for r in recs if r["type"] == "p"]
    assert {r["koid"] for r in procs} == set(lists)
    assert n_vmos == sum(len(set(v)) for v in lists.values()) > 1000
    for r in procs:
        refs = r.get("vmo_refs", [])
        assert [x["vmo_koid"] for x in refs] == list(dict.fromkeys(lists[r["koid"]]))
        # The reference kind treemap.py charges as the capture does, and a
        # note that the real kind is unknown.
        assert all(x["via"] == ["MAPPING"] and x["linux"] == {"via": None} for x in refs)
        for v in r.get("vmos", []):
            assert "num_mappings" not in v, v  # not in a capture: unknown, not 0
            assert v["linux"] == {"kind": None}, v  # not in a capture: no invented "anon"


def test_capture_vmo_fields_are_the_captures(cli):
    raw = _raw_capture()
    header = raw["Vmos"][0]
    table = {row[0]: dict(zip(header, row, strict=True)) for row in raw["Vmos"][1:]}
    recs = _reexport(cli, _capture())
    me = next(r for r in recs if r.get("id") == f"p/{PID}")
    assert me["vmos"]
    for v in me["vmos"]:
        row = table[v["koid"]]
        assert v["name"] == raw["VmoNames"][row["name"]]
        assert (v["committed_bytes"], v["size_bytes"], v["parent_koid"]) == (
            row["committed_bytes"], row["allocated_bytes"], row["parent_koid"])
        # share_count: the processes whose VMO list (with ancestors) holds it.
        holders = 0
        for p in raw["Processes"][1:]:
            charged = set()
            for k in p[2]:
                while k in table and k not in charged:
                    charged.add(k)
                    k = table[k]["parent_koid"]
            holders += v["koid"] in charged
        assert v["share_count"] == holders >= 1


def _small_capture() -> dict:
    # Two processes map one 8 KiB VMO; "a" also holds a private 12 KiB one.
    return {
        "Kernel": {"total": 1 << 20, "free": 1 << 19, "wired": 0, "total_heap": 0,
                   "free_heap": 0, "vmo": 20480, "mmu": 0, "ipc": 0, "other": 0},
        "Processes": [["koid", "name", "vmos"], [10, "a", [1, 2]], [20, "b", [1]]],
        "VmoNames": ["shared", "solo"],
        "Vmos": [["koid", "name", "parent_koid", "committed_bytes", "allocated_bytes"],
                 [1, 0, 0, 8192, 8192], [2, 1, 0, 12288, 16384]],
    }


def test_treemap_areas_of_a_capture_are_its_attribution():
    snap = fuchsia.snapshot_from_capture(_small_capture())
    recs = json.loads(memgraph.dumps(snap))
    check_treemap_inputs(recs)
    areas = {}
    for r in recs:
        if r["type"] == "p":
            kinds = ref_kinds(r)
            areas[r["koid"]] = (sum(treemap_area(v, kinds[v["koid"]]) for v in r["vmos"]),
                                r["pss_bytes"])
    # a: 12288 private + 8192 / 2; b: 8192 / 2 — treemap.py's boxes are the
    # capture's PSS (a HANDLE reference would have split 8192 three ways).
    assert areas == {10: (16384, 16384), 20: (4096, 4096)}


def _koid(p: Process) -> int:
    return p.koid


def test_capture_round_trip_keeps_the_unknowns():
    snap = load_snapshot(_capture())
    text = memgraph.dumps(snap)
    back = load_snapshot(io.StringIO(text))
    assert back.vmos == snap.vmos
    # (read back in koid order; the capture keeps its file's order)
    assert sorted(back.processes, key=_koid) == sorted(snap.processes, key=_koid)
    assert {(v.kind, v.num_mappings) for v in back.vmos.values()} == {(None, None)}
    assert {r.via for p in back.processes for r in p.vmo_refs or ()} == {()}
    assert memgraph.dumps(back) == text


def test_vmos_from_capture_shows_map_count_unknown(cli, tmp_path):
    path = _capture()
    snap = load_snapshot(path)
    r = cli(["vmos", "--from", path, str(PID)])
    assert r.status == 0, r.stderr
    rows = r.stdout.splitlines()[1:-1]
    assert len(rows) == len(snap.process(PID).vmo_refs) > 0
    for row in rows:
        cols = row.split()
        vmo = snap.vmos[int(cols[1])]
        # rights koid parent #chld #map #shr size alloc name
        assert cols[4] == "-", row
        assert (int(cols[3]), int(cols[5])) == (vmo.num_children, vmo.share_count), row
    saved = tmp_path / "capture-memgraph.json"
    saved.write_text(cli(["memgraph", "-vt", "--from", path]).stdout)
    assert cli(["vmos", "--from", str(saved), str(PID)]).stdout == r.stdout
    doc = json.loads(cli(["vmos", "--json", "--from", path, str(PID)]).stdout)
    assert {(v["num_mappings"], v["kind"]) for v in doc["vmos"]} == {(None, None)}


# --------------------------------------------------------------------------
# Fuchsia's memgraph, device memory, the schema


def test_fuchsia_memgraph_vmo_kind_is_not_invented():
    snap = load_snapshot(FUCHSIA_MEMGRAPH)
    vmo = snap.vmos[1170]
    assert vmo.kind is None and vmo.num_mappings == 1  # the file gives #map, not a kind
    recs = json.loads(memgraph.dumps(snap))
    schema_validator().validate(recs)
    check_treemap_inputs(recs)
    entries = [v for r in recs if r["type"] == "p" for v in r.get("vmos", [])]
    assert entries and all(v["linux"]["kind"] is None and v["num_mappings"] == 1
                           for v in entries)
    assert load_snapshot(io.StringIO(memgraph.dumps(snap))) == snap


def _phys_snapshot() -> Snapshot:
    vvar = Vmo(9, "[vvar]", "phys", 16384, None, num_mappings=2, share_count=2)
    heap = Vmo(5, "[heap]", "anon", 8192, 8192, num_mappings=1, share_count=1)
    procs = tuple(
        Process(koid=pid, name=f"p{pid}", job_koid=1, cmdline=(f"p{pid}",),
                memory=MemoryCounts(8192, 8192, 0),
                vmo_refs=(VmoRef(9, ("MAPPING",)),) + ((VmoRef(5, ("MAPPING",)),)
                                                       if pid == 100 else ()))
        for pid in (100, 200)
    )
    return Snapshot(Provenance(source="linux"), (Job(1, "root", 0, path="/"),), procs,
                    kernel=KernelStats(1 << 30, 1 << 29, 1 << 20),
                    vmos=MappingProxyType({9: vvar, 5: heap}))


def test_device_memory_is_written_committing_nothing(cli, tmp_path):
    snap = _phys_snapshot()
    text = memgraph.dumps(snap)
    recs = json.loads(text)
    assert recs == list(memgraph.records(snap))  # both writers agree
    schema_validator().validate(recs)
    check_treemap_inputs(recs)
    vvars = [v for r in recs if r["type"] == "p" for v in r["vmos"] if v["koid"] == 9]
    assert len(vvars) == 2
    assert all(v["committed_bytes"] == 0 and v["linux"]["kind"] == "phys" for v in vvars)
    back = load_snapshot(io.StringIO(text))
    assert back == snap and back.vmos[9].committed_bytes is None
    path = tmp_path / "phys.json"
    path.write_text(text)
    out = cli(["vmos", "--from", str(path), "100"]).stdout
    assert out == vmos_view.render(snap.process(100), snap)
    assert out.splitlines()[1].split()[-2:] == ["phys", "[vvar]"]


def test_schema_says_what_is_written():
    validate = schema_validator().is_valid
    snap = fuchsia.snapshot_from_capture(_small_capture())
    recs = json.loads(memgraph.dumps(snap))
    assert validate(recs)
    p = next(r for r in recs if r["type"] == "p")
    # treemap.py asserts a known kind: an empty via is not what zxmem writes.
    p["vmo_refs"][0]["via"] = []
    assert not validate(recs)
    p["vmo_refs"][0]["via"] = ["MAPPING"]
    p["vmos"][0]["linux"]["kind"] = "guess"
    assert not validate(recs)
    p["vmos"][0]["linux"]["kind"] = None
    p["vmos"][0]["num_mappings"] = None  # unknown is left out, not null
    assert not validate(recs)


def test_a_kind_pattern_does_not_match_an_unknown_kind(cli):
    import re

    from zxmem.digest import BucketSpec

    spec = BucketSpec(0, "anon", kind=re.compile("memfd|anon"))
    assert spec.matches_vmo("x", "anon") and not spec.matches_vmo("x", "file")
    assert not spec.matches_vmo("x", None)  # a Fuchsia VMO: kind unknown
    assert BucketSpec(1, "any").matches_vmo("x", None)
    # Linux buckets (kind patterns) on a capture: nothing is charged by a guessed kind.
    buckets = str(Path(__file__).resolve().parents[2] / "zxmem" / "data" / "linux-buckets.json")
    r = cli(["digest", "--from", _capture(), "--buckets", buckets])
    assert r.status == 0, r.stderr


# --------------------------------------------------------------------------
# VMOs of unknown size


def _unsized_snapshot() -> Snapshot:
    # p100: a heap (known), a file whose page cache is unknown, and a VMO
    # the snapshot does not describe; p200 reaches only the unknown file.
    heap = Vmo(5, "[heap]", "anon", 8192, 8192, num_mappings=1, share_count=1)
    lib = Vmo(7, "libx.so", "file", 65536, None, num_mappings=2, share_count=2,
              dev=0x803, inode=7, path="/usr/lib/libx.so")
    p100 = Process(koid=100, name="a", job_koid=1, cmdline=("a",),
                   memory=MemoryCounts(12288, 8192, 8192),
                   vmo_refs=(VmoRef(7, ("MAPPING",)), VmoRef(5, ("MAPPING",)),
                             VmoRef(99, ("HANDLE",), ("READ",), fd=4)))
    p200 = Process(koid=200, name="b", job_koid=1, cmdline=("b",),
                   memory=MemoryCounts(4096, 0, 8192), vmo_refs=(VmoRef(7, ("MAPPING",)),))
    return Snapshot(Provenance(source="linux"), (Job(1, "root", 0, path="/"),), (p100, p200),
                    kernel=KernelStats(1 << 30, 1 << 29, 1 << 20),
                    vmos=MappingProxyType({5: heap, 7: lib}))


def test_vmos_of_unknown_size_are_listed_beside_the_list():
    snap = _unsized_snapshot()
    text = memgraph.dumps(snap)
    recs = json.loads(text)
    assert recs == list(memgraph.records(snap))  # both writers agree
    schema_validator().validate(recs)
    assert check_treemap_inputs(recs) == 1  # only the heap has a size to draw
    a, b = (next(r for r in recs if r.get("id") == f"p/{k}") for k in (100, 200))
    assert [v["koid"] for v in a["vmos"]] == [r["vmo_koid"] for r in a["vmo_refs"]] == [5]
    assert [(u[0], u[1]["koid"], u[2]["vmo_koid"]) for u in a["linux"]["unsized_vmos"]] == [
        (0, 7, 7), (2, 99, 99)]
    assert "committed_bytes" not in a["linux"]["unsized_vmos"][0][1]  # unknown, not 0
    # Nothing of b's can be drawn: treemap.py takes its PSS and PRIVATE.
    assert "vmo_refs" not in b and (b["pss_bytes"], b["private_bytes"]) == (4096, 0)
    assert [u[0] for u in b["linux"]["unsized_vmos"]] == [0]
    # Read back in place, and written again the same.
    back = load_snapshot(io.StringIO(text))
    assert back == snap
    assert memgraph.dumps(back) == text


def test_sample_snapshot_is_what_treemap_reads():
    recs = json.loads(memgraph.dumps(sample_snapshot()))
    assert check_treemap_inputs(recs) > 0


@pytest.mark.parametrize("bad", [[[3, {"koid": 7}, {"vmo_koid": 7, "via": ["MAPPING"]}]],
                                 [[0, {"koid": 7}]], [["0", {}, {}]], {"0": 1}])
def test_bad_unsized_vmos_name_the_record(bad):
    recs = json.loads(memgraph.dumps(_unsized_snapshot()))
    a = next(r for r in recs if r.get("id") == "p/100")
    a["linux"]["unsized_vmos"] = bad
    with pytest.raises(InputError) as e:
        load_snapshot(io.StringIO(json.dumps(recs)))
    message = str(e.value)
    assert "(p/100)" in message and "unsized_vmos" in message and "\n" not in message
