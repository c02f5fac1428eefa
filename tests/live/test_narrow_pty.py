"""The everyday views on a real 80x24 terminal (a pty driven by pexpect):
``ps``, ``vmaps``, ``vmos``, ``k vmos`` and ``share`` of workloads with a
1,600-character command line and a memfd with a 200-character name.

On the pty no output line may pass 80 display columns and sizes are
coloured; with NO_COLOR set there is no escape sequence; piped (not a
terminal) there is none either and the long lines are whole.  The real
``zxmem`` of the test environment runs (harness.zxmem_command()); its
stderr notes go elsewhere, the test is about what the views print.
"""

from __future__ import annotations

import os
import re
import subprocess

import pytest
import workloads
from harness import zxmem_command

from zxmem.textsafe import display_width

pexpect = pytest.importorskip("pexpect")

pytestmark = pytest.mark.live

MIB = workloads.MIB
# The one escape sequence zxmem prints: SGR colour (and its reset).
_SGR = re.compile("\x1b\\[[0-9;]*m")
LONG_ARGV0 = "/opt/" + "narrow-test-" * 4 + "/prog " + "--option=value " * 104
MEMFD_NAME = "narrow-test-memfd-" + "m" * 180 + "-end"


def _pty_env(**extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items()
           if k not in ("NO_COLOR", "COLUMNS", "LINES", "TERM")}
    env["TERM"] = "xterm-256color"
    env.update(extra)
    return env


def on_pty(args: list[str], **extra: str) -> str:
    """What ``zxmem ARGS`` prints on an 80x24 pty (stderr to /dev/null),
    with the terminal's CR LF turned back into LF."""
    child = pexpect.spawn("/bin/sh", ["-c", 'exec "$0" "$@" 2>/dev/null',
                                      zxmem_command()[0], *args],
                          env=_pty_env(**extra), dimensions=(24, 80), timeout=120,
                          encoding="utf-8", codec_errors="replace")
    try:
        child.expect(pexpect.EOF)
        out = child.before or ""
    finally:
        child.close(force=True)
    assert child.exitstatus == 0, (args, out[-2000:])
    return out.replace("\r\n", "\n")


def piped(args: list[str]) -> str:
    res = subprocess.run([*zxmem_command(), *args], capture_output=True, text=True,
                         env=_pty_env(), timeout=120)
    assert res.returncode == 0, res.stderr
    return res.stdout


def too_wide(text: str) -> list[str]:
    return [line for line in text.split("\n") if display_width(_SGR.sub("", line)) > 80]


@pytest.fixture(scope="module")
def workload():
    """A memfd (200-character name, 64 KiB) mapped by a workload whose
    command line is 1,600 characters, and a 104 MiB private workload (its
    PSS is coloured yellow, 100 MiB to 1 GiB) with the same command line."""
    fd = os.memfd_create(MEMFD_NAME)
    os.ftruncate(fd, 64 * 1024)
    with workloads.Launcher() as launcher:
        reader = launcher.start("memfd", str(fd), str(64 * 1024), argv0=LONG_ARGV0,
                                pass_fds=(fd,))
        big = launcher.start("private", str(104 * MIB), argv0=LONG_ARGV0)
        os.close(fd)
        yield reader.pid, big.pid


def _views(pid: int) -> list[list[str]]:
    views = [["vmaps", str(pid)], ["vmos", str(pid)], ["k", "vmos", str(pid)]]
    if os.geteuid() == 0:  # page tables: root (CI runs as root)
        views.append(["share", str(pid)])
    return views


def test_ps_fits_80_columns_and_colours(workload):
    _, big = workload
    out = on_pty(["ps"])
    assert not too_wide(out), too_wide(out)
    row = next(x for x in out.split("\n") if re.match(rf"\s*p:{big} ", x))
    assert "\x1b[33m" in row  # its PSS: yellow
    assert "\x1b" not in on_pty(["ps"], NO_COLOR="1")
    whole = piped(["ps"])
    assert "\x1b" not in whole
    assert LONG_ARGV0.rstrip() in whole  # piped: the command line whole


@pytest.mark.parametrize("view", ["vmaps", "vmos", "k vmos", "share"])
def test_object_views_fit_80_columns_and_colour(workload, view):
    pid, _ = workload
    args = [*view.split(), str(pid)]
    if view == "share" and os.geteuid() != 0:
        pytest.skip("share reads page tables: root")
    out = on_pty(args)
    assert not too_wide(out), too_wide(out)
    assert "\x1b[2m" in out  # small sizes: dim
    if view != "share":
        # The memfd's name shortened in the middle: both ends kept.
        line = next(x for x in out.split("\n") if "memfd:n" in x)
        assert "..." in line and line.rstrip("'").endswith("-end") and MEMFD_NAME not in out
    else:
        assert out.startswith(f"process {pid}: frees ")  # the summary first
    assert "\x1b" not in on_pty(args, NO_COLOR="1")
    whole = piped(args)
    wide = on_pty([*args, "--wide", "--color=never"])
    assert "\x1b" not in whole and "\x1b" not in wide and too_wide(whole)
    # Piped, and with --wide on the terminal, the long name is whole.
    name = LONG_ARGV0.rstrip() if view == "share" else MEMFD_NAME
    assert name in whole and name in wide
