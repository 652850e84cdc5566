"""Schemathesis against a live ``conveyor server`` (no scheduler): requests generated from the
API's OpenAPI schema, valid and invalid, get no server error (5xx) and answers that conform to the
schema (status codes, content types, bodies).

The schema is built in-process when the module is imported (schemathesis parametrizes the tests
from it); the fixture checks that the live server serves this very schema.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from live import make_project, start_server

from conftest import Project
from conveyor.api import openapi_schema

schema = schemathesis.openapi.from_dict(openapi_schema())

#: Calls per operation, for the summary printed at the end (pytest -s).
CALLS: Counter[str] = Counter()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory, request: pytest.FixtureRequest) -> Iterator[str]:
    root = tmp_path_factory.mktemp("schemathesis") / "project"
    root.mkdir()
    server = start_server(make_project(Project(root)), "--no-scheduler")
    try:
        assert httpx.get(f"{server.url}/openapi.json").json() == openapi_schema()
        yield server.url
    finally:
        assert server.stop() == 0
        log = server.log()
        print(f"\nschemathesis: {len(CALLS)} operations, {sum(CALLS.values())} calls")
        assert "Traceback" not in log and "Exception in ASGI application" not in log, log
        selected = [item for item in request.session.items if item.path == Path(__file__)]
        assert len(CALLS) == len(selected), f"operations called: {sorted(CALLS)}"  # none passed vacuously


@schema.parametrize()
@settings(max_examples=25, deadline=None, suppress_health_check=list(HealthCheck), derandomize=True)
def test_the_api_answers_as_its_schema_says_and_never_with_a_server_error(
    case: schemathesis.Case, live: str
) -> None:
    CALLS[case.operation.label] += 1
    case.call_and_validate(base_url=live, timeout=30)
