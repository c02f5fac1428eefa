"""``zxmem ps`` colour: sizes by magnitude on a terminal, in -d repeat mode
what changed since the table before (grown red, shrunk green); never piped,
never with NO_COLOR or TERM=dumb; --color=always|never.  The tree is the
recorded cgroup-v2 one (tests/unit/test_ps_select.py gives its shape)."""

from __future__ import annotations

import os
import re
import shutil

import pytest

from zxmem.textsafe import SGR_CODES
from zxmem.views.terminal import visible

HERE = os.path.dirname(os.path.abspath(__file__))
TREE = os.path.join(os.path.dirname(HERE), "fixtures", "proc-trees", "cgroup-v2")
ROOT = os.path.join(TREE, "proc")
TTY = {"stdout_isatty": True, "terminal_width": 80}
SGR = re.compile("\x1b\\[([0-9;]*)m([^\x1b]*)\x1b\\[0m")


def _plain(text: str) -> str:
    return re.sub("\x1b\\[[0-9;]*m", "", text)


def _colours(line: str) -> dict[str, str]:
    """{cell text: colour name} of the coloured cells of ``line``."""
    names = {code: name for name, code in SGR_CODES.items()}
    return {text: names[code] for code, text in SGR.findall(line)}


def _row(text: str, pid: int) -> str:
    return next(x for x in text.splitlines() if x.lstrip().startswith(f"p:{pid} "))


@pytest.fixture(autouse=True)
def _no_env(monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    monkeypatch.setenv("TERM", "xterm")


def _tree(tmp_path) -> str:
    shutil.copytree(TREE, tmp_path / "t", symlinks=True)
    return str(tmp_path / "t" / "proc")


@pytest.fixture
def varied(tmp_path) -> str:
    """The tree with a size of each magnitude."""
    root = _tree(tmp_path)
    _set_pss(root, 19940, 500)         # under 1 MiB: dim
    _set_pss(root, 19945, 300 * 1024)  # 100 MiB to 1 GiB: yellow
    _set_pss(root, 19948, 2 << 20)     # from 1 GiB: bold red
    return root


def test_sizes_coloured_by_magnitude_on_a_terminal(cli, varied):
    root = varied
    r = cli(["ps", "--proc-root", root, "--sort=koid"], **TTY)
    assert r.status == 0, r.stderr
    piped = cli(["ps", "--proc-root", root, "--sort=koid"]).stdout
    # Colour adds only the sequences: the text is the piped table's.
    assert _plain(r.stdout) == piped and "\x1b" not in piped
    assert _colours(_row(r.stdout, 19940))["500k"] == "dim"
    assert _colours(_row(r.stdout, 19945))["300M"] == "yellow"
    assert _colours(_row(r.stdout, 19948))["2G"] == "bold red"
    # 19901 web: 14.8M PSS, between 1 and 100 MiB: plain.
    assert "14.8M" not in _colours(_row(r.stdout, 19901))
    # The db job: 300M + 2G, bold red.
    db = next(x for x in r.stdout.splitlines() if x.rstrip().endswith(" db"))
    assert "bold red" in _colours(db).values()
    assert all(visible(x) <= 80 for x in r.stdout.splitlines())


@pytest.mark.parametrize("how", [{"NO_COLOR": "1"}, {"TERM": "dumb"}])
def test_no_color_and_dumb_terminal(cli, monkeypatch, varied, how):
    assert "\x1b[" in cli(["ps", "--proc-root", varied], **TTY).stdout
    for k, v in how.items():
        monkeypatch.setenv(k, v)
    assert "\x1b" not in cli(["ps", "--proc-root", varied], **TTY).stdout
    assert "\x1b[" in cli(["ps", "--proc-root", varied, "--color=always"], **TTY).stdout


def test_flags(cli, varied):
    assert "\x1b" not in cli(["ps", "--proc-root", varied, "--color=never"], **TTY).stdout
    assert "\x1b[" in cli(["ps", "--proc-root", varied, "--colour=always"]).stdout
    assert "\x1b" not in cli(["ps", "--proc-root", varied, "--json", "--color=always"]).stdout
    assert cli(["ps", "--color=maybe"]).status == 2


def _set_pss(root: str, pid: int, kib: int) -> None:
    path = os.path.join(root, str(pid), "smaps_rollup")
    with open(path) as f:
        text = f.read()
    text = re.sub(r"(?m)^Pss:\s+\d+ kB", f"Pss:{kib:>19} kB", text)
    with open(path, "w") as f:
        f.write(text)


def test_repeat_mode_colours_what_changed(cli, tmp_path):
    root = _tree(tmp_path)
    now = [0.0]

    def sleep(s):
        now[0] += s
        _set_pss(root, 19945, 20000)  # db grows from 15040k
        _set_pss(root, 19940, 1000)   # web-worker shrinks
        _set_pss(root, 19948, 12735)  # db-replica: 1 KiB more, still 12.4M

    r = cli(["ps", "--proc-root", root, "--sort=koid", "-d", "1", "-n", "2"],
            monotonic=lambda: now[0], sleep=sleep, wall_clock=lambda: 0.0, **TTY)
    assert r.status == 0, r.stderr
    first, second = r.stdout.split("\n\n")
    # The first table by magnitude (14.7M is plain, under 100 MiB).
    assert "19945" in _row(first, 19945) and not _colours(_row(first, 19945))
    # Then only changes: PSS of db grew (red), web-worker's shrank (green).
    grown = _colours(_row(second, 19945))
    assert grown == {"19.5M": "red"}, grown
    assert _colours(_row(second, 19940)) == {"1000k": "green"}
    # db-replica grew 1 KiB, under the rounding of 12.4M: plain, as is
    # web (unchanged).
    assert "12.4M" in _row(second, 19948) and not _colours(_row(second, 19948))
    assert not _colours(_row(second, 19901))
    # Its job's PSS grew by 19945's change minus nothing else: red too.
    jobs = [x for x in second.splitlines() if x.lstrip().startswith("j:")]
    assert any("red" in _colours(x).values() for x in jobs)
    assert any("green" in _colours(x).values() for x in jobs)


def test_plain_ps_needs_no_colour_module(cli):
    # Piped, ps never loads the colour helpers (start-up: tests/static).
    import subprocess
    import sys

    code = ("import sys, io; from zxmem.cli import main, Environment; "
            f"main(['ps', '--proc-root', {ROOT!r}], Environment(stdout=io.StringIO(), "
            "stdout_isatty=False)); print('zxmem.views.terminal' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
