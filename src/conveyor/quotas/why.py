"""Why an attempt is pending: one small record per reason, with one line of text for people.

The admission policy produces the quota reasons; the scheduler produces ``Upstream``, ``Backoff``
and ``NoExecutor`` itself, so "why pending" has one vocabulary whoever decided. Each reason has a
``kind`` (a stable name for the API and UI to switch on) and ``text()``: one line, no newline,
that says what blocks the attempt in the user's terms. ``as_dict`` is the JSON answer.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any, ClassVar

from conveyor.resources import format_memory

#: Runs and upstream names listed in a text before "and N more".
_LISTED = 3


def _amount(resource: str, value: int) -> str:
    """An amount of a resource as people read it: memory in KiB/MiB/GiB, others as counts."""
    return format_memory(value) if resource == "memory" else str(value)


def _listed(names: tuple[str, ...]) -> str:
    shown = ", ".join(names[:_LISTED])
    return shown if len(names) <= _LISTED else f"{shown} and {len(names) - _LISTED} more"


@dataclass(frozen=True, slots=True)
class QuotaFull:
    """The team's own quota of a resource is used up (by ``runs``), and it may not borrow more."""

    kind: ClassVar[str] = "quota_full"
    team: str
    resource: str
    used: int
    limit: int
    runs: tuple[str, ...] = ()

    def text(self) -> str:
        held = f"{_amount(self.resource, self.used)} of {_amount(self.resource, self.limit)}"
        by = f" (runs {_listed(self.runs)})" if self.runs else ""
        return f"team quota: {self.resource} {held} in use by team {self.team}{by}"


@dataclass(frozen=True, slots=True)
class RunsFull:
    """The team has as many unfinished runs as it may; a new run starts when one finishes."""

    kind: ClassVar[str] = "runs_full"
    team: str
    open: int
    limit: int

    def text(self) -> str:
        runs = f"{self.open} of {self.limit} runs"
        return f"team quota: {runs} of team {self.team} open; this run starts when one of them ends"


@dataclass(frozen=True, slots=True)
class BorrowLimit:
    """The team is over its own quota and already borrows as much as it may."""

    kind: ClassVar[str] = "borrow_limit"
    team: str
    resource: str
    borrowed: int
    limit: int

    def text(self) -> str:
        held = f"{_amount(self.resource, self.borrowed)} of the {_amount(self.resource, self.limit)}"
        return f"borrow limit: team {self.team} borrows {self.resource} {held} it may beyond its quota"


@dataclass(frozen=True, slots=True)
class LenderBusy:
    """Idle quota exists, but only in teams that have pending work of their own (they lend none)."""

    kind: ClassVar[str] = "lender_busy"
    team: str
    resource: str

    def text(self) -> str:
        idle = f"the teams with idle {self.resource} have pending work of their own"
        return f"team {self.team} is over its {self.resource} quota and {idle}"


@dataclass(frozen=True, slots=True)
class FairShare:
    """The cluster is contended and the team is ahead of its share: others go first.

    ``share``: the team's dominant share of the cluster now; ``target``: its weight's part of the
    weights of the teams that hold or want something; ``usage``: its decayed recent usage, as a
    share (see ``Usage.team_share``).
    """

    kind: ClassVar[str] = "fair_share"
    team: str
    share: float
    target: float
    usage: float = 0.0

    def text(self) -> str:
        lately = f", lately {self.usage:.0%}" if self.usage >= 0.005 else ""
        uses = f"team {self.team} uses {self.share:.0%} of the cluster{lately}"
        return f"fair share: {uses}, its share is {self.target:.0%}"


@dataclass(frozen=True, slots=True)
class NoCapacity:
    """The cluster has no room for it now, whatever the quotas say."""

    kind: ClassVar[str] = "no_capacity"
    resource: str
    used: int
    capacity: int

    def text(self) -> str:
        held = f"{_amount(self.resource, self.used)} of {_amount(self.resource, self.capacity)}"
        return f"cluster full: {self.resource} {held} in use"


@dataclass(frozen=True, slots=True)
class Upstream:
    """Upstream task instances have not succeeded yet."""

    kind: ClassVar[str] = "upstream"
    names: tuple[str, ...]

    def text(self) -> str:
        return f"waiting for upstream {_listed(self.names)}"


@dataclass(frozen=True, slots=True)
class Backoff:
    """A failed attempt's retry waits for its backoff to pass (``until``: epoch seconds)."""

    kind: ClassVar[str] = "backoff"
    until: float

    def text(self) -> str:
        when = datetime.fromtimestamp(self.until, UTC).isoformat(timespec="seconds").replace("+00:00", "Z")
        return f"retry backoff until {when}"


@dataclass(frozen=True, slots=True)
class NoExecutor:
    """No executor can take the attempt (``detail``: the executor's own words)."""

    kind: ClassVar[str] = "no_executor"
    detail: str

    def text(self) -> str:
        return f"no executor can run it: {' '.join(self.detail.split())}"


Reason = (
    QuotaFull | RunsFull | BorrowLimit | LenderBusy | FairShare | NoCapacity | Upstream | Backoff | NoExecutor
)


def as_dict(reason: Reason) -> dict[str, Any]:
    """The reason for a JSON answer: its kind, its one line of text, and its fields."""
    fields = {f.name: getattr(reason, f.name) for f in dataclasses.fields(reason)}
    return {
        "kind": reason.kind,
        "text": reason.text(),
        **{k: list(v) if isinstance(v, tuple) else v for k, v in fields.items()},
    }
