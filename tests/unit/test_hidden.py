"""Hidden memory objects: parsers, the tmpfs walk, the Shmem remainder, and
``add_hidden`` on the hand-made trees of ``tests/fixtures/hidden``
(their shapes are described in ``make_fixtures.py``)."""

from __future__ import annotations

import os

import pytest

from zxmem.model import Vmo, inode_koid
from zxmem.sources import hidden, objects

MIB = 1 << 20
FIXTURES = os.path.join(os.path.dirname(__file__), "..", "fixtures", "hidden")
SHM_DEV = os.makedev(0, 1)

SHM_618 = b"""\
       key      shmid perms                  size  cpid  lpid nattch   uid   gid  cuid  cgid      atime      dtime      ctime                   rss                  swap
         0          0   600              16777216  4242     0      0     0     0     0     0          0          0 1764117600              16777216                     0
        42          1  1600               1048576  4242  4243      1  1000  1000  1000  1000 1764117601          0 1764117600                  4096               1044480
"""  # noqa: E501


def test_sysvipc_columns_by_name():
    segs = hidden.parse_sysvipc_shm(SHM_618)
    assert [(s.key, s.shmid, s.size_bytes, s.nattch) for s in segs] == [
        (0, 0, 16 * MIB, 0), (42, 1, MIB, 1)]
    assert (segs[0].rss_bytes, segs[0].swap_bytes) == (16 * MIB, 0)
    assert (segs[1].rss_bytes, segs[1].swap_bytes) == (4096, MIB - 4096)
    assert segs[1].perms == 0o1600 and segs[1].destroyed and not segs[0].destroyed
    assert segs[1].uid == 1000


def test_sysvipc_old_kernel_without_rss_is_unknown_not_zero():
    header = b"key shmid perms size cpid lpid nattch uid gid cuid cgid atime dtime ctime\n"
    segs = hidden.parse_sysvipc_shm(header + b"7 5 600 2097152 1 0 0 0 0 0 0 0 0 1\n")
    assert segs[0].rss_bytes is None and segs[0].swap_bytes is None
    assert segs[0].size_bytes == 2 * MIB


def test_sysvipc_negative_key_and_empty_table():
    header = SHM_618.split(b"\n")[0] + b"\n"
    assert hidden.parse_sysvipc_shm(header) == ()
    segs = hidden.parse_sysvipc_shm(header + b"-1 3 666 4096 1 1 0 0 0 0 0 0 0 0 0 0\n")
    assert segs[0].key == -1


@pytest.mark.parametrize(
    "data", [b"", b"key shmid\n", b"key shmid perms size nattch\nx 1 600 1 0\n"]
)
def test_sysvipc_malformed(data):
    with pytest.raises(hidden.ParseError):
        hidden.parse_sysvipc_shm(data)


def test_bufinfo_rows_skip_devices_and_totals():
    with open(os.path.join(FIXTURES, "linux-6.18", "sys", "kernel", "debug", "dma_buf",
                           "bufinfo"), "rb") as f:
        bufs = hidden.parse_dmabuf_bufinfo(f.read())
    assert [(b.size_bytes, b.inode, b.exporter, b.name, b.count) for b in bufs] == [
        (2 * MIB, 77, "system-heap", "frame", 3), (4 * MIB, 78, "system-heap", None, 1)]


def test_bufinfo_old_kernel_without_ino():
    data = (b"\nDma-buf Objects:\nsize\tflags\tmode\tcount\texp_name\n"
            b"00004096\t00000002\t00080007\t00000001\tion\n\tAttached Devices:\n"
            b"Total 0 devices attached\n\nTotal 1 objects, 4096 bytes\n")
    (buf,) = hidden.parse_dmabuf_bufinfo(data)
    assert (buf.size_bytes, buf.inode, buf.name, buf.exporter) == (4096, None, None, "ion")
    with pytest.raises(hidden.ParseError):
        hidden.parse_dmabuf_bufinfo(b"garbage\n")


def test_mountinfo_unescapes_and_dedupes_memory_mounts():
    data = (b"22 1 253:1 / / rw - ext4 /dev/vda1 rw\n"
            b"25 22 0:23 / /dev/shm rw - tmpfs tmpfs rw\n"
            b"26 22 0:24 / /run/my\\040dir rw - tmpfs tmpfs rw\n"
            b"27 22 0:24 /sub /mnt/bind rw - tmpfs tmpfs rw\n"
            b"28 22 0:25 /x /a rw - ramfs none rw\n"
            b"29 22 0:25 / /b rw - ramfs none rw\n"
            b"short line\n")
    mounts = hidden.parse_mountinfo(data)
    assert [m.mount_point for m in mounts] == ["/", "/dev/shm", "/run/my dir", "/mnt/bind",
                                               "/a", "/b"]
    chosen = hidden.memory_mounts(mounts)
    assert [(m.mount_point, m.fstype) for m in chosen] == [
        ("/dev/shm", "tmpfs"), ("/run/my dir", "tmpfs"), ("/b", "ramfs")]


def test_remainder_counts_shmem_kinds_only_and_unknowns():
    vmos = [
        Vmo(1, "a", "memfd", 10, 4096),
        Vmo(2, "b", "sysv", 10, 8192),
        Vmo(3, "c", "shmem", 10, None),
        Vmo(4, "d", "anon", 10, 1 << 30),  # anonymous memory is not Shmem
        Vmo(5, "e", "dmabuf", 10, 1 << 30),  # dma-bufs are in no meminfo field
    ]
    assert hidden.shmem_remainder(65536, vmos) == (65536 - 12288, 12288, 1)
    assert hidden.shmem_remainder(None, vmos) == (None, 12288, 1)


def test_largest_first_puts_unknown_last():
    vmos = [Vmo(1, "", "memfd", None, None), Vmo(2, "", "memfd", 5, 5),
            Vmo(3, "", "memfd", 9, 9), Vmo(4, "", "memfd", 100, 5)]
    assert [v.koid for v in hidden.largest_first(vmos)] == [3, 4, 2, 1]


# --------------------------------------------------------------------------
# The walk


def _tree(tmp_path):
    (tmp_path / "d" / "e").mkdir(parents=True)
    (tmp_path / "a.bin").write_bytes(b"x" * 8192)
    (tmp_path / "d" / "e" / "b.bin").write_bytes(b"y" * 4096)
    (tmp_path / "empty").write_bytes(b"")
    os.link(tmp_path / "a.bin", tmp_path / "d" / "hardlink")
    outside = tmp_path.parent / f"{tmp_path.name}-outside"
    outside.mkdir()
    (outside / "secret.bin").write_bytes(b"z" * 4096)
    os.symlink(outside, tmp_path / "link-dir")
    os.symlink(outside / "secret.bin", tmp_path / "link-file")
    return outside


def test_walk_never_follows_symlinks_and_dedupes_links(tmp_path):
    _tree(tmp_path)
    dev = os.stat(tmp_path).st_dev
    res = hidden.walk_memory_mount(str(tmp_path), dev, limit=1000)
    names = sorted(os.path.basename(p) for p, _ in res.files)
    assert names in (["a.bin", "b.bin"], ["b.bin", "hardlink"])  # one name per inode
    assert res.stopped_in is None
    assert not any("secret" in p for p, _ in res.files)


def test_walk_skips_known_objects(tmp_path):
    _tree(tmp_path)
    st = os.stat(tmp_path / "a.bin")
    res = hidden.walk_memory_mount(str(tmp_path), st.st_dev, limit=1000,
                                   skip={inode_koid(st.st_dev, st.st_ino)})
    assert sorted(os.path.basename(p) for p, _ in res.files) == ["b.bin"]


def test_walk_stays_on_its_device(tmp_path):
    _tree(tmp_path)
    res = hidden.walk_memory_mount(str(tmp_path), os.stat(tmp_path).st_dev + 12345, limit=1000)
    assert res.files == []


def test_walk_stops_at_the_bound_and_says_where(tmp_path):
    for i in range(20):
        (tmp_path / f"f{i}").write_bytes(b"x")
    res = hidden.walk_memory_mount(str(tmp_path), os.stat(tmp_path).st_dev, limit=5)
    assert res.entries == 5 and res.stopped_in == str(tmp_path)
    assert len(res.files) <= 5


def test_walk_of_a_vanished_directory_is_empty(tmp_path):
    res = hidden.walk_memory_mount(str(tmp_path / "gone"), 0, limit=10)
    assert (res.files, res.denied, res.stopped_in) == ([], 0, None)


# --------------------------------------------------------------------------
# add_hidden on recorded trees


def _hidden_snapshot(tree: str):
    root = os.path.join(FIXTURES, tree, "proc")
    snap = objects.add_objects(objects.light_snapshot(root), root, detail_pids=())
    return hidden.add_hidden(snap, root)


def test_add_hidden_618():
    snap = _hidden_snapshot("linux-6.18")
    by_name = {snap.vmos[k].name: snap.vmos[k] for k in snap.hidden_vmo_koids}
    assert list(by_name) == ["SYSV00000000", "SYSVffffffff", "dmabuf:system-heap",
                             "dmabuf:frame", "memfd:held", "[unattributed Shmem]"]
    sysv = by_name["SYSV00000000"]
    assert sysv.koid == inode_koid(SHM_DEV, 0)
    assert (sysv.size_bytes, sysv.committed_bytes, sysv.swap_bytes) == (16 * MIB, 16 * MIB, 0)
    swapped = by_name["SYSVffffffff"]
    assert (swapped.committed_bytes, swapped.swap_bytes) == (4 * MIB, 4 * MIB)
    # The attached segment is mapped by 200: not hidden, alloc from rss.
    attached = snap.vmos[inode_koid(SHM_DEV, 1)]
    assert attached.num_mappings == 1 and attached.committed_bytes == MIB
    # memfd "held": two holders (100 fd 3, 200 fd 3), size unknown in a recording.
    held = by_name["memfd:held"]
    assert snap.vmo_holders[held.koid] == (100, 200)
    assert held.committed_bytes is None
    # memfd "mapped" is mapped by 100: never hidden.
    assert "memfd:mapped" not in by_name
    # Shmem 64 MiB − SysV 16 + 4 + 1 MiB (dma-bufs are not Shmem).
    rest = by_name["[unattributed Shmem]"]
    assert rest.koid == hidden.REMAINDER_KOID
    assert rest.committed_bytes == (64 - 16 - 4 - 1) * MIB
    notes = " | ".join(snap.provenance.notes)
    assert "not walked" in notes and "unknown alloc" in notes


def test_add_hidden_old_kernel_gives_none_with_notes():
    snap = _hidden_snapshot("old-kernel")
    vmos = [snap.vmos[k] for k in snap.hidden_vmo_koids]
    sysv = [v for v in vmos if v.kind == "sysv"]
    assert len(sysv) == 1 and sysv[0].committed_bytes is None and sysv[0].size_bytes == 2 * MIB
    rest = snap.vmos[hidden.REMAINDER_KOID]
    assert rest.committed_bytes is None and rest.size_bytes is None
    notes = " | ".join(snap.provenance.notes)
    assert "no rss/swap columns" in notes
    assert "Shmem not in /proc/meminfo" in notes
    assert "bufinfo missing" in notes


def test_add_hidden_without_sysvipc():
    snap = _hidden_snapshot("no-sysvipc")
    assert snap.hidden_vmo_koids == (hidden.REMAINDER_KOID,)
    # Nothing attributed: the whole of Shmem is the remainder, not 0.
    assert snap.vmos[hidden.REMAINDER_KOID].committed_bytes == 64 * MIB
    assert any("sysvipc/shm missing" in n for n in snap.provenance.notes)


def test_add_hidden_walks_a_given_root_only_when_asked(tmp_path):
    root = os.path.join(FIXTURES, "linux-6.18", "proc")
    snap = objects.add_objects(objects.light_snapshot(root), root, detail_pids=())
    snap = hidden.add_hidden(snap, root, walk_tmpfs=False)
    assert any("not walked" in n for n in snap.provenance.notes)


def test_walk_skips_a_file_removed_mid_walk(tmp_path, monkeypatch):
    (tmp_path / "stays.bin").write_bytes(b"x" * 4096)
    (tmp_path / "goes.bin").write_bytes(b"x" * 4096)
    real_scandir = os.scandir

    class Vanishing:
        """A scandir entry whose file was unlinked after the listing."""

        def __init__(self, entry):
            self.entry = entry
            self.path = entry.path

        def stat(self, follow_symlinks=True):
            if self.entry.name == "goes.bin":
                raise FileNotFoundError(2, "No such file or directory")
            return self.entry.stat(follow_symlinks=follow_symlinks)

    class Listing:
        def __init__(self, path):
            self.it = real_scandir(path)

        def __enter__(self):
            return self

        def __iter__(self):
            return (Vanishing(e) for e in self.it)

        def __exit__(self, *exc):
            self.it.close()

    monkeypatch.setattr(hidden.os, "scandir", Listing)
    res = hidden.walk_memory_mount(str(tmp_path), os.stat(tmp_path).st_dev, limit=100)
    assert [os.path.basename(p) for p, _ in res.files] == ["stays.bin"]
