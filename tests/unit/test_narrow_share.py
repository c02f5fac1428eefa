"""zxmem share on a terminal: the summary first, every line within the
terminal's width (command lines and paths shortened in the middle, the
explanations wrapped), sizes coloured only when asked; whole lines piped."""

from __future__ import annotations

from types import SimpleNamespace

import numpy as np

from zxmem.views import share as view
from zxmem.views.terminal import visible

P = 4096
LONG = "/opt/app/bin/java " + " ".join(f"-Dprop{i}=value{i}" for i in range(100)) + " Main"


class _Census:
    def overlap(self, pid):
        return {11: np.array([3, 1]), 12: np.array([0, 1])}

    def shared_swap(self, pid):
        return {12: 2}


def _report(names):
    counts = SimpleNamespace(
        resident_bytes=10 * P, private_bytes=5 * P, shared_bytes=5 * P,
        shared_unseen_bytes=P, pss_bytes=7 * P, swap_bytes=4 * P, swap_private_bytes=P,
        swap_pss_bytes=2 * P, ksm_bytes=0, freed_on_exit_bytes=6 * P)
    deep = "/very/long/directory/" * 8 + "libsomething.so.1"
    vmas = [SimpleNamespace(start=0x7F0000001000, end=0x7F0000005000, path=deep.encode()),
            SimpleNamespace(start=0x9000, end=0xB000, path=b"[heap]")]
    scan = SimpleNamespace(results={10: counts}, census=_Census(), vmas={10: vmas},
                           denied=[], notes=[])
    return view.report(10, scan, names)


NAMES = {10: LONG, 11: "x" * 300 + "\x1b[2J" + "tail-of-11", 12: "short"}


def test_summary_is_the_first_line():
    text = view.render(_report(NAMES), None, verbose=False)
    first = text.splitlines()[0]
    # 6 pages freed (24k); 5 shared pages (20k) with two processes.
    assert first == "process 10: frees 24k on exit; shares 20k with 2 processes"


def test_width_80_fits_every_line_and_keeps_both_ends():
    text = view.render(_report(NAMES), None, verbose=True, width=80)
    lines = text.splitlines()
    assert all(visible(line) <= 80 for line in lines), [x for x in lines if visible(x) > 80]
    command = lines[1]
    assert command.startswith("  command       /opt/app/bin/java -Dprop0=")
    assert command.endswith(" Main") and "..." in command
    sharer = next(x for x in lines if x.lstrip().startswith("11 "))
    assert sharer.endswith("tail-of-11") and "\x1b" not in sharer  # escaped, then cut
    mapping = next(x for x in lines if "7f0000001000-7f0000005000" in x)
    assert mapping.endswith("/libsomething.so.1")
    # The long explanation wraps under itself instead of running past 80.
    i = next(i for i, x in enumerate(lines) if x.startswith("  shared "))
    assert lines[i + 1].startswith(" " * 25 + "(")
    # Nothing is lost but the middles: the same rows as piped, in order.
    piped = view.render(_report(NAMES), None, verbose=True).splitlines()
    assert [x.split()[0] for x in lines if x.strip() and not x.startswith(" " * 25)] == \
        [x.split()[0] for x in piped if x.strip()]


def test_piped_lines_are_whole_and_plain():
    text = view.render(_report(NAMES), None, verbose=True)
    assert LONG in text
    assert "\x1b" not in text


def test_color_marks_sizes_by_magnitude():
    text = view.render(_report(NAMES), None, verbose=False, width=80, color=True)
    # Every size here is under 1 MiB: dim.
    assert "\x1b[2m24k\x1b[0m" in text
    assert max(visible(x) for x in text.splitlines()) <= 80


def test_approximate_fits_too():
    r = view.approximate_report(7, LONG, "not root", {b"Rss": 4 * P, b"Pss": 2 * P})
    lines = view.render_approximate(r, None, width=80).splitlines()
    assert lines[0] == "process 7: smaps_rollup, approximate"
    assert all(len(x) <= 80 for x in lines)
    assert LONG in view.render_approximate(r, None)


def test_share_command_flags(cli):
    # The flags parse (the error is about the root, not the options).
    res = cli(["share", "--wide", "--color=never", "--proc-root", "/nonexistent", "1"])
    assert res.status == 2
    assert res.stderr == "zxmem: --proc-root /nonexistent: not a directory\n"
    res = cli(["share", "--color=sometimes", "1"])
    assert res.status == 2 and "--color" in res.stderr
