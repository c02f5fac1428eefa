"""``--from FILE``: telling formats apart, streaming, and errors that say where."""

from __future__ import annotations

import io
import json
import re

import pytest
from memgraph_samples import sample_snapshot

from zxmem import memgraph
from zxmem.errors import InputError
from zxmem.sources.load import load_snapshot


def _err(data: bytes | str) -> str:
    stream = io.BytesIO(data.encode() if isinstance(data, str) else data)
    with pytest.raises(InputError) as exc:
        load_snapshot(stream)
    msg = str(exc.value)
    assert "\n" not in msg
    return msg


def _byte(msg: str) -> int:
    m = re.search(r"byte (\d+)", msg)
    assert m, msg
    return int(m.group(1))


def test_reads_paths_binary_and_text_streams(tmp_path):
    snap = sample_snapshot()
    text = memgraph.dumps(snap)
    path = tmp_path / "s.json"
    path.write_text(text)
    assert load_snapshot(str(path)) == snap
    assert load_snapshot(path) == snap
    assert load_snapshot(io.BytesIO(text.encode())) == snap
    assert load_snapshot(io.StringIO(text)) == snap
    assert load_snapshot(io.BytesIO(b"\xef\xbb\xbf\n\n" + text.encode())) == snap  # BOM


def test_any_json_layout_is_accepted():
    snap = sample_snapshot()
    recs = json.loads(memgraph.dumps(snap))
    assert load_snapshot(io.StringIO(json.dumps(recs))) == snap  # one line
    assert load_snapshot(io.StringIO(json.dumps(recs, indent=4))) == snap


def test_zxmem_memgraph_is_streamed():
    # zxmem's layout is read a line at a time: the first records arrive
    # while most of a large input is still unread.
    from zxmem.sources import load

    snap = sample_snapshot()
    body = memgraph.dumps(snap).encode()
    lines = body.split(b"\n")
    filler = b'  {"type": "__PAD", "pad": "' + b"x" * 1000 + b'"},'
    big = b"\n".join([lines[0], *([filler] * 2000), *lines[1:]])  # ~2 MB

    class Counting(io.BytesIO):
        high = 0

        def read(self, n=-1):
            out = super().read(n)
            Counting.high = max(Counting.high, len(out))
            return out

    stream = Counting(big)
    inp = load._Input(stream, "big")
    notes: list[str] = []
    records = load._memgraph_records(inp, notes)
    first = next(records)
    assert first["type"] == "__PAD"
    assert stream.tell() <= 2 * load._CHUNK  # read so far: a chunk or two, not 2 MB
    assert Counting.high <= load._CHUNK
    # and the whole thing still reads, ignoring the unknown records
    back = load_snapshot(io.BytesIO(big))
    assert back.processes == snap.processes
    assert any("2000 records of unknown type" in n for n in back.provenance.notes)


def test_empty_and_not_json():
    assert "empty input" in _err(b"")
    assert "empty input" in _err(b"  \n\t\n")
    msg = _err(b"\n  hello")
    assert "not JSON" in msg and _byte(msg) == 3 and "'h'" in msg
    assert "not JSON" in _err(b'"a string"')


def test_truncated_zxmem_memgraph_names_offset_and_record():
    text = memgraph.dumps(sample_snapshot()).encode()
    lines = text.split(b"\n")
    # cut after the 4th record's line: the array never closes
    cut = b"\n".join(lines[:5]) + b"\n"
    msg = _err(cut)
    assert "truncated" in msg and _byte(msg) == len(cut)
    assert "after record 3" in msg
    # cut in the middle of a record
    cut = text[: len(b"\n".join(lines[:3])) + 40]
    msg = _err(cut)
    assert "truncated" in msg and _byte(msg) == len(cut), msg
    # cut inside a string
    cut = text[: text.index(b'"name": "') + 12]
    msg = _err(cut)
    assert "truncated" in msg and _byte(msg) == len(cut), msg
    assert "inside a string" in msg


def test_invalid_json_names_the_byte():
    data = b'[\n  {"type": "__META"},\n  {"type": oops},\n  {"type": "__META"}\n]\n'
    msg = _err(data)
    assert "invalid JSON" in msg and _byte(msg) == data.index(b"oops")


def test_missing_comma_between_lines():
    data = b'[\n  {"id": "j/1", "type": "j", "koid": 1, "parent": "kernel/vmo", "name": "r"}\n' \
           b'  {"type": "__META"}\n]\n'
    msg = _err(data)
    assert "expected ',' or ']' after record 0" in msg
    assert _byte(msg) == data.index(b'  {"type": "__META"')


def test_data_after_the_array():
    data = memgraph.dumps(sample_snapshot()).encode() + b"junk\n"
    msg = _err(data)
    assert "after the array" in msg and _byte(msg) == data.index(b"junk")


def test_wrong_kind_json_is_rejected_clearly(cli, tmp_path):
    msg = _err(json.dumps({"provenance": {}, "tasks": []}))
    assert "not a memgraph or a Fuchsia capture" in msg and "tasks" in msg
    msg = _err("[1, 2]")
    assert "record 0" in msg and "expected an object" in msg
    buckets = [{"name": "Blobs", "vmo": "blob-.*"}]  # a bucket config, not a memgraph
    msg = _err(json.dumps(buckets))
    assert "record 0" in msg and "'type'" in msg
    assert "no records" in _err("[]")


def test_bad_record_fields_name_the_record():
    recs = json.loads(memgraph.dumps(sample_snapshot()))
    idx = next(i for i, r in enumerate(recs) if r.get("id") == "p/100")
    recs[idx]["koid"] = "100"
    msg = _err(json.dumps(recs))
    assert f"record {idx} (p/100)" in msg and "integer 'koid'" in msg
    recs[idx]["koid"] = 100
    recs[idx]["parent"] = "nowhere"
    msg = _err(json.dumps(recs))
    assert f"record {idx}" in msg and "j/KOID" in msg


def test_cli_from_file_errors(cli, tmp_path):
    r = cli(["ps", "--from", str(tmp_path / "missing.json")])
    assert r.status == 1
    assert r.stderr.count("\n") == 1 and "missing.json" in r.stderr
    bad = tmp_path / "bad.json"
    bad.write_bytes(b"[\n  {")
    r = cli(["ps", "--from", str(bad)])
    assert r.status == 1 and "bad.json" in r.stderr and "byte" in r.stderr
    assert "Traceback" not in r.stderr


def test_cli_from_stdin(cli):
    snap = sample_snapshot()
    r = cli(["ps", "--from", "-"], stdin=io.StringIO(memgraph.dumps(snap)))
    assert r.status == 0, r.stderr
    assert "p:100" in r.stdout
