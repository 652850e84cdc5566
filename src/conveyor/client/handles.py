"""Handles on a run and a backfill: each question is fetched anew through the client's
transport; ``wait()`` follows one to its end with a live display."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, TypeVar
from urllib.parse import quote

from conveyor import display, picture
from conveyor.client.transport import Transport, decode
from conveyor.errors import ConveyorError, ParameterError
from conveyor.notebooks import serving
from conveyor.views import BackfillView, RunDetail, RunView, TaskView

#: While waiting, make sure this often (seconds) that something drives the run (``kick``).
KICK_EVERY = 2.0


class LogText(str):
    """Log text, shown as text (not as a quoted string) when it is a notebook cell's value."""

    def _repr_pretty_(self, p: Any, cycle: bool) -> None:
        p.text(str(self))


class Run:
    """A run. ``status``, ``tasks``, ``logs()`` and ``result()`` ask anew each time; ``view`` is
    the run as fetched last."""

    def __init__(self, transport: Transport, run_id: str, view: RunView | None = None) -> None:
        self._transport = transport
        self.id = run_id
        self._view = view

    @property
    def view(self) -> RunView:
        """The run as fetched last (fetched now if never)."""
        return self._view if self._view is not None else self.refresh()

    def refresh(self) -> RunDetail:
        """The run now, with its tasks."""
        detail = self._transport.run(self.id)
        self._view = detail
        return detail

    @property
    def status(self) -> str:
        """The run's state now: pending, running, succeeded, failed or cancelled."""
        self._view = self._transport.run(self.id, tasks=False)
        return self._view.state

    @property
    def tasks(self) -> TaskList:
        """Each task instance with its state, attempts and error, now."""
        return TaskList(self.refresh().tasks)

    def logs(self, task: str | None = None, *, attempt: int | None = None, tail: int | None = None) -> str:
        """What each attempt printed or logged (of ``task``: its name, label or instance id), each
        under a header line ``==> label attempt N (state) <==``; ``tail``: its last lines only."""
        parts = []
        for log in self._transport.logs(self.id, task, attempt=attempt, tail=tail):
            cut = (f", last {tail} lines" if tail else ", its end") if log.truncated else ""
            body = log.text if not log.text or log.text.endswith("\n") else log.text + "\n"
            parts.append(f"==> {log.task} attempt {log.attempt} ({log.state}{cut}) <==\n{body}")
        return LogText("".join(parts))

    def result(self, task: str) -> Any:
        """The value ``task`` returned: JSON decoded, or unpickled: from the local store, or from
        a server the client trusts (``Client(url, trust_pickles=True)``; else ``UntrustedResult``)."""
        return decode(self._transport.result(self.id, task), f"{task} of run {self.id}")

    def wait(self, progress: bool = True, timeout: float | None = None, poll: float = 0.5) -> RunDetail:
        """Wait until the run has ended (succeeded, failed or cancelled) and return it.
        ``progress``: a live display (HTML in Jupyter, a line in a terminal, nothing otherwise).
        Interrupting the wait does not stop the run (``cancel()`` does). Raises TimeoutError
        after ``timeout`` seconds."""
        _wait(self._poll, self._kick, display.of_run, progress, timeout, poll)
        return self.refresh()

    def _poll(self) -> RunDetail:
        self._view = self._transport.run(self.id, tasks=False)  # state and counts: cheap
        return self._view

    def _kick(self) -> None:
        if self.view.partitions:  # submitted (a run of conveyor run is driven where it runs)
            self._transport.kick()

    def cancel(self) -> Run:
        """Stop the run: nothing new starts, running tasks are stopped."""
        self._view = self._transport.cancel(self.id)
        return self

    def retry(self) -> Run:
        """Run again what failed or was cancelled; what succeeded is kept."""
        self._view = self._transport.retry(self.id)
        self._transport.kick(submitted=True)
        return self

    def __repr__(self) -> str:
        if self._view is None:
            return f"<Run {self.id}>"
        line = display.of_run(self._view).line()
        return f"<Run {self.id} of {self._view.pipeline}: {self._view.state}, {line}>"

    def _repr_html_(self) -> str:
        """The run now: its state and counts, its graph (SVG), its tasks, and links to it."""
        try:
            detail = self.refresh()
        except ConveyorError:
            return display.run_html(self._view) if self._view else display.escape(repr(self))
        try:
            graph = picture.run_svg(self._transport.graph(self.id))
        except ConveyorError:
            graph = None
        return display.run_card(detail, detail.tasks, graph, self._links(detail))

    def _links(self, detail: RunDetail) -> list[tuple[str, str]]:
        """Where to see the run in a browser: the server's web UI and API (none for the local store)."""
        base = getattr(self._transport, "url", None)
        if not isinstance(base, str):
            return []
        run = quote(self.id, safe="")
        links = [
            ("the run in the web UI", f"{base}/#/runs/{run}"),
            ("the run (JSON)", f"{base}/api/v1/runs/{run}"),
        ]
        for t in detail.tasks:
            if serving.notebook_target(t.targets):
                links.append((f"notebook {t.label}", f"{base}/api/v1/runs/{run}/notebook?task={quote(t.id)}"))
        return links


class Backfill:
    """A backfill: one run per logical date. ``status``, ``runs``, ``wait()``, ``cancel()``."""

    def __init__(self, transport: Transport, view: BackfillView) -> None:
        self._transport = transport
        self.id = view.id
        self._view = view

    @property
    def view(self) -> BackfillView:
        """The backfill as fetched last."""
        return self._view

    def refresh(self) -> BackfillView:
        self._view = self._transport.get_backfill(self.id)
        return self._view

    @property
    def status(self) -> str:
        """running, succeeded, failed or cancelled."""
        return self.refresh().state

    @property
    def runs(self) -> list[Run]:
        """The runs of the dates submitted so far, oldest date first."""
        return [Run(self._transport, d.run) for d in self.refresh().dates if d.run]

    def wait(self, progress: bool = True, timeout: float | None = None, poll: float = 0.5) -> BackfillView:
        """Wait until every date has ended ("n/m dates done" on the display) and return the
        backfill. Raises TimeoutError after ``timeout`` seconds."""

        def fetch() -> BackfillView:
            self._transport.kick(backfill=self.id)  # locally: step it, as a scheduler would
            return self.refresh()

        return _wait(fetch, lambda: None, display.of_backfill, progress, timeout, poll)

    def cancel(self) -> Backfill:
        """Submit no more dates, and stop the runs going."""
        self._view = self._transport.cancel_backfill(self.id)
        return self

    def __repr__(self) -> str:
        v = self._view
        return f"<Backfill {self.id} of {v.pipeline}: {v.state}, {v.done}/{v.total} dates done>"

    def _repr_html_(self) -> str:
        try:
            self.refresh()
        except ConveyorError:
            pass
        return display.backfill_html(self._view)


class TaskList(list[TaskView]):
    """A run's task instances; a table in a notebook."""

    def _repr_html_(self) -> str:
        return display.tasks_html(self)


class RunList(list[Run]):
    """A page of runs, newest first; ``total``: how many runs match, on every page."""

    def __init__(self, runs: list[Run], total: int) -> None:
        super().__init__(runs)
        self.total = total

    def _repr_html_(self) -> str:
        return display.runs_html((r.view for r in self), self.total)


W = TypeVar("W", RunDetail, BackfillView)


def _wait(
    fetch: Callable[[], W],
    kick: Callable[[], None],
    snapshot: Callable[[W], display.Snapshot],
    progress: bool,
    timeout: float | None,
    poll: float,
) -> W:
    if poll <= 0:
        raise ParameterError(f"poll {poll} must be positive", {"poll": "must be positive"})
    start = time.monotonic()
    last_kick = start
    shown = display.live(progress)
    try:
        while True:
            snap = snapshot(view := fetch())
            shown.show(snap)
            if snap.ended:
                return view
            now = time.monotonic()
            if timeout is not None and now - start >= timeout:
                raise TimeoutError(
                    f"{snap.kind} {snap.id} of {snap.pipeline} is still {snap.state} after {timeout:g}s "
                    f"({snap.line()}); wait() again, or cancel() it"
                )
            if now - last_kick >= KICK_EVERY:
                last_kick = now
                kick()
            time.sleep(poll if timeout is None else max(0.0, min(poll, start + timeout - now)))
    finally:
        shown.close()
