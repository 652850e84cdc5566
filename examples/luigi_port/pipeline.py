"""Dump, ingest, aggregate: the Luigi pipeline of ``luigi_original.py`` ported to Conveyor.

    conveyor run examples/luigi_port/pipeline.py:sales
    conveyor run examples/luigi_port/pipeline.py:sales -p start=2026-03-01 -p days=30
    WAREHOUSE_URL=postgresql+psycopg://me@db/warehouse \\
        conveyor run examples/luigi_port/pipeline.py:sales -p 'db=$WAREHOUSE_URL'

Per day: ``dump`` writes the day's order lines from the source system to a CSV file,
``ingest`` loads the CSV into the day's partition of the warehouse table ``sales``,
``aggregate`` sums that partition into the day's partition of ``daily_totals``, and ``share``
writes those totals as CSV to a folder or an object store (``-p to=s3://bucket/prefix``). The warehouse
is any SQLAlchemy URL (SQLite by default), or ``$NAME`` to read it from an environment variable
when the task runs, so the password is neither in the code nor in the run record.

Where Luigi writes the rows, commits, then writes a marker file (two steps, so a crash between
them duplicates or loses rows), Conveyor commits each partition's rows together with its marker
row, in one transaction, after the task returned. See README.md.

Two environment variables exist for the kill test (tests/test_exactly_once.py), not for users:
``LUIGI_PORT_PAUSE`` (seconds ``ingest`` and ``aggregate`` wait after their insert, inside
their open transaction) and ``LUIGI_PORT_PROGRESS`` (a file where they note "inserted" before
the pause and "returning" after it).
"""

from __future__ import annotations

import csv
import os
import time
from collections import defaultdict
from datetime import date, timedelta

import source

from conveyor import FileTarget, TableTarget, output, pipeline, task

WAREHOUSE = "sqlite:///warehouse.db"
DUMP = "dumps/sales-{day}.csv"

SALES_DDL = """
    CREATE TABLE IF NOT EXISTS sales (
        day DATE NOT NULL,
        order_id VARCHAR(32) NOT NULL,
        sku VARCHAR(32) NOT NULL,
        quantity INTEGER NOT NULL,
        price_cents INTEGER NOT NULL
    )
"""
TOTALS_DDL = """
    CREATE TABLE IF NOT EXISTS daily_totals (
        day DATE NOT NULL,
        sku VARCHAR(32) NOT NULL,
        orders INTEGER NOT NULL,
        units INTEGER NOT NULL,
        revenue_cents BIGINT NOT NULL
    )
"""


@task(output=DUMP)
def dump(day: date) -> None:
    """The day's order lines from the source system, as CSV (written under a temporary name
    and moved into place when complete)."""
    with output().open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=source.COLUMNS)
        writer.writeheader()
        writer.writerows(source.sales(day))


# Conveyor makes each table once (create=) before the first task writes into it.
@task(output=TableTarget("{db}", "sales", partition={"day": "{day}"}, create=SALES_DDL))
def ingest(day: date, db: str, dumped: FileTarget) -> int:
    """The dump's rows into the day's partition of ``sales``; Conveyor fills in ``day`` and
    commits the rows with the partition's marker once this returns."""
    with dumped.open(newline="") as f:
        rows = [
            {**r, "quantity": int(r["quantity"]), "price_cents": int(r["price_cents"])}
            for r in csv.DictReader(f)
        ]
    with output().transaction() as conn:
        output().insert(conn, rows)
        _inserted("ingest", day)
    return len(rows)


@task(output=TableTarget("{db}", "daily_totals", partition={"day": "{day}"}, create=TOTALS_DDL))
def aggregate(day: date, db: str, ingested: TableTarget) -> None:
    """Orders, units and revenue per product for the day, from the ingested partition."""
    totals: dict[str, dict[str, int]] = defaultdict(lambda: {"orders": 0, "units": 0, "revenue_cents": 0})
    with ingested.connect() as conn:
        for sku, quantity, price in conn.execute(ingested.select("sku", "quantity", "price_cents")):
            t = totals[sku]
            t["orders"] += 1
            t["units"] += quantity
            t["revenue_cents"] += quantity * price
    with output().transaction() as conn:
        output().insert(conn, [{"sku": sku, **t} for sku, t in sorted(totals.items())])
        _inserted("aggregate", day)


TOTALS = ("sku", "orders", "units", "revenue_cents")


@task(output="{to}/totals-{day}.csv")
def share(day: date, to: str, totals: TableTarget) -> None:
    """The day's totals as CSV where the analysts read them: a folder, or an object store
    (``s3://bucket/prefix``: the object appears only once complete, after this returned)."""
    with output().open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=TOTALS)
        writer.writeheader()
        writer.writerows(sorted(totals.rows(*TOTALS), key=lambda r: r["sku"]))


@pipeline
def sales(start: date = date(2026, 1, 1), days: int = 7, db: str = WAREHOUSE, to: str = "shared") -> None:
    """Dump, ingest, aggregate and share each of the ``days`` days from ``start``: into the
    warehouse ``db`` (a SQLAlchemy URL, or ``$NAME``: the URL in that environment variable),
    the totals shared as CSV in ``to`` (a folder or an fsspec URL such as ``s3://bucket/prefix``)."""
    for n in range(days):
        day = start + timedelta(days=n)
        share(day, to, aggregate(day, db, ingest(day, db, dump(day))))


def _inserted(step: str, day: date) -> None:
    """For the kill test: say the rows are in the open transaction, then hold it open."""
    progress = os.environ.get("LUIGI_PORT_PROGRESS")
    if progress:
        _note(progress, f"inserted {step} {day} {os.getpid()}")
    time.sleep(float(os.environ.get("LUIGI_PORT_PAUSE") or 0))
    if progress:
        _note(progress, f"returning {step} {day} {os.getpid()}")


def _note(path: str, line: str) -> None:
    with open(path, "a") as f:
        f.write(line + "\n")
