"""``conveyor`` commands. Only this package knows Typer; the work is done by the library."""

from __future__ import annotations

import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from conveyor import engine
from conveyor import params as P
from conveyor.cli import project, scheduling
from conveyor.cli.common import (
    EXIT,
    DbOpt,
    JsonOpt,
    ParamOpt,
    ResourceOpt,
    WorkersOpt,
    console,
    duration,
    resources,
    state_text,
    summary,
    when,
)
from conveyor.driver import RunResult
from conveyor.errors import ParameterError, RunBusy, RunNotFound
from conveyor.store import RunRecord, Store, open_store
from conveyor.store.records import InstanceRecord

app = typer.Typer(
    name="conveyor",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Run plain-Python pipelines durably: only what is not yet done.",
)
db_app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.command()(scheduling.submit)
app.command()(scheduling.scheduler)
app.command()(scheduling.schedulers)
app.command()(project.pipelines)
app.command()(project.backfill)
app.command()(project.backfills)
app.command()(project.schedules)


# -- run and retry ----------------------------------------------------------------------------
def _drive(prepared: engine.Prepared, *, force: bool, retry: bool, grace: float) -> RunResult:
    from conveyor.cli.progress import RunProgress

    run, graph = prepared.run, prepared.graph
    how = "Resuming" if prepared.resumed else "Starting"
    extra = f" (it was {run.state})" if prepared.resumed and run.state != "pending" else ""
    console.print(f"{how} run [bold]{run.id}[/] of {escape(run.pipeline)}: {len(graph)} tasks{extra}")
    progress = RunProgress(console, len(graph))
    live = None
    if console.is_terminal:
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


@app.command()
def run(
    target: Annotated[str, typer.Argument(help="path/to/file.py:pipeline or package.module:pipeline")],
    param: ParamOpt = None,
    force: Annotated[
        bool, typer.Option("--force", help="Run every task, even if its targets exist.")
    ] = False,
    new: Annotated[
        bool, typer.Option("--new", help="Start a new run; do not resume an unfinished one.")
    ] = False,
    workers: WorkersOpt = None,
    resource: ResourceOpt = None,
    grace: Annotated[float, typer.Option(help="Seconds a cancelled task gets to stop.")] = 10.0,
    db: DbOpt = None,
) -> None:
    """Run a pipeline here and now; re-running resumes what did not finish."""
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
    result = _drive(prepared, force=force, retry=False, grace=grace)
    raise typer.Exit(EXIT[result.state])


@app.command()
def retry(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id (or a unique prefix).")],
    workers: WorkersOpt = None,
    resource: ResourceOpt = None,
    grace: Annotated[float, typer.Option(help="Seconds a cancelled task gets to stop.")] = 10.0,
    db: DbOpt = None,
) -> None:
    """Resume a failed, cancelled or interrupted run; succeeded tasks are not run again."""
    store = open_store(db)
    record = store.get_run(run_id)
    if record.partitions:  # submitted: the schedulers drive it
        if record.state == "succeeded":
            console.print(f"Run {record.id} already succeeded; nothing to retry.")
            raise typer.Exit(0)
        n = store.reopen(record.id)
        console.print(f"Run {record.id}: {n} partition{'s' if n != 1 else ''} open again for the schedulers.")
        raise typer.Exit(EXIT.get(scheduling.follow(store, store.get_run(record.id)).state, 1))
    prepared = engine.reopen(run_id, store=store, workers=workers, resources=resources(resource))
    if prepared.run.state == "succeeded":
        console.print(f"Run {prepared.run.id} already succeeded; nothing to retry.")
        raise typer.Exit(0)
    result = _drive(prepared, force=False, retry=True, grace=grace)
    raise typer.Exit(EXIT[result.state])


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id (or a unique prefix).")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run until it has stopped.")] = False,
    db: DbOpt = None,
) -> None:
    """Cancel a run: nothing new starts, running tasks get their grace period to stop."""
    import signal

    from conveyor.driver import owner_is_dead

    store = open_store(db)
    r = store.get_run(run_id)
    if r.state in ("succeeded", "failed", "cancelled"):
        console.print(f"Run {r.id} already ended: {r.state}.")
        raise typer.Exit(0)
    if r.partitions:  # submitted: its schedulers see the request on their next turn
        state = store.request_cancel(r.id)
        console.print(f"Run {r.id}: cancel requested; it is {state}.")
        if wait and state != "cancelled":
            scheduling.follow(store, store.get_run(r.id))
        return
    host, _, pid = (r.owner or "").rpartition(":")
    if not r.owner or not pid.isdigit() or r.lease_expires is None or r.lease_expires < time.time():
        raise RunBusy(
            f"run {r.id} is not being driven now; nothing to cancel (resume it with conveyor retry)"
        )
    if host != socket.gethostname() or owner_is_dead(r.owner):
        raise RunBusy(f"run {r.id} is driven by {r.owner}, on another machine: press Ctrl-C where it runs")
    os.kill(int(pid), signal.SIGINT)  # as a Ctrl-C in its terminal: a graceful cancel
    console.print(f"Run {r.id}: asked process {pid} driving it to cancel.")
    if wait:
        while store.get_run(r.id).state == "running" and not owner_is_dead(r.owner):
            time.sleep(0.2)
        console.print(f"Run {r.id} is {store.get_run(r.id).state}.")


# -- looking at runs --------------------------------------------------------------------------
def _run_json(r: RunRecord) -> dict[str, Any]:
    return {
        "id": r.id,
        "pipeline": r.pipeline,
        "target": r.target,
        "params": r.params,
        "state": r.state,
        "created_at": r.created_at,
        "started_at": r.started_at,
        "ended_at": r.ended_at,
        "error": r.error,
        "total": r.total,
        "partitions": r.partitions,
        "counts": r.counts,
        "workdir": r.workdir,
    }


@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs, newest first.")] = 20,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
    state: Annotated[str | None, typer.Option(help="Only runs in this state.")] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """List recent runs."""
    store = open_store(db)
    records = store.list_runs(limit=limit, pipeline=pipeline, state=state)
    if as_json:
        print(json.dumps([_run_json(r) for r in records], indent=2))
        return
    if not records:
        console.print("No runs yet. Start one with: conveyor run path/to/file.py:pipeline")
        return
    table = Table(box=None, header_style="bold")
    for col in ("RUN", "PIPELINE", "STATE", "TASKS", "STARTED", "TOOK"):
        table.add_column(col, no_wrap=True, min_width=len(col))
    wide = console.width >= 110
    if wide:
        table.add_column("PARAMS", overflow="ellipsis", no_wrap=True)
    for r in records:
        done = r.counts.get("succeeded", 0) + r.counts.get("skipped", 0)
        cells = [
            r.id,
            escape(r.pipeline),
            state_text(r.state),
            f"{done}/{r.total}",
            when(r.started_at)[5:16],
            duration(r.started_at, r.ended_at),
        ]
        table.add_row(*cells, *([escape(json.dumps(r.params))] if wide else []))
    console.print(table)


def _instance_json(store: Store, i: InstanceRecord) -> dict[str, Any]:
    return {
        "id": i.id,
        "task": i.task,
        "label": i.label,
        "params": i.params,
        "upstream": i.upstream,
        "state": i.state,
        "attempts": i.attempts,
        "targets": i.targets,
        "result": i.result,
        "error": i.error,
        "started_at": i.started_at,
        "ended_at": i.ended_at,
        "duration": (i.ended_at - i.started_at) if i.started_at and i.ended_at else None,
        "attempt_log": [
            {
                "number": a.number,
                "state": a.state,
                "started_at": a.started_at,
                "ended_at": a.ended_at,
                "error": a.error,
                "log": a.log_path,
            }
            for a in store.attempts(i.run_id, i.id)
        ],
    }


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id (or a unique prefix).")],
    as_json: JsonOpt = False,
    db: DbOpt = None,
) -> None:
    """Show a run: its task instances with state, duration and attempts."""
    store = open_store(db)
    r = store.get_run(run_id)
    instances = store.instances(r.id)
    if as_json:
        out = _run_json(r)
        if r.partitions:
            out["partitions"] = scheduling.partitions_json(store, r)
        out["tasks"] = [_instance_json(store, i) for i in instances]
        print(json.dumps(out, indent=2))
        return
    console.print(f"Run [bold]{r.id}[/]  {state_text(r.state)}")
    console.print(f"  pipeline  {escape(r.pipeline)}  ({escape(r.target)})")
    console.print(f"  params    {escape(json.dumps(r.params))}")
    took = duration(r.started_at, r.ended_at) or "-"
    console.print(f"  started   {when(r.started_at) or '-'}   duration {took}")
    if r.error:
        console.print("  error     " + escape(r.error).replace("\n", "\n            "))
    if r.partitions:
        console.print(scheduling.partitions_table(store, r))
    table = Table(box=None, header_style="bold")
    table.add_column("TASK", overflow="fold")
    for col in ("STATE", "ATTEMPTS", "DURATION", "ID"):
        table.add_column(col, no_wrap=True)
    for i in instances:
        table.add_row(
            escape(i.label),
            state_text(i.state),
            str(i.attempts),
            duration(i.started_at, i.ended_at) if i.state != "pending" else "",
            i.id,
        )
    console.print(table)


def _find_instances(store: Store, run_id: str, task: str) -> list[InstanceRecord]:
    instances = store.instances(run_id)
    exact = [i for i in instances if task in (i.id, i.label, i.task)]
    found = exact or [i for i in instances if i.id.startswith(task)]
    if not found:
        names = sorted({i.task for i in instances})
        raise RunNotFound(f"run {run_id} has no task {task!r}; its tasks are: {', '.join(names)}")
    return found


@app.command()
def logs(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id (or a unique prefix).")],
    task: Annotated[
        str | None, typer.Argument(help="A task name, label or instance id (default: all).")
    ] = None,
    attempt: Annotated[int | None, typer.Option(help="Which attempt (default: every attempt).")] = None,
    db: DbOpt = None,
) -> None:
    """Print the captured output (stdout, stderr, logging) of a run's tasks."""
    store = open_store(db)
    r = store.get_run(run_id)
    chosen = _find_instances(store, r.id, task) if task else store.instances(r.id)
    printed = False
    for inst in chosen:
        for a in store.attempts(r.id, inst.id):
            if attempt is not None and a.number != attempt:
                continue
            printed = True
            console.print(f"[bold]── {escape(inst.label)} · attempt {a.number} · {a.state}[/]")
            exists = a.log_path and os.path.exists(a.log_path)
            text = Path(a.log_path).read_text(errors="replace") if exists and a.log_path else ""
            sys.stdout.write(text if text else "(no output)\n")
            sys.stdout.flush()
    if not printed:
        console.print("No attempts have run yet" + (f" for {escape(task)}." if task else "."))


@app.command()
def graph(
    target: Annotated[str, typer.Argument(help="path/to/file.py:pipeline or package.module:pipeline")],
    param: ParamOpt = None,
    fmt: Annotated[str, typer.Option("--format", "-f", help="text, dot or mermaid.")] = "text",
) -> None:
    """Print a pipeline's graph without running anything."""
    from conveyor.loader import load_pipeline
    from conveyor.render import FORMATS

    if fmt not in FORMATS:
        raise ParameterError(f"--format {fmt!r} is not one of: {', '.join(FORMATS)}")
    pipe = load_pipeline(target)
    g = pipe.build(P.parse_assignments(param or []), from_text=True)
    print(FORMATS[fmt](g))


@db_app.command("upgrade")
def db_upgrade(db: DbOpt = None) -> None:
    """Migrate the store's schema to this version of Conveyor."""
    from conveyor.store import default_url
    from conveyor.store.connection import safe_url
    from conveyor.store.sql import SqlStore

    url = db or default_url()
    store = SqlStore(url, check=False)
    before = store.revision()
    after = store.upgrade()
    store.close()
    if before == after:
        console.print(f"Store {safe_url(url)} is already at schema {after}.")
    else:
        console.print(f"Store {safe_url(url)} is now at schema {after} (it was at {before or 'none'}).")
