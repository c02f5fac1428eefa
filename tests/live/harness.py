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

# The checkout (pyproject.toml's directory), installed for the nobody user.
SOURCE_ROOT = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


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
    """The ``zxmem`` command installed beside the interpreter running the tests.

    Never whatever ``PATH`` holds: README's test command does not put the
    virtualenv on ``PATH``, and another ``zxmem`` there would be another
    version.  The console script lives in ``sys.executable``'s directory
    (a virtualenv's ``bin``); the unresolved path is used, since resolving a
    venv's symlinked interpreter would leave the venv.
    """
    path = os.path.join(os.path.dirname(sys.executable), "zxmem")
    if not os.access(path, os.X_OK):
        pytest.fail(
            f"no zxmem command beside {sys.executable}: install the package into the "
            "environment that runs the tests (pip install -e '.[test]')"
        )
    return [path]


def _nobody_can_run(python: str) -> bool:
    probe = "import sys; assert sys.version_info >= (3, 10)"
    try:
        r = subprocess.run(
            [*workloads.nobody_prefix(), python, "-I", "-c", probe],
            env=nobody_env(), capture_output=True, cwd="/", timeout=60,
        )
    except (OSError, subprocess.TimeoutExpired):
        return False
    return r.returncode == 0


_NOBODY_PYTHON: list[str] = []


def nobody_python() -> list[str]:
    """An interpreter the nobody user may run, with zxmem installed; skips if none.

    The checkout and the test's own interpreter may live under a directory
    only root may enter (``/root`` is 0700, and so is CI's clone), so the
    package is installed (a real ``pip install``, not a path into the
    checkout) into a world-readable virtualenv under the temporary directory,
    made once per test session from an interpreter nobody can execute.
    """
    if os.geteuid() != 0:
        pytest.skip("not root: cannot switch to the nobody user")
    if shutil.which("setpriv") is None:
        pytest.skip("setpriv (util-linux) is not installed")
    if _NOBODY_PYTHON:
        return list(_NOBODY_PYTHON)
    bases = [os.path.realpath(sys.executable), getattr(sys, "_base_executable", ""),
             "/usr/bin/python3", "/usr/local/bin/python3"]
    base = next((p for p in dict.fromkeys(bases) if p and os.path.exists(p)
                 and _nobody_can_run(p)), None)
    if base is None:
        pytest.skip("no Python >= 3.10 that the nobody user can execute "
                    "(install Debian's python3)")
    python = _world_readable_venv(base)
    if not _nobody_can_run(python):
        pytest.fail(f"the nobody user cannot run {python}")
    _NOBODY_PYTHON[:] = [python, "-s"]
    return list(_NOBODY_PYTHON)


def _world_readable_venv(base: str) -> str:
    """A virtualenv made from ``base`` holding zxmem, readable by every user."""
    import atexit
    import tempfile

    top = tempfile.mkdtemp(prefix="zxmem-nobody-")
    atexit.register(shutil.rmtree, top, True)
    os.chmod(top, 0o755)
    venv = os.path.join(top, "venv")
    subprocess.run([base, "-m", "venv", "--without-pip", venv], check=True,
                   capture_output=True, timeout=120)
    python = os.path.join(venv, "bin", "python")
    # This environment's pip installs into the other interpreter (--python):
    # the base interpreter may have no pip of its own (Debian without
    # python3-pip).
    r = subprocess.run(
        [sys.executable, "-m", "pip", "--python", python, "install", "-q",
         "--disable-pip-version-check", SOURCE_ROOT],
        capture_output=True, text=True, timeout=600,
    )
    if r.returncode != 0:
        pytest.fail(f"installing zxmem for the nobody user failed: {r.stderr.strip()[-800:]}")
    for root, dirs, files in os.walk(top):
        for name in dirs:
            os.chmod(os.path.join(root, name), 0o755)
        for name in files:
            path = os.path.join(root, name)
            if not os.path.islink(path):
                os.chmod(path, os.stat(path).st_mode | 0o444)
    return python


def nobody_env() -> dict[str, str]:
    """The environment of a run as nobody: no PYTHON* variables, HOME=/."""
    env = {k: v for k, v in os.environ.items() if not k.startswith("PYTHON")}
    env["HOME"] = "/"
    return env


def ps_json(cli, *args: str) -> tuple[dict, object]:
    """``zxmem ps --json ARGS`` in-process: the document and the run."""
    r = cli(["ps", "--json", *args])
    assert r.status == 0, r.stderr
    assert "Traceback" not in r.stderr
    return json.loads(r.stdout), r
