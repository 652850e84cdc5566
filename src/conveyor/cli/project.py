"""``conveyor pipelines`` and ``backfill``: a project's pipelines, and runs over date ranges."""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from conveyor import engine
from conveyor import params as P
from conveyor.cli.common import DbOpt, JsonOpt, ParamOpt, console, err_console
from conveyor.cli.scheduling import SILENT
from conveyor.errors import LoadError, ParameterError
from conveyor.store import open_store


def pipelines(as_json: JsonOpt = False) -> None:
    """List the pipelines of this project's conveyor.toml, with their parameters and schedules."""
    from conveyor import project

    found = project.find()
    if found is None:
        raise LoadError(
            f"no {project.FILE} here or above; create one listing your pipelines: "
            '[project] pipelines = ["pipelines/sales.py"]'
        )
    entries = found.pipelines()
    rows: list[dict[str, Any]] = [
        {
            "name": e.pipeline.name,
            "target": e.target,
            "description": e.pipeline.description,
            "params": [
                {
                    "name": p.name,
                    "type": p.type.name,
                    "required": p.default is P.MISSING,
                    "default": None if p.default is P.MISSING else p.type.to_json(p.default),
                }
                for p in e.pipeline.params
            ],
            "schedule": None
            if e.pipeline.schedule is None
            else {
                "cron": e.pipeline.schedule.cron,
                "timezone": e.pipeline.schedule.timezone,
                "catchup": e.pipeline.schedule.catchup,
            },
        }
        for e in entries
    ]
    if as_json:
        print(json.dumps(rows, indent=2))
        return
    table = Table(box=None, header_style="bold")
    for col in ("PIPELINE", "PARAMETERS", "SCHEDULE", "TARGET"):
        table.add_column(col, overflow="fold")
    for e, row in zip(entries, rows, strict=True):
        params = ", ".join(
            f"{p['name']}: {p['type']}" + ("" if p["required"] else f" = {json.dumps(p['default'])}")
            for p in row["params"]
        )
        sched = e.pipeline.schedule.describe() if e.pipeline.schedule else "-"
        table.add_row(escape(e.pipeline.name), escape(params or "-"), escape(sched), escape(e.target))
    console.print(table)


def backfill(
    pipeline: Annotated[str, typer.Argument(help="A pipeline of conveyor.toml by name, or a TARGET.")],
    start: Annotated[
        str, typer.Option("--from", help="The first logical date (2026-11-01 or 2026-11-01T06:00).")
    ],
    end: Annotated[str, typer.Option("--to", help="The last logical date, included.")],
    param: ParamOpt = None,
    every: Annotated[str, typer.Option(help="day, hour, week or month.")] = "day",
    max_parallel: Annotated[int, typer.Option("--max-parallel", min=1, help="Runs at a time.")] = 1,
    db: DbOpt = None,
) -> None:
    """Run a pipeline once per logical date of a range; dates already done are skipped."""
    from conveyor import project
    from conveyor.backfills import Backfill, dates
    from conveyor.loader import load_pipeline

    if ":" in pipeline or pipeline.endswith(".py"):
        pipe = load_pipeline(pipeline)
        ref, workdir = engine.canonical_target(pipeline, pipe.name), str(Path.cwd())
    else:
        found = project.find()
        entries = {e.pipeline.name: e for e in (found.pipelines() if found else [])}
        if pipeline not in entries:
            known = ", ".join(sorted(entries)) or f"none: no {project.FILE} here or above"
            raise LoadError(f"no pipeline {pipeline!r} in this project; its pipelines: {known}")
        pipe, ref = entries[pipeline].pipeline, entries[pipeline].target
        assert found is not None
        workdir = str(found.root)
    times = dates(_when(start, "--from"), _when(end, "--to"), every)
    store = open_store(db)
    given = _parsed(pipe, P.parse_assignments(param or []))
    fill = Backfill(store, pipe, ref, times, given, max_parallel=max_parallel, workdir=workdir)
    if not any(s.state == "running" and time.time() - s.heartbeat < SILENT for s, _ in store.schedulers()):
        err_console.print(
            "[yellow]No scheduler is running on this store: start one with conveyor scheduler.[/]"
        )
    skipped = fill.counts().get("skipped", 0)
    console.print(
        f"Backfill of {escape(pipe.name)}: {len(times)} dates from {times[0]:%Y-%m-%d %H:%M} to "
        f"{times[-1]:%Y-%m-%d %H:%M}" + (f"; {skipped} already done" if skipped else "")
    )
    live = Live(console=console, refresh_per_second=4, transient=True) if console.is_terminal else None
    if live:
        live.start()
    last = ""
    try:
        while True:
            for slot in fill.step():
                assert slot.run is not None
                console.print(f"  {slot.when:%Y-%m-%d %H:%M}: run {slot.run.id}")
            c = fill.counts()
            ended = sum(c.get(k, 0) for k in ("succeeded", "failed", "cancelled", "skipped"))
            line = f"{ended} of {len(times)} dates done" + "".join(
                f", {c[k]} {k}" for k in ("running", "pending", "failed", "cancelled") if c.get(k)
            )
            if live:
                live.update(line)
            elif line != last:
                console.print(line)
            last = line
            if fill.done:
                break
            time.sleep(0.25)
    except KeyboardInterrupt:
        if live:
            live.stop()
            live = None
        fill.cancel()
        console.print("[yellow]Backfill cancelled:[/] its running runs were asked to stop.")
        raise typer.Exit(130) from None
    finally:
        if live:
            live.stop()
    c = fill.counts()
    failed = [s for s in fill.slots if s.state in ("failed", "cancelled")]
    summary_line = ", ".join(
        f"{c[k]} {k}" for k in ("succeeded", "skipped", "failed", "cancelled") if c.get(k)
    )
    colour = "red" if failed else "green"
    console.print(f"[{colour}]Backfill of {escape(pipe.name)} ended[/]: {summary_line}")
    for s in failed:
        assert s.run is not None
        console.print(f"  {s.when:%Y-%m-%d %H:%M}: run {s.run.id} {s.state} (conveyor show {s.run.id})")
    raise typer.Exit(1 if failed else 0)


def _parsed(pipe: Any, values: dict[str, str]) -> dict[str, Any]:
    """``-p`` values parsed by the pipeline's types (unknown names are refused when a run is made)."""
    from conveyor.pipelines import LOGICAL_DATE

    if LOGICAL_DATE in values:
        raise ParameterError(f"-p {LOGICAL_DATE}: a backfill gives each run its own; use --from and --to")
    by_name = {p.name: p for p in pipe.params}
    out: dict[str, Any] = {}
    for name, text in values.items():
        if name not in by_name:
            out[name] = text
            continue
        try:
            out[name] = by_name[name].type.parse(text)
        except ValueError as exc:
            raise ParameterError(f"pipeline {pipe.name}: parameter {name!r}: {exc}") from None
    return out


def _when(text: str, option: str) -> Any:
    import datetime as dt

    try:
        return dt.datetime.fromisoformat(text)
    except ValueError:
        raise ParameterError(
            f"{option} {text!r} is not a date; write it like 2026-11-01 or 2026-11-01T06:00"
        ) from None
