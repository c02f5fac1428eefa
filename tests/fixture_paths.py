"""Where the tests find the project's shared fixtures.

The real Fuchsia capture and its bucket files live in the project's shared
folder, which sits beside the checkout (``../shared``); ``ZXMEM_SHARED_DIR``
points elsewhere.  Tests that need them skip with a reason when they are
missing (and fail under CI, see ``tests/conftest.py``).
"""

from __future__ import annotations

import os
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
SHARED = Path(os.environ.get("ZXMEM_SHARED_DIR") or REPO.parent / "shared")
CAPTURE_DIR = SHARED / "fixtures" / "fuchsia" / "capture"
CAPTURE = CAPTURE_DIR / "test_snapshot.json"
