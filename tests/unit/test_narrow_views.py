"""vmaps and vmos on a terminal: fitted to its width, short file koids,
colour only when asked; piped output unchanged (the goldens check it)."""

from __future__ import annotations

import os
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "golden"))

from test_vmaps_vmos_golden import FIXTURE  # noqa: E402

from zxmem.textsafe import SafeWriter, colored, shorten_middle  # noqa: E402


def _pid() -> str:
    if not FIXTURE.is_dir():
        pytest.skip("recorded fixture missing")
    (pid,) = [p for p in os.listdir(FIXTURE) if p.isdigit()]
    return pid


@pytest.mark.parametrize("view", ["vmaps", "vmos"])
def test_terminal_80_fits_and_piped_is_whole(cli, view, monkeypatch):
    monkeypatch.delenv("NO_COLOR", raising=False)
    pid = _pid()
    base = [view, "--proc-root", str(FIXTURE), pid]
    tty = cli(base + ["--color=never"], stdout_isatty=True, terminal_width=80)
    assert tty.status == 0, tty.stderr
    assert all(len(line) <= 80 for line in tty.stdout.splitlines())
    piped = cli(base)
    assert "\x1b" not in piped.stdout
    assert any(len(line) > 80 for line in piped.stdout.splitlines())
    wide = cli(base + ["--wide", "--color=never"], stdout_isatty=True, terminal_width=80)
    whole = piped.stdout.splitlines()
    assert wide.stdout.splitlines()[:len(whole)] == whole


def test_short_koids_agree_between_vmaps_and_vmos(cli):
    pid = _pid()
    args = ["--proc-root", str(FIXTURE), "--color=never"]
    kw = {"stdout_isatty": True, "terminal_width": 80}
    maps = cli(["vmaps", *args, pid], **kw).stdout.splitlines()
    vmos = cli(["vmos", *args, pid], **kw).stdout.splitlines()
    in_maps = {}
    for line in maps:
        if ":vmo '" in line:
            koid = line.split(":vmo '")[0].split()[-1]
            if koid.startswith("f"):
                in_maps.setdefault(koid, line.split(":vmo '")[1][:-1])
    assert in_maps, maps
    in_vmos = {line.split()[1]: line.split(None, 8)[8] for line in vmos
               if line.startswith("     -") and line.split()[1].startswith("f")}
    for label, name in in_maps.items():
        # Each shortened to its own room: both keep the end of the name.
        assert in_vmos[label][-8:] == name[-8:]


def test_no_color_and_pipe_give_no_escapes(cli, monkeypatch):
    pid = _pid()
    for view in ("vmaps", "vmos"):
        base = [view, "--proc-root", str(FIXTURE), pid]
        monkeypatch.setenv("NO_COLOR", "1")
        assert "\x1b" not in cli(base, stdout_isatty=True, terminal_width=80).stdout
        monkeypatch.delenv("NO_COLOR")
        assert "\x1b" in cli(base, stdout_isatty=True, terminal_width=80).stdout
        assert "\x1b" not in cli(base).stdout
        assert "\x1b[" in cli(base + ["--color=always"]).stdout


def test_vmaps_total_line(cli):
    pid = _pid()
    out = cli(["vmaps", "--proc-root", str(FIXTURE), "--total", "--units=B", pid]).stdout
    last = out.splitlines()[-1]
    maps = [x for x in out.splitlines() if x.lstrip().startswith("M ")]
    assert last.startswith(f"total: {len(maps)} mappings, ")
    res = sum(int(x.split(":res")[0].split()[-1].rstrip("B")) for x in maps)
    assert f" {res}B:res" in last


def test_shorten_middle_keeps_file_name():
    assert shorten_middle("/usr/lib/x86_64-linux-gnu/libc.so.6", 20) == "/usr/li.../libc.so.6"
    assert shorten_middle("short", 20) == "short"
    assert len(shorten_middle("a" * 50, 11)) == 11


def test_safe_writer_passes_only_zxmem_colours():
    import io

    buf = io.StringIO()
    w = SafeWriter(buf)
    w.allow_color = True
    w.write(colored("12M", "red") + "\x1b[2J\x1b]0;x\x07")
    assert buf.getvalue() == "\x1b[31m12M\x1b[0m\\e[2J\\e]0;x\\x07"
    with pytest.raises(ValueError):
        colored("\x1b[2J", "red")
