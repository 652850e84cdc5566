"""Conveyor: plain-Python batch pipelines, run durably: only what is not yet done."""

from typing import TYPE_CHECKING, Any

from conveyor.driver import RunResult
from conveyor.engine import run
from conveyor.errors import ConveyorError
from conveyor.graph import Graph, Promise
from conveyor.pipelines import PipelineDef, pipeline
from conveyor.provenance import seed
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
    "output",
    "pipeline",
    "run",
    "script",
    "seed",
    "shell",
    "spark_submit",
    "task",
]


def __getattr__(name: str) -> Any:
    if name == "Client":  # imported when asked for: it brings pydantic and the service
        from conveyor.client import Client

        return Client
    raise AttributeError(f"module 'conveyor' has no attribute {name!r}")
