"""One task instance at a time across all runs, through the real command: simultaneous
``conveyor run`` of one pipeline, pipelines sharing a task, a run beside a backfill of the same
date, two schedulers driving runs that share instances, a driver killed again and again, and a
success whose process died before it could say so. Every side effect happens once."""

from __future__ import annotations

import collections
import json
import os
import signal
import subprocess
import sys
import time
import uuid
from typing import Any

import pytest

from conftest import Project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(240)]

PIPELINES = """
    import datetime as dt
    import os, time
    from conveyor import pipeline, task

    def effect(line):
        with open("effects.log", "a") as f:
            f.write(line + "\\n")
            f.flush()
            os.fsync(f.fileno())

    @task
    def fetch(day: dt.date, delay: float = 0.6) -> int:
        time.sleep(delay)
        effect(f"fetch-{day}")
        return day.day

    @task
    def report(n: int) -> int:
        effect(f"report-{n}")
        return n * 2

    @task
    def chart(n: int) -> int:
        effect(f"chart-{n}")
        return n * 3

    @pipeline
    def daily(logical_date: dt.date = dt.date(2026, 11, 1), days: int = 3, delay: float = 0.6):
        for k in range(days):
            report(fetch(logical_date + dt.timedelta(days=k), delay))

    @pipeline
    def charts(logical_date: dt.date = dt.date(2026, 11, 1), days: int = 3, delay: float = 0.6):
        for k in range(days):
            chart(fetch(logical_date + dt.timedelta(days=k), delay))

    @task
    def step(i: int) -> int:
        time.sleep(0.15)
        effect(f"step-{i}")
        return i

    @pipeline
    def steps(n: int = 16):
        for i in range(n):
            step(i)
"""


def effects(project: Project) -> collections.Counter[str]:
    path = project.root / "effects.log"
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def twice(project: Project) -> list[str]:
    return sorted(line for line, n in effects(project).items() if n > 1)


@pytest.fixture
def pipes(project: Project) -> Project:
    project.write("pipes.py", PIPELINES)
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    return project


def start_together(project: Project, commands: list[list[str]]) -> list[subprocess.CompletedProcess[str]]:
    procs = [project.popen(*command) for command in commands]
    out = []
    for proc, command in zip(procs, commands, strict=True):
        stdout, stderr = proc.communicate(timeout=180)
        out.append(subprocess.CompletedProcess(command, proc.returncode, stdout, stderr))
    return out


@pytest.mark.parametrize("n", [2, 10])
def test_simultaneous_runs_of_one_pipeline_execute_every_task_once(pipes: Project, n: int) -> None:
    # long enough that every process has started before the first run could end
    delay = f"delay={0.3 * n}"
    done = start_together(pipes, [["run", "pipes.py:daily", "--workers", "2", "-p", delay]] * n)
    for proc in done:
        assert proc.returncode == 0, proc.stdout + proc.stderr
        assert "succeeded" in proc.stdout
    assert sum(effects(pipes).values()) == 6 and not twice(pipes)
    runs = json.loads(pipes.cli("runs", "--json", check=True).stdout)
    assert len(runs) == 1, "one run: the others followed it"
    following = [p for p in done if "following it" in p.stdout]
    assert len(following) >= n - 1 - sum("Resuming" in p.stdout for p in done)


def test_pipelines_sharing_a_task_wait_for_each_other_and_take_the_outcome(pipes: Project) -> None:
    done = start_together(pipes, [["run", "pipes.py:daily"], ["run", "pipes.py:charts"]])
    for proc in done:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    counts = effects(pipes)
    assert [counts[f"fetch-2026-11-0{d}"] for d in (1, 2, 3)] == [1, 1, 1]
    assert not twice(pipes) and sum(counts.values()) == 9  # 3 fetches, 3 reports, 3 charts
    runs = {r["pipeline"]: r["id"] for r in json.loads(pipes.cli("runs", "--json", check=True).stdout)}
    shown = {p: pipes.cli("show", rid, check=True).stdout for p, rid in runs.items()}
    waits = [p for p, text in shown.items() if "waited for run" in text]
    assert waits, "one run took the other's fetch outcomes"
    other = runs["daily" if waits[0] == "charts" else "charts"]
    assert f"waited for run {other}" in shown[waits[0]]
    # the outcome taken is the other run's result: the downstream got the right values
    detail = json.loads(pipes.cli("show", runs[waits[0]], "--json", check=True).stdout)
    waited = [t for t in detail["tasks"] if t["waited_for"]]
    assert waited and all(t["task"] == "fetch" and t["state"] == "succeeded" for t in waited)


def test_a_run_beside_a_backfill_of_the_same_date(pipes: Project) -> None:
    sched = pipes.popen("scheduler", "--name", "bf", "--workers", "2", "--poll", "0.1")
    try:
        done = start_together(
            pipes,
            [
                # each fetch long enough that the two overlap however slowly each starts
                ["backfill", "daily", "--from", "2026-11-01", "--to", "2026-11-01", "-p", "delay=4"],
                ["run", "pipes.py:daily", "-p", "logical_date=2026-11-01", "-p", "delay=4"],
            ],
        )
    finally:
        sched.send_signal(signal.SIGTERM)
        sched.communicate(timeout=30)
    for proc in done:
        assert proc.returncode == 0, proc.stdout + proc.stderr
    assert sum(effects(pipes).values()) == 6 and not twice(pipes)
    runs = json.loads(pipes.cli("runs", "--json", check=True).stdout)
    assert len(runs) == 2 and {r["state"] for r in runs} == {"succeeded"}


def test_two_schedulers_drive_runs_that_share_instances(pipes: Project, postgres: Any) -> None:
    url = postgres.create_database(f"once_{uuid.uuid4().hex[:10]}")
    for name in ("daily", "charts"):
        pipes.cli("submit", f"pipes.py:{name}", "--db", url, check=True)
    scheds = [
        pipes.popen("scheduler", "--db", url, "--name", f"s{k}", "--workers", "2", "--poll", "0.1")
        for k in (1, 2)
    ]
    try:
        deadline = time.time() + 90
        while time.time() < deadline:
            runs = json.loads(pipes.cli("runs", "--json", "--db", url, check=True).stdout)
            if all(r["state"] in ("succeeded", "failed") for r in runs):
                break
            time.sleep(0.3)
    finally:
        for s in scheds:
            s.send_signal(signal.SIGTERM)
        for s in scheds:
            s.communicate(timeout=30)
    assert [r["state"] for r in runs] == ["succeeded", "succeeded"]
    counts = effects(pipes)
    assert sum(counts.values()) == 9 and not twice(pipes), counts


def test_a_driver_killed_again_and_again_loses_no_completion_and_no_retry(pipes: Project) -> None:
    """Workers outlive a SIGKILL of `conveyor run`: their runners record what they finish, the
    next run adopts it, and a loss caused by the driver's death is not the task's failure."""
    kills = 0
    for delay in (0.35, 0.5, 0.3, 0.6, 0.45, 0.4):
        proc = pipes.popen("run", "pipes.py:steps", "--workers", "2", "-p", "n=30")
        time.sleep(delay)
        if proc.poll() is not None:
            break
        os.kill(proc.pid, signal.SIGKILL)
        proc.communicate(timeout=30)
        kills += 1
    assert kills >= 4
    final = pipes.cli("run", "pipes.py:steps", "--workers", "2", "-p", "n=30")
    assert final.returncode == 0, final.stdout + final.stderr
    time.sleep(0.3)  # orphans of the last kill have finished by now (they were adopted)
    counts = effects(pipes)
    assert not twice(pipes), f"completed tasks ran again: {twice(pipes)}"
    assert set(counts) == {f"step-{i}" for i in range(30)}
    detail = json.loads(pipes.cli("show", final.stdout.split()[2], "--json", check=True).stdout)
    assert all(t["state"] == "succeeded" for t in detail["tasks"])


def test_a_success_nobody_saw_is_shown_not_run_again(pipes: Project) -> None:
    env = pipes.env()
    env["CONVEYOR_FAULT"] = "finished:1"
    killed = subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "pipes.py:daily", "-p", "days=1"],
        cwd=pipes.root,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert killed.returncode == -signal.SIGKILL and "succeeded" not in killed.stdout
    shown = pipes.cli("run", "pipes.py:daily", "-p", "days=1")
    assert shown.returncode == 0, shown.stdout + shown.stderr
    assert "of the same pipeline and parameters succeeded" in shown.stdout
    assert "showing it; use --force to run again" in shown.stdout
    assert sum(effects(pipes).values()) == 2  # nothing ran again
    again = pipes.cli("run", "pipes.py:daily", "-p", "days=1")  # it was seen now: run anew
    assert again.returncode == 0 and "Starting run" in again.stdout
    assert sum(effects(pipes).values()) == 4


def test_when_the_attempt_waited_for_dies_the_waiting_run_executes_the_task(pipes: Project) -> None:
    """The claim is a lease: a holder's death hands the instance to the run that waits."""
    import sqlite3

    first = pipes.popen("run", "pipes.py:daily", "-p", "days=1", "-p", "delay=4")
    db = pipes.root / ".conveyor" / "conveyor.db"
    deadline = time.time() + 60
    owner = None
    while owner is None and time.time() < deadline:
        time.sleep(0.1)
        try:
            with sqlite3.connect(db) as conn:
                row = conn.execute("SELECT owner FROM claims WHERE state = 'running'").fetchone()
        except sqlite3.OperationalError:
            continue  # not created yet
        owner = row[0] if row else None
    assert owner is not None, "the first run's runner claimed fetch"
    second = pipes.popen("run", "pipes.py:charts", "-p", "days=1", "-p", "delay=4")
    time.sleep(1.0)  # the second run's runner waits for the first's fetch
    workers = subprocess.run(["pgrep", "-P", str(first.pid)], capture_output=True, text=True).stdout.split()
    assert workers, "the first run's worker processes"
    for pid in workers:  # the first run's workers, one of them mid-attempt
        os.kill(int(pid), signal.SIGKILL)
    out2, err2 = second.communicate(timeout=90)
    assert second.returncode == 0, out2 + err2
    out1, err1 = first.communicate(timeout=90)
    assert first.returncode == 0, out1 + err1
    assert effects(pipes)["fetch-2026-11-01"] == 1  # executed once, after the death
    runs = {r["pipeline"]: r["id"] for r in json.loads(pipes.cli("runs", "--json", check=True).stdout)}
    shown = {p: pipes.cli("show", rid, check=True).stdout for p, rid in runs.items()}
    # whichever run claimed the instance again executed it; the other waited and took its outcome
    assert (f"waited for run {runs['daily']}" in shown["charts"]) != (
        f"waited for run {runs['charts']}" in shown["daily"]
    ), shown


def test_an_orphaned_worker_records_the_attempt_it_finishes_and_the_jobs_it_never_starts(
    pipes: Project,
) -> None:
    """`conveyor run` is killed while its workers run attempts: each worker finishes its attempt
    and records its end itself, before any resume; what was queued for it is recorded as never
    started; the resumed run adopts both without counting a loss."""
    import sqlite3

    proc = pipes.popen("run", "pipes.py:daily", "-p", "days=4", "-p", "delay=1.5", "--workers", "2")
    db = pipes.root / ".conveyor" / "conveyor.db"
    deadline = time.time() + 60
    while time.time() < deadline:
        time.sleep(0.1)
        try:
            with sqlite3.connect(db) as conn:
                (running,) = conn.execute("SELECT count(*) FROM attempts WHERE state = 'running'").fetchone()
        except sqlite3.OperationalError:
            continue
        if running >= 2:
            break
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.communicate(timeout=30)
    time.sleep(2.5)  # the orphans finish their 1.5 s fetches
    with sqlite3.connect(db) as conn:
        ended = conn.execute("SELECT count(*) FROM attempts WHERE state = 'succeeded'").fetchone()[0]
    assert ended >= 2, "the orphaned workers recorded the attempts they finished"
    assert effects(pipes)["fetch-2026-11-01"] == 1
    resumed = pipes.cli("run", "pipes.py:daily", "-p", "days=4", "-p", "delay=1.5", "--workers", "2")
    assert resumed.returncode == 0, resumed.stdout + resumed.stderr
    assert not twice(pipes), twice(pipes)
    assert sum(effects(pipes).values()) == 8
    with sqlite3.connect(db) as conn:
        (counted,) = conn.execute("SELECT coalesce(sum(lost), 0) FROM task_instances").fetchone()
    assert counted == 0, "no loss counted against a task"
