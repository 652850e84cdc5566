"""Recording a pipeline's graph: nodes (task instances), promises, identity, cycle checks."""

from __future__ import annotations

import contextvars
import hashlib
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from typing import Any

from conveyor import params as P
from conveyor.errors import CycleError, DefinitionError, GraphError, ParameterError
from conveyor.tasks import TaskDef

_builder: contextvars.ContextVar[Builder | None] = contextvars.ContextVar("conveyor_builder", default=None)


def current_builder() -> Builder | None:
    return _builder.get()


def instance_id(task: str, params_json: str) -> str:
    """A task instance's stable id: a hash of the task name and its canonical parameters."""
    return hashlib.sha256(f"{task}\0{params_json}".encode()).hexdigest()[:16]


@dataclass(slots=True, eq=False)
class Node:
    """One task instance in a graph: a task and its concrete parameters."""

    id: str
    task: TaskDef
    literals: dict[str, Any]  # parameter -> concrete value
    inputs: dict[str, str]  # parameter -> upstream node id whose result fills it
    params_json: dict[str, Any]  # canonical form: literals as JSON, inputs as {"$upstream": id}
    output: Any  # rendered targets (FileTarget, list or dict) or None
    upstream: list[str] = field(default_factory=list)  # data and ordering, in order, unique

    @property
    def label(self) -> str:
        parts = []
        for k, v in self.params_json.items():
            text = f"<{v['$upstream'][:6]}>" if isinstance(v, dict) and "$upstream" in v else str(v)
            parts.append(f"{k}={text if len(text) <= 24 else text[:21] + '...'}")
        return f"{self.task.name}({', '.join(parts)})"


class Promise:
    """What calling a task inside a pipeline returns: the future result of one node."""

    __slots__ = ("node",)

    def __init__(self, node: Node) -> None:
        self.node = node

    def __repr__(self) -> str:
        return f"<result of {self.node.label}>"

    def __bool__(self) -> bool:
        raise DefinitionError(
            f"{self.node.label} has not run yet: a pipeline records tasks, so its results cannot "
            "be tested with if/while; branch inside a task instead"
        )

    def __iter__(self) -> Iterator[Any]:
        raise DefinitionError(
            f"{self.node.label} has not run yet: its result cannot be iterated inside a pipeline; "
            "pass it to another task"
        )


class Builder:
    """Collects the nodes that a pipeline function records."""

    def __init__(self, owner: str) -> None:
        self.owner = owner
        self.nodes: dict[str, Node] = {}
        self._by_name: dict[str, TaskDef] = {}

    def __enter__(self) -> Builder:
        self._token = _builder.set(self)
        return self

    def __exit__(self, *exc: Any) -> None:
        _builder.reset(self._token)

    def record(self, task: TaskDef, values: Mapping[str, Any], after: Any) -> Promise:
        other = self._by_name.setdefault(task.name, task)
        if other is not task:
            raise GraphError(
                f"pipeline {self.owner}: two different tasks are named {task.name!r} "
                f"({other.origin} and {task.origin}); give one of them name=..."
            )
        if not task.param_names.issuperset(values):
            P.bind(f"task {task.name}", task.params, values)  # raises: unknown parameter
        bound: dict[str, Any] = {}  # literal values, checked and defaulted
        inputs: dict[str, str] = {}  # parameter -> upstream node id
        pjson: dict[str, Any] = {}  # canonical form, in signature order
        for p in task.params:
            value = values.get(p.name, P.MISSING)
            if value.__class__ is Promise:
                inputs[p.name] = value.node.id
                pjson[p.name] = {"$upstream": value.node.id}
                continue
            if value is P.MISSING:
                if p.required:
                    raise ParameterError(f"task {task.name}: missing parameter {p.describe()}")
                value = p.default
            elif _holds_promise(value):
                raise ParameterError(
                    f"task {task.name}: parameter {p.name!r} holds task results inside a "
                    f"{type(value).__name__}; pass each result as its own parameter"
                )
            else:
                try:
                    value = p.type.check(value)
                except ValueError as exc:
                    raise ParameterError(f"task {task.name}: parameter {p.name!r}: {exc}") from None
            bound[p.name] = value
            pjson[p.name] = p.type.to_json(value)
        nid = instance_id(task.name, P.canonical_json(pjson))
        node = self.nodes.get(nid)
        if node is None:
            out = task.render_output({**bound, **{k: _Unrendered(k) for k in inputs}} if inputs else bound)
            node = Node(nid, task, bound, inputs, pjson, out, list(dict.fromkeys(inputs.values())))
            self.nodes[nid] = node
        if after is not None:
            have = set(node.upstream)  # a join after 100,000 tasks: no quadratic scan
            for dep in _after_ids(after, f"task {task.name}"):
                if dep not in have:
                    have.add(dep)
                    node.upstream.append(dep)
        return Promise(node)


class _Unrendered:
    """Stands in for an upstream result inside an output template, which cannot use one."""

    def __init__(self, name: str) -> None:
        self.name = name

    def __repr__(self) -> str:
        return "<upstream result>"

    def __format__(self, spec: str) -> str:
        raise ValueError(f"parameter {self.name!r} is an upstream result, which a template cannot use")


def _holds_promise(value: Any) -> bool:
    if isinstance(value, list | tuple | set):
        return any(isinstance(v, Promise) or _holds_promise(v) for v in value)
    if isinstance(value, dict):
        return any(isinstance(v, Promise) or _holds_promise(v) for v in value.values())
    return False


def _after_ids(after: Any, owner: str) -> list[str]:
    if after is None:
        return []
    items = after if isinstance(after, list | tuple) else [after]
    out = []
    for item in items:
        if not isinstance(item, Promise):
            raise DefinitionError(
                f"{owner}: after= takes results of tasks called in this pipeline, got {item!r}"
            )
        out.append(item.node.id)
    return out


class Graph:
    """A validated, acyclic graph of task instances, in topological order."""

    def __init__(self, name: str, nodes: Iterable[Node]) -> None:
        self.name = name
        self.nodes: dict[str, Node] = {n.id: n for n in _toposort(name, list(nodes))}
        down: dict[str, list[str]] = {nid: [] for nid in self.nodes}
        for n in self.nodes.values():
            for up in n.upstream:
                down[up].append(n.id)
        self.downstream = down

    def __len__(self) -> int:
        return len(self.nodes)

    def __iter__(self) -> Iterator[Node]:
        return iter(self.nodes.values())

    def __getitem__(self, nid: str) -> Node:
        return self.nodes[nid]

    def find(self, name_or_id: str) -> list[Node]:
        """Nodes whose id starts with, or whose task name or label equals, ``name_or_id``."""
        return [
            n
            for n in self.nodes.values()
            if n.id.startswith(name_or_id) or n.task.name == name_or_id or n.label == name_or_id
        ]


def _toposort(name: str, nodes: list[Node]) -> list[Node]:
    by_id = {n.id: n for n in nodes}
    indegree = {n.id: 0 for n in nodes}
    down: dict[str, list[str]] = {n.id: [] for n in nodes}
    for n in nodes:
        for up in n.upstream:
            if up not in by_id:
                raise GraphError(f"pipeline {name}: {n.label} depends on an unknown task instance {up}")
            indegree[n.id] += 1
            down[up].append(n.id)
    order = [nid for nid, d in indegree.items() if d == 0]
    for nid in order:  # the list grows while we walk it
        for d in down[nid]:
            indegree[d] -= 1
            if indegree[d] == 0:
                order.append(d)
    if len(order) < len(nodes):
        cycle = _find_cycle(by_id, {nid for nid, d in indegree.items() if d > 0})
        raise CycleError(
            f"pipeline {name} has a cycle: {' -> '.join(by_id[c].label for c in cycle)}; "
            "remove one of these dependencies"
        )
    return [by_id[nid] for nid in order]


def _find_cycle(by_id: dict[str, Node], left: set[str]) -> list[str]:
    """One cycle among ``left`` (nodes that a topological sort could not place)."""
    start = min(left)
    seen: dict[str, int] = {}
    path: list[str] = []
    node = start
    while node not in seen:  # every node in `left` has an upstream in `left`: walk up
        seen[node] = len(path)
        path.append(node)
        node = next(u for u in by_id[node].upstream if u in left)
    cycle = path[seen[node] :]
    cycle.reverse()  # upstream first
    return [*cycle, cycle[0]]
