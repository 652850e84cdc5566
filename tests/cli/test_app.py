"""The CLI through its real entry point (``python -m conveyor``), as a user types it."""

from __future__ import annotations

import json
import re
import signal
import subprocess
import time

import pytest

from conftest import Project
from conveyor.store.schema import SCHEMA_REVISION

pytestmark = pytest.mark.timeout(180)

PIPELINE = """
    import os
    from datetime import date
    from conveyor import task, pipeline, output, FileTarget

    @task(output="out/{day}.txt")
    def extract(day: date) -> None:
        print("extracting", day)
        output().write_text(str(day))

    @task
    def count(src: FileTarget, n: int) -> int:
        if os.path.exists("break"):
            raise RuntimeError("count is broken")
        return len(src.read_text()) * n

    @pipeline
    def daily(day: date, n: int = 1):
        count(extract(day), n)
"""


@pytest.fixture
def daily(project: Project) -> Project:
    project.write("daily.py", PIPELINE)
    return project


def no_traceback(proc: object) -> None:
    text = getattr(proc, "stdout", "") + getattr(proc, "stderr", "")
    assert "Traceback" not in text, text


def run_id_of(project: Project) -> str:
    runs = json.loads(project.cli("runs", "--json", check=True).stdout)
    return str(runs[0]["id"])


def test_run_succeeds_then_skips_and_says_so(daily: Project) -> None:
    first = daily.cli("run", "daily.py:daily", "-p", "day=2026-11-01")
    assert first.returncode == 0, first.stdout + first.stderr
    assert "succeeded" in first.stdout and "2 succeeded" in first.stdout
    assert (daily.root / "out/2026-11-01.txt").read_text() == "2026-11-01"
    # count has no target, so it runs again; extract is skipped because its target exists.
    again = daily.cli("run", "daily.py:daily", "-p", "day=2026-11-01")
    assert again.returncode == 0 and "1 skipped" in again.stdout


def test_every_task_skipped_is_announced(project: Project) -> None:
    project.write(
        "only.py",
        """
        from conveyor import task, pipeline, output

        @task(output="out/{name}.txt")
        def make(name: str) -> None:
            output().write_text(name)

        @pipeline
        def only():
            make("a")
            make("b")
    """,
    )
    assert project.cli("run", "only.py:only").returncode == 0
    again = project.cli("run", "only.py:only")
    assert again.returncode == 0
    assert "Every task was skipped: its targets exist" in again.stdout


def test_failure_exit_code_show_logs_and_retry(daily: Project) -> None:
    (daily.root / "break").touch()
    failed = daily.cli("run", "daily.py:daily", "-p", "day=2026-11-02", "-p", "n=3")
    assert failed.returncode == 1
    assert "failed" in failed.stdout and "count is broken" in failed.stdout
    no_traceback(failed) if "RuntimeError" not in failed.stdout else None
    run_id = run_id_of(daily)

    shown = json.loads(daily.cli("show", run_id, "--json", check=True).stdout)
    states = {t["task"]: t["state"] for t in shown["tasks"]}
    assert shown["state"] == "failed" and states == {"extract": "succeeded", "count": "failed"}
    assert shown["params"] == {"day": "2026-11-02", "n": 3}
    count = next(t for t in shown["tasks"] if t["task"] == "count")
    assert count["attempt_log"][0]["state"] == "failed" and count["duration"] is not None

    table = daily.cli("show", run_id[:12], check=True).stdout
    assert "count(" in table and "failed" in table

    logs = daily.cli("logs", run_id, "extract", check=True).stdout
    assert "extracting 2026-11-02" in logs
    assert "RuntimeError: count is broken" in daily.cli("logs", run_id, "count", check=True).stdout

    (daily.root / "break").unlink()
    retried = daily.cli("retry", run_id)
    assert retried.returncode == 0, retried.stdout + retried.stderr
    after = json.loads(daily.cli("show", run_id, "--json", check=True).stdout)
    assert after["state"] == "succeeded"
    extract = next(t for t in after["tasks"] if t["task"] == "extract")
    assert extract["attempts"] == 1  # not run again


def test_runs_lists_newest_first(daily: Project) -> None:
    assert daily.cli("runs").stdout.startswith("No runs yet")
    daily.cli("run", "daily.py:daily", "-p", "day=2026-11-03", check=True)
    daily.cli("run", "daily.py:daily", "-p", "day=2026-11-04", check=True)
    runs = json.loads(daily.cli("runs", "--json", check=True).stdout)
    assert [r["params"]["day"] for r in runs] == ["2026-11-04", "2026-11-03"]
    assert all(r["state"] == "succeeded" and r["counts"]["succeeded"] == 2 for r in runs)
    text = daily.cli("runs", check=True).stdout
    assert runs[0]["id"] in text and "daily" in text


@pytest.mark.parametrize(
    "fmt, expect",
    [
        ("text", "extract(day=2026-11-05)"),
        ("dot", "digraph"),
        ("mermaid", "graph LR"),
    ],
)
def test_graph_formats(daily: Project, fmt: str, expect: str) -> None:
    out = daily.cli("graph", "daily.py:daily", "-p", "day=2026-11-05", "--format", fmt, check=True).stdout
    assert expect in out and "count" in out
    assert not (daily.root / "out").exists()  # nothing ran


BAD_PIPELINES = {
    "cycle.py": (
        """
        from conveyor import task, pipeline

        @task
        def a(x: int) -> int:
            return x

        @task
        def b(y: int) -> int:
            return y

        @pipeline
        def p():
            first = a(1)
            second = b(2, after=[first])
            a(1, after=[second])
    """,
        "has a cycle: ",
    ),
    "dupe.py": (
        """
        from conveyor import task, pipeline

        def make(n):
            @task(name="same")
            def f(x: int) -> int:
                return x + n
            return f

        @pipeline
        def p():
            make(1)(1)
            make(2)(2)
    """,
        "two different tasks are named 'same'",
    ),
    "template.py": (
        """
        from conveyor import task, pipeline

        @task(output="out/{dya}.csv")
        def t(day: str) -> None:
            pass

        @pipeline
        def p():
            t("x")
    """,
        "task t: output template 'out/{dya}.csv' uses {dya} which is not a parameter",
    ),
    "badtype.py": (
        """
        from conveyor import task, pipeline

        @task
        def t(n: int) -> None:
            pass

        @pipeline
        def p():
            t("three")
    """,
        "task t: parameter 'n': expected int, got str 'three'",
    ),
    "unknown.py": (
        """
        from conveyor import task, pipeline

        @task
        def t(n: int) -> None:
            pass

        @pipeline
        def p():
            t(m=1)
    """,
        "task t: unknown parameter 'm'",
    ),
}


@pytest.mark.parametrize("name", sorted(BAD_PIPELINES))
def test_bad_definitions_exit_2_with_one_line(project: Project, name: str) -> None:
    source, message = BAD_PIPELINES[name]
    project.write(name, source)
    proc = project.cli("run", f"{name}:p")
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr
    assert proc.stderr.strip().startswith("Error:") and proc.stderr.count("\n") == 1
    if name == "cycle.py":
        assert re.search(
            r"cycle: (a\(x=1\) -> b\(y=2\) -> a\(x=1\)|b\(y=2\) -> a\(x=1\) -> b\(y=2\))", proc.stderr
        )
    no_traceback(proc)


@pytest.mark.parametrize(
    "args, message",
    [
        (["run", "missing.py:p"], "pipeline file missing.py does not exist"),
        (["run", "daily.py:nope"], "daily.py has no pipeline 'nope'; it defines: daily"),
        (["run", "no.such.module:p"], "no module named no.such.module"),
        (["run", "daily.py:daily"], "pipeline daily: missing parameter day: date"),
        (
            ["run", "daily.py:daily", "-p", "day=yesterday"],
            "expected a date like 2026-11-01, got 'yesterday'",
        ),
        (
            ["run", "daily.py:daily", "-p", "day=2026-11-01", "-p", "n=many"],
            "parameter 'n': expected an integer",
        ),
        (["run", "daily.py:daily", "-p", "day"], "parameter 'day' is not name=value"),
        (["run", "daily.py:daily", "-p", "day=2026-11-01", "-p", "colour=red"], "unknown parameter 'colour'"),
        (["run", "daily.py:daily", "-p", "day=2026-11-01", "--db", "nonsense"], "is not a database URL"),
        (
            ["run", "daily.py:daily", "-p", "day=2026-11-01", "--db", "postgresql+nodriver://u:secret@h/db"],
            "cannot open store postgresql+nodriver://u:***@h/db",
        ),
        (["show", "20990101-000000-abcdef"], "no run '20990101-000000-abcdef'"),
        (["logs", "20990101"], "no run '20990101'"),
        (["retry", "20990101"], "no run '20990101'"),
        (
            ["graph", "daily.py:daily", "-p", "day=2026-11-01", "--format", "png"],
            "--format 'png' is not one of",
        ),
        (
            ["run", "daily.py:daily", "-p", "day=2026-11-01", "--resource", "gpu=lots"],
            "must be a whole number",
        ),
    ],
)
def test_bad_input_exits_2_with_a_clear_line(daily: Project, args: list[str], message: str) -> None:
    proc = daily.cli(*args)
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert message in proc.stderr, proc.stderr
    assert "secret" not in proc.stderr
    no_traceback(proc)


def test_resource_larger_than_the_machine_is_refused(project: Project) -> None:
    project.write(
        "gpu.py",
        """
        from conveyor import task, pipeline

        @task(resources={"gpu": 1, "memory": "1TiB"})
        def train() -> None:
            pass

        @pipeline
        def p():
            train()
    """,
    )
    proc = project.cli("run", "gpu.py:p", "--workers", "1")
    assert proc.returncode == 2
    assert "train() asks for memory=1TiB but this machine has" in proc.stderr
    no_traceback(proc)


SLOW = """
    import time
    from conveyor import task, pipeline

    @task
    def nap(i: int) -> None:
        print("napping", flush=True)
        time.sleep(60)

    @task
    def stubborn() -> None:
        while True:
            try:
                time.sleep(60)
            except BaseException:
                pass

    @pipeline
    def slow(stubborn_too: bool = False):
        for i in range(2):
            nap(i)
        if stubborn_too:
            stubborn()
"""


def wait_running(project: Project, proc: subprocess.Popen[str], n: int) -> None:
    deadline = time.time() + 30
    runs = []
    while time.time() < deadline and proc.poll() is None:
        runs = json.loads(project.cli("runs", "--json").stdout or "[]")
        if runs and runs[0]["counts"].get("running", 0) >= n:
            time.sleep(0.3)
            return
        time.sleep(0.2)
    proc.kill()
    out, err = proc.communicate()
    raise AssertionError(f"the run never started its tasks: {runs}\n{out}\n{err}")


def test_ctrl_c_cancels_gracefully(project: Project) -> None:
    project.write("slow.py", SLOW)
    proc = project.popen("run", "slow.py:slow", "--workers", "2")
    wait_running(project, proc, 2)
    started = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=30)
    assert proc.returncode == 130, out + err
    assert time.time() - started < 10
    assert "cancelled" in out
    run = json.loads(project.cli("show", run_id_of(project), "--json", check=True).stdout)
    assert run["state"] == "cancelled"
    assert {t["state"] for t in run["tasks"]} == {"cancelled"}


def test_second_ctrl_c_exits_at_once(project: Project) -> None:
    project.write("slow.py", SLOW)
    proc = project.popen("run", "slow.py:slow", "-p", "stubborn_too=true", "--workers", "3", "--grace", "60")
    wait_running(project, proc, 3)
    proc.send_signal(signal.SIGINT)
    time.sleep(1.0)
    assert proc.poll() is None  # the stubborn task holds the run within its grace period
    started = time.time()
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=20)
    assert proc.returncode == 130, out + err
    assert time.time() - started < 5
    run = json.loads(project.cli("show", run_id_of(project), "--json", check=True).stdout)
    assert run["state"] == "cancelled"


def test_db_upgrade_reports_the_schema(project: Project) -> None:
    out = project.cli("db", "upgrade", check=True).stdout
    assert f"schema {SCHEMA_REVISION}" in out
    assert f"already at schema {SCHEMA_REVISION}" in project.cli("db", "upgrade", check=True).stdout
