"""The admission policy's speed and fairness (``conveyor.quotas``), pure: no store, no processes.

    make bench-fairshare               # or: .venv/bin/python bench/fairshare.py [--reps 5] [--quick]

1. Decisions per second: ``admit`` over 10,000 pending attempts of 20 teams (random weights, cpu
   and memory quotas, some borrowing; each attempt 1-4 cpus and 1-8 GiB, one in ten a gpu), with
   a cluster with room for a tenth, half or all of it (the team quotas, 1,000 cpus each, hold
   some back) and with no capacity (shares of the summed quotas). Each figure is the median of
   ``--reps`` calls; every pending attempt is decided.
   Target: well under a second a round.
2. Fairness over a simulated window, as Armada reports it: with saturating demand and fixed task
   lengths (different per team), each tick usage is charged, ended attempts leave and ``admit``
   fills the room; a team's measured share is its mean part of the cluster after a warm-up, and
   its error is measured share minus target (weight / sum of weights). Printed: the largest and
   the mean absolute error in percentage points, with decayed usage (half-life 60 ticks) and with
   current shares alone (half-life ~0), for weights 1:1:2 and for 20 teams with random weights.
"""

from __future__ import annotations

import argparse
import random
import statistics
import time
from collections import Counter
from collections.abc import Mapping

from conveyor.quotas import Demand, Holding, TeamQuota, Usage, admit

GiB = 2**30


def world(seed: int = 1) -> tuple[dict[str, TeamQuota], list[Demand]]:
    rng = random.Random(seed)
    quotas = {
        f"team{i:02}": TeamQuota(
            f"team{i:02}",
            {"cpu": 1000, "memory": 3000 * GiB},
            weight=rng.choice([1.0, 2.0, 3.0]),
            borrow={"cpu": 100} if i % 4 == 0 else {},
        )
        for i in range(20)
    }
    names = list(quotas)
    pending = [
        Demand(
            f"run{i % 300}/task{i}/1",
            rng.choice(names),
            f"user{rng.randrange(8)}",
            f"run{i % 300}",
            {"cpu": rng.randint(1, 4), "memory": rng.randint(1, 8) * GiB, "gpu": int(rng.random() < 0.1)},
            priority=rng.choice([0, 0, 0, 1, 5]),
            since=float(i),
        )
        for i in range(10_000)
    ]
    return quotas, pending


def speed(reps: int) -> list[tuple[str, int, float, float]]:
    quotas, pending = world()
    cpus = sum(d.amounts["cpu"] for d in pending)
    rows = []
    for label, capacity in [
        ("room for 10%", {"cpu": cpus // 10, "memory": 5000 * GiB, "gpu": 40}),
        ("room for 50%", {"cpu": cpus // 2, "memory": 25_000 * GiB, "gpu": 200}),
        ("room for 100%", {"cpu": cpus, "memory": 50_000 * GiB, "gpu": 1000}),
        ("no capacity (quotas)", None),
    ]:
        times = []
        for _ in range(reps):
            start = time.perf_counter()
            out = admit(pending, [], quotas, capacity, Usage())
            times.append(time.perf_counter() - start)
            assert len(out.admitted) + len(out.waiting) == len(pending)
        best = statistics.median(times)
        rows.append((label, len(out.admitted), best, len(pending) / best))
    return rows


def simulate(
    quotas: Mapping[str, TeamQuota], lengths: Mapping[str, int], capacity: int, ticks: int, half_life: float
) -> dict[str, float]:
    """Each team's measured share minus its target over ``ticks`` of saturating demand."""
    usage = Usage(half_life=half_life)
    held: list[tuple[int, Holding]] = []
    made: Counter[str] = Counter()
    share: Counter[str] = Counter()
    whole = {"cpu": capacity}
    depth = max(10, 2 * capacity // len(quotas))
    warm = ticks // 10
    for t in range(ticks):
        usage = usage.charge([h for _, h in held], whole, t - 1, t)
        held = [(end, h) for end, h in held if end > t]
        pending = [
            Demand(f"{team}/{i}", team, "user", "run", {"cpu": 1}, since=float(i))
            for team in quotas
            for i in range(made[team], made[team] + depth)
        ]
        out = admit(pending, [h for _, h in held], quotas, whole, usage)
        for d, borrowed in out.admitted:
            made[d.team] += 1
            holding = Holding(d.key, d.team, d.user, d.run_id, d.amounts, borrowed, t)
            held.append((t + lengths[d.team], holding))
        if t >= warm:
            for _, h in held:
                share[h.team] += h.amounts["cpu"] / capacity
    total = sum(q.weight for q in quotas.values())
    return {team: share[team] / (ticks - warm) - q.weight / total for team, q in quotas.items()}


def fairness(quick: bool) -> list[tuple[str, str, float, float]]:
    rng = random.Random(7)
    three = {n: TeamQuota(n, weight=w) for n, w in (("a", 1.0), ("b", 1.0), ("c", 2.0))}
    twenty = {f"t{i:02}": TeamQuota(f"t{i:02}", weight=rng.choice([1.0, 2.0, 3.0])) for i in range(20)}
    scenarios = [
        ("weights 1:1:2", three, {"a": 3, "b": 7, "c": 5}, 30, 300 if quick else 1000),
        ("20 teams, weights 1-3", twenty, {n: rng.randint(2, 9) for n in twenty}, 200, 150 if quick else 500),
    ]
    rows = []
    for label, quotas, lengths, capacity, ticks in scenarios:
        for usage, half_life in (("decayed, half-life 60", 60.0), ("current share only", 1e-6)):
            errors = [abs(e) for e in simulate(quotas, lengths, capacity, ticks, half_life).values()]
            rows.append((label, usage, 100 * max(errors), 100 * statistics.mean(errors)))
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--reps", type=int, default=5, help="calls per capacity; the median is shown")
    parser.add_argument("--quick", action="store_true", help="shorter simulations (a smoke run)")
    args = parser.parse_args()

    print("admission speed: 10,000 pending attempts, 20 teams")
    print(f"  {'cluster':<22} {'admitted':>9} {'seconds':>9} {'decisions/s':>12}")
    for label, admitted, seconds, rate in speed(args.reps):
        print(f"  {label:<22} {admitted:>9,} {seconds:>9.3f} {rate:>12,.0f}")
    print()
    print("fairness error: measured share - target share per team, percentage points")
    print(f"  {'scenario':<22} {'usage':<22} {'max':>6} {'mean':>6}")
    for label, usage, worst, mean in fairness(args.quick):
        print(f"  {label:<22} {usage:<22} {worst:>6.2f} {mean:>6.2f}")


if __name__ == "__main__":
    main()
