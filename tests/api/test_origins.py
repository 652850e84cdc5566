"""Other web sites cannot use the API through a user's browser: no cross-site changes (CSRF), no
requests for a host name that is not this server's (DNS rebinding)."""

from __future__ import annotations

from collections.abc import Iterator

import httpx
import pytest

from api.live import in_thread, make_project
from conftest import Project
from conveyor import project as projects
from conveyor.api import create_app
from conveyor.service import Service
from conveyor.store import open_store

V1 = "/api/v1"


@pytest.fixture
def http(project: Project) -> Iterator[httpx.Client]:
    make_project(project)
    store = open_store(project.db)
    with (
        in_thread(create_app(Service(store, projects.find(project.root)), listen="127.0.0.1")) as url,
        httpx.Client(base_url=url, timeout=30) as client,
    ):
        yield client
    store.close()


def test_a_page_of_another_site_cannot_start_cancel_or_pause(http: httpx.Client) -> None:
    host = http.base_url.netloc.decode()
    # what a form on evil.example posts to the server: a "simple" request, no preflight
    forged = http.post(
        f"{V1}/pipelines/quick/runs",
        content=b"x",
        headers={"Origin": "http://evil.example", "Content-Type": "text/plain"},
    )
    assert forged.status_code == 403 and "http://evil.example" in forged.json()["detail"]
    fetched = http.post(f"{V1}/schedules/nightly/pause", headers={"Sec-Fetch-Site": "cross-site"})
    assert fetched.status_code == 403
    opaque = http.post(f"{V1}/pipelines/reload", headers={"Origin": "null"})
    assert opaque.status_code == 403
    assert http.get(f"{V1}/runs").json()["total"] == 0  # nothing was started
    assert http.get(f"{V1}/schedules").json()[0]["paused"] is False
    # the UI itself (same origin) and clients that are not browsers may
    own = http.post(
        f"{V1}/pipelines/quick/runs",
        json={"params": {"n": 1}},
        headers={"Origin": f"http://{host}", "Sec-Fetch-Site": "same-origin"},
    )
    assert own.status_code == 201, own.text
    assert http.post(f"{V1}/schedules/nightly/pause").status_code == 200


def test_a_host_name_that_is_not_this_server_is_refused(http: httpx.Client) -> None:
    port = http.base_url.port
    rebound = http.get(f"{V1}/runs", headers={"Host": f"attacker.example:{port}"})
    assert rebound.status_code == 403 and "is not this server's" in rebound.json()["detail"]
    for name in ("localhost", "127.0.0.1", "[::1]"):
        assert http.get(f"{V1}/runs", headers={"Host": f"{name}:{port}"}).status_code == 200, name
