"""The one reader of /proc files and its error taxonomy; the one mountinfo
line splitter."""

from __future__ import annotations

import errno
import os

from zxmem.sources import procfs
from zxmem.sources.readfile import (
    READ_SIZE,
    absent,
    errname,
    read_file,
    read_record,
    refused,
    vanished,
)


def test_read_file_and_record_read_past_one_buffer(tmp_path):
    big = bytes(range(256)) * (3 * READ_SIZE // 256 + 7)
    (tmp_path / "f").write_bytes(big)
    assert read_file(str(tmp_path / "f")) == big
    assert read_file(str(tmp_path / "f"), read_size=4096) == big
    assert read_record(str(tmp_path / "f")) == big
    (tmp_path / "small").write_bytes(b"1 (x) S\n")
    assert read_record(str(tmp_path / "small")) == b"1 (x) S\n"


def test_error_taxonomy():
    def err(n: int) -> OSError:
        return OSError(n, os.strerror(n))

    assert vanished(err(errno.ENOENT)) and vanished(err(errno.ESRCH))
    assert not vanished(err(errno.EACCES))
    assert refused(err(errno.EACCES)) and refused(err(errno.EPERM))
    assert not refused(err(errno.ENOENT))
    assert absent(err(errno.ENOENT)) and not absent(err(errno.ESRCH))
    assert errname(err(errno.EACCES)) == "EACCES"


def test_mountinfo_lines_and_devices():
    data = (b"30 1 0:42 / /dev/shm rw shared:5 - tmpfs tmpfs rw\n"
            b"bad line\n"
            b"31 1 8:1 / /a\\040b rw master:1 shared:2 - ext4 /dev/sda1 rw\n")
    lines = list(procfs.mountinfo_lines(data, 8))
    assert [(f[4], sep) for _, f, sep in lines] == [(b"/dev/shm", 7), (b"/a\\040b", 8)]
    assert procfs.mount_dev(lines[1][1]) == os.makedev(8, 1)
    assert procfs.unescape_mount(b"/a\\040b\\134") == b"/a b\\"
    assert procfs.unescape_mount(b"/trunc\\04") == b"/trunc\\04"  # not an escape
    assert [m.mount_point for m in procfs.parse_mountinfo(data.replace(b"bad line\n", b""))] \
        == ["/dev/shm", "/a b"]
