"""``conveyor run`` and ``retry``'s driving of a run in this process, with its live progress.

Kept apart from Typer (``app``) so that ``conveyor run`` can start without it (``quick``).
"""

from __future__ import annotations

from conveyor import engine
from conveyor import params as P
from conveyor.cli.output import EXIT, console, resources, summary
from conveyor.driver import RunResult


def drive(prepared: engine.Prepared, *, force: bool, retry: bool, grace: float) -> RunResult:
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
        )
    finally:
        if live:
            live.stop()
    summary(result, prepared.run.id)
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
) -> int:
    """``conveyor run``: run a pipeline here and now; the exit code."""
    values = P.parse_assignments(param or [])
    prepared = engine.prepare(
        target,
        values,
        db=db,
        from_text=True,
        new=new,
        force=force,
        workers=workers,
        resources=resources(resource),
    )
    result = drive(prepared, force=force, retry=False, grace=grace)
    return EXIT[result.state]
