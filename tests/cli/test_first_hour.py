"""A newcomer's first hour: mistakes refused before any run exists, in one line that says what
to do; a damaged store explained; tables whole when piped; a backfill that needs no scheduler
started by hand and skips the dates whose targets exist."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

import conveyor
from conftest import Project
from conveyor.errors import ParameterError
from conveyor.store import open_store

pytestmark = pytest.mark.timeout(180)


def runs(project: Project) -> list[dict[str, object]]:
    out = project.cli("runs", "--json", check=True).stdout
    return list(json.loads(out))


def refused(proc: subprocess.CompletedProcess[str]) -> str:
    """The one ``Error:`` line of a refused command (exit 2, no traceback)."""
    assert proc.returncode == 2, proc.stdout + proc.stderr
    assert "Traceback" not in proc.stderr, proc.stderr
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("Error: "), proc.stderr
    return lines[0]


def test_a_missing_script_is_refused_before_any_run_exists(project: Project) -> None:
    project.write(
        "p.py",
        """
        from conveyor import pipeline, script

        gone = script("missing.py", name="gone")

        @pipeline
        def p():
            gone()
        """,
    )
    line = refused(project.cli("run", "p.py:p"))
    assert f"task gone: script missing.py does not exist (in {project.root})" in line
    refused(project.cli("submit", "p.py:p"))
    assert runs(project) == []


def test_a_process_local_target_is_refused_naming_its_url(project: Project) -> None:
    project.write(
        "p.py",
        """
        from conveyor import output, pipeline, task

        @task(output="memory://first-hour/{day}.txt")
        def keep(day: str) -> None:
            output().write_text(day)

        @pipeline
        def p(day: str = "d1"):
            keep(day)
        """,
    )
    line = refused(project.cli("run", "p.py:p"))
    assert "target memory://first-hour/d1.txt:" in line and "use a local path or a shared store" in line
    assert runs(project) == []


def test_a_nul_in_a_parameter_is_refused_at_submit(project: Project) -> None:
    project.write(
        "nul.py",
        """
        from pathlib import Path
        from conveyor import pipeline, task

        @task
        def touch(name: str) -> None:
            Path(name).write_text("x")

        @pipeline
        def nul(name: str):
            touch(name)
        """,
    )
    sys.path.insert(0, str(project.root))
    try:
        from nul import nul  # type: ignore[import-not-found]

        with pytest.raises(ParameterError, match=r"parameter 'name': 'a\\x00b' contains a NUL character"):
            conveyor.run(nul, {"name": "a\x00b"})
    finally:
        sys.path.remove(str(project.root))
        sys.modules.pop("nul", None)
    assert runs(project) == []


def test_a_damaged_store_says_what_to_do(project: Project) -> None:
    project.write(
        "p.py",
        """
        from conveyor import pipeline, task

        @task
        def t() -> None:
            pass

        @pipeline
        def p():
            t()
        """,
    )
    project.cli("run", "p.py:p", check=True)
    open_store(project.db).close()
    db = project.root / ".conveyor" / "conveyor.db"
    for side in (db.with_name("conveyor.db-wal"), db.with_name("conveyor.db-shm")):
        side.unlink(missing_ok=True)
    with open(db, "r+b") as f:
        f.truncate(8192)  # a copy cut short
    line = refused(project.cli("runs"))
    assert "database disk image is malformed" in line
    assert f"move it aside (mv {db} {db}.broken)" in line and "restore it from a backup" in line


LONG = "a_pipeline_whose_name_is_longer_than_most_terminals_are_wide_by_itself_alone"


def piped(project: Project, *args: str) -> str:
    """The command's output through a pipe, with no ``$COLUMNS``: as in ``conveyor runs | grep``."""
    env = project.env()
    env.pop("COLUMNS")
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", *args], cwd=project.root, env=env, capture_output=True, text=True
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    return proc.stdout


def test_tables_keep_ids_states_and_names_whole_when_piped(project: Project) -> None:
    project.write(
        "long.py",
        f"""
        import datetime as dt
        from conveyor import pipeline, task

        @task
        def a_task_whose_name_is_long_too(day: dt.date) -> None:
            pass

        @pipeline(schedule="0 3 * * *")
        def {LONG}(logical_date: dt.date = dt.date(2026, 1, 1)):
            a_task_whose_name_is_long_too(logical_date)
        """,
    )
    project.write("conveyor.toml", '[project]\npipelines = ["long.py"]\n')
    project.cli("run", f"long.py:{LONG}", check=True)
    project.cli("backfill", LONG, "--from", "2026-11-01", "--to", "2026-11-02", check=True)
    run = str(runs(project)[0]["id"])
    listed = piped(project, "runs")
    assert LONG in listed and run in listed and "succeeded" in listed
    shown = piped(project, "show", run)
    assert LONG in shown and "a_task_whose_name_is_long_too" in shown and "succeeded" in shown
    backfills = piped(project, "backfills")
    assert LONG in backfills and "succeeded" in backfills and "2026-11-02 00:00" in backfills
    assert LONG in piped(project, "schedules")
    assert "…" not in listed + shown + backfills


def test_a_backfill_needs_no_scheduler_started_by_hand_and_skips_dates_already_made(
    project: Project,
) -> None:
    project.write(
        "etl.py",
        """
        import datetime as dt
        from conveyor import output, pipeline, task

        @task(output="out/{day}.txt")
        def load(day: dt.date) -> None:
            output().write_text(str(day))
            with open("side.txt", "a") as f:
                f.write(f"{day.day}\\n")

        @pipeline
        def nightly(logical_date: dt.date = dt.date(2026, 1, 1)):
            load(logical_date)
        """,
    )
    project.write("conveyor.toml", '[project]\npipelines = ["etl.py"]\n')
    project.write("out/2026-11-02.txt", "made by hand")  # no run of it in the store
    done = project.cli("backfill", "nightly", "--from", "2026-11-01", "--to", "2026-11-03", timeout=90)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "started a scheduler in the background" in done.stderr
    assert "1 already done" in done.stdout and "2 succeeded, 1 skipped" in done.stdout
    assert sorted((project.root / "side.txt").read_text().split()) == ["1", "3"]
    assert (project.root / "out/2026-11-02.txt").read_text() == "made by hand"
