"""``@pipeline``: typed parameters, building a graph, nesting."""

from __future__ import annotations

import enum
import re
from datetime import date
from pathlib import Path
from typing import Any

import pytest

from conveyor import pipeline, script, task
from conveyor.errors import ConveyorError, DefinitionError, GraphError, ParameterError
from conveyor.graph import Graph
from conveyor.pipelines import PipelineDef


class Mode(enum.Enum):
    FULL = "full"
    DELTA = "delta"


class Frame:
    """A value only an upstream task can produce."""


@task
def extract(day: date, region: str) -> list[int]:
    return [1]


@task
def combine(parts: Any, mode: Mode = Mode.FULL) -> None: ...


@task
def publish(table: Any, dry_run: bool = False, root: Path = Path("out")) -> None: ...


def _literals(graph: Graph, name: str) -> list[dict[str, Any]]:
    return [n.literals for n in graph if n.task.name == name]


def test_a_pipeline_is_a_frozen_named_definition_with_typed_params() -> None:
    @pipeline
    def daily(day: date, regions: list[str] = ["eu"], dry_run: bool = False) -> None:  # noqa: B006
        """Load every region for one day.

        More words that are not part of the description.
        """
        publish(extract(day, regions[0]), dry_run=dry_run)

    assert isinstance(daily, PipelineDef)
    assert repr(daily) == "<pipeline daily>"
    assert daily.description == "Load every region for one day."
    assert [p.describe() for p in daily.params] == [
        "day: date",
        "regions: list[str] = ['eu']",
        "dry_run: bool = False",
    ]


def test_pipeline_name_can_be_given_and_is_validated() -> None:
    @pipeline(name="nightly-load")
    def nightly() -> None:
        extract(date(2026, 1, 1), "eu")

    assert nightly.name == "nightly-load"
    with pytest.raises(DefinitionError, match="pipeline 9lives: name '9lives' must start with a letter"):
        pipeline(name="9lives")(lambda: None)


def test_build_from_text_parses_every_parameter_to_its_type() -> None:
    seen: dict[str, Any] = {}

    @pipeline
    def daily(
        day: date, regions: list[str], mode: Mode, dry_run: bool = False, root: Path = Path(".")
    ) -> None:
        seen.update(day=day, regions=regions, mode=mode, dry_run=dry_run, root=root)
        parts = [extract(day, r) for r in regions]
        for part in parts:
            publish(combine(part, mode=mode), dry_run=dry_run, root=root)

    graph = daily.build(
        {"day": "2026-11-01", "regions": "eu,us", "mode": "delta", "dry_run": "yes", "root": "/data"},
        from_text=True,
    )
    assert seen == {
        "day": date(2026, 11, 1),
        "regions": ["eu", "us"],
        "mode": Mode.DELTA,
        "dry_run": True,
        "root": Path("/data"),
    }
    assert _literals(graph, "extract") == [
        {"day": date(2026, 11, 1), "region": "eu"},
        {"day": date(2026, 11, 1), "region": "us"},
    ]
    assert _literals(graph, "publish") == [{"dry_run": True, "root": Path("/data")}] * 2
    assert len(graph) == 6


def test_build_without_from_text_refuses_strings_for_typed_parameters() -> None:
    @pipeline
    def daily(day: date) -> None:
        extract(day, "eu")

    with pytest.raises(ParameterError) as err:
        daily.build({"day": "2026-11-01"})
    assert str(err.value) == "pipeline daily: parameter 'day': expected date, got str '2026-11-01'"


def test_build_reports_bad_text_unknown_and_missing_parameters() -> None:
    @pipeline
    def daily(day: date, n: int = 1) -> None:
        extract(day, "eu")

    with pytest.raises(
        ParameterError, match="pipeline daily: parameter 'n': expected an integer, got 'three'"
    ):
        daily.build({"day": "2026-11-01", "n": "three"}, from_text=True)
    with pytest.raises(
        ParameterError, match="pipeline daily: unknown parameter 'dya'; it takes day: date, n: int = 1"
    ):
        daily.build({"dya": "2026-11-01"}, from_text=True)
    with pytest.raises(ParameterError, match="pipeline daily: missing parameter day: date"):
        daily.build({}, from_text=True)


def test_calling_a_pipeline_by_name_builds_its_graph_and_positional_is_refused() -> None:
    @pipeline
    def daily(day: date) -> None:
        extract(day, "eu")

    graph = daily(day=date(2026, 11, 1))
    assert isinstance(graph, Graph)
    assert graph.name == "daily"
    assert _literals(graph, "extract") == [{"day": date(2026, 11, 1), "region": "eu"}]
    with pytest.raises(DefinitionError, match="pipeline daily: pass parameters by name to build its graph"):
        daily(date(2026, 11, 1))


def test_a_pipeline_with_an_opaque_typed_parameter_is_refused() -> None:
    def train(df: Frame) -> None: ...

    with pytest.raises(DefinitionError) as err:
        pipeline(train)
    assert str(err.value).startswith(
        "pipeline train: parameter 'df' has type Frame, which cannot come from the command line; use int"
    )


def test_a_pipeline_with_a_default_of_the_wrong_type_is_refused() -> None:
    def daily(n: int = "3") -> None: ...  # type: ignore[assignment]

    with pytest.raises(
        DefinitionError, match="pipeline daily: default of parameter 'n': expected int, got str '3'"
    ):
        pipeline(daily)


def test_an_empty_pipeline_is_refused_when_built() -> None:
    @pipeline
    def nothing(day: date) -> None:
        pass

    with pytest.raises(
        GraphError, match="pipeline nothing records no tasks; call at least one task inside it"
    ):
        nothing.build({"day": date(2026, 1, 1)})


def test_a_pipeline_body_that_raises_is_a_graph_error_naming_where() -> None:
    @pipeline
    def broken() -> None:
        extract(date(2026, 1, 1), "eu")
        raise RuntimeError("boom")

    with pytest.raises(GraphError) as err:
        broken.build()
    assert re.fullmatch(
        r"pipeline broken: building its graph failed at test_pipelines\.py:\d+: RuntimeError: boom",
        str(err.value),
    )
    # outside a pipeline again: a call runs the task instead of recording it
    assert extract(date(2026, 1, 1), "eu") == [1]


def test_nested_pipelines_inline_their_tasks_into_the_outer_graph() -> None:
    @pipeline
    def region_part(day: date, region: str) -> Any:
        return combine(extract(day, region))

    @pipeline
    def daily(day: date) -> None:
        eu = region_part(day, "eu")
        us = region_part(day=day, region="us")
        again = region_part(day, "eu")  # the same instances: recorded once
        publish(eu, after=[us, again])

    graph = daily.build({"day": date(2026, 11, 1)})
    assert graph.name == "daily"
    assert sorted(n.task.name for n in graph) == ["combine", "combine", "extract", "extract", "publish"]
    pub = next(n for n in graph if n.task.name == "publish")
    assert len(pub.upstream) == 2  # eu's combine (data and after=) and us's combine
    assert all(graph[u].task.name == "combine" for u in pub.upstream)


def test_a_nested_pipeline_called_with_a_misspelt_parameter_is_a_one_line_error() -> None:
    @pipeline
    def part(day: date) -> None:
        extract(day, "eu")

    @pipeline
    def daily(day: date) -> None:
        part(dya=day)

    with pytest.raises(ConveyorError) as err:
        daily.build({"day": date(2026, 11, 1)})
    assert str(err.value).startswith("pipeline daily: ")
    assert "'dya'" in str(err.value)
    assert "\n" not in str(err.value)


def test_a_script_missing_where_the_run_executes_is_refused_when_building_for_it(tmp_path: Path) -> None:
    count = script("count.py", name="count")

    @pipeline
    def p() -> None:
        count()

    p.build()  # recording a graph alone does not look for files
    with pytest.raises(
        DefinitionError, match=rf"task count: script count.py does not exist \(in {tmp_path}\)"
    ):
        p.build(workdir=str(tmp_path))
    (tmp_path / "count.py").write_text("print(1)\n")
    assert len(p.build(workdir=str(tmp_path))) == 1
