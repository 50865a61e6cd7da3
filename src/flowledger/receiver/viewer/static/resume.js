// On a run's page: the chain of attempts (the original run and its resumes), links to compare them,
// and, for an http-triggered run that did not succeed, a button that asks the receiver to resume it.

"use strict";

import { api } from "./api.js";
import { clear, h, runHref } from "./dom.js";
import { diffHref } from "./diff.js";
import { shortId, statusBadge } from "./format.js";

const KEY_STORAGE = "flowledger.apiKey";

async function post(path, project) {
  const headers = { Accept: "application/json" };
  const key = sessionStorage.getItem(KEY_STORAGE);
  if (key) headers.Authorization = "Bearer " + key;
  const url = new URL(path, location.origin);
  if (project !== null && project !== undefined) url.searchParams.set("project", project);
  const response = await fetch(url, { method: "POST", headers, cache: "no-store" });
  let body = null;
  try {
    body = await response.json();
  } catch {
    /* not JSON */
  }
  if (!response.ok) throw new Error((body && typeof body.error === "string" && body.error) || `${response.status} ${response.statusText}`);
  return body;
}

function resumeButton(run, box) {
  const status = h("span", { class: "muted small", id: "resume-status", role: "status" });
  const button = h("button", {
    type: "button",
    id: "resume-button",
    text: "Resume this run",
    title: "Reuse the outputs of the nodes that succeeded and run the rest onward",
    on: {
      click: async () => {
        button.disabled = true;
        status.textContent = " resuming…";
        try {
          const answer = await post(`/api/runs/${encodeURIComponent(run.run_id)}/resume`, run.project ?? "");
          clear(status).append(" resumed as ", h("a", { href: runHref(answer.run_id, null, run.project ?? ""), class: "mono", id: "resumed-run", text: shortId(answer.run_id) }), ` (${answer.status})`);
        } catch (err) {
          status.textContent = ` ${err.message}`;
          button.disabled = false;
        }
      },
    },
  });
  box.append(h("div", { class: "resume-action" }, button, status));
}

/** The run's chain of attempts and its resume button, filled in once the chain is loaded. */
export function resumeSection(run) {
  const box = h("section", { class: "resume-chain", id: "resume-chain" });
  if (run.trigger_type === "http" && run.status !== "succeeded" && run.status !== "running") resumeButton(run, box);
  api(`/api/runs/${encodeURIComponent(run.run_id)}/chain`, { project: run.project ?? "" })
    .then(({ runs }) => {
      if (runs.length < 2) return;
      const list = h("ol", { class: "chain", id: "chain" });
      let previous = null;
      for (const r of runs) {
        const item = h(
          "li",
          { dataset: { run: r.run_id } },
          r.run_id === run.run_id ? h("strong", { class: "mono", text: shortId(r.run_id) }) : h("a", { href: runHref(r.run_id, null, run.project ?? ""), class: "mono", text: shortId(r.run_id) }),
          " ",
          statusBadge(r.status),
          r.resumed_from ? h("span", { class: "muted small", text: " resumes " }) : h("span", { class: "muted small", text: " original" }),
          r.resumed_from ? h("a", { href: diffHref(r.resumed_from, r.run_id, run.project ?? ""), class: "small compare-link", text: "compare with the run it resumes" }) : null,
        );
        list.append(item);
        previous = r;
      }
      box.prepend(h("h3", { text: "Attempts of this run" }), list);
      return previous;
    })
    .catch(() => {
      /* the chain is extra: the page works without it */
    });
  return box;
}
