"""``conveyor htcondor submit-file``: the HTCondor submit descriptions a run would get, to review
without a schedd (each one parsed by HTCondor's own submit parser when the bindings are here)."""

from __future__ import annotations

from typing import Annotated

import typer

from conveyor.cli.common import ParamOpt

app = typer.Typer(help="HTCondor: what Conveyor submits to a schedd.", no_args_is_help=True)


@app.command("submit-file")
def submit_file(
    target: Annotated[str, typer.Argument(help="path/to/file.py:pipeline or package.module:pipeline")],
    param: ParamOpt = None,
    team: Annotated[
        str | None, typer.Option(help="The run's team (default: the project's, from conveyor.toml).")
    ] = None,
    user: Annotated[str | None, typer.Option(help="accounting_group_user (default: you).")] = None,
) -> None:
    """Print the submit description of each task's first attempt (the run's id is a fresh one,
    its token a file named in the description, never printed)."""
    from conveyor import params as P
    from conveyor.executors.choice import choose
    from conveyor.executors.htcondor.preview import previews
    from conveyor.executors.htcondor.settings import parse
    from conveyor.executors.htcondor.submit import submit_text
    from conveyor.executors.htcondor.validate import validate

    choice = choose("htcondor")
    settings = parse(choice.of("htcondor"))
    for preview in previews(
        target, P.parse_assignments(param or []), settings, api=choice.api, team=team, user=user
    ):
        validate(preview.description)
        typer.echo(f"# {preview.node.label}")
        typer.echo(submit_text(preview.description))
