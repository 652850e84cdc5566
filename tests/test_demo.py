"""The demo ``make demo`` runs (examples/sales), through the real command: its report adds up,
every dumped order line is in the analytics database exactly once, a second run skips it all,
and ``--force`` redoes it without duplicating a row."""

from __future__ import annotations

import csv
import shutil
import sqlite3
from pathlib import Path

import pytest

from conftest import Project

pytestmark = pytest.mark.slow
EXAMPLE = Path(__file__).resolve().parent.parent / "examples" / "sales"


def _counts(db: Path, sql: str) -> dict[str, int]:
    with sqlite3.connect(db) as con:
        return {str(day): int(n) for day, n in con.execute(sql)}


def test_the_demo_ingests_every_line_once_and_its_report_adds_up(project: Project) -> None:
    shutil.copytree(EXAMPLE, project.root / "examples" / "sales")
    first = project.cli("run", "examples/sales/pipeline.py:daily_sales", check=True, timeout=180)
    assert "14 succeeded" in first.stdout
    out = project.root / "demo-output"
    dumps = sorted((out / "dumps").glob("sales-*.csv"))
    assert len(dumps) == 3
    lines = {p.stem.removeprefix("sales-"): sum(1 for _ in csv.DictReader(p.open())) for p in dumps}
    db = out / "analytics" / "analytics.db"
    assert _counts(db, "SELECT day, COUNT(*) FROM sales GROUP BY day") == lines
    assert _counts(db, "SELECT part, row_count FROM conveyor_targets WHERE table_name = 'sales'") == {
        f'{{"day": "{day}"}}': n for day, n in lines.items()
    }
    # the report's total is the sum of the ingested amounts
    (report,) = (out / "report").glob("report-*.csv")
    rows = list(csv.DictReader(report.open()))
    with sqlite3.connect(db) as con:
        cents = con.execute("SELECT SUM(amount_cents) FROM sales").fetchone()[0]
    assert sum(round(float(r["total"]) * 100) for r in rows) == cents

    again = project.cli("run", "examples/sales/pipeline.py:daily_sales", check=True, timeout=180)
    assert "Every task was skipped" in again.stdout
    forced = project.cli("run", "examples/sales/pipeline.py:daily_sales", "--force", check=True, timeout=180)
    assert "14 succeeded" in forced.stdout
    assert _counts(db, "SELECT day, COUNT(*) FROM sales GROUP BY day") == lines
    assert _counts(db, "SELECT day, COUNT(*) FROM daily_sales WHERE sku = 'ALL' GROUP BY day") == {
        day: 1 for day in lines
    }


@pytest.mark.parametrize("engine", ["dask", "ray"])
def test_the_demo_on_an_engine_gives_the_same_report(
    project: Project, tmp_path: Path, engine: str, monkeypatch: pytest.MonkeyPatch
) -> None:
    """`conveyor run examples/sales/pipeline.py:daily_sales --executor dask` (and ray), each engine
    started by Conveyor itself (a LocalCluster, a local Ray): the same report, byte for byte."""
    pytest.importorskip("distributed" if engine == "dask" else "ray")
    monkeypatch.setenv("RAY_AUTH_MODE", "disabled")
    reports = {}
    for where, flags in (("local", ()), (engine, ("--executor", engine))):
        root = tmp_path / where
        shutil.copytree(EXAMPLE, root / "examples" / "sales")
        here = Project(root)
        run = here.cli("run", "examples/sales/pipeline.py:daily_sales", "-p", "end=2026-11-01", *flags)
        assert run.returncode == 0 and "14 succeeded" in run.stdout, run.stdout + run.stderr
        assert run.stderr.strip() == "", run.stderr  # no engine's warnings or tracebacks
        reports[where] = {p.name: p.read_bytes() for p in (root / "demo-output" / "report").iterdir()}
    assert reports[engine] == reports["local"] and len(reports["local"]) == 3
