"""Preemption, when the caller asks for it: borrowed quota goes back to a lender that waited."""

from __future__ import annotations

from collections.abc import Mapping

from conveyor.quotas import Demand, Holding, TeamQuota, preempt

TWO = {"a": TeamQuota("a", {"cpu": 4}, borrow={"cpu": 4}), "b": TeamQuota("b", {"cpu": 4})}
THREE = {**TWO, "c": TeamQuota("c", {"cpu": 2})}


def cpu(n: int) -> dict[str, int]:
    return {"cpu": n}


def a_borrowing(borrowed: int) -> list[Holding]:
    """Team a's attempts of one cpu each, admitted one a second: its own four, then borrowed ones."""
    return [
        Holding(f"a{i}", "a", "ann", "r", cpu(1), cpu(1) if i >= 4 else {}, since=float(i))
        for i in range(4 + borrowed)
    ]


def b_waits(n: int, since: float = 100.0) -> list[Demand]:
    return [Demand(f"b{i}", "b", "bob", "rb", cpu(1), since=since) for i in range(n)]


def test_a_lender_that_waited_past_the_grace_gets_its_quota_back_newest_borrowers_first() -> None:
    assert preempt(a_borrowing(3), b_waits(2), TWO, now=200.0, grace=60.0) == ["a6", "a5"]


def test_within_the_grace_nothing_is_preempted() -> None:
    assert preempt(a_borrowing(3), b_waits(2), TWO, now=150.0, grace=60.0) == []


def test_the_callers_record_of_the_wait_counts_over_the_demands_own() -> None:
    since: Mapping[str, float] = {"b": 190.0}
    assert preempt(a_borrowing(3), b_waits(2), TWO, now=200.0, grace=60.0, borrowed_since=since) == []


def test_borrowing_that_fits_on_a_team_with_nothing_pending_stays() -> None:
    # c has 2 idle cpus and nothing pending: two of a's three borrowed cpus may sit there.
    assert preempt(a_borrowing(3), b_waits(4), THREE, now=200.0, grace=60.0) == ["a6"]


def test_no_more_is_reclaimed_than_the_lender_waits_for() -> None:
    assert preempt(a_borrowing(4), b_waits(1), THREE, now=200.0, grace=60.0) == ["a7"]


def test_attempts_within_their_own_quota_are_never_preempted() -> None:
    held = a_borrowing(0)
    assert preempt(held, b_waits(4), TWO, now=1e6, grace=0.0) == []
