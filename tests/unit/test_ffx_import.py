"""``ffx profile memory --machine json`` under ``--from`` (spec fuchsia-tools §9.7).

The fixtures in ``tests/fixtures/ffx`` are written from ffx's serde schema
(``ProfileMemoryOutput``: ``CompleteDigest``, ``ProcessDigest``,
``ComponentDigest``) for a small system of known shape: four processes,
nine VMOs (a blob shared by blobfs and component_manager, a bootfs VMO shared
by component_manager and archivist, a COW child whose parent archivist also
holds, a zero-committed unnamed VMO), 1 MiB of kernel VMO bytes in no
process.  The numbers below are checked against the documents themselves
(ffx's own per-process sums, bucket sizes, kernel stats), and zxmem's own
attribution over the VMO table must reproduce what ffx wrote.
"""

from __future__ import annotations

import copy
import io
import json
import os

import pytest
from memgraph_samples import check_treemap_structure, schema_validator

from zxmem.errors import InputError
from zxmem.sources.ffx import is_ffx, snapshot_from_ffx
from zxmem.sources.load import load_snapshot
from zxmem.summary import summarize

HERE = os.path.dirname(os.path.abspath(__file__))
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "ffx")
COMPLETE = os.path.join(FIXTURES, "complete-digest.json")
PROCESS = os.path.join(FIXTURES, "process-digest.json")
COMPONENT = os.path.join(FIXTURES, "component-digest.json")
ALL = (COMPLETE, PROCESS, COMPONENT)


def doc(path: str) -> dict:
    with open(path, encoding="utf-8") as f:
        return json.load(f)


def csv_rows(text: str) -> dict[str, int]:
    out = {}
    for line in text.splitlines():
        name, _, size = line.rpartition(", ")
        out[name] = int(size)
    return out


# ---------------------------------------------------------------------------
# CompleteDigest


def test_complete_digest_snapshot_is_ffxs_numbers():
    raw = doc(COMPLETE)["CompleteDigest"]
    snap = load_snapshot(COMPLETE)
    assert snap.provenance.source == "fuchsia-ffx-complete-digest"
    assert [p.koid for p in snap.processes] == [p["koid"] for p in raw["processes"]]
    for p, r in zip(snap.processes, raw["processes"], strict=True):
        m = r["memory"]
        assert (p.memory.private_bytes, p.memory.pss_bytes, p.memory.shared_bytes) == \
            (m["private"], m["scaled"], m["total"] - m["private"])
        assert sorted(ref.vmo_koid for ref in p.vmo_refs) == sorted(r["vmos"])
    assert len(snap.vmos) == len(raw["vmos"]) == 9
    v = snap.vmos[1008]
    assert (v.name, v.parent_koid, v.kind, v.committed_bytes, v.size_bytes) == \
        ("InspectHeap", 1009, "clone", 131072, 262144)
    # The blob and the bootfs VMO are charged to two processes each; the
    # parent 1009 to archivist alone (it holds the parent and its child).
    assert snap.vmos[1001].share_count == 2 and snap.vmos[1005].share_count == 2
    assert snap.vmos[1009].share_count == 1 and snap.vmos[1009].num_children == 1
    # ffx's kernel.vmo is the remainder in no VMO: zxmem puts the total back.
    k = raw["kernel"]
    assert snap.kernel.vmo_bytes == k["vmo"] + raw["total_committed_bytes_in_vmos"] == 12460032
    assert snap.kernel.wired_bytes == k["wired"] and snap.kernel.free_bytes == k["free"]
    assert snap.kernel.extra["vmo_pager_total_bytes"] == k["vmo_pager_total"]
    assert snap.kernel.extra["zram_compressed_total_bytes"] is None  # unknown, not 0
    # Every VMO is charged and every share divides exactly: PSS adds up to
    # the committed bytes.
    assert sum(p.memory.pss_bytes for p in snap.processes) == \
        raw["total_committed_bytes_in_vmos"]


def test_zxmem_attribution_reproduces_ffx_per_process_and_group():
    raw = doc(COMPLETE)["CompleteDigest"]
    summary = summarize(load_snapshot(COMPLETE))
    for r in raw["processes"]:
        s = summary.process(r["koid"])
        m = r["memory"]
        assert (s.sizes.private_bytes, s.sizes.scaled_bytes, s.sizes.total_bytes) == \
            (m["private"], m["scaled"], m["total"]), r["name"]
        groups = {g: (v["private"], v["scaled"], v["total"])
                  for g, v in r["name_to_vmo_memory"].items()}
        assert {g: (x.private_bytes, x.scaled_bytes, x.total_bytes)
                for g, x in s.groups.items()} == groups, r["name"]


def test_digest_uses_ffxs_own_buckets(cli):
    raw = doc(COMPLETE)["CompleteDigest"]
    r = cli(["digest", "--from", COMPLETE, "--csv"])
    assert r.status == 0 and r.stderr == "", r.stderr
    rows = csv_rows(r.stdout)
    for b in raw["buckets"]:
        assert rows[b["name"]] == b["size"]
    # Every undigested VMO is referenced directly here, so the scripts'
    # Undigested is ffx's total_undigested, and Orphaned ffx's kernel.vmo.
    assert rows["Undigested"] == raw["total_undigested"] == 4718592
    assert rows["Orphaned"] == raw["kernel"]["vmo"] == 1048576
    k = raw["kernel"]
    assert rows["Kernel"] == k["wired"] + k["total_heap"] + k["mmu"] + k["ipc"] + k["other"]
    assert sum(rows.values()) == 12460032 + rows["Kernel"]
    # --buckets replaces ffx's assignment.
    r = cli(["digest", "--from", COMPLETE, "--buckets", os.devnull])
    assert r.status == 1 and r.stderr.startswith("zxmem: /dev/null: invalid JSON")


def test_digest_without_ffx_buckets_needs_buckets(cli, tmp_path):
    d = doc(COMPLETE)
    d["CompleteDigest"]["buckets"] = None
    d["CompleteDigest"]["total_undigested"] = None
    path = tmp_path / "nobuckets.json"
    path.write_text(json.dumps(d))
    r = cli(["digest", "--from", str(path)])
    assert r.status == 2
    assert "--buckets FILE is required for a fuchsia-ffx-complete-digest snapshot" in r.stderr
    b = tmp_path / "b.json"
    b.write_text(json.dumps([{"name": "Netstack", "process": "netstack\\.cm"}]))
    rows = csv_rows(cli(["digest", "--from", str(path), "--buckets", str(b), "--csv"]).stdout)
    assert rows["Netstack"] == 3145728


def test_saturated_kernel_vmo_is_unknown():
    d = doc(COMPLETE)
    d["CompleteDigest"]["kernel"]["vmo"] = 0
    snap = snapshot_from_ffx(d)
    assert snap.kernel.vmo_bytes is None
    assert any("saturated" in n for n in snap.provenance.notes)


# ---------------------------------------------------------------------------
# ProcessDigest and ComponentDigest: no VMO table


def test_process_digest(cli):
    raw = doc(PROCESS)["ProcessDigest"]
    snap = load_snapshot(PROCESS)
    assert [p.koid for p in snap.processes] == [2001, 2004]
    assert all(p.vmo_refs is None for p in snap.processes) and not snap.vmos
    assert snap.kernel is not None and snap.kernel.total_bytes is None  # unknown
    r = cli(["mem", "--from", PROCESS, "--csv"])
    assert r.status == 0, r.stderr
    t = raw["capture_time"] // 10**9
    assert r.stdout.splitlines() == [
        f"{t},{p['koid']},{p['name']},{p['memory']['private']},{p['memory']['scaled']},"
        f"{p['memory']['total']}" for p in raw["process_data"]]
    r = cli(["digest", "--from", PROCESS])
    assert r.status == 1
    assert r.stderr == (f"zxmem: {PROCESS}: a ProcessDigest (ffx --process-koids/"
                        "--process-names) has no VMOs and no buckets: record it with "
                        "`ffx profile memory --buckets --machine json`\n")


def test_component_digest(cli, tmp_path):
    raw = doc(COMPONENT)["ComponentDigest"]
    snap = load_snapshot(COMPONENT)
    assert snap.provenance.source == "fuchsia-ffx-component-digest"
    assert [p.koid for p in snap.processes] == [p["id"] for p in raw["principals"]]
    blobfs = snap.process(5)
    # Scaled bytes are fractional in memory_monitor2: rounded down.
    assert raw["principals"][0]["committed_scaled"] == 2708821.3333333335
    assert blobfs.memory.pss_bytes == 2708821
    assert blobfs.memory.private_bytes == 2359296
    assert blobfs.memory.shared_bytes == 3407872 - 2359296
    stats = raw["kernel"]["memory_statistics"]
    assert snap.kernel.vmo_bytes == stats["vmo_bytes"]
    assert snap.kernel.extra["cache_bytes"] == stats["cache_bytes"]
    assert not snap.vmos

    r = cli(["digest", "--from", COMPONENT, "--csv"])
    assert r.status == 0, r.stderr
    rows = csv_rows(r.stdout)
    given = {b["name"]: b["committed_size"] for b in raw["digest"]["buckets"]}
    assert rows == {n: given[n] for n in ("Archivist", "Blobfs", "ComponentManager",
                                          "Netstack", "Undigested", "Orphaned", "Kernel")}
    assert sum(rows.values()) == stats["vmo_bytes"] + rows["Kernel"]
    r = cli(["digest", "--from", COMPONENT])
    assert "left out: Free, [Addl]PagerTotal" in r.stderr
    b = tmp_path / "b.json"
    b.write_text(json.dumps([{"name": "Everything"}]))
    r = cli(["digest", "--from", COMPONENT, "--buckets", str(b)])
    assert r.status == 1 and "lists no VMOs to assign to --buckets" in r.stderr

    r = cli(["mem", "--from", COMPONENT, "--pid", "5", "--csv"])
    assert r.status == 0, r.stderr
    assert r.stdout.splitlines() == [",5,[scudo],2097152,2097152,2097152",
                                     ",5,[stacks],262144,262144,262144",
                                     ",5,[blobs],0,349525,1048576"]


def test_component_digest_orphaned_is_computed_without_its_row(cli, tmp_path):
    d = doc(COMPONENT)
    buckets = d["ComponentDigest"]["digest"]["buckets"]
    d["ComponentDigest"]["digest"]["buckets"] = [b for b in buckets if b["name"] != "Orphaned"]
    path = tmp_path / "c.json"
    path.write_text(json.dumps(d))
    rows = csv_rows(cli(["digest", "--from", str(path), "--csv"]).stdout)
    assert rows["Orphaned"] == 1048576  # vmo_bytes − buckets − Undigested


# ---------------------------------------------------------------------------
# Every view


@pytest.mark.parametrize("path", ALL, ids=os.path.basename)
def test_memgraph_and_treemap_on_ffx(cli, path):
    r = cli(["memgraph", "-v", "--from", path])
    assert r.status == 0, r.stderr
    recs = json.loads(r.stdout)
    check_treemap_structure(recs)
    schema_validator().validate(recs)
    again = load_snapshot(io.StringIO(r.stdout))
    snap = load_snapshot(path)
    assert sorted((p.koid, p.name, p.memory) for p in again.processes) == \
        sorted((p.koid, p.name, p.memory) for p in snap.processes)
    assert again.vmos == snap.vmos
    t = cli(["treemap", "--from", path])
    assert t.status == 0, t.stderr
    assert t.stdout.lstrip().lower().startswith("<!doctype html")
    for p in snap.processes:
        assert json.dumps(p.name)[1:-1].replace("/", "\\/") in t.stdout or p.name in t.stdout


@pytest.mark.parametrize("path", ALL, ids=os.path.basename)
def test_ps_lists_every_process_with_ffxs_numbers(cli, path):
    r = cli(["ps", "--json", "--from", path])
    assert r.status == 0, r.stderr
    tasks = {t["koid"]: t for t in json.loads(r.stdout)["tasks"] if t["type"] == "p"}
    snap = load_snapshot(path)
    assert set(tasks) == {p.koid for p in snap.processes}
    for p in snap.processes:
        assert tasks[p.koid]["pss_bytes"] == p.memory.pss_bytes
        assert tasks[p.koid]["private_bytes"] == p.memory.private_bytes


# ---------------------------------------------------------------------------
# Malformed documents: one line naming the record and the field


def _mutate(path, fn):
    d = copy.deepcopy(doc(path))
    fn(d)
    return d


BAD = [
    (COMPLETE, lambda d: d["CompleteDigest"]["processes"][1]["memory"].__setitem__(
        "private", "2 MiB"),
     "ffx CompleteDigest processes[1] \"blobfs.cm\": memory: 'private' must be a byte count "
     "(an integer 0 .. 2**64 - 1), found \"2 MiB\""),
    (COMPLETE, lambda d: d["CompleteDigest"]["processes"][0].pop("koid"),
     "ffx CompleteDigest processes[0] \"netstack.cm\": 'koid' must be a koid (a non-negative "
     "integer), found nothing"),
    (COMPLETE, lambda d: d["CompleteDigest"]["processes"][2]["vmos"].append(4242),
     "ffx CompleteDigest processes[2] \"archivist.cm\": vmos: koid 4242 is not in the vmos "
     "table"),
    (COMPLETE, lambda d: d["CompleteDigest"]["vmos"][3].__setitem__("committed_bytes", -1),
     "ffx CompleteDigest vmos[3] \"relro:libc.so\": 'committed_bytes' must be a byte count "
     "(an integer 0 .. 2**64 - 1), found -1"),
    (COMPLETE, lambda d: d["CompleteDigest"].__setitem__("vmos", {}),
     "ffx CompleteDigest vmos: expected an array, found {}"),
    (COMPLETE, lambda d: d["CompleteDigest"]["buckets"][0].__setitem__("size", 1),
     "ffx CompleteDigest buckets[0] \"Blobfs\": size is 1 but its vmos' committed_bytes add "
     "up to 3407872"),
    (COMPLETE, lambda d: d["CompleteDigest"].__setitem__("total_committed_bytes_in_vmos", 5),
     "ffx CompleteDigest: total_committed_bytes_in_vmos is 5 but the vmos' committed_bytes "
     "add up to 11411456"),
    (COMPLETE, lambda d: d["CompleteDigest"]["kernel"].__setitem__("wired", 1.5),
     "ffx CompleteDigest kernel: 'wired' must be a byte count (an integer 0 .. 2**64 - 1), "
     "found 1.5"),
    (PROCESS, lambda d: d["ProcessDigest"].__setitem__("process_data", None),
     "ffx ProcessDigest process_data: expected an array, found null"),
    (PROCESS, lambda d: d["ProcessDigest"]["process_data"].append(
        d["ProcessDigest"]["process_data"][0]),
     "ffx ProcessDigest process_data[2] \"blobfs.cm\": koid 2001 is listed twice"),
    (COMPONENT, lambda d: d["ComponentDigest"]["principals"][1].__setitem__(
        "committed_scaled", "lots"),
     "ffx ComponentDigest principals[1] \"core/network/netstack\": 'committed_scaled' must be "
     "a non-negative number of bytes, found \"lots\""),
    (COMPONENT, lambda d: d["ComponentDigest"]["principals"][0]["processes"].append(17),
     "ffx ComponentDigest principals[0] \"bootstrap/fshost/blobfs\": processes[1]: expected "
     "\"name (koid)\", found 17"),
    (COMPONENT, lambda d: d["ComponentDigest"]["digest"]["buckets"][2].pop("committed_size"),
     "ffx ComponentDigest digest.buckets[2] \"Archivist\": missing 'committed_size'"),
    (COMPONENT, lambda d: d["ComponentDigest"].pop("undigested"),
     "ffx ComponentDigest: missing 'undigested'"),
]


@pytest.mark.parametrize("path, mutate, message", BAD)
def test_malformed_ffx_is_one_line(cli, tmp_path, path, mutate, message):
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps(_mutate(path, mutate)))
    for args in (["ps"], ["mem"], ["memgraph"]):
        r = cli([*args, "--from", str(bad)])
        assert r.status == 1, (args, r.stdout)
        assert r.stderr == f"zxmem: {bad}: {message}\n"


def test_not_ffx():
    assert is_ffx({"CompleteDigest": {}})
    assert not is_ffx({"CompleteDigest": {}, "Capture": {}})
    assert not is_ffx([{"CompleteDigest": {}}])
    with pytest.raises(InputError, match="expected an object, found 3"):
        snapshot_from_ffx({"ComponentDigest": 3})


# ---------------------------------------------------------------------------
# A capture wrapped with its bucket definitions

SMALL_CAPTURE = {
    "Time": 7_000_000_000,
    "Kernel": {"total": 1 << 30, "free": 1 << 29, "wired": 4096, "total_heap": 8192,
               "free_heap": 0, "vmo": 40960, "mmu": 4096, "ipc": 0, "other": 0},
    "Processes": [["koid", "name", "vmos"], [10, "blobfs.cm", [1, 2]],
                  [20, "netstack.cm", [2, 3]]],
    "VmoNames": ["blob-ab", "scudo:primary", "netstack-heap"],
    "Vmos": [["koid", "name", "parent_koid", "committed_bytes", "allocated_bytes"],
             [1, 0, 0, 8192, 8192], [2, 1, 0, 4096, 8192], [3, 2, 0, 16384, 16384]],
}


def test_wrapped_capture_uses_its_buckets(cli, tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"Capture": SMALL_CAPTURE, "Buckets": [
        {"event_code": 1, "name": "Blobs", "process": "", "vmo": "blob-.*"},
        {"event_code": 2, "name": "Netstack", "process": "netstack\\.cm", "vmo": ""}]}))
    r = cli(["digest", "--from", str(path), "--csv"])
    assert r.status == 0, r.stderr
    # blob-ab (8 KiB) to Blobs; scudo:primary is met first through blobfs,
    # which no bucket takes, then through netstack: Netstack gets it and the
    # heap (4 + 16 KiB).  Orphaned = 40 KiB of kernel VMOs − 28 KiB.
    assert csv_rows(r.stdout) == {"Blobs": 8192, "Netstack": 20480, "Undigested": 0,
                                  "Kernel": 16384, "Orphaned": 12288}
    # --buckets replaces them.
    b = tmp_path / "b.json"
    b.write_text(json.dumps([{"name": "Everything"}]))
    rows = csv_rows(cli(["digest", "--from", str(path), "--buckets", str(b), "--csv"]).stdout)
    assert rows["Everything"] == 28672


def test_wrapped_capture_with_a_bad_bucket(cli, tmp_path):
    path = tmp_path / "wrapped.json"
    path.write_text(json.dumps({"Capture": SMALL_CAPTURE, "Buckets": [
        {"name": "Blobs", "vmo": "blob-.*"}, {"name": "Broken", "vmo": "(unclosed"}]}))
    r = cli(["ps", "--from", str(path)])
    assert r.status == 1
    assert r.stderr.startswith(f"zxmem: {path}: capture Buckets: bucket 1 \"Broken\": invalid "
                               "vmo regular expression \"(unclosed\"")
    assert r.stderr.count("\n") == 1


# ---------------------------------------------------------------------------
# mem_digest.py's -v / -vv


def test_digest_verbose_by_hand(cli, tmp_path):
    # Three processes; "Heaps" takes scudo VMOs, the rest is undigested.
    cap = {
        "Time": 1,
        "Kernel": {"total": 1 << 20, "free": 0, "wired": 0, "total_heap": 0, "free_heap": 0,
                   "vmo": 61440, "mmu": 0, "ipc": 0, "other": 0},
        "Processes": [["koid", "name", "vmos"], [10, "a", [1, 2, 5]], [20, "b", [3, 4, 5]],
                      [30, "c", [6]]],
        "VmoNames": ["scudo:primary", "data0:x", "bss:x"],
        "Vmos": [["koid", "name", "parent_koid", "committed_bytes", "allocated_bytes"],
                 [1, 0, 0, 4096, 4096], [2, 1, 0, 8192, 8192], [3, 0, 0, 12288, 12288],
                 [4, 1, 0, 4096, 4096], [5, 2, 0, 16384, 16384], [6, 1, 0, 16384, 16384]],
    }
    path = tmp_path / "w.json"
    path.write_text(json.dumps({"Capture": cap, "Buckets": [
        {"name": "Heaps", "process": "", "vmo": "scudo:.*"}]}))
    v = cli(["digest", "--from", str(path), "-v"])
    assert v.status == 0, v.stderr
    assert v.stdout == (
        "Heaps: 16KiB\n"
        "\tb: 12KiB\n"
        "\ta: 4KiB\n"
        "Undigested: 44KiB\n"
        "\n"
        "Total: 60KiB\n"
        "\n"
        "Undigested:\n"
        "\ta[10] ,b[20]: 16KiB\n"
        "\t\ta[10] VMO Summaries:\n"
        "\t\t\tbss:x (1): 16KiB\n"
        "\t\tb[20] VMO Summaries:\n"
        "\t\t\tbss:x (1): 16KiB\n"
        "\tc[30]: 16KiB\n"
        "\t\tc[30] VMO Summaries:\n"
        "\t\t\tdata0:x (1): 16KiB\n"
        "\ta[10]: 8KiB\n"
        "\t\ta[10] VMO Summaries:\n"
        "\t\t\tdata0:x (1): 8KiB\n"
        "\tb[20]: 4KiB\n"
        "\t\tb[20] VMO Summaries:\n"
        "\t\t\tdata0:x (1): 4KiB\n"
    )
    vv = cli(["digest", "--from", str(path), "-vv"])
    assert vv.stdout == (
        "Heaps: 16KiB\n"
        "Undigested: 44KiB\n"
        "\n"
        "Total: 60KiB\n"
        "\n"
        "Undigested:\n"
        "\ta[10] ,b[20]: 16KiB\n"
        "\t\ta[10] VMOs:\n"
        "\t\t\tbss:x[5]: 16KiB\n"
        "\t\tb[20] VMOs:\n"
        "\t\t\tbss:x[5]: 16KiB\n"
        "\tc[30]: 16KiB\n"
        "\t\tc[30] VMOs:\n"
        "\t\t\tdata0:x[6]: 16KiB\n"
        "\ta[10]: 8KiB\n"
        "\t\ta[10] VMOs:\n"
        "\t\t\tdata0:x[2]: 8KiB\n"
        "\tb[20]: 4KiB\n"
        "\t\tb[20] VMOs:\n"
        "\t\t\tdata0:x[4]: 4KiB\n"
    )
    # -v wins over -vv, as in mem_digest.py (an elif).
    both = cli(["digest", "--from", str(path), "-v", "-vv"])
    assert both.stdout == v.stdout
    # Without either, the plain output is unchanged.
    plain = cli(["digest", "--from", str(path)])
    assert plain.stdout == "".join(line + "\n" for line in v.stdout.splitlines()
                                   if not line.startswith("\t\t")
                                   and line not in ("\tb: 12KiB", "\ta: 4KiB"))


def test_views_that_need_vmos_or_maps_say_what_the_form_lacks(cli):
    r = cli(["vmaps", "--from", COMPLETE, "2001"])
    assert r.status == 1
    assert r.stderr == (f"zxmem: {COMPLETE}: ffx profile memory output has no memory maps "
                        "(it lists each process's VMOs: zxmem vmos --from FILE PID)\n")
    r = cli(["vmos", "--from", COMPLETE, "2004"])
    assert r.status == 0 and "InspectHeap" in r.stdout
    for path, form in ((COMPONENT, "ComponentDigest"), (PROCESS, "ProcessDigest")):
        r = cli(["vmos", "--from", path, "5" if path == COMPONENT else "2001"])
        assert r.status == 1
        assert r.stderr.startswith(f"zxmem: {path}: ffx's {form} has no memory objects: ")


def test_digest_json_of_a_component_digest_has_unknown_vmos(cli):
    d = json.loads(cli(["digest", "--json", "--from", COMPONENT]).stdout)
    assert d["vmo_count"] is None and d["undigested"] is None
    assert all(b["vmos"] is None for b in d["buckets"])
    assert d["undigested_bytes"] == 4718592
