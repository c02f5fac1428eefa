"""``zxmem top`` on a real terminal (a pty driven by pexpect), and its batch
mode, against workloads of known shape (workloads.py)."""

from __future__ import annotations

import json
import os
import re
import subprocess
import time

import pytest
import workloads
from harness import zxmem_command

pexpect = pytest.importorskip("pexpect")

MIB = workloads.MIB
PAGE = workloads.PAGE
SIZE = 48 * MIB
# "A few pages": a workload's PSS moves by up to ~10 pages within a second
# on a machine where other Pythons start and exit (its interpreter's pages
# are shared with theirs; measured on the 2-core CI-like host), so the
# kernel is read around each refresh and 8 pages allowed beyond that band.
FEW = 8 * PAGE
# Escape sequences a terminal acts on (CSI, OSC, and two-character ones):
# removed to read the text Textual drew.
_ESCAPES = re.compile(rb"\x1b\[[0-9;?<>=]*[ -/]*[@-~]|\x1b\][^\x07\x1b]*(?:\x07|\x1b\\)"
                      rb"|\x1b[@-Z\\-_]|\x1b[()][0-9A-Za-z]")
_UNITS = {"B": 1, "k": 1 << 10, "M": 1 << 20, "G": 1 << 30}


def _screen_text(raw: bytes) -> str:
    return _ESCAPES.sub(b" ", raw).decode("utf-8", "replace")


def _shell():
    """An interactive shell on a pty of 200x50, prompting with a marker."""
    env = dict(os.environ, TERM="xterm-256color", PS1="PROMPT$ ", COLUMNS="200", LINES="50")
    env.pop("CI", None)  # Textual's own CI detection would change nothing we need
    sh = pexpect.spawn("bash", ["--norc", "--noprofile", "-i"], env=env,
                       dimensions=(50, 200), timeout=60)
    sh.expect_exact("PROMPT$ ")
    return sh


def _run_top_and_quit(sh, args: str, until: re.Pattern, tmp_path, probe=None) -> str:
    """Runs zxmem top ARGS in the shell, waits until the drawn text matches
    ``until``, presses q; the text drawn; the terminal's modes compared.
    ``probe`` is called before each read of the terminal (while top runs)."""
    top = " ".join(zxmem_command())
    sh.sendline(f"stty -g > {tmp_path}/before; {top} top -d 0.5 {args}; echo EXIT=$?; "
                f"stty -g > {tmp_path}/after")
    seen = b""
    deadline = time.monotonic() + 60
    while not until.search(_screen_text(seen)):
        assert time.monotonic() < deadline, _screen_text(seen)[-3000:]
        if probe is not None:
            probe()
        try:
            seen += sh.read_nonblocking(65536, timeout=0.3)
        except pexpect.TIMEOUT:
            pass
    t0 = time.monotonic()
    sh.send("q")
    sh.expect(r"EXIT=(\d+)")
    quit_s = time.monotonic() - t0
    seen += sh.before
    assert sh.match.group(1) == b"0", _screen_text(seen)[-2000:]
    assert quit_s < 10
    sh.expect_exact("PROMPT$ ")  # after stty -g > after
    # The terminal is as it was: same modes, alternate screen left, cursor shown.
    before = (tmp_path / "before").read_text()
    after = (tmp_path / "after").read_text()
    assert before == after
    tail = seen[seen.rfind(b"\x1b[?1049h"):]
    assert b"\x1b[?1049l" in tail, "the alternate screen was not left"
    assert b"\x1b[?25h" in tail, "the cursor was not shown again"
    return _screen_text(seen)


@pytest.mark.live
def test_top_draws_a_workload_with_its_pss_and_quits_cleanly(launcher, tmp_path):
    tag = f"zxmem-top-probe-{os.getpid()}"
    w = launcher.start("private", str(SIZE), argv0=tag)
    sh = _shell()
    try:
        pattern = re.compile(rf"\b{w.pid}\s+(\d+)k\s+(\d+)k\s")
        reads: list = []
        text = _run_top_and_quit(sh, f"--units=k --filter {tag}", pattern, tmp_path,
                                 probe=lambda: reads.append(workloads.kernel_counts(w.pid)))
    finally:
        sh.close(force=True)
    shown = [(int(p) * 1024, int(u) * 1024) for p, u in pattern.findall(text)]
    assert shown, text[-2000:]
    pss, uss = shown[-1]
    # PSS moves a little while top runs (the workload's interpreter pages
    # are shared with top's, and with other Pythons that come and go): the
    # kernel's smaps_rollup read just before and after the screen that
    # showed it, within a few pages.
    # (Reads every 0.3 s: the last four span the 0.5 s refresh and its read.)
    near = [r for r in reads[-4:] if r is not None]
    assert near
    low = min(r[0] for r in near) - FEW
    high = max(r[0] for r in near) + FEW
    assert low <= pss <= high, (shown, near)
    # So does USS (a page top's interpreter stops sharing becomes private).
    assert min(r[1] for r in near) - FEW <= uss <= max(r[1] for r in near) + FEW
    assert uss >= SIZE


@pytest.mark.live
def test_hostile_names_on_a_real_terminal(launcher, tmp_path):
    argv0 = b"\x1b[2J\x1b[Hevil\x1b]0;owned\x07\xff" + b"A" * 400
    w = launcher.start("hold", "--comm", b"\x1b[Hevil\x07", argv0=argv0)
    sh = _shell()
    try:
        raw_marker = re.compile(rf"\b{w.pid}\s")
        text = _run_top_and_quit(sh, "--filter evil", raw_marker, tmp_path)
    finally:
        sh.close(force=True)
    # The name is drawn escaped: the sequences are visible text, never acted on.
    assert "\\e[2J\\e[Hevil\\e]0;owned\\x07\\xff" in text
    line = [x for x in text.split("\n") if "\\e[Hevil" in x][0]
    # Cut to its column: 400 As never reach the terminal in one row.
    assert "A" * 200 not in line


@pytest.mark.live
def test_hostile_bytes_never_reach_the_terminal_raw(launcher):
    argv0 = b"\x1b]0;owned\x07\x1b[31mRED" + b"B" * 50
    w = launcher.start("hold", argv0=argv0)
    env = dict(os.environ, TERM="xterm-256color")
    child = pexpect.spawn(zxmem_command()[0], ["top", "-d", "0.3", "--filter", "RED"],
                          env=env, dimensions=(24, 80), timeout=60)
    try:
        seen = b""
        deadline = time.monotonic() + 60
        while str(w.pid).encode() not in _ESCAPES.sub(b" ", seen):
            assert time.monotonic() < deadline
            try:
                seen += child.read_nonblocking(65536, timeout=1)
            except pexpect.TIMEOUT:
                pass
        child.send("q")
        child.expect(pexpect.EOF)
        seen += child.before or b""
    finally:
        child.close(force=True)
    assert b"\x1b]0;owned" not in seen and b"\x1b[31mRED" not in seen
    assert b"\\e]0;owned" in seen


def _bracketed(argv: list[str], pid: int, env=None, cwd=None) -> list[tuple]:
    """Runs ``top --json`` batch ARGV; for each refresh line, (the line's
    document, the kernel's (PSS, PRIVATE, SHARED) of ``pid`` read before
    the line arrived, and after).  Read while top runs: a page top's own
    interpreter shares with the workload moves its PSS and PRIVATE."""
    proc = subprocess.Popen(argv, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env=env, cwd=cwd)
    out = []
    try:
        while True:
            before = workloads.kernel_counts(pid)
            line = proc.stdout.readline()
            after = workloads.kernel_counts(pid)
            if not line:
                break
            out.append((json.loads(line), before, after))
        err = proc.stderr.read()
        assert proc.wait(timeout=120) == 0, err
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    return out


def _near_kernel(row: dict, before, after) -> None:
    """PSS and USS within a few pages of the kernel's read just before and
    after the refresh was printed."""
    assert before is not None and after is not None
    for key, i in (("pss_bytes", 0), ("uss_bytes", 1)):
        low = min(before[i], after[i]) - FEW
        high = max(before[i], after[i]) + FEW
        assert low <= row[key] <= high, (key, row[key], before, after)
    assert row["uss_bytes"] >= SIZE


@pytest.mark.live
def test_batch_mode_parsed(launcher):
    tag = f"zxmem-top-batch-{os.getpid()}"
    w = launcher.start("private", str(SIZE), argv0=tag)
    runs = _bracketed([*zxmem_command(), "top", "-n", "3", "-d", "0.5", "--json",
                       "--filter", tag], w.pid)
    assert [doc["refresh"] for doc, _, _ in runs] == [1, 2, 3]
    for doc, before, after in runs[1:]:  # the first: top's interpreter was just mapping
        rows = {row["koid"]: row for row in doc["rows"]}
        _near_kernel(rows[w.pid], before, after)
        assert not rows[w.pid]["new"]
        assert doc["memory"]["total_bytes"] > 0
    # Plain text: header, blank line, table; the workload's row parsed.
    r = subprocess.run([*zxmem_command(), "top", "-n", "1", "--units=k", "--filter", tag],
                       capture_output=True, text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    lines = r.stdout.splitlines()
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["PID", "PSS", "USS", "SWAP", "ΔLAST", "ΔSTART", "NAME"]
    cells = [line.split() for line in table[1:] if line.split()[0] == str(w.pid)][0]
    assert cells[6] == tag and cells[1].endswith("k") and int(cells[2][:-1]) * 1024 >= SIZE


@pytest.mark.live
def test_not_root_sees_its_own_in_full_and_counts_the_others(launcher):
    from harness import nobody_env, nobody_python

    python = nobody_python()  # skips when not root (under CI: runs)
    w = launcher.start("private", str(SIZE), as_nobody=True)
    code = ("import sys; from zxmem.cli import main; sys.exit(main(['top', '-b', '-n', '2', "
            "'-d', '0.5', '--json']))")
    runs = _bracketed([*workloads.nobody_prefix(), *python, "-c", code], w.pid,
                      env=nobody_env(), cwd="/")
    doc, before, after = runs[-1]
    assert doc["processes"]["unreadable"] > 0  # root's processes: counted
    rows = {row["koid"]: row for row in doc["rows"]}
    _near_kernel(rows[w.pid], before, after)  # its own: in full
    # The others are not rows: nothing is shown as 0 for want of permission.
    assert 1 not in rows
    assert all(row["pss_bytes"] is not None for row in doc["rows"])
