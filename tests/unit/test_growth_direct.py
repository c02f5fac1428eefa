"""The store reader of ``zxmem growth`` (zxmem.growth_source: one read of each
table, bucketed with numpy) against a direct computation from what was
written, sample by sample: a store written through the store's writer with
a PID reused by a new process, a process absent from some samples, unknown
values (a process whose memory could not be read, one whose private bytes
are unknown), jobs and their cgroup charge, processes that change at some
samples and not at others."""

from __future__ import annotations

import random
import sqlite3
from types import MappingProxyType

import pytest

import zxmem.growth_source as growth_source
from zxmem.growth import Series, analyse
from zxmem.growth_source import load_series
from zxmem.model import Job, MemoryCounts, Process, Provenance, Snapshot
from zxmem.store.schema import open_store
from zxmem.store.writer import TOTALS, Writer

MIB = 1 << 20
T0 = 1_796_000_000 * 10**9
STEP = 10 * 10**9
SAMPLES = 150

# (pid, start ticks) -> (name, job koid, the samples it is present at)
PROCS: dict[tuple[int, int], tuple[str, int, range | list[int]]] = {
    (100, 1): ("old", 5, range(0, 60)),             # exits ...
    (100, 2): ("reused", 6, range(70, SAMPLES)),    # ... and its PID is reused
    (101, 3): ("gappy", 5, [i for i in range(SAMPLES) if not 30 <= i < 45]),
    (102, 4): ("unknown", 6, range(SAMPLES)),
    (103, 5): ("flat", 5, range(SAMPLES)),
    (104, 6): ("leak", 1, range(SAMPLES)),
    (105, 7): ("late", 6, range(120, SAMPLES)),
}


def memory(key: tuple[int, int], i: int, rng: random.Random, last: dict) -> MemoryCounts | None:
    """The process's memory at sample i (None: it could not be read)."""
    name = PROCS[key][0]
    if name == "unknown" and (10 <= i < 20 or 100 <= i < 105):
        return None
    if name == "flat":
        return MemoryCounts(pss_bytes=9 * MIB, private_bytes=8 * MIB)
    if name == "leak":
        v = 30 * MIB + i * MIB // 2
        return MemoryCounts(pss_bytes=v + MIB, private_bytes=v)
    prev = last.get(key, (50 * MIB, 51 * MIB))
    if rng.random() < 0.5:  # changes at half the samples
        v = max(MIB, prev[0] + rng.randint(-8, 9) * 4096 * 64)
        prev = (v, v + rng.randint(0, 4) * 4096)
    last[key] = prev
    if name == "unknown" and 50 <= i < 55:
        return MemoryCounts(pss_bytes=prev[1], private_bytes=None)
    return MemoryCounts(pss_bytes=prev[1], private_bytes=prev[0])


def charge(koid: int, i: int) -> int | None:
    if koid == 5:
        return 200 * MIB + (i // 7) * MIB
    if koid == 6:
        return None if 40 <= i < 50 else 300 * MIB - (i % 11) * MIB
    return None


# What was written: per sample, (pid, start) -> (private, pss) (None:
# unknown; a process absent from the sample is absent from its dict).
Written = list[dict[tuple[int, int], tuple[int | None, int | None]]]


@pytest.fixture(scope="module")
def store(tmp_path_factory) -> tuple[str, Written]:
    path = str(tmp_path_factory.mktemp("direct") / "h.db")
    conn = open_store(path, create=True)
    w = Writer(conn)
    rng = random.Random(5)
    last: dict = {}
    written: Written = []
    prov = Provenance(source="linux", host="h", boot_id="boot", job_mode="cgroup2")
    for i in range(SAMPLES):
        jobs = tuple([Job(1, "root", 0, "/", "", charge(1, i))]
                     + [Job(k, f"svc{k}", 1, f"/svc{k}", "", charge(k, i)) for k in (5, 6)])
        procs = []
        now: dict[tuple[int, int], tuple[int | None, int | None]] = {}
        for key, (name, job, present) in PROCS.items():
            if i not in present:
                continue
            m = memory(key, i, rng, last)
            now[key] = (None, None) if m is None else (m.private_bytes, m.pss_bytes)
            procs.append(Process(key[0], name, job, ppid=1, cmdline=(name,), memory=m,
                                 start_time_ticks=key[1]))
        written.append(now)
        w.write(Snapshot(prov, jobs, tuple(procs), None, MappingProxyType({})), TOTALS,
                T0 + i * STEP)
    conn.close()
    return path, written


def _low(xs: list[int | None]) -> int | None:
    known = [x for x in xs if x is not None]
    return min(known) if known else None


def _high(xs: list[int | None]) -> int | None:
    known = [x for x in xs if x is not None]
    return max(known) if known else None


def _buckets(path: str, since_ns: int | None, max_points: int
             ) -> tuple[list[int], list[int], int]:
    """The samples of the period (indexes into what was written), each one's
    bucket, and how many buckets: a bucket is a run of sample numbers."""
    conn = sqlite3.connect(path)
    rows = conn.execute("SELECT n, time_ns FROM samples ORDER BY n").fetchall()
    conn.close()
    rows = [r for r in rows if since_ns is None or r[1] >= since_ns]
    n0, n1 = rows[0][0], rows[-1][0]
    size = n1 - n0 + 1
    nb = min(max_points, size)
    index = [(r[1] - T0) // STEP for r in rows]
    return index, [(r[0] - n0) * nb // size for r in rows], nb


def direct_processes(path: str, written: Written, since_ns: int | None,
                     max_points: int) -> dict[tuple[int, int], dict]:
    """(pid, start) -> times, lowest and highest private bytes and lowest
    PSS of each bucket the process was present in, from what was written."""
    index, bucket, nb = _buckets(path, since_ns, max_points)
    out = {}
    for key in PROCS:
        times, uss, high, pss = [], [], [], []
        for b in range(nb):
            at = [i for i, bb in zip(index, bucket, strict=True) if bb == b]
            mine = [written[i][key] for i in at if key in written[i]]
            if not mine:
                continue
            times.append(sum(T0 + i * STEP for i in at) // len(at))
            uss.append(_low([m[0] for m in mine]))
            high.append(_high([m[0] for m in mine]))
            pss.append(_low([m[1] for m in mine]))
        if times:
            out[key] = {"times_ns": times, "uss": uss, "uss_high": high, "pss": pss}
    return out


def direct_jobs(path: str, written: Written, since_ns: int | None,
                max_points: int) -> dict[int, dict]:
    """Job koid -> each bucket's lowest and highest sum of its processes'
    private bytes (unknown at a sample where one of them is), lowest sum of
    PSS, lowest charge."""
    index, bucket, nb = _buckets(path, since_ns, max_points)
    out = {}
    for koid in (1, 5, 6):
        members = [k for k, v in PROCS.items() if v[1] == koid]
        times, uss, high, pss, chg = [], [], [], [], []
        for b in range(nb):
            at = [i for i, bb in zip(index, bucket, strict=True) if bb == b]
            times.append(sum(T0 + i * STEP for i in at) // len(at))
            sums: list[list[int | None]] = [[], []]
            for i in at:
                for c in (0, 1):
                    vals = [written[i][k][c] for k in members if k in written[i]]
                    sums[c].append(None if None in vals else sum(v or 0 for v in vals))
            uss.append(_low(sums[0]))
            high.append(_high(sums[0]))
            pss.append(_low(sums[1]))
            chg.append(_low([charge(koid, i) for i in at]))
        out[koid] = {"times_ns": times, "uss": uss, "uss_high": high, "pss": pss,
                     "charge": chg}
    return out


def by_identity(series: list[Series]) -> dict[tuple[int, int], Series]:
    return {(s.identity["pid"], s.identity["start_ticks"]): s for s in series}


CASES = [(None, 120), (None, 7), ("late", 120), ("late", 9)]


@pytest.fixture(params=[False, True], ids=["one-read", "two-halves"])
def split(request, monkeypatch) -> bool:
    if request.param:
        # The two-halves read (two connections at once) on a small store.
        monkeypatch.setattr(growth_source, "SPLIT_ROWS", 0)
    return request.param


@pytest.mark.parametrize("since,points", CASES)
def test_processes_are_what_was_written(store, split, since, points):
    path, written = store
    since_ns = None if since is None else T0 + 65 * STEP
    got = by_identity(load_series(path, by="process", since_ns=since_ns, max_points=points))
    want = direct_processes(path, written, since_ns, points)
    assert set(got) == set(want)
    if since is None:
        # The reused PID is two processes, each with its own series.
        assert {k for k in got if k[0] == 100} == {(100, 1), (100, 2)}
    for key, w in want.items():
        s = got[key]
        assert s.name == PROCS[key][0]
        assert list(s.times_ns) == w["times_ns"], key
        assert list(s.uss) == w["uss"], key
        assert list(s.uss_high) == w["uss_high"], key
        assert list(s.pss) == w["pss"], key
    # The shapes the store was written with are there to be compared.
    if since is None and points == 120:
        assert None in got[(102, 4)].uss  # unknown stays unknown
        assert len(got[(101, 3)].times_ns) < 120  # absent from some buckets
    # The ranking, rates and high-water marks follow from the series: the
    # same from the direct ones.
    direct = [Series(key=s.key, kind="process", name=s.name, identity=s.identity,
                     times_ns=want[k]["times_ns"], uss=want[k]["uss"],
                     uss_high=want[k]["uss_high"], pss=want[k]["pss"])
              for k, s in sorted(got.items())]
    assert ([x.to_json() for x in analyse(direct)]
            == [x.to_json() for x in analyse([got[k] for k in sorted(got)])])


@pytest.mark.parametrize("since,points", CASES)
def test_jobs_are_what_was_written(store, split, since, points):
    path, written = store
    since_ns = None if since is None else T0 + 65 * STEP
    got = {s.identity["koid"]: s for s in load_series(path, by="job", since_ns=since_ns,
                                                      max_points=points)}
    want = direct_jobs(path, written, since_ns, points)
    assert set(got) == set(want)
    for koid, w in want.items():
        s = got[koid]
        for field in ("times_ns", "uss", "uss_high", "pss", "charge"):
            assert list(getattr(s, field)) == w[field], (koid, field)
    if since is None and points == 120:
        assert None in got[6].uss and None in got[6].charge
