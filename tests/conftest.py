"""Shared fixtures: a throwaway project directory, and the real ``conveyor`` command."""

from __future__ import annotations

import os
import subprocess
import sys
import textwrap
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from conveyor.store import Store, open_embedded, open_store

#: The result cache (``conveyor.cache``) is off for the suite: its tests turn it on; the rest test
#: what executes when it is not there to reuse (every process they start inherits this).
os.environ.setdefault("CONVEYOR_CACHE", "0")


@dataclass
class Project:
    """A temporary working directory with its own store, like a user's project."""

    root: Path

    @property
    def db(self) -> str:
        return f"sqlite:///{self.root / '.conveyor' / 'conveyor.db'}"

    def write(self, name: str, source: str) -> Path:
        path = self.root / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(textwrap.dedent(source))
        return path

    def env(self) -> dict[str, str]:
        env = dict(os.environ)
        env.pop("CONVEYOR_DB", None)
        env["CONVEYOR_HOME"] = str(self.root / ".conveyor")
        env["COLUMNS"] = "200"
        return env

    def cli(self, *args: str, timeout: float = 120, check: bool = False) -> subprocess.CompletedProcess[str]:
        """Run ``python -m conveyor ARGS`` in the project, as a user would."""
        proc = subprocess.run(
            [sys.executable, "-m", "conveyor", *args],
            cwd=self.root,
            env=self.env(),
            capture_output=True,
            text=True,
            timeout=timeout,
        )
        if check and proc.returncode != 0:
            raise AssertionError(
                f"conveyor {' '.join(args)} exited {proc.returncode}:\n{proc.stdout}\n{proc.stderr}"
            )
        return proc

    def popen(self, *args: str) -> subprocess.Popen[str]:
        return subprocess.Popen(
            [sys.executable, "-m", "conveyor", *args],
            cwd=self.root,
            env=self.env(),
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )


@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Project]:
    root = tmp_path / "project"
    root.mkdir()
    monkeypatch.chdir(root)
    monkeypatch.setenv("CONVEYOR_HOME", str(root / ".conveyor"))
    monkeypatch.delenv("CONVEYOR_DB", raising=False)
    yield Project(root)


@pytest.fixture(scope="session")
def postgres() -> Iterator[object]:
    """A real PostgreSQL server for the session (see tests/pg.py)."""
    from pg import start_server

    yield from start_server()


@pytest.fixture(scope="session")
def s3() -> Iterator[str]:
    """A real S3-compatible server for the session, on loopback (see tests/s3.py): its endpoint."""
    from s3 import serve

    yield from serve()


@pytest.fixture(params=["sqlite", "lite", "postgresql"])
def store(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Store]:
    """The same contract on every store: SQLite, the embedded run's SQLite without SQLAlchemy
    (``lite``), and PostgreSQL, a real throwaway server."""
    if request.param == "lite":
        s = open_embedded(f"sqlite:///{tmp_path / 'store.db'}")
        yield s
        s.close()
        return
    if request.param == "sqlite":
        url = f"sqlite:///{tmp_path / 'store.db'}"
    else:
        server = request.getfixturevalue("postgres")
        url = server.create_database(f"t_{uuid.uuid4().hex[:12]}")
    s = open_store(url)
    yield s
    s.close()
