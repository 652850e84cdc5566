"""A backfill's logical dates carry their zone in every answer (UTC, as every other time): the
schema says date-time, and a time without an offset is not one."""

from __future__ import annotations

import datetime as dt
import re
from collections.abc import Iterator

import httpx
import pytest
from live import in_thread, make_project

from conftest import Project
from conveyor import Client
from conveyor import project as projects
from conveyor.api import create_app
from conveyor.service import Service
from conveyor.store import open_store

V1 = "/api/v1"

#: RFC 3339's date-time: the offset is not optional.
DATE_TIME = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d(\.\d+)?(Z|[+-]\d\d:\d\d)$")


@pytest.fixture
def http(project: Project) -> Iterator[httpx.Client]:
    make_project(project)
    store = open_store(project.db)
    app = create_app(Service(store, projects.find(project.root)))
    with in_thread(app) as url, httpx.Client(base_url=url, timeout=30) as client:
        yield client
    store.close()


def _times(value: object, key: str = "") -> list[tuple[str, str]]:
    """Every time in an answer: fields named *_at, *_tick, when, expires."""
    if isinstance(value, dict):
        return [t for k, v in value.items() for t in _times(v, k)]
    if isinstance(value, list):
        return [t for v in value for t in _times(v, key)]
    timed = key.endswith(("_at", "_tick")) or key in ("when", "expires")
    return [(key, value)] if timed and isinstance(value, str) else []


def test_backfill_dates_are_date_times_with_their_offset(http: httpx.Client) -> None:
    body = {"pipeline": "daily", "start": "2026-01-01", "end": "2026-01-03"}
    created = http.post(f"{V1}/backfills", json=body)
    assert created.status_code == 201, created.text
    answers = [
        created.json(),
        http.get(f"{V1}/backfills/{created.json()['id']}").json(),
        *http.get(f"{V1}/backfills").json(),
    ]
    for answer in answers:
        times = _times(answer)
        assert [v for k, v in times if k == "when"] == [f"2026-01-0{d}T00:00:00Z" for d in (1, 2, 3)]
        bad = [(k, v) for k, v in times if not DATE_TIME.match(v)]
        assert not bad, f"times without an offset: {bad}"
    schema = http.get("/openapi.json").json()["components"]["schemas"]["DateView"]["properties"]["when"]
    assert schema["format"] == "date-time"


def test_the_client_gets_aware_dates(project: Project) -> None:
    make_project(project)
    with Client() as client:
        backfill = client.backfill("daily", "2026-01-01", "2026-01-02")
        whens = [d.when for d in backfill.view.dates]
    assert whens == [dt.datetime(2026, 1, d, tzinfo=dt.UTC) for d in (1, 2)]
