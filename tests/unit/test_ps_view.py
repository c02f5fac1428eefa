"""The ps view on snapshots built here: spec fuchsia-tools §2.3 layout rules."""

from __future__ import annotations

import json
import re

import pytest

from zxmem.model import Job, MemoryCounts, Process, Provenance, Snapshot, Thread
from zxmem.tasktree import TaskTree
from zxmem.views.ps import PsOptions, render, render_json, to_records

K = 1024
M = K * K


def mem(pss, private, shared, swap=None):
    return MemoryCounts(pss_bytes=pss, private_bytes=private, shared_bytes=shared,
                        swap_bytes=swap)


def rows(snapshot, **kw):
    return list(TaskTree(snapshot).walk(**kw))


def test_spec_late_golden():
    # The upstream unit test's golden (spec §2.3): 1234 MiB in every field.
    big = 1234 * M
    snap = Snapshot(
        Provenance("test"),
        (Job(123456, "root", 0), Job(7894567, "my-job", 123456)),
        (Process(123456789, "my-proc", 7894567, cmdline=("my-proc",),
                 memory=mem(big, big, big)),),
    )
    out = render(rows(snap), PsOptions(style="late"))
    assert out == (
        "TASK                 PSS PRIVATE  SHARED   STATE NAME\n"
        "j: 123456          1234M   1234M                 root\n"
        "  j: 7894567       1234M   1234M                 my-job\n"
        "    p: 123456789   1234M   1234M   1234M         my-proc\n"
        "TASK                 PSS PRIVATE  SHARED   STATE NAME\n"
    )


SNAP = Snapshot(
    Provenance("test"),
    (Job(1, "root", 0), Job(35, "box", 1)),
    (
        Process(7, "init", 1, cmdline=("/sbin/init",), memory=mem(28672, 20 * K, 8 * K, 0)),
        Process(
            4000, "python3", 35, cmdline=("python3", "app.py"),
            memory=mem(2 * M + 1, 2 * M, 512 * K, 4 * K),
            threads=(Thread(4000, "python3", "running"), Thread(4001, "worker", "blocked")),
        ),
        Process(4002, "secret", 35, cmdline=("secret",), memory=None,
                threads=(Thread(4002, "secret", "blocked"),)),
        Process(4003, "kworker", 35, cmdline=(), memory=mem(0, 0, 0)),
    ),
)


def test_classic_default_layout():
    # root: 28672 + 2 MiB + 1 bytes = 2076 KiB + 1 byte, printed "2076.0k"
    # (four whole digits at most; not a whole number of KiB).
    assert render(rows(SNAP), PsOptions()) == (
        "TASK           PSS PRIVATE  SHARED NAME\n"
        "j:1        2076.0k   2068k         root [partial: 1 unreadable]\n"
        "  p:7          28k     20k      8k /sbin/init\n"
        "  j:35        2.0M      2M         box [partial: 1 unreadable]\n"
        "    p:4000    2.0M      2M    512k python3 app.py\n"
        "    p:4003      0B      0B      0B [kworker]\n"
        "TASK           PSS PRIVATE  SHARED NAME\n"
    )


def test_unreadable_process_hidden_but_counted_in_job():
    out = render(rows(SNAP), PsOptions(threads=True))
    assert "4002" not in out  # neither the process nor its thread
    r = {(x.kind, x.koid): x for x in rows(SNAP)}
    assert r[("j", 35)].unknown_processes == 1


def test_jobs_only_drops_shared_column():
    assert render(rows(SNAP), PsOptions(jobs_only=True)) == (
        "TASK       PSS PRIVATE NAME\n"
        "j:1    2076.0k   2068k root [partial: 1 unreadable]\n"
        "  j:35    2.0M      2M box [partial: 1 unreadable]\n"
        "TASK       PSS PRIVATE NAME\n"
    )


def test_threads_layout():
    out = render(rows(SNAP, threads=True), PsOptions(threads=True))
    assert out == (
        "TASK             PSS PRIVATE  SHARED   STATE NAME\n"
        "j:1          2076.0k   2068k                 root [partial: 1 unreadable]\n"
        "  p:7            28k     20k      8k         /sbin/init\n"
        "  j:35          2.0M      2M                 box [partial: 1 unreadable]\n"
        "    p:4000      2.0M      2M    512k         python3 app.py\n"
        "      t:4000                         running python3\n"
        "      t:4001                         blocked worker\n"
        "    p:4003        0B      0B      0B         [kworker]\n"
        "TASK             PSS PRIVATE  SHARED   STATE NAME\n"
    )


def test_fixed_units_and_upper_k():
    out = render(rows(SNAP), PsOptions(units="k"))
    assert "  p:7          28k     20k      8k /sbin/init\n" in out
    assert "    p:4000 2048.0k   2048k    512k python3 app.py\n" in out
    assert "    p:4003      0k      0k      0k [kworker]\n" in out
    out = render(rows(SNAP), PsOptions(units="K"))
    assert "  p:7          28K     20K      8K /sbin/init\n" in out


def test_swap_column():
    out = render(rows(SNAP), PsOptions(swap=True))
    lines = out.split("\n")
    assert lines[0] == "TASK           PSS PRIVATE  SHARED    SWAP NAME"
    assert lines[1] == "j:1        2076.0k   2068k              4k root [partial: 1 unreadable]"
    assert lines[2] == "  p:7          28k     20k      8k      0B /sbin/init"
    # Unknown swap is "-", never 0.
    assert lines[5] == "    p:4003      0B      0B      0B       - [kworker]"


def test_job_with_only_unreadable_processes_prints_dash():
    snap = Snapshot(Provenance("t"), (Job(1, "root", 0), Job(2, "locked", 1)),
                    (Process(9, "x", 2, memory=None),))
    out = render(rows(snap), PsOptions())
    assert out.split("\n")[1:3] == [
        "j:1         -       -         root [unknown: 1 unreadable]",
        "  j:2       -       -         locked [unknown: 1 unreadable]",
    ]


def test_nothing_collected_prints_nothing():
    assert render([], PsOptions()) == ""


def test_classic_rounding_option():
    snap = Snapshot(Provenance("t"), (Job(1, "root", 0),),
                    (Process(2, "x", 1, cmdline=("x",), memory=mem(10700, 10700, 0)),))
    assert " 10.4k " in render(rows(snap), PsOptions())
    assert " 10.5k " in render(rows(snap), PsOptions(exact=False))


def test_width_truncates_name_only():
    snap = Snapshot(Provenance("t"), (Job(1, "root", 0),),
                    (Process(2, "x", 1, cmdline=("y" * 300,), memory=mem(K, K, 0)),))
    out = render(rows(snap), PsOptions(width=60))
    for line in out.splitlines():
        assert len(line) <= 60
    whole = render(rows(snap), PsOptions())
    assert "y" * 300 in whole


# --- hostile names ----------------------------------------------------------

HOSTILE = [
    "\x1b[2J\x1b[H",
    "evil\rj:1 0B 0B root",
    "two\nlines",
    "\x9b31mred",  # C1 CSI as a code point
    "\u202eexe.txt\u202c",
    "\u2028sep\u2029",
    "zero\u200bwidth",
    "\x07bell\x08\x7f",
    "\\xff",  # what invalid UTF-8 decodes to: visible text
    "A" * 4096,
]

_ROW = re.compile(r"TASK |( {2})*[jpt]: ?\d+ ")
_UNSAFE = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def hostile_snapshot() -> Snapshot:
    name = "".join(HOSTILE)
    return Snapshot(
        Provenance("t"),
        (Job(1, "root", 0), Job(2, "\x1b[31m\njob\r", 1)),
        (
            Process(10, "\x1b]0;t\x07", 2, cmdline=tuple(HOSTILE), memory=mem(K, K, 0),
                    threads=(Thread(11, "\r\n\x1b[1A", "blocked"),)),
            Process(12, "\x9b", 2, cmdline=None, memory=mem(K, K, 0)),
            Process(13, "ok", 2, cmdline=(name,), memory=mem(K, K, 0)),
        ),
    )


@pytest.mark.parametrize(
    "opts",
    [PsOptions(), PsOptions(threads=True), PsOptions(style="late", threads=True),
     PsOptions(width=80), PsOptions(jobs_only=True, swap=True)],
)
def test_hostile_names_cannot_start_rows_or_move_cursor(opts):
    out = render(rows(hostile_snapshot(), threads=opts.threads), opts)
    lines = out.split("\n")
    assert lines[-1] == ""
    expected = 2 + 2 + (0 if opts.jobs_only else 3) + (1 if opts.threads else 0)
    assert len(lines) - 1 == expected
    for line in lines[:-1]:
        assert _ROW.match(line), repr(line)
        assert _UNSAFE.search(line) is None, repr(line)


def test_hostile_names_escaped_visibly():
    out = render(rows(hostile_snapshot()), PsOptions())
    assert "\\e[2J\\e[H" in out
    assert "\\x9b31mred" in out
    assert "\\u202eexe.txt\\u202c" in out
    assert "evil\\rj:1 0B 0B root" in out
    assert "[\\x9b]" in out  # comm fallback is escaped too
    assert "\\e[31m\\njob\\r" in out


def test_hostile_json_is_valid_and_terminal_safe():
    text = render_json(rows(hostile_snapshot(), threads=True), {"host": "\x1b[2Jh"})
    # Valid JSON that decodes back to the exact names...
    doc = json.loads(text)
    procs = {t["koid"]: t for t in doc["tasks"] if t["type"] == "p"}
    assert procs[10]["cmdline"] == HOSTILE
    assert doc["provenance"]["host"] == "\x1b[2Jh"
    # ...and holds no raw character a terminal would act on.
    assert _UNSAFE.search(text.replace("\n", "")) is None


def test_json_records_bytes_and_nulls():
    recs = {r["id"]: r for r in to_records(rows(SNAP, threads=True))}
    assert recs["j/1"]["pss_bytes"] == 28672 + 2 * M + 1
    assert recs["j/1"]["parent"] == ""
    assert recs["j/35"]["parent"] == "j/1"
    assert recs["j/35"]["unknown_processes"] == 1
    assert recs["p/4002"]["pss_bytes"] is None
    assert recs["p/4003"]["swap_bytes"] is None
    assert recs["p/4000"]["shared_bytes"] == 512 * K
    assert recs["p/4000"]["cmdline"] == ["python3", "app.py"]
    assert recs["t/4001"]["parent"] == "p/4000"
    assert recs["t/4001"]["state"] == "blocked"
