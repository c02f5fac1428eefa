"""zxmem record on the live machine: kill -9 at any point, non-root, round trips."""

from __future__ import annotations

import os
import random
import shutil
import signal
import sqlite3
import subprocess
import sys
import tempfile
import time

import pytest

import zxmem
from zxmem.commands.record import plan_for
from zxmem.store.reader import read_sample, samples, stored_form
from zxmem.store.recorder import Recorder
from zxmem.store.writer import OBJECTS, TOTALS

pytestmark = pytest.mark.live


def test_kill_9_at_random_points_leaves_every_sample_readable(tmp_path):
    """A recorder killed while writing loses at most the sample being written."""
    store = str(tmp_path / "h.db")
    rng = random.Random(20261204)
    cmd = [sys.executable, "-m", "zxmem", "record", "--interval", "0.05", "--store", store,
           "--objects-every", "3"]
    for i in range(20):
        proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        # Each recorder writes at least one sample before it dies (start-up
        # takes longer on a loaded machine), then is killed at a random point
        # of its next ones.
        deadline = time.monotonic() + 60
        while _count(store) <= i and time.monotonic() < deadline and proc.poll() is None:
            time.sleep(0.02)
        time.sleep(rng.uniform(0.0, 0.3))
        assert proc.poll() is None, proc.communicate()[1]
        os.kill(proc.pid, signal.SIGKILL)
        _, err = proc.communicate(timeout=30)
        assert proc.returncode == -signal.SIGKILL
        assert b"Traceback" not in err and b"another zxmem record" not in err, err
    # The lock died with the last recorder: a new one starts at once.
    r = subprocess.run([*cmd, "--count", "2"], capture_output=True, timeout=60)
    assert r.returncode == 0, r.stderr
    conn = sqlite3.connect(store)
    assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    taken = samples(conn)
    assert len(taken) >= 20
    # Sample numbers run on without a gap: a killed write leaves no number behind.
    assert [s.n for s in taken] == list(range(1, len(taken) + 1))
    for s in taken:
        snap = read_sample(conn, s.n)
        assert len(snap.processes) == s.nproc and snap.kernel is not None
        assert (s.tier == OBJECTS) == bool(snap.vmos)
    conn.close()


def _count(store: str) -> int:
    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created yet


@pytest.mark.parametrize("tier", [TOTALS, OBJECTS])
def test_the_live_machine_reads_back_equal(tmp_path, tier):
    path = str(tmp_path / "h.db")
    with Recorder(path, print) as rec:
        for _ in range(2):  # the second sample is written as changes to the first
            snap = zxmem.collect(plan_for(tier))
            n = rec.add(snap, tier, time.time_ns())
            assert read_sample(rec.conn, n) == stored_form(snap, tier)
        if tier == OBJECTS:
            assert snap.vmos


def test_record_as_nobody_records_what_it_may_read():
    from harness import nobody_env, nobody_python
    from workloads import nobody_prefix

    python = nobody_python()
    top = tempfile.mkdtemp(prefix="zxmem-record-")
    try:
        os.chmod(top, 0o755)
        os.chown(top, 65534, 65534)
        store = os.path.join(top, "h.db")
        r = subprocess.run(
            [*nobody_prefix(), *python, "-m", "zxmem", "record", "--store", store,
             "--count", "3", "--interval", "0.1"],
            capture_output=True, text=True, env=nobody_env(), cwd="/", timeout=120)
        assert r.returncode == 0, r.stderr
        assert r.stderr.count("not readable") == 1, r.stderr
        assert r.stderr.count("\n") == 1
        conn = sqlite3.connect(store)
        taken = samples(conn)
        assert len(taken) == 3
        snap = read_sample(conn, 3)
        # What nobody may not read is recorded as unknown, never 0; PID 1 is
        # root's.  (Not "every uid 0 process": another test's setpriv may
        # turn a root process into nobody's between status and smaps.)
        denied = snap.provenance.denied_pids("smaps_rollup", "smaps")
        assert 1 in denied and snap.process(1).memory is None
        assert all(snap.process(pid).memory is None for pid in denied if snap.process(pid))
        # Its own processes it reads.
        assert any(p.uid == 65534 and p.memory is not None for p in snap.processes)
        conn.close()
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_a_full_disk_is_one_line_and_recording_resumes(tmp_path):
    """A real ENOSPC (a 1 MiB tmpfs): one line for the episode, an intact
    store, and samples again once there is room."""
    import threading

    if os.geteuid() != 0:
        pytest.skip("mounting a tmpfs needs root")
    top = tmp_path / "small"
    top.mkdir()
    r = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=1m", "tmpfs", str(top)],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs: {r.stderr.decode().strip()}")
    proc = None
    try:
        store = str(top / "h.db")
        filler = top / "filler"
        filler.write_bytes(b"\0" * (1024 * 1024 - 256 * 1024))
        proc = subprocess.Popen(
            [sys.executable, "-m", "zxmem", "record", "--interval", "0.02", "--store", store,
             "--objects-every", "1"],
            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
        lines: list[str] = []
        reader = threading.Thread(target=lambda: lines.extend(proc.stderr), daemon=True)
        reader.start()

        def wait_for(text: str) -> None:
            deadline = time.monotonic() + 60
            while not any(text in line for line in lines):
                assert proc.poll() is None and time.monotonic() < deadline, lines
                time.sleep(0.02)

        wait_for("cannot write a sample")
        time.sleep(0.3)  # a few more samples fail, quietly
        filler.unlink()
        wait_for("again")
        proc.send_signal(signal.SIGTERM)  # systemd's stop
        assert proc.wait(timeout=30) == 0
        reader.join(timeout=10)
        failed = [line for line in lines if "cannot write a sample" in line]
        assert len(failed) == 1 and "full" in failed[0], lines
        assert sum("again" in line for line in lines) == 1, lines
        assert not any("Traceback" in line for line in lines), lines
        conn = sqlite3.connect(store)
        assert conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        taken = samples(conn)
        assert [s.n for s in taken] == list(range(1, len(taken) + 1))
        for s in taken:
            assert len(read_sample(conn, s.n).processes) == s.nproc
        conn.close()
    finally:
        if proc is not None and proc.poll() is None:
            proc.kill()
            proc.wait()
        subprocess.run(["umount", "-l", str(top)], capture_output=True)


def test_a_user_reads_roots_store_when_no_recorder_runs():
    """Root's store, world-readable, no recorder running (no -wal): a user
    who may not create the -shm file still reads every sample."""
    from harness import nobody_env, nobody_python
    from workloads import nobody_prefix

    if os.geteuid() != 0:
        pytest.skip("needs root to write a store nobody cannot write to")
    python = nobody_python()
    top = tempfile.mkdtemp(prefix="zxmem-rootstore-")
    try:
        os.chmod(top, 0o755)
        store = os.path.join(top, "h.db")
        with Recorder(store, print) as rec:
            for tier in (OBJECTS, TOTALS):
                rec.add(zxmem.collect(plan_for(tier)), tier, time.time_ns())
        os.chmod(store, 0o644)
        assert not os.path.exists(store + "-wal")
        for args in (["history", "--store", store], ["ps", "--json", "--from", store + "@1"]):
            r = subprocess.run([*nobody_prefix(), *python, "-m", "zxmem", *args],
                               capture_output=True, text=True, env=nobody_env(), cwd="/",
                               timeout=120)
            assert r.returncode == 0, r.stderr
        assert len(r.stdout) > 100
        os.chmod(store, 0o600)
        r = subprocess.run([*nobody_prefix(), *python, "-m", "zxmem", "history", "--store",
                            store], capture_output=True, text=True, env=nobody_env(), cwd="/",
                           timeout=120)
        assert r.returncode == 1 and r.stderr == f"zxmem: {store}: permission denied\n"
    finally:
        shutil.rmtree(top, ignore_errors=True)


def test_both_tiers_take_the_same_process_totals():
    """An objects sample's totals are smaps_rollup's, as in a totals sample:
    no step in a process's series (and no rewritten row) at every objects sample."""
    idle = subprocess.Popen([sys.executable, "-c",
                             "import sys; b = bytearray(8 << 20); sys.stdin.read()"],
                            stdin=subprocess.PIPE)
    try:
        time.sleep(0.3)
        snaps = [zxmem.collect(plan_for(t)) for t in (TOTALS, OBJECTS)]
        first, second = (s.process(idle.pid) for s in snaps)
        assert first.memory is not None and first.memory.pss_anon_bytes is not None
        # PSS moves with other processes' sharing; what is the process's own does not.
        for field in ("pss_anon_bytes", "private_bytes", "rss_bytes", "swap_bytes"):
            assert getattr(first.memory, field) == getattr(second.memory, field), field
    finally:
        idle.stdin.close()
        idle.wait()


def test_views_of_an_objects_sample_are_those_of_its_memgraph(tmp_path):
    """vmos, digest and mem of a replayed objects sample print what they print
    for memgraph -v of the very snapshot that was recorded."""
    import io

    from zxmem import memgraph
    from zxmem.cli import Environment, main

    snap = zxmem.collect(plan_for(OBJECTS))
    store = str(tmp_path / "h.db")
    with Recorder(store, print) as rec:
        rec.add(snap, OBJECTS, time.time_ns())
    saved = tmp_path / "mem.json"
    saved.write_text(memgraph.dumps(snap))

    def run(args: list[str]) -> tuple[int, str]:
        out = io.StringIO()
        status = main(args, Environment(stdout=out, stderr=io.StringIO(),
                                        stdout_isatty=False))
        return status, out.getvalue()

    for view in (["vmos", str(os.getpid())], ["digest"], ["mem"], ["ps", "--json"],
                 ["kstats", "-m", "-n", "1"]):
        from_store = run([*view, "--from", store])
        from_file = run([*view, "--from", str(saved)])
        assert from_store[0] == 0 and from_store == from_file, view
        assert len(from_store[1]) > 50


def test_readers_never_kill_a_running_recorder(tmp_path, cli):
    """History readers while a recorder collects memory objects every sample.

    The objects tier opens mapped files for their page cache; the recorder
    maps its own store's -shm, and closing a descriptor of it dropped
    SQLite's POSIX lock on it: the next reader truncated the file and the
    recorder died of SIGBUS.
    """
    store = str(tmp_path / "h.db")
    proc = subprocess.Popen([sys.executable, "-m", "zxmem", "record", "--interval", "0.05",
                             "--objects-every", "1", "--store", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 60
        while _count(store) < 2 and time.monotonic() < deadline:
            time.sleep(0.05)
        for _ in range(40):
            r = cli(["history", "--store", store])
            assert r.status == 0, r.stderr
            time.sleep(0.02)
        assert proc.poll() is None, proc.communicate()[1]
        before = _count(store)
        # Still recording: a new sample lands (an objects sample of a busy
        # machine can take seconds; the recorder is alive throughout).
        deadline = time.monotonic() + 30
        while _count(store) <= before and time.monotonic() < deadline:
            assert proc.poll() is None, proc.communicate()[1]
            time.sleep(0.1)
        assert _count(store) > before
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
    assert proc.returncode in (0, -signal.SIGTERM)


def test_posix_locks_of_a_process_are_found():
    import fcntl

    from zxmem.sources.procfs import parse_posix_lock_inodes

    with tempfile.NamedTemporaryFile() as f:
        fcntl.lockf(f.fileno(), fcntl.LOCK_EX)
        st = os.fstat(f.fileno())
        with open("/proc/locks", "rb") as locks:
            mine = parse_posix_lock_inodes(locks.read(), os.getpid())
        assert (st.st_dev, st.st_ino) in mine
    line = b"1: POSIX  ADVISORY  WRITE 4242 fd:01:1234 0 EOF\n" \
           b"1: -> POSIX  ADVISORY  WRITE 99 fd:01:77 0 EOF\n" \
           b"2: FLOCK  ADVISORY  WRITE 4242 fd:01:55 0 EOF\n"
    assert parse_posix_lock_inodes(line, 4242) == {(os.makedev(0xfd, 1), 1234)}
