"""``conveyor submit``, ``scheduler``, ``schedulers`` and ``show``/``retry`` of submitted runs,
through the real command, on the embedded SQLite store (several schedulers on PostgreSQL and
their failures: tests/test_ha.py)."""

from __future__ import annotations

import json
import signal
import time

from conftest import Project

PIPELINE = """
    import os
    from pathlib import Path

    from conveyor import pipeline, task

    @task
    def work(i: int) -> int:
        if i == 7 and not Path("fixed").exists():
            raise ValueError("seven is not ready")
        with open("side.txt", "a") as f:
            f.write(f"{i}\\n")
        return i * 10

    @task
    def join(g: int, second: int) -> int:
        Path(f"join-{g}.txt").write_text(str(second + 1000))
        return second

    @pipeline
    def wide(n: int = 12, groups: int = 3):
        per = n // groups
        for g in range(groups):
            results = [work(g * per + k) for k in range(per)]
            join(g, results[1], after=results)
"""


NAPS = """
    import time
    from conveyor import pipeline, task

    @task
    def nap(i: int) -> int:
        time.sleep(0.4)  # the run lasts 8 s on one worker: long enough to reach on a loaded machine
        with open("side.txt", "a") as f:
            f.write(f"{i}\\n")
        return i

    @pipeline
    def naps(n: int = 20):
        for i in range(n):
            nap(i)
"""


def _wait_for_lines(project: Project, n: int) -> None:
    deadline = time.time() + 30
    while len(_lines(project)) < n and time.time() < deadline:
        time.sleep(0.05)


def _lines(project: Project) -> list[int]:
    path = project.root / "side.txt"
    return sorted(int(x) for x in path.read_text().split()) if path.exists() else []


def test_a_submitted_run_is_driven_by_a_scheduler(project: Project) -> None:
    project.write("pipes.py", PIPELINE)
    (project.root / "fixed").touch()
    # one component of 13 instances cut into slices of 5: the join needs both earlier slices
    submitted = project.cli("submit", "pipes.py:wide", "-p", "groups=1", "--partition-size", "5", check=True)
    run_id = submitted.stdout.strip()
    shown = json.loads(project.cli("show", run_id, "--json", check=True).stdout)
    assert shown["state"] == "pending"
    assert [(p["size"], p["needs"]) for p in shown["partition_states"]] == [(5, []), (5, []), (3, [0, 1])]
    assert _lines(project) == []
    sched = project.cli("scheduler", "--name", "solo", "--until-idle", check=True)
    assert f"run {run_id} partition 0 (5 tasks): claimed, epoch 1" in sched.stderr
    assert "scheduler solo stopped" in sched.stderr
    assert _lines(project) == list(range(12))  # each task once
    shown = json.loads(project.cli("show", run_id, "--json", check=True).stdout)
    assert shown["state"] == "succeeded"
    assert [(p["state"], p["epoch"], p["takeovers"]) for p in shown["partition_states"]] == [
        ("done", 1, 0)
    ] * 3
    assert (project.root / "join-0.txt").read_text() == "1010"  # work(1)'s result, from partition 0
    text = project.cli("show", run_id, check=True).stdout
    assert "PARTITION" in text and "TAKEOVERS" in text
    listed = json.loads(project.cli("schedulers", "--json", check=True).stdout)
    assert [(s["name"], s["state"], s["leases"]) for s in listed] == [("solo", "stopped", [])]


def test_submit_wait_follows_the_run_and_retry_resubmits_it(project: Project) -> None:
    project.write("pipes.py", PIPELINE)
    sched = project.popen("scheduler", "--name", "daemon", "--poll", "0.1")
    try:
        waited = project.cli("submit", "pipes.py:wide", "--partition-size", "4", "--wait")
        assert waited.returncode == 1, waited.stdout + waited.stderr
        assert "failed" in waited.stdout and "seven is not ready" in waited.stdout
        run_id = waited.stdout.split()[2]
        shown = json.loads(project.cli("show", run_id, "--json", check=True).stdout)
        states = [p["state"] for p in shown["partition_states"]]
        # each group's four works, then its join: work(7) failed, so group 1's join is blocked
        assert states == ["done", "done", "failed", "blocked", "done", "done"]
        assert 7 not in _lines(project)
        (project.root / "fixed").touch()
        retried = project.cli("retry", run_id)
        assert retried.returncode == 0, retried.stdout + retried.stderr
        assert "2 partitions open again" in retried.stdout and "succeeded" in retried.stdout
        assert _lines(project) == list(range(12))  # the succeeded tasks did not run again
        live = json.loads(project.cli("schedulers", "--json", check=True).stdout)
        assert [(s["name"], s["state"]) for s in live] == [("daemon", "running")]
        twin = project.cli("scheduler", "--name", "daemon")
        assert twin.returncode == 2 and "a scheduler named 'daemon' is running" in twin.stderr
    finally:
        sched.send_signal(signal.SIGTERM)
        _, err = sched.communicate(timeout=30)
    assert sched.returncode == 0, err
    assert "scheduler daemon stopped" in err and "Traceback" not in err


def test_a_scheduler_hands_its_partition_over_when_stopped(project: Project) -> None:
    project.write("slow.py", NAPS)
    run_id = project.cli("submit", "slow.py:naps", check=True).stdout.strip()
    first = project.popen("scheduler", "--name", "first", "--workers", "1")
    _wait_for_lines(project, 2)
    first.send_signal(signal.SIGTERM)
    _, err = first.communicate(timeout=30)
    assert first.returncode == 0, err
    assert "partition 0: stopped" in err
    [part] = json.loads(project.cli("show", run_id, "--json", check=True).stdout)["partition_states"]
    assert part["owner"] is None and part["state"] == "open"  # released, not left to expire
    second = project.cli("scheduler", "--name", "second", "--until-idle", check=True)
    assert "claimed, epoch 2" in second.stderr  # at once: no takeover of a lease that had to expire
    assert _lines(project) == list(range(20))
    assert json.loads(project.cli("show", run_id, "--json").stdout)["state"] == "succeeded"


LONG = """
    import time
    from pathlib import Path
    from conveyor import pipeline, task

    @task
    def long() -> str:
        Path("began").touch()
        time.sleep(6)
        with open("side.txt", "a") as f:
            f.write("0\\n")
        return "done"

    @pipeline
    def one():
        long()
"""


def test_a_stopped_scheduler_waits_for_its_running_attempt_and_a_second_signal_leaves_it(
    project: Project,
) -> None:
    project.write("long.py", LONG)
    run_id = project.cli("submit", "long.py:one", check=True).stdout.strip()
    first = project.popen("scheduler", "--name", "first", "--workers", "1", "--poll", "0.1")
    deadline = time.time() + 30
    while not (project.root / "began").exists() and time.time() < deadline:
        time.sleep(0.05)
    first.send_signal(signal.SIGTERM)
    time.sleep(1.5)
    assert first.poll() is None  # the attempt still runs: its scheduler waits for it
    [part] = json.loads(project.cli("show", run_id, "--json", check=True).stdout)["partition_states"]
    assert part["owner"] is None and part["state"] == "open"  # handed over already
    first.send_signal(signal.SIGTERM)  # again: exit now
    _, err = first.communicate(timeout=10)
    assert "waiting for 1 running attempt to end and record it: run " + run_id in err, err
    assert _lines(project) == []  # left running, in its worker
    second = project.cli("scheduler", "--name", "second", "--until-idle", "--poll", "0.1", check=True)
    assert "Traceback" not in second.stderr
    shown = json.loads(project.cli("show", run_id, "--json", check=True).stdout)
    assert shown["state"] == "succeeded"
    [attempt] = shown["tasks"][0]["attempt_log"]  # adopted, never launched again
    assert attempt["state"] == "succeeded"
    assert _lines(project) == [0]


def test_bad_input_to_the_scheduling_commands(project: Project) -> None:
    project.write("pipes.py", PIPELINE)
    url = "postgresql+psycopg://conveyor:s3cret@127.0.0.1:9/nowhere"
    for args in (("submit", "pipes.py:wide"), ("scheduler",), ("schedulers",)):
        out = project.cli(*args, "--db", url)
        assert out.returncode == 2, out.stderr
        assert out.stderr.startswith("Error: ") and len(out.stderr.strip().splitlines()) == 1
        assert "127.0.0.1:9/nowhere" in out.stderr and "s3cret" not in out.stderr
    bad = project.cli("scheduler", "--heartbeat", "2", "--lost-after", "1")
    assert bad.returncode == 2 and "--lost-after must be longer than --heartbeat" in bad.stderr
    missing = project.cli("submit", "pipes.py:nope")
    assert missing.returncode == 2 and "nope" in missing.stderr and "Traceback" not in missing.stderr


def test_cancel_stops_a_submitted_run_and_retry_finishes_it(project: Project) -> None:
    project.write("slow.py", NAPS)
    run_id = project.cli("submit", "slow.py:naps", "--partition-size", "5", check=True).stdout.strip()
    sched = project.popen("scheduler", "--name", "worker", "--workers", "1", "--poll", "0.1")
    try:
        _wait_for_lines(project, 2)
        out = project.cli("cancel", run_id, "--wait")
        assert out.returncode == 0, out.stdout + out.stderr
        assert "cancel requested" in out.stdout
        shown = json.loads(project.cli("show", run_id, "--json", check=True).stdout)
        assert shown["state"] == "cancelled"
        assert {p["state"] for p in shown["partition_states"]} <= {"done", "cancelled"}
        assert len(_lines(project)) < 20  # it stopped early
        assert sched.poll() is None  # the scheduler goes on serving
        again = project.cli("cancel", run_id)
        assert again.returncode == 0 and "already ended: cancelled" in again.stdout
        retried = project.cli("retry", run_id)
        assert retried.returncode == 0, retried.stdout + retried.stderr
        lines = _lines(project)
        assert sorted(set(lines)) == list(range(20)) and len(lines) <= 21  # at most the cancelled one twice
    finally:
        sched.send_signal(signal.SIGTERM)
        sched.communicate(timeout=30)


def test_cancel_asks_the_process_driving_an_embedded_run(project: Project) -> None:
    project.write("slow.py", NAPS)
    proc = project.popen("run", "slow.py:naps", "--workers", "1", "-p", "n=100")
    _wait_for_lines(project, 2)
    [run] = json.loads(project.cli("runs", "--json", check=True).stdout)
    out = project.cli("cancel", run["id"], "--wait")
    assert out.returncode == 0 and f"asked process {proc.pid}" in out.stdout, out.stdout + out.stderr
    proc.communicate(timeout=30)
    assert proc.returncode == 130
    assert json.loads(project.cli("show", run["id"], "--json").stdout)["state"] == "cancelled"
    ended = project.cli("cancel", run["id"])
    assert "already ended" in ended.stdout
