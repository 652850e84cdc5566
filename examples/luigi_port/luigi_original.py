"""The pipeline as a Luigi user writes it today: documentation for README.md, never imported
(Luigi is not a dependency of Conveyor). ``pipeline.py`` is the port.

It shows the marker-file gap: IngestSales commits its rows to the database, THEN writes its
marker file. A crash between the two leaves the rows without the marker, so the next run
inserts them again (duplicates); writing the marker first would lose the rows instead. The
database commit and the file cannot be one atomic step.

    luigi --module luigi_original AggregateSales --day 2026-01-01 --local-scheduler
"""

import csv
import sqlite3

import luigi
import source

WAREHOUSE = "warehouse.db"


class DumpSales(luigi.Task):
    day = luigi.DateParameter()

    def output(self):
        return luigi.LocalTarget(f"dumps/sales-{self.day}.csv")

    def run(self):
        with self.output().open("w") as f:  # atomic: written to a temporary file, then moved
            writer = csv.DictWriter(f, fieldnames=source.COLUMNS)
            writer.writeheader()
            writer.writerows(source.sales(self.day))


class IngestSales(luigi.Task):
    day = luigi.DateParameter()

    def requires(self):
        return DumpSales(day=self.day)

    def output(self):
        return luigi.LocalTarget(f"markers/ingested-{self.day}.ok")

    def run(self):
        with self.input().open() as f:
            rows = list(csv.DictReader(f))
        db = sqlite3.connect(WAREHOUSE)
        db.execute(
            "CREATE TABLE IF NOT EXISTS sales "
            "(day DATE, order_id TEXT, sku TEXT, quantity INTEGER, price_cents INTEGER)"
        )
        db.executemany(
            "INSERT INTO sales VALUES (?, ?, ?, ?, ?)",
            [(str(self.day), r["order_id"], r["sku"], r["quantity"], r["price_cents"]) for r in rows],
        )
        db.commit()
        # <- a crash here: the rows are in, the marker is not; the next run inserts them again
        with self.output().open("w") as f:
            f.write(str(len(rows)))


class AggregateSales(luigi.Task):
    day = luigi.DateParameter()

    def requires(self):
        return IngestSales(day=self.day)

    def output(self):
        return luigi.LocalTarget(f"markers/aggregated-{self.day}.ok")

    def run(self):
        db = sqlite3.connect(WAREHOUSE)
        db.execute(
            "CREATE TABLE IF NOT EXISTS daily_totals "
            "(day DATE, sku TEXT, orders INTEGER, units INTEGER, revenue_cents INTEGER)"
        )
        db.execute("DELETE FROM daily_totals WHERE day = ?", (str(self.day),))
        db.execute(
            "INSERT INTO daily_totals SELECT day, sku, COUNT(*), SUM(quantity), "
            "SUM(quantity * price_cents) FROM sales WHERE day = ? GROUP BY day, sku",
            (str(self.day),),
        )
        db.commit()
        with self.output().open("w") as f:  # the same gap as IngestSales
            f.write("ok")


class SalesRange(luigi.WrapperTask):
    start = luigi.DateParameter()
    days = luigi.IntParameter(default=7)

    def requires(self):
        from datetime import timedelta

        return [AggregateSales(day=self.start + timedelta(days=n)) for n in range(self.days)]
