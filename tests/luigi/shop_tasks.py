"""A small Luigi pipeline, written the way Luigi users write them (no Conveyor import).

Daily(date) is a target-less WrapperTask over Summary(date) (and, with with_broken, a task
downstream of one that fails). Summary has several requirements (a dict holding a task and a
list of tasks) and, inside run(), yields a dynamic dependency (Rates). Every run() appends its
task id to effects.log, so a test can count what ran. SHOP_SLOW (seconds) slows each run().
"""

import os
import time

import luigi
from luigi.tools.range import RangeDaily  # noqa: F401  (luigi:shop_tasks.RangeDaily)


def effect(task):
    delay = float(os.environ.get("SHOP_SLOW", "0"))
    if delay:
        time.sleep(delay)
    with open("effects.log", "a") as f:
        f.write(task.task_id + "\n")
        f.flush()
        os.fsync(f.fileno())


class Extract(luigi.Task):
    date = luigi.DateParameter()
    region = luigi.Parameter()

    def output(self):
        return luigi.LocalTarget(f"data/{self.date:%Y/%m/%d}/extract-{self.region}.csv")

    def run(self):
        with self.output().open("w") as f:
            for i in range(3):
                f.write(f"{self.date},{self.region},{i * len(self.region)}\n")
        effect(self)


class Lookup(luigi.Task):
    version = luigi.IntParameter(default=2)

    def output(self):
        return luigi.LocalTarget(f"data/lookup-v{self.version}.txt")

    def run(self):
        with self.output().open("w") as f:
            f.write(f"lookup version {self.version}\n")
        effect(self)


class Rates(luigi.Task):
    date = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(f"data/{self.date:%Y/%m/%d}/rates.txt")

    def run(self):
        with self.output().open("w") as f:
            f.write(f"{self.date.day * 1.5}\n")
        effect(self)


class Summary(luigi.Task):
    date = luigi.DateParameter()
    regions = luigi.ListParameter(default=["north", "south"])
    version = luigi.IntParameter(default=2)

    def requires(self):
        return {
            "lookup": Lookup(version=self.version),
            "parts": [Extract(date=self.date, region=r) for r in self.regions],
        }

    def output(self):
        return luigi.LocalTarget(f"data/{self.date:%Y/%m/%d}/summary.txt")

    def run(self):
        rates = yield Rates(date=self.date)  # a dynamic dependency: known only while running
        rate = float(rates.open().read())
        total = 0
        for part in self.input()["parts"]:
            with part.open() as f:
                total += sum(int(line.split(",")[2]) for line in f)
        lookup = self.input()["lookup"].open().read().strip()
        with self.output().open("w") as f:
            f.write(f"{self.date} {lookup} regions={','.join(self.regions)} total={total * rate}\n")
        effect(self)


class Broken(luigi.Task):
    date = luigi.DateParameter()

    def requires(self):
        return Extract(date=self.date, region="east")

    def output(self):
        return luigi.LocalTarget(f"data/{self.date:%Y/%m/%d}/broken.txt")

    def run(self):
        raise ValueError(f"no data for east on {self.date}")


class Downstream(luigi.Task):
    date = luigi.DateParameter()

    def requires(self):
        return Broken(date=self.date)

    def output(self):
        return luigi.LocalTarget(f"data/{self.date:%Y/%m/%d}/downstream.txt")

    def run(self):
        self.output().open("w").close()
        effect(self)


class Daily(luigi.WrapperTask):
    date = luigi.DateParameter()
    with_broken = luigi.BoolParameter(default=False)

    def requires(self):
        yield Summary(date=self.date)
        if self.with_broken:
            yield Downstream(date=self.date)
