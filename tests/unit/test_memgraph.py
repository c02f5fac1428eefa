"""memgraph JSON: Fuchsia's layout and keys, Linux fields, and the round trip."""

from __future__ import annotations

import errno
import io
import json
import os
from dataclasses import replace
from types import MappingProxyType

import pytest
from forks import children_die_at_once
from memgraph_samples import HOSTILE, check_treemap_structure, sample_snapshot, schema_validator

from zxmem import memgraph
from zxmem.model import KernelStats, Snapshot
from zxmem.sources.load import load_snapshot

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "memgraph")

KERNEL_IDS = [
    "kernel/physmem", "kernel/free", "kernel/vmo", "kernel/heap", "kernel/heap/allocated",
    "kernel/heap/free", "kernel/wired", "kernel/mmu", "kernel/other",
]


def _full_kernel() -> KernelStats:
    return KernelStats(1000, 400, 300, 100, 30, 50, 20, 5, 90)


def _records(text: str) -> list[dict]:
    return json.loads(text)


def test_layout_is_fuchsias():
    text = memgraph.dumps(sample_snapshot())
    lines = text.split("\n")
    assert lines[0] == "["
    assert lines[-2:] == ["]", ""]
    body = lines[1:-2]
    assert all(line.startswith("  {") for line in body)
    assert all(line.endswith("},") for line in body[:-1])
    assert body[-1].endswith("} ")  # the real tool ends the last record with a space
    assert len(body) == len(_records(text))  # one record per line


def test_kernel_records_order_keys_and_values():
    snap = replace(sample_snapshot(), kernel=_full_kernel())
    recs = _records(memgraph.dumps(snap))
    kernel = recs[:9]
    assert [r["id"] for r in kernel] == KERNEL_IDS
    for r in kernel:
        assert list(r)[:5] == ["id", "type", "parent", "name", "size_bytes"]
        assert r["type"] == "kernel" and r["id"] == "kernel/" + r["name"]
    sizes = {r["id"]: r["size_bytes"] for r in kernel}
    assert sizes == {
        "kernel/physmem": 1000, "kernel/free": 400, "kernel/vmo": 300, "kernel/heap": 100,
        "kernel/heap/allocated": 70, "kernel/heap/free": 30, "kernel/wired": 50,
        "kernel/mmu": 20, "kernel/other": 90,
    }
    parents = {r["id"]: r["parent"] for r in kernel}
    assert parents["kernel/physmem"] == ""
    assert parents["kernel/heap/allocated"] == parents["kernel/heap/free"] == "kernel/heap"
    assert "kernel/ipc" not in sizes  # ipc is not a record in Fuchsia either


def test_unknown_kernel_values_keep_the_tree_and_stay_unknown():
    k = KernelStats(total_bytes=None, free_bytes=5, vmo_bytes=None, total_heap_bytes=7)
    snap = replace(sample_snapshot(), kernel=k)
    text = memgraph.dumps(snap)
    recs = _records(text)
    ids = [r["id"] for r in recs if r["type"] == "kernel"]
    assert ids == ["kernel/physmem", "kernel/free", "kernel/vmo", "kernel/heap"]
    check_treemap_structure(recs)
    back = load_snapshot(io.StringIO(text))
    assert back.kernel == k
    assert back.kernel.total_bytes is None and back.kernel.other_bytes is None


def test_task_record_keys_and_walk_order():
    recs = _records(memgraph.dumps(sample_snapshot()))
    tasks = [r for r in recs if r["type"] in ("j", "p", "t")]
    assert [r["id"] for r in tasks] == [
        "j/10", "p/7", "p/300", "j/20", "p/100", "t/100", "t/101", "t/102", "j/30",
        "j/50", "j/99", "p/400",
    ]
    by_id = {r["id"]: r for r in tasks}
    assert list(by_id["j/10"])[:5] == ["id", "type", "koid", "parent", "name"]
    assert list(by_id["p/100"])[:11] == [
        "id", "type", "koid", "parent", "name", "private_bytes", "shared_bytes", "pss_bytes",
        "vmos", "vmo_refs", "handle_stats",
    ]
    assert list(by_id["t/101"]) == ["id", "type", "koid", "parent", "name", "state"]
    assert [by_id[f"t/{k}"]["state"] for k in (100, 101, 102)] == [
        "RUNNING", "BLOCKED", "<UNKNOWN>"]
    assert by_id["p/100"]["pss_bytes"] == 1000 * 4096
    assert by_id["p/100"]["handle_stats"] == {"file": 3, "memfd": 2, "socket": 1}
    # One vmos entry per reference, duplicates kept (a memfd held twice).
    assert [v["koid"] for v in by_id["p/100"]["vmos"]] == [
        r["vmo_koid"] for r in by_id["p/100"]["vmo_refs"]]
    refs = by_id["p/100"]["vmo_refs"]
    assert refs[0] == {"vmo_koid": 1, "via": ["MAPPING"]}
    # The memfd's committed bytes are unknown, which treemap.py cannot
    # draw: its two references (positions 2 and 3) are in linux.unsized_vmos.
    unsized = by_id["p/100"]["linux"]["unsized_vmos"]
    assert [u[0] for u in unsized] == [2, 3] and len(refs) == 2
    assert all(u[1]["koid"] == u[2]["vmo_koid"] and "committed_bytes" not in u[1]
               for u in unsized)
    assert unsized[0][2]["handle_rights"] == ["READ", "WRITE"]
    # Unreadable memory: Fuchsia's three sizes are left out, never 0.
    assert "pss_bytes" not in by_id["p/7"] and by_id["p/7"]["linux"]["memory"] is None
    # Further root jobs hang under the first; their real parent is kept.
    assert by_id["j/50"]["parent"] == "j/10" and by_id["j/50"]["linux"]["parent_koid"] == 0
    assert by_id["j/99"]["linux"]["parent_koid"] == 77
    assert recs[-1]["type"] == "__META"
    assert recs[-1]["timestamp"] == "2026-01-02T03:04:05.678Z"
    assert recs[-1]["linux"]["format"] == memgraph.FORMAT


def test_treemap_structure_and_schema():
    text = memgraph.dumps(sample_snapshot())
    recs = _records(text)
    check_treemap_structure(recs)
    schema_validator().validate(recs)


def test_names_are_always_valid_json():
    text = memgraph.dumps(sample_snapshot())
    assert "\x1b" not in text and "\x01" not in text and "\u202e" not in text
    text.encode("ascii")  # whatever stdout's encoding is
    recs = _records(text)
    assert {r["name"] for r in recs if r.get("id") in ("p/100", "j/20", "t/101")} == {HOSTILE}


def test_round_trip_is_equal():
    snap = sample_snapshot()
    back = load_snapshot(io.StringIO(memgraph.dumps(snap)))
    assert back == snap
    # and again through bytes, as a file is read
    back2 = load_snapshot(io.BytesIO(memgraph.dumps(back).encode()))
    assert back2 == snap


def test_round_trip_without_kernel_and_minimal():
    snap = replace(sample_snapshot(), kernel=None)
    assert load_snapshot(io.StringIO(memgraph.dumps(snap))) == snap
    from zxmem.model import Job, Provenance

    tiny = Snapshot(Provenance(source="linux"), (Job(1, "root", 0),), ())
    assert load_snapshot(io.StringIO(memgraph.dumps(tiny))) == tiny


def test_options_leave_parts_out():
    snap = sample_snapshot()
    recs = _records(memgraph.dumps(snap, threads=False, vmos=False, handles=False))
    assert not [r for r in recs if r["type"] == "t"]
    p = next(r for r in recs if r.get("id") == "p/100")
    assert "vmos" not in p and "vmo_refs" not in p and "handle_stats" not in p
    assert "mappings" not in p["linux"]
    back = load_snapshot(io.StringIO(memgraph.dumps(snap, threads=False, vmos=False,
                                                    handles=False)))
    bp = back.process(100)
    assert bp.threads == () and bp.vmo_refs is None and bp.mappings is None
    assert bp.handle_stats is None and back.vmos == {}
    assert bp.memory == snap.process(100).memory


def test_vmos_no_process_lists_travel_in_meta():
    snap = sample_snapshot()
    recs = _records(memgraph.dumps(snap))
    meta = recs[-1]["linux"]
    assert [v["koid"] for v in meta["vmos"]] == [3]
    assert "size_bytes" not in meta["vmos"][0]  # unknown size: left out, not 0
    back = load_snapshot(io.StringIO(memgraph.dumps(snap)))
    assert back.vmos[3].size_bytes is None


def test_reads_fuchsias_illustrative_records():
    # spec fuchsia-tools §5.5, completed, in the tool's -v layout (records
    # over several lines); no "linux" fields anywhere.
    with open(os.path.join(FIXTURES, "fuchsia_illustrative.json"), encoding="utf-8") as f:
        text = f.read()
    snap = load_snapshot(io.StringIO(text))
    assert snap.provenance.source == "fuchsia-memgraph"
    assert snap.provenance.timestamp == "2017-06-07T05:51:08.021Z"
    k = snap.kernel
    assert (k.total_bytes, k.free_bytes, k.vmo_bytes) == (2147483648, 1768362803, 333237452)
    assert (k.total_heap_bytes, k.free_heap_bytes) == (1000, 400)
    assert k.wired_bytes is None and k.ipc_bytes is None
    assert [(j.koid, j.parent_koid, j.name) for j in snap.jobs] == [(1028, 0, "root")]
    p = snap.process(1043)
    assert p.job_koid == 1028 and p.display_name == "bin/devmgr"
    assert (p.memory.pss_bytes, p.memory.private_bytes, p.memory.shared_bytes) == (
        1419571, 1417216, 28672)
    assert p.threads[0].state == "blocked" and p.threads[0].name == "initial-thread"
    assert len(p.vmo_refs) == 2 and p.vmo_refs[0].handle_rights[-1] == "TRANSFER"
    assert list(snap.vmos) == [1170] and snap.vmos[1170].committed_bytes == 4096
    assert dict(p.handle_stats) == {"thread": 3, "vmo": 12}
    assert snap.process(1050).memory is None  # stats failed: unknown, not 0
    # What zxmem writes from it satisfies treemap.py and reads back equal.
    recs = _records(memgraph.dumps(snap))
    check_treemap_structure(recs)
    assert load_snapshot(io.StringIO(memgraph.dumps(snap))) == snap


def test_handle_stats_zero_counts_are_left_out():
    snap = sample_snapshot()
    p = replace(snap.process(100), handle_stats=MappingProxyType({"file": 2, "pipe": 0}))
    snap = replace(snap, processes=tuple(p if q.koid == 100 else q for q in snap.processes))
    rec = next(r for r in _records(memgraph.dumps(snap)) if r.get("id") == "p/100")
    assert rec["handle_stats"] == {"file": 2}


def test_schema_command(cli):
    r = cli(["memgraph", "-S"])
    assert r.status == 0
    schema = json.loads(r.stdout)
    assert schema["$schema"].startswith("http://json-schema.org/draft-04/")
    schema_validator()  # checks the schema itself


def test_memgraph_from_file(cli, tmp_path):
    path = tmp_path / "snap.json"
    path.write_text(memgraph.dumps(sample_snapshot()))
    r = cli(["memgraph", "-vtH", "--from", str(path)])
    assert r.status == 0, r.stderr
    assert r.stdout == path.read_text()
    r = cli(["memgraph", "--from", str(path)])
    recs = _records(r.stdout)
    assert not [x for x in recs if x["type"] == "t"]
    check_treemap_structure(recs)


def test_ps_from_memgraph_matches_ps_of_the_snapshot(cli, tmp_path, monkeypatch):
    snap = sample_snapshot()
    path = tmp_path / "snap.json"
    path.write_text(memgraph.dumps(snap))
    import zxmem.sources.linux as linux

    monkeypatch.setattr(linux, "collect", lambda root, options=None: snap)
    for extra in ([], ["-T"], ["--json"], ["--style=late"]):
        live = cli(["ps", *extra])
        saved = cli(["ps", "--from", str(path), *extra])
        assert live.status == saved.status == 0, saved.stderr
        assert saved.stdout == live.stdout
        assert any(k in live.stdout for k in ("p:100", "p: 100", '"p/100"'))


TREES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "proc-trees")


def test_recorded_trees_ps_from_memgraph_equals_ps(cli, tmp_path):
    import pytest

    done = 0
    for tree in ("cgroup-v1-hybrid", "cgroup-v2", "hostile-names", "unreadable-smaps",
                 "kthread-zombie"):
        proc = os.path.join(TREES, tree, "proc")
        if not os.path.isdir(proc):
            continue
        r = cli(["memgraph", "-tH", "--proc-root", proc])
        assert r.status == 0, r.stderr
        recs = _records(r.stdout)
        schema_validator().validate(recs)
        path = tmp_path / f"{tree}.json"
        path.write_text(r.stdout)
        for extra in ([], ["-T"], ["--style=late"]):
            live = cli(["ps", "--proc-root", proc, *extra])
            saved = cli(["ps", "--from", str(path), *extra])
            assert saved.status == live.status == 0, saved.stderr
            assert saved.stdout == live.stdout, (tree, extra)
            assert saved.stderr == live.stderr
        done += 1
    if not done:
        pytest.skip(f"no recorded /proc trees under {TREES}")


def test_descriptor_kinds():
    import re as _re

    from zxmem.sources.handles import count_kinds, fd_kind

    cases = {
        "socket:[12345]": "socket",
        "pipe:[77]": "pipe",
        "anon_inode:[eventfd]": "eventfd",
        "anon_inode:[eventpoll]": "eventpoll",
        "anon_inode:[timerfd]": "timerfd",
        "anon_inode:inotify": "inotify",
        "anon_inode:bpf-map": "bpf_map",
        "anon_inode:[io_uring]": "io_uring",
        "/memfd:zxmem (deleted)": "memfd",
        "/dmabuf:": "dmabuf",
        "/SYSV00000000 (deleted)": "sysv",
        "/dev/shm/seg": "shmem",
        "/dev/null": "device",
        "/usr/lib/libc.so.6": "file",
        "/tmp/a file with: colon": "file",
        "net:[4026531840]": "net",
        "what is this": "unknown",
        "": "unknown",
    }
    for target, kind in cases.items():
        assert fd_kind(target) == kind, target
        assert _re.fullmatch(r"[a-z0-9_]+", fd_kind(target))
    assert count_kinds(["pipe:[1]", "pipe:[1]", "/x"]) == {"file": 1, "pipe": 2}


def test_mapping_rows_follow_their_field_names():
    # A file from another version: fields in another order, one unknown.
    snap = sample_snapshot()
    recs = _records(memgraph.dumps(snap))
    p = next(r for r in recs if r.get("id") == "p/100")
    names = p["linux"]["mapping_fields"]
    order = list(reversed(range(len(names))))
    p["linux"]["mapping_fields"] = [names[i] for i in order] + ["x_future"]
    p["linux"]["mappings"] = [[row[i] for i in order] + [1] for row in p["linux"]["mappings"]]
    back = load_snapshot(io.StringIO(json.dumps(recs)))
    assert back.process(100).mappings == snap.process(100).mappings
    p["linux"]["mappings"][0] = [1, 2]
    import pytest

    from zxmem.errors import InputError

    with pytest.raises(InputError, match=r"record \d+ \(p/100\): linux.mappings\[0\]"):
        load_snapshot(io.StringIO(json.dumps(recs)))


def test_written_text_is_the_records_encoded():
    # The writer builds each record's text in pieces (VMO entries encoded
    # once, rows as tuples); it must be exactly the records encoded one by
    # one, for every combination of options.
    from zxmem.model import VmoRef

    snap = sample_snapshot()
    p = snap.process(100)
    odd_refs = (VmoRef(7, ("HANDLE", "MAPPING"), ("READ",), 3), VmoRef(8, ("MAPPING",), (), 4))
    snap = replace(snap, processes=tuple(
        replace(q, vmo_refs=(q.vmo_refs or ()) + odd_refs) if q.koid == p.koid else q
        for q in snap.processes))
    for snapshot in (snap, replace(snap, kernel=None)):
        for threads in (False, True):
            for vmos in (False, True):
                for handles in (False, True):
                    opts = {"threads": threads, "vmos": vmos, "handles": handles}
                    recs = list(memgraph.records(snapshot, **opts))
                    lines = [f"  {json.dumps(r)}," for r in recs]
                    lines[-1] = lines[-1][:-1] + " "
                    assert memgraph.dumps(snapshot, **opts) == "\n".join(
                        ["[", *lines, "]", ""]), opts


def test_negative_and_absurd_byte_counts_are_rejected():
    # A damaged or hand-made file: every byte count must be 0 .. 2**64 - 1,
    # and the error names the record and the field.
    import pytest

    from zxmem.errors import InputError

    snap = sample_snapshot()
    good = _records(memgraph.dumps(snap))
    assert memgraph.snapshot_from_records(good, source="x") is not None

    def first(recs, pred):
        return next(i for i, r in enumerate(recs) if pred(r))

    def vmo_entry(r):
        return r.get("type") == "p" and any(set(e) != {"koid"} for e in r.get("vmos") or ())

    def set_vmo(field, value):
        def edit(recs):
            i = first(recs, vmo_entry)
            e = next(e for e in recs[i]["vmos"] if set(e) != {"koid"})
            e[field] = value
            return i, rf"vmos\[\d+\]: '{field}'"
        return edit

    def set_process(field, value):
        def edit(recs):
            i = first(recs, lambda r: r.get("type") == "p")
            recs[i][field] = value
            return i, f"'{field}'"
        return edit

    def set_kernel(value):
        def edit(recs):
            i = first(recs, lambda r: r.get("type") == "kernel")
            recs[i]["size_bytes"] = value
            return i, "'size_bytes'"
        return edit

    def set_memory(field, value):
        def edit(recs):
            i = first(recs, lambda r: r.get("type") == "p"
                      and isinstance((r.get("linux") or {}).get("memory"), dict))
            recs[i]["linux"]["memory"][field] = value
            return i, rf"linux\.memory\.'{field}'"
        return edit

    def set_meta_vmo(recs):
        recs[-1]["linux"]["vmos"][0]["size_bytes"] = -1
        return len(recs) - 1, r"\(__META\): linux\.vmos\[0\]: 'size_bytes'"

    cases = [
        set_meta_vmo,
        set_vmo("size_bytes", -1),
        set_vmo("committed_bytes", 2**70),
        set_vmo("committed_bytes", 2**64),
        set_process("pss_bytes", -5),
        set_process("private_bytes", 2**64),
        set_kernel(-4096),
        set_memory("swap_bytes", -1),
    ]
    for edit in cases:
        recs = json.loads(json.dumps(good))
        index, field = edit(recs)
        with pytest.raises(InputError, match=rf"memgraph record {index} .*{field} is -?\d+"):
            memgraph.snapshot_from_records(recs, source="x")
    # The largest representable count is fine.
    recs = json.loads(json.dumps(good))
    recs[first(recs, lambda r: r.get("type") == "p")]["pss_bytes"] = 2**64 - 1
    memgraph.snapshot_from_records(recs, source="x")


def test_a_forked_helper_writes_the_same_text(monkeypatch):
    # write_memgraph(fork=True) has a forked process format the later task
    # records: the text is the same, __META's VMOs included; a helper that
    # dies leaves its records to this process.
    if not hasattr(os, "fork") or not hasattr(os, "memfd_create"):
        pytest.skip("no fork or memfd here: one process writes everything")
    snap = sample_snapshot()
    monkeypatch.setattr(memgraph, "_FORK_MIN_ROWS", 0)
    units = memgraph._units(snap)
    cut = memgraph._fork_cut(units)
    assert cut is not None and 0 < cut < len(units)
    assert any(not isinstance(u, dict) and u.vmo_refs for u in units[cut:])
    started = []
    real_start = memgraph._HalfWriter.start

    def start(produce):
        helper = real_start(produce)
        started.append(helper)
        return helper

    monkeypatch.setattr(memgraph._HalfWriter, "start", staticmethod(start))
    for threads in (False, True):
        for handles in (False, True):
            opts = {"threads": threads, "vmos": True, "handles": handles}
            buf = io.StringIO()
            memgraph.write_memgraph(snap, buf, fork=True, **opts)
            assert buf.getvalue() == memgraph.dumps(snap, **opts), opts
    assert len(started) == 4 and all(h is not None and h.status == 0 for h in started)

    children_die_at_once(monkeypatch)
    buf = io.StringIO()
    memgraph.write_memgraph(snap, buf, fork=True)
    assert buf.getvalue() == memgraph.dumps(snap)
    assert started[-1] is not None and os.WEXITSTATUS(started[-1].status) == 3


def test_a_forked_helpers_text_copied_into_a_file_is_the_same(monkeypatch, tmp_path):
    # Into a UTF-8 file (also through the CLI's SafeWriter and GuardedStream)
    # the helper's bytes are copied by sendfile; when sendfile fails part-way
    # the rest is copied as text from where it stopped.  The file holds
    # exactly dumps()'s text either way.
    if not hasattr(os, "fork") or not hasattr(os, "memfd_create") or not hasattr(os, "sendfile"):
        pytest.skip("no fork, memfd or sendfile here: one process writes everything")
    from zxmem.outfile import GuardedStream
    from zxmem.textsafe import SafeWriter

    snap = sample_snapshot()
    monkeypatch.setattr(memgraph, "_FORK_MIN_ROWS", 0)
    want = memgraph.dumps(snap)
    real_sendfile = os.sendfile
    calls = []

    def sendfile_once(out_fd, in_fd, offset, count):
        calls.append(offset)
        if len(calls) > 1:
            raise OSError(errno.EINVAL, "refused")
        return real_sendfile(out_fd, in_fd, offset, min(count, 7))

    for name, fake in (("whole", None), ("part", sendfile_once)):
        if fake is not None:
            monkeypatch.setattr(os, "sendfile", fake)
        path = tmp_path / f"{name}.json"
        with open(path, "w", encoding="utf-8") as f:
            out = SafeWriter(GuardedStream(f))
            assert memgraph._utf8_fd(out) == f.fileno()
            memgraph.write_memgraph(snap, out, fork=True)  # type: ignore[arg-type]
        assert path.read_text(encoding="utf-8") == want, name
    assert calls == [0, 7]  # 7 bytes sent, then the rest as text
    with open(tmp_path / "latin.txt", "w", encoding="latin-1") as f:
        assert memgraph._utf8_fd(f) is None  # not UTF-8: written as text
    assert memgraph._utf8_fd(io.StringIO()) is None


def test_the_command_line_ends_without_freeing_the_snapshot(tmp_path):
    # The console entry point ends the process as soon as memgraph has
    # written (runtime.keep_until_exit): the output is complete and the exit
    # status is the command's, also when stdout fails.  In-process callers
    # (these tests, the library) keep nothing.
    import subprocess
    import sys

    from fixture_paths import REPO

    from zxmem import runtime

    root = str(REPO / "tests" / "fixtures" / "proc-trees" / "cgroup-v2" / "proc")
    # An exit handler shows whether the process ended the ordinary way.
    code = ("import atexit, sys; sys.argv = ['zxmem'] + sys.argv[1:]\n"
            "atexit.register(lambda: sys.stderr.write('ordinary exit\\n'))\n"
            "from zxmem._entry import run\nrun()\n")
    argv = [sys.executable, "-c", code, "memgraph", "-vt", "--proc-root", root]
    done = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)[-1]["type"] == "__META"
    assert "ordinary exit" not in done.stderr
    ps = subprocess.run(argv[:3] + ["ps", "--proc-root", root], capture_output=True,
                        text=True, timeout=120)
    assert ps.returncode == 0 and "ordinary exit" in ps.stderr  # ps keeps nothing
    if os.path.exists("/dev/full"):
        with open("/dev/full", "w") as full:
            failed = subprocess.run(argv, stdout=full, stderr=subprocess.PIPE, text=True,
                                    timeout=120)
        assert failed.returncode == 1
        assert "cannot write to standard output" in failed.stderr
    assert not runtime.ending_after_command
    runtime.keep_until_exit(object())
    assert not runtime.kept()


def test_object_entries_formatted_directly_are_the_encoders():
    # _vmo_text formats an object's entry itself (anonymous objects in one
    # step); whatever the values, the text must be the entry encoded.
    import random

    from zxmem.model import Vmo

    rng = random.Random(7)
    names = ["mmap-anonymous", "[heap]", "data:libc.so.6", "", HOSTILE, "\u202e\x1b[31m\"\\",
             "x" * 300]
    counts = [None, 0, 1, 4096, 2**64 - 1, True, 1.5]
    for _ in range(4000):
        anonymous = rng.random() < 0.6
        vmo = Vmo(
            koid=rng.choice([1, 2**40, True]) if rng.random() < 0.05 else rng.randint(1, 2**40),
            name=rng.choice(names), kind=rng.choice(["anon", "clone", "phys", "file", "memfd"]),
            size_bytes=rng.choice(counts), committed_bytes=rng.choice(counts),
            parent_koid=rng.choice([0, 5, None]), num_children=rng.choice([0, 2]),
            num_mappings=rng.choice([1, 3]), share_count=rng.choice([1, 2, None]),
            dev=None if anonymous else rng.choice([None, 2049]),
            inode=None if anonymous else rng.choice([None, 12]),
            path=None if anonymous else rng.choice([None, "/lib/a.so", HOSTILE]),
            swap_bytes=rng.choice([None, None, 0, 8192, False, 2.0]),
        )
        assert memgraph._vmo_text(vmo.koid, vmo) == json.dumps(
            memgraph._vmo_entry(vmo.koid, vmo)), vmo


def test_text_written_straight_to_the_file_is_what_safewriter_writes(monkeypatch, tmp_path):
    # Into a UTF-8 file this process writes its records' text to the file
    # descriptor itself, encoded once (the JSON is printable ASCII, which
    # zxmem's SafeWriter passes unchanged); a text SafeWriter would change
    # still goes through it, and a failing write goes on through it.  The
    # file holds what the stream alone would have written.
    from zxmem.outfile import GuardedStream
    from zxmem.textsafe import SafeWriter

    snap = sample_snapshot()
    odd = replace(snap, processes=tuple(
        replace(p, name=p.name + "\x7f" + HOSTILE) if i == 1 else p
        for i, p in enumerate(snap.processes)))
    real_write = os.write
    calls: list[int] = []
    failing = []

    def counted(fd, data):
        calls.append(len(data))
        if failing and len(calls) == 2:
            raise OSError(errno.EIO, "refused")
        return real_write(fd, data[:5] if failing else data)

    monkeypatch.setattr(os, "write", counted)
    for name, snapshot in (("plain", snap), ("hostile", odd), ("failing", snap)):
        failing[:] = [True] if name == "failing" else []
        want = io.StringIO()
        memgraph.write_memgraph(snapshot, SafeWriter(want))  # type: ignore[arg-type]
        calls.clear()
        path = tmp_path / f"{name}.json"
        with open(path, "w", encoding="utf-8") as f:
            out = SafeWriter(GuardedStream(f))
            memgraph.write_memgraph(snapshot, out)  # type: ignore[arg-type]
            direct = list(calls)
        text = path.read_text(encoding="utf-8")
        assert text == want.getvalue(), name
        if name == "failing":
            assert direct[1] == direct[0] - 5  # 5 bytes written, then the rest as text
        else:
            assert len(direct) == 1 and direct[0] > len(text) / 2  # the task records

    # A text with what SafeWriter escapes (not from the JSON encoder) goes
    # through it; the writes around it stay in order.
    failing.clear()
    pieces = ["ab\n", "c\x1b[2J\x7f\n", "d\n", "\u202e\u00e9\n", "e\n"]
    want = io.StringIO()
    for piece in pieces:
        SafeWriter(want).write(piece)
    path = tmp_path / "escaped.txt"
    with open(path, "w", encoding="utf-8") as f:
        out = SafeWriter(GuardedStream(f))
        write = memgraph._DirectWriter.wrap(out)  # type: ignore[arg-type]
        for piece in pieces:
            write(piece)
    assert path.read_text(encoding="utf-8") == want.getvalue()
    assert "\x1b" not in want.getvalue()
