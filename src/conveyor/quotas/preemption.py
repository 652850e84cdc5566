"""Giving borrowed quota back: which running attempts to stop so a lender gets its quota again.

Admission never stops anything that runs: a lender whose idle quota was borrowed and who now has
work of its own waits until the borrowers' attempts end. That is the default. A caller that prefers
quota to come back sooner (long attempts, an impatient lender) asks ``preempt`` which holdings to
stop once the lender has waited ``grace`` seconds; what it returns is a suggestion, and stopping
those attempts (and retrying them, blamelessly) is the caller's business.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

from conveyor.quotas.model import Demand, Holding, TeamQuota


def preempt(
    holdings: Sequence[Holding],
    pending: Sequence[Demand],
    quotas: Mapping[str, TeamQuota],
    now: float,
    grace: float,
    borrowed_since: Mapping[str, float] = {},
) -> list[str]:
    """Keys of holdings running on borrowed quota to stop, newest first, so that lenders who have
    waited more than ``grace`` seconds get their quota back.

    ``pending``: the demands that wait for room (pass those whose reason is ``NoCapacity`` or
    ``FairShare``; one that waits for its team's runs limit gains nothing from preemption).
    A lender has waited since ``borrowed_since[team]`` when the caller recorded it, else since
    its oldest pending demand. Only the part of the borrowed amounts that cannot move onto the
    idle quota of teams with nothing pending is reclaimed, and no more than the lenders' pending
    work needs; the newest borrowers go first (they lose the least work).
    """
    own: dict[str, dict[str, int]] = {}
    borrowed: dict[str, int] = {}
    for h in holdings:
        mine = own.setdefault(h.team, {})
        for resource, amount in h.amounts.items():
            mine[resource] = mine.get(resource, 0) + amount - h.borrowed.get(resource, 0)
        for resource, amount in h.borrowed.items():
            borrowed[resource] = borrowed.get(resource, 0) + amount
    if not any(borrowed.values()):
        return []
    waiting: dict[str, list[Demand]] = {}
    for d in pending:
        waiting.setdefault(d.team, []).append(d)

    def idle(quota: TeamQuota, resource: str) -> int:
        return max(0, quota.limits[resource] - own.get(quota.team, {}).get(resource, 0))

    free: dict[str, int] = {}  # idle quota of teams with nothing pending: borrowing may sit there
    owed: dict[str, int] = {}  # what lenders that waited too long would use of their own quota
    for name, quota in quotas.items():
        demands = waiting.get(name)
        if not demands:
            for resource in quota.limits:
                free[resource] = free.get(resource, 0) + idle(quota, resource)
            continue
        start = borrowed_since.get(name, min(d.since for d in demands))
        if now - start <= grace:
            continue
        for resource in quota.limits:
            wanted = sum(d.amounts.get(resource, 0) for d in demands)
            owed[resource] = owed.get(resource, 0) + min(idle(quota, resource), wanted)
    # Borrowing that fits on the idle quota of teams with nothing pending takes nobody's quota.
    stuck = {resource: amount - free.get(resource, 0) for resource, amount in borrowed.items()}
    reclaim = {resource: min(amount, stuck.get(resource, 0)) for resource, amount in owed.items()}
    stop: list[str] = []
    for h in sorted(holdings, key=lambda h: (-h.since, h.key)):
        if not any(reclaim.get(resource, 0) > 0 for resource, amount in h.borrowed.items() if amount > 0):
            continue
        stop.append(h.key)
        for resource, amount in h.borrowed.items():
            if resource in reclaim:
                reclaim[resource] -= amount
        if not any(left > 0 for left in reclaim.values()):
            break
    return stop
