"""``ps --explain JOB``: one job's charge reconciled with its processes' PSS.

One line per term, each with its sign, its exact byte count, the same in
Fuchsia's units, its name and the kernel numbers it comes from; the last
line is the charge.  The signed byte counts add up to the charge exactly
(the remainder line makes them); an unknown term prints ``-`` and then the
remainder is unknown too.
"""

from __future__ import annotations

import textwrap

from zxmem.charge import Reconciliation
from zxmem.textsafe import escape_terminal
from zxmem.units import format_size

# Sources go on their own line under each term's name, so rows fit 80 columns.
_INDENT = " " * 29


def render_explain(rec: Reconciliation, units: str | None = None) -> str:
    job = rec.job
    cg = job.cgroup
    version = cg.version if cg is not None else "?"
    charge_src = "memory.usage_in_bytes" if version == "v1" else "memory.current"
    lines = [f"j:{job.koid} {escape_terminal(job.name)}  cgroup {version} "
             f"{escape_terminal(job.path or '-')}"]

    def row(sign: str, value: int | None, name: str, source: str) -> str:
        b = "-" if value is None else str(value)
        head = f"  {sign} {b:>14} {format_size(value, units):>8}  {name}"
        return head + "\n" + "\n".join(textwrap.wrap(
            source, 80, initial_indent=_INDENT, subsequent_indent=_INDENT + "  "))

    for t in rec.terms:
        name = t.name
        if t.name == "PSS of its processes":
            name = f"PSS of its {rec.processes} processes"
        elif t.name == "charged elsewhere" and rec.estimate:
            name = "charged elsewhere (estimate)"
        lines.append(row("+" if t.sign > 0 else "-", t.value_bytes, name, t.source))
    lines.append(row("+", rec.remainder_bytes, "remainder",
                     "the charge minus the terms above: pages shared outside the job, "
                     "swap cache, per-CPU charge batches"))
    lines.append(row("=", rec.charged_bytes, "charged", charge_src))
    if rec.unknown_processes:
        lines.append(f"  ({rec.unknown_processes} processes below are unreadable: "
                     "their PSS is not in the sum)")
    if cg is None:
        lines.append("  (the cgroup's memory files could not be read)")
    elif cg.missing:
        lines.extend(textwrap.wrap("(not read: " + ", ".join(
            f"{escape_terminal(f)} {escape_terminal(why)}" for f, why in cg.missing) + ")",
            80, initial_indent="  ", subsequent_indent="   "))
    return "\n".join(lines) + "\n"
