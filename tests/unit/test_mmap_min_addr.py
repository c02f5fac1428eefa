"""vm.mmap_min_addr in the snapshot: ``memgraph`` writes it under the
``__META`` record's ``linux`` object, ``--from`` reads it back, so ``vmaps
--from`` starts /A and /R where live ``vmaps`` did.  A file without it (a
Fuchsia capture, an older memgraph) gets the kernel's default 0x10000; a
value of the wrong type is one ``zxmem:`` line and exit 1."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
from fixture_paths import REPO

from zxmem.model import DEFAULT_MMAP_MIN_ADDR
from zxmem.sources.load import load_snapshot

TREE = REPO / "tests" / "fixtures" / "proc-trees" / "no-smaps-rollup" / "proc"
PID = "19901"
MIN_ADDR = 0x2000  # not the default, so a fallback cannot pass for the real value


def _tree(tmp_path: Path, min_addr: str | None) -> str:
    """The recorded tree, with ``sys/vm/mmap_min_addr`` holding ``min_addr``
    (none when None)."""
    root = tmp_path / "proc"
    shutil.copytree(TREE, root, symlinks=True)
    if min_addr is not None:
        (root / "sys" / "vm").mkdir(parents=True)
        (root / "sys" / "vm" / "mmap_min_addr").write_text(min_addr)
    return str(root)


def _memgraph(cli, root: str, tmp_path: Path) -> tuple[str, list]:
    r = cli(["memgraph", "-v", "--proc-root", root])
    assert r.status == 0, r.stderr
    path = tmp_path / "mg.json"
    path.write_text(r.stdout)
    return str(path), json.loads(r.stdout)


def _meta(doc: list) -> dict:
    return next(rec for rec in doc if rec.get("type") == "__META")


def _head(text: str) -> list[str]:
    """The /A and /R lines of vmaps."""
    lines = text.splitlines()[:2]
    assert [line[:3] for line in lines] == ["/A ", "/R "], lines
    return lines


def _starts(line: str) -> int:
    return int(line.split()[1].split("-")[0].replace("_", "0"), 16)


def test_recorded_and_read_back(cli, tmp_path):
    root = _tree(tmp_path, f"{MIN_ADDR}\n")
    path, doc = _memgraph(cli, root, tmp_path)
    assert _meta(doc)["linux"]["mmap_min_addr"] == MIN_ADDR
    assert load_snapshot(path).provenance.mmap_min_addr == MIN_ADDR
    live = cli(["vmaps", PID, "--proc-root", root])
    saved = cli(["vmaps", "--from", path, PID])
    assert live.status == saved.status == 0, (live.stderr, saved.stderr)
    assert _head(saved.stdout) == _head(live.stdout)
    assert [_starts(line) for line in _head(saved.stdout)] == [MIN_ADDR, MIN_ADDR]


def test_json_schema_has_it(cli, tmp_path):
    from memgraph_samples import schema_validator

    _, doc = _memgraph(cli, _tree(tmp_path, f"{MIN_ADDR}\n"), tmp_path)
    schema_validator().validate(doc)
    props = schema_validator().schema["definitions"]["meta"]["properties"]["linux"]
    assert props["properties"]["mmap_min_addr"]["type"] == ["integer", "null"]


def test_absent_is_the_kernel_default(cli, tmp_path):
    # An unreadable sysctl: not written; live vmaps took 0x10000 too.
    root = _tree(tmp_path, None)
    path, doc = _memgraph(cli, root, tmp_path)
    assert "mmap_min_addr" not in _meta(doc)["linux"]
    assert load_snapshot(path).provenance.mmap_min_addr is None
    live = cli(["vmaps", PID, "--proc-root", root])
    saved = cli(["vmaps", "--from", path, PID])
    assert _head(saved.stdout) == _head(live.stdout)
    assert [_starts(line) for line in _head(saved.stdout)] == [DEFAULT_MMAP_MIN_ADDR] * 2


def test_older_file_without_it_falls_back(cli, tmp_path):
    # A memgraph written before the field existed: the same file less the key.
    path, doc = _memgraph(cli, _tree(tmp_path, f"{MIN_ADDR}\n"), tmp_path)
    del _meta(doc)["linux"]["mmap_min_addr"]
    old = tmp_path / "old.json"
    old.write_text(json.dumps(doc))
    r = cli(["vmaps", "--from", str(old), PID])
    assert r.status == 0, r.stderr
    assert [_starts(line) for line in _head(r.stdout)] == [DEFAULT_MMAP_MIN_ADDR] * 2


@pytest.mark.parametrize("bad", ["4096", -1, 1.5, True, 2**64, [4096]])
def test_bad_value_is_one_line(cli, tmp_path, bad):
    path, doc = _memgraph(cli, _tree(tmp_path, f"{MIN_ADDR}\n"), tmp_path)
    _meta(doc)["linux"]["mmap_min_addr"] = bad
    bad_path = tmp_path / "bad.json"
    bad_path.write_text(json.dumps(doc))
    for command in (["vmaps", PID], ["ps"], ["memgraph"]):
        r = cli(command + ["--from", str(bad_path)])
        assert r.status == 1, (command, r.stderr)
        assert r.stdout == ""
        lines = r.stderr.splitlines()
        assert len(lines) == 1, r.stderr
        assert lines[0].startswith(f"zxmem: {bad_path}: "), lines[0]
        assert "(__META): linux.mmap_min_addr: expected an integer" in lines[0], lines[0]
