"""``conveyor submit``, ``scheduler`` and ``schedulers``: runs driven by scheduler daemons."""

from __future__ import annotations

import json
import logging
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.live import Live
from rich.markup import escape
from rich.table import Table

from conveyor import engine
from conveyor import params as P
from conveyor.cli.common import (
    EXIT,
    DbOpt,
    JsonOpt,
    ParamOpt,
    WorkersOpt,
    console,
    summary,
    when,
)
from conveyor.driver import RunResult, tail
from conveyor.errors import LoadError
from conveyor.partitions import BOUND
from conveyor.store import Store, open_store
from conveyor.store.records import RunRecord


def submit(
    target: Annotated[str, typer.Argument(help="path/to/file.py:pipeline or package.module:pipeline")],
    param: ParamOpt = None,
    wait: Annotated[
        bool, typer.Option("--wait", help="Follow the run to its end, like conveyor run.")
    ] = False,
    partition_size: Annotated[
        int, typer.Option("--partition-size", min=1, help="Most task instances in one partition.")
    ] = BOUND,
    db: DbOpt = None,
) -> None:
    """Record a run for the schedulers to drive and print its id."""
    store = open_store(db)
    run = engine.submit(
        target, P.parse_assignments(param or []), store=store, from_text=True, partition_size=partition_size
    )
    if not wait:
        print(run.id)
        return
    console.print(
        f"Submitted run [bold]{run.id}[/] of {escape(run.pipeline)}: {run.total} tasks "
        f"in {run.partitions} partition{'s' if run.partitions != 1 else ''}"
    )
    raise typer.Exit(EXIT.get(follow(store, run).state, 1))


def follow(store: Store, run: RunRecord, every: float = 0.25) -> RunResult:
    """Watch a submitted run in the store until it ends; show its progress meanwhile."""
    started = time.time()

    def line(r: RunRecord) -> str:
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
            r = store.get_run(run.id)
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
    failed = [(i.label, tail(i.error)) for i in store.instances(r.id) if i.state == "failed"]
    result = RunResult(
        r.id, r.state, r.counts, failed, (r.ended_at or time.time()) - (r.started_at or started)
    )
    summary(result, r.id)
    if r.state == "failed" and r.error and not failed:
        console.print("  " + escape(r.error))
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
) -> None:
    """Run a scheduler: drive the partitions of submitted runs, taking over from dead ones."""
    from conveyor import project
    from conveyor.scheduler import Scheduler, Settings, signals

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    settings = Settings(name or "", workers or 0, lease, poll, heartbeat, lost_after)
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


def schedulers(as_json: JsonOpt = False, db: DbOpt = None) -> None:
    """List the schedulers, their heartbeats and the partition leases they hold."""
    store = open_store(db)
    now = time.time()
    rows = store.schedulers()
    if as_json:
        out: list[dict[str, Any]] = [
            {
                "name": s.name,
                "host": s.host,
                "pid": s.pid,
                "state": _liveness(s.state, s.heartbeat, now),
                "started_at": s.started_at,
                "heartbeat": s.heartbeat,
                "workers": s.workers,
                "leases": [
                    {"run": p.run_id, "partition": p.number, "epoch": p.epoch, "expires": p.lease_expires}
                    for p in leases
                ],
            }
            for s, leases in rows
        ]
        print(json.dumps(out, indent=2))
        return
    if not rows:
        console.print("No scheduler has registered with this store. Start one with: conveyor scheduler")
        return
    table = Table(box=None, header_style="bold")
    for col in ("SCHEDULER", "STATE", "HEARTBEAT", "WORKERS", "LEASES"):
        table.add_column(col, no_wrap=col != "LEASES")
    for s, leases in rows:
        held = ", ".join(f"{p.run_id}#{p.number} (epoch {p.epoch})" for p in leases) or "-"
        table.add_row(
            escape(s.name),
            _liveness(s.state, s.heartbeat, now),
            f"{now - s.heartbeat:.1f}s ago",
            str(s.workers),
            held,
        )
    console.print(table)


#: A running scheduler that has not beaten for this long (seconds) is listed as silent.
SILENT = 5.0


def _liveness(state: str, heartbeat: float, now: float) -> str:
    if state == "running" and now - heartbeat > SILENT:
        return "silent"  # killed, or its host is gone: its leases expire and others take them
    return state


def partitions_table(store: Store, run: RunRecord) -> Table:
    """``show``: each partition with its state, owner and takeovers."""
    table = Table(box=None, header_style="bold")
    for col in ("PARTITION", "TASKS", "STATE", "OWNER", "EPOCH", "TAKEOVERS"):
        table.add_column(col, no_wrap=True)
    for p in store.partitions(run.id):
        taken = str(p.takeovers)
        if p.takeovers:
            taken += f" (last from {escape(p.taken_from or '?')} at {when(p.taken_at)[11:]})"
        table.add_row(str(p.number), str(p.size), p.state, escape(p.owner or "-"), str(p.epoch), taken)
    return table


def partitions_json(store: Store, run: RunRecord) -> list[dict[str, Any]]:
    return [
        {
            "number": p.number,
            "size": p.size,
            "needs": p.needs,
            "state": p.state,
            "owner": p.owner,
            "epoch": p.epoch,
            "lease_expires": p.lease_expires,
            "takeovers": p.takeovers,
            "taken_from": p.taken_from,
            "taken_at": p.taken_at,
            "error": p.error,
        }
        for p in store.partitions(run.id)
    ]
