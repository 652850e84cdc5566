"""The ``conveyor`` command: a thin Typer layer over the library."""

from __future__ import annotations

import sys

from conveyor.errors import ConveyorError


def main() -> None:
    from rich.markup import escape

    from conveyor.cli.app import app
    from conveyor.cli.common import err_console

    try:
        app()
    except ConveyorError as exc:
        err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        err_console.print("[yellow]Interrupted.[/]")
        sys.exit(130)
