"""``zxmem ps`` on this machine, against workloads with exactly known shapes.

The workloads (``workloads.py``) are Python processes, so each number is
"shape + the interpreter's own baseline".  The baseline is measured, in the
same scan, on an idle workload of the same kind that runs the same code on a
single page; the shape must then show within ``TOL`` (a few pages: the
Python objects that describe the mapping, a page of the mapping itself).

The kernel's own ``smaps_rollup`` is read directly before and after each
in-process run; when nothing moved in between (other processes starting
can change the PSS shares of shared library pages), zxmem's numbers must
equal the kernel's exactly.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
from dataclasses import dataclass, field

import pytest
import workloads
from harness import TestCgroup, make_test_cgroup, ps_json, zxmem_command
from workloads import MIB, PAGE, kernel_cmdline, kernel_counts

pytestmark = pytest.mark.live

# A few pages of slack on top of the shape: an interpreter's own heap pages
# move between private and shared (copy-on-write after fork, garbage
# collection writes) between the workload and its baseline twin; 64 pages is
# 0.8 % of the 32 MiB copy-on-write shape, and runs on a loaded machine have
# seen up to 35.
TOL = 64 * PAGE

PRIVATE_SIZE = 64 * MIB
COW_SIZE = 32 * MIB
MEMFD_SIZE = 16 * MIB

TASK_LINE = re.compile(r"^(?:TASK|(?:  )*[jpt]:\d+) ")


@dataclass
class Shapes:
    launcher: workloads.Launcher
    cgroup: TestCgroup | None
    no_cgroup_reason: str
    jobs: dict[str, TestCgroup] = field(default_factory=dict)
    w: dict[str, workloads.Workload] = field(default_factory=dict)

    def pids(self) -> list[int]:
        return [pid for w in self.w.values() for pid in w.pids]


def _memfd(size: int) -> int:
    fd = os.memfd_create("zxmem-test-shape")
    os.ftruncate(fd, size)
    chunk = b"\x5a" * min(size, MIB)
    for off in range(0, size, len(chunk)):
        os.pwrite(fd, chunk, off)
    return fd


@pytest.fixture(scope="module")
def shapes(request) -> Shapes:
    cg, reason = make_test_cgroup("shapes")
    if cg is not None:
        request.addfinalizer(cg.remove)
    launcher = workloads.Launcher()
    request.addfinalizer(launcher.close)  # runs before cg.remove
    s = Shapes(launcher, cg, reason)
    for name in ("baseline", "private", "cow", "memfd"):
        s.jobs[name] = cg.child(name) if cg is not None else None

    def start(key, job, *args, **kw):
        s.w[key] = launcher.start(*args, cgroup=s.jobs[job], **kw)

    start("base", "baseline", "private", str(PAGE))
    start("base_cow", "baseline", "cow", str(PAGE))
    small = _memfd(PAGE)
    big = _memfd(MEMFD_SIZE)
    try:
        start("base_memfd", "baseline", "memfd", str(small), str(PAGE), pass_fds=(small,))
        start("private", "private", "private", str(PRIVATE_SIZE))
        start("cow", "cow", "cow", str(COW_SIZE))
        start("memfd_a", "memfd", "memfd", str(big), str(MEMFD_SIZE), pass_fds=(big,))
        start("memfd_b", "memfd", "memfd", str(big), str(MEMFD_SIZE), pass_fds=(big,))
    finally:
        # The workloads hold their own descriptors and mappings now.
        os.close(small)
        os.close(big)
    return s


# --------------------------------------------------------------------------
# Helpers.


def processes(doc: dict) -> dict[int, dict]:
    return {r["koid"]: r for r in doc["tasks"] if r["type"] == "p"}


def counts(rec: dict) -> tuple[int, int, int]:
    return rec["pss_bytes"], rec["private_bytes"], rec["shared_bytes"]


def stable_run(run, pids: list[int], attempts: int = 5):
    """``run()`` while the kernel's numbers for ``pids`` hold still.

    Returns (result, kernel numbers, stable?).  Unstable after every attempt
    means the machine is busy; callers then compare within TOL.
    """
    for _ in range(attempts):
        before = {pid: kernel_counts(pid) for pid in pids}
        result = run()
        after = {pid: kernel_counts(pid) for pid in pids}
        if before == after:
            return result, after, True
    return result, after, False


def check_shape(name, got, base, d_pss, d_private, d_shared) -> None:
    for label, g, b, d in zip(
        ("PSS", "PRIVATE", "SHARED"), got, base, (d_pss, d_private, d_shared), strict=True
    ):
        assert abs(g - b - d) <= TOL, (
            f"{name} {label}: {g} bytes = baseline {b} + {g - b}, "
            f"expected baseline + {d} (within {TOL})"
        )


def check_shapes(s: Shapes, recs: dict[int, dict]) -> None:
    """Every workload process's PSS, PRIVATE and SHARED against its shape."""
    for pid in s.pids():
        assert pid in recs, f"workload process {pid} missing from zxmem ps"
        assert None not in counts(recs[pid]), recs[pid]
    w = s.w
    base = counts(recs[w["base"].pid])
    check_shape("private", counts(recs[w["private"].pid]), base,
                PRIVATE_SIZE - PAGE, PRIVATE_SIZE - PAGE, 0)

    # Copy-on-write: the region is mapped twice, by parent and child.
    half = (COW_SIZE - PAGE) // 2
    for i, who in enumerate(("parent", "child")):
        got = counts(recs[w["cow"].pids[i]])
        ref = counts(recs[w["base_cow"].pids[i]])
        check_shape(f"cow {who}", got, ref, half, 0, COW_SIZE - PAGE)
        assert got[2] >= COW_SIZE
        assert got[1] <= ref[1] + TOL < 4 * MIB  # PRIVATE stays small

    # memfd: two readers share it; the baseline reader is alone on its page,
    # so its page counts as PRIVATE there.
    ref = counts(recs[w["base_memfd"].pid])
    for key in ("memfd_a", "memfd_b"):
        got = counts(recs[w[key].pid])
        check_shape(key, got, ref, MEMFD_SIZE // 2 - PAGE, -PAGE, MEMFD_SIZE)
        assert got[2] >= MEMFD_SIZE


def check_job_totals(doc: dict) -> None:
    """Each job's PSS and PRIVATE = its processes' + its sub-jobs' (spec §2.2)."""
    tasks = doc["tasks"]
    jobs = {r["koid"]: r for r in tasks if r["type"] == "j"}
    pss = {k: 0 for k in jobs}
    private = {k: 0 for k in jobs}
    unknown = {k: 0 for k in jobs}
    known = {k: 0 for k in jobs}
    for r in tasks:
        if r["type"] != "p":
            continue
        parent = int(r["parent"].split("/")[1])
        if r["pss_bytes"] is None:
            unknown[parent] += 1
        else:
            known[parent] += 1
            pss[parent] += r["pss_bytes"]
            private[parent] += r["private_bytes"]
    # Children come after their parent in walk order: add bottom-up.
    for r in reversed([t for t in tasks if t["type"] == "j"]):
        if r["parent"]:
            parent = int(r["parent"].split("/")[1])
            if parent in jobs:
                pss[parent] += pss[r["koid"]]
                private[parent] += private[r["koid"]]
                unknown[parent] += unknown[r["koid"]]
                known[parent] += known[r["koid"]]
    for koid, r in jobs.items():
        assert r["unknown_processes"] == unknown[koid], r
        if known[koid] == 0 and unknown[koid] > 0:
            assert r["pss_bytes"] is None and r["private_bytes"] is None, r
            continue
        assert r["pss_bytes"] == pss[koid], r
        assert r["private_bytes"] == private[koid], r


# --------------------------------------------------------------------------
# Tests.


def test_shapes_in_process_and_equal_to_the_kernel(cli, shapes):
    (doc, run), kernel, stable = stable_run(lambda: ps_json(cli), shapes.pids())
    recs = processes(doc)
    for pid in shapes.pids():
        got, want = counts(recs[pid]), kernel[pid]
        if stable:
            assert got == want, f"pid {pid}: zxmem {got} != smaps_rollup {want}"
        else:
            assert all(abs(g - k) <= TOL for g, k in zip(got, want, strict=True)), (pid, got, want)
    check_shapes(shapes, recs)


def test_shapes_through_the_installed_command(shapes):
    command = [*zxmem_command(), "ps", "--json"]
    # While it runs, the zxmem process itself shares the interpreter's pages
    # with the workloads, so its numbers are not the kernel's before or after;
    # stable_run still retries when something else moved during the scan.
    r, _, _ = stable_run(
        lambda: subprocess.run(command, capture_output=True, text=True), shapes.pids()
    )
    assert r.returncode == 0, r.stderr
    assert "Traceback" not in r.stderr
    doc = json.loads(r.stdout)
    check_shapes(shapes, processes(doc))
    check_job_totals(doc)
    if shapes.cgroup is not None:
        check_jobs_hold_the_workloads(shapes, doc)


def check_jobs_hold_the_workloads(s: Shapes, doc: dict) -> None:
    jobs = {r["koid"]: r for r in doc["tasks"] if r["type"] == "j"}
    members: dict[int, set[int]] = {}
    for r in doc["tasks"]:
        if r["type"] == "p":
            members.setdefault(int(r["parent"].split("/")[1]), set()).add(r["koid"])
    top = s.cgroup
    assert top.koid in jobs, f"test cgroup {top.path} (inode {top.koid}) is not a job"
    assert jobs[top.koid]["path"] == top.path
    assert jobs[top.koid]["name"] == os.path.basename(top.path)
    assert top.koid not in members  # no process of its own
    children = {k for k, r in jobs.items() if r["parent"] == f"j/{top.koid}"}
    assert children == {cg.koid for cg in s.jobs.values()}
    expected = {
        "baseline": ("base", "base_cow", "base_memfd"),
        "private": ("private",),
        "cow": ("cow",),
        "memfd": ("memfd_a", "memfd_b"),
    }
    for name, keys in expected.items():
        cg = s.jobs[name]
        want = {pid for k in keys for pid in s.w[k].pids}
        assert jobs[cg.koid]["path"] == cg.path
        assert members.get(cg.koid, set()) == want, name
        # The job's totals are exactly its processes' (no sub-jobs here).
        recs = [r for r in doc["tasks"] if r["type"] == "p" and r["koid"] in want]
        assert jobs[cg.koid]["pss_bytes"] == sum(r["pss_bytes"] for r in recs)
        assert jobs[cg.koid]["private_bytes"] == sum(r["private_bytes"] for r in recs)
        assert "shared_bytes" not in jobs[cg.koid]  # SHARED is never summed
    all_pids = set(s.pids())
    assert jobs[top.koid]["pss_bytes"] == sum(
        r["pss_bytes"] for r in doc["tasks"] if r["type"] == "p" and r["koid"] in all_pids
    )


def test_each_workload_job_holds_exactly_its_processes(cli, shapes):
    if shapes.cgroup is None:
        pytest.skip(f"no cgroup for the workloads: {shapes.no_cgroup_reason}")
    doc, _ = ps_json(cli)
    check_jobs_hold_the_workloads(shapes, doc)


def test_job_totals_are_sums_of_processes_and_sub_jobs(cli, shapes):
    doc, _ = ps_json(cli)
    check_job_totals(doc)
    # Same with --job on the workloads' own subtree, when there is one.
    if shapes.cgroup is not None:
        doc, _ = ps_json(cli, f"--job={shapes.cgroup.koid}")
        assert doc["tasks"][0]["koid"] == shapes.cgroup.koid
        assert {r["koid"] for r in doc["tasks"] if r["type"] == "p"} == set(shapes.pids())
        check_job_totals(doc)


def test_text_table_puts_each_workload_under_its_job(cli, shapes):
    if shapes.cgroup is None:
        pytest.skip(f"no cgroup for the workloads: {shapes.no_cgroup_reason}")
    r = cli(["ps", "--job", str(shapes.cgroup.koid)])
    assert r.status == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0] == lines[-1] and lines[0].startswith("TASK ")
    assert all(TASK_LINE.match(line) for line in lines), r.stdout
    cells = [re.match(r"^ *\S+", line).group(0) for line in lines[1:-1]]
    assert cells[0] == f"j:{shapes.cgroup.koid}"
    for name, cg in shapes.jobs.items():
        at = cells.index(f"  j:{cg.koid}")
        block = []
        for cell in cells[at + 1 :]:
            if not cell.startswith("    "):
                break
            block.append(cell)
        want = {pid for k, w in shapes.w.items() for pid in w.pids if _job_of(k) == name}
        assert {int(c.strip()[2:]) for c in block} == want, name
        assert all(c.startswith("    p:") for c in block)


def _job_of(key: str) -> str:
    return {"base": "baseline", "base_cow": "baseline", "base_memfd": "baseline",
            "memfd_a": "memfd", "memfd_b": "memfd"}.get(key, key)


def test_name_is_the_command_line(cli, shapes):
    doc, _ = ps_json(cli)
    recs = processes(doc)
    for pid in shapes.pids():
        args = kernel_cmdline(pid)
        assert recs[pid]["name"] == " ".join(workloads.decoded(a) for a in args)
        assert recs[pid]["cmdline"] == [workloads.decoded(a) for a in args]


def test_name_fits_the_terminal_and_is_whole_when_piped(cli, launcher):
    tail = "x" * 300
    w = launcher.start("hold", "long-argument-" + tail)
    full = " ".join(workloads.decoded(a) for a in kernel_cmdline(w.pid))

    # Colour off: widths here are of text (colour is tested on a real pty).
    r = cli(["ps", "--color=never"], stdout_isatty=True, terminal_width=80)
    assert r.status == 0, r.stderr
    assert all(len(line) <= 80 for line in r.stdout.splitlines())
    row = next(line for line in r.stdout.splitlines() if line.split()[0] == f"p:{w.pid}")
    assert len(row) == 80
    # The NAME cell is a prefix of the command line, cut at the edge.
    prefix = row.split(None, 4)[4]
    assert full.startswith(prefix) and len(prefix) < len(full)

    r = cli(["ps"], stdout_isatty=False)
    row = next(line for line in r.stdout.splitlines() if line.split()[0] == f"p:{w.pid}")
    assert row.endswith(" " + full)
