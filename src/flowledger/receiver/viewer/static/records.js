// What a run or an attempt cost by category, and an attempt's custom metrics and artifacts.

"use strict";

import { h } from "./dom.js";
import { exactInteger, fmtBytes, fmtCount } from "./format.js";

// Exact dollars from whole nano-dollars, without trailing zeros: 3600000 -> "$0.0036".
export function fmtNanos(nanos) {
  if (nanos === null || nanos === undefined) return "–";
  const exact = exactInteger(nanos);
  const n = BigInt(exact === null ? Math.round(nanos) : exact);
  const whole = n / 1000000000n;
  const frac = (n % 1000000000n).toString().padStart(9, "0").replace(/0+$/, "");
  return "$" + whole.toLocaleString("en-US") + (frac ? "." + frac : "");
}

// The breakdown of a cost as a small table (category, count, dollars); null without one.
export function costBreakdown(cost, id) {
  const breakdown = cost && cost.breakdown;
  if (!breakdown || !Object.keys(breakdown).length) return null;
  const rows = Object.entries(breakdown).map(([key, entry]) =>
    h(
      "tr",
      { dataset: { key } },
      h("td", { class: "mono", text: key }),
      h("td", { class: "num", text: key === "other" ? "" : fmtCount(entry.count) }),
      h("td", { class: "num", text: entry.usd_nanos ? fmtNanos(entry.usd_nanos) : "" }),
    ),
  );
  return h(
    "table",
    { class: "records cost-breakdown", id },
    h("thead", {}, h("tr", {}, h("th", { text: "category" }), h("th", { class: "num", text: "count" }), h("th", { class: "num", text: "USD" }))),
    h("tbody", {}, rows),
  );
}

function section(title, id, ...content) {
  return h("section", { class: "records-section", id }, h("h4", { text: title }), ...content);
}

// An attempt's metrics: one row per name and labels with its last value (count, sum, min and max below it).
export function metricsSection(metrics) {
  if (!metrics || !metrics.length) return null;
  const rows = metrics.map((m) => {
    const labels = Object.entries(m.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    const summary = m.count > 1 ? h("div", { class: "muted small summary", text: `${fmtCount(m.count)} values · sum ${m.sum} · min ${m.min} · max ${m.max}` }) : null;
    return h(
      "tr",
      { dataset: { metric: m.name } },
      h("td", { class: "mono", text: m.name }),
      h("td", { class: "mono small", text: labels }),
      h("td", { class: "num" }, h("span", { class: "value", text: String(m.value) }), summary),
    );
  });
  return section(
    "Metrics",
    "panel-metrics",
    h("table", { class: "records" }, h("thead", {}, h("tr", {}, h("th", { text: "name" }), h("th", { text: "labels" }), h("th", { class: "num", text: "value" }))), h("tbody", {}, rows)),
  );
}

// An attempt's artifacts, one block each: name, media type and size; sha256 (or why there is none); where it is.
export function artifactsSection(artifacts) {
  if (!artifacts || !artifacts.length) return null;
  const items = artifacts.map((a) => {
    const meta = [a.media_type, a.size_bytes === null || a.size_bytes === undefined ? null : fmtBytes(a.size_bytes)].filter(Boolean).join(" · ");
    const hash = a.sha256
      ? h("div", { class: "mono small sha", title: a.sha256, text: `sha256 ${a.sha256.slice(0, 16)}…` })
      : h("div", { class: "muted small sha", text: a.sha256_skipped ? `not hashed: ${a.sha256_skipped}` : "no sha256" });
    return h(
      "li",
      { dataset: { artifact: a.name } },
      h("div", {}, h("span", { class: "mono name", text: a.name }), h("span", { class: "muted small meta", text: meta ? ` ${meta}` : "" })),
      hash,
      a.uri ? h("div", { class: "mono small uri", text: a.uri }) : null,
    );
  });
  return section("Artifacts", "panel-artifacts", h("ul", { class: "artifacts" }, items));
}
