"""Synthetic snapshots of a small machine over three refreshes, and a
history store holding them, for ``zxmem top``'s model and app tests.

Every number is chosen here, so each expected change is arithmetic on
these constants, not zxmem's earlier output.
"""

from __future__ import annotations

from types import MappingProxyType

from zxmem.model import (
    CgroupMemory,
    Denied,
    Job,
    KernelStats,
    MemoryCounts,
    Process,
    Provenance,
    Snapshot,
)

MIB = 1 << 20
BOOT = "boot-1"
# A name that tries to clear the screen, move the cursor home, set the
# window title, and holds an invalid UTF-8 byte (as decode_name gives it).
HOSTILE = "\x1b[2J\x1b[Hevil\x07\x1b]0;owned\x07\\xff" + "A" * 300
T0 = 1_765_000_000_000_000_000  # ns


def proc(pid: int, name: str, job: int, pss_mib: float | None, start: int = 1000,
         private_mib: float | None = None, swap_mib: float = 0) -> Process:
    memory = None
    if pss_mib is not None:
        memory = MemoryCounts(pss_bytes=int(pss_mib * MIB),
                              private_bytes=int((private_mib if private_mib is not None
                                                 else pss_mib) * MIB),
                              shared_bytes=0, rss_bytes=int(pss_mib * MIB),
                              swap_bytes=int(swap_mib * MIB),
                              swap_pss_bytes=int(swap_mib * MIB))
    return Process(koid=pid, name=name[:15], job_koid=job, ppid=1, uid=1000,
                   cmdline=(name,), state="S", memory=memory, num_threads=1,
                   start_time_ticks=start)


JOBS = (
    Job(koid=1, name="/", parent_koid=0, path="/"),
    Job(koid=2, name="system.slice", parent_koid=1, path="/system.slice"),
    Job(koid=3, name="user.slice", parent_koid=1, path="/user.slice",
        cgroup=CgroupMemory(version="v2", charged_bytes=40 * MIB, limit_bytes=1024 * MIB)),
)


def kernel(free_mib: int, oom: int, some: int, full: int) -> KernelStats:
    total = 8192 * MIB
    meminfo = {"MemTotal": total, "MemFree": free_mib * MIB,
               "MemAvailable": (free_mib + 1000) * MIB,
               "SwapTotal": 1024 * MIB, "SwapFree": 1000 * MIB}
    return KernelStats(total_bytes=total, free_bytes=free_mib * MIB, vmo_bytes=3000 * MIB,
                       meminfo=MappingProxyType(meminfo),
                       extra=MappingProxyType({"psi_some_avg10_centipct": some,
                                               "psi_full_avg10_centipct": full,
                                               "oom_kill": oom}))


def _snap(n: int, procs: tuple[Process, ...], k: KernelStats, denied=()) -> Snapshot:
    stamp = f"2025-12-06T05:46:{40 + n * 2:02d}.000Z"
    prov = Provenance(source="linux", host="fixture", kernel="6.1", timestamp=stamp,
                      job_mode="cgroup2", boot_id=BOOT, denied=tuple(denied),
                      capture_time_ns=T0 + n * 2_000_000_000, clock_ticks_per_second=100)
    return Snapshot(provenance=prov, jobs=JOBS, processes=procs, kernel=k)


def samples() -> list[Snapshot]:
    """Three refreshes:

    1. web 10M, db 30M (swap 2M), the hostile one 1M, init 5M; sshd is
       another user's (unreadable);
    2. web 14M (+4M), db 28M (-2M), worker 6M appears (new), the hostile
       one exits; two more OOM kills;
    3. db's PID is reused by a new process (another start time) of 3M;
       web 12M (-2M since 2, +2M since 1).
    """
    init = proc(1, "init", 1, 5)
    sshd = proc(50, "sshd", 2, None)
    denied = (Denied("smaps_rollup:50", "EACCES"),)
    s1 = (init, sshd, proc(100, "web --port 80", 2, 10, private_mib=8),
          proc(101, "db --data /srv", 3, 30, private_mib=25, swap_mib=2),
          proc(102, HOSTILE, 3, 1))
    s2 = (init, sshd, proc(100, "web --port 80", 2, 14, private_mib=12),
          proc(101, "db --data /srv", 3, 28, private_mib=24, swap_mib=2),
          proc(103, "worker", 3, 6))
    s3 = (init, sshd, proc(100, "web --port 80", 2, 12, private_mib=10),
          proc(101, "db-new", 3, 3, start=5000), proc(103, "worker", 3, 6))
    return [_snap(1, s1, kernel(4000, 7, 125, 50), denied),
            _snap(2, s2, kernel(3900, 9, 300, 110), denied),
            _snap(3, s3, kernel(3950, 9, 210, 80), denied)]


def write_store(path: str) -> None:
    """A history store (zxmem record's format) holding :func:`samples`."""
    from zxmem.store.schema import open_store
    from zxmem.store.writer import TOTALS, Writer

    conn = open_store(path, create=True)
    try:
        w = Writer(conn)
        for i, s in enumerate(samples()):
            w.write(s, TOTALS, T0 + i * 2_000_000_000)
    finally:
        conn.close()
