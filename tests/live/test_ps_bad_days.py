"""``zxmem ps`` on bad days: not root, vanishing processes, zombies, kernel
threads, bad arguments, closed pipes, Ctrl-C and hostile process names.

Each behaviour is the one DESIGN.md ("Failure behaviour") and the ps issue
ask for: a one-line error and a non-zero exit for bad input, nothing on
stderr but the unreadable note otherwise, never a traceback, never a 0 where
the kernel would give a number, and no byte of a name reaching the terminal
unescaped.
"""

from __future__ import annotations

import errno
import io
import json
import os
import re
import signal
import subprocess
import time

import pytest
import workloads
from harness import nobody_env, nobody_python, ps_json, zxmem_command
from workloads import MIB, PAGE, kernel_cmdline, kernel_counts, kernel_stat

from zxmem.cli import Environment, main

pytestmark = pytest.mark.live

TOL = 32 * PAGE
PF_KTHREAD = 0x00200000  # include/linux/sched.h

TASK_LINE = re.compile(r"^(?:TASK|(?:  )*[jpt]: ?\d+) ")
PROCESS_ROW = re.compile(r"^ *p: ?(\d+) ")
SIZE_CELL = re.compile(r"^(?:\d+(?:\.\d+)?[BkKMGTPE])$")
NOTE = re.compile(
    r"^zxmem: (\d+) process(?:es)? not readable(?: \(.*?\))?"
    r"(?:: run as root for PSS| \(denied even to root\))(?:; to list them: .*)?$"
)
# What must never reach a terminal: C0 and C1 controls, DEL, and the
# Unicode characters that reorder or hide text.
RAW_CONTROL = re.compile("[\x00-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e\u2060-\u2069\ufeff]")


def only_notes(stderr: str) -> None:
    """stderr holds nothing but (at most) the unreadable-processes note."""
    assert "Traceback" not in stderr
    for line in stderr.splitlines():
        assert NOTE.match(line), f"unexpected stderr line: {line!r}"


def check_text_table(stdout: str) -> list[str]:
    """Every line is the header or a task row; process rows are whole."""
    lines = stdout.splitlines()
    assert lines, "empty table"
    assert lines[0] == lines[-1] and lines[0].startswith("TASK ")
    for line in lines:
        assert not RAW_CONTROL.search(line), f"raw control character in {line!r}"
        assert TASK_LINE.match(line), f"not a task row: {line!r}"
        if line.lstrip().startswith("p:") and not line.lstrip().startswith("p: "):
            cells = line.split(None, 4)
            assert len(cells) == 5, f"partial row: {line!r}"
            assert all(SIZE_CELL.match(c) for c in cells[1:4]), f"partial row: {line!r}"
    return lines


def check_json_records(doc: dict) -> None:
    """No partial process record: the three sizes are all known or all null."""
    for r in doc["tasks"]:
        if r["type"] == "p":
            sizes = (r["pss_bytes"], r["private_bytes"], r["shared_bytes"])
            assert all(isinstance(v, int) for v in sizes) or sizes == (None,) * 3, r
            assert isinstance(r["name"], str) and r["name"], r


def rows_by_pid(lines: list[str]) -> dict[int, str]:
    out = {}
    for line in lines:
        m = PROCESS_ROW.match(line)
        if m:
            out[int(m.group(1))] = line
    return out


# --------------------------------------------------------------------------
# Not root.


def test_unprivileged_run_counts_what_it_cannot_read(launcher):
    python = nobody_python()
    env = nobody_env()
    mine = launcher.start("private", str(4 * MIB), python=python[0], as_nobody=True, env=env)
    assert os.stat(f"/proc/{mine.pid}").st_uid == 65534

    def run(*args):
        return subprocess.run(
            [*workloads.nobody_prefix(), *python, "-m", "zxmem", "ps", *args],
            env=env, capture_output=True, text=True, cwd="/",
        )

    r = run("--json")
    assert r.returncode == 0, r.stderr
    lines = r.stderr.splitlines()
    assert len(lines) == 1, r.stderr
    m = re.fullmatch(r"zxmem: (\d+) process(?:es)? not readable(?: \(.*?\))?"
                     r": run as root for PSS(?:; to list them: .*)?", lines[0])
    assert m, lines[0]
    n = int(m.group(1))
    assert n > 0
    doc = json.loads(r.stdout)
    check_json_records(doc)
    recs = {t["koid"]: t for t in doc["tasks"] if t["type"] == "p"}
    unknown = [pid for pid, t in recs.items() if t["pss_bytes"] is None]
    assert len(unknown) == n

    # Nothing reads as 0 where the kernel (read here as root) has a number.
    for pid, t in recs.items():
        kernel = kernel_counts(pid)
        if t["pss_bytes"] is None or kernel is None:
            continue
        for got, want in zip((t["pss_bytes"], t["private_bytes"], t["shared_bytes"]),
                             kernel, strict=True):
            assert not (got == 0 and want > 0), (pid, t, kernel)

    # nobody's own process is shown, with its numbers.
    t = recs[mine.pid]
    assert t["uid"] == 65534
    assert t["pss_bytes"] >= 4 * MIB and t["private_bytes"] >= 4 * MIB
    # Read now, with that zxmem gone, some interpreter pages it shared with
    # ours are private again: PRIVATE can only have grown since.
    assert t["private_bytes"] <= kernel_counts(mine.pid)[1] + TOL

    # The table leaves the unreadable ones out (never a row of zeros).
    r = run()
    assert r.returncode == 0 and "Traceback" not in r.stderr
    assert len(r.stderr.splitlines()) == 1 and NOTE.match(r.stderr.strip())
    rows = rows_by_pid(check_text_table(r.stdout))
    assert mine.pid in rows
    for pid in unknown:
        if kernel_stat(pid) is not None and kernel_stat(pid)[1] != "Z":
            assert pid not in rows, rows.get(pid)
    for pid, row in rows.items():
        kernel = kernel_counts(pid)
        if kernel is not None and kernel[0] > 0:
            assert row.split()[1] != "0B", row


# --------------------------------------------------------------------------
# Processes that come and go.


@pytest.fixture
def churn():
    """A shell that keeps starting short-lived processes until killed."""
    proc = subprocess.Popen(
        ["sh", "-c", "while :; do for i in 1 2 3 4 5 6; do sleep 0.00$i & done; true; wait; done"],
        start_new_session=True,
    )
    yield proc
    # The loop and its children share a process group led by proc.pid.
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait()


def test_processes_exiting_during_the_scan(cli, churn):
    for args in ([], ["-T", "--swap"], ["--json"], ["--json", "-T", "-a"]):
        r = cli(["ps", *args])
        assert r.status == 0, r.stderr
        only_notes(r.stderr)
        if "--json" in args:
            check_json_records(json.loads(r.stdout))
        else:
            check_text_table(r.stdout)


def test_zombie_is_shown_with_no_memory(cli, launcher):
    w = launcher.start("zombie")
    zombie = w.pids[1]
    comm, state, _ = kernel_stat(zombie)
    assert state == "Z"
    doc, run = ps_json(cli)
    only_notes(run.stderr)
    t = {r["koid"]: r for r in doc["tasks"] if r["type"] == "p"}[zombie]
    assert t["state"] == "Z"
    # A zombie has no mm: nothing is mapped, so 0 is the kernel's own answer.
    assert (t["pss_bytes"], t["private_bytes"], t["shared_bytes"]) == (0, 0, 0)
    assert t["cmdline"] == []
    assert t["name"] == f"[{workloads.decoded(comm)}]"

    r = cli(["ps"])
    assert r.status == 0
    row = rows_by_pid(check_text_table(r.stdout))[zombie]
    assert row.split()[1:4] == ["0B", "0B", "0B"]
    assert row.endswith(f" [{workloads.decoded(comm)}]")


def test_kernel_threads_hidden_by_default_shown_with_a(cli):
    kthreads = {}
    for name in os.listdir("/proc"):
        if name.isdigit():
            st = kernel_stat(int(name))
            if st is not None and st[2] & PF_KTHREAD:
                kthreads[int(name)] = st[0]
    if not kthreads:
        pytest.skip("no kernel threads visible in this /proc (a container?)")

    doc, _ = ps_json(cli)
    shown = {r["koid"]: r for r in doc["tasks"] if r["type"] == "p"}
    assert not set(kthreads) & set(shown)
    assert not any(r["kernel_thread"] for r in shown.values())

    doc, _ = ps_json(cli, "-a")
    shown = {r["koid"]: r for r in doc["tasks"] if r["type"] == "p"}
    still = {pid: comm for pid, comm in kthreads.items() if kernel_stat(pid) is not None}
    present = set(still) & set(shown)
    assert present, "no kernel thread shown with -a"
    for pid in present:
        r = shown[pid]
        assert r["kernel_thread"] is True
        assert r["name"] == f"[{r['comm']}]", r
        # A kworker's name follows the work it does ("kworker/0:1-events"):
        # only the part before the first "-" is stable.
        stable = workloads.decoded(still[pid]).split("-")[0]
        assert r["comm"].split("-")[0] == stable, r
        assert r["pss_bytes"] == 0  # no user address space

    r = cli(["ps", "-a"])
    rows = rows_by_pid(check_text_table(r.stdout))
    pid = min(present)  # kthreadd (PID 2), whose name does not change
    assert rows[pid].endswith(f" [{workloads.decoded(still[pid])}]")


# --------------------------------------------------------------------------
# Bad arguments: one line on stderr, non-zero exit, in-process and installed.


BAD_ARGUMENTS = [
    (["ps", "--job=987654321987"], 1, "--job"),
    (["ps", "--units=q"], 2, "--units"),
    (["ps", "--proc-root", "/nonexistent/zxmem-proc"], 2, "--proc-root"),
]


@pytest.mark.parametrize(("argv", "status", "names"), BAD_ARGUMENTS)
def test_bad_arguments_in_process(cli, argv, status, names):
    r = cli(argv)
    assert r.status == status
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and names in r.stderr, r.stderr


@pytest.mark.parametrize(("argv", "status", "names"), BAD_ARGUMENTS)
def test_bad_arguments_installed(argv, status, names):
    r = subprocess.run([*zxmem_command(), *argv], capture_output=True, text=True)
    assert r.returncode == status
    assert r.stdout == ""
    assert len(r.stderr.splitlines()) == 1 and names in r.stderr, r.stderr


# --------------------------------------------------------------------------
# Closed pipe and Ctrl-C.


@pytest.mark.parametrize("reader", ["head -1", "true"])
@pytest.mark.parametrize("args", ["", "--json"])
def test_closed_pipe_is_quiet(launcher, tmp_path, args, reader):
    """``zxmem ps | head -1`` in a real shell: one line, exit 0, no complaint.

    stderr may still carry the unreadable note (on some machines a process
    is unreadable even to root); nothing about the pipe may appear.
    """
    zxmem = zxmem_command()[0]
    # A 100 KB command line makes the output larger than a pipe's buffer,
    # so zxmem is still writing when the reader has gone.
    launcher.start("hold", "B" * 100_000)
    status = tmp_path / "status"
    script = f'"{zxmem}" ps {args} | {reader}; echo "${{PIPESTATUS[0]}}" > "{status}"'
    r = subprocess.run(["bash", "-c", script], capture_output=True, text=True)
    if reader == "head -1":
        assert r.stdout.count("\n") == 1
        assert r.stdout.startswith("TASK ") or r.stdout == "{\n"
    else:
        assert r.stdout == ""
    only_notes(r.stderr)
    assert "Broken pipe" not in r.stderr and "Exception ignored" not in r.stderr
    assert status.read_text().strip() == "0"


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")

    def flush(self) -> None:
        raise BrokenPipeError(errno.EPIPE, "Broken pipe")


@pytest.mark.parametrize("args", [[], ["--json"]])
def test_closed_pipe_in_process(args):
    """The handler path itself: EPIPE on the first write ends quietly with 0."""
    err = io.StringIO()
    status = main(["ps", *args], Environment(stdout=_ClosedPipe(), stderr=err,
                                             stdout_isatty=False))
    assert status == 0
    assert err.getvalue() == ""


def test_ctrl_c_in_process(cli, monkeypatch):
    import zxmem.sources.linux

    def interrupted(*args, **kwargs):
        raise KeyboardInterrupt

    monkeypatch.setattr(zxmem.sources.linux, "collect", interrupted)
    r = cli(["ps"])
    assert r.status == 130
    assert r.stdout == "" and r.stderr == ""


def test_ctrl_c_while_reading(tmp_path):
    """SIGINT to a ``zxmem ps`` blocked reading ``/proc``: exit 130, quietly.

    The ``--proc-root`` holds one process whose ``stat`` is a FIFO: zxmem
    blocks reading it until the test has sent the signal, so the signal
    always lands in the middle of the scan.
    """
    zxmem = zxmem_command()
    proc_dir = tmp_path / "proc" / "1"
    proc_dir.mkdir(parents=True)
    fifo = proc_dir / "stat"
    os.mkfifo(fifo)
    p = subprocess.Popen(
        [*zxmem, "ps", "--proc-root", str(tmp_path / "proc")],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
        # An inherited "ignore SIGINT" (background jobs of a script) would
        # make Python ignore it too.
        preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL),
    )
    wfd = None
    try:
        deadline = time.monotonic() + 60
        while wfd is None:
            try:
                # Succeeds only once zxmem has the FIFO open for reading.
                wfd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
            except OSError as exc:
                if exc.errno != errno.ENXIO:
                    raise
                assert p.poll() is None, p.communicate()
                assert time.monotonic() < deadline, "zxmem never opened the FIFO"
                time.sleep(0.01)
        p.send_signal(signal.SIGINT)
        try:
            p.wait(timeout=10)
        except subprocess.TimeoutExpired:
            # Let a reader stuck in another thread finish, then judge.
            os.close(wfd)
            wfd = None
        out, err = p.communicate(timeout=60)
    finally:
        if wfd is not None:
            os.close(wfd)
        if p.poll() is None:
            p.kill()
            p.wait()
    assert p.returncode == 130, err
    assert "Traceback" not in err and "KeyboardInterrupt" not in err
    assert err == ""


# --------------------------------------------------------------------------
# Hostile names.


HOSTILE_ARGV0 = b"\x1b[2J\x1b[31mred\r\n\xff\xfe-argv0"
HOSTILE_COMM = b"\x1b[2J\r\n\xff\xc3(ev"
HOSTILE_ARGS = [
    b"\x1b]0;title\x07",
    b"line1\nj:1    999T fake row %d" % os.getpid(),
    b"\rOVERWRITE",
    b"\xc3\x28 invalid utf-8 \xed\xa0\x80",
    "\u202eRTL override".encode(),
    b"\x7f\x9b2J",
    b"A" * 4096,
]


def test_hostile_names_are_escaped(cli, launcher):
    w = launcher.start("hold", "--comm", HOSTILE_COMM, *HOSTILE_ARGS, argv0=HOSTILE_ARGV0)
    raw_args = kernel_cmdline(w.pid)
    assert raw_args[0] == HOSTILE_ARGV0 and raw_args[-1] == b"A" * 4096
    comm = kernel_stat(w.pid)[0]
    assert comm == HOSTILE_COMM[:15]

    # JSON: valid, and the names come back as the kernel has them (invalid
    # UTF-8 as \xNN text).
    doc, _ = ps_json(cli, "-T")
    t = {r["koid"]: r for r in doc["tasks"] if r["type"] == "p"}[w.pid]
    want = [workloads.decoded(a) for a in raw_args]
    assert t["cmdline"] == want
    assert t["name"] == " ".join(want)
    assert t["comm"] == workloads.decoded(comm)
    threads = [r for r in doc["tasks"] if r["type"] == "t" and r["parent"] == f"p/{w.pid}"]
    assert threads and threads[0]["name"] == workloads.decoded(comm)

    # Text: piped, on a terminal, and with threads (thread names are comms).
    for args, kw in (
        ([], {}),
        (["-T"], {}),
        # Colour off: this checks the layout; the coloured terminal table of
        # hostile names is a golden (ps-hostile-names-swap-80-color.txt).
        (["--color=never"], {"stdout_isatty": True, "terminal_width": 80}),
        (["--style=late"], {}),
    ):
        r = cli(["ps", *args], **kw)
        assert r.status == 0
        lines = check_text_table(r.stdout)
        row = rows_by_pid(lines)[w.pid]
        assert "\\e[2J" in row
        if not kw:
            assert row.endswith("A" * 4096)  # whole when piped
        else:
            assert len(row) <= 80
        # Other rows are untouched: the fake row's text sits inside this one.
        # (The suite may run twice at once: the marker carries our PID.)
        fake = f"999T fake row {os.getpid()}"
        others = [line for line in lines if fake in line and line is not row]
        assert not others, (args, others)
