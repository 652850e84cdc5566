"""``conveyor logs``: a run's logs (``conveyor logs RUN [TASK]``, short for ``conveyor logs show``)
and their retention (``conveyor logs prune --older-than 30d``)."""

from __future__ import annotations

import sys
import time
from typing import Annotated, Any

import typer
from rich.markup import escape
from typer.core import TyperGroup

from conveyor.cli.common import DbOpt, ServerOpt, connect, console
from conveyor.errors import ParameterError


class _ShowByDefault(TyperGroup):
    """``conveyor logs RUN ...`` is ``conveyor logs show RUN ...``: a run is never named like a
    subcommand."""

    def parse_args(self, ctx: Any, args: list[str]) -> list[str]:
        if args and args[0] not in self.commands and args[0] not in ("--help", "-h"):
            args = ["show", *args]
        return super().parse_args(ctx, args)


app = typer.Typer(
    cls=_ShowByDefault,
    no_args_is_help=True,
    help="Print a run's logs (conveyor logs RUN [TASK]), or delete old ones (conveyor logs prune).",
)


@app.command("show")
def show(
    run_id: Annotated[str, typer.Argument(metavar="RUN", help="The run's id (or a unique prefix).")],
    task: Annotated[
        str | None, typer.Argument(help="A task name, label or instance id (default: all).")
    ] = None,
    attempt: Annotated[int | None, typer.Option(help="Which attempt (default: every attempt).")] = None,
    tail: Annotated[int | None, typer.Option(min=1, help="Only the last N lines of each attempt.")] = None,
    db: DbOpt = None,
    server: ServerOpt = None,
) -> None:
    """Print the captured output (stdout, stderr, logging) of a run's tasks."""
    found = connect(server, db).logs(run_id, task, attempt=attempt, tail=tail)
    for log in found:
        cut = (" (last lines)" if tail else " (its end)") if log.truncated else ""
        console.print(f"[bold]── {escape(log.task)} · attempt {log.attempt} · {log.state}{cut}[/]")
        text = log.text or "(no output)"
        sys.stdout.write(text if text.endswith("\n") else text + "\n")
        sys.stdout.flush()
    if not found:
        console.print("No attempts have run yet" + (f" for {escape(task)}." if task else "."))


@app.command("prune")
def prune(
    older_than: Annotated[
        str | None,
        typer.Option(
            "--older-than",
            metavar="AGE",
            help="Delete the logs of runs that ended longer ago than this: 30d, 12h, 2w (default: "
            "[logs] keep_days of conveyor.toml, or $CONVEYOR_LOG_KEEP_DAYS).",
        ),
    ] = None,
    db: DbOpt = None,
) -> None:
    """Delete the attempt log files of runs that ended before a cutoff; say how many and how much."""
    from conveyor import limits, logfiles
    from conveyor.store import default_url, open_store

    if older_than is not None:
        seconds = limits.age(older_than, "--older-than")
    else:
        keep = limits.read().keep_days
        if keep is None:
            raise ParameterError(
                "how old? give --older-than 30d, or set [logs] keep_days in conveyor.toml",
                {"older_than": "missing"},
            )
        seconds = keep * 86400
    store: Any = open_store(db or default_url())
    try:
        done = logfiles.prune(store, time.time() - seconds)
    finally:
        store.close()
    console.print(
        f"Removed {done.files} log file{'s' if done.files != 1 else ''} ({limits.human(done.bytes)}) "
        f"of {done.runs} run{'s' if done.runs != 1 else ''} that ended over {_age(seconds)} ago."
    )


def _age(seconds: float) -> str:
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size:
            n = seconds / size
            shown = f"{n:.1f}".removesuffix(".0")
            return f"{shown} {unit}{'' if shown == '1' else 's'}"
    return f"{seconds:g} seconds"
