"""Snapshots and checks shared by the memgraph, importer and loader tests."""

from __future__ import annotations

from types import MappingProxyType

from zxmem.model import (
    Job,
    KernelStats,
    Mapping,
    MemoryCounts,
    Process,
    Provenance,
    Region,
    Snapshot,
    Thread,
    Vmo,
    VmoRef,
    inode_koid,
)

HOSTILE = 'a"b\\c\x01\x1b[2J\nnew\u202e\u00e9\u4e2d'


def sample_snapshot(name: str = "sample") -> Snapshot:
    """A snapshot that uses every part of the model, with hostile names.

    Jobs and processes are in the canonical order (jobs by depth then koid,
    processes by koid), as the live collector makes them.
    """
    file_koid = inode_koid(0x803, 1234)
    memfd_koid = inode_koid(0x5, 77)
    vmos = {
        1: Vmo(1, "[heap]", "anon", 135168, 8192, share_count=1, num_mappings=1),
        2: Vmo(2, "data:libc.so.6", "clone", 16384, 8192, parent_koid=file_koid,
               num_mappings=1, share_count=1),
        file_koid: Vmo(file_koid, "libc.so.6", "file", 2125328, 1970176, num_children=1,
                       num_mappings=5, share_count=2, dev=0x803, inode=1234,
                       path="/usr/lib/libc.so.6"),
        memfd_koid: Vmo(memfd_koid, HOSTILE, "memfd", 1 << 20, None, num_mappings=0,
                        share_count=0, dev=5, inode=77, path="/memfd:x (deleted)",
                        swap_bytes=4096),
        3: Vmo(3, "orphan", "shmem", None, 4096),
    }
    maps = (
        Mapping(0x400000, 0x421000, "rw-p", 0, 0, 0, "[heap]", 1, rss_bytes=8192,
                pss_bytes=8192, private_bytes=8192, shared_bytes=0, anonymous_bytes=8192,
                vm_flags="rd wr mr mw me ac"),
        Mapping(0x7F0000000000, 0x7F0000004000, "rw-p", 0x1000, 0x803, 1234,
                "/usr/lib/libc.so.6", 2, rss_bytes=None),
    )
    p1 = Process(
        koid=100, name=HOSTILE, job_koid=20, ppid=1, uid=0,
        cmdline=("/bin/prog", "--name=" + HOSTILE), state="S",
        memory=MemoryCounts(1000 * 4096, 900 * 4096, 200 * 4096, rss_bytes=1100 * 4096,
                            swap_bytes=0, swap_pss_bytes=0, pss_anon_bytes=5,
                            pss_file_bytes=None, pss_shmem_bytes=0, hugetlb_bytes=0),
        threads=(Thread(100, "prog", "running"), Thread(101, HOSTILE, "blocked"),
                 Thread(102, "x", "???")),
        num_threads=3, vm_pte_bytes=8192,
        mappings=maps,
        regions=(Region(0x7F0000000000, 0x7F0000004000, "libc.so.6", "elf", (1,)),),
        vmo_refs=(VmoRef(1, ("MAPPING",)), VmoRef(2, ("MAPPING",)),
                  VmoRef(memfd_koid, ("HANDLE",), ("READ", "WRITE"), fd=5),
                  VmoRef(memfd_koid, ("HANDLE",), ("READ",), fd=6)),
        handle_stats=MappingProxyType({"file": 3, "memfd": 2, "socket": 1}),
    )
    p2 = Process(koid=7, name="denied", job_koid=10, cmdline=None, memory=None,
                 vmo_refs=(), handle_stats=MappingProxyType({}), mappings=())
    p3 = Process(koid=300, name="kworker", job_koid=10, kernel_thread=True, cmdline=(),
                 memory=MemoryCounts(0, 0, 0))
    p4 = Process(koid=400, name="lost", job_koid=99, cmdline=("lost",),
                 memory=MemoryCounts(4096, 4096, 0),
                 vmo_refs=(VmoRef(file_koid, ("MAPPING",)),))
    jobs = (
        Job(10, "root", 0, path="/"),
        Job(50, "other-root", 0, path=""),
        Job(99, "dangling", 77, path="/gone/dangling"),
        Job(20, HOSTILE, 10, path="/" + HOSTILE, state="killoom", charged_bytes=12345),
        Job(30, "leaf", 20, path="/x/leaf"),
    )
    kernel = KernelStats(
        total_bytes=8 << 30, free_bytes=4 << 30, vmo_bytes=2 << 30,
        total_heap_bytes=100 << 20, free_heap_bytes=None, wired_bytes=300 << 20,
        mmu_overhead_bytes=20 << 20, ipc_bytes=1 << 20, other_bytes=None,
        meminfo=MappingProxyType({"MemTotal": 8 << 30, "Shmem": 4096}),
        extra=MappingProxyType({"slab_free_bytes": None, "lru_bytes": 12}),
    )
    prov = Provenance(
        source="linux", host=name, kernel="6.18.0", timestamp="2026-01-02T03:04:05.678Z",
        denied=(("smaps_rollup:7", "EACCES"), ("fd:7", "EACCES")),
        notes=("a note",), job_mode="cgroup1:memory",
    )
    return Snapshot(
        provenance=prov,
        jobs=jobs,
        processes=(p2, p1, p3, p4),
        kernel=kernel,
        vmos=MappingProxyType(vmos),
        hidden_vmo_koids=(memfd_koid, 3),
        vmo_holders=MappingProxyType({memfd_koid: (100,)}),
    )


def check_treemap_structure(records: list[dict]) -> None:
    """What Fuchsia's treemap.py asserts about memgraph records (spec §6.1)."""
    used = [r for r in records if r.get("type") in ("kernel", "j", "p")]
    ids = {r["id"] for r in records if "id" in r}
    roots = [r for r in used if r["parent"] == ""]
    assert [r["id"] for r in roots] == ["kernel/physmem"]
    root_jobs = [r for r in used if r["type"] == "j" and r["parent"].startswith("kernel/")]
    assert len(root_jobs) == 1
    for r in records:
        if "parent" in r and r["parent"]:
            assert r["parent"] in ids, f"{r['id']}: parent {r['parent']} missing"
    assert records[-1]["type"] == "__META"
    for r in used:
        if r["type"] != "p" or not r.get("vmo_refs"):
            continue
        assert len(r["vmos"]) == len(r["vmo_refs"])
        for vmo, ref in zip(r["vmos"], r["vmo_refs"], strict=True):
            assert vmo["koid"] == ref["vmo_koid"]
            if "MAPPING" in ref["via"]:
                assert vmo.get("share_count", 0) >= 1, (r["id"], vmo)


def schema_validator():
    """A draft-04 validator for zxmem's schema (skips without jsonschema)."""
    import pytest

    jsonschema = pytest.importorskip("jsonschema", reason="jsonschema is in the test extra")
    from zxmem.schema.memgraph import memgraph_schema

    schema = memgraph_schema()
    jsonschema.Draft4Validator.check_schema(schema)
    return jsonschema.Draft4Validator(schema)
