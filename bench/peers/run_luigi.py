"""Luigi: the same graphs as ``luigi.Task`` classes, run by ``luigi.build`` with its local scheduler.

    .bench-venv/bin/python bench/peers/run_luigi.py {fanout,chain,wide,idempotent,cold} N {1,2}
    .bench-luigi-venv/bin/python bench/peers/run_luigi.py tables N range

The last argument is Luigi's ``workers``: with 1 the tasks run in this process, one at a time;
with 2 Luigi forks a process for each task and runs two at once. No lock file. The
no-op tasks have no output, so the worker is told not to check that dependencies are complete
before running a task (``check_unfulfilled_deps = false``); otherwise a task without an output
never counts as complete. idempotent: N tasks whose output files exist (written before timing),
all passed to ``luigi.build``, which checks each one's ``complete()`` and has nothing to run. The
time is the ``luigi.build`` call, which includes the in-process scheduler.

tables (h): N daily partitions of one SQLite table, as Luigi keeps them: ``DailySales``, a
``luigi.contrib.sqla.CopyToTable`` (its output a ``SQLAlchemyTarget``, whose marker rows live in
``table_updates``), one row per day written untimed, then each day's marker with Luigi's own
``output().touch()``. ``RangeDaily`` needs ``bulk_complete`` for outputs that are not files
(its fallback lists files), so the task mixes in Luigi's own ``MixinNaiveBulkComplete``, which
calls ``complete()`` per task. The time is ``RangeDaily(of=DailySales, start, stop,
days_back=N).requires()``: what Luigi's worker calls when it schedules the range, which finds
the missing days (none) with ``missing_datetimes``, and nothing else of ``luigi.build``. Its
``now`` is the stop day, so ``days_back`` covers the range exactly. The statements are counted
on Luigi's engine for the file (``SQLAlchemyTarget.engine``). Run it with
``.bench-luigi-venv``'s Python: the contrib's ``exists()`` calls ``select([table])``, which
SQLAlchemy 2 refuses, so it needs SQLAlchemy 1.4 (bench/requirements-luigi-sqla.txt).
"""

from __future__ import annotations

import os
import time
import warnings
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, ClassVar

import luigi
import luigi.configuration
from common import SCENARIOS, TABLE, count_statements, create_table, days, emit, parse_args, statements_report

TARGETS = Path("targets")


class Noop(luigi.Task):
    i = luigi.IntParameter()

    def run(self) -> None:
        pass


class Join(luigi.Task):
    n = luigi.IntParameter()

    def requires(self) -> list[Noop]:
        return [Noop(i=i) for i in range(self.n)]

    def run(self) -> None:
        pass


class Step(luigi.Task):
    i = luigi.IntParameter()

    def requires(self) -> list[Step]:
        return [Step(i=self.i - 1)] if self.i > 0 else []

    def run(self) -> None:
        pass


class Touch(luigi.Task):
    i = luigi.IntParameter()

    def output(self) -> luigi.LocalTarget:
        return luigi.LocalTarget(str(TARGETS / f"t-{self.i}"))

    def run(self) -> None:
        with self.output().open("w"):
            pass


def tables(n: int) -> None:
    """h: decide which of n written daily partitions are done (every one of them is)."""
    from luigi.contrib.sqla import CopyToTable, SQLAlchemyTarget
    from luigi.task import MixinNaiveBulkComplete
    from luigi.tools.range import RangeDaily

    class DailySales(MixinNaiveBulkComplete, CopyToTable):
        connection_string = f"sqlite:///{os.getcwd()}/tables.db"
        table = TABLE
        columns: ClassVar[list[Any]] = [(["day", "TEXT"], {}), (["amount", "INTEGER"], {})]
        day = luigi.DateParameter()

        def rows(self) -> list[tuple[str, int]]:
            return [(self.day.isoformat(), 1)]

    written = days(n)
    create_table("tables.db", written)  # untimed: the rows, then each day's marker, Luigi's way
    for day in written:
        DailySales(day=day).output().touch()
    counts = count_statements(SQLAlchemyTarget(DailySales.connection_string, TABLE, "").engine)
    stop = written[-1] + timedelta(days=1)
    now = int(datetime(stop.year, stop.month, stop.day, tzinfo=UTC).timestamp())
    warnings.filterwarnings("ignore", message='.*"param_name" with value "None".*')  # RangeDaily's own
    t0 = time.perf_counter()
    missing = RangeDaily(of=DailySales, start=written[0], stop=stop, days_back=n, now=now).requires()
    seconds = time.perf_counter() - t0
    if missing:
        raise SystemExit(f"luigi: RangeDaily found {len(missing)} of the {n} written days missing")
    emit(seconds, n, **statements_report(counts))


def main() -> None:
    args = parse_args(("1", "2", "range"), scenarios=(*SCENARIOS, "tables"))
    if (args.scenario == "tables") != (args.variant == "range"):
        raise SystemExit("luigi: the tables scenario runs as `tables N range`, and only it")
    if args.scenario == "tables":
        tables(args.n)
        return
    warnings.filterwarnings("ignore", message=".*without outputs has no custom complete.*")
    luigi.configuration.get_config().set("worker", "check_unfulfilled_deps", "false")
    tasks: list[luigi.Task]
    if args.scenario in ("fanout", "wide"):
        tasks, count = [Join(n=args.n)], args.n + 1
    elif args.scenario == "chain":
        tasks, count = [Step(i=args.n - 1)], args.n
    elif args.scenario == "cold":
        tasks, count = [Noop(i=0)], 1
    else:
        TARGETS.mkdir()
        for i in range(args.n):
            (TARGETS / f"t-{i}").touch()
        tasks, count = [Touch(i=i) for i in range(args.n)], args.n
    t0 = time.perf_counter()
    ok = luigi.build(
        tasks, local_scheduler=True, workers=int(args.variant), no_lock=True, log_level="WARNING"
    )
    seconds = time.perf_counter() - t0
    if not ok:
        raise SystemExit("luigi: the build failed")
    emit(seconds, count)


if __name__ == "__main__":
    main()
