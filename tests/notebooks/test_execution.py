"""Notebook tasks run for real: papermill on a real kernel of this venv's Python, in a real run
(``conveyor run``), with an upstream task's target passed in as a parameter."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import nbformat
import pytest

from conftest import Project

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PIPES = """
    from conveyor import notebook, output, pipeline, task

    @task(output="data/sales-{n}.csv")
    def sales(n: int) -> None:
        with output().open("w") as f:
            f.write("amount\\n" + "".join(f"{i * 10}\\n" for i in range(1, n + 1)))

    report = notebook(
        "analysis/report.ipynb",
        parameters={"n": int, "data": str, "title": "Sales"},
        output="reports/report-{n}.ipynb",
    )

    @pipeline
    def sales_report(n: int = 3):
        report(n=n, data=sales(n))
"""


def write_notebook(path: Path, *cells: str, kernel: str = "python3") -> None:
    """A notebook whose first cell (tagged ``parameters``) sets the defaults; then ``cells``."""
    nb = nbformat.v4.new_notebook()
    nb.metadata["kernelspec"] = {"name": kernel, "display_name": "Python 3", "language": "python"}
    params = nbformat.v4.new_code_cell(
        "n = 1\ndata = ''\ntitle = 'default'", metadata={"tags": ["parameters"]}
    )
    nb.cells = [params, *(nbformat.v4.new_code_cell(c) for c in cells)]
    path.parent.mkdir(parents=True, exist_ok=True)
    nbformat.write(nb, path)


REPORT_CELLS = (
    "import csv\nrows = list(csv.DictReader(open(data)))\ntotal = sum(int(r['amount']) for r in rows)\n"
    "print(f'{title}: {len(rows)} rows, total {total}')",
    "assert len(rows) == n, f'expected {n} rows, got {len(rows)}'\ntotal",
)


@pytest.fixture(scope="module")
def ran(tmp_path_factory: pytest.TempPathFactory) -> tuple[Project, list[bytes]]:
    """The project run once, then again with --force: the notebook's and its HTML's bytes each time."""
    project = Project(tmp_path_factory.mktemp("nb") / "project")
    project.write("pipes.py", PIPES)
    write_notebook(project.root / "analysis" / "report.ipynb", *REPORT_CELLS)
    seen: list[bytes] = []
    for extra in ([], ["--force"]):
        project.cli("run", "pipes.py:sales_report", *extra, check=True, timeout=120)
        seen += [(project.root / "reports" / f"report-3.{ext}").read_bytes() for ext in ("ipynb", "html")]
    return project, seen


def test_the_executed_notebook_is_the_target_with_parameters_after_the_tagged_cell(
    ran: tuple[Project, list[bytes]],
) -> None:
    project, _ = ran
    nb = nbformat.read(project.root / "reports" / "report-3.ipynb", as_version=4)
    tags = [c.metadata.get("tags", []) for c in nb.cells]
    assert tags[0] == ["parameters"] and tags[1] == ["injected-parameters"]
    assert 'data = "data/sales-3.csv"' in nb.cells[1].source and "n = 3" in nb.cells[1].source
    assert 'title = "Sales"' in nb.cells[1].source  # a default given to notebook()
    printed = "".join(o.get("text", "") for o in nb.cells[2].outputs)
    assert printed == "Sales: 3 rows, total 60\n"
    assert nb.cells[3].outputs[0]["data"]["text/plain"] == "60"
    html = (project.root / "reports" / "report-3.html").read_text()
    assert "Sales: 3 rows, total 60" in html and "<html" in html
    # a second run finds both targets there and skips the task
    again = project.cli("run", "pipes.py:sales_report", check=True)
    assert "Every task was skipped" in again.stdout


def test_a_rerun_gives_the_same_bytes_without_run_times(ran: tuple[Project, list[bytes]]) -> None:
    _, (nb1, html1, nb2, html2) = ran
    assert nb1 == nb2 and html1 == html2
    text = nb1.decode()
    for stamp in ("start_time", "end_time", "duration", "iopub.execute_input", "output_path", ".tmp-"):
        assert stamp not in text, stamp
    assert json.loads(text)["metadata"]["kernelspec"]["name"] == "python3"  # the notebook's own, kept


def test_a_failing_cell_names_itself_and_keeps_the_notebook_up_to_it(project: Project) -> None:
    project.write("pipes.py", PIPES)
    write_notebook(project.root / "analysis" / "report.ipynb", *REPORT_CELLS, "raise ValueError('no way')")
    proc = project.cli("run", "pipes.py:sales_report", "-p", "n=2")
    assert proc.returncode != 0
    kept = project.root / "reports" / "report-2.failed.ipynb"
    line = f"cell 5 raised ValueError: no way; the notebook up to that cell is kept in {kept}"
    assert line in proc.stdout.replace("\n", " ") or line in " ".join(proc.stdout.split())
    assert "Traceback" not in proc.stdout + proc.stderr
    nb = nbformat.read(kept, as_version=4)
    assert nb.cells[-1].outputs[-1]["output_type"] == "error"
    assert "Sales: 2 rows, total 30" in kept.with_suffix(".html").read_text()
    assert not (project.root / "reports" / "report-2.ipynb").exists()  # not done: a retry runs it
    # fixed, it succeeds and the failed copy is gone
    write_notebook(project.root / "analysis" / "report.ipynb", *REPORT_CELLS)
    project.cli("run", "pipes.py:sales_report", "-p", "n=2", check=True)
    assert (project.root / "reports" / "report-2.ipynb").exists() and not kept.exists()


def test_the_kernel_is_pinned_never_found_by_name(project: Project, tmp_path: Path) -> None:
    """A kernel named like the notebook's on the Jupyter path is not used; the project's own
    kernel spec directory is, when the task names it."""
    broken = tmp_path / "jupyter" / "kernels"
    for name in ("python3", "conveyor-python"):
        (broken / name).mkdir(parents=True)
        (broken / name / "kernel.json").write_text(
            json.dumps({"argv": ["/nonexistent/python"], "language": "python"})
        )
    project.write(
        "pipes.py",
        """
        from conveyor import notebook, pipeline

        plain = notebook("env.ipynb", output="out/plain.ipynb")
        own = notebook("env.ipynb", output="out/own.ipynb", kernel="kernels/team", name="own")

        @pipeline
        def env():
            plain()
            own()
        """,
    )
    write_notebook(
        project.root / "env.ipynb",
        "import os, sys\nprint(os.environ.get('KERNEL_OF', 'none'), sys.executable)",
    )
    team = project.root / "kernels" / "team"
    team.mkdir(parents=True)
    argv = [sys.executable, "-m", "ipykernel_launcher", "-f", "{connection_file}"]
    (team / "kernel.json").write_text(
        json.dumps({"argv": argv, "language": "python", "env": {"KERNEL_OF": "team"}})
    )
    env = project.env() | {
        "JUPYTER_PATH": str(tmp_path / "jupyter"),
        "JUPYTER_DATA_DIR": str(tmp_path / "jupyter"),
    }

    subprocess.run(
        [sys.executable, "-m", "conveyor", "run", "pipes.py:env"],
        cwd=project.root,
        env=env,
        check=True,
        timeout=120,
        capture_output=True,
    )

    def printed(name: str) -> str:
        nb = nbformat.read(project.root / "out" / f"{name}.ipynb", as_version=4)
        return "".join(o.get("text", "") for o in nb.cells[-1].outputs).strip()

    assert printed("plain") == f"none {sys.executable}"
    assert printed("own") == f"team {sys.executable}"


def test_without_the_extra_a_notebook_task_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    import importlib.util

    from conveyor.errors import NotebookError
    from conveyor.notebooks.execution import run_notebook
    from conveyor.targets import FileTarget

    found = importlib.util.find_spec
    monkeypatch.setattr(
        importlib.util, "find_spec", lambda name: None if name == "papermill" else found(name)
    )
    target = FileTarget("out/x.ipynb")
    with pytest.raises(NotebookError) as raised:
        run_notebook("x.ipynb", task="report", values={}, kernel=None, staged=(target, target), final=target)
    assert str(raised.value) == (
        "task report: running a notebook needs papermill, which this Python lacks; "
        "pip install 'conveyor[notebooks]'"
    )


def test_bad_definitions_and_values_are_one_line(project: Project) -> None:
    from conveyor import notebook
    from conveyor.errors import DefinitionError, NotebookError
    from conveyor.notebooks.execution import plain

    with pytest.raises(DefinitionError, match=r"output must be a path template ending in \.ipynb"):
        notebook("a.ipynb", output="reports/{day}.html")
    with pytest.raises(DefinitionError, match=r"uses \{day\} which is not a parameter"):
        notebook("a.ipynb", output="reports/{day}.ipynb")
    with pytest.raises(NotebookError, match=r"parameter 'frame': a object cannot be written into a notebook"):
        plain(object(), "parameter 'frame'")
    project.write(
        "pipes.py",
        """
        from conveyor import notebook, pipeline

        gone = notebook("missing.ipynb", output="out/x.ipynb")

        @pipeline
        def missing():
            gone()
        """,
    )
    proc = project.cli("run", "pipes.py:missing")
    assert proc.returncode != 0
    assert "notebook missing.ipynb does not exist" in " ".join(proc.stdout.split())


def test_the_example_reports_the_week_in_a_table_and_a_chart(project: Project) -> None:
    """examples/notebook_report, as its docstring runs it."""
    example = Path(__file__).resolve().parents[2] / "examples" / "notebook_report" / "pipeline.py"
    project.cli("run", f"{example}:weekly_report", check=True, timeout=150)
    html = (project.root / "demo-output" / "notebooks" / "report-2026-11-01.html").read_text()
    assert "week ending 2026-11-01: " in html and "<th>espresso</th>" in html
    assert html.count("<tr><td>2026-") == 7  # a row per day of the week
    assert 'src="data:image/png;base64,' in html  # the chart, inside the page
