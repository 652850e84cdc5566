"""``conveyor.Client``: on the local store (it starts a real scheduler in the background) and
against a real ``conveyor server`` over HTTP."""

from __future__ import annotations

import datetime as dt
import enum
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.live import free_port, start_server
from conftest import Project
from conveyor import Client
from conveyor.client.local import Background
from conveyor.errors import (
    ConveyorError,
    LoadError,
    ParameterError,
    PipelineNotFound,
    RunBusy,
    RunNotFound,
    ServerError,
    UntrustedResult,
)

pytestmark = pytest.mark.timeout(180)

PIPES = """
    import datetime as dt
    import enum
    import time
    from pathlib import Path

    from conveyor import pipeline, task

    class Colour(enum.Enum):
        RED = "red"
        BLUE = "blue"

    @task
    def greet(n: int) -> dict:
        print(f"hello {n} times")
        return {"n": n, "greeting": "hi"}

    @task
    def square(n: int) -> int:
        return n * n

    @task
    def shapes(n: int) -> set:
        return set(range(n))

    @pipeline
    def hello(n: int = 2):
        \"\"\"Greet, square, and a set.\"\"\"
        greet(n)
        square(n)
        shapes(n)

    @task
    def explode(n: int, note: str) -> str:
        print("about to fail")
        if not Path("fixed").exists():
            raise ValueError(f"boom {n}{note}")
        return "fixed"

    @pipeline
    def broken(n: int = 1, note: str = ""):
        square(n)
        explode(n, note)

    @task
    def nap(i: int) -> None:
        time.sleep(60)

    @pipeline
    def slow(n: int = 2):
        for i in range(n):
            nap(i)

    @task
    def describe(day: dt.date, colour: Colour, where: Path, sizes: list[int]) -> str:
        return f"{day.isoformat()} {colour.value} {where.name} {sum(sizes)}"

    @pipeline
    def typed(day: dt.date, colour: Colour, where: Path, sizes: list[int]):
        describe(day, colour, where, sizes)

    @task
    def load(day: dt.date, table: str) -> str:
        with open("loaded.txt", "a") as f:
            f.write(f"{day.isoformat()} {table}\\n")
        return f"{table}@{day.isoformat()}"

    @pipeline
    def daily(logical_date: dt.date = dt.date(2026, 1, 1), table: str = "orders"):
        load(logical_date, table)

    @pipeline(schedule="0 3 1 1 *", timezone="Europe/Berlin")
    def yearly(logical_date: dt.date = dt.date(2026, 1, 1)):
        load(logical_date, "year")
"""


class Colour(enum.Enum):  # the same values as the pipeline's: the client sends the value
    RED = "red"
    BLUE = "blue"


@pytest.fixture
def pipes(project: Project) -> Project:
    project.write("pipes.py", PIPES)
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    return project


def _settle(client: Client, within: float = 30.0) -> None:
    """Let the schedulers the client started finish (they exit when idle); end any left, by pid."""
    deadline = time.monotonic() + within
    while True:
        proc = client.scheduler
        if proc is None:
            return
        try:
            proc.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
            raise AssertionError(f"the background scheduler {proc.pid} did not exit when idle") from None
        time.sleep(0.2)  # a restart after it exited would be the client's newest process
        if client.scheduler is proc:
            return


@pytest.fixture
def local(pipes: Project) -> Iterator[Client]:
    client = Client(project=pipes.root)
    try:
        yield client
    finally:
        _settle(client)
        client.close()


# -- local mode -----------------------------------------------------------------------------------
def test_a_run_is_driven_waited_for_and_its_tasks_logs_and_results_read(
    local: Client, pipes: Project, capfd: pytest.CaptureFixture[str]
) -> None:
    assert [p.name for p in local.pipelines()] == ["broken", "daily", "hello", "slow", "typed", "yearly"]
    run = local.run("hello", n=3)
    assert run.view.state == "pending" and run.view.params == {"n": 3}
    started = capfd.readouterr().err
    assert "started a scheduler in the background (pid" in started
    assert str(pipes.root / ".conveyor" / "scheduler.log") in started

    ended = run.wait(progress=False, timeout=60)
    assert ended.state == "succeeded" and ended.counts == {"succeeded": 3}
    assert run.status == "succeeded"
    assert {t.task: (t.state, t.attempts) for t in run.tasks} == {
        "greet": ("succeeded", 1),
        "square": ("succeeded", 1),
        "shapes": ("succeeded", 1),
    }
    logs = run.logs("greet")
    assert logs.startswith("==> greet(n=3) attempt 1 (succeeded) <==\n") and "hello 3 times" in logs
    assert "hello 3 times" in run.logs()  # every task's attempts
    assert run.result("greet") == {"n": 3, "greeting": "hi"}  # JSON
    assert run.result("square") == 9
    assert run.result("shapes") == {0, 1, 2}  # not JSON: a pickle
    assert run.id in (pipes.root / ".conveyor" / "scheduler.log").read_text()
    scheduler = local.scheduler
    assert scheduler is not None
    deadline = time.monotonic() + 30  # it exits when idle, and the client reaps it: no zombie
    while scheduler.returncode is None and time.monotonic() < deadline:
        time.sleep(0.1)
    assert scheduler.returncode == 0 and not Path(f"/proc/{scheduler.pid}").exists()

    again = local.get(run.id)
    assert again.view.state == "succeeded" and "succeeded" in again._repr_html_()
    listed = local.runs(pipeline="hello")
    assert [r.id for r in listed] == [run.id] and listed.total == 1
    assert "1 of 1 runs" in listed._repr_html_()
    assert local.runs(pipeline="hello", since=dt.date.today() + dt.timedelta(days=2)) == []


def test_python_values_are_sent_as_the_parameters_types_read_them(local: Client, tmp_path: Path) -> None:
    run = local.run(
        "typed", day=dt.date(2026, 11, 1), colour=Colour.BLUE, where=tmp_path / "x.csv", sizes=(1, 2)
    )
    run.wait(progress=False, timeout=60)
    assert run.result("describe") == "2026-11-01 blue x.csv 3"
    assert run.view.params == {
        "day": "2026-11-01",
        "colour": "blue",
        "where": str(tmp_path / "x.csv"),
        "sizes": [1, 2],
    }
    by_target = local.run("pipes.py:hello", n=2)  # a target, not only the project's names
    assert by_target.wait(progress=False, timeout=60).state == "succeeded"
    assert by_target.result("square") == 4


def test_a_failing_task_fails_the_run_and_a_retry_runs_only_it_again(local: Client, pipes: Project) -> None:
    run = local.run("broken", n=7, note="<script>x</script>")
    ended = run.wait(progress=False, timeout=60)
    assert ended.state == "failed"
    states = {t.task: t for t in run.tasks}
    assert states["square"].state == "succeeded"
    assert states["explode"].state == "failed"
    assert "ValueError: boom 7" in (states["explode"].error or "")
    logs = run.logs("explode")
    assert "about to fail" in logs and "ValueError: boom 7" in logs
    html = run._repr_html_()
    assert "failed" in html and "ValueError: boom 7&lt;script&gt;x&lt;/script&gt;" in html
    assert "<script>" not in html  # the parameter, the task's label and its error are escaped
    with pytest.raises(RunBusy, match=r"explode\(n=7, .*\) of run .* is failed: it has no result"):
        run.result("explode")

    (pipes.root / "fixed").touch()
    assert run.retry().wait(progress=False, timeout=60).state == "succeeded"
    assert run.result("explode") == "fixed"
    assert {t.task: t.attempts for t in run.tasks} == {"square": 1, "explode": 2}  # square kept


def test_a_slow_run_times_out_a_wait_and_is_cancelled(local: Client) -> None:
    run = local.run("slow", n=2)
    deadline = time.monotonic() + 30
    while run.view.counts.get("running", 0) < 1 and time.monotonic() < deadline:
        time.sleep(0.2)
        run.refresh()
    assert run.view.state == "running"
    with pytest.raises(TimeoutError, match=rf"run {run.id} of slow is still running after 0.5s"):
        run.wait(progress=False, timeout=0.5)
    asked = time.monotonic()
    run.cancel()
    ended = run.wait(progress=False, timeout=30)
    assert ended.state == "cancelled"
    assert time.monotonic() - asked < 15  # not the minute the naps take
    assert {t.state for t in run.tasks} == {"cancelled"}


def test_a_backfill_runs_one_date_at_a_time(local: Client, pipes: Project) -> None:
    fill = local.backfill("daily", dt.date(2026, 11, 1), "2026-11-03", table="sales")
    assert fill.view.total == 3 and fill.view.max_parallel == 1
    ended = fill.wait(progress=False, timeout=120)
    assert ended.state == "succeeded" and ended.done == 3 and ended.counts == {"succeeded": 3}
    assert sorted((pipes.root / "loaded.txt").read_text().split("\n")[:-1]) == [
        "2026-11-01 sales",
        "2026-11-02 sales",
        "2026-11-03 sales",
    ]
    results = [r.result("load") for r in fill.runs]
    assert results == ["sales@2026-11-01", "sales@2026-11-02", "sales@2026-11-03"]
    assert [b.id for b in local.backfills()] == [fill.id]
    assert "3/3</b> dates done" in fill._repr_html_()


def test_bad_requests_are_one_clear_error(local: Client, pipes: Project) -> None:
    with pytest.raises(PipelineNotFound, match="no pipeline 'nope'; known pipelines: broken, daily, hello"):
        local.run("nope")
    with pytest.raises(ParameterError, match="parameter 'n': expected an integer") as bad:
        local.run("hello", n="three")
    assert set(bad.value.problems) == {"n"}
    with pytest.raises(ParameterError, match="unknown parameter 'm'") as unknown:
        local.run("hello", m=1)
    assert set(unknown.value.problems) == {"m"}
    with pytest.raises(ParameterError, match="parameter 'n': a object cannot be sent"):
        local.run("hello", n=object())
    with pytest.raises(RunNotFound):
        local.get("20260101-000000-abcdef")
    with pytest.raises(ParameterError, match="a backfill gives each run its own"):
        local.backfill("daily", "2026-11-01", "2026-11-02", logical_date=dt.date(2026, 1, 1))
    with pytest.raises(ParameterError, match="is not a date"):
        local.backfill("daily", "first of may", "2026-11-02")
    with pytest.raises(LoadError, match=r"no conveyor\.toml in"):
        Client(project=pipes.root / "nowhere")
    with pytest.raises(ParameterError, match="give db and project to conveyor server"):
        Client("http://127.0.0.1:1", db=pipes.db)
    assert local.scheduler is None  # nothing was submitted: no scheduler was started


def test_a_background_scheduler_that_fails_is_reported_once(tmp_path: Path) -> None:
    root = tmp_path / "broken"
    root.mkdir()
    (root / "conveyor.toml").write_text('[project]\npipelines = ["missing.py"]\n')
    log = tmp_path / "scheduler.log"
    background = Background(f"sqlite:///{tmp_path / 's.db'}", root, log)
    background.ensure(lambda: False, submitted=True)
    first = background.process
    assert first is not None
    deadline = time.monotonic() + 30
    while first.returncode is None and time.monotonic() < deadline:  # reaped by the client's thread
        time.sleep(0.05)
    assert first.returncode == 2 and background.process is first  # not started again: it failed
    with pytest.raises(
        ConveyorError, match=r"exited with code 2: Error: pipeline file .*missing\.py does not"
    ):
        background.ensure(lambda: False, submitted=False)
    background.ensure(lambda: False, submitted=False)  # reported once; then tried again
    second = background.process
    assert second is not None and second is not first
    assert second.wait(timeout=30) == 2


def test_schedules_are_paused_and_resumed_and_the_project_reloaded(local: Client, pipes: Project) -> None:
    (schedule,) = local.schedules()
    assert (schedule.pipeline, schedule.cron, schedule.paused) == ("yearly", "0 3 1 1 *", False)
    assert schedule.next_tick is not None and schedule.next_tick.month == 1
    paused = local.pause("yearly")
    assert paused.paused and paused.next_tick is None
    assert local.pipeline("yearly").schedule == paused
    assert not local.resume("yearly").paused
    with pytest.raises(ParameterError, match="pipeline hello has no schedule"):
        local.pause("hello")
    with open(pipes.root / "pipes.py", "a") as f:
        f.write("\n@pipeline\ndef extra(n: int = 1):\n    square(n)\n")
    assert "extra" not in [p.name for p in local.pipelines()]
    assert "extra" in [p.name for p in local.reload()]
    health = local.health()
    assert (health.status, health.store, health.schedulers) == ("ok", "ok", 0)
    assert local.schedulers() == []


# -- HTTP mode ------------------------------------------------------------------------------------
@pytest.fixture
def server(pipes: Project) -> Iterator[str]:
    """A real ``conveyor server`` (the REST API and its scheduler) on the project."""
    served = start_server(pipes)
    yield served.url
    served.stop()


def _read(project: Project, name: str) -> str:
    return (project.root / name).read_text(errors="replace")[-3000:]


def test_the_client_over_http_is_the_client_on_the_store(server: str, pipes: Project) -> None:
    with Client(server) as client:
        assert client.health().status == "ok"
        assert [p.name for p in client.pipelines()] == ["broken", "daily", "hello", "slow", "typed", "yearly"]
        assert client.pipeline("hello").description == "Greet, square, and a set."
        run = client.run("hello", n=3)
        ended = run.wait(progress=False, timeout=60)
        assert ended.state == "succeeded" and run.status == "succeeded"
        assert {t.task: t.state for t in run.tasks} == dict.fromkeys(
            ("greet", "square", "shapes"), "succeeded"
        )
        assert "hello 3 times" in run.logs("greet", tail=5)
        assert run.result("greet") == {"n": 3, "greeting": "hi"}
        shown = run._repr_html_()  # in a notebook: the graph drawn, and links to the server's pages
        assert shown.count('data-state="succeeded"') == 3 and 'class="conveyor-graph"' in shown
        assert f'href="{server}/#/runs/{run.id}"' in shown
        with pytest.raises(UntrustedResult, match="trust_pickles=True"):  # a pickle, over HTTP
            run.result("shapes")
        with Client(server, trust_pickles=True) as trusting:  # loaded from a server it trusts
            assert trusting.get(run.id).result("shapes") == {0, 1, 2}
        typed = client.run(
            "typed", day=dt.date(2026, 11, 1), colour=Colour.RED, where=Path("a/b.csv"), sizes=[4]
        )
        assert typed.wait(progress=False, timeout=60).state == "succeeded"
        assert typed.result("describe") == "2026-11-01 red b.csv 4"
        broken = client.run("broken", n=2)
        assert broken.wait(progress=False, timeout=60).state == "failed"
        assert "ValueError: boom 2" in ({t.task: t.error for t in broken.tasks}["explode"] or "")
        page = client.runs(pipeline="hello")
        assert [r.id for r in page] == [run.id] and page.total == 1
        assert client.get(run.id).view.state == "succeeded"

        with pytest.raises(
            PipelineNotFound, match="no pipeline 'nope'; known pipelines: broken, daily, hello"
        ):
            client.run("nope")
        with pytest.raises(ParameterError, match="n: ") as bad:
            client.run("hello", n="three")
        assert set(bad.value.problems) == {"n"}
        with pytest.raises(RunNotFound):
            client.get("20260101-000000-abcdef")
        with pytest.raises(RunNotFound, match="has no task 'nope'"):
            run.logs("nope")

        assert client.pause("yearly").paused and not client.resume("yearly").paused
        assert [s.pipeline for s in client.schedules()] == ["yearly"]
        assert [s.state for s in client.schedulers()] == ["running"]  # the server's

        fill = client.backfill("daily", "2026-11-01", dt.date(2026, 11, 3), table="web")
        assert fill.wait(progress=False, timeout=120).state == "succeeded"
        assert [r.result("load") for r in fill.runs] == [f"web@2026-11-0{d}" for d in (1, 2, 3)]


def test_a_closed_port_is_a_server_error_saying_how_to_start_one() -> None:
    port = free_port()
    with (
        Client(f"http://127.0.0.1:{port}", timeout=2) as client,
        pytest.raises(
            ServerError,
            match=rf"cannot reach the Conveyor server at http://127.0.0.1:{port}: .*"
            "start one with conveyor server",
        ),
    ):
        client.pipelines()
