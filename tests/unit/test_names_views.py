"""Untrusted names in every view: one escaping rule, no lone surrogates.

A recorded workload (``tests/fixtures/objects/workload``: a memfd held only
by a descriptor, memfds mapped, a clone, a thread stack) is collected with
``memgraph -vtH --hidden``; then every name in the snapshot (process names and
command lines, job names and cgroup paths, object names and paths, mapping
paths, thread names, provenance notes) gets a hostile tail, and the snapshot
is saved and read back with ``--from`` by every command that reads one.  The hostile tail holds what
decode_name makes of ``b"evil\x9b\x1b[2Jname\xff"`` and every kind of
control and format character.

With the CLI's last-line guard (``SafeWriter``) switched off, so that the
views alone are tested: a text view prints no control character but its
own newlines and tabs, and exactly as many lines as with the plain names (a
name's newline never starts a row); JSON output parses, re-encodes as UTF-8
(no lone surrogate) and gives back the hostile names unchanged.  A new
command that reads ``--from`` must be added to the list below.
"""

from __future__ import annotations

import dataclasses
import io
import json
import re
import shutil
from pathlib import Path
from types import MappingProxyType

import pytest

import zxmem.cli as cli_module
from zxmem.cli import Environment, command_modules, main
from zxmem.memgraph import write_memgraph
from zxmem.model import Snapshot
from zxmem.sources.load import load_snapshot
from zxmem.textsafe import SafeWriter, clean_json, clean_text, escape_terminal

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
WORKLOAD = FIXTURES / "objects" / "workload" / "proc"
HIDDEN = FIXTURES / "hidden"
PID = "6475"
STATUS = (
    "Name:\tpython\nUmask:\t0022\nState:\tS (sleeping)\nUid:\t0\t0\t0\t0\n"
    "Gid:\t0\t0\t0\t0\nVmPTE:\t     120 kB\nThreads:\t2\n"
)

# What decode_name makes of b"evil\x9b\x1b[2Jname\xff" plus control and
# format characters that decode fine: ESC, CSI (U+009B), BEL, NUL, DEL,
# CR, LF, TAB, a bidi override and a line separator.
HOSTILE = "|evil\\x9b\x1b[2Jname\\xff\x9b\x07\x00\x7f\r\n\t\u202e\u2028end"

# Everything a terminal may act on except the newline and tab views print.
UNSAFE = re.compile("[\x00-\x08\x0b-\x1f\x7f-\x9f\u200b-\u200f\u2028-\u202e"
                    "\u2060-\u2069\ufeff\ud800-\udfff]")

# (arguments, output kind, whether process or object names are printed).
# Text views print as many lines as with plain names, but for digest and
# mem, which group by name (a name with a newline matches other buckets).
VIEWS = [
    (["ps"], "text", True), (["ps", "-T"], "text", True),
    (["ps", "--style=late"], "text", True), (["ps", "--json"], "json", True),
    (["vmaps", PID], "text", True), (["vmaps", "--extra", PID], "text", True),
    (["vmaps", "--json", PID], "json", True),
    (["vmos", PID], "text", True), (["vmos", "--json", PID], "json", True),
    (["k", "vmos", PID], "text", True), (["k", "vmos", "hidden"], "text", True),
    (["k", "vmos", "all"], "text", True), (["k", "vmos", PID, "--json"], "json", True),
    (["k", "vmos", "hidden", "--json"], "json", True),
    (["k", "vmos", "all", "--json"], "json", True),
    (["k", "ps"], "text", True), (["k", "ps", "--json"], "json", True),
    (["kstats", "-m"], "text", False),
    (["digest"], "grouped", False), (["digest", "--csv"], "grouped", False),
    (["digest", "--json"], "json", True),
    (["mem"], "grouped", True), (["mem", "--csv"], "grouped", True),
    (["mem", "--json"], "json", True),
    (["memgraph", "-vtH", "--hidden"], "json", True),
    (["treemap"], "html", False),
]

# Commands that read no snapshot (share reads page tables live).
# Live only, no --from: share reads the live system; record writes a store;
# exporter and metrics escape names by the exposition format (checked in
# test_metrics_view.py and by promtool in tests/live).  history lists samples
# (no names); diff takes two snapshots (its own test below).
NOT_FROM = {"share", "record", "history", "diff", "exporter", "metrics", "growth"}


def _with_from(args: list[str], path: str) -> list[str]:
    n = 2 if args[0] == "k" else 1
    return [*args[:n], "--from", path, *args[n:]]


def _run(args: list[str]) -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = main(args, Environment(stdout=out, stderr=err, stdout_isatty=False))
    return status, out.getvalue(), err.getvalue()


def _strings(doc) -> list[str]:
    """Every string (keys too) of a loaded JSON document."""
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


def _hostile(value, tail: str):
    """``value`` with ``tail`` after every non-empty name, path and note."""
    if isinstance(value, tuple):
        return tuple(_hostile(v, tail) for v in value)
    if isinstance(value, (dict, MappingProxyType)):
        return MappingProxyType({k: _hostile(v, tail) for k, v in value.items()})
    if not dataclasses.is_dataclass(value):
        return value
    changes = {}
    for f in dataclasses.fields(value):
        v = getattr(value, f.name)
        if f.name in ("name", "path") and isinstance(v, str) and v:
            changes[f.name] = v + tail
        elif f.name in ("cmdline", "notes") and v:
            changes[f.name] = tuple(a + tail for a in v)
        elif isinstance(v, (tuple, dict, MappingProxyType)) or dataclasses.is_dataclass(v):
            changes[f.name] = _hostile(v, tail)
    return dataclasses.replace(value, **changes)


@pytest.fixture(scope="module")
def snapshots(tmp_path_factory) -> tuple[str, str, Snapshot]:
    """The plain and the hostile snapshot saved as memgraph files."""
    import zxmem.memgraph as memgraph

    root = tmp_path_factory.mktemp("tree") / "proc"
    shutil.copytree(WORKLOAD, root, symlinks=True)
    (root / PID / "status").write_text(STATUS)
    (root / PID / "cgroup").write_text("0::/\n")
    shutil.copy(HIDDEN / "linux-6.18" / "proc" / "meminfo", root / "meminfo")
    written: list[Snapshot] = []
    real = memgraph.write_memgraph

    def spy(snapshot, out, **kwargs):
        written.append(snapshot)
        return real(snapshot, out, **kwargs)

    memgraph.write_memgraph = spy
    try:
        status, text, err = _run(["memgraph", "-vtH", "--hidden", "--proc-root", str(root)])
    finally:
        memgraph.write_memgraph = real
    assert status == 0, err
    plain_path = tmp_path_factory.mktemp("plain") / "snap.json"
    plain_path.write_text(text)
    hostile = _hostile(written[0], HOSTILE)
    hostile_path = tmp_path_factory.mktemp("hostile") / "snap.json"
    with open(hostile_path, "w") as f:
        write_memgraph(hostile, f, threads=True, vmos=True, handles=True)
    return str(plain_path), str(hostile_path), hostile


def test_every_snapshot_command_is_checked():
    checked = {args[0] for args, _, _ in VIEWS}
    assert set(command_modules()) - NOT_FROM <= checked


def test_the_hostile_snapshot_has_hostile_names(snapshots):
    _, path, snapshot = snapshots
    loaded = load_snapshot(path)
    p = loaded.process(int(PID))
    assert p.name == snapshot.process(int(PID)).name and p.name.endswith(HOSTILE)
    held = [v for v in loaded.vmos.values() if v.name.startswith("memfd:")]
    assert held and all(v.name.endswith(HOSTILE) for v in held)


@pytest.mark.parametrize("args, kind, names", VIEWS, ids=[" ".join(v[0]) for v in VIEWS])
def test_views_escape_every_name(snapshots, monkeypatch, args, kind, names):
    plain, hostile, _ = snapshots
    # The views alone: no last-line guard.
    monkeypatch.setattr(cli_module, "SafeWriter", lambda stream: stream)
    status, good, err = _run(_with_from(args, plain))
    assert status == 0, err
    status, text, err = _run(_with_from(args, hostile))
    assert status == 0, err
    assert "Traceback" not in err
    assert UNSAFE.search(err) is None, err
    if kind == "json":
        doc = json.loads(text)
        json.dumps(doc, ensure_ascii=False).encode("utf-8")  # no lone surrogate
        if names:
            assert any(HOSTILE in t for t in _strings(doc)), "names lost"
        return
    found = UNSAFE.search(text)
    assert found is None, text[max(0, found.start() - 60):found.end() + 20]
    if kind == "text":
        assert text.count("\n") == good.count("\n")
    if names:
        assert escape_terminal(HOSTILE) in text, "a name is missing or spelt otherwise"


@pytest.mark.parametrize("fmt", ["text", "json"])
@pytest.mark.parametrize("by", ["job", "process", "object"])
def test_diff_escapes_every_name(snapshots, monkeypatch, tmp_path, fmt, by):
    """Every hostile process and object appears (diff against no processes)."""
    from dataclasses import replace

    _, hostile, snapshot = snapshots
    empty = tmp_path / "empty.json"
    with open(empty, "w") as f:
        one = dict(list(snapshot.vmos.items())[:1])  # objects known, but almost none
        write_memgraph(replace(snapshot, processes=(), vmos=one), f, vmos=True)
    monkeypatch.setattr(cli_module, "SafeWriter", lambda stream: stream)
    args = ["diff", "--by", by, str(empty), hostile] + (["--json"] if fmt == "json" else [])
    status, text, err = _run(args)
    assert status == 0, err
    assert UNSAFE.search(err) is None, err
    if fmt == "json":
        doc = json.loads(text)
        json.dumps(doc, ensure_ascii=False).encode("utf-8")  # no lone surrogate
        if by == "process":
            assert any(HOSTILE in t for t in _strings(doc)), "names lost"
        return
    found = UNSAFE.search(text)
    assert found is None, text[max(0, found.start() - 60):found.end() + 20]
    assert text.count("\n") >= 3  # a row was printed (names cut to the width)


def test_lone_surrogates_read_from_json_become_byte_escapes(tmp_path, snapshots):
    """A file with "\\udc9b" escapes (not zxmem's: its output never has them)
    loads as the same text decode_name gives the byte: ``\\x9b``."""
    _, hostile, _ = snapshots
    text = Path(hostile).read_text().replace("|evil", "|\\udc9b\\ud800evil")
    path = tmp_path / "surrogates.json"
    path.write_text(text)
    snapshot = load_snapshot(str(path))
    name = snapshot.process(int(PID)).name
    assert name.startswith("python") and "|\\x9b\\ud800evil" in name
    status, out, err = _run(["ps", "--json", "--from", str(path)])
    assert status == 0, err
    json.dumps(json.loads(out), ensure_ascii=False).encode("utf-8")
    status, out, err = _run(["vmos", "--json", "--from", str(path), PID])
    assert status == 0, err
    json.dumps(json.loads(out), ensure_ascii=False).encode("utf-8")


def test_escape_terminal_spells_surrogates_as_their_bytes():
    raw = b"evil\x9b\x1b[2Jname\xff"
    os_text = raw.decode("utf-8", "surrogateescape")  # as os.readlink(str) gives it
    assert escape_terminal(os_text) == "evil\\x9b\\e[2Jname\\xff"
    assert clean_text(os_text) == "evil\\x9b\x1b[2Jname\\xff"
    assert escape_terminal(clean_text(os_text)) == escape_terminal(os_text)
    assert escape_terminal("a\ud800b") == "a\\ud800b"


def test_clean_json_reaches_keys_and_nested_values():
    doc = json.loads(r'{"k\udcff": [["x\udc9b"], {"y": "\ud83d\ude00\udfff"}]}')
    assert clean_json(doc) == {"k\\xff": [["x\\x9b"], {"y": "\U0001f600\\udfff"}]}


def test_safe_writer_keeps_rows_and_escapes_the_rest():
    out = io.StringIO()
    w = SafeWriter(out)
    w.write("a\tb\n\x1b[2J\x9b\udcff\u202e\n")
    assert out.getvalue() == "a\tb\n\\e[2J\\x9b\\xff\\u202e\n"
    assert w.getvalue() == out.getvalue()  # everything else goes to the stream


def test_safe_writer_ascii_fast_path_escapes_controls_too():
    out = io.StringIO()
    w = SafeWriter(out)
    w.write('{"a": 1}\n')
    w.write("x\x1b[2J\x07\x00\x7f\r\ty\n")
    assert out.getvalue() == '{"a": 1}\nx\\e[2J\\x07\\x00\\x7f\\r\ty\n'
