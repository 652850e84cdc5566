"""A graph as text, Graphviz dot or Mermaid."""

from __future__ import annotations

import json

from conveyor.graph import Graph


def _q(text: str) -> str:
    return json.dumps(text, ensure_ascii=False)


def as_text(graph: Graph) -> str:
    lines = [f"pipeline {graph.name}: {len(graph)} task instances"]
    for node in graph:
        ups = ", ".join(graph[u].label for u in node.upstream)
        lines.append(f"  {node.label}" + (f"  <- {ups}" if ups else ""))
    return "\n".join(lines)


def as_dot(graph: Graph) -> str:
    lines = [f"digraph {_q(graph.name)} {{", "  rankdir=LR;", "  node [shape=box];"]
    for node in graph:
        lines.append(f"  {_q(node.id)} [label={_q(node.label)}];")
    for node in graph:
        for up in node.upstream:
            lines.append(f"  {_q(up)} -> {_q(node.id)};")
    lines.append("}")
    return "\n".join(lines)


def _mermaid_label(text: str) -> str:
    return '"' + text.replace('"', "#quot;").replace("<", "#lt;").replace(">", "#gt;") + '"'


def as_mermaid(graph: Graph) -> str:
    lines = ["graph LR"]
    for node in graph:
        lines.append(f"  n{node.id}[{_mermaid_label(node.label)}]")
    for node in graph:
        for up in node.upstream:
            lines.append(f"  n{up} --> n{node.id}")
    return "\n".join(lines)


FORMATS = {"text": as_text, "dot": as_dot, "mermaid": as_mermaid}
