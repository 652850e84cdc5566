"""The nouns of admission: a team's quota, a pending attempt's demand, a running attempt's holding.

Amounts are ``Mapping[str, int]`` keyed by resource name ("cpu", "memory" in bytes, "gpu", custom
names), the shape ``Resources.as_dict()`` gives, so a task's resources pass through unchanged.
A quota is validated when it is built (a store or a config file that hands us a negative limit
learns at once, with the team's name), while demands and holdings come from resources that were
validated when their task was defined, and are taken as they are: there are thousands of them.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field

from conveyor.errors import DefinitionError


@dataclass(frozen=True, slots=True)
class TeamQuota:
    """What one team may hold at once, and how much of the cluster it deserves.

    ``limits``: the most of each resource the team's running attempts hold together; a resource not
    named is unlimited for the team. ``runs``: the most unfinished runs at once (None: any number).
    ``weight``: the team's share of a contended cluster relative to other teams (2.0 gets twice
    what 1.0 gets). ``borrow``: the most of each resource the team may hold beyond its ``limits``,
    taken from the idle quota of teams that have nothing pending; empty: no borrowing.
    ``users``: the weights of the team's members among themselves (1.0 for a member not named).
    """

    team: str
    limits: Mapping[str, int] = field(default_factory=dict)
    runs: int | None = None
    weight: float = 1.0
    borrow: Mapping[str, int] = field(default_factory=dict)
    users: Mapping[str, float] = field(default_factory=dict)

    def __post_init__(self) -> None:
        where = f"team {self.team!r}"
        for kind, amounts in (("limit", self.limits), ("borrow limit", self.borrow)):
            for name, amount in amounts.items():
                if isinstance(amount, bool) or not isinstance(amount, int) or amount < 0:
                    raise DefinitionError(
                        f"{where}: {kind} {name}={amount!r} must be a whole number >= 0; "
                        f"leave {name} out to make it unlimited"
                    )
        if self.runs is not None and self.runs < 0:
            raise DefinitionError(
                f"{where}: runs={self.runs} must be >= 0; leave it out for any number of runs"
            )
        if not self.weight > 0:
            raise DefinitionError(f"{where}: weight={self.weight!r} must be > 0; 1.0 is an ordinary share")
        for user, weight in self.users.items():
            if not weight > 0:
                raise DefinitionError(
                    f"{where}: user {user!r} has weight {weight!r}; a user's weight must be > 0 "
                    "(1.0 is usual)"
                )


@dataclass(frozen=True, slots=True)
class Demand:
    """One attempt waiting to be admitted.

    ``key`` names the attempt (e.g. "run/instance/attempt"); ``priority`` orders a user's own
    demands (higher first) and never moves a team ahead of another; ``since`` is when it began to
    wait: older first among equal priorities.
    """

    key: str
    team: str
    user: str
    run_id: str
    amounts: Mapping[str, int]
    priority: int = 0
    since: float = 0.0


@dataclass(frozen=True, slots=True)
class Holding:
    """One admitted attempt and what it holds until it ends.

    ``borrowed`` is the part of ``amounts`` beyond the team's own limits, taken from other teams'
    idle quota: it is what preemption may reclaim, and what stops counting against the team's
    borrow limit when the attempt ends. ``since``: when it was admitted.
    """

    key: str
    team: str
    user: str
    run_id: str
    amounts: Mapping[str, int]
    borrowed: Mapping[str, int] = field(default_factory=dict)
    since: float = 0.0
