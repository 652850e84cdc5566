"""Retry policy: a pure decision from the attempt number."""

from __future__ import annotations

#: Attempts lost to a dead process are retried this many times, beyond the task's own retries.
MAX_LOST = 3
#: Attempts lost in a row "before they started" (not counted against the task) are retried this
#: many times; the next such loss counts as a lost attempt. An attempt that kills its engine's
#: worker faster than the engine can tell it began would otherwise be retried for ever.
MAX_BLAMELESS = 10
#: The longest backoff between attempts, in seconds.
MAX_DELAY = 3600.0


def backoff(failures: int, base: float) -> float:
    """Seconds before the next attempt after ``failures`` failures: base, 2*base, 4*base, ..."""
    return float(min(base * 2.0 ** min(max(failures - 1, 0), 64), MAX_DELAY))


def next_try(failures: int, retries: int, base: float, now: float) -> float | None:
    """When to try again after ``failures`` failed attempts, or None: failed for good."""
    if failures > retries:
        return None
    return now + backoff(failures, base)
