"""The Python client loads a pickled result only from the local store, or from a server it was
told to trust (``Client(url, trust_pickles=True)``): a real server's pickle whose loading runs
code is refused in one line saying how to opt in, and its code does not run; a server that sends
a pickle anyway is refused the same way."""

from __future__ import annotations

import pickle
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
from fastapi import FastAPI
from fastapi.responses import Response

from api.live import ServerProcess, in_thread, start_server
from conftest import Project
from conveyor import Client
from conveyor.client.handles import Run
from conveyor.errors import ServerError

PIPES = """
from conveyor import pipeline, task

MARK = {mark!r}


class Loud:
    \"\"\"Unpickling it runs code: it writes MARK.\"\"\"

    def __reduce__(self):
        return (exec, (f"open({{MARK!r}}, 'w').write('the pickle ran')",))


@task
def make() -> object:
    return Loud()


@pipeline
def loud():
    make()


@task
def plain() -> dict:
    return {{"a": [1, 2]}}


@pipeline
def fine():
    plain()
"""


class _Loud:
    def __init__(self, mark: Path) -> None:
        self.mark = mark

    def __reduce__(self) -> tuple[object, tuple[str]]:
        return (exec, (f"open({str(self.mark)!r}, 'w').write('the pickle ran')",))


@pytest.fixture
def served(project: Project) -> Iterator[ServerProcess]:
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    project.write("pipes.py", PIPES.format(mark=str(project.root / "ran.txt")))
    server = start_server(project)
    yield server
    server.stop()


def test_a_servers_pickle_is_not_loaded_unless_the_client_trusts_it(
    served: ServerProcess, project: Project
) -> None:
    mark = project.root / "ran.txt"
    client = Client(served.url)
    run = client.run("loud")
    assert run.wait(progress=False, timeout=60).state == "succeeded"
    with pytest.raises(ServerError) as err:
        run.result("make")
    message = str(err.value)
    assert type(err.value).__name__ == "UntrustedResult"
    assert "\n" not in message and f"Client({served.url!r}, trust_pickles=True)" in message
    assert not mark.exists()  # the pickle's code did not run
    # the server says so too, to a client that takes only JSON
    answer = httpx.get(
        f"{served.url}/api/v1/runs/{run.id}/result",
        params={"task": "make"},
        headers={"Accept": "application/json"},
    )
    assert answer.status_code == 406 and "is a pickle, not JSON" in answer.json()["detail"]
    assert not mark.exists()
    # JSON results need no trust
    fine = client.run("fine")
    fine.wait(progress=False, timeout=60)
    assert fine.result("plain") == {"a": [1, 2]}
    # told to trust the server, the client loads it: the pickle was live all along
    Client(served.url, trust_pickles=True).get(run.id).result("make")
    assert mark.read_text() == "the pickle ran"


def test_a_server_that_sends_a_pickle_anyway_is_refused(tmp_path: Path) -> None:
    mark = tmp_path / "ran.txt"
    hostile = FastAPI()

    @hostile.get("/api/v1/runs/{run_id}/result")
    def result(run_id: str) -> Response:  # whatever the client accepts
        return Response(pickle.dumps(_Loud(mark)), media_type="application/x-python-pickle")

    with in_thread(hostile) as url:
        client = Client(url)
        with pytest.raises(ServerError, match="trust_pickles=True"):
            Run(client.transport, "20261122-000000-aaaaaa").result("make")
        assert not mark.exists()
        trusting = Client(url, trust_pickles=True)
        Run(trusting.transport, "20261122-000000-aaaaaa").result("make")
        assert mark.exists()
