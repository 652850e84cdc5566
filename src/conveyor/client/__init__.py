"""The Python client: what a notebook or a script asks of Conveyor.

    from conveyor import Client

    c = Client()                      # the local store; or Client("http://127.0.0.1:8000")
    r = c.run("hello", n=3)           # a submitted run: a handle
    r.wait()                          # a live progress display; the run as it ended
    r.result("square")                # the value the task returned

Two transports with the same methods (``transport.Transport``): ``local.Local``, the service
over the local store, which starts a scheduler in the background when none runs (submitted runs
need one); and ``http.Http``, the REST API of ``conveyor server``, whose error answers become
ConveyorErrors again. Every method returns the views of ``conveyor.views``, or a handle
(``Run``, ``Backfill``) that fetches them.
"""

from __future__ import annotations

import datetime as dt
import subprocess
from pathlib import Path
from typing import Any

from conveyor.client.handles import Backfill, LogText, Run, RunList
from conveyor.client.http import Http
from conveyor.client.local import Local, open_local
from conveyor.client.transport import Transport, moment, when, wire_params
from conveyor.errors import ParameterError
from conveyor.views import Health, PipelineView, SchedulerView, ScheduleView


class Client:
    """Conveyor from Python.

    ``Client()``: the local store (``db``, else ``$CONVEYOR_DB``, else the project's
    ``.conveyor/conveyor.db``) and project (``project``, else the ``conveyor.toml`` here or
    above); a pipeline is named by its name in ``conveyor.toml`` or by a target like
    ``pipes.py:hello``. ``Client(url)``: a ``conveyor server``; pipelines by name only; its
    ``token`` (default: ``$CONVEYOR_TOKEN``, else the one ``conveyor login`` kept for ``url``).

    A task's result that is not JSON is a pickle, and loading a pickle runs the code it names:
    the local store's are loaded, a server's only with ``trust_pickles=True`` (else
    ``Run.result`` raises ``UntrustedResult``, saying so).
    """

    def __init__(
        self,
        url: str | None = None,
        *,
        db: str | None = None,
        project: str | Path | None = None,
        timeout: float = 30.0,
        token: str | None = None,
        trust_pickles: bool = False,
    ) -> None:
        self.url = url
        self.transport: Transport
        if url is None:
            self.transport = open_local(db, project)
        elif db is not None or project is not None:
            raise ParameterError(
                "Client(url) talks to a server, which has its own store and project: give db and "
                "project to conveyor server, not to the client",
                {"db" if db is not None else "project": "not with a url"},
            )
        else:
            self.transport = Http(url, timeout, token=token, trust_pickles=trust_pickles)

    @property
    def scheduler(self) -> subprocess.Popen[bytes] | None:
        """The scheduler this client last started in the background (local mode), if any."""
        return self.transport.background.process if isinstance(self.transport, Local) else None

    # -- pipelines ------------------------------------------------------------------------------
    def pipelines(self) -> list[PipelineView]:
        """The project's pipelines, with their parameters and schedules."""
        return self.transport.pipelines()

    def pipeline(self, name: str) -> PipelineView:
        return self.transport.pipeline(name)

    def reload(self) -> list[PipelineView]:
        """Load the project's pipelines anew (after editing their code)."""
        return self.transport.reload()

    # -- runs -----------------------------------------------------------------------------------
    def run(self, pipeline: str, /, **params: Any) -> Run:
        """Submit a run of ``pipeline`` with ``params`` (Python values: numbers, text, dates,
        paths, enums, lists); returns its handle at once."""
        view = self.transport.trigger(pipeline, wire_params(params))
        self.transport.kick(submitted=True)
        return Run(self.transport, view.id, view)

    def get(self, run_id: str) -> Run:
        """The run with this id."""
        detail = self.transport.run(run_id)
        return Run(self.transport, detail.id, detail)

    def runs(
        self,
        *,
        pipeline: str | None = None,
        state: str | None = None,
        since: str | dt.date | None = None,
        until: str | dt.date | None = None,
        limit: int = 20,
        offset: int = 0,
    ) -> RunList:
        """The runs, newest first (created from ``since`` to ``until``): a list of ``Run``
        handles, at most ``limit`` from ``offset``, whose ``total`` counts every match."""
        page = self.transport.runs(
            pipeline=pipeline,
            state=state,
            since=moment(since, "since"),
            until=moment(until, "until"),
            limit=limit,
            offset=offset,
        )
        return RunList([Run(self.transport, v.id, v) for v in page.items], page.total)

    # -- backfills --------------------------------------------------------------------------------
    def backfill(
        self,
        pipeline: str,
        start: str | dt.date,
        end: str | dt.date,
        /,
        *,
        every: str = "day",
        max_parallel: int = 1,
        **params: Any,
    ) -> Backfill:
        """One run of ``pipeline`` per logical date from ``start`` to ``end`` (included), every
        day, hour, week or month, at most ``max_parallel`` going at a time; ``params``: its other
        parameters. Dates whose run already succeeded are skipped."""
        view = self.transport.backfill(
            pipeline,
            when(start, "start"),
            when(end, "end"),
            every=every,
            max_parallel=max_parallel,
            params=wire_params(params),
        )
        self.transport.kick(submitted=True)
        return Backfill(self.transport, view)

    def backfills(self, *, state: str | None = None, limit: int = 50) -> list[Backfill]:
        """The backfills, newest first."""
        return [Backfill(self.transport, v) for v in self.transport.backfills(state=state, limit=limit)]

    def get_backfill(self, backfill_id: str) -> Backfill:
        return Backfill(self.transport, self.transport.get_backfill(backfill_id))

    # -- schedules, schedulers, health --------------------------------------------------------------
    def schedules(self) -> list[ScheduleView]:
        return self.transport.schedules()

    def pause(self, pipeline: str) -> ScheduleView:
        """Start no run on the pipeline's schedule until ``resume``."""
        return self.transport.pause(pipeline, True)

    def resume(self, pipeline: str) -> ScheduleView:
        """Start runs on the schedule again (the ticks missed meanwhile as after downtime)."""
        return self.transport.pause(pipeline, False)

    def schedulers(self) -> list[SchedulerView]:
        """The scheduler daemons of the store, their heartbeats and leases."""
        return self.transport.schedulers()

    def health(self) -> Health:
        return self.transport.health()

    # -- lifetime ---------------------------------------------------------------------------------
    def close(self) -> None:
        """Close the store or the connection. A scheduler started in the background goes on
        until nothing is left to claim."""
        self.transport.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        if isinstance(self.transport, Local):
            from conveyor.store.connection import safe_url

            return f"<Client of the local store {safe_url(self.transport.store.url)}>"
        return f"<Client of {self.url}>"


__all__ = ["Backfill", "Client", "LogText", "Run", "RunList", "Transport"]
