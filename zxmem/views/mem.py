"""Printing VMO summaries as Fuchsia's ``mem`` does (spec fuchsia-tools §9.5).

Default (``PrintSummary``, sorted)::

    Time: <ns> VMO: <size> Free: <size>
    <name><<koid>> <sizes>
     <group> <sizes>

``<sizes>`` is one size when total == private, else ``private scaled
total``; sizes are ``mem``'s ``FormatSize`` (:func:`zxmem.units.
format_size_mem`: ``1.1K``, ``2K``, ``0B``).  Processes by private bytes,
largest first; a process's groups by private, then scaled (both largest
first), then name; groups whose total is 0 are not printed.  An unknown
kernel value prints as ``-``.

Unknowns (Linux: committed bytes zxmem could not read, e.g. a file's page
cache without privileges) are never counted as 0: a process or group line
whose sums leave out N such VMOs ends with `` (+N unknown)`` (such a group
is printed even when its known total is 0), and the kernel line does too
when its ``vmo`` remainder is unknown for that reason (its ``vmo`` line
then reads ``-``).  Without unknowns the output is exactly ``mem``'s.

CSV (``--output``)::

    <time_s>,<koid>,<name>,<private>,<scaled>,<total>

one row per process, the kernel row first, then snapshot order (``mem``
prints it unsorted); with a PID, that process's groups instead:
``<time_s>,<koid>,<group>,<private>,<scaled>,<total>`` (groups with total 0
skipped).  ``time_s`` is the capture's monotonic time in whole seconds, empty
when the source did not record one.  When some sums leave out VMOs of
unknown committed bytes, a last line ``# <what> leave out N VMOs whose
committed bytes are unknown (size S bytes)`` says so (no such line
otherwise).  Names are escaped for the terminal and
quoted (CSV) when they hold a comma or a quote.
"""

from __future__ import annotations

import csv
import io

from zxmem.model import Snapshot
from zxmem.summary import ProcessSummary, Sizes, Summary, sorted_groups, sorted_processes
from zxmem.textsafe import escape_terminal
from zxmem.units import format_size_mem


def _size(n: int | None) -> str:
    return "-" if n is None else format_size_mem(n)


def sizes_text(s: Sizes) -> str:
    if s.total_bytes == s.private_bytes:
        return format_size_mem(s.private_bytes)
    return (f"{format_size_mem(s.private_bytes)} {format_size_mem(s.scaled_bytes)} "
            f"{format_size_mem(s.total_bytes)}")


def _unknown_mark(n: int) -> str:
    return f" (+{n} unknown)" if n else ""


def unknown_csv_line(rows: str, n: int, size_bytes: int, unsized: int) -> str:
    """The CSV's last line when ``n`` VMOs are left out of ``rows``' sums."""
    if not n:
        return ""
    more = f", {unsized} more of unknown size" if unsized else ""
    return (f"# {rows} leave out {n} VMOs whose committed bytes are unknown "
            f"(size {size_bytes} bytes{more})\n")


def wall_time(snapshot: Snapshot, time_ns: int | None) -> float | None:
    """``time_ns`` (the capture's clock: on Linux nanoseconds since boot) as
    seconds since the epoch, or None when the snapshot cannot say.

    The snapshot's provenance holds both clocks of one moment: its UTC
    ``timestamp`` and ``capture_time_ns`` on the boot clock; ``time_ns`` is
    placed relative to that moment.  Fuchsia captures record no wall time.
    """
    p = snapshot.provenance
    if time_ns is None or p.timestamp is None or p.capture_time_ns is None:
        return None
    from datetime import datetime

    try:
        at = datetime.fromisoformat(p.timestamp.replace("Z", "+00:00"))
    except ValueError:
        return None
    if at.tzinfo is None:
        return None
    return at.timestamp() - (p.capture_time_ns - time_ns) / 1e9


def header(snapshot: Snapshot, time_ns: int | None, tz=None) -> str:
    """``Time: ... VMO: ... Free: ...``.  Where the wall-clock time of
    ``time_ns`` is known (:func:`wall_time`), it is printed as a local date
    and time (``tz``: a tzinfo, default the machine's zone) with the boot
    clock's seconds beside it; otherwise Fuchsia's raw nanoseconds."""
    k = snapshot.kernel
    vmo = None if k is None else k.vmo_bytes
    free = None if k is None else k.free_bytes
    wall = wall_time(snapshot, time_ns)
    if wall is not None and time_ns is not None:
        from datetime import datetime

        local = datetime.fromtimestamp(wall, tz).astimezone(tz)
        t = (f"{local.strftime('%Y-%m-%d %H:%M:%S %Z').rstrip()} "
             f"({time_ns / 1e9:.0f}s after boot)")
    else:
        t = "-" if time_ns is None else str(time_ns)
    return f"Time: {t} VMO: {_size(vmo)} Free: {_size(free)}\n"


def render_process(s: ProcessSummary) -> str:
    lines = [f"{escape_terminal(s.name)}<{s.koid}> {sizes_text(s.sizes)}"
             f"{_unknown_mark(s.unknown_vmos)}\n"]
    for name, g in sorted_groups(s):
        missing = s.unknown_groups.get(name, 0)
        if g.total_bytes == 0 and not missing:
            continue
        lines.append(f" {escape_terminal(name)} {sizes_text(g)}{_unknown_mark(missing)}\n")
    for name, missing in sorted(s.unknown_groups.items()):
        if name not in s.groups and missing:  # the kernel's vmo remainder
            lines.append(f" {escape_terminal(name)} -{_unknown_mark(missing)}\n")
    return "".join(lines)


def render_processes(summary: Summary) -> str:
    return "".join(render_process(s) for s in sorted_processes(summary))


def render(snapshot: Snapshot, summary: Summary, time_ns: int | None,
           pid: int | None = None) -> str:
    """The default ``mem`` output; with ``pid``, only that process's lines."""
    if pid is not None:
        s = summary.process(pid)
        return header(snapshot, time_ns) + ("" if s is None else render_process(s))
    return header(snapshot, time_ns) + render_processes(summary)


def render_csv(summary: Summary, time_ns: int | None, pid: int | None = None) -> str:
    t = "" if time_ns is None else str(time_ns // 1_000_000_000)
    buf = io.StringIO()
    w = csv.writer(buf, lineterminator="\n")
    if pid is not None:
        s = summary.process(pid)
        if s is not None:
            for name, g in sorted_groups(s):
                if g.total_bytes == 0 and not s.unknown_groups.get(name):
                    continue
                w.writerow([t, s.koid, escape_terminal(name), g.private_bytes,
                            g.scaled_bytes, g.total_bytes])
            partial = sum(1 for n in s.unknown_groups.values() if n)
            buf.write(unknown_csv_line(f"{partial} group rows", s.unknown_vmos,
                                       s.unknown_size_bytes, s.unknown_unsized))
        return buf.getvalue()
    for s in summary.processes:
        w.writerow([t, s.koid, escape_terminal(s.name), s.sizes.private_bytes,
                    s.sizes.scaled_bytes, s.sizes.total_bytes])
    partial = sum(1 for s in summary.processes if s.unknown_vmos)
    buf.write(unknown_csv_line(f"{partial} rows", summary.unknown_vmos,
                               summary.unknown_size_bytes, summary.unknown_unsized))
    return buf.getvalue()


def summary_json(summary: Summary) -> list[dict]:
    """Processes (kernel row included) with their groups, sizes in bytes."""

    def sizes(s: Sizes) -> dict:
        return {"private_bytes": s.private_bytes, "scaled_bytes": s.scaled_bytes,
                "total_bytes": s.total_bytes}

    return [
        {
            "koid": s.koid,
            "name": s.name,
            "kernel": s.kernel,
            **sizes(s.sizes),
            "groups": {name: sizes(g) for name, g in sorted_groups(s)},
            "vmos": list(s.vmo_koids),
            # VMOs left out of these sums: committed bytes unknown.
            "unknown_vmos": s.unknown_vmos,
            "unknown_groups": dict(s.unknown_groups),
        }
        for s in sorted_processes(summary)
    ]
