"""zxmem record (one recorder, retention, write errors), history and diff."""

from __future__ import annotations

import json
import os
import sqlite3
from dataclasses import replace

import pytest
from fixture_paths import REPO
from test_store import T0, made_up

import zxmem
from zxmem.model import MemoryCounts, Vmo, VmoRef
from zxmem.store.reader import read_sample, samples, stored_form
from zxmem.store.recorder import Locked, Recorder
from zxmem.store.writer import OBJECTS, TOTALS

TREE = str(REPO / "tests" / "fixtures" / "proc-trees" / "cgroup-v2" / "proc")


class Clock:
    """A fake monotonic/wall clock whose sleep only advances time."""

    def __init__(self) -> None:
        self.now = 0.0
        self.slept: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def wall(self) -> float:
        return T0 / 1e9 + self.now

    def sleep(self, seconds: float) -> None:
        self.slept.append(seconds)
        self.now += seconds


def record(cli, path: str, *args: str, clock: Clock | None = None):
    clock = clock or Clock()
    return cli(["record", "--store", path, "--proc-root", TREE, *args],
               monotonic=clock.monotonic, wall_clock=clock.wall, sleep=clock.sleep)


def test_record_takes_count_samples_on_the_interval(tmp_path, cli):
    path = str(tmp_path / "h.db")
    clock = Clock()
    r = record(cli, path, "--count", "5", "--interval", "10s", "--objects-every", "2",
               clock=clock)
    assert r.status == 0, r.stderr
    assert clock.slept == [10.0] * 4
    r = cli(["history", "--store", path, "--json"])
    doc = json.loads(r.stdout)["samples"]
    assert [s["tier"] for s in doc] == ["objects", "totals", "objects", "totals", "objects"]
    assert [s["time_ns"] - doc[0]["time_ns"] for s in doc] == [i * 10 * 10**9 for i in range(5)]
    # Each sample is the tree as collect() reads it.
    live = zxmem.collect(zxmem.Plan(status=True, kernel=True), proc_root=TREE)
    conn = sqlite3.connect(path)
    back = read_sample(conn, 2)
    live = replace(live, provenance=replace(live.provenance,
                                            timestamp=back.provenance.timestamp))
    assert back == stored_form(live, TOTALS)
    # The tree never changes: samples after the first add no process rows.
    assert conn.execute("SELECT count(*) FROM proc_mem").fetchone()[0] == len(live.processes)
    conn.close()


def test_a_second_recorder_is_refused(tmp_path, cli):
    path = str(tmp_path / "h.db")
    with Recorder(path, print):
        with pytest.raises(Locked, match=f"another zxmem record is writing {path} "
                                         rf"\(pid {os.getpid()}\)"):
            Recorder(path, print)
        r = record(cli, path, "--count", "1")
        assert r.status == 1 and r.stderr.count("\n") == 1
        assert "one recorder per store" in r.stderr
    # Released with the first one.
    assert record(cli, path, "--count", "1").status == 0


def test_disk_full_is_one_line_per_episode_and_recording_resumes(tmp_path):
    path = str(tmp_path / "h.db")
    lines: list[str] = []
    with Recorder(path, lines.append) as rec:
        assert rec.add(made_up(), OBJECTS, T0) == 1
        # No room for another page: SQLite's "database or disk is full".
        pages = rec.conn.execute("PRAGMA page_count").fetchone()[0]
        rec.conn.execute(f"PRAGMA max_page_count={pages}")
        for i in range(5):
            big = replace(made_up(extra_pid=100 + i), vmos={
                k: Vmo(k, f"v{k}" * 50, "anon", 4096, 4096) for k in range(1, 400)})
            assert rec.add(big, OBJECTS, T0 + i + 1) is None
        assert len(lines) == 1 and "full" in lines[0] and "retrying" in lines[0]
        rec.conn.execute("PRAGMA max_page_count=1073741823")
        n = rec.add(made_up(pss=7), TOTALS, T0 + 9)
        assert n == 2 and len(lines) == 2 and "again" in lines[1]
        assert rec.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert read_sample(rec.conn, 1) == stored_form(made_up(), OBJECTS)
        assert read_sample(rec.conn, 2) == stored_form(made_up(pss=7), TOTALS)


def test_retention_by_age(tmp_path):
    path = str(tmp_path / "h.db")
    hour = 3600 * 10**9
    with Recorder(path, print) as rec:
        for i in range(10):
            rec.add(made_up(pss=(i + 1) << 20, extra_pid=50 + i), TOTALS, T0 + i * hour)
        dropped = rec.enforce(T0 + 9 * hour, 3.5 * 3600, None)
        assert dropped == 6
        kept = samples(rec.conn)
        assert [s.n for s in kept] == [7, 8, 9, 10]
        # Rows only the dropped samples used are gone; the others read back.
        assert rec.conn.execute("SELECT count(*) FROM procs WHERE pid BETWEEN 50 AND 55"
                                ).fetchone()[0] == 0
        for s in kept:
            i = s.n - 1
            assert read_sample(rec.conn, s.n) == stored_form(
                made_up(pss=(i + 1) << 20, extra_pid=50 + i), TOTALS)
        assert rec.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        # Everything older than the retention: the newest sample stays.
        rec.enforce(T0 + 1000 * hour, 60, None)
        assert [s.n for s in samples(rec.conn)] == [10]
        # And writing goes on after the reload.
        assert rec.add(made_up(), TOTALS, T0 + 1001 * hour) == 11


def test_retention_by_size_keeps_the_file_under_the_limit(tmp_path):
    path = str(tmp_path / "h.db")
    limit = 256 * 1024
    with Recorder(path, print) as rec:
        for i in range(60):
            vmos = {k: Vmo(k, f"object {i} {k}", "anon", 4096 * k, 4096)
                    for k in range(1, 60)}
            snap = replace(made_up(pss=i, extra_pid=1000 + i), vmos=vmos)
            rec.add(snap, OBJECTS, T0 + i)
            rec.enforce(T0 + i, None, limit)
            rec.conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            assert os.path.getsize(path) <= limit + 64 * 1024
        left = samples(rec.conn)
        assert 1 < len(left) < 60 and left[-1].n == 60
        assert rec.used_bytes() <= limit
        last = read_sample(rec.conn, 60)
        assert len(last.vmos) == 59 and last.process(1059) is not None
        assert rec.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_record_says_once_what_it_could_not_read(tmp_path, cli):
    path = str(tmp_path / "h.db")
    unreadable = str(REPO / "tests" / "fixtures" / "proc-trees" / "unreadable-smaps" / "proc")
    clock = Clock()
    r = cli(["record", "--store", path, "--proc-root", unreadable, "--count", "3",
             "--interval", "1"], monotonic=clock.monotonic, wall_clock=clock.wall,
            sleep=clock.sleep)
    assert r.status == 0
    assert r.stderr.count("not readable") == 1, r.stderr
    conn = sqlite3.connect(path)
    snap = read_sample(conn, 3)
    assert any(p.memory is None for p in snap.processes)  # unknown, not 0
    conn.close()


@pytest.mark.parametrize("bad", [["--interval", "0"], ["--interval", "soon"],
                                 ["--count", "0"], ["--max-size", "lots"]])
def test_bad_record_arguments_are_usage_errors(tmp_path, cli, bad):
    r = cli(["record", "--store", str(tmp_path / "h.db"), *bad])
    assert r.status == 2 and r.stderr.count("\n") == 1


def test_many_cycles_keep_memory_flat(tmp_path):
    """A recorder runs for weeks: its caches must not grow with the samples."""
    def rss() -> int:
        with open("/proc/self/statm") as f:
            return int(f.read().split()[1]) * os.sysconf("SC_PAGE_SIZE")

    path = str(tmp_path / "h.db")
    base = zxmem.collect(zxmem.Plan(status=True), proc_root=TREE)
    with Recorder(path, print) as rec:
        def cycle(i: int) -> None:
            # A churning machine: a new process every sample, PSS always moving.
            procs = [replace(p, memory=replace(p.memory or MemoryCounts(), pss_bytes=i * 4096))
                     for p in base.processes]
            procs.append(replace(base.processes[0], koid=40000 + i, start_time_ticks=i,
                                 cmdline=(f"worker-{i}",)))
            rec.add(replace(base, processes=tuple(procs)), TOTALS, T0 + i * 10**9)
            rec.enforce(T0 + i * 10**9, 50, None)  # keeps ~50 samples

        for i in range(300):
            cycle(i)
        first = rss()
        for i in range(300, 900):
            cycle(i)
        grown = rss() - first
        assert len(samples(rec.conn)) <= 52
    assert grown < 4 << 20, f"RSS grew {grown} bytes over 600 samples"


# ---------------------------------------------------------------------------
# diff


def _store_with(tmp_path, *snaps_tiers) -> str:
    path = str(tmp_path / "d.db")
    with Recorder(path, print) as rec:
        for i, (s, t) in enumerate(snaps_tiers):
            rec.add(s, t, T0 + i * 10**9)
    return path


def test_diff_matches_processes_by_identity(tmp_path, cli):
    a = made_up(pss=1 << 20, start=500)
    b = made_up(pss=1 << 20, start=900)  # PID 2 reused by another process
    path = _store_with(tmp_path, (a, TOTALS), (b, TOTALS))
    r = cli(["diff", path + "@1", path + "@2", "--by", "process", "--json"])
    assert r.status == 0, r.stderr
    procs = json.loads(r.stdout)["processes"]
    assert sorted((p["key"], p["status"], p["change_bytes"]) for p in procs) == [
        ("p:2", "gone", -(1 << 20)), ("p:2", "new", 1 << 20)]


def test_diff_of_growth_largest_first_with_min(tmp_path, cli):
    a = made_up(pss=1 << 20)
    b = made_up(pss=5 << 20, extra_pid=30)
    path = _store_with(tmp_path, (a, TOTALS), (b, TOTALS))
    r = cli(["diff", path + "@first", path + "@last", "--json"])
    doc = json.loads(r.stdout)
    assert [(p["key"], p["status"], p["change_bytes"]) for p in doc["processes"]] == [
        ("p:2", "grew", 4 << 20), ("p:30", "new", 1)]
    # Jobs: the root and /svc hold init (root) and the new process (svc).
    jobs = {j["key"]: j["change_bytes"] for j in doc["jobs"]}
    assert jobs == {"j:1": (4 << 20) + 1, "j:5": 1}
    assert "objects" not in doc  # totals samples hold no objects
    r = cli(["diff", path + "@1", path + "@2", "--min", "1M"])
    assert r.status == 0
    assert "p:30" not in r.stdout and "p:2" in r.stdout
    assert all(len(line) <= 80 for line in r.stdout.splitlines())
    r = cli(["diff", path + "@1", path + "@2", "--by", "object"])
    assert r.status == 2 and "holds no memory objects" in r.stderr


def test_diff_of_objects_by_koid_and_by_owner_and_name(tmp_path, cli):
    a = made_up()
    big = next(k for k in a.vmos if k > 3)
    vmos = dict(a.vmos)
    vmos[big] = replace(vmos[big], committed_bytes=3 * 4096)
    # The anonymous object gets a new sequence koid but is the same heap.
    vmos[11] = replace(vmos.pop(3), koid=11, committed_bytes=8192)
    procs = [replace(p, vmo_refs=tuple(VmoRef(11 if r.vmo_koid == 3 else r.vmo_koid, r.via)
                                       for r in p.vmo_refs)) if p.vmo_refs else p
             for p in a.processes]
    b = replace(a, vmos=vmos, processes=tuple(procs))
    path = _store_with(tmp_path, (a, OBJECTS), (b, OBJECTS))
    r = cli(["diff", path + "@1", path + "@2", "--by", "object", "--json"])
    objs = json.loads(r.stdout)["objects"]
    assert [(o["key"], o["name"], o["status"], o["change_bytes"]) for o in objs] == [
        (f"o:{big}", "/lib/libc.so", "grew", 8192), ("p:2", "[heap]", "new", 8192)]


def test_diff_of_hostile_names_stays_on_its_lines(tmp_path, cli):
    a = made_up()
    b = replace(a, processes=tuple(
        replace(p, cmdline=("evil\x1b]0;x\x07\nname",), memory=MemoryCounts(pss_bytes=9))
        if p.koid == 2 else p for p in a.processes))
    path = _store_with(tmp_path, (a, TOTALS), (b, TOTALS))
    r = cli(["diff", path + "@1", path + "@2", "--by", "process"])
    assert "\x1b" not in r.stdout and "\x07" not in r.stdout
    assert len(r.stdout.splitlines()) == 3


def test_the_default_store():
    from zxmem.store import default_path

    assert default_path(0, {}) == "/var/lib/zxmem/history.db"
    assert default_path(1000, {"XDG_STATE_HOME": "/x/state"}) == "/x/state/zxmem/history.db"
    assert default_path(1000, {}) == os.path.join(os.path.expanduser("~"), ".local", "state",
                                                  "zxmem", "history.db")


def test_a_writer_that_dies_inside_its_transaction_loses_only_that_sample(tmp_path):
    """Deterministically what kill -9 does at the worst moment: rows of the
    sample are written, the commit never comes."""
    path = str(tmp_path / "h.db")
    with Recorder(path, print) as rec:
        rec.add(made_up(), OBJECTS, T0)
    child = os.fork()
    if child == 0:  # pragma: no cover - the child never returns
        try:
            from zxmem.store.writer import Writer

            rec = Recorder(path, print)
            real = Writer._apply
            calls = []

            def apply_then_die(self, table, new, n):
                out = real(self, table, new, n)
                calls.append(table)
                if len(calls) == 3:
                    os._exit(9)  # rows of 3 tables written, no COMMIT
                return out

            Writer._apply = apply_then_die
            rec.add(made_up(pss=5 << 20, extra_pid=77), OBJECTS, T0 + 1)
        finally:
            os._exit(3)
    _, status = os.waitpid(child, 0)
    assert os.WEXITSTATUS(status) == 9
    with Recorder(path, print) as rec:  # the lock died with the writer
        assert rec.conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        assert [s.n for s in samples(rec.conn)] == [1]
        assert read_sample(rec.conn, 1) == stored_form(made_up(), OBJECTS)
        assert rec.add(made_up(pss=6 << 20), TOTALS, T0 + 2) == 2
        assert read_sample(rec.conn, 2) == stored_form(made_up(pss=6 << 20), TOTALS)



def test_diff_of_two_memgraph_files(tmp_path, cli):
    from zxmem import memgraph

    snap = zxmem.collect(zxmem.Plan(status=True), proc_root=TREE)
    a = tmp_path / "a.json"
    a.write_text(memgraph.dumps(snap))
    r = cli(["diff", str(a), str(a)])
    assert r.status == 0, r.stderr
    assert r.stdout == "JOBS (PSS): 0 changed\n\nPROCESSES (PSS): 0 changed\n"
    # One process gone, one grown by exactly 1 MiB.
    gone = snap.processes[0]
    grown = snap.processes[1]
    later = replace(snap, processes=tuple(
        replace(p, memory=replace(p.memory, pss_bytes=p.memory.pss_bytes + (1 << 20)))
        if p.koid == grown.koid else p for p in snap.processes[1:]))
    b = tmp_path / "b.json"
    b.write_text(memgraph.dumps(later))
    doc = json.loads(cli(["diff", str(a), str(b), "--json", "--by", "process"]).stdout)
    assert sorted((p["key"], p["status"], p["change_bytes"]) for p in doc["processes"]) == \
        sorted([(f"p:{gone.koid}", "gone", -gone.memory.pss_bytes),
                (f"p:{grown.koid}", "grew", 1 << 20)])


def test_diff_by_job_shows_the_charge_change_beside_pss(tmp_path, cli):
    from test_store import cgroup

    a = made_up(pss=1 << 20, extra_pid=30, cg=cgroup(charged=3 << 20))
    b = made_up(pss=2 << 20, extra_pid=30, cg=cgroup(charged=7 << 20))
    path = _store_with(tmp_path, (a, TOTALS), (b, TOTALS))
    r = cli(["diff", path + "@1", path + "@2", "--by", "job", "--json"])
    assert r.status == 0, r.stderr
    jobs = {j["key"]: j for j in json.loads(r.stdout)["jobs"]}
    # Root holds init, whose PSS grew by 1 MiB; /svc's PSS (process 30's
    # one byte) did not move but its cgroup's charge grew by 4 MiB: it is
    # listed for that.
    assert jobs["j:1"]["change_bytes"] == 1 << 20
    assert jobs["j:1"]["charged_change_bytes"] is None  # the root's charge is unknown
    assert jobs["j:5"]["change_bytes"] == 0
    assert (jobs["j:5"]["before_charged_bytes"], jobs["j:5"]["after_charged_bytes"],
            jobs["j:5"]["charged_change_bytes"]) == (3 << 20, 7 << 20, 4 << 20)
    text = cli(["diff", path + "@1", path + "@2", "--by", "job"]).stdout.splitlines()
    assert text[1].split()[:4] == ["CHANGE", "BEFORE", "AFTER", "CHARGED"]
    row = next(line for line in text if "j:5" in line)
    assert row.split()[3] == "+4M"
    assert next(line for line in text if "j:1" in line).split()[3] == "-"
