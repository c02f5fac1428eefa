"""Malformed input: one line naming the file, record and field; exit 1.

Each case here failed before the fix that made it a one-line error (a
traceback, a kernel OOM kill, or a wrong number printed silently).  The
property-based search over mutated documents is in test_bad_input_fuzz.py.
"""

from __future__ import annotations

import copy
import io
import json
from pathlib import Path

import pytest
from bad_input_seeds import zxmem_graph
from fixture_paths import CAPTURE, REPO

from zxmem.sources.load import load_snapshot

COMMANDS = (["ps"], ["ps", "--json"], ["mem"], ["memgraph"], ["digest"])


@pytest.fixture(scope="module")
def graph() -> list:
    """zxmem memgraph -v of a recorded tree: mappings, regions, VMOs."""
    return zxmem_graph()


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

    monkeypatch.setenv("ZXMEM_MAX_INPUT_BYTES", str(1 << 20))
    for head, body in ((b"[\n", b'{"type": "x"},\n'), (b'[{"type": "x", "name": "', b"a"),
                       (b"[", b"[1, "), (b'{"Kernel": {}, "Processes": [', b"[1, ")):
        stdin = io.TextIOWrapper(io.BufferedReader(Endless(head, body)))
        r = cli(["ps", "--from", "-"], stdin=stdin)
        assert r.status == 1
        assert r.stderr.endswith(": larger than 1048576 bytes, zxmem's input limit (set "
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


# --- fields of zxmem's memgraph -------------------------------------------


def _mutated(graph: list, change) -> list:
    doc = copy.deepcopy(graph)
    change(doc)
    return doc


def _proc_with(doc: list, key: str) -> dict:
    return _first(doc, "p", key)


def _first_sized_vmo(rec: dict) -> dict:
    return next(v for v in rec["vmos"] if "committed_bytes" in v)


@pytest.mark.parametrize("bad, shown", [
    ("4096", '"4096"'), ({"n": 1}, '{"n": 1}'), (-1, "-1"), (2**64, str(2**64)),
    (1.5, "1.5"), (True, "true"), ([1], "[1]"),
])
def test_committed_bytes_of_the_wrong_type(cli, tmp_path, graph, bad, shown):
    doc = _mutated(graph, lambda d: _first_sized_vmo(_proc_with(d, "vmos")).update(
        committed_bytes=bad))
    p = _proc_with(doc, "vmos")
    i = next(i for i, v in enumerate(p["vmos"]) if v.get("committed_bytes") is bad)
    _one_error(cli, _write(tmp_path, doc), f"memgraph record {doc.index(p)} ({p['id']}): "
               f"vmos[{i}]", "committed_bytes", shown, "2**64 - 1")


def test_unsized_vmo_is_named_where_the_file_has_it(cli, tmp_path, graph):
    doc = _mutated(graph, lambda d: _proc_with(d, "unsized_vmos")["linux"]["unsized_vmos"][1][
        1].update(size_bytes="big"))
    _one_error(cli, _write(tmp_path, doc),
               "linux.unsized_vmos[1][1].size_bytes: expected an integer")


def test_region_without_mapping_indices(cli, tmp_path, graph):
    doc = _mutated(graph, lambda d: _proc_with(d, "regions")["linux"]["regions"][0].pop(
        "mapping_indices"))
    _one_error(cli, _write(tmp_path, doc), "linux.regions[0].mapping_indices: missing")


def test_region_index_past_the_mappings(cli, tmp_path, graph):
    def change(d):
        linux = _proc_with(d, "regions")["linux"]
        linux["regions"][0]["mapping_indices"] = [len(linux["mappings"])]
    _one_error(cli, _write(tmp_path, _mutated(graph, change)),
               "linux.regions[0].mapping_indices: ", "is not the index of one")


@pytest.mark.parametrize("value, shown", [
    ("4096", '"4096"'), (-4096, "-4096"), (float("inf"), "inf"), (float("-inf"), "-inf"),
    (float("nan"), "nan"), (None, "null"),
])
def test_mapping_row_values(cli, tmp_path, graph, value, shown):
    from zxmem.memgraph import MAPPING_FIELDS

    column = MAPPING_FIELDS.index("start")  # required: null is wrong too
    doc = _mutated(graph, lambda d: d[d.index(_proc_with(d, "mappings"))]["linux"][
        "mappings"][2].__setitem__(column, value))
    _one_error(cli, _write(tmp_path, json.dumps(doc)),  # NaN/Infinity as Python writes them
               f"linux.mappings[2].start: expected an integer from 0 to 2**64 - 1, found {shown}")


def test_mapping_size_that_would_print_negative(cli, tmp_path, graph):
    from zxmem.memgraph import MAPPING_FIELDS

    def change(d):
        row = _proc_with(d, "mappings")["linux"]["mappings"][1]
        row[MAPPING_FIELDS.index("end")] = row[MAPPING_FIELDS.index("start")] - 4096
    _one_error(cli, _write(tmp_path, _mutated(graph, change)),
               "linux.mappings[1]: end 0x", "is below start")
    neg_rss = _mutated(graph, lambda d: _proc_with(d, "mappings")["linux"]["mappings"][0]
                       .__setitem__(MAPPING_FIELDS.index("rss_bytes"), -4096))
    _one_error(cli, _write(tmp_path, neg_rss, "rss.json"),
               "linux.mappings[0].rss_bytes: expected an integer from 0 to 2**64 - 1, "
               "found -4096")


def test_parent_koid_as_a_list(cli, tmp_path, graph):
    doc = _mutated(graph, lambda d: _proc_with(d, "vmos")["vmos"][0].update(parent_koid=[7]))
    _one_error(cli, _write(tmp_path, doc), ".parent_koid: expected an integer", "found [7]")
    job = _mutated(graph, lambda d: _first(d, "j").setdefault("linux", {}).update(
        parent_koid=[1]))
    _one_error(cli, _write(tmp_path, job, "job.json"), "linux.parent_koid: expected an integer")


@pytest.mark.parametrize("koid", [-5, 2**64, 2**70])
def test_koids_out_of_range(cli, tmp_path, graph, koid):
    doc = _mutated(graph, lambda d: _first(d, "p").update(koid=koid))
    _one_error(cli, _write(tmp_path, doc),
               f"'koid' is {koid}: expected an integer from 0 to 2**64 - 1")


def test_duplicate_process_koids(cli, tmp_path, graph):
    p = _first(graph, "p")
    i = graph.index(p)
    doc = graph[:i + 1] + [dict(p, name="twin")] + graph[i + 1:]
    _one_error(cli, _write(tmp_path, doc),
               f"memgraph record {i + 1} ({p['id']}): process koid {p['koid']} appears twice "
               f"(also record {i})")
    j = _first(graph, "j")
    doc = [j] + graph
    _one_error(cli, _write(tmp_path, doc, "jobs.json"), f"job koid {j['koid']} appears twice")


def test_memory_and_meta_of_the_wrong_shape(cli, tmp_path, graph):
    doc = _mutated(graph, lambda d: _first(d, "p")["linux"].update(memory=[1, 2]))
    _one_error(cli, _write(tmp_path, doc), "linux.memory: expected an object or null")
    doc = _mutated(graph, lambda d: _first(d, "__META")["linux"].update(vmo_holders={"x": [1]}))
    _one_error(cli, _write(tmp_path, doc, "meta.json"), "(__META): linux.vmo_holders: key")
    doc = _mutated(graph, lambda d: _first(d, "__META")["linux"].update(notes="one"))
    _one_error(cli, _write(tmp_path, doc, "notes.json"), "(__META): linux.notes: expected an array")


# --- names ----------------------------------------------------------------


def test_lone_surrogate_in_a_name(cli, tmp_path, graph):
    """Every command prints the name escaped (already so on main; kept as a test)."""
    text = json.dumps(graph).replace('"name": "fixture', '"name": "\\udc80fixture', 1)
    path = _write(tmp_path, text)
    for command in COMMANDS + (["vmos", str(_first(graph, "p")["koid"])],):
        r = cli(command + ["--from", path])
        assert r.status == 0, (command, r.stderr)
        r.stdout.encode("utf-8")  # no lone surrogate reaches the output
        if "--json" in command or command == ["memgraph"]:
            json.loads(r.stdout)


# --- Fuchsia captures -----------------------------------------------------


@pytest.fixture(scope="module")
def capture() -> dict:
    if not CAPTURE.exists():
        pytest.skip(f"no Fuchsia capture at {CAPTURE}")
    return json.loads(CAPTURE.read_text())


def _cap_rows(cap: dict, table: str) -> list:
    return (cap["Capture"] if "Capture" in cap else cap)[table]


def test_capture_buckets_not_an_array(cli, tmp_path, capture):
    doc = dict(capture, Buckets=30) if "Capture" in capture else {"Capture": capture,
                                                                   "Buckets": 30}
    _one_error(cli, _write(tmp_path, doc), "capture Buckets: expected an array", "found 30")


def test_capture_duplicate_and_out_of_range_koids(cli, tmp_path, capture):
    def change(rows_of, table, edit):
        doc = copy.deepcopy(capture)
        edit(_cap_rows(doc, table))
        return doc

    def dup(rows):
        rows.append(copy.deepcopy(rows[-1]))
    doc = change(capture, "Processes", dup)
    n = len(_cap_rows(doc, "Processes")) - 1
    _one_error(cli, _write(tmp_path, doc), f"capture Processes[{n}]: process koid",
               "appears twice")
    doc = change(capture, "Vmos", dup)
    _one_error(cli, _write(tmp_path, doc, "v.json"), "VMO koid", "appears twice")

    def negative(rows):
        rows[-1][0] = -3
    doc = change(capture, "Processes", negative)
    _one_error(cli, _write(tmp_path, doc, "n.json"), "capture Processes[", "found [-3,")


def test_process_of_a_missing_job_is_not_dropped_silently(cli, tmp_path, graph):
    p = _first(graph, "p")
    doc = [r for r in graph if not (r.get("type") == "j" and f"j/{r['koid']}" == p["parent"])]
    _one_error(cli, _write(tmp_path, doc),
               f"memgraph record {doc.index(p)} ({p['id']}): job {p['parent'][2:]} is not in "
               "the file")


def test_job_parents_in_a_cycle(cli, tmp_path, graph):
    doc = copy.deepcopy(graph)
    jobs = [r for r in doc if r.get("type") == "j"]
    jobs[0]["parent"] = jobs[-1]["id"]  # the root now hangs under its own descendant
    _one_error(cli, _write(tmp_path, doc), "job parents form a cycle")


def test_error_quoting_a_name_with_a_newline_is_one_line(cli, tmp_path, graph):
    doc = _mutated(graph, lambda d: d[0].update(id="x\nzxmem: forged", type="kernel"))
    path = _write(tmp_path, doc)
    _one_error(cli, path, "(x\\nzxmem: forged)", commands=[["ps"]])
