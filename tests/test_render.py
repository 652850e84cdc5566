"""Rendering a graph as text, Graphviz dot and Mermaid: every node and edge, labels escaped."""

from __future__ import annotations

import json
import re
from typing import Any

from conveyor import pipeline, task
from conveyor.graph import Graph
from conveyor.render import FORMATS, as_dot, as_mermaid, as_text


@task
def fetch(source: str) -> list[int]:
    return [1]


@task
def merge(left: Any, right: Any) -> list[int]:
    return [1]


@task
def publish(table: Any, note: str = "") -> None: ...


@pipeline
def diamond(note: str = "ok") -> None:
    a = fetch("a")
    b = fetch("b")
    m = merge(a, b)
    publish(m, note=note)
    publish(a, note="raw", after=[b])


def _graph(note: str = "ok") -> Graph:
    return diamond.build({"note": note})


def _edges(graph: Graph) -> set[tuple[str, str]]:
    return {(up, n.id) for n in graph for up in n.upstream}


def test_the_graph_used_here_has_shared_and_ordering_edges() -> None:
    graph = _graph()
    assert len(graph) == 5
    assert len(_edges(graph)) == 5  # a->merge, b->merge, merge->publish, a->publish, b->publish


def test_text_lists_every_node_with_its_upstream() -> None:
    graph = _graph()
    text = as_text(graph)
    lines = text.splitlines()
    assert lines[0] == "pipeline diamond: 5 task instances"
    assert len(lines) == 6
    for node in graph:
        (line,) = [ln for ln in lines[1:] if ln.strip().split("  <- ")[0] == node.label]
        ups = [graph[u].label for u in node.upstream]
        if ups:
            assert line.endswith("  <- " + ", ".join(ups))
        else:
            assert "<-" not in line


def test_dot_has_every_node_and_every_edge() -> None:
    graph = _graph()
    dot = as_dot(graph)
    assert dot.startswith('digraph "diamond" {')
    assert dot.rstrip().endswith("}")
    node_lines = dict(re.findall(r'^\s+"([0-9a-f]{16})" \[label=(".*")\];$', dot, re.M))
    assert {nid: json.loads(label) for nid, label in node_lines.items()} == {n.id: n.label for n in graph}
    edges = set(re.findall(r'^\s+"([0-9a-f]{16})" -> "([0-9a-f]{16})";$', dot, re.M))
    assert edges == _edges(graph)


def test_mermaid_has_every_node_and_every_edge() -> None:
    graph = _graph()
    mermaid = as_mermaid(graph)
    assert mermaid.splitlines()[0] == "graph LR"
    nodes = set(re.findall(r'^\s+n([0-9a-f]{16})\[".*"\]$', mermaid, re.M))
    assert nodes == {n.id for n in graph}
    edges = set(re.findall(r"^\s+n([0-9a-f]{16}) --> n([0-9a-f]{16})$", mermaid, re.M))
    assert edges == _edges(graph)


TRICKY = 'say "hi" <b> & \\ ok'


def test_dot_escapes_quotes_and_backslashes_in_labels() -> None:
    graph = _graph(note=TRICKY)
    dot = as_dot(graph)
    pub = next(n for n in graph if n.task.name == "publish" and n.literals["note"] == TRICKY)
    assert TRICKY in pub.label
    (label,) = re.findall(rf'^\s+"{pub.id}" \[label=(".*")\];$', dot, re.M)
    assert json.loads(label) == pub.label
    assert '\\"hi\\"' in label  # quotes cannot end the label early


def test_mermaid_escapes_quotes_and_angle_brackets_in_labels() -> None:
    graph = _graph(note=TRICKY)
    mermaid = as_mermaid(graph)
    for node in graph:
        (inner,) = re.findall(rf'^\s+n{node.id}\["(.*)"\]$', mermaid, re.M)
        assert not set(inner) & set('"<>')
    assert "say #quot;hi#quot; #lt;b#gt; &" in mermaid


def test_mermaid_escapes_the_angle_brackets_of_upstream_references() -> None:
    graph = _graph()
    m = next(n for n in graph if n.task.name == "merge")
    assert "<" in m.label  # an upstream result shows as <abcdef>
    assert f"left=#lt;{m.inputs['left'][:6]}#gt;" in as_mermaid(graph)


def test_every_format_is_registered_by_name() -> None:
    graph = _graph()
    assert {"text": as_text, "dot": as_dot, "mermaid": as_mermaid} == FORMATS
    for render in FORMATS.values():
        out = render(graph)
        assert all(n.id in out or n.label in out for n in graph)


def test_dot_keeps_non_ascii_labels_readable() -> None:
    graph = _graph(note="zürich")
    assert "zürich" in as_dot(graph)
