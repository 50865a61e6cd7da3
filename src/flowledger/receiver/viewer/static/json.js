// The JSON tree of a payload: markers, lazy children, raw view, copy.

"use strict";

import { clear, copyButton, h } from "./dom.js";
import { exactInteger, fmtBytes, fmtCount, plural } from "./format.js";

const JSON_OPEN_DEPTH = 2;
const JSON_CHILDREN_STEP = 200;

function isMarker(value) {
  return value !== null && typeof value === "object" && !Array.isArray(value) && typeof value.__flowledger__ === "string";
}

function markerView(value) {
  const kind = value.__flowledger__;
  const box = h("div", { class: `marker marker-${kind}`, dataset: { marker: kind } });
  if (kind === "truncated") {
    const parts = ["truncated"];
    if (value.original_bytes !== undefined) parts.push(`${fmtCount(value.original_bytes)} bytes originally`);
    if (value.omitted_bytes !== undefined) parts.push(`${fmtCount(value.omitted_bytes)} bytes left out`);
    // Sizes the SDK could only bound from below (the value was not encoded whole).
    if (value.original_bytes_at_least !== undefined) {
      parts.push(`at least ${fmtCount(value.original_bytes_at_least)} bytes originally`);
    }
    if (value.omitted_bytes_at_least !== undefined) {
      parts.push(`at least ${fmtCount(value.omitted_bytes_at_least)} bytes left out`);
    }
    box.append(h("span", { class: "marker-label", text: parts.join(" · ") }));
    if (value.preview !== undefined) box.append(h("pre", { class: "marker-preview", text: String(value.preview) }));
  } else if (kind === "repr") {
    box.append(h("span", { class: "marker-label", text: `not JSON: ${value.type ?? "object"}` }));
    if (value.repr !== undefined) box.append(h("pre", { class: "marker-preview", text: String(value.repr) }));
  } else if (kind === "capture_error") {
    box.append(h("span", { class: "marker-label", text: "could not be captured" }));
    if (value.error !== undefined) box.append(h("pre", { class: "marker-preview", text: String(value.error) }));
  } else {
    box.append(h("span", { class: "marker-label", text: `flowledger marker: ${kind}` }));
    box.append(h("pre", { class: "marker-preview", text: JSON.stringify(value, null, 2) }));
  }
  return box;
}

function leafView(value) {
  if (value === null) return h("span", { class: "j-null", text: "null" });
  const exact = exactInteger(value);
  if (exact !== null) return h("span", { class: "j-num", text: exact });
  switch (typeof value) {
    case "string":
      if (value === "[REDACTED]") return h("span", { class: "j-redacted", text: "[REDACTED]" });
      return h("span", { class: "j-str", text: JSON.stringify(value) });
    case "number":
      return h("span", { class: "j-num", text: String(value) });
    case "boolean":
      return h("span", { class: "j-bool", text: String(value) });
    default:
      return h("span", { text: String(value) });
  }
}

function jsonNode(key, value, depth) {
  const keyEl = key === null ? null : h("span", { class: "j-key", text: typeof key === "number" ? `${key}: ` : `${JSON.stringify(key)}: ` });
  if (isMarker(value)) return h("div", { class: "j-row" }, keyEl, markerView(value));
  if (value === null || typeof value !== "object" || exactInteger(value) !== null) return h("div", { class: "j-row" }, keyEl, leafView(value));
  const isArray = Array.isArray(value);
  const entries = isArray ? value.map((v, i) => [i, v]) : Object.entries(value);
  const summary = h(
    "summary",
    {},
    keyEl,
    h("span", { class: "j-brace", text: isArray ? "[" : "{" }),
    h("span", { class: "j-count", text: ` ${isArray ? plural(entries.length, "item", "items") : plural(entries.length, "key", "keys")} ` }),
    h("span", { class: "j-brace", text: isArray ? "]" : "}" }),
  );
  const details = h("details", { class: "j-node" }, summary);
  const body = h("div", { class: "j-children" });
  details.append(body);
  let shown = 0;
  const more = h("button", { type: "button", class: "j-more" });
  const showMore = () => {
    const next = entries.slice(shown, shown + JSON_CHILDREN_STEP);
    for (const [k, v] of next) body.insertBefore(jsonNode(k, v, depth + 1), more.isConnected ? more : null);
    shown += next.length;
    if (shown < entries.length) {
      more.textContent = `show ${Math.min(JSON_CHILDREN_STEP, entries.length - shown)} more of ${entries.length - shown}`;
      if (!more.isConnected) body.append(more);
    } else if (more.isConnected) more.remove();
  };
  more.addEventListener("click", showMore);
  // Children are built the first time the node opens, so a huge payload costs nothing until looked at.
  details.addEventListener("toggle", () => {
    if (details.open && shown === 0 && entries.length) showMore();
  });
  if (depth < JSON_OPEN_DEPTH) {
    details.open = true;
    if (entries.length) showMore();
  }
  return details;
}

export function jsonView(value, { title, loadDeferred, size } = {}) {
  const section = h("section", { class: "payload", dataset: { payload: title || "" } });
  const head = h("div", { class: "payload-head" }, h("h4", { text: title }));
  section.append(head);
  const body = h("div", { class: "payload-body" });
  section.append(body);
  const render = (v) => {
    clear(body);
    clear(head).append(h("h4", { text: title }));
    const raw = JSON.stringify(v, null, 2);
    let rawMode = false;
    const toggle = h("button", { type: "button", class: "raw-toggle", text: "Raw" });
    toggle.addEventListener("click", () => {
      rawMode = !rawMode;
      toggle.textContent = rawMode ? "Tree" : "Raw";
      clear(body).append(rawMode ? h("pre", { class: "raw", text: raw }) : jsonNode(null, v, 0));
    });
    head.append(toggle, copyButton(() => raw));
    body.append(jsonNode(null, v, 0));
  };
  if (loadDeferred) {
    const button = h("button", { type: "button", class: "load", text: `Load ${title.toLowerCase()} (${fmtBytes(size)})` });
    button.addEventListener("click", async () => {
      button.disabled = true;
      button.textContent = "Loading…";
      try {
        render(await loadDeferred());
      } catch (err) {
        button.disabled = false;
        button.textContent = `Could not load: ${err.message}`;
      }
    });
    body.append(h("p", { class: "muted", text: "Large payload: loaded on demand." }), button);
  } else if (value === undefined || value === null) {
    body.append(h("p", { class: "muted", text: value === null ? "null (or not captured)" : "not captured" }));
  } else {
    render(value);
  }
  return section;
}
