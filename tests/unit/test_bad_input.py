"""Malformed input: one line naming the file, record and field; exit 1.

Each case here failed before the fix that made it a one-line error (a
traceback, a kernel OOM kill, or a wrong number printed silently).  The
property-based search over mutated documents is in test_bad_input_fuzz.py.
"""

from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from fixture_paths import CAPTURE, REPO

from zxmem.sources.load import load_snapshot

PROC = REPO / "tests" / "fixtures" / "proc-trees" / "no-smaps-rollup" / "proc"
COMMANDS = (["ps"], ["ps", "--json"], ["mem"], ["memgraph"], ["digest"])


@pytest.fixture(scope="module")
def graph(request) -> list:
    """zxmem memgraph -v of a recorded tree: mappings, regions, VMOs."""
    from conftest import run_cli

    r = run_cli(["memgraph", "-v", "--proc-root", str(PROC)])
    assert r.status == 0, r.stderr
    return json.loads(r.stdout)


def _write(tmp_path: Path, doc, name: str = "bad.json") -> str:
    path = tmp_path / name
    if isinstance(doc, bytes):
        path.write_bytes(doc)
    else:
        path.write_text(doc if isinstance(doc, str) else json.dumps(doc))
    return str(path)


def _one_error(cli, path: str, *needles: str, commands=COMMANDS) -> None:
    """Every command exits 1 with one stderr line naming the file and ``needles``."""
    for command in commands:
        r = cli(command + ["--from", path])
        assert r.status == 1, (command, r.status, r.stderr, r.stdout[:200])
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        assert len(lines) == 1, (command, r.stderr)
        assert lines[0].startswith(f"zxmem: {path}: "), lines[0]
        for needle in needles:
            assert needle in lines[0], (needle, lines[0])


def _first(doc: list, rtype: str, has: str | None = None) -> dict:
    return next(r for r in doc if r.get("type") == rtype
                and (has is None or has in r or has in r.get("linux", {})))


# --- sizes ----------------------------------------------------------------


def test_bucket_file_from_dev_zero_is_bounded(cli, tmp_path, graph, monkeypatch):
    path = _write(tmp_path, graph)
    r = cli(["digest", "--buckets", "/dev/zero", "--from", path])
    assert r.status == 1
    assert r.stderr == ("zxmem: /dev/zero: larger than 16777216 bytes, zxmem's input limit "
                        "(set ZXMEM_MAX_INPUT_BYTES to a larger number of bytes to read it)\n")
    monkeypatch.setenv("ZXMEM_MAX_INPUT_BYTES", "1000")
    r = cli(["digest", "--buckets", "/dev/zero", "--from", path])
    assert r.status == 1 and "larger than 1000 bytes" in r.stderr


def test_endless_stdin_is_bounded(cli, monkeypatch):
    class Endless(io.RawIOBase):
        """An endless array of records, or one endless string."""

        def __init__(self, head: bytes, body: bytes) -> None:
            self.head, self.body = head, body

        def readable(self) -> bool:
            return True

        def readinto(self, b) -> int:
            data = self.head or self.body * (len(b) // len(self.body) or 1)
            self.head = b""
            n = min(len(b), len(data))
            b[:n] = data[:n]
            return n

    monkeypatch.setenv("ZXMEM_MAX_INPUT_BYTES", str(4 << 20))
    for head, body in ((b"[\n", b'{"type": "x"},\n'), (b'[{"type": "x", "name": "', b"a"),
                       (b"[", b"[1, "), (b'{"Kernel": {}, "Processes": [', b"[1, ")):
        stdin = io.TextIOWrapper(io.BufferedReader(Endless(head, body)))
        r = cli(["ps", "--from", "-"], stdin=stdin)
        assert r.status == 1
        assert r.stderr.endswith(": larger than 4194304 bytes, zxmem's input limit (set "
                                 "ZXMEM_MAX_INPUT_BYTES to a larger number of bytes to read it)\n")
        assert r.stderr.count("\n") == 1


def test_limit_is_the_environment_variable(tmp_path, graph, monkeypatch):
    path = _write(tmp_path, graph)
    size = Path(path).stat().st_size
    monkeypatch.setenv("ZXMEM_MAX_INPUT_BYTES", str(size))
    assert load_snapshot(path).processes  # exactly the limit is fine
    monkeypatch.setenv("ZXMEM_MAX_INPUT_BYTES", str(size - 1))
    with pytest.raises(Exception, match=f"larger than {size - 1} bytes"):
        load_snapshot(path)
    monkeypatch.setenv("ZXMEM_MAX_INPUT_BYTES", "-5")
    with pytest.raises(Exception, match="ZXMEM_MAX_INPUT_BYTES='-5': expected a positive"):
        load_snapshot(path)


def test_limit_is_documented(cli):
    for command in (["ps", "--help"], ["digest", "--help"]):
        assert "ZXMEM_MAX_INPUT_BYTES" in cli(command).stdout
    assert "ZXMEM_MAX_INPUT_BYTES" in (REPO / "README.md").read_text()


# --- numbers --------------------------------------------------------------


def test_five_thousand_digit_integer(cli, tmp_path, graph):
    text = json.dumps(graph).replace('"koid": 1,', '"koid": ' + "9" * 5000 + ",", 1)
    assert "9" * 5000 in text
    _one_error(cli, _write(tmp_path, text), "5000 digits")
    cap = json.loads(CAPTURE.read_text()) if CAPTURE.exists() else {"Kernel": {}, "Processes": []}
    text = json.dumps(cap).replace('"Processes": [', '"Processes": [[' + "7" * 5000 + ', "x", []],',
                                   1)
    _one_error(cli, _write(tmp_path, text, "cap.json"), "5000 digits")
    buckets = _write(tmp_path, '[{"name": "a", "process": ' + "1" * 5000 + "}]", "b.json")
    r = cli(["digest", "--buckets", buckets, "--from", _write(tmp_path, graph)])
    assert r.status == 1 and r.stderr.startswith(f"zxmem: {buckets}: ")
    assert r.stderr.count("\n") == 1
