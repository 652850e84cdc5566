"""One Luigi task run as a Conveyor attempt runs it: as Luigi's own worker does."""

from __future__ import annotations

from pathlib import Path

import luigi
import pytest

from conveyor.errors import CycleError, DefinitionError
from conveyor.luigi import LuigiTaskError, from_task
from conveyor.luigi.execution import execute

CALLS: list[str] = []


class Raw(luigi.ExternalTask):
    name = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"raw/{self.name}")


class Step(luigi.Task):
    n = luigi.IntParameter()

    def requires(self):
        return Step(n=self.n - 1) if self.n > 0 else []

    def output(self):
        return luigi.LocalTarget(f"steps/{self.n}")

    def run(self):
        CALLS.append(f"step {self.n}")
        self.output().makedirs()
        Path(self.output().path).write_text(str(self.n))


class Dynamic(luigi.Task):
    def output(self):
        return luigi.LocalTarget("dynamic.txt")

    def run(self):
        CALLS.append("dynamic run() called")
        first, second = yield [Step(n=2), Raw(name="a")]  # Step(2) requires Step(1), Step(0)
        Path(self.output().path).write_text(first.open().read() + Path(second.path).read_text())


class Loop(luigi.Task):
    def requires(self):
        return Loop()


@pytest.fixture(autouse=True)
def here(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.chdir(tmp_path)
    CALLS.clear()
    return tmp_path


def test_dynamic_dependencies_run_upstream_first_then_run_is_called_again_as_luigi_does(here: Path) -> None:
    (here / "raw").mkdir()
    (here / "raw" / "a").write_text("+a")
    execute(Dynamic())
    assert CALLS == ["dynamic run() called", "step 0", "step 1", "step 2", "dynamic run() called"]
    assert (here / "dynamic.txt").read_text() == "2+a"
    CALLS.clear()
    (here / "dynamic.txt").unlink()
    execute(Dynamic())  # its dynamic dependencies are complete now: run() goes straight through
    assert CALLS == ["dynamic run() called"]


def test_missing_external_data_is_one_line_saying_what_to_do(here: Path) -> None:
    with pytest.raises(LuigiTaskError, match=r"external data dependency and its data does not exist"):
        execute(Raw(name="absent"))
    with pytest.raises(LuigiTaskError, match=r"unfulfilled dependencies at run time: Step_0_"):
        execute(Step(n=1))
    assert not CALLS


def test_a_graph_of_a_thousand_steps_and_a_cycle() -> None:
    graph = from_task(Step).build({"n": 999})
    assert len(graph) == 1000
    with pytest.raises(CycleError, match="Loop__99914b932b requires itself"):
        from_task(Loop).build({})


def test_a_schedule_needs_one_date_parameter() -> None:
    class Nightly(luigi.Task):
        day = luigi.DateParameter()

    pipe = from_task(Nightly, name="nightly", schedule="0 6 * * *")
    assert pipe.schedule is not None and pipe.takes_logical_date
    with pytest.raises(DefinitionError, match="exactly one date parameter"):
        from_task(Step, schedule="0 6 * * *")


def test_a_class_retry_count_and_priority_are_its_tasks_retries_and_priority() -> None:
    class Flaky(luigi.Task):
        retry_count = 3
        priority = 5

    (node,) = list(from_task(Flaky).build({}))
    assert (node.task.retries, node.task.priority) == (3, 5)
    (plain,) = list(from_task(Raw).build({"name": "a"}))
    assert (plain.task.retries, plain.task.priority) == (0, 0)
