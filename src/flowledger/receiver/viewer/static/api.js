// Talking to the receiver: JSON GETs with the tab's API key, the error banner, the key form.

"use strict";

import { clear, h } from "./dom.js";

const KEY_STORAGE = "flowledger.apiKey";

export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

// A run of digits long enough to be an integer past 2**53 (a cheap test before reviving every value).
const LONG_DIGITS = /\d{16}/;
const INTEGER_SOURCE = /^-?\d+$/;

// Integers past 2**53 keep their exact digits: JSON.parse gives a reviver each number's source text, and
// JSON.rawJSON holds those digits so JSON.stringify writes them back (the Raw view, Copy, diffs); see
// exactInteger in format.js. A browser without both parses as before (such integers lose their last digits).
function exactIntegers(key, value, context) {
  if (typeof value !== "number" || Number.isSafeInteger(value) || typeof context?.source !== "string") return value;
  return INTEGER_SOURCE.test(context.source) ? JSON.rawJSON(context.source) : value;
}

export function parseJson(text) {
  return typeof JSON.rawJSON === "function" && LONG_DIGITS.test(text) ? JSON.parse(text, exactIntegers) : JSON.parse(text);
}

export async function api(path, params) {
  const url = new URL(path, location.origin);
  for (const [k, v] of Object.entries(params || {})) {
    // A cleared filter ("") is left out; an empty project is a value: the run without a project.
    if (v !== null && v !== undefined && (v !== "" || k === "project")) url.searchParams.set(k, v);
  }
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
  return parseJson(await response.text());
}

export function showBanner(message) {
  const banner = document.getElementById("banner");
  banner.textContent = message || "";
  banner.hidden = !message;
}

export function showKeyForm(retry) {
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
