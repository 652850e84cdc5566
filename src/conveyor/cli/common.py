"""What every command shares: common options, how states print; the consoles and how a run's
end prints (``output``, which ``conveyor run`` uses without Typer)."""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import TYPE_CHECKING, Annotated

import typer

from conveyor.cli.output import EXIT as EXIT  # re-exported: every command's
from conveyor.cli.output import console as console
from conveyor.cli.output import duration as duration
from conveyor.cli.output import err_console as err_console
from conveyor.cli.output import exit_code as exit_code
from conveyor.cli.output import resources as resources
from conveyor.cli.output import summary as summary
from conveyor.core import State

if TYPE_CHECKING:
    from rich.table import Table

    from conveyor.client.transport import Transport

DbOpt = Annotated[
    str | None,
    typer.Option("--db", envvar="CONVEYOR_DB", help="Store URL (default: sqlite:///.conveyor/conveyor.db)."),
]
ParamOpt = Annotated[
    list[str] | None, typer.Option("--param", "-p", help="A pipeline parameter as name=value; repeatable.")
]
WorkersOpt = Annotated[
    int | None, typer.Option("--workers", "-w", min=1, help="Worker processes (default: one per CPU).")
]
ExecutorOpt = Annotated[
    str | None,
    typer.Option(
        "--executor",
        "-e",
        metavar="NAME",
        help="Where tasks run: local (worker processes here), dask, ray, spark, ... (default: the "
        "project's [executor] default, else local); a task's own executor= wins.",
    ),
]
ExecutorAddressOpt = Annotated[
    str | None,
    typer.Option(
        "--executor-address",
        metavar="ADDRESS",
        help="The engine to use (a Dask scheduler tcp://host:8786, a Ray cluster host:6379); "
        "default: its [executor.NAME] address, else one started here.",
    ),
]
ResourceOpt = Annotated[
    list[str] | None,
    typer.Option("--resource", "-r", help="Capacity of a resource as name=amount (gpu=1, db=2); repeatable."),
]
JsonOpt = Annotated[bool, typer.Option("--json", help="Print JSON for scripts.")]
ServerOpt = Annotated[
    str | None,
    typer.Option(
        "--server",
        envvar="CONVEYOR_SERVER",
        metavar="URL",
        help="Act through the conveyor server at this URL instead of on the local store.",
    ),
]


def connect(server: str | None, db: str | None) -> Transport:
    """What a command acts on: the server at ``server`` (its REST API; it has its own store),
    else the local store (``db``) and the project of the current directory. Starts a scheduler
    only when a command kicks it (``conveyor backfill`` with none running)."""
    if server:  # the server has its own store: --db (or $CONVEYOR_DB) is not used
        from conveyor.client.http import Http

        return Http(server)
    from conveyor import project
    from conveyor.client.local import Local
    from conveyor.store import default_url, home

    return Local(db or default_url(), project.find(), home())


def print_table(table: Table) -> None:
    """Print ``table`` whole: ids, states and names (its ``no_wrap`` columns) are never cut.
    Piped (no terminal, no ``$COLUMNS``), every line is as long as it needs; in a terminal too
    narrow, the other columns wrap first, then the lines are wider than the terminal (which
    wraps them) rather than cropped at its edge."""
    from rich.console import Console
    from rich.measure import Measurement

    need = Measurement.get(console, console.options.update_width(1_000_000), table)
    piped = not console.is_terminal and not os.environ.get("COLUMNS")
    width = need.maximum if piped else max(console.width, need.minimum)
    if width <= console.width:
        console.print(table)
        return
    wide = Console(
        width=width,
        highlight=False,
        force_terminal=console.is_terminal,
        color_system=console.color_system,  # type: ignore[arg-type]
        no_color=console.no_color,
    )
    wide.print(table)


def when(ts: float | dt.datetime | None) -> str:
    if isinstance(ts, dt.datetime):
        ts = ts.timestamp()
    return time.strftime("%Y-%m-%d %H:%M:%S", time.localtime(ts)) if ts else ""


def epoch(t: dt.datetime | None) -> float | None:
    return None if t is None else t.timestamp()


def state_text(state: str) -> str:
    try:
        st = State(state)
        symbol = st.symbol
    except ValueError:
        symbol = {"succeeded": "✔", "failed": "✘", "cancelled": "⊘", "running": "▶"}.get(state, "·")
    color = {
        "succeeded": "green",
        "skipped": "cyan",
        "failed": "red",
        "cancelled": "yellow",
        "running": "blue",
        "retry_wait": "yellow",
    }.get(state, "white")
    return f"[{color}]{symbol} {state}[/]"
