// Statistics per workflow, agent, project or node: a chart of runs per bucket and a table of groups,
// then the custom metrics of the same range added up per workflow, node, name and labels.
// The charts are SVG built here: no library, nothing fetched from elsewhere.

"use strict";

import { api } from "./api.js";
import { clear, h, selectOf } from "./dom.js";
import { fmtCount, fmtDuration, fmtTime, fmtUsd } from "./format.js";
import { LivePage, setCrumbs, setLive } from "./page.js";

const POLL_MS = 10000;
const SVG = "http://www.w3.org/2000/svg";
const BY = [
  ["workflow", "workflow"],
  ["agent", "agent"],
  ["project", "project"],
  ["node", "node"],
];
const RANGES = [
  ["24h", "last 24 h", 24 * 3600e3, "hour"],
  ["7d", "last 7 days", 7 * 24 * 3600e3, "hour"],
  ["30d", "last 30 days", 30 * 24 * 3600e3, "day"],
  ["", "all time", null, "day"],
];
const FAILED = new Set(["failed", "aborted"]);
const METRIC_ROWS = 10000; // MAX_ROWS of GET /api/metrics/custom: one row per metric, labels and hour

function svg(tag, attrs, ...children) {
  const el = document.createElementNS(SVG, tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (name === "text") el.textContent = String(value);
    else el.setAttribute(name, String(value));
  }
  for (const child of children) if (child) el.append(child);
  return el;
}

/** Runs per bucket, succeeded below and failed above, as an SVG bar chart. */
export function barChart(points, { width = 900, height = 160, label = "runs" } = {}) {
  const pad = { left: 44, right: 8, top: 10, bottom: 22 };
  const chart = svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "chart", role: "img", "aria-label": `${label} per bucket` });
  const max = Math.max(1, ...points.map((p) => p.runs));
  const inner = width - pad.left - pad.right;
  const step = points.length ? inner / points.length : inner;
  const bar = Math.max(1, step * 0.8);
  const y = (n) => pad.top + (height - pad.top - pad.bottom) * (1 - n / max);
  chart.append(svg("line", { x1: pad.left, x2: width - pad.right, y1: y(0), y2: y(0), class: "axis" }));
  chart.append(svg("text", { x: pad.left - 6, y: y(max) + 4, class: "tick", "text-anchor": "end", text: fmtCount(max) }));
  chart.append(svg("text", { x: pad.left - 6, y: y(0), class: "tick", "text-anchor": "end", text: "0" }));
  points.forEach((p, i) => {
    const failed = Object.entries(p.by_status).reduce((n, [s, c]) => n + (FAILED.has(s) ? c : 0), 0);
    const ok = p.runs - failed;
    const x = pad.left + i * step + (step - bar) / 2;
    const title = svg("title", { text: `${fmtTime(p.start)}: ${fmtCount(p.runs)} runs, ${fmtCount(failed)} failed, p95 ${fmtDuration(p.duration_ms.p95)}` });
    const group = svg("g", { class: "bar" }, title);
    group.append(svg("rect", { x, width: bar, y: y(ok), height: Math.max(0, y(0) - y(ok)), class: "ok" }));
    if (failed) group.append(svg("rect", { x, width: bar, y: y(p.runs), height: Math.max(0, y(ok) - y(p.runs)), class: "failed" }));
    chart.append(group);
  });
  if (points.length) {
    chart.append(svg("text", { x: pad.left, y: height - 6, class: "tick", text: fmtTime(points[0].start) }));
    chart.append(svg("text", { x: width - pad.right, y: height - 6, class: "tick", "text-anchor": "end", text: fmtTime(points[points.length - 1].start) }));
  }
  return chart;
}

/** One group's runs per bucket as a small line. */
function sparkline(series, starts) {
  const width = 120;
  const height = 24;
  const byStart = new Map(series.map((p) => [p.start, p.runs]));
  const values = starts.map((s) => byStart.get(s) || 0);
  const max = Math.max(1, ...values);
  const step = values.length > 1 ? width / (values.length - 1) : width;
  const pts = values.map((v, i) => `${(i * step).toFixed(1)},${(height - 2 - (height - 4) * (v / max)).toFixed(1)}`).join(" ");
  return svg("svg", { viewBox: `0 0 ${width} ${height}`, class: "spark", "aria-hidden": "true" }, svg("polyline", { points: pts }));
}

/** The series of every group added up, bucket by bucket. */
function total(groups) {
  const points = new Map();
  for (const group of groups) {
    for (const p of group.series || []) {
      const t = points.get(p.start) || { start: p.start, runs: 0, by_status: {}, duration_ms: { p95: null } };
      t.runs += p.runs;
      for (const [s, n] of Object.entries(p.by_status)) t.by_status[s] = (t.by_status[s] || 0) + n;
      t.duration_ms.p95 = Math.max(t.duration_ms.p95 || 0, p.duration_ms.p95 || 0);
      points.set(p.start, t);
    }
  }
  return [...points.values()].sort((a, b) => (a.start < b.start ? -1 : 1));
}

/** Custom metric rows (one per hour) added up per workflow, node, name and labels, most values first. */
export function metricTotals(rows) {
  const totals = new Map();
  for (const r of rows) {
    const labels = Object.entries(r.labels).map(([k, v]) => `${k}=${v}`).join(", ");
    const id = JSON.stringify([r.workflow_id, r.node_id, r.name, labels]);
    const t = totals.get(id);
    if (!t) {
      totals.set(id, { workflow_id: r.workflow_id, node_id: r.node_id, name: r.name, labels, count: r.count, sum: r.sum, min: r.min, max: r.max });
      continue;
    }
    t.count += r.count;
    t.sum += r.sum;
    t.min = Math.min(t.min, r.min);
    t.max = Math.max(t.max, r.max);
  }
  const order = (a, b) => b.count - a.count || (a.name < b.name ? -1 : a.name > b.name ? 1 : 0) || (a.labels < b.labels ? -1 : a.labels > b.labels ? 1 : 0);
  return [...totals.values()].sort(order);
}

function fmtValue(v) {
  return Number.isInteger(v) ? fmtCount(v) : String(Number(v.toPrecision(6)));
}

export class StatsView extends LivePage {
  constructor(params) {
    super();
    this.by = params.get("by") || "workflow";
    this.range = params.has("range") ? params.get("range") : "7d";
  }

  start() {
    document.title = "flowledger · statistics";
    setCrumbs(h("span", { text: "statistics" }));
    const app = clear(document.getElementById("app"));
    this.form = h("form", { class: "filters", id: "stats-filters" });
    this.chart = h("section", { class: "chart-box", id: "stats-chart", "aria-label": "Runs per bucket" });
    this.table = h("table", { class: "runs stats", id: "stats-table" });
    this.metricsNote = h("p", { class: "muted small", id: "metrics-note" });
    this.metrics = h("table", { class: "runs metrics", id: "metrics-table" });
    app.append(
      this.form,
      this.chart,
      h("div", { class: "table-wrap" }, this.table),
      h("section", { class: "metrics-box", "aria-label": "Custom metrics" }, h("h3", { text: "Custom metrics" }), this.metricsNote, h("div", { class: "table-wrap" }, this.metrics)),
    );
    this.buildFilters();
    this.refresh().catch((err) => this.fail(err));
    this.poll(POLL_MS, () => this.refresh());
    setLive(true);
  }

  buildFilters() {
    const select = (name, label, options, value) => {
      const el = selectOf({ name, id: `s-${name}`, "aria-label": label }, options, value);
      el.addEventListener("change", () => {
        const params = new URLSearchParams({ by: this.form.elements.by.value, range: this.form.elements.range.value });
        location.hash = "#/stats?" + params;
      });
      return h("label", { class: "field" }, h("span", { text: label }), el);
    };
    this.form.append(
      select("by", "Group by", BY, this.by),
      select("range", "Runs started", RANGES.map((r) => [r[0], r[1]]), this.range),
      h("a", { class: "field-link", href: "#/errors", text: "error groups →" }),
    );
  }

  async refresh() {
    const range = RANGES.find((r) => r[0] === this.range) || RANGES[1];
    const params = { by: this.by, bucket: range[3] };
    if (range[2]) params.since = new Date(Date.now() - range[2]).toISOString();
    const metricParams = { limit: METRIC_ROWS };
    if (params.since) metricParams.since = params.since;
    const [body, metrics] = await Promise.all([api("/api/stats", params), api("/api/metrics/custom", metricParams)]);
    this.render(body.groups, range);
    this.renderMetrics(metrics.metrics, range);
  }

  renderMetrics(rows, range) {
    const totals = metricTotals(rows);
    this.metricsNote.textContent =
      rows.length >= METRIC_ROWS
        ? `Added up from the newest ${fmtCount(METRIC_ROWS)} hourly rows only: narrow the range for all of them.`
        : `flowledger.metric() values recorded by nodes, ${range[1]}, added up over the hours.`;
    const table = clear(this.metrics);
    const heads = ["metric", "labels", "workflow / node", "values", "sum", "min", "max", "avg"];
    table.append(h("thead", {}, h("tr", {}, heads.map((t) => h("th", { text: t })))));
    const body = h("tbody");
    for (const t of totals) {
      body.append(
        h(
          "tr",
          { dataset: { name: t.name } },
          h("td", { class: "key", text: t.name }),
          h("td", { text: t.labels }),
          h("td", { text: `${t.workflow_id || "(none)"} / ${t.node_id || "(none)"}` }),
          h("td", { class: "num", text: fmtCount(t.count) }),
          h("td", { class: "num", text: fmtValue(t.sum) }),
          h("td", { class: "num", text: fmtValue(t.min) }),
          h("td", { class: "num", text: fmtValue(t.max) }),
          h("td", { class: "num", text: fmtValue(t.sum / t.count) }),
        ),
      );
    }
    if (!totals.length) body.append(h("tr", {}, h("td", { colspan: heads.length, class: "muted", text: "No custom metrics in this range." })));
    table.append(body);
  }

  render(groups, range) {
    const points = total(groups);
    clear(this.chart).append(
      h("h3", { text: `Runs per ${range[3]}, ${range[1]}` }),
      points.length ? barChart(points) : h("p", { class: "muted", text: "No finished runs in this range." }),
      h("p", { class: "legend muted small" }, h("span", { class: "swatch ok" }), " succeeded ", h("span", { class: "swatch failed" }), " failed or aborted"),
    );
    const starts = points.map((p) => p.start);
    const table = clear(this.table);
    const heads = [this.by, "runs", "trend", "failed", "success", "cost total", "cost avg", "min / max", "avg", "p50", "p95"];
    table.append(h("thead", {}, h("tr", {}, heads.map((t) => h("th", { text: t })))));
    const body = h("tbody");
    for (const g of groups) {
      const failed = Object.entries(g.by_status).reduce((n, [s, c]) => n + (FAILED.has(s) ? c : 0), 0);
      body.append(
        h(
          "tr",
          { dataset: { key: g.key } },
          h("td", { class: "key", text: g.key || "(none)" }),
          h("td", { class: "num", text: fmtCount(g.runs) }),
          h("td", {}, sparkline(g.series || [], starts)),
          h("td", { class: failed ? "num failed-count" : "num", text: fmtCount(failed) }),
          h("td", { class: "num", text: g.success_rate === null ? "–" : `${(g.success_rate * 100).toFixed(1)} %` }),
          h("td", { class: "num", text: fmtUsd(g.cost_usd.total) }),
          h("td", { class: "num", text: fmtUsd(g.cost_usd.avg) }),
          h("td", { class: "num", text: `${fmtUsd(g.cost_usd.min)} / ${fmtUsd(g.cost_usd.max)}` }),
          h("td", { class: "num", text: fmtDuration(g.duration_ms.avg) }),
          h("td", { class: "num", text: fmtDuration(g.duration_ms.p50) }),
          h("td", { class: "num", text: fmtDuration(g.duration_ms.p95) }),
        ),
      );
    }
    if (!groups.length) body.append(h("tr", {}, h("td", { colspan: heads.length, class: "muted", text: "No finished runs in this range." })));
    table.append(body);
  }
}
