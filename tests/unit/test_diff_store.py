"""``zxmem diff`` of two samples of one store, compared in the store.

The store path (:mod:`zxmem.store.compare`: only the rows valid at one of the
two samples are decoded) must print exactly what reading both samples whole
prints.  The store here is of known shape: objects that grow, shrink, appear
and vanish, a shared object whose owner exits, a PID reused by a process of
the same name and size, an object no process reaches, and a totals sample
in between.
"""

from __future__ import annotations

import itertools
import json
from types import MappingProxyType

import pytest

import zxmem.commands.diff as diff_command
import zxmem.store.compare as in_store
from zxmem.model import (
    INODE_KOID_BASE,
    Job,
    MemoryCounts,
    Process,
    Provenance,
    Snapshot,
    Vmo,
    VmoRef,
)
from zxmem.store.reader import read_sample, stored_form
from zxmem.store.recorder import Recorder
from zxmem.store.schema import open_store
from zxmem.store.writer import OBJECTS, TOTALS

T0 = 1_780_000_000 * 10**9
K = 4096
LIBC = INODE_KOID_BASE | 11
DATA = INODE_KOID_BASE | 12
LOG = INODE_KOID_BASE | 13

# pid -> (start, cmdline, [(name, kind, committed bytes or None)]): each
# process's own anonymous objects, in the order a scan finds them.
Spec = dict[int, tuple[int, str, list[tuple[str, str, int | None]]]]

BASE: Spec = {
    10: (100, "editor", [("[heap]", "anon", 40 * K), ("[stack]", "anon", 8 * K),
                         ("mmap-anonymous", "anon", 16 * K), ("mmap-anonymous", "anon", 4 * K),
                         ("[heap]", "anon", None)]),
    20: (200, "worker", [("[heap]", "anon", 12 * K), ("arena", "anon", 3 * K)]),
    30: (300, "parent", [("[heap]", "anon", 20 * K), ("cow", "anon", 64 * K)]),
    40: (400, "child", [("[heap]", "anon", 2 * K)]),
}


def snapshot(spec: Spec, files: dict[int, tuple[str, int]], share_cow: bool = True,
             first_koid: int = 1) -> Snapshot:
    """Processes of ``spec`` with sequence koids in scan order from
    ``first_koid``; every process maps each file of ``files`` (koid ->
    (path, committed)); with ``share_cow`` the child (PID 40) also reaches
    the parent's "cow" object (the first process in PID order owns it);
    and an object no process reaches (koid 0)."""
    vmos: dict[int, Vmo] = {}
    koid = first_koid
    cow = None
    procs = []
    for pid in sorted(spec):
        start, cmd, objects = spec[pid]
        refs = [VmoRef(f, ("MAPPING",)) for f in sorted(files)]
        for name, kind, committed in objects:
            vmos[koid] = Vmo(koid, name, kind, 64 * K, committed)
            refs.append(VmoRef(koid, ("MAPPING",)))
            if name == "cow":
                cow = koid
            koid += 1
        if pid == 40 and share_cow and cow is not None:
            refs.append(VmoRef(cow, ("MAPPING",)))
        pss = sum(c or 0 for _n, _k, c in objects)
        procs.append(Process(pid, cmd[:15], 5, ppid=1, cmdline=(cmd,), state="S",
                             memory=MemoryCounts(pss_bytes=pss), start_time_ticks=start,
                             vmo_refs=tuple(refs)))
    for f, (path, committed) in files.items():
        vmos[f] = Vmo(f, path.rsplit("/", 1)[-1], "file", 1 << 20, committed, path=path,
                      dev=1, inode=f & 0xFFFF, num_mappings=len(spec), share_count=len(spec))
    vmos[0] = Vmo(0, "[unattributed Shmem]", "shmem", None, 5 * K)
    prov = Provenance(source="linux", host="h", kernel="6.1",
                      timestamp="2026-12-03T10:00:00.000Z", boot_id="b00t",
                      job_mode="cgroup2")
    jobs = (Job(1, "root", 0, "/", "", None), Job(5, "svc", 1, "/svc", "", None))
    return Snapshot(prov, jobs, tuple(procs), None, MappingProxyType(dict(sorted(vmos.items()))))


def series() -> list[tuple[Snapshot, int]]:
    """Five samples: 1 the base; 2 changes of every kind; 3 a totals sample;
    4 more changes; 5 the same as 4."""
    files1 = {LIBC: ("/lib/libc.so", 100 * K), DATA: ("/var/data", 10 * K)}
    s1 = snapshot(BASE, files1)
    spec2: Spec = {
        # grew, shrank, appeared, vanished (the stack), unknown stays unknown
        10: (100, "editor", [("[heap]", "anon", 48 * K), ("mmap-anonymous", "anon", 16 * K),
                             ("mmap-anonymous", "anon", 1 * K), ("[heap]", "anon", None),
                             ("new-arena", "anon", 7 * K)]),
        # PID 20 reused by a process of the same name and size: one gone, one new
        20: (250, "worker", [("[heap]", "anon", 12 * K), ("arena", "anon", 3 * K)]),
        # the parent exits: its cow object is now the child's
        40: (400, "child", [("[heap]", "anon", 2 * K)]),
        50: (500, "late", [("[heap]", "anon", 9 * K)]),
    }
    cow = ("cow", "anon", 64 * K)
    spec2_cow = dict(spec2)
    spec2_cow[40] = (400, "child", [("[heap]", "anon", 2 * K), cow])
    files2 = {LIBC: ("/lib/libc.so", 100 * K), DATA: ("/var/data", 30 * K),
              LOG: ("/var/log/x", 2 * K)}
    s2 = snapshot(spec2_cow, files2, share_cow=False, first_koid=5)
    spec4 = dict(spec2_cow)
    spec4[50] = (500, "late", [("[heap]", "anon", 1 * K)])
    del spec4[10]
    files4 = {LIBC: ("/lib/libc.so", 100 * K), LOG: ("/var/log/x", 2 * K)}
    s4 = snapshot(spec4, files4, share_cow=False, first_koid=2)
    return [(s1, OBJECTS), (s2, OBJECTS), (s2, TOTALS), (s4, OBJECTS), (s4, OBJECTS)]


@pytest.fixture
def store(tmp_path) -> str:
    path = str(tmp_path / "d.db")
    with Recorder(path, print) as rec:
        for i, (s, tier) in enumerate(series()):
            rec.add(s, tier, T0 + i * 10**9)
    return path


def full_read(monkeypatch) -> None:
    """Make diff read both samples whole, as it did before the store path."""
    monkeypatch.setattr(diff_command, "_one_store", lambda a, b: None)


VARIANTS = [[], ["--json"], ["--by", "object"], ["--by", "object", "--json"],
            ["--by", "object", "--min", "8K"], ["--by", "process", "--json"],
            ["--by", "job"]]


def test_the_store_path_prints_what_reading_both_samples_prints(store, cli, monkeypatch):
    calls: list[bool] = []
    real = in_store.object_indexes

    def spy(conn, a, b):
        out = real(conn, a, b)
        calls.append(out is not None)
        return out

    monkeypatch.setattr(in_store, "object_indexes", spy)
    objects_samples = [1, 2, 4, 5]
    fast = {}
    for a, b in itertools.permutations(objects_samples, 2):
        for v in VARIANTS:
            r = cli(["diff", f"{store}@{a}", f"{store}@{b}", *v])
            assert r.status == 0, r.stderr
            fast[(a, b, *v)] = r.stdout
    assert calls and all(calls)  # the store path was taken, every time
    with monkeypatch.context() as m:
        full_read(m)
        for (a, b, *v), out in fast.items():
            r = cli(["diff", f"{store}@{a}", f"{store}@{b}", *v])
            assert r.stdout == out, (a, b, v)
    assert len(calls) == sum(1 for v in VARIANTS if "--by" not in v or "object" in v) * 12


def test_the_changes_are_those_the_samples_were_made_with(store, cli):
    r = cli(["diff", f"{store}@1", f"{store}@2", "--by", "object", "--json"])
    got = {(o["key"], o["name"], o["status"], o["before_bytes"], o["after_bytes"])
           for o in json.loads(r.stdout)["objects"]}
    assert got == {
        (f"o:{DATA}", "/var/data", "grew", 10 * K, 30 * K),
        (f"o:{LOG}", "/var/log/x", "new", None, 2 * K),
        ("p:10", "[heap]", "grew", 40 * K, 48 * K),
        ("p:10", "[stack]", "gone", 8 * K, None),
        ("p:10", "mmap-anonymous", "shrank", 20 * K, 17 * K),
        ("p:10", "new-arena", "new", None, 7 * K),
        # PID 20 reused: the old worker's objects gone, the new one's new
        ("p:20", "[heap]", "gone", 12 * K, None), ("p:20", "[heap]", "new", None, 12 * K),
        ("p:20", "arena", "gone", 3 * K, None), ("p:20", "arena", "new", None, 3 * K),
        # the parent's objects go with it; the shared one is now the child's
        ("p:30", "[heap]", "gone", 20 * K, None), ("p:30", "cow", "gone", 64 * K, None),
        ("p:40", "cow", "new", None, 64 * K),
        ("p:50", "[heap]", "new", None, 9 * K),
    }
    # The same objects are no change; the unreached one (koid 0) never changed.
    r = cli(["diff", f"{store}@4", f"{store}@5", "--json"])
    doc = json.loads(r.stdout)
    assert doc["objects"] == [] and doc["processes"] == []
    # Reused PID: gone before new at equal size, whatever the order of sets.
    lines = cli(["diff", f"{store}@1", f"{store}@2", "--by", "object"]).stdout.splitlines()
    heap20 = [line.split()[3] for line in lines if "p:20" in line and "[heap]" in line]
    assert heap20 == ["gone", "new"]


def test_a_totals_sample_has_no_objects_to_compare(store, cli):
    r = cli(["diff", f"{store}@2", f"{store}@3", "--by", "object"])
    assert r.status == 2 and r.stderr.startswith(f"zxmem: {store}@3: holds no memory objects")
    r = cli(["diff", f"{store}@2", f"{store}@3", "--json"])
    assert r.status == 0 and "objects" not in json.loads(r.stdout)


def test_when_an_owner_may_be_missing_both_samples_are_read(store, cli, monkeypatch):
    """An object kept by koid may have an owner the row does not say (a key
    that did not fit): then the samples are read whole, same output."""
    fast = cli(["diff", f"{store}@1", f"{store}@4"]).stdout
    returned = []
    real = in_store.object_indexes

    def spy(conn, a, b):
        out = real(conn, a, b)
        returned.append(out)
        return out

    monkeypatch.setattr(in_store, "_OWNER_LIMIT", 0)  # every owner id "too large"
    monkeypatch.setattr(in_store, "object_indexes", spy)
    assert cli(["diff", f"{store}@1", f"{store}@4"]).stdout == fast
    assert returned == [None]


def test_an_objects_sample_read_without_objects_is_its_totals(store):
    conn = open_store(store, create=False, readonly=True)
    try:
        s = series()[1][0]
        assert read_sample(conn, 2, objects=False) == stored_form(s, TOTALS)
        assert read_sample(conn, 2) == stored_form(s, OBJECTS)
    finally:
        conn.close()


def test_ps_of_an_objects_sample_shows_what_its_totals_show(store, cli):
    # Samples 2 (objects) and 3 (totals) were written from the same snapshot.
    a = cli(["ps", "--from", f"{store}@2", "--json"])
    b = cli(["ps", "--from", f"{store}@3", "--json"])
    assert a.status == 0 and a.stdout == b.stdout


# ---------------------------------------------------------------------------
# vmos --from STORE@N PID reads that process's objects only


def whole(monkeypatch) -> None:
    """Make vmos read the whole sample, as it did before."""
    import zxmem.commands.common as common

    real = common.from_snapshot
    monkeypatch.setattr(common, "from_snapshot",
                        lambda args, env, objects_of=None, mappings=False, **kw:
                        real(args, env, mappings=mappings, **kw))


def test_vmos_of_a_sample_reads_what_reading_it_whole_reads(store, cli, monkeypatch):
    pids = sorted(BASE) + [50]
    fast = {}
    for n, pid in itertools.product((1, 2, 4), pids):
        for v in (["--json"], ["-w"]):
            r = cli(["vmos", "--from", f"{store}@{n}", str(pid), *v])
            fast[(n, pid, *v)] = (r.status, r.stdout, r.stderr)
    assert sum(1 for status, _o, _e in fast.values() if status == 0) == 2 * (4 + 4 + 3)
    with monkeypatch.context() as m:
        whole(m)
        for (n, pid, *v), out in fast.items():
            r = cli(["vmos", "--from", f"{store}@{n}", str(pid), *v])
            assert (r.status, r.stdout, r.stderr) == out, (n, pid, v)
    # The child's rows at sample 1: the libraries, its heap, the parent's cow.
    doc = json.loads(cli(["vmos", "--from", f"{store}@1", "40", "--json"]).stdout)
    assert [(o["name"], o["committed_bytes"]) for o in doc["vmos"]] == [
        ("libc.so", 100 * K), ("data", 10 * K), ("[heap]", 2 * K), ("cow", 64 * K)]


def test_a_sample_read_for_one_process_holds_only_its_objects(store):
    conn = open_store(store, create=False, readonly=True)
    try:
        part = read_sample(conn, 1, objects_of=(40,))
        full = read_sample(conn, 1)
    finally:
        conn.close()
    child = part.process(40)
    assert child is not None and child == full.process(40)
    assert [p.koid for p in part.processes if p.vmo_refs is not None] == [40]
    assert set(part.vmos) == {r.vmo_koid for r in child.vmo_refs or ()}
    assert all(part.vmos[k] == full.vmos[k] for k in part.vmos)
    assert replace_objects(part) == replace_objects(full)


def replace_objects(s: Snapshot) -> Snapshot:
    """``s`` without references and objects (the rest must not change)."""
    from dataclasses import replace

    return replace(s, vmos=MappingProxyType({}),
                   processes=tuple(replace(p, vmo_refs=None) for p in s.processes))


def test_vmos_of_a_process_whose_maps_were_denied_says_so(tmp_path, cli):
    from dataclasses import replace

    from zxmem.model import Denied

    s = series()[0][0]
    denied = Process(60, "secret", 5, cmdline=("secret",), start_time_ticks=600,
                     memory=None, vmo_refs=None)
    prov = replace(s.provenance, denied=(Denied("maps:60", "EACCES"),))
    s = replace(s, provenance=prov, processes=s.processes + (denied,))
    path = str(tmp_path / "v.db")
    with Recorder(path, print) as rec:
        rec.add(s, OBJECTS, T0)
    r = cli(["vmos", "--from", path, "60"])
    assert r.status == 1
    assert r.stderr == (f"zxmem: {path}: the memory objects of pid 60 were not readable "
                        "when the snapshot was taken (EACCES)\n")


def test_samples_further_apart_than_a_rows_span(tmp_path, cli, monkeypatch):
    """Rows are opened again once a span old (same values, a new first): the
    store path must see through that, at any distance."""
    from zxmem.store import schema

    monkeypatch.setattr(schema, "SPAN", 3)
    monkeypatch.setattr(schema, "OBJECTS_SPAN_FACTOR", 2)  # objects rows: 6 samples
    states = [s for s, tier in series() if tier == OBJECTS][:3]
    path = str(tmp_path / "span.db")
    with Recorder(path, print) as rec:
        for i in range(20):
            rec.add(states[(i // 4) % 3], OBJECTS, T0 + i * 10**9)
    pairs = [(1, 20), (20, 1), (1, 13), (2, 9), (5, 6), (7, 8), (3, 19), (4, 4)]
    fast = {p: cli(["diff", f"{path}@{p[0]}", f"{path}@{p[1]}", "--json"]).stdout
            for p in pairs}
    assert json.loads(fast[(1, 13)])["objects"] == []  # the same state, rows re-opened
    assert json.loads(fast[(1, 20)])["objects"] != []
    full_read(monkeypatch)
    for (a, b), out in fast.items():
        assert cli(["diff", f"{path}@{a}", f"{path}@{b}", "--json"]).stdout == out, (a, b)


def test_many_changed_groups_are_picked_from_every_row(store, cli, monkeypatch):
    fast = cli(["diff", f"{store}@1", f"{store}@4", "--by", "object", "--json"]).stdout
    monkeypatch.setattr(in_store, "_LISTED_GROUPS", 1)
    assert cli(["diff", f"{store}@1", f"{store}@4", "--by", "object", "--json"]).stdout == fast
    full_read(monkeypatch)
    assert cli(["diff", f"{store}@1", f"{store}@4", "--by", "object", "--json"]).stdout == fast
