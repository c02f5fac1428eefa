"""Kernel-wide parsers and the kstats -m formulas (spec linux-kernel.md B.5-B.6).

Expected values are the kernel's own numbers in the recorded files (or
arithmetic on them done by hand below), never zxmem's earlier output.
"""

from __future__ import annotations

import gzip
import os

import pytest

from zxmem.sources import kernel
from zxmem.sources.kernel import ParseError

FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "kernel")
KIB = 1024


def fixture(name: str, file: str) -> bytes:
    with open(os.path.join(FIXTURES, name, file), "rb") as f:
        return f.read()


def meminfo_kb(name: str) -> dict[str, int]:
    out = {}
    for line in fixture(name, "meminfo").decode().splitlines():
        key, _, rest = line.partition(":")
        parts = rest.split()
        if parts[1:] == ["kB"]:
            out[key] = int(parts[0])
    return out


# --------------------------------------------------------------------------
# meminfo


def test_meminfo_sizes_in_bytes_and_counts_apart():
    sizes, counts = kernel.parse_meminfo(
        b"MemTotal:       24684084 kB\nHugePages_Total:       3\nHugepagesize:       2048 kB\n"
    )
    assert sizes == {"MemTotal": 24684084 * KIB, "Hugepagesize": 2048 * KIB}
    assert counts == {"HugePages_Total": 3}


def test_meminfo_keys_with_parentheses():
    sizes, _ = kernel.parse_meminfo(b"Active(anon):       1564 kB\nActive(file):     312564 kB\n")
    assert sizes["Active(anon)"] == 1564 * KIB
    assert sizes["Active(file)"] == 312564 * KIB


@pytest.mark.parametrize("data", [b"", b"MemTotal 12 kB\n", b"MemTotal: twelve kB\n"])
def test_meminfo_malformed(data):
    with pytest.raises(ParseError):
        kernel.parse_meminfo(data)


# --------------------------------------------------------------------------
# slabinfo


def test_slabinfo_free_slots_by_hand():
    caches = kernel.parse_slabinfo(fixture("linux-3.10", "slabinfo"))
    assert [c.name for c in caches] == ["xfs_inode", "dentry", "kmalloc-64", "task_struct"]
    xfs = caches[0]
    assert (xfs.active_objs, xfs.num_objs, xfs.objsize, xfs.num_slabs) == (300000, 300004, 1024,
                                                                          75001)
    # (num_objs - active_objs) * objsize, summed by hand:
    # 4*1024 + 102*192 + 1104*64 + 30*1984 = 4096 + 19584 + 70656 + 59520
    assert kernel.slab_free_bytes(caches) == 153856


def test_slabinfo_recorded_618_is_complete():
    data = fixture("linux-6.18", "slabinfo")
    caches = kernel.parse_slabinfo(data)
    assert len(caches) == data.count(b"\n") - 2
    assert all(c.num_objs >= c.active_objs for c in caches)


def test_slabinfo_wrong_version():
    with pytest.raises(ParseError):
        kernel.parse_slabinfo(b"slabinfo - version: 1.1\n")
    with pytest.raises(ParseError):
        kernel.parse_slabinfo(b"slabinfo - version: 2.1\nfoo 1 2\n")


# --------------------------------------------------------------------------
# vmallocinfo


def test_vmallocinfo_line_shapes():
    data = (
        b"0x000000002365baf9-0x00000000cd9de806   20480 irq_init_percpu_irqstack+0xca/0x100 vmap\n"
        b"0x00000000cd9de806-0x00000000b3893c30    8192 acpi_os_map_iomem+0x1bc/0x1e0 "
        b"phys=0x00000000000a0000 ioremap\n"
        b"0x00000000e3bc4a60-0x000000005027505b   20480 kernel_clone+0x94/0x3e0 "
        b"pages=4 vmalloc N0=4\n"
        b"0x0000000011111111-0x0000000022222222 8392704 alloc_large_system_hash+0x171/0x239 "
        b"pages=2048 vmalloc vpages N0=2048\n"
        b"0x0000000033333333-0x0000000044444444  266240 unpurged vm_area\n"
        b"0x0000000055555555-0x0000000066666666   16384 vm_map_ram\n"
    )
    areas = kernel.parse_vmallocinfo(data)
    assert [a.kind for a in areas] == ["vmap", "ioremap", "vmalloc", "vpages", "unpurged",
                                       "vm_map_ram"]
    assert areas[1].phys == 0xA0000 and areas[1].pages is None
    assert areas[2].caller == "kernel_clone+0x94/0x3e0" and areas[2].pages == 4
    assert areas[4].caller == "" and areas[5].caller == ""
    assert kernel.vmalloc_pages_bytes(areas) == (4 + 2048) * 4096
    # Only the thread stack (an inlined alloc_thread_stack_node) counts.
    assert kernel.stack_vmalloc_bytes(areas) == 4 * 4096


def test_vmallocinfo_pages_equal_vmallocused_618():
    # The kernel's own total: VmallocUsed is the sum of pages= (B.5).
    areas = kernel.parse_vmallocinfo(fixture("linux-6.18", "vmallocinfo"))
    assert kernel.vmalloc_pages_bytes(areas) == meminfo_kb("linux-6.18")["VmallocUsed"] * KIB


def test_vmap_stacks_hold_every_kernel_stack_618():
    # Live stacks (KernelStack) plus the per-CPU cache of freed ones.
    areas = kernel.parse_vmallocinfo(fixture("linux-6.18", "vmallocinfo"))
    stacks = kernel.stack_vmalloc_bytes(areas)
    kstack = meminfo_kb("linux-6.18")["KernelStack"] * KIB
    assert kstack <= stacks <= kstack + 2 * 4 * 16 * KIB  # ≤ 2 cached per CPU, 2 CPUs(+slack)


def test_vmallocinfo_malformed():
    with pytest.raises(ParseError):
        kernel.parse_vmallocinfo(b"zz-yy 12 foo\n")



_SHAPES = (
    b"0x000000002365baf9-0x00000000cd9de806   20480 irq_init_percpu_irqstack+0xca/0x100 vmap\n"
    b"0x00000000cd9de806-0x00000000b3893c30    8192 acpi_os_map_iomem+0x1bc/0x1e0 "
    b"phys=0x00000000000a0000 ioremap\n"
    b"0x00000000e3bc4a60-0x000000005027505b   20480 kernel_clone+0x94/0x3e0 "
    b"pages=4 vmalloc N0=4\n"
    b"0x0000000011111111-0x0000000022222222 8392704 alloc_large_system_hash+0x171/0x239 "
    b"pages=2048 vmalloc vpages N0=2048\n"
    b"0x0000000077777777-0x0000000088888888   20480 copy_process+0x1/0x2 [mod] "
    b"pages=4 vmalloc N1=4\n"
    b"0x0000000033333333-0x0000000044444444  266240 unpurged vm_area\n"
    b"0x0000000055555555-0x0000000066666666   16384 vm_map_ram\n"
)


@pytest.mark.parametrize("data", [
    _SHAPES,
    _SHAPES.rstrip(b"\n"),  # no final newline
    b"\n\n" + _SHAPES.replace(b"\n", b"\n\n\n"),  # blank lines
    _SHAPES.replace(b"   20480", b"\t20480"),  # tabs
    _SHAPES.replace(b"0x0000000077777777", b"0X77777777"),
    b"",
    b"0x1-0x2 4096 pages=1 vmalloc\n",  # no caller
    b"0x1-0x2 4096 kernel_clone pages=3 vmalloc\n",  # caller without an offset
    b"0x1-0x2 4096 dup_task_struct+0x1/0x2 pages=3 vmap\n",  # not a vmalloc area
    # pages= lines of other shapes: read by the full parser's line parser
    _SHAPES + b"0x1-0x2 4096 kernel_clone+0x1/0x2 pages=5 phys=0x10 vmalloc\n",
    _SHAPES + b"0x1-0x2 4096 kernel_clone+0x1/0x2 pages=5 vmalloc unpurged vm_area\n",
    _SHAPES + b"0x1-0x2 4096 vmalloc kernel_clone+1 pages=6 vmalloc\n",
    _SHAPES + b"0x1-0x2 4096 kernel_clone [a=b] pages=6 vmalloc\n",
    _SHAPES + b"0x1-0x2 4096 kernel_clone pages=6 pages=7 vmalloc\n",
])
def test_vmallocinfo_sums_are_the_full_parsers(data):
    areas = kernel.parse_vmallocinfo(data)
    got = kernel.vmallocinfo_sums(data)
    assert got == kernel.VmallocSums(kernel.vmalloc_pages_bytes(areas),
                                     kernel.stack_vmalloc_bytes(areas))


def test_vmallocinfo_sums_by_hand():
    # pages= of every area; the stacks are kernel_clone's and copy_process's.
    assert kernel.vmallocinfo_sums(_SHAPES) == kernel.VmallocSums(
        (4 + 2048 + 4) * 4096, (4 + 4) * 4096)
    assert kernel.vmallocinfo_sums(_SHAPES, page_size=16384).stack_bytes == 8 * 16384


@pytest.mark.parametrize("name", ["linux-6.18", "linux-3.10"])
def test_vmallocinfo_sums_of_recorded_kernels(name):
    data = fixture(name, "vmallocinfo")
    areas = kernel.parse_vmallocinfo(data)
    got = kernel.vmallocinfo_sums(data)
    assert got.pages_bytes == kernel.vmalloc_pages_bytes(areas)
    assert got.stack_bytes == kernel.stack_vmalloc_bytes(areas)
    if name == "linux-6.18":  # the kernel's own total (B.5)
        assert got.pages_bytes == meminfo_kb(name)["VmallocUsed"] * KIB


@pytest.mark.parametrize("data", [
    b"zz-yy 12 foo\n",
    _SHAPES + b"0x1-0x2 twelve foo pages=1 vmalloc\n",
    b" " + _SHAPES,  # a line of another shape: the full parser's verdict
    _SHAPES + b"0x1-0x2 4096 foo pages=many vmalloc\n",
    _SHAPES + b"0x1-0x2\n",
])
def test_vmallocinfo_sums_malformed(data):
    try:
        kernel.parse_vmallocinfo(data)
    except ParseError as exc:
        with pytest.raises(ParseError) as got:
            kernel.vmallocinfo_sums(data)
        assert str(got.value) == str(exc)
    else:  # leading blanks are whitespace to split(): both accept them
        areas = kernel.parse_vmallocinfo(data)
        assert kernel.vmallocinfo_sums(data).pages_bytes == kernel.vmalloc_pages_bytes(areas)

# --------------------------------------------------------------------------
# sockstat, iomem, config


def test_sockstat():
    s = kernel.parse_sockstat(fixture("linux-4.14-user", "net/sockstat"))
    assert s["TCP"] == {"inuse": 37, "orphan": 0, "tw": 12, "alloc": 45, "mem": 9}
    assert s["UDP"]["mem"] == 3
    assert kernel.sockstat_bytes(s) == (9 + 3) * 4096
    assert kernel.sockstat_bytes({"sockets": {"used": 1}}) is None


def test_iomem_system_ram_by_hand():
    # 0x1000-0x9fbff, 0x100000-0xdfffdfff, 0x100000000-0x11fffffff (ends inclusive)
    expected = 0x9EC00 + 0xDFEFE000 + 0x20000000
    assert kernel.parse_iomem_system_ram(fixture("linux-3.10", "iomem")) == expected


def test_iomem_hidden_addresses_are_unknown_not_zero():
    assert kernel.parse_iomem_system_ram(fixture("linux-4.14-user", "iomem")) is None


def test_config_option():
    text = b"# comment\nCONFIG_VMAP_STACK=y\n# CONFIG_KASAN is not set\nCONFIG_X=m\n"
    assert kernel.config_option(text, "VMAP_STACK") is True
    assert kernel.config_option(text, "KASAN") is False
    assert kernel.config_option(text, "X") is True
    assert kernel.config_option(text, "MISSING") is None


# --------------------------------------------------------------------------
# The columns


def test_columns_618_follow_b5():
    stats, notes = kernel.read_kernel_stats_with_notes(os.path.join(FIXTURES, "linux-6.18"))
    kb = meminfo_kb("linux-6.18")
    assert notes == ()
    assert stats.total_bytes == kb["MemTotal"] * KIB
    assert stats.free_bytes == kb["MemFree"] * KIB
    assert stats.vmo_bytes == (kb["Active"] + kb["Inactive"] + kb["Unevictable"]
                               + kb["Hugetlb"]) * KIB
    heap = kb["Slab"] + kb["VmallocUsed"] + kb["Percpu"] + kb["KReclaimable"] - kb["SReclaimable"]
    assert stats.total_heap_bytes == heap * KIB
    assert stats.mmu_overhead_bytes == (kb["PageTables"] + kb["SecPageTables"]) * KIB
    # Thread stacks are vmalloc'ed on this kernel, so KernelStack is not
    # subtracted a second time.
    assert stats.extra["kernel_stack_in_vmalloc"] == 1
    other = (kb["MemTotal"] - kb["MemFree"] - (stats.vmo_bytes // KIB) - heap
             - kb["PageTables"] - kb["SecPageTables"] - kb["Zswap"] - kb["Balloon"])
    assert stats.other_bytes == other * KIB
    # physical RAM from iomem minus MemTotal (B.5: 25165435 - 24684084 kB)
    assert stats.wired_bytes == (25165435 - 24684084) * KIB
    assert stats.ipc_bytes == 207 * 4096
    assert stats.free_heap_bytes == kernel.slab_free_bytes(
        kernel.parse_slabinfo(fixture("linux-6.18", "slabinfo")))
    assert stats.meminfo["MemTotal"] == kb["MemTotal"] * KIB


def test_old_kernel_nonroot_unknowns_are_none_with_notes():
    stats, notes = kernel.read_kernel_stats_with_notes(os.path.join(FIXTURES, "linux-4.14-user"))
    assert stats.free_heap_bytes is None  # no slabinfo
    assert stats.wired_bytes is None  # iomem without addresses
    assert stats.extra["vmalloc_used_bytes"] is None  # VmallocUsed: 0 on 4.4-5.2
    assert stats.extra["kernel_stack_in_vmalloc"] is None
    text = "\n".join(notes)
    for word in ("slabinfo", "iomem", "VmallocUsed", "thread stacks"):
        assert word in text
    # Everything known is still there and the remainder still closes the sum.
    kb = meminfo_kb("linux-4.14-user")
    assert stats.total_heap_bytes == (kb["Slab"] + kb["Percpu"]) * KIB
    assert stats.other_bytes == (kb["MemTotal"] - kb["MemFree"] - kb["Active"] - kb["Inactive"]
                                 - kb["Unevictable"] - kb["Slab"] - kb["Percpu"]
                                 - kb["KernelStack"] - kb["PageTables"]) * KIB


def test_linux_310_without_percpu_hugetlb_and_vmap_stacks():
    stats, notes = kernel.read_kernel_stats_with_notes(os.path.join(FIXTURES, "linux-3.10"))
    # Hugetlb from the default-size pool: 2 pages x 2048 kB.
    assert stats.extra["hugetlb_bytes"] == 2 * 2048 * KIB
    assert any("Hugetlb" in n for n in notes)
    assert any("Percpu" in n for n in notes)
    # vmallocinfo is readable and holds no thread stacks: stacks are apart.
    assert stats.extra["kernel_stack_in_vmalloc"] == 0
    assert stats.extra["kernel_stack_apart_bytes"] == 2592 * KIB
    assert stats.free_heap_bytes == 153856
    assert stats.other_bytes is not None and stats.other_bytes >= 0


def test_missing_fields_give_none_never_zero():
    stats, notes = kernel.read_kernel_stats_with_notes(os.path.join(FIXTURES, "no-memfree"))
    assert stats.free_bytes is None
    assert stats.mmu_overhead_bytes is None
    assert stats.other_bytes is None
    assert stats.ipc_bytes is None
    assert stats.total_bytes == meminfo_kb("no-memfree")["MemTotal"] * KIB
    assert any("MemFree" in n for n in notes) and any("PageTables" in n for n in notes)


def test_vmap_stack_from_config_when_vmallocinfo_is_denied(tmp_path):
    (tmp_path / "meminfo").write_bytes(fixture("linux-4.14-user", "meminfo"))
    (tmp_path / "config.gz").write_bytes(gzip.compress(b"CONFIG_VMAP_STACK=y\n"))
    stats, notes = kernel.read_kernel_stats_with_notes(str(tmp_path))
    assert stats.extra["kernel_stack_in_vmalloc"] == 1
    assert stats.extra["kernel_stack_apart_bytes"] == 0
    assert not any("thread stacks" in n for n in notes)


def test_vmallocused_zero_uses_vmallocinfo(tmp_path):
    (tmp_path / "meminfo").write_bytes(fixture("linux-4.14-user", "meminfo"))
    (tmp_path / "vmallocinfo").write_bytes(fixture("linux-3.10", "vmallocinfo"))
    stats, notes = kernel.read_kernel_stats_with_notes(str(tmp_path))
    assert stats.extra["vmalloc_used_bytes"] == (512 + 2048 + 8 + 800) * 4096
    assert any("vmallocinfo" in n for n in notes)


def test_known_stacks_skip_vmallocinfo(tmp_path):
    # 6.18: VmallocUsed is printed, so with what an earlier read found about
    # thread stacks the file is not read again (a broken one is not noticed)
    # and every counter is the same.
    for name in ("meminfo", "vmallocinfo"):
        (tmp_path / name).write_bytes(fixture("linux-6.18", name))
    first, _ = kernel.read_kernel_stats_with_notes(str(tmp_path))
    assert first.extra["kernel_stack_in_vmalloc"] == 1
    (tmp_path / "vmallocinfo").write_bytes(b"not vmallocinfo\n")
    again, notes = kernel.read_kernel_stats_with_notes(str(tmp_path), stacks_in_vmalloc=True)
    assert not any("vmallocinfo" in n for n in notes)
    assert again.extra["vmallocinfo_pages_bytes"] is None
    assert again.extra["kernel_stack_vmalloc_bytes"] is None
    skipped = {"vmallocinfo_pages_bytes", "kernel_stack_vmalloc_bytes"}
    assert {k: v for k, v in again.extra.items() if k not in skipped} == {
        k: v for k, v in first.extra.items() if k not in skipped}
    assert (again.total_heap_bytes, again.other_bytes) == (first.total_heap_bytes,
                                                           first.other_bytes)


def test_known_stacks_still_read_vmallocinfo_when_vmallocused_is_zero(tmp_path):
    # 4.4-5.2 print VmallocUsed 0: the file's sum is still needed.
    (tmp_path / "meminfo").write_bytes(fixture("linux-4.14-user", "meminfo"))
    (tmp_path / "vmallocinfo").write_bytes(fixture("linux-3.10", "vmallocinfo"))
    stats, _ = kernel.read_kernel_stats_with_notes(str(tmp_path), stacks_in_vmalloc=False)
    assert stats.extra["vmalloc_used_bytes"] == (512 + 2048 + 8 + 800) * 4096


def test_read_kernel_stats_needs_meminfo(tmp_path):
    with pytest.raises(OSError):
        kernel.read_kernel_stats(str(tmp_path))


# --------------------------------------------------------------------------
# CPU counters


def test_proc_stat():
    s = kernel.parse_proc_stat(
        b"cpu  5279 0 3135 68644 313 0 62 23 0 0\n"
        b"cpu0 2095 0 1249 35322 36 0 5 7 10 0\n"
        b"cpu1 3184 0 1885 33321 276 0 57 16 0 0\n"
        b"intr 200740 0 0\nctxt 400900\nbtime 1795652938\nprocesses 10445\n"
    )
    # guest (10) is already inside user: not added again
    assert s.cpus[0] == (2095 + 1249 + 35322 + 36 + 5 + 7, 35322 + 36)
    assert s.ctxt == 400900 and s.intr == 200740 and s.processes == 10445


def test_proc_stat_old_kernel_fewer_columns():
    s = kernel.parse_proc_stat(b"cpu0 10 0 5 100\nctxt 7\n")
    assert s.cpus[0] == (115, 100)


def test_interrupts_and_softirqs_join():
    stat = kernel.parse_proc_stat(fixture("linux-6.18", "stat"))
    irqs = kernel.parse_per_cpu_table(fixture("linux-6.18", "interrupts"))
    soft = kernel.parse_per_cpu_table(fixture("linux-6.18", "softirqs"))
    rows = kernel.cpu_counters(stat, irqs, soft)
    assert [r.cpu for r in rows] == [0, 1]
    assert rows[0].timer_irqs == irqs["LOC"][0]
    assert rows[1].generic_ipis == irqs["CAL"][1]
    assert rows[0].timer_callbacks == soft["TIMER"][0] + soft["HRTIMER"][0]
    assert rows[0].hw_irqs == sum(v[0] for k, v in irqs.items() if k.isdigit())
    # ERR/MIS rows carry one number: padded, not misread
    assert len(irqs["ERR"]) == 2


def test_cpu_counters_without_interrupt_tables():
    stat = kernel.parse_proc_stat(b"cpu0 10 0 5 100\n")
    (row,) = kernel.cpu_counters(stat, None, None)
    assert row.hw_irqs is None and row.timer_callbacks is None


def test_thread_size():
    assert kernel.thread_size("x86_64") == 16 * KIB
    assert kernel.thread_size("riscv64") is None


# --------------------------------------------------------------------------
# k ps: descriptor kinds and per-process kernel memory


@pytest.mark.parametrize(
    "link, kind",
    [
        (b"socket:[100971]", "sockets"),
        (b"pipe:[100973]", "pipes"),
        (b"anon_inode:[eventfd]", "eventfds"),
        (b"anon_inode:[timerfd]", "timerfds"),
        (b"anon_inode:[eventpoll]", "epoll"),
        (b"/memfd:kps-test (deleted)", "memfds"),
        (b"/etc/passwd", "files"),
        (b"/dev/null", "files"),
        (b"/tmp/x (deleted)", "files"),
        (b"anon_inode:inotify", "other"),
        (b"anon_inode:[signalfd]", "other"),
        (b"anon_inode:[pidfd]", "other"),
        (b"/dmabuf:frame", "other"),
        (b"net:[4026531840]", "other"),
    ],
)
def test_classify_fd_link(link, kind):
    assert kernel.classify_fd_link(link) == kind


def test_process_kernel_usage_of_recorded_workload():
    # The recorded workload opened, besides stdin/stdout pipes and stderr on
    # /dev/null: 2 files, a socketpair, a pipe, an eventfd, a memfd, a
    # timerfd, an epoll and an inotify instance, and ran 3 threads.
    rows, notes = kernel.read_process_kernel_usage(os.path.join(FIXTURES, "kps"),
                                                   stack_size=16 * KIB)
    by_pid = {r.pid: r for r in rows}
    assert sorted(by_pid) == [1, 12360, 12461]  # kthreadd (2) left out
    w = by_pid[12360]
    assert w.fd_kinds == {"files": 3, "sockets": 2, "pipes": 4, "eventfds": 1, "memfds": 1,
                          "timerfds": 1, "epoll": 1, "other": 1}
    assert w.fds == 14 and w.threads == 3 and w.kstack_bytes == 3 * 16 * KIB
    assert w.pte_bytes == 80 * KIB  # VmPTE:  80 kB in its status
    assert by_pid[12461].name == "kps\x1b[2Jevil"
    # PID 1's links were not readable: unknown, never 0
    assert by_pid[1].fd_kinds is None and by_pid[1].fds is None
    assert notes == ("descriptors of 1 process not readable (counts shown as -)",)


def test_process_kernel_usage_kernel_threads_and_unknown_stack_size():
    rows, notes = kernel.read_process_kernel_usage(os.path.join(FIXTURES, "kps"),
                                                   kernel_threads=True, stack_size=None)
    kthreadd = next(r for r in rows if r.pid == 2)
    assert kthreadd.kernel_thread and kthreadd.fds == 0 and kthreadd.pte_bytes == 0
    if kernel.thread_size() is None:
        assert kthreadd.kstack_bytes is None


def test_process_that_vanished_is_skipped(tmp_path):
    (tmp_path / "77").mkdir()  # no stat: exited between listing and reading
    rows, _ = kernel.read_process_kernel_usage(str(tmp_path), stack_size=16 * KIB)
    assert rows == []
