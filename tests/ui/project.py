"""The UI tests' project: pipelines with every kind of form field, a slow one, a failing one, one of
2,000 task instances, a daily one for backfills, one for the runs page, a scheduled one, one
writing a table partition and a file, and a notebook task (``analysis.ipynb``, whose output carries a
script that must not run in Conveyor's origin)."""

from __future__ import annotations

import nbformat

from conftest import Project

PIPES = '''
import datetime as dt
import enum
import time

from conveyor import TableTarget, notebook, output, pipeline, task


class Colour(enum.Enum):
    red = "red"
    green = "green"
    blue = "blue"


@task
def extract(day: dt.date, region: str, rows: int) -> list:
    print(f"extracting {rows} rows of {region} for {day}", flush=True)
    time.sleep(1)  # long enough for the page to see it run
    return [f"{region}-{i}" for i in range(rows)]


@task
def clean(rows: list, strict: bool) -> list:
    print(f"cleaning {len(rows)} rows (strict={strict})", flush=True)
    return rows


@task
def merge(north: list, south: list, east: list) -> int:
    return len(north) + len(south) + len(east)


@task
def report(total: int, colour: Colour, note: str) -> str:
    print(f"report in {colour.value}: {total} rows; note: {note}", flush=True)
    return f"{total} rows"


@pipeline
def sales(rows: int, strict: bool = False, day: dt.date = dt.date(2026, 11, 1), colour: Colour = Colour.green,
          note: str = "nightly"):
    """Extract each region's sales, clean them, merge them and write a report."""
    parts = {r: clean(extract(day, r, rows), strict) for r in ("north", "south", "east")}
    report(merge(parts["north"], parts["south"], parts["east"]), colour, note)


@task
def nap(seconds: float) -> str:
    print("napping", flush=True)
    end, i = time.monotonic() + seconds, 0
    while time.monotonic() < end:
        print(f"tick {i}", flush=True)
        i += 1
        time.sleep(0.2)
    return "rested"


@pipeline
def slow(seconds: float = 120.0):
    """Sleep, printing a tick every 0.2 s: to follow and to cancel."""
    nap(seconds)


@pipeline
def rest(seconds: float = 120.0):
    """The same nap as slow's: a run of both at once naps once (the later to begin waits)."""
    nap(seconds)


@task
def pause(seconds: float) -> float:
    time.sleep(seconds)
    return seconds


@task
def after(waited: float) -> str:
    return f"after {waited}"


@pipeline
def chain(seconds: float = 4.0):
    """A pause, then a task that waits for it: says why it waits."""
    after(pause(seconds))


@task(retries=1, retry_delay=0.2)
def load(table: str) -> None:
    print(f"loading {table}", flush=True)
    raise ValueError(f"table {table!r} is locked by <b>another</b> job")


@pipeline
def broken(table: str = "orders"):
    """Fails: its task raises, twice."""
    load(table)


@task
def prepare(n: int) -> int:
    return n


@task
def cell(i: int, n: int) -> int:
    return i * n


@task
def gather() -> str:
    return "gathered"


@pipeline
def wide(n: int = 2000):
    """A fan-out of n cheap task instances, and a fan-in."""
    size = prepare(n)
    gather(after=[cell(i, size) for i in range(n)])


@task
def day(when: dt.date) -> str:
    print(f"day {when}", flush=True)
    return when.isoformat()


@pipeline
def daily(logical_date: dt.date = dt.date(2026, 1, 1)):
    """One day's work, for backfills."""
    day(logical_date)


@task
def count(k: int) -> int:
    return k


@pipeline
def tally(k: int = 0):
    """Count to k: runs for the runs page's filters and pages."""
    count(k)


@task(output=TableTarget("sqlite:///warehouse.db", "sales", partition={"day": "{day}"}))
def ingest(day: dt.date, rows: int) -> None:
    with output().transaction() as conn:
        conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS sales (day TEXT, n INTEGER)")
        output().insert(conn, [{"n": i} for i in range(rows)])


@task(output="exports/sales-{day}.csv")
def export(day: dt.date, sales: TableTarget) -> None:
    output().write_text("n\\n" + "".join(f"{r['n']}\\n" for r in sales.rows("n")))


@pipeline
def warehouse(day: dt.date = dt.date(2026, 11, 1), rows: int = 3):
    """Ingest a day into a table partition, and export it to CSV."""
    export(day, ingest(day, rows))


@task(output="exports/amounts-{n}.csv")
def amounts(n: int) -> None:
    output().write_text("amount\\n" + "".join(f"{i * 10}\\n" for i in range(1, n + 1)))


analysis = notebook("analysis.ipynb", parameters={"n": int, "data": str}, output="reports/analysis-{n}.ipynb")


@pipeline
def analyse(n: int = 4):
    """A notebook task: the amounts summed in analysis.ipynb, rendered in the task's panel."""
    analysis(n=n, data=amounts(n))


@pipeline(schedule="0 3 * * *")
def nightly(logical_date: dt.date = dt.date(2026, 1, 1)):
    """Every night at 03:00 UTC."""
    day(logical_date)
'''


def make_ui_project(project: Project) -> Project:
    project.write("conveyor.toml", '[project]\npipelines = ["pipes.py"]\n')
    project.write("pipes.py", PIPES)
    write_analysis(project)
    return project


#: What the notebook's script would do if it ran: mark its own page, and reach into the UI's.
SCRIPT = (
    "<script>document.body.setAttribute('data-ran', 'yes');"
    "try { parent.document.title = 'notebook script ran'; } catch (e) {}</script>"
)


def write_analysis(project: Project) -> None:
    """analysis.ipynb: sums the amounts CSV it is given into a table; its output holds a script."""
    nb = nbformat.v4.new_notebook()
    cell = nbformat.v4.new_code_cell
    table = "'<table><tr><td>rows</td><td>%d</td></tr></table>' % len(rows)"
    nb.cells = [
        cell("n = 1\ndata = ''", metadata={"tags": ["parameters"]}),
        cell("import csv\nrows = [int(r['amount']) for r in csv.DictReader(open(data))]"),
        cell("print('total', sum(rows))"),
        cell(f"from IPython.display import HTML\nHTML({SCRIPT!r} + {table})"),
    ]
    nbformat.write(nb, str(project.root / "analysis.ipynb"))
