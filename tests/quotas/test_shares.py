"""Dominant shares: a demand is as big as its largest part of the cluster."""

from __future__ import annotations

from conveyor.quotas import TeamQuota, denominator, dominant_share


def test_the_dominant_resource_decides_the_share() -> None:
    whole = {"cpu": 10, "memory": 100}
    assert dominant_share({"cpu": 1, "memory": 60}, whole) == 0.6
    assert dominant_share({"cpu": 5, "memory": 10}, whole) == 0.5


def test_a_resource_without_a_whole_counts_in_no_share() -> None:
    assert dominant_share({"cpu": 1, "licence": 5}, {"cpu": 4}) == 0.25
    assert dominant_share({"gpu": 1}, {"cpu": 4, "gpu": 0}) == 0.0


def test_the_whole_is_the_capacity_when_known_else_the_sum_of_the_limits() -> None:
    quotas = [TeamQuota("a", {"cpu": 8, "gpu": 1}), TeamQuota("b", {"cpu": 4}), TeamQuota("c")]
    assert denominator({"cpu": 64, "gpu": 0}, quotas) == {"cpu": 64}
    assert denominator(None, quotas) == {"cpu": 12, "gpu": 1}
