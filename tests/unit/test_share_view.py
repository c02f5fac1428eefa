"""zxmem share: the report as a pure view of a page scan, and its answer on
recorded /proc trees (which have no page tables)."""

from __future__ import annotations

from pathlib import Path
from types import SimpleNamespace

import numpy as np
import pytest

from zxmem.views import share as view

P = 4096
K = 1024
TREES = Path(__file__).resolve().parents[1] / "fixtures" / "proc-trees"


class _Census:
    def overlap(self, pid):
        # PID 10's two mappings: 3 pages shared with 11 in the first, 1 in
        # the second; 1 page with 12 in the second.
        return {11: np.array([3, 1]), 12: np.array([0, 1])}

    def shared_swap(self, pid):
        return {12: 2, 13: 1}


def _scan():
    counts = SimpleNamespace(
        resident_bytes=10 * P, private_bytes=5 * P, shared_bytes=5 * P,
        shared_unseen_bytes=P, pss_bytes=7 * P, swap_bytes=4 * P, swap_private_bytes=P,
        swap_pss_bytes=2 * P, ksm_bytes=0, freed_on_exit_bytes=6 * P)
    vmas = [SimpleNamespace(start=0x1000, end=0x5000, path=b"/usr/lib/libc.so"),
            SimpleNamespace(start=0x9000, end=0xb000, path=b"[heap]")]
    return SimpleNamespace(results={10: counts}, census=_Census(), vmas={10: vmas},
                           denied=[(99, "EACCES")], notes=["a note"])


NAMES = {10: "prog --flag", 11: "[kworker]", 12: "evil\x1b[31m"}


def test_report_counts_pages_per_sharer():
    r = view.report(10, _scan(), NAMES)
    assert [(s["pid"], s["shared_bytes"], s["swap_shared_bytes"]) for s in r["sharers"]] == [
        (11, 4 * P, 0), (12, P, 2 * P), (13, 0, P)]
    assert r["sharers"][0]["mappings"] == [
        {"start": 0x1000, "end": 0x5000, "path": "/usr/lib/libc.so", "shared_bytes": 3 * P},
        {"start": 0x9000, "end": 0xb000, "path": "[heap]", "shared_bytes": P}]
    assert r["sharers"][2]["name"] == "?"  # not named: exited meanwhile
    assert r["unreadable_processes"] == [99] and r["freed_on_exit_bytes"] == 6 * P


def test_render_text():
    text = view.render(view.report(10, _scan(), NAMES), None, verbose=True)
    # 10 pages of 4 KiB = 40k; 11 shares 3 + 1 pages (16k), 12 one page and
    # two swap slots; names are escaped.
    assert text == (
        "process 10: frees 24k on exit; shares 20k with 3 processes\n"
        "  command       prog --flag\n"
        "  resident          40k  distinct pages mapped\n"
        "  private           20k  mapped by no other process\n"
        "  shared            20k  of which 4k also mapped by processes not read "
        "(unreadable, or started during the scan)\n"
        "  PSS               28k  each page divided by the processes mapping it\n"
        "  swap              16k  of which 4k private\n"
        "  freed on exit     24k  private pages + private swap\n"
        "\n"
        "shared with 3 processes:\n"
        "      PID  SHARED    SWAP NAME\n"
        "       11     16k      0B [kworker]\n"
        "              12k           1000-5000 /usr/lib/libc.so\n"
        "               4k           9000-b000 [heap]\n"
        "       12      4k      8k evil\\e[31m\n"
        "               4k           9000-b000 [heap]\n"
        "       13      0B      4k ?\n"
    )


def test_approximate_report_sums_hugetlb():
    rollup = {b"Rss": 100 * K, b"Pss": 60 * K, b"Private_Clean": 8 * K,
              b"Private_Dirty": 4 * K, b"Private_Hugetlb": 2048 * K,
              b"Shared_Clean": 88 * K}
    r = view.approximate_report(7, "x", "not root", rollup)
    assert r["private_bytes"] == 2060 * K and r["shared_bytes"] == 88 * K
    assert r["freed_on_exit_bytes"] is None and r["sharers"] is None
    assert view.render_approximate(r, "k") == (
        "process 7: smaps_rollup, approximate\n"
        "  command       x\n"
        "  resident         100k\n  private         2060k\n"
        "  shared            88k\n  PSS               60k\n")


def _tree_pids():
    for tree in sorted(p for p in TREES.iterdir() if (p / "proc").is_dir()):
        proc = tree / "proc"
        for pid in sorted(int(n) for n in (d.name for d in proc.iterdir()) if n.isdigit()):
            yield str(proc), pid


@pytest.mark.parametrize(("root", "pid"), list(_tree_pids()))
def test_share_on_a_recorded_tree_says_it_needs_page_tables(cli, root, pid):
    res = cli(["share", "--proc-root", root, str(pid)])
    assert res.status == 1
    assert res.stdout == ""
    assert res.stderr.count("\n") == 1, res.stderr
    assert res.stderr.startswith("zxmem: share needs the live system's page tables")
    assert "recorded tree" in res.stderr
