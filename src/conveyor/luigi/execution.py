"""Running one Luigi task inside a Conveyor attempt, as Luigi's own worker would.

The instance is rebuilt from its family and its serialized parameters (``from_str_params``),
so any executor that can import the task's module can run it. Then, like Luigi's worker: an
``ExternalTask`` only checks that its data exists; other tasks check that their requirements
are complete, fire Luigi's events (``START``, ``SUCCESS``, ``FAILURE``, ``PROCESSING_TIME``)
and ``on_success``/``on_failure``, and call ``run()``.

Dynamic dependencies: when ``run()`` is a generator that yields tasks not yet complete, Luigi
drops the generator, runs the yielded tasks, and calls ``run()`` again from the start (so
``run()`` must be idempotent up to its ``yield``). Conveyor does the same, inside this attempt:
the yielded tasks and everything they require run here, upstream first, each skipped if already
complete, their output in this attempt's log. Their targets make them durable: after a crash
the new attempt finds them complete and does not run them again.
"""

from __future__ import annotations

import collections.abc
import time
from collections.abc import Mapping
from typing import Any

import luigi
from luigi.event import Event
from luigi.task import DynamicRequirements, flatten

from conveyor.errors import ConveyorError
from conveyor.luigi.params import visible
from conveyor.luigi.requirements import ordered


class LuigiTaskError(ConveyorError):
    """A Luigi task could not run (its data or its dependencies are missing)."""


def str_params(task: luigi.Task) -> dict[str, str | None]:
    """``task.to_str_params()``, but None stays None: Luigi serializes a None as "None", which
    its own ``from_str_params`` cannot read back (a range's open ``stop``, its ``now``)."""
    params = dict(task.get_params())
    return {
        name: None if task.param_kwargs[name] is None else params[name].serialize(task.param_kwargs[name])
        for name, _ in visible(type(task))
    }


def rebuild(family: str, values: Mapping[str, str | None]) -> luigi.Task:
    """The task instance of ``family`` with these serialized parameters (``from_str_params``,
    reading None as None)."""
    cls = luigi.task_register.Register.get_task_cls(family)
    params = dict(cls.get_params())
    kwargs: dict[str, Any] = {}
    for name, text in values.items():
        p = params[name]
        if text is None or isinstance(text, str):
            kwargs[name] = None if text is None else p.parse(text)
        else:  # a list in its JSON form
            kwargs[name] = p.parse(p._parse_list(text))
    task: luigi.Task = cls(**kwargs)
    return task


def _external(task: luigi.Task) -> bool:
    return task.run is None or task.run == NotImplemented


def _say(task: luigi.Task, what: str, value: Any) -> None:
    print(f"[{task.task_id}] {what}: {value}", flush=True)


def execute(task: luigi.Task) -> None:
    """Run ``task`` here; raise what it raised if it fails (a class's own ``on_failure`` text
    goes to the log beside it)."""
    if _external(task):
        if not task.complete():
            raise LuigiTaskError(
                f"luigi task {task.task_id} is an external data dependency and its data does not "
                "exist (yet?); make it, then run again"
            )
        return
    missing = [d.task_id for d in task.deps() if not d.complete()]
    if missing:
        raise LuigiTaskError(
            f"luigi task {task.task_id}: unfulfilled dependencies at run time: {', '.join(missing)}"
        )
    task.set_tracking_url = lambda url: _say(task, "tracking url", url)
    task.set_status_message = lambda msg: _say(task, "status", msg)
    task.set_progress_percentage = lambda pct: _say(task, "progress", f"{pct}%")
    task.trigger_event(Event.START, task)
    began = time.time()
    try:
        tried: set[str] = set()
        while True:
            pending = _run_until_new_deps(task)
            if not pending:
                break
            again = sorted(t.task_id for t in pending if t.task_id in tried)
            if again:
                raise LuigiTaskError(
                    f"luigi task {task.task_id}: run() yields {again[0]} again, which ran but is not "
                    "complete(); check that task's output()"
                )
            tried |= {t.task_id for t in pending}
            for dep in ordered(pending):
                if not dep.complete():
                    print(f"[{task.task_id}] runs its dynamic dependency {dep.task_id}", flush=True)
                    execute(dep)
    except Exception as exc:  # not a cancel (Conveyor's Cancelled, Ctrl-C): that is no failure
        task.trigger_event(Event.FAILURE, task, exc)
        explained = task.on_failure(exc)
        if explained and type(task).on_failure is not luigi.Task.on_failure:  # its own words
            print(explained, flush=True)
        raise
    task.trigger_event(Event.PROCESSING_TIME, task, time.time() - began)
    done = task.on_success()
    if done:
        print(done, flush=True)
    task.trigger_event(Event.SUCCESS, task)


def _run_until_new_deps(task: luigi.Task) -> list[luigi.Task]:
    """Call ``run()``; the tasks it yields that are not complete (then ``run()`` is abandoned,
    as Luigi does), or ``[]`` once it returned."""
    gen = task.run()
    if not isinstance(gen, collections.abc.Generator):
        return []
    send: Any = None
    while True:
        try:
            yielded = next(gen) if send is None else gen.send(send)
        except StopIteration:
            return []
        reqs = yielded if isinstance(yielded, DynamicRequirements) else DynamicRequirements(yielded)
        if not reqs.complete():
            gen.close()
            return list(flatten(reqs.requirements))
        send = reqs.paths
