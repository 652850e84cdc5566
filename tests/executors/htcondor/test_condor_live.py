"""The demo on a real HTCondor pool, when one is configured; skipped otherwise (also in CI: no
HTCondor daemons can run on these machines).

    CONVEYOR_TEST_CONDOR=submit.example              # the schedd's name ("local": this machine's)
    CONVEYOR_TEST_CONDOR_COLLECTOR=cm.example:9618   # optional: the collector that knows it
    CONVEYOR_TEST_CONDOR_API=http://this-host:8080   # optional: the execution API as execute
                                                     # nodes reach it (default: this machine's,
                                                     # enough for a personal condor)

The execute nodes need Conveyor installed for the ``python3`` on their PATH (or set
CONVEYOR_HTCONDOR_PYTHON) and must see this checkout's files (a shared file system, or a
personal condor on this machine: ``apt-get install htcondor`` and ``condor_master``).
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest

SCHEDD = os.environ.get("CONVEYOR_TEST_CONDOR")
ROOT = Path(__file__).parents[3]

pytestmark = [
    pytest.mark.slow,
    pytest.mark.skipif(
        not SCHEDD,
        reason="no HTCondor schedd: set CONVEYOR_TEST_CONDOR to a schedd's name (see this module's doc)",
    ),
]


def test_the_demo_runs_as_htcondor_jobs_and_writes_its_report(tmp_path: Path) -> None:
    env = {**os.environ, "CONVEYOR_HTCONDOR_FOLDER": str(tmp_path / "condor")}
    if SCHEDD and SCHEDD != "local":
        env["CONVEYOR_HTCONDOR_SCHEDD"] = SCHEDD
    if os.environ.get("CONVEYOR_TEST_CONDOR_COLLECTOR"):
        env["CONVEYOR_HTCONDOR_COLLECTOR"] = os.environ["CONVEYOR_TEST_CONDOR_COLLECTOR"]
    if os.environ.get("CONVEYOR_TEST_CONDOR_API"):
        env["CONVEYOR_HTCONDOR_API"] = os.environ["CONVEYOR_TEST_CONDOR_API"]
    target = str(ROOT / "examples/sales/pipeline.py:daily_sales")
    db = f"sqlite:///{tmp_path}/conveyor.db"
    args = ["run", target, "-p", "days=2", "--executor", "htcondor", "--db", db]
    proc = subprocess.run(
        [sys.executable, "-m", "conveyor", *args],
        cwd=tmp_path, env=env, capture_output=True, text=True, timeout=1800,
    )  # fmt: skip
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert list((tmp_path / "demo-output" / "report").glob("report-*.md")), proc.stdout
