"""Review fixes: input handling, option parsing and totals that must not
hide unknown values (each test fails without its fix)."""

from __future__ import annotations

from types import MappingProxyType

import pytest

from zxmem.model import Job, Process, Provenance, Snapshot, Vmo, VmoRef


def _snap(vmos: list[Vmo], procs: list[Process] | None = None, kernel=None,
          source: str = "linux", hidden: tuple[int, ...] = ()) -> Snapshot:
    return Snapshot(
        provenance=Provenance(source=source),
        jobs=(Job(1, "root", 0),),
        processes=tuple(procs or ()),
        kernel=kernel,
        vmos=MappingProxyType({v.koid: v for v in vmos}),
        hidden_vmo_koids=hidden,
    )


def _proc(koid: int, *vmo_koids: int, name: str = "p") -> Process:
    return Process(koid=koid, name=name, job_koid=1,
                   vmo_refs=tuple(VmoRef(k, ("MAPPING",)) for k in vmo_koids))


# --- kstats -d: non-finite or absurd delays are usage errors (exit 2) -------

@pytest.mark.parametrize("value", ["inf", "1e30", "nan", "-inf", "86401"])
def test_kstats_delay_rejects_non_finite_and_absurd(cli, value):
    # -n 1: no wait, so without the check this returns instead of sleeping
    r = cli(["kstats", "-m", "-d", value, "-n", "1"])
    assert r.status == 2
    assert "-d" in r.stderr and "Traceback" not in r.stderr
    assert r.stdout == ""


def test_kstats_delay_accepts_a_day():
    from zxmem.commands.kstats import _positive

    assert _positive("-d")("86400") == 86400.0
    assert _positive("-d")("0.5") == 0.5


# --- k vmos hidden: the total covers the unattributed Shmem row -------------

def test_kvmos_hidden_total_includes_unattributed_row():
    from zxmem.sources.hidden import REMAINDER_KOID, REMAINDER_NAME
    from zxmem.views.kvmos import render_hidden

    mib = 1 << 20
    rest = Vmo(koid=REMAINDER_KOID, name=REMAINDER_NAME, kind="shmem",
               size_bytes=18 * mib, committed_bytes=18 * mib)
    sysv = Vmo(koid=7, name="SYSV00000001", kind="sysv", size_bytes=2 * mib,
               committed_bytes=mib)
    only_rest = render_hidden(_snap([rest], hidden=(REMAINDER_KOID,)), "M")
    assert only_rest.splitlines()[-1] == \
        "  total: 0 VMOs + [unattributed Shmem], size 18M, alloc 18M"
    both = render_hidden(_snap([sysv, rest], hidden=(7, REMAINDER_KOID)), "M")
    assert both.splitlines()[-1] == \
        "  total: 1 VMOs + [unattributed Shmem], size 20M, alloc 19M"


# --- plain 'k': a usage error, on stderr ------------------------------------

def test_plain_k_prints_usage_to_stderr(cli):
    r = cli(["k"])
    assert r.status == 2
    assert r.stdout == ""
    assert "usage: zxmem k" in r.stderr
