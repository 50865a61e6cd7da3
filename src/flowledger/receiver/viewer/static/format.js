// Formatting of durations, times, money, counts and statuses.

"use strict";

import { h } from "./dom.js";

export function fmtDuration(ms) {
  if (ms === null || ms === undefined || Number.isNaN(ms)) return "–";
  if (ms === 0) return "0";
  if (ms < 1) return `${ms.toFixed(2)} ms`;
  if (ms < 1000) return `${Math.round(ms)} ms`;
  const s = ms / 1000;
  if (s < 60) return `${s.toFixed(s < 10 ? 2 : 1)} s`;
  const m = Math.floor(s / 60);
  if (m < 60) return `${m} min ${String(Math.floor(s % 60)).padStart(2, "0")} s`;
  return `${Math.floor(m / 60)} h ${String(m % 60).padStart(2, "0")} min`;
}

export function fmtTime(ts) {
  if (!ts) return "–";
  return ts.replace("T", " ").replace(/\.\d+Z$/, "").replace(/Z$/, "") + " UTC";
}

export function fmtAgo(ts) {
  if (!ts) return "";
  const s = (Date.now() - Date.parse(ts)) / 1000;
  if (s < 5) return "just now";
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

export function fmtUsd(usd) {
  if (usd === null || usd === undefined) return "–";
  if (usd === 0) return "$0";
  if (usd < 0.01) return "$" + usd.toPrecision(2);
  if (usd < 100) return "$" + usd.toFixed(4);
  // Grouped, and whole dollars from $10,000: a large total stays short enough for its card.
  return "$" + usd.toLocaleString("en-US", { minimumFractionDigits: usd < 10_000 ? 2 : 0, maximumFractionDigits: usd < 10_000 ? 2 : 0 });
}

// The exact digits of an integer past 2**53 as api.js parses it (a JSON.rawJSON value), else null.
export function exactInteger(value) {
  return value !== null && typeof value === "object" && JSON.isRawJSON?.(value) ? value.rawJSON : null;
}

export function fmtCount(n) {
  if (n === null || n === undefined) return "–";
  const exact = exactInteger(n);
  return exact === null ? Number(n).toLocaleString("en-US") : BigInt(exact).toLocaleString("en-US");
}

// "1 key", "2 keys": a count with its noun in the right number.
export function plural(n, one, many) {
  return `${fmtCount(n)} ${Number(n) === 1 ? one : many}`;
}

export function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

export function shortId(id, tail = 4) {
  return id && id.length > 9 + tail ? id.slice(0, 8) + "…" + id.slice(-tail) : id || "";
}

export function statusBadge(status) {
  return h("span", { class: `badge status-${status || "unknown"}`, text: status || "unknown" });
}
