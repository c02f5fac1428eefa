"""Reading samples back: a sample is a :class:`zxmem.model.Snapshot`.

:func:`read_sample` rebuilds the snapshot of sample ``n`` from the rows valid
at ``n``; :func:`select` turns a ``@`` selector into a sample number;
:func:`stored_form` says what of a snapshot a tier keeps, so that
``read_sample(write(s)) == stored_form(s, tier)``.
"""

from __future__ import annotations

import json
import re
import sqlite3
from bisect import bisect_right
from collections.abc import Collection, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from itertools import chain, repeat
from operator import add, and_, attrgetter, itemgetter, rshift, sub
from types import MappingProxyType

from zxmem.model import (
    CgroupMemory,
    Denied,
    Job,
    KernelStats,
    MemoryCounts,
    Process,
    Provenance,
    Region,
    Snapshot,
    Vmo,
    VmoRef,
)
from zxmem.record import from_columns, replace
from zxmem.store.blobs import (
    BIAS,
    REFS_MAGIC,
    BlobError,
    decode_layout,
    inflate,
    kinds_table,
    ref_rows,
    refs_parts,
)
from zxmem.store.schema import JOB_KEY_BITS, VERSIONED, StoreError, read_span, span_of
from zxmem.store.writer import (
    CGROUP_MAPS,
    CGROUP_SCALARS,
    OBJECTS,
    OWNER_SHIFT,
    SHAPE,
    TIER_NAMES,
    TOTALS,
    encode_text,
    read_strings,
    s64_,
    u64,
)
from zxmem.tasktree import canonical_jobs


@dataclass(frozen=True, slots=True)
class SampleInfo:
    n: int
    time_ns: int
    tier: int
    nproc: int | None
    pss_bytes: int | None

    @property
    def tier_name(self) -> str:
        return TIER_NAMES.get(self.tier, str(self.tier))


def stored_form(snapshot: Snapshot, tier: int, mappings: bool = False) -> Snapshot:
    """What a sample of ``tier`` keeps of ``snapshot``: threads, regions and
    descriptor counts are never kept (the thread count is); the totals tier
    keeps no memory objects, references or mappings either.  The objects
    tier keeps each process's mappings, read back when asked
    (``read_sample(..., mappings=True)``; ``mappings`` here says the same),
    with the regions :func:`zxmem.regions.find_regions` finds in them, as
    every live collection groups them."""
    if mappings and tier == OBJECTS:
        return _stored_with_mappings(snapshot)
    procs = tuple(
        replace(p, threads=(), mappings=None, regions=None, handle_stats=None,
                vmo_refs=p.vmo_refs if tier == OBJECTS else None)
        for p in snapshot.processes)
    if tier == OBJECTS:
        return replace(snapshot, processes=procs)
    return replace(snapshot, processes=procs, vmos=MappingProxyType({}),
                   hidden_vmo_koids=(), vmo_holders=MappingProxyType({}))


def _stored_with_mappings(snapshot: Snapshot) -> Snapshot:
    from zxmem.regions import find_regions

    return replace(snapshot, processes=tuple(
        replace(p, threads=(), handle_stats=None,
                regions=None if p.mappings is None else find_regions(p.mappings))
        for p in snapshot.processes))


def samples(conn: sqlite3.Connection) -> list[SampleInfo]:
    return [SampleInfo(*r) for r in conn.execute(
        "SELECT n, time_ns, tier, nproc, pss_bytes FROM samples ORDER BY n")]


def _valid(conn: sqlite3.Connection, table: str, cols: str, n: int, span: int) -> list[tuple]:
    # One range of the index on first: no row is valid for more than its
    # table's span.
    return conn.execute(
        f"SELECT {cols} FROM {table} WHERE first > ?2 AND first <= ?1 "
        "AND (last IS NULL OR last >= ?1)", (n, n - span_of(table, span))).fetchall()


class _Strings:
    """The interned strings a sample uses, read at once (:meth:`fill`).
    ``cache`` maps None to None, so a column that may be NULL maps through
    it in C (``map(cache.__getitem__, column)``)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.cache: dict[int | None, str | None] = {None: None}

    def fill(self, ids: Iterable[int | None]) -> None:
        want = [i for i in set(ids) if i not in self.cache]
        self.cache.update(read_strings(self.conn, want))  # type: ignore[arg-type]

    def __call__(self, i: int | None) -> str | None:
        return self.cache[i]

    def text(self, i: int) -> str:
        """A string that is never NULL (a name, a path)."""
        text = self.cache[i]
        if text is None:
            raise ValueError("a string id is NULL where a string is required")
        return text


def read_sample(conn: sqlite3.Connection, n: int, name: str = "store", *,
                objects: bool = True, objects_of: Collection[int] | None = None,
                mappings: bool | Collection[int] = False) -> Snapshot:
    """Sample ``n`` as a Snapshot (a :class:`StoreError` if there is none).

    ``objects`` False reads an objects sample as if it were a totals one (no
    memory objects, no references: what a view of process totals needs,
    ``ps``), at the cost of a totals sample.  ``objects_of`` (PIDs) reads
    the references of those processes only, and only the objects they reach
    (what a view of one process needs, ``vmos``): every other process's
    ``vmo_refs`` is None.  ``mappings``: also the mappings (and regions) of
    every process (True) or of the processes with these PIDs
    (:func:`with_mappings`); views that print none leave them out, as
    reading them is most of the time of reading a large objects sample.
    The rows are read in one read transaction, so a recorder writing
    meanwhile is not seen half-way."""
    from zxmem.runtime import paused_gc

    own = not conn.in_transaction
    if own:
        conn.execute("BEGIN")
    try:
        # Hundreds of thousands of acyclic objects: the cycle collector's
        # passes over them free nothing.
        with paused_gc(settle=True):
            snap, bases = _read_sample(conn, n, name, objects, objects_of)
            if mappings is not False:
                snap = with_mappings(conn, n, snap, None if mappings is True else mappings,
                                     name, bases=bases)
            return snap
    finally:
        if own:
            conn.execute("COMMIT")


def _read_sample(conn: sqlite3.Connection, n: int, name: str, objects: bool,
                 objects_of: Collection[int] | None
                 ) -> tuple[Snapshot, dict[int, int] | None]:
    """Sample ``n``, and each owner's base koid when its objects were read."""
    row = conn.execute("SELECT timestamp, capture_ns, tier, prov, has_kernel, extra "
                       "FROM samples WHERE n = ?", (n,)).fetchone()
    if row is None:
        raise StoreError(f"{name}: no sample {n}")
    timestamp, capture_ns, tier, prov_id, has_kernel, extra_id = row
    span = read_span(conn)
    t = _Totals(conn, n, span, bool(has_kernel))
    objs = _Objects()
    if tier == OBJECTS and objects:
        objs.read(conn, n, span, t.proc_keys, objects_of)
    else:
        extra_id = None
    s = _Strings(conn)
    s.fill(chain((prov_id, extra_id), t.string_ids(), objs.string_ids()))
    hidden: tuple[int, ...] = ()
    holders: dict[int, tuple[int, ...]] = {}
    if extra_id is not None:
        e = json.loads(s.text(extra_id))
        hidden = tuple(e["hidden"])
        holders = {k: tuple(v) for k, v in e["holders"]}
    return Snapshot(provenance=_provenance(s.text(prov_id), timestamp, capture_ns),
                    jobs=canonical_jobs(t.jobs(s)), processes=t.processes(s, objs.refs),
                    kernel=t.kernel(s) if has_kernel else None,
                    vmos=MappingProxyType(objs.vmos(s)), hidden_vmo_koids=hidden,
                    vmo_holders=MappingProxyType(holders)), objs.bases


def _provenance(text: str, timestamp: str | None, capture_ns: int | None) -> Provenance:
    pd = json.loads(text)
    pd["denied"] = tuple(Denied(*d) for d in pd.get("denied", ()))
    pd["notes"] = tuple(pd.get("notes", ()))
    known = Provenance.__record_fields__
    return Provenance(timestamp=timestamp, capture_time_ns=capture_ns,
                      **{k: v for k, v in pd.items() if k in known})


class _Totals:
    """The rows of a sample's processes, jobs and kernel values."""

    def __init__(self, conn: sqlite3.Connection, n: int, span: int, has_kernel: bool) -> None:
        def valid(table: str) -> list[tuple]:
            return _valid(conn, table, "ent, " + ", ".join(VERSIONED[table]), n, span)

        self.info = valid("proc_info")
        self.mem = {r[0]: r[1:] for r in valid("proc_mem")}
        self.job_rows = valid("job_info")
        self.jvals: dict[int, dict[int, object]] = {}  # job entity -> name id -> value
        for ent, value in valid("job_values"):
            self.jvals.setdefault(ent >> JOB_KEY_BITS, {})[ent & _KEY_MASK] = value
        self.kvals = valid("kernel_values") if has_kernel else []
        self.proc_keys: dict[int, tuple[int, int | None]] = {}
        if self.info:
            q = ",".join(str(int(r[0])) for r in self.info)
            self.proc_keys = {i: (p, st) for i, p, st in conn.execute(
                f"SELECT id, pid, start FROM procs WHERE id IN ({q})")}
        self.job_keys: dict[int, tuple[int, int]] = {}
        if self.job_rows:
            q = ",".join(str(int(r[0])) for r in self.job_rows)
            self.job_keys = {i: (k, p) for i, k, p in conn.execute(
                f"SELECT id, koid, path FROM job_ids WHERE id IN ({q})")}

    def string_ids(self) -> list[int | None]:
        ids = [r[1] for r in self.info] + [r[5] for r in self.info]
        ids += [x for r in self.job_rows for x in (r[1], r[3])] + [r[0] for r in self.kvals]
        ids += [k for values in self.jvals.values() for k in values]
        return ids + [p for _k, p in self.job_keys.values()]

    def processes(self, s: _Strings, refs: Mapping[int, tuple[VmoRef, ...]]
                  ) -> tuple[Process, ...]:
        out = []
        cmdlines: dict[int, tuple[str, ...]] = {}  # forks share theirs: parsed once
        for ent, name_id, job, ppid, uid, cmd, kthread in self.info:
            pid, start = self.proc_keys[ent]
            m = self.mem[ent]
            cmdline = None if cmd is None else cmdlines.get(cmd)
            if cmdline is None and cmd is not None:
                cmdline = cmdlines[cmd] = tuple(json.loads(s.text(cmd)))
            out.append(Process(
                koid=pid, name=s.text(name_id), job_koid=_u64(job), ppid=ppid, uid=uid,
                cmdline=cmdline,
                state=m[11], kernel_thread=bool(kthread),
                memory=MemoryCounts(*m[1:11]) if m[0] else None, num_threads=m[12],
                vm_pte_bytes=m[13], start_time_ticks=start, vmo_refs=refs.get(ent)))
        out.sort(key=attrgetter("koid"))
        return tuple(out)

    def jobs(self, s: _Strings) -> dict[int, Job]:
        out: dict[int, Job] = {}
        for ent, name_id, parent, state, charged in self.job_rows:
            koid, path = self.job_keys[ent]
            out[_u64(koid)] = Job(koid=_u64(koid), name=s.text(name_id),
                                  parent_koid=_u64(parent), path=s.text(path),
                                  state=s.text(state), charged_bytes=charged,
                                  cgroup=_cgroup(self.jvals.get(ent), s))
        return out

    def kernel(self, s: _Strings) -> KernelStats:
        kcols: dict[str, object] = {}
        for key_id, value in self.kvals:
            group, _, key = s.text(key_id).partition(":")
            if group == "col":
                kcols[key] = value
            else:
                kmaps = kcols.setdefault(group, {})
                if isinstance(kmaps, dict):
                    kmaps[key] = value
        return KernelStats(**{k: MappingProxyType(v) if isinstance(v, dict) else v
                              for k, v in kcols.items()})  # type: ignore[arg-type]


_KEY_MASK = (1 << JOB_KEY_BITS) - 1


class _Objects:
    """A sample's memory objects as columns (koids, then the value columns
    of ``vmos``) and its processes' references (entity -> VmoRefs)."""

    def __init__(self) -> None:
        self.koids: list[int] = []
        self.columns: Sequence[Sequence] = [()] * len(VERSIONED["vmos"])
        self.refs: dict[int, tuple[VmoRef, ...]] = {}
        self.bases: dict[int, int] | None = None  # owner -> base koid, once read

    def read(self, conn: sqlite3.Connection, n: int, span: int,
             proc_keys: Mapping[int, tuple[int, int | None]],
             objects_of: Collection[int] | None) -> None:
        if objects_of is not None:
            want = set(objects_of)
            rows, bases, blobs = objects_reached(
                conn, n, span, [ent for ent, (pid, _st) in proc_keys.items() if pid in want])
            if rows:
                cols = list(zip(*rows, strict=True))
                self.koids, self.columns = list(cols[0]), cols[1:]
        else:
            self.koids, self.columns, bases = object_columns(conn, n, span)
            blobs = dict(_valid(conn, "vmo_refs", "ent, refs", n, span))
        self.refs = RefDecoder().decode(blobs, bases)
        self.bases = bases

    def string_ids(self) -> Iterable[int | None]:
        c = self.columns
        return set(c[0]).union(c[1], c[10])  # name, kind, path

    def vmos(self, s: _Strings) -> dict[int, Vmo]:
        """The objects by koid, in koid order (a mapping's order is not part
        of its value, but it keeps output stable)."""
        koids = self.koids
        if not koids:
            return {}
        (name, kind, size, committed, parent, children, nmaps, shares, dev, inode, path,
         swap) = self.columns
        look = s.cache.__getitem__
        vmos = from_columns(Vmo, len(koids), koids, map(look, name), map(look, kind), size,
                            committed, _u64s(parent), children, nmaps, shares, _u64s(dev),
                            _u64s(inode), map(look, path), swap)
        # Sorting the koids alone (ints, no key function) is faster than
        # sorting (koid, Vmo) pairs; a koid read twice keeps its last Vmo,
        # as a stable sort of the pairs into a dict did.
        by_koid = dict(zip(koids, vmos, strict=True))
        order = sorted(by_koid)
        return dict(zip(order, map(by_koid.__getitem__, order), strict=True))


def _u64s(column: Sequence[int | None]) -> Sequence[int | None]:
    """:func:`u64` of each value of a column (as it is when none is negative)."""
    if min(filter(None, column), default=0) >= 0:
        return column
    return [u64(v) for v in column]


def object_columns(conn: sqlite3.Connection, n: int, span: int
                   ) -> tuple[list[int], Sequence[Sequence], dict[int, int]]:
    """The memory objects valid at objects sample ``n``: their koids, the
    value columns of ``vmos`` in the same order, and each owner's base
    koid."""
    cols = "ent, " + ", ".join(VERSIONED["vmos"])
    kept = _valid(conn, "vmos", cols, n, span)
    layouts = {ent: decode_layout(blob)
               for ent, blob in _valid(conn, "vmo_base", "ent, layout", n, span)}
    bases = {ent: layout[0] for ent, layout in layouts.items()}
    ents, columns = _anon_columns(conn, n, span, kept)
    koids = [_u64(r[0]) for r in kept]
    # An owner's objects in key order take the layout's offsets in turn.
    owners = list(map(rshift, ents, repeat(OWNER_SHIFT)))
    i = 0
    while i < len(owners):
        owner = owners[i]
        end = bisect_right(owners, owner, i)
        base, offsets = layouts[owner]
        if end - i > len(offsets):
            raise ValueError(f"process entity {owner} owns {end - i} anonymous objects and "
                             f"its layout has {len(offsets)}")
        koids += map(add, offsets[:end - i], repeat(base))
        i = end
    return koids, columns, bases


# What most anonymous objects hold in the columns of ``vmos`` past
# ``committed`` but ``swap`` (a live collection's per-mapping objects hold
# nothing else there): each row says only whether it does.  (INTEGER
# affinity stores a whole REAL as an integer, so ``= 0`` is exact.)
_ANON_SHAPE = {"children": 0, "mappings": 1, "shares": 1, "dev": None, "inode": None,
               "path": None}
_ANON_COLS = ("ent, name, kind, size, committed, parent, swap, CASE WHEN "
              + " AND ".join(f"{c} = {v}" if v is not None else f"{c} IS NULL"
                             for c, v in _ANON_SHAPE.items())
              + " THEN NULL ELSE rowid END")


def _anon_columns(conn: sqlite3.Connection, n: int, span: int, kept: list[tuple]
                  ) -> tuple[Sequence[int], list[Sequence]]:
    """The entities of the anonymous objects valid at ``n`` in key order,
    and the value columns of ``vmos`` of the rows ``kept`` (of ``vmos``:
    entity, then those columns), then of those objects.  The shape columns
    (:data:`_ANON_SHAPE`) of anonymous objects are read only for the rows
    that do not hold the usual values: a value read costs as much as
    building the object."""
    rows = _valid(conn, "anon_vmos", _ANON_COLS, n, span)
    rows.sort(key=itemgetter(0))
    # The kept rows as anonymous ones (their shape columns apart).
    head = [r[:6] + r[12:] + (None,) for r in kept]
    cols = list(zip(*head, *rows, strict=True)) or [() for _ in range(8)]
    ents, name, kind, size, committed, parent, swap, odd = cols
    count = len(rows)
    shape = {c: [r[i] for r in kept] + [v] * count
             for i, (c, v) in enumerate(_ANON_SHAPE.items(), 6)}
    others = list(filter(None, odd))
    if others:
        at = {}  # rowid -> its row (found in C, each after the one before)
        i = len(kept)
        for rowid in others:
            i = at[rowid] = odd.index(rowid, i)
        names = tuple(_ANON_SHAPE)
        for start in range(0, len(others), 500):
            listed = ",".join(str(int(r)) for r in others[start:start + 500])
            for rowid, *values in conn.execute(f"SELECT rowid, {', '.join(names)} "
                                               f"FROM anon_vmos WHERE rowid IN ({listed})"):
                for c, v in zip(names, values, strict=True):
                    shape[c][at[rowid]] = v
    return ents[len(kept):], [name, kind, size, committed, parent, shape["children"],
                              shape["mappings"], shape["shares"], shape["dev"],
                              shape["inode"], shape["path"], swap]


# How the writer spells a reference reached through a mapping alone (most
# of them), and any other reference's tail after its koid (via, rights, fd
# and the mark of a koid relative to the process's base).
_PLAIN_TAIL = b',["MAPPING"],[],null'
_TAIL = re.compile(rb',(\[[^\[\]]*\],\[[^\[\]]*\],(?:null|-?\d+))(,1)?\]')
_Kind = tuple[tuple[str, ...], tuple[str, ...], object]  # via, rights, fd
# A key (RefDecoder.keys): kind 0's is its koid; kind k's is
# ``k << 66 | koid + 2**64``.  Each kind's keys keep to their own range for
# every koid from -2**64 to 2**65 (what a damaged relative koid can come to).
_KIND_SHIFT = 66
_KIND_1 = 1 << _KIND_SHIFT  # the least key of kind 1
_KOID_MASK = _KIND_1 - 1
_KOID_BIAS = 1 << 64


def _kind_add(kind: int) -> int:
    """What kind ``kind`` adds to a koid to make its key."""
    return (kind << _KIND_SHIFT) + _KOID_BIAS if kind else 0


class RefDecoder:
    """Processes' references from their ``vmo_refs`` blobs
    (:func:`zxmem.store.writer.refs_blob`).  The same object reached the
    same way from many processes (a library, memory shared since a fork)
    is one immutable VmoRef.

    A blob as the writer spells it is decoded without a Python step per
    reference: each row's tail becomes a number (a kind, and whether the
    koid is relative), so the rows parse as one flat JSON array of
    numbers, and the koids and keys are computed by ``map`` in C; any
    other spelling is decoded row by row (:meth:`_keys_json`)."""

    def __init__(self) -> None:
        self.kinds: list[_Kind] = [(("MAPPING",), (), None)]
        self.kind_ids: dict[_Kind, int] = {self.kinds[0]: 0}
        self.by_text: dict[bytes, int] = {}
        self.tables: dict[bytes, list[int]] = {}  # kinds table text -> kind ids

    def decode(self, blobs: Mapping[int, bytes], bases: Mapping[int, int]
               ) -> dict[int, tuple[VmoRef, ...]]:
        """Entity -> references, of each entity's blob (``bases``: each
        owner's base koid, 0 for a process without one)."""
        keys = {ent: self.keys(blob, bases.get(ent, 0)) for ent, blob in blobs.items()}
        made = self.build(set().union(*keys.values()))
        get = made.__getitem__
        return {ent: tuple(map(get, k)) for ent, k in keys.items()}

    def build(self, keys: set[int]) -> dict[int, VmoRef]:
        """A VmoRef for each key (:meth:`keys`).  Those of kind 0 (reached
        through a mapping alone: most) are their koids, and take their
        other fields from one value each."""
        if not keys:
            return {}
        plain = list(filter(_KIND_1.__gt__, keys))
        n = len(plain)
        via, rights, fd = self.kinds[0]
        made = dict(zip(plain, from_columns(VmoRef, n, plain, repeat(via, n), repeat(rights, n),
                                            repeat(fd, n)), strict=True))
        ks = list(filter(_KIND_1.__le__, keys))
        if ks:
            kinds = list(map(rshift, ks, repeat(_KIND_SHIFT)))
            vias, rightss, fds = ([k[i] for k in self.kinds] for i in range(3))
            koids = list(map(sub, map(and_, ks, repeat(_KOID_MASK)), repeat(_KOID_BIAS)))
            made.update(zip(ks, from_columns(
                VmoRef, len(ks), koids, list(map(vias.__getitem__, kinds)),
                list(map(rightss.__getitem__, kinds)), list(map(fds.__getitem__, kinds))),
                strict=True))
        return made

    def keys(self, blob: bytes, base: int) -> list[int]:
        """The key of each reference of a blob, in order: its koid and its
        kind (an index in ``kinds``) in one number (a number is cheaper to
        make, hash and free than a pair): the koid itself for kind 0 (a
        mapping alone: most references), else ``kind << 66 | koid + 2**64``
        (:func:`_kind_add`).  The kind goes above the koid's bits, not
        below: ``koid << 32 | kind`` hashed alike in its low bits (Python
        hashes an int modulo 2**61 - 1) for every koid, and sets and dicts
        of them probed at length."""
        text = inflate(blob)
        if text[:1] == REFS_MAGIC:
            return self._keys_binary(text, base)
        flat = self._flat(text)
        if flat is None:
            return self._keys_json(text, base)
        koids, codes = flat[0::2], flat[1::2]
        if len(koids) != len(codes):
            raise ValueError("a vmo_refs blob has a row without its kind")
        # What each code adds to the koid written: its kind, shifted, and the
        # base when the koid is relative (an odd code).
        adds = {code: _kind_add(code >> 1) + (code & 1) * base for code in set(codes)}
        return list(map(add, koids, map(adds.__getitem__, codes)))

    def _keys_binary(self, raw: bytes, base: int) -> list[int]:
        """:meth:`keys` of a blob of the binary spelling
        (:mod:`zxmem.store.blobs`): two maps in C.  Processes share most
        kinds tables (``[[["MAPPING"],[],null]]``): each is read once."""
        koids, codes, table = refs_parts(raw)
        ids = self.tables.get(table)
        if ids is None:
            ids = self.tables[table] = [self._kind(k) for k in kinds_table(table)]
        rel = base - BIAS
        adds = [_kind_add(k) + rel * odd for k in ids for odd in (0, 1)]
        try:
            return list(map(add, koids, map(adds.__getitem__, codes)))
        except IndexError:
            raise BlobError("a references blob names a kind its table does not hold") from None

    def _flat(self, text: bytes) -> list | None:
        """``[koid, code, koid, code...]`` of a blob spelt as the writer
        spells it (code: twice the kind, plus 1 for a relative koid); None
        for another spelling.  Each row's tail and the ``],[`` after it
        become ``,code,``: the rows run together as one array."""
        t = text.replace(_PLAIN_TAIL + b"],[", b",0,").replace(_PLAIN_TAIL + b",1],[", b",1,")
        for tail, code in ((_PLAIN_TAIL + b"]]", b",0]]"), (_PLAIN_TAIL + b",1]]", b",1]]")):
            if t.endswith(tail):
                t = t[:-len(tail)] + code
                break
        i = t.find(b',["')
        if i >= 0:
            t = self._coded(t, i)
        if t == b"[]":
            return []
        if not (t.startswith(b"[[") and t.endswith(b"]]") and t.count(b"[") == 2):
            return None
        flat = json.loads(t)[0]
        return flat if isinstance(flat, list) else None

    def _coded(self, t: bytes, i: int) -> bytes:
        """``t`` with each remaining row tail, from ``i`` on, as its code."""
        parts: list[bytes] = []
        at = 0
        while i >= 0:
            m = _TAIL.match(t, i)
            if m is None:
                break  # left as it is: _flat finds the blob is not as written
            code = 2 * self._kind_of(m[1]) + (m[2] is not None)
            parts.append(t[at:i])
            at = m.end()
            if t.startswith(b",[", at):  # the next row
                parts.append(b",%d," % code)
                at += 2
            else:
                parts.append(b",%d]" % code)
            i = t.find(b',["', at)
        parts.append(t[at:])
        return b"".join(parts)

    def _kind_of(self, tail: bytes) -> int:
        k = self.by_text.get(tail)
        if k is None:
            via, rights, fd = json.loads(b"[" + tail + b"]")
            k = self.by_text[tail] = self._kind((tuple(via), tuple(rights), fd))
        return k

    def _kind(self, kind: _Kind) -> int:
        k = self.kind_ids.get(kind)
        if k is None:
            k = self.kind_ids[kind] = len(self.kinds)
            self.kinds.append(kind)
        return k

    def _keys_json(self, text: bytes, base: int) -> list[int]:
        return [(r[0] + base if len(r) > 4 else r[0])
                + _kind_add(self._kind((tuple(r[1]), tuple(r[2]), r[3])))
                for r in json.loads(text)]


def objects_reached(conn: sqlite3.Connection, n: int, span: int, ents: list[int]
                    ) -> tuple[list[tuple], dict[int, int], dict[int, bytes]]:
    """The objects of :func:`object_columns` as rows (koid, then the value
    columns), each owner's base koid and the references (entity -> blob),
    of the processes ``ents`` only, with only the objects they reach."""
    cols = "ent, " + ", ".join(VERSIONED["vmos"])
    listed = ",".join(str(int(e)) for e in ents)
    refs: dict[int, bytes] = dict(conn.execute(
        f"SELECT ent, refs FROM vmo_refs WHERE {_where('vmo_refs', n, span)} "
        f"AND ent IN ({listed})").fetchall()) if ents else {}
    layouts = {ent: decode_layout(blob)
               for ent, blob in _valid(conn, "vmo_base", "ent, layout", n, span)}
    bases = {ent: layout[0] for ent, layout in layouts.items()}
    need: set[int] = set()
    for ent, blob in refs.items():
        base = bases.get(ent, 0)
        need.update(r[0] + base if len(r) > 4 else r[0] for r in ref_rows(blob))
    # Objects kept by koid (files, shared memory, objects no one owns).
    vmo_rows = []
    koids = sorted(need)
    for start in range(0, len(koids), 500):
        chunk = ",".join(str(s64_(k)) for k in koids[start:start + 500])
        vmo_rows += [(u64(r[0]),) + r[1:] for r in conn.execute(
            f"SELECT {cols} FROM vmos WHERE {_where('vmos', n, span)} AND ent IN ({chunk})")]
    # Anonymous ones: the owner whose layout gives the koid; the owner's
    # objects in key order take the layout's offsets in turn.
    at: dict[int, dict[int, int]] = {}  # owner -> index in its layout -> koid
    for owner, (base, offsets) in layouts.items():
        for i, offset in enumerate(offsets):
            if base + offset in need:
                at.setdefault(owner, {})[i] = base + offset
    if at:
        owners = ",".join(str(int(o)) for o in sorted(at))
        rows = sorted(conn.execute(
            f"SELECT {cols} FROM anon_vmos WHERE {_where('anon_vmos', n, span)} "
            f"AND (ent >> {OWNER_SHIFT}) IN ({owners})"))
        count: dict[int, int] = {}
        for r in rows:
            owner = r[0] >> OWNER_SHIFT
            i = count.get(owner, 0)
            count[owner] = i + 1
            koid = at[owner].get(i)
            if koid is not None:
                vmo_rows.append((koid,) + r[1:])
    return vmo_rows, bases, refs


def _where(table: str, n: int, span: int) -> str:
    """The SQL condition of :func:`_valid` (rows of ``table`` valid at ``n``)."""
    low = n - span_of(table, span)
    return f"first > {int(low)} AND first <= {int(n)} AND (last IS NULL OR last >= {int(n)})"


def _u64(value: int) -> int:
    """:func:`u64` of a column that is never NULL."""
    return value + (1 << 64) if value < 0 else value


def _cgroup(values: dict[int, object] | None, s: _Strings) -> CgroupMemory | None:
    """A job's CgroupMemory from its job_values rows (None: none recorded)."""
    if not values:
        return None
    named = {s.text(k): v for k, v in values.items()}
    shape_text = named.pop(SHAPE, None)
    if not isinstance(shape_text, str):
        raise StoreError(f"a job's cgroup values have no {SHAPE!r} row")
    shape = json.loads(shape_text)
    order = shape["order"]
    scalars = {name: named[name] for name in CGROUP_SCALARS if name in named}
    maps: dict[str, Mapping] = {}
    for group in CGROUP_MAPS:
        if group in order:
            maps[group] = MappingProxyType({k: named[f"{group}:{k}"] for k in order[group]})
    if "pressure" in order:
        maps["pressure"] = MappingProxyType({
            kind: MappingProxyType({k: named[f"pressure:{kind}:{k}"] for k in keys})
            for kind, keys in order["pressure"]})
    return CgroupMemory(version=shape["version"],
                        missing=tuple((str(f), str(why)) for f, why in shape["missing"]),
                        **scalars, **maps)  # type: ignore[arg-type]


# --------------------------------------------------------------------------
# Mappings (objects samples of schema 4 on)


def with_mappings(conn: sqlite3.Connection, n: int, snapshot: Snapshot,
                  pids: Collection[int] | None = None, name: str = "store", *,
                  bases: Mapping[int, int] | None = None) -> Snapshot:
    """``snapshot`` (sample ``n``) with the mappings sample ``n`` holds of
    each process (``pids``: of these only) and the regions found in them;
    a process without a row keeps ``mappings`` None (a totals sample holds
    none; an objects sample none of a process whose maps were not read).
    ``bases``: every owner's base koid at ``n``, when already read."""
    row = conn.execute("SELECT tier FROM samples WHERE n = ?", (n,)).fetchone()
    if row is None or row[0] != OBJECTS or not snapshot.processes:
        return snapshot
    from zxmem.store.maps import BlobError, entry, parse, string_ids

    span = read_span(conn)
    wanted = [p for p in snapshot.processes if pids is None or p.koid in pids]
    if not wanted:
        return snapshot
    boot = snapshot.provenance.boot_id
    ents = _entities(conn, boot, [(p.koid, p.start_time_ticks) for p in wanted])
    only = "" if pids is None else \
        f" AND ent IN ({','.join(str(int(e)) for e in ents.values())})"
    lo = n - span_of("mappings", span)
    try:
        blobs = dict(conn.execute(
            "SELECT ent, maps FROM mappings WHERE first > ?2 AND first <= ?1 "
            f"AND (last IS NULL OR last >= ?1){only}", (n, lo)))
        if not blobs:
            return snapshot
        # Processes a workload forks have equal blobs: each is parsed once.
        docs = {blob: parse(blob) for blob in set(blobs.values())}
        if bases is None:
            bases = {ent: decode_layout(layout)[0] for ent, layout in conn.execute(
                "SELECT ent, layout FROM vmo_base WHERE first > ?2 AND first <= ?1 "
                f"AND (last IS NULL OR last >= ?1){only}",
                (n, n - span_of("vmo_base", span)))}
        s = _Strings(conn)
        s.fill(i for doc in docs.values() for i in string_ids(doc))
        entries: dict[int, tuple] = {}  # processes share most entries: parsed once

        def entry_of(i: int) -> tuple:
            e = entries.get(i)
            if e is None:
                e = entries[i] = entry(s.text(i))
            return e

        out = _with_maps(snapshot.processes, ents, blobs, docs, bases, entry_of)
    except (BlobError, KeyError, TypeError, IndexError, ValueError) as exc:
        raise StoreError(f"{name}@{n}: cannot read the mappings: "
                         f"{exc if isinstance(exc, BlobError) else repr(exc)}") from None
    return replace(snapshot, processes=tuple(out))


def _with_maps(processes: Sequence[Process], ents: Mapping[tuple[int, int | None], int],
               blobs: Mapping[int, bytes], docs: Mapping[bytes, list],
               bases: Mapping[int, int], entry_of) -> list[Process]:
    """Each process with the mappings of its blob (``blobs``: by entity,
    ``docs``: each blob parsed) and their regions; a process without a
    blob as it is.  A blob is prepared once (:func:`zxmem.store.maps.
    prepare`) and built for each process's base; its regions are found
    once per layout."""
    from zxmem.regions import find_regions
    from zxmem.store.maps import build, layout_key, prepare

    out = []
    prepared: dict[bytes, tuple] = {}  # blob -> (its columns, its layout key)
    regions: dict[tuple, tuple[Region, ...]] = {}  # layout -> its regions
    for p in processes:
        ent = ents.get((p.koid, p.start_time_ticks))
        if ent is None or ent not in blobs:
            out.append(p)
            continue
        blob = blobs[ent]
        prep = prepared.get(blob)
        if prep is None:
            doc = docs[blob]
            prep = prepared[blob] = (prepare(doc, entry_of), layout_key(doc))
        maps = build(prep[0], bases.get(ent))
        found = regions.get(prep[1])
        if found is None:
            found = regions[prep[1]] = find_regions(maps)
        out.append(replace(p, mappings=maps, regions=found))
    return out


def _entities(conn: sqlite3.Connection, boot: str | None,
              keys: list[tuple[int, int | None]]) -> dict[tuple[int, int | None], int]:
    """The process entities of (PID, start time) pairs of one boot."""
    row = conn.execute("SELECT id FROM strings WHERE s = ?",
                       (encode_text(boot),)).fetchone() if boot is not None else None
    # A boot the strings do not hold matches no process (-1 is no id).
    boot_id = None if boot is None else row[0] if row else -1
    want = set(keys)
    out: dict[tuple[int, int | None], int] = {}
    pids = sorted({pid for pid, _start in keys})
    for i in range(0, len(pids), 500):
        chunk = pids[i:i + 500]
        marks = ",".join("?" * len(chunk))
        for ent, b, pid, start in conn.execute(
                f"SELECT id, boot, pid, start FROM procs WHERE pid IN ({marks})", chunk):
            if b == boot_id and (pid, start) in want:
                out[(pid, start)] = ent
    return out


def objects_around(conn: sqlite3.Connection, n: int) -> tuple[int | None, int | None]:
    """The objects samples nearest before and after sample ``n`` that hold
    mappings (None: there is none on that side)."""
    from zxmem.store.schema import mappings_from

    lo = mappings_from(conn)
    before = conn.execute("SELECT max(n) FROM samples WHERE n < ? AND n >= ? AND tier = ?",
                          (n, lo, OBJECTS)).fetchone()[0]
    after = conn.execute("SELECT min(n) FROM samples WHERE n > ? AND n >= ? AND tier = ?",
                         (n, lo, OBJECTS)).fetchone()[0]
    return before, after


def no_mappings_reason(conn: sqlite3.Connection, n: int, what: str = "mappings") -> str | None:
    """Why sample ``n`` holds no ``what`` ("mappings" or "memory objects")
    of any process, naming the nearest samples that do; None when it is an
    objects sample that holds them."""
    from zxmem.store.schema import mappings_from

    row = conn.execute("SELECT tier FROM samples WHERE n = ?", (n,)).fetchone()
    if row is None:
        return None
    if row[0] == OBJECTS and (what != "mappings" or n >= mappings_from(conn)):
        return None
    if what == "mappings":
        before, after = objects_around(conn, n)
    else:
        before = conn.execute("SELECT max(n) FROM samples WHERE n < ? AND tier = ?",
                              (n, OBJECTS)).fetchone()[0]
        after = conn.execute("SELECT min(n) FROM samples WHERE n > ? AND tier = ?",
                             (n, OBJECTS)).fetchone()[0]
    if row[0] == OBJECTS:
        why = (f"sample {n} was recorded before this store kept mappings "
               "(by a zxmem older than store schema 4)")
    else:
        why = (f"sample {n} is a totals sample and holds no {what} (zxmem record keeps "
               "them in every --objects-every-th sample)")
    near = [f"{b} (before)" for b in (before,) if b is not None]
    near += [f"{a} (after)" for a in (after,) if a is not None]
    if not near:
        return f"{why}; no sample of this store holds them"
    noun = "sample" if len(near) == 1 else "samples"
    return f"{why}; the nearest objects {noun} with them: {' and '.join(near)}"


# --------------------------------------------------------------------------
# Selectors: @first, @last, @N, @-2h, @2026-12-03T10:00

_RELATIVE = re.compile(r"-(\d+(?:\.\d+)?)(s|m|h|d|w)")
_UNIT_S = {"s": 1, "m": 60, "h": 3600, "d": 86400, "w": 604800}


def parse_duration(text: str) -> float:
    """``10s``, ``5m``, ``2h``, ``7d``, ``1w`` or plain seconds; ValueError."""
    m = re.fullmatch(r"(\d+(?:\.\d+)?)(s|m|h|d|w)?", text.strip())
    if not m:
        raise ValueError(f"not a duration: {text!r} (use e.g. 10s, 5m, 2h, 7d)")
    return float(m.group(1)) * _UNIT_S[m.group(2) or "s"]


def parse_time(text: str, now_s: float) -> float:
    """Seconds since the epoch of ``-2h`` (before now) or an ISO time
    (local time unless it names a zone, as ``Z`` or ``+01:00``)."""
    m = _RELATIVE.fullmatch(text)
    if m:
        return now_s - float(m.group(1)) * _UNIT_S[m.group(2)]
    iso = text[:-1] + "+00:00" if text.endswith(("Z", "z")) else text
    try:
        when = datetime.fromisoformat(iso)
    except ValueError:
        raise ValueError(f"not a time: {text!r} (use first, last, a sample number, "
                         "-2h or 2026-12-03T10:00)") from None
    if when.tzinfo is None:
        when = when.astimezone()  # local time
    return when.timestamp()


def select(conn: sqlite3.Connection, selector: str, now_s: float, name: str = "store") -> int:
    """The sample number a selector names (a StoreError if none)."""
    first, last = conn.execute("SELECT min(n), max(n) FROM samples").fetchone()
    if first is None:
        raise StoreError(f"{name}: the store holds no samples yet")
    if selector in ("", "last"):
        return last
    if selector == "first":
        return first
    if selector.isascii() and selector.isdigit():
        n = int(selector)
        if not conn.execute("SELECT 1 FROM samples WHERE n = ?", (n,)).fetchone():
            raise StoreError(f"{name}@{selector}: no sample {n} (the store holds "
                             f"samples {first} to {last})")
        return n
    try:
        when = parse_time(selector, now_s)
    except ValueError as exc:
        raise StoreError(f"{name}@{selector}: {exc}") from None
    row = conn.execute("SELECT n FROM samples WHERE time_ns <= ? ORDER BY time_ns DESC, n DESC "
                       "LIMIT 1", (int(when * 1e9),)).fetchone()
    if row is None:
        t0 = conn.execute("SELECT time_ns FROM samples WHERE n = ?", (first,)).fetchone()[0]
        raise StoreError(f"{name}@{selector}: no sample at or before "
                         f"{format_time(int(when * 1e9))}; the first is from "
                         f"{format_time(t0)}")
    return row[0]


def format_time(time_ns: int) -> str:
    """UTC, to the second: ``2026-12-03T10:00:00Z``."""
    t = datetime.fromtimestamp(time_ns / 1e9, tz=timezone.utc)
    return t.strftime("%Y-%m-%dT%H:%M:%SZ")


__all__ = ["SampleInfo", "TOTALS", "OBJECTS", "read_sample", "samples", "select",
           "stored_form", "with_mappings", "objects_around", "no_mappings_reason",
           "parse_duration", "parse_time", "format_time"]
