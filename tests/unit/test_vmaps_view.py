"""The vmaps view (line format, spec fuchsia-tools §3.3) and the command's errors."""

from __future__ import annotations

import json
import os

from zxmem.model import Job, Mapping, Process, Provenance, Region, Snapshot, inode_koid
from zxmem.views import vmaps

K = 1024
A = (0x1000, 0x7FFFFFFFF000)


def snap(proc):
    return Snapshot(Provenance("test"), (Job(1, "root", 0),), (proc,))


def m(start, end, perms="rw-p", koid=1, rss=4 * K, path="", **kw):
    return Mapping(start, end, perms, 0, 0, 0, path, koid, rss_bytes=rss, **kw)


def test_no_regions_is_the_max_depth_2_edge_case():
    p = Process(7, "x", 1, mappings=(m(0x10000, 0x12000),), regions=())
    out = vmaps.render(p, snap(p), vmaps.VmapsOptions(aspace=A)).splitlines()
    # The C original prints "%*s" with width -1 for /A and /R: one space.
    assert out[0] == "/A  ________00001000-00007ffffffff000    128.0T:sz" + " " * 20 + "'proc:7'"
    assert out[1].startswith("/R  ________00001000-")
    assert out[2] == ("M ________00010000-________00012000 rw-    8k:sz   4k:res     1:vmo "
                      "'mmap-anonymous'")


def test_region_nesting_and_columns():
    maps = (m(0x10000, 0x11000, "---p", koid=1, rss=0), m(0x11000, 0x19000, koid=2))
    p = Process(9, "x", 1, mappings=maps,
                regions=(Region(0x10000, 0x19000, "stack", "stack", (0, 1)),))
    out = vmaps.render(p, snap(p), vmaps.VmapsOptions(aspace=A)).splitlines()
    assert out[0].startswith("/A ________00001000-")
    assert out[2] == "R  ________00010000-________00019000       36k:sz" + " " * 20 + "'stack'"
    assert out[3] == (" M ________00010000-________00011000 ---    4k:sz   0B:res     1:vmo "
                      "'mmap-anonymous'")
    assert out[4] == (" M ________00011000-________00019000 rw-   32k:sz   4k:res     2:vmo "
                      "'mmap-anonymous'")


def test_address_padding_boundary():
    maps = (m(0xFFFFF000, 0x100001000),)
    p = Process(1, "x", 1, mappings=maps, regions=())
    line = vmaps.render(p, snap(p), vmaps.VmapsOptions(aspace=A)).splitlines()[2]
    assert " ________fffff000-0000000100001000 " in line


def test_unknown_rss_and_extras():
    maps = (m(0x7F0000000000, 0x7F0000002000, rss=None, pss_bytes=2 * K, private_bytes=None,
              swap_bytes=0),)
    p = Process(1, "x", 1, mappings=maps, regions=())
    opts = vmaps.VmapsOptions(aspace=A, extra=("swap", "pss", "private"))
    out = vmaps.render(p, snap(p), opts).splitlines()
    assert out[2] == ("M 00007f0000000000-00007f0000002000 rw-    8k:sz    -:res   2k:pss"
                      "    -:prv   0B:swp     1:vmo 'mmap-anonymous'")
    # Non-mapping rows pad 19 spaces plus 10 per extra column.
    assert out[0].endswith(" " * 50 + "'proc:1'")


def test_hostile_names_are_escaped():
    dev = os.makedev(8, 1)
    maps = (Mapping(0x10000, 0x11000, "r--p", 0, dev, 42, "/tmp/\x1b[2Jevil\nname",
                    inode_koid(dev, 42), rss_bytes=0),)
    p = Process(3, "x", 1, mappings=maps, regions=())
    text = vmaps.render(p, snap(p), vmaps.VmapsOptions(aspace=A))
    assert "\x1b" not in text and text.count("\n") == 3
    assert "'/tmp/\\e[2Jevil\\nname'" in text


def test_json_is_valid_and_has_every_entry():
    maps = (m(0x10000, 0x11000, "---p", koid=1, rss=0), m(0x11000, 0x19000, koid=2),
            m(0x20000, 0x21000, path="[heap]", koid=3))
    p = Process(9, "x", 1, mappings=maps,
                regions=(Region(0x10000, 0x19000, "stack", "stack", (0, 1)),))
    doc = json.loads(vmaps.render_json(p, snap(p), vmaps.VmapsOptions(aspace=A)))
    kinds = [(e["type"], e["depth"]) for e in doc["entries"]]
    assert kinds == [("aspace", 0), ("vmar", 1), ("vmar", 2), ("mapping", 3), ("mapping", 3),
                     ("mapping", 2)]
    assert doc["entries"][-1]["name"] == "[heap]"
    assert doc["entries"][-1]["rss_bytes"] == 4 * K


# --------------------------------------------------------------------------
# The command, on a made-up /proc.

def _stat(pid, comm="prog", state="S", flags=0):
    rest = [state, "1", str(pid), str(pid), "0", "-1", str(flags)] + ["0"] * 10 + \
        ["1", "0", "100", "0", "0"]
    return f"{pid} ({comm}) " + " ".join(rest) + "\n"


SMAPS = (
    "00400000-00401000 r-xp 00000000 08:01 12                                 /bin/prog\n"
    "Rss:                   4 kB\nAnonymous:             0 kB\nVmFlags: rd ex \n"
    "00600000-00602000 rw-p 00000000 00:00 0 \n"
    "Rss:                   8 kB\nAnonymous:             8 kB\nVmFlags: rd wr \n"
)


def make_proc(tmp_path, pid=123, **stat):
    root = tmp_path / "proc"
    d = root / str(pid)
    d.mkdir(parents=True)
    (d / "stat").write_text(_stat(pid, **stat))
    (d / "cmdline").write_bytes(b"prog\0")
    return root, d


def test_command_on_a_recorded_tree(cli, tmp_path):
    root, d = make_proc(tmp_path)
    (d / "smaps").write_text(SMAPS)
    r = cli(["vmaps", "--proc-root", str(root), "123"])
    assert r.status == 0, r.stderr
    lines = r.stdout.splitlines()
    assert lines[0].startswith("/A  ________00010000-00007ffffffff000")
    assert lines[2].endswith(f" 4k:res {inode_koid(os.makedev(8, 1), 12)}:vmo '/bin/prog'")
    assert lines[3].endswith(" 8k:res     1:vmo 'mmap-anonymous'")
    r = cli(["vmaps", "--proc-root", str(root), "0x7b"])  # any base, as strtoul(…, 0)
    assert r.status == 0


def test_help(cli):
    r = cli(["vmaps", "help"])
    assert r.status == 0
    assert r.stdout.startswith("Usage: zxmem vmaps <pid>\n\nDumps a process's memory maps")
    assert '  "R"  -- VMAR (R for Region)' in r.stdout
    assert cli(["vmaps", "--help"]).status == 0
    text = cli(["vmos", "help"]).stdout
    assert text.startswith("Usage: zxmem vmos <pid>\n\nDumps a process's VMOs")


def test_usage_errors(cli):
    r = cli(["vmaps", "abc"])
    assert r.status == 2 and '"abc" is not a number' in r.stderr and r.stderr.count("\n") == 1
    r = cli(["vmaps"])
    assert r.status == 2 and r.stderr.count("\n") == 1
    r = cli(["vmos", "12x"])
    assert r.status == 2 and "12x" in r.stderr


def test_unknown_pid(cli, tmp_path):
    root, _ = make_proc(tmp_path)
    for cmd in ("vmaps", "vmos"):
        r = cli([cmd, "--proc-root", str(root), "999"])
        assert r.status == 1
        assert r.stderr == "zxmem: couldn't find process with pid 999\n"


def test_kernel_thread(cli, tmp_path):
    root, _ = make_proc(tmp_path, pid=2, comm="kthreadd", flags=0x00208040)
    r = cli(["vmaps", "--proc-root", str(root), "2"])
    assert r.status == 1 and "pid 2 is a kernel thread" in r.stderr


def test_zombie(cli, tmp_path):
    root, _ = make_proc(tmp_path, state="Z")
    r = cli(["vmaps", "--proc-root", str(root), "123"])
    assert r.status == 1 and "pid 123 has exited" in r.stderr


def test_smaps_missing_from_a_recorded_tree(cli, tmp_path):
    root, _ = make_proc(tmp_path)  # stat readable, no smaps: not an exit
    r = cli(["vmaps", "--proc-root", str(root), "123"])
    assert r.status == 1
    assert r.stderr == "zxmem: cannot read the memory maps of pid 123: ENOENT\n"


def test_exits_mid_read(cli, tmp_path, monkeypatch):
    from zxmem.sources import objects, objects_read

    root, d = make_proc(tmp_path)
    real = objects_read.read_smaps

    def vanish(path, keys):
        # The process exits between its stat and its smaps: /proc/PID goes.
        for name in os.listdir(d):
            os.unlink(d / name)
        d.rmdir()
        return real(path, keys)

    # Read by the collector (objects) and by the reader threads (objects_read).
    monkeypatch.setattr(objects, "read_smaps", vanish)
    monkeypatch.setattr(objects_read, "read_smaps", vanish)
    r = cli(["vmaps", "--proc-root", str(root), "123"])
    assert r.status == 1
    assert r.stderr == "zxmem: pid 123 exited while its maps were being read\n"


def test_denied(cli, tmp_path):
    root, d = make_proc(tmp_path)
    (d / "smaps").mkdir()  # opening it fails (EISDIR) even for root
    r = cli(["vmaps", "--proc-root", str(root), "123"])
    assert r.status == 1
    assert r.stderr.startswith("zxmem: cannot read the memory maps of pid 123: ")
    assert r.stderr.count("\n") == 1
