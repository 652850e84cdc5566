"""``conveyor image build`` and ``conveyor image show``: the project's image at its current code."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated

import typer
from rich.markup import escape

from conveyor.cli.common import JsonOpt, console, err_console

app = typer.Typer(no_args_is_help=True, help="Build or show the project's container image (per commit).")

ProjectOpt = Annotated[
    Path | None,
    typer.Option(
        "--project", help="The project's folder (default: the one with conveyor.toml here or above)."
    ),
]


def _root(given: Path | None) -> Path:
    from conveyor import project

    if given is not None:
        return given
    found = project.find()
    return found.root if found is not None else Path.cwd()


@app.command("build")
def build(
    where: ProjectOpt = None,
    no_cache: Annotated[
        bool, typer.Option("--no-cache", help="Build again even if this commit's image exists (same id).")
    ] = False,
) -> None:
    """Build the project's image with podman (from its Containerfile, or [image] in conveyor.toml);
    tag it localhost/conveyor-PROJECT:COMMIT and print its id."""
    from conveyor import images

    def progress(line: str) -> None:
        err_console.print(escape(line), soft_wrap=True)

    built = images.build(_root(where), progress=progress, cache=not no_cache)
    err_console.print(f"Built [bold]{escape(built.tag)}[/]")
    print(built.id)


@app.command("show")
def show(where: ProjectOpt = None, as_json: JsonOpt = False) -> None:
    """The image a run of the project would use now (tag from its commit), and whether it is built."""
    from conveyor import images

    image = images.show(_root(where))
    if as_json:
        print(json.dumps({"tag": image.tag, "id": image.id, "built": image.id is not None}))
        return
    state = image.id if image.id else "not built (conveyor image build)"
    console.print(f"{escape(image.tag)}  {escape(state)}")
