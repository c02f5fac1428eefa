"""A job's charge reconciled with what its processes map (``ps --explain``).

A cgroup is charged (``memory.current``; v1 ``memory.usage_in_bytes``) for
its anonymous pages, the page cache it brought in, kernel memory allocated on
its behalf and (v2) socket buffers.  Its processes' PSS counts what they map,
wherever it is charged.  So::

    charge = PSS of its processes
           + page cache charged here that no process maps
           + kernel memory charged here
           + socket buffers charged here (v2)
           - mapped file pages charged to another cgroup
           + remainder

Every term but the last is read or derived from the kernel; the remainder is
what is left (PSS divides pages shared with processes outside the job,
anonymous pages not mapped (swap cache), the per-CPU charge batches of the
page counter) and is always printed, so nothing is hidden.

The terms, v2 (``memory.stat`` keys) / v1 (hierarchical ``total_*`` keys):

* unmapped cache = ``file - file_mapped`` / ``total_cache - total_mapped_file``;
* kernel = ``kernel`` (``memory.stat``) / ``memory.kmem.usage_in_bytes``;
* sock = ``sock`` (v2 only: v1 charges TCP buffers to a counter of its own);
* charged elsewhere: with ``exact`` page-level counts (from
  ``/proc/kpagecgroup``), the PSS of mapped pages whose memcg is another
  cgroup; otherwise the estimate ``Σ(Pss_File + Pss_Shmem) - file_mapped``
  (``total_mapped_file`` on v1), at least 0: file PSS beyond the mapped file
  pages charged here.  It is labelled an estimate.
"""

from __future__ import annotations

from dataclasses import dataclass

from zxmem.model import Job, MemoryCounts, Process
from zxmem.tasktree import TaskTree


@dataclass(frozen=True, slots=True)
class Term:
    name: str  # short label
    sign: int  # +1 or -1: how the term enters the sum
    value_bytes: int | None  # None: unknown (the file was not readable)
    source: str  # which kernel numbers it is made of


@dataclass(frozen=True, slots=True)
class Reconciliation:
    job: Job
    charged_bytes: int | None
    terms: tuple[Term, ...]
    remainder_bytes: int | None  # None when the charge or a term is unknown
    estimate: bool  # the charged-elsewhere term is an estimate
    processes: int  # processes whose PSS is summed
    unknown_processes: int  # processes below whose PSS is unknown


def job_processes(tree: TaskTree, koid: int) -> list[Process]:
    """Every process at or below job ``koid``."""
    out: list[Process] = []
    stack = [koid]
    while stack:
        k = stack.pop()
        out.extend(tree.job_processes.get(k, ()))
        stack.extend(j.koid for j in tree.child_jobs.get(k, ()))
    return out


def _elsewhere(exact_bytes: int | None, known: list[MemoryCounts], mapped_bytes: int | None,
               mapped_key: str) -> tuple[int | None, bool, str]:
    """The "charged elsewhere" term: its bytes, whether they are an estimate,
    and where they come from (``mapped_key``: memory.stat's mapped file key)."""
    if exact_bytes is not None:
        return exact_bytes, False, "PSS of mapped pages /proc/kpagecgroup puts in another memcg"
    file_pss: int | None = None
    file_bytes = [m.pss_file_bytes + (m.pss_shmem_bytes or 0)
                  for m in known if m.pss_file_bytes is not None]
    if known and len(file_bytes) == len(known):
        file_pss = sum(file_bytes)
    elsewhere = (max(0, file_pss - mapped_bytes)
                 if file_pss is not None and mapped_bytes is not None else None)
    return elsewhere, True, f"estimate: Σ(Pss_File+Pss_Shmem) - {mapped_key}, at least 0"


def reconcile(tree: TaskTree, koid: int,
              elsewhere_exact_bytes: int | None = None) -> Reconciliation:
    """The reconciliation of job ``koid``.

    ``elsewhere_exact_bytes``: the page-level "charged elsewhere" PSS (from
    ``/proc/kpagecgroup``) when measured; else the estimate is used.
    """
    job = tree.jobs[koid]
    cg = job.cgroup
    procs = job_processes(tree, koid)
    # The memory counts of the processes whose PSS is known.
    known = [p.memory for p in procs if p.memory is not None and p.memory.pss_bytes is not None]
    unknown = len(procs) - len(known)
    known_pss = [m.pss_bytes for m in known if m.pss_bytes is not None]
    pss = sum(known_pss) if known or not procs else None
    stat = cg.stat if cg is not None and cg.stat is not None else None
    v1 = cg is not None and cg.version == "v1"

    def key(name: str) -> int | None:
        if stat is None:
            return None
        return stat.get(("total_" + name) if v1 else name)

    file_key, mapped_key = ("cache", "mapped_file") if v1 else ("file", "file_mapped")
    file_b, mapped_b = key(file_key), key(mapped_key)
    unmapped = file_b - mapped_b if file_b is not None and mapped_b is not None else None

    elsewhere, estimate, elsewhere_src = _elsewhere(elsewhere_exact_bytes, known, mapped_b,
                                                    f"{'total_' if v1 else ''}{mapped_key}")

    terms = [
        Term("PSS of its processes", +1, pss, "Σ smaps_rollup Pss"),
        Term("page cache, unmapped", +1, unmapped,
             f"memory.stat {'total_' if v1 else ''}{file_key} - "
             f"{'total_' if v1 else ''}{mapped_key}"),
        Term("kernel memory", +1, cg.kernel_bytes if cg is not None else None,
             "memory.kmem.usage_in_bytes" if v1 else "memory.stat kernel"),
    ]
    if not v1:
        terms.append(Term("socket buffers", +1, key("sock"), "memory.stat sock"))
    terms.append(Term("charged elsewhere", -1, elsewhere, elsewhere_src))
    charged = cg.charged_bytes if cg is not None else None
    remainder = None
    signed = [t.sign * t.value_bytes for t in terms if t.value_bytes is not None]
    if charged is not None and len(signed) == len(terms):
        remainder = charged - sum(signed)
    return Reconciliation(job, charged, tuple(terms), remainder, estimate,
                          len(known), unknown)
