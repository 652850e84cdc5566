"""``@pipeline``: a typed, named function whose body records a graph of tasks."""

from __future__ import annotations

import traceback
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from conveyor import params as P
from conveyor.errors import ConveyorError, DefinitionError, GraphError
from conveyor.graph import Builder, Graph, current_builder
from conveyor.schedules import Schedule
from conveyor.targets import flatten
from conveyor.tasks import _check_name

#: The parameter through which a scheduled run receives its logical time.
LOGICAL_DATE = "logical_date"


@dataclass(frozen=True, slots=True, eq=False)
class PipelineDef:
    """A pipeline's frozen definition."""

    name: str
    fn: Callable[..., Any]
    params: tuple[P.Param, ...]
    description: str = ""
    schedule: Schedule | None = None  # fired by scheduler daemons (see ``schedules``)
    executor: str | None = None  # where its tasks run unless a task says otherwise; None: the project's

    @property
    def takes_logical_date(self) -> bool:
        """Does each scheduled run get its logical time as the parameter ``logical_date``?"""
        return any(p.name == LOGICAL_DATE for p in self.params)

    def __repr__(self) -> str:
        return f"<pipeline {self.name}>"

    def bind(self, values: Mapping[str, Any], *, from_text: bool = False) -> dict[str, Any]:
        """Validated parameter values (strings are parsed when ``from_text``)."""
        return P.bind(f"pipeline {self.name}", self.params, values, from_text=from_text)

    def build(
        self, values: Mapping[str, Any] | None = None, *, from_text: bool = False, workdir: str | None = None
    ) -> Graph:
        """Record the graph for these parameters; nothing executes. Its targets must be shared by
        every process; with ``workdir`` (where a new run will execute), its scripts must exist
        there: both are refused before any run is created, not in a worker."""
        bound = self.bind(values or {}, from_text=from_text)
        with Builder(self.name) as builder:
            try:
                self.fn(**bound)
            except ConveyorError:
                raise
            except Exception as exc:  # the pipeline's own code raised while recording
                tb = traceback.extract_tb(exc.__traceback__)
                where = f" at {Path(tb[-1].filename).name}:{tb[-1].lineno}" if tb else ""
                raise GraphError(
                    f"pipeline {self.name}: building its graph failed{where}: {type(exc).__name__}: {exc}"
                ) from None
        if not builder.nodes:
            raise GraphError(f"pipeline {self.name} records no tasks; call at least one task inside it")
        for node in builder.nodes.values():
            for target in flatten(node.output):
                target.check()
            if workdir is not None and node.task.kind in ("script", "spark_submit"):
                _check_script(node.task.name, str(node.task.command[0]), workdir)
        return Graph(self.name, builder.nodes.values())

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        if current_builder() is not None:  # a pipeline inside a pipeline: inline its tasks
            return self.fn(*args, **kwargs)
        if args:
            raise DefinitionError(f"pipeline {self.name}: pass parameters by name to build its graph")
        return self.build(kwargs)


def _check_script(task: str, script: str, workdir: str) -> None:
    path = Path(workdir, script)
    if not path.is_file():
        where = "" if Path(script).is_absolute() else f" (in {workdir})"
        raise DefinitionError(
            f"task {task}: script {script} does not exist{where}; fix the path given to script()"
        )


def pipeline(
    fn: Callable[..., Any] | None = None,
    *,
    name: str | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    catchup: bool = False,
    executor: str | None = None,
) -> Any:
    """Make a function a pipeline. Use bare (``@pipeline``) or with options.

    ``executor``: where its tasks run (``"dask"``, ``"ray"``, ...) unless a task names its own;
    by default the project's (``[executor]`` in conveyor.toml), else local worker processes.

    ``schedule``: a cron expression (in ``timezone``) on which scheduler daemons start a run;
    each scheduled run gets its logical time as the parameter ``logical_date`` (a ``date`` or
    ``datetime``) if the pipeline has one. ``catchup``: after downtime, run every missed tick
    (at most ``schedules.MAX_CATCHUP``), not only the latest.
    """

    def wrap(f: Callable[..., Any]) -> PipelineDef:
        pname = name or f.__name__
        _check_name(pname, f"pipeline {pname}")
        if executor is not None:
            _check_name(executor, f"pipeline {pname}: executor")
        params = P.params_of(f, f"pipeline {pname}")
        sched = None if schedule is None else Schedule.parse(schedule, timezone, catchup, f"pipeline {pname}")
        for p in params:
            if p.name == LOGICAL_DATE and p.type.name not in ("date", "datetime"):
                raise DefinitionError(
                    f"pipeline {pname}: parameter {LOGICAL_DATE!r} receives a scheduled run's logical "
                    f"time; declare it as date or datetime, not {p.type.name}"
                )
        for p in params:
            if not p.type.literal:
                raise DefinitionError(
                    f"pipeline {pname}: parameter {p.name!r} has type {p.type.name}, which cannot "
                    "come from the command line; use int, float, str, bool, date, datetime, Path, "
                    "an Enum or a list of these"
                )
        doc = (f.__doc__ or "").strip().splitlines()
        return PipelineDef(pname, f, params, doc[0] if doc else "", sched, executor)

    return wrap(fn) if fn is not None else wrap
