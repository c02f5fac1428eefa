"""``kstats`` reports: the memory lines (``-m``), the CPU table (``-c``), the
reconciliation of the memory columns with ``MemTotal`` (``--explain``) and
their JSON form.  Pure functions of already read counters; no I/O.

Layouts (spec fuchsia-tools §7):

* classic (Fuchsia's classic layout, default): seven labels ``total free VMOs kheap kfree
  wired mmu``, each right-aligned in ``80 // 7 − 1 = 10`` columns and
  separated by one space; the values line has the same shape.
* late (``--style=late``): nine labels starting with ``mem total`` and
  ending ``ipc other`` in ``80 // 8 − 1 = 9`` columns; every value is
  followed by one space, so the values line ends in a space (§7.3).

Values are ``format_size`` with the unit fixed to ``M``; an unknown value
prints ``-``.
"""

from __future__ import annotations

import time
from dataclasses import dataclass

from zxmem.model import KernelStats
from zxmem.sources.kernel import CpuCounters, ProcStat
from zxmem.units import format_size

CLASSIC_LABELS = ("total", "free", "VMOs", "kheap", "kfree", "wired", "mmu")
LATE_LABELS = ("mem total", "free", "VMOs", "kheap", "kfree", "wired", "mmu", "ipc", "other")
STYLES = ("classic", "late")


def iso_timestamp(epoch_seconds: float) -> str:
    """``YYYY-MM-DDTHH:MM:SS.mmmZ`` in UTC, milliseconds rounded."""
    millis = int(round(epoch_seconds * 1000))
    seconds, ms = divmod(millis, 1000)
    return time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(seconds)) + f".{ms:03d}Z"


def timestamp_line(epoch_seconds: float) -> str:
    """``--- YYYY-MM-DDTHH:MM:SS.mmmZ ---`` (§7.2)."""
    return f"--- {iso_timestamp(epoch_seconds)} ---"


def kheap_bytes(stats: KernelStats) -> int | None:
    """The kheap column: heap pages minus free slab slots.

    When kfree is unknown the column shows the whole heap (kfree included);
    the command says so on stderr.
    """
    if stats.total_heap_bytes is None:
        return None
    return stats.total_heap_bytes - (stats.free_heap_bytes or 0)


def column_values(stats: KernelStats) -> tuple[int | None, ...]:
    """The nine late-era values, bytes, in column order."""
    return (
        stats.total_bytes,
        stats.free_bytes,
        stats.vmo_bytes,
        kheap_bytes(stats),
        stats.free_heap_bytes,
        stats.wired_bytes,
        stats.mmu_overhead_bytes,
        stats.ipc_bytes,
        stats.other_bytes,
    )


def render_memory(stats: KernelStats, style: str = "classic", unit: str = "M") -> str:
    """The two ``-m`` lines (header and values), each ending in a newline."""
    values = [format_size(v, unit) for v in column_values(stats)]
    if style == "late":
        width = 80 // 8 - 1
        header = " ".join(f"{label:>{width}}" for label in LATE_LABELS)
        line = "".join(f"{v:>{width}} " for v in values)
    else:
        width = 80 // 7 - 1
        header = " ".join(f"{label:>{width}}" for label in CLASSIC_LABELS)
        line = " ".join(f"{v:>{width}}" for v in values[: len(CLASSIC_LABELS)])
    return f"{header}\n{line}\n"


PRESSURE_LABELS = ("some10", "some60", "some300", "full10", "full60", "full300",
                   "oomkill", "majflt", "swpin", "swpout")


def render_pressure(system: dict) -> str:
    """The two ``--pressure`` lines (header and values, 80 columns).

    ``someN``/``fullN``: PSI of ``/proc/pressure/memory``, the percentage of
    time some / all non-idle tasks stalled on memory over the last 10, 60 and
    300 s; ``oomkill majflt swpin swpout``: ``/proc/vmstat`` ``oom_kill``,
    ``pgmajfault``, ``pswpin``, ``pswpout`` since boot.  ``-`` where the
    kernel gave none.  ``system``: :func:`zxmem.sources.cgmem.read_system_memory`.
    """
    psi = system.get("pressure") or {}
    vm = system.get("vmstat") or {}
    values: list[str] = []
    for kind in ("some", "full"):
        rec = psi.get(kind)
        for k in ("avg10", "avg60", "avg300"):
            values.append("-" if rec is None else f"{rec[k]:.2f}")
    for k in ("oom_kill", "pgmajfault", "pswpin", "pswpout"):
        values.append(str(vm[k]) if k in vm else "-")
    header = " ".join(f"{label:>7}" for label in PRESSURE_LABELS)
    line = " ".join(f"{v:>7}" for v in values)
    return f"{header}\n{line}\n"


# --------------------------------------------------------------------------
# --explain


@dataclass(frozen=True, slots=True)
class Term:
    column: str  # the kstats column the term belongs to ("" when none)
    name: str
    value_bytes: int | None
    note: str = ""


def reconciliation_terms(stats: KernelStats) -> list[Term]:
    """The non-overlapping terms whose sum is ``MemTotal`` (last: the remainder)."""
    m = stats.meminfo
    x = stats.extra
    terms = [Term("free", "MemFree", m.get("MemFree"))]
    terms.append(Term("VMOs", "Active", m.get("Active")))
    terms.append(Term("VMOs", "Inactive", m.get("Inactive")))
    if "Unevictable" in m:
        terms.append(Term("VMOs", "Unevictable", m.get("Unevictable")))
    hugetlb_note = "" if "Hugetlb" in m else "HugePages_Total × Hugepagesize"
    terms.append(Term("VMOs", "Hugetlb", x.get("hugetlb_bytes"), hugetlb_note))
    free_heap = stats.free_heap_bytes
    slab_note = (
        f"kfree {format_size(free_heap)} of it is free slots" if free_heap is not None
        else "kfree unknown (slabinfo unreadable)"
    )
    terms.append(Term("kheap", "Slab", m.get("Slab"), slab_note))
    vm_note = ""
    if x.get("vmalloc_used_bytes") is not None and x.get("vmalloc_used_bytes") != m.get(
        "VmallocUsed"
    ):
        vm_note = "from /proc/vmallocinfo pages="
    if x.get("vmalloc_used_bytes") is not None:
        terms.append(Term("kheap", "VmallocUsed", x.get("vmalloc_used_bytes"), vm_note))
    elif "VmallocUsed" in m:
        terms.append(Term("kheap", "VmallocUsed", m["VmallocUsed"],
                          "not computed by this kernel: vmalloc pages are in the remainder"))
    if "Percpu" in m:
        terms.append(Term("kheap", "Percpu", m.get("Percpu")))
    if x.get("kreclaimable_other_bytes") is not None:
        terms.append(
            Term("kheap", "KReclaimable - SReclaimable", x.get("kreclaimable_other_bytes"))
        )
    if "KernelStack" in m:
        in_vmalloc = x.get("kernel_stack_in_vmalloc")
        note = (
            f"KernelStack {format_size(m['KernelStack'])} is inside VmallocUsed "
            "(vmalloc'ed stacks)" if in_vmalloc else "thread stacks"
        )
        terms.append(Term("", "KernelStack (outside vmalloc)",
                          x.get("kernel_stack_apart_bytes"), note))
    terms.append(Term("mmu", "PageTables", m.get("PageTables")))
    if "SecPageTables" in m:
        terms.append(Term("mmu", "SecPageTables", m.get("SecPageTables")))
    for key, note in (("Zswap", "compressed swap pool"), ("Balloon", "given to the host"),
                      ("Unaccepted", "not yet accepted by the guest")):
        if key in m:
            terms.append(Term("", key, m[key], note))
    terms.append(Term("other", "remainder", stats.other_bytes,
                      "in no counter above: alloc_pages() users, drivers, dma-bufs"))
    return terms


def _kb(nbytes: int | None) -> str:
    if nbytes is None:
        return "?"
    # Whole kB are exact; anything else is rounded as format_size rounds.
    return format_size(nbytes, "k")[:-1]


def render_explain(stats: KernelStats) -> str:
    """How the columns and the rest of ``/proc/meminfo`` add up to MemTotal.

    Every term is printed in kB (meminfo's own unit, exact) and in M; the
    remainder (``other``) is printed explicitly, then the sum is checked.
    """
    return "\n".join(_explain_sum(stats) + [""] + _explain_outside(stats)) + "\n"


def _explain_sum(stats: KernelStats) -> list[str]:
    """The terms of MemTotal, their sum and whether it is MemTotal."""
    terms = reconciliation_terms(stats)
    lines = ["MemTotal, term by term (/proc/meminfo; kB = KiB):"]
    lines.append(f"  {'column':<7} {'term':<30} {'kB':>12} {'M':>9}  note")
    previous = None
    for t in terms:
        if not t.column:
            label = "-"
        elif t.column != previous:
            label = t.column
        else:
            label = ""
        previous = t.column
        lines.append(
            f"  {label:<7} {t.name:<30} {_kb(t.value_bytes):>12} "
            f"{format_size(t.value_bytes, 'M'):>9}  {t.note}".rstrip()
        )
    total = stats.total_bytes
    known = [t.value_bytes for t in terms if t.value_bytes is not None]
    lines.append(f"  {'':<7} {'-' * 30} {'-' * 12} {'-' * 9}")
    lines.append(
        f"  {'total':<7} {'MemTotal':<30} {_kb(total):>12} {format_size(total, 'M'):>9}"
    )
    if total is None or len(known) < len(terms):
        unknown = [t.name for t in terms if t.value_bytes is None]
        lines.append("  the terms cannot be checked against MemTotal: unknown "
                     + (", ".join(unknown) if unknown else "MemTotal"))
    else:
        diff = total - sum(known)
        verdict = "exactly" if diff == 0 else f"off by {_kb(diff)} kB"
        lines.append(f"  sum of the terms = {_kb(sum(known))} kB = MemTotal {verdict}")
    return lines


def _explain_outside(stats: KernelStats) -> list[str]:
    """wired, kfree, ipc and the LRU check: numbers outside the sum."""
    lines = ["not part of the sum:"]
    x = stats.extra
    phys = x.get("physical_bytes")
    if stats.wired_bytes is not None and phys is not None:
        lines.append(
            f"  wired   {_kb(phys)} kB System RAM (/proc/iomem) - MemTotal = "
            f"{_kb(stats.wired_bytes)} kB ({format_size(stats.wired_bytes, 'M')}): "
            "kernel image, memblock reservations, struct pages; outside MemTotal"
        )
    else:
        lines.append("  wired   unknown: no System RAM addresses in /proc/iomem (root only)")
    if stats.free_heap_bytes is not None:
        lines.append(
            f"  kfree   {_kb(stats.free_heap_bytes)} kB free object slots in /proc/slabinfo: "
            "part of Slab; kheap = Slab + VmallocUsed + Percpu + other reclaimable - kfree"
        )
    else:
        lines.append("  kfree   unknown: /proc/slabinfo not readable (root only); "
                     "kheap then includes it")
    if stats.ipc_bytes is not None:
        tcp, udp, frag = x.get("tcp_mem_pages"), x.get("udp_mem_pages"), x.get("frag_memory_bytes")
        lines.append(
            f"  ipc     {_kb(stats.ipc_bytes)} kB socket buffers (/proc/net/sockstat: TCP {tcp} "
            f"pages, UDP {udp} pages, FRAG {frag} bytes): slab objects and page "
            "fragments, already inside kheap or other"
        )
    else:
        lines.append("  ipc     unknown: /proc/net/sockstat not readable")
    m = stats.meminfo
    alt_keys = ("AnonPages", "Cached", "Buffers", "SwapCached")
    lru = x.get("lru_bytes")
    if lru is not None and all(k in m for k in alt_keys):
        alt = sum(m[k] for k in alt_keys)
        lines.append(
            f"  check   LRU (Active + Inactive + Unevictable) {_kb(lru)} kB vs "
            f"AnonPages + Cached + Buffers + SwapCached {_kb(alt)} kB (differ by "
            f"{_kb(lru - alt)} kB: pages in flight between lists)"
        )
    return lines


# --------------------------------------------------------------------------
# -c


CPU_HEADER = (
    "cpu    load sched (cs ylds pmpts irq_pmpts) excep pagef  sysc ints (hw  tmr tmr_cb) "
    "ipi (rs  gen)"
)


@dataclass(frozen=True, slots=True)
class CpuRow:
    """One row of the ``-c`` table: counts since the previous report."""

    label: str  # CPU number, or "all"
    load_hundredths: int | None  # load in hundredths of a percent
    cs: int | None = None
    ylds: int | None = None
    pmpts: int | None = None
    irq_pmpts: int | None = None
    excep: int | None = None
    pagef: int | None = None
    sysc: int | None = None
    hw: int | None = None
    tmr: int | None = None
    tmr_cb: int | None = None
    rs: int | None = None
    gen: int | None = None


def _delta(cur: int | None, prev: int | None) -> int | None:
    if cur is None:
        return None
    if prev is None:
        return cur
    return max(0, cur - prev)


def _load(busy_total: int, idle: int) -> int | None:
    if busy_total <= 0:
        return None
    return max(0, (busy_total - idle) * 10000 // busy_total)


def cpu_rows(
    cur_stat: ProcStat,
    cur: tuple[CpuCounters, ...],
    prev_stat: ProcStat | None = None,
    prev: tuple[CpuCounters, ...] | None = None,
) -> list[CpuRow]:
    """Per-CPU rows plus an ``all`` row; the first report (no ``prev``)
    shows totals since boot, as Zircon's does.

    Load is ``(Δtotal − Δidle) / Δtotal`` of ``/proc/stat`` ticks (idle time =
    idle + iowait).  Linux exports no per-CPU count of context switches,
    yields, preemptions, exceptions, page faults or syscalls, so those
    columns are unknown per CPU; the ``all`` row carries the system-wide
    context switch count (``ctxt``).
    """
    before = {c.cpu: c for c in prev or ()}
    rows = []
    sums = {"total": 0, "idle": 0}
    agg: dict[str, int | None] = dict.fromkeys(("hw", "tmr", "tmr_cb", "rs", "gen"), 0)
    for c in cur:
        p = before.get(c.cpu)
        dt = _delta(c.total_ticks, p.total_ticks if p else None) or 0
        di = _delta(c.idle_ticks, p.idle_ticks if p else None) or 0
        sums["total"] += dt
        sums["idle"] += di
        vals = {
            "hw": _delta(c.hw_irqs, p.hw_irqs if p else None),
            "tmr": _delta(c.timer_irqs, p.timer_irqs if p else None),
            "tmr_cb": _delta(c.timer_callbacks, p.timer_callbacks if p else None),
            "rs": _delta(c.resched_ipis, p.resched_ipis if p else None),
            "gen": _delta(c.generic_ipis, p.generic_ipis if p else None),
        }
        for k, v in vals.items():
            summed = agg[k]
            agg[k] = None if v is None or summed is None else summed + v
        rows.append(CpuRow(str(c.cpu), _load(dt, min(di, dt)), **vals))
    cs = _delta(cur_stat.ctxt, prev_stat.ctxt if prev_stat else None)
    rows.append(CpuRow("all", _load(sums["total"], min(sums["idle"], sums["total"])), cs=cs,
                       **agg))
    return rows


def _n(value: int | None, width: int) -> str:
    return f"{'-' if value is None else value:>{width}}"


def render_cpu(rows: list[CpuRow]) -> str:
    """The ``-c`` table: Zircon's header and column widths (§7.4)."""
    out = [CPU_HEADER]
    for r in rows:
        if r.load_hundredths is None:
            load = "    -  "
        else:
            load = f"{r.load_hundredths // 100:>3}.{r.load_hundredths % 100:02d}%"
        out.append(
            " ".join((
                f"{r.label:>3}", load, _n(r.cs, 9), _n(r.ylds, 4), _n(r.pmpts, 5),
                _n(r.irq_pmpts, 9), _n(r.excep, 6), _n(r.pagef, 5), _n(r.sysc, 5),
                _n(r.hw, 8), _n(r.tmr, 4), _n(r.tmr_cb, 6), _n(r.rs, 8), _n(r.gen, 4),
            ))
        )
    return "\n".join(out) + "\n"


# --------------------------------------------------------------------------
# --json


def memory_json(stats: KernelStats) -> dict:
    """The memory report as JSON: every column in bytes, plus the inputs."""
    return {
        "total_bytes": stats.total_bytes,
        "free_bytes": stats.free_bytes,
        "vmo_bytes": stats.vmo_bytes,
        "total_heap_bytes": stats.total_heap_bytes,
        "free_heap_bytes": stats.free_heap_bytes,
        "kheap_bytes": kheap_bytes(stats),
        "wired_bytes": stats.wired_bytes,
        "mmu_overhead_bytes": stats.mmu_overhead_bytes,
        "ipc_bytes": stats.ipc_bytes,
        "other_bytes": stats.other_bytes,
        "meminfo_bytes": dict(stats.meminfo),
        "inputs": dict(stats.extra),
    }


def cpu_json(rows: list[CpuRow]) -> list[dict]:
    out = []
    for r in rows:
        d = {"cpu": r.label, "load_percent": None if r.load_hundredths is None
             else r.load_hundredths / 100}
        for name in ("cs", "ylds", "pmpts", "irq_pmpts", "excep", "pagef", "sysc", "hw",
                     "tmr", "tmr_cb", "rs", "gen"):
            d[name] = getattr(r, name)
        out.append(d)
    return out
