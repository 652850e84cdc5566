"""``conveyor server``: the REST API and a scheduler, in one command."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Annotated

import typer

from conveyor.cli.common import DbOpt, WorkersOpt


def server(
    host: Annotated[
        str,
        typer.Option(
            help="The address to listen on. Beyond loopback only once the store has a user (sign-in is on)."
        ),
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(min=0, max=65535, help="The port to listen on.")] = 8080,
    db: DbOpt = None,
    project_dir: Annotated[
        Path | None,
        typer.Option(
            "--project",
            help="Where to look for the project's conveyor.toml (default: here, or a directory above).",
        ),
    ] = None,
    workers: WorkersOpt = None,
    no_scheduler: Annotated[
        bool,
        typer.Option("--no-scheduler", help="Serve only the API; runs wait for a conveyor scheduler."),
    ] = False,
    max_body: Annotated[
        int | None,
        typer.Option(
            "--max-body", min=1, help="The largest request body in bytes, 413 beyond (default: 1 MiB)."
        ),
    ] = None,
    public_metrics: Annotated[
        bool,
        typer.Option("--public-metrics", help="Serve /metrics without a token (for a Prometheus scraper)."),
    ] = False,
) -> None:
    """Serve the REST API and run a scheduler: one command for a working service."""
    from conveyor.api.limits import MAX_BODY  # FastAPI and uvicorn are imported for this command only
    from conveyor.server import Options, serve

    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s: %(message)s")
    serve(
        Options(
            host=host,
            port=port,
            db=db,
            project=project_dir,
            workers=workers,
            scheduler=not no_scheduler,
            max_body=max_body or MAX_BODY,
            public_metrics=public_metrics,
        )
    )
