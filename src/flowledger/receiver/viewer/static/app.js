// flowledger history viewer: plain JavaScript, no build step, no dependencies.
//
// Every value that comes from a run is written with textContent (never as HTML),
// links to other pages are built from encoded ids, and an external trace link is
// only followed when it is an http(s) URL. The page is served with a
// Content-Security-Policy that allows scripts from this origin only.

"use strict";

const LIST_POLL_MS = 2000;
const SUMMARY_POLL_MS = 5000;
const RUN_POLL_MS = 1000;
const ATTEMPT_PAGE = 200;
const ROW_H = 26;
const OVERSCAN_ROWS = 12;
const WATERFALL_MAX_PX = 620;
const JSON_OPEN_DEPTH = 2;
const JSON_CHILDREN_STEP = 200;
const KEY_STORAGE = "flowledger.apiKey";
const RUN_STATUSES = ["running", "succeeded", "failed", "aborted", "stuck"];
const ACTIVE = new Set(["running", "stuck"]);
const RANGES = [
  ["", "all time"],
  ["15m", "last 15 min", 15 * 60e3],
  ["1h", "last hour", 3600e3],
  ["24h", "last 24 h", 24 * 3600e3],
  ["7d", "last 7 days", 7 * 24 * 3600e3],
  ["30d", "last 30 days", 30 * 24 * 3600e3],
  ["custom", "custom (UTC)"],
];
const SEARCH_MIN_CHARS = 4; // RUN_ID_SEARCH_MIN_CHARS of the receiver
const FILTER_KEYS = ["q", "workflow_id", "status", "trigger", "mode", "range", "since", "until", "limit"];

// --- small DOM helpers ------------------------------------------------------

/** Build an element: attributes are set as attributes or properties, children as text nodes. */
function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = String(value);
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "href") el.setAttribute("href", value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** An http(s) URL to follow, or null: nothing else (javascript:, data:...) becomes a link. */
function safeExternalUrl(text) {
  if (typeof text !== "string") return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

function runHref(runId, span) {
  let href = "#/runs/" + encodeURIComponent(runId);
  if (span) href += "?span=" + encodeURIComponent(span);
  return href;
}

// --- formatting -------------------------------------------------------------

function fmtDuration(ms) {
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

function fmtTime(ts) {
  if (!ts) return "–";
  return ts.replace("T", " ").replace(/\.\d+Z$/, "").replace(/Z$/, "") + " UTC";
}

function fmtAgo(ts) {
  if (!ts) return "";
  const s = (Date.now() - Date.parse(ts)) / 1000;
  if (s < 5) return "just now";
  if (s < 90) return `${Math.round(s)} s ago`;
  if (s < 5400) return `${Math.round(s / 60)} min ago`;
  if (s < 48 * 3600) return `${Math.round(s / 3600)} h ago`;
  return `${Math.round(s / 86400)} days ago`;
}

function fmtUsd(usd) {
  if (usd === null || usd === undefined) return "–";
  if (usd === 0) return "$0";
  if (usd < 0.01) return "$" + usd.toPrecision(2);
  if (usd < 100) return "$" + usd.toFixed(4);
  // Grouped, and whole dollars from $10,000: a large total stays short enough for its card.
  return "$" + usd.toLocaleString("en-US", { minimumFractionDigits: usd < 10_000 ? 2 : 0, maximumFractionDigits: usd < 10_000 ? 2 : 0 });
}

function fmtCount(n) {
  return n === null || n === undefined ? "–" : Number(n).toLocaleString("en-US");
}

// "1 key", "2 keys": a count with its noun in the right number.
function plural(n, one, many) {
  return `${fmtCount(n)} ${Number(n) === 1 ? one : many}`;
}

function fmtBytes(n) {
  if (n === null || n === undefined) return "";
  if (n < 1024) return `${n} B`;
  if (n < 1024 * 1024) return `${(n / 1024).toFixed(1)} KiB`;
  return `${(n / 1024 / 1024).toFixed(1)} MiB`;
}

function shortId(id, tail = 4) {
  return id && id.length > 9 + tail ? id.slice(0, 8) + "…" + id.slice(-tail) : id || "";
}

function statusBadge(status) {
  return h("span", { class: `badge status-${status || "unknown"}`, text: status || "unknown" });
}

// --- talking to the receiver --------------------------------------------------

class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) if (v !== null && v !== undefined && v !== "") url.searchParams.set(k, v);
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = "Bearer " + key;
  const response = await fetch(url, { headers, cache: "no-store" });
  if (!response.ok) {
    let message = `${response.status} ${response.statusText}`;
    try {
      const body = await response.json();
      if (body && typeof body.error === "string") message = body.error;
    } catch {
      /* not JSON */
    }
    throw new ApiError(response.status, message);
  }
  return response.json();
}

function showBanner(message) {
  const banner = document.getElementById("banner");
  banner.textContent = message || "";
  banner.hidden = !message;
}

function showKeyForm(retry) {
  if (document.getElementById("api-key")) return; // several requests can fail at once: one form
  const app = clear(document.getElementById("app"));
  const input = h("input", { type: "password", id: "api-key", autocomplete: "off", placeholder: "API key" });
  const form = h(
    "form",
    {
      class: "key-form",
      on: {
        submit: (ev) => {
          ev.preventDefault();
          sessionStorage.setItem(KEY_STORAGE, input.value.trim());
          retry();
        },
      },
    },
    h("p", { text: "This receiver needs an API key. It is kept for this browser tab only." }),
    input,
    h("button", { type: "submit", text: "Use key" }),
  );
  app.append(form);
}

// --- copy ---------------------------------------------------------------------

async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    const area = h("textarea", { class: "offscreen", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
  }
  if (button) {
    const label = button.textContent;
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => (button.textContent = label), 1200);
  }
}

function copyButton(getText, label = "Copy") {
  const button = h("button", { type: "button", class: "copy", text: label });
  button.addEventListener("click", (ev) => {
    ev.stopPropagation();
    copyText(getText(), button);
  });
  return button;
}

// --- JSON tree ------------------------------------------------------------------

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
  if (value === null || typeof value !== "object") return h("div", { class: "j-row" }, keyEl, leafView(value));
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

function jsonView(value, { title, loadDeferred, size } = {}) {
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

// --- routing --------------------------------------------------------------------

function parseHash() {
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?", 2);
  const params = new URLSearchParams(query || "");
  const match = path.match(/^\/runs\/([^/]+)$/);
  if (match) return { view: "run", runId: decodeURIComponent(match[1]), params };
  return { view: "list", params };
}

let current = null; // the active view; has stop()

function route() {
  if (current) current.stop();
  showBanner("");
  const where = parseHash();
  current = where.view === "run" ? new RunView(where.runId, where.params) : new ListView(where.params);
  current.start();
}

function setCrumbs(...parts) {
  const crumbs = clear(document.getElementById("crumbs"));
  for (const part of parts) crumbs.append(h("span", { class: "sep", text: "/" }), part);
}

function setLive(on, label) {
  const el = document.getElementById("live");
  el.hidden = !on;
  el.textContent = label || "live";
}

/** Runs ``fn`` every ``ms`` while the tab is visible; returns a stop function. */
function every(ms, fn) {
  let timer = null;
  let stopped = false;
  let failing = false;
  const tick = async () => {
    if (stopped) return;
    if (!document.hidden) {
      try {
        await fn();
        if (failing) showBanner(""); // the receiver answers again
        failing = false;
      } catch (err) {
        failing = true;
        showBanner(`Live update failed: ${err.message}`);
      }
    }
    if (!stopped) timer = setTimeout(tick, ms);
  };
  timer = setTimeout(tick, ms);
  return () => {
    stopped = true;
    clearTimeout(timer);
  };
}

// --- run list ---------------------------------------------------------------------

class ListView {
  constructor(params) {
    this.filters = {};
    for (const key of FILTER_KEYS) if (params.get(key)) this.filters[key] = params.get(key);
    this.cursor = params.get("cursor") || null;
    this.direction = params.get("direction") || "older";
    this.page = null;
    this.seen = new Set();
    this.stops = [];
  }

  query() {
    const f = { ...this.filters };
    const range = RANGES.find((r) => r[0] === f.range);
    if (range && range[2]) {
      f.since = new Date(Date.now() - range[2]).toISOString();
      delete f.until;
    } else if (f.range !== "custom") {
      delete f.since;
      delete f.until;
    }
    delete f.range;
    // A run-id search starts at SEARCH_MIN_CHARS characters (fewer would match nearly every run).
    if (f.q && f.q.trim().length < SEARCH_MIN_CHARS) delete f.q;
    return f;
  }

  hashFor(filters, cursor, direction) {
    const params = new URLSearchParams();
    for (const key of FILTER_KEYS) if (filters[key]) params.set(key, filters[key]);
    if (cursor) {
      params.set("cursor", cursor);
      params.set("direction", direction);
    }
    const text = params.toString();
    return "#/" + (text ? "?" + text : "");
  }

  navigate(filters, cursor = null, direction = "older") {
    location.hash = this.hashFor(filters, cursor, direction);
  }

  start() {
    document.title = "flowledger · runs";
    setCrumbs(h("span", { text: "runs" }));
    const app = clear(document.getElementById("app"));
    this.filterBar = h("form", { class: "filters", id: "filters" });
    this.cards = h("section", { class: "cards", id: "cards", "aria-label": "Summary" });
    this.notice = h("div", { class: "notice", id: "new-runs", hidden: true });
    this.table = h("table", { class: "runs", id: "runs-table" });
    this.pager = h("nav", { class: "pager", id: "pager", "aria-label": "Pages" });
    app.append(this.filterBar, this.cards, this.notice, h("div", { class: "table-wrap" }, this.table), this.pager);
    this.buildFilters();
    this.loadFacets();
    this.refresh(true).catch((err) => this.fail(err));
    this.refreshSummary().catch((err) => this.fail(err));
    this.stops.push(every(LIST_POLL_MS, () => this.refresh(false)));
    this.stops.push(every(SUMMARY_POLL_MS, () => this.refreshSummary()));
    setLive(true, this.cursor ? "live: watching for newer runs" : "live");
  }

  stop() {
    for (const stop of this.stops) stop();
    this.stops = [];
    setLive(false);
  }

  fail(err) {
    if (err instanceof ApiError && err.status === 401) {
      this.stop();
      showKeyForm(route);
      return;
    }
    showBanner(err.message);
  }

  select(name, label, options, value) {
    const select = h("select", { name, id: `f-${name}`, "aria-label": label });
    for (const [v, text] of options) {
      const option = h("option", { value: v, text });
      if (v === (value || "")) option.selected = true;
      select.append(option);
    }
    return h("label", { class: "field" }, h("span", { text: label }), select);
  }

  buildFilters() {
    const f = this.filters;
    const form = clear(this.filterBar);
    const search = h("input", { type: "search", name: "q", id: "f-q", placeholder: "run id starts with… (4+ characters)", minlength: SEARCH_MIN_CHARS, value: f.q || "", autocomplete: "off" });
    this.workflowSelect = this.select("workflow_id", "Workflow", [["", "all workflows"], ...(f.workflow_id ? [[f.workflow_id, f.workflow_id]] : [])], f.workflow_id);
    form.append(
      h("label", { class: "field grow" }, h("span", { text: "Search" }), search),
      this.workflowSelect,
      this.select("status", "Status", [["", "any status"], ...RUN_STATUSES.map((s) => [s, s])], f.status),
      this.select("trigger", "Trigger", [["", "any trigger"], ["manual", "manual"], ["http", "http"], ["schedule", "schedule"]], f.trigger),
      this.select("mode", "Mode", [["", "dry and live"], ["live", "live only"], ["dry", "dry runs only"]], f.mode),
      this.select("range", "Started", RANGES.map((r) => [r[0], r[1]]), f.range),
    );
    if (f.range === "custom") {
      const local = (ts) => (ts ? ts.replace(/Z$/, "").slice(0, 16) : "");
      form.append(
        h("label", { class: "field" }, h("span", { text: "From (UTC)" }), h("input", { type: "datetime-local", name: "since", id: "f-since", value: local(f.since) })),
        h("label", { class: "field" }, h("span", { text: "To (UTC)" }), h("input", { type: "datetime-local", name: "until", id: "f-until", value: local(f.until) })),
      );
    }
    form.append(this.select("limit", "Per page", [["", "50"], ["100", "100"], ["200", "200"], ["500", "500"]], f.limit));
    const apply = () => this.navigate(this.readFilters());
    form.addEventListener("change", (ev) => {
      if (ev.target.name !== "q") apply();
    });
    form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      apply();
    });
    let typing = null;
    search.addEventListener("input", () => {
      clearTimeout(typing);
      typing = setTimeout(apply, 350);
    });
    form.append(h("button", { type: "submit", class: "hidden-submit", text: "Apply" }));
    if (Object.keys(f).length) {
      const reset = h("button", { type: "button", class: "reset", id: "f-reset", text: "Clear filters" });
      reset.addEventListener("click", () => this.navigate({}));
      form.append(reset);
    }
  }

  readFilters() {
    const data = new FormData(this.filterBar);
    const out = {};
    for (const key of FILTER_KEYS) {
      let value = data.get(key);
      if (typeof value !== "string" || !value.trim()) continue;
      value = value.trim();
      if (key === "since" || key === "until") value = value.length === 16 ? `${value}:00Z` : `${value}Z`;
      out[key] = value;
    }
    if (out.range !== "custom") {
      delete out.since;
      delete out.until;
    }
    return out;
  }

  async loadFacets() {
    try {
      const facets = await api("/api/viewer/facets");
      const select = this.workflowSelect.querySelector("select");
      for (const wf of facets.workflows) {
        if (wf === this.filters.workflow_id) continue;
        select.append(h("option", { value: wf, text: wf }));
      }
    } catch (err) {
      this.fail(err);
    }
  }

  async refresh(first) {
    const onNewest = !this.cursor;
    if (!first && !onNewest) {
      // On an older page the rows stay put; only say that newer runs arrived.
      const newest = await api("/api/viewer/runs", { ...this.query(), limit: 1 });
      const top = newest.runs[0];
      if (top && this.newestSeen && top.run_id !== this.newestSeen) this.showNotice();
      return;
    }
    const page = await api("/api/viewer/runs", {
      ...this.query(),
      cursor: this.cursor,
      direction: this.cursor ? this.direction : null,
    });
    if (first) {
      if (onNewest) this.newestSeen = page.runs[0]?.run_id;
      else this.newestSeen = (await api("/api/viewer/runs", { ...this.query(), limit: 1 })).runs[0]?.run_id;
    }
    this.renderTable(page, first);
    this.renderPager(page);
  }

  showNotice() {
    const notice = clear(this.notice);
    notice.hidden = false;
    const go = h("a", { href: this.hashFor(this.filters), text: "Show the newest runs" });
    notice.append("New runs arrived. ", go);
  }

  renderTable(page, first) {
    const table = clear(this.table);
    table.append(
      h(
        "thead",
        {},
        h("tr", {}, ["Status", "Run", "Workflow", "Trigger", "Mode", "Started", "Duration", "Cost", "Error"].map((t) => h("th", { scope: "col", text: t }))),
      ),
    );
    const body = h("tbody", {});
    if (!page.runs.length) {
      body.append(h("tr", { class: "empty" }, h("td", { colspan: 9, text: "No runs match these filters." })));
    }
    for (const run of page.runs) {
      const fresh = !first && !this.seen.has(run.run_id);
      this.seen.add(run.run_id);
      const link = h("a", { href: runHref(run.run_id), class: "run-link", title: run.run_id, text: shortId(run.run_id, 12) });
      const error = run.error ? `${run.error.type || "error"}: ${run.error.message || ""}` : "";
      const row = h(
        "tr",
        { class: fresh ? "fresh" : "", dataset: { runId: run.run_id, status: run.status } },
        h("td", {}, statusBadge(run.status)),
        h("td", { class: "mono" }, link),
        h("td", {}, h("div", { class: "wf-id", text: run.workflow_id || "–" }), run.workflow_name && run.workflow_name !== run.workflow_id ? h("div", { class: "muted small", text: run.workflow_name }) : null),
        h("td", { text: run.trigger_type || "–" }),
        h("td", {}, run.dry_run ? h("span", { class: "badge dry", text: "dry run" }) : h("span", { class: "muted", text: "live" })),
        h("td", { class: "nowrap", title: run.started_at || "", text: fmtTime(run.started_at) }),
        h("td", { class: "num", text: run.status === "running" ? "running…" : fmtDuration(run.duration_ms) }),
        h("td", { class: "num", text: run.cost ? fmtUsd(run.cost.usd) : "–" }),
        h(
          "td",
          { class: "error-cell" },
          error ? h("span", { class: "error-text", title: error, text: error }) : null,
          run.error && run.error.node_id ? h("span", { class: "muted small", text: ` at ${run.error.node_id}` }) : null,
        ),
      );
      row.addEventListener("click", (ev) => {
        if (ev.target.closest("a")) return;
        location.hash = runHref(run.run_id);
      });
      body.append(row);
    }
    table.append(body);
  }

  renderPager(page) {
    const pager = clear(this.pager);
    const newest = h("a", { href: this.hashFor(this.filters), class: "button", id: "page-newest", text: "Newest" });
    const newer = page.newer
      ? h("a", { href: this.hashFor(this.filters, page.newer, "newer"), class: "button", id: "page-newer", text: "← Newer" })
      : h("span", { class: "button disabled", text: "← Newer" });
    const older = page.older
      ? h("a", { href: this.hashFor(this.filters, page.older, "older"), class: "button", id: "page-older", text: "Older →" })
      : h("span", { class: "button disabled", text: "Older →" });
    pager.append(newest, newer, older, h("span", { class: "muted small", text: `${plural(page.runs.length, "run", "runs")} on this page` }));
  }

  async refreshSummary() {
    const { limit: _pageSize, ...filters } = this.query(); // the cards take the filters only
    const s = await api("/api/viewer/summary", filters);
    const cards = clear(this.cards);
    const card = (key, label, value, extra, href) => {
      // A value is text, or a list of parts that may wrap between them (never inside a number).
      const parts = Array.isArray(value) ? value.flatMap((part, i) => (i ? [" ", h("span", { class: "part", text: part })] : [h("span", { class: "part", text: part })])) : null;
      const valueEl = parts ? h("div", { class: "value" }, parts) : h("div", { class: "value", text: value });
      const el = h(href ? "a" : "div", { class: `card card-${key}`, dataset: { card: key }, href, title: `${label}: ${valueEl.textContent}` }, h("div", { class: "card-label", text: label }), valueEl);
      if (extra) el.append(h("div", { class: "card-extra muted small", text: extra }));
      return el;
    };
    const by = s.by_status;
    const withStatus = (status) => this.hashFor({ ...this.filters, status });
    cards.append(
      card("total", "Runs", fmtCount(s.total)),
      card("succeeded", "Succeeded", fmtCount(by.succeeded), null, withStatus("succeeded")),
      card("failed", "Failed", fmtCount(by.failed), null, withStatus("failed")),
      card("aborted", "Aborted", fmtCount(by.aborted), null, withStatus("aborted")),
      card("stuck", "Stuck", fmtCount(by.stuck), null, withStatus("stuck")),
      card("running", "Running", fmtCount(by.running), null, withStatus("running")),
      card("dry", "Dry / live", [`${fmtCount(s.dry_run)} /`, fmtCount(s.live)]),
      card("rate", "Success rate", s.success_rate === null ? "–" : `${(s.success_rate * 100).toFixed(1)} %`, "of finished runs"),
      card("p50", "p50 duration", fmtDuration(s.p50_duration_ms), s.duration_sample_capped ? `of the newest ${plural(s.duration_sample, "run", "runs")}` : null),
      card("p95", "p95 duration", fmtDuration(s.p95_duration_ms)),
      card("cost", "Total cost", fmtUsd(s.total_cost_usd)),
      card("last", "Last run", s.last_run ? fmtAgo(s.last_run.started_at) : "–", s.last_run ? fmtTime(s.last_run.started_at) : null, s.last_run ? runHref(s.last_run.run_id) : null),
    );
  }
}

// --- one run ----------------------------------------------------------------------

class RunView {
  constructor(runId, params) {
    this.runId = runId;
    this.selected = params.get("span") || null;
    this.run = null;
    this.pages = new Map(); // page index -> {generation, attempts}
    this.generation = 0; // bumped by a live refresh: pages on screen stay until their fresh copy arrives
    this.loading = new Map(); // page index -> promise
    this.total = 0;
    this.stops = [];
    this.frame = 0;
    this.detailToken = 0;
  }

  start() {
    document.title = "flowledger · run";
    setCrumbs(h("a", { href: "#/", text: "runs" }), h("span", { class: "mono", text: shortId(this.runId) }));
    const app = clear(document.getElementById("app"));
    this.header = h("section", { class: "run-header", id: "run-header" });
    this.payloads = h("section", { class: "run-payloads", id: "run-payloads" });
    this.toolbar = h("div", { class: "wf-toolbar", id: "wf-toolbar" });
    this.strip = h("div", { class: "wf-strip", id: "wf-strip", title: "attempts running at once" });
    this.axis = h("div", { class: "wf-axis", id: "wf-axis" });
    this.spacer = h("div", { class: "wf-spacer" });
    this.rows = h("div", { class: "wf-rows", id: "wf-rows", role: "list" });
    this.scroller = h("div", { class: "wf-scroll", id: "wf-scroll", tabindex: "0" }, this.spacer, this.rows);
    this.panel = h("aside", { class: "node-panel", id: "node-panel", "aria-label": "Node attempt" }, h("p", { class: "muted", text: "Select a node attempt in the waterfall to see its input, output and error." }));
    const waterfall = h("section", { class: "waterfall", id: "waterfall" }, h("h3", { text: "Node attempts" }), this.toolbar, this.strip, this.axis, this.scroller);
    app.append(this.header, h("div", { class: "run-body" }, h("div", { class: "run-main" }, waterfall, this.payloads), this.panel));
    this.scroller.addEventListener("scroll", () => this.schedule(), { passive: true });
    this.scroller.addEventListener("keydown", (ev) => this.onKey(ev));
    this.onResize = () => this.schedule();
    window.addEventListener("resize", this.onResize);
    this.load().catch((err) => this.fail(err));
  }

  stop() {
    for (const stop of this.stops) stop();
    this.stops = [];
    window.removeEventListener("resize", this.onResize);
    cancelAnimationFrame(this.frame);
    setLive(false);
  }

  fail(err) {
    if (err instanceof ApiError && err.status === 401) {
      this.stop();
      showKeyForm(route);
      return;
    }
    if (err instanceof ApiError && err.status === 404) {
      clear(document.getElementById("app")).append(h("p", { class: "banner", text: err.message }), h("a", { href: "#/", text: "Back to the runs" }));
      this.stop();
      return;
    }
    showBanner(err.message);
  }

  async load() {
    const run = await api(`/api/viewer/runs/${encodeURIComponent(this.runId)}`);
    this.apply(run);
    this.renderPayloads();
    if (this.selected) this.showAttempt(this.selected);
    if (ACTIVE.has(run.status)) this.watch();
  }

  watch() {
    setLive(true, "live: updating");
    const stop = every(RUN_POLL_MS, async () => {
      const run = await api(`/api/viewer/runs/${encodeURIComponent(this.runId)}`);
      const wasActive = ACTIVE.has(this.run.status);
      // Attempts may have started, finished or moved: reload the pages on screen.
      this.generation += 1;
      this.apply(run);
      if (wasActive && !ACTIVE.has(run.status)) {
        this.renderPayloads();
        stop();
        setLive(true, `finished: ${run.status}`);
        setTimeout(() => setLive(false), 4000);
      }
      if (this.selected) this.showAttempt(this.selected, true);
    });
    this.stops.push(stop);
  }

  apply(run) {
    this.run = run;
    this.total = run.attempts.total;
    this.t0 = run.attempts.t0;
    this.t1 = run.attempts.t1;
    document.title = `flowledger · ${run.workflow_id || "run"} · ${run.status}`;
    this.renderHeader();
    this.renderToolbar();
    this.renderStrip();
    this.renderAxis();
    this.sizeRows();
    this.schedule();
  }

  sizeRows() {
    this.spacer.style.height = `${this.total * ROW_H}px`;
    // Short runs get a short waterfall; long ones scroll inside it.
    this.scroller.style.height = `${Math.min(Math.max(this.total, 3) * ROW_H + 2, WATERFALL_MAX_PX)}px`;
  }

  renderHeader() {
    const run = this.run;
    const header = clear(this.header);
    const facts = h("dl", { class: "facts" });
    const fact = (label, ...value) => facts.append(h("div", { class: "fact", dataset: { fact: label.toLowerCase() } }, h("dt", { text: label }), h("dd", {}, ...value)));
    const running = ACTIVE.has(run.status);
    // The receiver's clock, not this browser's, says how long a running run has been going.
    const sofar = run.attempts.now * 1000 - Date.parse(run.started_at);
    const duration = running && run.started_at ? `${fmtDuration(Math.max(sofar, 0))} so far` : fmtDuration(run.duration_ms);
    fact("Status", statusBadge(run.status), run.stuck_reason ? h("span", { class: "muted small", text: ` ${run.stuck_reason}` }) : null);
    fact("Trigger", run.trigger_type || "–");
    fact("Mode", run.dry_run ? h("span", { class: "badge dry", text: "dry run" }) : "live");
    fact("Started", h("span", { title: run.started_at || "", text: fmtTime(run.started_at) }));
    fact("Duration", duration);
    if (run.cost) {
      const c = run.cost;
      fact("Cost", fmtUsd(c.usd), h("span", { class: "muted small", text: ` · ${plural(c.tokens, "token", "tokens")} · ${plural(c.tool_calls, "tool call", "tool calls")} · ${plural(c.external_requests, "request", "requests")}` }));
    } else fact("Cost", "–");
    const failing = run.error?.node_id || (run.status !== "succeeded" ? run.attempts.failing_node_id : null);
    if (failing) {
      const span = run.attempts.failing_span_id;
      fact("Failing node", span ? h("a", { href: runHref(run.run_id, span), class: "mono", id: "failing-node", text: failing }) : h("span", { class: "mono", text: failing }));
    }
    const traceUrl = safeExternalUrl(run.trace_url);
    if (traceUrl) {
      fact("Trace", h("a", { href: traceUrl, id: "trace-link", target: "_blank", rel: "noopener noreferrer", text: "open in trace viewer ↗" }), h("span", { class: "muted small mono", text: ` ${run.trace_id || ""}` }));
    } else if (run.trace_id) {
      fact("Trace", h("span", { class: "mono small", text: run.trace_id }));
    }
    const title = h(
      "div",
      { class: "run-title" },
      h("h2", {}, h("span", { text: run.workflow_name || run.workflow_id || "run" }), run.workflow_version ? h("span", { class: "muted small", text: ` v${run.workflow_version}` }) : null),
      h("div", { class: "muted mono small" }, h("span", { text: `workflow ${run.workflow_id || "–"} · run ${run.run_id} ` }), copyButton(() => run.run_id, "Copy id")),
    );
    header.append(title, facts);
    if (run.error) {
      header.append(
        h(
          "div",
          { class: "run-error", id: "run-error" },
          h("strong", { text: run.error.type || "error" }),
          h("span", { text: `: ${run.error.message || ""}` }),
        ),
      );
    }
  }

  renderPayloads() {
    const run = this.run;
    const box = clear(this.payloads);
    const deferred = new Set(run.deferred || []);
    const loader = (kind) => () => api(`/api/viewer/runs/${encodeURIComponent(run.run_id)}/payload/${kind}`);
    const item = (title, kind, value) =>
      h("details", { class: "run-payload" }, h("summary", { text: title }), jsonView(value, { title, loadDeferred: deferred.has(kind) ? loader(kind) : null, size: run.payload_chars?.[kind] }));
    box.append(h("h3", { text: "Run payloads" }), item("Trigger input", "input", run.input), item("Run output", "output", run.output));
    if (run.attributes) box.append(h("details", { class: "run-payload" }, h("summary", { text: "Attributes" }), jsonView(run.attributes, { title: "Attributes" })));
  }

  renderToolbar() {
    const a = this.run.attempts;
    const bar = clear(this.toolbar);
    bar.append(h("span", { class: "count", id: "attempt-count", text: plural(a.total, "attempt", "attempts") }));
    for (const [status, n] of Object.entries(a.by_status)) {
      if (n) bar.append(h("span", { class: `legend status-${status}` }, h("span", { class: "dot" }), `${fmtCount(n)} ${status}`));
    }
    bar.append(h("span", { class: "muted small", id: "max-concurrency", text: `up to ${fmtCount(a.max_concurrency)} at once` }));
  }

  renderStrip() {
    const strip = clear(this.strip);
    const values = this.run.attempts.concurrency || [];
    const peak = Math.max(1, ...values);
    const inner = h("div", { class: "strip-bars" });
    for (const v of values) {
      const bar = h("div", { class: "strip-bar", title: `${v} running` });
      bar.style.height = `${(v / peak) * 100}%`;
      inner.append(bar);
    }
    strip.append(h("div", { class: "strip-label muted small", text: `concurrency (peak ${peak})` }), inner);
  }

  renderAxis() {
    const axis = clear(this.axis);
    axis.append(h("div", { class: "axis-label muted small", text: "time since start" }));
    const track = h("div", { class: "axis-track" });
    axis.append(track);
    if (this.t0 === null || this.t1 === null) return;
    const span = Math.max(this.t1 - this.t0, 1e-6);
    const step = niceStep(span / 6);
    for (let t = 0; t <= span + 1e-9; t += step) {
      const tick = h("div", { class: "tick", text: fmtDuration(t * 1000) });
      tick.style.left = `${(t / span) * 100}%`;
      track.append(tick);
    }
  }

  schedule() {
    cancelAnimationFrame(this.frame);
    this.frame = requestAnimationFrame(() => this.renderRows());
  }

  ensurePage(index) {
    const kept = this.pages.get(index);
    if ((kept && kept.generation === this.generation) || this.loading.has(index)) return;
    const generation = this.generation;
    const promise = api(`/api/viewer/runs/${encodeURIComponent(this.runId)}/attempts`, { offset: index * ATTEMPT_PAGE, limit: ATTEMPT_PAGE })
      .then((page) => {
        this.pages.set(index, { generation, attempts: page.attempts });
        if (page.total !== this.total) {
          this.total = page.total;
          this.sizeRows();
        }
        this.schedule();
      })
      .catch((err) => this.fail(err))
      .finally(() => this.loading.delete(index));
    this.loading.set(index, promise);
  }

  attemptAt(i) {
    const page = this.pages.get(Math.floor(i / ATTEMPT_PAGE));
    return page ? page.attempts[i % ATTEMPT_PAGE] : undefined;
  }

  renderRows() {
    const top = this.scroller.scrollTop;
    const height = this.scroller.clientHeight || 400;
    const first = Math.max(0, Math.floor(top / ROW_H) - OVERSCAN_ROWS);
    const last = Math.min(this.total - 1, Math.ceil((top + height) / ROW_H) + OVERSCAN_ROWS);
    for (let p = Math.floor(first / ATTEMPT_PAGE); p <= Math.floor(Math.max(last, 0) / ATTEMPT_PAGE); p++) this.ensurePage(p);
    const rows = clear(this.rows);
    const span = this.t0 === null ? 1 : Math.max(this.t1 - this.t0, 1e-6);
    const now = this.run.attempts.now;
    for (let i = first; i <= last; i++) {
      const a = this.attemptAt(i);
      const row = h("div", { class: "wf-row", role: "listitem", dataset: { index: i } });
      row.style.top = `${i * ROW_H}px`;
      if (!a) {
        row.classList.add("placeholder");
        row.append(h("div", { class: "wf-label muted", text: "…" }));
        rows.append(row);
        continue;
      }
      row.dataset.span = a.span_id;
      row.dataset.status = a.status || "running";
      row.dataset.node = a.node_id || "";
      row.tabIndex = -1;
      if (a.span_id === this.selected) row.classList.add("selected");
      const label = h("div", { class: "wf-label" }, h("span", { class: `dot status-${a.status || "running"}` }), h("span", { class: "node-id", text: a.node_id || "?" }));
      if (a.item !== null && a.item !== undefined) label.append(h("span", { class: "item", text: `[${a.item}]` }));
      if (a.attempt > 1) label.append(h("span", { class: "badge retry", text: `retry ${a.attempt - 1}` }));
      if (a.simulated) label.append(h("span", { class: "badge sim", text: "simulated" }));
      if (a.duplicate) label.append(h("span", { class: "badge dup", text: "duplicate" }));
      if (a.location) label.title = `${a.location.file}:${a.location.line}${a.location.path ? " · " + a.location.path : ""}`;
      const lane = h("div", { class: "wf-lane" });
      const start = a.started_at ? Date.parse(a.started_at) / 1000 : null;
      if (a.status === "skipped") {
        const at = start === null ? 0 : ((start - this.t0) / span) * 100;
        const mark = h("div", { class: "skip-mark", title: a.skip_reason || "skipped" });
        mark.style.left = `calc(${at}% - 5px)`;
        const reason = h("span", { class: "skip-reason", text: `skipped: ${a.skip_reason || "no reason given"}` });
        if (at > 50) reason.style.right = `calc(${100 - at}% + 12px)`;
        else reason.style.left = `calc(${at}% + 12px)`;
        lane.append(mark, reason);
      } else if (start !== null) {
        const end = a.completed_at ? Date.parse(a.completed_at) / 1000 : now;
        const bar = h("div", { class: `bar status-${a.status || "running"}` });
        const left = ((start - this.t0) / span) * 100;
        const width = Math.max(((end - start) / span) * 100, 0);
        bar.style.left = `${left}%`;
        bar.style.width = `max(${width}%, 2px)`;
        const text = h("span", { class: "bar-text", text: a.status === "running" ? "running…" : fmtDuration(a.duration_ms) });
        text.style.left = left > 70 ? "auto" : `calc(${left + width}% + 6px)`;
        if (left > 70) text.style.right = `calc(${100 - left}% + 6px)`;
        lane.append(bar, text);
      }
      row.append(label, lane);
      row.addEventListener("click", () => this.select(a.span_id));
      rows.append(row);
    }
  }

  onKey(ev) {
    if (ev.key !== "ArrowDown" && ev.key !== "ArrowUp") return;
    ev.preventDefault();
    let index = -1;
    for (const [p, { attempts }] of this.pages) {
      const j = attempts.findIndex((a) => a.span_id === this.selected);
      if (j >= 0) index = p * ATTEMPT_PAGE + j;
    }
    const next = Math.min(this.total - 1, Math.max(0, index + (ev.key === "ArrowDown" ? 1 : -1)));
    const a = this.attemptAt(next);
    if (!a) return;
    const top = next * ROW_H;
    if (top < this.scroller.scrollTop) this.scroller.scrollTop = top;
    else if (top + ROW_H > this.scroller.scrollTop + this.scroller.clientHeight) this.scroller.scrollTop = top + ROW_H - this.scroller.clientHeight;
    this.select(a.span_id);
  }

  /** Scroll the waterfall so that row ``index`` is on screen (a deep link may point far down a long run). */
  reveal(index) {
    if (index === undefined || index === null) return;
    const top = index * ROW_H;
    const view = this.scroller;
    if (top < view.scrollTop || top + ROW_H > view.scrollTop + view.clientHeight) {
      view.scrollTop = Math.max(0, top - view.clientHeight / 2);
      this.schedule();
    }
  }

  select(span) {
    this.selected = span;
    history.replaceState(null, "", runHref(this.runId, span));
    this.schedule();
    this.showAttempt(span);
  }

  async showAttempt(span, quiet = false) {
    const token = ++this.detailToken;
    let a;
    try {
      a = await api(`/api/viewer/runs/${encodeURIComponent(this.runId)}/attempts/${encodeURIComponent(span)}`);
    } catch (err) {
      if (!quiet) showBanner(err.message);
      return;
    }
    if (token !== this.detailToken) return;
    // A live refresh keeps the panel as it is unless the attempt changed.
    const signature = JSON.stringify([a.status, a.completed_at, a.deferred]);
    if (quiet && signature === this.panelSignature) return;
    this.panelSignature = signature;
    if (!quiet) this.reveal(a.index);
    const panel = clear(this.panel);
    panel.dataset.span = a.span_id;
    const title = h("h3", {}, statusBadge(a.status), " ", h("span", { class: "mono", id: "panel-node", text: a.node_id || "?" }));
    if (a.item !== null && a.item !== undefined) title.append(h("span", { class: "item", text: ` [${a.item}]` }));
    title.append(h("span", { class: "muted small", text: ` attempt ${a.attempt ?? 1}` }));
    const facts = h("dl", { class: "facts compact" });
    const fact = (label, ...value) => facts.append(h("div", { class: "fact", dataset: { fact: label.toLowerCase() } }, h("dt", { text: label }), h("dd", {}, ...value)));
    fact("Duration", a.status === "running" ? "running…" : fmtDuration(a.duration_ms));
    fact("Started", fmtTime(a.started_at));
    fact("Finished", fmtTime(a.completed_at));
    if (a.location) {
      fact("Defined at", h("span", { class: "mono", id: "panel-location", text: `${a.location.file}:${a.location.line}` }), a.location.path ? h("span", { class: "muted small", text: ` ${a.location.path}` }) : null);
    }
    if (a.skip_reason) fact("Skipped", h("span", { id: "panel-skip", text: a.skip_reason }));
    if (a.effect) fact("Effect", a.simulated ? "simulated (dry run)" : "performed", a.duplicate ? " · duplicate, not repeated" : "");
    if (a.idempotency_key) fact("Idempotency key", h("span", { class: "mono small", text: a.idempotency_key }));
    if (a.cost) fact("Cost", `${fmtUsd(a.cost.usd)} · ${plural(a.cost.tokens, "token", "tokens")}`);
    fact("Span", h("span", { class: "mono small", text: a.span_id }));
    panel.append(title, facts);
    const deferred = new Set(a.deferred || []);
    const loader = (kind) => () => api(`/api/viewer/runs/${encodeURIComponent(this.runId)}/attempts/${encodeURIComponent(a.span_id)}/${kind}`);
    if (a.error) {
      const error = h("section", { class: "panel-error", id: "panel-error" }, h("h4", { text: "Error" }), h("div", {}, h("strong", { text: a.error.type || "error" }), h("span", { text: `: ${a.error.message || ""}` })));
      if (a.error.stack || deferred.has("error_stack")) {
        const stack = h("details", { class: "stack" }, h("summary", { text: "Stack trace" }));
        if (deferred.has("error_stack")) {
          const button = h("button", { type: "button", class: "load", text: "Load stack trace" });
          button.addEventListener("click", async () => button.replaceWith(h("pre", { text: await loader("error_stack")() })));
          stack.append(button);
        } else stack.append(h("pre", { text: a.error.stack }), copyButton(() => a.error.stack));
        error.append(stack);
      }
      panel.append(error);
    }
    panel.append(
      jsonView(a.input, { title: "Input", loadDeferred: deferred.has("input") ? loader("input") : null, size: a.payload_chars?.input }),
      jsonView(a.output, { title: "Output", loadDeferred: deferred.has("output") ? loader("output") : null, size: a.payload_chars?.output }),
    );
  }
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}

window.addEventListener("hashchange", () => {
  // Selecting an attempt only replaces the state; a real hash change is a new page.
  route();
});
route();
