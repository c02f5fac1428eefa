"""The ``zxmem top`` terminal app (Textual), thin over :mod:`zxmem.views.top`.

Imported only by ``zxmem top``: Textual is not loaded by any other command.
Every name reaches the screen as a :class:`rich.text.Text` (never markup) of
:func:`zxmem.textsafe.escape_terminal`'s output, cut to its column: a name
cannot move the cursor, recolour the screen or push the columns apart.
"""

from __future__ import annotations

from dataclasses import replace
from typing import TYPE_CHECKING, Any

from rich.segment import Segment
from rich.style import Style
from rich.text import Text
from textual import events, work
from textual.app import App, ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.geometry import Size
from textual.message import Message
from textual.screen import ModalScreen, Screen
from textual.scroll_view import ScrollView
from textual.strip import Strip
from textual.widgets import Footer, Input, Static, TabbedContent, TabPane

from zxmem.errors import ZxmemError
from zxmem.textsafe import display_width, escape_terminal, truncate_to_width
from zxmem.views import top as view

if TYPE_CHECKING:
    from zxmem.tui.sources import Detail, LiveSource, StoreSource

# Columns: key, title, width (the name takes what is left).
COLUMNS = (("pid", "PID", 8), ("pss", "PSS", 7), ("uss", "USS", 7), ("swap", "SWAP", 7),
           ("delta", "ΔLAST", 7), ("delta_start", "ΔSTART", 7), ("name", "NAME", 0))
_FIXED = sum(w for _, _, w in COLUMNS) + len(COLUMNS) - 1  # the cells and a space between
# The vertical scroll bar takes two columns.
_CHROME = 2

HELP_TEXT = """\
zxmem top: processes and jobs ranked by PSS

  p u w   sort by PSS, USS (private), SWAP
  d D     sort by the change since the last refresh / since the start
  n i     sort by name / PID          (or click a column title)
  /       filter by name, command line or cgroup (Esc: clear)
  t       tree of jobs and processes / flat list
  j       jobs (cgroups) only / processes
  space   pause / resume refreshing
  Enter   the selected process's memory objects and mappings (Esc: back)
  ← →     previous / next sample (--from STORE)
  g       go to a sample: N, first, last, -2h, 2026-12-03T10:00 (--from)
  q       quit

ΔLAST: PSS now minus at the last refresh (new: the process was not there).
ΔSTART: PSS now minus at the start (a process started since counts from 0).
kernel: total - free - VMOs (memory on no LRU list: slab, vmalloc, page
tables, stacks). pressure: PSI some/full avg10 of /proc/pressure/memory.
Processes that cannot be read (another user's) are counted in the header,
never shown as 0.
"""


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,question_mark", "dismiss_help", "close")]
    DEFAULT_CSS = """
    HelpScreen { align: center middle; }
    HelpScreen > VerticalScroll { width: 80; height: 80%; border: round $accent;
                                  background: $surface; }
    """

    def compose(self) -> ComposeResult:
        with VerticalScroll():
            yield Static(Text(HELP_TEXT))

    def action_dismiss_help(self) -> None:
        self.dismiss(None)


class DetailScreen(Screen[None]):
    """One process's memory objects (the vmos view) and mappings (vmaps)."""

    BINDINGS = [Binding("escape", "back", "back"), Binding("q", "back", "back", show=False)]
    DEFAULT_CSS = """
    DetailScreen #title { height: 1; background: $primary; color: $text; }
    """

    def __init__(self, pid: int, title: str) -> None:
        super().__init__()
        self.pid = pid
        self.title_text = title

    def compose(self) -> ComposeResult:
        yield Static(Text(self.title_text), id="title")
        with TabbedContent():
            with TabPane("objects (vmos)", id="vmos"):
                with VerticalScroll():
                    yield Static(Text("reading..."), id="vmos-text")
            with TabPane("mappings (vmaps)", id="vmaps"):
                with VerticalScroll():
                    yield Static(Text("reading..."), id="vmaps-text")
        yield Footer()

    detail: Detail | None = None

    def show(self, detail: Detail) -> None:
        """Shows ``detail`` now, or once the screen is mounted (the reading
        thread may finish first)."""
        self.detail = detail
        if self.is_mounted:
            self._apply(detail)

    def on_mount(self) -> None:
        if self.detail is not None:
            self._apply(self.detail)

    def _apply(self, detail: Detail) -> None:
        self.query_one("#title", Static).update(Text(detail.title))
        self.query_one("#vmos-text", Static).update(Text(detail.vmos, no_wrap=True))
        self.query_one("#vmaps-text", Static).update(Text(detail.vmaps, no_wrap=True))

    def action_back(self) -> None:
        self.app.pop_screen()


def format_line(cells: list[str], name_width: int) -> str:
    """One row of the table: the sized cells right-aligned, the name cut to
    ``name_width`` columns (it is already escaped)."""
    head = " ".join(f"{c:>{w}}" for c, (_, _, w) in zip(cells, COLUMNS[:-1], strict=False))
    return f"{head} {truncate_to_width(cells[-1], name_width)}"


class ColumnTitles(Static):
    """The column titles; a click on one sorts by it."""

    class Clicked(Message):
        def __init__(self, key: str) -> None:
            super().__init__()
            self.key = key

    def on_mount(self) -> None:
        self.update(Text(format_line([t for _, t, _ in COLUMNS], 4), style="bold",
                         no_wrap=True))

    def on_click(self, event: events.Click) -> None:
        x = 0
        for key, _, width in COLUMNS:
            if event.x < x + width + 1 or not width:
                self.post_message(self.Clicked(key))
                return
            x += width + 1


class RowsView(ScrollView, can_focus=True):
    """The table's rows, drawn a screen line at a time (the line API): a
    redraw formats only the rows in view, so a thousand rows cost what a
    screenful does."""

    BINDINGS = [
        Binding("up", "cursor(-1)", show=False), Binding("down", "cursor(1)", show=False),
        Binding("pageup", "page(-1)", show=False), Binding("pagedown", "page(1)", show=False),
        Binding("home", "jump(0)", show=False), Binding("end", "jump(-1)", show=False),
        Binding("left", "app.step(-1)", "prev", show=False),
        Binding("right", "app.step(1)", "next", show=False),
        Binding("enter", "app.details", "details"),
    ]
    DEFAULT_CSS = "RowsView { overflow-x: hidden; }"

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.rows: list[view.Row] = []
        self.cursor = 0
        self.tree_mode = False
        self.units: str | None = None
        self._lines: dict[int, str] = {}

    def set_rows(self, rows: list[view.Row], tree: bool, units: str | None,
                 keep: str | None) -> None:
        self.rows, self.tree_mode, self.units = rows, tree, units
        self._lines = {}
        keys = [f"{r.kind}:{r.koid}" for r in rows]
        if keep is not None and keep in keys:
            self.cursor = keys.index(keep)
        self.cursor = max(0, min(self.cursor, len(rows) - 1))
        self.virtual_size = Size(self.size.width, len(rows))
        self._follow()
        self.refresh()

    def line_text(self, index: int) -> str:
        """Row ``index`` as drawn (cached until the rows change)."""
        text = self._lines.get(index)
        if text is None:
            cells = view.row_cells(self.rows[index], self.tree_mode, self.units)
            name_width = max(8, self.size.width - _FIXED - _CHROME)
            text = format_line(cells, name_width)
            self._lines[index] = text
        return text

    def on_resize(self) -> None:
        self._lines = {}
        self.virtual_size = Size(self.size.width, len(self.rows))

    def render_line(self, y: int) -> Strip:
        index = int(self.scroll_offset.y) + y
        width = self.size.width
        if index >= len(self.rows):
            return Strip.blank(width)
        text = self.line_text(index)
        text = text + " " * max(0, width - display_width(text))
        style = Style(reverse=True) if index == self.cursor and self.has_focus else (
            Style(underline=True) if index == self.cursor else Style())
        if self.rows[index].kind == "j":
            style += Style(bold=True)
        return Strip([Segment(text, style)], display_width(text)).crop(0, width)

    def _follow(self) -> None:
        top = int(self.scroll_offset.y)
        height = max(1, self.size.height)
        if self.cursor < top:
            self.scroll_to(y=self.cursor, animate=False)
        elif self.cursor >= top + height:
            self.scroll_to(y=self.cursor - height + 1, animate=False)

    def move(self, row: int) -> None:
        self.cursor = max(0, min(row, len(self.rows) - 1))
        self._follow()
        self.refresh()

    def action_cursor(self, delta: int) -> None:
        self.move(self.cursor + delta)

    def action_page(self, delta: int) -> None:
        self.move(self.cursor + delta * max(1, self.size.height - 1))

    def action_jump(self, row: int) -> None:
        self.move(row if row >= 0 else len(self.rows) - 1)

    def on_click(self, event: events.Click) -> None:
        self.move(int(self.scroll_offset.y) + event.y)
        if event.chain == 2:
            self.app.call_later(self.app.run_action, "details")

    def on_focus(self) -> None:
        self.refresh()

    def on_blur(self) -> None:
        self.refresh()


class TopApp(App[int]):
    TITLE = "zxmem top"
    ENABLE_COMMAND_PALETTE = False
    CSS = """
    #header { height: auto; background: $boost; }
    #columns { height: 1; }
    #table { height: 1fr; }
    .prompt { dock: bottom; display: none; }
    .prompt.shown { display: block; }
    """
    BINDINGS = [
        Binding("q", "quit_top", "quit"),
        Binding("question_mark", "help", "help"),
        Binding("p", "sort('pss')", "PSS"),
        Binding("u", "sort('uss')", "USS", show=False),
        Binding("w", "sort('swap')", "SWAP", show=False),
        Binding("d", "sort('delta')", "Δlast"),
        Binding("D", "sort('delta_start')", "Δstart", show=False),
        Binding("n", "sort('name')", "name", show=False),
        Binding("i", "sort('pid')", "PID", show=False),
        Binding("slash", "filter", "filter"),
        Binding("t", "tree", "tree"),
        Binding("j", "jobs", "jobs"),
        Binding("space", "pause", "pause"),
        Binding("enter", "details", "details"),
        Binding("g", "goto", "go to", show=False),
        Binding("escape", "clear_filter", "clear", show=False),
    ]

    def __init__(self, source: LiveSource | StoreSource, opts: view.TopOptions,
                 delay: float = 2.0, *, auto_refresh: bool = True) -> None:
        super().__init__()
        self.source = source
        self.opts = opts
        self.delay = delay
        self.refreshing = auto_refresh
        self.history = view.History()
        self.frame: view.Frame | None = None
        self.paused = False
        self.busy = False
        self.error: str | None = None
        self.shown: list[view.Row] = []
        self.redraws = 0

    # -- layout

    def compose(self) -> ComposeResult:
        yield Static(Text("reading..."), id="header")
        yield ColumnTitles(id="columns")
        yield RowsView(id="table")
        yield Input(placeholder="filter: name, command line or cgroup (Enter: keep, "
                    "Esc: clear)", id="filter", classes="prompt")
        yield Input(placeholder="go to sample: N, first, last, -2h, 2026-12-03T10:00",
                    id="goto", classes="prompt")
        yield Footer()

    def on_mount(self) -> None:
        self.query_one("#table", RowsView).focus()
        if self.source.live:
            self.refresh_live()
            if self.refreshing:
                self.set_interval(self.delay, self.refresh_live)
        else:
            self.show_store()

    def on_resize(self) -> None:
        self.query_one("#header", Static).update(self.header_text())

    # -- data

    def refresh_live(self) -> None:
        if self.paused or self.busy:
            return
        self.busy = True
        self._collect()

    @work(thread=True, group="collect")
    def _collect(self) -> None:
        try:
            snapshot = self.source.next()  # type: ignore[union-attr]
            frame = self.history.update(snapshot)
        except ZxmemError as exc:
            self.call_from_thread(self._fail, str(exc))
            return
        self.call_from_thread(self.show_frame, frame)

    def _fail(self, message: str) -> None:
        self.error = message
        self.exit(1)

    def show_store(self) -> None:
        from zxmem.tui.sources import StoreSource, history_frame

        assert isinstance(self.source, StoreSource)
        try:
            self.show_frame(history_frame(self.source))
        except ZxmemError as exc:
            self.notify(escape_terminal(str(exc)), severity="error")

    def show_frame(self, frame: view.Frame) -> None:
        self.busy = False
        self.frame = frame
        self.redraw()

    # -- drawing

    def header_text(self) -> Text:
        if self.frame is None:
            return Text("reading...")
        label = self.source.label
        if self.paused:
            label += "  PAUSED"
        lines = view.header_lines(self.frame.header, label)
        mode = ("tree" if self.opts.tree else "flat") + (", jobs" if self.opts.jobs_only else "")
        state = f"sort {self.opts.sort}, {mode}"
        if self.opts.filter:
            state += f", filter {escape_terminal(self.opts.filter)!r}"
        lines.append(state)
        width = max(20, self.size.width)
        return Text("\n".join(truncate_to_width(line, width) for line in lines), no_wrap=True)

    def redraw(self) -> None:
        self.query_one("#header", Static).update(self.header_text())
        if self.frame is None:
            return
        table = self.query_one("#table", RowsView)
        keep = self.selected_key()
        self.shown = view.rows(self.frame, self.opts)
        table.set_rows(self.shown, self.opts.tree, self.opts.units, keep)
        self.redraws += 1

    def table_lines(self) -> list[str]:
        """Every row as the table draws it (for tests)."""
        table = self.query_one("#table", RowsView)
        return [table.line_text(i) for i in range(len(table.rows))]

    def selected_key(self) -> str | None:
        r = self.selected_row()
        return None if r is None else f"{r.kind}:{r.koid}"

    def selected_row(self) -> view.Row | None:
        table = self.query_one("#table", RowsView)
        row = table.cursor
        return table.rows[row] if 0 <= row < len(table.rows) else None

    # -- actions

    def action_quit_top(self) -> None:
        self.exit(0)

    def action_help(self) -> None:
        self.push_screen(HelpScreen())

    def action_sort(self, key: str) -> None:
        self.opts = replace(self.opts, sort=key)
        self.redraw()

    def on_column_titles_clicked(self, event: ColumnTitles.Clicked) -> None:
        self.action_sort(event.key)

    def action_tree(self) -> None:
        self.opts = replace(self.opts, tree=not self.opts.tree)
        self.redraw()

    def action_jobs(self) -> None:
        self.opts = replace(self.opts, jobs_only=not self.opts.jobs_only)
        self.redraw()

    def action_pause(self) -> None:
        self.paused = not self.paused
        self.redraw()

    def action_filter(self) -> None:
        box = self.query_one("#filter", Input)
        box.add_class("shown")
        box.value = self.opts.filter
        box.focus()

    def action_clear_filter(self) -> None:
        for box in self.query(".prompt").results(Input):
            box.remove_class("shown")
        self.query_one("#table", RowsView).focus()
        if self.opts.filter:
            self.opts = replace(self.opts, filter="")
            self.redraw()

    def on_input_changed(self, event: Input.Changed) -> None:
        if event.input.id == "filter":
            self.opts = replace(self.opts, filter=event.value)
            self.redraw()

    def on_input_submitted(self, event: Input.Submitted) -> None:
        event.input.remove_class("shown")
        self.query_one("#table", RowsView).focus()
        if event.input.id == "goto":
            self.goto(event.value.strip())

    def on_key(self, event: Any) -> None:
        # Esc inside a prompt closes it (the app binding sees no Esc there).
        if event.key == "escape" and isinstance(self.focused, Input):
            self.action_clear_filter()
            event.stop()

    def goto(self, selector: str) -> None:
        from zxmem.tui.sources import StoreSource

        if not isinstance(self.source, StoreSource) or not selector:
            return
        try:
            self.source.jump(selector)
        except ZxmemError as exc:
            self.notify(escape_terminal(str(exc)), severity="error")
            return
        self.show_store()

    def action_goto(self) -> None:
        if self.source.live:
            self.notify("go to: only with --from STORE")
            return
        box = self.query_one("#goto", Input)
        box.add_class("shown")
        box.value = ""
        box.focus()

    def action_step(self, delta: int) -> None:
        from zxmem.tui.sources import StoreSource

        if isinstance(self.source, StoreSource) and self.source.step(delta):
            self.show_store()

    def action_details(self) -> None:
        r = self.selected_row()
        if r is None or r.kind != "p":
            return
        screen = DetailScreen(r.koid, f"pid {r.koid}  {escape_terminal(r.name)}")
        self.push_screen(screen)
        self._load_detail(screen)

    @work(thread=True, group="detail")
    def _load_detail(self, screen: DetailScreen) -> None:
        detail = self.source.detail(screen.pid)
        self.call_from_thread(screen.show, detail)


def run_app(source: LiveSource | StoreSource, opts: view.TopOptions, delay: float) -> int:
    """Run the app on the terminal until ``q``; its exit status."""
    app = TopApp(source, opts, delay)
    status = app.run()
    if app.error is not None:
        raise ZxmemError(app.error)
    return status if status is not None else 0
