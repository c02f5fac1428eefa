"""What Fuchsia's ``scripts/memory/treemap.py`` needs of memgraph records.

The facts below were read from treemap.py (spec fuchsia-tools §6); no code
of it is used.  The script reads the whole array from stdin and fails, with
a KeyError, TypeError or AssertionError, when one of them does not hold:

* every record has ``type``; only ``kernel``, ``j`` and ``p`` records are
  used, and those have string ``id``, ``name`` and ``parent``;
* exactly one record has an empty parent (the root) and exactly one job's
  parent starts with ``kernel/`` (the root job) — see
  :func:`memgraph_samples.check_treemap_structure`;
* a kernel record's ``size_bytes`` is an integer (areas are integers:
  its size formatter masks them with ``& 1023``);
* a process with no (or empty) ``vmo_refs`` gets its area from
  ``private_bytes`` and ``pss_bytes``, read with a default of 0 when absent
  and subtracted: each is absent or an integer, never null;
* a process with ``vmo_refs``: each reference has ``vmo_koid`` and a
  ``via`` list; the reference kinds it knows are ``HANDLE`` and
  ``MAPPING``.  Every entry of ``vmos`` has ``koid``, ``name`` (a string)
  and numeric ``committed_bytes`` and ``share_count``; the kinds of its
  koid's references are either a set holding ``MAPPING`` (area
  ``committed_bytes / share_count``: ``share_count`` must not be 0) or
  exactly ``{HANDLE}`` (area ``committed_bytes / (share_count + 1)``) — it
  asserts the latter when MAPPING is missing, so a VMO reached by no
  reference of a known kind fails.
"""

from __future__ import annotations

from memgraph_samples import check_treemap_structure

KINDS = ("HANDLE", "MAPPING")


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def treemap_area(vmo: dict, kinds: set[str]) -> int:
    """A VMO node's area by treemap.py's rule (spec §6.2 step 3)."""
    if "MAPPING" in kinds:
        return int(float(vmo["committed_bytes"]) / vmo["share_count"])
    assert kinds == {"HANDLE"}
    return int(float(vmo["committed_bytes"]) / (float(vmo["share_count"]) + 1))


def ref_kinds(record: dict) -> dict[int, set[str]]:
    """VMO koid -> the reference kinds treemap.py sees for it in ``record``."""
    out: dict[int, set[str]] = {}
    for ref in record.get("vmo_refs", []):
        out.setdefault(ref["vmo_koid"], set()).update(k for k in ref["via"] if k in KINDS)
    return out


def check_treemap_inputs(records: list[dict]) -> int:
    """Assert every fact above; return the number of VMO entries checked."""
    check_treemap_structure(records)
    checked = 0
    for r in records:
        assert "type" in r, r
        if r["type"] not in ("kernel", "j", "p"):
            continue
        where = r.get("id")
        for key in ("id", "name", "parent"):
            assert isinstance(r.get(key), str), (where, key, r.get(key))
        if r["type"] == "kernel":
            assert _is_int(r.get("size_bytes")), (where, r.get("size_bytes"))
            continue
        if r["type"] == "j":
            assert r["parent"].startswith(("j/", "kernel/")), (where, r["parent"])
            continue
        assert r["parent"].startswith("j/"), (where, r["parent"])
        if not r.get("vmo_refs"):
            for key in ("private_bytes", "pss_bytes"):
                assert key not in r or _is_int(r[key]), (where, key, r[key])
            continue
        for ref in r["vmo_refs"]:
            assert _is_int(ref.get("vmo_koid")), (where, ref)
            assert isinstance(ref.get("via"), list) and ref["via"], (where, ref)
            assert set(ref["via"]) <= set(KINDS), (where, ref)
        kinds = ref_kinds(r)
        for vmo in r.get("vmos", []):
            assert _is_int(vmo.get("koid")), (where, vmo)
            assert isinstance(vmo.get("name"), str), (where, vmo)
            assert _is_int(vmo.get("committed_bytes")), (where, vmo)
            assert _is_int(vmo.get("share_count")), (where, vmo)
            got = kinds.get(vmo["koid"], set())
            assert "MAPPING" in got or got == {"HANDLE"}, (where, vmo["koid"], got)
            if "MAPPING" in got:
                assert vmo["share_count"] >= 1, (where, vmo)
            assert _is_int(treemap_area(vmo, got))
            checked += 1
    return checked
