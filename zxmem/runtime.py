"""Process-wide switches that collection turns, turned back on the way out.

The library is called thousands of times by long-running commands, from
more than one thread (an exporter serves scrapes while it collects), so a
switch is never left changed: each is held by a count under a lock, and the
last holder to leave restores what was there before the first came in.
"""

from __future__ import annotations

import _thread  # threading's Lock, without importing threading
import gc
import sys

TYPE_CHECKING = False
if TYPE_CHECKING:
    from types import TracebackType

# Entries a decoding cache (paths, permissions, devices) keeps before it
# starts again: far more than one machine's libraries and files, and a bound
# for a process that reads smaps for days while temporary files come and go.
CACHE_LIMIT = 1 << 14

_lock = _thread.allocate_lock()
# Set by the console entry point (zxmem._entry): the process ends when the
# command returns, so what keep_until_exit is given need never be freed.
ending_after_command = False
_kept: list = []
_gc_holders = 0
_gc_was_enabled = False
_interval_holders = 0
_interval_before = 0.0


def pause_gc() -> None:
    """Hold the cycle collector off until the matching :func:`resume_gc`.

    Collection makes millions of small objects and no reference cycles; a
    pass triggered by their allocation walks them all (holding the GIL, so
    every reader thread waits) and frees nothing.
    """
    global _gc_holders, _gc_was_enabled
    with _lock:
        if _gc_holders == 0:
            _gc_was_enabled = gc.isenabled()
            gc.disable()
        _gc_holders += 1


def resume_gc() -> None:
    """Let go of one :func:`pause_gc`; the last one out restores the collector."""
    global _gc_holders
    with _lock:
        _gc_holders -= 1
        if _gc_holders == 0 and _gc_was_enabled:
            gc.enable()


class paused_gc:  # noqa: N801 - used as a function: `with paused_gc():`
    """No cycle-collector passes while the block runs (:func:`pause_gc`).

    ``settle``: on the way out, the objects made meanwhile that are still
    alive join the oldest generation at once (:func:`settle_gc`), for a
    block that builds a large, long-lived, acyclic result.

    A class rather than a ``contextlib.contextmanager``: contextlib is not
    imported at ``zxmem ps``'s start-up."""

    def __init__(self, settle: bool = False) -> None:
        self.settle = settle

    def __enter__(self) -> None:
        pause_gc()

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        if self.settle:
            settle_gc()
        resume_gc()


def settle_gc() -> None:
    """Move every object the collector tracks to its oldest generation
    (``gc.freeze()`` then ``gc.unfreeze()``: two list splices, no walk).

    After a paused block that built a hundred thousand objects (a stored
    sample read back), the first young pass once the collector is on again
    walks them all (20 ms, holding the GIL) and frees nothing; then the
    middle generation's pass walks them again.  In the oldest generation
    they are walked only by a full collection, as they would be anyway.
    Cyclic garbage made before, still young, waits for a full collection
    too.  Nothing is done while objects are frozen by someone else
    (``gc.get_freeze_count()``): unfreezing would release theirs."""
    with _lock:
        if gc.get_freeze_count() == 0:
            gc.freeze()
            gc.unfreeze()


class switch_interval:  # noqa: N801 - used as a function: `with switch_interval(s):`
    """``sys.setswitchinterval(seconds)`` while the block runs (the smallest
    interval asked for by any holder wins; the first holder's value comes
    back when the last one leaves)."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds

    def __enter__(self) -> None:
        global _interval_holders, _interval_before
        with _lock:
            if _interval_holders == 0:
                _interval_before = sys.getswitchinterval()
            _interval_holders += 1
            if self.seconds < sys.getswitchinterval():
                sys.setswitchinterval(self.seconds)

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        global _interval_holders
        with _lock:
            _interval_holders -= 1
            if _interval_holders == 0:
                sys.setswitchinterval(_interval_before)


def keep_until_exit(obj: object) -> None:
    """In a command-line run, keep ``obj`` until the process ends, which
    then ends without freeing it (:func:`zxmem._entry.run`): a snapshot of
    every mapping is a million objects, and freeing them one by one takes a
    tenth of a second for memory the kernel takes back at once.  Elsewhere
    (the library, commands run in-process by tests) nothing is kept."""
    if ending_after_command:
        _kept.append(obj)


def kept() -> bool:
    """Whether :func:`keep_until_exit` kept anything."""
    return bool(_kept)
