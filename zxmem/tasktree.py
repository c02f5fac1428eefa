"""The task tree derived from a Snapshot: walk order and job totals.

Every tree view (``ps``, ``memgraph``, ``treemap``) walks jobs and processes
the way Fuchsia's task-utils walker does (spec fuchsia-tools §1.1): a job,
then its processes (each followed by its threads), then its sub-jobs,
recursively.  Job totals follow §2.2: every process's PSS and PRIVATE (and,
on Linux, swap) is added to every ancestor job; SHARED is never summed.

A process whose memory is unknown (``None``) adds nothing; its jobs count it
in ``unknown_processes`` so a view can say the sum is partial.  A job none of
whose processes is known has ``None`` totals, never 0.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator

from zxmem.model import Job, Process, Snapshot, Thread
from zxmem.record import Record

SORT_KEYS = ("koid", "pss", "private", "name")


class TaskRow(Record):
    kind: str  # "j", "p" or "t"
    depth: int
    koid: int
    parent_koid: int
    name: str  # raw (unescaped) display name
    pss_bytes: int | None = None
    private_bytes: int | None = None
    shared_bytes: int | None = None
    swap_bytes: int | None = None
    rss_bytes: int | None = None
    state: str = ""
    unknown_processes: int = 0  # jobs: processes below whose memory is unknown
    job: Job | None = None
    process: Process | None = None
    thread: Thread | None = None


class _Totals(Record, frozen=False):
    pss: int = 0
    private: int = 0
    swap: int = 0
    known: int = 0
    unknown: int = 0
    swap_known: int = 0


class TaskTree:
    """Index of a snapshot's jobs and processes, with job totals."""

    def __init__(self, snapshot: Snapshot) -> None:
        self.snapshot = snapshot
        self.jobs = {j.koid: j for j in snapshot.jobs}
        self.child_jobs: dict[int, list[Job]] = {}
        self.job_processes: dict[int, list[Process]] = {}
        for j in snapshot.jobs:
            if j.parent_koid and j.parent_koid in self.jobs:
                self.child_jobs.setdefault(j.parent_koid, []).append(j)
        for p in snapshot.processes:
            self.job_processes.setdefault(p.job_koid, []).append(p)
        self.roots = [
            j for j in snapshot.jobs if not j.parent_koid or j.parent_koid not in self.jobs
        ]
        self._totals: dict[int, _Totals] = {}
        for root in self.roots:
            self._sum(root)

    def _sum(self, root: Job) -> _Totals:
        # Iterative post-order, so deep cgroup trees cannot hit the recursion limit.
        stack: list[tuple[Job, bool]] = [(root, False)]
        while stack:
            job, done = stack.pop()
            if not done:
                stack.append((job, True))
                for child in self.child_jobs.get(job.koid, ()):
                    stack.append((child, False))
                continue
            t = _Totals()
            for p in self.job_processes.get(job.koid, ()):
                m = p.memory
                if m is None or m.pss_bytes is None:
                    t.unknown += 1
                    continue
                t.known += 1
                t.pss += m.pss_bytes
                t.private += m.private_bytes or 0
                if m.swap_bytes is not None:
                    t.swap += m.swap_bytes
                    t.swap_known += 1
            for child in self.child_jobs.get(job.koid, ()):
                c = self._totals[child.koid]
                t.pss += c.pss
                t.private += c.private
                t.swap += c.swap
                t.known += c.known
                t.unknown += c.unknown
                t.swap_known += c.swap_known
            self._totals[job.koid] = t
        return self._totals[root.koid]

    def job_row(self, job: Job, depth: int) -> TaskRow:
        t = self._totals[job.koid]
        known = t.known > 0 or t.unknown == 0
        return TaskRow(
            kind="j",
            depth=depth,
            koid=job.koid,
            parent_koid=job.parent_koid,
            name=job.name,
            pss_bytes=t.pss if known else None,
            private_bytes=t.private if known else None,
            swap_bytes=t.swap if t.swap_known else None,
            state=job.state,
            unknown_processes=t.unknown,
            job=job,
        )

    def walk(
        self,
        root_koid: int | None = None,
        threads: bool = False,
        sort: str = "koid",
        processes: bool = True,
    ) -> Iterator[TaskRow]:
        """Rows in walk order from ``root_koid`` (default: every root job)."""
        if root_koid is None:
            starts = self.roots
        else:
            starts = [self.jobs[root_koid]]
        for start in starts:
            yield from self._walk_job(start, 0, threads, sort, processes)

    def _walk_job(
        self, job: Job, depth: int, threads: bool, sort: str, processes: bool
    ) -> Iterator[TaskRow]:
        yield self.job_row(job, depth)
        if processes:
            for p in _sorted_processes(self.job_processes.get(job.koid, ()), sort):
                yield process_row(p, depth + 1)
                if threads:
                    for t in p.threads:
                        yield TaskRow(
                            kind="t",
                            depth=depth + 2,
                            koid=t.koid,
                            parent_koid=p.koid,
                            name=t.name,
                            state=t.state,
                            thread=t,
                        )
        children = self.child_jobs.get(job.koid, [])
        for child in self._sorted_jobs(children, sort):
            yield from self._walk_job(child, depth + 1, threads, sort, processes)

    def _sorted_jobs(self, jobs: list[Job], sort: str) -> list[Job]:
        if sort == "pss":
            return sorted(jobs, key=lambda j: (-(self._totals[j.koid].pss), j.koid))
        if sort == "private":
            return sorted(jobs, key=lambda j: (-(self._totals[j.koid].private), j.koid))
        if sort == "name":
            return sorted(jobs, key=lambda j: (j.name, j.koid))
        return sorted(jobs, key=lambda j: j.koid)


def process_row(p: Process, depth: int) -> TaskRow:
    m = p.memory
    return TaskRow(
        kind="p",
        depth=depth,
        koid=p.koid,
        parent_koid=p.job_koid,
        name=p.display_name,
        pss_bytes=m.pss_bytes if m else None,
        private_bytes=m.private_bytes if m else None,
        shared_bytes=m.shared_bytes if m else None,
        swap_bytes=m.swap_bytes if m else None,
        rss_bytes=m.rss_bytes if m else None,
        process=p,
    )


def _sorted_processes(procs: Iterable[Process], sort: str) -> list[Process]:
    def mem(p: Process, attr: str) -> int:
        v = getattr(p.memory, attr, None) if p.memory else None
        return -1 if v is None else v

    if sort == "pss":
        return sorted(procs, key=lambda p: (-mem(p, "pss_bytes"), p.koid))
    if sort == "private":
        return sorted(procs, key=lambda p: (-mem(p, "private_bytes"), p.koid))
    if sort == "name":
        return sorted(procs, key=lambda p: (p.display_name, p.koid))
    return sorted(procs, key=lambda p: p.koid)


def canonical_jobs(jobs: dict[int, Job]) -> tuple[Job, ...]:
    """Jobs, parents first, by depth then koid (the live collector's order)."""
    depth: dict[int, int] = {}

    def depth_of(koid: int) -> int:
        seen = []
        k = koid
        while k in jobs and k not in depth and k not in seen:
            seen.append(k)
            k = jobs[k].parent_koid
        d = depth.get(k, -1) if k in jobs else -1
        for s in reversed(seen):
            d += 1
            depth[s] = d
        return depth[koid]

    return tuple(sorted(jobs.values(), key=lambda j: (depth_of(j.koid), j.koid)))
