// A Gantt timeline of a run's attempts (GET /runs/{id}/attempts), as SVG: one row per task
// instance for small runs; for big ones, one row per worker, or per slot (attempts running at once).

import { duration, h, stateClass, stateWord, svg, when } from "./dom.js";

const ROW = 18;
const BAR = 12;
const TOP = 22;
const MAX_INSTANCE_ROWS = 40;

/** The timeline of `bars` (GanttBars), `width` px wide; running attempts reach `now`. */
export function gantt(bars, width, now = Date.now()) {
  if (!bars.length) return h("p", { class: "muted" }, "No attempt has started yet.");
  const start = (b) => new Date(b.started_at).getTime();
  const end = (b) => (b.ended_at ? new Date(b.ended_at).getTime() : now);
  const instances = new Set(bars.map((b) => b.instance));
  const by = instances.size <= MAX_INSTANCE_ROWS ? "task" : bars.every((b) => b.worker) ? "worker" : "slot";
  const rowName = new Map(); // row key -> its name
  const rowOf = new Map(); // bar -> row key
  if (by === "slot") {
    // Lanes packed in order of start: as many as attempts ran at once.
    const free = []; // lane -> when it is free again
    for (const b of [...bars].sort((p, q) => start(p) - start(q))) {
      let lane = free.findIndex((t) => t <= start(b));
      if (lane < 0) lane = free.push(0) - 1;
      free[lane] = end(b);
      rowOf.set(b, lane);
      rowName.set(lane, `slot ${lane + 1}`);
    }
  } else {
    for (const b of bars) {
      const key = by === "task" ? b.instance : b.worker;
      rowOf.set(b, key);
      if (!rowName.has(key)) rowName.set(key, by === "task" ? b.label : b.worker);
    }
  }
  const rows = [...rowName.keys()];
  const index = new Map(rows.map((key, i) => [key, i]));
  const t0 = Math.min(...bars.map(start));
  const t1 = Math.max(...bars.map(end), t0 + 1);
  const label = Math.min(260, Math.max(120, Math.round(width * 0.25)));
  const plot = Math.max(100, width - label - 16);
  const x = (t) => label + ((t - t0) / (t1 - t0)) * plot;
  const height = TOP + rows.length * ROW + 6;

  const axis = svg("g", { class: "axis" });
  for (let i = 0; i <= 5; i++) {
    const t = t0 + ((t1 - t0) * i) / 5;
    axis.append(
      svg("line", { x1: x(t), x2: x(t), y1: TOP - 4, y2: height, class: "tick" }),
      svg("text", { x: x(t), y: 12, "text-anchor": i === 0 ? "start" : i === 5 ? "end" : "middle" }, `+${offset(t - t0, t1 - t0)}`),
    );
  }
  const names = svg("g", { class: "row-names" });
  rows.forEach((key, i) => {
    const text = rowName.get(key);
    const room = Math.floor((label - 10) / 6.6);
    const short = text.length > room ? `${text.slice(0, room - 1)}…` : text;
    names.append(svg("text", { x: label - 6, y: TOP + i * ROW + BAR - 1, "text-anchor": "end" }, svg("title", {}, text), short));
  });
  const shapes = svg("g", { class: "bars" });
  for (const b of bars) {
    const left = x(start(b));
    const span = end(b) - start(b);
    shapes.append(
      svg(
        "rect",
        { x: left, y: TOP + index.get(rowOf.get(b)) * ROW, width: Math.max(2, x(end(b)) - left), height: BAR, rx: 2, class: `bar ${stateClass(b.state)}` },
        svg("title", {}, `${b.label} · attempt ${b.number} · ${stateWord(b.state)} · ${duration(span / 1000)}${b.ended_at ? "" : " so far"}\nstarted ${when(b.started_at)}${b.worker ? ` on ${b.worker}` : ""}`),
      ),
    );
  }
  const summary = `Timeline of ${bars.length} attempt${bars.length === 1 ? "" : "s"} over ${duration((t1 - t0) / 1000)}, one row per ${by === "slot" ? "slot of attempts running at once" : by}`;
  return svg("svg", { class: "gantt", width, height, viewBox: `0 0 ${width} ${height}`, role: "img", "aria-label": summary }, axis, names, shapes);
}

/** An offset on the axis, precise enough for the whole span (ms). */
function offset(ms, span) {
  if (span < 2000) return `${Math.round(ms)} ms`;
  if (span < 60000) return `${(ms / 1000).toFixed(span < 20000 ? 1 : 0)} s`;
  return duration(ms / 1000);
}
