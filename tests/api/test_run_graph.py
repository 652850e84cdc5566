"""What the web UI draws a run from, over real HTTP (uvicorn on a loopback port, httpx): the laid
out graph, the changes after a cursor while a real ``conveyor scheduler`` drives the run, and
every attempt for the timeline."""

from __future__ import annotations

import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import httpx
import pytest
from live import in_thread, wait_for_run, wait_until

from conftest import Project
from conveyor import project as projects
from conveyor.api import create_app
from conveyor.service import Service
from conveyor.store import open_store
from conveyor.views import ChangesView, GanttBar, GraphView, RunDetail

V1 = "/api/v1"

#: ``fan``: one start, ``n`` pieces of work after it, one join after them all.
PIPES = """
import time

from conveyor import pipeline, task

@task
def start(n: int) -> int:
    return n

@task
def work(i: int, n: int, seconds: float) -> int:
    time.sleep(seconds)
    return i * n

@task
def join(n: int) -> str:
    return "joined"

@pipeline
def fan(n: int = 3, seconds: float = 0.0):
    first = start(n)
    parts = [work(i, first, seconds) for i in range(n)]
    join(n, after=parts)
"""


@dataclass
class Api:
    http: httpx.Client
    project: Project

    def trigger(self, **params: Any) -> str:
        answer = self.http.post(f"{V1}/pipelines/fan/runs", json={"params": params})
        assert answer.status_code == 201, answer.text
        return str(answer.json()["id"])

    def graph(self, run_id: str, **query: str) -> GraphView:
        answer = self.http.get(f"{V1}/runs/{run_id}/graph", params=query)
        assert answer.status_code == 200, answer.text
        return GraphView.model_validate(answer.json())

    def changes(self, run_id: str, since: int) -> ChangesView:
        answer = self.http.get(f"{V1}/runs/{run_id}/changes", params={"since": since})
        assert answer.status_code == 200, answer.text
        return ChangesView.model_validate(answer.json())


@pytest.fixture
def api(project: Project) -> Iterator[Api]:
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    project.write("pipes.py", PIPES)
    store = open_store(project.db)
    app = create_app(Service(store, projects.find(project.root)))
    with in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as http:
        yield Api(http, project)
    store.close()


@pytest.fixture
def scheduler(api: Api) -> Iterator[subprocess.Popen[str]]:
    proc = api.project.popen("scheduler", "--workers", "1", "--poll", "0.1")
    yield proc
    proc.send_signal(signal.SIGTERM)
    proc.communicate(timeout=30)


def test_the_graph_is_the_runs_instances_and_their_edges_laid_out(api: Api) -> None:
    run_id = api.trigger(n=3)
    detail = RunDetail.model_validate(api.http.get(f"{V1}/runs/{run_id}").json())
    graph = api.graph(run_id)
    assert graph.run.id == run_id and not graph.grouped
    assert {n.id for n in graph.nodes} == {t.id for t in detail.tasks}
    assert {(e.source, e.target) for e in graph.edges} == {
        (u, t.id) for t in detail.tasks for u in t.upstream
    }
    assert len(graph.edges) == 6  # start -> 3 works -> join
    at = {n.id: n for n in graph.nodes}
    labels = {t.id: t.label for t in detail.tasks}
    for n in graph.nodes:
        assert n.label == labels[n.id] and n.state == "pending" and n.counts == {"pending": 1} and n.size == 1
        assert n.x >= 0 and n.x + n.w <= graph.width and n.y >= 0 and n.y + n.h <= graph.height
    by_task = {n.task: n for n in graph.nodes}
    assert [by_task[t].layer for t in ("start", "work", "join")] == [0, 1, 2]
    for e in graph.edges:  # left to right, from the source's right side to the target's left
        source, target = at[e.source], at[e.target]
        assert e.points[0] == [source.x + source.w, source.y + source.h / 2]
        assert e.points[-1] == [target.x, target.y + target.h / 2]
    # grouped on request: one node per task
    tasks = api.graph(run_id, group="tasks")
    assert tasks.grouped and [(n.id, n.size, n.state) for n in tasks.nodes] == [
        ("task:start", 1, "pending"),
        ("task:work", 3, "pending"),
        ("task:join", 1, "pending"),
    ]
    assert {(e.source, e.target) for e in tasks.edges} == {
        ("task:start", "task:work"),
        ("task:work", "task:join"),
    }


def test_changes_after_the_cursor_are_only_what_moved_while_a_scheduler_drives_the_run(
    api: Api, scheduler: subprocess.Popen[str]
) -> None:
    run_id = api.trigger(n=3, seconds=0.6)  # one worker: the works run one after another
    before = api.graph(run_id)
    everything = api.changes(run_id, 0)
    assert {i.id for i in everything.instances} == {n.id for n in before.nodes}

    def working() -> bool:
        return any(i.task == "work" and i.state == "running" for i in api.changes(run_id, 0).instances)

    wait_until(working, timeout=30, what="a work to run")
    # start's last change is in: a work runs only once start's success is committed
    mid = api.changes(run_id, 0)
    states = {i.task: i.state for i in mid.instances if i.task != "work"}
    assert states == {"start": "succeeded", "join": "pending"} and mid.run.state == "running"
    assert mid.cursor >= before.cursor

    wait_for_run(api.http, run_id)
    end = api.changes(run_id, mid.cursor)
    assert end.cursor > mid.cursor and end.run.state == "succeeded"
    moved = {i.task for i in end.instances}
    assert "start" not in moved and moved == {"work", "join"}  # start had not changed since mid
    assert all(i.state == "succeeded" and i.attempts == 1 and i.ended_at is not None for i in end.instances)
    assert api.changes(run_id, end.cursor).instances == []  # nothing after the last cursor
    assert api.changes(run_id, end.cursor).cursor == end.cursor

    after = api.graph(run_id)  # the same drawing, with the states of now
    assert [(n.id, n.x, n.y) for n in after.nodes] == [(n.id, n.x, n.y) for n in before.nodes]
    assert {n.state for n in after.nodes} == {"succeeded"} and after.cursor == end.cursor

    bars = [GanttBar.model_validate(b) for b in api.http.get(f"{V1}/runs/{run_id}/attempts").json()]
    assert sorted(b.instance for b in bars) == sorted(n.id for n in after.nodes)  # one attempt each
    assert [b.started_at for b in bars] == sorted(b.started_at for b in bars)
    assert bars[0].task == "start" and bars[-1].task == "join"
    assert all(
        b.number == 1 and b.state == "succeeded" and b.ended_at and b.ended_at >= b.started_at for b in bars
    )
    labels = {n.id: n.label for n in after.nodes}
    assert all(b.label == labels[b.instance] for b in bars)


def test_a_run_of_more_than_300_instances_is_grouped_by_task(api: Api) -> None:
    run_id = api.trigger(n=400)
    graph = api.graph(run_id)  # group=auto
    assert graph.grouped and graph.run.total == 402
    assert [(n.id, n.label, n.size, n.counts) for n in graph.nodes] == [
        ("task:start", "start (1)", 1, {"pending": 1}),
        ("task:work", "work (400)", 400, {"pending": 400}),
        ("task:join", "join (1)", 1, {"pending": 1}),
    ]
    assert [(e.source, e.target) for e in graph.edges] == [
        ("task:start", "task:work"),
        ("task:work", "task:join"),
    ]
    every = api.graph(run_id, group="instances")
    assert not every.grouped and len(every.nodes) == 402 and len(every.edges) == 800
    assert api.graph(api.trigger(n=3)).grouped is False  # a small run: one node per instance


def test_unknown_runs_are_404_and_bad_queries_422(api: Api) -> None:
    for path in ("graph", "changes", "attempts"):
        answer = api.http.get(f"{V1}/runs/nope/{path}")
        assert answer.status_code == 404 and "no run 'nope'" in answer.json()["detail"]
    run_id = api.trigger(n=1)
    for path, query, field in [
        ("graph", {"group": "clusters"}, "group"),
        ("changes", {"since": -1}, "since"),
        ("changes", {"since": "latest"}, "since"),
    ]:
        answer = api.http.get(f"{V1}/runs/{run_id}/{path}", params=query)
        assert answer.status_code == 422, answer.text
        assert [p["loc"] for p in answer.json()["detail"]] == [["query", field]]
    assert api.http.get(f"{V1}/runs/{run_id}/attempts").json() == []  # not started yet
