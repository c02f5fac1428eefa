"""cgroup memory files: parsers, the directory reader, the JSON object, --explain."""

from __future__ import annotations

import json
import os

import pytest

from zxmem import charge
from zxmem.model import CgroupMemory, Job, MemoryCounts, Process, Provenance, Snapshot
from zxmem.sources import cgmem
from zxmem.tasktree import TaskTree
from zxmem.views.charge import render_explain

# Format of Documentation/admin-guide/cgroup-v2.rst and a 6.18 kernel.
V2_STAT = b"""anon 67108864
file 33619968
kernel 2097152
kernel_stack 1048576
pagetables 262144
sock 8192
shmem 0
file_mapped 65536
file_dirty 0
slab_reclaimable 100000
slab_unreclaimable 200000
pgfault 1234
"""
V2_EVENTS = b"low 0\nhigh 3\nmax 7\noom 1\noom_kill 1\noom_group_kill 0\n"
PRESSURE = (b"some avg10=0.00 avg60=0.88 avg300=0.50 total=4517663\n"
            b"full avg10=0.10 avg60=0.64 avg300=0.37 total=2421745\n")


def test_parse_keyed_and_errors():
    stat = cgmem.parse_keyed(V2_STAT, "memory.stat")
    assert stat["anon"] == 64 << 20 and stat["sock"] == 8192 and stat["pgfault"] == 1234
    with pytest.raises(cgmem.CgroupParseError, match=r"memory.stat: line 2"):
        cgmem.parse_keyed(b"anon 1\nfile x\n", "memory.stat")
    with pytest.raises(cgmem.CgroupParseError, match="KEY VALUE"):
        cgmem.parse_keyed(b"anon\n", "memory.stat")


def test_parse_pressure():
    p = cgmem.parse_pressure(PRESSURE, "memory.pressure")
    assert p["some"] == {"avg10": 0.0, "avg60": 0.88, "avg300": 0.5, "total_us": 4517663}
    assert p["full"]["total_us"] == 2421745
    only_some = cgmem.parse_pressure(PRESSURE.split(b"\n")[0], "x")
    assert "full" not in only_some
    for bad in (b"", b"most avg10=1", b"some avg10=x avg60=0 avg300=0 total=1",
                b"some avg10=0 avg60=0 avg300=0"):
        with pytest.raises(cgmem.CgroupParseError):
            cgmem.parse_pressure(bad, "memory.pressure")


def test_parse_limit():
    assert cgmem.parse_limit(b"max\n", "memory.max") == "max"
    assert cgmem.parse_limit(b"67108864\n", "memory.max") == 64 << 20
    # v1's PAGE_COUNTER_MAX in bytes means no limit.
    assert cgmem.parse_limit(b"9223372036854771712\n", "memory.limit_in_bytes") == "max"
    with pytest.raises(cgmem.CgroupParseError):
        cgmem.parse_limit(b"lots\n", "memory.max")


def _write(d, files: dict[str, bytes]) -> None:
    os.makedirs(d, exist_ok=True)
    for name, data in files.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


def test_read_v2_directory(tmp_path):
    _write(tmp_path, {"memory.current": b"103000000\n", "memory.stat": V2_STAT,
                      "memory.max": b"max\n", "memory.high": b"80000000\n",
                      "memory.low": b"0\n", "memory.min": b"0\n",
                      "memory.events": V2_EVENTS, "memory.pressure": PRESSURE})
    cg = cgmem.read_cgroup_memory(str(tmp_path), "v2")
    assert cg.charged_bytes == 103000000
    assert cg.kernel_bytes == 2097152
    assert cg.limit_bytes == "max" and cg.high_bytes == 80000000 and cg.low_bytes == 0
    assert cg.events["oom_kill"] == 1 and cg.events["max"] == 7
    assert cg.pressure["full"]["avg60"] == 0.64
    # memory.swap.current is not there (no swap controller): unknown, said why.
    assert cg.swap_bytes is None
    assert cg.missing == (("memory.swap.current", "ENOENT"),)
    doc = cgmem.cgroup_to_json(cg)
    assert json.loads(json.dumps(doc)) == doc
    assert cgmem.cgroup_from_json(doc) == cg


def test_read_v2_older_kernel_sums_kernel_parts(tmp_path):
    stat = b"anon 4096\nfile 0\nkernel_stack 16384\npagetables 8192\n" \
           b"slab_reclaimable 100\nslab_unreclaimable 200\npercpu 0\n"
    _write(tmp_path, {"memory.current": b"40000\n", "memory.stat": stat})
    cg = cgmem.read_cgroup_memory(str(tmp_path), "v2")
    assert cg.kernel_bytes == 16384 + 8192 + 300


def test_read_v1_directory(tmp_path):
    _write(tmp_path, {
        "memory.usage_in_bytes": b"110000000\n",
        "memory.stat": b"cache 4096\nrss 8192\ntotal_cache 33554432\ntotal_rss 67108864\n"
                       b"total_mapped_file 0\nhierarchical_memory_limit 9223372036854771712\n",
        "memory.limit_in_bytes": b"67108864\n",
        "memory.soft_limit_in_bytes": b"9223372036854771712\n",
        "memory.kmem.usage_in_bytes": b"3000000\n",
        "memory.failcnt": b"12\n",
        "memory.oom_control": b"oom_kill_disable 0\nunder_oom 0\noom_kill 2\n",
    })
    cg = cgmem.read_cgroup_memory(str(tmp_path), "v1")
    assert cg.version == "v1"
    assert cg.charged_bytes == 110000000 and cg.kernel_bytes == 3000000
    assert cg.limit_bytes == 64 << 20 and cg.soft_limit_bytes == "max"
    assert dict(cg.events) == {"oom_kill": 2, "failcnt": 12}
    assert cg.stat["total_cache"] == 32 << 20
    assert cg.pressure is None and cg.high_bytes is None  # v1 has neither: unknown
    assert cg.missing == ()


def test_bad_days(tmp_path):
    # A cgroup removed during the scan: nothing is known, no error.
    assert cgmem.read_cgroup_memory(str(tmp_path / "gone"), "v2") is None
    # A v2 cgroup whose memory controller is not enabled: only PSI files.
    _write(tmp_path / "nomem", {"memory.pressure": PRESSURE})
    cg = cgmem.read_cgroup_memory(str(tmp_path / "nomem"), "v2")
    assert cg.charged_bytes is None and cg.stat is None and cg.events is None
    assert cg.pressure is not None
    assert ("memory.current", "ENOENT") in cg.missing
    # Unreadable (a directory where the file should be) and malformed files.
    _write(tmp_path / "bad", {"memory.current": b"lots\n", "memory.stat": b"anon\n"})
    os.mkdir(tmp_path / "bad" / "memory.events")
    cg = cgmem.read_cgroup_memory(str(tmp_path / "bad"), "v2")
    assert cg.charged_bytes is None and cg.stat is None and cg.events is None
    why = dict(cg.missing)
    assert why["memory.current"].startswith("malformed: memory.current")
    assert why["memory.events"] == "EISDIR"


def _snapshot(cg: CgroupMemory | None, pss=(90 << 20,), file_pss=18 << 20) -> Snapshot:
    jobs = (Job(1, "root", 0, path="/"), Job(7, "app", 1, path="/app", cgroup=cg))
    procs = tuple(
        Process(100 + i, "w", 7, memory=MemoryCounts(pss_bytes=p, pss_file_bytes=file_pss,
                                                       pss_shmem_bytes=0))
        for i, p in enumerate(pss))
    return Snapshot(Provenance("linux"), jobs, procs)


def _v2() -> CgroupMemory:
    stat = cgmem.parse_keyed(V2_STAT, "memory.stat")
    return CgroupMemory("v2", charged_bytes=104000000, kernel_bytes=2097152, stat=stat)


def test_reconciliation_terms_sum_to_the_charge():
    rec = charge.reconcile(TaskTree(_snapshot(_v2())), 7)
    terms = {t.name: t.sign * t.value_bytes for t in rec.terms}
    assert terms["page cache, unmapped"] == 33619968 - 65536
    assert terms["kernel memory"] == 2097152
    assert terms["socket buffers"] == 8192
    assert terms["charged elsewhere"] == -((18 << 20) - 65536)  # the estimate
    assert rec.estimate
    assert sum(terms.values()) + rec.remainder_bytes == rec.charged_bytes
    text = render_explain(rec)
    assert "charged elsewhere (estimate)" in text
    total = 0
    for line in text.splitlines()[1:]:
        if line[:3] not in ("  +", "  -", "  ="):
            continue  # a term's source, under its name
        sign, value = line.split()[:2]
        if sign in "+-":
            total += int(value) if sign == "+" else -int(value)
        elif sign == "=":
            assert total == int(value)
    exact = charge.reconcile(TaskTree(_snapshot(_v2())), 7, elsewhere_exact_bytes=1 << 20)
    assert not exact.estimate and exact.terms[-1].value_bytes == 1 << 20


def test_reconciliation_unknowns_stay_unknown():
    rec = charge.reconcile(TaskTree(_snapshot(None)), 7)
    assert rec.charged_bytes is None and rec.remainder_bytes is None
    text = render_explain(rec)
    assert "could not be read" in text
    no_stat = CgroupMemory("v2", charged_bytes=5 << 20, missing=(("memory.stat", "EACCES"),))
    rec = charge.reconcile(TaskTree(_snapshot(no_stat)), 7)
    assert rec.remainder_bytes is None
    assert "(not read: memory.stat EACCES)" in render_explain(rec)


def test_system_memory_and_its_kstats_lines(tmp_path):
    from zxmem.views.kstats import render_pressure

    (tmp_path / "pressure").mkdir()
    (tmp_path / "pressure" / "memory").write_bytes(PRESSURE)
    (tmp_path / "vmstat").write_bytes(b"nr_free_pages 5\npgmajfault 5995\noom_kill 3\n")
    system = cgmem.read_system_memory(str(tmp_path))
    assert system["pressure"]["some"]["avg60"] == 0.88
    # pswpin/pswpout not printed (no swap support): absent, shown as '-'.
    assert system["vmstat"] == {"pgmajfault": 5995, "oom_kill": 3}
    header, values = render_pressure(system).splitlines()
    assert header.split() == ["some10", "some60", "some300", "full10", "full60", "full300",
                              "oomkill", "majflt", "swpin", "swpout"]
    assert values.split() == ["0.00", "0.88", "0.50", "0.10", "0.64", "0.37", "3", "5995",
                              "-", "-"]
    assert len(header) <= 80 and len(values) <= 80
    # A kernel without PSI (CONFIG_PSI=n or psi=0): unknown, with the reason.
    (tmp_path / "pressure" / "memory").unlink()
    system = cgmem.read_system_memory(str(tmp_path))
    assert system["pressure"] is None
    assert system["missing"] == [["/proc/pressure/memory", "ENOENT"]]
    assert render_pressure(system).splitlines()[1].split()[:6] == ["-"] * 6


def _job_rec(koid: int, parent: str, cgroup: dict | None) -> dict:
    rec = {"id": f"j/{koid}", "type": "j", "koid": koid, "parent": parent, "name": f"j{koid}"}
    if cgroup is not None:
        rec["linux"] = {"cgroup": cgroup}
    return rec


def test_treemap_draws_each_jobs_own_unmapped_cache():
    from zxmem.treemap import CACHE_NAME, tree_from_records, unmapped_cache_bytes

    v1 = {"version": "v1", "stat": {"total_cache": 100 << 20, "total_shmem": 10 << 20,
                                    "total_mapped_file": 20 << 20}}
    child = {"version": "v1", "stat": {"total_cache": 40 << 20, "total_shmem": 0,
                                       "total_mapped_file": 10 << 20}}
    assert unmapped_cache_bytes(v1) == 70 << 20
    assert unmapped_cache_bytes({"version": "v2", "stat": {"file": 5}}) is None  # unknown
    assert unmapped_cache_bytes(None) is None
    records = [
        {"id": "kernel/physmem", "type": "kernel", "name": "physmem", "parent": "",
         "size_bytes": 1 << 30},
        {"id": "kernel/vmo", "type": "kernel", "name": "vmo", "parent": "kernel/physmem",
         "size_bytes": 512 << 20},
        _job_rec(1, "kernel/vmo", v1),
        _job_rec(2, "j/1", child),
        _job_rec(3, "j/1", None),  # no cgroup data: no box, nothing subtracted
        {"id": "p/10", "type": "p", "koid": 10, "parent": "j/2", "name": "w",
         "private_bytes": 8 << 20, "pss_bytes": 8 << 20},
    ]
    tree = tree_from_records(records)
    j1, j2 = tree.find("j/1"), tree.find("j/2")
    assert tree.find("j/2/cache").area == 30 << 20 and tree.find("j/2/cache").name == CACHE_NAME
    assert tree.find("j/1/cache").area == (70 - 30) << 20  # less the sub-job's own
    assert tree.find("j/3/cache") is None
    assert j2.area == (30 + 8) << 20 and j1.area == (40 + 30 + 8) << 20
    # The boxes come out of "unknown", so the VMO node still adds up.
    assert tree.find("kernel/vmo/unknown").area == (512 - 78) << 20


def test_memgraph_carries_the_cgroup_object_and_reads_it_back(tmp_path):
    from dataclasses import replace

    from memgraph_samples import sample_snapshot, schema_validator

    from zxmem import memgraph
    from zxmem.sources.load import load_snapshot

    _write(tmp_path, {"memory.current": b"103000000\n", "memory.stat": V2_STAT,
                      "memory.max": b"67108864\n", "memory.events": V2_EVENTS,
                      "memory.pressure": PRESSURE})
    cg = cgmem.read_cgroup_memory(str(tmp_path), "v2")
    snap = sample_snapshot()
    job = snap.jobs[-1]
    snap = replace(snap, jobs=snap.jobs[:-1] + (replace(job, cgroup=cg,
                                                        charged_bytes=cg.charged_bytes),))
    text = memgraph.dumps(snap)
    rec = next(r for r in json.loads(text) if r.get("id") == f"j/{job.koid}")
    assert rec["linux"]["cgroup"]["events"]["oom_kill"] == 1
    assert rec["linux"]["cgroup"]["limit_bytes"] == 64 << 20
    schema_validator().validate(json.loads(text))
    path = tmp_path / "snap.json"
    path.write_text(text)
    back = load_snapshot(str(path))
    assert back.job(job.koid).cgroup == cg
    assert back == snap
