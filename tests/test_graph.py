"""Recording a pipeline's graph: identity, edges, after= ordering, cycles and recording errors."""

from __future__ import annotations

import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from conveyor import pipeline, task
from conveyor.errors import CycleError, DefinitionError, GraphError, ParameterError, TargetError
from conveyor.graph import Builder, Graph, Promise, instance_id


class Frame:
    """A value only an upstream task can produce."""


@task
def extract(day: date, region: str = "eu") -> list[int]:
    return [1, 2]


@task
def clean(rows: Any, strict: bool = False) -> list[int]:
    return list(rows)


@task
def report(a: Any, b: Any = None) -> None: ...


@task
def ping() -> None: ...


@task
def pong() -> None: ...


@task
def scale(x: float, path: Path = Path("out")) -> None: ...


D1 = date(2026, 11, 1)
D2 = date(2026, 11, 2)


def _record(fn: Any) -> Graph:
    with Builder("p") as b:
        fn()
    return Graph("p", b.nodes.values())


def _names(graph: Graph) -> list[str]:
    return [n.task.name for n in graph]


# -- identity ------------------------------------------------------------------------------------
def test_a_task_call_records_a_node_and_executes_nothing() -> None:
    calls: list[int] = []

    @task
    def noisy(n: int) -> None:
        calls.append(n)

    graph = _record(lambda: noisy(1))
    assert calls == []
    (node,) = graph
    assert node.task is noisy
    assert node.literals == {"n": 1}
    assert node.label == "noisy(n=1)"


def test_calling_a_task_returns_a_promise_for_its_node() -> None:
    seen: list[Any] = []
    _record(lambda: seen.append(extract(D1)))
    (promise,) = seen
    assert isinstance(promise, Promise)
    assert repr(promise) == "<result of extract(day=2026-11-01, region=eu)>"


def test_identity_is_task_name_and_canonical_params() -> None:
    promises: list[Promise] = []

    def body() -> None:
        promises.append(extract(D1))
        promises.append(extract(day=D1, region="eu"))  # the default made explicit
        promises.append(extract(region="eu", day=D1))  # keyword order does not matter
        promises.append(extract(D1, "us"))
        promises.append(extract(D2))

    graph = _record(body)
    ids = [p.node.id for p in promises]
    assert ids[0] == ids[1] == ids[2]
    assert len({ids[0], ids[3], ids[4]}) == 3
    assert len(graph) == 3
    assert ids[0] == instance_id("extract", '{"day":"2026-11-01","region":"eu"}')
    assert re.fullmatch(r"[0-9a-f]{16}", ids[0])


def test_identity_uses_normalized_values() -> None:
    promises: list[Promise] = []

    def body() -> None:
        promises.append(scale(1, "out"))
        promises.append(scale(1.0, Path("out")))

    graph = _record(body)
    assert len(graph) == 1
    assert promises[0].node is promises[1].node
    assert promises[0].node.params_json == {"path": "out", "x": 1.0}


def test_identity_is_stable_across_builds() -> None:
    @pipeline
    def daily(day: date) -> None:
        report(clean(extract(day)))

    first = [n.id for n in daily.build({"day": D1})]
    again = [n.id for n in daily.build({"day": D1})]
    other = [n.id for n in daily.build({"day": D2})]
    assert first == again
    assert set(first).isdisjoint(other)


def test_the_same_instance_required_twice_runs_once() -> None:
    def body() -> None:
        rows = extract(D1)
        report(clean(rows), clean(extract(D1), strict=False))

    graph = _record(body)
    assert _names(graph) == ["extract", "clean", "report"]
    rep = next(n for n in graph if n.task is report)
    cln = next(n for n in graph if n.task is clean)
    assert rep.upstream == [cln.id]  # both inputs come from the one clean instance
    assert rep.inputs == {"a": cln.id, "b": cln.id}


def test_a_promise_passed_as_a_parameter_makes_an_edge_and_a_reference() -> None:
    def body() -> None:
        report(extract(D1), extract(D2))

    graph = _record(body)
    e1, e2, rep = list(graph)
    assert rep.upstream == [e1.id, e2.id]
    assert rep.params_json == {"a": {"$upstream": e1.id}, "b": {"$upstream": e2.id}}
    assert rep.literals == {}
    assert rep.label == f"report(a=<{e1.id[:6]}>, b=<{e2.id[:6]}>)"
    assert graph.downstream[e1.id] == [rep.id]
    assert graph.downstream[rep.id] == []


def test_upstream_identity_flows_into_downstream_identity() -> None:
    ids: list[str] = []
    _record(lambda: ids.append(clean(extract(D1)).node.id))
    _record(lambda: ids.append(clean(extract(D2)).node.id))
    assert ids[0] != ids[1]


def test_nodes_come_out_in_dependency_order() -> None:
    def body() -> None:
        late = ping()
        early = pong()
        report(clean(early), after=late)

    graph = _record(body)
    order = _names(graph)
    assert order.index("pong") < order.index("clean") < order.index("report")
    assert order.index("ping") < order.index("report")


def test_long_values_are_shortened_in_labels() -> None:
    graph = _record(lambda: extract(D1, "a-very-long-region-name-that-goes-on"))
    assert next(iter(graph)).label == "extract(day=2026-11-01, region=a-very-long-region-na...)"


def test_find_matches_id_prefix_task_name_or_label() -> None:
    graph = _record(lambda: (extract(D1), extract(D2), ping()))
    e1 = graph.find("extract(day=2026-11-01, region=eu)")
    assert [n.literals["day"] for n in e1] == [D1]
    assert len(graph.find("extract")) == 2
    assert graph.find(e1[0].id[:8]) == e1
    assert graph.find("nothing") == []


# -- after= ordering ----------------------------------------------------------------------------
def test_after_adds_ordering_without_passing_data() -> None:
    def body() -> None:
        a = ping()
        pong(after=a)

    graph = _record(body)
    p, q = list(graph)
    assert (p.task.name, q.task.name) == ("ping", "pong")
    assert q.upstream == [p.id]
    assert q.inputs == {}


def test_after_accepts_a_list_and_does_not_change_identity() -> None:
    promises: list[Promise] = []

    def body() -> None:
        a, b = ping(), extract(D1)
        promises.append(report(1, after=[a, b]))
        promises.append(report(1))

    graph = _record(body)
    assert promises[0].node is promises[1].node
    rep = promises[0].node
    assert len(graph) == 3
    assert rep.upstream == [n.id for n in graph if n is not rep]


def test_after_refuses_anything_but_a_promise() -> None:
    with pytest.raises(
        DefinitionError, match="task pong: after= takes results of tasks called in this pipeline, got 'ping'"
    ):
        _record(lambda: pong(after="ping"))


def test_a_cycle_made_by_merging_identical_instances_is_reported_with_the_cycle() -> None:
    def body() -> None:
        a = ping()
        b = pong(after=a)
        ping(after=b)  # the same instance as a: now ping waits for pong, which waits for ping

    with Builder("loop") as builder:
        body()
    with pytest.raises(CycleError) as err:
        Graph("loop", builder.nodes.values())
    message = str(err.value)
    assert message.startswith("pipeline loop has a cycle: ")
    assert message.endswith("; remove one of these dependencies")
    cycle = message.removeprefix("pipeline loop has a cycle: ").split(";")[0].split(" -> ")
    assert set(cycle) == {"ping()", "pong()"}
    assert cycle[0] == cycle[-1] and len(cycle) == 3


def test_a_cycle_message_leaves_out_tasks_that_only_hang_below_the_cycle() -> None:
    def body() -> None:
        a = ping()
        b = pong(after=a)
        report(1, after=a)
        extract(D1, after=b)
        ping(after=b)

    with Builder("loop") as builder:
        body()
    with pytest.raises(CycleError) as err:
        Graph("loop", builder.nodes.values())
    assert "ping()" in str(err.value) and "pong()" in str(err.value)
    assert "report" not in str(err.value) and "extract" not in str(err.value)


def test_a_cycle_is_a_graph_error_when_a_pipeline_is_built() -> None:
    @pipeline
    def loop() -> None:
        ping(after=pong(after=ping()))

    with pytest.raises(GraphError, match=r"pipeline loop has a cycle: .*ping\(\).*pong\(\)"):
        loop.build()


def test_after_a_promise_from_another_pipeline_is_an_unknown_instance() -> None:
    kept: list[Promise] = []
    _record(lambda: kept.append(extract(D2)))
    with pytest.raises(
        GraphError, match=r"pipeline p: ping\(\) depends on an unknown task instance [0-9a-f]{16}"
    ):
        _record(lambda: ping(after=kept[0]))


# -- recording errors ----------------------------------------------------------------------------
def test_two_different_tasks_with_one_name_are_refused() -> None:
    @task(name="ping")
    def other_ping() -> None: ...

    with pytest.raises(GraphError) as err:
        _record(lambda: (ping(), other_ping()))
    message = str(err.value)
    assert message.startswith("pipeline p: two different tasks are named 'ping' (")
    assert "test_graph:ping" in message and "other_ping" in message
    assert message.endswith("give one of them name=...")


@pytest.mark.parametrize(
    "wrap",
    [lambda p: [p], lambda p: (1, p), lambda p: {"k": p}, lambda p: [[p]], lambda p: {"k": [p]}],
)
def test_a_promise_inside_a_container_is_refused(wrap: Any) -> None:
    with pytest.raises(ParameterError, match="task report: parameter 'a' holds task results inside a"):
        _record(lambda: report(wrap(extract(D1))))


def test_a_promise_cannot_be_tested_with_if() -> None:
    def body() -> None:
        if extract(D1):
            ping()

    with pytest.raises(DefinitionError) as err:
        _record(body)
    assert str(err.value).startswith("extract(day=2026-11-01, region=eu) has not run yet")
    assert "branch inside a task instead" in str(err.value)


def test_a_promise_cannot_be_iterated() -> None:
    def body() -> None:
        for _row in extract(D1):
            ping()

    with pytest.raises(DefinitionError, match="has not run yet: its result cannot be iterated"):
        _record(body)


def test_unknown_and_missing_parameters_are_reported_while_recording() -> None:
    with pytest.raises(
        ParameterError, match="task extract: unknown parameter 'dya'; it takes day: date, region: str = 'eu'"
    ):
        _record(lambda: extract(dya=D1))
    with pytest.raises(ParameterError, match="task extract: missing parameter day: date"):
        _record(lambda: extract(region="us"))
    with pytest.raises(
        ParameterError, match="task extract: parameter 'day': expected date, got str '2026-11-01'"
    ):
        _record(lambda: extract("2026-11-01"))


def test_an_upstream_result_fills_a_typed_parameter_without_a_literal_check() -> None:
    @task
    def fit(df: Frame, epochs: int = 1) -> None: ...

    @task
    def load() -> Frame:
        return Frame()

    graph = _record(lambda: fit(load(), epochs=2))
    fit_node = list(graph)[1]
    assert fit_node.literals == {"epochs": 2}
    with pytest.raises(
        ParameterError, match="task fit: parameter 'df': type Frame cannot be given as a literal"
    ):
        _record(lambda: fit(Frame()))


def test_a_task_with_an_opaque_parameter_defaulting_to_none_can_be_recorded_without_it() -> None:
    @task
    def fit(df: Frame = None, epochs: int = 1) -> None: ...  # type: ignore[assignment]

    graph = _record(lambda: fit(epochs=2))
    assert len(graph) == 1


def test_an_output_template_cannot_use_an_upstream_result() -> None:
    @task(output="out/{rows}.csv")
    def save(rows: Any) -> None: ...

    with pytest.raises(
        TargetError, match=r"task save: output template 'out/\{rows\}.csv' cannot be formatted"
    ):
        _record(lambda: save(extract(D1)))


def test_nodes_carry_their_rendered_output_targets() -> None:
    @task(output="data/{day}/{region}.csv")
    def fetch(day: date, region: str) -> None: ...

    graph = _record(lambda: fetch(D1, "us"))
    assert str(next(iter(graph)).output) == "data/2026-11-01/us.csv"
