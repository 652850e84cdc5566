"""Conveyor: plain-Python batch pipelines, run durably: only what is not yet done."""

from conveyor.driver import RunResult
from conveyor.engine import run
from conveyor.errors import ConveyorError
from conveyor.graph import Graph, Promise
from conveyor.pipelines import PipelineDef, pipeline
from conveyor.targets import FileTarget, Target
from conveyor.tasks import TaskDef, output, script, shell, task

__version__ = "0.1.0"

__all__ = [
    "ConveyorError",
    "FileTarget",
    "Graph",
    "PipelineDef",
    "Promise",
    "RunResult",
    "Target",
    "TaskDef",
    "output",
    "pipeline",
    "run",
    "script",
    "shell",
    "task",
]
