"""Test-side helpers of the live tests: a cgroup of their own, zxmem runs.

Kept apart from ``conftest.py`` so test modules can import them by a name
that no other directory's conftest shadows.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time

import pytest
import workloads

import zxmem

# The directory that holds the zxmem package, for runs with another
# interpreter (PYTHONPATH) when the installed one is out of reach.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.abspath(zxmem.__file__)))


# --------------------------------------------------------------------------
# A cgroup of the tests' own, in the hierarchy zxmem takes its jobs from.


def _job_hierarchy() -> tuple[str, str] | None:
    """(mount point, this process's cgroup path) of the job hierarchy.

    The same choice as DESIGN.md: the v1 memory controller's tree if there is
    one, else the unified (v2) tree.  Read from ``/proc/self/cgroup`` and
    ``/proc/self/mountinfo`` (cgroups(7), proc(5)).
    """
    with open("/proc/self/cgroup") as f:
        lines = [line.rstrip("\n").split(":", 2) for line in f if line.count(":") >= 2]
    v1 = [(c, p) for _, c, p in lines if "memory" in c.split(",")]
    v2 = [(c, p) for h, c, p in lines if h == "0" and c == ""]
    with open("/proc/self/mountinfo") as f:
        mounts = []
        for line in f:
            left, _, right = line.partition(" - ")
            lf, rf = left.split(), right.split()
            mounts.append((lf[3], lf[4], rf[0], rf[2].split(",") if len(rf) > 2 else []))
    for root, point, fstype, opts in mounts:
        if v1 and fstype == "cgroup" and "memory" in opts:
            return point, root
        if not v1 and v2 and fstype == "cgroup2":
            return point, root
    return None


class TestCgroup:
    """A cgroup directory the tests created (and will remove)."""

    __test__ = False  # not a test class, despite the name

    def __init__(self, directory: str, path: str) -> None:
        self.directory = directory
        self.path = path  # as /proc/PID/cgroup names it
        self.children: list[TestCgroup] = []

    @property
    def koid(self) -> int:
        """The job koid zxmem gives it: the directory's inode number."""
        return os.stat(self.directory).st_ino

    def child(self, name: str) -> TestCgroup:
        d = os.path.join(self.directory, name)
        os.mkdir(d)
        c = TestCgroup(d, self.path.rstrip("/") + "/" + name)
        self.children.append(c)
        return c

    def add(self, pid: int) -> None:
        with open(os.path.join(self.directory, "cgroup.procs"), "w") as f:
            f.write(str(pid))

    def members(self) -> list[int]:
        try:
            with open(os.path.join(self.directory, "cgroup.procs")) as f:
                return [int(x) for x in f.read().split()]
        except OSError:
            return []

    def remove(self) -> None:
        for c in reversed(self.children):
            c.remove()
        # Only our workloads were ever moved in here (their children follow
        # them); anything still inside after they were stopped is one of them.
        for pid in self.members():
            try:
                os.kill(pid, 9)
            except OSError:
                pass
        deadline = time.monotonic() + 10
        while True:
            try:
                os.rmdir(self.directory)
                return
            except FileNotFoundError:
                return
            except OSError:
                if time.monotonic() > deadline:
                    raise
                time.sleep(0.02)


def make_test_cgroup(tag: str) -> tuple[TestCgroup | None, str]:
    """A new empty cgroup, or None and the reason it cannot be made here."""
    if os.geteuid() != 0:
        return None, "not root: cannot create a cgroup for the workloads"
    found = _job_hierarchy()
    if found is None:
        return None, "no cgroup v1 memory or cgroup v2 hierarchy mounted"
    point, root = found
    if not os.access(point, os.W_OK):
        return None, f"{point} is not writable"
    name = f"zxmem-test-{os.getpid()}-{tag}"
    directory = os.path.join(point, name)
    try:
        os.mkdir(directory)
    except OSError as exc:
        return None, f"cannot create {directory}: {exc.strerror}"
    cg = TestCgroup(directory, (root.rstrip("/") or "") + "/" + name)
    try:
        # Moving a process in is what the tests need; try it with ourselves
        # on a throwaway child cgroup so a refusal (v2 delegation rules) is a
        # skip, not a failure in the middle of a test.
        probe = subprocess.Popen(["sleep", "30"])
        try:
            cg.add(probe.pid)
        finally:
            probe.kill()
            probe.wait()
    except OSError as exc:
        cg.remove()
        return None, f"cannot move a process into {directory}: {exc.strerror}"
    return cg, ""


def zxmem_command() -> list[str]:
    """The installed ``zxmem`` command (skips when it is not on PATH)."""
    path = shutil.which("zxmem")
    if path is None:
        pytest.skip("the zxmem command is not installed on PATH (pip install -e .)")
    return [path]


def nobody_python() -> list[str]:
    """An interpreter nobody may run, with zxmem importable; skips if none.

    The test's own interpreter may live under a directory only root may enter
    (a pyenv under /root); then a system python3 with PYTHONPATH is used.
    """
    if os.geteuid() != 0:
        pytest.skip("not root: cannot switch to the nobody user")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    candidates = [sys.executable, os.path.realpath(sys.executable), "/usr/bin/python3",
                  "/usr/local/bin/python3"]
    probe = "import sys, zxmem; assert sys.version_info >= (3, 10)"
    for python in dict.fromkeys(candidates):
        if not os.path.exists(python):
            continue
        r = subprocess.run(
            [*workloads.nobody_prefix(), python, "-s", "-c", probe],
            env=nobody_env(),
            capture_output=True,
            cwd="/",
        )
        if r.returncode == 0:
            return [python, "-s"]
    pytest.skip("no Python >= 3.10 that the nobody user can run with zxmem importable")


def nobody_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["PYTHONPATH"] = SOURCE_ROOT
    env["HOME"] = "/"
    return env


def ps_json(cli, *args: str) -> tuple[dict, object]:
    """``zxmem ps --json ARGS`` in-process: the document and the run."""
    r = cli(["ps", "--json", *args])
    assert r.status == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout), r
