"""``conveyor pipelines`` and ``backfill`` through the real command (a scheduler drives the
backfill's runs)."""

from __future__ import annotations

import json
import signal

from cli.test_scheduling import PIPELINE, _lines
from conftest import Project


def test_pipelines_lists_the_project_with_parameters_and_schedules(project: Project) -> None:
    missing = project.cli("pipelines")
    assert missing.returncode == 2 and "no conveyor.toml here or above" in missing.stderr
    project.write(
        "etl/nightly.py",
        """
        import datetime as dt
        from conveyor import pipeline, task

        @task
        def load(day: dt.date) -> None:
            pass

        @pipeline(schedule="0 2 * * *", timezone="Europe/Berlin", catchup=True)
        def nightly(logical_date: dt.date = dt.date(2026, 1, 1), full: bool = False):
            \"\"\"Load yesterday's orders.\"\"\"
            load(logical_date)
        """,
    )
    project.write("pipes.py", PIPELINE)
    project.write("conveyor.toml", '[project]\npipelines = ["etl/nightly.py", "pipes.py:wide"]\n')
    listed = json.loads(project.cli("pipelines", "--json", check=True).stdout)
    assert [p["name"] for p in listed] == ["nightly", "wide"]
    sched = listed[0]["schedule"]
    assert (sched["cron"], sched["timezone"], sched["catchup"], sched["paused"]) == (
        "0 2 * * *",
        "Europe/Berlin",
        True,
        False,
    )
    assert sched["next_tick"].endswith("T01:00:00Z")  # 02:00 in Berlin, in winter
    assert listed[1]["schedule"] is None
    assert listed[0]["params"][1] == {
        "name": "full",
        "type": "bool",
        "required": False,
        "default": False,
        "choices": None,
    }
    assert listed[0]["description"] == "Load yesterday's orders."
    text = project.cli("pipelines", check=True).stdout
    assert "0 2 * * * (Europe/Berlin, catchup)" in text and "n: int = 12" in text
    bad = project.cli("scheduler", "--project", str(project.root / "nowhere"))
    assert bad.returncode == 2 and "no conveyor.toml in" in bad.stderr


def test_backfill_runs_each_date_once_and_again_does_nothing(project: Project) -> None:
    project.write(
        "etl.py",
        """
        import datetime as dt
        from conveyor import pipeline, task

        @task
        def load(day: dt.date, table: str) -> None:
            with open("side.txt", "a") as f:
                f.write(f"{day.day}\\n")

        @pipeline
        def nightly(logical_date: dt.date = dt.date(2026, 1, 1), table: str = "orders"):
            load(logical_date, table)
        """,
    )
    project.write("conveyor.toml", '[project]\npipelines = ["etl.py"]\n')
    sched = project.popen("scheduler", "--name", "bf", "--workers", "1", "--poll", "0.1")
    try:
        args = ("backfill", "nightly", "--from", "2026-11-01", "--to", "2026-11-05", "-p", "table=sales")
        first = project.cli(*args, "--max-parallel", "2")
        assert first.returncode == 0, first.stdout + first.stderr
        assert "5 dates from 2026-11-01 00:00 to 2026-11-05 00:00" in first.stdout
        assert "5 of 5 dates done" in first.stdout and "5 succeeded" in first.stdout
        assert _lines(project) == [1, 2, 3, 4, 5]
        runs = json.loads(project.cli("runs", "--json", check=True).stdout)
        assert sorted(r["params"]["logical_date"] for r in runs) == [f"2026-11-0{d}" for d in range(1, 6)]
        assert {r["params"]["table"] for r in runs} == {"sales"}
        again = project.cli(*args)
        assert again.returncode == 0 and "5 already done" in again.stdout and "5 skipped" in again.stdout
        assert _lines(project) == [1, 2, 3, 4, 5]  # nothing ran again
        assert len(json.loads(project.cli("runs", "--json", check=True).stdout)) == 5
    finally:
        sched.send_signal(signal.SIGTERM)
        sched.communicate(timeout=30)
    bad = project.cli("backfill", "nightly", "--from", "2026-11-05", "--to", "2026-11-01")
    assert bad.returncode == 2 and "--to 2026-11-01 is before --from 2026-11-05" in bad.stderr
    unknown = project.cli("backfill", "weekly", "--from", "2026-11-01", "--to", "2026-11-02")
    assert unknown.returncode == 2 and "no pipeline 'weekly'; known pipelines: nightly" in unknown.stderr
    baddate = project.cli("backfill", "nightly", "--from", "yesterday", "--to", "2026-11-02")
    assert baddate.returncode == 2 and "--from 'yesterday' is not a date" in baddate.stderr
