"""``conveyor submit``, ``scheduler`` and ``schedulers``: runs driven by scheduler daemons."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from conveyor import engine
from conveyor import params as P
from conveyor.cli.common import (
    EXIT,
    DbOpt,
    ExecutorAddressOpt,
    ExecutorOpt,
    JsonOpt,
    ParamOpt,
    ServerOpt,
    WorkersOpt,
    connect,
    console,
    epoch,
    print_table,
    summary,
    when,
)
from conveyor.driver import RunResult, tail
from conveyor.errors import LoadError, ParameterError
from conveyor.partitions import BOUND
from conveyor.store import open_store

if TYPE_CHECKING:
    from conveyor.client.transport import Transport
    from conveyor.views import RunDetail, RunView


def submit(
    target: Annotated[
        str,
        typer.Argument(help="path/to/file.py:pipeline or package.module:pipeline; with --server, a name."),
    ],
    param: ParamOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the run to its end, like conveyor run.")
    ] = False,
    partition_size: Annotated[
        int, typer.Option("--partition-size", min=1, help="Most task instances in one partition.")
    ] = BOUND,
    db: DbOpt = None,
    server: ServerOpt = None,
    executor: ExecutorOpt = None,
) -> None:
    """Record a run for the schedulers to drive and print its id."""
    values = P.parse_assignments(param or [])
    if server:  # the server's project names its pipelines
        if executor:
            raise ParameterError("--executor with --server: the server's schedulers choose; set it there")
        backend = connect(server, db)
        view = backend.trigger(target, values)
        run_id, pipeline, total, parts = view.id, view.pipeline, view.total, view.partitions
    else:
        store = open_store(db)
        run = engine.submit(
            target, values, store=store, from_text=True, partition_size=partition_size, executor=executor
        )
        run_id, pipeline, total, parts = run.id, run.pipeline, run.total, run.partitions
        from conveyor.auth.people import local_actor

        store.record_audit(local_actor(), "trigger", team=run.team, target=run.id, now=time.time())
        backend = connect(None, db)
    if not wait:
        print(run_id)
        return
    console.print(
        f"Submitted run [bold]{run_id}[/] of {escape(pipeline)}: {total} tasks "
        f"in {parts} partition{'s' if parts != 1 else ''}"
    )
    raise typer.Exit(EXIT.get(follow(backend, run_id).state, 1))


def follow(backend: Transport, run_id: str, every: float = 0.25) -> RunResult:
    """Watch a submitted run until it ends; show its progress meanwhile."""
    started = time.time()

    def line(r: RunView) -> str:
        c = r.counts
        done = c.get("succeeded", 0) + c.get("skipped", 0)
        extra = "".join(f", {c[k]} {k}" for k in ("running", "failed", "retry_wait") if c.get(k))
        return f"{r.state}: {done}/{r.total} done{extra}  ({time.time() - started:.0f}s)"

    live = Live(console=console, refresh_per_second=4, transient=True) if console.is_terminal else None
    if live:
        live.start()
    last_print = 0.0
    try:
        while True:
            r: RunView = backend.run(run_id, tasks=False)
            if live:
                live.update(line(r))
            elif time.time() - last_print >= 10:
                last_print = time.time()
                console.print(line(r))
            if r.state in ("succeeded", "failed", "cancelled"):
                break
            time.sleep(every)
    finally:
        if live:
            live.stop()
    detail = backend.run(run_id)
    failed = [(t.label, tail(t.error)) for t in detail.tasks if t.state == "failed"]
    elapsed = (epoch(detail.ended_at) or time.time()) - (epoch(detail.started_at) or started)
    result = RunResult(detail.id, detail.state, detail.counts, failed, elapsed)
    summary(result, detail.id)
    if detail.state == "failed" and detail.error and not failed:
        console.print("  " + escape(detail.error))
    return result


def scheduler(
    name: Annotated[str | None, typer.Option(help="This scheduler's name (default: host:pid).")] = None,
    workers: WorkersOpt = None,
    lease: Annotated[
        float, typer.Option(min=0.1, help="Seconds a lease lasts unless renewed: a takeover's delay.")
    ] = 2.0,
    poll: Annotated[float, typer.Option(min=0.01, help="Seconds between looks for work when idle.")] = 0.5,
    heartbeat: Annotated[
        float, typer.Option(min=0.05, help="Seconds between heartbeats of running attempts.")
    ] = 1.0,
    lost_after: Annotated[
        float, typer.Option(min=0.1, help="Seconds of silence after which an adopted attempt is lost.")
    ] = 3.0,
    partitions: Annotated[
        int,
        typer.Option(
            min=1,
            help="Partitions driven at once on the workers (a dead scheduler's: up to twice as many).",
        ),
    ] = 4,
    until_idle: Annotated[
        bool, typer.Option("--until-idle", help="Exit when no partition is left to claim.")
    ] = False,
    project_dir: Annotated[
        Path | None,
        typer.Option(
            "--project",
            help="The project whose scheduled pipelines to fire (default: conveyor.toml here or above).",
        ),
    ] = None,
    db: DbOpt = None,
    executor: ExecutorOpt = None,
    executor_address: ExecutorAddressOpt = None,
) -> None:
    """Run a scheduler: drive the partitions of submitted runs, taking over from dead ones."""
    from conveyor import project
    from conveyor.executors.choice import choose
    from conveyor.interrupts import signals
    from conveyor.scheduler import Scheduler, Settings

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    chosen = choose(executor, address=executor_address, root=project_dir)
    settings = Settings(name or "", workers or 0, lease, poll, heartbeat, lost_after, partitions, chosen)
    if project_dir is None:
        found = project.find()
    elif (project_dir / project.FILE).is_file():
        found = project.read(project_dir / project.FILE)
    else:
        raise LoadError(f"no {project.FILE} in {project_dir}; give the directory of your project")
    sched = Scheduler(open_store(db), settings, found)
    with signals(sched):
        try:
            sched.serve(until_idle=until_idle)
        except KeyboardInterrupt:
            raise typer.Exit(130) from None


def schedulers(as_json: JsonOpt = False, db: DbOpt = None, server: ServerOpt = None) -> None:
    """List the schedulers, their heartbeats and the partition leases they hold."""
    views = connect(server, db).schedulers()
    if as_json:
        print(json.dumps([v.model_dump(mode="json") for v in views], indent=2))
        return
    if not views:
        console.print("No scheduler has registered with this store. Start one with: conveyor scheduler")
        return
    now = time.time()
    table = Table(box=None, header_style="bold")
    for col in ("SCHEDULER", "STATE", "HEARTBEAT", "WORKERS", "LEASES"):
        table.add_column(col, no_wrap=col != "LEASES")
    for v in views:
        held = ", ".join(f"{p.run}#{p.partition} (epoch {p.epoch})" for p in v.leases) or "-"
        beat = now - v.heartbeat.timestamp()
        table.add_row(escape(v.name), v.state, f"{beat:.1f}s ago", str(v.workers), held)
    print_table(table)


def partitions_table(run: RunDetail) -> Table:
    """``show``: each partition with its state, owner and takeovers."""
    table = Table(box=None, header_style="bold")
    for col in ("PARTITION", "TASKS", "STATE", "OWNER", "EPOCH", "TAKEOVERS"):
        table.add_column(col, no_wrap=True)
    for p in run.partition_states:
        taken = str(p.takeovers)
        if p.takeovers:
            taken += f" (last from {escape(p.taken_from or '?')} at {when(p.taken_at)[11:]})"
        table.add_row(str(p.number), str(p.size), p.state, escape(p.owner or "-"), str(p.epoch), taken)
    return table
