"""``zxmem top --from STORE``: the drill-down (Enter on a process) of an
objects sample shows the mappings the sample holds, the same text as
``zxmem vmaps --from`` the memgraph the sample was written from; that of a
totals sample says which samples nearest it hold them."""

from __future__ import annotations

import asyncio
import io
from pathlib import Path

import pytest

pytest.importorskip("textual")

from textual.widgets import Static  # noqa: E402

import zxmem  # noqa: E402
from zxmem.cli import Environment, main  # noqa: E402
from zxmem.store.schema import open_store  # noqa: E402
from zxmem.store.writer import OBJECTS, TOTALS, Writer  # noqa: E402
from zxmem.tui.app import DetailScreen, TopApp  # noqa: E402
from zxmem.tui.sources import StoreSource  # noqa: E402
from zxmem.views.top import TopOptions  # noqa: E402

TREE = Path(__file__).resolve().parents[1] / "fixtures" / "proc-trees" / "no-smaps-rollup"
T0 = 1_796_000_000 * 10**9


def _run(args: list[str]) -> str:
    out, err = io.StringIO(), io.StringIO()
    status = main(args, Environment(stdout=out, stderr=err, stdout_isatty=False))
    assert status == 0, err.getvalue()
    return out.getvalue()


@pytest.fixture
def files(tmp_path) -> tuple[str, str]:
    """(memgraph -v file of the recorded tree, store: objects, totals, objects)."""
    saved = tmp_path / "memgraph.json"
    saved.write_text(_run(["memgraph", "-v", "--proc-root", str(TREE / "proc")]))
    snap = zxmem.load(str(saved))
    path = str(tmp_path / "h.db")
    conn = open_store(path, create=True)
    w = Writer(conn)
    for i, tier in enumerate((OBJECTS, TOTALS, OBJECTS)):
        w.write(snap, tier, T0 + i * 10**10)
    conn.close()
    return str(saved), path


def _detail(path: str, at: str, pid: int) -> tuple[str, str]:
    """(vmaps text, vmos text) of the drill-down into ``pid`` at sample ``at``."""
    app = TopApp(StoreSource(f"{path}@{at}", now_s=0.0), TopOptions(), auto_refresh=False)
    got: list[str] = []

    async def script(pilot):
        for _ in range(10):
            if app.selected_key() == f"p:{pid}":
                break
            await pilot.press("down")
        assert app.selected_key() == f"p:{pid}"
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.pid == pid
        got.append(str(screen.query_one("#vmaps-text", Static).render()))
        got.append(str(screen.query_one("#vmos-text", Static).render()))
        await pilot.press("escape")

    async def run():
        async with app.run_test(size=(200, 60)) as pilot:
            await pilot.pause()
            await script(pilot)

    asyncio.run(run())
    return got[0], got[1]


def test_drill_down_of_an_objects_sample_shows_its_mappings(files):
    saved, path = files
    pid = 19940
    vmaps, vmos = _detail(path, "3", pid)
    from_file = _run(["vmaps", "--from", saved, str(pid)])
    assert from_file.count("\n") > 100
    # The drawn text is what vmaps prints (the screen draws no trailing newline).
    assert vmaps.rstrip("\n") == from_file.rstrip("\n")
    assert vmos.rstrip("\n") == _run(["vmos", "--from", saved, str(pid)]).rstrip("\n")


def test_drill_down_of_a_totals_sample_names_the_samples_that_have_mappings(files):
    _saved, path = files
    vmaps, vmos = _detail(path, "2", 19940)
    assert vmaps.rstrip("\n") == (
        "mappings of 19940: sample 2 is a totals sample and holds no mappings (zxmem record "
        "keeps them in every --objects-every-th sample); the nearest objects samples with "
        "them: 1 (before) and 3 (after)")
    assert vmos.startswith("memory objects of 19940: sample 2 is a totals sample and holds "
                           "no memory objects")
