"""Writing samples: only what changed since the previous sample.

:class:`Writer` keeps, in memory, the rows valid at the newest sample (the
"open" rows, ``last IS NULL``; each holds a ``reserve`` its closing clears).
A new sample is compared with them: a value that is the same adds nothing, a
changed or vanished one closes its row at the previous sample, a changed or
new one opens a row.  Each sample is one
transaction, so a recorder killed at any point loses at most that sample;
after a failed write (disk full) the in-memory state is reloaded from the
store, which still holds the last sample that committed.
"""

from __future__ import annotations

import json
import sqlite3
import zlib
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import fields
from itertools import repeat
from operator import add, attrgetter, mul

from zxmem.model import INODE_KOID_BASE, CgroupMemory, KernelStats, Provenance, Snapshot
from zxmem.store import maps, schema
from zxmem.store.blobs import BIAS, encode_columns, encode_layout
from zxmem.store.schema import JOB_KEY_BITS, VERSIONED

TOTALS = 0
OBJECTS = 1
TIER_NAMES = {TOTALS: "totals", OBJECTS: "objects"}

_MISSING = object()
_U64 = 1 << 64
_S63 = 1 << 63

# Provenance fields kept per sample in their own columns, not in its JSON.
_PROV_OWN = ("timestamp", "capture_time_ns")


def s64(value: int | None) -> int | None:
    """A 64-bit unsigned identifier (a koid, a dev) as SQLite's signed integer."""
    if value is not None and value >= _S63:
        return value - _U64
    return value


def s64_(value: int) -> int:
    """:func:`s64` of a value that is never None."""
    return value - _U64 if value >= _S63 else value


def u64(value: int | None) -> int | None:
    """Inverse of :func:`s64`."""
    if value is not None and value < 0:
        return value + _U64
    return value


def encode_text(text: str) -> bytes:
    return text.encode("utf-8", "surrogatepass")


def decode_text(raw: bytes) -> str:
    return bytes(raw).decode("utf-8", "surrogatepass")


def read_strings(conn: sqlite3.Connection, ids: Sequence[int]) -> Iterator[tuple[int, str]]:
    """(id, text) of the interned strings ``ids``, 500 per query (SQLite's
    bound-parameter limit is 999 on older builds)."""
    for start in range(0, len(ids), 500):
        chunk = ids[start:start + 500]
        q = ",".join("?" * len(chunk))
        for i, s in conn.execute(f"SELECT id, s FROM strings WHERE id IN ({q})", chunk):
            yield i, decode_text(s)


def provenance_json(prov: Provenance) -> str:
    d = {}
    for f in fields(Provenance):
        if f.name in _PROV_OWN:
            continue
        value = getattr(prov, f.name)
        if isinstance(value, tuple):
            value = [list(v) if isinstance(v, tuple) else v for v in value]
        d[f.name] = value
    return json.dumps(d, sort_keys=True, separators=(",", ":"))


# An anonymous object's entity in anon_vmos: its owner (a process entity),
# the string id of its name and its ordinal among the owner's objects of
# that name, in 23 + 24 + 16 bits.
OWNER_SHIFT = 40


def anon_key(owner: int, name_id: int, ordinal: int) -> int | None:
    """The anon_vmos entity, or None when a part does not fit its bits (the
    object is then kept by koid in vmos)."""
    if owner < (1 << 23) and name_id < (1 << 24) and ordinal < (1 << 16):
        return owner << OWNER_SHIFT | name_id << 16 | ordinal
    return None


def pack(value) -> bytes:
    return zlib.compress(json.dumps(value, separators=(",", ":")).encode(), 6)


def unpack(blob: bytes):
    return json.loads(zlib.decompress(blob))


def pack_refs(refs, base: int | None) -> bytes:
    """A process's references as the writer stores them
    (:func:`zxmem.store.blobs.encode_refs`): sequence koids relative to
    ``base``, the process's own base (None: it owns no object)."""
    koids = list(map(_VMO_KOID, refs))
    kinds = list(map(_REF_KIND, refs))
    if base is None:
        return encode_columns(koids, [0] * len(koids), kinds)
    relative = list(map(INODE_KOID_BASE.__gt__, koids))
    return encode_columns(list(map(add, koids, map(mul, relative, repeat(BIAS - base)))),
                          relative, kinds)


_VMO_KOID = attrgetter("vmo_koid")
_REF_KIND = attrgetter("via", "handle_rights", "fd")


def refs_blob(refs, base: int | None) -> bytes:
    """A process's references in the spelling of store schema 4 and before
    (zlib-compressed JSON, which readers still read); sequence koids as
    offsets from ``base`` (``[koid, via, rights, fd]`` absolute,
    ``[offset, via, rights, fd, 1]``)."""
    rows = []
    for r in refs:
        k = r.vmo_koid
        if base is not None and k < INODE_KOID_BASE:
            rows.append([k - base, list(r.via), list(r.handle_rights), r.fd, 1])
        else:
            rows.append([k, list(r.via), list(r.handle_rights), r.fd])
    return pack(rows)


# CgroupMemory's single values, each kept as its own job_values row.
CGROUP_SCALARS = ("charged_bytes", "kernel_bytes", "swap_bytes", "limit_bytes", "high_bytes",
                  "low_bytes", "min_bytes", "soft_limit_bytes")
CGROUP_MAPS = ("stat", "events")
SHAPE = "shape"


def cgroup_values(cg: CgroupMemory) -> list[tuple[str, int | float | str]]:
    """A job's cgroup memory as (name, value) pairs: one per known value
    (an unknown one has no pair), and ``shape``: the JSON of what is not a
    number (version, unreadable files) and the order of each map's keys, so
    the maps read back in the kernel's order.  Limits are bytes or the
    text ``max``; pressure averages are floats (SQLite keeps them exactly)."""
    out: list[tuple[str, int | float | str]] = []
    for name in CGROUP_SCALARS:
        value = getattr(cg, name)
        if value is not None:
            out.append((name, value))
    order: dict[str, object] = {}
    for group in CGROUP_MAPS:
        mapping = getattr(cg, group)
        if mapping is not None:
            order[group] = list(mapping)
            out.extend((f"{group}:{k}", v) for k, v in mapping.items())
    if cg.pressure is not None:
        order["pressure"] = [[kind, list(values)] for kind, values in cg.pressure.items()]
        out.extend((f"pressure:{kind}:{k}", v)
                   for kind, values in cg.pressure.items() for k, v in values.items())
    shape = {"version": cg.version, "missing": [list(m) for m in cg.missing], "order": order}
    out.append((SHAPE, json.dumps(shape, separators=(",", ":"))))
    return out


def _counts(memory) -> tuple:
    if memory is None:
        return (0,) + (None,) * 10
    m = memory
    return (1, m.pss_bytes, m.private_bytes, m.shared_bytes, m.rss_bytes, m.swap_bytes,
            m.swap_pss_bytes, m.pss_anon_bytes, m.pss_file_bytes, m.pss_shmem_bytes,
            m.hugetlb_bytes)


class Writer:
    """Appends samples to an open store connection (see :mod:`zxmem.store`)."""

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self.reload()

    # -- state -------------------------------------------------------------

    def reload(self) -> None:
        """Forget every cache and read the open rows back from the store."""
        c = self.conn
        self._strings: dict[str, int] = {}
        # process entity -> (fingerprint, blob, string ids) of its
        # mappings at the newest objects sample (:meth:`_mappings`).
        self._map_prints: dict[int, tuple[int, bytes, set[int]]] = {}
        # table -> entity -> (rowid, first sample, values)
        self.open: dict[str, dict[int, tuple[int, int, tuple]]] = {}
        span = schema.read_span(c)
        newest = c.execute("SELECT max(n) FROM samples").fetchone()[0] or 0
        newest_objects = c.execute("SELECT max(n) FROM samples WHERE tier = ?",
                                   (OBJECTS,)).fetchone()[0] or 0
        for table, cols in VERSIONED.items():
            # Open rows started within their span before the newest sample
            # that wrote their table (objects tables: the newest objects sample).
            at = newest_objects if table in schema.OBJECT_TABLES else newest
            rows = c.execute(f"SELECT rowid, ent, first, {', '.join(cols)} FROM {table} "
                             "WHERE first > ? AND last IS NULL",
                             (at - schema.span_of(table, span),))
            self.open[table] = {r[1]: (r[0], r[2], tuple(r[3:])) for r in rows}
        self.procs: dict[tuple[int | None, int, int | None], int] = {
            (b, p, s): i for i, b, p, s in
                      c.execute("SELECT id, boot, pid, start FROM procs")}
        self.job_ids = {(k, p): i for i, k, p in c.execute("SELECT id, koid, path FROM job_ids")}
        self.last_n = c.execute("SELECT max(n) FROM samples").fetchone()[0]

    def sid(self, text: str) -> int:
        """The id of ``text`` in the strings table (added if new)."""
        i = self._strings.get(text)
        if i is not None:
            return i
        raw = encode_text(text)
        row = self.conn.execute("SELECT id FROM strings WHERE s = ?", (raw,)).fetchone()
        if row is None:
            i = self._insert("INSERT INTO strings(s) VALUES (?)", (raw,))
        else:
            i = row[0]
        if len(self._strings) > 200_000:  # bounded: names churn over days
            self._strings.clear()
        self._strings[text] = i
        return i

    def _insert(self, sql: str, params: tuple) -> int:
        """Insert one row; its rowid."""
        rowid = self.conn.execute(sql, params).lastrowid
        if rowid is None:  # not after an INSERT
            raise sqlite3.DatabaseError(f"no rowid from {sql.split('(')[0]}")
        return rowid

    def _osid(self, text: str | None) -> int | None:
        return None if text is None else self.sid(text)

    # -- writing -------------------------------------------------------------

    def write(self, snapshot: Snapshot, tier: int, time_ns: int) -> int:
        """Add ``snapshot`` as the next sample in one transaction; its number.

        ``tier`` TOTALS keeps kernel totals, jobs and process totals;
        OBJECTS also the memory objects, each process's references and its
        mappings.
        On any error the transaction is rolled back, the state reloaded,
        and the error raised.
        """
        c = self.conn
        c.execute("BEGIN IMMEDIATE")
        try:
            n = self._write(snapshot, tier, time_ns)
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                try:
                    c.execute("ROLLBACK")
                except sqlite3.Error:
                    pass
            self.reload()
            raise
        self.last_n = n
        return n

    def _write(self, snap: Snapshot, tier: int, time_ns: int) -> int:
        # Strings are interned as they are met: processes, jobs, kernel
        # values, extra, provenance.
        n = (self.last_n or 0) + 1
        prov = snap.provenance
        info, mem, ents, pss_total = self._process_rows(snap, self._osid(prov.boot_id))
        jobs, jvals = self._job_rows(snap)
        k = snap.kernel
        kvals = self._kernel_rows(k) if k is not None else {}
        extra = None
        if tier == OBJECTS and (snap.hidden_vmo_koids or snap.vmo_holders):
            extra = self.sid(json.dumps(
                {"hidden": list(snap.hidden_vmo_koids),
                 "holders": [[k, list(v)] for k, v in snap.vmo_holders.items()]},
                separators=(",", ":")))
        self.conn.execute(
            "INSERT INTO samples(n, time_ns, timestamp, capture_ns, tier, prov, has_kernel, "
            "extra, nproc, pss_bytes) VALUES (?,?,?,?,?,?,?,?,?,?)",
            (n, time_ns, prov.timestamp, prov.capture_time_ns, tier,
             self.sid(provenance_json(prov)), int(k is not None), extra,
             len(snap.processes), pss_total))

        pending = [("proc_info", info), ("proc_mem", mem), ("job_info", jobs),
                   ("job_values", jvals), ("kernel_values", kvals)]
        if tier == OBJECTS:
            pending += self._objects(snap, ents)
        new_open = {}
        for table, values in pending:
            new_open[table] = self._apply(table, values, n)
        self.open.update(new_open)
        return n

    def _process_rows(self, snap: Snapshot, boot: int | None
                      ) -> tuple[dict[int, tuple], dict[int, tuple], dict[int, int], int | None]:
        """proc_info and proc_mem values by process entity (a new process
        gets its entity), each PID's entity, and the sum of the PSS known."""
        info: dict[int, tuple] = {}
        mem: dict[int, tuple] = {}
        ents: dict[int, int] = {}  # pid -> proc entity
        pss_total = None
        for p in snap.processes:
            key: tuple[int | None, int, int | None] = (boot, p.koid, p.start_time_ticks)
            ent = self.procs.get(key)
            if ent is None:
                ent = self._insert("INSERT INTO procs(boot, pid, start) VALUES (?,?,?)", key)
                self.procs[key] = ent
            ents[p.koid] = ent
            cmd = None if p.cmdline is None else self.sid(
                json.dumps(list(p.cmdline), separators=(",", ":")))
            info[ent] = (self.sid(p.name), s64(p.job_koid), p.ppid, p.uid, cmd,
                         int(p.kernel_thread))
            mem[ent] = _counts(p.memory) + (p.state, p.num_threads, p.vm_pte_bytes)
            if p.memory is not None and p.memory.pss_bytes is not None:
                pss_total = (pss_total or 0) + p.memory.pss_bytes
        return info, mem, ents, pss_total

    def _job_rows(self, snap: Snapshot) -> tuple[dict[int, tuple], dict[int, tuple]]:
        """job_info values by job entity (a new job gets its entity), and
        each job's cgroup values (job_values, keyed by job and name)."""
        jobs: dict[int, tuple] = {}
        jvals: dict[int, tuple] = {}
        for j in snap.jobs:
            jkey = (s64_(j.koid), self.sid(j.path))
            jent = self.job_ids.get(jkey)
            if jent is None:
                jent = self._insert("INSERT INTO job_ids(koid, path) VALUES (?,?)", jkey)
                self.job_ids[jkey] = jent
            jobs[jent] = (self.sid(j.name), s64(j.parent_koid), self.sid(j.state),
                          j.charged_bytes)
            if j.cgroup is not None:
                high = jent << JOB_KEY_BITS
                for name, value in cgroup_values(j.cgroup):
                    jvals[high | self.sid(name)] = (value,)
        return jobs, jvals

    def _kernel_rows(self, k: KernelStats) -> dict[int, tuple]:
        """kernel_values: each column (``col:NAME``) and each entry of a
        map (``meminfo:KEY``) by the id of its name."""
        kvals: dict[int, tuple] = {}
        for f in fields(k):
            value = getattr(k, f.name)
            if isinstance(value, Mapping):
                for key, v in value.items():
                    kvals[self.sid(f"{f.name}:{key}")] = (v,)
            else:
                kvals[self.sid(f"col:{f.name}")] = (value,)
        return kvals

    def _objects(self, snap: Snapshot, ents: dict[int, int]) -> list[tuple[str, dict]]:
        # Each anonymous (sequence-koid) object belongs to the first process
        # that reaches it, and is known there by its name and its ordinal
        # among the process's objects of that name; the process's layout
        # row says which koid each of them has this sample.
        owned: dict[int, list[int]] = {}
        owner: dict[int, int] = {}
        for p in snap.processes:
            ent = ents[p.koid]
            for r in p.vmo_refs or ():
                k = r.vmo_koid
                if k < INODE_KOID_BASE and k not in owner and k in snap.vmos:
                    owner[k] = ent
                    owned.setdefault(ent, []).append(k)

        def row(v) -> tuple:
            # kind and num_mappings may be unknown (a Fuchsia capture): NULL.
            return (self.sid(v.name), self._osid(v.kind), v.size_bytes, v.committed_bytes,
                    s64(v.parent_koid), v.num_children, v.num_mappings, v.share_count,
                    s64(v.dev), s64(v.inode), self._osid(v.path), v.swap_bytes)

        vmos: dict[int, tuple] = {}
        anon: dict[int, tuple] = {}
        layouts: dict[int, tuple] = {}
        bases: dict[int, int] = {}
        for ent, koids in owned.items():
            koids.sort()
            base = bases[ent] = koids[0]
            seen: dict[int, int] = {}
            keyed = []
            for k in koids:
                v = snap.vmos[k]
                values = row(v)
                ordinal = seen.get(values[0], 0)
                seen[values[0]] = ordinal + 1
                key = anon_key(ent, values[0], ordinal)
                if key is None:
                    vmos[s64_(k)] = values
                else:
                    anon[key] = values
                    keyed.append((key, k - base))
            keyed.sort()
            layouts[ent] = (encode_layout(base, [offset for _key, offset in keyed]),)
        for koid, v in snap.vmos.items():
            if koid not in owner:
                vmos[s64_(koid)] = row(v)
        refs = {ents[p.koid]: (pack_refs(p.vmo_refs, bases.get(ents[p.koid])),)
                for p in snap.processes if p.vmo_refs is not None}
        return [("vmos", vmos), ("anon_vmos", anon), ("vmo_base", layouts),
                ("vmo_refs", refs)] + self._mappings(snap, ents, owner, bases)

    def _mappings(self, snap: Snapshot, ents: dict[int, int], owner: dict[int, int],
                  bases: dict[int, int]) -> list[tuple[str, dict]]:
        """Each process's mappings (a blob, :mod:`zxmem.store.maps`; a
        process whose mappings were not read has no row) and the strings
        they use."""
        rows: dict[int, tuple] = {}
        used: set[int] = set()
        prints = self._map_prints
        now: dict[int, tuple[int, bytes, set[int]]] = {}
        for p in snap.processes:
            if p.mappings is None:
                continue
            ent = ents[p.koid]
            base = bases.get(ent)
            # The same fingerprint encodes to the same blob.
            key = maps.fingerprint(p.mappings, ent, owner.get, base)
            prev = prints.get(ent)
            if prev is not None and prev[0] == key:
                blob, ids = prev[1], prev[2]
            else:
                blob, ids = maps.encode(p.mappings, ent, owner.get, base, self.sid)
            now[ent] = (key, blob, ids)
            rows[ent] = (blob,)
            used |= ids
        # Kept only if the sample commits: a failed write reloads (and clears it).
        self._map_prints = now
        return [("mappings", rows), ("map_strings", dict.fromkeys(used, (1,)))]

    def _apply(self, table: str, new: dict[int, tuple], n: int
               ) -> dict[int, tuple[int, int, tuple]]:
        """Close changed/vanished rows at n-1, open rows for changed/new ones
        (and again for unchanged ones SPAN samples old)."""
        c = self.conn
        old = self.open[table]
        # A row that started here or before is opened again.
        oldest = n - schema.span_of(table, schema.SPAN)
        closing = [(n - 1, rowid) for ent, (rowid, first, vals) in old.items()
                   if first <= oldest or new.get(ent, _MISSING) != vals]
        if closing:
            c.executemany(f"UPDATE {table} SET last = ?, reserve = NULL WHERE rowid = ?",
                          closing)
        cols = VERSIONED[table]
        sql = (f"INSERT INTO {table}(ent, first, reserve, {', '.join(cols)}) "
               f"VALUES (?, ?, {schema.RESERVE}{', ?' * len(cols)})")
        out: dict[int, tuple[int, int, tuple]] = {}
        for ent, vals in new.items():
            prev = old.get(ent)
            if prev is not None and prev[2] == vals and prev[1] > oldest:
                out[ent] = prev
            else:
                out[ent] = (self._insert(sql, (ent, n) + vals), n, vals)
        return out
