"""``ps``, ``mem`` and ``digest`` on ``ffx profile memory --machine json``, and
``digest -v`` on the real capture wrapped with its buckets.

The ffx fixtures (``tests/fixtures/ffx``, see ``tests/unit/test_ffx_import.py``
for their shape) give byte-for-byte goldens under ``expected/ffx-*``, checked
by hand: ps's job row is the sum of its processes (the PSS of the
CompleteDigest adds up to its 11411456 committed bytes), mem's triplets are
ffx's ``private``/``scaled``/``total`` (ComponentDigest: scaled rounded down,
kernel row without the VMO remainder), digest's rows ffx's buckets.

The real capture (``fixtures/fuchsia/capture``) wrapped as memory_monitor
serves it, ``{"Capture": …, "Buckets": …}``, must give the digest of
``--buckets`` with the same file, and ``-v``'s per-process lines must be
what mem_digest.py's loop computes from the raw JSON (written out here).

Regenerate with ``ZXMEM_UPDATE_GOLDEN=1`` and check the changes by hand.
"""

from __future__ import annotations

import json
import os
import re

import fixture_paths
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "expected")
FIXTURES = os.path.join(os.path.dirname(HERE), "fixtures", "ffx")
UPDATE = os.environ.get("ZXMEM_UPDATE_GOLDEN") == "1"


def golden(name: str, text: str) -> None:
    target = os.path.join(EXPECTED, name)
    if UPDATE:
        with open(target, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    with open(target, encoding="utf-8", newline="") as f:
        assert text == f.read(), f"{name} differs"


CASES = [
    ("complete-digest", ["ps", "--sort=koid"], "ps"),
    ("complete-digest", ["ps"], "ps-biggest"),
    ("complete-digest", ["mem"], "mem"),
    ("complete-digest", ["mem", "--csv"], "mem.csv"),
    ("complete-digest", ["digest"], "digest"),
    ("complete-digest", ["digest", "--csv"], "digest.csv"),
    ("complete-digest", ["digest", "-v"], "digest-v"),
    ("complete-digest", ["digest", "-vv"], "digest-vv"),
    ("process-digest", ["ps", "--sort=koid"], "ps"),
    ("process-digest", ["mem"], "mem"),
    ("component-digest", ["ps", "--sort=koid"], "ps"),
    ("component-digest", ["mem"], "mem"),
    ("component-digest", ["digest"], "digest"),
    ("component-digest", ["digest", "--csv"], "digest.csv"),
]


@pytest.mark.parametrize("fixture, args, tag", CASES,
                         ids=[f"{f}-{t}" for f, _, t in CASES])
def test_ffx_golden(cli, fixture, args, tag):
    r = cli([*args, "--from", os.path.join(FIXTURES, f"{fixture}.json")])
    assert r.status == 0, r.stderr
    ext = "" if "." in tag else ".txt"
    golden(f"ffx-{fixture}-{tag}{ext}", r.stdout)


def test_ffx_complete_digest_v_by_hand(cli):
    # Blobfs's VMOs all came through blobfs.cm, ComponentManager's relro
    # through component_manager, Archivist's InspectHeap through archivist;
    # the two pools: the bootfs VMO shared by archivist and
    # component_manager (4 MiB), inspect-parent held by archivist alone.
    r = cli(["digest", "-v", "--from", os.path.join(FIXTURES, "complete-digest.json")])
    assert r.stdout == (
        "Archivist: 128KiB\n"
        "\tarchivist.cm: 128KiB\n"
        "Blobfs: 3.25MiB\n"
        "\tblobfs.cm: 3.25MiB\n"
        "ComponentManager: 8KiB\n"
        "\tbin/component_manager: 8KiB\n"
        "Kernel: 129.1MiB\n"
        "Netstack: 3MiB\n"
        "\tnetstack.cm: 3MiB\n"
        "Orphaned: 1MiB\n"
        "Undigested: 4.5MiB\n"
        "\n"
        "Total: 141MiB\n"
        "\n"
        "Undigested:\n"
        "\tarchivist.cm[2004] ,bin/component_manager[2002]: 4MiB\n"
        "\t\tarchivist.cm[2004] VMO Summaries:\n"
        "\t\t\tuncompressed-bootfs (1): 4MiB\n"
        "\t\tbin/component_manager[2002] VMO Summaries:\n"
        "\t\t\tuncompressed-bootfs (1): 4MiB\n"
        "\tarchivist.cm[2004]: 512KiB\n"
        "\t\tarchivist.cm[2004] VMO Summaries:\n"
        "\t\t\tinspect-parent (1): 512KiB\n"
    )


# ---------------------------------------------------------------------------
# The real capture, wrapped with its buckets

CAPTURE_DIR = str(fixture_paths.CAPTURE_DIR)
HAVE_CAPTURE = os.path.isfile(os.path.join(CAPTURE_DIR, "test_snapshot.json"))


@pytest.fixture
def wrapped(tmp_path):
    if not HAVE_CAPTURE:
        pytest.skip("the shared Fuchsia capture fixtures are not here")
    with open(os.path.join(CAPTURE_DIR, "test_snapshot.json"), encoding="utf-8") as f:
        cap = json.load(f)
    with open(os.path.join(CAPTURE_DIR, "example_buckets.json"), encoding="utf-8") as f:
        buckets = json.load(f)
    path = tmp_path / "capture-and-buckets.json"
    path.write_text(json.dumps({"Capture": cap, "Buckets": buckets}, separators=(",", ":")))
    return path, cap, buckets


def fmt_size(num: float) -> str:
    for unit in ("", "Ki", "Mi"):
        if abs(num) < 1024.0:
            return f"{num:.4g}{unit}B"
        num /= 1024.0
    return f"{num:.4g}GiB"


def test_wrapped_capture_digest_is_the_buckets_files(cli, wrapped):
    path, _cap, _buckets = wrapped
    own = cli(["digest", "--from", str(path)])
    assert own.status == 0 and own.stderr == "", own.stderr
    with open(os.path.join(EXPECTED, "digest-capture-example.txt"), encoding="utf-8") as f:
        assert own.stdout == f.read()


def test_wrapped_capture_digest_v_per_process(cli, wrapped):
    """-v's bucket lines against the scripts' loop, written out on the raw JSON."""
    path, cap, buckets = wrapped
    names = cap["VmoNames"]
    vmos = {v[0]: (names[v[1]], v[3]) for v in cap["Vmos"][1:]}

    def rx(v):
        return None if v is None else re.compile(v if isinstance(v, str) else "|".join(v))

    specs = [(b["name"], rx(b.get("process")), rx(b.get("vmo"))) for b in buckets]
    taken: set[int] = set()
    per: dict[str, dict[int, int]] = {b["name"]: {} for b in buckets}
    pname = {}
    for koid, name, refs in cap["Processes"][1:]:
        pname[koid] = name
        for bname, prx, vrx in specs:
            if prx is not None and not prx.fullmatch(name):
                continue
            for k in refs:
                vname, committed = vmos[k]
                if k in taken or committed == 0 or (vrx is not None
                                                     and not vrx.fullmatch(vname)):
                    continue
                per[bname][koid] = per[bname].get(koid, 0) + committed
                taken.add(k)
    expected: dict[str, list[str]] = {}
    for bname, by_proc in per.items():
        entries = sorted(by_proc.items(), key=lambda kv: kv[1], reverse=True)
        expected[bname] = [f"\t{pname[k]}: {fmt_size(s)}" for k, s in entries]

    r = cli(["digest", "-v", "--from", str(path)])
    assert r.status == 0, r.stderr
    head = r.stdout.split("\n\nTotal: ")[0].splitlines()
    got: dict[str, list[str]] = {}
    current = None
    for line in head:
        if line.startswith("\t"):
            got[current].append(line)
        else:
            current = line.split(": ")[0]
            got[current] = []
    for bname, lines in expected.items():
        if lines:
            assert got[bname] == lines, bname
    assert sum(len(v) for v in expected.values()) > 50  # the check covers a real spread
    # The per-pool summaries follow each pool line; -vv lists the VMOs.
    tail = r.stdout.split("\nUndigested:\n")[1]
    assert "\t\t" in tail and " VMO Summaries:\n" in tail
    vv = cli(["digest", "-vv", "--from", str(path)]).stdout.split("\nUndigested:\n")[1]
    assert " VMOs:\n" in vv and " VMO Summaries:" not in vv
