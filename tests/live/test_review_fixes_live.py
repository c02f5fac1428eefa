"""Live: a process whose main thread has exited while another thread runs.

The workload allocates and touches 32 MiB on its second thread, then the
main thread calls pthread_exit: the thread group leader becomes a zombie
without an mm (/proc/PID/smaps_rollup gives ESRCH) while the process keeps
its memory.  zxmem must report that memory (PSS at least the 32 MiB), not 0.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

import pytest

from zxmem.sources.linux import CollectOptions, collect

MIB = 1 << 20

WORKLOAD = r"""
import ctypes, mmap, os, sys, threading
def hold():
    m = mmap.mmap(-1, 32 << 20)
    for i in range(0, 32 << 20, 4096):
        m[i] = 1
    print(threading.get_native_id(), flush=True)
    sys.stdin.read()          # until the test closes our stdin
    os._exit(0)
threading.Thread(target=hold).start()
ctypes.CDLL(None).pthread_exit(None)
"""


@pytest.fixture
def leaderless():
    """(pid, tid) of a process whose main thread has exited."""
    proc = subprocess.Popen([sys.executable, "-c", WORKLOAD], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True)
    try:
        tid = int(proc.stdout.readline())
        for _ in range(200):  # the leader's exit is asynchronous
            with open(f"/proc/{proc.pid}/stat") as f:
                if f.read().rsplit(")", 1)[1].split()[0] == "Z":
                    break
            time.sleep(0.01)
        else:
            pytest.skip("the main thread did not exit (pthread_exit unavailable?)")
        yield proc.pid, tid
    finally:
        proc.stdin.close()
        try:
            proc.wait(timeout=10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


def test_ps_memory_of_a_process_whose_main_thread_exited(leaderless):
    pid, _ = leaderless
    try:
        with open(f"/proc/{pid}/smaps_rollup", "rb") as f:
            f.read()
        pytest.skip("this kernel still shows the leader's smaps_rollup")
    except ProcessLookupError:
        pass  # ESRCH: the case under test
    p = collect("/proc", CollectOptions(jobs="none")).process(pid)
    assert p is not None and p.memory is not None
    assert p.memory.pss_bytes >= 32 * MIB
    assert p.memory.private_bytes >= 32 * MIB


def test_vmaps_of_a_process_whose_main_thread_exited(cli, leaderless):
    pid, _ = leaderless
    r = cli(["vmaps", "--json", str(pid)])
    assert r.status == 0, r.stderr
    import json

    entries = json.loads(r.stdout)["entries"]
    rss = sum(e.get("rss_bytes") or 0 for e in entries if e["type"] == "mapping")
    assert rss >= 32 * MIB


def test_thread_id_refused(cli, leaderless):
    pid, tid = leaderless
    assert tid != pid and os.path.isdir(f"/proc/{tid}")
    for cmd in (["vmaps"], ["vmos"], ["k", "vmos"], ["share"]):
        r = cli([*cmd, str(tid)])
        assert r.status == 1, cmd
        assert r.stderr == f"zxmem: {tid} is a thread of process {pid}\n"
