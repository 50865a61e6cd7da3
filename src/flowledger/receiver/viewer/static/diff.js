// Two runs compared node by node (#/diff/A/B): first divergence, status, deltas, structural payload diffs.

"use strict";

import { ApiError, api, showBanner, showKeyForm } from "./api.js";
import { clear, h, runHref } from "./dom.js";
import { fmtDuration, fmtUsd, shortId, statusBadge } from "./format.js";
import { setCrumbs } from "./page.js";

const MAX_CHANGES_SHOWN = 20;

export function diffHref(a, b, project) {
  const inProject = project === null || project === undefined ? "" : "?project=" + encodeURIComponent(project); // "" for none
  return "#/diff/" + encodeURIComponent(a) + "/" + encodeURIComponent(b) + inProject;
}

function signed(delta, fmt) {
  if (delta === null || delta === undefined) return "–";
  return (delta >= 0 ? "+" : "−") + fmt(Math.abs(delta));
}

// same_definition is null when either run carries no definition hash (every run the SDK recorded without one).
function definitionText(same) {
  if (same === null || same === undefined) return "unknown";
  return same ? "same" : "changed";
}

function changeList(label, changes) {
  if (!changes || !changes.length) return null;
  const list = h("ul", { class: "diff-changes", dataset: { payload: label } });
  for (const c of changes.slice(0, MAX_CHANGES_SHOWN)) {
    list.append(
      h(
        "li",
        { class: `change change-${c.kind}` },
        h("span", { class: "muted small", text: `${label} ` }),
        h("code", { text: c.path }),
        h("span", { class: "muted small", text: ` ${c.kind} ` }),
        h("code", { class: "diff-a", text: c.a === null || c.a === undefined ? "" : JSON.stringify(c.a) }),
        " → ",
        h("code", { class: "diff-b", text: c.b === null || c.b === undefined ? "" : JSON.stringify(c.b) }),
      ),
    );
  }
  if (changes.length > MAX_CHANGES_SHOWN) list.append(h("li", { class: "muted small", text: `… and ${changes.length - MAX_CHANGES_SHOWN} more` }));
  return list;
}

export class DiffView {
  constructor(a, b, project) {
    this.a = a;
    this.b = b;
    this.project = project; // both runs of this project ("" none; the chain of attempts is one project's)
  }

  start() {
    document.title = "flowledger · diff";
    setCrumbs(h("a", { href: "#/", text: "runs" }), h("span", { text: "diff" }));
    clear(document.getElementById("app")).append(h("p", { class: "muted", text: "Comparing…" }));
    this.load().catch((err) => this.fail(err));
  }

  stop() {}

  fail(err) {
    if (err instanceof ApiError && err.status === 401) {
      showKeyForm(() => this.start());
      return;
    }
    showBanner(err.message);
  }

  async load() {
    const diff = await api("/api/diff", { a: this.a, b: this.b, project: this.project });
    const app = clear(document.getElementById("app"));
    const side = (label, run) =>
      h(
        "div",
        { class: "diff-run", dataset: { side: label } },
        h("strong", { text: `${label} ` }),
        h("a", { href: runHref(run.run_id, null, this.project), class: "mono", text: shortId(run.run_id) }),
        " ",
        statusBadge(run.status),
        h("span", { class: "muted small", text: ` ${run.workflow_id || ""} · ${fmtDuration(run.duration_ms)}` }),
      );
    const first = diff.first_divergence;
    const summary = h(
      "section",
      { class: "diff-summary", id: "diff-summary" },
      h("h2", { text: "Two runs compared" }),
      side("A", diff.a),
      side("B", diff.b),
      h(
        "p",
        { id: "first-divergence" },
        first ? ["First divergence: ", h("code", { text: first.node_id }), ` (${first.verdict.replaceAll("_", " ")})`] : "No divergence: every node is the same.",
      ),
      diff.same_workflow === false
        ? h("p", { id: "diff-workflows", text: `Runs of different workflows: ${diff.a.workflow_id} (A) and ${diff.b.workflow_id} (B).` })
        : null,
      h("p", { class: "muted small", id: "diff-facts", text: `definition ${definitionText(diff.same_definition)} · input ${diff.input_same ? "same" : "different"} · duration ${signed(diff.duration_ms.delta, fmtDuration)} · cost ${signed(diff.cost_usd.delta, fmtUsd)}` }),
      diff.added.length ? h("p", { id: "diff-added", text: `Added in B: ${diff.added.join(", ")}` }) : null,
      diff.removed.length ? h("p", { id: "diff-removed", text: `Removed in B: ${diff.removed.join(", ")}` }) : null,
      changeList("input", diff.input_changes),
    );
    const table = h(
      "table",
      { class: "diff-nodes", id: "diff-nodes" },
      h("thead", {}, h("tr", {}, ...["node", "verdict", "status A", "status B", "duration Δ", "cost Δ"].map((t) => h("th", { text: t })))),
    );
    const body = h("tbody");
    for (const n of diff.nodes) {
      const row = h(
        "tr",
        { class: `verdict-${n.verdict}`, dataset: { node: n.node_id } },
        h("td", { class: "mono", text: n.node_id }),
        h("td", { class: "verdict", text: n.verdict.replaceAll("_", " ") }),
        h("td", {}, n.status.a ? statusBadge(n.status.a) : "–"),
        h("td", {}, n.status.b ? statusBadge(n.status.b) : "–"),
        h("td", { text: signed(n.duration_ms.delta, fmtDuration) }),
        h("td", { text: signed(n.cost_usd.delta, fmtUsd) }),
      );
      body.append(row);
      const changes = [changeList("input", n.input_changes), changeList("output", n.output_changes)].filter(Boolean);
      if (changes.length) body.append(h("tr", { class: "diff-detail" }, h("td", { colspan: "6" }, ...changes)));
    }
    table.append(body);
    app.append(summary, table);
  }
}
