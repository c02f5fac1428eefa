"""``ps``: the task tree with PSS, PRIVATE and SHARED (spec fuchsia-tools §2.3).

Layout, one row per task::

    <TASK, left-justified to id_w> <PSS %7s> <PRIVATE %7s> [<SHARED %7s>] [<STATE %7s>] <NAME>

TASK is two spaces per depth, the type letter, ``:`` (``: `` in the late
style) and the koid; ``id_w`` is the widest TASK cell.  The header is printed
before and after the table.  Jobs leave SHARED blank; threads leave every size
blank and fill STATE.  Processes whose memory could not be read are left out
of the table (the CLI counts them on stderr); a job all of whose processes
are unreadable prints ``-``.

``--swap`` (a Linux extra) adds a SWAP column after SHARED.  Names are
escaped for the terminal and, when a width is given, cut to fit it.
"""

from __future__ import annotations

from collections.abc import Iterable

from zxmem import fields
from zxmem.record import Record
from zxmem.tasktree import TaskRow
from zxmem.textsafe import clean_text, escape_terminal, truncate_to_width
from zxmem.units import format_size

TYPE_CHECKING = False  # typing itself costs start-up
if TYPE_CHECKING:
    import re


class PsOptions(Record):
    jobs_only: bool = False  # -J
    threads: bool = False  # -T
    units: str | None = None  # --units letter; None = natural
    style: str = "classic"  # "classic" (Fuchsia's classic layout) or "late"
    swap: bool = False  # --swap
    cgroup: bool = False  # --cgroup: CHARGED LIMIT FILE KERNEL for jobs
    width: int | None = None  # terminal columns to fit NAME into; None = whole
    # Colour (a terminal's): sizes by magnitude; with ``previous`` (the
    # -d repeat mode, :func:`size_values` of the table before) the sizes
    # that changed since, grown red and shrunk green, the rest plain.
    color: bool = False
    previous: dict | None = None
    # format_size rounding: True = the 2020+ exact rule (default); False = the
    # classic rule the seed's sample table was printed with (spec §1.2, V1).
    exact: bool = True


def _columns(opts: PsOptions) -> list[str]:
    # Headers come from the field table (zxmem.fields), as do the help texts.
    cols = [fields.header("pss_bytes"), fields.header("private_bytes")]
    if not opts.jobs_only or opts.threads:
        cols.append(fields.header("shared_bytes"))
    if opts.swap:
        cols.append(fields.header("swap_bytes"))
    if opts.cgroup:
        cols.extend(fields.header(n) for n in _CGROUP_COLUMNS)
    if opts.style == "late" or opts.threads:
        cols.append("STATE")
    return cols


# ``--cgroup`` columns, from the job's cgroup files (blank for processes).
_CGROUP_COLUMNS = ("charged_bytes", "limit_bytes", "file_bytes", "kernel_bytes")
_CGROUP_HEADERS = {fields.header(n): n for n in _CGROUP_COLUMNS}


def cgroup_value(job, name: str) -> int | str | None:
    """A ``--cgroup`` column's value for ``job``: bytes, "max", or None (unknown)."""
    cg = job.cgroup if job is not None else None
    if cg is None:
        return None
    if name == "file_bytes":
        if cg.stat is None:
            return None
        return cg.stat.get("total_cache" if cg.version == "v1" else "file")
    return getattr(cg, name)


# The job --jobs=user puts above the users' jobs (zxmem.sources.cgroups
# USER_ROOT_JOB_KOID, 2**32 - 1, a koid no UID has): printed as "j:*", its
# name says "users"; --json keeps the number.
USER_ROOT_JOB_KOID = 0xFFFFFFFF


def task_cell(row: TaskRow, style: str) -> str:
    sep = ": " if style == "late" else ":"
    koid: int | str = row.koid
    if row.kind == "j" and row.koid == USER_ROOT_JOB_KOID and row.job is not None \
            and not row.job.path and not row.job.parent_koid:
        koid = "*"
    return f"{'  ' * row.depth}{row.kind}{sep}{koid}"


def visible_rows(rows: Iterable[TaskRow], opts: PsOptions) -> list[TaskRow]:
    """The rows the table shows: jobs, readable processes, their threads."""
    out: list[TaskRow] = []
    hidden: set[int] = set()
    for r in rows:
        if r.kind == "p":
            if opts.jobs_only or r.pss_bytes is None:
                hidden.add(r.koid)
                continue
        elif r.kind == "t":
            if opts.jobs_only or r.parent_koid in hidden:
                continue
        out.append(r)
    return out


def render(rows: Iterable[TaskRow], opts: PsOptions) -> str:
    """The ps table as text (empty when there are no rows)."""
    shown = visible_rows(rows, opts)
    if not shown:
        return ""
    cols = _columns(opts)
    cells = [task_cell(r, opts.style) for r in shown]
    id_w = max(len(c) for c in cells)
    header = "TASK".ljust(id_w) + "".join(f" {c:>7}" for c in cols) + " NAME"
    prefix_len = id_w + 8 * len(cols) + 1
    lines = [header]
    exact = opts.exact

    def fmt(value, unit, upper_k):
        return format_size(value, unit, exact=exact, upper_k=upper_k)

    units = opts.units
    upper_k = units == "K"
    paint = _painter(opts, lambda v: fmt(v, units, upper_k)) if opts.color else None
    for r, cell in zip(shown, cells, strict=True):
        values = []
        for c in cols:
            if c == "PSS":
                v = _size(r.pss_bytes, r.kind, units, upper_k, fmt)
            elif c == "PRIVATE":
                v = _size(r.private_bytes, r.kind, units, upper_k, fmt)
            elif c == "SHARED":
                v = _size(r.shared_bytes, r.kind, units, upper_k, fmt) if r.kind == "p" else ""
            elif c == "SWAP":
                v = _size(r.swap_bytes, r.kind, units, upper_k, fmt)
            elif c in _CGROUP_HEADERS:
                v = ""
                if r.kind == "j":
                    cv = cgroup_value(r.job, _CGROUP_HEADERS[c])
                    v = cv if isinstance(cv, str) else fmt(cv, units, upper_k)
            else:  # STATE
                v = r.state
            if paint is not None and c in _SIZE_FIELDS and v:
                values.append(paint(r, c, f"{v:>7}"))
            else:
                values.append(f"{v:>7}")
        name = escape_terminal(r.name)
        mark = partial_mark(r)
        if opts.width is not None:
            name = truncate_to_width(name, max(8, opts.width - prefix_len - len(mark)))
        name += mark
        lines.append(cell.ljust(id_w) + " " + " ".join(values) + " " + name)
    lines.append(header)
    return "\n".join(lines) + "\n"


# The columns colour applies to, and the row field each shows.
_SIZE_FIELDS = {"PSS": "pss_bytes", "PRIVATE": "private_bytes", "SHARED": "shared_bytes",
                "SWAP": "swap_bytes"}


def size_values(rows: Iterable[TaskRow]) -> dict:
    """{(kind, koid): (pss, private, shared, swap) bytes} of ``rows``: what
    the next table of the -d repeat mode compares with (``previous``)."""
    return {(r.kind, r.koid): (r.pss_bytes, r.private_bytes, r.shared_bytes, r.swap_bytes)
            for r in rows if r.kind != "t"}


def _painter(opts: PsOptions, text_of):
    """A function (row, column, padded cell) -> the cell coloured: by
    magnitude, or with ``opts.previous`` by its change since that table
    when the change shows (``text_of``, the cell's formatting, prints the
    two values differently: a few bytes under the rounding stay plain, as
    do a row not in that table and a value unknown then or now)."""
    from zxmem.views.terminal import cell as colour_cell
    from zxmem.views.terminal import change_color, size_color

    previous = opts.previous
    index = {c: i for i, c in enumerate(_SIZE_FIELDS)}

    def paint(row: TaskRow, column: str, text: str) -> str:
        value = getattr(row, _SIZE_FIELDS[column])
        shown = text.lstrip(" ")
        if previous is None:
            color = size_color(value)
        else:
            before = previous.get((row.kind, row.koid))
            old = before[index[column]] if before is not None else None
            color = None
            if value is not None and old is not None and text_of(old) != shown:
                color = change_color(value - old)
        return colour_cell(shown, len(text), color)

    return paint


def partial_mark(row: TaskRow) -> str:
    """What a job row says when its totals leave out unreadable processes."""
    if row.kind != "j" or not row.unknown_processes:
        return ""
    n = row.unknown_processes
    if row.pss_bytes is None:
        return f" [unknown: {n} unreadable]"
    return f" [partial: {n} unreadable]"


def _size(value: int | None, kind: str, units, upper_k, fmt) -> str:
    if kind == "t":
        return ""
    return fmt(value, units, upper_k)


def to_records(rows: Iterable[TaskRow]) -> list[dict]:
    """``ps --json`` records: Fuchsia's flat task records plus Linux fields.

    Shape: the Magenta-era ``ps --json`` (spec fuchsia-tools §5.5): ``id``,
    ``type``, ``parent``, ``name``; jobs carry their totals.  Every number is
    bytes; unknown is ``null``.  Linux extras: ``depth``, ``swap_bytes``,
    ``rss_bytes``, ``cmdline``, ``comm``, ``ppid``, ``uid``, ``state``,
    ``path`` (cgroup) and ``unknown_processes``; a job whose cgroup memory
    files were read has ``cgroup`` (:func:`zxmem.sources.cgmem.cgroup_to_json`).
    """
    out: list[dict] = []
    for r in rows:
        rec: dict = {"id": f"{r.kind}/{r.koid}", "type": r.kind, "koid": r.koid}
        if r.kind == "j":
            job = r.job
            rec["parent"] = f"j/{job.parent_koid}" if job and job.parent_koid else ""
            rec["name"] = r.name
            rec["depth"] = r.depth
            rec["pss_bytes"] = r.pss_bytes
            rec["private_bytes"] = r.private_bytes
            rec["swap_bytes"] = r.swap_bytes
            rec["path"] = job.path if job else ""
            rec["state"] = r.state
            rec["unknown_processes"] = r.unknown_processes
            if job is not None and job.cgroup is not None:
                from zxmem.sources.cgmem import cgroup_to_json

                rec["cgroup"] = cgroup_to_json(job.cgroup)
        elif r.kind == "p":
            p = r.process
            rec["parent"] = f"j/{r.parent_koid}"
            rec["name"] = r.name
            rec["depth"] = r.depth
            rec["pss_bytes"] = r.pss_bytes
            rec["private_bytes"] = r.private_bytes
            rec["shared_bytes"] = r.shared_bytes
            rec["swap_bytes"] = r.swap_bytes
            rec["rss_bytes"] = r.rss_bytes
            if p is not None:
                rec["comm"] = p.name
                rec["cmdline"] = list(p.cmdline) if p.cmdline is not None else None
                rec["ppid"] = p.ppid
                rec["uid"] = p.uid
                rec["state"] = p.state
                rec["kernel_thread"] = p.kernel_thread
                rec["num_threads"] = p.num_threads
        else:
            rec["parent"] = f"p/{r.parent_koid}"
            rec["name"] = r.name
            rec["depth"] = r.depth
            rec["state"] = r.state
        out.append(rec)
    return out


# Characters ``json`` leaves raw with ensure_ascii=False that a terminal may
# act on when the JSON is printed to one: DEL, C1 controls (U+009B is CSI),
# bidi overrides and zero-width or line-separator marks.  They can only occur
# inside JSON strings, where ``\uXXXX`` is an equivalent spelling.  A lone
# surrogate (which the model should never hold) is written as the text
# clean_text gives it, so the JSON never carries one.
# Compiled on first use: ``zxmem ps`` without --json never needs it.
_JSON_UNSAFE_CLASS = "[\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff\ud800-\udfff]"


def _json_escape(m: re.Match[str]) -> str:
    import json

    ch = m.group(0)
    if "\ud800" <= ch <= "\udfff":
        return json.dumps(clean_text(ch))[1:-1]
    return f"\\u{ord(ch):04x}"


def render_json(rows: Iterable[TaskRow], provenance: dict) -> str:
    import json
    import re

    doc = {"zxmem": "ps", "provenance": provenance, "tasks": to_records(rows)}
    text = json.dumps(doc, indent=1, ensure_ascii=False)
    return re.sub(_JSON_UNSAFE_CLASS, _json_escape, text) + "\n"
