"""A real Conveyor API for tests, on a free loopback port: the ``conveyor server`` command as a
process, or an app on uvicorn in a thread of the test."""

from __future__ import annotations

import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import httpx
import uvicorn

from conftest import Project


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def wait_until(check: Callable[[], Any], timeout: float = 30, every: float = 0.1, what: str = "") -> Any:
    """The first truthy result of ``check``, or an AssertionError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while True:
        found = check()
        if found:
            return found
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout}s waiting for {what or check}")
        time.sleep(every)


@dataclass
class ServerProcess:
    """A running ``conveyor server``; its stdout and stderr go to ``log_path``."""

    url: str
    proc: subprocess.Popen[bytes]
    log_path: Path

    def log(self) -> str:
        return self.log_path.read_text(errors="replace")

    def client(self, **kwargs: Any) -> httpx.Client:
        return httpx.Client(base_url=self.url, timeout=30, **kwargs)

    def stop(self, sig: int = signal.SIGTERM, timeout: float = 30) -> int:
        if self.proc.poll() is None:
            self.proc.send_signal(sig)
            try:
                self.proc.wait(timeout)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
                raise AssertionError(
                    f"conveyor server did not stop within {timeout}s:\n{self.log()}"
                ) from None
        return self.proc.returncode


def start_server(project: Project, *args: str, db: str | None = None, name: str = "server") -> ServerProcess:
    """``conveyor server`` on the project and a free port; returns once /healthz answers."""
    port = free_port()
    log_path = project.root / f"{name}.log"
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "conveyor",
                "server",
                "--port",
                str(port),
                "--db",
                db or project.db,
                "--project",
                str(project.root),
                *args,
            ],
            cwd=project.root,
            env=project.env(),
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    served = ServerProcess(f"http://127.0.0.1:{port}", proc, log_path)

    def up() -> bool:
        if proc.poll() is not None:
            raise AssertionError(f"conveyor server exited {proc.returncode}:\n{served.log()}")
        try:
            return httpx.get(f"{served.url}/healthz", timeout=2).status_code == 200
        except httpx.TransportError:
            return False

    try:
        wait_until(up, timeout=30, what="conveyor server's /healthz")
    except BaseException:
        served.stop()
        raise
    return served


@contextmanager
def in_thread(app: Any) -> Iterator[str]:
    """Serve ``app`` with uvicorn in a thread of this process; yields its URL."""
    port = free_port()
    config = uvicorn.Config(
        app, host="127.0.0.1", port=port, log_level="warning", log_config=None, lifespan="off"
    )
    server = uvicorn.Server(config)
    thread = threading.Thread(target=server.run, name="uvicorn", daemon=True)
    thread.start()
    try:
        wait_until(lambda: server.started or not thread.is_alive(), timeout=10, what="uvicorn to start")
        assert server.started, "uvicorn did not start"
        yield f"http://127.0.0.1:{port}"
    finally:
        server.should_exit = True
        thread.join(10)


def wait_for_run(client: httpx.Client, run_id: str, timeout: float = 30) -> dict[str, Any]:
    """The run once it has ended."""

    def ended() -> dict[str, Any] | None:
        answer = client.get(f"/api/v1/runs/{run_id}")
        if answer.status_code == 503:  # a connection the store kept across a restart: replaced
            return None
        run: dict[str, Any] = answer.json()
        return run if run["state"] in ("succeeded", "failed", "cancelled") else None

    return dict(wait_until(ended, timeout=timeout, every=0.1, what=f"run {run_id} to end"))


#: The test project's pipelines: quick (an int parameter), slow (to cancel or follow), daily (a
#: logical date, for backfills), nightly (a schedule), kept (a result only pickle can hold).
PIPES = '''
import datetime as dt
import time

from conveyor import pipeline, task

@task
def double(n: int) -> int:
    print(f"doubling {n}")
    return n * 2

@pipeline
def quick(n: int):
    """Double a number."""
    double(n)

@task
def nap(seconds: float) -> str:
    print("napping", flush=True)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        print(f"tick {i}", flush=True)
        i += 1
        time.sleep(0.1)
    return "rested"

@pipeline
def slow(seconds: float = 60.0):
    nap(seconds)

@task
def day(when: dt.date) -> str:
    return when.isoformat()

@pipeline
def daily(logical_date: dt.date = dt.date(2026, 1, 1)):
    day(logical_date)

@pipeline(schedule="0 3 * * *")
def nightly(logical_date: dt.date = dt.date(2026, 1, 1)):
    day(logical_date)

@task
def bag(n: int) -> set:
    return {n}

@pipeline
def kept(n: int = 1):
    bag(n)
'''


def make_project(project: Project) -> Project:
    """The test project: conveyor.toml listing pipes.py."""
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    project.write("pipes.py", PIPES)
    return project
