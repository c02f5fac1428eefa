"""The history store's tables, its schema version and migrations.

One SQLite file in WAL mode.  ``PRAGMA user_version`` is the schema version:
a store written by a newer zxmem is refused with a one-line error, an older
one is migrated in place (one transaction per step).

Every table but ``samples``, ``strings`` and the two identity tables holds
*versioned rows*: a row is valid from sample ``first`` to sample ``last``
inclusive (``last`` NULL: still valid at the newest sample).  A sample only
adds rows for what changed since the previous one, and closes the rows of
what changed or went away.

=================  ==========================================================
``strings``        every name, command line, path and provenance, once
``samples``        one row per sample: time, tier, provenance, summary
``procs``          process identities (boot id, PID, start time)
``proc_info``      versioned: name, job, parent, uid, command line
``proc_mem``       versioned: memory counts, state letter, threads, PTEs
``job_ids``        job identities (cgroup id, path)
``job_info``       versioned: name, parent, state, charged bytes
``job_values``     versioned: one value of a job's cgroup memory files
                   (charge, limits, a memory.stat or memory.events counter,
                   a pressure figure), keyed by job and value name; and the
                   job's "shape" (version, unreadable files, key order)
``kernel_values``  versioned: one kernel counter (column, meminfo or extra)
``vmos``           versioned, objects tier only: one memory object by koid
                   (file-backed objects, whose koid is stable)
``anon_vmos``      versioned, objects tier only: an anonymous object, by its
                   owner (the first process that reaches it), its name and
                   its ordinal among the owner's objects of that name
``vmo_base``       versioned, objects tier only: a process's layout, the koid
                   of each object it owns this sample (first koid, offsets;
                   :mod:`zxmem.store.blobs`)
``vmo_refs``       versioned, objects tier only: a process's references
                   (:mod:`zxmem.store.blobs`; sequence koids relative to the
                   base)
``mappings``       versioned, objects tier only (schema 4 on): a process's
                   mappings, its smaps entries (:mod:`zxmem.store.maps`)
``map_strings``    versioned, objects tier only: the string ids the mappings
                   of the sample use (paths, perms, VmFlags; the entity is
                   the string id), so retention keeps exactly those strings

Anonymous objects get sequence koids in scan order, so one process that exits
shifts the koids of every process after it, and a new mapping those of the
rest of its process; keyed by owner, name and ordinal, a renumbering changes
one small ``vmo_base`` row per process, not every object.
=================  ==========================================================
"""

from __future__ import annotations

import os
import sqlite3

from zxmem.errors import ZxmemError

# 1: the first layout.  2: samples carry their process count and total PSS
# (``zxmem history`` reads them without visiting every row).  3: the jobs'
# cgroup memory files (``job_values``); every versioned table's ``reserve``
# (see RESERVE) and no index of open rows.  4: every process's mappings in
# the objects tier (``mappings``, ``map_strings``; ``meta`` 'mappings_from').
# 5: ``vmo_refs`` and ``vmo_base`` blobs are packed integers, not JSON
# (:mod:`zxmem.store.blobs`; reading them was most of a whole replay).
VERSION = 5
# The oldest schema a reader reads without migrating it: 4 -> 5 only
# respells blobs, and the reader reads schema 4's spelling too.
READABLE_FROM = 4

APPLICATION_ID = 0x7A786D68  # "zxmh"

_V1 = """
CREATE TABLE strings (id INTEGER PRIMARY KEY, s BLOB NOT NULL UNIQUE);  -- UTF-8
CREATE TABLE samples (
    n INTEGER PRIMARY KEY,
    time_ns INTEGER NOT NULL,       -- wall clock, ns since the epoch (UTC)
    timestamp TEXT,                 -- the provenance's own timestamp text
    capture_ns INTEGER,             -- provenance.capture_time_ns
    tier INTEGER NOT NULL,          -- 0 totals, 1 totals and objects
    prov INTEGER NOT NULL,          -- strings: provenance JSON
    has_kernel INTEGER NOT NULL,
    extra INTEGER                   -- strings: hidden koids and holders JSON
);
CREATE INDEX samples_time ON samples(time_ns);
CREATE TABLE procs (
    id INTEGER PRIMARY KEY, boot INTEGER, pid INTEGER NOT NULL, start INTEGER);
CREATE TABLE proc_info (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    name INTEGER NOT NULL, job INTEGER NOT NULL, ppid INTEGER, uid INTEGER,
    cmdline INTEGER, kthread INTEGER NOT NULL);
CREATE TABLE proc_mem (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    known INTEGER NOT NULL, pss INTEGER, private INTEGER, shared INTEGER,
    rss INTEGER, swap INTEGER, swap_pss INTEGER, pss_anon INTEGER,
    pss_file INTEGER, pss_shmem INTEGER, hugetlb INTEGER,
    state TEXT, threads INTEGER, pte INTEGER);
CREATE TABLE job_ids (id INTEGER PRIMARY KEY, koid INTEGER NOT NULL, path INTEGER NOT NULL);
CREATE TABLE job_info (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    name INTEGER NOT NULL, parent INTEGER NOT NULL, state INTEGER NOT NULL,
    charged INTEGER);
CREATE TABLE kernel_values (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER, value INTEGER);
CREATE TABLE vmos (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    name INTEGER NOT NULL, kind INTEGER, size INTEGER, committed INTEGER,
    parent INTEGER NOT NULL, children INTEGER NOT NULL, mappings INTEGER,
    shares INTEGER NOT NULL, dev INTEGER, inode INTEGER, path INTEGER, swap INTEGER);
CREATE TABLE anon_vmos (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER,
    name INTEGER NOT NULL, kind INTEGER, size INTEGER, committed INTEGER,
    parent INTEGER NOT NULL, children INTEGER NOT NULL, mappings INTEGER,
    shares INTEGER NOT NULL, dev INTEGER, inode INTEGER, path INTEGER, swap INTEGER);
CREATE TABLE vmo_base (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER, layout BLOB NOT NULL);
CREATE TABLE vmo_refs (
    ent INTEGER NOT NULL, first INTEGER NOT NULL, last INTEGER, refs BLOB NOT NULL);
"""

# The versioned tables and their value columns (after ent, first, last).
VERSIONED: dict[str, tuple[str, ...]] = {
    "proc_info": ("name", "job", "ppid", "uid", "cmdline", "kthread"),
    "proc_mem": ("known", "pss", "private", "shared", "rss", "swap", "swap_pss", "pss_anon",
                 "pss_file", "pss_shmem", "hugetlb", "state", "threads", "pte"),
    "job_info": ("name", "parent", "state", "charged"),
    "job_values": ("value",),
    "kernel_values": ("value",),
    "vmos": ("name", "kind", "size", "committed", "parent", "children", "mappings", "shares",
             "dev", "inode", "path", "swap"),
    "anon_vmos": ("name", "kind", "size", "committed", "parent", "children", "mappings",
                  "shares", "dev", "inode", "path", "swap"),
    "vmo_base": ("layout",),
    "vmo_refs": ("refs",),
    "mappings": ("maps",),
    "map_strings": ("used",),
}


# The versioned tables of layout 1 (later ones are made by their migration).
_V1_VERSIONED = ("proc_info", "proc_mem", "job_info", "kernel_values", "vmos", "anon_vmos",
                 "vmo_base", "vmo_refs")


def _indexes(conn: sqlite3.Connection, tables: tuple[str, ...]) -> None:
    for table in tables:
        # Rows by first sample: a sample's rows start within its table's span
        # before it, so replay, retention and the writer's open rows
        # (``last IS NULL``) are bounded range scans of this one index.
        conn.execute(f"CREATE INDEX IF NOT EXISTS {table}_first ON {table}(first)")


# An open row (``last`` NULL) holds this in ``reserve``; closing it sets
# ``last`` and clears ``reserve`` in the same UPDATE, so the row does not
# grow (this takes SQLite's 4-byte integer; a sample number below 2**31 takes
# at most that).
# Rows that grew when closed split their full pages: the rows of a process
# that exits are side by side, and closing them cost about a page per
# process (half of an objects sample's bytes).
RESERVE = (1 << 24) - 1


# No row is valid for more than SPAN samples: the writer opens a row again
# (same values) once it is SPAN samples old, so the rows valid at sample n
# all have first > n - SPAN.  It costs one copy of each row per SPAN samples
# (2 hours at 10 s) and keeps the replay of any sample of a long history as
# fast as the newest.
SPAN = 720


# Objects rows are compared (and so re-opened) at objects samples only, and
# are many (one per memory object): re-opening them every SPAN samples cost
# a copy of the whole object graph every 2 hours (about 4.7 MB for 51,000
# objects).  They live OBJECTS_SPAN_FACTOR times longer: a copy every 12
# hours, for a longer (bounded) range to scan when an objects sample is read.
OBJECTS_SPAN_FACTOR = 6
OBJECT_TABLES = frozenset(("vmos", "anon_vmos", "vmo_base", "vmo_refs", "mappings",
                           "map_strings"))


def span_of(table: str, span: int) -> int:
    """The span of ``table`` when the store's span is ``span``."""
    return span * OBJECTS_SPAN_FACTOR if table in OBJECT_TABLES else span


def _migrate_1_to_2(conn: sqlite3.Connection) -> None:
    conn.execute("ALTER TABLE samples ADD COLUMN nproc INTEGER")
    conn.execute("ALTER TABLE samples ADD COLUMN pss_bytes INTEGER")
    conn.execute("""
        UPDATE samples SET
          nproc = (SELECT count(*) FROM proc_mem m
                   WHERE m.first <= samples.n AND (m.last IS NULL OR m.last >= samples.n)),
          pss_bytes = (SELECT sum(m.pss) FROM proc_mem m
                       WHERE m.first <= samples.n AND (m.last IS NULL OR m.last >= samples.n))
    """)
    # Version 1 wrote rows of any length: the span readers bound their
    # search by covers the longest one there is.
    conn.execute("CREATE TABLE meta (key TEXT PRIMARY KEY, value) WITHOUT ROWID")
    newest = conn.execute("SELECT coalesce(max(n), 0) FROM samples").fetchone()[0]
    longest = SPAN
    for table in _V1_VERSIONED:
        row = conn.execute(f"SELECT max(coalesce(last, ?) - first + 1) FROM {table}",
                           (newest,)).fetchone()
        longest = max(longest, row[0] or 0)
    conn.execute("INSERT INTO meta VALUES ('span', ?)", (longest,))


def read_span(conn: sqlite3.Connection) -> int:
    """How many samples before n the rows valid at n may start."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'span'").fetchone()
    return max(SPAN, int(row[0])) if row else SPAN


# job_values' entity: the job entity << JOB_KEY_BITS | the string id of the
# value's name ("charged_bytes", "stat:anon", "pressure:some:avg10", "shape").
JOB_KEY_BITS = 32


def _migrate_2_to_3(conn: sqlite3.Connection) -> None:
    # Older samples have no cgroup data: their jobs read back without it.
    conn.execute("CREATE TABLE job_values (ent INTEGER NOT NULL, first INTEGER NOT NULL, "
                 "last INTEGER, value, reserve INTEGER)")
    _indexes(conn, ("job_values",))
    for table in _V1_VERSIONED:
        # Open rows of older stores have no reserve: they may grow once, when closed.
        conn.execute(f"ALTER TABLE {table} ADD COLUMN reserve INTEGER")
        # The writer finds open rows by the index on first.
        conn.execute(f"DROP INDEX IF EXISTS {table}_open")


def _migrate_3_to_4(conn: sqlite3.Connection) -> None:
    # Samples written before hold no mappings: 'mappings_from' is the first
    # sample that may (readers say so instead of "not recorded").
    conn.execute("CREATE TABLE mappings (ent INTEGER NOT NULL, first INTEGER NOT NULL, "
                 "last INTEGER, maps BLOB NOT NULL, reserve INTEGER)")
    conn.execute("CREATE TABLE map_strings (ent INTEGER NOT NULL, first INTEGER NOT NULL, "
                 "last INTEGER, used INTEGER NOT NULL, reserve INTEGER)")
    _indexes(conn, ("mappings", "map_strings"))
    newest = conn.execute("SELECT coalesce(max(n), 0) FROM samples").fetchone()[0]
    conn.execute("INSERT OR REPLACE INTO meta VALUES ('mappings_from', ?)", (newest + 1,))


def mappings_from(conn: sqlite3.Connection) -> int:
    """The first sample that can hold mappings (later than 1 in a store
    migrated from schema 3)."""
    row = conn.execute("SELECT value FROM meta WHERE key = 'mappings_from'").fetchone()
    return int(row[0]) if row else 1


def _migrate_4_to_5(conn: sqlite3.Connection) -> None:
    # Each blob in the binary spelling; one that is not as schema 4 wrote
    # it (a damaged row) is left as it is: readers still read JSON blobs,
    # and reading that sample says what is wrong with it.
    import zlib

    from zxmem.store.blobs import BlobError, layout_from_json, ref_rows, refs_from_rows

    def refs(blob: bytes) -> bytes | None:
        try:
            return refs_from_rows(ref_rows(blob))
        except (BlobError, ValueError, TypeError, zlib.error, OverflowError):
            return None

    for table, column, convert in (("vmo_refs", "refs", refs),
                                   ("vmo_base", "layout", layout_from_json)):
        changed = []
        for rowid, blob in conn.execute(f"SELECT rowid, {column} FROM {table}"):
            new = convert(blob) if isinstance(blob, bytes) else None
            if new is not None:
                changed.append((new, rowid))
        conn.executemany(f"UPDATE {table} SET {column} = ? WHERE rowid = ?", changed)


MIGRATIONS = {1: _migrate_1_to_2, 2: _migrate_2_to_3, 3: _migrate_3_to_4, 4: _migrate_4_to_5}


class StoreError(ZxmemError):
    """A store that cannot be opened, read or written (one line)."""


def open_store(path: str, *, create: bool, readonly: bool = False) -> sqlite3.Connection:
    """Open (and with ``create`` make or migrate) the store at ``path``.

    Autocommit mode: callers open their own transactions (``BEGIN``).
    """
    if not create and not os.path.exists(path):
        raise StoreError(f"{path}: no such history store")
    try:
        if readonly:
            conn, version, app = _open_readonly(path)
        else:
            conn = sqlite3.connect(path, isolation_level=None, timeout=5.0)
            conn.execute("PRAGMA busy_timeout=5000")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
            app = conn.execute("PRAGMA application_id").fetchone()[0]
    except sqlite3.DatabaseError as exc:
        if os.path.exists(path) and not os.access(path, os.R_OK):
            raise StoreError(f"{path}: permission denied") from None
        raise StoreError(f"{path}: not a zxmem history store ({exc})") from None
    if version > VERSION:
        conn.close()
        raise StoreError(f"{path}: written by a newer zxmem (store schema {version}, "
                         f"this zxmem reads up to {VERSION}): upgrade zxmem")
    has_tables = conn.execute("SELECT count(*) FROM sqlite_master").fetchone()[0]
    if version == 0 and has_tables:
        conn.close()
        raise StoreError(f"{path}: an SQLite file that is not a zxmem history store")
    if version and app != APPLICATION_ID:
        conn.close()
        raise StoreError(f"{path}: an SQLite file that is not a zxmem history store")
    if version < VERSION:
        if readonly:
            return _migrated_for_reading(conn, path, version)
        _upgrade(conn, version, path)
    return conn


def _migrated_for_reading(conn: sqlite3.Connection, path: str,
                          version: int) -> sqlite3.Connection:
    """A reader's connection to an older store: migrated first where the
    reader may write it; else, for a schema the reader reads as it is
    (:data:`READABLE_FROM`), ``conn`` itself; else one line saying what to do."""
    try:
        open_store(path, create=True).close()
    except StoreError:
        if version >= READABLE_FROM:
            return conn  # e.g. root's store read by a user: read as it is
        conn.close()
        raise StoreError(
            f"{path}: written by an older zxmem (store schema {version}); it must be "
            f"migrated to schema {VERSION} first, which needs write access to it and its "
            f"directory: run `zxmem history --store {path}` once as its owner") from None
    conn.close()
    return open_store(path, create=False, readonly=True)


def _open_readonly(path: str) -> tuple[sqlite3.Connection, int, int]:
    """A read-only connection, its user_version and application_id.

    A WAL store needs its ``-shm`` file: while a recorder runs it exists
    and a reader without write access uses it read-only; when none runs
    (no ``-wal``) and the reader may not create it (root's store, read by
    a user), the file cannot change under the reader and is opened as
    immutable."""
    base = "file:" + _uri_path(path) + "?mode=ro"
    try:
        conn = sqlite3.connect(base, uri=True, isolation_level=None, check_same_thread=False)
        conn.execute("PRAGMA busy_timeout=5000")
        return (conn, conn.execute("PRAGMA user_version").fetchone()[0],
                conn.execute("PRAGMA application_id").fetchone()[0])
    except sqlite3.OperationalError:
        if os.path.exists(path + "-wal"):
            raise
    conn = sqlite3.connect(base + "&immutable=1", uri=True, isolation_level=None,
                           check_same_thread=False)
    return (conn, conn.execute("PRAGMA user_version").fetchone()[0],
            conn.execute("PRAGMA application_id").fetchone()[0])


def _uri_path(path: str) -> str:
    from urllib.parse import quote

    return quote(path)


def _upgrade(conn: sqlite3.Connection, version: int, path: str) -> None:
    try:
        if version == 0:
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # before the first table
            conn.execute("PRAGMA journal_mode=WAL")
            conn.execute("BEGIN IMMEDIATE")
            # Another process may have created it meanwhile.
            if conn.execute("PRAGMA user_version").fetchone()[0] == 0:
                for stmt in _V1.split(";"):
                    if stmt.strip():
                        conn.execute(stmt)
                _indexes(conn, _V1_VERSIONED)
                conn.execute(f"PRAGMA application_id={APPLICATION_ID}")
                conn.execute("PRAGMA user_version=1")
            conn.execute("COMMIT")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
        while version < VERSION:
            conn.execute("BEGIN IMMEDIATE")
            now = conn.execute("PRAGMA user_version").fetchone()[0]
            if now == version:
                MIGRATIONS[version](conn)
                conn.execute(f"PRAGMA user_version={version + 1}")
            conn.execute("COMMIT")
            version = conn.execute("PRAGMA user_version").fetchone()[0]
    except sqlite3.Error as exc:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise StoreError(f"{path}: cannot create or migrate the store: {exc}") from None
