"""The treemap page in a real browser: Debian's headless Chromium via Playwright.

Each test writes a page for a small known snapshot, opens it from
``file://`` with every request recorded (anything not ``file://`` is
aborted), and drives it as a person would: click to zoom, breadcrumbs to
zoom out, hover for sizes, search, sort the table.  Hostile process names
must stay text: no dialog may open, no element may be created from a name,
and no request may leave the page.  A screenshot goes to ``test-artifacts/``.

Skipped, with the reason shown, when the ``playwright`` package or the
``chromium`` binary is missing (Playwright's own browser download is not
used: ``apt-get install chromium``).
"""

from __future__ import annotations

import os
import shutil
from dataclasses import dataclass, field
from pathlib import Path

import pytest

from zxmem.treemap import Node, tree_from_records
from zxmem.units import format_size
from zxmem.views.treemap_html import render_html

ARTIFACTS = Path(__file__).resolve().parents[2] / "test-artifacts"
CHROMIUM_ARGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
MIB = 1 << 20

HOSTILE = [
    "<img src=x onerror=alert(1)>",
    "</script><script>alert(2)</script>",
    '<svg onload="window.pwned=1">',
    "\u2028</SCRIPT ><!-- & &amp; \"'` @@DATA@@",
]


def find_chromium() -> str | None:
    for candidate in (os.environ.get("ZXMEM_CHROMIUM"), "/usr/bin/chromium",
                      shutil.which("chromium"), shutil.which("chromium-browser")):
        if candidate and os.access(candidate, os.X_OK):
            return candidate
    return None


@pytest.fixture(scope="module")
def browser():
    try:
        from playwright.sync_api import sync_playwright
    except ImportError:
        pytest.skip("browser tests need the playwright package (pip install playwright)")
    exe = find_chromium()
    if exe is None:
        pytest.skip("browser tests need Debian's chromium (apt-get install chromium)")
    with sync_playwright() as pw:
        b = pw.chromium.launch(executable_path=exe, args=CHROMIUM_ARGS)
        try:
            yield b
        finally:
            b.close()


# --- a small known snapshot --------------------------------------------------


def _kernel() -> list[dict]:
    rows = [
        ("physmem", "", 512 * MIB), ("free", "kernel/physmem", 60 * MIB),
        ("vmo", "kernel/physmem", 400 * MIB), ("heap", "kernel/physmem", 30 * MIB),
        ("heap/allocated", "kernel/heap", 20 * MIB), ("heap/free", "kernel/heap", 10 * MIB),
        ("wired", "kernel/physmem", 12 * MIB), ("mmu", "kernel/physmem", 6 * MIB),
        ("other", "kernel/physmem", 4 * MIB),
    ]
    return [{"id": f"kernel/{n}", "type": "kernel", "parent": p, "name": n, "size_bytes": v}
            for n, p, v in rows]


def _process(koid: int, job: int, name: str, vmos: list[tuple[int, str, int, int]]) -> dict:
    return {
        "id": f"p/{koid}", "type": "p", "koid": koid, "parent": f"j/{job}", "name": name,
        "private_bytes": 0, "shared_bytes": 0, "pss_bytes": 0,
        "vmos": [{"koid": k, "name": n, "size_bytes": c, "parent_koid": 0, "num_children": 0,
                  "num_mappings": s, "share_count": s, "committed_bytes": c}
                 for k, n, c, s in vmos],
        "vmo_refs": [{"vmo_koid": k, "via": ["MAPPING"]} for k, _, _, _ in vmos],
    }


def records(hostile: bool = False, extra: int = 0) -> list[dict]:
    recs = _kernel() + [
        {"id": "j/1", "type": "j", "koid": 1, "parent": "kernel/vmo", "name": "root"},
        {"id": "j/2", "type": "j", "koid": 2, "parent": "j/1", "name": "system.slice"},
        {"id": "j/3", "type": "j", "koid": 3, "parent": "j/1", "name": "user.slice"},
    ]
    koid = 1000
    programs = ["postgres", "nginx", "bin/netstack", "sshd", "python3", "redis-server"]
    for i, prog in enumerate(programs):
        vmos = [(900, "libc.so.6", 4 * MIB, len(programs))]
        for j in range(4):
            koid += 1
            vmos.append((koid, "[heap]" if j == 0 else f"anon-{j}", (i + 1) * (j + 2) * MIB, 1))
        koid += 1
        vmos.append((koid, "scudo:primary", 2 * MIB, 1))
        koid += 1
        vmos.append((koid, "scudo:primary", 3 * MIB, 1))
        recs.append(_process(100 + i, 2 if i % 2 else 3, prog, vmos))
    for i in range(extra):
        vmos = []
        for j in range(5):
            koid += 1
            vmos.append((koid, f"obj-{j}", (j + 1) * 64 * 1024, 1))
        recs.append(_process(500 + i, 3, f"extra-{i}", vmos))
    if hostile:
        for i, name in enumerate(HOSTILE):
            koid += 1
            recs.append(_process(200 + i, 2, name, [(koid, name, 5 * MIB, 1)]))
        recs.append({"id": "j/4", "type": "j", "koid": 4, "parent": "j/1", "name": HOSTILE[1]})
        koid += 1
        recs.append(_process(210, 4, "inside", [(koid, HOSTILE[0], 1 * MIB, 1)]))
    return recs


@dataclass
class Opened:
    page: object
    url: str
    tree: Node
    requests: list[str] = field(default_factory=list)
    dialogs: list[str] = field(default_factory=list)
    errors: list[str] = field(default_factory=list)


def open_page(browser, tmp_path: Path, hostile: bool = False,
              meta: dict | None = None, extra: int = 0) -> Opened:
    tree = tree_from_records(records(hostile, extra))
    path = tmp_path / "mem.html"
    path.write_text(render_html(tree, meta or {"source": "test"}), encoding="utf-8")
    url = path.as_uri()
    context = browser.new_context(viewport={"width": 1280, "height": 900})
    page = context.new_page()
    opened = Opened(page, url, tree)
    context.on("request", lambda r: opened.requests.append(r.url))

    def route(r):
        if r.request.url.startswith("file://"):
            r.continue_()
        else:
            r.abort()

    context.route("**/*", route)

    def on_dialog(d):
        opened.dialogs.append(f"{d.type}: {d.message}")
        d.dismiss()

    page.on("dialog", on_dialog)
    page.on("pageerror", lambda e: opened.errors.append(str(e)))
    page.on("console", lambda m: opened.errors.append(m.text) if m.type == "error" else None)
    page.goto(url)
    page.wait_for_selector("html[data-ready]", timeout=10_000)
    return opened


def box_labels(page) -> list[str]:
    return page.eval_on_selector_all("#map .box .lbl", "els => els.map(e => e.textContent)")


def crumbs(page) -> str:
    return page.inner_text("#crumbs")


def click_box(page, text: str) -> None:
    # Click the box's label strip: its middle is covered by its children.
    page.locator("#map .box", has=page.locator(".lbl", has_text=text)).first.click(
        position={"x": 8, "y": 7}
    )


def node(tree: Node, name: str) -> Node:
    for _, n in tree.walk():
        if n.name == name:
            return n
    raise KeyError(name)


# --- tests --------------------------------------------------------------------


def test_loads_from_file_with_no_request_leaving(browser, tmp_path):
    o = open_page(browser, tmp_path)
    try:
        assert o.requests == [o.url]
        assert o.errors == []
        assert o.page.title() == "Memory usage"
        assert o.page.locator("#map .box").count() > 10
        assert "All physical memory" in crumbs(o.page)
    finally:
        o.page.context.close()


def test_click_zooms_in_and_breadcrumb_zooms_out(browser, tmp_path):
    o = open_page(browser, tmp_path)
    page = o.page
    try:
        before = box_labels(page)
        assert not any(label.startswith("K free") for label in before)  # used memory only
        click_box(page, "VMOs/processes")
        assert page.inner_text("#crumbs [aria-current]").startswith("VMOs/processes")
        after = box_labels(page)
        assert after != before
        assert not any(label.startswith("K free") for label in after)
        assert after[0].startswith("K VMOs/processes")

        click_box(page, "system.slice")
        assert page.inner_text("#crumbs [aria-current]").startswith("system.slice")
        assert box_labels(page)[0].startswith("J system.slice")
        # Processes of the other slice are gone from the map.
        assert not any("postgres" in label for label in box_labels(page))

        page.locator("#crumbs").get_by_role("button", name="All physical memory").click()
        assert page.inner_text("#crumbs [aria-current]").startswith("All physical memory")
        assert box_labels(page) == before

        # The outermost box zooms out one level.
        click_box(page, "VMOs/processes")
        click_box(page, "VMOs/processes")
        assert page.inner_text("#crumbs [aria-current]").startswith("All physical memory")
        assert o.requests == [o.url] and o.errors == []
    finally:
        page.context.close()


def test_hover_shows_name_sizes_and_shares(browser, tmp_path):
    o = open_page(browser, tmp_path)
    page = o.page
    try:
        click_box(page, "VMOs/processes")
        target = node(o.tree, "bin/netstack")
        page.locator("#map .box", has=page.locator(".lbl", has_text="bin/netstack")).first.hover(
            position={"x": 8, "y": 7}
        )
        tip = page.locator("#tip")
        assert tip.is_visible()
        text = tip.inner_text()
        assert "P bin/netstack" in text
        assert f"{format_size(target.area, exact=False)} ({target.area} bytes)" in text
        parent = next(n for _, n in o.tree.walk() if target in n.children)
        assert parent.name == "user.slice"
        assert f"{100 * target.area / parent.area:.3f}% of user.slice" in text
        assert f"{100 * target.area / o.tree.area:.3f}% of all physical memory" in text
    finally:
        page.context.close()


def test_search_highlights_matching_processes(browser, tmp_path):
    o = open_page(browser, tmp_path)
    page = o.page
    try:
        page.fill("#search", "netstack")
        assert page.inner_text("#search-status") == "1 matching process"
        hits = page.locator("#map .box.hit")
        assert hits.count() == 1
        assert "bin/netstack" in hits.first.inner_text()
        assert page.locator("#tree tbody tr.hit").count() == 1
        assert page.locator("#map .box.hit-in").count() >= 1  # its job, zoomed to
        page.fill("#search", "s")  # sshd, postgres, system...: processes only
        assert page.inner_text("#search-status") == "4 matching processes"
        page.fill("#search", "")
        assert page.locator("#map .box.hit").count() == 0
        assert page.inner_text("#search-status") == ""
    finally:
        page.context.close()


def _box_share(page, label: str) -> float:
    """The share of the map's area taken by the first box labelled ``label``."""
    return page.evaluate("""label => {
        const map = document.getElementById('map');
        const box = Array.from(map.querySelectorAll('.box')).find(
            b => b.querySelector('.lbl') && b.querySelector('.lbl').textContent.startsWith(label));
        return box.offsetWidth * box.offsetHeight / (map.clientWidth * map.clientHeight);
    }""", label)


def test_opens_on_used_memory_with_free_in_the_legend(browser, tmp_path):
    o = open_page(browser, tmp_path)
    page = o.page
    try:
        free = node(o.tree, "free")
        assert free.area == 60 * MIB
        # Not drawn; the legend gives its size and share of all memory.
        assert not any(label.startswith("K free") for label in box_labels(page))
        legend = page.inner_text("#legend")
        share = f"{100 * free.area / o.tree.area:.3f}%"
        assert f"free memory: {format_size(free.area, exact=False)} ({share} of all" in legend
        # The used part fills the map: VMOs/processes (400M) of the 452M used,
        # less padding and labels.
        used = o.tree.area - free.area
        vmo = node(o.tree, "VMOs/processes").area
        assert 0.8 * vmo / used < _box_share(page, "K VMOs/processes") <= vmo / used
        # The check box draws free memory, in proportion to all memory.
        page.check("#show-free")
        assert any(label.startswith("K free") for label in box_labels(page))
        assert 0.8 * free.area / o.tree.area < _box_share(page, "K free") \
            <= free.area / o.tree.area
        assert _box_share(page, "K VMOs/processes") <= vmo / o.tree.area
        page.uncheck("#show-free")
        assert not any(label.startswith("K free") for label in box_labels(page))
        # The table lists it either way.
        names = page.eval_on_selector_all("#tree tbody tr .nm",
                                          "els => els.map(e => e.textContent)")
        assert "K free" in names
        assert o.errors == [] and o.requests == [o.url]
    finally:
        page.context.close()


def test_search_zooms_to_what_it_finds(browser, tmp_path):
    o = open_page(browser, tmp_path)
    page = o.page
    try:
        def here() -> str:
            return page.inner_text("#crumbs [aria-current]")

        click_box(page, "VMOs/processes")
        start = here()
        # One match: shown inside its job, highlighted among its neighbours.
        page.fill("#search", "netstack")
        assert here().startswith("user.slice")
        assert page.locator("#map .box.hit").count() == 1
        # Matches in two jobs: the smallest box holding both jobs.
        page.fill("#search", "s")  # postgres, bin/netstack (user), sshd, redis (system)
        assert page.inner_text("#search-status") == "4 matching processes"
        root_job = next(n for _, n in o.tree.walk()
                        if node(o.tree, "system.slice") in n.children)
        assert here().startswith(root_job.name)
        assert page.locator("#map .box.hit").count() == 4
        # Matches within one job: that job.
        page.fill("#search", "sshd")
        assert here().startswith("system.slice")
        # Nothing matches, or the search is cleared: back where it began.
        page.fill("#search", "no such process")
        assert here() == start
        page.fill("#search", "sshd")
        page.fill("#search", "")
        assert here() == start
        assert o.errors == []
    finally:
        page.context.close()


def test_search_zoom_keeps_hostile_names_text(browser, tmp_path):
    o = open_page(browser, tmp_path, hostile=True)
    page = o.page
    try:
        page.fill("#search", "inside")  # the one process of the hostile job
        assert page.inner_text("#crumbs [aria-current]").startswith(HOSTILE[1])
        page.fill("#search", "<svg")
        assert page.inner_text("#search-status") == "1 matching process"
        assert o.dialogs == [] and o.errors == [] and o.requests == [o.url]
        assert page.evaluate("window.pwned") is None
        assert page.locator("img, svg, iframe, object, embed").count() == 0
        assert page.locator("script").count() == 2
    finally:
        page.context.close()


def test_table_rows_sort_and_expand(browser, tmp_path):
    o = open_page(browser, tmp_path)
    page = o.page
    try:
        def names():
            return page.eval_on_selector_all(
                "#tree tbody tr .nm", "els => els.map(e => e.textContent)")

        first = names()
        assert first[0] == "K All physical memory"
        # Children by size, largest first: free (200M) before VMOs (260M)? No:
        # VMOs/processes is larger, so it comes first.
        assert first.index("K VMOs/processes") < first.index("K free")
        # Processes are collapsed: their VMOs are not rows yet.
        assert "V libc.so.6" not in first
        page.locator("#tree tbody tr", has_text="bin/netstack").locator(".tog").click()
        assert "V libc.so.6" in names()
        assert "V scudo:primary[2]" in names()

        page.get_by_role("button", name="Name").click()
        by_name = names()
        top = [n for n in by_name if n in ("K free", "K VMOs/processes", "K heap", "K wired")]
        assert top == ["K free", "K heap", "K VMOs/processes", "K wired"]
        assert page.get_attribute("#tree th[data-key=name]", "aria-sort") == "ascending"

        row = page.locator("#tree tbody tr", has_text="bin/netstack").first
        cells = row.locator("td").all_inner_texts()
        target = node(o.tree, "bin/netstack")
        assert cells[1].strip() == format_size(target.area, exact=False)
        assert cells[2].strip() == str(target.area)
    finally:
        page.context.close()


def test_long_tables_grow_as_they_scroll(browser, tmp_path):
    o = open_page(browser, tmp_path, extra=60)
    page = o.page
    try:
        # Open every row: more rows than one chunk, so a "more rows" line.
        page.evaluate("""() => {
            for (let k = 0; k < 200; k++) {
                const t = document.querySelector('#tree .tog[aria-expanded=false]');
                if (!t) break;
                t.click();
            }}""")
        rows = page.locator("#tree tbody tr:not(.more)")
        assert rows.count() == 250
        more = page.inner_text("#tree .more-rows")
        assert more.endswith(" more rows")
        waiting = int(more.split()[0])
        assert 0 < waiting <= 250
        page.locator("#tree .more-rows").scroll_into_view_if_needed()
        from playwright.sync_api import expect

        expect(rows).to_have_count(250 + waiting)
        assert page.locator("#tree .more-rows").count() == 0
    finally:
        page.context.close()


def test_hostile_names_stay_text(browser, tmp_path):
    o = open_page(browser, tmp_path, hostile=True, meta={"source": HOSTILE[2]})
    page = o.page
    try:
        # Drive everything that puts names on screen.
        click_box(page, "VMOs/processes")
        click_box(page, "root job")
        for box in page.locator("#map .box.k-process").all()[:12]:
            box.hover(position={"x": 4, "y": 4})
        page.fill("#search", "<img")
        collapsed = page.locator("#tree .tog[aria-expanded=false]")
        for _ in range(20):  # the table is redrawn after each click
            if collapsed.count() == 0:
                break
            collapsed.first.click()
        page.get_by_role("button", name="Name").click()

        assert o.dialogs == []
        assert o.requests == [o.url]
        assert o.errors == []
        assert page.evaluate("window.pwned") is None
        assert page.locator("img, svg, iframe, object, embed").count() == 0
        assert page.locator("script").count() == 2  # the data and the page's own
        table = page.inner_text("#tree")
        for name in HOSTILE:
            flat = name.replace("\u2028", "")
            assert flat.strip()[:12] in table.replace("\u2028", "")
        assert page.inner_text("#search-status") == "1 matching process"
        assert page.inner_text("#meta") == "source: " + HOSTILE[2]
        text = page.evaluate(
            "Array.from(document.querySelectorAll('#tree .nm')).map(e => e.textContent)"
        )
        assert "P <img src=x onerror=alert(1)>" in text
        assert "J </script><script>alert(2)</script>" in text
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "treemap-hostile.png"), full_page=False)
    finally:
        page.context.close()


def test_page_formats_sizes_like_python(browser, tmp_path):
    o = open_page(browser, tmp_path)
    try:
        values = [0, 1, 999, 1023, 1024, 1025, 1076, 1126, 9999, 10000, 10239, 10240, 10291,
                  51 * 1024 + 973, 1048575, 1048576, 5 * 2**30 + 12345, 1234567890123,
                  2**50 + 1, 2**53 - 1, -4096, -10291]
        values += [(i * 7919) ** 3 % (2**45) for i in range(200)]
        got = o.page.evaluate("vs => vs.map(v => window.zxmemFormatSize(v))", values)
        assert got == [format_size(v, exact=False) for v in values]
        assert o.page.evaluate("window.zxmemFormatSize(null)") == "-"
    finally:
        o.page.context.close()


def test_screenshot_artifact(browser, tmp_path):
    o = open_page(browser, tmp_path)
    page = o.page
    try:
        ARTIFACTS.mkdir(exist_ok=True)
        page.screenshot(path=str(ARTIFACTS / "treemap.png"), full_page=True)
        click_box(page, "VMOs/processes")
        page.locator("#map .box", has=page.locator(".lbl", has_text="postgres")).first.hover(
            position={"x": 8, "y": 7}
        )
        page.screenshot(path=str(ARTIFACTS / "treemap-zoomed.png"))
        for name in ("treemap.png", "treemap-zoomed.png"):
            assert (ARTIFACTS / name).stat().st_size > 10_000
    finally:
        page.context.close()
