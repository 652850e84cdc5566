"""Which pending attempts start now, and why the others wait: pure, no clock, no store.

``admit`` is progressive filling (the order DRF and HTCondor's fair share both come down to):
take the team furthest below its share, inside it the user furthest below theirs, inside the user
the highest priority, oldest first; admit that demand if the quotas and the cluster allow it, else
leave it waiting; repeat. Why each one waits is told at the end, from where the round ended.
A team's place is ``(dominant share now + decayed usage) / weight``, so a team that used a lot
lately yields to one that did not, and weights split a contended cluster in their ratio.

Everything that can only shrink in one round (free quota, lendable quota, free capacity, room for
runs) does only shrink, so a demand refused once stays refused this round: each demand is looked
at once (and once more for its reason), teams and users sit in heaps, and a round over n demands
costs O(n log n).

Borrowing (Kueue's cohorts, narrowed): a team past its own limit may use other teams' idle quota,
up to its ``borrow`` limit, but only the idle quota of teams with nothing pending: a team that
wants its quota back lends nothing more. What is borrowed is recorded per admission so that
``conveyor.quotas.preemption`` can give it back when asked.
"""

from __future__ import annotations

import heapq
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass, field

from conveyor.errors import DefinitionError
from conveyor.quotas.model import Demand, Holding, TeamQuota
from conveyor.quotas.shares import denominator
from conveyor.quotas.usage import Usage
from conveyor.quotas.why import BorrowLimit, FairShare, LenderBusy, NoCapacity, QuotaFull, Reason, RunsFull


@dataclass(slots=True)
class Admission:
    """One round's decisions: the admitted demands in admission order, each with the part of its
    amounts that is borrowed (empty: all within the team's own quota), and why each other waits."""

    admitted: list[tuple[Demand, Mapping[str, int]]] = field(default_factory=list)
    waiting: dict[str, Reason] = field(default_factory=dict)


def admit(
    pending: Sequence[Demand],
    holdings: Sequence[Holding],
    quotas: Mapping[str, TeamQuota],
    capacity: Mapping[str, int] | None,
    usage: Usage,
    open_runs: Mapping[str, Collection[str]] = {},
    *,
    limit: int | None = None,
) -> Admission:
    """Decide which of ``pending`` start now, given what ``holdings`` hold.

    ``quotas``: by team name (a team without one is limited by capacity alone, with weight 1).
    ``capacity``: the most of each resource the cluster runs at once (a resource not named is
    unlimited); None when unknown, and shares are then taken of the sum of the teams' limits.
    ``usage``: decayed usage, charged up to now by the caller. ``open_runs``: per team, the ids of
    its unfinished runs that have started (runs of ``holdings`` count as open anyway); a demand
    of any other run opens one. ``limit``: admit at most this many (e.g. free executor slots).
    """
    for name, quota in quotas.items():
        if quota.team != name:
            raise DefinitionError(
                f"the quota of team {quota.team!r} is filed under {name!r}; file it under its team's name"
            )
    state = _Cluster(quotas, capacity, usage, open_runs, holdings, pending)
    out = Admission()
    heap = [(team.place(), team.name) for team in state.teams.values() if team.queued]
    heapq.heapify(heap)
    while heap and (limit is None or len(out.admitted) < limit):
        _, name = heapq.heappop(heap)
        team = state.teams[name]
        user, demand = team.next()
        verdict = state.check(team, demand)
        if isinstance(verdict, dict):
            state.take(team, user, demand, verdict)
            out.admitted.append((demand, verdict))
        team.requeue(user)
        if team.queued:
            heapq.heappush(heap, (team.place(), name))
    # Why the others wait, told from where the round ended (what is said holds until the next
    # round): a demand refused on the way is refused still, one left over by ``limit`` is behind.
    admitted = {d.key for d, _ in out.admitted}
    for demand in pending:
        if demand.key not in admitted:
            team = state.teams[demand.team]
            verdict = state.check(team, demand)
            out.waiting[demand.key] = state.behind(team) if isinstance(verdict, dict) else verdict
    return out


class _User:
    """A user of a team during one round: what they hold, and their demands in order."""

    __slots__ = ("held", "name", "next", "queue", "share", "usage", "weight")

    def __init__(self, name: str, weight: float, usage: float) -> None:
        self.name = name
        self.weight = weight
        self.usage = usage
        self.held: dict[str, int] = {}
        self.share = 0.0
        self.queue: list[Demand] = []
        self.next = 0

    def place(self) -> float:
        return (self.share + self.usage) / self.weight


class _Team:
    """A team during one round: what it holds (and of that, borrows), its open runs, its users."""

    __slots__ = (
        "borrowed",
        "busy",
        "held",
        "name",
        "queue",
        "queued",
        "quota",
        "runs",
        "share",
        "usage",
        "users",
        "uses",
    )

    def __init__(self, quota: TeamQuota, usage: float, runs: Collection[str]) -> None:
        self.name = quota.team
        self.quota = quota
        self.usage = usage
        self.held: dict[str, int] = {}
        self.borrowed: dict[str, int] = {}
        self.share = 0.0
        self.runs = set(runs)
        #: (run id, amounts) of everything the team holds: which runs fill its quota.
        self.uses: list[tuple[str, Mapping[str, int]]] = []
        self.users: dict[str, _User] = {}
        self.queue: list[tuple[float, str]] = []  # users with demands left, by place
        self.queued = 0  # demands not yet decided
        self.busy = False  # has pending demands: lends nothing

    def place(self) -> float:
        return (self.share + self.usage) / self.quota.weight

    def user(self, name: str, usage: Usage) -> _User:
        found = self.users.get(name)
        if found is None:
            weight = self.quota.users.get(name, 1.0)
            found = self.users[name] = _User(name, weight, usage.user_share(self.name, name))
        return found

    def next(self) -> tuple[_User, Demand]:
        """The user furthest below their share, and their first demand (taken off the queue)."""
        _, name = heapq.heappop(self.queue)
        user = self.users[name]
        demand = user.queue[user.next]
        user.next += 1
        self.queued -= 1
        return user, demand

    def requeue(self, user: _User) -> None:
        if user.next < len(user.queue):
            heapq.heappush(self.queue, (user.place(), user.name))

    def own(self, resource: str) -> int:
        """How much of its own quota of ``resource`` the team holds (the rest is borrowed)."""
        return self.held.get(resource, 0) - self.borrowed.get(resource, 0)

    def idle(self, resource: str) -> int:
        limit = self.quota.limits.get(resource)
        return 0 if limit is None else max(0, limit - self.own(resource))


class _Cluster:
    """The whole cluster during one round: every team's state, what is free, what is lendable."""

    def __init__(
        self,
        quotas: Mapping[str, TeamQuota],
        capacity: Mapping[str, int] | None,
        usage: Usage,
        open_runs: Mapping[str, Collection[str]],
        holdings: Sequence[Holding],
        pending: Sequence[Demand],
    ) -> None:
        self.capacity = capacity or {}
        self.whole = denominator(capacity, quotas.values())
        self.usage = usage
        self.used: dict[str, int] = {}
        self.teams: dict[str, _Team] = {}
        for name, quota in quotas.items():
            self.teams[name] = _Team(quota, usage.team_share(name), open_runs.get(name, ()))
        for h in holdings:
            team = self.team(h.team, open_runs)
            self.hold(team, team.user(h.user, usage), h.run_id, h.amounts, h.borrowed)
        for d in pending:
            team = self.team(d.team, open_runs)
            user = team.user(d.user, usage)
            user.queue.append(d)
            team.busy = True
            team.queued += 1
        for team in self.teams.values():
            for user in team.users.values():
                if user.queue:
                    user.queue.sort(key=_order)
                    team.queue.append((user.place(), user.name))
            heapq.heapify(team.queue)
        # Idle quota of teams with nothing pending, less what is borrowed already (from whom is
        # not recorded, so it is taken to sit on the lenders' quota: never over-lend), and idle
        # quota of teams with pending work (only to say why borrowing failed).
        self.lendable: dict[str, int] = {}
        self.hoarded: dict[str, int] = {}
        for team in self.teams.values():
            pool = self.hoarded if team.busy else self.lendable
            for resource in team.quota.limits:
                pool[resource] = pool.get(resource, 0) + team.idle(resource)
            for resource, amount in team.borrowed.items():
                self.lendable[resource] = self.lendable.get(resource, 0) - amount
        weights = sum(t.quota.weight for t in self.teams.values() if t.busy or t.held)
        self.targets = {name: t.quota.weight / weights for name, t in self.teams.items() if t.busy or t.held}
        self._runs: dict[tuple[str, str, int], tuple[str, ...]] = {}

    def team(self, name: str, open_runs: Mapping[str, Collection[str]]) -> _Team:
        found = self.teams.get(name)
        if found is None:
            runs = open_runs.get(name, ())
            found = self.teams[name] = _Team(TeamQuota(name), self.usage.team_share(name), runs)
        return found

    def hold(
        self, team: _Team, user: _User, run_id: str, amounts: Mapping[str, int], borrowed: Mapping[str, int]
    ) -> None:
        whole = self.whole
        for resource, amount in amounts.items():
            if amount <= 0:
                continue
            held = team.held[resource] = team.held.get(resource, 0) + amount
            mine = user.held[resource] = user.held.get(resource, 0) + amount
            self.used[resource] = self.used.get(resource, 0) + amount
            total = whole.get(resource)
            if total:
                team.share = max(team.share, held / total)
                user.share = max(user.share, mine / total)
        for resource, amount in borrowed.items():
            team.borrowed[resource] = team.borrowed.get(resource, 0) + amount
        team.runs.add(run_id)
        team.uses.append((run_id, amounts))

    def check(self, team: _Team, demand: Demand) -> Reason | dict[str, int]:
        """What of ``demand`` would be borrowed if it were admitted now, or why it cannot be."""
        quota = team.quota
        if quota.runs is not None and demand.run_id not in team.runs and len(team.runs) >= quota.runs:
            return RunsFull(team.name, len(team.runs), quota.runs)
        borrowed: dict[str, int] = {}
        for resource, amount in demand.amounts.items():
            limit = quota.limits.get(resource)
            if limit is None or amount <= 0:
                continue
            idle = team.idle(resource)
            if amount <= idle:
                continue
            need = amount - idle
            allowed = quota.borrow.get(resource, 0)
            if not allowed:
                return QuotaFull(team.name, resource, team.own(resource), limit, self.runs(team, resource))
            already = team.borrowed.get(resource, 0)
            if already + need > allowed:
                return BorrowLimit(team.name, resource, already, allowed)
            if need > self.lendable.get(resource, 0):
                if self.hoarded.get(resource, 0) - idle > 0:
                    return LenderBusy(team.name, resource)
                return QuotaFull(team.name, resource, team.own(resource), limit, self.runs(team, resource))
            borrowed[resource] = need
        for resource, amount in demand.amounts.items():
            most = self.capacity.get(resource)
            used = self.used.get(resource, 0)
            if most is not None and amount > 0 and used + amount > most:
                target = self.targets[team.name]
                if team.share > target or team.usage > target:
                    return self.behind(team)
                return NoCapacity(resource, used, most)
        return borrowed

    def take(self, team: _Team, user: _User, demand: Demand, borrowed: Mapping[str, int]) -> None:
        for resource, amount in demand.amounts.items():  # the team is busy: its idle quota is hoarded
            if resource in team.quota.limits and amount > 0:
                self.hoarded[resource] -= amount - borrowed.get(resource, 0)
        for resource, amount in borrowed.items():
            self.lendable[resource] -= amount
        self.hold(team, user, demand.run_id, demand.amounts, borrowed)

    def behind(self, team: _Team) -> FairShare:
        """The reason of a demand that waits while other teams, further below their share, go first."""
        return FairShare(team.name, team.share, self.targets[team.name], team.usage)

    def runs(self, team: _Team, resource: str) -> tuple[str, ...]:
        """The team's runs that hold some of ``resource`` (cached: many demands wait on one)."""
        key = (team.name, resource, team.held.get(resource, 0))
        found = self._runs.get(key)
        if found is None:
            found = self._runs[key] = tuple(sorted({r for r, a in team.uses if a.get(resource, 0) > 0}))
        return found


def _order(demand: Demand) -> tuple[int, float, str]:
    """A user's own order: highest priority first, then oldest, then by key (stable)."""
    return (-demand.priority, demand.since, demand.key)
