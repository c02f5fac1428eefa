"""Live: hostile names from /proc reach no view raw, and JSON keeps them whole.

A child process holds, by descriptor only, a memfd whose name has invalid
UTF-8, an ESC sequence, a CSI byte, a newline and a tab; it maps a second
such memfd (and keeps it open: Python's mmap holds a duplicate descriptor);
its task name (``prctl(PR_SET_NAME)``) and an argument hold the same kind
of bytes.  Every name must be shown as ``escape_terminal(decode_name(raw))``
in every text view (``vmos``, ``k vmos PID``, ``k vmos hidden``, ``vmaps``,
``ps``), live and read back from ``memgraph -v --hidden`` with ``--from``;
JSON output must parse, re-encode as UTF-8 (no lone surrogate) and give
``decode_name(raw)`` back.

The views run in-process with the CLI's last-line guard (``SafeWriter``)
switched off, so what is checked is the sources' decoding and the views'
escaping; one run of the real program checks its stdout bytes.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys

import pytest

import zxmem.cli as cli_module
from zxmem.textsafe import decode_name, escape_terminal

pytestmark = pytest.mark.live

HELD = b"evil\x9b\x1b[2Jname\xff\n\tx"
MAPPED = b"mapped\x9b\x1b[31m\xfe\x85red"
COMM = b"zx\x1b[2J\x9b\xffc"  # 10 bytes (the kernel keeps 15)
ARG = b"arg\x1b]0;pwned\x07\xff\x9b\nend"

CHILD = r"""
import ctypes, mmap, os, sys
held = os.memfd_create(bytes.fromhex(sys.argv[1]))
os.write(held, b"h" * 8192)             # written through the descriptor only
fd = os.memfd_create(bytes.fromhex(sys.argv[2]))
os.ftruncate(fd, 8192)
m = mmap.mmap(fd, 8192)
m[:] = b"m" * 8192
os.close(fd)
ctypes.CDLL(None).prctl(15, ctypes.c_char_p(bytes.fromhex(sys.argv[3])), 0, 0, 0)
print("ready", os.getpid(), held, flush=True)
sys.stdin.read()
"""

# Characters a terminal may act on, but the newline and tab rows are made of.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e"
                    "\u2060-\u2069\ufeff\ud800-\udfff]")


def _start(argv: list) -> tuple[subprocess.Popen, list[str]]:
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    words = proc.stdout.readline().decode().split()
    return proc, words


def _stop(proc: subprocess.Popen) -> None:
    proc.stdin.close()
    try:
        proc.wait(timeout=10)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait()


@pytest.fixture
def hostile():
    """PID of the child holding and mapping the hostile memfds."""
    if os.geteuid() != 0:
        pytest.skip("not root: other processes' descriptors and k vmos hidden need root")
    proc, words = _start([sys.executable, "-I", "-S", "-c", CHILD, HELD.hex(), MAPPED.hex(),
                          COMM.hex(), ARG])
    try:
        if not words or words[0] != "ready":
            pytest.fail("the hostile-name workload did not start")
        yield int(words[1])
    finally:
        _stop(proc)


@pytest.fixture
def unguarded(cli, monkeypatch):
    """The CLI in-process without SafeWriter: the views alone are checked."""
    monkeypatch.setattr(cli_module, "SafeWriter", lambda stream: stream)
    return cli


def _text_ok(text: str) -> None:
    found = UNSAFE.search(text)
    assert found is None, repr(text[max(0, found.start() - 80):found.end() + 20])


def _json_ok(text: str):
    doc = json.loads(text)
    json.dumps(doc, ensure_ascii=False).encode("utf-8")  # raises on a lone surrogate
    return doc


def _strings(doc) -> list[str]:
    out, stack = [], [doc]
    while stack:
        v = stack.pop()
        if isinstance(v, str):
            out.append(v)
        elif isinstance(v, list):
            stack.extend(v)
        elif isinstance(v, dict):
            out.extend(v)
            stack.extend(v.values())
    return out


HELD_NAME = "memfd:" + decode_name(HELD)
MAPPED_NAME = "memfd:" + decode_name(MAPPED)


def _rows(text: str, name: str) -> list[str]:
    shown = escape_terminal(name)
    return [line for line in text.splitlines() if line.endswith(shown)]


def _check_text_views(run, pid: int, source: list[str]) -> None:
    def k(*args):
        return ["k", args[0], *source, *args[1:]]

    def plain(*args):
        return [args[0], *source, *args[1:]]

    r = run(plain("vmos", str(pid)))
    assert r.status == 0, r.stderr
    _text_ok(r.stdout + r.stderr)
    # The held memfd once (fd), the mapped one held (mmap's dup) and mapped.
    assert len(_rows(r.stdout, HELD_NAME)) == 1
    assert len(_rows(r.stdout, MAPPED_NAME)) == 2

    r = run(k("vmos", str(pid)))
    assert r.status == 0, r.stderr
    _text_ok(r.stdout + r.stderr)
    assert len(_rows(r.stdout, HELD_NAME)) == 1
    assert len(_rows(r.stdout, MAPPED_NAME)) == 2

    r = run(k("vmos", "hidden"))
    assert r.status == 0, r.stderr
    _text_ok(r.stdout + r.stderr)
    # (Filtered by holder: another run of this test may hold the same names.)
    rows = [row for row in _rows(r.stdout, HELD_NAME) if f" {pid}:" in row]
    assert len(rows) == 1
    assert not [row for row in _rows(r.stdout, MAPPED_NAME) if f" {pid}:" in row]

    r = run(plain("ps"))
    assert r.status == 0, r.stderr
    _text_ok(r.stdout + r.stderr)
    row = [line for line in r.stdout.splitlines() if f"p:{pid} " in line]
    assert len(row) == 1 and row[0].endswith(escape_terminal(decode_name(ARG)))


def test_text_views_escape_hostile_names(hostile, unguarded):
    pid = hostile
    _check_text_views(unguarded, pid, [])
    r = unguarded(["vmaps", str(pid)])
    assert r.status == 0, r.stderr
    _text_ok(r.stdout + r.stderr)
    assert any(line.endswith(f"'{escape_terminal(MAPPED_NAME)}'")
               for line in r.stdout.splitlines())


def test_json_views_keep_hostile_names_whole(hostile, unguarded):
    pid = hostile
    for args, names in (
        (["vmos", "--json", str(pid)], {HELD_NAME, MAPPED_NAME}),
        (["k", "vmos", str(pid), "--json"], {HELD_NAME, MAPPED_NAME}),
        (["k", "vmos", "hidden", "--json"], {HELD_NAME}),
        (["vmaps", "--json", str(pid)], {MAPPED_NAME}),
        (["ps", "--json"], {decode_name(COMM)}),
    ):
        r = unguarded(args)
        assert r.status == 0, (args, r.stderr)
        strings = set(_strings(_json_ok(r.stdout)))
        assert names <= strings, args
    doc = _json_ok(unguarded(["ps", "--json"]).stdout)
    assert any(decode_name(ARG) in s for s in _strings(doc))


def test_memgraph_round_trip(hostile, unguarded, tmp_path):
    pid = hostile
    r = unguarded(["memgraph", "-v", "--hidden"])
    assert r.status == 0, r.stderr
    doc = _json_ok(r.stdout)
    strings = set(_strings(doc))
    assert {HELD_NAME, MAPPED_NAME, decode_name(COMM)} <= strings
    path = tmp_path / "snap.json"
    path.write_text(r.stdout)
    _check_text_views(unguarded, pid, ["--from", str(path)])
    live = _json_ok(unguarded(["vmos", "--json", str(pid)]).stdout)
    saved = _json_ok(unguarded(["vmos", "--json", "--from", str(path), str(pid)]).stdout)
    assert [v["name"] for v in saved["vmos"]] == [v["name"] for v in live["vmos"]]
    assert saved["name"] == live["name"]


def test_program_stdout_has_no_raw_controls(hostile):
    """The real program (SafeWriter on), its stdout bytes as a terminal gets them."""
    pid = hostile
    for args in (["vmos", str(pid)], ["k", "vmos", "hidden"]):
        out = subprocess.run([sys.executable, "-m", "zxmem", *args], capture_output=True,
                             timeout=120)
        assert out.returncode == 0, out.stderr
        text = out.stdout.decode("utf-8")  # strict: no raw invalid UTF-8 either
        _text_ok(text)
        assert escape_terminal(HELD_NAME) in text


@pytest.fixture
def hostile_tmpfs_file(tmp_path, request) -> bytes:
    """A file with a hostile name on a tmpfs mounted at a hostile path."""
    if os.geteuid() != 0:
        pytest.skip("not root: cannot mount a tmpfs for the test")
    mnt = os.fsencode(tmp_path) + b"/mnt\x1b[2J\xff"
    os.mkdir(mnt)
    r = subprocess.run([b"mount", b"-t", b"tmpfs", b"-o", b"size=4m", b"zxmem-test", mnt],
                       capture_output=True)
    if r.returncode != 0:
        pytest.skip(f"mount -t tmpfs failed: {r.stderr.decode(errors='replace').strip()}")
    request.addfinalizer(lambda: subprocess.run([b"umount", b"-l", mnt], check=False))
    path = mnt + b"/file\x9b\xfe\n\tend"
    with open(path, "wb") as f:
        f.write(b"t" * 8192)
    return path


def test_tmpfs_paths_shown_by_the_one_rule(hostile_tmpfs_file, unguarded):
    name = decode_name(hostile_tmpfs_file)
    r = unguarded(["k", "vmos", "hidden"])
    assert r.status == 0, r.stderr
    _text_ok(r.stdout + r.stderr)
    assert len(_rows(r.stdout, name)) == 1
    r = unguarded(["k", "vmos", "hidden", "--json"])
    assert r.status == 0, r.stderr
    doc = _json_ok(r.stdout)
    assert [v["path"] for v in doc["vmos"] if v["name"] == name] == [name]


THREADED = r"""
import sys, threading
def run():
    print("ready", threading.get_native_id(), flush=True)
    sys.stdin.read()
t = threading.Thread(target=run, daemon=True)
t.start()
t.join()
"""


def test_share_names_a_thread_id_as_a_thread(cli):
    """``share TID`` of a running thread: the thread of its process, as vmaps says."""
    proc, words = _start([sys.executable, "-I", "-S", "-c", THREADED])
    try:
        tid = int(words[1])
        assert tid != proc.pid and os.path.isdir(f"/proc/{tid}")
        for cmd in (["share"], ["vmaps"]):
            r = cli([*cmd, str(tid)])
            assert r.status == 1, cmd
            assert r.stderr == f"zxmem: {tid} is a thread of process {proc.pid}\n", cmd
    finally:
        _stop(proc)
