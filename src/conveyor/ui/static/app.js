// Conveyor's web UI: one page, hash routes, plain JavaScript. Each page is a function that fills
// <main> from the REST API and may poll it; leaving the page stops its polls and its requests.

import { isAbort, send } from "./api.js";
import { fill, h, redraw } from "./dom.js";
import { auditPage, backfillsPage, pipelinesPage, runsPage, schedulersPage, schedulesPage } from "./pages.js";
import { runPage } from "./run.js";
import { load as loadMe, me, signOut } from "./session.js";

/** What a page gets: where to draw, a signal that aborts when it is left, and polling. */
export class Page {
  constructor(main, params) {
    this.main = main;
    this.params = params; // the hash's query: #/runs?state=failed
    this.controller = new AbortController();
    this.signal = this.controller.signal;
    this.timers = new Set();
  }

  get left() {
    return this.signal.aborted;
  }

  /** Call `fn` every `ms` until it returns false or the page is left; errors show, polling goes on. */
  every(ms, fn) {
    const tick = async () => {
      this.timers.delete(timer);
      if (this.left) return;
      let again = true;
      try {
        again = (await fn()) !== false;
        connection(null);
      } catch (err) {
        if (isAbort(err) || this.left) return;
        connection(err);
      }
      if (again && !this.left) {
        timer = setTimeout(tick, ms);
        this.timers.add(timer);
      }
    };
    let timer = setTimeout(tick, ms);
    this.timers.add(timer);
  }

  stop() {
    this.controller.abort();
    for (const t of this.timers) clearTimeout(t);
    this.timers.clear();
  }
}

const ROUTES = [
  [/^\/?$/, pipelinesPage, "Pipelines"],
  [/^\/pipelines$/, pipelinesPage, "Pipelines"],
  [/^\/runs$/, runsPage, "Runs"],
  [/^\/runs\/(.+)$/, runPage, "Runs"],
  [/^\/backfills$/, backfillsPage, "Backfills"],
  [/^\/schedules$/, schedulesPage, "Schedules"],
  [/^\/schedulers$/, schedulersPage, "Schedulers"],
  [/^\/audit$/, auditPage, "Audit"],
];

let current = null;

async function route() {
  const focus = routed++ > 0; // not on the first load: the page starts at its top
  if (current) current.stop();
  const hash = location.hash.replace(/^#/, "");
  const [path, search = ""] = hash.split("?", 2);
  const main = document.getElementById("main");
  const page = (current = new Page(main, new URLSearchParams(search)));
  const found = ROUTES.find(([re]) => re.test(path));
  for (const link of document.querySelectorAll("#nav a")) {
    if (found && link.textContent === found[2]) link.setAttribute("aria-current", "page");
    else link.removeAttribute("aria-current");
  }
  fill(main, h("p", { class: "muted" }, "Loading…"));
  if (!found) {
    fill(main, h("h1", { tabindex: "-1" }, "Not found"), h("p", {}, "No such page. ", h("a", { href: "#/pipelines" }, "See the pipelines.")));
    return;
  }
  const [re, render, section] = found;
  document.title = `${section} · Conveyor`;
  try {
    const args = re.exec(path).slice(1).map(decodeURIComponent); // a malformed %-escape throws: shown below
    await render(page, ...args);
  } catch (err) {
    if (isAbort(err) || page.left) return;
    fill(main, h("h1", { tabindex: "-1" }, section), h("div", { class: "alert", role: "alert" }, err.message || String(err)));
  }
  if (page.left) return;
  const heading = main.querySelector("h1");
  const active = document.activeElement;
  const moved = active && active !== main && main.contains(active); // already in the page: leave it there
  if (heading && focus && !moved && !document.querySelector("dialog[open]")) {
    heading.setAttribute("tabindex", "-1");
    heading.focus({ preventScroll: true });
  }
}

let routed = 0;

/** A banner while the server does not answer; gone once it does again. */
function connection(err) {
  const banner = document.getElementById("connection");
  if (!err) {
    banner.hidden = true;
    return;
  }
  banner.textContent = `Could not refresh: ${err.message || err}. Retrying…`;
  banner.hidden = false;
}

/** The health line in the header: the store, and how many schedulers beat. */
async function health() {
  const out = document.getElementById("health");
  try {
    const response = await send("/healthz", { headers: { accept: "application/json" } });
    const body = await response.json();
    const ok = body.status === "ok";
    const n = body.schedulers;
    redraw(out, JSON.stringify(body), () => [
      h("span", { class: `badge ${ok ? "state-succeeded" : "state-failed"}` }, h("span", { class: "glyph", "aria-hidden": "true" }, ok ? "✔" : "✘"), ok ? " store ok" : ` store: ${body.store}`),
      " ",
      h("a", { href: "#/schedulers", class: n ? "" : "warn" }, `${n} scheduler${n === 1 ? "" : "s"}`),
      ` · v${body.version}`,
    ]); // announced (aria-live) only when it changes
  } catch (err) {
    redraw(out, "down", () => h("span", { class: "badge state-failed" }, h("span", { class: "glyph", "aria-hidden": "true" }, "✘"), " server does not answer"));
  }
}

document.getElementById("skip").addEventListener("click", (event) => {
  event.preventDefault(); // the hash is the route: move the focus instead
  document.getElementById("main").focus();
});
/** Times are the browser's: say which zone that is. */
function zone() {
  const minutes = -new Date().getTimezoneOffset();
  const sign = minutes < 0 ? "−" : "+";
  const a = Math.abs(minutes);
  const name = Intl.DateTimeFormat().resolvedOptions().timeZone || "local time";
  document.getElementById("zone").textContent =
    `Times are in ${name} (UTC${sign}${String(Math.floor(a / 60)).padStart(2, "0")}:${String(a % 60).padStart(2, "0")}); logical dates are UTC days`;
}

/** The signed-in user and a sign-out button in the header (nothing when the server has no users). */
async function who() {
  try {
    await loadMe();
  } catch (err) {
    return; // a 401 went to the sign-in page; anything else: the pages say it
  }
  if (!me.auth) return;
  const out = document.getElementById("who");
  fill(out, h("span", { class: "user" }, me.user, me.admin ? " (admin)" : ""), " ", h("button", { type: "button", class: "link signout", onclick: signOut }, "Sign out"));
  out.hidden = false;
}

zone();
window.addEventListener("hashchange", route);
who().then(route);
health();
setInterval(health, 10000);
