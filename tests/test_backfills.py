"""Backfills: the dates of a range, at most N runs at a time, done dates skipped, failed retried."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from conveyor.backfills import Backfill, dates
from conveyor.errors import ParameterError
from conveyor.loader import load_pipeline
from conveyor.store import Store

D = dt.datetime


def test_dates_step_by_day_hour_week_and_month() -> None:
    assert dates(D(2026, 11, 1), D(2026, 11, 3), "day") == [D(2026, 11, 1), D(2026, 11, 2), D(2026, 11, 3)]
    assert len(dates(D(2026, 11, 1), D(2026, 11, 1, 23), "hour")) == 24
    assert dates(D(2026, 11, 1), D(2026, 11, 20), "week") == [D(2026, 11, 1), D(2026, 11, 8), D(2026, 11, 15)]
    assert dates(D(2026, 1, 31), D(2026, 4, 30), "month") == [
        D(2026, 1, 31),
        D(2026, 2, 28),
        D(2026, 3, 31),
        D(2026, 4, 30),
    ]
    with pytest.raises(ParameterError, match="--to 2026-10-01 is before --from 2026-11-01"):
        dates(D(2026, 11, 1), D(2026, 10, 1), "day")
    with pytest.raises(ParameterError, match="--every 'fortnight' is not one of: day, hour, week, month"):
        dates(D(2026, 11, 1), D(2026, 11, 2), "fortnight")


PIPES = """
    import datetime as dt
    from conveyor import pipeline, task

    @task
    def load(day: dt.date, table: str) -> str:
        return f"{table}@{day}"

    @pipeline
    def daily(logical_date: dt.date = dt.date(2000, 1, 1), table: str = "orders"):
        load(logical_date, table)

    @pipeline
    def undated(table: str = "orders"):
        load(dt.date(2026, 1, 1), table)
"""


def test_a_backfill_keeps_to_its_limit_skips_done_dates_and_retries_failed_ones(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    pipe = load_pipeline(f"{tmp_path}/pipes.py:daily")
    ref = f"{tmp_path}/pipes.py:daily"
    times = dates(D(2026, 11, 1), D(2026, 11, 5), "day")
    fill = Backfill(store, pipe, ref, times, {"table": "sales"}, max_parallel=2, workdir=str(tmp_path))
    started = fill.step()
    assert [s.when.day for s in started] == [1, 2]  # two at a time, oldest first
    assert fill.step() == []  # both still pending: nothing more
    assert {r.params["logical_date"] for r in store.list_runs()} == {"2026-11-01", "2026-11-02"}
    assert store.list_runs()[0].params["table"] == "sales"
    # the schedulers end them: the 1st succeeds, the 2nd fails
    for slot, state in zip(started, ("succeeded", "failed"), strict=True):
        assert slot.run is not None
        store.claim("s", 60)
        [part] = store.partitions(slot.run.id)
        store.end_partition(slot.run.id, 0, part.epoch, "done" if state == "succeeded" else "failed", "boom")
    assert [s.when.day for s in fill.step()] == [2, 3]  # the failed date is retried, then the next
    assert fill.counts() == {"succeeded": 1, "pending": 2, "waiting": 2}
    # the same backfill again: the done date is skipped, the going ones followed, not resubmitted
    again = Backfill(store, pipe, ref, times, {"table": "sales"}, max_parallel=5, workdir=str(tmp_path))
    assert again.counts() == {"skipped": 1, "pending": 2, "waiting": 2}
    assert [s.when.day for s in again.step()] == [4, 5]
    assert len(store.list_runs(limit=50)) == 5


def test_a_backfill_needs_a_logical_date(store: Store, tmp_path: Path) -> None:
    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    pipe = load_pipeline(f"{tmp_path}/pipes.py:undated")
    with pytest.raises(ParameterError, match="pipeline undated has no parameter 'logical_date'"):
        Backfill(store, pipe, "x", [D(2026, 11, 1)], {}, max_parallel=1, workdir=str(tmp_path))
    daily = load_pipeline(f"{tmp_path}/pipes.py:daily")
    with pytest.raises(ParameterError, match="takes logical_date as a date: use --every day or longer"):
        Backfill(
            store,
            daily,
            "x",
            dates(D(2026, 11, 1), D(2026, 11, 1, 3), "hour"),
            {},
            max_parallel=1,
            workdir="",
        )
