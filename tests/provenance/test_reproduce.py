"""``conveyor reproduce`` through the real command: the demo's run, re-run in a fresh checkout of
its commit, is identical (PNG, CSV, Markdown, tables, returned values); a nondeterministic
pipeline is reported with its first differences (a CSV row, a difference picture) and exit 1;
a differing environment is said before anything runs, and ``--strict`` stops there."""

from __future__ import annotations

import sqlite3
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest

from provenance.recorded import Recorded

pytestmark = pytest.mark.slow


@contextmanager
def _recorded_as(r: Recorded, run_id: str, column: str, value: object) -> Iterator[None]:
    """The run's record with ``column`` set to ``value`` for a while (as if made elsewhere)."""
    with sqlite3.connect(r.db) as con:
        (old,) = con.execute(f"SELECT {column} FROM run_provenance WHERE run_id = ?", (run_id,)).fetchone()
        con.execute(f"UPDATE run_provenance SET {column} = ? WHERE run_id = ?", (value, run_id))
    try:
        yield
    finally:
        with sqlite3.connect(r.db) as con:
            con.execute(f"UPDATE run_provenance SET {column} = ? WHERE run_id = ?", (old, run_id))


def test_the_demo_reproduces_identically(recorded: Recorded) -> None:
    (recorded.root / "sales" / "pipeline.py").write_text("raise SystemExit('edited since')\n")  # not used
    try:
        done = recorded.cli("reproduce", recorded.demo)
    finally:
        (recorded.root / "sales" / "pipeline.py").write_text(
            (Path(__file__).resolve().parents[2] / "examples" / "sales" / "pipeline.py").read_text()
        )
    assert done.returncode == 0, done.stdout + done.stderr
    for name in ("report-", ".png", ".csv", ".md", "sales[day=", "its returned value"):
        assert name in done.stdout
    assert "≠" not in done.stdout and "Identical: run " in done.stdout
    for kind in ("png", "csv", "md"):
        assert "= report(" in done.stdout and f"d.{kind}" in done.stdout


def test_a_nondeterministic_task_is_reported_with_its_first_difference(recorded: Recorded) -> None:
    external = recorded.root.parent / "external.txt"
    external.write_text("second\n")  # a declared input changed since the run: said, before running
    try:
        done = recorded.cli("reproduce", recorded.noisy)
    finally:
        external.write_text("first\n")
    assert done.returncode == 1, done.stdout + done.stderr
    out = done.stdout
    assert "= steady(): noisy-output/steady.csv" in out  # seeded by conveyor.seed(): the same
    assert "≠ table(): noisy-output/table.csv: row 3 differs first (column value)" in out
    assert "original:   2," in out and "reproduced: 2," in out
    assert "≠ picture(): noisy-output/noise.png: " in out and "pixels differ" in out
    picture = Path(out.split("difference picture: ")[1].split()[0])
    assert picture.name == "noise.diff.png" and picture.is_file()
    assert out.index(f"! input {external}: it holds something else since the run") < out.index("re-running")
    assert "≠ reader(): noisy-output/copy.txt: text differs" in out and "+second" in out
    assert "Different: run " in out


def test_a_different_python_is_said_before_running_and_strict_stops(recorded: Recorded) -> None:
    with _recorded_as(recorded, recorded.noisy, "python", "2.7.18"):
        done = recorded.cli("reproduce", "--strict", recorded.noisy)
    assert done.returncode == 2
    assert "Python: the run used 2.7.18, this is " in done.stdout
    assert "re-running" not in done.stdout  # nothing ran
    assert done.stderr.strip().splitlines() == [
        f"Error: run {recorded.noisy}: not reproduced, its environment differs here (--strict)"
    ]


def test_a_run_without_a_commit_cannot_be_reproduced(recorded: Recorded) -> None:
    with _recorded_as(recorded, recorded.noisy, "git_commit", None):
        done = recorded.cli("reproduce", recorded.noisy)
    assert done.returncode == 2
    assert done.stderr.strip().startswith(f"Error: run {recorded.noisy} has no recorded commit")
    assert "Traceback" not in done.stderr
