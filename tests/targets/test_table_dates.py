"""A table target partitioned by a day, over a DATE column, on SQLite and PostgreSQL: the
partition is found, read, counted and replaced whether its value is a date or its ISO text
(PostgreSQL refused ``date = character varying`` when the value was bound as text)."""

from __future__ import annotations

import uuid
from datetime import date
from pathlib import Path

import pytest

from conveyor import TableTarget


@pytest.fixture(params=["sqlite", "postgresql"])
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str:
    if request.param == "sqlite":
        return f"sqlite:///{tmp_path / 'wh.db'}"
    return str(request.getfixturevalue("postgres").create_database(f"d_{uuid.uuid4().hex[:10]}"))


def test_a_date_partition_of_a_date_column(url: str) -> None:
    day = TableTarget(url, "sales", partition={"day": date(2026, 1, 2)})
    with day.engine.begin() as conn:
        conn.exec_driver_sql("CREATE TABLE sales (day DATE NOT NULL, amount INTEGER NOT NULL)")
    for d in (date(2026, 1, 1), date(2026, 1, 2)):
        target = TableTarget(url, "sales", partition={"day": d})
        with target.transaction() as conn:
            target.insert(conn, [{"amount": 1}, {"amount": 2}])
    assert day.count() == 2 and sorted(r["amount"] for r in day.rows("amount")) == [1, 2]
    with day.connect() as conn:
        assert sorted(conn.execute(day.select("amount")).scalars()) == [1, 2]
    as_text = TableTarget(url, "sales", partition={"day": "2026-01-02"})
    assert as_text.exists() and as_text.count() == 2
    with day.transaction(replace=True) as conn:
        day.insert(conn, [{"amount": 5}])
    assert [r["amount"] for r in day.rows("amount")] == [5]
    assert TableTarget(url, "sales", partition={"day": date(2026, 1, 1)}).count() == 2


def test_a_task_called_as_a_plain_function_writes_its_partition(url: str) -> None:
    """Its ``output()`` is the target itself: ``output().insert`` works there as under a run."""
    from conveyor import output, task

    @task(output=TableTarget(url, "sales", partition={"day": "{day}"}))
    def ingest(day: date) -> None:
        with output().transaction() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS sales (day DATE NOT NULL, amount INTEGER)")
            output().insert(conn, [{"amount": 7}])

    ingest(date(2026, 1, 3))
    done = TableTarget(url, "sales", partition={"day": date(2026, 1, 3)})
    assert done.rows("amount") == [{"amount": 7}] and done.marker() is not None
