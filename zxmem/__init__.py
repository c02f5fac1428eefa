"""zxmem: Fuchsia's Zircon memory tools for Linux.

The public face is small (the rest of the package is private and may change)::

    import zxmem

    snap = zxmem.collect(zxmem.Plan(kernel=True))   # the live system, once
    for p in snap.processes:
        print(p.koid, p.name, p.memory.pss_bytes if p.memory else None)
    saved = zxmem.load("mem.json")   # zxmem/Fuchsia memgraph or a Fuchsia capture

* :func:`collect` -- read the live system (or a recorded ``/proc`` tree) as a
  :class:`Plan` says, into an immutable :class:`~zxmem.model.Snapshot`;
* :func:`load` -- a saved snapshot, whatever its format.

Sizes are bytes; a value the kernel did not give is ``None``, never 0.  The
package is layered one way: ``sources`` build a Snapshot; ``tasktree`` and
``views`` derive text and JSON from it; ``cli`` and ``commands`` parse
arguments, pick a source and a view, and map errors to exit statuses.
Names are imported on first use, so ``zxmem ps`` starts without them.
"""

from __future__ import annotations

__version__ = "0.1.0"
__all__ = ["Plan", "Snapshot", "collect", "load", "__version__"]

TYPE_CHECKING = False  # typing itself costs start-up
if TYPE_CHECKING:
    from typing import Any

    from zxmem.collection import Plan, collect, load
    from zxmem.model import Snapshot

_LAZY = {"Plan": "zxmem.collection", "collect": "zxmem.collection",
         "load": "zxmem.collection", "Snapshot": "zxmem.model"}


def __getattr__(name: str) -> Any:
    module = _LAZY.get(name)
    if module is None:
        raise AttributeError(f"module 'zxmem' has no attribute {name!r}")
    import importlib

    value = getattr(importlib.import_module(module), name)
    globals()[name] = value
    return value
