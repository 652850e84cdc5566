"""The benchmark's pipelines: no-op tasks, so only Conveyor's own overhead is measured."""

from __future__ import annotations

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
