"""Tickets for runners on engines: the execution API's address and a token that can write only
their one attempt (``conveyor.execution.tokens``), so no engine ever holds the store's URL.

The API is a ``conveyor server`` on the same store when one is configured (its results outlive
the process that launched the attempt); else this process serves it on loopback, for engines
on this machine, until it closes.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

from conveyor.executors.port import Ticket
from conveyor.runner import Job
from conveyor.store import Store, open_store

log = logging.getLogger(__name__)


class Tickets:
    def __init__(self, url: str, api: str | None, home: Path) -> None:
        """``url``: the run's store (the tokens' keys are kept there, and a local API serves
        from it: its own connections, apart from the driver's)."""
        self.store: Store = open_store(url)
        self.api = api.rstrip("/") if api else None
        self.home = home
        self._endpoint: Any = None

    @property
    def local(self) -> bool:
        """Does this process serve the API its runners report to?"""
        return self.api is None or self._endpoint is not None

    def url(self) -> str:
        if self.api is None:
            from conveyor.execution.local import serve_locally

            self._endpoint = serve_locally(self.store, self.home)
            self.api = self._endpoint.url
            log.info("runners on engines report to this process's execution API at %s", self.api)
        return self.api

    def __call__(self, job: Job, *, deferred: bool = False) -> Ticket:
        """The ticket of ``job``'s attempt. ``deferred`` (``conveyor run``, which records its
        attempts in its own commits): when this process serves the API, the runner writes
        nothing per attempt (``Ticket.deferred``), unless it must first wait for another run's
        attempt of the same instance (``job.holder``): that goes through the API."""
        if deferred and self.local and job.holder is None:
            return Ticket("", "", deferred=True)
        return Ticket(self.api or self.url(), self._mint(job))

    def _mint(self, job: Job) -> str:
        from conveyor.execution.tokens import mint

        return mint(self.store, job.run_id, job.instance, job.attempt)

    def close(self) -> None:
        endpoint, self._endpoint = self._endpoint, None
        if endpoint is not None:
            endpoint.close()
            self.api = None
        self.store.close()
