"""The execution API on loopback, for a run driven without a server (`conveyor run --executor
dask`): the same routes over the run's store, on uvicorn in a thread of the driving process.

    endpoint = serve_locally(store, home)
    ... Ticket(endpoint.url, mint(store, run_id, instance, attempt)) ...
    endpoint.close()
"""

from __future__ import annotations

import socket
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor.errors import CannotListen
from conveyor.store import Store

#: Seconds to wait for the server to listen, and to stop.
STARTUP = 10.0


@dataclass
class Endpoint:
    """A running execution API: its ``url`` (``http://127.0.0.1:PORT``); ``close()`` stops it."""

    url: str
    _server: Any
    _thread: threading.Thread

    def close(self) -> None:
        self._server.should_exit = True
        self._thread.join(STARTUP)

    def __enter__(self) -> Endpoint:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def app_for(store: Store, home: Path | None = None, max_body: int | None = None) -> Any:
    """A FastAPI app serving only the execution API over ``store``; ``max_body``: the largest
    request body in bytes (default: the REST API's)."""
    from fastapi import FastAPI

    from conveyor.api import problems
    from conveyor.api.headers import NoSniff
    from conveyor.api.limits import MAX_BODY, BodyLimit
    from conveyor.execution.routes import mount
    from conveyor.logfiles import log_limit

    app = FastAPI(openapi_url=None, docs_url=None, redoc_url=None)
    problems.install(app)
    mount(app, store, home, log_limit())
    app.add_middleware(BodyLimit, max_body=max_body or MAX_BODY)
    app.add_middleware(NoSniff)
    return app


def serve_locally(
    store: Store,
    home: Path | None = None,
    *,
    host: str = "127.0.0.1",
    port: int = 0,
    max_body: int | None = None,
) -> Endpoint:
    """Serve the execution API over ``store`` on ``host`` (loopback) and ``port`` (default: a
    free one), in a background thread; ``home``: where logs go for attempts the store has no
    log file for; ``max_body``: the largest request body (bytes)."""
    import uvicorn

    sock = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    try:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.bind((host, port))
    except OSError as exc:
        sock.close()
        raise CannotListen(
            f"the execution API cannot listen on {host}:{port}: {exc.strerror or exc}"
        ) from None
    config = uvicorn.Config(app_for(store, home, max_body), log_level="warning", lifespan="off")
    server = uvicorn.Server(config)
    thread = threading.Thread(
        target=server.run, kwargs={"sockets": [sock]}, name="conveyor-execution-api", daemon=True
    )
    thread.start()
    bound = sock.getsockname()[1]
    deadline = time.monotonic() + STARTUP
    while not server.started:
        if not thread.is_alive() or time.monotonic() > deadline:
            server.should_exit = True
            sock.close()
            raise CannotListen(f"the execution API did not start on {host}:{bound}")
        time.sleep(0.02)
    return Endpoint(f"http://{host}:{bound}", server, thread)
