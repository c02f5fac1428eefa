"""The digest (spec fuchsia-tools §9.4, §9.9) on small synthetic snapshots.

Each snapshot is written for the test so the expected bucket of every VMO can
be worked out by hand from the algorithm: whole-name matches, process-major
order (first process, then buckets in file order), direct references only,
no-committed VMOs skipped, Undigested by sharing pool, Kernel and Orphaned
from the kernel counters.
"""

from __future__ import annotations

import json
from types import MappingProxyType

import pytest

from zxmem import digest as dg
from zxmem.errors import ZxmemError
from zxmem.model import Job, KernelStats, Process, Provenance, Snapshot, Vmo, VmoRef
from zxmem.views import digest as view

KIB = 1024
MIB = 1024 * KIB


def snap(processes, vmos, kernel=None, source="fuchsia-capture") -> Snapshot:
    """processes: [(koid, name, [vmo koids])]; vmos: [(koid, name, committed, parent, kind)]."""
    table = {}
    for v in vmos:
        koid, name, committed = v[:3]
        parent = v[3] if len(v) > 3 else 0
        kind = v[4] if len(v) > 4 else ("clone" if parent else "anon")
        table[koid] = Vmo(koid=koid, name=name, kind=kind, size_bytes=committed,
                          committed_bytes=committed, parent_koid=parent)
    procs = tuple(
        Process(koid=k, name=n, job_koid=1, vmo_refs=tuple(VmoRef(r, ()) for r in refs))
        for k, n, refs in processes
    )
    return Snapshot(Provenance(source=source), (Job(1, "root", 0),), procs, kernel,
                    MappingProxyType(table))


def buckets(*entries) -> tuple[dg.BucketSpec, ...]:
    return dg.parse_buckets(list(entries), "test.json")


def sizes(d: dg.Digest) -> dict[str, int]:
    return dict(d.rows())


KERNEL = KernelStats(total_bytes=64 * MIB, free_bytes=32 * MIB, vmo_bytes=10 * MIB,
                     total_heap_bytes=1 * MIB, wired_bytes=2 * MIB,
                     mmu_overhead_bytes=3 * KIB, ipc_bytes=4 * KIB, other_bytes=5 * KIB)


# ---------------------------------------------------------------------------
# Assignment


def test_buckets_by_process_and_vmo_name():
    s = snap(
        [(10, "fshost.cm", [1, 2]), (20, "netstack.cm", [3, 4])],
        [(1, "blob-abc", 4096), (2, "scudo:primary", 8192),
         (3, "blob-def", 12288), (4, "scudo:primary", 16384)],
    )
    d = dg.compute_digest(s, buckets(
        {"name": "Blobs", "vmo": "blob-.*"},
        {"name": "Fshost", "process": "fshost\\.cm"},
        {"name": "Netstack", "process": ["dhcpd\\.cm", "netstack\\.cm"]},
    ))
    assert sizes(d) == {"Blobs": 4096 + 12288, "Fshost": 8192, "Netstack": 16384,
                        "Undigested": 0}
    blobs = d.buckets[0]
    assert [(a.vmo_koid, a.process_koid) for a in blobs.vmos] == [(1, 10), (3, 20)]


def test_whole_name_must_match():
    s = snap([(10, "pkgfs-extra", [1]), (20, "pkgfs", [2])],
             [(1, "x", 100), (2, "blob", 200)])
    d = dg.compute_digest(s, buckets(
        {"name": "Pkgfs", "process": "pkgfs"},   # not a prefix match
        {"name": "Blob", "vmo": "blob-.*"},      # "blob" lacks the dash
    ))
    assert sizes(d)["Pkgfs"] == 200
    assert sizes(d)["Blob"] == 0
    assert sizes(d)["Undigested"] == 100


def test_overlapping_buckets_first_in_file_order_wins():
    s = snap([(10, "app", [1, 2])], [(1, "blob-1", 100), (2, "heap", 200)])
    d = dg.compute_digest(s, buckets(
        {"name": "Blobs", "vmo": "blob-.*"},
        {"name": "App", "process": "app"},
        {"name": "AlsoBlobs", "vmo": "blob-.*"},
    ))
    assert sizes(d) == {"Blobs": 100, "App": 200, "AlsoBlobs": 0, "Undigested": 0}


def test_shared_vmo_goes_with_the_first_process_not_the_first_bucket():
    # Process-major (the host scripts): process "a" is met first, so the VMO
    # both share lands in a's bucket although b's bucket comes first in the
    # file.  The C++ digester (bucket-major) would put it in "B".
    s = snap([(10, "a", [1, 2]), (20, "b", [1, 3])],
             [(1, "shared", 1000), (2, "a-own", 10), (3, "b-own", 20)])
    d = dg.compute_digest(s, buckets(
        {"name": "B", "process": "b"},
        {"name": "A", "process": "a"},
    ))
    assert sizes(d) == {"B": 20, "A": 1010, "Undigested": 0}
    # In the other process order, b takes it.
    s2 = snap([(20, "b", [1, 3]), (10, "a", [1, 2])],
              [(1, "shared", 1000), (2, "a-own", 10), (3, "b-own", 20)])
    assert sizes(dg.compute_digest(s2, buckets({"name": "B", "process": "b"},
                                               {"name": "A", "process": "a"}))) == \
        {"B": 1020, "A": 10, "Undigested": 0}


def test_zero_and_unknown_committed_are_skipped():
    s = snap([(10, "a", [1, 2, 3, 4])],
             [(1, "x", 0), (2, "x", None), (3, "x", 4096), (4, "dev", None, 0, "phys")])
    d = dg.compute_digest(s, buckets({"name": "X", "vmo": "x"}))
    assert sizes(d) == {"X": 4096, "Undigested": 0}
    assert d.unknown_vmos == 1  # the phys one uses no RAM: not unknown
    assert [a.vmo_koid for a in d.buckets[0].vmos] == [3]
    assert d.undigested == ()


def test_parent_chain_only_direct_references_are_digested():
    # 2 is a clone of 1, 3 a clone of 2; the process references only 3.
    # The digest takes direct references only: 1 and 2 are in no row, so
    # Orphaned (kernel VMO bytes minus rows) holds them.
    s = snap([(10, "a", [3])],
             [(1, "root", 1 * MIB), (2, "mid", 2 * MIB, 1), (3, "leaf", 3 * MIB, 2)],
             kernel=KERNEL)
    d = dg.compute_digest(s, buckets({"name": "Any"}))
    r = sizes(d)
    assert r["Any"] == 3 * MIB
    assert r["Undigested"] == 0
    assert r["Kernel"] == 2 * MIB + 1 * MIB + 3 * KIB + 4 * KIB + 5 * KIB
    assert r["Orphaned"] == 10 * MIB - 3 * MIB
    # The rows add up to the kernel's VMO bytes plus the kernel row.
    assert sum(r.values()) == 10 * MIB + r["Kernel"]


def test_undigested_grouped_by_sharing_pool():
    s = snap(
        [(30, "c", [5, 6]), (10, "a", [1, 2, 5]), (20, "b", [2, 3, 5])],
        [(1, "a1", 100), (2, "ab", 700), (3, "b1", 300), (5, "abc", 50), (6, "c1", 1)],
    )
    d = dg.compute_digest(s, buckets({"name": "None", "process": "nobody"}))
    pools = [(p.process_koids, p.size_bytes, p.vmo_koids) for p in d.undigested]
    # Larger pools first, then more bytes; processes by "name[koid]".
    assert pools == [
        ((10, 20, 30), 50, (5,)),
        ((10, 20), 700, (2,)),
        ((20,), 300, (3,)),
        ((10,), 100, (1,)),
        ((30,), 1, (6,)),
    ]
    assert d.undigested_bytes == 1151
    assert view.pool_label(d, (10, 20, 30)) == "a[10] ,b[20] ,c[30]"


def test_same_name_buckets_are_one_bucket():
    s = snap([(10, "a", [1]), (20, "b", [2])], [(1, "x", 1), (2, "y", 2)])
    d = dg.compute_digest(s, buckets({"name": "AB", "process": "a"},
                                     {"name": "Other", "process": "zzz"},
                                     {"name": "AB", "process": "b"}))
    assert d.rows() == [("AB", 3), ("Other", 0), ("Undigested", 0)]


def test_empty_pattern_matches_everything_and_lists_are_alternatives():
    s = snap([(10, "a", [1, 2])], [(1, "", 10), (2, "n", 20)])
    d = dg.compute_digest(s, buckets({"name": "All", "process": "", "vmo": ""}))
    assert sizes(d)["All"] == 30
    d = dg.compute_digest(s, buckets({"name": "L", "vmo": ["m", "n"]}))
    assert sizes(d)["L"] == 20
    # A list element holding its own alternation does not leak into the next.
    assert buckets({"name": "L", "vmo": ["a|b", "c"]})[0].vmo.fullmatch("ac") is None


def test_kind_extension():
    s = snap([(10, "a", [1, 2])],
             [(1, "/dev/shm/x", 10, 0, "shmem"), (2, "/srv/x", 20, 0, "file")])
    d = dg.compute_digest(s, buckets({"name": "Shm", "kind": ["shmem", "sysv"]},
                                     {"name": "Files", "kind": "file"}))
    assert sizes(d) == {"Shm": 10, "Files": 20, "Undigested": 0}


def test_no_kernel_stats_no_kernel_or_orphaned_rows():
    s = snap([(10, "a", [1])], [(1, "x", 10)])
    d = dg.compute_digest(s, ())
    assert d.kernel_bytes is None and d.orphaned_bytes is None
    assert d.rows() == [("Undigested", 10)]
    partial = KernelStats(vmo_bytes=100, wired_bytes=None)
    d = dg.compute_digest(snap([(10, "a", [1])], [(1, "x", 10)], kernel=partial), ())
    assert d.kernel_bytes is None and d.orphaned_bytes == 90


# ---------------------------------------------------------------------------
# Output


def _example() -> tuple[Snapshot, dg.Digest]:
    s = snap(
        [(10, "fshost.cm", [1, 2, 5]), (20, "web", [2, 3]), (30, "x\x1b[31m", [4, 5])],
        [(1, "blob-1", 3 * MIB + 512 * KIB), (2, "shared", 1535),
         (3, "v8", 9 * MIB + 792 * KIB), (4, "y", 1023), (5, "lib", 1536)],
        kernel=KERNEL,
    )
    return s, dg.compute_digest(s, buckets({"name": "Blobs", "vmo": "blob-.*"},
                                           {"name": "Web", "process": "web"},
                                           {"name": "Empty", "process": "none"}))


# By hand: fshost.cm is met first; only Blobs matches for it and takes
# blob-1.  "shared" stays for web, whose Web bucket takes it with v8.  "lib"
# (fshost.cm and x) and "y" (x) match no bucket of their processes.
WEB = 9 * MIB + 792 * KIB + 1535
UNDIGESTED = 1536 + 1023
KERNEL_ROW = 2 * MIB + 1 * MIB + 3 * KIB + 4 * KIB + 5 * KIB
ORPHANED = 10 * MIB - (3 * MIB + 512 * KIB) - WEB - UNDIGESTED


def test_human_output():
    _, d = _example()
    assert ORPHANED == -3_436_542
    assert view.render_human(d) == (
        "Blobs: 3.5MiB\n"
        "Kernel: 3.012MiB\n"
        "Orphaned: -3.277MiB\n"
        "Undigested: 2.499KiB\n"
        "Web: 9.775MiB\n"
        "\n"
        "Total: 13.01MiB\n"
        "\n"
        "Undigested:\n"
        "\tfshost.cm[10] ,x\\e[31m[30]: 1.5KiB\n"
        "\tx\\e[31m[30]: 1023B\n"
    )


def test_csv_output_keeps_zero_rows_sorted_by_name():
    _, d = _example()
    assert view.render_csv(d) == (
        f"Blobs, {3 * MIB + 512 * KIB}\n"
        "Empty, 0\n"
        f"Kernel, {KERNEL_ROW}\n"
        f"Orphaned, {ORPHANED}\n"
        f"Undigested, {UNDIGESTED}\n"
        f"Web, {WEB}\n"
    )


def test_json_output():
    s, d = _example()
    doc = json.loads(view.render_json(d, s))
    assert [b["name"] for b in doc["buckets"]] == ["Blobs", "Web", "Empty"]
    assert doc["buckets"][1]["vmos"] == [
        {"koid": 2, "name": "shared", "kind": "anon", "committed_bytes": 1535,
         "process_koid": 20},
        {"koid": 3, "name": "v8", "kind": "anon", "committed_bytes": 9 * MIB + 792 * KIB,
         "process_koid": 20}]
    assert doc["undigested"][0]["processes"] == [{"koid": 10, "name": "fshost.cm"},
                                                 {"koid": 30, "name": "x\x1b[31m"}]
    assert doc["total_bytes"] == sum(r["size_bytes"] for r in doc["rows"])
    assert doc["total_bytes"] == KERNEL.vmo_bytes + doc["kernel_bytes"]


def test_undigested_summary_in_human_output():
    from zxmem.summary import summarize

    s, d = _example()
    text = view.render_human(d, summarize(s, d.undigested_vmo_koids))
    tail = text.split("\n\n")[-1]
    # lib is shared by fshost.cm and x: 768 B scaled each.
    assert tail == (
        "5 VMOs, 2 Undigested\n"
        "2 Process summaries\n"
        "x\\e[31m<30> 1023B 1.8K 2.5K\n"
        " y 1023B\n"
        " lib 0B 768B 1.5K\n"
        "fshost.cm<10> 0B 768B 1.5K\n"
        " lib 0B 768B 1.5K\n"
    )


# ---------------------------------------------------------------------------
# Bucket files


@pytest.mark.parametrize(
    "doc, message",
    [
        ("[{\"name\": \"A\"},", "test.json: invalid JSON at line 1 column 16: expecting value"),
        ('{"name": "A"}', "test.json: expected a JSON array of buckets"),
        ('[{"name": "A"}, {"process": "x"}]', "test.json: bucket 1: missing 'name'"),
        ('[{"name": ""}]', "test.json: bucket 0: 'name' must be a non-empty string"),
        ('[{"name": "A"}, {"name": "Bad", "vmo": "blob-(["}]',
         'test.json: bucket 1 "Bad": invalid vmo regular expression "blob-([": '),
        ('[{"name": "Bad", "process": ["ok", "x{2,1}"]}]',
         'test.json: bucket 0 "Bad": invalid process regular expression "x{2,1}": '),
        ('[{"name": "N", "process": 3}]',
         "test.json: bucket 0 \"N\": 'process' must be a regular expression or a list"),
        ('["A"]', "test.json: bucket 0: expected an object"),
        ('[{"name": "Kernel"}]', 'test.json: bucket 0 "Kernel": the name is reserved'),
    ],
)
def test_bad_bucket_files(doc, message):
    with pytest.raises(ZxmemError) as exc:
        dg.load_buckets(doc, "test.json")
    assert str(exc.value).startswith(message), str(exc.value)
    assert "\n" not in str(exc.value)


def test_bad_bucket_file_through_the_cli(cli, tmp_path):
    bad = tmp_path / "b.json"
    bad.write_text('[{"name": "Blobs", "vmo": "blob-.*"}, {"name": "Web", "process": "(web"}]')
    r = cli(["digest", "--buckets", str(bad), "--proc-root", str(tmp_path)])
    assert r.status == 1
    assert r.stdout == ""
    assert r.stderr == (f'zxmem: {bad}: bucket 1 "Web": invalid process regular expression '
                        '"(web": missing ), unterminated subpattern at position 0\n')
    r = cli(["digest", "--buckets", str(tmp_path / "missing.json")])
    assert r.status == 1 and "No such file" in r.stderr and "Traceback" not in r.stderr


def test_fixture_bucket_files_load():
    import os

    import fixture_paths

    d = str(fixture_paths.CAPTURE_DIR)
    if not os.path.isdir(d):
        pytest.skip("the shared Fuchsia capture fixtures are not here")
    a = dg.read_bucket_file(os.path.join(d, "example_buckets.json"))
    b = dg.read_bucket_file(os.path.join(d, "test_digest.json"))
    assert [s.name for s in a][:11] == [s.name for s in b]
    # The string form "x|y" and the list form ["x", "y"] match the same names.
    net_a, net_b = a[3], b[3]
    for name in ("netstack.cm", "netcfg-basic.cm", "mdns.cmx", "netstack", "xnetstack.cm"):
        assert net_a.matches_process(name) == net_b.matches_process(name)


# ---------------------------------------------------------------------------
# The Linux bucket file


def test_linux_buckets_place_linux_objects():
    vmos = [
        (1, "memfd:wayland-shm", 4 * KIB, 0, "memfd"),
        (2, "/usr/lib/x86_64-linux-gnu/libc.so.6", 1 * MIB, 0, "file"),
        (3, "data:libc.so.6", 8 * KIB, 2, "clone"),
        (4, "[heap]", 64 * KIB, 0, "anon"),
        (5, "[stack]", 132 * KIB, 0, "anon"),
        (6, "mmap-anonymous", 2 * MIB, 0, "anon"),
        (7, "/usr/bin/bash", 900 * KIB, 0, "file"),
        (8, "/dev/shm/pulse-shm-1", 64 * KIB, 0, "shmem"),
        (9, "[heap]", 5 * MIB, 0, "anon"),
        (10, "/usr/bin/python3.11", 3 * MIB, 0, "file"),
        (11, "memfd:doublemapper (deleted)", 1 * MIB, 0, "memfd"),
        (12, "[vdso]", 8 * KIB, 0, "anon"),
        (13, "/usr/lib/python3.11/lib-dynload/_ssl.cpython-311-x86_64-linux-gnu.so",
         100 * KIB, 0, "file"),
        (14, "[anon:glibc: malloc arena]", 128 * KIB, 0, "anon"),
    ]
    s = snap([(100, "bash", [1, 2, 3, 4, 5, 6, 7, 8, 12, 14]),
              (200, "python3.11", [2, 9, 10, 11, 13])], vmos, source="linux")
    d = dg.compute_digest(s, dg.default_linux_buckets())
    where = {a.vmo_koid: b.name for b in d.buckets for a in b.vmos}
    assert where == {
        1: "Memfd", 2: "Shared libraries", 3: "Shared libraries", 4: "Heaps",
        5: "Stacks", 6: "Anonymous", 7: "Mapped files", 8: "Shared memory",
        9: "Python", 10: "Python", 11: "JIT", 12: "Kernel-provided pages",
        13: "Shared libraries", 14: "Heaps",
    }
    assert d.undigested == ()


def test_user_buckets_come_before_the_defaults():
    s = snap([(100, "bash", [1, 2])],
             [(1, "[heap]", 10, 0, "anon"), (2, "/usr/lib/libz.so.1", 20, 0, "file")],
             source="linux")
    mine = buckets({"name": "Shell", "process": "bash|zsh"})
    d = dg.compute_digest(s, dg.combine(mine, dg.default_linux_buckets()))
    assert sizes(d)["Shell"] == 30
    assert sizes(d)["Heaps"] == 0


def test_cli_on_a_saved_linux_snapshot_uses_the_linux_buckets(cli, tmp_path):
    from zxmem.memgraph import dumps

    s = snap([(100, "bash", [1, 2]), (200, "python3", [3])],
             [(1, "[heap]", 8 * KIB, 0, "anon"), (2, "/usr/lib/libc.so.6", 1 * MIB, 0, "file"),
              (3, "mmap-anonymous", 2 * MIB, 0, "anon")],
             kernel=KERNEL, source="linux")
    saved = tmp_path / "snap.json"
    saved.write_text(dumps(s, vmos=True))
    r = cli(["digest", "--from", str(saved), "--output", "csv"])
    assert r.status == 0, r.stderr
    rows = dict(line.split(", ") for line in r.stdout.splitlines())
    assert rows["Heaps"] == str(8 * KIB)
    assert rows["Shared libraries"] == str(1 * MIB)
    assert rows["Python"] == str(2 * MIB)
    assert rows["Undigested"] == "0"
    mine = tmp_path / "mine.json"
    mine.write_text('[{"name": "Shell", "process": "bash"}]')
    r = cli(["digest", "--from", str(saved), "--buckets", str(mine), "--no-default-buckets",
             "--output", "csv"])
    assert r.stdout == (f"Kernel, {KERNEL_ROW}\nOrphaned, {10 * MIB - 8 * KIB - MIB - 2 * MIB}\n"
                        f"Shell, {8 * KIB + MIB}\nUndigested, {2 * MIB}\n")
    r = cli(["digest", "--from", str(saved), "--no-default-buckets"])
    assert r.status == 2 and r.stderr == "zxmem digest: --buckets FILE is required\n"
