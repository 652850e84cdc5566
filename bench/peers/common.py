"""What every engine script shares: its command line and how it reports one measurement.

An engine script is run as ``PYTHON run_ENGINE.py SCENARIO N [VARIANT]`` in a fresh temporary
directory (its working directory), does the scenario once, and prints one line
``BENCH-RESULT {json}`` on stdout: ``seconds`` (the timed part), ``tasks``, ``rss_mb`` (the peak
resident memory of this process, the one that schedules) and, where an engine has one,
``startup_seconds`` (starting a cluster or a server, not part of ``seconds``).

Scenario h (``tables``) has its own helpers here: the days of the backfill, the table every
engine writes them into, and a count of the SQL statements an engine's connections execute.
"""

from __future__ import annotations

import json
import resource
import sqlite3
import sys
from collections import Counter
from dataclasses import dataclass
from datetime import date, timedelta
from typing import Any

MARK = "BENCH-RESULT "
SCENARIOS = ("fanout", "chain", "wide", "idempotent", "cold")
#: h: the first day of the backfill, and the table whose daily partitions are its targets
FIRST_DAY = date(2016, 1, 1)
TABLE = "sales"


@dataclass(frozen=True)
class Args:
    scenario: str
    n: int
    variant: str


def parse_args(variants: tuple[str, ...] = ("",), scenarios: tuple[str, ...] = SCENARIOS) -> Args:
    argv = sys.argv[1:]
    if len(argv) not in (2, 3) or argv[0] not in scenarios or not argv[1].isdigit():
        raise SystemExit(f"usage: {sys.argv[0]} {{{','.join(scenarios)}}} N [{'|'.join(variants)}]")
    variant = argv[2] if len(argv) == 3 else variants[0]
    if variant not in variants:
        raise SystemExit(f"{sys.argv[0]}: unknown variant {variant!r}; one of {', '.join(variants)}")
    return Args(argv[0], int(argv[1]), variant)


def peak_rss_mb() -> float:
    """This process's peak resident set size in MiB (``ru_maxrss`` is in KiB on Linux)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def emit(seconds: float, tasks: int, **extra: Any) -> None:
    result = {"seconds": seconds, "tasks": tasks, "rss_mb": peak_rss_mb(), **extra}
    print(MARK + json.dumps(result), flush=True)


# -- h: table targets -----------------------------------------------------------------------------
def days(n: int) -> list[date]:
    """The backfill's ``n`` days, from FIRST_DAY."""
    return [FIRST_DAY + timedelta(days=i) for i in range(n)]


def create_table(path: str, rows_of: list[date]) -> None:
    """The data table, with one row for each of ``rows_of`` (empty: the engine writes the rows)."""
    with sqlite3.connect(path) as db:
        db.execute(f"CREATE TABLE {TABLE} (day TEXT NOT NULL, amount INTEGER NOT NULL)")
        db.executemany(f"INSERT INTO {TABLE} VALUES (?, 1)", [(d.isoformat(),) for d in rows_of])
    db.close()


def count_statements(engine: Any) -> Counter[str]:
    """From now on, the statements ``engine``'s connections send to the database, by their first
    word (SELECT, PRAGMA, BEGIN, ...): a SQLAlchemy ``before_cursor_execute`` listener."""
    from sqlalchemy import event

    counts: Counter[str] = Counter()

    def count(conn: Any, cursor: Any, statement: str, *rest: Any) -> None:
        counts[statement.split(None, 1)[0].upper() if statement.strip() else "?"] += 1

    event.listen(engine, "before_cursor_execute", count)
    return counts


def statements_report(counts: Counter[str]) -> dict[str, Any]:
    """What a tables sample reports of ``counts``: all statements, the SELECTs, and by kind."""
    return {"statements": sum(counts.values()), "selects": counts["SELECT"], "by_kind": dict(counts)}
