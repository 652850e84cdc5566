"""The REST API over real HTTP (uvicorn on a loopback port, httpx): the contract's routes, shapes
and error mapping. Runs are driven by a real ``conveyor scheduler`` process."""

from __future__ import annotations

import json
import pickle
import signal
import subprocess
import time
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from live import in_thread, make_project, wait_for_run, wait_until

from conftest import Project
from conveyor import __version__
from conveyor import project as projects
from conveyor.api import create_app
from conveyor.service import Service
from conveyor.store import open_store
from conveyor.views import BackfillView, LogView, PipelineView, RunDetail, RunPage, RunView, ScheduleView

V1 = "/api/v1"


@dataclass
class Api:
    """The app served over HTTP, the service behind it, and the project."""

    url: str
    http: httpx.Client
    service: Service
    project: Project
    reloads: list[int]


@pytest.fixture
def api(project: Project) -> Iterator[Api]:
    """The app on uvicorn in a thread, over the test project's store; a 64 KiB body limit."""
    make_project(project)
    store = open_store(project.db)
    service = Service(store, projects.find(project.root))
    reloads: list[int] = []
    app = create_app(service, max_body=64 * 1024, on_reload=lambda: reloads.append(1))
    with in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Api(url, http, service, project, reloads)
    store.close()


def _trigger(api: Api, name: str, **params: Any) -> dict[str, Any]:
    answer = api.http.post(f"{V1}/pipelines/{name}/runs", json={"params": params})
    assert answer.status_code == 201, answer.text
    return dict(answer.json())


def _drive(api: Api) -> None:
    """A real scheduler drives every submitted run, then exits."""
    api.project.cli("scheduler", "--until-idle", "--workers", "2", "--poll", "0.1", check=True)


def _problems(answer: httpx.Response) -> dict[tuple[Any, ...], str]:
    assert answer.status_code == 422, answer.text
    return {tuple(p["loc"]): p["msg"] for p in answer.json()["detail"]}


# -- the schema -----------------------------------------------------------------------------------
def test_the_openapi_schema_documents_every_route(api: Api) -> None:
    schema = api.http.get("/openapi.json").json()
    assert schema["info"]["title"] == "Conveyor" and schema["info"]["version"] == __version__
    operations = {
        (method.upper(), path): op for path, ops in schema["paths"].items() for method, op in ops.items()
    }
    assert (
        len(operations) == 42
    )  # the contract's 20 routes (logs and its follow are one), the web UI's three, people's 18, a notebook
    for (method, path), op in operations.items():
        assert op.get("summary") and op.get("tags"), f"{method} {path} has no summary or tags"
        if path.startswith(V1) and "{" in path:
            assert "404" in op["responses"], f"{method} {path} does not document 404"
        if method == "POST":
            assert "413" in op["responses"], f"{method} {path} does not document 413"
    for action in ("cancel", "retry"):
        assert "409" in operations["POST", f"{V1}/runs/{{run_id}}/{action}"]["responses"]
    trigger = operations["POST", f"{V1}/pipelines/{{name}}/runs"]
    assert trigger["responses"]["201"]["content"]["application/json"]["schema"]["$ref"].endswith("/RunView")
    assert "422" in trigger["responses"]
    runs = {p["name"]: p["schema"] for p in operations["GET", f"{V1}/runs"]["parameters"]}
    assert runs["limit"]["minimum"] == 1 and runs["limit"]["maximum"] == 500
    assert runs["offset"]["minimum"] == 0
    assert api.http.get("/docs").status_code == 200


# -- pipelines and runs ---------------------------------------------------------------------------
def test_pipelines_are_listed_with_parameters_and_schedules(api: Api) -> None:
    pipelines = [PipelineView.model_validate(p) for p in api.http.get(f"{V1}/pipelines").json()]
    assert sorted(p.name for p in pipelines) == ["daily", "kept", "nightly", "quick", "slow"]
    quick = PipelineView.model_validate(api.http.get(f"{V1}/pipelines/quick").json())
    assert quick.description == "Double a number."
    assert [(p.name, p.type, p.required) for p in quick.params] == [("n", "int", True)]
    nightly = PipelineView.model_validate(api.http.get(f"{V1}/pipelines/nightly").json())
    assert nightly.schedule is not None and nightly.schedule.cron == "0 3 * * *"


def test_a_run_is_triggered_driven_and_inspected(api: Api) -> None:
    run = RunView.model_validate(_trigger(api, "quick", n="21"))  # strings are parsed, as on the CLI
    assert run.state == "pending" and run.params == {"n": 21} and run.partitions == 1
    _drive(api)
    detail = RunDetail.model_validate(api.http.get(f"{V1}/runs/{run.id}").json())
    assert detail.state == "succeeded" and detail.duration is not None and detail.duration > 0
    [task] = detail.tasks
    assert task.task == "double" and task.state == "succeeded" and task.has_result
    [attempt] = task.attempt_log
    assert attempt.state == "succeeded" and attempt.has_log and attempt.duration is not None
    # a unique prefix of the id names the run
    assert api.http.get(f"{V1}/runs/{run.id[:-2]}").json()["id"] == run.id

    [log] = [LogView.model_validate(x) for x in api.http.get(f"{V1}/runs/{run.id}/logs").json()]
    assert log.task == task.label and "doubling 21" in log.text and not log.truncated
    tail = api.http.get(f"{V1}/runs/{run.id}/logs", params={"task": "double", "tail": 1}).json()
    assert tail[0]["text"].strip().endswith("doubling 21")
    assert api.http.get(f"{V1}/runs/{run.id}/logs", params={"attempt": 2}).json() == []
    followed = api.http.get(f"{V1}/runs/{run.id}/logs", params={"task": "double", "follow": "true"})
    assert followed.headers["content-type"].startswith("text/plain") and "doubling 21" in followed.text

    answer = api.http.get(f"{V1}/runs/{run.id}/result", params={"task": "double"})
    assert answer.headers["content-type"] == "application/json" and answer.json() == 42
    missing = api.http.get(f"{V1}/runs/{run.id}/result", params={"task": "nope"})
    assert missing.status_code == 404 and "its tasks are: double" in missing.json()["detail"]

    light = api.http.get(f"{V1}/runs/{run.id}", params={"tasks": "false"}).json()
    assert light["state"] == "succeeded" and light["counts"] == {"succeeded": 1} and light["tasks"] == []

    # a succeeded run: retry and cancel change nothing
    assert api.http.post(f"{V1}/runs/{run.id}/retry").json()["state"] == "succeeded"
    assert api.http.post(f"{V1}/runs/{run.id}/cancel").json()["state"] == "succeeded"


def test_a_result_only_pickle_can_hold_is_sent_as_a_pickle(api: Api) -> None:
    run = _trigger(api, "kept", n=3)
    _drive(api)
    answer = api.http.get(f"{V1}/runs/{run['id']}/result", params={"task": "bag"})
    assert answer.headers["content-type"] == "application/x-python-pickle"
    assert pickle.loads(answer.content) == {3}


def test_runs_are_paged_and_filtered(api: Api) -> None:
    ids = [_trigger(api, "quick", n=i)["id"] for i in range(3)]
    _trigger(api, "daily")
    page = RunPage.model_validate(api.http.get(f"{V1}/runs", params={"limit": 2}).json())
    assert page.total == 4 and len(page.items) == 2 and page.limit == 2
    rest = RunPage.model_validate(api.http.get(f"{V1}/runs", params={"limit": 2, "offset": 2}).json())
    assert {r.id for r in page.items} | {r.id for r in rest.items} == {*ids, page.items[0].id} | {
        r.id for r in rest.items
    }
    quick = api.http.get(f"{V1}/runs", params={"pipeline": "quick"}).json()
    assert quick["total"] == 3 and sorted(r["id"] for r in quick["items"]) == sorted(ids)
    assert api.http.get(f"{V1}/runs", params={"state": "pending"}).json()["total"] == 4
    assert api.http.get(f"{V1}/runs", params={"state": "succeeded"}).json()["total"] == 0
    future = api.http.get(f"{V1}/runs", params={"since": "2999-01-01T00:00:00Z"}).json()
    assert future["total"] == 0 and future["items"] == []
    past = api.http.get(f"{V1}/runs", params={"until": "2000-01-01T00:00:00"}).json()
    assert past["total"] == 0


# -- backfills, schedules, reload -----------------------------------------------------------------
def test_a_backfill_is_recorded_and_stepped(api: Api) -> None:
    body = {"pipeline": "daily", "start": "2026-03-01", "end": "2026-03-03", "max_parallel": 2}
    answer = api.http.post(f"{V1}/backfills", json=body)
    assert answer.status_code == 201, answer.text
    backfill = BackfillView.model_validate(answer.json())
    assert backfill.total == 3 and backfill.counts == {"pending": 2, "waiting": 1}
    assert api.http.get(f"{V1}/backfills/{backfill.id}").json()["id"] == backfill.id
    assert [b["id"] for b in api.http.get(f"{V1}/backfills", params={"state": "running"}).json()] == [
        backfill.id
    ]
    cancelled = BackfillView.model_validate(api.http.post(f"{V1}/backfills/{backfill.id}/cancel").json())
    assert cancelled.state == "cancelled"
    assert api.http.get(f"{V1}/backfills", params={"state": "running"}).json() == []


def test_schedules_pause_and_resume(api: Api) -> None:
    [schedule] = [ScheduleView.model_validate(s) for s in api.http.get(f"{V1}/schedules").json()]
    assert schedule.pipeline == "nightly" and not schedule.paused and schedule.next_tick is not None
    paused = ScheduleView.model_validate(api.http.post(f"{V1}/schedules/nightly/pause").json())
    assert paused.paused and paused.next_tick is None
    assert api.http.get(f"{V1}/schedules").json()[0]["paused"] is True
    resumed = api.http.post(f"{V1}/schedules/nightly/resume").json()
    assert resumed["paused"] is False and resumed["next_tick"] is not None
    assert api.http.post(f"{V1}/schedules/nope/pause").status_code == 404
    assert _problems(api.http.post(f"{V1}/schedules/quick/pause")) == {("path", "name"): "no schedule"}


def test_reload_sees_edited_pipelines_and_keeps_them_when_the_code_breaks(api: Api) -> None:
    pipes = api.project.root / "pipes.py"
    source = pipes.read_text()
    pipes.write_text(source + "\n@pipeline\ndef extra(k: int = 2):\n    double(k)\n")
    names = [p["name"] for p in api.http.post(f"{V1}/pipelines/reload").json()]
    assert "extra" in names and api.reloads == [1]
    assert api.http.get(f"{V1}/pipelines/extra").status_code == 200
    pipes.write_text(source + "\nthis is not python\n")
    broken = api.http.post(f"{V1}/pipelines/reload")
    assert broken.status_code == 400 and "pipes.py" in broken.json()["detail"]
    assert api.reloads == [1]  # the scheduler is not asked to load broken code
    assert "extra" in [p["name"] for p in api.http.get(f"{V1}/pipelines").json()]


def test_health_and_metrics(api: Api) -> None:
    health = api.http.get("/healthz")
    assert health.status_code == 200
    assert health.json() == {"status": "ok", "store": "ok", "schedulers": 0, "version": __version__}
    run = _trigger(api, "quick", n=1)
    _drive(api)
    assert wait_for_run(api.http, run["id"])["state"] == "succeeded"
    metrics = api.http.get("/metrics")
    assert metrics.headers["content-type"].startswith("text/plain")
    assert 'conveyor_runs{state="succeeded"} 1.0' in metrics.text
    assert "conveyor_task_duration_seconds_bucket" in metrics.text


# -- following a log as it grows ------------------------------------------------------------------
@pytest.fixture
def scheduler(api: Api) -> Iterator[None]:
    proc = api.project.popen("scheduler", "--workers", "1", "--poll", "0.1")
    yield
    proc.send_signal(signal.SIGTERM)  # it waits for an attempt still running ...
    try:
        proc.communicate(timeout=10)
    except subprocess.TimeoutExpired:
        proc.send_signal(signal.SIGTERM)  # ... unless told again
        proc.communicate(timeout=30)


def test_follow_streams_a_log_while_its_attempt_runs(api: Api, scheduler: None) -> None:
    run = _trigger(api, "slow", seconds="1.5")
    arrivals: list[tuple[float, bytes]] = []
    started = time.monotonic()
    params = {"task": "nap", "follow": "true"}
    with api.http.stream("GET", f"{V1}/runs/{run['id']}/logs", params=params) as answer:
        assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/plain")
        for chunk in answer.iter_bytes():
            arrivals.append((time.monotonic() - started, chunk))
    text = b"".join(c for _, c in arrivals).decode()
    assert text.startswith("napping\ntick 0\n") and "tick 14" in text
    assert len(arrivals) >= 3  # it came in pieces, as it was written
    assert arrivals[-1][0] - arrivals[0][0] > 0.75
    # the stream ended with the attempt
    assert wait_for_run(api.http, run["id"], timeout=10)["state"] == "succeeded"


def test_cancel_stops_a_running_run(api: Api, scheduler: None) -> None:
    run = _trigger(api, "slow")
    wait_until(
        lambda: api.http.get(f"{V1}/runs/{run['id']}").json()["state"] == "running", what="the run to start"
    )
    answer = api.http.post(f"{V1}/runs/{run['id']}/cancel")
    assert answer.status_code == 200 and answer.json()["cancel_requested"] is True
    assert wait_for_run(api.http, run["id"], timeout=15)["state"] == "cancelled"
    retried = api.http.post(f"{V1}/runs/{run['id']}/retry")
    assert retried.status_code == 200 and retried.json()["state"] in ("pending", "running")
    again = api.http.post(f"{V1}/runs/{run['id']}/retry")
    assert again.status_code == 409 and "retry it once it has ended" in again.json()["detail"]
    api.http.post(f"{V1}/runs/{run['id']}/cancel")


# -- the error mapping ----------------------------------------------------------------------------
def test_unknown_names_are_404_with_one_line(api: Api) -> None:
    for method, path in [
        ("GET", f"{V1}/pipelines/nope"),
        ("POST", f"{V1}/pipelines/nope/runs"),
        ("GET", f"{V1}/runs/nope"),
        ("POST", f"{V1}/runs/nope/cancel"),
        ("POST", f"{V1}/runs/nope/retry"),
        ("GET", f"{V1}/runs/nope/logs"),
        ("GET", f"{V1}/runs/nope/result?task=x"),
        ("GET", f"{V1}/backfills/nope"),
        ("POST", f"{V1}/backfills/nope/cancel"),
        ("POST", f"{V1}/schedules/nope/resume"),
    ]:
        answer = api.http.request(method, path)
        assert answer.status_code == 404, f"{method} {path}: {answer.text}"
        detail = answer.json()["detail"]
        assert isinstance(detail, str) and "\n" not in detail and "nope" in detail
    listed = api.http.get(f"{V1}/pipelines/nope").json()["detail"]
    assert listed == "no pipeline 'nope'; known pipelines: daily, kept, nightly, quick, slow"
    backfill = api.http.post(
        f"{V1}/backfills", json={"pipeline": "nope", "start": "2026-01-01", "end": "2026-01-02"}
    )
    assert backfill.status_code == 404


def test_bad_parameters_are_422_naming_each_field(api: Api) -> None:
    trigger = f"{V1}/pipelines/quick/runs"
    assert _problems(api.http.post(trigger, json={"params": {"n": "x", "zzz": 1}})) == {
        ("body", "params", "n"): "expected an integer, got 'x'",
        ("body", "params", "zzz"): "unknown parameter",
    }
    assert _problems(api.http.post(trigger, json={})) == {
        ("body", "params", "n"): "missing: a int is required"
    }
    assert _problems(api.http.post(trigger)).keys() == {("body", "params", "n")}  # no body: no params
    assert ("body", "extra") in _problems(api.http.post(trigger, json={"params": {}, "extra": 1}))
    assert ("body", "params") in _problems(api.http.post(trigger, json={"params": [1, 2]}))

    backfills = f"{V1}/backfills"
    day = {"pipeline": "daily", "start": "2026-01-01", "end": "2026-01-02"}
    assert _problems(api.http.post(backfills, json={**day, "start": "soon"})) == {
        ("body", "start"): "not a date"
    }
    assert _problems(api.http.post(backfills, json={**day, "end": "2025-01-01"})) == {
        ("body", "end"): "before start"
    }
    assert ("body", "max_parallel") in _problems(api.http.post(backfills, json={**day, "max_parallel": 0}))
    assert ("body", "every") in _problems(api.http.post(backfills, json={**day, "every": "fortnight"}))
    assert ("body", "pipeline") in _problems(api.http.post(backfills, json={**day, "pipeline": "quick"}))
    assert _problems(api.http.post(backfills, json={**day, "params": {"logical_date": "2026-01-01"}})) == {
        ("body", "params", "logical_date"): "set by the backfill"
    }
    assert ("body", "end") in _problems(api.http.post(backfills, json={"pipeline": "daily", "start": "x"}))

    runs = f"{V1}/runs"
    for query, field in [
        ({"limit": 0}, "limit"),
        ({"limit": 501}, "limit"),
        ({"limit": "many"}, "limit"),
        ({"offset": -1}, "offset"),
        ({"state": "sleeping"}, "state"),
        ({"since": "yesterday"}, "since"),
        ({"until": "1700000000"}, "until"),  # seconds since 1970 are not ISO 8601
    ]:
        assert ("query", field) in _problems(api.http.get(runs, params=query)), query
    run = _trigger(api, "quick", n=1)
    logs = f"{V1}/runs/{run['id']}/logs"
    assert ("query", "tail") in _problems(api.http.get(logs, params={"tail": 0}))
    assert _problems(api.http.get(logs, params={"follow": "true"})).keys() == {("query", "task")}
    assert ("query", "task") in _problems(api.http.get(f"{V1}/runs/{run['id']}/result"))
    pending = api.http.get(f"{V1}/runs/{run['id']}/result", params={"task": "double"})
    assert pending.status_code == 409 and "has no result yet" in pending.json()["detail"]
    retry = api.http.post(f"{V1}/runs/{run['id']}/retry")
    assert retry.status_code == 409 and "is pending" in retry.json()["detail"]


@pytest.mark.parametrize(
    ("body", "content_type", "status"),
    [
        (b'{"params": {"n": 1}', "application/json", 422),  # cut short
        (b'{"params": {"n": "\xff"}}', "application/json", 400),  # not UTF-8
        (b"[1, 2, 3]", "application/json", 422),
        (b'"n=1"', "application/json", 422),
        (b'{"params": {"n": NaN}}', "application/json", 422),
        (b'{"params": {"n": 1e999}}', "application/json", 422),
        (b'{"params": {"n": 1' + b"0" * 5000 + b"}}", "application/json", 400),  # past int's digits
        (b'{"params": {"n": "\\ud800"}}', "application/json", 422),  # a lone surrogate
        (b'{"params": {"\\ud800": 1}}', "application/json", 422),
        (b'{"params": {"n": "1\\u0000"}}', "application/json", 422),
        (b'{"params": {"n": ' + b"[" * 5000 + b"]" * 5000 + b"}}", "application/json", 400),
        (b"n=1", "application/x-www-form-urlencoded", 422),
        (b"\x00\x01\x02", "application/octet-stream", 422),
    ],
)
def test_malformed_bodies_are_refused_never_a_server_error(
    api: Api, body: bytes, content_type: str, status: int
) -> None:
    answer = api.http.post(f"{V1}/pipelines/quick/runs", content=body, headers={"content-type": content_type})
    assert answer.status_code == status, answer.text
    json.loads(answer.text)  # always JSON, even when it echoes what it was sent
    assert api.http.get(f"{V1}/runs").json()["total"] == 0


def test_values_no_store_can_hold_are_named(api: Api) -> None:
    answer = api.http.post(
        f"{V1}/pipelines/slow/runs",
        content=b'{"params": {"seconds": "\\u0000", "x": {"deep": ["ok", "\\udfff"]}}}',
        headers={"content-type": "application/json"},
    )
    assert _problems(answer).keys() == {("body", "params", "seconds"), ("body", "params", "x", "deep", 1)}


def test_odd_paths_and_queries_are_not_server_errors(api: Api) -> None:
    run = _trigger(api, "quick", n=1)
    for path, status in [
        (f"{V1}/runs/a%2Fb", 404),
        (f"{V1}/runs/a/b", 404),
        (f"{V1}/runs/%00", 404),
        (f"{V1}/runs/%ED%A0%80", 404),  # an encoded surrogate
        (f"{V1}/runs/%F0%9F%92%A9", 404),
        (f"{V1}/runs/..%2F..%2Fetc%2Fpasswd", 404),
        (f"{V1}/runs/{run['id']}/logs?task=%00", 404),
        (f"{V1}/runs/{run['id']}/result?task=%F0%9F%92%A9", 404),
        (f"{V1}/backfills/%00", 404),
        (f"{V1}/runs?pipeline=%00", 200),
        (f"{V1}/runs?since=9999-12-31T23:59:59%2B14:00", 200),
        (f"{V1}/runs?offset=99999999999999999999999", 422),
        (f"{V1}/runs/{run['id']}/logs?attempt=99999999999999999999999", 200),
        (f"{V1}/runs/{run['id']}/logs?tail=99999999999999999999999", 200),
        (f"{V1}/nothing/here", 404),
    ]:
        answer = api.http.get(path)
        assert answer.status_code == status, f"{path}: {answer.status_code} {answer.text}"
    assert api.http.post(f"{V1}/pipelines/%00/runs").status_code == 404
    assert api.http.get(f"{V1}/runs?pipeline=%00").json() == {
        "items": [],
        "total": 0,
        "offset": 0,
        "limit": 20,
    }
    refused = api.http.delete(f"{V1}/backfills")
    assert refused.status_code == 405 and refused.headers["allow"] == "GET, POST"


# -- the body limit -------------------------------------------------------------------------------
def test_bodies_over_the_limit_are_413(api: Api) -> None:
    trigger = f"{V1}/pipelines/quick/runs"
    big = json.dumps({"params": {"n": 1, "pad": "x" * (64 * 1024)}}).encode()
    announced = api.http.post(trigger, content=big, headers={"content-type": "application/json"})
    assert announced.status_code == 413
    assert announced.json()["detail"].endswith("the limit is 65536 bytes")

    def chunks() -> Iterator[bytes]:  # no Content-Length: sent in chunks
        yield b'{"params": {"n": 1, "pad": "'
        for _ in range(100):
            yield b"x" * 1024
        yield b'"}}'

    streamed = httpx.post(api.url + trigger, content=chunks(), headers={"content-type": "application/json"})
    assert streamed.status_code == 413 and "more than 65536 bytes sent" in streamed.json()["detail"]
    # just under the limit: the request reaches the route, which names the unknown field
    small = json.dumps({"params": {"n": 1, "pad": "x" * (60 * 1024)}}).encode()
    answer = api.http.post(trigger, content=small, headers={"content-type": "application/json"})
    assert _problems(answer) == {("body", "params", "pad"): "unknown parameter"}
    assert api.http.get(f"{V1}/runs").json()["total"] == 0


# -- a bug ----------------------------------------------------------------------------------------
class _Broken(Service):
    """A service with a bug in one of its calls."""

    def schedulers(self) -> Any:
        raise RuntimeError("a bug")


def test_a_bug_is_a_500_with_its_traceback_in_the_log(
    project: Project, caplog: pytest.LogCaptureFixture
) -> None:
    make_project(project)
    store = open_store(project.db)
    app = create_app(_Broken(store, projects.find(project.root)))
    with in_thread(app) as url:
        answer = httpx.get(f"{url}{V1}/schedulers")
        assert httpx.get(f"{url}{V1}/pipelines").status_code == 200  # the server goes on
    store.close()
    assert answer.status_code == 500
    assert answer.json() == {"detail": "internal error (RuntimeError); the server's log has the traceback"}
    assert any(r.exc_info and "a bug" in str(r.exc_info[1]) for r in caplog.records)
