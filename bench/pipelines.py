"""The benchmark's pipelines: no-op tasks, so only Conveyor's own overhead is measured (except
``components`` in scenario f, whose tasks can sleep or spin)."""

from __future__ import annotations

import time
from pathlib import Path

from conveyor import output, pipeline, task

FANOUT = 1000
CHAIN = 200


@task
def noop(i: int) -> None:
    """Do nothing; the benchmark measures scheduling, persistence and dispatch."""


@task
def join() -> None:
    """Do nothing, after every no-op."""


@task
def step(i: int) -> None:
    """One link of a chain; it does nothing."""


@task(output="targets/t-{i}")
def touch(i: int) -> None:
    """Write an empty target: once it exists, the task is done and a re-run skips it."""
    output().write_text("")


@pipeline
def fanout(n: int = FANOUT) -> None:
    """``n`` independent no-op tasks, then one join that waits for all of them."""
    join(after=[noop(i=i) for i in range(n)])


@pipeline
def chain(n: int = CHAIN) -> None:
    """``n`` no-op steps, each after the one before: pure dispatch latency."""
    prev = None
    for i in range(n):
        prev = step(i=i, after=prev)


@pipeline
def single() -> None:
    """One no-op task: what a pipeline costs before any work (cold start)."""
    noop(i=0)


@pipeline
def idempotent(n: int = FANOUT) -> None:
    """``n`` independent tasks with a target each; once they exist, a re-run has nothing to do."""
    for i in range(n):
        touch(i=i)


@task
def work(i: int, sleep: float = 0.0, spin: float = 0.0) -> None:
    """Some work, or none: sleep ``sleep`` seconds (a wait, no CPU), then busy-loop ``spin`` seconds."""
    if sleep:
        time.sleep(sleep)
    end = time.perf_counter() + spin
    while time.perf_counter() < end:
        pass


@task
def gather(g: int) -> None:
    """Do nothing, after component ``g``'s tasks."""


@pipeline
def components(n: int = FANOUT, k: int = 8, sleep: float = 0.0, spin: float = 0.0) -> None:
    """``k`` independent components (a scheduler's partitions): ``n // k`` tasks each, then a join."""
    per = n // k
    for g in range(k):
        gather(g=g, after=[work(i=g * per + j, sleep=sleep, spin=spin) for j in range(per)])


@task
def once(marker: str = "failed-once") -> None:
    """Fail the first time (the marker does not exist yet), succeed after: a run to resume."""
    path = Path(marker)
    if not path.exists():
        path.touch()
        raise RuntimeError("the first attempt fails, so that the next `conveyor run` resumes the run")


@pipeline
def resumable() -> None:
    """One task that fails once: the second ``conveyor run`` resumes the failed run (cold start)."""
    once()
