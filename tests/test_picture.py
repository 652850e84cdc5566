"""A run's graph as an SVG picture for a notebook cell: from the service's layout, escaped, scaled."""

from __future__ import annotations

import datetime as dt
import re
import xml.etree.ElementTree as ET

from conveyor.picture import MOST_NODES, run_svg
from conveyor.views import GraphEdge, GraphNode, GraphView, RunView


def _graph(labels: list[str], states: list[str], width: float = 400) -> GraphView:
    run = RunView(
        id="r1", pipeline="p", target="p.py:p", params={}, state="running", created_at=dt.datetime(2026, 1, 1)
    )
    nodes = [
        GraphNode(
            id=f"n{i}",
            label=label,
            task="t",
            state=state,
            counts={state: 1},
            size=1,
            x=i * 150.0,
            y=10.0,
            w=120.0,
            h=30.0,
            layer=i,
        )
        for i, (label, state) in enumerate(zip(labels, states, strict=True))
    ]
    edges = [
        GraphEdge(
            source=f"n{i}", target=f"n{i + 1}", points=[[i * 150.0 + 120, 25.0], [(i + 1) * 150.0, 25.0]]
        )
        for i in range(len(nodes) - 1)
    ]
    return GraphView(run=run, grouped=False, width=width, height=50, nodes=nodes, edges=edges, cursor=0)


def test_each_node_shows_its_state_and_label_escaped() -> None:
    svg = run_svg(
        _graph(["load(day=<b>1</b>)", "a-very-long-label-that-goes-on-and-on(x=1)"], ["succeeded", "failed"])
    )
    assert svg is not None
    root = ET.fromstring(svg)  # well-formed: a label cannot break out of its element
    states = [g.get("data-state") for g in root.iter("{http://www.w3.org/2000/svg}g")]
    assert states == ["succeeded", "failed"]
    assert "<b>" not in svg and "load(day=&lt;b&gt;1&lt;/b&gt;)" in svg
    texts = [t.text for t in root.iter("{http://www.w3.org/2000/svg}text")]
    assert texts[1] == "a-very-long-label-that-goes…"  # cut in the picture, whole in its tooltip
    assert "<title>a-very-long-label-that-goes-on-and-on(x=1): failed</title>" in svg
    assert len(list(root.iter("{http://www.w3.org/2000/svg}polyline"))) == 1


def test_a_wide_graph_is_scaled_down_and_a_huge_one_is_not_drawn() -> None:
    svg = run_svg(_graph(["a()", "b()"], ["running", "pending"], width=2000), width=640)
    assert svg is not None
    assert re.search(r'width="640" height="\d+"', svg)
    many = MOST_NODES + 1
    assert run_svg(_graph([f"t{i}()" for i in range(many)], ["pending"] * many)) is None
