"""``k ps``: descriptors per process by kind, and the kernel memory each
process causes (page tables, kernel stacks).  Pure functions; no I/O.

Shape of Zircon's ``k zx ps`` (spec fuchsia-tools §8.3): the id in 7
columns, the total count in 4 and a colon, then one count per kind (the
first in 4 columns, the others in 3), then `` [name]``.  The Linux kinds
replace Zircon's handle types, and two size columns (natural-unit
``format_size``) are added before the name.
"""

from __future__ import annotations

from zxmem.sources.kernel import FD_KINDS, ProcessKernelUsage
from zxmem.textsafe import escape_terminal
from zxmem.units import format_size

LABELS = ("#fi", "#so", "#pi", "#ev", "#mf", "#tm", "#ep", "#??")

KEY = """\
id   : process id (PID)
#h   : total number of open file descriptors (/proc/PID/fd)
#fi  : files: paths, devices, named FIFOs, deleted files
#so  : sockets (socket:[inode])
#pi  : anonymous pipes (pipe:[inode])
#ev  : eventfds (anon_inode:[eventfd])
#mf  : memfds (/memfd:NAME)
#tm  : timerfds (anon_inode:[timerfd])
#ep  : epoll instances (anon_inode:[eventpoll])
#??  : all other kinds: signalfd, inotify, pidfd, io_uring, bpf, dma-buf, ...
pte  : page tables of the address space (VmPTE in /proc/PID/status; the
       top-level table, 4 KiB or 8 KiB with page-table isolation, is not in it)
kstk : kernel stacks: threads x THREAD_SIZE (16 KiB on x86_64 and arm64,
       vmalloc'ed with CONFIG_VMAP_STACK; counted in KernelStack)
"""


def _n(value: int | None, width: int) -> str:
    return f"{'-' if value is None else value:>{width}}"


def header() -> str:
    counts = " ".join(f"{label:>{4 if i == 0 else 3}}" for i, label in enumerate(LABELS))
    return f"{'id':>7} {'#h':>4}: {counts} {'pte':>6} {'kstk':>6} [name]"


def row(usage: ProcessKernelUsage) -> str:
    kinds = usage.fd_kinds
    counts = " ".join(
        _n(None if kinds is None else kinds[kind], 4 if i == 0 else 3)
        for i, kind in enumerate(FD_KINDS)
    )
    return (
        f"{usage.pid:>7} {_n(usage.fds, 4)}: {counts} "
        f"{format_size(usage.pte_bytes):>6} {format_size(usage.kstack_bytes):>6} "
        f"[{escape_terminal(usage.name)}]"
    )


def _sum(values) -> int | None:
    """Sum of the known values; None only when none is known."""
    known = [v for v in values if v is not None]
    return sum(known) if known else None


def totals(rows: list[ProcessKernelUsage]) -> dict:
    kinds = {k: _sum(r.fd_kinds[k] if r.fd_kinds is not None else None for r in rows)
             for k in FD_KINDS}
    return {
        "processes": len(rows),
        "fds": _sum(r.fds for r in rows),
        "fd_kinds": kinds,
        "threads": _sum(r.threads for r in rows),
        "pte_bytes": _sum(r.pte_bytes for r in rows),
        "kstack_bytes": _sum(r.kstack_bytes for r in rows),
        "unreadable": sum(1 for r in rows if r.fd_kinds is None),
    }


def render(
    rows: list[ProcessKernelUsage],
    meminfo: dict[str, int] | None = None,
    stack_size: int | None = None,
) -> str:
    """The table, a totals row, and the kernel memory summary.

    Totals add the known values; processes whose descriptors could not be
    read are counted separately (never as 0).
    """
    out = [header()]
    out.extend(row(r) for r in rows)
    t = totals(rows)
    counts = " ".join(
        _n(t["fd_kinds"][kind], 4 if i == 0 else 3) for i, kind in enumerate(FD_KINDS)
    )
    label = f"{t['processes']} processes"
    if t["unreadable"]:
        label += f", {t['unreadable']} with unreadable descriptors"
    out.append(
        f"{'total':>7} {_n(t['fds'], 4)}: {counts} "
        f"{format_size(t['pte_bytes']):>6} {format_size(t['kstack_bytes']):>6} [{label}]"
    )
    meminfo = meminfo or {}
    pte = f"page tables {format_size(t['pte_bytes'])} (sum of VmPTE"
    if "PageTables" in meminfo:
        pte += f"; PageTables {format_size(meminfo['PageTables'])} system-wide"
    pte += ")"
    stack = f"kernel stacks {format_size(t['kstack_bytes'])}"
    if t["threads"] is not None and stack_size:
        stack += f" ({t['threads']} threads x {format_size(stack_size)}"
        if "KernelStack" in meminfo:
            stack += f"; KernelStack {format_size(meminfo['KernelStack'])} system-wide"
        stack += ")"
    out.append(f"kernel memory these processes cause: {pte}, {stack}")
    return "\n".join(out) + "\n"


def to_json(
    rows: list[ProcessKernelUsage],
    meminfo: dict[str, int] | None,
    stack_size: int | None,
    notes: tuple[str, ...] = (),
) -> dict:
    return {
        "processes": [
            {
                "pid": r.pid,
                "name": r.name,
                "kernel_thread": r.kernel_thread,
                "threads": r.threads,
                "fds": r.fds,
                "fd_kinds": r.fd_kinds,
                "pte_bytes": r.pte_bytes,
                "kstack_bytes": r.kstack_bytes,
            }
            for r in rows
        ],
        "totals": totals(rows),
        "thread_stack_bytes": stack_size,
        "meminfo_bytes": {k: v for k, v in (meminfo or {}).items()
                          if k in ("PageTables", "SecPageTables", "KernelStack")},
        "notes": list(notes),
    }
