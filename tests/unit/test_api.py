"""The public API: zxmem.collect(Plan) and zxmem.load(path)."""

from __future__ import annotations

import gc
import os
import sys
import threading

import pytest
from fixture_paths import REPO

import zxmem
from zxmem import runtime

TREE = REPO / "tests" / "fixtures" / "proc-trees" / "cgroup-v2" / "proc"


def test_collect_reads_a_recorded_tree_as_the_plan_says():
    snap = zxmem.collect(zxmem.Plan(), proc_root=str(TREE))
    assert isinstance(snap, zxmem.Snapshot)
    assert sorted(p.koid for p in snap.processes) == [19901, 19940, 19945, 19948]
    assert all(p.mappings is None for p in snap.processes)  # not asked for
    assert snap.kernel is None
    full = zxmem.collect(zxmem.Plan(objects=True), proc_root=str(TREE))
    # The recorded tree has no maps: each process says so (never empty).
    assert all(p.mappings is None for p in full.processes)
    assert {w for w, _ in full.provenance.denied} == {
        f"maps:{p.koid}" for p in full.processes}
    # Asking for objects does not change the totals read from smaps_rollup.
    assert [p.memory for p in full.processes] == [p.memory for p in snap.processes]


def test_collect_says_what_it_could_not_read():
    lines: list[str] = []
    snap = zxmem.collect(zxmem.Plan(kernel=True), proc_root=str(TREE), warn=lines.append)
    assert snap.kernel is None
    assert lines and lines[0].startswith("kernel records left out")
    assert any(n.startswith("kernel records omitted") for n in snap.provenance.notes)


def test_collect_of_a_missing_root_raises_oserror(tmp_path):
    with pytest.raises(OSError):
        zxmem.collect(proc_root=str(tmp_path / "nothing"))


def test_load_reads_a_saved_memgraph(tmp_path, cli):
    r = cli(["memgraph", "-v", "--proc-root", str(TREE)])
    path = tmp_path / "mem.json"
    path.write_text(r.stdout)
    snap = zxmem.load(str(path))
    assert sorted(p.koid for p in snap.processes) == [19901, 19940, 19945, 19948]


def test_unknown_attribute():
    with pytest.raises(AttributeError):
        zxmem.nothing_here  # noqa: B018


def test_collect_leaves_the_collector_and_switch_interval_as_it_found_them():
    interval = sys.getswitchinterval()
    assert gc.isenabled()
    zxmem.collect(zxmem.Plan(objects=True, hidden=True), proc_root=str(TREE))
    assert gc.isenabled() and sys.getswitchinterval() == interval
    gc.disable()
    try:
        zxmem.collect(zxmem.Plan(objects=True), proc_root=str(TREE))
        assert not gc.isenabled()  # a caller's choice is kept too
    finally:
        gc.enable()


def test_overlapping_pauses_from_threads_restore_the_collector():
    """Two threads collecting at once: the collector is back on only after
    the last one is done, and it is back on then."""
    assert gc.isenabled()
    inside = threading.Barrier(2)
    leave = threading.Event()

    def hold():
        with runtime.paused_gc():
            inside.wait()
            leave.wait(5)

    t = threading.Thread(target=hold)
    t.start()
    with runtime.paused_gc():
        inside.wait()
    assert not gc.isenabled()  # the other thread still holds it
    leave.set()
    t.join()
    assert gc.isenabled()


def test_a_settled_pause_moves_what_it_made_to_the_oldest_generation():
    was = gc.isenabled()
    with runtime.paused_gc(settle=True):
        made = [[i] for i in range(1000)]
    young = {id(o) for o in gc.get_objects(generation=0)}
    old = {id(o) for o in gc.get_objects(generation=2)}
    assert not any(id(o) in young for o in made)
    assert all(id(o) in old for o in made)
    assert gc.isenabled() == was and gc.get_freeze_count() == 0


def test_a_settled_pause_leaves_objects_frozen_by_others_frozen():
    gc.freeze()
    try:
        frozen = gc.get_freeze_count()
        assert frozen > 0
        with runtime.paused_gc(settle=True):
            made = [[i] for i in range(10)]
        assert gc.get_freeze_count() == frozen
        assert all(gc.is_tracked(o) for o in made)
    finally:
        gc.unfreeze()


def test_decoding_caches_are_bounded():
    from zxmem.sources import smaps

    n = runtime.CACHE_LIMIT + 500
    many = b"".join(
        b"%08x-%08x rw-s 00000000 00:01 %d /memfd:churn-%d (deleted)\n"
        % (i * 8192, i * 8192 + 4096, i + 1, i)
        for i in range(n)
    )
    table = smaps.parse_maps(many)
    assert len(table.paths) == n and table.paths[-1] == f"/memfd:churn-{n - 1} (deleted)"
    for cache in (smaps._PATHS, smaps._RESTS, smaps._DEVS, smaps._PERMS):
        assert len(cache) <= runtime.CACHE_LIMIT


def test_identity_is_boot_pid_and_start_time(tmp_path, cli):
    """A process is (boot id, PID, start time) in the snapshot and in
    memgraph, read back by --from: a reused PID is another process."""
    live = zxmem.collect()
    me = live.process(os.getpid())
    boot = open("/proc/sys/kernel/random/boot_id").read().strip()
    with open(f"/proc/{os.getpid()}/stat", "rb") as f:
        start = int(f.read().rsplit(b")", 1)[1].split()[19])
    assert live.identity(me) == (boot, os.getpid(), start)
    again = zxmem.collect()
    assert again.identity(again.process(os.getpid())) == live.identity(me)
    assert live.provenance.capture_time_ns < again.provenance.capture_time_ns
    assert live.provenance.clock_ticks_per_second == os.sysconf("SC_CLK_TCK")

    r = cli(["memgraph"])
    path = tmp_path / "mem.json"
    path.write_text(r.stdout)
    saved = zxmem.load(str(path))
    mine = saved.process(os.getpid())
    assert saved.identity(mine) == live.identity(me)
    assert saved.provenance.capture_time_ns is not None

    from dataclasses import replace
    reused = replace(me, start_time_ticks=start + 1)
    assert live.identity(reused) != live.identity(me)


def test_a_recorded_tree_has_no_live_clock():
    snap = zxmem.collect(proc_root=str(TREE))
    assert snap.provenance.capture_time_ns is None and snap.provenance.boot_id is None
    assert all(p.start_time_ticks is not None for p in snap.processes)


def test_denied_entries_are_typed():
    from zxmem.model import Denied, Provenance

    prov = Provenance(source="linux", denied=(("smaps_rollup:12", "EACCES"),
                                              ("fd:7", "EPERM"), ("/proc/kpageflags", "EACCES")))
    assert all(type(d) is Denied for d in prov.denied)
    first = prov.denied[0]
    assert (first.kind, first.pid, first.why) == ("smaps_rollup", 12, "EACCES")
    assert prov.denied[2].pid is None
    assert prov.denied_pids("smaps_rollup") == {12}
    assert prov.denied_pids() == {12, 7}
    assert dict(prov.denied)["fd:7"] == "EPERM"  # still (what, why) pairs
