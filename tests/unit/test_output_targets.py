"""Where output goes: a full standard output is one line and exit 1 for every
command, and -o writes through devices, FIFOs and links and replaces only
regular files, atomically."""

from __future__ import annotations

import errno
import io
import os
import stat
import subprocess
import sys
import threading

import pytest
from fixture_paths import REPO  # noqa: I001  (tests/ is on sys.path)

from zxmem.cli import Environment, command_modules, main
from zxmem.errors import OutputError
from zxmem.outfile import write_output

TREE = str(REPO / "tests" / "fixtures" / "proc-trees" / "cgroup-v2" / "proc")
PID = str(os.getpid())


class _Full(io.StringIO):
    """A stream on a full disk: writes (or only flushes) fail."""

    def __init__(self, err: int, on_flush: bool) -> None:
        super().__init__()
        self.err, self.on_flush = err, on_flush

    def write(self, text: str) -> int:
        if not self.on_flush:
            raise OSError(self.err, os.strerror(self.err))
        return super().write(text)

    def flush(self) -> None:
        if self.on_flush:
            raise OSError(self.err, os.strerror(self.err))


@pytest.fixture(scope="module")
def saved(tmp_path_factory):
    """A memgraph of this machine with every part, for views of --from."""
    out = io.StringIO()
    status = main(["memgraph", "-vtH", "--hidden"],
                  Environment(stdout=out, stderr=io.StringIO(), stdout_isatty=False))
    assert status == 0
    path = tmp_path_factory.mktemp("saved") / "mem.json"
    path.write_text(out.getvalue())
    return str(path)


def _argv(command: str, saved: str) -> list[str]:
    """A cheap run of each command that writes to standard output."""
    return {
        "ps": ["ps", "--proc-root", TREE],
        "vmaps": ["vmaps", "--from", saved, PID],
        "vmos": ["vmos", "--from", saved, PID],
        "memgraph": ["memgraph", "-v", "--from", saved],
        "treemap": ["treemap", "--from", saved],
        "kstats": ["kstats", "-m", "-n", "1", "--from", saved],
        "k": ["k", "vmos", "hidden", "--from", saved],
        "digest": ["digest", "--from", saved],
        "mem": ["mem", "--from", saved],
        "share": ["share", PID],
        "metrics": ["metrics"],
        "exporter": ["exporter"],  # skipped below
    }.get(command) or pytest.fail(f"no output-error case for the command {command!r}: "
                                  "add one here")


@pytest.mark.parametrize("on_flush", [False, True], ids=["write", "flush"])
@pytest.mark.parametrize("err", [errno.ENOSPC, errno.EIO], ids=["ENOSPC", "EIO"])
@pytest.mark.parametrize("command", command_modules())
def test_a_full_standard_output_is_one_line_and_exit_1(command, err, on_flush, saved):
    argv = _argv(command, saved)
    if command == "exporter":
        pytest.skip("exporter writes nothing to standard output: it serves HTTP")
    ok = main(argv, Environment(stdout=io.StringIO(), stderr=io.StringIO(),
                                stdout_isatty=False))
    if command == "share" and os.geteuid() != 0:
        pytest.skip("share reads page tables: root only")
    assert ok == 0, argv
    stderr = io.StringIO()
    status = main(argv, Environment(stdout=_Full(err, on_flush), stderr=stderr,
                                    stdout_isatty=False))
    assert status == 1, (argv, stderr.getvalue())
    assert stderr.getvalue() == \
        f"zxmem: cannot write to standard output: {os.strerror(err)}\n"


@pytest.mark.parametrize("argv", [["--help"], ["ps", "--help"], ["--version"]])
def test_help_on_a_full_standard_output(argv):
    stderr = io.StringIO()
    status = main(argv, Environment(stdout=_Full(errno.ENOSPC, False), stderr=stderr))
    assert status == 1
    assert stderr.getvalue() == "zxmem: cannot write to standard output: " \
                                "No space left on device\n"


def test_the_real_program_on_dev_full():
    r = subprocess.run([sys.executable, "-m", "zxmem", "ps", "--proc-root", TREE],
                       stdout=open("/dev/full", "w"), stderr=subprocess.PIPE, text=True,
                       timeout=60)
    assert r.returncode == 1
    assert r.stderr == "zxmem: cannot write to standard output: No space left on device\n"


def test_a_closed_pipe_stays_quiet():
    r = subprocess.run(f"'{sys.executable}' -m zxmem memgraph --proc-root '{TREE}' | head -c1",
                       shell=True, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0 and r.stdout == "["
    assert r.stderr == "zxmem: memgraph: kernel records left out: No such file or directory\n"


# -o / --output -----------------------------------------------------------


def test_a_new_path_is_created_with_the_umask(tmp_path):
    path = tmp_path / "new.html"
    write_output(str(path), "<p>é</p>")
    assert path.read_bytes() == "<p>é</p>".encode()
    mask = os.umask(0)
    os.umask(mask)
    assert stat.S_IMODE(path.stat().st_mode) == 0o666 & ~mask
    assert [p.name for p in tmp_path.iterdir()] == ["new.html"]  # no temporary left


def test_a_regular_file_is_replaced_and_keeps_its_mode(tmp_path):
    path = tmp_path / "page.html"
    path.write_text("old")
    path.chmod(0o600)
    inode = path.stat().st_ino
    write_output(str(path), "new")
    assert path.read_text() == "new"
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    assert path.stat().st_ino != inode  # a rename, not a rewrite in place


def test_a_failed_write_leaves_the_good_file(tmp_path, monkeypatch):
    path = tmp_path / "page.html"
    path.write_text("good")
    real_write = os.write

    def failing(fd, data):
        real_write(fd, bytes(data[:3]))
        raise OSError(errno.ENOSPC, "No space left on device")

    monkeypatch.setattr(os, "write", failing)
    with pytest.raises(OutputError, match=r"^-o .*page.html: No space left on device$"):
        write_output(str(path), "a much longer new page")
    monkeypatch.undo()
    assert path.read_text() == "good"
    assert [p.name for p in tmp_path.iterdir()] == ["page.html"]


def test_a_symlink_is_kept_and_its_target_replaced(tmp_path):
    target = tmp_path / "real.html"
    target.write_text("old")
    link = tmp_path / "link.html"
    link.symlink_to(target)
    write_output(str(link), "new")
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert target.read_text() == "new"


def test_a_fifo_is_written_through(tmp_path):
    fifo = tmp_path / "pipe"
    os.mkfifo(fifo)
    got: list[bytes] = []
    reader = threading.Thread(target=lambda: got.append(open(fifo, "rb").read()))
    reader.start()
    write_output(str(fifo), "through the pipe")
    reader.join(10)
    assert got == [b"through the pipe"]
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)


def test_a_symlink_to_a_device_writes_through(tmp_path):
    link = tmp_path / "null"
    link.symlink_to("/dev/null")
    write_output(str(link), "x" * 100_000)
    assert link.is_symlink() and stat.S_ISCHR(os.stat("/dev/null").st_mode)


def test_a_directory_is_refused(tmp_path):
    with pytest.raises(OutputError, match="is a directory"):
        write_output(str(tmp_path), "x")


@pytest.mark.skipif(os.geteuid() != 0, reason="only root could replace /dev nodes")
def test_devices_are_never_replaced_as_root(cli, saved):
    """As root a rename over /dev/full would succeed: the device must stay."""
    r = cli(["treemap", "--from", saved, "-o", "/dev/null"])
    assert r.status == 0, r.stderr
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)
    r = cli(["treemap", "--from", saved, "-o", "/dev/full"])
    assert r.status == 1
    assert r.stderr == "zxmem: -o /dev/full: No space left on device\n"
    assert stat.S_ISCHR(os.lstat("/dev/full").st_mode)
