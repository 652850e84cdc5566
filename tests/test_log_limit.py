"""Attempts' logs are cut at their limit while the task goes on (``conveyor run`` with a small
``CONVEYOR_LOG_LIMIT`` or ``[logs] limit``: a function's prints, a shell command's output), and
pruned (``conveyor logs prune``) once their runs ended long enough ago."""

from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from conftest import Project
from conveyor.store import open_store

KiB = 1024

PIPES = """
import sys
from conveyor import pipeline, shell, task

@task
def chatty(n: int) -> str:
    for i in range(n):
        print(f"line {i:06d} " + "x" * 88)
    print("still going", file=sys.stderr)
    return "done"

loud = shell(
    "i=0; while [ $i -lt {n} ]; do echo shell line $i xxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxxx; "
    "i=$((i+1)); done; echo shell done",
    name="loud",
    params={"n": int},
)

@pipeline
def talk(n: int = 20000):
    chatty(n)
    loud(n)
"""


def _logs(project: Project) -> dict[str, bytes]:
    """The task's name and its attempt's log, of the latest run."""
    store = open_store(project.db)
    try:
        run = store.list_runs(limit=1)[0]
        assert run.state == "succeeded", run.error
        names = {i.id: i.task for i in store.instances(run.id)}
        return {names[a.instance_id]: Path(a.log_path or "").read_bytes() for a in store.attempts(run.id)}
    finally:
        store.close()


@pytest.mark.parametrize("where", ["environment", "conveyor.toml"])
def test_a_task_printing_past_the_limit_is_cut_with_one_marker_and_goes_on(
    project: Project, monkeypatch: pytest.MonkeyPatch, where: str
) -> None:
    project.write("talk.py", PIPES)
    if where == "environment":
        monkeypatch.setenv("CONVEYOR_LOG_LIMIT", "64 KiB")
    else:
        project.write("conveyor.toml", '[project]\npipelines = ["talk.py"]\n[logs]\nlimit = "64KiB"\n')
    project.cli("run", "talk.py:talk", check=True)  # about 2 MB printed by each task
    logs = _logs(project)
    marker = b"[conveyor: log cut at 64 KiB; the task went on]\n"
    for task in ("chatty", "loud"):
        log = logs[task]
        assert log.endswith(marker) and log.count(b"[conveyor: log cut") == 1, log[-300:]
        assert 64 * KiB <= len(log) <= 64 * KiB + len(marker) + 1
        assert log.startswith(b"line 000000 " if task == "chatty" else b"shell line 0 ")
    assert b"still going" not in logs["chatty"] and b"shell done" not in logs["loud"]  # past the cut


@pytest.mark.parametrize(
    "setting, error",
    [
        (
            '[logs]\nlimit = "lots"\n',
            '[logs] limit: \'lots\' is not a size; write it like "64 KiB" or "100 MiB"',
        ),
        ("[logs]\nkeep_days = -1\n", "[logs] keep_days: -1 must be a number of days above 0, like 30"),
    ],
)
def test_a_bad_setting_is_one_line(project: Project, setting: str, error: str) -> None:
    project.write("talk.py", PIPES)
    project.write("conveyor.toml", '[project]\npipelines = ["talk.py"]\n' + setting)
    run = project.cli("run", "talk.py:talk", "-p", "n=1")
    assert run.returncode == 2
    [line] = run.stderr.strip().splitlines()
    assert line == f"Error: {project.root / 'conveyor.toml'}: {error}"


def test_prune_deletes_the_logs_of_runs_that_ended_before_the_cutoff(project: Project) -> None:
    project.write("talk.py", PIPES)
    project.cli("run", "talk.py:talk", "-p", "n=3", check=True)
    project.cli("run", "talk.py:talk", "-p", "n=4", check=True)
    store = open_store(project.db)
    try:
        old, new = sorted(store.list_runs(limit=2), key=lambda r: r.created_at)
        old_logs = [Path(a.log_path or "") for a in store.attempts(old.id)]
        new_logs = [Path(a.log_path or "") for a in store.attempts(new.id)]
    finally:
        store.close()
    folder = old_logs[0].parent.parent  # the run's: its workers' logs are there too
    gone = [p for p in folder.rglob("*") if p.is_file()]
    size = sum(p.stat().st_size for p in gone)
    long_ago = time.time() - 40 * 86400
    for p in old_logs:  # the old run ended 40 days ago
        os.utime(p, (long_ago, long_ago))
    _ended_at(project, old.id, long_ago)

    out = project.cli("logs", "prune", "--older-than", "30d", check=True).stdout
    shown = f"{size} bytes" if size < 1024 else f"{size / 1024:.1f}".removesuffix(".0") + " KiB"
    assert f"Removed {len(gone)} log files ({shown}) of 1 run that ended over 30 days ago." in out
    assert not folder.exists() and all(p.exists() for p in new_logs)
    again = project.cli("logs", "prune", "--older-than", "30d", check=True).stdout
    assert "Removed 0 log files (0 bytes) of 0 runs" in again
    # [logs] keep_days is the default age; without either, a one-line error says what to give
    project.write("conveyor.toml", '[project]\npipelines = ["talk.py"]\n[logs]\nkeep_days = 0.00001\n')
    assert "of 1 run that ended over" in project.cli("logs", "prune", check=True).stdout
    assert not any(p.exists() for p in new_logs)
    project.write("conveyor.toml", '[project]\npipelines = ["talk.py"]\n')
    missing = project.cli("logs", "prune")
    assert missing.returncode == 2
    assert (
        missing.stderr.strip()
        == "Error: how old? give --older-than 30d, or set [logs] keep_days in conveyor.toml"
    )
    bad = project.cli("logs", "prune", "--older-than", "soon")
    assert bad.returncode == 2 and "--older-than: 'soon' is not an age; write it like 30d" in bad.stderr


def _ended_at(project: Project, run_id: str, when: float) -> None:
    import sqlite3

    with sqlite3.connect(project.db.removeprefix("sqlite:///")) as db:
        db.execute("UPDATE runs SET ended_at = ? WHERE id = ?", (when, run_id))
