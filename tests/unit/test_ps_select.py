"""``zxmem ps`` selections and repeat mode on the recorded cgroup-v2 tree.

The tree (tests/fixtures/proc-trees/cgroup-v2) holds four processes of known
PSS: 19901 web 14.8M, 19945 db 14.7M, 19948 db-replica 12.4M, 19940
web-worker 6664k; the db job (27.1M) is bigger than the web job (21.3M).
"""

from __future__ import annotations

import os

import pytest

from zxmem.commands.ps import resolve_job, unreadable_note
from zxmem.model import Job, MemoryCounts, Process, Provenance, Snapshot
from zxmem.tasktree import TaskTree

HERE = os.path.dirname(os.path.abspath(__file__))
ROOT = os.path.join(os.path.dirname(HERE), "fixtures", "proc-trees", "cgroup-v2", "proc")
UNREADABLE = os.path.join(os.path.dirname(HERE), "fixtures", "proc-trees",
                          "unreadable-smaps", "proc")


def pids(text: str) -> list[int]:
    return [int(line.split()[0][2:]) for line in text.splitlines()
            if line.lstrip().startswith("p:")]


def test_default_is_biggest_first_within_each_job(cli):
    r = cli(["ps", "--proc-root", ROOT])
    assert r.status == 0, r.stderr
    assert pids(r.stdout) == [19945, 19948, 19901, 19940]
    r = cli(["ps", "--proc-root", ROOT, "--sort=koid"])
    assert pids(r.stdout) == [19901, 19940, 19945, 19948]


def test_top_is_flat_and_largest(cli):
    r = cli(["ps", "--proc-root", ROOT, "--top", "2"])
    assert r.status == 0, r.stderr
    assert pids(r.stdout) == [19901, 19945]
    assert "j:" not in r.stdout


def test_match_name_or_command_line(cli):
    # "--port" is only in 19901's command line, "replica" in 19948's name.
    r = cli(["ps", "--proc-root", ROOT, "--match=--port|replica"])
    assert pids(r.stdout) == [19901, 19948]


def test_match_pattern_is_bounded(cli):
    r = cli(["ps", "--proc-root", ROOT, "--match", "a" * 201])
    assert r.status == 2
    assert "longer than 200" in r.stderr
    r = cli(["ps", "--proc-root", ROOT, "--match", "(unclosed"])
    assert r.status == 2 and "bad pattern" in r.stderr


def test_pid_list(cli):
    r = cli(["ps", "--proc-root", ROOT, "--pid", "19940,19948"])
    assert pids(r.stdout) == [19948, 19940]
    assert cli(["ps", "--proc-root", ROOT, "--pid", "12,x"]).status == 2


@pytest.mark.parametrize("job", ["177", "web", "/zxmem-fixture/web"])
def test_job_by_koid_name_or_path(cli, job):
    r = cli(["ps", "--proc-root", ROOT, "--job", job, "-J"])
    assert r.status == 0, r.stderr
    assert r.stdout.splitlines()[1].split() == ["j:177", "21.3M", "10.9M", "web"]


def test_job_unknown_or_ambiguous():
    snap = Snapshot(Provenance("t"), (Job(1, "root", 0, path="/"),
                                      Job(2, "app", 1, path="/a/app"),
                                      Job(3, "app", 1, path="/b/app")), ())
    tree = TaskTree(snap)
    assert resolve_job(tree, "/b/app") == 3
    with pytest.raises(Exception, match="2 jobs have that name: 2 \\(/a/app\\), 3"):
        resolve_job(tree, "app")
    with pytest.raises(Exception, match="no job with that koid"):
        resolve_job(tree, "nothing")


def test_repeat_mode_prints_count_tables_on_the_clock(cli):
    now = [1000.0]
    slept = []

    def sleep(s):
        slept.append(s)
        now[0] += s

    r = cli(["ps", "--proc-root", ROOT, "-J", "-d", "2", "-n", "3"],
            monotonic=lambda: now[0], sleep=sleep, wall_clock=lambda: 0.0)
    assert r.status == 0, r.stderr
    assert r.stdout.count("TASK ") == 6  # header twice per table
    assert slept == [2.0, 2.0]
    assert cli(["ps", "--proc-root", ROOT, "-n", "3"]).status == 2


def test_partial_job_marked_and_unreadable_named(cli):
    r = cli(["ps", "--proc-root", UNREADABLE, "--sort=koid"])
    assert "root [partial: 1 unreadable]" in r.stdout
    assert "db [unknown: 1 unreadable]" in r.stdout
    assert r.stderr.startswith("zxmem: 1 process not readable (fixture-db 19945)")


def test_many_unreadable_say_how_to_list_them():
    from zxmem.model import Denied

    procs = tuple(Process(k, f"p{k}", 1, memory=None) for k in range(10, 17))
    snap = Snapshot(Provenance("t", denied=tuple(Denied(f"smaps_rollup:{k}", "EACCES")
                                                 for k in range(10, 17))),
                    (Job(1, "root", 0),), procs)
    note = unreadable_note(snap)
    assert note is not None and note.startswith("7 processes not readable")
    assert "p10" not in note and "jq" in note
    snap2 = Snapshot(Provenance("t", denied=(Denied("smaps_rollup:10", "EACCES"),)),
                     (Job(1, "root", 0),),
                     (Process(10, "sshd", 1, memory=None),
                      Process(11, "bash", 1, memory=MemoryCounts(pss_bytes=1))))
    assert "(sshd 10)" in (unreadable_note(snap2) or "")
