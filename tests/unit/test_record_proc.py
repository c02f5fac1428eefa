"""The /proc recorder (tests/fixtures/record_proc.py) on this machine's /proc."""

from __future__ import annotations

import errno
import json
import os
import sys

import pytest

from zxmem.sources.linux import collect

FIXTURES = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "fixtures")
sys.path.insert(0, FIXTURES)

import record_proc  # noqa: E402


def test_records_own_process_with_cgroup_ids(tmp_path):
    pid = os.getpid()
    record_proc.record(str(tmp_path), [pid], hostname="fixture-host")
    proc = tmp_path / "proc"
    for name in ("stat", "status", "cmdline", "cgroup", "smaps_rollup", "smaps"):
        assert (proc / str(pid) / name).is_file()
    assert (proc / str(pid) / "task" / str(pid) / "stat").is_file()
    assert (proc / "sys" / "kernel" / "hostname").read_text() == "fixture-host\n"
    assert (proc / "self" / "mountinfo").is_file()
    meta = json.loads((tmp_path / "zxmem-recording.json").read_text())
    # Every recorded id is the inode number of that directory on this machine.
    for directory, inode in meta["cgroup_ids"].items():
        assert os.path.isabs(directory)
        assert os.stat(directory).st_ino == inode
    snap = collect(str(proc))
    assert [p.koid for p in snap.processes] == [pid]
    assert snap.provenance.host == "fixture-host"
    assert snap.processes[0].memory.pss_bytes > 0


def test_failed_reads_are_represented_for_root_too(tmp_path):
    # A fake /proc whose files fail the three ways the recorder distinguishes.
    fake = tmp_path / "fake"
    (fake / "self").mkdir(parents=True)
    (fake / "self" / "mountinfo").write_bytes(b"")
    (fake / "sys" / "kernel").mkdir(parents=True)
    (fake / "sys" / "kernel" / "osrelease").write_bytes(b"6.0\n")
    (fake / "5").mkdir()
    (fake / "5" / "stat").write_bytes(b"5 (x) S 1 1 1 0 -1 0 0 0 0 0 0 0 0 0 20 0 1 0 9 0 0\n")
    # smaps_rollup denied: make it a directory, so open() fails with EISDIR.
    (fake / "5" / "smaps_rollup").mkdir()
    out = tmp_path / "out"
    record_proc.record(str(out), [5], proc=str(fake))
    meta = json.loads((out / "zxmem-recording.json").read_text())
    assert meta["read_errors"]["5/smaps_rollup"] == "EISDIR"
    assert meta["read_errors"]["5/cmdline"] == "ENOENT"
    assert not (out / "proc" / "5" / "cmdline").exists()  # ENOENT: absent
    denied = out / "proc" / "5" / "smaps_rollup"
    assert denied.is_dir() and (denied / "EISDIR").is_file()
    with pytest.raises(IsADirectoryError):
        open(denied, "rb")


def test_kernel_thread_esrch_is_an_empty_file(tmp_path):
    try:
        with open("/proc/2/smaps_rollup", "rb") as f:
            f.read()
        pytest.skip("PID 2 has a readable smaps_rollup here (not kthreadd?)")
    except OSError as exc:
        if exc.errno != errno.ESRCH:
            pytest.skip(f"PID 2 smaps_rollup gives {exc.strerror}, not ESRCH")
    record_proc.record(str(tmp_path), [2])
    assert (tmp_path / "proc" / "2" / "smaps_rollup").read_bytes() == b""
    meta = json.loads((tmp_path / "zxmem-recording.json").read_text())
    assert meta["read_errors"]["2/smaps_rollup"] == "ESRCH"
