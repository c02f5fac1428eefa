"""``ffx profile memory --machine json`` output (spec fuchsia-tools §9.7).

A pure function of already-parsed JSON; :mod:`zxmem.sources.load` reads the
file and hands over any object whose one key is one of the three forms of
ffx's ``ProfileMemoryOutput`` (a serde enum, so externally tagged):

``{"CompleteDigest": {...}}`` (the default, memory_monitor 1 backend)
    ``time`` (monotonic ns), ``total_committed_bytes_in_vmos``, ``kernel``
    (the capture's ``Kernel`` keys, **except** that ``vmo`` holds
    ``kmem.vmo − total_committed_bytes_in_vmos``, saturated at 0),
    ``kmem_stats_compression``, ``processes`` (``koid``, ``name``,
    ``memory`` = ``{private, private_populated, scaled, scaled_populated,
    total, total_populated, vmos}``, ``name_to_vmo_memory`` = group name to
    the same, ``vmos`` = the koids the process references directly),
    ``vmos`` (``koid``, ``name``, ``parent_koid``, ``committed_bytes``,
    ``allocated_bytes`` = the VMO size, ``populated_bytes`` or null),
    ``buckets`` (``[{name, size, vmos}]`` with ``--buckets``, else null) and
    ``total_undigested``.  Everything a capture holds but its process order
    and the processes without VMOs (ffx drops them), so the Snapshot is the
    capture importer's: one root job, VMOs with parents, the kernel stats
    (``vmo_bytes`` put back as ``vmo + total_committed``; unknown when the
    remainder was 0, since ffx saturates it), and ffx's own bucket assignment
    as :attr:`Snapshot.buckets` (each bucket matches exactly its VMO koids).
    PSS/PRIVATE/SHARED are ffx's ``scaled``/``private``/``total − private``.

``{"ProcessDigest": {"process_data": [...], "capture_time": ns}}``
    (``--process-koids`` / ``--process-names``): the same process records
    and no VMO table, no kernel stats (all unknown), no buckets.  The
    processes' VMOs are unknown (``vmo_refs`` None); ``mem`` uses ffx's per-process and
    per-group numbers (:attr:`Snapshot.source_summary`).

``{"ComponentDigest": {...}}`` (memory_monitor 2 backend, 2024+)
    ``kernel`` = ``{"memory_statistics": {total_bytes, free_bytes,
    wired_bytes, …}, "compression_statistics": {...}}``, ``principals`` =
    ``[{id, name, principal_type ("R" runnable / "P" part), committed_private,
    committed_scaled, committed_total, populated_* (the same), attributor,
    processes: ["name (koid)", …], vmos: {group: {count, committed_private,
    …}}}]``, ``undigested`` (bytes) and ``digest`` = ``{"buckets": [{name,
    committed_size, populated_size}]}``.  Memory is attributed to
    principals (components), not processes, and no VMO is listed: each
    principal becomes one process of the Snapshot (koid = principal id), its
    memory the committed bytes (``scaled`` is fractional there: rounded
    down), and ``mem``/``digest`` show ffx's own group and bucket totals.

Unknowns stay ``None``.  Errors are :class:`InputError` lines naming the
form, the record (index and name) and the field.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from types import MappingProxyType
from typing import Any, Literal, overload

from zxmem.errors import InputError
from zxmem.model import Job, KernelStats, MemoryCounts, Process, Provenance, Snapshot, Vmo, VmoRef
from zxmem.sources.checked import MAX_U64, describe, is_u64

TYPE_CHECKING = False
if TYPE_CHECKING:
    from zxmem.digest import SourceDigest

FORMS = ("CompleteDigest", "ProcessDigest", "ComponentDigest")
ROOT_JOB_KOID = 1

# CompleteDigest ``kernel`` keys (the capture's) -> KernelStats fields.
_CAPTURE_KERNEL = {
    "total": "total_bytes",
    "free": "free_bytes",
    "wired": "wired_bytes",
    "total_heap": "total_heap_bytes",
    "free_heap": "free_heap_bytes",
    "mmu": "mmu_overhead_bytes",
    "ipc": "ipc_bytes",
    "other": "other_bytes",
}
# ComponentDigest ``memory_statistics`` keys (fuchsia.kernel.MemoryStats).
_MEMORY_STATS = {
    "total_bytes": "total_bytes",
    "free_bytes": "free_bytes",
    "wired_bytes": "wired_bytes",
    "total_heap_bytes": "total_heap_bytes",
    "free_heap_bytes": "free_heap_bytes",
    "vmo_bytes": "vmo_bytes",
    "mmu_overhead_bytes": "mmu_overhead_bytes",
    "ipc_bytes": "ipc_bytes",
    "other_bytes": "other_bytes",
}
_RESERVED_ROWS = ("Undigested", "Kernel", "Orphaned")


def is_ffx(doc: Any) -> bool:
    """True for a parsed ``ffx profile memory --machine json`` document."""
    return isinstance(doc, dict) and len(doc) == 1 and next(iter(doc)) in FORMS


def _short(value: Any) -> str:
    return describe(value, 60)


def _obj(value: Any, where: str) -> dict:
    if not isinstance(value, dict):
        raise InputError(f"{where}: expected an object, found {_short(value)}")
    return value


def _list(value: Any, where: str) -> list:
    if not isinstance(value, list):
        raise InputError(f"{where}: expected an array, found {_short(value)}")
    return value


@overload
def _bytes(rec: Mapping, key: str, where: str, *, optional: Literal[False] = False) -> int: ...
@overload
def _bytes(rec: Mapping, key: str, where: str, *, optional: bool) -> int | None: ...
def _bytes(rec: Mapping, key: str, where: str, *, optional: bool = False) -> int | None:
    """A byte count field: an integer 0 .. 2**64 - 1 (null only if optional)."""
    if key not in rec:
        if optional:
            return None
        raise InputError(f"{where}: missing '{key}'")
    value = rec[key]
    if value is None and optional:
        return None
    if not is_u64(value):
        raise InputError(f"{where}: '{key}' must be a byte count (an integer 0 .. 2**64 - 1), "
                         f"found {_short(value)}")
    return value


def _number(rec: Mapping, key: str, where: str) -> float:
    """A non-negative number (ComponentDigest's scaled bytes are fractional)."""
    value = rec.get(key)
    if key not in rec:
        raise InputError(f"{where}: missing '{key}'")
    if not (is_u64(value) or (isinstance(value, float) and 0 <= value <= MAX_U64)):
        raise InputError(f"{where}: '{key}' must be a non-negative number of bytes, "
                         f"found {_short(value)}")
    return value


def _koid(rec: Mapping, key: str, where: str) -> int:
    value = rec.get(key)
    if not is_u64(value):
        raise InputError(f"{where}: '{key}' must be a koid (a non-negative integer), "
                         f"found {'nothing' if key not in rec else _short(value)}")
    return value


def _str(rec: Mapping, key: str, where: str) -> str:
    value = rec.get(key)
    if not isinstance(value, str):
        raise InputError(f"{where}: '{key}' must be a string, "
                         f"found {'nothing' if key not in rec else _short(value)}")
    return value


def _koids(value: Any, where: str) -> list[int]:
    if not isinstance(value, list) or not all(is_u64(k) for k in value):
        raise InputError(f"{where}: expected an array of koids, found {_short(value)}")
    return value


def _record(form: str, table: str, i: int, rec: Any) -> str:
    """``ffx CompleteDigest processes[3] "name"`` for messages."""
    where = f"ffx {form} {table}[{i}]"
    if isinstance(rec, dict) and isinstance(rec.get("name"), str):
        where += f" {_short(rec['name'])}"
    return where


def snapshot_from_ffx(doc: Mapping) -> Snapshot:
    """Build a Snapshot from a parsed ``ffx profile memory`` JSON document."""
    if not is_ffx(doc):
        raise InputError("not ffx profile memory JSON: expected an object with one key, "
                         + ", ".join(FORMS))
    form = next(iter(doc))
    body = _obj(doc[form], f"ffx {form}")
    if form == "CompleteDigest":
        return _complete(body)
    if form == "ProcessDigest":
        return _process_digest(body)
    return _component(body)


# ---------------------------------------------------------------------------
# CompleteDigest / ProcessDigest


def _retained(value: Any, where: str) -> dict[str, int]:
    rec = _obj(value, where)
    return {k: _bytes(rec, k, where) for k in ("private", "scaled", "total")}


def _process(form: str, i: int, rec: Any) -> tuple[Process, dict[str, dict[str, int]]]:
    where = _record(form, "processes" if form == "CompleteDigest" else "process_data", i, rec)
    rec = _obj(rec, where)
    koid = _koid(rec, "koid", where)
    name = _str(rec, "name", where)
    mem = _retained(rec.get("memory"), f"{where}: memory")
    if mem["private"] > mem["total"] or mem["scaled"] > mem["total"]:
        raise InputError(f"{where}: memory: private ({mem['private']}) and scaled "
                         f"({mem['scaled']}) cannot exceed total ({mem['total']})")
    groups_doc = _obj(rec.get("name_to_vmo_memory", {}), f"{where}: name_to_vmo_memory")
    groups = {g: _retained(v, f"{where}: name_to_vmo_memory.{_short(g)}")
              for g, v in groups_doc.items()}
    refs = sorted(set(_koids(rec.get("vmos", []), f"{where}: vmos")))
    proc = _root_process(koid, name, mem, vmo_refs=tuple(VmoRef(k, ()) for k in refs))
    return proc, {"": mem, **groups}


def _root_process(koid: int, name: str, mem: dict[str, int], **more: Any) -> Process:
    """A process of the one root job, its memory ffx's private, scaled and
    total bytes (PSS, PRIVATE, and SHARED = total - private)."""
    return Process(
        koid=koid,
        name=name,
        job_koid=ROOT_JOB_KOID,
        cmdline=(name,),
        memory=MemoryCounts(pss_bytes=mem["scaled"], private_bytes=mem["private"],
                            shared_bytes=mem["total"] - mem["private"]),
        **more,
    )


def _kernel_columns(doc: dict, where: str, columns: Mapping[str, str], skip: str | None = None
                    ) -> tuple[dict[str, int | None], dict[str, int | None]]:
    """A kernel statistics object's byte counts, each checked: the kstats
    columns (``columns`` names them) and the rest as ``*_bytes`` extras
    (``skip``: a key left out of both)."""
    cols: dict[str, int | None] = {}
    extra: dict[str, int | None] = {}
    for key in doc:
        value = _bytes(doc, key, where, optional=True)
        if key in columns:
            cols[columns[key]] = value
        elif key != skip:
            extra[key if key.endswith("_bytes") else key + "_bytes"] = value
    return cols, extra


def _kernel_complete(kernel: Any, total_committed: int, notes: list[str]) -> KernelStats:
    where = "ffx CompleteDigest kernel"
    kernel = _obj(kernel, where)
    cols, extra = _kernel_columns(kernel, where, _CAPTURE_KERNEL, skip="vmo")
    remainder = _bytes(kernel, "vmo", where)
    extra["vmo_remainder_bytes"] = remainder
    if remainder:
        cols["vmo_bytes"] = remainder + total_committed
    else:
        cols["vmo_bytes"] = None
        notes.append("kernel VMO bytes unknown: ffx's kernel.vmo (VMO bytes in no process) "
                     "is 0, saturated, so the kernel's total cannot be put back")
    return KernelStats.from_columns(cols, extra)


def _compression(value: Any, where: str, kernel: KernelStats | None) -> KernelStats | None:
    if value is None or kernel is None:
        return kernel
    from dataclasses import replace

    rec = _obj(value, where)
    extra = dict(kernel.extra)
    for k, v in rec.items():
        if isinstance(v, list):  # a histogram (pages_decompressed_within_log_time)
            _koids(v, f"{where}.{k}")
            continue
        extra[f"compression_{k}"] = _bytes(rec, k, where, optional=True)
    return replace(kernel, extra=MappingProxyType(extra))


def _complete_vmos(body: dict, form: str, total_committed: int) -> dict[int, dict]:
    """A CompleteDigest's vmos table by koid, checked against its total."""
    where = f"ffx {form}"
    vmos: dict[int, dict] = {}
    for i, rec in enumerate(_list(body.get("vmos"), f"{where} vmos")):
        vwhere = _record(form, "vmos", i, rec)
        rec = _obj(rec, vwhere)
        koid = _koid(rec, "koid", vwhere)
        if koid in vmos:
            raise InputError(f"{vwhere}: koid {koid} is listed twice")
        vmos[koid] = {
            "name": _str(rec, "name", vwhere),
            "parent_koid": _koid(rec, "parent_koid", vwhere),
            "committed_bytes": _bytes(rec, "committed_bytes", vwhere),
            "allocated_bytes": _bytes(rec, "allocated_bytes", vwhere),
        }
        _bytes(rec, "populated_bytes", vwhere, optional=True)
    committed_sum = sum(v["committed_bytes"] for v in vmos.values())
    if committed_sum != total_committed:
        raise InputError(f"{where}: total_committed_bytes_in_vmos is {total_committed} but "
                         f"the vmos' committed_bytes add up to {committed_sum}")
    return vmos


def _complete(body: dict) -> Snapshot:
    form = "CompleteDigest"
    where = f"ffx {form}"
    time_ns = _bytes(body, "time", where)
    total_committed = _bytes(body, "total_committed_bytes_in_vmos", where)
    notes = ["one root job: ffx profile memory records no job tree",
             "process PSS/PRIVATE/SHARED are ffx's scaled/private/total - private "
             "(committed bytes)",
             f"capture time {time_ns} ns (monotonic)"]
    kernel: KernelStats | None = _kernel_complete(body.get("kernel"), total_committed, notes)
    kernel = _compression(body.get("kmem_stats_compression"),
                          f"{where} kmem_stats_compression", kernel)

    vmos = _complete_vmos(body, form, total_committed)

    processes: list[Process] = []
    seen: set[int] = set()
    for i, rec in enumerate(_list(body.get("processes"), f"{where} processes")):
        proc, _groups = _process(form, i, rec)
        if proc.koid in seen:
            raise InputError(f"{_record(form, 'processes', i, rec)}: koid {proc.koid} is "
                             "listed twice")
        seen.add(proc.koid)
        for ref in proc.vmo_refs or ():
            if ref.vmo_koid not in vmos:
                raise InputError(f"{_record(form, 'processes', i, rec)}: vmos: koid "
                                 f"{ref.vmo_koid} is not in the vmos table")
        processes.append(proc)

    vmo_objs = _vmo_objects(vmos, processes)
    buckets = _buckets(body.get("buckets"), vmos, f"{where} buckets")
    total_undigested = _bytes(body, "total_undigested", where, optional=True)
    if buckets is None:
        notes.append("no buckets: recorded without ffx's --buckets")
    elif total_undigested is not None:
        notes.append(f"ffx's total_undigested: {total_undigested} bytes")
    return Snapshot(
        provenance=Provenance(source="fuchsia-ffx-complete-digest", notes=tuple(notes),
                              job_mode="none", capture_time_ns=time_ns),
        jobs=(Job(ROOT_JOB_KOID, "root", 0),),
        processes=tuple(processes),
        kernel=kernel,
        vmos=MappingProxyType(vmo_objs),
        buckets=buckets,
    )


def _vmo_objects(vmos: dict[int, dict], processes: list[Process]) -> dict[int, Vmo]:
    """Vmo records; share count = processes charged (references and ancestors)."""
    sharers: dict[int, int] = {}
    for p in processes:
        charged: set[int] = set()
        for ref in p.vmo_refs or ():
            k = ref.vmo_koid
            while k in vmos and k not in charged:
                charged.add(k)
                k = vmos[k]["parent_koid"]
        for k in charged:
            sharers[k] = sharers.get(k, 0) + 1
    children: dict[int, int] = {}
    for v in vmos.values():
        if v["parent_koid"] in vmos:
            children[v["parent_koid"]] = children.get(v["parent_koid"], 0) + 1
    return {
        koid: Vmo(koid=koid, name=v["name"], kind="clone" if v["parent_koid"] else "anon",
                  size_bytes=v["allocated_bytes"], committed_bytes=v["committed_bytes"],
                  parent_koid=v["parent_koid"], num_children=children.get(koid, 0),
                  share_count=sharers.get(koid, 0))
        for koid, v in vmos.items()
    }


def _buckets(value: Any, vmos: dict[int, dict], where: str) -> tuple | None:
    """ffx's bucket assignment as BucketSpecs that match their VMO koids."""
    if value is None:
        return None
    from zxmem.digest import BucketSpec

    specs = []
    for i, rec in enumerate(_list(value, where)):
        bwhere = f"{where}[{i}]" + (f" {_short(rec['name'])}" if isinstance(rec, dict)
                                    and isinstance(rec.get("name"), str) else "")
        rec = _obj(rec, bwhere)
        name = _str(rec, "name", bwhere)
        if not name or name in _RESERVED_ROWS:
            raise InputError(f"{bwhere}: 'name' must be a non-empty name other than "
                             f"{', '.join(_RESERVED_ROWS)}")
        size = _bytes(rec, "size", bwhere)
        koids = _koids(rec.get("vmos"), f"{bwhere}: vmos")
        for k in koids:
            if k not in vmos:
                raise InputError(f"{bwhere}: vmos: koid {k} is not in the vmos table")
        total = sum(vmos[k]["committed_bytes"] for k in set(koids))
        if total != size:
            raise InputError(f"{bwhere}: size is {size} but its vmos' committed_bytes add "
                             f"up to {total}")
        specs.append(BucketSpec(index=i, name=name, koids=frozenset(koids),
                                source="ffx buckets"))
    return tuple(specs)


def _summary_of(processes: list[tuple[Process, dict[str, dict[str, int]]]],
                kernel: KernelStats | None = None):
    """A Summary of the source's own numbers; with ``kernel``, a kernel row
    first (heap, wired, mmu, ipc, other: the VMO remainder needs a VMO table)."""
    from dataclasses import replace

    from zxmem.summary import ProcessSummary, Sizes, Summary, kernel_summary

    def sizes(m: Mapping[str, int]) -> Sizes:
        return Sizes(private_bytes=m["private"], scaled_bytes=m["scaled"],
                     total_bytes=m["total"])

    rows = [
        ProcessSummary(koid=p.koid, name=p.name, sizes=sizes(groups[""]),
                       groups={g: sizes(m) for g, m in groups.items() if g})
        for p, groups in processes
    ]
    if kernel is not None:
        stub = Snapshot(provenance=Provenance(source="fuchsia-ffx"), jobs=(), processes=(),
                        kernel=replace(kernel, vmo_bytes=None))
        row = kernel_summary(stub)
        if row is not None:
            rows.insert(0, row)
    return Summary(processes=tuple(rows))


def _process_digest(body: dict) -> Snapshot:
    form = "ProcessDigest"
    where = f"ffx {form}"
    time_ns = _bytes(body, "capture_time", where)
    procs = []
    for i, rec in enumerate(_list(body.get("process_data"), f"{where} process_data")):
        procs.append(_process(form, i, rec))
        if any(p.koid == procs[-1][0].koid for p, _ in procs[:-1]):
            raise InputError(f"{_record(form, 'process_data', i, rec)}: koid "
                             f"{procs[-1][0].koid} is listed twice")
    notes = ["one root job: ffx profile memory records no job tree",
             "a ProcessDigest (ffx --process-koids/--process-names) holds no VMO table "
             "and no kernel stats: VMOs are unknown; mem shows ffx's own numbers",
             f"capture time {time_ns} ns (monotonic)"]
    from dataclasses import replace

    return Snapshot(
        provenance=Provenance(source="fuchsia-ffx-process-digest", notes=tuple(notes),
                              job_mode="none", capture_time_ns=time_ns),
        jobs=(Job(ROOT_JOB_KOID, "root", 0),),
        # The koids of VMOs that are not listed say nothing: no references.
        processes=tuple(replace(p, vmo_refs=None) for p, _ in procs),
        # Every kernel number unknown (a memgraph still gets its kernel root).
        kernel=KernelStats(),
        source_summary=_summary_of(procs),
    )


# ---------------------------------------------------------------------------
# ComponentDigest

_PROCESS_ENTRY = re.compile(r"(.*) \(([0-9]+)\)", re.DOTALL)


def _component_kernel(body: dict, where: str) -> KernelStats | None:
    """A ComponentDigest's kernel memory statistics, if it has them."""
    if body.get("kernel") is None:
        return None
    kdoc = _obj(body["kernel"], f"{where} kernel")
    stats = kdoc.get("memory_statistics")
    if stats is None:
        return None
    swhere = f"{where} kernel.memory_statistics"
    cols, extra = _kernel_columns(_obj(stats, swhere), swhere, _MEMORY_STATS)
    kernel = KernelStats.from_columns(cols, extra)
    return _compression(kdoc.get("compression_statistics"),
                        f"{where} kernel.compression_statistics", kernel)


def _principal(form: str, i: int, rec: object, seen: set[int]
               ) -> tuple[Process, dict[str, dict[str, int]]]:
    """One principal as a process, and its committed bytes by VMO group
    (``""``: the whole principal); ``seen``: the ids before it."""
    pwhere = _record(form, "principals", i, rec)
    rec = _obj(rec, pwhere)
    pid = _koid(rec, "id", pwhere)
    if pid in seen:
        raise InputError(f"{pwhere}: id {pid} is listed twice")
    seen.add(pid)
    name = _str(rec, "name", pwhere)
    mem = {k: int(_number(rec, f"committed_{k}", pwhere))
           for k in ("private", "scaled", "total")}
    if mem["private"] > mem["total"] or mem["scaled"] > mem["total"]:
        raise InputError(f"{pwhere}: committed_private ({mem['private']}) and "
                         f"committed_scaled ({mem['scaled']}) cannot exceed "
                         f"committed_total ({mem['total']})")
    groups: dict[str, dict[str, int]] = {"": mem}
    vmos = _obj(rec.get("vmos", {}), f"{pwhere}: vmos")
    for g, v in vmos.items():
        gwhere = f"{pwhere}: vmos.{_short(g)}"
        v = _obj(v, gwhere)
        groups[g] = {k: int(_number(v, f"committed_{k}", gwhere))
                     for k in ("private", "scaled", "total")}
    members = _list(rec.get("processes", []), f"{pwhere}: processes")
    for j, entry in enumerate(members):
        if not isinstance(entry, str) or not _PROCESS_ENTRY.fullmatch(entry):
            raise InputError(f"{pwhere}: processes[{j}]: expected \"name (koid)\", "
                             f"found {_short(entry)}")
    ptype = rec.get("principal_type")
    if ptype is not None and not isinstance(ptype, str):
        raise InputError(f"{pwhere}: 'principal_type' must be a string, "
                         f"found {_short(ptype)}")
    return _root_process(pid, name, mem, num_threads=None), groups


def _component_digest(body: dict, where: str, notes: list[str]) -> SourceDigest | None:
    """ffx's own digest of a ComponentDigest (with --buckets), or None."""
    from zxmem.digest import SourceDigest

    undigested = _bytes(body, "undigested", where)
    rows: list[tuple[str, int]] = []
    reserved: dict[str, int] = {}
    left_out: list[str] = []
    digest_doc = body.get("digest")
    if digest_doc is not None:
        dwhere = f"{where} digest"
        blist = _list(_obj(digest_doc, dwhere).get("buckets"), f"{dwhere}.buckets")
        for i, rec in enumerate(blist):
            bwhere = f"{dwhere}.buckets[{i}]" + (
                f" {_short(rec['name'])}" if isinstance(rec, dict)
                and isinstance(rec.get("name"), str) else "")
            rec = _obj(rec, bwhere)
            name = _str(rec, "name", bwhere)
            size = _bytes(rec, "committed_size", bwhere)
            _bytes(rec, "populated_size", bwhere, optional=True)
            if name in _RESERVED_ROWS:
                reserved[name] = size
            elif name == "Free" or name.startswith("[Addl]"):
                left_out.append(name)
            else:
                rows.append((name, size))
    if left_out:
        notes.append(f"digest rows that are not buckets left out: {', '.join(left_out)}")
    if digest_doc is None:
        notes.append("no digest: recorded without ffx's --buckets")
        return None
    return SourceDigest(
        rows=tuple(rows),
        undigested_bytes=reserved.get("Undigested", undigested),
        kernel_bytes=reserved.get("Kernel"),
        orphaned_bytes=reserved.get("Orphaned"),
        left_out=tuple(left_out),
    )


def _component(body: dict) -> Snapshot:
    form = "ComponentDigest"
    where = f"ffx {form}"
    notes = ["one root job; each principal (component) is shown as a process whose koid "
             "is the principal id",
             "memory is ffx's committed bytes per principal (scaled rounded down); "
             "the format lists no VMOs"]
    kernel = _component_kernel(body, where)
    if kernel is None:
        notes.append("no kernel statistics in the document")
    else:
        notes.append("mem's kernel row has no vmo remainder: it needs a VMO table")

    procs: list[tuple[Process, dict[str, dict[str, int]]]] = []
    seen: set[int] = set()
    for i, rec in enumerate(_list(body.get("principals"), f"{where} principals")):
        procs.append(_principal(form, i, rec, seen))
    source_digest = _component_digest(body, where, notes)
    return Snapshot(
        provenance=Provenance(source="fuchsia-ffx-component-digest", notes=tuple(notes),
                              job_mode="none"),
        jobs=(Job(ROOT_JOB_KOID, "root", 0),),
        processes=tuple(p for p, _ in procs),
        kernel=kernel,
        source_summary=_summary_of(procs, kernel),
        source_digest=source_digest,
    )
