"""``conveyor pipelines`` and ``backfill``: a project's pipelines, and runs over date ranges."""

from __future__ import annotations

import json
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from conveyor import params as P
from conveyor.cli.common import (
    DbOpt,
    JsonOpt,
    ParamOpt,
    ServerOpt,
    connect,
    console,
    err_console,
    print_table,
    state_text,
)
from conveyor.errors import LoadError

if TYPE_CHECKING:
    from conveyor.client.transport import Transport


def pipelines(as_json: JsonOpt = False, db: DbOpt = None, server: ServerOpt = None) -> None:
    """List the pipelines of this project's conveyor.toml, with their parameters and schedules."""
    backend = connect(server, db)
    if _without_project(backend):
        raise LoadError(_NO_PROJECT)
    views = backend.pipelines()
    if as_json:
        print(json.dumps([v.model_dump(mode="json") for v in views], indent=2))
        return
    table = Table(box=None, header_style="bold")
    for col in ("PIPELINE", "PARAMETERS", "SCHEDULE", "TARGET"):
        table.add_column(col, overflow="fold")
    for v in views:
        params = ", ".join(
            f"{p.name}: {p.type}" + ("" if p.required else f" = {json.dumps(p.default)}") for p in v.params
        )
        sched = (
            "-" if v.schedule is None else v.schedule.description + (" paused" if v.schedule.paused else "")
        )
        table.add_row(escape(v.name), escape(params or "-"), escape(sched), escape(v.target))
    print_table(table)


def backfill(
    pipeline: Annotated[str, typer.Argument(help="A pipeline of conveyor.toml by name, or a TARGET.")],
    start: Annotated[
        str, typer.Option("--from", help="The first logical date (2026-11-01 or 2026-11-01T06:00).")
    ],
    end: Annotated[str, typer.Option("--to", help="The last logical date, included.")],
    param: ParamOpt = None,
    every: Annotated[str, typer.Option(help="day, hour, week or month.")] = "day",
    max_parallel: Annotated[int, typer.Option("--max-parallel", min=1, help="Runs at a time.")] = 1,
    detach: Annotated[
        bool, typer.Option("--detach", help="Print the backfill's id and return; the schedulers go on.")
    ] = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Run a pipeline once per logical date of a range; dates already done are skipped.

    The backfill is kept in the store and stepped by the schedulers; this command follows it
    (Ctrl-C cancels it) unless --detach."""
    from conveyor.backfills import ENDED

    service = connect(server, db)
    view = service.backfill(
        pipeline, start, end, every=every, max_parallel=max_parallel, params=P.parse_assignments(param or [])
    )
    if detach:
        print(view.id)
        _warn_without_scheduler(service)
        return
    # With no scheduler on a local store, one starts in the background and exits once idle
    # (the Python client does the same): a backfill never waits for a scheduler nobody started.
    service.kick(submitted=True)
    last_kick = time.monotonic()
    skipped = view.counts.get("skipped", 0)
    console.print(
        f"Backfill {view.id} of {escape(view.pipeline)}: {view.total} dates from "
        f"{view.dates[0].when:%Y-%m-%d %H:%M} to {view.dates[-1].when:%Y-%m-%d %H:%M}"
        + (f"; {skipped} already done" if skipped else ""),
        soft_wrap=True,
    )
    live = Live(console=console, refresh_per_second=4, transient=True) if console.is_terminal else None
    if live:
        live.start()
    last, shown = "", {d.run for d in view.dates if d.run}
    try:
        while True:
            view = service.get_backfill(view.id)
            for d in view.dates:
                if d.run and d.run not in shown:
                    shown.add(d.run)
                    console.print(f"  {d.when:%Y-%m-%d %H:%M}: run {d.run}")
            c = view.counts
            line = f"{view.done} of {view.total} dates done" + "".join(
                f", {c[k]} {k}" for k in ("running", "pending", "failed", "cancelled") if c.get(k)
            )
            if live:
                live.update(line)
            elif line != last:
                console.print(line)
            last = line
            if view.state != "running":
                break
            if time.monotonic() - last_kick >= 2.0:  # as the client's wait() does
                last_kick = time.monotonic()
                service.kick(backfill=view.id)
            time.sleep(0.25)
    except KeyboardInterrupt:
        if live:
            live.stop()
            live = None
        service.cancel_backfill(view.id)
        console.print(f"[yellow]Backfill {view.id} cancelled:[/] its running runs were asked to stop.")
        raise typer.Exit(130) from None
    finally:
        if live:
            live.stop()
    failed = [d for d in view.dates if d.state in ("failed", "cancelled")]
    summary_line = ", ".join(f"{view.counts[k]} {k}" for k in ENDED if view.counts.get(k))
    colour = "red" if failed else "green"
    console.print(f"[{colour}]Backfill of {escape(view.pipeline)} ended[/]: {summary_line}")
    for d in failed:
        console.print(f"  {d.when:%Y-%m-%d %H:%M}: run {d.run} {d.state} (conveyor show {d.run})")
    raise typer.Exit(1 if failed else 0)


def backfills(
    cancel: Annotated[
        str | None, typer.Option("--cancel", metavar="ID", help="Cancel this backfill.")
    ] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """List backfills with their progress; --cancel ID stops one."""
    service = connect(server, db)
    if cancel:
        view = service.cancel_backfill(cancel)
        console.print(f"Backfill {view.id} is {view.state}.")
        return
    views = service.backfills()
    if as_json:
        print(json.dumps([v.model_dump(mode="json") for v in views], indent=2))
        return
    if not views:
        console.print("No backfills yet. Start one with: conveyor backfill PIPELINE --from DATE --to DATE")
        return
    table = Table(box=None, header_style="bold")
    for col in ("BACKFILL", "PIPELINE", "STATE", "DATES", "FROM", "TO", "EVERY"):
        table.add_column(col, no_wrap=True)
    for v in views:
        table.add_row(
            v.id,
            escape(v.pipeline),
            state_text(v.state),
            f"{v.done}/{v.total}",
            f"{v.dates[0].when:%Y-%m-%d %H:%M}",
            f"{v.dates[-1].when:%Y-%m-%d %H:%M}",
            v.every,
        )
    print_table(table)


def schedules(
    pause: Annotated[
        str | None, typer.Option("--pause", metavar="PIPELINE", help="Pause its schedule.")
    ] = None,
    resume: Annotated[
        str | None, typer.Option("--resume", metavar="PIPELINE", help="Resume its schedule.")
    ] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """List this project's schedules: next and last tick, paused or not; pause or resume one."""
    service = connect(server, db)
    if _without_project(service):
        raise LoadError(_NO_PROJECT)
    for name, paused in ((pause, True), (resume, False)):
        if name:
            view = service.pause(name, paused)
            console.print(f"Schedule of {escape(view.pipeline)}: {'paused' if view.paused else 'resumed'}.")
    if pause or resume:
        return
    views = service.schedules()
    if as_json:
        print(json.dumps([v.model_dump(mode="json") for v in views], indent=2))
        return
    table = Table(box=None, header_style="bold")
    for col in ("PIPELINE", "SCHEDULE", "STATE", "LAST TICK", "NEXT TICK"):
        table.add_column(col, no_wrap=True)
    for v in views:
        table.add_row(
            escape(v.pipeline),
            escape(v.description),
            "[yellow]⏸ paused[/]" if v.paused else "[green]▶ active[/]",
            f"{v.last_tick:%Y-%m-%d %H:%M %Z}" if v.last_tick else "-",
            f"{v.next_tick:%Y-%m-%d %H:%M %Z}" if v.next_tick else "-",
        )
    if not views:
        console.print("No pipeline of this project has a schedule.")
        return
    print_table(table)


_NO_PROJECT = (
    "no conveyor.toml here or above; create one listing your pipelines: "
    '[project] pipelines = ["pipelines/sales.py"]'
)


def _without_project(backend: Transport) -> bool:
    """Acting on the local store with no conveyor.toml here or above (a server has its own)."""
    from conveyor.service import Service

    return isinstance(backend, Service) and backend.project is None


def _warn_without_scheduler(service: Transport) -> None:
    if not any(s.state == "running" for s in service.schedulers()):
        err_console.print(
            "[yellow]No scheduler is running on this store: start one with conveyor scheduler.[/]"
        )
