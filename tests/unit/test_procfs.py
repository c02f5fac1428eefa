"""The pure /proc parsers, with inline snippets: valid, missing-field, malformed."""

from __future__ import annotations

import pytest

from zxmem.sources import procfs
from zxmem.sources.procfs import (
    PF_KTHREAD,
    CgroupLine,
    ParseError,
    parse_cgroup,
    parse_cmdline,
    parse_mountinfo,
    parse_smaps_rollup,
    parse_stat,
    parse_status,
    status_bytes,
    status_uid,
    sum_smaps,
)

# fs/proc/array.c do_task_stat: pid (comm) state ppid pgrp session tty_nr tpgid
# flags minflt cminflt majflt cmajflt utime stime cutime cstime priority nice
# num_threads itrealvalue starttime vsize rss ...
STAT_TAIL = (
    b"S 4198 4196 3485 0 -1 4194560 224 0 0 0 3 1 0 0 20 0 3 0 31666 "
    b"12582912 512 18446744073709551615 1 1 0 0 0 0 0 0 0 0 0 0 17 1 0 0 0 0 0\n"
)


def stat_line(pid: int, comm: bytes, tail: bytes = STAT_TAIL) -> bytes:
    return str(pid).encode() + b" (" + comm + b") " + tail


# --- parse_stat -----------------------------------------------------------


def test_stat_valid():
    st = parse_stat(stat_line(4239, b"python3"))
    assert st.pid == 4239
    assert st.comm == "python3"
    assert st.state == "S"
    assert st.ppid == 4198
    assert st.flags == 4194560
    assert st.num_threads == 3
    assert st.starttime == 31666
    assert not st.kernel_thread


@pytest.mark.parametrize(
    ("comm", "decoded"),
    [
        (b"tmux: server", "tmux: server"),
        (b"a) S 1 2 (b", "a) S 1 2 (b"),  # ')' and a fake state inside comm
        (b"))", "))"),
        (b"two\nlines", "two\nlines"),  # stat prints comm raw, newline included
        (b"", ""),
        (b"\xff\xfe", "\\xff\\xfe"),  # invalid UTF-8 is kept visible, not dropped
    ],
)
def test_stat_comm_with_spaces_parens_newlines(comm, decoded):
    st = parse_stat(stat_line(77, comm))
    assert st.pid == 77
    assert st.comm == decoded
    assert st.state == "S"
    assert st.ppid == 4198
    assert st.num_threads == 3


def test_stat_kernel_thread_flag():
    # kthreadd as this machine prints it: flags 2129984 = 0x208040 has PF_KTHREAD.
    data = (
        b"2 (kthreadd) S 0 0 0 0 -1 2129984 0 0 0 0 0 0 0 0 20 0 1 0 24 0 0 "
        b"18446744073709551615 0 0 0 0 0 0 0 2147483647 0 0 0 0 0 1 0 0 0 0 0\n"
    )
    st = parse_stat(data)
    assert st.kernel_thread
    assert st.flags & PF_KTHREAD
    assert st.ppid == 0


def test_stat_zombie_state():
    st = parse_stat(stat_line(9, b"defunct", b"Z" + STAT_TAIL[1:]))
    assert st.state == "Z"


@pytest.mark.parametrize(
    "data",
    [
        b"",
        b"1234 python3 S 1 2 3\n",  # no (comm)
        b"1234 (python3) S 1 2 3\n",  # missing fields (truncated read)
        b"abc (python3) " + STAT_TAIL,  # pid not a number
        b"1234 (python3) S x 2 3 4 5 6 7 8 9 10 11 12 13 14 15 16 17 18 19 20 21\n",
        b"1234 (python3\n",  # unterminated comm
    ],
)
def test_stat_malformed(data):
    with pytest.raises(ParseError):
        parse_stat(data)


def test_parse_error_is_value_error():
    assert issubclass(ParseError, ValueError)


# --- parse_cmdline --------------------------------------------------------


def test_cmdline_valid():
    assert parse_cmdline(b"/usr/bin/python3\0-c\0print(1)\0") == (
        "/usr/bin/python3",
        "-c",
        "print(1)",
    )


def test_cmdline_empty_means_no_command_line():
    # Kernel threads and zombies: an empty file.
    assert parse_cmdline(b"") == ()


def test_cmdline_setproctitle_single_string():
    # setproctitle overwrites argv: one string with spaces and no NUL at all.
    assert parse_cmdline(b"nginx: worker process") == ("nginx: worker process",)


def test_cmdline_setproctitle_nul_padding():
    # Titles padded with NULs over the old argument area must not turn into
    # a trail of empty arguments (they would print as trailing spaces).
    assert parse_cmdline(b"postgres: checkpointer\0\0\0\0\0\0") == ("postgres: checkpointer",)


def test_cmdline_keeps_inner_empty_argument():
    assert parse_cmdline(b"prog\0\0x\0") == ("prog", "", "x")


def test_cmdline_hostile_bytes_are_decoded_not_dropped():
    args = parse_cmdline(b"\x1b[2J\r\n\xff\0" + b"A" * 4096 + b"\0")
    assert args[0] == "\x1b[2J\r\n\\xff"
    assert args[1] == "A" * 4096


# --- parse_smaps_rollup ---------------------------------------------------

ROLLUP = b"""559ce0ce7000-7ffeb9c53000 ---p 00000000 00:00 0                          [rollup]
Rss:                1744 kB
Pss:                 300 kB
Pss_Dirty:           112 kB
Pss_Anon:            112 kB
Pss_File:            188 kB
Pss_Shmem:             0 kB
Shared_Clean:       1596 kB
Shared_Dirty:          0 kB
Private_Clean:        36 kB
Private_Dirty:       112 kB
Referenced:         1744 kB
Anonymous:           112 kB
KSM:                   0 kB
LazyFree:              0 kB
AnonHugePages:         0 kB
ShmemPmdMapped:        0 kB
FilePmdMapped:         0 kB
Shared_Hugetlb:        0 kB
Private_Hugetlb:       0 kB
Swap:                  8 kB
SwapPss:               4 kB
Locked:                0 kB
"""


def test_smaps_rollup_valid():
    f = parse_smaps_rollup(ROLLUP)
    assert f[b"Rss"] == 1744 * 1024
    assert f[b"Pss"] == 300 * 1024
    assert f[b"Private_Clean"] + f[b"Private_Dirty"] == 148 * 1024
    assert f[b"Shared_Clean"] == 1596 * 1024
    assert f[b"Swap"] == 8 * 1024
    assert f[b"SwapPss"] == 4 * 1024
    assert len(f) == 22


def test_smaps_rollup_empty_is_no_address_space():
    assert parse_smaps_rollup(b"") == {}


def test_smaps_rollup_missing_field_is_absent_not_zero():
    # Old kernels (4.14–5.x) have no Pss_Anon/Pss_File/Pss_Dirty lines.
    old = b"".join(
        line + b"\n" for line in ROLLUP.split(b"\n") if line and not line.startswith(b"Pss_")
    )
    f = parse_smaps_rollup(old)
    assert b"Pss_Anon" not in f
    assert f[b"Pss"] == 300 * 1024


@pytest.mark.parametrize(
    "data",
    [
        b"no newline at all",
        ROLLUP.replace(b"Pss:                 300 kB", b"Pss:                 3x0 kB"),
        ROLLUP.replace(b"Rss:", b"Rss"),
        ROLLUP[: ROLLUP.index(b"Locked") + 20].rstrip(b" kB"),  # truncated last line
        ROLLUP.replace(b"Swap:                  8 kB\n", b"Swap:                  8\n"),
    ],
)
def test_smaps_rollup_malformed(data):
    with pytest.raises(ParseError):
        parse_smaps_rollup(data)


# --- sum_smaps ------------------------------------------------------------

SMAPS = b"""55ba6f324000-55ba6f326000 r--p 00000000 fe:00 260386                     /usr/bin/head
Size:                  8 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                   8 kB
Pss:                   8 kB
Shared_Clean:          0 kB
Shared_Dirty:          0 kB
Private_Clean:         8 kB
Private_Dirty:         0 kB
Swap:                  0 kB
SwapPss:               0 kB
THPeligible:           0
ProtectionKey:         0
VmFlags: rd mr mw me
7f0000000000-7f0000021000 rw-p 00000000 00:00 0                          [heap]
Size:                132 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                 100 kB
Pss:                  50 kB
Shared_Clean:          0 kB
Shared_Dirty:        100 kB
Private_Clean:         0 kB
Private_Dirty:         0 kB
Swap:                 12 kB
SwapPss:               6 kB
THPeligible:           0
VmFlags: rd wr mr mw me ac
"""


def test_sum_smaps_valid():
    f = sum_smaps(SMAPS)
    assert f[b"Rss"] == 108 * 1024
    assert f[b"Pss"] == 58 * 1024
    assert f[b"Shared_Dirty"] == 100 * 1024
    assert f[b"Private_Clean"] == 8 * 1024
    assert f[b"Swap"] == 12 * 1024
    assert f[b"SwapPss"] == 6 * 1024
    # Per-VMA page sizes are summed like everything else; nobody reads them.
    assert b"THPeligible" not in f
    assert b"VmFlags" not in f
    assert b"ProtectionKey" not in f


def test_sum_smaps_empty():
    assert sum_smaps(b"") == {}


def test_sum_smaps_hostile_mapping_name_ending_in_kb():
    # A file named "evil 5 kB" makes its header line end in " kB"; it must
    # be skipped as a header, not break the parse of the whole process.
    data = SMAPS.replace(b"/usr/bin/head", b"/tmp/evil: 5 kB")
    assert sum_smaps(data) == sum_smaps(SMAPS)


def test_sum_smaps_missing_field_is_absent():
    data = b"".join(
        line + b"\n" for line in SMAPS.split(b"\n") if line and not line.startswith(b"SwapPss")
    )
    f = sum_smaps(data)
    assert b"SwapPss" not in f
    assert f[b"Pss"] == 58 * 1024


def test_sum_smaps_malformed_value():
    with pytest.raises(ParseError):
        sum_smaps(SMAPS.replace(b"Rss:                 100 kB", b"Rss:                 1O0 kB"))


# --- parse_status ---------------------------------------------------------

STATUS = b"""Name:\tcat
Umask:\t0022
State:\tR (running)
Tgid:\t10422
PPid:\t10418
Uid:\t1000\t1001\t1002\t1003
Gid:\t0\t0\t0\t0
Groups:\t
VmRSS:\t    1704 kB
VmPTE:\t      52 kB
VmSwap:\t       8 kB
Threads:\t1
"""


def test_status_valid():
    s = parse_status(STATUS)
    assert s[b"Name"] == b"cat"
    assert s[b"State"] == b"R (running)"
    assert s[b"Groups"] == b""
    assert status_uid(s) == 1000
    assert status_bytes(s, b"VmPTE") == 52 * 1024
    assert status_bytes(s, b"VmSwap") == 8 * 1024


def test_status_missing_fields_are_none():
    # Kernel threads have no Vm* lines; a truncated read may lose Uid.
    s = parse_status(b"Name:\tkthreadd\nState:\tS (sleeping)\n")
    assert status_bytes(s, b"VmSwap") is None
    assert status_uid(s) is None


def test_status_malformed_values_are_none():
    s = parse_status(b"Uid:\tabc\t0\nVmSwap:\tlots kB\nVmPTE:\t\n")
    assert status_uid(s) is None
    assert status_bytes(s, b"VmSwap") is None
    assert status_bytes(s, b"VmPTE") is None


def test_status_lines_without_colon_are_ignored():
    assert parse_status(b"garbage\nName:\tx\n\n") == {b"Name": b"x"}


# --- parse_cgroup ---------------------------------------------------------

CGROUP_V2 = b"0::/system.slice/nginx.service\n"
CGROUP_V1 = b"""9:name=systemd:/user.slice
8:pids:/user.slice
4:memory:/box/web
2:cpu,cpuacct:/box
"""
# This machine's layout: v1 controllers plus the unified hierarchy ("0::").
CGROUP_HYBRID = b"""9:name=systemd:/
8:pids:/
4:memory:/process_api/web
1:cpu:/
0::/
"""


def test_cgroup_v2():
    assert parse_cgroup(CGROUP_V2) == (CgroupLine(0, (), "/system.slice/nginx.service"),)


def test_cgroup_v1():
    lines = parse_cgroup(CGROUP_V1)
    assert lines[0] == CgroupLine(9, ("name=systemd",), "/user.slice")
    assert lines[2] == CgroupLine(4, ("memory",), "/box/web")
    assert lines[3].controllers == ("cpu", "cpuacct")
    assert len(lines) == 4


def test_cgroup_hybrid():
    lines = parse_cgroup(CGROUP_HYBRID)
    assert lines[-1] == CgroupLine(0, (), "/")
    assert CgroupLine(4, ("memory",), "/process_api/web") in lines


def test_cgroup_path_with_colons_and_hostile_bytes():
    lines = parse_cgroup(b"0::/a:b/c:d\n4:memory:/x\xff\n")
    assert lines[0].path == "/a:b/c:d"
    assert lines[1].path == "/x\\xff"


def test_cgroup_empty():
    assert parse_cgroup(b"") == ()


@pytest.mark.parametrize("data", [b"0:/onlyone\n", b"x::/\n", b"garbage\n"])
def test_cgroup_malformed(data):
    with pytest.raises(ParseError):
        parse_cgroup(data)


# --- parse_mountinfo ------------------------------------------------------

MOUNTINFO = b"""23 1 254:0 / / rw,relatime shared:1 - ext4 /dev/vda rw
31 23 0:28 / /sys/fs/cgroup rw,relatime - tmpfs tmpfs rw,mode=755
35 31 0:32 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
40 31 0:37 / /sys/fs/cgroup/systemd rw,relatime - cgroup cgroup rw,name=systemd
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 master:3 - cgroup2 cgroup2 rw
"""


def test_mountinfo_valid():
    mounts = parse_mountinfo(MOUNTINFO)
    assert len(mounts) == 5
    assert mounts[0].mount_point == "/"
    assert mounts[0].fs_type == "ext4"
    assert mounts[2].mount_point == "/sys/fs/cgroup/memory"
    assert mounts[2].super_options == "rw,memory"
    assert mounts[4].fs_type == "cgroup2"  # after two optional fields
    assert mounts[4].root == "/"


def test_mountinfo_octal_escapes():
    # show_mountinfo escapes space, tab, newline and backslash as \ooo.
    line = b"50 23 0:40 /sub\\040dir /mnt/my\\040disk\\011x\\012y\\134z rw - tmpfs none rw\n"
    (m,) = parse_mountinfo(line)
    assert m.root == "/sub dir"
    assert m.mount_point == "/mnt/my disk\tx\ny\\z"


def test_mountinfo_missing_super_options():
    (m,) = parse_mountinfo(b"50 23 0:40 / /mnt rw - tmpfs none\n")
    assert m.fs_type == "tmpfs"
    assert m.super_options == ""


@pytest.mark.parametrize(
    "data",
    [
        b"50 23 0:40 / /mnt rw tmpfs none rw\n",  # no "-" separator
        b"50 23 0:40 / /mnt rw -\n",  # nothing after the separator
        b"garbage\n",
    ],
)
def test_mountinfo_malformed(data):
    with pytest.raises(ParseError):
        parse_mountinfo(data)


def test_kib_constant():
    # The kernel's "kB" is KiB (proc.rst); every size is returned in bytes.
    assert procfs.KIB == 1024
