"""A Luigi task class as a Conveyor pipeline: ``conveyor run luigi:MODULE.TaskClass``.

The pipeline's parameters are the class's Luigi parameters (see ``conveyor.luigi.params``). Its
graph is the class's ``requires()`` graph: one Conveyor task per Luigi task family, one task
instance per Luigi task, identified by its family and its serialized parameters
(``to_str_params``), which is all a worker needs to rebuild it (``from_str_params``). "Done" is
the Luigi task's ``complete()`` (``conveyor.luigi.targets``). Everything else (durable state,
retries, logs, the UI, a takeover by another scheduler) is Conveyor's, unchanged.

A class with one date parameter (``DateParameter``, ``DateHourParameter``, ...) also takes
``logical_date``: a backfill or a schedule gives each run its date through it.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Mapping
from typing import Any

import luigi
from luigi.tools.range import RangeBase

from conveyor import params as P
from conveyor.errors import DefinitionError, LoadError, ParameterError
from conveyor.graph import Builder, Promise, current_builder
from conveyor.luigi.execution import execute, rebuild, str_params
from conveyor.luigi.params import optional_date, pipeline_param, visible
from conveyor.luigi.requirements import walk
from conveyor.luigi.targets import TaskOutputs
from conveyor.pipelines import LOGICAL_DATE, PipelineDef
from conveyor.schedules import Schedule
from conveyor.tasks import TaskDef, _check_name

#: The prefix of a target that names a Luigi class: ``luigi:MODULE.TaskClass``.
PREFIX = "luigi:"

_DATES: dict[type, P.ParamType] = {
    luigi.DateParameter: P.DATE,
    luigi.DateHourParameter: P.DATETIME,
    luigi.DateMinuteParameter: P.DATETIME,
    luigi.DateSecondParameter: P.DATETIME,
}

_TASKS: dict[type, TaskDef] = {}


def task_def(cls: type[luigi.Task]) -> TaskDef:
    """The Conveyor task of a Luigi family: its parameters are Luigi's serialized strings."""
    found = _TASKS.get(cls)
    if found is None:
        family = cls.get_task_family()
        params = tuple(P.Param(name, P.ANY) for name, _ in visible(cls))  # text, or None
        retries = getattr(cls, "retry_count", None)
        priority = getattr(cls, "priority", 0)
        found = _TASKS[cls] = TaskDef(
            name=family,
            kind="function",
            params=params,
            fn=lambda **values: execute(rebuild(family, values)),
            retries=retries if isinstance(retries, int) and not isinstance(retries, bool) else 0,
            output=TaskOutputs(cls),
            priority=priority if isinstance(priority, int) and not isinstance(priority, bool) else 0,
            param_names=frozenset(p.name for p in params),
        )
    return found


def record(builder: Builder, root: luigi.Task) -> None:
    """Record ``root`` and everything it requires in ``builder``."""

    def visit(task: luigi.Task, upstream: list[Promise]) -> Promise:
        return builder.record(task_def(type(task)), str_params(task), upstream or None)

    walk([root], visit)


def _date_param(cls: type[luigi.Task]) -> tuple[str, P.ParamType] | None:
    """The class's one date parameter, which ``logical_date`` fills; None if not exactly one."""
    dates = [(n, _DATES[type(p)]) for n, p in cls.get_params() if type(p) in _DATES]
    if len(dates) != 1 or any(n == LOGICAL_DATE for n, _ in cls.get_params()):
        return None
    return dates[0]


@dataclasses.dataclass(frozen=True, slots=True, eq=False)
class LuigiPipeline(PipelineDef):
    """A pipeline built from a Luigi class (``fn`` is unused: ``build`` records its graph)."""

    cls: type[luigi.Task] = luigi.Task
    date_param: str | None = None

    def __repr__(self) -> str:
        return f"<pipeline {self.name} (luigi {self.cls.get_task_family()})>"

    def bind(self, values: Mapping[str, Any], *, from_text: bool = False) -> dict[str, Any]:
        bound = super(LuigiPipeline, self).bind(values, from_text=from_text)
        if issubclass(self.cls, RangeBase) and bound.get("stop") is None and bound.get("now") is None:
            bound["now"] = int(time.time())  # an open range: "now" pinned, the same in every worker
        return bound

    def task(self, bound: Mapping[str, Any]) -> luigi.Task:
        """The Luigi task these pipeline parameters make."""
        values = dict(bound)
        when = values.pop(LOGICAL_DATE, None)
        if self.date_param is not None:
            if when is not None and values.get(self.date_param) not in (None, when):
                raise ParameterError(
                    f"pipeline {self.name}: {LOGICAL_DATE} and {self.date_param} disagree; give one of them"
                )
            if when is not None:
                values[self.date_param] = when
            if values.get(self.date_param) is None and not self._has_default(self.date_param):
                raise ParameterError(
                    f"pipeline {self.name}: missing parameter {self.date_param} (or {LOGICAL_DATE}); "
                    f"give it like -p {self.date_param}=2019-04-26"
                )
        values = {k: v for k, v in values.items() if not (k == self.date_param and v is None)}
        try:
            return self.cls(**values)
        except Exception as exc:
            raise ParameterError(f"pipeline {self.name}: {type(exc).__name__}: {exc}") from None

    def _has_default(self, name: str) -> bool:
        return bool(dict(self.cls.get_params())[name].has_task_value(self.cls.get_task_family(), name))


def from_task(
    cls: type[luigi.Task],
    *,
    name: str | None = None,
    schedule: str | None = None,
    timezone: str = "UTC",
    catchup: bool = False,
    executor: str | None = None,
) -> PipelineDef:
    """A pipeline that runs the Luigi task ``cls`` and all it requires.

    Define one in a module to give it a name, a cron ``schedule`` (each scheduled run's time
    fills the class's date parameter) or an ``executor``, like ``@pipeline``::

        nightly = conveyor.luigi.from_task(Report, schedule="0 6 * * *")
    """
    if not (isinstance(cls, type) and issubclass(cls, luigi.Task)):
        raise DefinitionError(f"from_task takes a luigi.Task class, got {cls!r}")
    pname = name or f"{cls.__module__}.{cls.__name__}"
    owner = f"pipeline {pname}"
    _check_name(pname, owner)
    family = cls.get_task_family()
    params: list[P.Param] = []
    date = _date_param(cls)
    for pn, p in cls.get_params():
        try:
            param = pipeline_param(family, pn, p)
        except ValueError as exc:
            raise DefinitionError(f"{owner}: default of parameter {pn!r}: {exc}") from None
        if date is not None and pn == date[0]:  # None: logical_date, else Luigi's default fills it
            param = P.Param(pn, optional_date(date[1]), None)
        params.append(param)
    if date is not None:
        params.append(P.Param(LOGICAL_DATE, optional_date(date[1]), None))
    sched = None if schedule is None else Schedule.parse(schedule, timezone, catchup, owner)
    if sched is not None and date is None:
        raise DefinitionError(f"{owner}: a schedule needs the class to have exactly one date parameter")
    doc = (cls.__doc__ or "").strip().splitlines()
    pipe: LuigiPipeline

    def build(**bound: Any) -> None:
        builder = current_builder()
        if builder is None:
            raise DefinitionError(f"{owner}: call it inside a pipeline, or build() it")
        record(builder, pipe.task(bound))

    pipe = LuigiPipeline(
        pname, build, tuple(params), doc[0] if doc else "", sched, executor, cls, date and date[0]
    )
    return pipe


def load(spec: str) -> PipelineDef:
    """The pipeline of ``luigi:MODULE.TaskClass`` (``spec`` without the prefix)."""
    from conveyor.loader import load_module

    where, dot, cname = spec.rpartition(".")
    if not dot or not where or not cname:
        raise LoadError(f"{PREFIX}{spec}: name a Luigi task class as {PREFIX}MODULE.TaskClass")
    module = load_module(where)
    cls = getattr(module, cname, None)
    if not (isinstance(cls, type) and issubclass(cls, luigi.Task)):
        raise LoadError(f"{PREFIX}{spec}: {where} has no Luigi task class {cname!r}")
    return from_task(cls, name=spec)
