"""Golden ``zxmem ps`` outputs, compared byte for byte.

Two kinds of input:

* the recorded ``/proc`` trees of ``tests/fixtures/proc-trees`` (see its
  README), read through the real CLI with ``--proc-root``;
* a Snapshot built here whose byte values reproduce the seed document's
  sample ``ps`` table exactly.

Every file under ``expected/`` was checked by hand against the layout of spec
fuchsia-tools §2.3 (column widths, header before and after, walk order, blank
SHARED for jobs, blank sizes for threads) before it was accepted.  To
regenerate after re-recording the trees, run with ``ZXMEM_UPDATE_GOLDEN=1``
and check the changed files by hand again; the test still compares.

``--json`` outputs hold the time of the run; it is replaced by
``"<timestamp>"`` on both sides (the only normalization).
"""

from __future__ import annotations

import json
import os
import re

import pytest

from zxmem.model import Job, MemoryCounts, Process, Provenance, Snapshot
from zxmem.tasktree import TaskTree
from zxmem.units import format_size
from zxmem.views.ps import PsOptions, render

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "expected")
TREES_DIR = os.path.join(os.path.dirname(HERE), "fixtures", "proc-trees")
UPDATE = os.environ.get("ZXMEM_UPDATE_GOLDEN") == "1"

TREES = (
    "cgroup-v1-hybrid",
    "cgroup-v2",
    "no-smaps-rollup",
    "unreadable-smaps",
    "kthread-zombie",
    "hostile-names",
)

# Fuchsia's order (--sort=koid): these reproduce the layout of Fuchsia's ps,
# walk order included.  The default order, biggest first, has its own files.
VARIANTS = {
    "default": ["--sort=koid"],
    "J": ["--sort=koid", "-J"],
    "T": ["--sort=koid", "-T"],
    "late": ["--sort=koid", "--style=late"],
    "units-k": ["--sort=koid", "--units=k"],
    "swap": ["--sort=koid", "--swap"],
    "json": ["--sort=koid", "--json"],
    "biggest": [],
    "biggest-T": ["-T"],
}

EXTRA = {
    ("kthread-zombie", "all"): ["--sort=koid", "-a"],
    ("kthread-zombie", "all-T"): ["--sort=koid", "-a", "-T"],
    ("cgroup-v1-hybrid", "sort-pss"): ["--sort=pss"],
    ("cgroup-v1-hybrid", "units-M-late-J"): ["--sort=koid", "--units=M", "--style=late", "-J"],
    ("cgroup-v2", "sort-name-T"): ["--sort=name", "-T"],
    ("hostile-names", "late-T"): ["--sort=koid", "--style=late", "-T"],
    ("cgroup-v2", "top-3"): ["--top", "3"],
    ("cgroup-v2", "match"): ["--match", "worker|replica"],
    ("cgroup-v2", "pid"): ["--pid", "19945,19901", "--sort=koid"],
    ("cgroup-v2", "job-name"): ["--job=web"],
    ("cgroup-v2", "job-path-J"): ["--job=/zxmem-fixture/db", "-J"],
    ("cgroup-v1-hybrid", "biggest-J"): ["-J"],
}

CASES = [(t, v, a) for t in TREES for v, a in VARIANTS.items()] + [
    (t, v, a) for (t, v), a in EXTRA.items()
]

_TIMESTAMP = re.compile(r'("timestamp": )"[^"]*"')


def _normalize(text: str) -> str:
    return _TIMESTAMP.sub(r'\1"<timestamp>"', text)


def compare(name: str, actual: str) -> None:
    path = os.path.join(EXPECTED, name)
    if UPDATE:
        os.makedirs(os.path.dirname(path), exist_ok=True)
        with open(path, "w", encoding="utf-8", newline="") as f:
            f.write(actual)
    with open(path, encoding="utf-8", newline="") as f:
        expected = f.read()
    assert actual == expected, f"output differs from {path}"


def proc_root(tree: str) -> str:
    return os.path.join(TREES_DIR, tree, "proc")


@pytest.mark.parametrize(("tree", "variant", "args"), CASES, ids=[f"{t}/{v}" for t, v, _ in CASES])
def test_golden_tree(cli, tree, variant, args):
    r = cli(["ps", "--proc-root", proc_root(tree), *args])
    assert r.status == 0, r.stderr
    if tree == "unreadable-smaps":
        # The hint after the count depends on who runs the tests.
        assert r.stderr.startswith("zxmem: 1 process not readable")
        assert r.stderr.count("\n") == 1
    else:
        assert r.stderr == ""
    out = r.stdout
    if variant.startswith("json"):
        json.loads(out)
        compare(f"{tree}/{variant}.json", _normalize(out))
    else:
        compare(f"{tree}/{variant}.txt", out)


@pytest.mark.parametrize("tree", TREES)
def test_golden_rows_have_spec_layout(tree):
    """Every text golden: header first and last, aligned %7s columns."""
    for variant in os.listdir(os.path.join(EXPECTED, tree)):
        if not variant.endswith(".txt"):
            continue
        with open(os.path.join(EXPECTED, tree, variant), encoding="utf-8") as f:
            lines = f.read().split("\n")
        assert lines[-1] == ""
        lines = lines[:-1]
        header = lines[0]
        assert header == lines[-1]
        assert header.startswith("TASK ")
        # PSS is the first %7s column; the TASK column ends one space before it.
        id_w = header.index("PSS") + 3 - 7 - 1
        assert header[:id_w].rstrip() == "TASK"
        cols = header[id_w:].split()
        assert cols[-1] == "NAME"
        ncols = len(cols) - 1
        for line in lines[1:-1]:
            cell = line[:id_w]
            assert re.fullmatch(r"( {2})*[jpt]: ?\d+ *", cell), line
            assert line[id_w] == " "
            fields = [line[id_w + 1 + 8 * i : id_w + 8 + 8 * i] for i in range(ncols)]
            for f in fields:
                assert len(f) == 7
            assert line[id_w + 8 * ncols] == " "


# --- hostile names on a recorded tree --------------------------------------

_ROW = re.compile(r"TASK |( {2})*[jpt]: ?\d+ ")
# Anything a terminal could act on: C0, DEL, C1, bidi and zero-width marks.
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


@pytest.mark.parametrize("args", [[], ["-T"], ["--style=late", "-T", "-a"]])
@pytest.mark.parametrize("width", [None, 80])
def test_hostile_names_cannot_start_rows_or_move_the_cursor(cli, args, width):
    kw = {"stdout_isatty": True, "terminal_width": width} if width else {}
    r = cli(["ps", "--proc-root", proc_root("hostile-names"), *args], **kw)
    assert r.status == 0
    lines = r.stdout.split("\n")
    assert lines[-1] == ""
    for line in lines[:-1]:
        assert _ROW.match(line), repr(line)
        assert _UNSAFE.search(line) is None, repr(line)
        if width:
            assert len(line) <= width
    # Two processes, three plus one threads: nothing more, nothing less.
    n_p = sum(1 for line in lines if line.lstrip().startswith("p"))
    assert n_p == 2


# --- the seed's sample table -------------------------------------------------

SEED_TABLE = os.path.join(EXPECTED, "seed-ps.txt")

# (koid, name, job, PSS bytes, PRIVATE bytes); SHARED is 28 KiB for all.
# Chosen so that every printed number of the seed's table comes out, the
# job rows included, with the job totals computed by TaskTree as sums:
# each "X.3k" PSS is X KiB + 349 bytes (the top of what the classic rule
# prints as .3), each PRIVATE is exact KiB, and p:1916 takes the rest.
SEED_PROCESSES = (
    (1043, "bin/devmgr", 1028, 1386 * 1024 + 349, 1384 * 1024),
    (1209, "/boot/bin/acpisvc", 1082, 774 * 1024 + 349, 772 * 1024),
    (1565, "devhost:root", 1082, 250 * 1024 + 349, 248 * 1024),
    (1619, "devhost:misc", 1082, 654 * 1024 + 349, 652 * 1024),
    (1688, "devhost:platform", 1082, 258 * 1024 + 349, 256 * 1024),
    (1867, "devhost:pci#1:1234:1111", 1082, 3878 * 1024 + 349, 3876 * 1024),
    (1916, "devhost:pci#3:8086:2922", 1082, 25553198, 25550848),
    (1104, "crashlogger", 1103, 298 * 1024 + 349, 296 * 1024),
    (1290, "netsvc", 1103, 242 * 1024 + 349, 240 * 1024),
    (2115, "sh:console", 1103, 362 * 1024 + 349, 360 * 1024),
    (2334, "sh:vc", 1103, 266 * 1024 + 349, 264 * 1024),
    (2441, "/boot/bin/ps", 1103, 306 * 1024 + 349, 304 * 1024),
)
SHARED = 28 * 1024


def seed_snapshot() -> Snapshot:
    jobs = (
        Job(1028, "root", 0, path="/"),
        Job(1082, "zircon-drivers", 1028, path="/zircon-drivers"),
        Job(1103, "zircon-services", 1028, path="/zircon-services"),
    )
    procs = tuple(
        Process(
            koid,
            name.rsplit("/", 1)[-1][:15],
            job,
            cmdline=(name,),
            memory=MemoryCounts(pss_bytes=pss, private_bytes=private, shared_bytes=SHARED),
        )
        for koid, name, job, pss, private in SEED_PROCESSES
    )
    return Snapshot(Provenance("test"), jobs, procs)


def test_seed_values_are_consistent():
    # PSS = PRIVATE + a share of SHARED, so PRIVATE <= PSS <= PRIVATE + SHARED.
    for _, _, _, pss, private in SEED_PROCESSES:
        assert private <= pss <= private + SHARED


def test_seed_table_reproduced_with_classic_rounding():
    rows = list(TaskTree(seed_snapshot()).walk())
    out = render(rows, PsOptions(exact=False))
    compare("seed-ps.txt", out)


def test_seed_table_root_row_impossible_with_exact_rounding():
    """With the 2020+ rule the root's "32.9M" cannot be reached.

    The largest PSS each row's printed text allows under the exact rule,
    summed the way the job totals are (root = p:1043 + j:1082 + j:1103, each
    job capped by its own printed total) stays below the smallest byte count
    that prints as 32.9M: the seed's table was printed with the classic rule.
    """

    k, m = 1024, 1024 * 1024

    def top(text: str) -> int:
        # Largest byte count that prints as text under the exact rule (the
        # bytes printing as one text form a contiguous range).
        unit = k if text[-1] == "k" else m
        b = round(float(text[:-1]) * unit)
        if format_size(b) != text:
            b += 1  # an exact multiple prints without the decimal
        assert format_size(b) == text
        for step in (unit // 1024 or 1, 1):
            while format_size(b + step) == text:
                b += step
        return b

    drivers = min(
        sum(top(t) for t in ("774.3k", "250.3k", "654.3k", "258.3k", "3878.3k", "24.4M")),
        top("30.0M"),
    )
    services = min(sum(top(f"{x}.3k") for x in (298, 242, 362, 266, 306)), top("1475.7k"))
    root_max = top("1386.3k") + drivers + services
    assert format_size(root_max) == "32.8M"
    assert format_size(root_max + 1) == "32.8M"  # still short of 32.9M

    # And the snapshot above, printed with the exact rule, differs only there.
    exact = render(list(TaskTree(seed_snapshot()).walk()), PsOptions()).split("\n")
    with open(SEED_TABLE, encoding="utf-8") as f:
        classic = f.read().split("\n")
    diff = [(a, b) for a, b in zip(classic, exact, strict=True) if a != b]
    assert diff == [
        (
            "j:1028       32.9M   32.8M         root",
            "j:1028       32.8M   32.8M         root",
        )
    ]
