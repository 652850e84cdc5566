"""An id that no run or backfill can have (70,000 characters, characters no id has) is a 404 with
one short line, found out before any query; the server's log shows such a request once, its
path cut."""

from __future__ import annotations

import http.client
import json
from collections.abc import Iterator

import pytest
from live import ServerProcess, make_project, start_server

from conftest import Project
from conveyor.errors import BackfillNotFound, RunNotFound
from conveyor.store import open_embedded, open_store

V1 = "/api/v1"
LONG = "2" * 70_000


@pytest.fixture
def server(project: Project) -> Iterator[ServerProcess]:
    make_project(project)
    served = start_server(project, "--no-scheduler")
    yield served
    served.stop()


@pytest.mark.parametrize(
    "method, path",
    [
        ("GET", f"{V1}/runs/{LONG}"),
        ("GET", f"{V1}/runs/{LONG}/logs"),
        ("GET", f"{V1}/runs/{LONG}/result?task=x"),
        ("POST", f"{V1}/runs/{LONG}/cancel"),
        ("GET", f"{V1}/backfills/{LONG}"),
        ("GET", f"{V1}/runs/20261122%20000000"),  # a space: no id has one
        ("GET", f"{V1}/runs/2026%25"),  # % and _ are not wildcards of a prefix either
    ],
)
def test_an_id_no_run_can_have_is_a_404_in_one_short_line_logged_once_and_cut(
    server: ServerProcess, method: str, path: str
) -> None:
    status, body = _request(server, method, path)  # httpx refuses such a URL: a plain client
    assert status == 404, body[:300]
    detail = json.loads(body)["detail"]
    assert "\n" not in detail and len(detail) < 200, detail[:300]
    assert "an id is at most 32 letters, digits, '-', '_' or '.'" in detail
    log = server.log()
    assert "2" * 200 not in log, "the server's log holds the whole id"
    answers = [line for line in log.splitlines() if "uvicorn.access" in line]  # not times, pids, ports
    requests = [line for line in answers if "22222" in line or "2026%" in line or "%20" in line]
    assert len(requests) == 1, requests  # the access log's line, cut
    assert "LIKE" not in log and not [line for line in answers if line.endswith('" 503')]


def _request(server: ServerProcess, method: str, path: str) -> tuple[int, str]:
    host, port = server.url.removeprefix("http://").split(":")
    connection = http.client.HTTPConnection(host, int(port), timeout=30)
    try:
        connection.request(method, path)
        answer = connection.getresponse()
        return answer.status, answer.read().decode()
    finally:
        connection.close()


@pytest.mark.parametrize("kind", ["sqlite", "lite"])
def test_the_stores_refuse_an_impossible_id_before_asking(kind: str, project: Project) -> None:
    opened = open_store(project.db)  # creates the schema
    store = opened if kind == "sqlite" else open_embedded(project.db)
    try:
        with pytest.raises(RunNotFound) as err:
            store.get_run(LONG)
        assert len(str(err.value)) < 200 and "2" * 81 not in str(err.value)
        with pytest.raises(BackfillNotFound):
            store.get_backfill("bf-" + LONG)
    finally:
        if store is not opened:
            store.close()
        opened.close()


def test_the_cli_says_so_in_one_line(project: Project) -> None:
    make_project(project)
    shown = project.cli("show", LONG[:5000])
    assert shown.returncode == 2
    [line] = shown.stderr.strip().splitlines()
    assert line.startswith("Error: no run '2222") and "…'" in line and len(line) < 200
