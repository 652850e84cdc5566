"""Batch engines (``conveyor.executors.batch``): the runner as a command, and what a new owner does
with jobs its engine still holds. The engine is the tests' third-party plugin (``plugin/``): each
attempt a process, held in a folder of job files as a cluster holds its jobs. The executor
contract suite runs on it too (``test_contract.py``, engine ``procs``)."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from api.live import ServerProcess, start_server, wait_until
from conftest import Project
from conveyor.executors.command import CANNOT_BEGIN, decode_job, encode_job
from conveyor.runner import Job
from conveyor.store import open_store
from conveyor.store.records import Holder
from engines import start_engine

PIPELINE = """
    import time
    from conveyor import pipeline, task

    @task
    def once() -> str:
        with open("effects.log", "a") as f:
            f.write("once\\n")
        time.sleep(1)
        return "done"

    @pipeline
    def queued():
        once()
"""


def test_a_job_travels_as_one_word_and_comes_back_whole() -> None:
    holder = Holder("20261207-000000-abcdef", 2, "host:12", 99.5, "succeeded", "/r.json")
    job = Job("run", "inst", 3, "/l.log", "/art", {"x": "ref"}, "p.py:main", {"n": "5"}, "/w", holder, True)
    word = encode_job(job)
    assert word.isascii() and " " not in word and "\n" not in word
    assert decode_job(word) == job


def test_the_runner_command_without_its_job_says_so_in_one_line_and_exits_3(tmp_path: Path) -> None:
    env = {"PATH": os.environ["PATH"], "CONVEYOR_JOB": "not a job"}
    command = [sys.executable, "-m", "conveyor.executors.runjob"]
    proc = subprocess.run(command, env=env, capture_output=True, text=True, cwd=tmp_path)
    assert proc.returncode == CANNOT_BEGIN
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and "cannot begin" in lines[0] and "CONVEYOR_JOB" in lines[0], proc.stderr


@pytest.fixture
def served(project: Project) -> Iterator[tuple[Project, ServerProcess]]:
    project.write("pipes.py", PIPELINE)
    with start_engine("procs", project.root):
        server = start_server(project)
        try:
            project.write(
                "conveyor.toml",
                f"""
                [executor]
                api = "{server.url}"
                [executor.procs]
                delay = 8
                folder = "{project.root / "jobs"}"
                """,
            )
            yield project, server
        finally:
            server.stop()


@pytest.mark.slow
@pytest.mark.timeout(240)
def test_a_job_still_queued_in_its_engine_is_adopted_by_the_next_owner_not_submitted_again(
    served: tuple[Project, ServerProcess],
) -> None:
    project, _server = served
    first = project.popen("run", "pipes.py:queued", "--executor", "procs")
    jobs = project.root / "jobs"
    wait_until(lambda: list(jobs.glob("*.json")), timeout=60, what="the job handed to the engine")
    first.send_signal(signal.SIGKILL)  # the owner dies while its job waits in the engine's queue
    first.wait()
    time.sleep(4)  # longer than an adopted attempt may stay silent before it counts as lost

    again = project.cli("run", "pipes.py:queued", "--executor", "procs", timeout=180)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "Resuming" in again.stdout
    assert (project.root / "effects.log").read_text().split() == ["once"], "the job ran twice"
    store = open_store(project.db)
    (run,) = store.list_runs()
    (attempt,) = store.attempts(run.id)
    assert (attempt.number, attempt.state) == (1, "succeeded")
    assert attempt.placement and attempt.placement.startswith("running as pid"), attempt
    assert not list(jobs.glob("*.json")), "the ended job was not cleaned up"
    shown = project.cli("show", run.id, check=True).stdout
    assert "WHERE" in shown and attempt.placement in shown, shown
