"""Live: a cgroup's charge, reconciled term by term with workloads of known shape.

In a cgroup the test creates (the v1 memory controller on the test machine,
v2 where that is the job hierarchy), one workload holds 64 MiB of anonymous
memory, has read a 32 MiB file into the page cache without mapping it, maps
a 16 MiB file that the test (another cgroup) brought into the cache first,
and runs 64 extra threads (kernel stacks).  ``ps --explain --exact`` must
find each term where the kernel's own files put it, and its printed terms
must add up to the printed charge.  A second test sets a 64 MiB limit and
has a workload exceed it: the OOM kill is counted in the job's events.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys

import pytest
import workloads
from harness import ps_json
from workloads import MIB, PAGE

THREADS = 64
# The kernel stack of a thread: THREAD_SIZE, 16 KiB on x86_64 and arm64.
THREAD_STACK = 16 << 10


def _write(path: str, size: int) -> None:
    """A file of ``size`` bytes, written back and dropped from the page cache."""
    with open(path, "wb") as f:
        f.write(b"\x5a" * size)
        f.flush()
        os.fsync(f.fileno())
        os.posix_fadvise(f.fileno(), 0, 0, os.POSIX_FADV_DONTNEED)


def _cgroup_file(cg, name: str) -> bytes:
    with open(os.path.join(cg.directory, name), "rb") as f:
        return f.read()


def _version(cg) -> str:
    return "v2" if os.path.exists(os.path.join(cg.directory, "memory.current")) else "v1"


def _smaps_pss(pid: int) -> dict[str, int]:
    """Pss in bytes per mapped path (``""`` for anonymous), from the kernel."""
    out: dict[str, int] = {}
    path = ""
    with open(f"/proc/{pid}/smaps", "rb") as f:
        for line in f:
            if re.match(rb"^[0-9a-f]+-[0-9a-f]+ ", line):
                parts = line.split(None, 5)
                path = parts[5].strip().decode() if len(parts) > 5 else ""
            elif line.startswith(b"Pss:"):
                out[path] = out.get(path, 0) + int(line.split()[1]) * 1024
    return out


_ROW = re.compile(r"^  ([+\-=]) +(-?\d+|-) +\S+  (.+)$")


def _explain(cli, koid: int, *extra: str) -> dict[str, tuple[str, int]]:
    r = cli(["ps", f"--explain={koid}", *extra])
    assert r.status == 0, r.stderr
    rows = {}
    for line in r.stdout.splitlines()[1:]:
        m = _ROW.match(line)
        if m:
            rows[m.group(3).strip()] = (m.group(1), int(m.group(2)))
    return rows


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups, kpagecgroup)")
def test_charge_reconciles_with_known_shapes(cli, launcher, test_cgroup, tmp_path):
    cg, reason = test_cgroup
    if cg is None:
        pytest.skip(reason)
    cache_file = str(tmp_path / "cache-32M")
    map_file = str(tmp_path / "mapped-16M")
    _write(cache_file, 32 * MIB)
    _write(map_file, 16 * MIB)
    with open(map_file, "rb") as f:  # the test's own cgroup is charged for these
        while f.read(1 << 20):
            pass
    v1 = _version(cg) == "v1"
    # The interpreter starts inside the cgroup (charges stay where a page was
    # first charged, so a process moved in later leaves its start-up behind):
    # then only the file pages it maps are charged elsewhere.
    wrapper = tmp_path / "in-cgroup"
    wrapper.write_text(f'#!/bin/sh\necho $$ > {cg.directory}/cgroup.procs\n'
                       f'exec {sys.executable} "$@"\n')
    wrapper.chmod(0o755)
    w = launcher.start("charge", str(64 * MIB), cache_file, map_file, str(THREADS),
                       python=str(wrapper))

    # The PSS of shared library pages moves whenever another process maps or
    # unmaps them: the kernel is read before and after zxmem, and zxmem's
    # numbers must lie between (give or take a few pages).
    def kmem() -> int:
        if v1:
            return int(_cgroup_file(cg, "memory.kmem.usage_in_bytes"))
        stat = _cgroup_file(cg, "memory.stat").decode().split()
        return int(stat[stat.index("kernel") + 1])

    before = workloads.kernel_rollup(w.pid)
    kmem_before = kmem()
    rows = _explain(cli, cg.koid, "--exact")
    kmem_after = kmem()
    after = workloads.kernel_rollup(w.pid)
    pids = cg.members()
    assert pids == [w.pid]
    smaps = _smaps_pss(w.pid)

    def near(value: int, key: str) -> bool:
        lo = min(before[key], after[key]) - 16 * PAGE
        hi = max(before[key], after[key]) + 16 * PAGE
        return lo <= value <= hi
    # The cgroup's own memory.stat, read after zxmem's.
    stat = dict(line.split() for line in _cgroup_file(cg, "memory.stat").decode().splitlines())

    names = list(rows)
    pss_name = next(n for n in names if n.startswith("PSS of its"))
    assert pss_name == "PSS of its 1 processes"
    sign, pss = rows[pss_name]
    assert near(pss, "Pss"), (pss, before["Pss"], after["Pss"])
    assert pss >= 64 * MIB + 16 * MIB  # the anonymous and the mapped bytes, at least

    # 32 MiB read, mapped by no one: unmapped page cache charged here.
    assert abs(rows["page cache, unmapped"][1] - 32 * MIB) <= 16 * PAGE

    # The 16 MiB file is in the PSS but charged to the test's cgroup; so are
    # the interpreter's shared libraries, cached long before (mostly).
    assert smaps[map_file] == 16 * MIB
    # The file pages' PSS (copy-on-write pages of a library's data segment
    # are anonymous and charged here, so not every byte of a file mapping).
    for r in (before, after):
        r["file"] = r["Pss_File"] + r["Pss_Shmem"]
    sign, elsewhere = rows["charged elsewhere"]
    assert sign == "-"
    assert elsewhere >= 16 * MIB - 16 * PAGE
    # Library pages that were evicted and faulted back in by the workload
    # are charged here: at most the file pages this cgroup has mapped.
    mapped_here = int(stat["total_mapped_file" if v1 else "file_mapped"])
    lo = min(before["file"], after["file"]) - mapped_here - 16 * PAGE
    hi = max(before["file"], after["file"]) + 16 * PAGE
    assert lo <= elsewhere <= hi, (elsewhere, mapped_here, before["file"], after["file"])

    # Kernel memory: what the kernel says, and at least the threads' stacks.
    sign, kernel = rows["kernel memory"]
    lo, hi = min(kmem_before, kmem_after), max(kmem_before, kmem_after)
    assert lo * 0.9 <= kernel <= hi * 1.1, (kernel, kmem_before, kmem_after)
    assert kernel >= THREADS * THREAD_STACK

    # The printed terms add up to the printed charge, exactly.
    charged = rows["charged"][1]
    total = sum(v if s == "+" else -v for n, (s, v) in rows.items() if n != "charged")
    assert total == charged
    # ... and the remainder is small: every page of the workload is in a term.
    assert abs(rows["remainder"][1]) <= 2 * MIB

    # Without --exact the term is an estimate, and says so.
    rows = _explain(cli, cg.koid)
    assert "charged elsewhere (estimate)" in rows
    total = sum(v if s == "+" else -v for n, (s, v) in rows.items() if n != "charged")
    assert total == rows["charged"][1]

    # The JSON job record carries the cgroup's own numbers.
    doc, _ = ps_json(cli, f"--job={cg.koid}")
    job = next(t for t in doc["tasks"] if t["id"] == f"j/{cg.koid}")
    c = job["cgroup"]
    assert c["version"] == ("v1" if v1 else "v2")
    assert abs(c["charged_bytes"] - charged) <= 2 * MIB
    assert c["stat"]["total_cache" if v1 else "file"] >= 32 * MIB
    assert c["limit_bytes"] == "max"
    if v1:
        assert c["pressure"] is None  # v1 has no per-cgroup PSI: unknown, not 0
        assert c["events"]["oom_kill"] == 0


@pytest.mark.skipif(os.geteuid() != 0, reason="needs root (cgroups)")
def test_oom_kill_is_counted(cli, launcher, test_cgroup):
    cg, reason = test_cgroup
    if cg is None:
        pytest.skip(reason)
    v1 = _version(cg) == "v1"
    limit_file = "memory.limit_in_bytes" if v1 else "memory.max"
    with open(os.path.join(cg.directory, limit_file), "w") as f:
        f.write(str(64 * MIB))
    holder = launcher.start("hold", cgroup=cg)  # keeps the job in the table
    proc = subprocess.Popen(
        [sys.executable, "-I", "-S", workloads.SCRIPT, "private", str(128 * MIB)],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
    )
    try:
        words = proc.stdout.readline().split()
        assert words[0] == b"pid"
        cg.add(int(words[1]))
        proc.stdin.write(b"go\n")
        proc.stdin.flush()
        status = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    assert status == -9  # killed by the OOM killer
    doc, _ = ps_json(cli, f"--job={cg.koid}")
    job = next(t for t in doc["tasks"] if t["id"] == f"j/{cg.koid}")
    assert job["cgroup"]["limit_bytes"] == 64 * MIB
    assert job["cgroup"]["events"]["oom_kill"] == 1
    assert [t["koid"] for t in doc["tasks"] if t["type"] == "p"] == [holder.pid]
    r = cli(["ps", "-J", "--cgroup", f"--job={cg.koid}"])
    assert r.status == 0
    assert " 64M " in r.stdout  # the LIMIT column


def test_kstats_pressure_is_the_kernels(cli):
    import json

    def kernel_psi() -> dict[str, int]:
        with open("/proc/pressure/memory") as f:
            return {ln.split()[0]: int(ln.split()[-1].split("=")[1]) for ln in f}

    if not os.path.exists("/proc/pressure/memory"):
        pytest.skip("no PSI on this kernel")
    before = kernel_psi()
    r = cli(["kstats", "--pressure", "-n", "1", "--json"])
    after = kernel_psi()
    assert r.status == 0, r.stderr
    p = json.loads(r.stdout)["pressure"]
    for kind in ("some", "full"):
        assert before[kind] <= p["pressure"][kind]["total_us"] <= after[kind]
    with open("/proc/vmstat") as f:
        vm = dict(ln.split() for ln in f)
    assert p["vmstat"]["oom_kill"] <= int(vm["oom_kill"])
    assert p["vmstat"]["pgmajfault"] <= int(vm["pgmajfault"])
