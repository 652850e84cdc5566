"""Placing a run's tasks on executors before the run exists: each task on its own ``executor=``,
its pipeline's, or the project's default; every engine they name opened (connected, or started)
and asked whether it could ever run each task. Anything wrong is one line, and nothing has been
written yet."""

from __future__ import annotations

import os
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from conveyor.errors import ResourceError
from conveyor.executors import load
from conveyor.executors.choice import Choice
from conveyor.executors.port import Executor
from conveyor.resources import Capacity

if TYPE_CHECKING:
    from conveyor.graph import Graph
    from conveyor.recorder import Recorder
    from conveyor.tasks import TaskDef

#: An engine's admission is its own: the run's core admits what the engine's slots allow and
#: leaves memory, gpu and custom resources to the engine (``check`` refused what never fits).
UNBOUNDED = 2**62


@dataclass
class Placement:
    default: str = "local"
    engines: dict[str, Executor] = field(default_factory=dict)
    api: str | None = None  # the execution API their runners report to (None: serve one)
    storage: str | None = None  # where their runners save results (None: the run's home)

    def name_of(self, task: TaskDef) -> str:
        return task.executor or self.default

    def close(self) -> None:
        engines, self.engines = self.engines, {}
        for engine in engines.values():
            try:
                engine.close()
            except Exception:  # closing after an error: the first error is the one to show
                pass


def place(
    graph: Graph,
    choice: Choice,
    *,
    pipeline_executor: str | None,
    workers: int | None,
    resources: Mapping[str, int] | None,
    log_dir: str,
    opened: dict[str, Executor] | None = None,
) -> tuple[Placement, Capacity]:
    """Open the engines the run's tasks name and check every task fits its executor; the
    placement and the capacity its core admits attempts by (``workers`` attempts at once, by
    default the engines' slots, or one per local cpu). ``opened``: engines already open (a
    scheduler's, shared by its runs), used and added to, and not closed here."""
    placement = Placement(pipeline_executor or choice.default, api=choice.api, storage=choice.storage)
    shared = opened if opened is not None else placement.engines
    local = workers or max(os.cpu_count() or 1, 1)
    capacity = Capacity.local(local, resources)
    first_of_each_task = {node.task.name: node for node in reversed(list(graph))}
    widest = 1  # the most cpu one engine task asks for: the run's core must be able to admit it
    try:
        for node in first_of_each_task.values():
            name = placement.name_of(node.task)
            if name == "local":
                capacity.check(node.label, node.task.resources)
                continue
            engine = shared.get(name)
            if engine is None:
                engine = shared[name] = _open(name, choice, local, log_dir)
            placement.engines[name] = engine
            widest = max(widest, node.task.resources.cpu)
            why = engine.check(node.task.resources)
            if why is not None:
                raise ResourceError(f"task {node.label} cannot run on the {name} executor: {why}")
    except BaseException:
        if opened is None:
            placement.close()
        raise
    if placement.engines:
        slots = sum(int(getattr(e, "slots", 0) or 0) for e in placement.engines.values())
        custom = dict.fromkeys(capacity.custom, UNBOUNDED)
        capacity = Capacity(max(workers or max(slots, local), widest), UNBOUNDED, UNBOUNDED, custom)
    return placement, capacity


def _open(name: str, choice: Choice, workers: int, log_dir: str) -> Executor:
    cls: Any = load(name)
    engine: Executor = cls(workers, log_dir, recorder=None, settings=choice.of(name))
    return engine


def lend(engines: Mapping[str, Executor], recorder: Recorder) -> None:
    """Engines that run attempts in worker processes of this machine (Spark's drivers) write to
    the store as local workers do: with the driver's recorder."""
    from conveyor.executors.local import LocalExecutor

    for engine in engines.values():
        if isinstance(engine, LocalExecutor) and engine.recorder is None:
            engine.recorder = recorder
