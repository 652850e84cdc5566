"""The commands with ``--server``: a user elsewhere on the machine, with no project and no store,
acts through a real ``conveyor server``'s REST API."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.live import ServerProcess, free_port, make_project, start_server, wait_until
from conftest import Project


@pytest.fixture(scope="module")
def server(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ServerProcess]:
    root = tmp_path_factory.mktemp("remote") / "project"
    root.mkdir()
    served = start_server(make_project(Project(root)), "--workers", "2")
    yield served
    served.stop()


@pytest.fixture
def user(tmp_path: Path, server: ServerProcess) -> Project:
    """A directory without conveyor.toml or a store."""
    home = tmp_path / "elsewhere"
    home.mkdir()
    return Project(home)


def cli(
    user: Project, server: ServerProcess, *args: str, check: bool = False
) -> subprocess.CompletedProcess[str]:  # noqa: F821
    return user.cli(*args, "--server", server.url, check=check)


def test_submit_follow_and_look_at_a_run_through_the_server(user: Project, server: ServerProcess) -> None:
    submitted = cli(user, server, "submit", "quick", "-p", "n=4", "--wait")
    assert submitted.returncode == 0, submitted.stdout + submitted.stderr
    assert "Submitted run" in submitted.stdout and "succeeded" in submitted.stdout
    run_id = submitted.stdout.split()[2]
    [listed] = [
        r for r in json.loads(cli(user, server, "runs", "--json", check=True).stdout) if r["id"] == run_id
    ]
    assert listed["state"] == "succeeded" and listed["params"] == {"n": 4}
    shown = json.loads(cli(user, server, "show", run_id, "--json", check=True).stdout)
    assert [(t["task"], t["state"]) for t in shown["tasks"]] == [("double", "succeeded")]
    assert "double(n=4)" in cli(user, server, "show", run_id, check=True).stdout
    logs = cli(user, server, "logs", run_id, "double", "--tail", "1", check=True).stdout
    assert "attempt 1 · succeeded" in logs and "doubling 4" in logs
    assert not (user.root / ".conveyor").exists()  # nothing local was opened


def test_cancel_retry_and_backfill_through_the_server(user: Project, server: ServerProcess) -> None:
    run_id = cli(user, server, "submit", "slow", "-p", "seconds=30", check=True).stdout.strip()

    def running() -> bool:
        return json.loads(cli(user, server, "show", run_id, "--json").stdout)["state"] == "running"

    wait_until(running, timeout=30, what="the slow run to start")
    cancelled = cli(user, server, "cancel", run_id, "--wait")
    assert cancelled.returncode == 0 and "cancel requested" in cancelled.stdout, cancelled.stdout
    assert json.loads(cli(user, server, "show", run_id, "--json").stdout)["state"] == "cancelled"
    filled = cli(
        user, server, "backfill", "daily", "--from", "2026-03-01", "--to", "2026-03-03", "--max-parallel", "2"
    )
    assert filled.returncode == 0, filled.stdout + filled.stderr
    assert "3 of 3 dates done" in filled.stdout and "3 succeeded" in filled.stdout
    listed = json.loads(cli(user, server, "backfills", "--json", check=True).stdout)
    assert listed[0]["state"] == "succeeded" and listed[0]["total"] == 3


def test_pipelines_schedules_and_schedulers_through_the_server(user: Project, server: ServerProcess) -> None:
    names = [p["name"] for p in json.loads(cli(user, server, "pipelines", "--json", check=True).stdout)]
    assert names == ["daily", "kept", "nightly", "quick", "slow"]
    assert "paused" in cli(user, server, "schedules", "--pause", "nightly", check=True).stdout
    [sched] = json.loads(cli(user, server, "schedules", "--json", check=True).stdout)
    assert sched["pipeline"] == "nightly" and sched["paused"] is True
    cli(user, server, "schedules", "--resume", "nightly", check=True)
    [live] = json.loads(cli(user, server, "schedulers", "--json", check=True).stdout)
    assert live["state"] == "running"


def test_bad_input_through_the_server_is_one_line(user: Project, server: ServerProcess) -> None:
    unknown = cli(user, server, "submit", "nope")
    assert unknown.returncode == 2 and "no pipeline 'nope'; known pipelines: daily" in unknown.stderr
    bad = cli(user, server, "submit", "quick", "-p", "n=many")
    assert bad.returncode == 2 and "n: expected an integer, got 'many'" in bad.stderr, bad.stderr
    gone = user.cli("runs", "--server", f"http://127.0.0.1:{free_port()}")
    assert gone.returncode == 2 and "cannot reach the Conveyor server" in gone.stderr
    assert "Traceback" not in unknown.stderr + bad.stderr + gone.stderr
    nodate = cli(user, server, "backfill", "quick", "--from", "2026-03-01", "--to", "2026-03-02")
    assert nodate.returncode == 2 and "has no parameter 'logical_date'" in nodate.stderr, nodate.stderr
