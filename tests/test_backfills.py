"""Backfills: the dates of a range, at most N runs at a time, done dates skipped, failed retried."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

from conveyor.backfills import cancel, counts, create, dates, step
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


def _end(store: Store, run_id: str, state: str) -> None:
    """What a scheduler does when the run's only partition ends."""
    claim = store.claim("s", 60)
    assert claim is not None, f"nothing to claim; expected run {run_id}"
    run_id = claim.run.id  # the oldest claimable run
    store.end_partition(
        run_id, 0, claim.partition.epoch, "done" if state == "succeeded" else "failed", "boom"
    )


def test_a_backfill_keeps_to_its_limit_skips_done_dates_and_retries_failed_ones(
    store: Store, tmp_path: Path
) -> None:
    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    pipe = load_pipeline(f"{tmp_path}/pipes.py:daily")
    ref = f"{tmp_path}/pipes.py:daily"
    times = dates(D(2026, 11, 1), D(2026, 11, 5), "day")
    made = create(
        store, pipe, ref, times, {"table": "sales"}, every="day", max_parallel=2, workdir=str(tmp_path)
    )
    assert counts(made.slots) == {"waiting": 5}
    fill = step(store, made, load_pipeline)
    assert [s["state"] for s in fill.slots] == ["pending", "pending", "waiting", "waiting", "waiting"]
    assert step(store, fill, load_pipeline) == fill  # both still pending: nothing more, nothing written
    assert {r.params["logical_date"] for r in store.list_runs()} == {"2026-11-01", "2026-11-02"}
    assert store.list_runs()[0].params["table"] == "sales"
    first, second = (s["run"] for s in fill.slots[:2])
    _end(store, first, "succeeded")
    _end(store, second, "failed")
    fill = step(store, fill, load_pipeline)  # the failed date is reopened, then the next date
    assert counts(fill.slots) == {"succeeded": 1, "pending": 2, "waiting": 2}
    assert fill.slots[1]["retried"] and store.get_run(second).state == "pending"
    # the same backfill again: the done date is skipped, the going ones followed, not resubmitted
    again = create(
        store, pipe, ref, times, {"table": "sales"}, every="day", max_parallel=5, workdir=str(tmp_path)
    )
    assert counts(again.slots) == {"skipped": 1, "pending": 2, "waiting": 2}
    again = step(store, again, load_pipeline)
    assert [s["state"] for s in again.slots][3:] == ["pending", "pending"]
    assert len(store.list_runs(limit=50)) == 5


def test_each_step_is_written_once_however_many_step_it(store: Store, tmp_path: Path) -> None:
    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    ref = f"{tmp_path}/pipes.py:daily"
    pipe = load_pipeline(ref)
    times = dates(D(2026, 11, 1), D(2026, 11, 3), "day")
    made = create(store, pipe, ref, times, {}, every="day", max_parallel=3, workdir=str(tmp_path))
    one = step(store, made, load_pipeline)
    two = step(store, made, load_pipeline)  # a second scheduler stepping the version it read
    assert one == two and one.version == made.version + 1
    assert store.count_runs() == 3  # not 6


def test_a_backfill_ends_when_every_date_has_and_can_be_cancelled(store: Store, tmp_path: Path) -> None:
    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    ref = f"{tmp_path}/pipes.py:daily"
    pipe = load_pipeline(ref)
    fill = create(
        store,
        pipe,
        ref,
        dates(D(2026, 11, 1), D(2026, 11, 2), "day"),
        {},
        every="day",
        max_parallel=1,
        workdir=str(tmp_path),
    )
    fill = step(store, fill, load_pipeline)
    _end(store, fill.slots[0]["run"], "succeeded")
    fill = step(store, fill, load_pipeline)
    _end(store, fill.slots[1]["run"], "succeeded")
    fill = step(store, fill, load_pipeline)
    assert fill.state == "succeeded" and fill.ended_at is not None
    later = create(
        store,
        pipe,
        ref,
        dates(D(2026, 11, 1), D(2026, 11, 4), "day"),
        {},
        every="day",
        max_parallel=1,
        workdir=str(tmp_path),
    )
    later = step(store, later, load_pipeline)
    going = later.slots[2]["run"]
    later = cancel(store, later)
    assert later.state == "cancelled"
    assert [s["state"] for s in later.slots] == ["skipped", "skipped", "pending", "cancelled"]
    assert store.get_run(going).state == "cancelled"  # nobody drove it: cancelled at once
    before = store.count_runs()
    later = step(store, later, load_pipeline)  # a cancelled backfill submits nothing, but follows
    assert [s["state"] for s in later.slots] == ["skipped", "skipped", "cancelled", "cancelled"]
    assert store.count_runs() == before


def test_a_backfill_needs_a_logical_date_and_known_parameters(store: Store, tmp_path: Path) -> None:
    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    pipe = load_pipeline(f"{tmp_path}/pipes.py:undated")
    one = [D(2026, 11, 1)]
    with pytest.raises(ParameterError, match="pipeline undated has no parameter 'logical_date'"):
        create(store, pipe, "x", one, {}, every="day", max_parallel=1, workdir=str(tmp_path))
    daily = load_pipeline(f"{tmp_path}/pipes.py:daily")
    with pytest.raises(ParameterError, match="takes logical_date as a date: use --every day or longer"):
        create(
            store,
            daily,
            "x",
            dates(D(2026, 11, 1), D(2026, 11, 1, 3), "hour"),
            {},
            every="hour",
            max_parallel=1,
            workdir="",
        )
    with pytest.raises(ParameterError, match="unknown parameter 'tabel'") as bad:
        create(store, daily, "x", one, {"tabel": "x"}, every="day", max_parallel=1, workdir="")
    assert bad.value.problems == {"tabel": "unknown parameter"}
    assert store.list_backfills() == []  # nothing half-written


def test_two_backfills_of_the_same_dates_give_each_date_one_run(store: Store, tmp_path: Path) -> None:
    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    ref = f"{tmp_path}/pipes.py:daily"
    pipe = load_pipeline(ref)
    times = dates(D(2026, 11, 1), D(2026, 11, 4), "day")
    one = create(store, pipe, ref, times, {}, every="day", max_parallel=1, workdir=str(tmp_path))
    two = create(store, pipe, ref, times, {}, every="day", max_parallel=1, workdir=str(tmp_path))
    for _ in range(4):  # both step while the other's dates are still waiting
        one, two = step(store, one, load_pipeline), step(store, two, load_pipeline)
        for run in {s["run"] for fill in (one, two) for s in fill.slots if s["state"] == "pending"}:
            _end(store, run, "succeeded")
    one, two = step(store, one, load_pipeline), step(store, two, load_pipeline)
    assert store.count_runs() == 4  # not 8
    assert {s["run"] for s in one.slots} == {s["run"] for s in two.slots}
    assert one.state == two.state == "succeeded"


def test_a_cancelled_backfill_shows_its_runs_ending_after_it(store: Store, tmp_path: Path) -> None:
    from conveyor.service import Service

    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    ref = f"{tmp_path}/pipes.py:daily"
    fill = create(
        store,
        load_pipeline(ref),
        ref,
        dates(D(2026, 11, 1), D(2026, 11, 3), "day"),
        {},
        every="day",
        max_parallel=1,
        workdir=str(tmp_path),
    )
    fill = step(store, fill, load_pipeline)
    going = fill.slots[0]["run"]
    claim = store.claim("s", 60)  # a scheduler drives it: the cancel is only requested
    assert claim is not None and claim.run.id == going
    fill = cancel(store, fill)
    assert [s["state"] for s in fill.slots] == ["pending", "cancelled", "cancelled"]
    store.end_partition(going, 0, claim.partition.epoch, "cancelled", "cancelled")  # its driver stops
    view = Service(store).get_backfill(fill.id)
    assert view.state == "cancelled" and view.counts == {"cancelled": 3}


TABLES = """
    import datetime as dt
    from conveyor import TableTarget, output, pipeline, task

    @task(output=TableTarget("sqlite:///{root}/wh.db", "sales", partition={{"day": "{{day}}"}}))
    def ingest(day: dt.date) -> None:
        with output().transaction() as conn:
            conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS sales (day TEXT)")
            output().insert(conn, [{{}}])

    @pipeline
    def daily(logical_date: dt.date = dt.date(2000, 1, 1)):
        ingest(logical_date)
"""


def test_a_year_of_table_partitions_is_decided_in_one_query(store: Store, tmp_path: Path) -> None:
    """Dates whose partitions were written (by another store, by hand) are skipped, and the
    whole year is decided by one query on the warehouse."""
    import sqlalchemy as sa

    from conveyor import TableTarget
    from conveyor.targets import Writer

    (tmp_path / "pipes.py").write_text(textwrap.dedent(TABLES.format(root=tmp_path)))
    ref = f"{tmp_path}/pipes.py:daily"
    pipe = load_pipeline(ref)
    times = dates(D(2025, 1, 1), D(2025, 12, 31), "day")
    for t in times:
        if t.day != 1:  # the first of each month is missing
            target = TableTarget(f"sqlite:///{tmp_path}/wh.db", "sales", partition={"day": t.date()})
            staged = target.stage()
            with staged.transaction() as conn:
                conn.exec_driver_sql("CREATE TABLE IF NOT EXISTS sales (day TEXT)")
            target.finish(staged, Writer("elsewhere", "x", 1))
    seen: list[str] = []

    def count(_conn: object, _cursor: object, statement: str, *_: object) -> None:
        seen.append(statement)

    engine = TableTarget(f"sqlite:///{tmp_path}/wh.db", "sales").engine
    sa.event.listen(engine, "before_cursor_execute", count)
    try:
        made = create(store, pipe, ref, times, {}, every="day", max_parallel=4, workdir=str(tmp_path))
    finally:
        sa.event.remove(engine, "before_cursor_execute", count)
    assert counts(made.slots) == {"skipped": 365 - 12, "waiting": 12}
    assert {s["when"][:10] for s in made.slots if s["state"] == "waiting"} == {
        f"2025-{m:02d}-01" for m in range(1, 13)
    }
    assert len([s for s in seen if "conveyor_targets" in s]) == 1, seen
