"""A throwaway real PostgreSQL server for tests (Debian's ``postgresql`` package).

``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user. The
server listens on a free loopback port and a private socket directory, and is stopped (by its
own pg_ctl, which knows its PID) when the test session ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

HOW = (
    "install Debian's postgresql package (apt-get install postgresql) and psycopg (pip install -e '.[test]')"
)


def _binaries() -> str | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    if found:
        return os.path.dirname(found[-1])
    initdb = shutil.which("initdb")
    return os.path.dirname(initdb) if initdb else None


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


@dataclass
class PostgresServer:
    bindir: str
    datadir: str
    port: int
    as_user: list[str]
    options: str = ""

    def url(self, database: str = "postgres") -> str:
        return f"postgresql+psycopg://postgres@127.0.0.1:{self.port}/{database}"

    def ctl(self, *args: str) -> None:
        subprocess.run(
            [*self.as_user, f"{self.bindir}/pg_ctl", "-D", self.datadir, *args],
            check=True,
            capture_output=True,
            timeout=60,
        )

    def stop(self) -> None:
        """Stop the server at once, as a crash would (the tests start it again)."""
        self.ctl("-m", "immediate", "-w", "stop")

    def start(self) -> None:
        self.ctl(
            "-o", self.options, "-l", os.path.join(os.path.dirname(self.datadir), "server.log"), "-w", "start"
        )

    def create_database(self, name: str) -> str:
        import psycopg

        with psycopg.connect(
            f"host=127.0.0.1 port={self.port} user=postgres dbname=postgres", autocommit=True
        ) as conn:
            conn.execute(f'CREATE DATABASE "{name}"')
        return self.url(name)


def start_server() -> Iterator[PostgresServer]:
    bindir = _binaries()
    try:
        import psycopg  # noqa: F401
    except ImportError:
        bindir = None
    if bindir is None:
        if os.environ.get("CI"):
            pytest.fail(f"PostgreSQL is needed in CI: {HOW}")
        pytest.skip(f"no PostgreSQL here: {HOW}")
    root = tempfile.mkdtemp(prefix="conveyor-pg-")
    datadir = os.path.join(root, "data")
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]
    subprocess.run(
        [*as_user, f"{bindir}/initdb", "-D", datadir, "-A", "trust", "-U", "postgres", "--no-sync"],
        check=True,
        capture_output=True,
        timeout=120,
    )
    port = _free_port()
    options = f"-p {port} -k {root} -c listen_addresses=127.0.0.1 -c fsync=off -c max_connections=200"
    server = PostgresServer(bindir, datadir, port, as_user, options)
    server.start()
    try:
        yield server
    finally:
        server.ctl("-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
