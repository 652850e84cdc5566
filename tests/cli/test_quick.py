"""``conveyor run`` started without Typer, SQLAlchemy or pydantic (``cli/quick.py``, ``store/lite.py``)."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import typer.main

from conftest import Project
from conveyor.cli import quick
from conveyor.cli.app import app

pytestmark = pytest.mark.timeout(180)

#: What ``conveyor run`` does not use; importing one costs more than running a small pipeline.
HEAVY = ("sqlalchemy", "alembic", "pydantic", "fastapi", "uvicorn", "typer")

TINY = """
from conveyor import pipeline, task

@task
def one() -> None:
    pass

@pipeline
def tiny() -> None:
    one()
"""

RUN = """
import json, sys
sys.argv = ["conveyor", *sys.argv[1:]]
from conveyor.cli import main
try:
    main()
except SystemExit as exc:
    code = exc.code
print("MODULES " + json.dumps({"code": code, "modules": sorted({m.split(".")[0] for m in sys.modules})}))
"""


def run_and_list_modules(project: Project, *args: str) -> tuple[int, set[str]]:
    proc = subprocess.run(
        [sys.executable, "-c", RUN, *args],
        cwd=project.root,
        env=project.env(),
        capture_output=True,
        text=True,
        timeout=120,
    )
    line = next(ln for ln in proc.stdout.splitlines() if ln.startswith("MODULES "))
    got = json.loads(line[len("MODULES ") :])
    return got["code"], set(got["modules"])


def test_conveyor_run_imports_nothing_it_does_not_use(project: Project) -> None:
    project.write("tiny.py", TINY)
    code, modules = run_and_list_modules(project, "run", "tiny.py:tiny")  # a new store
    assert code == 0 and not modules & set(HEAVY), modules & set(HEAVY)
    assert (project.root / ".conveyor" / "conveyor.db").exists()
    code, modules = run_and_list_modules(project, "run", "tiny.py:tiny", "-w", "1")  # an existing one
    assert code == 0 and not modules & set(HEAVY), modules & set(HEAVY)
    runs = project.cli("runs", check=True).stdout
    assert runs.count("succeeded") == 2


def test_it_reads_the_options_of_the_typer_command() -> None:
    command = typer.main.get_command(app).commands["run"]  # type: ignore[attr-defined]
    options = {opt: p.name for p in command.params if p.param_type_name == "option" for opt in p.opts}
    assert options == {opt: name for opt, (name, _) in quick.OPTIONS.items()}


@pytest.mark.parametrize(
    ("args", "expected"),
    [
        (["p.py:x"], {"target": "p.py:x"}),
        (
            ["-p", "day=1", "p.py:x", "--param=n=2", "-pm=3", "--force", "--new"],
            {"target": "p.py:x", "param": ["day=1", "n=2", "m=3"], "force": True, "new": True},
        ),
        (
            ["p.py:x", "-w2", "--workers", "3", "-r", "gpu=1", "--grace", "0.5", "--db", "sqlite:///a.db"],
            {"target": "p.py:x", "workers": 3, "resource": ["gpu=1"], "grace": 0.5, "db": "sqlite:///a.db"},
        ),
    ],
)
def test_what_it_reads(args: list[str], expected: dict[str, object]) -> None:
    assert quick.parse(args) == expected


@pytest.mark.parametrize(
    "args",
    [
        [],
        ["--help"],
        ["p.py:x", "q.py:y"],
        ["p.py:x", "--workers", "0"],
        ["p.py:x", "--workers", "two"],
        ["p.py:x", "--grace"],
        ["p.py:x", "--force=yes"],
        ["p.py:x", "--bogus"],
        ["--", "p.py:x"],
    ],
)
def test_anything_else_is_left_to_typer(args: list[str]) -> None:
    assert quick.parse(args) is None


def test_typer_still_answers_what_it_does_not_read(project: Project) -> None:
    proc = project.cli("run", "p.py:x", "--workers", "0")
    assert proc.returncode == 2 and "--workers" in proc.stderr
