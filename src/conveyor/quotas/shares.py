"""Dominant resource shares (DRF): how much of the cluster an amount of mixed resources is.

A team holding 30% of the cpus and 10% of the memory holds a 30% share: its dominant resource is
what limits everyone else, so fairness compares teams by it (Ghodsi et al., "Dominant Resource
Fairness", NSDI 2011). Shares are measured against a denominator per resource: the cluster's
capacity when it is known, else the sum of the teams' limits (the quotas then are the cluster).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from conveyor.quotas.model import TeamQuota


def denominator(capacity: Mapping[str, int] | None, quotas: Iterable[TeamQuota]) -> dict[str, int]:
    """Per resource, the whole that shares are a part of. A resource with no capacity and no
    team limit has no denominator: it counts in no share (there is no "all of it")."""
    if capacity is not None:
        return {name: amount for name, amount in capacity.items() if amount > 0}
    total: dict[str, int] = {}
    for quota in quotas:
        for name, amount in quota.limits.items():
            total[name] = total.get(name, 0) + amount
    return {name: amount for name, amount in total.items() if amount > 0}


def dominant_share(amounts: Mapping[str, int], whole: Mapping[str, int]) -> float:
    """The largest fraction of ``whole`` that ``amounts`` takes of any one resource."""
    share = 0.0
    for name, amount in amounts.items():
        total = whole.get(name)
        if total and amount > 0:
            share = max(share, amount / total)
    return share
