"""The treemap tree (spec fuchsia-tools §6.1–6.2), its HTML page and command.

Expected areas are worked out by hand from the spec's rules on small inputs:
a mapped VMO counts committed // share_count, a VMO reached only through a
handle committed // (share_count + 1); a process is the sum of its VMOs; a
job the sum of its children; "unknown" is kernel/vmo minus the root job.
"""

from __future__ import annotations

import io
import json
import re
from pathlib import Path
from types import MappingProxyType

import fixture_paths
import pytest

from zxmem.errors import ZxmemError
from zxmem.model import (
    Job,
    KernelStats,
    Mapping,
    MemoryCounts,
    Process,
    Provenance,
    Snapshot,
    Vmo,
    VmoRef,
)
from zxmem.treemap import (
    KIND_AGGREGATE,
    KIND_ESTIMATE,
    KIND_HIDDEN,
    KIND_UNKNOWN,
    Node,
    tree_from_records,
    tree_from_snapshot,
)
from zxmem.views.treemap_html import json_for_script, render_html, tree_payload

_REPO = Path(__file__).resolve().parents[2]
# The real Fuchsia capture: a copy under tests/fixtures when there is one,
# else the project's shared folder beside the checkout.
_CAPTURES = [fixture_paths.CAPTURE]


def capture_path() -> str:
    for path in _CAPTURES:
        if path.is_file():
            return str(path)
    pytest.skip("the Fuchsia capture fixture test_snapshot.json is not available")
MIB = 1 << 20


def kernel(total=1024 * MIB, free=600 * MIB, vmo=300 * MIB, heap=40 * MIB, heap_free=10 * MIB,
           wired=20 * MIB, mmu=8 * MIB, other=6 * MIB) -> list[dict]:
    rows = [
        ("physmem", "", total), ("free", "kernel/physmem", free), ("vmo", "kernel/physmem", vmo),
        ("heap", "kernel/physmem", heap), ("heap/allocated", "kernel/heap", heap - heap_free),
        ("heap/free", "kernel/heap", heap_free), ("wired", "kernel/physmem", wired),
        ("mmu", "kernel/physmem", mmu), ("other", "kernel/physmem", other),
    ]
    return [{"id": f"kernel/{n}", "type": "kernel", "parent": p, "name": n, "size_bytes": v}
            for n, p, v in rows]


def vmo(koid, name, committed, share=1) -> dict:
    return {"koid": koid, "name": name, "size_bytes": committed, "parent_koid": 0,
            "num_children": 0, "num_mappings": share, "share_count": share,
            "committed_bytes": committed}


def process(koid, job, name, vmos=(), refs=(), private=0, shared=0, pss=0) -> dict:
    rec = {"id": f"p/{koid}", "type": "p", "koid": koid, "parent": f"j/{job}", "name": name,
           "private_bytes": private, "shared_bytes": shared, "pss_bytes": pss}
    if vmos:
        rec["vmos"] = list(vmos)
        rec["vmo_refs"] = list(refs)
    return rec


def mapped(koid) -> dict:
    return {"vmo_koid": koid, "via": ["MAPPING"]}


def handle(koid) -> dict:
    return {"vmo_koid": koid, "via": ["HANDLE"], "handle_rights": ["READ", "WRITE"]}


def small_memgraph() -> list[dict]:
    """Root job 1 with process 10 and sub-job 2 (process 20, process 21)."""
    p10 = process(
        10, 1, "bin/devmgr",
        vmos=[
            vmo(100, "stack: msg of 0x5a", 8192),       # handle + mapping, listed twice
            vmo(100, "stack: msg of 0x5a", 8192),
            vmo(101, "libc.so", 40960, share=4),        # mapped by 4: 10240
            vmo(102, "scudo:primary", 4096),            # three same-named: aggregated
            vmo(103, "scudo:primary", 8192),
            vmo(104, "scudo:primary", 12288),
            vmo(105, "", 4096),                         # unnamed: never aggregated
            vmo(106, "", 8192),
            vmo(107, "memfd:buffer", 12288, share=2),   # handle only: 12288 // 3
        ],
        refs=[handle(100), mapped(100), mapped(101), mapped(102), mapped(103), mapped(104),
              mapped(105), mapped(106), handle(107)],
        private=1, shared=2, pss=3,  # not used: the VMOs decide the area
    )
    p20 = process(20, 2, "bin/netstack", private=1 * MIB, shared=2 * MIB, pss=1 * MIB + 512 * 1024)
    p21 = process(21, 2, "bin/idle", private=0, shared=0, pss=0)
    return [
        *kernel(),
        ROOT_JOB,
        p10,
        {"id": "t/11", "type": "t", "koid": 11, "parent": "p/10", "name": "initial-thread",
         "state": "BLOCKED"},
        {"id": "j/2", "type": "j", "koid": 2, "parent": "j/1", "name": "sys"},
        p20,
        p21,
        {"type": "__META", "timestamp": "2017-06-07T05:51:08.021Z"},
    ]


ROOT_JOB = {"id": "j/1", "type": "j", "koid": 1, "parent": "kernel/vmo", "name": "root"}


def by_id(root: Node) -> dict[str, Node]:
    return {n.id: n for _, n in root.walk()}


# --- tree construction (§6.1) ---------------------------------------------


def test_kernel_nodes_keep_their_sizes_and_get_spec_names():
    root = tree_from_records(small_memgraph())
    n = by_id(root)
    assert root.id == "kernel/physmem" and root.name == "All physical memory"
    assert root.area == 1024 * MIB
    assert n["kernel/vmo"].name == "VMOs/processes" and n["kernel/vmo"].area == 300 * MIB
    assert n["j/1"].name == "root job"
    assert n["kernel/heap"].area == 40 * MIB
    assert sorted(c.name for c in n["kernel/heap"].children) == ["heap/allocated", "heap/free"]
    assert {c.id for c in root.children} == {
        "kernel/free", "kernel/vmo", "kernel/heap", "kernel/wired", "kernel/mmu", "kernel/other"
    }


def test_threads_and_meta_are_not_drawn():
    n = by_id(tree_from_records(small_memgraph()))
    assert "t/11" not in n
    assert not any(k.startswith("t/") for k in n)


def test_vmo_areas_divide_committed_bytes_among_sharers():
    n = by_id(tree_from_records(small_memgraph()))
    assert n["p/10/vmo/100"].area == 8192  # duplicate entry counted once
    assert n["p/10/vmo/101"].area == 40960 // 4
    assert n["p/10/vmo/107"].area == 12288 // 3  # handle only: one more sharer
    assert n["p/10/vmo/100"].type == "vmo"


def test_same_named_vmos_aggregate_but_unnamed_do_not():
    n = by_id(tree_from_records(small_memgraph()))
    agg = n["p/10/vmo/scudo:primary"]
    assert agg.name == "scudo:primary[3]"
    assert agg.kind == KIND_AGGREGATE and agg.count == 3
    assert agg.area == 4096 + 8192 + 12288
    assert agg.children == []  # members hidden by default
    assert "p/10/vmo/102" not in n
    unnamed = [c for c in n["p/10"].children if c.name == "<unnamed>"]
    assert sorted(c.area for c in unnamed) == [4096, 8192]


def test_show_aggregated_keeps_members():
    n = by_id(tree_from_records(small_memgraph(), hide_aggregated=False))
    agg = n["p/10/vmo/scudo:primary"]
    assert sorted(c.area for c in agg.children) == [4096, 8192, 12288]


def test_process_area_is_sum_of_vmo_estimates_not_pss():
    n = by_id(tree_from_records(small_memgraph()))
    expected = 8192 + 10240 + (4096 + 8192 + 12288) + 4096 + 8192 + 4096
    assert n["p/10"].area == expected
    assert sum(c.area for c in n["p/10"].children) == expected


def test_process_without_vmos_shows_private_and_proportional_shared():
    n = by_id(tree_from_records(small_memgraph()))
    p20 = n["p/20"]
    assert [(c.name, c.area) for c in p20.children] == [
        ("Private", 1 * MIB), ("Proportional shared", 512 * 1024)
    ]
    assert all(c.kind == KIND_ESTIMATE for c in p20.children)
    assert p20.area == 1 * MIB + 512 * 1024
    assert n["p/21"].children == [] and n["p/21"].area == 0 and n["p/21"].known


def test_job_areas_sum_bottom_up_and_unknown_is_the_rest_of_vmo():
    n = by_id(tree_from_records(small_memgraph()))
    assert n["j/2"].area == n["p/20"].area + n["p/21"].area
    assert n["j/1"].area == n["p/10"].area + n["j/2"].area
    unknown = n["kernel/vmo/unknown"]
    assert unknown.name == "unknown (kernel & unmapped)"
    assert unknown.kind == KIND_UNKNOWN
    assert unknown.area == 300 * MIB - n["j/1"].area
    assert sum(c.area for c in n["kernel/vmo"].children) == 300 * MIB


def test_children_sorted_by_area_descending():
    root = tree_from_records(small_memgraph())
    for _, node in root.walk():
        areas = [c.area for c in node.children]
        assert areas == sorted(areas, reverse=True)


def test_records_may_come_in_any_order():
    recs = small_memgraph()
    a = tree_from_records(recs)
    b = tree_from_records(list(reversed(recs)))
    assert [(d, x.id, x.area) for d, x in a.walk()] == [(d, x.id, x.area) for d, x in b.walk()]


def test_unreadable_process_is_unknown_not_zero():
    recs = small_memgraph()
    recs.append({"id": "p/30", "type": "p", "koid": 30, "parent": "j/2", "name": "secret"})
    n = by_id(tree_from_records(recs))
    assert n["p/30"].known is False
    page = tree_payload(tree_from_records(recs))
    i = page["name"].index(page["strings"].index("secret"))
    assert page["area"][i] is None


def test_without_kernel_records_the_tree_sums_its_processes():
    recs = [r for r in small_memgraph() if r.get("type") != "kernel"]
    root = tree_from_records(recs)
    n = by_id(root)
    assert root.name == "All physical memory"
    assert n["kernel/vmo"].area == n["j/1"].area
    assert "kernel/vmo/unknown" not in n
    assert root.area == n["j/1"].area


def test_missing_parent_job_keeps_its_subtree():
    recs = [r for r in small_memgraph() if r.get("id") != "j/2"]
    n = by_id(tree_from_records(recs))
    assert "p/20" in n and n["j/2"] in n["j/1"].children


@pytest.mark.parametrize(
    "recs, message",
    [
        ([*kernel(), "oops"], "record 9: not an object"),
        ([*kernel(), kernel()[1]], "duplicate id 'kernel/free'"),
        ([*kernel(), {"id": "kernel/x", "type": "kernel", "parent": "", "name": "x",
                      "size_bytes": 1}], "second root node"),
        ([{"type": "j", "koid": 1, "parent": "kernel/vmo"}], "record 0: j record without an id"),
    ],
)
def test_bad_records_are_one_line_errors(recs, message):
    with pytest.raises(ZxmemError) as exc:
        tree_from_records(recs)
    assert message in str(exc.value)
    assert "\n" not in str(exc.value)


def test_linux_forked_anonymous_memory_counts_its_pss():
    # After fork() a child's heap VMA is its own object (share_count 1) but
    # its pages are shared with the parent: Rss 8 MiB, PSS 4 MiB.  The
    # file VMO keeps the spec's committed // share_count.
    heap = vmo(300, "[heap]", 8 * MIB)
    heap["linux"] = {"kind": "anon"}
    lib = vmo(301, "libc.so.6", 2 * MIB, share=2)
    lib["linux"] = {"kind": "file"}
    data = vmo(302, "data:libc.so.6", 64 * 1024)
    data["linux"] = {"kind": "clone"}
    rec = process(50, 1, "child", vmos=[heap, lib, data],
                  refs=[mapped(300), mapped(301), mapped(302)])
    rec["linux"] = {"mappings": [
        {"vmo_koid": 300, "pss_bytes": 3 * MIB},
        {"vmo_koid": 300, "pss_bytes": 1 * MIB},
        {"vmo_koid": 301, "pss_bytes": 4096},
        {"vmo_koid": 302, "pss_bytes": 128 * 1024},  # file pages too: capped
    ]}
    n = by_id(tree_from_records([*kernel(), ROOT_JOB, rec]))
    assert n["p/50/vmo/300"].area == 4 * MIB
    assert n["p/50/vmo/301"].area == 1 * MIB
    assert n["p/50/vmo/302"].area == 64 * 1024


def test_mapping_rows_with_field_names():
    heap = vmo(300, "[heap]", 8 * MIB)
    heap["linux"] = {"kind": "anon"}
    rec = process(50, 1, "child", vmos=[heap], refs=[mapped(300)])
    rec["linux"] = {"mapping_fields": ["pss_bytes", "vmo_koid"],
                    "mappings": [[2 * MIB, 300], [1 * MIB, 300]]}
    n = by_id(tree_from_records([*kernel(), ROOT_JOB, rec]))
    assert n["p/50/vmo/300"].area == 3 * MIB


def test_unknown_mapping_pss_falls_back_to_the_spec_rule():
    heap = vmo(300, "[heap]", 8 * MIB)
    heap["linux"] = {"kind": "anon"}
    rec = process(50, 1, "child", vmos=[heap], refs=[mapped(300)])
    rec["linux"] = {"mappings": [{"vmo_koid": 300, "pss_bytes": 1},
                                 {"vmo_koid": 300, "pss_bytes": None}]}
    n = by_id(tree_from_records([*kernel(), ROOT_JOB, rec]))
    assert n["p/50/vmo/300"].area == 8 * MIB


def test_job_with_an_unreadable_process_keeps_its_size():
    recs = small_memgraph()
    recs.append({"id": "p/30", "type": "p", "koid": 30, "parent": "j/2", "name": "secret"})
    n = by_id(tree_from_records(recs))
    assert n["j/2"].known and n["j/2"].area == n["p/20"].area
    assert n["j/1"].known


# --- Linux hidden objects ---------------------------------------------------


def test_hidden_branch_shows_what_no_process_carries():
    recs = small_memgraph()
    hidden = [
        (107, "memfd:buffer", 12288),      # p/10 already carries 4096 of it
        (500, "SYSV00001234", 2 * MIB),    # no attach: all of it
        (501, "/dev/shm/a", 4096),         # two same-named tmpfs files
        (502, "/dev/shm/a", 8192),
        (503, "unknown size", None),       # never drawn as 0
    ]
    n = by_id(tree_from_records(recs, hidden=hidden))
    h = n["kernel/vmo/hidden"]
    assert h.kind == KIND_HIDDEN and h.name == "hidden (unmapped objects)"
    got = {c.name: c.area for c in h.children}
    assert got == {"memfd:buffer": 12288 - 4096, "SYSV00001234": 2 * MIB, "/dev/shm/a[2]": 12288}
    assert h.area == sum(got.values())
    assert n["kernel/vmo/unknown"].area == 300 * MIB - n["j/1"].area - h.area


def test_no_hidden_branch_without_hidden_objects():
    assert "kernel/vmo/hidden" not in by_id(tree_from_records(small_memgraph()))


# --- from a Snapshot (through memgraph records) -----------------------------


def small_snapshot() -> Snapshot:
    vmos = {
        1000: Vmo(1000, "libc.so.6", "file", 8 * MIB, 2 * MIB, share_count=2, num_mappings=2),
        1001: Vmo(1001, "[heap]", "anon", 4 * MIB, 3 * MIB, share_count=1, num_mappings=1),
        1002: Vmo(1002, "[heap]", "anon", 4 * MIB, 1 * MIB, share_count=1, num_mappings=1),
        1003: Vmo(1003, "memfd:pool", "memfd", 1 * MIB, 1 * MIB, share_count=0),
        1004: Vmo(1004, "SYSV00000001", "sysv", 4 * MIB, 4 * MIB, share_count=0),
    }
    mem = MemoryCounts(pss_bytes=1, private_bytes=1, shared_bytes=0)
    procs = (
        Process(100, "nginx", 10, memory=mem, cmdline=("nginx",), vmo_refs=(
            VmoRef(1000, ("MAPPING",)), VmoRef(1001, ("MAPPING",)),
            VmoRef(1003, ("HANDLE",), ("READ", "WRITE"), fd=5))),
        Process(200, "worker", 11, memory=mem, cmdline=("worker",), vmo_refs=(
            VmoRef(1000, ("MAPPING",)), VmoRef(1002, ("MAPPING",))),
            # A forked worker: half of its heap's pages are its parent's.
            mappings=(Mapping(0x1000, 0x401000, "rw-p", 0, 0, 0, "[heap]", 1002,
                              rss_bytes=1 * MIB, pss_bytes=512 * 1024),)),
    )
    return Snapshot(
        provenance=Provenance(source="linux", host="h", timestamp="2026-01-01T00:00:00.000Z"),
        jobs=(Job(10, "root", 0, "/"), Job(11, "app.slice", 10, "/app.slice")),
        processes=procs,
        kernel=KernelStats(total_bytes=64 * MIB, free_bytes=20 * MIB, vmo_bytes=30 * MIB,
                           total_heap_bytes=4 * MIB, free_heap_bytes=1 * MIB,
                           wired_bytes=2 * MIB, mmu_overhead_bytes=1 * MIB, ipc_bytes=0,
                           other_bytes=1 * MIB),
        vmos=MappingProxyType(vmos),
        hidden_vmo_koids=(1003, 1004),
        vmo_holders=MappingProxyType({1003: (100,)}),
    )


def test_tree_from_snapshot():
    root = tree_from_snapshot(small_snapshot())
    n = by_id(root)
    assert root.area == 64 * MIB
    assert n["p/100/vmo/1000"].area == 1 * MIB  # 2 MiB shared by 2
    assert n["p/100/vmo/1003"].area == 1 * MIB  # held only by a descriptor, share 0
    assert n["p/100"].area == 1 * MIB + 3 * MIB + 1 * MIB
    assert n["p/200/vmo/1002"].area == 512 * 1024  # its PSS, not committed
    assert n["p/200"].area == 1 * MIB + 512 * 1024
    assert n["j/10"].name == "root job" and n["j/11"].area == n["p/200"].area
    # The memfd is all carried by its holder; the SysV segment is hidden.
    assert {c.name: c.area for c in n["kernel/vmo/hidden"].children} == {
        "SYSV00000001": 4 * MIB
    }
    assert n["kernel/vmo/unknown"].area == 30 * MIB - n["j/10"].area - 4 * MIB


def test_unknown_kernel_totals_become_sums_not_negative_boxes():
    from dataclasses import replace

    snap = small_snapshot()
    snap = replace(snap, kernel=replace(snap.kernel, vmo_bytes=None, total_bytes=None))
    n = by_id(tree_from_snapshot(snap))
    assert "kernel/vmo/unknown" not in n
    assert n["kernel/vmo"].area == n["j/10"].area + n["kernel/vmo/hidden"].area
    assert n["kernel/physmem"].area >= n["kernel/vmo"].area


# --- Fuchsia captures -------------------------------------------------------


def test_small_capture_divides_by_process_count():
    from zxmem.sources.fuchsia import snapshot_from_capture

    cap = {
        "Time": 1,
        "Kernel": {"total": 100 * MIB, "free": 50 * MIB, "wired": 1, "total_heap": 2,
                   "free_heap": 1, "vmo": 40 * MIB, "mmu": 1, "ipc": 1, "other": 1},
        "Processes": [["koid", "name", "vmos"], [1, "a", [10, 11]], [2, "b", [10, 12]]],
        "VmoNames": ["shared", "heap"],
        "Vmos": [["koid", "name", "parent_koid", "committed_bytes", "allocated_bytes"],
                 [10, 0, 0, 6 * MIB, 8 * MIB], [11, 1, 0, 1 * MIB, 2 * MIB],
                 [12, 1, 0, 2 * MIB, 2 * MIB]],
    }
    n = by_id(tree_from_snapshot(snapshot_from_capture(cap)))
    assert n["p/1/vmo/10"].area == 3 * MIB and n["p/2/vmo/10"].area == 3 * MIB
    assert n["p/1"].area == 4 * MIB and n["p/2"].area == 5 * MIB
    assert n["kernel/vmo/unknown"].area == 40 * MIB - 9 * MIB


def test_real_fuchsia_capture():
    from zxmem.sources.load import load_snapshot

    path = capture_path()
    snap = load_snapshot(path)
    with open(path, "rb") as f:
        doc = json.load(f)
    root = tree_from_snapshot(snap)
    n = by_id(root)
    assert root.area == doc["Kernel"]["total"]
    assert n["kernel/vmo"].area == doc["Kernel"]["vmo"]
    assert n["kernel/free"].area == doc["Kernel"]["free"]
    procs = [x for x in n.values() if x.type == "p"]
    assert len(procs) == len(doc["Processes"]) - 1
    job = n["j/1"]
    assert job.area == sum(p.area for p in procs) > 0
    assert n["kernel/vmo/unknown"].area == doc["Kernel"]["vmo"] - job.area
    # A process's VMOs are de-duplicated: each koid once (aggregates aside).
    for p in procs:
        koids = [c.koid for c in p.children if c.kind != KIND_AGGREGATE]
        assert len(koids) == len(set(koids))


# --- the HTML page ----------------------------------------------------------

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(1)</script>",
    "<!-- @@SCRIPT@@ @@DATA@@ &amp; \u2028\u2029 \" ' `",
]


def hostile_tree() -> Node:
    recs = small_memgraph()
    for i, name in enumerate(HOSTILE):
        recs.append(process(40 + i, 2, name, vmos=[vmo(900 + i, name, 4096)],
                            refs=[mapped(900 + i)]))
    recs.append({"id": "j/3", "type": "j", "koid": 3, "parent": "j/1", "name": HOSTILE[1]})
    return tree_from_records(recs)


def test_json_for_script_is_inert_and_round_trips():
    value = {"a": HOSTILE}
    text = json_for_script(value)
    assert "<" not in text and ">" not in text and "&" not in text
    assert "\u2028" not in text and "\u2029" not in text
    assert json.loads(text) == value


def test_page_embeds_names_only_as_escaped_json():
    page = render_html(hostile_tree(), {"source": "</script><b>x</b>"})
    for name in HOSTILE:
        assert name not in page
    assert page.count("</script>") == 2  # the data element's and the script's own
    assert "<img" not in page
    data = re.search(r'<script type="application/json" id="zxmem-data">(.*?)</script>', page, re.S)
    payload = json.loads(data.group(1))
    for name in HOSTILE:
        assert name in payload["tree"]["strings"]
    assert payload["meta"]["source"] == "</script><b>x</b>"
    # The placeholder-looking name did not pull the script into the data.
    assert "d3" not in data.group(1)


def test_page_is_self_contained():
    page = render_html(hostile_tree())
    assert not re.search(r"\b(src|href)\s*=", page.split('id="zxmem-data"')[0])
    csp = re.search(r'http-equiv="Content-Security-Policy" content="([^"]+)"', page).group(1)
    assert "default-src 'none'" in csp
    assert "unsafe-inline" not in csp and "http" not in csp
    assert "Copyright 2010-2026 Mike Bostock" in page  # the vendored licence
    assert "d3.treemap" not in page or "treemapSquarify" in page


def test_payload_is_preorder_with_child_counts():
    root = tree_from_records(small_memgraph())
    p = tree_payload(root)
    nodes = [x for _, x in root.walk()]
    assert [p["strings"][i] for i in p["name"]] == [x.name for x in nodes]
    assert p["nkids"] == [len(x.children) for x in nodes]
    assert p["area"] == [x.area for x in nodes]
    assert len(p["type"]) == len(p["kind"]) == len(nodes)
    assert p["type"][0] == "K"
    i = [p["strings"][j] for j in p["name"]].index("scudo:primary[3]")
    assert p["type"][i] == "V" and p["kind"][i] == "A"
    # Names are stored once; koids only where the page shows them.
    assert len(p["strings"]) == len(set(p["strings"]))
    j = [p["strings"][k] for k in p["name"]].index("libc.so")
    assert p["koid"][j] == 0
    j = [p["strings"][k] for k in p["name"]].index("bin/devmgr")
    assert p["koid"][j] == 10


# --- the command --------------------------------------------------------------


def write_memgraph(path, recs) -> str:
    path.write_text("[\n" + ",\n".join("  " + json.dumps(r) for r in recs) + "\n]\n")
    return str(path)


def test_command_from_file(cli, tmp_path):
    src = write_memgraph(tmp_path / "mg.json", small_memgraph())
    r = cli(["treemap", "--from", src])
    assert r.status == 0, r.stderr
    assert r.stdout.startswith("<!DOCTYPE html>")
    assert "bin/devmgr" in r.stdout


def test_command_reads_memgraph_on_stdin(cli):
    text = json.dumps(small_memgraph())
    r = cli(["treemap"], stdin=io.StringIO(text))
    assert r.status == 0, r.stderr
    assert "bin/netstack" in r.stdout


def test_command_writes_output_file(cli, tmp_path):
    src = write_memgraph(tmp_path / "mg.json", small_memgraph())
    out = tmp_path / "mem.html"
    r = cli(["treemap", "--from", src, "-o", str(out)])
    assert r.status == 0 and r.stdout == ""
    assert out.read_text().startswith("<!DOCTYPE html>")
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".zxmem-")] == []


def test_command_from_capture(cli):
    r = cli(["treemap", "--from", capture_path()])
    assert r.status == 0, r.stderr
    assert "driver_host:sys" in r.stdout


def test_command_refuses_to_write_html_to_a_terminal(cli, tmp_path):
    src = write_memgraph(tmp_path / "mg.json", small_memgraph())
    r = cli(["treemap", "--from", src], stdout_isatty=True)
    assert r.status == 2
    assert "-o FILE" in r.stderr and r.stderr.count("\n") == 1


def test_command_bad_input_is_one_line(cli, tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text("[{\"id\": ")
    r = cli(["treemap", "--from", str(bad)])
    assert r.status == 1
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    r = cli(["treemap", "--from", str(tmp_path / "missing.json")])
    assert r.status == 1 and r.stderr.count("\n") == 1


TREES = Path(__file__).resolve().parents[1] / "fixtures" / "proc-trees"


def test_command_with_empty_stdin_draws_the_proc_tree(cli):
    # /dev/null on stdin (cron, CI) is not input: the (recorded) live system.
    with open("/dev/null") as devnull:
        r = cli(["treemap", "--proc-root", str(TREES / "cgroup-v1-hybrid" / "proc")],
                stdin=devnull)
    assert r.status == 0, r.stderr
    payload = json.loads(re.search(
        r'id="zxmem-data">(.*?)</script>', r.stdout, re.S).group(1))
    names = payload["tree"]["strings"]
    assert "zxmem-fixture" in names and "web" in names and "db" in names
    assert payload["meta"]["source"] == "linux"


def test_command_from_dash_reads_stdin(cli):
    r = cli(["treemap", "--from", "-"], stdin=io.StringIO(json.dumps(small_memgraph())))
    assert r.status == 0, r.stderr
    assert "bin/devmgr" in r.stdout


def test_command_open_writes_a_file_and_opens_it(cli, tmp_path, monkeypatch):
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    src = write_memgraph(tmp_path / "mg.json", small_memgraph())
    out = tmp_path / "mem.html"
    r = cli(["treemap", "--from", src, "-o", str(out), "--open"], stdout_isatty=True)
    assert r.status == 0, r.stderr
    assert opened == [out.resolve().as_uri()]
    assert out.read_text().startswith("<!DOCTYPE html>")
