"""The service over a store and a project: what the API and the client are made of."""

from __future__ import annotations

import datetime as dt
import json
import pickle
import textwrap
from pathlib import Path

import pytest

from conveyor import project
from conveyor.errors import ParameterError, PipelineNotFound, RunBusy, RunNotFound
from conveyor.scheduler import Scheduler, Settings
from conveyor.service import Service
from conveyor.store import Store

PIPES = """
    import datetime as dt
    import enum
    from conveyor import pipeline, task

    class Size(enum.Enum):
        SMALL = "small"
        LARGE = "large"

    @task
    def square(n: int) -> dict:
        print(f"squaring {n}")
        for i in range(5):
            print(f"line {i}")
        return {"n": n, "square": n * n}

    @task
    def shape(n: int) -> set:
        return {n, -n}

    @task
    def boom(n: int) -> None:
        raise ValueError(f"no good: {n}")

    @pipeline
    def hello(n: int, size: Size = Size.SMALL, day: dt.date = dt.date(2026, 1, 1)):
        "Square a number."
        square(n)
        shape(n)

    @pipeline
    def broken(n: int = 1):
        boom(n)

    @pipeline(schedule="0 6 * * *")
    def nightly(logical_date: dt.date = dt.date(2000, 1, 1)):
        square(logical_date.day)
"""


@pytest.fixture
def service(store: Store, tmp_path: Path) -> Service:
    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    (tmp_path / "conveyor.toml").write_text('[project]\npipelines = ["pipes.py"]\n')
    return Service(store, project.find(tmp_path))


def drive(service: Service) -> None:
    Scheduler(service.store, Settings(name="test", workers=1)).serve(until_idle=True)


def test_pipelines_show_their_parameters_and_schedules(service: Service) -> None:
    views = {v.name: v for v in service.pipelines()}
    assert sorted(views) == ["broken", "hello", "nightly"]
    n, size, day = views["hello"].params
    assert (n.name, n.type, n.required) == ("n", "int", True)
    assert (size.type, size.default, size.choices) == ("Size", "small", ["small", "large"])
    assert (day.type, day.default) == ("date", "2026-01-01")
    assert views["hello"].description == "Square a number."
    sched = views["nightly"].schedule
    assert sched is not None and sched.cron == "0 6 * * *" and not sched.paused
    assert sched.next_tick is not None and sched.next_tick.hour == 6
    with pytest.raises(PipelineNotFound, match="no pipeline 'nope'; known pipelines: broken, hello, nightly"):
        service.pipeline("nope")


def test_a_triggered_run_names_every_bad_field(service: Service) -> None:
    with pytest.raises(ParameterError) as bad:
        service.trigger("hello", {"n": "three", "size": "huge", "colour": "red"})
    assert set(bad.value.problems) == {"n", "size", "colour"}
    assert "expected one of small, large" in bad.value.problems["size"]
    with pytest.raises(ParameterError) as missing:
        service.trigger("hello", {})
    assert missing.value.problems == {"n": "missing: a int is required"}
    assert service.runs().total == 0  # nothing half-made


def test_a_run_is_driven_and_shows_its_tasks_logs_and_results(service: Service) -> None:
    run = service.trigger("hello", {"n": 7, "day": "2026-11-02", "size": "large"})
    assert run.state == "pending" and run.params == {"n": 7, "size": "large", "day": "2026-11-02"}
    drive(service)
    detail = service.run(run.id)
    assert detail.state == "succeeded" and detail.duration is not None
    light = service.run(run.id, tasks=False)  # what a follower polls: state and counts only
    assert light.counts == detail.counts == {"succeeded": 2} and light.tasks == []
    assert {t.task: t.state for t in detail.tasks} == {"square": "succeeded", "shape": "succeeded"}
    sq = next(t for t in detail.tasks if t.task == "square")
    assert sq.attempts == 1 and sq.attempt_log[0].state == "succeeded" and sq.attempt_log[0].has_log
    assert sq.duration is not None and sq.duration >= 0
    [log] = service.logs(run.id, "square")
    assert "squaring 7" in log.text and not log.truncated
    [tail] = service.logs(run.id, "square", tail=2)
    assert tail.truncated and tail.text.splitlines() == ["line 3", "line 4"]
    value = service.result(run.id, "square")
    assert value.media_type == "application/json" and json.loads(value.data) == {"n": 7, "square": 49}
    shaped = service.result(run.id, "shape")
    assert shaped.media_type == "application/x-python-pickle" and pickle.loads(shaped.data) == {7, -7}
    with pytest.raises(RunNotFound, match="has no task 'nope'; its tasks are: shape, square"):
        service.logs(run.id, "nope")


def test_runs_are_listed_newest_first_filtered_and_paged(service: Service) -> None:
    made = [service.trigger("hello", {"n": i}).id for i in range(5)]
    service.trigger("broken", {})
    page = service.runs(pipeline="hello", limit=2, offset=1)
    assert page.total == 5 and [r.id for r in page.items] == made[::-1][1:3]
    assert service.runs(state="succeeded").total == 0
    assert service.runs(since=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).total == 0
    assert service.runs(until=dt.datetime.now(dt.UTC) + dt.timedelta(hours=1)).total == 6
    with pytest.raises(ParameterError, match="limit 0 must be between 1 and 500"):
        service.runs(limit=0)


def test_triggering_an_unfinished_run_again_gives_that_run_not_a_second(service: Service) -> None:
    first = service.trigger("hello", {"n": 3})
    again = service.trigger("hello", {"n": "3"})  # the same parameters, as text
    assert again.id == first.id and service.runs().total == 1
    other = service.trigger("hello", {"n": 4})
    assert other.id != first.id
    drive(service)
    assert service.run(first.id).state == "succeeded"
    assert service.trigger("hello", {"n": 3}).id != first.id  # it ended: a new run


def test_cancel_and_retry_of_a_submitted_run(service: Service) -> None:
    run = service.trigger("broken", {})
    drive(service)
    assert service.run(run.id).state == "failed"
    failed = next(t for t in service.run(run.id).tasks if t.task == "boom")
    assert failed.error is not None and "no good: 1" in failed.error
    with pytest.raises(RunBusy, match="has no result yet"):
        service.result(run.id, "boom")
    assert service.retry(run.id).state == "pending"
    with pytest.raises(RunBusy, match="retry it once it has ended"):
        service.retry(run.id)
    assert service.cancel(run.id).state == "cancelled"  # nobody drives it: cancelled at once
    assert service.cancel(run.id).state == "cancelled"  # again: nothing to do, no error


def test_schedules_pause_and_resume(service: Service) -> None:
    [sched] = service.schedules()
    assert sched.pipeline == "nightly" and not sched.paused
    paused = service.pause("nightly")
    assert paused.paused and paused.next_tick is None
    assert service.pipeline("nightly").schedule.paused  # type: ignore[union-attr]
    assert not service.pause("nightly", False).paused
    with pytest.raises(ParameterError, match="pipeline hello has no schedule"):
        service.pause("hello")


def test_a_reload_sees_edited_pipelines(service: Service) -> None:
    assert project is not None and service.project is not None
    path = service.project.root / "pipes.py"
    path.write_text(path.read_text() + "\n@pipeline\ndef later(n: int = 2):\n    square(n)\n")
    assert "later" not in {v.name for v in service.pipelines()}
    assert "later" in {v.name for v in service.reload()}
    (service.project.root / "more.py").write_text(
        "from conveyor import pipeline, task\n\n@task\ndef one() -> int:\n    return 1\n\n"
        "@pipeline\ndef extra():\n    one()\n"
    )
    (service.project.root / "conveyor.toml").write_text('[project]\npipelines = ["pipes.py", "more.py"]\n')
    assert "extra" in {v.name for v in service.reload()}  # conveyor.toml is read again too
