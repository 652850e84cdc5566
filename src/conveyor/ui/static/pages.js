// The list pages: pipelines, runs, backfills, schedules, schedulers.

import { api, query, seg } from "./api.js";
import { ago, badge, countBadges, duration, fill, glyph, h, logicalDate, paramsLine, redraw, stateWord, when } from "./dom.js";
import { backfillForm, backfillable, runForm } from "./forms.js";

const RUN_STATES = ["pending", "running", "succeeded", "failed", "cancelled"];
const PAGE_SIZES = [20, 50, 100, 200];

export const runLink = (id) => h("a", { href: `#/runs/${seg(id)}`, class: "mono" }, id);

/** A table: headers, then rows of cells (strings or nodes). */
function table(caption, headers, rows, empty) {
  if (!rows.length) return h("p", { class: "muted empty" }, empty);
  return h(
    "table",
    { class: "list" },
    caption ? h("caption", { class: "sr-only" }, caption) : null,
    h("thead", {}, h("tr", {}, headers.map((t) => h("th", { scope: "col" }, t)))),
    h("tbody", {}, rows),
  );
}

/** A status line for the result of an action (role=status: read out, not stolen focus). */
function statusLine() {
  return h("p", { class: "status", role: "status" });
}

async function act(status, what, call) {
  status.textContent = `${what}…`;
  status.classList.remove("error");
  try {
    const result = await call();
    status.textContent = `${what}: done.`;
    return result;
  } catch (err) {
    status.textContent = `${what} failed: ${err.message}`;
    status.classList.add("error");
    return null;
  }
}

// -- pipelines ---------------------------------------------------------------------------------
export async function pipelinesPage(page) {
  const pipelines = await api("/pipelines", { signal: page.signal });
  const recent = new Map(pipelines.map((p) => [p.name, h("span", { class: "recent" })]));
  const rows = pipelines.map((p) =>
    h(
      "tr",
      { dataset: { pipeline: p.name } },
      h("th", { scope: "row" }, h("span", { class: "name" }, p.name), p.description ? h("p", { class: "muted small" }, p.description) : null),
      h("td", { class: "small" }, paramSummary(p)),
      h("td", {}, p.schedule ? scheduleCell(p.schedule) : h("span", { class: "muted" }, "—")),
      h("td", {}, recent.get(p.name)),
      h(
        "td",
        {},
        h(
          "div",
          { class: "actions" },
          h("button", { type: "button", class: "primary act", onclick: () => runForm(p), "aria-label": `Run ${p.name}…` }, "Run…"),
          backfillable(p)
            ? h("button", { type: "button", class: "act", onclick: () => backfillForm(p), "aria-label": `Backfill ${p.name}…` }, "Backfill…")
            : null,
        ),
      ),
    ),
  );
  fill(
    page.main,
    h("h1", {}, "Pipelines"),
    pipelines.length
      ? table("The project's pipelines", ["Pipeline", "Parameters", "Schedule", "Recent runs (newest first)", ""], rows, "")
      : h("p", { class: "muted empty" }, "This project serves no pipelines: list them in its conveyor.toml ([project] pipelines) and reload (curl -X POST .../api/v1/pipelines/reload); no restart needed."),
  );
  const loadRecent = async () => {
    await Promise.all(
      pipelines.map(async (p) => {
        const runs = await api(`/runs${query({ pipeline: p.name, limit: 12 })}`, { signal: page.signal });
        const key = JSON.stringify([runs.total, runs.items.map((r) => [r.id, r.state])]);
        redraw(recent.get(p.name), key, () => [
          runs.items.length
            ? runs.items.map((r) =>
                h(
                  "a",
                  { href: `#/runs/${seg(r.id)}`, class: `dot state-${RUN_STATES.includes(r.state) ? r.state : "other"}`, title: `${r.id}: ${stateWord(r.state)} (${when(r.created_at)})`, "aria-label": `run ${r.id}: ${stateWord(r.state)}` },
                  glyph(r.state),
                ),
              )
            : h("span", { class: "muted" }, "no runs yet"),
          runs.total > runs.items.length ? h("a", { href: `#/runs${query({ pipeline: p.name })}`, class: "more" }, `all ${runs.total.toLocaleString()}`) : null,
        ]);
      }),
    );
  };
  await loadRecent();
  page.every(3000, loadRecent);
}

function paramSummary(p) {
  if (!p.params.length) return h("span", { class: "muted" }, "none");
  return h(
    "ul",
    { class: "params" },
    p.params.map((q) =>
      h("li", {}, h("code", {}, q.name), `: ${q.type}`, q.required ? h("span", { class: "required" }, " (required)") : ` = ${JSON.stringify(q.default)}`),
    ),
  );
}

function scheduleCell(s) {
  return h(
    "span",
    {},
    h("code", {}, s.cron),
    ` ${s.timezone} `,
    s.paused ? badge("paused") : h("span", { class: "muted small" }, `next ${when(s.next_tick)}`),
  );
}

// -- runs --------------------------------------------------------------------------------------
export async function runsPage(page) {
  const p = page.params;
  const asked = Number.parseInt(p.get("limit") || "", 10);
  const limit = asked >= 1 && asked <= 500 ? asked : 50; // the API's bounds
  const sizes = PAGE_SIZES.includes(limit) ? PAGE_SIZES : [...PAGE_SIZES, limit].sort((a, b) => a - b);
  const offset = Math.max(0, Number.parseInt(p.get("offset") || "0", 10) || 0);
  const filters = { pipeline: p.get("pipeline") || "", state: p.get("state") || "", since: p.get("since") || "" };
  const pipelines = await api("/pipelines", { signal: page.signal });

  const pipelineSelect = h(
    "select",
    { id: "f-pipeline", name: "pipeline" },
    h("option", { value: "" }, "any"),
    pipelines.map((x) => h("option", { value: x.name, selected: x.name === filters.pipeline }, x.name)),
  );
  const stateSelect = h(
    "select",
    { id: "f-state", name: "state" },
    h("option", { value: "" }, "any"),
    RUN_STATES.map((s) => h("option", { value: s, selected: s === filters.state }, `${glyph(s)} ${s}`)),
  );
  const since = h("input", { id: "f-since", name: "since", type: "date", value: filters.since });
  const size = h(
    "select",
    { id: "f-limit", name: "limit" },
    sizes.map((n) => h("option", { value: n, selected: n === limit }, String(n))),
  );
  const go = (changes) => {
    const next = { ...filters, limit: limit === 50 ? "" : limit, offset: "", ...changes };
    location.hash = `#/runs${query(next)}`;
  };
  const form = h(
    "form",
    { class: "filters", role: "search", "aria-label": "Filter runs" },
    h("label", { for: "f-pipeline" }, "Pipeline ", pipelineSelect),
    h("label", { for: "f-state" }, "State ", stateSelect),
    h("label", { for: "f-since" }, "Created since ", since),
    h("label", { for: "f-limit" }, "Per page ", size),
    h("button", { type: "submit" }, "Apply"),
    h("a", { href: "#/runs", class: "button" }, "Clear"),
  );
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    go({ pipeline: pipelineSelect.value, state: stateSelect.value, since: since.value, limit: Number(size.value) === 50 ? "" : size.value });
  });
  for (const el of [pipelineSelect, stateSelect, size]) el.addEventListener("change", () => form.requestSubmit());

  const results = h("div", { class: "results", "aria-live": "polite" });
  fill(page.main, h("h1", {}, "Runs"), form, results);

  const load = async () => {
    const sinceIso = filters.since ? localMidnight(filters.since) : "";
    const runs = await api(
      `/runs${query({ pipeline: filters.pipeline, state: filters.state, since: sinceIso, limit, offset })}`,
      { signal: page.signal },
    );
    const rows = runs.items.map((r) =>
      h(
        "tr",
        { dataset: { run: r.id } },
        h("td", {}, runLink(r.id)),
        h("td", {}, r.pipeline),
        h("td", {}, badge(r.state), r.cancel_requested && !["cancelled", "succeeded", "failed"].includes(r.state) ? h("span", { class: "muted small" }, " (cancelling)") : null),
        h("td", {}, countBadges(r.counts)),
        h("td", { class: "nowrap" }, when(r.created_at)),
        h("td", { class: "nowrap num" }, duration(r.duration)),
        h("td", { class: "params-cell", title: paramsLine(r.params) }, paramsLine(r.params)),
      ),
    );
    const first = runs.total ? runs.offset + 1 : 0;
    const last = runs.offset + runs.items.length;
    const pager = h(
      "nav",
      { class: "pager", "aria-label": "Pages of runs" },
      h("button", { type: "button", disabled: offset === 0, onclick: () => go({ offset: Math.max(0, offset - limit) || "" }) }, "← Newer"),
      h("span", { class: "range" }, `${first.toLocaleString()}–${last.toLocaleString()} of ${runs.total.toLocaleString()}`),
      h("button", { type: "button", disabled: last >= runs.total, onclick: () => go({ offset: offset + limit }) }, "Older →"),
    );
    redraw(results, JSON.stringify(runs), () => [
      table("Runs", ["Run", "Pipeline", "State", "Tasks", "Created", "Duration", "Parameters"], rows, "No runs match these filters."),
      pager,
    ]);
    return true;
  };
  await load();
  if (offset === 0) page.every(3000, load); // the newest page follows; older pages stay still
}

/** A date from <input type=date> as the browser's midnight, in UTC for the API. */
function localMidnight(day) {
  const [y, m, d] = day.split("-").map(Number);
  const t = new Date(y, m - 1, d);
  return Number.isNaN(t.getTime()) ? day : t.toISOString();
}

// -- backfills ---------------------------------------------------------------------------------
export async function backfillsPage(page) {
  const open = new Set(); // the backfills whose dates are shown, kept across refreshes
  const status = statusLine();
  const list = h("div", {});
  fill(page.main, h("h1", {}, "Backfills"), h("p", { class: "muted" }, "Start one from a pipeline's Backfill button on the ", h("a", { href: "#/pipelines" }, "Pipelines"), " page."), status, list);
  const load = async () => {
    const backfills = await api("/backfills?limit=100", { signal: page.signal });
    const rows = backfills.map((b) => {
      const dates = h(
        "details",
        { open: open.has(b.id) },
        h("summary", {}, `${b.total} date${b.total === 1 ? "" : "s"}`),
        h(
          "ul",
          { class: "dates" },
          b.dates.map((d) => h("li", {}, h("span", { class: "mono" }, logicalDate(d.when, b.every === "hour")), " ", badge(d.state), d.run ? [" ", runLink(d.run)] : null, d.retried ? h("span", { class: "muted small" }, " (retried)") : null)),
        ),
      );
      dates.addEventListener("toggle", () => (dates.open ? open.add(b.id) : open.delete(b.id)));
      const hourly = b.every === "hour";
      const first = b.dates.length ? logicalDate(b.dates[0].when, hourly) : "";
      const last = b.dates.length ? logicalDate(b.dates[b.dates.length - 1].when, hourly) : "";
      return h(
        "tr",
        { dataset: { backfill: b.id } },
        h("td", { class: "mono" }, b.id),
        h("td", {}, b.pipeline),
        h("td", { class: "nowrap" }, `${first} → ${last}`, h("span", { class: "muted small" }, ` every ${b.every}`)),
        h("td", { class: "num" }, String(b.max_parallel)),
        h("td", {}, badge(b.state)),
        h(
          "td",
          { class: "progress-cell" },
          h("progress", { max: b.total || 1, value: b.done, "aria-label": `${b.id}: ${b.done} of ${b.total} dates done` }),
          h("span", { class: "progress-text" }, ` ${b.done} of ${b.total}`),
          h("div", {}, countBadges(b.counts)),
        ),
        h("td", {}, dates),
        h(
          "td",
          {},
          h(
            "button",
            {
              type: "button",
              class: "act",
              disabled: b.state !== "running",
              "aria-label": `Cancel backfill ${b.id}`,
              onclick: async () => {
                if (await act(status, `Cancelling backfill ${b.id}`, () => api(`/backfills/${seg(b.id)}/cancel`, { method: "POST" }))) await load();
              },
            },
            "Cancel",
          ),
        ),
      );
    });
    redraw(list, JSON.stringify([backfills, [...open]]), () =>
      table("Backfills", ["Backfill", "Pipeline", "Dates", "Max parallel", "State", "Progress", "Runs", ""], rows, "No backfills yet."),
    );
    return true;
  };
  await load();
  page.every(2000, load);
}

// -- schedules ---------------------------------------------------------------------------------
export async function schedulesPage(page) {
  const status = statusLine();
  const list = h("div", {});
  fill(page.main, h("h1", {}, "Schedules"), status, list);
  const load = async () => {
    const schedules = await api("/schedules", { signal: page.signal });
    const rows = schedules.map((s) => {
      const verb = s.paused ? "resume" : "pause";
      return h(
        "tr",
        { dataset: { schedule: s.pipeline } },
        h("th", { scope: "row" }, s.pipeline, s.description ? h("p", { class: "muted small" }, s.description) : null),
        h("td", {}, h("code", {}, s.cron), ` ${s.timezone}`),
        h("td", {}, s.paused ? badge("paused") : badge("active")),
        h("td", { class: "nowrap" }, when(s.last_tick)),
        h("td", { class: "nowrap" }, s.paused ? "— (paused)" : when(s.next_tick)),
        h("td", {}, s.catchup ? "yes" : "no"),
        h(
          "td",
          {},
          h(
            "button",
            {
              type: "button",
              class: "act",
              "aria-label": `${s.paused ? "Resume" : "Pause"} the schedule of ${s.pipeline}`,
              onclick: async () => {
                if (await act(status, `${s.paused ? "Resuming" : "Pausing"} ${s.pipeline}`, () => api(`/schedules/${seg(s.pipeline)}/${verb}`, { method: "POST" }))) {
                  await load();
                }
              },
            },
            s.paused ? "⏵ Resume" : "⏸ Pause",
          ),
        ),
      );
    });
    redraw(list, JSON.stringify(schedules), () =>
      table("Schedules", ["Pipeline", "Cron", "State", "Last tick", "Next tick", "Catch up", ""], rows, "No pipeline of this project has a schedule."),
    );
    return true;
  };
  await load();
  page.every(5000, load);
}

// -- schedulers --------------------------------------------------------------------------------
export async function schedulersPage(page) {
  const list = h("div", {});
  fill(
    page.main,
    h("h1", {}, "Schedulers"),
    h("p", { class: "muted" }, "The scheduler daemons on this store: each beats every second or so; one that has not beaten for 5 s is silent, and its leases are taken over when they expire."),
    list,
  );
  const load = async () => {
    const schedulers = await api("/schedulers", { signal: page.signal });
    const rows = schedulers.map((s) =>
      h(
        "tr",
        { dataset: { scheduler: s.name } },
        h("td", { class: "mono" }, s.name),
        h("td", {}, badge(s.state)),
        h("td", { class: "nowrap" }, ago(s.heartbeat), h("span", { class: "muted small" }, ` (${when(s.heartbeat)})`)),
        h("td", { class: "nowrap" }, when(s.started_at)),
        h("td", { class: "num" }, String(s.workers)),
        h(
          "td",
          {},
          s.leases.length
            ? h("ul", { class: "leases" }, s.leases.map((l) => h("li", {}, runLink(l.run), ` partition ${l.partition}, epoch ${l.epoch}`, l.expires ? h("span", { class: "muted small" }, `, expires ${when(l.expires)}`) : null)))
            : h("span", { class: "muted" }, "none"),
        ),
      ),
    );
    redraw(list, undefined, () =>
      table("Schedulers", ["Scheduler", "State", "Heartbeat", "Started", "Workers", "Leases"], rows, "No scheduler has registered on this store: start one with conveyor scheduler (conveyor server starts one)."),
    );
    return true;
  };
  await load();
  page.every(2000, load);
}

// -- the audit ---------------------------------------------------------------------------------
export async function auditPage(page) {
  const list = h("div", {});
  fill(page.main, h("h1", {}, "Audit"), h("p", { class: "muted" }, "What was done, newest first: in your teams, and by you (an admin sees everything)."), list);
  const rows = (await api("/audit?limit=200", { signal: page.signal })).map((a) =>
    h(
      "tr",
      { dataset: { action: a.action } },
      h("td", { class: "nowrap" }, when(a.at)),
      h("td", {}, a.actor),
      h("td", { class: "mono" }, a.action),
      h("td", {}, a.team || ""),
      h("td", { class: "mono" }, a.target),
      h("td", {}, a.detail),
    ),
  );
  fill(list, table("Audit", ["When", "Who", "Action", "Team", "Target", "Detail"], rows, "Nothing recorded yet."));
}
