"""Dask: the same graphs as ``dask.delayed`` calls, on the threaded scheduler or a LocalCluster.

    .bench-venv/bin/python bench/peers/run_dask.py {fanout,chain,wide,cold} N {threads,cluster}

threads: ``dask.compute(..., scheduler="threads")`` (a thread pool in this process; the default
for delayed). cluster: ``LocalCluster(processes=True, n_workers=2, threads_per_worker=1)`` and a
``Client``: the distributed scheduler runs in this process, the workers in two processes. The
cluster's start-up is reported apart (``startup_seconds``) and not timed; the time covers building
the graph and computing it. cold: the whole process (timed by the harness) for one task.
"""

from __future__ import annotations

import time
from typing import Any

import dask
from common import emit, parse_args


def noop(i: int) -> None:
    """The no-op task."""


def join(*parts: None) -> None:
    """Waits for every no-op."""


def step(i: int, prev: None) -> None:
    """One link of a chain."""


def graph(scenario: str, n: int) -> tuple[Any, int]:
    if scenario == "chain":
        prev = None
        for i in range(n):
            prev = dask.delayed(step)(i, prev)
        return prev, n
    if scenario == "cold":
        return dask.delayed(noop)(0), 1
    return dask.delayed(join)(*[dask.delayed(noop)(i) for i in range(n)]), n + 1


def main() -> None:
    args = parse_args(("threads", "cluster"))
    if args.variant == "threads":
        t0 = time.perf_counter()
        g, tasks = graph(args.scenario, args.n)
        dask.compute(g, scheduler="threads")
        emit(time.perf_counter() - t0, tasks)
        return
    from distributed import Client, LocalCluster

    t0 = time.perf_counter()
    with (
        LocalCluster(n_workers=2, threads_per_worker=1, processes=True, dashboard_address=None) as cluster,
        Client(cluster) as client,
    ):
        startup = time.perf_counter() - t0
        t1 = time.perf_counter()
        g, tasks = graph(args.scenario, args.n)
        client.compute(g).result()
        seconds = time.perf_counter() - t1
    emit(seconds, tasks, startup_seconds=startup)


if __name__ == "__main__":
    main()
