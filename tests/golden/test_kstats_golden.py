"""Golden outputs of ``zxmem kstats`` and ``zxmem k ps`` on recorded trees.

The expected files were checked by hand against spec fuchsia-tools §7.3
(widths, trailing space of the late values line), §7.2 (timestamp line),
§7.4 (CPU header and widths), §8.3 (``k ps`` shape) and the seed's sample,
and their numbers against the recorded ``/proc`` files.  To rewrite them
after a deliberate change: ``ZXMEM_UPDATE_GOLDEN=1 pytest tests/golden``,
then check the diff by hand.
"""

from __future__ import annotations

import calendar
import os
import shutil

import pytest

HERE = os.path.dirname(__file__)
EXPECTED = os.path.join(HERE, "expected")
KERNEL = os.path.join(HERE, "..", "fixtures", "kernel")
EPOCH = calendar.timegm((2026, 11, 26, 0, 38, 0)) + 0.25


class FakeClock:
    """Monotonic and wall clocks that only move when slept on (or read)."""

    def __init__(self, read_cost: float = 0.0, on_sleep=None):
        self.now = 100.0
        self.read_cost = read_cost
        self.sleeps: list[float] = []
        self.on_sleep = on_sleep

    def monotonic(self) -> float:
        self.now += self.read_cost
        return self.now

    def wall_clock(self) -> float:
        return EPOCH + (self.now - 100.0)

    def sleep(self, seconds: float) -> None:
        self.sleeps.append(seconds)
        self.now += seconds
        if self.on_sleep:
            self.on_sleep()

    def env(self) -> dict:
        return {"monotonic": self.monotonic, "wall_clock": self.wall_clock, "sleep": self.sleep}


def check(name: str, text: str) -> None:
    path = os.path.join(EXPECTED, name)
    if os.environ.get("ZXMEM_UPDATE_GOLDEN"):
        with open(path, "w", encoding="utf-8") as f:
            f.write(text)
    with open(path, encoding="utf-8") as f:
        expected = f.read()
    assert text == expected, f"output differs from {name}"


def run(cli, args, clock=None):
    clock = clock or FakeClock()
    return cli(args, **clock.env())


@pytest.mark.parametrize(
    "name, tree, args",
    [
        ("kstats-m-t-618.txt", "linux-6.18", ["-m", "-t", "-n", "2"]),
        ("kstats-late-618.txt", "linux-6.18", ["-m", "--style=late", "-n", "1"]),
        ("kstats-explain-618.txt", "linux-6.18", ["-m", "--explain", "-n", "1"]),
        ("kstats-explain-414-user.txt", "linux-4.14-user",
         ["-m", "--style=late", "--explain", "-n", "1"]),
        ("kstats-late-310.txt", "linux-3.10", ["-m", "--style=late", "--explain", "-n", "1"]),
        ("kstats-no-memfree.txt", "no-memfree", ["-m", "--style=late", "-n", "1"]),
    ],
)
def test_kstats_memory_golden(cli, name, tree, args):
    r = run(cli, ["kstats", *args, "--proc-root", os.path.join(KERNEL, tree)])
    assert r.status == 0, r.stderr
    check(name, r.stdout)
    check(name.replace(".txt", ".stderr"), r.stderr)


def test_kstats_cpu_and_memory_golden(cli, tmp_path):
    root = tmp_path / "proc"
    shutil.copytree(os.path.join(KERNEL, "linux-6.18"), root)

    def next_sample():
        for f in ("stat", "interrupts", "softirqs"):
            shutil.copy(os.path.join(KERNEL, "linux-6.18-next", f), root / f)

    clock = FakeClock(on_sleep=next_sample)
    r = run(cli, ["kstats", "-c", "-m", "-t", "-n", "2", "--proc-root", str(root)], clock)
    assert r.status == 0, r.stderr
    check("kstats-c-618.txt", r.stdout)


def test_kstats_json_golden(cli):
    r = run(cli, ["kstats", "-m", "-c", "--json", "-n", "1", "--proc-root",
                  os.path.join(KERNEL, "linux-6.18")])
    assert r.status == 0, r.stderr
    check("kstats-json-618.json", r.stdout)


def test_fixed_cadence_absorbs_slow_reads(cli):
    # Every clock read costs 0.3 s: the sleeps shrink so that report n is
    # still due at start + n * delay.
    clock = FakeClock(read_cost=0.3)
    r = run(cli, ["kstats", "-m", "-d", "2", "-n", "3", "--proc-root",
                  os.path.join(KERNEL, "linux-6.18")], clock)
    assert r.status == 0
    assert clock.sleeps == pytest.approx([1.7, 1.7])


def test_ctrl_c_exits_130_quietly(cli):
    clock = FakeClock()

    def interrupt():
        raise KeyboardInterrupt

    clock.on_sleep = interrupt
    r = run(cli, ["kstats", "-m", "--proc-root", os.path.join(KERNEL, "linux-6.18")], clock)
    assert r.status == 130
    assert r.stderr == ""
    assert r.stdout.count("total") == 1


@pytest.mark.parametrize("args", [["-d", "0"], ["-d", "x"], ["-n", "0"], ["-n", "-1"]])
def test_bad_arguments_are_usage_errors(cli, args):
    r = run(cli, ["kstats", "-m", *args])
    assert r.status == 2
    assert r.stderr.count("\n") == 1


def test_no_flag_means_memory(cli):
    # `kstats` alone is `kstats -m` (a Linux user's first try); same bad-flag rules.
    r = run(cli, ["kstats", "-n", "0"])
    assert r.status == 2 and r.stderr.count("\n") == 1


def test_unreadable_meminfo_is_one_line_error(cli, tmp_path):
    r = run(cli, ["kstats", "-m", "-n", "1", "--proc-root", str(tmp_path)])
    assert r.status == 1
    assert r.stderr.count("\n") == 1 and "meminfo" in r.stderr


# --------------------------------------------------------------------------
# k ps


@pytest.mark.parametrize(
    "name, args",
    [
        ("kps-default.txt", []),
        ("kps-all-by-fds.txt", ["-a", "--sort=fds"]),
        ("kps-json.json", ["--json"]),
    ],
)
def test_kps_golden(cli, name, args):
    r = cli(["k", "ps", *args, "--proc-root", os.path.join(KERNEL, "kps")])
    assert r.status == 0, r.stderr
    check(name, r.stdout)
    if not args or args[0] != "--json":
        assert r.stderr == (
            "zxmem: k ps: descriptors of 1 process not readable (counts shown as -)\n"
        )


def test_kps_help_key(cli):
    r = cli(["k", "ps", "help"])
    assert r.status == 0
    check("kps-help.txt", r.stdout)


def test_kps_hostile_name_is_escaped(cli):
    r = cli(["k", "ps", "--proc-root", os.path.join(KERNEL, "kps")])
    assert "\x1b" not in r.stdout
    assert "[kps\\e[2Jevil]" in r.stdout
