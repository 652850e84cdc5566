"""Fixtures of the execution API's tests: a real store (SQLite, PostgreSQL), attempts in it as a
driver starts them, and the API served by uvicorn on loopback."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from conveyor.execution.local import Endpoint, serve_locally
from conveyor.store import Store, open_store
from execution.started import Started, start_run


@pytest.fixture(params=["sqlite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The store a server opens: SQLite, or a real throwaway PostgreSQL."""
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        url = request.getfixturevalue("postgres").create_database(f"t_{uuid.uuid4().hex[:12]}")
    s = open_store(url)
    yield s
    s.close()


@pytest.fixture
def api(store: Store, tmp_path: Path) -> Iterator[Endpoint]:
    endpoint = serve_locally(store, tmp_path / "home")
    yield endpoint
    endpoint.close()


@pytest.fixture
def started(store: Store, tmp_path: Path) -> Started:
    return start_run(store, tmp_path / "logs")
