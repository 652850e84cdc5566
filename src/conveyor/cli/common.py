"""What every command shares: the consoles, common options, and how runs and states print."""

from __future__ import annotations

import datetime as dt
import os
import time
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.markup import escape

from conveyor import params as P
from conveyor.core import State
from conveyor.driver import RunResult
from conveyor.errors import ParameterError

if TYPE_CHECKING:
    from rich.table import Table

    from conveyor.client.transport import Transport

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

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

EXIT = {"succeeded": 0, "failed": 1, "cancelled": 130}


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


def resources(pairs: list[str] | None) -> dict[str, int]:
    out = {}
    for name, value in P.parse_assignments(pairs or []).items():
        try:
            out[name] = int(value)
        except ValueError:
            raise ParameterError(f"--resource {name}={value}: the amount must be a whole number") from None
    return out


def duration(start: float | None, end: float | None) -> str:
    if start is None:
        return ""
    seconds = (end or time.time()) - start
    if seconds < 60:
        return f"{seconds:.2f}s" if seconds < 10 else f"{seconds:.1f}s"
    minutes, sec = divmod(int(seconds), 60)
    return f"{minutes}m{sec:02d}s" if minutes < 60 else f"{minutes // 60}h{minutes % 60:02d}m"


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


def summary(result: RunResult, run_id: str) -> None:
    c = result.counts
    kinds = ("succeeded", "skipped", "failed", "cancelled", "pending")
    parts = [f"{c.get(k, 0)} {k}" for k in kinds if c.get(k)]
    took = duration(time.time() - result.elapsed, None)
    if result.state == "succeeded":
        console.print(f"[green]✔ Run {run_id} succeeded[/] in {took}: {', '.join(parts)}")
        total = sum(c.values())
        if total and c.get("skipped", 0) == total:
            console.print("  Every task was skipped: its targets exist (use --force to run them again).")
        elif c.get("skipped"):
            console.print(f"  {c['skipped']} skipped: their targets exist or nothing downstream needs them.")
    elif result.state == "failed":
        console.print(f"[red]✘ Run {run_id} failed[/] after {took}: {', '.join(parts)}")
        for label, error in result.failed:
            console.print(f"  [red]{escape(label)}[/] failed:")
            for line in error.splitlines():
                console.print(f"    {escape(line)}", soft_wrap=True)
        console.print(f"  Logs:   conveyor logs {run_id} TASK")
        console.print(f"  Resume: conveyor retry {run_id}")
    else:
        console.print(f"[yellow]⊘ Run {run_id} cancelled[/] after {took}: {', '.join(parts)}")
        console.print(f"  Resume with: conveyor retry {run_id}")
