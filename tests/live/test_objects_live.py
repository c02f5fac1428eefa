"""Memory objects of live workloads with known shapes (vmos, vmaps).

Each workload is a small Python program started here; it prints its PIDs
when its memory is in place and exits when its stdin closes.  Every process
is also killed by PID at the end of its test.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys

import pytest

from zxmem.model import inode_koid

pytestmark = pytest.mark.live

PAGE = 4096

WORKLOAD = r"""
import mmap, os, sys, threading
mode, directory = sys.argv[1], sys.argv[2]
PAGE = 4096
keep = []
children = []
if mode == "shared":
    n = int(sys.argv[3])
    fd = os.memfd_create("zx-shared")
    os.write(fd, b"s" * 16 * PAGE)
    keep.append(mmap.mmap(fd, 16 * PAGE))
    path = os.path.join(directory, "shared.bin")
    with open(path, "wb") as f:
        f.write(b"f" * 16 * PAGE)
    with open(path, "rb") as f:
        keep.append(mmap.mmap(f.fileno(), 16 * PAGE, access=mmap.ACCESS_READ))
    for _ in range(n - 1):
        pid = os.fork()
        if pid == 0:
            sys.stdin.read()
            os._exit(0)
        children.append(pid)
elif mode == "fork":
    # 64 anonymous pages written before fork, fenced by PROT_NONE pages so
    # the kernel cannot merge the VMA with a neighbour; the child then
    # writes 8 of them (its own copies).  Physical: 64 + 8 pages.
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    base = libc.mmap(None, 66 * PAGE, 3, 0x22, -1, 0)
    libc.mprotect(base, PAGE, 0)
    libc.mprotect(base + 65 * PAGE, PAGE, 0)
    ctypes.memset(base + PAGE, 7, 64 * PAGE)
    r, w = os.pipe()
    pid = os.fork()
    if pid == 0:
        ctypes.memset(base + PAGE, 9, 8 * PAGE)
        os.write(w, b"x")
        sys.stdin.read()
        os._exit(0)
    os.read(r, 1)
    children.append(pid)
    children.append(base + PAGE)
else:
    held = os.memfd_create("zx-held")
    os.write(held, b"h" * 3 * PAGE)
    twice = os.memfd_create("zx-twice")
    os.ftruncate(twice, 4 * PAGE)
    keep.append(mmap.mmap(twice, 4 * PAGE))
    keep.append(mmap.mmap(twice, 4 * PAGE))
    os.close(twice)
    path = os.path.join(directory, "private.bin")
    with open(path, "wb") as f:
        f.write(b"p" * 16 * PAGE)
    with open(path, "r+b") as f:
        cow = mmap.mmap(f.fileno(), 16 * PAGE, access=mmap.ACCESS_COPY)
    for i in (0, 5, 9):
        cow[i * PAGE] = 0x41  # three copy-on-write pages
    keep.append(cow)
    # A file on tmpfs held open after unlink (a "hidden" shmem object).
    if os.path.isdir("/dev/shm"):
        name = f"/dev/shm/zxmem-test-{os.getpid()}"
        tmp = os.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.unlink(name)
        os.write(tmp, b"t" * 2 * PAGE)
        name2 = f"/dev/shm/zxmem-test-map-{os.getpid()}"
        tmp2 = os.open(name2, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o600)
        os.unlink(name2)
        os.write(tmp2, b"u" * 4 * PAGE)
        keep.append(mmap.mmap(tmp2, 4 * PAGE))
        os.close(tmp2)
    # A SysV segment, attached, two pages written, removed at detach.
    try:
        import ctypes
        libc = ctypes.CDLL(None, use_errno=True)
        libc.shmat.restype = ctypes.c_void_p
        shmid = libc.shmget(0, 4 * PAGE, 0o1600)  # IPC_PRIVATE, IPC_CREAT | 0600
        if shmid >= 0:
            addr = libc.shmat(shmid, None, 0)
            libc.shmctl(shmid, 0, None)  # IPC_RMID: gone when detached
            if addr not in (None, ctypes.c_void_p(-1).value):
                ctypes.memset(addr, 1, 2 * PAGE)
    except OSError:
        pass
    started = threading.Event()
    def idle():
        started.set()
        sys.stdin.read()
    threading.Thread(target=idle, daemon=True).start()
    started.wait()
print("ready", os.getpid(), *children, flush=True)
sys.stdin.read()
for pid in children[:1] if mode == "fork" else children:
    os.waitpid(pid, 0)
"""


class Workload:
    def __init__(self, mode: str, directory: str, *args: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", WORKLOAD, mode, directory, *args],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        line = self.proc.stdout.readline().split()
        if not line or line[0] != "ready":
            self.stop()
            pytest.fail(f"workload {mode} did not start")
        self.pids = [int(x) for x in line[1:]]

    def stop(self) -> None:
        for pid in getattr(self, "pids", [])[1:]:
            try:
                os.kill(pid, signal.SIGKILL)
            except OSError:
                pass
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()


@pytest.fixture
def start(tmp_path):
    started: list[Workload] = []

    def run(mode: str, *args: str) -> Workload:
        w = Workload(mode, str(tmp_path), *args)
        started.append(w)
        return w

    yield run
    for w in started:
        w.stop()


def _root():
    if os.geteuid() != 0:
        pytest.skip("not root: map_files and other processes' fds need root")


def vmos_json(cli, pid: int) -> list[dict]:
    r = cli(["vmos", "--json", str(pid)])
    assert r.status == 0, r.stderr
    return json.loads(r.stdout)["vmos"]


def test_memfd_and_file_mapped_by_six_processes(cli, start, tmp_path):
    _root()
    w = start("shared", "6")
    assert len(w.pids) == 6
    st = os.stat(tmp_path / "shared.bin")
    file_koid = inode_koid(st.st_dev, st.st_ino)
    for pid in w.pids:
        rows = vmos_json(cli, pid)
        memfd = [r for r in rows if r["name"] == "memfd:zx-shared" and r["via"] == ["MAPPING"]]
        assert len(memfd) == 1, rows
        assert (memfd[0]["num_mappings"], memfd[0]["share_count"]) == (6, 6)
        assert memfd[0]["kind"] == "memfd"
        assert memfd[0]["size_bytes"] == 16 * PAGE
        assert memfd[0]["committed_bytes"] == 16 * PAGE  # st_blocks: all written
        files = [r for r in rows if r["koid"] == file_koid and r["via"] == ["MAPPING"]]
        assert len(files) == 1
        assert (files[0]["num_mappings"], files[0]["share_count"]) == (6, 6)
        assert files[0]["size_bytes"] == 16 * PAGE
        assert files[0]["parent_koid"] == 0


def test_text_rows_show_the_counts(cli, start):
    _root()
    w = start("shared", "6")
    r = cli(["vmos", str(w.pids[0])])
    assert r.status == 0
    lines = r.stdout.splitlines()
    assert lines[0] == lines[-1] == "rights  koid parent #chld #map #shr    size   alloc name"
    row = [line for line in lines if line.endswith(" memfd:zx-shared") and
           line.lstrip().startswith("- ")]
    assert row and row[0].split()[3:6] == ["0", "6", "6"]


def test_memfd_held_only_by_a_descriptor(cli, start):
    _root()
    w = start("single")
    rows = vmos_json(cli, w.pids[0])
    held = [r for r in rows if r["name"] == "memfd:zx-held"]
    assert len(held) == 1
    (row,) = held
    assert row["via"] == ["HANDLE"]
    assert row["handle_rights"] == ["READ", "WRITE"]
    assert row["num_mappings"] == 0 and row["share_count"] == 0
    assert row["size_bytes"] == 3 * PAGE and row["committed_bytes"] == 3 * PAGE
    text = cli(["vmos", str(w.pids[0])]).stdout
    line = [x for x in text.splitlines() if x.endswith(" memfd:zx-held")]
    assert line and line[0].startswith("rw----")


def test_memfd_mapped_twice_in_one_process(cli, start):
    _root()
    w = start("single")
    rows = vmos_json(cli, w.pids[0])
    mapped = [r for r in rows if r["name"] == "memfd:zx-twice" and r["via"] == ["MAPPING"]]
    assert len(mapped) == 2  # one row per mapping, as Zircon keeps them
    assert {(r["num_mappings"], r["share_count"]) for r in mapped} == {(2, 1)}


def test_written_private_file_mapping_is_a_clone(cli, start, tmp_path):
    _root()
    w = start("single")
    st = os.stat(tmp_path / "private.bin")
    file_koid = inode_koid(st.st_dev, st.st_ino)
    rows = vmos_json(cli, w.pids[0])
    clones = [r for r in rows if r["name"] == "data:private.bin"]
    assert len(clones) == 1, [r["name"] for r in rows]
    (clone,) = clones
    assert clone["kind"] == "clone"
    assert clone["parent_koid"] == file_koid
    assert clone["committed_bytes"] == 3 * PAGE  # the three written pages
    assert clone["size_bytes"] == 16 * PAGE
    parents = {r["koid"]: r for r in rows if r["koid"] == file_koid}
    if parents:  # the file also reached directly (it is not, here)
        assert parents[file_koid]["num_children"] >= 1
    # vmaps prints the clone's koid and name for that mapping.
    out = cli(["vmaps", str(w.pids[0])]).stdout
    line = [x for x in out.splitlines() if x.endswith("'data:private.bin'")]
    assert len(line) == 1 and f" {clone['koid']}:vmo " in line[0]
    assert " 12k:res " in line[0]


def test_library_segments_form_one_region(cli, start):
    _root()
    w = start("single")
    r = cli(["vmaps", "--json", str(w.pids[0])])
    assert r.status == 0, r.stderr
    entries = json.loads(r.stdout)["entries"]
    libs = {e["path"] for e in entries if e["type"] == "mapping"
            and os.path.basename(e["path"]).startswith("libc.so")}
    if not libs:
        pytest.skip("the interpreter is not linked against a shared libc")
    (libc,) = libs
    idx = [i for i, e in enumerate(entries) if e.get("path") == libc]
    region_at = idx[0] - 1
    region = entries[region_at]
    assert region["type"] == "vmar" and region["depth"] == 2
    assert region["name"] == os.path.basename(libc)
    members = []
    for e in entries[region_at + 1:]:
        if e["depth"] != 3:
            break
        members.append(e)
    assert all(i - region_at - 1 < len(members) for i in idx)  # every libc mapping inside
    perms = {m["perms"][:3] for m in members}
    assert {"r-x", "r--", "rw-"} <= perms  # text, rodata (and relro), data
    assert region["start"] == members[0]["start"] and region["end"] == members[-1]["end"]
    # The thread's stack: a guard page directly below a read-write mapping.
    stacks = [e for e in entries if e["type"] == "vmar" and e["name"] == "stack"]
    assert stacks


def test_vmaps_res_matches_smaps(cli, start):
    _root()
    w = start("single")
    pid = w.pids[0]
    r = cli(["vmaps", "--json", str(pid)])
    got = {e["start"]: e["rss_bytes"] for e in json.loads(r.stdout)["entries"]
           if e["type"] == "mapping"}
    with open(f"/proc/{pid}/smaps", "rb") as f:
        data = f.read()
    from zxmem.sources.smaps import parse_smaps

    t = parse_smaps(data)
    # The workload is idle, so its private file/memfd mappings do not move.
    for start_, rss in zip(t.starts, t.fields["Rss"], strict=True):
        if start_ in got and got[start_] is not None:
            assert abs(got[start_] - rss) <= 2 * PAGE


def test_errors_name_the_pid(cli):
    r = cli(["vmaps", "2"])  # kthreadd
    if r.status == 1 and "kernel thread" in r.stderr:
        assert r.stderr.count("\n") == 1 and "2" in r.stderr
    pid = 4194304 + 1
    r = cli(["vmaps", str(pid)])
    assert r.status == 1 and str(pid) in r.stderr and r.stderr.count("\n") == 1
    r = cli(["vmos", str(pid)])
    assert r.status == 1 and str(pid) in r.stderr


def test_denied_maps_are_one_line(tmp_path):
    from harness import nobody_env, nobody_python

    python = nobody_python()
    r = subprocess.run(
        ["setpriv", "--reuid=65534", "--regid=65534", "--clear-groups", *python, "-m",
         "zxmem", "vmaps", "1"],
        env=nobody_env(), capture_output=True, text=True, cwd="/",
    )
    assert r.returncode == 1
    assert r.stderr.count("\n") == 1 and "pid 1" in r.stderr
    assert "Traceback" not in r.stderr


def test_tmpfs_file_held_by_a_descriptor(cli, start):
    _root()
    if not os.path.isdir("/dev/shm"):
        pytest.skip("no /dev/shm")
    w = start("single")
    rows = vmos_json(cli, w.pids[0])
    tmp = [r for r in rows if r["name"].startswith("/dev/shm/zxmem-test-")]
    if not tmp:
        pytest.skip("/dev/shm is not a tmpfs mount here")
    (row,) = [r for r in tmp if "-map-" not in r["name"]]
    assert row["kind"] == "shmem" and row["via"] == ["HANDLE"]
    assert row["committed_bytes"] == 2 * PAGE and row["num_mappings"] == 0
    mapped = [r for r in tmp if "-map-" in r["name"] and r["via"] == ["MAPPING"]]
    assert len(mapped) == 1
    assert mapped[0]["kind"] == "shmem" and mapped[0]["committed_bytes"] == 4 * PAGE


def test_sysv_segment(cli, start):
    _root()
    w = start("single")
    rows = vmos_json(cli, w.pids[0])
    sysv = [r for r in rows if r["kind"] == "sysv"]
    if not sysv:
        pytest.skip("SysV shared memory is not available")
    (row,) = sysv
    assert row["name"].startswith("SYSV")
    assert (row["num_mappings"], row["share_count"]) == (1, 1)
    assert row["size_bytes"] == 4 * PAGE
    assert row["committed_bytes"] == 2 * PAGE


def test_forked_anonymous_pages_add_up_to_the_physical_pages(start):
    _root()
    from zxmem.sources import objects

    w = start("fork")
    parent, child, addr = w.pids
    w.pids = [parent, child]
    snap = objects.add_objects(objects.light_snapshot("/proc", [parent, child]), "/proc")
    allocs = []
    for pid in (parent, child):
        (m,) = [m for m in snap.process(pid).mappings if m.start == addr]
        assert m.end - m.start == 64 * PAGE
        v = snap.vmos[m.vmo_koid]
        assert v.kind == "anon"
        assert m.rss_bytes == 64 * PAGE  # each process sees every page resident
        allocs.append(v.committed_bytes)
    # 56 pages shared by the two, 8 private to each: 56 + 8 + 8 = 72 pages.
    assert abs(sum(allocs) - 72 * PAGE) <= 2 * PAGE, allocs
