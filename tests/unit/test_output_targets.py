"""Where output goes: a standard output that fails, and ``-o`` targets.

* Standard output that cannot be written (a full disk, EIO, a closed file
  descriptor) is one line, ``zxmem: cannot write to standard output: ...``,
  and exit 1, for every command; a closed pipe stays quiet with 0.
* ``treemap -o`` writes through devices, FIFOs and links as a shell's ``>``
  would, and replaces only a regular file (or creates a new one) through a
  temporary file and a rename, so a good file is never left half written.
"""

from __future__ import annotations

import argparse
import errno
import io
import os
import stat
import subprocess
import sys
import threading
from pathlib import Path

import pytest

from zxmem import outfile
from zxmem.cli import build_parser, command_modules

REPO = Path(__file__).resolve().parents[2]
FIXTURES = REPO / "tests" / "fixtures"
OBJECTS = FIXTURES / "objects" / "workload" / "proc"  # one recorded process
OBJECTS_PID = "6475"
KERNEL = FIXTURES / "kernel" / "linux-6.18"  # meminfo, vmallocinfo, iomem, ...
STDOUT_LINE = "zxmem: cannot write to standard output: "


def _share_tree(tmp_path: Path) -> str:
    """A /proc with one process and its smaps_rollup, whose kernel counts no
    pages per page (CONFIG_NO_PAGE_MAPCOUNT): share falls back to the rollup
    numbers and prints them."""
    import gzip

    proc = tmp_path / "share-proc"
    (proc / "42").mkdir(parents=True)
    (proc / "kpagecount").write_bytes(b"")
    (proc / "kpageflags").write_bytes(b"")
    (proc / "config.gz").write_bytes(gzip.compress(b"CONFIG_NO_PAGE_MAPCOUNT=y\n"))
    (proc / "42" / "smaps_rollup").write_text(
        "00400000-7fff0000 ---p 00000000 00:00 0    [rollup]\n"
        "Rss:                 100 kB\nPss:                  60 kB\n"
        "Shared_Clean:         40 kB\nShared_Dirty:          0 kB\n"
        "Private_Clean:        20 kB\nPrivate_Dirty:        40 kB\n"
    )
    (proc / "42" / "comm").write_text("fortytwo\n")
    (proc / "42" / "cmdline").write_bytes(b"fortytwo\0")
    return str(proc)


def _case(command: str, tmp_path: Path) -> list[str]:
    """A cheap command line for ``command`` (a command, or ``k`` and its
    sub-command) that succeeds and prints something, from recorded trees."""
    obj, kern = str(OBJECTS), str(KERNEL)
    if command == "share":
        return ["share", "--proc-root", _share_tree(tmp_path), "42"]
    if command in ("history", "diff", "report"):
        store = _store(tmp_path)
        if command == "report":
            return ["report", "--from", store]
        return (["history", "--store", store] if command == "history"
                else ["diff", f"{store}@1", f"{store}@2"])
    if command == "growth":
        return ["growth", "--from", _store(tmp_path)]
    if command in ("record", "exporter"):
        # They print nothing per sample (a store, a server): --help is what
        # reaches standard output.
        return [command, "--help"]
    if command == "metrics":
        return ["metrics", "--proc-root", str(FIXTURES / "proc-trees" / "cgroup-v2" / "proc")]
    if command == "top":  # batch mode (standard output is not a terminal)
        return ["top", "-n", "1", "--proc-root",
                str(FIXTURES / "proc-trees" / "cgroup-v2" / "proc")]
    return {
        "digest": ["digest", "--proc-root", obj],
        "k asd": ["k", "asd", "kernel", "--proc-root", kern],
        "k ps": ["k", "ps", "--proc-root", obj],
        "k vmos": ["k", "vmos", OBJECTS_PID, "--proc-root", obj],
        "kstats": ["kstats", "-m", "-n", "1", "--proc-root", kern],
        "mem": ["mem", "--proc-root", obj],
        "memgraph": ["memgraph", "--proc-root", obj],
        "ps": ["ps", "--proc-root", obj],
        "treemap": ["treemap", "--proc-root", obj],
        "vmaps": ["vmaps", OBJECTS_PID, "--proc-root", obj],
        "vmos": ["vmos", OBJECTS_PID, "--proc-root", obj],
    }[command]


def _store(tmp_path: Path) -> str:
    """A history store of two samples of a recorded tree."""
    from zxmem.cli import Environment, main

    store = tmp_path / "h.db"
    if not store.exists():
        tree = str(FIXTURES / "proc-trees" / "cgroup-v2" / "proc")
        env = Environment(stdout=io.StringIO(), stderr=io.StringIO(), stdout_isatty=False)
        assert main(["record", "--count", "2", "--interval", "0.01", "--proc-root", tree,
                     "--store", str(store)], env) == 0
    return str(store)


def _all_commands() -> set[str]:
    """Every command the parser offers, ``k`` as its sub-commands."""
    names = set(command_modules()) - {"k"}
    parser = build_parser("k")
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    k = top.choices["k"]
    ksub = next(a for a in k._actions if isinstance(a, argparse._SubParsersAction))
    return names | {f"k {name}" for name in ksub.choices}


COMMANDS = ["diff", "digest", "exporter", "growth", "history", "k asd", "k ps", "k vmos",
            "kstats", "mem", "memgraph", "metrics", "ps", "record", "report", "share", "top",
            "treemap", "vmaps", "vmos"]


class FailingStdout(io.StringIO):
    """A standard output whose ``write`` or ``flush`` fails with ``error``."""

    def __init__(self, error: int, on: str) -> None:
        super().__init__()
        self.error, self.on = error, on

    def _raise(self) -> None:
        if self.error == errno.EPIPE:
            raise BrokenPipeError(errno.EPIPE, os.strerror(errno.EPIPE))
        raise OSError(self.error, os.strerror(self.error))

    def write(self, s: str) -> int:
        if self.on == "write":
            self._raise()
        return super().write(s)

    def flush(self) -> None:
        if self.on == "flush":
            self._raise()


def _run(argv, stdout):
    from zxmem.cli import Environment, main

    err = io.StringIO()
    with open(os.devnull) as stdin:
        env = Environment(stdout=stdout, stderr=err, stdin=stdin, stdout_isatty=False)
        status = main(argv, env)
    return status, err.getvalue()


def test_cases_cover_every_command():
    assert set(COMMANDS) == _all_commands()


@pytest.mark.parametrize("command", COMMANDS)
def test_each_case_prints_something(command, tmp_path):
    # The failing-stdout tests below mean something only if there is output.
    out = io.StringIO()
    status, err = _run(_case(command, tmp_path), out)
    assert status == 0, err
    assert len(out.getvalue()) > 10


@pytest.mark.parametrize("error,on", [(errno.ENOSPC, "write"), (errno.EIO, "flush")])
@pytest.mark.parametrize("command", COMMANDS)
def test_failing_stdout_is_one_line_and_exit_1(command, error, on, tmp_path):
    status, err = _run(_case(command, tmp_path), FailingStdout(error, on))
    assert status == 1
    lines = err.splitlines()
    assert lines[-1] == STDOUT_LINE + os.strerror(error)
    assert sum("standard output" in line for line in lines) == 1
    assert "Traceback" not in err


@pytest.mark.parametrize("command", COMMANDS)
def test_closed_pipe_stays_quiet(command, tmp_path):
    status, err = _run(_case(command, tmp_path), FailingStdout(errno.EPIPE, "write"))
    assert status == 0
    assert "standard output" not in err and "Pipe" not in err


@pytest.mark.parametrize("argv", [["ps", "--help"], ["--version"], ["k", "--help"]])
def test_help_to_a_full_stdout_is_an_error(argv):
    # argparse drops a failed write of the help text silently; it is not lost
    # without a word any more.
    status, err = _run(argv, FailingStdout(errno.ENOSPC, "flush"))
    assert status == 1
    assert err == STDOUT_LINE + "No space left on device\n"


def test_failing_stdout_after_an_error_keeps_its_status(tmp_path):
    # A usage error with a full stdout: still the usage status (2).
    status, err = _run(["ps", "--no-such-option"], FailingStdout(errno.ENOSPC, "flush"))
    assert status == 2


def _device(directory: Path, name: str, minor: int) -> Path:
    """A private copy of /dev/null (minor 3) or /dev/full (minor 7).

    The machine's own nodes are never the target: a regression (the bug
    this file is about) would replace them with a regular file for everyone.
    """
    if os.geteuid() != 0:
        pytest.skip("making a device node needs root")
    path = directory / name
    os.mknod(path, stat.S_IFCHR | 0o666, os.makedev(1, minor))
    try:
        fd = os.open(path, os.O_WRONLY)
    except PermissionError:
        pytest.skip(f"{directory} is mounted nodev")
    os.close(fd)
    return path


# --------------------------------------------------------------------------
# The real process: Python's own flush at exit must not add a traceback.


def _zxmem(args, **kwargs) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zxmem", *args], cwd=REPO,
                          stderr=subprocess.PIPE, text=True, timeout=60, **kwargs)


@pytest.mark.parametrize("args", [["ps", "--proc-root", str(OBJECTS)], ["ps", "--help"]])
def test_process_writing_to_dev_full(args, tmp_path):
    with open(_device(tmp_path, "full", 7), "w") as full:
        r = _zxmem(args, stdout=full)
    assert r.returncode == 1
    assert r.stderr == STDOUT_LINE + "No space left on device\n"


def test_process_with_stdout_closed():
    r = _zxmem(["ps", "--proc-root", str(OBJECTS)], preexec_fn=lambda: os.close(1))
    assert r.returncode == 1
    assert r.stderr == STDOUT_LINE + "Bad file descriptor\n"


def test_process_with_a_closed_pipe_is_quiet():
    read_end, write_end = os.pipe()
    os.close(read_end)  # every write gets EPIPE
    try:
        r = _zxmem(["vmaps", OBJECTS_PID, "--proc-root", str(OBJECTS)], stdout=write_end)
    finally:
        os.close(write_end)
    assert r.returncode == 0
    assert r.stderr == ""


def test_process_dash_o_dev_full_keeps_the_device(tmp_path):
    full = _device(tmp_path, "full", 7)
    r = _zxmem(["treemap", "--proc-root", str(OBJECTS), "-o", str(full)],
               stdout=subprocess.DEVNULL)
    assert r.returncode == 1
    assert r.stderr == f"zxmem: cannot write to {full}: No space left on device\n"
    assert stat.S_ISCHR(full.lstat().st_mode)


# --------------------------------------------------------------------------
# treemap -o FILE


@pytest.fixture(scope="module")
def snapshot_file(tmp_path_factory) -> str:
    """A memgraph of the recorded process, so pages are the same run to run."""
    path = tmp_path_factory.mktemp("snap") / "mg.json"
    out = io.StringIO()
    status, err = _run(["memgraph", "-v", "--proc-root", str(OBJECTS)], out)
    assert status == 0, err
    path.write_text(out.getvalue())
    return str(path)


@pytest.fixture(scope="module")
def page(snapshot_file) -> str:
    out = io.StringIO()
    status, err = _run(["treemap", "--from", snapshot_file], out)
    assert status == 0, err
    assert out.getvalue().startswith("<!DOCTYPE html>")
    return out.getvalue()


def _to(target, snapshot_file):
    out = io.StringIO()
    status, err = _run(["treemap", "--from", snapshot_file, "-o", str(target)], out)
    assert out.getvalue() == ""
    return status, err


def _leftovers(directory: Path) -> list[str]:
    return [p.name for p in directory.iterdir() if p.name.startswith(".zxmem-")]


def test_new_file_is_created_0644_less_umask(tmp_path, snapshot_file, page):
    target = tmp_path / "new.html"
    old = os.umask(0o027)
    try:
        status, err = _to(target, snapshot_file)
    finally:
        os.umask(old)
    assert status == 0, err
    assert target.read_text() == page
    assert stat.S_IMODE(target.stat().st_mode) == 0o640
    assert _leftovers(tmp_path) == []


def test_regular_file_is_replaced_keeping_its_mode(tmp_path, snapshot_file, page):
    target = tmp_path / "mem.html"
    target.write_text("old page\n")
    target.chmod(0o604)
    inode = target.stat().st_ino
    status, err = _to(target, snapshot_file)
    assert status == 0, err
    assert target.read_text() == page
    assert stat.S_IMODE(target.stat().st_mode) == 0o604
    assert target.stat().st_ino != inode  # a new file renamed over the old
    assert _leftovers(tmp_path) == []


def test_failed_write_keeps_the_good_file(tmp_path, snapshot_file, monkeypatch):
    target = tmp_path / "mem.html"
    target.write_text("the good page\n")
    inode = target.stat().st_ino
    real_write_all = outfile._write_all

    def half_then_full(fd, data):
        real_write_all(fd, data[: len(data) // 2])
        raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC))

    monkeypatch.setattr(outfile, "_write_all", half_then_full)
    status, err = _to(target, snapshot_file)
    assert status == 1
    assert err == f"zxmem: cannot write to {target}: No space left on device\n"
    assert target.read_text() == "the good page\n"
    assert target.stat().st_ino == inode
    assert _leftovers(tmp_path) == []


def test_failed_rename_keeps_the_good_file(tmp_path, snapshot_file, monkeypatch):
    target = tmp_path / "mem.html"
    target.write_text("the good page\n")

    def refuse(src, dst):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(outfile.os, "replace", refuse)
    status, err = _to(target, snapshot_file)
    assert status == 1
    assert err == f"zxmem: cannot write to {target}: Input/output error\n"
    assert target.read_text() == "the good page\n"
    assert _leftovers(tmp_path) == []


def test_symlink_to_a_regular_file_keeps_the_link(tmp_path, snapshot_file, page):
    real = tmp_path / "real.html"
    real.write_text("old\n")
    real.chmod(0o600)
    link = tmp_path / "link.html"
    link.symlink_to("real.html")
    status, err = _to(link, snapshot_file)
    assert status == 0, err
    assert link.is_symlink() and os.readlink(link) == "real.html"
    assert real.read_text() == page
    assert stat.S_IMODE(real.stat().st_mode) == 0o600
    assert _leftovers(tmp_path) == []


def test_dangling_symlink_creates_its_target(tmp_path, snapshot_file, page):
    link = tmp_path / "link.html"
    link.symlink_to("later.html")
    status, err = _to(link, snapshot_file)
    assert status == 0, err
    assert link.is_symlink()
    assert (tmp_path / "later.html").read_text() == page


def test_fifo_is_written_through(tmp_path, snapshot_file, page):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got = []
    reader = threading.Thread(target=lambda: got.append(fifo.read_bytes()), daemon=True)
    reader.start()
    status, err = _to(fifo, snapshot_file)
    reader.join(10)
    assert status == 0, err
    assert got == [page.encode()]
    assert stat.S_ISFIFO(fifo.lstat().st_mode)


def test_dev_null_stays_a_device(tmp_path, snapshot_file):
    null = _device(tmp_path, "null", 3)
    status, err = _to(null, snapshot_file)
    assert status == 0, err
    assert stat.S_ISCHR(null.lstat().st_mode)
    assert _leftovers(tmp_path) == []


def test_dev_full_is_one_line_and_stays_a_device(tmp_path, snapshot_file):
    full = _device(tmp_path, "full", 7)
    status, err = _to(full, snapshot_file)
    assert status == 1
    assert err == f"zxmem: cannot write to {full}: No space left on device\n"
    assert stat.S_ISCHR(full.lstat().st_mode)
    assert _leftovers(tmp_path) == []


def test_symlink_to_a_device_is_written_through(tmp_path, snapshot_file):
    null = _device(tmp_path, "null", 3)
    link = tmp_path / "link"
    link.symlink_to(null)
    status, err = _to(link, snapshot_file)
    assert status == 0, err
    assert link.is_symlink() and stat.S_ISCHR(null.lstat().st_mode)


def test_directory_is_refused(tmp_path, snapshot_file):
    status, err = _to(tmp_path, snapshot_file)
    assert status == 1
    assert err == f"zxmem: cannot write to {tmp_path}: Is a directory\n"
    assert _leftovers(tmp_path) == []


def test_missing_directory_is_one_line(tmp_path, snapshot_file):
    target = tmp_path / "no" / "such.html"
    status, err = _to(target, snapshot_file)
    assert status == 1
    assert err == f"zxmem: cannot write to {target}: No such file or directory\n"


def test_name_with_a_newline_stays_one_line(tmp_path, snapshot_file):
    target = tmp_path / "a\nb" / "x.html"
    status, err = _to(target, snapshot_file)
    assert status == 1
    assert err.count("\n") == 1 and "a\\nb" in err


def test_unwritable_directory_names_why(tmp_path, snapshot_file, monkeypatch):
    # The file may be writable, but the page is made beside it and renamed
    # over it: a directory that refuses new files is said to be the reason.
    # (Refused by injection: root may write into a read-only directory.)
    import tempfile

    target = tmp_path / "mem.html"
    target.write_text("old\n")

    def refuse(*args, **kwargs):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES))

    monkeypatch.setattr(tempfile, "mkstemp", refuse)
    status, err = _to(target, snapshot_file)
    assert status == 1
    assert err == (f"zxmem: cannot write to {target}: no new file can be made beside it "
                   "to replace it (Permission denied)\n")
    assert target.read_text() == "old\n"


def test_open_with_no_temporary_directory_is_one_line(tmp_path, snapshot_file, monkeypatch):
    import tempfile
    import webbrowser

    opened = []
    monkeypatch.setattr(webbrowser, "open", lambda url: opened.append(url) or True)
    monkeypatch.setattr(tempfile, "tempdir", str(tmp_path / "gone"))
    status, err = _run(["treemap", "--from", snapshot_file, "--open"], io.StringIO())
    assert status == 1
    assert err == ("zxmem: cannot write to a temporary file: "
                   "No such file or directory\n")
    assert opened == []


def test_trailing_slash_is_a_directory_not_a_new_file(tmp_path, snapshot_file):
    target = str(tmp_path / "nosuch") + "/"
    status, err = _to(target, snapshot_file)
    assert status == 1
    assert err == f"zxmem: cannot write to {target}: Is a directory\n"
    assert list(tmp_path.iterdir()) == []


def test_failed_write_through_a_dangling_link_leaves_no_file(tmp_path, snapshot_file,
                                                             monkeypatch):
    link = tmp_path / "link.html"
    link.symlink_to("later.html")

    def fail(fd, data):
        raise OSError(errno.EIO, os.strerror(errno.EIO))

    monkeypatch.setattr(outfile, "_write_all", fail)
    status, err = _to(link, snapshot_file)
    assert status == 1
    assert err == f"zxmem: cannot write to {link}: Input/output error\n"
    assert link.is_symlink() and not (tmp_path / "later.html").exists()
    assert _leftovers(tmp_path) == []


# --------------------------------------------------------------------------
# -o -: standard output, for every command that has -o


def _commands_with_dash_o() -> list[str]:
    parser = build_parser("zxmem")
    top = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return sorted(name for name, sub in top.choices.items()
                  if any("-o" in a.option_strings for a in sub._actions))


def test_dash_o_commands_are_known():
    # A new command with -o joins the test below (and needs a case in _case).
    assert _commands_with_dash_o() == ["metrics", "report", "treemap"]


@pytest.mark.parametrize("command", _commands_with_dash_o())
def test_dash_o_dash_is_standard_output(command, tmp_path, monkeypatch, snapshot_file):
    # treemap from a saved memgraph: the page of a live read names its time.
    argv = (["treemap", "--from", snapshot_file] if command == "treemap"
            else _case(command, tmp_path))
    monkeypatch.chdir(tmp_path)
    plain = io.StringIO()
    status, err = _run(argv, plain)
    assert status == 0, err
    before = set(os.listdir(tmp_path))
    dashed = io.StringIO()
    status, err = _run(argv + ["-o", "-"], dashed)
    assert status == 0, err
    assert set(os.listdir(tmp_path)) == before  # no file named '-'
    assert len(dashed.getvalue()) > 10
    if command == "metrics":
        # A new sample: the same series, in the same order.
        def names(text: str) -> list[str]:
            return [line.split(" ")[0] for line in text.splitlines()]
        assert names(dashed.getvalue()) == names(plain.getvalue())
    else:
        assert dashed.getvalue() == plain.getvalue()


def test_dash_o_dash_to_a_terminal_is_refused_like_no_o(snapshot_file):
    from zxmem.cli import Environment, main

    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, stdout_isatty=True)
    assert main(["treemap", "--from", snapshot_file, "-o", "-"], env) == 2
    assert "not writing HTML to a terminal" in err.getvalue()
    assert out.getvalue() == ""


def test_dash_o_dash_with_open_is_a_usage_error(snapshot_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, err = _run(["treemap", "--from", snapshot_file, "-o", "-", "--open"],
                       io.StringIO())
    assert status == 2
    assert err == "zxmem: treemap: --open needs a file, not -o - (standard output)\n"
    assert os.listdir(tmp_path) == []


def test_dash_o_of_an_empty_name_is_one_line(snapshot_file, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    status, err = _run(["treemap", "--from", snapshot_file, "-o", ""], io.StringIO())
    assert status == 1
    assert err == "zxmem: cannot write to an empty file name\n"
    assert os.listdir(tmp_path) == []
