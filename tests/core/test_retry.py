"""The retry policy: exponential backoff, capped; failed for good once retries are used up."""

from __future__ import annotations

import pytest

from conveyor.core import retry


@pytest.mark.parametrize(("failures", "delay"), [(0, 10.0), (1, 10.0), (2, 20.0), (3, 40.0), (4, 80.0)])
def test_backoff_doubles_after_each_failure(failures: int, delay: float) -> None:
    assert retry.backoff(failures, 10.0) == delay


def test_backoff_is_capped_at_an_hour() -> None:
    assert retry.MAX_DELAY == 3600.0
    assert retry.backoff(12, 10.0) == 3600.0
    assert retry.backoff(1024, 1.0) == 3600.0


def test_backoff_stays_capped_for_a_task_that_retries_practically_forever() -> None:
    assert retry.next_try(1025, 10**6, 1.0, now=0.0) == 3600.0


def test_a_zero_delay_retries_at_once() -> None:
    assert retry.backoff(5, 0.0) == 0.0
    assert retry.next_try(1, 3, 0.0, now=7.0) == 7.0


def test_next_try_is_now_plus_the_backoff_while_retries_remain() -> None:
    assert retry.next_try(1, 2, 10.0, now=100.0) == 110.0
    assert retry.next_try(2, 2, 10.0, now=200.0) == 220.0


def test_next_try_is_none_once_failures_exceed_retries() -> None:
    assert retry.next_try(3, 2, 10.0, now=100.0) is None
    assert retry.next_try(1, 0, 10.0, now=100.0) is None  # no retries: the first failure is final
