"""Conveyor, as a user runs it: ``conveyor.run`` with the durable SQLite store and default workers.

    .venv/bin/python bench/peers/run_conveyor.py {fanout,chain,wide,idempotent,demo} N
    .venv/bin/python bench/peers/run_conveyor.py tables N {bulk,each}

Run in a fresh directory that is also ``CONVEYOR_HOME``; the store is ``conveyor.db`` there. The
time is the whole ``conveyor.run`` call: loading the pipeline and building its graph, opening the
store and creating the run, starting the workers, driving every task durably, shutting down.

- fanout, wide: the ``fanout`` pipeline, N no-ops and a join;  chain: N steps in a row;
- idempotent: the ``idempotent`` pipeline (N tasks with a target each) is run once untimed, which
  writes every target; the timed run is the next one, a new run that finds everything done;
- demo: the demo pipeline over N days, from ``examples/sales/`` copied into this directory;
- tables (h): N daily partitions of one SQLite table, each written untimed through its
  ``TableTarget`` (a row and the marker, in one transaction). The time is deciding which are
  done: building the N targets and calling ``conveyor.targets.done_among`` on them (bulk), or
  each target's ``exists()`` in turn (each). The sample also counts the statements the targets'
  engine (``TableTarget.engine``) sends, with a ``before_cursor_execute`` listener.

Imports happen before the clock starts, as the pool's do: the store's (SQLAlchemy's, about
0.2 s on this machine) is a once-per-process cost, which cold start measures. (Cold start, the
whole ``conveyor run`` process, is timed by the harness around the CLI.)
"""

from __future__ import annotations

import os
import time
from pathlib import Path

from common import TABLE, count_statements, create_table, days, emit, parse_args, statements_report

import conveyor
import conveyor.store.sql  # imported before the clock starts, like the peers' imports

PIPELINES = Path(__file__).resolve().parent.parent / "pipelines.py"


def run(target: str, params: dict[str, int], db: str) -> conveyor.RunResult:
    result = conveyor.run(target, params, db=db)
    if result.state != "succeeded":
        raise SystemExit(f"conveyor: the run of {target} ended {result.state}: {result.failed}")
    return result


def tables(n: int, variant: str) -> None:
    """h: decide which of n written daily partitions are done (every one of them is)."""
    import sqlalchemy as sa

    from conveyor.targets import TableTarget, done_among

    url = f"sqlite:///{os.getcwd()}/tables.db"
    create_table("tables.db", [])
    insert = sa.text(f"INSERT INTO {TABLE} (day, amount) VALUES (:day, 1)")
    for day in days(n):  # untimed: each partition's row and marker, as a task's run writes them
        with TableTarget(url, TABLE, partition={"day": day}).transaction() as conn:
            conn.execute(insert, {"day": day.isoformat()})
    counts = count_statements(TableTarget(url, TABLE).engine)
    t0 = time.perf_counter()
    targets = [TableTarget(url, TABLE, partition={"day": day}) for day in days(n)]
    done = done_among(targets) if variant == "bulk" else {t for t in targets if t.exists()}
    seconds = time.perf_counter() - t0
    if len(done) != n:
        raise SystemExit(f"conveyor: {len(done)} of the {n} written partitions found done")
    emit(seconds, n, **statements_report(counts))


def main() -> None:
    args = parse_args(("bulk", "each"), scenarios=("fanout", "chain", "wide", "idempotent", "demo", "tables"))
    if args.scenario == "tables":
        tables(args.n, args.variant)
        return
    if args.variant != "bulk":
        raise SystemExit(f"conveyor: variant {args.variant!r} is for the tables scenario only")
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
