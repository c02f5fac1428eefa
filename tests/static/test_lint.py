"""Static checks run with the suite, so README's one test command covers them."""

from __future__ import annotations

import os
import subprocess
import sys

REPO = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))


def test_ruff_is_clean():
    r = subprocess.run(
        [sys.executable, "-m", "ruff", "check", "--no-cache", "zxmem", "tests", "bench"],
        cwd=REPO, capture_output=True, text=True, timeout=300,
    )
    assert r.returncode == 0, r.stdout + r.stderr
