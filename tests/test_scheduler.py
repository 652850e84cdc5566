"""The scheduler daemon fires schedules: one run per tick, even with several schedulers, with the
tick's logical date; a clock is injected (no waiting for real minutes)."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

from conveyor import project
from conveyor.scheduler import Scheduler, Settings
from conveyor.store import Store, open_store

PIPES = """
    import datetime as dt
    from conveyor import pipeline, task

    @task
    def report(day: dt.date) -> str:
        return day.isoformat()

    @pipeline(schedule="0 10 * * *", timezone="Europe/Berlin")
    def daily(logical_date: dt.date = dt.date(2000, 1, 1)):
        report(logical_date)

    @pipeline(schedule="0 * * * *", catchup=True)
    def hourly(logical_date: dt.datetime = dt.datetime(2000, 1, 1)):
        report(logical_date.date())

    @pipeline
    def by_hand(n: int = 1):
        report(dt.date(2026, 1, n))
"""


def _project(tmp_path: Path) -> project.Project:
    (tmp_path / "pipes.py").write_text(textwrap.dedent(PIPES))
    (tmp_path / "conveyor.toml").write_text('[project]\npipelines = ["pipes.py"]\n')
    found = project.find(tmp_path)
    assert found is not None
    return found


def at(*fields: int, tz: str = "Europe/Berlin") -> float:
    from zoneinfo import ZoneInfo

    return dt.datetime(*fields, tzinfo=ZoneInfo(tz)).timestamp()


def test_each_tick_starts_one_run_even_with_two_schedulers(store: Store, tmp_path: Path) -> None:
    proj = _project(tmp_path)
    other = open_store(store.url)
    a = Scheduler(store, Settings(name="a"), proj)
    b = Scheduler(other, Settings(name="b"), proj)
    assert sorted(e.pipeline.name for e in a.scheduled) == ["daily", "hourly"]
    start = at(2026, 11, 20, 9, 30)
    assert a.fire_schedules(start) == []  # first sight: the cursors start now, the past is not run
    assert b.fire_schedules(start) == []
    # 10:00 Berlin passes: both schedulers look at 10:00:01, one run per schedule and tick
    created = a.fire_schedules(at(2026, 11, 20, 10, 0, 1)) + b.fire_schedules(at(2026, 11, 20, 10, 0, 1))
    assert sorted((r.pipeline, r.params["logical_date"]) for r in created) == [
        ("daily", "2026-11-20"),  # 10:00 in Berlin
        ("hourly", "2026-11-20T09:00:00"),  # the same instant: 09:00 in UTC, the hourly's zone
    ]
    runs = store.list_runs(limit=50)
    assert len(runs) == 2 and all(r.partitions >= 1 and r.state == "pending" for r in runs)
    assert {r.workdir for r in runs} == {str(tmp_path.resolve())}
    assert b.fire_schedules(at(2026, 11, 20, 10, 0, 2)) == []  # nothing new
    other.close()


def test_after_downtime_catchup_runs_every_missed_tick_and_the_rest_only_the_latest(
    store: Store, tmp_path: Path
) -> None:
    proj = _project(tmp_path)
    sched = Scheduler(store, Settings(name="a"), proj)
    sched.fire_schedules(at(2026, 11, 20, 9, 30, tz="UTC"))
    # down from 09:30 UTC until 13:30 UTC the next day
    created = sched.fire_schedules(at(2026, 11, 21, 13, 30, tz="UTC"))
    daily = [r.params["logical_date"] for r in created if r.pipeline == "daily"]
    hourly = [r.params["logical_date"] for r in created if r.pipeline == "hourly"]
    assert daily == ["2026-11-21"]  # catchup=False: only the latest missed tick
    assert len(hourly) == 28  # catchup=True: 10:00 UTC on the 20th through 13:00 UTC on the 21st
    assert hourly[0] == "2026-11-20T10:00:00" and hourly[-1] == "2026-11-21T13:00:00"


def test_a_scheduled_run_is_driven_like_a_submitted_one(store: Store, tmp_path: Path) -> None:
    proj = _project(tmp_path)
    Scheduler(store, Settings(name="a"), proj).fire_schedules(at(2026, 11, 20, 9, 30))
    [run] = [
        r
        for r in Scheduler(store, Settings(name="a"), proj).fire_schedules(at(2026, 11, 20, 10, 0, 1))
        if r.pipeline == "daily"
    ]
    Scheduler(store, Settings(name="driver", workers=1)).serve(until_idle=True)
    assert store.get_run(run.id).state == "succeeded"
    [report] = store.instances(run.id)
    assert report.label == "report(day=2026-11-20)"
