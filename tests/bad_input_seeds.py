"""Valid documents of every input format, small, for the bad-input tests to damage.

* ``zxmem_graph()``: ``zxmem memgraph -v`` of the recorded ``no-smaps-rollup``
  tree (mappings, regions, VMOs, unsized VMOs), cut to ``processes``
  processes so a command over it takes milliseconds;
* ``fuchsia_graph()``: Fuchsia's memgraph (tests/fixtures/memgraph);
* ``capture()``: the real Fuchsia capture, cut to its first processes and the
  VMOs they reach (``None`` when the shared fixtures are missing);
* ``buckets()``: Fuchsia's example bucket file (``None`` likewise).
"""

from __future__ import annotations

import io
import json
from dataclasses import dataclass

from fixture_paths import CAPTURE_DIR, REPO

from zxmem.cli import Environment, main

PROC = REPO / "tests" / "fixtures" / "proc-trees" / "no-smaps-rollup" / "proc"
FUCHSIA_GRAPH = REPO / "tests" / "fixtures" / "memgraph" / "fuchsia_illustrative.json"
CAPTURE = CAPTURE_DIR / "test_snapshot.json"
BUCKETS = CAPTURE_DIR / "example_buckets.json"


@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


def run(args: list[str], stdin=None) -> Result:
    """The CLI in-process; an exception (a traceback) propagates to the test."""
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, stdout_isatty=False)
    if stdin is not None:
        env.stdin = stdin
    status = main(args, env)
    return Result(status, out.getvalue(), err.getvalue())


def zxmem_graph(processes: int | None = None) -> list:
    r = run(["memgraph", "-v", "--proc-root", str(PROC)])
    assert r.status == 0, r.stderr
    doc = json.loads(r.stdout)
    if processes is None:
        return doc
    keep = [rec["koid"] for rec in doc if rec.get("type") == "p"][:processes]
    return [rec for rec in doc if rec.get("type") not in ("p", "t")
            or (rec["type"] == "p" and rec["koid"] in keep)
            or (rec["type"] == "t" and int(rec["parent"][2:]) in keep)]


def fuchsia_graph() -> list:
    return json.loads(FUCHSIA_GRAPH.read_text())


def capture(processes: int = 4) -> dict | None:
    if not CAPTURE.exists():
        return None
    doc = json.loads(CAPTURE.read_text())
    cap = doc["Capture"] if "Capture" in doc else doc
    procs = cap["Processes"]
    header = [procs[0]] if procs and all(isinstance(c, str) for c in procs[0]) else []
    rows = procs[len(header):][:processes]
    vmos = cap["Vmos"]
    vheader = [vmos[0]] if vmos and all(isinstance(c, str) for c in vmos[0]) else []
    by_koid = {row[0]: row for row in vmos[len(vheader):]}
    wanted: set[int] = set()
    for row in rows:
        for k in row[2]:
            while k in by_koid and k not in wanted:
                wanted.add(k)
                k = by_koid[k][2]
    cap["Processes"] = header + rows
    cap["Vmos"] = vheader + [r for r in vmos[len(vheader):] if r[0] in wanted]
    return doc


def buckets() -> list | None:
    return json.loads(BUCKETS.read_text()) if BUCKETS.exists() else None
