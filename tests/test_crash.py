"""SIGKILL of a running ``conveyor run`` at several points, then resume: nothing completed
runs again, nothing is lost, and no half-written target counts as done."""

from __future__ import annotations

import collections
import json
import os
import signal
import sqlite3
import time
from pathlib import Path

import pytest

from conftest import Project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

N = 12
PIPELINE = f"""
    import os, time
    from conveyor import task, pipeline, output, FileTarget

    def effect(name):
        with open("effects.log", "a") as f:
            f.write(name + "\\n")
            f.flush()
            os.fsync(f.fileno())

    @task(output="out/extract-{{i}}.txt")
    def extract(i: int) -> None:
        with output().open("w") as f:
            f.write("begin ")
            time.sleep(0.04)
            f.write(f"complete {{i}}")
        effect(f"extract-{{i}}")

    @task
    def transform(i: int, src: FileTarget) -> int:
        time.sleep(0.03)
        effect(f"transform-{{i}}")
        return len(src.read_text())

    @task(output="out/load.txt")
    def load() -> None:
        effect("load")
        output().write_text("complete load")

    @pipeline
    def crashy():
        parts = [transform(i, extract(i)) for i in range({N})]
        load(after=parts)
"""
EXPECTED = {f"extract-{i}" for i in range(N)} | {f"transform-{i}" for i in range(N)} | {"load"}


def effects(project: Project) -> collections.Counter[str]:
    path = project.root / "effects.log"
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def recorded(project: Project) -> tuple[str, dict[str, str]]:
    """The run id and each task instance's recorded state, read straight from the store file."""
    with sqlite3.connect(project.root / ".conveyor" / "conveyor.db") as db:
        (run_id,) = db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
        rows = db.execute(
            "SELECT task, params, state FROM task_instances WHERE run_id = ?", (run_id,)
        ).fetchall()
    states = {}
    for task, params, state in rows:
        i = json.loads(params).get("i")
        states[task if i is None else f"{task}-{i}"] = state
    return run_id, states


def crash(project: Project, *, after_effects: int | None = None, fault: str | None = None) -> None:
    env = project.env()
    if fault:
        env["CONVEYOR_FAULT"] = fault
    import subprocess
    import sys

    proc = subprocess.Popen(
        [sys.executable, "-m", "conveyor", "run", "crashy.py:crashy", "--workers", "2"],
        cwd=project.root,
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    if after_effects is not None:
        deadline = time.time() + 60
        while sum(effects(project).values()) < after_effects:
            assert proc.poll() is None, "the run ended before the kill point"
            assert time.time() < deadline
            time.sleep(0.005)
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=60)
    assert proc.returncode == -signal.SIGKILL, f"expected a SIGKILL, got exit {proc.returncode}"
    time.sleep(0.5)  # orphaned workers finish their attempt, find the pipe closed and exit


def check_resume(project: Project, command: list[str]) -> None:
    run_id, before = recorded(project)
    done_before = {name for name, state in before.items() if state == "succeeded"}
    counts_before = effects(project)
    assert before, "the run was recorded before the kill"
    proc = project.cli(*command)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    run_after, after = recorded(project)
    assert run_after == run_id, "the same run was resumed, not a new one started"
    assert set(after) == EXPECTED and set(after.values()) <= {"succeeded", "skipped"}
    counts = effects(project)
    assert set(counts) == EXPECTED, f"lost tasks: {EXPECTED - set(counts)}"
    again = sorted(name for name in done_before if counts[name] != counts_before[name])
    assert not again, f"tasks that had completed ran again: {again}"
    for i in range(N):
        assert (project.root / f"out/extract-{i}.txt").read_text() == f"begin complete {i}"
    assert (project.root / "out/load.txt").read_text() == "complete load"


@pytest.fixture
def crashy(project: Project) -> Project:
    project.write("crashy.py", PIPELINE)
    return project


@pytest.mark.parametrize("after_effects", [2, 9, 20])
def test_sigkill_while_tasks_run_then_run_again(crashy: Project, after_effects: int) -> None:
    crash(crashy, after_effects=after_effects)
    check_resume(crashy, ["run", "crashy.py:crashy"])


@pytest.mark.parametrize(
    "fault", ["before-commit:4", "after-commit:4", "after-commit:11", "before-commit:15"]
)
def test_sigkill_while_results_are_recorded_then_retry(crashy: Project, fault: str) -> None:
    crash(crashy, fault=fault)
    run_id, _ = recorded(crashy)
    check_resume(crashy, ["retry", run_id])


def test_a_killed_task_leaves_no_target_that_counts_as_done(crashy: Project) -> None:
    # Kill while extract attempts are between "begin" and "complete".
    crash(crashy, after_effects=1)
    written = [p for p in (crashy.root / "out").iterdir() if not p.name.startswith(".")]
    for path in written:
        assert path.read_text().endswith("complete " + path.stem.split("-")[1]), (
            f"{path.name} is half-written"
        )
    check_resume(crashy, ["run", "crashy.py:crashy"])
    assert not [p for p in Path(crashy.root / "out").iterdir() if ".tmp-" in p.name and p.is_dir()]
