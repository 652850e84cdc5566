"""Executors: where attempts run. They report how attempts ended; they never decide.

Each adapter implements the port (``conveyor.executors.port.Executor``) and is found by name in
the ``conveyor.executors`` entry-point group, so a third party can add one::

    [project.entry-points."conveyor.executors"]
    slurm = "my_package.slurm:SlurmExecutor"
"""

from __future__ import annotations

from importlib.metadata import entry_points
from typing import Any

from conveyor.errors import ExecutorError

GROUP = "conveyor.executors"


def names() -> list[str]:
    """The executors installed (their extras may still be missing)."""
    return sorted({ep.name for ep in entry_points(group=GROUP)} | {"local"})


def load(name: str) -> Any:
    """The adapter class named ``name``; a one-line ``ExecutorError`` listing the known ones."""
    if name == "local":  # always there, also when conveyor runs from a source tree
        from conveyor.executors.local import LocalExecutor

        return LocalExecutor
    found = [ep for ep in entry_points(group=GROUP) if ep.name == name]
    if not found:
        raise ExecutorError(f"unknown executor {name!r}; the executors installed are: {', '.join(names())}")
    try:
        return found[0].load()
    except ImportError as exc:
        raise ExecutorError(f"executor {name!r} cannot be loaded ({found[0].value}): {exc}") from None


def need(module: str, extra: str) -> Any:
    """Import an engine's client for its adapter, or say which extra installs it."""
    import importlib

    try:
        return importlib.import_module(module)
    except ImportError as exc:
        raise ExecutorError(
            f"the {extra} executor needs {module!r} ({exc}); install it with: pip install 'conveyor[{extra}]'"
        ) from None
