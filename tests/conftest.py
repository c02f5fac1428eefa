"""Shared test fixtures: run the CLI in-process with an injectable environment.

Under CI (``CI=true``, as ``.ci/run`` runs), a skipped test is reported as a
failure: CI installs every tool and runs as root, so a skip there means a
test silently did not run.  Outside CI skips stay skips, with their reason
printed (``-rs``).
"""

from __future__ import annotations

import io
import os
import sys
from dataclasses import dataclass
from pathlib import Path

import pytest

from zxmem.cli import Environment, main

# Shared test helpers (fixture_paths) are importable from every test folder.
sys.path.insert(0, str(Path(__file__).resolve().parent))


def pytest_sessionstart(session):
    """Recreate the empty directories of recorded trees (git keeps none).

    A kernel thread's ``/proc/PID/fd`` is an empty directory; without it a
    recorded tree would say "descriptors unknown" instead of "none".  The
    list is ``tests/fixtures/empty-dirs.txt`` (paths from the repository root).
    """
    repo = Path(__file__).resolve().parent.parent
    listing = repo / "tests" / "fixtures" / "empty-dirs.txt"
    for line in listing.read_text().splitlines():
        if line.strip():
            (repo / line.strip()).mkdir(parents=True, exist_ok=True)



@dataclass
class Result:
    status: int
    stdout: str
    stderr: str


def run_cli(args: list[str], **env_kwargs) -> Result:
    out, err = io.StringIO(), io.StringIO()
    env = Environment(stdout=out, stderr=err, **env_kwargs)
    env_kwargs.setdefault("stdout_isatty", False)
    if env.stdout_isatty is None:
        env.stdout_isatty = False
    status = main(args, env)
    return Result(status, out.getvalue(), err.getvalue())


@pytest.fixture
def cli():
    return run_cli


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item, call):
    outcome = yield
    report = outcome.get_result()
    if os.environ.get("CI", "").lower() not in ("true", "1"):
        return
    if report.skipped and not hasattr(report, "wasxfail"):
        reason = report.longrepr[2] if isinstance(report.longrepr, tuple) else report.longrepr
        report.outcome = "failed"
        report.longrepr = f"skipped under CI, where every test must run: {reason}"
