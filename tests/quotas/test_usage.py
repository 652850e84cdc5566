"""Decayed usage: past use counts less the older it is, halving every half-life."""

from __future__ import annotations

import pytest

from conveyor.errors import DefinitionError
from conveyor.quotas import HALF_LIFE, Holding, Usage, decay

CLUSTER = {"cpu": 10, "memory": 100}


def holding(team: str, cpu: int, user: str = "ann", since: float = 0.0, memory: int = 0) -> Holding:
    return Holding(
        f"{team}/{user}/{cpu}/{since}", team, user, "r", {"cpu": cpu, "memory": memory}, since=since
    )


@pytest.mark.parametrize(("elapsed", "left"), [(0.0, 8.0), (3600.0, 4.0), (7200.0, 2.0), (-5.0, 8.0)])
def test_usage_halves_every_half_life(elapsed: float, left: float) -> None:
    assert decay(8.0, elapsed, 3600.0) == pytest.approx(left)


def test_the_default_half_life_is_an_hour() -> None:
    assert Usage().half_life == HALF_LIFE == 3600.0


def test_holding_half_the_cluster_for_long_counts_as_a_half_share() -> None:
    usage = Usage().charge([holding("a", 5)], CLUSTER, 0.0, 30 * HALF_LIFE)
    assert usage.team_share("a") == pytest.approx(0.5)
    assert usage.team_share("b") == 0.0


def test_one_half_life_of_the_whole_cluster_is_half_of_what_for_ever_would_be() -> None:
    usage = Usage().charge([holding("a", 10)], CLUSTER, 0.0, HALF_LIFE)
    assert usage.team_share("a") == pytest.approx(0.5)


def test_charging_in_steps_equals_charging_at_once() -> None:
    held = [holding("a", 3), holding("b", 1, memory=60)]
    once = Usage().charge(held, CLUSTER, 0.0, 5000.0)
    steps = Usage()
    for now in range(100, 5001, 100):
        steps = steps.charge(held, CLUSTER, now - 100.0, float(now))
    assert steps.team("a") == pytest.approx(once.team("a"))
    assert steps.team("b") == pytest.approx(once.team("b"))


def test_usage_is_measured_by_the_dominant_resource() -> None:
    usage = Usage().charge([holding("a", 1, memory=60)], CLUSTER, 0.0, 100.0)
    assert usage.team("a") == pytest.approx(0.6 * 100, rel=0.01)  # memory 60% dominates cpu 10%


def test_yesterdays_usage_decays_to_almost_nothing_by_today() -> None:
    busy = Usage().charge([holding("a", 10)], CLUSTER, 0.0, 8 * 3600.0)
    today = busy.charge([], CLUSTER, 8 * 3600.0, 32 * 3600.0)
    assert busy.team_share("a") > 0.99
    assert today.team_share("a") < 1e-6
    assert today.at == 32 * 3600.0


def test_a_holding_admitted_during_the_interval_is_charged_from_its_own_start() -> None:
    usage = Usage().charge([holding("a", 10, since=90.0)], CLUSTER, 0.0, 100.0)
    assert usage.team("a") == pytest.approx(10.0, rel=0.01)


def test_users_are_charged_inside_their_team() -> None:
    usage = Usage().charge([holding("a", 2, "ann"), holding("a", 4, "bob")], CLUSTER, 0.0, 60.0)
    assert usage.user("a", "ann") < usage.user("a", "bob")
    assert usage.user("a", "ann") + usage.user("a", "bob") == pytest.approx(usage.team("a"))
    assert usage.user("b", "ann") == 0.0
    assert usage.user_share("a", "bob") == pytest.approx(2 * usage.user_share("a", "ann"))


def test_charge_returns_a_new_usage_and_leaves_the_old_one_alone() -> None:
    before = Usage()
    after = before.charge([holding("a", 5)], CLUSTER, 0.0, 60.0)
    assert before.team("a") == 0.0
    assert after.team("a") > 0.0


def test_a_clock_that_went_backwards_charges_nothing_and_keeps_its_time() -> None:
    usage = Usage().charge([holding("a", 5)], CLUSTER, 0.0, 100.0)
    again = usage.charge([holding("a", 5)], CLUSTER, 100.0, 50.0)
    assert again.team("a") == usage.team("a")
    assert again.at == 100.0


def test_a_longer_half_life_remembers_longer() -> None:
    short = Usage(half_life=60.0).charge([holding("a", 10)], CLUSTER, 0.0, 600.0)
    long = Usage(half_life=6000.0).charge([holding("a", 10)], CLUSTER, 0.0, 600.0)
    later = 1200.0
    assert short.charge([], CLUSTER, 600.0, later).team_share("a") < long.charge(
        [], CLUSTER, 600.0, later
    ).team_share("a")


@pytest.mark.parametrize("half_life", [0.0, -60.0])
def test_a_half_life_that_is_not_positive_is_refused(half_life: float) -> None:
    with pytest.raises(DefinitionError, match="half-life"):
        Usage().charge([], CLUSTER, 0.0, 1.0, half_life)
