"""Live: ``zxmem kstats -m`` against this machine's own ``/proc/meminfo``.

The columns must be the B.5 formulas of the meminfo read in the same
instant (the JSON carries that read), that read must be this machine's
meminfo (stable fields equal an independent read exactly), total must be
MemTotal exactly, and ``--explain`` must add up to MemTotal exactly.
"""

from __future__ import annotations

import json
import os

import pytest

pytestmark = pytest.mark.live

KIB = 1024


def read_meminfo() -> dict[str, int]:
    out = {}
    with open("/proc/meminfo") as f:
        for line in f:
            key, _, rest = line.partition(":")
            parts = rest.split()
            if parts[1:] == ["kB"]:
                out[key] = int(parts[0]) * KIB
    return out


def test_columns_are_meminfo_of_the_same_instant(cli):
    before = read_meminfo()
    r = cli(["kstats", "-m", "--json", "-n", "1"])
    after = read_meminfo()
    assert r.status == 0, r.stderr
    mem = json.loads(r.stdout)["memory"]
    m = mem["meminfo_bytes"]
    # The snapshot is this machine's meminfo: fields that do not move are equal.
    for key in ("MemTotal", "SwapTotal", "VmallocTotal", "Hugepagesize"):
        if key in before:
            assert m[key] == before[key] == after[key]
    assert mem["total_bytes"] == before["MemTotal"]
    # Moving fields lie between (or very near) the independent reads.
    for key in ("MemFree", "Active", "Inactive", "Slab", "PageTables"):
        lo, hi = sorted((before[key], after[key]))
        assert lo - 64 * 1024 * KIB <= m[key] <= hi + 64 * 1024 * KIB
    # And the columns are exactly the B.5 formulas of that same read.
    assert mem["free_bytes"] == m["MemFree"]
    assert mem["vmo_bytes"] == m["Active"] + m["Inactive"] + m["Unevictable"] + m.get("Hugetlb", 0)
    assert mem["mmu_overhead_bytes"] == m["PageTables"] + m.get("SecPageTables", 0)
    inputs = mem["inputs"]
    heap = (m["Slab"] + inputs["vmalloc_used_bytes"] + m.get("Percpu", 0)
            + m.get("KReclaimable", m["SReclaimable"]) - m["SReclaimable"])
    assert mem["total_heap_bytes"] == heap
    stack_apart = inputs["kernel_stack_apart_bytes"]
    assert mem["other_bytes"] == (m["MemTotal"] - m["MemFree"] - mem["vmo_bytes"] - heap
                                  - stack_apart - mem["mmu_overhead_bytes"] - m.get("Zswap", 0)
                                  - m.get("Balloon", 0) - m.get("Unaccepted", 0))


def test_text_total_column_is_memtotal(cli):
    r = cli(["kstats", "-m", "-n", "1"])
    assert r.status == 0
    header, values = r.stdout.splitlines()
    assert header.split() == ["total", "free", "VMOs", "kheap", "kfree", "wired", "mmu"]
    from zxmem.units import format_size

    assert values.split()[0] == format_size(read_meminfo()["MemTotal"], "M")


def test_explain_adds_up_to_memtotal_exactly(cli):
    r = cli(["kstats", "-m", "--explain", "-n", "1"])
    assert r.status == 0, r.stderr
    lines = r.stdout.splitlines()
    start = next(i for i, line in enumerate(lines) if line.lstrip().startswith("column"))
    end = next(i for i, line in enumerate(lines) if line.strip().startswith("-----"))
    terms = [int(line[41:53]) for line in lines[start + 1:end]]
    total_line = lines[end + 1]
    assert total_line.split()[:2] == ["total", "MemTotal"]
    memtotal_kb = read_meminfo()["MemTotal"] // KIB
    assert int(total_line.split()[2]) == memtotal_kb
    assert sum(terms) == memtotal_kb
    assert f"sum of the terms = {memtotal_kb} kB = MemTotal exactly" in r.stdout
    assert "remainder" in r.stdout


def test_vmallocused_is_the_sum_of_vmallocinfo_pages():
    # The kernel's own cross-check for the kheap input (B.5); needs root.
    try:
        with open("/proc/vmallocinfo", "rb") as f:
            data = f.read()
    except PermissionError:
        pytest.skip("/proc/vmallocinfo is root only")
    from zxmem.sources import kernel

    meminfo = read_meminfo()
    pages = kernel.vmalloc_pages_bytes(kernel.parse_vmallocinfo(data))
    # Read a few ms apart: allow a few pages of churn.
    assert abs(pages - meminfo["VmallocUsed"]) <= 64 * 4096


def test_kfree_unknown_without_slabinfo(cli):
    if os.access("/proc/slabinfo", os.R_OK):
        r = cli(["kstats", "-m", "--json", "-n", "1"])
        assert json.loads(r.stdout)["memory"]["free_heap_bytes"] is not None
    else:
        r = cli(["kstats", "-m", "--json", "-n", "1"])
        assert json.loads(r.stdout)["memory"]["free_heap_bytes"] is None


# --------------------------------------------------------------------------
# k ps against a workload with known descriptors and threads

FD_WORKLOAD = r"""
import ctypes, os, select, socket, sys, threading
libc = ctypes.CDLL(None, use_errno=True)
keep = [open(sys.executable, "rb"), open("/etc/passwd", "rb")]
keep += list(socket.socketpair())
keep += list(os.pipe())
keep.append(os.eventfd(0))
keep.append(os.memfd_create("kps-live"))
tfd = libc.timerfd_create(1, 0)
ifd = libc.inotify_init1(0)
assert tfd >= 0 and ifd >= 0
keep += [tfd, select.epoll(), ifd]
stop = threading.Event()
threads = [threading.Thread(target=stop.wait) for _ in range(2)]
for t in threads:
    t.start()
print("ready", flush=True)
sys.stdin.read()
stop.set()
"""


@pytest.fixture
def fd_workload():
    import subprocess
    import sys

    if not hasattr(os, "eventfd") or not hasattr(os, "memfd_create"):
        pytest.skip("needs os.eventfd and os.memfd_create (Python 3.10, Linux)")
    p = subprocess.Popen([sys.executable, "-c", FD_WORKLOAD], stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert p.stdout.readline() == b"ready\n"
        yield p.pid
    finally:
        p.stdin.close()
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            p.kill()
            p.wait()


def test_kps_counts_the_workloads_descriptors_and_threads(cli, fd_workload):
    from zxmem.sources import kernel

    r = cli(["k", "ps", "--json"])
    assert r.status == 0, r.stderr
    data = json.loads(r.stdout)
    row = next(p for p in data["processes"] if p["pid"] == fd_workload)
    # stdin, stdout: pipes; stderr: /dev/null; then the objects it opened.
    assert row["fd_kinds"] == {"files": 3, "sockets": 2, "pipes": 4, "eventfds": 1,
                               "memfds": 1, "timerfds": 1, "epoll": 1, "other": 1}
    assert row["threads"] == 3
    size = kernel.thread_size()
    if size is None:
        pytest.skip("kernel stack size of this architecture unknown")
    assert row["kstack_bytes"] == 3 * size
    with open(f"/proc/{fd_workload}/status") as f:
        vm_pte = next(int(line.split()[1]) for line in f if line.startswith("VmPTE:"))
    assert row["pte_bytes"] == vm_pte * KIB


def test_kernel_stacks_of_all_threads_match_kernelstack(cli):
    # Σ threads × THREAD_SIZE over every task (kernel threads included) is
    # the kernel's KernelStack, give or take threads created or ended
    # between the two reads (and the per-CPU idle tasks).
    from zxmem.sources import kernel

    if kernel.thread_size() is None:
        pytest.skip("kernel stack size of this architecture unknown")
    before = read_meminfo()["KernelStack"]
    r = cli(["k", "ps", "-a", "--json"])
    after = read_meminfo()["KernelStack"]
    total = json.loads(r.stdout)["totals"]["kstack_bytes"]
    lo, hi = sorted((before, after))
    slack = max(16 * kernel.thread_size(), hi // 20)
    assert lo - slack <= total <= hi + slack
