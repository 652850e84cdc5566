"""The ``conveyor`` command: a thin Typer layer over the library."""

from __future__ import annotations

import sys

from conveyor.errors import ConveyorError


def main() -> None:
    try:
        code = None
        if sys.argv[1:2] == ["run"]:  # the common case, started without Typer (``quick``)
            from conveyor.cli import quick

            code = quick.main(sys.argv[2:])
        if code is None:
            from conveyor.cli.app import app

            app()
    except ConveyorError as exc:
        from rich.markup import escape

        from conveyor.cli.output import err_console

        err_console.print(f"[bold red]Error:[/] {escape(str(exc))}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except KeyboardInterrupt:
        from conveyor.cli.output import err_console

        err_console.print("[yellow]Interrupted.[/]")
        sys.exit(130)
    if code is not None:
        sys.exit(code)
