"""Golden outputs of ``zxmem k vmos`` and ``zxmem k asd kernel``.

The trees are the hand-made ones of ``tests/fixtures/hidden`` (see
``make_fixtures.py`` for their shapes) plus the recorded 6.18 and 3.10
kernel files of ``tests/fixtures/kernel``.  The expected files were checked
by hand against spec fuchsia-tools §8.1 (titles, the handle and non-handle
headers, row widths: handle 10, rights 6, koid 5, parent 6, #chld 5, #map 4,
#shr 4, size 7, alloc 7), §8.2 (two-space levels, ``'name'`` last, inclusive
ends) and against the fixtures' numbers: the Shmem remainder of the 6.18 tree
is 64 − 16 − 4 − 1 = 43 MiB, its vmalloc pages 512 + 2048 + 4 + 4 = 2568.
To rewrite them after a deliberate change: ``ZXMEM_UPDATE_GOLDEN=1 pytest
tests/golden``, then check the diff by hand.
"""

from __future__ import annotations

import json
import os

import pytest

HERE = os.path.dirname(__file__)
EXPECTED = os.path.join(HERE, "expected")
HIDDEN = os.path.join(HERE, "..", "fixtures", "hidden")
KERNEL = os.path.join(HERE, "..", "fixtures", "kernel")


def check(name: str, text: str) -> None:
    path = os.path.join(EXPECTED, name)
    if os.environ.get("ZXMEM_UPDATE_GOLDEN"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        expected = f.read()
    assert text == expected, f"output differs from {name}"


def tree(name: str) -> str:
    return os.path.join(HIDDEN, name, "proc")


@pytest.mark.parametrize(
    "name, root, args, stderr_has",
    [
        ("kvmos-hidden-618.txt", "linux-6.18", ["hidden"],
         ["tmpfs/ramfs files not walked", "2 shmem object(s) of unknown alloc"]),
        ("kvmos-hidden-618-uk.txt", "linux-6.18", ["hidden", "-uk"], []),
        ("kvmos-hidden-old.txt", "old-kernel", ["hidden"],
         ["no rss/swap columns", "Shmem not in /proc/meminfo", "bufinfo missing"]),
        ("kvmos-hidden-no-sysvipc.txt", "no-sysvipc", ["hidden"],
         ["/proc/sysvipc/shm missing: SysV segments unknown"]),
        ("kvmos-all-618.txt", "linux-6.18", ["all"], []),
        ("kvmos-pid-100.txt", "linux-6.18", ["100"], []),
        ("kvmos-pid-200-uM.txt", "linux-6.18", ["200", "-uM"], []),
    ],
)
def test_kvmos_golden(cli, name, root, args, stderr_has):
    r = cli(["k", "vmos", *args, "--proc-root", tree(root)])
    assert r.status == 0, r.stderr
    assert "Traceback" not in r.stderr
    for phrase in stderr_has:
        assert phrase in r.stderr
    check(name, r.stdout)


def test_kvmos_hidden_json(cli):
    r = cli(["k", "vmos", "hidden", "--json", "--proc-root", tree("linux-6.18")])
    assert r.status == 0, r.stderr
    doc = json.loads(r.stdout)
    held = [v for v in doc["vmos"] if v["name"] == "memfd:held"][0]
    assert [(h["pid"], h["fd"], h["handle_rights"]) for h in held["holders"]] == [
        (100, 3, ["READ", "WRITE"]), (200, 3, ["READ"])]
    assert held["size_bytes"] is None  # unknown in a recording, never 0
    assert doc["vmos"][-1]["koid"] == 0 and doc["vmos"][-1]["committed_bytes"] == 43 << 20
    check("kvmos-hidden-618.json", json.dumps(doc, indent=1) + "\n")


@pytest.mark.parametrize(
    "name, root, args, stderr_has",
    [
        ("asd-618.txt", tree("linux-6.18"), [], []),
        ("asd-618-v.txt", tree("linux-6.18"), ["-v"], []),
        ("asd-zeroed.txt", tree("old-kernel"), [],
         ["vmallocinfo addresses are hidden", "module addresses hidden",
          "/proc/iomem addresses hidden"]),
        ("asd-iomem-only.txt", tree("no-sysvipc"), [],
         ["/proc/vmallocinfo missing", "/proc/modules missing"]),
        ("asd-hashed-618.txt", os.path.join(KERNEL, "linux-6.18"), [],
         ["addresses are hashed (kptr_restrict=0)"]),
    ],
)
def test_asd_golden(cli, name, root, args, stderr_has):
    r = cli(["k", "asd", "kernel", *args, "--proc-root", root])
    assert r.status == 0, r.stderr
    assert "Traceback" not in r.stderr
    for phrase in stderr_has:
        assert phrase in r.stderr
    check(name, r.stdout)


def test_asd_kernel_prefix(cli):
    full = cli(["k", "asd", "kernel", "--proc-root", tree("linux-6.18")])
    short = cli(["k", "asd", "k", "--proc-root", tree("linux-6.18")])
    assert short.stdout == full.stdout


@pytest.mark.parametrize(
    "args, status, message",
    [
        (["k", "vmos", "bogus"], 2, "dunno 'bogus'"),
        (["k", "vmos", "0"], 2, "dunno '0'"),
        (["k", "vmos", "999999"], 1, "999999"),
        (["k", "asd", "kernels"], 2, "dunno 'kernels'"),
        (["k", "asd", "1234"], 2, "zxmem vmaps 1234"),
        (["k", "vmos", "hidden", "-uQ"], 2, "unknown unit"),
    ],
)
def test_bad_arguments_are_one_line(cli, args, status, message):
    r = cli([*args, "--proc-root", tree("linux-6.18")])
    assert r.status == status
    assert message in r.stderr
    assert "Traceback" not in r.stderr
    assert len(r.stderr.strip().splitlines()) <= 2  # argparse adds its usage line


def test_asd_nothing_readable_is_an_error(cli, tmp_path):
    (tmp_path / "meminfo").write_text("MemTotal: 1 kB\n")
    r = cli(["k", "asd", "kernel", "--proc-root", str(tmp_path)])
    assert r.status == 1
    assert "none of vmallocinfo, modules, iomem could be read" in r.stderr


def test_kps_still_works(cli):
    r = cli(["k", "ps", "--proc-root", os.path.join(KERNEL, "kps")])
    assert r.status == 0 and r.stdout.startswith("     id")
