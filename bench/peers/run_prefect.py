"""Prefect 3: the same graphs as ``@task`` calls in one ``@flow``, on a thread or a process pool.

    .bench-venv/bin/python bench/peers/run_prefect.py {fanout,chain,wide,cold} N {threads,processes}

Default settings, with ``PREFECT_HOME`` a fresh temporary directory and no ``PREFECT_API_URL``,
so Prefect starts its ephemeral API server (a subprocess, with a fresh SQLite database). Its
start-up is measured apart: ``startup_seconds`` is the first, empty flow's run, which starts the
server. The time is the second flow's run: N ``noop.map`` futures and a join submitted with
``wait_for`` (fanout, wide), or N steps each submitted with ``wait_for`` the one before (chain).
Task runners: ``ThreadPoolTaskRunner()`` (Prefect's default) or ``ProcessPoolTaskRunner()``, both
with their default sizes. cold: the whole process (timed by the harness) for a one-task flow.
"""

from __future__ import annotations

import time
from typing import Any

from common import emit, parse_args
from prefect import flow, task
from prefect.task_runners import ProcessPoolTaskRunner, ThreadPoolTaskRunner


@task
def noop(i: int) -> None:
    """The no-op task."""


@task
def join() -> None:
    """Waits for every no-op."""


@task
def step(i: int) -> None:
    """One link of a chain."""


@flow
def hello() -> None:
    """An empty flow: running it starts the API server."""


def work(scenario: str, n: int) -> None:
    if scenario == "chain":
        prev: Any = None
        for i in range(n):
            prev = step.submit(i, wait_for=[prev] if prev is not None else [])
        prev.result()
    elif scenario == "cold":
        noop.submit(0).result()
    else:
        futures = noop.map(range(n))
        join.submit(wait_for=futures).result()


def main() -> None:
    args = parse_args(("threads", "processes"))
    runner = ThreadPoolTaskRunner if args.variant == "threads" else ProcessPoolTaskRunner
    bench = flow(name=f"bench-{args.scenario}", task_runner=runner())(work)
    tasks = 1 if args.scenario == "cold" else args.n + (args.scenario != "chain")
    if args.scenario == "cold":
        t0 = time.perf_counter()
        bench(args.scenario, 1)
        emit(time.perf_counter() - t0, tasks)
        return
    t0 = time.perf_counter()
    hello()
    startup = time.perf_counter() - t0
    t1 = time.perf_counter()
    bench(args.scenario, args.n)
    emit(time.perf_counter() - t1, tasks, startup_seconds=startup)


if __name__ == "__main__":
    main()
