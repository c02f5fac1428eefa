"""Where ``zxmem top`` gets its snapshots: the live system (through
:func:`zxmem.collect`) or a history store, and a process's details.

No Textual here: the batch output (``zxmem top -b``) uses these too.
"""

from __future__ import annotations

import os
from typing import TYPE_CHECKING

from zxmem.errors import ZxmemError

if TYPE_CHECKING:
    import sqlite3

    from zxmem.collection import Plan
    from zxmem.model import Process, Snapshot
    from zxmem.views.top import Frame




def refresh_plan() -> Plan:
    """What each refresh reads: process totals (smaps_rollup; SWAP is its
    SwapPss, so no status file is read), the job tree with each cgroup's
    charge and limit, the kernel totals with PSI and the OOM counter."""
    from zxmem.collection import Plan

    return Plan(jobs="cgroup", cgroup_memory=True, cgroup_columns_only=True,
                kernel=True, pressure=True)


class Detail:
    """A process's memory objects and mappings, as text, or why not."""

    def __init__(self, title: str, vmos: str, vmaps: str) -> None:
        self.title = title
        self.vmos = vmos
        self.vmaps = vmaps


def _detail_text(snapshot: Snapshot, process: Process | None, pid: int,
                 stored: bool = False, missing: dict[str, str] | None = None) -> Detail:
    from zxmem.textsafe import escape_terminal
    from zxmem.views import vmaps, vmos

    if process is None:
        return Detail(f"pid {pid}", f"process {pid} is gone", "")
    title = f"pid {pid}  {escape_terminal(process.display_name)}"
    if process.vmo_refs is None:
        why = dict(snapshot.provenance.denied).get(f"maps:{pid}") or (
            (missing or {}).get("memory objects") or "not recorded"
            if stored else "not readable")
        objs = f"memory objects of {pid}: {why}\n"
    else:
        objs = vmos.render(process, snapshot)
    if process.mappings is None:
        why = dict(snapshot.provenance.denied).get(f"maps:{pid}") or (
            (missing or {}).get("mappings") or "not recorded" if stored else "not readable")
        maps = f"mappings of {pid}: {why}\n"
    else:
        maps = vmaps.render(process, snapshot)
    return Detail(title, objs, maps)


class LiveSource:
    """Refreshes from the live system through :func:`zxmem.collect`."""

    live = True

    def __init__(self, proc_root: str) -> None:
        self.proc_root = proc_root
        self.plan = refresh_plan()
        self.label = "live"

    def next(self) -> Snapshot:
        from zxmem.collection import collect

        try:
            return collect(self.plan, self.proc_root)
        except OSError as exc:
            raise ZxmemError(f"cannot read {self.proc_root}: {exc.strerror}") from None

    def detail(self, pid: int) -> Detail:
        from zxmem.collection import Plan, collect

        # Every process's maps (so #map and #shr count the whole system),
        # page counts (smaps) and regions for this one.
        plan = Plan(memory=False, jobs="none", objects=True, detail_pids=(pid,), regions=True)
        try:
            snapshot = collect(plan, self.proc_root)
        except OSError as exc:
            return Detail(f"pid {pid}", f"cannot read {self.proc_root}: {exc.strerror}", "")
        return _detail_text(snapshot, snapshot.process(pid), pid)

    def close(self) -> None:
        pass


class StoreSource:
    """Steps through the samples of a history store."""

    live = False

    def __init__(self, src: str, now_s: float) -> None:
        from zxmem.store import is_store_file, split_selector
        from zxmem.store.reader import samples, select
        from zxmem.store.schema import open_store

        base, selector = split_selector(src)
        if not is_store_file(base):
            raise ZxmemError(f"{src}: not a history store (zxmem record writes one)")
        self.name = base
        self.conn: sqlite3.Connection = open_store(base, create=False, readonly=True)
        self.numbers = [s.n for s in samples(self.conn)]
        if not self.numbers:
            raise ZxmemError(f"{base}: the store holds no samples yet")
        self.index = self.numbers.index(select(self.conn, selector or "first", now_s, base))
        self.now_s = now_s
        self._cache: dict[int, Snapshot] = {}

    @property
    def label(self) -> str:
        return (f"{os.path.basename(self.name)} sample {self.numbers[self.index]} "
                f"({self.index + 1}/{len(self.numbers)})")

    def sample(self, index: int) -> Snapshot:
        from zxmem.store.reader import read_sample

        n = self.numbers[index]
        if n not in self._cache:
            if len(self._cache) > 8:
                self._cache.clear()
            try:
                self._cache[n] = read_sample(self.conn, n, self.name)
            except ZxmemError:
                raise
            except Exception as exc:  # sqlite3.Error, a corrupt row
                raise ZxmemError(f"{self.name}: cannot read sample {n}: {exc}") from None
        return self._cache[n]

    def frames_at(self, index: int) -> list[Snapshot]:
        """The samples a frame at ``index`` is computed from: the first, the
        previous and this one (the changes are since the first and the
        previous sample)."""
        picks = sorted({0, max(0, index - 1), index})
        return [self.sample(i) for i in picks]

    def step(self, delta: int) -> bool:
        index = min(max(0, self.index + delta), len(self.numbers) - 1)
        moved = index != self.index
        self.index = index
        return moved

    def jump(self, selector: str) -> None:
        from zxmem.store.reader import select

        self.index = self.numbers.index(select(self.conn, selector, self.now_s, self.name))

    def at_end(self) -> bool:
        return self.index >= len(self.numbers) - 1

    def detail(self, pid: int) -> Detail:
        """The process's objects and mappings in the current sample (an
        objects sample holds both: its mappings are read for this process
        only), or why the sample has none and which samples nearest it do."""
        from zxmem.store.reader import no_mappings_reason, with_mappings

        n = self.numbers[self.index]
        snapshot = self.sample(self.index)
        try:
            snapshot = with_mappings(self.conn, n, snapshot, (pid,), self.name)
            missing = {what: reason for what in ("mappings", "memory objects")
                       if (reason := no_mappings_reason(self.conn, n, what)) is not None}
        except ZxmemError:
            raise
        except Exception as exc:  # sqlite3.Error, a corrupt row
            raise ZxmemError(f"{self.name}: cannot read sample {n}: {exc}") from None
        return _detail_text(snapshot, snapshot.process(pid), pid, stored=True, missing=missing)

    def close(self) -> None:
        self.conn.close()


def history_frame(source: StoreSource) -> Frame:
    """The frame of the store's current sample (changes since its first
    sample and since the previous one)."""
    from zxmem.views.top import History

    history = History()
    frame = None
    for snap in source.frames_at(source.index):
        frame = history.update(snap)
    assert frame is not None
    return frame
