"""Cron schedules: which ticks are due, in the schedule's time zone; definitions that are wrong."""

from __future__ import annotations

import datetime as dt
from zoneinfo import ZoneInfo

import pytest

from conveyor import pipeline, task
from conveyor.errors import DefinitionError
from conveyor.schedules import MAX_CATCHUP, Schedule

BERLIN = ZoneInfo("Europe/Berlin")


def at(*fields: int, tz: ZoneInfo = BERLIN) -> float:
    return dt.datetime(*fields, tzinfo=tz).timestamp()


def test_ticks_are_the_cron_times_in_the_schedule_zone() -> None:
    daily = Schedule.parse("0 10 * * *", "Europe/Berlin", False, "pipeline p")
    ticks = daily.ticks(at(2026, 11, 20, 12, 0), at(2026, 11, 23, 10, 0))
    assert ticks == [at(2026, 11, 21, 10, 0), at(2026, 11, 22, 10, 0), at(2026, 11, 23, 10, 0)]
    # 10:00 in Berlin is 09:00 UTC in winter and 08:00 UTC in summer
    summer = daily.ticks(at(2026, 7, 1, 0, 0), at(2026, 7, 1, 23, 0))
    assert summer == [dt.datetime(2026, 7, 1, 8, 0, tzinfo=dt.UTC).timestamp()]


def test_after_downtime_only_the_latest_tick_is_due_unless_catchup() -> None:
    last, now = at(2026, 11, 1, 10, 0), at(2026, 11, 5, 12, 0)
    daily = Schedule.parse("0 10 * * *", "Europe/Berlin", False, "pipeline p")
    assert daily.due(last, now) == [at(2026, 11, 5, 10, 0)]
    catching = Schedule.parse("0 10 * * *", "Europe/Berlin", True, "pipeline p")
    assert catching.due(last, now) == [at(2026, 11, d, 10, 0) for d in (2, 3, 4, 5)]
    assert daily.due(now, now + 60) == []  # nothing between two polls
    minutely = Schedule.parse("* * * * *", "UTC", True, "pipeline p")
    due = minutely.due(0.0, 86400.0)  # a day of downtime: the latest ticks, bounded
    assert len(due) == MAX_CATCHUP and due[-1] == 86400.0


def test_a_bad_cron_expression_or_zone_is_refused_when_the_pipeline_is_defined() -> None:
    @task
    def work() -> None:
        pass

    with pytest.raises(DefinitionError, match=r"pipeline nightly: schedule '0 25 \* \* \*' is not a cron"):

        @pipeline(schedule="0 25 * * *")
        def nightly() -> None:
            work()

    with pytest.raises(DefinitionError, match="timezone 'Mars/Olympus' is not a time zone"):

        @pipeline(schedule="0 1 * * *", timezone="Mars/Olympus")
        def marsly() -> None:
            work()

    with pytest.raises(DefinitionError, match="'logical_date' receives a scheduled run's logical time"):

        @pipeline(schedule="0 1 * * *")
        def typed(logical_date: int = 0) -> None:
            work()

    @pipeline(schedule="30 6 * * 1-5", timezone="America/New_York", catchup=True)
    def weekdays(logical_date: dt.date = dt.date(2026, 1, 1)) -> None:
        work()

    assert weekdays.schedule == Schedule("30 6 * * 1-5", "America/New_York", True)
    assert weekdays.takes_logical_date
