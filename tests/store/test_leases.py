"""Partition leases, fencing, runner-written results and the scheduler registry: the contract
on SQLite and on a real PostgreSQL server."""

from __future__ import annotations

import threading
import uuid
from typing import Any

import pytest
import sqlalchemy as sa

from conveyor.errors import NameInUse, StaleEpochError
from conveyor.store import Batch, InstanceRecord, RunRecord, Store, open_store
from conveyor.store.records import AttemptRecord, PartitionRecord, SchedulerRecord

RUN = "20261122-000000-cccccc"


def submitted(store: Store, needs: list[list[int]], created: float = 1.0, run_id: str = RUN) -> None:
    """A run with one instance per partition; partition k needs the partitions ``needs[k]``."""
    run = RunRecord(
        id=run_id,
        pipeline="wide",
        target="p.py:wide",
        params={},
        key=run_id,
        state="pending",
        created_at=created,
        total=len(needs),
        partitions=len(needs),
    )
    ids = [f"i{k}" for k in range(len(needs))]
    inst = [
        InstanceRecord(run_id, ids[k], "t", f"t({k})", {}, [ids[n] for n in needs[k]], partition=k)
        for k in range(len(needs))
    ]
    parts = [PartitionRecord(run_id, k, 1, needs[k]) for k in range(len(needs))]
    store.create_run(run, inst, parts)


def test_claims_take_open_partitions_whose_upstream_is_done(store: Store) -> None:
    submitted(store, [[], [0], []])
    a = store.claim("a", 10, now=100)
    b = store.claim("b", 10, now=100)
    assert a is not None and b is not None
    assert (a.partition.number, b.partition.number) == (0, 2)  # 1 waits for 0
    assert (a.partition.epoch, a.takeover) == (1, False)
    assert store.claim("c", 10, now=100) is None
    assert store.get_run(RUN).state == "running"
    assert store.end_partition(RUN, 0, 1, "done") is None  # 1 and 2 are still open
    c = store.claim("c", 10, now=101)
    assert c is not None and c.partition.number == 1
    assert store.end_partition(RUN, 2, 1, "done") is None
    assert store.end_partition(RUN, 1, 1, "done") == "succeeded"
    run = store.get_run(RUN)
    assert (run.state, run.partitions) == ("succeeded", 3)
    assert run.ended_at is not None


def test_an_expired_lease_is_taken_over_and_the_old_owner_is_fenced_out(store: Store) -> None:
    submitted(store, [[]])
    first = store.claim("a", 1.0, now=100)
    assert first is not None
    assert store.claim("b", 1.0, now=100.5) is None  # still leased
    taken = store.claim("b", 1.0, now=101.5)
    assert taken is not None and taken.takeover
    assert (taken.partition.epoch, taken.partition.taken_from) == (2, "a")
    with pytest.raises(StaleEpochError, match="partition 0: the lease \\(epoch 1\\) was taken over"):
        store.commit(RUN, 1, Batch(), lease_until=200, partition=0)
    with pytest.raises(StaleEpochError):
        store.end_partition(RUN, 0, 1, "done")
    store.commit(RUN, 2, Batch(), lease_until=200, partition=0)  # the new owner renews
    [part] = store.partitions(RUN)
    assert (part.owner, part.epoch, part.takeovers, part.lease_expires) == ("b", 2, 1, 200)


def test_a_released_lease_is_claimed_at_once_and_is_no_takeover(store: Store) -> None:
    submitted(store, [[]])
    first = store.claim("a", 30, now=100)
    assert first is not None
    store.release_partition(RUN, 0, first.partition.epoch)
    again = store.claim("b", 30, now=100.1)
    assert again is not None and not again.takeover and again.partition.epoch == 2


def test_a_failed_partition_blocks_what_needs_it_and_ends_the_run(store: Store) -> None:
    submitted(store, [[], [0], [1], []])
    p0 = store.claim("a", 10, now=1)
    p3 = store.claim("b", 10, now=1)
    assert p0 and p3 and p3.partition.number == 3
    assert store.end_partition(RUN, 0, 1, "failed", "task t(0) failed: boom") is None  # 3 still runs
    assert [p.state for p in store.partitions(RUN)] == ["failed", "blocked", "blocked", "open"]
    assert store.end_partition(RUN, 3, 1, "done") == "failed"
    run = store.get_run(RUN)
    assert run.state == "failed" and run.error == "task t(0) failed: boom"
    # retry: the stuck partitions open again, the run waits for the schedulers
    assert store.reopen(RUN) == 3
    assert [p.state for p in store.partitions(RUN)] == ["open", "open", "open", "done"]
    assert store.get_run(RUN).state == "pending"
    assert store.claim("a", 10, now=2) is not None


def test_claims_go_to_the_oldest_run_first(store: Store) -> None:
    submitted(store, [[]], created=5.0, run_id="20261122-000005-bbbbbb")
    submitted(store, [[]], created=1.0, run_id="20261122-000001-aaaaaa")
    claim = store.claim("a", 10, now=10)
    assert claim is not None and claim.run.id == "20261122-000001-aaaaaa"


def _running(store: Store, epoch: int, attempt: int, at: float = 1.0) -> None:
    """The owner's commit: i0's attempt ``attempt`` is running."""
    batch = Batch(
        instances=[{"id": "i0", "state": "running", "attempts": attempt}],
        attempts_started=[AttemptRecord(RUN, "i0", attempt, "running", at)],
    )
    store.commit(RUN, epoch, batch, lease_until=at + 1, partition=0)


def test_the_runner_records_its_attempt_first_completion_wins(store: Store) -> None:
    submitted(store, [[]])
    claim = store.claim("a", 10, now=1)
    assert claim is not None
    _running(store, 1, 1)
    assert store.beat_attempt(RUN, "i0", 1, now=2.0)
    [st] = store.attempt_status(RUN, [("i0", 1)])
    assert (st.state, st.heartbeat) == ("running", 2.0)
    assert store.record_attempt(RUN, "i0", 1, "succeeded", ended_at=3.0, result="ref-1")
    assert not store.record_attempt(RUN, "i0", 1, "succeeded", ended_at=4.0, result="ref-2")
    [inst] = store.instances(RUN)
    assert (inst.state, inst.result, inst.ended_at) == ("succeeded", "ref-1", 3.0)
    assert not store.beat_attempt(RUN, "i0", 1, now=5.0)  # it ended: no longer current
    [st] = store.attempt_status(RUN, [("i0", 1)])
    assert (st.state, st.result) == ("succeeded", "ref-1")


def test_a_superseded_attempt_cannot_record_its_end(store: Store) -> None:
    submitted(store, [[]])
    assert store.claim("a", 1, now=1) is not None
    _running(store, 1, 1)
    taken = store.claim("b", 1, now=10)  # a died; b declares attempt 1 lost and starts attempt 2
    assert taken is not None
    batch = Batch(
        instances=[{"id": "i0", "state": "running", "attempts": 2}],
        attempts_started=[AttemptRecord(RUN, "i0", 2, "running", 11.0)],
        attempts_ended=[{"instance_id": "i0", "number": 1, "state": "lost", "ended_at": 11.0, "error": "x"}],
    )
    store.commit(RUN, 2, batch, lease_until=1e12, partition=0)
    assert not store.beat_attempt(RUN, "i0", 1, now=12)
    assert not store.record_attempt(RUN, "i0", 1, "succeeded", ended_at=12, result="late")
    [inst] = store.instances(RUN)
    assert (inst.state, inst.attempts, inst.result) == ("running", 2, None)
    assert store.record_attempt(RUN, "i0", 2, "failed", ended_at=13, error="boom")
    assert [a.state for a in store.attempts(RUN, "i0")] == ["lost", "failed"]
    assert store.instances(RUN)[0].state == "running"  # a failure is the owner's to judge


def test_the_scheduler_registry(store: Store) -> None:
    submitted(store, [[], []])
    store.register_scheduler(SchedulerRecord("s1", "host", 11, 100.0, 100.0, "running", 2), stale_after=6)
    with pytest.raises(NameInUse, match="a scheduler named 's1' is running"):
        store.register_scheduler(SchedulerRecord("s1", "host", 12, 101.0, 101.0, "running", 2), stale_after=6)
    store.register_scheduler(SchedulerRecord("s2", "host", 13, 100.0, 100.0, "running", 2), stale_after=6)
    assert store.claim("s1", 10, now=100) is not None
    store.beat("s2", 105.0)
    listed = {rec.name: (rec, leases) for rec, leases in store.schedulers()}
    assert [p.number for p in listed["s1"][1]] == [0]
    assert listed["s2"][0].heartbeat == 105.0 and listed["s2"][1] == []
    # s1 went silent long ago: its name may be used again
    store.register_scheduler(SchedulerRecord("s1", "host", 14, 200.0, 200.0, "running", 2), stale_after=6)
    store.beat("s2", 201.0, state="stopped")
    store.beat("s1", 202.0)
    assert [rec.state for rec, _ in store.schedulers()] == ["running", "stopped"]
    assert store.forget_schedulers(before=201.5) == 1  # s2, silent since it stopped
    assert [rec.name for rec, _ in store.schedulers()] == ["s1"]


def test_a_silent_attempt_is_declared_lost_unless_its_runner_recorded_first(store: Store) -> None:
    submitted(store, [[]])
    assert store.claim("a", 1, now=1) is not None
    _running(store, 1, 1)
    assert store.declare_lost(RUN, "i0", 1, now=9, reason="silent")
    assert not store.record_attempt(RUN, "i0", 1, "succeeded", ended_at=10, result="late")  # too late
    [a] = store.attempts(RUN, "i0")
    assert (a.state, a.error) == ("lost", "silent")
    assert store.instances(RUN)[0].result is None
    # the other order: the runner records first, and the attempt is no longer there to lose
    submitted(store, [[]], run_id="20261122-000009-dddddd")
    assert store.claim("a", 1, now=1) is not None
    batch = Batch(
        instances=[{"id": "i0", "state": "running", "attempts": 1}],
        attempts_started=[AttemptRecord("20261122-000009-dddddd", "i0", 1, "running", 1.0)],
    )
    store.commit("20261122-000009-dddddd", 1, batch, lease_until=2, partition=0)
    assert store.record_attempt("20261122-000009-dddddd", "i0", 1, "succeeded", ended_at=3, result="r")
    assert not store.declare_lost("20261122-000009-dddddd", "i0", 1, now=9, reason="silent")
    assert store.instances("20261122-000009-dddddd")[0].state == "succeeded"


def test_a_claimer_passes_over_a_row_another_claimer_holds(postgres: Any) -> None:
    # PostgreSQL only: on SQLite one writer at a time, claims never overlap.
    url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    store, other = open_store(url), open_store(url)
    submitted(store, [[], []])
    engine = store.engine  # type: ignore[attr-defined]
    with engine.connect() as held:  # another scheduler, in the middle of claiming partition 0
        held.execute(sa.text("SELECT 1 FROM partitions WHERE number = 0 FOR UPDATE"))
        claim = other.claim("b", 10, now=100)
        assert claim is not None and claim.partition.number == 1
        held.rollback()
    claim = store.claim("a", 10, now=100)
    assert claim is not None and claim.partition.number == 0
    other.close()
    store.close()


def test_two_schedulers_claiming_at_once_each_get_a_partition(postgres: Any) -> None:
    url = postgres.create_database(f"t_{uuid.uuid4().hex[:12]}")
    stores = [open_store(url), open_store(url)]
    for n in range(20):
        submitted(stores[0], [[], []], created=float(n), run_id=f"20261122-000000-{n:06d}")
    barrier = threading.Barrier(2)
    got: list[list[tuple[str, int] | None]] = [[], []]

    def claimer(k: int) -> None:
        for _ in range(20):
            barrier.wait()
            claim = stores[k].claim(f"s{k}", 60, now=100)
            got[k].append(None if claim is None else (claim.run.id, claim.partition.number))

    threads = [threading.Thread(target=claimer, args=(k,)) for k in (0, 1)]
    for th in threads:
        th.start()
    for th in threads:
        th.join()
    assert None not in got[0] + got[1]  # neither came away empty while work was there
    assert len(set(got[0] + got[1])) == 40  # and never the same partition twice
    for s in stores:
        s.close()


def test_cancelling_a_submitted_run(store: Store) -> None:
    submitted(store, [[], [], [0]])
    assert store.claim("a", 10, now=100) is not None  # partition 0 is being driven
    assert store.request_cancel(RUN, now=101) == "running"  # its driver has yet to stop it
    assert [p.state for p in store.partitions(RUN)] == ["open", "cancelled", "cancelled"]
    assert store.cancel_requested(RUN)
    assert store.claim("b", 10, now=200) is None  # nothing of a cancelled run is claimed
    assert store.end_partition(RUN, 0, 1, "cancelled", "cancelled") == "cancelled"
    assert store.get_run(RUN).state == "cancelled"
    assert store.reopen(RUN) == 3  # retry: all of it again
    assert not store.cancel_requested(RUN) and store.get_run(RUN).state == "pending"
    assert store.claim("b", 10, now=300) is not None


def test_an_expired_partition_is_claimed_before_fresh_work(store: Store) -> None:
    """A dead scheduler's partition goes first, even behind fresh partitions of older runs."""
    old, new = "20261122-000000-000001", "20261122-000000-000002"
    submitted(store, [[], []], created=1.0, run_id=old)
    submitted(store, [[], []], created=2.0, run_id=new)
    for _ in range(2):
        claim = store.claim("dead", 10, now=100)
        assert claim is not None and claim.run.id == old
    assert store.claim("busy", 10, now=105, takeover_only=True) is None  # none expired yet
    claim = store.claim("alive", 10, now=111)
    assert claim is not None and claim.takeover and claim.partition.taken_from == "dead"
    claim = store.claim("alive", 10, now=111, takeover_only=True)
    assert claim is not None and claim.takeover and claim.run.id == old
    assert store.claim("alive", 10, now=111, takeover_only=True) is None  # the rest is fresh work
    claim = store.claim("alive", 10, now=111)
    assert claim is not None and not claim.takeover and claim.run.id == new
