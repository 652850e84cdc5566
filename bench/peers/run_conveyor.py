"""Conveyor, as a user runs it: ``conveyor.run`` with the durable SQLite store and default workers.

    .venv/bin/python bench/peers/run_conveyor.py {fanout,chain,wide,idempotent,demo} N

Run in a fresh directory that is also ``CONVEYOR_HOME``; the store is ``conveyor.db`` there. The
time is the whole ``conveyor.run`` call: loading the pipeline and building its graph, opening the
store and creating the run, starting the workers, driving every task durably, shutting down.

- fanout, wide: the ``fanout`` pipeline, N no-ops and a join;  chain: N steps in a row;
- idempotent: the ``idempotent`` pipeline (N tasks with a target each) is run once untimed, which
  writes every target; the timed run is the next one, a new run that finds everything done;
- demo: the demo pipeline over N days, from ``examples/sales/`` copied into this directory.

Imports happen before the clock starts, as the pool's do: the store's (SQLAlchemy's, about
0.2 s on this machine) is a once-per-process cost, which cold start measures. (Cold start, the
whole ``conveyor run`` process, is timed by the harness around the CLI.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from common import emit, parse_args

import conveyor
import conveyor.store.sql  # imported before the clock starts, like the peers' imports

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines.py"


def run(target: str, params: dict[str, int], db: str) -> conveyor.RunResult:
    result = conveyor.run(target, params, db=db)
    if result.state != "succeeded":
        raise SystemExit(f"conveyor: the run of {target} ended {result.state}: {result.failed}")
    return result


def main() -> None:
    args = parse_args(scenarios=("fanout", "chain", "wide", "idempotent", "demo"))
    db = f"sqlite:///{os.getcwd()}/conveyor.db"
    name = {"wide": "fanout"}.get(args.scenario, args.scenario)
    target = f"{PIPELINES}:{name}"
    params = {"n": args.n}
    tasks = args.n + 1 if name == "fanout" else args.n
    if name == "demo":
        target, params = "examples/sales/pipeline.py:daily_sales", {"days": args.n}
        tasks = 2 + 4 * args.n
    elif name == "idempotent":
        run(target, params, db)  # writes every target
    t0 = time.perf_counter()
    result = run(target, params, db)
    seconds = time.perf_counter() - t0
    if name == "idempotent" and result.counts.get("skipped", 0) != args.n:
        raise SystemExit(f"conveyor: the re-run should skip all {args.n} tasks, it did {result.counts}")
    emit(seconds, tasks, drive_seconds=result.elapsed, counts=result.counts)


if __name__ == "__main__":
    main()
