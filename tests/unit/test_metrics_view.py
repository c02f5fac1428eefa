"""zxmem/views/metrics.py: the exporter's families as a pure function of a
snapshot, on recorded /proc trees and hand-made snapshots."""

from __future__ import annotations

import dataclasses
import os
import shutil
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from zxmem.collection import Plan, collect  # noqa: E402
from zxmem.commands import _prom  # noqa: E402
from zxmem.model import Job, MemoryCounts, Process, Provenance, Snapshot  # noqa: E402
from zxmem.sources.kernel import read_kernel_stats_with_notes  # noqa: E402
from zxmem.views import metrics as view  # noqa: E402

FIXTURES = Path(__file__).resolve().parent.parent / "fixtures"
TREES = FIXTURES / "proc-trees"
KERNEL = FIXTURES / "kernel" / "linux-6.18"
KIB = 1024


def _fixture_snapshot(tree: str = "cgroup-v2") -> Snapshot:
    snap = collect(Plan(status=True), proc_root=str(TREES / tree / "proc"))
    kernel, _notes = read_kernel_stats_with_notes(str(KERNEL))
    return dataclasses.replace(snap, kernel=kernel)


def _text(snap: Snapshot, **kw) -> str:
    return view.exposition(view.families(snap, view.MetricsOptions(**kw))).decode()


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _rollup_pss(tree: str, pid: int) -> int:
    """Pss + Private_Hugetlb of a recorded smaps_rollup, read here directly."""
    total = 0
    for line in (TREES / tree / "proc" / str(pid) / "smaps_rollup").read_text().splitlines():
        key, _, rest = line.partition(":")
        if key in ("Pss", "Private_Hugetlb"):
            total += int(rest.split()[0]) * KIB
    return total


# The recorded cgroup-v2 tree: fixture-web (19901) and its forked
# fixture-worker (19940) in /zxmem-fixture/web, fixture-db (19945) and
# fixture-replica (19948) sharing a 16 MiB memfd in /zxmem-fixture/db;
# the kernel counters are the recorded linux-6.18 ones.
EXPECTED_SAMPLES = """\
zxmem_process_pss_bytes{group="fixture-db"} 1.540096e+07
zxmem_process_pss_bytes{group="fixture-replica"} 1.3039616e+07
zxmem_process_pss_bytes{group="fixture-web"} 1.5535104e+07
zxmem_process_pss_bytes{group="fixture-worker"} 6.823936e+06
zxmem_process_uss_bytes{group="fixture-db"} 3.428352e+06
zxmem_process_uss_bytes{group="fixture-replica"} 1.3312e+06
zxmem_process_uss_bytes{group="fixture-web"} 9.936896e+06
zxmem_process_uss_bytes{group="fixture-worker"} 1.490944e+06
zxmem_process_rss_bytes{group="fixture-db"} 3.3841152e+07
zxmem_process_rss_bytes{group="fixture-replica"} 2.8368896e+07
zxmem_process_rss_bytes{group="fixture-web"} 2.7574272e+07
zxmem_process_rss_bytes{group="fixture-worker"} 1.5777792e+07
zxmem_process_swap_pss_bytes{group="fixture-db"} 0.0
zxmem_process_swap_pss_bytes{group="fixture-replica"} 0.0
zxmem_process_swap_pss_bytes{group="fixture-web"} 0.0
zxmem_process_swap_pss_bytes{group="fixture-worker"} 0.0
zxmem_processes{group="fixture-db"} 1.0
zxmem_processes{group="fixture-replica"} 1.0
zxmem_processes{group="fixture-web"} 1.0
zxmem_processes{group="fixture-worker"} 1.0
zxmem_processes_unreadable 0.0
zxmem_cgroup_pss_bytes{cgroup="/"} 5.0799616e+07
zxmem_cgroup_pss_bytes{cgroup="/zxmem-fixture"} 5.0799616e+07
zxmem_cgroup_pss_bytes{cgroup="/zxmem-fixture/db"} 2.8440576e+07
zxmem_cgroup_pss_bytes{cgroup="/zxmem-fixture/web"} 2.235904e+07
zxmem_cgroup_uss_bytes{cgroup="/"} 1.6187392e+07
zxmem_cgroup_uss_bytes{cgroup="/zxmem-fixture"} 1.6187392e+07
zxmem_cgroup_uss_bytes{cgroup="/zxmem-fixture/db"} 4.759552e+06
zxmem_cgroup_uss_bytes{cgroup="/zxmem-fixture/web"} 1.142784e+07
zxmem_cgroup_swap_bytes{cgroup="/"} 0.0
zxmem_cgroup_swap_bytes{cgroup="/zxmem-fixture"} 0.0
zxmem_cgroup_swap_bytes{cgroup="/zxmem-fixture/db"} 0.0
zxmem_cgroup_swap_bytes{cgroup="/zxmem-fixture/web"} 0.0
zxmem_cgroups_omitted 0.0
zxmem_memory_total_bytes 2.5276502016e+10
zxmem_memory_free_bytes 2.0944891904e+10
zxmem_kernel_bytes{kind="unmapped_objects"} 3.73128704e+09
zxmem_kernel_bytes{kind="slab"} 2.27069952e+08
zxmem_kernel_bytes{kind="vmalloc"} 3.1141888e+07
zxmem_kernel_bytes{kind="percpu"} 778240.0
zxmem_kernel_bytes{kind="kreclaimable_other"} 0.0
zxmem_kernel_bytes{kind="kernel_stack"} 0.0
zxmem_kernel_bytes{kind="page_tables"} 1.29028096e+08
zxmem_kernel_bytes{kind="secondary_page_tables"} 0.0
zxmem_kernel_bytes{kind="zswap"} 0.0
zxmem_kernel_bytes{kind="balloon"} 0.0
zxmem_kernel_bytes{kind="other"} 1.6150528e+08
"""


def test_recorded_tree_gives_exact_series():
    text = _text(_fixture_snapshot())
    samples = [line for line in text.splitlines() if not line.startswith("#")]
    assert "\n".join(samples) + "\n" == EXPECTED_SAMPLES
    # Every family has HELP and TYPE lines, the help from zxmem/fields.py.
    assert "# TYPE zxmem_process_pss_bytes gauge" in text
    assert "Proportional set size: each resident page" in text


def test_recorded_values_are_the_kernels_numbers():
    got = _samples(_text(_fixture_snapshot()))
    # A group's PSS is the smaps_rollup Pss (+ Private_Hugetlb) of its process.
    for pid, comm in ((19901, "fixture-web"), (19940, "fixture-worker"),
                      (19945, "fixture-db"), (19948, "fixture-replica")):
        assert got[("zxmem_process_pss_bytes", (("group", comm),))] == _rollup_pss(
            "cgroup-v2", pid)
    # A cgroup's PSS is its processes' (and its children's).
    web = _rollup_pss("cgroup-v2", 19901) + _rollup_pss("cgroup-v2", 19940)
    assert got[("zxmem_cgroup_pss_bytes", (("cgroup", "/zxmem-fixture/web"),))] == web
    # The kernel kinds, free and the processes add up to MemTotal exactly.
    meminfo = dict(line.split(":") for line in (KERNEL / "meminfo").read_text().splitlines())
    mem_total = int(meminfo["MemTotal"].split()[0]) * KIB
    assert got[("zxmem_memory_total_bytes", ())] == mem_total
    kinds = sum(v for (n, _), v in got.items() if n == "zxmem_kernel_bytes")
    procs = sum(v for (n, _), v in got.items() if n == "zxmem_process_pss_bytes")
    assert kinds + got[("zxmem_memory_free_bytes", ())] + procs == mem_total


def test_unreadable_process_is_left_out_and_counted():
    got = _samples(_text(_fixture_snapshot("unreadable-smaps")))
    assert got[("zxmem_processes_unreadable", ())] == 1
    assert ("zxmem_process_pss_bytes", (("group", "fixture-db"),)) not in got
    # Its cgroups' totals (its own and the parents') are unknown: not exported
    # as partial sums; the readable user's cgroup is.
    cgroups = {dict(labels)["cgroup"] for (n, labels) in got if n == "zxmem_cgroup_pss_bytes"}
    assert cgroups == {"/zxmem-fixture/users"}
    assert got[("zxmem_cgroup_pss_bytes", (("cgroup", "/zxmem-fixture/users"),))] == (
        got[("zxmem_process_pss_bytes", (("group", "fixture-user"),))])


HOSTILE = ['q"uote', "back\\slash", "new\nline", "\x1b[2Jesc", "bad\\xff utf8", "{}=,"]


def _snapshot(names: list[str], pss: int = 4096, jobs: tuple[Job, ...] | None = None,
              job_of=lambda i: 1) -> Snapshot:
    jobs = jobs or (Job(1, "/", 0, path="/"),)
    procs = tuple(
        Process(100 + i, name, job_of(i), uid=1000 + i % 3, cmdline=(f"/usr/bin/{name}",),
                memory=MemoryCounts(pss_bytes=pss * (i + 1), private_bytes=pss,
                                    rss_bytes=2 * pss * (i + 1), swap_pss_bytes=0,
                                    swap_bytes=0))
        for i, name in enumerate(names))
    return Snapshot(Provenance(source="linux"), jobs, procs)


def test_hostile_names_are_escaped_and_read_back_unchanged():
    text = _text(_snapshot(HOSTILE), per_pid=True)
    # Each sample is one line: names cannot add lines or end a label early.
    sample_lines = [x for x in text.splitlines() if x.startswith("zxmem_process_pss_bytes")]
    assert len(sample_lines) == len(HOSTILE)
    assert 'group="new\\nline"' in text and 'group="q\\"uote"' in text
    assert 'group="back\\\\slash"' in text
    got = _samples(text)
    for name in HOSTILE:
        assert ("zxmem_process_pss_bytes", (("group", name),)) in got
    pid_names = {dict(labels)["comm"] for (n, labels) in got if n == "zxmem_pid_pss_bytes"}
    assert pid_names == set(HOSTILE)


def test_recorded_hostile_tree_reads_back():
    snap = _fixture_snapshot("hostile-names")
    text = _text(snap, group_by="cgroup")
    got = _samples(text)
    groups = {dict(labels)["group"] for (n, labels) in got if n == "zxmem_processes"}
    assert any("\x1b[31mred" in g for g in groups), groups


def test_groups_past_the_cap_fold_into_other_and_keep_the_sum():
    names = [f"proc{i:03d}" for i in range(300)]
    snap = _snapshot(names)
    got = _samples(_text(snap, max_groups=10))
    pss = {dict(labels)["group"]: v for (n, labels), v in got.items()
           if n == "zxmem_process_pss_bytes"}
    assert len(pss) == 10
    # The nine largest stay, by name; everything else is "(other)".
    assert set(pss) == {f"proc{i:03d}" for i in range(291, 300)} | {view.OTHER_GROUP}
    assert sum(pss.values()) == sum(4096 * (i + 1) for i in range(300))
    count = {dict(labels)["group"]: v for (n, labels), v in got.items()
             if n == "zxmem_processes"}
    assert count[view.OTHER_GROUP] == 291
    # Every family is bounded the same way.
    for name in ("zxmem_process_uss_bytes", "zxmem_process_rss_bytes",
                 "zxmem_process_swap_pss_bytes", "zxmem_processes"):
        assert sum(1 for (n, _l) in got if n == name) == 10


def test_per_pid_and_cgroup_caps():
    jobs = (Job(1, "/", 0, path="/"),) + tuple(
        Job(10 + i, f"cg{i}", 1, path=f"/cg{i}") for i in range(50))
    snap = _snapshot([f"p{i}" for i in range(100)], jobs=jobs, job_of=lambda i: 10 + i % 50)
    got = _samples(_text(snap, per_pid=True, max_pids=7, max_cgroups=5))
    assert sum(1 for (n, _l) in got if n == "zxmem_pid_pss_bytes") == 7
    assert sum(1 for (n, _l) in got if n == "zxmem_cgroup_pss_bytes") == 5
    assert got[("zxmem_cgroups_omitted", ())] == 46
    # Without --per-pid there is no per-PID family at all.
    assert not any(n == "zxmem_pid_pss_bytes" for (n, _l) in _samples(_text(snap)))


def test_unknown_field_is_left_out_not_zero():
    snap = _snapshot(["a", "b"])
    p = snap.processes[1]
    p2 = dataclasses.replace(p, memory=dataclasses.replace(p.memory, swap_pss_bytes=None))
    snap = dataclasses.replace(snap, processes=(snap.processes[0], p2))
    got = _samples(_text(snap))
    assert ("zxmem_process_swap_pss_bytes", (("group", "a"),)) in got
    assert ("zxmem_process_swap_pss_bytes", (("group", "b"),)) not in got
    assert ("zxmem_process_pss_bytes", (("group", "b"),)) in got


@pytest.mark.parametrize("by,expect", [("comm", "x"), ("exe", "x-bin"), ("user", "1000"),
                                       ("cgroup", "/")])
def test_group_by(by, expect):
    p = Process(5, "x", 1, uid=1000, cmdline=("/opt/x-bin", "--flag"),
                memory=MemoryCounts(pss_bytes=8192))
    snap = Snapshot(Provenance(source="linux"), (Job(1, "/", 0, path="/"),), (p,))
    got = _samples(_text(snap, group_by=by))
    assert got[("zxmem_process_pss_bytes", (("group", expect),))] == 8192


def test_vanished_groups_are_dropped_between_samples(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "cgroup-v2", tree, symlinks=True)
    sampler = _prom.Sampler(view.MetricsOptions(), str(tree / "proc"), lambda: 0.0)
    assert sampler.step()
    first = _samples(view.exposition(sampler.collect()).decode())
    assert ("zxmem_process_pss_bytes", (("group", "fixture-replica"),)) in first
    shutil.rmtree(tree / "proc" / "19948")  # fixture-replica exits
    assert sampler.step()
    second = _samples(view.exposition(sampler.collect()).decode())
    assert not any(dict(labels).get("group") == "fixture-replica" for (_n, labels) in second)
    assert ("zxmem_process_pss_bytes", (("group", "fixture-db"),)) in second
    assert second[("zxmem_collections_total", ())] == 2


def test_failed_collection_is_counted_and_the_last_sample_kept(tmp_path):
    tree = tmp_path / "tree"
    shutil.copytree(TREES / "cgroup-v2", tree, symlinks=True)
    sampler = _prom.Sampler(view.MetricsOptions(), str(tree / "proc"), lambda: 0.0)
    assert sampler.step()
    shutil.rmtree(tree / "proc")
    assert not sampler.step()
    got = _samples(view.exposition(sampler.collect()).decode())
    assert got[("zxmem_collection_errors_total", ())] == 1
    assert ("zxmem_process_pss_bytes", (("group", "fixture-db"),)) in got


def test_run_loop_keeps_the_cadence_on_the_given_clock():
    now = [100.0]
    slept: list[float] = []

    class _Fake:
        def step(self) -> bool:
            now[0] += 0.25  # each collection takes 0.25 s
            return True

    def sleep(s: float) -> None:
        slept.append(s)
        now[0] += s

    import threading

    _prom.run_loop(_Fake(), 1.0, lambda: now[0], sleep, threading.Event(), count=4)
    assert slept == [0.75, 0.75, 0.75]


def test_metrics_command_writes_a_file_atomically(tmp_path):
    import io

    from zxmem.cli import Environment, main

    out = tmp_path / "zxmem.prom"
    out.write_text("old\n")
    os.chmod(out, 0o644)
    err = io.StringIO()
    env = Environment(stdout=io.StringIO(), stderr=err)
    status = main(["metrics", "--proc-root", str(TREES / "cgroup-v2" / "proc"),
                   "-o", str(out)], env)
    assert status == 0, err.getvalue()
    text = out.read_text()
    assert 'zxmem_process_pss_bytes{group="fixture-web"} 1.5535104e+07' in text
    assert "zxmem_build_info{version=" in text
    assert oct(out.stat().st_mode & 0o777) == oct(0o644)
    # Without meminfo under the tree there are no kernel series, and it says so.
    assert "zxmem_kernel_bytes" not in text and "kernel records left out" in err.getvalue()


def test_listen_and_interval_parsing():
    from zxmem.commands.exporter import parse_interval, parse_listen

    assert parse_listen("127.0.0.1:9756") == ("127.0.0.1", 9756)
    assert parse_listen(":9756") == ("0.0.0.0", 9756)
    assert parse_listen("9756") == ("127.0.0.1", 9756)
    assert parse_listen("[::1]:80") == ("::1", 80)
    assert parse_interval("15s") == 15.0 and parse_interval("500ms") == 0.5
    assert parse_interval("2m") == 120.0
    import argparse

    for bad in ("host", "1.2.3.4:99999", "::1:80"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_listen(bad)
    for bad in ("0s", "fast", "-1s"):
        with pytest.raises(argparse.ArgumentTypeError):
            parse_interval(bad)


def test_object_families_top_n_hidden_included_and_other():
    from types import MappingProxyType

    from zxmem.model import Mapping, Vmo

    vmos = {
        1: Vmo(1, "/usr/lib/libc.so.6", "file", 2 * 4096, 2 * 4096),
        2: Vmo(2, "[heap]", "anon", 8 * 4096, 8 * 4096),
        3: Vmo(3, "[heap]", "anon", 4 * 4096, 4 * 4096),
        4: Vmo(4, "memfd:hidden", "memfd", 16 * 4096, 16 * 4096, num_mappings=0),
        5: Vmo(5, "/tmp/x", "shmem", 4096, 4096),
    }

    def mapping(koid: int, pss: int) -> Mapping:
        return Mapping(0, 4096, "rw-p", 0, 0, 0, "", koid, pss_bytes=pss)

    procs = (
        Process(10, "a", 1, memory=MemoryCounts(pss_bytes=0),
                mappings=(mapping(1, 4096), mapping(2, 8 * 4096), mapping(5, 100))),
        Process(11, "b", 1, memory=MemoryCounts(pss_bytes=0),
                mappings=(mapping(1, 4096), mapping(3, 4 * 4096))),
    )
    snap = Snapshot(Provenance(source="linux"), (Job(1, "/", 0, path="/"),), procs,
                    vmos=MappingProxyType(vmos), hidden_vmo_koids=(4,))
    fams = view.object_families(snap, top=2)
    got = {tuple(s.labels.values()): s.value for f in fams for s in f.samples}
    # The two [heap] objects merge (12 pages), the hidden memfd has its 16
    # resident pages; libc (2 pages over two mappings) and /tmp/x are "(other)".
    assert got == {("memfd", "memfd:hidden"): 16 * 4096, ("anon", "[heap]"): 12 * 4096,
                   ("other", view.OTHER_GROUP): 2 * 4096 + 100}
    assert view.object_families(snap, top=10)[0].samples[-1].labels["object"] == "/tmp/x"


def test_objects_are_read_every_kth_collection(monkeypatch):
    plans = []
    real = _prom.collect

    def recording(plan, root, warn=None):
        plans.append(plan.objects)
        return real(dataclasses.replace(plan, objects=False, hidden=False,
                                        memory_from_objects=False), root, warn)

    monkeypatch.setattr(_prom, "collect", recording)
    sampler = _prom.Sampler(view.MetricsOptions(objects=3), str(TREES / "cgroup-v2" / "proc"),
                            lambda: 0.0, objects_every=3)
    for _ in range(7):
        assert sampler.step()
        names = {f.name for f in sampler.collect()}
        assert "zxmem_object_pss_bytes" in names  # the last objects sample is served between
    assert plans == [True, False, False, True, False, False, True]


def test_ps_and_help_do_not_load_prometheus_client():
    import subprocess
    import sys

    code = ("import io, sys\n"
            "from zxmem.cli import Environment, main\n"
            "env = Environment(stdout=io.StringIO(), stderr=io.StringIO())\n"
            f"main(['ps', '--proc-root', {str(TREES / 'cgroup-v2' / 'proc')!r}], env)\n"
            "main(['--help'], env)\n"
            "print('prometheus_client' in sys.modules)\n")
    r = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                       timeout=60)
    assert r.returncode == 0, r.stderr
    assert r.stdout.strip() == "False"


@pytest.mark.parametrize("argv, status, line", [
    (["exporter", "--listen", "nowhere"], 2, "--listen 'nowhere'"),
    (["exporter", "--interval", "0s"], 2, "--interval '0s'"),
    (["exporter", "--group-by", "pid"], 2, "--group-by"),
    (["metrics", "--max-pids", "5"], 2, "--max-pids needs --per-pid"),
    (["metrics", "--max-groups", "0"], 2, "--max-groups must be"),
])
def test_bad_arguments_are_one_line(argv, status, line):
    import io

    from zxmem.cli import Environment, main

    err = io.StringIO()
    assert main(argv, Environment(stdout=io.StringIO(), stderr=err)) == status
    assert line in err.getvalue() and "Traceback" not in err.getvalue()


def test_exporter_on_a_taken_port_is_one_line():
    import io
    import socket

    from zxmem.cli import Environment, main

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        s.listen()
        port = s.getsockname()[1]
        err = io.StringIO()
        status = main(["exporter", "--listen", f"127.0.0.1:{port}", "--proc-root",
                       str(TREES / "cgroup-v2" / "proc")],
                      Environment(stdout=io.StringIO(), stderr=err))
    assert status == 1
    assert err.getvalue() == f"zxmem: --listen 127.0.0.1:{port}: Address already in use\n"


def test_cgroup_files_become_series(tmp_path):
    """A recorded v1 tree with the memory controller's files: the charge and
    the events are exported as the files say; an unlimited cgroup has no
    limit series (v1's 'no limit' number is not a limit), and v1 has no
    pressure series (no per-cgroup memory.pressure)."""
    import io

    from zxmem.cli import Environment, main

    src = Path(__file__).resolve().parents[2] / "tests/fixtures/proc-trees/cgroup-v1-charge"
    tree = tmp_path / "tree"
    shutil.copytree(src, tree, symlinks=True)
    app = tree / "sys/fs/cgroup/memory/zxmem-fixture-charge/app"
    (app / "memory.limit_in_bytes").write_text("67108864\n")
    out = io.StringIO()
    env = Environment(stdout=out, stderr=io.StringIO(), stdout_isatty=False)
    assert main(["metrics", "--proc-root", str(tree / "proc")], env) == 0
    series = {(s.name, tuple(sorted(s.labels.items()))): s.value
              for fam in text_string_to_metric_families(out.getvalue()) for s in fam.samples}
    path = (("cgroup", "/zxmem-fixture-charge/app"),)
    assert series[("zxmem_cgroup_charged_bytes", path)] == 105881600
    assert series[("zxmem_cgroup_limit_bytes", path)] == 64 << 20
    assert ("zxmem_cgroup_limit_bytes", (("cgroup", "/zxmem-fixture-charge"),)) not in series
    assert series[("zxmem_cgroup_memory_events_total", path + (("event", "oom_kill"),))] == 0
    assert not [k for k in series if k[0].startswith("zxmem_cgroup_pressure")]
