"""Live: ``zxmem k vmos hidden`` finds memory that no process maps.

The test makes three objects of known size that no process maps:

* a 24 MiB memfd, every page written, held only by a descriptor of a child
  process it starts (the child never maps it);
* a 16 MiB SysV segment (``shmget``), every page touched through a
  temporary attach and then detached, so ``nattch`` is 0 (removed with
  ``IPC_RMID`` in a finalizer);
* a 12 MiB file on a tmpfs the test mounts under a temporary directory
  (unmounted in a finalizer; needs root).

Each must be listed with its exact size and alloc, the memfd with the child
as its holder, the segment and the file with none.
"""

from __future__ import annotations

import ctypes
import json
import os
import subprocess
import sys

import pytest

from zxmem.model import inode_koid

pytestmark = pytest.mark.live

MIB = 1 << 20
PAGE = os.sysconf("SC_PAGE_SIZE")
SHM_DEV = os.makedev(0, 1)
IPC_PRIVATE, IPC_CREAT, IPC_RMID = 0, 0o1000, 0

CHILD = r"""
import os, sys
size = int(sys.argv[1])
fd = os.memfd_create("zx-hidden-24m")
block = b"\x5a" * (1 << 20)
for _ in range(size >> 20):
    os.write(fd, block)  # written through the descriptor: never mapped
print("ready", os.getpid(), fd, flush=True)
sys.stdin.read()
"""


@pytest.fixture
def memfd_holder():
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", "-c", CHILD, str(24 * MIB)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )
    try:
        words = proc.stdout.readline().split()
        if not words or words[0] != "ready":
            pytest.fail("the memfd holder did not start")
        yield int(words[1]), int(words[2])
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def _libc():
    libc = ctypes.CDLL(None, use_errno=True)
    libc.shmget.argtypes = (ctypes.c_int, ctypes.c_size_t, ctypes.c_int)
    libc.shmat.argtypes = (ctypes.c_int, ctypes.c_void_p, ctypes.c_int)
    libc.shmat.restype = ctypes.c_void_p
    libc.shmdt.argtypes = (ctypes.c_void_p,)
    libc.shmctl.argtypes = (ctypes.c_int, ctypes.c_int, ctypes.c_void_p)
    return libc


@pytest.fixture
def sysv_segment(request):
    if not os.path.exists("/proc/sysvipc/shm"):
        pytest.skip("this kernel has no SysV IPC (/proc/sysvipc/shm)")
    libc = _libc()
    size = 16 * MIB
    shmid = libc.shmget(IPC_PRIVATE, size, IPC_CREAT | 0o600)
    if shmid < 0:
        pytest.skip(f"shmget failed: {os.strerror(ctypes.get_errno())}")
    request.addfinalizer(lambda: libc.shmctl(shmid, IPC_RMID, None))
    addr = libc.shmat(shmid, None, 0)
    if addr in (None, ctypes.c_void_p(-1).value):
        pytest.fail(f"shmat failed: {os.strerror(ctypes.get_errno())}")
    try:
        for offset in range(0, size, PAGE):
            ctypes.memset(addr + offset, 0x5A, 1)  # one byte makes the page resident
    finally:
        assert libc.shmdt(ctypes.c_void_p(addr)) == 0
    return shmid


@pytest.fixture
def tmpfs_file(tmp_path, request):
    if os.geteuid() != 0:
        pytest.skip("not root: cannot mount a tmpfs for the test")
    mnt = tmp_path / "mnt"
    mnt.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64m", "zxmem-test", str(mnt)],
                       capture_output=True, text=True)
    if r.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed: {r.stderr.strip()}")
    request.addfinalizer(lambda: subprocess.run(["umount", "-l", str(mnt)], check=False))
    path = mnt / "twelve.bin"
    with open(path, "wb") as f:
        for _ in range(12):
            f.write(b"\x5a" * MIB)
    return str(path)


def _rows(text: str) -> dict[int, list[str]]:
    """koid → [holder, rights, koid, parent, #chld, #map, #shr, size, alloc, name]."""
    rows = {}
    for line in text.splitlines()[2:]:
        fields = line.split(None, 9)
        if len(fields) == 10 and fields[2].isdigit():
            rows[int(fields[2])] = fields
    return rows


def test_hidden_lists_memfd_sysv_and_tmpfs_file(cli, memfd_holder, sysv_segment, tmpfs_file):
    pid, fd = memfd_holder
    st = os.stat(f"/proc/{pid}/fd/{fd}")
    memfd_koid = inode_koid(st.st_dev, st.st_ino)
    sysv_koid = inode_koid(SHM_DEV, sysv_segment)
    fst = os.stat(tmpfs_file)
    file_koid = inode_koid(fst.st_dev, fst.st_ino)

    r = cli(["k", "vmos", "hidden"])
    assert r.status == 0, r.stderr
    assert "Traceback" not in r.stderr
    assert "stopped at its bound" not in r.stderr, r.stderr
    rows = _rows(r.stdout)

    memfd = rows.get(memfd_koid)
    assert memfd is not None, r.stdout
    assert memfd[0] == f"{pid}:{fd}"  # the holder: the child and its descriptor
    assert memfd[1] == "rw----"
    assert memfd[5:9] == ["0", "0", "24M", "24M"]
    assert memfd[9] == "memfd:zx-hidden-24m"

    sysv = rows.get(sysv_koid)
    assert sysv is not None, r.stdout
    assert sysv[0] == "-" and sysv[5:9] == ["0", "0", "16M", "16M"]
    assert sysv[9] == "SYSV00000000"

    tmpfs = rows.get(file_koid)
    assert tmpfs is not None, r.stdout
    assert tmpfs[0] == "-" and tmpfs[5:9] == ["0", "0", "12M", "12M"]
    assert tmpfs[9] == tmpfs_file

    # Largest first: the three in size order, the Shmem remainder last.
    order = [int(line.split(None, 3)[2]) for line in r.stdout.splitlines()[2:-2]]
    assert order.index(memfd_koid) < order.index(sysv_koid) < order.index(file_koid)
    assert order[-1] == 0


def test_hidden_json_holders_and_remainder(cli, memfd_holder, sysv_segment):
    pid, fd = memfd_holder
    st = os.stat(f"/proc/{pid}/fd/{fd}")
    r = cli(["k", "vmos", "hidden", "--json", "--walk-limit", "0"])
    assert r.status == 0, r.stderr
    doc = json.loads(r.stdout)
    by_koid = {v["koid"]: v for v in doc["vmos"]}
    memfd = by_koid[inode_koid(st.st_dev, st.st_ino)]
    assert [(h["pid"], h["fd"]) for h in memfd["holders"]] == [(pid, fd)]
    assert memfd["committed_bytes"] == 24 * MIB
    sysv = by_koid[inode_koid(SHM_DEV, sysv_segment)]
    assert sysv["holders"] == [] and sysv["committed_bytes"] == 16 * MIB
    assert sysv["swap_bytes"] is not None
    rest = doc["vmos"][-1]
    assert rest["koid"] == 0 and rest["name"] == "[unattributed Shmem]"
    # The remainder is what meminfo Shmem does not explain; the 40 MiB the
    # test made are attributed, so they are not in it.
    assert rest["committed_bytes"] is not None
    with open("/proc/meminfo") as f:
        shmem = [int(x.split()[1]) * 1024 for x in f if x.startswith("Shmem:")][0]
    assert rest["committed_bytes"] <= shmem - 40 * MIB + 8 * MIB  # others may move a little


def test_pid_view_shows_the_descriptor(cli, memfd_holder):
    pid, fd = memfd_holder
    r = cli(["k", "vmos", str(pid)])
    assert r.status == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[:2] == [f"process [{pid}]:", "Handles to VMOs:"]
    held = [line for line in lines if line.endswith(" memfd:zx-hidden-24m")]
    assert held and held[0].split()[0] == str(fd)
    assert held[0].split()[7:9] == ["24M", "24M"]


def test_asd_as_root_and_as_nobody(cli):
    import workloads
    from harness import nobody_env, nobody_python

    if os.geteuid() != 0:
        pytest.skip("not root: the root half of this test cannot run")
    r = cli(["k", "asd", "kernel"])
    assert r.status == 0, r.stderr
    with open("/proc/meminfo") as f:
        used = [int(x.split()[1]) * 1024 for x in f if x.startswith("VmallocUsed:")][0]
    top = r.stdout.splitlines()[0]
    pages = int(top.split(" pages ")[1].split()[0])
    # Σ pages= of vmallocinfo is VmallocUsed (B.5), up to what moved between reads.
    assert abs(pages * PAGE - used) <= 4 * MIB, (top, used)

    python = nobody_python()
    run = subprocess.run(
        [*workloads.nobody_prefix(), *python, "-m", "zxmem", "k", "asd", "kernel"],
        env=nobody_env(), capture_output=True, text=True, cwd="/",
    )
    assert "Traceback" not in run.stderr
    assert run.returncode == 0, run.stderr
    assert "/proc/vmallocinfo is readable only by root: run as root" in run.stderr


def test_walk_bound_is_reported(cli, tmpfs_file):
    r = cli(["k", "vmos", "hidden", "--walk-limit", "1"])
    assert r.status == 0, r.stderr
    assert "tmpfs walk stopped at its bound of 1 entries" in r.stderr
    assert "raise --walk-limit" in r.stderr
