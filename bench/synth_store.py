"""A synthetic history store of known shape, written through the store's writer.

    from synth_store import synth_store
    shape = synth_store("/tmp/h.db", samples=8640, processes=1000)

Used by the benchmarks (report, growth) and the report's tests.  Every value
is a pure function of the arguments and the seed, so a test can say what the
store holds:

* ``processes`` processes, PID ``1000 + i``, named ``proc-i``, in job
  ``i % jobs`` (cgroup ``/zxmem.slice/svc-J.service``, koid ``100 + J``,
  under the root job ``/``, koid 1);
* process i starts at ``base_bytes(i)``; the first ``leakers`` processes grow
  by ``leak_bytes`` every sample; the next ``sawtooth`` processes allocate
  ``saw_bytes`` more for five samples out of ten; of the rest, ``changed`` (a
  share) move by a few pages each sample, so most rows stay unchanged as on
  a real machine;
* kernel totals: ``total_bytes`` of memory, the processes' PSS plus
  ``cache_bytes`` of page cache as the VMO total, ``kernel_bytes`` of kernel,
  the rest free; an OOM-kill counter (``extra.oom_kill``) that goes up by one
  at each sample of ``oom_at`` and, with ``pressure``, PSI's memory
  pressure as ``zxmem record`` keeps it (zxmem.collection.PRESSURE_KEYS):
  some tasks stall 20% and all 10% of each interval ending at samples
  ``s % 50`` in 1..4 (``extra.psi_some_total_us``, ``psi_full_total_us``;
  avg10 2000 and 1000 centi-percent at those samples, 0 elsewhere);
* every ``objects_every``-th sample (0: none) is an objects sample: each
  process maps ``vmos_per_process - 1`` objects ``anon-J`` of 16 KiB and a
  ``[heap]`` object of the rest of its PSS (at least a page), and shares
  ``libc.so.6``.

Writing takes about 15 ms a sample for 1,000 processes without command lines
(``cmdlines=False``; the writer encodes each one as JSON every sample), so a
day of 10 s samples (8,640) takes two to three minutes.
"""

from __future__ import annotations

import os
import random
import sys
from dataclasses import dataclass, field, replace
from types import MappingProxyType

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

from zxmem.model import (  # noqa: E402
    INODE_KOID_BASE,
    Job,
    KernelStats,
    MemoryCounts,
    Process,
    Provenance,
    Snapshot,
    Vmo,
    VmoRef,
)
from zxmem.store.schema import open_store  # noqa: E402
from zxmem.store.writer import OBJECTS, TOTALS, Writer  # noqa: E402

MIB = 1 << 20
PAGE = 4096
LIBC = INODE_KOID_BASE | 777


@dataclass
class Shape:
    """What was written: per sample, each process's PSS and the totals."""

    path: str
    times_ns: list[int] = field(default_factory=list)
    pss: list[dict[int, int]] = field(default_factory=list)  # sample -> pid -> PSS
    names: dict[int, str] = field(default_factory=dict)  # pid -> name
    total_bytes: int = 0
    kernel_bytes: int = 0
    cache_bytes: int = 0
    jobs: int = 0


def base_bytes(i: int) -> int:
    return (1 + (i * 7919) % 97) * MIB


def synth_store(path: str, *, samples: int = 100, processes: int = 50, jobs: int = 8,
                interval_s: float = 10.0, start_ns: int = 1_780_000_000 * 10**9,
                leakers: int = 2, leak_bytes: int = MIB, sawtooth: int = 1,
                saw_bytes: int = 50 * MIB, changed: float = 0.05, objects_every: int = 0,
                total_bytes: int = 256 << 30, kernel_bytes: int = 3 << 30,
                cache_bytes: int = 10 << 30, oom_at: tuple[int, ...] = (),
                pressure: bool = False, names: dict[int, str] | None = None,
                cmdlines: bool = True, vmos_per_process: int = 1, seed: int = 1,
                keep_shape: bool = True) -> Shape:
    rng = random.Random(seed)
    names = names or {}
    shape = Shape(path, total_bytes=total_bytes, kernel_bytes=kernel_bytes,
                  cache_bytes=cache_bytes, jobs=jobs,
                  names={1000 + i: names.get(i, f"proc-{i}") for i in range(processes)})
    job_list = [Job(koid=1, name="/", parent_koid=0, path="/")]
    job_list += [Job(koid=100 + j, name=f"svc-{j}.service", parent_koid=1,
                     path=f"/zxmem.slice/svc-{j}.service") for j in range(jobs)]
    pss = [base_bytes(i) for i in range(processes)]
    procs = [Process(koid=1000 + i, name=names.get(i, f"proc-{i}"), job_koid=100 + i % jobs,
                     ppid=1, uid=0, state="S",
                     cmdline=(names.get(i, f"proc-{i}"), "--serve") if cmdlines else None,
                     num_threads=1, start_time_ticks=1000 + i,
                     memory=MemoryCounts(pss_bytes=pss[i], private_bytes=pss[i],
                                         shared_bytes=0))
             for i in range(processes)]
    conn = open_store(path, create=True)
    writer = Writer(conn)
    ooms = 0
    stall_us = full_us = 0
    try:
        for s in range(samples):
            t = start_ns + int(s * interval_s * 1e9)
            for i in range(processes):
                new = pss[i]
                if i < leakers:
                    new = base_bytes(i) + s * leak_bytes
                elif i < leakers + sawtooth:
                    new = base_bytes(i) + (saw_bytes if (s // 5) % 2 else 0)
                elif rng.random() < changed:
                    new = max(PAGE, new + rng.choice((-1, 1)) * rng.randint(1, 64) * PAGE)
                if new != pss[i]:
                    pss[i] = new
                    procs[i] = replace(procs[i], memory=MemoryCounts(
                        pss_bytes=new, private_bytes=new, shared_bytes=0))
            tier = OBJECTS if objects_every and s % objects_every == 0 else TOTALS
            total_pss = sum(pss)
            if s in oom_at:
                ooms += 1
            stalled = pressure and 0 < s % 50 < 5
            stall_us += int(interval_s * 1e6 * 0.2) if stalled else 0
            full_us += int(interval_s * 1e6 * 0.1) if stalled else 0
            extra: dict[str, int | None] = {"oom_kill": ooms}
            if pressure:
                extra["psi_some_avg10_centipct"] = 2000 if stalled else 0
                extra["psi_full_avg10_centipct"] = 1000 if stalled else 0
                extra["psi_some_total_us"] = stall_us
                extra["psi_full_total_us"] = full_us
            kernel = KernelStats(
                total_bytes=total_bytes, vmo_bytes=total_pss + cache_bytes,
                free_bytes=total_bytes - total_pss - cache_bytes - kernel_bytes,
                extra=MappingProxyType(extra))
            ps = procs
            vmos: dict[int, Vmo] = {}
            if tier == OBJECTS:
                vmos[LIBC] = Vmo(koid=LIBC, name="libc.so.6", kind="file",
                                 size_bytes=2 * MIB, committed_bytes=2 * MIB,
                                 num_mappings=processes, share_count=processes,
                                 dev=0, inode=777, path="/usr/lib/libc.so.6")
                ps = []
                small = 4 * PAGE
                for i, p in enumerate(procs):
                    k = 10 + i * vmos_per_process
                    # The rest of its PSS (at least a page: a process whose
                    # PSS drifted below its small objects' would otherwise
                    # get a negative size).
                    heap = max(PAGE, pss[i] - (vmos_per_process - 1) * small)
                    vmos[k] = Vmo(koid=k, name="[heap]", kind="anon", size_bytes=heap,
                                  committed_bytes=heap, num_mappings=1, share_count=1)
                    refs = [VmoRef(k, ("MAPPING",)), VmoRef(LIBC, ("MAPPING",))]
                    for j in range(1, vmos_per_process):
                        vmos[k + j] = Vmo(koid=k + j, name=f"anon-{j}", kind="anon",
                                          size_bytes=small, committed_bytes=small,
                                          num_mappings=1, share_count=1)
                        refs.append(VmoRef(k + j, ("MAPPING",)))
                    ps.append(replace(p, vmo_refs=tuple(refs)))
            snap = Snapshot(
                provenance=Provenance(source="linux", host="synthetic", boot_id="boot-1",
                                      timestamp=None, capture_time_ns=t),
                jobs=tuple(job_list), processes=tuple(ps), kernel=kernel,
                vmos=MappingProxyType(vmos))
            writer.write(snap, tier, t)
            if keep_shape:
                shape.times_ns.append(t)
                shape.pss.append({1000 + i: pss[i] for i in range(processes)})
    finally:
        conn.close()
    return shape
