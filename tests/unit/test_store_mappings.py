"""The history store keeps every process's mappings in its objects samples:
the blob round trip, rows only when mappings change, views of a replayed
sample equal to the same views of the memgraph file it was written from,
what a totals sample says, retention of the strings, and schema 3 -> 4."""

from __future__ import annotations

import io
import json
import sqlite3
from dataclasses import replace

import pytest
from fixture_paths import REPO
from memgraph_samples import HOSTILE

import zxmem
from zxmem import memgraph
from zxmem.cli import Environment, main
from zxmem.model import INODE_KOID_BASE, Mapping, Process, Vmo, VmoRef, inode_koid
from zxmem.regions import find_regions
from zxmem.store import maps as codec
from zxmem.store.reader import read_sample, stored_form, with_mappings
from zxmem.store.schema import VERSION, open_store
from zxmem.store.writer import OBJECTS, TOTALS, Writer

TREE = REPO / "tests" / "fixtures" / "proc-trees" / "no-smaps-rollup" / "proc"
T0 = 1_796_000_000 * 10**9
# A file name that tries to clear the screen, break a JSON string and a line,
# reverse the text, and holds a byte that is not UTF-8 (as decode_name gives it).
HOSTILE_PATH = "/tmp/" + HOSTILE + "\udcff (deleted)"
HOSTILE_PID = 31337
MANY_PID = 40000
MANY_STACKS = 1000


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> str:
    """A ``zxmem memgraph -v`` file: the recorded tree (four processes, about
    130 mappings each) and one more process with a hostile name and path
    and one with no address space; written and read back as a file, so the
    store is fed exactly what a memgraph holds."""
    out_, err_ = io.StringIO(), io.StringIO()
    status = main(["memgraph", "-v", "--proc-root", str(TREE)],
                  Environment(stdout=out_, stderr=err_, stdout_isatty=False))
    assert status == 0, err_.getvalue()
    path = tmp_path_factory.mktemp("mg") / "base.json"
    path.write_text(out_.getvalue())
    base = zxmem.load(str(path))
    assert [len(p.mappings or ()) for p in base.processes] == [138, 128, 127, 127]
    web = base.processes[0]
    koid = inode_koid(0x803, 4242)
    odd = (
        Mapping(0x10000, 0x11000, "r--p", 0, 0x803, 4242, HOSTILE_PATH, koid, rss_bytes=4096,
                pss_bytes=1365, private_bytes=0, shared_bytes=4096, private_dirty_bytes=0,
                anonymous_bytes=0, swap_bytes=0, swap_pss_bytes=0, vm_flags="rd mr mw me"),
        # Counts that are not whole pages, unknown ones, no VmFlags.
        Mapping(0x11000, 0x13000, "rw-p", 0x1000, 0x803, 4242, HOSTILE_PATH, koid,
                rss_bytes=1000, pss_bytes=None, private_bytes=1000, shared_bytes=None,
                vm_flags=None),
    )
    hostile = replace(web, koid=HOSTILE_PID, name=HOSTILE[:15], cmdline=(HOSTILE,),
                      start_time_ticks=777, mappings=odd + web.mappings[:40],
                      regions=find_regions(odd + web.mappings[:40]),
                      vmo_refs=(VmoRef(koid, ("MAPPING",)),) + (web.vmo_refs or ()))
    kthread = Process(koid=HOSTILE_PID + 1, name="kworker/0:1", job_koid=web.job_koid,
                      kernel_thread=True, mappings=(), regions=(), vmo_refs=())
    vmos = dict(base.vmos)
    vmos[koid] = Vmo(koid, HOSTILE_PATH, "file", 8192, 4096, dev=0x803, inode=4242,
                     path=HOSTILE_PATH, num_mappings=2, share_count=1)
    # Many mappings (a JVM or a browser has thousands): 1,000 thread stacks,
    # each a guard page below 1 MiB of stack, every object its own.
    stacks = []
    for i in range(2 * MANY_STACKS):
        k = 900_000 + i
        start = 0x7F00_0000_0000 + (i // 2) * 0x101000 + (i % 2) * 0x1000
        size = 0x100000 if i % 2 else 0x1000
        rss = (i % 7) * 4096 if i % 2 else 0
        stacks.append(Mapping(start, start + size, "rw-p" if i % 2 else "---p", 0, 0, 0, "",
                              k, rss_bytes=rss, pss_bytes=rss, private_bytes=rss,
                              shared_bytes=0, private_dirty_bytes=rss, anonymous_bytes=rss,
                              swap_bytes=0, swap_pss_bytes=0, vm_flags="rd wr mr mw me ac"))
        vmos[k] = Vmo(k, "mmap-anonymous", "anon", size, rss, num_mappings=1, share_count=1)
    many = replace(web, koid=MANY_PID, name="many-threads", cmdline=("many",),
                   start_time_ticks=888, mappings=tuple(stacks),
                   regions=find_regions(tuple(stacks)),
                   vmo_refs=tuple(VmoRef(m.vmo_koid, ("MAPPING",)) for m in stacks))
    snap = replace(base, processes=base.processes + (hostile, kthread, many), vmos=vmos)
    out = tmp_path_factory.mktemp("mg") / "memgraph.json"
    out.write_text(memgraph.dumps(snap))
    return str(out)


def store_of(tmp_path, snaps_tiers) -> tuple[str, sqlite3.Connection, Writer]:
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    w = Writer(conn)
    for i, (snap, tier) in enumerate(snaps_tiers):
        w.write(snap, tier, T0 + i * 10**10)
    return path, conn, w


# ---------------------------------------------------------------------------
# The blob


def _ids():
    table: dict[str, int] = {}
    return table, (lambda s: table.setdefault(s, len(table) + 1))


def test_the_blob_decodes_to_what_was_encoded():
    file_koid = inode_koid(0x803, 99)
    maps = (
        Mapping(0x5000, 0x6000, "r-xp", 0, 0x803, 99, "/bin/x", file_koid, rss_bytes=4096,
                pss_bytes=2048, private_bytes=0, shared_bytes=4096, vm_flags="rd ex"),
        Mapping(0x6000, 0x8000, "rw-p", 0x1000, 0x803, 99, "/bin/x", 41, rss_bytes=8192,
                pss_bytes=8192, private_bytes=8192, shared_bytes=0, private_dirty_bytes=8192,
                anonymous_bytes=8192, swap_bytes=0, swap_pss_bytes=0, vm_flags="rd wr"),
        Mapping(0x9000, 0xA000, "rw-p", 0, 0, 0, "", 42, rss_bytes=None),
        Mapping(0xA000, 0xB000, "r--p", 0, 0, 0, "[vvar]", 7, rss_bytes=0,
                pss_bytes=0, vm_flags="rd pf io"),  # another process's object
        # A koid that is not the inode's (an imported file), odd byte counts,
        # a negative residual (Shared larger than Rss - Private).
        Mapping(0xB000, 0xC000, "rw-s", 3, 5, 6, HOSTILE_PATH, INODE_KOID_BASE + 12345,
                rss_bytes=1000, pss_bytes=10, private_bytes=10, shared_bytes=5000,
                swap_bytes=1, swap_pss_bytes=0),
        Mapping((1 << 64) - 0x1000, 1 << 64, "--xp", 0, 0, 0, "[vsyscall]", 43),
    )
    owner = {41: 5, 42: 5, 43: 5, 7: 2}.get
    strings, sid = _ids()
    blob, used = codec.encode(maps, 5, owner, 41, sid)
    text = {i: s for s, i in strings.items()}

    def entry(i: int) -> tuple:
        return codec.entry(text[i])

    doc = codec.parse(blob)
    assert set(codec.string_ids(doc)) == used == set(text)
    assert codec.decode(doc, 41, entry) == maps
    # Owned koids are relative to the process's base: renumbered with it.
    moved = tuple(replace(m, vmo_koid=m.vmo_koid + 100) if m.vmo_koid in (41, 42, 43) else m
                  for m in maps)
    assert codec.encode(moved, 5, lambda k: 5 if k in (141, 142, 143) else owner(k), 141,
                        sid)[0] == blob
    assert codec.decode(doc, 141, entry) == moved
    assert codec.encode((), 5, owner, None, sid) == (b"", set())
    assert codec.decode(codec.parse(b""), None, entry) == ()


def test_a_corrupt_blob_is_a_store_error(tmp_path, saved, cli):
    path, conn, _ = store_of(tmp_path, [(zxmem.load(saved), OBJECTS)])
    conn.execute("UPDATE mappings SET maps = x'00112233' WHERE rowid = 1")
    conn.close()
    pid = zxmem.load(saved).processes[0].koid
    r = cli(["vmaps", "--from", path, str(pid)])
    assert r.status == 1 and r.stdout == ""
    assert r.stderr.startswith(f"zxmem: {path}@1: cannot read the mappings: ")
    assert r.stderr.count("\n") == 1


# ---------------------------------------------------------------------------
# Round trips and rows


def test_an_objects_sample_reads_back_its_mappings(tmp_path, saved):
    snap = zxmem.load(saved)
    _, conn, _ = store_of(tmp_path, [(snap, OBJECTS), (snap, TOTALS), (snap, OBJECTS)])
    for n in (1, 3):
        back = read_sample(conn, n, mappings=True)
        assert back == stored_form(snap, OBJECTS, mappings=True)
        path = back.process(HOSTILE_PID).mappings[0].path
        assert path == snap.process(HOSTILE_PID).mappings[0].path
        assert path.startswith("/tmp/a\"b\\c\x01\x1b[2J\nnew\u202e") and len(back.vmos) > 100
        assert back.process(HOSTILE_PID + 1).mappings == ()
        # Without asking, the sample reads as before (no mappings).
        assert read_sample(conn, n) == stored_form(snap, OBJECTS)
    web = snap.processes[0]
    one = read_sample(conn, 3, mappings=(web.koid,))
    assert one.process(web.koid).mappings == web.mappings
    assert one.process(web.koid).regions == web.regions
    assert all(p.mappings is None for p in one.processes if p.koid != web.koid)
    # A totals sample holds none.
    assert read_sample(conn, 2, mappings=True) == stored_form(snap, TOTALS)


def test_unchanged_mappings_add_no_row_and_a_changed_one_adds_one(tmp_path, saved):
    snap = zxmem.load(saved)
    _, conn, w = store_of(tmp_path, [(snap, OBJECTS)])
    count = "SELECT count(*) FROM mappings"
    nproc = sum(p.mappings is not None for p in snap.processes)
    assert conn.execute(count).fetchone()[0] == nproc
    w.write(snap, OBJECTS, T0 + 1)
    assert conn.execute(count).fetchone()[0] == nproc
    # A writer that starts afresh (a restarted recorder) encodes them again: the same.
    w = Writer(conn)
    w.write(snap, OBJECTS, T0 + 1)
    assert conn.execute(count).fetchone()[0] == nproc
    web = snap.processes[1]
    grown = replace(web.mappings[3], rss_bytes=(web.mappings[3].rss_bytes or 0) + 4096)
    changed = replace(snap, processes=tuple(
        replace(p, mappings=p.mappings[:3] + (grown,) + p.mappings[4:]) if p is web else p
        for p in snap.processes))
    n = w.write(changed, OBJECTS, T0 + 2)
    assert conn.execute(count).fetchone()[0] == nproc + 1
    assert read_sample(conn, n, mappings=True) == stored_form(changed, OBJECTS, mappings=True)
    assert read_sample(conn, n - 1, mappings=True) == stored_form(snap, OBJECTS, mappings=True)


def test_renumbered_anonymous_objects_rewrite_no_mappings(tmp_path, saved):
    """An exited process shifts the sequence koids of every process after
    it (those of the objects each owns: reaches first; the first process
    owns the ones every process maps, [vdso] and [vvar]): their mappings
    rows stay, their koids relative to the process's base."""
    snap = zxmem.load(saved)
    owner: dict[int, int] = {}
    for p in snap.processes:
        for r in p.vmo_refs or ():
            owner.setdefault(r.vmo_koid, p.koid)
    first = snap.processes[0].koid
    assert any(o != first for o in owner.values())

    def k(koid: int) -> int:
        # (up, past every koid: no two objects share one)
        return koid + 1000 if koid < INODE_KOID_BASE and owner.get(koid) != first else koid

    shifted = replace(snap, processes=tuple(
        replace(p, mappings=tuple(replace(m, vmo_koid=k(m.vmo_koid)) for m in p.mappings or ()),
                vmo_refs=tuple(replace(r, vmo_koid=k(r.vmo_koid)) for r in p.vmo_refs or ()))
        for p in snap.processes), vmos={k(v.koid): replace(v, koid=k(v.koid))
                                        for v in snap.vmos.values()})
    _, conn, w = store_of(tmp_path, [(snap, OBJECTS)])
    before = conn.execute("SELECT count(*) FROM mappings").fetchone()[0]
    n = w.write(shifted, OBJECTS, T0 + 1)
    assert conn.execute("SELECT count(*) FROM mappings").fetchone()[0] == before
    assert read_sample(conn, n, mappings=True) == stored_form(shifted, OBJECTS, mappings=True)
    assert read_sample(conn, 1, mappings=True) == stored_form(snap, OBJECTS, mappings=True)


def test_a_process_whose_maps_were_not_read_has_no_mappings(tmp_path, saved, cli):
    snap = zxmem.load(saved)
    pid = snap.processes[2].koid
    prov = replace(snap.provenance, denied=snap.provenance.denied + ((f"maps:{pid}", "EACCES"),))
    denied = replace(snap, provenance=prov, processes=tuple(
        replace(p, mappings=None, regions=None) if p.koid == pid else p
        for p in snap.processes))
    path, conn, _ = store_of(tmp_path, [(denied, OBJECTS)])
    back = read_sample(conn, 1, mappings=True)
    assert back.process(pid).mappings is None and back.process(pid).regions is None
    assert back == stored_form(denied, OBJECTS, mappings=True)
    conn.close()
    # Said as for a memgraph file (only this process's mappings are read
    # from a store: that the others' are not is no reason).
    r = cli(["vmaps", "--from", path, str(pid)])
    assert r.status == 1 and r.stderr == (
        f"zxmem: {path}: the memory maps of pid {pid} were not readable when the snapshot "
        "was taken (EACCES)\n")


# ---------------------------------------------------------------------------
# Views of a replayed sample are the views of the memgraph it was written from


def _pids(saved: str) -> list[int]:
    return [p.koid for p in zxmem.load(saved).processes if not p.kernel_thread]


@pytest.mark.parametrize("flags", [[], ["--extra", "--total"], ["--json"], ["--wide"]])
def test_vmaps_of_a_replayed_sample_is_vmaps_of_its_memgraph(tmp_path, saved, cli, flags):
    path, conn, _ = store_of(tmp_path, [(zxmem.load(saved), OBJECTS)])
    conn.close()
    pids = _pids(saved)
    assert HOSTILE_PID in pids and MANY_PID in pids and len(pids) == 6
    for pid in pids:
        from_file = cli(["vmaps", *flags, "--from", saved, str(pid)])
        from_store = cli(["vmaps", *flags, "--from", path + "@1", str(pid)])
        assert from_file.status == from_store.status == 0, from_store.stderr
        assert from_store.stdout == from_file.stdout
        out = from_store.stdout
        assert max(out.count("\n"), out.count('"type":"mapping"')) >= 40
    hostile = cli(["vmaps", *flags, "--from", path, str(HOSTILE_PID)]).stdout
    assert "\x1b" not in hostile and "\u202e" not in hostile
    if flags == ["--json"]:
        doc = json.loads(hostile)
        assert any(e.get("name", "").startswith("/tmp/") for e in doc["entries"])


def test_vmos_and_memgraph_of_a_replayed_sample_are_those_of_its_memgraph(tmp_path, saved,
                                                                           cli):
    path, conn, _ = store_of(tmp_path, [(zxmem.load(saved), OBJECTS)])
    conn.close()
    for pid in _pids(saved):
        from_file = cli(["vmos", "--from", saved, str(pid)])
        from_store = cli(["vmos", "--from", path, str(pid)])
        assert from_file.status == from_store.status == 0, from_store.stderr
        assert from_store.stdout == from_file.stdout
    from_file = cli(["memgraph", "-v", "--from", saved])
    from_store = cli(["memgraph", "-v", "--from", path])
    assert from_file.status == from_store.status == 0, from_store.stderr
    assert from_store.stdout == from_file.stdout
    assert '"mappings":' in from_store.stdout and '"regions":' in from_store.stdout


# ---------------------------------------------------------------------------
# A sample without mappings says which samples have them


def test_vmaps_of_a_totals_sample_names_the_nearest_objects_samples(tmp_path, saved, cli):
    snap = zxmem.load(saved)
    tiers = [TOTALS, OBJECTS, TOTALS, TOTALS, OBJECTS, TOTALS]
    path, conn, _ = store_of(tmp_path, [(snap, t) for t in tiers])
    conn.close()
    pid = str(snap.processes[0].koid)
    for at, near in (("3", "2 (before) and 5 (after)"), ("1", "2 (after)"),
                     ("6", "5 (before)"), ("last", "5 (before)")):
        r = cli(["vmaps", "--from", f"{path}@{at}", pid])
        assert r.status == 1 and r.stdout == ""
        n = 6 if at == "last" else int(at)
        assert r.stderr == (
            f"zxmem: {path}@{at}: sample {n} is a totals sample and holds no mappings "
            "(zxmem record keeps them in every --objects-every-th sample); the nearest "
            f"objects {'samples' if 'and' in near else 'sample'} with them: {near}\n")
        r = cli(["vmos", "--from", f"{path}@{at}", pid])
        assert r.status == 1 and "holds no memory objects" in r.stderr and near in r.stderr
    for at in ("2", "5"):
        r = cli(["vmaps", "--from", f"{path}@{at}", pid])
        assert r.status == 0 and r.stdout == cli(["vmaps", "--from", saved, pid]).stdout


def test_a_store_without_objects_samples_says_so(tmp_path, saved, cli):
    snap = zxmem.load(saved)
    path, conn, _ = store_of(tmp_path, [(snap, TOTALS)])
    conn.close()
    r = cli(["vmaps", "--from", path, str(snap.processes[0].koid)])
    assert r.status == 1
    assert r.stderr.endswith("; no sample of this store holds them\n")
    assert r.stderr.count("\n") == 1


# ---------------------------------------------------------------------------
# Retention keeps the strings the mappings use


def test_retention_keeps_the_strings_of_the_mappings_it_keeps(tmp_path, saved):
    from zxmem.store.recorder import Recorder

    snap = zxmem.load(saved)
    web = snap.processes[0]
    gone = replace(snap, processes=tuple(p for p in snap.processes if p.koid != HOSTILE_PID))
    path = str(tmp_path / "r.db")
    with Recorder(path, print) as rec:
        for i, s in enumerate([snap, gone, gone]):
            rec.add(s, OBJECTS, T0 + i)
        used = {m.path for p in gone.processes for m in p.mappings or ()}
        rec._drop_before(2)
        left = {bytes(s).decode("utf-8", "surrogatepass")
                for (s,) in rec.conn.execute("SELECT s FROM strings")}
        assert used <= left and HOSTILE_PATH not in left
        for n in (2, 3):
            back = read_sample(rec.conn, n, mappings=True)
            assert back == stored_form(gone, OBJECTS, mappings=True)
            assert back.process(web.koid).mappings == web.mappings


# ---------------------------------------------------------------------------
# Schema 3 -> 4


def _as_schema_3(path: str) -> None:
    """Make a store what schema 3 wrote: no mappings tables, no meta row."""
    c = sqlite3.connect(path, isolation_level=None)
    c.execute("DROP TABLE mappings")
    c.execute("DROP TABLE map_strings")
    c.execute("DELETE FROM meta WHERE key = 'mappings_from'")
    c.execute("PRAGMA user_version=3")
    c.close()


def test_a_schema_3_store_is_migrated_and_every_sample_replays(tmp_path, saved, cli):
    snap = zxmem.load(saved)
    grown = replace(snap, processes=snap.processes[:-1])
    tiers = [(snap, OBJECTS), (snap, TOTALS), (grown, OBJECTS), (grown, TOTALS)]
    path, conn, _ = store_of(tmp_path, tiers)
    conn.close()
    _as_schema_3(path)
    pid = str(snap.processes[0].koid)
    history = cli(["history", "--store", path, "--json"])
    assert history.status == 0, history.stderr
    c = sqlite3.connect(path)
    assert c.execute("PRAGMA user_version").fetchone()[0] == VERSION == 5
    assert c.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
    for n, (s, tier) in enumerate(tiers, 1):
        assert read_sample(c, n) == stored_form(s, tier)
        # Written before the store kept mappings: none, whatever the tier.
        assert read_sample(c, n, mappings=True) == stored_form(s, tier)
    c.close()
    r = cli(["vmaps", "--from", path + "@3", pid])
    assert r.status == 1 and r.stderr == (
        f"zxmem: {path}@3: sample 3 was recorded before this store kept mappings (by a "
        "zxmem older than store schema 4); no sample of this store holds them\n")
    assert cli(["vmos", "--from", path + "@3", pid]).status == 0
    # Recording goes on, with mappings from now on.
    conn = open_store(path, create=True)
    n = Writer(conn).write(snap, OBJECTS, T0 + 10**11)
    assert n == 5
    assert read_sample(conn, 5, mappings=True) == stored_form(snap, OBJECTS, mappings=True)
    assert read_sample(conn, 3) == stored_form(grown, OBJECTS)
    conn.close()
    r = cli(["vmaps", "--from", path + "@4", pid])
    assert r.status == 1 and r.stderr.endswith("the nearest objects sample with them: "
                                               "5 (after)\n")
    assert cli(["vmaps", "--from", path + "@5", pid]).stdout == \
        cli(["vmaps", "--from", saved, pid]).stdout


def test_a_store_of_a_newer_schema_is_refused_in_one_line(tmp_path, saved, cli):
    snap = zxmem.load(saved)
    path, conn, _ = store_of(tmp_path, [(snap, OBJECTS)])
    conn.execute(f"PRAGMA user_version={VERSION + 1}")
    conn.close()
    r = cli(["vmaps", "--from", path, str(snap.processes[0].koid)])
    assert r.status == 1 and r.stdout == ""
    assert r.stderr == (f"zxmem: {path}: written by a newer zxmem (store schema {VERSION + 1}, "
                        f"this zxmem reads up to {VERSION}): upgrade zxmem\n")


def test_with_mappings_leaves_a_snapshot_of_another_store_alone(tmp_path, saved):
    """Processes are matched by identity (boot, PID, start time)."""
    snap = zxmem.load(saved)
    _, conn, _ = store_of(tmp_path, [(snap, OBJECTS)])
    other = replace(snap, provenance=replace(snap.provenance, boot_id="another-boot"),
                    processes=tuple(replace(p, mappings=None, regions=None)
                                    for p in snap.processes))
    assert with_mappings(conn, 1, other) == other
    same = replace(other, provenance=snap.provenance)
    assert with_mappings(conn, 1, same) == stored_form(snap, OBJECTS, mappings=True)
    conn.close()



# ---------------------------------------------------------------------------
# zxmem record itself


def test_vmaps_of_a_recorded_sample_is_vmaps_of_the_tree_it_recorded(tmp_path, cli):
    """``zxmem record`` of a recorded /proc tree (which never changes):
    vmaps of its objects sample prints what vmaps of ``zxmem memgraph -v`` of
    the tree prints (and, for the first process, what vmaps of the tree
    itself prints: the anonymous koids are numbered in the same order), and
    the totals sample after it says where the mappings are."""
    path = str(tmp_path / "rec.db")
    r = cli(["record", "--store", path, "--proc-root", str(TREE), "--count", "2",
             "--interval", "1s", "--objects-every", "2"], sleep=lambda s: None)
    assert r.status == 0, r.stderr
    graph = tmp_path / "graph.json"
    graph.write_text(cli(["memgraph", "-v", "--proc-root", str(TREE)]).stdout)
    live = cli(["vmaps", "--proc-root", str(TREE), "19901"])
    assert live.status == 0 and live.stdout.count("\n") > 100
    assert cli(["vmaps", "--from", path + "@1", "19901"]).stdout == live.stdout
    for pid in ("19901", "19940", "19945", "19948"):
        saved = cli(["vmaps", "--from", str(graph), pid])
        stored = cli(["vmaps", "--from", path + "@1", pid])
        assert saved.status == stored.status == 0, stored.stderr
        assert stored.stdout == saved.stdout and saved.stdout.count("\n") > 100
        r = cli(["vmaps", "--from", path + "@2", pid])
        assert r.status == 1 and r.stderr.endswith(
            "the nearest objects sample with them: 1 (before)\n")


def test_treemap_of_a_replayed_sample_is_treemap_of_its_memgraph(tmp_path, saved, cli):
    """Its anonymous and clone boxes are the PSS of their mappings: a
    replayed objects sample draws them as the file does."""
    path, conn, _ = store_of(tmp_path, [(zxmem.load(saved), OBJECTS)])
    conn.close()
    from_file = cli(["treemap", "--from", saved])
    from_store = cli(["treemap", "--from", path])
    assert from_file.status == from_store.status == 0, from_store.stderr
    origin = from_file.stdout.replace(saved, path)
    assert from_store.stdout == origin and len(origin) > 10_000


def test_the_report_draws_an_objects_moment_with_its_mappings(tmp_path, saved, monkeypatch):
    """The report's treemap of an objects moment is that of its memgraph
    (anonymous and clone boxes are their mappings' PSS)."""
    import zxmem.treemap
    from zxmem.commands.report import build_page

    snap = zxmem.load(saved)
    path, conn, _ = store_of(tmp_path, [(snap, TOTALS), (snap, OBJECTS), (snap, TOTALS)])
    drawn = []
    real = zxmem.treemap.tree_from_snapshot

    def spy(s, *a, **k):
        drawn.append(s)
        return real(s, *a, **k)

    monkeypatch.setattr(zxmem.treemap, "tree_from_snapshot", spy)
    assert build_page(conn, path, moments=1)
    conn.close()
    assert drawn == [stored_form(snap, OBJECTS, mappings=True)]
    assert real(drawn[0]) == real(snap)


# ---------------------------------------------------------------------------
# Views of kernel counters and process totals read no memory objects


@pytest.mark.parametrize("view", [["kstats"], ["kstats", "--explain"], ["kstats", "-t"],
                                  ["memgraph"], ["memgraph", "-t"]])
def test_a_view_without_objects_reads_a_sample_without_them(tmp_path, saved, cli,
                                                            monkeypatch, view):
    import zxmem.sources.load as load

    # The recorded tree has no meminfo: the kernel's counters of another.
    kernel = zxmem.collect(zxmem.Plan(kernel=True),
                           proc_root=str(REPO / "tests/fixtures/kernel/linux-6.18")).kernel
    assert kernel is not None
    path, conn, _ = store_of(tmp_path, [(replace(zxmem.load(saved), kernel=kernel), OBJECTS)])
    conn.close()
    real = load.load_snapshot
    asked: list[bool] = []

    def spy(source, *args, objects=True, **kw):
        asked.append(objects)
        return real(source, *args, objects=objects, **kw)

    monkeypatch.setattr(load, "load_snapshot", spy)
    lean = cli([*view, "--from", f"{path}@1"])
    assert asked == [False] and lean.status == 0, lean.stderr
    # The whole sample, objects and all, gives the same text.
    monkeypatch.setattr(load, "load_snapshot",
                        lambda source, *args, objects=True, **kw: real(source, *args, **kw))
    whole = cli([*view, "--from", f"{path}@1"])
    assert (whole.status, whole.stdout, whole.stderr) == (0, lean.stdout, lean.stderr)
    assert lean.stdout.count("\n") >= 2  # a header and its values at least
