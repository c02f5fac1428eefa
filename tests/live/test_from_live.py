"""Live → ``zxmem memgraph -vtH`` → ``--from``: the same views as live.

A workload of known shape (a memfd mapped by it and its child, a memfd held
only by a descriptor, a private file mapping with three written pages, an
anonymous mapping) runs while ``memgraph -vtH`` saves the whole system.
The system keeps changing between two commands, so ``--from`` is compared
with the views rendered from the very snapshot memgraph wrote (caught on its
way to the writer), byte for byte; and with the live commands where the
workload cannot have changed (its descriptors, its file mappings), and
against the workload's known numbers.
"""

from __future__ import annotations

import io
import json
import os
import re
import signal
import subprocess
import sys

import pytest

from zxmem.cli import Environment, main
from zxmem.model import INODE_KOID_BASE, Snapshot

pytestmark = pytest.mark.live

PAGE = 4096

WORKLOAD = r"""
import mmap, os, sys
directory = sys.argv[1]
PAGE = 4096
keep = []
shared = os.memfd_create("zxfrom-shared")
os.write(shared, b"s" * 8 * PAGE)
keep.append(mmap.mmap(shared, 8 * PAGE))
held = os.memfd_create("zxfrom-held")
os.write(held, b"h" * 3 * PAGE)
path = os.path.join(directory, "zxfrom-private.bin")
with open(path, "wb") as f:
    f.write(b"p" * 16 * PAGE)
with open(path, "r+b") as f:
    cow = mmap.mmap(f.fileno(), 16 * PAGE, access=mmap.ACCESS_COPY)
for i in (0, 5, 9):
    cow[i * PAGE] = 0x41
keep.append(cow)
anon = mmap.mmap(-1, 32 * PAGE)
for i in range(32):
    anon[i * PAGE] = 1
keep.append(anon)
child = os.fork()
if child == 0:
    sys.stdin.read()
    os._exit(0)
print("ready", os.getpid(), child, flush=True)
sys.stdin.read()
os.waitpid(child, 0)
"""


@pytest.fixture(scope="module")
def workload(tmp_path_factory):
    directory = tmp_path_factory.mktemp("from-live")
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", WORKLOAD, str(directory)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    pids: list[int] = []
    try:
        line = proc.stdout.readline().split()
        if not line or line[0] != "ready":
            pytest.fail("the --from workload did not start")
        pids = [int(x) for x in line[1:]]
        yield pids
    finally:
        proc.stdin.close()
        for pid in pids[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _run(args: list[str], stdin: str | None = None) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, stdout_isatty=False)
    if stdin is not None:
        env.stdin = io.StringIO(stdin)
    return main(args, env), out.getvalue(), err.getvalue()


@pytest.fixture(scope="module")
def saved(workload, tmp_path_factory) -> tuple[str, Snapshot]:
    """``memgraph -vtH`` of this machine in a file, and the snapshot written."""
    import zxmem.memgraph as memgraph

    written: list[Snapshot] = []
    real = memgraph.write_memgraph

    def spy(snapshot, out, **kwargs):
        written.append(snapshot)
        return real(snapshot, out, **kwargs)

    memgraph.write_memgraph = spy
    try:
        status, text, err = _run(["memgraph", "-vtH"])
    finally:
        memgraph.write_memgraph = real
    assert status == 0, err
    path = tmp_path_factory.mktemp("from-live-snap") / "snap.json"
    path.write_text(text)
    assert len(written) == 1
    return str(path), written[0]


def _from(args: list[str], path: str) -> str:
    where = 2 if args[0] == "k" else 1
    status, out, err = _run([*args[:where], "--from", path, *args[where:]])
    assert status == 0, err
    assert "Traceback" not in err
    return out


def test_vmaps_from_is_the_snapshot_view(workload, saved):
    from zxmem.views import vmaps

    path, snap = saved
    pid = workload[0]
    proc = snap.process(pid)
    assert proc is not None and proc.mappings
    min_addr = snap.provenance.mmap_min_addr
    assert min_addr is not None  # this machine's vm.mmap_min_addr is readable
    for extra, flags in (((), []), (vmaps.EXTRA_COLUMNS, ["--extra"])):
        opts = vmaps.VmapsOptions(extra=extra, min_addr=min_addr)
        assert _from(["vmaps", *flags, str(pid)], path) == vmaps.render(proc, snap, opts)
    assert _from(["vmaps", "--json", str(pid)], path) == vmaps.render_json(
        proc, snap, vmaps.VmapsOptions(min_addr=min_addr))


def test_vmos_from_is_the_snapshot_view(workload, saved):
    from zxmem.views import kvmos, vmos

    path, snap = saved
    for pid in workload:
        proc = snap.process(pid)
        assert proc is not None and proc.vmo_refs
        assert _from(["vmos", str(pid)], path) == vmos.render(proc, snap)
        assert _from(["vmos", "--json", str(pid)], path) == vmos.render_json(proc, snap)
        assert _from(["k", "vmos", str(pid)], path) == kvmos.render_process(proc, snap)


def test_kernel_views_from_are_the_snapshot_views(saved):
    from zxmem.commands.k import usage_rows
    from zxmem.sources.kernel import thread_size
    from zxmem.views import kps, kstats

    path, snap = saved
    assert snap.kernel is not None
    assert _from(["kstats", "-m"], path) == kstats.render_memory(snap.kernel)
    assert _from(["kstats", "-m", "--style=late"], path) == kstats.render_memory(
        snap.kernel, "late")
    assert _from(["kstats", "--explain"], path) == (
        kstats.render_memory(snap.kernel) + "\n" + kstats.render_explain(snap.kernel))
    rows = usage_rows(snap, kernel_threads=False, stack_size=thread_size())
    assert _from(["k", "ps"], path) == kps.render(rows, dict(snap.kernel.meminfo),
                                                   thread_size())


def _vmos_rows(text: str, name: str) -> list[list[str]]:
    return [line.split() for line in text.splitlines() if line.endswith(" " + name)]


def test_workload_shape_from_the_file(workload, saved):
    """The workload's known numbers, read back from the file."""
    path, _ = saved
    parent, child = workload
    out = _from(["vmos", str(parent)], path)
    shared = _vmos_rows(out, "memfd:zxfrom-shared")
    # Mapped by the parent and by the child: #map 2, #shr 2; alloc 8 pages.
    assert shared and all(r[4:6] == ["2", "2"] for r in shared)
    assert all(r[-2] == "32k" for r in shared)
    held = _vmos_rows(out, "memfd:zxfrom-held")
    assert len(held) == 1 and held[0][0] == "rw----" and held[0][4:6] == ["0", "0"]
    # Three written copy-on-write pages, still shared with the forked child:
    # each process's clone is charged half of them (its PSS), 12k together.
    clone = _vmos_rows(out, "data:zxfrom-private.bin")
    child_clone = _vmos_rows(_from(["vmos", str(child)], path), "data:zxfrom-private.bin")
    assert len(clone) == 1 and len(child_clone) == 1
    assert clone[0][-2] == child_clone[0][-2] == "6k"
    maps = _from(["vmaps", str(parent)], path)
    assert "'data:zxfrom-private.bin'" in maps and "'memfd:zxfrom-shared'" in maps
    kps = _from(["k", "ps"], path)
    row = [ln.split() for ln in kps.splitlines() if ln.split()[:1] == [str(parent)]]
    assert row and int(row[0][6]) >= 2  # #mf: both memfds are open


def _mask_sequence_koids(text: str) -> list[str]:
    """vmaps lines without /A and /R, sequence koids (anonymous objects and
    clones, numbered in scan order, so per snapshot) replaced by '#'."""
    def mask(m: re.Match) -> str:
        return " #:vmo" if int(m.group(1)) < INODE_KOID_BASE else m.group(0)

    return [re.sub(r" +(\d+):vmo", mask, line) for line in text.splitlines()[2:]]


def test_from_agrees_with_live_for_the_idle_workload(workload, saved):
    """The workload does not change between the two runs: its maps (but the
    per-snapshot koids), its descriptors and its k ps row are the same."""
    path, _ = saved
    parent = workload[0]
    status, live, err = _run(["vmaps", str(parent)])
    assert status == 0, err
    assert _mask_sequence_koids(_from(["vmaps", str(parent)], path)) == \
        _mask_sequence_koids(live)
    status, live, err = _run(["k", "vmos", str(parent)])
    assert status == 0, err
    saved_text = _from(["k", "vmos", str(parent)], path)
    handles = saved_text.split("Mapped VMOs:")[0]
    assert handles == live.split("Mapped VMOs:")[0]
    status, live, err = _run(["k", "ps"])
    assert status == 0, err

    def row(text: str) -> str:
        return next(ln for ln in text.splitlines() if ln.split()[:1] == [str(parent)])

    assert row(_from(["k", "ps"], path)) == row(live)


def test_vmaps_from_starts_a_where_live_vmaps_does(workload, saved):
    """/A and /R start at this machine's vm.mmap_min_addr, which the file
    records under linux: live and --from print the same two lines."""
    path, _ = saved
    with open("/proc/sys/vm/mmap_min_addr") as f:
        min_addr = int(f.read())
    with open(path) as f:
        meta = next(r for r in json.load(f) if r.get("type") == "__META")
    assert meta["linux"]["mmap_min_addr"] == min_addr
    for pid in workload:
        status, live, err = _run(["vmaps", str(pid)])
        assert status == 0, err
        head = live.splitlines()[:2]
        assert [line[:3] for line in head] == ["/A ", "/R "]
        assert _from(["vmaps", str(pid)], path).splitlines()[:2] == head
        # The range starts at the sysctl (the workload maps nothing lower).
        assert all(f"{min_addr:016x}"[-8:] + "-" in line for line in head), head


def test_errors_on_the_live_file(workload, saved):
    path, snap = saved
    missing = max(p.koid for p in snap.processes) + 100000
    status, out, err = _run(["vmaps", "--from", path, str(missing)])
    assert status == 1 and out == ""
    assert err == f"zxmem: {path}: no process with pid {missing} in the snapshot\n"
    status, out, err = _run(["k", "vmos", "hidden", "--from", path])
    assert status == 1 and "no hidden objects" in err and err.count("\n") == 1
    status, _, err = _run(["kstats", "-m", "-c", "--from", path])
    assert status == 2 and "-c needs the live system" in err
    with open(path, encoding="utf-8") as f:
        text = f.read()
    status, out, _ = _run(["vmos", "--from", "-", str(workload[0])], stdin=text)
    assert status == 0 and out == _from(["vmos", str(workload[0])], path)
    json.loads(text)  # the file itself is valid JSON
