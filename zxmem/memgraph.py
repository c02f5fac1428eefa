"""memgraph JSON: the on-disk form of a Snapshot (spec fuchsia-tools §5).

Writing
-------
:func:`write_memgraph` prints Fuchsia's record array with Fuchsia's key order
and whitespace (§5.2): a ``[`` line, one record per line indented two spaces,
every record but the last followed by ``,`` (the last by a space, as the
real tool does), then ``]``.  Order: the 9 kernel records, the task records
in walk order (a job, its processes each followed by its threads, then its
sub-jobs; §1.1), and the final ``__META`` record.  Unlike Fuchsia's memgraph,
names are always JSON-escaped (``ensure_ascii``), so the output is valid JSON
on any terminal encoding.

Linux fields
------------
Everything Fuchsia's format has no field for goes into one nested object
named ``"linux"`` on the record it belongs to.  Fuchsia's consumers ignore it:
``treemap.py`` reads only the keys it knows, and the draft-04 schema (§5.4)
does not forbid extra properties.  ``zxmem memgraph -S`` prints the schema of
all of it.  Where they go:

* ``kernel/physmem``: ``linux.kernel`` = every :class:`KernelStats` column
  (``null`` = unknown), ``linux.meminfo`` and ``linux.extra`` (the raw
  inputs).  The 9 records carry the same numbers for Fuchsia's readers; a
  record whose value is unknown is left out, except ``kernel/physmem`` and
  ``kernel/vmo``, which hold the tree together (``size_bytes`` 0 there, and
  ``linux.kernel`` says ``null``).  ``ipc_bytes`` has no record (as in
  Fuchsia) and lives in ``linux.kernel`` only.
* jobs: ``linux`` = ``path`` (the cgroup), ``state``, ``charged_bytes``,
  ``cgroup`` (the cgroup's memory files when read:
  :func:`zxmem.sources.cgmem.cgroup_to_json`) and,
  for a second root job, its real ``parent_koid`` (only non-default values).
  treemap.py asserts exactly one job hangs under a ``kernel/`` record, so
  every further root job is written under the first one and its own parent
  is kept here.
* processes: ``linux`` (always present) = ``cmdline`` (``null`` when
  unreadable), ``ppid``, ``uid``, ``state`` (the ``stat`` letter),
  ``kernel_thread``, ``num_threads``, ``vm_pte_bytes``, ``memory`` (the
  :class:`MemoryCounts` beyond PSS/PRIVATE/SHARED: Rss, swap, Pss_Anon… or
  ``null`` when ``smaps`` could not be read — then, as in Fuchsia when task
  stats fail, ``private_bytes``/``shared_bytes``/``pss_bytes`` are left out),
  and with ``-v`` ``mappings`` (one array per ``smaps`` entry, its values
  in the order ``mapping_fields`` names, :class:`Mapping`'s field order: a
  process can have 60,000 mappings, and rows are a third of the size of
  objects and quicker to write and read) and
  ``regions``.
* ``vmos`` entries: ``linux`` = ``kind`` (``null`` when unknown: a Fuchsia
  VMO), ``dev``, ``inode``, ``path``, ``swap_bytes``; a size, committed byte
  count or ``num_mappings`` that is unknown is left out (the schema makes
  them optional).  Device memory (``kind`` ``phys``) has ``committed_bytes``
  0, as in Fuchsia: it commits no RAM.  ``vmo_refs`` entries: ``linux.fd``;
  and ``linux.via`` ``null`` when how the process reaches the VMO is unknown
  (a capture), with ``via`` ``["MAPPING"]`` for treemap.py, which asserts a
  known kind (see ``_VIA_UNKNOWN``).
* a process's references to VMOs whose committed bytes are unknown (a file
  whose page cache could not be measured, an object gone before it was
  stat'ed): treemap.py reads every listed VMO's ``committed_bytes``, so
  they are not in ``vmos``/``vmo_refs`` but in ``linux.unsized_vmos``, one
  ``[position, vmos entry, vmo_refs entry]`` each, the position being the
  reference's index in the process's whole list.  treemap.py then leaves
  them to its "unknown" box instead of drawing a size nobody measured.
* ``__META``: ``linux`` = the provenance (``format``, ``source``, ``host``,
  ``kernel``, ``denied``, ``notes``, ``job_mode``) and the VMOs no process
  record lists (``vmos``), ``hidden_vmo_koids`` and ``vmo_holders``.

Reading
-------
:func:`snapshot_from_records` turns records (ours, or Fuchsia's without any
``linux`` fields) back into a Snapshot.  Records may come in any order (as
treemap.py allows).  The Snapshot's canonical order is the live collector's:
jobs parents-first by depth then koid, processes by koid, so a snapshot in
that order (every source makes them so) written and read back is equal to
the original.  Records without ``linux`` fields are Fuchsia's: a process's
name stands in for its command line (Fuchsia's ps shows the name), sizes a
record lacks are unknown (``None``), so are a VMO's ``kind`` (Fuchsia
records none) and a ``num_mappings`` it lacks, VMOs are de-duplicated by
koid (first occurrence wins, spec §11), and missing kernel records are
unknown columns.
"""

from __future__ import annotations

import codecs
import json
import os
import signal
from collections.abc import Callable, Iterable, Iterator, Mapping
from dataclasses import MISSING, Field, fields, replace
from itertools import accumulate
from operator import attrgetter
from typing import TYPE_CHECKING, Any, TextIO

from zxmem.errors import InputError
from zxmem.model import (
    THREAD_STATES,
    Job,
    KernelStats,
    MemoryCounts,
    Process,
    Provenance,
    Region,
    Snapshot,
    Thread,
    Vmo,
    VmoRef,
)
from zxmem.model import Mapping as MappingRecord
from zxmem.sources import checked
from zxmem.tasktree import canonical_jobs
from zxmem.textsafe import _ASCII_OK  # what zxmem's SafeWriter passes unchanged

if TYPE_CHECKING:
    from zxmem.tasktree import TaskTree

FORMAT = "zxmem-memgraph/1"

# The values of a mapping row, in the model's field order.
MAPPING_FIELDS: tuple[str, ...] = tuple(f.name for f in fields(MappingRecord))
_MAPPING_ROW = attrgetter(*MAPPING_FIELDS)

# (record name, parent, KernelStats attribute or a function of it) — §5.3.
KERNEL_RECORDS: tuple[tuple[str, str, str], ...] = (
    ("physmem", "", "total_bytes"),
    ("free", "kernel/physmem", "free_bytes"),
    ("vmo", "kernel/physmem", "vmo_bytes"),
    ("heap", "kernel/physmem", "total_heap_bytes"),
    ("heap/allocated", "kernel/heap", "-heap_allocated"),
    ("heap/free", "kernel/heap", "free_heap_bytes"),
    ("wired", "kernel/physmem", "wired_bytes"),
    ("mmu", "kernel/physmem", "mmu_overhead_bytes"),
    ("other", "kernel/physmem", "other_bytes"),
)
# Records the tree needs even when their value is unknown: physmem is the
# root and the root job hangs under kernel/vmo (§6.1).
_STRUCTURAL = ("physmem", "vmo")

_STATE_NAMES = THREAD_STATES  # "running" -> "RUNNING"
_STATE_KEYS = {v: k for k, v in THREAD_STATES.items()}

_KSTAT_COLUMNS = (
    "total_bytes",
    "free_bytes",
    "vmo_bytes",
    "total_heap_bytes",
    "free_heap_bytes",
    "wired_bytes",
    "mmu_overhead_bytes",
    "ipc_bytes",
    "other_bytes",
)

# Process fields written at Fuchsia's top level or as records of their own.
_PROCESS_TOP = frozenset(
    ("koid", "name", "job_koid", "memory", "threads", "mappings", "regions", "vmo_refs",
     "handle_stats")
)
_VMO_TOP = frozenset(
    ("koid", "name", "size_bytes", "parent_koid", "num_children", "num_mappings",
     "share_count", "committed_bytes")
)
_MEMORY_TOP = frozenset(("pss_bytes", "private_bytes", "shared_bytes"))
_JOB_TOP = frozenset(("koid", "name", "parent_koid", "cgroup"))


# ---------------------------------------------------------------------------
# Generic dataclass <-> JSON helpers (so a field added to the model later
# still round-trips without touching this module).


def _default(f: Field[Any]) -> Any:
    if f.default is not MISSING:
        return f.default
    if f.default_factory is not MISSING:
        return f.default_factory()
    return MISSING


# (cls, skip, keep_defaults) -> (attrgetter of the fields written, and per
# field: name, default, how to compare with it, whether to convert).  Built
# once per class: the writer calls _extras for every mapping and VMO.
_WRITE_INFO: dict[tuple, tuple[Any, list[tuple[str, Any, int, bool]]]] = {}
_ALWAYS, _IS_NONE, _EQUALS = 0, 1, 2


def _write_info(cls: type, skip: frozenset[str], keep: frozenset[str]):
    key = (cls, skip, keep)
    info = _WRITE_INFO.get(key)
    if info is None:
        rows = []
        for f in fields(cls):
            if f.name in skip:
                continue
            default = _default(f)
            if f.name in keep or default is MISSING:
                how = _ALWAYS
            elif default is None:
                how = _IS_NONE
            else:
                how = _EQUALS
            ann = str(f.type)
            rows.append((f.name, default, how, "tuple" in ann or "Mapping" in ann))
        names = [r[0] for r in rows]
        getter = attrgetter(*names) if len(names) > 1 else (
            (lambda o, n=names[0]: (getattr(o, n),)) if names else (lambda o: ()))
        info = _WRITE_INFO[key] = (getter, rows)
    return info


def _to_json(value: Any) -> Any:
    if isinstance(value, tuple):
        return [_to_json(v) for v in value]
    if isinstance(value, Mapping):
        return {str(k): _to_json(v) for k, v in value.items()}
    return value


def _extras(obj: Any, skip: frozenset[str], keep_defaults: frozenset[str] = frozenset()) -> dict:
    """The fields of ``obj`` not in ``skip`` whose value is not the default."""
    getter, rows = _write_info(type(obj), skip, keep_defaults)
    out = {}
    for (name, default, how, convert), value in zip(rows, getter(obj), strict=True):
        if how == _IS_NONE:
            if value is None:
                continue
        elif how == _EQUALS and value == default:
            continue
        out[name] = _to_json(value) if convert and value is not None else value
    return out


def _from_json(annotation: str, value: Any) -> Any:
    """Convert a JSON value back to the model's type named by ``annotation``."""
    if value is None:
        return None
    if isinstance(value, list) and "tuple" in annotation:
        inner = annotation.split("[", 1)[1] if "[" in annotation else ""
        return tuple(_from_json(inner, v) for v in value)
    if isinstance(value, dict) and "Mapping" in annotation:
        from types import MappingProxyType

        return MappingProxyType(dict(value))
    return value


# cls -> {field name: annotation needing conversion, or None for plain values}
_FIELD_KINDS: dict[type, dict[str, str | None]] = {}


def _field_kinds(cls: type) -> dict[str, str | None]:
    kinds = _FIELD_KINDS.get(cls)
    if kinds is None:
        kinds = {}
        for f in fields(cls):
            ann = str(f.type)
            kinds[f.name] = ann if ("tuple" in ann or "Mapping" in ann) else None
        _FIELD_KINDS[cls] = kinds
    return kinds


def _build(cls: type, known: dict, extras: Mapping | None, path: str = "",
           extras_path: str | None = None) -> Any:
    """``cls(**known, **extras)``, every value checked against the model's
    annotation (:mod:`zxmem.sources.checked`), extras the model lacks ignored."""
    return checked.build(cls, known, path, extras, extras_path)


# ---------------------------------------------------------------------------
# Writing


def _kernel_value(k: KernelStats, attr: str) -> int | None:
    if attr == "-heap_allocated":
        if k.total_heap_bytes is None or k.free_heap_bytes is None:
            return None
        return k.total_heap_bytes - k.free_heap_bytes
    return getattr(k, attr)


def kernel_records(k: KernelStats) -> list[dict]:
    """The 9 kernel records of §5.3 (fewer when values are unknown)."""
    out = []
    for name, parent, attr in KERNEL_RECORDS:
        value = _kernel_value(k, attr)
        if value is None and name not in _STRUCTURAL:
            continue
        rec: dict = {
            "id": f"kernel/{name}",
            "type": "kernel",
            "parent": parent,
            "name": name,
            "size_bytes": value if value is not None else 0,
        }
        if name == "physmem":
            # The columns with their nulls, then the raw inputs (meminfo,
            # extra, and whatever else KernelStats holds).
            rec["linux"] = {"kernel": {c: getattr(k, c) for c in _KSTAT_COLUMNS}}
            rec["linux"].update(_extras(k, frozenset(_KSTAT_COLUMNS),
                                        frozenset(("meminfo", "extra"))))
        out.append(rec)
    return out


_VMO_KEYS = ("size_bytes", "parent_koid", "num_children", "num_mappings", "share_count",
             "committed_bytes")
_VMO_VALUES = attrgetter(*_VMO_KEYS)
# Vmo's Linux fields; while they are these (kind, then ones whose default is
# None) the entry is built without the generic walk over the fields: there
# is one entry per object, tens of thousands on a busy system.
_VMO_LINUX_FAST = [(f.name, f.default) for f in fields(Vmo) if f.name not in _VMO_TOP] == [
    ("kind", MISSING), ("dev", None), ("inode", None), ("path", None), ("swap_bytes", None)]


def _vmo_values(vmo: Vmo) -> tuple:
    """The values of ``_VMO_KEYS`` as written (``None``: left out).

    Device memory (kind ``phys``) commits no RAM: the model's
    ``committed_bytes`` is ``None`` there (``alloc`` prints ``phys``), and
    the file says 0, as Fuchsia's memgraph does for a physical VMO, whose
    committed_bytes it always writes (treemap.py reads every VMO's).
    """
    values = _VMO_VALUES(vmo)
    if vmo.committed_bytes is None and vmo.kind == "phys":
        return values[:-1] + (0,)
    return values


def _vmo_entry(koid: int, vmo: Vmo | None) -> dict:
    if vmo is None:
        return {"koid": koid}
    rec: dict = {"koid": vmo.koid, "name": vmo.name}
    for key, value in zip(_VMO_KEYS, _vmo_values(vmo), strict=True):
        if value is not None:
            rec[key] = value
    if _VMO_LINUX_FAST:
        linux: dict = {"kind": vmo.kind}
        if vmo.dev is not None:
            linux["dev"] = vmo.dev
        if vmo.inode is not None:
            linux["inode"] = vmo.inode
        if vmo.path is not None:
            linux["path"] = vmo.path
        if vmo.swap_bytes is not None:
            linux["swap_bytes"] = vmo.swap_bytes
        rec["linux"] = linux
    else:
        rec["linux"] = _extras(vmo, _VMO_TOP, keep_defaults=frozenset(("kind",)))
    return rec


_REF_TOP = frozenset(("vmo_koid", "via", "handle_rights"))
# VmoRef's Linux fields; while it is only ``fd`` the common case (a mapping,
# no descriptor) needs no generic walk over the fields.
_REF_ONLY_FD = [f.name for f in fields(VmoRef) if f.name not in _REF_TOP] == ["fd"]


# What ``via`` says for a reference whose kind the source does not know:
# a Fuchsia capture lists the VMOs a process reaches, by handle or mapping,
# without saying which (spec fuchsia-tools §9.1).  treemap.py needs one of
# the two, and MAPPING is how the capture itself charges them: its
# attribution (§9.3), which gives the process's pss_bytes, splits each VMO
# among the processes listing it, its share_count, and treemap.py charges a
# MAPPING reference committed_bytes / share_count (a HANDLE-only one, one
# sharer more).  ``linux.via`` is then ``null``: the real kind is unknown,
# and reads back as unknown.
_VIA_UNKNOWN = ("MAPPING",)


def _vmo_ref_entry(ref: VmoRef) -> dict:
    rec: dict = {"vmo_koid": ref.vmo_koid, "via": list(ref.via or _VIA_UNKNOWN)}
    if "HANDLE" in ref.via or ref.handle_rights:
        rec["handle_rights"] = list(ref.handle_rights)
    if _REF_ONLY_FD:
        extra: dict = {"fd": ref.fd} if ref.fd is not None else {}
    else:
        extra = _extras(ref, _REF_TOP)
    if not ref.via:
        extra["via"] = None
    if extra:
        rec["linux"] = extra
    return rec


def _job_record(job: Job, parent_id: str, parent_encoded: bool) -> dict:
    rec: dict = {
        "id": f"j/{job.koid}",
        "type": "j",
        "koid": job.koid,
        "parent": parent_id,
        "name": job.name,
    }
    extra = _extras(job, _JOB_TOP)
    if job.cgroup is not None:
        from zxmem.sources.cgmem import cgroup_to_json

        extra["cgroup"] = cgroup_to_json(job.cgroup)
    if not parent_encoded:
        extra["parent_koid"] = job.parent_koid
    if extra:
        rec["linux"] = extra
    return rec


def _process_head(p: Process) -> dict:
    """A process record's node fields and, when known, its three sizes.

    Fuchsia leaves the sizes out when task stats fail; zxmem does the same
    when smaps was unreadable (never 0).
    """
    head: dict = {
        "id": f"p/{p.koid}",
        "type": "p",
        "koid": p.koid,
        "parent": f"j/{p.job_koid}",
        "name": p.name,
    }
    m = p.memory
    if m is not None:
        for key in ("private_bytes", "shared_bytes", "pss_bytes"):
            value = getattr(m, key)
            if value is not None:
                head[key] = value
    return head


def _sized(vmo: Vmo | None) -> bool:
    """Whether treemap.py can draw ``vmo``: it reads the ``name`` and
    ``committed_bytes`` of every VMO a process lists (device memory's are
    written 0, see :func:`_vmo_values`)."""
    return vmo is not None and (vmo.committed_bytes is not None or vmo.kind == "phys")


def _unsized_entry(i: int, ref: VmoRef, snapshot: Snapshot) -> list:
    """``[position, vmos entry, vmo_refs entry]`` of ``linux.unsized_vmos``."""
    return [i, _vmo_entry(ref.vmo_koid, snapshot.vmos.get(ref.vmo_koid)), _vmo_ref_entry(ref)]


def _process_record(
    p: Process, snapshot: Snapshot, vmos: bool, handles: bool, vmo_cache: dict[int, dict]
) -> dict:
    rec = _process_head(p)
    unsized = []
    if vmos and p.vmo_refs:
        entries = []
        refs = []
        for i, r in enumerate(p.vmo_refs):
            vmo = snapshot.vmos.get(r.vmo_koid)
            entry = vmo_cache.get(r.vmo_koid)
            if entry is None:
                entry = vmo_cache[r.vmo_koid] = _vmo_entry(r.vmo_koid, vmo)
            if not _sized(vmo):
                unsized.append(_unsized_entry(i, r, snapshot))
                continue
            entries.append(entry)
            refs.append(_vmo_ref_entry(r))
        if entries:
            rec["vmos"] = entries
            rec["vmo_refs"] = refs
    if handles and p.handle_stats:
        rec["handle_stats"] = {k: v for k, v in p.handle_stats.items() if v}
    rec["linux"] = _process_linux(p, vmos, handles, False)
    if unsized:
        rec["linux"]["unsized_vmos"] = unsized
    return rec


# Region's fields all lack defaults, so every one is written (what _extras
# gives), and a region's dict is built from one attrgetter call.
_REGION_FIELDS = tuple(f.name for f in fields(Region))
_REGION_ROW = attrgetter(*_REGION_FIELDS)
_REGION_FAST = all(_default(f) is MISSING for f in fields(Region))


def _process_linux(p: Process, vmos: bool, handles: bool, text: bool) -> dict:
    """A process record's ``linux`` object.  ``text``: only for encoding to
    JSON at once, so tuples may stay tuples (the encoder writes them as
    arrays) instead of being copied into lists."""
    m = p.memory
    linux = _extras(p, _PROCESS_TOP)
    # cmdline None (unreadable) differs from a missing "linux": say it.
    linux["cmdline"] = p.cmdline if text else _to_json(p.cmdline)
    linux["memory"] = _extras(m, _MEMORY_TOP) if m is not None else None
    if vmos:
        if p.mappings is not None:
            linux["mapping_fields"] = list(MAPPING_FIELDS)
            if text:
                linux["mappings"] = list(map(_MAPPING_ROW, p.mappings))
            else:
                linux["mappings"] = [list(_MAPPING_ROW(mp)) for mp in p.mappings]
        if p.regions is not None:
            if text and _REGION_FAST:
                linux["regions"] = [dict(zip(_REGION_FIELDS, _REGION_ROW(r), strict=True))
                                    for r in p.regions]
            else:
                linux["regions"] = [_extras(r, frozenset()) for r in p.regions]
        if p.vmo_refs is not None and not p.vmo_refs:
            linux["vmo_refs"] = []  # known to reach no VMO (vs. not collected)
    if handles and p.handle_stats is not None and not p.handle_stats:
        linux["handle_stats"] = {}
    return linux


def _process_text(
    p: Process, snapshot: Snapshot, vmos: bool, handles: bool, vmo_texts: dict[int, str]
) -> str:
    """``_dumps(_process_record(...))``, built faster.

    A VMO entry is encoded once and its text reused by every process that
    lists it (a shared library's object is in nearly every process), a
    mapping's reference (the common one: by mapping, no descriptor) is
    formatted directly, and mapping rows and regions go to the encoder
    as tuples.  The pieces are joined with the separators the encoder
    uses, so the text is the same.
    """
    head = _process_head(p)
    parts = [_encode(head)[:-1]]
    unsized = []
    if vmos and p.vmo_refs:
        texts = []
        refs = []
        get = vmo_texts.get
        for i, r in enumerate(p.vmo_refs):
            koid = r.vmo_koid
            t = get(koid)  # "": unsized (only _vmo_slow_text stores "")
            if not t:
                t = _vmo_slow_text(koid, snapshot, vmo_texts)
                if not t:
                    unsized.append(_unsized_entry(i, r, snapshot))
                    continue
            texts.append(t)
            refs.append(r)
        if texts:
            parts.append(', "vmos": [')
            parts.append(", ".join(texts))
            parts.append('], "vmo_refs": [')
            parts.append(", ".join(map(_vmo_ref_text, refs)))
            parts.append("]")
    tail: dict = {}
    if handles and p.handle_stats:
        tail["handle_stats"] = {k: v for k, v in p.handle_stats.items() if v}
    tail["linux"] = _process_linux(p, vmos, handles, True)
    if unsized:
        tail["linux"]["unsized_vmos"] = unsized
    parts.append(", ")
    parts.append(_encode(tail)[1:])
    return "".join(parts)


def _vmo_slow_text(koid: int, snapshot: Snapshot, vmo_texts: dict[int, str]) -> str:
    """The text of VMO ``koid`` on its first reference, stored in
    ``vmo_texts``; "" (also stored: written, in linux.unsized_vmos) when
    it is not :func:`_sized`, which depends on the VMO alone."""
    vmo = snapshot.vmos.get(koid)
    t = _vmo_text(koid, vmo) if _sized(vmo) else ""
    vmo_texts[koid] = t
    return t


def _vmo_text(koid: int, vmo: Vmo | None) -> str:
    """``_encode(_vmo_entry(koid, vmo))``, formatted directly: one entry per
    object, tens of thousands of them (every anonymous VMA is one), and the
    encoder's work per small object costs more than the formatting.  Only
    for the values whose JSON form is plain: exact ints and strs, escaped
    by the encoder's own function; anything else takes the encoder."""
    if vmo is None or not _VMO_LINUX_FAST or type(vmo.koid) is not int:
        return _encode(_vmo_entry(koid, vmo))
    name, kind, path = vmo.name, vmo.kind, vmo.path
    if type(name) is not str or type(kind) is not str or (
            path is not None and type(path) is not str):
        return _encode(_vmo_entry(koid, vmo))
    values = _vmo_values(vmo)
    if path is None and vmo.dev is None and vmo.inode is None and _INTS.issuperset(map(
            type, values)):
        # An anonymous object, every count known: one formatting.  Its
        # name and kind recur (mmap-anonymous, [heap], data:libc.so.6).
        swap = vmo.swap_bytes
        if swap is None:
            return _VMO_ANON % (vmo.koid, _ESCAPED[name], *values, _ESCAPED[kind])
        if type(swap) is int:
            return _VMO_ANON_SWAP % (vmo.koid, _ESCAPED[name], *values, _ESCAPED[kind], swap)
    if _INTS.issuperset(map(type, values)):
        # The common case, every count known: one formatting, no loop.
        parts = [_VMO_HEAD % (vmo.koid, _escape(name), *values), _escape(kind)]
    else:
        parts = ['{"koid": ', str(vmo.koid), ', "name": ', _escape(name)]
        for key, value in zip(_VMO_KEYS, values, strict=True):
            if value is not None:
                if type(value) is not int:
                    return _encode(_vmo_entry(koid, vmo))
                parts += (', "', key, '": ', str(value))
        parts += (', "linux": {"kind": ', _escape(kind))
    if vmo.dev is None and vmo.inode is None and path is None:
        # An anonymous object: only its swap may follow.
        swap = vmo.swap_bytes
        if swap is None:
            parts.append("}}")
            return "".join(parts)
        if type(swap) is int:
            parts += (', "swap_bytes": ', str(swap), "}}")
            return "".join(parts)
    for key, value in (("dev", vmo.dev), ("inode", vmo.inode), ("path", path),
                       ("swap_bytes", vmo.swap_bytes)):
        if value is not None:
            if type(value) is int:
                parts += (', "', key, '": ', str(value))
            elif type(value) is str:
                parts += (', "', key, '": ', _escape(value))
            else:
                return _encode(_vmo_entry(koid, vmo))
    parts.append("}}")
    return "".join(parts)


_INTS = frozenset((int,))
# _vmo_text's head when every one of _VMO_KEYS is an int: the koid, the
# escaped name, the counts in _VMO_KEYS order, then the kind follows.
_VMO_HEAD = '{"koid": %d, "name": %s' + "".join(
    f', "{key}": %d' for key in _VMO_KEYS) + ', "linux": {"kind": '
# The whole entry of an anonymous object (no dev, inode or path): the head,
# the escaped kind, and its swap when known.
_VMO_ANON = _VMO_HEAD + "%s}}"
_VMO_ANON_SWAP = _VMO_ANON[:-2] + ', "swap_bytes": %d}}'


class _Escaped(dict):
    """A str as the encoder writes it, each distinct one escaped once
    (bounded: names come and go)."""

    def __missing__(self, text: str) -> str:
        if len(self) >= 4096:
            self.clear()
        value = self[text] = _escape(text)
        return value


_ESCAPED = _Escaped()


def _vmo_ref_text(ref: VmoRef) -> str:
    if not ref.handle_rights and ref.fd is None and _REF_ONLY_FD:
        if ref.via == _VIA_MAPPING:
            return f'{{"vmo_koid": {int(ref.vmo_koid)}, "via": ["MAPPING"]}}'
        if not ref.via:  # a capture's reference: kind unknown (_VIA_UNKNOWN)
            return (f'{{"vmo_koid": {int(ref.vmo_koid)}, "via": ["MAPPING"], '
                    '"linux": {"via": null}}')
    return _encode(_vmo_ref_entry(ref))


_VIA_MAPPING = ("MAPPING",)


def _thread_record(t: Thread, pid: int) -> dict:
    return {
        "id": f"t/{t.koid}",
        "type": "t",
        "koid": t.koid,
        "parent": f"p/{pid}",
        "name": t.name,
        "state": _STATE_NAMES.get(t.state, "<UNKNOWN>"),
    }


def _meta_record(snapshot: Snapshot, vmos: bool, written_vmos: Mapping[int, object]) -> dict:
    p = snapshot.provenance
    rec: dict = {"type": "__META"}
    if p.timestamp is not None:
        rec["timestamp"] = p.timestamp
    linux: dict = {"format": FORMAT}
    linux.update(_extras(p, frozenset(("timestamp",)), keep_defaults=frozenset(("source",))))
    if vmos:
        orphans = [_vmo_entry(k, v) for k, v in snapshot.vmos.items() if k not in written_vmos]
        if orphans:
            linux["vmos"] = orphans
        if snapshot.hidden_vmo_koids:
            linux["hidden_vmo_koids"] = list(snapshot.hidden_vmo_koids)
        if snapshot.vmo_holders:
            linux["vmo_holders"] = {str(k): list(v) for k, v in snapshot.vmo_holders.items()}
    rec["linux"] = linux
    return rec


def records(
    snapshot: Snapshot, *, threads: bool = True, vmos: bool = True, handles: bool = True
) -> Iterator[dict]:
    """The memgraph records of ``snapshot`` in Fuchsia's order (§5.2).

    ``threads``/``vmos``/``handles`` are memgraph's ``-t``/``-v``/``-H``: what
    the snapshot holds beyond them is left out.
    """
    from zxmem.tasktree import TaskTree

    if snapshot.kernel is not None:
        yield from kernel_records(snapshot.kernel)
    tree = TaskTree(snapshot)
    # One entry per VMO, shared by every process record that lists it.
    written_vmos: dict[int, dict] = {}
    emitted: set[int] = set()
    for row in tree.walk(threads=False):
        if row.kind == "j":
            yield _job_row(tree, row.job)
        elif row.kind == "p":
            p = row.process
            assert p is not None
            emitted.add(p.koid)
            yield from _process_records(p, snapshot, threads, vmos, handles, written_vmos)
    for p in snapshot.processes:
        if p.koid not in emitted:  # its job is missing from the snapshot
            yield from _process_records(p, snapshot, threads, vmos, handles, written_vmos)
    yield _meta_record(snapshot, vmos, written_vmos)


def _job_row(tree: TaskTree, job: Job | None) -> dict:
    """The record of a job met in the walk of ``tree``."""
    assert job is not None
    first_root = tree.roots[0] if tree.roots else None
    if job is first_root:
        return _job_record(job, "kernel/vmo", job.parent_koid == 0)
    if job.parent_koid and job.parent_koid in tree.jobs:
        return _job_record(job, f"j/{job.parent_koid}", True)
    # Another root: hang it under the first (treemap.py allows one).
    assert first_root is not None
    return _job_record(job, f"j/{first_root.koid}", False)


def _process_records(p, snapshot, threads, vmos, handles, written_vmos) -> Iterator[dict]:
    yield _process_record(p, snapshot, vmos, handles, written_vmos)
    if threads:
        for t in p.threads:
            yield _thread_record(t, p.koid)


# Default separators give Fuchsia's ", " and ": "; ensure_ascii keeps the
# output valid whatever bytes a name holds and whatever stdout's encoding.
# One encoder for every record (json.dumps with a non-default option builds
# a new one per call).
_encode = json.JSONEncoder(ensure_ascii=True, allow_nan=False).encode
_escape = json.encoder.encode_basestring_ascii  # a str as the encoder writes it


def _dumps(rec: dict) -> str:
    return _encode(rec)


def _units(snapshot: Snapshot) -> list:
    """The task records in :func:`records`'s order, unencoded: a job's
    record (a dict) or a Process (its record and its threads')."""
    from zxmem.tasktree import TaskTree

    tree = TaskTree(snapshot)
    units: list = []
    emitted: set[int] = set()
    for row in tree.walk(threads=False):
        if row.kind == "j":
            units.append(_job_row(tree, row.job))
        elif row.kind == "p":
            assert row.process is not None  # a process row holds its process
            emitted.add(row.process.koid)
            units.append(row.process)
    # A process whose job is missing from the snapshot comes last.
    units += [p for p in snapshot.processes if p.koid not in emitted]
    return units


def _unit_texts(units: Iterable, snapshot: Snapshot, threads: bool, vmos: bool,
                handles: bool, vmo_texts: dict[int, str]) -> Iterator[str]:
    for unit in units:
        if isinstance(unit, dict):
            yield _encode(unit)
            continue
        yield _process_text(unit, snapshot, vmos, handles, vmo_texts)
        if threads:
            pid = unit.koid
            for t in unit.threads:
                yield _encode(_thread_record(t, pid))


_FLUSH = 1 << 20  # characters gathered before each write


def _write_lines(texts: Iterable[str], write) -> None:
    """Each text as a record line that another record follows, in ~1 MB writes."""
    buf: list[str] = []
    size = 0
    for text in texts:
        buf.append("  ")
        buf.append(text)
        buf.append(",\n")
        size += len(text)
        if size >= _FLUSH:
            write("".join(buf))
            buf.clear()
            size = 0
    if buf:
        write("".join(buf))


def write_memgraph(
    snapshot: Snapshot,
    out: TextIO,
    *,
    threads: bool = True,
    vmos: bool = True,
    handles: bool = True,
    fork: bool = False,
) -> None:
    """Write ``snapshot`` as memgraph JSON to ``out``: the text of
    :func:`records`, one record per line, written in large pieces.

    ``fork``: with many mappings, a forked process formats the later half
    of the task records while this one formats the first (both CPUs of a
    2-CPU machine instead of one); the text is the same.  Only for callers
    with no other threads running, as ``fork`` copies only the calling
    thread."""
    out.write("[\n")
    if snapshot.kernel is not None:
        _write_lines(map(_encode, kernel_records(snapshot.kernel)), out.write)
    vmo_texts: dict[int, str] = {}  # also the VMOs written, for __META
    units = _units(snapshot)
    cut = _fork_cut(units) if fork and vmos else None
    helper = None if cut is None else _HalfWriter.start(
        lambda write: _write_lines(
            _unit_texts(units[cut:], snapshot, threads, vmos, handles, {}), write))
    if helper is None:
        cut = len(units)
    meta: str | None = None
    try:
        _write_lines(_unit_texts(units[:cut], snapshot, threads, vmos, handles, vmo_texts),
                     _DirectWriter.wrap(out))
        if helper is not None:
            # The record that ends the file, as it is if the helper writes
            # its part (the VMOs its processes list are written there): made
            # while the helper may still be writing.
            written = dict(vmo_texts)
            for unit in units[cut:]:
                if not isinstance(unit, dict) and unit.vmo_refs:
                    written.update(dict.fromkeys(map(_REF_KOID, unit.vmo_refs), ""))
            meta = _encode(_meta_record(snapshot, vmos, written))
            if not helper.copy_to(out):
                # The helper failed before writing anything here: write it all.
                meta = None
                _write_lines(
                    _unit_texts(units[cut:], snapshot, threads, vmos, handles, vmo_texts),
                    out.write)
    finally:
        if helper is not None:
            helper.close()
    if meta is None:
        meta = _encode(_meta_record(snapshot, vmos, vmo_texts))
    out.write(f"  {meta} \n]\n")


_REF_KOID = attrgetter("vmo_koid")
# Mapping rows and references below which the task records are formatted
# by this process alone (a fork and its copy-on-write faults cost more).
_FORK_MIN_ROWS = 20_000
_FORK_SHARE = 0.46  # of the rows formatted by the forked helper (this one also copies them)


def _fork_cut(units: list) -> int | None:
    """Where the forked helper's part of ``units`` starts (about
    ``_FORK_SHARE`` of the rows to format), or None: not worth a fork."""
    if not hasattr(os, "fork"):
        return None
    weights = [1 if isinstance(u, dict) else
               8 + len(u.mappings or ()) + len(u.vmo_refs or ()) for u in units]
    total = sum(weights)
    if total < _FORK_MIN_ROWS:
        return None
    mark = total * (1 - _FORK_SHARE)
    for i, at in enumerate(accumulate(weights)):
        if at >= mark:
            return i + 1
    return None


class _HalfWriter:
    """A forked process writing text into an anonymous file, copied out by
    :meth:`copy_to` once it has finished."""

    def __init__(self, pid: int, fd: int) -> None:
        self.pid, self.fd = pid, fd
        self.status: int | None = None

    @classmethod
    def start(cls, produce: Callable[[Callable[[str], Any]], None]) -> _HalfWriter | None:
        """Fork a process that calls ``produce(write)``; None if it cannot
        be started (no memfd, no fork)."""
        try:
            fd = os.memfd_create("zxmem-memgraph", os.MFD_CLOEXEC)
        except (AttributeError, OSError):
            return None
        try:
            pid = os.fork()
        except OSError:
            os.close(fd)
            return None
        if pid == 0:  # never back into the caller's code
            code = 1
            try:
                with open(fd, "w", encoding="utf-8", closefd=False,
                          buffering=1 << 20) as text:
                    produce(text.write)
                code = 0
            finally:
                os._exit(code)
        return cls(pid, fd)

    def copy_to(self, out: TextIO) -> bool:
        """Wait for the helper; write what it wrote to ``out``, or False if
        it failed (then nothing is written).  Into a file written as UTF-8
        the bytes are copied by the kernel (``sendfile``), not decoded here
        and encoded again; the text is the same."""
        _, status = os.waitpid(self.pid, 0)
        self.status = status
        if not os.WIFEXITED(status) or os.WEXITSTATUS(status) != 0:
            return False
        offset = 0
        dest = _utf8_fd(out)
        if dest is not None:
            out.flush()
            size = os.fstat(self.fd).st_size
            try:
                while offset < size:
                    sent = os.sendfile(dest, self.fd, offset, size - offset)
                    if sent <= 0:
                        break
                    offset += sent
            except BrokenPipeError:
                raise
            except OSError:
                pass  # the rest as text: out's own write reports a lasting error
            if offset >= size:
                return True
        # The text is ASCII (ensure_ascii): a byte offset is a character's.
        os.lseek(self.fd, offset, os.SEEK_SET)
        with open(self.fd, encoding="utf-8", closefd=False) as text:
            while chunk := text.read(_FLUSH):
                out.write(chunk)
        return True

    def close(self) -> None:
        """Kill the helper unless it was waited for; free its file."""
        if self.status is None:
            try:
                os.kill(self.pid, signal.SIGKILL)
            except OSError:
                pass
            os.waitpid(self.pid, 0)
            self.status = -1
        os.close(self.fd)


class _DirectWriter:
    """Writes text that ``out`` would pass unchanged straight to the file
    descriptor under it, encoded once.  Through ``out`` (zxmem's SafeWriter
    over standard output) the JSON text was encoded to check it, and again
    by the text layer: about 0.05 s for the 36 MB this process writes at
    1,000 processes.  A text with a character SafeWriter changes (none
    from the encoder, which escapes all but printable ASCII), or a failed
    write, goes on through ``out`` as before."""

    def __init__(self, out: TextIO, fd: int) -> None:
        self.out, self.fd = out, fd

    @classmethod
    def wrap(cls, out: TextIO) -> Callable[[str], Any]:
        """``out.write``, or the write of a direct writer where ``out`` is a
        UTF-8 file (see :func:`_utf8_fd`)."""
        fd = _utf8_fd(out)
        if fd is None:
            return out.write
        out.flush()
        return cls(out, fd).write

    def write(self, text: str) -> None:
        if not text.isascii():
            self.out.write(text)
            self.out.flush()
            return
        data = text.encode("ascii")
        if data.translate(None, _ASCII_OK):
            self.out.write(text)  # escaped there
            self.out.flush()
            return
        view = memoryview(data)
        try:
            while view:
                view = view[os.write(self.fd, view):]
        except BrokenPipeError:
            raise
        except OSError:
            # The rest through ``out``, which reports a lasting error as it does.
            self.out.write(view.tobytes().decode("ascii"))
            self.out.flush()


def _utf8_fd(out: TextIO) -> int | None:
    """The descriptor under ``out`` when ``out`` writes its text there as
    UTF-8 with newlines unchanged (standard output on a POSIX system, also
    through zxmem's SafeWriter: the JSON text, ASCII with every control
    character escaped, is what it passes unchanged), else None."""
    if not hasattr(os, "sendfile") or os.linesep != "\n":
        return None
    try:
        encoding = getattr(out, "encoding", None)
        if not isinstance(encoding, str) or codecs.lookup(encoding).name != "utf-8":
            return None
        fd = out.fileno()
    except (AttributeError, LookupError, OSError, ValueError):
        return None
    return fd if isinstance(fd, int) else None


def dumps(snapshot: Snapshot, **options: bool) -> str:
    """:func:`write_memgraph` into a string."""
    import io

    buf = io.StringIO()
    write_memgraph(snapshot, buf, **options)
    return buf.getvalue()


# ---------------------------------------------------------------------------
# Reading


def _fail(index: int, message: str, where: str | None = None) -> InputError:
    at = f" ({where})" if where else ""
    return InputError(f"memgraph record {index}{at}: {message}")


def _int(rec: dict, key: str, index: int, where: str | None, required: bool = True):
    value = rec.get(key)
    if value is None:
        if required:
            raise _fail(index, f"expected an integer {key!r}", where)
        return None
    if isinstance(value, bool) or not isinstance(value, int):
        raise _fail(index, f"expected an integer {key!r}, found {checked.describe(value)}", where)
    if not 0 <= value < checked.U64:
        raise _fail(index, f"{key!r} is {value}: expected an integer from 0 to 2**64 - 1",
                    where)
    return value


def _str(rec: dict, key: str, index: int, where: str | None, default: str | None = None) -> str:
    value = rec.get(key, default)
    if not isinstance(value, str):
        raise _fail(index, f"expected a string {key!r}", where)
    return value


# A byte count must fit Zircon's uint64 (and the kernel's unsigned long).
_BYTES_LIMIT = 1 << 64


def _check_bytes(values: dict, index: int, where: str | None, prefix: str = "") -> None:
    """Reject a ``*_bytes`` value of ``values`` that is negative or ≥ 2**64.

    Sizes are never negative, and no machine counts 2**64 bytes or more:
    such a value is a damaged or hand-made file, which every view would
    otherwise print (or sum) as if it were memory.
    """
    for key, value in values.items():
        if (
            isinstance(value, int) and not isinstance(value, bool)
            and not 0 <= value < _BYTES_LIMIT and key.endswith("_bytes")
        ):
            raise _fail(index, f"{prefix}{key!r} is {value}: a byte count must be "
                               "between 0 and 2**64 - 1", where)


def _id_koid(value: Any, prefix: str) -> int | None:
    if isinstance(value, str) and value.startswith(prefix):
        tail = value[len(prefix):]
        if tail.isdigit():
            return int(tail)
    return None


def _linux(rec: dict) -> dict | None:
    linux = rec.get("linux")
    return linux if isinstance(linux, dict) else None


def _vmo_from_entry(entry: dict, index: int, where: str | None, label: str) -> Vmo | None:
    """A Vmo from one ``vmos`` entry; None for a bare ``{"koid": N}``.

    ``index``/``where``/``label`` (``vmos[3]``) name the entry in errors.
    """
    koid = entry["koid"]
    linux = _linux(entry)
    if linux is None and set(entry) == {"koid"}:
        return None
    _check_bytes(entry, index, where, f"{label}: ")
    if linux is not None:
        _check_bytes(linux, index, where, f"{label}: linux.")
    parent = entry.get("parent_koid") or 0
    # A kind or mapping count the file does not give is unknown: Fuchsia's
    # records have no kind, and zxmem writes null / leaves the count out.
    kind = (linux or {}).get("kind")
    committed = entry.get("committed_bytes")
    if kind == "phys" and committed == 0:
        committed = None  # device memory: the model's "no RAM" (see _vmo_values)
    known = {
        "koid": koid,
        "name": entry.get("name") if isinstance(entry.get("name"), str) else "",
        "kind": kind,
        "size_bytes": entry.get("size_bytes"),
        "committed_bytes": committed,
        "parent_koid": parent,
        "num_children": entry.get("num_children") or 0,
        "num_mappings": entry.get("num_mappings"),
        "share_count": entry.get("share_count") or 0,
    }
    return _build(Vmo, known, {k: v for k, v in (linux or {}).items() if k != "kind"},
                  f"{label}.")


_STRINGS = checked.checker("tuple[str, ...]")


class _Builder:
    """Collects records (any order) and builds the Snapshot at the end."""

    def __init__(self, source: str) -> None:
        self.source = source
        self.kernel_sizes: dict[str, int] = {}
        self.kernel_linux: dict | None = None
        self.jobs: dict[int, Job] = {}
        self.processes: dict[int, Process] = {}
        self.process_index: dict[int, int] = {}  # koid -> record index
        self.job_index: dict[int, int] = {}
        self.thread_index: dict[int, int] = {}  # process koid -> its first thread's record
        self.vmo_entries: dict[int, dict] = {}  # koid -> the vmos entry self.vmos came from
        self.kernel_index = 0
        self.threads: dict[int, list[Thread]] = {}
        self.vmos: dict[int, Vmo] = {}
        self.meta: dict | None = None
        self.meta_index = 0
        self.ignored = 0
        self.count = 0

    def add(self, rec: Any, index: int) -> None:
        self.count += 1
        if not isinstance(rec, dict):
            raise _fail(index, f"expected an object, found {_kind(rec)}")
        rtype = rec.get("type")
        if not isinstance(rtype, str):
            keys = ", ".join(sorted(map(str, rec))[:5]) or "none"
            raise _fail(index, "not a memgraph record: expected a string 'type' (kernel, j, p, "
                               f"t or __META), found keys {keys}")
        where = rec.get("id") if isinstance(rec.get("id"), str) else None
        try:
            if rtype == "kernel":
                self._kernel(rec, index, where)
            elif rtype == "j":
                self._job(rec, index, where)
            elif rtype == "p":
                self._process(rec, index, where)
            elif rtype == "t":
                self._thread(rec, index, where)
            elif rtype == "__META":
                if self.meta is not None:
                    raise _fail(index, f"a second __META record (the first is record "
                                       f"{self.meta_index})", where)
                self.meta = rec
                self.meta_index = index
            else:
                self.ignored += 1  # other "__" records and unknown types: skipped, as treemap
        except checked.FieldError as exc:
            raise _fail(index, str(exc), where) from None

    def _kernel(self, rec: dict, index: int, where: str | None) -> None:
        rid = _str(rec, "id", index, where)
        if not rid.startswith("kernel/"):
            raise _fail(index, "kernel record id must start with 'kernel/'", where)
        self.kernel_sizes[rid[7:]] = _int(rec, "size_bytes", index, where)
        _check_bytes(rec, index, where)
        linux = _linux(rec)
        if linux is not None and isinstance(linux.get("kernel"), dict):
            _check_bytes(linux["kernel"], index, where, "linux.kernel.")
            self.kernel_linux = linux
            self.kernel_index = index
            self._kernel_stats()  # checks its fields now, naming this record

    def _job(self, rec: dict, index: int, where: str | None) -> None:
        koid = _int(rec, "koid", index, where)
        parent = rec.get("parent")
        linux = _linux(rec) or {}
        if "parent_koid" in linux:
            parent_koid = checked.u64(linux["parent_koid"], "linux.parent_koid")
        elif isinstance(parent, str) and (parent.startswith("kernel/") or parent == ""):
            parent_koid = 0
        else:
            from_id = _id_koid(parent, "j/")
            if from_id is None:
                raise _fail(index, f"job parent must be 'j/KOID' or 'kernel/…', found {parent!r}",
                            where)
            parent_koid = from_id
        known = {"koid": koid, "name": _str(rec, "name", index, where, "<UNKNOWN>"),
                 "parent_koid": parent_koid}
        if koid in self.jobs:
            raise _fail(index, f"job koid {koid} appears twice (also record "
                               f"{self.job_index[koid]})", where)
        self.job_index[koid] = index
        if isinstance(linux.get("cgroup"), dict):
            from zxmem.sources.cgmem import cgroup_from_json

            known["cgroup"] = cgroup_from_json(linux["cgroup"])
        self.jobs[koid] = _build(Job, known, linux)

    def _process(self, rec: dict, index: int, where: str | None) -> None:
        koid = _int(rec, "koid", index, where)
        job_koid = _id_koid(rec.get("parent"), "j/")
        if job_koid is None:
            raise _fail(index, f"process parent must be 'j/KOID', found {rec.get('parent')!r}",
                        where)
        name = _str(rec, "name", index, where, "<UNKNOWN>")
        sizes = {k: _int(rec, k, index, where, required=False) for k in _MEMORY_TOP}
        _check_bytes(sizes, index, where)
        linux = _linux(rec)
        known: dict[str, Any] = {"koid": koid, "name": name, "job_koid": job_koid}
        if linux is not None:
            _check_bytes(linux, index, where, "linux.")
            mem = linux.get("memory")
            if isinstance(mem, dict):
                _check_bytes(mem, index, where, "linux.memory.")
            if mem is None and "memory" in linux:
                known["memory"] = None
            else:
                if mem is not None and not isinstance(mem, dict):
                    raise _fail(index, "linux.memory: expected an object or null, found "
                                       f"{checked.describe(mem)}", where)
                known["memory"] = _build(MemoryCounts, sizes, mem or {}, "",
                                         "linux.memory.")
            if linux.get("mappings") is not None:
                known["mappings"] = _mappings(linux, index, where)
            if linux.get("regions") is not None:
                known["regions"] = _regions(linux["regions"], known.get("mappings"))
            extras = {k: v for k, v in linux.items()
                      if k not in ("memory", "mappings", "mapping_fields", "regions")}
        else:
            # Fuchsia's record: the process name is what its ps shows, so it
            # stands in for the command line; unknown sizes stay unknown.
            has = any(v is not None for v in sizes.values())
            known["memory"] = MemoryCounts(**sizes) if has else None
            known["cmdline"] = (name,)
            extras = {}
        vmos = rec.get("vmos")
        refs = rec.get("vmo_refs")
        unsized = linux.get("unsized_vmos") if linux is not None else None
        if unsized is not None:
            vmos, refs, labels = _with_unsized(vmos, refs, unsized, index, where)
        else:
            labels = None
        if vmos is not None or refs is not None:
            known["vmo_refs"] = self._refs(vmos, refs, index, where, labels)
        hs = rec.get("handle_stats")
        if isinstance(hs, dict):
            known["handle_stats"] = _from_json("Mapping", hs)
        proc = _build(Process, known, extras)
        if koid in self.processes:
            raise _fail(index, f"process koid {koid} appears twice (also record "
                               f"{self.process_index[koid]})", where)
        self.process_index[koid] = index
        self.processes[koid] = proc

    def _refs(self, vmos: Any, refs: Any, index: int, where: str | None,
              labels: list[tuple[str, str]] | None = None) -> tuple[VmoRef, ...]:
        """``labels[i]`` names the i-th VMO and reference in errors (where the
        file has them: ``linux.unsized_vmos`` entries are merged in)."""
        if vmos is None:
            vmos = []
        if not isinstance(vmos, list) or not isinstance(refs if refs is not None else [], list):
            raise _fail(index, "'vmos' and 'vmo_refs' must be arrays", where)
        for i, entry in enumerate(vmos):
            label = labels[i][0] if labels else f"vmos[{i}]"
            if not isinstance(entry, dict):
                raise _fail(index, f"{label}: expected an object with an integer 'koid'", where)
            koid = checked.u64(entry.get("koid"), f"{label}.koid")
            # Every entry is checked (an identical repeat of a VMO another
            # process lists was, with the first); the first occurrence of a
            # koid wins (§11).
            first = self.vmo_entries.get(koid)
            if first is not None and first == entry:
                continue
            vmo = _vmo_from_entry(entry, index, where, label)
            if vmo is not None and koid not in self.vmos:
                self.vmos[koid] = vmo
                self.vmo_entries[koid] = entry
        if refs is None:
            # No vmo_refs: how each VMO is reached is unknown.
            return tuple(VmoRef(e["koid"], ()) for e in vmos)
        out = []
        for i, ref in enumerate(refs):
            label = labels[i][1] if labels else f"vmo_refs[{i}]"
            if not isinstance(ref, dict):
                raise _fail(index, f"{label}: expected an object with an integer 'vmo_koid'",
                            where)
            checked.u64(ref.get("vmo_koid"), f"{label}.vmo_koid")
            via = ref.get("via") or []
            rights = ref.get("handle_rights") or []
            if not isinstance(via, list) or not isinstance(rights, list):
                raise _fail(index, f"{label}: 'via' and 'handle_rights' must be arrays", where)
            linux = _linux(ref)
            if linux is not None and "via" in linux and linux["via"] is None:
                via = []  # written for treemap.py; the real kind is unknown
            if linux is None:  # the common case, without the general builder
                out.append(VmoRef(ref["vmo_koid"], _STRINGS(via, f"{label}.via"),
                                  _STRINGS(rights, f"{label}.handle_rights")))
                continue
            known = {"vmo_koid": ref["vmo_koid"], "via": tuple(via),
                     "handle_rights": tuple(rights)}
            out.append(_build(VmoRef, known, linux, f"{label}."))
        return tuple(out)

    def _thread(self, rec: dict, index: int, where: str | None) -> None:
        koid = _int(rec, "koid", index, where)
        pid = _id_koid(rec.get("parent"), "p/")
        if pid is None:
            raise _fail(index, f"thread parent must be 'p/KOID', found {rec.get('parent')!r}",
                        where)
        state = rec.get("state")
        key = _STATE_KEYS.get(state, "???") if isinstance(state, str) else "???"
        name = _str(rec, "name", index, where, "<UNKNOWN>")
        self.threads.setdefault(pid, []).append(Thread(koid, name, key))
        self.thread_index.setdefault(pid, index)

    def _kernel_stats(self) -> KernelStats | None:
        if self.kernel_linux is not None:
            linux = self.kernel_linux
            cols = {c: linux["kernel"].get(c) for c in _KSTAT_COLUMNS}
            return _build(KernelStats, cols, {k: v for k, v in linux.items() if k != "kernel"},
                          "linux.kernel.", "linux.")
        if not self.kernel_sizes:
            return None
        g = self.kernel_sizes.get
        free_heap = g("heap/free")
        heap, heap_allocated = g("heap"), g("heap/allocated")
        if free_heap is None and heap is not None and heap_allocated is not None:
            free_heap = heap - heap_allocated
        return KernelStats(
            total_bytes=g("physmem"),
            free_bytes=g("free"),
            vmo_bytes=g("vmo"),
            total_heap_bytes=g("heap"),
            free_heap_bytes=free_heap,
            wired_bytes=g("wired"),
            mmu_overhead_bytes=g("mmu"),
            other_bytes=g("other"),
        )

    def _check_tree(self) -> None:
        """Every process's job and every thread's process is in the file, and
        job parents do not go round in a cycle: otherwise the views, which
        walk the tree from its roots, would leave those tasks out without a
        word.  (A job whose parent is missing is a root of its own.)"""
        for koid, job in self.jobs.items():
            seen = {koid}
            k = job.parent_koid
            while k != 0 and k in self.jobs:
                if k in seen:
                    raise _fail(self.job_index[koid], f"job parents form a cycle through job "
                                                      f"{k}", f"j/{koid}")
                seen.add(k)
                k = self.jobs[k].parent_koid
        for koid, proc in self.processes.items():
            if proc.job_koid not in self.jobs:
                raise _fail(self.process_index[koid], f"job {proc.job_koid} is not in the file",
                            f"p/{koid}")
        for pid, threads in self.threads.items():
            if pid not in self.processes:
                raise _fail(self.thread_index[pid], f"process {pid} is not in the file",
                            f"t/{threads[0].koid}")

    def snapshot(self, notes: Iterable[str] = ()) -> Snapshot:
        try:
            return self._snapshot(notes)
        except checked.FieldError as exc:
            raise _fail(self.meta_index, str(exc), "__META") from None

    def _linux_objects(self, linux: dict, vmos: dict[int, Vmo]
                       ) -> tuple[tuple[int, ...], dict[int, tuple[int, ...]]]:
        """The ``linux`` record's objects added to ``vmos``; its hidden objects
        and holders."""
        listed = linux.get("vmos") or []
        if not isinstance(listed, list):
            raise checked.FieldError(f"linux.vmos: expected an array, found "
                                     f"{checked.describe(listed)}")
        for i, entry in enumerate(listed):
            if not isinstance(entry, dict):
                raise checked.FieldError(f"linux.vmos[{i}]: expected an object, found "
                                         f"{checked.describe(entry)}")
            checked.u64(entry.get("koid"), f"linux.vmos[{i}].koid")
            vmo = _vmo_from_entry(entry, self.meta_index, "__META", f"linux.vmos[{i}]")
            if vmo is not None:
                vmos.setdefault(vmo.koid, vmo)
        hidden = checked.value("tuple[int, ...]", linux.get("hidden_vmo_koids") or [],
                               "linux.hidden_vmo_koids")
        raw = linux.get("vmo_holders") or {}
        if not isinstance(raw, dict):
            raise checked.FieldError(f"linux.vmo_holders: expected an object, found "
                                     f"{checked.describe(raw)}")
        holders: dict[int, tuple[int, ...]] = {}
        for k, v in raw.items():
            if not (k.isascii() and k.isdigit() and int(k) < checked.U64):
                raise checked.FieldError(f"linux.vmo_holders: key {checked.describe(k)} "
                                         "is not a VMO koid")
            holders[int(k)] = checked.value("tuple[int, ...]", v, f"linux.vmo_holders.{k}")
        return hidden, holders

    def _snapshot(self, notes: Iterable[str]) -> Snapshot:
        meta = self.meta or {}
        linux = _linux(meta)
        timestamp = meta.get("timestamp") if isinstance(meta.get("timestamp"), str) else None
        extra_notes = list(notes)
        if self.ignored:
            extra_notes.append(f"{self.ignored} records of unknown type ignored")
        if linux is not None and "source" in linux:
            prov = _build(Provenance, {"timestamp": timestamp},
                          {k: v for k, v in linux.items()
                           if k not in ("format", "vmos", "hidden_vmo_koids", "vmo_holders")},
                          "", "linux.")
            if extra_notes:
                prov = replace(prov, notes=prov.notes + tuple(extra_notes))
        else:
            prov = Provenance(source=self.source, timestamp=timestamp, notes=tuple(extra_notes))

        vmos = dict(self.vmos)
        hidden: tuple[int, ...] = ()
        holders: dict[int, tuple[int, ...]] = {}
        if linux is not None:
            hidden, holders = self._linux_objects(linux, vmos)
        self._check_tree()
        processes = []
        for koid in sorted(self.processes):
            p = self.processes[koid]
            threads = tuple(self.threads.get(koid, ()))
            if threads:
                p = replace(p, threads=threads)
            processes.append(p)
        from types import MappingProxyType

        return Snapshot(
            provenance=prov,
            jobs=canonical_jobs(self.jobs),
            processes=tuple(processes),
            kernel=self._kernel_stats(),
            vmos=MappingProxyType(vmos),
            hidden_vmo_koids=hidden,
            vmo_holders=MappingProxyType(holders),
        )


def _with_unsized(vmos: Any, refs: Any, unsized: Any, index: int,
                  where: str | None) -> tuple[list, list, list[tuple[str, str]]]:
    """``vmos`` and ``vmo_refs`` with ``linux.unsized_vmos`` put back in place,
    and for each pair the names the file gives its VMO and reference."""
    vmos = list(vmos) if isinstance(vmos, list) else [] if vmos is None else vmos
    refs = list(refs) if isinstance(refs, list) else [] if refs is None else refs
    if not isinstance(unsized, list) or not isinstance(vmos, list) \
            or not isinstance(refs, list):
        raise _fail(index, "'vmos', 'vmo_refs' and 'linux.unsized_vmos' must be arrays", where)
    if len(vmos) != len(refs):
        raise _fail(index, f"'vmos' has {len(vmos)} entries and 'vmo_refs' {len(refs)}: "
                           "with linux.unsized_vmos they go in pairs", where)
    labels = [(f"vmos[{i}]", f"vmo_refs[{i}]") for i in range(len(vmos))]
    for i, item in enumerate(unsized):
        if not (isinstance(item, list) and len(item) == 3 and isinstance(item[0], int)
                and not isinstance(item[0], bool) and 0 <= item[0] <= len(refs)):
            raise _fail(index, f"linux.unsized_vmos[{i}]: expected [position, VMO, reference] "
                               f"with a position from 0 to {len(refs)}", where)
        vmos.insert(item[0], item[1])
        refs.insert(item[0], item[2])
        labels.insert(item[0], (f"linux.unsized_vmos[{i}][1]", f"linux.unsized_vmos[{i}][2]"))
    return vmos, refs, labels


def _mappings(linux: dict, index: int, where: str | None) -> tuple[MappingRecord, ...]:
    """Mappings from ``linux.mappings`` rows (or objects, keyed by field name).

    Every value is checked (:mod:`zxmem.sources.checked`); rows written by
    this version are checked a column at a time, which costs little even
    for 60,000 mappings.
    """
    rows = linux["mappings"]
    if not isinstance(rows, list):
        raise checked.FieldError(f"linux.mappings: expected an array, found "
                                 f"{checked.describe(rows)}")
    names = linux.get("mapping_fields") or MAPPING_FIELDS
    if not isinstance(names, list | tuple) or not all(isinstance(n, str) for n in names):
        raise checked.FieldError("linux.mapping_fields: expected an array of field names")
    n = len(names)
    if tuple(names) == MAPPING_FIELDS and all(type(r) is list and len(r) == n for r in rows):
        # Written by this version: rows are the constructor's arguments.
        if rows and not _columns_valid(rows):
            for i, row in enumerate(rows):  # find the first bad value to name it
                checked.build(MappingRecord, dict(zip(names, row, strict=True)),
                              f"linux.mappings[{i}].")
                _check_span(row[0], row[1], f"linux.mappings[{i}]")
        return tuple(MappingRecord(*r) for r in rows)
    out = []
    for i, row in enumerate(rows):
        if isinstance(row, dict):
            values = row
        elif isinstance(row, list) and len(row) >= n:
            values = dict(zip(names, row, strict=False))
        else:
            raise checked.FieldError(f"linux.mappings[{i}]: expected an array of {n} values, "
                                     f"found {checked.describe(row)}")
        m = checked.build(MappingRecord, values, f"linux.mappings[{i}].")
        _check_span(m.start, m.end, f"linux.mappings[{i}]")
        out.append(m)
    return tuple(out)


# (column, annotation) of MappingRecord, for the column-at-a-time check.
_MAPPING_TYPES = tuple((i, a) for i, (_n, a, _r) in
                       enumerate(checked.field_types(MappingRecord)))


def _columns_valid(rows: list) -> bool:
    """True when every value of every row fits its Mapping field (C-speed passes)."""
    cols = list(zip(*rows, strict=True))
    for i, ann in _MAPPING_TYPES:
        col = cols[i]
        types = set(map(type, col))
        if ann in ("int", "int | None"):
            allowed = {int} if ann == "int" else {int, type(None)}
            if not types <= allowed:
                return False
            nums = col if type(None) not in types else [v for v in col if v is not None]
            if nums and (min(nums) < 0 or max(nums) >= checked.U64):
                return False
        elif ann in ("str", "str | None"):
            if not types <= ({str} if ann == "str" else {str, type(None)}):
                return False
        else:
            return False  # a field type this check does not know: check row by row
    return all(s <= e for s, e in zip(cols[0], cols[1], strict=True))


def _check_span(start: int, end: int, path: str) -> None:
    if end < start:
        raise checked.FieldError(f"{path}: end {end:#x} is below start {start:#x}")


def _regions(raw: Any, mappings: tuple[MappingRecord, ...] | None) -> tuple[Region, ...]:
    """``linux.regions``, each checked; mapping indices must name a mapping."""
    if not isinstance(raw, list):
        raise checked.FieldError(f"linux.regions: expected an array, found "
                                 f"{checked.describe(raw)}")
    out = []
    count = len(mappings) if mappings is not None else 0
    for i, r in enumerate(raw):
        path = f"linux.regions[{i}]"
        if not isinstance(r, dict):
            raise checked.FieldError(f"{path}: expected an object, found {checked.describe(r)}")
        region = checked.build(Region, r, path + ".")
        _check_span(region.start, region.end, path)
        for j in region.mapping_indices:
            if j >= count:
                raise checked.FieldError(f"{path}.mapping_indices: {j} is not the index of one "
                                         f"of the process's {count} mappings")
        out.append(region)
    return tuple(out)


def _kind(value: Any) -> str:
    if isinstance(value, dict):
        return "an object"
    if isinstance(value, list):
        return "an array"
    if isinstance(value, str):
        return "a string"
    if value is None:
        return "null"
    if isinstance(value, bool):
        return "a boolean"
    return "a number"


def snapshot_from_records(
    recs: Iterable[Any], *, source: str = "fuchsia-memgraph", notes: Iterable[str] = ()
) -> Snapshot:
    """Build a Snapshot from memgraph records (zxmem's or Fuchsia's).

    Raises :class:`InputError` naming the record index for a record that is
    not a memgraph record.  ``source`` is the provenance source used when the
    records carry none (Fuchsia's memgraph).
    """
    builder = _Builder(source)
    for index, rec in enumerate(recs):
        builder.add(rec, index)
    if builder.count == 0:
        raise InputError("memgraph: no records (expected kernel, job and process records)")
    return builder.snapshot(notes)


def is_zxmem(rec: Any) -> bool:
    """True for zxmem's ``__META`` record."""
    return (
        isinstance(rec, dict)
        and rec.get("type") == "__META"
        and isinstance(rec.get("linux"), dict)
        and rec["linux"].get("format") == FORMAT
    )
