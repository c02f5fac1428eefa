"""Per-process VMO summaries (spec fuchsia-tools §9.3, §9.5) and the mem view."""

from __future__ import annotations

import pytest
from test_digest import KIB, MIB, snap

from zxmem import summary as sm
from zxmem.model import KernelStats
from zxmem.views import mem as view


@pytest.mark.parametrize(
    "name, group",
    [
        # Fuchsia (§9.3)
        ("ld.so.1-internal-heap", "[process-bootstrap]"),
        ("stack: msg of 0x1000", "[process-bootstrap]"),
        ("blob-405d17d9", "[blobs]"),
        ("inactive-blob-0f", "[inactive blobs]"),
        ("thrd_t:0x2a3b", "[stacks]"),
        ("initial-thread", "[stacks]"),
        ("pthread_t:0x1", "[stacks]"),
        ("data0:uncompressed-bootfs", "[data]"),
        ("data:blob-405d17d9", "[data]"),
        ("bss1:libc.so", "[bss]"),
        ("relro:uncompressed-bootfs", "[relro]"),
        ("", "[unnamed]"),
        ("scudo:primary", "[scudo]"),
        ("libfdio.so", "[bootfs-libraries]"),
        ("stack_and_tls:0x5", "[bionic-stack]"),
        ("bootfs", "[bootfs]"),
        ("restricted_state_vmo:12", "[restricted_state_vmo]"),
        ("  initial-thread ", "[stacks]"),  # trimmed before matching
        ("uncompressed-bootfs", "uncompressed-bootfs"),  # unmatched: verbatim
        ("blob-xyz", "blob-xyz"),  # not hex: the whole name must match
        # Linux
        ("/usr/lib/x86_64-linux-gnu/libc.so.6", "[libraries]"),
        ("/usr/lib/libz.so.1.3 (deleted)", "[libraries]"),
        ("/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so",
         "[libraries]"),
        ("data:libc.so.6", "[data]"),
        ("[heap]", "[heap]"),
        ("[anon:glibc: malloc arena]", "[heap]"),
        ("[stack]", "[stacks]"),
        ("[anon: glibc: pthread stack: 1234]", "[stacks]"),
        ("memfd:wayland-shm", "[memfd]"),
        ("/usr/bin/python3.11", "/usr/bin/python3.11"),
        ("mmap-anonymous", "mmap-anonymous"),
    ],
)
def test_rename_rules(name, group):
    assert sm.group_name(name) == group


def test_private_scaled_total_and_integer_division():
    # VMO 3 (3001 bytes) is shared by three processes: 1000 scaled each
    # (integer division), 3001 total each.
    s = snap([(10, "a", [1, 3]), (20, "b", [2, 3]), (30, "c", [3])],
             [(1, "x", 4096), (2, "y", 100), (3, "z", 3001)])
    summary = sm.summarize(s)
    a = summary.process(10)
    assert a.sizes == sm.Sizes(4096, 4096 + 1000, 4096 + 3001)
    assert a.groups == {"x": sm.Sizes(4096, 4096, 4096), "z": sm.Sizes(0, 1000, 3001)}
    assert summary.process(30).sizes == sm.Sizes(0, 1000, 3001)


def test_ancestors_are_charged_to_clone_holders():
    # 1 <- 2 <- 3 (clone chain) and 1 <- 4.  Process a holds 3, b holds 4:
    # both are charged 1; only a is charged 2.
    s = snap([(10, "a", [3]), (20, "b", [4])],
             [(1, "file", 8 * KIB), (2, "mid", 4 * KIB, 1), (3, "leaf", 2 * KIB, 2),
              (4, "other", 1 * KIB, 1)])
    summary = sm.summarize(s)
    a, b = summary.process(10), summary.process(20)
    assert sorted(a.vmo_koids) == [1, 2, 3]
    assert a.sizes == sm.Sizes(6 * KIB, 6 * KIB + 4 * KIB, 14 * KIB)
    assert b.sizes == sm.Sizes(1 * KIB, 1 * KIB + 4 * KIB, 9 * KIB)


def test_processes_without_vmos_dropped_unknown_counted():
    s = snap([(10, "a", []), (20, "b", [1, 2, 3])],
             [(1, "x", None), (2, "y", 5), (3, "dev", None, 0, "phys")])
    summary = sm.summarize(s)
    assert [p.koid for p in summary.processes] == [20]
    assert summary.unknown_vmos == 1
    assert summary.process(20).sizes == sm.Sizes(5, 5, 5)


def test_kernel_row():
    k = KernelStats(vmo_bytes=10 * KIB, free_bytes=MIB, total_heap_bytes=1 * KIB,
                    wired_bytes=2 * KIB, mmu_overhead_bytes=3 * KIB, ipc_bytes=None,
                    other_bytes=4 * KIB)
    s = snap([(10, "a", [1])], [(1, "x", 4 * KIB), (2, "unreferenced", 2 * KIB)], kernel=k)
    summary = sm.summarize(s)
    kern = summary.processes[0]
    assert kern.kernel and kern.koid == 1 and kern.name == "kernel"
    # vmo = 10 KiB − all VMOs' committed (6 KiB); ipc unknown: left out.
    assert kern.groups == {"heap": sm.Sizes(1024, 1024, 1024), "wired": sm.Sizes(2048, 2048, 2048),
                           "mmu": sm.Sizes(3072, 3072, 3072), "other": sm.Sizes(4096, 4096, 4096),
                           "vmo": sm.Sizes(4096, 4096, 4096)}
    assert kern.sizes.total_bytes == 14 * KIB
    linux = snap([(10, "a", [1])], [(1, "x", 20 * KIB)], kernel=k, source="linux")
    kern = sm.summarize(linux).processes[0]
    assert kern.koid == 0
    assert kern.groups["vmo"].total_bytes == 0  # saturates at 0


def _spec_example():
    """Numbers that reproduce §9.5's example lines.

    p2<200>: v1 3 KiB private; v2 2 KiB shared with p1 → 0B 1K 2K; so
    3K 4K 5K.  kernel: 30 KiB of which other 8 KiB; its vmo group is
    5 KiB − 5 KiB committed = 0, and mmu and ipc are 0: not printed.
    """
    k = KernelStats(vmo_bytes=5 * KIB, free_bytes=2 * MIB, total_heap_bytes=10 * KIB,
                    wired_bytes=12 * KIB, mmu_overhead_bytes=0, ipc_bytes=0,
                    other_bytes=8 * KIB)
    return snap([(100, "p1", [2]), (200, "p2", [1, 2])],
                [(1, "v1", 3 * KIB), (2, "v2", 2 * KIB)], kernel=k)


def test_mem_view_reproduces_the_spec_example():
    s = _spec_example()
    text = view.render(s, sm.summarize(s), 123456789)
    assert text == (
        "Time: 123456789 VMO: 5K Free: 2M\n"
        "kernel<1> 30K\n"
        " wired 12K\n"
        " heap 10K\n"
        " other 8K\n"
        "p2<200> 3K 4K 5K\n"
        " v1 3K\n"
        " v2 0B 1K 2K\n"
        "p1<100> 0B 1K 2K\n"
        " v2 0B 1K 2K\n"
    )


def test_mem_csv_and_pid():
    s = _spec_example()
    summary = sm.summarize(s)
    # Unsorted: kernel first, then snapshot order; time in whole seconds.
    assert view.render_csv(summary, 95_724_504_776) == (
        "95,1,kernel,30720,30720,30720\n"
        "95,100,p1,0,1024,2048\n"
        "95,200,p2,3072,4096,5120\n"
    )
    assert view.render_csv(summary, None, pid=200) == (
        ",200,v1,3072,3072,3072\n"
        ",200,v2,0,1024,2048\n"
    )
    assert view.render(s, summary, None, pid=100) == (
        "Time: - VMO: 5K Free: 2M\n"
        "p1<100> 0B 1K 2K\n"
        " v2 0B 1K 2K\n"
    )


def test_mem_names_are_escaped_and_quoted():
    s = snap([(7, "a,b\x1b[2J", [1])], [(1, "x\ny", 10)])
    summary = sm.summarize(s)
    assert view.render_csv(summary, None) == ',7,"a,b\\e[2J",10,10,10\n'
    assert view.render_processes(summary) == "a,b\\e[2J<7> 10B\n x\\ny 10B\n"


def test_mem_cli_on_a_saved_snapshot(cli, tmp_path):
    from zxmem.memgraph import dumps

    s = _spec_example()
    path = tmp_path / "snap.json"
    path.write_text(dumps(s))
    r = cli(["mem", "--from", str(path), "--csv"])
    assert r.status == 0, r.stderr
    assert r.stdout == (",1,kernel,30720,30720,30720\n"
                        ",100,p1,0,1024,2048\n"
                        ",200,p2,3072,4096,5120\n")
    r = cli(["mem", "--from", str(path), "--pid", "999"])
    assert r.status == 1 and r.stderr == "zxmem: --pid 999: no such process\n"
