"""The HTML report's inline stylesheet and script (no network at view time: no CDN, no fonts).

The script reads the JSON document in ``<script type="application/json" id="xt-data">`` and
draws every chart as inline SVG; tables are rendered server-side and made sortable here.
When it finishes it sets ``data-rendered="1"`` on ``<body>``; any script error is recorded in
``data-js-errors``.
"""

from __future__ import annotations

CSS = r"""
:root { --fg:#1d2327; --muted:#5f6b73; --line:#d6dde1; --bg:#ffffff; --panel:#f6f8f9;
        --accent:#1565c0; }
* { box-sizing: border-box; }
body { margin: 0; font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif;
       color: var(--fg); background: var(--bg); }
header { padding: 18px 28px 10px; border-bottom: 1px solid var(--line); background: var(--panel); }
header h1 { margin: 0 0 4px; font-size: 20px; }
header .sub { color: var(--muted); font-size: 13px; word-break: break-all; }
nav { padding: 6px 28px; border-bottom: 1px solid var(--line); font-size: 13px; }
nav a { margin-right: 14px; color: var(--accent); text-decoration: none; }
main { padding: 8px 28px 40px; max-width: 1400px; }
section { margin: 22px 0 30px; }
h2 { font-size: 17px; margin: 0 0 6px; border-bottom: 1px solid var(--line); padding-bottom: 4px; }
p.note { color: var(--muted); margin: 2px 0 10px; font-size: 13px; }
.kv { display: grid; grid-template-columns: max-content auto; gap: 2px 18px; font-size: 13px; }
.kv dt { color: var(--muted); } .kv dd { margin: 0; }
.chart { width: 100%; overflow-x: auto; }
.chart svg { display: block; width: 100%; height: auto; font-size: 11px; }
.legend { display: flex; flex-wrap: wrap; gap: 4px 14px; font-size: 12px; margin: 4px 0 0; }
.legend span.sw { display: inline-block; width: 11px; height: 11px; margin-right: 4px;
                  vertical-align: -1px; border-radius: 2px; }
table { border-collapse: collapse; font-size: 12.5px; margin: 6px 0 12px; }
th, td { padding: 3px 9px; border-bottom: 1px solid var(--line); text-align: right;
         white-space: nowrap; }
th { background: var(--panel); cursor: pointer; user-select: none; position: sticky; top: 0; }
th.sorted-asc::after { content: " \25B2"; font-size: 9px; }
th.sorted-desc::after { content: " \25BC"; font-size: 9px; }
td.l, th.l { text-align: left; }
td.mono { font-family: ui-monospace, "SFMono-Regular", Menlo, Consolas, monospace; }
.bar { display: inline-block; height: 9px; background: var(--accent); opacity: .55;
       vertical-align: middle; margin-left: 6px; }
.warn { color: #8a4b00; } .empty { color: var(--muted); font-style: italic; }
.tablewrap { max-height: 520px; overflow: auto; display: inline-block; max-width: 100%; }
.banner { margin: 0; padding: 10px 28px; background: #fdecea; color: #611a15;
          border-bottom: 2px solid #e57373; font-size: 14px; }
"""

JS = r"""
(function () {
  "use strict";
  var body = document.body;
  window.addEventListener("error", function (e) {
    var prev = body.getAttribute("data-js-errors") || "";
    body.setAttribute("data-js-errors", prev + (prev ? " | " : "") + (e.message || "error"));
  });
  var D = JSON.parse(document.getElementById("xt-data").textContent);
  var NS = "http://www.w3.org/2000/svg";
  var PALETTE = ["#1565c0", "#ef6c00", "#2e7d32", "#6a1b9a", "#c62828", "#00838f", "#ad1457",
                 "#827717", "#4e342e", "#283593", "#558b2f", "#5d4037", "#00695c", "#9e9d24",
                 "#37474f"];
  var STATE_COLORS = D.state_colors;
  var LOST_MARK = "#000000";  // lost-record marks: a colour no data series uses

  function el(tag, attrs, parent, text) {
    var e = document.createElementNS(NS, tag);
    for (var k in attrs) { if (Object.prototype.hasOwnProperty.call(attrs, k)) {
      e.setAttribute(k, attrs[k]); } }
    if (text !== undefined) { e.textContent = text; }
    if (parent) { parent.appendChild(e); }
    return e;
  }
  function tip(node, text) { el("title", {}, node, text); return node; }
  function svgIn(id, w, h) {
    var host = document.getElementById(id);
    var s = el("svg", {viewBox: "0 0 " + w + " " + h, width: w, height: h,
                       preserveAspectRatio: "xMinYMin meet", role: "img"}, host);
    return s;
  }
  function fmtInt(n) { return Math.round(n).toLocaleString("en-US"); }
  function fmtS(s) {
    if (s === 0) { return "0"; }
    var a = Math.abs(s);
    if (a >= 1) { return s.toFixed(a >= 100 ? 0 : 2) + " s"; }
    if (a >= 1e-3) { return (s * 1e3).toFixed(a >= 0.1 ? 0 : 1) + " ms"; }
    return (s * 1e6).toFixed(0) + " \u00b5s";
  }
  function niceStep(span, n) {
    var raw = span / Math.max(1, n), p = Math.pow(10, Math.floor(Math.log10(raw)));
    var m = raw / p;
    return (m < 1.5 ? 1 : m < 3.5 ? 2 : m < 7.5 ? 5 : 10) * p;
  }
  function timeAxis(s, x0, x1, y, t0, t1) {
    var step = niceStep(t1 - t0, 8);
    el("line", {x1: x0, x2: x1, y1: y, y2: y, stroke: "#9aa5ab"}, s);
    for (var t = Math.ceil(t0 / step) * step; t <= t1 + 1e-12; t += step) {
      var x = x0 + (t - t0) / (t1 - t0 || 1) * (x1 - x0);
      el("line", {x1: x, x2: x, y1: y, y2: y + 4, stroke: "#9aa5ab"}, s);
      el("text", {x: x, y: y + 15, "text-anchor": "middle", fill: "#5f6b73"}, s, fmtS(t));
    }
  }
  // a state's fill: "#rrggbb", or "hatch:STRIPE:BACKGROUND" (an SVG pattern / CSS gradient)
  function hatch(spec) { var p = spec.split(":"); return p[0] === "hatch" ? p : null; }
  function svgFill(s, spec) {
    var h = hatch(spec);
    if (!h) { return spec; }
    var id = "xt-hatch-" + h[1].slice(1) + "-" + h[2].slice(1);
    if (!s.querySelector("#" + id)) {
      var defs = s.querySelector("defs") || el("defs", {}, s);
      var pat = el("pattern", {id: id, width: 5, height: 5, patternUnits: "userSpaceOnUse",
                               patternTransform: "rotate(45)"}, defs);
      el("rect", {width: 5, height: 5, fill: h[2]}, pat);
      el("rect", {width: 2, height: 5, fill: h[1]}, pat);
    }
    return "url(#" + id + ")";
  }
  function cssFill(spec) {
    var h = hatch(spec);
    return h ? "repeating-linear-gradient(45deg, " + h[1] + " 0 2px, " + h[2] + " 2px 5px)"
             : spec;
  }
  function legend(id, items) {
    var host = document.getElementById(id);
    var box = document.createElement("div");
    box.className = "legend";
    items.forEach(function (it) {
      var span = document.createElement("span");
      var sw = document.createElement("span");
      sw.className = "sw";
      sw.style.background = cssFill(it[1]);
      if (it[2]) { sw.style.border = "1px solid #9aa5ab"; }
      span.appendChild(sw);
      span.appendChild(document.createTextNode(it[0]));
      box.appendChild(span);
    });
    host.appendChild(box);
  }
  // ---- runstate timeline ------------------------------------------------------------------
  function drawTimeline() {
    var T = D.timeline, id = "chart-timeline";
    if (!document.getElementById(id)) { return; }
    var W = 1000, L = 120, R = 10, RH = 16, GAP = 4, top = 26;
    var H = top + T.vcpus.length * (RH + GAP) + 24;
    var s = svgIn(id, W, H);
    var nb = T.bins, bw = (W - L - R) / nb, t0 = T.t0, t1 = T.t1, used = {};
    // lost-record markers across the top
    if ((D.lost || []).length) {
      el("text", {x: L - 6, y: 14, "text-anchor": "end", fill: LOST_MARK}, s, "lost records");
    }
    (D.lost || []).forEach(function (m) {
      var x = L + (m.t - t0) / (t1 - t0 || 1) * (W - L - R);
      tip(el("path", {d: "M" + (x - 4) + ",6 L" + (x + 4) + ",6 L" + x + ",16 Z",
                       fill: LOST_MARK, "class": "lost-marker"}, s),
          "pCPU " + m.cpu + ": " + fmtInt(m.count) + " records lost at " + fmtS(m.t));
    });
    T.vcpus.forEach(function (v, r) {
      var y = top + r * (RH + GAP);
      el("text", {x: L - 6, y: y + RH - 4, "text-anchor": "end"}, s, v.label);
      var g = el("g", {"class": "vcpu-row", "data-vcpu": v.label}, s);
      el("rect", {x: L, y: y, width: W - L - R, height: RH, fill: "#f1f3f4"}, g);
      v.segs.forEach(function (sg) {
        // [first bin, end bin, state index, y offset, height] as fractions of the row
        var st = T.states[sg[2]];
        used[st] = true;
        tip(el("rect", {x: L + sg[0] * bw, y: y + RH * sg[3], width: (sg[1] - sg[0]) * bw,
                        height: RH * sg[4], fill: svgFill(s, STATE_COLORS[st]),
                        "class": "rs rs-" + st}, g),
            v.label + " " + st + " " + (sg[4] * 100).toFixed(0) + "% of " +
            fmtS(t0 + sg[0] * T.bin_s) + "\u2013" + fmtS(t0 + sg[1] * T.bin_s));
      });
    });
    timeAxis(s, L, W - R, H - 20, t0, t1);
    legend(id, T.states.filter(function (st) { return used[st]; }).map(function (st) {
      return [st, STATE_COLORS[st], st === "unknown"]; }));
  }

  // ---- hypercall mix per vCPU -----------------------------------------------------------------
  function drawHypercalls() {
    var Hc = D.hypercalls, id = "chart-hypercalls";
    if (!document.getElementById(id)) { return; }
    var W = 1000, L = 120, R = 90, RH = 18, GAP = 6;
    var H = Hc.vcpus.length * (RH + GAP) + 8;
    var s = svgIn(id, W, H);
    var color = {};
    Hc.names.forEach(function (n, i) { color[n] = n === "other" ? "#b0bec5"
                                                 : PALETTE[i % PALETTE.length]; });
    Hc.vcpus.forEach(function (v, r) {
      var y = 4 + r * (RH + GAP), x = L, tot = v.total || 1;
      el("text", {x: L - 6, y: y + RH - 5, "text-anchor": "end"}, s, v.label);
      var g = el("g", {"class": "hc-row", "data-vcpu": v.label}, s);
      Hc.names.forEach(function (n) {
        var c = v.counts[n] || 0;
        if (!c) { return; }
        var w = (W - L - R) * c / tot;
        tip(el("rect", {x: x, y: y, width: w, height: RH, fill: color[n], "class": "hc-seg"}, g),
            v.label + " " + n + ": " + fmtInt(c) + " (" + (100 * c / tot).toFixed(1) + "%)");
        x += w;
      });
      el("text", {x: W - R + 6, y: y + RH - 5, fill: "#5f6b73"}, s, fmtInt(v.total));
    });
    legend(id, Hc.names.map(function (n) { return [n, color[n]]; }));
  }

  // ---- PV event rates over time ----------------------------------------------------------------
  function drawRates() {
    var Rt = D.rates, id = "chart-rates";
    if (!document.getElementById(id)) { return; }
    var W = 1000, H = 300, L = 70, R = 10, T0 = 10, B = 30;
    var s = svgIn(id, W, H);
    var nb = Rt.bins, max = 0;
    Rt.series.forEach(function (se) { se.values.forEach(function (v) {
      if (v / Rt.bin_s > max) { max = v / Rt.bin_s; } }); });
    max = max || 1;
    var step = niceStep(max, 5);
    for (var yv = 0; yv <= max + 1e-9; yv += step) {
      var yy = H - B - (yv / max) * (H - B - T0);
      el("line", {x1: L, x2: W - R, y1: yy, y2: yy, stroke: "#eceff1"}, s);
      el("text", {x: L - 6, y: yy + 4, "text-anchor": "end", fill: "#5f6b73"}, s,
         fmtInt(yv) + "/s");
    }
    // bins with lost records: light grey bands behind the lines
    var bw = (W - L - R) / nb;
    (D.lost_bins || []).forEach(function (lb) {
      tip(el("rect", {x: L + lb[0] * bw, y: T0, width: Math.max(bw, 1), height: H - B - T0,
                      fill: LOST_MARK, "fill-opacity": 0.1, "class": "lost-bin"}, s),
          fmtInt(lb[1]) + " records lost (" + fmtInt(lb[2]) + " lost-records markers) at " +
          fmtS(Rt.t0 + lb[0] * Rt.bin_s));
    });
    Rt.series.forEach(function (se, k) {
      var pts = [];
      for (var i = 0; i < nb; i++) {
        var x = L + (i + 0.5) / nb * (W - L - R);
        var y = H - B - (se.values[i] / Rt.bin_s / max) * (H - B - T0);
        pts.push(x.toFixed(1) + "," + y.toFixed(1));
      }
      var c = PALETTE[k % PALETTE.length];
      tip(el("polyline", {points: pts.join(" "), fill: "none", stroke: c, "stroke-width": 1.6,
                          "class": "rate-line", "data-series": se.name}, s),
          se.name + ": " + fmtInt(se.total) + " records");
    });
    timeAxis(s, L, W - R, H - B, Rt.t0, Rt.t1);
    var items = Rt.series.map(function (se, k) {
      return [se.name + " (" + fmtInt(se.total) + ")", PALETTE[k % PALETTE.length]]; });
    if ((D.lost_bins || []).length) { items.push(["lost records", "#e6e6e6", true]); }
    legend(id, items);
  }

  // ---- horizontal bars (page-fault error codes) ------------------------------------------------
  function drawBars(id, rows) {
    if (!document.getElementById(id) || !rows || !rows.length) { return; }
    var W = 1000, L = 230, R = 110, RH = 16, GAP = 5;
    var H = rows.length * (RH + GAP) + 6, max = 0;
    rows.forEach(function (r) { if (r.count > max) { max = r.count; } });
    var s = svgIn(id, W, H), tot = 0;
    rows.forEach(function (r) { tot += r.count; });
    rows.forEach(function (r, i) {
      var y = 3 + i * (RH + GAP), w = (W - L - R) * r.count / (max || 1);
      el("text", {x: L - 6, y: y + RH - 4, "text-anchor": "end"}, s, r.label);
      tip(el("rect", {x: L, y: y, width: Math.max(w, 0.5), height: RH,
                      fill: PALETTE[0], "class": "bar-" + id}, s),
          r.label + ": " + fmtInt(r.count));
      el("text", {x: L + w + 6, y: y + RH - 4, fill: "#5f6b73"}, s,
         fmtInt(r.count) + " (" + (100 * r.count / (tot || 1)).toFixed(1) + "%)");
    });
  }

  // ---- sortable tables ----------------------------------------------------------------
  var HEX = /^0x[0-9a-f]+$/i;
  function compare(x, y) {
    if (HEX.test(x) && HEX.test(y)) {  // 64-bit addresses: exact, by digits (no float)
      var a = x.slice(2).toLowerCase().replace(/^0+/, ""), b = y.slice(2).toLowerCase()
        .replace(/^0+/, "");
      return a.length !== b.length ? a.length - b.length : (a < b ? -1 : a > b ? 1 : 0);
    }
    var nx = Number(x), ny = Number(y);
    if (x !== "" && y !== "" && !isNaN(nx) && !isNaN(ny)) { return nx - ny; }
    return String(x).localeCompare(String(y));
  }
  function sortable() {
    Array.prototype.forEach.call(document.querySelectorAll("table.sortable"), function (t) {
      var heads = t.tHead ? t.tHead.rows[0].cells : [];
      Array.prototype.forEach.call(heads, function (th, col) {
        th.addEventListener("click", function () {
          var asc = !th.classList.contains("sorted-asc");
          Array.prototype.forEach.call(heads, function (h) {
            h.classList.remove("sorted-asc", "sorted-desc"); });
          th.classList.add(asc ? "sorted-asc" : "sorted-desc");
          var rows = Array.prototype.slice.call(t.tBodies[0].rows);
          rows.sort(function (a, b) {
            var x = a.cells[col].getAttribute("data-v") || a.cells[col].textContent;
            var y = b.cells[col].getAttribute("data-v") || b.cells[col].textContent;
            return asc ? compare(x, y) : -compare(x, y);
          });
          rows.forEach(function (r) { t.tBodies[0].appendChild(r); });
        });
      });
    });
  }

  drawTimeline();
  drawHypercalls();
  drawRates();
  drawBars("chart-pfec", D.pfec);
  sortable();
  body.setAttribute("data-rendered", "1");
})();
"""
