"""Fuchsia's own files: memgraph JSON (lenient) and memory-monitor captures.

Both are pure functions of bytes or of already-parsed JSON; opening files
and telling the formats apart is :mod:`zxmem.sources.load`'s job.

memgraph (spec fuchsia-tools §5)
    Fuchsia's memgraph writes names without escaping them (§5.3), so a
    process called ``a"b`` or a VMO name with a backslash or a control byte
    makes the array invalid JSON.  :func:`repair_names` rewrites every
    ``"name": "…"`` value as a proper JSON string: the value ends at the
    first ``"`` that is followed by the next key of Fuchsia's fixed key order
    (``, "size_bytes":``, ``, "private_bytes":``, ``, "state":`` …) or by the
    end of the record.  Bytes that are not UTF-8 become ``\\xNN`` text, as
    in every other zxmem source.  Repair is tried only after a strict parse
    fails (spec §11), so a memgraph that is valid JSON is read as JSON.

capture (spec fuchsia-tools §9.1–9.2)
    ``{"Capture": {"Time", "Kernel", "Processes", "VmoNames", "Vmos"},
    "Buckets": […]}`` or the bare inner object (``mem --print``).  Tables
    start with a header row of field names (detected, not assumed); VMO names
    are indices into ``VmoNames``.  What the Snapshot gets:

    * kernel: the 9 ``zx_info_kmem_stats`` columns; the extended and zram
      fields go to ``KernelStats.extra`` with a ``_bytes`` suffix
      (``vmo_pager_total_bytes`` …), compression counters as
      ``compression_<field>``.
    * jobs: a capture records no job tree (§9.1), so every process sits in
      one root job, koid :data:`CAPTURE_ROOT_JOB_KOID`, named ``root``.
    * processes: every process in the capture, in koid order, its name also
      standing in for the command line (Fuchsia's ps shows the name);
      ``vmo_refs`` = its VMO list with ``via`` empty: a capture lists the
      VMOs a process reaches by handle or mapping without saying which
      (memgraph writes such references as Fuchsia's consumers expect; see
      :mod:`zxmem.memgraph`).  PSS, PRIVATE and SHARED come
      from the attribution that ``mem`` and ``ffx profile memory`` use
      (§9.3): a process is charged its VMOs and all their ancestors; a VMO
      charged to one process is private, otherwise each of its n processes
      gets ``committed // n``; PSS = private + the scaled shares, SHARED =
      total − private.  A process with no VMOs has 0 (it maps nothing).
    * VMOs: ``size_bytes`` = the capture's ``allocated_bytes`` (which is the
      VMO size, §9.1), ``committed_bytes``, ``parent_koid``,
      ``num_children`` (children present in the capture), ``share_count`` =
      the number of processes charged (§9.3).  What a capture does not
      record is unknown (``None``), never 0 or a guess: ``num_mappings``, and
      ``kind`` (a child VMO may be a copy-on-write clone, a slice or a
      reference; a root one anonymous, pager-backed or physical).
      ``populated_bytes`` (zram) is noted, not kept.
    * buckets: a wrapped capture's ``Buckets`` become :attr:`Snapshot.buckets`
      (``digest`` uses them when no ``--buckets`` is given).
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any

from zxmem.errors import InputError
from zxmem.model import Job, KernelStats, MemoryCounts, Process, Provenance, Snapshot, Vmo, VmoRef
from zxmem.sources.checked import MAX_U64, describe, is_int, is_u64
from zxmem.textsafe import decode_name

CAPTURE_ROOT_JOB_KOID = 1

# ---------------------------------------------------------------------------
# memgraph name repair

_NAME_KEY = re.compile(rb'"name"\s*:\s*"')
# What follows a name's closing quote in Fuchsia's key order (§5.3): the
# next key of a process, thread, kernel or VMO record ...
_NEXT_KEY = re.compile(
    rb'\s*,\s*"(?:private_bytes|size_bytes|state|vmos|vmo_refs|handle_stats|linux)"\s*:'
)
# ... or the end of a job record (or of a record whose other fields failed).
_RECORD_END = re.compile(rb'\s*\}\s*(?:,|\]|\}|$)')
# Names are at most 31 bytes (ZX_MAX_NAME_LEN): the closing quote is
# within 31 bytes of the opening one.
_NAME_MAX = 31


def _name_end(data: bytes, start: int) -> int:
    """Offset of the quote that closes the name value starting at ``start``."""
    limit = min(len(data), start + _NAME_MAX + 1)
    quotes = []
    q = data.find(b'"', start, limit)
    while q != -1:
        quotes.append(q)
        q = data.find(b'"', q + 1, limit)
    for pattern in (_NEXT_KEY, _RECORD_END):
        for q in quotes:
            if pattern.match(data, q + 1):
                return q
    # Not a name Fuchsia wrote (longer than 31 bytes): leave it to the
    # parser rather than swallow the next record.
    return -1


def repair_names(data: bytes) -> tuple[bytes, int]:
    """Escape every ``"name": "…"`` value of a Fuchsia memgraph.

    Fuchsia never escapes names, so every byte between the quotes is taken
    literally (a backslash is a backslash).  The closing quote is the first
    one within 31 bytes that the next key of the record follows, else the
    first that the end of the record follows; a name with neither is left
    as it is (the parser then reports where the document is broken).
    Returns the repaired document and the number of names that changed.
    """
    fixed, changed, _ = repair_names_mapped(data)
    return fixed, changed


def repair_names_mapped(data: bytes) -> tuple[bytes, int, list[tuple[int, int]]]:
    """:func:`repair_names`, plus anchors ``(repaired offset, original offset)``.

    Between anchors the two documents agree byte for byte, so an offset in
    the repaired document maps back with :func:`original_offset`.
    """
    out = []
    anchors = [(0, 0)]
    pos = 0
    opos = 0  # length of out so far
    changed = 0
    while True:
        m = _NAME_KEY.search(data, pos)
        if m is None:
            break
        start = m.end()
        end = _name_end(data, start)
        if end == -1:
            out.append(data[pos:start])
            opos += start - pos
            pos = start
            continue
        raw = data[start:end]
        fixed = json.dumps(decode_name(raw), ensure_ascii=True).encode("ascii")
        out.append(data[pos:start - 1])
        opos += start - 1 - pos
        out.append(fixed)
        opos += len(fixed)
        if fixed[1:-1] != raw:
            changed += 1
        pos = end + 1
        anchors.append((opos, pos))
    out.append(data[pos:])
    return b"".join(out), changed, anchors


def original_offset(anchors: list[tuple[int, int]], offset: int) -> int:
    """Map an offset in a repaired document back to the original."""
    import bisect

    i = bisect.bisect_right(anchors, (offset, float("inf"))) - 1
    fixed_at, orig_at = anchors[max(i, 0)]
    return orig_at + (offset - fixed_at)


# ---------------------------------------------------------------------------
# capture

_KERNEL_COLUMNS = {
    "total": "total_bytes",
    "free": "free_bytes",
    "wired": "wired_bytes",
    "total_heap": "total_heap_bytes",
    "free_heap": "free_heap_bytes",
    "vmo": "vmo_bytes",
    "mmu": "mmu_overhead_bytes",
    "ipc": "ipc_bytes",
    "other": "other_bytes",
}

_PROCESS_FIELDS = ("koid", "name", "vmos")
_VMO_FIELDS = ("koid", "name", "parent_koid", "committed_bytes", "allocated_bytes")


def is_capture(doc: Any) -> bool:
    """True if ``doc`` looks like a capture (wrapped or bare)."""
    if not isinstance(doc, dict):
        return False
    inner = doc.get("Capture", doc)
    return isinstance(inner, dict) and ("Kernel" in inner or "Processes" in inner)


def _short(value: Any) -> str:
    return describe(value, 60)


def _check_bytes(value: Any, where: str, field: str) -> None:
    """An :class:`InputError` naming ``where`` and ``field`` for a byte
    count that is negative or past 2**64 - 1 (``None``, unknown, is fine):
    a byte count fits in 64 unsigned bits (the kernel's counters and
    Zircon's sizes are uint64); anything else is a damaged or hand-made file."""
    if value is not None and not 0 <= value <= MAX_U64:
        raise InputError(f"{where}: {field} {value} is out of range "
                         f"(a byte count is 0 .. 2**64 - 1)")


def _table(rows: Any, table: str, expected: tuple[str, ...]) -> tuple[list, dict[str, int], int]:
    """Rows of a capture table without its header, the column index, first row number."""
    if not isinstance(rows, list):
        raise InputError(f"capture {table}: expected an array of rows, found {_short(rows)}")
    index = {name: i for i, name in enumerate(expected)}
    first = 0
    if rows and isinstance(rows[0], list) and rows[0] and all(isinstance(c, str) for c in rows[0]):
        index = {name: i for i, name in enumerate(rows[0])}
        first = 1
        missing = [c for c in expected if c not in index]
        if missing:
            raise InputError(
                f"capture {table}[0]: header row lacks {', '.join(missing)} "
                f"(expected {', '.join(expected)})"
            )
    return rows, index, first


def _kernel(kernel: Any) -> KernelStats | None:
    if kernel is None:
        return None
    if not isinstance(kernel, dict):
        raise InputError(f"capture Kernel: expected an object, found {_short(kernel)}")
    cols: dict[str, int | None] = {}
    extra: dict[str, int | None] = {}
    for key, value in kernel.items():
        if value is not None and not is_int(value):
            raise InputError(f"capture Kernel.{key}: expected an integer, found {_short(value)}")
        _check_bytes(value, "capture Kernel", key)
        if key in _KERNEL_COLUMNS:
            cols[_KERNEL_COLUMNS[key]] = value
        else:
            extra[key if key.endswith("_bytes") else key + "_bytes"] = value
    return KernelStats.from_columns(cols, extra)


def _capture_buckets(doc: Mapping, wrapped: bool, notes: list[str]) -> tuple | None:
    """The bucket definitions a wrapped capture carries, or None."""
    buckets = doc.get("Buckets") if wrapped else None
    if buckets is not None and not isinstance(buckets, list):
        raise InputError(f"capture Buckets: expected an array of bucket definitions, "
                         f"found {_short(buckets)}")
    if not buckets:
        return None
    from zxmem.digest import parse_buckets
    from zxmem.errors import ZxmemError

    try:
        parsed = parse_buckets(buckets, "capture Buckets")
    except ZxmemError as exc:
        raise InputError(str(exc)) from None
    notes.append(f"{len(parsed)} bucket definitions (digest uses them unless --buckets)")
    return parsed


def _capture_kernel(cap: Mapping) -> KernelStats | None:
    """The capture's kernel statistics, with its compression counters."""
    kernel = _kernel(cap.get("Kernel"))
    if isinstance(cap.get("kmem_stats_compression"), dict) and kernel is not None:
        from dataclasses import replace

        extra = dict(kernel.extra)
        for k, v in cap["kmem_stats_compression"].items():
            if is_int(v):
                _check_bytes(v, "capture kmem_stats_compression", k)
                extra[f"compression_{k}"] = v
        kernel = replace(kernel, extra=MappingProxyType(extra))
    return kernel


def _attribution(procs: dict, vmos: dict) -> tuple[dict[int, list[int]], dict[int, int]]:
    """Attribution (§9.3): each process is charged its VMOs and their
    ancestors; and how many processes are charged each VMO."""
    charged: dict[int, list[int]] = {}
    sharers: dict[int, int] = {}
    for koid, (_name, vmo_koids) in procs.items():
        seen: set[int] = set()
        for v in vmo_koids:
            k = v
            while k in vmos and k not in seen:
                seen.add(k)
                k = vmos[k]["parent_koid"]
        charged[koid] = list(seen)
        for k in seen:
            sharers[k] = sharers.get(k, 0) + 1
    return charged, sharers


def _capture_vmos(vmos: dict, sharers: dict[int, int]) -> dict[int, Vmo]:
    """The capture's VMO rows as objects, with children and share counts."""
    children: dict[int, int] = {}
    for v in vmos.values():
        if v["parent_koid"] in vmos:
            children[v["parent_koid"]] = children.get(v["parent_koid"], 0) + 1
    return {
        koid: Vmo(
            koid=koid,
            name=v["name"],
            kind=None,
            size_bytes=v["allocated_bytes"],
            committed_bytes=v["committed_bytes"],
            parent_koid=v["parent_koid"],
            num_children=children.get(koid, 0),
            num_mappings=None,
            share_count=sharers.get(koid, 0),
        )
        for koid, v in vmos.items()
    }


def _capture_processes(procs: dict, vmos: dict, charged: dict[int, list[int]],
                       sharers: dict[int, int]) -> list[Process]:
    """The processes with PSS/PRIVATE/SHARED from their charged VMOs."""
    processes = []
    # File order: the host digest scripts walk processes in the order the
    # capture lists them (spec §9.9, "snapshot order"), and for shared VMOs
    # that order decides the bucket.
    for koid in procs:
        name, vmo_koids = procs[koid]
        total = private = scaled = 0
        for k in charged[koid]:
            committed = vmos[k]["committed_bytes"] or 0
            total += committed
            n = sharers[k]
            if n == 1:
                private += committed
                scaled += committed
            else:
                scaled += committed // n
        processes.append(
            Process(
                koid=koid,
                name=name,
                job_koid=CAPTURE_ROOT_JOB_KOID,
                cmdline=(name,),
                memory=MemoryCounts(pss_bytes=scaled, private_bytes=private,
                                    shared_bytes=total - private),
                vmo_refs=tuple(VmoRef(k, ()) for k in dict.fromkeys(vmo_koids)),
            )
        )
    return processes


def snapshot_from_capture(doc: Mapping) -> Snapshot:
    """Build a Snapshot from a parsed capture document (§9.2).

    Raises :class:`InputError` naming the table and row for a malformed row.
    """
    if not is_capture(doc):
        raise InputError("not a Fuchsia capture: expected an object with 'Kernel' and "
                         "'Processes' (or a 'Capture' object holding them)")
    wrapped = "Capture" in doc
    cap = doc["Capture"] if wrapped else doc
    notes = ["one root job: a capture records no job tree",
             "process PSS/PRIVATE/SHARED from VMO attribution (committed bytes, "
             "charged with ancestors, shared by process count)"]
    time = cap.get("Time")
    if time is not None and not is_u64(time):
        raise InputError(f"capture Time: expected nanoseconds (an integer from 0 to 2**64 - 1), "
                         f"found {_short(time)}")
    if time is not None:
        notes.append(f"capture time {time} ns (monotonic)")
    buckets = _capture_buckets(doc, wrapped, notes)
    kernel = _capture_kernel(cap)
    names = cap.get("VmoNames", [])
    if not isinstance(names, list):
        raise InputError(f"capture VmoNames: expected an array of strings, found {_short(names)}")
    vmos = _vmos(cap.get("Vmos", []), names, notes)
    procs = _processes(cap.get("Processes", []))
    charged, sharers = _attribution(procs, vmos)
    return Snapshot(
        provenance=Provenance(source="fuchsia-capture", notes=tuple(notes), job_mode="none",
                              capture_time_ns=time),
        jobs=(Job(CAPTURE_ROOT_JOB_KOID, "root", 0),),
        processes=tuple(_capture_processes(procs, vmos, charged, sharers)),
        kernel=kernel,
        vmos=MappingProxyType(_capture_vmos(vmos, sharers)),
        buckets=buckets,
    )


def _processes(rows: Any) -> dict[int, tuple[str, list[int]]]:
    rows, idx, first = _table(rows, "Processes", _PROCESS_FIELDS)
    out: dict[int, tuple[str, list[int]]] = {}
    ik, iname, ivmos = idx["koid"], idx["name"], idx["vmos"]
    width = max(ik, iname, ivmos) + 1
    seen: dict[int, int] = {}  # koid -> row
    for i in range(first, len(rows)):
        row = rows[i]
        if not isinstance(row, list) or len(row) < width:
            raise InputError(f"capture Processes[{i}]: expected [koid, name, [vmo koids]], "
                             f"found {_short(row)}")
        koid, name, vmo_koids = row[ik], row[iname], row[ivmos]
        if not is_u64(koid) or not isinstance(name, str) or not isinstance(vmo_koids, list) \
                or not all(is_u64(k) for k in vmo_koids):
            raise InputError(f"capture Processes[{i}]: expected [koid, name, [vmo koids]] "
                             f"(koids from 0 to 2**64 - 1), found {_short(row)}")
        if koid in out:
            raise InputError(f"capture Processes[{i}]: process koid {koid} appears twice "
                             f"(also Processes[{seen[koid]}])")
        seen[koid] = i
        out[koid] = (name, vmo_koids)
    return out


def _vmos(rows: Any, names: list, notes: list[str]) -> dict[int, dict]:
    rows, idx, first = _table(rows, "Vmos", _VMO_FIELDS)
    cols = [idx[c] for c in _VMO_FIELDS]
    width = max(cols) + 1
    out: dict[int, dict] = {}
    seen: dict[int, int] = {}  # koid -> row
    populated = "populated_bytes" in idx
    for i in range(first, len(rows)):
        row = rows[i]
        if not isinstance(row, list) or len(row) < width:
            raise InputError(
                f"capture Vmos[{i}]: expected [koid, name index, parent_koid, committed_bytes, "
                f"allocated_bytes], found {_short(row)}"
            )
        koid, name, parent, committed, allocated = (row[c] for c in cols)
        if isinstance(name, str):
            pass  # an older writer that stored names inline
        elif is_int(name) and 0 <= name < len(names) and isinstance(names[name], str):
            name = names[name]
        else:
            raise InputError(f"capture Vmos[{i}]: name index {_short(name)} is not in "
                             f"VmoNames (0..{len(names) - 1})")
        if not all(is_u64(v) for v in (koid, parent)) or not all(
            v is None or is_int(v) for v in (committed, allocated)
        ):
            raise InputError(f"capture Vmos[{i}]: expected integers (koids from 0 to "
                             f"2**64 - 1), found {_short(row)}")
        _check_bytes(committed, f"capture Vmos[{i}]", "committed_bytes")
        _check_bytes(allocated, f"capture Vmos[{i}]", "allocated_bytes")
        if koid in out:
            raise InputError(f"capture Vmos[{i}]: VMO koid {koid} appears twice "
                             f"(also Vmos[{seen[koid]}])")
        seen[koid] = i
        out[koid] = {"name": name, "parent_koid": parent,
                     "committed_bytes": committed, "allocated_bytes": allocated}
    if populated:
        notes.append("populated_bytes (zram) column not imported")
    return out
