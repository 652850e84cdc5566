"""A parameter used in an output template never puts the target outside the template's root:
``conveyor run -p name=../../x`` is refused in one line naming the parameter and the target, and
nothing is written outside the project."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from conftest import Project
from conveyor.errors import ParameterError

PIPES = """
from conveyor import output, pipeline, task

@task(output="out/{name}.txt")
def write(name: str) -> None:
    output().write_text("hello")

@pipeline
def save(name: str = "a"):
    write(name)

@task(output="{name}.txt")
def note(name: str) -> None:
    output().write_text("note")

@pipeline
def flat(name: str = "a"):
    note(name)

@task(output="{to}/copy.txt")
def copy(to: str) -> None:
    output().write_text("copy")

@pipeline
def share(to: str = "shared"):
    copy(to)
"""


def _files(root: Path) -> set[Path]:
    return {p for p in root.rglob("*") if p.is_file() and ".conveyor" not in p.parts}


@pytest.mark.parametrize(
    "pipe, value, why",
    [
        ("save", "../../x", "holds '..'"),
        ("save", "a/../../../x", "holds '..'"),
        ("save", "..", "holds '..'"),
        ("save", "s3://bucket/x", "puts it outside out/"),
        ("flat", "../x", "holds '..'"),
        ("flat", "ABSOLUTE", "puts it outside the working directory"),  # a path outside the project
    ],
)
def test_conveyor_run_refuses_a_parameter_that_takes_an_output_out_of_its_root(
    project: Project, pipe: str, value: str, why: str
) -> None:
    project.write("pipes.py", PIPES)
    outside = project.root.parent
    value = value.replace("ABSOLUTE", str(outside / "escape"))
    before = _files(outside)
    run = project.cli("run", f"pipes.py:{pipe}", "-p", f"name={value}")
    assert run.returncode == 2, run.stdout + run.stderr
    [line] = run.stderr.strip().splitlines()
    task, template = ("write", "out/{name}.txt") if pipe == "save" else ("note", "{name}.txt")
    assert line.startswith(f"Error: task {task}: parameter 'name' = {value!r} {why}: output {template!r}")
    assert _files(outside) == before  # nothing written, in the project or outside it
    assert not (outside / "escape.txt").exists()


def test_names_that_stay_under_the_root_are_written_there(project: Project) -> None:
    project.write("pipes.py", PIPES)
    project.cli("run", "pipes.py:save", "-p", "name=deeper/b..c", check=True)
    assert (project.root / "out" / "deeper" / "b..c.txt").read_text() == "hello"
    project.cli("run", "pipes.py:save", "-p", "name=/abs", check=True)  # below out/ still
    assert (project.root / "out" / "abs.txt").read_text() == "hello"
    # a template whose first folder is a parameter lets it choose the place: a folder anywhere
    elsewhere = project.root.parent / "elsewhere"
    project.cli("run", "pipes.py:share", "-p", f"to={elsewhere}", check=True)
    assert (elsewhere / "copy.txt").read_text() == "copy"
    refused = project.cli("run", "pipes.py:share", "-p", "to=shared/../../up")
    assert refused.returncode == 2 and "parameter 'to' = 'shared/../../up' holds '..'" in refused.stderr


def test_the_rules_of_rendering() -> None:
    from conveyor.targets.templates import render

    day = dt.date(2026, 11, 1)
    assert render("out/{day}/{name}.csv", {"day": day, "name": "a"}, "t") == "out/2026-11-01/a.csv"
    assert render("/data/{name}.csv", {"name": "x/y"}, "t") == "/data/x/y.csv"  # absolute: as it is
    assert render("s3://b/{to}/{day:%Y}.csv", {"to": "p", "day": day}, "t") == "s3://b/p/2026.csv"
    assert render("../shared/{name}", {"name": "x"}, "t") == "../shared/x"  # the template's own ..
    for template, values in [
        ("/data/{name}.csv", {"name": "../etc/passwd"}),  # '..' from a parameter: never
        ("s3://b/{name}", {"name": "a/../../c"}),
        ("{name}.csv", {"name": "/etc/x"}),  # a relative template stays relative
        ("{a}{b}/x", {"a": "/", "b": "etc"}),
    ]:
        with pytest.raises(ParameterError) as err:
            render(template, values, "task t")
        assert "\n" not in str(err.value) and set(err.value.problems) <= set(values)
