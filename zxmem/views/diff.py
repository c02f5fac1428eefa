"""What changed between two snapshots: jobs, processes and memory objects.

The pure part of ``zxmem diff`` (and of the report page's diffs of two
moments): :func:`changes` compares two snapshots and lists what grew, shrank,
appeared or vanished, largest change first.  Matching rules are the ones
``zxmem diff --help`` describes.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Change:
    kind: str  # "job", "process", "object"
    key: str  # what identifies it, as text (j:KOID, p:PID, o:KOID, PID:NAME)
    name: str  # raw; escaped when printed
    before_bytes: int | None  # None: not in A
    after_bytes: int | None  # None: not in B
    # Jobs: what the cgroup is charged in A and B (None: not known there).
    before_charged_bytes: int | None = None
    after_charged_bytes: int | None = None

    @property
    def charged_change_bytes(self) -> int | None:
        """The change of the charge, None unless both snapshots know it."""
        if self.before_charged_bytes is None or self.after_charged_bytes is None:
            return None
        return self.after_charged_bytes - self.before_charged_bytes

    @property
    def change_bytes(self) -> int:
        return (self.after_bytes or 0) - (self.before_bytes or 0)

    @property
    def status(self) -> str:
        if self.before_bytes is None:
            return "new"
        if self.after_bytes is None:
            return "gone"
        return "grew" if self.change_bytes > 0 else "shrank" if self.change_bytes else "same"


def _jobs(snapshot) -> dict:
    from zxmem.tasktree import TaskTree

    tree = TaskTree(snapshot)
    out = {}
    for job in snapshot.jobs:
        row = tree.job_row(job, 0)
        if row.pss_bytes is not None:
            label = job.path or job.name
            charged = job.charged_bytes
            if charged is None and job.cgroup is not None:
                charged = job.cgroup.charged_bytes
            out[(job.koid, job.path)] = (f"j:{job.koid}", label, row.pss_bytes, charged)
    return out


def _processes(snapshot) -> dict:
    out = {}
    for p in snapshot.processes:
        m = p.memory
        if m is not None and m.pss_bytes is not None:
            out[snapshot.identity(p)] = (f"p:{p.koid}", p.display_name, m.pss_bytes)
    return out


def _objects(snapshot) -> dict:
    from zxmem.model import INODE_KOID_BASE

    # Who owns each object: the first process that reaches it (its identity
    # and label, made once per process).
    owner: dict[int, tuple[Any, str]] = {}
    for p in snapshot.processes:
        if not p.vmo_refs:
            continue
        mine = (snapshot.identity(p), f"p:{p.koid}")
        for ref in p.vmo_refs:
            owner.setdefault(ref.vmo_koid, mine)
    out: dict = {}
    nobody = (None, "-")
    for koid, v in snapshot.vmos.items():
        if v.committed_bytes is None:
            continue
        if koid >= INODE_KOID_BASE:
            out[("koid", koid)] = (f"o:{koid}", v.path or v.name, v.committed_bytes)
            continue
        ident, label = owner.get(koid, nobody)
        key = ("anon", ident, v.kind, v.name)
        prev = out.get(key)
        total = v.committed_bytes + (prev[2] if prev else 0)
        out[key] = (label, v.name, total)
    return out


def index(snapshot, kind: str) -> dict:
    """What :func:`compare` compares of one snapshot: key -> (label, name, bytes[, charged])."""
    return {"job": _jobs, "process": _processes, "object": _objects}[kind](snapshot)


def compare(before: dict, after: dict, kind: str, minimum: int = 0) -> list[Change]:
    """The changes between two :func:`index` results of ``kind``, largest first."""
    out = []
    for key in before.keys() | after.keys():
        x, y = before.get(key), after.get(key)
        either = y or x
        assert either is not None  # the key is in one of them
        label, name = either[0], either[1]
        c = Change(kind, label, name, x[2] if x else None, y[2] if y else None,
                   x[3] if x and len(x) > 3 else None, y[3] if y and len(y) > 3 else None)
        delta = max(abs(c.change_bytes), abs(c.charged_change_bytes or 0))
        if (c.status == "same" and not c.charged_change_bytes) or delta < minimum:
            continue
        out.append(c)
    # Status last: a PID reused by a process of the same name and size is
    # one line gone and one new, in this order whatever the sets' order.
    out.sort(key=lambda c: (-abs(c.change_bytes), c.key, c.name, c.status))
    return out


def changes(a, b, kind: str, minimum: int = 0) -> list[Change]:
    """The changes of one kind between snapshots ``a`` and ``b``, largest first."""
    return compare(index(a, kind), index(b, kind), kind, minimum)
