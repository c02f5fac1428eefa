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


def made_up(pss: int = 1 << 20, extra_pid: int | None = None, start: int = 500) -> Snapshot:
    """A small snapshot with every kind of field, kernel and objects included."""
    prov = Provenance(source="linux", host="h", kernel="6.1", timestamp="2026-12-03T10:00:00.000Z",
                      denied=(("smaps_rollup:7", "EACCES"),), notes=("a note",),
                      job_mode="cgroup2", boot_id="b00t", capture_time_ns=123,
                      clock_ticks_per_second=100)
    jobs = (Job(1, "root", 0, "/", "", None), Job(5, "svc\x1b[31m", 1, "/svc", "killoom", 4096))
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
            for t in ("proc_info", "proc_mem", "job_info", "kernel_values", "vmos", "anon_vmos",
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
    conn = open_store(str(tmp_path / "s.db"), create=True)
    w = Writer(conn)
    snaps = [made_up(pss=(1 + i // 4) << 20) for i in range(10)]
    for i, s in enumerate(snaps):
        w.write(s, OBJECTS if i % 2 == 0 else TOTALS, T0 + i)
    assert schema.read_span(conn) == 3
    for table in ("proc_info", "proc_mem", "kernel_values"):
        longest = conn.execute(f"SELECT max(coalesce(last, 10) - first + 1) FROM {table}"
                               ).fetchone()[0]
        assert longest == 3, table
    # Objects rows are read at objects samples only: there, every valid row
    # started less than SPAN samples before.
    for table in ("vmos", "anon_vmos", "vmo_refs"):
        for n in (1, 3, 5, 7, 9):
            assert conn.execute(f"SELECT count(*) FROM {table} WHERE first <= ?1 AND "
                                "(last IS NULL OR last >= ?1) AND first <= ?1 - 3",
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
