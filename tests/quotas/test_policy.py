"""The admission policy: quotas, borrowing, runs limits, capacity and weighted fair share, as a team
would notice them. Pure: every test builds demands and holdings and asks ``admit``."""

from __future__ import annotations

import random
import time
from collections import Counter
from collections.abc import Mapping, Sequence

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from conveyor.errors import DefinitionError
from conveyor.quotas import (
    Admission,
    BorrowLimit,
    Demand,
    FairShare,
    Holding,
    LenderBusy,
    NoCapacity,
    QuotaFull,
    RunsFull,
    TeamQuota,
    Usage,
    admit,
    denominator,
    preempt,
)
from conveyor.resources import Resources

GiB = 2**30
NO_USAGE = Usage()


def cpu(n: int, memory: int = 0) -> dict[str, int]:
    """A task's resources, in the shape the scheduler hands over (``Resources.as_dict()``)."""
    return Resources(cpu=n, memory=memory).as_dict()


def demands(
    team: str,
    n: int,
    amounts: Mapping[str, int] | None = None,
    *,
    user: str = "ann",
    run: str = "",
    priority: int = 0,
    since: float = 0.0,
) -> list[Demand]:
    """``n`` demands of one user of ``team``, one a second from ``since``, keyed team/user/i."""
    return [
        Demand(f"{team}/{user}/{i}", team, user, run or f"{team}-run", amounts or cpu(1), priority, since + i)
        for i in range(n)
    ]


def holding(
    key: str,
    team: str,
    amounts: Mapping[str, int],
    *,
    user: str = "ann",
    run: str = "",
    borrowed: Mapping[str, int] | None = None,
    since: float = 0.0,
) -> Holding:
    return Holding(key, team, user, run or f"{team}-run", amounts, borrowed or {}, since)


def teams_of(out: Admission) -> Counter[str]:
    return Counter(d.team for d, _ in out.admitted)


def quotas(*qs: TeamQuota) -> dict[str, TeamQuota]:
    return {q.team: q for q in qs}


# -- a team's own quota ----------------------------------------------------------------------------


def test_a_team_at_its_quota_waits_and_is_told_which_runs_fill_it() -> None:
    held = [holding(f"h{i}", "a", cpu(4), run=run) for i, run in enumerate(["20260101-a", "20260101-b"])]
    out = admit(demands("a", 1), held, quotas(TeamQuota("a", {"cpu": 8})), None, NO_USAGE)
    assert out.admitted == []
    reason = out.waiting["a/ann/0"]
    assert reason == QuotaFull("a", "cpu", 8, 8, ("20260101-a", "20260101-b"))
    assert reason.text() == "team quota: cpu 8 of 8 in use by team a (runs 20260101-a, 20260101-b)"


def test_a_team_fills_its_quota_and_no_further() -> None:
    out = admit(demands("a", 10, cpu(3)), [], quotas(TeamQuota("a", {"cpu": 8})), None, NO_USAGE)
    assert [d.key for d, _ in out.admitted] == ["a/ann/0", "a/ann/1"]
    assert all(borrowed == {} for _, borrowed in out.admitted)
    assert out.waiting["a/ann/2"].text() == "team quota: cpu 6 of 8 in use by team a (runs a-run)"
    assert len(out.waiting) == 8


def test_a_memory_quota_speaks_in_gib() -> None:
    held = [holding("h", "a", cpu(1, memory=6 * GiB))]
    out = admit(
        demands("a", 1, cpu(1, 4 * GiB)), held, quotas(TeamQuota("a", {"memory": 8 * GiB})), None, NO_USAGE
    )
    assert out.waiting["a/ann/0"].text() == "team quota: memory 6GiB of 8GiB in use by team a (runs a-run)"


def test_a_resource_the_quota_does_not_name_is_unlimited() -> None:
    out = admit(
        demands("a", 5, {"cpu": 1, "gpu": 4}), [], quotas(TeamQuota("a", {"cpu": 10})), None, NO_USAGE
    )
    assert len(out.admitted) == 5


def test_a_team_without_a_quota_is_limited_by_capacity_alone() -> None:
    out = admit(demands("x", 6), [], {}, {"cpu": 4}, NO_USAGE)
    assert len(out.admitted) == 4
    assert out.waiting["x/ann/4"] == NoCapacity("cpu", 4, 4)


def test_a_quota_filed_under_another_team_is_refused() -> None:
    with pytest.raises(DefinitionError, match="filed under 'b'"):
        admit([], [], {"b": TeamQuota("a")}, None, NO_USAGE)


# -- borrowing -------------------------------------------------------------------------------------


def test_a_team_borrows_idle_quota_of_a_team_with_nothing_pending() -> None:
    qs = quotas(TeamQuota("a", {"cpu": 4}, borrow={"cpu": 4}), TeamQuota("b", {"cpu": 4}))
    out = admit(demands("a", 10), [], qs, None, NO_USAGE)
    assert len(out.admitted) == 8
    assert [borrowed for _, borrowed in out.admitted] == [{}] * 4 + [{"cpu": 1}] * 4
    assert out.waiting["a/ann/8"] == BorrowLimit("a", "cpu", 4, 4)
    assert (
        out.waiting["a/ann/8"].text() == "borrow limit: team a borrows cpu 4 of the 4 it may beyond its quota"
    )


def test_a_demand_partly_within_quota_borrows_only_the_rest() -> None:
    qs = quotas(TeamQuota("a", {"cpu": 4}, borrow={"cpu": 4}), TeamQuota("b", {"cpu": 4}))
    out = admit(demands("a", 2, cpu(3)), [], qs, None, NO_USAGE)
    assert [borrowed for _, borrowed in out.admitted] == [{}, {"cpu": 2}]


def test_a_team_with_pending_work_lends_nothing() -> None:
    qs = quotas(TeamQuota("a", {"cpu": 4}, borrow={"cpu": 4}), TeamQuota("b", {"cpu": 4}, runs=0))
    # b's one demand cannot even start (no runs allowed), yet b wants its quota: it lends none.
    out = admit([*demands("a", 6), *demands("b", 1)], [], qs, None, NO_USAGE)
    assert teams_of(out) == {"a": 4}
    assert out.waiting["a/ann/4"] == LenderBusy("a", "cpu")
    assert out.waiting["a/ann/4"].text().endswith("the teams with idle cpu have pending work of their own")


def test_borrowing_stops_once_the_lender_has_pending_work() -> None:
    qs = quotas(TeamQuota("a", {"cpu": 4}, borrow={"cpu": 4}), TeamQuota("b", {"cpu": 4}))
    first = admit(demands("a", 6), [], qs, None, NO_USAGE)
    held = [holding(d.key, d.team, d.amounts, borrowed=b) for d, b in first.admitted]
    assert sum(b.get("cpu", 0) for _, b in first.admitted) == 2
    # Now b has work: a borrows no more, and b gets its own quota back as a's borrowing ends.
    later = [Demand(f"a/ann/{i}", "a", "ann", "a-run", cpu(1), since=float(i)) for i in range(6, 9)]
    second = admit([*later, *demands("b", 4)], held, qs, {"cpu": 8}, NO_USAGE)
    assert teams_of(second) == {"b": 2}
    assert isinstance(second.waiting["a/ann/6"], LenderBusy)
    assert second.waiting["b/ann/2"] == NoCapacity("cpu", 8, 8)


def test_only_teams_with_nothing_pending_lend_whatever_the_resource() -> None:
    qs = quotas(
        TeamQuota("a", {"cpu": 4, "gpu": 1}, borrow={"gpu": 2}),
        TeamQuota("b", {"cpu": 2, "gpu": 1}),
        TeamQuota("c", {"cpu": 2, "gpu": 1}),
    )
    # b wants cpu only, yet lends no gpu: a team with pending work keeps its quota.
    pending = [*demands("a", 3, {"cpu": 1, "gpu": 1}), *demands("b", 1, {"cpu": 1})]
    out = admit(pending, [], qs, None, NO_USAGE)
    assert [b for d, b in out.admitted if d.team == "a"] == [{}, {"gpu": 1}]  # c's idle gpu
    assert out.waiting["a/ann/2"] == LenderBusy("a", "gpu")


def test_a_team_without_a_borrow_limit_for_a_resource_never_borrows_it() -> None:
    qs = quotas(TeamQuota("a", {"cpu": 2, "memory": GiB}, borrow={"memory": GiB}), TeamQuota("b", {"cpu": 8}))
    out = admit(demands("a", 3), [], qs, None, NO_USAGE)
    assert len(out.admitted) == 2
    assert isinstance(out.waiting["a/ann/2"], QuotaFull)


def test_borrowing_never_goes_beyond_the_cluster() -> None:
    qs = quotas(TeamQuota("a", {"cpu": 4}, borrow={"cpu": 4}), TeamQuota("b", {"cpu": 4}))
    out = admit(demands("a", 8), [], qs, {"cpu": 6}, NO_USAGE)
    assert len(out.admitted) == 6
    assert out.waiting["a/ann/6"] == NoCapacity("cpu", 6, 6)
    assert out.waiting["a/ann/6"].text() == "cluster full: cpu 6 of 6 in use"


def test_borrowed_quota_already_in_use_is_not_lent_twice() -> None:
    qs = quotas(
        TeamQuota("a", {"cpu": 2}, borrow={"cpu": 8}),
        TeamQuota("b", {"cpu": 2}, borrow={"cpu": 8}),
        TeamQuota("c", {"cpu": 4}),
    )
    held = [holding("h", "a", cpu(5), borrowed={"cpu": 3})]
    out = admit(demands("b", 8), held, qs, None, NO_USAGE)
    assert len(out.admitted) == 3  # b's own 2, and the 1 cpu of c's quota a does not hold already
    assert isinstance(out.waiting["b/ann/3"], QuotaFull)


# -- runs ------------------------------------------------------------------------------------------


def test_a_team_at_its_runs_limit_starts_no_new_run_but_continues_open_ones() -> None:
    pending = [
        *demands("a", 2, run="r1"),
        *[Demand(f"a/{run}", "a", "ann", run, cpu(1), since=10.0) for run in ("r2", "r3")],
    ]
    out = admit(pending, [], quotas(TeamQuota("a", runs=2)), None, NO_USAGE, {"a": {"r1"}})
    assert sorted(d.key for d, _ in out.admitted) == ["a/ann/0", "a/ann/1", "a/r2"]
    assert out.waiting["a/r3"] == RunsFull("a", 2, 2)
    assert (
        out.waiting["a/r3"].text()
        == "team quota: 2 of 2 runs of team a open; this run starts when one of them ends"
    )


def test_an_open_run_that_holds_nothing_right_now_is_not_a_new_run() -> None:
    qs = quotas(TeamQuota("a", runs=2))
    out = admit(
        [*demands("a", 1, run="r1"), *demands("a", 1, run="r2", user="bob")],
        [],
        qs,
        None,
        NO_USAGE,
        {"a": ["r1", "r2"]},
    )
    assert len(out.admitted) == 2


def test_runs_of_holdings_count_as_open() -> None:
    held = [holding("h", "a", cpu(1), run="r1")]
    pending = [*demands("a", 1, run="r1"), *demands("a", 1, run="r2", user="bob")]
    out = admit(pending, held, quotas(TeamQuota("a", runs=1)), None, NO_USAGE)
    assert [d.run_id for d, _ in out.admitted] == ["r1"]
    assert isinstance(out.waiting["a/bob/0"], RunsFull)


# -- capacity and the order of admission -----------------------------------------------------------


def test_limit_admits_at_most_that_many_and_says_why_the_rest_wait() -> None:
    qs = quotas(TeamQuota("a", {"cpu": 2}), TeamQuota("b"))
    out = admit([*demands("a", 4), *demands("b", 4)], [], qs, None, NO_USAGE, limit=3)
    assert len(out.admitted) == 3
    assert len(out.waiting) == 5
    assert isinstance(out.waiting["a/ann/3"], QuotaFull)
    assert isinstance(out.waiting["b/ann/3"], FairShare)


def test_priority_orders_a_users_demands_then_the_oldest_first() -> None:
    pending = [
        Demand("low", "a", "ann", "r", cpu(1), priority=0, since=1.0),
        Demand("high", "a", "ann", "r", cpu(1), priority=5, since=3.0),
        Demand("mid-new", "a", "ann", "r", cpu(1), priority=1, since=9.0),
        Demand("mid-old", "a", "ann", "r", cpu(1), priority=1, since=2.0),
    ]
    out = admit(pending, [], {}, {"cpu": 3}, NO_USAGE)
    assert [d.key for d, _ in out.admitted] == ["high", "mid-old", "mid-new"]


def test_priority_never_moves_a_team_ahead_of_another() -> None:
    pending = [*demands("a", 4, priority=100), *demands("b", 4)]
    out = admit(pending, [], {}, {"cpu": 4}, NO_USAGE)
    assert teams_of(out) == {"a": 2, "b": 2}


def test_users_inside_a_team_share_by_their_weights() -> None:
    qs = quotas(TeamQuota("a", users={"ann": 3.0}))
    out = admit([*demands("a", 20, user="ann"), *demands("a", 20, user="bob")], [], qs, {"cpu": 8}, NO_USAGE)
    assert Counter(d.user for d, _ in out.admitted) == {"ann": 6, "bob": 2}


def test_weights_split_one_round_of_a_contended_cluster() -> None:
    qs = quotas(TeamQuota("a"), TeamQuota("b"), TeamQuota("c", weight=2.0))
    out = admit([*demands("a", 50), *demands("b", 50), *demands("c", 50)], [], qs, {"cpu": 40}, NO_USAGE)
    assert teams_of(out) == {"a": 10, "b": 10, "c": 20}


def test_a_team_over_its_share_waits_for_fair_share() -> None:
    held = [holding(f"h{i}", "a", cpu(1)) for i in range(30)]
    out = admit([*demands("a", 20), *demands("b", 20)], held, {}, {"cpu": 40}, NO_USAGE)
    assert teams_of(out) == {"b": 10}
    reason = out.waiting["a/ann/0"]
    assert reason == FairShare("a", 0.75, 0.5, 0.0)
    assert reason.text() == "fair share: team a uses 75% of the cluster, its share is 50%"


def test_a_team_under_its_share_waiting_for_room_hears_the_cluster_is_full() -> None:
    held = [holding(f"h{i}", "a", cpu(1)) for i in range(8)]
    out = admit(demands("b", 1), held, {}, {"cpu": 8}, NO_USAGE)
    assert out.waiting["b/ann/0"] == NoCapacity("cpu", 8, 8)


def test_drf_gives_a_cpu_heavy_and_a_memory_heavy_team_equal_dominant_shares() -> None:
    """The example of the DRF paper: 9 cpus, 18 GiB; A's tasks take <1 cpu, 4 GiB>, B's <3 cpus,
    1 GiB>. DRF runs 3 of A's (2/3 of the memory) and 2 of B's (2/3 of the cpus)."""
    capacity = {"cpu": 9, "memory": 18 * GiB}
    pending = [*demands("A", 10, cpu(1, 4 * GiB)), *demands("B", 10, cpu(3, GiB))]
    out = admit(pending, [], {}, capacity, NO_USAGE)
    assert teams_of(out) == {"A": 3, "B": 2}
    assert isinstance(out.waiting["A/ann/3"], FairShare | NoCapacity)


def test_without_capacity_shares_are_of_the_sum_of_the_limits() -> None:
    qs = quotas(TeamQuota("a", {"cpu": 30}), TeamQuota("b", {"cpu": 10}))
    assert denominator(None, qs.values()) == {"cpu": 40}
    held = [holding(f"h{i}", "a", cpu(1)) for i in range(20)]
    out = admit([*demands("a", 5), *demands("b", 5)], held, qs, None, NO_USAGE, limit=5)
    # a holds half of the 40 cpus the quotas make; b holds none: all of this round goes to b.
    assert teams_of(out) == {"b": 5}


# -- decayed usage ---------------------------------------------------------------------------------

DAY = 86400.0


def used_all_night(ended_ago: float, hours: float, half_life: float) -> Usage:
    """Team a held the whole 10-cpu cluster for ``hours`` ending ``ended_ago`` seconds before now."""
    now = 100 * DAY
    start, end = now - ended_ago - hours * 3600, now - ended_ago
    night = [holding(f"h{i}", "a", cpu(1), since=start) for i in range(10)]
    usage = Usage(at=start, half_life=half_life).charge(night, {"cpu": 10}, start, end)
    return usage.charge([], {"cpu": 10}, end, now)


def test_a_team_that_used_the_cluster_yesterday_yields_today() -> None:
    usage = used_all_night(ended_ago=12 * 3600, hours=8, half_life=DAY)
    out = admit([*demands("a", 10), *demands("b", 10)], [], {}, {"cpu": 10}, usage)
    assert teams_of(out) == {"a": 4, "b": 6}


def test_usage_long_past_is_forgotten() -> None:
    usage = used_all_night(ended_ago=2 * DAY, hours=8, half_life=3600)
    out = admit([*demands("a", 10), *demands("b", 10)], [], {}, {"cpu": 10}, usage)
    assert teams_of(out) == {"a": 5, "b": 5}


def test_a_team_that_just_used_the_whole_cluster_for_two_hours_lets_the_other_go_first() -> None:
    usage = used_all_night(ended_ago=0, hours=2, half_life=3600)
    assert usage.team_share("a") == pytest.approx(0.75)
    out = admit([*demands("a", 10), *demands("b", 10)], [], {}, {"cpu": 10}, usage)
    assert teams_of(out) == {"a": 1, "b": 9}
    assert (
        out.waiting["a/ann/1"].text()
        == "fair share: team a uses 10% of the cluster, lately 75%, its share is 50%"
    )


# -- fair share over time --------------------------------------------------------------------------


def simulate(
    qs: Mapping[str, TeamQuota], lengths: Mapping[str, int], capacity: int, ticks: int, depth: int
) -> dict[str, float]:
    """Saturating demand, fixed task lengths: each tick, usage is charged, attempts that are done
    end and ``admit`` fills the room from ``depth`` demands per team. Returns each team's mean
    share of the cluster."""
    usage = Usage(half_life=60.0)
    held: list[tuple[int, Holding]] = []  # (end tick, holding)
    made = Counter[str]()
    share = Counter[str]()
    whole = {"cpu": capacity}
    warm = ticks // 10
    for t in range(ticks):
        usage = usage.charge([h for _, h in held], whole, t - 1, t)  # what ran during the last tick
        held = [(end, h) for end, h in held if end > t]
        pending = [
            Demand(f"{team}/{i}", team, "u", "r", {"cpu": 1}, since=float(i))
            for team in qs
            for i in range(made[team], made[team] + depth)
        ]
        out = admit(pending, [h for _, h in held], qs, whole, usage)
        for d, borrowed in out.admitted:
            made[d.team] += 1
            held.append(
                (t + lengths[d.team], Holding(d.key, d.team, d.user, d.run_id, d.amounts, borrowed, t))
            )
        if t >= warm:
            for _, h in held:
                share[h.team] += h.amounts["cpu"] / capacity
    return {team: share[team] / (ticks - warm) for team in qs}


def test_weights_one_one_two_converge_to_a_quarter_a_quarter_and_a_half() -> None:
    qs = quotas(TeamQuota("a"), TeamQuota("b"), TeamQuota("c", weight=2.0))
    measured = simulate(qs, {"a": 3, "b": 7, "c": 5}, capacity=30, ticks=600, depth=30)
    for team, target in {"a": 0.25, "b": 0.25, "c": 0.5}.items():
        assert measured[team] == pytest.approx(target, abs=0.05), measured


def test_twenty_teams_with_random_weights_get_shares_in_proportion() -> None:
    rng = random.Random(7)
    qs = quotas(*(TeamQuota(f"t{i:02}", weight=rng.choice([1.0, 2.0, 3.0])) for i in range(20)))
    lengths = {name: rng.randint(2, 9) for name in qs}
    measured = simulate(qs, lengths, capacity=200, ticks=300, depth=20)
    total = sum(q.weight for q in qs.values())
    for name, q in qs.items():
        assert measured[name] == pytest.approx(q.weight / total, abs=0.05 * q.weight / total + 0.005)


# -- speed -----------------------------------------------------------------------------------------


def test_ten_thousand_demands_over_twenty_teams_are_decided_well_under_a_second() -> None:
    rng = random.Random(1)
    qs = quotas(*(TeamQuota(f"t{i}", {"cpu": 200}, weight=rng.choice([1.0, 2.0])) for i in range(20)))
    pending: Sequence[Demand] = [
        Demand(
            f"d{i}",
            f"t{rng.randrange(20)}",
            f"u{rng.randrange(5)}",
            f"r{rng.randrange(100)}",
            cpu(rng.randint(1, 4)),
        )
        for i in range(10_000)
    ]
    start = time.process_time()
    out = admit(pending, [], qs, {"cpu": 2000, "memory": 10**12}, NO_USAGE)
    spent = time.process_time() - start
    assert len(out.admitted) + len(out.waiting) == 10_000
    assert spent < 0.5, f"{spent:.3f}s of cpu for 10,000 demands"


# -- the invariants, for any world -----------------------------------------------------------------

RESOURCES = ("cpu", "gpu")


@st.composite
def worlds(draw: st.DrawFn) -> tuple[dict[str, TeamQuota], dict[str, int] | None, list[list[Demand]]]:
    """A few teams with random limits, borrow limits and runs limits, maybe a capacity, and three
    rounds of pending demands (from those teams and from one without a quota)."""
    amounts = st.dictionaries(st.sampled_from(RESOURCES), st.integers(0, 8))
    names = [f"t{i}" for i in range(draw(st.integers(1, 4)))]
    qs = {
        name: TeamQuota(
            name,
            draw(amounts),
            runs=draw(st.none() | st.integers(0, 3)),
            weight=draw(st.sampled_from([0.5, 1.0, 3.0])),
            borrow=draw(amounts),
        )
        for name in names
    }
    capacity = draw(st.none() | st.dictionaries(st.sampled_from(RESOURCES), st.integers(0, 20)))
    demand = st.tuples(
        st.sampled_from([*names, "stranger"]),
        st.sampled_from(["ann", "bob"]),
        st.integers(0, 4),
        st.integers(0, 3),
        st.integers(0, 2),
        st.integers(-1, 1),
    )
    rounds = [
        [
            Demand(f"{n}.{i}", team, user, f"r{run}", {"cpu": c, "gpu": g}, priority=p, since=float(i))
            for i, (team, user, run, c, g, p) in enumerate(draw(st.lists(demand, max_size=25)))
        ]
        for n in range(3)
    ]
    return qs, capacity, rounds


def own(held: Sequence[Holding], team: str, resource: str) -> int:
    return sum(h.amounts.get(resource, 0) - h.borrowed.get(resource, 0) for h in held if h.team == team)


@given(worlds(), st.integers(0, 5))
@settings(max_examples=300, deadline=None)
def test_no_team_goes_over_its_limits_and_borrowing_and_the_cluster_never_over_capacity(
    world: tuple[dict[str, TeamQuota], dict[str, int] | None, list[list[Demand]]], ended: int
) -> None:
    qs, capacity, rounds = world
    held: list[Holding] = []
    waiting: list[Demand] = []
    for fresh in rounds:
        pending = [*waiting, *fresh]
        busy = {d.team for d in pending}
        lendable = {
            r: sum(
                max(0, q.limits[r] - own(held, t, r))
                for t, q in qs.items()
                if t not in busy and r in q.limits
            )
            for r in RESOURCES
        }
        out = admit(pending, held, qs, capacity, NO_USAGE)

        assert sorted([*(d.key for d, _ in out.admitted), *out.waiting]) == sorted(d.key for d in pending)
        held += [Holding(d.key, d.team, d.user, d.run_id, d.amounts, b) for d, b in out.admitted]
        for r in RESOURCES:
            if capacity is not None and r in capacity:
                assert sum(h.amounts.get(r, 0) for h in held) <= capacity[r]
            if any(b.get(r, 0) for _, b in out.admitted):  # borrowed now: only idle teams' quota
                assert sum(h.borrowed.get(r, 0) for h in held) <= lendable[r]
            for team, q in qs.items():
                if r in q.limits:
                    assert own(held, team, r) <= q.limits[r]
                assert sum(h.borrowed.get(r, 0) for h in held if h.team == team) <= q.borrow.get(r, 0)
        for team, q in qs.items():
            if q.runs is not None:
                assert len({h.run_id for h in held if h.team == team}) <= q.runs
        waiting = [d for d in pending if d.key in out.waiting]
        held = held[ended:]  # some attempts end before the next round


# -- docs/quotas.md ----------------------------------------------------------------------------------


def test_the_worked_example_of_the_docs() -> None:
    qs = quotas(
        TeamQuota("ml", {"cpu": 16, "memory": 64 * GiB}, weight=2.0, borrow={"cpu": 8, "memory": 32 * GiB}),
        TeamQuota("etl", {"cpu": 12, "memory": 32 * GiB}),
        TeamQuota("bi", {"cpu": 4, "memory": 32 * GiB}),
    )
    capacity = {"cpu": 32, "memory": 128 * GiB}
    pending = [*demands("ml", 20, cpu(2, 8 * GiB)), *demands("etl", 20, cpu(1, GiB))]
    out = admit(pending, [], qs, capacity, NO_USAGE)

    assert teams_of(out) == {"ml": 10, "etl": 12}
    assert [d.team for d, _ in out.admitted[:4]] == ["etl", "ml", "etl", "ml"]
    assert [b for d, b in out.admitted if b] == [{"cpu": 2, "memory": 8 * GiB}] * 2
    assert out.waiting["etl/ann/12"].text() == "team quota: cpu 12 of 12 in use by team etl (runs etl-run)"
    assert out.waiting["ml/ann/10"].text() == "team quota: cpu 16 of 16 in use by team ml (runs ml-run)"

    held = [Holding(d.key, d.team, d.user, d.run_id, d.amounts, b) for d, b in out.admitted]
    bi = demands("bi", 4, cpu(1, GiB), since=100.0)
    later = admit([*bi, *(d for d in pending if d.key in out.waiting)], held, qs, capacity, NO_USAGE)
    assert later.admitted == []
    assert later.waiting["bi/ann/0"].text() == "cluster full: cpu 32 of 32 in use"
    assert isinstance(later.waiting["ml/ann/10"], LenderBusy)
    assert preempt(held, bi, qs, now=650.0, grace=600.0) == []
    stopped = preempt(held, bi, qs, now=750.0, grace=600.0)
    assert sorted(stopped) == ["ml/ann/8", "ml/ann/9"]
    rest = [h for h in held if h.key not in stopped]
    assert teams_of(admit(bi, rest, qs, capacity, NO_USAGE)) == {"bi": 4}
