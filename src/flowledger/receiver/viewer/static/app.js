// flowledger history viewer: plain JavaScript, no build step, no dependencies.
//
// Every value that comes from a run is written with textContent (never as HTML),
// links to other pages are built from encoded ids, and an external trace link is
// only followed when it is an http(s) URL. The page is served with a
// Content-Security-Policy that allows scripts from this origin only.
//
// app.js only wires the pages to their routes; each page is a module of its own.

"use strict";

import { ErrorsView } from "./errors.js";
import { register, route } from "./page.js";
import { DiffView } from "./diff.js";
import { RunView } from "./run.js";
import { ListView } from "./runs.js";
import { StatsView } from "./stats.js";

register(/^\/$/, (_match, params) => new ListView(params)); // first: the fallback
register(/^\/runs\/([^/]+)$/, (match, params) => new RunView(decodeURIComponent(match[1]), params));
register(/^\/diff\/([^/]+)\/([^/]+)$/, (match, params) => new DiffView(decodeURIComponent(match[1]), decodeURIComponent(match[2]), params.get("project")));
register(/^\/errors$/, (_match, params) => new ErrorsView(params));
register(/^\/stats$/, (_match, params) => new StatsView(params));

window.addEventListener("hashchange", () => {
  // Selecting an attempt only replaces the state; a real hash change is a new page.
  route();
});
route();
