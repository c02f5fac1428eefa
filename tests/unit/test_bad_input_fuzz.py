"""Property-based search for input that escapes the one-line-error rule.

Valid documents of each input format (tests/bad_input_seeds.py) are damaged
at random places: a value replaced by a string, a negative or huge integer,
a float, NaN, an array, an object or null; a key deleted; a record or row
duplicated.  Whatever comes out, every command must exit 0 or 1 without a
traceback, say exactly one line on stderr when it fails, and print output
valid for the command when it succeeds.  Mutating real documents reaches
the field checks far more often than random JSON does.

Bounded and reproducible: 200 examples per format, derandomized, no example
database (so CI runs the same examples every time).
"""

from __future__ import annotations

import copy
import json
import math
import re

import pytest
from bad_input_seeds import buckets, capture, fuchsia_graph, run, zxmem_graph
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

SETTINGS = settings(max_examples=200, deadline=None, derandomize=True, database=None,
                    suppress_health_check=list(HealthCheck))

# Terminal-unsafe characters: C0 controls but tab and newline, DEL, C1.
_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f-\x9f]")

BAD_VALUES = st.one_of(
    st.text(max_size=8),
    st.sampled_from(["", "4096", "-1", "\udc80", "\x1b[2J", "p/", "j/x", "kernel/"]),
    st.integers(min_value=-(2**70), max_value=-1),
    st.integers(min_value=2**63, max_value=2**70),
    st.sampled_from([0, 1, 2**64 - 1, 2**64]),
    st.floats(allow_nan=True, allow_infinity=True),
    st.sampled_from([math.nan, math.inf, -math.inf, True, False, None]),
    st.lists(st.integers(min_value=-2, max_value=3), max_size=3),
    st.dictionaries(st.sampled_from(["koid", "name", "type", "x"]),
                    st.integers(min_value=-1, max_value=2), max_size=2),
)


def _paths(doc, prefix=()) -> list[tuple]:
    """Every place in ``doc`` (as a key path), containers included."""
    out = [prefix]
    if isinstance(doc, dict):
        for k, v in doc.items():
            out.extend(_paths(v, prefix + (k,)))
    elif isinstance(doc, list):
        for i, v in enumerate(doc):
            out.extend(_paths(v, prefix + (i,)))
    return out


def _at(doc, path):
    for key in path:
        doc = doc[key]
    return doc


@st.composite
def mutated(draw, seed):
    """``seed`` with one to three places damaged."""
    doc = copy.deepcopy(seed)
    paths = _paths(doc)
    for _ in range(draw(st.integers(min_value=1, max_value=3))):
        path = paths[draw(st.integers(min_value=0, max_value=len(paths) - 1))]
        try:
            _at(doc, path)
        except (KeyError, IndexError, TypeError):
            continue  # an earlier change removed it
        if not path:
            continue
        parent, key = _at(doc, path[:-1]), path[-1]
        how = draw(st.sampled_from(["replace", "replace", "replace", "delete", "duplicate"]))
        if how == "replace":
            parent[key] = draw(BAD_VALUES)
        elif how == "delete":
            del parent[key]
        elif isinstance(parent, list):
            parent.insert(key, copy.deepcopy(parent[key]))
        else:
            parent[key] = [copy.deepcopy(parent[key])] * 2
    return doc


def _check(args: list[str], json_output: bool) -> None:
    r = run(args)  # a traceback fails the test here
    assert r.status in (0, 1), (args, r.status, r.stderr)
    assert not _CONTROL.search(r.stdout + r.stderr), (args, r.stdout[:300], r.stderr)
    (r.stdout + r.stderr).encode("utf-8")  # no lone surrogate escapes
    if r.status == 1:
        lines = r.stderr.splitlines()
        assert len(lines) == 1 and lines[0].startswith("zxmem: "), (args, r.stderr)
        assert r.stdout == "", (args, r.stdout[:300])
    else:
        for line in r.stderr.splitlines():
            assert line.startswith("zxmem"), (args, r.stderr)
        if json_output:
            json.loads(r.stdout)
        else:
            assert r.stdout.endswith("\n"), (args, r.stdout[-100:])
            assert "nan" not in r.stdout.lower().replace("nanny", ""), r.stdout[:300]


def _commands(pid: int, buckets_path: str | None) -> list[tuple[list[str], bool]]:
    digest = ["digest"] + (["--buckets", buckets_path] if buckets_path else [])
    return [(["ps"], False), (["ps", "--json"], True), (["ps", "-T"], False),
            (["vmos", str(pid)], False), (["vmaps", str(pid)], False),
            (["mem"], False), (["mem", "--json"], True), (digest, False),
            (digest + ["--json"], True), (["memgraph"], True), (["kstats", "-m"], False),
            (["k", "vmos", "all"], False), (["treemap"], False)]


def _write(tmp_path, doc, name: str = "in.json") -> str:
    path = tmp_path / name
    path.write_text(json.dumps(doc))  # NaN and Infinity as Python writes them
    return str(path)


def _fuzz(tmp_path_factory, seed: list | dict, pid: int, buckets_needed: bool) -> None:
    tmp = tmp_path_factory.mktemp("fuzz")
    bucket_file = _write(tmp, buckets(), "buckets.json") if buckets_needed else None
    commands = _commands(pid, bucket_file)

    @SETTINGS
    @given(doc=mutated(seed), which=st.lists(st.integers(min_value=0, max_value=len(commands) - 1),
                                             min_size=2, max_size=2, unique=True))
    def check(doc, which):
        path = _write(tmp, doc)
        for i in which:
            args, json_output = commands[i]
            _check(args + ["--from", path], json_output)

    check()


def _first_pid(doc: list) -> int:
    return next(r["koid"] for r in doc if isinstance(r, dict) and r.get("type") == "p")


def test_zxmem_memgraph(tmp_path_factory):
    seed = zxmem_graph(processes=1)
    _fuzz(tmp_path_factory, seed, _first_pid(seed), buckets_needed=False)


def test_fuchsia_memgraph(tmp_path_factory):
    if buckets() is None:
        pytest.skip("no Fuchsia bucket file in the shared fixtures")
    seed = fuchsia_graph()
    _fuzz(tmp_path_factory, seed, _first_pid(seed), buckets_needed=True)


def test_fuchsia_capture(tmp_path_factory):
    seed = capture(processes=3)
    if seed is None:
        pytest.skip("no Fuchsia capture in the shared fixtures")
    cap = seed.get("Capture", seed)
    _fuzz(tmp_path_factory, seed, cap["Processes"][1][0], buckets_needed=True)


def test_bucket_files(tmp_path_factory):
    seed = buckets()
    if seed is None:
        pytest.skip("no Fuchsia bucket file in the shared fixtures")
    tmp = tmp_path_factory.mktemp("fuzz")
    graph = _write(tmp, zxmem_graph(processes=1), "graph.json")

    @SETTINGS
    @given(doc=mutated(seed), as_json=st.booleans())
    def check(doc, as_json):
        path = _write(tmp, doc, "buckets.json")
        _check(["digest", "--buckets", path, "--from", graph] + (["--json"] if as_json else []),
               as_json)

    check()
