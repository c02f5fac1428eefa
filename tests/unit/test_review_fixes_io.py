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


# --- mem and digest: unknown committed bytes are never a silent 0 -----------

KIB = 1024


def _unknown_snapshot() -> Snapshot:
    """One process: anon 4K (known), a library's page cache (committed
    unknown, size 8K), [vvar] device memory (committed None: no RAM)."""
    from zxmem.model import KernelStats

    vmos = [
        Vmo(koid=11, name="[heap]", kind="anon", size_bytes=8 * KIB, committed_bytes=4 * KIB),
        Vmo(koid=12, name="/usr/lib/libc.so.6", kind="file", size_bytes=8 * KIB,
            committed_bytes=None),
        Vmo(koid=13, name="[vvar]", kind="phys", size_bytes=16 * KIB, committed_bytes=None),
    ]
    kernel = KernelStats(vmo_bytes=1 << 30, wired_bytes=KIB, total_heap_bytes=KIB,
                         mmu_overhead_bytes=KIB, ipc_bytes=0, other_bytes=KIB,
                         free_bytes=1 << 20)
    return _snap(vmos, [_proc(100, 11, 12, 13, name="app")], kernel=kernel)


def _known_snapshot() -> Snapshot:
    from dataclasses import replace

    snap = _unknown_snapshot()
    vmos = dict(snap.vmos)
    vmos[12] = replace(vmos[12], committed_bytes=8 * KIB)
    return replace(snap, vmos=MappingProxyType(vmos))


def test_summary_keeps_unknowns_out_and_counts_them():
    from zxmem.summary import summarize

    s = summarize(_unknown_snapshot())
    app = s.process(100)
    assert app.sizes.total_bytes == 4 * KIB
    assert (app.unknown_vmos, dict(app.unknown_groups)) == (1, {"[libraries]": 1})
    assert (s.unknown_vmos, s.unknown_size_bytes, s.unknown_unsized) == (1, 8 * KIB, 0)
    kernel = s.processes[0]
    assert kernel.kernel and "vmo" not in kernel.groups  # would absorb the unknown
    assert kernel.unknown_vmos == 1
    # Device memory alone is not unknown, and the kernel's vmo is known again.
    k = summarize(_known_snapshot())
    assert k.unknown_vmos == 0 and k.processes[0].groups["vmo"].total_bytes == \
        (1 << 30) - 12 * KIB


def test_mem_views_mark_partial_sums():
    from zxmem.summary import summarize
    from zxmem.views import mem as view

    snap = _unknown_snapshot()
    s = summarize(snap)
    text = view.render(snap, s, None, 100)
    assert text.splitlines()[1:] == ["app<100> 4K (+1 unknown)", " [heap] 4K",
                                     " [libraries] 0B (+1 unknown)"]
    whole = view.render(snap, s, None)
    assert "kernel<0> 4K (+1 unknown)\n" in whole and " vmo - (+1 unknown)\n" in whole
    assert view.render_csv(s, None).splitlines()[-1] == \
        "# 2 rows leave out 1 VMOs whose committed bytes are unknown (size 8192 bytes)"
    assert view.render_csv(s, None, 100).splitlines()[-1] == \
        "# 1 group rows leave out 1 VMOs whose committed bytes are unknown (size 8192 bytes)"
    # Nothing unknown ([vvar] is device memory): mem's own format, no marks.
    k = summarize(_known_snapshot())
    assert "unknown" not in view.render(snap, k, None) + view.render_csv(k, None)
    assert "#" not in view.render_csv(k, None, 100)


def test_digest_orphaned_is_unknown_with_unknown_vmos():
    from zxmem import digest as dg
    from zxmem.views import digest as view

    specs = dg.parse_buckets([{"name": "Heap", "vmo": r"\[heap\]"}])
    d = dg.compute_digest(_unknown_snapshot(), specs)
    assert d.orphaned_bytes is None and d.orphaned_unknown
    assert (d.unknown_vmos, d.unknown_size_bytes) == (1, 8 * KIB)
    human = view.render_human(d)
    assert "Orphaned: unknown\n" in human
    assert "Total: 8KiB (leaves out 1 VMOs of unknown committed bytes (size 8KiB))" \
        in human
    csv_lines = view.render_csv(d).splitlines()
    assert "Orphaned, " in csv_lines
    assert csv_lines[-1] == "# the rows leave out 1 VMOs of unknown committed bytes " \
                            "(size 8192 bytes)"
    assert json.loads(view.render_json(d, _unknown_snapshot()))["orphaned_bytes"] is None
    # All known (the [vvar] device memory is not unknown): Orphaned is back.
    k = dg.compute_digest(_known_snapshot(), specs)
    assert k.orphaned_bytes == (1 << 30) - 4 * KIB - 8 * KIB and not k.orphaned_unknown
    assert "unknown" not in view.render_human(k) + view.render_csv(k)


@pytest.mark.parametrize("argv", [["mem"], ["mem", "--pid", "100"],
                                  ["digest", "--buckets", "{b}"]])
def test_cli_says_on_stderr_what_is_left_out(cli, tmp_path, argv):
    from zxmem import memgraph

    src = tmp_path / "snap.json"
    src.write_text(memgraph.dumps(_unknown_snapshot()))
    b = tmp_path / "b.json"
    b.write_text('[{"name": "Heap", "vmo": "\\\\[heap\\\\]"}]')
    r = cli([*[a.replace("{b}", str(b)) for a in argv], "--from", str(src)])
    assert r.status == 0, r.stderr
    lines = [x for x in r.stderr.splitlines() if "unknown" in x]
    assert len(lines) == 1 and "1 VMOs whose committed (resident) bytes are unknown " \
        "(size 8K) are left out of the sums" in lines[0]
    assert "counted as 0" not in r.stderr
    known = tmp_path / "known.json"
    known.write_text(memgraph.dumps(_known_snapshot()))
    r = cli([*[a.replace("{b}", str(b)) for a in argv], "--from", str(known)])
    assert r.status == 0 and "unknown" not in r.stderr + r.stdout  # [vvar]: no warning
