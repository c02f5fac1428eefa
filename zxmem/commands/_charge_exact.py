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

from zxmem.charge import job_processes
from zxmem.commands import common


def charged_elsewhere(tree, koid: int, args: argparse.Namespace, env) -> int:
    """Bytes of PSS that job ``koid``'s processes map from pages charged elsewhere."""
    from zxmem.collection import charge_pages
    from zxmem.exact_views import charged_elsewhere_bytes, subtree_koids

    root = common.proc_root(args, env)
    pages = charge_pages(root, [proc.koid for proc in job_processes(tree, koid)])
    return charged_elsewhere_bytes(pages, subtree_koids(tree.child_jobs, koid))
