"""Processes whose main thread has exited, thread IDs given as PIDs, proc
roots that are not /proc, PID parsing and the user-mode top job, on
hand-built /proc trees."""

from __future__ import annotations

import errno
import subprocess
import sys

import pytest

from zxmem.commands import common
from zxmem.sources import linux
from zxmem.sources.linux import CollectOptions, collect

K = 1024


def _stat(pid: int, comm: str = "prog", state: str = "S", threads: int = 1) -> str:
    # fs/proc/array.c do_task_stat: pid (comm) state ppid pgrp session tty_nr
    # tpgid flags minflt cminflt majflt cmajflt utime stime cutime cstime
    # priority nice num_threads itrealvalue starttime ...
    rest = [state, "1", str(pid), str(pid), "0", "-1", "0"] + ["0"] * 10 + \
        [str(threads), "0", "100", "0", "0"]
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


ROLLUP = (
    "00400000-7ffc00000000 ---p 00000000 00:00 0                          [rollup]\n"
    "Rss:                 300 kB\nPss:                 200 kB\n"
    "Shared_Clean:         60 kB\nShared_Dirty:          0 kB\n"
    "Private_Clean:        40 kB\nPrivate_Dirty:       200 kB\n"
    "Swap:                  0 kB\nSwapPss:               0 kB\n"
)

SMAPS = (
    "00400000-00401000 r-xp 00000000 08:01 12                                 /bin/prog\n"
    "Rss:                   4 kB\nAnonymous:             0 kB\nVmFlags: rd ex \n"
    "00600000-00602000 rw-p 00000000 00:00 0 \n"
    "Rss:                   8 kB\nAnonymous:             8 kB\nVmFlags: rd wr \n"
)


def _tree(tmp_path, threads: int = 2, thread_state: str = "S"):
    """PID 100, main thread exited (a zombie leader without mm: empty
    smaps_rollup and maps, as recorded), thread 101 alive with the maps."""
    root = tmp_path / "proc"
    d = root / "100"
    (d / "task" / "100").mkdir(parents=True)
    (d / "stat").write_text(_stat(100, state="Z", threads=threads))
    (d / "status").write_text("Name:\tprog\nTgid:\t100\nPid:\t100\n")
    (d / "cmdline").write_bytes(b"")
    (d / "smaps_rollup").write_text("")
    (d / "maps").write_text("")
    (d / "smaps").write_text("")
    (d / "task" / "100" / "stat").write_text(_stat(100, state="Z", threads=threads))
    if threads > 1:
        t = d / "task" / "101"
        t.mkdir()
        t.joinpath("stat").write_text(_stat(101, state=thread_state, threads=threads))
        t.joinpath("smaps_rollup").write_text(ROLLUP)
        t.joinpath("smaps").write_text(SMAPS)
        t.joinpath("cmdline").write_bytes(b"prog\0")
        # /proc/TID resolves though it is not listed: a thread's own view.
        tid = root / "101"
        tid.mkdir()
        tid.joinpath("stat").write_text(_stat(101, threads=threads))
        tid.joinpath("status").write_text("Name:\tprog\nTgid:\t100\nPid:\t101\n")
        tid.joinpath("cmdline").write_bytes(b"prog\0")
    return root


# --- 1. main thread exited: memory from a live thread ------------------------


def test_zombie_leader_memory_from_a_live_thread(tmp_path):
    root = _tree(tmp_path)
    p = collect(str(root), CollectOptions(jobs="none")).process(100)
    assert p.memory is not None
    assert p.memory.pss_bytes == 200 * K
    assert p.memory.private_bytes == 240 * K
    assert p.memory.shared_bytes == 60 * K


def test_zombie_leader_esrch_reads_a_live_thread(tmp_path, monkeypatch):
    root = _tree(tmp_path)
    real = linux._read_record

    def esrch(path):
        if path.endswith("/100/smaps_rollup"):  # the leader's, not task/101's
            raise OSError(errno.ESRCH, "No such process", path)
        return real(path)

    monkeypatch.setattr(linux, "_read_record", esrch)
    snap = collect(str(root), CollectOptions(jobs="none"))
    assert snap.process(100).memory.pss_bytes == 200 * K
    assert snap.provenance.denied == ()


def test_real_zombie_has_zero_memory(tmp_path, monkeypatch):
    root = _tree(tmp_path, threads=1)
    real = linux._read_record

    def esrch(path):
        if path.endswith("smaps_rollup"):
            raise OSError(errno.ESRCH, "No such process", path)
        return real(path)

    monkeypatch.setattr(linux, "_read_record", esrch)
    p = collect(str(root), CollectOptions(jobs="none")).process(100)
    assert p.memory is not None and p.memory.pss_bytes == 0


def test_no_live_thread_left_is_zero(tmp_path):
    root = _tree(tmp_path, thread_state="Z")  # both threads exiting
    p = collect(str(root), CollectOptions(jobs="none")).process(100)
    assert p.memory.pss_bytes == 0


def test_live_thread_unreadable_is_unknown(tmp_path):
    root = _tree(tmp_path)
    rollup = root / "100" / "task" / "101" / "smaps_rollup"
    rollup.unlink()
    rollup.mkdir()  # EISDIR even for root
    snap = collect(str(root), CollectOptions(jobs="none"))
    assert snap.process(100).memory is None
    assert [w for w, _ in snap.provenance.denied] == ["smaps_rollup:100"]


def test_vmaps_of_a_zombie_leader_reads_a_live_thread(cli, tmp_path):
    root = _tree(tmp_path)
    r = cli(["vmaps", "--proc-root", str(root), "100"])
    assert r.status == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].endswith("'proc:100'")
    assert any(line.endswith("'/bin/prog'") and " 4k:res " in line for line in lines)
    assert any(" 8k:res " in line and "mmap-anonymous" in line for line in lines)


def test_vmaps_of_a_real_zombie(cli, tmp_path):
    root = _tree(tmp_path, threads=1)
    r = cli(["vmaps", "--proc-root", str(root), "100"])
    assert r.status == 1 and "pid 100 has exited (zombie)" in r.stderr


# --- 2. a thread ID is not a process ---------------------------------------


@pytest.mark.parametrize("cmd", [["vmaps"], ["vmos"], ["k", "vmos"]])
def test_thread_id_is_refused(cli, tmp_path, cmd):
    root = _tree(tmp_path)
    r = cli([*cmd, "--proc-root", str(root), "101"])
    assert r.status == 1
    assert r.stderr == "zxmem: 101 is a thread of process 100\n"


# --- 3. a proc root must look like /proc -------------------------------------


@pytest.mark.parametrize("cmd", [["ps"], ["digest"], ["mem"], ["treemap"], ["k", "ps"],
                                 ["vmaps", "1"], ["vmos", "1"]])
def test_empty_proc_root_is_an_error(cli, tmp_path, cmd):
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / "notes.txt").write_text("not a proc\n")
    r = cli([*cmd, "--proc-root", str(empty)], stdin=None)  # treemap: not a pipe
    assert r.status == 1, r.stdout
    assert r.stderr.count("\n") == 1 and str(empty) in r.stderr
    assert "not a /proc tree" in r.stderr


def test_proc_root_with_only_meminfo_is_accepted(tmp_path):
    root = tmp_path / "proc"
    root.mkdir()
    (root / "meminfo").write_text("MemTotal: 1 kB\n")

    class Args:
        proc_root = str(root)

    assert common.proc_root(Args(), None) == str(root)


# --- 4. one strict PID/koid parser -----------------------------------------


@pytest.mark.parametrize("text,value", [
    ("1782", 1782), ("01782", 1782), ("0", 0), ("0x10", 16), ("0X1f", 31),
])
def test_parse_koid_accepts(text, value):
    assert common.parse_koid(text) == value


@pytest.mark.parametrize("text", [
    "\u0661\u0662", "1_000", " 1782", "1782 ", "+5", "-5", "0x", "0x1_0", "", "12x",
    "0b11", "0o17", "\uff11",
])
def test_parse_koid_refuses(text):
    with pytest.raises(ValueError):
        common.parse_koid(text)


@pytest.mark.parametrize("cmd", [["vmaps"], ["vmos"]])
@pytest.mark.parametrize("text", ["\u0661\u0662", "1_000", " 123"])
def test_vmaps_vmos_refuse_odd_numbers(cli, cmd, text):
    r = cli([*cmd, text])
    assert r.status == 2 and r.stderr.count("\n") == 1


def test_leading_zero_pid_is_decimal(cli, tmp_path):
    root = _tree(tmp_path)
    r = cli(["vmaps", "--proc-root", str(root), "0100"])  # not octal 64
    assert r.status == 0, r.stderr
    assert r.stdout.splitlines()[0].endswith("'proc:100'")


@pytest.mark.parametrize("args", [["ps", "--job"], ["share"], ["mem", "--pid"]])
def test_koid_options_refuse_odd_numbers(cli, args):
    for text in ("\u0661\u0662", "1_000", " 1782"):
        r = cli([*args, text])
        assert r.status == 2, (args, text)


# --- 5. --help does not import the model ----------------------------------


def test_common_does_not_import_the_model():
    code = ("import sys, zxmem.commands.common; "
            "print('zxmem.model' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"


# --- 6. user mode: the top job is not a second "root" ----------------------


def test_user_mode_top_job_is_users(tmp_path):
    root = tmp_path / "proc"
    for pid, uid in ((10, 0), (11, 1000)):
        d = root / str(pid)
        d.mkdir(parents=True)
        d.joinpath("stat").write_text(_stat(pid))
        d.joinpath("status").write_text(f"Name:\tprog\nUid:\t{uid}\t{uid}\t{uid}\t{uid}\n")
        d.joinpath("cmdline").write_bytes(b"prog\0")
        d.joinpath("smaps_rollup").write_text(ROLLUP)
    snap = collect(str(root), CollectOptions(jobs="user", status=True))
    names = {j.koid: j.name for j in snap.jobs}
    assert names[4294967295] == "users"
    assert names[0] == "root"
    assert list(names.values()).count("root") == 1


def test_share_fallback_reads_a_live_thread(cli, tmp_path):
    # A kernel whose kpagecount is a folio's average (CONFIG_NO_PAGE_MAPCOUNT):
    # share falls back to smaps_rollup, which for a process whose main
    # thread exited is a live thread's.
    import gzip

    root = _tree(tmp_path)
    (root / "kpagecount").write_bytes(b"")
    (root / "kpageflags").write_bytes(b"")
    (root / "config.gz").write_bytes(gzip.compress(b"CONFIG_NO_PAGE_MAPCOUNT=y\n"))
    r = cli(["share", "--json", "--proc-root", str(root), "100"])
    assert r.status == 0, r.stderr
    import json

    doc = json.loads(r.stdout)
    assert doc["pss_bytes"] == 200 * K and doc["private_bytes"] == 240 * K
