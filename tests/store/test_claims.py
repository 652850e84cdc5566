"""One attempt of a task instance at a time across runs (claims), and one unfinished run per key:
the contract on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading

import pytest

from conveyor.errors import RunExists
from conveyor.store import Batch, InstanceRecord, RunRecord, Store
from conveyor.store.claims import STALE, Holder
from conveyor.store.records import AttemptRecord

A, B = "20261206-000001-aaaaaa", "20261206-000002-bbbbbb"


def run(store: Store, run_id: str, key: str | None = None, state: str = "pending") -> None:
    rec = RunRecord(
        id=run_id, pipeline="p", target="p.py:p", params={}, key=key or run_id, state=state, created_at=1.0
    )
    store.create_run(rec, [InstanceRecord(run_id, "shared", "t", "t()", {}, [])])


def running(store: Store, run_id: str, attempt: int = 1) -> None:
    """The run's driver records attempt ``attempt`` of the shared instance as started."""
    epoch = store.acquire(run_id, "driver", 60, now=1.0)
    batch = Batch(
        instances=[{"id": "shared", "state": "running", "attempts": attempt}],
        attempts_started=[AttemptRecord(run_id, "shared", attempt, "running", 1.0)],
    )
    store.commit(run_id, epoch, batch, lease_until=1e12)


def test_the_first_attempt_claims_the_instance_the_other_run_waits_and_takes_its_outcome(
    store: Store,
) -> None:
    run(store, A)
    run(store, B)
    running(store, A)
    running(store, B)
    assert store.begin_attempt(A, "shared", 1, "h:1", now=10.0) is None  # A executes
    held = store.begin_attempt(B, "shared", 1, "h:2", now=10.5)
    assert held == Holder(A, 1, "h:1", 20.0)  # B must wait for A's attempt
    claim, status = store.waiting_on("shared", held)
    assert claim == held and status is not None and status.state == "running"
    assert store.record_attempt(A, "shared", 1, "succeeded", ended_at=12.0, result="ref-a")
    claim, status = store.waiting_on("shared", held)
    assert claim is None  # the end dropped the claim in the same transaction
    assert status is not None and (status.state, status.result) == ("succeeded", "ref-a")
    assert store.record_attempt(B, "shared", 1, "succeeded", ended_at=12.5, result="ref-a", waited_for=A)
    [attempt] = store.attempts(B, "shared")
    assert (attempt.state, attempt.waited_for) == ("succeeded", A)


def test_a_claim_is_a_lease_renewed_by_beats_and_taken_over_when_it_expires(store: Store) -> None:
    run(store, A)
    run(store, B)
    running(store, A)
    running(store, B)
    assert store.begin_attempt(A, "shared", 1, "h:1", now=10.0, ttl=5.0) is None
    assert store.beat_attempt(A, "shared", 1, now=14.0, ttl=5.0)
    assert store.begin_attempt(B, "shared", 1, "h:2", now=16.0) == Holder(A, 1, "h:1", 19.0)  # renewed
    assert store.begin_attempt(B, "shared", 1, "h:2", now=19.5) is None  # expired: B takes it
    assert store.claim_of("shared") == Holder(B, 1, "h:2", 29.5)
    store.record_attempt(A, "shared", 1, "failed", ended_at=20.0)  # A ends late
    assert store.claim_of("shared") == Holder(B, 1, "h:2", 29.5)  # ...does not drop B's claim


def test_a_dead_holder_s_claim_can_be_taken_before_it_expires(store: Store) -> None:
    run(store, A)
    run(store, B)
    running(store, A)
    running(store, B)
    assert store.begin_attempt(A, "shared", 1, "h:1", now=10.0) is None
    assert isinstance(store.begin_attempt(B, "shared", 1, "h:2", now=11.0), Holder)
    assert store.begin_attempt(B, "shared", 1, "h:2", now=11.5, take_from=(A, 1)) is None
    assert store.claim_of("shared") == Holder(B, 1, "h:2", 21.5)


def test_an_attempt_that_is_no_longer_current_does_not_start_nor_claim(store: Store) -> None:
    run(store, A)
    running(store, A)
    assert store.declare_lost(A, "shared", 1, now=5.0, reason="silent")
    assert store.begin_attempt(A, "shared", 1, "h:1", now=6.0) == STALE
    assert store.claim_of("shared") is None


def test_one_unfinished_run_per_key(store: Store) -> None:
    run(store, A, key="same")
    with pytest.raises(RunExists, match="an unfinished run of p with the same parameters exists"):
        run(store, B, key="same")
    assert [r.id for r in store.list_runs()] == [A]  # nothing of the loser was written
    store.supersede(A, "superseded")
    assert store.get_run(A).state == "cancelled"
    run(store, B, key="same")  # the key is free again
    run(store, "20261206-000003-cccccc", key="same", state="succeeded")  # finished runs don't count


def test_of_many_creating_the_same_run_at_once_exactly_one_wins(store: Store) -> None:
    wins, losses = [], []
    gate = threading.Barrier(6)

    def create(k: int) -> None:
        gate.wait()
        try:
            run(store, f"20261206-00001{k}-dddddd", key="raced")
            wins.append(k)
        except RunExists:
            losses.append(k)

    threads = [threading.Thread(target=create, args=(k,)) for k in range(6)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert (len(wins), len(losses)) == (1, 5)


def test_a_success_after_a_run_was_created_is_taken_by_it_one_before_is_not(store: Store) -> None:
    run(store, A)  # created at 1.0
    running(store, A)
    assert store.begin_attempt(A, "shared", 1, "h:1", now=10.0) is None
    assert store.record_attempt(A, "shared", 1, "succeeded", ended_at=12.0, result="ref-a")
    assert store.claim_of("shared") is None  # nobody executes it now
    run(store, B)  # created at 1.0: A's success came while B existed
    running(store, B)
    taken = store.begin_attempt(B, "shared", 1, "h:2", now=13.0)
    assert isinstance(taken, Holder) and (taken.run_id, taken.state, taken.result) == (
        A,
        "succeeded",
        "ref-a",
    )
    late = "20261206-000003-cccccc"
    rec = RunRecord(
        id=late, pipeline="p", target="p.py:p", params={}, key=late, state="pending", created_at=20.0
    )
    store.create_run(rec, [InstanceRecord(late, "shared", "t", "t()", {}, [])])
    running(store, late)
    assert store.begin_attempt(late, "shared", 1, "h:3", now=21.0) is None  # a later run executes anew


def test_conveyor_run_claims_in_its_group_commit_and_hears_of_the_holder(store: Store) -> None:
    """Under `conveyor run` the driver claims its attempts' instance ids in the commit that starts
    them (its runners write nothing per attempt) and ends the claims with the attempts."""
    run(store, A)
    run(store, B)
    start = Batch(
        instances=[{"id": "shared", "state": "running", "attempts": 1}],
        attempts_started=[AttemptRecord(A, "shared", 1, "running", 1.0)],
        claim_owner="h:1",
        claim_start=[("shared", 1)],
    )
    epoch_a = store.acquire(A, "h:1", 60, now=1.0)
    assert store.commit(A, epoch_a, start, lease_until=1e12) == {}  # A holds it
    epoch_b = store.acquire(B, "h:2", 60, now=1.0)
    other = Batch(
        instances=[{"id": "shared", "state": "running", "attempts": 1}],
        attempts_started=[AttemptRecord(B, "shared", 1, "running", 1.0)],
        claim_owner="h:2",
        claim_start=[("shared", 1)],
    )
    held = store.commit(B, epoch_b, other, lease_until=1e12)
    assert list(held) == ["shared"] and (held["shared"].run_id, held["shared"].owner) == (A, "h:1")
    end = Batch(
        instances=[{"id": "shared", "state": "succeeded", "result": "ref-a"}],
        attempts_ended=[{"instance_id": "shared", "number": 1, "state": "succeeded", "ended_at": 5.0}],
        claim_owner="h:1",
        claim_end=[("shared", 1, "succeeded", "ref-a", 5.0)],
    )
    store.commit(A, epoch_a, end, lease_until=1e12)
    assert store.claim_of("shared") is None  # nobody executes it now; B's runner takes A's outcome
    _, status = store.waiting_on("shared", held["shared"])
    assert status is not None and (status.state, status.result) == ("succeeded", "ref-a")
