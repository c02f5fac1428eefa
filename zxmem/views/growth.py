"""``zxmem growth``: the table of what grew.  Pure functions of
:class:`zxmem.growth.Suspect` rows; no I/O.

One line per suspect, most suspicious first (a title line, then the
columns below), and under a suspect process up to five objects that grew:
their rate, size, kind (``hidden``: held only by a descriptor) and name.

``RATE`` is the Theil–Sen slope of the signal (USS, plus the hidden objects
only the process holds; a job's sum of its processes' USS, else PSS, else
charge; an object's committed bytes), ``FIT`` the r² of that line,
``RISE`` the fraction of time windows whose lowest value rose, ``SINCE``
the start of the growth, ``HIGH``/``AT`` the high-water mark and when,
``LAST`` the newest value, ``PSS/h``/``CHG/h`` the same slope of PSS and of
the cgroup charge (``-``: not known or not applicable), ``ID`` the PID (a
job's or a file object's koid, an anonymous object's owner PID).  Times are
UTC, ``HH:MM:SS`` when the period is within one day.
Verdicts: ``LEAK`` (steady growth), else the pattern that rules a leak out
(``sawtooth``, ``plateau``, ``step``, ``irregular``, ``small``: steady but
grew less than the threshold, ``short``: seen too briefly, ``gone``: ended
before the period).  Names are escaped for the terminal.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timezone

from zxmem.growth import Suspect
from zxmem.textsafe import escape_terminal, truncate_to_width
from zxmem.units import format_size

HEADER = (f"{'#':>3} {'VERDICT':<9} {'RATE/h':>7} {'RATE/s':>7} {'FIT':>4} {'RISE':>4} "
          f"{'SINCE':<8} {'HIGH':>7} {'AT':<8} {'LAST':>7} {'PSS/h':>7} {'CHG/h':>7} "
          f"{'ID':>7} NAME")

OBJECTS_SHOWN = 5


def _utc(ns: int) -> datetime:
    return datetime.fromtimestamp(ns / 1e9, tz=timezone.utc)


def clock(ns: int, same_day: bool) -> str:
    """``HH:MM:SS`` (UTC) when the period is within one day, else
    ``MM-DDTHH:MM``."""
    t = _utc(ns)
    return t.strftime("%H:%M:%S") if same_day else t.strftime("%m-%dT%H:%M")


def duration(seconds: float) -> str:
    s = int(round(seconds))
    if s < 60:
        return f"{s}s"
    if s < 3600:
        return f"{s // 60}m{s % 60:02d}s"
    if s < 86400:
        return f"{s // 3600}h{s % 3600 // 60:02d}m"
    return f"{s // 86400}d{s % 86400 // 3600:02d}h"


def rate(bytes_per_unit: float | None) -> str:
    """A rate as a size (the unit of time is in the column's name); ``-``
    unknown."""
    if bytes_per_unit is None:
        return "-"
    return format_size(int(round(bytes_per_unit)))


def identity(s: Suspect) -> str:
    i = s.identity
    for key in ("pid", "koid", "owner_pid"):
        if i.get(key) is not None:
            return str(i[key])
    return "-"


def verdict(s: Suspect) -> str:
    return "LEAK" if s.leak else s.pattern


def render(suspects: Sequence[Suspect], *, first_ns: int, last_ns: int, samples: int,
           by: str, limit: int | None = 20, width: int = 160) -> str:
    """The table (``limit`` None: every row), ending in a newline."""
    same_day = _utc(first_ns).date() == _utc(last_ns).date()
    end = _utc(last_ns).strftime("%H:%M:%S" if same_day else "%Y-%m-%d %H:%M:%S")
    head = (f"growth {_utc(first_ns).strftime('%Y-%m-%d %H:%M:%S')} to {end} UTC "
            f"({samples} samples, {duration((last_ns - first_ns) / 1e9)}), by {by}")
    lines = [head]
    shown = list(suspects) if limit is None else list(suspects)[:limit]
    if not shown:
        lines.append("nothing grew")
        return "\n".join(lines) + "\n"
    lines.append(HEADER)
    for k, s in enumerate(shown, 1):
        fit = "-" if s.fit_r2 is None else f"{s.fit_r2:.2f}"
        row = (f"{k:>3} {verdict(s):<9} {rate(s.rate_bytes_per_hour):>7} "
               f"{rate(s.rate_bytes_per_second):>7} {fit:>4} {s.rising_fraction:>4.0%} "
               f"{clock(s.growth_start_ns, same_day):<8} {format_size(s.high_water_bytes):>7} "
               f"{clock(s.high_water_ns, same_day):<8} {format_size(s.last_bytes):>7} "
               f"{rate(_per_hour(s.pss_rate_bytes_per_second)):>7} "
               f"{rate(_per_hour(s.charge_rate_bytes_per_second)):>7} {identity(s):>7} ")
        lines.append(row + truncate_to_width(escape_terminal(s.name),
                                             max(8, width - len(row))))
        for o in s.objects[:OBJECTS_SHOWN]:
            kind = (o.kind or "?") + (" hidden" if o.hidden else "")
            obj = (f"{'':>14}{'+' + rate(o.rate_bytes_per_hour) + '/h':>10} "
                   f"{format_size(o.last_bytes):>8}  {kind:<13} ")
            lines.append(obj + truncate_to_width(escape_terminal(o.name),
                                                 max(8, width - len(obj))))
        if len(s.objects) > OBJECTS_SHOWN:
            lines.append(f"{'':>14}... {len(s.objects) - OBJECTS_SHOWN} more objects grew")
    if limit is not None and len(suspects) > limit:
        lines.append(f"... {len(suspects) - limit} more grew (--limit 0 shows all)")
    return "\n".join(lines) + "\n"


def _per_hour(per_second: float | None) -> float | None:
    return None if per_second is None else per_second * 3600.0
