"""``zxmem top``'s model (zxmem.views.top) on synthetic snapshots whose
every number is set in top_samples.py, and its batch output through the CLI."""

from __future__ import annotations

import json
import subprocess
import sys
from dataclasses import replace

import pytest
import top_samples
from top_samples import HOSTILE, MIB

from zxmem.views import top as view
from zxmem.views.top import History, TopOptions


def _frames():
    h = History()
    return [h.update(s) for s in top_samples.samples()]


def _by_pid(frame):
    return {r.koid: r for r in frame.processes}


def test_first_refresh_has_no_change_and_counts_the_unreadable():
    f1 = _frames()[0]
    rows = _by_pid(f1)
    assert set(rows) == {1, 100, 101, 102}  # sshd (denied) is not a row
    assert all(r.delta_bytes == 0 and r.delta_start_bytes == 0 and not r.new
               for r in rows.values())
    h = f1.header
    assert (h.processes, h.unreadable, h.new, h.exited) == (5, 1, 0, 0)
    assert h.pss_bytes == (5 + 10 + 30 + 1) * MIB
    assert h.oom_kills_since_start == 0
    assert (h.psi_some_avg10, h.psi_full_avg10) == (1.25, 0.5)
    assert h.total_bytes == 8192 * MIB and h.free_bytes == 4000 * MIB
    assert h.used_bytes == (8192 - 5000) * MIB  # total - MemAvailable
    assert h.kernel_bytes == (8192 - 4000 - 3000) * MIB  # total - free - VMOs
    assert h.swap_used_bytes == 24 * MIB


def test_changes_since_last_and_since_start_by_identity():
    _, f2, f3 = _frames()
    r2 = _by_pid(f2)
    assert r2[100].delta_bytes == 4 * MIB and r2[100].delta_start_bytes == 4 * MIB
    assert r2[101].delta_bytes == -2 * MIB
    assert r2[103].new and r2[103].delta_bytes == 6 * MIB  # counts from 0
    assert (f2.header.new, f2.header.exited) == (1, 1)  # worker came, the hostile one went
    assert f2.header.oom_kills_since_start == 2
    r3 = _by_pid(f3)
    assert r3[100].delta_bytes == -2 * MIB and r3[100].delta_start_bytes == 2 * MIB
    # PID 101 was reused (another start time): a new process, from 0,
    # not "db shrank by 25M".
    assert r3[101].new and r3[101].delta_bytes == 3 * MIB
    assert r3[101].delta_start_bytes == 3 * MIB
    assert not r3[103].new and r3[103].delta_bytes == 0 and r3[103].delta_start_bytes == 6 * MIB
    assert (f3.header.new, f3.header.exited) == (1, 1)


def test_unknown_memory_gives_unknown_change_never_zero():
    s1, s2, _ = top_samples.samples()
    # web's memory becomes unknown at the second refresh, then known again.
    procs = tuple(replace(p, memory=None) if p.koid == 100 else p for p in s2.processes)
    h = History()
    h.update(s1)
    f2 = h.update(replace(s2, processes=procs))
    assert 100 not in _by_pid(f2) and f2.header.unreadable == 2
    f3 = h.update(s2)
    assert _by_pid(f3)[100].delta_bytes is None  # last PSS unknown
    assert _by_pid(f3)[100].delta_start_bytes == 4 * MIB


def test_job_totals_and_changes():
    _, f2, _ = _frames()
    jobs = f2.jobs
    assert jobs[1].pss_bytes == 53 * MIB and jobs[1].delta_bytes == 7 * MIB
    assert jobs[3].pss_bytes == 34 * MIB and jobs[3].delta_bytes == 3 * MIB
    assert jobs[3].unknown_processes == 0 and jobs[2].unknown_processes == 1  # sshd
    assert jobs[3].swap_bytes == 2 * MIB and jobs[2].swap_bytes == 0
    assert (jobs[3].charged_bytes, jobs[3].limit_bytes) == (40 * MIB, 1024 * MIB)
    assert view.row_cells(jobs[3])[-1] == "/user.slice  (charged 40M of 1G)"
    assert jobs[2].charged_bytes is None and view.row_cells(jobs[2])[-1] == "/system.slice"


@pytest.mark.parametrize("sort, order", [
    ("pss", [101, 100, 103, 1]),
    ("uss", [101, 100, 103, 1]),
    ("swap", [101, 1, 100, 103]),  # 2M, then the 0s by PID
    ("delta", [103, 100, 101, 1]),  # |+6M| > |+4M| > |-2M| > 0
    ("delta_start", [103, 100, 101, 1]),
    ("name", [101, 1, 100, 103]),
    ("pid", [1, 100, 101, 103]),
])
def test_sorting(sort, order):
    f2 = _frames()[1]
    assert [r.koid for r in view.rows(f2, TopOptions(sort=sort))] == order


def test_unknown_sort_key_is_refused():
    with pytest.raises(ValueError):
        view.sort_key("size")


def test_filter_matches_name_command_line_and_cgroup_case_insensitively():
    f2 = _frames()[1]
    assert [r.koid for r in view.rows(f2, TopOptions(filter="PORT"))] == [100]
    assert [r.koid for r in view.rows(f2, TopOptions(filter="user.slice"))] == [101, 103]
    assert view.rows(f2, TopOptions(filter="nothing-like-this")) == []


def test_tree_keeps_the_jobs_above_a_match():
    f2 = _frames()[1]
    rows = view.rows(f2, TopOptions(tree=True, filter="worker"))
    assert [(r.kind, r.koid, r.depth) for r in rows] == [("j", 1, 0), ("j", 3, 1), ("p", 103, 2)]
    rows = view.rows(f2, TopOptions(tree=True, jobs_only=True))
    assert [(r.koid, r.depth, r.name) for r in rows] == [
        (1, 0, "/"), (3, 1, "user.slice"), (2, 1, "system.slice")]
    flat_jobs = view.rows(f2, TopOptions(jobs_only=True))
    assert [r.name for r in flat_jobs] == ["/", "/user.slice", "/system.slice"]


def test_history_forgets_exited_processes():
    h = History()
    s1 = top_samples.samples()[0]
    h.update(s1)
    for i in range(50):
        procs = tuple(replace(p, start_time_ticks=10_000 + i) if p.koid == 102 else p
                      for p in s1.processes)
        h.update(replace(s1, processes=procs))
    assert len(h.first) <= len(s1.processes) and len(h.last) <= len(s1.processes)


def test_text_output_escapes_and_cuts_names():
    f1 = _frames()[0]
    text = view.render_text(f1, TopOptions(), width=80)
    assert "\x1b" not in text and "\x07" not in text
    assert "\\e[2J\\e[Hevil\\x07" in text
    assert all(len(line) <= 80 for line in text.splitlines()[4:])
    row = view.row_cells(_by_pid(f1)[102])
    assert row[-1].startswith("\\e[2J") and HOSTILE not in row[-1]


def test_delta_text():
    assert view.delta_text(None) == "-"
    assert view.delta_text(0) == "0"
    assert view.delta_text(4 * MIB) == "+4M"
    assert view.delta_text(-2 * MIB) == "-2M"
    assert view.delta_text(5, new=True) == "new"


# -- batch mode through the CLI


@pytest.fixture
def store(tmp_path):
    path = str(tmp_path / "h.db")
    top_samples.write_store(path)
    return path


def test_batch_json_steps_through_the_store(cli, store):
    r = cli(["top", "--from", store, "--json"])
    assert r.status == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert [d["refresh"] for d in docs] == [1, 2, 3]
    assert docs[1]["oom_kills_since_start"] == 2
    assert docs[1]["pressure"] == {"some_avg10": 3.0, "full_avg10": 1.1}
    rows = {row["koid"]: row for row in docs[2]["rows"]}
    assert rows[101]["new"] and rows[101]["pss_bytes"] == 3 * MIB
    assert rows[100]["delta_bytes"] == -2 * MIB and rows[100]["delta_start_bytes"] == 2 * MIB
    assert docs[0]["processes"]["unreadable"] == 1
    hostile = [row for row in docs[0]["rows"] if row["koid"] == 102][0]
    assert hostile["name"] == HOSTILE  # JSON keeps the name; json escapes controls
    assert "\x1b" not in r.stdout


def test_batch_text_count_limit_and_start(cli, store):
    r = cli(["top", "--from", f"{store}@2", "-n", "1", "-l", "2", "--sort", "delta"])
    assert r.status == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("h.db sample 2 (2/3)")
    table = lines[lines.index("") + 1:]
    assert table[0].split() == ["PID", "PSS", "USS", "SWAP", "ΔLAST", "ΔSTART", "NAME"]
    assert [line.split()[:6] for line in table[1:]] == [
        ["103", "6M", "6M", "0B", "new", "+6M"], ["100", "14M", "12M", "0B", "+4M", "+4M"]]


def test_batch_errors_are_one_line(cli, tmp_path, store):
    bad = tmp_path / "not-a-store"
    bad.write_text("{}")
    r = cli(["top", "--from", str(bad), "-b"])
    assert r.status == 1 and r.stderr.count("\n") == 1 and "not a history store" in r.stderr
    r = cli(["top", "--from", f"{store}@9", "-b"])
    assert r.status == 1 and "no sample 9" in r.stderr
    r = cli(["top", "-d", "0", "-b"])
    assert r.status == 2
    r = cli(["top", "-n", "0", "-b"])
    assert r.status == 2


def test_batch_live_against_a_recorded_proc_tree(cli):
    from fixture_paths import REPO

    root = str(REPO / "tests" / "fixtures" / "proc-trees" / "cgroup-v2" / "proc")
    r = cli(["top", "-b", "-n", "2", "-d", "0.01", "--json", "--proc-root", root])
    assert r.status == 0, r.stderr
    docs = [json.loads(line) for line in r.stdout.splitlines()]
    assert len(docs) == 2
    # The same tree twice: nothing changed, nothing new.
    assert all(row["delta_bytes"] == 0 and not row["new"] for row in docs[1]["rows"])
    assert {row["koid"] for row in docs[0]["rows"]} >= {19901, 19940, 19945, 19948}


def test_batch_on_a_recorded_tree_of_hostile_names(cli):
    from fixture_paths import REPO

    root = str(REPO / "tests" / "fixtures" / "proc-trees" / "hostile-names" / "proc")
    r = cli(["top", "-b", "-n", "1", "--proc-root", root], stdout_isatty=True,
            terminal_width=80)
    assert r.status == 0, r.stderr
    assert not any(ord(ch) < 0x20 and ch != "\n" for ch in r.stdout)
    assert "\u202e" not in r.stdout and "\x9b" not in r.stdout
    lines = r.stdout.splitlines()
    table = lines[lines.index("") + 1:]
    assert len(table) == 3  # the title and two processes: no name split a row
    assert all(len(line) <= 80 for line in table)
    assert "\\e[2J\\e[Hevil \\rfake\\nj:1" in table[1]
    # No meminfo in the recorded tree: unknown, never 0.
    assert lines[1].startswith("mem -  used -  free -")
    assert "psi some - full -" in lines[2]


def test_other_commands_do_not_import_textual():
    code = ("import sys\nfrom zxmem.cli import main\nimport io\n"
            "from zxmem.cli import Environment\n"
            "main(['ps', '--help'], Environment(stdout=io.StringIO()))\n"
            "main(['top', '--help'], Environment(stdout=io.StringIO()))\n"
            "print('textual' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "False"
