"""``--from FILE`` on vmaps, vmos, kstats -m, k vmos and k ps.

The main check: a recorded ``/proc`` tree read live (``--proc-root``) and
the same tree saved with ``zxmem memgraph -vtH`` and read back (``--from``)
give byte-identical output.  The tree is the recorded workload process of
``tests/fixtures/objects/workload`` (the golden vmaps/vmos one: a memfd held
only by a descriptor, a memfd mapped twice, a ``data:`` clone, a thread
stack), completed with the files the system-wide collector reads
(``status``, ``cgroup``, ``meminfo``).  Hidden objects need the hidden-object
scan, which memgraph does not run: those snapshots are the very ones the
live ``k vmos hidden|all`` renders, saved with the memgraph writer.

Then the bad days: a PID the file does not hold, a file recorded without
what the view needs (no ``-v``, no ``-H``, a Fuchsia capture), options that
need the live system, malformed input.
"""

from __future__ import annotations

import argparse
import io
import json
import os
import re
import shutil
from pathlib import Path

import fixture_paths
import pytest

from zxmem.cli import Environment
from zxmem.memgraph import write_memgraph
from zxmem.model import Job, Mapping, Process, Provenance, Snapshot
from zxmem.sources.load import load_snapshot

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
WORKLOAD = FIXTURES / "objects" / "workload" / "proc"
HIDDEN = FIXTURES / "hidden"
CAPTURE = str(fixture_paths.CAPTURE)
PID = "6475"

STATUS = (
    "Name:\tpython\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\n"
    "Gid:\t0\t0\t0\t0\nVmPTE:\t     120 kB\nThreads:\t2\n"
)


def run_capturing_snapshot(args: list[str]) -> tuple[str, Snapshot]:
    """Run a memgraph command in-process; its output and the snapshot it wrote."""
    import zxmem.memgraph as memgraph
    from zxmem.cli import main

    written: list[Snapshot] = []
    real = memgraph.write_memgraph

    def spy(snapshot, out, **kwargs):
        written.append(snapshot)
        return real(snapshot, out, **kwargs)

    out, err = io.StringIO(), io.StringIO()
    memgraph.write_memgraph = spy
    try:
        status = main(args, Environment(stdout=out, stderr=err, stdout_isatty=False))
    finally:
        memgraph.write_memgraph = real
    assert status == 0, err.getvalue()
    assert len(written) == 1
    return out.getvalue(), written[0]


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> str:
    """The workload tree, with what a whole-system collection needs."""
    root = tmp_path_factory.mktemp("tree") / "proc"
    shutil.copytree(WORKLOAD, root, symlinks=True)
    (root / PID / "status").write_text(STATUS)
    (root / PID / "cgroup").write_text("0::/\n")
    shutil.copy(HIDDEN / "linux-6.18" / "proc" / "meminfo", root / "meminfo")
    # A snapshot does not record vm.mmap_min_addr; without the file the
    # live command uses the same default, so /A lines agree too.
    (root / "sys" / "vm" / "mmap_min_addr").unlink()
    return str(root)


@pytest.fixture(scope="module")
def saved(tree, tmp_path_factory) -> tuple[str, Snapshot]:
    """``memgraph -vtH`` of the tree in a file, and the snapshot it wrote."""
    path = tmp_path_factory.mktemp("saved") / "snap.json"
    text, snapshot = run_capturing_snapshot(["memgraph", "-vtH", "--proc-root", tree])
    path.write_text(text)
    return str(path), snapshot


LIVE_AND_SAVED = [
    (["vmaps", PID], ["vmaps", PID]),
    (["vmaps", "--extra", PID], ["vmaps", "--extra", PID]),
    (["vmaps", "--json", PID], ["vmaps", "--json", PID]),
    (["vmos", PID], ["vmos", PID]),
    (["vmos", "--json", PID], ["vmos", "--json", PID]),
    (["k", "vmos", PID], ["k", "vmos", PID]),
    (["k", "vmos", PID, "-uk"], ["k", "vmos", PID, "-uk"]),
    (["k", "vmos", PID, "--json"], ["k", "vmos", PID, "--json"]),
    (["k", "ps"], ["k", "ps"]),
    (["k", "ps", "--sort=fds"], ["k", "ps", "--sort=fds"]),
    (["k", "ps", "--json"], ["k", "ps", "--json"]),
    (["kstats", "-m", "-n", "1"], ["kstats", "-m"]),
    (["kstats", "-m", "-n", "1", "--style=late", "--units=k"],
     ["kstats", "-m", "--style=late", "--units=k"]),
    (["kstats", "--explain", "-n", "1"], ["kstats", "--explain", "-n", "1"]),
]


@pytest.mark.parametrize("live, from_args", LIVE_AND_SAVED,
                         ids=[" ".join(a) for a, _ in LIVE_AND_SAVED])
def test_saved_gives_the_live_view(cli, tree, saved, live, from_args):
    path, _ = saved
    if live[0] == "k":
        live = [*live[:2], "--proc-root", tree, *live[2:]]
        from_args = [*from_args[:2], "--from", path, *from_args[2:]]
    else:
        live = [live[0], "--proc-root", tree, *live[1:]]
        from_args = [from_args[0], "--from", path, *from_args[1:]]
    a = cli(live)
    b = cli(from_args)
    assert a.status == 0, a.stderr
    assert b.status == 0, b.stderr
    assert "Traceback" not in b.stderr
    if live[:2] == ["k", "vmos"] and "--json" in live:
        # "notes" are what the snapshot could not read: a saved one says
        # everything its recording noted (kernel files, smaps), live k vmos
        # only what its own reading did.  Everything else is equal.
        doc_a, doc_b = json.loads(a.stdout), json.loads(b.stdout)
        assert set(doc_a.pop("notes")) <= set(doc_b.pop("notes"))
        assert doc_b == doc_a
        return
    assert a.stdout and b.stdout == a.stdout


def test_saved_views_render_the_written_snapshot(cli, saved):
    """--from prints exactly what the views make of the snapshot memgraph wrote."""
    from zxmem.views import kvmos, vmaps, vmos

    path, snap = saved
    proc = snap.process(int(PID))
    assert proc is not None and proc.mappings
    assert cli(["vmaps", "--from", path, PID]).stdout == vmaps.render(proc, snap)
    assert cli(["vmos", "--from", path, PID]).stdout == vmos.render(proc, snap)
    assert cli(["k", "vmos", PID, "--from", path]).stdout == kvmos.render_process(proc, snap)


def test_saved_workload_facts(cli, saved):
    """The recorded workload's known shapes survive the file (not only equality)."""
    path, _ = saved
    out = cli(["vmos", "--from", path, PID]).stdout
    held = [ln for ln in out.splitlines() if ln.endswith(" memfd:held")]
    assert len(held) == 1 and held[0].startswith("rw----")  # a handle, never mapped
    twice = [ln.split() for ln in out.splitlines() if ln.endswith(" memfd:twice")]
    assert len(twice) == 4 and all(r[4:6] == ["2", "1"] for r in twice)  # #map 2, #shr 1
    maps = cli(["vmaps", "--from", path, PID]).stdout
    assert "'data:private.bin'" in maps and " 12k:res " in maps
    assert maps.startswith("/A ________00010000-")


# --------------------------------------------------------------------------
# k vmos hidden|all: snapshots holding the hidden objects


def _hidden_snapshot(root: str, target: str) -> Snapshot:
    from zxmem.commands import k

    args = argparse.Namespace(proc_root=root, walk_limit=None)
    snapshot, process = k._live_vmos(args, Environment(proc_root=root), target)
    assert process is None
    return snapshot


@pytest.mark.parametrize("tree_name", ["linux-6.18", "old-kernel", "no-sysvipc"])
@pytest.mark.parametrize("target, extra", [("hidden", []), ("hidden", ["-uk"]),
                                            ("hidden", ["--json"]), ("all", []),
                                            ("all", ["--json"])])
def test_k_vmos_hidden_from_saved(cli, tmp_path, tree_name, target, extra):
    root = str(HIDDEN / tree_name / "proc")
    snapshot = _hidden_snapshot(root, target)
    path = tmp_path / "hidden.json"
    with open(path, "w", encoding="utf-8") as f:
        write_memgraph(snapshot, f, threads=True, vmos=True, handles=True)
    live = cli(["k", "vmos", target, *extra, "--proc-root", root])
    saved = cli(["k", "vmos", target, *extra, "--from", str(path)])
    assert live.status == 0 and saved.status == 0, saved.stderr
    assert saved.stdout == live.stdout


def test_k_vmos_hidden_needs_hidden_objects(cli, saved):
    path, _ = saved
    for target in ("hidden", "all"):
        r = cli(["k", "vmos", target, "--from", path])
        assert r.status == 1
        assert r.stdout == ""
        assert r.stderr.count("\n") == 1
        assert "has no hidden objects" in r.stderr and path in r.stderr


# --------------------------------------------------------------------------
# A PID the snapshot does not hold; snapshots without what a view needs


@pytest.mark.parametrize("args", [["vmaps"], ["vmos"], ["k", "vmos"]])
def test_unknown_pid(cli, saved, args):
    path, _ = saved
    r = cli([*args, "424242", "--from", path])
    assert r.status == 1
    assert r.stderr == f"zxmem: {path}: no process with pid 424242 in the snapshot\n"


@pytest.fixture(scope="module")
def light(tree, tmp_path_factory) -> str:
    """``memgraph -t`` of the tree: no mappings, objects or descriptors."""
    path = tmp_path_factory.mktemp("light") / "light.json"
    path.write_text(run_capturing_snapshot(["memgraph", "-t", "--proc-root", tree])[0])
    return str(path)


@pytest.mark.parametrize("args, says", [
    (["vmaps", PID], "the snapshot has no memory maps: record it with `zxmem memgraph -v`"),
    (["vmos", PID], "the snapshot has no memory objects: record it with `zxmem memgraph -v`"),
    (["k", "vmos", PID], "the snapshot has no memory objects: record it with "
                         "`zxmem memgraph -v`"),
    (["k", "ps"], "the snapshot has no descriptor counts: record it with `zxmem memgraph -H`"),
])
def test_snapshot_without_v_or_h(cli, light, args, says):
    r = cli([*args, "--from", light])
    assert r.status == 1
    assert r.stdout == ""
    assert r.stderr == f"zxmem: {light}: {says}\n"


def test_process_whose_maps_were_denied(cli, tmp_path):
    """Maps recorded for one process, denied for another: the error says so."""
    m = Mapping(0x400000, 0x401000, "r-xp", 0, 0, 0, "", 1, rss_bytes=4096)
    snap = Snapshot(
        Provenance("linux", denied=(("maps:20", "EACCES"),)),
        (Job(1, "root", 0),),
        (Process(10, "ok", 1, mappings=(m,), regions=(), vmo_refs=()),
         Process(20, "denied", 1)),
    )
    path = tmp_path / "denied.json"
    with open(path, "w", encoding="utf-8") as f:
        write_memgraph(snap, f, vmos=True)
    r = cli(["vmaps", "--from", str(path), "20"])
    assert r.status == 1
    assert r.stderr == (f"zxmem: {path}: the memory maps of pid 20 were not readable "
                        "when the snapshot was taken (EACCES)\n")
    ok = cli(["vmaps", "--from", str(path), "10"])
    assert ok.status == 0
    assert ok.stdout.splitlines()[2].startswith("M ________00400000-________00401000 r-x")


# --------------------------------------------------------------------------
# Fuchsia capture


def _capture() -> str:
    if not os.path.exists(CAPTURE):
        pytest.skip(f"Fuchsia capture fixture missing: {CAPTURE}")
    return CAPTURE


def test_capture_vmos(cli):
    path = _capture()
    snap = load_snapshot(path)
    proc = snap.process(32269)
    r = cli(["vmos", "--from", path, "32269"])
    assert r.status == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == lines[-1] and lines[0].startswith("rights  koid")
    rows = lines[1:-1]
    assert len(rows) == len(proc.vmo_refs) > 0
    # A capture does not say how a process reaches a VMO: no handle rights.
    assert all(row.split()[0] == "-" for row in rows)
    koids = [int(row.split()[1]) for row in rows]
    assert koids == [ref.vmo_koid for ref in proc.vmo_refs]
    doc = json.loads(cli(["vmos", "--json", "--from", path, "32269"]).stdout)
    assert doc["pid"] == 32269 and all(v["via"] == [] for v in doc["vmos"])


def test_capture_vmaps_says_no_mappings(cli):
    path = _capture()
    r = cli(["vmaps", "--from", path, "32269"])
    assert r.status == 1
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and "a Fuchsia capture has no memory maps" in r.stderr


def test_capture_kernel_views(cli):
    path = _capture()
    r = cli(["kstats", "-m", "--from", path])
    assert r.status == 0, r.stderr
    total = load_snapshot(path).kernel.total_bytes
    with open(path, encoding="utf-8") as f:
        assert json.load(f)["Kernel"]["total"] == total
    assert r.stdout.splitlines()[1].split()[0] == f"{total / 2**20:.1f}M"
    kps = cli(["k", "ps", "--from", path])
    assert kps.status == 1 and "no descriptor counts" in kps.stderr
    kv = cli(["k", "vmos", "32269", "--from", path])
    assert kv.status == 1 and kv.stderr.count("\n") == 1
    assert "holds by descriptor" in kv.stderr


# --------------------------------------------------------------------------
# kstats -m --from


def test_kstats_from_is_one_report_with_the_snapshot_time(cli, saved):
    path, snap = saved
    r = cli(["kstats", "-m", "-t", "--from", path])
    assert r.status == 0, r.stderr
    assert r.stdout.startswith(f"\n--- {snap.provenance.timestamp} ---\n")
    assert r.stdout.count("total") == 1
    doc = json.loads(cli(["kstats", "--json", "--from", path]).stdout)
    assert doc["timestamp"] == snap.provenance.timestamp
    assert doc["memory"]["total_bytes"] == snap.kernel.total_bytes


@pytest.mark.parametrize("flags, named", [
    (["-c"], "-c"), (["-m", "-d", "2"], "-d"), (["-m", "-n", "3"], "-n"),
    (["-m", "-c", "-d", "1"], "-c, -d"),
])
def test_kstats_from_rejects_live_only_flags(cli, saved, flags, named):
    path, _ = saved
    r = cli(["kstats", *flags, "--from", path])
    assert r.status == 2
    assert r.stderr == f"zxmem: {named} need{'s' if ',' not in named else ''} the live " \
                       "system: not with --from\n"


def test_kstats_from_without_kernel_records(cli, tmp_path):
    snap = Snapshot(Provenance("linux"), (Job(1, "root", 0),), ())
    path = tmp_path / "nokernel.json"
    with open(path, "w", encoding="utf-8") as f:
        write_memgraph(snap, f)
    r = cli(["kstats", "-m", "--from", str(path)])
    assert r.status == 1
    assert "no kernel memory statistics" in r.stderr and r.stderr.count("\n") == 1


@pytest.mark.parametrize("args", [["vmaps", "--exact", PID], ["vmos", "--exact", PID],
                                  ["k", "vmos", "hidden", "--walk-limit", "5"]])
def test_live_only_flags_with_from(cli, saved, args):
    path, _ = saved
    r = cli([*args, "--from", path])
    assert r.status == 2
    assert "need the live system" in r.stderr or "needs the live system" in r.stderr


# --------------------------------------------------------------------------
# Malformed input and stdin


@pytest.mark.parametrize("args", [["vmaps", PID], ["vmos", PID], ["kstats", "-m"],
                                  ["k", "vmos", "hidden"], ["k", "vmos", PID], ["k", "ps"]])
def test_malformed_file_names_the_offset(cli, tmp_path, args):
    path = tmp_path / "bad.json"
    path.write_text('[\n  {"id": "j/1", "type": "j", "koid": 1,, "parent": ""}\n]\n')
    where = 2 if args[0] == "k" else 1
    r = cli([*args[:where], "--from", str(path), *args[where:]])
    assert r.status == 1
    assert r.stdout == ""
    assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr
    assert re.search(rf"{re.escape(str(path))}: .*at byte \d+", r.stderr), r.stderr


def test_from_stdin(cli, saved):
    path, _ = saved
    with open(path, encoding="utf-8") as f:
        text = f.read()
    a = cli(["vmaps", "--from", path, PID])
    b = cli(["vmaps", "--from", "-", PID], stdin=io.StringIO(text))
    assert b.status == 0 and b.stdout == a.stdout
    r = cli(["vmaps", "--from", "-", "9"], stdin=io.StringIO(text))
    assert r.stderr == "zxmem: stdin: no process with pid 9 in the snapshot\n"


# --------------------------------------------------------------------------
# k ps: memgraph's descriptor kinds map onto k ps's columns exactly


def test_handle_kinds_map_onto_k_ps_columns():
    from zxmem.commands.k import fd_kinds_from_handle_stats
    from zxmem.sources.handles import count_kinds
    from zxmem.sources.kernel import count_fd_kinds

    links = [
        "/usr/lib/libc.so.6", "/dev/null", "/dev/shm/seg", "/SYSV00000000 (deleted)",
        "/memfd:buf (deleted)", "/dmabuf:frame", "socket:[123]", "pipe:[7]",
        "anon_inode:[eventfd]", "anon_inode:[timerfd]", "anon_inode:[eventpoll]",
        "anon_inode:[signalfd]", "anon_inode:inotify", "anon_inode:[pidfd]",
        "net:[4026531840]", "/tmp/file (deleted)", "weird",
    ]
    expected = count_fd_kinds([t.encode() for t in links])
    assert fd_kinds_from_handle_stats(count_kinds(links)) == expected
    assert fd_kinds_from_handle_stats(None) is None
    assert fd_kinds_from_handle_stats({}) == dict.fromkeys(expected, 0)


def test_help_has_from_examples(cli):
    for args in (["vmaps"], ["vmos"], ["kstats"], ["k", "vmos"], ["k", "ps"]):
        r = cli([*args, "--help"])
        assert r.status == 0
        assert "--from FILE" in r.stdout
        assert re.search(r"zxmem .*--from", r.stdout.split("examples:")[1]), args


# --------------------------------------------------------------------------
# Fuchsia's memgraph (with -v: vmos and vmo_refs, no mappings)

FUCHSIA_MEMGRAPH = str(FIXTURES / "memgraph" / "fuchsia_illustrative.json")


def test_fuchsia_memgraph_views(cli):
    from zxmem.views import vmos

    snap = load_snapshot(FUCHSIA_MEMGRAPH)
    proc = snap.process(1043)
    r = cli(["vmos", "--from", FUCHSIA_MEMGRAPH, "1043"])
    assert r.status == 0, r.stderr
    assert r.stdout == vmos.render(proc, snap)
    assert r.stdout.splitlines()[1].startswith("rwxmdt  1170 ")  # the handle row
    m = cli(["vmaps", "--from", FUCHSIA_MEMGRAPH, "1043"])
    assert m.status == 1
    assert m.stderr.count("\n") == 1 and "Fuchsia's memgraph has no memory maps" in m.stderr
    k = cli(["k", "vmos", "1043", "--from", FUCHSIA_MEMGRAPH])
    assert k.status == 0 and "Handles to VMOs:\n" in k.stdout
