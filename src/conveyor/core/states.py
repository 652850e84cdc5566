"""Task instance states and the one table of transitions between them."""

from __future__ import annotations

from enum import StrEnum


class State(StrEnum):
    PENDING = "pending"  # waiting for upstream instances
    READY = "ready"  # upstream done; waiting for resources
    RUNNING = "running"  # an attempt is out on the executor
    RETRY_WAIT = "retry_wait"  # an attempt failed; the next waits for its backoff
    SUCCEEDED = "succeeded"
    SKIPPED = "skipped"  # targets already exist, or no downstream needs it
    FAILED = "failed"  # failed for good: retries used up
    CANCELLED = "cancelled"

    @property
    def done(self) -> bool:
        """Downstream may start: the instance's work is there."""
        return self in (State.SUCCEEDED, State.SKIPPED)

    @property
    def terminal(self) -> bool:
        return self in _TERMINAL

    @property
    def symbol(self) -> str:
        return _SYMBOLS[self]


_TERMINAL = frozenset({State.SUCCEEDED, State.SKIPPED, State.FAILED, State.CANCELLED})
_SYMBOLS = {
    State.PENDING: "·",
    State.READY: "○",
    State.RUNNING: "▶",
    State.RETRY_WAIT: "↻",
    State.SUCCEEDED: "✔",
    State.SKIPPED: "⤼",
    State.FAILED: "✘",
    State.CANCELLED: "⊘",
}

S = State
#: Every allowed change of state. Anything else is a bug and raises with the instance's history.
TRANSITIONS: frozenset[tuple[State, State]] = frozenset(
    {
        (S.PENDING, S.READY),
        (S.PENDING, S.SKIPPED),
        (S.PENDING, S.SUCCEEDED),  # reused from the result cache (``conveyor.cache``)
        (S.PENDING, S.CANCELLED),
        (S.READY, S.RUNNING),
        (S.READY, S.CANCELLED),
        (S.RUNNING, S.SUCCEEDED),
        (S.RUNNING, S.RETRY_WAIT),
        (S.RUNNING, S.READY),  # a lost attempt: retried at once
        (S.RUNNING, S.FAILED),
        (S.RUNNING, S.CANCELLED),
        (S.RETRY_WAIT, S.READY),
        (S.RETRY_WAIT, S.CANCELLED),
        (S.FAILED, S.PENDING),  # retry of a finished run
        (S.CANCELLED, S.PENDING),
    }
)
