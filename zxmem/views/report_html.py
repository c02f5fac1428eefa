"""The report page: a history store's memory over time, in one HTML file.

Self-contained as the treemap page is (:mod:`zxmem.views.treemap_html`):
uPlot (charts, MIT, vendored in ``zxmem/data`` with its licence and where it
came from, ``uPlot.SOURCE``), d3-hierarchy (the treemap layout, ISC) and the
page's own script are inlined; a Content-Security-Policy allows only those
scripts (by hash) and forbids every fetch, so the page opens from
``file://`` and sends nothing anywhere.

Names are data, never markup: every string (process, job and object names,
the store's path) travels as JSON inside ``<script type="application/json">``
elements, written by :func:`zxmem.views.treemap_html.json_for_script` (``<``,
``>``, ``&``, U+2028/2029 as ``\\u`` escapes), and reaches the screen only
through ``textContent`` or uPlot's labels (which it sets as text).

Each moment's treemap is its own JSON element, parsed only when the moment
is picked, so a page with several treemaps opens as fast as one without.
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence
from fractions import Fraction
from typing import Any

from zxmem.textsafe import escape_terminal
from zxmem.views.treemap_html import _csp_hash, _data_file, json_for_script

UPLOT_JS = "uPlot.iife.min.js"
UPLOT_CSS = "uPlot.min.css"
UPLOT_LICENSE = "uPlot.LICENSE"
D3_JS = "d3-hierarchy.min.js"
D3_LICENSE = "d3-hierarchy.LICENSE"

_BINARY = ("B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB")


def format_binary(nbytes: int | None) -> str:
    """``1.50 GiB``: the page's size format (the page's ``fmtBytes`` is the
    same rule: below 1024 whole bytes, else three significant digits of the
    largest binary unit below the value, halves rounded up)."""
    if nbytes is None:
        return "-"
    if nbytes < 0:
        return "-" + format_binary(-nbytes)
    if nbytes < 1024:
        return f"{nbytes} B"
    i = 0
    value = Fraction(nbytes)
    while value >= 1024 and i < len(_BINARY) - 1:
        value /= 1024
        i += 1
    digits = 0 if value >= 100 else 1 if value >= 10 else 2
    scaled = value * 10 ** digits
    n = int(scaled + Fraction(1, 2))  # half up (what JavaScript's toFixed does)
    text = str(n) if digits == 0 else f"{n // 10 ** digits}.{n % 10 ** digits:0{digits}d}"
    return f"{text} {_BINARY[i]}"


def render_html(payload: Mapping[str, Any], trees: Sequence[Mapping[str, Any]] = ()) -> str:
    """The page: ``payload`` is the report's JSON (chart series, moments,
    diffs, growth, notes, meta; see :func:`zxmem.commands.report.build_page`),
    ``trees`` one :func:`~zxmem.views.treemap_html.tree_payload` per moment.

    Every string of both is shown as :func:`zxmem.textsafe.escape_terminal`
    spells it (controls as ``\\e``, ``\\n``, ``\\xNN``; an undecodable byte
    as ``\\xNN``), the rule every other view follows, so a name reads the
    same here as in ``zxmem ps``."""
    payload = _escaped(payload)
    trees = [_escaped(t) for t in trees]
    script = "\n".join((_data_file(UPLOT_JS), _data_file(D3_JS), _APP_JS))
    css = _data_file(UPLOT_CSS) + "\n" + _CSS
    policy = (
        "default-src 'none'; "
        f"script-src {_csp_hash(script)}; "
        f"style-src {_csp_hash(css)}; "
        "img-src 'none'; base-uri 'none'; form-action 'none'"
    )
    licences = (
        "uPlot 1.6.32 (npm uplot@1.6.32) licence:\n" + _data_file(UPLOT_LICENSE).strip()
        + "\n\nd3-hierarchy licence:\n" + _data_file(D3_LICENSE).strip()
    ).replace("--", "- -")
    tree_elements = "\n".join(
        f'<script type="application/json" id="tree-{i}">{json_for_script(t)}</script>'
        for i, t in enumerate(trees))
    parts = {
        "CSP": policy,
        "CSS": css,
        "LICENSES": licences,
        "DATA": json_for_script(payload),
        "TREES": tree_elements,
        "SCRIPT": script,
    }
    return re.sub(r"@@([A-Z]+)@@", lambda m: parts[m.group(1)], _TEMPLATE)


def _escaped(doc: Any) -> Any:
    """``doc`` with :func:`escape_terminal` applied to every string value."""
    if isinstance(doc, str):
        return escape_terminal(doc)
    if isinstance(doc, Mapping):
        return {k: _escaped(v) for k, v in doc.items()}
    if isinstance(doc, (list, tuple)):
        return [_escaped(v) for v in doc]
    return doc


_CSS = """
body { font: 13px/1.4 sans-serif; margin: 16px; color: #111; max-width: 1300px; }
h1 { font-size: 1.5em; margin: 0 0 4px; }
h2 { font-size: 1.15em; margin: 22px 0 4px; border-bottom: 1px solid #ccc; }
#meta, .hint, #notes { color: #555; margin: 2px 0; }
#notes li { margin: 1px 0; }
.chart { margin: 4px 0 8px; }
.scroll { overflow-x: auto; max-width: 100%; }
.u-legend { font-size: 12px; text-align: left; }
.u-legend .u-value { font-family: monospace; }
table.rows { border-collapse: collapse; margin: 6px 0; }
table.rows th { background: #e8e8e8; text-align: left; padding: 3px 6px; }
table.rows td { padding: 1px 6px; white-space: nowrap; }
table.rows td.num { text-align: right; font-family: monospace; }
table.rows td.name { max-width: 50em; overflow: hidden; text-overflow: ellipsis; }
table.rows tbody tr:nth-child(even) { background: #f4f4f4; }
tr.picked td { background: #ffe08a !important; }
.grew { color: #a00; } .shrank { color: #070; } td.leak { color: #a00; font-weight: bold; }
#moments button { font: inherit; }
#treemap { position: relative; width: 100%; height: 480px; border: 1px solid #888;
  background: #fafafa; overflow: hidden; cursor: pointer; user-select: none; }
.box { position: absolute; box-sizing: border-box; overflow: hidden;
  border: 1px solid rgba(0, 0, 0, 0.35); font-size: 11px; line-height: 14px; }
.box span { display: block; white-space: nowrap; overflow: hidden; text-overflow: ellipsis;
  padding: 0 3px; }
.box:hover { box-shadow: inset 0 0 0 1px #000; }
.k-K { background: #d4d4d4; } .k-F { background: #f3f3f3; } .k-U { background: #f5deb0; }
.k-J { background: #f5d3bd; } .k-P { background: #bcd9ef; } .k-V { background: #bfe8da; }
.k-A { background: #93d6bf; } .k-E { background: #d3ebf9; } .k-H { background: #efd0e1; }
#treemap-legend { list-style: none; padding: 0; display: flex; flex-wrap: wrap;
  gap: 4px 18px; }
#treemap-legend .sw { display: inline-block; width: 12px; height: 12px; margin-right: 5px;
  border: 1px solid #666; vertical-align: -2px; }
#crumbs button { font: inherit; border: 0; background: none; color: #0050a0;
  text-decoration: underline; cursor: pointer; padding: 0; }
#tip { position: fixed; display: none; pointer-events: none; z-index: 10; max-width: 440px;
  background: #fffff4; border: 1px solid #555; padding: 4px 7px; overflow-wrap: anywhere; }
footer { color: #777; margin-top: 16px; font-size: 0.9em; }
"""

_TEMPLATE = """<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta http-equiv="Content-Security-Policy" content="@@CSP@@">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Memory report</title>
<style>@@CSS@@</style>
</head>
<body>
<h1>Memory report</h1>
<p id="meta"></p>
<ul id="notes"></ul>
<p class="hint">Hover over a chart for the values at that time; click on it to see the
treemap of the nearest moment below.  Sizes are binary: 1 KiB = 1024 bytes.</p>
<h2>Memory over time by job (PSS)</h2>
<div id="chart-jobs" class="chart"></div>
<h2>Memory over time by process (PSS)</h2>
<div id="chart-processes" class="chart"></div>
<h2>Kernel, page cache, processes and free memory</h2>
<div id="chart-system" class="chart"></div>
<h2>Memory pressure and OOM kills</h2>
<p id="events-note" class="hint"></p>
<div id="chart-pressure" class="chart"></div>
<h2>Growth</h2>
<p id="growth-note" class="hint"></p>
<div class="scroll"><table id="growth" class="rows"><thead></thead><tbody></tbody></table></div>
<h2>Moments</h2>
<p class="hint">Pick a moment to see its treemap; pick two (A and B) to see what changed
between them.</p>
<table id="moments" class="rows"><thead><tr><th>sample</th><th>time (UTC)</th><th>tier</th>
<th>all memory</th><th>treemap</th><th>A</th><th>B</th></tr></thead><tbody></tbody></table>
<h2 id="treemap-title">Treemap</h2>
<nav id="crumbs" aria-label="Zoom path"></nav>
<div id="treemap" role="img" aria-label="Treemap of the picked moment"></div>
<ul id="treemap-legend">
<li><span class="sw k-K"></span>K kernel memory</li><li><span class="sw k-F"></span>free</li>
<li><span class="sw k-J"></span>J job (cgroup)</li><li><span class="sw k-P"></span>P process</li>
<li><span class="sw k-V"></span>V memory object</li>
<li><span class="sw k-A"></span>name[n]: n objects of one process</li>
<li><span class="sw k-E"></span>private / proportional shared (no object data)</li>
<li><span class="sw k-H"></span>hidden: objects no process maps</li>
<li><span class="sw k-U"></span>unknown (kernel &amp; unmapped)</li>
</ul>
<p class="hint">Boxes are sized as zxmem treemap sizes them (click a box to zoom in, a name
in the path above to zoom out; hover for its size).</p>
<div id="tip" role="tooltip"></div>
<h2 id="diff-title">Changes between two moments</h2>
<div id="diff" class="scroll"></div>
<footer>Made by zxmem. Charts: uPlot 1.6.32 (MIT licence); treemap layout: d3-hierarchy
(ISC licence); both licences are included in this file.</footer>
<!--
@@LICENSES@@
-->
<script type="application/json" id="report-data">@@DATA@@</script>
@@TREES@@
<script>@@SCRIPT@@</script>
</body>
</html>
"""

_APP_JS = r"""
(function () {
  "use strict";
  var D = JSON.parse(document.getElementById("report-data").textContent);
  var C = D.chart;
  var UNITS = ["B", "KiB", "MiB", "GiB", "TiB", "PiB", "EiB"];
  // zxmem.views.report_html.format_binary.
  function fmtBytes(b) {
    if (b === null || b === undefined) return "-";
    if (b < 0) return "-" + fmtBytes(-b);
    if (b < 1024) return b + " B";
    var i = 0, v = b;
    while (v >= 1024 && i < UNITS.length - 1) { v /= 1024; i++; }
    var digits = v >= 100 ? 0 : v >= 10 ? 1 : 2;
    return v.toFixed(digits) + " " + UNITS[i];
  }
  window.zxmemFmtBytes = fmtBytes;
  function pad(x) { return (x < 10 ? "0" : "") + x; }
  function fmtTime(s) {
    if (s === null || s === undefined) return "-";
    var d = new Date(s * 1000);
    return d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + ":" + pad(d.getUTCSeconds());
  }
  function el(tag, text, cls) {
    var e = document.createElement(tag);
    if (text !== null && text !== undefined) e.textContent = text;
    if (cls) e.className = cls;
    return e;
  }

  var meta = D.meta || {};
  var parts = [];
  ["store", "host", "from", "to", "samples"].forEach(function (k) {
    if (meta[k]) parts.push(k + ": " + meta[k]);
  });
  document.getElementById("meta").textContent = parts.join(" \u00b7 ");
  var notes = document.getElementById("notes");
  (D.notes || []).forEach(function (n) { notes.appendChild(el("li", n)); });

  var PALETTE = ["#4e79a7", "#f28e2b", "#e15759", "#76b7b2", "#59a14f", "#edc948", "#b07aa1",
                 "#ff9da7", "#9c755f", "#86bcb6", "#8cd17d", "#d4a6c8", "#fabfd2", "#b6992d"];
  var byteIncrs = [];
  for (var p = 0; p < 60; p++) byteIncrs.push(Math.pow(2, p));
  var charts = [];
  var X = C.times_s;
  var moments = D.moments || [];

  // Time axes in UTC, as the legend and the moments table.
  function utc(ts) { return uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"); }
  function fromZero(u, min, max) { return [0, max > 0 ? max * 1.05 : 1]; }
  function width() { return Math.max(400, Math.min(1280, document.body.clientWidth - 8)); }

  // Markers on every time axis: OOM kills (red) and the moments (grey ticks).
  function drawMarks(u) {
    var ctx = u.ctx, top = u.bbox.top, h = u.bbox.height;
    ctx.save();
    ctx.setLineDash([]);  // uPlot leaves the last series' dash (the dashed total)
    ctx.textAlign = "left";
    (C.oom || []).forEach(function (ev) {
      var x = u.valToPos(ev.time_s, "x", true);
      ctx.strokeStyle = "#d00";
      ctx.lineWidth = 2 * devicePixelRatio;
      ctx.beginPath(); ctx.moveTo(x, top); ctx.lineTo(x, top + h); ctx.stroke();
      ctx.fillStyle = "#d00";
      ctx.font = (11 * devicePixelRatio) + "px sans-serif";
      ctx.fillText("OOM \u00d7" + ev.kills, x + 3, top + 12 * devicePixelRatio);
    });
    moments.forEach(function (m) {
      var x = u.valToPos(m.time_s, "x", true);
      ctx.strokeStyle = "#666";
      ctx.lineWidth = devicePixelRatio;
      ctx.beginPath(); ctx.moveTo(x, top + h); ctx.lineTo(x, top + h - 8 * devicePixelRatio);
      ctx.stroke();
    });
    ctx.restore();
  }

  // A stacked area chart: series[0] at the bottom.  uPlot draws series in
  // order, so the cumulative sums go top first, each filled down to 0 over
  // the ones below; the legend and hover show each series' own value.
  function stacked(target, title, series, totalLabel, totals) {
    var n = X.length, cum = [], acc = new Array(n).fill(0), i, j;
    for (j = 0; j < series.length; j++) {
      var col = new Array(n);
      for (i = 0; i < n; i++) {
        var v = series[j].values[i];
        if (v === null || acc[i] === null) { acc[i] = null; col[i] = null; }
        else { acc[i] += v; col[i] = acc[i]; }
      }
      cum.push(col);
    }
    var data = [X], opts = {
      title: title, width: width(), height: 320, tzDate: utc,
      scales: {x: {time: true}, y: {range: fromZero}},
      axes: [{}, {size: 80, incrs: byteIncrs,
                  values: function (u, vals) { return vals.map(fmtBytes); }}],
      series: [{label: "time (UTC)", value: function (u, v) { return fmtTime(v); }}],
      hooks: {draw: [drawMarks]},
      cursor: {points: {show: false}},
    };
    for (j = series.length - 1; j >= 0; j--) {
      (function (s, colour) {
        opts.series.push({
          label: s.label, stroke: colour, fill: colour, width: 1,
          value: function (u, v, si, idx) {
            return idx === null || idx === undefined ? "-" : fmtBytes(s.values[idx]);
          },
        });
      })(series[j], PALETTE[j % PALETTE.length]);
      data.push(cum[j]);
    }
    if (totals) {
      opts.series.push({
        label: totalLabel, stroke: "#000", width: 1, dash: [4, 3], points: {show: false},
        value: function (u, v) { return fmtBytes(v); },
      });
      data.push(totals);
    }
    var div = document.getElementById(target);
    var u = new uPlot(opts, data, div);
    u.over.addEventListener("click", function (ev) {
      var r = u.over.getBoundingClientRect();
      pickNearest(u.posToVal(ev.clientX - r.left, "x"));
    });
    charts.push(u);
    return u;
  }

  stacked("chart-jobs", "PSS by job", C.jobs, "total PSS", C.totals);
  stacked("chart-processes", "PSS by process", C.processes, "total PSS", C.totals);
  if (C.system.length) {
    stacked("chart-system", "All memory (MemTotal) by use", C.system, null, null);
  } else {
    document.getElementById("chart-system").textContent =
      "No kernel totals in this store.";
  }

  // Pressure: PSI some and full, the share of each interval between drawn
  // samples that tasks stalled on memory; OOM kills: red marks on every
  // chart, and their count at each drawn sample in this chart's legend.
  var oom = C.oom || [];
  var evNote = [];
  if (oom.length) {
    var kills = oom.reduce(function (a, ev) { return a + ev.kills; }, 0);
    evNote.push(kills + " OOM kill(s) at " + oom.length + " sample(s), marked in red on " +
      "every chart: " + oom.slice(0, 10).map(function (ev) {
        return fmtTime(ev.time_s) + " \u00d7" + ev.kills;
      }).join(", ") + (oom.length > 10 ? ", \u2026" : "") + ".");
  } else {
    evNote.push(C.oom_points ? "No OOM kills." : "No OOM-kill counter in this store.");
  }
  var pressure = C.pressure || [];
  if (pressure.length) {
    evNote.push("Pressure (PSI): the share of the time since the sample before that some " +
      "task (some) or every non-idle task (full) stalled on memory.");
  }
  document.getElementById("events-note").textContent = evNote.join(" ");
  if (pressure.length || C.oom_points) {
    var pct = function (u, v) { return v === null || v === undefined ? "-" : v.toFixed(2) + " %"; };
    var pdata = [X], popts = {
      title: "Memory pressure (PSI) and OOM kills", width: width(), height: 200, tzDate: utc,
      // Up to a quarter above the highest value (at least 1 %, at most 100 %):
      // PSI is mostly a few percent, invisible on a 0-100 % axis.
      scales: {x: {time: true},
               y: {range: function (u, min, max) {
                 return [0, Math.min(100, Math.max(1, (max || 0) * 1.25))]; }},
               oom: {range: function (u, min, max) { return [0, Math.max(1, max)]; }}},
      axes: [{}, {size: 80, values: function (u, vals) {
        return vals.map(function (v) { return v + " %"; }); }}],
      series: [{label: "time (UTC)", value: function (u, v) { return fmtTime(v); }}],
      hooks: {draw: [drawMarks]},
    };
    var PCOL = [["#d00", "rgba(221,0,0,0.15)"], ["#800080", "rgba(128,0,128,0.15)"]];
    pressure.forEach(function (s, j) {
      popts.series.push({label: s.label, stroke: PCOL[j % 2][0], fill: PCOL[j % 2][1],
                         width: 1, value: pct});
      pdata.push(s.values);
    });
    if (C.oom_points) {
      var op = C.oom_points;
      popts.series.push({
        label: "OOM kills (since the sample before)", scale: "oom", stroke: "#d00",
        // No line and no dots (a dot would read as a pressure value): the red
        // marks are drawn by drawMarks; the legend gives the count on hover.
        paths: function () { return null; }, points: {show: false},
        value: function (u, v, si, idx) {
          return idx === null || idx === undefined ? "-" : String(op[idx]);
        },
      });
      pdata.push(op.map(function (k) { return k > 0 ? k : null; }));
    }
    charts.push(new uPlot(popts, pdata, document.getElementById("chart-pressure")));
  } else {
    document.getElementById("chart-pressure").textContent =
      "No memory pressure or OOM-kill counters in this store.";
  }

  // --- growth table -----------------------------------------------------------
  var G = D.growth;
  var gnote = document.getElementById("growth-note");
  var gtable = document.getElementById("growth");
  if (!G) {
    gnote.textContent = "No growth analysis in this page.";
  } else if (!G.length) {
    gnote.textContent = "Nothing grew.";
  } else {
    gnote.textContent = "What grew (zxmem growth): processes then jobs, leaks first, then " +
      "fastest first.  The rate is the median slope between samples (Theil-Sen); R\u00b2 " +
      "says how close to a straight line it grew; steady: the lowest values kept rising " +
      "(a leak's shape, not a cache filling once or a garbage collector's sawtooth).  " +
      "The signal is USS (private memory) for a process.";
    var heads = ["kind", "key", "name", "signal", "rate / hour", "R\u00b2", "steady",
                 "verdict", "growth since (UTC)", "high water", "at (UTC)", "first", "last",
                 "objects that grew"];
    var htr = el("tr");
    heads.forEach(function (h) { htr.appendChild(el("th", h)); });
    gtable.tHead.appendChild(htr);
    G.forEach(function (s) {
      var tr = el("tr");
      function td(t, cls) { tr.appendChild(el("td", t, cls)); }
      td(s.kind); td(s.key); td(s.name, "name");
      td(s.signal === null || s.signal === undefined ? "" : String(s.signal));
      td(s.rate_bytes_per_hour === null || s.rate_bytes_per_hour === undefined ? "-"
         : (s.rate_bytes_per_hour >= 0 ? "+" : "") + fmtBytes(Math.round(s.rate_bytes_per_hour)),
         "num");
      td(s.fit_r2 === null || s.fit_r2 === undefined ? "-" : s.fit_r2.toFixed(3), "num");
      td(s.steady ? "yes" : "no");
      td((s.leak ? "LEAK" : "not a leak") + (s.why ? ": " + s.why : ""), s.leak ? "leak" : "");
      td(s.growth_start_ns ? fmtTime(s.growth_start_ns / 1e9) : "-");
      td(fmtBytes(s.high_water_bytes), "num");
      td(s.high_water_ns ? fmtTime(s.high_water_ns / 1e9) : "-");
      td(fmtBytes(s.first_bytes), "num"); td(fmtBytes(s.last_bytes), "num");
      var objs = (s.objects || []).map(function (o) {
        if (o && typeof o === "object") {
          var r = o.rate_bytes_per_hour;
          return String(o.name !== undefined ? o.name : o.key) +
            (typeof r === "number" ? " (+" + fmtBytes(Math.round(r)) + "/h)" : "");
        }
        return String(o);
      });
      td(objs.join("; "), "name");
      gtable.tBodies[0].appendChild(tr);
    });
  }

  // --- moments: treemap and diff --------------------------------------------
  var mbody = document.querySelector("#moments tbody");
  var pickedA = moments.length ? 0 : -1, pickedB = moments.length - 1, shownMoment = -1;
  function radio(name, k, checked, onpick) {
    var r = document.createElement("input");
    r.type = "radio"; r.name = name; r.value = String(k); r.checked = checked;
    r.setAttribute("aria-label", name + " " + moments[k].time);
    r.addEventListener("change", onpick);
    return r;
  }
  moments.forEach(function (m, k) {
    var tr = el("tr");
    tr.setAttribute("data-k", String(k));
    tr.appendChild(el("td", String(m.sample), "num"));
    tr.appendChild(el("td", m.time));
    tr.appendChild(el("td", m.tier));
    tr.appendChild(el("td", fmtBytes(m.total_bytes), "num"));
    var b = el("button", "show");
    b.type = "button";
    b.className = "show-treemap";
    b.addEventListener("click", function () { showMoment(k); });
    var t1 = el("td"); t1.appendChild(b); tr.appendChild(t1);
    var ta = el("td");
    ta.appendChild(radio("A", k, k === pickedA, function () { pickedA = k; showDiff(); }));
    tr.appendChild(ta);
    var tb = el("td");
    tb.appendChild(radio("B", k, k === pickedB, function () { pickedB = k; showDiff(); }));
    tr.appendChild(tb);
    mbody.appendChild(tr);
  });

  function pickNearest(t) {
    if (!moments.length) return;
    var best = 0;
    for (var k = 1; k < moments.length; k++) {
      if (Math.abs(moments[k].time_s - t) < Math.abs(moments[best].time_s - t)) best = k;
    }
    showMoment(best);
    document.getElementById("treemap-title").scrollIntoView({block: "nearest"});
  }

  // The treemap: the tree of zxmem.views.treemap_html.tree_payload, parsed
  // when its moment is first picked; zoom by clicking, out by the path.
  var mapEl = document.getElementById("treemap"), tip = document.getElementById("tip");
  var crumbs = document.getElementById("crumbs");
  var cache = {}, nodes = null, current = null, shown = [];
  function loadTree(k) {
    if (cache[k]) return cache[k];
    var T = JSON.parse(document.getElementById("tree-" + k).textContent);
    var n = T.name.length, list = new Array(n), open = [], i;
    for (i = 0; i < n; i++) {
      var nd = {name: T.strings[T.name[i]], type: T.type.charAt(i), kind: T.kind.charAt(i),
                area: T.area[i], koid: T.koid[i], parent: null, children: [], self: 0,
                value: 0};
      list[i] = nd;
      while (open.length && open[open.length - 1][1] === 0) open.pop();
      if (open.length) {
        var top = open[open.length - 1];
        top[1]--; nd.parent = top[0]; top[0].children.push(nd);
      }
      if (T.nkids[i]) open.push([nd, T.nkids[i]]);
    }
    for (i = n - 1; i >= 0; i--) {
      var x = list[i], covered = 0, c;
      for (c = 0; c < x.children.length; c++) covered += Math.max(x.children[c].area || 0, 0);
      x.self = Math.max(0, Math.max(x.area || 0, 0) - covered);
      x.value = x.self;
      for (c = 0; c < x.children.length; c++) x.value += x.children[c].value;
    }
    cache[k] = list;
    return list;
  }
  function label(nd) {
    var name = nd.name === "" || nd.name === "<unnamed>" ? "UNNAMED [koid " + nd.koid + "]"
      : nd.name;
    return (nd.type !== "-" ? nd.type + " " : "") + name;
  }
  function drawTree() {
    var W = mapEl.clientWidth, H = mapEl.clientHeight;
    var scale = current.value > 0 ? (W * H) / current.value : 0;
    function split(d) { return d.children.length > 0 && d.value * scale >= 400; }
    var h = d3.hierarchy(current, function (d) { return split(d) ? d.children : null; })
      .sum(function (d) { return split(d) ? d.self : d.value; });
    d3.treemap().tile(d3.treemapSquarify).size([W, H]).paddingOuter(2).paddingInner(1)
      .paddingTop(function (d) { return (d.y1 - d.y0) > 36 && (d.x1 - d.x0) > 40 ? 16 : 2; })(h);
    var frag = document.createDocumentFragment(), queue = [h], head = 0;
    shown = [];
    while (head < queue.length && shown.length < 2000) {
      var d = queue[head++], w = d.x1 - d.x0, hh = d.y1 - d.y0;
      if (w < 4 || hh < 4) continue;
      var box = el("div", null, "box k-" + d.data.kind);
      box.style.left = d.x0 + "px"; box.style.top = d.y0 + "px";
      box.style.width = w + "px"; box.style.height = hh + "px";
      box.setAttribute("data-i", String(shown.length));
      if (hh >= 14 && w >= 24) box.appendChild(el("span", label(d.data) + " (" +
        fmtBytes(d.data.area) + ")"));
      shown.push(d.data);
      frag.appendChild(box);
      if (d.children) for (var c = 0; c < d.children.length; c++) queue.push(d.children[c]);
    }
    mapEl.replaceChildren(frag);
    var path = [], a;
    for (a = current; a; a = a.parent) path.unshift(a);
    var cf = document.createDocumentFragment();
    path.forEach(function (nd, j) {
      if (j) cf.appendChild(el("span", " \u203a "));
      var e;
      if (nd === current) { e = el("span", null); e.setAttribute("aria-current", "location"); }
      else {
        e = el("button", null); e.type = "button";
        e.addEventListener("click", function () { current = nd; drawTree(); });
      }
      e.textContent = label(nd) + " (" + fmtBytes(nd.area) + ")";
      cf.appendChild(e);
    });
    crumbs.replaceChildren(cf);
  }
  function boxNode(t) {
    var b = t && t.closest ? t.closest(".box") : null;
    return b ? shown[+b.getAttribute("data-i")] : null;
  }
  mapEl.addEventListener("click", function (ev) {
    var nd = boxNode(ev.target);
    if (!nd) return;
    if (nd === current) { if (current.parent) { current = current.parent; drawTree(); } return; }
    current = nd.children.length ? nd : (nd.parent || nd);
    drawTree();
  });
  mapEl.addEventListener("mousemove", function (ev) {
    var nd = boxNode(ev.target);
    if (!nd) { tip.style.display = "none"; return; }
    var f = document.createDocumentFragment();
    f.appendChild(el("div", label(nd)));
    f.appendChild(el("div", nd.area === null ? "size unknown"
      : fmtBytes(nd.area) + " (" + nd.area + " bytes)"));
    tip.replaceChildren(f);
    tip.style.display = "block";
    tip.style.left = (ev.clientX + 14) + "px";
    tip.style.top = (ev.clientY + 16) + "px";
  });
  mapEl.addEventListener("mouseleave", function () { tip.style.display = "none"; });

  function showMoment(k) {
    shownMoment = k;
    nodes = loadTree(k);
    current = nodes[0];
    var m = moments[k];
    document.getElementById("treemap-title").textContent = "Treemap of sample " + m.sample +
      " (" + m.time + ", " + m.tier + ")";
    mbody.querySelectorAll("tr").forEach(function (tr) {
      tr.classList.toggle("picked", tr.getAttribute("data-k") === String(k));
    });
    drawTree();
  }

  var diffEl = document.getElementById("diff");
  var KINDS = {job: "Jobs (PSS)", process: "Processes (PSS)", object: "Memory objects (resident)"};
  function showDiff() {
    var title = document.getElementById("diff-title");
    if (pickedA < 0 || pickedB < 0 || pickedA === pickedB) {
      title.textContent = "Changes between two moments";
      diffEl.replaceChildren(el("p", "Pick two different moments (A and B).", "hint"));
      return;
    }
    var a = Math.min(pickedA, pickedB), b = Math.max(pickedA, pickedB);
    var ma = moments[a], mb = moments[b];
    title.textContent = "Changes from sample " + ma.sample + " (" + ma.time + ") to sample " +
      mb.sample + " (" + mb.time + ")";
    var d = D.diffs[a + "-" + b], frag = document.createDocumentFragment();
    Object.keys(KINDS).forEach(function (kind) {
      var part = d[kind];
      if (!part) return;
      var shown_ = part.rows.length;
      frag.appendChild(el("h3", KINDS[kind] + ": " + part.count + " changed" +
        (part.count > shown_ ? " (the " + shown_ + " largest shown)" : "")));
      if (!shown_) return;
      var t = el("table", null, "rows diff-" + kind), hr = el("tr");
      ["change", "before", "after", "", "key", "name"].forEach(function (h) {
        hr.appendChild(el("th", h)); });
      var th = el("thead"); th.appendChild(hr); t.appendChild(th);
      var tb = el("tbody");
      part.rows.forEach(function (r) {
        var tr = el("tr");
        tr.appendChild(el("td", (r[5] > 0 ? "+" : "") + fmtBytes(r[5]),
                          "num " + (r[5] > 0 ? "grew" : "shrank")));
        tr.appendChild(el("td", fmtBytes(r[3]), "num"));
        tr.appendChild(el("td", fmtBytes(r[4]), "num"));
        tr.appendChild(el("td", r[2]));
        tr.appendChild(el("td", r[0]));
        tr.appendChild(el("td", r[1], "name"));
        tb.appendChild(tr);
      });
      t.appendChild(tb);
      frag.appendChild(t);
    });
    diffEl.replaceChildren(frag);
  }

  if (moments.length) showMoment(moments.length - 1);
  showDiff();
  var pending = false;
  window.addEventListener("resize", function () {
    if (pending) return;
    pending = true;
    requestAnimationFrame(function () {
      pending = false;
      charts.forEach(function (u) { u.setSize({width: width(), height: u.height}); });
      if (current) drawTree();
    });
  });
  document.documentElement.setAttribute("data-ready", String(performance.now()));
})();
"""
