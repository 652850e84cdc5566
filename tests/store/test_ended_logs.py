"""The store contract, on every store: the log files of runs that ended before a time (what
``conveyor logs prune`` deletes), and ids no run can have refused before any query."""

from __future__ import annotations

import pytest

from conveyor.errors import BackfillNotFound, RunNotFound
from conveyor.store import Batch, InstanceRecord, RunRecord, Store
from conveyor.store.records import AttemptRecord


def _run(store: Store, run_id: str, key: str, end: dict[str, object] | None) -> None:
    """A run with one instance and one attempt that logged; ended at ``end`` (or still going)."""
    store.create_run(
        RunRecord(
            id=run_id, pipeline="p", target="p.py:p", params={}, key=key, state="pending", created_at=1.0
        ),
        [InstanceRecord(run_id, "a1", "t", "t()", {}, [])],
    )
    epoch = store.acquire(run_id, "host:1", ttl=30, now=100.0)
    log = f"/logs/{run_id}/t-a1/1.log"
    store.commit(
        run_id,
        epoch,
        Batch(
            instances=[{"id": "a1", "state": "running", "attempts": 1, "started_at": 101.0}],
            attempts_started=[AttemptRecord(run_id, "a1", 1, "running", 101.0, log_path=log)],
            run={"state": "running", "started_at": 101.0},
        ),
        lease_until=131.0,
    )
    if end is not None:
        store.commit(
            run_id,
            epoch,
            Batch(
                instances=[{"id": "a1", "state": "succeeded", "ended_at": end["at"]}],
                attempts_ended=[
                    {
                        "instance_id": "a1",
                        "number": 1,
                        "state": "succeeded",
                        "ended_at": end["at"],
                        "error": None,
                    }
                ],
                run={"state": end["state"], "ended_at": end["at"]},
            ),
            lease_until=132.0,
        )


def test_the_logs_of_runs_ended_before_a_time(store: Store) -> None:
    _run(store, "20261122-000001-aaaaaa", "k1", {"state": "succeeded", "at": 200.0})
    _run(store, "20261122-000002-bbbbbb", "k2", {"state": "failed", "at": 500.0})
    _run(store, "20261122-000003-cccccc", "k3", None)  # still running: never pruned
    assert store.ended_logs(100.0) == []
    assert store.ended_logs(300.0) == [("20261122-000001-aaaaaa", "/logs/20261122-000001-aaaaaa/t-a1/1.log")]
    assert [r for r, _ in store.ended_logs(10_000.0)] == ["20261122-000001-aaaaaa", "20261122-000002-bbbbbb"]


def test_an_id_no_run_can_have_is_refused_in_one_short_line(store: Store) -> None:
    for bad in ("2" * 70_000, "2026 11", "2026%", "a/b", ""):
        with pytest.raises(RunNotFound) as err:
            store.get_run(bad)
        assert len(str(err.value)) < 200 and "\n" not in str(err.value)
    with pytest.raises(BackfillNotFound):
        store.get_backfill("bf-" + "9" * 40)
