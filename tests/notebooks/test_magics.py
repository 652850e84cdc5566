"""``%load_ext conveyor`` in a real Jupyter kernel (nbclient, this venv's Python): ``%conveyor run``
with a live bar and a rich run, ``%%conveyor`` running the pipeline a cell defines, bad input as
one line, and the short reprs of what ``wait()`` and ``tasks`` return."""

from __future__ import annotations

import os
import re
import signal
from pathlib import Path
from typing import Any

import nbformat
import pytest

from conftest import Project
from test_notebook import PIPES, Recording, _kernel, _wait_gone

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

CELLS = [
    "%load_ext conveyor",
    "r = %conveyor run hello -p n=3",
    "r",
    "r.result('square')",
    "r.wait(progress=False)",
    "r.tasks",
    "%conveyor run helo",
    "%conveyor run hello -p n",
    """%%conveyor squares -p k=4
from conveyor import pipeline, task

@task
def sq(i: int) -> int:
    return i * i

@task
def total(a: int, b: int) -> int:
    return a + b

@pipeline
def squares(k: int = 2):
    total(sq(k), sq(k + 1))
""",
    "_.result('total'), squares.name",
    "r.tasks[1]",
    "import conveyor\nconveyor.run('pipes.py:hello', {'n': 2})",
]


@pytest.fixture(scope="module")
def executed(tmp_path_factory: pytest.TempPathFactory) -> tuple[dict[str, list[Any]], Recording, Project]:
    tmp = tmp_path_factory.mktemp("magics")
    project = Project(tmp / "project")
    project.write("pipes.py", PIPES)
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    patch = pytest.MonkeyPatch()
    patch.setenv("JUPYTER_PATH", str(tmp / "jupyter"))
    patch.setenv("CONVEYOR_HOME", str(project.root / ".conveyor"))
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(c) for c in CELLS]
    client = Recording(
        nb,
        timeout=90,
        kernel_name=_kernel(tmp / "jupyter"),
        allow_errors=True,
        resources={"metadata": {"path": str(project.root)}},
    )
    client.displays = []
    try:
        client.execute()
    finally:
        patch.undo()
    outputs = {c.source.splitlines()[0]: c.outputs for c in nb.cells}
    yield outputs, client, project
    said = "".join(o.get("text", "") for o in outputs[CELLS[1]] if o.output_type == "stream")
    found = re.search(r"\(pid (\d+)\)", said)
    if found and not _wait_gone(int(found[1]), 30):
        os.kill(int(found[1]), signal.SIGKILL)


def _html(outputs: list[Any]) -> str:
    (result,) = [o for o in outputs if o.output_type == "execute_result"]
    return str(result.data["text/html"])


def test_percent_conveyor_run_follows_the_run_live_and_returns_its_handle(executed: Any) -> None:
    outputs, client, _ = executed
    errors = [o for o in outputs[CELLS[1]] if o.output_type == "error"]
    assert not errors, errors
    bars = [c for kind, c in client.displays if "conveyor-progress" in c.get("data", {}).get("text/html", "")]
    assert len(bars) >= 2 and "<b>3/3</b> tasks done" in bars[-1]["data"]["text/html"]  # updated in place
    (value,) = outputs[CELLS[3]]
    assert value.data["text/plain"] == "9"


def test_a_run_shows_its_state_counts_graph_and_tasks(executed: Any) -> None:
    outputs, _, _ = executed
    html = _html(outputs[CELLS[2]])
    assert "succeeded" in html and "<b>3/3</b> tasks done" in html
    svg = re.search(r"<svg [^>]*class=\"conveyor-graph\".*?</svg>", html, re.S)
    assert svg, html
    assert svg[0].count('data-state="succeeded"') == 3  # a node per task instance, each succeeded
    assert "cube(n=3)" in svg[0] and "square(n=3)" in svg[0]


def test_what_wait_and_tasks_return_is_short(executed: Any) -> None:
    outputs, _, _ = executed
    (waited,) = outputs[CELLS[4]]
    text = waited.data["text/plain"]
    assert text.startswith("RunDetail(id=") and "state='succeeded'" in text and len(text) < 200
    table = _html(outputs[CELLS[5]])
    assert table.count("<tr>") == 4 and "greet(n=3)" in table  # a header and a row per task


def test_bad_input_is_one_line(executed: Any) -> None:
    outputs, _, _ = executed
    (unknown,) = outputs[CELLS[6]]  # IPython's one line for a magic's bad input, no traceback
    assert unknown.text == "UsageError: PipelineNotFound: no pipeline 'helo'; known pipelines: hello\n"
    (bad,) = outputs[CELLS[7]]
    assert bad.text.startswith("UsageError: ParameterError: parameter 'n' is not name=value")


def test_a_conveyor_cell_runs_the_pipeline_it_defines_here(executed: Any) -> None:
    outputs, _, project = executed
    cell = outputs[CELLS[8].splitlines()[0]]
    assert not [o for o in cell if o.output_type == "error"], cell
    assert "succeeded" in _html(cell) and "<b>3/3</b> tasks done" in _html(cell)
    (value,) = outputs[CELLS[9]]
    assert value.data["text/plain"] == "(41, 'squares')"  # its result, and its definitions stay usable
    (kept,) = Path(project.root, ".conveyor", "cells").glob("cell_*.py")
    assert "def squares(k: int = 2):" in kept.read_text()


def test_a_task_and_a_runs_result_show_as_html(executed: Any) -> None:
    outputs, _, _ = executed
    task = _html(outputs[CELLS[10]])
    assert "<b>square(n=3)</b>" in task and "succeeded" in task and "attempts" in task
    result = _html(outputs[CELLS[11].splitlines()[0]])
    assert "conveyor-result" in result and "succeeded" in result and "<b>3/3</b> tasks done" in result
