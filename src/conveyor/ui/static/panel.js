// The task panel of the run page: one task instance (parameters, attempts, durations, targets,
// error, log), or one group of instances of the same task. A running task's log is followed.

import { BASE, api, isAbort, query, seg, send } from "./api.js";
import { badge, countBadges, duration, fill, h, valueText, when } from "./dom.js";

/** A followed log keeps this many characters, its end: the page stays light however much is written. */
const KEEP_CHARS = 1_000_000;

/** While an instance is in one of these states, its log is followed (the API waits for it to start). */
const FOLLOWED = new Set(["pending", "ready", "running"]);
const TAIL = 200;
const LISTED = 200;
/** A notebook task's rendering is there once it ran: its own, or (failed) up to the failing cell. */
const NOTEBOOK_SHOWN = new Set(["succeeded", "skipped", "failed"]);

export class TaskPanel {
  /** `runId`; `task(id)`: the TaskView of an instance (fresh); `instances(task)`: a group's TaskViews;
   *  `labelOf(id)`: an instance's label. */
  constructor(runId, { task, instances, labelOf, onClose }) {
    this.runId = runId;
    this.task = task;
    this.labelOf = labelOf || ((id) => id);
    this.instances = instances;
    this.onClose = onClose;
    this.body = h("div", { class: "panel-body" });
    this.title = h("h2", { id: "panel-title", tabindex: "-1" }, "Task");
    this.el = h(
      "aside",
      { class: "panel", "aria-labelledby": "panel-title", hidden: true },
      h("div", { class: "panel-head" }, this.title, h("button", { type: "button", class: "icon", "aria-label": "Close the task panel (Escape)", title: "Close (Escape)", onclick: () => this.close() }, "✕")),
      this.body,
    );
    this.el.addEventListener("keydown", (e) => {
      if (e.key === "Escape") {
        e.preventDefault();
        this.close();
      }
    });
    this.shown = null; // {kind: "instance"|"group", id, state}
    this.controller = null;
  }

  /** Stop what the panel is loading or following. */
  abort() {
    if (this.controller) this.controller.abort();
    this.controller = new AbortController();
    return this.controller.signal;
  }

  close() {
    this.abort();
    this.el.hidden = true;
    const shown = this.shown;
    this.shown = null;
    if (this.onClose) this.onClose(shown);
  }

  /** Show an instance; `focus`: move the keyboard there (when a user opened it). Opening another
   *  before it has loaded aborts its fetches: that is not an error. */
  async showInstance(id, options) {
    await quietAbort(this.renderInstance(id, options));
  }

  async renderInstance(id, { focus = true } = {}) {
    const signal = this.abort();
    this.el.hidden = false;
    this.shown = { kind: "instance", id };
    fill(this.body, h("p", { class: "muted" }, "Loading…"));
    if (focus) this.title.focus({ preventScroll: true });
    const t = await this.task(id, signal);
    if (signal.aborted) return;
    this.shown.state = t.state;
    this.shown.attempts = t.attempts;
    this.title.textContent = t.label;
    const log = h("div", { class: "log-box" });
    const took = t.ended_at ? duration(t.duration) : t.started_at ? "running" : "not started";
    fill(
      this.body,
      h("p", {}, badge(t.state), " ", h("span", { class: "muted small" }, `task ${t.task} · instance `, h("code", {}, t.id))),
      h(
        "p",
        { class: "small timing" },
        `Started ${when(t.started_at)} · ended ${when(t.ended_at)} · ${took} · partition ${t.partition}`,
      ),
      t.error ? h("div", { class: "error-box" }, h("h3", {}, "Error"), h("pre", { class: "error-text" }, t.error)) : null,
      t.why
        ? h("p", { class: "why", "data-kind": t.why.kind }, h("strong", {}, "Why it waits: "), t.why.text, t.why.since ? h("span", { class: "muted small" }, ` (since ${when(t.why.since)})`) : null)
        : null,
      t.waited_for
        ? h("p", { class: "small waited" }, "Waited for run ", h("a", { href: `#/runs/${seg(t.waited_for)}`, class: "mono" }, t.waited_for), " executing this task and took its outcome.")
        : null,
      notebookFrame(this.runId, t),
      t.reused_from
        ? h("p", { class: "small reused" }, "Reused from run ", h("a", { href: `#/runs/${seg(t.reused_from)}`, class: "mono" }, t.reused_from), ": its code, parameters, inputs and environment were unchanged, so it took that run's outputs instead of executing.")
        : null,
      h("h3", {}, "Log"),
      log,
      h("h3", {}, `Attempts (${t.attempts})`),
      attemptsTable(t.attempt_log),
      h("h3", {}, "Parameters"),
      paramList(t.params, this.labelOf),
      h("h3", {}, "Targets"),
      t.targets.length
        ? h("ul", { class: "targets" }, t.targets.map((x) => h("li", {}, h("code", {}, x), held(x, t.outputs))))
        : h("p", { class: "muted" }, "None: its result is kept as an artifact."),
      t.upstream.length
        ? [
            h("h3", {}, "Upstream"),
            h(
              "ul",
              { class: "upstream" },
              t.upstream.map((u) =>
                h("li", {}, h("button", { type: "button", class: "link", onclick: () => this.showInstance(u) }, h("code", {}, this.labelOf(u)))),
              ),
            ),
          ]
        : null,
      t.has_result
        ? h("p", {}, h("a", { href: `${BASE}/runs/${seg(this.runId)}/result${query({ task: t.id })}`, target: "_blank", rel: "noopener" }, "Download the result"))
        : null,
    );
    await this.showLog(log, t, signal);
  }

  async showLog(box, t, signal) {
    if (FOLLOWED.has(t.state)) {
      await this.follow(box, t, signal);
      return;
    }
    const logs = await api(`/runs/${seg(this.runId)}/logs${query({ task: t.id, tail: TAIL })}`, { signal });
    if (signal.aborted) return;
    if (!logs.length) {
      fill(box, h("p", { class: "muted" }, "No log: the task has not run."));
      return;
    }
    fill(
      box,
      logs.map((l, i) =>
        h(
          "details",
          { class: "log", open: i === logs.length - 1 },
          h("summary", {}, `Attempt ${l.attempt} · `, badge(l.state), l.truncated ? ` · last ${TAIL} lines` : ""),
          h("pre", { class: "log-text", tabindex: "0", "aria-label": `Log of attempt ${l.attempt}` }, l.text || "(empty)"),
        ),
      ),
    );
  }

  /** Stream the latest attempt's log as it is written (fetch, read the body as it comes). */
  async follow(box, t, signal) {
    const status = h("p", { class: "following", role: "status" }, t.state === "running" ? "▶ Following the log while the task runs…" : "Waiting for the task to start…");
    const text = document.createTextNode("");
    const pre = h("pre", { class: "log-text", tabindex: "0", "aria-label": "Log of the latest attempt" }, text);
    fill(box, status, pre);
    try {
      const response = await send(`${BASE}/runs/${seg(this.runId)}/logs${query({ task: t.id, follow: "true" })}`, { signal });
      if (!response.ok) throw new Error(`the log could not be followed (${response.status})`);
      const reader = response.body.getReader();
      const decoder = new TextDecoder();
      for (;;) {
        const { done, value } = await reader.read();
        if (done) break;
        const near = pre.scrollHeight - pre.scrollTop - pre.clientHeight < 40;
        if (!text.length) status.textContent = "▶ Following the log while the task runs…";
        text.appendData(decoder.decode(value, { stream: true }));
        if (text.length > KEEP_CHARS) {
          // a chatty task: keep the end of its log, as the tail does
          text.deleteData(0, text.length - KEEP_CHARS);
          status.textContent = "▶ Following the log while the task runs (its last part is kept)…";
        }
        if (near) pre.scrollTop = pre.scrollHeight;
      }
      text.appendData(decoder.decode());
      status.textContent = "The attempt ended.";
      if (!text.length) text.appendData("(empty)");
      // The run page's live updates show the new state; if they have stopped, refresh now.
      setTimeout(() => {
        if (!signal.aborted && this.shown && this.shown.id === t.id && this.shown.state === t.state) this.showInstance(t.id, { focus: false });
      }, 1500);
    } catch (err) {
      if (isAbort(err) || signal.aborted) return;
      status.textContent = `Could not follow the log: ${err.message}`;
    }
  }

  /** Show a group: its task, its instances' states, and a list of them to open. */
  async showGroup(node, options) {
    await quietAbort(this.renderGroup(node, options));
  }

  async renderGroup(node, { focus = true } = {}) {
    const signal = this.abort();
    this.el.hidden = false;
    this.shown = { kind: "group", id: node.id, state: node.state };
    this.title.textContent = `${node.task} × ${node.size.toLocaleString()}`;
    fill(this.body, h("p", { class: "muted" }, "Loading…"));
    if (focus) this.title.focus({ preventScroll: true });
    const list = await this.instances(node.task, signal);
    if (signal.aborted) return;
    const order = ["failed", "running", "retry_wait", "ready", "pending", "cancelled", "skipped", "succeeded"];
    list.sort((a, b) => order.indexOf(a.state) - order.indexOf(b.state));
    fill(
      this.body,
      h("p", {}, `${node.size.toLocaleString()} instance${node.size === 1 ? "" : "s"} of task `, h("code", {}, node.task), ", grouped into one node."),
      countBadges(node.counts),
      h("h3", {}, list.length > LISTED ? `Instances (the first ${LISTED}, worst first)` : "Instances"),
      h(
        "ul",
        { class: "instances" },
        list.slice(0, LISTED).map((t) => h("li", {}, badge(t.state), " ", h("button", { type: "button", class: "link", onclick: () => this.showInstance(t.id) }, t.label), t.duration !== null && t.duration !== undefined ? h("span", { class: "muted small" }, ` ${duration(t.duration)}`) : null)),
      ),
    );
  }
}

/** Wait for `work`; a fetch it made that was aborted (the panel moved on) ends it quietly. */
async function quietAbort(work) {
  try {
    await work;
  } catch (err) {
    if (!isAbort(err)) throw err;
  }
}

/** A notebook task's executed notebook, rendered by the API in a sandbox (its own policy runs no
 * script); the frame is sandboxed too, so neither alone lets the notebook act in this page's origin. */
function notebookFrame(runId, t) {
  const nb = t.targets.find((x) => x.endsWith(".ipynb") && t.targets.includes(x.slice(0, -".ipynb".length) + ".html"));
  if (!nb || !NOTEBOOK_SHOWN.has(t.state)) return null;
  const src = `${BASE}/runs/${seg(runId)}/notebook${query({ task: t.id })}`;
  const failed = t.state === "failed";
  return [
    h("h3", {}, failed ? "Notebook, up to the failing cell" : "Notebook"),
    h("iframe", { sandbox: true, src, class: "notebook-frame", title: `The executed notebook ${nb}`, referrerpolicy: "no-referrer" }),
    h("p", { class: "small" }, h("a", { href: src, target: "_blank", rel: "noopener" }, "Open the notebook in a new tab")),
  ];
}

function paramList(params, labelOf) {
  const entries = Object.entries(params || {});
  if (!entries.length) return h("p", { class: "muted" }, "None.");
  return h(
    "dl",
    { class: "params-list" },
    entries.map(([k, v]) => [
      h("dt", {}, h("code", {}, k)),
      h("dd", {}, h("code", { class: "value" }, upstream(v) ? `← ${labelOf(v.$upstream)}` : valueText(v))),
    ]),
  );
}

function attemptsTable(attempts) {
  if (!attempts.length) return h("p", { class: "muted" }, "None yet.");
  return h(
    "table",
    { class: "list compact" },
    h("thead", {}, h("tr", {}, ["#", "State", "Started", "Duration", "Where"].map((t) => h("th", { scope: "col" }, t)))),
    h(
      "tbody",
      {},
      attempts.map((a) =>
        h(
          "tr",
          {},
          h("td", { class: "num" }, String(a.number)),
          h("td", {}, badge(a.state), a.error ? h("div", { class: "small error-text", title: a.error }, lastLine(a.error)) : null),
          h("td", { class: "nowrap" }, when(a.started_at)),
          h("td", { class: "num nowrap" }, a.ended_at ? duration(a.duration) : `${duration((Date.now() - new Date(a.started_at).getTime()) / 1000)} so far`),
          // where its engine has it (queued and why, on which node), else the worker that ran it
          h("td", { class: "small where", title: a.placement || a.worker || "" }, a.placement || a.worker || "—"),
        ),
      ),
    ),
  );
}

const upstream = (v) => v !== null && typeof v === "object" && !Array.isArray(v) && typeof v.$upstream === "string";

/** The last line of an error (a traceback's exception); the whole one is in the error box. */
function lastLine(text) {
  const lines = String(text).trim().split("\n");
  return lines[lines.length - 1];
}

// What a target held when the task's last successful attempt ended: a table partition's rows,
// a file's or object's size and SHA-256 (the fingerprints the run record keeps).
function held(target, outputs) {
  const o = (outputs || []).find((x) => x.target === target);
  if (!o) return null;
  const parts = [];
  if (o.kind === "table") {
    const where = Object.entries(o.partition || {}).map(([k, v]) => `${k}=${v}`).join(", ");
    parts.push(where ? `partition ${where}` : "whole table", `${Number(o.rows).toLocaleString("en")} rows`);
  } else {
    if (o.size !== undefined) parts.push(bytes(o.size));
    if (o.sha256) parts.push(h("span", { title: `SHA-256 ${o.sha256}`, class: "mono" }, `sha256 ${o.sha256.slice(0, 12)}…`));
  }
  const out = h("span", { class: "held muted small" });
  parts.forEach((p, i) => out.append(i ? " · " : " — ", p));
  return out;
}

function bytes(n) {
  const units = ["bytes", "KiB", "MiB", "GiB", "TiB"];
  let v = Number(n);
  let u = 0;
  while (v >= 1024 && u < units.length - 1) {
    v /= 1024;
    u += 1;
  }
  return u ? `${v.toFixed(1)} ${units[u]}` : `${v} bytes`;
}
