"""``zxmem exporter`` and ``zxmem metrics`` on this machine: promtool, a real
Prometheus scraping the exporter, scrapes during a collection, and 1,000
collections in a process of their own."""

from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
import urllib.parse
import urllib.request
from pathlib import Path

import pytest

pytest.importorskip("prometheus_client")

from prometheus_client.parser import text_string_to_metric_families  # noqa: E402

from zxmem.commands import _prom  # noqa: E402
from zxmem.views import metrics as view  # noqa: E402

REPO = Path(__file__).resolve().parents[2]
DASHBOARD = REPO / "contrib" / "grafana-zxmem.json"
MIB = 1 << 20
# Hostile names: quotes, backslashes, newlines, escapes and invalid UTF-8.
HOSTILE_COMM = b'q"\\n\n\xff{x="1"}'
HOSTILE_ARGV0 = b'/tmp/e"vil\\path\nline2\xfe{a="b"} 1'


def _samples(text: str) -> dict[tuple[str, tuple], float]:
    out = {}
    for fam in text_string_to_metric_families(text):
        for s in fam.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def _zxmem(*args: str, **kw) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "zxmem", *args], capture_output=True,
                          timeout=120, cwd=REPO, **kw)


def _promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool not installed (Debian package prometheus; CI installs it)")
    return path


@pytest.mark.live
@pytest.mark.parametrize("group_by", ["comm", "exe"])
def test_promtool_accepts_the_output_with_hostile_names(launcher, group_by):
    promtool = _promtool()
    launcher.start("hold", "--comm", HOSTILE_COMM, argv0=HOSTILE_ARGV0)
    r = _zxmem("metrics", "--group-by", group_by, "--per-pid", "--max-pids", "1000")
    assert r.returncode == 0, r.stderr
    text = r.stdout.decode()
    check = subprocess.run([promtool, "check", "metrics"], input=r.stdout,
                           capture_output=True, timeout=60)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
    got = _samples(text)
    groups = {dict(labels)["group"] for (n, labels) in got if n == "zxmem_processes"}
    want = 'q"\\n\n\\xff{x="1"}' if group_by == "comm" else 'e"vil\\path\nline2\\xfe{a="b"} 1'
    assert want in groups, sorted(groups)
    comms = {dict(labels)["comm"] for (n, labels) in got if n == "zxmem_pid_pss_bytes"}
    assert 'q"\\n\n\\xff{x="1"}' in comms
    om = _zxmem("metrics", "--group-by", group_by, "--openmetrics")
    assert om.returncode == 0 and om.stdout.endswith(b"# EOF\n")


@pytest.mark.live
def test_promtool_accepts_hostile_cgroup_names(launcher, test_cgroup):
    # cgroupfs refuses a newline in a name (EINVAL); quotes, backslashes,
    # braces and invalid UTF-8 it takes.
    promtool = _promtool()
    cg, reason = test_cgroup
    if cg is None:
        pytest.skip(reason)
    hostile = cg.child(os.fsdecode(b'q"\\nx\xff{a="b"} 1'))
    launcher.start("private", str(4 * MIB), cgroup=hostile)
    r = _zxmem("metrics", "--group-by", "cgroup")
    assert r.returncode == 0, r.stderr
    check = subprocess.run([promtool, "check", "metrics"], input=r.stdout,
                           capture_output=True, timeout=60)
    assert check.returncode == 0, (check.stdout + check.stderr).decode()
    got = _samples(r.stdout.decode())
    want = cg.path + '/q"\\nx\\xff{a="b"} 1'  # invalid UTF-8 shown as \xff
    assert got[("zxmem_process_pss_bytes", (("group", want),))] >= 4 * MIB
    assert got[("zxmem_cgroup_pss_bytes", (("cgroup", want),))] >= 4 * MIB
    om = _zxmem("metrics", "--group-by", "cgroup", "--openmetrics")
    assert om.returncode == 0 and om.stdout.endswith(b"# EOF\n")
    parsed = {s.labels.get("cgroup") for fam in om_families(om.stdout.decode())
              for s in fam.samples}
    assert want in parsed


def om_families(text: str) -> list:
    from prometheus_client.openmetrics.parser import text_string_to_metric_families as om

    return list(om(text))


@pytest.mark.live
def test_kernel_kinds_free_and_processes_are_memtotal():
    sampler = _prom.Sampler(view.MetricsOptions(), "/proc", time.monotonic)
    assert sampler.step()
    # The second collection knows whether stacks are vmalloc'ed and skips
    # /proc/vmallocinfo: the kinds must still add up.
    assert sampler._stacks_in_vmalloc is not None
    assert sampler.step()
    got = _samples(view.exposition(sampler.collect()).decode())
    with open("/proc/meminfo") as f:
        mem_total = next(int(x.split()[1]) * 1024 for x in f if x.startswith("MemTotal:"))
    assert got[("zxmem_memory_total_bytes", ())] == mem_total
    kinds = {dict(labels)["kind"]: v for (n, labels), v in got.items()
             if n == "zxmem_kernel_bytes"}
    assert {"unmapped_objects", "slab", "page_tables", "other"} <= set(kinds)
    procs = sum(v for (n, _l), v in got.items() if n == "zxmem_process_pss_bytes")
    assert procs > 0
    assert sum(kinds.values()) + got[("zxmem_memory_free_bytes", ())] + procs == mem_total


@pytest.mark.live
def test_a_scrape_is_answered_while_a_collection_is_blocked(monkeypatch):
    from prometheus_client import CollectorRegistry, start_http_server

    sampler = _prom.Sampler(view.MetricsOptions(), "/proc", time.monotonic)
    assert sampler.step()
    release = threading.Event()
    entered = threading.Event()
    real_collect = _prom.collect

    def blocked(*a, **kw):
        entered.set()
        release.wait(30)
        return real_collect(*a, **kw)

    monkeypatch.setattr(_prom, "collect", blocked)
    registry = CollectorRegistry(auto_describe=False)
    registry.register(sampler)
    server, thread = start_http_server(0, addr="127.0.0.1", registry=registry)
    worker = threading.Thread(target=sampler.step)
    try:
        worker.start()
        assert entered.wait(10)
        start = time.monotonic()
        with urllib.request.urlopen(f"http://127.0.0.1:{server.server_address[1]}/metrics",
                                    timeout=5) as resp:
            text = resp.read().decode()
        latency = time.monotonic() - start
        assert worker.is_alive()  # the collection is still blocked
        got = _samples(text)
        assert got[("zxmem_collections_total", ())] == 1
        assert any(n == "zxmem_process_pss_bytes" for (n, _l) in got)
        assert latency < 2.0, latency
    finally:
        release.set()
        worker.join(30)
        server.shutdown()
        server.server_close()
    assert sampler.collections == 2


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _get(url: str) -> dict:
    with urllib.request.urlopen(url, timeout=5) as resp:
        return json.loads(resp.read())


def _query(base: str, expr: str) -> list:
    doc = _get(f"{base}/api/v1/query?" + urllib.parse.urlencode({"query": expr}))
    assert doc["status"] == "success", doc
    return doc["data"]["result"]


def _start_exporter(*extra: str) -> tuple[subprocess.Popen, int]:
    proc = subprocess.Popen(
        [sys.executable, "-m", "zxmem", "exporter", "--listen", "127.0.0.1:0", *extra],
        cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, text=True)
    line = proc.stderr.readline()  # "zxmem: serving http://127.0.0.1:PORT/metrics ..."
    assert "serving http://127.0.0.1:" in line, line
    return proc, int(line.split("127.0.0.1:")[1].split("/")[0])


def _stop(proc: subprocess.Popen | None) -> None:
    if proc is not None and proc.poll() is None:
        proc.terminate()
        try:
            proc.wait(10)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()


@pytest.mark.live
def test_prometheus_scrapes_the_exporter(launcher, cli, test_cgroup):
    prometheus = shutil.which("prometheus")
    if prometheus is None:
        pytest.skip("prometheus not installed (Debian package prometheus; CI installs it)")
    cg, reason = test_cgroup
    if cg is None:
        pytest.skip(reason)
    # The workload alone in a cgroup of its own: its cgroup's PSS is its own.
    w = launcher.start("private", str(64 * MIB), argv0="zxmem-e2e-private", cgroup=cg)
    cg_label = cg.path
    exporter = server = None
    with tempfile.TemporaryDirectory(prefix="zxmem-prom-") as tmp:
        try:
            exporter, port = _start_exporter("--interval", "1s", "--group-by", "exe")
            prom_port = _free_port()
            config = Path(tmp) / "prometheus.yml"
            config.write_text(
                "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\n"
                "scrape_configs:\n  - job_name: zxmem\n    static_configs:\n"
                f"      - targets: ['127.0.0.1:{port}']\n")
            server = subprocess.Popen(
                [prometheus, f"--config.file={config}", f"--storage.tsdb.path={tmp}/data",
                 f"--web.listen-address=127.0.0.1:{prom_port}"],
                stdout=subprocess.DEVNULL, stderr=open(Path(tmp) / "prom.log", "wb"))
            base = f"http://127.0.0.1:{prom_port}"
            deadline = time.monotonic() + 60
            pss_series: list = []
            while time.monotonic() < deadline:
                try:
                    targets = _get(f"{base}/api/v1/targets")["data"]["activeTargets"]
                    if targets and targets[0]["health"] == "up":
                        pss_series = _query(
                            base, 'zxmem_process_pss_bytes{group="zxmem-e2e-private"}')
                        cg_series = _query(
                            base, f'zxmem_cgroup_pss_bytes{{cgroup="{cg_label}"}}')
                        if pss_series and cg_series and _query(
                                base, "rate(zxmem_collections_total[1m])"):
                            break
                except OSError:
                    pass
                time.sleep(0.5)
            else:
                log = (Path(tmp) / "prom.log").read_text()[-2000:]
                pytest.fail(f"Prometheus did not scrape the exporter in 60 s: {log}")
            # The workload's process group and its cgroup: their PSS within
            # 2% of zxmem ps --json's (the process's, and the job's).
            doc = json.loads(cli(["ps", "--json"]).stdout)
            ps_pss = next(t["pss_bytes"] for t in doc["tasks"]
                          if t["type"] == "p" and t["koid"] == w.pid)
            job_pss = next(t["pss_bytes"] for t in doc["tasks"]
                           if t["type"] == "j" and t["koid"] == cg.koid)
            prom_pss = float(pss_series[0]["value"][1])
            assert abs(prom_pss - ps_pss) <= 0.02 * ps_pss, (prom_pss, ps_pss)
            assert prom_pss >= 64 * MIB
            prom_cg_pss = float(cg_series[0]["value"][1])
            assert abs(prom_cg_pss - job_pss) <= 0.02 * job_pss, (prom_cg_pss, job_pss)
            assert prom_cg_pss >= 64 * MIB
            # The kinds, free memory and the processes are MemTotal, in PromQL.
            diff = _query(base, "sum(zxmem_kernel_bytes) + sum(zxmem_memory_free_bytes)"
                          " + sum(zxmem_process_pss_bytes) - sum(zxmem_memory_total_bytes)")
            assert float(diff[0]["value"][1]) == 0.0, diff
            # Every panel of the shipped dashboard has data.
            dash = json.loads(DASHBOARD.read_text())
            exprs = [t["expr"] for p in dash["panels"] for t in p["targets"]]
            assert len(exprs) >= 8
            for expr in exprs:
                result = _query(base, expr.replace("$instance", ".+"))
                assert result, f"dashboard query returns no data: {expr}"
        finally:
            _stop(server)
            _stop(exporter)
    assert exporter.returncode is not None


@pytest.mark.live
def test_groups_and_cgroups_that_vanish_are_dropped(launcher, test_cgroup):
    cg, reason = test_cgroup
    if cg is None:
        pytest.skip(reason)
    child = cg.child("vanishing")
    name = f"zxmem-vanish-{time.monotonic_ns()}"
    w = launcher.start("private", str(8 * MIB), argv0=name, cgroup=child)
    sampler = _prom.Sampler(view.MetricsOptions(group_by="exe"), "/proc", time.monotonic)
    assert sampler.step()
    got = _samples(view.exposition(sampler.collect()).decode())
    group = ("zxmem_process_pss_bytes", (("group", name),))
    assert got[group] >= 8 * MIB
    assert got[("zxmem_cgroup_pss_bytes", (("cgroup", child.path),))] >= 8 * MIB
    w.stop()
    cg.children.remove(child)
    child.remove()
    assert sampler.step()
    got = _samples(view.exposition(sampler.collect()).decode())
    assert group not in got
    assert not any(dict(labels).get("cgroup") == child.path for (_n, labels) in got)
    assert any(n == "zxmem_cgroup_pss_bytes" for (n, _l) in got)  # the others stay


@pytest.mark.live
def test_the_objects_tier_in_a_child_process():
    """The exporter reads the objects in a short-lived child: the families
    it sends back are this machine's, a failing child is a counted error."""
    import mmap

    name = f"zxmem-exporter-child-{os.getpid()}"
    size = 24 * MIB
    fd = os.memfd_create(name)
    try:
        os.ftruncate(fd, size)
        m = mmap.mmap(fd, size, flags=mmap.MAP_SHARED)
        m.write(b"x" * size)  # every page resident, mapped by this process only
        options = view.MetricsOptions(objects=10_000)
        sampler = _prom.Sampler(options, "/proc", time.monotonic, objects_in_child=True)
        assert sampler.step(), sampler.last_error
        got = _samples(view.exposition(sampler.collect()).decode())
        pss = got[("zxmem_object_pss_bytes", (("kind", "memfd"), ("object", f"memfd:{name}")))]
        assert pss == size
        # The totals came from the same child: this process is among them.
        assert got[("zxmem_processes_unreadable", ())] >= 0
        assert sum(v for (n, _l), v in got.items() if n == "zxmem_process_pss_bytes") >= size
        m.close()
    finally:
        os.close(fd)
    broken = _prom.Sampler(options, "/nonexistent-proc", time.monotonic, objects_in_child=True)
    assert not broken.step()
    assert broken.errors == 1 and "objects collection exited" in (broken.last_error or "")


# The exporter's collect-and-swap step 1,000 times (plus exposition, as a
# scrape would), in a process of its own, on the clock a cli Environment
# gives: RSS flat, series bounded, no traceback.
_LOOP = """
import gc, json, sys, threading
from zxmem.cli import Environment
from zxmem.commands import _prom
from zxmem.views import metrics as view

def rss():
    with open("/proc/self/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                return int(line.split()[1]) * 1024

env = Environment()
options = view.MetricsOptions(max_groups=20, max_cgroups=20, per_pid=True, max_pids=10,
                              objects=5)
# Every 100th collection also reads the objects (the churn's memfds among
# them) in a child, as the exporter does: what comes back must stay bounded.
sampler = _prom.Sampler(options, env.proc_root, env.monotonic, objects_every=100,
                        objects_in_child=True)
marks, series = {}, []
for i in range(1000):
    _prom.run_loop(sampler, 0.0, env.monotonic, env.sleep, threading.Event(), count=1)
    if i % 10 == 0:
        text = view.exposition(sampler.collect()).decode()
        series.append(sum(1 for x in text.splitlines() if x and not x.startswith("#")))
    if i in (99, 549, 999):
        gc.collect()
        marks[i] = rss()
print(json.dumps({"marks": marks, "series": series, "errors": sampler.errors,
                  "collections": sampler.collections, "last_error": sampler.last_error}))
"""


@pytest.mark.live
def test_a_thousand_exporter_collections_stay_flat():
    # About 30 s on a quiet 2-core machine, 3 min while the churn and other
    # test runs compete for the CPUs.
    from test_long_running import RSS_BOUND_BYTES, _Churn

    with _Churn() as churn:
        r = subprocess.run([sys.executable, "-c", _LOOP], capture_output=True, text=True,
                           timeout=900, cwd=REPO)
    assert r.returncode == 0 and "Traceback" not in r.stderr, r.stderr
    out = json.loads(r.stdout)
    assert churn.started > 200, "the workload did not churn"
    assert out["errors"] == 0 and out["collections"] == 1000, out["last_error"]
    marks = {int(k): v for k, v in out["marks"].items()}
    assert marks[999] - marks[99] <= RSS_BOUND_BYTES, marks
    # 5 families x 20 groups + unreadable; per cgroup at most 13 (PSS, USS,
    # swap, charged, limit, 6 memory.events counters, 2 pressure totals) x 20
    # + omitted; 10 PIDs; total, free and at most 20 kernel kinds; 4 of the
    # exporter's own; 5 objects and (other).
    bound = 5 * 20 + 1 + 13 * 20 + 1 + 10 + 2 + 20 + 4 + 6
    assert max(out["series"]) <= bound, max(out["series"])


def test_readme_fleet_rules_and_config_pass_promtool(tmp_path):
    """The recording rules and scrape config README shows are valid."""
    import re

    promtool = _promtool()
    readme = (REPO / "README.md").read_text()
    section = readme.split("## Fleet: Prometheus", 1)[1].split("\n## ", 1)[0]
    blocks = re.findall(r"```yaml\n(.*?)```", section, re.S)
    rules = next(b for b in blocks if b.startswith("groups:"))
    (tmp_path / "rules.yml").write_text(rules)
    r = subprocess.run([promtool, "check", "rules", str(tmp_path / "rules.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
    config = "".join(b for b in blocks if not b.startswith("groups:"))
    config += "rule_files: ['rules.yml']\n"
    (tmp_path / "prometheus.yml").write_text(config)
    r = subprocess.run([promtool, "check", "config", str(tmp_path / "prometheus.yml")],
                       capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stdout + r.stderr
