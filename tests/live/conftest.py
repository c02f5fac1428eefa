"""Fixtures for the live tests: workloads and a cgroup of their own.

Everything a test starts is stopped by PID in a finalizer, also when the test
fails: workloads get EOF on stdin (then SIGKILL), the test cgroup's remaining
members are killed and the directory removed.
"""

from __future__ import annotations

import pytest
import workloads
from harness import make_test_cgroup

# --------------------------------------------------------------------------
# Fixtures.


@pytest.fixture
def launcher():
    with workloads.Launcher() as lw:
        yield lw


@pytest.fixture
def test_cgroup(request):
    cg, reason = make_test_cgroup(request.node.name[:40].replace("/", "_"))
    if cg is not None:
        request.addfinalizer(cg.remove)
    return cg, reason

