"""A Luigi task's graph: its requirements, walked once, upstream first.

Used twice: by the pipeline builder (one Conveyor task instance per Luigi task) and inside a
worker for the dependencies a ``run()`` yields (run there in this order). A Luigi range task
(``RangeDaily``, ``RangeHourly``, ...) is expanded here to every date of its range: Luigi's own
``requires()`` looks back only ``days_back`` (100) days from the wall clock and drops the dates
already complete, so the same range would give a different graph tomorrow, or none at all for
old dates. Conveyor checks ``complete()`` itself and skips what is done.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterable
from datetime import UTC, datetime
from typing import Any, TypeVar

import luigi
from luigi.task import flatten
from luigi.tools.range import RangeBase

from conveyor.errors import CycleError, GraphError

T = TypeVar("T")


def requirements(task: luigi.Task) -> list[luigi.Task]:
    """What ``task`` requires (one, a list, a dict, or yielded), a range's every date."""
    if isinstance(task, RangeBase):
        return range_tasks(task)
    try:
        found: list[luigi.Task] = flatten(task.requires())
    except Exception as exc:
        raise GraphError(
            f"luigi task {task.task_id}: requires() raised {type(exc).__name__}: {exc}"
        ) from None
    for dep in found:
        if not isinstance(dep, luigi.Task):
            raise GraphError(
                f"luigi task {task.task_id}: requires() returned {dep!r}, not a task; wrap a target "
                "in an ExternalTask"
            )
    return found


def range_tasks(rng: RangeBase) -> list[luigi.Task]:
    """Every task of ``rng``'s range, from ``start`` to ``stop`` (excluded), with no look-back
    limit and no ``task_limit``; an open end is taken from ``now`` (pinned by the run)."""
    if rng.start is None and rng.stop is None:
        raise GraphError(f"luigi task {rng.task_id}: give the range a start, a stop or both")
    now = datetime.fromtimestamp(time.time() if rng.now is None else rng.now, tz=UTC).replace(tzinfo=None)
    start = rng.moving_start(now) if rng.start is None else rng.parameter_to_datetime(rng.start)
    stop = rng.moving_stop(now) if rng.stop is None else rng.parameter_to_datetime(rng.stop)
    if start > stop:
        raise GraphError(f"luigi task {rng.task_id}: its start is after its stop")
    stamps = rng.finite_datetimes(start, stop)
    if rng.reverse:
        stamps = list(reversed(stamps))
    return [rng._instantiate_task_cls(rng.datetime_to_parameter(d)) for d in stamps]


def walk(roots: Iterable[luigi.Task], visit: Callable[[luigi.Task, list[T]], T]) -> dict[str, T]:
    """Call ``visit(task, results of its requirements)`` for every task reachable from ``roots``,
    each once, every requirement before the task that needs it; results by ``task_id``.
    Iterative, so that a chain of thousands of days does not exhaust Python's stack."""
    done: dict[str, T] = {}
    deps: dict[str, list[luigi.Task]] = {}
    open_: dict[str, luigi.Task] = {}  # on the current path: seeing one again is a cycle
    stack: list[tuple[luigi.Task, bool]] = [(r, False) for r in reversed(list(roots))]
    while stack:
        task, expanded = stack.pop()
        tid = task.task_id
        if tid in done:
            continue
        if not expanded:
            if tid in open_:
                raise CycleError(f"luigi task {tid} requires itself through {', '.join(open_)}")
            open_[tid] = task
            deps[tid] = requirements(task)
            stack.append((task, True))
            stack.extend((d, False) for d in reversed(deps[tid]) if d.task_id not in done)
            continue
        open_.pop(tid, None)
        done[tid] = visit(task, [done[d.task_id] for d in deps[tid]])
    return done


def ordered(roots: Iterable[luigi.Task]) -> list[luigi.Task]:
    """The tasks reachable from ``roots``, every requirement first."""
    found: list[luigi.Task] = []

    def visit(task: luigi.Task, _: list[Any]) -> None:
        found.append(task)

    walk(roots, visit)
    return found
