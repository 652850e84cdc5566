"""A Luigi task's ``complete()`` as a Conveyor target: "done" is what Luigi says it is.

Conveyor skips a task instance whose targets all exist. For a Luigi task that question is its
``complete()`` (by default: every ``output()`` target ``exists()``; a ``WrapperTask``: every
requirement complete; a task with a custom ``complete()``: whatever it says), so each instance
carries one ``TaskDone`` target that asks exactly that. Luigi's own targets write atomically
(``LocalTarget`` through a temporary path), so there is nothing for Conveyor to stage.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import luigi
from luigi.task import flatten
from luigi.tools.range import RangeBase

from conveyor.errors import TargetError
from conveyor.targets.base import Output, Writer


class TaskOutputs(Output):
    """What a Luigi class declares as its output: one ``TaskDone`` per instance."""

    __slots__ = ("cls",)

    def __init__(self, cls: type[luigi.Task]) -> None:
        self.cls = cls

    def render(self, values: Mapping[str, Any]) -> Output:
        from conveyor.luigi.execution import rebuild

        return TaskDone(rebuild(self.cls.get_task_family(), values))

    def __repr__(self) -> str:
        return f"complete() of {self.cls.get_task_family()}"


class TaskDone(Output):
    """Exists when the Luigi task instance is complete."""

    __slots__ = ("task",)

    def __init__(self, task: luigi.Task) -> None:
        self.task = task

    def exists(self) -> bool:
        try:
            if isinstance(self.task, RangeBase):  # Luigi's own looks back only 100 days
                from conveyor.luigi.requirements import range_tasks

                return all(t.complete() for t in range_tasks(self.task))
            return bool(self.task.complete())
        except Exception as exc:
            raise TargetError(
                f"luigi task {self.task.task_id}: complete() raised {type(exc).__name__}: {exc}; "
                "fix its complete() or output()"
            ) from None

    def stage(self, *, replace: bool = False) -> Any:
        return self.task  # Luigi's targets write atomically on their own

    def finish(self, staged: Any, writer: Writer) -> dict[str, Any] | None:
        return None

    def describe(self) -> str:
        try:
            outs = [str(getattr(t, "path", t)) for t in flatten(self.task.output())]
        except Exception:
            outs = []
        return ", ".join(outs) if outs else f"complete() of {self.task.task_id}"

    def __repr__(self) -> str:
        return f"<complete() of {self.task.task_id}>"
