"""The live progress display of a run: done, running, failed, skipped, elapsed."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING

from rich.markup import escape

from conveyor.core import Change, State

if TYPE_CHECKING:
    from rich.console import Console, RenderableType

    from conveyor.driver import RunDriver

S = State


class RunProgress:
    """Renders the driver's counts; reports failures and retries as lines above the display."""

    def __init__(self, console: Console, total: int) -> None:
        self.console = console
        self.total = total
        self.driver: RunDriver | None = None
        self.started = time.time()
        self.running: dict[str, str] = {}

    def attach(self, driver: RunDriver) -> None:
        self.driver = driver
        self.started = time.time()

    #: Without a terminal (CI logs, pipes) a plain progress line every this many seconds.
    EVERY = 10.0
    _last_line = 0.0

    def on_change(self, change: Change, label: str) -> None:
        if not self.console.is_terminal:
            now = time.time()
            if now - max(self._last_line, self.started) >= self.EVERY:
                self._last_line = now
                c = self.driver.counts() if self.driver else {}
                done = c.get("succeeded", 0) + c.get("skipped", 0)
                self.console.print(
                    f"  {done}/{self.total} done, {c.get('running', 0)} running, "
                    f"{c.get('failed', 0)} failed ({now - self.started:.0f}s)"
                )
        if change.new is S.RUNNING:
            self.running[change.instance] = label
        elif change.old is S.RUNNING:
            self.running.pop(change.instance, None)
        name = escape(label)
        if change.new is S.FAILED:
            first = (change.error or "").strip().splitlines()
            self.console.print(f"[red]✘ failed[/] {name}: {escape(first[-1] if first else '')}")
        elif change.new is S.RETRY_WAIT:
            self.console.print(f"[yellow]↻ retrying[/] {name} ({escape(change.cause)})")
        elif change.new is S.READY and change.old is S.RUNNING:
            self.console.print(f"[yellow]↻ lost[/] {name}: {escape(change.error or '')}")

    def __rich__(self) -> RenderableType:
        """The live display, in a terminal (its parts imported only there)."""
        from rich.console import Group
        from rich.progress_bar import ProgressBar
        from rich.table import Table
        from rich.text import Text

        counts = self.driver.counts() if self.driver else {}
        done = counts.get("succeeded", 0) + counts.get("skipped", 0)
        finished = done + counts.get("failed", 0) + counts.get("cancelled", 0)
        line = Text.assemble(
            (f" {done}/{self.total} done", "bold green"),
            f"  ▶ {counts.get('running', 0)} running",
            f"  ✘ {counts.get('failed', 0)} failed",
            f"  ⤼ {counts.get('skipped', 0)} skipped",
            f"  ↻ {counts.get('retry_wait', 0)} waiting to retry" if counts.get("retry_wait") else "",
            f"  {time.time() - self.started:.1f}s",
        )
        grid = Table.grid()
        grid.add_row(ProgressBar(total=max(self.total, 1), completed=finished, width=24), line)
        now_running = list(self.running.values())[:4]
        rows: list[RenderableType] = [grid]
        rows += [Text(f"   ▶ {label}", style="dim") for label in now_running]
        if len(self.running) > 4:
            rows.append(Text(f"   … and {len(self.running) - 4} more", style="dim"))
        return Group(*rows)
