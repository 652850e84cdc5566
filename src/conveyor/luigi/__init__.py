"""Existing Luigi pipelines, unchanged, on Conveyor: ``conveyor run luigi:MODULE.TaskClass``.

Each Luigi task becomes one Conveyor task instance (durable state, retries, logs, the UI, a
scheduler's takeover), rebuilt in its worker from its family and serialized parameters; its
``complete()`` decides "done". Needs the ``luigi`` extra: ``pip install 'conveyor[luigi]'``.
See docs/luigi.md.
"""

from __future__ import annotations

try:
    import luigi  # noqa: F401
except ImportError:  # pragma: no cover - the extra is not installed
    from conveyor.errors import LoadError

    raise LoadError(
        "running Luigi tasks needs Luigi: pip install 'conveyor[luigi]' (or pip install luigi)"
    ) from None

import warnings

from conveyor.luigi.execution import LuigiTaskError
from conveyor.luigi.pipelines import PREFIX, LuigiPipeline, from_task, load
from conveyor.luigi.targets import TaskDone

# Luigi warns of every parameter whose default None "is not of type string" (a range's
# param_name): true of Luigi's own classes, and nothing a user of them can change.
warnings.filterwarnings("ignore", r'Parameter "\w+" with value "None" is not of type string', UserWarning)

__all__ = ["PREFIX", "LuigiPipeline", "LuigiTaskError", "TaskDone", "from_task", "load"]
