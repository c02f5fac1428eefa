"""The smaps/maps parsers: layout, edge cases, and the fast path's fallbacks."""

from __future__ import annotations

import os

import pytest

from zxmem.sources import procfs, smaps


def _vma(header: str, rss: int = 4, anon: int = 0, flags: str = "rd wr mr mw me ac",
         extra: str = "") -> str:
    """One smaps entry as Linux 6.18 prints it (values in kB)."""
    body = (
        f"Size:                  8 kB\n"
        f"KernelPageSize:        4 kB\n"
        f"MMUPageSize:           4 kB\n"
        f"Rss:            {rss:>8} kB\n"
        f"Pss:            {rss:>8} kB\n"
        f"Pss_Dirty:             0 kB\n"
        f"Shared_Clean:          0 kB\n"
        f"Shared_Dirty:          0 kB\n"
        f"Private_Clean:  {rss - anon:>8} kB\n"
        f"Private_Dirty:  {anon:>8} kB\n"
        f"Referenced:            4 kB\n"
        f"Anonymous:      {anon:>8} kB\n"
        f"KSM:                   0 kB\n"
        f"LazyFree:              0 kB\n"
        f"AnonHugePages:         0 kB\n"
        f"ShmemPmdMapped:        0 kB\n"
        f"FilePmdMapped:         0 kB\n"
        f"Shared_Hugetlb:        0 kB\n"
        f"Private_Hugetlb:       0 kB\n"
        f"Swap:                  0 kB\n"
        f"SwapPss:               0 kB\n"
        f"Locked:                0 kB\n"
        f"THPeligible:           0\n"
        f"{extra}"
        f"VmFlags: {flags} \n"
    )
    return header + "\n" + body


def _header(start: int, end: int, perms: str, offset: int, dev: str, inode: int,
            path: str = "") -> str:
    fixed = f"{start:08x}-{end:08x} {perms} {offset:08x} {dev} {inode} "
    if not path:
        return fixed
    return fixed.ljust(72) + " " + path


LIBC = "/usr/lib/x86_64-linux-gnu/libc.so.6"
SAMPLE = (
    _vma(_header(0x7F0000000000, 0x7F0000002000, "r-xp", 0, "fe:00", 1234, LIBC), rss=8)
    + _vma(_header(0x7F0000002000, 0x7F0000004000, "rw-p", 0x2000, "fe:00", 1234, LIBC),
           rss=8, anon=4)
    + _vma(_header(0x7F0000004000, 0x7F0000006000, "rw-p", 0, "00:00", 0), rss=4, anon=4)
    + _vma(_header(0x7F0000006000, 0x7F0000008000, "rw-s", 0, "00:01", 77,
                   "/memfd:my buf (deleted)"), rss=8, flags="rd wr sh mr mw me ms")
    + _vma(_header(0x7F0000008000, 0x7F000000A000, "r--p", 0, "00:00", 0, "[vvar]"),
           rss=0, flags="rd mr pf io de dd")
).encode()


def test_parse_smaps_columns():
    t = smaps.parse_smaps(SAMPLE)
    assert len(t) == 5
    assert t.starts[0] == 0x7F0000000000 and t.ends[-1] == 0x7F000000A000
    assert t.perms == ["r-xp", "rw-p", "rw-p", "rw-s", "r--p"]
    assert t.offsets[1] == 0x2000
    assert t.devs[0] == os.makedev(0xFE, 0) and t.devs[3] == os.makedev(0, 1)
    assert t.inodes == [1234, 1234, 0, 77, 0]
    assert t.paths == [LIBC, LIBC, "", "/memfd:my buf (deleted)", "[vvar]"]
    assert t.fields["Rss"] == [8192, 8192, 4096, 8192, 0]
    assert t.fields["Anonymous"] == [0, 4096, 4096, 0, 0]
    assert t.fields["Private_Dirty"] == [0, 4096, 4096, 0, 0]
    assert t.vm_flags[3] == "rd wr sh mr mw me ms"
    assert "pf" in t.vm_flags[4].split()


def test_rss_sum_agrees_with_summing_parser():
    t = smaps.parse_smaps(SAMPLE)
    assert sum(t.fields["Rss"]) == procfs.sum_smaps(SAMPLE)[b"Rss"]


@pytest.mark.parametrize("piece", [1, 7, 100, 4096])
def test_stream_in_pieces_equals_whole(piece):
    whole = smaps.parse_smaps(SAMPLE * 3)
    stream = smaps.SmapsStream(batch=256)
    for i in range(0, len(SAMPLE * 3), piece):
        stream.feed((SAMPLE * 3)[i : i + piece])
    t = stream.finish()
    assert t.starts == whole.starts
    assert t.fields == whole.fields
    assert t.vm_flags == whole.vm_flags
    assert t.paths == whole.paths


def test_keys_subset():
    t = smaps.parse_smaps(SAMPLE, ("Rss",))
    assert list(t.fields) == ["Rss"]


def test_vmas_with_different_keys_fall_back():
    # A VMA with an extra key (ProtectionKey on pkeys CPUs, varying here)
    # breaks the equal-blocks layout; the slow path still parses it.
    data = (
        _vma(_header(0x1000, 0x3000, "r--p", 0, "00:00", 0), rss=4)
        + _vma(_header(0x3000, 0x5000, "rw-p", 0, "00:00", 0), rss=8,
               extra="ProtectionKey:         0\n")
    ).encode()
    t = smaps.parse_smaps(data)
    assert t.fields["Rss"] == [4096, 8192]
    assert t.starts == [0x1000, 0x3000]


def test_empty_smaps():
    t = smaps.parse_smaps(b"")
    assert len(t) == 0


def test_maps_anonymous_line_has_trailing_space():
    t = smaps.parse_maps(b"7f3ae34cc000-7f3ae34cd000 r--p 00000000 00:00 0 \n")
    assert t.paths == [""] and t.inodes == [0]


def test_maps_without_trailing_space_and_short_lines():
    t = smaps.parse_maps(b"00400000-00452000 r-xp 00000000 08:02 173521\n")
    assert t.paths == [""] and t.starts == [0x400000]


def test_maps_path_with_spaces_newline_and_deleted():
    line = _header(0x7F0000000000, 0x7F0000001000, "rw-s", 0, "00:01", 5,
                   "/tmp/a b\\012c (deleted)")
    t = smaps.parse_maps((line + "\n").encode())
    assert t.paths == ["/tmp/a b\nc (deleted)"]


def test_maps_long_fixed_fields_fall_back():
    # A 20-digit inode and kernel-half addresses push the path past column 73.
    line = ("ffffffffff600000-ffffffffff601000 --xp 00000000 103:02 "
            "18446744073709551615 /some/file")
    t = smaps.parse_maps((line + "\n").encode())
    assert t.paths == ["/some/file"]
    assert t.inodes == [18446744073709551615]
    assert t.devs == [os.makedev(0x103, 2)]


def test_invalid_utf8_path_is_escaped():
    line = _header(0x1000, 0x2000, "r--p", 0, "fe:00", 9, "/x") .encode() + b"\xff\n"
    t = smaps.parse_maps(line)
    assert t.paths == ["/x\\xff"]


def test_malformed_header():
    with pytest.raises(smaps.SmapsError):
        smaps.parse_maps(b"garbage\n")


def test_maps_in_pieces_equals_whole():
    lines = "".join(
        _header(0x7F0000000000 + i * 0x1000, 0x7F0000001000 + i * 0x1000,
                "rw-p" if i % 2 else "r--p", 0, "fe:00" if i % 3 else "00:00",
                i if i % 3 else 0, f"/lib/f{i}.so" if i % 3 else "") + "\n"
        for i in range(200)
    ).encode()
    whole = smaps.parse_maps(lines)
    for piece in (1, 100, 4096):
        t = smaps.parse_maps(lines, piece=piece)
        assert (t.starts, t.ends, t.perms, t.devs, t.inodes, t.paths) == (
            whole.starts, whole.ends, whole.perms, whole.devs, whole.inodes, whole.paths)
    assert len(whole) == 200 and whole.paths[1] == "/lib/f1.so" and whole.paths[3] == ""


def test_resident_runs_are_attributed_like_smaps():
    from zxmem.sources.objects import attribute_runs

    t = smaps.parse_maps(
        (_header(0x10000, 0x14000, "r-xp", 0, "fe:00", 5, "/lib/a.so") + "\n"
         + _header(0x14000, 0x16000, "rw-p", 0x4000, "fe:00", 5, "/lib/a.so") + "\n"
         + _header(0x20000, 0x30000, "rw-p", 0, "00:00", 0) + "\n").encode()
    )
    file_, present_zero = 1 << 2, 1 << 5
    runs = [
        0x10000, 0x15000, file_,  # a file run across two VMAs
        0x15000, 0x16000, 0,  # a copy-on-write page of the data segment
        0x20000, 0x22000, 0,  # anonymous pages
        0x22000, 0x24000, present_zero,  # the shared zero page: not in Rss
    ]
    attribute_runs(t, runs)
    assert t.fields["Rss"] == [0x4000, 0x2000, 0x2000]
    assert t.fields["Anonymous"] == [0, 0x1000, 0x2000]


def test_value_lines_are_known_by_key_and_checked():
    # The fast path looks each value line up whole in a per-key dict; a line
    # seen before must give the same count, a line of another key or a
    # malformed number must not be taken from it (the line-by-line parse
    # then reads what it can, as before).
    one = _vma(_header(0x1000, 0x3000, "r--p", 0, "00:00", 0), rss=12, anon=12)
    first = smaps.parse_smaps((one * 2).encode())
    again = smaps.parse_smaps((one * 2).encode())
    assert first.fields["Rss"] == again.fields["Rss"] == [12 * 1024] * 2
    assert first.fields["Anonymous"] == [12 * 1024] * 2
    # Rss and Pss print the same number: the Pss column is Pss's own lines.
    swapped = one.replace(f"Pss:{12:>20} kB", f"Pss:{8:>20} kB")
    assert swapped != one
    t = smaps.parse_smaps((one + swapped).encode())
    assert t.fields["Pss"] == [12 * 1024, 8 * 1024] and t.fields["Rss"] == [12 * 1024] * 2
    bad = one.replace(f"Rss:{12:>20} kB", f"Rss:{'1x2':>20} kB")
    assert bad != one
    with pytest.raises(smaps.SmapsError):
        smaps.parse_smaps((one + bad).encode())
    wrong = one.replace(f"Swap:{0:>19} kB", f"Pss:{0:>20} kB")
    assert wrong != one
    t = smaps.parse_smaps((one + wrong).encode())
    assert t.fields["Swap"] == [0, None]
