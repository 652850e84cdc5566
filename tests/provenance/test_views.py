"""The run record where people look: ``conveyor show`` has a Provenance section, the API a
``provenance`` field on the run and ``GET /runs/RUN/provenance``: commit, environment, and per
task instance its inputs' fingerprints (an upstream's target by content hash, its returned
value) and its outputs' hashes."""

from __future__ import annotations

import hashlib
import subprocess

import pytest
from fastapi.testclient import TestClient

from conveyor.api import create_app
from conveyor.service import Service
from conveyor.store import open_store
from provenance.recorded import Recorded

pytestmark = pytest.mark.slow


def test_show_has_a_provenance_section(recorded: Recorded) -> None:
    done = recorded.cli("show", recorded.demo)
    assert done.returncode == 0, done.stderr
    commit = subprocess.run(
        ["git", "rev-parse", "HEAD"], cwd=recorded.root, capture_output=True, text=True, check=True
    ).stdout.strip()
    section = done.stdout.split("Provenance\n", 1)[1]
    assert f"commit    {commit}  (clean)" in section  # its outputs, untracked, leave it clean
    assert "(distributions)" in section and "python    3." in section
    report = next(p for p in (recorded.root / "demo-output" / "report").glob("*.png"))
    sha = hashlib.sha256(report.read_bytes()).hexdigest()
    assert "output    report(end=" in section and f"{report.name} {sha[:16]}" in section
    dump = next((recorded.root / "demo-output" / "dumps").glob("*.csv"))
    dump_sha = hashlib.sha256(dump.read_bytes()).hexdigest()[:16]
    assert f"<- dump_sales(day={dump.stem.removeprefix('sales-')}, db=" in section
    assert f"demo-output/dumps/{dump.name} {dump_sha}" in section  # the input, by content


def test_show_lists_a_declared_external_input_by_content(recorded: Recorded) -> None:
    done = recorded.cli("show", recorded.noisy)
    external = recorded.root.parent / "external.txt"
    sha = hashlib.sha256(b"first\n").hexdigest()[:16]
    assert f"input     reader() <- inputs=: {external} {sha}" in done.stdout


def test_the_api_gives_the_record(recorded: Recorded) -> None:
    store = open_store(f"sqlite:///{recorded.db}")
    try:
        with TestClient(create_app(Service(store, None)), base_url="http://127.0.0.1") as http:
            record = http.get(f"/api/v1/runs/{recorded.demo}/provenance").json()
            run = http.get(f"/api/v1/runs/{recorded.demo}").json()
            assert http.get("/api/v1/runs/nosuchrun/provenance").status_code == 404
    finally:
        store.close()
    assert run["provenance"] == record
    assert len(record["commit"]) == 40 and record["diff"] is None and record["env_kind"] == "distributions"
    assert record["commit_time"] is not None
    labels = {t["id"]: t["label"] for t in run["tasks"]}
    backups = [iid for iid in record["inputs"] if labels[iid].startswith("backup_dump(")]
    assert len(backups) == 2
    (dump_csv, returned) = record["inputs"][backups[0]]
    assert dump_csv["from"].startswith("dump_sales(") and dump_csv["target"].endswith(".csv")
    assert len(dump_csv["sha256"]) == 64 and returned["result"] is True
    creators = [iid for iid, label in labels.items() if label == "create_production_db()"]
    assert creators[0] in record["results"]  # the value it returned, by hash
