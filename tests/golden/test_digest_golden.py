"""``zxmem digest`` and ``zxmem mem`` on the real Fuchsia capture.

Input: ``fixtures/fuchsia/capture/test_snapshot.json`` (a memory-monitor
capture, spec §9.2) with its two bucket files, ``example_buckets.json``
(patterns as strings) and ``test_digest.json`` (the same first eleven buckets
with patterns as lists; it is a bucket file, not an expected output).

Besides the byte-for-byte golden files under ``expected/`` (``digest-*``,
``mem-*``; checked by hand against §9.5 and §9.9: row order by name, ``%.4g``
sizes, the blank lines, ``Total:``, the ``Undigested:`` pool lines, mem's
``Time:`` header, P S T triplets, group order), the numbers are checked
against a computation written here straight from the raw capture JSON:

* bucket sizes by the host scripts' loop (processes in the capture's own
  order, which zxmem's capture importer keeps);
* every digest's rows add up to the capture's kernel VMO bytes plus the
  kernel row (wired + heap + mmu + ipc + other), whichever bucket file;
* each process's private/scaled/total equals the PSS/PRIVATE/SHARED the
  importer derived independently (§9.3).

Regenerate with ``ZXMEM_UPDATE_GOLDEN=1`` and check the changes by hand.
"""

from __future__ import annotations

import csv
import io
import json
import os
import re

import fixture_paths
import pytest

HERE = os.path.dirname(os.path.abspath(__file__))
EXPECTED = os.path.join(HERE, "expected")
UPDATE = os.environ.get("ZXMEM_UPDATE_GOLDEN") == "1"


def _capture_dir() -> str | None:
    d = str(fixture_paths.CAPTURE_DIR)
    return d if os.path.isfile(os.path.join(d, "test_snapshot.json")) else None


CAPTURE_DIR = _capture_dir()
pytestmark = pytest.mark.skipif(CAPTURE_DIR is None,
                                reason="the shared Fuchsia capture fixtures are not here")


def path(name: str) -> str:
    assert CAPTURE_DIR is not None
    return os.path.join(CAPTURE_DIR, name)


def golden(name: str, text: str) -> None:
    target = os.path.join(EXPECTED, name)
    if UPDATE:
        with open(target, "w", encoding="utf-8", newline="") as f:
            f.write(text)
    with open(target, encoding="utf-8", newline="") as f:
        assert text == f.read(), f"{name} differs"


def raw_capture() -> dict:
    with open(path("test_snapshot.json"), encoding="utf-8") as f:
        return json.load(f)


def reference_digest(bucket_file: str) -> dict[str, int]:
    """The scripts' algorithm, written out on the raw JSON (no zxmem code)."""
    cap = raw_capture()
    names = cap["VmoNames"]
    vmos = {v[0]: (names[v[1]], v[3]) for v in cap["Vmos"][1:]}
    procs = cap["Processes"][1:]
    with open(path(bucket_file), encoding="utf-8") as f:
        specs = json.load(f)

    def rx(v):
        if v is None:
            return None
        return re.compile(v if isinstance(v, str) else "|".join(v))

    compiled = [(b["name"], rx(b.get("process")), rx(b.get("vmo"))) for b in specs]
    sizes = {b["name"]: 0 for b in specs}
    left = set(vmos)
    for _koid, pname, refs in procs:
        for name, prx, vrx in compiled:
            if prx is not None and not prx.fullmatch(pname):
                continue
            for k in refs:
                vname, committed = vmos[k]
                if k not in left or committed == 0:
                    continue
                if vrx is not None and not vrx.fullmatch(vname):
                    continue
                sizes[name] += committed
                left.discard(k)
    referenced = {k for p in procs for k in p[2]}
    sizes["Undigested"] = sum(vmos[k][1] for k in left & referenced)
    k = cap["Kernel"]
    sizes["Kernel"] = k["wired"] + k["total_heap"] + k["mmu"] + k["ipc"] + k["other"]
    sizes["Orphaned"] = k["vmo"] - sum(v[1] for v in vmos.values())
    return sizes


@pytest.mark.parametrize("bucket_file, tag", [("example_buckets.json", "example"),
                                              ("test_digest.json", "test-digest")])
def test_digest_on_the_capture(cli, bucket_file, tag):
    args = ["digest", "--from", path("test_snapshot.json"), "--buckets", path(bucket_file)]
    human = cli(args)
    assert human.status == 0 and human.stderr == "", human.stderr
    golden(f"digest-capture-{tag}.txt", human.stdout)
    out = cli([*args, "--output", "csv"])
    assert out.status == 0 and out.stderr == ""
    golden(f"digest-capture-{tag}.csv", out.stdout)

    rows = {name: int(size) for name, size in csv.reader(io.StringIO(out.stdout),
                                                         skipinitialspace=True)}
    assert rows == reference_digest(bucket_file)
    k = raw_capture()["Kernel"]
    assert sum(rows.values()) == k["vmo"] + rows["Kernel"]
    # The capture: 740474880 committed bytes in VMOs, 784666624 kernel VMO
    # bytes, so 44191744 bytes orphaned whatever the buckets.
    assert rows["Orphaned"] == 784666624 - 740474880

    doc = json.loads(cli([*args, "--output", "json"]).stdout)
    assert doc["total_bytes"] == k["vmo"] + rows["Kernel"]
    assert {r["name"]: r["size_bytes"] for r in doc["rows"]} == rows
    for b in doc["buckets"]:
        assert b["size_bytes"] == sum(v["committed_bytes"] for v in b["vmos"])
    # Every VMO with committed bytes is in exactly one bucket or pool.
    placed = [v["koid"] for b in doc["buckets"] for v in b["vmos"]]
    placed += [v["koid"] for p in doc["undigested"] for v in p["vmos"]]
    assert len(placed) == len(set(placed))
    cap = raw_capture()
    assert set(placed) == {v[0] for v in cap["Vmos"][1:] if v[3] > 0}


def test_digest_needs_buckets_for_a_capture(cli):
    r = cli(["digest", "--from", path("test_snapshot.json")])
    assert r.status == 2
    assert r.stderr == ("zxmem digest: --buckets FILE is required for a fuchsia-capture "
                        "snapshot (zxmem's default buckets describe Linux)\n")


def test_digest_undigested_summary(cli):
    r = cli(["digest", "--from", path("test_snapshot.json"), "--buckets",
             path("example_buckets.json"), "--undigested"])
    assert r.status == 0
    tail = r.stdout.split("\n\n")[-1].splitlines()
    assert tail[0] == "6253 VMOs, " + tail[0].split(", ")[1]
    undigested = json.loads(cli(["digest", "--from", path("test_snapshot.json"),
                                 "--buckets", path("example_buckets.json"),
                                 "--output", "json", "--undigested"]).stdout)
    n = sum(len(p["vmos"]) for p in undigested["undigested"])
    assert tail[0] == f"6253 VMOs, {n} Undigested"
    summary = undigested["undigested_summary"]
    assert tail[1] == f"{len(summary)} Process summaries"
    # Restricted to undigested VMOs, the summaries' totals are the
    # Undigested row (each VMO counted once: shared ones scaled).
    assert sum(p["total_bytes"] for p in summary) >= undigested["undigested_bytes"]
    assert sum(p["private_bytes"] for p in summary) <= undigested["undigested_bytes"]


def test_mem_on_the_capture(cli):
    args = ["mem", "--from", path("test_snapshot.json")]
    r = cli(args)
    assert r.status == 0 and r.stderr == ""
    golden("mem-capture.txt", r.stdout)
    assert r.stdout.startswith("Time: 95724504776 VMO: 748.3M Free: 7.1G\n")
    out = cli([*args, "--csv"])
    golden("mem-capture.csv", out.stdout)
    rows = list(csv.reader(io.StringIO(out.stdout)))
    assert rows[0][:3] == ["95", "1", "kernel"]

    from zxmem.sources.load import load_snapshot

    snapshot = load_snapshot(path("test_snapshot.json"))
    by_koid = {int(r[1]): tuple(map(int, r[3:])) for r in rows[1:]}
    expected = {
        p.koid: (p.memory.private_bytes, p.memory.pss_bytes,
                 p.memory.private_bytes + p.memory.shared_bytes)
        for p in snapshot.processes if p.vmo_refs
    }
    assert by_koid == expected

    # The kernel row: wired + heap + mmu + ipc + other + (vmo − Σ committed).
    k = raw_capture()["Kernel"]
    kernel_total = (k["wired"] + k["total_heap"] + k["mmu"] + k["ipc"] + k["other"]
                    + k["vmo"] - 740474880)
    assert rows[0][3:] == [str(kernel_total)] * 3

    pid = cli([*args, "--pid", "3999"])
    golden("mem-capture-pid-3999.txt", pid.stdout)
    assert pid.stdout.splitlines()[1] == "driver_host:sys<3999> 414.5M 415.4M 418.4M"
    pid_csv = cli([*args, "--pid", "3999", "--csv"])
    golden("mem-capture-pid-3999.csv", pid_csv.stdout)
    groups = list(csv.reader(io.StringIO(pid_csv.stdout)))
    assert all(g[1] == "3999" for g in groups)
    assert [sum(int(g[i]) for g in groups) for i in (3, 4, 5)] == list(by_koid[3999])
