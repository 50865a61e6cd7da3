// Pages and routing: a page is a class with start() and stop(), registered for a hash pattern.

"use strict";

import { ApiError, showBanner, showKeyForm } from "./api.js";
import { clear, h } from "./dom.js";

const ROUTES = []; // [pattern, make(match, params)], tried in order; the first is the fallback

/** Registers a page: ``make(match, params)`` builds it when the hash path matches ``pattern``. */
export function register(pattern, make) {
  ROUTES.push([pattern, make]);
}

let current = null; // the active page; has stop()

/** Shows the page the location's hash names (the first registered page when none matches). */
export function route() {
  if (current) current.stop();
  showBanner("");
  const raw = location.hash.replace(/^#/, "") || "/";
  const [path, query] = raw.split("?", 2);
  const params = new URLSearchParams(query || "");
  let found = null;
  for (const [pattern, make] of ROUTES) {
    const match = path.match(pattern);
    if (match) {
      found = make(match, params);
      break;
    }
  }
  current = found || ROUTES[0][1]([path], params);
  current.start();
}

export function setCrumbs(...parts) {
  const crumbs = clear(document.getElementById("crumbs"));
  for (const part of parts) crumbs.append(h("span", { class: "sep", text: "/" }), part);
}

export function setLive(on, label) {
  const el = document.getElementById("live");
  el.hidden = !on;
  el.textContent = label || "live";
}

/** Runs ``fn`` every ``ms`` while the tab is visible; returns a stop function. */
export function every(ms, fn) {
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

/** A page that polls: ``poll(ms, fn)`` keeps ``fn`` running until ``stop()``; a 401 asks for a key, other errors show a banner. */
export class LivePage {
  constructor() {
    this.stops = [];
  }

  poll(ms, fn) {
    this.stops.push(every(ms, fn));
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
}
