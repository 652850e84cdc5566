"""Conveyor: plain-Python batch pipelines, run durably: only what is not yet done."""

from typing import TYPE_CHECKING, Any

from conveyor.driver import RunResult
from conveyor.engine import run
from conveyor.errors import ConveyorError
from conveyor.graph import Graph, Promise
from conveyor.notebooks import notebook
from conveyor.pipelines import PipelineDef, pipeline
from conveyor.targets import FileTarget, TableTarget, Target
from conveyor.tasks import TaskDef, output, script, shell, spark_submit, task

if TYPE_CHECKING:
    from conveyor.client import Client

__version__ = "0.1.0"

__all__ = [
    "Client",
    "ConveyorError",
    "FileTarget",
    "Graph",
    "PipelineDef",
    "Promise",
    "RunResult",
    "TableTarget",
    "Target",
    "TaskDef",
    "load_ipython_extension",
    "notebook",
    "output",
    "pipeline",
    "run",
    "script",
    "shell",
    "spark_submit",
    "task",
]


def load_ipython_extension(ipython: Any) -> None:
    """``%load_ext conveyor``: the ``%conveyor`` and ``%%conveyor`` magics (``notebooks.magics``)."""
    from conveyor.notebooks.magics import load

    load(ipython)


def __getattr__(name: str) -> Any:
    if name == "Client":  # imported when asked for: it brings pydantic and the service
        from conveyor.client import Client

        return Client
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
