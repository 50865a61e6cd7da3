// The captured log lines of one node attempt: a level filter, the lines in order, more on demand.

"use strict";

import { api, showBanner } from "./api.js";
import { clear, h } from "./dom.js";
import { fmtTime } from "./format.js";

const LEVELS = [
  ["", "all levels"],
  ["info", "info and above"],
  ["warning", "warning and above"],
  ["error", "error and above"],
  ["critical", "critical"],
];
const LOG_PAGE = 500;

/** The Logs section of an attempt's panel; it loads its lines itself. */
export function logsPanel(runId, spanId, project) {
  const list = h("ol", { class: "log-lines", id: "log-lines" });
  const status = h("p", { class: "muted small", id: "log-status", text: "Loading log lines…" });
  const more = h("button", { type: "button", class: "load", id: "log-more", text: "More lines", hidden: true });
  const select = h("select", { id: "log-level", name: "level" }, ...LEVELS.map(([value, label]) => h("option", { value, text: label })));
  const section = h(
    "section",
    { class: "panel-logs", id: "panel-logs" },
    h("h4", { text: "Logs" }),
    h("label", { class: "field inline" }, h("span", { text: "Level " }), select),
    status,
    list,
    more,
  );
  let after = 0;
  let token = 0;
  const load = async (reset) => {
    if (reset) {
      token += 1;
      after = 0;
      clear(list);
    }
    const mine = token;
    let page;
    try {
      page = await api(`/api/runs/${encodeURIComponent(runId)}/attempts/${encodeURIComponent(spanId)}/logs`, { level: select.value, after, limit: LOG_PAGE, project });
    } catch (err) {
      showBanner(err.message);
      return;
    }
    if (mine !== token) return; // the level changed meanwhile
    for (const line of page.logs) list.append(lineView(line));
    if (page.logs.length) after = page.logs[page.logs.length - 1].id;
    more.hidden = !page.more;
    let text = list.children.length ? "" : select.value ? "No log lines at this level." : "No log lines.";
    if (page.dropped_lines) text += ` ${page.dropped_lines} more lines (${page.dropped_bytes} bytes) were dropped past the capture's caps.`;
    status.textContent = text.trim();
    status.hidden = !status.textContent;
  };
  select.addEventListener("change", () => load(true));
  more.addEventListener("click", () => load(false));
  load(true);
  return section;
}

function lineView(line) {
  const severity = line.levelno >= 40 ? "error" : line.levelno >= 30 ? "warning" : "info";
  const li = h(
    "li",
    { class: `log-line ${severity}`, dataset: { level: String(line.level).toLowerCase() } },
    h("span", { class: "log-ts mono small", text: fmtTime(line.ts) }),
    h("span", { class: "log-level", text: String(line.level).toUpperCase() }),
    h("span", { class: "log-logger mono small", text: line.logger || "" }),
    h("span", { class: "log-message", text: line.message }),
    line.repeats ? h("span", { class: "badge repeats", text: `×${line.repeats}` }) : null,
  );
  if (line.exception) li.append(h("details", { class: "stack" }, h("summary", { text: "Exception" }), h("pre", { text: line.exception })));
  return li;
}
