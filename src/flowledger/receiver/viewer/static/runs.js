// The run list: filters, summary cards, keyset pages, live updates.

"use strict";

import { api } from "./api.js";
import { clear, h, runHref, selectOf } from "./dom.js";
import { fmtAgo, fmtCount, fmtDuration, fmtTime, fmtUsd, plural, shortId, statusBadge } from "./format.js";
import { LivePage, setCrumbs, setLive } from "./page.js";
import { CONTEXT_KEYS, contextFields, contextLine } from "./context.js";

const LIST_POLL_MS = 2000;
const SUMMARY_POLL_MS = 5000;
const RUN_STATUSES = ["running", "succeeded", "failed", "aborted", "stuck"];
const RANGES = [
  ["", "all time"],
  ["15m", "last 15 min", 15 * 60e3],
  ["1h", "last hour", 3600e3],
  ["24h", "last 24 h", 24 * 3600e3],
  ["7d", "last 7 days", 7 * 24 * 3600e3],
  ["30d", "last 30 days", 30 * 24 * 3600e3],
  ["custom", "custom (UTC)"],
];
const FILTER_KEYS = ["q", "workflow_id", "status", "trigger", "mode", "range", "since", "until", "limit", ...CONTEXT_KEYS];

export class ListView extends LivePage {
  constructor(params) {
    super();
    this.filters = {};
    for (const key of FILTER_KEYS) if (params.get(key)) this.filters[key] = params.get(key);
    this.cursor = params.get("cursor") || null;
    this.direction = params.get("direction") || "older";
    this.page = null;
    this.seen = new Set();
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
    // Full text over errors, log lines and payloads; the start of a run id lists that run.
    if (f.q && !f.q.trim()) delete f.q;
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
    this.poll(LIST_POLL_MS, () => this.refresh(false));
    this.poll(SUMMARY_POLL_MS, () => this.refreshSummary());
    setLive(true, this.cursor ? "live: watching for newer runs" : "live");
  }

  select(name, label, options, value) {
    const select = selectOf({ name, id: `f-${name}`, "aria-label": label }, options, value || "");
    return h("label", { class: "field" }, h("span", { text: label }), select);
  }

  buildFilters() {
    const f = this.filters;
    const form = clear(this.filterBar);
    const search = h("input", { type: "search", name: "q", id: "f-q", placeholder: "errors, log lines, payloads, or a run id", value: f.q || "", autocomplete: "off" });
    // Any workflow id can be typed in; the list offers those run most recently (the facets are capped).
    this.workflowList = h("datalist", { id: "f-workflow-list" });
    const workflow = h("input", { type: "search", name: "workflow_id", id: "f-workflow_id", list: "f-workflow-list", placeholder: "all workflows", value: f.workflow_id || "", autocomplete: "off", "aria-label": "Workflow", spellcheck: "false" });
    this.workflowSelect = h("label", { class: "field" }, h("span", { text: "Workflow" }), workflow, this.workflowList);
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
    form.append(...contextFields(f));
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
    workflow.addEventListener("input", (ev) => {
      // A pick from the list applies at once; typed text (even one that spells a listed id on its way to a
      // longer one) applies on Enter or when the field is left. Chromium reports a pick without an inputType.
      const picked = !ev.inputType || ev.inputType === "insertReplacementText";
      if (picked && [...this.workflowList.options].some((o) => o.value === workflow.value)) apply();
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
      if (key !== "workflow_id") value = value.trim(); // a workflow id is taken as typed: it may hold spaces
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
      this.workflowList.replaceChildren(...facets.workflows.map((wf) => h("option", { value: wf })));
      if (facets.workflows_capped) {
        const input = this.workflowSelect.querySelector("input");
        input.title = `The ${facets.workflows.length} workflows run most recently are listed; type any other workflow id.`;
        this.workflowSelect.dataset.capped = "true";
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
      const link = h("a", { href: runHref(run.run_id, null, run.project ?? ""), class: "run-link", title: run.run_id, text: shortId(run.run_id, 12) });
      const error = run.error ? `${run.error.type || "error"}: ${run.error.message || ""}` : "";
      const row = h(
        "tr",
        { class: fresh ? "fresh" : "", dataset: { runId: run.run_id, status: run.status } },
        h("td", {}, statusBadge(run.status)),
        h("td", { class: "mono" }, link),
        h("td", {}, h("div", { class: "wf-id", text: run.workflow_id || "–" }), run.workflow_name && run.workflow_name !== run.workflow_id ? h("div", { class: "muted small", text: run.workflow_name }) : null, contextLine(run)),
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
        location.hash = runHref(run.run_id, null, run.project ?? "");
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
      card("last", "Last run", s.last_run ? fmtAgo(s.last_run.started_at) : "–", s.last_run ? fmtTime(s.last_run.started_at) : null, s.last_run ? runHref(s.last_run.run_id, null, s.last_run.project ?? "") : null),
    );
  }
}
