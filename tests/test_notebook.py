"""The client in a real Jupyter kernel: ``tests/notebooks/hello.ipynb`` executed by nbclient on
this venv's Python, in a project's directory."""

from __future__ import annotations

import json
import os
import re
import signal
import sys
import time
from pathlib import Path
from typing import Any

import nbformat
import pytest
from nbclient import NotebookClient

from conftest import Project

pytestmark = pytest.mark.timeout(120)

NOTEBOOK = Path(__file__).parent / "notebooks" / "hello.ipynb"

PIPES = """
    from conveyor import pipeline, task

    @task
    def greet(n: int) -> str:
        print(f"hello {n} times")
        return "hi"

    @task
    def square(n: int) -> int:
        return n * n

    @task
    def cube(n: int) -> int:
        return n ** 3

    @pipeline
    def hello(n: int = 2):
        greet(n)
        square(n)
        cube(n)
"""


class Recording(NotebookClient):
    """Keeps every display message the kernel sent, in order (the notebook keeps only the last
    state of an output updated in place)."""

    displays: list[tuple[str, dict[str, Any]]]

    def process_message(self, msg: dict[str, Any], cell: Any, cell_index: int) -> Any:
        kind = msg["msg_type"]
        if kind in ("display_data", "update_display_data"):
            self.displays.append((kind, msg["content"]))
        return super().process_message(msg, cell, cell_index)


def _kernel(tmp: Path) -> str:
    """A kernelspec that runs this venv's Python, on a JUPYTER_PATH of its own."""
    name = "conveyor-test"
    spec = tmp / "kernels" / name
    spec.mkdir(parents=True)
    (spec / "kernel.json").write_text(
        json.dumps(
            {
                "argv": [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"],
                "display_name": "Conveyor tests",
                "language": "python",
            }
        )
    )
    return name


def _wait_gone(pid: int, within: float) -> bool:
    deadline = time.monotonic() + within
    while time.monotonic() < deadline:
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return True
        time.sleep(0.1)
    return False


def test_a_notebook_runs_a_pipeline_with_a_live_progress_bar(
    project: Project, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    project.write("pipes.py", PIPES)
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    monkeypatch.setenv("JUPYTER_PATH", str(tmp_path / "jupyter"))
    kernel = _kernel(tmp_path / "jupyter")
    nb = nbformat.read(NOTEBOOK, as_version=4)
    client = Recording(
        nb, timeout=60, kernel_name=kernel, resources={"metadata": {"path": str(project.root)}}
    )
    client.displays = []
    started = time.monotonic()
    client.execute()
    took = time.monotonic() - started

    cells = {c.source: c.outputs for c in nb.cells if c.cell_type == "code"}
    errors = [o for outs in cells.values() for o in outs if o.output_type == "error"]
    assert not errors, errors
    # the background scheduler's line, with its pid and log
    said = "".join(o.text for o in cells['r = c.run("hello", n=3)'] if o.output_type == "stream")
    found = re.search(r"started a scheduler in the background \(pid (\d+)\); its log: (\S+)", said)
    assert found, said
    assert Path(found[2]) == project.root / ".conveyor" / "scheduler.log"
    # the value of the task
    (result,) = cells['r.result("square")']
    assert result.output_type == "execute_result" and result.data["text/plain"] == "9"
    # the progress bar: shown once, then updated in place up to the final counts
    kinds = [kind for kind, _ in client.displays]
    assert kinds[0] == "display_data" and "update_display_data" in kinds
    first, last = client.displays[0][1], client.displays[-1][1]
    assert last["transient"]["display_id"] == first["transient"]["display_id"]
    final = last["data"]["text/html"]
    assert "conveyor-progress" in final and "succeeded" in final
    assert "<b>3/3</b> tasks done" in final and "3 succeeded" in final and "0 failed" in final
    (shown, returned) = cells["r.wait()"]
    assert shown.output_type == "display_data" and shown.data["text/html"] == final  # updated in place
    assert "state='succeeded'" in returned.data["text/plain"]
    # the logs shown as text, and the run as an HTML table of its tasks
    (logs,) = cells['r.logs("greet")']
    assert logs.data["text/plain"].startswith("==> greet(n=3) attempt 1 (succeeded) <==\nhello 3 times")
    (run,) = cells["r"]
    assert "<td" in run.data["text/html"] and "cube(n=3)" in run.data["text/html"]
    assert took < 60
    pid = int(found[1])
    if not _wait_gone(pid, 30):  # it exits when idle; if not, end it
        os.kill(pid, signal.SIGKILL)
        pytest.fail(f"the background scheduler {pid} did not exit when idle")
