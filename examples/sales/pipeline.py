"""The daily sales report of a small synthetic shop: the pipeline that ``make demo`` runs.

    conveyor run examples/sales/pipeline.py:daily_sales
    conveyor run examples/sales/pipeline.py:daily_sales -p end=2026-11-01 -p days=7

Per day: dump the day's sales from the production database to CSV, back the dump up, ingest
it into the analytics database and aggregate it there; then one report over all the days. Every
task writes a target, so a second run finds everything done and skips it all. The ingest and
aggregate steps write *table targets*: the day's rows and a marker row commit in one
transaction, so a crash never loses the day nor ingests it twice.
"""

from __future__ import annotations

import csv
import logging
import shutil
import sqlite3
from collections.abc import Iterator
from contextlib import closing, contextmanager
from datetime import date, timedelta
from pathlib import Path

import shop

from conveyor import FileTarget, TableTarget, output, pipeline, task

log = logging.getLogger("sales")

HISTORY_DAYS = 60  # how many days of orders the production database holds, up to today
PRODUCTION_DB = "demo-output/production/shop.db"
ANALYTICS = "sqlite:///demo-output/analytics/analytics.db"  # any SQLAlchemy URL, or "$ENV_VAR"
DUMP = "demo-output/dumps/sales-{day}.csv"
BACKUP = "demo-output/backup/sales-{day}.csv"
REPORT = {
    "md": "demo-output/report/report-{end}-{days}d.md",
    "png": "demo-output/report/report-{end}-{days}d.png",
    "csv": "demo-output/report/report-{end}-{days}d.csv",
}
ALL = "ALL"  # the aggregate row over all products (orders counted once each)
SALES_TABLE = (
    "CREATE TABLE IF NOT EXISTS sales (day TEXT NOT NULL, order_id INTEGER NOT NULL, "
    "ordered_at TEXT NOT NULL, customer TEXT NOT NULL, city TEXT NOT NULL, sku TEXT NOT NULL, "
    "product TEXT NOT NULL, quantity INTEGER NOT NULL, amount_cents INTEGER NOT NULL)"
)
DAILY_TABLE = (
    "CREATE TABLE IF NOT EXISTS daily_sales (day TEXT NOT NULL, sku TEXT NOT NULL, "
    "product TEXT NOT NULL, orders INTEGER NOT NULL, units INTEGER NOT NULL, revenue_cents INTEGER NOT NULL)"
)
# A table target per day: the partition of its table with that day. Conveyor makes each table
# once (create=), before the first task writes into it.
SALES_INDEX = "CREATE INDEX IF NOT EXISTS sales_day ON sales(day)"
SALES = TableTarget(ANALYTICS, "sales", partition={"day": "{day}"}, create=[SALES_TABLE, SALES_INDEX])
DAILY = TableTarget(ANALYTICS, "daily_sales", partition={"day": "{day}"}, create=DAILY_TABLE)


def report_days(end: date, days: int) -> list[date]:
    """The ``days`` days that end with ``end``, oldest first."""
    return [end - timedelta(days=n) for n in reversed(range(days))]


@contextmanager
def connect(path: str, *, readonly: bool = False) -> Iterator[sqlite3.Connection]:
    """A SQLite connection in autocommit mode (transactions are explicit), closed on exit."""
    uri = f"file:{path}?mode=ro" if readonly else f"file:{path}"
    with closing(sqlite3.connect(uri, uri=True, timeout=30, isolation_level=None)) as con:
        yield con


@task(output=PRODUCTION_DB)
def create_production_db() -> int:
    """Create the shop's "production" database with the last HISTORY_DAYS days of orders."""
    last = date.today()
    first = last - timedelta(days=HISTORY_DAYS - 1)
    path = output().path
    count = shop.create_database(path, first, last)
    log.info("created the production database: %d orders from %s to %s", count, first, last)
    return count


@task(output=DUMP, retries=1)
def dump_sales(day: date, db: FileTarget) -> int:
    """Dump one day's order lines from the production database to CSV."""
    with connect(db.path, readonly=True) as con:
        first, last = shop.coverage(con)
        if not first <= day <= last:
            raise ValueError(
                f"the production database {db} holds orders from {first} to {last}, not {day}; "
                f"delete it to create a fresh one (rm {db})"
            )
        start = day.isoformat()
        rows = con.execute(shop.DUMP_QUERY, (start, (day + timedelta(days=1)).isoformat())).fetchall()
    with output().open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(shop.DUMP_COLUMNS)
        writer.writerows((*row[:-1], shop.cents(row[-1])) for row in rows)
    print(f"dumped {len(rows)} order lines of {day}")
    return len(rows)


@task(output=BACKUP, retries=1)
def backup_dump(day: date, dump: FileTarget) -> None:
    """Copy a day's dump to the backup location."""
    path = output().path
    shutil.copyfile(dump.path, path)
    print(f"backed up {dump} ({Path(dump.path).stat().st_size} bytes)")


@task(output=SALES, retries=1)
def ingest(day: date, dump: FileTarget) -> int:
    """Load a day's dump into the analytics database: its rows commit with the day's marker."""
    with dump.open("r", newline="") as f:
        rows = [
            {
                "order_id": int(r["order_id"]),
                "ordered_at": r["ordered_at"],
                "customer": r["customer"],
                "city": r["city"],
                "sku": r["sku"],
                "product": r["product"],
                "quantity": int(r["quantity"]),
                "amount_cents": shop.parse_cents(r["amount"]),
            }
            for r in csv.DictReader(f)
        ]
    with output().transaction() as conn:
        output().insert(conn, rows)  # the day column is filled in from the partition
    log.info("ingested %d rows of %s", len(rows), day)
    return len(rows)


@task(output=DAILY, retries=1)
def aggregate(day: date, ingested: TableTarget) -> None:
    """Aggregate a day in the analytics database: orders, units and revenue per product, and
    an ALL row over all products, computed by the database inside the target's transaction."""
    with output().transaction() as conn:
        conn.exec_driver_sql(
            "INSERT INTO daily_sales (day, sku, product, orders, units, revenue_cents) "
            "SELECT day, sku, product, COUNT(DISTINCT order_id), SUM(quantity), SUM(amount_cents) "
            "FROM sales WHERE day = ? GROUP BY day, sku, product",
            (day.isoformat(),),
        )
        conn.exec_driver_sql(
            "INSERT INTO daily_sales (day, sku, product, orders, units, revenue_cents) "
            "SELECT ?, ?, 'all products', COUNT(DISTINCT order_id), COALESCE(SUM(quantity), 0), "
            "COALESCE(SUM(amount_cents), 0) FROM sales WHERE day = ?",
            (day.isoformat(), ALL, day.isoformat()),
        )
        orders, revenue = conn.exec_driver_sql(
            "SELECT orders, revenue_cents FROM daily_sales WHERE day = ? AND sku = ?", (day.isoformat(), ALL)
        ).one()
    log.info("%s: %d orders, revenue %s (from %s)", day, orders, shop.cents(revenue), ingested)


@task(output=REPORT)
def report(end: date, days: int) -> None:
    """The report over the days up to ``end``: a Markdown and a CSV table, and a chart."""
    from matplotlib.backends.backend_agg import FigureCanvasAgg
    from matplotlib.figure import Figure

    dates = report_days(end, days)
    products = {p.sku: p.name for p in shop.PRODUCTS}
    revenue: dict[date, dict[str, int]] = {}  # day -> sku -> cents; ALL for the total
    orders: dict[date, int] = {}
    for day in dates:
        for row in DAILY.render({"day": day}).rows("sku", "orders", "revenue_cents"):
            revenue.setdefault(day, {})[row["sku"]] = row["revenue_cents"]
            if row["sku"] == ALL:
                orders[day] = row["orders"]

    header = ["day", "orders", *products, "total"]
    columns = [*products, ALL]  # revenue per product, then the day's total
    table = [
        [day.isoformat(), str(orders[day]), *(shop.cents(revenue[day].get(sku, 0)) for sku in columns)]
        for day in dates
    ]
    totals = ["total", str(sum(orders.values()))]
    totals += [shop.cents(sum(revenue[d].get(sku, 0) for d in dates)) for sku in columns]

    out = output()
    with out["csv"].open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(header)
        writer.writerows(table)

    chart = Path(output(final=True)["png"].path).name  # the name it has once the task is done
    lines = [
        f"# Daily sales, {dates[0]} to {end}",
        "",
        f"Revenue per product and day (EUR), from {len(dates)} daily aggregates.",
        "",
        "| " + " | ".join(["day", "orders", *products.values(), "total"]) + " |",
        "| " + " | ".join(["---"] + ["---:"] * (len(header) - 1)) + " |",
        *("| " + " | ".join(row) + " |" for row in table),
        "| " + " | ".join(f"**{cell}**" for cell in totals) + " |",
        "",
        f"![Revenue per day and product]({chart})",
        "",
    ]
    out["md"].write_text("\n".join(lines))

    fig = Figure(figsize=(8, 4.5), layout="constrained")
    FigureCanvasAgg(fig)
    ax = fig.subplots()
    xs = list(range(len(dates)))
    bottom = [0.0] * len(dates)
    for sku, name in products.items():
        values = [revenue[d].get(sku, 0) / 100 for d in dates]
        ax.bar(xs, values, bottom=bottom, label=name, width=0.6)
        bottom = [b + v for b, v in zip(bottom, values, strict=True)]
    ax.set_xticks(xs, [d.strftime("%a %d %b") for d in dates])
    for x, top in enumerate(bottom):
        ax.annotate(
            f"{top:,.2f}", (x, top), ha="center", va="bottom", xytext=(0, 3), textcoords="offset points"
        )
    ax.set_title(f"Revenue per day and product, {dates[0]} to {end}")
    ax.set_ylabel("revenue (EUR)")
    ax.set_ylim(0, max(bottom) * 1.12)
    ax.legend(loc="upper left", bbox_to_anchor=(1.01, 1.0), frameon=False)
    fig.savefig(out["png"].path, dpi=110)
    print(f"report over {len(dates)} days: total revenue {totals[-1]}")


@pipeline
def daily_sales(end: date | None = None, days: int = 3) -> None:
    """The shop's daily sales report over the ``days`` days up to ``end`` (default: today)."""
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    end = end or date.today()
    db = create_production_db()
    aggregates = []
    for day in report_days(end, days):
        dump = dump_sales(day=day, db=db)
        backup_dump(day=day, dump=dump)
        ingested = ingest(day=day, dump=dump)
        aggregates.append(aggregate(day=day, ingested=ingested))
    report(end=end, days=days, after=aggregates)
