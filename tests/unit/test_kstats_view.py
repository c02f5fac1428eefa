"""kstats layouts (spec fuchsia-tools §7, the seed's sample) and the
reconciliation with MemTotal."""

from __future__ import annotations

import calendar

from zxmem.model import KernelStats
from zxmem.sources.kernel import CpuCounters, ProcStat
from zxmem.views import kstats as view

MIB = 1 << 20


def mib(x: float) -> int:
    return round(x * MIB)


def test_classic_layout_reproduces_the_seed_sample():
    stats = KernelStats(
        total_bytes=mib(2046.9), free_bytes=mib(1943.8), vmo_bytes=mib(20.7),
        total_heap_bytes=mib(1.1) + mib(0.9), free_heap_bytes=mib(0.9),
        wired_bytes=mib(72.6), mmu_overhead_bytes=mib(7.8),
    )
    assert view.render_memory(stats) == (
        "     total       free       VMOs      kheap      kfree      wired        mmu\n"
        "   2046.9M    1943.8M      20.7M       1.1M       0.9M      72.6M       7.8M\n"
    )


def test_late_layout_reproduces_the_spec_sample():
    stats = KernelStats(
        total_bytes=2048 * MIB, free_bytes=mib(1686.4), vmo_bytes=mib(317.8),
        total_heap_bytes=mib(5.1) + mib(0.9), free_heap_bytes=mib(0.9),
        wired_bytes=mib(17.8), mmu_overhead_bytes=mib(20.0) + 1, ipc_bytes=mib(0.1),
        other_bytes=mib(0.01),
    )
    assert view.render_memory(stats, "late") == (
        "mem total      free      VMOs     kheap     kfree     wired       mmu"
        "       ipc     other\n"
        "    2048M   1686.4M    317.8M      5.1M      0.9M     17.8M     20.0M"
        "      0.1M      0.0M \n"
    )


def test_unknown_values_print_dash():
    stats = KernelStats(total_bytes=MIB, total_heap_bytes=3 * MIB)
    lines = view.render_memory(stats, "late").splitlines()
    values = lines[1].split()
    # kheap falls back to the whole heap when kfree is unknown
    assert values == ["1M", "-", "-", "3M", "-", "-", "-", "-", "-"]


def test_timestamp_line_is_utc_with_milliseconds():
    epoch = calendar.timegm((2017, 6, 7, 5, 51, 8)) + 0.021
    assert view.timestamp_line(epoch) == "--- 2017-06-07T05:51:08.021Z ---"
    assert view.timestamp_line(epoch + 0.9996) == "--- 2017-06-07T05:51:09.021Z ---"


def _stats(**kw) -> KernelStats:
    kb = {"MemTotal": 1000, "MemFree": 400, "Active": 200, "Inactive": 100, "Unevictable": 10,
          "Hugetlb": 0, "Slab": 80, "VmallocUsed": 20, "Percpu": 5, "KReclaimable": 70,
          "SReclaimable": 60, "KernelStack": 8, "PageTables": 12, "SecPageTables": 0,
          "Zswap": 3, "AnonPages": 150, "Cached": 150, "Buffers": 10, "SwapCached": 0}
    kb.update(kw)
    meminfo = {k: v * 1024 for k, v in kb.items()}
    other = 1000 - 400 - 310 - (80 + 20 + 5 + 10) - 8 - 12 - 3
    return KernelStats(
        total_bytes=1000 * 1024, free_bytes=400 * 1024, vmo_bytes=310 * 1024,
        total_heap_bytes=115 * 1024, free_heap_bytes=2048, mmu_overhead_bytes=12 * 1024,
        other_bytes=other * 1024, ipc_bytes=4096, wired_bytes=None, meminfo=meminfo,
        extra={"lru_bytes": 310 * 1024, "hugetlb_bytes": 0, "vmalloc_used_bytes": 20 * 1024,
               "kreclaimable_other_bytes": 10 * 1024, "kernel_stack_in_vmalloc": 0,
               "kernel_stack_apart_bytes": 8 * 1024, "tcp_mem_pages": 1, "udp_mem_pages": 0,
               "frag_memory_bytes": 0},
    )


def test_explain_terms_add_up_to_memtotal_with_explicit_remainder():
    stats = _stats()
    terms = view.reconciliation_terms(stats)
    assert sum(t.value_bytes for t in terms) == stats.total_bytes
    assert terms[-1].name == "remainder" and terms[-1].value_bytes == 152 * 1024
    text = view.render_explain(stats)
    assert "remainder" in text and "152" in text
    assert "sum of the terms = 1000 kB = MemTotal exactly" in text
    assert "wired   unknown" in text
    assert "AnonPages + Cached + Buffers + SwapCached 310 kB" in text


def test_explain_with_unknown_term_says_it_cannot_check():
    stats = _stats()
    stats = KernelStats(**{**{f: getattr(stats, f) for f in stats.__slots__}, "other_bytes": None})
    text = view.render_explain(stats)
    assert "cannot be checked" in text and "remainder" in text


def test_cpu_rows_first_report_since_boot_then_deltas():
    s0 = ProcStat({0: (1000, 900), 1: (1000, 500)}, ctxt=100, intr=None, processes=None)
    c0 = (CpuCounters(0, 1000, 900, 10, 20, 30, 40, 50), CpuCounters(1, 1000, 500))
    rows = view.cpu_rows(s0, c0)
    assert rows[0].load_hundredths == 1000  # 10.00 %
    assert rows[1].load_hundredths == 5000
    assert rows[2].label == "all" and rows[2].load_hundredths == 3000 and rows[2].cs == 100
    assert rows[0].hw == 10 and rows[1].hw is None and rows[2].hw is None

    s1 = ProcStat({0: (1100, 975), 1: (1100, 600)}, ctxt=160, intr=None, processes=None)
    c1 = (CpuCounters(0, 1100, 975, 13, 25, 31, 41, 52), CpuCounters(1, 1100, 600))
    rows = view.cpu_rows(s1, c1, s0, c0)
    assert rows[0].load_hundredths == 2500
    assert rows[1].load_hundredths == 0
    assert (rows[0].hw, rows[0].tmr, rows[0].tmr_cb, rows[0].rs, rows[0].gen) == (3, 5, 1, 1, 2)
    assert rows[2].cs == 60
    text = view.render_cpu(rows)
    lines = text.splitlines()
    assert lines[0] == view.CPU_HEADER
    assert lines[1] == ("  0  25.00%         -    -     -         -      -     -     -        3"
                        "    5      1        1    2")


def test_kps_header_has_the_zircon_shape():
    from zxmem.views import kps

    # spec §8.3: id in 7, total in 4 and a colon, first count in 4, others in 3
    assert kps.header().startswith("     id   #h:  #fi #so #pi #ev #mf #tm #ep #??")


def test_kps_row_and_totals_keep_unknown_apart():
    from zxmem.sources.kernel import ProcessKernelUsage
    from zxmem.views import kps

    kinds = dict.fromkeys(("files", "sockets", "pipes", "eventfds", "memfds", "timerfds",
                           "epoll", "other"), 1)
    known = ProcessKernelUsage(10, "a\nb", False, 2, kinds, 8192, 32768)
    unknown = ProcessKernelUsage(11, "c", False, None, None, None, None)
    assert kps.row(known) == ("     10    8:    1   1   1   1   1   1   1   1     8k    32k "
                              "[a\\nb]")
    assert kps.row(unknown).startswith("     11    -:    -   -")
    t = kps.totals([known, unknown])
    assert t["fds"] == 8 and t["unreadable"] == 1 and t["kstack_bytes"] == 32768
    assert kps.totals([unknown])["fds"] is None
