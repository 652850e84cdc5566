"""``@task``, ``script`` and ``shell``: definitions validated at decoration, still plain functions."""

from __future__ import annotations

from datetime import date, timedelta
from pathlib import Path
from typing import Any

import pytest

from conveyor import output, script, shell, task
from conveyor import params as P
from conveyor.errors import DefinitionError, ParameterError, TargetError
from conveyor.resources import Resources
from conveyor.targets import FileTarget
from conveyor.tasks import TaskDef


class Frame:
    """A value only an upstream task can produce."""


def _job(day: date, n: int = 1) -> int:
    return n


# -- decorating ----------------------------------------------------------------------------------
def test_bare_task_takes_the_function_name_and_the_defaults() -> None:
    @task
    def load(day: date, n: int = 3) -> int:
        return n

    assert isinstance(load, TaskDef)
    assert repr(load) == "<task load>"
    assert (load.name, load.kind) == ("load", "function")
    assert [p.describe() for p in load.params] == ["day: date", "n: int = 3"]
    assert (load.retries, load.retry_delay, load.timeout, load.priority) == (0, 1.0, None, 0)
    assert load.resources == Resources(cpu=1, memory=0, gpu=0)
    assert load.output is None
    assert load.origin.endswith(
        "test_tasks:test_bare_task_takes_the_function_name_and_the_defaults.<locals>.load"
    )


def test_task_with_options_keeps_them_normalized() -> None:
    @task(
        name="daily-load",
        retries=2,
        retry_delay=timedelta(seconds=30),
        timeout=timedelta(minutes=2),
        resources={"cpu": 2, "memory": "512MiB", "gpu": 1, "db": 1},
        output=["data/{day}.csv", "data/{day}.json"],
        priority=5,
        tags=["etl", "daily"],
    )
    def load(day: date) -> None: ...

    assert load.name == "daily-load"
    assert load.retries == 2
    assert load.retry_delay == 30.0
    assert load.timeout == 120.0
    assert load.resources == Resources(cpu=2, memory=512 * 2**20, gpu=1, custom={"db": 1})
    assert load.output == ("data/{day}.csv", "data/{day}.json")
    assert load.priority == 5
    assert load.tags == ("etl", "daily")


def test_timeout_and_retry_delay_accept_plain_seconds() -> None:
    @task(timeout=90, retry_delay=0)
    def job() -> None: ...

    assert job.timeout == 90.0
    assert job.retry_delay == 0.0


def test_a_task_definition_is_frozen() -> None:
    @task
    def job() -> None: ...

    with pytest.raises(AttributeError):
        job.retries = 3  # type: ignore[misc]


# -- validation at definition time: one line naming the task and the value ------------------------
def _define(**options: Any) -> TaskDef:
    return task(**options)(_job)  # type: ignore[no-any-return]


@pytest.mark.parametrize(
    ("options", "message"),
    [
        ({"retries": -1}, "task _job: retries must be a whole number >= 0, got -1"),
        ({"retries": True}, "task _job: retries must be a whole number >= 0, got True"),
        ({"retries": 1.5}, "task _job: retries must be a whole number >= 0, got 1.5"),
        ({"retries": "2"}, "task _job: retries must be a whole number >= 0, got '2'"),
        ({"priority": "high"}, "task _job: priority must be a whole number, got 'high'"),
        ({"timeout": -1}, "task _job: timeout must be seconds >= 0 or a timedelta, got -1"),
        (
            {"timeout": timedelta(seconds=-5)},
            "task _job: timeout must be seconds >= 0 or a timedelta, got -5.0",
        ),
        ({"timeout": "1h"}, "task _job: timeout must be seconds >= 0 or a timedelta, got '1h'"),
        ({"retry_delay": -0.5}, "task _job: retry_delay must be seconds >= 0 or a timedelta, got -0.5"),
        ({"output": "{}.csv"}, "task _job: output template '{}.csv' needs named fields like {day}, got {}"),
        (
            {"output": "{0}.csv"},
            "task _job: output template '{0}.csv' needs named fields like {day}, got {0}",
        ),
        ({"output": "data/{day"}, "task _job: bad output template 'data/{day': "),
        (
            {"output": "data/{region}/{day}.csv"},
            "task _job: output template 'data/{region}/{day}.csv' uses {region} which is not a "
            "parameter; it has day, n",
        ),
        ({"output": {"csv": "x/{dya}.csv"}}, "uses {dya} which is not a parameter"),
        ({"output": 5}, "task _job: output must be a path template or a target, a list or a dict of them"),
        ({"output": ["a/{day}", ""]}, "task _job: output templates must be non-empty strings, got ''"),
        ({"output": [3]}, "task _job: outputs are path templates or targets, got 3"),
        ({"resources": {"memory": "lots"}}, "task _job: memory 'lots' is not a size; write it like 512MiB"),
        ({"resources": {"cpu": 0}}, "task _job: resources cpu must be at least 1, got 0"),
        ({"resources": {"cpu": "two"}}, "task _job: resources cpu must be a whole number >= 0, got 'two'"),
        ({"resources": {"db": -1}}, "task _job: resources db must be a whole number >= 0, got -1"),
        ({"name": "1load"}, "task 1load: name '1load' must start with a letter"),
        ({"name": "my load"}, "task my load: name 'my load' must start with a letter"),
    ],
)
def test_bad_options_are_refused_at_definition_with_one_line(options: dict[str, Any], message: str) -> None:
    with pytest.raises(DefinitionError) as err:
        _define(**options)
    text = str(err.value)
    assert message in text
    assert "\n" not in text


@pytest.mark.parametrize("reserved", ["after", "output"])
def test_reserved_parameter_names_are_refused(reserved: str) -> None:
    ns: dict[str, Any] = {}
    exec(f"def job({reserved}: int = 0): pass", ns)
    with pytest.raises(
        DefinitionError, match=rf"task job: parameter name '{reserved}' is reserved; rename it"
    ):
        task(ns["job"])


def test_decorating_something_that_is_not_a_function_is_refused() -> None:
    with pytest.raises(DefinitionError, match="@task decorates a function, got 42"):
        task(name="x")(42)


@pytest.mark.parametrize("resources", [{"gpu": -1}, {"memory": -1}])
def test_a_negative_builtin_resource_is_named_in_the_error(resources: dict[str, int]) -> None:
    ((name, value),) = resources.items()
    with pytest.raises(DefinitionError) as err:
        _define(resources=resources)
    assert name in str(err.value) and str(value) in str(err.value)


@pytest.mark.parametrize("resources", [{"cpu": 1.5}, {"gpu": 0.5}])
def test_a_fractional_resource_count_is_refused(resources: dict[str, float]) -> None:
    with pytest.raises(DefinitionError, match="whole number"):
        _define(resources=resources)


# -- still a plain function ----------------------------------------------------------------------
def test_a_task_called_outside_a_pipeline_runs_at_once_with_checked_values() -> None:
    seen: list[Any] = []

    @task
    def scale(x: float, path: Path, day: date = date(2026, 1, 1)) -> float:
        seen.append((x, path, day))
        return x * 2

    assert scale(2, "out/a.csv") == 4.0
    assert seen == [(2.0, Path("out/a.csv"), date(2026, 1, 1))]
    assert isinstance(seen[0][0], float)  # 2 was coerced to the declared float


def test_a_direct_call_checks_its_parameters_like_a_pipeline_would() -> None:
    @task
    def job(day: date, n: int = 1) -> None: ...

    with pytest.raises(ParameterError, match="task job: missing parameter day: date"):
        job()
    with pytest.raises(ParameterError, match="task job: unknown parameter 'dya'"):
        job(dya=date(2026, 1, 1))
    with pytest.raises(ParameterError, match="task job: parameter 'n': expected int, got str '3'"):
        job(date(2026, 1, 1), n="3")
    with pytest.raises(DefinitionError, match="task job takes 2 parameters but got 3 positional"):
        job(date(2026, 1, 1), 1, 2)
    with pytest.raises(DefinitionError, match="task job: parameter 'day' given twice"):
        job(date(2026, 1, 1), day=date(2026, 1, 2))


def test_after_outside_a_pipeline_is_refused() -> None:
    @task
    def job() -> None: ...

    with pytest.raises(DefinitionError, match="task job: after= only means something inside a pipeline"):
        job(after=job)


def test_output_points_at_the_final_target_when_called_directly(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.chdir(tmp_path)

    @task(output="data/{day}/{region}.csv")
    def extract(day: date, region: str) -> str:
        target = output()
        target.write_text("id\n1\n")
        return str(target)

    assert extract(date(2026, 11, 1), "eu") == "data/2026-11-01/eu.csv"
    assert (tmp_path / "data/2026-11-01/eu.csv").read_text() == "id\n1\n"
    assert [p.name for p in (tmp_path / "data/2026-11-01").iterdir()] == ["eu.csv"]  # no temp left


def test_output_keeps_the_declared_shape_list_or_dict() -> None:
    @task(output={"csv": "out/{n}.csv", "png": "out/{n}.png"})
    def plot(n: int) -> Any:
        return output()

    @task(output=["a/{n}", "b/{n}"])
    def pair(n: int) -> Any:
        return output()

    assert plot(3) == {"csv": FileTarget("out/3.csv"), "png": FileTarget("out/3.png")}
    assert pair(4) == [FileTarget("a/4"), FileTarget("b/4")]


def test_output_templates_can_use_attributes_and_format_specs() -> None:
    @task(output="data/{day.year}/{day:%m-%d}-{n:03d}.csv")
    def job(day: date, n: int) -> Any:
        return output()

    assert job(date(2026, 11, 1), 7) == FileTarget("data/2026/11-01-007.csv")


def test_a_template_that_cannot_be_formatted_is_a_target_error_naming_the_task() -> None:
    @task(output="data/{day.nope}.csv")
    def job(day: date) -> None: ...

    with pytest.raises(
        TargetError, match=r"task job: output template 'data/\{day.nope\}.csv' cannot be formatted"
    ):
        job(date(2026, 1, 1))


def test_under_conveyor_output_is_staged_and_final_true_gives_the_final_names() -> None:
    @task(output="plots/{n}.png")
    def plot(n: int) -> Any:
        return output(), output(final=True)

    final = plot.render_output({"n": 1})
    staged = final.temporary()
    assert plot.execute({"n": 1}, staged, final) == (staged, FileTarget("plots/1.png"))
    assert plot(1) == (FileTarget("plots/1.png"), FileTarget("plots/1.png"))  # called directly


def test_a_task_called_directly_takes_any_value_for_an_upstream_only_parameter() -> None:
    @task
    def fit(df: Frame, epochs: int = 1) -> Any:
        return df, epochs

    frame = Frame()
    assert fit(frame, 2) == (frame, 2)
    with pytest.raises(ParameterError, match="task fit: parameter 'epochs': expected int"):
        fit(frame, "2")


def test_output_is_unavailable_outside_a_running_task() -> None:
    @task(output="x/{n}")
    def job(n: int) -> Any:
        return output()

    job(1)
    with pytest.raises(
        TargetError, match="output\\(\\) is only available while a task declared with output= runs"
    ):
        output()


def test_output_inside_a_task_without_output_raises() -> None:
    @task
    def job() -> Any:
        return output()

    with pytest.raises(TargetError):
        job()


def test_a_task_with_an_opaque_default_reports_a_misspelt_parameter() -> None:
    @task
    def train(df: Frame = None, epochs: int = 1) -> None: ...  # type: ignore[assignment]

    with pytest.raises(ParameterError, match="unknown parameter 'epoch'"):
        train(epoch=3)


# -- script() and shell() ------------------------------------------------------------------------
def test_script_takes_its_parameters_from_placeholders() -> None:
    clean = script(
        "tools/clean.py",
        ["--day", "{day}", "--limit", "{limit}", "--out", "{output}"],
        params={"day": date, "limit": int},
        output="data/{day}-{region}.csv",
        retries=2,
    )
    assert clean.name == "clean"
    assert clean.kind == "script"
    assert clean.command == ("tools/clean.py", "--day", "{day}", "--limit", "{limit}", "--out", "{output}")
    assert {p.name: p.type.name for p in clean.params} == {"day": "date", "limit": "int", "region": "any"}
    assert clean.retries == 2
    assert clean.origin == "tools/clean.py --day {day} --limit {limit} --out {output}"


def test_script_placeholder_types_are_checked_when_bound() -> None:
    clean = script("clean.py", ["{day}"], params={"day": date})
    assert clean.render_output({"day": date(2026, 1, 1)}) is None
    with pytest.raises(ParameterError, match="task clean: parameter 'day': expected a date like"):
        P.bind("task clean", clean.params, {"day": "soon"}, from_text=True)


def test_script_name_can_be_given() -> None:
    assert script("tools/clean.py", name="tidy").name == "tidy"


def test_script_refuses_a_typed_param_no_placeholder_uses() -> None:
    with pytest.raises(
        DefinitionError, match=r"task clean: params names 'dya', which no \{placeholder\} uses"
    ):
        script("tools/clean.py", ["{day}"], params={"day": date, "dya": date})


def test_script_refuses_output_placeholder_without_output() -> None:
    with pytest.raises(
        DefinitionError, match=r"task clean: the command uses \{output\} but the task declares no output="
    ):
        script("tools/clean.py", ["--out", "{output}"])


def test_script_options_are_validated_like_task_options() -> None:
    with pytest.raises(DefinitionError, match="task clean: retries must be a whole number >= 0, got -1"):
        script("tools/clean.py", retries=-1)


def test_a_misspelt_script_option_names_the_option_not_an_internal_function() -> None:
    with pytest.raises((DefinitionError, TypeError)) as err:
        script("tools/clean.py", retry=2)
    assert "retry" in str(err.value) and "_make" not in str(err.value)


def test_shell_placeholders_become_parameters() -> None:
    count = shell(
        "wc -l {src} > {output}",
        name="count",
        params={"src": Path},
        output="counts/{src.stem}.txt",
        timeout=60,
    )
    assert count.kind == "shell"
    assert count.command == "wc -l {src} > {output}"
    assert [(p.name, p.type.name) for p in count.params] == [("src", "Path")]
    assert count.timeout == 60.0
    assert count.render_output({"src": Path("in/a.csv")}) == FileTarget("counts/a.txt")


def test_shell_untyped_placeholders_take_any_value_and_are_all_required() -> None:
    job = shell("echo {greeting} {who}", name="hello")
    assert [(p.name, p.type.name, p.required) for p in job.params] == [
        ("greeting", "any", True),
        ("who", "any", True),
    ]


def test_shell_refuses_positional_placeholders_and_output_without_output() -> None:
    with pytest.raises(DefinitionError, match=r"task hello: .*'echo \{\}' needs named fields like \{day\}"):
        shell("echo {}", name="hello")
    with pytest.raises(DefinitionError, match=r"task hello: the command uses \{output\}"):
        shell("echo hi > {output}", name="hello")
    with pytest.raises(DefinitionError, match="task my job: name 'my job' must start with a letter"):
        shell("echo hi", name="my job")


def test_inputs_are_templates_of_the_tasks_parameters() -> None:
    """``inputs=``: the files a task reads from outside the pipeline, for the run record."""

    @task(inputs=["raw/{day}.csv", "s3://bucket/ref.parquet"])
    def load(day: date) -> None: ...

    assert load.render_inputs({"day": date(2026, 1, 2)}) == ["raw/2026-01-02.csv", "s3://bucket/ref.parquet"]
    one = script("clean.py", ["{src}"], inputs="lookup.csv")
    assert one.inputs == ("lookup.csv",)
    with pytest.raises(
        DefinitionError, match=r"task bad: input .raw/\{when\}.csv. uses \{when\} which is not"
    ):

        @task(inputs="raw/{when}.csv")
        def bad(day: date) -> None: ...
