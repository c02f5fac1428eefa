"""zxmem growth on a live recording of workloads of known growth.

Four workloads (tests/live/growth_workloads.py) run while ``zxmem record
--interval 1 --objects-every 2`` samples the machine for about a minute:
one leaks 1 MiB/s of anonymous memory, one leaks 1 MiB/s into a memfd it
holds only by a descriptor (a hidden object: its USS does not grow), one
allocates and frees 50 MiB every 5 s (a sawtooth), one holds 30 MiB.
``growth`` must rank the two leakers first with rates within 10 % of
1 MiB/s, name the memfd, and call neither the sawtooth nor the steady one a
leak.  Other processes of the machine may grow too (other tests run beside
this one): the ranking is checked among the workloads, and every process
ranked above a leaker must itself be a leak (leaks come first).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys

import pytest
from harness import zxmem_command

pytestmark = pytest.mark.live

MIB = 1 << 20
PROGRAM = os.path.join(os.path.dirname(os.path.abspath(__file__)), "growth_workloads.py")
# About a minute at one sample a second; a loaded machine takes longer per
# sample: then recording goes on (up to MOST_SECONDS) until MIN_SAMPLES.
SECONDS = 60.0
MIN_SAMPLES = 20
MOST_SECONDS = 150.0


def _count(store: str) -> int:
    import sqlite3

    try:
        conn = sqlite3.connect(f"file:{store}?mode=ro", uri=True, timeout=1)
        try:
            return conn.execute("SELECT count(*) FROM samples").fetchone()[0]
        finally:
            conn.close()
    except sqlite3.Error:
        return 0  # not created yet


def record(store: str) -> int:
    """Record every second (objects every second sample) for about a
    minute; the number of samples taken."""
    import signal
    import time

    proc = subprocess.Popen([*zxmem_command(), "record", "--interval", "1",
                             "--objects-every", "2", "--store", store],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    t0 = time.monotonic()
    try:
        while proc.poll() is None:
            elapsed = time.monotonic() - t0
            if (elapsed >= SECONDS and _count(store) >= MIN_SAMPLES) or elapsed >= MOST_SECONDS:
                break
            time.sleep(0.5)
        assert proc.poll() is None, proc.communicate()[1]
        proc.send_signal(signal.SIGTERM)  # ends between samples, exit 0
        _, err = proc.communicate(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert proc.returncode == 0, err
    taken = _count(store)
    assert taken >= MIN_SAMPLES, f"only {taken} samples in {MOST_SECONDS:.0f} s"
    return taken


class Workloads:
    def __init__(self) -> None:
        self.procs: dict[str, subprocess.Popen] = {}
        self.pids: dict[str, int] = {}

    def start(self, name: str, *args: str) -> None:
        p = subprocess.Popen([sys.executable, "-I", "-S", PROGRAM, *args],
                             stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self.procs[name] = p
        assert p.stdout is not None
        words = p.stdout.readline().split()
        assert words and words[0] == b"ready", (name, words)
        self.pids[name] = int(words[1])

    def stop(self) -> None:
        for p in self.procs.values():
            if p.stdin:
                p.stdin.close()
        for p in self.procs.values():
            try:
                p.wait(timeout=10)
            except subprocess.TimeoutExpired:
                p.kill()
                p.wait()
            if p.stdout:
                p.stdout.close()


def test_growth_finds_the_two_leakers_and_names_the_memfd(tmp_path):
    store = str(tmp_path / "h.db")
    w = Workloads()
    try:
        w.start("leak", "leak", str(MIB))
        w.start("memfd", "memfd-leak", str(MIB))
        w.start("sawtooth", "sawtooth", str(50 * MIB), "5")
        w.start("steady", "steady", str(30 * MIB))
        taken = record(store)
    finally:
        w.stop()

    r = subprocess.run([*zxmem_command(), "growth", "--from", store, "--json"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    doc = json.loads(r.stdout)
    from zxmem.schema.growth import growth_schema

    jsonschema = pytest.importorskip("jsonschema")
    jsonschema.Draft4Validator(growth_schema()).validate(doc)
    assert doc["samples"] == taken
    suspects = doc["suspects"]
    name_of = {pid: name for name, pid in w.pids.items()}
    ours = [s for s in suspects if s["identity"].get("pid") in name_of]
    ranked = [name_of[s["identity"]["pid"]] for s in ours]
    report = "\n".join(f'{name_of[s["identity"]["pid"]]}: {s["pattern"]} '
                       f'{s["rate_bytes_per_second"] / MIB:.3f} MiB/s ({s["why"]})' for s in ours)
    assert set(ranked[:2]) == {"leak", "memfd"}, report
    for s in ours[:2]:
        assert s["leak"] and s["signal"] == "uss", report
        assert s["rate_bytes_per_second"] == pytest.approx(MIB, rel=0.10), report
        # Leaks come first: whatever ranks above a leaker is a leak too.
        for above in suspects[:suspects.index(s)]:
            assert above["leak"], (above["name"], above["why"])
    for s in ours[2:]:
        assert not s["leak"], report

    memfd = next(s for s in ours if name_of[s["identity"]["pid"]] == "memfd")
    held = [o for o in memfd["objects"] if o["kind"] == "memfd"]
    assert held and held[0]["name"] == "memfd:zxmem-growth-leak" and held[0]["hidden"], memfd
    assert held[0]["rate_bytes_per_second"] == pytest.approx(MIB, rel=0.10)
    # Its PSS does not see the memfd (nothing maps it): USS with the hidden
    # object is what found it.
    assert (memfd["pss_rate_bytes_per_second"] or 0) < 0.1 * MIB
    anon = next(s for s in ours if name_of[s["identity"]["pid"]] == "leak")
    assert any(o["kind"] == "anon" and o["rate_bytes_per_second"] == pytest.approx(MIB, rel=0.1)
               for o in anon["objects"]), anon["objects"]

    # The table says the same, the memfd named under its process.
    r = subprocess.run([*zxmem_command(), "growth", "--from", store, "--limit", "0"],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "memfd hidden  memfd:zxmem-growth-leak" in r.stdout
    rows = {int(line.split()[-2]): line.split()[1] for line in r.stdout.splitlines()[2:]
            if line[:3].strip().isdigit()}
    assert rows[w.pids["leak"]] == "LEAK" and rows[w.pids["memfd"]] == "LEAK"
    assert rows.get(w.pids["sawtooth"], "-") != "LEAK"
    assert rows.get(w.pids["steady"], "-") != "LEAK"
