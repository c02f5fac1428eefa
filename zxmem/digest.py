"""Buckets: where memory goes by component (spec fuchsia-tools §9.4, §9.9).

A *bucket file* is a JSON array of ``{"name", "process", "vmo"}`` objects, the
format of Fuchsia's ``buckets.json``.  ``process`` and ``vmo`` are regular
expressions, each a string or a list of strings (a list means any of them);
an absent, ``null`` or empty pattern matches every name (§9.4: "empty string
means .*").  Other keys (``event_code``) are ignored, except one Linux
extension: ``kind``, a pattern of the same form matched against the VMO's
kind (``file``, ``anon``, ``clone``, ``memfd``, ``shmem``, ``sysv``,
``dmabuf``; :data:`zxmem.model.VMO_KINDS`), because on Linux a name alone
cannot tell a tmpfs file from a file on disk.

Assignment is that of Fuchsia's host digest scripts (``scripts/memory/
digest.py``, §9.9), which differs from the on-device C++ digester only in the
loop order:

* patterns match the **whole** name (``re.fullmatch``);
* **process-major**: for each process in snapshot order, for each bucket in
  file order, each VMO the process references directly (not its ancestors)
  that is still unassigned and whose name (and kind) matches goes to the
  bucket — so a VMO shared by several processes goes to the first bucket
  that matches for the first process that references it;
* VMOs with no committed bytes are skipped (they stay unassigned but are in
  no row); on Linux a VMO whose committed bytes are unknown (``None``) is
  skipped the same way and counted in :attr:`Digest.unknown_vmos`, except
  device memory (kind ``phys``), which uses no RAM;
* buckets with the same name are one bucket (the scripts key them by name).

Then three rows the bucket file cannot define (their names are reserved):

``Undigested``
    the committed bytes of the referenced VMOs no bucket took, broken down by
    *sharing pool*: the set of processes that reference the VMO.
``Kernel``
    ``wired + total_heap + mmu + ipc + other`` of the kernel stats
    (on Linux the ``kstats -m`` columns, spec linux-kernel B.5); ``None``
    (no row) when any of them is unknown.
``Orphaned``
    kernel VMO bytes not found in any process: ``kmem.vmo`` minus the bucket
    and Undigested bytes (the C++ digester's definition; it equals the
    scripts' ``vmo − Σ committed`` when every VMO is referenced by a
    process, as in a capture).  It may be negative (the scripts keep the
    sign; on Linux it goes negative when processes' anonymous memory is
    shared after ``fork`` and so counted once per process).  ``None``
    (unknown) when any VMO's committed bytes are unknown, as for an
    unprivileged user on Linux: the difference would absorb them.

Nothing here reads files or formats numbers; :mod:`zxmem.views.digest`
prints a :class:`Digest`.
"""

from __future__ import annotations

import json
import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from itertools import filterfalse
from operator import attrgetter
from typing import Any

from zxmem.errors import ZxmemError
from zxmem.model import Process, Snapshot
from zxmem.record import Record, from_columns

UNDIGESTED = "Undigested"
KERNEL = "Kernel"
ORPHANED = "Orphaned"
RESERVED = (UNDIGESTED, KERNEL, ORPHANED)

# The default bucket file for Linux snapshots, in the package's data folder.
LINUX_BUCKETS = "linux-buckets.json"


@dataclass(frozen=True)
class BucketSpec:
    """One bucket definition; a ``None`` pattern matches everything."""

    index: int  # position in its file (0-based), for messages
    name: str
    process: re.Pattern[str] | None = None
    vmo: re.Pattern[str] | None = None
    kind: re.Pattern[str] | None = None
    source: str = ""  # the file it came from
    # The VMO koids the bucket holds, when a tool already assigned them
    # (``ffx profile memory --buckets``): then only those VMOs match.
    koids: frozenset[int] | None = None

    def matches_process(self, name: str) -> bool:
        return self.process is None or self.process.fullmatch(name) is not None

    def matches_vmo(self, name: str, kind: str | None) -> bool:
        if self.vmo is not None and self.vmo.fullmatch(name) is None:
            return False
        if self.kind is None:
            return True
        # An unknown kind (a Fuchsia VMO) matches no kind pattern.
        return kind is not None and self.kind.fullmatch(kind) is not None


# ---------------------------------------------------------------------------
# Bucket files


def _describe(value: Any) -> str:
    text = json.dumps(value, ensure_ascii=True)
    return text if len(text) <= 60 else text[:57] + "..."


def _pattern(
    value: Any, key: str, where: str
) -> re.Pattern[str] | None:
    """Compile a pattern given as a string or a list of strings."""
    if value is None:
        return None
    if isinstance(value, str):
        parts = [value]
    elif isinstance(value, list) and all(isinstance(v, str) for v in value):
        parts = value
    else:
        raise ZxmemError(f"{where}: '{key}' must be a regular expression or a list of them, "
                         f"found {_describe(value)}")
    for part in parts:
        try:
            re.compile(part)
        except re.error as exc:
            raise ZxmemError(
                f"{where}: invalid {key} regular expression {_describe(part)}: {exc}"
            ) from None
    if not any(parts):
        return None  # "" (or [] / [""]) is ".*" (§9.4)
    # Each alternative grouped on its own, so "a|b" in one element and a list
    # ["a", "b"] mean the same and no element can reach into its neighbour.
    # An empty element of a longer list is an alternative that matches only
    # the empty name, as joining the list with "|" makes it.
    joined = parts[0] if len(parts) == 1 else "|".join(f"(?:{p})" for p in parts)
    try:
        return re.compile(joined)
    except re.error as exc:  # e.g. a global flag that is no longer first
        raise ZxmemError(f"{where}: invalid {key} regular expression "
                         f"{_describe(value)}: {exc}") from None


def parse_buckets(doc: Any, source: str = "buckets") -> tuple[BucketSpec, ...]:
    """Bucket definitions from a parsed bucket file.

    Raises :class:`ZxmemError` naming ``source``, the bucket's index and name,
    and what is wrong with it.
    """
    if not isinstance(doc, list):
        raise ZxmemError(f"{source}: expected a JSON array of buckets "
                         f"({{\"name\", \"process\", \"vmo\"}}), found {_describe(doc)}")
    specs = []
    for i, entry in enumerate(doc):
        if not isinstance(entry, dict):
            raise ZxmemError(f"{source}: bucket {i}: expected an object with 'name', "
                             f"'process' and 'vmo', found {_describe(entry)}")
        name = entry.get("name")
        if "name" not in entry or name is None:
            raise ZxmemError(f"{source}: bucket {i}: missing 'name'")
        if not isinstance(name, str) or not name:
            raise ZxmemError(f"{source}: bucket {i}: 'name' must be a non-empty string, "
                             f"found {_describe(name)}")
        where = f"{source}: bucket {i} {_describe(name)}"
        if name in RESERVED:
            raise ZxmemError(f"{where}: the name is reserved for the digest's own row "
                             f"({', '.join(RESERVED)})")
        specs.append(BucketSpec(
            index=i,
            name=name,
            process=_pattern(entry.get("process"), "process", where),
            vmo=_pattern(entry.get("vmo"), "vmo", where),
            kind=_pattern(entry.get("kind"), "kind", where),
            source=source,
        ))
    return tuple(specs)


def load_buckets(data: bytes | str, source: str = "buckets") -> tuple[BucketSpec, ...]:
    """Parse a bucket file's text (see :func:`parse_buckets` for errors)."""
    try:
        text = data.decode("utf-8") if isinstance(data, bytes) else data
    except UnicodeDecodeError as exc:
        raise ZxmemError(f"{source}: invalid UTF-8 at byte {exc.start}") from None
    try:
        doc = json.loads(text)
    except json.JSONDecodeError as exc:
        raise ZxmemError(f"{source}: invalid JSON at line {exc.lineno} column {exc.colno}: "
                         f"{exc.msg.lower()}") from None
    except RecursionError:
        # '[[[[...': the parser recurses once per level; one line, no traceback.
        from zxmem.sources.load import nesting_error

        raise ZxmemError(nesting_error(source, text)) from None
    except ValueError as exc:
        # An integer past Python's int-string conversion limit (4,300 digits).
        raise ZxmemError(f"{source}: invalid JSON ({str(exc).splitlines()[0][:100]})") from None
    return parse_buckets(doc, source)


# Bucket files are a few kB (Fuchsia's largest is under 100 kB): a file
# past this is not one (``--buckets /dev/zero``); $ZXMEM_MAX_INPUT_BYTES
# overrides it.
BUCKET_FILE_LIMIT = 16 << 20


def read_bucket_file(path: str) -> tuple[BucketSpec, ...]:
    """Read and parse a bucket file; a file that cannot be read, or is larger
    than :data:`BUCKET_FILE_LIMIT` bytes, is an error."""
    from zxmem.sources.load import input_limit, read_limited

    try:
        with open(path, "rb") as f:
            data = read_limited(f, path, input_limit(BUCKET_FILE_LIMIT))
    except OSError as exc:
        raise ZxmemError(f"{path}: {exc.strerror}") from None
    return load_buckets(data, path)


def default_linux_buckets() -> tuple[BucketSpec, ...]:
    """The bucket file zxmem ships for Linux (``zxmem/data/linux-buckets.json``)."""
    from importlib import resources

    data = resources.files("zxmem").joinpath("data").joinpath(LINUX_BUCKETS).read_bytes()
    return load_buckets(data, LINUX_BUCKETS)


# ---------------------------------------------------------------------------
# The digest


class Assigned(Record):
    """One VMO in a bucket, and the process through which it was assigned
    (a record, not a dataclass: a whole machine's digest makes tens of
    thousands, built from columns)."""

    vmo_koid: int
    process_koid: int
    committed_bytes: int


@dataclass(frozen=True)
class Bucket:
    name: str
    size_bytes: int
    vmos: tuple[Assigned, ...] = ()


@dataclass(frozen=True)
class Pool:
    """Undigested VMOs referenced by exactly this set of processes."""

    process_koids: tuple[int, ...]  # ordered by full name, ``name[koid]``
    size_bytes: int
    vmo_koids: tuple[int, ...]


@dataclass(frozen=True)
class Digest:
    buckets: tuple[Bucket, ...]  # file order, one per distinct name
    undigested: tuple[Pool, ...]  # larger pools first, then more bytes first
    undigested_bytes: int
    kernel_bytes: int | None
    orphaned_bytes: int | None
    vmo_count: int | None  # VMOs in the snapshot (None: the source has no VMO table)
    unknown_vmos: int  # referenced VMOs skipped because committed is unknown
    process_names: dict[int, str]  # koid -> name, for the processes in pools
    unknown_size_bytes: int = 0  # their size (VMO size, not resident), where known
    unknown_unsized: int = 0  # how many of them have no known size either
    orphaned_unknown: bool = False  # Orphaned is None because of unknown VMOs

    def rows(self) -> list[tuple[str, int]]:
        """Every row as (name, bytes): buckets, Undigested, Kernel, Orphaned.

        Unknown rows (no kernel stats) are left out; zero rows are kept.
        """
        out = [(b.name, b.size_bytes) for b in self.buckets]
        out.append((UNDIGESTED, self.undigested_bytes))
        if self.kernel_bytes is not None:
            out.append((KERNEL, self.kernel_bytes))
        if self.orphaned_bytes is not None:
            out.append((ORPHANED, self.orphaned_bytes))
        return out

    @property
    def undigested_vmo_koids(self) -> frozenset[int]:
        return frozenset(k for pool in self.undigested for k in pool.vmo_koids)


def full_name(process: Process) -> str:
    """``name[koid]``, how the digest scripts name a process."""
    return f"{process.name}[{process.koid}]"


def _refs(process: Process) -> list[int]:
    """The VMO koids a process references directly, each once, in order."""
    if not process.vmo_refs:
        return []
    return list(dict.fromkeys(map(_KOID, process.vmo_refs)))


_KOID = attrgetter("vmo_koid")
_VMO_KOID = _KOID


def kernel_bytes(snapshot: Snapshot) -> int | None:
    """``wired + total_heap + mmu + ipc + other``, or None if any is unknown."""
    k = snapshot.kernel
    if k is None:
        return None
    parts = (k.wired_bytes, k.total_heap_bytes, k.mmu_overhead_bytes, k.ipc_bytes,
             k.other_bytes)
    known = [p for p in parts if p is not None]
    return sum(known) if len(known) == len(parts) else None


def _assign(snapshot: Snapshot, specs: Sequence[BucketSpec], proc_refs: list[list[int]],
            sizes: dict[str, int], members: dict[str, list[Assigned]], assigned: set[int],
            unknown: set[int]) -> None:
    """Each VMO to the first bucket that accepts it and a process referencing
    it (``sizes``, ``members`` and ``assigned`` filled; ``proc_refs``: each
    process's :func:`_refs`); VMOs of unknown size are added to
    ``unknown``."""
    get_vmo = snapshot.vmos.get
    # Which buckets' VMO patterns accept a (name, kind): computed once per
    # distinct pair, so the loop below is a dict lookup per VMO.
    vmo_match: dict[tuple[str, str | None, int], tuple[int, ...]] = {}
    by_koid = any(s.koids is not None for s in specs)
    # bucket name -> (vmo koids, process koids, committed bytes), in order
    found: dict[str, tuple[list[int], list[int], list[int]]] = {n: ([], [], []) for n in sizes}
    for p, refs in zip(snapshot.processes, proc_refs, strict=True):
        if not refs:
            continue
        eligible = [i for i, s in enumerate(specs) if s.matches_process(p.name)]
        if not eligible:
            continue
        first: dict[tuple[int, ...], tuple[list[int], list[int], list[int]] | None] = {}
        for koid in filterfalse(assigned.__contains__, refs):
            vmo = get_vmo(koid)
            if vmo is None:
                continue
            committed = vmo.committed_bytes
            if not committed:  # 0: nothing to assign; None: unknown
                if committed is None and vmo.kind != "phys":  # device memory: no RAM
                    unknown.add(koid)
                continue
            key = (vmo.name, vmo.kind, koid if by_koid else 0)
            accepting = vmo_match.get(key)
            if accepting is None:
                accepting = vmo_match[key] = tuple(
                    i for i, s in enumerate(specs) if s.matches_vmo(vmo.name, vmo.kind)
                    and (s.koids is None or koid in s.koids))
            if accepting in first:
                into = first[accepting]
            else:
                chosen = _first_common(eligible, accepting)
                into = first[accepting] = None if chosen is None else found[specs[chosen].name]
            if into is None:
                continue
            into[0].append(koid)
            into[1].append(p.koid)
            into[2].append(committed)
            assigned.add(koid)
    for name, (koids, pkoids, committed_bytes) in found.items():
        sizes[name] += sum(committed_bytes)
        members[name] += from_columns(Assigned, len(koids), koids, pkoids, committed_bytes)


def _undigested_pools(snapshot: Snapshot, proc_refs: list[list[int]], assigned: set[int],
                      unknown: set[int]) -> tuple[list[Pool], dict[int, str]]:
    """The VMOs no bucket took, by sharing pool (every process that references
    the VMO), larger pools first; and the names of the pools' processes.
    VMOs of unknown size are added to ``unknown``."""
    vmos = snapshot.vmos
    sharers: dict[int, list[Process]] = {}
    for p, refs in zip(snapshot.processes, proc_refs, strict=True):
        for koid in filterfalse(assigned.__contains__, refs):
            vmo = vmos.get(koid)
            if vmo is None:
                continue
            if vmo.committed_bytes is None:
                if vmo.kind != "phys":
                    unknown.add(koid)
                continue
            if vmo.committed_bytes == 0:
                continue
            sharers.setdefault(koid, []).append(p)
    pools: dict[tuple[int, ...], list[int]] = {}
    pool_names: dict[int, str] = {}
    for koid, procs in sharers.items():
        procs.sort(key=full_name)
        pools.setdefault(tuple(q.koid for q in procs), []).append(koid)
        for q in procs:
            pool_names[q.koid] = q.name
    pool_list = [
        Pool(key, sum(vmos[k].committed_bytes or 0 for k in ks), tuple(ks))
        for key, ks in pools.items()
    ]
    # Larger sharing pools first, then more bytes (a stable sort keeps the
    # order the pools were met in for ties, as the scripts do).
    pool_list.sort(key=lambda pool: (-len(pool.process_koids), -pool.size_bytes))
    return pool_list, pool_names


def compute_digest(snapshot: Snapshot, specs: Sequence[BucketSpec]) -> Digest:
    """Assign the snapshot's VMOs to buckets (module docstring)."""
    vmos = snapshot.vmos
    names: list[str] = list(dict.fromkeys(s.name for s in specs))
    sizes = dict.fromkeys(names, 0)
    members: dict[str, list[Assigned]] = {n: [] for n in names}
    assigned: set[int] = set()
    unknown: set[int] = set()
    proc_refs = [_refs(p) for p in snapshot.processes]
    _assign(snapshot, specs, proc_refs, sizes, members, assigned, unknown)

    pool_list, pool_names = _undigested_pools(snapshot, proc_refs, assigned, unknown)
    undigested = sum(pool.size_bytes for pool in pool_list)

    kern = kernel_bytes(snapshot)
    from zxmem.summary import unknown_vmo_koids

    orphaned = None
    blind = bool(unknown_vmo_koids(snapshot))
    if snapshot.kernel is not None and snapshot.kernel.vmo_bytes is not None and not blind:
        orphaned = snapshot.kernel.vmo_bytes - sum(sizes.values()) - undigested
    unknown_sizes = [vmos[k].size_bytes for k in unknown]

    return Digest(
        buckets=tuple(
            Bucket(n, sizes[n], tuple(sorted(members[n], key=_VMO_KOID)))
            for n in names
        ),
        undigested=tuple(pool_list),
        undigested_bytes=undigested,
        kernel_bytes=kern,
        orphaned_bytes=orphaned,
        vmo_count=len(vmos),
        unknown_vmos=len(unknown),
        unknown_size_bytes=sum(x or 0 for x in unknown_sizes),
        unknown_unsized=unknown_sizes.count(None),
        orphaned_unknown=blind and snapshot.kernel is not None
        and snapshot.kernel.vmo_bytes is not None,
        process_names=pool_names,
    )


def _first_common(eligible: list[int], accepting: tuple[int, ...]) -> int | None:
    """The first bucket (in file order) in both lists (both ascending)."""
    if not accepting:
        return None
    acc = set(accepting)
    for i in eligible:
        if i in acc:
            return i
    return None


def combine(*groups: Iterable[BucketSpec]) -> tuple[BucketSpec, ...]:
    """Bucket lists one after another (earlier ones take precedence)."""
    out: list[BucketSpec] = []
    for g in groups:
        out.extend(g)
    return tuple(out)


@dataclass(frozen=True)
class SourceDigest:
    """Bucket totals a source computed itself, without a VMO table to redo
    them from (ffx's ComponentDigest): ``rows`` are ``(name, bytes)`` in the
    source's order, the reserved rows (Undigested, Kernel, Orphaned) apart."""

    rows: tuple[tuple[str, int], ...]
    undigested_bytes: int
    kernel_bytes: int | None = None
    orphaned_bytes: int | None = None
    left_out: tuple[str, ...] = ()  # the source's rows that are not buckets (Free, [Addl]…)


def digest_from_source(snapshot: Snapshot, source: SourceDigest) -> Digest:
    """A :class:`Digest` of the totals a source computed (no VMOs, no pools).

    Kernel falls back to the snapshot's kernel stats; Orphaned, when the
    source has no such row, is kernel VMO bytes minus the rows, as in
    :func:`compute_digest`, and unknown when the kernel's VMO bytes are.
    """
    names: list[str] = list(dict.fromkeys(n for n, _ in source.rows))
    sizes = dict.fromkeys(names, 0)
    for n, size in source.rows:
        sizes[n] += size
    kern = source.kernel_bytes if source.kernel_bytes is not None else kernel_bytes(snapshot)
    orphaned = source.orphaned_bytes
    k = snapshot.kernel
    if orphaned is None and k is not None and k.vmo_bytes is not None:
        orphaned = k.vmo_bytes - sum(sizes.values()) - source.undigested_bytes
    return Digest(
        buckets=tuple(Bucket(n, sizes[n]) for n in names),
        undigested=(),
        undigested_bytes=source.undigested_bytes,
        kernel_bytes=kern,
        orphaned_bytes=orphaned,
        vmo_count=None,
        unknown_vmos=0,
        process_names={},
    )
