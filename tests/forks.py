"""A fork whose child exits at once: what the code must survive when a
helper process it forks (a smaps reader, a JSON writer) dies before doing
anything."""

from __future__ import annotations

import os


def children_die_at_once(monkeypatch) -> None:
    """From now on in this test, ``os.fork``'s child exits with status 3 at
    once; the parent sees a normal fork."""
    real_fork = os.fork

    def fork_and_die() -> int:
        pid = real_fork()
        if pid == 0:
            os._exit(3)
        return pid

    monkeypatch.setattr(os, "fork", fork_and_die)
