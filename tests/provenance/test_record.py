"""The record taken when a run is created: its commit, and the uncommitted work as one patch
that rebuilds the working copy's code from the commit (outputs written inside the working copy
stay out of it); outside git, a record without a commit."""

from __future__ import annotations

import platform
import subprocess
from pathlib import Path

import pytest

from conveyor.provenance.record import take
from conveyor.provenance.reproduce import checkout


def _git(root: Path, *args: str) -> str:
    return subprocess.run(
        ["git", "-c", "user.email=t@example.com", "-c", "user.name=t", *args],
        cwd=root,
        check=True,
        capture_output=True,
        text=True,
    ).stdout


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    root = tmp_path / "my repo"  # a space in the path: git prints one path a line
    (root / "pipes").mkdir(parents=True)
    (root / "pipes" / "flow.py").write_text("X = 1\n")
    (root / "data.bin").write_bytes(b"\x00\x01")
    _git(root, "init", "-q")
    _git(root, "add", ".")
    _git(root, "commit", "-qm", "first")
    return root


def test_a_clean_working_copy_records_its_commit_and_time(repo: Path) -> None:
    rec = take(str(repo / "pipes"), "r1")
    assert rec.git_commit == _git(repo, "rev-parse", "HEAD").strip()
    assert rec.diff is None and rec.diff_hash is None
    assert rec.source_date_epoch == float(_git(repo, "log", "-1", "--format=%ct").strip())
    assert rec.python == platform.python_version() and rec.env_kind == "distributions"


def test_the_diff_rebuilds_the_working_copys_code_but_not_its_outputs(repo: Path, tmp_path: Path) -> None:
    (repo / "pipes" / "flow.py").write_text("X = 2  # é\n")
    (repo / "pipes" / "helper.py").write_text("Y = 3\n")  # new, not yet added: code
    (repo / "conveyor.toml").write_text("[project]\n")
    (repo / "data.bin").write_bytes(b"\x00\x02\xff")  # a tracked binary file, changed
    (repo / "out").mkdir()
    (repo / "out" / "report.csv").write_text("a,b\n")  # an output: not code
    rec = take(str(repo / "pipes"), "r1")
    assert rec.diff is not None and rec.diff_hash is not None and len(rec.diff_hash) == 64
    assert "report.csv" not in rec.diff
    assert rec.git_commit is not None
    tree = checkout(repo, rec.git_commit, rec.diff, tmp_path / "tree")
    assert (tree / "pipes" / "flow.py").read_text() == "X = 2  # é\n"
    assert (tree / "pipes" / "helper.py").read_text() == "Y = 3\n"
    assert (tree / "conveyor.toml").read_text() == "[project]\n"
    assert (tree / "data.bin").read_bytes() == b"\x00\x02\xff"
    assert not (tree / "out").exists()


def test_outside_git_a_record_has_no_commit(tmp_path: Path) -> None:
    rec = take(str(tmp_path), "r1")
    assert rec.git_commit is None and rec.diff is None and rec.source_date_epoch is None
    assert len(rec.env_hash) == 64
