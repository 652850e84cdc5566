"""Figures for monitoring, computed by the database: the contract on SQLite and on a real
PostgreSQL server."""

from __future__ import annotations

import math

import pytest

from conveyor.store import Batch, InstanceRecord, RunRecord, Store
from conveyor.store.records import AttemptRecord, TransitionRecord
from conveyor.store.stats import Histogram

LIVE, DONE, WAITING, FAILED = (
    "20261122-000001-aaaaaa",
    "20261122-000002-bbbbbb",
    "20261122-000003-cccccc",
    "20261122-000004-dddddd",
)
BUCKETS = (1.0, 5.0, 60.0)


@pytest.fixture
def db(store: Store) -> Store:
    return store


def make_run(run_id: str, ids: list[str]) -> tuple[RunRecord, list[InstanceRecord]]:
    run = RunRecord(
        id=run_id, pipeline="p", target="p.py:p", params={}, key=run_id, state="pending", created_at=1.0
    )
    return run, [InstanceRecord(run_id, i, "t", f"t({i})", {}, []) for i in ids]


def tr(iid: str, old: str, new: str, at: float, attempt: int) -> TransitionRecord:
    return TransitionRecord(iid, old, new, at, f"{old} -> {new}", attempt)


def started(run_id: str, iid: str, number: int, at: float) -> AttemptRecord:
    return AttemptRecord(run_id, iid, number, "running", at)


def ended(iid: str, number: int, state: str, at: float) -> dict[str, object]:
    return {"instance_id": iid, "number": number, "state": state, "ended_at": at}


def record(db: Store, run_id: str, ids: list[str], *batches: Batch) -> None:
    """Create the run, then commit ``batches`` as its driver would, under its lease."""
    run, instances = make_run(run_id, ids)
    db.create_run(run, instances)
    epoch = db.acquire(run_id, "host:1", ttl=1e9, now=1.0)
    for batch in batches:
        db.commit(run_id, epoch, batch, lease_until=1e9)


def history(db: Store) -> None:
    """Four runs, with the times of their instances' moves and attempts.

    LIVE (running): ``a`` failed after 3 s (ready at 100, started at 102), waited out its
    backoff (ready again at 110), ran again from 110.5 and succeeded after 19.5 s; ``b`` is
    ready since 100; ``c`` is running since 104 (ready at 100); ``d`` is pending.
    DONE (succeeded): ``x`` was ready at 10, started at 11 and succeeded after 0.05 s.
    WAITING (pending): ``y`` and ``z``, untouched.
    FAILED (failed): ``w`` was left ready when the run ended.
    """
    record(
        db,
        LIVE,
        ["a", "b", "c", "d"],
        Batch(
            instances=[
                {"id": "a", "state": "running", "attempts": 1},
                {"id": "b", "state": "ready"},
                {"id": "c", "state": "ready"},
            ],
            attempts_started=[started(LIVE, "a", 1, 102.0)],
            transitions=[
                tr("a", "pending", "ready", 100.0, 0),
                tr("b", "pending", "ready", 100.0, 0),
                tr("c", "pending", "ready", 100.0, 0),
                tr("a", "ready", "running", 102.0, 1),
            ],
            run={"state": "running", "started_at": 100.0},
        ),
        Batch(
            instances=[
                {"id": "a", "state": "retry_wait", "failures": 1},
                {"id": "c", "state": "running", "attempts": 1},
            ],
            attempts_started=[started(LIVE, "c", 1, 104.0)],
            attempts_ended=[ended("a", 1, "failed", 105.0)],
            transitions=[tr("c", "ready", "running", 104.0, 1), tr("a", "running", "retry_wait", 105.0, 1)],
        ),
        Batch(
            instances=[{"id": "a", "state": "running", "attempts": 2}],
            attempts_started=[started(LIVE, "a", 2, 110.5)],
            transitions=[tr("a", "retry_wait", "ready", 110.0, 1), tr("a", "ready", "running", 110.5, 2)],
        ),
        Batch(
            instances=[{"id": "a", "state": "succeeded"}],
            attempts_ended=[ended("a", 2, "succeeded", 130.0)],
            transitions=[tr("a", "running", "succeeded", 130.0, 2)],
        ),
    )
    record(
        db,
        DONE,
        ["x"],
        Batch(
            instances=[{"id": "x", "state": "running", "attempts": 1}],
            attempts_started=[started(DONE, "x", 1, 11.0)],
            transitions=[tr("x", "pending", "ready", 10.0, 0), tr("x", "ready", "running", 11.0, 1)],
            run={"state": "running"},
        ),
        Batch(
            instances=[{"id": "x", "state": "succeeded"}],
            attempts_ended=[ended("x", 1, "succeeded", 11.05)],
            transitions=[tr("x", "running", "succeeded", 11.05, 1)],
            run={"state": "succeeded", "ended_at": 11.05},
        ),
    )
    run, instances = make_run(WAITING, ["y", "z"])
    db.create_run(run, instances)
    record(
        db,
        FAILED,
        ["w"],
        Batch(
            instances=[{"id": "w", "state": "ready"}],
            transitions=[tr("w", "pending", "ready", 50.0, 0)],
            run={"state": "failed", "ended_at": 51.0},
        ),
    )


def buckets(h: Histogram) -> list[tuple[float, int]]:
    return list(h.buckets)


def test_an_empty_store_reports_every_state_at_zero(db: Store) -> None:
    s = db.stats(BUCKETS)
    assert s.runs_by_state == {"pending": 0, "running": 0, "succeeded": 0, "failed": 0, "cancelled": 0}
    assert set(s.instances_by_state) >= {"pending", "ready", "running", "retry_wait", "succeeded"}
    assert not any(s.instances_by_state.values())
    assert (s.queue_depth, s.running_attempts) == (0, 0)
    assert set(s.task_duration) == {"succeeded", "failed", "lost", "cancelled"}
    for h in [*s.task_duration.values(), s.queue_wait]:
        assert h.buckets == ((1.0, 0), (5.0, 0), (60.0, 0), (math.inf, 0))
        assert (h.total, h.count) == (0.0, 0)


def test_counts_cover_runs_and_only_the_live_runs_instances(db: Store) -> None:
    history(db)
    s = db.stats(BUCKETS)
    assert s.runs_by_state == {"pending": 1, "running": 1, "succeeded": 1, "failed": 1, "cancelled": 0}
    # LIVE's a, b, c, d and WAITING's y, z; DONE's x and FAILED's w are no work left to do
    live = {k: v for k, v in s.instances_by_state.items() if v}
    assert live == {"pending": 3, "ready": 1, "running": 1, "succeeded": 1}
    assert s.queue_depth == 1  # b; w waits in a failed run, for nobody
    assert s.running_attempts == 1  # c's


def test_task_durations_are_bucketed_by_how_attempts_ended(db: Store) -> None:
    history(db)
    s = db.stats(BUCKETS)
    ok, failed = s.task_duration["succeeded"], s.task_duration["failed"]
    assert buckets(ok) == [(1.0, 1), (5.0, 1), (60.0, 2), (math.inf, 2)]  # 0.05 s and 19.5 s
    assert (ok.total, ok.count) == (pytest.approx(19.55), 2)
    assert buckets(failed) == [(1.0, 0), (5.0, 1), (60.0, 1), (math.inf, 1)]  # 3 s
    assert (failed.total, failed.count) == (pytest.approx(3.0), 1)
    assert s.task_duration["lost"].count == 0  # c is still running: not counted anywhere


def test_queue_wait_runs_from_the_latest_move_into_ready(db: Store) -> None:
    history(db)
    wait = db.stats(BUCKETS).queue_wait
    # a#1 waited 2 s, a#2 0.5 s (from the end of its backoff at 110, not from 100), c#1 4 s,
    # x#1 1 s; b has not started
    assert buckets(wait) == [(1.0, 2), (5.0, 4), (60.0, 4), (math.inf, 4)]
    assert (wait.total, wait.count) == (pytest.approx(7.5), 4)


def test_a_lost_attempt_retried_at_once_waited_nothing(db: Store) -> None:
    record(
        db,
        LIVE,
        ["a"],
        Batch(
            instances=[{"id": "a", "state": "running", "attempts": 1}],
            attempts_started=[started(LIVE, "a", 1, 20.0)],
            transitions=[tr("a", "pending", "ready", 5.0, 0), tr("a", "ready", "running", 20.0, 1)],
            run={"state": "running"},
        ),
        Batch(  # its worker died; the same turn moves it back to ready and starts attempt 2
            instances=[{"id": "a", "state": "running", "attempts": 2, "lost": 1}],
            attempts_started=[started(LIVE, "a", 2, 26.0)],
            attempts_ended=[ended("a", 1, "lost", 26.0)],
            transitions=[tr("a", "running", "ready", 26.0, 1), tr("a", "ready", "running", 26.0, 2)],
        ),
    )
    s = db.stats([10.0, 0.0])  # bounds in any order
    assert buckets(s.queue_wait) == [(0.0, 1), (10.0, 1), (math.inf, 2)]  # 15 s, then 0 s
    assert s.queue_wait.total == pytest.approx(15.0)
    assert buckets(s.task_duration["lost"]) == [(0.0, 0), (10.0, 1), (math.inf, 1)]
    assert s.running_attempts == 1
