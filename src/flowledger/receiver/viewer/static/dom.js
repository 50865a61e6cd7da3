// Small DOM helpers every page uses: building elements, links, copying.

"use strict";


/** Build an element: attributes are set as attributes or properties, children as text nodes. */
export function h(tag, attrs, ...children) {
  const el = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") el.className = value;
    else if (name === "text") el.textContent = String(value);
    else if (name === "on") for (const [ev, fn] of Object.entries(value)) el.addEventListener(ev, fn);
    else if (name === "dataset") Object.assign(el.dataset, value);
    else if (name === "href") el.setAttribute("href", value);
    else if (value === true) el.setAttribute(name, "");
    else el.setAttribute(name, String(value));
  }
  append(el, children);
  return el;
}

export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** A ``<select>`` of ``[value, text]`` options (further items ignored), ``selected`` chosen. */
export function selectOf(attrs, options, selected) {
  const select = h("select", attrs);
  for (const [value, text] of options) {
    const option = h("option", { value, text });
    if (value === selected) option.selected = true;
    select.append(option);
  }
  return select;
}

export function clear(el) {
  while (el.firstChild) el.removeChild(el.firstChild);
  return el;
}

/** An http(s) URL to follow, or null: nothing else (javascript:, data:...) becomes a link. */
export function safeExternalUrl(text) {
  if (typeof text !== "string") return null;
  try {
    const url = new URL(text);
    return url.protocol === "http:" || url.protocol === "https:" ? url.href : null;
  } catch {
    return null;
  }
}

/** A run page's hash; ``project`` names the run's project (runs are per project: with API keys off, one id
 * may name runs of several, and the page asks for the one of that project): "" for a run without one, null or
 * undefined when it is not known. */
export function runHref(runId, span, project) {
  const query = new URLSearchParams();
  if (span) query.set("span", span);
  if (project !== null && project !== undefined) query.set("project", project);
  const rest = query.toString();
  return "#/runs/" + encodeURIComponent(runId) + (rest ? "?" + rest : "");
}

// --- copy ---------------------------------------------------------------------

export async function copyText(text, button) {
  let ok = false;
  try {
    await navigator.clipboard.writeText(text);
    ok = true;
  } catch {
    const area = h("textarea", { class: "offscreen", readonly: true });
    area.value = text;
    document.body.append(area);
    area.select();
    try {
      ok = document.execCommand("copy");
    } catch {
      ok = false;
    }
    area.remove();
  }
  if (button) {
    const label = button.textContent;
    button.textContent = ok ? "Copied" : "Copy failed";
    setTimeout(() => (button.textContent = label), 1200);
  }
}

export function copyButton(getText, label = "Copy") {
  const button = h("button", { type: "button", class: "copy", text: label });
  button.addEventListener("click", (ev) => {
    ev.stopPropagation();
    copyText(getText(), button);
  });
  return button;
}
