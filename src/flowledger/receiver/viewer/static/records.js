// What a run or an attempt cost by category, and an attempt's custom metrics and artifacts.

"use strict";

import { h } from "./dom.js";
import { fmtBytes, fmtCount } from "./format.js";

// Exact dollars from whole nano-dollars, without trailing zeros: 3600000 -> "$0.0036".
export function fmtNanos(nanos) {
  if (nanos === null || nanos === undefined) return "–";
  const n = BigInt(Math.round(nanos));
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

// An attempt's metrics: one row per name and labels, the last value with count, sum, min and max.
export function metricsSection(metrics) {
  if (!metrics || !metrics.length) return null;
  const rows = metrics.map((m) => {
    const labels = Object.entries(m.labels || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    return h(
      "tr",
      { dataset: { metric: m.name } },
      h("td", { class: "mono", text: m.name }),
      h("td", { class: "mono small", text: labels }),
      h("td", { class: "num", text: String(m.value) }),
      h("td", { class: "num muted small", text: m.count > 1 ? `${fmtCount(m.count)} values · sum ${m.sum} · min ${m.min} · max ${m.max}` : "" }),
    );
  });
  return section(
    "Metrics",
    "panel-metrics",
    h("table", { class: "records" }, h("thead", {}, h("tr", {}, h("th", { text: "name" }), h("th", { text: "labels" }), h("th", { class: "num", text: "value" }), h("th", {}))), h("tbody", {}, rows)),
  );
}

// An attempt's artifacts: name, media type, size, sha256 (or why there is none), and where it is.
export function artifactsSection(artifacts) {
  if (!artifacts || !artifacts.length) return null;
  const rows = artifacts.map((a) =>
    h(
      "tr",
      { dataset: { artifact: a.name } },
      h("td", { class: "mono", text: a.name }),
      h("td", { class: "small", text: a.media_type || "" }),
      h("td", { class: "num", title: a.size_bytes === null ? "" : `${fmtCount(a.size_bytes)} bytes`, text: fmtBytes(a.size_bytes) }),
      h("td", { class: "mono small hash" }, a.sha256 ? h("span", { title: a.sha256, text: a.sha256.slice(0, 16) + "…" }) : h("span", { class: "muted", text: a.sha256_skipped ? `not hashed: ${a.sha256_skipped}` : "" })),
      h("td", { class: "mono small uri", text: a.uri || "" }),
    ),
  );
  return section(
    "Artifacts",
    "panel-artifacts",
    h(
      "table",
      { class: "records" },
      h("thead", {}, h("tr", {}, h("th", { text: "name" }), h("th", { text: "type" }), h("th", { class: "num", text: "size" }), h("th", { text: "sha256" }), h("th", { text: "uri" }))),
      h("tbody", {}, rows),
    ),
  );
}
