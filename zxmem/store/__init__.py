"""The history store: samples of the machine over time, in one SQLite file.

``zxmem record`` writes it, ``zxmem history`` lists it, and every view reads
a sample of it with ``--from STORE`` (the newest) or ``--from STORE@WHEN``
(``@first``, ``@last``, ``@N``, ``@-2h``, ``@2026-12-03T10:00``) through
:func:`zxmem.sources.load.load_snapshot`, which hands SQLite files to
:func:`load_from_store`.

What a sample holds (its *tier*):

* totals (every sample): the kernel's counters, the jobs, and every
  process's identity and memory totals;
* objects (every ``--objects-every``-th sample): also the memory objects
  (VMOs), each process's references to them, and each process's mappings
  (read back only when asked: ``load_from_store(..., mappings=...)``).

Rows are kept only when they change (see :mod:`zxmem.store.schema`), sizes are
integer bytes, and strings are stored once.  Modules: ``schema`` (tables,
versions, migrations), ``writer`` (appending a sample), ``reader`` (a sample
back as a Snapshot, selectors), ``recorder`` (locking, retention, the
recording loop's error handling).
"""

from __future__ import annotations

import os
import time
from typing import TYPE_CHECKING

if TYPE_CHECKING:
    from collections.abc import Collection

    from zxmem.model import Snapshot

MAGIC = b"SQLite format 3\x00"


def is_store_file(path: str) -> bool:
    """Whether ``path`` is an SQLite file (by its first 16 bytes).  Only a
    regular file is looked into: reading a pipe (``--from <(zxmem memgraph)``)
    would take the bytes the JSON reader needs."""
    import stat

    try:
        if not stat.S_ISREG(os.stat(path).st_mode):
            return False
        with open(path, "rb") as f:
            return f.read(16) == MAGIC
    except OSError:
        return False


def split_selector(src: str) -> tuple[str, str | None]:
    """``STORE@WHEN`` -> (STORE, WHEN); a path that exists as given, or
    without an ``@``, has no selector."""
    if os.path.exists(src) or "@" not in src:
        return src, None
    base, _, selector = src.rpartition("@")
    return base, selector


def load_from_store(src: str, now_s: float | None = None, *, objects: bool = True,
                    objects_of: Collection[int] | None = None,
                    mappings: bool | Collection[int] = False) -> Snapshot | None:
    """The sample ``src`` names if it is a store (``STORE`` or ``STORE@WHEN``),
    else None (not a store: the caller reads it as JSON).  Errors are one
    line (:class:`zxmem.store.schema.StoreError`).  ``objects`` False leaves
    out an objects sample's memory objects and references (a view of
    process totals reads it at the cost of a totals sample); ``objects_of``
    (PIDs): only those processes' references and the objects they reach
    (:func:`zxmem.store.reader.read_sample`).  ``mappings``: with every
    process's mappings (True) or those of these PIDs (an objects sample
    holds them; reading them is left out unless asked)."""
    base, selector = split_selector(src)
    if not is_store_file(base):
        if selector is not None and os.path.exists(base):
            from zxmem.store.schema import StoreError

            raise StoreError(f"{src}: '@{selector}' selects a sample of a history store "
                             f"(zxmem record), and {base} is not one")
        return None
    from zxmem.store.reader import read_sample, select
    from zxmem.store.schema import StoreError, open_store

    conn = open_store(base, create=False, readonly=True)
    try:
        n = select(conn, selector or "last", time.time() if now_s is None else now_s, base)
        return read_sample(conn, n, base, objects=objects, objects_of=objects_of,
                           mappings=mappings)
    except StoreError:
        raise
    except Exception as exc:  # sqlite3.Error, a corrupt row
        raise StoreError(f"{src}: cannot read the store: {exc}") from None
    finally:
        conn.close()


def missing_note(src: str, what: str = "mappings", now_s: float | None = None) -> str | None:
    """Why the store sample ``src`` names holds no ``what`` ("mappings" or
    "memory objects") of any process, with the nearest samples that do
    (:func:`zxmem.store.reader.no_mappings_reason`); None when ``src`` is
    not a store or the sample holds them."""
    base, selector = split_selector(src)
    if not is_store_file(base):
        return None
    from zxmem.store.reader import no_mappings_reason, select
    from zxmem.store.schema import open_store

    conn = open_store(base, create=False, readonly=True)
    try:
        n = select(conn, selector or "last", time.time() if now_s is None else now_s, base)
        return no_mappings_reason(conn, n, what)
    finally:
        conn.close()


def default_path(euid: int | None = None, environ=None) -> str:
    """``/var/lib/zxmem/history.db`` for root, else
    ``$XDG_STATE_HOME/zxmem/history.db`` (``~/.local/state`` by default)."""
    environ = os.environ if environ is None else environ
    euid = os.geteuid() if euid is None else euid
    if euid == 0:
        return "/var/lib/zxmem/history.db"
    state = environ.get("XDG_STATE_HOME") or os.path.join(
        os.path.expanduser("~"), ".local", "state")
    return os.path.join(state, "zxmem", "history.db")
