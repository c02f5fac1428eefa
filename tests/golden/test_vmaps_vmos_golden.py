"""Golden vmaps and vmos outputs.

* The seed's samples, reproduced from snapshots built to give them (the
  expected files hold exactly the lines the seed shows).
* A recorded process (``tests/fixtures/objects/workload``, made by
  ``tests/fixtures/objects/record.py --workload``), read through
  ``--proc-root``; its expected outputs were checked by hand against the
  recording: the memfd held only by a descriptor, the memfd mapped twice
  (``#map 2``), the ``data:private.bin`` clone with three written pages
  (``12k``), the thread stack region with its guard page.

Set ZXMEM_REGEN_GOLDEN=1 to rewrite the recorded-process files (then check
them by hand again); the seed files are never rewritten.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from zxmem.model import Job, Mapping, Process, Provenance, Region, Snapshot, Vmo, VmoRef
from zxmem.views import vmaps, vmos

HERE = Path(__file__).parent
EXPECTED = HERE / "expected"
FIXTURE = HERE.parent / "fixtures" / "objects" / "workload" / "proc"
K = 1024


def _expected(name: str) -> str:
    return (EXPECTED / name).read_text()


def _m(start, end, perms, koid, rss):
    return Mapping(start, end, perms + "p", 0, 0, 0, "", koid, rss_bytes=rss)


def seed_vmaps_snapshot() -> tuple[Process, Snapshot]:
    maps = (
        _m(0x187BC867000, 0x187BC87D000, "r-x", 2535, 0),
        _m(0x187BC87E000, 0x187BC87F000, "r--", 2537, 4 * K),
        _m(0x187BC87F000, 0x187BC881000, "rw-", 2537, 8 * K),
        _m(0x246812B91000, 0x246812D91000, "rw-", 2542, 76 * K),
        _m(0x358923D93000, 0x358923DD3000, "rw-", 2538, 16 * K),
        _m(0x400CBBA84000, 0x400CBBAC4000, "rw-", 2513, 4 * K),
        _m(0x47E1AB874000, 0x47E1AB87A000, "r--", 1031, 24 * K),
        _m(0x47E1AB87A000, 0x47E1AB87B000, "r-x", 1031, 4 * K),
        _m(0x59F5C7068000, 0x59F5C7088000, "r-x", 2476, 0),
        _m(0x59F5C7089000, 0x59F5C708B000, "r--", 2517, 8 * K),
        _m(0x59F5C708B000, 0x59F5C708D000, "rw-", 2517, 8 * K),
    )
    regions = (
        Region(0x187BC867000, 0x187BC881000, "useralloc", "elf", (0, 1, 2)),
        Region(0x358923D92000, 0x358923DD3000, "useralloc", "stack", (4,)),
        Region(0x47E1AB874000, 0x47E1AB87B000, "useralloc", "elf", (6, 7)),
        Region(0x59F5C7068000, 0x59F5C708D000, "useralloc", "elf", (8, 9, 10)),
    )
    names = {2535: "libfdio.so", 2537: "libfdio.so", 2542: "mmap-anonymous", 2538: "",
             2513: "initial-stack", 1031: "vdso/full", 2476: "/boot/bin/sh",
             2517: "/boot/bin/sh"}
    table = {k: Vmo(k, n, "anon", None, None) for k, n in names.items()}
    proc = Process(2470, "sh", 1, mappings=maps, regions=regions)
    snap = Snapshot(Provenance("test"), (Job(1, "root", 0),), (proc,), vmos=table)
    return proc, snap


def test_seed_vmaps():
    proc, snap = seed_vmaps_snapshot()
    opts = vmaps.VmapsOptions(aspace=(0x01000000, 0x00007FFFFFFFF000))
    assert vmaps.render(proc, snap, opts) == _expected("vmaps-seed.txt")


def seed_vmos_snapshot() -> tuple[Process, Snapshot]:
    all_rights = ("READ", "WRITE", "EXECUTE", "MAP", "DUPLICATE", "TRANSFER")
    rx = ("READ", "EXECUTE", "MAP", "DUPLICATE", "TRANSFER")
    objs = [
        Vmo(1170, "stack: msg of 0x5a", "anon", 4 * K, 4 * K, 0, 0, 1, 1),
        Vmo(1031, "vdso/full", "file", 28 * K, 28 * K, 0, 2, 28, 14),
        Vmo(1298, "jemalloc-heap", "anon", 2 * K * K, 68 * K, 0, 0, 1, 1),
        Vmo(1381, "self-dump-thread:0x12afe79c8b38", "anon", 516 * K, 8 * K, 0, 0, 3, 1),
        Vmo(1233, "libbacktrace.so", "clone", 34406, 4 * K, 1232, 1, 1, 1),
        Vmo(1237, "data:libbacktrace.so", "clone", 4 * K, 4 * K, 1233, 0, 1, 1),
        Vmo(1153, "ld.so.1", "clone", 904397, 12 * K, 1146, 1, 1, 1),
        Vmo(1158, "data:ld.so.1", "clone", 16 * K, 12 * K, 1153, 0, 1, 1),
        Vmo(1159, "bss:ld.so.1", "anon", 12 * K, 12 * K, 0, 0, 1, 1),
    ]
    refs = (
        VmoRef(1170, ("HANDLE",), all_rights),
        VmoRef(1031, ("HANDLE",), rx),
    ) + tuple(VmoRef(o.koid, ("MAPPING",)) for o in objs[2:])
    proc = Process(1118, "app", 1, vmo_refs=refs)
    snap = Snapshot(Provenance("test"), (Job(1, "root", 0),), (proc,),
                    vmos={o.koid: o for o in objs})
    return proc, snap


def test_seed_vmos():
    proc, snap = seed_vmos_snapshot()
    assert vmos.render(proc, snap) == _expected("vmos-seed.txt")


def _fixture_pid() -> str:
    if not FIXTURE.is_dir():
        pytest.skip("recorded fixture missing")
    (pid,) = [p for p in os.listdir(FIXTURE) if p.isdigit()]
    return pid


def _golden(name: str, text: str) -> None:
    path = EXPECTED / name
    if os.environ.get("ZXMEM_REGEN_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


@pytest.mark.parametrize("args,name", [
    ([], "vmaps-workload.txt"),
    (["--extra"], "vmaps-workload-extra.txt"),
])
def test_recorded_vmaps(cli, args, name):
    pid = _fixture_pid()
    r = cli(["vmaps", "--proc-root", str(FIXTURE), *args, pid])
    assert r.status == 0, r.stderr
    _golden(name, r.stdout)


def test_recorded_vmos(cli):
    pid = _fixture_pid()
    r = cli(["vmos", "--proc-root", str(FIXTURE), pid])
    assert r.status == 0, r.stderr
    _golden("vmos-workload.txt", r.stdout)


def test_recorded_workload_facts(cli):
    """What the recorded goldens must show, checked without them."""
    pid = _fixture_pid()
    out = cli(["vmos", "--proc-root", str(FIXTURE), pid]).stdout.splitlines()
    held = [x for x in out if x.endswith(" memfd:held")]
    assert len(held) == 1 and held[0].startswith("rw----")
    assert held[0].split()[3:6] == ["0", "0", "0"]
    twice = [x.split() for x in out if x.endswith(" memfd:twice") and x.startswith("     -")]
    assert len(twice) == 2 and {tuple(t[3:6]) for t in twice} == {("0", "2", "1")}
    clone = [x.split() for x in out if x.endswith(" data:private.bin")]
    assert len(clone) == 1 and clone[0][6:8] == ["64k", "12k"]
    maps = cli(["vmaps", "--proc-root", str(FIXTURE), pid]).stdout.splitlines()
    assert any(line.startswith("R ") and line.endswith("'stack'") for line in maps)
    assert any(line.startswith("R ") and line.endswith("'libc.so.6'") for line in maps)
