"""Decayed usage, HTCondor style: what a team (and each of its users) has held lately.

Fair share on current holdings alone forgets at once: a team that filled the cluster all night
would be first in line again the moment its attempts end. So each team carries its accumulated
usage, decayed exponentially with a half-life (HTCondor's ``PRIORITY_HALFLIFE``): what it used one
half-life ago counts half, two half-lives ago a quarter.

The unit is the *dominant share-second*: holding attempts whose dominant share (see
``conveyor.quotas.shares``) is 0.25 for 10 seconds adds 2.5. One number per team (not one per
resource) because fairness compares teams by their dominant share, and usage is compared the same
way. A team that holds share ``s`` for ever converges to ``s * half_life / ln 2`` (the mean life),
so ``team_share()`` divides by the mean life: a share-like number, 0.25 for a team that has held a
quarter of the cluster for many half-lives, that the policy adds to the current share.
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field

from conveyor.errors import DefinitionError
from conveyor.quotas.model import Holding
from conveyor.quotas.shares import dominant_share

#: Seconds after which past usage counts half (HTCondor's default is a day; attempts here are
#: shorter, and a team should get its turn back within the working day).
HALF_LIFE = 3600.0

#: Values below this (in dominant share-seconds) are forgotten, so idle names do not pile up.
_FORGET = 1e-9


def decay(value: float, elapsed: float, half_life: float = HALF_LIFE) -> float:
    """``value`` after ``elapsed`` seconds of halving every ``half_life`` seconds."""
    if elapsed <= 0:
        return value
    return value * math.pow(0.5, elapsed / half_life)


def mean_life(half_life: float) -> float:
    """The seconds a constant share accumulates over, all decay included: ``half_life / ln 2``."""
    return half_life / math.log(2)


@dataclass(frozen=True, slots=True)
class Usage:
    """Decayed usage per team and per (team, user), as of ``at``.

    Immutable: ``charge`` returns a new ``Usage``, so a caller can keep the one it decided with and
    the store can write the new one in the same transaction as the decisions it led to.
    """

    at: float = 0.0
    half_life: float = HALF_LIFE
    teams: Mapping[str, float] = field(default_factory=dict)
    users: Mapping[tuple[str, str], float] = field(default_factory=dict)

    def charge(
        self,
        holdings: Iterable[Holding],
        capacity: Mapping[str, int],
        since: float,
        now: float,
        half_life: float | None = None,
    ) -> Usage:
        """Decay what is recorded to ``now`` and add what ``holdings`` held from ``since`` to ``now``.

        ``holdings``: everything held during the interval, attempts that ended at ``now``
        included (charge whenever holdings change, before dropping the ended ones): a team whose
        short attempts end between charges uncharged gets more than its share, shift after shift.
        ``since`` is normally the previous charge's ``now`` (``self.at``); a holding admitted later
        is charged from its own ``since``. ``capacity`` is the denominator of shares (see
        ``shares.denominator``); ``half_life`` defaults to this usage's own. A clock that went
        backwards charges nothing.
        """
        half_life = self.half_life if half_life is None else half_life
        if not half_life > 0:
            raise DefinitionError(
                f"usage half-life {half_life!r} must be > 0 seconds; the default is {HALF_LIFE:g}"
            )
        elapsed = max(0.0, now - self.at)
        teams = {name: decay(v, elapsed, half_life) for name, v in self.teams.items()}
        users = {name: decay(v, elapsed, half_life) for name, v in self.users.items()}
        life = mean_life(half_life)
        for h in holdings:
            held = now - max(since, h.since)
            if held <= 0:
                continue
            added = dominant_share(h.amounts, capacity) * life * -math.expm1(-held / life)
            teams[h.team] = teams.get(h.team, 0.0) + added
            users[h.team, h.user] = users.get((h.team, h.user), 0.0) + added
        return Usage(
            at=max(now, self.at),
            half_life=half_life,
            teams={k: v for k, v in teams.items() if v > _FORGET},
            users={k: v for k, v in users.items() if v > _FORGET},
        )

    def team(self, name: str) -> float:
        """The team's decayed usage in dominant share-seconds, as of ``at``."""
        return self.teams.get(name, 0.0)

    def user(self, team: str, user: str) -> float:
        """A user's decayed usage inside ``team``, in dominant share-seconds, as of ``at``."""
        return self.users.get((team, user), 0.0)

    def team_share(self, name: str) -> float:
        """The team's usage as the constant share that would have accumulated it: comparable to
        a current share (0.5 = as if it had held half the cluster all along)."""
        return self.team(name) / mean_life(self.half_life)

    def user_share(self, team: str, user: str) -> float:
        """Like ``team_share``, for one user of a team."""
        return self.user(team, user) / mean_life(self.half_life)
