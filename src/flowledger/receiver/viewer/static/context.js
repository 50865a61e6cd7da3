// The run context in the viewer: who a run was for, which agent ran it, why, in which project,
// and the runs around it (the run that started it, the runs it started).

"use strict";

import { h, runHref } from "./dom.js";
import { shortId, statusBadge } from "./format.js";

/** The run list's filters on a run's context: query parameters of /api/viewer/runs and the page's hash. */
export const CONTEXT_KEYS = ["project", "user_id", "agent_id", "intent", "parent_run_id"];
const LABELS = { project: "Project", user_id: "User", agent_id: "Agent", intent: "Intent", parent_run_id: "Parent run" };
const MAX_CHARS = 256; // the wire format's bound of each value

/** Text inputs of the context filters, filled from ``filters`` (the parent run only once one is chosen). */
export function contextFields(filters) {
  return CONTEXT_KEYS.filter((key) => key !== "parent_run_id" || filters[key]).map((key) =>
    h(
      "label",
      { class: "field context-field" },
      h("span", { text: LABELS[key] }),
      h("input", { type: "text", name: key, id: `f-${key}`, value: filters[key] || "", maxlength: MAX_CHARS, autocomplete: "off", placeholder: "any", size: key === "parent_run_id" ? 36 : 12 }),
    ),
  );
}

/** One line under a run's workflow in the list: ``project · agent · user · intent`` (null when it has none). */
export function contextLine(run) {
  const parts = ["project", "agent_id", "user_id", "intent"].map((key) => run[key]).filter(Boolean);
  if (!parts.length && !run.parent_run_id) return null;
  return h("div", { class: "muted small run-context", text: parts.join(" · ") + (run.parent_run_id ? `${parts.length ? " · " : ""}started by ${shortId(run.parent_run_id, 8)}` : "") });
}

/** Facts of a run's header: its context, the run that started it, and the runs it started. */
export function contextFacts(run, fact) {
  for (const key of ["project", "user_id", "agent_id", "intent"]) if (run[key]) fact(LABELS[key], run[key]);
  if (run.parent_run_id) fact("Parent run", h("a", { href: runHref(run.parent_run_id, null, run.project ?? ""), class: "mono", id: "parent-link", text: shortId(run.parent_run_id, 12) }));
  const children = run.children;
  if (!children || !children.count) return;
  const list = h("ul", { class: "children", id: "children" });
  for (const child of children.runs) {
    list.append(h("li", { dataset: { runId: child.run_id } }, statusBadge(child.status), " ", h("a", { href: runHref(child.run_id, null, run.project ?? ""), class: "mono child-link", text: shortId(child.run_id, 12) }), " ", h("span", { text: child.workflow_id || "–" })));
  }
  const count = `${children.count_capped ? "at least " : ""}${children.count}`;
  // A parent run id names a run of the child's own project: the list shows that project's children only.
  const inProject = run.project ? `&project=${encodeURIComponent(run.project)}` : "";
  const all = h("a", { href: `#/?parent_run_id=${encodeURIComponent(run.run_id)}${inProject}`, id: "children-all", text: `all ${count} in the run list` });
  fact("Started runs", h("span", { text: `${count} ` }), all, list);
}
