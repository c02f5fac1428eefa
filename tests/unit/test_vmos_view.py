"""The vmos view (columns of spec fuchsia-tools §4.3) and a made-up system."""

from __future__ import annotations

import json
import os

from zxmem.model import Job, Process, Provenance, Snapshot, Vmo, VmoRef, inode_koid
from zxmem.views import vmos

K = 1024
HEADER = "rights  koid parent #chld #map #shr    size   alloc name"


def render(objs, refs):
    p = Process(5, "x", 1, vmo_refs=tuple(refs))
    s = Snapshot(Provenance("t"), (Job(1, "root", 0),), (p,), vmos={o.koid: o for o in objs})
    return vmos.render(p, s), vmos.render_json(p, s)


def test_rows_rights_phys_unknown_and_empty_name():
    objs = [
        Vmo(7, "memfd:buf", "memfd", 12 * K, 12 * K),
        Vmo(8, "", "anon", 8 * K, None, num_mappings=1, share_count=1),
        Vmo(9, "[vvar]", "phys", 16 * K, None, num_mappings=1, share_count=1),
        Vmo(10, "data:libc.so.6", "clone", 8 * K, 4 * K, parent_koid=3, num_mappings=1,
            share_count=1),
    ]
    refs = [VmoRef(7, ("HANDLE",), ("READ",), fd=3), VmoRef(7, ("HANDLE",), ("READ", "WRITE")),
            VmoRef(8, ("MAPPING",)), VmoRef(9, ("MAPPING",)), VmoRef(10, ("MAPPING",))]
    text, js = render(objs, refs)
    assert text.splitlines() == [
        HEADER,
        "r-----     7      -     0    0    0     12k     12k memfd:buf",
        "rw----     7      -     0    0    0     12k     12k memfd:buf",
        "     -     8      -     0    1    1      8k       - -",
        "     -     9      -     0    1    1     16k    phys [vvar]",
        "     -    10      3     0    1    1      8k      4k data:libc.so.6",
        HEADER,
    ]
    doc = json.loads(js)
    assert [r["via"] for r in doc["vmos"]][:2] == [["HANDLE"], ["HANDLE"]]
    assert doc["vmos"][0]["fd"] == 3
    assert doc["vmos"][2]["committed_bytes"] is None


def test_nothing_to_show_prints_both_headers():
    text, _ = render([], [])
    assert text == HEADER + "\n" + HEADER + "\n"


def test_hostile_name():
    text, js = render([Vmo(1, "a\x1b]0;x\x07b\nc", "memfd", 0, 0)], [VmoRef(1, ("MAPPING",))])
    assert "\x1b" not in text and "\x07" not in text and text.count("\n") == 3
    assert json.loads(js)["vmos"][0]["name"] == "a\x1b]0;x\x07b\nc"


def _stat(pid):
    rest = ["S", "1", str(pid), str(pid), "0", "-1", "0"] + ["0"] * 10 + ["1", "0", "100"]
    return f"{pid} (p{pid}) " + " ".join(rest) + "\n"


HDR = "{:x}-{:x} {} 00000000 {} {} "


def _line(start, end, perms, dev, ino, path=""):
    fixed = HDR.format(start, end, perms, dev, ino)
    return (fixed.ljust(72) + " " + path if path else fixed) + "\n"


def test_counts_across_processes(cli, tmp_path):
    """#map/#shr/#chld over every process; smaps only for the one shown."""
    root = tmp_path / "proc"
    lib = "/lib/libz.so"
    shm = "/memfd:ring (deleted)"
    detail = (
        _line(0x10000, 0x12000, "r-xp", "08:01", 77, lib)
        + "Rss:                   8 kB\nAnonymous:             0 kB\nVmFlags: rd ex \n"
        + _line(0x12000, 0x13000, "rw-p", "08:01", 77, lib)
        + "Rss:                   4 kB\nAnonymous:             4 kB\nVmFlags: rd wr \n"
        + _line(0x20000, 0x24000, "rw-s", "00:01", 9, shm)
        + "Rss:                  16 kB\nAnonymous:             0 kB\nVmFlags: rd wr sh \n"
        + _line(0x24000, 0x28000, "r--s", "00:01", 9, shm)
        + "Rss:                  16 kB\nAnonymous:             0 kB\nVmFlags: rd sh \n"
    )
    other = (
        _line(0x10000, 0x12000, "r-xp", "08:01", 77, lib)
        + _line(0x12000, 0x13000, "rw-p", "08:01", 77, lib)
        + _line(0x30000, 0x34000, "rw-s", "00:01", 9, shm)
    )
    for pid, name, text in ((10, "smaps", detail), (11, "maps", other), (10, "maps", "")):
        d = root / str(pid)
        d.mkdir(parents=True, exist_ok=True)
        (d / "stat").write_text(_stat(pid))
        (d / "cmdline").write_bytes(b"p\0")
        if text:
            (d / name).write_text(text)
    r = cli(["vmos", "--json", "--proc-root", str(root), "10"])
    assert r.status == 0, r.stderr
    rows = json.loads(r.stdout)["vmos"]
    lib_koid = inode_koid(os.makedev(8, 1), 77)
    shm_koid = inode_koid(os.makedev(0, 1), 9)
    by = [(x["koid"], x["kind"], x["num_mappings"], x["share_count"], x["num_children"],
           x["parent_koid"]) for x in rows]
    assert by == [
        (lib_koid, "file", 2, 2, 2, 0),  # text in both; each process's .data is a clone
        (1, "clone", 1, 1, 0, lib_koid),  # written (Anonymous 4 kB)
        (shm_koid, "memfd", 3, 2, 0, 0),
        (shm_koid, "memfd", 3, 2, 0, 0),
    ]
    assert rows[1]["name"] == "data:libz.so" and rows[1]["committed_bytes"] == 4 * K
    # The anonymous koids of the process shown are the same as in vmaps.
    out = cli(["vmaps", "--proc-root", str(root), "10"]).stdout
    assert "     1:vmo 'data:libz.so'" in out
