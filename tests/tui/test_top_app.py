"""``zxmem top``'s app driven by key presses in Textual's pilot, against a
recorded history store of a machine whose every number is known
(tests/unit/top_samples.py), and a stand-in live source for pause.

Screen snapshots (80x24 and 200x60) are in __snapshots__; regenerate them
with ``pytest tests/tui --snapshot-update`` after a deliberate change, and
look at them (they are SVG).
"""

from __future__ import annotations

import asyncio
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit"))

import top_samples  # noqa: E402

pytest.importorskip("textual")

from textual.widgets import Input, Static  # noqa: E402

from zxmem.textsafe import display_width  # noqa: E402
from zxmem.tui.app import DetailScreen, HelpScreen, RowsView, TopApp  # noqa: E402
from zxmem.tui.sources import Detail, StoreSource  # noqa: E402
from zxmem.views.top import TopOptions  # noqa: E402

MIB = top_samples.MIB


@pytest.fixture
def store(tmp_path):
    path = tmp_path / "history.db"
    top_samples.write_store(str(path))
    return str(path)


def _app(store: str, at: str = "1", **opts) -> TopApp:
    source = StoreSource(f"{store}@{at}", now_s=0.0)
    return TopApp(source, TopOptions(**opts), auto_refresh=False)


def _names(app: TopApp) -> list[str]:
    return [r.name for r in app.shown]


def _cells(app: TopApp) -> list[list[str]]:
    """The drawn rows split into the six sized cells and the name."""
    return [line.split(None, 6) for line in app.table_lines()]


def _drive(app: TopApp, script, size=(80, 24)):
    async def main():
        async with app.run_test(size=size) as pilot:
            await pilot.pause()
            await script(pilot)
    asyncio.run(main())


def test_sorting_by_keys_and_by_clicking_a_column(store):
    app = _app(store, at="2")

    async def script(pilot):
        # PSS, largest first: db 28M, web 14M, worker 6M, init 5M.
        assert [r.koid for r in app.shown] == [101, 100, 103, 1]
        assert _cells(app)[0][:6] == ["101", "28M", "24M", "2M", "-2M", "-2M"]
        await pilot.press("n")
        assert _names(app) == ["db --data /srv", "init", "web --port 80", "worker"]
        await pilot.press("d")  # the largest change first: web +4M, worker new (+6M)
        assert [r.koid for r in app.shown] == [103, 100, 101, 1]
        await pilot.press("u")
        assert [r.uss_bytes for r in app.shown] == [24 * MIB, 12 * MIB, 6 * MIB, 5 * MIB]
        await pilot.press("i")
        assert [r.koid for r in app.shown] == [1, 100, 101, 103]
        await pilot.click("#columns", offset=(13, 0))  # the PSS column's title
        await pilot.pause()
        assert app.opts.sort == "pss"
        assert [r.koid for r in app.shown] == [101, 100, 103, 1]

    _drive(app, script)


def test_filter_by_name_and_by_cgroup_then_clear(store):
    app = _app(store, at="2")

    async def script(pilot):
        await pilot.press("slash")
        assert app.query_one("#filter", Input).has_focus
        await pilot.press(*"web")
        assert _names(app) == ["web --port 80"]
        await pilot.press("enter")
        assert app.query_one("#table", RowsView).has_focus
        assert _names(app) == ["web --port 80"]
        await pilot.press("slash", "backspace", "backspace", "backspace", *"user.sl", "enter")
        assert sorted(_names(app)) == ["db --data /srv", "worker"]  # the /user.slice cgroup
        await pilot.press("escape")
        assert len(app.shown) == 4 and app.opts.filter == ""

    _drive(app, script)


def test_tree_and_jobs(store):
    app = _app(store, at="2")

    async def script(pilot):
        await pilot.press("t")
        rows = [(r.kind, r.koid, r.depth) for r in app.shown]
        # Root job (53M), its processes, then sub-jobs largest first.
        assert rows == [("j", 1, 0), ("p", 1, 1), ("j", 3, 1), ("p", 101, 2), ("p", 103, 2),
                        ("j", 2, 1), ("p", 100, 2)]
        assert app.shown[0].pss_bytes == 53 * MIB
        await pilot.press("j")
        assert [(r.koid, r.depth) for r in app.shown] == [(1, 0), (3, 1), (2, 1)]
        await pilot.press("t")
        assert [r.name for r in app.shown] == ["/", "/user.slice", "/system.slice"]
        # /user.slice: db 28M + worker 6M now, db 30M + the hostile 1M before.
        assert app.shown[1].delta_bytes == 3 * MIB

    _drive(app, script)


def test_drill_down_and_back(store):
    app = _app(store, at="2")

    async def script(pilot):
        await pilot.press("down")  # web
        await pilot.press("enter")
        await pilot.pause()
        await app.workers.wait_for_complete()
        await pilot.pause()
        await pilot.pause()
        screen = app.screen
        assert isinstance(screen, DetailScreen) and screen.pid == 100
        text = str(screen.query_one("#vmaps-text", Static).render())
        assert "mappings of 100: sample 2 is a totals sample and holds no mappings" in text
        await pilot.press("escape")
        assert not isinstance(app.screen, DetailScreen)
        assert app.selected_key() == "p:100"  # the cursor stayed on web

    _drive(app, script)


def test_steps_through_samples_and_jumps(store):
    app = _app(store, at="1")

    async def script(pilot):
        assert "sample 1 (1/3)" in str(app.query_one("#header", Static).render())
        await pilot.press("right")
        assert app.frame.header.new == 1 and app.frame.header.exited == 1
        await pilot.press("right", "right")  # stays at the last
        assert app.source.index == 2
        assert [r.koid for r in app.shown if r.new] == [101]  # the reused PID is new
        await pilot.press("left")
        assert app.source.index == 1
        await pilot.press("g", *"first", "enter")
        assert app.source.index == 0
        await pilot.press("g", *"7", "enter")  # no such sample: stays, says why
        await pilot.pause()
        assert app.source.index == 0

    _drive(app, script)


class FakeLive:
    """A live source that gives the synthetic samples in turn."""

    live = True
    label = "live"

    def __init__(self) -> None:
        self.queue = top_samples.samples()
        self.reads = 0

    def next(self):
        self.reads += 1
        return self.queue[min(self.reads, len(self.queue)) - 1]

    def detail(self, pid: int) -> Detail:
        return Detail(f"pid {pid}", "objects", "mappings")

    def close(self) -> None:
        pass


def test_pause_stops_refreshing():
    source = FakeLive()
    app = TopApp(source, TopOptions(), auto_refresh=False)  # type: ignore[arg-type]

    async def script(pilot):
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert source.reads == 1
        await pilot.press("space")
        assert app.paused and "PAUSED" in str(app.query_one("#header", Static).render())
        app.refresh_live()
        await app.workers.wait_for_complete()
        assert source.reads == 1
        await pilot.press("space")
        app.refresh_live()
        await app.workers.wait_for_complete()
        await pilot.pause()
        assert source.reads == 2
        assert app.frame.header.oom_kills_since_start == 2

    _drive(app, script)


def test_help_opens_and_closes(store):
    app = _app(store)

    async def script(pilot):
        await pilot.press("question_mark")
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)

    _drive(app, script)


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
def test_hostile_name_cannot_break_the_layout(store, size):
    app = _app(store, at="1")

    async def script(pilot):
        table = app.query_one("#table", RowsView)
        for row in _cells(app):
            for cell in row:
                assert not any(ord(ch) < 0x20 or 0x7f <= ord(ch) < 0xa0 for ch in cell), cell
        hostile = [c for c in _cells(app) if c[0] == "102"][0]
        escaped = "\\e[2J\\e[Hevil\\x07\\e]0;owned\\x07\\xff" + "A" * 300
        # Escaped, then cut to the name column (what is left of the width).
        assert escaped.startswith(hostile[-1]) and len(hostile[-1]) >= 15
        # No row is wider than the table: the name is cut to its column.
        assert all(display_width(line) <= table.size.width for line in app.table_lines())
        # The rendered screen holds no control character either.
        shot = app.export_screenshot()
        assert "\x1b" not in shot and "\x07" not in shot
        assert "evil" in shot

    _drive(app, script, size=size)


# -- screen snapshots


@pytest.mark.parametrize("size", [(80, 24), (200, 60)])
@pytest.mark.parametrize("keys", [(), ("t",), ("d", "slash", "w", "e", "b", "enter")],
                         ids=["flat", "tree", "sorted-filtered"])
def test_screen_snapshots(store, snap_compare, size, keys):
    # The store's path differs per run; the header names only its file.
    app = _app(store, at="2")
    assert snap_compare(app, press=keys, terminal_size=size)
