"""``conveyor`` commands. Only this package knows Typer; the work is done by the library."""

from __future__ import annotations

import json
from typing import TYPE_CHECKING, Annotated

import typer
from rich.markup import escape
from rich.table import Table

from conveyor import engine
from conveyor import params as P
from conveyor.cli import htcondor as htcondor_cli
from conveyor.cli import image, kubernetes, logs, people, project, reproducing, running, scheduling, server
from conveyor.cli.common import (
    EXIT,
    DbOpt,
    ExecutorAddressOpt,
    ExecutorOpt,
    JsonOpt,
    ParamOpt,
    ResourceOpt,
    ServerOpt,
    WorkersOpt,
    connect,
    console,
    duration,
    epoch,
    exit_code,
    print_table,
    resources,
    state_text,
    when,
)
from conveyor.errors import ParameterError
from conveyor.partitions import STUCK

if TYPE_CHECKING:
    pass

app = typer.Typer(
    name="conveyor",
    no_args_is_help=True,
    add_completion=False,
    pretty_exceptions_enable=False,
    help="Run plain-Python pipelines durably: only what is not yet done.",
)
db_app = typer.Typer(help="Manage the store's schema.", no_args_is_help=True)
app.add_typer(db_app, name="db")
app.add_typer(logs.app, name="logs")
app.command()(scheduling.submit)
app.command()(scheduling.scheduler)
app.command()(scheduling.schedulers)
app.command()(project.pipelines)
app.command()(project.backfill)
app.command()(project.backfills)
app.command()(project.schedules)
app.command()(server.server)
app.add_typer(people.users_app, name="users")
app.add_typer(people.tokens_app, name="tokens")
app.add_typer(people.teams_app, name="teams")
app.command()(people.audit)
app.command()(people.login)
app.add_typer(htcondor_cli.app, name="htcondor")
app.add_typer(kubernetes.app, name="kubernetes")
app.command()(reproducing.reproduce)
app.add_typer(image.app, name="image")


# -- run and retry ----------------------------------------------------------------------------
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
    executor: ExecutorOpt = None,
    executor_address: ExecutorAddressOpt = None,
    no_cache: Annotated[
        bool,
        typer.Option("--no-cache", help="Reuse nothing from the result cache: execute what is not done."),
    ] = False,
) -> None:
    """Run a pipeline here and now; re-running resumes what did not finish."""
    code = running.run(
        target,
        param,
        force=force,
        new=new,
        workers=workers,
        resource=resource,
        grace=grace,
        db=db,
        executor=executor,
        executor_address=executor_address,
        no_cache=no_cache,
    )
    raise typer.Exit(code)


@app.command()
def retry(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id (or a unique prefix).")],
    workers: WorkersOpt = None,
    resource: ResourceOpt = None,
    grace: Annotated[float, typer.Option(help="Seconds a cancelled task gets to stop.")] = 10.0,
    db: DbOpt = None,
    server: ServerOpt = None,
    executor: ExecutorOpt = None,
    executor_address: ExecutorAddressOpt = None,
) -> None:
    """Resume a failed, cancelled or interrupted run; succeeded tasks are not run again."""
    backend = connect(server, db)
    view = backend.run(run_id)
    if view.partitions or server:  # submitted: the schedulers drive it
        if view.state == "succeeded":
            console.print(f"Run {view.id} already succeeded; nothing to retry.")
            raise typer.Exit(0)
        n = sum(p.state in STUCK for p in view.partition_states)
        backend.retry(view.id)
        console.print(f"Run {view.id}: {n} partition{'s' if n != 1 else ''} open again for the schedulers.")
        raise typer.Exit(EXIT.get(scheduling.follow(backend, view.id).state, 1))
    from conveyor.executors.choice import choose

    chosen = choose(executor, address=executor_address)
    prepared = engine.reopen(run_id, db=db, workers=workers, resources=resources(resource), executor=chosen)
    if prepared.run.state == "succeeded":
        console.print(f"Run {prepared.run.id} already succeeded; nothing to retry.")
        raise typer.Exit(0)
    result = running.drive(prepared, force=False, retry=True, grace=grace)
    raise typer.Exit(exit_code(result))


@app.command()
def cancel(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id (or a unique prefix).")],
    wait: Annotated[bool, typer.Option("--wait", help="Follow the run until it has stopped.")] = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Cancel a run: nothing new starts, running tasks get their grace period to stop."""
    backend = connect(server, db)
    before = backend.run(run_id, tasks=False)
    if before.state in ("succeeded", "failed", "cancelled"):
        console.print(f"Run {before.id} already ended: {before.state}.")
        raise typer.Exit(0)
    after = backend.cancel(before.id)
    if before.partitions:  # submitted: its schedulers see the request on their next turn
        console.print(f"Run {after.id}: cancel requested; it is {after.state}.")
    else:
        pid = (before.owner or "").rpartition(":")[2]
        console.print(f"Run {after.id}: asked process {pid} driving it to cancel.")
    if wait and after.state not in ("succeeded", "failed", "cancelled"):
        scheduling.follow(backend, after.id)


# -- looking at runs --------------------------------------------------------------------------
@app.command()
def runs(
    limit: Annotated[int, typer.Option("--limit", "-n", min=1, help="How many runs, newest first.")] = 20,
    pipeline: Annotated[str | None, typer.Option(help="Only runs of this pipeline.")] = None,
    state: Annotated[str | None, typer.Option(help="Only runs in this state.")] = None,
    since: Annotated[
        str | None,
        typer.Option(help="Only runs created at or after this time (2026-11-01 or 2026-11-01T06:00)."),
    ] = None,
    as_json: JsonOpt = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """List recent runs."""
    from conveyor.backfills import parse_when

    start = parse_when(since, "--since").astimezone() if since else None
    page = connect(server, db).runs(limit=limit, pipeline=pipeline, state=state, since=start)
    if as_json:
        print(json.dumps([r.model_dump(mode="json") for r in page.items], indent=2))
        return
    if not page.items:
        console.print("No runs yet. Start one with: conveyor run path/to/file.py:pipeline")
        return
    table = Table(box=None, header_style="bold")
    for col in ("RUN", "PIPELINE", "STATE", "TASKS", "STARTED", "TOOK"):
        table.add_column(col, no_wrap=True, min_width=len(col))
    wide = console.width >= 110
    if wide:
        table.add_column("PARAMS", overflow="ellipsis", no_wrap=True)
    for r in page.items:
        done = r.counts.get("succeeded", 0) + r.counts.get("skipped", 0)
        cells = [
            r.id,
            escape(r.pipeline),
            state_text(r.state),
            f"{done}/{r.total}",
            when(r.started_at)[5:16],
            duration(epoch(r.started_at), epoch(r.ended_at)),
        ]
        table.add_row(*cells, *([escape(json.dumps(r.params))] if wide else []))
    print_table(table)
    if page.total > len(page.items):
        console.print(f"[dim]{len(page.items)} of {page.total} runs; see more with --limit[/]")


@app.command()
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id (or a unique prefix).")],
    as_json: JsonOpt = False,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Show a run: its task instances with state, duration and attempts."""
    r = connect(server, db).run(run_id)
    if as_json:
        print(json.dumps(r.model_dump(mode="json"), indent=2))
        return
    console.print(f"Run [bold]{r.id}[/]  {state_text(r.state)}")
    console.print(f"  pipeline  {escape(r.pipeline)}  ({escape(r.target)})", soft_wrap=True)
    console.print(f"  params    {escape(json.dumps(r.params))}", soft_wrap=True)
    took = duration(epoch(r.started_at), epoch(r.ended_at)) or "-"
    console.print(f"  started   {when(r.started_at) or '-'}   duration {took}")
    if r.image:
        console.print(f"  image     {escape(r.image)}", soft_wrap=True)
    if r.error:
        console.print("  error     " + escape(r.error).replace("\n", "\n            "))
    if r.partition_states:
        print_table(scheduling.partitions_table(r))
    table = Table(box=None, header_style="bold")
    table.add_column("TASK", overflow="fold")
    for col in ("STATE", "ATTEMPTS", "DURATION", "ID"):
        table.add_column(col, no_wrap=True)
    waiting = any(i.why for i in r.tasks)
    if waiting:
        table.add_column("WHY IT WAITS", overflow="fold")
    # where an engine has (or had) each task's last attempt: queued and why, on which node
    last = {i.id: i.attempt_log[-1] for i in r.tasks if i.attempt_log}
    where = {iid: a.placement for iid, a in last.items() if a.placement}
    if where:
        table.add_column("WHERE", overflow="fold")
    for i in r.tasks:
        row = [
            escape(i.label),
            state_text(i.state),
            str(i.attempts),
            duration(epoch(i.started_at), epoch(i.ended_at)) if i.state != "pending" else "",
            i.id,
        ]
        row += [escape(i.why.text) if i.why else ""] if waiting else []
        row += [escape(where.get(i.id) or "")] if where else []
        table.add_row(*row)
    print_table(table)
    for i in r.tasks:
        if i.waited_for:
            console.print(
                f"  {escape(i.label)}: waited for run {i.waited_for} and took its outcome", soft_wrap=True
            )
        if i.reused_from:
            console.print(f"  {escape(i.label)}: reused from run {i.reused_from}", soft_wrap=True)
    reproducing.show_provenance(r)


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
