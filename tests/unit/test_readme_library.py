"""README's library example runs as written against the live system."""

from __future__ import annotations

import contextlib
import io
import re
from pathlib import Path

README = Path(__file__).resolve().parents[2] / "README.md"


def _example() -> str:
    text = README.read_text(encoding="utf-8")
    section = text.split("## Library", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```python\n(.*?)```", section, re.S)
    assert len(blocks) == 1, "README's Library section has one python example"
    return blocks[0]


def test_readme_library_example_runs_and_prints_processes() -> None:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(_example(), str(README), "exec"), {})  # noqa: S102
    lines = out.getvalue().splitlines()
    # Process lines (koid, name, PSS in bytes or None), then the provenance
    # line.  Names are the kernel's and may hold anything, so only the
    # first and last words of a process line are checked.
    assert len(lines) >= 2
    assert lines[0].split(" ")[0].isdigit()
    pss = lines[0].rsplit(" ", 1)[1]
    assert pss == "None" or int(pss) > 0
    assert re.match(r"\d{4}-\d\d-\d\dT", lines[-1])

def test_public_names_are_the_documented_ones() -> None:
    import zxmem

    assert set(zxmem.__all__) == {"Plan", "Snapshot", "collect", "load", "__version__"}
    snap = zxmem.collect(zxmem.Plan(memory=False, jobs="none"))
    assert isinstance(snap, zxmem.Snapshot)
    assert any(p.koid == 1 for p in snap.processes)
