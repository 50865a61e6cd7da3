// One run: header, waterfall of node attempts (virtual scrolling), the selected attempt's payloads.

"use strict";

import { ApiError, api, showBanner, showKeyForm } from "./api.js";
import { clear, copyButton, h, runHref, safeExternalUrl } from "./dom.js";
import { fmtCount, fmtDuration, fmtTime, fmtUsd, plural, shortId, statusBadge } from "./format.js";
import { jsonView } from "./json.js";
import { resumeSection } from "./resume.js";

import { logsPanel } from "./logs.js";
import { every, route, setCrumbs, setLive } from "./page.js";
import { contextFacts } from "./context.js";
import { artifactsSection, costBreakdown, metricsSection } from "./records.js";

const RUN_POLL_MS = 1000;
const ATTEMPT_PAGE = 200;
const ROW_H = 26;
const OVERSCAN_ROWS = 12;
const WATERFALL_MAX_PX = 620;
const ACTIVE = new Set(["running", "stuck"]);

export class RunView {
  constructor(runId, params) {
    this.runId = runId;
    this.selected = params.get("span") || null;
    this.project = params.get("project"); // the run of this project ("" none), when its id is used in several
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
    const run = await api(`/api/viewer/runs/${encodeURIComponent(this.runId)}`, { project: this.project });
    this.apply(run);
    this.renderPayloads();
    if (this.selected) this.showAttempt(this.selected);
    if (ACTIVE.has(run.status)) this.watch();
  }

  watch() {
    setLive(true, "live: updating");
    const stop = every(RUN_POLL_MS, async () => {
      const run = await api(`/api/viewer/runs/${encodeURIComponent(this.runId)}`, { project: this.project });
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
      fact("Cost", fmtUsd(c.usd), h("span", { class: "muted small", text: ` · ${plural(c.tokens, "token", "tokens")} · ${plural(c.tool_calls, "tool call", "tool calls")} · ${plural(c.external_requests, "request", "requests")}` }), costBreakdown(c, "run-cost-breakdown"));
    } else fact("Cost", "–");
    const failing = run.error?.node_id || (run.status !== "succeeded" ? run.attempts.failing_node_id : null);
    if (failing) {
      const span = run.attempts.failing_span_id;
      fact("Failing node", span ? h("a", { href: runHref(run.run_id, span, this.project), class: "mono", id: "failing-node", text: failing }) : h("span", { class: "mono", text: failing }));
    }
    contextFacts(run, fact);
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
    if (!this.chainShown || this.chainStatus !== run.status) {
      // Loaded once per status: the live refresh re-renders the header every second.
      this.chain = resumeSection(run);
      this.chainShown = true;
      this.chainStatus = run.status;
    }
    header.append(this.chain);
    if (run.error) {
      header.append(
        h(
          "div",
          { class: "run-error", id: "run-error" },
          h("strong", { text: run.error.type || "error" }),
          h("span", { text: `: ${run.error.message || ""}` }),
        ),
      );
      if (run.error.fingerprint) {
        header.append(h("a", { class: "group-link", id: "error-group-link", href: "#/errors?fingerprint=" + encodeURIComponent(run.error.fingerprint), text: "its error group →" }));
      }
    }
  }

  renderPayloads() {
    const run = this.run;
    const box = clear(this.payloads);
    const deferred = new Set(run.deferred || []);
    const loader = (kind) => () => api(`/api/viewer/runs/${encodeURIComponent(run.run_id)}/payload/${kind}`, { project: this.project });
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
    const promise = api(`/api/viewer/runs/${encodeURIComponent(this.runId)}/attempts`, { offset: index * ATTEMPT_PAGE, limit: ATTEMPT_PAGE, project: this.project })
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
    history.replaceState(null, "", runHref(this.runId, span, this.project));
    this.schedule();
    this.showAttempt(span);
  }

  async showAttempt(span, quiet = false) {
    const token = ++this.detailToken;
    let a;
    try {
      a = await api(`/api/viewer/runs/${encodeURIComponent(this.runId)}/attempts/${encodeURIComponent(span)}`, { project: this.project });
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
    panel.append(...[costBreakdown(a.cost, "panel-cost-breakdown"), metricsSection(a.metrics), artifactsSection(a.artifacts)].filter(Boolean));
    const deferred = new Set(a.deferred || []);
    const loader = (kind) => () => api(`/api/viewer/runs/${encodeURIComponent(this.runId)}/attempts/${encodeURIComponent(a.span_id)}/${kind}`, { project: this.project });
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
      logsPanel(this.runId, a.span_id, this.project),
    );
  }
}

function niceStep(raw) {
  const power = 10 ** Math.floor(Math.log10(raw));
  for (const m of [1, 2, 5, 10]) if (m * power >= raw) return m * power;
  return 10 * power;
}
