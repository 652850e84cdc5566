// Building the page: elements from data, never HTML from data. Text goes in with textContent
// (or text nodes), attributes with setAttribute, so a task name or a log line that looks like
// markup is shown as the characters it is.

const SVG_NS = "http://www.w3.org/2000/svg";

/** Properties set as properties (their attributes only give the initial value). */
const PROPERTIES = new Set(["value", "checked", "disabled", "selected", "hidden", "required", "noValidate"]);

/** An HTML element: h("a", {href: "#/runs", class: "x", onclick: f}, "text", child, [more]). */
export function h(tag, props = {}, ...children) {
  const el = document.createElement(tag);
  for (const [key, value] of Object.entries(props || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "class") el.className = value;
    else if (key === "text") el.textContent = String(value);
    else if (key === "dataset") Object.assign(el.dataset, value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else if (PROPERTIES.has(key)) el[key] = value;
    else el.setAttribute(key, value === true ? "" : String(value));
  }
  append(el, children);
  return el;
}

/** An SVG element: svg("rect", {x: 1, y: 2}, children...). */
export function svg(tag, attrs = {}, ...children) {
  const el = document.createElementNS(SVG_NS, tag);
  for (const [key, value] of Object.entries(attrs || {})) {
    if (value === undefined || value === null || value === false) continue;
    if (key === "text") el.textContent = String(value);
    else if (key.startsWith("on") && typeof value === "function") el.addEventListener(key.slice(2), value);
    else el.setAttribute(key, String(value));
  }
  append(el, children);
  return el;
}

/** Append children: nodes, strings and numbers (as text), arrays of them; null is skipped. */
export function append(el, children) {
  for (const child of children.flat(Infinity)) {
    if (child === null || child === undefined || child === false) continue;
    el.append(child instanceof Node ? child : document.createTextNode(String(child)));
  }
  return el;
}

/** Replace an element's children. */
export function fill(el, ...children) {
  el.replaceChildren();
  return append(el, children);
}

const FOCUSABLE = "a[href], button, input, select, summary, [tabindex]";

/** Replace what a refresh shows, keeping the keyboard's place: the focus goes back to the same
 *  link or button (or the one in the same place). `key`: what it shows, so that the same data is
 *  not drawn again. Returns whether it drew. */
export function redraw(el, key, draw) {
  if (key !== undefined && el.dataset.shown === key) return false;
  const active = document.activeElement;
  const inside = active && active !== el && el.contains(active);
  const before = inside ? [...el.querySelectorAll(FOCUSABLE)] : [];
  const mark = inside ? focusMark(active) : null;
  fill(el, ...[draw()].flat());
  if (key !== undefined) el.dataset.shown = key;
  if (inside) {
    const after = [...el.querySelectorAll(FOCUSABLE)];
    const same = after.find((node) => focusMark(node) === mark) || after[before.indexOf(active)];
    if (same) same.focus({ preventScroll: true });
  }
  return true;
}

const focusMark = (node) =>
  [node.tagName, node.getAttribute("aria-label"), node.getAttribute("href"), node.textContent].join("\u0000");

// -- states: a glyph and a word besides the colour ---------------------------------------------
/** The CLI's symbols (conveyor.core.states), and those of runs, backfills and schedulers. */
const GLYPHS = {
  pending: "·",
  ready: "○",
  running: "▶",
  retry_wait: "↻",
  succeeded: "✔",
  skipped: "⤼",
  failed: "✘",
  cancelled: "⊘",
  waiting: "…",
  stopped: "■",
  silent: "?",
  paused: "⏸",
  active: "⏵",
};

/** Worst first: the state a group of instances is shown in. */
export const SEVERITY = ["failed", "running", "retry_wait", "ready", "pending", "cancelled", "skipped", "succeeded"];

export function glyph(state) {
  return GLYPHS[state] || "•";
}

export function stateWord(state) {
  return String(state).replace(/_/g, " ");
}

/** A CSS class for a state: only known states, so data never names a class. */
export function stateClass(state) {
  return `state-${Object.hasOwn(GLYPHS, state) ? state : "other"}`;
}

/** "✔ succeeded", coloured, as one element. */
export function badge(state, extra = "") {
  return h(
    "span",
    { class: `badge ${stateClass(state)}` },
    h("span", { class: "glyph", "aria-hidden": "true" }, glyph(state)),
    ` ${stateWord(state)}${extra}`,
  );
}

/** Counts by state, worst first: "✘ 1 failed, ✔ 3 succeeded". */
export function countBadges(counts) {
  const states = Object.keys(counts || {}).sort((a, b) => rank(a) - rank(b));
  return h(
    "span",
    { class: "counts" },
    states.map((s) => countBadge(s, counts[s])),
  );
}

function countBadge(state, n) {
  return h(
    "span",
    { class: `badge ${stateClass(state)}`, title: `${n} ${stateWord(state)}` },
    h("span", { class: "glyph", "aria-hidden": "true" }, glyph(state)),
    ` ${n.toLocaleString()} ${stateWord(state)}`,
  );
}

function rank(state) {
  const i = SEVERITY.indexOf(state);
  return i < 0 ? SEVERITY.length : i;
}

/** The worst state among counts (for a group of instances). */
export function worst(counts) {
  const present = Object.keys(counts).filter((s) => counts[s] > 0);
  present.sort((a, b) => rank(a) - rank(b));
  return present[0] || "pending";
}

// -- times -------------------------------------------------------------------------------------
const pad = (n) => String(n).padStart(2, "0");

/** A time from the API (ISO, UTC) in the browser's zone: 2026-11-22 07:17:03. */
export function when(iso) {
  if (!iso) return "—";
  const d = new Date(iso);
  if (Number.isNaN(d.getTime())) return String(iso);
  return (
    `${d.getFullYear()}-${pad(d.getMonth() + 1)}-${pad(d.getDate())} ` +
    `${pad(d.getHours())}:${pad(d.getMinutes())}:${pad(d.getSeconds())}`
  );
}

/** A logical date (UTC) as the day it names, with the hour when it has one. */
export function logicalDate(iso, hourly = false) {
  const text = String(iso || "");
  return hourly ? `${text.slice(0, 10)} ${text.slice(11, 16)} UTC` : text.slice(0, 10);
}

/** Seconds as 0.42 s, 12.3 s, 4 min 05 s, 2 h 03 min. */
export function duration(seconds) {
  if (seconds === null || seconds === undefined || Number.isNaN(seconds)) return "—";
  if (seconds < 10) return `${seconds.toFixed(2)} s`;
  if (seconds < 60) return `${seconds.toFixed(1)} s`;
  const s = Math.round(seconds);
  if (s < 3600) return `${Math.floor(s / 60)} min ${pad(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${pad(Math.floor((s % 3600) / 60))} min`;
}

/** How long ago: "3 s ago". */
export function ago(iso, now = Date.now()) {
  if (!iso) return "—";
  const seconds = Math.max(0, (now - new Date(iso).getTime()) / 1000);
  return `${duration(seconds < 10 ? Math.round(seconds * 10) / 10 : seconds)} ago`;
}

/** A parameter value as text: strings as they are, everything else as JSON. */
export function valueText(value) {
  if (typeof value === "string") return value;
  if (value && typeof value === "object" && "$upstream" in value) return `← ${value.$upstream}`;
  return JSON.stringify(value);
}

/** Parameters as one line: n=21, note=hello. */
export function paramsLine(params) {
  return Object.entries(params || {})
    .map(([k, v]) => `${k}=${valueText(v)}`)
    .join(", ");
}
