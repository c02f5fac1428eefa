"""Live tests of ``--exact`` and ``zxmem share`` on workloads with known answers.

Each workload is a small program (``PROGRAM`` below, run with ``python -I -S
-c``) that builds one memory shape, prints ``ready PID [CHILD...] ADDR`` and
waits until its stdin closes; every process it forks exits with it.  Needs
root (pagemap PFNs, /proc/kpagecount) on a kernel where kpagecount is per
page (not CONFIG_NO_PAGE_MAPCOUNT); skips with the reason otherwise.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest

pytestmark = [pytest.mark.live, pytest.mark.root]

MIB = 1 << 20
PAGE = 4096

PROGRAM = r"""
import mmap, os, sys
mode, directory = sys.argv[1], sys.argv[2]
PAGE = 4096
MIB = 1 << 20
children = []
keep = []

def touch_read(m):
    for off in range(0, len(m), PAGE):
        m[off]

def touch_write(m, start, end, byte):
    for off in range(start, end, PAGE):
        m[off] = byte

def wait_eof():
    while os.read(0, 4096):
        pass

def new_file(name, size):
    path = os.path.join(directory, name)
    with open(path, "wb") as f:
        f.write(b"z" * size)
    return path

if mode == "twice":
    # One 8 MiB file mapped twice (MAP_SHARED, read) by this one process.
    path = new_file("twice.bin", 8 * MIB)
    with open(path, "rb") as f:
        a = mmap.mmap(f.fileno(), 8 * MIB, mmap.MAP_SHARED, mmap.PROT_READ)
        b = mmap.mmap(f.fileno(), 8 * MIB, mmap.MAP_SHARED, mmap.PROT_READ)
    touch_read(a)
    touch_read(b)
    keep += [a, b]
    addr = 0
elif mode in ("cow", "cow-thp"):
    # 32 MiB private anonymous memory written, forked, then the parent
    # rewrites the first half: 16 MiB stays shared with the child.  PROT_NONE
    # guard pages on both sides keep the kernel from merging the VMA with a
    # neighbour (whose pages would be shared too).
    import ctypes
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype = ctypes.c_void_p
    libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int,
                          ctypes.c_int, ctypes.c_long]
    libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    libc.madvise.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
    size = 32 * MIB
    # Room to align the region to 2 MiB (THP), plus the guards.
    raw = libc.mmap(None, size + 4 * MIB, 3, 0x22, -1, 0)  # RW, PRIVATE|ANONYMOUS
    addr = (raw + 2 * MIB) & ~(2 * MIB - 1)
    libc.mprotect(addr - PAGE, PAGE, 0)
    libc.mprotect(addr + size, PAGE, 0)
    if mode == "cow-thp":
        libc.madvise(addr, size, 14)  # MADV_HUGEPAGE
    for off in range(0, size, PAGE):
        ctypes.memset(addr + off, 1, 1)
    r, w = os.pipe()
    child = os.fork()
    if child == 0:
        os.close(w)
        os.read(r, 1)  # until the parent goes away
        os._exit(0)
    os.close(r)
    keep.append(w)
    children.append(child)
    for off in range(0, size // 2, PAGE):
        ctypes.memset(addr + off, 2, 1)
elif mode == "six":
    # One 4 MiB file mapped (MAP_SHARED, read) by this process and 5 children,
    # each with its own mmap.
    path = new_file("six.bin", 4 * MIB)
    r, w = os.pipe()
    rr, rw = os.pipe()
    for _ in range(5):
        child = os.fork()
        if child == 0:
            os.close(w)
            os.close(rr)
            with open(path, "rb") as f:
                c = mmap.mmap(f.fileno(), 4 * MIB, mmap.MAP_SHARED, mmap.PROT_READ)
            touch_read(c)
            os.write(rw, b"x")
            os.read(r, 1)
            os._exit(0)
        children.append(child)
    os.close(r)
    os.close(rw)
    keep.append(w)
    with open(path, "rb") as f:
        m = mmap.mmap(f.fileno(), 4 * MIB, mmap.MAP_SHARED, mmap.PROT_READ)
    touch_read(m)
    keep.append(m)
    got = 0
    while got < 5:
        got += len(os.read(rr, 5))
    addr = 0
elif mode == "private":
    # 16 MiB private anonymous memory, nothing shared on purpose.
    m = mmap.mmap(-1, 16 * MIB, mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    touch_write(m, 0, 16 * MIB, 3)
    keep.append(m)
    addr = 0
print("ready", os.getpid(), *children, addr, flush=True)
wait_eof()
for k in keep:
    if isinstance(k, int):
        os.close(k)  # the children's cue to leave
for c in children:
    os.waitpid(c, 0)
"""


def _require_exact():
    if os.geteuid() != 0:
        pytest.skip("not root: pagemap PFNs and /proc/kpagecount need CAP_SYS_ADMIN")
    if not os.path.exists("/proc/kpagecount"):
        pytest.skip("no /proc/kpagecount (kernel without CONFIG_PROC_PAGE_MONITOR)")
    from zxmem.sources import pagemap

    reason, _ = pagemap.availability("/proc", os.uname().release)
    if reason:
        pytest.skip(f"exact accounting unavailable here: {reason}")


class Shape:
    def __init__(self, mode: str, directory: str) -> None:
        self.proc = subprocess.Popen(
            [sys.executable, "-I", "-S", "-c", PROGRAM, mode, directory],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
        )
        line = self.proc.stdout.readline().decode().split()
        if not line or line[0] != "ready":
            self.stop()
            raise AssertionError(f"workload {mode} did not start: {line}")
        self.pids = [int(x) for x in line[1:-1]]
        self.addr = int(line[-1])

    def stop(self) -> None:
        try:
            self.proc.stdin.close()
        except OSError:
            pass
        try:
            self.proc.wait(timeout=30)
        except subprocess.TimeoutExpired:
            self.proc.kill()
            self.proc.wait()
        for pid in getattr(self, "pids", [])[1:]:
            try:
                os.kill(pid, 9)
            except ProcessLookupError:
                pass


@pytest.fixture
def shape(tmp_path):
    _require_exact()
    started: list[Shape] = []

    def start(mode: str) -> Shape:
        s = Shape(mode, str(tmp_path))
        started.append(s)
        return s

    yield start
    for s in started:
        s.stop()


def kernel_smaps(pid: int) -> list[tuple[int, int, dict[str, int]]]:
    """(start, end, fields in bytes) per VMA, from the kernel's smaps."""
    out = []
    with open(f"/proc/{pid}/smaps") as f:
        for line in f:
            head = line.split()
            if "-" in head[0] and not head[0].endswith(":"):
                a, b = head[0].split("-")
                out.append((int(a, 16), int(b, 16), {}))
            elif len(head) >= 3 and head[2] == "kB":
                out[-1][2][head[0].rstrip(":")] = int(head[1]) * 1024
    return out


def kernel_rollup(pid: int) -> dict[str, int]:
    fields = {}
    with open(f"/proc/{pid}/smaps_rollup") as f:
        for line in f:
            head = line.split()
            if len(head) >= 3 and head[2] == "kB":
                fields[head[0].rstrip(":")] = int(head[1]) * 1024
    return fields


def exact_ps(cli) -> dict[int, dict]:
    r = cli(["ps", "--exact", "--json", "--jobs=none"])
    assert r.status == 0, r.stderr
    assert "unavailable" not in r.stderr, r.stderr
    doc = json.loads(r.stdout)
    assert any("exact" in n for n in doc["provenance"]["notes"])
    return {t["koid"]: t for t in doc["tasks"] if t["type"] == "p"}


def share(cli, pid: int) -> dict:
    r = cli(["share", "--json", str(pid)])
    assert r.status == 0, r.stderr
    return json.loads(r.stdout)


def mapping_shared(report: dict, other: int, lo: int, hi: int) -> int:
    """Bytes ``report``'s process shares with ``other`` in mappings inside [lo, hi)."""
    for s in report["sharers"]:
        if s["pid"] == other:
            return sum(m["shared_bytes"] for m in s["mappings"]
                       if m["start"] >= lo and m["end"] <= hi)
    return 0


def test_file_mapped_twice_is_private(shape, cli):
    s = shape("twice")
    pid = s.pids[0]
    vmas = [v for v in kernel_smaps(pid) if v[1] - v[0] == 8 * MIB]
    assert len(vmas) == 2
    # The kernel's view: every page mapped twice, so "shared", PRIVATE 0.
    for _, _, f in vmas:
        assert f["Rss"] == 8 * MIB
        assert f["Shared_Clean"] + f["Shared_Dirty"] == 8 * MIB
        assert f["Private_Clean"] + f["Private_Dirty"] == 0
    procs = exact_ps(cli)
    smaps_private = kernel_rollup(pid)
    smaps_private = smaps_private["Private_Clean"] + smaps_private["Private_Dirty"]
    assert procs[pid]["private_bytes"] >= 8 * MIB
    assert procs[pid]["private_bytes"] >= smaps_private + 8 * MIB - 4 * PAGE
    # Counted once, not twice: the file adds 8 MiB of resident, not 16.
    assert procs[pid]["rss_bytes"] < kernel_rollup(pid)["Rss"] - 7 * MIB


def test_vmaps_exact_counts_a_twice_mapped_file_once(shape, cli):
    s = shape("twice")
    pid = s.pids[0]
    r = cli(["vmaps", "--exact", "--json", str(pid)])
    assert r.status == 0, r.stderr
    rows = [e for e in json.loads(r.stdout)["entries"]
            if e["type"] == "mapping" and e["size_bytes"] == 8 * MIB and e["path"]
            and e["path"].endswith("twice.bin")]
    assert len(rows) == 2
    # smaps: 8 MiB resident and shared in each; exact: the pages once, private.
    assert sum(e["rss_bytes"] for e in rows) == 8 * MIB
    assert sum(e["private_bytes"] for e in rows) == 8 * MIB
    assert sum(e["pss_bytes"] for e in rows) == 8 * MIB


@pytest.mark.parametrize("mode", ["cow", "cow-thp"])
def test_fork_then_parent_rewrites_half(shape, cli, mode):
    s = shape(mode)
    parent, child = s.pids
    region = (s.addr, s.addr + 32 * MIB)
    vmas = [v for v in kernel_smaps(parent) if v[0] == region[0]]
    assert vmas and vmas[0][1] == region[1], "the region is one VMA of its own"
    rep = share(cli, parent)
    assert mapping_shared(rep, child, *region) == 16 * MIB
    rep_child = share(cli, child)
    assert mapping_shared(rep_child, parent, 0, 1 << 63) == next(
        x["shared_bytes"] for x in rep["sharers"] if x["pid"] == child)
    procs = exact_ps(cli)
    # Each side owns the 16 MiB half the other no longer maps.
    assert procs[parent]["private_bytes"] >= 16 * MIB
    assert procs[child]["private_bytes"] >= 16 * MIB
    assert rep["freed_on_exit_bytes"] >= 16 * MIB


def vmos_rows(cli, pid: int) -> list[dict]:
    r = cli(["vmos", "--exact", "--json", str(pid)])
    assert r.status == 0, r.stderr
    assert "unavailable" not in r.stderr, r.stderr
    return json.loads(r.stdout)["vmos"]


def test_vmos_exact_copy_on_write_clone(shape, cli):
    s = shape("cow")
    parent, child = s.pids
    rows = vmos_rows(cli, child)
    region = [r for r in rows if r["size_bytes"] == 32 * MIB and r["kind"] in ("anon", "clone")]
    assert len(region) == 1
    # The child's VMA keeps the 16 MiB only it maps (the originals of the
    # half the parent rewrote); the 16 MiB both still map are an object of
    # their own, the copy-on-write parent of both VMAs (Zircon's hidden
    # parent), which the child lists with #shr 2.
    assert region[0]["committed_bytes"] == 16 * MIB
    assert region[0]["share_count"] == 1
    cow = region[0]["parent_koid"]
    assert cow not in (0, None, region[0]["koid"])
    shared = [r for r in rows if r["koid"] == cow]
    assert len(shared) == 1
    assert shared[0]["committed_bytes"] == 16 * MIB
    assert shared[0]["share_count"] == 2
    assert shared[0]["num_children"] == 2
    assert shared[0]["parent_koid"] in (0, None)
    prows = vmos_rows(cli, parent)
    mine = [r for r in prows if r["size_bytes"] == 32 * MIB and r["kind"] in ("anon", "clone")]
    assert len(mine) == 1
    assert mine[0]["committed_bytes"] == 16 * MIB
    assert mine[0]["share_count"] == 1
    # The same shared pages are a group in the parent's listing too.
    theirs = [r for r in prows if r["koid"] == mine[0]["parent_koid"]]
    assert len(theirs) == 1
    assert theirs[0]["committed_bytes"] == 16 * MIB and theirs[0]["share_count"] == 2


def test_file_mapped_by_six_processes(shape, cli):
    s = shape("six")
    assert len(s.pids) == 6
    first = s.pids[0]
    rep = share(cli, first)
    six = [v for v in kernel_smaps(first) if v[1] - v[0] == 4 * MIB]
    assert len(six) == 1
    lo, hi = six[0][0], six[0][1]
    for other in s.pids[1:]:
        assert mapping_shared(rep, other, lo, hi) == 4 * MIB
    # Nobody else maps the file's pages.
    others = [x["pid"] for x in rep["sharers"] if mapping_shared(rep, x["pid"], lo, hi)]
    assert sorted(others) == sorted(s.pids[1:])
    # Its PSS share: 4 MiB / 6 per process; PRIVATE leaves it out.
    procs = exact_ps(cli)
    for pid in s.pids[1:]:
        assert procs[pid]["shared_bytes"] >= 4 * MIB


def test_agrees_with_smaps_rollup_without_double_mappings(shape, cli):
    s = shape("private")
    pid = s.pids[0]
    # The interpreter's file pages are shared with every other Python on the
    # machine, and those come and go (other tests): a page moves between
    # "private" and "shared" while zxmem and the kernel are read.  The
    # kernel is read before and after, and zxmem must lie within both.
    before = kernel_rollup(pid)
    procs = exact_ps(cli)
    after = kernel_rollup(pid)

    def within(value, key_fn, slack):
        lo = min(key_fn(before), key_fn(after)) - slack
        hi = max(key_fn(before), key_fn(after)) + slack
        assert lo <= value <= hi, (value, key_fn(before), key_fn(after))

    # Nothing is mapped twice in this process, so "mapped once" is "mapped by
    # no other process": the kernel's and the page-level numbers agree.
    within(procs[pid]["private_bytes"], lambda k: k["Private_Clean"] + k["Private_Dirty"],
           2 * PAGE)
    assert procs[pid]["private_bytes"] >= 16 * MIB
    within(procs[pid]["shared_bytes"], lambda k: k["Shared_Clean"] + k["Shared_Dirty"],
           16 * PAGE)
    within(procs[pid]["pss_bytes"], lambda k: k["Pss"], max(16 * PAGE, after["Pss"] // 100))
    within(procs[pid]["rss_bytes"], lambda k: k["Rss"], 16 * PAGE)


def test_memgraph_exact_clone_relation(shape, cli):
    s = shape("cow")
    parent, child = s.pids
    r = cli(["memgraph", "-v", "--exact"])
    assert r.status == 0, r.stderr
    recs = {x["koid"]: x for x in json.loads(r.stdout) if x.get("type") == "p"}

    def region(pid):
        found = [v for v in recs[pid]["vmos"] if v["size_bytes"] == 32 * MIB]
        assert len(found) == 1
        return found[0]

    def listed(pid, koid):
        return [v for v in recs[pid]["vmos"] if v["koid"] == koid]

    mine, theirs = region(child), region(parent)
    # Both VMAs are clones of one object holding the 16 MiB they still
    # share, which both processes list; each VMA keeps its own 16 MiB.
    assert mine["parent_koid"] == theirs["parent_koid"] not in (0, None)
    assert mine["committed_bytes"] == theirs["committed_bytes"] == 16 * MIB
    assert mine["share_count"] == theirs["share_count"] == 1
    shared = listed(child, mine["parent_koid"])
    assert shared == listed(parent, mine["parent_koid"]) and len(shared) == 1
    assert shared[0]["committed_bytes"] == 16 * MIB
    assert shared[0]["share_count"] == 2
    assert shared[0]["num_children"] == 2


def test_not_root_says_what_is_approximate(launcher):
    """As nobody: a statement on stderr and smaps' numbers, exit 0."""
    import workloads
    from harness import nobody_env, nobody_python

    python = nobody_python()
    env = nobody_env()
    mine = launcher.start("private", str(4 * MIB), python=python[0], as_nobody=True, env=env)

    def run(*args):
        return subprocess.run(
            [*workloads.nobody_prefix(), *python, "-m", "zxmem", *args],
            env=env, capture_output=True, text=True, cwd="/",
        )

    r = run("ps", "--exact", "--json")
    assert r.returncode == 0, r.stderr
    assert "--exact unavailable" in r.stderr and "root" in r.stderr, r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    assert any("--exact unavailable" in n for n in doc["provenance"]["notes"])
    recs = {t["koid"]: t for t in doc["tasks"] if t["type"] == "p"}
    # nobody's own process keeps its smaps numbers.
    assert recs[mine.pid]["private_bytes"] >= 4 * MIB

    r = run("share", "--json", str(mine.pid))
    assert r.returncode == 0, r.stderr
    assert "unavailable" in r.stderr and "Traceback" not in r.stderr
    d = json.loads(r.stdout)
    assert d["exact"] is False and d["private_bytes"] >= 4 * MIB
