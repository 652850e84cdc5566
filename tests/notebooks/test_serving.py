"""The API serves a notebook task's rendering, under a policy where none of its scripts run:
a real run of real notebooks, then the real app."""

from __future__ import annotations

from collections.abc import Iterator

import nbformat
import pytest
from fastapi.testclient import TestClient

from conftest import Project
from conveyor import project as projects
from conveyor.api import create_app
from conveyor.service import Service
from conveyor.store import open_store

pytestmark = [pytest.mark.slow, pytest.mark.timeout(180)]

PIPES = """
    from conveyor import notebook, output, pipeline, task

    @task(output="data/numbers.csv")
    def numbers() -> None:
        with output().open("w") as f:
            f.write("1\\n2\\n")

    good = notebook("good.ipynb", parameters={"path": str}, output="out/good.ipynb")
    bad = notebook("bad.ipynb", output="out/bad.ipynb")

    @pipeline
    def notebooks():
        good(path=numbers())
        bad()
"""


def _notebook(path: str, *sources: str) -> None:
    nb = nbformat.v4.new_notebook()
    nb.cells = [nbformat.v4.new_code_cell(s) for s in sources]
    nb.cells[0].metadata["tags"] = ["parameters"]
    nbformat.write(nb, path)


@pytest.fixture(scope="module")
def http(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[TestClient, str]]:
    project = Project(tmp_path_factory.mktemp("serving") / "project")
    project.write("pipes.py", PIPES)
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    script = "<script>document.title = 'ran'</script>"
    _notebook(
        str(project.root / "good.ipynb"),
        "path = ''",
        f"from IPython.display import HTML\nHTML({script!r})",
        "print('sum', sum(int(x) for x in open(path)))",
    )
    _notebook(str(project.root / "bad.ipynb"), "x = 1", "print('before')", "1 / 0")
    project.cli("run", "pipes.py:notebooks")
    store = open_store(project.db)
    service = Service(store, projects.find(project.root))
    with TestClient(create_app(service), base_url="http://127.0.0.1") as client:
        yield client, client.get("/api/v1/runs").json()["items"][0]["id"]
    store.close()


def test_the_rendered_notebook_is_served_in_a_sandbox_with_no_script(http: tuple[TestClient, str]) -> None:
    client, run_id = http
    answer = client.get(f"/api/v1/runs/{run_id}/notebook", params={"task": "good"})
    assert answer.status_code == 200, answer.text
    assert answer.headers["content-type"] == "text/html; charset=utf-8"
    policy = [p.strip() for p in answer.headers["content-security-policy"].split(";")]
    assert "sandbox" in policy and "default-src 'none'" in policy
    assert not any(p.startswith("script-src") for p in policy)  # none: default-src 'none' holds
    assert "sum 3" in answer.text and "document.title" in answer.text  # the notebook's, as it was


def test_a_failed_notebook_is_served_up_to_its_failing_cell(http: tuple[TestClient, str]) -> None:
    client, run_id = http
    answer = client.get(f"/api/v1/runs/{run_id}/notebook", params={"task": "bad"})
    assert answer.status_code == 200, answer.text
    assert "before" in answer.text and "ZeroDivisionError" in answer.text
    run = client.get(f"/api/v1/runs/{run_id}").json()
    (bad,) = [t for t in run["tasks"] if t["task"] == "bad"]
    assert "cell 3 raised ZeroDivisionError: division by zero" in bad["error"]


def test_a_task_without_a_notebook_is_a_404_that_says_so(http: tuple[TestClient, str]) -> None:
    client, run_id = http
    answer = client.get(f"/api/v1/runs/{run_id}/notebook", params={"task": "numbers"})
    assert answer.status_code == 404
    assert answer.json()["detail"] == "numbers() is not a notebook task: it has no executed notebook to show"
