"""``conveyor htcondor submit-file``: what a run would submit, printed for review without a schedd."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

htcondor2 = pytest.importorskip("htcondor2", reason="pip install -e '.[htcondor]' (the test extra has it)")

ROOT = Path(__file__).parents[2]
DEMO = str(ROOT / "examples/sales/pipeline.py:daily_sales")


def cli(cwd: Path, *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "conveyor", "htcondor", "submit-file", DEMO, *args],
        cwd=cwd, env=dict(os.environ), capture_output=True, text=True, timeout=120,
    )  # fmt: skip


def test_submit_file_prints_a_parseable_description_per_task_with_the_teams_group(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text(
        '[executor.htcondor]\ngroups = { analytics = "group_phys.ana" }\n'
    )
    proc = cli(tmp_path, "-p", "days=1", "--team", "analytics")
    assert proc.returncode == 0, proc.stderr
    blocks = proc.stdout.split("# ")[1:]
    assert [b.splitlines()[0].split("(")[0] for b in blocks] == [
        "create_production_db", "dump_sales", "backup_dump", "ingest", "aggregate", "report",
    ]  # fmt: skip
    for block in blocks:
        submit = htcondor2.Submit(block.split("\n", 1)[1])
        assert submit["accounting_group"] == "group_phys.ana"
        assert submit["MY.ConveyorAttempt"].endswith('/1"')
    assert "CONVEYOR_ATTEMPT_TOKEN=" not in proc.stdout


def test_a_bad_setting_is_one_line_and_exit_2(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text('[executor.htcondor]\nschedule = "x"\n')
    proc = cli(tmp_path)
    assert proc.returncode == 2
    assert proc.stderr.strip().splitlines() == [
        "Error: [executor.htcondor] has no setting 'schedule'; the settings are schedd, collector, groups, "
        "user, image, requirements, api, python, folder, poll"
    ]
