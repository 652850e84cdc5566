"""Events: what happened, fed into the core. Each carries the time and its cause."""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field


@dataclass(frozen=True, slots=True)
class Event:
    at: float


@dataclass(frozen=True, slots=True)
class Start(Event):
    """The run starts (or resumes). ``done``: instances whose targets all exist already;
    ``reused``: instances that take a cached attempt's outputs (``conveyor.cache``), with the run
    that made them."""

    done: frozenset[str] = frozenset()
    reused: Mapping[str, str] = field(default_factory=dict)


@dataclass(frozen=True, slots=True)
class Tick(Event):
    """Time passed; backoffs may have expired."""


@dataclass(frozen=True, slots=True)
class AttemptSucceeded(Event):
    instance: str
    attempt: int


@dataclass(frozen=True, slots=True)
class AttemptFailed(Event):
    instance: str
    attempt: int
    error: str


@dataclass(frozen=True, slots=True)
class AttemptLost(Event):
    """The attempt's process died, or the process that launched it did. ``blameless``: the
    attempt never started because the process driving the run died; it is not counted
    against the task's retries nor its allowance of lost attempts."""

    instance: str
    attempt: int
    reason: str
    blameless: bool = False


@dataclass(frozen=True, slots=True)
class AttemptCancelled(Event):
    instance: str
    attempt: int


@dataclass(frozen=True, slots=True)
class CancelRequested(Event):
    reason: str = "cancelled by the user"


@dataclass(frozen=True, slots=True)
class RetryRequested(Event):
    """Put failed and cancelled instances back to pending (``conveyor retry``)."""
