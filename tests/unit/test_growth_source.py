"""zxmem.growth_source and ``zxmem growth`` on a store of known contents,
written through the store's writer."""

from __future__ import annotations

import io
import json
from types import MappingProxyType

import pytest

from zxmem.growth import analyse
from zxmem.growth_source import load_objects, load_series
from zxmem.model import Job, MemoryCounts, Process, Provenance, Snapshot, Vmo, VmoRef, inode_koid
from zxmem.store.schema import StoreError, open_store
from zxmem.store.writer import OBJECTS, TOTALS, Writer

MIB = 1 << 20
T0 = 1_796_000_000 * 10**9
STEP = 10 * 10**9
N = 40
MEMFD = inode_koid(1, 4242)  # on the shm mount (dev 00:01)


def private(pid: int, i: int) -> int | None:
    """Each process's private bytes at sample i (0-based)."""
    return {10: 10 * MIB + i * MIB,                     # leaks 1 MiB per sample
            11: 20 * MIB + (8 * MIB if i % 4 < 2 else 0),  # sawtooth
            12: 5 * MIB,                                # flat; its memfd grows
            13: None}[pid]                              # denied


def memfd_bytes(i: int) -> int:
    return i * 2 * MIB


def charged(i: int) -> int:
    return 100 * MIB + i * 3 * MIB


def snapshot(i: int) -> Snapshot:
    prov = Provenance(source="linux", host="h", timestamp="2026-12-03T10:00:00.000Z",
                      boot_id="boot", job_mode="cgroup2")
    jobs = (Job(1, "root", 0, "/", "", None), Job(5, "svc", 1, "/svc", "", charged(i)))
    procs = []
    for pid, job in ((10, 5), (11, 5), (12, 5), (13, 1)):
        v = private(pid, i)
        mem = None if v is None else MemoryCounts(pss_bytes=v + MIB, private_bytes=v)
        refs: tuple[VmoRef, ...] = ()
        if pid == 10:
            refs = (VmoRef(1, ("MAPPING",)),)
        if pid == 12:
            refs = (VmoRef(MEMFD, ("HANDLE",), ("READ", "WRITE"), 3),)
        procs.append(Process(pid, f"p{pid}", job, ppid=1, cmdline=(f"p{pid}",), memory=mem,
                             start_time_ticks=1000 + pid, vmo_refs=refs))
    vmos = {1: Vmo(1, "[heap]", "anon", 64 * MIB, 10 * MIB + i * MIB, num_mappings=1,
                   share_count=1),
            MEMFD: Vmo(MEMFD, "memfd:grow", "memfd", memfd_bytes(i), memfd_bytes(i),
                       dev=1, inode=4242, path="/memfd:grow (deleted)", num_mappings=0)}
    return Snapshot(prov, jobs, tuple(procs), None, MappingProxyType(vmos))


def tier(i: int) -> int:
    return OBJECTS if i % 2 == 0 else TOTALS


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> str:
    path = str(tmp_path_factory.mktemp("growth") / "h.db")
    conn = open_store(path, create=True)
    w = Writer(conn)
    for i in range(N):
        w.write(snapshot(i), tier(i), T0 + i * STEP)
    conn.close()
    return path


def by_pid(series):
    return {s.identity["pid"]: s for s in series}


def test_every_sample_is_a_point_with_its_values(store):
    got = by_pid(load_series(store, by="process"))
    assert set(got) == {10, 11, 12, 13}
    s = got[10]
    assert s.name == "p10" and s.kind == "process" and s.identity["start_ticks"] == 1010
    assert list(s.times_ns) == [T0 + i * STEP for i in range(N)]
    assert list(s.uss) == [private(10, i) for i in range(N)]
    assert list(s.uss_high) == list(s.uss)
    assert list(s.pss) == [private(10, i) + MIB for i in range(N)]
    # Unknown stays unknown.
    assert set(got[13].uss) == {None} and set(got[13].pss) == {None}


def test_a_process_counts_the_hidden_objects_only_it_holds(store):
    s = by_pid(load_series(store, by="process"))[12]
    # Objects samples are the even ones; an odd sample carries the value of
    # the objects sample before it (the descriptor is still held).
    assert list(s.uss) == [5 * MIB + memfd_bytes(i - i % 2) for i in range(N)]
    assert list(s.pss) == [6 * MIB] * N  # PSS does not see an unmapped memfd


@pytest.mark.parametrize("points", [7, 13])
def test_buckets_hold_the_lowest_and_highest_value_of_their_samples(store, points):
    got = by_pid(load_series(store, by="process", max_points=points))
    for pid in (10, 11):
        s = got[pid]
        assert len(s.uss) == points
        for b in range(points):
            members = [i for i in range(N) if i * points // N == b]
            values = [private(pid, i) for i in members]
            assert s.uss[b] == min(values) and s.uss_high[b] == max(values)
            assert s.times_ns[b] == sum(T0 + i * STEP for i in members) // len(members)


def test_since_keeps_the_newest_samples(store):
    s = by_pid(load_series(store, by="process", since_ns=T0 + 30 * STEP))[10]
    assert list(s.uss) == [private(10, i) for i in range(30, N)]


def test_jobs_sum_their_processes_and_carry_their_charge(store):
    jobs = {s.name: s for s in load_series(store, by="job")}
    svc = jobs["svc"]
    assert svc.identity == {"koid": 5, "path": "/svc"}
    assert list(svc.uss) == [sum(private(p, i) or 0 for p in (10, 11, 12)) for i in range(N)]
    assert list(svc.charge) == [charged(i) for i in range(N)]
    # root's one process is unknown: so is its sum.
    assert set(jobs["root"].uss) == {None}


def test_objects_of_a_process(store):
    procs = by_pid(load_series(store, by="process"))
    objs = load_objects(store, [procs[10], procs[12]])
    (heap,) = objs[procs[10].key]
    assert heap.name == "[heap]" and heap.object_kind == "anon" and not heap.hidden
    assert heap.identity == {"owner_pid": 10}
    assert list(heap.times_ns) == [T0 + i * STEP for i in range(0, N, 2)]
    assert list(heap.uss) == [10 * MIB + i * MIB for i in range(0, N, 2)]
    (memfd,) = objs[procs[12].key]
    assert memfd.name == "memfd:grow" and memfd.object_kind == "memfd" and memfd.hidden
    assert memfd.identity == {"koid": MEMFD, "path": "/memfd:grow (deleted)"}
    assert list(memfd.uss) == [memfd_bytes(i) for i in range(0, N, 2)]


def test_every_object_by_object(store):
    objs = {s.name: s for s in load_series(store, by="object")}
    assert set(objs) == {"[heap]", "memfd:grow"}


def test_the_analysis_of_the_store(store):
    series = load_series(store, by="process")
    got = {s.identity["pid"]: s for s in analyse(series)}
    assert got[10].leak and got[10].rate_bytes_per_second == pytest.approx(MIB / 10)
    assert got[12].leak and got[12].rate_bytes_per_second == pytest.approx(2 * MIB / 10)
    assert 11 not in got or not got[11].leak
    assert 13 not in got


# ---------------------------------------------------------------------------
# The command


def run(*argv: str) -> tuple[int, str, str]:
    from zxmem.cli import Environment, main

    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, stdout_isatty=False)
    return main(["growth", *argv], env), out.getvalue(), err.getvalue()


def test_the_command_ranks_and_names_the_objects(store):
    status, out, err = run("--from", store)
    assert status == 0, err
    lines = out.splitlines()
    assert lines[0] == ("growth 2026-11-30 00:53:20 to 00:59:50 UTC (40 samples, 6m30s), "
                        "by process")
    rows = [ln for ln in lines[2:] if ln[:3].strip().isdigit()]
    assert rows[0].split()[1] == "LEAK" and rows[0].endswith(" p12")
    assert rows[1].split()[1] == "LEAK" and rows[1].endswith(" p10")
    assert "memfd hidden  memfd:grow" in out and "anon          [heap]" in out


def test_the_command_json_is_valid(store):
    jsonschema = pytest.importorskip("jsonschema")
    from zxmem.schema.growth import growth_schema

    for by in ("process", "job", "object"):
        status, out, err = run("--from", store, "--json", "--by", by)
        assert status == 0, err
        doc = json.loads(out)
        jsonschema.Draft4Validator(growth_schema()).validate(doc)
        assert doc["samples"] == N and doc["by"] == by
    status, out, _ = run("--from", store, "--json", "--since", "200s")
    doc = json.loads(out)
    assert doc["samples"] == 21  # 190 s to 390 s after T0, every 10 s
    leak = doc["suspects"][0]
    assert leak["identity"]["pid"] == 12 and leak["objects"][0]["hidden"] is True


def test_min_rate_filters(store):
    status, out, _ = run("--from", store, "--json", "--min-rate", "1M/m")
    # 2 MiB per 10 s is 12 MiB/min; 1 MiB per 10 s is 6 MiB/min: both pass 1M/m.
    assert {s["identity"]["pid"] for s in json.loads(out)["suspects"]} >= {10, 12}
    status, out, _ = run("--from", store, "--json", "--min-rate", "10M/m")
    assert [s["identity"]["pid"] for s in json.loads(out)["suspects"]] == [12]


def test_bad_input_is_one_line(store, tmp_path):
    status, out, err = run("--from", str(tmp_path / "nope.db"))
    assert status == 1 and err.startswith("zxmem: ") and err.count("\n") == 1 and not out
    junk = tmp_path / "junk.db"
    junk.write_bytes(b"not sqlite at all")
    status, out, err = run("--from", str(junk))
    assert status == 1 and "not a zxmem history store" in err and err.count("\n") == 1
    status, out, err = run("--from", store, "--min-rate", "fast")
    assert status == 2 and "not a rate" in err
    empty = str(tmp_path / "empty.db")
    open_store(empty, create=True).close()
    status, out, err = run("--from", empty)
    assert status == 1 and "no samples" in err and err.count("\n") == 1


def test_a_store_that_cannot_be_read_is_a_store_error(tmp_path):
    with pytest.raises(StoreError):
        load_series(str(tmp_path / "missing.db"))


def test_hostile_names_are_inert(tmp_path):
    path = str(tmp_path / "hostile.db")
    conn = open_store(path, create=True)
    w = Writer(conn)
    evil = "evil\x1b[2J\x07\udcff\u202e"
    for i in range(12):
        snap = snapshot(i)
        procs = tuple(Process(p.koid, evil if p.koid == 10 else p.name, p.job_koid,
                              memory=p.memory, start_time_ticks=p.start_time_ticks)
                      for p in snap.processes)
        w.write(Snapshot(snap.provenance, snap.jobs, procs, None, MappingProxyType({})),
                TOTALS, T0 + i * STEP)
    conn.close()
    status, out, err = run("--from", path)
    assert status == 0, err
    assert "\x1b" not in out and "\x07" not in out and "\u202e" not in out
    assert "evil\\e[2J" in out
    status, out, err = run("--from", path, "--json")
    doc = json.loads(out)
    names = [s["name"] for s in doc["suspects"]]
    assert any(n.startswith("evil\x1b[2J\x07") for n in names)  # JSON escapes it
    assert "\\u001b" in out and "\udcff" not in json.dumps(doc, ensure_ascii=False)


def test_an_object_is_named_by_its_newest_row(tmp_path):
    """An object's name, kind and mappings are its newest row's: the open
    row of one still there, the last row of one gone before the end."""
    path = str(tmp_path / "renamed.db")
    conn = open_store(path, create=True)
    w = Writer(conn)
    gone, kept = inode_koid(1, 7001), inode_koid(1, 7002)
    prov = Provenance(source="linux", host="h", boot_id="boot", job_mode="cgroup2")
    for i in range(12):
        vmos = {kept: Vmo(kept, "memfd:p" if i < 6 else "memfd:q", "memfd", MIB, MIB + i,
                          dev=1, inode=7002, num_mappings=0 if i < 6 else 1)}
        procs = [Process(10, "p10", 1, memory=MemoryCounts(private_bytes=MIB),
                         start_time_ticks=1, vmo_refs=(VmoRef(kept, ("HANDLE",)),))]
        if i < 8:
            vmos[gone] = Vmo(gone, "memfd:x" if i < 4 else "memfd:y", "memfd", MIB, MIB + i,
                             dev=1, inode=7001, num_mappings=1 if i < 4 else 0)
            procs.append(Process(20, "p20", 1, memory=MemoryCounts(private_bytes=MIB),
                                 start_time_ticks=2, vmo_refs=(VmoRef(gone, ("HANDLE",)),)))
        snap = Snapshot(prov, (Job(1, "root", 0, "/", "", None),), tuple(procs), None,
                        MappingProxyType(vmos))
        w.write(snap, OBJECTS, T0 + i * STEP)
    conn.close()
    objs = {s.identity["koid"]: s for s in load_series(path, by="object")}
    assert (objs[gone].name, objs[gone].hidden, len(objs[gone].uss)) == ("memfd:y", True, 8)
    assert (objs[kept].name, objs[kept].hidden, len(objs[kept].uss)) == ("memfd:q", False, 12)
    assert objs[gone].object_kind == objs[kept].object_kind == "memfd"


def test_held_at_each_objects_sample(tmp_path):
    """What each process alone holds at each objects sample asked for, and
    who ever holds something alone, against the definition applied sample
    by sample: objects valid then (an open row to the end), held then by
    exactly one process (a process holding it twice counts once); unknown
    bytes make the process's sum unknown."""
    import random

    from zxmem.growth_source import _held_at
    from zxmem.store.writer import s64, u64

    rng = random.Random(7)
    big = (1 << 64) - 5  # a koid stored as a negative integer
    koids = [101, 102, 103, 104, big]
    obj = sorted(rng.sample(range(1, 200), 40))
    for _ in range(50):
        holds = []
        for _ in range(rng.randint(0, 12)):
            a = rng.randint(1, 200)
            holds.append((rng.choice((1, 2, 3)), a, a + rng.randint(0, 60), rng.choice(koids)))
        holds += holds[:2]  # the same reference twice
        objs = []
        for _ in range(rng.randint(0, 10)):
            a = rng.randint(1, 200)
            objs.append((s64(rng.choice(koids)), a,
                         None if rng.random() < 0.3 else a + rng.randint(0, 80),
                         None if rng.random() < 0.1 else rng.randint(1, 1 << 40)))
        want = []
        for n in obj:
            per: dict[int, int | None] = {}
            for k, a, b, v in objs:
                if a <= n and (b is None or n <= b):
                    who = {e for e, ha, hb, hk in holds if ha <= n <= hb and hk == u64(k)}
                    if len(who) == 1:
                        (e,) = who
                        t = per.get(e, 0)
                        per[e] = None if v is None or t is None else t + v
            want.append(per)
        wanted = [rng.random() < 0.5 for _ in obj]
        owners, got = _held_at(obj, holds, objs, wanted)
        assert owners == {e for per in want for e in per}
        assert got == [per if w else {} for per, w in zip(want, wanted, strict=True)]
