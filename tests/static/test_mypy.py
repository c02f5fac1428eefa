"""mypy at default strictness on the package (the ``[tool.mypy]`` settings in
pyproject.toml), run with the suite so README's one test command covers it."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_mypy_is_clean(tmp_path):
    # The interpreter running the tests (not PATH's mypy), from the repository
    # root so pyproject.toml's [tool.mypy] applies; the cache goes to a
    # temporary folder, so a fresh clone (or a read-only one) needs nothing.
    r = subprocess.run(
        [sys.executable, "-m", "mypy", "--cache-dir", str(tmp_path / "mypy-cache")],
        cwd=REPO, capture_output=True, text=True, timeout=600,
    )
    assert r.returncode == 0, r.stdout + r.stderr
    assert "Success: no issues found" in r.stdout, r.stdout + r.stderr
