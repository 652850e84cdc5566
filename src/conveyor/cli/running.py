"""``conveyor run`` and ``retry``'s driving of a run in this process, with its live progress.

Kept apart from Typer (``app``) so that ``conveyor run`` can start without it (``quick``).
"""

from __future__ import annotations

import time
from contextlib import nullcontext
from typing import TYPE_CHECKING

from conveyor import engine
from conveyor import params as P
from conveyor.cli.output import EXIT, console, exit_code, resources, summary
from conveyor.driver import RunResult
from conveyor.errors import RunBusy

if TYPE_CHECKING:
    from conveyor.store import Store


def drive(
    prepared: engine.Prepared, *, force: bool, retry: bool, grace: float, cache: bool = True
) -> RunResult:
    """Drive a prepared run to its end, showing its progress; print how it ended."""
    from rich.markup import escape

    from conveyor.cli.progress import RunProgress

    run, graph = prepared.run, prepared.graph
    how = "Resuming" if prepared.resumed else "Starting"
    extra = f" (it was {run.state})" if prepared.resumed and run.state != "pending" else ""
    console.print(f"{how} run [bold]{run.id}[/] of {escape(run.pipeline)}: {len(graph)} tasks{extra}")
    progress = RunProgress(console, len(graph))
    live = None
    if console.is_terminal:
        from rich.live import Live

        live = Live(progress, console=console, refresh_per_second=8, transient=True)
        live.start()
    try:
        result = engine.drive(
            prepared,
            force=force,
            retry=retry,
            grace=grace,
            on_change=progress.on_change,
            on_start=progress.attach,
            release=False,
            cache=cache,
        )
    finally:
        if live:
            live.stop()
    summary(result, prepared.run.id)
    reused = sum(1 for _, made_by in prepared.store.cached_marks(run.id).values() if made_by)
    if reused:
        console.print(
            f"  {reused} reused from earlier runs: code, parameters, inputs and environment unchanged "
            f"(conveyor show {run.id}; --no-cache to execute them)."
        )
    engine.release(prepared)  # told: a process killed before this leaves the run "unseen"
    return result


def follow(store: Store, busy: RunBusy) -> RunResult | None:
    """Another process drives the run: follow it to its end (None: it stopped; resume it)."""
    from rich.markup import escape

    assert busy.run_id is not None
    who = f" by {busy.owner}" if busy.owner else ""
    console.print(
        f"Run [bold]{busy.run_id}[/] of the same pipeline and parameters is being driven{escape(who)}; "
        "following it (Ctrl-C stops following, not the run)"
    )
    with console.status("waiting for it to end", spinner="dots") if console.is_terminal else nullcontext():
        result = engine.follow(store, busy.run_id)
    if result is None:
        console.print(f"The process driving run {busy.run_id} stopped; resuming it here.")
        return None
    summary(result, busy.run_id)
    return result


def run(
    target: str,
    param: list[str] | None = None,
    *,
    force: bool = False,
    new: bool = False,
    workers: int | None = None,
    resource: list[str] | None = None,
    grace: float = 10.0,
    db: str | None = None,
    executor: str | None = None,
    executor_address: str | None = None,
    no_cache: bool = False,
) -> int:
    """``conveyor run``: run a pipeline here and now; the exit code. If another process is
    driving the same pipeline with the same parameters, follow that run instead of starting a
    second one; if such a run succeeded moments ago unseen (its process died before saying so),
    show it."""
    from conveyor.executors.choice import choose
    from conveyor.limits import read as read_limits
    from conveyor.store import open_embedded

    chosen = choose(executor, address=executor_address)
    read_limits()  # a bad [logs] or [params] setting is one line now, not a default in the workers
    values = P.parse_assignments(param or [])
    store = open_embedded(db)
    while True:
        try:
            prepared = engine.prepare(
                target,
                values,
                store=store,
                from_text=True,
                new=new,
                force=force,
                workers=workers,
                resources=resources(resource),
                executor=chosen,
            )
        except RunBusy as busy:
            if busy.run_id is None:
                raise
            followed = follow(store, busy)
            if followed is None:
                continue
            return EXIT[followed.state]
        break
    if prepared.unseen:
        engine.release(prepared)
        ago = time.time() - (prepared.run.ended_at or time.time())
        console.print(
            f"Run [bold]{prepared.run.id}[/] of the same pipeline and parameters succeeded {ago:.0f}s ago "
            "(the process that ran it stopped before it could say so); showing it; use --force to run again"
        )
        shown = engine.follow(store, prepared.run.id)
        assert shown is not None
        summary(shown, prepared.run.id)
        return EXIT[shown.state]
    result = drive(prepared, force=force, retry=False, grace=grace, cache=not no_cache)
    return exit_code(result)
