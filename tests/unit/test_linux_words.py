"""Linux words where Fuchsia's mean nothing to a Linux user (issue 17)."""

from __future__ import annotations

from datetime import timedelta, timezone

from zxmem.digest import Digest
from zxmem.model import KernelStats, Provenance, Snapshot
from zxmem.views import digest as digest_view
from zxmem.views import mem as mem_view

GiB = 1 << 30


def _snap(source: str, **prov) -> Snapshot:
    return Snapshot(Provenance(source, **prov), (), (),
                    kernel=KernelStats(total_bytes=8 * GiB, free_bytes=GiB, vmo_bytes=2 * GiB))


def test_mem_time_is_a_local_date_from_boot_nanoseconds():
    # Captured at 10:00:00 UTC, 1000 s after boot; a Time 400 s after boot is
    # 600 s before the capture: 09:50:00 UTC, 11:50:00 at UTC+2.
    snap = _snap("linux", timestamp="2026-12-03T10:00:00.000Z",
                 capture_time_ns=1000 * 10**9)
    assert mem_view.wall_time(snap, 400 * 10**9) == 1796291400.0
    plus2 = timezone(timedelta(hours=2), "CEST")
    line = mem_view.header(snap, 400 * 10**9, tz=plus2)
    assert line.startswith("Time: 2026-12-03 11:50:00 CEST (400s after boot) VMO: 2G")


def test_mem_time_without_wall_clock_stays_fuchsias_nanoseconds():
    snap = _snap("fuchsia-capture", capture_time_ns=5)
    assert mem_view.header(snap, 678019958133).startswith("Time: 678019958133 VMO:")
    assert mem_view.header(_snap("linux"), None).startswith("Time: - VMO:")


def _digest(orphaned: int | None) -> Digest:
    return Digest(buckets=(), undigested=(), undigested_bytes=0, kernel_bytes=None,
                  orphaned_bytes=orphaned, vmo_count=0, unknown_vmos=0, process_names={})


def test_digest_explains_orphaned_on_linux_only():
    linux = _snap("linux")
    text = digest_view.render_human(_digest(3 * GiB), snapshot=linux)
    assert "Orphaned: 3GiB\n" in text
    assert "page cache no process maps" in text
    assert all(len(line) <= 80 for line in text.splitlines())
    fuchsia = digest_view.render_human(_digest(3 * GiB), snapshot=_snap("fuchsia-capture"))
    assert "page cache" not in fuchsia
    assert "page cache" not in digest_view.render_human(_digest(-5), snapshot=linux)


def test_user_mode_root_is_users_without_its_placeholder_koid():
    from zxmem.model import Job, MemoryCounts, Process
    from zxmem.tasktree import TaskTree
    from zxmem.views.ps import PsOptions, render

    snap = Snapshot(Provenance("linux", job_mode="user"),
                    (Job(0xFFFFFFFF, "users", 0, path=""), Job(1000, "alice", 0xFFFFFFFF)),
                    (Process(7, "sh", 1000, memory=MemoryCounts(pss_bytes=4096,
                                                               private_bytes=4096,
                                                               shared_bytes=0)),))
    out = render(list(TaskTree(snap).walk()), PsOptions(jobs_only=True))
    assert out.splitlines()[1:3] == ["j:*           4k      4k users",
                                     "  j:1000      4k      4k alice"]
    assert "4294967295" not in out


def test_kstats_without_a_flag_means_memory(cli):
    import os

    here = os.path.dirname(os.path.abspath(__file__))
    root = os.path.join(os.path.dirname(here), "fixtures", "kernel", "linux-6.18")
    plain = cli(["kstats", "-n", "1", "--proc-root", root])
    m = cli(["kstats", "-m", "-n", "1", "--proc-root", root])
    assert plain.status == 0, plain.stderr
    assert plain.stdout == m.stdout and "total" in plain.stdout


def test_k_asd_lists_the_valid_word(cli):
    r = cli(["k", "asd", "foo"])
    assert r.status == 2
    assert "the one valid word is 'kernel'" in r.stderr
