"""The treemap as one self-contained HTML page (spec fuchsia-tools §6.3–6.4).

The page needs nothing but itself: the layout library (d3-hierarchy's
squarified treemap, vendored in ``zxmem/data`` with its licence) and the
page's own script are inlined, and a Content-Security-Policy forbids every
fetch, so it opens from ``file://`` on a machine with no network and sends
nothing anywhere.

Names are data, never markup.  The tree travels as JSON inside a
``<script type="application/json">`` element in which ``<``, ``>`` and ``&``
(and U+2028/U+2029) are written as ``\\uXXXX`` escapes, so no name can close
the element; the page reads it with ``JSON.parse`` and puts every name on
screen with ``textContent``.  The policy allows only the inlined script (by
its hash), so even markup that did slip in could not run.

What the page shows, after Fuchsia's ``treemap.py``: the zoomable map (click
a box to zoom in, a breadcrumb or the outermost box to zoom out), a tooltip
with the name, ``format_size`` and exact bytes and the shares of parent and
total, a legend of node kinds, a search box that highlights matching
processes and zooms to them, and the size table of §6.4 (one row per node, children by size,
sortable, with collapsible rows so a thousand processes' VMOs stay cheap).

Two choices of zxmem's own (issue 17), where an idle Linux machine's map
would otherwise be mostly one box:

* The map opens on *used* memory: the system's free memory (the root's
  ``free`` child, Linux's MemFree) is not drawn; the legend gives it as a
  figure (size and share of all physical memory) with a check box that
  draws it.  The table lists it either way, and shares stay shares of all
  physical memory.  The kernel heap's own ``free`` part is drawn as before.
* A search zooms the map to the smallest box that holds every match: the
  deepest node whose subtree contains all matching processes, or, for a
  single match, that process's parent (so the match is seen highlighted
  among its neighbours).  Clearing the search, or a search that matches
  nothing, returns to where the map was before the search began.
"""

from __future__ import annotations

import base64
import hashlib
import json
import re
from collections.abc import Mapping
from importlib import resources

from zxmem import treemap as tm

# One character per node kind in the page's data (keeps 20,000 nodes small).
KIND_CODES = {
    tm.KIND_KERNEL: "K",
    tm.KIND_FREE: "F",
    tm.KIND_UNKNOWN: "U",
    tm.KIND_JOB: "J",
    tm.KIND_PROCESS: "P",
    tm.KIND_VMO: "V",
    tm.KIND_AGGREGATE: "A",
    tm.KIND_ESTIMATE: "E",
    tm.KIND_HIDDEN: "H",
}

# Legend text per kind, in legend order.  Constant strings (no data).
LEGEND = {
    tm.KIND_KERNEL: "K kernel memory",
    tm.KIND_FREE: "free memory",
    tm.KIND_JOB: "J job (cgroup)",
    tm.KIND_PROCESS: "P process",
    tm.KIND_VMO: "V VMO (memory object)",
    tm.KIND_AGGREGATE: 'V name[n]: n same-named VMOs of one process',
    tm.KIND_ESTIMATE: "private / proportional shared (no VMO data)",
    tm.KIND_HIDDEN: "hidden: objects no process maps",
    tm.KIND_UNKNOWN: "unknown (kernel & unmapped)",
}

LIBRARY = "d3-hierarchy.min.js"
LIBRARY_LICENSE = "d3-hierarchy.LICENSE"


def _data_file(name: str) -> str:
    return resources.files("zxmem").joinpath("data").joinpath(name).read_text(encoding="utf-8")


def json_for_script(value: object) -> str:
    """JSON that is inert inside a ``<script>`` element.

    ``ensure_ascii`` writes every non-ASCII character (U+2028/U+2029
    included, which old JavaScript parsers took for line ends) as ``\\uXXXX``;
    ``<``, ``>`` and ``&`` can only occur inside JSON strings, where their
    ``\\u`` escapes mean the same, so ``</script>`` or ``<!--`` never appear
    in the element's text.
    """
    text = json.dumps(value, ensure_ascii=True, separators=(",", ":"), allow_nan=False)
    return (
        text.replace("<", "\\u003c")
        .replace(">", "\\u003e")
        .replace("&", "\\u0026")
        .replace("\u2028", "\\u2028")
        .replace("\u2029", "\\u2029")
    )


def tree_payload(root: tm.Node) -> dict:
    """The tree as parallel arrays in pre-order (index 0 is the root).

    Compact, because a thousand processes reach fifty thousand VMOs and
    the same library paths recur in every process: ``strings`` holds each
    distinct name once and ``name`` indexes it; ``nkids`` is each node's
    number of children (the tree is rebuilt from pre-order with a stack);
    ``area`` is bytes (``null`` when unknown); ``koid`` is kept where the page
    shows it (processes, jobs, unnamed VMOs) and 0 elsewhere; ``type`` and
    ``kind`` are strings with one letter per node (the label's type letter
    or ``-``, and :data:`KIND_CODES`).  Sizes are formatted by the page with
    the same V1 ``format_size`` rules as :func:`zxmem.units.format_size`
    with ``exact=False`` (spec §6.3: lower-case k).
    """
    strings: list[str] = []
    index_of: dict[str, int] = {}
    names: list[int] = []
    nkids: list[int] = []
    areas: list[int | None] = []
    koids: list[int] = []
    types: list[str] = []
    kinds: list[str] = []
    stack: list[tm.Node] = [root]
    while stack:
        node = stack.pop()
        i = index_of.get(node.name)
        if i is None:
            i = index_of[node.name] = len(strings)
            strings.append(node.name)
        names.append(i)
        nkids.append(len(node.children))
        areas.append(node.area if node.known else None)
        show_koid = node.kind in (tm.KIND_PROCESS, tm.KIND_JOB) or node.name in ("", tm.UNNAMED)
        koids.append(node.koid if show_koid else 0)
        types.append(node.type[:1].upper() if node.type else "-")
        kinds.append(KIND_CODES.get(node.kind, "U"))
        stack.extend(reversed(node.children))
    return {
        "strings": strings,
        "name": names,
        "nkids": nkids,
        "area": areas,
        "koid": koids,
        "type": "".join(types),
        "kind": "".join(kinds),
    }


def _csp_hash(text: str) -> str:
    digest = hashlib.sha256(text.encode("utf-8")).digest()
    return "'sha256-" + base64.b64encode(digest).decode("ascii") + "'"


def render_html(root: tm.Node, meta: Mapping[str, str | None] | None = None) -> str:
    """The whole page for ``root`` (a tree from :mod:`zxmem.treemap`).

    ``meta`` (source, host, timestamp, …) is shown under the title; like the
    names it travels as JSON and is displayed as text.
    """
    payload = {
        "tree": tree_payload(root),
        "meta": {k: v for k, v in (meta or {}).items() if v},
    }
    present = {node.kind for _, node in root.walk()}
    legend = "\n".join(
        f'<li><span class="sw k-{kind}"></span>{_LEGEND_HTML[kind]}</li>'
        for kind in LEGEND
        if kind in present
    )
    script = _data_file(LIBRARY) + "\n" + _APP_JS
    policy = (
        "default-src 'none'; "
        f"script-src {_csp_hash(script)}; "
        f"style-src {_csp_hash(_CSS)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    licence = _data_file(LIBRARY_LICENSE).strip()
    parts = {
        "CSP": policy,
        "CSS": _CSS,
        "LEGEND": legend,
        "LICENSE": _comment_text(licence),
        "DATA": json_for_script(payload),
        "SCRIPT": script,
    }
    # One pass over the template: inserted text (names included) is never
    # scanned for placeholders again.
    return re.sub(r"@@([A-Z]+)@@", lambda m: parts[m.group(1)], _TEMPLATE)


def _comment_text(text: str) -> str:
    # The licence goes into an HTML comment; "--" cannot end it early here.
    return text.replace("--", "- -")


# Constant legend markup: the kind letters are spelled out as the labels do.
_LEGEND_HTML = {
    kind: (
        f'<b class="tl tl-{text[0]}">{text[0]}</b>{text[1:]}'
        if text[:2] in ("K ", "J ", "P ", "V ")
        else text.replace("&", "&amp;").replace("<", "&lt;")
    )
    for kind, text in LEGEND.items()
}
# Free memory is not drawn at first: the legend gives its size (filled in by
# the page's script) and a check box that draws it.
_LEGEND_HTML[tm.KIND_FREE] += (
    '<span id="free-size"></span> <label id="free-toggle"><input type="checkbox"'
    ' id="show-free"> show in the map</label>'
)

_CSS = """
body { font: 13px/1.4 sans-serif; margin: 16px; color: #111; }
h1 { font-size: 1.5em; margin: 0 0 4px; }
#meta, .hint { color: #555; margin: 2px 0; }
#bar { display: flex; flex-wrap: wrap; gap: 8px 16px; align-items: center; margin: 8px 0; }
#crumbs { flex: 1 1 auto; min-width: 0; overflow-wrap: anywhere; }
#crumbs button { font: inherit; border: 0; background: none; color: #0050a0;
  text-decoration: underline; cursor: pointer; padding: 0; }
#crumbs .sep { color: #888; padding: 0 4px; }
#crumbs [aria-current] { font-weight: bold; }
#search { font: inherit; width: 16em; padding: 2px 4px; }
#search-status { color: #555; min-width: 10em; }
#map { position: relative; width: 100%; max-width: 1400px; height: 600px;
  border: 1px solid #888; background: #fafafa; overflow: hidden; cursor: pointer;
  user-select: none; }
.box { position: absolute; box-sizing: border-box; overflow: hidden;
  border: 1px solid rgba(0, 0, 0, 0.35); }
.box:hover { border-color: #000; box-shadow: inset 0 0 0 1px #000; }
.box .lbl { display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
  font-size: 11px; line-height: 14px; padding: 0 3px; }
.box.hit { box-shadow: inset 0 0 0 3px #e69f00; border-color: #000; }
.box.hit-in { box-shadow: inset 0 0 0 2px #e69f00; }
.box.hit .lbl { background: #ffe08a; }
.k-kernel { background: #d4d4d4; } .k-free { background: #f3f3f3; }
.k-unknown { background: #f5deb0; } .k-job { background: #f5d3bd; }
.k-process { background: #bcd9ef; } .k-vmo { background: #bfe8da; }
.k-aggregate { background: #93d6bf; } .k-estimate { background: #d3ebf9; }
.k-hidden { background: #efd0e1; }
.tl { font-weight: bold; }
.tl-K { color: #000; } .tl-J { color: rgb(213, 94, 0); }
.tl-P { color: rgb(0, 114, 178); } .tl-V { color: rgb(0, 158, 115); }
.unnamed { font-style: italic; }
#tip { position: fixed; display: none; pointer-events: none; z-index: 10; max-width: 440px;
  background: #fffff4; border: 1px solid #555; padding: 4px 7px;
  box-shadow: 2px 2px 6px rgba(0, 0, 0, 0.25); overflow-wrap: anywhere; }
#tip div + div { color: #333; }
#legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap; gap: 4px 18px; }
#free-toggle { margin-left: 8px; color: #333; }
#legend .sw { display: inline-block; width: 12px; height: 12px; margin-right: 5px;
  border: 1px solid #666; vertical-align: -2px; }
table#tree { border-collapse: collapse; margin-top: 8px; }
#tree th { background: #e8e8e8; text-align: left; padding: 3px 6px; vertical-align: bottom; }
#tree th button { font: inherit; font-weight: bold; border: 0; background: none;
  cursor: pointer; padding: 0; text-align: left; }
#tree td { padding: 1px 6px; white-space: nowrap; }
#tree tbody tr:nth-child(even) { background: #f4f4f4; }
#tree tbody tr:hover { background: #fff3c4; }
#tree tr.hit td { background: #ffe08a; }
#tree td.num { text-align: right; font-family: monospace; }
#tree td.name { max-width: 60em; overflow: hidden; text-overflow: ellipsis; }
#tree .indent { color: #aaa; font-family: monospace; white-space: pre; }
#tree .tog { font: inherit; width: 1.4em; border: 0; background: none; cursor: pointer;
  padding: 0; color: #333; }
#tree .nm { cursor: pointer; }
#tree .nm:hover { text-decoration: underline; }
#tree .bar { display: inline-block; width: 5em; height: 0.7em; vertical-align: middle;
  background: #e4e4e4; border: 1px solid #bbb; border-radius: 2px; overflow: hidden; }
#tree .bar span { display: block; height: 100%; background: #2f7fd0; }
#tree .more-rows { font: inherit; margin: 4px 0; cursor: pointer; }
footer { color: #777; margin-top: 12px; font-size: 0.9em; }
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@@CSP@@">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Memory usage</title>
<style>@@CSS@@</style>
</head>
<body>
<h1>Memory usage</h1>
<p id="meta"></p>
<p class="hint">Click on a box to zoom in. Click on the outermost box or a name in the
path to zoom out (Esc zooms out one level). Hover over a box for its size. The map shows
used memory; free memory is in the legend. A search zooms to the smallest box holding
every match.</p>
<div id="bar">
<nav id="crumbs" aria-label="Zoom path"></nav>
<input id="search" type="search" placeholder="Search processes" aria-label="Search processes"
 autocomplete="off">
<span id="search-status" aria-live="polite"></span>
</div>
<div id="map" role="img" aria-label="Treemap of memory usage"></div>
<div id="tip" role="tooltip"></div>
<ul id="legend">
@@LEGEND@@
</ul>
<hr>
<table id="tree">
<thead><tr>
<th data-key="name" aria-sort="none"><button type="button">Name</button></th>
<th data-key="size" aria-sort="descending"><button type="button">Size<br>(bytes/1024^n)
</button></th>
<th data-key="size" aria-sort="descending"><button type="button">Size (bytes)</button></th>
<th data-key="size" aria-sort="descending"><button type="button">Fraction of parent</button></th>
<th data-key="size" aria-sort="descending"><button type="button">Fraction of total</button></th>
</tr></thead>
<tbody></tbody>
</table>
<footer>Made by zxmem. Layout: d3-hierarchy (ISC licence, included in this file).</footer>
<!--
d3-hierarchy licence:
@@LICENSE@@
-->
<script type="application/json" id="zxmem-data">@@DATA@@</script>
<script>@@SCRIPT@@</script>
</body>
</html>
"""

_APP_JS = r"""
(function () {
  "use strict";
  var KIND = {K: "kernel", F: "free", U: "unknown", J: "job", P: "process", V: "vmo",
              A: "aggregate", E: "estimate", H: "hidden"};
  var MAX_BOXES = 3000;  // boxes drawn at once; the smallest are left out
  var MIN_SPLIT = 400;  // square pixels a box needs before its children are drawn
  var TABLE_CHUNK = 250;  // table rows added at a time, as the table scrolls into view
  var UNITS = "BkMGTPE";

  // zxmem.units.format_size(n, exact=False): spec 1.2's V1 rules, the ones
  // treemap.py uses (at most four whole digits, exact multiples without a
  // decimal, one decimal digit rounded from the last remainder).
  function formatSize(b) {
    if (b === null || b === undefined) return "-";
    if (b < 0) return "-" + formatSize(-b);
    var value = b, rem = 0, idx = 0, div = 1;
    while (idx < UNITS.length - 1 && (value >= 10000 || (value !== 0 && value % 1024 === 0))) {
      rem = value % 1024;
      value = Math.floor(value / 1024);
      div *= 1024;
      idx++;
    }
    if (b % div === 0) return String(b / div) + UNITS.charAt(idx);
    var whole = value, digit = Math.floor(rem / 100) + (rem % 100 >= 50 ? 1 : 0);
    if (digit >= 10) { whole += 1; digit = 0; }
    return whole + "." + digit + UNITS.charAt(idx);
  }
  window.zxmemFormatSize = formatSize;  // for tests: compared with Python's
  var data = JSON.parse(document.getElementById("zxmem-data").textContent);
  var T = data.tree;
  var n = T.name.length;
  var nodes = new Array(n);
  var i;
  // Rebuild the tree from pre-order and child counts.
  var open_ = [];  // [node, children still to come]
  for (i = 0; i < n; i++) {
    var nd0 = {i: i, name: T.strings[T.name[i]], type: T.type.charAt(i),
               kind: KIND[T.kind.charAt(i)], area: T.area[i], sz: null,
               koid: T.koid[i], parent: null, children: [], self: 0, value: 0, depth: 0,
               hit: false, hitIn: false};
    nodes[i] = nd0;
    while (open_.length && open_[open_.length - 1][1] === 0) open_.pop();
    if (open_.length) {
      var top = open_[open_.length - 1];
      top[1]--;
      nd0.parent = top[0];
      nd0.depth = top[0].depth + 1;
      top[0].children.push(nd0);
    }
    if (T.nkids[i]) open_.push([nd0, T.nkids[i]]);
  }
  // Layout weight: a node's own area not covered by its children (kernel
  // nodes keep the kernel's totals, which may exceed their children's sum).
  for (i = n - 1; i >= 0; i--) {
    var nd = nodes[i], covered = 0;
    for (var c = 0; c < nd.children.length; c++) covered += Math.max(nd.children[c].area || 0, 0);
    nd.self = Math.max(0, Math.max(nd.area || 0, 0) - covered);
    // Laid-out size: own part plus the children's (as d3's sum() computes).
    nd.value = nd.self;
    for (c = 0; c < nd.children.length; c++) nd.value += nd.children[c].value;
  }
  function sizeOf(nd) {
    if (nd.sz === null) nd.sz = formatSize(nd.area);
    return nd.sz;
  }
  var root = nodes[0];
  var total = root.area || 0;

  // Free memory (the root's "free" children) is left out of the map unless
  // asked for: laid out, it would fill most of an idle machine's map.
  var showFree = false;
  var freeArea = 0, freeValue = 0;
  root.children.forEach(function (c) {
    if (c.kind === "free") { freeArea += Math.max(c.area || 0, 0); freeValue += c.value; }
  });
  function drawn(nd) { return showFree || nd.kind !== "free" || nd.parent !== root; }
  function laidOut(nd) { return nd === root && !showFree ? nd.value - freeValue : nd.value; }

  var mapEl = document.getElementById("map");
  var tip = document.getElementById("tip");
  var crumbs = document.getElementById("crumbs");
  var current = root;
  var shown = [];  // box element index -> node

  function isUnnamed(nd) { return nd.name === "" || nd.name === "<unnamed>"; }

  // A node's label (spec 6.3): bold type letter, then the name as text.
  function appendLabel(el, nd) {
    if (nd.type !== "-") {
      var b = document.createElement("b");
      b.className = "tl tl-" + nd.type;
      b.textContent = nd.type + " ";
      el.appendChild(b);
    }
    if (isUnnamed(nd)) {
      var it = document.createElement("i");
      it.className = "unnamed";
      it.textContent = "UNNAMED";
      el.appendChild(it);
      el.appendChild(document.createTextNode(" [koid " + nd.koid + "]"));
    } else {
      el.appendChild(document.createTextNode(nd.name));
    }
  }

  function plainLabel(nd) {
    return isUnnamed(nd) ? "UNNAMED [koid " + nd.koid + "]" : nd.name;
  }

  function pct(part, whole) {
    if (part === null || !whole || whole <= 0) return "\u2014";
    return (100 * part / whole).toFixed(3) + "%";
  }

  function layout(top) {
    var W = mapEl.clientWidth, H = mapEl.clientHeight;
    // Only descend into nodes big enough to show children: a node below
    // MIN_SPLIT square pixels is laid out as one box of its whole size.
    // This keeps d3's work to the few thousand boxes that can be seen.
    var scale = laidOut(top) > 0 ? (W * H) / laidOut(top) : 0;
    function split(d) { return d.children.length > 0 && laidOut(d) * scale >= MIN_SPLIT; }
    var h = d3.hierarchy(top, function (d) {
      return split(d) ? d.children.filter(drawn) : null;
    }).sum(function (d) { return split(d) ? d.self : laidOut(d); });
    d3.treemap()
      .tile(d3.treemapSquarify)
      .size([W, H])
      .paddingOuter(2)
      .paddingInner(1)
      .paddingTop(function (d) {
        return (d.y1 - d.y0) > 36 && (d.x1 - d.x0) > 40 ? 16 : 2;
      })(h);
    return h;
  }

  function draw() {
    var h = layout(current);
    var frag = document.createDocumentFragment();
    var queue = [h], head = 0;
    shown = [];
    // Breadth-first, so the largest boxes are drawn first and the deeper ones
    // on top of them; boxes too small to see are not drawn at all.
    while (head < queue.length && shown.length < MAX_BOXES) {
      var d = queue[head++];
      var w = d.x1 - d.x0, hh = d.y1 - d.y0;
      if (w < 4 || hh < 4) continue;
      var nd = d.data;
      var el = document.createElement("div");
      el.className = "box k-" + nd.kind + (nd.hit ? " hit" : nd.hitIn ? " hit-in" : "");
      el.style.left = d.x0 + "px";
      el.style.top = d.y0 + "px";
      el.style.width = w + "px";
      el.style.height = hh + "px";
      el.setAttribute("data-i", String(shown.length));
      if (hh >= 14 && w >= 24) {
        var lbl = document.createElement("span");
        lbl.className = "lbl";
        appendLabel(lbl, nd);
        lbl.appendChild(document.createTextNode(" (" + sizeOf(nd) + ")"));
        el.appendChild(lbl);
      }
      shown.push(nd);
      frag.appendChild(el);
      if (d.children) for (var c = 0; c < d.children.length; c++) queue.push(d.children[c]);
    }
    mapEl.replaceChildren(frag);
    drawCrumbs();
  }

  function drawCrumbs() {
    var path = [];
    for (var a = current; a; a = a.parent) path.unshift(a);
    var frag = document.createDocumentFragment();
    path.forEach(function (nd, k) {
      if (k) {
        var sep = document.createElement("span");
        sep.className = "sep";
        sep.textContent = "\u203a";
        frag.appendChild(sep);
      }
      var el;
      if (nd === current) {
        el = document.createElement("span");
        el.setAttribute("aria-current", "location");
      } else {
        el = document.createElement("button");
        el.type = "button";
        el.addEventListener("click", function () { zoom(nd); });
      }
      el.textContent = plainLabel(nd) + " (" + sizeOf(nd) + ")";
      frag.appendChild(el);
    });
    crumbs.replaceChildren(frag);
  }

  function zoom(nd) {
    if (!nd || nd === current) return;
    current = nd;
    hideTip();
    draw();
  }

  function boxNode(target) {
    var el = target && target.closest ? target.closest(".box") : null;
    return el ? shown[+el.getAttribute("data-i")] : null;
  }

  mapEl.addEventListener("click", function (ev) {
    var nd = boxNode(ev.target);
    if (!nd) return;
    if (nd === current) { zoom(current.parent); return; }
    // A leaf cannot be zoomed into: show its parent's box instead.
    zoom(nd.children.length ? nd : nd.parent);
  });

  document.addEventListener("keydown", function (ev) {
    if (ev.key === "Escape" && ev.target.tagName !== "INPUT" && current.parent) {
      zoom(current.parent);
    }
  });

  var tipNode = null;
  function showTip(nd) {
    tipNode = nd;
    var f = document.createDocumentFragment();
    var line = document.createElement("div");
    appendLabel(line, nd);
    f.appendChild(line);
    var size = document.createElement("div");
    size.className = "tip-size";
    size.textContent = nd.area === null ? "size unknown (not readable)"
      : sizeOf(nd) + " (" + nd.area + " bytes)";
    f.appendChild(size);
    if (nd.parent) {
      var sp = document.createElement("div");
      sp.textContent = pct(nd.area, nd.parent.area) + " of " + plainLabel(nd.parent);
      f.appendChild(sp);
    }
    var st = document.createElement("div");
    st.textContent = pct(nd.area, total) + " of all physical memory";
    f.appendChild(st);
    if (nd.kind === "process" || nd.kind === "job") {
      var k = document.createElement("div");
      k.textContent = (nd.kind === "job" ? "job koid " : "koid ") + nd.koid;
      f.appendChild(k);
    }
    tip.replaceChildren(f);
    tip.style.display = "block";
  }
  function hideTip() { tip.style.display = "none"; tipNode = null; }
  function placeTip(ev) {
    var x = ev.clientX + 14, y = ev.clientY + 16;
    var r = tip.getBoundingClientRect();
    if (x + r.width > window.innerWidth - 4) x = Math.max(4, ev.clientX - r.width - 10);
    if (y + r.height > window.innerHeight - 4) y = Math.max(4, ev.clientY - r.height - 10);
    tip.style.left = x + "px";
    tip.style.top = y + "px";
  }
  mapEl.addEventListener("mousemove", function (ev) {
    var nd = boxNode(ev.target);
    if (!nd) { hideTip(); return; }
    if (nd !== tipNode) showTip(nd);
    placeTip(ev);
  });
  mapEl.addEventListener("mouseleave", hideTip);

  // Search: mark matching processes and the boxes that contain them.
  var search = document.getElementById("search");
  var status = document.getElementById("search-status");
  var beforeSearch = null;  // where the map was when the search began
  // The smallest box holding every match: the deepest common ancestor of
  // the matching nodes; a single match is shown inside its parent.
  function holding(found) {
    var common = found[0];
    for (var k = 1; k < found.length; k++) {
      var seen = [];
      for (var a = found[k]; a; a = a.parent) seen.push(a);
      while (seen.indexOf(common) < 0) common = common.parent;
    }
    if (common.hit && common.parent) common = common.parent;
    if (!drawn(common)) common = root;
    return common;
  }
  function runSearch() {
    var q = search.value.trim().toLowerCase();
    var hits = 0, found = [];
    for (var j = 0; j < n; j++) { nodes[j].hit = false; nodes[j].hitIn = false; }
    if (q) {
      for (j = 0; j < n; j++) {
        var nd = nodes[j];
        if (nd.kind !== "process") continue;
        if (nd.name.toLowerCase().indexOf(q) >= 0 || String(nd.koid) === q) {
          nd.hit = true;
          hits++;
          found.push(nd);
          for (var a = nd.parent; a && !a.hitIn; a = a.parent) a.hitIn = true;
        }
      }
      status.textContent = hits + (hits === 1 ? " matching process" : " matching processes");
    } else {
      status.textContent = "";
    }
    if (found.length) {
      if (beforeSearch === null) beforeSearch = current;
      current = holding(found);
    } else if (beforeSearch !== null) {
      current = beforeSearch;
      beforeSearch = null;
    }
    hideTip();
    draw();
    drawTable();
  }
  search.addEventListener("input", runSearch);

  // The size table (spec 6.4), children ordered by the chosen column.
  var tbody = document.querySelector("#tree tbody");
  var sortKey = "size", sortDesc = true;
  var open = new Array(n);
  for (i = 0; i < n; i++) {
    var kd = nodes[i].kind;
    open[i] = i === 0 || kd === "kernel" || kd === "job";
  }
  function ordered(nd) {
    var list = nd.children.slice();
    if (sortKey === "name") {
      list.sort(function (x, y) {
        var r = plainLabel(x).localeCompare(plainLabel(y));
        return sortDesc ? -r : r;
      });
    } else if (!sortDesc) {
      list.reverse();
    }
    return list;
  }
  function cell(tr, text, cls) {
    var td = document.createElement("td");
    if (cls) td.className = cls;
    if (text !== null) td.textContent = text;
    tr.appendChild(td);
    return td;
  }
  function fracCell(tr, part, whole) {
    var td = cell(tr, null, "num");
    if (part === null || !whole || whole <= 0) { td.textContent = "\u2014"; return; }
    td.textContent = (100 * part / whole).toFixed(3) + "%\u00a0";
    // A plain bar (a native <progress> per cell is slow for a thousand rows).
    var bar = document.createElement("span");
    bar.className = "bar";
    var fill = document.createElement("span");
    fill.style.width = (100 * Math.max(0, Math.min(1, part / whole))).toFixed(1) + "%";
    bar.appendChild(fill);
    td.appendChild(bar);
  }
  // Rows in pre-order of the open nodes; built TABLE_CHUNK at a time, the
  // next chunk when the "more rows" line scrolls into view.
  var rowsShown = TABLE_CHUNK, moreRow = null, observer = null;
  function tableOrder() {
    var out = [], stack = [root];
    while (stack.length) {
      var nd = stack.pop();
      out.push(nd);
      if (open[nd.i]) {
        var kids = ordered(nd);
        for (var k = kids.length - 1; k >= 0; k--) stack.push(kids[k]);
      }
    }
    return out;
  }
  function row(nd) {
    var tr = document.createElement("tr");
    if (nd.hit) tr.className = "hit";
    var name = cell(tr, null, "name");
    var ind = document.createElement("span");
    ind.className = "indent";
    ind.textContent = "|\u00a0\u00a0".repeat(nd.depth);
    name.appendChild(ind);
    var tog = document.createElement("button");
    tog.type = "button";
    tog.className = "tog";
    if (nd.children.length) {
      tog.textContent = open[nd.i] ? "\u25be" : "\u25b8";
      tog.setAttribute("aria-expanded", open[nd.i] ? "true" : "false");
      tog.setAttribute("aria-label", (open[nd.i] ? "collapse " : "expand ") + plainLabel(nd));
      tog.setAttribute("data-i", String(nd.i));
    } else {
      tog.disabled = true;
      tog.style.visibility = "hidden";
    }
    name.appendChild(tog);
    var nm = document.createElement("span");
    nm.className = "nm";
    nm.setAttribute("data-i", String(nd.i));
    appendLabel(nm, nd);
    name.appendChild(nm);
    cell(tr, sizeOf(nd), "num");
    cell(tr, nd.area === null ? "-" : String(nd.area), "num");
    if (nd.parent) {
      fracCell(tr, nd.area, nd.parent.area);
      fracCell(tr, nd.area, total);
    } else {
      cell(tr, "", "num");
      cell(tr, "", "num");
    }
    return tr;
  }
  function drawTable() {
    var order = tableOrder();
    var frag = document.createDocumentFragment();
    var end = Math.min(order.length, rowsShown);
    for (var r = 0; r < end; r++) frag.appendChild(row(order[r]));
    if (observer) observer.disconnect();
    moreRow = null;
    if (end < order.length) {
      moreRow = document.createElement("tr");
      moreRow.className = "more";
      var td = cell(moreRow, null, null);
      td.colSpan = 5;
      var btn = document.createElement("button");
      btn.type = "button";
      btn.className = "more-rows";
      btn.textContent = (order.length - end) + " more rows";
      td.appendChild(btn);
      frag.appendChild(moreRow);
    }
    tbody.replaceChildren(frag);
    if (moreRow && "IntersectionObserver" in window) {
      observer = new IntersectionObserver(function (entries) {
        if (entries.some(function (e) { return e.isIntersecting; })) showMore();
      }, {rootMargin: "400px"});
      observer.observe(moreRow);
    }
  }
  function showMore() {
    rowsShown += TABLE_CHUNK;
    drawTable();
  }
  tbody.addEventListener("click", function (ev) {
    if (ev.target.closest(".more-rows")) { showMore(); return; }
    var t = ev.target.closest("[data-i]");
    if (!t) return;
    var nd = nodes[+t.getAttribute("data-i")];
    if (t.classList.contains("tog")) {
      open[nd.i] = !open[nd.i];
      drawTable();
    } else {
      zoom(nd.children.length ? nd : nd.parent || nd);
      mapEl.scrollIntoView({block: "nearest"});
    }
  });
  document.querySelectorAll("#tree th").forEach(function (th) {
    th.querySelector("button").addEventListener("click", function () {
      var key = th.getAttribute("data-key");
      if (key === sortKey) sortDesc = !sortDesc;
      else { sortKey = key; sortDesc = key !== "name"; }
      document.querySelectorAll("#tree th").forEach(function (o) {
        o.setAttribute("aria-sort", o.getAttribute("data-key") !== sortKey ? "none"
          : sortDesc ? "descending" : "ascending");
      });
      drawTable();
    });
  });

  // The legend's free-memory figure and the check box that draws it.
  var freeSize = document.getElementById("free-size");
  var showFreeBox = document.getElementById("show-free");
  if (freeSize) {
    freeSize.textContent = ": " + formatSize(freeArea) + " (" + pct(freeArea, total) +
      " of all physical memory)";
  }
  if (showFreeBox) {
    showFreeBox.checked = false;
    showFreeBox.addEventListener("change", function () {
      showFree = showFreeBox.checked;
      if (!drawn(current)) current = root;
      draw();
    });
  }

  var meta = data.meta || {};
  var parts = [];
  ["source", "file", "host", "kernel", "timestamp"].forEach(function (k) {
    if (meta[k]) parts.push(k + ": " + meta[k]);
  });
  document.getElementById("meta").textContent = parts.join(" \u00b7 ");

  var pending = false;
  window.addEventListener("resize", function () {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () { pending = false; draw(); });
  });

  draw();
  drawTable();
  document.documentElement.setAttribute("data-ready", String(performance.now()));
})();
"""
