"""Review fixes: input handling, option parsing and totals that must not
hide unknown values (each test fails without its fix)."""

from __future__ import annotations

import json
from pathlib import Path
from types import MappingProxyType

import pytest

from zxmem.model import Job, Process, Provenance, Snapshot, Vmo, VmoRef


def _snap(vmos: list[Vmo], procs: list[Process] | None = None, kernel=None,
          source: str = "linux", hidden: tuple[int, ...] = ()) -> Snapshot:
    return Snapshot(
        provenance=Provenance(source=source),
        jobs=(Job(1, "root", 0),),
        processes=tuple(procs or ()),
        kernel=kernel,
        vmos=MappingProxyType({v.koid: v for v in vmos}),
        hidden_vmo_koids=hidden,
    )


def _proc(koid: int, *vmo_koids: int, name: str = "p") -> Process:
    return Process(koid=koid, name=name, job_koid=1,
                   vmo_refs=tuple(VmoRef(k, ("MAPPING",)) for k in vmo_koids))


# --- kstats -d: non-finite or absurd delays are usage errors (exit 2) -------

@pytest.mark.parametrize("value", ["inf", "1e30", "nan", "-inf", "86401"])
def test_kstats_delay_rejects_non_finite_and_absurd(cli, value):
    # -n 1: no wait, so without the check this returns instead of sleeping
    r = cli(["kstats", "-m", "-d", value, "-n", "1"])
    assert r.status == 2
    assert "-d" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_kstats_delay_accepts_a_day():
    from zxmem.commands.kstats import _positive

    assert _positive("-d")("86400") == 86400.0
    assert _positive("-d")("0.5") == 0.5


# --- k vmos hidden: the total covers the unattributed Shmem row -------------

def test_kvmos_hidden_total_includes_unattributed_row():
    from zxmem.sources.hidden import REMAINDER_KOID, REMAINDER_NAME
    from zxmem.views.kvmos import render_hidden

    mib = 1 << 20
    rest = Vmo(koid=REMAINDER_KOID, name=REMAINDER_NAME, kind="shmem",
               size_bytes=18 * mib, committed_bytes=18 * mib)
    sysv = Vmo(koid=7, name="SYSV00000001", kind="sysv", size_bytes=2 * mib,
               committed_bytes=mib)
    only_rest = render_hidden(_snap([rest], hidden=(REMAINDER_KOID,)), "M")
    assert only_rest.splitlines()[-1] == \
        "  total: 0 VMOs + [unattributed Shmem], size 18M, alloc 18M"
    both = render_hidden(_snap([sysv, rest], hidden=(7, REMAINDER_KOID)), "M")
    assert both.splitlines()[-1] == \
        "  total: 1 VMOs + [unattributed Shmem], size 20M, alloc 19M"


# --- plain 'k': a usage error, on stderr ------------------------------------

def test_plain_k_prints_usage_to_stderr(cli):
    r = cli(["k"])
    assert r.status == 2
    assert r.stdout == ""
    assert "usage: zxmem k" in r.stderr


# --- deeply nested JSON: one line naming the byte, exit 1 -------------------

DEPTH = 100_000


@pytest.fixture
def deep_files(tmp_path):
    arr = tmp_path / "deep-array.json"
    arr.write_text("[" * DEPTH + "]" * DEPTH + "\n")
    obj = tmp_path / "deep-object.json"
    obj.write_text('{"a":' * DEPTH + "1" + "}" * DEPTH + "\n")
    # zxmem's own layout: one record a line, a record too deep.
    lines = tmp_path / "deep-line.json"
    lines.write_text('[\n' + '{"x":' + "[" * DEPTH + "]" * DEPTH + "}\n]\n")
    return arr, obj, lines


@pytest.mark.parametrize("argv", [["ps"], ["vmos", "1"], ["mem"], ["digest", "--buckets",
                                                                    "{buckets}"],
                                   ["treemap"], ["kstats", "-m"], ["k", "vmos", "hidden"]])
def test_every_from_command_reports_deep_nesting(cli, deep_files, tmp_path, argv):
    buckets = tmp_path / "b.json"
    buckets.write_text('[{"name": "All"}]')
    argv = [a.replace("{buckets}", str(buckets)) for a in argv]
    for path in deep_files:
        r = cli([*argv, "--from", str(path)])
        assert r.status == 1, r.stderr
        assert "Traceback" not in r.stderr and "RecursionError" not in r.stderr
        (line,) = r.stderr.splitlines()
        assert f"{path}: nested too deeply at byte " in line


def test_deep_nesting_offset_points_at_the_deepest_level(cli, deep_files):
    arr, obj, lines = deep_files
    r = cli(["ps", "--from", str(arr)])
    assert "at byte 99999:" in r.stderr and f"{DEPTH} levels" in r.stderr
    # Brackets inside strings are not nesting.
    from zxmem.sources.load import nesting_error

    assert nesting_error("f", b'[["[[[[", [1]]]') == \
        "f: nested too deeply at byte 10: arrays or objects 3 levels deep " \
        "(more than zxmem's JSON reader allows)"


def test_digest_buckets_file_deep_nesting(cli, deep_files):
    arr = deep_files[0]
    r = cli(["digest", "--buckets", str(arr)])
    assert r.status == 1
    assert r.stderr.strip().startswith(f"zxmem: {arr}: nested too deeply at byte 99999")


# --- capture importer: byte counts must be 0 .. 2**64 - 1 -------------------

def _capture() -> dict:
    return {"Kernel": {"total": 100, "vmo": 50},
            "Processes": [["koid", "name", "vmos"], [10, "a", [1]]],
            "VmoNames": ["n"],
            "Vmos": [["koid", "name", "parent_koid", "committed_bytes", "allocated_bytes"],
                     [1, 0, 0, 4096, 8192], [2, 0, 0, 4096, 8192]]}


@pytest.mark.parametrize("edit, message", [
    (lambda c: c["Vmos"][2].__setitem__(4, -1),
     "capture Vmos[2]: allocated_bytes -1 is out of range"),
    (lambda c: c["Vmos"][1].__setitem__(3, 2**70),
     f"capture Vmos[1]: committed_bytes {2**70} is out of range"),
    (lambda c: c["Vmos"][1].__setitem__(3, 2**64),
     f"capture Vmos[1]: committed_bytes {2**64} is out of range"),
    (lambda c: c["Kernel"].__setitem__("vmo", -4096),
     "capture Kernel: vmo -4096 is out of range"),
])
def test_capture_rejects_negative_and_absurd_sizes(edit, message):
    from zxmem.errors import InputError
    from zxmem.sources import fuchsia

    doc = _capture()
    edit(doc)
    with pytest.raises(InputError) as info:
        fuchsia.snapshot_from_capture(doc)
    assert str(info.value).startswith(message)


def test_capture_accepts_the_largest_count():
    from zxmem.sources import fuchsia

    doc = _capture()
    doc["Vmos"][1][3] = 2**64 - 1
    assert fuchsia.snapshot_from_capture(doc).vmos[1].committed_bytes == 2**64 - 1


def test_capture_bad_size_via_cli_is_one_line(cli, tmp_path):
    doc = _capture()
    doc["Vmos"][1][3] = -1
    path = tmp_path / "cap.json"
    path.write_text(json.dumps(doc))
    r = cli(["ps", "--from", str(path)])
    assert r.status == 1
    assert r.stderr == f"zxmem: {path}: capture Vmos[1]: committed_bytes -1 is out of " \
                       "range (a byte count is 0 .. 2**64 - 1)\n"


# --- treemap: an empty pipe on stdin falls back to the live system ----------

TREE = Path(__file__).resolve().parents[1] / "fixtures" / "proc-trees" / "cgroup-v1-hybrid" \
    / "proc"


def _payload(html: str) -> dict:
    import re

    return json.loads(re.search(r'id="zxmem-data">(.*?)</script>', html, re.S).group(1))


@pytest.mark.parametrize("data", [b"", b"  \n\n"])
def test_treemap_empty_pipe_draws_the_live_system(cli, data):
    import os

    r_fd, w_fd = os.pipe()
    os.write(w_fd, data)
    os.close(w_fd)
    with os.fdopen(r_fd) as stdin:  # a real pipe, at EOF: 'true | zxmem treemap'
        r = cli(["treemap", "--proc-root", str(TREE)], stdin=stdin)
    assert r.status == 0, r.stderr
    assert r.stderr.splitlines()[0] == \
        "zxmem: standard input is empty: drawing the live system"
    assert _payload(r.stdout)["meta"]["source"] == "linux"


def test_treemap_pipe_with_data_is_still_read(cli, tmp_path):
    import os

    snap = cli(["memgraph", "-v", "--proc-root", str(TREE)])
    assert snap.status == 0, snap.stderr
    r_fd, w_fd = os.pipe()
    pid = os.fork()
    if pid == 0:  # the writer: more than a pipe buffer, so reads interleave
        os.close(r_fd)
        with os.fdopen(w_fd, "w") as w:
            w.write("\n" * 100_000 + snap.stdout)
        os._exit(0)
    os.close(w_fd)
    with os.fdopen(r_fd) as stdin:
        r = cli(["treemap"], stdin=stdin)
    os.waitpid(pid, 0)
    assert r.status == 0, r.stderr
    assert "live system" not in r.stderr
    assert _payload(r.stdout)["meta"]["file"] == "<stdin>"


def test_treemap_help_says_stdin_is_read(cli):
    r = cli(["treemap", "--help"])
    assert "a pipe on stdin is read" in r.stdout and "--from -" in r.stdout


# --- digest: --csv and --json as well as --output ---------------------------

def test_digest_csv_json_aliases(cli, tmp_path):
    src = tmp_path / "cap.json"
    src.write_text(json.dumps(_capture()))
    buckets = tmp_path / "b.json"
    buckets.write_text('[{"name": "N", "vmo": "n"}]')
    args = ["digest", "--from", str(src), "--buckets", str(buckets)]
    assert cli([*args, "--csv"]).stdout == "N, 4096\nOrphaned, -4046\n" \
        "Undigested, 0\n"
    assert cli([*args, "--csv"]).stdout == cli([*args, "--output", "csv"]).stdout
    as_json = cli([*args, "--json"])
    assert as_json.status == 0
    assert json.loads(as_json.stdout) == json.loads(cli([*args, "--output", "json"]).stdout)
    both = cli([*args, "--csv", "--output", "json"])
    assert both.status == 2 and "not allowed" in both.stderr


# --- digest and mem need a snapshot with memory objects ---------------------

@pytest.mark.parametrize("command", ["digest", "mem"])
def test_snapshot_without_vmos_is_an_error(cli, tmp_path, command):
    src = tmp_path / "snap.json"
    made = cli(["memgraph", "--proc-root", str(TREE)])  # no -v: no VMOs
    assert made.status == 0
    src.write_text(made.stdout)
    r = cli([command, "--from", str(src)])
    assert r.status == 1
    assert r.stdout == ""
    assert r.stderr == (f"zxmem: {src}: the snapshot has no memory objects: record it "
                        "with `zxmem memgraph -v`\n")
    # The same words as vmos --from.
    assert cli(["vmos", "--from", str(src), "19901"]).stderr == r.stderr
