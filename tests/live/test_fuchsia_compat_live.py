"""``zxmem memgraph -vt`` (and ``--exact``) on this machine is what Fuchsia's treemap.py reads.

``memgraph -vt`` exists for ``scripts/memory/treemap.py``; the facts that
script relies on are checked by :func:`treemap_inputs.check_treemap_inputs`
(every VMO with integer ``committed_bytes`` and ``share_count``, every
reference with a non-empty ``via`` of the kinds it knows …).  Device memory
(``[vvar]``, a ``VM_PFNMAP`` mapping) is written committing 0 bytes with its
kind kept; a VMO whose committed bytes are unknown (a file whose page
cache an ordinary user may not measure, an io_uring ring, a memfd gone
before it was stat'ed) waits in ``linux.unsized_vmos`` without a size,
never with 0; a process whose memory the kernel denied has no sizes at all
(``linux.memory`` null), so treemap.py charges it nothing rather than a
made-up 0.
"""

from __future__ import annotations

import json
import os
import sys

import pytest

sys.path.insert(0, os.path.join(os.path.dirname(__file__), "..", "unit"))
from memgraph_samples import schema_validator  # noqa: E402
from treemap_inputs import check_treemap_inputs  # noqa: E402

pytestmark = pytest.mark.live


def _device_mappings(pid: int) -> set[str]:
    """Names of the special mappings of ``pid`` that smaps flags as device memory."""
    out = set()
    name = None
    with open(f"/proc/{pid}/smaps", encoding="utf-8", errors="replace") as f:
        for line in f:
            head = line.split()
            if head and "-" in head[0] and ":" not in head[0]:
                name = head[5] if len(head) > 5 else None
            elif head and head[0] == "VmFlags:" and name and name.startswith("["):
                if {"pf", "io"} & set(head[1:]):
                    out.add(name)
    return out


def _check(recs: list[dict]) -> None:
    schema_validator().validate(recs)
    assert check_treemap_inputs(recs) > 0
    procs = {r["koid"]: r for r in recs if r.get("type") == "p"}
    me = procs[os.getpid()]
    assert me["vmo_refs"] and me["pss_bytes"] > 0
    # Device memory: committed 0, kind kept — for every one this process maps.
    devices = _device_mappings(os.getpid())
    written = {v["name"]: v for v in me["vmos"] if v["name"] in devices}
    assert set(written) == devices
    for v in written.values():
        assert v["committed_bytes"] == 0 and v["linux"]["kind"] == "phys", v
    # Denied processes: unknown, with nothing treemap.py could add up.
    for r in procs.values():
        if r["linux"]["memory"] is None:
            assert not {"private_bytes", "shared_bytes", "pss_bytes"} & set(r), r["id"]
            assert not r.get("vmo_refs"), r["id"]
        # Unknown sizes are left out, not written as 0.
        for _, vmo, ref in r["linux"].get("unsized_vmos", []):
            assert "committed_bytes" not in vmo and vmo["koid"] == ref["vmo_koid"], r["id"]


def test_live_memgraph_vt_is_what_treemap_reads(cli):
    r = cli(["memgraph", "-vt"])
    assert r.status == 0, r.stderr
    _check(json.loads(r.stdout))


@pytest.mark.root
def test_live_memgraph_vt_exact_is_what_treemap_reads(cli):
    if os.geteuid() != 0:
        pytest.skip("not root: pagemap PFNs and /proc/kpagecount need CAP_SYS_ADMIN")
    if not os.path.exists("/proc/kpagecount"):
        pytest.skip("no /proc/kpagecount (kernel without CONFIG_PROC_PAGE_MONITOR)")
    from zxmem.sources import pagemap

    reason, _ = pagemap.availability("/proc", os.uname().release)
    if reason:
        pytest.skip(f"exact accounting unavailable here: {reason}")
    r = cli(["memgraph", "-vt", "--exact"])
    assert r.status == 0, r.stderr
    _check(json.loads(r.stdout))
