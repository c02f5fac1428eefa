"""Golden outputs of the cgroup-charge trees (``tests/fixtures/make_cgroup_trees.py``).

* ``cgroup-v1-charge``: one workload of known shape in a v1 memory cgroup:
  64 MiB anonymous, 32 MiB of unmapped page cache, a 16 MiB file mapped from
  another cgroup's cache, 16 threads.  Checked by hand: CHARGED 101.0M =
  PSS 84.6M + 32M unmapped cache + 724k kernel - 16.6M charged elsewhere
  (16 MiB file + the interpreter's libraries) + 356k remainder.
* ``cgroup-v2-nomemctl``: the same process as on a v2 machine whose memory
  controller is off: only ``memory.pressure`` exists, every charge is
  unknown (``-``/``null``), never 0, and ``--explain`` names each file.

Default ``ps`` on these trees is the plain table: the cgroup files are read
only for ``--cgroup``, ``--json`` and ``--explain``.
"""

from __future__ import annotations

import os
import re

import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "expected")
TREES_DIR = os.path.join(os.path.dirname(HERE), "fixtures", "proc-trees")
UPDATE = os.environ.get("ZXMEM_UPDATE_GOLDEN") == "1"

CASES = [
    ("cgroup-v1-charge", "default", []),
    ("cgroup-v1-charge", "cgroup-J", ["-J", "--cgroup"]),
    ("cgroup-v1-charge", "cgroup", ["--cgroup"]),
    ("cgroup-v1-charge", "explain", ["--explain=16106"]),
    ("cgroup-v1-charge", "json", ["--json"]),
    ("cgroup-v2-nomemctl", "cgroup-J", ["-J", "--cgroup"]),
    ("cgroup-v2-nomemctl", "explain", ["--explain=44"]),
    ("cgroup-v2-nomemctl", "json", ["--json"]),
]

_TIMESTAMP = re.compile(r'("timestamp": )"[^"]*"')


@pytest.mark.parametrize(("tree", "variant", "args"), CASES,
                         ids=[f"{t}-{v}" for t, v, _ in CASES])
def test_cgroup_golden(cli, tree, variant, args):
    root = os.path.join(TREES_DIR, tree, "proc")
    r = cli(["ps", "--proc-root", root, *args], stdout_isatty=True, terminal_width=80)
    assert r.status == 0, r.stderr
    actual = _TIMESTAMP.sub(r'\1"<timestamp>"', r.stdout)
    ext = "json" if "--json" in args else "txt"
    path = os.path.join(EXPECTED, tree, f"{variant}.{ext}")
    if UPDATE:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8") as f:
            f.write(actual)
    with open(path, encoding="utf-8") as f:
        assert actual == f.read()


def test_explain_terms_add_up_as_printed(cli):
    root = os.path.join(TREES_DIR, "cgroup-v1-charge", "proc")
    r = cli(["ps", "--proc-root", root, "--explain=16106"])
    total = 0
    for line in r.stdout.splitlines()[1:]:
        if line[:3] not in ("  +", "  -", "  ="):
            continue  # a term's source, under its name
        sign, value = line.split()[:2]
        if sign == "=":
            assert total == int(value)
            break
        total += int(value) if sign == "+" else -int(value)
    else:
        raise AssertionError("no charged line")
