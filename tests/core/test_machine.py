"""The pure scheduling core: events in, commands out; ``validate_state()`` after every step."""

from __future__ import annotations

import random
from collections.abc import Iterable, Mapping
from typing import Any

import pytest

from conveyor.core import (
    AttemptCancelled,
    AttemptFailed,
    AttemptLost,
    AttemptSucceeded,
    Cancel,
    CancelRequested,
    Change,
    Command,
    Event,
    Execute,
    Finished,
    InstanceSpec,
    Prior,
    RetryRequested,
    RunMachine,
    Start,
    State,
    Tick,
    Wake,
    retry,
)
from conveyor.errors import TransitionError
from conveyor.resources import Capacity, Resources

S = State
GiB = 2**30


def spec(iid: str, *upstream: str, **options: Any) -> InstanceSpec:
    resources = options.pop("resources", None)
    if resources is not None:
        options["resources"] = Resources(**resources)
    return InstanceSpec(iid, tuple(upstream), **options)


class Run:
    """A machine under test: every step is followed by ``validate_state()``."""

    def __init__(
        self,
        specs: Iterable[InstanceSpec],
        *,
        cpu: int = 4,
        memory: int = 64 * GiB,
        gpu: int = 0,
        custom: Mapping[str, int] | None = None,
        prior: Mapping[str, Prior] | None = None,
    ) -> None:
        self.m = RunMachine(list(specs), Capacity(cpu, memory, gpu, dict(custom or {})), prior)
        self.m.validate_state()

    def __call__(self, *events: Event) -> list[Command]:
        commands = self.m.handle(*events)
        self.m.validate_state()
        return commands

    def state(self, iid: str) -> State:
        return self.m.state_of(iid)

    def states(self) -> dict[str, str]:
        return {iid: str(self.m.state_of(iid)) for iid in self.m.instances}

    def causes(self, iid: str) -> list[tuple[str, str, str]]:
        return [(str(old), str(new), cause) for _, old, new, cause in self.m.history(iid)]


def ok(at: float, iid: str, attempt: int = 1) -> AttemptSucceeded:
    return AttemptSucceeded(at, iid, attempt)


def fail(at: float, iid: str, attempt: int = 1, error: str = "boom") -> AttemptFailed:
    return AttemptFailed(at, iid, attempt, error)


def lost(at: float, iid: str, attempt: int = 1, reason: str = "worker died") -> AttemptLost:
    return AttemptLost(at, iid, attempt, reason)


# -- readiness in dependency order ---------------------------------------------------------------
def test_a_chain_runs_one_instance_after_another() -> None:
    run = Run([spec("a"), spec("b", "a"), spec("c", "b")])
    assert run(Start(0)) == [Execute("a", 1)]
    assert run.states() == {"a": "running", "b": "pending", "c": "pending"}
    assert run(ok(1, "a")) == [Execute("b", 1)]
    assert run(ok(2, "b")) == [Execute("c", 1)]
    assert run(ok(3, "c")) == [Finished("succeeded")]
    assert run.m.finished == Finished("succeeded")
    assert set(run.states().values()) == {"succeeded"}


def test_a_diamond_joins_only_when_both_branches_succeeded() -> None:
    run = Run([spec("a"), spec("b", "a"), spec("c", "a"), spec("d", "b", "c")])
    assert run(Start(0)) == [Execute("a", 1)]
    assert run(ok(1, "a")) == [Execute("b", 1), Execute("c", 1)]
    assert run(ok(2, "c")) == []
    assert run.state("d") is S.PENDING
    assert run(ok(3, "b")) == [Execute("d", 1)]
    assert run(ok(4, "d")) == [Finished("succeeded")]


def test_nothing_happens_before_start() -> None:
    run = Run([spec("a")])
    assert run(Tick(5)) == []
    assert run.state("a") is S.PENDING
    assert run.m.drain_changes() == []


def test_several_events_in_one_handle_are_applied_in_order() -> None:
    run = Run([spec("a"), spec("b"), spec("c", "a", "b")])
    assert run(Start(0)) == [Execute("a", 1), Execute("b", 1)]
    assert run(ok(1, "a"), ok(1, "b")) == [Execute("c", 1)]


# -- admission: priorities and resources ---------------------------------------------------------
def test_priorities_order_admission() -> None:
    run = Run([spec("low"), spec("high", priority=5), spec("mid", priority=1)], cpu=1)
    assert run(Start(0)) == [Execute("high", 1)]
    assert run(ok(1, "high")) == [Execute("mid", 1)]
    assert run(ok(2, "mid")) == [Execute("low", 1)]


def test_equal_priorities_are_admitted_in_graph_order() -> None:
    run = Run([spec("x"), spec("y"), spec("z")], cpu=1)
    order = [run(Start(0))[0]]
    order.append(run(ok(1, "x"))[0])
    order.append(run(ok(2, "y"))[0])
    assert order == [Execute("x", 1), Execute("y", 1), Execute("z", 1)]


def test_priority_never_overrides_a_dependency() -> None:
    run = Run([spec("up"), spec("urgent", "up", priority=100), spec("other")], cpu=1)
    assert run(Start(0)) == [Execute("up", 1)]
    assert run(ok(1, "up")) == [Execute("urgent", 1)]  # now ready, it goes before the older "other"


def test_a_two_cpu_task_takes_two_slots() -> None:
    run = Run([spec("big", resources={"cpu": 2}), spec("s1"), spec("s2")], cpu=3)
    assert run(Start(0)) == [Execute("big", 1), Execute("s1", 1)]
    assert run.m.free_cpu == 0
    assert run(ok(1, "s1")) == [Execute("s2", 1)]


def test_a_two_cpu_task_is_not_starved_by_one_cpu_tasks() -> None:
    run = Run(
        [spec("s1"), spec("s2"), spec("big", resources={"cpu": 2}), spec("s3"), spec("s4")],
        cpu=2,
    )
    assert run(Start(0)) == [Execute("s1", 1), Execute("s2", 1)]
    # One slot frees up: s3 would fit, but big is ahead of it and reserves that slot.
    assert run(ok(1, "s1")) == []
    assert run.state("s3") is S.READY
    assert run(ok(2, "s2")) == [Execute("big", 1)]
    assert run(ok(3, "big")) == [Execute("s3", 1), Execute("s4", 1)]


def test_memory_limits_what_runs_at_once() -> None:
    mib = 2**20
    run = Run(
        [
            spec("m1", resources={"memory": 600 * mib}),
            spec("tiny", resources={"memory": 100 * mib}),
            spec("m2", resources={"memory": 600 * mib}),
        ],
        cpu=8,
        memory=1024 * mib,
    )
    assert run(Start(0)) == [Execute("m1", 1), Execute("tiny", 1)]
    assert run.state("m2") is S.READY
    assert run(ok(1, "tiny")) == []  # 924MiB free is not 600MiB + what m1 still holds
    assert run(ok(2, "m1")) == [Execute("m2", 1)]


def test_custom_resources_are_limited_only_when_the_capacity_lists_them() -> None:
    run = Run(
        [
            spec("q1", resources={"custom": {"db": 1}}),
            spec("q2", resources={"custom": {"db": 1}}),
            spec("plain"),
            spec("lic", resources={"custom": {"licence": 50}}),
        ],
        cpu=8,
        custom={"db": 1},
    )
    assert run(Start(0)) == [Execute("q1", 1), Execute("plain", 1), Execute("lic", 1)]
    assert run(ok(1, "plain"), ok(1, "lic")) == []
    assert run(ok(2, "q1")) == [Execute("q2", 1)]


def test_gpus_are_admitted_one_request_at_a_time() -> None:
    run = Run([spec("g1", resources={"gpu": 1}), spec("g2", resources={"gpu": 1})], cpu=4, gpu=1)
    assert run(Start(0)) == [Execute("g1", 1)]
    assert run(fail(1, "g1")) == [Execute("g2", 1)]  # a failure frees the gpu too


# -- retries -------------------------------------------------------------------------------------
def test_failures_are_retried_with_exponential_backoff() -> None:
    run = Run([spec("a", retries=2, retry_delay=10.0), spec("b", "a")])
    assert run(Start(0)) == [Execute("a", 1)]
    assert run(fail(5, "a")) == [Wake(15.0)]
    assert run.state("a") is S.RETRY_WAIT
    run.m.drain_changes()

    assert run(Tick(14.9)) == [Wake(15.0)]  # too early: nothing changes
    assert run.state("a") is S.RETRY_WAIT
    assert run.m.drain_changes() == []

    assert run(Tick(15.0)) == [Execute("a", 2)]
    assert run(fail(20, "a", 2)) == [Wake(40.0)]  # twice the delay after the second failure
    assert run(Tick(40.0)) == [Execute("a", 3)]
    assert run(ok(41, "a", 3)) == [Execute("b", 1)]
    assert run(ok(42, "b")) == [Finished("succeeded")]


def test_a_late_tick_promotes_the_retry_at_once() -> None:
    run = Run([spec("a", retries=1, retry_delay=10.0)])
    run(Start(0))
    run(fail(1, "a"))
    assert run(Tick(500)) == [Execute("a", 2)]


def test_backoff_is_capped() -> None:
    run = Run([spec("a", retries=5, retry_delay=2000.0)])
    run(Start(0))
    assert run(fail(0, "a")) == [Wake(2000.0)]
    run(Tick(2000))
    assert run(fail(2000, "a", 2)) == [Wake(2000.0 + retry.MAX_DELAY)]


def test_a_task_failing_for_good_leaves_its_downstream_pending() -> None:
    run = Run([spec("a", retries=1, retry_delay=1.0), spec("b", "a"), spec("c", "b"), spec("x")])
    assert run(Start(0)) == [Execute("a", 1), Execute("x", 1)]
    assert run(fail(1, "a", error="KeyError: 'day'")) == [Wake(2.0)]
    assert run(Tick(2)) == [Execute("a", 2)]
    assert run(fail(3, "a", 2, error="KeyError: 'day'")) == []  # x still runs
    assert run.state("a") is S.FAILED
    assert run(ok(4, "x")) == [Finished("failed", failed=("a",))]
    assert run.states() == {"a": "failed", "b": "pending", "c": "pending", "x": "succeeded"}
    last = run.m.changes[-2]
    assert (last.instance, last.new, last.cause, last.error) == (
        "a",
        S.FAILED,
        "attempt 2 failed for good",
        "KeyError: 'day'",
    )


def test_every_failed_instance_is_reported() -> None:
    run = Run([spec("a"), spec("b"), spec("c")])
    run(Start(0))
    run(fail(1, "b"))
    run(ok(1, "c"))
    assert run(fail(2, "a")) == [Finished("failed", failed=("a", "b"))]


def test_a_lost_attempt_is_retried_at_once_without_using_the_tasks_retries() -> None:
    run = Run([spec("a", retries=0)])
    run(Start(0))
    assert run(lost(1, "a")) == [Execute("a", 2)]
    assert run.causes("a")[-2:] == [
        ("running", "ready", "attempt 1 lost: worker died"),
        ("ready", "running", "attempt 2 admitted"),
    ]
    assert run(ok(2, "a", 2)) == [Finished("succeeded")]


def test_lost_attempts_fail_for_good_after_max_lost_retries() -> None:
    run = Run([spec("a", retries=5), spec("b", "a")])
    run(Start(0))
    for attempt in range(1, retry.MAX_LOST + 1):
        assert run(lost(attempt, "a", attempt)) == [Execute("a", attempt + 1)]
    final = retry.MAX_LOST + 1
    assert run(lost(10, "a", final, "OOM killed")) == [Finished("failed", failed=("a",))]
    assert run.state("b") is S.PENDING
    change = run.m.changes[-1]
    assert change.new is S.FAILED
    assert change.error == f"lost {final} times; last: OOM killed"


def test_losses_before_the_start_are_not_counted_until_too_many_come_in_a_row() -> None:
    run = Run([spec("a", retries=0)])
    run(Start(0))
    attempt = 1
    for _ in range(retry.MAX_BLAMELESS):
        assert run(AttemptLost(attempt, "a", attempt, "never started", blameless=True)) == [
            Execute("a", attempt + 1)
        ]
        attempt += 1
    # one more in a row: it counts as a lost attempt (retried, within MAX_LOST), said so
    assert run(AttemptLost(attempt, "a", attempt, "never started", blameless=True)) == [
        Execute("a", attempt + 1)
    ]
    assert run.causes("a")[-2][2].startswith(
        f"attempt {attempt} lost: lost {retry.MAX_BLAMELESS + 1} times in a row"
    )
    attempt += 1
    for _ in range(retry.MAX_LOST):  # the streak starts again; counted losses run out in the end
        for _ in range(retry.MAX_BLAMELESS):
            run(AttemptLost(attempt, "a", attempt, "never started", blameless=True))
            attempt += 1
        run(AttemptLost(attempt, "a", attempt, "never started", blameless=True))
        attempt += 1
    assert run.state("a") is S.FAILED


def test_a_loss_and_a_failure_are_counted_apart() -> None:
    run = Run([spec("a", retries=1, retry_delay=5.0)])
    run(Start(0))
    assert run(lost(1, "a")) == [Execute("a", 2)]
    assert run(fail(2, "a", 2)) == [Wake(7.0)]  # the first real failure: one retry left
    assert run(Tick(7)) == [Execute("a", 3)]
    assert run(fail(8, "a", 3)) == [Finished("failed", failed=("a",))]


def test_stale_and_unknown_attempt_reports_are_ignored() -> None:
    run = Run([spec("a"), spec("b", "a")])
    run(Start(0))
    run(lost(1, "a"))  # attempt 2 is out now
    run.m.drain_changes()
    for stale in (
        ok(2, "a", 1),
        fail(2, "a", 1),
        lost(2, "a", 1),
        AttemptCancelled(2, "a", 1),
        ok(2, "a", 3),  # an attempt that was never started
        ok(2, "b", 1),  # an instance that is not running
        ok(2, "nope", 1),  # an instance this run does not have
    ):
        assert run(stale) == []
    assert run.m.drain_changes() == []
    assert run.states() == {"a": "running", "b": "pending"}
    assert run(ok(3, "a", 2)) == [Execute("b", 1)]


# -- cancelling ----------------------------------------------------------------------------------
def test_cancel_stops_waiting_instances_and_asks_running_ones_to_stop() -> None:
    run = Run(
        [spec("a"), spec("b"), spec("c", "a"), spec("r", retries=3, retry_delay=100.0)],
        cpu=2,
    )
    assert run(Start(0)) == [Execute("a", 1), Execute("b", 1)]
    assert run(fail(1, "b")) == [Execute("r", 1)]
    assert run(fail(2, "r")) == [Wake(102.0)]
    # a running; b failed for good; c pending; r waiting for its retry
    assert run(CancelRequested(3)) == [Cancel("a", 1)]
    assert run.states() == {"a": "running", "b": "failed", "c": "cancelled", "r": "cancelled"}
    assert run.causes("c")[-1] == ("pending", "cancelled", "cancelled by the user")
    assert run(Tick(200)) == []  # no Wake and no retry once cancelling
    assert run(AttemptCancelled(4, "a", 1)) == [Finished("cancelled", failed=("b",))]
    assert run.causes("a")[-1] == ("running", "cancelled", "cancelled while running")


def test_a_ready_instance_is_cancelled_before_it_starts() -> None:
    run = Run([spec("a"), spec("b")], cpu=1)
    run(Start(0))
    assert run.state("b") is S.READY
    assert run(CancelRequested(1, "cancelled by ops")) == [Cancel("a", 1)]
    assert run.causes("b")[-1] == ("ready", "cancelled", "cancelled by ops")


def test_a_success_during_the_grace_period_is_recorded_as_success() -> None:
    run = Run([spec("a"), spec("x"), spec("c", "a")])
    run(Start(0))
    assert run(CancelRequested(1)) == [Cancel("a", 1), Cancel("x", 1)]
    assert run(ok(2, "a")) == []  # recorded, and its downstream is not started
    assert run.state("a") is S.SUCCEEDED
    assert run(AttemptCancelled(3, "x", 1)) == [Finished("cancelled")]
    assert run.states() == {"a": "succeeded", "x": "cancelled", "c": "cancelled"}


def test_a_failure_or_loss_during_the_grace_period_counts_as_cancelled_keeping_the_error() -> None:
    run = Run([spec("a", retries=3), spec("b")])
    run(Start(0))
    run(CancelRequested(1))
    run.m.drain_changes()
    assert run(fail(2, "a", error="SIGTERM")) == []
    assert run(lost(3, "b")) == [Finished("cancelled")]
    changes = run.m.drain_changes()
    assert [(c.instance, c.new, c.error) for c in changes] == [
        ("a", S.CANCELLED, "SIGTERM"),
        ("b", S.CANCELLED, "worker died"),
    ]


def test_cancelling_with_nothing_running_finishes_at_once() -> None:
    run = Run([spec("a", retries=1, retry_delay=60.0)])
    run(Start(0))
    run(fail(1, "a"))
    assert run(CancelRequested(2)) == [Finished("cancelled")]


# -- retry of a finished run ---------------------------------------------------------------------
def test_retry_requested_resets_failed_and_cancelled_and_the_run_can_succeed() -> None:
    """What ``conveyor retry`` does: a fresh machine from the recorded states, then Retry + Start."""
    prior = {
        "a": Prior(S.SUCCEEDED, attempts=1),
        "b": Prior(S.FAILED, attempts=2, failures=2),
        "c": Prior(S.PENDING),
        "x": Prior(S.CANCELLED, attempts=1),
    }
    run = Run([spec("a"), spec("b", "a", retries=1), spec("c", "b"), spec("x")], prior=prior)
    assert run(RetryRequested(10), Start(10)) == [Execute("b", 3), Execute("x", 2)]
    assert run.causes("b") == [
        ("failed", "pending", "retry requested"),
        ("pending", "ready", "upstream done"),
        ("ready", "running", "attempt 3 admitted"),
    ]
    assert run(fail(11, "b", 3)) == [Wake(12.0)]  # the retry budget starts afresh
    assert run(Tick(12), ok(12, "x", 2)) == [Execute("b", 4)]
    assert run(ok(13, "b", 4)) == [Execute("c", 1)]
    assert run(ok(14, "c")) == [Finished("succeeded")]
    assert run.state("a") is S.SUCCEEDED  # never redone
    assert run.m.instances["a"].attempts == 1


def test_retry_requested_while_the_run_is_still_going_restarts_failed_instances() -> None:
    run = Run([spec("a"), spec("b", "a"), spec("x")])
    run(Start(0))
    run(fail(1, "a"))
    assert run(RetryRequested(2)) == [Execute("a", 2)]
    assert run(ok(3, "a", 2)) == [Execute("b", 1)]
    run(ok(4, "b"))
    assert run(ok(5, "x")) == [Finished("succeeded")]


def test_retry_requested_after_the_run_finished_starts_it_again() -> None:
    run = Run([spec("a"), spec("b", "a")])
    run(Start(0))
    assert run(fail(1, "a")) == [Finished("failed", failed=("a",))]
    assert run(RetryRequested(2)) == [Execute("a", 2)]


# -- skipping what is done -----------------------------------------------------------------------
def test_start_skips_done_instances_and_prunes_upstream_only_they_need() -> None:
    run = Run([spec("extract"), spec("clean", "extract"), spec("report", "clean")])
    assert run(Start(0, done=frozenset({"clean"}))) == [Execute("report", 1)]
    assert run.states() == {"extract": "skipped", "clean": "skipped", "report": "running"}
    assert run.causes("clean") == [("pending", "skipped", "targets exist")]
    assert run.causes("extract") == [("pending", "skipped", "not needed: every downstream task is done")]


def test_an_upstream_still_needed_by_another_branch_is_not_pruned() -> None:
    run = Run([spec("a"), spec("b", "a"), spec("c", "a")])
    assert run(Start(0, done=frozenset({"b"}))) == [Execute("a", 1)]
    assert run(ok(1, "a")) == [Execute("c", 1)]
    assert run(ok(2, "c")) == [Finished("succeeded")]
    assert run.state("b") is S.SKIPPED


def test_a_run_whose_leaves_are_done_finishes_at_once() -> None:
    run = Run([spec("a"), spec("b", "a"), spec("c", "a")])
    assert run(Start(0, done=frozenset({"b", "c", "unknown"}))) == [Finished("succeeded")]
    assert set(run.states().values()) == {"skipped"}


# -- resuming from recorded states ---------------------------------------------------------------
def test_resume_a_running_instance_whose_driver_died() -> None:
    prior = {"a": Prior(S.SUCCEEDED, attempts=1), "b": Prior(S.RUNNING, attempts=1)}
    run = Run([spec("a"), spec("b", "a"), spec("c", "b")], cpu=1, prior=prior)
    assert run.m.free_cpu == 0  # the running attempt still holds its slot
    assert run(Start(10)) == []
    assert run(lost(10, "b", 1, "the process driving the run stopped")) == [Execute("b", 2)]
    assert run(ok(11, "b", 2)) == [Execute("c", 1)]
    assert run(ok(12, "c")) == [Finished("succeeded")]
    assert run.causes("a") == []  # a succeeded before the crash: untouched


def test_resume_a_running_instance_that_finished_while_no_one_watched() -> None:
    run = Run([spec("a"), spec("b", "a")], prior={"a": Prior(S.RUNNING, attempts=3)})
    assert run(Start(5), ok(5, "a", 3)) == [Execute("b", 1)]


def test_resume_keeps_the_lost_count() -> None:
    prior = {"a": Prior(S.RUNNING, attempts=4, lost=retry.MAX_LOST)}
    run = Run([spec("a")], prior=prior)
    assert run(Start(1), lost(1, "a", 4)) == [Finished("failed", failed=("a",))]


def test_resume_waits_out_a_recorded_backoff() -> None:
    prior = {"a": Prior(S.RETRY_WAIT, attempts=1, failures=1, not_before=50.0)}
    run = Run([spec("a", retries=2), spec("b", "a")], prior=prior)
    assert run(Start(10)) == [Wake(50.0)]
    assert run(Tick(49)) == [Wake(50.0)]
    assert run(Tick(50)) == [Execute("a", 2)]


def test_resume_admits_instances_recorded_ready() -> None:
    prior = {"a": Prior(S.SUCCEEDED, attempts=1), "b": Prior(S.READY)}
    run = Run([spec("a"), spec("b", "a")], prior=prior)
    assert run(Start(0)) == [Execute("b", 1)]


# -- the transition table, history and changes ---------------------------------------------------
def test_an_illegal_transition_raises_with_the_instance_history() -> None:
    run = Run([spec("a")])
    run(Start(0))
    run(ok(1, "a"))
    # No event sequence reaches an illegal move (see the random test below): drive _move directly.
    with pytest.raises(TransitionError) as err:
        run.m._move(run.m.instances["a"], S.RUNNING, "a confused driver")
    assert str(err.value) == (
        "task instance a: illegal transition succeeded -> running (a confused driver); history: "
        "pending->ready (upstream done); ready->running (attempt 1 admitted); "
        "running->succeeded (attempt 1 succeeded)"
    )
    assert run.state("a") is S.SUCCEEDED  # nothing changed


def test_an_illegal_transition_without_history_says_so() -> None:
    run = Run([spec("a")])
    with pytest.raises(TransitionError, match=r"illegal transition pending -> failed .*history: no history"):
        run.m._move(run.m.instances["a"], S.FAILED, "skipped a step")


def test_changes_are_what_the_driver_persists_before_the_commands() -> None:
    run = Run([spec("a", retries=1, retry_delay=2.0), spec("b", "a")])
    commands = run(Start(0))
    assert commands == [Execute("a", 1)]
    assert run.m.drain_changes() == [
        Change("a", S.PENDING, S.READY, 0, "upstream done", 0),
        Change("a", S.READY, S.RUNNING, 0, "attempt 1 admitted", 1),
    ]
    assert run.m.drain_changes() == []  # drained once
    run(fail(3, "a", error="ValueError: bad row"))
    run(Tick(5))
    run(ok(6, "a", 2))
    assert run.m.drain_changes() == [
        Change("a", S.RUNNING, S.RETRY_WAIT, 3, "attempt 1 failed; retry in 2s", 1, "ValueError: bad row"),
        Change("a", S.RETRY_WAIT, S.READY, 5, "backoff over", 1),
        Change("a", S.READY, S.RUNNING, 5, "attempt 2 admitted", 2),
        Change("a", S.RUNNING, S.SUCCEEDED, 6, "attempt 2 succeeded", 2),
        Change("b", S.PENDING, S.READY, 6, "upstream a succeeded", 0),
        Change("b", S.READY, S.RUNNING, 6, "attempt 1 admitted", 1),
    ]
    assert [(at, str(old), str(new)) for at, old, new, _ in run.m.history("a")] == [
        (0, "pending", "ready"),
        (0, "ready", "running"),
        (3, "running", "retry_wait"),
        (5, "retry_wait", "ready"),
        (5, "ready", "running"),
        (6, "running", "succeeded"),
    ]


def test_time_never_runs_backwards_in_the_record() -> None:
    run = Run([spec("a"), spec("b")])
    run(Start(10))
    run(ok(5, "a"))  # a report stamped earlier than what the machine has seen
    assert run.m.history("a")[-1][0] == 10


def test_counts_track_every_state() -> None:
    run = Run([spec("a"), spec("b", "a"), spec("c")], cpu=1)
    run(Start(0))
    assert {str(k): v for k, v in run.m.counts.items() if v} == {"running": 1, "ready": 1, "pending": 1}
    run(fail(1, "a"))
    assert {str(k): v for k, v in run.m.counts.items() if v} == {"failed": 1, "running": 1, "pending": 1}


# -- random event streams ------------------------------------------------------------------------
def _random_specs(rng: random.Random) -> list[InstanceSpec]:
    out = []
    for i in range(rng.randint(1, 7)):
        ups = tuple(f"t{j}" for j in range(i) if rng.random() < 0.35)
        out.append(
            InstanceSpec(
                f"t{i}",
                ups,
                priority=rng.randint(0, 2),
                resources=Resources(cpu=rng.randint(1, 2), memory=rng.choice([0, 300, 600])),
                retries=rng.randint(0, 2),
                retry_delay=rng.choice([0.0, 1.0, 5.0]),
            )
        )
    return out


def _simulate(seed: int, *, cancel_at: int | None) -> tuple[Run, Finished, bool, bool]:
    """An executor that reports each attempt once, and a clock that honours every Wake."""
    rng = random.Random(seed)
    specs = _random_specs(rng)
    run = Run(specs, cpu=2, memory=1000)
    out: dict[str, int] = {}
    now, wake = 0.0, None
    cancelled = False  # a cancel was requested, or an attempt reported itself cancelled
    commands = run(Start(now))
    for step in range(1000):
        for c in commands:
            if isinstance(c, Execute):
                assert c.instance not in out, "an instance executed twice at once"
                assert all(run.state(u).done for u in run.m.instances[c.instance].spec.upstream)
                out[c.instance] = c.attempt
            elif isinstance(c, Wake):
                wake = c.at
            elif isinstance(c, Finished):
                assert not out, "finished with attempts still out"
                return run, c, cancelled, cancel_at is not None and step > cancel_at
        now += 0.5
        if step == cancel_at:
            cancelled = True
            commands = run(CancelRequested(now))
        elif out:
            iid = sorted(out)[rng.randrange(len(out))]
            attempt = out.pop(iid)
            roll = rng.random()
            if roll < 0.65:
                commands = run(AttemptSucceeded(now, iid, attempt))
            elif roll < 0.85:
                commands = run(AttemptFailed(now, iid, attempt, "boom"))
            elif roll < 0.95:
                commands = run(AttemptLost(now, iid, attempt, "died"))
            else:
                cancelled = True
                commands = run(AttemptCancelled(now, iid, attempt))
            if rng.random() < 0.2:  # a duplicate, late report
                commands += run(AttemptSucceeded(now, iid, attempt))
        elif wake is not None:
            now, wake = max(now, wake), None
            commands = run(Tick(now))
        else:
            raise AssertionError(f"seed {seed}: stalled in {run.states()}")
    raise AssertionError(f"seed {seed}: never finished")


@pytest.mark.parametrize("cancel_at", [None, 3])
def test_random_runs_always_finish_consistently(cancel_at: int | None) -> None:
    for seed in range(300):
        run, fin, cancelled, requested = _simulate(seed, cancel_at=cancel_at)
        states = {iid: run.state(iid) for iid in run.m.instances}
        assert fin.failed == tuple(i for i, s in states.items() if s is S.FAILED)
        if requested:  # cancelled, even if every attempt out at the time went on to succeed
            assert fin.state == "cancelled", seed
        if fin.state == "cancelled":
            assert cancelled, seed
            assert S.READY not in states.values() and S.RUNNING not in states.values(), seed
        elif fin.state == "succeeded":
            assert all(s.done for s in states.values()), seed
        elif fin.state == "failed":
            assert fin.failed and S.CANCELLED not in states.values(), seed
        else:
            raise AssertionError(f"seed {seed}: unknown final state {fin}")
        for iid, s in states.items():  # nothing ran before its upstream was done
            if s is S.SUCCEEDED:
                assert all(states[u].done for u in run.m.instances[iid].spec.upstream), seed


def test_random_hostile_event_streams_never_break_the_invariants() -> None:
    """Repeated starts, retries and cancels, stale and invented reports: validate_state() holds."""
    for seed in range(300):
        rng = random.Random(seed)
        specs = _random_specs(rng)
        ids = [sp.id for sp in specs]
        run = Run(specs, cpu=2, memory=1000)
        now = 0.0
        run(Start(now))
        for _ in range(60):
            now += rng.random()
            iid = rng.choice(ids)
            current = run.m.instances[iid].attempts
            attempt = rng.choice([current, current, current - 1, current + 1])
            event = rng.choice(
                [
                    AttemptSucceeded(now, iid, attempt),
                    AttemptFailed(now, iid, attempt, "boom"),
                    AttemptLost(now, iid, attempt, "died"),
                    AttemptCancelled(now, iid, attempt),
                    Tick(now + rng.choice([0.0, 10.0])),
                    CancelRequested(now),
                    RetryRequested(now),
                    Start(now, frozenset(rng.sample(ids, rng.randint(0, len(ids))))),
                ]
            )
            for command in run(event):
                if isinstance(command, Execute):
                    assert run.state(command.instance) is S.RUNNING
                    assert run.m.instances[command.instance].attempts == command.attempt
                elif isinstance(command, Cancel):
                    assert run.state(command.instance) is S.RUNNING


def test_under_team_quotas_only_granted_instances_start_and_the_rest_ask_in_order() -> None:
    run = Run([spec("a"), spec("b", priority=5), spec("c"), spec("d")], cpu=3)
    run.m.granted = set()
    assert run(Start(0)) == []  # ready, fitting the workers, but nothing granted yet
    assert run.m.asking == ["b", "a", "c"]  # by priority, then age; "d" does not fit the 3 cpu anyway
    run.m.granted.update({"c"})
    assert run(Tick(1)) == [Execute("c", 1)]
    assert run.m.granted == set() and run.m.asking == ["b", "a"]  # a grant is used once
    run.m.granted.update({"a", "b"})
    assert run(Tick(2)) == [Execute("b", 1), Execute("a", 1)]
    assert run.m.asking == []
    assert run(ok(1, "c")) == []
    assert run.m.asking == ["d"]
