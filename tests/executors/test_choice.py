"""Which executor a run uses and with which settings: conveyor.toml, then CONVEYOR_* variables,
then flags; mistakes are one line naming what to fix."""

from __future__ import annotations

from pathlib import Path

import pytest

from conftest import Project
from conveyor.errors import ExecutorError
from conveyor.executors import load, names
from conveyor.executors.choice import choose

TOML = """
[project]
pipelines = []

[executor]
default = "dask"
api = "http://conveyor.internal:8080"

[executor.dask]
address = "tcp://from-the-file:8786"
workers = 4
"""


def test_the_file_then_the_environment_then_the_flags(tmp_path: Path) -> None:
    (tmp_path / "conveyor.toml").write_text(TOML)
    (tmp_path / "sub").mkdir()
    chosen = choose(root=tmp_path / "sub", environ={})  # found from a folder below the project
    assert chosen.default == "dask" and chosen.api == "http://conveyor.internal:8080"
    assert chosen.of("dask") == {"address": "tcp://from-the-file:8786", "workers": 4}
    env = {"CONVEYOR_DASK_ADDRESS": "tcp://from-env:8786", "CONVEYOR_EXECUTOR": "ray"}
    chosen = choose(root=tmp_path, environ=env)
    assert chosen.default == "ray" and chosen.of("dask")["address"] == "tcp://from-env:8786"
    chosen = choose("dask", address="tcp://from-flag:8786", root=tmp_path, environ=env)
    assert chosen.default == "dask" and chosen.of("dask")["address"] == "tcp://from-flag:8786"


def test_without_a_project_tasks_run_on_local_workers(tmp_path: Path) -> None:
    chosen = choose(root=tmp_path, environ={})
    assert (chosen.default, dict(chosen.settings), chosen.api) == ("local", {}, None)


def test_mistakes_are_one_line(tmp_path: Path) -> None:
    with pytest.raises(ExecutorError, match="needs --executor NAME"):
        choose(address="tcp://somewhere:8786", root=tmp_path, environ={})
    (tmp_path / "conveyor.toml").write_text('[executor]\napi = "conveyor.internal"\n')
    with pytest.raises(ExecutorError, match=r"\[executor\] api must be a server's URL"):
        choose(root=tmp_path, environ={})
    with pytest.raises(ExecutorError, match=r"unknown executor 'nope'; the executors installed are: .*local"):
        load("nope")
    assert {"local", "dask", "ray", "spark"} <= set(names())


def test_bad_choices_on_the_command_line_exit_2_before_any_run(project: Project) -> None:
    project.write(
        "p.py",
        "from conveyor import pipeline, task\n@task\ndef t() -> None: ...\n@pipeline\ndef p():\n    t()\n",
    )
    unknown = project.cli("run", "p.py:p", "--executor", "nope")
    assert unknown.returncode == 2, unknown.stdout + unknown.stderr
    assert "unknown executor 'nope'" in unknown.stderr and "dask" in unknown.stderr
    away = project.cli("run", "p.py:p", "--executor", "dask", "--executor-address", "tcp://127.0.0.1:1")
    assert away.returncode == 2, away.stdout + away.stderr
    lines = [line for line in (away.stdout + away.stderr).splitlines() if line.strip()]
    assert len(lines) == 1 and "tcp://127.0.0.1:1" in lines[0], lines
    runs = project.cli("runs", "--json")
    assert runs.returncode != 0 or runs.stdout.strip() == "[]", runs.stdout  # nothing was written
