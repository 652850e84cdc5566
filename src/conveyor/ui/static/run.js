// The run page: the run's state and actions, its task graph (updated in place from the
// changes since a cursor, about once a second while the run goes), the task panel, a timeline.

import { api, query, seg } from "./api.js";
import { badge, countBadges, duration, fill, glyph, h, stateWord, valueText, when, worst } from "./dom.js";
import { gantt } from "./gantt.js";
import { Graph } from "./graph.js";
import { TaskPanel } from "./panel.js";
import { canAct } from "./session.js";

const GOING = new Set(["pending", "running"]);
const GROUPINGS = { auto: "automatic", tasks: "one node per task", instances: "one node per instance" };
const LEGEND = ["pending", "ready", "running", "retry_wait", "succeeded", "skipped", "failed", "cancelled"];
const POLL = 1000;
const GANTT_EVERY = 3000;
const GROUP_PANEL_EVERY = 2000;

export async function runPage(page, id) {
  const group = Object.hasOwn(GROUPINGS, page.params.get("group")) ? page.params.get("group") : "auto";
  const data = await api(`/runs/${seg(id)}/graph${query({ group: group === "auto" ? "" : group })}`, { signal: page.signal });
  let run = data.run;
  const suffix = group === "auto" ? "" : `?group=${group}`;
  if (run.id !== id) history.replaceState(null, "", `#/runs/${seg(run.id)}${suffix}`);
  document.title = `Run ${run.id} · Conveyor`;

  // -- live states: the graph's nodes, and for a grouped graph each instance and each task's counts
  const grouped = data.grouped;
  const nodeOfTask = new Map(grouped ? data.nodes.map((n) => [n.task, n]) : []);
  const instances = new Map(); // grouped: instance id -> {task, state}
  let taskCounts = new Map(); // grouped: task -> {state: n}

  const header = new Header(run);
  const provenance = h("section", { class: "provenance-section", "aria-labelledby": "provenance-title", hidden: true });
  api(`/runs/${seg(run.id)}/provenance`, { signal: page.signal }).then((p) => showProvenance(provenance, p, run.id), () => {});
  const status = h("p", { class: "status", role: "status" });
  const cancel = h("button", { type: "button", class: "danger", onclick: () => act("Cancelling the run", "cancel") }, "⊘ Cancel run");
  const retry = h("button", { type: "button", onclick: () => act("Retrying the run", "retry") }, "↻ Retry failed tasks");
  const actions = h("div", { class: "actions run-actions" }, cancel, retry, status);
  cancel.hidden = retry.hidden = !canAct(run.team); // a viewer: the server would refuse
  const enable = () => {
    cancel.disabled = !GOING.has(run.state) || run.cancel_requested;
    cancel.title = cancel.disabled ? "Only a pending or running run can be cancelled" : "";
    retry.disabled = !["failed", "cancelled"].includes(run.state) || !run.partitions;
    retry.title = retry.disabled ? "Only a failed or cancelled run that was submitted can be retried" : "";
  };

  // -- details of instances (for the panel), fetched when asked and when stale
  let detail = null;
  let byId = new Map();
  let loading = null;
  const changed = new Set(); // instances changed since the details were fetched
  const fetchDetail = () => {
    loading ||= api(`/runs/${seg(run.id)}`, { signal: page.signal }).then(
      (d) => {
        detail = d;
        changed.clear();
        byId = new Map(d.tasks.map((t) => [t.id, t]));
        loading = null;
        return d;
      },
      (err) => {
        loading = null;
        throw err;
      },
    );
    return loading;
  };
  // -- the task panel and the graph, each opening the other's things
  let graph = null;
  let opened = null; // the node the panel was opened from
  const liveState = (instanceId) => (grouped ? instances.get(instanceId)?.state : graph.state(instanceId));
  const panel = new TaskPanel(run.id, {
    task: async (instanceId) => {
      const known = byId.get(instanceId);
      if (!known || changed.has(instanceId) || !["succeeded", "failed", "cancelled", "skipped"].includes(known.state)) {
        await fetchDetail();
      }
      const t = byId.get(instanceId);
      if (!t) throw new Error(`run ${run.id} has no task instance ${instanceId}`);
      return t;
    },
    instances: async (task) => {
      if (!detail) await fetchDetail();
      return detail.tasks.filter((t) => t.task === task).map((t) => ({ ...t, state: liveState(t.id) || t.state }));
    },
    labelOf: (instanceId) => byId.get(instanceId)?.label || instanceId,
    onClose: () => {
      graph.select(null);
      if (opened) graph.focusNode(opened);
    },
  });
  page.signal.addEventListener("abort", () => panel.abort()); // a followed log stops with the page
  graph = new Graph(data, {
    onOpen: (node) => {
      opened = node.id;
      const only = grouped && node.size === 1 ? [...instances].find(([, i]) => i.task === node.task) : null;
      if (only) panel.showInstance(only[0]);
      else if (grouped) panel.showGroup({ ...node, counts: taskCounts.get(node.task) || node.counts });
      else panel.showInstance(node.id);
    },
  });

  const grouping = h(
    "select",
    { id: "grouping", "aria-label": "Group the graph's instances" },
    Object.entries(GROUPINGS).map(([value, text]) => h("option", { value, selected: value === group }, text)),
  );
  grouping.addEventListener("change", () => {
    location.hash = `#/runs/${seg(run.id)}${grouping.value === "auto" ? "" : `?group=${grouping.value}`}`;
  });
  const timeline = h("div", { class: "timeline" });
  fill(
    page.main,
    h("p", { class: "crumbs" }, h("a", { href: "#/runs" }, "Runs"), " / ", h("a", { href: `#/runs${query({ pipeline: run.pipeline })}` }, run.pipeline), " /"),
    h("h1", {}, "Run ", h("span", { class: "mono" }, run.id), " ", header.badge),
    header.el,
    actions,
    h(
      "div",
      { class: "run-body" },
      h(
        "section",
        { class: "graph-section", "aria-labelledby": "graph-title" },
        h(
          "div",
          { class: "graph-head" },
          h("h2", { id: "graph-title" }, "Graph"),
          h("span", { class: "muted small" }, grouped ? `${run.total.toLocaleString()} instances, grouped by task` : `${data.nodes.length.toLocaleString()} task instance${data.nodes.length === 1 ? "" : "s"}`),
          graph.toolbar,
          h("label", { class: "small" }, "Nodes: ", grouping),
        ),
        graph.frame,
        h("ul", { class: "legend", "aria-label": "States" }, LEGEND.map((s) => h("li", {}, badge(s)))),
      ),
      panel.el,
    ),
    h("section", { class: "timeline-section", "aria-labelledby": "timeline-title" }, h("h2", { id: "timeline-title" }, "Timeline"), timeline),
    provenance,
  );
  graph.fit();
  enable();

  // -- actions ----------------------------------------------------------------------------------
  async function act(what, verb) {
    status.textContent = `${what}…`;
    status.classList.remove("error");
    try {
      run = await api(`/runs/${seg(run.id)}/${verb}`, { method: "POST" });
      header.update(run);
      enable();
      status.textContent = verb === "cancel" ? "Cancel requested: running tasks are being stopped." : "Retry requested: the failed and cancelled tasks run again.";
      startPolling();
    } catch (err) {
      status.textContent = `${what} failed: ${err.message}`;
      status.classList.add("error");
    }
  }

  // -- live updates -----------------------------------------------------------------------------
  let cursor = data.cursor;
  const seed = (changes) => {
    taskCounts = new Map();
    const seen = new Map();
    for (const i of changes.instances) {
      instances.set(i.id, { task: i.task, state: i.state });
      const counts = taskCounts.get(i.task) || {};
      counts[i.state] = (counts[i.state] || 0) + 1;
      taskCounts.set(i.task, counts);
      seen.set(i.task, (seen.get(i.task) || 0) + 1);
    }
    for (const [task, node] of nodeOfTask) {
      const counts = taskCounts.get(task) || {};
      const rest = node.size - (seen.get(task) || 0);
      if (rest > 0) counts.pending = (counts.pending || 0) + rest; // never moved: as created
      taskCounts.set(task, counts);
      graph.update(node.id, worst(counts), { ...counts });
    }
  };
  let panelStale = false;
  const applyInstances = (list) => {
    const dirty = new Set();
    for (const i of list) {
      if (!grouped) {
        graph.update(i.id, i.state);
      } else {
        const before = instances.get(i.id)?.state || "pending";
        const counts = taskCounts.get(i.task);
        if (counts && before !== i.state) {
          counts[before] = (counts[before] || 0) - 1;
          if (counts[before] <= 0) delete counts[before];
          counts[i.state] = (counts[i.state] || 0) + 1;
          dirty.add(i.task);
        }
        instances.set(i.id, { task: i.task, state: i.state });
      }
      changed.add(i.id);
      const shown = panel.shown;
      if (shown && shown.kind === "instance" && shown.id === i.id && (shown.state !== i.state || shown.attempts !== i.attempts)) {
        panelStale = true;
      }
    }
    for (const task of dirty) {
      const node = nodeOfTask.get(task);
      const counts = taskCounts.get(task);
      if (node) graph.update(node.id, worst(counts), { ...counts });
      if (panel.shown && panel.shown.kind === "group" && panel.shown.id === node?.id) panelStale = true;
    }
  };
  let ganttAt = 0;
  let ganttDirty = true;
  const refreshGantt = async (force) => {
    if (!force && (!ganttDirty || Date.now() - ganttAt < GANTT_EVERY)) return;
    ganttAt = Date.now();
    ganttDirty = false;
    const bars = await api(`/runs/${seg(run.id)}/attempts`, { signal: page.signal });
    fill(timeline, gantt(bars, Math.max(480, timeline.clientWidth || 900)));
  };
  let groupPanelAt = 0;
  const refreshPanel = () => {
    if (!panelStale || !panel.shown) return;
    if (panel.shown.kind === "instance") {
      panelStale = false;
      panel.showInstance(panel.shown.id, { focus: false });
    } else if (Date.now() - groupPanelAt > GROUP_PANEL_EVERY) {
      panelStale = false;
      groupPanelAt = Date.now();
      const node = graph.items.get(panel.shown.id)?.node;
      if (node) panel.showGroup({ ...node, counts: taskCounts.get(node.task) || node.counts }, { focus: false });
    }
  };
  const tick = async () => {
    const changes = await api(`/runs/${seg(run.id)}/changes${query({ since: cursor })}`, { signal: page.signal });
    cursor = changes.cursor;
    run = changes.run;
    header.update(run);
    enable();
    if (changes.instances.length) {
      ganttDirty = true;
      applyInstances(changes.instances);
    }
    const going = GOING.has(run.state);
    refreshPanel();
    await refreshGantt(!going);
    return going;
  };
  let polling = false;
  function startPolling() {
    if (polling) return;
    polling = true;
    page.every(POLL, async () => {
      let going = true;
      try {
        going = await tick();
      } finally {
        polling = going;
      }
      return going;
    });
  }
  if (grouped) {
    const all = await api(`/runs/${seg(run.id)}/changes${query({ since: 0 })}`, { signal: page.signal });
    cursor = all.cursor;
    run = all.run;
    header.update(run);
    enable();
    seed(all);
  }
  await refreshGantt(true);
  if (GOING.has(run.state)) startPolling();
  page.every(1000, () => {
    header.tick(run); // a running run's duration so far
    return true;
  });
}

/** The run's state, parameters, times, counts and error; updated from each change. */
class Header {
  constructor(run) {
    this.badge = h("span", { class: "run-state" });
    this.counts = h("dd", {});
    this.times = h("dd", {});
    this.took = h("dd", {});
    this.error = h("div", { class: "error-box", hidden: true });
    this.note = h("span", { class: "muted small" });
    this.el = h(
      "div",
      { class: "run-meta" },
      h(
        "dl",
        { class: "meta" },
        h("dt", {}, "Pipeline"),
        h("dd", {}, h("a", { href: `#/runs${query({ pipeline: run.pipeline })}` }, run.pipeline), " ", h("span", { class: "muted small" }, run.target)),
        h("dt", {}, "Parameters"),
        h("dd", { class: "run-params" }, paramChips(run.params)),
        h("dt", {}, "Created"),
        h("dd", {}, when(run.created_at)),
        h("dt", {}, "Started / ended"),
        this.times,
        h("dt", {}, "Duration"),
        this.took,
        h("dt", {}, "Tasks"),
        this.counts,
      ),
      this.error,
    );
    this.update(run);
  }

  update(run) {
    fill(this.badge, badge(run.state), run.cancel_requested && GOING.has(run.state) ? h("span", { class: "muted small" }, " (cancelling)") : null);
    fill(this.counts, `${run.total.toLocaleString()}: `, countBadges(run.counts));
    fill(this.times, `${when(run.started_at)} → ${run.ended_at ? when(run.ended_at) : GOING.has(run.state) ? "…" : "—"}`);
    this.tick(run);
    if (run.error) {
      fill(this.error, h("h2", {}, `${glyph("failed")} Why it ${stateWord(run.state)}`), h("pre", { class: "error-text" }, run.error));
      this.error.hidden = false;
    } else {
      this.error.hidden = true;
    }
  }

  tick(run) {
    if (run.duration !== null && run.duration !== undefined) fill(this.took, duration(run.duration));
    else if (run.started_at && GOING.has(run.state)) fill(this.took, `${duration((Date.now() - new Date(run.started_at).getTime()) / 1000)} so far`);
    else fill(this.took, "—");
  }
}

function paramChips(params) {
  const entries = Object.entries(params || {});
  if (!entries.length) return h("span", { class: "muted" }, "none");
  return entries.map(([k, v]) => h("code", { class: "chip", "data-param": k }, `${k} = ${valueText(v)}`));
}

/** The run record: the code's commit and diff, Python, platform, environment, image; each
 * instance's inputs (by content hash) are in its panel's outputs and in the API. */
function showProvenance(section, p, runId) {
  if (!p) return;
  const short = (x) => (x ? x.slice(0, 12) : "");
  const rows = [
    ["Commit", p.commit ? h("code", {}, p.commit) : h("span", { class: "muted" }, "none: not run from a git working copy")],
    ["Uncommitted diff", p.diff_hash ? h("details", {}, h("summary", {}, `${short(p.diff_hash)} (${p.diff.split("\n").length} lines)`), h("pre", { class: "diff" }, p.diff)) : "none (clean)"],
    ["Python", `${p.python} on ${p.platform}`],
    ["Environment", h("span", {}, h("code", {}, short(p.env_hash)), ` (${p.env_kind})`)],
  ];
  if (p.image) rows.push(["Image", h("code", {}, p.image)]);
  const inputs = Object.values(p.inputs || {}).reduce((n, xs) => n + xs.length, 0);
  rows.push(["Inputs recorded", `${inputs} fingerprint${inputs === 1 ? "" : "s"} over ${Object.keys(p.inputs || {}).length} task instances`]);
  fill(
    section,
    h("h2", { id: "provenance-title" }, "Provenance"),
    h("dl", { class: "meta run-meta" }, rows.flatMap(([k, v]) => [h("dt", {}, k), h("dd", {}, v)])),
    p.commit ? h("p", { class: "muted small" }, "Reproduce it: ", h("code", {}, `conveyor reproduce ${runId}`)) : null,
  );
  section.hidden = false;
}
