"""Luigi: the same graphs as ``luigi.Task`` classes, run by ``luigi.build`` with its local scheduler.

    .bench-venv/bin/python bench/peers/run_luigi.py {fanout,chain,wide,idempotent,cold} N {1,2}

The last argument is Luigi's ``workers``: with 1 the tasks run in this process, one at a time;
with 2 Luigi forks a process for each task and runs two at once. No lock file. The
no-op tasks have no output, so the worker is told not to check that dependencies are complete
before running a task (``check_unfulfilled_deps = false``); otherwise a task without an output
never counts as complete. idempotent: N tasks whose output files exist (written before timing),
all passed to ``luigi.build``, which checks each one's ``complete()`` and has nothing to run. The
time is the ``luigi.build`` call, which includes the in-process scheduler.
"""

from __future__ import annotations

import time
import warnings
from pathlib import Path

import luigi
import luigi.configuration
from common import emit, parse_args

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


def main() -> None:
    args = parse_args(("1", "2"))
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
