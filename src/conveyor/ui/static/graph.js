// A run's task graph as SVG: the layout comes from the API (GET /runs/{id}/graph, computed in
// Python); this draws it, pans and zooms it, and changes nodes' states in place.
//
// Mouse: drag to pan, wheel to zoom. Keyboard: on the graph, arrows pan, + and - zoom, 0 fits;
// Tab reaches the nodes (one tab stop for big graphs), arrows move between them, Enter opens one.

import { glyph, h, stateClass, stateWord, svg } from "./dom.js";

/** Above this many nodes, the nodes share one tab stop (arrows move between them). */
const ROVING = 300;
const MIN_ZOOM = 0.002;
const MAX_ZOOM = 4;
const CHAR = 6.6; // the width of a character of the labels, roughly, in px

export class Graph {
  /** `data`: a GraphView; `onOpen(node)`: a node was clicked or Enter was pressed on it. */
  constructor(data, { onOpen }) {
    this.data = data;
    this.onOpen = onOpen;
    this.items = new Map(); // node id -> {node, g, glyph, sub, title}
    this.view = { k: 1, tx: 0, ty: 0 };
    this.selected = null;
    this.roving = data.nodes.length > ROVING;

    this.zoomText = h("output", { class: "zoom-level", "aria-live": "off" }, "100%");
    const button = (text, label, action) =>
      h("button", { type: "button", class: "icon", "aria-label": label, title: label, onclick: action }, text);
    this.toolbar = h(
      "div",
      { class: "graph-tools", role: "toolbar", "aria-label": "Zoom" },
      button("−", "Zoom out (−)", () => this.zoomBy(1 / 1.25)),
      this.zoomText,
      button("+", "Zoom in (+)", () => this.zoomBy(1.25)),
      button("Fit", "Fit the graph (0)", () => this.fit()),
    );

    this.viewport = svg("g", { class: "viewport" });
    this.root = svg(
      "svg",
      {
        class: "graph",
        tabindex: "0",
        role: "group",
        "aria-roledescription": "task graph",
        "aria-label": `Task graph, ${data.nodes.length} node${data.nodes.length === 1 ? "" : "s"}: arrows pan, + and − zoom, 0 fits; Tab to the tasks, Enter opens one`,
      },
      svg(
        "defs",
        {},
        svg(
          "marker",
          { id: "arrow", viewBox: "0 0 10 10", refX: "9", refY: "5", markerWidth: "7", markerHeight: "7", orient: "auto-start-reverse" },
          svg("path", { d: "M 0 0 L 10 5 L 0 10 z", class: "arrowhead" }),
        ),
      ),
      this.viewport,
    );
    this.frame = h("div", { class: "graph-frame" }, this.root);
    this.frame.style.height = `${Math.round(Math.min(640, Math.max(220, data.height + 60)))}px`;
    this.fitted = true; // the view is the fitted one: it follows the frame's size
    this.draw();
    this.listen();
    if (typeof ResizeObserver === "function") {
      let last = null;
      new ResizeObserver(() => {
        const { w, h: height } = this.size();
        if (last && (last.w !== w || last.h !== height) && this.fitted) this.fit();
        last = { w, h: height };
      }).observe(this.root);
    }
  }

  draw() {
    const edges = svg("g", { class: "edges" });
    for (const e of this.data.edges) {
      const points = e.points.map(([x, y]) => `${x},${y}`).join(" ");
      edges.append(svg("polyline", { points, class: "edge", "marker-end": "url(#arrow)" }));
    }
    const nodes = svg("g", { class: "nodes" });
    this.layers = new Map();
    this.outgoing = new Map();
    this.incoming = new Map();
    for (const e of this.data.edges) {
      push(this.outgoing, e.source, e.target);
      push(this.incoming, e.target, e.source);
    }
    let first = true;
    for (const n of this.data.nodes) {
      const item = this.node(n, first || !this.roving);
      first = false;
      nodes.append(item.g);
      this.items.set(n.id, item);
      push(this.layers, n.layer, n.id);
    }
    for (const ids of this.layers.values()) {
      ids.sort((a, b) => {
        const p = this.items.get(a).node;
        const q = this.items.get(b).node;
        return p.y - q.y || p.x - q.x;
      });
    }
    this.viewport.replaceChildren(edges, nodes);
  }

  node(n, tabStop) {
    const grouped = n.size > 1 || this.data.grouped;
    const maxChars = Math.max(4, Math.floor((n.w - 34) / CHAR));
    const label = n.label.length > maxChars ? `${n.label.slice(0, maxChars - 1)}…` : n.label;
    const twoLines = grouped && n.h >= 34;
    const title = svg("title", {});
    const glyphText = svg("text", { x: 10, y: n.h / 2 + 5, class: "glyph", "aria-hidden": "true" });
    const sub = twoLines ? svg("text", { x: 28, y: n.h / 2 + 12, class: "sub" }) : null;
    const g = svg(
      "g",
      { transform: `translate(${n.x},${n.y})`, tabindex: tabStop ? "0" : "-1", role: "button", "data-id": n.id },
      title,
      svg("rect", { width: n.w, height: n.h, rx: 6, ry: 6 }),
      glyphText,
      svg("text", { x: 28, y: twoLines ? n.h / 2 - 3 : n.h / 2 + 4, class: "label" }, label),
      sub,
    );
    const item = { node: { ...n }, g, glyph: glyphText, sub, title };
    this.paint(item);
    return item;
  }

  /** Show the item's state: colour (class), glyph, counts, and the same in words for tooltips and readers. */
  paint(item) {
    const n = item.node;
    const selected = this.selected === n.id ? " selected" : "";
    item.g.setAttribute("class", `node ${stateClass(n.state)}${selected}`);
    item.g.dataset.state = n.state;
    item.glyph.textContent = glyph(n.state);
    const counts = n.counts || {};
    const summary = Object.keys(counts)
      .filter((s) => counts[s])
      .map((s) => `${counts[s].toLocaleString()} ${stateWord(s)}`)
      .join(", ");
    if (item.sub) {
      item.sub.textContent = Object.keys(counts)
        .filter((s) => counts[s])
        .map((s) => `${glyph(s)}${counts[s].toLocaleString()}`)
        .join(" ");
    }
    const words = n.size > 1 ? `${n.size.toLocaleString()} instances: ${summary}` : stateWord(n.state);
    item.title.textContent = `${n.label}\n${words}`;
    item.g.setAttribute("aria-label", `${n.label}: ${words}`);
  }

  /** A node's new state (and counts, for a group). */
  update(id, state, counts) {
    const item = this.items.get(id);
    if (!item) return;
    if (item.node.state === state && !counts) return;
    item.node.state = state;
    item.node.counts = counts || { [state]: 1 };
    this.paint(item);
  }

  state(id) {
    const item = this.items.get(id);
    return item ? item.node.state : null;
  }

  select(id) {
    const before = this.selected;
    this.selected = id;
    for (const key of [before, id]) {
      const item = key && this.items.get(key);
      if (item) this.paint(item);
    }
  }

  focusNode(id) {
    const item = this.items.get(id);
    if (!item) return;
    if (this.roving) {
      for (const other of this.root.querySelectorAll('.node[tabindex="0"]')) other.setAttribute("tabindex", "-1");
      item.g.setAttribute("tabindex", "0");
    }
    this.reveal(item.node);
    item.g.focus({ preventScroll: true });
  }

  // -- pan and zoom ----------------------------------------------------------------------------
  apply() {
    const { k, tx, ty } = this.view;
    this.viewport.setAttribute("transform", `translate(${tx.toFixed(2)},${ty.toFixed(2)}) scale(${k.toFixed(4)})`);
    this.zoomText.textContent = `${Math.round(k * 100)}%`;
    this.root.classList.toggle("far", k < 0.45); // labels too small to read are not drawn
  }

  size() {
    const r = this.root.getBoundingClientRect();
    return { w: r.width || 800, h: r.height || 400 };
  }

  fit() {
    const { w, h: height } = this.size();
    const pad = 16;
    const k = clamp(Math.min((w - 2 * pad) / Math.max(this.data.width, 1), (height - 2 * pad) / Math.max(this.data.height, 1), 1.25));
    this.view = { k, tx: (w - this.data.width * k) / 2, ty: (height - this.data.height * k) / 2 };
    this.apply();
    this.fitted = true;
  }

  zoomBy(factor, cx, cy) {
    const { w, h: height } = this.size();
    const x = cx === undefined ? w / 2 : cx;
    const y = cy === undefined ? height / 2 : cy;
    const { k, tx, ty } = this.view;
    const next = clamp(k * factor);
    this.view = { k: next, tx: x - ((x - tx) * next) / k, ty: y - ((y - ty) * next) / k };
    this.fitted = false;
    this.apply();
  }

  panBy(dx, dy) {
    this.view.tx += dx;
    this.view.ty += dy;
    this.fitted = false;
    this.apply();
  }

  /** Pan so that a node is in sight. */
  reveal(n) {
    const { w, h: height } = this.size();
    const { k, tx, ty } = this.view;
    const left = n.x * k + tx;
    const top = n.y * k + ty;
    if (left < 0 || top < 0 || left + n.w * k > w || top + n.h * k > height) {
      this.view.tx = w / 2 - (n.x + n.w / 2) * k;
      this.view.ty = height / 2 - (n.y + n.h / 2) * k;
      this.apply();
    }
  }

  listen() {
    const root = this.root;
    root.addEventListener(
      "wheel",
      (e) => {
        e.preventDefault();
        const r = root.getBoundingClientRect();
        this.zoomBy(Math.exp(-e.deltaY * 0.0015), e.clientX - r.left, e.clientY - r.top);
      },
      { passive: false },
    );
    let drag = null;
    root.addEventListener("pointerdown", (e) => {
      if (e.button !== 0) return;
      drag = { x: e.clientX, y: e.clientY, moved: false, id: e.pointerId };
    });
    root.addEventListener("pointermove", (e) => {
      if (!drag || e.pointerId !== drag.id) return;
      const dx = e.clientX - drag.x;
      const dy = e.clientY - drag.y;
      if (!drag.moved && Math.hypot(dx, dy) < 4) return;
      if (!drag.moved) {
        drag.moved = true;
        root.setPointerCapture(e.pointerId); // the click, if any, lands on the graph, not a node
        root.classList.add("dragging");
      }
      drag.x = e.clientX;
      drag.y = e.clientY;
      this.panBy(dx, dy);
    });
    const end = () => {
      drag = null;
      root.classList.remove("dragging");
    };
    root.addEventListener("pointerup", end);
    root.addEventListener("pointercancel", end);
    root.addEventListener("click", (e) => {
      const g = e.target.closest && e.target.closest(".node");
      if (g) this.open(g.dataset.id);
    });
    root.addEventListener("keydown", (e) => this.key(e));
  }

  open(id) {
    const item = this.items.get(id);
    if (!item) return;
    this.select(id);
    if (this.roving) this.focusNode(id);
    this.onOpen(item.node);
  }

  key(e) {
    if (e.altKey || e.ctrlKey || e.metaKey) return;
    const g = e.target.closest && e.target.closest(".node");
    const id = g ? g.dataset.id : null;
    const step = 60;
    const keys = {
      "+": () => this.zoomBy(1.25),
      "=": () => this.zoomBy(1.25),
      "-": () => this.zoomBy(1 / 1.25),
      _: () => this.zoomBy(1 / 1.25),
      0: () => this.fit(),
    };
    if (keys[e.key]) {
      keys[e.key]();
    } else if (id && (e.key === "Enter" || e.key === " ")) {
      this.open(id);
    } else if (id && e.key.startsWith("Arrow")) {
      const next = this.neighbour(id, e.key);
      if (next) this.focusNode(next);
    } else if (!id && e.key.startsWith("Arrow")) {
      const [dx, dy] = { ArrowLeft: [step, 0], ArrowRight: [-step, 0], ArrowUp: [0, step], ArrowDown: [0, -step] }[e.key];
      this.panBy(dx, dy);
    } else {
      return;
    }
    e.preventDefault();
  }

  /** The node an arrow key leads to: downstream, upstream, or the next in the same layer. */
  neighbour(id, key) {
    const n = this.items.get(id).node;
    if (key === "ArrowRight") return (this.outgoing.get(id) || [])[0] || this.layerStep(n, 1, 0);
    if (key === "ArrowLeft") return (this.incoming.get(id) || [])[0] || this.layerStep(n, -1, 0);
    const layer = this.layers.get(n.layer);
    const i = layer.indexOf(id) + (key === "ArrowDown" ? 1 : -1);
    return layer[i] || null;
  }

  layerStep(n, delta) {
    const layer = this.layers.get(n.layer + delta);
    return layer ? layer[0] : null;
  }
}

function push(map, key, value) {
  const list = map.get(key);
  if (list) list.push(value);
  else map.set(key, [value]);
}

const clamp = (k) => Math.min(MAX_ZOOM, Math.max(MIN_ZOOM, k));
