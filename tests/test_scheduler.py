"""The scheduler daemon fires schedules: one run per tick, even with several schedulers, with the
tick's logical date; a clock is injected (no waiting for real minutes)."""

from __future__ import annotations

import datetime as dt
import textwrap
from pathlib import Path

import pytest

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

    @pipeline
    def by_hand_dated(n: int = 1, logical_date: dt.date = dt.date(2000, 1, 1)):
        report(logical_date)
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


def test_a_paused_schedule_fires_nothing_and_on_resume_catches_up_as_after_downtime(
    store: Store, tmp_path: Path
) -> None:
    proj = _project(tmp_path)
    sched = Scheduler(store, Settings(name="a"), proj)
    hourly = next(e for e in sched.scheduled if e.pipeline.name == "hourly")
    daily = next(e for e in sched.scheduled if e.pipeline.name == "daily")
    sched.fire_schedules(at(2026, 11, 20, 9, 30, tz="UTC"))
    store.pause_schedule(hourly.target, True, at(2026, 11, 20, 9, 40, tz="UTC"))
    store.pause_schedule(daily.target, True, at(2026, 11, 20, 9, 40, tz="UTC"))
    assert sched.fire_schedules(at(2026, 11, 20, 12, 30, tz="UTC")) == []  # 3 hourly ticks, paused
    assert store.schedule_states()[hourly.target][1] is not None
    store.pause_schedule(hourly.target, False, at(2026, 11, 20, 12, 40, tz="UTC"))
    created = sched.fire_schedules(at(2026, 11, 20, 12, 45, tz="UTC"))
    assert [r.params["logical_date"] for r in created] == [  # catchup: the ticks missed while paused
        "2026-11-20T10:00:00",
        "2026-11-20T11:00:00",
        "2026-11-20T12:00:00",
    ]


def test_schedulers_step_backfills_and_reload_the_project_when_asked(store: Store, tmp_path: Path) -> None:
    from conveyor.service import Service

    proj = _project(tmp_path)
    service = Service(store, proj)
    view = service.backfill("daily", "2026-11-01", "2026-11-03", max_parallel=2)
    assert view.counts == {"pending": 2, "waiting": 1}  # submitted at once, up to the limit
    driver = Scheduler(store, Settings(name="driver", workers=1, poll=0.05))
    driver.serve(until_idle=True)  # drives the runs and, on its turns, submits the third date
    after = service.get_backfill(view.id)
    assert after.state == "succeeded" and after.counts == {"succeeded": 3}
    assert sorted(r.params["logical_date"] for r in store.list_runs()) == [
        "2026-11-01",
        "2026-11-02",
        "2026-11-03",
    ]
    # an edited project: a new scheduled pipeline is seen after a reload, not before
    (tmp_path / "pipes.py").write_text(
        (tmp_path / "pipes.py").read_text()
        + textwrap.dedent(
            """
            @pipeline(schedule="*/5 * * * *")
            def often(logical_date: dt.datetime = dt.datetime(2000, 1, 1)):
                report(logical_date.date())
            """
        )
    )
    sched = Scheduler(store, Settings(name="a"), proj)
    assert "often" not in {e.pipeline.name for e in sched.scheduled}
    sched.request_reload()
    sched.turn(at(2026, 11, 20, 9, 30))
    assert "often" in {e.pipeline.name for e in sched.scheduled}


def test_a_backfill_whose_pipeline_changed_under_it_does_not_stop_the_scheduler(
    store: Store, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    from conveyor.service import Service

    proj = _project(tmp_path)
    view = Service(store, proj).backfill("by_hand_dated", "2026-11-01", "2026-11-02", params={"n": "2"})
    assert view.counts == {"pending": 1, "waiting": 1}
    # the code changes: n is no longer an int, so its stored value cannot be read back
    path = tmp_path / "pipes.py"
    path.write_text(
        path.read_text().replace("n: int = 1, logical_date", "n: dt.date = dt.date(2026, 1, 1), logical_date")
    )
    sched = Scheduler(store, Settings(name="a"), proj)
    sched.reload()  # as after SIGHUP: the new code is imported
    claim = store.claim("driver", 60)  # the first date's run is driven to its end
    assert claim is not None and claim.run.id == view.dates[0].run
    store.end_partition(claim.run.id, 0, claim.partition.epoch, "done")
    with caplog.at_level("ERROR", logger="conveyor.scheduler"):
        sched.step_backfills()  # logs, and goes on serving
    assert f"backfill {view.id} of by_hand_dated not stepped" in caplog.text
    assert store.get_backfill(view.id).state == "running"
