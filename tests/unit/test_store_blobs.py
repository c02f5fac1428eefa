"""The binary references and layout blobs (zxmem.store.blobs, store schema 5):
round trips on random input, the migration of a schema-4 store, and damaged
blobs read as one clear error."""

from __future__ import annotations

import json
import random
import shutil
import sqlite3
import struct
import zlib
from dataclasses import replace

import pytest
from test_store import T0, made_up

from zxmem.model import INODE_KOID_BASE, Process, VmoRef
from zxmem.store import blobs
from zxmem.store.reader import RefDecoder, read_sample, stored_form
from zxmem.store.schema import VERSION, open_store
from zxmem.store.writer import OBJECTS, TOTALS, Writer, pack, pack_refs, refs_blob

HOSTILE = ("HANDLE", "MAPPING", "", "\x1b[2J", 'a"b\\c', "\u202e\n", "\udcff", "é" * 40)
U64 = 1 << 64


def random_refs(rng: random.Random, base: int | None, n: int, kinds: int = 6
                ) -> tuple[VmoRef, ...]:
    """``n`` references of ``kinds`` kinds: koids of files (huge ones too),
    sequence koids about the base (below it as well: another process's),
    the plain kind most often; hostile via and rights texts, fds of any
    size or none."""
    table = [(("MAPPING",), (), None)] + [
        (tuple(rng.sample(HOSTILE, rng.randrange(0, 3))),
         tuple(rng.sample(HOSTILE, rng.randrange(0, 3))),
         rng.choice([None, 0, 1, -1, 2**31 - 1, rng.randrange(1 << 40)]))
        for _ in range(kinds - 1)]
    out = []
    for _ in range(n):
        roll = rng.random()
        if roll < 0.3:
            koid = rng.choice([INODE_KOID_BASE, U64 - 1, 1 << 63, rng.randrange(INODE_KOID_BASE,
                                                                                U64)])
        elif base is not None:
            koid = max(0, base + rng.randrange(-5000, 5000))
        else:
            koid = rng.randrange(INODE_KOID_BASE)
        via, rights, fd = table[0] if rng.random() < 0.7 else rng.choice(table)
        out.append(VmoRef(koid, via, rights, fd))
    return tuple(out)


def decoded(blob: bytes, base: int | None) -> tuple[VmoRef, ...]:
    return RefDecoder().decode({1: blob}, {} if base is None else {1: base})[1]


@pytest.mark.parametrize("seed", range(40))
def test_references_round_trip(seed):
    rng = random.Random(seed)
    base = rng.choice([None, 0, 7, INODE_KOID_BASE - 1, rng.randrange(INODE_KOID_BASE)])
    refs = random_refs(rng, base, rng.choice([0, 1, 2, 50, 2000]), rng.choice([1, 3, 200]))
    blob = pack_refs(refs, base)
    assert blob == pack_refs(refs, base)  # the same references, the same bytes
    assert decoded(blob, base) == refs
    # The same as the schema-4 spelling of them reads back.
    assert decoded(refs_blob(refs, base), base) == refs
    assert blobs.ref_rows(blob) == json.loads(zlib.decompress(refs_blob(refs, base)))


def test_codes_widen_with_the_number_of_kinds():
    # One kind per descriptor: 300 kinds take 2-byte codes, 40,000 4-byte ones.
    for n, width in ((60, 1), (300, 2), (40_000, 4)):
        refs = tuple(VmoRef(INODE_KOID_BASE + i, ("HANDLE",), ("READ",), i) for i in range(n))
        raw = zlib.decompress(pack_refs(refs, None))
        assert raw[1] == width
        assert decoded(pack_refs(refs, None), None) == refs


def test_an_empty_reference_list_round_trips():
    assert decoded(pack_refs((), None), None) == ()
    assert decoded(pack_refs((), 5), 5) == ()
    assert blobs.absolute_refs(pack_refs((), 5)) == []


def test_absolute_references_of_either_spelling():
    rng = random.Random(9)
    refs = random_refs(rng, 1000, 300)
    want = [(r.vmo_koid, r.via) for r in refs if r.vmo_koid >= INODE_KOID_BASE]
    got = blobs.absolute_refs(pack_refs(refs, 1000))
    assert [(k, tuple(v)) for k, v in got] == want
    old = blobs.absolute_refs(refs_blob(refs, 1000))
    assert [(k, tuple(v)) for k, v in old] == want


@pytest.mark.parametrize("seed", range(10))
def test_layouts_round_trip(seed):
    rng = random.Random(seed)
    base = rng.choice([0, 1, INODE_KOID_BASE - 1, U64 - 1])
    offsets = [rng.randrange(1 << rng.choice([4, 32, 40])) for _ in range(rng.randrange(300))]
    blob = blobs.encode_layout(base, offsets)
    assert blobs.decode_layout(blob) == (base, offsets)
    assert blobs.decode_layout(pack([base, offsets])) == (base, offsets)
    assert blobs.layout_from_json(pack([base, offsets])) == blob


def test_what_a_blob_cannot_hold_is_refused():
    with pytest.raises(blobs.BlobError):
        blobs.encode_refs([(U64, False, (("MAPPING",), (), None))])
    with pytest.raises(blobs.BlobError):
        blobs.encode_refs([(-1, False, (("MAPPING",), (), None))])
    with pytest.raises(blobs.BlobError):
        blobs.encode_layout(-1, [])
    assert blobs.layout_from_json(pack([1, [-2]])) is None
    assert blobs.layout_from_json(pack({"no": 1})) is None


def _refs_raw(kinds: bytes, koids: list[int], codes: list[int], width: int = 1) -> bytes:
    code = {1: "B", 2: "H", 4: "I"}[width]
    return (struct.pack("<cBII", b"R", width, len(koids), len(kinds)) + kinds
            + struct.pack(f"<{len(koids)}Q", *koids) + struct.pack(f"<{len(codes)}{code}", *codes))


PLAIN = b'[[["MAPPING"],[],null]]'
DAMAGED = {
    "not deflated": b"not deflated",
    "cut short": zlib.compress(b"R\x01"),
    "too long": zlib.compress(_refs_raw(PLAIN, [1], [0]) + b"\x00"),
    "bad width": zlib.compress(_refs_raw(PLAIN, [1], [0])[:1] + b"\x03"
                               + _refs_raw(PLAIN, [1], [0])[2:]),
    "kind past the table": zlib.compress(_refs_raw(PLAIN, [1, 2], [0, 2])),
    "kinds not JSON": zlib.compress(_refs_raw(b"[[", [1], [0])),
    "kind not a triple": zlib.compress(_refs_raw(b'[["MAPPING"]]', [1], [0])),
    "via not texts": zlib.compress(_refs_raw(b"[[[1],[],null]]", [1], [0])),
}


@pytest.mark.parametrize("damage", sorted(DAMAGED))
def test_a_damaged_references_blob_is_an_error(damage):
    with pytest.raises((ValueError, zlib.error)):
        RefDecoder().decode({1: DAMAGED[damage]}, {1: 5})


def test_a_damaged_layout_blob_is_an_error():
    for blob in (zlib.compress(b"L\x04"), zlib.compress(struct.pack("<cBQI", b"L", 4, 1, 2)),
                 zlib.compress(struct.pack("<cBQI", b"L", 3, 1, 0)), pack([1, ["x"]])):
        with pytest.raises(ValueError):
            blobs.decode_layout(blob)


@pytest.mark.parametrize("damage", ["kind past the table", "cut short", "kinds not JSON"])
def test_a_damaged_blob_in_a_store_is_one_line(tmp_path, cli, damage):
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    Writer(conn).write(made_up(), OBJECTS, T0)
    conn.execute("UPDATE vmo_refs SET refs = ? WHERE rowid = 1", (DAMAGED[damage],))
    conn.close()
    for argv in (["digest", "--from", path], ["vmos", "--from", path, "2"]):
        r = cli(argv)
        assert r.status == 1 and r.stdout == "", argv
        assert r.stderr.startswith(f"zxmem: {path}: cannot read the store: "), r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


def test_a_damaged_layout_in_a_store_is_one_line(tmp_path, cli):
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    Writer(conn).write(made_up(), OBJECTS, T0)
    assert conn.execute("SELECT count(*) FROM vmo_base").fetchone()[0] >= 1
    conn.execute("UPDATE vmo_base SET layout = ?",
                 (zlib.compress(struct.pack("<cBQI", b"L", 4, 1, 9)),))
    conn.close()
    for argv in (["digest", "--from", path], ["vmos", "--from", path, "2"],
                 ["memgraph", "-v", "--from", path]):
        r = cli(argv)
        assert r.status == 1 and r.stdout == "", argv
        assert r.stderr.startswith(f"zxmem: {path}"), r.stderr
        assert r.stderr.count("\n") == 1 and "Traceback" not in r.stderr


# ---------------------------------------------------------------------------
# Schema 4 -> 5


def _as_schema_4(path: str, damaged_rowid: int | None = None) -> None:
    """Respell the blobs as schema 4 wrote them (JSON) and say schema 4."""
    c = sqlite3.connect(path, isolation_level=None)
    for rowid, blob in c.execute("SELECT rowid, refs FROM vmo_refs").fetchall():
        rows = blobs.ref_rows(blob)
        c.execute("UPDATE vmo_refs SET refs = ? WHERE rowid = ?", (pack(rows), rowid))
    for rowid, blob in c.execute("SELECT rowid, layout FROM vmo_base").fetchall():
        base, offsets = blobs.decode_layout(blob)
        c.execute("UPDATE vmo_base SET layout = ? WHERE rowid = ?",
                  (pack([base, offsets]), rowid))
    if damaged_rowid is not None:
        c.execute("UPDATE vmo_refs SET refs = ? WHERE rowid = ?",
                  (zlib.compress(b'[[1,"MAPPING"]]'), damaged_rowid))
    c.execute("PRAGMA user_version=4")
    c.close()


def _snapshots() -> list:
    """Objects samples of processes with many references (huge koids, koids
    relative to the base, hostile kinds), one that exits, one with none."""
    rng = random.Random(4)
    snap = made_up()
    procs = list(snap.processes)
    vmos = dict(snap.vmos)
    for i in range(3):
        base = 100 + 1000 * i
        refs = random_refs(rng, base, 80)
        procs.append(Process(50 + i, f"p{i}\x1b[2J", 5, start_time_ticks=i, vmo_refs=refs))
        for r in refs:
            vmos.setdefault(r.vmo_koid, replace(snap.vmos[3], koid=r.vmo_koid))
    first = replace(snap, processes=tuple(procs), vmos=vmos)
    second = replace(first, processes=tuple(p for p in procs if p.koid != 51))
    return [(first, OBJECTS), (first, TOTALS), (second, OBJECTS)]


def test_a_schema_4_store_is_migrated_and_every_sample_reads_back(tmp_path, cli):
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    w = Writer(conn)
    tiers = _snapshots()
    for i, (s, tier) in enumerate(tiers):
        w.write(s, tier, T0 + i)
    binary = conn.execute("SELECT rowid, refs FROM vmo_refs ORDER BY rowid").fetchall()
    layouts = conn.execute("SELECT rowid, layout FROM vmo_base ORDER BY rowid").fetchall()
    conn.close()
    _as_schema_4(path)
    r = cli(["history", "--store", path])
    assert r.status == 0, r.stderr
    c = sqlite3.connect(path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == VERSION == 5
    # Every blob in the binary spelling, byte for byte what the writer writes.
    assert c.execute("SELECT rowid, refs FROM vmo_refs ORDER BY rowid").fetchall() == binary
    assert c.execute("SELECT rowid, layout FROM vmo_base ORDER BY rowid").fetchall() == layouts
    for n, (s, tier) in enumerate(tiers, 1):
        assert read_sample(c, n) == stored_form(s, tier)
    c.close()
    # A writer goes on: the same sample again adds no references or layout rows.
    conn = open_store(path, create=True)
    before = conn.execute("SELECT (SELECT count(*) FROM vmo_refs), "
                          "(SELECT count(*) FROM vmo_base)").fetchone()
    n = Writer(conn).write(tiers[-1][0], OBJECTS, T0 + 9)
    assert conn.execute("SELECT (SELECT count(*) FROM vmo_refs), "
                        "(SELECT count(*) FROM vmo_base)").fetchone() == before
    assert read_sample(conn, n) == stored_form(tiers[-1][0], OBJECTS)
    conn.close()


def _cannot_migrate(monkeypatch) -> None:
    """A reader without write access to the store (root's store read by a
    user; tests run as root, so the refusal is simulated where it happens)."""
    import zxmem.store.schema as schema

    def refuse(conn, version, path):
        raise schema.StoreError(f"{path}: cannot create or migrate the store: "
                                "attempt to write a readonly database")

    monkeypatch.setattr(schema, "_upgrade", refuse)


def test_a_schema_4_store_a_reader_cannot_migrate_is_read_as_it_is(tmp_path, cli,
                                                                   monkeypatch):
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    tiers = _snapshots()
    for i, (s, tier) in enumerate(tiers):
        Writer(conn).write(s, tier, T0 + i)
    conn.close()
    _as_schema_4(path)
    migrated = str(tmp_path / "m.db")
    shutil.copy(path, migrated)
    want = cli(["digest", "--from", f"{migrated}@3"])  # migrates that copy
    assert want.status == 0 and want.stdout, want.stderr
    _cannot_migrate(monkeypatch)
    c = open_store(path, create=False, readonly=True)
    try:
        assert c.execute("PRAGMA user_version").fetchone()[0] == 4
        for n, (s, tier) in enumerate(tiers, 1):
            assert read_sample(c, n) == stored_form(s, tier)
    finally:
        c.close()
    r = cli(["digest", "--from", f"{path}@3"])
    assert (r.status, r.stdout, r.stderr) == (0, want.stdout, want.stderr)
    assert sqlite3.connect(migrated).execute("PRAGMA user_version").fetchone()[0] == VERSION


def test_an_older_store_a_reader_cannot_migrate_is_one_line(tmp_path, cli, monkeypatch):
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    Writer(conn).write(made_up(), TOTALS, T0)
    conn.close()
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("PRAGMA user_version=3")  # its tables lack what schema 4 added
    c.close()
    _cannot_migrate(monkeypatch)
    r = cli(["ps", "--from", path])
    assert r.status == 1 and r.stdout == ""
    assert r.stderr == (f"zxmem: {path}: written by an older zxmem (store schema 3); it must "
                        f"be migrated to schema {VERSION} first, which needs write access to "
                        f"it and its directory: run `zxmem history --store {path}` once as "
                        "its owner\n")


def test_a_damaged_schema_4_blob_is_left_and_read_as_an_error(tmp_path, cli):
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    Writer(conn).write(made_up(), OBJECTS, T0)
    Writer(conn).write(made_up(), TOTALS, T0 + 1)
    conn.close()
    _as_schema_4(path, damaged_rowid=1)
    r = cli(["ps", "--from", path + "@2"])  # migrates; a totals sample reads no blob
    assert r.status == 0, r.stderr
    c = sqlite3.connect(path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == VERSION
    assert zlib.decompress(c.execute("SELECT refs FROM vmo_refs WHERE rowid = 1"
                                     ).fetchone()[0])[:1] == b"["
    c.close()
    r = cli(["digest", "--from", path + "@1"])
    assert r.status == 1 and r.stderr.startswith(f"zxmem: {path}@1: cannot read the store: ")
    assert r.stderr.count("\n") == 1


# ---------------------------------------------------------------------------
# Anonymous objects: the usual shape is read as one value


def test_anonymous_objects_of_every_shape_read_back(tmp_path):
    """Most anonymous objects have no children, one mapping and one sharer
    and no file (what a live collection's per-mapping objects hold); the
    others are read back column by column, whatever they hold."""
    from zxmem.model import Vmo

    rng = random.Random(11)
    snap = made_up()
    vmos = dict(snap.vmos)
    procs = list(snap.processes)
    for p in range(4):
        refs = []
        for i in range(700):
            koid = 1000 + 1000 * p + i
            usual = rng.random() < 0.8
            vmos[koid] = Vmo(
                koid, rng.choice(["[heap]", "[anon]", "[stack]", "\x1b[2J"]),
                rng.choice(["anon", "clone", None]), rng.randrange(1 << 40),
                rng.choice([None, 0, 4096, rng.randrange(1 << 40)]),
                parent_koid=rng.choice([0, koid - 1, (1 << 63) + 7]),
                num_children=0 if usual else rng.choice([0, 1, 7]),
                num_mappings=1 if usual else rng.choice([None, 0, 1, 3]),
                share_count=1 if usual else rng.choice([0, 1, 1024]),
                dev=None if usual else rng.choice([None, 0, 2049, (1 << 63) + 1]),
                inode=None if usual else rng.choice([None, 0, 77]),
                path=None if usual else rng.choice([None, "", "/memfd:x (deleted)", "\udcff"]),
                swap_bytes=rng.choice([None, 0, 8192]))
            refs.append(VmoRef(koid, ("MAPPING",)))
        procs.append(Process(60 + p, f"w{p}", 5, start_time_ticks=p, vmo_refs=tuple(refs)))
    big = replace(snap, processes=tuple(procs), vmos=vmos)
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    w = Writer(conn)
    w.write(big, OBJECTS, T0)
    w.write(replace(big, processes=tuple(p for p in procs if p.koid != 60)), OBJECTS, T0 + 1)
    assert conn.execute("SELECT count(*) FROM anon_vmos").fetchone()[0] > 2000
    assert read_sample(conn, 1) == stored_form(big, OBJECTS)
    second = read_sample(conn, 2)
    assert second == stored_form(replace(big, processes=tuple(p for p in procs
                                                              if p.koid != 60)), OBJECTS)
    assert second.vmos == big.vmos
    conn.close()


# ---------------------------------------------------------------------------
# Mappings of processes alike (a workload's forks)


def test_processes_with_equal_mapping_blobs_each_read_their_own(tmp_path):
    """Forks map the same files and each its own anonymous objects: their
    blobs are equal (owned koids are relative to each one's base), read
    once, and each process gets its own koids back; mappings of files
    alone are the same for every such process (one shared tuple)."""
    from zxmem.model import Mapping, Vmo, inode_koid
    from zxmem.regions import find_regions

    snap = made_up()
    lib = inode_koid(2049, 77)
    vmos = dict(snap.vmos)
    vmos[lib] = Vmo(lib, "libx.so", "file", 1 << 20, 8192, dev=2049, inode=77,
                    path="/usr/lib/libx.so\x1b[2J", num_mappings=8, share_count=8)
    files = (Mapping(0x400000, 0x401000, "r-xp", 0, 2049, 77, "/usr/lib/libx.so\x1b[2J", lib,
                     rss_bytes=4096, pss_bytes=1024, private_bytes=0, shared_bytes=4096,
                     vm_flags="rd ex"),)
    procs = list(snap.processes)
    for i in range(6):
        own = 5000 + 10 * i
        anon = tuple(Mapping(0x600000 + 0x2000 * j, 0x601000 + 0x2000 * j, "rw-p", 0, 0, 0,
                             "", own + j, rss_bytes=4096 * j, pss_bytes=4096 * j,
                             private_bytes=4096 * j, shared_bytes=0,
                             anonymous_bytes=4096 * j, swap_bytes=None)
                     for j in range(3)) if i < 4 else ()
        for m in anon:
            vmos[m.vmo_koid] = Vmo(m.vmo_koid, "[anon]", "anon", 4096, m.rss_bytes,
                                   num_mappings=1, share_count=1)
        maps = files + anon
        procs.append(Process(70 + i, f"fork{i}", 5, start_time_ticks=i, mappings=maps,
                             regions=find_regions(maps),
                             vmo_refs=tuple(VmoRef(m.vmo_koid, ("MAPPING",)) for m in maps)))
    forks = replace(snap, processes=tuple(procs), vmos=vmos)
    conn = open_store(str(tmp_path / "h.db"), create=True)
    Writer(conn).write(forks, OBJECTS, T0)
    blobs_of = [b for (b,) in conn.execute("SELECT maps FROM mappings ORDER BY ent")]
    assert len(set(blobs_of)) < len(blobs_of)  # the forks' blobs are equal
    back = read_sample(conn, 1, mappings=True)
    assert back == stored_form(forks, OBJECTS, mappings=True)
    got = [back.process(70 + i).mappings for i in range(6)]
    assert [m.vmo_koid for m in got[1]] == [lib, 5010, 5011, 5012]
    assert got[4] is got[5] and got[4] == files
    # A fork's mapping of a file is one record for all of them; its own are its own.
    assert got[0][0] is got[1][0] is got[3][0] and got[0][0] == got[4][0]
    assert [m.vmo_koid for m in got[3][1:]] == [5030, 5031, 5032]
    conn.close()
