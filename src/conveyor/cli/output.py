"""The consoles, and how a run's end prints: for ``conveyor run`` without Typer (``quick``)
and for every command (``common`` re-exports them)."""

from __future__ import annotations

import time

from rich.console import Console
from rich.markup import escape

from conveyor import params as P
from conveyor.driver import RunResult
from conveyor.errors import ParameterError

console = Console(highlight=False)
err_console = Console(stderr=True, highlight=False)

EXIT = {"succeeded": 0, "failed": 1, "cancelled": 130}


def exit_code(result: RunResult) -> int:
    """The exit code of a run that ended: a run that failed only because its targets could
    not be used (an unreachable database, rows that do not fit its table) is bad input, 2."""
    targets = result.failed and all(e.startswith("TargetError: ") for _, e in result.failed)
    if result.state == "failed" and targets:
        return 2
    return EXIT[result.state]


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
