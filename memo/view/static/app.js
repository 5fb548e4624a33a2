// memo view: the page. It keeps every record of the file, asks the server for the new ones
// every half second, and filters, sorts, pages and draws them here. No library but Vega
// (served by memo view itself, from the installed vl-convert package).
// Everything is inside one function: the Vega bundle declares names at the top level.
(() => {
"use strict";

const POLL_MS = 500;
const MAX_LINES = 10000;         // parallel coordinates: lines drawn at most (an even sample)
const CHART_EVERY_MS = 900;      // the chart is redrawn at most this often while records arrive
const OUTPUT_NAMES = new Set(["status", "error_type", "error_message", "error_traceback",
  "time_taken", "time_start", "time_end"]);

const S = {
  gen: -1, total: 0, path: "", records: [], columns: [], params: null, status: {},
  meta: {}, sel: {}, metric: "", brushes: {}, filters: {}, sort: null, page: 0, pageSize: 100,
  keep: [], view: null, specKey: "", chartPending: false, chartAt: 0, started: false,
};

const $ = (id) => document.getElementById(id);
const el = (tag, attrs = {}, text) => {
  const e = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};
const svgEl = (tag, attrs = {}, text) => {
  const e = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
  if (text !== undefined) e.textContent = text;
  return e;
};

// ---- values -------------------------------------------------------------------------------

const NONFINITE = { nan: NaN, inf: Infinity, "-inf": -Infinity };

// memo writes nan/inf as null and lists them in "$nonfinite" (JSON pointers): put them back
function restore(rec) {
  const tags = rec.$nonfinite;
  if (!tags) return rec;
  for (const [pointer, kind] of Object.entries(tags)) {
    const parts = pointer.split("/").slice(1).map((p) => p.replace(/~1/g, "/").replace(/~0/g, "~"));
    let obj = rec;
    for (let i = 0; i < parts.length - 1 && obj != null; i++) obj = obj[parts[i]];
    if (obj != null && parts.length) obj[parts[parts.length - 1]] = NONFINITE[kind];
  }
  delete rec.$nonfinite;
  return rec;
}

const isNum = (v) => typeof v === "number";

function fmt(v) {
  if (v === null || v === undefined) return "";
  if (typeof v === "number") {
    if (Number.isNaN(v)) return "NaN";
    if (v === Infinity) return "inf";
    if (v === -Infinity) return "-inf";
    if (Number.isInteger(v)) return String(v);
    return Math.abs(v) >= 1e6 ? v.toExponential(4) : String(Number(v.toPrecision(5)));
  }
  if (typeof v === "object") return JSON.stringify(v);
  return String(v);
}

function compare(a, b) {        // numbers, then strings; null, undefined and NaN last
  const ma = a === null || a === undefined || Number.isNaN(a);
  const mb = b === null || b === undefined || Number.isNaN(b);
  if (ma || mb) return ma === mb ? 0 : ma ? 1 : -1;
  const na = isNum(a), nb = isNum(b);
  if (na && nb) return a - b;
  if (na !== nb) return na ? -1 : 1;
  const sa = typeof a === "object" ? JSON.stringify(a) : String(a);
  const sb = typeof b === "object" ? JSON.stringify(b) : String(b);
  return sa < sb ? -1 : sa > sb ? 1 : 0;
}

// ---- columns: kinds, parameters, metrics --------------------------------------------------

function describeColumns() {
  const meta = {};
  for (const c of S.columns) meta[c] = { numeric: true, any: false, distinct: new Set(), min: Infinity, max: -Infinity, floats: false };
  for (const r of S.records) {
    for (const c of S.columns) {
      const v = r[c], m = meta[c];
      if (v === null || v === undefined) { m.hasNull = true; continue; }
      m.any = true;
      if (typeof v === "number") {
        if (Number.isFinite(v)) { if (v < m.min) m.min = v; if (v > m.max) m.max = v; }
        if (!Number.isInteger(v)) m.floats = true;
      } else m.numeric = false;
      if (m.distinct.size <= 1000) m.distinct.add(typeof v === "object" ? JSON.stringify(v) : v);
      else m.many = true;
    }
  }
  for (const c of S.columns) {
    const m = meta[c];
    m.numeric = m.numeric && m.any;
    m.n = m.distinct.size;
    m.values = new Set(Array.from(m.distinct, catKey));
    if (m.hasNull) m.values.add(catKey(null));
  }
  S.meta = meta;
}

// records with "$memo" say which keys are arguments; otherwise guess: repeated values
function parameters() {
  if (S.params) return S.params.filter((c) => S.meta[c]);
  const n = S.records.length;
  return S.columns.filter((c) => {
    const m = S.meta[c];
    if (OUTPUT_NAMES.has(c) || !m.any) return false;
    if (m.numeric && m.floats) return m.n <= Math.max(2, n / 3) && m.n <= 50;
    return m.n <= 50 && m.n < Math.max(2, n);
  });
}

function metrics() {
  const params = new Set(parameters());
  return S.columns.filter((c) => S.meta[c].numeric && !params.has(c));
}

function varying(cols) { return cols.filter((c) => S.meta[c].n > 1); }

function defaults() {
  const params = parameters(), ms = metrics();
  // repetitions (seeds) are what the chart averages over, not what it shows
  const repeats = (c) => /^(seed|random_state|rng|rep|repeat|repetition|trial|run|replicate)s?$/i.test(c);
  const vary = varying(params).sort((a, b) => repeats(a) - repeats(b));
  const numericParams = vary.filter((c) => S.meta[c].numeric);
  const sel = {};
  sel.y = ms.find((c) => !OUTPUT_NAMES.has(c)) || ms[0] || S.columns.find((c) => S.meta[c].numeric) || "";
  sel.x = numericParams[0] || vary[0] || S.columns.find((c) => c !== sel.y) || "";
  sel.color = vary.find((c) => c !== sel.x && !repeats(c) && S.meta[c].n <= 12) || "";
  sel.facet = "";
  sel.raw = false;
  sel.logx = "";
  return { sel, metric: sel.y };
}

// ---- filters -----------------------------------------------------------------------------

function parseFilter(text) {
  const t = text.trim();
  if (!t) return null;
  let m = t.match(/^(-?[\d.]+(?:e[-+]?\d+)?)\s*\.\.\s*(-?[\d.]+(?:e[-+]?\d+)?)$/i);
  if (m) { const lo = +m[1], hi = +m[2]; return (v) => isNum(v) && v >= lo && v <= hi; }
  m = t.match(/^(>=|<=|!=|=|>|<)\s*(.*)$/);
  if (m) {
    const op = m[1], raw = m[2].trim(), num = raw !== "" && !Number.isNaN(+raw) ? +raw : null;
    const eq = (v) => (num !== null && isNum(v) ? v === num : fmt(v) === raw);
    if (op === "=") return eq;
    if (op === "!=") return (v) => !eq(v);
    if (num === null) return () => false;
    const f = { ">": (v) => v > num, "<": (v) => v < num, ">=": (v) => v >= num, "<=": (v) => v <= num }[op];
    return (v) => isNum(v) && f(v);
  }
  const needle = t.toLowerCase();
  return (v) => fmt(v).toLowerCase().includes(needle);
}

function brushTest(col) {
  const b = S.brushes[col];
  if (!b) return null;
  if (b.cats) return (v) => b.cats.has(catKey(v));
  return (v) => isNum(v) && v >= b.lo && v <= b.hi;
}

function applyFilters() {
  const tests = [];
  for (const [c, text] of Object.entries(S.filters)) { const f = parseFilter(text); if (f) tests.push([c, f]); }
  for (const c of Object.keys(S.brushes)) { const f = brushTest(c); if (f) tests.push([c, f]); }
  const keep = [];
  const recs = S.records;
  for (let i = 0; i < recs.length; i++) {
    let ok = true;
    for (const [c, f] of tests) if (!f(recs[i][c])) { ok = false; break; }
    if (ok) keep.push(i);
  }
  if (S.sort) {
    const { col, dir } = S.sort;
    keep.sort((a, b) => compare(recs[a][col], recs[b][col]) * dir || a - b);
  }
  S.keep = keep;
}

// ---- status ------------------------------------------------------------------------------

function duration(s) {
  if (s === null || s === undefined || !Number.isFinite(s)) return "—";
  s = Math.round(s);
  if (s < 60) return `${s} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${s % 60} s`;
  return `${Math.floor(s / 3600)} h ${Math.floor((s % 3600) / 60)} min`;
}

function stat(label, value, cls = "", sub = "", title = "") {
  const d = el("div", { class: `stat ${cls}` });
  d.append(el("div", { class: "label" }, label), el("div", { class: "value" }, value));
  if (sub) d.append(el("div", { class: "sub" }, sub));
  if (title) d.title = title;
  return d;
}

function renderStatus() {
  const st = S.status || {};
  $("record-count").textContent = String(S.total);
  const rest = $("status-rest");
  const parts = [];
  if (st.planned !== undefined && st.planned !== null) parts.push(stat("planned", String(st.planned)));
  parts.push(stat("done", String(st.done ?? 0), "good"));
  const types = Object.entries(st.failed_by_type || {}).sort((a, b) => b[1] - a[1]);
  parts.push(stat("failed", String(st.failed ?? 0), st.failed ? "bad" : "",
    types.slice(0, 3).map(([k, n]) => `${k} ${n}`).join(", "),
    types.map(([k, n]) => `${k}: ${n}`).join("\n")));
  if (st.running !== undefined && st.running !== null) parts.push(stat("running", String(st.running)));
  if (st.missing !== undefined && st.missing !== null) parts.push(stat("missing", String(st.missing)));
  const rate = st.rate_per_min;
  parts.push(stat("rate", rate === null || rate === undefined ? "—" : `${fmt(Number(rate.toPrecision(3)))}/min`,
    "", "", "records appended per minute, over the last few minutes"));
  parts.push(stat("time left", duration(st.eta_seconds), "", "",
    st.planned === undefined || st.planned === null
      ? "needs the sweep's plan (Runner.run, shard() or memo.plan record it)" : ""));
  rest.replaceChildren(...parts);
}

function setLive(state, text) {
  $("live").dataset.state = state;
  $("live-text").textContent = text;
}

// ---- selects -----------------------------------------------------------------------------

function fillSelect(id, options, value, blank) {
  const s = $(id);
  const want = (blank ? [""] : []).concat(options);
  const have = Array.from(s.options).map((o) => o.value);
  if (want.join("\u0000") !== have.join("\u0000")) {
    s.replaceChildren(...want.map((c) => el("option", { value: c }, c === "" ? blank : c)));
  }
  s.value = want.includes(value) ? value : want[0] || "";
  return s.value;
}

function renderSelects() {
  const numeric = S.columns.filter((c) => S.meta[c].numeric);
  const params = parameters();
  const ordered = params.concat(S.columns.filter((c) => !params.includes(c)));
  S.sel.x = fillSelect("sel-x", ordered, S.sel.x);
  S.sel.y = fillSelect("sel-y", numeric, S.sel.y);
  S.sel.color = fillSelect("sel-color", ordered, S.sel.color, "(none)");
  S.sel.facet = fillSelect("sel-facet", ordered, S.sel.facet, "(none)");
  $("sel-raw").checked = !!S.sel.raw;
  $("sel-logx").value = S.sel.logx || "";
  S.metric = fillSelect("sel-metric", numeric, S.metric);
}

function saveState() {
  const p = new URLSearchParams();
  for (const k of ["x", "y", "color", "facet", "logx"]) if (S.sel[k]) p.set(k, S.sel[k]);
  if (S.sel.raw) p.set("raw", "1");
  if (S.metric) p.set("metric", S.metric);
  history.replaceState(null, "", "#" + p.toString());
}

function loadState() {
  const p = new URLSearchParams(location.hash.slice(1));
  if (![...p.keys()].length) return false;
  S.sel = { x: p.get("x") || "", y: p.get("y") || "", color: p.get("color") || "",
    facet: p.get("facet") || "", logx: p.get("logx") || "", raw: p.get("raw") === "1" };
  S.metric = p.get("metric") || S.sel.y;
  return true;
}

// ---- table -------------------------------------------------------------------------------

function tableColumns() {
  const params = parameters();
  return params.concat(S.columns.filter((c) => !params.includes(c)));
}

function renderHead() {
  const cols = tableColumns();
  const params = new Set(parameters());
  const names = el("tr", { class: "names" });
  const filters = el("tr", { class: "filters" });
  names.append(el("th", { title: "line of the record in the file" }, "#"));
  filters.append(el("th"));
  for (const c of cols) {
    const th = el("th", { class: params.has(c) ? "param" : "", title: params.has(c) ? "parameter" : "" }, c);
    if (S.sort && S.sort.col === c) th.append(el("span", { class: "arrow" }, S.sort.dir > 0 ? "▲" : "▼"));
    th.addEventListener("click", () => {
      if (!S.sort || S.sort.col !== c) S.sort = { col: c, dir: 1 };
      else if (S.sort.dir > 0) S.sort.dir = -1;
      else S.sort = null;
      S.page = 0;
      renderHead();
      update({ chart: false });
    });
    names.append(th);
    const input = el("input", { type: "text", placeholder: "filter", "aria-label": `filter ${c}` });
    input.value = S.filters[c] || "";
    let typing = null;
    input.addEventListener("input", () => {   // once the typing pauses, not per key
      clearTimeout(typing);
      typing = setTimeout(() => {
        S.filters[c] = input.value;
        S.page = 0;
        update({ chart: true });
      }, 150);
    });
    const cell = el("th");
    cell.append(input);
    filters.append(cell);
  }
  $("thead").replaceChildren(names, filters);
  S.headKey = cols.join("\u0000");
}

function renderTable() {
  if (S.headKey !== tableColumns().join("\u0000")) renderHead();
  const cols = tableColumns();
  const pages = Math.max(1, Math.ceil(S.keep.length / S.pageSize));
  S.page = Math.min(S.page, pages - 1);
  const start = S.page * S.pageSize;
  const rows = [];
  for (const i of S.keep.slice(start, start + S.pageSize)) {
    const r = S.records[i];
    const tr = el("tr");
    if (r.status === "error") tr.className = "error";
    tr.append(el("td", { class: "idx" }, String(i + 1)));
    for (const c of cols) {
      const v = r[c];
      let text = fmt(v), cls = "";
      if (v === null || v === undefined) { cls = "null"; text = v === null ? "null" : ""; }
      else if (typeof v === "number") cls = Number.isFinite(v) ? "num" : "num nonfinite";
      const td = el("td", cls ? { class: cls } : {}, text.length > 80 ? text.slice(0, 79) + "…" : text);
      if (text.length > 80 || (typeof v === "number" && !Number.isInteger(v) && Number.isFinite(v))) td.title = typeof v === "number" ? String(v) : text;
      tr.append(td);
    }
    rows.push(tr);
  }
  $("tbody").replaceChildren(...rows);
  const n = S.keep.length;
  $("shown").textContent = n === S.records.length
    ? `${n} records`
    : `${n} of ${S.records.length} records match`;
  $("page-of").textContent = `page ${S.page + 1} of ${pages}`;
  $("page-first").disabled = $("page-prev").disabled = S.page === 0;
  $("page-next").disabled = $("page-last").disabled = S.page >= pages - 1;
}

// ---- chart (Vega-Lite, the specification memo plot uses) ------------------------------------

function chartRows() {
  const { x, y, color, facet } = S.sel;
  const rows = new Array(S.keep.length);
  let k = 0;
  for (const i of S.keep) {
    const r = S.records[i];
    const row = { x: scalar(r[x]), y: r[y] };
    if (color) row.color = scalar(r[color]);
    if (facet) row.facet = scalar(r[facet]);
    rows[k++] = row;
  }
  return rows;
}

const scalar = (v) => (v !== null && typeof v === "object" ? JSON.stringify(v) : v);

function chartSize() {
  const width = $("chart").clientWidth || 600;
  const legend = S.sel.color ? 100 : 10;
  let cols = 1;
  if (S.sel.facet) cols = Math.max(1, Math.min(3, S.meta[S.sel.facet] ? S.meta[S.sel.facet].n : 1));
  const w = Math.max(120, Math.floor((width - 70 - legend) / cols) - (cols > 1 ? 24 : 0));
  const h = S.sel.facet ? Math.max(140, Math.min(230, w * 0.7)) : 270;
  return { w, h: Math.round(h) };
}

async function drawChart(force) {
  const box = $("chart");
  const { x, y } = S.sel;
  if (!x || !y || typeof vegaEmbed === "undefined") return;
  const { w, h } = chartSize();
  const q = new URLSearchParams({ x, y, color: S.sel.color || "", facet: S.sel.facet || "",
    raw: S.sel.raw ? "1" : "0", log_x: S.sel.logx || "", width: w, height: h });
  const key = q.toString();
  const rows = chartRows();
  if (!force && S.view && key === S.specKey) {
    S.view.change("records", vega.changeset().remove(() => true).insert(rows)).run();
    return;
  }
  S.specKey = key;
  let spec;
  try {
    const r = await fetch("api/spec?" + key, { cache: "no-store" });
    spec = await r.json();
    if (!r.ok) throw new Error(spec.error || r.statusText);
  } catch (e) {
    box.replaceChildren(el("div", { class: "error" }, `no chart: ${e.message}`));
    S.view = null;
    return;
  }
  if (key !== S.specKey) return;      // a newer choice was made meanwhile
  spec.datasets = { records: rows };
  spec.autosize = { type: "pad" };
  if (S.view) { S.view.finalize(); S.view = null; }
  const many = S.sel.raw && rows.length > 5000;
  try {
    const res = await vegaEmbed(box, spec, { actions: false, renderer: many ? "canvas" : "svg", defaultStyle: false });
    S.view = res.view;
  } catch (e) {
    box.replaceChildren(el("div", { class: "error" }, `no chart: ${e.message}`));
  }
}

function scheduleChart(force) {
  if (force) { S.chartForce = true; }
  if (S.chartPending) return;
  const wait = Math.max(0, S.chartAt + CHART_EVERY_MS - Date.now());
  S.chartPending = true;
  setTimeout(async () => {
    const f = S.chartForce;
    S.chartForce = false;
    S.chartAt = Date.now();
    try { await drawChart(f); } finally { S.chartPending = false; }
    if (S.chartForce) scheduleChart(true);
  }, force ? 0 : wait);
}

// ---- parallel coordinates -----------------------------------------------------------------

const VIRIDIS = [[68, 1, 84], [59, 82, 139], [33, 145, 140], [94, 201, 98], [253, 231, 37]];
function ramp(t) {
  if (!Number.isFinite(t)) return "rgb(160,160,160)";
  t = Math.min(1, Math.max(0, t)) * (VIRIDIS.length - 1);
  const i = Math.min(VIRIDIS.length - 2, Math.floor(t)), f = t - i;
  const c = VIRIDIS[i].map((a, k) => Math.round(a + (VIRIDIS[i + 1][k] - a) * f));
  return `rgb(${c[0]},${c[1]},${c[2]})`;
}

const catKey = (v) => (v === null || v === undefined ? "\u2205" : typeof v === "object" ? JSON.stringify(v) : String(v));
const PC = { top: 34, bottom: 26, side: 56 };

function pcAxes() {
  const axes = varying(parameters()).filter((c) => c !== S.metric);
  if (S.metric) axes.push(S.metric);
  const box = $("pc");
  const W = box.clientWidth, H = box.clientHeight;
  const span = H - PC.top - PC.bottom;
  return axes.map((c, i) => {
    const m = S.meta[c];
    const x = axes.length === 1 ? W / 2 : PC.side + (i * (W - 2 * PC.side)) / (axes.length - 1);
    const ax = { col: c, x, top: PC.top, bottom: PC.top + span };
    if (m.numeric && Number.isFinite(m.min)) {
      const log = m.min > 0 && m.max / m.min >= 100;
      const f = log ? Math.log10 : (v) => v;
      const lo = f(m.min), hi = f(m.max), d = hi - lo || 1;
      ax.kind = "num"; ax.log = log; ax.lo = m.min; ax.hi = m.max;
      ax.y = (v) => (isNum(v) && Number.isFinite(v) && (!log || v > 0) ? ax.bottom - ((f(v) - lo) / d) * span : null);
      ax.value = (py) => { const t = (ax.bottom - py) / span; const v = lo + t * d; return log ? 10 ** v : v; };
    } else {
      const values = !m.many ? m.values : new Set(S.records.map((r) => catKey(r[c])));
      const cats = Array.from(values).sort((a, b) => compare(isNaN(+a) ? a : +a, isNaN(+b) ? b : +b));
      const step = span / Math.max(1, cats.length - 1 || 1);
      const pos = new Map(cats.map((k, j) => [k, cats.length === 1 ? ax.top + span / 2 : ax.bottom - j * step]));
      ax.kind = "cat"; ax.cats = cats; ax.pos = pos;
      ax.y = (v) => pos.get(catKey(v)) ?? null;
    }
    return ax;
  });
}

function sample(indices, max) {
  if (indices.length <= max) return indices;
  const out = [], step = indices.length / max;
  for (let k = 0; k < max; k++) out.push(indices[Math.floor(k * step)]);
  return out;
}

function drawPC() {
  const box = $("pc"), canvas = $("pc-canvas"), svg = $("pc-svg");
  const W = box.clientWidth, H = box.clientHeight, dpr = window.devicePixelRatio || 1;
  canvas.width = Math.round(W * dpr); canvas.height = Math.round(H * dpr);
  const ctx = canvas.getContext("2d");
  ctx.setTransform(dpr, 0, 0, dpr, 0, 0);
  ctx.clearRect(0, 0, W, H);
  const axes = pcAxes();
  S.axes = axes;
  svg.replaceChildren();
  if (!axes.length || !S.records.length) { $("pc-caption").textContent = "No parameters to show yet."; return; }
  const out = [];
  if (S.keep.length < S.records.length) {
    const kept = new Uint8Array(S.records.length);
    for (const i of S.keep) kept[i] = 1;
    for (let i = 0; i < S.records.length; i++) if (!kept[i]) out.push(i);
  }
  const keepDraw = sample(S.keep, MAX_LINES), outDraw = sample(out, MAX_LINES);
  const mm = S.meta[S.metric] || {};
  const mlo = mm.min, mhi = mm.max, md = mhi - mlo || 1;
  const line = (i) => {
    const r = S.records[i];
    ctx.beginPath();
    let pen = false;
    for (const ax of axes) {
      const y = ax.y(r[ax.col]);
      if (y === null) { pen = false; continue; }
      if (pen) ctx.lineTo(ax.x, y); else ctx.moveTo(ax.x, y);
      pen = true;
    }
    ctx.stroke();
  };
  ctx.lineWidth = 1;
  ctx.strokeStyle = "rgba(150,155,165,0.18)";
  for (const i of outDraw) line(i);
  const alpha = Math.max(0.08, Math.min(0.75, 25 / Math.sqrt(keepDraw.length || 1)));
  ctx.globalAlpha = alpha;
  ctx.lineWidth = 1.4;
  for (const i of keepDraw) { ctx.strokeStyle = ramp((S.records[i][S.metric] - mlo) / md); line(i); }
  ctx.globalAlpha = 1;
  for (const ax of axes) drawAxis(svg, ax);
  const drawn = keepDraw.length + outDraw.length;
  $("pc-caption").textContent = (drawn < S.records.length ? `${drawn} of ${S.records.length} lines drawn (an even sample). ` : "")
    + "Drag along an axis to select a range; click an axis to clear it. Color: " + (S.metric || "—") + ".";
  $("clear-brushes").disabled = !Object.keys(S.brushes).length;
}

// round values for a numeric axis: 1, 2 or 5 times a power of ten; decades on a log axis
function ticks(ax) {
  const out = [];
  if (ax.lo === ax.hi) return [ax.lo];
  if (ax.log) {
    for (let e = Math.ceil(Math.log10(ax.lo) - 1e-9); 10 ** e <= ax.hi * (1 + 1e-9); e++) out.push(10 ** e);
    return out.length >= 2 ? out : [ax.lo, ax.hi];
  }
  const range = ax.hi - ax.lo, p = 10 ** Math.floor(Math.log10(range / 10));
  const step = [1, 2, 5, 10, 20, 50].map((m) => m * p).find((st) => range / st <= 6);
  for (let v = Math.ceil(ax.lo / step - 1e-9) * step; v <= ax.hi + step * 1e-9; v += step) out.push(Math.abs(v) < step * 1e-9 ? 0 : v);
  return out;
}

function drawAxis(svg, ax) {
  const g = svgEl("g", { class: "axis" });
  g.append(svgEl("line", { x1: ax.x, x2: ax.x, y1: ax.top, y2: ax.bottom }));
  const title = ax.col.length > 18 ? ax.col.slice(0, 17) + "…" : ax.col;
  const t = svgEl("text", { x: ax.x, y: 16, "text-anchor": "middle", class: "title" + (ax.col === S.metric ? " metric" : "") }, title);
  t.append(svgEl("title", {}, ax.col));
  g.append(t);
  const right = ax.col === S.metric && ax.x > 100;  // the last axis: labels outside
  const tick = (y, label) => {
    g.append(svgEl("line", { x1: right ? ax.x + 4 : ax.x - 4, x2: ax.x, y1: y, y2: y }));
    g.append(svgEl("text", { x: right ? ax.x + 7 : ax.x - 7, y: y + 4, "text-anchor": right ? "start" : "end", class: "tick" }, label));
  };
  if (ax.kind === "num") {
    for (const v of ticks(ax)) tick(ax.y(v), fmt(Number(v.toPrecision(4))));
  } else {
    const every = Math.ceil(ax.cats.length / 12);
    ax.cats.forEach((c, j) => { if (j % every === 0) tick(ax.pos.get(c), c.length > 10 ? c.slice(0, 9) + "…" : c); });
  }
  const b = S.brushes[ax.col];
  if (b) {
    let y0, y1;
    if (b.cats) {
      const ys = ax.cats.filter((c) => b.cats.has(c)).map((c) => ax.pos.get(c));
      if (ys.length) { y0 = Math.min(...ys) - 6; y1 = Math.max(...ys) + 6; }
    } else { y0 = ax.y(Math.min(b.hi, ax.hi)) ?? ax.top; y1 = ax.y(Math.max(b.lo, ax.lo)) ?? ax.bottom; }
    if (y0 !== undefined) g.append(svgEl("rect", { class: "brush", x: ax.x - 9, width: 18, y: Math.min(y0, y1), height: Math.max(3, Math.abs(y1 - y0)) }));
  }
  g.append(svgEl("rect", { class: "hit", x: ax.x - 16, width: 32, y: ax.top - 8, height: ax.bottom - ax.top + 16, "data-col": ax.col }));
  svg.append(g);
}

function setupBrushing() {
  const svg = $("pc-svg");
  let drag = null;
  const yOf = (ev) => ev.clientY - svg.getBoundingClientRect().top;
  svg.addEventListener("pointerdown", (ev) => {
    const col = ev.target.getAttribute && ev.target.getAttribute("data-col");
    if (!col) return;
    const ax = (S.axes || []).find((a) => a.col === col);
    if (!ax) return;
    drag = { ax, y0: yOf(ev), rect: svgEl("rect", { class: "brush", x: ax.x - 9, width: 18, y: yOf(ev), height: 1 }) };
    svg.append(drag.rect);
    svg.setPointerCapture(ev.pointerId);
    ev.preventDefault();
  });
  svg.addEventListener("pointermove", (ev) => {
    if (!drag) return;
    const y = Math.max(drag.ax.top, Math.min(drag.ax.bottom, yOf(ev)));
    drag.rect.setAttribute("y", Math.min(y, drag.y0));
    drag.rect.setAttribute("height", Math.max(1, Math.abs(y - drag.y0)));
  });
  svg.addEventListener("pointerup", (ev) => {
    if (!drag) return;
    const { ax, y0 } = drag;
    const y1 = Math.max(ax.top, Math.min(ax.bottom, yOf(ev)));
    drag = null;
    if (Math.abs(y1 - y0) < 3) delete S.brushes[ax.col];
    else setBrush(ax, Math.min(y0, y1), Math.max(y0, y1));
    S.page = 0;
    update({ chart: true });
  });
}

function setBrush(ax, top, bottom) {
  if (ax.kind === "num") {
    const a = ax.value(bottom), b = ax.value(top);
    S.brushes[ax.col] = { lo: Math.min(a, b), hi: Math.max(a, b) };
  } else {
    S.brushes[ax.col] = { cats: new Set(ax.cats.filter((c) => { const y = ax.pos.get(c); return y >= top - 4 && y <= bottom + 4; })) };
  }
}

// ---- updates -----------------------------------------------------------------------------

function update({ chart }) {
  applyFilters();
  renderTable();
  drawPC();
  if (chart) scheduleChart(false);
}

function refreshAll(reset) {
  describeColumns();
  if (!S.started && S.records.length) {
    S.started = true;
    if (!loadState()) { const d = defaults(); S.sel = d.sel; S.metric = d.metric; }
  } else if (S.started && (!S.columns.includes(S.sel.x) || !S.columns.includes(S.sel.y))) {
    const d = defaults(); S.sel = d.sel; S.metric = d.metric;
  }
  renderSelects();
  renderStatus();
  update({ chart: false });
  if (S.records.length) scheduleChart(reset);
}

async function poll() {
  let again = POLL_MS;
  try {
    const r = await fetch(`api/records?gen=${S.gen}&from=${S.records.length}`, { cache: "no-store" });
    if (r.status === 401 || r.status === 403) {
      setLive("denied", r.status === 401 ? "token needed" : "host refused");
      again = 3000;
    } else {
      const d = await r.json();
      const reset = d.gen !== S.gen || d.from !== S.records.length;
      if (reset) { S.records = []; S.brushes = {}; S.view = null; S.specKey = ""; }
      S.gen = d.gen;
      for (const rec of d.records) S.records.push(restore(rec));
      S.total = d.total;
      S.columns = d.columns;
      S.params = d.parameters;
      S.status = d.status;
      S.path = d.path;
      $("path").textContent = d.path;
      $("path").title = d.path;
      // a large file comes in several answers: draw once it is all here
      if ((d.records.length || reset) && S.records.length >= d.total) refreshAll(reset);
      else renderStatus();
      if (S.records.length < d.total) {
        again = 0;
        setLive("connecting", `loading ${S.records.length} of ${d.total}`);
      } else setLive("live", `live · ${new Date().toLocaleTimeString()}`);
    }
  } catch (e) {
    setLive("down", "disconnected");
    again = 2000;
  }
  setTimeout(poll, again);
}

function wire() {
  const pick = (id, key, chart = true) => $(id).addEventListener("change", (ev) => {
    const v = ev.target.type === "checkbox" ? ev.target.checked : ev.target.value;
    if (key === "metric") S.metric = v; else S.sel[key] = v;
    saveState();
    if (key === "metric") drawPC();
    if (chart) scheduleChart(true);
  });
  pick("sel-x", "x"); pick("sel-y", "y"); pick("sel-color", "color"); pick("sel-facet", "facet");
  pick("sel-raw", "raw"); pick("sel-logx", "logx"); pick("sel-metric", "metric", false);
  $("clear-brushes").addEventListener("click", () => { S.brushes = {}; update({ chart: true }); });
  const pages = () => Math.max(1, Math.ceil(S.keep.length / S.pageSize));
  $("page-first").addEventListener("click", () => { S.page = 0; renderTable(); });
  $("page-prev").addEventListener("click", () => { S.page = Math.max(0, S.page - 1); renderTable(); });
  $("page-next").addEventListener("click", () => { S.page = Math.min(pages() - 1, S.page + 1); renderTable(); });
  $("page-last").addEventListener("click", () => { S.page = pages() - 1; renderTable(); });
  $("page-size").addEventListener("change", (ev) => { S.pageSize = +ev.target.value; S.page = 0; renderTable(); });
  let resize = null;
  window.addEventListener("resize", () => {
    clearTimeout(resize);
    resize = setTimeout(() => { drawPC(); if (S.records.length) scheduleChart(true); }, 200);
  });
  setupBrushing();
}

wire();
poll();
})();
