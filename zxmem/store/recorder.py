"""Recording: one writer per store, retention, and surviving write errors.

* :class:`Recorder` takes an exclusive ``fcntl`` lock on ``STORE.lock`` (the
  kernel drops it when the process dies, even by ``kill -9``), so a second
  recorder on the same store is refused at once with the first one's PID.
* :meth:`Recorder.add` writes a sample in one transaction; a write that fails
  (disk full, I/O error) is rolled back, reported once per episode, and the
  next sample is tried again as usual.
* :meth:`Recorder.enforce` drops the oldest samples older than ``retain_s``
  and, while the store's used pages exceed ``max_bytes``, the oldest tenth
  of them, then returns the freed pages to the file system.
"""

from __future__ import annotations

import fcntl
import os
import sqlite3
from collections.abc import Callable

from zxmem.model import Snapshot
from zxmem.store.schema import JOB_KEY_BITS, VERSIONED, StoreError, open_store
from zxmem.store.writer import Writer

# The WAL is truncated to this after each checkpoint.
WAL_LIMIT_BYTES = 1 << 20


class Locked(StoreError):
    """Another recorder holds the store."""


class Recorder:
    def __init__(self, path: str, warn: Callable[[str], None]) -> None:
        self.path = path
        self.warn = warn
        directory = os.path.dirname(os.path.abspath(path))
        try:
            os.makedirs(directory, exist_ok=True)
        except OSError as exc:
            raise StoreError(f"cannot create {directory}: {exc.strerror}") from None
        self._lock_fd: int | None = self._lock(path + ".lock")
        try:
            self.conn = open_store(path, create=True)
            self.conn.execute("PRAGMA journal_mode=WAL")
            self.conn.execute("PRAGMA synchronous=NORMAL")
            self.conn.execute(f"PRAGMA journal_size_limit={WAL_LIMIT_BYTES}")
            self.writer = Writer(self.conn)
        except sqlite3.Error as exc:
            self.close()
            raise StoreError(f"{path}: {exc}") from None
        except BaseException:
            self.close()
            raise
        self.failing: str | None = None  # the error of the current episode

    @staticmethod
    def _lock(lock_path: str) -> int:
        try:
            fd = os.open(lock_path, os.O_RDWR | os.O_CREAT | os.O_CLOEXEC, 0o644)
        except OSError as exc:
            raise StoreError(f"cannot open {lock_path}: {exc.strerror}") from None
        try:
            fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:
            try:
                holder = os.pread(fd, 32, 0).decode("ascii", "replace").strip()
            except OSError:
                holder = ""
            os.close(fd)
            who = f" (pid {holder})" if holder.isdigit() else ""
            raise Locked(f"another zxmem record is writing {lock_path[:-5]}{who}: "
                         "one recorder per store") from None
        os.ftruncate(fd, 0)
        os.pwrite(fd, f"{os.getpid()}\n".encode(), 0)
        return fd

    def close(self) -> None:
        conn = getattr(self, "conn", None)
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error:
                pass
            self.conn = None  # type: ignore[assignment]
        if self._lock_fd is not None:
            os.close(self._lock_fd)  # releases the lock
            self._lock_fd = None

    def __enter__(self) -> Recorder:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def add(self, snapshot: Snapshot, tier: int, time_ns: int) -> int | None:
        """Write one sample; its number, or None if it could not be written."""
        try:
            n = self.writer.write(snapshot, tier, time_ns)
        except (sqlite3.Error, OSError) as exc:
            why = str(exc) or type(exc).__name__
            if self.failing is None:
                self.warn(f"cannot write a sample to {self.path}: {why}; "
                          "retrying at each interval")
            self.failing = why
            return None
        if self.failing is not None:
            self.warn(f"recording to {self.path} again")
            self.failing = None
        return n

    def enforce(self, now_ns: int, retain_s: float | None, max_bytes: int | None) -> int:
        """Apply retention; the number of samples dropped."""
        c = self.conn
        dropped = 0
        try:
            if retain_s is not None:
                cutoff = now_ns - int(retain_s * 1e9)
                row = c.execute("SELECT min(n) FROM samples WHERE time_ns >= ?",
                                (cutoff,)).fetchone()
                last = c.execute("SELECT max(n) FROM samples").fetchone()[0]
                keep_from = row[0] if row[0] is not None else last
                if keep_from is not None:
                    dropped += self._drop_before(keep_from)
            if max_bytes is not None:
                while self.used_bytes() > max_bytes:
                    first, last, count = c.execute(
                        "SELECT min(n), max(n), count(*) FROM samples").fetchone()
                    if count <= 1:
                        break
                    step = max(1, count // 10)
                    keep_from = min(last, c.execute(
                        "SELECT n FROM samples ORDER BY n LIMIT 1 OFFSET ?",
                        (step,)).fetchone()[0])
                    dropped += self._drop_before(keep_from)
                    c.execute("PRAGMA incremental_vacuum").fetchall()
        except (sqlite3.Error, OSError) as exc:
            if c.in_transaction:
                c.execute("ROLLBACK")
            self.writer.reload()
            self.warn(f"cannot apply retention to {self.path}: {exc}")
        return dropped

    def used_bytes(self) -> int:
        c = self.conn
        pages = c.execute("PRAGMA page_count").fetchone()[0]
        free = c.execute("PRAGMA freelist_count").fetchone()[0]
        size = c.execute("PRAGMA page_size").fetchone()[0]
        return (pages - free) * size

    def _drop_before(self, keep_from: int) -> int:
        """Delete samples before ``keep_from`` and every row only they used."""
        c = self.conn
        count = c.execute("SELECT count(*) FROM samples WHERE n < ?", (keep_from,)).fetchone()[0]
        if not count:
            return 0
        c.execute("BEGIN IMMEDIATE")
        try:
            c.execute("DELETE FROM samples WHERE n < ?", (keep_from,))
            for table in VERSIONED:
                c.execute(f"DELETE FROM {table} WHERE first < ?1 AND last < ?1",
                          (keep_from,))
            c.execute("DELETE FROM procs WHERE id NOT IN (SELECT ent FROM proc_info) "
                      "AND id NOT IN (SELECT ent FROM vmo_refs) "
                      "AND id NOT IN (SELECT ent FROM vmo_base) "
                      "AND id NOT IN (SELECT ent FROM mappings) "
                      "AND id NOT IN (SELECT ent >> 40 FROM anon_vmos)")
            c.execute("DELETE FROM job_ids WHERE id NOT IN (SELECT ent FROM job_info) "
                      f"AND id NOT IN (SELECT ent >> {JOB_KEY_BITS} FROM job_values)")
            c.execute(f"""
                DELETE FROM strings WHERE id NOT IN (SELECT x FROM (
                  SELECT prov AS x FROM samples UNION SELECT extra FROM samples
                  UNION SELECT name FROM proc_info UNION SELECT cmdline FROM proc_info
                  UNION SELECT boot FROM procs UNION SELECT path FROM job_ids
                  UNION SELECT name FROM job_info UNION SELECT state FROM job_info
                  UNION SELECT ent FROM kernel_values
                  UNION SELECT ent & {(1 << JOB_KEY_BITS) - 1} FROM job_values
                  UNION SELECT name FROM vmos UNION SELECT kind FROM vmos
                  UNION SELECT path FROM vmos
                  UNION SELECT name FROM anon_vmos UNION SELECT kind FROM anon_vmos
                  UNION SELECT path FROM anon_vmos
                  UNION SELECT ent FROM map_strings) WHERE x IS NOT NULL)""")
            c.execute("COMMIT")
        except BaseException:
            if c.in_transaction:
                c.execute("ROLLBACK")
            raise
        finally:
            self.writer.reload()
        return count
