"""Real Luigi task classes (``shop_tasks``, written in Luigi's own idiom) run unchanged through
``conveyor run luigi:...``: the same files with the same contents and the same failures as
``luigi.build(local_scheduler=True)`` gives; a re-run does only what is not done; a SIGKILL
mid-run loses nothing; a backfill over old dates runs every date."""

from __future__ import annotations

import collections
import os
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import pytest

HERE = Path(__file__).parent
DAY = "2019-04-26"
ALL_DAILY = {"Lookup", "Extract", "Rates", "Summary", "Broken", "Downstream", "Daily"}


def env(root: Path, **extra: str) -> dict[str, str]:
    out = dict(os.environ)
    out.pop("CONVEYOR_DB", None)
    out.update(CONVEYOR_HOME=str(root / ".conveyor"), COLUMNS="200", PYTHONPATH=str(HERE), **extra)
    return out


def conveyor(root: Path, *args: str) -> subprocess.CompletedProcess[str]:
    root.mkdir(parents=True, exist_ok=True)
    return subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=root,
        env=env(root),
        capture_output=True,
        text=True,
        timeout=180,
    )


def luigi_build(root: Path, expr: str) -> subprocess.CompletedProcess[str]:
    """``luigi.build([expr], local_scheduler=True)`` in ``root``, as a Luigi user runs it."""
    root.mkdir(parents=True, exist_ok=True)
    code = (
        "import datetime, luigi, shop_tasks\n"
        f"r = luigi.build([{expr}], local_scheduler=True, detailed_summary=True)\n"
        "print(r.status.name)\n"
    )
    return subprocess.run(
        [sys.executable, "-c", code], cwd=root, env=env(root), capture_output=True, text=True, timeout=180
    )


def files(root: Path) -> dict[str, str]:
    data = root / "data"
    return {str(p.relative_to(data)): p.read_text() for p in sorted(data.rglob("*")) if p.is_file()}


def effects(root: Path) -> collections.Counter[str]:
    path = root / "effects.log"
    return collections.Counter(path.read_text().split()) if path.exists() else collections.Counter()


def states(root: Path) -> dict[str, str]:
    """Each task instance of the latest run, by its label's task name: its recorded state."""
    with sqlite3.connect(root / ".conveyor" / "conveyor.db") as db:
        (run_id,) = db.execute("SELECT id FROM runs ORDER BY created_at DESC LIMIT 1").fetchone()
        rows = db.execute("SELECT task, state FROM task_instances WHERE run_id = ?", (run_id,)).fetchall()
    out: dict[str, set[str]] = {}
    for task, state in rows:
        out.setdefault(task, set()).add(state)
    return {task: "/".join(sorted(s)) for task, s in out.items()}


@pytest.fixture(scope="module")
def daily(tmp_path_factory: pytest.TempPathFactory) -> dict[str, object]:
    """The Daily pipeline (with its failing branch) once on Luigi, once on Conveyor, then run
    again on Conveyor."""
    base = tmp_path_factory.mktemp("daily")
    expr = f"shop_tasks.Daily(date=datetime.date.fromisoformat({DAY!r}), with_broken=True)"
    on_luigi = luigi_build(base / "luigi", expr)
    first = conveyor(
        base / "conveyor", "run", "luigi:shop_tasks.Daily", "-p", f"date={DAY}", "-p", "with_broken=true"
    )
    ran = effects(base / "conveyor")
    first_states = states(base / "conveyor")
    again = conveyor(base / "conveyor", "run", "luigi:shop_tasks.Daily", "-p", f"date={DAY}")
    return {
        "base": base,
        "luigi": on_luigi,
        "first": first,
        "first_states": first_states,
        "ran": ran,
        "again": again,
    }


def test_the_same_files_with_the_same_contents_as_luigi(daily: dict[str, object]) -> None:
    base = daily["base"]
    assert isinstance(base, Path)
    mine, theirs = files(base / "conveyor"), files(base / "luigi")
    assert "2019/04/26/summary.txt" in theirs, "the reference run made its summary"
    assert mine == theirs
    assert daily["ran"] == effects(base / "luigi"), "the same tasks ran, each as often as on Luigi"


def test_the_same_failure_as_luigi_and_its_downstream_is_left_pending(daily: dict[str, object]) -> None:
    on_luigi, first = daily["luigi"], daily["first"]
    assert isinstance(on_luigi, subprocess.CompletedProcess) and isinstance(
        first, subprocess.CompletedProcess
    )
    assert on_luigi.stdout.strip().endswith("FAILED")
    assert "ValueError: no data for east on 2019-04-26" in on_luigi.stderr
    assert first.returncode == 1
    assert "Broken(date=2019-04-26)" in first.stdout
    assert "ValueError: no data for east on 2019-04-26" in first.stdout
    assert daily["first_states"] == {
        "Lookup": "succeeded",
        "Extract": "succeeded",
        # Rates, yielded from Summary.run(), ran inside Summary's attempt: no instance of its own
        "Summary": "succeeded",
        "Broken": "failed",
        "Downstream": "pending",
        "Daily": "pending",
    }


def test_a_second_run_does_only_what_is_not_done(daily: dict[str, object]) -> None:
    again, base = daily["again"], daily["base"]
    assert isinstance(again, subprocess.CompletedProcess) and isinstance(base, Path)
    assert again.returncode == 0, again.stdout + again.stderr
    assert "5 skipped" in again.stdout  # complete(): Daily (a WrapperTask), Summary and its inputs
    assert effects(base / "conveyor") == daily["ran"], "nothing complete ran again"


def test_a_bad_target_is_one_line(tmp_path: Path) -> None:
    for target, says in [
        ("luigi:shop_tasks.Nope", "shop_tasks has no Luigi task class 'Nope'"),
        ("luigi:shop_tasks", "name a Luigi task class as luigi:MODULE.TaskClass"),
        ("luigi:no_such_module.Daily", "no module named no_such_module"),
    ]:
        proc = conveyor(tmp_path, "run", target)
        assert proc.returncode != 0
        assert says in proc.stderr and "Traceback" not in proc.stderr, proc.stderr
    proc = conveyor(tmp_path, "run", "luigi:shop_tasks.Summary")
    assert "missing parameter date (or logical_date)" in proc.stderr and "Traceback" not in proc.stderr


@pytest.mark.slow
def test_sigkill_mid_pipeline_then_run_again_resumes_without_redoing(tmp_path: Path) -> None:
    root = tmp_path / "killed"
    root.mkdir()
    args = [sys.executable, "-m", "conveyor", "run", "luigi:shop_tasks.Daily", "-p", f"date={DAY}"]
    proc = subprocess.Popen(
        [*args, "--workers", "1"],
        cwd=root,
        env=env(root, SHOP_SLOW="0.4"),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 60
    while sum(effects(root).values()) < 2:
        assert proc.poll() is None, "the run ended before the kill point"
        assert time.time() < deadline
        time.sleep(0.01)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    time.sleep(1.0)  # the orphaned worker finishes its attempt and exits
    before = effects(root)
    assert 2 <= sum(before.values()) < 6, "killed mid-pipeline"
    assert not (root / "data/2019/04/26/summary.txt").exists()
    again = conveyor(root, "run", "luigi:shop_tasks.Daily", "-p", f"date={DAY}")
    assert again.returncode == 0, again.stdout + again.stderr
    after = effects(root)
    assert len(after) == 5, f"every task ran: {sorted(after)}"
    redone = sorted(t for t in before if after[t] != before[t])
    assert not redone, f"tasks that had completed ran again: {redone}"
    assert (
        files(root)["2019/04/26/summary.txt"]
        == "2019-04-26 lookup version 2 regions=north,south total=1170.0\n"
    )
    with sqlite3.connect(root / ".conveyor" / "conveyor.db") as db:
        assert db.execute("SELECT count(*) FROM runs").fetchone() == (1,), "the killed run resumed"


@pytest.mark.slow
def test_a_backfill_over_old_dates_runs_every_date(tmp_path: Path) -> None:
    proc = conveyor(
        tmp_path,
        "backfill",
        "luigi:shop_tasks.Summary",
        "--from",
        "2019-04-01",
        "--to",
        "2019-04-10",
        "--max-parallel",
        "2",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "10 succeeded" in proc.stdout
    made = files(tmp_path)
    for day in range(1, 11):
        assert made[f"2019/04/{day:02d}/summary.txt"].startswith(f"2019-04-{day:02d} lookup version 2")


@pytest.mark.slow
def test_a_luigi_range_over_old_dates_runs_every_date_where_luigi_runs_none(tmp_path: Path) -> None:
    start, stop = "2019-04-01", "2019-04-05"
    expr = (
        "shop_tasks.RangeDaily(of=shop_tasks.Summary, "
        f"start=datetime.date.fromisoformat({start!r}), stop=datetime.date.fromisoformat({stop!r}))"
    )
    on_luigi = luigi_build(tmp_path / "luigi", expr)
    assert on_luigi.returncode == 0, on_luigi.stderr
    assert not (tmp_path / "luigi" / "data").exists(), "Luigi's 100-day look-back schedules nothing"
    proc = conveyor(
        tmp_path / "conveyor",
        "run",
        "luigi:shop_tasks.RangeDaily",
        "-p",
        "of=Summary",
        "-p",
        f"start={start}",
        "-p",
        f"stop={stop}",
    )
    assert proc.returncode == 0, proc.stdout + proc.stderr
    made = files(tmp_path / "conveyor")
    assert [d for d in range(1, 8) if f"2019/04/{d:02d}/summary.txt" in made] == [1, 2, 3, 4]  # stop excluded


def test_a_project_lists_a_luigi_class_as_a_pipeline(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text('[project]\npipelines = ["luigi:shop_tasks.Daily"]\n')
    proc = conveyor(tmp_path, "pipelines")
    assert proc.returncode == 0, proc.stderr
    assert "shop_tasks.Daily" in proc.stdout and "luigi:shop_tasks.Daily" in proc.stdout
    assert "with_broken: bool = false" in proc.stdout
