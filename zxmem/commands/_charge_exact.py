"""``ps --explain KOID --exact``: the charged-elsewhere term, page by page.

For every process at or below the job, every present page of every mapping
(``/proc/PID/pagemap``) adds ``PAGE_SIZE / mapcount`` (``/proc/kpagecount``)
— the share smaps' ``Pss`` gives it — to the term when ``/proc/kpagecgroup``
says the page is charged to a memory cgroup outside the job's subtree (or to
none).  The zero page, which ``Pss`` leaves out, is skipped
(``/proc/kpageflags`` bit ``ZERO_PAGE``).  Root only: PFNs are hidden from
everyone else.

The subtree is the job and its sub-jobs, i.e. the cgroups below it that hold
a process; a page charged to an empty child cgroup counts as elsewhere.
"""

from __future__ import annotations

import argparse
import os
import struct

from zxmem.charge import job_processes
from zxmem.commands import common
from zxmem.errors import ZxmemError
from zxmem.sources import pagemap

_PRESENT = 1 << 63
_PFN_MASK = (1 << 55) - 1
_ZERO_PAGE_BIT = 1 << 24
_PAGE = os.sysconf("SC_PAGE_SIZE")


def _subtree_koids(tree, koid: int) -> set[int]:
    out = set()
    stack = [koid]
    while stack:
        k = stack.pop()
        out.add(k)
        stack.extend(j.koid for j in tree.child_jobs.get(k, ()))
    return out


def _read_words(fd: int, pfns: list[int]) -> dict[int, int]:
    """8-byte words at ``pfn * 8`` for sorted, unique ``pfns``, read in runs."""
    out: dict[int, int] = {}
    i = 0
    while i < len(pfns):
        j = i
        while j + 1 < len(pfns) and pfns[j + 1] == pfns[j] + 1 and j - i < 4095:
            j += 1
        n = j - i + 1
        data = os.pread(fd, 8 * n, pfns[i] * 8)
        for k, (w,) in enumerate(struct.iter_unpack("<Q", data[: 8 * (len(data) // 8)])):
            out[pfns[i] + k] = w
        i = j + 1
    return out


def charged_elsewhere(tree, koid: int, args: argparse.Namespace, env) -> int:
    """Bytes of PSS that job ``koid``'s processes map from pages charged elsewhere."""
    root = common.proc_root(args, env)
    inside = _subtree_koids(tree, koid)
    per_process: list[list[int]] = []
    for proc in job_processes(tree, koid):
        try:
            with open(f"{root}/{proc.koid}/maps", "rb") as f:
                ranges = pagemap.vma_ranges(f.read())
            fd = os.open(f"{root}/{proc.koid}/pagemap", os.O_RDONLY | os.O_CLOEXEC)
        except FileNotFoundError:
            continue  # exited since the scan: its PSS is gone from the sum too
        except OSError as exc:
            raise ZxmemError(f"--exact: cannot read {root}/{proc.koid}/pagemap: "
                             f"{exc.strerror}") from None
        pfns: list[int] = []
        hidden = 0
        try:
            for start, end in ranges:
                data = os.pread(fd, 8 * ((end - start) // _PAGE), 8 * (start // _PAGE))
                for (e,) in struct.iter_unpack("<Q", data):
                    if e & _PRESENT:
                        pfn = e & _PFN_MASK
                        if pfn:
                            pfns.append(pfn)
                        else:
                            hidden += 1
        except OSError:
            pass  # a range unmapped while read: its pages are no longer mapped
        finally:
            os.close(fd)
        if hidden and not pfns:
            raise ZxmemError("--exact: pagemap hides page frame numbers (needs root)")
        per_process.append(pfns)
    wanted = sorted({p for pfns in per_process for p in pfns})
    try:
        words = {}
        for name in ("kpagecount", "kpagecgroup", "kpageflags"):
            fd = os.open(f"{root}/{name}", os.O_RDONLY | os.O_CLOEXEC)
            try:
                words[name] = _read_words(fd, wanted)
            finally:
                os.close(fd)
    except OSError as exc:
        raise ZxmemError(f"--exact: cannot read {root}/kpagecgroup: {exc.strerror}") from None
    count, memcg, flags = words["kpagecount"], words["kpagecgroup"], words["kpageflags"]
    total = 0.0
    for pfns in per_process:
        for pfn in pfns:
            n = count.get(pfn, 0)
            if n <= 0 or flags.get(pfn, 0) & _ZERO_PAGE_BIT:
                continue
            if memcg.get(pfn, 0) not in inside:
                total += _PAGE / n
    return round(total)
