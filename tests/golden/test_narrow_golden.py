"""Golden terminal layouts at 80 columns, compared byte for byte.

Each view runs in-process through the command's injectable Environment as
on an 80-column terminal (``stdout_isatty=True``, ``terminal_width=80``),
from the fixtures the piped goldens use: the recorded ``/proc`` trees of
``tests/fixtures/proc-trees`` (ps), the recorded workload of
``tests/fixtures/objects/workload`` (vmaps, vmos), the hand-made trees of
``tests/fixtures/hidden`` (k vmos); ``share`` (which reads live page
tables only) renders a page scan of known shape built here.  Colour is off
(``--color=never``) except in the ``-color`` files, which hold the exact
colour sequences.

The expected files were checked by hand: every line at most 80 columns;
the same rows, numbers and order as the piped goldens of the same input
(test_ps_golden, test_vmaps_vmos_golden, test_kvmos_asd_golden); file koids
as f1, f2, ... numbered as the views' docstrings say; names shortened in
the middle with ``...``.  To rewrite them after a deliberate change:
``ZXMEM_UPDATE_GOLDEN=1 pytest tests/golden``, then check the diff by hand.
"""

from __future__ import annotations

import os
import sys
from types import SimpleNamespace

import numpy as np
import pytest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))

from zxmem.views import share as share_view

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "expected")
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures")
TREES = os.path.join(FIXTURES, "proc-trees")
WORKLOAD = os.path.join(FIXTURES, "objects", "workload", "proc")
HIDDEN = os.path.join(FIXTURES, "hidden", "linux-6.18", "proc")
TTY = {"stdout_isatty": True, "terminal_width": 80}


def check(name: str, text: str) -> None:
    path = os.path.join(EXPECTED, name)
    if os.environ.get("ZXMEM_UPDATE_GOLDEN") == "1":
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        expected = f.read()
    assert text == expected, f"output differs from {name}"
    assert all(len(line) <= 80 for line in text.splitlines() if "\x1b" not in line), name


def _workload_pid() -> str:
    (pid,) = [p for p in os.listdir(WORKLOAD) if p.isdigit()]
    return pid


def _run(cli, args: list[str]) -> str:
    res = cli(args, **TTY)
    assert res.status == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("name, tree, args", [
    ("ps-cgroup-v2-80.txt", "cgroup-v2", ["--color=never"]),
    ("ps-hostile-names-80.txt", "hostile-names", ["--color=never", "--sort=koid"]),
    ("ps-hostile-names-T-80.txt", "hostile-names", ["--color=never", "-T", "--swap"]),
    ("ps-hostile-names-swap-80-color.txt", "hostile-names", ["--color=always", "--swap"]),
])
def test_ps_80(cli, monkeypatch, name, tree, args):
    monkeypatch.delenv("NO_COLOR", raising=False)
    check(name, _run(cli, ["ps", "--proc-root", os.path.join(TREES, tree, "proc"), *args]))


def test_ps_seed_80_color():
    # The seed's sample table (test_ps_golden.seed_snapshot) coloured: its
    # sizes under 1 MiB dim, the others plain.
    from test_ps_golden import seed_snapshot

    from zxmem.tasktree import TaskTree
    from zxmem.views.ps import PsOptions, render

    rows = list(TaskTree(seed_snapshot()).walk(sort="koid"))
    check("ps-seed-80-color.txt", render(rows, PsOptions(width=80, color=True, exact=False)))


@pytest.mark.parametrize("name, args", [
    ("vmaps-workload-80.txt", ["vmaps", "--color=never"]),
    ("vmaps-workload-extra-80.txt", ["vmaps", "--color=never", "--extra"]),
    ("vmaps-workload-80-color.txt", ["vmaps", "--color=always"]),
    ("vmos-workload-80.txt", ["vmos", "--color=never"]),
])
def test_vmaps_vmos_80(cli, name, args):
    check(name, _run(cli, [*args, "--proc-root", WORKLOAD, _workload_pid()]))


@pytest.mark.parametrize("name, args", [
    ("kvmos-hidden-618-80.txt", ["hidden"]),
    ("kvmos-all-618-80.txt", ["all"]),
    ("kvmos-pid-100-80.txt", ["100"]),
    ("kvmos-pid-200-uM-80.txt", ["200", "-uM"]),
])
def test_kvmos_80(cli, name, args):
    check(name, _run(cli, ["k", "vmos", *args, "--color=never", "--proc-root", HIDDEN]))


# share: a page scan of known shape.  PID 10 maps 10 pages (5 private),
# shares 4 pages with 11 (3 in its library, 1 in its heap) and 1 with 12
# (in the heap), and 2 swap slots with 12; the names are a 1,600-character
# command line, a 300-character one holding an escape sequence, and a
# path 200 characters long.
P = 4096
LONG = "/opt/app/bin/java " + " ".join(f"-Dprop{i}=value{i}" for i in range(100)) + " Main"
LIB = "/very/long/directory" * 9 + "/libsomething.so.1"


class _Census:
    def overlap(self, pid):
        return {11: np.array([3, 1]), 12: np.array([0, 1])}

    def shared_swap(self, pid):
        return {12: 2}


def share_report() -> dict:
    counts = SimpleNamespace(
        resident_bytes=10 * P, private_bytes=5 * P, shared_bytes=5 * P,
        shared_unseen_bytes=0, pss_bytes=7 * P + P // 2, swap_bytes=4 * P,
        swap_private_bytes=2 * P, swap_pss_bytes=3 * P, ksm_bytes=0,
        freed_on_exit_bytes=7 * P)
    vmas = [SimpleNamespace(start=0x7F0000001000, end=0x7F0000005000, path=LIB.encode()),
            SimpleNamespace(start=0x55D000009000, end=0x55D00000B000, path=b"[heap]")]
    scan = SimpleNamespace(results={10: counts}, census=_Census(), vmas={10: vmas},
                           denied=[], notes=[])
    names = {10: LONG, 11: "/usr/bin/python3 " + "x" * 280 + "\x1b[2J --end", 12: "sh"}
    return share_view.report(10, scan, names)


@pytest.mark.parametrize("name, verbose, color", [
    ("share-80.txt", False, False),
    ("share-v-80.txt", True, False),
    ("share-v-80-color.txt", True, True),
])
def test_share_80(name, verbose, color):
    check(name, share_view.render(share_report(), None, verbose, width=80, color=color))


def test_share_piped_is_whole():
    text = share_view.render(share_report(), None, True)
    assert LONG in text and LIB in text
