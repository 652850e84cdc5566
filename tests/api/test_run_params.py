"""A run's parameter is at most [params] max_size (64 KiB by default) as JSON: a larger one is a
422 naming it. Lists of runs carry summaries: a long parameter is cut to a preview there and
named in ``params_cut``; the run's own answer has it whole."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import httpx
import pytest
from live import in_thread

from conftest import Project
from conveyor import project as projects
from conveyor.api import create_app
from conveyor.service import Service
from conveyor.store import open_store

V1 = "/api/v1"
KiB = 1024
PREVIEW = 200  # characters of a long parameter a list shows

PIPES = """
import datetime as dt
from conveyor import pipeline, task

@task
def echo(text: str, tags: list[str]) -> int:
    return len(text)

@pipeline
def note(text: str = "", tags: list[str] = []):
    echo(text, tags)

@pipeline
def daily(logical_date: dt.date = dt.date(2026, 1, 1), text: str = ""):
    echo(text, [])
"""


@dataclass
class Served:
    http: httpx.Client
    project: Project


def _serve(project: Project) -> Iterator[Served]:
    store = open_store(project.db)
    app = create_app(Service(store, projects.find(project.root)), max_body=4 * 1024 * 1024)
    with in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Served(http, project)
    store.close()


@pytest.fixture
def served(project: Project) -> Iterator[Served]:
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    project.write("pipes.py", PIPES)
    yield from _serve(project)


def _problems(answer: httpx.Response) -> dict[tuple[str, ...], str]:
    assert answer.status_code == 422, answer.text
    return {tuple(p["loc"]): p["msg"] for p in answer.json()["detail"]}


def test_a_parameter_over_the_limit_is_a_422_naming_it(served: Served) -> None:
    trigger = f"{V1}/pipelines/note/runs"
    big = "x" * (64 * KiB + 1)
    assert _problems(served.http.post(trigger, json={"params": {"text": big}})) == {
        ("body", "params", "text"): "65537 bytes, over the limit of 64 KiB: pass a path or URL to the data",
    }
    many = ["y" * 1000] * 70  # a list counts as its JSON
    problems = _problems(served.http.post(trigger, json={"params": {"text": "ok", "tags": many}}))
    assert list(problems) == [("body", "params", "tags")]
    backfill = {"pipeline": "daily", "start": "2026-01-01", "end": "2026-01-02", "params": {"text": big}}
    assert list(_problems(served.http.post(f"{V1}/backfills", json=backfill))) == [("body", "params", "text")]
    assert served.http.post(trigger, json={"params": {"text": "x" * (64 * KiB)}}).status_code == 201


def test_the_limit_is_set_in_conveyor_toml(project: Project) -> None:
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n[params]\nmax_size = "1 KiB"\n')
    project.write("pipes.py", PIPES)
    for served in _serve(project):
        answer = served.http.post(f"{V1}/pipelines/note/runs", json={"params": {"text": "x" * 1100}})
        assert _problems(answer) == {
            ("body", "params", "text"): "1100 bytes, over the limit of 1 KiB: pass a path or URL to the data"
        }


def test_lists_of_runs_carry_summaries_and_a_run_its_parameters_whole(served: Served) -> None:
    texts = [f"{i:02d}" + "z" * (60 * KiB) for i in range(30)]  # 30 runs of 60 KiB parameters
    ids = []
    for text in texts:
        answer = served.http.post(f"{V1}/pipelines/note/runs", json={"params": {"text": text, "tags": ["a"]}})
        assert answer.status_code == 201, answer.text
        ids.append(answer.json()["id"])
    page = served.http.get(f"{V1}/runs", params={"limit": 30})
    assert page.status_code == 200 and len(page.content) < 30 * 2 * KiB, len(page.content)  # not 1.8 MB
    for item in page.json()["items"]:
        text = item["params"]["text"]
        assert (
            len(text) == PREVIEW + 1
            and text.endswith("…")
            and text[:-1] == texts[ids.index(item["id"])][:PREVIEW]
        )
        assert item["params"]["tags"] == ["a"] and item["params_cut"] == ["text"]
    whole = served.http.get(f"{V1}/runs/{ids[0]}").json()
    assert whole["params"] == {"text": texts[0], "tags": ["a"]} and "params_cut" not in whole
