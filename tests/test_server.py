"""``conveyor server`` as a user runs it: a real process serving the REST API on a loopback port,
with the scheduler child it supervises driving the runs; on SQLite, and on a real PostgreSQL."""

from __future__ import annotations

import json
import os
import re
import signal
import socket
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from api.live import ServerProcess, free_port, make_project, start_server, wait_for_run, wait_until
from conftest import Project
from conveyor.server import is_loopback

V1 = "/api/v1"


@pytest.fixture(scope="module")
def served(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ServerProcess, Project]]:
    """One server for the module's tests: the test project, two workers, a 64 KiB body limit."""
    root = tmp_path_factory.mktemp("served") / "project"
    root.mkdir()
    project = make_project(Project(root))
    server = start_server(project, "--workers", "2", "--max-body", "65536")
    yield server, project
    server.stop()


@pytest.fixture
def http(served: tuple[ServerProcess, Project]) -> Iterator[httpx.Client]:
    with served[0].client() as client:
        yield client


def _trigger(http: httpx.Client, name: str, **params: Any) -> str:
    answer = http.post(f"{V1}/pipelines/{name}/runs", json={"params": params})
    assert answer.status_code == 201, answer.text
    return str(answer.json()["id"])


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True


def test_a_triggered_run_succeeds_and_shows_its_tasks_logs_and_result(http: httpx.Client) -> None:
    run_id = _trigger(http, "quick", n="21")
    run = wait_for_run(http, run_id)
    assert run["state"] == "succeeded" and run["params"] == {"n": 21}, run
    assert run["duration"] > 0 and run["counts"] == {"succeeded": 1}
    [task] = run["tasks"]
    assert (task["task"], task["state"], task["attempts"], task["has_result"]) == (
        "double",
        "succeeded",
        1,
        True,
    )
    [attempt] = task["attempt_log"]
    assert attempt["state"] == "succeeded" and attempt["duration"] >= 0 and attempt["has_log"]
    [log] = http.get(f"{V1}/runs/{run_id}/logs", params={"task": "double"}).json()
    assert log["text"] == "doubling 21\n"
    result = http.get(f"{V1}/runs/{run_id}/result", params={"task": "double"})
    assert result.headers["content-type"] == "application/json" and result.json() == 42
    metrics = http.get("/metrics").text
    succeeded = re.search(r'^conveyor_runs\{state="succeeded"\} (\S+)$', metrics, re.M)
    assert succeeded and float(succeeded.group(1)) >= 1, metrics
    assert http.get("/healthz").json()["schedulers"] == 1


def test_the_server_serves_the_execution_api_with_the_stores_keys(
    http: httpx.Client, served: tuple[ServerProcess, Project]
) -> None:
    """A token minted by another process on the server's store (a driver) is the server's to
    verify; an ended attempt cannot begin again; no token, no entry."""
    from conveyor.execution.tokens import mint
    from conveyor.store import open_store

    run_id = _trigger(http, "quick", n="4")
    [task] = wait_for_run(http, run_id)["tasks"]
    path = f"/execution/v1/attempts/{run_id}/{task['id']}/1/begin"
    answer = http.post(path, json={"owner": "elsewhere:1"})
    assert answer.status_code == 401 and "attempt token is needed" in answer.json()["detail"]
    store = open_store(served[1].db)
    try:
        token = mint(store, run_id, task["id"], 1)
    finally:
        store.close()
    answer = http.post(path, json={"owner": "elsewhere:1"}, headers={"Authorization": f"Bearer {token}"})
    assert answer.status_code == 409 and "do not start it" in answer.json()["detail"], answer.text


def test_a_slow_run_is_cancelled(http: httpx.Client) -> None:
    run_id = _trigger(http, "slow")
    wait_until(lambda: http.get(f"{V1}/runs/{run_id}").json()["state"] == "running", what="the run to start")
    assert http.post(f"{V1}/runs/{run_id}/cancel").json()["cancel_requested"] is True
    run = wait_for_run(http, run_id, timeout=15)
    assert run["state"] == "cancelled" and run["tasks"][0]["state"] == "cancelled"


def test_a_backfill_runs_each_date_and_the_same_backfill_again_skips_them(http: httpx.Client) -> None:
    body = {"pipeline": "daily", "start": "2026-02-01", "end": "2026-02-03", "max_parallel": 2}
    created = http.post(f"{V1}/backfills", json=body)
    assert created.status_code == 201, created.text
    assert created.json()["counts"] == {"pending": 2, "waiting": 1}  # two at a time

    def ended() -> dict[str, Any] | None:
        found: dict[str, Any] = http.get(f"{V1}/backfills/{created.json()['id']}").json()
        return found if found["state"] != "running" else None

    backfill = wait_until(ended, timeout=30, what="the backfill to end")
    assert backfill["state"] == "succeeded" and backfill["counts"] == {"succeeded": 3}
    runs = {d["run"] for d in backfill["dates"]}
    assert len(runs) == 3
    for d in backfill["dates"]:
        run = http.get(f"{V1}/runs/{d['run']}").json()
        assert run["state"] == "succeeded" and run["params"]["logical_date"] == d["when"][:10]
    again = http.post(f"{V1}/backfills", json=body).json()
    assert again["state"] == "succeeded" and again["counts"] == {"skipped": 3}
    assert {d["run"] for d in again["dates"]} == runs


def test_a_schedule_is_paused_and_resumed(http: httpx.Client) -> None:
    paused = http.post(f"{V1}/schedules/nightly/pause")
    assert paused.status_code == 200 and paused.json()["paused"] is True
    assert [(s["pipeline"], s["paused"]) for s in http.get(f"{V1}/schedules").json()] == [("nightly", True)]
    assert http.get(f"{V1}/pipelines/nightly").json()["schedule"]["paused"] is True
    resumed = http.post(f"{V1}/schedules/nightly/resume").json()
    assert resumed["paused"] is False and resumed["next_tick"] is not None
    assert http.get(f"{V1}/schedules").json()[0]["paused"] is False


def test_bad_requests_are_answered_with_what_is_wrong(http: httpx.Client) -> None:
    unknown = http.post(f"{V1}/pipelines/nope/runs", json={"params": {}})
    assert unknown.status_code == 404
    assert (
        unknown.json()["detail"] == "no pipeline 'nope'; known pipelines: daily, kept, nightly, quick, slow"
    )
    bad = http.post(f"{V1}/pipelines/quick/runs", json={"params": {"n": "twenty"}})
    assert bad.status_code == 422
    assert bad.json()["detail"] == [
        {"loc": ["body", "params", "n"], "msg": "expected an integer, got 'twenty'", "type": "value_error"}
    ]
    huge = http.post(f"{V1}/pipelines/quick/runs", json={"params": {"n": 1, "pad": "x" * 100_000}})
    assert huge.status_code == 413 and "the limit is 65536 bytes" in huge.json()["detail"]
    assert http.get(f"{V1}/runs", params={"limit": 0}).status_code == 422


def test_reload_adds_a_pipeline_that_the_scheduler_runs(
    served: tuple[ServerProcess, Project], http: httpx.Client
) -> None:
    server, project = served
    pipes = project.root / "pipes.py"
    pipes.write_text(pipes.read_text() + "\n@pipeline\ndef added(k: int = 5):\n    double(k)\n")
    assert "added" not in [p["name"] for p in http.get(f"{V1}/pipelines").json()]
    reloaded = http.post(f"{V1}/pipelines/reload")
    assert reloaded.status_code == 200 and "added" in [p["name"] for p in reloaded.json()]
    run = wait_for_run(http, _trigger(http, "added"))
    assert run["state"] == "succeeded", run
    assert http.get(f"{V1}/runs/{run['id']}/result", params={"task": "double"}).json() == 10
    assert "asked to reload its pipelines" in server.log()


def test_reload_loads_an_entry_added_to_conveyor_toml(
    served: tuple[ServerProcess, Project], http: httpx.Client
) -> None:
    _, project = served
    project.write(
        "more.py",
        "from conveyor import pipeline, task\n\n@task\ndef one() -> int:\n    return 1\n\n"
        "@pipeline\ndef listed_later():\n    one()\n",
    )
    toml = project.root / "conveyor.toml"
    toml.write_text('[project]\npipelines = ["pipes.py", "more.py"]\n')
    try:
        reloaded = http.post(f"{V1}/pipelines/reload")
        assert reloaded.status_code == 200 and "listed_later" in [p["name"] for p in reloaded.json()]
        run = wait_for_run(http, _trigger(http, "listed_later"))
        assert run["state"] == "succeeded", run
    finally:
        toml.write_text('[project]\npipelines = ["pipes.py"]\n')


def test_the_interactive_docs_need_no_internet(http: httpx.Client) -> None:
    """/docs and /redoc load their scripts and styles from this server, not from a CDN."""
    for page in ("/docs", "/redoc"):
        html = http.get(page)
        assert html.status_code == 200
        assets = re.findall(r'(?:src|href)="([^"]+)"', html.text)
        assert assets and all(a.startswith("/") and not a.startswith("//") for a in assets), assets
        for asset in assets:
            answer = http.get(asset)
            assert answer.status_code == 200, asset
            assert len(answer.content) > 1000 or asset.startswith("/docs/"), asset  # /docs/: their start
    assert "SwaggerUIBundle" in http.get("/docs-assets/swagger-ui-bundle.js").text


def test_a_server_started_without_a_project_serves_one_created_later_after_a_reload(
    project: Project,
) -> None:
    """The first hour: conveyor server where no conveyor.toml is yet; the UI says to add one and
    reload, and that works without a restart, in the API and in the scheduler child."""
    server = start_server(project, "--workers", "1")
    try:
        with server.client() as http:
            assert http.get(f"{V1}/pipelines").json() == []
            wait_until(lambda: http.get(f"{V1}/schedulers").json(), what="the scheduler")
            make_project(project)
            reloaded = http.post(f"{V1}/pipelines/reload")
            assert reloaded.status_code == 200 and "quick" in [p["name"] for p in reloaded.json()]
            run = wait_for_run(http, _trigger(http, "quick", n=4))
            assert run["state"] == "succeeded", run
            wait_until(lambda: "reloaded" in server.log(), what="the scheduler's reload")
    finally:
        assert server.stop() == 0


def test_sigterm_stops_the_server_and_its_scheduler_which_it_restarts_when_it_dies(project: Project) -> None:
    make_project(project)
    server = start_server(project, "--workers", "1")
    try:
        with server.client() as http:
            [first] = wait_until(lambda: http.get(f"{V1}/schedulers").json(), what="the scheduler")
            os.kill(first["pid"], signal.SIGKILL)
            wait_until(
                lambda: f"(pid {first['pid']}) exited with code -9" in server.log(), what="the restart"
            )

            def restarted() -> list[dict[str, Any]]:
                live = [s for s in http.get(f"{V1}/schedulers").json() if s["pid"] != first["pid"]]
                return [s for s in live if s["state"] == "running"]

            [second] = wait_until(restarted, timeout=20, what="a new scheduler")
            assert wait_for_run(http, _trigger(http, "quick", n=2))["state"] == "succeeded"
    finally:
        code = server.stop(signal.SIGTERM)
    log = server.log()
    assert code == 0, log
    assert not _alive(server.proc.pid) and not _alive(second["pid"])
    assert f"scheduler {second['name']} stopped" in log and "server stopped" in log
    assert "Traceback" not in log


def test_a_server_without_a_project_serves_no_pipelines(tmp_path: Path) -> None:
    project = Project(tmp_path)
    server = start_server(project, "--no-scheduler")
    try:
        with server.client() as http:
            assert http.get(f"{V1}/pipelines").json() == []
            missing = http.post(f"{V1}/pipelines/quick/runs").json()["detail"]
            assert missing == "no pipeline 'quick'; known pipelines: none: no conveyor.toml lists any"
            assert http.get("/healthz").json()["schedulers"] == 0
    finally:
        assert server.stop() == 0
    log = server.log()
    assert "no conveyor.toml in" in log and "no pipelines are served" in log
    assert f"Conveyor UI: {server.url}/   API: {server.url}/api/v1   docs: {server.url}/docs" in log


def test_what_stops_the_server_from_starting_is_one_error_line(project: Project) -> None:
    make_project(project)
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = str(taken.getsockname()[1])
        cases = [
            (["--port", port], f"port {port} on 127.0.0.1 is in use"),
            (
                ["--port", "0", "--db", "postgresql+psycopg://conveyor:s3cret@127.0.0.1:9/nowhere"],
                "127.0.0.1:9",
            ),
            (["--port", "0", "--project", str(project.root / "missing")], "no such directory"),
            (["--port", "0", "--host", "192.0.2.1"], "create an admin first"),  # no user: not loopback
        ]
        for args, expected in cases:
            out = project.cli("server", *args, timeout=60)
            assert out.returncode == 2, (args, out.stdout, out.stderr)
            assert out.stderr.startswith("Error: ") and len(out.stderr.strip().splitlines()) == 1, out.stderr
            assert expected in out.stderr and "s3cret" not in out.stderr
    project.cli("users", "add", "root", "--admin", check=True)
    out = project.cli("server", "--port", "0", "--host", "192.0.2.1", timeout=60)
    assert out.returncode == 2 and len(out.stderr.strip().splitlines()) == 1, out.stderr
    assert "cannot listen on 192.0.2.1:0" in out.stderr  # not this machine's address


def test_only_loopback_addresses_count_as_loopback() -> None:
    assert is_loopback("127.0.0.1") and is_loopback("localhost") and is_loopback("::1")
    assert not is_loopback("0.0.0.0") and not is_loopback("::") and not is_loopback("192.0.2.1")


@pytest.mark.slow
def test_a_server_on_postgresql_runs_pipelines_and_reports_an_outage(project: Project, postgres: Any) -> None:
    make_project(project)
    url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    server = start_server(project, "--workers", "1", db=url)
    try:
        with server.client() as http:
            run = wait_for_run(http, _trigger(http, "quick", n=4))
            assert run["state"] == "succeeded", run
            assert http.get(f"{V1}/runs/{run['id']}/result", params={"task": "double"}).json() == 8
            postgres.stop()
            try:
                health = http.get("/healthz")
                assert health.status_code == 503 and health.json()["status"] == "degraded"
                runs = http.get(f"{V1}/runs")
                assert runs.status_code == 503 and "\n" not in runs.json()["detail"]
            finally:
                postgres.start()
            wait_until(lambda: http.get("/healthz").status_code == 200, what="the store to answer again")
            # a connection the store kept across the restart fails once (503), then is replaced
            statuses = []
            for _ in range(4):
                answer = http.post(f"{V1}/pipelines/quick/runs", json={"params": {"n": 5}})
                statuses.append(answer.status_code)
                if answer.status_code == 201:
                    break
            assert statuses[-1] == 201 and set(statuses) <= {201, 503}, statuses
            assert wait_for_run(http, answer.json()["id"])["state"] == "succeeded"
    finally:
        assert server.stop() == 0
    assert "Traceback" not in server.log(), server.log()
    assert json.dumps(url) not in server.log()  # the URL is in the child's environment, not logged whole


def test_a_server_without_users_refuses_an_address_beyond_loopback_before_binding(project: Project) -> None:
    make_project(project)
    port = free_port()
    out = project.cli("server", "--host", "0.0.0.0", "--port", str(port), "--no-scheduler", timeout=60)
    assert out.returncode == 2, (out.stdout, out.stderr)
    lines = out.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), out.stderr
    assert (
        "create an admin first: conveyor users add NAME --admin; then conveyor tokens create NAME" in lines[0]
    )
    with socket.socket() as s:  # it never bound the port
        s.bind(("0.0.0.0", port))


def test_a_server_with_users_asks_for_a_token_except_for_health(project: Project) -> None:
    make_project(project)
    project.cli("users", "add", "root", "--admin", check=True)
    token = project.cli("tokens", "create", "root", check=True).stdout.strip()
    server = start_server(project, "--no-scheduler")
    try:
        with server.client() as http:
            assert http.get("/healthz").status_code == 200
            assert http.get("/metrics").status_code == 401
            assert http.get(f"{V1}/runs").status_code == 401
            assert http.get(f"{V1}/runs", headers={"Authorization": f"Bearer {token}"}).status_code == 200
    finally:
        assert server.stop() == 0
    public = start_server(project, "--no-scheduler", "--public-metrics", name="public")
    try:
        with public.client() as http:
            assert http.get("/metrics").status_code == 200
    finally:
        assert public.stop() == 0
