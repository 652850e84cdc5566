"""A notebook as a task: the week's orders summed into a table and a chart by ``report.ipynb``.

    pip install -e '.[notebooks,demo]'
    conveyor run examples/notebook_report/pipeline.py:weekly_report
    conveyor run examples/notebook_report/pipeline.py:weekly_report -p end=2026-11-01

``orders`` writes a CSV of a week's orders (synthetic, the same numbers for the same week on every
machine); ``report`` runs ``report.ipynb`` with papermill, with the CSV's path and the week injected
after its cell tagged ``parameters``. The executed notebook and its HTML rendering are the report's
targets, in ``demo-output/notebooks/``; ``conveyor server`` shows the rendering in the task's panel.
A second run finds both and skips the task; a cell that raises fails it, naming the cell.
"""

from __future__ import annotations

import csv
import random
from datetime import date, timedelta
from pathlib import Path

from conveyor import notebook, output, pipeline, task

HERE = Path(__file__).resolve().parent
PRODUCTS = ("espresso", "filter", "tea", "cocoa")


@task(output="demo-output/notebooks/orders-{end}.csv")
def orders(end: date) -> int:
    """A week of orders up to ``end``: day, product, quantity (seeded by the day)."""
    rows = []
    for back in reversed(range(7)):
        day = end - timedelta(days=back)
        draw = random.Random(day.toordinal())
        rows += [
            (day.isoformat(), draw.choice(PRODUCTS), draw.randint(1, 4)) for _ in range(draw.randint(20, 40))
        ]
    with output().open("w", newline="") as f:
        writer = csv.writer(f)
        writer.writerow(("day", "product", "quantity"))
        writer.writerows(rows)
    return len(rows)


report = notebook(
    HERE / "report.ipynb",
    parameters={"end": str, "orders_csv": str},
    output="demo-output/notebooks/report-{end}.ipynb",
)


@pipeline
def weekly_report(end: date = date(2026, 11, 1)):
    """The week's orders, then the notebook that reports on them."""
    report(end=end.isoformat(), orders_csv=orders(end))
