"""The history store: round trips, changed rows only, selectors, schema versions."""

from __future__ import annotations

import json
import sqlite3
from dataclasses import replace
from types import MappingProxyType

import pytest
from fixture_paths import REPO

import zxmem
from zxmem import memgraph
from zxmem.model import (
    CgroupMemory,
    Job,
    KernelStats,
    MemoryCounts,
    Process,
    Provenance,
    Snapshot,
    Vmo,
    VmoRef,
)
from zxmem.store import load_from_store
from zxmem.store.reader import read_sample, select, stored_form
from zxmem.store.schema import VERSION, StoreError, open_store
from zxmem.store.writer import OBJECTS, TOTALS, Writer

TREES = REPO / "tests" / "fixtures" / "proc-trees"
FUCHSIA = REPO / "tests" / "fixtures" / "memgraph" / "fuchsia_illustrative.json"
TOTALS_PLAN = zxmem.Plan(status=True, kernel=True)

T0 = 1_796_000_000 * 10**9  # 2026-11-30T..., ns


def tree(name: str) -> str:
    return str(TREES / name / "proc")


def cgroup(charged: int = 3 << 20, anon: int = 1 << 20, avg10: float = 0.25) -> CgroupMemory:
    """A v2 cgroup's memory files, every kind of value: bytes, "max", a
    counter map in the kernel's (not sorted) order, pressure floats, an
    unreadable file."""
    return CgroupMemory(
        version="v2", charged_bytes=charged, kernel_bytes=123, swap_bytes=0,
        limit_bytes="max", high_bytes=1 << 30, low_bytes=0, min_bytes="max",
        stat=MappingProxyType({"anon": anon, "file": 1 << 21, "kernel": 123, "pgfault": 99}),
        events=MappingProxyType({"low": 0, "high": 2, "max": 0, "oom": 0, "oom_kill": 1}),
        pressure=MappingProxyType({
            "some": MappingProxyType({"avg10": avg10, "avg60": 0.1, "avg300": 0.0,
                                      "total_us": 12345}),
            "full": MappingProxyType({"avg10": 0.0, "avg60": 1e-300, "avg300": 0.0,
                                      "total_us": 7})}),
        missing=(("memory.min", "EACCES"),))


def made_up(pss: int = 1 << 20, extra_pid: int | None = None, start: int = 500,
            cg: CgroupMemory | None = None) -> Snapshot:
    """A small snapshot with every kind of field, kernel and objects included."""
    prov = Provenance(source="linux", host="h", kernel="6.1", timestamp="2026-12-03T10:00:00.000Z",
                      denied=(("smaps_rollup:7", "EACCES"),), notes=("a note",),
                      job_mode="cgroup2", boot_id="b00t", capture_time_ns=123,
                      clock_ticks_per_second=100)
    cg = cgroup() if cg is None else cg
    v1 = CgroupMemory(version="v1", charged_bytes=None, limit_bytes="max", soft_limit_bytes=7,
                      events=MappingProxyType({"oom_kill": 0}),
                      missing=(("memory.usage_in_bytes", "malformed: x"),))
    jobs = (Job(1, "root", 0, "/", "", None),
            Job(5, "svc\x1b[31m", 1, "/svc", "killoom", cg.charged_bytes, cgroup=cg),
            Job(6, "old", 1, "/old", "", None, cgroup=v1))
    big = (1 << 63) + 5  # a koid past SQLite's signed range
    vmos = {big: Vmo(big, "libc.so", "file", 8192, 4096, dev=(1 << 63) + 1, inode=9,
                     path="/lib/libc.so", num_mappings=2, share_count=2),
            3: Vmo(3, "[heap]", "anon", 65536, None, swap_bytes=0)}
    procs = [
        Process(2, "init", 1, ppid=0, uid=0, cmdline=("/sbin/init", "--x"), state="S",
                memory=MemoryCounts(pss, 2, 3, 4, 5, 6, 7, 8, 9, 10), num_threads=1,
                vm_pte_bytes=4096, start_time_ticks=start,
                vmo_refs=(VmoRef(big, ("MAPPING",)), VmoRef(3, ("HANDLE", "MAPPING"),
                                                            ("READ",), 4))),
        Process(7, "héllo\udcff", 5, ppid=2, uid=1000, cmdline=None, state="R", memory=None,
                start_time_ticks=None, vmo_refs=()),
        Process(9, "kworker", 5, cmdline=(), kernel_thread=True, memory=None),
    ]
    if extra_pid is not None:
        procs.append(Process(extra_pid, "new", 5, cmdline=("new",), start_time_ticks=start,
                             memory=MemoryCounts(pss_bytes=1)))
    kernel = KernelStats(total_bytes=1 << 30, free_bytes=None, other_bytes=7,
                         meminfo=MappingProxyType({"MemTotal": 1 << 30, "MemFree": pss}),
                         extra=MappingProxyType({"iomem": None}))
    return Snapshot(prov, jobs, tuple(sorted(procs, key=lambda p: p.koid)), kernel,
                    MappingProxyType(vmos), hidden_vmo_koids=(big,),
                    vmo_holders=MappingProxyType({big: (2,)}))


@pytest.fixture
def store(tmp_path):
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    yield path, conn, Writer(conn)
    conn.close()


def rows(conn: sqlite3.Connection) -> dict[str, int]:
    return {t: conn.execute(f"SELECT count(*) FROM {t}").fetchone()[0]
            for t in ("proc_info", "proc_mem", "job_info", "job_values", "kernel_values", "vmos",
                      "anon_vmos",
                      "vmo_refs",
                      "strings", "procs")}


# ---------------------------------------------------------------------------
# Round trips


@pytest.mark.parametrize("tier", [TOTALS, OBJECTS])
def test_a_made_up_snapshot_reads_back_equal(store, tier):
    _, conn, w = store
    snap = made_up()
    n = w.write(snap, tier, T0)
    back = read_sample(conn, n)
    assert back == stored_form(snap, tier)
    if tier == OBJECTS:
        assert back.vmos == snap.vmos and back.hidden_vmo_koids == snap.hidden_vmo_koids
    else:
        assert not back.vmos and all(p.vmo_refs is None for p in back.processes)
    # Unknown stays unknown, never 0.
    assert back.process(7).memory is None and back.process(7).cmdline is None
    assert back.process(9).cmdline == ()
    assert back.kernel.free_bytes is None and back.kernel.extra["iomem"] is None


@pytest.mark.parametrize("name", ["cgroup-v2", "cgroup-v1-hybrid", "hostile-names",
                                  "kthread-zombie", "no-smaps-rollup", "unreadable-smaps"])
def test_recorded_trees_read_back_equal(store, name):
    _, conn, w = store
    snap = zxmem.collect(TOTALS_PLAN, proc_root=tree(name))
    assert snap.processes
    n = w.write(snap, TOTALS, T0)
    assert read_sample(conn, n) == stored_form(snap, TOTALS)


def test_a_fuchsia_memgraph_reads_back_equal_in_the_objects_tier(store):
    _, conn, w = store
    snap = zxmem.load(str(FUCHSIA))
    assert snap.vmos
    n = w.write(snap, OBJECTS, T0)
    assert read_sample(conn, n) == stored_form(snap, OBJECTS)


def test_every_sample_reads_back_as_written(store):
    _, conn, w = store
    snaps = [made_up(pss=1 << 20), made_up(pss=2 << 20, extra_pid=30),
             made_up(pss=2 << 20), made_up(pss=3 << 20, extra_pid=31)]
    tiers = [OBJECTS, TOTALS, OBJECTS, TOTALS]
    ns = [w.write(s, t, T0 + i) for i, (s, t) in enumerate(zip(snaps, tiers, strict=True))]
    for n, s, t in zip(ns, snaps, tiers, strict=True):
        assert read_sample(conn, n) == stored_form(s, t)


def test_ps_of_a_replayed_sample_is_ps_of_its_memgraph(store, tmp_path, cli):
    path, _, w = store
    snap = zxmem.collect(zxmem.Plan(status=True), proc_root=tree("cgroup-v2"))
    w.write(snap, TOTALS, T0)
    saved = tmp_path / "mem.json"
    saved.write_text(memgraph.dumps(snap))
    for args in (["ps"], ["ps", "--json"], ["ps", "--swap", "--sort=pss"]):
        from_store = cli([*args, "--from", path])
        from_file = cli([*args, "--from", str(saved)])
        assert from_store.status == from_file.status == 0, from_store.stderr
        assert from_store.stdout == from_file.stdout
        assert "p:19940" in from_store.stdout or "19940" in from_store.stdout


# ---------------------------------------------------------------------------
# Only what changed


def test_an_unchanged_sample_adds_no_rows(store):
    _, conn, w = store
    snap = made_up()
    w.write(snap, OBJECTS, T0)
    before = rows(conn)
    w.write(snap, OBJECTS, T0 + 1)
    w.write(snap, TOTALS, T0 + 2)
    assert rows(conn) == before


def test_one_changed_process_adds_one_row(store):
    _, conn, w = store
    w.write(made_up(pss=1 << 20), TOTALS, T0)
    before = rows(conn)
    w.write(made_up(pss=2 << 20), TOTALS, T0 + 1)  # init's PSS and MemFree changed
    after = rows(conn)
    assert after["proc_mem"] == before["proc_mem"] + 1
    assert after["kernel_values"] == before["kernel_values"] + 1
    assert {k: v for k, v in after.items() if k not in ("proc_mem", "kernel_values")} == \
        {k: v for k, v in before.items() if k not in ("proc_mem", "kernel_values")}
    # The old row was closed at sample 1, the new one opened at 2.
    assert conn.execute("SELECT first, last, pss FROM proc_mem WHERE pss IS NOT NULL "
                        "AND pss >= 1048576 ORDER BY first").fetchall() == [
        (1, 1, 1 << 20), (2, None, 2 << 20)]


def test_a_new_process_adds_its_rows_and_a_vanished_one_is_closed(store):
    _, conn, w = store
    w.write(made_up(), TOTALS, T0)
    w.write(made_up(extra_pid=30), TOTALS, T0 + 1)
    w.write(made_up(), TOTALS, T0 + 2)
    (ent,) = conn.execute("SELECT id FROM procs WHERE pid = 30").fetchone()
    assert conn.execute("SELECT first, last FROM proc_info WHERE ent = ?", (ent,)).fetchall() \
        == [(2, 2)]
    assert read_sample(conn, 3).process(30) is None
    assert read_sample(conn, 2).process(30) is not None


def test_a_reused_pid_is_a_new_process(store):
    _, conn, w = store
    w.write(made_up(start=500), TOTALS, T0)
    w.write(made_up(start=900), TOTALS, T0 + 1)  # pid 2 exited, another took its PID
    assert conn.execute("SELECT count(*) FROM procs WHERE pid = 2").fetchone()[0] == 2
    assert read_sample(conn, 1).process(2).start_time_ticks == 500
    assert read_sample(conn, 2).process(2).start_time_ticks == 900


def test_the_writer_continues_a_store_after_reopening(store):
    path, conn, w = store
    w.write(made_up(), TOTALS, T0)
    conn.close()
    conn2 = open_store(path, create=True)
    w2 = Writer(conn2)
    before = rows(conn2)
    n = w2.write(made_up(), TOTALS, T0 + 1)
    assert n == 2 and rows(conn2) == before
    assert read_sample(conn2, 2) == stored_form(made_up(), TOTALS)
    conn2.close()


# ---------------------------------------------------------------------------
# Selectors and --from


def test_selectors_pick_samples(store):
    path, conn, w = store
    hour = 3600 * 10**9
    for i in range(3):
        w.write(made_up(pss=(i + 1) << 20), TOTALS, T0 + i * hour)
    now = (T0 + 2 * hour) / 1e9
    assert select(conn, "first", now) == 1
    assert select(conn, "last", now) == select(conn, "", now) == 3
    assert select(conn, "2", now) == 2
    assert select(conn, "-1h", now) == 2
    assert select(conn, "-90m", now) == 1  # the last sample at or before the time
    from datetime import datetime, timezone

    iso = datetime.fromtimestamp(T0 / 1e9 + 3600, tz=timezone.utc).strftime("%Y-%m-%dT%H:%M:%SZ")
    assert select(conn, iso, now) == 2
    assert select(conn, iso.replace("Z", "+00:00"), now) == 2
    with pytest.raises(StoreError, match="no sample 7 .*samples 1 to 3"):
        select(conn, "7", now)
    with pytest.raises(StoreError, match="no sample at or before"):
        select(conn, "-1d", now)
    with pytest.raises(StoreError, match="not a time"):
        select(conn, "yesterday", now)
    snap = load_from_store(path + "@2", now_s=now)
    assert snap.process(2).memory.pss_bytes == 2 << 20
    assert load_from_store(path).process(2).memory.pss_bytes == 3 << 20


def test_from_store_at_when_through_the_cli(store, cli):
    path, _, w = store
    w.write(made_up(pss=1 << 20), TOTALS, T0)
    w.write(made_up(pss=5 << 20), TOTALS, T0 + 10**9)
    first = cli(["ps", "--json", "--from", path + "@first"])
    last = cli(["ps", "--json", "--from", path])
    assert first.status == last.status == 0, first.stderr
    pss = {t["koid"]: t.get("pss_bytes") for t in json.loads(first.stdout)["tasks"]
           if t["type"] == "p"}
    assert pss[2] == 1 << 20
    pss = {t["koid"]: t.get("pss_bytes") for t in json.loads(last.stdout)["tasks"]
           if t["type"] == "p"}
    assert pss[2] == 5 << 20
    bad = cli(["ps", "--from", path + "@9"])
    assert bad.status == 1 and bad.stderr.count("\n") == 1 and "no sample 9" in bad.stderr


def test_at_on_a_file_that_is_not_a_store_is_one_line(tmp_path, cli):
    f = tmp_path / "mem.json"
    f.write_text("[]")
    r = cli(["ps", "--from", f"{f}@last"])
    assert r.status == 1 and "is not one" in r.stderr and r.stderr.count("\n") == 1


def test_history_lists_samples(store, cli):
    path, _, w = store
    w.write(made_up(pss=1 << 20), OBJECTS, T0)
    w.write(made_up(pss=2 << 20, extra_pid=30), TOTALS, T0 + 10**10)
    r = cli(["history", "--store", path, "--json"])
    assert r.status == 0, r.stderr
    doc = json.loads(r.stdout)["samples"]
    assert [(s["n"], s["processes"], s["pss_bytes"], s["tier"]) for s in doc] == [
        (1, 3, 1 << 20, "objects"), (2, 4, (2 << 20) + 1, "totals")]
    assert doc[1]["time_ns"] - doc[0]["time_ns"] == 10**10
    text = cli(["history", "--store", path]).stdout.splitlines()
    assert text[0].split() == ["SAMPLE", "TIME", "(UTC)", "PROCS", "PSS", "TIER"]
    assert text[1].split()[-1] == "objects" and text[2].split()[-3:] == ["4", "2.0M", "totals"]


# ---------------------------------------------------------------------------
# Schema versions


def test_a_newer_schema_is_refused(store, cli):
    path, conn, w = store
    w.write(made_up(), TOTALS, T0)
    conn.execute(f"PRAGMA user_version={VERSION + 1}")
    r = cli(["history", "--store", path])
    assert r.status == 1
    assert "newer zxmem" in r.stderr and r.stderr.count("\n") == 1
    r = cli(["ps", "--from", path])
    assert r.status == 1 and "newer zxmem" in r.stderr


def test_an_older_schema_is_migrated(store, cli):
    path, conn, w = store
    w.write(made_up(pss=1 << 20), TOTALS, T0)
    w.write(made_up(pss=3 << 20, extra_pid=40), TOTALS, T0 + 1)
    expected = cli(["history", "--store", path, "--json"]).stdout
    # Version 1 had no per-sample summary columns.
    conn.execute("ALTER TABLE samples DROP COLUMN nproc")
    conn.execute("ALTER TABLE samples DROP COLUMN pss_bytes")
    conn.execute("DROP TABLE meta")
    conn.execute("DROP TABLE job_values")
    conn.execute("DROP TABLE mappings")
    conn.execute("DROP TABLE map_strings")
    for table in ("proc_info", "proc_mem", "job_info", "kernel_values", "vmos", "anon_vmos",
                  "vmo_base", "vmo_refs"):
        conn.execute(f"ALTER TABLE {table} DROP COLUMN reserve")
    conn.execute("PRAGMA user_version=1")
    conn.close()
    r = cli(["history", "--store", path, "--json"])
    assert r.status == 0, r.stderr
    assert r.stdout == expected
    c2 = sqlite3.connect(path)
    assert c2.execute("PRAGMA user_version").fetchone()[0] == VERSION
    c2.close()


def test_an_sqlite_file_that_is_not_a_store_is_refused(tmp_path, cli):
    path = str(tmp_path / "other.db")
    c = sqlite3.connect(path)
    c.execute("CREATE TABLE t(x)")
    c.commit()
    c.close()
    r = cli(["ps", "--from", path])
    assert r.status == 1 and "not a zxmem history store" in r.stderr


def test_a_missing_store(tmp_path, cli):
    r = cli(["history", "--store", str(tmp_path / "none.db")])
    assert r.status == 1 and "no such history store" in r.stderr


def test_an_empty_store_says_so(tmp_path, cli):
    path = str(tmp_path / "e.db")
    open_store(path, create=True).close()
    r = cli(["ps", "--from", path])
    assert r.status == 1 and "no samples yet" in r.stderr


def test_stored_form_keeps_the_thread_count_not_the_threads():
    snap = made_up()
    p = replace(snap.processes[0], threads=())
    assert stored_form(snap, TOTALS).processes[0].num_threads == p.num_threads


def shifted(snap: Snapshot, by: int) -> Snapshot:
    """``snap`` with every sequence (anonymous) koid moved by ``by``, as when a
    process earlier in scan order exits and the collector numbers again."""
    from zxmem.model import INODE_KOID_BASE

    def k(koid: int) -> int:
        return koid + by if koid < INODE_KOID_BASE else koid

    vmos = {k(koid): replace(v, koid=k(koid)) for koid, v in snap.vmos.items()}
    procs = tuple(replace(p, vmo_refs=tuple(replace(r, vmo_koid=k(r.vmo_koid))
                                            for r in p.vmo_refs))
                  if p.vmo_refs else p for p in snap.processes)
    return replace(snap, vmos=MappingProxyType(vmos), processes=procs,
                   hidden_vmo_koids=tuple(k(x) for x in snap.hidden_vmo_koids))


def test_renumbered_anonymous_objects_add_one_base_row_not_object_rows(store):
    _, conn, w = store
    a = made_up()
    b = shifted(a, 40)
    assert b.vmos != a.vmos
    w.write(a, OBJECTS, T0)
    before = rows(conn)
    base_rows = conn.execute("SELECT count(*) FROM vmo_base").fetchone()[0]
    w.write(b, OBJECTS, T0 + 1)
    after = rows(conn)
    assert after == before  # no object, reference or string row
    assert conn.execute("SELECT count(*) FROM vmo_base").fetchone()[0] == base_rows + 1
    assert read_sample(conn, 1) == stored_form(a, OBJECTS)
    assert read_sample(conn, 2) == stored_form(b, OBJECTS)


def test_no_row_outlives_the_span_and_every_sample_still_reads_back(tmp_path, monkeypatch):
    from zxmem.store import schema

    monkeypatch.setattr(schema, "SPAN", 3)
    monkeypatch.setattr(schema, "OBJECTS_SPAN_FACTOR", 2)
    conn = open_store(str(tmp_path / "s.db"), create=True)
    w = Writer(conn)
    snaps = [made_up(pss=(1 + i // 4) << 20) for i in range(10)] * 2
    for i, s in enumerate(snaps):
        w.write(s, OBJECTS if i % 2 == 0 else TOTALS, T0 + i)
    assert schema.read_span(conn) == 3
    for table in ("proc_info", "proc_mem", "kernel_values", "job_values"):
        longest = conn.execute(f"SELECT max(coalesce(last, 20) - first + 1) FROM {table}"
                               ).fetchone()[0]
        assert longest == 3, table
    # Objects rows are read at objects samples only: there, every valid row
    # started less than their (longer) span before.
    for table in ("vmos", "anon_vmos", "vmo_refs"):
        assert schema.span_of(table, 3) == 6
        copies = conn.execute(f"SELECT count(DISTINCT first) FROM {table}").fetchone()[0]
        assert copies > 2, table  # re-opened along the 20 samples
        for n in range(1, 21, 2):
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE first <= ?1 AND "
                                "(last IS NULL OR last >= ?1) AND first <= ?1 - 6",
                                (n,)).fetchone()[0] == 0
    for i, s in enumerate(snaps):
        assert read_sample(conn, i + 1) == stored_form(s, OBJECTS if i % 2 == 0 else TOTALS)
    conn.close()


def test_a_new_mapping_in_the_middle_adds_its_own_row_only(store):
    _, conn, w = store
    a = made_up()
    init = a.process(2)

    def with_anon(names: list[str]) -> Snapshot:
        vmos = {k: v for k, v in a.vmos.items() if k != 3}
        refs = [r for r in init.vmo_refs if r.vmo_koid != 3]
        for i, name in enumerate(names):
            vmos[3 + i] = Vmo(3 + i, name, "anon", 4096, 4096)
            refs.append(VmoRef(3 + i, ("MAPPING",)))
        procs = tuple(replace(p, vmo_refs=tuple(refs)) if p.koid == 2 else p
                      for p in a.processes)
        return replace(a, vmos=MappingProxyType(vmos), processes=procs)

    before_snap = with_anon(["[heap]", "[anon]", "[stack]"])
    after_snap = with_anon(["[heap]", "[anon]", "[anon]", "[stack]"])  # [stack] 5 -> 6
    w.write(before_snap, OBJECTS, T0)
    before = rows(conn)
    w.write(after_snap, OBJECTS, T0 + 1)
    after = rows(conn)
    assert after["anon_vmos"] == before["anon_vmos"] + 1  # the second [anon]
    assert after["vmo_refs"] == before["vmo_refs"] + 1  # init's references changed
    assert {k: after[k] for k in after if k not in ("anon_vmos", "vmo_refs")} == \
        {k: before[k] for k in before if k not in ("anon_vmos", "vmo_refs")}
    assert read_sample(conn, 1) == stored_form(before_snap, OBJECTS)
    assert read_sample(conn, 2) == stored_form(after_snap, OBJECTS)


def test_a_pipe_is_not_sniffed(tmp_path, cli):
    """--from <(zxmem memgraph): looking for SQLite's magic must not eat the JSON."""
    import os
    import threading

    fifo = str(tmp_path / "pipe")
    os.mkfifo(fifo)
    text = memgraph.dumps(zxmem.collect(zxmem.Plan(), proc_root=tree("cgroup-v2")))

    def feed() -> None:
        try:
            with open(fifo, "w") as f:
                f.write(text)
        except BrokenPipeError:
            pass

    result: dict = {}
    runner = threading.Thread(target=lambda: result.update(r=cli(["ps", "--from", fifo])),
                              daemon=True)
    runner.start()
    feed()
    runner.join(20)
    if runner.is_alive():  # it opened the pipe a second time: give it an EOF
        with open(fifo, "w"):
            pass
        runner.join(20)
        pytest.fail("the pipe was opened twice: its first bytes were lost")
    r = result["r"]
    assert r.status == 0, r.stderr
    assert "19940" in r.stdout


# ---------------------------------------------------------------------------
# The jobs' cgroup memory files


def test_cgroup_memory_reads_back_exactly(store):
    _, conn, w = store
    n = w.write(made_up(), TOTALS, T0)
    back = read_sample(conn, n)
    jobs = {j.koid: j for j in back.jobs}
    assert jobs[5].cgroup == cgroup() and jobs[1].cgroup is None
    # The kernel's key order, not sorted; floats bit for bit; unknown stays None.
    assert list(jobs[5].cgroup.stat) == ["anon", "file", "kernel", "pgfault"]
    assert list(jobs[5].cgroup.pressure) == ["some", "full"]
    assert jobs[5].cgroup.pressure["full"]["avg60"] == 1e-300
    assert jobs[5].cgroup.limit_bytes == "max" and jobs[5].cgroup.soft_limit_bytes is None
    assert jobs[6].cgroup.charged_bytes is None and jobs[6].cgroup.stat is None
    assert jobs[6].cgroup.missing == (("memory.usage_in_bytes", "malformed: x"),)


def test_a_changed_cgroup_counter_adds_one_row(store):
    _, conn, w = store
    w.write(made_up(cg=cgroup()), TOTALS, T0)
    before = rows(conn)
    w.write(made_up(cg=cgroup(anon=2 << 20)), TOTALS, T0 + 1)
    assert rows(conn) == {**before, "job_values": before["job_values"] + 1}
    w.write(made_up(cg=cgroup(anon=2 << 20, charged=4 << 20, avg10=0.5)), TOTALS, T0 + 2)
    after = rows(conn)
    # memory.current is the job's charge too (job_info); the average one row.
    assert after["job_values"] == before["job_values"] + 3
    assert after["job_info"] == before["job_info"] + 1
    for n, charged, anon in ((1, 3 << 20, 1 << 20), (2, 3 << 20, 2 << 20),
                             (3, 4 << 20, 2 << 20)):
        cg = next(j for j in read_sample(conn, n).jobs if j.koid == 5).cgroup
        assert (cg.charged_bytes, cg.stat["anon"]) == (charged, anon)


def _charge_tree(tmp_path):
    """The recorded v1 tree with the memory controller's files (a limit on app)."""
    import shutil

    src = REPO / "tests" / "fixtures" / "proc-trees" / "cgroup-v1-charge"
    top = tmp_path / "tree"
    shutil.copytree(src, top, symlinks=True)
    app = top / "sys/fs/cgroup/memory/zxmem-fixture-charge/app"
    (app / "memory.limit_in_bytes").write_text("67108864\n")
    return top / "proc"


def test_ps_cgroup_of_a_replayed_sample_is_the_live_view(tmp_path, cli):
    """record, then ps --cgroup/--json/--explain --from STORE@WHEN print what
    they print on the (recorded, so unchanging) machine itself."""
    proc = _charge_tree(tmp_path)
    store = str(tmp_path / "h.db")
    r = cli(["record", "--count", "2", "--interval", "0.01", "--store", store,
             "--proc-root", str(proc)])
    assert r.status == 0, r.stderr
    live_json = json.loads(cli(["ps", "--json", "--proc-root", str(proc)]).stdout)
    app = next(j for j in live_json["tasks"] if j.get("path") == "/zxmem-fixture-charge/app")
    assert app["cgroup"]["charged_bytes"] == 105881600  # the fixture's memory.usage_in_bytes
    assert app["cgroup"]["limit_bytes"] == 64 << 20
    assert app["cgroup"]["stat"] and app["cgroup"]["events"] == {"oom_kill": 0, "failcnt": 0}

    def timeless(text: str) -> str:
        # The moment of each collection differs, of course; and the recorder
        # reads more than ps (the kernel's totals: the tree has no maps
        # files or kernel records), so its provenance says more about what
        # it could not read.  Every job, process and cgroup value is compared.
        if text.startswith("{"):
            doc = json.loads(text)
            for key in ("timestamp", "denied", "notes"):
                del doc["provenance"][key]
            return json.dumps(doc)
        return text

    for args in (["ps", "-J", "--cgroup"], ["ps", "--cgroup"], ["ps", "--json"],
                 ["ps", f"--explain={app['koid']}"]):
        live = cli([*args, "--proc-root", str(proc)])
        assert live.status == 0, live.stderr
        for at in ("@1", "@last"):
            replayed = cli([*args, "--from", store + at])
            assert replayed.status == 0, replayed.stderr
            assert timeless(replayed.stdout) == timeless(live.stdout), (args, at)
    assert " 64M " in cli(["ps", "-J", "--cgroup", "--from", store]).stdout


# A store of schema version 2 (before the cgroup values), as that zxmem made it.
V2_DDL = """
CREATE TABLE strings (id INTEGER PRIMARY KEY, s BLOB NOT NULL UNIQUE);
CREATE TABLE samples (
    n INTEGER PRIMARY KEY, time_ns INTEGER NOT NULL, timestamp TEXT, capture_ns INTEGER,
    tier INTEGER NOT NULL, prov INTEGER NOT NULL, has_kernel INTEGER NOT NULL,
    extra INTEGER, nproc INTEGER, pss_bytes INTEGER);
CREATE INDEX samples_time ON samples(time_ns);
CREATE TABLE procs (id INTEGER PRIMARY KEY, boot INTEGER, pid INTEGER NOT NULL, start INTEGER);
CREATE TABLE proc_info (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    name INTEGER NOT NULL, job INTEGER NOT NULL, ppid INTEGER, uid INTEGER,
    cmdline INTEGER, kthread INTEGER NOT NULL);
CREATE TABLE proc_mem (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    known INTEGER NOT NULL, pss INTEGER, private INTEGER, shared INTEGER,
    rss INTEGER, swap INTEGER, swap_pss INTEGER, pss_anon INTEGER,
    pss_file INTEGER, pss_shmem INTEGER, hugetlb INTEGER,
    state TEXT, threads INTEGER, pte INTEGER);
CREATE TABLE job_ids (id INTEGER PRIMARY KEY, koid INTEGER NOT NULL, path INTEGER NOT NULL);
CREATE TABLE job_info (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    name INTEGER NOT NULL, parent INTEGER NOT NULL, state INTEGER NOT NULL, charged INTEGER);
CREATE TABLE kernel_values (ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER, value);
CREATE TABLE vmos (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    name INTEGER NOT NULL, kind INTEGER, size INTEGER, committed INTEGER,
    parent INTEGER NOT NULL, children INTEGER NOT NULL, mappings INTEGER,
    shares INTEGER NOT NULL, dev INTEGER, inode INTEGER, path INTEGER, swap INTEGER);
CREATE TABLE anon_vmos (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    name INTEGER NOT NULL, kind INTEGER, size INTEGER, committed INTEGER,
    parent INTEGER NOT NULL, children INTEGER NOT NULL, mappings INTEGER,
    shares INTEGER NOT NULL, dev INTEGER, inode INTEGER, path INTEGER, swap INTEGER);
CREATE TABLE vmo_base (ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
                       layout BLOB NOT NULL);
CREATE TABLE vmo_refs (ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
                       refs BLOB NOT NULL);
CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID;
INSERT INTO meta VALUES ('span', 720);
"""


def test_a_version_2_store_is_migrated_and_reads_back(tmp_path, cli):
    """A store made with the version 2 layout (no cgroup values), two
    samples: migrated on first use, its samples read back as they were
    written (jobs without cgroup data), and recording goes on in it."""
    path = str(tmp_path / "v2.db")
    c = sqlite3.connect(path, isolation_level=None)
    c.executescript(V2_DDL)
    prov = ('{"boot_id":"b00t","clock_ticks_per_second":100,"denied":[],"host":"h",'
            '"job_mode":"cgroup2","kernel":"6.1","notes":[],"source":"linux"}')
    for i, text in enumerate([prov, "/", "root", "", "/svc", "svc", "init", "b00t"], 1):
        c.execute("INSERT INTO strings VALUES (?, ?)", (i, text.encode()))
    for n in (1, 2):
        c.execute("INSERT INTO samples VALUES (?, ?, NULL, NULL, 0, 1, 0, NULL, 1, ?)",
                  (n, T0 + n, n << 20))
    c.execute("INSERT INTO procs VALUES (1, 8, 2, 500)")
    c.execute("INSERT INTO proc_info VALUES (1, 1, NULL, 7, 5, 0, 0, NULL, 0)")
    c.execute("INSERT INTO proc_mem VALUES (1, 1, 1, 1, 1048576, 2, 3, 4, 5, 6, 7, 8, 9, 10, "
              "'S', 1, 4096)")
    c.execute("INSERT INTO proc_mem VALUES (1, 2, NULL, 1, 2097152, 2, 3, 4, 5, 6, 7, 8, 9, "
              "10, 'S', 1, 4096)")
    c.execute("INSERT INTO job_ids VALUES (1, 1, 2), (2, 5, 5)")
    c.execute("INSERT INTO job_info VALUES (1, 1, NULL, 3, 0, 4, NULL), "
              "(2, 1, NULL, 6, 1, 4, 8192)")
    c.execute(f"PRAGMA application_id={0x7A786D68}")
    c.execute("PRAGMA user_version=2")
    c.close()

    r = cli(["ps", "--json", "--from", path + "@1"])
    assert r.status == 0, r.stderr
    c = sqlite3.connect(path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == VERSION == 5
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for n, pss in ((1, 1 << 20), (2, 2 << 20)):
        snap = read_sample(c, n)
        assert [(p.koid, p.name, p.memory.pss_bytes) for p in snap.processes] == [
            (2, "init", pss)]
        assert {(j.koid, j.path, j.charged_bytes, j.cgroup) for j in snap.jobs} == {
            (1, "/", None, None), (5, "/svc", 8192, None)}
    c.close()
    # A recorder continues it, now with cgroup values.
    conn = open_store(path, create=True)
    n = Writer(conn).write(made_up(), TOTALS, T0 + 3)
    assert n == 3 and next(j for j in read_sample(conn, 3).jobs if j.koid == 5).cgroup \
        == cgroup()
    assert read_sample(conn, 2).process(2).memory.pss_bytes == 2 << 20
    conn.close()


def test_a_reopened_writer_finds_open_objects_rows_older_than_the_span(tmp_path, monkeypatch):
    """The writer finds its open rows by the index on first: objects rows
    within their span before the newest *objects* sample, however many
    totals samples came after it."""
    from zxmem.store import schema

    monkeypatch.setattr(schema, "SPAN", 3)
    monkeypatch.setattr(schema, "OBJECTS_SPAN_FACTOR", 2)
    path = str(tmp_path / "s.db")
    conn = open_store(path, create=True)
    w = Writer(conn)
    w.write(made_up(), OBJECTS, T0)
    for i in range(10):
        w.write(made_up(), TOTALS, T0 + 1 + i)
    conn.close()
    conn = open_store(path, create=True)
    n = Writer(conn).write(made_up(), OBJECTS, T0 + 20)
    for table in VERSIONED_TABLES:
        assert conn.execute(f"SELECT count(*) - count(DISTINCT ent) FROM {table} "
                            "WHERE last IS NULL").fetchone()[0] == 0, table
        # Open rows hold the reserve their closing clears (the row never grows).
        assert conn.execute(f"SELECT count(*) FROM {table} WHERE (last IS NULL) != "
                            "(reserve IS NOT NULL)").fetchone()[0] == 0, table
    assert read_sample(conn, n) == stored_form(made_up(), OBJECTS)
    assert read_sample(conn, 1) == stored_form(made_up(), OBJECTS)
    conn.close()


VERSIONED_TABLES = ("proc_info", "proc_mem", "job_info", "job_values", "kernel_values", "vmos",
                    "anon_vmos", "vmo_base", "vmo_refs", "mappings", "map_strings")
