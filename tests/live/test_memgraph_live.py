"""``zxmem memgraph`` on this machine: valid, complete, and read back the same.

The output of a real run is validated against zxmem's JSON Schema and the
structure Fuchsia's treemap.py asserts; a live snapshot written and read
back is equal to it, and ``ps --from`` on the file prints what ``ps`` printed
on that snapshot.  Descriptor counts are checked on a process whose
descriptors are known.
"""

from __future__ import annotations

import importlib.util
import json
import os
import subprocess
import sys
import sys as _sys

import pytest

_sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "unit"))
from memgraph_samples import check_treemap_structure, schema_validator  # noqa: E402

from zxmem import memgraph  # noqa: E402
from zxmem.sources.load import load_snapshot  # noqa: E402

pytestmark = pytest.mark.live


def _have(module: str) -> bool:
    try:
        return importlib.util.find_spec(module) is not None
    except ModuleNotFoundError:
        return False


def _need_kernel():
    if not _have("zxmem.sources.kernel"):
        pytest.skip("zxmem.sources.kernel (kernel stats) is not there yet: no kernel records")


def _meminfo_bytes(key: str) -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            name, _, rest = line.partition(":")
            if name == key:
                return int(rest.split()[0]) * 1024
    raise KeyError(key)


def test_live_memgraph_is_valid_and_treemap_ready(cli):
    _need_kernel()
    r = cli(["memgraph", "-tH"])
    assert r.status == 0, r.stderr
    assert "Traceback" not in r.stderr
    recs = json.loads(r.stdout)
    schema_validator().validate(recs)
    check_treemap_structure(recs)
    assert [x["id"] for x in recs[:3]] == ["kernel/physmem", "kernel/free", "kernel/vmo"]
    # B.5: physmem is MemTotal (read here, directly)
    assert recs[0]["size_bytes"] == _meminfo_bytes("MemTotal")
    me = next(x for x in recs if x.get("id") == f"p/{os.getpid()}")
    assert me["linux"]["cmdline"][0].endswith(("python", "python3", "pytest")) or me["linux"][
        "cmdline"]
    assert me["pss_bytes"] > 0 and me["private_bytes"] > 0
    threads = [x for x in recs if x.get("parent") == f"p/{os.getpid()}"]
    assert any(t["koid"] == os.getpid() for t in threads)
    assert all(t["state"] in ("RUNNING", "BLOCKED", "SUSPENDED", "DEAD", "<UNKNOWN>")
               for t in threads)
    assert me["handle_stats"] and all(v > 0 for v in me["handle_stats"].values())
    meta = recs[-1]
    assert meta["type"] == "__META" and meta["linux"]["source"] == "linux"


def test_memgraph_without_meminfo_omits_kernel_records(cli):
    """A recorded tree has no meminfo: no kernel records, one line saying so."""
    from fixture_paths import REPO

    tree = REPO / "tests" / "fixtures" / "proc-trees" / "cgroup-v2" / "proc"
    r = cli(["memgraph", "--proc-root", str(tree)])
    assert r.status == 0, r.stderr
    recs = json.loads(r.stdout)
    assert not [x for x in recs if x.get("type") == "kernel"]
    assert recs[-1]["type"] == "__META"
    assert "kernel records omitted" in " ".join(recs[-1]["linux"].get("notes", []))
    assert r.stderr.startswith("zxmem: memgraph: kernel records left out: ")
    assert r.stderr.count("\n") == 1


def test_live_snapshot_round_trips(tmp_path):
    from zxmem.sources.handles import add_handle_stats
    from zxmem.sources.linux import CollectOptions, collect

    snap = collect("/proc", CollectOptions(threads=True, status=True))
    snap = add_handle_stats(snap, "/proc")
    if _have("zxmem.sources.objects"):
        from zxmem.sources.objects import add_objects

        me = os.getpid()
        snap = add_objects(snap, proc_root="/proc", pids=[me], detail_pids=[me])
        assert snap.process(me).mappings and snap.vmos
    if _have("zxmem.sources.kernel"):
        from dataclasses import replace

        from zxmem.sources.kernel import read_kernel_stats

        snap = replace(snap, kernel=read_kernel_stats("/proc"))
    path = tmp_path / "live.json"
    with open(path, "w") as f:
        memgraph.write_memgraph(snap, f)
    assert load_snapshot(str(path)) == snap


def test_live_memgraph_then_ps_from_gives_the_same_ps(cli, tmp_path, monkeypatch):
    # One live scan, used by both runs: ps straight on it, and ps on what
    # `zxmem memgraph` wrote from it.
    import zxmem.sources.linux as linux
    from zxmem.sources.linux import CollectOptions

    snap = linux.collect("/proc", CollectOptions(threads=True, status=True))
    monkeypatch.setattr(linux, "collect", lambda root, options=None: snap)
    r = cli(["memgraph", "-tH"])
    assert r.status == 0, r.stderr
    path = tmp_path / "snap.json"
    path.write_text(r.stdout)
    for extra in ([], ["-T"], ["-J"], ["--style=late", "--units=k"]):
        live = cli(["ps", *extra])
        saved = cli(["ps", "--from", str(path), *extra])
        assert live.status == saved.status == 0, saved.stderr
        assert saved.stdout == live.stdout, extra
        assert f"{os.getpid()}" in live.stdout or extra == ["-J"]
    # memgraph also read kernel stats and descriptors, which the provenance
    # notes; the task records are the same.
    live = json.loads(cli(["ps", "--json"]).stdout)
    saved = json.loads(cli(["ps", "--json", "--from", str(path)]).stdout)
    assert saved["tasks"] == live["tasks"]
    # Written straight from the scan, even the provenance is the same.
    path.write_text(memgraph.dumps(snap))
    assert cli(["ps", "--json", "--from", str(path)]).stdout == cli(["ps", "--json"]).stdout


def test_handle_stats_of_a_process_with_known_descriptors(cli):
    code = (
        "import os, socket, sys\n"
        "r1, w1 = os.pipe(); r2, w2 = os.pipe()\n"
        "a, b = socket.socketpair()\n"
        "e = os.eventfd(0)\n"
        "m = os.memfd_create('zxmem-test')\n"
        "f = open(sys.executable, 'rb')\n"
        "sys.stdout.write('ready\\n'); sys.stdout.flush()\n"
        "sys.stdin.read()\n"
    )
    if not hasattr(os, "eventfd") or not hasattr(os, "memfd_create"):
        pytest.skip("os.eventfd/os.memfd_create need Python >= 3.10 on Linux")
    child = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", code],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        assert child.stdout.readline() == b"ready\n"
        r = cli(["memgraph", "-H"])
        assert r.status == 0, r.stderr
        rec = next(x for x in json.loads(r.stdout) if x.get("id") == f"p/{child.pid}")
        # stdin, stdout and two os.pipe()s: 6 pipe ends; stderr is /dev/null.
        assert rec["handle_stats"] == {
            "device": 1, "eventfd": 1, "file": 1, "memfd": 1, "pipe": 6, "socket": 2,
        }
    finally:
        child.stdin.close()
        child.wait()


def test_live_vmos(cli):
    if not _have("zxmem.sources.objects"):
        pytest.skip("zxmem.sources.objects (the live VMO model) is not there yet: "
                    "memgraph -v has no vmos")
    _need_kernel()
    r = cli(["memgraph", "-v"])
    assert r.status == 0, r.stderr
    recs = json.loads(r.stdout)
    schema_validator().validate(recs)
    check_treemap_structure(recs)
    me = next(x for x in recs if x.get("id") == f"p/{os.getpid()}")
    assert me["vmos"] and len(me["vmos"]) == len(me["vmo_refs"])
    assert any("MAPPING" in ref["via"] for ref in me["vmo_refs"])
    assert me["linux"]["mappings"]


# A memfd written through its descriptor and never mapped: memory that only
# the hidden-object scan can find.
_MEMFD_CHILD = r"""
import os, sys
fd = os.memfd_create("zx-mg-hidden-4m")
block = b"\x5a" * (1 << 20)
for _ in range(4):
    os.write(fd, block)
print("ready", os.getpid(), fd, flush=True)
sys.stdin.read()
"""


def test_hidden_objects_travel_to_k_vmos_hidden_from(cli, tmp_path):
    if os.geteuid() != 0:
        pytest.skip("needs root: the holder's descriptors and every process's maps")
    proc = subprocess.Popen([sys.executable, "-I", "-S", "-c", _MEMFD_CHILD],
                            stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
    try:
        words = proc.stdout.readline().split()
        assert words and words[0] == "ready", "the memfd holder did not start"
        pid, fd = int(words[1]), int(words[2])
        st = os.stat(f"/proc/{pid}/fd/{fd}")
        from zxmem.model import inode_koid

        koid = inode_koid(st.st_dev, st.st_ino)
        r = cli(["memgraph", "-v", "--hidden"])
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    assert r.status == 0, r.stderr
    recs = json.loads(r.stdout)
    schema_validator().validate(recs)
    meta = recs[-1]["linux"]
    assert koid in meta["hidden_vmo_koids"]
    path = tmp_path / "hidden.json"
    path.write_text(r.stdout)
    # Read back after the holder has gone: the file is what is listed.
    out = cli(["k", "vmos", "hidden", "--from", str(path)])
    assert out.status == 0, out.stderr
    rows = [line.split(None, 9) for line in out.stdout.splitlines()[2:]]
    row = next((f for f in rows if len(f) == 10 and f[2] == str(koid)), None)
    assert row is not None, out.stdout
    assert row[0] == f"{pid}:{fd}"  # held by the child's descriptor
    assert row[5:9] == ["0", "0", "4M", "4M"]  # no mapping; 4 MiB written
    assert row[9] == "memfd:zx-mg-hidden-4m"
    # Without --hidden the file has none, and k vmos hidden says so.
    plain = cli(["memgraph", "-v"])
    path.write_text(plain.stdout)
    out = cli(["k", "vmos", "hidden", "--from", str(path)])
    assert out.status == 1 and "no hidden objects" in out.stderr
