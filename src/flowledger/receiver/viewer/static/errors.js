// The error groups: what keeps failing, biggest first, each with its sample runs.

"use strict";

import { api } from "./api.js";
import { clear, h, runHref, selectOf } from "./dom.js";
import { fmtAgo, fmtCount, fmtTime, shortId } from "./format.js";
import { LivePage, setCrumbs, setLive } from "./page.js";

const POLL_MS = 5000;
const MAX_GROUPS = 1000; // MAX_ERROR_GROUPS of the receiver
const RANGES = [
  ["", "all time"],
  ["24h", "last 24 h", 24 * 3600e3],
  ["7d", "last 7 days", 7 * 24 * 3600e3],
  ["30d", "last 30 days", 30 * 24 * 3600e3],
];

export class ErrorsView extends LivePage {
  constructor(params) {
    super();
    this.fingerprint = params.get("fingerprint") || "";
    this.workflow = params.get("workflow_id") || "";
    this.range = params.get("range") || "";
  }

  start() {
    document.title = "flowledger · errors";
    setCrumbs(h("span", { text: "errors" }));
    const app = clear(document.getElementById("app"));
    this.form = h("form", { class: "filters", id: "error-filters" });
    this.table = h("table", { class: "runs errors", id: "errors-table" });
    app.append(this.form, h("div", { class: "table-wrap" }, this.table));
    this.buildFilters();
    this.refresh().catch((err) => this.fail(err));
    this.poll(POLL_MS, () => this.refresh());
    setLive(true);
  }

  buildFilters() {
    const workflow = h("input", { type: "text", name: "workflow_id", id: "e-workflow", placeholder: "all workflows", value: this.workflow, autocomplete: "off" });
    const range = selectOf({ name: "range", id: "e-range", "aria-label": "Time range" }, RANGES, this.range);
    const go = () => {
      const params = new URLSearchParams();
      if (workflow.value.trim()) params.set("workflow_id", workflow.value.trim());
      if (range.value) params.set("range", range.value);
      location.hash = "#/errors" + (params.toString() ? "?" + params : "");
    };
    range.addEventListener("change", go);
    this.form.addEventListener("submit", (ev) => {
      ev.preventDefault();
      go();
    });
    this.form.append(
      h("label", { class: "field grow" }, h("span", { text: "Workflow" }), workflow),
      h("label", { class: "field" }, h("span", { text: "Failures" }), range),
      h("a", { class: "field-link", href: "#/stats", text: "statistics →" }),
    );
  }

  async refresh() {
    const params = { limit: MAX_GROUPS, workflow_id: this.workflow };
    const range = RANGES.find((r) => r[0] === this.range);
    if (range && range[2]) params.since = new Date(Date.now() - range[2]).toISOString();
    const body = await api("/api/errors", params);
    this.render(body.groups);
  }

  render(groups) {
    const table = clear(this.table);
    table.append(
      h("thead", {}, h("tr", {}, ["count", "error", "workflow / node", "first seen", "last seen", "sample runs"].map((t) => h("th", { text: t })))),
    );
    const body = h("tbody");
    if (!groups.length) body.append(h("tr", {}, h("td", { colspan: 6, class: "muted", text: "No failures recorded." })));
    for (const group of groups) {
      const row = h(
        "tr",
        { id: `group-${group.fingerprint}`, class: group.fingerprint === this.fingerprint ? "selected" : null, dataset: { fingerprint: group.fingerprint } },
        h("td", { class: "num count", text: fmtCount(group.count) }),
        h("td", { class: "error-cell" }, h("strong", { text: group.type || "error" }), h("span", { text: `: ${group.message}` }), h("div", { class: "muted mono small", text: group.fingerprint })),
        h("td", { text: [group.workflow_id || "–", group.node_id].filter(Boolean).join(" / ") }),
        h("td", { title: fmtTime(group.first_seen), text: fmtAgo(group.first_seen) }),
        h("td", { title: fmtTime(group.last_seen), text: fmtAgo(group.last_seen) }),
        h("td", { class: "mono small" }, group.sample_runs.map((s) => [h("a", { href: runHref(s.run_id, null, s.project ?? ""), text: shortId(s.run_id), title: s.project ? `${s.run_id} in project ${s.project}` : s.run_id }), " "])),
      );
      body.append(row);
    }
    table.append(body);
    const selected = this.fingerprint && document.getElementById(`group-${this.fingerprint}`);
    if (selected && !this.scrolled) {
      selected.scrollIntoView({ block: "center" });
      this.scrolled = true;
    }
  }
}
