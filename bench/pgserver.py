"""A throwaway PostgreSQL server for scenario f (Debian's ``postgresql`` package), as tests/pg.py
starts one but without pytest, and durable: the server's defaults (``fsync=on``,
``synchronous_commit=on``), so every commit waits for its WAL to reach the disk.

``initdb`` refuses to run as root, so as root the server runs as the ``postgres`` user. It
listens on a free loopback port and a private socket directory, and is stopped when the
``with`` block ends.
"""

from __future__ import annotations

import glob
import os
import shutil
import socket
import subprocess
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass

HOW = (
    "install Debian's postgresql package (apt-get install postgresql) and psycopg (pip install -e '.[test]')"
)
#: The server's settings beyond its defaults; fsync and synchronous_commit keep theirs (on).
OPTIONS = "-c listen_addresses=127.0.0.1 -c max_connections=100"


@dataclass(frozen=True)
class Server:
    port: int
    version: str
    settings: str  # how durable it is, for the report

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"


def missing() -> str:
    """Why there is no PostgreSQL to benchmark against, or '' if there is."""
    try:
        import psycopg  # noqa: F401
    except ImportError:
        return f"no psycopg in this Python: {HOW}"
    return "" if _binaries() else f"no PostgreSQL server binaries: {HOW}"


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


@contextmanager
def server() -> Iterator[Server]:
    bindir = _binaries()
    if bindir is None:
        raise RuntimeError(missing())
    root = tempfile.mkdtemp(prefix="bench-pg-")
    datadir = os.path.join(root, "data")
    as_user: list[str] = []
    if os.geteuid() == 0:
        shutil.chown(root, "postgres", "postgres")
        as_user = ["runuser", "-u", "postgres", "--"]

    def run(*args: str) -> str:
        out = subprocess.run([*as_user, *args], check=True, capture_output=True, text=True, timeout=120)
        return out.stdout

    run(f"{bindir}/initdb", "-D", datadir, "-A", "trust", "-U", "postgres", "--no-sync")
    port = _free_port()
    log = os.path.join(root, "server.log")
    ctl = f"{bindir}/pg_ctl"
    run(ctl, "-D", datadir, "-o", f"-p {port} -k {root} {OPTIONS}", "-l", log, "-w", "start")
    try:
        import psycopg

        with psycopg.connect(f"host=127.0.0.1 port={port} user=postgres dbname=postgres") as conn:
            get = conn.execute
            version = str(get("SHOW server_version").fetchone()[0])  # type: ignore[index]
            fsync, sync = (str(get(f"SHOW {k}").fetchone()[0]) for k in ("fsync", "synchronous_commit"))  # type: ignore[index]
        yield Server(port, version, f"fsync={fsync}, synchronous_commit={sync}")
    finally:
        run(ctl, "-D", datadir, "-m", "immediate", "-w", "stop")
        shutil.rmtree(root, ignore_errors=True)
