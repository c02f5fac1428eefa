"""Plain ``zxmem ps`` loads only what it needs (issue 17's start-up goal).

A test of structure, not of time: in a fresh interpreter, ``zxmem ps`` with
no option (the commonest command) must not import numpy, json, textual or
sqlite3, nor dataclasses/inspect, typing or argparse, whose imports were most
of its start-up (see BENCHMARKS.md, "Start-up against ps_mem and smem").
Modules the bare interpreter already has (``site`` may load some) are not
counted against it.
"""

from __future__ import annotations

import os
import subprocess
import sys

FORBIDDEN = ("numpy", "json", "textual", "sqlite3", "dataclasses", "inspect", "typing",
             "argparse")

_MODULES = "import sys; print(' '.join(sorted(sys.modules)))"
_PS = """\
import os, sys
from zxmem.cli import main
real = sys.stdout
sys.stdout = open(os.devnull, "w")
status = main(["ps"])
sys.stdout = real
print(status)
""" + _MODULES


def _loaded(code: str) -> tuple[str, set[str]]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHONSTARTUP")}
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         env=env, timeout=120, check=True).stdout.split("\n")
    return out[0], set(out[-2].split()) if len(out) > 1 else set()


def _top(modules: set[str]) -> set[str]:
    return {m.partition(".")[0] for m in modules}


def test_plain_ps_imports_nothing_it_does_not_need():
    _, bare = _loaded("print()\n" + _MODULES)
    status, ps = _loaded(_PS)
    assert status in ("0", "1")  # 1: some process unreadable even to root
    assert "zxmem.views.ps" in ps  # it did run ps
    extra = _top(ps - bare)
    assert sorted(m for m in FORBIDDEN if m in extra) == []


def test_the_check_would_see_an_import():
    # The same check on a run that does load one of them.
    _, bare = _loaded("print()\n" + _MODULES)
    _, loaded = _loaded("import json\n" + _PS)
    assert "json" in _top(loaded - bare)
