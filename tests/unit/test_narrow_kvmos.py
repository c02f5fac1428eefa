"""zxmem k vmos on a terminal: fitted to its width (short file koids,
names shortened in the middle, the handle column as wide as its cells),
alloc coloured only when asked; piped and --wide lines whole (the goldens
of tests/golden/test_kvmos_asd_golden.py check the piped text)."""

from __future__ import annotations

import os

import pytest

HIDDEN = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hidden")
ROOT = os.path.join(HIDDEN, "linux-6.18", "proc")
TTY = {"stdout_isatty": True, "terminal_width": 80}


def _k(cli, *args, **kw):
    res = cli(["k", "vmos", *args, "--proc-root", ROOT], **kw)
    assert res.status == 0, res.stderr
    return res.stdout


@pytest.mark.parametrize("which", ["hidden", "all", "100", "200"])
def test_terminal_80_fits(cli, which, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    piped = _k(cli, which)
    assert any(len(x) > 80 for x in piped.splitlines())  # 15-digit koids, long total
    tty = _k(cli, which, "--color=never", **TTY)
    assert all(len(x) <= 80 for x in tty.splitlines()), tty
    assert "\x1b" not in piped and "\x1b" not in tty
    # The same rows as piped, the total line split in two when too long.
    assert len(tty.splitlines()) - len(piped.splitlines()) in (0, 1)
    wide = _k(cli, which, "--wide", "--color=never", **TTY)
    assert wide == piped


def test_labels_stand_for_the_file_koids_in_listing_order(cli):
    piped = _k(cli, "all").splitlines()[2:-2]
    tty = _k(cli, "all", "--color=never", **TTY).splitlines()[2:-3]
    assert len(piped) == len(tty)
    n = 0
    for whole, short in zip(piped, tty, strict=True):
        koid, label = int(whole.split()[2]), short.split()[2]
        if koid >= 1 << 32:
            n += 1
            assert label == f"f{n}"
        else:
            assert label == str(koid)
    assert n == 9


def test_pid_labels_agree_with_vmos(cli):
    # k vmos PID and vmos PID give a file koid the same label.
    tty = _k(cli, "100", "--color=never", **TTY)
    vmos = cli(["vmos", "--proc-root", ROOT, "--color=never", "100"], **TTY).stdout
    assert "f1" in tty

    def names(text, skip):
        out = {}
        for line in text.splitlines():
            parts = line.split()
            if len(parts) > skip and parts[skip].startswith("f") and parts[skip][1:].isdigit():
                out[parts[skip]] = parts[-1]
        return out

    in_k, in_vmos = names(tty, 2), names(vmos, 1)
    assert in_k and all(in_vmos[label] == name for label, name in in_k.items())


def test_colour_only_on_a_terminal_without_no_color(cli, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    assert "\x1b[2m132k\x1b[0m" in _k(cli, "all", **TTY)  # [stack]: under 1 MiB, dim
    assert "\x1b" not in _k(cli, "all")
    monkeypatch.setenv("NO_COLOR", "1")
    assert "\x1b" not in _k(cli, "all", **TTY)
    assert "\x1b[" in _k(cli, "all", "--color=always")


def test_long_names_keep_both_ends():
    from zxmem.model import Vmo
    from zxmem.views.kvmos import Fit, row

    vmo = Vmo((7 << 32) | 5, "memfd:" + "a" * 100 + "-end", "shmem", 4096, 4096)
    line = row("12:3", "rw----", vmo, None, Fit({vmo.koid: "f1"}, 80, False, ["12:3"]))
    assert len(line) - 1 == 80
    assert "    f1 " in line and line.rstrip("\n").endswith("-end") and "memfd:a" in line
