"""A run's graph as one small SVG picture: for a notebook cell, where the web UI's drawing (which
builds its SVG in the browser from the same layout, ``GET /runs/{id}/graph``) cannot run.

Pure: a ``GraphView`` (nodes with coordinates, edges as polylines, laid out by the service) in,
SVG text out. Every label is escaped; the picture is scaled down to ``width`` and leaves the
nodes' full labels as tooltips (``<title>``).
"""

from __future__ import annotations

import html

from conveyor.views import GraphView

#: The fill of a node by its state (the web UI's and the progress bar's colours).
FILLS = {
    "succeeded": "#2e7d32",
    "skipped": "#81c784",
    "failed": "#c62828",
    "cancelled": "#757575",
    "running": "#1565c0",
    "retry_wait": "#ef6c00",
    "ready": "#90caf9",
    "pending": "#9e9e9e",
    "waiting": "#bdbdbd",
}
#: Nodes beyond this are not drawn inline (the web UI groups and pans; a cell cannot).
MOST_NODES = 300
LABEL_CHARS = 28


def _e(text: object) -> str:
    return html.escape(str(text), quote=True)


def _short(label: str) -> str:
    return label if len(label) <= LABEL_CHARS else label[: LABEL_CHARS - 1] + "…"


def run_svg(graph: GraphView, width: float = 640) -> str | None:
    """The run's graph, scaled to at most ``width`` px wide; None when it has too many nodes to
    be worth drawing in a cell."""
    if not graph.nodes or len(graph.nodes) > MOST_NODES:
        return None
    pad = 4.0
    w, h = graph.width + 2 * pad, graph.height + 2 * pad
    scale = min(1.0, width / w)
    parts = [
        f'<svg xmlns="http://www.w3.org/2000/svg" class="conveyor-graph" role="img" '
        f'aria-label="the graph of run {_e(graph.run.id)}" width="{w * scale:.0f}" height="{h * scale:.0f}" '
        f'viewBox="{-pad:.0f} {-pad:.0f} {w:.0f} {h:.0f}" font-family="sans-serif" font-size="11">'
    ]
    for edge in graph.edges:
        points = " ".join(f"{x:.1f},{y:.1f}" for x, y in edge.points)
        parts.append(f'<polyline points="{points}" fill="none" stroke="#9e9e9e" stroke-width="1.2"/>')
    for node in graph.nodes:
        fill = FILLS.get(node.state, "#616161")
        parts.append(
            f'<g data-state="{_e(node.state)}"><title>{_e(node.label)}: {_e(node.state)}</title>'
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="{node.w:.1f}" height="{node.h:.1f}" rx="4" '
            f'fill="#fff" stroke="{fill}" stroke-width="2"/>'
            f'<rect x="{node.x:.1f}" y="{node.y:.1f}" width="6" height="{node.h:.1f}" rx="2" fill="{fill}"/>'
            f'<text x="{node.x + 11:.1f}" y="{node.y + node.h / 2 + 4:.1f}">{_e(_short(node.label))}</text>'
            "</g>"
        )
    parts.append("</svg>")
    return "".join(parts)
